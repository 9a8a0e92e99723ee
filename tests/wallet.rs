//! The wallet end to end through the real binaries: two wallets, coins
//! mined to the first, transfers to the second, confirmations, balances and
//! history on both sides, and every kind of bad input refused with a clear
//! message and nothing sent.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cairn_api::CairnApiClient;
use cairn_consensus::COIN;
use serde_json::Value;
use support::*;

struct WalletCli {
    file: PathBuf,
    password: PathBuf,
    rpc: String,
    /// The node's datadir, where the wallet finds its RPC cookie.
    datadir: Option<PathBuf>,
}

impl WalletCli {
    fn new(dir: &Path, name: &str, node: &NodeProcess) -> WalletCli {
        let mut w = WalletCli::unconnected(dir, name, &node.rpc_url);
        w.datadir = Some(node.datadir.clone());
        w
    }

    fn unconnected(dir: &Path, name: &str, rpc: &str) -> WalletCli {
        let password = dir.join(format!("{name}.pw"));
        std::fs::write(&password, format!("pass-{name}\n")).unwrap();
        WalletCli {
            file: dir.join(format!("{name}.json")),
            password,
            rpc: rpc.to_string(),
            datadir: None,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("cairn-wallet"));
        c.arg("--wallet")
            .arg(&self.file)
            .arg("--password-file")
            .arg(&self.password)
            .args(["--rpc", &self.rpc])
            .args(args)
            .env_remove("CAIRN_DATADIR")
            .env_remove("CAIRN_WALLET_PASSWORD")
            .stdin(Stdio::null());
        if let Some(d) = &self.datadir {
            c.arg("--datadir").arg(d);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }

    /// Runs with --json and expects success.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "cairn-wallet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs and expects failure mentioning `needle`.
    fn fails(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "cairn-wallet {args:?} should fail");
        assert!(
            err.contains(needle),
            "cairn-wallet {args:?}: expected {needle:?} in: {err}"
        );
    }

