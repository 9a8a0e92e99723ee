//! The mempool's own admission work from every core at once: what is left
//! of a submission once its signature is checked (the per-sender rules, the
//! bounds, the indexes), without HTTP or the store.
//!
//! 50,000 pre-signed transfers from 5,000 senders (10 each, nonces in
//! order) are inserted from one thread per core, each thread taking whole
//! senders, so every insert is a real admission. Two ways in the same run:
//!
//! - sharded: `Mempool::insert` on the node's pool, which locks only the
//!   sender's shard;
//! - one lock: the same on a pool of one shard, so that every insert holds
//!   the whole pool, as before the pool was sharded.
//!
//! Printed: inserts per second each way, each against one thread's rate
//! times the cores (the limit if nothing were shared). Target: the sharded
//! pool scales (ratio at least 0.7 on all cores) and never trails the one
//! lock. Where the cores are few, the signature dominates a submission
//! anyway (see `rpc_load` and `e2e`); this is the part that decides the
//! 16-core figure.
//!
//! Run: `cargo bench --bench mempool`. Results go in benches/README.md.

use std::time::Instant;

use cairn_consensus::testkit;
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Account, Amount, COIN, SignedTransfer, Transfer, TxId};
use cairn_node::mempool::{Mempool, MempoolConfig, SHARDS};
use rayon::prelude::*;

const SENDERS: u64 = 5_000;
const PER_SENDER: u64 = 10;

fn transfers() -> Vec<Vec<(SignedTransfer, TxId)>> {
    (0..SENDERS)
        .into_par_iter()
        .map(|s| {
            let k = testkit::key(s + 1);
            (0..PER_SENDER)
                .map(|nonce| {
                    let t = Transfer {
                        chain_id: 1,
                        from: public_key(&k),
                        to: testkit::address(s + 7),
                        amount: Amount(1),
                        fee: Amount(1 + (s * 7 + nonce) % 50),
                        nonce,
                    }
                    .sign(&k);
                    (t, t.id())
                })
                .collect()
        })
        .collect()
}

/// Inserts per second of `senders`, split over `threads` threads.
fn rate(senders: &[Vec<(SignedTransfer, TxId)>], threads: usize, shards: usize) -> f64 {
    let pool = Mempool::with_shards(MempoolConfig::default(), Amount(1), shards);
    let account = Account {
        balance: Amount(1_000 * COIN),
        nonce: 0,
    };
    let chunk = senders.len().div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in senders.chunks(chunk) {
            let pool = &pool;
            s.spawn(move || {
                for (tx, id) in part.iter().flatten() {
                    let r = pool.insert(*tx, *id, account, 0);
                    assert!(r.as_ref().is_ok_and(|i| i.evicted.is_empty()), "{r:?}");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pool.len(), senders.len() * PER_SENDER as usize);
    (senders.len() as u64 * PER_SENDER) as f64 / secs
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..5).map(|_| f()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[2]
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let senders = transfers();
    // CAIRN_BENCH_SHARDS=N tries another shard count
    let shards: usize = std::env::var("CAIRN_BENCH_SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SHARDS);
    let one = median(|| rate(&senders, 1, shards));
    let sharded = median(|| rate(&senders, cores, shards));
    let locked = median(|| rate(&senders, cores, 1));
    let limit = one * cores as f64;
    // what the whole-pool path (blocks, templates, a full pool) pays to
    // lock every shard of the full pool and count its entries back
    let full = Mempool::with_shards(MempoolConfig::default(), Amount(1), shards);
    for (tx, id) in senders.iter().flatten() {
        let _ = full.insert(
            *tx,
            *id,
            Account {
                balance: Amount(1_000 * COIN),
                nonce: 0,
            },
            0,
        );
    }
    let start = Instant::now();
    for _ in 0..10_000 {
        std::hint::black_box(full.lock().len());
    }
    let whole_us = start.elapsed().as_secs_f64() * 1e6 / 10_000.0;
    println!(
        "== cairn mempool admission ({cores} cores, {SENDERS} senders x {PER_SENDER}, {shards} shards) =="
    );
    println!("one thread        {one:>10.0} inserts/s");
    println!(
        "sharded, {cores:>2} thr  {sharded:>10.0} inserts/s   ratio to {cores} x one thread {:.2}   target 0.7",
        sharded / limit
    );
    println!(
        "one lock, {cores:>2} thr {locked:>10.0} inserts/s   ratio to {cores} x one thread {:.2}   sharded / one lock {:.2}",
        locked / limit,
        sharded / locked
    );
    println!("whole pool        {whole_us:>10.2} us to lock all {shards} shards and count them");
}
