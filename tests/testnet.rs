//! The experimenter's testnet through the binary: `cairn-node testnet up
//! --detach`, status with the common ancestor of diverged tips, partition
//! by groups, heal, a one-call reorganisation, kill and start, and a
//! manifest written by hand for nodes started some other way.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{NodeProcess, bin};

/// Runs `cairn-node testnet ARGS --dir DIR`; returns stdout, panicking with
/// the output when it fails.
fn tn(dir: &Path, args: &[&str]) -> String {
    let out = tn_raw(dir, args);
    assert!(
        out.status.success(),
        "cairn-node testnet {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tn_raw(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("cairn-node"))
        .arg("testnet")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cairn-node testnet")
}

fn status(dir: &Path) -> Value {
    serde_json::from_str(&tn(dir, &["status", "--json"])).expect("status --json is JSON")
}

/// Polls `status --json` until `check` holds, or panics with the last status.
fn wait_status(dir: &Path, what: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(dir);
        if check(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; last status:\n{s:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn heights(s: &Value) -> Vec<u64> {
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["height"].as_u64().unwrap_or(u64::MAX))
        .collect()
}

/// Stops the testnet's nodes when the test ends, passed or failed.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if self.0.join("manifest.json").exists() {
            let _ = tn_raw(&self.0, &["down"]);
        }
    }
}

#[test]
fn detach_partition_heal_reorg_kill_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down(dir.clone());
    let out = tn(&dir, &["up", "--nodes", "4", "--miners", "0", "--detach"]);
    assert!(out.contains("Running in the background"), "{out}");

    // the manifest lists every node and the funded accounts
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let nodes = manifest["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["index"], i);
        assert!(
            n["rpc_url"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:")
        );
        assert!(n["p2p_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(
            n["datadir"]
                .as_str()
                .unwrap()
                .ends_with(&format!("node-{i}"))
        );
        assert!(n["pid"].as_u64().is_some());
    }
    assert!(manifest["accounts"].as_array().unwrap().len() >= 4);
    let ports: Vec<String> = nodes.iter().map(|n| n["rpc_url"].to_string()).collect();

    let s = wait_status(&dir, "a full mesh", Duration::from_secs(20), |s| {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["peers"] == 3)
    });
    assert_eq!(s["converged"], true);
    assert_eq!(heights(&s), vec![0, 0, 0, 0]);
    assert_eq!(s["nodes"][0]["up"], true);
    assert!(s["nodes"][0]["best_hash"].as_str().unwrap().len() == 64);

    // two groups that exchange nothing, each mining its own branch
    tn(&dir, &["partition", "0,1", "2,3"]);
    tn(&dir, &["mine", "--node", "0", "--generate", "2"]);
    tn(&dir, &["mine", "--node", "2", "--generate", "3"]);
    let s = wait_status(&dir, "two branches", Duration::from_secs(20), |s| {
        heights(s) == vec![2, 2, 3, 3]
    });
    assert_eq!(s["converged"], false);
    assert_eq!(s["tips"], 2);
    assert_eq!(s["common_ancestor"]["height"], 0, "{s:#}");
    // still apart a moment later: nothing leaks through the partition
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(heights(&status(&dir)), vec![2, 2, 3, 3]);

    tn(&dir, &["heal"]);
    let s = wait_status(
        &dir,
        "one tip after the heal",
        Duration::from_secs(30),
        |s| s["converged"] == true && heights(s) == vec![3, 3, 3, 3],
    );
    assert!(s["common_ancestor"].is_null());

    // a reorganisation of depth 3 on real proof of work, in one call
    let report: Value = serde_json::from_str(&tn(
        &dir,
        &["reorg", "--depth", "3", "--nodes", "1", "--json"],
    ))
    .unwrap();
    assert_eq!(report["depth"], 3, "{report:#}");
    assert_eq!(report["replaced"].as_array().unwrap().len(), 3);
    assert_eq!(report["fork_height"], 3);
    assert_eq!(report["new_height"], 7);
    let s = status(&dir);
    assert_eq!(s["converged"], true);
    assert_eq!(heights(&s), vec![7, 7, 7, 7]);
    assert!(s["partition"].as_array().unwrap().is_empty());

    // nobody was banned by partitions
    for n in nodes {
        let out = Command::new(bin("cairn-node"))
            .args([
                "rpc",
                "--rpc",
                n["rpc_url"].as_str().unwrap(),
                "--datadir",
                n["datadir"].as_str().unwrap(),
                "net_listBanned",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let bans: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            bans,
            serde_json::json!([]),
            "node {} banned someone",
            n["index"]
        );
    }

    // kill one node, mine without it, start it again: it catches up on its old ports
    tn(&dir, &["kill", "1"]);
    let s = status(&dir);
    assert_eq!(s["nodes"][1]["up"], false);
    tn(&dir, &["mine", "--node", "0", "--generate", "1"]);
    tn(&dir, &["start", "1"]);
    wait_status(
        &dir,
        "the restarted node to catch up",
        Duration::from_secs(30),
        |s| s["converged"] == true && heights(s) == vec![8, 8, 8, 8],
    );

    // down stops them all; up again reuses the ports and the chains
    tn(&dir, &["down"]);
    let s = status(&dir);
    assert!(
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["up"] == false)
    );
    tn(&dir, &["up", "--nodes", "4", "--miners", "0", "--detach"]);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let again: Vec<String> = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["rpc_url"].to_string())
        .collect();
    assert_eq!(again, ports, "ports are kept across restarts");
    wait_status(
        &dir,
        "the chains back after a restart",
        Duration::from_secs(20),
        |s| heights(s) == vec![8, 8, 8, 8],
    );
}

