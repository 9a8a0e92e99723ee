//! A late joiner syncs a few thousand blocks with transfers from two peer
//! processes, one of which stalls (SIGSTOP) halfway through.

mod support;

use std::time::Duration;

use cairn_api::CairnApiClient;
use cairn_genesis::{Network, dev_accounts};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_syncs_from_two_peers_while_one_stalls() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    // short timeouts so a stalled peer is noticed in a test's time
    std::fs::write(
        &config,
        "[p2p]\nrequest_timeout_ms = 1500\nping_interval_ms = 500\nping_timeout_ms = 1500\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let net = Network::builtin("dev").unwrap();
    let accounts = dev_accounts();
    let prefix = &net.params.address_prefix;
    let miner = accounts[9].address.encode(prefix);

    let a = NodeProcess::start(
        &dir.path().join("a"),
        &["--network", "dev", "--config", cfg],
    );
    let ra = a.client();
    let mut nonces = [0u64; 9];
    let mut transfers = 0;
    for round in 0..30 {
        for i in 0..20usize {
            let from = i % 9;
            let to = accounts[(i + round) % 9].address;
            let tx = sign(
                &accounts[from].key,
                net.params.chain_id,
                to,
                1_000_000,
                1000,
                nonces[from],
            );
            nonces[from] += 1;
            ra.tx_submit(hex_of(&tx)).await.unwrap();
            transfers += 1;
        }
        ra.mining_generate(100, miner.clone()).await.unwrap();
    }
    let target = ra.chain_get_info().await.unwrap();
    assert_eq!(target.height, 3000);
    assert_eq!(transfers, 600);

    let a_addr = a.p2p_addr.clone().unwrap();
    let b = NodeProcess::start(
        &dir.path().join("b"),
        &["--network", "dev", "--config", cfg, "--peer", &a_addr],
    );
    let rb = b.client();
    let wait_synced = |rpc: jsonrpsee_http_client::HttpClient, what: &'static str| {
        let best = target.best_hash;
        async move {
            wait_for(
                what,
                Duration::from_secs(120),
                || {
                    let rpc = rpc.clone();
                    async move { (rpc.chain_get_info().await.ok()?.best_hash == best).then_some(()) }
                },
                || {
                    let rpc = rpc.clone();
                    async move { format!("{:?} peers {:?}", rpc.chain_get_info().await, rpc.net_get_peers().await) }
                },
            )
            .await
        }
    };
    wait_synced(rb.clone(), "the second peer to sync").await;

    let b_addr = b.p2p_addr.clone().unwrap();
    let c = NodeProcess::start(
        &dir.path().join("c"),
        &[
            "--network",
            "dev",
            "--config",
            cfg,
            "--peer",
            &a_addr,
            "--peer",
            &b_addr,
        ],
    );
    let rc = c.client();
    wait_for(
        "the joiner halfway",
        Duration::from_secs(60),
        || {
            let rc = rc.clone();
            async move { (rc.chain_get_info().await.ok()?.height >= 1500).then_some(()) }
        },
        || async { "the joiner did not start syncing".to_string() },
    )
    .await;
    a.signal("STOP");
    wait_synced(rc.clone(), "the joiner to finish without the stalled peer").await;
    // the stalled peer was dropped
    wait_for(
        "the joiner to drop the stalled peer",
        Duration::from_secs(30),
        || {
            let rc = rc.clone();
            let a_addr = a_addr.clone();
            async move {
                let peers = rc.net_get_peers().await.ok()?;
                (!peers.iter().any(|p| p.address == a_addr)).then_some(())
            }
        },
        || async { "the stalled peer is still listed".to_string() },
    )
    .await;
    a.signal("CONT");
    let info = rc.chain_get_info().await.unwrap();
    assert_eq!(info.height, 3000);
    assert!(!info.syncing);
    // the transfers came along
    let acc = rc
        .state_get_account(accounts[0].address.encode(prefix))
        .await
        .unwrap();
    assert_eq!(acc.nonce, nonces[0]);
}
