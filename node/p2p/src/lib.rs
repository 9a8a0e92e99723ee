//! # cairn-p2p
//!
//! The peer-to-peer layer of a Cairn node (tokio, TCP). It reaches the node
//! only through the [`ChainBackend`] trait and persists its address book and
//! bans through [`PeerStore`], so no storage read or mempool lock ever runs
//! on the task that serves the peers.
//!
//! Organised by policy:
//! - [`connection`]: framing, the handshake, the byte-bounded send queue,
//!   answering requests; [`message`]: the wire protocol.
//! - [`headers`]: headers-first sync (validated header tree, per-peer
//!   low-work budget and presync); [`download`]: the block downloader (pure,
//!   unit-tested); [`progress`]: sync progress.
//! - `relay.rs`: announcements of blocks (by header) and transfers.
//! - [`compact`]: compact blocks (BIP152), and `compact_relay.rs`, their
//!   relay: a new tip as short ids, rebuilt from the mempool, with the
//!   full block as the fallback.
//! - [`addrbook`]: addresses by source; [`bans`]: bans and the whitelist;
//!   [`eviction`]: which inbound peer makes room; [`peer`]: misbehaviour and
//!   its penalties.
//! - [`link`]: link faults for experiments (partition, delay, loss, rate).
//! - `manager.rs`: the one task that owns the peer table and runs it all.
//!
//! The rules in short (Bitcoin Core's net_processing and addrman are the
//! reference): what a peer claims is a hint until its proof of work says
//! otherwise; blocks are asked only of peers that showed them; every queue,
//! table and budget is bounded per peer; misbehaviour disconnects at once and
//! only clear abuse bans, never a peer the operator calls their own.

pub mod addr;
pub mod addrbook;
pub mod backend;
pub mod bans;
pub mod compact;
mod compact_relay;
pub mod config;
pub mod connection;
pub mod download;
pub mod eviction;
pub mod headers;
pub mod link;
mod manager;
pub mod message;
pub mod peer;
pub mod progress;
pub mod recent;
mod relay;
pub mod store;
mod sync;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_consensus::BlockHash;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

pub use addr::PeerAddr;
pub use backend::{
    BackendError, BlockVerdict, ChainBackend, ChainEvent, ChainTip, NetworkInfo, StoredHeader,
    TxVerdict,
};
pub use bans::{BanOrigin, BanView};
pub use config::P2pConfig;
pub use ipnet::IpNet;
pub use link::LinkRule;
pub use message::RejectCode;
pub use peer::Direction;
pub use progress::SyncProgress;
pub use store::{NoStore, PeerStore, StoreOp};
pub use transport::{NodeId, NodeKey};

use manager::{Command, Manager, Setup};

/// A connected peer, as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The connection's number (changes on reconnection).
    pub id: u64,
    /// The node at the other end, proven by the encrypted handshake.
    pub node_id: NodeId,
    /// The address we dialled, or the one it listens on.
    pub address: String,
    /// The socket's remote address.
    pub remote: SocketAddr,
    pub direction: Direction,
    /// The best height it showed (or claimed, whichever is higher).
    pub height: u64,
    /// The best block it showed us (validated), if any.
    pub best_hash: Option<BlockHash>,
    pub latency_ms: Option<u64>,
    pub user_agent: String,
    /// Local to the operator (never banned).
    pub local: bool,
    pub connected_secs: u64,
    pub blocks_in_flight: usize,
}

/// Which peer an operator command means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSelector {
    Id(u64),
    /// `host:port`: the dialled, advertised or remote address.
    Address(String),
}

/// The P2P layer at a glance (updated continuously).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct P2pStatus {
    pub inbound: usize,
    pub outbound: usize,
    /// Bans in force.
    pub banned: usize,
    /// Height of the best validated header (the tip's when none is better).
    pub best_header_height: u64,
    /// Progress toward the best header chain while it has more work than
    /// the node's chain.
    pub sync: Option<SyncProgress>,
}

/// Why an operation of the P2P layer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum P2pError {
    #[error("the P2P layer is stopped")]
    Stopped,
    #[error("{0}")]
    InvalidAddress(#[from] addr::AddrParseError),
    #[error("{0}")]
    ConnectFailed(String),
    #[error("the peer refused the connection: it {} ({})", .0.describe(), .1)]
    Refused(RejectCode, String),
    #[error("{0}")]
    NoSuchPeer(String),
    #[error("{0}")]
    InvalidBanTarget(String),
    #[error("{0}")]
    InvalidLinkRule(String),
    #[error("P2P configuration: {0}")]
    Config(String),
    #[error("cannot listen for peers on {addr}: {error}")]
    Listen { addr: SocketAddr, error: String },
}

/// A handle on the running P2P layer.
#[derive(Clone)]
pub struct P2pHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<P2pStatus>,
    /// Where the node accepts connections.
    pub local_addr: SocketAddr,
    /// This node's id (the public half of its node key).
    pub node_id: NodeId,
}

