//! Compact block relay, as BIP152: a new block travels as its header, its
//! coinbase and a 6-byte short id per transfer; the receiver rebuilds it
//! from its mempool and asks (`GetBlockTxs`) only for the transfers it
//! lacks, in one more round trip. A block that cannot be rebuilt (a short
//! id collision, a peer that does not answer with what was asked) is
//! fetched whole by the ordinary header-announcement path.
//!
//! This module holds the pure part: short ids, building a compact block,
//! matching short ids against pending transfers and rebuilding a block. The
//! manager's side is in `relay.rs`.
//!
//! # Correctness
//! - Short ids are SipHash-2-4 of the transfer id under a key derived from
//!   the block hash and a per-block nonce chosen by the sender, so nobody can
//!   grind transfers whose short ids collide in every peer's mempool, as in
//!   BIP152.
//! - A rebuilt block is handed to the node only when its transaction root
//!   matches the header: a collision then means a full-block fetch, never a
//!   block judged invalid for something its sender did not do.
//! - Every list is bounded by the network's `max_block_transfers` before a
//!   rebuild allocates anything.

use std::collections::HashMap;
use std::hash::Hasher;

use borsh::{BorshDeserialize, BorshSerialize};
use cairn_consensus::block::merkle_root;
use cairn_consensus::hash::tagged;
use cairn_consensus::{Block, BlockHash, BlockHeader, Coinbase, SignedTransfer, TxId};

/// Bytes in a short transfer id.
pub const SHORT_ID_BYTES: usize = 6;

/// A transfer's short id within one compact block.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize,
)]
pub struct ShortId(pub [u8; SHORT_ID_BYTES]);

/// The SipHash key of one compact block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortIdKey {
    k0: u64,
    k1: u64,
}

impl ShortIdKey {
    /// The key for the block `hash` under the sender's `nonce`.
    pub fn new(hash: &BlockHash, nonce: u64) -> ShortIdKey {
        let h = tagged("cairn/compact/key", &[&hash.0, &nonce.to_le_bytes()]);
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&h[..8]);
        k1.copy_from_slice(&h[8..16]);
        ShortIdKey {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    /// The short id of `id`: the low 48 bits of SipHash-2-4.
    pub fn short_id(&self, id: &TxId) -> ShortId {
        // std's SipHasher is SipHash-2-4, deprecated only as a HashMap
        // hasher (not for being insecure); its output is fixed by the spec
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.k0, self.k1);
        h.write(&id.0);
        let v = h.finish().to_le_bytes();
        let mut s = [0u8; SHORT_ID_BYTES];
        s.copy_from_slice(&v[..SHORT_ID_BYTES]);
        ShortId(s)
    }
}

/// A block as its header, coinbase and short transfer ids (block order).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CompactBlock {
    pub header: BlockHeader,
    /// Salts the short ids (chosen by the sender).
    pub nonce: u64,
    pub coinbase: Coinbase,
    pub short_ids: Vec<ShortId>,
}

impl CompactBlock {
    pub fn of(block: &Block, nonce: u64) -> CompactBlock {
        let key = ShortIdKey::new(&block.hash(), nonce);
        CompactBlock {
            header: block.header,
            nonce,
            coinbase: block.coinbase,
            short_ids: block
                .transfers
                .iter()
                .map(|t| key.short_id(&t.id()))
                .collect(),
        }
    }

    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    pub fn key(&self) -> ShortIdKey {
        ShortIdKey::new(&self.hash(), self.nonce)
    }
}

/// Asks for the transfers at `indexes` (positions among the block's
/// transfers, increasing) of a compact block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct GetBlockTxs {
    pub block: BlockHash,
    pub indexes: Vec<u32>,
}

/// The answer to [`GetBlockTxs`]: the transfers asked for, in that order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockTxs {
    pub block: BlockHash,
    pub transfers: Vec<SignedTransfer>,
}

