//! Derived indexes over the best chain: where each transaction is, and the
//! history of each address. They are not consensus data: they are written
//! after the block's own commit, in their own batches with their own tip,
//! and rebuilt from the stored blocks whenever they lag or diverge.
//!
//! At start-up [`catch_up`] brings them to the tip. While the node runs, an
//! [`Indexer`] thread follows the best chain behind it, so writing a
//! block's records (three per transfer) never delays the block itself or
//! its relay. Readers that must see every block up to the tip they know of
//! (a transfer shows as confirmed once its block is the tip) call
//! [`Indexer::wait_for`] first, as Bitcoin Core's RPC waits for its
//! transaction index with `BlockUntilSyncedToCurrentChain`.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `T` | txid | [`TxLocation`] |
//! | `X` | address, height (BE), position (BE), kind | [`HistoryRecord`] |
//! | `M` | `index_tip` | hash of the last indexed block |
//! | `M` | `index_pending` | a block whose records may be partly written |
//!
//! Records go in sled batches of at most [`BATCH`] entries: sled applies a
//! batch under a lock that every other read and write of the database waits
//! on, so a block's records in one batch (15,001 for 5,000 transfers) held
//! block validation, relay and RPC up for 100-300 ms on 2 cores. A step
//! written in several batches marks its block pending in the first and
//! clears the mark with the last; [`catch_up`] undoes a step a crash cut
//! short (see [`undo_pending`]). Readers that wait for the index
//! ([`Indexer::wait_for`]) see whole steps; one that does not (a page of
//! history while a block is being written) may see part of a block.

use crate::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use borsh::{BorshDeserialize, BorshSerialize};
use cairn_consensus::{Address, Amount, Block, BlockHash, Height, TxId, encoding};

use crate::chain::{Chain, ChainError, TipChange};
use crate::store::{ChainStore, SledStore, StoreError};

const TX: u8 = b'T';
const HISTORY: u8 = b'X';
const TIP_KEY: &[u8] = b"Mindex_tip";
const PENDING_KEY: &[u8] = b"Mindex_pending";
/// Entries per sled batch (see the module notes): a few milliseconds of
/// writing at most, even on a busy machine.
const BATCH: usize = 256;

/// Where a transaction sits on the best chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxLocation {
    pub block: BlockHash,
    pub height: u64,
    /// 0 for the coinbase, then 1.. for the transfers in block order.
    pub position: u32,
}

/// How an address takes part in a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Role {
    Sent,
    Received,
    ToSelf,
    Mined,
}

/// One entry of an address's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HistoryRecord {
    pub txid: TxId,
    pub role: Role,
    pub counterparty: Option<Address>,
    pub amount: Amount,
    pub fee: Amount,
    pub block: BlockHash,
    pub height: u64,
    pub time_ms: u64,
}

type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn history_key(address: &Address, height: u64, position: u32, role: Role) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 20 + 8 + 4 + 1);
    k.push(HISTORY);
    k.extend_from_slice(&address.0);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&position.to_be_bytes());
    k.push(role as u8);
    k
}

fn tx_key(id: &TxId) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(TX);
    k.extend_from_slice(&id.0);
    k
}

/// Every index record a block adds: `(key, value)`.
fn records(block: &Block, hash: BlockHash) -> Vec<(Vec<u8>, Vec<u8>)> {
    let height = block.header.height.0;
    let time_ms = block.header.time_ms;
    let mut out = Vec::with_capacity(1 + 3 * block.transfers.len());
    let add_tx = |id: TxId, position: u32, out: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        let loc = TxLocation {
            block: hash,
            height,
            position,
        };
        out.push((tx_key(&id), encoding::encode(&loc)));
    };
    let cb = block.coinbase;
    let cb_id = cb.id();
    add_tx(cb_id, 0, &mut out);
    if height > 0 {
        let rec = HistoryRecord {
            txid: cb_id,
            role: Role::Mined,
            counterparty: None,
            amount: cb.amount,
            fee: Amount::ZERO,
            block: hash,
            height,
            time_ms,
        };
        out.push((
            history_key(&cb.recipient, height, 0, Role::Mined),
            encoding::encode(&rec),
        ));
    }
    for (i, tx) in block.transfers.iter().enumerate() {
        let position = i as u32 + 1;
        let id = tx.id();
        add_tx(id, position, &mut out);
        let t = tx.transfer;
        let from = tx.sender();
        let base = HistoryRecord {
            txid: id,
            role: Role::Sent,
            counterparty: Some(t.to),
            amount: t.amount,
            fee: t.fee,
            block: hash,
            height,
            time_ms,
        };
        if from == t.to {
            let rec = HistoryRecord {
                role: Role::ToSelf,
                ..base
            };
            out.push((
                history_key(&from, height, position, Role::ToSelf),
                encoding::encode(&rec),
            ));
        } else {
            out.push((
                history_key(&from, height, position, Role::Sent),
                encoding::encode(&base),
            ));
            let rec = HistoryRecord {
                role: Role::Received,
                counterparty: Some(from),
                fee: Amount::ZERO,
                ..base
            };
            out.push((
                history_key(&t.to, height, position, Role::Received),
                encoding::encode(&rec),
            ));
        }
    }
    out
}

