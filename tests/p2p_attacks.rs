//! Hostile peers against an in-process node: a raw peer speaking the wire
//! protocol (tests/support/raw_peer.rs) for each attack the P2P layer must
//! hold against (issue 8, "Bounds under hostile peers"). Each test checks
//! that the attacker is cut off, for the reason the victim's log gives
//! (banned only for invalid data or undecodable frames, never for floods,
//! stalls or empty claims), and that the victim meanwhile keeps syncing
//! from and relaying to an honest node:
//!
//! 1. claims of work never shown: an empty answer, no answer, a short
//!    chain; and a boaster that reconnects at once, again and again;
//! 2. a long low-work header chain (presync within the header budget; the
//!    50,000-header size of the issue runs with `--ignored`);
//! 3. announcements and orphan blocks that never connect (and one that
//!    does not connect yet, made while headers are asked for: asked again);
//! 4. slow readers: tests/p2p_memory.rs (a victim process, for its memory);
//! 5. one block named many times in one request;
//! 6. floods of transfer announcements and of pings;
//! 7. idle connections (the handshake caps, per address and in all);
//! 8. replayed nonces;
//! 9. 250 addresses from one source;
//! 10. invalid headers, blocks and frames: a ban with its reason for a
//!     stranger, a disconnect only for a whitelisted or operator-added peer.
//!
//! Victims run on the dev network with loopback peers treated as strangers
//! (`dev_loopback_is_local = false`) and short timeouts. Sync times with and
//! without an attack are printed, never asserted (run with `--nocapture`).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_api::{CairnApiClient, PeerRef};
use cairn_consensus::BlockHash;
use cairn_consensus::validation::HeaderMeta;
use cairn_genesis::dev_accounts;
use cairn_node::config::NodeConfig;
use cairn_node::service::{self, Running};
use cairn_p2p::message::{Hello, MAX_HEADERS, Message};
use jsonrpsee_http_client::HttpClient;
use support::raw_peer::*;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// A victim: dev network, loopback peers are strangers, short timeouts
/// (a raw peer answers pings while it waits for something).
fn victim_config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::ephemeral(dir.to_path_buf());
    c.p2p.dev_loopback_is_local = false;
    c.p2p.request_timeout_ms = 2_000;
    c.p2p.stall_ms = 1_000;
    c.p2p.handshake_timeout_ms = 2_000;
    c.p2p.ping_interval_ms = 1_000;
    c.p2p.ping_timeout_ms = 5_000;
    c
}

/// An honest node (ordinary settings).
fn honest_config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::ephemeral(dir.to_path_buf());
    c.p2p.request_timeout_ms = 2_000;
    c
}

async fn launch(cfg: NodeConfig) -> Running {
    capture_logs();
    service::launch(dev(), cfg).await.expect("node starts")
}

fn p2p(r: &Running) -> SocketAddr {
    r.p2p_addr().expect("P2P runs")
}

fn miner() -> String {
    dev_accounts()[1]
        .address
        .encode(&dev().params.address_prefix)
}

/// Mines `n` blocks on `rpc`; returns the new tip.
async fn mine(rpc: &HttpClient, n: u32) -> BlockHash {
    *rpc.mining_generate(n, miner())
        .await
        .expect("mining_generate")
        .last()
        .expect("blocks")
}

/// A node's tip, peers, bans and sync state, for timeout messages.
async fn describe(nodes: &[(&str, &Running)]) -> String {
    let mut out = String::new();
    for (name, n) in nodes {
        let rpc = n.client();
        let info = rpc.chain_get_info().await;
        let peers = rpc.net_get_peers().await;
        let bans = rpc.net_list_banned().await;
        let status = n.p2p.as_ref().map(|p| p.status());
        out.push_str(&format!(
            "{name}: {} | peers {} | bans {:?} | p2p {status:?}\n",
            info.map(|i| format!("height {} tip {}", i.height, i.best_hash))
                .unwrap_or_else(|e| e.to_string()),
            peers
                .map(|p| p
                    .iter()
                    .map(|x| format!("{}({})@{}", x.address, x.direction, x.height))
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_else(|e| e.to_string()),
            bans.map(|b| b.iter().map(|x| x.target.clone()).collect::<Vec<_>>()),
        ));
    }
    out
}

/// Waits until `node` (the first of `all`, which are described on a
/// timeout) is on `tip`; returns how long that took.
async fn wait_on(what: &str, all: &[(&str, &Running)], tip: BlockHash) -> Duration {
    wait_on_within(what, all, tip, WAIT).await
}

async fn wait_on_within(
    what: &str,
    all: &[(&str, &Running)],
    tip: BlockHash,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    let rpc = all[0].1.client();
    wait_for(
        what,
        timeout,
        || {
            let rpc = rpc.clone();
            async move { (rpc.chain_get_info().await.ok()?.best_hash == tip).then_some(()) }
        },
        || describe(all),
    )
    .await;
    start.elapsed()
}

/// The victim's bans, as `target: reason` lines.
async fn bans(node: &Running) -> Vec<String> {
    node.client()
        .net_list_banned()
        .await
        .expect("net_listBanned")
        .into_iter()
        .map(|b| format!("{}: {} ({})", b.target, b.reason, b.origin))
        .collect()
}

/// Waits for the victim's log to say it dropped the peer at `addr` for
/// `why`.
async fn wait_log(addr: SocketAddr, why: &str) {
    let a = addr.to_string();
    wait_for(
        &format!("the log to say {a} was dropped for {why:?}"),
        Duration::from_secs(10),
        || {
            let found = !log_lines(&[&a, why]).is_empty();
            async move { found.then_some(()) }
        },
        || {
            let lines = log_lines(&[&a]);
            let a = a.clone();
            async move { format!("log lines naming {a}: {lines:#?}") }
        },
    )
    .await
}

/// A hello claiming far more work than any chain here.
fn boastful_hello() -> Hello {
    let genesis = dev().genesis_hash;
    Hello {
        best_height: 1_000_000,
        best_hash: BlockHash([0xb0; 32]),
        best_work: huge_work(),
        ..hello(genesis)
    }
}

/// A header chain on genesis served as a node serves its best chain.
struct Served {
    headers: Vec<cairn_consensus::BlockHeader>,
    /// Position of each header after genesis (genesis is 0).
    after: std::collections::HashMap<BlockHash, usize>,
}

impl Served {
    fn new(headers: Vec<cairn_consensus::BlockHeader>) -> Served {
        let mut after: std::collections::HashMap<BlockHash, usize> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.hash(), i + 1))
            .collect();
        after.insert(dev().genesis_hash, 0);
        Served { headers, after }
    }

    /// The answer to `GetHeaders`: the headers after the first locator hash
    /// on this chain (after genesis when none is), at most 2,000.
    fn answer(&self, locator: &[BlockHash]) -> Vec<cairn_consensus::BlockHeader> {
        let start = locator
            .iter()
            .find_map(|h| self.after.get(h).copied())
            .unwrap_or(0);
        self.headers[start.min(self.headers.len())..]
            .iter()
            .take(MAX_HEADERS)
            .copied()
            .collect()
    }
}

