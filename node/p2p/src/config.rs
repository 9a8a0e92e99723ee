//! P2P limits and timings, with the reason for each default.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// P2P limits and timings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Listen for and make connections at all.
    pub enabled: bool,
    /// Outbound connections to keep.
    pub target_outbound: usize,
    /// Inbound connections accepted at most (beyond, one is evicted).
    pub max_inbound: usize,
    /// Inbound connections from one IP address, and of its connections in
    /// their handshake at once (not applied to whitelisted peers, nor to
    /// loopback on a dev network).
    pub max_inbound_per_ip: usize,
    /// Connections that have not finished their handshake, at most (one IP
    /// address holds at most `max_inbound_per_ip` of them).
    pub max_pending_handshakes: usize,
    /// Outbound connections to addresses learned from one source.
    pub max_outbound_per_source: usize,
    /// A request (headers, blocks) unanswered this long stalls its peer.
    pub request_timeout_ms: u64,
    /// The lowest block of a download window that cannot move, unanswered
    /// this long, stalls its peer.
    pub stall_ms: u64,
    pub handshake_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// How long an automatic ban lasts.
    pub ban_secs: u64,
    /// Blocks are requested within this many of the first missing one.
    pub block_window: usize,
    /// Blocks in flight from one peer.
    pub per_peer_blocks: usize,
    /// Memory for blocks being downloaded (in flight, at the network's
    /// largest block size, plus arrived and waiting).
    pub download_buffer_bytes: usize,
    /// Bytes queued to one peer before it counts as not reading.
    pub send_queue_bytes: usize,
    /// Messages per second a peer may send on average, and in a burst
    /// (blocks we asked for are not counted).
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// Unrequested blocks one peer may send per minute.
    pub unrequested_blocks_per_min: u32,
    /// Transfer ids one peer may announce per second on average.
    pub inv_per_sec: u32,
    /// Low-work headers held per peer before switching to presync.
    pub header_budget: usize,
    /// Validated headers held ahead of the stored blocks before the node
    /// stops asking for more (it resumes as blocks arrive).
    pub max_headers_ahead: usize,
    /// Peers in these ranges are the operator's own: disconnected on
    /// misbehaviour but never banned, and not limited per IP.
    pub whitelist: Vec<IpNet>,
    /// On a dev network, loopback peers are the operator's own (every
    /// local node shares 127.0.0.1). Tests of hostile peers turn it off.
    pub dev_loopback_is_local: bool,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            enabled: true,
            target_outbound: 8,
            max_inbound: 32,
            max_inbound_per_ip: 4,
            max_pending_handshakes: 16,
            max_outbound_per_source: 2,
            request_timeout_ms: 15_000,
            stall_ms: 4_000,
            handshake_timeout_ms: 10_000,
            ping_interval_ms: 30_000,
            ping_timeout_ms: 60_000,
            ban_secs: 24 * 3600,
            block_window: 1024,
            per_peer_blocks: 32,
            download_buffer_bytes: 128 << 20,
            send_queue_bytes: 8 << 20,
            rate_per_sec: 5_000,
            rate_burst: 20_000,
            unrequested_blocks_per_min: 60,
            inv_per_sec: 5_000,
            header_budget: 8_000,
            max_headers_ahead: 50_000,
            whitelist: Vec::new(),
            dev_loopback_is_local: true,
        }
    }
}
