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
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    // every flag of `run` is a key of the config file: the help says so
    assert!(text.contains("every key is a long flag name"), "{text}");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--rpc-user",
        "--rpc-password",
        "--rpc-auth",
        "--rpc-allow-host",
        "--rpc-cors",
        "--rpc-allow-control",
        "--no-explorer",
        "--log-file",
        "RUST_LOG",
        "block-time = ",
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
            "network = \"dev\"\ndatadir = {:?}\nrpc-addr = \"127.0.0.1:0\"\np2p-addr = \"127.0.0.1:0\"\nmine = true\nblock-time = \"750ms\"\n\n[mempool]\nmax_per_sender = 9\n",
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
    assert!(
        b.iter().any(|l| l.contains("one block every 750 ms")),
        "keys are the flag names: {b:?}"
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

/// A free port on loopback (the OS picks; closed again before use).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn rpc_addr_alone_moves_the_p2p_port_along() {
    let dir = tempfile::tempdir().unwrap();
    let mut port = free_port();
    while port == u16::MAX || std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
        port = free_port();
    }
    let b = banner(
        node()
            .args(["run", "--network", "dev", "--rpc-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--datadir")
            .arg(dir.path()),
    );
    let p2p = b
        .iter()
        .find(|l| l.trim_start().starts_with("P2P"))
        .unwrap();
    assert!(p2p.contains(&format!("127.0.0.1:{}", port + 1)), "{b:?}");
    assert!(
        b.iter()
            .any(|l| l.contains(&format!("http://127.0.0.1:{port}/metrics"))),
        "{b:?}"
    );
    assert!(b.iter().any(|l| l.contains(".cookie")), "{b:?}");
}

#[test]
fn logging_goes_to_a_file_and_a_bad_filter_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = node()
        .args([
            "run",
            "--rpc-addr",
            "127.0.0.1:0",
            "--p2p-addr",
            "127.0.0.1:0",
            "--datadir",
        ])
        .arg(dir.path().join("d"))
        .env("RUST_LOG", "info,cairn_node=debgu[")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("RUST_LOG") && err.contains("cairn_node=debug"),
        "{err}"
    );

    let log = dir.path().join("node.log");
    let b = banner(
        node()
            .args([
                "run",
                "--rpc-addr",
                "127.0.0.1:0",
                "--p2p-addr",
                "127.0.0.1:0",
                "--datadir",
            ])
            .arg(dir.path().join("d"))
            .arg("--log-file")
            .arg(&log)
            .env("RUST_LOG", "info"),
    );
    assert!(!b.is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("INFO") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log lines in {}: {text:?}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts a node in the background for the `rpc` command; killed on drop.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_bg(args: &[&str]) -> (Bg, String) {
    let mut child = node()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("JSON-RPC") {
            url = rest.split_whitespace().next().unwrap().to_string();
        }
        if line.trim_start().starts_with("tip") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Bg(child), url)
}

#[test]
fn the_rpc_command_finds_the_cookie_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("d");
    let d = datadir.to_str().unwrap();
    let (_node, url) = start_bg(&[
        "run",
        "--rpc-addr",
        "127.0.0.1:0",
        "--p2p-addr",
        "127.0.0.1:0",
        "--datadir",
        d,
    ]);
    let rpc = |args: &[&str]| {
        node()
            .args(["rpc", "--rpc", &url])
            .args(args)
            .env_remove("CAIRN_DATADIR")
            .output()
            .unwrap()
    };
    let out = rpc(&["--datadir", d, "chain_getInfo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["network"], "dev");
    let out = rpc(&[
        "--datadir",
        d,
        "mining_generate",
        "2",
        "cdev1wf6fdvmw3rjs2n4hdr7xx0znlh2k588mc7cghj",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashes: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let out = rpc(&["--datadir", d, "chain_getBlock", &hashes[1]]);
    let block: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(block["header"]["height"], 2);
    // errors are the node's words, and the exit status says it failed
    let out = rpc(&["--datadir", d, "chain_getBlock", "zz"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("parameter 1 (id)") && err.contains("(code -32602)"),
        "{err}"
    );
    // without the datadir, the answer says where the cookie was looked for
    let out = node()
        .args(["rpc", "--rpc", &url, "chain_getInfo"])
        .env_remove("CAIRN_DATADIR")
        .env("XDG_DATA_HOME", dir.path().join("empty"))
        .env("HOME", dir.path().join("empty"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(".cookie") && err.contains("--datadir"),
        "{err}"
    );
    // CAIRN_DATADIR, as the node itself reads it
    let out = node()
        .args(["rpc", "--rpc", &url, "mempool_getInfo"])
        .env("CAIRN_DATADIR", &datadir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --help lists every method of the API
    let out = node().args(["rpc", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for m in cairn_api::method_specs() {
        assert!(help.contains(m.name), "rpc --help lists {}", m.name);
    }
}

#[test]
fn a_hashed_login_made_by_rpcauth_opens_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = node().args(["rpcauth", "ops"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let entry = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--rpc-auth '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("an --rpc-auth line")
        .to_string();
    let password = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--rpc-user ops --rpc-password "))
        .expect("the password")
        .to_string();
    assert!(!entry.contains(&password));
    let d = dir.path().join("d");
    let (_node, url) = start_bg(&[
        "run",
        "--rpc-addr",
        "127.0.0.1:0",
        "--p2p-addr",
        "127.0.0.1:0",
        "--datadir",
        d.to_str().unwrap(),
        "--rpc-auth",
        &entry,
    ]);
    let call = |pw: &str| {
        node()
            .args([
                "rpc",
                "--rpc",
                &url,
                "--rpc-user",
                "ops",
                "--rpc-password",
                pw,
                "chain_getInfo",
            ])
            .output()
            .unwrap()
    };
    assert!(call(&password).status.success());
    let out = call("guess");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