// ----- 1. claimed work it cannot show -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Claim {
    /// An empty `Headers` answer.
    Empty,
    /// No answer at all.
    Silent,
    /// The headers of a short chain.
    Short,
}

/// The victim syncs `target` from `honest` while a peer that claims huge
/// work does `claim`; returns the sync time (from the honest connection).
async fn sync_under_claim(
    dir: &Path,
    honest: &Running,
    target: BlockHash,
    claim: Option<Claim>,
) -> Duration {
    let mut cfg = victim_config(dir);
    // long enough that a drop for the answer cannot be the timeout's doing
    cfg.p2p.request_timeout_ms = if claim == Some(Claim::Silent) {
        2_000
    } else {
        20_000
    };
    let victim = launch(cfg).await;
    let mut attacker = match claim {
        Some(_) => {
            let mut a = RawPeer::connect(p2p(&victim), boastful_hello())
                .await
                .expect("handshake");
            // it is the one asked for headers first: it claims the most
            a.expect_get_headers(WAIT).await;
            Some(a)
        }
        None => None,
    };
    let rpc_h = honest.client();
    let start = Instant::now();
    rpc_h
        .net_add_peer(p2p(&victim).to_string())
        .await
        .expect("the honest node connects to the victim");
    if let (Some(a), Some(claim)) = (attacker.as_mut(), claim) {
        let addr = a.local;
        match claim {
            Claim::Empty => a.send(&Message::Headers(vec![])).await.unwrap(),
            Claim::Silent => {}
            Claim::Short => {
                let g = HeaderMeta::genesis(dev().genesis.header);
                a.send(&Message::Headers(header_chain(&g, 3, 0x5107)))
                    .await
                    .unwrap()
            }
        }
        let closed = a.closed_within(WAIT).await;
        let closed =
            closed.unwrap_or_else(|| panic!("{claim:?}: the boastful peer is still connected"));
        println!("{claim:?}: the boastful peer was dropped {closed:?} after its answer");
        match claim {
            // dropped for what it sent, well before the 20 s request timeout
            Claim::Empty | Claim::Short => {
                assert!(
                    closed < Duration::from_secs(10),
                    "{claim:?}: dropped only after {closed:?}"
                );
                wait_log(addr, "claimed chain work").await;
            }
            Claim::Silent => wait_log(addr, "stalled: a headers request").await,
        }
    }
    wait_on(
        "the victim synced from the honest node",
        &[("victim", &victim), ("honest", honest)],
        target,
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        bans(&victim).await,
        Vec::<String>::new(),
        "nobody is banned for claims or stalls"
    );
    victim.stop().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_claiming_work_it_cannot_show_is_dropped_while_the_victim_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let honest = launch(honest_config(&dir.path().join("honest"))).await;
    let target = mine(&honest.client(), 600).await;
    let base = sync_under_claim(&dir.path().join("v0"), &honest, target, None).await;
    let mut report = format!("sync of 600 blocks: {base:?} without an attack");
    for (i, claim) in [Claim::Empty, Claim::Silent, Claim::Short]
        .into_iter()
        .enumerate()
    {
        let took = sync_under_claim(
            &dir.path().join(format!("v{}", i + 1)),
            &honest,
            target,
            Some(claim),
        )
        .await;
        report.push_str(&format!(", {took:?} with {claim:?}"));
    }
    println!("{report} (the silent peer costs the 2 s request timeout)");
    honest.stop().await;
}

