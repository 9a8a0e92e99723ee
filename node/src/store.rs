//! Chain storage behind a small trait, with a sled implementation.
//!
//! Everything lives in one keyspace with one-byte prefixes, so that a block
//! connect or disconnect is one atomic batch (sled's `apply_batch` is atomic
//! within a tree) holding the account changes, the undo record, the height
//! index and the tip:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `M` | name | metadata: schema version, genesis hash, tip |
//! | `B` | block hash | block (borsh) |
//! | `I` | block hash | [`IndexEntry`] |
//! | `A` | address | [`Account`] |
//! | `U` | block hash | [`UndoRecord`] of a connected block |
//! | `H` | height (big-endian) | hash of the main-chain block at that height |
//!
//! # Accounts: a base table and a write-back overlay
//! The sled store does not rewrite every touched account on every block.
//! The `A` table holds the accounts as of a *checkpoint* block (meta key
//! `checkpoint`); the accounts changed since are kept in memory (the
//! overlay), and every block's changes are durable in its undo record
//! (which holds each touched account before and after), committed
//! atomically with the height and the tip. At start-up the overlay is
//! rebuilt by replaying the undo records of the best chain above the
//! checkpoint. The overlay is folded into the table (one atomic batch that
//! also moves the checkpoint) when it grows past [`MAX_OVERLAY_ACCOUNTS`],
//! every [`MAX_BLOCKS_PER_CHECKPOINT`] blocks, when a disconnect goes below
//! the checkpoint, and at shutdown. This is the write-back cache of
//! Bitcoin's chainstate, with the undo records as the journal: a block
//! commit writes a handful of keys whatever it touches.
//!
//! # Correctness
//! A commit is atomic but not durable until [`ChainStore::flush`] returns;
//! the chain manager flushes before it reports a block accepted. Every value
//! read back is decoded with its size bound, and a value that does not decode
//! is reported as [`StoreError::Corrupt`], never trusted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use borsh::{BorshDeserialize, BorshSerialize};
use cairn_consensus::block::HEADER_BYTES;
use cairn_consensus::encoding;
use cairn_consensus::{Account, Address, Block, BlockHash, BlockHeader, Height, UndoRecord, Work};

/// Version of the layout above. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Largest stored block read back (the spec limit is at most 32 MiB).
const MAX_STORED_BLOCK: usize = 64 << 20;
/// Largest undo record read back.
const MAX_STORED_UNDO: usize = 256 << 20;
/// The overlay is folded into the account table beyond this many accounts.
pub const MAX_OVERLAY_ACCOUNTS: usize = 200_000;
/// ... or this many blocks after the checkpoint.
pub const MAX_BLOCKS_PER_CHECKPOINT: u64 = 10_000;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    #[error("corrupt store: {what} does not decode ({detail})")]
    Corrupt { what: String, detail: String },
    #[error(
        "store schema version {found} is not supported (this node reads version {SCHEMA_VERSION}); use a new --datadir"
    )]
    Schema { found: u32 },
    #[error(
        "this datadir holds the chain with genesis {stored}, but the configured network's genesis is {expected}; use another --datadir or the matching --network/--genesis"
    )]
    GenesisMismatch {
        stored: BlockHash,
        expected: BlockHash,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt {
                what: "the sled database".into(),
                detail: e.to_string(),
            },
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// Validation status of a stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BlockStatus {
    /// Header and body passed every check that needs no state; the state
    /// checks run when the block is connected.
    Valid,
    /// Failed a check: never connected, neither are its descendants.
    Invalid,
}

/// What the store keeps about every block it holds, main chain or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IndexEntry {
    pub header: BlockHeader,
    /// Cumulative work from genesis to this block, inclusive.
    pub work: Work,
    /// Time of block 1 on this block's branch (the ASERT anchor).
    pub anchor_time_ms: Option<u64>,
    pub status: BlockStatus,
    /// Arrival order, for "first seen wins" among equal work.
    pub seq: u64,
}