/// The writes that add `block`'s records.
fn puts(block: &Block, hash: BlockHash) -> Ops {
    records(block, hash)
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect()
}

/// The writes that remove `block`'s records.
fn removals(block: &Block, hash: BlockHash) -> Ops {
    records(block, hash)
        .into_iter()
        .map(|(k, _)| (k, None))
        .collect()
}

/// What a step does to the index tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TipMove {
    /// Blocks join: their records go in, then the tip moves to the last.
    After(Option<BlockHash>),
    /// A block leaves: the tip moves to its parent, then its records go.
    Before(Option<BlockHash>),
    /// Leave the tip alone (undoing a cut-short step).
    Keep,
}

/// Writes one step's records and moves the tip, in batches of [`BATCH`].
/// `pending`: the block whose records (and those of its ancestors above
/// the index tip) are partly written until the last batch is in.
fn apply(
    tree: &sled::Tree,
    ops: Ops,
    tip: TipMove,
    pending: Option<BlockHash>,
) -> Result<(), StoreError> {
    apply_batches(tree, ops, tip, pending, usize::MAX)
}

/// [`apply`], stopping after `max` batches (a crash, in tests).
fn apply_batches(
    tree: &sled::Tree,
    ops: Ops,
    tip: TipMove,
    pending: Option<BlockHash>,
    max: usize,
) -> Result<(), StoreError> {
    let count = ops.len().div_ceil(BATCH).max(1);
    let mut ops = ops.into_iter();
    let set_tip = |batch: &mut sled::Batch, t: Option<BlockHash>| match t {
        Some(t) => batch.insert(TIP_KEY, &t.0[..]),
        None => batch.remove(TIP_KEY),
    };
    for i in 0..count.min(max) {
        let (first, last) = (i == 0, i + 1 == count);
        let mut batch = sled::Batch::default();
        if first
            && !last
            && let Some(p) = pending
        {
            batch.insert(PENDING_KEY, &p.0[..]);
        }
        match tip {
            TipMove::Before(t) if first => set_tip(&mut batch, t),
            TipMove::After(t) if last => set_tip(&mut batch, t),
            _ => {}
        }
        for (k, v) in ops.by_ref().take(BATCH) {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        if last && !first && pending.is_some() {
            batch.remove(PENDING_KEY);
        }
        tree.apply_batch(batch)?;
    }
    Ok(())
}

/// The block a step cut short by a crash left pending, if any.
fn pending(tree: &sled::Tree) -> Result<Option<BlockHash>, StoreError> {
    read_hash(tree, PENDING_KEY)
}

/// Undoes a step a crash cut short: the records of the pending block and of
/// its ancestors down to the index tip or the best chain, whichever comes
/// first, are removed (blocks on the best chain above the tip keep theirs:
/// indexing them again writes the same). Returns the index tip, `None`
/// when the index had to be cleared for a rebuild.
fn undo_pending(
    chain: &Chain<impl ChainStore>,
    tree: &sled::Tree,
    tip: Option<BlockHash>,
) -> Result<Option<BlockHash>, ChainError> {
    let Some(mut b) = pending(tree)? else {
        return Ok(tip);
    };
    if tip.is_none() {
        // a rebuild (or no index yet) clears everything anyway
        return Ok(None);
    }
    while Some(b) != tip && !chain.is_main(&b) {
        let block = match (chain.entry(&b), load(chain, &b)) {
            (Some(entry), Ok(block)) => Some((entry.header.parent, block)),
            _ => None,
        };
        let Some((parent, block)) = block else {
            // its records cannot be listed without the block itself
            tracing::warn!(
                "pending index block {b} is unknown or unreadable; rebuilding the indexes"
            );
            clear(tree)?;
            return Ok(None);
        };
        let ops = removals(&block, b);
        apply(tree, ops, TipMove::Keep, None)?;
        b = parent;
    }
    tree.remove(PENDING_KEY).map_err(StoreError::from)?;
    Ok(tip)
}

/// The last indexed block.
pub fn tip(tree: &sled::Tree) -> Result<Option<BlockHash>, StoreError> {
    read_hash(tree, TIP_KEY)
}

/// A block hash stored under `key`, if any.
fn read_hash(tree: &sled::Tree, key: &[u8]) -> Result<Option<BlockHash>, StoreError> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
        .map(BlockHash))
}

