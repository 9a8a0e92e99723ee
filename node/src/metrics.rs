//! Prometheus metrics, all named `cairn_*`, rendered at `GET /metrics` on
//! the RPC address.
//!
//! Events are counted where they happen with the `metrics` macros (blocks
//! processed, reorganisations, transfers accepted and rejected, RPC calls;
//! the P2P layer adds its own). Levels (height, work, mempool, peers,
//! hashrate, sync) are read from the node when scraped, so they are always
//! current. One recorder serves the process: nodes started in one test
//! process share their counters.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::chain::{ChainError, Outcome, Processed};
use crate::mempool::MempoolError;
use crate::node::{Node, SubmitError};

/// Every metric the node itself emits, with its type and help text. The
/// Grafana dashboard and the tests use this list; the P2P layer's metrics
/// are in [`P2P_METRICS`].
pub const NODE_METRICS: &[(&str, &str, &str)] = &[
    (
        "cairn_build_info",
        "gauge",
        "1, labelled with the node's version and network",
    ),
    ("cairn_chain_height", "gauge", "Height of the best block"),
    (
        "cairn_chain_work",
        "gauge",
        "Cumulative work of the best chain (expected hashes; a float, so approximate)",
    ),
    (
        "cairn_chain_difficulty",
        "gauge",
        "Difficulty of the best block: the easiest target divided by its target",
    ),
    (
        "cairn_chain_tip_age_seconds",
        "gauge",
        "Seconds since the best block's timestamp",
    ),
    (
        "cairn_block_process_seconds",
        "histogram",
        "Time to validate and store one block",
    ),
    (
        "cairn_blocks_processed_total",
        "counter",
        "Blocks processed, by outcome",
    ),
    (
        "cairn_reorgs_total",
        "counter",
        "Reorganisations of the best chain",
    ),
    (
        "cairn_reorg_depth",
        "histogram",
        "Blocks disconnected per reorganisation",
    ),
    (
        "cairn_mempool_transfers",
        "gauge",
        "Transfers in the mempool",
    ),
    (
        "cairn_mempool_bytes",
        "gauge",
        "Encoded bytes in the mempool",
    ),
    (
        "cairn_mempool_min_fee",
        "gauge",
        "The lowest fee a new transfer can pay and enter, base units",
    ),
    (
        "cairn_transfers_accepted_total",
        "counter",
        "Transfers accepted into the mempool, by source (rpc or peer)",
    ),
    (
        "cairn_transfers_rejected_total",
        "counter",
        "Transfers refused, by reason and source",
    ),
    (
        "cairn_rpc_calls_total",
        "counter",
        "JSON-RPC calls, by method and outcome (ok, error, refused)",
    ),
    (
        "cairn_rpc_call_seconds",
        "histogram",
        "JSON-RPC call duration, by method",
    ),
    (
        "cairn_rpc_auth_failures_total",
        "counter",
        "HTTP requests refused for missing or wrong credentials",
    ),
    (
        "cairn_rpc_http_refused_total",
        "counter",
        "HTTP requests refused by the Host or Origin guard, by reason",
    ),
    (
        "cairn_mining",
        "gauge",
        "1 while the node mines continuously",
    ),
    (
        "cairn_miner_hashrate",
        "gauge",
        "Hash attempts per second over the last few seconds",
    ),
    (
        "cairn_blocks_mined_total",
        "counter",
        "Blocks this node mined since it started",
    ),
    (
        "cairn_peers",
        "gauge",
        "Connected peers, by direction (inbound, outbound)",
    ),
    (
        "cairn_best_header_height",
        "gauge",
        "Height of the best header known (the sync target)",
    ),
    ("cairn_syncing", "gauge", "1 while catching up with peers"),
    (
        "cairn_sync_progress",
        "gauge",
        "Blocks fetched over blocks to fetch (1 when synced)",
    ),
];

/// Metrics the P2P layer emits itself (also on the dashboard).
pub const P2P_METRICS: &[(&str, &str, &str)] = &[
    (
        "cairn_p2p_bytes_total",
        "counter",
        "Bytes sent and received, by direction and message type",
    ),
    (
        "cairn_p2p_messages_total",
        "counter",
        "Messages sent and received, by direction and message type",
    ),
    (
        "cairn_p2p_disconnects_total",
        "counter",
        "Peer disconnections, by reason",
    ),
    (
        "cairn_p2p_handshake_seconds",
        "histogram",
        "Time of the encrypted (Noise) handshake with a peer",
    ),
    ("cairn_bans_total", "counter", "Bans imposed"),
    ("cairn_banned", "gauge", "Addresses banned now"),
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle; `None`
/// if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("cairn_block_process_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("cairn_rpc_call_seconds".into()),
                        &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("cairn_p2p_handshake_seconds".into()),
                        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("cairn_reorg_depth".into()),
                        &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0],
                    )
                });
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("metrics disabled: {e}");
                    return None;
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    for (name, _, help) in NODE_METRICS.iter().chain(P2P_METRICS) {
                        metrics::describe_gauge!(*name, *help);
                    }
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!("metrics disabled: another metrics recorder is installed");
                    None
                }
            }
        })
        .clone()
}

