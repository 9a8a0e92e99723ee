//! Several nodes on loopback: gossip, partitions that heal, restarts, and a
//! hostile peer. Nodes run in-process with ports chosen by the OS; every
//! wait polls with a deadline and prints every node's state on timeout.

mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cairn_api::{CairnApiClient, PeerRef, TxStatus};
use cairn_consensus::{Address, BlockHash, COIN, TxId};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::service::{self, Running};
use cairn_p2p::message::{Hello, Message, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use jsonrpsee_http_client::HttpClient;
use support::raw_peer::{Wire, secure};
use support::*;

fn dev() -> Network {
    Network::builtin("dev").unwrap()
}

fn text(a: &Address) -> String {
    a.encode(&dev().params.address_prefix)
}

fn config(dir: &Path, peers: Vec<String>) -> NodeConfig {
    let mut c = NodeConfig::ephemeral(dir.to_path_buf());
    c.peers = peers;
    c.p2p.request_timeout_ms = 3_000;
    c.p2p.ping_interval_ms = 1_000;
    c.p2p.ping_timeout_ms = 5_000;
    c
}

async fn start(dir: &Path, peers: Vec<String>) -> Running {
    init_logs();
    service::launch(dev(), config(dir, peers))
        .await
        .expect("node starts")
}

fn p2p(r: &Running) -> String {
    r.p2p_addr().expect("p2p runs").to_string()
}

/// Every node's tip, peers and mempool, for timeout messages.
async fn describe(rpcs: &[HttpClient]) -> String {
    let mut out = String::new();
    for (i, rpc) in rpcs.iter().enumerate() {
        let info = rpc.chain_get_info().await;
        let peers = rpc.net_get_peers().await;
        let pool = rpc.mempool_get_info().await;
        out.push_str(&format!(
            "node {i}: {} | peers {} | mempool {}\n",
            info.map(|i| format!("height {} tip {}", i.height, i.best_hash))
                .unwrap_or_else(|e| e.to_string()),
            peers
                .map(|p| p
                    .iter()
                    .map(|x| format!("{}@{}", x.address, x.height))
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_else(|e| e.to_string()),
            pool.map(|p| p.count.to_string())
                .unwrap_or_else(|e| e.to_string()),
        ));
    }
    out
}

/// Waits until `check` holds for every node.
async fn wait_all<F, Fut>(what: &str, rpcs: &[HttpClient], timeout: Duration, check: F)
where
    F: Fn(HttpClient) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(
        what,
        timeout,
        || {
            let futs: Vec<_> = rpcs.iter().map(|r| check(r.clone())).collect();
            async move {
                for f in futs {
                    if !f.await {
                        return None;
                    }
                }
                Some(())
            }
        },
        || describe(rpcs),
    )
    .await
}

async fn tip(rpc: &HttpClient) -> Option<BlockHash> {
    rpc.chain_get_info().await.ok().map(|i| i.best_hash)
}

async fn status(rpc: &HttpClient, id: TxId) -> Option<TxStatus> {
    rpc.chain_get_transaction(id).await.ok().map(|t| t.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_reaches_every_mempool_of_five_and_is_mined() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Running> = Vec::new();
    for i in 0..5 {
        let peers = nodes.last().map(|n| vec![p2p(n)]).unwrap_or_default();
        nodes.push(start(&dir.path().join(format!("n{i}")), peers).await);
    }
    let rpcs: Vec<HttpClient> = nodes.iter().map(|n| n.client()).collect();
    wait_all(
        "every node to have a peer",
        &rpcs,
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| !p.is_empty())
                .unwrap_or(false)
        },
    )
    .await;

    let a = dev_accounts();
    let tx = sign(
        &a[0].key,
        dev().params.chain_id,
        a[7].address,
        3 * COIN,
        1000,
        0,
    );
    let id = rpcs[0].tx_submit(hex_of(&tx)).await.unwrap();
    wait_all(
        "the transfer in every mempool",
        &rpcs,
        Duration::from_secs(30),
        |r| async move { status(&r, id).await == Some(TxStatus::Pending) },
    )
    .await;

    let mined = rpcs[4]
        .mining_generate(1, text(&a[9].address))
        .await
        .unwrap()[0];
    wait_all(
        "every node on the new block with the transfer confirmed",
        &rpcs,
        Duration::from_secs(30),
        |r| async move {
            tip(&r).await == Some(mined) && status(&r, id).await == Some(TxStatus::Confirmed)
        },
    )
    .await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_heals_onto_the_branch_with_more_work() {
    let dir = tempfile::tempdir().unwrap();
    let a0 = start(&dir.path().join("a0"), vec![]).await;
    let a1 = start(&dir.path().join("a1"), vec![p2p(&a0)]).await;
    let b0 = start(&dir.path().join("b0"), vec![]).await;
    let b1 = start(&dir.path().join("b1"), vec![p2p(&b0)]).await;
    let all: Vec<HttpClient> = [&a0, &a1, &b0, &b1].iter().map(|n| n.client()).collect();
    let (ga, gb) = (&all[..2], &all[2..]);
    wait_all(
        "each group connected",
        &all,
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| p.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;

    let acc = dev_accounts();
    let chain_id = dev().params.chain_id;
    // group A mines 3 blocks holding ta; group B mines 5 holding tb
    let ta = rpcs_submit(
        &ga[0],
        &sign(&acc[0].key, chain_id, acc[5].address, COIN, 1000, 0),
    )
    .await;
    let tb = rpcs_submit(
        &gb[0],
        &sign(&acc[1].key, chain_id, acc[6].address, COIN, 1000, 0),
    )
    .await;
    let a_tip = *ga[0]
        .mining_generate(3, text(&acc[2].address))
        .await
        .unwrap()
        .last()
        .unwrap();
    let b_tip = *gb[0]
        .mining_generate(5, text(&acc[3].address))
        .await
        .unwrap()
        .last()
        .unwrap();
    wait_all(
        "group A on its branch",
        ga,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(a_tip) },
    )
    .await;
    wait_all(
        "group B on its branch",
        gb,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(b_tip) },
    )
    .await;
    assert_eq!(status(&ga[1], ta).await, Some(TxStatus::Confirmed));

    // heal
    ga[0].net_add_peer(p2p(&b0)).await.unwrap();
    wait_all(
        "every node on the heavier branch",
        &all,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(b_tip) },
    )
    .await;
    // ta was only in the losing branch: it is pending again everywhere, then mined
    wait_all(
        "the losing branch's transfer back in every mempool",
        &all,
        Duration::from_secs(30),
        |r| async move { status(&r, ta).await == Some(TxStatus::Pending) },
    )
    .await;
    assert_eq!(status(&all[0], tb).await, Some(TxStatus::Confirmed));
    let next = all[3]
        .mining_generate(1, text(&acc[4].address))
        .await
        .unwrap()[0];
    wait_all(
        "the returned transfer mined on every node",
        &all,
        Duration::from_secs(30),
        |r| async move {
            tip(&r).await == Some(next) && status(&r, ta).await == Some(TxStatus::Confirmed)
        },
    )
    .await;
    for n in [a0, a1, b0, b1] {
        n.stop().await;
    }
}

