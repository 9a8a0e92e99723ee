//! A raw peer for tests of hostile peers: it speaks the wire protocol
//! (length-delimited frames, each one borsh [`Message`]) and does only what
//! the test tells it to, so a test can send what no honest node would and
//! leave unanswered what an honest node would answer.
//!
//! Also here: headers and blocks of the dev network built in memory (valid
//! proof of work, cheap on the dev target), and a capture of the P2P layer's
//! log lines so a test can check why a peer was disconnected.

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_consensus::params::ParentInfo;
use cairn_consensus::testkit::{ChainBuilder, mine};
use cairn_consensus::validation::HeaderMeta;
use cairn_consensus::{BlockHash, BlockHeader, Height, StateRoot, TxRoot, Work};
use cairn_genesis::Network;
use cairn_p2p::message::{Hello, Message, PROTOCOL_VERSION, Reject};
use cairn_p2p::transport::{self, Intro, LocalKeys, NodeId, NodeKey, NoiseCodec};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::Framed;

/// An encrypted TCP stream speaking the wire protocol.
pub type Wire = Framed<TcpStream, NoiseCodec>;

/// Runs the Noise handshake as a fresh node of the network with `genesis`
/// (`outbound`: we dialled), with frames up to 64 MiB: the raw peer reads
/// whatever the node sends. Returns the wire and the node id it proved.
pub async fn secure(
    mut stream: TcpStream,
    outbound: bool,
    genesis: BlockHash,
    key: &NodeKey,
) -> Result<(Wire, NodeId), HandshakeError> {
    let keys = LocalKeys::new(key);
    let intro = Intro {
        protocol_version: PROTOCOL_VERSION,
        genesis,
    };
    let shake = async {
        if outbound {
            transport::initiate(&mut stream, &keys, intro, None).await
        } else {
            transport::respond(&mut stream, &keys, intro).await
        }
    };
    let (mut codec, id) = tokio::time::timeout(HANDSHAKE_WAIT, shake)
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(|e| match e {
            transport::HandshakeError::RefusedByPeer(why) => HandshakeError::Unexpected(why),
            transport::HandshakeError::Io(_) => HandshakeError::Closed,
            other => HandshakeError::Unexpected(other.to_string()),
        })?;
    codec.set_limit(64 << 20);
    Ok((Framed::new(stream, codec), id))
}

/// The dev network.
pub fn dev() -> Network {
    Network::builtin("dev").expect("the dev network is built in")
}

/// A hello that claims nothing: height 0, no work, no listening port.
pub fn hello(genesis: BlockHash) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        network: "dev".into(),
        genesis,
        best_height: 0,
        best_hash: genesis,
        best_work: Work::ZERO,
        listen_port: None,
        user_agent: "raw-test-peer".into(),
    }
}

/// More work than any chain a test builds.
pub fn huge_work() -> Work {
    let mut b = [0u8; 32];
    b[8] = 1;
    Work::from_be_bytes(b)
}

/// What one read from the node gave.
#[derive(Debug)]
pub enum Recv {
    Msg(Message),
    /// The node closed the connection (or reset it).
    Closed,
    /// Nothing arrived in time.
    Quiet,
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    Refused(Reject),
    Closed,
    Timeout,
    Unexpected(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Refused(r) => write!(f, "refused: {:?} ({})", r.code, r.reason),
            HandshakeError::Closed => f.write_str("closed during the handshake"),
            HandshakeError::Timeout => f.write_str("no handshake in time"),
            HandshakeError::Unexpected(m) => write!(f, "unexpected {m}"),
        }
    }
}

const HANDSHAKE_WAIT: Duration = Duration::from_secs(20);

/// A connection to a node, after the handshake.
pub struct RawPeer {
    pub wire: Wire,
    /// The node's hello.
    pub theirs: Hello,
    /// Our end of the connection (what the node sees as the remote).
    pub local: SocketAddr,
    /// Answer the node's pings (on by default) while waiting for something.
    pub answer_pings: bool,
    /// Messages received and not asked for by a wait, oldest first (bounded).
    pub seen: Vec<String>,
    /// The node's id, as its handshake proved it.
    pub their_id: NodeId,
}

impl RawPeer {
    /// Connects to `to` and completes the handshake with `ours`.
    pub async fn connect(to: SocketAddr, ours: Hello) -> Result<RawPeer, HandshakeError> {
        let stream = TcpStream::connect(to)
            .await
            .map_err(|_| HandshakeError::Closed)?;
        Self::handshake_as(stream, ours, true).await
    }