/// A peer that claims huge work, never answers, and reconnects at once
/// each time it is dropped.
async fn churning_boaster(to: SocketAddr, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut rounds = 0;
    while !*stop.borrow() {
        let Ok(mut a) = RawPeer::connect(to, boastful_hello()).await else {
            continue;
        };
        rounds += 1;
        a.closed_within(WAIT).await;
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_boaster_that_reconnects_at_once_cannot_hold_up_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let honest = launch(honest_config(&dir.path().join("honest"))).await;
    let target = mine(&honest.client(), 300).await;
    let victim = launch(victim_config(&dir.path().join("victim"))).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let attackers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(churning_boaster(p2p(&victim), stop.clone())))
        .collect();
    // the attackers are in and asked first
    let v = [("victim", &victim)];
    wait_for(
        "the attackers connected",
        WAIT,
        || {
            let n = victim.p2p.as_ref().unwrap().status().inbound;
            async move { (n >= 2).then_some(()) }
        },
        || describe(&v),
    )
    .await;
    let start = Instant::now();
    honest
        .client()
        .net_add_peer(p2p(&victim).to_string())
        .await
        .expect("the honest node connects to the victim");
    wait_on(
        "the victim synced despite the churning boasters",
        &[("victim", &victim), ("honest", &honest)],
        target,
    )
    .await;
    println!(
        "synced 300 blocks in {:?} with two churning boasters",
        start.elapsed()
    );
    stop_tx.send(true).unwrap();
    for a in attackers {
        let rounds = a.await.unwrap();
        println!("a boaster connected {rounds} times");
    }
    assert_eq!(bans(&victim).await, Vec::<String>::new());
    victim.stop().await;
    honest.stop().await;
}

/// How long a fresh victim takes to sync `target` from `honest` with
/// nobody attacking (the yardstick for the attacked syncs).
async fn baseline(dir: &Path, honest: &Running, target: BlockHash) -> Duration {
    sync_under_claim(dir, honest, target, None).await
}

