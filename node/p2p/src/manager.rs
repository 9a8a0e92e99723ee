//! The manager: one task that owns every piece of P2P state (peers, the
//! address book, bans, the header tree, the downloader, link rules) and
//! reacts to connection events, results of blocking jobs, the node's chain
//! events, operator commands and a 100 ms tick.
//!
//! # Correctness
//! Nothing here blocks: storage reads, block and transfer processing and
//! store writes run on blocking threads (`spawn_blocking`) and come back as
//! [`Job`] results. Sync and download logic lives in `sync.rs`, gossip in
//! `relay.rs`; both are `impl Manager` blocks over this state.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_consensus::validation::HeaderMeta;
use cairn_consensus::{BlockHash, TxId, Work};
use rand::SeedableRng;
use tokio::net::TcpStream;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

use crate::addr::{NetClass, PeerAddr, classify};
use crate::addrbook::{AddrBook, AddrBookConfig, AddrSource, DialContext, FailureKind, RefuseKind};
use crate::backend::{ChainBackend, ChainEvent, ChainTip, NetworkInfo};
use crate::bans::{
    BanList, BanListConfig, BanOrigin, BanTarget, BanView, Whitelist, auto_ban_target,
};
use crate::config::P2pConfig;
use crate::connection::{self, Admission, Admitted, ConnCtx, ConnEvent, ConnectError, Outbox};
use crate::download::{DownloadConfig, Downloader};
use crate::eviction::{EvictionCandidate, EvictionKey, select_victim};
use crate::headers::{HeaderBudget, HeaderTree, PeerHeaders};
use crate::link::LinkRule;
use crate::message::{Message, RejectCode};
use crate::peer::{CloseReason, Direction, Misbehaviour};
use crate::progress::{RateMeter, SyncProgress};
use crate::recent::Recent;
use crate::store::{PeerStore, StoreOp};
use crate::transport::{LocalKeys, NodeId};
use crate::{P2pError, P2pStatus, PeerInfo, PeerSelector};

/// Most unconnecting header announcements before a peer is dropped.
pub(crate) const MAX_UNCONNECTING: u32 = 10;
/// Transfers one peer may have in flight from us.
pub(crate) const MAX_TXS_IN_FLIGHT: usize = 4096;
/// `GetTxs` requests sent to one peer per tick (100 ms) at most; more
/// wanted transfers wait and go in fuller requests. A peer serves requests
/// one at a time from a queue of 64 and drops a connection that overfills
/// it: a burst of thousands of small announcements must not make us that.
pub(crate) const GETTXS_PER_TICK: usize = 8;

/// A header a peer has shown us (validated).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shown {
    pub hash: BlockHash,
    pub height: u64,
    pub work: Work,
}

impl Shown {
    pub fn of(m: &HeaderMeta) -> Shown {
        Shown {
            hash: m.header.hash(),
            height: m.header.height.0,
            work: m.work,
        }
    }
}

/// An outstanding `GetHeaders`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadersRequest {
    pub since: Instant,
    /// The first locator hash (what an empty answer is measured against).
    pub first: Option<BlockHash>,
    /// Part of the catch-up sync (as opposed to resolving an announcement).
    pub catch_up: bool,
}

/// A connected peer.
pub(crate) struct Peer {
    pub direction: Direction,
    pub remote: SocketAddr,
    /// Where it accepts connections: the address we dialled, or its IP with
    /// the port it advertised.
    pub listen: Option<SocketAddr>,
    /// The address we dialled (outbound).
    pub dial: Option<PeerAddr>,
    /// Proven by the encrypted handshake.
    pub node_id: NodeId,
    pub user_agent: String,
    /// Local to the operator: never banned, exempt from per-IP limits and
    /// eviction.
    pub local: bool,
    pub outbox: Outbox,
    pub kill: Arc<Notify>,
    pub link: watch::Sender<LinkRule>,
    pub connected_at: Instant,
    pub connected_ms: u64,
    /// The work it claimed in its handshake, until its headers show it.
    pub claimed_work: Option<Work>,
    pub claimed_height: u64,
    pub best_known: Option<Shown>,
    /// The height of the best block we announced to it (for display: what
    /// it has from us, as far as we know).
    pub sent_height: u64,
    /// A block it announced (its handshake's best block) that we do not
    /// know yet: once its header is validated, the peer counts as having it.
    pub hint: Option<BlockHash>,
    pub headers: PeerHeaders,
    pub headers_request: Option<HeadersRequest>,
    /// Its answer to our headers request is being validated: it is still
    /// busy with it (asking again now would restart its chain).
    pub headers_checking: bool,
    /// More headers to ask for once the tree has room.
    pub headers_deferred: Option<BlockHash>,
    /// A block it announced that did not connect while our headers request
    /// was out: ask again once that answer is in, unless the answer showed
    /// it (the answer may end before it).
    pub headers_again: Option<BlockHash>,
    pub unconnecting: u32,
    pub known_blocks: Recent<BlockHash>,
    pub known_txs: Recent<TxId>,
    pub txs_in_flight: HashMap<TxId, Instant>,
    /// Transfers to ask for (already counted in `txs_in_flight`), sent as
    /// `GetTxs` when this tick's request budget allows.
    pub txs_to_request: Vec<TxId>,
    /// `GetTxs` requests left to send this tick.
    pub gettxs_budget: usize,
    pub ping: Option<(u64, Instant)>,
    pub last_ping: Instant,
    pub latency_ms: Option<u64>,
    pub min_ping_ms: Option<u64>,
    pub last_block_ms: Option<u64>,
    pub last_tx_ms: Option<u64>,
    pub unrequested: (u32, Instant),
    pub inv_tokens: (u64, Instant),
    pub addrs_answered: bool,
    pub addrs_asked: bool,
    pub addr_tokens: (u64, Instant),
    /// It asked for new blocks as compact blocks (`SendCompact`).
    pub wants_compact: bool,
    /// A compact block from it being rebuilt, waiting for the transfers we
    /// asked it for (since when).
    pub compact: Option<(crate::compact::PartialBlock, Instant)>,
}

impl Peer {
    /// A headers request to it is out, its answer is being checked, or
    /// more of its headers wait for room in the tree: whatever it announced
    /// meanwhile waits for that to end.
    pub(crate) fn headers_busy(&self) -> bool {
        self.headers_request.is_some() || self.headers_checking || self.headers_deferred.is_some()
    }

