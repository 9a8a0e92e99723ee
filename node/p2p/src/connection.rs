//! One peer connection: the encrypted handshake (see [`crate::transport`]),
//! the hello exchange, then a reader (frames to messages,
//! rate limited), a writer (a byte-bounded queue to the socket, through the
//! link shaper) and a server that answers the peer's requests from the node
//! on blocking threads.
//!
//! # Correctness
//! - Frames are limited before they are buffered (4 KiB before the
//!   hello exchange, the network's largest message after); every frame is
//!   encrypted and authenticated.
//! - What we queue for a peer is bounded in bytes ([`Outbox`]): messages the
//!   manager sends fail when the queue is full (the peer does not read and
//!   is dropped); answers to the peer's own requests wait for room, up to
//!   the request timeout, and one request is served at a time, so a peer that
//!   asks for many blocks and never reads costs at most its queue.
//! - A socket error is nobody's fault; an oversized frame or an undecodable
//!   message is abuse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_consensus::BlockHash;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::codec::Framed;

use crate::backend::{ChainBackend, NetworkInfo};
use crate::config::P2pConfig;
use crate::link::LinkRule;
use crate::message::{
    DecodeError, HANDSHAKE_FRAME_LIMIT, Hello, MAX_HEADERS, Message, PROTOCOL_VERSION, Reject,
    RejectCode,
};
use crate::peer::{CloseReason, Direction, Misbehaviour};
use crate::transport::{self, FrameError, HandshakeError, Intro, LocalKeys, NodeId, NoiseCodec};

type Conn = Framed<TcpStream, NoiseCodec>;

/// The queue of frames to one peer, bounded in bytes.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<(Instant, Bytes)>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    cap: usize,
}

/// The queue to a peer is full: it does not read.
#[derive(Debug)]
pub struct Full;

impl Outbox {
    /// A queue of at most `cap` bytes, and its receiving end for the writer.
    pub fn new(cap: usize) -> (Outbox, mpsc::UnboundedReceiver<(Instant, Bytes)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Outbox {
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
                drained: Arc::new(Notify::new()),
                cap,
            },
            rx,
        )
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn push(&self, frame: Bytes) -> Result<(), Full> {
        self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        metrics::counter!("cairn_p2p_bytes_total", "direction" => "out", "type" => kind_of(&frame))
            .increment(frame.len() as u64);
        metrics::counter!("cairn_p2p_messages_total", "direction" => "out", "type" => kind_of(&frame))
            .increment(1);
        self.tx.send((Instant::now(), frame)).map_err(|_| Full)
    }

    /// Queues a message now, or fails when the queue is full.
    pub fn send(&self, msg: &Message) -> Result<(), Full> {
        let frame = Bytes::from(msg.encode());
        if self.queued() + frame.len() > self.cap {
            return Err(Full);
        }
        self.push(frame)
    }

    /// Queues a frame once at most half the queue is used (the other half
    /// stays free for the manager's messages), waiting up to `patience`.
    async fn send_waiting(&self, frame: Bytes, patience: Duration) -> Result<(), Full> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let queued = self.queued();
            if queued == 0 || queued + frame.len() <= self.cap / 2 {
                return self.push(frame);
            }
            if tokio::time::timeout_at(deadline, self.drained.notified())
                .await
                .is_err()
            {
                return Err(Full);
            }
        }
    }
}

/// The message kind of an encoded frame (its borsh tag), for metrics.
fn kind_of(frame: &[u8]) -> &'static str {
    const KINDS: [&str; 20] = [
        "hello",
        "reject",
        "ping",
        "pong",
        "getaddrs",
        "addrs",
        "getheaders",
        "headers",
        "newheaders",
        "getblocks",
        "block",
        "notfound",
        "invtxs",
        "gettxs",
        "txs",
        "welcome",
        "sendcompact",
        "compactblock",
        "getblocktxs",
        "blocktxs",
    ];
    frame
        .first()
        .and_then(|t| KINDS.get(usize::from(*t)))
        .copied()
        .unwrap_or("unknown")
}