// ----- 2. header spam -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_low_work_header_chain_stays_out_and_a_later_sync_works() {
    // The issue names 50,000 headers. On the dev network (pinned target:
    // every header has the same work) a low-work chain that long needs a
    // victim more than 50,000 blocks high, too slow to build in a debug
    // build for `make test`; the same path (budget, presync over several
    // full answers, the end below our work) runs here with 6,500 headers
    // against a budget of 1,000. The full size runs with `--ignored`.
    header_spam(6_600, 6_500, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a few minutes in a debug build: run with --ignored"]
async fn fifty_thousand_low_work_headers_stay_out_and_a_later_sync_works() {
    header_spam(50_100, 50_000, 4_000).await;
}

/// A victim `ours` blocks high takes `spam` low-work headers (its budget
/// `budget`) from a peer that claims huge work, drops it at the end of its
/// chain, then syncs a heavier chain from an honest node.
async fn header_spam(ours: u32, spam: usize, budget: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = victim_config(&dir.path().join("victim"));
    cfg.p2p.header_budget = budget;
    let victim = launch(cfg).await;
    let honest = launch(honest_config(&dir.path().join("honest"))).await;
    let (rv, rh) = (victim.client(), honest.client());
    let all = [("victim", &victim), ("honest", &honest)];
    let built = Instant::now();
    let spam_chain = tokio::task::spawn_blocking(move || {
        header_chain(&HeaderMeta::genesis(dev().genesis.header), spam, 0x5ba3)
    });
    rv.net_add_peer(p2p(&honest).to_string()).await.unwrap();
    let tip = mine(&rv, ours).await;
    let honest_first = [("honest", &honest), ("victim", &victim)];
    // about a millisecond a block in a debug build, and some margin
    let relay = Duration::from_millis(u64::from(ours) * 4).max(WAIT);
    wait_on_within(
        "the honest node following the victim",
        &honest_first,
        tip,
        relay,
    )
    .await;
    let spam_chain = Served::new(spam_chain.await.unwrap());
    println!(
        "setup ({ours} blocks mined and relayed, {spam} headers built) took {:?}",
        built.elapsed()
    );
    // the honest node goes its own way and gets ahead
    rv.net_disconnect_peer(PeerRef::Address(p2p(&honest).to_string()))
        .await
        .unwrap();
    let heavier = mine(&rh, 50).await;

    let mut a = RawPeer::connect(p2p(&victim), boastful_hello())
        .await
        .unwrap();
    let started = Instant::now();
    let (mut answers, mut ended) = (0, false);
    loop {
        match a.recv(WAIT).await {
            Recv::Msg(Message::GetHeaders(locator)) => {
                // an empty answer (nothing after the locator) only at the end
                let headers = spam_chain.answer(&locator);
                assert!(!ended, "asked again after an empty answer");
                ended = headers.len() < MAX_HEADERS;
                a.send(&Message::Headers(headers)).await.unwrap();
                answers += 1;
            }
            Recv::Msg(_) => {}
            Recv::Closed => break,
            Recv::Quiet => panic!(
                "the victim neither asked for more nor dropped the spammer\n{}",
                describe(&all).await
            ),
        }
        // the low-work headers never become the victim's sync target
        let status = victim.p2p.as_ref().unwrap().status();
        assert_eq!(status.best_header_height, u64::from(ours), "{status:?}");
        assert!(status.sync.is_none(), "{status:?}");
    }
    println!(
        "the victim took {spam} low-work headers in {answers} answers and dropped their sender after {:?}",
        started.elapsed()
    );
    // full answers, then a short (or empty) last one
    assert_eq!(
        answers,
        spam / MAX_HEADERS + 1,
        "it followed the chain to its end, once"
    );
    wait_log(a.local, "claimed chain work").await;
    assert_eq!(bans(&victim).await, Vec::<String>::new());

    // a heavier chain syncs as before
    let start = Instant::now();
    rv.net_add_peer(p2p(&honest).to_string()).await.unwrap();
    wait_on("the victim on the heavier chain", &all, heavier).await;
    println!(
        "then synced the honest node's 50 new blocks in {:?}",
        start.elapsed()
    );
    victim.stop().await;
    honest.stop().await;
}

// ----- 3. random announcements -----

/// A block with valid proof of work whose parent nobody knows.
fn orphan_block(salt: u64) -> cairn_consensus::Block {
    let mut b = dev().genesis.clone();
    b.header = unconnected_header(salt);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn announcements_that_never_connect_disconnect_without_a_ban_and_sync_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let honest = launch(honest_config(&dir.path().join("honest"))).await;
    let target = mine(&honest.client(), 600).await;
    let base = baseline(&dir.path().join("v0"), &honest, target).await;

    let victim = launch(victim_config(&dir.path().join("victim"))).await;
    let all = [("victim", &victim), ("honest", &honest)];
    let mut a = RawPeer::connect(p2p(&victim), hello(dev().genesis_hash))
        .await
        .unwrap();
    let start = Instant::now();
    honest
        .client()
        .net_add_peer(p2p(&victim).to_string())
        .await
        .unwrap();
    // ten announcements that lead nowhere (headers and orphan blocks) are
    // tolerated: each one makes the victim ask the sender for headers
    for i in 0..10u64 {
        let msg = if i % 2 == 0 {
            Message::NewHeaders(vec![unconnected_header(i)])
        } else {
            Message::Block(Box::new(orphan_block(i)))
        };
        a.send(&msg).await.unwrap();
        a.expect_get_headers(WAIT).await;
        a.send(&Message::Headers(vec![])).await.unwrap();
    }
    // the eleventh is one too many
    a.send(&Message::NewHeaders(vec![unconnected_header(99)]))
        .await
        .unwrap();
    assert!(a.closed_within(WAIT).await.is_some(), "still connected");
    wait_log(a.local, "never connect").await;
    wait_on("the victim synced meanwhile", &all, target).await;
    println!(
        "sync of 600 blocks: {base:?} alone, {:?} with 11 unconnecting announcements",
        start.elapsed()
    );
    assert_eq!(bans(&victim).await, Vec::<String>::new());
    victim.stop().await;
    honest.stop().await;
}

/// Waits until the victim's log has said `times` times that the peer at
/// `addr` announced a block that does not connect while a headers request
/// to it was out (said once each time it starts waiting for an answer).
async fn wait_noted(addr: SocketAddr, times: usize) {
    let a = addr.to_string();
    let noted = || log_lines(&[&a, "announced a block that does not connect"]).len();
    wait_for(
        "the victim to note the announcement",
        WAIT,
        || {
            let n = noted();
            async move { (n >= times).then_some(()) }
        },
        || async { format!("noted {} times of {times}", noted()) },
    )
    .await;
}

/// An announcement that does not connect, made while the victim's headers
/// request to its sender is out, is asked for again once the answer is in:
/// the answer shows the sender's chain as it was, which may end before the
/// announced block, and nothing else would ask for it (an honest node
/// relaying blocks faster than the victim connects them does exactly this).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_announced_while_headers_are_asked_for_is_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = victim_config(&dir.path().join("victim"));
    // the victim asks the raw peer for blocks it never sends: time enough
    cfg.p2p.request_timeout_ms = 20_000;
    cfg.p2p.stall_ms = 20_000;
    let victim = launch(cfg).await;
    let g = HeaderMeta::genesis(dev().genesis.header);
    let chain = Served::new(header_chain(&g, 6, 0xa9a1));
    let h = |n: usize| chain.headers[n - 1];
    let mut a = RawPeer::connect(p2p(&victim), hello(dev().genesis_hash))
        .await
        .unwrap();

    // block 3 does not connect: the victim asks for headers
    a.send(&Message::NewHeaders(vec![h(3)])).await.unwrap();
    let first = a.expect_get_headers(WAIT).await;
    // block 6, while that request is out: the victim notes it
    a.send(&Message::NewHeaders(vec![h(6)])).await.unwrap();
    wait_noted(a.local, 1).await;
    // the answer, as of when block 3 was our tip: blocks 1 to 3
    let answer = chain.answer(&first);
    assert_eq!(answer.len(), 6, "the first locator starts at genesis");
    a.send(&Message::Headers(answer[..3].to_vec()))
        .await
        .unwrap();
    // the victim asks again, from block 3, and learns of block 6
    let again = a.expect_get_headers(WAIT).await;
    assert_eq!(again.first(), Some(&h(3).hash()), "{again:?}");
    a.send(&Message::Headers(chain.answer(&again)))
        .await
        .unwrap();
    wait_for(
        "the victim to know the headers up to block 6",
        WAIT,
        || {
            let status = victim.p2p.as_ref().unwrap().status();
            async move { (status.best_header_height == 6).then_some(()) }
        },
        || async { format!("{:?}", victim.p2p.as_ref().unwrap().status()) },
    )
    .await;
    assert_eq!(bans(&victim).await, Vec::<String>::new());
    victim.stop().await;
}

