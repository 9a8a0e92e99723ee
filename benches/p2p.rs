//! P2P on loopback, nodes in this process:
//!
//! - one-hop block propagation: a block mined on A until it is B's tip,
//!   median and p99 over 200 blocks, next to the loopback TCP round trip
//!   measured in the same run (the protocol needs 1.5 round trips: announce,
//!   request, block) plus B's own time to validate such a block;
//! - sync throughput: a fresh node syncing 5,000 blocks holding 50,000
//!   transfers from one peer, blocks and transfers per second, against the
//!   rate at which a node connects the same blocks handed to it directly
//!   (no network) in the same run;
//! - the encrypted handshake (Noise XX with the node-id signatures) over
//!   loopback TCP, median and p99 over 300 handshakes, next to a TCP connect
//!   plus 1.5 round trips (the handshake's three messages) in the same run;
//! - encrypted frame throughput (encrypt and decrypt of 1 MiB frames),
//!   next to hashing the same bytes with SHA-256 in the same run.
//!
//! Run: `cargo bench --bench p2p`. Results go in benches/README.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_consensus::transfer::public_key;
use cairn_consensus::{Amount, Block, Height, Transfer};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::node::{Node, Source};
use cairn_node::service::{self, Running};
use cairn_node::store::ChainStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLOCKS: u64 = 5_000;
const PER_BLOCK: u64 = 10;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn launch(dir: &std::path::Path, peers: Vec<String>) -> Running {
    let mut c = NodeConfig::ephemeral(dir.to_path_buf());
    c.peers = peers;
    service::launch(Network::builtin("dev").unwrap(), c)
        .await
        .unwrap()
}

async fn tcp_rtt() -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).await.is_ok() {
            if s.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut samples = Vec::new();
    let mut b = [7u8; 64];
    for _ in 0..2000 {
        let t = Instant::now();
        c.write_all(&b).await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        samples.push(t.elapsed());
    }
    percentile(&mut samples, 0.5)
}

/// Median and p99 of 300 Noise handshakes over loopback TCP, and the
/// median of a TCP connect alone.
async fn handshakes() -> (Duration, Duration, Duration) {
    use cairn_p2p::transport::{Intro, LocalKeys, initiate, respond};
    let intro = Intro {
        protocol_version: cairn_p2p::message::PROTOCOL_VERSION,
        genesis: Network::builtin("dev").unwrap().genesis_hash,
    };
    let server = Arc::new(LocalKeys::new(&cairn_p2p::NodeKey::generate()));
    let client = LocalKeys::new(&cairn_p2p::NodeKey::generate());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = server.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let keys = keys.clone();
            tokio::spawn(async move {
                let _ = respond(&mut s, &keys, intro).await;
            });
        }
    });
    let (mut shakes, mut connects) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        connects.push(t.elapsed());
        s.set_nodelay(true).unwrap();
        initiate(&mut s, &client, intro, None).await.unwrap();
        shakes.push(t.elapsed());
    }
    (
        percentile(&mut shakes.clone(), 0.5),
        percentile(&mut shakes, 0.99),
        percentile(&mut connects, 0.5),
    )
}

/// MB/s through encrypt + decrypt of 1 MiB frames, and SHA-256 MB/s over
/// the same bytes.
async fn frame_throughput() -> (f64, f64) {
    use bytes::{Bytes, BytesMut};
    use cairn_p2p::transport::{Intro, LocalKeys, initiate, respond};
    use sha2::Digest;
    use tokio_util::codec::{Decoder, Encoder};
    let intro = Intro {
        protocol_version: cairn_p2p::message::PROTOCOL_VERSION,
        genesis: Network::builtin("dev").unwrap().genesis_hash,
    };
    let (ka, kb) = (
        LocalKeys::new(&cairn_p2p::NodeKey::generate()),
        LocalKeys::new(&cairn_p2p::NodeKey::generate()),
    );
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    let (ra, rb) = tokio::join!(
        initiate(&mut a, &ka, intro, None),
        respond(&mut b, &kb, intro)
    );
    let (mut enc, mut dec) = (ra.unwrap().0, rb.unwrap().0);
    dec.set_limit(2 << 20);
    let frame = Bytes::from(vec![0x5au8; 1 << 20]);
    let rounds = 64;
    let t = Instant::now();
    for _ in 0..rounds {
        let mut wire = BytesMut::new();
        enc.encode(frame.clone(), &mut wire).unwrap();
        let out = dec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(out.len(), frame.len());
    }
    let noise = (rounds as f64) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..rounds {
        h.update(&frame);
    }
    std::hint::black_box(h.finalize());
    let sha = (rounds as f64) / t.elapsed().as_secs_f64();
    (noise * 1.048_576, sha * 1.048_576)
}

