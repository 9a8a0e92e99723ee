//! Headers-first sync: headers from peers are validated (proof of work and
//! every contextual header rule, against stored blocks and earlier headers)
//! before any body is requested, so a peer cannot make us download blocks
//! that did not cost their work. Bodies are then fetched in height order.

use std::collections::{BTreeMap, HashMap};

use cairn_consensus::params::ParentInfo;
use cairn_consensus::validation::{
    HeaderContext, MEDIAN_TIME_SPAN, check_header, median_time_past, validate_header,
};
use cairn_consensus::{BlockError, BlockHash, BlockHeader, ConsensusParams, Height, Work};

use crate::store::{BlockStatus, ChainStore, StoreError};

/// Most validated headers held ahead of the stored blocks.
pub const MAX_HEADERS_AHEAD: usize = 50_000;

/// A validated header whose block is not stored yet.
#[derive(Clone, Copy, Debug)]
struct Known {
    header: BlockHeader,
    work: Work,
    anchor_time_ms: Option<u64>,
}

/// Why a batch of headers was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("header {0} does not connect to any known block")]
    Unconnected(BlockHash),
    #[error("header {hash} is invalid: {error}")]
    Invalid { hash: BlockHash, error: BlockError },
    #[error("header {0} builds on an invalid block")]
    InvalidParent(BlockHash),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HeaderError {
    /// How much the sender is to blame (100 bans).
    pub fn penalty(&self) -> u32 {
        match self {
            HeaderError::Invalid { error, .. } if !error.is_permanent() => 0,
            HeaderError::Invalid { .. } | HeaderError::InvalidParent(_) => 100,
            HeaderError::Unconnected(_) => 10,
            HeaderError::Store(_) => 0,
        }
    }
}

/// Validated headers ahead of the stored chain, the best among them, and
/// the path to it by height (the blocks to download).
#[derive(Default)]
pub struct HeaderSync {
    headers: HashMap<BlockHash, Known>,
    best: Option<(BlockHash, Work, u64)>,
    path: BTreeMap<u64, BlockHash>,
}