/// Announcing the same block that never connects again while each request
/// is out does not get around the limit: asking again counts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_announcement_repeated_while_headers_are_asked_for_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    let victim = launch(victim_config(&dir.path().join("victim"))).await;
    let mut a = RawPeer::connect(p2p(&victim), hello(dev().genesis_hash))
        .await
        .unwrap();
    let x = Message::NewHeaders(vec![unconnected_header(0xa9a2)]);
    a.send(&x).await.unwrap();
    let mut rounds = 0;
    loop {
        match a.recv(WAIT).await {
            Recv::Msg(Message::GetHeaders(_)) => {}
            Recv::Msg(_) => continue,
            Recv::Closed => break,
            Recv::Quiet => panic!("the victim neither asked again nor dropped the peer"),
        }
        rounds += 1;
        assert!(rounds <= 20, "still asked after {rounds} rounds");
        // the same announcement while the request is out, noted, then an
        // empty answer
        a.send(&x).await.unwrap();
        wait_noted(a.local, rounds).await;
        a.send(&Message::Headers(vec![])).await.unwrap();
    }
    println!("dropped after {rounds} requests");
    assert!(rounds > 5, "dropped after only {rounds} requests");
    wait_log(a.local, "never connect").await;
    assert_eq!(bans(&victim).await, Vec::<String>::new());
    victim.stop().await;
}

// ----- 5. the same block many times -----

/// Reads until block `marker` arrives; returns the blocks and not-found
/// lists that came before it.
async fn answers_before(
    a: &mut RawPeer,
    marker: BlockHash,
) -> (Vec<BlockHash>, Vec<Vec<BlockHash>>) {
    let mut blocks = Vec::new();
    let mut missing = Vec::new();
    loop {
        let m = a
            .expect("blocks", WAIT, |m| match m {
                Message::Block(_) | Message::NotFound(_) => Some(m.clone()),
                _ => None,
            })
            .await;
        match m {
            Message::Block(b) if b.hash() == marker => return (blocks, missing),
            Message::Block(b) => blocks.push(b.hash()),
            Message::NotFound(v) => missing.push(v),
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_named_many_times_in_one_request_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let victim = launch(victim_config(&dir.path().join("victim"))).await;
    let hashes = victim.client().mining_generate(3, miner()).await.unwrap();
    let (h1, h2, h3) = (hashes[0], hashes[1], hashes[2]);
    let mut a = RawPeer::connect(p2p(&victim), hello(dev().genesis_hash))
        .await
        .unwrap();
    // the answers to one request come before those to the next: a request
    // for h2 alone marks the end of the one before
    a.send(&Message::GetBlocks(vec![h1; 128])).await.unwrap();
    a.send(&Message::GetBlocks(vec![h2])).await.unwrap();
    assert_eq!(answers_before(&mut a, h2).await, (vec![h1], vec![]));
    let mixed: Vec<BlockHash> = [h1, h3].iter().copied().cycle().take(128).collect();
    a.send(&Message::GetBlocks(mixed)).await.unwrap();
    a.send(&Message::GetBlocks(vec![h2])).await.unwrap();
    assert_eq!(answers_before(&mut a, h2).await, (vec![h1, h3], vec![]));
    let unknown = BlockHash([0x77; 32]);
    a.send(&Message::GetBlocks(vec![unknown; 128]))
        .await
        .unwrap();
    a.send(&Message::GetBlocks(vec![h2])).await.unwrap();
    assert_eq!(
        answers_before(&mut a, h2).await,
        (vec![], vec![vec![unknown]])
    );
    assert_eq!(bans(&victim).await, Vec::<String>::new());
    victim.stop().await;
}

// ----- 6. floods -----

fn random_ids(n: usize) -> Vec<cairn_consensus::TxId> {
    (0..n)
        .map(|_| cairn_consensus::TxId(rand::random()))
        .collect()
}

/// An honest burst: thousands of transfers announced a few at a time, as a
/// node that takes them over RPC at full speed announces them. The node
/// asks for every one, but in at most 8 `GetTxs` per 100 ms tick (the rest
/// wait and go in fuller requests): one request per announcement overfilled
/// the announcer's queue of 64 requests, and the announcer dropped the
/// honest node as a flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_small_announcements_is_fetched_in_few_requests() {
    let dir = tempfile::tempdir().unwrap();
    let node = launch(victim_config(&dir.path().join("node"))).await;
    let mut a = RawPeer::connect(p2p(&node), hello(dev().genesis_hash))
        .await
        .unwrap();
    let ids = random_ids(2000);
    let started = Instant::now();
    for chunk in ids.chunks(5) {
        a.feed(&Message::InvTxs(chunk.to_vec())).await.unwrap();
    }
    a.flush().await.unwrap();
    let mut asked = std::collections::HashSet::new();
    let mut requests = 0u128;
    while asked.len() < ids.len() {
        let got = a
            .expect("requests for every announced transfer", WAIT, |m| match m {
                Message::GetTxs(v) => Some(v.clone()),
                _ => None,
            })
            .await;
        requests += 1;
        asked.extend(got);
    }
    let ticks = started.elapsed().as_millis() / 100 + 2;
    println!(
        "{} announcements fetched in {requests} requests over {:?}",
        ids.len() / 5,
        started.elapsed()
    );
    assert!(
        requests <= 8 * ticks,
        "{requests} requests in {ticks} ticks: more than 8 a tick"
    );
    assert_eq!(bans(&node).await, Vec::<String>::new());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_of_announcements_and_pings_disconnect_without_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = victim_config(&dir.path().join("victim"));
    // 1,000 transfer ids a second, bursts of 4,000; other limits as shipped
    cfg.p2p.inv_per_sec = 1_000;
    let victim = launch(cfg).await;
    let honest = launch(honest_config(&dir.path().join("honest"))).await;
    let (rv, rh) = (victim.client(), honest.client());
    let all = [("victim", &victim), ("honest", &honest)];
    rh.net_add_peer(p2p(&victim).to_string()).await.unwrap();

    // the burst is allowed: the pong after it shows the victim took it
    let mut a = RawPeer::connect(p2p(&victim), hello(dev().genesis_hash))
        .await
        .unwrap();
    for _ in 0..4 {
        a.send(&Message::InvTxs(random_ids(1000))).await.unwrap();
    }
    a.send(&Message::Ping(7)).await.unwrap();
    a.expect("the pong", WAIT, |m| (*m == Message::Pong(7)).then_some(()))
        .await;
    // as much again at once is not
    for _ in 0..4 {
        if a.send(&Message::InvTxs(random_ids(1000))).await.is_err() {
            break;
        }
    }
    assert!(
        a.closed_within(WAIT).await.is_some(),
        "announcer still connected"
    );
    wait_log(a.local, "flood of transfer announcements").await;

    // pings as fast as the socket takes them
    let mut p = RawPeer::connect(p2p(&victim), hello(dev().genesis_hash))
        .await
        .unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    'flood: for _ in 0..500 {
        for _ in 0..1000 {
            if p.feed(&Message::Ping(sent)).await.is_err() {
                break 'flood;
            }
            sent += 1;
        }
        if p.flush().await.is_err() {
            break;
        }
    }
    assert!(
        p.closed_within(WAIT).await.is_some(),
        "pinger still connected"
    );
    println!(
        "the pinger was cut off after {sent} pings in {:?}",
        started.elapsed()
    );
    wait_log(p.local, "flood of messages").await;
    assert_eq!(
        bans(&victim).await,
        Vec::<String>::new(),
        "floods do not ban"
    );

    // the victim still relays both ways
    let acc = dev_accounts();
    let tx = sign(
        &acc[2].key,
        dev().params.chain_id,
        acc[3].address,
        1000,
        1000,
        0,
    );
    let id = rv.tx_submit(hex_of(&tx)).await.unwrap();
    wait_for(
        "the transfer relayed to the honest node",
        WAIT,
        || {
            let rh = rh.clone();
            async move {
                let s = rh.chain_get_transaction(id).await.ok()?.status;
                (s == cairn_api::TxStatus::Pending).then_some(())
            }
        },
        || describe(&all),
    )
    .await;
    let mined = mine(&rh, 2).await;
    wait_on("the victim follows the honest node", &all, mined).await;
    victim.stop().await;
    honest.stop().await;
}

