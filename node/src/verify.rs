//! Parallel signature checks with rayon.

use cairn_consensus::{Address, Block, BlockError, SignedTransfer, TxId};
use rayon::prelude::*;

/// Checks every transfer's signature with `verify_strict` across rayon's
/// global pool. On failure reports the lowest failing index, so the error
/// is the same as a sequential check would give.
pub fn verify_signatures(transfers: &[SignedTransfer], _ids: &[TxId]) -> Result<(), BlockError> {
    let all: Vec<usize> = (0..transfers.len()).collect();
    verify_some(transfers, &all)
}

/// [`Block::tx_ids`], on all cores for a large block.
pub fn tx_ids(block: &Block) -> Vec<TxId> {
    if block.transfers.len() < PARALLEL_MIN {
        return block.tx_ids();
    }
    let mut ids = Vec::with_capacity(block.transfers.len() + 1);
    ids.push(block.coinbase.id());
    ids.par_extend(block.transfers.par_iter().map(|t| t.id()));
    ids
}

/// The id and sender of each transfer, on all cores when there are many.
pub fn ids_and_senders(transfers: &[SignedTransfer]) -> Vec<(TxId, Address)> {
    if transfers.len() < PARALLEL_MIN {
        return transfers.iter().map(|t| (t.id(), t.sender())).collect();
    }
    transfers.par_iter().map(|t| (t.id(), t.sender())).collect()
}

/// Below this many transfers, cheap per-transfer work (ids, cache
/// lookups, a small block's state) is done on the calling thread: waking
/// the pool's threads costs more than it saves.
pub const PARALLEL_MIN: usize = 32;

/// Checks the signatures of `transfers[i]` for each `i` in `indices`, in
/// parallel; reports the lowest failing index.
fn verify_some(transfers: &[SignedTransfer], indices: &[usize]) -> Result<(), BlockError> {
    let check = |&i: &usize| transfers[i].verify_signature().err().map(|e| (i, e));
    // a signature (tens of microseconds) is worth another thread
    let failed = if indices.len() < 2 {
        indices.iter().filter_map(check).min_by_key(|(i, _)| *i)
    } else {
        indices.par_iter().filter_map(check).min_by_key(|(i, _)| *i)
    };
    match failed {
        None => Ok(()),
        Some((index, error)) => Err(BlockError::Transfer {
            index,
            txid: transfers[index].id(),
            error,
        }),
    }
}

/// Ids of transfers whose signature already passed `verify_strict` (in the
/// mempool), so that a block carrying them need not check them again.
///
/// # Correctness
/// A transfer id hashes the whole encoding, signature included, so a cached
/// id stands for exactly the bytes that were verified. The cache is bounded
/// (oldest forgotten first) and only ever saves work: a miss verifies.
pub struct SigCache {
    inner: std::sync::Mutex<(
        std::collections::HashSet<cairn_consensus::TxId>,
        std::collections::VecDeque<cairn_consensus::TxId>,
    )>,
    max: usize,
}

impl SigCache {
    pub fn new(max: usize) -> SigCache {
        SigCache {
            inner: std::sync::Mutex::new(Default::default()),
            max,
        }
    }

    pub fn insert(&self, id: cairn_consensus::TxId) {
        self.insert_all([id]);
    }

    /// Inserts `ids` under one lock.
    fn insert_all(&self, ids: impl IntoIterator<Item = cairn_consensus::TxId>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *g;
        for id in ids {
            if set.insert(id) {
                order.push_back(id);
            }
        }
        while order.len() > self.max {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }

    pub fn contains(&self, id: &cairn_consensus::TxId) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .contains(id)
    }

