//! The peer-to-peer layer (tokio, TCP).
//!
//! One manager task owns every piece of P2P state: the peers, the address
//! book, the header sync and the block download window. Connection tasks
//! ([`conn`]) turn frames into [`Event`]s for it and carry its messages out
//! through bounded queues; anything that touches the chain or the store runs
//! on blocking threads and reports back as an event. Every queue, window,
//! pool and book is bounded.
//!
//! - Gossip by announcement: new block hashes and transfer ids go to the
//!   peers not known to have them; peers ask for what they lack.
//! - Sync: headers first from a block locator ([`sync`]), then bodies from
//!   every peer that has them, within a bounded window; a peer that does not
//!   answer in time is dropped and its requests go to others.
//! - Misbehaviour: invalid blocks or headers, frames over the limit,
//!   undecodable messages and floods disconnect; clear abuse (score 100)
//!   bans for `ban_secs`, persisted. Stale blocks and transfers that lost a
//!   race cost nothing.

pub mod addrbook;
pub mod conn;
pub mod message;
pub mod sync;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::{PeerRef, PeerView, SyncProgress};
use cairn_consensus::{Block, BlockHash, TxId, Work};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::chain::{ChainError, Outcome, Processed};
use crate::node::{Event as NodeEvent, Node, Source, SubmitError, now_ms};
use crate::store::ChainStore;
use addrbook::AddrBook;
use conn::{ConnShared, Registered};
use message::{Hello, MAX_ADDRS, MAX_INV, Message};
use sync::{HeaderError, HeaderSync};

/// Unrequested items (known blocks, transfers) a peer may send per minute.
const MAX_USELESS_PER_MINUTE: u32 = 2_000;