/// What connection tasks tell the manager.
pub enum ConnEvent {
    /// The handshake completed; the manager admits or refuses the peer.
    Handshaked {
        id: u64,
        remote: SocketAddr,
        /// Proven by the encrypted handshake.
        node_id: NodeId,
        hello: Box<Hello>,
        reply: oneshot::Sender<Admission>,
    },
    /// Both sides accepted: the connection is up.
    Established {
        id: u64,
    },
    /// The connection ended before it was up.
    Failed {
        id: u64,
        error: ConnectError,
    },
    Message {
        id: u64,
        msg: Message,
    },
    /// An admitted connection ended.
    Closed {
        id: u64,
        reason: CloseReason,
    },
}

/// The manager's answer to a handshake.
pub enum Admission {
    Admit(Admitted),
    Refuse(RejectCode, String),
}

/// What an admitted connection runs with (the manager keeps a clone of
/// the outbox and the sending side of the link rule).
pub struct Admitted {
    pub outbox: Outbox,
    pub out_rx: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    pub link: watch::Receiver<LinkRule>,
    pub kill: Arc<Notify>,
}

/// Why a connection failed before it was admitted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// The encrypted handshake failed (not a Cairn node, tampering, a bad
    /// identity): nobody is blamed, a third party may cause it.
    #[error("{0}")]
    Handshake(String),
    /// The dialled address answered as another node than the one named.
    #[error("the peer is node {got}, not the expected {expected}")]
    WrongNode { expected: NodeId, got: NodeId },
    #[error("the connection closed during the handshake")]
    Closed,
    #[error("no handshake within {0} ms")]
    Timeout(u64),
    #[error("the peer {} ({})", .0.code.describe(), .0.reason)]
    Refused(Reject),
    #[error("we refused the peer: {}", .1)]
    RefusedByUs(RejectCode, String),
    #[error("{0}")]
    Abuse(Misbehaviour),
}

/// What every connection task shares.
pub struct ConnCtx {
    pub backend: Arc<dyn ChainBackend>,
    pub network: NetworkInfo,
    pub cfg: P2pConfig,
    pub keys: LocalKeys,
    pub listen_port: Option<u16>,
    pub frame_limit: usize,
    pub events: mpsc::Sender<ConnEvent>,
}

/// Our `Hello`.
pub fn our_hello(ctx: &ConnCtx) -> Hello {
    let tip = ctx.backend.tip();
    Hello {
        protocol_version: PROTOCOL_VERSION,
        network: ctx.network.name.clone(),
        genesis: ctx.network.genesis_hash,
        best_height: tip.height,
        best_hash: tip.hash,
        best_work: tip.work,
        listen_port: ctx.listen_port,
        user_agent: format!("cairn-node/{}", env!("CARGO_PKG_VERSION")),
    }
}

/// A read error: an oversized frame is abuse, anything else a socket error.
fn read_error(e: std::io::Error) -> Result<CloseReason, Misbehaviour> {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<FrameError>())
    {
        Some(FrameError::TooLarge { .. }) => Err(Misbehaviour::OversizedFrame(e.to_string())),
        _ => Ok(CloseReason::Io(e.to_string())),
    }
}

fn decode_error(e: DecodeError) -> Misbehaviour {
    Misbehaviour::Undecodable(e.to_string())
}