impl P2pHandle {
    /// The current status (peer counts, sync progress).
    pub fn status(&self) -> P2pStatus {
        self.status.borrow().clone()
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(cmd(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.ask(Command::Peers).await.unwrap_or_default()
    }

    /// Connects to `addr` (`host:port`, or `NODEID@host:port` to require
    /// that node), lifting an operator block or a ban on it; returns once
    /// connected, or why not.
    pub async fn add_peer(&self, addr: String) -> Result<PeerInfo, P2pError> {
        self.ask(|tx| Command::AddPeer(addr, tx)).await?
    }

    /// Disconnects matching peers and keeps them away until `add_peer`;
    /// returns how many were disconnected.
    pub async fn disconnect(&self, peer: PeerSelector) -> Result<usize, P2pError> {
        self.ask(|tx| Command::Disconnect(peer, tx)).await?
    }

    pub async fn list_banned(&self) -> Result<Vec<BanView>, P2pError> {
        self.ask(Command::ListBanned).await
    }

    /// Bans `target` (an IP, a subnet, or `ip:port` on loopback) for
    /// `secs` seconds; 0 lifts the ban.
    pub async fn set_ban(&self, target: String, secs: u64) -> Result<(), P2pError> {
        self.ask(|tx| Command::SetBan(target, secs, tx)).await?
    }

    /// Lifts every ban; returns how many there were.
    pub async fn clear_banned(&self) -> Result<usize, P2pError> {
        self.ask(Command::ClearBanned).await
    }

    /// Sets the link rule for the peer listening at `peer` (`None`: every
    /// peer); a clear rule removes it. Returns how many connected peers it
    /// applies to now.
    pub async fn set_link_rule(
        &self,
        peer: Option<SocketAddr>,
        rule: LinkRule,
    ) -> Result<usize, P2pError> {
        self.ask(|tx| Command::SetLinkRule(peer, rule, tx)).await?
    }

    pub async fn link_rules(&self) -> Result<Vec<(Option<SocketAddr>, LinkRule)>, P2pError> {
        self.ask(Command::LinkRules).await
    }
}

/// Who this node is and whom it talks to.
pub struct Identity {
    /// The persistent node key (its public half is the node id).
    pub key: NodeKey,
    /// `--allow-peers`: only these nodes may connect, either way.
    pub allowed: Option<Vec<NodeId>>,
}

/// Starts listening on `listen` and connecting to `peers` (`host:port` or
/// `NODEID@host:port`, and the addresses the store remembers). Returns once
/// the listener is bound.
pub async fn start(
    backend: Arc<dyn ChainBackend>,
    store: Arc<dyn PeerStore>,
    listen: SocketAddr,
    peers: Vec<String>,
    identity: Identity,
    cfg: P2pConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<P2pHandle, P2pError> {
    let mut operator = Vec::new();
    let mut expected_ids = std::collections::HashMap::new();
    for p in backend.network().bootnodes.into_iter().chain(peers) {
        let (id, addr) = manager::parse_peer(&p)?;
        if let Some(id) = id {
            expected_ids.insert(addr.clone(), id);
        }
        operator.push(addr);
    }
    let node_id = identity.key.id();
    let keys = transport::LocalKeys::new(&identity.key);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| P2pError::Listen {
            addr: listen,
            error: e.to_string(),
        })?;
    let local_addr = listener.local_addr().map_err(|e| P2pError::Listen {
        addr: listen,
        error: e.to_string(),
    })?;
    let loader = store.clone();
    let (book_entries, ban_entries) = tokio::task::spawn_blocking(move || {
        (
            loader.load(addrbook::KEY_PREFIX),
            loader.load(bans::KEY_PREFIX),
        )
    })
    .await
    .map_err(|e| P2pError::Config(e.to_string()))?;
    let (conn_tx, conn_rx) = mpsc::channel(8192);
    let (jobs_tx, jobs_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (status_tx, status_rx) = watch::channel(P2pStatus::default());
    let (accept_tx, accept_rx) = mpsc::channel(64);
    let chain_events = backend.subscribe();
    let manager = Manager::new(Setup {
        backend,
        store,
        cfg,
        listen_addr: local_addr,
        peers: operator,
        keys,
        expected_ids,
        allowed: identity.allowed.map(|a| a.into_iter().collect()),
        book_entries,
        ban_entries,
        conn_events: conn_tx,
        status: status_tx,
        jobs_tx,
    })?;
    tokio::spawn(accept_loop(listener, accept_tx, shutdown.clone()));
    tokio::spawn(manager.run(accept_rx, conn_rx, jobs_rx, cmd_rx, chain_events, shutdown));
    tracing::info!("P2P listening on {local_addr} as node {node_id}");
    Ok(P2pHandle {
        commands: cmd_tx,
        status: status_rx,
        local_addr,
        node_id,
    })
}

/// Accepts connections and hands them to the manager. When accepting fails
/// (out of file descriptors), it waits with a growing pause instead of
/// spinning.
async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::Sender<(TcpStream, SocketAddr)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(conn) => {
                pause = Duration::from_millis(10);
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("cannot accept a connection: {e}; pausing {pause:?}");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