    /// The address to show and to match operator commands against.
    pub fn address(&self) -> String {
        self.dial
            .as_ref()
            .map(|d| d.to_string())
            .or_else(|| self.listen.map(|l| l.to_string()))
            .unwrap_or_else(|| self.remote.to_string())
    }

    /// The book's address of this peer (dialled, or advertised).
    pub fn book_addr(&self) -> Option<PeerAddr> {
        self.dial.clone().or(self.listen.map(PeerAddr::Ip))
    }

    pub fn info(&self, id: u64) -> PeerInfo {
        PeerInfo {
            id,
            node_id: self.node_id,
            address: self.address(),
            remote: self.remote,
            direction: self.direction,
            height: self
                .best_known
                .map(|s| s.height)
                .unwrap_or(0)
                .max(self.claimed_height)
                .max(self.sent_height),
            best_hash: self.best_known.map(|s| s.hash),
            latency_ms: self.latency_ms,
            user_agent: self.user_agent.clone(),
            local: self.local,
            connected_secs: self.connected_at.elapsed().as_secs(),
            blocks_in_flight: 0,
        }
    }
}

/// A connection not yet admitted.
pub(crate) struct Pending {
    pub direction: Direction,
    pub dial: Option<PeerAddr>,
    /// Where an inbound connection comes from (its handshake slots are
    /// limited per address).
    pub from: Option<std::net::IpAddr>,
}

/// Results of blocking work.
pub(crate) enum Job {
    HelloResolved {
        id: u64,
        best: Option<HeaderMeta>,
    },
    HeadersChecked {
        id: u64,
        result: Result<crate::headers::ValidatedBatch, crate::headers::HeaderBatchError>,
        answer: bool,
        full: bool,
        continues: bool,
    },
    BlocksProcessed {
        blocks: Vec<(BlockHash, u64)>,
        verdicts: Vec<crate::backend::BlockVerdict>,
    },
    TxsUnknown {
        id: u64,
        ids: Vec<TxId>,
    },
    /// Our mempool, to announce to a peer that just connected.
    MempoolIds {
        id: u64,
        ids: Vec<TxId>,
    },
    TxsProcessed {
        id: u64,
        verdicts: Vec<(TxId, crate::backend::TxVerdict)>,
    },
    /// Messages to send (compact relay: built or read on a blocking thread).
    Send(Vec<(u64, crate::message::Message)>),
    /// The pending transfers that match a compact block's short ids.
    CompactMatched {
        id: u64,
        partial: Box<crate::compact::PartialBlock>,
    },
    /// A compact block whose header failed its checks.
    CompactHeader {
        id: u64,
        header: cairn_consensus::BlockHeader,
    },
    /// What the node made of a block rebuilt from a compact block.
    CompactProcessed {
        id: u64,
        header: cairn_consensus::BlockHeader,
        verdict: crate::backend::BlockVerdict,
    },
}

/// Requests from the handle.
pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    AddPeer(String, oneshot::Sender<Result<PeerInfo, P2pError>>),
    Disconnect(PeerSelector, oneshot::Sender<Result<usize, P2pError>>),
    ListBanned(oneshot::Sender<Vec<BanView>>),
    SetBan(String, u64, oneshot::Sender<Result<(), P2pError>>),
    ClearBanned(oneshot::Sender<usize>),
    SetLinkRule(
        Option<SocketAddr>,
        LinkRule,
        oneshot::Sender<Result<usize, P2pError>>,
    ),
    LinkRules(oneshot::Sender<Vec<(Option<SocketAddr>, LinkRule)>>),
}

