//! The wire protocol: length-prefixed frames (a 4-byte big-endian length,
//! see `tokio_util::codec::LengthDelimitedCodec`) each holding one borsh
//! [`Message`].
//!
//! # Correctness
//! The frame length is checked against a limit before any byte of the
//! frame is buffered beyond it: 4 KiB before the handshake, the network's
//! largest block plus a margin after. A message decodes with
//! `borsh::from_slice` (no trailing bytes) and then [`Message::check`]
//! bounds every list, so no message is larger in memory than what its frame
//! justifies and no handler sees an unbounded list.

use borsh::{BorshDeserialize, BorshSerialize};
use cairn_consensus::{Block, BlockHash, BlockHeader, SignedTransfer, TxId, Work};

/// Protocol version spoken by this node.
pub const PROTOCOL_VERSION: u32 = 1;
/// Frame limit before the handshake completes.
pub const HANDSHAKE_FRAME_LIMIT: usize = 4096;
/// Most headers in one `Headers` message.
pub const MAX_HEADERS: usize = 2000;
/// Most hashes in one `GetHeaders` locator.
pub const MAX_LOCATOR: usize = 64;
/// Most items in one inventory or request.
pub const MAX_INV: usize = 1000;
/// Most addresses in one `Addrs`.
pub const MAX_ADDRS: usize = 250;
/// Longest address, user agent or reject reason, in bytes.
pub const MAX_TEXT: usize = 256;

/// The first message on a connection, from both sides.
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
    /// Random per process: a connection to ourselves shows our own nonce.
    pub node_nonce: u64,
    pub user_agent: String,
}

/// Every message after the handshake (and `Hello`, `Reject` during it).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    Hello(Hello),
    /// Why the sender is about to close the connection.
    Reject(String),
    Ping(u64),
    Pong(u64),
    /// Ask for known peer addresses.
    GetAddrs,
    Addrs(Vec<String>),
    /// New blocks the sender has (hashes).
    InvBlocks(Vec<BlockHash>),
    /// New transfers the sender has (ids).
    InvTxs(Vec<TxId>),
    /// Ask for the headers after the first locator hash on the receiver's
    /// best chain (up to [`MAX_HEADERS`]).
    GetHeaders(Vec<BlockHash>),
    Headers(Vec<BlockHeader>),
    /// Ask for block bodies.
    GetBlocks(Vec<BlockHash>),
    Block(Box<Block>),
    /// Requested blocks the sender does not have.
    NotFound(Vec<BlockHash>),
    GetTxs(Vec<TxId>),
    Txs(Vec<SignedTransfer>),
}

/// A message that breaks the protocol's bounds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolViolation(pub String);

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// Decodes one frame and checks every bound.
    pub fn decode(frame: &[u8]) -> Result<Message, ProtocolViolation> {
        let m: Message = borsh::from_slice(frame)
            .map_err(|e| ProtocolViolation(format!("undecodable message: {e}")))?;
        m.check()?;
        Ok(m)
    }

    /// Bounds on list lengths and texts.
    pub fn check(&self) -> Result<(), ProtocolViolation> {
        let over = |what: &str, n: usize, max: usize| {
            if n > max {
                Err(ProtocolViolation(format!(
                    "{what} holds {n} items, over the limit of {max}"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Message::Hello(h) => {
                over("network name", h.network.len(), MAX_TEXT)?;
                over("user agent", h.user_agent.len(), MAX_TEXT)
            }
            Message::Reject(r) => over("reject reason", r.len(), MAX_TEXT),
            Message::Addrs(a) => {
                over("addrs", a.len(), MAX_ADDRS)?;
                a.iter()
                    .try_for_each(|s| over("address", s.len(), MAX_TEXT))
            }
            Message::InvBlocks(v) | Message::GetBlocks(v) | Message::NotFound(v) => {
                over("block list", v.len(), MAX_INV)
            }
            Message::InvTxs(v) | Message::GetTxs(v) => over("transfer list", v.len(), MAX_INV),
            Message::GetHeaders(v) => over("locator", v.len(), MAX_LOCATOR),
            Message::Headers(v) => over("headers", v.len(), MAX_HEADERS),
            Message::Txs(v) => over("transfers", v.len(), MAX_INV),
            Message::Ping(_) | Message::Pong(_) | Message::GetAddrs | Message::Block(_) => Ok(()),
        }
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Reject(_) => "reject",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::GetAddrs => "getaddrs",
            Message::Addrs(_) => "addrs",
            Message::InvBlocks(_) => "invblocks",
            Message::InvTxs(_) => "invtxs",
            Message::GetHeaders(_) => "getheaders",
            Message::Headers(_) => "headers",
            Message::GetBlocks(_) => "getblocks",
            Message::Block(_) => "block",
            Message::NotFound(_) => "notfound",
            Message::GetTxs(_) => "gettxs",
            Message::Txs(_) => "txs",
        }
    }
}

/// The frame limit after the handshake for a network whose blocks are at
/// most `max_block_bytes`.
pub fn frame_limit(max_block_bytes: usize) -> usize {
    // the largest message is a block (or 2000 headers, far smaller)
    max_block_bytes.max(MAX_HEADERS * cairn_consensus::block::HEADER_BYTES) + 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let m = Message::InvBlocks(vec![BlockHash([1; 32]); 3]);
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        let big = Message::InvBlocks(vec![BlockHash([1; 32]); MAX_INV + 1]);
        assert!(Message::decode(&big.encode()).is_err());
        let mut bytes = m.encode();
        bytes.push(0);
        assert!(Message::decode(&bytes).is_err(), "trailing bytes");
        assert!(Message::decode(&[200, 1, 2]).is_err(), "unknown variant");
        // a length prefix claiming a billion hashes with none present
        let mut bomb = vec![6u8];
        bomb.extend_from_slice(&1_000_000_000u32.to_le_bytes());
        assert!(Message::decode(&bomb).is_err());
    }
}
