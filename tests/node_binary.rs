//! The real `cairn-node` binary: the transfer lifecycle over RPC, a clean
//! stop and restart, and kill -9 while mining.

mod support;

use std::time::Duration;

use cairn_api::{CairnApiClient, TxStatus};
use cairn_consensus::COIN;
use cairn_genesis::{Network, dev_accounts};
use support::*;

fn dev() -> Network {
    Network::builtin("dev").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_a_transfer_and_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let net = dev();
    let prefix = &net.params.address_prefix;
    let accounts = dev_accounts();
    let node = NodeProcess::start(dir.path(), &["--network", "dev"]);
    assert!(
        node.stdout
            .iter()
            .any(|l| l.contains("dev (chain id 1337)"))
    );
    let rpc = node.client();
    rpc.mining_generate(2, accounts[2].address.encode(prefix))
        .await
        .unwrap();
    let tx = sign(
        &accounts[0].key,
        net.params.chain_id,
        accounts[1].address,
        3 * COIN,
        1000,
        0,
    );
    let id = rpc.tx_submit(hex_of(&tx)).await.unwrap();
    assert_eq!(
        rpc.chain_get_transaction(id).await.unwrap().status,
        TxStatus::Pending
    );
    rpc.mining_generate(1, accounts[2].address.encode(prefix))
        .await
        .unwrap();
    assert_eq!(
        rpc.chain_get_transaction(id).await.unwrap().status,
        TxStatus::Confirmed
    );
    let bob = rpc
        .state_get_account(accounts[1].address.encode(prefix))
        .await
        .unwrap();
    assert_eq!(node.terminate(), Some(0), "SIGTERM shuts down cleanly");

    let node = NodeProcess::start(dir.path(), &["--network", "dev"]);
    let rpc = node.client();
    assert_eq!(rpc.chain_get_info().await.unwrap().height, 3);
    assert_eq!(
        rpc.state_get_account(accounts[1].address.encode(prefix))
            .await
            .unwrap(),
        bob
    );
    assert_eq!(
        rpc.chain_get_transaction(id).await.unwrap().status,
        TxStatus::Confirmed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_mining_restarts_on_a_consistent_chain() {
    let dir = tempfile::tempdir().unwrap();
    let net = dev();
    let prefix = &net.params.address_prefix;
    let miner = &dev_accounts()[4];
    let miner_text = miner.address.encode(prefix);
    let start_balance = net
        .accounts
        .iter()
        .find(|(a, _)| *a == miner.address)
        .map(|(_, acc)| acc.balance.0)
        .unwrap();
    let reward = net.params.block_reward.0;
    let mut seen_height = 0;
    for round in 0..3 {
        // start without mining, so the state read below is the state at start-up
        let node = NodeProcess::start(dir.path(), &["--network", "dev", "--block-time", "5ms"]);
        if let Some(l) = node.stdout.iter().find(|l| l.contains("rebuilt")) {
            eprintln!("round {round}: {l}");
        }
        let rpc = node.client();
        let info = rpc.chain_get_info().await.unwrap();
        assert!(
            info.height >= seen_height,
            "round {round}: height {} < {seen_height} reported before the kill",
            info.height
        );
        let acc = rpc.state_get_account(miner_text.clone()).await.unwrap();
        assert_eq!(
            acc.balance,
            start_balance + reward * info.height,
            "round {round}: the miner's balance matches the chain height"
        );
        // mine on both paths (interval miner and generate) until well past the last height
        rpc.mining_start(Some(miner_text.clone()), None)
            .await
            .unwrap();
        let target = info.height + 40;
        let rpc2 = rpc.clone();
        let m = miner_text.clone();
        let generator = tokio::spawn(async move {
            for _ in 0..100 {
                if rpc2.mining_generate(5, m.clone()).await.is_err() {
                    break;
                }
            }
        });
        seen_height = wait_for(
            "the chain to grow",
            Duration::from_secs(60),
            || {
                let rpc = rpc.clone();
                async move {
                    let h = rpc.chain_get_info().await.ok()?.height;
                    (h >= target).then_some(h)
                }
            },
            || async { format!("node at {}", node.rpc_url) },
        )
        .await;
        node.kill9();
        generator.abort();
    }
}