impl IndexEntry {
    /// What the contextual header rules need to know about this block.
    pub fn meta(&self) -> cairn_consensus::validation::HeaderMeta {
        cairn_consensus::validation::HeaderMeta {
            header: self.header,
            work: self.work,
            anchor_time_ms: self.anchor_time_ms,
        }
    }
}

/// Metadata keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    Schema,
    Genesis,
    Tip,
    /// Height and hash of the block the account table reflects.
    Checkpoint,
}

impl Meta {
    fn name(self) -> &'static [u8] {
        match self {
            Meta::Schema => b"schema",
            Meta::Genesis => b"genesis",
            Meta::Tip => b"tip",
            Meta::Checkpoint => b"checkpoint",
        }
    }
}

/// One write in a [`Batch`].
#[derive(Clone, Debug)]
pub enum Op {
    PutBlock(BlockHash, Vec<u8>),
    DeleteBlock(BlockHash),
    PutIndex(BlockHash, IndexEntry),
    DeleteIndex(BlockHash),
    PutAccount(Address, Account),
    DeleteAccount(Address),
    /// An encoded [`UndoRecord`]: see [`Op::put_undo`].
    PutUndo(BlockHash, Vec<u8>),
    DeleteUndo(BlockHash),
    PutHeight(Height, BlockHash),
    DeleteHeight(Height),
    PutMeta(Meta, Vec<u8>),
}

impl Op {
    /// Stores the undo record of block `hash` (encoded here, so that the
    /// caller can do it before taking the store's locks).
    pub fn put_undo(hash: BlockHash, undo: &UndoRecord) -> Op {
        Op::PutUndo(hash, encoding::encode(undo))
    }
}

/// A set of writes applied atomically by [`ChainStore::commit`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
    /// The tip this batch moves to, with its height.
    pub tip: Option<(BlockHash, Height)>,
    /// Fold every pending account change into the account table.
    pub checkpoint: bool,
}

impl Batch {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Writes an account, or deletes it when it is empty.
    pub fn set_account(&mut self, address: Address, account: Account) {
        if account.is_empty() {
            self.ops.push(Op::DeleteAccount(address));
        } else {
            self.ops.push(Op::PutAccount(address, account));
        }
    }

    /// Moves the tip to `hash` at `height`.
    pub fn set_tip(&mut self, hash: BlockHash, height: Height) {
        self.ops.push(Op::PutMeta(Meta::Tip, hash.0.to_vec()));
        self.tip = Some((hash, height));
    }
}

/// The storage the chain manager needs. Reads are consistent per key;
/// writes happen only through atomic [`Batch`]es.
pub trait ChainStore: Send + Sync {
    fn meta(&self, key: Meta) -> Result<Option<Vec<u8>>, StoreError>;
    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError>;
    /// Every index entry (read once at start-up).
    fn index_entries(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StoreError>;
    /// The index entry of one stored block.
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError>;
    fn account(&self, address: &Address) -> Result<Account, StoreError>;
    /// Sets `out[i]` to the account at `addresses[i]`: many reads at once
    /// (a block's), which a store may spread over all cores.
    fn accounts(&self, addresses: &[Address], out: &mut [Account]) -> Result<(), StoreError> {
        for (a, o) in addresses.iter().zip(out) {
            *o = self.account(a)?;
        }
        Ok(())
    }
    /// Every non-empty account, in address order.
    fn all_accounts(&self) -> Result<Vec<(Address, Account)>, StoreError>;
    fn undo(&self, hash: &BlockHash) -> Result<Option<UndoRecord>, StoreError>;
    fn hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError>;
    /// Applies every op of `batch` or none.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// Makes every committed batch durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Removes all derived state (accounts, undo records, heights, tip) so
    /// that it can be rebuilt from the stored blocks.
    fn clear_state(&self) -> Result<(), StoreError>;
}

fn key(prefix: u8, body: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + body.len());
    k.push(prefix);
    k.extend_from_slice(body);
    k
}

