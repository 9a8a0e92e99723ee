//! Work split over all cores (rayon) when there is enough of it.
//!
//! # Consensus
//! Every helper here returns exactly what its one-thread version would:
//! results keep the input order, and the only reductions used with them
//! are associative and commutative (addition modulo 2^256). How the work
//! is split never changes a result.

use rayon::prelude::*;

/// Below this many items the work stays on the calling thread: waking the
/// pool's threads costs more than a few hundred cheap items.
pub const PARALLEL_MIN: usize = 256;

/// `f` of each item, in order.
pub fn map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync + Send) -> Vec<U> {
    if items.len() < PARALLEL_MIN {
        items.iter().map(f).collect()
    } else {
        items.par_iter().map(f).collect()
    }
}

/// Sets `out[i]` to `f(&items[i])` (as far as both go).
pub fn fill<T: Sync, U: Send>(items: &[T], out: &mut [U], f: impl Fn(&T) -> U + Sync + Send) {
    if items.len() < PARALLEL_MIN {
        out.iter_mut().zip(items).for_each(|(o, i)| *o = f(i));
    } else {
        out.par_iter_mut().zip(items).for_each(|(o, i)| *o = f(i));
    }
}

/// Whether `f` holds for every item.
pub fn all<T: Sync>(items: &[T], f: impl Fn(&T) -> bool + Sync + Send) -> bool {
    if items.len() < PARALLEL_MIN {
        items.iter().all(f)
    } else {
        items.par_iter().all(f)
    }
}

/// Sorts `items` (unstable: equal items are indistinguishable here).
pub fn sort<T: Ord + Send>(items: &mut [T]) {
    if items.len() < PARALLEL_MIN {
        items.sort_unstable();
    } else {
        items.par_sort_unstable();
    }
}
