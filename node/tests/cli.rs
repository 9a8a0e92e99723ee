//! The `cairn-node` command line: help, config file, environment, and
//! clear errors for bad input.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn-node"))
}

/// Runs `cairn-node run` until its banner is printed, then kills it; returns the banner.
fn banner(cmd: &mut Command) -> Vec<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.trim_start().starts_with("tip");
        out.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

#[test]
fn help_explains_the_flags() {
    let out = node().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--network",
        "--genesis",
        "--datadir",
        "--rpc-addr",
        "--p2p-addr",
        "--peer",
        "--mine",
        "--miner-address",
        "--threads",
        "--block-time",
        "--config",
        "--reindex",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn config_file_and_environment_apply_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "network = \"dev\"\ndatadir = {:?}\nrpc_addr = \"127.0.0.1:0\"\np2p_addr = \"127.0.0.1:0\"\n\n[mining]\nblock_time_ms = 750\n",
            from_file.display().to_string()
        ),
    )
    .unwrap();
    let b = banner(node().args(["run", "--config"]).arg(&config));
    assert!(
        b.iter()
            .any(|l| l.contains(&from_file.display().to_string())),
        "{b:?}"
    );

    let from_env = dir.path().join("from-env");
    let b = banner(
        node()
            .args(["run", "--config"])
            .arg(&config)
            .env("CAIRN_DATADIR", &from_env),
    );
    assert!(
        b.iter()
            .any(|l| l.contains(&from_env.display().to_string())),
        "{b:?}"
    );

    let from_flag = dir.path().join("from-flag");
    let b = banner(
        node()
            .args(["run", "--config"])
            .arg(&config)
            .env("CAIRN_DATADIR", &from_env)
            .arg("--datadir")
            .arg(&from_flag),
    );
    assert!(
        b.iter()
            .any(|l| l.contains(&from_flag.display().to_string())),
        "{b:?}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--network".into(), "mainnet".into()],
            "unknown network",
        ),
        (vec!["--block-time".into(), "fast".into()], "not a duration"),
        (
            vec![
                "--miner-address".into(),
                "cdev1nope".into(),
                "--mine".into(),
            ],
            "--miner-address",
        ),
        (
            vec![
                "--genesis".into(),
                dir.path().join("missing.toml").display().to_string(),
            ],
            "missing.toml",
        ),
        (
            vec![
                "--config".into(),
                dir.path().join("nope.toml").display().to_string(),
            ],
            "nope.toml",
        ),
        (vec!["--peer".into(), "nohost".into()], "--peer"),
    ];
    for (args, needle) in cases {
        let out = node()
            .arg("run")
            .args(["--datadir"])
            .arg(dir.path().join("d"))
            .args(["--rpc-addr", "127.0.0.1:0", "--p2p-addr", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: error should mention {needle:?}: {err}"
        );
    }
    // a config file with an unknown key names it
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "colour = \"blue\"\n").unwrap();
    let out = node()
        .arg("run")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("colour"), "{err}");
}

#[test]
fn a_datadir_of_another_network_is_refused_naming_both_genesis_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let b = banner(
        node()
            .args([
                "run",
                "--network",
                "dev",
                "--rpc-addr",
                "127.0.0.1:0",
                "--p2p-addr",
                "127.0.0.1:0",
                "--datadir",
            ])
            .arg(dir.path()),
    );
    assert!(!b.is_empty());
    let out = node()
        .args([
            "run",
            "--network",
            "testnet",
            "--rpc-addr",
            "127.0.0.1:0",
            "--p2p-addr",
            "127.0.0.1:0",
            "--datadir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("genesis e1c4bec0") && err.contains("8546756f"),
        "{err}"
    );
}
