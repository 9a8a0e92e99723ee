//! The encrypted, authenticated transport: a Noise XX handshake (the `snow`
//! crate) on every connection before any Cairn message, then frames that
//! are encrypted and authenticated.
//!
//! # Identity
//! Each node has a persistent ed25519 key (its datadir's `node.key`); the
//! public key is its [`NodeId`]. Noise authenticates an X25519 static key,
//! generated afresh at each start; the node key signs that static key and
//! the signature travels encrypted in the handshake (as libp2p does), so a
//! peer proves it holds the node key behind the id it presents.
//!
//! # Handshake
//! ```text
//! -> e            payload: Intro (magic, protocol version, genesis), cleartext
//! <- e, ee, s, es payload: Identity of the responder (encrypted)
//! -> s, se        payload: Identity of the initiator (encrypted)
//! ```
//! The prologue binds the magic, the protocol version and the genesis hash,
//! so two nodes of different networks cannot complete a handshake. The
//! cleartext intro lets the responder say why it refuses a node of another
//! network or version (a cleartext `cairn-reject:` message) instead of
//! failing on a decryption error; anything that is not a Cairn intro is
//! dropped without an answer, after reading at most one small message.
//!
//! # Frames
//! Every Noise message travels as a 2-byte big-endian length and at most
//! 65,535 bytes. A Cairn frame is a 4-byte big-endian plaintext length
//! followed by the frame, cut into Noise messages; the declared length is
//! checked against the frame limit before anything is buffered for it.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use cairn_consensus::BlockHash;

/// The Noise protocol: XX, X25519, ChaCha20-Poly1305, BLAKE2s.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// First bytes of a Cairn intro and of the prologue.
pub const MAGIC: &[u8; 8] = b"cairn/p2";
/// A cleartext refusal during the handshake starts with this.
pub const REJECT_PREFIX: &[u8] = b"cairn-reject: ";
/// Largest Noise message.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Authentication tag per Noise message.
const TAG: usize = 16;
/// Largest plaintext in one Noise message.
const MAX_CHUNK: usize = MAX_NOISE_MESSAGE - TAG;
/// Largest handshake message we read (the intro, or a key and identity).
const MAX_HANDSHAKE_MESSAGE: usize = 512;
/// Domain of the node key's signature over the Noise static key.
const IDENTITY_DOMAIN: &[u8] = b"cairn-noise-static-key:";

/// A node's identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl NodeId {
    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl FromStr for NodeId {
    type Err = String;

    fn from_str(s: &str) -> Result<NodeId, String> {
        let bytes = hex::decode(s.trim())
            .map_err(|e| format!("a node id is 64 hex digits ({e}): {s:?}"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("a node id is 64 hex digits: {s:?}"))?;
        VerifyingKey::from_bytes(&arr).map_err(|_| format!("{s} is not an ed25519 public key"))?;
        Ok(NodeId(arr))
    }
}

/// The node's persistent key.
pub struct NodeKey(SigningKey);

impl NodeKey {
    pub fn from_secret(secret: [u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(&secret))
    }

    pub fn generate() -> NodeKey {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        NodeKey::from_secret(secret)
    }

    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.id())
    }
}

/// What a node presents in every handshake: its node id, this run's Noise
/// static key and the node key's signature over it.
pub struct LocalKeys {
    pub id: NodeId,
    static_secret: Vec<u8>,
    identity: [u8; 96],
}

impl fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalKeys({})", self.id)
    }
}

fn params() -> snow::params::NoiseParams {
    NOISE_PARAMS.parse().expect("a valid Noise protocol name")
}