/// Finds, among `pending`, the transfers whose short ids are in `ids`.
/// Returns one slot per id; a slot stays empty when no transfer or more
/// than one transfer matches it (the second case is left to the fetch).
pub fn match_short_ids<'a>(
    key: &ShortIdKey,
    ids: &[ShortId],
    pending: impl Iterator<Item = (&'a TxId, &'a SignedTransfer)>,
) -> Vec<Option<SignedTransfer>> {
    let mut wanted: HashMap<ShortId, usize> = HashMap::with_capacity(ids.len());
    let mut dup = vec![false; ids.len()];
    for (i, s) in ids.iter().enumerate() {
        if let Some(first) = wanted.insert(*s, i) {
            // two transfers of the block share a short id: fetch both
            dup[first] = true;
            dup[i] = true;
        }
    }
    let mut out: Vec<Option<SignedTransfer>> = vec![None; ids.len()];
    let mut ambiguous = vec![false; ids.len()];
    for (id, tx) in pending {
        if let Some(&i) = wanted.get(&key.short_id(id)) {
            if out[i].is_some() {
                ambiguous[i] = true;
            }
            out[i] = Some(*tx);
        }
    }
    for (i, slot) in out.iter_mut().enumerate() {
        if dup[i] || ambiguous[i] {
            *slot = None;
        }
    }
    out
}

/// A compact block being rebuilt.
#[derive(Clone, Debug)]
pub struct PartialBlock {
    pub compact: CompactBlock,
    pub slots: Vec<Option<SignedTransfer>>,
}

/// Why a compact block could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    #[error("{missing} transfers are still missing")]
    Missing { missing: usize },
    #[error("the rebuilt transfers do not match the header's transaction root")]
    RootMismatch,
    #[error("the answer holds {got} transfers for {asked} asked")]
    WrongCount { got: usize, asked: usize },
    #[error("the answer is for another block")]
    OtherBlock,
}

impl PartialBlock {
    pub fn new(compact: CompactBlock, slots: Vec<Option<SignedTransfer>>) -> PartialBlock {
        PartialBlock { compact, slots }
    }

    /// Positions still empty.
    pub fn missing(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect()
    }

    /// Fills the missing positions with `answer`, which must hold exactly
    /// one transfer per missing position, in order.
    pub fn fill(&mut self, answer: BlockTxs) -> Result<(), RebuildError> {
        if answer.block != self.compact.hash() {
            return Err(RebuildError::OtherBlock);
        }
        let missing = self.missing();
        if answer.transfers.len() != missing.len() {
            return Err(RebuildError::WrongCount {
                got: answer.transfers.len(),
                asked: missing.len(),
            });
        }
        for (i, tx) in missing.into_iter().zip(answer.transfers) {
            if let Some(slot) = self.slots.get_mut(i as usize) {
                *slot = Some(tx);
            }
        }
        Ok(())
    }

    /// The block, once every slot is filled and the transfers match the
    /// header's transaction root.
    pub fn rebuild(&self) -> Result<Block, RebuildError> {
        let missing = self.slots.iter().filter(|s| s.is_none()).count();
        if missing > 0 {
            return Err(RebuildError::Missing { missing });
        }
        let transfers: Vec<SignedTransfer> = self.slots.iter().flatten().copied().collect();
        let block = Block {
            header: self.compact.header,
            coinbase: self.compact.coinbase,
            transfers,
        };
        if merkle_root(&block.tx_ids()) != block.header.tx_root {
            return Err(RebuildError::RootMismatch);
        }
        Ok(block)
    }
}