impl HeaderSync {
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Whether `hash` is a held header (a block this sync will download).
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.headers.contains_key(hash)
    }

    pub fn is_full(&self) -> bool {
        self.headers.len() >= MAX_HEADERS_AHEAD
    }

    /// Height and work of the best header held, if any.
    pub fn best(&self) -> Option<(BlockHash, Work, u64)> {
        self.best
    }

    fn lookup(
        &self,
        store: &impl ChainStore,
        hash: &BlockHash,
    ) -> Result<Option<Known>, HeaderError> {
        if let Some(k) = self.headers.get(hash) {
            return Ok(Some(*k));
        }
        match store.index_entry(hash)? {
            None => Ok(None),
            Some(e) if e.status == BlockStatus::Invalid => Err(HeaderError::InvalidParent(*hash)),
            Some(e) => Ok(Some(Known {
                header: e.header,
                work: e.work,
                anchor_time_ms: e.anchor_time_ms,
            })),
        }
    }

    fn median_time_past(
        &self,
        store: &impl ChainStore,
        parent: &BlockHash,
    ) -> Result<u64, HeaderError> {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = *parent;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(k) = self.lookup(store, &cursor)? else {
                break;
            };
            times.push(k.header.time_ms);
            if k.header.height.0 == 0 {
                break;
            }
            cursor = k.header.parent;
        }
        times.reverse();
        Ok(median_time_past(&times))
    }

    /// Validates `headers` in order and keeps those whose blocks are not
    /// stored. Returns how many were new.
    pub fn add(
        &mut self,
        store: &impl ChainStore,
        params: &ConsensusParams,
        headers: &[BlockHeader],
        now_ms: u64,
    ) -> Result<usize, HeaderError> {
        let mut added = 0;
        for header in headers {
            let hash = check_header(header, params).map_err(|error| HeaderError::Invalid {
                hash: header.hash(),
                error,
            })?;
            if self.headers.contains_key(&hash) || store.index_entry(&hash)?.is_some() {
                continue;
            }
            let parent = self
                .lookup(store, &header.parent)?
                .ok_or(HeaderError::Unconnected(hash))?;
            let ctx = HeaderContext {
                parent_hash: header.parent,
                parent_height: parent.header.height,
                median_time_past_ms: self.median_time_past(store, &header.parent)?,
                expected_target: params.next_target(
                    &ParentInfo {
                        height: parent.header.height,
                        anchor_time_ms: parent.anchor_time_ms,
                    },
                    header.time_ms,
                ),
                now_ms,
                max_future_drift_ms: params.max_future_drift_ms,
            };
            validate_header(header, &ctx).map_err(|error| HeaderError::Invalid { hash, error })?;
            let work =
                parent
                    .work
                    .checked_add(header.target.work())
                    .ok_or(HeaderError::Invalid {
                        hash,
                        error: BlockError::HeightOverflow,
                    })?;
            let anchor = if header.height == Height(1) {
                Some(header.time_ms)
            } else {
                parent.anchor_time_ms
            };
            self.headers.insert(
                hash,
                Known {
                    header: *header,
                    work,
                    anchor_time_ms: anchor,
                },
            );
            added += 1;
            if self.best.is_none_or(|(_, w, _)| work > w) {
                self.best = Some((hash, work, header.height.0));
                if header.parent
                    == self
                        .path
                        .values()
                        .next_back()
                        .copied()
                        .unwrap_or(header.parent)
                    && self
                        .path
                        .last_key_value()
                        .is_none_or(|(h, _)| h + 1 == header.height.0)
                {
                    self.path.insert(header.height.0, hash);
                } else {
                    self.rebuild_path();
                }
            }
            if self.is_full() {
                break;
            }
        }
        Ok(added)
    }

    /// The held headers from the stored chain up to the best one.
    fn rebuild_path(&mut self) {
        self.path.clear();
        let Some((best, _, _)) = self.best else {
            return;
        };
        let mut cursor = best;
        while let Some(k) = self.headers.get(&cursor) {
            self.path.insert(k.header.height.0, cursor);
            cursor = k.header.parent;
        }
    }

    /// Forgets headers whose blocks reached the chain.
    pub fn mark_done(&mut self, hashes: &[BlockHash]) {
        for h in hashes {
            if let Some(k) = self.headers.remove(h)
                && self.path.get(&k.header.height.0) == Some(h)
            {
                self.path.remove(&k.header.height.0);
            }
        }
        if let Some((best, _, _)) = self.best
            && !self.headers.contains_key(&best)
        {
            self.best = None;
            self.path.clear();
        }
    }

    /// The blocks to download, lowest first: the path from the stored chain
    /// to the best header, at most `n`.
    pub fn missing(&self, n: usize) -> Vec<(u64, BlockHash)> {
        self.path.iter().take(n).map(|(h, b)| (*h, *b)).collect()
    }

    /// Forgets headers whose blocks are now stored (for blocks that reached
    /// the store another way than through this sync).
    pub fn prune(&mut self, store: &impl ChainStore) -> Result<(), StoreError> {
        let mut stored = Vec::new();
        for h in self.headers.keys() {
            if store.index_entry(h)?.is_some() {
                stored.push(*h);
            }
        }
        self.mark_done(&stored);
        Ok(())
    }

    /// Forgets everything (after a peer sent an invalid chain).
    pub fn clear(&mut self) {
        self.headers.clear();
        self.best = None;
        self.path.clear();
    }
}

/// A block locator: the best header held (if any), then the best chain's
/// hashes at the tip, nine below it, and then at doubling distances down to
/// genesis.
pub fn locator(
    store: &impl ChainStore,
    sync: &HeaderSync,
    tip_height: u64,
) -> Result<Vec<BlockHash>, StoreError> {
    let mut out = Vec::new();
    if let Some((best, _, _)) = sync.best() {
        out.push(best);
    }
    let mut h = tip_height;
    let mut step = 1u64;
    loop {
        if let Some(hash) = store.hash_at(Height(h))? {
            out.push(hash);
        }
        if h == 0 || out.len() >= super::message::MAX_LOCATOR - 1 {
            break;
        }
        if out.len() >= 10 {
            step = step.saturating_mul(2);
        }
        h = h.saturating_sub(step);
    }
    if let Some(g) = store.hash_at(Height(0))?
        && out.last() != Some(&g)
    {
        out.push(g);
    }
    Ok(out)
}