// ----- 7. connection flood -----

/// Idle connections to `to` from `from` (never a byte sent), reopened as
/// soon as the victim closes them, at most 1,000 a second and 64 open;
/// `open` records when each still-open one was made.
fn flood_from(
    from: std::net::IpAddr,
    to: SocketAddr,
    open: Open,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        // the attacker's pace, not a wait for anything
        let mut pace = tokio::time::interval(Duration::from_millis(1));
        let mut n = 0u64;
        while !*stop.borrow() {
            pace.tick().await;
            let mine = open
                .lock()
                .unwrap()
                .keys()
                .filter(|(ip, _)| *ip == from)
                .count();
            if mine >= 64 {
                continue;
            }
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let Ok(mut stream) = socket.connect(to).await else {
                continue;
            };
            n += 1;
            let key = (from, n);
            open.lock().unwrap().insert(key, Instant::now());
            let open = open.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(k) if k > 0) {}
                open.lock().unwrap().remove(&key);
            });
        }
        n
    })
}

type Open =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, u64), Instant>>>;

/// How many idle connections the victim holds now: those open longer than
/// it takes to refuse one.
fn held(open: &Open) -> usize {
    let now = Instant::now();
    open.lock()
        .unwrap()
        .values()
        .filter(|t| now.duration_since(**t) > Duration::from_millis(500))
        .count()
}

