//! The RPC port as an attacker and a browser meet it: credentials, the
//! cookie's life, the Host and Origin guards on HTTP and WebSocket, method
//! classes on public binds and other networks, request budgets, and the
//! routes served without credentials.

mod support;

use std::sync::Arc;

use cairn_api::auth::{COOKIE_USER, Credentials, cookie_path, read_cookie};
use cairn_api::{CairnApiClient, CairnApiServer, codes};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::service::{self, Running};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::rpc_params;
use support::*;

fn dev() -> Network {
    Network::builtin("dev").unwrap()
}

async fn start_with(dir: &std::path::Path, f: impl FnOnce(&mut NodeConfig)) -> Running {
    let mut config = NodeConfig::ephemeral(dir.to_path_buf());
    f(&mut config);
    service::launch(dev(), config).await.expect("node starts")
}

fn miner() -> String {
    dev_accounts()[3]
        .address
        .encode(&dev().params.address_prefix)
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"chain_getInfo","params":[]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_the_cookie_which_is_private_new_each_start_and_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |_| {}).await;
    let cookie = read_cookie(dir.path()).expect("the cookie is written at start-up");
    assert_eq!(cookie.user, COOKIE_USER);
    assert_eq!(cookie.password.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cookie_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the cookie");
    }

    // no credentials, wrong credentials: 401, with a hint, and nothing runs
    let (status, headers, body) = raw_http(
        node.rpc_addr,
        "POST",
        "/",
        &[("Content-Type", "application/json")],
        CALL,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Basic")));
    assert!(body.contains(".cookie"), "{body}");
    let wrong = Credentials {
        user: COOKIE_USER.into(),
        password: "0".repeat(64),
    };
    let (status, _, _) = raw_http(
        node.rpc_addr,
        "POST",
        "/",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &wrong.header()),
        ],
        CALL,
    )
    .await;
    assert_eq!(status, 401);
    let err = http(&node.rpc_url()).chain_get_info().await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = http_with(&node.rpc_url(), &wrong)
        .mining_generate(1, miner())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // a WebSocket handshake without credentials is refused the same way
    let (status, _, _) = raw_http(node.rpc_addr, "GET", "/", &ws_upgrade_headers(), "").await;
    assert_eq!(status, 401);
    assert!(
        jsonrpsee_ws_client::WsClientBuilder::default()
            .build(node.ws_url())
            .await
            .is_err()
    );
    // with the cookie: HTTP and WebSocket work
    let info = http_with(&node.rpc_url(), &cookie)
        .chain_get_info()
        .await
        .unwrap();
    assert_eq!(info.height, 0);
    let ws = ws_with(&node.ws_url(), &cookie).await;
    let via_ws: cairn_api::ChainInfo = ws.request("chain_getInfo", rpc_params![]).await.unwrap();
    assert_eq!(via_ws.genesis_hash, info.genesis_hash);
    drop(ws);
    assert!(http(&node.rpc_url()).chain_get_info().await.is_err());

    node.stop().await;
    assert!(
        !cookie_path(dir.path()).exists(),
        "the cookie is removed at shutdown"
    );
    let node = start_with(dir.path(), |_| {}).await;
    let again = read_cookie(dir.path()).unwrap();
    assert_ne!(
        again.password, cookie.password,
        "a new cookie on every start"
    );
    let err = http_with(&node.rpc_url(), &cookie)
        .chain_get_info()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("401"),
        "the old cookie no longer works: {err}"
    );
    http_with(&node.rpc_url(), &again)
        .chain_get_info()
        .await
        .unwrap();
    node.stop().await;
}