/// Dials `addr` and runs the connection to its end; `expected`: the node
/// the operator named for that address.
pub async fn dial(ctx: Arc<ConnCtx>, id: u64, addr: String, expected: Option<NodeId>) {
    let timeout = Duration::from_millis(ctx.cfg.handshake_timeout_ms);
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let error = ConnectError::Unreachable(e.to_string());
            let _ = ctx.events.send(ConnEvent::Failed { id, error }).await;
            return;
        }
        Err(_) => {
            let error = ConnectError::Unreachable("connection timed out".into());
            let _ = ctx.events.send(ConnEvent::Failed { id, error }).await;
            return;
        }
    };
    let remote = match stream.peer_addr() {
        Ok(r) => r,
        Err(e) => {
            let error = ConnectError::Unreachable(e.to_string());
            let _ = ctx.events.send(ConnEvent::Failed { id, error }).await;
            return;
        }
    };
    run(ctx, stream, remote, Direction::Outbound, id, expected).await;
}

/// Runs a connection (after accept or connect) to its end.
pub async fn run(
    ctx: Arc<ConnCtx>,
    stream: TcpStream,
    remote: SocketAddr,
    direction: Direction,
    id: u64,
    expected: Option<NodeId>,
) {
    let _ = stream.set_nodelay(true);
    let (mut framed, node_id) = match secure(&ctx, stream, direction, expected).await {
        Ok(s) => s,
        Err(error) => {
            let _ = ctx.events.send(ConnEvent::Failed { id, error }).await;
            return;
        }
    };
    let hello = match handshake(&ctx, &mut framed).await {
        Ok(h) => h,
        Err(error) => {
            if let ConnectError::RefusedByUs(code, reason) = &error {
                send_reject(&mut framed, *code, reason).await;
            }
            let _ = ctx.events.send(ConnEvent::Failed { id, error }).await;
            return;
        }
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let handshaked = ConnEvent::Handshaked {
        id,
        remote,
        node_id,
        hello: Box::new(hello),
        reply: reply_tx,
    };
    if ctx.events.send(handshaked).await.is_err() {
        return;
    }
    let admitted = match reply_rx.await {
        Ok(Admission::Admit(a)) => a,
        Ok(Admission::Refuse(code, reason)) => {
            send_reject(&mut framed, code, &reason).await;
            return;
        }
        Err(_) => {
            send_reject(&mut framed, RejectCode::ShuttingDown, "shutting down").await;
            return;
        }
    };
    // both sides said welcome, or one refused
    if let Err(error) = welcome(&ctx, &mut framed).await {
        let _ = ctx.events.send(ConnEvent::Failed { id, error }).await;
        return;
    }
    if ctx
        .events
        .send(ConnEvent::Established { id })
        .await
        .is_err()
    {
        return;
    }
    framed.codec_mut().set_limit(ctx.frame_limit);
    let Admitted {
        outbox,
        out_rx,
        link,
        kill,
    } = admitted;
    let reason = serve_connection(&ctx, id, framed, outbox, out_rx, link, kill).await;
    let _ = ctx.events.send(ConnEvent::Closed { id, reason }).await;
}

/// The Noise handshake, within the handshake timeout: the encrypted
/// connection and the node id the peer proved.
async fn secure(
    ctx: &ConnCtx,
    mut stream: TcpStream,
    direction: Direction,
    expected: Option<NodeId>,
) -> Result<(Conn, NodeId), ConnectError> {
    let timeout_ms = ctx.cfg.handshake_timeout_ms;
    let intro = Intro {
        protocol_version: PROTOCOL_VERSION,
        genesis: ctx.network.genesis_hash,
    };
    let started = Instant::now();
    let shake = async {
        match direction {
            Direction::Outbound => {
                transport::initiate(&mut stream, &ctx.keys, intro, expected).await
            }
            Direction::Inbound => transport::respond(&mut stream, &ctx.keys, intro).await,
        }
    };
    let result = tokio::time::timeout(Duration::from_millis(timeout_ms), shake)
        .await
        .map_err(|_| ConnectError::Timeout(timeout_ms))?;
    metrics::histogram!("cairn_p2p_handshake_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok((mut codec, node_id)) => {
            codec.set_limit(HANDSHAKE_FRAME_LIMIT);
            Ok((Framed::new(stream, codec), node_id))
        }
        Err(HandshakeError::Io(_)) => Err(ConnectError::Closed),
        Err(HandshakeError::WrongNode { expected, got }) => {
            Err(ConnectError::WrongNode { expected, got })
        }
        Err(HandshakeError::RefusedByPeer(reason)) => Err(ConnectError::Refused(Reject {
            code: if reason.contains("protocol version") {
                RejectCode::ProtocolVersion
            } else {
                RejectCode::WrongNetwork
            },
            reason,
        })),
        Err(HandshakeError::RefusedByUs(reason)) => Err(ConnectError::RefusedByUs(
            if reason.contains("protocol version") {
                RejectCode::ProtocolVersion
            } else {
                RejectCode::WrongNetwork
            },
            reason,
        )),
        Err(e) => Err(ConnectError::Handshake(e.to_string())),
    }
}