/// Where `id` is on the indexed chain, if anywhere.
pub fn tx_location(tree: &sled::Tree, id: &TxId) -> Result<Option<TxLocation>, StoreError> {
    match tree.get(tx_key(id))? {
        None => Ok(None),
        Some(v) => encoding::decode::<TxLocation>("tx location", &v, 64)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: format!("tx index entry {id}"),
                detail: e.to_string(),
            }),
    }
}

/// Up to `limit` history records of `address` below `before_height`
/// (all heights when `None`), newest first.
pub fn history(
    tree: &sled::Tree,
    address: &Address,
    before_height: Option<u64>,
    limit: usize,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut start = vec![HISTORY];
    start.extend_from_slice(&address.0);
    let mut end = start.clone();
    match before_height {
        Some(h) => end.extend_from_slice(&h.to_be_bytes()),
        None => end.extend_from_slice(&[0xff; 13]),
    }
    history_range(tree, start, end, limit)
}

/// Every history record of `address` in the block at `height`.
pub fn history_at(
    tree: &sled::Tree,
    address: &Address,
    height: u64,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut start = vec![HISTORY];
    start.extend_from_slice(&address.0);
    let end = {
        let mut e = start.clone();
        e.extend_from_slice(&height.saturating_add(1).to_be_bytes());
        e
    };
    start.extend_from_slice(&height.to_be_bytes());
    history_range(tree, start, end, usize::MAX)
}

