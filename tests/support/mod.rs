//! Helpers shared by the whole-system tests: starting nodes in-process or
//! as real processes, RPC clients, signing, and waits with a deadline that
//! explain themselves on timeout.
#![allow(dead_code)]
pub mod raw_peer;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, Amount, SignedTransfer, SigningKey, Transfer};
use jsonrpsee::core::ClientError;
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};

/// Prints the nodes' logs when `CAIRN_TEST_LOG` is set (to a filter such
/// as `info` or `cairn_node::p2p=debug`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("CAIRN_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A compiled binary of this workspace (`cargo test --workspace` builds them).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub fn http(url: &str) -> HttpClient {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(120))
        .build(url)
        .expect("client")
}

/// The JSON-RPC error code of a failed call.
pub fn code(e: &ClientError) -> i32 {
    match e {
        ClientError::Call(obj) => obj.code(),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

/// A signed transfer.
pub fn sign(
    key: &SigningKey,
    chain_id: u64,
    to: Address,
    amount: u64,
    fee: u64,
    nonce: u64,
) -> SignedTransfer {
    Transfer {
        chain_id,
        from: public_key(key),
        to,
        amount: Amount(amount),
        fee: Amount(fee),
        nonce,
    }
    .sign(key)
}

pub fn hex_of(t: &SignedTransfer) -> String {
    hex::encode(t.encode())
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// `describe()`'s account of the system.
pub async fn wait_for<T, F, Fut, D, DF>(
    what: &str,
    timeout: Duration,
    mut check: F,
    describe: D,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    D: FnOnce() -> DF,
    DF: Future<Output = String>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            let state = describe().await;
            panic!("timed out after {timeout:?} waiting for {what}\n{state}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `cairn-node` process; killed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub rpc_url: String,
    /// Where it accepts peers (`host:port`), if P2P runs.
    pub p2p_addr: Option<String>,
    pub datadir: PathBuf,
    pub stdout: Vec<String>,
}

impl NodeProcess {
    /// Starts `cairn-node run` with `args` and waits for its banner.
    pub fn start(datadir: &Path, args: &[&str]) -> NodeProcess {
        let mut cmd = Command::new(bin("cairn-node"));
        cmd.arg("run")
            .arg("--datadir")
            .arg(datadir)
            .args(["--rpc-addr", "127.0.0.1:0", "--p2p-addr", "127.0.0.1:0"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn cairn-node");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stdout = Vec::new();
        let mut rpc_url = String::new();
        let mut p2p_addr = None;
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    stdout.push(line.clone());
                    let t = line.trim();
                    if let Some(rest) = t.strip_prefix("JSON-RPC") {
                        rpc_url = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                    } else if let Some(rest) = t.strip_prefix("P2P") {
                        p2p_addr = rest
                            .split_whitespace()
                            .next()
                            .filter(|a| *a != "disabled")
                            .map(String::from);
                    } else if t.starts_with("tip") {
                        break;
                    }
                }
                other => {
                    let status = child.wait();
                    panic!(
                        "cairn-node exited before printing its banner: {other:?}, {status:?}, output so far: {stdout:?}"
                    );
                }
            }
        }
        // keep reading the rest of the banner in the background so the pipe never fills
        std::thread::spawn(move || for _ in lines {});
        NodeProcess {
            child,
            rpc_url,
            p2p_addr,
            datadir: datadir.to_path_buf(),
            stdout,
        }
    }

    pub fn client(&self) -> HttpClient {
        http(&self.rpc_url)
    }

    /// SIGTERM, then waits for a clean exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait");
        status.code()
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig}");
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