pub(crate) struct Manager {
    pub backend: Arc<dyn ChainBackend>,
    pub ctx: Arc<ConnCtx>,
    pub cfg: P2pConfig,
    pub network: NetworkInfo,
    pub store: Arc<dyn PeerStore>,
    pub book: AddrBook,
    pub bans: BanList,
    pub whitelist: Whitelist,
    pub local_classes: HashSet<NetClass>,
    pub eviction_key: EvictionKey,
    pub listen_addr: SocketAddr,
    pub peers: HashMap<u64, Peer>,
    /// Connections not admitted yet.
    pub pending: HashMap<u64, Pending>,
    /// Connections we admitted, waiting for the peer's welcome.
    pub half_open: HashMap<u64, Peer>,
    pub next_id: u64,
    pub tree: HeaderTree,
    pub downloader: Downloader,
    pub budget: HeaderBudget,
    /// Link rules by the peer's listen address; `None`: every peer.
    pub link_rules: HashMap<Option<SocketAddr>, LinkRule>,
    pub add_waiters: HashMap<u64, oneshot::Sender<Result<PeerInfo, P2pError>>>,
    /// The node ids the operator named for addresses (`ID@host:port`).
    pub expected_ids: HashMap<PeerAddr, NodeId>,
    /// `--allow-peers`: only these node ids may connect, either way.
    pub allowed: Option<HashSet<NodeId>>,
    pub status: watch::Sender<P2pStatus>,
    pub tip: ChainTip,
    pub jobs_tx: mpsc::Sender<Job>,
    pub rate: RateMeter,
    pub was_syncing: bool,
    pub last_progress_log: Instant,
    pub last_maintenance: Instant,
    pub pending_tx_announce: Vec<(TxId, Option<u64>)>,
    pub rng: rand::rngs::StdRng,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything `start` hands the manager.
pub(crate) struct Setup {
    pub backend: Arc<dyn ChainBackend>,
    pub store: Arc<dyn PeerStore>,
    pub cfg: P2pConfig,
    pub listen_addr: SocketAddr,
    pub peers: Vec<PeerAddr>,
    pub keys: LocalKeys,
    pub expected_ids: HashMap<PeerAddr, NodeId>,
    pub allowed: Option<HashSet<NodeId>>,
    pub book_entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub ban_entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub conn_events: mpsc::Sender<ConnEvent>,
    pub status: watch::Sender<P2pStatus>,
    pub jobs_tx: mpsc::Sender<Job>,
}

impl Manager {
    pub fn new(s: Setup) -> Result<Manager, P2pError> {
        let network = s.backend.network();
        let now = now_ms();
        let whitelist = Whitelist::new(s.cfg.whitelist.iter().copied())
            .map_err(|e| P2pError::Config(e.to_string()))?;
        let mut book = AddrBook::load(
            s.book_entries,
            AddrBookConfig {
                max_outbound_per_source: s.cfg.max_outbound_per_source,
                ..AddrBookConfig::default()
            },
            now,
        );
        let bans = BanList::load(s.ban_entries, BanListConfig::default(), now);
        let mut local_classes = HashSet::new();
        let listen_class = classify(s.listen_addr.ip());
        if matches!(listen_class, NetClass::Loopback | NetClass::Private) {
            local_classes.insert(listen_class);
        }
        if network.is_dev {
            local_classes.insert(NetClass::Loopback);
        }
        for p in &s.peers {
            if let Some(ip) = p.ip() {
                let c = classify(ip.ip());
                if matches!(c, NetClass::Loopback | NetClass::Private) {
                    local_classes.insert(c);
                }
            }
            if let Err(e) = book.add_operator(p.clone(), now) {
                tracing::warn!("peer {p}: {e}");
            }
        }
        let frame_limit = crate::message::frame_limit(network.params.max_block_bytes);
        let ctx = Arc::new(ConnCtx {
            backend: s.backend.clone(),
            network: network.clone(),
            cfg: s.cfg.clone(),
            keys: s.keys,
            listen_port: Some(s.listen_addr.port()),
            frame_limit,
            events: s.conn_events,
        });
        let max_block = network.params.max_block_bytes.max(1);
        let max_in_flight = (s.cfg.download_buffer_bytes / 2 / max_block).clamp(16, 1024);
        let downloader = Downloader::new(DownloadConfig {
            max_in_flight,
            per_peer: s.cfg.per_peer_blocks.min(max_in_flight).max(1),
            window: s.cfg.block_window.max(max_in_flight),
            max_arrived_bytes: s.cfg.download_buffer_bytes / 2,
            timeout_ms: s.cfg.request_timeout_ms,
            stall_ms: s.cfg.stall_ms,
            max_batch: 500,
        });
        let tip = s.backend.tip();
        let mut rng = rand::rngs::StdRng::from_entropy();
        let eviction_key = EvictionKey::random(&mut rng);
        Ok(Manager {
            backend: s.backend,
            ctx,
            budget: HeaderBudget {
                pending: s.cfg.header_budget,
                ..HeaderBudget::default()
            },
            cfg: s.cfg,
            network,
            store: s.store,
            book,
            bans,
            whitelist,
            local_classes,
            eviction_key,
            listen_addr: s.listen_addr,
            peers: HashMap::new(),
            pending: HashMap::new(),
            half_open: HashMap::new(),
            next_id: 1,
            tree: HeaderTree::default(),
            downloader,
            link_rules: HashMap::new(),
            add_waiters: HashMap::new(),
            expected_ids: s.expected_ids,
            allowed: s.allowed,
            status: s.status,
            tip,
            jobs_tx: s.jobs_tx,
            rate: RateMeter::default(),
            was_syncing: false,
            last_progress_log: Instant::now(),
            last_maintenance: Instant::now(),
            pending_tx_announce: Vec::new(),
            rng,
        })
    }

    pub async fn run(
        mut self,
        mut accepted: mpsc::Receiver<(TcpStream, SocketAddr)>,
        mut conn_events: mpsc::Receiver<ConnEvent>,
        mut jobs: mpsc::Receiver<Job>,
        mut commands: mpsc::Receiver<Command>,
        mut chain_events: broadcast::Receiver<ChainEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some((stream, remote)) = accepted.recv() => self.on_accept(stream, remote),
                Some(ev) = conn_events.recv() => self.on_conn_event(ev),
                Some(job) = jobs.recv() => self.on_job(job),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                ev = chain_events.recv() => match ev {
                    Ok(first) => {
                        self.on_chain_event(first);
                        while let Ok(more) = chain_events.try_recv() {
                            self.on_chain_event(more);
                        }
                        self.flush_tx_announcements();
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("P2P missed {n} chain events");
                        self.on_events_lost();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        for p in self.peers.values() {
            p.kill.notify_one();
        }
        self.persist();
        tracing::info!("P2P stopped");
    }

    // ----- helpers -----

    /// Runs `f` on a blocking thread; its result comes back as a job.
    pub fn spawn_job(&self, f: impl FnOnce() -> Option<Job> + Send + 'static) {
        let tx = self.jobs_tx.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(job) = f() {
                let _ = tx.blocking_send(job);
            }
        });
    }

    /// Queues a message to a peer; a peer that does not read is dropped.
    pub fn send(&mut self, id: u64, msg: Message) {
        let Some(p) = self.peers.get(&id) else { return };
        if p.outbox.send(&msg).is_err() {
            self.misbehaved(id, Misbehaviour::SlowReader);
        }
    }

    /// The work the node knows a chain with: its tip, or the best header.
    pub fn known_work(&self) -> Work {
        match self.tree.best() {
            Some(b) if b.work > self.tip.work => b.work,
            _ => self.tip.work,
        }
    }

    /// Whether loopback peers are the operator's own (dev networks).
    fn loopback_local(&self) -> bool {
        self.network.is_dev && self.cfg.dev_loopback_is_local
    }

    fn is_local_addr(&self, remote: &SocketAddr, book: Option<&PeerAddr>) -> bool {
        self.whitelist.is_whitelisted(remote)
            || (self.loopback_local() && classify(remote.ip()) == NetClass::Loopback)
            || book.is_some_and(|a| self.book.is_operator(a))
    }

    /// Closes a connection; `reason` is logged.
    pub fn disconnect(&mut self, id: u64, reason: &str) {
        if let Some(p) = self.peers.get(&id) {
            tracing::info!("disconnecting peer {id} ({}): {reason}", p.address());
            p.kill.notify_one();
        }
    }