fn encode_op(op: Op) -> (Vec<u8>, Option<Vec<u8>>) {
    match op {
        Op::PutBlock(h, bytes) => (key(b'B', &h.0), Some(bytes)),
        Op::DeleteBlock(h) => (key(b'B', &h.0), None),
        Op::PutIndex(h, e) => (key(b'I', &h.0), Some(encoding::encode(&e))),
        Op::DeleteIndex(h) => (key(b'I', &h.0), None),
        Op::PutAccount(a, acc) => (key(b'A', &a.0), Some(encoding::encode(&acc))),
        Op::DeleteAccount(a) => (key(b'A', &a.0), None),
        Op::PutUndo(h, bytes) => (key(b'U', &h.0), Some(bytes)),
        Op::DeleteUndo(h) => (key(b'U', &h.0), None),
        Op::PutHeight(height, h) => (key(b'H', &height.0.to_be_bytes()), Some(h.0.to_vec())),
        Op::DeleteHeight(height) => (key(b'H', &height.0.to_be_bytes()), None),
        Op::PutMeta(m, v) => (key(b'M', m.name()), Some(v)),
    }
}

fn corrupt(what: impl Into<String>, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn decode_account(k: &[u8], v: &[u8]) -> Result<(Address, Account), StoreError> {
    let addr: [u8; 20] = k
        .get(1..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("an account key", "wrong length"))?;
    let acc = encoding::decode::<Account>("account", v, 16)
        .map_err(|e| corrupt(format!("account {}", hex_short(&addr)), e))?;
    Ok((Address(addr), acc))
}

fn decode_index(k: &[u8], v: &[u8]) -> Result<(BlockHash, IndexEntry), StoreError> {
    let hash: [u8; 32] = k
        .get(1..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("an index key", "wrong length"))?;
    let e = encoding::decode::<IndexEntry>("index entry", v, HEADER_BYTES + 64)
        .map_err(|e| corrupt(format!("index entry {}", hex_short(&hash)), e))?;
    Ok((BlockHash(hash), e))
}

fn hex_short(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

fn decode_hash(what: &str, v: &[u8]) -> Result<BlockHash, StoreError> {
    <[u8; 32]>::try_from(v)
        .map(BlockHash)
        .map_err(|_| corrupt(what, format!("{} bytes, expected 32", v.len())))
}

/// Accounts changed after the checkpoint, see the module docs.
#[derive(Default)]
struct Overlay {
    /// Latest value of each changed account (empty means deleted).
    accounts: HashMap<Address, Account>,
    checkpoint: Option<Height>,
    tip: Option<(BlockHash, Height)>,
}

/// The file beside the database that remembers the tip at the last
/// successful flush (`HEIGHT HASH`, one line). sled may truncate a damaged
/// log and reopen at an older tip without an error; this file, written
/// outside sled after each flush, lets the node notice and say how many
/// blocks it lost.
pub const FLUSHED_TIP_FILE: &str = "flushed-tip";

/// The sled implementation.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    overlay: RwLock<Overlay>,
    dir: std::path::PathBuf,
    /// The flushed tip recorded before this process opened the store.
    flushed_at_open: Option<(Height, BlockHash)>,
    /// The flushed tip last written to [`FLUSHED_TIP_FILE`] by this process.
    flushed_written: std::sync::Mutex<Option<(BlockHash, Height)>>,
    /// Blocks after the checkpoint before the overlay is folded.
    checkpoint_blocks: std::sync::atomic::AtomicU64,
}

/// Reads [`FLUSHED_TIP_FILE`] in `dir`: `None` when absent or unreadable
/// (it is advisory: a damaged marker must not stop the node).
pub fn read_flushed_tip(dir: &Path) -> Option<(Height, BlockHash)> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(dir.join(FLUSHED_TIP_FILE))
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    let mut parts = text.split_whitespace();
    let height = parts.next()?.parse::<u64>().ok()?;
    let hash = <[u8; 32] as hex::FromHex>::from_hex(parts.next()?).ok()?;
    parts
        .next()
        .is_none()
        .then_some((Height(height), BlockHash(hash)))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        // A store closed a moment ago (a restart in the same process, or a
        // process that is exiting) releases its file lock when sled's
        // flusher thread ends: wait for that briefly before giving up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut snapshots_cleared = false;
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .open()
            {
                Ok(db) => break db,
                // sled reports a held lock as an `Other` error with this text
                Err(sled::Error::Io(io))
                    if io.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(sled::Error::Io(io)) => {
                    return Err(StoreError::Backend(format!(
                        "cannot open the store in {}: {io} (is another cairn-node using this datadir?)",
                        dir.display()
                    )));
                }
                // a kill while sled wrote a snapshot leaves it half written
                // under a name sled still reads (sled #1527): it is never a
                // finished snapshot, so drop it and let sled start from the
                // previous one and its log
                Err(sled::Error::Corruption { .. })
                    if !snapshots_cleared && remove_unfinished_snapshots(dir) > 0 =>
                {
                    snapshots_cleared = true;
                }
                Err(other) => return Err(StoreError::from(other)),
            }
        };
        let tree = db.open_tree("chain")?;
        let store = SledStore {
            db,
            tree,
            overlay: RwLock::new(Overlay::default()),
            dir: dir.to_path_buf(),
            flushed_at_open: read_flushed_tip(dir),
            flushed_written: std::sync::Mutex::new(None),
            checkpoint_blocks: std::sync::atomic::AtomicU64::new(MAX_BLOCKS_PER_CHECKPOINT),
        };
        store.recover_overlay()?;
        Ok(store)
    }

    /// Folds the overlay every `blocks` blocks (at least 1) instead of
    /// every [`MAX_BLOCKS_PER_CHECKPOINT`] (`[storage] checkpoint_blocks`;
    /// the crash tests use a small value so kills land in checkpoints).
    pub fn set_checkpoint_blocks(&self, blocks: u64) {
        self.checkpoint_blocks
            .store(blocks.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The tip recorded at the last flush before this process opened the
    /// store (see [`FLUSHED_TIP_FILE`]).
    pub fn flushed_tip_at_open(&self) -> Option<(Height, BlockHash)> {
        self.flushed_at_open
    }

    /// Records the current tip in [`FLUSHED_TIP_FILE`] after a flush
    /// (write to a temporary file, then rename: the file is whole or old).
    /// Records `tip`, read before a flush that has now returned, as the
    /// tip that flush made durable.
    fn record_flushed_tip(&self, tip: Option<(BlockHash, Height)>) {
        let Some(tip) = tip else {
            return;
        };
        let mut written = self
            .flushed_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *written == Some(tip) {
            return;
        }
        let (hash, height) = tip;
        let tmp = self.dir.join(format!("{FLUSHED_TIP_FILE}.tmp"));
        let done = std::fs::write(&tmp, format!("{} {hash}\n", height.0))
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(FLUSHED_TIP_FILE)));
        match done {
            Ok(()) => *written = Some(tip),
            Err(e) => tracing::warn!(
                "cannot record the flushed tip in {}: {e}",
                self.dir.display()
            ),
        }
    }

    fn overlay_read(&self) -> std::sync::RwLockReadGuard<'_, Overlay> {
        self.overlay.read().unwrap_or_else(|p| p.into_inner())
    }

    fn overlay_write(&self) -> std::sync::RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the overlay from the undo records of the best chain above
    /// the checkpoint. Stops quietly at a missing or corrupt record: the
    /// chain's start-up check then finds the state wrong and rebuilds it.
    fn recover_overlay(&self) -> Result<(), StoreError> {
        let mut ov = self.overlay_write();
        *ov = Overlay::default();
        let checkpoint = match self.tree.get(key(b'M', Meta::Checkpoint.name()))? {
            Some(v) if v.len() == 40 => {
                let mut h = [0u8; 8];
                h.copy_from_slice(&v[..8]);
                Height(u64::from_le_bytes(h))
            }
            _ => return Ok(()),
        };
        ov.checkpoint = Some(checkpoint);
        let Some(tip) = self
            .tree
            .get(key(b'M', Meta::Tip.name()))?
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
            .map(BlockHash)
        else {
            return Ok(());
        };
        let Ok(Some(tip_entry)) = self.index_entry(&tip) else {
            return Ok(());
        };
        let tip_height = tip_entry.header.height;
        ov.tip = Some((tip, tip_height));
        let mut replayed = 0u64;
        for h in checkpoint.0.saturating_add(1)..=tip_height.0 {
            let Ok(Some(hash)) = self.hash_at(Height(h)) else {
                break;
            };
            let Ok(Some(undo)) = self.undo(&hash) else {
                break;
            };
            for c in undo.changes {
                ov.accounts.insert(c.address, c.after);
            }
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!("replayed {replayed} blocks since the last state checkpoint");
        }
        Ok(())
    }

    fn base_account(&self, address: &Address) -> Result<Account, StoreError> {
        let mut k = [b'A'; 1 + cairn_consensus::address::ADDRESS_LEN];
        k[1..].copy_from_slice(&address.0);
        match self.tree.get(k)? {
            None => Ok(Account::default()),
            Some(v) => decode_account(&k, &v).map(|(_, a)| a),
        }
    }

    /// Folds the pending account changes into the account table now.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut ov = self.overlay_write();
        let Some((hash, height)) = ov.tip else {
            return Ok(());
        };
        let mut b = sled::Batch::default();
        write_accounts(&mut b, ov.accounts.drain());
        b.insert(
            key(b'M', Meta::Checkpoint.name()),
            checkpoint_value(hash, height),
        );
        self.tree.apply_batch(b)?;
        ov.checkpoint = Some(height);
        Ok(())
    }

    /// Accounts waiting in memory for the next checkpoint.
    pub fn pending_accounts(&self) -> usize {
        self.overlay_read().accounts.len()
    }
}