impl LocalKeys {
    /// Generates this run's Noise static key and signs it with `key`.
    pub fn new(key: &NodeKey) -> LocalKeys {
        let keypair = snow::Builder::new(params())
            .generate_keypair()
            .expect("the default resolver generates X25519 keys");
        let mut signed = IDENTITY_DOMAIN.to_vec();
        signed.extend_from_slice(&keypair.public);
        let sig = key.0.sign(&signed);
        let mut identity = [0u8; 96];
        identity[..32].copy_from_slice(&key.id().0);
        identity[32..].copy_from_slice(&sig.to_bytes());
        LocalKeys {
            id: key.id(),
            static_secret: keypair.private,
            identity,
        }
    }
}

/// What the two sides must agree on before they talk.
#[derive(Clone, Copy, Debug)]
pub struct Intro {
    pub protocol_version: u32,
    pub genesis: BlockHash,
}

const INTRO_BYTES: usize = 8 + 4 + 32;

impl Intro {
    fn encode(&self) -> [u8; INTRO_BYTES] {
        let mut out = [0u8; INTRO_BYTES];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&self.protocol_version.to_be_bytes());
        out[12..].copy_from_slice(&self.genesis.0);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Intro> {
        if bytes.len() != INTRO_BYTES || &bytes[..8] != MAGIC {
            return None;
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[8..12]);
        let mut genesis = [0u8; 32];
        genesis.copy_from_slice(&bytes[12..]);
        Some(Intro {
            protocol_version: u32::from_be_bytes(version),
            genesis: BlockHash(genesis),
        })
    }