fn ws_upgrade_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_login_replaces_the_cookie_and_hashed_logins_work_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |c| {
        c.access.user = Some("ops".into());
        c.access.password = Some("correct horse".into());
    })
    .await;
    assert!(
        !cookie_path(dir.path()).exists(),
        "no cookie with --rpc-password"
    );
    let ops = Credentials {
        user: "ops".into(),
        password: "correct horse".into(),
    };
    http_with(&node.rpc_url(), &ops)
        .chain_get_info()
        .await
        .unwrap();
    let bad = Credentials {
        user: "ops".into(),
        password: "wrong horse".into(),
    };
    assert!(
        http_with(&node.rpc_url(), &bad)
            .chain_get_info()
            .await
            .is_err()
    );
    node.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let entry = cairn_node::auth::HashedLogin::create("reader", "s3cret pass");
    let node = start_with(dir.path(), |c| c.access.auth = vec![entry.clone()]).await;
    let reader = Credentials {
        user: "reader".into(),
        password: "s3cret pass".into(),
    };
    http_with(&node.rpc_url(), &reader)
        .chain_get_info()
        .await
        .unwrap();
    let cookie = read_cookie(dir.path()).unwrap();
    http_with(&node.rpc_url(), &cookie)
        .chain_get_info()
        .await
        .unwrap();
    let guess = Credentials {
        user: "reader".into(),
        password: entry.rsplit('$').next().unwrap().into(),
    };
    assert!(
        http_with(&node.rpc_url(), &guess)
            .chain_get_info()
            .await
            .is_err(),
        "the stored hash is not the password"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused_on_http_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |c| {
        c.access.allow_hosts = vec!["node.example:7540".into()];
        c.access.cors = vec!["https://wallet.example".into()];
    })
    .await;
    let auth = node.credentials().unwrap().header();
    let post = |host: &'static str, origin: Option<&'static str>| {
        let auth = auth.clone();
        let addr = node.rpc_addr;
        async move {
            let mut h = vec![
                ("Host", host.to_string()),
                ("Content-Type", "application/json".to_string()),
                ("Authorization", auth),
            ];
            if let Some(o) = origin {
                h.push(("Origin", o.to_string()));
            }
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw_http(addr, "POST", "/", &h, CALL).await
        }
    };
    // DNS rebinding: a name that resolves here but is not ours
    let (status, _, body) = post("attacker.example:7540", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--rpc-allow-host"), "{body}");
    for ok in [
        "localhost:7540",
        "127.0.0.1:7540",
        "[::1]:7540",
        "node.example",
        "NODE.example:1",
    ] {
        let (status, _, body) = post(ok, None).await;
        assert_eq!(status, 200, "{ok}: {body}");
        assert!(body.contains("\"result\""), "{ok}: {body}");
    }
    // a web page elsewhere: refused, nothing runs
    let (status, _, body) = post("localhost:7540", Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--rpc-cors"), "{body}");
    let (status, _, _) = post("localhost:7540", Some("null")).await;
    assert_eq!(status, 403, "a sandboxed page's null origin is refused");
    // a listed origin gets the call and CORS headers; its preflight is answered
    let (status, headers, _) = post("localhost:7540", Some("https://wallet.example")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://wallet.example")
    );
    let (status, headers, _) = raw_http(
        node.rpc_addr,
        "OPTIONS",
        "/",
        &[
            ("Origin", "https://wallet.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        header(&headers, "access-control-allow-headers")
            .is_some_and(|v| v.contains("authorization"))
    );
    let (status, _, _) = raw_http(
        node.rpc_addr,
        "OPTIONS",
        "/",
        &[("Origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    // the same guards on a WebSocket handshake, credentials or not
    let mut ws = ws_upgrade_headers();
    ws.push(("Authorization", &auth));
    let mut evil = ws.clone();
    evil.push(("Origin", "https://evil.example"));
    let (status, _, _) = raw_http(node.rpc_addr, "GET", "/", &evil, "").await;
    assert_eq!(status, 403);
    let mut rebound = ws.clone();
    rebound.push(("Host", "attacker.example:7540"));
    let (status, _, _) = raw_http(node.rpc_addr, "GET", "/", &rebound, "").await;
    assert_eq!(status, 403);
    let (status, _, _) = raw_http(node.rpc_addr, "GET", "/", &ws, "").await;
    assert_eq!(
        status, 101,
        "a clean handshake with credentials switches protocols"
    );
    // the explorer is behind the same guard
    let (status, _, _) = raw_http(
        node.rpc_addr,
        "GET",
        "/",
        &[("Host", "attacker.example")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_methods_are_refused_on_a_public_bind_unless_the_operator_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |c| {
        c.rpc_addr = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    let url = format!("http://127.0.0.1:{}", node.rpc_addr.port());
    let rpc = http_with(&url, &node.credentials().unwrap());
    rpc.chain_get_info().await.unwrap();
    rpc.mempool_get_info().await.unwrap();
    for (what, err) in [
        (
            "mining_generate",
            rpc.mining_generate(1, miner()).await.unwrap_err(),
        ),
        (
            "mining_start",
            rpc.mining_start(None, None).await.unwrap_err(),
        ),
        ("mining_stop", rpc.mining_stop().await.unwrap_err()),
        (
            "mining_setMode",
            rpc.mining_set_mode("paused".into(), None, None, None)
                .await
                .unwrap_err(),
        ),
        (
            "net_addPeer",
            rpc.net_add_peer("127.0.0.1:1".into()).await.unwrap_err(),
        ),
        (
            "dev_faucet",
            rpc.dev_faucet(miner(), None).await.unwrap_err(),
        ),
    ] {
        assert_eq!(code(&err), codes::METHOD_REFUSED, "{what}: {err}");
        assert!(err.to_string().contains("--rpc-allow-control"), "{err}");
    }
    // a batch cannot slip one through, nor can a notification
    let batch = format!(
        r#"[{CALL},{{"jsonrpc":"2.0","id":2,"method":"mining_generate","params":[1,"{}"]}},{{"jsonrpc":"2.0","method":"mining_generate","params":[1,"{}"]}}]"#,
        miner(),
        miner()
    );
    let auth = node.credentials().unwrap().header();
    let (_, _, body) = raw_http(
        node.rpc_addr,
        "POST",
        "/",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &batch,
    )
    .await;
    assert!(body.contains(&codes::METHOD_REFUSED.to_string()), "{body}");
    assert_eq!(
        rpc.chain_get_info().await.unwrap().height,
        0,
        "nothing was mined"
    );
    let methods = rpc.rpc_methods().await.unwrap();
    assert!(!methods.methods.contains(&"mining_start".to_string()));
    assert!(methods.methods.contains(&"tx_submit".to_string()));
    node.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |c| {
        c.rpc_addr = "0.0.0.0:0".parse().unwrap();
        c.access.allow_control = true;
    })
    .await;
    let url = format!("http://127.0.0.1:{}", node.rpc_addr.port());
    let rpc = http_with(&url, &node.credentials().unwrap());
    rpc.mining_generate(1, miner()).await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_methods_exist_only_on_dev_and_generate_is_budgeted_per_request() {
    // another network: the faucet is not there
    let dir = tempfile::tempdir().unwrap();
    let testnet = Network::builtin("testnet").unwrap();
    let node = service::launch(
        testnet.clone(),
        NodeConfig::ephemeral(dir.path().to_path_buf()),
    )
    .await
    .unwrap();
    let rpc = node.client();
    let addr = dev_accounts()[1]
        .address
        .encode(&testnet.params.address_prefix);
    let err = rpc.dev_faucet(addr, None).await.unwrap_err();
    assert_eq!(code(&err), codes::DEV_ONLY, "{err}");
    assert!(err.to_string().contains("only on dev networks"), "{err}");
    let methods = rpc.rpc_methods().await.unwrap();
    assert!(!methods.methods.contains(&"dev_faucet".to_string()));
    node.stop().await;

    // dev: the faucet pays, and generate is held to its budget
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |_| {}).await;
    let rpc = node.client();
    let someone = cairn_consensus::Address::from_public_key(
        &cairn_consensus::transfer::public_key(&cairn_consensus::SigningKey::from_bytes(&[7; 32])),
    )
    .encode(&dev().params.address_prefix);
    rpc.dev_faucet(someone.clone(), Some(5 * cairn_consensus::COIN))
        .await
        .unwrap();
    rpc.mining_generate(1, miner()).await.unwrap();
    assert_eq!(
        rpc.state_get_account(someone).await.unwrap().balance,
        5 * cairn_consensus::COIN
    );
    let max = cairn_node::rpc_policy::MAX_GENERATE_PER_REQUEST;
    let err = rpc
        .mining_generate(max as u32 + 1, miner())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&max.to_string()), "{err}");
    // a batch whose counts add up past the budget mines nothing
    let half = max / 2 + 1;
    let entry = |id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"mining_generate","params":[{half},"{}"]}}"#,
            miner()
        )
    };
    let batch = format!("[{},{}]", entry(1), entry(2));
    let auth = node.credentials().unwrap().header();
    let (_, _, body) = raw_http(
        node.rpc_addr,
        "POST",
        "/",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &batch,
    )
    .await;
    assert_eq!(
        body.matches(&codes::REQUEST_TOO_LARGE.to_string()).count(),
        2,
        "{body}"
    );
    assert_eq!(rpc.chain_get_info().await.unwrap().height, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_send_instead_of_library_wording() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |_| {}).await;
    let rpc = node.client();
    let cases: Vec<(&str, Vec<serde_json::Value>, &str)> = vec![
        (
            "chain_getBlock",
            vec![serde_json::json!("zz")],
            "parameter 1 (id) of chain_getBlock must be",
        ),
        ("chain_getBlock", vec![], "needs parameter 1 (id)"),
        (
            "chain_getBlockHash",
            vec![serde_json::json!(-3)],
            "non-negative integer",
        ),
        (
            "chain_getInfo",
            vec![serde_json::json!(1)],
            "takes no parameters",
        ),
        (
            "mining_start",
            vec![serde_json::json!(null), serde_json::json!("x")],
            "parameter 2 (threads)",
        ),
    ];
    for (method, params, expected) in cases {
        let mut p = jsonrpsee::core::params::ArrayParams::new();
        for v in params {
            p.insert(v).unwrap();
        }
        let err = ClientT::request::<serde_json::Value, _>(&rpc, method, p)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert_eq!(code(&err), -32602, "{msg}");
        assert!(msg.contains(expected), "{method}: {msg}");
        for leak in ["untagged enum", "No more params", "invalid type"] {
            assert!(!msg.contains(leak), "{method}: {msg}");
        }
    }
    let err = ClientT::request::<serde_json::Value, _>(&rpc, "chain_getinfo", rpc_params![])
        .await
        .unwrap_err();
    assert_eq!(code(&err), -32601);
    assert!(
        err.to_string().contains("did you mean chain_getInfo"),
        "{err}"
    );
    // the node's own messages stay
    let err = rpc.mining_generate(0, miner()).await.unwrap_err();
    assert!(err.to_string().contains("count must be between"), "{err}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openrpc_document_covers_every_registered_method() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |_| {}).await;
    // the methods the server registers, from the same code the node runs
    let policy = Arc::new(cairn_node::rpc::policy_for(&node.node));
    let module = cairn_node::rpc::RpcServer::new(node.node.clone(), None, policy).into_rpc();
    let registered: std::collections::BTreeSet<String> =
        module.method_names().map(String::from).collect();
    let rpc = node.client();
    let doc = rpc.rpc_discover().await.unwrap().0;
    assert!(doc["openrpc"].as_str().unwrap().starts_with("1."));
    let mut documented = std::collections::BTreeSet::new();
    for m in doc["methods"].as_array().unwrap() {
        documented.insert(m["name"].as_str().unwrap().to_string());
        if let Some(unsub) = m["x-subscription"]["unsubscribe"].as_str() {
            documented.insert(unsub.to_string());
        }
        assert!(m["result"]["schema"].is_object(), "{m}");
        assert!(
            ["read", "submit", "control", "dev"].contains(&m["x-cairn-class"].as_str().unwrap()),
            "{m}"
        );
    }
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "registered but not in rpc.discover: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(extra.is_empty(), "documented but not registered: {extra:?}");
    // rpc_methods agrees
    let listed = rpc.rpc_methods().await.unwrap();
    for d in &listed.details {
        assert!(registered.contains(&d.name), "{}", d.name);
    }
    assert!(
        listed.methods.contains(&"dev_faucet".to_string()),
        "dev: the faucet is there"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), |_| {}).await;
    let rpc = node.client();
    rpc.mining_generate(2, miner()).await.unwrap();
    let _ = rpc.chain_get_block(cairn_api::BlockId::Height(99)).await;
    let (status, headers, body) = raw_http(node.rpc_addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/plain")));
    for line in [
        "cairn_chain_height 2",
        "cairn_mempool_transfers 0",
        "cairn_syncing 0",
        "cairn_sync_progress 1",
        "cairn_rpc_calls_total{method=\"mining_generate\",outcome=\"ok\"}",
        "cairn_rpc_calls_total{method=\"chain_getBlock\",outcome=\"error\"}",
        "cairn_block_process_seconds_bucket",
        "cairn_blocks_processed_total{outcome=\"connected\"}",
    ] {
        assert!(body.contains(line), "/metrics has {line}:\n{body}");
    }
    for l in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            l.starts_with("cairn_"),
            "every metric is named cairn_*: {l}"
        );
    }
    let (status, _, body) = raw_http(node.rpc_addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (h["status"].as_str(), h["height"].as_u64()),
        (Some("ok"), Some(2))
    );
    // JSON-RPC over GET is not a thing; other verbs are refused
    let (status, _, _) = raw_http(node.rpc_addr, "PUT", "/", &[], "").await;
    assert_eq!(status, 405);
    node.stop().await;
}
