//! A bounded set that forgets its oldest members.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// A set of at most `max` members; inserting beyond forgets the oldest.
#[derive(Debug)]
pub struct Recent<T: Hash + Eq + Copy> {
    set: HashSet<T>,
    order: VecDeque<T>,
    max: usize,
}

impl<T: Hash + Eq + Copy> Recent<T> {
    pub fn new(max: usize) -> Self {
        Recent {
            set: HashSet::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Adds `v`; returns whether it was new.
    pub fn insert(&mut self, v: T) -> bool {
        if !self.set.insert(v) {
            return false;
        }
        self.order.push_back(v);
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    pub fn contains(&self, v: &T) -> bool {
        self.set.contains(v)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest() {
        let mut r = Recent::new(2);
        assert!(r.insert(1));
        assert!(!r.insert(1));
        r.insert(2);
        r.insert(3);
        assert!(!r.contains(&1));
        assert!(r.contains(&2) && r.contains(&3));
        assert_eq!(r.len(), 2);
    }
}