    fn balance(&self) -> u64 {
        self.json(&["balance"])["total"].as_u64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_wallets_send_confirm_and_see_history() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), &["--network", "dev"]);
    let rpc = node.client();
    let alice = WalletCli::new(dir.path(), "alice", &node);
    let bob = WalletCli::new(dir.path(), "bob", &node);
    let a = alice.json(&["new", "--kdf-memory-mib", "8"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let b = bob.json(&["new", "--kdf-memory-mib", "8"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a.starts_with("cdev1") && b.starts_with("cdev1"));
    assert_eq!(alice.json(&["address"])["address"], a.as_str());

    rpc.mining_generate(2, a.clone()).await.unwrap();
    assert_eq!(alice.balance(), 100 * COIN);

    // one transfer, pending then confirmed
    let txid = alice.json(&["send", "--to", &b, "--amount", "12.5"])["txid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(alice.json(&["tx", &txid])["status"], "pending");
    rpc.mining_generate(1, a.clone()).await.unwrap();
    let tx = bob.json(&["tx", &txid]);
    assert_eq!(
        (tx["status"].as_str(), tx["confirmations"].as_u64()),
        (Some("confirmed"), Some(1))
    );
    let fee = 1000; // the dev network's minimum, used by default
    assert_eq!(bob.balance(), 12 * COIN + COIN / 2);
    // alice mined the block holding her transfer, so its fee came back to her
    assert_eq!(alice.balance(), 150 * COIN - 12 * COIN - COIN / 2);
    let bob_history = bob.json(&["history"])["entries"].clone();
    assert_eq!(bob_history[0]["direction"], "in");
    assert_eq!(bob_history[0]["txid"], txid.as_str());
    assert_eq!(bob_history[0]["counterparty"], a.as_str());
    let alice_history = alice.json(&["history"])["entries"].clone();
    // newest first: block 3 holds both alice's transfer and her reward
    let newest: Vec<&Value> = alice_history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["height"] == 3)
        .collect();
    assert_eq!(alice_history[0]["height"], 3);
    assert!(
        newest
            .iter()
            .any(|e| e["direction"] == "out" && e["txid"] == txid.as_str())
    );
    assert!(newest.iter().any(|e| e["direction"] == "mined"));
    assert_eq!(
        alice_history.as_array().unwrap().len(),
        4,
        "three rewards and one transfer"
    );

    // three sends in a row, no block in between: all in the next block
    let ids: Vec<String> = (1..=3)
        .map(|i| {
            alice.json(&["send", "--to", &b, "--amount", &format!("0.{i}")])["txid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mined = rpc.mining_generate(1, b.clone()).await.unwrap();
    for id in &ids {
        let tx = alice.json(&["tx", id]);
        assert_eq!(tx["status"], "confirmed", "{id}");
        assert_eq!(tx["block_hash"], mined[0].to_hex().as_str());
    }
    let bob_now = bob.balance();
    // bob mined that block: its reward and the three fees
    assert_eq!(
        bob_now,
        12 * COIN + COIN / 2 + 6 * COIN / 10 + 50 * COIN + 3 * fee
    );

    // send --wait returns once a block confirms it
    let waiter = alice
        .cmd(&[
            "--json",
            "send",
            "--to",
            &b,
            "--amount",
            "1",
            "--wait",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the waited-for transfer to reach the mempool",
        Duration::from_secs(30),
        || {
            let rpc = rpc.clone();
            async move { (rpc.mempool_get_info().await.ok()?.count > 0).then_some(()) }
        },
        || async { "mempool stayed empty".to_string() },
    )
    .await;
    rpc.mining_generate(1, b.clone()).await.unwrap();
    let out = wait_with_output_within(waiter, TOOL_DEADLINE, "cairn-wallet send --wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["status"], "confirmed");

    // cold signing: sign offline, broadcast later
    let nonce = alice.json(&["balance"])["accounts"][0]["next_nonce"]
        .as_u64()
        .unwrap();
    let signed = alice.json(&[
        "sign",
        "--offline",
        "--chain-id",
        "1337",
        "--nonce",
        &nonce.to_string(),
        "--fee",
        "0.0001",
        "--to",
        &b,
        "--amount",
        "2",
    ]);
    let hex = signed["hex"].as_str().unwrap();
    let sent = bob.json(&["broadcast", hex]);
    assert_eq!(sent["txid"], signed["txid"]);

    // export from alice, import into a third wallet: same address
    let secret = alice.json(&["export"])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let carol = WalletCli::new(dir.path(), "carol", &node);
    carol.json(&["new", "--kdf-memory-mib", "8"]);
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let imported = carol.json(&["import", "--secret-file", secret_file.to_str().unwrap()]);
    assert_eq!(imported["address"], a.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), &["--network", "dev"]);
    let rpc = node.client();
    let alice = WalletCli::new(dir.path(), "alice", &node);
    let a = alice.json(&["new", "--kdf-memory-mib", "8"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let b = alice.json(&["new"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    rpc.mining_generate(1, a.clone()).await.unwrap();

    // a typo in the recipient: the last character changed
    let mut typo = b.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'q' { 'p' } else { 'q' });
    alice.fails(
        &["send", "--to", &typo, "--amount", "1"],
        "checksum does not match",
    );
    // an address of another network
    let other = "ctest1qhx3a22sev4esxtzw3pgk0mupk5tcch7crq8xz";
    alice.fails(&["send", "--to", other, "--amount", "1"], "--to");
    alice.fails(
        &["send", "--to", &b, "--amount", "1.000000001"],
        "more than 8 decimal places",
    );
    alice.fails(
        &["send", "--to", &b, "--amount", "abc"],
        "not a decimal number",
    );
    alice.fails(&["send", "--to", &b, "--amount", "51"], "available");
    alice.fails(
        &["send", "--to", &b, "--amount", "1", "--fee", "0.000001"],
        "below the node's minimum",
    );
    assert_eq!(
        rpc.mempool_get_info().await.unwrap().count,
        0,
        "nothing was sent"
    );

    // wrong password
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "nope\n").unwrap();
    let out = alice
        .cmd(&["balance"])
        .arg("--password-file")
        .arg(&wrong)
        .output_within_deadline();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));

    // the node is unreachable: the URL is named
    let offline = WalletCli {
        rpc: "http://127.0.0.1:9".into(),
        file: alice.file.clone(),
        password: alice.password.clone(),
        datadir: None,
    };
    offline.fails(
        &["send", "--to", &b, "--amount", "1"],
        "cannot reach the node at http://127.0.0.1:9",
    );

    // a node on another network
    let testnet = NodeProcess::start(&dir.path().join("testnet"), &["--network", "testnet"]);
    let elsewhere = WalletCli {
        rpc: testnet.rpc_url.clone(),
        file: alice.file.clone(),
        password: alice.password.clone(),
        datadir: Some(testnet.datadir.clone()),
    };
    elsewhere.fails(
        &["send", "--to", &b, "--amount", "1"],
        "is on network \"testnet\"",
    );

    // a tampered wallet file
    let text = std::fs::read_to_string(&alice.file).unwrap();
    let tampered = text.replacen("\"chain_id\": 1337", "\"chain_id\": 1338", 1);
    assert_ne!(text, tampered);
    std::fs::write(&alice.file, tampered).unwrap();
    alice.fails(&["balance"], "tampered");
    std::fs::write(&alice.file, &text[..text.len() / 2]).unwrap();
    alice.fails(&["list"], "corrupted");
    assert_eq!(
        rpc.mempool_get_info().await.unwrap().count,
        0,
        "still nothing sent"
    );
}

#[cfg(unix)]
#[test]
fn the_wallet_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let w = WalletCli::unconnected(dir.path(), "w", "http://127.0.0.1:9");
    w.json(&[
        "new",
        "--offline",
        "--prefix",
        "cdev",
        "--chain-id",
        "1337",
        "--kdf-memory-mib",
        "8",
    ]);
    let mode = std::fs::metadata(&w.file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_frictions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), &["--network", "dev"]);
    let rpc = node.client();

    // a wallet made without any node, for a built-in network
    let mut alice = WalletCli::unconnected(dir.path(), "alice", "http://127.0.0.1:9");
    let a = alice.json(&["new", "--network", "dev", "--kdf-memory-mib", "8"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a.starts_with("cdev1"), "{a}");

    // `--rpc host:port` without a scheme
    let hostport = node.rpc_url.trim_start_matches("http://").to_string();
    alice.rpc = hostport;
    alice.datadir = Some(node.datadir.clone());
    rpc.mining_generate(2, a.clone()).await.unwrap();
    assert_eq!(alice.balance(), 100 * COIN);

    // a fee above the cap is refused, whatever the node would take
    let bob = "cdev1wf6fdvmw3rjs2n4hdr7xx0znlh2k588mc7cghj";
    alice.fails(
        &["send", "--to", bob, "--amount", "1", "--fee", "0.5"],
        "--max-fee",
    );
    alice.fails(
        &[
            "send",
            "--to",
            bob,
            "--amount",
            "1",
            "--fee",
            "0.5",
            "--max-fee",
            "0.1",
        ],
        "above --max-fee",
    );
    assert_eq!(
        rpc.mempool_get_info().await.unwrap().count,
        0,
        "nothing sent"
    );
    let sent = alice.json(&[
        "send",
        "--to",
        bob,
        "--amount",
        "1",
        "--fee",
        "0.5",
        "--max-fee",
        "0.5",
    ]);
    let txid = sent["txid"].as_str().unwrap().to_string();
    rpc.mining_generate(1, bob.to_string()).await.unwrap();

    // history shows what a send cost
    let out = alice.run(&["history"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let line = text
        .lines()
        .find(|l| l.contains(&txid))
        .expect("the send is listed");
    assert!(line.contains("fee 0.5"), "{line}");

    // an unknown transaction id is a failure, not a quiet line
    let unknown = "ab".repeat(32);
    let out = alice.run(&["tx", &unknown]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown"));

    // without the node's datadir (and no cookie in the default place) the
    // refusal says where the cookie is looked for and how to point at it
    let empty_home = dir.path().join("home");
    std::fs::create_dir_all(&empty_home).unwrap();
    alice.datadir = None;
    let out = alice
        .cmd(&["balance"])
        .env("XDG_DATA_HOME", &empty_home)
        .env("HOME", &empty_home)
        .output_within_deadline();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("401") && err.contains(".cookie") && err.contains("--datadir"),
        "{err}"
    );
    // CAIRN_DATADIR works as well as --datadir
    let out = alice
        .cmd(&["--json", "balance"])
        .env("CAIRN_DATADIR", &node.datadir)
        .output_within_deadline();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
