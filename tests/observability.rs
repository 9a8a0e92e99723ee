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

    // a syncing node is not ready: 503 with the reason; then ready again.
    // A second node syncs 200 blocks from this one over a slow link.
    rpc.mining_generate(
        200,
        dev_accounts()[1].address.encode(&net.params.address_prefix),
    )
    .await
    .unwrap();
    let target = rpc.chain_get_info().await.unwrap().height;
    let mut cfg = NodeConfig::ephemeral(dir.path().join("joiner"));
    cfg.peers = vec![node.p2p_addr().unwrap().to_string()];
    let joiner = service::launch(net.clone(), cfg).await.unwrap();
    let jrpc = joiner.client();
    let joiner_p2p = joiner.p2p_addr().unwrap().to_string();
    rpc.net_set_link(
        joiner_p2p.clone(),
        cairn_api::LinkView {
            rate_bps: 200_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let body = wait_for(
        "the joiner to report that it is syncing",
        std::time::Duration::from_secs(60),
        || async {
            let (status, _, body) = raw_http(joiner.rpc_addr, "GET", "/health", &[], "").await;
            (status == 503).then_some(body)
        },
        || async { format!("{:?}", jrpc.chain_get_info().await) },
    )
    .await;
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "syncing", "{body}");
    assert!(
        h["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("of {target}")),
        "{body}"
    );
    let info = jrpc.chain_get_info().await.unwrap();
    assert!(info.syncing);
    assert_eq!(info.sync.unwrap().target_height, target);
    let (_, _, metrics) = raw_http(joiner.rpc_addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics.contains(&format!("cairn_best_header_height {target}")),
        "{metrics}"
    );
    // the link speeds up: the sync ends and the node is ready
    rpc.net_set_link(joiner_p2p, Default::default())
        .await
        .unwrap();
    wait_for(
        "the joiner to be ready",
        std::time::Duration::from_secs(60),
        || async {
            let (status, _, _) = raw_http(joiner.rpc_addr, "GET", "/health", &[], "").await;
            (status == 200).then_some(())
        },
        || async { format!("{:?}", jrpc.chain_get_info().await) },
    )
    .await;
    assert_eq!(jrpc.chain_get_info().await.unwrap().height, target);
    joiner.stop().await;
    node.stop().await;
}
