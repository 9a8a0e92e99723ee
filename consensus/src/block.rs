//! Blocks: header, coinbase, transfers, the transaction Merkle root and heights.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::amount::Amount;
use crate::encoding::{self, DecodeError};
use crate::hash::{BlockHash, StateRoot, TxId, TxRoot, tagged};
use crate::pow::{PowHasher, Target};
use crate::transfer::SignedTransfer;

/// The only header version defined so far.
pub const HEADER_VERSION: u32 = 1;

/// A block height: the number of blocks between a block and genesis.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    pub const GENESIS: Height = Height(0);

    /// The next height; `None` at `u64::MAX`.
    pub fn next(self) -> Option<Height> {
        self.0.checked_add(1).map(Height)
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A block header.
///
/// # Consensus
/// The block hash is `SHA-256(SHA-256(prehash || nonce_le))` with
/// `prehash = tagged("cairn/header/v1", borsh(header without nonce))`, so a
/// miner computes the prehash once per template and then pays two SHA-256
/// compressions per nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    pub version: u32,
    /// Hash of the previous block. For genesis: the hash of the network spec.
    pub parent: BlockHash,
    pub height: Height,
    /// Merkle root of the coinbase id followed by the transfer ids.
    pub tx_root: TxRoot,
    /// Commitment to every account after this block, see [`crate::state`].
    pub state_root: StateRoot,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub target: Target,
    pub nonce: u64,
}

/// Encoded size of a header.
pub const HEADER_BYTES: usize = 4 + 32 + 8 + 32 + 32 + 8 + 32 + 8;

impl BlockHeader {
    /// The hash of every field but the nonce.
    pub fn prehash(&self) -> [u8; 32] {
        let mut bytes = encoding::encode(self);
        bytes.truncate(HEADER_BYTES - 8); // the nonce is the last field
        tagged("cairn/header/v1", &[&bytes])
    }

    /// The block hash (also its proof-of-work hash).
    pub fn hash(&self) -> BlockHash {
        PowHasher::new(&self.prehash()).hash(self.nonce)
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        encoding::decode("block header", bytes, HEADER_BYTES)
    }
}

/// The first transaction of every block: pays the block reward plus fees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Coinbase {
    /// Equal to the block's height; makes every coinbase id unique.
    pub height: Height,
    pub recipient: Address,
    pub amount: Amount,
}

impl Coinbase {
    pub fn id(&self) -> TxId {
        TxId(tagged("cairn/coinbase/v1", &[&encoding::encode(self)]))
    }
}

/// A full block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub coinbase: Coinbase,
    pub transfers: Vec<SignedTransfer>,
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// The coinbase id followed by the transfer ids, in block order.
    pub fn tx_ids(&self) -> Vec<TxId> {
        let mut ids = Vec::with_capacity(self.transfers.len() + 1);
        ids.push(self.coinbase.id());
        ids.extend(self.transfers.iter().map(|t| t.id()));
        ids
    }

    /// The Merkle root the header must carry.
    pub fn compute_tx_root(&self) -> TxRoot {
        merkle_root(&self.tx_ids())
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes a block, refusing more than `max_bytes` before decoding.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Block, DecodeError> {
        encoding::decode("block", bytes, max_bytes)
    }

    /// The size of the encoding, without encoding.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES
            + COINBASE_BYTES
            + 4
            + self.transfers.len() * crate::transfer::SIGNED_TRANSFER_BYTES
    }
}

/// Encoded size of a coinbase.
pub const COINBASE_BYTES: usize = 8 + 20 + 8;

/// The Merkle root of `ids`.
///
/// # Consensus
/// Leaves and inner nodes are hashed under different tags and an odd node is
/// carried up unchanged rather than paired with itself, the tree shape of
/// RFC 6962. Duplicating leaves therefore changes the root: the malleability
/// of Bitcoin's tree (CVE-2012-2459, where `[a, b, c]` and `[a, b, c, c]`
/// share a root) cannot occur, and an inner node can never pass for a leaf.
pub fn merkle_root(ids: &[TxId]) -> TxRoot {
    if ids.is_empty() {
        return TxRoot(tagged("cairn/merkle/empty", &[]));
    }
    // each level is hashed on all cores when it is large (same result)
    let mut level: Vec<[u8; 32]> = crate::par::map(ids, |id| tagged("cairn/merkle/leaf", &[&id.0]));
    while level.len() > 1 {
        let pairs: Vec<&[[u8; 32]]> = level.chunks(2).collect();
        level = crate::par::map(&pairs, |pair| match pair {
            [l, r] => tagged("cairn/merkle/node", &[l, r]),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        });
    }
    TxRoot(level[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: u8) -> Vec<TxId> {
        (0..n).map(|i| TxId([i; 32])).collect()
    }

    #[test]
    fn duplicated_leaves_change_the_root() {
        // CVE-2012-2459: in Bitcoin these pairs share a root.
        let base = ids(3);
        let mut dup = base.clone();
        dup.push(base[2]);
        assert_ne!(merkle_root(&base), merkle_root(&dup));
        let six = ids(6);
        let mut dup6 = six.clone();
        dup6.extend_from_slice(&six[4..6]);
        assert_ne!(merkle_root(&six), merkle_root(&dup6));
    }

    #[test]
    fn inner_node_is_not_a_leaf() {
        let two = ids(2);
        let l = tagged("cairn/merkle/leaf", &[&two[0].0]);
        let r = tagged("cairn/merkle/leaf", &[&two[1].0]);
        let inner = tagged("cairn/merkle/node", &[&l, &r]);
        // a one-leaf tree whose id equals the inner node must differ
        assert_ne!(merkle_root(&[TxId(inner)]), merkle_root(&two));
    }

    #[test]
    fn header_size_and_prehash_excludes_nonce() {
        let mut h = BlockHeader {
            version: 1,
            parent: BlockHash([1; 32]),
            height: Height(5),
            tx_root: TxRoot([2; 32]),
            state_root: StateRoot([3; 32]),
            time_ms: 99,
            target: Target([0xff; 32]),
            nonce: 1,
        };
        assert_eq!(h.encode().len(), HEADER_BYTES);
        let pre = h.prehash();
        let hash1 = h.hash();
        h.nonce = 2;
        assert_eq!(h.prehash(), pre);
        assert_ne!(h.hash(), hash1);
        h.time_ms = 100;
        assert_ne!(h.prehash(), pre);
    }

    proptest! {
        #[test]
        fn different_id_lists_have_different_roots(a in proptest::collection::vec(any::<[u8; 32]>(), 0..40), b in proptest::collection::vec(any::<[u8; 32]>(), 0..40)) {
            let a: Vec<TxId> = a.into_iter().map(TxId).collect();
            let b: Vec<TxId> = b.into_iter().map(TxId).collect();
            prop_assume!(a != b);
            prop_assert_ne!(merkle_root(&a), merkle_root(&b));
        }

        /// Every prefix extension by repeating the tail changes the root.
        #[test]
        fn repeating_a_suffix_changes_the_root(n in 1u8..40, k in 1usize..8) {
            let base = ids(n);
            let k = k.min(base.len());
            let mut ext = base.clone();
            ext.extend_from_slice(&base[base.len() - k..]);
            prop_assert_ne!(merkle_root(&base), merkle_root(&ext));
        }
    }
}
