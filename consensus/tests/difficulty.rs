//! The ASERT rule under hashrate shocks, simulated with the expected solve
//! time (no randomness, so each case is exact and repeatable).
//!
//! The miner refreshes its template's time every `step` milliseconds, as the
//! node's miner does; a block is found once the expected number of solutions
//! accumulated since the parent, `sum(step * hashrate / work(target(now)))`,
//! reaches one.

use cairn_consensus::params::{ConsensusParams, ParentInfo, Retarget};
use cairn_consensus::testkit;
use cairn_consensus::{Height, Target};
use proptest::prelude::*;
use ruint::aliases::U256;

struct Sim {
    params: ConsensusParams,
    /// hashes per millisecond
    hashrate: u128,
    height: u64,
    time_ms: u64,
    anchor_ms: Option<u64>,
    step_ms: u64,
}

const SCALE: u128 = 1 << 40;

impl Sim {
    fn target_at(&self, time_ms: u64) -> Target {
        self.params.next_target(
            &ParentInfo {
                height: Height(self.height),
                anchor_time_ms: self.anchor_ms,
            },
            time_ms,
        )
    }

    fn work(t: &Target) -> u128 {
        u128::try_from(t.work().0).unwrap_or(u128::MAX)
    }

    /// Mines one block; returns its solve time in ms.
    fn mine(&mut self) -> u64 {
        let mut now = self.time_ms;
        let mut progress: u128 = 0;
        loop {
            now += self.step_ms;
            let w = Self::work(&self.target_at(now)).max(1);
            progress += u128::from(self.step_ms) * self.hashrate * SCALE / w;
            if progress >= SCALE {
                break;
            }
        }
        let solve = now - self.time_ms;
        self.height += 1;
        self.time_ms = now;
        if self.height == 1 {
            self.anchor_ms = Some(now);
        }
        solve
    }

    /// Expected solve time of the next block if mining started now.
    fn expected_solve_ms(&self) -> u64 {
        let t = self.target_at(self.time_ms + self.params.target_block_time_ms);
        (Self::work(&t) / self.hashrate.max(1)) as u64
    }
}

fn sim(block_ms: u64, half_life_ms: u64) -> Sim {
    let mut params = testkit::params();
    params.target_block_time_ms = block_ms;
    params.retarget = Retarget::Asert { half_life_ms };
    params.initial_target = Target::from_u256(U256::MAX >> 28);
    params.pow_limit = Target::from_u256(U256::MAX >> 4);
    let hashrate = Sim::work(&params.initial_target) / u128::from(block_ms);
    Sim {
        params,
        hashrate,
        height: 0,
        time_ms: 1_000_000,
        anchor_ms: None,
        step_ms: (block_ms / 100).max(1),
    }
}

/// Runs `before` blocks at the base hashrate, changes it by `num/den`, and
/// returns (ms from the change to the first block, expected solve times of
/// the blocks mined after `settle_half_lives` half-lives since the change).
fn shock(
    block_ms: u64,
    half_life_ms: u64,
    before: usize,
    num: u128,
    den: u128,
    settle_half_lives: u64,
) -> (u64, Vec<u64>) {
    let mut s = sim(block_ms, half_life_ms);
    for _ in 0..before {
        s.mine();
    }
    s.hashrate = s.hashrate * num / den;
    let change_ms = s.time_ms;
    let first = s.mine();
    let settled_from = change_ms + settle_half_lives * half_life_ms;
    while s.time_ms < settled_from {
        s.mine();
    }
    let mut after = Vec::new();
    for _ in 0..60 {
        after.push(s.expected_solve_ms());
        s.mine();
    }
    (first, after)
}

#[test]
fn steady_hashrate_keeps_the_target_block_time() {
    let mut s = sim(10_000, 120_000);
    let times: Vec<u64> = (0..200).map(|_| s.mine()).collect();
    for t in &times[1..] {
        assert!(
            (9_000..=11_000).contains(t),
            "solve time {t} ms strays from 10 s"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A 100x hashrate drop: the first block still arrives within six
    /// half-lives (the target eases while it is being mined), and from
    /// eight half-lives after the drop every block's expected time is within
    /// 2x of the target block time.
    #[test]
    fn recovers_from_a_100x_hashrate_drop(block_s in 1u64..120, hl_blocks in 2u64..60, before in 2usize..40) {
        let block_ms = block_s * 1000;
        let half_life_ms = hl_blocks * block_ms;
        let (first, after) = shock(block_ms, half_life_ms, before, 1, 100, 8);
        prop_assert!(first <= 6 * half_life_ms, "first block after the drop took {first} ms, half-life {half_life_ms} ms");
        for e in after {
            prop_assert!(e >= block_ms / 2 && e <= 2 * block_ms, "expected block time {e} ms vs target {block_ms} ms");
        }
    }

    /// The same for a 100x rise: the chain does not race ahead for long.
    #[test]
    fn recovers_from_a_100x_hashrate_rise(block_s in 1u64..120, hl_blocks in 2u64..60, before in 2usize..40) {
        let block_ms = block_s * 1000;
        let half_life_ms = hl_blocks * block_ms;
        let (_, after) = shock(block_ms, half_life_ms, before, 100, 1, 8);
        for e in after {
            prop_assert!(e >= block_ms / 2 && e <= 2 * block_ms, "expected block time {e} ms vs target {block_ms} ms");
        }
    }
}
