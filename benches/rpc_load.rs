//! Load generator for a dev node's JSON-RPC endpoint, in one process:
//!
//! - `tx_submit` throughput: pre-signed transfers from 2,000 funded senders
//!   (10 each) submitted over HTTP from 16 concurrent connections, one
//!   transfer per request. Target: 10,000 accepted per second on 2 cores.
//!   Printed with its ratio to the target and to the machine's raw
//!   `verify_strict` rate on all cores (the work every submission must do),
//!   measured in the same run.
//! - `mining_generate` throughput: empty blocks per second on dev, through
//!   the real miner and chain (target: 2,000 per second).
//!
//! Run: `cargo bench --bench rpc_load`. Results go in benches/README.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_api::CairnApiClient;
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, COIN, SignedTransfer, SigningKey};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::service;
use jsonrpsee_http_client::HttpClientBuilder;
use rayon::prelude::*;

#[path = "../tests/support/mod.rs"]
mod support;
use support::sign as transfer;

const SENDERS: u64 = 2_000;
const PER_SENDER: u64 = 10;
const CONNECTIONS: usize = 16;

fn sender_key(i: u64) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn verify_rate_all_cores(txs: &[SignedTransfer]) -> f64 {
    let sample: Vec<_> = txs.iter().take(8_000).collect();
    let start = Instant::now();
    sample
        .par_iter()
        .for_each(|t| assert!(t.verify_signature().is_ok()));
    sample.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let net = Network::builtin("dev").unwrap();
    let chain_id = net.params.chain_id;
    let fee = net.params.min_fee.0;
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::ephemeral(dir.path().to_path_buf());
    config.mempool.max_bytes = 64 << 20;
    let node = service::launch(net.clone(), config).await.unwrap();
    let url = node.rpc_url();
    let mut auth = http::HeaderMap::new();
    auth.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&node.credentials().unwrap().header()).unwrap(),
    );
    let rpc = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(300))
        .set_headers(auth.clone())
        .build(&url)
        .unwrap();
    let prefix = net.params.address_prefix.clone();
    let miner = dev_accounts()[9].address.encode(&prefix);

    // fund the senders from the dev accounts, 64 per dev account per block
    let dev = dev_accounts();
    let senders: Vec<SigningKey> = (0..SENDERS).map(sender_key).collect();
    let mut nonces = vec![0u64; dev.len()];
    for chunk in senders.chunks(dev.len() * 60) {
        for (j, key) in chunk.iter().enumerate() {
            let d = j % dev.len();
            let to = Address::from_public_key(&public_key(key));
            let t = transfer(&dev[d].key, chain_id, to, 100 * COIN, fee, nonces[d]);
            nonces[d] += 1;
            rpc.tx_submit(hex::encode(t.encode())).await.unwrap();
        }
        rpc.mining_generate(1, miner.clone()).await.unwrap();
    }
    let sink = dev[8].address;
    let txs: Vec<SignedTransfer> = senders
        .par_iter()
        .flat_map_iter(|k| (0..PER_SENDER).map(move |n| transfer(k, chain_id, sink, COIN, fee, n)))
        .collect();
    let verify_rate = verify_rate_all_cores(&txs);
    let hexes: Arc<Vec<String>> = Arc::new(txs.iter().map(|t| hex::encode(t.encode())).collect());

    // submit: connection c takes every CONNECTIONS-th transfer, so each
    // sender's nonces arrive roughly in order
    let start = Instant::now();
    let clients = (0..CONNECTIONS)
        .map(|_| {
            HttpClientBuilder::default()
                .request_timeout(Duration::from_secs(60))
                .set_headers(auth.clone())
                .build(&url)
                .unwrap()
        })
        .collect();
    let accepted = support::submit_spread(clients, hexes.clone()).await;
    let secs = start.elapsed().as_secs_f64();
    let rate = accepted as f64 / secs;
    let pool = rpc.mempool_get_info().await.unwrap();

    // empty blocks from mining_generate: clear the pool first
    while rpc.mempool_get_info().await.unwrap().count > 0 {
        rpc.mining_generate(1, miner.clone()).await.unwrap();
    }
    let n = 4_000;
    let start = Instant::now();
    rpc.mining_generate(n, miner.clone()).await.unwrap();
    let blocks_per_sec = f64::from(n) / start.elapsed().as_secs_f64();

    println!(
        "== cairn RPC load ({} cores, {CONNECTIONS} connections) ==",
        rayon::current_num_threads()
    );
    println!(
        "tx_submit        {accepted} of {} accepted in {secs:.2} s = {rate:.0} /s   target 10000 /s: ratio {:.2}   raw verify_strict on all cores {verify_rate:.0} /s: ratio {:.2}   (mempool now {} transfers)",
        hexes.len(),
        rate / 10_000.0,
        rate / verify_rate,
        pool.count
    );
    println!(
        "mining_generate  {n} empty blocks at {blocks_per_sec:.0} blocks/s   target 2000 /s: ratio {:.2}",
        blocks_per_sec / 2000.0
    );
    node.stop().await;
}