async fn rpcs_submit(rpc: &HttpClient, tx: &cairn_consensus::SignedTransfer) -> TxId {
    rpc.tx_submit(hex_of(tx)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_rejoins_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let n0 = start(&dir.path().join("n0"), vec![]).await;
    let n1 = start(&dir.path().join("n1"), vec![p2p(&n0)]).await;
    let r0 = n0.client();
    let miner = text(&dev_accounts()[1].address);
    let first = *r0
        .mining_generate(10, miner.clone())
        .await
        .unwrap()
        .last()
        .unwrap();
    let rpcs = vec![r0.clone(), n1.client()];
    wait_all(
        "both at height 10",
        &rpcs,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(first) },
    )
    .await;

    n1.stop().await;
    let later = *r0.mining_generate(25, miner).await.unwrap().last().unwrap();
    let n1 = start(&dir.path().join("n1"), vec![p2p(&n0)]).await;
    let rpcs = vec![r0, n1.client()];
    // it reopened its chain (it may already be syncing past it)
    assert!(!n1.report.created, "kept its chain");
    assert!(rpcs[1].chain_get_info().await.unwrap().height >= 10);
    wait_all(
        "the restarted node caught up",
        &rpcs,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(later) },
    )
    .await;
    n0.stop().await;
    n1.stop().await;
}