/// The transfers of `block` at `indexes`, or `None` when an index is out
/// of range.
pub fn pick(block: &Block, indexes: &[u32]) -> Option<Vec<SignedTransfer>> {
    indexes
        .iter()
        .map(|&i| block.transfers.get(i as usize).copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{Amount, COIN};

    /// A block of `n` transfers (from `n` funded senders).
    fn block_with(n: u64) -> Block {
        let b = ChainBuilder::new(testkit::params(), n, Amount(COIN));
        let txs = (0..n)
            .map(|i| b.transfer(i, address(n + i), Amount(1), Amount(1), 0))
            .collect();
        b.build(txs, address(1))
    }

    fn pool(block: &Block) -> Vec<(TxId, SignedTransfer)> {
        block.transfers.iter().map(|t| (t.id(), *t)).collect()
    }

    #[test]
    fn a_5000_transfer_block_travels_in_under_a_tenth_of_its_bytes() {
        let block = block_with(5000);
        let full = Message::Block(Box::new(block.clone())).encode().len();
        let cb = CompactBlock::of(&block, 7);
        let compact = Message::CompactBlock(Box::new(cb)).encode().len();
        let ratio = compact as f64 / full as f64;
        println!("full {full} B, compact {compact} B, ratio {ratio:.4}");
        assert!(compact * 10 < full, "compact {compact} B, full {full} B");
    }

    #[test]
    fn rebuilds_from_a_pool_that_has_every_transfer() {
        let block = block_with(50);
        let cb = CompactBlock::of(&block, 1);
        let pool = pool(&block);
        let slots = match_short_ids(&cb.key(), &cb.short_ids, pool.iter().map(|(i, t)| (i, t)));
        let p = PartialBlock::new(cb, slots);
        assert!(p.missing().is_empty());
        assert_eq!(p.rebuild().unwrap(), block);
    }

    #[test]
    fn asks_for_exactly_what_is_missing_and_fills_it() {
        let block = block_with(40);
        let cb = CompactBlock::of(&block, 2);
        // the pool lacks transfers 3, 17 and 39
        let pool: Vec<_> = pool(&block)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| ![3, 17, 39].contains(i))
            .map(|(_, e)| e)
            .collect();
        let slots = match_short_ids(&cb.key(), &cb.short_ids, pool.iter().map(|(i, t)| (i, t)));
        let mut p = PartialBlock::new(cb, slots);
        assert_eq!(p.missing(), vec![3, 17, 39]);
        assert!(matches!(
            p.rebuild(),
            Err(RebuildError::Missing { missing: 3 })
        ));
        let answer = BlockTxs {
            block: block.hash(),
            transfers: pick(&block, &p.missing()).unwrap(),
        };
        // a short or foreign answer is refused and changes nothing
        let mut short = answer.clone();
        short.transfers.pop();
        assert!(matches!(
            p.fill(short),
            Err(RebuildError::WrongCount { got: 2, asked: 3 })
        ));
        let mut foreign = answer.clone();
        foreign.block = BlockHash([9; 32]);
        assert_eq!(p.fill(foreign), Err(RebuildError::OtherBlock));
        assert_eq!(p.missing().len(), 3);
        p.fill(answer).unwrap();
        assert_eq!(p.rebuild().unwrap(), block);
    }

    #[test]
    fn a_wrong_transfer_in_a_slot_is_caught_by_the_root() {
        // what a short id collision with a pending transfer looks like
        let block = block_with(10);
        let other = block_with(12);
        let cb = CompactBlock::of(&block, 3);
        let mut slots: Vec<_> = block.transfers.iter().map(|t| Some(*t)).collect();
        slots[4] = Some(other.transfers[11]);
        let p = PartialBlock::new(cb, slots);
        assert_eq!(p.rebuild(), Err(RebuildError::RootMismatch));
    }

    #[test]
    fn ambiguous_short_ids_are_left_to_the_fetch() {
        let block = block_with(5);
        let cb = CompactBlock::of(&block, 4);
        let key = cb.key();
        let mut ids = cb.short_ids.clone();
        // two positions share one short id
        ids[1] = ids[0];
        let pool = pool(&block);
        let slots = match_short_ids(&key, &ids, pool.iter().map(|(i, t)| (i, t)));
        assert!(slots[0].is_none() && slots[1].is_none());
        assert!(slots[2..].iter().all(|s| s.is_some()));
        // two pending transfers map to one wanted id: neither is trusted
        let one = [cb.short_ids[2]];
        let twice = [pool[2], pool[2]];
        let slots = match_short_ids(&key, &one, twice.iter().map(|(i, t)| (i, t)));
        assert!(slots[0].is_none());
    }

    #[test]
    fn keys_differ_per_block_and_nonce() {
        let block = block_with(3);
        let id = block.transfers[0].id();
        let a = ShortIdKey::new(&block.hash(), 1).short_id(&id);
        let b = ShortIdKey::new(&block.hash(), 2).short_id(&id);
        let c = ShortIdKey::new(&BlockHash([1; 32]), 1).short_id(&id);
        assert!(a != b && a != c);
        assert_eq!(a, ShortIdKey::new(&block.hash(), 1).short_id(&id));
    }

    #[test]
    fn pick_refuses_out_of_range() {
        let block = block_with(3);
        assert_eq!(pick(&block, &[0, 2]).unwrap().len(), 2);
        assert!(pick(&block, &[3]).is_none());
    }
}
