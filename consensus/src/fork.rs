//! Fork choice.
//!
//! # Consensus
//! A node follows the valid chain with the most cumulative work. On equal
//! work it keeps the tip it saw first: switching on a tie would let whoever
//! relays last flip nodes between branches, and keeping the first seen is
//! what makes a tie resolve as soon as either branch grows.

use crate::pow::Work;

/// Whether a chain with `candidate` cumulative work should replace the
/// current best chain with `current` work.
pub fn is_better_chain(candidate: Work, current: Work) -> bool {
    candidate > current
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruint::aliases::U256;

    #[test]
    fn more_work_wins_and_ties_keep_first() {
        let w = |n: u64| Work(U256::from(n));
        assert!(is_better_chain(w(11), w(10)));
        assert!(!is_better_chain(w(10), w(10)));
        assert!(!is_better_chain(w(9), w(10)));
    }
}