    /// Checks the signatures of `transfers` (with their `ids`) that the
    /// cache has not seen, in parallel; the same result as
    /// [`verify_signatures`].
    pub fn verify(&self, transfers: &[SignedTransfer], ids: &[TxId]) -> Result<(), BlockError> {
        if ids.len() != transfers.len() {
            debug_assert!(false, "{} ids for {} transfers", ids.len(), transfers.len());
            return verify_signatures(transfers, ids);
        }
        let unverified: Vec<usize> = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .enumerate()
                .filter(|(_, id)| !g.0.contains(id))
                .map(|(i, _)| i)
                .collect()
        };
        verify_some(transfers, &unverified)
    }

    /// Checks, on all cores at once, the signatures of the transfers of
    /// many blocks (a batch from a sync) that the cache has not seen, and
    /// remembers the good ones; a bad one is left for the block's own check
    /// to report. Blocks of a few transfers each then cost one parallel pass
    /// instead of one small one each. At most `max` signatures are checked,
    /// so that a batch never evicts what it just checked.
    ///
    /// Only blocks whose transfers match their header's root are checked
    /// (as `check_block` does before any signature): a peer cannot make us
    /// check the signatures of bodies its proof of work does not cover.
    pub fn warm(&self, blocks: &[Block], max: usize) {
        let max = max.min(self.max / 2);
        let mut txs: Vec<&SignedTransfer> = Vec::new();
        let mut ids: Vec<TxId> = Vec::new();
        for b in blocks {
            if txs.len() + b.transfers.len() > max {
                break;
            }
            let block_ids = tx_ids(b);
            if cairn_consensus::block::merkle_root(&block_ids) != b.header.tx_root {
                break;
            }
            txs.extend(&b.transfers);
            ids.extend_from_slice(&block_ids[1..]);
        }
        if txs.len() < 2 {
            return;
        }
        let unseen: Vec<usize> = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            (0..ids.len()).filter(|&i| !g.0.contains(&ids[i])).collect()
        };
        let good: Vec<TxId> = unseen
            .par_iter()
            .filter(|&&i| txs[i].verify_signature().is_ok())
            .map(|&i| ids[i])
            .collect();
        self.insert_all(good);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{Amount, COIN};

    #[test]
    fn warming_caches_the_good_signatures_of_a_batch_and_not_a_bad_one() {
        let mut b = ChainBuilder::new(testkit::params(), 3, Amount(100 * COIN));
        let mut blocks = Vec::new();
        for _ in 0..3 {
            let txs = (0..3)
                .map(|from| b.transfer(from, address(9), Amount(COIN), Amount(5), 0))
                .collect();
            blocks.push(b.extend(txs, address(7)));
        }
        // a forged signature in the last block (its header commits to it)
        let forged = {
            let t = &mut blocks[2].transfers[1];
            t.signature.0[0] ^= 1;
            t.id()
        };
        blocks[2].header.tx_root = blocks[2].compute_tx_root();
        let cache = SigCache::new(1000);
        cache.warm(&blocks, 1000);
        for t in blocks.iter().flat_map(|b| &b.transfers) {
            assert_eq!(cache.contains(&t.id()), t.id() != forged);
        }
        // the block's own check still reports the forgery
        let ids: Vec<TxId> = blocks[2].transfers.iter().map(|t| t.id()).collect();
        assert!(matches!(
            cache.verify(&blocks[2].transfers, &ids),
            Err(BlockError::Transfer { index: 1, .. })
        ));
        // at most `max` are checked, whole blocks at a time
        let fresh = SigCache::new(1000);
        fresh.warm(&blocks, 4);
        let cached = blocks
            .iter()
            .flat_map(|b| &b.transfers)
            .filter(|t| fresh.contains(&t.id()))
            .count();
        assert_eq!(cached, 3);
        // a body its header does not commit to: nothing from it or after it
        let mut swapped = blocks.clone();
        swapped[1].transfers.swap(0, 1);
        let other = SigCache::new(1000);
        other.warm(&swapped, 1000);
        for (i, b) in swapped.iter().enumerate() {
            for t in &b.transfers {
                assert_eq!(other.contains(&t.id()), i == 0, "block {i}");
            }
        }
    }
}
