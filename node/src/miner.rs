//! Proof-of-work search on a dedicated rayon pool, block templates, and the
//! hashrate meter.
//!
//! Each pool thread searches its own slice of the nonce space with
//! [`PowHasher::meets`] (two SHA-256 compressions per attempt), checking
//! every [`CHUNK`] attempts whether to stop: another thread found a nonce,
//! the caller's stop condition holds (the tip changed, mining was stopped,
//! the time slice ended). A chunk takes well under a millisecond, so a
//! search stops within milliseconds.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_consensus::block::merkle_root;
use cairn_consensus::pow::PowHasher;
use cairn_consensus::{
    Account, Address, Amount, Block, BlockHeader, Coinbase, ConsensusParams, Height,
    SignedTransfer, Target, TxRoot, block::HEADER_VERSION, validation,
};
use rayon::prelude::*;

/// Attempts between two checks of the stop conditions.
pub const CHUNK: u64 = 4096;

/// How a search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    Found(u64),
    /// The caller's stop condition held.
    Stopped,
    /// Every nonce in the range was tried.
    Exhausted,
}

/// A rayon pool reserved for mining.
pub struct MinerPool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl MinerPool {
    pub fn new(threads: usize) -> std::io::Result<MinerPool> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("miner-{i}"))
            .start_handler(|_| crate::flusher::lower_thread_priority(crate::flusher::MINER_NICE))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(MinerPool { pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Searches `header`'s nonces from `start` on, `per_thread` attempts per
    /// thread, until a nonce meets the target or `stop()` returns true.
    /// Attempts are added to `counter` as they are made.
    pub fn search(
        &self,
        header: &BlockHeader,
        start: u64,
        per_thread: u64,
        counter: &AtomicU64,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Search {
        let hasher = PowHasher::new(&header.prehash());
        let target = header.target.to_words();
        let found = AtomicBool::new(false);
        let threads = self.threads as u64;
        let result = self.pool.install(|| {
            (0..threads).into_par_iter().find_map_any(|i| {
                let from = start.wrapping_add(i.wrapping_mul(per_thread));
                let mut n = 0u64;
                while n < per_thread {
                    // another thread's find wins: report nothing from this one
                    if found.load(Ordering::Relaxed) {
                        return None;
                    }
                    if stop() {
                        return Some(None);
                    }
                    let len = CHUNK.min(per_thread - n);
                    for k in 0..len {
                        let nonce = from.wrapping_add(n + k);
                        if hasher.meets(nonce, &target) {
                            counter.fetch_add(k + 1, Ordering::Relaxed);
                            found.store(true, Ordering::Relaxed);
                            return Some(Some(nonce));
                        }
                    }
                    counter.fetch_add(len, Ordering::Relaxed);
                    n += len;
                }
                None
            })
        });
        match result {
            Some(Some(nonce)) => Search::Found(nonce),
            Some(None) => Search::Stopped,
            None if found.load(Ordering::Relaxed) => Search::Stopped,
            None => Search::Exhausted,
        }
    }

    /// Mines `template` until a nonce is found or `stop()` holds, refreshing
    /// nothing: for pinned or easy targets and for benchmarks.
    pub fn mine(
        &self,
        template: &mut Block,
        counter: &AtomicU64,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> bool {
        let per_thread = u64::MAX / self.threads as u64;
        match self.search(&template.header, 0, per_thread, counter, stop) {
            Search::Found(n) => {
                template.header.nonce = n;
                true
            }
            _ => false,
        }
    }
}

/// What a template is built on.
pub struct TemplateBase<'a> {
    pub params: &'a ConsensusParams,
    pub parent: cairn_consensus::BlockHash,
    pub parent_height: Height,
    pub parent_state_root: cairn_consensus::StateRoot,
    pub time_ms: u64,
    pub target: Target,
}

/// Builds a block template (nonce 0) from `candidates` in priority order
/// (each sender's in nonce order): those that pass the stateless rules are
/// taken, up to the block's limits, and kept if they apply to the state
/// `read` gives (many accounts at once, on all cores for a store); the
/// coinbase pays reward plus fees to `miner`.
pub fn build_template<E>(
    base: &TemplateBase<'_>,
    miner: Address,
    candidates: impl IntoIterator<Item = SignedTransfer>,
    read: impl FnOnce(&[Address], &mut [Account]) -> Result<(), E>,
) -> Result<Block, E> {
    let params = base.params;
    let height = Height(base.parent_height.0.saturating_add(1));
    let max_by_bytes = params.max_block_bytes.saturating_sub(
        cairn_consensus::block::HEADER_BYTES + cairn_consensus::block::COINBASE_BYTES + 4,
    ) / cairn_consensus::transfer::SIGNED_TRANSFER_BYTES;
    let max = params.max_block_transfers.min(max_by_bytes);
    let transfers: Vec<SignedTransfer> = candidates
        .into_iter()
        .filter(|tx| tx.check(params.chain_id, params.min_fee).is_ok())
        .take(max)
        .collect();
    let block = Block {
        header: BlockHeader {
            version: HEADER_VERSION,
            parent: base.parent,
            height,
            tx_root: TxRoot([0; 32]),
            state_root: base.parent_state_root,
            time_ms: base.time_ms,
            target: base.target,
            nonce: 0,
        },
        coinbase: Coinbase {
            height,
            recipient: miner,
            amount: Amount::ZERO,
        },
        transfers,
    };
    let (mut block, effects) =
        validation::try_fill_template(block, params, read, base.parent_state_root)?;
    let mut ids = Vec::with_capacity(block.transfers.len() + 1);
    ids.push(block.coinbase.id());
    if block.transfers.len() < crate::verify::PARALLEL_MIN {
        ids.extend(block.transfers.iter().map(|t| t.id()));
    } else {
        use rayon::prelude::*;
        ids.par_extend(block.transfers.par_iter().map(|t| t.id()));
    }
    block.header.tx_root = merkle_root(&ids);
    block.header.state_root = effects.state_root;
    Ok(block)
}

/// Attempts per second over the last few seconds.
pub struct HashrateMeter {
    /// Attempts made since start.
    pub attempts: AtomicU64,
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Default for HashrateMeter {
    fn default() -> Self {
        HashrateMeter {
            attempts: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl HashrateMeter {
    const WINDOW: Duration = Duration::from_secs(5);

    /// Records a sample now; returns the rate over the window.
    pub fn sample(&self) -> u64 {
        let now = Instant::now();
        let count = self.attempts.load(Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, count));
        while s.len() > 2
            && s.front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Self::WINDOW)
        {
            s.pop_front();
        }
        match (s.front(), s.back()) {
            (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
                let secs = t1.duration_since(*t0).as_secs_f64();
                ((c1 - c0) as f64 / secs) as u64
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{COIN, validation};

    #[test]
    fn finds_a_valid_nonce_on_every_thread_count() {
        for threads in [1, 2, 3] {
            let pool = MinerPool::new(threads).unwrap();
            let b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
            let mut block = b.build(vec![], address(1));
            block.header.nonce = 0;
            let counter = AtomicU64::new(0);
            assert!(pool.mine(&mut block, &counter, &|| false));
            assert!(validation::check_header(&block.header, &b.params).is_ok());
            assert!(counter.load(Ordering::Relaxed) >= 1);
        }
    }

    #[test]
    fn stops_promptly_when_asked() {
        let pool = MinerPool::new(2).unwrap();
        let b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
        let mut block = b.build(vec![], address(1));
        block.header.target = Target([0; 32]); // unreachable
        let counter = AtomicU64::new(0);
        let deadline = Instant::now() + Duration::from_millis(50);
        let started = Instant::now();
        assert!(!pool.mine(&mut block, &counter, &|| Instant::now() > deadline));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn template_takes_applicable_transfers_and_pays_fees() {
        let b = ChainBuilder::new(testkit::params(), 3, Amount(10 * COIN));
        let good = b.transfer(0, address(5), Amount(COIN), Amount(7), 0);
        let gap = b.transfer(1, address(5), Amount(COIN), Amount(9), 3);
        let broke = b.transfer(2, address(5), Amount(100 * COIN), Amount(9), 0);
        let base = TemplateBase {
            params: &b.params,
            parent: b.tip_hash(),
            parent_height: Height(0),
            parent_state_root: b.tip().header.state_root,
            time_ms: b.tip().header.time_ms + 1000,
            target: b.params.initial_target,
        };
        let accounts = b.accounts.clone();
        let read = |addresses: &[Address], out: &mut [Account]| {
            for (o, a) in out.iter_mut().zip(addresses) {
                *o = accounts.get(a).copied().unwrap_or_default();
            }
            Ok::<_, std::convert::Infallible>(())
        };
        let Ok(mut block) = build_template(&base, address(9), [gap, broke, good], read);
        assert_eq!(block.transfers, vec![good]);
        assert_eq!(block.coinbase.amount, Amount(b.params.block_reward.0 + 7));
        MinerPool::new(1)
            .unwrap()
            .mine(&mut block, &AtomicU64::new(0), &|| false);
        let effects = validation::validate_block_state(
            &block,
            &b.params,
            |a| accounts.get(a).copied().unwrap_or_default(),
            b.tip().header.state_root,
        );
        assert!(effects.is_ok(), "{effects:?}");
    }
}
