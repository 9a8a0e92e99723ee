//! A bounded record of what happened off the best chain: reorganisations
//! (when, how deep, old and new tip) and blocks stored on side branches or
//! removed by a reorganisation. Kept in memory since start-up; read by
//! `chain_getReorgs`, `chain_getForks`, the explorer's fork view, and
//! metrics. Recording takes a short lock and never fails.

use std::collections::VecDeque;
use std::sync::Mutex;

use cairn_consensus::BlockHash;

use crate::chain::{Chain, Outcome, Processed, TipChange};
use crate::store::ChainStore;

/// Reorganisations kept.
pub const MAX_REORGS: usize = 64;
/// Side-branch blocks kept.
pub const MAX_SIDE_BLOCKS: usize = 512;
/// Disconnected hashes listed per reorganisation.
pub const MAX_LISTED: usize = 64;

/// One reorganisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reorg {
    pub time_ms: u64,
    /// Blocks disconnected.
    pub depth: u64,
    /// Blocks connected.
    pub connected: u64,
    pub fork_point: BlockHash,
    pub fork_height: u64,
    pub old_tip: BlockHash,
    pub old_height: u64,
    pub new_tip: BlockHash,
    pub new_height: u64,
    /// The first [`MAX_LISTED`] disconnected blocks, oldest first.
    pub disconnected: Vec<BlockHash>,
}

/// Why a block is off the best chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideReason {
    /// It arrived on a branch with less work.
    SideBranch,
    /// A reorganisation removed it.
    ReorgedOut,
}

impl SideReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SideReason::SideBranch => "side-branch",
            SideReason::ReorgedOut => "reorged-out",
        }
    }
}

/// A block seen off the best chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideBlock {
    pub hash: BlockHash,
    pub parent: BlockHash,
    pub height: u64,
    pub time_ms: u64,
    pub seen_ms: u64,
    pub reason: SideReason,
}

#[derive(Default)]
struct Inner {
    reorgs: VecDeque<Reorg>,
    side: VecDeque<SideBlock>,
    total_reorgs: u64,
}

/// The record. Newest entries are at the back.
#[derive(Default)]
pub struct ForkLog {
    inner: Mutex<Inner>,
}

impl ForkLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_reorg(&self, r: Reorg) {
        let mut g = self.lock();
        g.total_reorgs = g.total_reorgs.saturating_add(1);
        if g.reorgs.len() == MAX_REORGS {
            g.reorgs.pop_front();
        }
        g.reorgs.push_back(r);
    }

    pub fn record_side_block(&self, b: SideBlock) {
        let mut g = self.lock();
        if g.side
            .iter()
            .any(|s| s.hash == b.hash && s.reason == b.reason)
        {
            return;
        }
        if g.side.len() == MAX_SIDE_BLOCKS {
            g.side.pop_front();
        }
        g.side.push_back(b);
    }

    /// Up to `limit` reorganisations, newest first.
    pub fn reorgs(&self, limit: usize) -> Vec<Reorg> {
        self.lock()
            .reorgs
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Up to `limit` side blocks, newest first.
    pub fn side_blocks(&self, limit: usize) -> Vec<SideBlock> {
        self.lock().side.iter().rev().take(limit).cloned().collect()
    }

    /// Reorganisations since start-up (including those no longer kept).
    pub fn total_reorgs(&self) -> u64 {
        self.lock().total_reorgs
    }
}

/// Records a change of the best chain that disconnected blocks: the
/// reorganisation and each block it removed.
pub fn record_tip_change<S: ChainStore>(
    log: &ForkLog,
    chain: &Chain<S>,
    change: &TipChange,
    now_ms: u64,
) {
    // `disconnected` runs from the old tip down, `connected` from the fork up
    let (Some(old_tip), Some(oldest)) = (change.disconnected.first(), change.disconnected.last())
    else {
        return;
    };
    let Some(old) = chain.entry(old_tip) else {
        return;
    };
    let old_height = old.header.height.0;
    let fork_point = chain
        .entry(oldest)
        .map(|e| e.header.parent)
        .unwrap_or_default();
    let fork_height = chain.entry(&fork_point).map_or(0, |e| e.header.height.0);
    let depth = change.disconnected.len() as u64;
    let mut disconnected: Vec<BlockHash> = change.disconnected.iter().rev().copied().collect();
    disconnected.truncate(MAX_LISTED);
    log.record_reorg(Reorg {
        time_ms: now_ms,
        depth,
        connected: change.connected.len() as u64,
        fork_point,
        fork_height,
        old_tip: *old_tip,
        old_height,
        new_tip: chain.tip_hash(),
        new_height: chain.height().0,
        disconnected: disconnected.clone(),
    });
    crate::metrics::reorg(depth);
    for h in disconnected {
        if let Some(e) = chain.entry(&h) {
            log.record_side_block(SideBlock {
                hash: h,
                parent: e.header.parent,
                height: e.header.height.0,
                time_ms: e.header.time_ms,
                seen_ms: now_ms,
                reason: SideReason::ReorgedOut,
            });
        }
    }
}

/// Records the blocks of a batch that were stored on a side branch.
pub fn record_side_blocks<S: ChainStore, E>(
    log: &ForkLog,
    chain: &Chain<S>,
    results: &[Result<Processed, E>],
    now_ms: u64,
) {
    for p in results.iter().flatten() {
        if p.outcome != Outcome::SideBranch {
            continue;
        }
        if let Some(e) = chain.entry(&p.hash) {
            log.record_side_block(SideBlock {
                hash: p.hash,
                parent: e.header.parent,
                height: e.header.height.0,
                time_ms: e.header.time_ms,
                seen_ms: now_ms,
                reason: SideReason::SideBranch,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> BlockHash {
        BlockHash([n; 32])
    }

    #[test]
    fn the_rings_are_bounded_and_newest_first() {
        let log = ForkLog::default();
        for i in 0..(MAX_REORGS as u64 + 10) {
            log.record_reorg(Reorg {
                time_ms: i,
                depth: 1,
                connected: 2,
                fork_point: h(0),
                fork_height: 0,
                old_tip: h(1),
                old_height: 1,
                new_tip: h(2),
                new_height: 2,
                disconnected: vec![h(1)],
            });
        }
        let all = log.reorgs(usize::MAX);
        assert_eq!(all.len(), MAX_REORGS);
        assert_eq!(all[0].time_ms, MAX_REORGS as u64 + 9);
        assert_eq!(log.total_reorgs(), MAX_REORGS as u64 + 10);
        for i in 0..(MAX_SIDE_BLOCKS + 5) {
            let b = SideBlock {
                hash: BlockHash([
                    (i % 251) as u8,
                    (i / 251) as u8,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                ]),
                parent: h(0),
                height: i as u64,
                time_ms: 0,
                seen_ms: 0,
                reason: SideReason::SideBranch,
            };
            log.record_side_block(b.clone());
            log.record_side_block(b);
        }
        let side = log.side_blocks(usize::MAX);
        assert_eq!(side.len(), MAX_SIDE_BLOCKS);
        assert_eq!(side[0].height, MAX_SIDE_BLOCKS as u64 + 4);
    }
}