/// Waits until the victim holds `n` idle connections (the most it should);
/// returns the most it was seen holding.
async fn wait_held(open: &Open, n: usize) -> usize {
    let mut most = 0;
    wait_for(
        &format!("the victim to hold {n} idle connections"),
        WAIT,
        || {
            let h = held(open);
            most = most.max(h);
            async move { (h >= n).then_some(()) }
        },
        || async { format!("it holds {}", held(open)) },
    )
    .await;
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_stay_within_the_caps_and_honest_peers_still_get_in() {
    const CAP: usize = 8;
    const PER_IP: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = victim_config(&dir.path().join("victim"));
    cfg.p2p.max_pending_handshakes = CAP;
    cfg.p2p.max_inbound_per_ip = PER_IP;
    let victim = launch(cfg).await;
    let inbound = launch(honest_config(&dir.path().join("in"))).await;
    let outbound = launch(honest_config(&dir.path().join("out"))).await;
    let (rv, ri, ro) = (victim.client(), inbound.client(), outbound.client());
    let to = p2p(&victim);
    let all = [("victim", &victim), ("in", &inbound), ("out", &outbound)];
    let open: Open = Default::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);

    // one address floods: it holds only its share of the handshake slots
    let mut floods = vec![flood_from(
        [127, 0, 0, 3].into(),
        to,
        open.clone(),
        stop.clone(),
    )];
    let mut most_held = wait_held(&open, PER_IP).await;
    // an honest node dials in meanwhile, the victim dials out, both sync
    let started = Instant::now();
    wait_for(
        "the honest node to get in",
        WAIT,
        || {
            let ri = ri.clone();
            async move { ri.net_add_peer(to.to_string()).await.ok().map(|_| ()) }
        },
        || describe(&all),
    )
    .await;
    println!(
        "an honest node got in after {:?} of the flood",
        started.elapsed()
    );
    rv.net_add_peer(p2p(&outbound).to_string()).await.unwrap();
    let t = mine(&ri, 5).await;
    wait_on("the victim syncs from the inbound node", &all, t).await;
    most_held = most_held.max(held(&open));
    assert!(
        most_held <= PER_IP,
        "one address held {most_held} handshake slots"
    );

    // more addresses flood: together they hold no more than the cap, and
    // the peers already in keep the victim syncing
    for ip in 4..=10u8 {
        floods.push(flood_from(
            [127, 0, 0, ip].into(),
            to,
            open.clone(),
            stop.clone(),
        ));
    }
    most_held = most_held.max(wait_held(&open, CAP).await);
    let t = mine(&ro, 10).await;
    wait_on("the victim syncs from the outbound node", &all, t).await;
    let in_first = [("in", &inbound), ("victim", &victim), ("out", &outbound)];
    wait_on("the victim relays to the inbound node", &in_first, t).await;
    let t = mine(&ri, 5).await;
    wait_on("the victim syncs from the inbound node", &all, t).await;
    most_held = most_held.max(held(&open));
    stop_tx.send(true).unwrap();
    let mut total = 0;
    for f in floods {
        total += f.await.unwrap();
    }
    println!("{total} idle connections opened; the victim held at most {most_held} at once");
    assert!(
        most_held <= CAP,
        "the victim held {most_held} idle connections"
    );
    let peers = rv.net_get_peers().await.unwrap();
    assert_eq!(peers.len(), 2, "only the honest peers: {peers:?}");
    assert_eq!(bans(&victim).await, Vec::<String>::new());
    for n in [victim, inbound, outbound] {
        n.stop().await;
    }
}

// ----- 8. identity confusion -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_claiming_to_be_other_nodes_cannot_keep_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let v = launch(victim_config(&dir.path().join("v"))).await;
    let w = launch(victim_config(&dir.path().join("w"))).await;
    let genesis = dev().genesis_hash;
    let (rv, rw) = (v.client(), w.client());
    let all = [("v", &v), ("w", &w)];

    // node ids are proven by the encrypted handshake: the raw peer learns
    // each node's id but can only present its own; it claims to listen
    // where the other node does
    let to_v = RawPeer::connect(p2p(&v), hello(genesis)).await.unwrap();
    assert_eq!(Some(to_v.their_id), v.node_id());
    let as_v = Hello {
        listen_port: Some(p2p(&v).port()),
        ..hello(genesis)
    };
    let to_w = RawPeer::connect(p2p(&w), as_v).await.unwrap();
    assert_eq!(Some(to_w.their_id), w.node_id());
    let as_w = Hello {
        listen_port: Some(p2p(&w).port()),
        ..hello(genesis)
    };
    let to_v2 = RawPeer::connect(p2p(&v), as_w).await.unwrap();

    // the two honest nodes still connect, both ways, and relay blocks
    rw.net_add_peer(p2p(&v).to_string())
        .await
        .expect("w connects to v");
    rv.net_add_peer(p2p(&w).to_string())
        .await
        .expect("v connects to w");
    let t = mine(&rw, 3).await;
    wait_on("v follows w", &all, t).await;
    let t = mine(&rv, 3).await;
    wait_on("w follows v", &[("w", &w), ("v", &v)], t).await;
    assert_eq!(bans(&v).await, Vec::<String>::new());
    assert_eq!(bans(&w).await, Vec::<String>::new());
    drop((to_v, to_w, to_v2));
    let ids: Vec<String> = rv
        .net_get_peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.node_id)
        .collect();
    assert!(ids.contains(&w.node_id().unwrap().to_string()), "{ids:?}");
    v.stop().await;
    w.stop().await;
}

// ----- 9. address spam -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_source_of_addresses_gets_at_most_two_outbound_connections() {
    let dir = tempfile::tempdir().unwrap();
    let victim = launch(victim_config(&dir.path().join("victim"))).await;
    let rv = victim.client();
    let genesis = dev().genesis_hash;

    // 250 listeners the test controls: each answers the handshake slowly
    // (as a far-away node would), then stays connected
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..250 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(cairn_p2p::message::NetAddr::from(l.local_addr().unwrap()));
        let (open, most, accepted) = (open.clone(), most.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            loop {
                let Ok((stream, _)) = l.accept().await else {
                    return;
                };
                accepted.fetch_add(1, SeqCst);
                let now = open.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    // the pace of a slow link, not a wait for anything
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if let Ok(mut p) = RawPeer::handshake(stream, hello(genesis)).await {
                        p.closed_within(Duration::from_secs(3600)).await;
                    }
                    open.fetch_sub(1, SeqCst);
                });
            }
        }));
    }
    // the source: a peer the victim dialled
    let src = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let src_addr = src.local_addr().unwrap();
    let add = tokio::spawn({
        let rv = rv.clone();
        async move { rv.net_add_peer(src_addr.to_string()).await }
    });
    let mut s = RawPeer::accept(&src, hello(genesis)).await.unwrap();
    add.await
        .unwrap()
        .expect("the victim connects to the source");
    s.expect("GetAddrs", WAIT, |m| {
        (*m == Message::GetAddrs).then_some(())
    })
    .await;
    s.send(&Message::Addrs(addrs)).await.unwrap();

    // it dials some of them; then it has had 30 rounds of looking for
    // outbound peers to go beyond two from this source
    use std::sync::atomic::Ordering::SeqCst;
    let v = [("victim", &victim)];
    wait_for(
        "the victim to dial learned addresses",
        WAIT,
        || {
            let n = accepted.load(SeqCst);
            async move { (n >= 1).then_some(()) }
        },
        || describe(&v),
    )
    .await;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        s.closed_within(Duration::from_millis(100)).await;
    }
    let outbound: Vec<String> = rv
        .net_get_peers()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.direction == "outbound" && p.address != src_addr.to_string())
        .map(|p| p.address)
        .collect();
    println!(
        "the victim connected to {} of 250 learned addresses ({} at once at most); outbound now {outbound:?}",
        accepted.load(SeqCst),
        most.load(SeqCst)
    );
    assert!(
        most.load(SeqCst) <= 2,
        "{} at once from one source",
        most.load(SeqCst)
    );
    assert!(outbound.len() <= 2, "{outbound:?}");
    for t in tasks {
        t.abort();
    }
    victim.stop().await;
}

