//! Consensus hot paths, each printed with its ratio to a limit measured in
//! the same run (so a noisy, shared machine still gives comparable figures):
//!
//! - nonce attempts/s of the block hasher vs the raw SHA-256 compression
//!   rate / 2 (one attempt needs exactly two compressions);
//! - `verify_strict` single-thread, and parallel vs cores x single-thread;
//! - validating and committing (sled, flushed) a block of 5,000 transfers,
//!   vs cores x single-thread `verify_strict` (target: at least 0.9, issue
//!   11; it was 0.8 before).
//!
//! `cargo bench --bench consensus` prints the report, then criterion's
//! detailed statistics (skipped with `CAIRN_BENCH_REPORT_ONLY=1`). Results are recorded in benches/README.md.
//! `CAIRN_BENCH_PROFILE_WARM=N` runs only the block with cached signatures,
//! N times (what is left of a block besides its signatures, for `perf`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use cairn_consensus::pow::PowHasher;
use cairn_consensus::testkit::{self, ChainBuilder, address};
use cairn_consensus::{Amount, Block, COIN, SignedTransfer, TxId};
use cairn_genesis::testkit::network;
use cairn_node::chain::{Chain, ChainConfig};
use cairn_node::store::{ChainStore, SledStore};
use cairn_node::verify::SigCache;
use criterion::Criterion;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Operations per second of `f`, which performs `ops` operations per call:
/// the median of five samples of about `sample` each.
fn rate(ops: u64, sample: Duration, mut f: impl FnMut()) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < sample {
            f();
            calls += 1;
        }
        rates.push((calls * ops) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[2]
}

fn compress_rate() -> f64 {
    let mut state = [0u32; 8];
    let mut block = [0u8; 64];
    rate(10_000, Duration::from_millis(300), || {
        for i in 0..10_000u32 {
            block[..4].copy_from_slice(&i.to_le_bytes());
            sha2::compress256(&mut state, &[block.into()]);
        }
        black_box(&state);
    })
}

fn attempt_rate() -> f64 {
    let hasher = PowHasher::new(&[7u8; 32]);
    let mut nonce = 0u64;
    rate(10_000, Duration::from_millis(300), || {
        for _ in 0..10_000 {
            black_box(hasher.hash(nonce));
            nonce += 1;
        }
    })
}

fn naive_sha256d_rate() -> f64 {
    let mut msg = [7u8; 40];
    let mut nonce = 0u64;
    rate(10_000, Duration::from_millis(300), || {
        for _ in 0..10_000 {
            msg[32..].copy_from_slice(&nonce.to_le_bytes());
            black_box(Sha256::digest(Sha256::digest(msg)));
            nonce += 1;
        }
    })
}

fn signed(n: u64) -> Vec<SignedTransfer> {
    let b = ChainBuilder::new(testkit::params(), 0, Amount(0));
    (0..n)
        .into_par_iter()
        .map(|i| b.transfer(i, address(i + 1), Amount(1), Amount(1), 0))
        .collect()
}

/// A chain with 5,000 funded senders and a block in which each pays a
/// distinct recipient: 10,001 accounts change.
fn big_block() -> (ChainBuilder, Block) {
    let n = 5_000u64;
    let b = ChainBuilder::new(testkit::params(), n, Amount(10 * COIN));
    let txs: Vec<SignedTransfer> = (0..n)
        .into_par_iter()
        .map(|i| b.transfer(i, address(n + i), Amount(COIN), Amount(10), 0))
        .collect();
    let block = b.build(txs, address(3 * n));
    (b, block)
}

