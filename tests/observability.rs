//! Observability as an operator meets it: every metric the node emits is
//! documented and on the Grafana dashboard, the dashboard names no metric
//! that does not exist, and /health tells a syncing node from a ready one.

mod support;

use std::collections::BTreeSet;

use cairn_api::CairnApiClient;
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::metrics::{NODE_METRICS, P2P_METRICS};
use cairn_node::service;
use support::*;

fn base_name(n: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(b) = n.strip_suffix(suffix) {
            return b;
        }
    }
    n
}

/// `cairn_*` names in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("cairn_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(base_name(&tail[..end]).to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_shows_every_metric_and_only_real_ones() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/cairn-node.json"
    ))
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = String::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let used = names_in(&exprs);
    let known: BTreeSet<String> = NODE_METRICS
        .iter()
        .chain(P2P_METRICS)
        .map(|(n, _, _)| n.to_string())
        .collect();
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard names unknown metrics: {unknown:?}"
    );
    let missing: Vec<_> = known.difference(&used).collect();
    assert!(
        missing.is_empty(),
        "metrics missing from the dashboard: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_metric_is_documented_and_health_follows_sync() {
    let dir = tempfile::tempdir().unwrap();
    let net = Network::builtin("dev").unwrap();
    let node = service::launch(net.clone(), NodeConfig::ephemeral(dir.path().to_path_buf()))
        .await
        .unwrap();
    let rpc = node.client();
    let miner = dev_accounts()[1].address.encode(&net.params.address_prefix);
    rpc.mining_generate(3, miner).await.unwrap();
    let _ = rpc.tx_submit("00".into()).await;
    let _ = http(&node.rpc_url()).chain_get_info().await;
    let (_, _, body) = raw_http(node.rpc_addr, "GET", "/metrics", &[], "").await;
    let emitted = names_in(
        &body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let documented: BTreeSet<String> = NODE_METRICS
        .iter()
        .chain(P2P_METRICS)
        .map(|(n, _, _)| n.to_string())
        .collect();
    let undocumented: Vec<_> = emitted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "emitted but not in NODE_METRICS or P2P_METRICS: {undocumented:?}"
    );
    for expected in [
        "cairn_chain_height",
        "cairn_rpc_calls_total",
        "cairn_rpc_auth_failures_total",
        "cairn_transfers_rejected_total",
        "cairn_peers",
        "cairn_build_info",
    ] {
        assert!(emitted.contains(expected), "{expected} in:\n{body}");
    }

    // a syncing node is not ready: 503 with the reason; then ready again
    node.node.set_sync_progress(Some(cairn_api::SyncProgress {
        height: 3,
        target_height: 500,
        blocks_per_sec: 10,
        eta_secs: Some(50),
    }));
    let (status, _, body) = raw_http(node.rpc_addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 503, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "syncing");
    assert!(h["reason"].as_str().unwrap().contains("3 of 500"), "{body}");
    assert_eq!(
        rpc.chain_get_info()
            .await
            .unwrap()
            .sync
            .unwrap()
            .target_height,
        500
    );
    let (_, _, metrics) = raw_http(node.rpc_addr, "GET", "/metrics", &[], "").await;
    assert!(metrics.contains("cairn_syncing 1"), "{metrics}");
    assert!(
        metrics.contains("cairn_best_header_height 500"),
        "{metrics}"
    );
    node.node.set_sync_progress(None);
    let (status, _, _) = raw_http(node.rpc_addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    node.stop().await;
}
