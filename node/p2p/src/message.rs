//! The wire protocol: frames (a 4-byte big-endian length, encrypted with
//! the rest, see [`crate::transport`]) each holding one borsh [`Message`].
//!
//! # Correctness
//! The frame length is checked against a limit before any byte of the frame
//! is buffered beyond it: [`HANDSHAKE_FRAME_LIMIT`] before the handshake,
//! [`frame_limit`] after. A message decodes with `borsh::from_slice` (no
//! trailing bytes) and then [`Message::check`] bounds every list, so no
//! handler sees a list longer than the protocol allows.
//!
//! Blocks are announced by header ([`Message::NewHeaders`]), never by bare
//! hash: a receiver checks the proof of work before it asks for anything.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use borsh::{BorshDeserialize, BorshSerialize};
use cairn_consensus::{Block, BlockHash, BlockHeader, SignedTransfer, TxId, Work};

use crate::compact::{BlockTxs, CompactBlock, GetBlockTxs};

/// Protocol version spoken by this node (2: header announcements, typed
/// rejections, binary addresses; 3: Noise-encrypted connections with node
/// ids, no hello nonce).
pub const PROTOCOL_VERSION: u32 = 3;
/// Frame limit before the handshake completes.
pub const HANDSHAKE_FRAME_LIMIT: usize = 4096;
/// Most headers in one `Headers` answer.
pub const MAX_HEADERS: usize = 2000;
/// Most headers in one `NewHeaders` announcement.
pub const MAX_ANNOUNCE: usize = 16;
/// Most hashes in one `GetHeaders` locator.
pub const MAX_LOCATOR: usize = 64;
/// Most blocks asked for in one `GetBlocks`.
pub const MAX_GET_BLOCKS: usize = 128;
/// Most items in one transfer inventory or request, or one `NotFound`.
pub const MAX_INV: usize = 1000;
/// Most addresses in one `Addrs`.
pub const MAX_ADDRS: usize = 250;
/// Longest network name, user agent or reject reason, in bytes.
pub const MAX_TEXT: usize = 256;
/// Most short ids in a compact block, or transfers asked for or sent for
/// one (the manager checks the network's `max_block_transfers` as well).
pub const MAX_COMPACT_ITEMS: usize = 1 << 20;

/// The first message on a connection, from both sides.
///
/// Everything in it is a claim: the best block and work say whom to ask
/// for headers, nothing more.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// The network's name (informational; the genesis hash decides).
    pub network: String,
    pub genesis: BlockHash,
    pub best_height: u64,
    pub best_hash: BlockHash,
    pub best_work: Work,
    /// The port this node accepts connections on, if it listens.
    pub listen_port: Option<u16>,
    pub user_agent: String,
}

/// Why a node refuses a connection; the dialler decides how long to wait
/// from it. None of these is misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RejectCode {
    Other,
    /// Another genesis hash.
    WrongNetwork,
    /// A protocol version this node does not speak.
    ProtocolVersion,
    /// The connection leads back to its own node.
    SelfConnection,
    /// Already connected to that node.
    Duplicate,
    /// No slot left for this connection.
    Full,
    /// The receiver banned the sender's address.
    Banned,
    /// The receiver's operator disconnected this peer and keeps it away.
    OperatorDisconnected,
    /// A link fault set for an experiment (a partition) separates the two.
    Partitioned,
    /// The receiver is shutting down.
    ShuttingDown,
    /// The receiver's allow list (`--allow-peers`) does not name the
    /// sender's node id.
    NotAllowed,
}

impl RejectCode {
    pub fn describe(self) -> &'static str {
        match self {
            RejectCode::Other => "refused",
            RejectCode::WrongNetwork => "on another network",
            RejectCode::ProtocolVersion => "speaks another protocol version",
            RejectCode::SelfConnection => "is this node itself",
            RejectCode::Duplicate => "already connected",
            RejectCode::Full => "has no free connection slot",
            RejectCode::Banned => "has banned this node's address",
            RejectCode::OperatorDisconnected => {
                "was told by its operator to stay away from this node (net_disconnectPeer)"
            }
            RejectCode::Partitioned => "is partitioned from this node by a link fault",
            RejectCode::ShuttingDown => "is shutting down",
            RejectCode::NotAllowed => "does not allow this node id (--allow-peers)",
        }
    }
}