/// The encrypted handshake as a fresh node of the dev network.
async fn framed(stream: tokio::net::TcpStream) -> Wire {
    let key = cairn_p2p::NodeKey::generate();
    secure(stream, true, dev().genesis_hash, &key)
        .await
        .expect("the encrypted handshake")
        .0
}

/// Whether the node closed a connection still in cleartext within `timeout`.
async fn closed_raw(s: &mut tokio::net::TcpStream, timeout: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether the node closed the connection within `timeout`.
async fn closed(f: &mut Wire, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, f.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn hello(genesis: BlockHash) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        network: "dev".into(),
        genesis,
        best_height: 0,
        best_hash: genesis,
        best_work: Default::default(),
        listen_port: None,
        user_agent: "hostile-test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_peer_is_cut_off_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("victim"), vec![]);
    // loopback peers are the operator's own on dev: this test is about strangers
    cfg.p2p.dev_loopback_is_local = false;
    cfg.p2p.rate_per_sec = 200;
    cfg.p2p.rate_burst = 400;
    let victim = service::launch(dev(), cfg).await.unwrap();
    let friend = start(&dir.path().join("friend"), vec![p2p(&victim)]).await;
    let addr = victim.p2p_addr().unwrap();
    let rpcs = vec![victim.client(), friend.client()];
    let genesis = dev().genesis_hash;
    let wait = Duration::from_secs(10);

    // a cleartext peer of the old protocol (a length-prefixed hello), an
    // oversized length and garbage: dropped before any key work, unanswered
    use tokio::io::AsyncWriteExt;
    let old_hello = {
        let frame = Message::Hello(hello(genesis)).encode();
        let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&frame);
        bytes
    };
    for junk in [
        old_hello,
        (50u32 << 20).to_be_bytes().to_vec(),
        vec![0xee; 100],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&junk).await.unwrap();
        assert!(
            closed_raw(&mut s, wait).await,
            "cleartext or garbage: connection closed"
        );
    }

    // a handshake from another network: refused in cleartext, naming both
    // genesis hashes
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let key = cairn_p2p::NodeKey::generate();
    let reason = match secure(s, true, BlockHash([7; 32]), &key).await {
        Err(support::raw_peer::HandshakeError::Unexpected(why)) => why,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("another network completed a handshake"),
    };
    assert!(reason.contains("another network"), "{reason}");
    assert!(
        reason.contains(&"07".repeat(32)) && reason.contains(&genesis.to_hex()),
        "{reason}"
    );

    // a proper handshake, then a block with bad proof of work: disconnected and banned
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let local = socket.local_addr().unwrap();
    let mut f = framed(socket.connect(addr).await.unwrap()).await;
    f.send(Bytes::from(Message::Hello(hello(genesis)).encode()))
        .await
        .unwrap();
    let _their_hello = tokio::time::timeout(wait, f.next()).await.unwrap();
    let mut block = dev().genesis.clone();
    block.header.parent = genesis;
    block.header.height = cairn_consensus::Height(1);
    block.header.time_ms += 1000;
    // find a nonce that fails the target
    while block.header.target.is_met_by(&block.header.hash()) {
        block.header.nonce += 1;
    }
    f.send(Bytes::from(Message::Block(Box::new(block)).encode()))
        .await
        .unwrap();
    assert!(
        closed(&mut f, wait).await,
        "bad proof of work: connection closed"
    );
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(local).unwrap();
    // refused at accept (no handshake) or after the hello
    if let Ok(stream) = socket.connect(addr).await
        && let Ok((mut f, _)) = secure(stream, true, genesis, &key).await
    {
        let _ = f
            .send(Bytes::from(Message::Hello(hello(genesis)).encode()))
            .await;
        assert!(closed(&mut f, wait).await, "the banned address is refused");
    }

    // a flood of pings after a proper handshake
    let mut f = framed(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    f.send(Bytes::from(Message::Hello(hello(genesis)).encode()))
        .await
        .unwrap();
    let _ = tokio::time::timeout(wait, f.next()).await.unwrap();
    for i in 0..5_000u64 {
        if f.send(Bytes::from(Message::Ping(i).encode()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(closed(&mut f, wait).await, "flood: connection closed");

    // a flood of blocks the node already has (they cost the sender nothing)
    let mut f = framed(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    f.send(Bytes::from(Message::Hello(hello(genesis)).encode()))
        .await
        .unwrap();
    let _ = tokio::time::timeout(wait, f.next()).await.unwrap();
    let old = Message::Block(Box::new(dev().genesis.clone())).encode();
    for _ in 0..3_000 {
        if f.send(Bytes::from(old.clone())).await.is_err() {
            break;
        }
    }
    assert!(
        closed(&mut f, wait).await,
        "unrequested old blocks: connection closed"
    );

    // meanwhile the honest peer is still served
    let mined = rpcs[0]
        .mining_generate(2, text(&dev_accounts()[1].address))
        .await
        .unwrap()[1];
    wait_all(
        "the honest peer still follows the victim",
        &rpcs,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(mined) },
    )
    .await;
    let peers = rpcs[0].net_get_peers().await.unwrap();
    assert_eq!(peers.len(), 1, "only the honest peer remains: {peers:?}");
    let err = rpcs[0]
        .net_disconnect_peer(PeerRef::Id(999_999))
        .await
        .unwrap_err();
    assert_eq!(code(&err), cairn_api::codes::PEER_FAILED);
    victim.stop().await;
    friend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bans_are_listed_set_and_cleared_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), vec![]).await;
    let b = start(&dir.path().join("b"), vec![p2p(&a)]).await;
    let (ra, rb) = (a.client(), b.client());
    let both = vec![ra.clone(), rb.clone()];
    wait_all(
        "a and b connected",
        &both,
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| p.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;
    assert!(ra.net_list_banned().await.unwrap().is_empty());

    // bad targets are refused with a message that says what to send
    for bad in ["not an address", "10.0.0.0/33", "1.2.3.4:0"] {
        let e = ra.net_set_ban(bad.into(), 60).await.unwrap_err();
        assert_eq!(code(&e), -32602, "{bad}: {e}");
    }
    // a subnet ban lists with its reason and origin
    ra.net_set_ban("203.0.113.0/24".into(), 3600).await.unwrap();
    let bans = ra.net_list_banned().await.unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].target, "203.0.113.0/24");
    assert_eq!(bans[0].origin, "operator");
    assert!(bans[0].until_ms > bans[0].created_ms + 3_500_000);

    // banning a connected peer's exact address drops it, and it stays out
    let b_addr = p2p(&b);
    ra.net_set_ban(b_addr.clone(), 3600).await.unwrap();
    wait_all(
        "the banned peer dropped",
        &both,
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| p.is_empty())
                .unwrap_or(false)
        },
    )
    .await;
    // the banned side is refused, and told why
    let e = rb.net_add_peer(p2p(&a)).await.unwrap_err();
    assert!(e.to_string().contains("banned"), "{e}");
    // lifting it with a duration of 0, then clearing the rest
    ra.net_set_ban(b_addr.clone(), 0).await.unwrap();
    assert_eq!(ra.net_list_banned().await.unwrap().len(), 1);
    assert_eq!(ra.net_clear_banned().await.unwrap(), 1);
    assert!(ra.net_list_banned().await.unwrap().is_empty());
    // net_addPeer on the banning side also lifts a ban it names
    ra.net_set_ban(b_addr.clone(), 3600).await.unwrap();
    let peer = ra.net_add_peer(b_addr.clone()).await.unwrap();
    assert_eq!(peer.address, b_addr);
    assert!(ra.net_list_banned().await.unwrap().is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn net_add_peer_says_why_a_connection_fails() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), vec![]).await;
    let ra = a.client();
    // nothing listens there
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = free.local_addr().unwrap().to_string();
    drop(free);
    let e = ra.net_add_peer(closed.clone()).await.unwrap_err();
    assert_eq!(code(&e), cairn_api::codes::PEER_FAILED);
    assert!(e.to_string().contains("cannot connect"), "{e}");
    // not an address
    let e = ra.net_add_peer("nowhere".into()).await.unwrap_err();
    assert_eq!(code(&e), -32602, "{e}");
    // a node on another network: refused, naming both genesis hashes
    let other = cairn_genesis::Network::builtin("testnet").unwrap();
    let mut cfg = config(&dir.path().join("t"), vec![]);
    cfg.p2p.dev_loopback_is_local = true;
    let t = service::launch(other.clone(), cfg).await.unwrap();
    let e = ra.net_add_peer(p2p(&t)).await.unwrap_err();
    assert!(
        e.to_string().contains(&other.genesis_hash.to_hex()),
        "names the other genesis: {e}"
    );
    assert!(ra.net_get_peers().await.unwrap().is_empty());
    a.stop().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_fault_partitions_without_bans_and_heals_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), vec![]).await;
    let b = start(&dir.path().join("b"), vec![p2p(&a)]).await;
    let (ra, rb) = (a.client(), b.client());
    let both = vec![ra.clone(), rb.clone()];
    wait_all(
        "connected",
        &both,
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| p.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;
    let drop_rule = cairn_api::LinkView {
        drop: true,
        ..Default::default()
    };
    // a partition set on one side cuts both directions
    assert_eq!(
        ra.net_set_link(p2p(&b), drop_rule.clone()).await.unwrap(),
        1
    );
    wait_all("apart", &both, Duration::from_secs(30), |r| async move {
        r.net_get_peers()
            .await
            .map(|p| p.is_empty())
            .unwrap_or(false)
    })
    .await;
    let miner = text(&dev_accounts()[1].address);
    let b_tip = *rb
        .mining_generate(3, miner.clone())
        .await
        .unwrap()
        .last()
        .unwrap();
    assert_ne!(tip(&ra).await, Some(b_tip));
    let links = ra.net_get_links().await.unwrap();
    assert_eq!(links.len(), 1);
    assert!(links[0].rule.drop);
    let e = ra.net_add_peer(p2p(&b)).await.unwrap_err();
    assert!(e.to_string().contains("link fault"), "{e}");
    // bad rules are refused
    let e = ra
        .net_set_link(
            "*".into(),
            cairn_api::LinkView {
                loss: 1.5,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32602);
    // heal: b redials at once (no backoff left over) and a catches up
    ra.net_set_link(p2p(&b), Default::default()).await.unwrap();
    assert!(ra.net_get_links().await.unwrap().is_empty());
    wait_all(
        "healed and synced",
        &both,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(b_tip) },
    )
    .await;
    for r in &both {
        assert!(r.net_list_banned().await.unwrap().is_empty());
    }
    // a delay on every link still delivers
    ra.net_set_link(
        "*".into(),
        cairn_api::LinkView {
            delay_ms: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let later = ra.mining_generate(1, miner).await.unwrap()[0];
    wait_all(
        "the delayed block arrives",
        &both,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(later) },
    )
    .await;
    a.stop().await;
    b.stop().await;
}

/// Creates the node key in `dir` before the node starts, to know its id.
fn node_id_of(dir: &Path) -> cairn_p2p::NodeId {
    cairn_node::network::load_or_create_node_key(dir)
        .expect("node key")
        .id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_ids_decide_who_may_connect_and_pin_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db, dc) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let (ida, idb, idc) = (node_id_of(&da), node_id_of(&db), node_id_of(&dc));
    // a admits only b
    let allow = dir.path().join("allow.txt");
    std::fs::write(&allow, format!("# the lab\n{idb}\n")).unwrap();
    let mut cfg = config(&da, vec![]);
    cfg.allow_peers = Some(allow);
    init_logs();
    let a = service::launch(dev(), cfg).await.unwrap();
    assert_eq!(
        a.node_id(),
        Some(ida),
        "the key in the datadir is the identity"
    );
    let b = start(&db, vec![format!("{ida}@{}", p2p(&a))]).await;
    let c = start(&dc, vec![]).await;
    let (ra, rb, rc) = (a.client(), b.client(), c.client());
    wait_all(
        "b is connected to a, pinned by id",
        &[ra.clone(), rb.clone()],
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| p.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;
    assert_eq!(
        ra.net_get_peers().await.unwrap()[0].node_id,
        idb.to_string()
    );
    assert_eq!(
        rb.net_get_peers().await.unwrap()[0].node_id,
        ida.to_string()
    );
    // c is not on a's list: refused, and told why
    let e = rc.net_add_peer(p2p(&a)).await.unwrap_err();
    assert!(e.to_string().contains("allow"), "{e}");
    // b asks for a node at c's address under another id: refused
    let e = rb
        .net_add_peer(format!("{ida}@{}", p2p(&c)))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&idc.to_string()) && e.to_string().contains("expected"),
        "{e}"
    );
    // with c's own id it connects
    let peer = rb.net_add_peer(format!("{idc}@{}", p2p(&c))).await.unwrap();
    assert_eq!(peer.node_id, idc.to_string());
    assert_eq!(rc.net_get_peers().await.unwrap().len(), 1, "c has only b");
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_dialling_each_other_keep_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    // both know each other's address from the start: they dial at once
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pa, pb) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    drop((la, lb));
    let mut ca = config(&dir.path().join("a"), vec![pb.to_string()]);
    ca.p2p_addr = pa;
    let mut cb = config(&dir.path().join("b"), vec![pa.to_string()]);
    cb.p2p_addr = pb;
    init_logs();
    let (a, b) = tokio::join!(service::launch(dev(), ca), service::launch(dev(), cb));
    let (a, b) = (a.unwrap(), b.unwrap());
    let both = vec![a.client(), b.client()];
    wait_all(
        "one connection, seen from both sides",
        &both,
        Duration::from_secs(30),
        |r| async move {
            r.net_get_peers()
                .await
                .map(|p| p.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;
    // the connection is the same one on both sides: one is outbound where
    // the other is inbound
    let da = both[0].net_get_peers().await.unwrap()[0].direction.clone();
    let db = both[1].net_get_peers().await.unwrap()[0].direction.clone();
    assert_ne!(da, db, "one connection, not two half-kept ones");
    let mined = both[0]
        .mining_generate(1, text(&dev_accounts()[1].address))
        .await
        .unwrap()[0];
    wait_all(
        "b follows a",
        &both,
        Duration::from_secs(30),
        |r| async move { tip(&r).await == Some(mined) },
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_sent_during_a_partition_crosses_when_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), vec![]).await;
    let b = start(&dir.path().join("b"), vec![p2p(&a)]).await;
    let (ra, rb) = (a.client(), b.client());
    let both = vec![ra.clone(), rb.clone()];
    let peers_are = |n: usize| {
        move |r: HttpClient| async move {
            r.net_get_peers()
                .await
                .map(|p| p.len() == n)
                .unwrap_or(false)
        }
    };
    wait_all("connected", &both, Duration::from_secs(30), peers_are(1)).await;
    let cut = cairn_api::LinkView {
        drop: true,
        ..Default::default()
    };
    ra.net_set_link(p2p(&b), cut).await.unwrap();
    wait_all("apart", &both, Duration::from_secs(30), peers_are(0)).await;
    // sent on a's side only, while nobody mines: b cannot hear of it now
    let accounts = dev_accounts();
    let tx = sign(
        &accounts[2].key,
        dev().params.chain_id,
        accounts[6].address,
        COIN,
        1000,
        0,
    );
    let id = ra.tx_submit(hex_of(&tx)).await.unwrap();
    assert_eq!(status(&rb, id).await, Some(TxStatus::Unknown));
    // the heal: the reconnected peers tell each other what they hold
    ra.net_set_link(p2p(&b), Default::default()).await.unwrap();
    wait_all(
        "the transfer in both mempools",
        &both,
        Duration::from_secs(30),
        |r| async move { status(&r, id).await == Some(TxStatus::Pending) },
    )
    .await;
    a.stop().await;
    b.stop().await;
}