/// Transfers per second of validating and durably committing `block` on a
/// fresh sled store (setup not timed), median of five. With `warm`, the
/// transfers' signatures are already in the node's signature cache, as when
/// they came through the mempool.
fn block_rate(b: &ChainBuilder, block: &Block, warm: bool) -> (f64, Duration) {
    let net = network(b);
    let mut rates = Vec::new();
    let mut checkpoints = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 256 << 20).unwrap();
        let cache = std::sync::Arc::new(SigCache::new(1 << 20));
        if warm {
            block.transfers.iter().for_each(|t| cache.insert(t.id()));
        }
        let verifier = cache.clone();
        let (mut chain, _) = Chain::open(
            store,
            &net,
            move |txs: &[SignedTransfer], ids: &[TxId]| verifier.verify(txs, ids),
            ChainConfig::default(),
        )
        .unwrap();
        let blk = block.clone();
        let start = Instant::now();
        chain.process_block(blk, u64::MAX / 2).unwrap();
        rates.push(block.transfers.len() as f64 / start.elapsed().as_secs_f64());
        // the account writes deferred to the next state checkpoint
        let start = Instant::now();
        chain.store().checkpoint().unwrap();
        chain.store().flush().unwrap();
        checkpoints.push(start.elapsed());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    checkpoints.sort();
    (rates[2], checkpoints[2])
}

fn report() {
    let cores = rayon::current_num_threads() as f64;
    println!("== cairn consensus report ({cores} cores) ==");

    let compress = compress_rate();
    let attempts = attempt_rate();
    let naive = naive_sha256d_rate();
    let limit = compress / 2.0;
    println!(
        "nonce attempts        {:>12.0} /s   limit (raw compress/2) {:>12.0} /s   ratio {:.3}   (naive sha256d {:.0} /s)",
        attempts,
        limit,
        attempts / limit,
        naive
    );

    let txs = signed(4_000);
    let single = rate(txs.len() as u64, Duration::from_millis(400), || {
        for t in &txs {
            assert!(black_box(t.verify_signature()).is_ok());
        }
    });
    let parallel = rate(txs.len() as u64, Duration::from_millis(400), || {
        txs.par_iter()
            .for_each(|t| assert!(black_box(t.verify_signature()).is_ok()));
    });
    println!(
        "verify_strict         {:>12.0} /s single thread; parallel {:.0} /s   ratio to cores x single {:.3}",
        single,
        parallel,
        parallel / (cores * single)
    );

    let (b, block) = big_block();
    let (blk, checkpoint) = block_rate(&b, &block, false);
    println!(
        "block of 5000 transfers {:>10.0} transfers/s validated+committed   limit (cores x verify) {:.0} /s   ratio {:.3}   (target 0.9)",
        blk,
        cores * single,
        blk / (cores * single)
    );
    let with_checkpoint =
        1.0 / (1.0 / blk + checkpoint.as_secs_f64() / block.transfers.len() as f64);
    println!(
        "  its 10001 account writes at the next state checkpoint: {:.1} ms; if every block were checkpointed: {:.0} transfers/s, ratio {:.3}",
        checkpoint.as_secs_f64() * 1e3,
        with_checkpoint,
        with_checkpoint / (cores * single)
    );
    let (warm, _) = block_rate(&b, &block, true);
    println!(
        "  same block, signatures already checked in the mempool: {:.0} transfers/s   ratio {:.3}",
        warm,
        warm / (cores * single)
    );
}

fn criterion_benches(c: &mut Criterion) {
    let hasher = PowHasher::new(&[7u8; 32]);
    let mut nonce = 0u64;
    c.bench_function("pow/nonce_attempt", |bench| {
        bench.iter(|| {
            nonce += 1;
            black_box(hasher.hash(nonce))
        })
    });
    let txs = signed(64);
    let mut i = 0;
    c.bench_function("sig/verify_strict", |bench| {
        bench.iter(|| {
            i = (i + 1) % txs.len();
            assert!(black_box(txs[i].verify_signature()).is_ok())
        })
    });
    let b = ChainBuilder::new(testkit::params(), 4, Amount(1000 * COIN));
    let block = b.build(
        vec![b.transfer(0, address(1), Amount(1), Amount(1), 0)],
        address(2),
    );
    c.bench_function("block/tx_root_1_transfer", |bench| {
        bench.iter(|| black_box(block.compute_tx_root()))
    });
}

fn main() {
    if let Ok(n) = std::env::var("CAIRN_BENCH_PROFILE_WARM") {
        let (b, block) = big_block();
        for _ in 0..n.parse::<usize>().unwrap() {
            let (r, _) = block_rate(&b, &block, true);
            println!("warm {r:.0}");
        }
        return;
    }
    report();
    if std::env::var_os("CAIRN_BENCH_REPORT_ONLY").is_some() {
        return;
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    criterion_benches(&mut c);
    c.final_summary();
}
