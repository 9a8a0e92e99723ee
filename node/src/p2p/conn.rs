//! One peer connection: the handshake, then a reader (frames to messages,
//! with a rate limit), a writer (a bounded queue to the socket) and a
//! server answering the peer's requests from the store and the mempool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_consensus::Block;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::message::{HANDSHAKE_FRAME_LIMIT, Hello, MAX_HEADERS, Message, PROTOCOL_VERSION};
use super::sync::headers_after;
use super::{Direction, Event};
use crate::node::Node;
use crate::store::ChainStore;

/// What every connection task shares.
pub struct ConnShared {
    pub node: Arc<Node>,
    pub nonce: u64,
    pub listen_port: Option<u16>,
    pub frame_limit: usize,
    pub handshake_timeout: Duration,
    pub send_queue: usize,
    /// Messages per second a peer may send on average ...
    pub rate_per_sec: u32,
    /// ... and in a burst.
    pub rate_burst: u32,
    pub events: mpsc::Sender<Event>,
}

/// A connection the manager accepted.
pub struct Registered {
    pub out: mpsc::Sender<Message>,
    pub kill: Arc<Notify>,
}

fn codec(limit: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(limit)
        .new_codec()
}

/// Our `Hello`, from the node's current tip.
pub fn our_hello(shared: &ConnShared) -> Hello {
    let tip = shared.node.tip();
    Hello {
        protocol_version: PROTOCOL_VERSION,
        network: shared.node.network.name.clone(),
        genesis: shared.node.network.genesis_hash,
        best_height: tip.header.height.0,
        best_hash: tip.hash,
        best_work: tip.work,
        listen_port: shared.listen_port,
        node_nonce: shared.nonce,
        user_agent: format!("cairn-node/{}", env!("CARGO_PKG_VERSION")),
    }
}

/// Runs a connection to its end.
pub async fn run(
    stream: TcpStream,
    remote: SocketAddr,
    direction: Direction,
    dial_addr: Option<String>,
    id: u64,
    shared: Arc<ConnShared>,
) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, codec(HANDSHAKE_FRAME_LIMIT));
    let reject = |reason: String, ban: bool| Event::Rejected {
        remote,
        dial_addr: dial_addr.clone(),
        reason,
        ban,
    };
    // handshake: both sides speak first
    let hello = Message::Hello(our_hello(&shared));
    if framed.send(Bytes::from(hello.encode())).await.is_err() {
        let _ = shared
            .events
            .send(reject(
                "the connection closed during the handshake".into(),
                false,
            ))
            .await;
        return;
    }
    let theirs = match tokio::time::timeout(shared.handshake_timeout, framed.next()).await {
        Err(_) => Err(("no handshake within the time limit".to_string(), false)),
        Ok(None) => Err((
            "the connection closed during the handshake".to_string(),
            false,
        )),
        Ok(Some(Err(e))) => Err((format!("bad handshake frame: {e}"), true)),
        Ok(Some(Ok(frame))) => match Message::decode(&frame) {
            Ok(Message::Hello(h)) => Ok(h),
            Ok(Message::Reject(r)) => Err((format!("the peer refused us: {r}"), false)),
            Ok(other) => Err((format!("expected a hello, got {}", other.kind()), true)),
            Err(e) => Err((e.to_string(), true)),
        },
    };
    let theirs = match theirs {
        Ok(h) => h,
        Err((reason, ban)) => {
            let _ = shared.events.send(reject(reason, ban)).await;
            return;
        }
    };
    let ours = &shared.node.network;
    let refusal = if theirs.node_nonce == shared.nonce {
        Some(("connected to ourselves".to_string(), false))
    } else if theirs.genesis != ours.genesis_hash {
        tracing::warn!(
            "peer {remote} is on another network: its genesis is {} ({}), ours is {} ({}); disconnecting",
            theirs.genesis,
            theirs.network,
            ours.genesis_hash,
            ours.name
        );
        Some((
            format!(
                "another network: genesis {} ({:?}), ours is {} ({:?})",
                theirs.genesis, theirs.network, ours.genesis_hash, ours.name
            ),
            false,
        ))
    } else if theirs.protocol_version != PROTOCOL_VERSION {
        Some((
            format!(
                "protocol version {} is not ours ({PROTOCOL_VERSION})",
                theirs.protocol_version
            ),
            false,
        ))
    } else {
        None
    };
    if let Some((reason, ban)) = refusal {
        let mut short = reason.clone();
        short.truncate(250);
        let _ = framed
            .send(Bytes::from(Message::Reject(short).encode()))
            .await;
        let _ = shared.events.send(reject(reason, ban)).await;
        return;
    }
    // register with the manager
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(shared.send_queue);
    let kill = Arc::new(Notify::new());
    let (reply_tx, reply_rx) = oneshot::channel();
    let registered = Registered {
        out: out_tx.clone(),
        kill: kill.clone(),
    };
    if shared
        .events
        .send(Event::Connected {
            id,
            remote,
            direction,
            dial_addr: dial_addr.clone(),
            hello: Box::new(theirs),
            conn: registered,
            reply: reply_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    if let Ok(Err(reason)) | Err(reason) = reply_rx.await.map_err(|_| "shutting down".to_string()) {
        let _ = framed
            .send(Bytes::from(Message::Reject(reason).encode()))
            .await;
        return;
    }
    framed.codec_mut().set_max_frame_length(shared.frame_limit);
    let (mut sink, mut stream) = framed.split();

    // writer: the bounded queue to the socket
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Bytes::from(m.encode())).await.is_err() {
                break;
            }
        }
    });
    // server: answers requests, one at a time
    let (req_tx, mut req_rx) = mpsc::channel::<Message>(32);
    let server_shared = shared.clone();
    let server_out = out_tx.clone();
    let server = tokio::spawn(async move {
        while let Some(req) = req_rx.recv().await {
            if serve(&server_shared, req, &server_out).await.is_err() {
                break;
            }
        }
    });

    // reader
    let mut tokens = f64::from(shared.rate_burst);
    let mut last = Instant::now();
    let mut kinds: std::collections::HashMap<&'static str, u64> = Default::default();
    let reason: String = loop {
        let next = tokio::select! {
            _ = kill.notified() => break "disconnected".into(),
            n = stream.next() => n,
        };
        let frame = match next {
            None => break "the peer closed the connection".into(),
            Some(Err(e)) => {
                let _ = shared
                    .events
                    .send(Event::Misbehaved {
                        id,
                        score: 100,
                        reason: format!("bad frame: {e}"),
                    })
                    .await;
                break format!("bad frame: {e}");
            }
            Some(Ok(f)) => f,
        };
        let msg = match Message::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                let _ = shared
                    .events
                    .send(Event::Misbehaved {
                        id,
                        score: 100,
                        reason: e.to_string(),
                    })
                    .await;
                break e.to_string();
            }
        };
        // blocks are not counted: each costs its sender real work, and a
        // fast sync legitimately delivers thousands a second
        if !matches!(msg, Message::Block(_)) {
            let now = Instant::now();
            tokens = (tokens
                + now.duration_since(last).as_secs_f64() * f64::from(shared.rate_per_sec))
            .min(f64::from(shared.rate_burst));
            last = now;
            tokens -= 1.0;
            *kinds.entry(msg.kind()).or_default() += 1;
        }
        if tokens < 0.0 {
            let top = kinds
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(k, n)| format!("{n} {k}"))
                .unwrap_or_default();
            break format!(
                "flood: more than {} messages per second (most frequent: {top})",
                shared.rate_per_sec
            );
        }
        match msg {
            Message::GetHeaders(_) | Message::GetBlocks(_) | Message::GetTxs(_) => {
                if req_tx.try_send(msg).is_err() {
                    break "flood: too many requests in flight".into();
                }
            }
            other => {
                if shared
                    .events
                    .send(Event::Message { id, msg: other })
                    .await
                    .is_err()
                {
                    break "shutting down".into();
                }
            }
        }
    };
    writer.abort();
    server.abort();
    let _ = shared.events.send(Event::Closed { id, reason }).await;
}

