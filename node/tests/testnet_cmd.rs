//! `cairn-node testnet` with the old flags (no subcommand): starts a mesh
//! of node processes in the foreground, `testnet status` shows them side
//! by side, and SIGTERM stops them all.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn-node"))
}

fn status(dir: &std::path::Path) -> serde_json::Value {
    let out = node()
        .args(["testnet", "status", "--json", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn alive(pid: u64) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_three_node_testnet_mines_converges_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut testnet = node()
        .args([
            "testnet",
            "--nodes",
            "3",
            "--miners",
            "1",
            "--block-time",
            "200ms",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(testnet.stdout.take().unwrap()).lines();
    let mut table = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("testnet status");
        table.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let rows: Vec<&String> = table
        .iter()
        .filter(|l| l.trim_start().starts_with("node-"))
        .collect();
    assert_eq!(rows.len(), 3, "{table:?}");
    assert!(rows[0].contains("miner") && rows[1].contains("node"));
    let metrics = table.iter().filter(|l| l.contains("/metrics")).count();
    assert_eq!(metrics, 3, "each node's metrics URL is printed: {table:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let converged = loop {
        let s = status(dir.path());
        let nodes = s["nodes"].as_array().unwrap().clone();
        let ok = nodes.len() == 3
            && nodes.iter().all(|n| {
                n["height"].as_u64().unwrap_or(0) >= 3 && n["peers"].as_u64().unwrap_or(0) >= 1
            })
            && nodes
                .iter()
                .all(|n| n["best_hash"] == nodes[0]["best_hash"]);
        if ok {
            break s;
        }
        assert!(Instant::now() < deadline, "no convergence: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    let pids: Vec<u64> = record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.iter().all(|p| alive(*p)), "{converged}");

    Command::new("kill")
        .args(["-TERM", &testnet.id().to_string()])
        .status()
        .unwrap();
    assert!(testnet.wait().unwrap().success());
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "every node stopped with the testnet"
    );
}