    /// Connects from `from` (an IP with port 0 for any port: e.g.
    /// 127.0.0.2 to be another host on loopback).
    pub async fn connect_from(
        from: SocketAddr,
        to: SocketAddr,
        ours: Hello,
    ) -> Result<RawPeer, HandshakeError> {
        let socket = TcpSocket::new_v4().map_err(|_| HandshakeError::Closed)?;
        socket.bind(from).map_err(|_| HandshakeError::Closed)?;
        let stream = socket
            .connect(to)
            .await
            .map_err(|_| HandshakeError::Closed)?;
        Self::handshake_as(stream, ours, true).await
    }

    /// Accepts the node's connection on `listener` (it dialled us) and
    /// completes the handshake.
    pub async fn accept(listener: &TcpListener, ours: Hello) -> Result<RawPeer, HandshakeError> {
        let (stream, _) = tokio::time::timeout(HANDSHAKE_WAIT, listener.accept())
            .await
            .map_err(|_| HandshakeError::Timeout)?
            .map_err(|_| HandshakeError::Closed)?;
        Self::handshake(stream, ours).await
    }

    /// Completes the handshake on a connection the node opened to us.
    pub async fn handshake(stream: TcpStream, ours: Hello) -> Result<RawPeer, HandshakeError> {
        Self::handshake_as(stream, ours, false).await
    }

    /// Completes the handshake on a connection we opened to the node.
    pub async fn handshake_out(stream: TcpStream, ours: Hello) -> Result<RawPeer, HandshakeError> {
        Self::handshake_as(stream, ours, true).await
    }

    /// The encrypted handshake (as a fresh node), then both sides send a
    /// hello, then a welcome (or a reject).
    async fn handshake_as(
        stream: TcpStream,
        ours: Hello,
        outbound: bool,
    ) -> Result<RawPeer, HandshakeError> {
        let local = stream.local_addr().map_err(|_| HandshakeError::Closed)?;
        let key = NodeKey::generate();
        let (mut wire, their_id) = secure(stream, outbound, ours.genesis, &key).await?;
        let exchange = async {
            send_on(&mut wire, &Message::Hello(ours.clone())).await?;
            let theirs = match next_on(&mut wire).await? {
                Message::Hello(h) => h,
                Message::Reject(r) => return Err(HandshakeError::Refused(r)),
                other => return Err(HandshakeError::Unexpected(other.kind().into())),
            };
            send_on(&mut wire, &Message::Welcome).await?;
            match next_on(&mut wire).await? {
                Message::Welcome => Ok(theirs),
                Message::Reject(r) => Err(HandshakeError::Refused(r)),
                other => Err(HandshakeError::Unexpected(other.kind().into())),
            }
        };
        let theirs = tokio::time::timeout(HANDSHAKE_WAIT, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        Ok(RawPeer {
            wire,
            theirs,
            local,
            answer_pings: true,
            seen: Vec::new(),
            their_id,
        })
    }

    pub async fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        self.wire.send(Bytes::from(msg.encode())).await
    }

    /// Queues a message without flushing (see [`RawPeer::flush`]): for
    /// floods faster than one write per message.
    pub async fn feed(&mut self, msg: &Message) -> std::io::Result<()> {
        self.wire.feed(Bytes::from(msg.encode())).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::<Bytes>::flush(&mut self.wire).await
    }

    /// Sends a frame as it is (for frames no encoder would produce).
    pub async fn send_frame(&mut self, frame: Vec<u8>) -> std::io::Result<()> {
        self.wire.send(Bytes::from(frame)).await
    }

    /// The next message, within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Recv {
        match tokio::time::timeout(wait, self.wire.next()).await {
            Err(_) => Recv::Quiet,
            Ok(None) | Ok(Some(Err(_))) => Recv::Closed,
            Ok(Some(Ok(frame))) => match Message::decode(&frame) {
                Ok(m) => Recv::Msg(m),
                // the node never sends garbage: a test should see it
                Err(e) => panic!("the node sent an undecodable frame: {e}"),
            },
        }
    }

    /// Waits up to `wait` for a message `pick` accepts, answering pings and
    /// noting the others; panics (naming `what` and what did arrive) when
    /// the connection closes or time runs out.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        wait: Duration,
        mut pick: impl FnMut(&Message) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Recv::Msg(m) => {
                    if let Some(v) = pick(&m) {
                        return v;
                    }
                    self.note(&m).await;
                }
                Recv::Closed => panic!(
                    "waiting for {what}: the node closed the connection; before that it sent {:?}",
                    self.seen
                ),
                Recv::Quiet => panic!(
                    "waiting for {what}: nothing within {wait:?}; the node sent {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the node's next `GetHeaders` and returns its locator.
    pub async fn expect_get_headers(&mut self, wait: Duration) -> Vec<BlockHash> {
        self.expect("a GetHeaders", wait, |m| match m {
            Message::GetHeaders(l) => Some(l.clone()),
            _ => None,
        })
        .await
    }

    /// Reads (answering pings, noting the rest) until the node closes the
    /// connection; returns how long that took, or `None` if it was still
    /// open after `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Recv::Closed => return Some(start.elapsed()),
                Recv::Quiet => return None,
                Recv::Msg(m) => self.note(&m).await,
            }
        }
    }

    /// Answers a ping, and keeps a short record of the rest.
    async fn note(&mut self, m: &Message) {
        if let Message::Ping(n) = m
            && self.answer_pings
        {
            let _ = self.send(&Message::Pong(*n)).await;
            return;
        }
        if self.seen.len() < 64 {
            self.seen.push(m.kind().to_string());
        }
    }
}