/// Records the outcome and duration of one block.
pub fn block_processed(r: &Result<Processed, ChainError>, took: Duration) {
    let outcome = match r {
        Ok(p) => match p.outcome {
            Outcome::Connected => "connected",
            Outcome::SideBranch => "side_branch",
            Outcome::Orphan { .. } => "orphan",
            Outcome::Duplicate => "duplicate",
        },
        Err(e) if e.is_block_fault() => "invalid",
        Err(_) => "error",
    };
    counter!("cairn_blocks_processed_total", "outcome" => outcome).increment(1);
    if matches!(outcome, "connected" | "side_branch") {
        histogram!("cairn_block_process_seconds").record(took.as_secs_f64());
    }
}

/// Records a reorganisation of `depth` blocks.
pub fn reorg(depth: u64) {
    counter!("cairn_reorgs_total").increment(1);
    histogram!("cairn_reorg_depth").record(depth as f64);
}

/// The label for why a transfer was refused: a fixed, small set.
pub fn reject_reason(e: &SubmitError) -> &'static str {
    use cairn_consensus::TransferError as T;
    match e {
        SubmitError::Transfer(t) => match t {
            T::WrongChainId { .. } => "wrong_chain",
            T::BadSignature(_) => "bad_signature",
            T::FeeBelowMinimum { .. } => "fee_too_low",
            T::ZeroAmount | T::AmountOverflow { .. } => "bad_amount",
            T::Decode(_) => "malformed",
        },
        SubmitError::Mempool(m) => match m {
            MempoolError::NonceTooLow { .. } => "nonce_too_low",
            MempoolError::NonceTooHigh { .. } => "nonce_too_high",
            MempoolError::InsufficientBalance { .. } => "insufficient_balance",
            MempoolError::ReplacementUnderpriced { .. } => "replacement_underpriced",
            MempoolError::SenderLimit { .. } => "sender_limit",
            MempoolError::Full { .. } => "mempool_full",
            MempoolError::WaitingFull { .. } => "waiting_full",
            MempoolError::Duplicate(_) => "duplicate",
        },
        SubmitError::AlreadyConfirmed { .. } => "duplicate",
        SubmitError::Store(_) => "store_error",
    }
}

/// Records a transfer submission.
pub fn transfer_submitted<T>(r: &Result<T, SubmitError>, from_peer: bool) {
    let source = if from_peer { "peer" } else { "rpc" };
    match r {
        Ok(_) => counter!("cairn_transfers_accepted_total", "source" => source).increment(1),
        Err(e) => counter!("cairn_transfers_rejected_total", "reason" => reject_reason(e), "source" => source)
            .increment(1),
    }
}

/// Sets the level gauges from `node` and renders the text exposition.
pub fn render(
    node: &Node,
    sync: &crate::status::SyncState,
    p2p: Option<&cairn_p2p::P2pStatus>,
) -> Option<String> {
    let handle = install()?;
    let tip = node.tip();
    let params = &node.network.params;
    gauge!("cairn_build_info", "version" => env!("CARGO_PKG_VERSION"), "network" => node.network.name.clone())
        .set(1.0);
    gauge!("cairn_chain_height").set(tip.header.height.0 as f64);
    gauge!("cairn_chain_work").set(u256_to_f64(&tip.work.0.to_be_bytes::<32>()));
    gauge!("cairn_chain_difficulty").set(crate::status::difficulty(
        &params.pow_limit,
        &tip.header.target,
    ));
    let age_ms = crate::node::now_ms().saturating_sub(tip.header.time_ms);
    gauge!("cairn_chain_tip_age_seconds").set(age_ms as f64 / 1000.0);
    let (count, bytes, min_fee) =
        node.with_mempool(|p| (p.len() as f64, p.bytes() as f64, p.min_fee().0 as f64));
    gauge!("cairn_mempool_transfers").set(count);
    gauge!("cairn_mempool_bytes").set(bytes);
    gauge!("cairn_mempool_min_fee").set(min_fee);
    gauge!("cairn_mining").set(if node.is_mining() { 1.0 } else { 0.0 });
    gauge!("cairn_miner_hashrate").set(node.mining.meter.sample() as f64);
    counter!("cairn_blocks_mined_total").absolute(
        node.mining
            .blocks_mined
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    // level gauges of the P2P layer come from its status at scrape time (its
    // counters it emits itself as it goes)
    if let Some(s) = p2p {
        gauge!("cairn_peers", "direction" => "inbound").set(s.inbound as f64);
        gauge!("cairn_peers", "direction" => "outbound").set(s.outbound as f64);
        gauge!("cairn_banned").set(s.banned as f64);
    }
    gauge!("cairn_best_header_height").set(sync.best_header_height as f64);
    gauge!("cairn_syncing").set(if sync.syncing { 1.0 } else { 0.0 });
    gauge!("cairn_sync_progress").set(sync.progress);
    handle.run_upkeep();
    Some(handle.render())
}

/// A 256-bit big-endian number as a float (lossy: 53 bits of precision).
pub fn u256_to_f64(be: &[u8; 32]) -> f64 {
    be.iter().fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
}