/// A manifest written by hand drives nodes that the testnet did not start:
/// one found by its cookie, one by a fixed login.
#[test]
fn a_hand_written_manifest_drives_nodes_started_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProcess::start(&tmp.path().join("a"), &["--network", "dev"]);
    let a_p2p = a.p2p_addr.clone().unwrap();
    let b = NodeProcess::start(
        &tmp.path().join("b"),
        &[
            "--network",
            "dev",
            "--peer",
            &a_p2p,
            "--rpc-user",
            "lab",
            "--rpc-password",
            "secret-pw",
        ],
    );
    let dir = tmp.path().join("net");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = serde_json::json!({
        "network": "dev",
        "nodes": [
            {"index": 0, "rpc_url": a.rpc_url, "p2p_addr": a_p2p, "datadir": a.datadir, "role": "node",
             "miner_address": cairn_genesis::dev_accounts()[0].address.encode(&cairn_consensus::AddressPrefix::new("cdev").unwrap())},
            {"index": 1, "rpc_url": b.rpc_url, "p2p_addr": b.p2p_addr.clone().unwrap(),
             "rpc_user": "lab", "rpc_password": "secret-pw", "role": "node"}
        ]
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    wait_status(
        &dir,
        "the two nodes connected",
        Duration::from_secs(20),
        |s| {
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["peers"] == 1)
        },
    );
    tn(&dir, &["partition", "0", "1"]);
    tn(&dir, &["mine", "--node", "0", "--generate", "2"]);
    std::thread::sleep(Duration::from_millis(500));
    let s = status(&dir);
    assert_eq!(heights(&s), vec![2, 0], "{s:#}");
    assert_eq!(s["common_ancestor"]["height"], 0);
    tn(&dir, &["heal"]);
    wait_status(&dir, "the heal", Duration::from_secs(20), |s| {
        heights(s) == vec![2, 2]
    });
    // kill and start need a node this host started
    let out = tn_raw(&dir, &["kill", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not started by this host"));
    drop((a, b));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("none");
    let out = tn_raw(&dir, &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no testnet manifest"));
    let out = tn_raw(&dir, &["up", "--topology", "tree", "--detach"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not mesh, ring, star or random:K"));
}

/// A delay on a node's links shows in the propagation figures; instant
/// mining confirms a load's transfers; the stats JSON has its sections.
#[test]
fn a_link_delay_shows_in_stats_and_instant_mining_confirms_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down(dir.clone());
    tn(&dir, &["up", "--nodes", "3", "--miners", "0", "--detach"]);
    wait_status(&dir, "a full mesh", Duration::from_secs(20), |s| {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["peers"] == 2)
    });
    let stats =
        |dir: &Path| -> Value { serde_json::from_str(&tn(dir, &["stats", "--json"])).unwrap() };
    for h in 1..=2 {
        tn(&dir, &["mine", "--node", "0", "--generate", "1"]);
        wait_status(&dir, "the block everywhere", Duration::from_secs(20), |s| {
            heights(s) == vec![h; 3]
        });
    }
    let before = stats(&dir);
    let fast = before["propagation"]["blocks"]["to_100pct"]["max_ms"]
        .as_u64()
        .unwrap();
    assert!(fast < 400, "loopback without faults: {before:#}");
    assert!(before["reorg"]["count"].is_u64());

    let out = tn(&dir, &["link", "0", "all", "--delay", "400ms"]);
    assert!(out.contains("2 links"), "{out}");
    for h in 3..=4 {
        tn(&dir, &["mine", "--node", "0", "--generate", "1"]);
        wait_status(&dir, "the block everywhere", Duration::from_secs(20), |s| {
            heights(s) == vec![h; 3]
        });
    }
    let after = stats(&dir);
    let p = &after["propagation"]["blocks"];
    assert_eq!(p["items"], 4, "{after:#}");
    assert!(
        p["to_100pct"]["max_ms"].as_u64().unwrap() >= 400,
        "{after:#}"
    );
    assert!(
        p["to_50pct"]["p95_ms"].as_u64().unwrap() >= 400,
        "{after:#}"
    );
    assert_eq!(after["stale"]["stale"], 0);
    assert!(
        after["bytes_sent_per_block"].as_u64().unwrap() > 0,
        "{after:#}"
    );
    let svg = tmp.path().join("p.svg");
    tn(&dir, &["stats", "--plot", svg.to_str().unwrap()]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("Propagation"));

    // clear the delay, mine on every transfer, and load the network
    tn(&dir, &["link", "all", "all"]);
    let out = tn(&dir, &["mine", "--node", "0", "--mode", "instant"]);
    assert!(out.contains("node-0: instant"), "{out}");
    let load: Value = serde_json::from_str(&tn(
        &dir,
        &[
            "load",
            "--tps",
            "20",
            "--duration",
            "1s",
            "--wait",
            "20s",
            "--json",
        ],
    ))
    .unwrap();
    assert!(load["accepted"].as_u64().unwrap() >= 15, "{load:#}");
    assert_eq!(load["rejected"], 0, "{load:#}");
    assert_eq!(load["confirmed"], load["accepted"], "{load:#}");
    assert!(load["latency"]["median_ms"].as_u64().is_some());
    let s = stats(&dir);
    assert!(
        s["propagation"]["transfers"]["items"].as_u64().unwrap() >= 15,
        "{s:#}"
    );
}

/// A snapshot is every node's chain; a restore brings it back, and again.
#[test]
fn snapshot_and_double_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down(dir.clone());
    tn(&dir, &["up", "--nodes", "2", "--miners", "0", "--detach"]);
    tn(&dir, &["mine", "--node", "0", "--generate", "2"]);
    wait_status(&dir, "height 2", Duration::from_secs(20), |s| {
        heights(s) == vec![2, 2]
    });
    let tip = status(&dir)["nodes"][0]["best_hash"].clone();
    // pending transfers (nobody mines them) are part of the snapshot
    let load: Value = serde_json::from_str(&tn(
        &dir,
        &[
            "load",
            "--tps",
            "10",
            "--duration",
            "1s",
            "--wait",
            "1s",
            "--json",
        ],
    ))
    .unwrap();
    let pending = load["accepted"].as_u64().unwrap();
    assert!(pending >= 5, "{load:#}");
    wait_status(
        &dir,
        "the transfers in both mempools",
        Duration::from_secs(20),
        |s| {
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["mempool"] == pending)
        },
    );
    tn(&dir, &["snapshot", "first"]);
    let out = tn_raw(&dir, &["snapshot", "first"]);
    assert!(!out.status.success(), "a snapshot name is used once");
    for extra in ["3", "1"] {
        tn(&dir, &["mine", "--node", "1", "--generate", extra]);
        wait_status(&dir, "new blocks", Duration::from_secs(20), |s| {
            heights(s)[0] > 2 && heights(s)[0] == heights(s)[1]
        });
        tn(&dir, &["restore", "first"]);
        let s = wait_status(&dir, "the snapshot back", Duration::from_secs(20), |s| {
            heights(s) == vec![2, 2]
                && s["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["mempool"] == pending)
        });
        assert_eq!(s["nodes"][0]["best_hash"], tip);
        assert_eq!(s["nodes"][1]["best_hash"], tip);
    }
    let out = tn_raw(&dir, &["restore", "nothing"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot nothing"));
}

/// The quick example scenario runs and passes; one whose assertion cannot
/// hold exits non-zero and names it. Both write their report next to the file.
#[test]
fn scenarios_run_and_a_failed_assertion_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = tmp.path().join("quick-partition.toml");
    std::fs::copy(repo.join("scenarios/quick-partition.toml"), &file).unwrap();
    let run = |file: &Path, dir: &Path| {
        let out = Command::new(bin("cairn-node"))
            .args(["testnet", "run"])
            .arg(file)
            .arg("--dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let _ = tn_raw(dir, &["down"]);
        out
    };
    let out = run(&file, &tmp.path().join("a"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok   min_reorgs"), "{stdout}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("quick-partition.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["passed"], true);
    assert!(
        report["stats"]["propagation"]["blocks"]["items"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["timeline"].as_array().unwrap().len(), 2);

    let failing = tmp.path().join("shallow.toml");
    std::fs::write(
        &failing,
        r#"
name = "a reorg deeper than allowed"
[network]
nodes = 3
miners = 0
[[timeline]]
at = "0s"
link = { a = "0", b = "all", delay = "50ms" }
[[timeline]]
at = "0s"
reorg = { depth = 2, nodes = [2] }
[[timeline]]
at = "1s"
kill = 1
[[timeline]]
at = "1500ms"
mine = { nodes = [0], generate = 1 }
[[timeline]]
at = "2s"
start = 1
[assert]
max_reorg_depth = 1
converges_within = "10s"
"#,
    )
    .unwrap();
    let out = run(&failing, &tmp.path().join("b"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("assertion failed: max_reorg_depth (limit 1, actual 2)"),
        "{stderr}"
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("shallow.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["passed"], false);
    // every action of the timeline ran, and the restarted node caught up
    let steps = report["timeline"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{report:#}");
    assert!(steps.iter().all(|s| s["error"].is_null()), "{report:#}");
    assert_eq!(steps[1]["result"]["depth"], 2);
    assert!(report["converged_after_ms"].is_u64(), "{report:#}");
}

/// A ring: each node has only its two neighbours, and a block still
/// reaches the node across the ring.
#[test]
fn a_ring_topology_keeps_to_its_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down(dir.clone());
    tn(
        &dir,
        &[
            "up",
            "--nodes",
            "5",
            "--miners",
            "0",
            "--topology",
            "ring",
            "--detach",
        ],
    );
    wait_status(&dir, "two peers each", Duration::from_secs(20), |s| {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["peers"] == 2)
    });
    tn(&dir, &["mine", "--node", "0", "--generate", "2"]);
    wait_status(
        &dir,
        "the blocks around the ring",
        Duration::from_secs(20),
        |s| heights(s) == vec![2; 5],
    );
    // address gossip does not turn the ring into a mesh
    std::thread::sleep(Duration::from_millis(500));
    let s = status(&dir);
    assert!(
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["peers"] == 2),
        "{s:#}"
    );
    let out = tn_raw(&dir, &["link", "0", "2", "--delay", "10ms"]);
    assert!(
        !out.status.success(),
        "0 and 2 are not linked in a ring of 5"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no link of the topology"));
}

/// The three longer example scenarios (about 90 s together).
#[test]
fn the_long_example_scenarios_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["unequal-hashrate", "partition-storm", "high-latency-ring"] {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::copy(repo.join(format!("scenarios/{name}.toml")), &file).unwrap();
        let dir = tmp.path().join(name);
        let out = Command::new(bin("cairn-node"))
            .args(["testnet", "run"])
            .arg(&file)
            .arg("--dir")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let _ = tn_raw(&dir, &["down"]);
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