fn checkpoint_value(hash: BlockHash, height: Height) -> Vec<u8> {
    let mut v = height.0.to_le_bytes().to_vec();
    v.extend_from_slice(&hash.0);
    v
}

fn write_accounts(b: &mut sled::Batch, accounts: impl Iterator<Item = (Address, Account)>) {
    for (a, acc) in accounts {
        let k = key(b'A', &a.0);
        if acc.is_empty() {
            b.remove(k);
        } else {
            b.insert(k, encoding::encode(&acc));
        }
    }
}

impl SledStore {
    /// The keyspace, for derived indexes kept under their own prefixes
    /// (see [`crate::index`]).
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Another tree of the same database (for data that is not the chain's).
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// A stored block's encoding, as stored (canonical borsh), without
    /// decoding it.
    pub fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key(b'B', &hash.0))?.map(|v| v.to_vec()))
    }
}

/// Removes the snapshot files sled had not finished writing in `dir`
/// (`snap.<lsn>.generating`: sled writes a snapshot under that name, syncs
/// it, then renames it, and removes older snapshots only after the rename).
/// Returns how many it removed.
fn remove_unfinished_snapshots(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::warn!(
                        "removed {name}, a store snapshot left half written by a crash; the store recovers from the previous snapshot and its log"
                    );
                    removed += 1;
                }
                Err(err) => tracing::error!("cannot remove {name}: {err}"),
            }
        }
    }
    removed
}

