//! `testnet load`: signed transfers from the manifest's funded accounts at
//! a target rate, spread over the nodes; reports how many were accepted
//! and confirmed, and the latency from submission to the first sighting
//! of the confirming block at the node it was submitted to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api::{BlockId, CairnApiClient};
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, Amount, SigningKey, Transfer};
use clap::Args;
use jsonrpsee_http_client::HttpClient;
use serde::Serialize;

use super::manifest::Manifest;
use super::stats::Spread;

#[derive(Args, Clone)]
pub struct LoadArgs {
    #[command(flatten)]
    pub dir: super::DirArg,
    /// Transfers per second to submit.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub tps: u32,
    /// How long to submit, e.g. 10s.
    #[arg(long, value_parser = super::parse_ms_arg)]
    pub duration: u64,
    /// How long to wait for confirmations afterwards.
    #[arg(long, value_parser = super::parse_ms_arg, default_value = "30s")]
    pub wait: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub target_tps: u32,
    pub duration_ms: u64,
    pub submitted: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejections by reason (the node's message).
    pub rejections: HashMap<String, u64>,
    pub confirmed: u64,
    /// Confirmed transfers per second, over the submission time.
    pub confirmed_tps: f64,
    /// Submission to the first sighting of the confirming block, at the
    /// node that took the transfer.
    pub latency: Spread,
}

/// Most transfers one load run submits (each is tracked until it confirms).
pub const MAX_TRANSFERS: u64 = 1_000_000;

struct Sender {
    key: SigningKey,
    nonce: u64,
    to: Address,
}

/// Runs the load; the report is also what scenarios assert on.
pub async fn run_load(
    m: &Manifest,
    tps: u32,
    duration_ms: u64,
    wait_ms: u64,
) -> anyhow::Result<LoadReport> {
    // every submitted transfer is tracked until it confirms: bound them
    let total = u64::from(tps).saturating_mul(duration_ms) / 1000;
    if total > MAX_TRANSFERS {
        bail!(
            "{tps} per second for {duration_ms} ms is {total} transfers; at most {MAX_TRANSFERS} per run"
        );
    }
    let clients: Vec<HttpClient> = m
        .nodes
        .iter()
        .map(|n| n.client(Duration::from_secs(30)))
        .collect::<Result<_, _>>()?;
    let info = clients[0]
        .chain_get_info()
        .await
        .context("node 0: chain_getInfo")?;
    let prefix = cairn_consensus::AddressPrefix::new(&info.address_prefix)
        .map_err(|e| anyhow::anyhow!("address prefix {}: {e}", info.address_prefix))?;
    let keys: Vec<SigningKey> = m
        .accounts
        .iter()
        .filter_map(|a| a.secret.as_deref())
        .filter_map(|s| {
            let mut b = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut b).ok()?;
            Some(SigningKey::from_bytes(&b))
        })
        .collect();
    if keys.is_empty() {
        bail!("the manifest lists no accounts with a secret key to send from");
    }
    let mut senders = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let from = Address::from_public_key(&public_key(key));
        let acc = clients[0].state_get_account(from.encode(&prefix)).await?;
        if acc.balance < info.min_fee.saturating_mul(1000) {
            continue;
        }
        let next = &keys[(i + 1) % keys.len()];
        senders.push(Sender {
            key: key.clone(),
            nonce: acc.next_nonce,
            to: Address::from_public_key(&public_key(next)),
        });
    }
    if senders.is_empty() {
        bail!("no account of the manifest has funds to send");
    }
    let start_height = clients[0].chain_get_info().await?.height;
    let mut report = LoadReport {
        target_tps: tps,
        duration_ms,
        ..Default::default()
    };
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(usize, String, Result<(), String>, u64)>();
    let started = Instant::now();
    let epoch_ms = crate_now_ms();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / u64::from(tps)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < Duration::from_millis(duration_ms) {
        tick.tick().await;
        let k = i % senders.len();
        let s = &mut senders[k];
        let t = Transfer {
            chain_id: info.chain_id,
            from: public_key(&s.key),
            to: s.to,
            amount: Amount(1),
            fee: Amount(info.min_fee),
            nonce: s.nonce,
        }
        .sign(&s.key);
        s.nonce += 1;
        let node = i % clients.len();
        let c = clients[node].clone();
        let tx = tx.clone();
        let hex = hex::encode(t.encode());
        let id = t.id().to_hex();
        let at = epoch_ms + started.elapsed().as_millis() as u64;
        tasks.spawn(async move {
            let r = c.tx_submit(hex).await.map(|_| ()).map_err(|e| match e {
                jsonrpsee::core::ClientError::Call(o) => o.message().to_string(),
                other => other.to_string(),
            });
            let _ = tx.send((node, id, r, at));
        });
        report.submitted += 1;
        i += 1;
    }
    while tasks.join_next().await.is_some() {}
    drop(tx);
    let mut pending: HashMap<String, (usize, u64)> = HashMap::new();
    while let Some((node, id, r, at)) = rx.recv().await {
        match r {
            Ok(()) => {
                report.accepted += 1;
                pending.insert(id, (node, at));
            }
            Err(msg) => {
                report.rejected += 1;
                let reason: String = msg.chars().take(80).collect();
                *report.rejections.entry(reason).or_default() += 1;
            }
        }
    }
    // confirmations: scan the best chain of node 0 for the transfers
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut confirmed: HashMap<String, String> = HashMap::new();
    let mut scanned = start_height;
    loop {
        let tip = clients[0].chain_get_info().await?.height;
        while scanned < tip {
            scanned += 1;
            let b = clients[0].chain_get_block(BlockId::Height(scanned)).await?;
            for t in &b.transactions {
                let id = t.txid.to_hex();
                if pending.contains_key(&id) {
                    confirmed.insert(id, b.hash.to_hex());
                }
            }
        }
        if confirmed.len() == pending.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // when each node first saw each block
    let mut seen: Vec<HashMap<String, u64>> = Vec::new();
    for c in &clients {
        let obs = c
            .lab_get_observations(None)
            .await
            .map(|o| o.blocks)
            .unwrap_or_default();
        seen.push(obs.into_iter().map(|s| (s.id, s.time_ms)).collect());
    }
    let mut latencies = Vec::new();
    let mut last_confirm = 0;
    for (id, block) in &confirmed {
        let (node, at) = pending[id];
        if let Some(t) = seen[node].get(block).or_else(|| seen[0].get(block)) {
            latencies.push(t.saturating_sub(at));
            last_confirm = last_confirm.max(*t);
        }
    }
    report.confirmed = confirmed.len() as u64;
    let span_ms = duration_ms.max(1);
    report.confirmed_tps = report.confirmed as f64 * 1000.0 / span_ms as f64;
    report.latency = Spread::of(latencies);
    Ok(report)
}

fn crate_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn print(r: &LoadReport) {
    println!(
        "submitted {} transfers in {} ms (target {} per second): {} accepted, {} rejected",
        r.submitted, r.duration_ms, r.target_tps, r.accepted, r.rejected
    );
    for (reason, n) in &r.rejections {
        println!("  rejected {n}: {reason}");
    }
    println!(
        "confirmed {} ({:.1} per second over the submission time)",
        r.confirmed, r.confirmed_tps
    );
    match (r.latency.median_ms, r.latency.p95_ms) {
        (Some(m), Some(p)) => println!("submit to confirm: median {m} ms, p95 {p} ms"),
        _ => println!("submit to confirm: no confirmed transfer"),
    }
}

/// `testnet load`.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let m = Manifest::load(&args.dir.dir)?;
    let r = run_load(&m, args.tps, args.duration, args.wait).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r);
    }
    Ok(())
}
