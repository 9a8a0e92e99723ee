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

use cairn_api::auth::{Credentials, read_cookie};
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

/// A client without credentials (the node answers 401 to its calls).
pub fn http(url: &str) -> HttpClient {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(120))
        .build(url)
        .expect("client")
}

/// The `Authorization` header for `creds`.
pub fn auth_headers(creds: &Credentials) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&creds.header()).expect("header value"),
    );
    h
}

/// A client sending `creds`.
pub fn http_with(url: &str, creds: &Credentials) -> HttpClient {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(120))
        .set_headers(auth_headers(creds))
        .build(url)
        .expect("client")
}

/// A client of the node whose datadir is `datadir`, with its cookie: how
/// every test reaches a node it started as a process.
pub fn client_for_datadir(url: &str, datadir: &Path) -> HttpClient {
    let creds = read_cookie(datadir)
        .unwrap_or_else(|e| panic!("the node's cookie in {}: {e}", datadir.display()));
    http_with(url, &creds)
}

/// A WebSocket client sending `creds`.
pub async fn ws_with(url: &str, creds: &Credentials) -> jsonrpsee_ws_client::WsClient {
    jsonrpsee_ws_client::WsClientBuilder::default()
        .set_headers(auth_headers(creds))
        .build(url)
        .await
        .expect("websocket client")
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

    /// A client with the node's cookie.
    pub fn client(&self) -> HttpClient {
        client_for_datadir(&self.rpc_url, &self.datadir)
    }

    /// The node's cookie.
    pub fn cookie(&self) -> Credentials {
        read_cookie(&self.datadir).expect("the node's cookie")
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

/// A raw HTTP/1.1 exchange: the status, the headers (lowercase names) and
/// the body. `headers` are sent as given; Host is added unless present.
pub async fn raw_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    // a WebSocket upgrade keeps the connection open: read what arrives
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The value of header `name` in a [`raw_http`] answer.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