/// A refusal, sent right before closing.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Reject {
    pub code: RejectCode,
    pub reason: String,
}

/// An IP socket address on the wire (IPv4 as IPv4-mapped IPv6). Host names
/// cannot be expressed: addresses learned from peers are IPs only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct NetAddr {
    pub ip: [u8; 16],
    pub port: u16,
}

impl From<SocketAddr> for NetAddr {
    fn from(a: SocketAddr) -> Self {
        let v6 = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        NetAddr {
            ip: v6.octets(),
            port: a.port(),
        }
    }
}

impl From<NetAddr> for SocketAddr {
    fn from(a: NetAddr) -> Self {
        let v6 = Ipv6Addr::from(a.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, a.port)
    }
}

/// Every message.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    Hello(Hello),
    Reject(Reject),
    Ping(u64),
    Pong(u64),
    /// Ask for known peer addresses (answered once per connection).
    GetAddrs,
    Addrs(Vec<NetAddr>),
    /// Ask for the headers after the first locator hash on the receiver's
    /// best chain (up to [`MAX_HEADERS`]).
    GetHeaders(Vec<BlockHash>),
    /// The answer to `GetHeaders`; fewer than [`MAX_HEADERS`] means the
    /// sender has no more.
    Headers(Vec<BlockHeader>),
    /// New best blocks of the sender, oldest first (unsolicited).
    NewHeaders(Vec<BlockHeader>),
    /// Ask for block bodies.
    GetBlocks(Vec<BlockHash>),
    Block(Box<Block>),
    /// Requested blocks the sender does not have.
    NotFound(Vec<BlockHash>),
    /// New transfers the sender has (ids).
    InvTxs(Vec<TxId>),
    GetTxs(Vec<TxId>),
    Txs(Vec<SignedTransfer>),
    /// After the hellos: the sender accepts the connection (the other
    /// answer is a `Reject`). A connection is up once both sides sent it.
    Welcome,
    /// The sender understands compact blocks and wants new blocks that way
    /// (BIP152's high-bandwidth mode); sent once after the welcome.
    SendCompact,
    /// A new best block of the sender, as header, coinbase and short ids
    /// (see `compact.rs`), instead of a `NewHeaders` announcement.
    CompactBlock(Box<CompactBlock>),
    /// Ask for the transfers of a compact block the receiver lacks.
    GetBlockTxs(GetBlockTxs),
    /// The answer to `GetBlockTxs`.
    BlockTxs(BlockTxs),
}

/// A message that breaks the protocol's bounds.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("{what} holds {n} items, over the limit of {max}")]
    TooMany {
        what: &'static str,
        n: usize,
        max: usize,
    },
}