/// Answers one request.
async fn serve(shared: &ConnShared, req: Message, out: &mpsc::Sender<Message>) -> Result<(), ()> {
    let node = shared.node.clone();
    match req {
        Message::GetHeaders(locator) => {
            let headers = tokio::task::spawn_blocking(move || {
                let tip = node.tip().header.height.0;
                headers_after(node.store(), &locator, tip, MAX_HEADERS)
            })
            .await
            .map_err(|_| ())?
            .map_err(|e| tracing::error!("cannot read headers: {e}"))?;
            out.send(Message::Headers(headers)).await.map_err(|_| ())
        }
        Message::GetBlocks(hashes) => {
            // a few blocks at a time: a request for a thousand large blocks
            // must not load them all into memory at once
            let mut missing = Vec::new();
            for chunk in hashes.chunks(8) {
                let chunk = chunk.to_vec();
                let n = node.clone();
                let (found, absent) = tokio::task::spawn_blocking(move || {
                    let mut found: Vec<Block> = Vec::new();
                    let mut absent = Vec::new();
                    for h in chunk {
                        match n.store().block(&h) {
                            Ok(Some(b)) => found.push(b),
                            _ => absent.push(h),
                        }
                    }
                    (found, absent)
                })
                .await
                .map_err(|_| ())?;
                missing.extend(absent);
                for b in found {
                    out.send(Message::Block(Box::new(b)))
                        .await
                        .map_err(|_| ())?;
                }
            }
            if !missing.is_empty() {
                out.send(Message::NotFound(missing)).await.map_err(|_| ())?;
            }
            Ok(())
        }
        Message::GetTxs(ids) => {
            let txs = node.with_mempool(|p| {
                ids.iter()
                    .filter_map(|id| p.get(id).map(|e| e.tx))
                    .collect::<Vec<_>>()
            });
            if txs.is_empty() {
                return Ok(());
            }
            out.send(Message::Txs(txs)).await.map_err(|_| ())
        }
        _ => Ok(()),
    }
}
