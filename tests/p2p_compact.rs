//! Compact block relay (issue 11) against an in-process node, with a raw
//! peer (tests/support/raw_peer.rs) on the other side:
//!
//! 1. a block the node mines reaches a peer that asked for compact blocks
//!    as header, coinbase and short ids, in under a tenth of the full
//!    block's bytes; the peer rebuilds it from the transfers it has, and the
//!    node serves the transfers it is asked for (`GetBlockTxs`);
//! 2. the node rebuilds a compact block from its mempool without asking for
//!    anything when it has every transfer; asks, in one `GetBlockTxs`, for
//!    exactly the transfers it lacks; and fetches the full block (the
//!    header path: `GetBlocks`) when the answer is wrong or the rebuilt
//!    transfers do not match the header's root, without holding it against
//!    the peer.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cairn_api::CairnApiClient;
use cairn_consensus::testkit::ChainBuilder;
use cairn_consensus::{Block, BlockHash, SignedTransfer};
use cairn_genesis::dev_accounts;
use cairn_node::config::NodeConfig;
use cairn_node::service::{self, Running};
use cairn_p2p::compact::{BlockTxs, CompactBlock, GetBlockTxs, PartialBlock, match_short_ids};
use cairn_p2p::message::Message;
use support::raw_peer::*;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::ephemeral(dir.to_path_buf());
    c.p2p.dev_loopback_is_local = false;
    c.p2p.ping_interval_ms = 1_000;
    c.p2p.ping_timeout_ms = 5_000;
    c
}

async fn launch(dir: &Path) -> Running {
    capture_logs();
    service::launch(dev(), config(dir))
        .await
        .expect("node starts")
}

fn p2p(r: &Running) -> SocketAddr {
    r.p2p_addr().expect("P2P runs")
}

/// `per_sender` transfers from each of dev accounts `senders`, starting at
/// each sender's `nonce`.
fn transfers(senders: std::ops::Range<usize>, per_sender: u64, nonce: u64) -> Vec<SignedTransfer> {
    let acc = dev_accounts();
    let chain_id = dev().params.chain_id;
    let mut out = Vec::new();
    for n in nonce..nonce + per_sender {
        for s in senders.clone() {
            out.push(sign(&acc[s].key, chain_id, acc[0].address, 1000, 1000, n));
        }
    }
    out
}

async fn submit(node: &Running, txs: &[SignedTransfer]) {
    let rpc = node.client();
    for t in txs {
        rpc.tx_submit(hex_of(t)).await.expect("tx_submit");
    }
}

async fn tip(node: &Running) -> BlockHash {
    node.client()
        .chain_get_info()
        .await
        .expect("info")
        .best_hash
}

async fn wait_tip(node: &Running, hash: BlockHash) {
    wait_for(
        &format!("block {hash} as the node's tip"),
        WAIT,
        || async move { (tip(node).await == hash).then_some(()) },
        || async move { format!("tip {}", tip(node).await) },
    )
    .await;
}