    fn prologue(&self) -> Vec<u8> {
        let mut p = b"cairn-noise-prologue:".to_vec();
        p.extend_from_slice(&self.encode());
        p
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the connection failed during the encrypted handshake: {0}")]
    Io(#[from] std::io::Error),
    /// Not a Cairn peer (or a cleartext one): nothing is answered.
    #[error("not a Cairn handshake: {0}")]
    Garbage(String),
    /// The Noise handshake failed: keys, tampering, or another network.
    #[error("the encrypted handshake failed: {0}")]
    Noise(String),
    /// The peer's identity does not hold.
    #[error("the peer's identity does not verify: {0}")]
    BadIdentity(String),
    /// The dialled node is not the node id the operator named.
    #[error("the peer is node {got}, not the expected {expected}")]
    WrongNode { expected: NodeId, got: NodeId },
    /// The other side refused in cleartext (another network or version).
    #[error("the peer refused: {0}")]
    RefusedByPeer(String),
    /// We refused the other side's intro and told it why.
    #[error("{0}")]
    RefusedByUs(String),
}

async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> Result<Vec<u8>, HandshakeError> {
    let len = usize::from(stream.read_u16().await?);
    if len > limit {
        return Err(HandshakeError::Garbage(format!(
            "a handshake message of {len} bytes (at most {limit})"
        )));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &[u8],
) -> Result<(), HandshakeError> {
    let len = u16::try_from(msg.len())
        .map_err(|_| HandshakeError::Noise("handshake message too long".into()))?;
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

fn noise(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

/// Checks an identity payload against the Noise static key it must sign.
fn verify_identity(payload: &[u8], remote_static: Option<&[u8]>) -> Result<NodeId, HandshakeError> {
    let bad = |why: &str| HandshakeError::BadIdentity(why.to_string());
    if payload.len() != 96 {
        return Err(bad("an identity is a 32-byte key and a 64-byte signature"));
    }
    let remote_static = remote_static.ok_or_else(|| bad("no static key"))?;
    let mut id = [0u8; 32];
    id.copy_from_slice(&payload[..32]);
    let key = VerifyingKey::from_bytes(&id).map_err(|_| bad("not an ed25519 key"))?;
    let sig = Signature::from_slice(&payload[32..]).map_err(|_| bad("malformed signature"))?;
    let mut signed = IDENTITY_DOMAIN.to_vec();
    signed.extend_from_slice(remote_static);
    key.verify_strict(&signed, &sig)
        .map_err(|_| bad("the signature over the Noise key is wrong"))?;
    Ok(NodeId(id))
}

/// Runs the initiator's side on a fresh stream. `expected`: the node the
/// operator named, if any.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &LocalKeys,
    intro: Intro,
    expected: Option<NodeId>,
) -> Result<(NoiseCodec, NodeId), HandshakeError> {
    let prologue = intro.prologue();
    let mut hs = snow::Builder::new(params())
        .local_private_key(&keys.static_secret)
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_initiator())
        .map_err(noise)?;
    let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs.write_message(&intro.encode(), &mut buf).map_err(noise)?;
    write_message(stream, &buf[..n]).await?;
    // their ephemeral and static keys and identity, or a cleartext refusal
    let msg = read_message(stream, MAX_HANDSHAKE_MESSAGE).await?;
    if let Some(text) = msg.strip_prefix(REJECT_PREFIX) {
        return Err(HandshakeError::RefusedByPeer(
            String::from_utf8_lossy(text).into_owned(),
        ));
    }
    let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs.read_message(&msg, &mut payload).map_err(noise)?;
    let remote = verify_identity(&payload[..n], hs.get_remote_static())?;
    if let Some(expected) = expected
        && expected != remote
    {
        return Err(HandshakeError::WrongNode {
            expected,
            got: remote,
        });
    }
    let n = hs.write_message(&keys.identity, &mut buf).map_err(noise)?;
    write_message(stream, &buf[..n]).await?;
    let transport = hs.into_transport_mode().map_err(noise)?;
    Ok((NoiseCodec::new(transport), remote))
}

/// Runs the responder's side on a fresh stream.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &LocalKeys,
    intro: Intro,
) -> Result<(NoiseCodec, NodeId), HandshakeError> {
    // the intro travels in the clear: check it before any key work
    let msg = read_message(stream, MAX_HANDSHAKE_MESSAGE).await?;
    // msg 1 of XX is the initiator's 32-byte ephemeral key, then the payload
    let theirs = msg.get(32..).and_then(Intro::decode).ok_or_else(|| {
        HandshakeError::Garbage(format!("{} bytes without a Cairn intro", msg.len()))
    })?;
    if theirs.genesis != intro.genesis || theirs.protocol_version != intro.protocol_version {
        let why = if theirs.genesis != intro.genesis {
            format!(
                "another network: your genesis is {}, ours is {}",
                theirs.genesis, intro.genesis
            )
        } else {
            format!(
                "protocol version {} is not ours ({})",
                theirs.protocol_version, intro.protocol_version
            )
        };
        let mut refusal = REJECT_PREFIX.to_vec();
        refusal.extend_from_slice(why.as_bytes());
        let _ = write_message(stream, &refusal).await;
        return Err(HandshakeError::RefusedByUs(why));
    }
    let prologue = intro.prologue();
    let mut hs = snow::Builder::new(params())
        .local_private_key(&keys.static_secret)
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_responder())
        .map_err(noise)?;
    let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
    hs.read_message(&msg, &mut payload).map_err(noise)?;
    let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs.write_message(&keys.identity, &mut buf).map_err(noise)?;
    write_message(stream, &buf[..n]).await?;
    let msg = read_message(stream, MAX_HANDSHAKE_MESSAGE).await?;
    let n = hs.read_message(&msg, &mut payload).map_err(noise)?;
    let remote = verify_identity(&payload[..n], hs.get_remote_static())?;
    let transport = hs.into_transport_mode().map_err(noise)?;
    Ok((NoiseCodec::new(transport), remote))
}

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer declared a frame over the limit: abuse.
    #[error("a frame of {len} bytes (at most {limit})")]
    TooLarge { len: usize, limit: usize },
    /// Decryption failed or the framing is broken: tampering on the path,
    /// or a broken peer. Not counted against the peer (a third party can
    /// cause it).
    #[error("an encrypted frame does not authenticate: {0}")]
    Corrupt(String),
}

/// Encrypts and decrypts Cairn frames over a completed handshake.
pub struct NoiseCodec {
    state: snow::TransportState,
    limit: usize,
    /// The frame being received: its declared length and what has come.
    partial: Option<(usize, BytesMut)>,
    scratch: Vec<u8>,
}