/// The headers to answer a `GetHeaders` with: those on our best chain after
/// the first locator hash found on it (after genesis if none is), at most
/// `max`.
pub fn headers_after(
    store: &impl ChainStore,
    locator: &[BlockHash],
    tip_height: u64,
    max: usize,
) -> Result<Vec<BlockHeader>, StoreError> {
    let mut start = 1;
    for hash in locator {
        if let Some(e) = store.index_entry(hash)?
            && store.hash_at(e.header.height)? == Some(*hash)
        {
            start = e.header.height.0 + 1;
            break;
        }
    }
    let mut out = Vec::new();
    let mut h = start;
    while h <= tip_height && out.len() < max {
        let Some(hash) = store.hash_at(Height(h))? else {
            break;
        };
        let Some(e) = store.index_entry(&hash)? else {
            break;
        };
        out.push(e.header);
        h += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Chain, ChainConfig};
    use crate::store::MemStore;
    use crate::verify::verify_signatures;
    use cairn_consensus::testkit::{self, ChainBuilder, address, mine};
    use cairn_consensus::{Amount, COIN, Target};
    use cairn_genesis::testkit::network;
    use std::sync::Arc;

    #[test]
    fn headers_are_validated_and_paths_found() {
        let mut b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
        for _ in 0..30 {
            b.extend(vec![], address(1));
        }
        let store = Arc::new(MemStore::new());
        let (mut chain, _) = Chain::open(
            store.clone(),
            &network(&b),
            verify_signatures,
            ChainConfig::default(),
        )
        .unwrap();
        for blk in &b.blocks[1..11] {
            chain.process_block(blk.clone(), u64::MAX / 2).unwrap();
        }
        // a peer on the longer chain answers our locator
        let mut sync = HeaderSync::default();
        let loc = locator(&*store, &sync, 10).unwrap();
        assert_eq!(loc[0], b.blocks[10].hash());
        assert_eq!(*loc.last().unwrap(), b.blocks[0].hash());
        let headers: Vec<BlockHeader> = b.blocks[11..].iter().map(|x| x.header).collect();
        assert_eq!(
            sync.add(&*store, &b.params, &headers, u64::MAX / 2)
                .unwrap(),
            20
        );
        assert_eq!(sync.best().unwrap().2, 30);
        let missing = sync.missing(5);
        assert_eq!(
            missing.iter().map(|m| m.0).collect::<Vec<_>>(),
            vec![11, 12, 13, 14, 15]
        );
        // our own node answers a locator from a peer at height 5
        let answer =
            headers_after(&*store, &[b.blocks[5].hash(), b.blocks[0].hash()], 10, 100).unwrap();
        assert_eq!(answer.len(), 5);
        assert_eq!(answer[0], b.blocks[6].header);
        for blk in &b.blocks[11..20] {
            chain.process_block(blk.clone(), u64::MAX / 2).unwrap();
        }
        sync.prune(&*store).unwrap();
        assert_eq!(sync.len(), 11);
        assert_eq!(sync.missing(100)[0].0, 20);
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
        b.extend(vec![], address(1));
        b.extend(vec![], address(1));
        let store = Arc::new(MemStore::new());
        let _ = Chain::open(
            store.clone(),
            &network(&b),
            verify_signatures,
            ChainConfig::default(),
        )
        .unwrap();
        let mut sync = HeaderSync::default();
        // not connected: the parent of block 2 is unknown
        let e = sync
            .add(&*store, &b.params, &[b.blocks[2].header], u64::MAX / 2)
            .unwrap_err();
        assert!(matches!(e, HeaderError::Unconnected(_)));
        // wrong target, valid proof of work for it
        let mut h = b.blocks[1].header;
        h.target = Target::from_difficulty_bits(2);
        mine(&mut h);
        let e = sync
            .add(&*store, &b.params, &[h], u64::MAX / 2)
            .unwrap_err();
        assert!(matches!(
            e,
            HeaderError::Invalid {
                error: BlockError::WrongTarget { .. },
                ..
            }
        ));
        assert_eq!(e.penalty(), 100);
        assert!(sync.is_empty());
    }
}
