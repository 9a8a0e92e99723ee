//! The crash campaign: a `cairn-node` process (the victim) is killed with
//! SIGKILL at random instants while it
//!
//! - syncs real blocks (with transfers) from a peer over P2P,
//! - reorganises across branches when the peer switches to a longer one,
//! - accepts transfers over JSON-RPC,
//! - recovers at start-up (sometimes rebuilding everything, `--reindex`),
//! - folds its state checkpoint (`[storage] checkpoint_blocks = 2`: every
//!   other block connected is a checkpoint, so kills during sync and reorg
//!   land inside them).
//!
//! The peer is an in-process node that imports the same blocks directly
//! and never crashes: the reference. After every kill the victim restarts,
//! syncs to the reference's tip, and its tip, every account, the height
//! index, the transaction index and every address history must equal the
//! reference's: zero differences.
//!
//! `CAIRN_CRASH_KILLS` sets the number of kills (default 20, about a
//! minute; `make crash` runs 200) and `CAIRN_CRASH_SEED` replays a run:
//! the seed is printed first.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_api::{CairnApiClient, TxStatus};
use cairn_consensus::testkit::ChainBuilder;
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, Amount, Block, SignedTransfer, Transfer, TxId};
use cairn_genesis::{DevAccount, Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::node::Source;
use cairn_node::service::{self, Running};
use jsonrpsee_http_client::HttpClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

/// Accounts that send transfers inside blocks (dev accounts 0..6).
const BLOCK_SENDERS: u64 = 6;
/// The account whose transfers the test submits to the victim's mempool.
const MEMPOOL_SENDER: usize = 9;

fn dev() -> Network {
    Network::builtin("dev").expect("dev network")
}

/// A chain builder on the dev network itself (so a real node accepts its
/// blocks), at genesis.
fn dev_builder(net: &Network) -> ChainBuilder {
    ChainBuilder {
        params: net.params.clone(),
        accounts: net.accounts.iter().copied().collect(),
        genesis_accounts: net.accounts.clone(),
        blocks: vec![net.genesis.clone()],
        spacing_ms: net.params.target_block_time_ms,
    }
}

/// The builder at the tip of `chain` (genesis first).
fn builder_for(net: &Network, chain: &[Block]) -> ChainBuilder {
    let mut b = dev_builder(net);
    for blk in &chain[1..] {
        b.push(blk.clone());
    }
    b
}

fn transfer(
    b: &ChainBuilder,
    from: &DevAccount,
    to: Address,
    amount: u64,
    fee: u64,
    pending: u64,
) -> SignedTransfer {
    Transfer {
        chain_id: b.params.chain_id,
        from: public_key(&from.key),
        to,
        amount: Amount(amount),
        fee: Amount(fee),
        nonce: b.account(&from.address).nonce + pending,
    }
    .sign(&from.key)
}

/// A block on top of `b` with a few transfers between the block senders
/// and fresh recipients; `salt` makes sibling branches differ.
fn next_block(b: &ChainBuilder, rng: &mut StdRng, salt: u64, accounts: &[DevAccount]) -> Block {
    let h = b.tip().header.height.0;
    let fee = b.params.min_fee.0;
    let n = rng.gen_range(0..4u64);
    let mut txs = Vec::new();
    let mut used = BTreeSet::new();
    for i in 0..n {
        let from = ((h + i + salt) % BLOCK_SENDERS) as usize;
        if !used.insert(from) {
            continue;
        }
        // recipients: other senders, and a new address now and then (new
        // accounts make reorganisations create and delete accounts)
        let to = if rng.gen_bool(0.1) {
            cairn_consensus::testkit::address(1000 + h * 7 + i + salt * 100_000)
        } else {
            accounts[((from as u64 + 1 + salt) % BLOCK_SENDERS) as usize].address
        };
        let amount = rng.gen_range(1..1_000_000);
        txs.push(transfer(b, &accounts[from], to, amount, fee, 0));
    }
    let miner = accounts[7 + (salt % 2) as usize].address;
    b.build(txs, miner)
}

/// The reference: an in-process node fed the blocks directly, serving P2P
/// to the victim and RPC to the comparison.
struct Reference {
    running: Running,
    rpc: HttpClient,
    p2p: String,
}

async fn start_reference(dir: &Path) -> Reference {
    let mut c = NodeConfig::ephemeral(dir.to_path_buf());
    c.p2p.request_timeout_ms = 3_000;
    c.p2p.ping_interval_ms = 1_000;
    c.p2p.ping_timeout_ms = 5_000;
    let running = service::launch(dev(), c).await.expect("reference starts");
    let rpc = running.client();
    let p2p = running.p2p_addr().expect("P2P runs").to_string();
    Reference { running, rpc, p2p }
}

impl Reference {
    fn import(&self, blocks: &[Block]) {
        for b in blocks {
            self.running
                .node
                .submit_block(b.clone(), Source::Rpc)
                .unwrap_or_else(|e| panic!("the reference refuses block {}: {e}", b.hash()));
        }
    }
}

/// Everything compared between the victim and the reference.
struct World {
    net: Network,
    /// Every address that ever held or received anything.
    addresses: Vec<String>,
    /// Every transfer id in any block built (both branches).
    txids: Vec<TxId>,
}

/// A difference between the victim and the reference, or a failed call.
async fn compare(world: &World, victim: &HttpClient, reference: &HttpClient) -> Vec<String> {
    let mut diffs = Vec::new();
    let (Ok(vi), Ok(ri)) = (
        victim.chain_get_info().await,
        reference.chain_get_info().await,
    ) else {
        return vec!["chain_getInfo failed".into()];
    };
    if (vi.height, vi.best_hash, vi.total_work, vi.target)
        != (ri.height, ri.best_hash, ri.total_work, ri.target)
    {
        diffs.push(format!(
            "tip: victim {} {} reference {} {}",
            vi.height, vi.best_hash, ri.height, ri.best_hash
        ));
        return diffs;
    }
    // the height index
    for h in 0..=vi.height {
        let v = victim.chain_get_block_hash(h).await.ok();
        let r = reference.chain_get_block_hash(h).await.ok();
        if v != r {
            diffs.push(format!("height {h}: victim {v:?} reference {r:?}"));
        }
    }
    // every account
    for a in &world.addresses {
        let v = victim.state_get_account(a.clone()).await;
        let r = reference.state_get_account(a.clone()).await;
        match (v, r) {
            (Ok(v), Ok(r)) if (v.balance, v.nonce) == (r.balance, r.nonce) => {}
            (v, r) => diffs.push(format!(
                "account {a}: victim {:?} reference {:?}",
                v.map(|x| (x.balance, x.nonce)),
                r.map(|x| (x.balance, x.nonce))
            )),
        }
    }
    // the transaction index: confirmed where, or not confirmed
    let confirmed = |t: &cairn_api::TransactionView| {
        (t.status == TxStatus::Confirmed).then_some((t.block_hash, t.height, t.confirmations))
    };
    for id in &world.txids {
        let v = victim.chain_get_transaction(*id).await;
        let r = reference.chain_get_transaction(*id).await;
        match (v, r) {
            (Ok(v), Ok(r)) if confirmed(&v) == confirmed(&r) => {}
            (v, r) => diffs.push(format!(
                "transaction {id}: victim {:?} reference {:?}",
                v.map(|t| confirmed(&t)),
                r.map(|t| confirmed(&t))
            )),
        }
    }
    // address histories (confirmed entries; mempools differ by design)
    for a in &world.addresses {
        let page = |rpc: HttpClient, a: String| async move {
            rpc.state_get_history(a, Some(cairn_node::rpc::MAX_HISTORY), None)
                .await
                .map(|p| {
                    p.entries
                        .into_iter()
                        .filter(|e| e.status == TxStatus::Confirmed)
                        .map(|e| (e.txid, e.direction, e.amount, e.fee, e.block_hash, e.height))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        };
        let v = page(victim.clone(), a.clone()).await;
        let r = page(reference.clone(), a.clone()).await;
        if v != r {
            diffs.push(format!("history of {a}: victim {v:?}\nreference {r:?}"));
        }
    }
    let _ = &world.net;
    diffs
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Sync,
    Reorg,
    Transfers,
    Startup,
    StartupReindex,
}

/// Submits transfers from the mempool sender to the victim until aborted.
fn spawn_submitter(rpc: HttpClient, net: Network, start_nonce: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let accounts = dev_accounts();
        let from = &accounts[MEMPOOL_SENDER];
        let mut nonce = start_nonce;
        loop {
            let t = Transfer {
                chain_id: net.params.chain_id,
                from: public_key(&from.key),
                to: accounts[8].address,
                amount: Amount(1 + nonce),
                fee: net.params.min_fee,
                nonce,
            }
            .sign(&from.key);
            let _ = rpc.tx_submit(hex_of(&t)).await;
            nonce = (nonce + 1) % 200;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_sync_reorg_transfers_startup_and_checkpoints() {
    let kills: u32 = std::env::var("CAIRN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "crash campaign: {kills} kills, seed {seed} (replay: CAIRN_CRASH_SEED={seed} CAIRN_CRASH_KILLS={kills} cargo test --test crash_campaign -- --nocapture)"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let net = dev();
    let accounts = dev_accounts();
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = start_reference(&dir.path().join("reference")).await;
    let victim_dir = dir.path().join("victim");
    std::fs::create_dir_all(&victim_dir).expect("victim dir");
    let config_file = dir.path().join("victim.toml");
    // a checkpoint every other block, so kills land inside checkpoints
    std::fs::write(&config_file, "[storage]\ncheckpoint_blocks = 2\n").expect("config");
    let config_arg = config_file.to_str().expect("utf-8 path").to_string();
    let peer = reference.p2p.clone();
    let start_victim = |extra: &[&str]| {
        let mut args = vec![
            "--network",
            "dev",
            "--peer",
            peer.as_str(),
            "--config",
            config_arg.as_str(),
        ];
        args.extend_from_slice(extra);
        NodeProcess::start_with_log(&victim_dir, &args, "error")
    };

    // the current best chain (genesis first) and everything ever built
    let mut chain: Vec<Block> = vec![net.genesis.clone()];
    let mut world = World {
        net: net.clone(),
        addresses: accounts
            .iter()
            .map(|a| a.address.encode(&net.params.address_prefix))
            .collect(),
        txids: Vec::new(),
    };
    let mut salt = 0u64;
    let record = |world: &mut World, blocks: &[Block]| {
        for b in blocks {
            for t in &b.transfers {
                world.txids.push(t.id());
                let to = t.transfer.to.encode(&net.params.address_prefix);
                if !world.addresses.contains(&to) {
                    world.addresses.push(to);
                }
            }
        }
    };

    // a first stretch of chain, so reorganisations have room
    let mut b = dev_builder(&net);
    let mut first = Vec::new();
    for _ in 0..8 {
        let blk = next_block(&b, &mut rng, salt, &accounts);
        b.push(blk.clone());
        first.push(blk);
    }
    record(&mut world, &first);
    chain.extend(first.iter().cloned());
    reference.import(&first);

    let mut victim = start_victim(&[]);
    let mut catch_up = Duration::from_millis(300);
    let mut startup = Duration::from_millis(500);
    let mut counts = std::collections::BTreeMap::<Phase, u32>::new();
    let mut rebuilt_reports = 0;
    let mut interrupted = 0;
    let started = Instant::now();
    for round in 0..kills {
        let phase = match rng.gen_range(0..10) {
            0..=3 => Phase::Sync,
            4..=5 => Phase::Reorg,
            6..=7 => Phase::Transfers,
            8 => Phase::Startup,
            _ => Phase::StartupReindex,
        };
        *counts.entry(phase).or_default() += 1;
        // new blocks at the reference: the victim syncs (or reorganises to) them
        let new_blocks: Vec<Block> = match phase {
            Phase::Sync | Phase::Transfers | Phase::Startup | Phase::StartupReindex => {
                let mut b = builder_for(&net, &chain);
                let n = match phase {
                    Phase::Sync => rng.gen_range(3..15),
                    _ => rng.gen_range(0..4),
                };
                let mut out = Vec::new();
                for _ in 0..n {
                    let blk = next_block(&b, &mut rng, salt, &accounts);
                    b.push(blk.clone());
                    out.push(blk);
                }
                chain.extend(out.iter().cloned());
                out
            }
            Phase::Reorg => {
                // a longer branch forking a few blocks back
                salt += 1;
                let depth = rng.gen_range(1..chain.len().min(12));
                let fork = chain.len() - 1 - depth;
                let mut b = builder_for(&net, &chain[..=fork]);
                let mut out = Vec::new();
                for _ in 0..depth + rng.gen_range(1..4) {
                    let blk = next_block(&b, &mut rng, salt, &accounts);
                    b.push(blk.clone());
                    out.push(blk);
                }
                chain.truncate(fork + 1);
                chain.extend(out.iter().cloned());
                out
            }
        };
        record(&mut world, &new_blocks);

        let kill_at;
        match phase {
            Phase::Startup | Phase::StartupReindex => {
                reference.import(&new_blocks);
                victim.kill9();
                let extra: &[&str] = if phase == Phase::StartupReindex {
                    &["--reindex"]
                } else {
                    &[]
                };
                // kill somewhere inside start-up (opening, recovery, rebuild)
                kill_at =
                    Duration::from_micros(rng.gen_range(0..startup.as_micros().max(1) as u64));
                let mut args = vec![
                    "run".to_string(),
                    "--datadir".into(),
                    victim_dir.display().to_string(),
                    "--rpc-addr".into(),
                    "127.0.0.1:0".into(),
                    "--p2p-addr".into(),
                    "127.0.0.1:0".into(),
                    "--network".into(),
                    "dev".into(),
                    "--peer".into(),
                    peer.clone(),
                    "--config".into(),
                    config_arg.clone(),
                ];
                args.extend(extra.iter().map(|s| s.to_string()));
                let child = std::process::Command::new(bin("cairn-node"))
                    .args(&args)
                    .env("RUST_LOG", "error")
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn cairn-node");
                let mut guard = ChildGuard(child);
                tokio::time::sleep(kill_at).await;
                let _ = guard.0.kill();
                let _ = wait_child(&mut guard.0, EXIT_DEADLINE);
            }
            Phase::Sync | Phase::Reorg | Phase::Transfers => {
                let submitter = (phase == Phase::Transfers)
                    .then(|| spawn_submitter(victim.client(), net.clone(), rng.gen_range(0..50)));
                reference.import(&new_blocks);
                // a random instant while the victim fetches and connects them
                // (`catch_up` also counts a restart's connection set-up, so
                // the work itself is in about its first half)
                let window = (catch_up / 2).as_micros().max(1) as u64;
                kill_at = Duration::from_micros(rng.gen_range(0..window));
                tokio::time::sleep(kill_at).await;
                victim.kill9();
                if let Some(s) = submitter {
                    s.abort();
                }
            }
        }

        // restart, catch up with the reference, compare everything
        let t0 = Instant::now();
        victim = start_victim(&[]);
        if t0.elapsed() > Duration::from_millis(50) {
            startup = t0.elapsed();
        }
        if victim.stdout.iter().any(|l| l.contains("rebuilt")) {
            rebuilt_reports += 1;
        }
        // a SIGKILL loses no flushed block: sled's log is in the kernel's
        // hands once written, so the store must never report lost blocks here
        if let Some(n) = &victim.ready.notice
            && n.contains("lost")
        {
            panic!("round {round} ({phase:?}, seed {seed}): {n}");
        }
        let rpc = victim.client();
        let want = reference.running.node.tip().hash;
        // the kill landed before the victim had everything: it restarted behind
        if victim.ready.best_hash != want.to_string() {
            interrupted += 1;
        }
        let t1 = Instant::now();
        wait_for(
            "the victim to reach the reference's tip",
            Duration::from_secs(90),
            || {
                let rpc = rpc.clone();
                async move {
                    let info = rpc.chain_get_info().await.ok()?;
                    (info.best_hash == want).then_some(())
                }
            },
            || async {
                format!(
                    "round {round} ({phase:?}, seed {seed}): victim {:?}, reference height {}",
                    rpc.chain_get_info()
                        .await
                        .map(|i| (i.height, i.best_hash, i.peers)),
                    reference.running.node.tip().header.height
                )
            },
        )
        .await;
        catch_up = (catch_up + t1.elapsed().max(Duration::from_millis(20))) / 2;
        let diffs = compare(&world, &rpc, &reference.rpc).await;
        assert!(
            diffs.is_empty(),
            "round {round} ({phase:?}, killed after {kill_at:?}, seed {seed}): {} differences:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }
    // the reference itself agrees with the pure state transition
    let model = builder_for(&net, &chain);
    for (address, account) in &model.accounts {
        let got = reference.running.node.account(address).expect("account");
        assert_eq!(&got, account, "reference account {address:?}");
    }
    eprintln!(
        "crash campaign: {kills} kills ({counts:?}) in {:?}, {interrupted} restarts behind the reference (killed mid-work), chain height {}, {} transfers indexed, {} addresses, state rebuilt after {rebuilt_reports} restarts, no lost blocks; zero differences (seed {seed})",
        started.elapsed(),
        chain.len() - 1,
        world.txids.len(),
        world.addresses.len()
    );
    victim.kill9();
    reference.running.stop().await;
}