async fn wait_tip(node: &Arc<Node>, height: u64) {
    while node.tip().header.height.0 < height {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let net = Network::builtin("dev").unwrap();

    // ----- the encrypted transport alone -----
    let (shake, shake99, connect) = handshakes().await;
    let rtt = tcp_rtt().await;
    let limit = connect + rtt * 3 / 2;
    println!("== cairn P2P (loopback, nodes in one process) ==");
    println!(
        "encrypted handshake  median {:.3} ms  p99 {:.3} ms   TCP connect ({:.3} ms) + 1.5 x RTT ({:.0} us) = {:.3} ms   ratio {:.1}",
        shake.as_secs_f64() * 1e3,
        shake99.as_secs_f64() * 1e3,
        connect.as_secs_f64() * 1e3,
        rtt.as_secs_f64() * 1e6,
        limit.as_secs_f64() * 1e3,
        shake.as_secs_f64() / limit.as_secs_f64()
    );
    let (noise, sha) = frame_throughput().await;
    println!(
        "encrypted frames     {noise:.0} MB/s encrypt+decrypt   SHA-256 over the same bytes {sha:.0} MB/s   ratio {:.2}",
        noise / sha
    );
    let prefix = net.params.address_prefix.clone();
    let accounts = dev_accounts();
    let miner = accounts[9].address;
    let _ = prefix;

    // ----- one-hop propagation -----
    let a = launch(&dir.path().join("a"), vec![]).await;
    let b = launch(
        &dir.path().join("b"),
        vec![a.p2p_addr().unwrap().to_string()],
    )
    .await;
    let b_p2p = b.p2p.clone().unwrap();
    while b_p2p.status().outbound == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut heads_a = a.node.subscribe_heads();
    let mut heads_b = b.node.subscribe_heads();
    let mut latencies = Vec::new();
    let mut validate = Vec::new();
    for _ in 0..200 {
        let n = a.node.clone();
        tokio::task::spawn_blocking(move || n.generate(1, miner))
            .await
            .unwrap()
            .unwrap();
        let ha = heads_a.recv().await.unwrap();
        let t_a = Instant::now();
        loop {
            let hb = heads_b.recv().await.unwrap();
            if hb.hash == ha.hash {
                break;
            }
        }
        latencies.push(t_a.elapsed());
    }
    // what B spends validating one such block, without the network
    let c = launch(&dir.path().join("c"), vec![]).await;
    for h in 1..=50u64 {
        let hash = a.node.store().hash_at(Height(h)).unwrap().unwrap();
        let block = a.node.store().block(&hash).unwrap().unwrap();
        let n = c.node.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || n.submit_block(block, Source::Rpc))
            .await
            .unwrap()
            .unwrap();
        validate.push(t.elapsed());
    }
    let rtt = tcp_rtt().await;
    let median = percentile(&mut latencies, 0.5);
    let p99 = percentile(&mut latencies, 0.99);
    let val = percentile(&mut validate, 0.5);
    let limit = rtt * 3 / 2 + val;
    println!(
        "one-hop propagation  median {:.2} ms  p99 {:.2} ms   limit 1.5 x TCP RTT ({:.0} us) + validation ({:.2} ms) = {:.2} ms   ratio median/limit {:.1}",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        rtt.as_secs_f64() * 1e6,
        val.as_secs_f64() * 1e3,
        limit.as_secs_f64() * 1e3,
        median.as_secs_f64() / limit.as_secs_f64()
    );
    a.stop().await;
    b.stop().await;
    c.stop().await;

    // ----- sync throughput -----
    let src = launch(&dir.path().join("src"), vec![]).await;
    let mut nonces = [0u64; 9];
    for _ in 0..BLOCKS {
        let n = src.node.clone();
        let mut txs = Vec::new();
        for k in 0..PER_BLOCK as usize {
            let from = k % 9;
            let key = &accounts[from].key;
            txs.push(
                Transfer {
                    chain_id: net.params.chain_id,
                    from: public_key(key),
                    to: accounts[(from + 1) % 9].address,
                    amount: Amount(1000),
                    fee: net.params.min_fee,
                    nonce: nonces[from],
                }
                .sign(key),
            );
            nonces[from] += 1;
        }
        tokio::task::spawn_blocking(move || {
            for t in txs {
                n.submit_transfer(t, None).unwrap();
            }
            n.generate(1, miner).unwrap();
        })
        .await
        .unwrap();
    }
    let top = src.node.tip().header.height.0;
    let transfers = top * PER_BLOCK;

    // local limit: the same blocks handed over directly, in batches of 500
    let blocks: Vec<Block> = (1..=top)
        .map(|h| {
            let hash = src.node.store().hash_at(Height(h)).unwrap().unwrap();
            src.node.store().block(&hash).unwrap().unwrap()
        })
        .collect();
    let local = launch(&dir.path().join("local"), vec![]).await;
    let t = Instant::now();
    for chunk in blocks.chunks(500) {
        let n = local.node.clone();
        let chunk = chunk.to_vec();
        tokio::task::spawn_blocking(move || {
            for r in n.submit_blocks(chunk, Source::Rpc) {
                r.unwrap();
            }
        })
        .await
        .unwrap();
    }
    let local_rate = top as f64 / t.elapsed().as_secs_f64();
    local.stop().await;

    let t = Instant::now();
    let fresh = launch(
        &dir.path().join("fresh"),
        vec![src.p2p_addr().unwrap().to_string()],
    )
    .await;
    wait_tip(&fresh.node, top).await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "sync {top} blocks / {transfers} transfers from one peer: {:.0} blocks/s, {:.0} transfers/s   limit (same blocks, no network) {:.0} blocks/s   ratio {:.2}",
        top as f64 / secs,
        transfers as f64 / secs,
        local_rate,
        (top as f64 / secs) / local_rate
    );
    fresh.stop().await;
    src.stop().await;
}