/// P2P limits and timings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Listen for and make connections at all.
    pub enabled: bool,
    /// Outbound connections to keep.
    pub target_outbound: usize,
    /// Inbound connections accepted at most.
    pub max_inbound: usize,
    /// A request (headers, blocks) unanswered this long marks the peer stalled.
    pub request_timeout_ms: u64,
    pub handshake_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// How long a ban lasts.
    pub ban_secs: u64,
    /// Blocks in flight at once, over all peers.
    pub block_window: usize,
    /// Blocks in flight at once from one peer.
    pub per_peer_window: usize,
    /// Messages queued to one peer before it counts as too slow.
    pub send_queue: usize,
    /// Messages per second a peer may send on average, and in a burst.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            enabled: true,
            target_outbound: 8,
            max_inbound: 32,
            request_timeout_ms: 15_000,
            handshake_timeout_ms: 10_000,
            ping_interval_ms: 10_000,
            ping_timeout_ms: 30_000,
            ban_secs: 24 * 3600,
            block_window: 512,
            per_peer_window: 64,
            send_queue: 4096,
            rate_per_sec: 5_000,
            rate_burst: 20_000,
        }
    }
}

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// What connection tasks and blocking jobs tell the manager.
pub enum Event {
    Connected {
        id: u64,
        remote: SocketAddr,
        direction: Direction,
        dial_addr: Option<String>,
        hello: Box<Hello>,
        conn: Registered,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Rejected {
        remote: SocketAddr,
        dial_addr: Option<String>,
        reason: String,
        ban: bool,
    },
    DialFailed {
        addr: String,
        reason: String,
    },
    Message {
        id: u64,
        msg: Message,
    },
    Misbehaved {
        id: u64,
        score: u32,
        reason: String,
    },
    Closed {
        id: u64,
        reason: String,
    },
    Headers {
        id: u64,
        result: Result<usize, HeaderError>,
        full: bool,
    },
    Processed {
        id: Option<u64>,
        results: Vec<(BlockHash, Result<Processed, ChainError>)>,
        synced: bool,
    },
    TxResults {
        id: u64,
        penalties: Vec<(TxId, String)>,
    },
}

/// Requests from the RPC server.
pub enum Command {
    Peers(oneshot::Sender<Vec<PeerView>>),
    AddPeer(String, oneshot::Sender<Result<(), String>>),
    Disconnect(PeerRef, oneshot::Sender<Result<(), String>>),
}

/// A handle on the running P2P layer.
#[derive(Clone)]
pub struct P2pHandle {
    commands: mpsc::Sender<Command>,
    /// Where the node accepts connections.
    pub local_addr: SocketAddr,
}

impl P2pHandle {
    pub async fn peers(&self) -> Vec<PeerView> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Peers(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Connects to `addr`; returns once connected or failed.
    pub async fn add_peer(&self, addr: String) -> Result<(), String> {
        self.ask(|tx| Command::AddPeer(addr, tx)).await
    }

    pub async fn disconnect(&self, peer: PeerRef) -> Result<(), String> {
        self.ask(|tx| Command::Disconnect(peer, tx)).await
    }

    /// Sends a command and waits for its answer.
    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Command,
    ) -> Result<(), String> {
        let stopped = || "the P2P layer is stopped".to_string();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// A set that forgets its oldest members beyond `max`.
struct Recent<T: std::hash::Hash + Eq + Copy> {
    set: HashSet<T>,
    order: VecDeque<T>,
    max: usize,
}

impl<T: std::hash::Hash + Eq + Copy> Recent<T> {
    fn new(max: usize) -> Self {
        Recent {
            set: HashSet::new(),
            order: VecDeque::new(),
            max,
        }
    }
    fn insert(&mut self, v: T) {
        if self.set.insert(v) {
            self.order.push_back(v);
            if self.order.len() > self.max
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
    fn contains(&self, v: &T) -> bool {
        self.set.contains(v)
    }
}

struct Peer {
    remote: SocketAddr,
    direction: Direction,
    /// The address we dialled, or the one the peer says it listens on.
    address: Option<String>,
    best_height: u64,
    best_work: Work,
    out: mpsc::Sender<Message>,
    kill: Arc<tokio::sync::Notify>,
    known_blocks: Recent<BlockHash>,
    known_txs: Recent<TxId>,
    blocks_in_flight: HashMap<BlockHash, Instant>,
    txs_in_flight: HashMap<TxId, Instant>,
    headers_since: Option<Instant>,
    ping: Option<(u64, Instant)>,
    last_ping: Instant,
    latency_ms: Option<u64>,
    score: u32,
    /// Unrequested blocks we already had and unrequested transfers, this minute.
    useless: u32,
    useless_since: Instant,
}

impl Peer {
    fn view(&self, id: u64) -> PeerView {
        PeerView {
            id,
            address: self
                .address
                .clone()
                .unwrap_or_else(|| self.remote.to_string()),
            direction: match self.direction {
                Direction::Inbound => "inbound".into(),
                Direction::Outbound => "outbound".into(),
            },
            height: self.best_height,
            latency_ms: self.latency_ms,
        }
    }
}

struct Manager {
    node: Arc<Node>,
    cfg: P2pConfig,
    shared: Arc<ConnShared>,
    peers: HashMap<u64, Peer>,
    nonces: HashMap<u64, u64>,
    book: AddrBook,
    sync: Arc<Mutex<HeaderSync>>,
    next_id: u64,
    dialing: HashSet<String>,
    waiting_adds: HashMap<String, Vec<oneshot::Sender<Result<(), String>>>>,
    /// Downloaded blocks waiting to be submitted in order, with when they came.
    arrived: HashMap<BlockHash, (u64, Block, u64, Instant)>,
    /// Blocks handed to the chain and not yet reported back.
    processing: HashSet<BlockHash>,
    submitting: bool,
    headers_from: Option<u64>,
    progress: VecDeque<(Instant, u64)>,
    last_progress_log: Instant,
    last_ban_expiry: Instant,
    was_syncing: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts listening and connecting. Returns when the listener is bound.
pub async fn start(
    node: Arc<Node>,
    listen: SocketAddr,
    peers: Vec<String>,
    cfg: P2pConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<P2pHandle> {
    let listener = TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let (events_tx, events_rx) = mpsc::channel(8192);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let frame_limit = message::frame_limit(node.network.params.max_block_bytes);
    let shared = Arc::new(ConnShared {
        node: node.clone(),
        nonce: rand::random(),
        listen_port: Some(local_addr.port()),
        frame_limit,
        handshake_timeout: Duration::from_millis(cfg.handshake_timeout_ms),
        send_queue: cfg.send_queue,
        rate_per_sec: cfg.rate_per_sec,
        rate_burst: cfg.rate_burst,
        events: events_tx.clone(),
    });
    let mut book = AddrBook::load(Some(node.store().tree().clone()), now_ms());
    for p in node.network.bootnodes.iter().chain(peers.iter()) {
        book.add(p, true);
    }
    let manager = Manager {
        node: node.clone(),
        cfg,
        shared: shared.clone(),
        peers: HashMap::new(),
        nonces: HashMap::new(),
        book,
        sync: Arc::new(Mutex::new(HeaderSync::default())),
        next_id: 1,
        dialing: HashSet::new(),
        waiting_adds: HashMap::new(),
        arrived: HashMap::new(),
        processing: HashSet::new(),
        submitting: false,
        headers_from: None,
        progress: VecDeque::new(),
        last_progress_log: Instant::now(),
        last_ban_expiry: Instant::now(),
        was_syncing: false,
    };
    let node_events = node.subscribe_events();
    tokio::spawn(manager.run(listener, events_rx, cmd_rx, node_events, shutdown));
    tracing::info!("P2P listening on {local_addr}");
    Ok(P2pHandle {
        commands: cmd_tx,
        local_addr,
    })
}

impl Manager {
    async fn run(
        mut self,
        listener: TcpListener,
        mut events: mpsc::Receiver<Event>,
        mut commands: mpsc::Receiver<Command>,
        mut node_events: broadcast::Receiver<NodeEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => {
                    if let Ok((stream, remote)) = accepted {
                        self.accept(stream, remote);
                    }
                }
                Some(ev) = events.recv() => self.on_event(ev),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                ev = node_events.recv() => match ev {
                    Ok(first) => {
                        let mut batch = vec![first];
                        while let Ok(more) = node_events.try_recv() {
                            batch.push(more);
                        }
                        self.announce(batch);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("P2P missed {n} node events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        for p in self.peers.values() {
            p.kill.notify_one();
        }
        tracing::info!("P2P stopped");
    }

    fn peer_count_changed(&self) {
        self.node.peer_count.store(
            self.peers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn accept(&mut self, stream: TcpStream, remote: SocketAddr) {
        let now = now_ms();
        if self.book.is_banned(&remote, now) {
            tracing::debug!("refusing banned peer {remote}");
            return;
        }
        let inbound = self
            .peers
            .values()
            .filter(|p| p.direction == Direction::Inbound)
            .count();
        if inbound >= self.cfg.max_inbound {
            tracing::debug!("refusing {remote}: {inbound} inbound peers already");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        tokio::spawn(conn::run(
            stream,
            remote,
            Direction::Inbound,
            None,
            id,
            self.shared.clone(),
        ));
    }

    fn dial(&mut self, addr: String) {
        if !self.dialing.insert(addr.clone()) {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let shared = self.shared.clone();
        let timeout = Duration::from_millis(self.cfg.handshake_timeout_ms);
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(stream)) => {
                    let remote = stream
                        .peer_addr()
                        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
                    conn::run(stream, remote, Direction::Outbound, Some(addr), id, shared).await;
                }
                Ok(Err(e)) => {
                    let _ = shared
                        .events
                        .send(Event::DialFailed {
                            addr,
                            reason: e.to_string(),
                        })
                        .await;
                }
                Err(_) => {
                    let _ = shared
                        .events
                        .send(Event::DialFailed {
                            addr,
                            reason: "connection timed out".into(),
                        })
                        .await;
                }
            }
        });
    }

    fn finish_add(&mut self, addr: &str, result: Result<(), String>) {
        if let Some(waiters) = self.waiting_adds.remove(addr) {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    fn send(&mut self, id: u64, msg: Message) {
        let Some(p) = self.peers.get(&id) else { return };
        if p.out.try_send(msg).is_err() {
            tracing::info!("peer {id} is too slow to read its messages; disconnecting");
            p.kill.notify_one();
        }
    }

    fn disconnect(&mut self, id: u64, reason: &str) {
        if let Some(p) = self.peers.get(&id) {
            tracing::info!("disconnecting peer {id} ({}): {reason}", p.remote);
            p.kill.notify_one();
        }
    }

    fn penalize(&mut self, id: u64, score: u32, reason: &str) {
        if score == 0 {
            return;
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.score = p.score.saturating_add(score);
        tracing::warn!(
            "peer {id} ({}) misbehaved (+{score}, now {}): {reason}",
            p.remote,
            p.score
        );
        if p.score >= 100 {
            let until = now_ms() + self.cfg.ban_secs * 1000;
            let remote = p.remote;
            let address = p.address.clone();
            self.book.ban(&remote, until);
            if let Some(a) = address.and_then(|a| a.parse::<SocketAddr>().ok()) {
                self.book.ban(&a, until);
            }
            tracing::warn!("banned {remote} for {} s", self.cfg.ban_secs);
            self.disconnect(id, "banned");
        }
    }

    fn our_work(&self) -> Work {
        let tip = self.node.tip().work;
        match lock(&self.sync).best() {
            Some((_, w, _)) => w.max(tip),
            None => tip,
        }
    }

    fn request_headers(&mut self, id: u64) {
        if self.headers_from.is_some() || lock(&self.sync).is_full() {
            return;
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.headers_since = Some(Instant::now());
        self.headers_from = Some(id);
        let out = p.out.clone();
        let node = self.node.clone();
        let sync = self.sync.clone();
        tokio::task::spawn_blocking(move || {
            let tip = node.tip().header.height.0;
            let loc = sync::locator(node.store(), &lock(&sync), tip);
            if let Ok(loc) = loc {
                let _ = out.try_send(Message::GetHeaders(loc));
            }
        });
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected {
                id,
                remote,
                direction,
                dial_addr,
                hello,
                conn,
                reply,
            } => self.on_connected(id, remote, direction, dial_addr, *hello, conn, reply),
            Event::Rejected {
                remote,
                dial_addr,
                reason,
                ban,
            } => {
                let now = now_ms();
                if ban {
                    tracing::warn!("banning {remote}: {reason}");
                    self.book.ban(&remote, now + self.cfg.ban_secs * 1000);
                } else {
                    tracing::info!("connection with {remote} refused: {reason}");
                }
                if let Some(a) = dial_addr {
                    self.dialing.remove(&a);
                    if reason.contains("ourselves") || reason.contains("another network") {
                        self.book.defer(&a, now, 3_600_000);
                    } else {
                        self.book.mark_failure(&a, now);
                    }
                    self.finish_add(&a, Err(reason));
                }
            }
            Event::DialFailed { addr, reason } => {
                self.dialing.remove(&addr);
                self.book.mark_failure(&addr, now_ms());
                tracing::debug!("cannot connect to {addr}: {reason}");
                self.finish_add(&addr, Err(format!("cannot connect to {addr}: {reason}")));
            }
            Event::Message { id, msg } => self.on_message(id, msg),
            Event::Misbehaved { id, score, reason } => self.penalize(id, score, &reason),
            Event::Closed { id, reason } => {
                if let Some(p) = self.peers.remove(&id) {
                    self.nonces.retain(|_, v| *v != id);
                    if self.headers_from == Some(id) {
                        self.headers_from = None;
                    }
                    tracing::info!("peer {id} ({}) disconnected: {reason}", p.remote);
                    self.peer_count_changed();
                }
            }
            Event::Headers { id, result, full } => {
                if self.headers_from == Some(id) {
                    self.headers_from = None;
                }
                if let Some(p) = self.peers.get_mut(&id) {
                    p.headers_since = None;
                }
                match result {
                    Ok(added) => {
                        if let Some((_, work, height)) = lock(&self.sync).best()
                            && let Some(p) = self.peers.get_mut(&id)
                            && work > p.best_work
                        {
                            p.best_work = work;
                            p.best_height = height;
                        }
                        if full && added > 0 {
                            self.request_headers(id);
                        }
                        self.schedule();
                    }
                    Err(e) => self.penalize(id, e.penalty(), &e.to_string()),
                }
            }
            Event::Processed {
                id,
                results,
                synced,
            } => self.on_processed(id, results, synced),
            Event::TxResults { id, penalties } => {
                for (txid, reason) in penalties {
                    self.penalize(id, 100, &format!("invalid transfer {txid}: {reason}"));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_connected(
        &mut self,
        id: u64,
        remote: SocketAddr,
        direction: Direction,
        dial_addr: Option<String>,
        hello: Hello,
        conn: Registered,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        if let Some(a) = &dial_addr {
            self.dialing.remove(a);
        }
        let listen = hello
            .listen_port
            .map(|port| SocketAddr::new(remote.ip(), port).to_string());
        let address = dial_addr.clone().or(listen.clone());
        let refuse = if self.nonces.contains_key(&hello.node_nonce) {
            Some("already connected to this node".to_string())
        } else if direction == Direction::Inbound
            && self
                .peers
                .values()
                .filter(|p| p.direction == Direction::Inbound)
                .count()
                >= self.cfg.max_inbound
        {
            Some("too many inbound peers".to_string())
        } else if address.as_deref().is_some_and(|a| self.book.is_blocked(a)) {
            Some("disconnected by the operator".to_string())
        } else {
            None
        };
        if let Some(reason) = refuse {
            let _ = reply.send(Err(reason.clone()));
            if let Some(a) = &dial_addr {
                // a duplicate counts as success for whoever asked to add it
                let r = if reason.starts_with("already") {
                    Ok(())
                } else {
                    Err(reason)
                };
                self.finish_add(a, r);
            }
            return;
        }
        if reply.send(Ok(())).is_err() {
            return;
        }
        let now = now_ms();
        if let Some(a) = &dial_addr {
            self.book.mark_success(a, now);
        } else if let Some(l) = &listen {
            self.book.add(l, false);
        }
        tracing::info!(
            "peer {id} connected: {} ({}), height {}",
            address.as_deref().unwrap_or(&remote.to_string()),
            if direction == Direction::Inbound {
                "inbound"
            } else {
                "outbound"
            },
            hello.best_height
        );
        self.nonces.insert(hello.node_nonce, id);
        let mut known_blocks = Recent::new(16_384);
        known_blocks.insert(hello.best_hash);
        self.peers.insert(
            id,
            Peer {
                remote,
                direction,
                address,
                best_height: hello.best_height,
                best_work: hello.best_work,
                out: conn.out,
                kill: conn.kill,
                known_blocks,
                known_txs: Recent::new(65_536),
                blocks_in_flight: HashMap::new(),
                txs_in_flight: HashMap::new(),
                headers_since: None,
                ping: None,
                last_ping: Instant::now(),
                latency_ms: None,
                score: 0,
                useless: 0,
                useless_since: Instant::now(),
            },
        );
        self.peer_count_changed();
        self.send(id, Message::GetAddrs);
        if let Some(a) = dial_addr {
            self.finish_add(&a, Ok(()));
        }
        if hello.best_work > self.our_work() {
            self.request_headers(id);
        }
    }

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
                    p.latency_ms = Some(at.elapsed().as_millis() as u64);
                    p.ping = None;
                }
            }
            Message::GetAddrs => {
                let addrs = self.book.sample(MAX_ADDRS);
                self.send(id, Message::Addrs(addrs));
            }
            Message::Addrs(list) => {
                for a in list.iter().take(MAX_ADDRS) {
                    self.book.add(a, false);
                }
            }
            Message::InvBlocks(hashes) => self.on_inv_blocks(id, hashes),
            Message::InvTxs(ids) => self.on_inv_txs(id, ids),
            Message::Headers(headers) => {
                let requested = self
                    .peers
                    .get(&id)
                    .is_some_and(|p| p.headers_since.is_some());
                if !requested {
                    // unsolicited headers: likely a new tip announced this way; ignore
                    return;
                }
                let full = headers.len() == message::MAX_HEADERS;
                let node = self.node.clone();
                let sync = self.sync.clone();
                let events = self.shared.events.clone();
                tokio::task::spawn_blocking(move || {
                    let result =
                        lock(&sync).add(node.store(), &node.network.params, &headers, now_ms());
                    let _ = events.blocking_send(Event::Headers { id, result, full });
                });
            }
            Message::Block(block) => self.on_block(id, *block),
            Message::NotFound(hashes) => {
                tracing::debug!("peer {id} does not have {} requested blocks", hashes.len());
                if let Some(p) = self.peers.get_mut(&id) {
                    for h in hashes {
                        p.blocks_in_flight.remove(&h);
                    }
                    // it does not have what it claimed: ask others
                    p.best_height = p.best_height.min(self.node.tip().header.height.0);
                }
            }
            Message::Txs(mut txs) => {
                let mut unrequested = 0u32;
                if let Some(p) = self.peers.get_mut(&id) {
                    txs.retain(|t| {
                        let tid = t.id();
                        p.known_txs.insert(tid);
                        let asked = p.txs_in_flight.remove(&tid).is_some();
                        if !asked {
                            unrequested += 1;
                        }
                        asked
                    });
                }
                if unrequested > 0 {
                    self.count_useless(id, unrequested);
                }
                if txs.is_empty() {
                    return;
                }
                let node = self.node.clone();
                let events = self.shared.events.clone();
                tokio::task::spawn_blocking(move || {
                    let mut penalties = Vec::new();
                    for tx in txs {
                        let txid = tx.id();
                        if let Err(SubmitError::Transfer(e)) = node.submit_transfer(tx, Some(id)) {
                            penalties.push((txid, e.to_string()));
                        }
                    }
                    if !penalties.is_empty() {
                        let _ = events.blocking_send(Event::TxResults { id, penalties });
                    }
                });
            }
            Message::Hello(_) => self.penalize(id, 100, "a second hello"),
            Message::Reject(reason) => self.disconnect(id, &format!("the peer refused: {reason}")),
            Message::GetHeaders(_) | Message::GetBlocks(_) | Message::GetTxs(_) => {}
        }
    }

    /// Counts unrequested data; too much of it in a minute is a flood.
    fn count_useless(&mut self, id: u64, n: u32) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.useless_since.elapsed() > Duration::from_secs(60) {
            p.useless = 0;
            p.useless_since = Instant::now();
        }
        p.useless = p.useless.saturating_add(n);
        if p.useless > MAX_USELESS_PER_MINUTE {
            self.disconnect(id, "flood: too much unrequested data");
        }
    }

    fn block_known(&self, hash: &BlockHash) -> bool {
        self.arrived.contains_key(hash)
            || self.processing.contains(hash)
            || self.node.store().index_entry(hash).ok().flatten().is_some()
            || self
                .peers
                .values()
                .any(|p| p.blocks_in_flight.contains_key(hash))
    }

    fn on_inv_blocks(&mut self, id: u64, hashes: Vec<BlockHash>) {
        let wanted: Vec<BlockHash> = hashes
            .iter()
            .filter(|h| !self.block_known(h))
            .copied()
            .collect();
        // blocks we already have tell us how far the peer is
        let best_known = hashes
            .iter()
            .filter_map(|h| self.node.store().index_entry(h).ok().flatten())
            .max_by_key(|e| e.work);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        for h in &hashes {
            p.known_blocks.insert(*h);
        }
        if let Some(e) = best_known
            && e.work > p.best_work
        {
            p.best_work = e.work;
            p.best_height = e.header.height.0;
        }
        if wanted.is_empty() {
            return;
        }
        let now = Instant::now();
        for h in &wanted {
            p.blocks_in_flight.insert(*h, now);
        }
        self.send(id, Message::GetBlocks(wanted));
    }

    fn on_inv_txs(&mut self, id: u64, ids: Vec<TxId>) {
        let in_pool: Vec<bool> = self
            .node
            .with_mempool(|pool| ids.iter().map(|t| pool.contains(t)).collect());
        let asked_elsewhere: HashSet<TxId> = self
            .peers
            .values()
            .flat_map(|p| p.txs_in_flight.keys().copied())
            .collect();
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let mut wanted = Vec::new();
        for (t, known) in ids.iter().zip(in_pool) {
            p.known_txs.insert(*t);
            if !known && !asked_elsewhere.contains(t) && p.txs_in_flight.len() < MAX_INV {
                p.txs_in_flight.insert(*t, now);
                wanted.push(*t);
            }
        }
        if !wanted.is_empty() {
            self.send(id, Message::GetTxs(wanted));
        }
    }

    fn on_block(&mut self, id: u64, block: Block) {
        let hash = block.hash();
        let height = block.header.height.0;
        let mut requested = false;
        if let Some(p) = self.peers.get_mut(&id) {
            requested = p.blocks_in_flight.remove(&hash).is_some();
            p.known_blocks.insert(hash);
            p.known_blocks.insert(block.header.parent);
            if height > p.best_height {
                p.best_height = height;
            }
        }
        if self.arrived.contains_key(&hash) || self.processing.contains(&hash) {
            return;
        }
        if !requested
            && self
                .node
                .store()
                .index_entry(&hash)
                .ok()
                .flatten()
                .is_some()
        {
            self.count_useless(id, 1);
            return;
        }
        let parent = block.header.parent;
        let parent_ready = self.arrived.contains_key(&parent)
            || self.processing.contains(&parent)
            || self
                .node
                .store()
                .index_entry(&parent)
                .ok()
                .flatten()
                .is_some();
        let on_sync_path = requested && lock(&self.sync).contains(&hash);
        if parent_ready || on_sync_path {
            // blocks of the header path wait here for their parents, in height order
            self.arrived
                .insert(hash, (height, block, id, Instant::now()));
            self.submit_arrived();
            // keep the peer's pipeline full
            if self
                .peers
                .get(&id)
                .is_some_and(|p| p.blocks_in_flight.len() < self.cfg.per_peer_window / 2)
            {
                self.schedule();
            }
        } else {
            // a block on a path we do not know: let the chain keep it as an
            // orphan, and ask the sender for headers
            self.submit(Some(id), vec![block], false);
        }
    }

    /// Submits the downloaded blocks that connect, in height order, as one
    /// batch; blocks that waited too long for a parent that never came go
    /// to the chain's orphan pool instead.
    fn submit_arrived(&mut self) {
        if self.submitting || self.arrived.is_empty() {
            return;
        }
        let ready_parent = |m: &Self, parent: &BlockHash| {
            m.processing.contains(parent)
                || m.node.store().index_entry(parent).ok().flatten().is_some()
        };
        let mut ready: Vec<(u64, BlockHash)> = Vec::new();
        let mut connected: HashSet<BlockHash> = HashSet::new();
        let mut by_height: Vec<(u64, BlockHash, BlockHash)> = self
            .arrived
            .iter()
            .map(|(h, (height, b, _, _))| (*height, *h, b.header.parent))
            .collect();
        by_height.sort();
        for (height, hash, parent) in &by_height {
            if connected.contains(parent) || ready_parent(self, parent) {
                connected.insert(*hash);
                ready.push((*height, *hash));
                if ready.len() >= 500 {
                    break;
                }
            }
        }
        if ready.is_empty() {
            let patience = Duration::from_millis(self.cfg.request_timeout_ms * 2);
            let stale: Vec<BlockHash> = self
                .arrived
                .iter()
                .filter(|(_, (_, _, _, at))| at.elapsed() > patience)
                .map(|(h, _)| *h)
                .collect();
            for h in stale {
                if let Some((_, b, peer, _)) = self.arrived.remove(&h) {
                    self.submit(Some(peer), vec![b], false);
                }
            }
            return;
        }
        let mut blocks = Vec::with_capacity(ready.len());
        let mut source = None;
        for (_, h) in ready {
            if let Some((_, b, peer, _)) = self.arrived.remove(&h) {
                source.get_or_insert(peer);
                self.processing.insert(h);
                blocks.push(b);
            }
        }
        self.submit(source, blocks, true);
    }

    fn submit(&mut self, id: Option<u64>, blocks: Vec<Block>, synced: bool) {
        if synced {
            self.submitting = true;
        }
        for b in &blocks {
            self.processing.insert(b.hash());
        }
        let node = self.node.clone();
        let events = self.shared.events.clone();
        tokio::task::spawn_blocking(move || {
            let hashes: Vec<BlockHash> = blocks.iter().map(|b| b.hash()).collect();
            let source = id.map_or(Source::Rpc, Source::Peer);
            let results = node.submit_blocks(blocks, source);
            let _ = events.blocking_send(Event::Processed {
                id,
                results: hashes.into_iter().zip(results).collect(),
                synced,
            });
        });
    }

    fn on_processed(
        &mut self,
        id: Option<u64>,
        results: Vec<(BlockHash, Result<Processed, ChainError>)>,
        synced: bool,
    ) {
        if synced {
            self.submitting = false;
        }
        for (h, _) in &results {
            self.processing.remove(h);
        }
        let mut want_headers = false;
        for (hash, r) in &results {
            match r {
                Ok(p) => {
                    if let Outcome::Orphan { .. } = p.outcome {
                        want_headers = true;
                    }
                }
                Err(e) => {
                    let penalty = match e {
                        ChainError::Invalid { error, .. } if !error.is_permanent() => 0,
                        ChainError::Invalid { .. }
                        | ChainError::KnownInvalid { .. }
                        | ChainError::InvalidAncestor { .. } => 100,
                        ChainError::Store(_) | ChainError::Inconsistent(_) => 0,
                    };
                    if let Some(id) = id {
                        self.penalize(id, penalty, &format!("block {hash}: {e}"));
                    }
                }
            }
        }
        if want_headers && let Some(id) = id {
            self.request_headers(id);
        }
        // stored now: the blocks that are not orphans, and whatever joined the chain
        let mut done: Vec<BlockHash> = Vec::new();
        for (h, r) in &results {
            if let Ok(p) = r {
                if !matches!(p.outcome, Outcome::Orphan { .. }) {
                    done.push(*h);
                }
                done.extend(p.tip_change.connected.iter().copied());
            }
        }
        lock(&self.sync).mark_done(&done);
        self.submit_arrived();
        self.schedule();
    }

    /// Assigns missing blocks of the best header chain to peers.
    fn schedule(&mut self) {
        let in_flight: usize = self.peers.values().map(|p| p.blocks_in_flight.len()).sum();
        let budget = self
            .cfg
            .block_window
            .saturating_sub(in_flight + self.arrived.len() + self.processing.len());
        if budget == 0 {
            return;
        }
        let missing = lock(&self.sync).missing(
            self.cfg.block_window + in_flight + self.arrived.len() + self.processing.len(),
        );
        let taken: HashSet<BlockHash> = self
            .peers
            .values()
            .flat_map(|p| p.blocks_in_flight.keys().copied())
            .chain(self.arrived.keys().copied())
            .chain(self.processing.iter().copied())
            .collect();
        let mut requests: HashMap<u64, Vec<BlockHash>> = HashMap::new();
        let mut budget = budget;
        for (height, hash) in missing {
            if budget == 0 {
                break;
            }
            if taken.contains(&hash) {
                continue;
            }
            // the peer with the fewest blocks in flight that has this height
            let choice = self
                .peers
                .iter()
                .filter(|(_, p)| p.best_height >= height)
                .map(|(id, p)| {
                    (
                        p.blocks_in_flight.len() + requests.get(id).map_or(0, Vec::len),
                        *id,
                    )
                })
                .filter(|(load, _)| *load < self.cfg.per_peer_window)
                .min();
            let Some((_, id)) = choice else { break };
            requests.entry(id).or_default().push(hash);
            budget -= 1;
        }
        let now = Instant::now();
        if !requests.is_empty() {
            tracing::debug!(
                "requesting {} blocks from {} peers ({} in flight, {} waiting)",
                requests.values().map(Vec::len).sum::<usize>(),
                requests.len(),
                in_flight,
                self.arrived.len()
            );
        }
        for (id, hashes) in requests {
            if let Some(p) = self.peers.get_mut(&id) {
                for h in &hashes {
                    p.blocks_in_flight.insert(*h, now);
                }
            }
            for chunk in hashes.chunks(128) {
                self.send(id, Message::GetBlocks(chunk.to_vec()));
            }
        }
    }

    fn announce(&mut self, events: Vec<NodeEvent>) {
        let tip = self.node.tip().hash;
        let syncing = self.node.sync_progress().is_some();
        let mut blocks = Vec::new();
        let mut txs: Vec<(TxId, Option<u64>)> = Vec::new();
        for e in events {
            match e {
                NodeEvent::BlockConnected { hash, .. } => {
                    if hash == tip && !syncing {
                        blocks.push(hash);
                    }
                }
                NodeEvent::TransferAccepted { id, from_peer } => txs.push((id, from_peer)),
            }
        }
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let b: Vec<BlockHash> = blocks
                .iter()
                .filter(|h| !p.known_blocks.contains(h))
                .copied()
                .collect();
            for h in &b {
                p.known_blocks.insert(*h);
            }
            let t: Vec<TxId> = txs
                .iter()
                .filter(|(t, from)| *from != Some(id) && !p.known_txs.contains(t))
                .map(|(t, _)| *t)
                .collect();
            for x in &t {
                p.known_txs.insert(*x);
            }
            if !b.is_empty() {
                self.send(id, Message::InvBlocks(b));
            }
            for chunk in t.chunks(MAX_INV) {
                self.send(id, Message::InvTxs(chunk.to_vec()));
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Peers(reply) => {
                let mut v: Vec<PeerView> = self.peers.iter().map(|(id, p)| p.view(*id)).collect();
                v.sort_by_key(|p| p.id);
                let _ = reply.send(v);
            }
            Command::AddPeer(addr, reply) => {
                if let Err(e) = cairn_genesis::check_host_port(&addr) {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.book.add(&addr, true);
                if self
                    .peers
                    .values()
                    .any(|p| p.address.as_deref() == Some(addr.as_str()))
                {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.waiting_adds
                    .entry(addr.clone())
                    .or_default()
                    .push(reply);
                self.dial(addr);
            }
            Command::Disconnect(target, reply) => {
                let found: Vec<u64> = self
                    .peers
                    .iter()
                    .filter(|(id, p)| match &target {
                        PeerRef::Id(n) => *id == n,
                        PeerRef::Address(a) => {
                            p.address.as_deref() == Some(a.as_str()) || p.remote.to_string() == *a
                        }
                    })
                    .map(|(id, _)| *id)
                    .collect();
                if found.is_empty() {
                    let _ = reply.send(Err("no connected peer matches".to_string()));
                    return;
                }
                for id in found {
                    if let Some(a) = self.peers.get(&id).and_then(|p| p.address.clone()) {
                        self.book.block(&a);
                    }
                    self.disconnect(id, "asked by the operator");
                }
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let request_timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let ping_interval = Duration::from_millis(self.cfg.ping_interval_ms);
        let ping_timeout = Duration::from_millis(self.cfg.ping_timeout_ms);
        let mut stalled = Vec::new();
        let mut pings = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            let late_block = p
                .blocks_in_flight
                .values()
                .any(|t| now.duration_since(*t) > request_timeout);
            let late_headers = p
                .headers_since
                .is_some_and(|t| now.duration_since(t) > request_timeout);
            let late_pong = p
                .ping
                .is_some_and(|(_, t)| now.duration_since(t) > ping_timeout);
            if late_block || late_headers || late_pong {
                stalled.push(*id);
                continue;
            }
            p.txs_in_flight
                .retain(|_, t| now.duration_since(*t) < request_timeout);
            if p.ping.is_none() && now.duration_since(p.last_ping) > ping_interval {
                let n: u64 = rand::random();
                p.ping = Some((n, now));
                p.last_ping = now;
                pings.push((*id, n));
            }
        }
        for id in stalled {
            // the peer stays connected only if it answers; its requests go to others
            if let Some(p) = self.peers.get_mut(&id) {
                p.blocks_in_flight.clear();
                p.headers_since = None;
            }
            if self.headers_from == Some(id) {
                self.headers_from = None;
            }
            self.disconnect(id, "stalled: a request went unanswered");
            self.peers.remove(&id);
            self.nonces.retain(|_, v| *v != id);
            self.peer_count_changed();
        }
        for (id, n) in pings {
            self.send(id, Message::Ping(n));
        }
        // keep enough outbound connections
        let outbound = self
            .peers
            .values()
            .filter(|p| p.direction == Direction::Outbound)
            .count();
        let want = self
            .cfg
            .target_outbound
            .saturating_sub(outbound + self.dialing.len());
        if want > 0 {
            let mut exclude: HashSet<String> = self
                .peers
                .values()
                .filter_map(|p| p.address.clone())
                .collect();
            exclude.extend(self.dialing.iter().cloned());
            exclude.insert(
                SocketAddr::new([127, 0, 0, 1].into(), self.shared.listen_port.unwrap_or(0))
                    .to_string(),
            );
            for a in self
                .book
                .candidates(now_ms(), &exclude)
                .into_iter()
                .take(want.min(4))
            {
                self.dial(a);
            }
        }
        // sync: ask the peer with the most work for headers
        if self.headers_from.is_none() {
            let ours = self.our_work();
            let best = self
                .peers
                .iter()
                .filter(|(_, p)| p.best_work > ours)
                .max_by_key(|(_, p)| p.best_work)
                .map(|(id, _)| *id);
            if let Some(id) = best {
                self.request_headers(id);
            }
        }
        self.schedule();
        self.submit_arrived();
        self.report_progress();
        if now.duration_since(self.last_ban_expiry) > Duration::from_secs(60) {
            self.book.expire_bans(now_ms());
            self.last_ban_expiry = now;
        }
    }

    fn report_progress(&mut self) {
        let now = Instant::now();
        let height = self.node.tip().header.height.0;
        let target = self
            .peers
            .values()
            .map(|p| p.best_height)
            .chain(lock(&self.sync).best().map(|(_, _, h)| h))
            .max()
            .unwrap_or(0);
        self.progress.push_back((now, height));
        while self.progress.len() > 2
            && self
                .progress
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(10))
        {
            self.progress.pop_front();
        }
        let syncing = target > height + 1;
        if !syncing {
            if self.was_syncing {
                tracing::info!("synced: height {height}");
                self.node.set_sync_progress(None);
                // tips are not announced while syncing: announce where we ended
                let tip = self.node.tip().hash;
                self.announce(vec![NodeEvent::BlockConnected { hash: tip, height }]);
            }
            self.was_syncing = false;
            return;
        }
        let rate = match (self.progress.front(), self.progress.back()) {
            (Some((t0, h0)), Some((t1, h1))) if t1 > t0 => {
                (h1.saturating_sub(*h0)) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let remaining = target - height;
        let progress = SyncProgress {
            height,
            target_height: target,
            blocks_per_sec: rate as u64,
            eta_secs: (rate >= 1.0).then(|| (remaining as f64 / rate) as u64),
        };
        if !self.was_syncing || now.duration_since(self.last_progress_log) > Duration::from_secs(5)
        {
            tracing::info!(
                "syncing: height {height} of {target}, {:.0} blocks/s{}",
                rate,
                progress
                    .eta_secs
                    .map(|s| format!(", about {s} s left"))
                    .unwrap_or_default()
            );
            self.last_progress_log = now;
        }
        self.was_syncing = true;
        self.node.set_sync_progress(Some(progress));
    }
}
