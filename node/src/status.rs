//! The node's state as operators see it: sync state, peers, health.
//!
//! # Where the P2P layer plugs in
//! [`sync_state`] and [`peers`] are the only readers of the P2P layer's
//! sync progress and peer table for `chain_getInfo`, `/health`,
//! `/metrics` and the explorer.

use cairn_api::PeerView;
use cairn_consensus::Target;
use cairn_p2p::{P2pHandle, PeerInfo};

use crate::node::Node;

/// Whether the node is catching up, and how far.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncState {
    pub syncing: bool,
    /// Height of the best block.
    pub height: u64,
    /// Height of the best header known: the sync target (the height when synced).
    pub best_header_height: u64,
    /// Blocks per second while syncing.
    pub blocks_per_sec: u64,
    pub eta_secs: Option<u64>,
    /// Fraction of the sync done, 0 to 1 (1 when synced).
    pub progress: f64,
}

/// The sync state, read from the P2P layer's progress (blocks fetched
/// toward the best validated header).
pub fn sync_state(node: &Node, p2p: Option<&P2pHandle>) -> SyncState {
    let height = node.tip().header.height.0;
    let status = p2p.map(P2pHandle::status).unwrap_or_default();
    match status.sync {
        Some(p) => SyncState {
            syncing: true,
            height: p.height,
            best_header_height: p.target_height,
            blocks_per_sec: p.blocks_per_sec,
            eta_secs: p.eta_secs,
            progress: if p.target_height == 0 {
                1.0
            } else {
                p.height as f64 / p.target_height as f64
            },
        },
        None => SyncState {
            syncing: false,
            height,
            best_header_height: status.best_header_height.max(height),
            blocks_per_sec: 0,
            eta_secs: None,
            progress: 1.0,
        },
    }
}

/// Connected peers; empty when P2P is off.
pub async fn peers(p2p: Option<&P2pHandle>) -> Vec<PeerView> {
    match p2p {
        Some(p) => p.peers().await.into_iter().map(peer_view).collect(),
        None => Vec::new(),
    }
}

/// The API view of a peer.
pub fn peer_view(p: PeerInfo) -> PeerView {
    PeerView {
        node_id: p.node_id.to_string(),
        id: p.id,
        address: p.address,
        direction: p.direction.as_str().to_string(),
        height: p.height,
        latency_ms: p.latency_ms,
        remote: p.remote.to_string(),
        best_hash: p.best_hash,
        user_agent: p.user_agent,
        local: p.local,
        connected_secs: p.connected_secs,
        blocks_in_flight: p.blocks_in_flight as u64,
    }
}

/// `easiest / target`: how many times harder than the network's easiest
/// target a block is (a float, for display only).
pub fn difficulty(easiest: &Target, target: &Target) -> f64 {
    let t = crate::metrics::u256_to_f64(&target.0);
    if t == 0.0 {
        return f64::INFINITY;
    }
    crate::metrics::u256_to_f64(&easiest.0) / t
}

/// `GET /health`: healthy, or why not.
pub struct Health {
    pub ok: bool,
    pub status: &'static str,
    pub reason: Option<String>,
    pub sync: SyncState,
    pub peers: usize,
}

/// Healthy when up, not shutting down, synced, and (on networks other
/// than dev) connected to at least one peer.
pub fn health(node: &Node, p2p: Option<&P2pHandle>, peers: usize) -> Health {
    let p2p_enabled = p2p.is_some();
    let sync = sync_state(node, p2p);
    let dev = node.network.name == "dev";
    let (ok, status, reason) = if node.is_shutting_down() {
        (
            false,
            "stopping",
            Some("the node is shutting down".to_string()),
        )
    } else if sync.syncing {
        (
            false,
            "syncing",
            Some(format!(
                "syncing: block {} of {}",
                sync.height, sync.best_header_height
            )),
        )
    } else if p2p_enabled && !dev && peers == 0 {
        (
            false,
            "no-peers",
            Some("no peers connected, so the node cannot tell whether its chain is current".into()),
        )
    } else {
        (true, "ok", None)
    };
    Health {
        ok,
        status,
        reason,
        sync,
        peers,
    }
}