async fn send_reject(framed: &mut Conn, code: RejectCode, reason: &str) {
    let mut reason = reason.to_string();
    if reason.len() > crate::message::MAX_TEXT {
        let mut cut = crate::message::MAX_TEXT;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    let msg = Message::Reject(Reject { code, reason });
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        framed.send(Bytes::from(msg.encode())),
    )
    .await;
}

/// Both sides speak first: send our hello, read theirs, check it.
async fn handshake(ctx: &ConnCtx, framed: &mut Conn) -> Result<Hello, ConnectError> {
    let timeout_ms = ctx.cfg.handshake_timeout_ms;
    let ours = Message::Hello(our_hello(ctx));
    let exchange = async {
        framed
            .send(Bytes::from(ours.encode()))
            .await
            .map_err(|_| ConnectError::Closed)?;
        match framed.next().await {
            None => Err(ConnectError::Closed),
            Some(Err(e)) => Err(match read_error(e) {
                Ok(_) => ConnectError::Closed,
                Err(m) => ConnectError::Abuse(m),
            }),
            Some(Ok(frame)) => match Message::decode(&frame) {
                Ok(Message::Hello(h)) => Ok(h),
                Ok(Message::Reject(r)) => Err(ConnectError::Refused(r)),
                Ok(other) => Err(ConnectError::Abuse(Misbehaviour::Undecodable(format!(
                    "expected a hello, got {}",
                    other.kind()
                )))),
                Err(e) => Err(ConnectError::Abuse(decode_error(e))),
            },
        }
    };
    let theirs = tokio::time::timeout(Duration::from_millis(timeout_ms), exchange)
        .await
        .map_err(|_| ConnectError::Timeout(timeout_ms))??;
    if theirs.genesis != ctx.network.genesis_hash {
        return Err(ConnectError::RefusedByUs(
            RejectCode::WrongNetwork,
            format!(
                "another network: your genesis is {} ({:?}), ours is {} ({:?})",
                theirs.genesis, theirs.network, ctx.network.genesis_hash, ctx.network.name
            ),
        ));
    }
    if theirs.protocol_version != PROTOCOL_VERSION {
        return Err(ConnectError::RefusedByUs(
            RejectCode::ProtocolVersion,
            format!(
                "protocol version {} is not ours ({PROTOCOL_VERSION})",
                theirs.protocol_version
            ),
        ));
    }
    Ok(theirs)
}

/// Sends our welcome and waits for theirs.
async fn welcome(ctx: &ConnCtx, framed: &mut Conn) -> Result<(), ConnectError> {
    let timeout_ms = ctx.cfg.handshake_timeout_ms;
    let exchange = async {
        framed
            .send(Bytes::from(Message::Welcome.encode()))
            .await
            .map_err(|_| ConnectError::Closed)?;
        match framed.next().await {
            None => Err(ConnectError::Closed),
            Some(Err(e)) => Err(match read_error(e) {
                Ok(_) => ConnectError::Closed,
                Err(m) => ConnectError::Abuse(m),
            }),
            Some(Ok(frame)) => match Message::decode(&frame) {
                Ok(Message::Welcome) => Ok(()),
                Ok(Message::Reject(r)) => Err(ConnectError::Refused(r)),
                Ok(other) => Err(ConnectError::Abuse(Misbehaviour::Undecodable(format!(
                    "expected a welcome, got {}",
                    other.kind()
                )))),
                Err(e) => Err(ConnectError::Abuse(decode_error(e))),
            },
        }
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), exchange)
        .await
        .map_err(|_| ConnectError::Timeout(timeout_ms))?
}

