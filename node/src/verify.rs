//! Parallel signature checks with rayon.

use cairn_consensus::{BlockError, SignedTransfer};
use rayon::prelude::*;

/// Checks every transfer's signature with `verify_strict` across rayon's
/// global pool. On failure reports the lowest failing index, so the error
/// is the same as a sequential check would give.
pub fn verify_signatures(transfers: &[SignedTransfer]) -> Result<(), BlockError> {
    let all: Vec<usize> = (0..transfers.len()).collect();
    verify_some(transfers, &all)
}

/// Checks the signatures of `transfers[i]` for each `i` in `indices`, in
/// parallel; reports the lowest failing index.
fn verify_some(transfers: &[SignedTransfer], indices: &[usize]) -> Result<(), BlockError> {
    let failed = indices
        .par_iter()
        .filter_map(|&i| transfers[i].verify_signature().err().map(|e| (i, e)))
        .min_by_key(|(i, _)| *i);
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
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *g;
        if set.insert(id) {
            order.push_back(id);
            while order.len() > self.max {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
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

    /// Checks the signatures of `transfers` that are not in the cache, in
    /// parallel; the same result as [`verify_signatures`].
    pub fn verify(&self, transfers: &[SignedTransfer]) -> Result<(), BlockError> {
        let unverified: Vec<usize> = {
            let ids: Vec<_> = transfers.par_iter().map(|t| t.id()).collect();
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .enumerate()
                .filter(|(_, id)| !g.0.contains(id))
                .map(|(i, _)| i)
                .collect()
        };
        verify_some(transfers, &unverified)
    }
}