/// The borsh tag of [`Message::Block`], for serving stored block bytes
/// without decoding them.
pub const BLOCK_TAG: u8 = 10;

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// The frame of a `Block` message around a block's stored encoding.
    pub fn block_frame(block_bytes: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(block_bytes.len() + 1);
        v.push(BLOCK_TAG);
        v.extend_from_slice(block_bytes);
        v
    }

    /// Decodes one frame and checks every bound.
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        let m: Message =
            borsh::from_slice(frame).map_err(|e| DecodeError::Undecodable(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Bounds on list lengths and texts.
    pub fn check(&self) -> Result<(), DecodeError> {
        let over = |what: &'static str, n: usize, max: usize| {
            if n > max {
                Err(DecodeError::TooMany { what, n, max })
            } else {
                Ok(())
            }
        };
        match self {
            Message::Hello(h) => {
                over("network name", h.network.len(), MAX_TEXT)?;
                over("user agent", h.user_agent.len(), MAX_TEXT)
            }
            Message::Reject(r) => over("reject reason", r.reason.len(), MAX_TEXT),
            Message::Addrs(a) => over("addrs", a.len(), MAX_ADDRS),
            Message::GetBlocks(v) => over("block request", v.len(), MAX_GET_BLOCKS),
            Message::NotFound(v) => over("not-found list", v.len(), MAX_INV),
            Message::InvTxs(v) | Message::GetTxs(v) => over("transfer list", v.len(), MAX_INV),
            Message::GetHeaders(v) => over("locator", v.len(), MAX_LOCATOR),
            Message::Headers(v) => over("headers", v.len(), MAX_HEADERS),
            Message::NewHeaders(v) => over("announced headers", v.len(), MAX_ANNOUNCE),
            Message::Txs(v) => over("transfers", v.len(), MAX_INV),
            Message::CompactBlock(c) => over("short ids", c.short_ids.len(), MAX_COMPACT_ITEMS),
            Message::GetBlockTxs(g) => over("compact request", g.indexes.len(), MAX_COMPACT_ITEMS),
            Message::BlockTxs(b) => over("compact answer", b.transfers.len(), MAX_COMPACT_ITEMS),
            Message::Ping(_)
            | Message::Pong(_)
            | Message::GetAddrs
            | Message::Block(_)
            | Message::Welcome
            | Message::SendCompact => Ok(()),
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Reject(_) => "reject",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::GetAddrs => "getaddrs",
            Message::Addrs(_) => "addrs",
            Message::GetHeaders(_) => "getheaders",
            Message::Headers(_) => "headers",
            Message::NewHeaders(_) => "newheaders",
            Message::GetBlocks(_) => "getblocks",
            Message::Block(_) => "block",
            Message::NotFound(_) => "notfound",
            Message::InvTxs(_) => "invtxs",
            Message::GetTxs(_) => "gettxs",
            Message::Txs(_) => "txs",
            Message::Welcome => "welcome",
            Message::SendCompact => "sendcompact",
            Message::CompactBlock(_) => "compactblock",
            Message::GetBlockTxs(_) => "getblocktxs",
            Message::BlockTxs(_) => "blocktxs",
        }
    }
}

/// The frame limit after the handshake for a network whose blocks are at
/// most `max_block_bytes`.
pub fn frame_limit(max_block_bytes: usize) -> usize {
    // the largest message is a block, or 2000 headers, or 1000 transfers
    max_block_bytes
        .max(MAX_HEADERS * cairn_consensus::block::HEADER_BYTES)
        .max(MAX_INV * cairn_consensus::transfer::SIGNED_TRANSFER_BYTES)
        + 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{Amount, COIN};

    #[test]
    fn round_trip_and_bounds() {
        let m = Message::GetBlocks(vec![BlockHash([1; 32]); 3]);
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        let big = Message::GetBlocks(vec![BlockHash([1; 32]); MAX_GET_BLOCKS + 1]);
        assert!(Message::decode(&big.encode()).is_err());
        let mut bytes = m.encode();
        bytes.push(0);
        assert!(Message::decode(&bytes).is_err(), "trailing bytes");
        assert!(Message::decode(&[200, 1, 2]).is_err(), "unknown variant");
        // a length prefix claiming a billion hashes with none present
        let mut bomb = vec![6u8];
        bomb.extend_from_slice(&1_000_000_000u32.to_le_bytes());
        assert!(Message::decode(&bomb).is_err());
        let r = Message::Reject(Reject {
            code: RejectCode::OperatorDisconnected,
            reason: "x".into(),
        });
        assert_eq!(Message::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn block_frames_match_the_encoding() {
        let mut b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
        b.extend(vec![], address(1));
        let block = b.blocks[1].clone();
        let m = Message::Block(Box::new(block.clone()));
        assert_eq!(Message::block_frame(&block.encode()), m.encode());
    }

    #[test]
    fn addresses_round_trip() {
        for s in ["127.0.0.1:7541", "[2a00::1]:9", "10.0.0.1:1"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(SocketAddr::from(NetAddr::from(a)), a);
        }
    }
}