    /// A peer misbehaved: disconnect it, and ban it for clear abuse unless
    /// it is local to the operator.
    pub fn misbehaved(&mut self, id: u64, m: Misbehaviour) {
        let Some(p) = self.peers.get(&id) else { return };
        metrics::counter!("cairn_p2p_disconnects_total", "reason" => m.label()).increment(1);
        let (remote, listen, local, address) = (p.remote, p.listen, p.local, p.address());
        let node = p.node_id;
        if m.bans() && !local {
            let now = now_ms();
            let target = auto_ban_target(&remote, listen);
            let until = now.saturating_add(self.cfg.ban_secs.saturating_mul(1000));
            // the reason names the node: net_listBanned shows who it was
            let reason = format!("node {node}: {m}");
            if self
                .bans
                .ban(target, until, &reason, BanOrigin::Auto, now)
                .is_ok()
            {
                metrics::counter!("cairn_bans_total").increment(1);
                tracing::warn!(
                    "banned {target} ({address}, node {}) for {} s: {m}",
                    node.short(),
                    self.cfg.ban_secs
                );
            }
        } else {
            tracing::warn!(
                "peer {id} ({address}, node {}) misbehaved: {m}",
                node.short()
            );
        }
        self.disconnect(id, &m.to_string());
    }

    fn peer_counts(&self) -> (usize, usize) {
        let inbound = self
            .peers
            .values()
            .filter(|p| p.direction == Direction::Inbound)
            .count();
        (inbound, self.peers.len() - inbound)
    }

    fn rule_for(&self, listen: Option<SocketAddr>) -> LinkRule {
        listen
            .and_then(|l| self.link_rules.get(&Some(l)))
            .or_else(|| self.link_rules.get(&None))
            .copied()
            .unwrap_or_default()
    }

    fn persist(&mut self) {
        let mut ops: Vec<StoreOp> = self.book.take_writes();
        ops.extend(self.bans.take_writes());
        if ops.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.apply(ops));
    }

    /// Publishes the status (the node's `/metrics` reads its level gauges
    /// from it when scraped).
    pub fn publish_status(&mut self, sync: Option<SyncProgress>) {
        let (inbound, outbound) = self.peer_counts();
        let best_header_height = self
            .tree
            .best()
            .filter(|b| b.work > self.tip.work)
            .map_or(self.tip.height, |b| b.header.height.0);
        self.status.send_replace(P2pStatus {
            inbound,
            outbound,
            banned: self.bans.len(),
            best_header_height,
            sync,
        });
    }

    // ----- connections -----

    fn on_accept(&mut self, stream: TcpStream, remote: SocketAddr) {
        if self.pending.len() + self.half_open.len() >= self.cfg.max_pending_handshakes {
            tracing::debug!("refusing {remote}: too many connections in their handshake");
            return;
        }
        let now = now_ms();
        let local = self.is_local_addr(&remote, None);
        if !local && !remote.ip().is_loopback() && self.bans.is_banned(&remote, now).is_some() {
            tracing::debug!("refusing banned {remote}");
            return;
        }
        // one address may hold only its share of the handshake slots, so a
        // flood of idle connections from it cannot keep everyone else out
        let exempt =
            local || (self.loopback_local() && classify(remote.ip()) == NetClass::Loopback);
        let share = self.cfg.max_inbound_per_ip.max(1);
        if !exempt {
            let ip = remote.ip();
            let held = self.pending.values().filter(|p| p.from == Some(ip)).count()
                + self
                    .half_open
                    .values()
                    .filter(|p| p.direction == Direction::Inbound && p.remote.ip() == ip)
                    .count();
            if held >= share {
                tracing::debug!(
                    "refusing {remote}: {held} of its connections are in their handshake"
                );
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending {
                direction: Direction::Inbound,
                dial: None,
                from: Some(remote.ip()),
            },
        );
        tokio::spawn(connection::run(
            self.ctx.clone(),
            stream,
            remote,
            Direction::Inbound,
            id,
            None,
        ));
    }

    /// Dials `addr`; returns the connection id.
    pub fn dial(&mut self, addr: PeerAddr) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let expected = self.expected_ids.get(&addr).copied();
        self.pending.insert(
            id,
            Pending {
                direction: Direction::Outbound,
                dial: Some(addr.clone()),
                from: None,
            },
        );
        tokio::spawn(connection::dial(
            self.ctx.clone(),
            id,
            addr.to_string(),
            expected,
        ));
        id
    }

    /// Addresses being dialled: before the hellos, or waiting for the
    /// welcome.
    fn dialing(&self) -> impl Iterator<Item = &PeerAddr> {
        self.pending
            .values()
            .filter_map(|p| p.dial.as_ref())
            .chain(self.half_open.values().filter_map(|p| p.dial.as_ref()))
    }