/// Everything the node sends until it answers a ping sent now (the node
/// answers in order, so this is all it sent before).
async fn drain(p: &mut RawPeer) -> Vec<Message> {
    let n: u64 = rand::random();
    p.send(&Message::Ping(n)).await.unwrap();
    let mut out = Vec::new();
    loop {
        match p.recv(WAIT).await {
            Recv::Msg(Message::Pong(m)) if m == n => return out,
            Recv::Msg(m) => out.push(m),
            other => panic!("waiting for a pong: {other:?}; before that {out:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mined_block_travels_compact_and_its_transfers_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = launch(dir.path()).await;
    let mut peer = RawPeer::connect(p2p(&node), hello(dev().genesis_hash))
        .await
        .unwrap();
    peer.send(&Message::SendCompact).await.unwrap();
    // the node asks for compact blocks too
    peer.expect("SendCompact", WAIT, |m| {
        matches!(m, Message::SendCompact).then_some(())
    })
    .await;
    drain(&mut peer).await;

    let txs = transfers(2..10, 40, 0);
    submit(&node, &txs).await;
    let miner = dev_accounts()[1]
        .address
        .encode(&dev().params.address_prefix);
    let hash = node.client().mining_generate(1, miner).await.unwrap()[0];
    let compact = peer
        .expect("the compact block", WAIT, |m| match m {
            Message::CompactBlock(c) if c.hash() == hash => Some((**c).clone()),
            Message::NewHeaders(h) if h.iter().any(|h| h.hash() == hash) => {
                panic!("the block was announced by header, not as a compact block")
            }
            _ => None,
        })
        .await;
    assert_eq!(compact.short_ids.len(), txs.len());

    // the full block, for comparison
    peer.send(&Message::GetBlocks(vec![hash])).await.unwrap();
    let full: Block = peer
        .expect("the full block", WAIT, |m| match m {
            Message::Block(b) if b.hash() == hash => Some((**b).clone()),
            _ => None,
        })
        .await;
    let compact_bytes = Message::CompactBlock(Box::new(compact.clone()))
        .encode()
        .len();
    let full_bytes = Message::Block(Box::new(full.clone())).encode().len();
    println!(
        "{} transfers: compact {compact_bytes} B, full {full_bytes} B ({:.3})",
        txs.len(),
        compact_bytes as f64 / full_bytes as f64
    );
    assert!(compact_bytes * 10 < full_bytes);

    // rebuilt from what the peer has, less three transfers it then asks for
    let have: Vec<(cairn_consensus::TxId, SignedTransfer)> = txs
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 7, txs.len() - 1].contains(i))
        .map(|(_, t)| (t.id(), *t))
        .collect();
    let slots = match_short_ids(
        &compact.key(),
        &compact.short_ids,
        have.iter().map(|(i, t)| (i, t)),
    );
    let mut partial = PartialBlock::new(compact, slots);
    let missing = partial.missing();
    assert_eq!(missing.len(), 3);
    peer.send(&Message::GetBlockTxs(GetBlockTxs {
        block: hash,
        indexes: missing,
    }))
    .await
    .unwrap();
    let answer = peer
        .expect("the missing transfers", WAIT, |m| match m {
            Message::BlockTxs(b) => Some(b.clone()),
            _ => None,
        })
        .await;
    partial.fill(answer).unwrap();
    assert_eq!(partial.rebuild().unwrap(), full);

    // an index past the block's end, or an unknown block: NotFound
    for (block, index) in [(hash, 10_000u32), (BlockHash([7; 32]), 0)] {
        peer.send(&Message::GetBlockTxs(GetBlockTxs {
            block,
            indexes: vec![index],
        }))
        .await
        .unwrap();
        peer.expect("NotFound", WAIT, |m| match m {
            Message::NotFound(h) if h == &vec![block] => Some(()),
            Message::BlockTxs(_) => panic!("transfers served for a bad request"),
            _ => None,
        })
        .await;
    }
    node.stop().await;
}

/// The next block on `b` holding `txs` (appended to `b`).
fn next_block(b: &mut ChainBuilder, txs: Vec<SignedTransfer>) -> Block {
    let block = b.build(txs, dev_accounts()[1].address);
    b.push(block.clone());
    block
}

fn compact_of(block: &Block) -> Message {
    Message::CompactBlock(Box::new(CompactBlock::of(block, rand::random())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_rebuilds_compact_blocks_asks_for_what_it_lacks_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = launch(dir.path()).await;
    let mut peer = RawPeer::connect(p2p(&node), hello(dev().genesis_hash))
        .await
        .unwrap();
    let mut chain = dev_builder();

    // 1. every transfer in its mempool: rebuilt without a request
    let t1 = transfers(2..6, 10, 0);
    submit(&node, &t1).await;
    let b1 = next_block(&mut chain, t1);
    peer.send(&compact_of(&b1)).await.unwrap();
    wait_tip(&node, b1.hash()).await;
    for m in drain(&mut peer).await {
        assert!(
            !matches!(m, Message::GetBlockTxs(_) | Message::GetBlocks(_)),
            "the node asked for {m:?} though it had every transfer"
        );
    }

    // 2. half of them: one request for exactly the rest
    let t2 = transfers(2..6, 10, 10);
    let (have, lack): (Vec<_>, Vec<_>) = t2.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    submit(&node, &have.iter().map(|(_, t)| **t).collect::<Vec<_>>()).await;
    let lack_idx: Vec<u32> = lack.iter().map(|(i, _)| *i as u32).collect();
    let b2 = next_block(&mut chain, t2);
    peer.send(&compact_of(&b2)).await.unwrap();
    let req = peer
        .expect("GetBlockTxs", WAIT, |m| match m {
            Message::GetBlockTxs(r) => Some(r.clone()),
            Message::GetBlocks(_) => panic!("the node fetched the full block"),
            _ => None,
        })
        .await;
    assert_eq!(req.block, b2.hash());
    assert_eq!(req.indexes, lack_idx);
    let transfers_asked = req
        .indexes
        .iter()
        .map(|i| b2.transfers[*i as usize])
        .collect();
    peer.send(&Message::BlockTxs(BlockTxs {
        block: b2.hash(),
        transfers: transfers_asked,
    }))
    .await
    .unwrap();
    wait_tip(&node, b2.hash()).await;

    // 3. a wrong answer (one transfer short): the full block instead
    let t3 = transfers(2..6, 5, 20);
    let b3 = next_block(&mut chain, t3);
    peer.send(&compact_of(&b3)).await.unwrap();
    let req = peer
        .expect("GetBlockTxs", WAIT, |m| match m {
            Message::GetBlockTxs(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(req.indexes.len(), b3.transfers.len());
    let mut short = b3.transfers.clone();
    short.pop();
    peer.send(&Message::BlockTxs(BlockTxs {
        block: b3.hash(),
        transfers: short,
    }))
    .await
    .unwrap();
    serve_full_block(&mut peer, &b3).await;
    wait_tip(&node, b3.hash()).await;

    // 4. short ids that rebuild the wrong transfers (as a collision
    //    would): the root does not match, the full block instead
    let t4 = transfers(2..6, 5, 25);
    submit(&node, &t4).await;
    let b4 = next_block(&mut chain, t4);
    let mut cb = CompactBlock::of(&b4, 1);
    cb.short_ids.swap(0, 1);
    peer.send(&Message::CompactBlock(Box::new(cb)))
        .await
        .unwrap();
    serve_full_block(&mut peer, &b4).await;
    wait_tip(&node, b4.hash()).await;

    // none of that was held against the peer
    drain(&mut peer).await;
    let peers = node.client().net_get_peers().await.unwrap();
    assert_eq!(peers.len(), 1, "the peer is still connected: {peers:?}");
    node.stop().await;
}

/// Waits for the node's `GetBlocks` naming `block` and sends it.
async fn serve_full_block(peer: &mut RawPeer, block: &Block) {
    let hash = block.hash();
    peer.expect("GetBlocks for the full block", WAIT, |m| match m {
        Message::GetBlocks(h) if h.contains(&hash) => Some(()),
        Message::GetHeaders(_) => None,
        _ => None,
    })
    .await;
    peer.send(&Message::Block(Box::new(block.clone())))
        .await
        .unwrap();
}
