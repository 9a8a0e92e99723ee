//! The explorer as a person sees it, in headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`, which `.ci/run`
//! installs): the overview shows the tip and follows new blocks, search
//! finds a transfer and an address, the mempool tells ready from waiting
//! transfers, and a reorganisation shows on the fork view while an open
//! page moves to the new tip.
//!
//! Without Chromium the test fails and says how to install it; set
//! CAIRN_SKIP_BROWSER_TESTS=1 to skip it knowingly.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_api::{CairnApiClient, TxStatus};
use cairn_consensus::{COIN, SigningKey};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::node::Source;
use cairn_node::service::{self, Running};
use cairn_node::store::ChainStore;
use serde_json::{Value, json};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session on headless Chromium; ended when dropped.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One WebDriver request; returns the response's `value`.
fn wd(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver may keep the connection open: read exactly Content-Length
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let payload = loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed: {}",
                String::from_utf8_lossy(&out)
            ));
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if body.len() >= length {
            break body[..length].to_string();
        }
    };
    let v: Value = serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload}"))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if value.get("error").is_some() {
        return Err(value.to_string());
    }
    Ok(value)
}

impl Browser {
    fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
            if std::env::var_os("CAIRN_SKIP_BROWSER_TESTS").is_some() {
                eprintln!("SKIPPED: the explorer's browser test (CAIRN_SKIP_BROWSER_TESTS is set)");
                return None;
            }
            panic!(
                "the explorer test needs headless Chromium: apt-get install chromium chromium-driver \
                 (.ci/run does this), or set CAIRN_SKIP_BROWSER_TESTS=1 to skip it"
            );
        }
        let port = free_port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while wd(port, "GET", "/status", None).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let v = wd(port, "POST", "/session", Some(&caps)).expect("a browser session");
        browser.session = v["sessionId"].as_str().expect("session id").to_string();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        wd(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({"url": url})))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn element(&self, css: &str) -> Result<String, String> {
        let v = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| format!("no element id in {v}"))
    }

    /// The text of the element at `css`, if there is one.
    fn text(&self, css: &str) -> Option<String> {
        let id = self.element(css).ok()?;
        self.call("GET", &format!("/element/{id}/text"), None)
            .ok()?
            .as_str()
            .map(String::from)
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).unwrap();
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({"text": text})),
        )
        .unwrap();
    }

    fn click(&self, css: &str) {
        let id = self.element(css).unwrap();
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})))
            .unwrap();
    }

    fn page_source(&self) -> String {
        self.call("GET", "/source", None)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }

    /// Polls until the text at `css` satisfies `ok`, or panics with the page.
    fn wait_text(&self, what: &str, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = self.text(css)
                && ok(&t)
            {
                return t;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({css}: {:?}) at {}\n{}",
                    self.text(css),
                    self.url(),
                    self.page_source()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn start(dir: &Path) -> Running {
    let mut config = NodeConfig::ephemeral(dir.to_path_buf());
    config.p2p.enabled = false;
    service::launch(Network::builtin("dev").unwrap(), config)
        .await
        .unwrap()
}

fn text_of(a: &cairn_consensus::Address) -> String {
    a.encode(&Network::builtin("dev").unwrap().params.address_prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_shows_the_tip_finds_transfers_and_follows_a_reorg() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir.path().join("a")).await;
    let rpc = node.client();
    let base = node.rpc_url();
    let miner = text_of(&dev_accounts()[2].address);
    rpc.mining_generate(3, miner.clone()).await.unwrap();
    let someone = cairn_consensus::Address::from_public_key(
        &cairn_consensus::transfer::public_key(&SigningKey::from_bytes(&[9; 32])),
    );
    let txid = rpc
        .dev_faucet(text_of(&someone), Some(7 * COIN))
        .await
        .unwrap();
    rpc.mining_generate(1, miner.clone()).await.unwrap();
    assert_eq!(
        rpc.chain_get_transaction(txid).await.unwrap().status,
        TxStatus::Confirmed
    );

    // the overview shows the tip
    browser.goto(&format!("{base}/"));
    let info = rpc.chain_get_info().await.unwrap();
    assert_eq!(browser.text("#tip-height").as_deref(), Some("4"));
    assert_eq!(
        browser.text("#tip-hash").as_deref(),
        Some(info.best_hash.to_hex().as_str())
    );
    // ... and follows new blocks without a reload
    rpc.mining_generate(2, miner.clone()).await.unwrap();
    browser.wait_text("the new tip on the open page", "#tip-height", |t| t == "6");

    // search finds the transfer and the address
    browser.type_into("#q", &txid.to_hex());
    browser.click("#search button");
    browser.wait_text("the transfer page", "#txid", |t| t == txid.to_hex());
    let status = browser.text("#tx-status").unwrap();
    assert!(
        status.contains("confirmed") && status.contains("3 confirmations"),
        "{status}"
    );
    browser.goto(&format!("{base}/"));
    browser.type_into("#q", &text_of(&someone));
    browser.click("#search button");
    let balance = browser.wait_text("the address page", "#balance", |t| !t.is_empty());
    assert_eq!(balance, "7 coins");
    browser.goto(&format!("{base}/search?q=nonsense"));
    let msg = browser.text("#message").unwrap();
    assert!(msg.contains("search by block height"), "{msg}");

    // the mempool tells a ready transfer from one waiting for a nonce
    let key = SigningKey::from_bytes(&[9; 32]);
    let chain_id = info.chain_id;
    let fee = info.min_fee;
    let to = dev_accounts()[4].address;
    let later = sign(&key, chain_id, to, COIN, fee, 1);
    rpc.tx_submit(hex_of(&later)).await.unwrap();
    browser.goto(&format!("{base}/mempool"));
    browser.wait_text("a waiting transfer", "#mempool", |t| {
        t.contains("waiting for nonce 0")
    });
    rpc.tx_submit(hex_of(&sign(&key, chain_id, to, COIN, fee, 0)))
        .await
        .unwrap();
    browser.wait_text("both ready", "#mempool", |t| {
        t.matches("ready").count() == 2 && !t.contains("waiting")
    });

    // a reorganisation: a longer branch from another node replaces ours;
    // the open overview moves to the new tip and the fork view shows it
    browser.goto(&format!("{base}/"));
    let other = start(&dir.path().join("b")).await;
    let other_rpc = other.client();
    let branch = other_rpc
        .mining_generate(9, text_of(&dev_accounts()[5].address))
        .await
        .unwrap();
    let blocks: Vec<_> = branch
        .iter()
        .map(|h| other.node.store().block(h).unwrap().unwrap())
        .collect();
    let n = node.node.clone();
    tokio::task::spawn_blocking(move || {
        for r in n.submit_blocks(blocks, Source::Rpc) {
            r.unwrap();
        }
    })
    .await
    .unwrap();
    let new_tip = branch.last().unwrap().to_hex();
    assert_eq!(
        rpc.chain_get_info().await.unwrap().best_hash.to_hex(),
        new_tip
    );
    browser.wait_text("the open page on the new branch", "#tip-hash", |t| {
        t == new_tip
    });
    assert_eq!(browser.text("#tip-height").as_deref(), Some("9"));
    browser.click("header nav a[href='/forks']");
    let reorgs = browser.wait_text("the reorganisation", "#reorgs", |t| !t.is_empty());
    assert!(
        reorgs.contains('6'),
        "depth 6 and old height 6 are listed: {reorgs}"
    );
    let side = browser.text("#side-blocks").unwrap();
    assert!(side.contains("removed by a reorganisation"), "{side}");
    // the transfer went back to the mempool and the explorer says so
    browser.goto(&format!("{base}/tx/{}", txid.to_hex()));
    let status = browser.wait_text("the transfer's new status", "#tx-status", |t| !t.is_empty());
    assert!(status.contains("pending"), "{status}");

    other.stop().await;
    node.stop().await;
}