// ----- 10. invalid data bans -----

/// A block on `parent` that breaks a rule (its state commitment is
/// wrong) behind a header with valid proof of work.
fn bad_block(salt: u8) -> cairn_consensus::Block {
    let b = dev_builder();
    let mut block = b.build(vec![], dev_accounts()[4].address);
    block.header.state_root = cairn_consensus::StateRoot([salt; 32]);
    cairn_consensus::testkit::mine(&mut block.header);
    block
}

/// A header on genesis whose proof of work fails.
fn bad_pow_header() -> cairn_consensus::BlockHeader {
    let g = HeaderMeta::genesis(dev().genesis.header);
    let mut h = header_chain(&g, 1, 0xbad)[0];
    while h.target.is_met_by(&h.hash()) {
        h.nonce += 1;
    }
    h
}

/// The peer sends `what` and must be disconnected; returns the text the
/// victim's log and ban give as the reason.
async fn offend(p: &mut RawPeer, what: &str) -> &'static str {
    let why = match what {
        "pow" => {
            p.send(&Message::NewHeaders(vec![bad_pow_header()]))
                .await
                .unwrap();
            "invalid headers"
        }
        "frame" => {
            p.send_frame(vec![0xee; 40]).await.unwrap();
            "undecodable"
        }
        _ => {
            let bad = bad_block(p.local.port() as u8);
            p.send(&Message::NewHeaders(vec![bad.header]))
                .await
                .unwrap();
            let asked = p
                .expect("GetBlocks", WAIT, |m| match m {
                    Message::GetBlocks(v) => Some(v.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(asked, vec![bad.hash()]);
            p.send(&Message::Block(Box::new(bad))).await.unwrap();
            "invalid block"
        }
    };
    assert!(
        p.closed_within(WAIT).await.is_some(),
        "still connected after {what}"
    );
    why
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_data_bans_strangers_but_only_disconnects_the_operators_peers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = victim_config(&dir.path().join("victim"));
    cfg.p2p.whitelist = vec![cairn_p2p::bans::parse_net("127.0.0.2").unwrap()];
    let victim = launch(cfg).await;
    let rv = victim.client();
    let genesis = dev().genesis_hash;
    let to = p2p(&victim);

    // strangers: banned, with the reason, and kept out. On loopback a ban
    // names the address a peer says it listens on (every local node shares
    // the IP), so these peers name one.
    for what in ["pow", "block", "frame"] {
        let listen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listen.local_addr().unwrap();
        let ours = Hello {
            listen_port: Some(listen.port()),
            ..hello(genesis)
        };
        let mut p = RawPeer::connect(to, ours.clone()).await.unwrap();
        let why = offend(&mut p, what).await;
        wait_log(listen, why).await;
        let target = listen.to_string();
        let list = rv.net_list_banned().await.unwrap();
        let ban = list
            .iter()
            .find(|b| b.target == target)
            .unwrap_or_else(|| panic!("{what}: {target} not in {list:?}"));
        assert_eq!(ban.origin, "auto");
        assert!(ban.reason.contains(why), "{what}: {ban:?}");
        assert!(ban.until_ms > ban.created_ms);
        match RawPeer::connect(to, ours).await {
            Err(HandshakeError::Refused(r)) => {
                assert_eq!(r.code, cairn_p2p::RejectCode::Banned, "{r:?}")
            }
            other => panic!(
                "{what}: the banned peer came back: {:?}",
                other.map(|p| p.local)
            ),
        }
    }
    rv.net_clear_banned().await.unwrap();

    // a whitelisted peer: disconnected (the log says why), never banned
    for what in ["pow", "block", "frame"] {
        let mut p = RawPeer::connect_from("127.0.0.2:0".parse().unwrap(), to, hello(genesis))
            .await
            .unwrap();
        let why = offend(&mut p, what).await;
        wait_log(p.local, why).await;
        assert_eq!(bans(&victim).await, Vec::<String>::new(), "{what}");
    }

    // a peer the operator added: the same
    for what in ["pow", "block", "frame"] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let add = tokio::spawn({
            let rv = rv.clone();
            async move { rv.net_add_peer(addr.to_string()).await }
        });
        let mut p = RawPeer::accept(&l, hello(genesis)).await.unwrap();
        add.await.unwrap().expect("net_addPeer");
        let why = offend(&mut p, what).await;
        wait_log(addr, why).await;
        assert_eq!(bans(&victim).await, Vec::<String>::new(), "{what}");
    }
    victim.stop().await;
}