async fn send_on(wire: &mut Wire, msg: &Message) -> Result<(), HandshakeError> {
    wire.send(Bytes::from(msg.encode()))
        .await
        .map_err(|_| HandshakeError::Closed)
}

async fn next_on(wire: &mut Wire) -> Result<Message, HandshakeError> {
    match wire.next().await {
        None | Some(Err(_)) => Err(HandshakeError::Closed),
        Some(Ok(frame)) => Message::decode(&frame)
            .map_err(|e| HandshakeError::Unexpected(format!("undecodable frame: {e}"))),
    }
}

// ----- chains built in memory -----

/// The dev network's chain as a [`ChainBuilder`], to build valid blocks on
/// it (blocks 1 ms apart from genesis time, so never in the future).
pub fn dev_builder() -> ChainBuilder {
    let net = dev();
    ChainBuilder {
        params: net.params.clone(),
        accounts: net.accounts.iter().cloned().collect(),
        genesis_accounts: net.accounts.clone(),
        blocks: vec![net.genesis.clone()],
        spacing_ms: 1,
    }
}

/// `n` headers extending `parent` (whose meta is given), valid in proof of
/// work and in context on the dev network, 1 ms apart; `salt` makes the
/// chain differ from every other (its bodies do not exist).
pub fn header_chain(parent: &HeaderMeta, n: usize, salt: u64) -> Vec<BlockHeader> {
    let params = dev().params;
    let mut out: Vec<BlockHeader> = Vec::with_capacity(n);
    let mut prev = *parent;
    for i in 0..n {
        let time_ms = prev.header.time_ms + 1;
        let info: ParentInfo = prev.parent_info();
        let mut root = [0u8; 32];
        root[..8].copy_from_slice(&salt.to_le_bytes());
        root[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        let mut h = BlockHeader {
            version: cairn_consensus::block::HEADER_VERSION,
            parent: prev.header.hash(),
            height: Height(prev.header.height.0 + 1),
            tx_root: TxRoot(root),
            state_root: StateRoot(root),
            time_ms,
            target: params.next_target(&info, time_ms),
            nonce: 0,
        };
        mine(&mut h);
        prev = HeaderMeta {
            header: h,
            work: prev.work.checked_add(h.target.work()).expect("work"),
            anchor_time_ms: prev.anchor_time_ms.or(Some(h.time_ms)),
        };
        out.push(h);
    }
    out
}

/// A header with valid proof of work whose parent nobody knows.
pub fn unconnected_header(salt: u64) -> BlockHeader {
    let net = dev();
    let mut parent = HeaderMeta::genesis(net.genesis.header);
    // an unknown parent at a plausible height
    parent.header.nonce = salt.wrapping_add(1 << 40);
    parent.header.height = Height(5);
    parent.anchor_time_ms = Some(net.genesis.header.time_ms);
    header_chain(&parent, 1, salt)[0]
}

// ----- log capture -----

static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
/// Lines kept at most (the oldest go first).
const MAX_LOG_LINES: usize = 200_000;

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if std::env::var_os("CAIRN_TEST_LOG").is_some() {
            eprint!("{text}");
        }
        let mut logs = LOGS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            logs.push(line.to_string());
        }
        let len = logs.len();
        if len > MAX_LOG_LINES {
            logs.drain(..len - MAX_LOG_LINES);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the P2P layer's log lines (info and above, the header sync's
/// debug lines too; with `CAIRN_TEST_LOG` set, its filter too, printed as
/// they come).
pub fn capture_logs() {
    let filter = match std::env::var("CAIRN_TEST_LOG") {
        Ok(f) => format!("cairn_p2p=info,cairn_p2p::sync=debug,{f}"),
        Err(_) => "warn,cairn_p2p=info,cairn_p2p::sync=debug".into(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
}

/// Captured log lines that contain every one of `needles`.
pub fn log_lines(needles: &[&str]) -> Vec<String> {
    let logs = LOGS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    logs.iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .cloned()
        .collect()
}