/// Token bucket in thousandths of a message.
struct Bucket {
    tokens: u64,
    max: u64,
    per_sec: u64,
    last: Instant,
}

impl Bucket {
    fn new(per_sec: u32, burst: u32) -> Bucket {
        Bucket {
            tokens: u64::from(burst) * 1000,
            max: u64::from(burst) * 1000,
            per_sec: u64::from(per_sec),
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens; false when there are not enough.
    fn take(&mut self, n: u64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_millis() as u64 * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.max);
        self.last = now;
        match self.tokens.checked_sub(n * 1000) {
            Some(t) => {
                self.tokens = t;
                true
            }
            None => false,
        }
    }
}

async fn serve_connection(
    ctx: &Arc<ConnCtx>,
    id: u64,
    framed: Conn,
    outbox: Outbox,
    mut out_rx: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    link: watch::Receiver<LinkRule>,
    kill: Arc<Notify>,
) -> CloseReason {
    let (mut sink, mut stream) = framed.split();
    let queued = outbox.queued.clone();
    let drained = outbox.drained.clone();
    // writer: the queue to the socket, through the link shaper
    let writer = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::from_entropy();
        while let Some((at, frame)) = out_rx.recv().await {
            let rule = *link.borrow();
            let len = frame.len();
            let lost = rule.loses(&mut rng);
            if !lost {
                let delay = rule.delay(&mut rng);
                if !delay.is_zero() {
                    tokio::time::sleep_until((at + delay).into()).await;
                }
                if sink.send(frame).await.is_err() {
                    break;
                }
                let t = rule.transmit_time(len);
                if !t.is_zero() {
                    tokio::time::sleep(t).await;
                }
            }
            queued.fetch_sub(len, Ordering::Relaxed);
            drained.notify_one();
        }
    });
    // server: answers the peer's requests, one at a time
    // room for a burst of an honest peer's requests: a node that hears of
    // thousands of transfers at once asks for them in many small GetTxs
    // (at most 64 x 1,000 ids held here; the message rate limit still holds)
    let (req_tx, mut req_rx) = mpsc::channel::<Message>(64);
    let server_ctx = ctx.clone();
    let server_out = outbox.clone();
    let server = tokio::spawn(async move {
        while let Some(req) = req_rx.recv().await {
            if let Err(m) = serve(&server_ctx, req, &server_out).await {
                return Some(m);
            }
        }
        None
    });
    let mut bucket = Bucket::new(ctx.cfg.rate_per_sec, ctx.cfg.rate_burst);
    let mut server = server;
    let reason = loop {
        let next = tokio::select! {
            _ = kill.notified() => break CloseReason::Closed("closed".into()),
            done = &mut server => {
                break match done {
                    Ok(Some(m)) => CloseReason::Misbehaved(m),
                    _ => CloseReason::Closed("request server ended".into()),
                };
            }
            n = stream.next() => n,
        };
        let frame = match next {
            None => break CloseReason::PeerClosed,
            Some(Err(e)) => match read_error(e) {
                Ok(r) => break r,
                Err(m) => break CloseReason::Misbehaved(m),
            },
            Some(Ok(f)) => f,
        };
        let msg = match Message::decode(&frame) {
            Ok(m) => m,
            Err(e) => break CloseReason::Misbehaved(decode_error(e)),
        };
        metrics::counter!("cairn_p2p_bytes_total", "direction" => "in", "type" => msg.kind())
            .increment(frame.len() as u64);
        metrics::counter!("cairn_p2p_messages_total", "direction" => "in", "type" => msg.kind())
            .increment(1);
        // blocks are not counted: the manager limits the ones nobody asked
        // for, and a fast sync legitimately delivers thousands a second
        if !matches!(msg, Message::Block(_)) && !bucket.take(1) {
            break CloseReason::Misbehaved(Misbehaviour::Flood("messages"));
        }
        match msg {
            Message::GetHeaders(_) | Message::GetBlocks(_) | Message::GetTxs(_) => {
                if req_tx.try_send(msg).is_err() {
                    break CloseReason::Misbehaved(Misbehaviour::Flood("requests"));
                }
            }
            Message::Hello(_) => break CloseReason::Misbehaved(Misbehaviour::SecondHello),
            other => {
                if ctx
                    .events
                    .send(ConnEvent::Message { id, msg: other })
                    .await
                    .is_err()
                {
                    break CloseReason::Closed("shutting down".into());
                }
            }
        }
    };
    writer.abort();
    server.abort();
    reason
}