impl ChainStore for SledStore {
    fn meta(&self, k: Meta) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key(b'M', k.name()))?.map(|v| v.to_vec()))
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        match self.tree.get(key(b'B', &hash.0))? {
            None => Ok(None),
            Some(v) => Block::decode(&v, MAX_STORED_BLOCK)
                .map(Some)
                .map_err(|e| corrupt(format!("block {hash}"), e)),
        }
    }

    fn index_entries(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StoreError> {
        self.tree
            .scan_prefix([b'I'])
            .map(|r| {
                let (k, v) = r?;
                decode_index(&k, &v)
            })
            .collect()
    }

    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        let k = key(b'I', &hash.0);
        match self.tree.get(&k)? {
            None => Ok(None),
            Some(v) => decode_index(&k, &v).map(|(_, e)| Some(e)),
        }
    }

    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        let ov = self.overlay_read();
        match ov.accounts.get(address) {
            Some(a) => Ok(*a),
            None => self.base_account(address),
        }
    }

    /// In chunks on all cores, each chunk under one read of the overlay.
    /// The chunks are not one snapshot: the read is consistent only
    /// because every writer of the overlay and the account table
    /// (`commit`, `checkpoint`, `clear_state`) runs under the chain lock,
    /// which every caller of this holds. A writer outside it would need
    /// this read under one overlay lock.
    fn accounts(&self, addresses: &[Address], out: &mut [Account]) -> Result<(), StoreError> {
        use rayon::prelude::*;
        const CHUNK: usize = 256;
        let read = |(out, addresses): (&mut [Account], &[Address])| {
            let ov = self.overlay_read();
            for (o, a) in out.iter_mut().zip(addresses) {
                *o = match ov.accounts.get(a) {
                    Some(acc) => *acc,
                    None => self.base_account(a)?,
                };
            }
            Ok(())
        };
        if addresses.len() <= CHUNK {
            return read((out, addresses));
        }
        out.par_chunks_mut(CHUNK)
            .zip(addresses.par_chunks(CHUNK))
            .try_for_each(read)
    }

    fn all_accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        let ov = self.overlay_read();
        let mut all: BTreeMap<Address, Account> = self
            .tree
            .scan_prefix([b'A'])
            .map(|r| {
                let (k, v) = r?;
                decode_account(&k, &v)
            })
            .collect::<Result<_, StoreError>>()?;
        for (a, acc) in &ov.accounts {
            if acc.is_empty() {
                all.remove(a);
            } else {
                all.insert(*a, *acc);
            }
        }
        Ok(all.into_iter().collect())
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<UndoRecord>, StoreError> {
        match self.tree.get(key(b'U', &hash.0))? {
            None => Ok(None),
            Some(v) => encoding::decode::<UndoRecord>("undo record", &v, MAX_STORED_UNDO)
                .map(Some)
                .map_err(|e| corrupt(format!("undo record of {hash}"), e)),
        }
    }

    fn hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        match self.tree.get(key(b'H', &height.0.to_be_bytes()))? {
            None => Ok(None),
            Some(v) => decode_hash(&format!("height {height}"), &v).map(Some),
        }
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut ov = self.overlay_write();
        let mut accounts: Vec<(Address, Account)> = Vec::new();
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                Op::PutAccount(a, acc) => accounts.push((a, acc)),
                Op::DeleteAccount(a) => accounts.push((a, Account::default())),
                other => match encode_op(other) {
                    (k, Some(v)) => b.insert(k, v),
                    (k, None) => b.remove(k),
                },
            }
        }
        let Some((hash, height)) = batch.tip else {
            // no tip move: a direct write to the table (repairs, tests)
            for (a, _) in &accounts {
                ov.accounts.remove(a);
            }
            write_accounts(&mut b, accounts.into_iter());
            self.tree.apply_batch(b)?;
            return Ok(());
        };
        let fold = batch.checkpoint
            || ov.checkpoint.is_none_or(|c| height < c)
            || ov.accounts.len() + accounts.len() > MAX_OVERLAY_ACCOUNTS
            || ov.checkpoint.is_some_and(|c| {
                height.0.saturating_sub(c.0)
                    >= self
                        .checkpoint_blocks
                        .load(std::sync::atomic::Ordering::Relaxed)
            });
        if fold {
            let mut merged: HashMap<Address, Account> = ov.accounts.drain().collect();
            merged.extend(accounts);
            write_accounts(&mut b, merged.into_iter());
            b.insert(
                key(b'M', Meta::Checkpoint.name()),
                checkpoint_value(hash, height),
            );
            self.tree.apply_batch(b)?;
            ov.checkpoint = Some(height);
        } else {
            self.tree.apply_batch(b)?;
            ov.accounts.extend(accounts);
        }
        ov.tip = Some((hash, height));
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // read first: a commit that lands during the flush may not be in it
        let tip = self.overlay_read().tip;
        self.db.flush()?;
        self.record_flushed_tip(tip);
        Ok(())
    }

    fn clear_state(&self) -> Result<(), StoreError> {
        let mut ov = self.overlay_write();
        *ov = Overlay::default();
        for prefix in [b'A', b'U', b'H'] {
            let mut b = sled::Batch::default();
            for r in self.tree.scan_prefix([prefix]).keys() {
                b.remove(r?);
            }
            self.tree.apply_batch(b)?;
        }
        self.tree.remove(key(b'M', Meta::Tip.name()))?;
        self.tree.remove(key(b'M', Meta::Checkpoint.name()))?;
        self.db.flush()?;
        Ok(())
    }
}

