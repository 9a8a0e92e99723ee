//! Parallel signature checks with rayon.

use cairn_consensus::{BlockError, SignedTransfer};
use rayon::prelude::*;

/// Checks every transfer's signature with `verify_strict` across rayon's
/// global pool. On failure reports the lowest failing index, so the error
/// is the same as a sequential check would give.
pub fn verify_signatures(transfers: &[SignedTransfer]) -> Result<(), BlockError> {
    let failed = transfers
        .par_iter()
        .enumerate()
        .filter_map(|(i, tx)| tx.verify_signature().err().map(|e| (i, e)))
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