    fn on_conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Handshaked {
                id,
                remote,
                node_id,
                hello,
                reply,
            } => self.on_handshaked(id, remote, node_id, *hello, reply),
            ConnEvent::Established { id } => self.on_established(id),
            ConnEvent::Failed { id, error } => self.on_failed(id, error),
            ConnEvent::Message { id, msg } => self.on_message(id, msg),
            ConnEvent::Closed { id, reason } => self.on_closed(id, reason),
        }
    }

    fn on_failed(&mut self, id: u64, error: ConnectError) {
        let p = match (self.pending.remove(&id), self.half_open.remove(&id)) {
            (Some(p), _) => p,
            (None, Some(peer)) => Pending {
                direction: peer.direction,
                dial: peer.dial,
                from: None,
            },
            (None, None) => return,
        };
        let now = now_ms();
        if let Some(addr) = &p.dial {
            let kind = match &error {
                ConnectError::Unreachable(_) | ConnectError::Timeout(_) => FailureKind::Unreachable,
                ConnectError::Closed | ConnectError::Handshake(_) => FailureKind::Closed,
                ConnectError::WrongNode { .. } => FailureKind::Refused(RefuseKind::Other),
                ConnectError::Refused(r) => match r.code {
                    RejectCode::WrongNetwork | RejectCode::ProtocolVersion => {
                        FailureKind::WrongNetwork
                    }
                    RejectCode::SelfConnection => FailureKind::SelfConnection,
                    code => FailureKind::Refused(refuse_kind(code)),
                },
                ConnectError::RefusedByUs(
                    RejectCode::WrongNetwork | RejectCode::ProtocolVersion,
                    _,
                ) => FailureKind::WrongNetwork,
                ConnectError::RefusedByUs(code, _) => FailureKind::Refused(refuse_kind(*code)),
                ConnectError::Abuse(_) => FailureKind::Closed,
            };
            let next = self.book.mark_failure(addr, kind, now);
            let wait = next.map(|t| t.saturating_sub(now) / 1000).unwrap_or(0);
            match &error {
                // the operator wants to know why a peer will not have us
                ConnectError::Refused(_)
                | ConnectError::RefusedByUs(..)
                | ConnectError::WrongNode { .. } => {
                    tracing::info!("connection to {addr} failed: {error}; next attempt in {wait} s")
                }
                _ => tracing::debug!(
                    "connection to {addr} failed: {error}; next attempt in {wait} s"
                ),
            }
        } else {
            tracing::debug!("inbound connection {id} failed: {error}");
        }
        if let ConnectError::RefusedByUs(RejectCode::WrongNetwork, reason) = &error {
            tracing::warn!(
                "peer {} is on {reason}; disconnected",
                p.dial
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| format!("connection {id}"))
            );
        }
        if let Some(w) = self.add_waiters.remove(&id) {
            let e = match error {
                ConnectError::Refused(r) => P2pError::Refused(r.code, r.reason),
                ConnectError::RefusedByUs(code, reason) => P2pError::Refused(code, reason),
                other => P2pError::ConnectFailed(other.to_string()),
            };
            let _ = w.send(Err(e));
        }
    }

    fn on_handshaked(
        &mut self,
        id: u64,
        remote: SocketAddr,
        node_id: NodeId,
        hello: crate::message::Hello,
        reply: oneshot::Sender<Admission>,
    ) {
        let Some(pending) = self.pending.remove(&id) else {
            let _ = reply.send(Admission::Refuse(
                RejectCode::ShuttingDown,
                "unknown".into(),
            ));
            return;
        };
        let now = now_ms();
        let listen = match pending.dial.as_ref().and_then(PeerAddr::ip) {
            Some(a) => Some(a),
            None => hello
                .listen_port
                .filter(|p| *p != 0)
                .map(|port| SocketAddr::new(remote.ip(), port)),
        };
        let book_addr = pending.dial.clone().or(listen.map(PeerAddr::Ip));
        let local = self.is_local_addr(&remote, book_addr.as_ref());
        let refusal = self.admission_refusal(&pending, node_id, remote, listen, local, now);
        if let Some((code, reason)) = refusal {
            if let Some(addr) = &pending.dial {
                let kind = match code {
                    RejectCode::SelfConnection => FailureKind::SelfConnection,
                    code => FailureKind::Refused(refuse_kind(code)),
                };
                self.book.mark_failure(addr, kind, now);
            }
            tracing::debug!("refusing connection {id} from {remote}: {reason}");
            if let Some(w) = self.add_waiters.remove(&id) {
                // the operator asked for a node we are already connected to
                let existing = (code == RejectCode::Duplicate)
                    .then(|| self.peers.iter().find(|(_, p)| p.node_id == node_id))
                    .flatten();
                let _ = w.send(match existing {
                    Some((pid, p)) => Ok(p.info(*pid)),
                    None => Err(P2pError::Refused(code, reason.clone())),
                });
            }
            let _ = reply.send(Admission::Refuse(code, reason));
            return;
        }
        let (outbox, out_rx) = Outbox::new(self.cfg.send_queue_bytes);
        let (link_tx, link_rx) = watch::channel(self.rule_for(listen));
        let kill = Arc::new(Notify::new());
        let admitted = Admitted {
            outbox: outbox.clone(),
            out_rx,
            link: link_rx,
            kill: kill.clone(),
        };
        if reply.send(Admission::Admit(admitted)).is_err() {
            return;
        }
        let mut known_blocks = Recent::new(16_384);
        known_blocks.insert(hello.best_hash);
        let instant = Instant::now();
        let peer = Peer {
            direction: pending.direction,
            remote,
            listen,
            dial: pending.dial.clone(),
            node_id,
            user_agent: hello.user_agent.clone(),
            local,
            outbox,
            kill,
            link: link_tx,
            connected_at: instant,
            connected_ms: now,
            claimed_work: Some(hello.best_work),
            claimed_height: hello.best_height,
            best_known: None,
            sent_height: 0,
            hint: Some(hello.best_hash),
            headers: PeerHeaders::default(),
            headers_request: None,
            headers_checking: false,
            headers_deferred: None,
            headers_again: None,
            unconnecting: 0,
            known_blocks,
            known_txs: Recent::new(65_536),
            txs_in_flight: HashMap::new(),
            txs_to_request: Vec::new(),
            gettxs_budget: GETTXS_PER_TICK,
            ping: None,
            last_ping: instant,
            latency_ms: None,
            min_ping_ms: None,
            last_block_ms: None,
            last_tx_ms: None,
            unrequested: (0, instant),
            inv_tokens: (u64::from(self.cfg.inv_per_sec) * 4, instant),
            addrs_answered: false,
            addrs_asked: false,
            addr_tokens: (10, instant),
            wants_compact: false,
            compact: None,
        };
        self.half_open.insert(id, peer);
    }

    /// Both sides welcomed the connection: the peer is up.
    fn on_established(&mut self, id: u64) {
        let Some(mut peer) = self.half_open.remove(&id) else {
            return;
        };
        let now = now_ms();
        peer.connected_at = Instant::now();
        peer.connected_ms = now;
        if let Some(addr) = &peer.dial {
            self.book.mark_success(addr, now);
        }
        tracing::info!(
            "peer {id} connected: {} ({}, node {}), claims height {}",
            peer.address(),
            peer.direction.as_str(),
            peer.node_id.short(),
            peer.claimed_height
        );
        let info = peer.info(id);
        let outbound = peer.direction == Direction::Outbound;
        let chosen = outbound || peer.local;
        let best_hash = peer.hint.unwrap_or_default();
        self.peers.insert(id, peer);
        if let Some(w) = self.add_waiters.remove(&id) {
            let _ = w.send(Ok(info));
        }
        if outbound {
            if let Some(p) = self.peers.get_mut(&id) {
                p.addrs_asked = true;
            }
            self.send(id, Message::GetAddrs);
        }
        self.send(id, Message::SendCompact);
        // tell it what we hold: transfers gossiped while it was away (or
        // on the other side of a partition) would otherwise stay here
        let backend = self.backend.clone();
        self.spawn_job(move || {
            let ids = backend.mempool_ids(crate::relay::ANNOUNCE_ON_CONNECT);
            (!ids.is_empty()).then_some(Job::MempoolIds { id, ids })
        });
        // what it claims only says whom to ask: find out whether we know its tip
        if let Some(m) = self.tree.get(&best_hash).copied() {
            self.on_job(Job::HelloResolved { id, best: Some(m) });
        } else {
            let backend = self.backend.clone();
            self.spawn_job(move || {
                let best = backend
                    .header(&best_hash)
                    .ok()
                    .flatten()
                    .filter(|s| !s.invalid)
                    .map(|s| s.meta);
                Some(Job::HelloResolved { id, best })
            });
        }
        if chosen {
            // a peer we chose that claims more: ask now rather than at the
            // next tick (a peer that dialled us waits for the tick, so that
            // a claim never makes a stranger go first)
            self.start_catch_up();
        }
        let progress = self.current_progress();
        self.publish_status(progress);
    }

    /// Why a connection that finished its handshake is refused, if it is.
    fn admission_refusal(
        &mut self,
        pending: &Pending,
        node_id: NodeId,
        remote: SocketAddr,
        listen: Option<SocketAddr>,
        local: bool,
        now: u64,
    ) -> Option<(RejectCode, String)> {
        if node_id == self.ctx.keys.id {
            return Some((RejectCode::SelfConnection, "connected to ourselves".into()));
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&node_id)
        {
            return Some((
                RejectCode::NotAllowed,
                format!("node {node_id} is not in the allow list"),
            ));
        }
        // automatic bans never hold the operator's own peers; the
        // operator's own bans hold everyone
        let ban = self
            .bans
            .is_banned(&remote, now)
            .or_else(|| listen.and_then(|l| self.bans.is_banned(&l, now)));
        if let Some(b) = ban
            && (!local || b.origin == BanOrigin::Operator)
        {
            return Some((
                RejectCode::Banned,
                format!("banned until {} ms", b.until_ms),
            ));
        }
        if self.rule_for(listen).drop {
            return Some((
                RejectCode::Partitioned,
                "partitioned by a link fault".into(),
            ));
        }
        let inbound = pending.direction == Direction::Inbound;
        if inbound && listen.is_some_and(|l| self.book.is_blocked(&PeerAddr::Ip(l))) {
            return Some((
                RejectCode::OperatorDisconnected,
                "until its operator calls net_addPeer for this node".into(),
            ));
        }
        // one connection per node: of two connections between the same
        // nodes, both sides keep the one the lower node id opened
        let existing = self
            .peers
            .iter()
            .chain(self.half_open.iter())
            .find(|(_, p)| p.node_id == node_id)
            .map(|(id, p)| (*id, p.direction));
        if let Some((other, direction)) = existing {
            let opened_by_lower =
                (pending.direction == Direction::Outbound) == (self.ctx.keys.id < node_id);
            if direction == pending.direction || !opened_by_lower {
                return Some((
                    RejectCode::Duplicate,
                    format!("already connected to node {}", node_id.short()),
                ));
            }
            self.disconnect(other, "a newer connection to the same node replaces it");
            if let Some(p) = self.half_open.remove(&other) {
                p.kill.notify_one();
            }
            self.remove_peer(other);
        }
        if inbound {
            let exempt =
                local || (self.loopback_local() && classify(remote.ip()) == NetClass::Loopback);
            if !exempt {
                let same_ip = self
                    .peers
                    .values()
                    .filter(|p| p.direction == Direction::Inbound && p.remote.ip() == remote.ip())
                    .count();
                if same_ip >= self.cfg.max_inbound_per_ip {
                    return Some((
                        RejectCode::Full,
                        format!("{same_ip} inbound connections from this address already"),
                    ));
                }
            }
            let (n_in, _) = self.peer_counts();
            if n_in >= self.cfg.max_inbound && !self.evict_one() {
                return Some((RejectCode::Full, "no inbound slot free".into()));
            }
        }
        None
    }

    /// Makes room for an inbound peer, as Bitcoin Core does; false when
    /// every inbound peer is protected.
    fn evict_one(&mut self) -> bool {
        let candidates: Vec<EvictionCandidate> = self
            .peers
            .iter()
            .filter(|(_, p)| p.direction == Direction::Inbound)
            .map(|(id, p)| EvictionCandidate {
                id: *id,
                group: crate::addr::net_group(&p.remote),
                connected_ms: p.connected_ms,
                min_ping_ms: p.min_ping_ms,
                last_block_ms: p.last_block_ms,
                last_tx_ms: p.last_tx_ms,
                protected: p.local,
            })
            .collect();
        match select_victim(&candidates, &self.eviction_key) {
            Some(victim) => {
                metrics::counter!("cairn_p2p_disconnects_total", "reason" => "evicted")
                    .increment(1);
                self.disconnect(victim, "evicted to make room for a new inbound peer");
                // it no longer counts, even before its task ends
                self.remove_peer(victim);
                true
            }
            None => false,
        }
    }

    fn on_closed(&mut self, id: u64, reason: CloseReason) {
        if let CloseReason::Misbehaved(m) = &reason {
            // the connection task found it: apply the penalty first
            self.misbehaved(id, m.clone());
        }
        if let Some(p) = self.peers.get(&id) {
            tracing::info!("peer {id} ({}) disconnected: {reason}", p.address());
            // a peer that hangs up right after the handshake is not a success
            // to redial at once
            if p.connected_at.elapsed() < Duration::from_secs(10)
                && let Some(addr) = p.dial.clone()
            {
                self.book.mark_failure(&addr, FailureKind::Closed, now_ms());
            }
        }
        self.remove_peer(id);
    }

    fn remove_peer(&mut self, id: u64) {
        if self.peers.remove(&id).is_none() {
            return;
        }
        self.downloader.on_peer_gone(id);
        self.schedule_blocks();
        let progress = self.current_progress();
        self.publish_status(progress);
    }

    // ----- messages -----

    fn on_message(&mut self, id: u64, msg: Message) {
        if !self.peers.contains_key(&id) {
            return;
        }
        match msg {
            Message::Ping(n) => self.send(id, Message::Pong(n)),
            Message::Pong(n) => {
                if let Some(p) = self.peers.get_mut(&id)
                    && let Some((sent, at)) = p.ping
                    && sent == n
                {
                    let ms = at.elapsed().as_millis() as u64;
                    p.latency_ms = Some(ms);
                    p.min_ping_ms = Some(p.min_ping_ms.map_or(ms, |m| m.min(ms)));
                    p.ping = None;
                }
            }
            Message::GetAddrs => self.on_get_addrs(id),
            Message::Addrs(list) => self.on_addrs(id, list),
            Message::Headers(h) => self.on_headers(id, h),
            Message::NewHeaders(h) => self.on_new_headers(id, h),
            Message::Block(b) => self.on_block(id, b),
            Message::NotFound(hashes) => {
                self.compact_not_found(id, &hashes);
                self.downloader.on_not_found(id, &hashes);
                self.schedule_blocks();
            }
            Message::InvTxs(ids) => self.on_inv_txs(id, ids),
            Message::Txs(txs) => self.on_txs(id, txs),
            Message::SendCompact => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.wants_compact = true;
                }
            }
            Message::CompactBlock(c) => self.on_compact_block(id, *c),
            Message::GetBlockTxs(r) => self.on_get_block_txs(id, r),
            Message::BlockTxs(b) => self.on_block_txs(id, b),
            Message::Reject(r) => self.disconnect(
                id,
                &format!("the peer {} ({})", r.code.describe(), r.reason),
            ),
            // requests are answered by the connection's server; a second
            // hello is caught by the connection task
            Message::Welcome
            | Message::Hello(_)
            | Message::GetHeaders(_)
            | Message::GetBlocks(_)
            | Message::GetTxs(_) => {}
        }
    }

    // ----- operator commands -----

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Peers(reply) => {
                let mut v: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(id, p)| {
                        let mut i = p.info(*id);
                        i.blocks_in_flight = self.downloader.in_flight_from(*id);
                        i
                    })
                    .collect();
                v.sort_by_key(|p| p.id);
                let _ = reply.send(v);
            }
            Command::AddPeer(text, reply) => self.add_peer(text, reply),
            Command::Disconnect(sel, reply) => {
                let _ = reply.send(self.operator_disconnect(sel));
            }
            Command::ListBanned(reply) => {
                self.bans.expire(now_ms());
                let _ = reply.send(self.bans.list());
            }
            Command::SetBan(target, secs, reply) => {
                let _ = reply.send(self.set_ban(&target, secs));
                self.persist();
            }
            Command::ClearBanned(reply) => {
                let n = self.bans.len();
                self.bans.clear();
                self.persist();
                let _ = reply.send(n);
            }
            Command::SetLinkRule(target, rule, reply) => {
                let _ = reply.send(Ok(self.set_link_rule(target, rule)));
            }
            Command::LinkRules(reply) => {
                let mut v: Vec<(Option<SocketAddr>, LinkRule)> =
                    self.link_rules.iter().map(|(k, r)| (*k, *r)).collect();
                v.sort_by_key(|(k, _)| *k);
                let _ = reply.send(v);
            }
        }
    }

    fn add_peer(&mut self, text: String, reply: oneshot::Sender<Result<PeerInfo, P2pError>>) {
        let (expected, addr) = match parse_peer(&text) {
            Ok(a) => a,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if let Some(id) = expected {
            self.expected_ids.insert(addr.clone(), id);
        }
        let now = now_ms();
        // the operator's explicit wish wins over an earlier disconnect or ban
        if let Err(e) = self.book.add_operator(addr.clone(), now) {
            let _ = reply.send(Err(P2pError::ConnectFailed(e.to_string())));
            return;
        }
        self.book.unblock(&addr);
        if let Some(ip) = addr.ip() {
            if let Some(c) = Some(classify(ip.ip()))
                && matches!(c, NetClass::Loopback | NetClass::Private)
            {
                self.local_classes.insert(c);
            }
            for target in [BanTarget::Exact(ip), BanTarget::ip(ip.ip())] {
                if self.bans.unban(&target) {
                    tracing::info!("net_addPeer {addr}: lifted the ban on {target}");
                }
            }
        }
        self.persist();
        // an inbound peer's listen address is only its claim: dial, and a
        // duplicate found by node id answers with the existing peer
        let existing = self.peers.iter().find(|(_, p)| {
            p.dial.as_ref() == Some(&addr) && expected.is_none_or(|e| e == p.node_id)
        });
        if let Some((id, p)) = existing {
            let _ = reply.send(Ok(p.info(*id)));
            return;
        }
        if let Some(l) = addr.ip()
            && self.rule_for(Some(l)).drop
        {
            let _ = reply.send(Err(P2pError::Refused(
                RejectCode::Partitioned,
                "a link fault partitions this node from it; heal first".into(),
            )));
            return;
        }
        let id = self.dial(addr);
        self.add_waiters.insert(id, reply);
    }

    fn operator_disconnect(&mut self, sel: PeerSelector) -> Result<usize, P2pError> {
        let found: Vec<u64> = self
            .peers
            .iter()
            .filter(|(id, p)| match &sel {
                PeerSelector::Id(n) => *id == n,
                PeerSelector::Address(a) => {
                    p.address() == *a
                        || p.remote.to_string() == *a
                        || p.listen.is_some_and(|l| l.to_string() == *a)
                }
            })
            .map(|(id, _)| *id)
            .collect();
        if found.is_empty() {
            return Err(P2pError::NoSuchPeer(match sel {
                PeerSelector::Id(n) => format!("no connected peer has id {n}"),
                PeerSelector::Address(a) => format!("no connected peer has address {a}"),
            }));
        }
        for id in &found {
            if let Some(addr) = self.peers.get(id).and_then(Peer::book_addr)
                && let Err(e) = self.book.block(&addr, now_ms())
            {
                tracing::warn!("cannot keep {addr} away: {e}");
            }
            self.disconnect(*id, "asked by the operator (net_disconnectPeer)");
            self.remove_peer(*id);
        }
        self.persist();
        Ok(found.len())
    }

    fn set_ban(&mut self, target: &str, secs: u64) -> Result<(), P2pError> {
        let target: BanTarget = target
            .parse()
            .map_err(|e: crate::bans::BanTargetParseError| {
                P2pError::InvalidBanTarget(e.to_string())
            })?;
        let now = now_ms();
        if secs == 0 {
            self.bans.unban(&target);
            return Ok(());
        }
        let until = now.saturating_add(secs.saturating_mul(1000));
        self.bans
            .ban(
                target,
                until,
                "set by the operator",
                BanOrigin::Operator,
                now,
            )
            .map_err(|e| P2pError::InvalidBanTarget(e.to_string()))?;
        // banned peers that are connected go now, local or not: the operator said so
        let victims: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                target.matches(&p.remote) || p.listen.is_some_and(|l| target.matches(&l))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in victims {
            self.disconnect(id, &format!("banned by the operator ({target})"));
            self.remove_peer(id);
        }
        Ok(())
    }

    fn set_link_rule(&mut self, target: Option<SocketAddr>, rule: LinkRule) -> usize {
        if rule.is_clear() {
            self.link_rules.remove(&target);
        } else {
            self.link_rules.insert(target, rule);
        }
        if !rule.drop {
            // a healed link reconnects at once, without the backoff the partition caused
            if let Some(t) = target {
                self.book.reset_backoff(&PeerAddr::Ip(t));
            } else {
                self.book.reset_all_backoff();
            }
        }
        let mut affected = Vec::new();
        for (id, p) in &self.peers {
            if target.is_none() || p.listen == target {
                let r = self.rule_for(p.listen);
                let _ = p.link.send(r);
                affected.push((*id, r.drop));
            }
        }
        for (id, drop) in &affected {
            if *drop {
                self.disconnect(*id, "partitioned by a link fault");
                self.remove_peer(*id);
            }
        }
        affected.len()
    }

    // ----- the tick -----

    fn on_tick(&mut self) {
        let now = Instant::now();
        let request_timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let ping_interval = Duration::from_millis(self.cfg.ping_interval_ms);
        let ping_timeout = Duration::from_millis(self.cfg.ping_timeout_ms);
        let mut stalled: Vec<(u64, &'static str)> = Vec::new();
        let mut pings = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if p.headers_request
                .is_some_and(|r| now.duration_since(r.since) > request_timeout)
            {
                stalled.push((*id, "a headers request"));
                continue;
            }
            if p.ping
                .is_some_and(|(_, t)| now.duration_since(t) > ping_timeout)
            {
                stalled.push((*id, "a ping"));
                continue;
            }
            p.txs_in_flight
                .retain(|_, t| now.duration_since(*t) < request_timeout);
            let in_flight = &p.txs_in_flight;
            p.txs_to_request.retain(|t| in_flight.contains_key(t));
            p.gettxs_budget = GETTXS_PER_TICK;
            if p.ping.is_none() && now.duration_since(p.last_ping) > ping_interval {
                let n: u64 = rand::Rng::r#gen(&mut self.rng);
                p.ping = Some((n, now));
                p.last_ping = now;
                pings.push((*id, n));
            }
        }
        let (_, path) = self.tree.path();
        let path = path.clone();
        for peer in self.downloader.stalled(&path, now_ms()) {
            stalled.push((peer, "a block request"));
        }
        for (id, what) in stalled {
            self.misbehaved(id, Misbehaviour::Stalled(what));
            self.remove_peer(id);
        }
        for (id, n) in pings {
            self.send(id, Message::Ping(n));
        }
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.send_tx_requests(id);
        }
        self.compact_tick(now);
        self.maintain_outbound();
        self.sync_tick();
        self.flush_tx_announcements();
        if now.duration_since(self.last_maintenance) > Duration::from_secs(10) {
            self.last_maintenance = now;
            self.bans.expire(now_ms());
            self.persist();
        }
    }

    fn maintain_outbound(&mut self) {
        let (_, outbound) = self.peer_counts();
        let dialing = self.dialing().count();
        let want = self.cfg.target_outbound.saturating_sub(outbound + dialing);
        if want == 0 {
            return;
        }
        let mut connected: HashSet<PeerAddr> = self.dialing().cloned().collect();
        let mut per_source: HashMap<crate::addr::NetGroup, usize> = HashMap::new();
        let mut groups: HashSet<crate::addr::NetGroup> = HashSet::new();
        // dials under way count as connections: a peer whose addresses answer
        // the handshake slowly would otherwise get a new dial every tick
        for a in self.dialing() {
            if let Some(src) = self.book.source_of(a) {
                *per_source.entry(src).or_default() += 1;
            }
            if let Some(ip) = a.ip() {
                groups.insert(crate::addr::net_group(&ip));
            }
        }
        for p in self.peers.values() {
            if let Some(a) = p.book_addr() {
                if p.direction == Direction::Outbound {
                    if let Some(src) = self.book.source_of(&a) {
                        *per_source.entry(src).or_default() += 1;
                    }
                    groups.insert(crate::addr::net_group(&p.remote));
                    connected.insert(a);
                } else if p.local {
                    connected.insert(a);
                }
            }
        }
        connected.insert(PeerAddr::Ip(SocketAddr::new(
            [127, 0, 0, 1].into(),
            self.listen_addr.port(),
        )));
        connected.insert(PeerAddr::Ip(self.listen_addr));
        let now = now_ms();
        let bans = &self.bans;
        let rules = &self.link_rules;
        let is_banned = |a: &SocketAddr| {
            bans.is_banned(a, now).is_some()
                || rules.get(&Some(*a)).is_some_and(|r| r.drop)
                || rules.get(&None).is_some_and(|r| r.drop)
        };
        let ctx = DialContext {
            connected_or_dialing: &connected,
            is_banned: &is_banned,
            local_classes: &self.local_classes,
            outbound_per_source: &per_source,
            outbound_groups: &groups,
        };
        let candidates = self.book.candidates(now, &ctx, &mut self.rng);
        for addr in candidates.into_iter().take(want.min(4)) {
            self.dial(addr);
        }
    }
}

/// `host:port` or `NODEID@host:port`.
pub(crate) fn parse_peer(text: &str) -> Result<(Option<NodeId>, PeerAddr), P2pError> {
    match text.split_once('@') {
        Some((id, addr)) => {
            let id = id.parse::<NodeId>().map_err(P2pError::Config)?;
            Ok((Some(id), addr.parse()?))
        }
        None => Ok((None, text.parse()?)),
    }
}

fn refuse_kind(code: RejectCode) -> RefuseKind {
    match code {
        RejectCode::Full => RefuseKind::Full,
        RejectCode::OperatorDisconnected => RefuseKind::Disconnected,
        RejectCode::Banned => RefuseKind::Banned,
        RejectCode::Duplicate => RefuseKind::Duplicate,
        _ => RefuseKind::Other,
    }
}

/// The source an address learned from `peer` is filed under.
pub(crate) fn source_for(p: &Peer) -> AddrSource {
    AddrSource::Peer(p.listen.unwrap_or(p.remote))
}
