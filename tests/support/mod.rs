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

/// How long a node may take to start listening (it may first rebuild its
/// state from stored blocks on a loaded machine).
pub const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long a node may take to exit after SIGTERM or SIGKILL.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// What `cairn-node run --ready-file FILE` writes once it listens.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ReadyFile {
    pub rpc_url: String,
    pub ws_url: String,
    pub p2p_addr: Option<String>,
    pub datadir: PathBuf,
    pub network: String,
    pub genesis_hash: String,
    pub height: u64,
    pub best_hash: String,
    pub notice: Option<String>,
    pub pid: u32,
}

/// Waits for `child` to exit, up to `deadline`; kills it if it has not.
/// Returns its status, or `None` if it had to be killed.
pub fn wait_child(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// How long a command-line tool run by a test may take.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(120);

/// `cmd.output()` with a deadline: the child is killed and the test fails
/// if it runs longer than `deadline`.
pub fn output_within(cmd: &mut Command, deadline: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_with_output_within(child, deadline, &format!("{cmd:?}"))
}

/// `child.wait_with_output()` with a deadline (stdout and stderr must be
/// piped): the child is killed and the test fails past `deadline`.
pub fn wait_with_output_within(
    child: Child,
    deadline: Duration,
    what: &str,
) -> std::process::Output {
    use std::io::Read;
    let mut child = ChildGuard(child);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_child(&mut child.0, deadline)
        .unwrap_or_else(|| panic!("{what} ran past its {deadline:?} deadline and was killed"));
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `Command::output` with [`TOOL_DEADLINE`].
pub trait OutputWithin {
    fn output_within_deadline(&mut self) -> std::process::Output;
}

impl OutputWithin for Command {
    fn output_within_deadline(&mut self) -> std::process::Output {
        output_within(self, TOOL_DEADLINE)
    }
}

/// [`output_within`] the usual [`TOOL_DEADLINE`].
pub fn output(cmd: &mut Command) -> std::process::Output {
    output_within(cmd, TOOL_DEADLINE)
}

/// Any child process of a test: killed and reaped when dropped, so a test
/// that fails (panics) leaves no process behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = wait_child(&mut self.0, EXIT_DEADLINE);
    }
}

/// A `cairn-node` process; killed when dropped (also when a test panics).
/// Its ports come from the `--ready-file` it writes, not from its banner.
pub struct NodeProcess {
    pub child: Child,
    pub rpc_url: String,
    /// Where it accepts peers (`host:port`), if P2P runs.
    pub p2p_addr: Option<String>,
    pub datadir: PathBuf,
    /// The start-up banner (up to the first blank line after the tip).
    pub stdout: Vec<String>,
    /// The ready file's contents.
    pub ready: ReadyFile,
    /// Everything the node has printed so far (a thread keeps reading).
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts `cairn-node run` with `args` and waits (with a deadline) for
    /// its ready file.
    pub fn start(datadir: &Path, args: &[&str]) -> NodeProcess {
        Self::try_start(datadir, args, "warn").unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`NodeProcess::start`] logging at `level` (unless `CAIRN_TEST_LOG`
    /// says otherwise).
    pub fn start_with_log(datadir: &Path, args: &[&str], level: &str) -> NodeProcess {
        Self::try_start(datadir, args, level).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`NodeProcess::start`], returning why a node did not come up.
    pub fn try_start(datadir: &Path, args: &[&str], level: &str) -> Result<NodeProcess, String> {
        std::fs::create_dir_all(datadir).map_err(|e| format!("create datadir: {e}"))?;
        let ready_path = datadir.join("ready.json");
        // a file left by a killed run must not pass for this one
        match std::fs::remove_file(&ready_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", ready_path.display())),
        }
        let mut cmd = Command::new(bin("cairn-node"));
        cmd.arg("run")
            .arg("--datadir")
            .arg(datadir)
            .arg("--ready-file")
            .arg(&ready_path)
            .args(["--rpc-addr", "127.0.0.1:0", "--p2p-addr", "127.0.0.1:0"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| level.into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| format!("spawn cairn-node: {e}"))?;
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let sink = output.clone();
        // read everything the node prints, so the pipe never fills
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let snapshot =
            |o: &std::sync::Mutex<Vec<String>>| o.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let deadline = Instant::now() + START_DEADLINE;
        let ready: ReadyFile = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_path)
                && let Ok(r) = serde_json::from_str::<ReadyFile>(&text)
            {
                break r;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "cairn-node exited ({status}) before it was ready; output: {:?}",
                    snapshot(&output)
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "cairn-node wrote no ready file within {START_DEADLINE:?}; output: {:?}",
                    snapshot(&output)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // the banner is printed before the ready file is written: wait for
        // the reader thread to have it (up to the blank line after the tip)
        let banner_end = |lines: &[String]| {
            let tip = lines
                .iter()
                .position(|l| l.trim_start().starts_with("tip"))?;
            lines[tip..]
                .iter()
                .position(|l| l.trim().is_empty())
                .map(|i| tip + i)
        };
        let until = Instant::now() + Duration::from_secs(10);
        let stdout = loop {
            let lines = snapshot(&output);
            if let Some(end) = banner_end(&lines) {
                break lines[..end].to_vec();
            }
            if Instant::now() > until {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(NodeProcess {
            child,
            rpc_url: ready.rpc_url.clone(),
            p2p_addr: ready.p2p_addr.clone(),
            datadir: datadir.to_path_buf(),
            stdout,
            ready,
            output,
        })
    }

    /// A client with the node's cookie.
    pub fn client(&self) -> HttpClient {
        client_for_datadir(&self.rpc_url, &self.datadir)
    }

    /// The node's cookie.
    pub fn cookie(&self) -> Credentials {
        read_cookie(&self.datadir).expect("the node's cookie")
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit; returns the
    /// exit code. Panics if the node does not exit in time (it is killed).
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = wait_child(&mut self.child, EXIT_DEADLINE);
        match status {
            Some(s) => s.code(),
            None => panic!("cairn-node did not exit within {EXIT_DEADLINE:?} of SIGTERM"),
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig}");
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, EXIT_DEADLINE);
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, EXIT_DEADLINE);
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
    let mut s = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .expect("connect within 30 s")
    .expect("connect");
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
    tokio::time::timeout(Duration::from_secs(30), s.write_all(req.as_bytes()))
        .await
        .expect("write within 30 s")
        .expect("write");
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

/// Submits every transfer (hex) over the given clients, one transfer per
/// request: client `c` takes every `clients.len()`-th one, so each
/// sender's nonces arrive roughly in order. Returns how many were accepted.
#[allow(dead_code)]
pub async fn submit_spread(clients: Vec<HttpClient>, hexes: std::sync::Arc<Vec<String>>) -> u64 {
    use cairn_api::CairnApiClient;
    let n = clients.len();
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let hexes = hexes.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            let mut i = c;
            while i < hexes.len() {
                if client.tx_submit(hexes[i].clone()).await.is_ok() {
                    accepted += 1;
                }
                i += n;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("a submitting task panicked");
    }
    accepted
}