/// Answers one request.
async fn serve(ctx: &Arc<ConnCtx>, req: Message, out: &Outbox) -> Result<(), Misbehaviour> {
    let patience = Duration::from_millis(ctx.cfg.request_timeout_ms);
    let backend = ctx.backend.clone();
    let blocking = |e: tokio::task::JoinError| {
        tracing::error!("a P2P request handler failed: {e}");
        Misbehaviour::Stalled("our own request handler")
    };
    match req {
        Message::GetHeaders(locator) => {
            let headers =
                tokio::task::spawn_blocking(move || backend.headers_after(&locator, MAX_HEADERS))
                    .await
                    .map_err(blocking)?;
            let headers = match headers {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!("cannot read headers to serve: {e}");
                    return Ok(());
                }
            };
            let frame = Bytes::from(Message::Headers(headers).encode());
            out.send_waiting(frame, patience)
                .await
                .map_err(|_| Misbehaviour::SlowReader)
        }
        Message::GetBlocks(hashes) => {
            // each block once, a few at a time: a request for many large
            // blocks never loads them all into memory
            let mut seen = std::collections::HashSet::new();
            let hashes: Vec<BlockHash> = hashes.into_iter().filter(|h| seen.insert(*h)).collect();
            let mut missing = Vec::new();
            for chunk in hashes.chunks(4) {
                let chunk = chunk.to_vec();
                let b = backend.clone();
                let read = tokio::task::spawn_blocking(move || {
                    chunk
                        .into_iter()
                        .map(|h| (h, b.block_bytes(&h)))
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(blocking)?;
                for (h, r) in read {
                    match r {
                        Ok(Some(bytes)) => {
                            let frame = Bytes::from(Message::block_frame(&bytes));
                            out.send_waiting(frame, patience)
                                .await
                                .map_err(|_| Misbehaviour::SlowReader)?;
                        }
                        Ok(None) => missing.push(h),
                        Err(e) => {
                            tracing::error!("cannot read block {h} to serve: {e}");
                            missing.push(h);
                        }
                    }
                }
            }
            if !missing.is_empty() {
                let frame = Bytes::from(Message::NotFound(missing).encode());
                out.send_waiting(frame, patience)
                    .await
                    .map_err(|_| Misbehaviour::SlowReader)?;
            }
            Ok(())
        }
        Message::GetTxs(ids) => {
            let txs = tokio::task::spawn_blocking(move || backend.pending_transfers(&ids))
                .await
                .map_err(blocking)?;
            if txs.is_empty() {
                return Ok(());
            }
            let frame = Bytes::from(Message::Txs(txs).encode());
            out.send_waiting(frame, patience)
                .await
                .map_err(|_| Misbehaviour::SlowReader)
        }
        _ => Ok(()),
    }
}

use rand::SeedableRng;