impl fmt::Debug for NoiseCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoiseCodec(limit {})", self.limit)
    }
}

impl NoiseCodec {
    fn new(state: snow::TransportState) -> NoiseCodec {
        NoiseCodec {
            state,
            limit: 4096,
            partial: None,
            scratch: vec![0u8; MAX_NOISE_MESSAGE],
        }
    }

    /// Largest frame accepted from now on.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Appends one Noise message carrying exactly `plaintext` (at most
    /// 65,519 bytes; no frame length added), as it travels on the wire:
    /// lets tests and the fuzzer cut a frame stream where they like.
    pub fn seal_message(&mut self, plaintext: &[u8], dst: &mut BytesMut) -> std::io::Result<()> {
        if plaintext.len() > MAX_CHUNK {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "more than one Noise message holds",
            ));
        }
        let n = self
            .state
            .write_message(plaintext, &mut self.scratch)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        dst.put_u16(n as u16);
        dst.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    fn corrupt(why: impl Into<String>) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameError::Corrupt(why.into()),
        )
    }
}

impl Decoder for NoiseCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        loop {
            if src.len() < 2 {
                src.reserve(2);
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([src[0], src[1]]));
            if len < TAG {
                return Err(Self::corrupt("a Noise message shorter than its tag"));
            }
            if src.len() < 2 + len {
                src.reserve(2 + len - src.len());
                return Ok(None);
            }
            src.advance(2);
            let msg = src.split_to(len);
            let n = self
                .state
                .read_message(&msg, &mut self.scratch)
                .map_err(|e| Self::corrupt(e.to_string()))?;
            let mut plain = &self.scratch[..n];
            let (want, mut frame) = match self.partial.take() {
                Some(p) => p,
                None => {
                    if plain.len() < 4 {
                        return Err(Self::corrupt("a frame without its length"));
                    }
                    let want =
                        u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
                    if want > self.limit {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            FrameError::TooLarge {
                                len: want,
                                limit: self.limit,
                            },
                        ));
                    }
                    plain = &plain[4..];
                    (want, BytesMut::with_capacity(want.min(MAX_CHUNK)))
                }
            };
            if frame.len() + plain.len() > want {
                return Err(Self::corrupt("a frame longer than it said"));
            }
            frame.extend_from_slice(plain);
            if frame.len() == want {
                return Ok(Some(frame));
            }
            self.partial = Some((want, frame));
        }
    }
}