fn history_range(
    tree: &sled::Tree,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: usize,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut out = Vec::new();
    for r in tree.range(start..end).rev().take(limit) {
        let (_, v) = r?;
        let rec = encoding::decode::<HistoryRecord>("history record", &v, 256).map_err(|e| {
            StoreError::Corrupt {
                what: "history record".into(),
                detail: e.to_string(),
            }
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// Removes every index record, the index tip and the pending mark.
fn clear(tree: &sled::Tree) -> Result<(), StoreError> {
    // the tip first: a crash half way leaves no tip, so the next start
    // clears again
    tree.remove(TIP_KEY)?;
    for prefix in [TX, HISTORY] {
        let keys: Ops = tree
            .scan_prefix([prefix])
            .keys()
            .map(|k| k.map(|k| (k.to_vec(), None)))
            .collect::<Result<_, _>>()?;
        apply(tree, keys, TipMove::Keep, None)?;
    }
    tree.remove(PENDING_KEY)?;
    Ok(())
}

fn load(chain: &Chain<impl ChainStore>, hash: &BlockHash) -> Result<Block, ChainError> {
    chain
        .block(hash)?
        .ok_or_else(|| ChainError::Inconsistent(format!("block {hash} is not stored")))
}

/// Brings the index to the chain's tip: removes the records of blocks that
/// left the best chain, adds those of blocks that joined it. Returns the
/// number of blocks indexed. Records are written in batches of many blocks.
pub fn catch_up(chain: &Chain<impl ChainStore>, tree: &sled::Tree) -> Result<u64, ChainError> {
    let mut tip = undo_pending(chain, tree, tip(tree)?)?;
    if tip.is_none() {
        // nothing recorded, or a rebuild: drop whatever records are left
        clear(tree)?;
    }
    // unwind blocks that are no longer on the best chain
    while let Some(t) = tip {
        if chain.is_main(&t) {
            break;
        }
        let Some(entry) = chain.entry(&t) else {
            tracing::warn!("index tip {t} is unknown to the chain; rebuilding the indexes");
            clear(tree)?;
            tip = None;
            break;
        };
        let parent = entry.header.parent;
        let block = load(chain, &t)?;
        let ops = removals(&block, t);
        apply(tree, ops, TipMove::Before(Some(parent)), Some(t))?;
        tip = Some(parent);
    }
    let from = match tip {
        Some(t) => chain.entry(&t).map_or(0, |e| e.header.height.0 + 1),
        None => 0,
    };
    let to = chain.height().0;
    let mut ops: Ops = Vec::new();
    let mut last = tip;
    let mut indexed = 0;
    for h in from..=to {
        let Some(hash) = chain.hash_at(Height(h)) else {
            break;
        };
        let block = load(chain, &hash)?;
        ops.extend(puts(&block, hash));
        last = Some(hash);
        indexed += 1;
        if ops.len() >= 50_000 {
            apply(tree, std::mem::take(&mut ops), TipMove::After(last), last)?;
        }
    }
    if indexed > 0 || !ops.is_empty() {
        apply(tree, ops, TipMove::After(last), last)?;
    }
    Ok(indexed)
}

/// The changes of the best chain the index has yet to follow, folded into
/// the shortest path from the index's tip: blocks to unwind (newest
/// first), then blocks to add (oldest first). A block that joined and then
/// left the best chain before it was indexed appears in neither.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Plan {
    disconnect: Vec<BlockHash>,
    connect: Vec<BlockHash>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.disconnect.is_empty() && self.connect.is_empty()
    }

    /// Appends a change that starts where this plan ends.
    fn push(&mut self, change: &TipChange) {
        for h in &change.disconnected {
            if self.connect.last() == Some(h) {
                self.connect.pop();
            } else {
                self.disconnect.push(*h);
            }
        }
        self.connect.extend_from_slice(&change.connected);
    }
}

struct IndexerState {
    pending: Plan,
    /// The tip generation the pending plan ends at.
    queued: u64,
    /// The tip generation the index has reached.
    done: u64,
    /// Set after a write failed: the index stops where it was and is
    /// rebuilt at the next start; readers no longer wait for it.
    failed: bool,
    /// The thread is writing a plan taken from `pending`.
    busy: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<IndexerState>,
    /// Set by [`Indexer::stop`]: the thread stops after the block it is
    /// writing (the index stays consistent at its own tip; the next start
    /// catches up), so a stop during a long sync does not wait for it.
    stopping: AtomicBool,
    /// Signalled when work arrives, when work is done and on stop.
    changed: Condvar,
}

/// Follows the best chain in a thread of its own, writing the index
/// records of blocks that join it and removing those of blocks that
/// leave it, in the order the chain changed.
pub struct Indexer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Indexer {
    /// Starts the thread; the index must already be at the chain's tip,
    /// which is tip generation `generation`.
    pub fn start(store: Arc<SledStore>, generation: u64) -> std::io::Result<Indexer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(IndexerState {
                pending: Plan::default(),
                queued: generation,
                done: generation,
                failed: false,
                busy: false,
                stop: false,
            }),
            stopping: AtomicBool::new(false),
            changed: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || run(&worker, &store))?;
        Ok(Indexer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a change of the best chain, which made it tip generation
    /// `generation`. Changes must be queued in the order they happened.
    pub fn push(&self, change: &TipChange, generation: u64) {
        let mut st = lock(&self.shared.state);
        st.pending.push(change);
        st.queued = generation;
        if st.failed {
            st.pending = Plan::default();
        }
        // nothing to write (a change undone before it was written): the
        // index is already there
        if st.pending.is_empty() && !st.busy {
            st.done = generation;
        }
        self.shared.changed.notify_all();
    }

    /// Waits until the index covers tip generation `generation`, for at
    /// most `limit` (a long initial sync may keep it behind for longer; the
    /// reader then sees the index as it is). True when it does.
    pub fn wait_for(&self, generation: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut st = lock(&self.shared.state);
        while st.done < generation && !st.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.done >= generation
    }

    /// Stops the thread once the block it is writing is done; what is
    /// still queued is left to the next start's [`catch_up`].
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        lock(&self.shared.state).stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, store: &SledStore) {
    crate::flusher::lower_thread_priority(crate::flusher::BACKGROUND_NICE);
    loop {
        let (plan, generation) = {
            let mut st = lock(&shared.state);
            while st.pending.is_empty() && !st.stop {
                st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.pending.is_empty() || st.stop {
                return;
            }
            st.busy = true;
            (std::mem::take(&mut st.pending), st.queued)
        };
        let result = follow(store, &plan, &shared.stopping);
        if shared.stopping.load(Ordering::SeqCst) {
            if let Err(e) = result {
                tracing::error!("cannot update the transaction and history indexes: {e}");
            }
            return;
        }
        let mut st = lock(&shared.state);
        st.busy = false;
        if let Err(e) = result {
            tracing::error!(
                "cannot update the transaction and history indexes: {e}; they stop here and are rebuilt at the next start"
            );
            // the next start finds no index tip and rebuilds from scratch
            if let Err(e) = store.tree().remove(TIP_KEY) {
                tracing::error!("cannot mark the indexes for a rebuild: {e}");
            }
            st.failed = true;
            st.pending = Plan::default();
            st.done = st.queued;
        } else {
            st.done = generation;
            if st.pending.is_empty() {
                // what came meanwhile folded to nothing
                st.done = st.queued;
            }
        }
        shared.changed.notify_all();
    }
}

fn stored(store: &SledStore, hash: &BlockHash) -> Result<Block, ChainError> {
    store
        .block(hash)?
        .ok_or_else(|| ChainError::Inconsistent(format!("block {hash} is not stored")))
}

/// Applies `plan` to the index in the store, block by block; stops early
/// (with the index consistent at the last block written) once `stop` is set.
fn follow(store: &SledStore, plan: &Plan, stop: &AtomicBool) -> Result<(), ChainError> {
    let tree = store.tree();
    for h in &plan.disconnect {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let block = stored(store, h)?;
        let ops = removals(&block, *h);
        apply(
            tree,
            ops,
            TipMove::Before(Some(block.header.parent)),
            Some(*h),
        )?;
    }
    let mut ops: Ops = Vec::new();
    let mut last = None;
    for h in &plan.connect {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let block = stored(store, h)?;
        ops.extend(puts(&block, *h));
        last = Some(*h);
        if ops.len() >= 50_000 {
            apply(tree, std::mem::take(&mut ops), TipMove::After(last), last)?;
        }
    }
    if !ops.is_empty() {
        apply(tree, ops, TipMove::After(last), last)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainConfig;
    use crate::store::SledStore;
    use crate::verify::verify_signatures;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{COIN, Height, SignedTransfer};
    use cairn_genesis::testkit::network;
    use std::sync::Arc;

    const NOW: u64 = u64::MAX / 2;

    /// A store with a chain on a builder's genesis (three funded keys).
    fn open() -> (
        tempfile::TempDir,
        Arc<SledStore>,
        ChainBuilder,
        Chain<Arc<SledStore>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap());
        let a = ChainBuilder::new(testkit::params(), 3, Amount(100 * COIN));
        let (chain, _) = Chain::open(
            store.clone(),
            &network(&a),
            verify_signatures,
            ChainConfig::default(),
        )
        .unwrap();
        (dir, store, a, chain)
    }

    /// The index after branch `b` (without `t2`, with `t3` in its second
    /// block, rewards to address 8) replaced the branch that mined to 7.
    fn assert_indexed_branch_b(
        tree: &sled::Tree,
        b: &ChainBuilder,
        t2: &SignedTransfer,
        t3: &SignedTransfer,
    ) {
        assert_eq!(tx_location(tree, &t2.id()).unwrap(), None);
        let loc = tx_location(tree, &t3.id()).unwrap().unwrap();
        assert_eq!(loc.block, b.blocks[2].hash());
        let mined: Vec<_> = history(tree, &address(7), None, 10).unwrap();
        assert!(
            mined.is_empty(),
            "the old branch's rewards left the history"
        );
        assert_eq!(history(tree, &address(8), None, 10).unwrap().len(), 3);
        assert_eq!(tip(tree).unwrap(), Some(b.tip_hash()));
    }

    #[test]
    fn a_plan_folds_changes_into_the_shortest_path() {
        let h = |n: u8| BlockHash([n; 32]);
        let mut plan = Plan::default();
        plan.push(&TipChange {
            disconnected: vec![],
            connected: vec![h(1), h(2)],
        });
        // 2 leaves before it was indexed, 3 and 4 join
        plan.push(&TipChange {
            disconnected: vec![h(2)],
            connected: vec![h(3), h(4)],
        });
        // a reorg below everything queued: 4, 3 and 1 leave, then 0 (already
        // indexed) too
        plan.push(&TipChange {
            disconnected: vec![h(4), h(3), h(1), h(0)],
            connected: vec![h(5)],
        });
        assert_eq!(
            plan,
            Plan {
                disconnect: vec![h(0)],
                connect: vec![h(5)],
            }
        );
    }

    #[test]
    fn the_indexer_thread_follows_a_reorg_and_readers_wait_for_it() {
        let (_dir, store, mut a, mut chain) = open();
        let mut b = a.clone();
        catch_up(&chain, store.tree()).unwrap();
        let indexer = Indexer::start(store.clone(), 0).unwrap();
        let mut generation = 0;
        let mut feed = |chain: &mut Chain<Arc<SledStore>>, blk: Block| {
            let old = chain.tip_hash();
            chain.process_block(blk, NOW).unwrap();
            generation += 1;
            indexer.push(&chain.tip_change_since(old), generation);
            generation
        };
        let t1 = a.transfer(0, address(1), Amount(COIN), Amount(5), 0);
        let blk = a.extend(vec![t1], address(7));
        feed(&mut chain, blk);
        let t2 = a.transfer(0, address(1), Amount(2 * COIN), Amount(5), 0);
        let blk = a.extend(vec![t2], address(7));
        let g = feed(&mut chain, blk);
        assert!(indexer.wait_for(g, Duration::from_secs(10)));
        assert_eq!(
            tx_location(store.tree(), &t2.id()).unwrap().unwrap().height,
            2
        );
        // a longer branch without t2 replaces the chain
        let t3 = b.transfer(2, address(1), Amount(3 * COIN), Amount(5), 0);
        let mut g = 0;
        for txs in [vec![t1], vec![t3], vec![]] {
            let blk = b.extend(txs, address(8));
            g = feed(&mut chain, blk);
        }
        assert!(indexer.wait_for(g, Duration::from_secs(10)));
        assert_indexed_branch_b(store.tree(), &b, &t2, &t3);
        // a generation never reached is waited for only as long as asked
        assert!(!indexer.wait_for(g + 1, Duration::from_millis(20)));
        indexer.stop();
    }

    /// A block with enough transfers that its records take several batches.
    fn big_block(a: &mut ChainBuilder, miner: u64) -> (Block, Vec<TxId>) {
        let txs: Vec<SignedTransfer> = (0..100)
            .map(|n| a.transfer(0, address(1), Amount(COIN / 100), Amount(5), n))
            .collect();
        let ids = txs.iter().map(|t| t.id()).collect();
        let blk = a.extend(txs, address(miner));
        assert!(records(&blk, blk.hash()).len() > BATCH);
        (blk, ids)
    }

    #[test]
    fn a_step_cut_short_by_a_crash_is_undone_or_finished_at_the_next_start() {
        // the block whose records were half written left the best chain
        let (_dir, store, mut a, mut chain) = open();
        let mut b = a.clone();
        let tree = store.tree();
        catch_up(&chain, tree).unwrap();
        let (blk, ids) = big_block(&mut a, 7);
        let hash = blk.hash();
        chain.process_block(blk.clone(), NOW).unwrap();
        let puts = puts(&blk, hash);
        apply_batches(tree, puts, TipMove::After(Some(hash)), Some(hash), 1).unwrap();
        assert_eq!(pending(tree).unwrap(), Some(hash));
        assert_eq!(tip(tree).unwrap(), Some(a.blocks[0].hash()));
        assert!(
            ids.iter()
                .any(|id| tx_location(tree, id).unwrap().is_some())
        );
        for _ in 0..2 {
            let blk = b.extend(vec![], address(8));
            chain.process_block(blk, NOW).unwrap();
        }
        assert_eq!(chain.tip_hash(), b.tip_hash());
        catch_up(&chain, tree).unwrap();
        for id in &ids {
            assert_eq!(tx_location(tree, id).unwrap(), None, "{id}");
        }
        assert!(history(tree, &address(1), None, 500).unwrap().is_empty());
        assert_eq!(history(tree, &address(8), None, 10).unwrap().len(), 2);
        assert_eq!(tip(tree).unwrap(), Some(b.tip_hash()));
        assert_eq!(pending(tree).unwrap(), None);

        // a block leaving the chain, half unwritten, that is back on it
        let (_dir, store, mut a, mut chain) = open();
        let tree = store.tree();
        let (blk, ids) = big_block(&mut a, 7);
        let hash = blk.hash();
        chain.process_block(blk.clone(), NOW).unwrap();
        catch_up(&chain, tree).unwrap();
        let removals = removals(&blk, hash);
        let parent = TipMove::Before(Some(blk.header.parent));
        apply_batches(tree, removals, parent, Some(hash), 1).unwrap();
        assert_eq!(pending(tree).unwrap(), Some(hash));
        assert!(
            ids.iter()
                .any(|id| tx_location(tree, id).unwrap().is_none())
        );
        catch_up(&chain, tree).unwrap();
        for id in &ids {
            assert_eq!(tx_location(tree, id).unwrap().unwrap().block, hash);
        }
        assert_eq!(history(tree, &address(1), None, 500).unwrap().len(), 100);
        assert_eq!(tip(tree).unwrap(), Some(hash));
        assert_eq!(pending(tree).unwrap(), None);

        // a pending block the chain does not know: the index is rebuilt
        tree.insert(PENDING_KEY, &[7u8; 32][..]).unwrap();
        tree.insert(tx_key(&TxId([9; 32])), &b"stale"[..]).unwrap();
        catch_up(&chain, tree).unwrap();
        assert_eq!(tree.get(tx_key(&TxId([9; 32]))).unwrap(), None);
        for id in &ids {
            assert_eq!(tx_location(tree, id).unwrap().unwrap().block, hash);
        }
        assert_eq!(tip(tree).unwrap(), Some(hash));
        assert_eq!(pending(tree).unwrap(), None);
    }

    #[test]
    fn follows_the_best_chain_through_a_reorg() {
        let (_dir, store, mut a, mut chain) = open();
        let mut b = a.clone();
        let t1 = a.transfer(0, address(1), Amount(COIN), Amount(5), 0);
        a.extend(vec![t1], address(7));
        let t2 = a.transfer(0, address(1), Amount(2 * COIN), Amount(5), 0);
        a.extend(vec![t2], address(7));
        for blk in &a.blocks[1..] {
            chain.process_block(blk.clone(), NOW).unwrap();
        }
        assert_eq!(
            catch_up(&chain, store.tree()).unwrap(),
            3,
            "genesis and two blocks"
        );
        let loc = tx_location(store.tree(), &t2.id()).unwrap().unwrap();
        assert_eq!((loc.height, loc.position), (2, 1));
        let h = history(store.tree(), &address(1), None, 10).unwrap();
        assert_eq!(
            h.iter().map(|r| r.txid).collect::<Vec<_>>(),
            vec![t2.id(), t1.id()]
        );
        assert_eq!(h[0].role, Role::Received);
        assert_eq!(
            history(store.tree(), &address(1), Some(2), 10)
                .unwrap()
                .len(),
            1
        );
        // a longer branch without t2 replaces the chain
        let t3 = b.transfer(2, address(1), Amount(3 * COIN), Amount(5), 0);
        for txs in [vec![t1], vec![t3], vec![]] {
            let blk = b.extend(txs, address(8));
            chain.process_block(blk, NOW).unwrap();
        }
        assert_eq!(chain.tip_hash(), b.tip_hash());
        catch_up(&chain, store.tree()).unwrap();
        assert_indexed_branch_b(store.tree(), &b, &t2, &t3);
        assert_eq!(chain.hash_at(Height(3)), Some(b.tip_hash()));
    }
}
