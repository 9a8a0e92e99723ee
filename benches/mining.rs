//! Miner hashrate with one thread and with every core, against the raw
//! SHA-256 rate measured in the same run.
//!
//! One nonce attempt costs exactly two SHA-256 compressions, so the raw
//! single-core limit is (raw `compress256` rate) / 2. Targets: one miner
//! thread reaches at least 0.9 of that limit, and all cores at least
//! 0.9 x cores x the one-thread rate.
//!
//! Run: `cargo bench --bench mining`. Results go in benches/README.md.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_consensus::testkit::{self, ChainBuilder, address};
use cairn_consensus::{Amount, COIN, Target};
use cairn_node::miner::MinerPool;
use sha2::{Digest, Sha256};

/// Median of five runs of `f`, which returns a rate.
fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..5).map(|_| f()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[2]
}

fn raw_compress_rate() -> f64 {
    let mut state = [0u32; 8];
    let mut block = [0u8; 64];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(400) {
        for i in 0..10_000u32 {
            block[..4].copy_from_slice(&i.to_le_bytes());
            sha2::compress256(&mut state, &[block.into()]);
        }
        n += 10_000;
    }
    black_box(state);
    n as f64 / start.elapsed().as_secs_f64()
}

fn naive_sha256d_80_rate() -> f64 {
    let mut header = [3u8; 80];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(400) {
        for i in 0..10_000u32 {
            header[76..].copy_from_slice(&i.to_le_bytes());
            black_box(Sha256::digest(Sha256::digest(header)));
        }
        n += 10_000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Attempts per second of the real miner on `threads` threads, searching
/// an unreachable target for about `secs`.
fn miner_rate(threads: usize, millis: u64) -> f64 {
    let pool = MinerPool::new(threads).unwrap();
    let b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
    let mut block = b.build(vec![], address(1));
    block.header.target = Target([0; 32]);
    let counter = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_millis(millis);
    let start = Instant::now();
    pool.mine(&mut block, &counter, &|| Instant::now() >= deadline);
    counter.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let raw = median(raw_compress_rate);
    let limit = raw / 2.0;
    let naive = median(naive_sha256d_80_rate);
    let one = median(|| miner_rate(1, 400));
    let all = median(|| miner_rate(cores, 400));
    println!("== cairn miner ({cores} cores) ==");
    println!(
        "raw compress256   {:>10.2} M/s   -> limit per core {:.2} M attempts/s   (naive sha256d of an 80-byte header: {:.2} M/s)",
        raw / 1e6,
        limit / 1e6,
        naive / 1e6
    );
    println!(
        "miner, 1 thread   {:>10.2} M attempts/s   ratio to the raw limit {:.3}   (target 0.9)",
        one / 1e6,
        one / limit
    );
    println!(
        "miner, {cores} threads  {:>10.2} M attempts/s   ratio to {cores} x 1 thread {:.3}   (target 0.9)",
        all / 1e6,
        all / (cores as f64 * one)
    );
}