impl Encoder<Bytes> for NoiseCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let len = u32::try_from(frame.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
        let mut plain = BytesMut::with_capacity(4 + frame.len());
        plain.put_u32(len);
        plain.extend_from_slice(&frame);
        for chunk in plain.chunks(MAX_CHUNK) {
            let n = self
                .state
                .write_message(chunk, &mut self.scratch)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            dst.reserve(2 + n);
            dst.put_u16(n as u16);
            dst.extend_from_slice(&self.scratch[..n]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    fn intro(g: u8) -> Intro {
        Intro {
            protocol_version: 3,
            genesis: BlockHash([g; 32]),
        }
    }

    type Side = Result<(NoiseCodec, NodeId, tokio::io::DuplexStream), HandshakeError>;

    /// A handshake between two fresh nodes; a side that fails drops its
    /// end, as a connection would.
    async fn pair(expected: Option<NodeId>, a_intro: Intro) -> (Side, Side, NodeId, NodeId) {
        let (ka, kb) = (NodeKey::generate(), NodeKey::generate());
        let (la, lb) = (LocalKeys::new(&ka), LocalKeys::new(&kb));
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let (ra, rb) = tokio::join!(
            async move {
                initiate(&mut a, &la, a_intro, expected)
                    .await
                    .map(|(c, id)| (c, id, a))
            },
            async move {
                respond(&mut b, &lb, intro(1))
                    .await
                    .map(|(c, id)| (c, id, b))
            }
        );
        (ra, rb, ka.id(), kb.id())
    }

    #[tokio::test]
    async fn both_sides_learn_who_they_talk_to_and_frames_cross_encrypted() {
        let (ra, rb, ida, idb) = pair(None, intro(1)).await;
        let (ca, got_b, a) = ra.unwrap();
        let (mut cb, got_a, b) = rb.unwrap();
        assert_eq!((got_a, got_b), (ida, idb));
        cb.set_limit(300_000);
        let mut fa = Framed::new(a, ca);
        let mut fb = Framed::new(b, cb);
        // a frame larger than one Noise message is cut and rebuilt
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        for f in [vec![], vec![7u8; 10], big.clone()] {
            fa.send(Bytes::from(f.clone())).await.unwrap();
            assert_eq!(fb.next().await.unwrap().unwrap().to_vec(), f);
        }
    }

    #[tokio::test]
    async fn the_expected_node_id_is_enforced() {
        let other = NodeKey::generate().id();
        let (ra, rb, ..) = pair(Some(other), intro(1)).await;
        assert!(rb.is_err(), "the responder sees the connection end");
        assert!(matches!(ra, Err(HandshakeError::WrongNode { expected, .. }) if expected == other));
    }

    #[tokio::test]
    async fn another_network_is_told_in_cleartext() {
        let (ra, rb, ..) = pair(None, intro(2)).await;
        match ra {
            Err(HandshakeError::RefusedByPeer(why)) => {
                assert!(why.contains("another network"), "{why}")
            }
            other => panic!("{:?}", other.map(|r| r.1)),
        }
        assert!(matches!(rb, Err(HandshakeError::RefusedByUs(_))));
    }

    #[tokio::test]
    async fn garbage_and_cleartext_are_dropped_without_an_answer() {
        let keys = LocalKeys::new(&NodeKey::generate());
        for junk in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            vec![0xff; 40_000],
            vec![0, 3, 1, 2, 3],
        ] {
            let (mut a, mut b) = tokio::io::duplex(1 << 20);
            a.write_all(&junk).await.unwrap();
            let r = respond(&mut b, &keys, intro(1)).await;
            assert!(matches!(r, Err(HandshakeError::Garbage(_))), "{r:?}");
            drop(b);
            let mut answer = Vec::new();
            a.read_to_end(&mut answer).await.unwrap();
            assert!(answer.is_empty(), "garbage gets no answer");
        }
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_before_it_is_buffered() {
        let (ra, rb, ..) = pair(None, intro(1)).await;
        let (ca, _, a) = ra.unwrap();
        let (mut cb, _, b) = rb.unwrap();
        let mut fa = Framed::new(a, ca);
        cb.set_limit(1000);
        let mut fb = Framed::new(b, cb);
        fa.send(Bytes::from(vec![1u8; 5000])).await.unwrap();
        let err = fb.next().await.unwrap().unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<FrameError>());
        assert!(
            matches!(inner, Some(FrameError::TooLarge { len: 5000, .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_tampered_frame_does_not_authenticate() {
        let (ra, rb, ..) = pair(None, intro(1)).await;
        let (mut ca, _, mut a) = ra.unwrap();
        let (cb, _, b) = rb.unwrap();
        let mut wire = BytesMut::new();
        ca.encode(Bytes::from_static(b"pay 10 to alice"), &mut wire)
            .unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        a.write_all(&wire).await.unwrap();
        let mut fb = Framed::new(b, cb);
        let err = fb.next().await.unwrap().unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<FrameError>());
        assert!(matches!(inner, Some(FrameError::Corrupt(_))), "{err}");
    }

    #[test]
    fn node_ids_parse_and_print() {
        let id = NodeKey::generate().id();
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert!("zz".parse::<NodeId>().is_err());
        assert!("00".repeat(31).parse::<NodeId>().is_err());
    }
}