/// An in-memory store for tests: same semantics, no durability.
#[derive(Default)]
pub struct MemStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    fn scan(&self, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .range(vec![prefix]..vec![prefix + 1])
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl ChainStore for MemStore {
    fn meta(&self, k: Meta) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&key(b'M', k.name())))
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.get(&key(b'B', &hash.0))
            .map(|v| Block::decode(&v, MAX_STORED_BLOCK).map_err(|e| corrupt("block", e)))
            .transpose()
    }

    fn index_entries(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StoreError> {
        self.scan(b'I')
            .iter()
            .map(|(k, v)| decode_index(k, v))
            .collect()
    }

    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        let k = key(b'I', &hash.0);
        self.get(&k)
            .map(|v| decode_index(&k, &v).map(|(_, e)| e))
            .transpose()
    }

    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        let k = key(b'A', &address.0);
        match self.get(&k) {
            None => Ok(Account::default()),
            Some(v) => decode_account(&k, &v).map(|(_, a)| a),
        }
    }

    fn all_accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        self.scan(b'A')
            .iter()
            .map(|(k, v)| decode_account(k, v))
            .collect()
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<UndoRecord>, StoreError> {
        self.get(&key(b'U', &hash.0))
            .map(|v| {
                encoding::decode::<UndoRecord>("undo record", &v, MAX_STORED_UNDO)
                    .map_err(|e| corrupt("undo record", e))
            })
            .transpose()
    }

    fn hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        self.get(&key(b'H', &height.0.to_be_bytes()))
            .map(|v| decode_hash("height entry", &v))
            .transpose()
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for op in batch.ops {
            match encode_op(op) {
                (k, Some(v)) => {
                    map.insert(k, v);
                }
                (k, None) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn clear_state(&self) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| !matches!(k.first(), Some(b'A' | b'U' | b'H')));
        map.remove(&key(b'M', Meta::Tip.name()));
        Ok(())
    }
}

impl<T: ChainStore + ?Sized> ChainStore for std::sync::Arc<T> {
    fn meta(&self, key: Meta) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).meta(key)
    }
    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        (**self).block(hash)
    }
    fn index_entries(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StoreError> {
        (**self).index_entries()
    }
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        (**self).index_entry(hash)
    }
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        (**self).account(address)
    }
    fn accounts(&self, addresses: &[Address], out: &mut [Account]) -> Result<(), StoreError> {
        (**self).accounts(addresses, out)
    }
    fn all_accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        (**self).all_accounts()
    }
    fn undo(&self, hash: &BlockHash) -> Result<Option<UndoRecord>, StoreError> {
        (**self).undo(hash)
    }
    fn hash_at(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        (**self).hash_at(height)
    }
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn clear_state(&self) -> Result<(), StoreError> {
        (**self).clear_state()
    }
}
