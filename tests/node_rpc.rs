//! A dev node in-process, driven through its JSON-RPC API exactly as a
//! wallet would: blocks, a transfer from pending to confirmed, a restart,
//! and every rejection reason with its stable code.

mod support;

use std::time::Duration;

use cairn_api::{BlockId, CairnApiClient, Direction, TxStatus, codes};
use cairn_consensus::transfer::SIGNED_TRANSFER_BYTES;
use cairn_consensus::{Address, AddressPrefix, COIN, SigningKey};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::NodeConfig;
use cairn_node::service::{self, Running};
use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
use jsonrpsee::rpc_params;
use support::*;

fn dev() -> Network {
    Network::builtin("dev").unwrap()
}

async fn start(dir: &std::path::Path) -> Running {
    service::launch(dev(), NodeConfig::ephemeral(dir.to_path_buf()))
        .await
        .expect("node starts")
}

fn text(a: &Address) -> String {
    a.encode(&dev().params.address_prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_goes_from_pending_to_confirmed_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let rpc = node.client();
    let net = dev();
    let accounts = dev_accounts();
    let (alice, bob, miner) = (&accounts[0], &accounts[1], &accounts[2]);

    let info = rpc.chain_get_info().await.unwrap();
    assert_eq!((info.network.as_str(), info.height), ("dev", 0));
    assert_eq!(info.genesis_hash, net.genesis_hash);

    let hashes = rpc.mining_generate(3, text(&miner.address)).await.unwrap();
    assert_eq!(hashes.len(), 3);
    assert_eq!(rpc.chain_get_block_hash(3).await.unwrap(), hashes[2]);
    let block = rpc.chain_get_block(BlockId::Height(2)).await.unwrap();
    assert_eq!(block.hash, hashes[1]);
    assert_eq!(
        rpc.chain_get_block(BlockId::Hash(hashes[1])).await.unwrap(),
        block
    );
    assert_eq!(block.confirmations, 2);

    let before_a = rpc.state_get_account(text(&alice.address)).await.unwrap();
    let before_b = rpc.state_get_account(text(&bob.address)).await.unwrap();
    let fee = rpc.mempool_get_info().await.unwrap().min_fee;
    let tx = sign(
        &alice.key,
        net.params.chain_id,
        bob.address,
        7 * COIN,
        fee,
        before_a.next_nonce,
    );
    let id = rpc.tx_submit(hex_of(&tx)).await.unwrap();
    assert_eq!(id, tx.id());

    let pending = rpc.chain_get_transaction(id).await.unwrap();
    assert_eq!(pending.status, TxStatus::Pending);
    assert_eq!(pending.transaction.unwrap().amount, 7 * COIN);
    let a = rpc.state_get_account(text(&alice.address)).await.unwrap();
    assert_eq!((a.nonce, a.next_nonce, a.balance), (0, 1, before_a.balance));
    assert_eq!(a.pending_spend, 7 * COIN + fee);
    assert_eq!(rpc.mempool_get_info().await.unwrap().count, 1);

    let mined = rpc.mining_generate(1, text(&miner.address)).await.unwrap();
    let confirmed = rpc.chain_get_transaction(id).await.unwrap();
    assert_eq!(confirmed.status, TxStatus::Confirmed);
    assert_eq!(confirmed.block_hash, Some(mined[0]));
    assert_eq!(
        (confirmed.height, confirmed.confirmations),
        (Some(4), Some(1))
    );
    assert_eq!(rpc.mempool_get_info().await.unwrap().count, 0);
    let a = rpc.state_get_account(text(&alice.address)).await.unwrap();
    let b = rpc.state_get_account(text(&bob.address)).await.unwrap();
    assert_eq!(a.balance, before_a.balance - 7 * COIN - fee);
    assert_eq!((a.nonce, a.next_nonce), (1, 1));
    assert_eq!(b.balance, before_b.balance + 7 * COIN);
    let block = rpc.chain_get_block(BlockId::Hash(mined[0])).await.unwrap();
    assert_eq!(block.transactions.len(), 1);
    assert_eq!(block.coinbase.amount, net.params.block_reward.0 + fee);
    let history = rpc
        .state_get_history(text(&bob.address), None, None)
        .await
        .unwrap();
    assert_eq!(history.entries[0].direction, Direction::In);
    assert_eq!(history.entries[0].txid, id);

    // a restart keeps everything
    node.stop().await;
    let node = start(dir.path()).await;
    let rpc = node.client();
    assert_eq!(rpc.chain_get_info().await.unwrap().height, 4);
    assert_eq!(
        rpc.chain_get_transaction(id).await.unwrap().status,
        TxStatus::Confirmed
    );
    assert_eq!(
        rpc.state_get_account(text(&alice.address)).await.unwrap(),
        a
    );
    assert_eq!(rpc.state_get_account(text(&bob.address)).await.unwrap(), b);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_has_its_code_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let rpc = node.client();
    let net = dev();
    let chain_id = net.params.chain_id;
    let accounts = dev_accounts();
    let alice = &accounts[0];
    let bob = accounts[1].address;
    let min_fee = net.params.min_fee.0;

    // a poor account: 2 coins, one confirmed transfer so its nonce is 1
    let poor = SigningKey::from_bytes(&[42; 32]);
    let poor_addr = Address::from_public_key(&cairn_consensus::transfer::public_key(&poor));
    rpc.tx_submit(hex_of(&sign(
        &alice.key,
        chain_id,
        poor_addr,
        2 * COIN + 2 * min_fee,
        min_fee,
        0,
    )))
    .await
    .unwrap();
    rpc.mining_generate(1, text(&bob)).await.unwrap();
    rpc.tx_submit(hex_of(&sign(&poor, chain_id, bob, COIN / 2, min_fee, 0)))
        .await
        .unwrap();
    rpc.mining_generate(1, text(&bob)).await.unwrap();

    let info_before = rpc.chain_get_info().await.unwrap();
    let poor_before = rpc.state_get_account(text(&poor_addr)).await.unwrap();
    let ok = sign(&poor, chain_id, bob, COIN, min_fee, 1);
    let mut bad_sig = ok;
    bad_sig.signature.0[10] ^= 1;

    let cases: Vec<(&str, String, i32)> = vec![
        ("bad signature", hex_of(&bad_sig), codes::TX_BAD_SIGNATURE),
        (
            "signed by another key",
            hex_of(&{
                let mut t = ok;
                t.signature = sign(&alice.key, chain_id, bob, COIN, min_fee, 1).signature;
                t
            }),
            codes::TX_BAD_SIGNATURE,
        ),
        (
            "wrong chain id",
            hex_of(&sign(&poor, chain_id + 1, bob, COIN, min_fee, 1)),
            codes::TX_WRONG_CHAIN,
        ),
        (
            "nonce too low",
            hex_of(&sign(&poor, chain_id, bob, COIN, min_fee, 0)),
            codes::TX_NONCE_TOO_LOW,
        ),
        (
            "nonce too far ahead",
            hex_of(&sign(&poor, chain_id, bob, COIN, min_fee, 1000)),
            codes::TX_NONCE_TOO_HIGH,
        ),
        (
            "balance too low",
            hex_of(&sign(&poor, chain_id, bob, 5 * COIN, min_fee, 1)),
            codes::TX_INSUFFICIENT_BALANCE,
        ),
        (
            "fee below minimum",
            hex_of(&sign(&poor, chain_id, bob, COIN, min_fee - 1, 1)),
            codes::TX_FEE_TOO_LOW,
        ),
        (
            "zero amount",
            hex_of(&sign(&poor, chain_id, bob, 0, min_fee, 1)),
            codes::TX_BAD_AMOUNT,
        ),
        (
            "too large",
            "00".repeat(SIGNED_TRANSFER_BYTES + 1),
            codes::TX_TOO_LARGE,
        ),
        ("not hex", "zz".repeat(10), codes::TX_MALFORMED),
        (
            "too short",
            "00".repeat(SIGNED_TRANSFER_BYTES - 1),
            codes::TX_MALFORMED,
        ),
    ];
    for (what, hex, expected) in cases {
        let err = rpc.tx_submit(hex).await.expect_err(what);
        assert_eq!(code(&err), expected, "{what}: {err}");
    }

    // pending spends count: 1 coin pending, then 1 more coin does not fit
    rpc.tx_submit(hex_of(&ok)).await.unwrap();
    let second = sign(&poor, chain_id, bob, COIN, min_fee, 2);
    let err = rpc.tx_submit(hex_of(&second)).await.unwrap_err();
    assert_eq!(code(&err), codes::TX_INSUFFICIENT_BALANCE, "{err}");
    assert!(err.to_string().contains("already pending"), "{err}");
    let err = rpc.tx_submit(hex_of(&ok)).await.unwrap_err();
    assert_eq!(code(&err), codes::TX_DUPLICATE, "{err}");
    let replacement = sign(&poor, chain_id, bob, COIN, min_fee + 1, 1);
    let err = rpc.tx_submit(hex_of(&replacement)).await.unwrap_err();
    assert_eq!(code(&err), codes::TX_REPLACEMENT_UNDERPRICED, "{err}");

    // addresses and lookups
    let err = rpc.state_get_account("cdev1qqqq".into()).await.unwrap_err();
    assert_eq!(code(&err), codes::INVALID_ADDRESS);
    let mut typo = text(&bob);
    let last = typo.pop().unwrap();
    typo.push(if last == 'q' { 'p' } else { 'q' });
    let err = rpc.state_get_account(typo).await.unwrap_err();
    assert_eq!(code(&err), codes::INVALID_ADDRESS, "{err}");
    let testnet_addr = bob.encode(&AddressPrefix::new("ctest").unwrap());
    let err = rpc.state_get_account(testnet_addr).await.unwrap_err();
    assert_eq!(code(&err), codes::WRONG_NETWORK, "{err}");
    let err = rpc
        .chain_get_block(BlockId::Height(10_000))
        .await
        .unwrap_err();
    assert_eq!(code(&err), codes::NOT_FOUND);
    let err = rpc
        .chain_get_block(BlockId::Hash(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(code(&err), codes::NOT_FOUND);
    let err = rpc.mining_generate(0, text(&bob)).await.unwrap_err();
    assert_eq!(code(&err), -32602);
    let err = ClientT::request::<serde_json::Value, _>(&rpc, "chain_noSuchMethod", rpc_params![])
        .await
        .unwrap_err();
    assert_eq!(code(&err), -32601);
    let err =
        ClientT::request::<serde_json::Value, _>(&rpc, "chain_getBlockHash", rpc_params!["x"])
            .await
            .unwrap_err();
    assert_eq!(code(&err), -32602);
    let raw = raw_post(&node, "{not json").await;
    assert!(raw.contains("-32700"), "{raw}");
    // limits: a batch over 200 calls, a body over 2 MiB
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"chain_getInfo","params":[]}"#;
    let batch = format!("[{}]", vec![call; 201].join(","));
    let raw = raw_post(&node, &batch).await;
    assert!(raw.contains("-32010"), "batch too large: {raw}");
    assert!(
        !raw.contains("\"result\""),
        "an oversized batch runs nothing: {raw}"
    );
    let ok_batch = format!("[{}]", [call; 3].join(","));
    assert_eq!(
        raw_post(&node, &ok_batch)
            .await
            .matches("\"result\"")
            .count(),
        3
    );
    // the server refuses on the declared length, before reading any body
    let raw = raw_request(&node, (2 << 20) + 1, "").await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");

    // nothing changed but the one accepted transfer
    let info_after = rpc.chain_get_info().await.unwrap();
    assert_eq!(info_after.best_hash, info_before.best_hash);
    let poor_after = rpc.state_get_account(text(&poor_addr)).await.unwrap();
    assert_eq!(poor_after.balance, poor_before.balance);
    assert_eq!(poor_after.next_nonce, 2);
    assert_eq!(rpc.mempool_get_info().await.unwrap().count, 1);
    node.stop().await;
}

/// Posts a raw body to the RPC endpoint and returns the response text.
async fn raw_post(node: &Running, body: &str) -> String {
    raw_request(node, body.len(), body).await
}

/// Sends a POST declaring `length` bytes of body followed by `body`.
async fn raw_request(node: &Running, length: usize, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = node.rpc_addr;
    let auth = node.credentials().unwrap().header();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_heads_arrive_over_websocket_and_mining_starts_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let rpc = node.client();
    let ws = ws_with(&node.ws_url(), &node.credentials().unwrap()).await;
    let mut heads = ws
        .subscribe::<cairn_api::HeaderView, _>(
            "chain_subscribeNewHeads",
            rpc_params![],
            "chain_unsubscribeNewHeads",
        )
        .await
        .unwrap();
    let miner = text(&dev_accounts()[3].address);
    let hashes = rpc.mining_generate(2, miner.clone()).await.unwrap();
    for expected in &hashes {
        let h = tokio::time::timeout(Duration::from_secs(10), heads.next())
            .await
            .expect("a head within 10 s")
            .expect("stream open")
            .unwrap();
        assert_eq!(&h.hash, expected);
    }

    rpc.mining_start(Some(miner), Some(1)).await.unwrap();
    let info = rpc.mining_get_info().await.unwrap();
    assert!(info.mining);
    assert_eq!(info.threads, 1);
    // the dev network mines one block every block_time (2 s by default)
    let h = tokio::time::timeout(Duration::from_secs(10), heads.next())
        .await
        .expect("the miner produces a block")
        .expect("stream open")
        .unwrap();
    assert_eq!(h.height, 3);
    rpc.mining_stop().await.unwrap();
    assert!(!rpc.mining_get_info().await.unwrap().mining);
    let height = rpc.chain_get_info().await.unwrap().height;
    // no block arrives after the stop: the next generate builds on `height`
    let next = rpc
        .mining_generate(1, text(&dev_accounts()[3].address))
        .await
        .unwrap();
    assert_eq!(
        rpc.chain_get_block(BlockId::Hash(next[0]))
            .await
            .unwrap()
            .header
            .height,
        height + 1
    );
    // unsubscribing passes the RPC policy too (it takes the subscription id)
    heads
        .unsubscribe()
        .await
        .expect("chain_unsubscribeNewHeads is answered");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mempool_and_a_busy_sender_are_refused_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::ephemeral(dir.path().to_path_buf());
    config.mempool.max_bytes = 2 * SIGNED_TRANSFER_BYTES;
    config.mempool.max_per_sender = 2;
    let node = service::launch(dev(), config).await.unwrap();
    let rpc = node.client();
    let net = dev();
    let id = net.params.chain_id;
    let fee = net.params.min_fee.0;
    let a = dev_accounts();
    let to = a[5].address;
    rpc.tx_submit(hex_of(&sign(&a[0].key, id, to, COIN, fee, 0)))
        .await
        .unwrap();
    rpc.tx_submit(hex_of(&sign(&a[1].key, id, to, COIN, fee + 5, 0)))
        .await
        .unwrap();
    assert_eq!(rpc.mempool_get_info().await.unwrap().min_fee, fee + 1);
    let err = rpc
        .tx_submit(hex_of(&sign(&a[2].key, id, to, COIN, fee, 0)))
        .await
        .unwrap_err();
    assert_eq!(code(&err), codes::MEMPOOL_FULL, "{err}");
    // paying more evicts the cheapest
    rpc.tx_submit(hex_of(&sign(&a[2].key, id, to, COIN, fee + 1, 0)))
        .await
        .unwrap();
    assert_eq!(rpc.mempool_get_info().await.unwrap().count, 2);

    // transfers waiting for an earlier nonce have a pool of their own: they
    // neither raise the quoted fee nor make room by evicting ready ones
    for (k, n) in [(3, 1), (3, 2), (4, 1)] {
        rpc.tx_submit(hex_of(&sign(&a[k].key, id, to, COIN, fee + 100, n)))
            .await
            .unwrap();
    }
    let info = rpc.mempool_get_info().await.unwrap();
    assert_eq!((info.count, info.waiting_count), (5, 3), "{info:?}");
    assert_eq!(info.bytes, 2 * SIGNED_TRANSFER_BYTES as u64, "{info:?}");
    assert_eq!(info.min_fee, fee + 2, "only ready transfers set the quote");

    let dir2 = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::ephemeral(dir2.path().to_path_buf());
    config.mempool.max_per_sender = 2;
    let node2 = service::launch(dev(), config).await.unwrap();
    let rpc2 = node2.client();
    for n in 0..2 {
        rpc2.tx_submit(hex_of(&sign(&a[0].key, id, to, COIN, fee, n)))
            .await
            .unwrap();
    }
    let err = rpc2
        .tx_submit(hex_of(&sign(&a[0].key, id, to, COIN, fee, 2)))
        .await
        .unwrap_err();
    assert_eq!(code(&err), codes::TX_SENDER_LIMIT, "{err}");
    node.stop().await;
    node2.stop().await;
}
