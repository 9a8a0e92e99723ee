//! The chain manager: accepts blocks in any order, keeps side branches and
//! (bounded) orphans, follows the valid chain with the most work by
//! disconnecting and connecting blocks, and recovers the store at start-up.
//!
//! # Correctness
//! - Only a block that passed every stateless check (header, proof of work,
//!   body, signatures) and its contextual header check is stored; only a
//!   block that also passes the state checks is connected.
//! - Each connect and disconnect is one atomic store commit (account
//!   changes, undo record, height index, tip). A crash between two commits
//!   of a reorganisation leaves a consistent chain at some block; at the
//!   next start the best chain is activated again.
//! - [`Chain::process_block`] flushes the store before it returns, so a
//!   block reported accepted is durable.
//! - At start-up the state commitment of all stored accounts is checked
//!   against the tip's header; on any mismatch or undecodable record the
//!   state is rebuilt from the stored blocks rather than served.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use cairn_consensus::fork::is_better_chain;
use cairn_consensus::state::state_root;
use cairn_consensus::validation::{
    HeaderMeta, check_block_with_ids, check_header, median_time_past_of, try_validate_block_state,
    validate_header_in_context,
};
use cairn_consensus::{
    Account, Address, Block, BlockEffects, BlockError, BlockHash, ConsensusParams, Height,
    SignedTransfer, Target, TxId, UndoRecord, Work,
};
use cairn_genesis::Network;

use crate::store::{
    Batch, BlockStatus, ChainStore, IndexEntry, Meta, Op, SCHEMA_VERSION, StoreError,
};

/// Checks the signatures of a block's transfers; the node passes a parallel
/// implementation ([`crate::verify::verify_signatures`] or a
/// [`crate::verify::SigCache`]).
/// Checks the signatures of a block's transfers, given with their ids.
pub type SignatureVerifier =
    std::sync::Arc<dyn Fn(&[SignedTransfer], &[TxId]) -> Result<(), BlockError> + Send + Sync>;

/// Limits of the chain manager.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// Most blocks waiting for their parent.
    pub max_orphans: usize,
    /// Most bytes of blocks waiting for their parent.
    pub max_orphan_bytes: usize,
    /// Most hashes remembered as invalid without being stored.
    pub max_rejected: usize,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            max_orphans: 1024,
            max_orphan_bytes: 64 << 20,
            max_rejected: 16_384,
        }
    }
}

/// Why a block was not accepted, or the chain could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("block {hash} is invalid: {error}")]
    Invalid { hash: BlockHash, error: BlockError },
    #[error("block {hash} was already found invalid")]
    KnownInvalid { hash: BlockHash },
    #[error("block {hash} builds on invalid block {parent}")]
    InvalidAncestor { hash: BlockHash, parent: BlockHash },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store is inconsistent: {0}")]
    Inconsistent(String),
}

impl ChainError {
    /// Whether the error is about the block (the sender's fault, possibly),
    /// rather than about this node's storage.
    pub fn is_block_fault(&self) -> bool {
        !matches!(self, ChainError::Store(_) | ChainError::Inconsistent(_))
    }
}

/// Where a processed block ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// On the best chain now.
    Connected,
    /// Stored on a branch with less work than the best chain.
    SideBranch,
    /// Parent unknown: held in the orphan pool; `missing` is the parent.
    Orphan { missing: BlockHash },
    /// Already stored or already waiting.
    Duplicate,
}

/// How the best chain moved during one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TipChange {
    /// Blocks that left the best chain, newest first.
    pub disconnected: Vec<BlockHash>,
    /// Blocks that joined it, oldest first.
    pub connected: Vec<BlockHash>,
}

impl TipChange {
    pub fn is_empty(&self) -> bool {
        self.disconnected.is_empty() && self.connected.is_empty()
    }
}

/// The result of [`Chain::process_block`].
#[derive(Clone, Debug)]
pub struct Processed {
    pub hash: BlockHash,
    pub outcome: Outcome,
    pub tip_change: TipChange,
    /// Orphans that were waiting on this block and turned out invalid.
    pub rejected_orphans: Vec<BlockHash>,
}

/// What happened at start-up.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Fresh store initialised with genesis.
    pub created: bool,
    /// Why the state was rebuilt from blocks, if it was.
    pub rebuilt: Option<String>,
    pub blocks_replayed: u64,
    /// Anything else the operator should know about the store.
    pub notice: Option<String>,
}

/// Blocks whose parent is unknown, bounded by count and bytes (oldest evicted).
#[derive(Default)]
struct OrphanPool {
    blocks: HashMap<BlockHash, Block>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    order: VecDeque<BlockHash>,
    bytes: usize,
}

impl OrphanPool {
    fn contains(&self, h: &BlockHash) -> bool {
        self.blocks.contains_key(h)
    }

    fn insert(&mut self, hash: BlockHash, block: Block, max_count: usize, max_bytes: usize) {
        let size = block.encoded_len();
        if size > max_bytes || self.blocks.contains_key(&hash) {
            return;
        }
        while !self.order.is_empty()
            && (self.blocks.len() >= max_count || self.bytes + size > max_bytes)
        {
            if let Some(old) = self.order.pop_front() {
                self.remove(&old);
            }
        }
        self.by_parent
            .entry(block.header.parent)
            .or_default()
            .push(hash);
        self.bytes += size;
        self.blocks.insert(hash, block);
        self.order.push_back(hash);
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let block = self.blocks.remove(hash)?;
        self.bytes -= block.encoded_len();
        if let Some(siblings) = self.by_parent.get_mut(&block.header.parent) {
            siblings.retain(|h| h != hash);
            if siblings.is_empty() {
                self.by_parent.remove(&block.header.parent);
            }
        }
        Some(block)
    }

    fn take_children(&mut self, parent: &BlockHash) -> Vec<(BlockHash, Block)> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(b) = self.blocks.remove(&h) {
                self.bytes -= b.encoded_len();
                self.order.retain(|x| *x != h);
                out.push((h, b));
            }
        }
        out
    }
}

/// A bounded set of hashes known to be invalid (oldest forgotten first).
#[derive(Default)]
struct Rejected {
    set: HashSet<BlockHash>,
    order: VecDeque<BlockHash>,
}

impl Rejected {
    fn insert(&mut self, h: BlockHash, max: usize) {
        if self.set.insert(h) {
            self.order.push_back(h);
            while self.order.len() > max {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The chain manager over a [`ChainStore`].
pub struct Chain<S: ChainStore> {
    store: S,
    params: ConsensusParams,
    genesis_hash: BlockHash,
    genesis_accounts: Vec<(Address, Account)>,
    config: ChainConfig,
    verify: SignatureVerifier,
    index: HashMap<BlockHash, IndexEntry>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    /// Valid blocks ordered by (work, first seen); the last is the best.
    candidates: BTreeSet<(Work, Reverse<u64>, BlockHash)>,
    /// The best chain: `main[h]` is the block at height `h`.
    main: Vec<BlockHash>,
    orphans: OrphanPool,
    rejected: Rejected,
    next_seq: u64,
    /// The blocks connected last, newest last, so that what follows a
    /// connect (mempool clean-up, relay) does not read them back.
    recent: VecDeque<(BlockHash, Arc<Block>)>,
}

/// How many connected blocks [`Chain`] keeps in memory.
const RECENT_BLOCKS: usize = 8;

fn entry_key(e: &IndexEntry, h: BlockHash) -> (Work, Reverse<u64>, BlockHash) {
    (e.work, Reverse(e.seq), h)
}

impl<S: ChainStore> Chain<S> {
    /// Opens the chain in `store` for `network`, creating genesis in a fresh
    /// store, checking the stored state and rebuilding it if needed.
    pub fn open(
        store: S,
        network: &Network,
        verify: impl Fn(&[SignedTransfer], &[TxId]) -> Result<(), BlockError> + Send + Sync + 'static,
        config: ChainConfig,
    ) -> Result<(Chain<S>, OpenReport), ChainError> {
        let verify: SignatureVerifier = std::sync::Arc::new(verify);
        let mut report = OpenReport::default();
        match store.meta(Meta::Schema)? {
            None => {}
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_le_bytes)
                    .unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found }.into());
                }
            }
        }
        let stored_genesis = store.meta(Meta::Genesis)?;
        let mut chain = Chain {
            store,
            params: network.params.clone(),
            genesis_hash: network.genesis_hash,
            genesis_accounts: network.accounts.clone(),
            config,
            verify,
            index: HashMap::new(),
            children: HashMap::new(),
            candidates: BTreeSet::new(),
            main: Vec::new(),
            orphans: OrphanPool::default(),
            rejected: Rejected::default(),
            next_seq: 0,
            recent: VecDeque::new(),
        };
        match stored_genesis {
            None => {
                chain.init_genesis(&network.genesis)?;
                report.created = true;
            }
            Some(v) => {
                let stored = <[u8; 32]>::try_from(v.as_slice())
                    .map(BlockHash)
                    .map_err(|_| StoreError::Corrupt {
                        what: "genesis hash".into(),
                        detail: "wrong length".into(),
                    })?;
                if stored != network.genesis_hash {
                    return Err(StoreError::GenesisMismatch {
                        stored,
                        expected: network.genesis_hash,
                    }
                    .into());
                }
            }
        }
        chain.load_index()?;
        if let Some(reason) = chain.load_main_and_check_state()? {
            tracing::warn!("{reason}; rebuilding the state from the stored blocks");
            report.blocks_replayed = chain.rebuild_state()?;
            report.rebuilt = Some(reason);
        }
        // A crash during a reorganisation can leave a better branch unconnected.
        chain.activate_best_chain()?;
        chain.store.flush()?;
        Ok((chain, report))
    }

    fn init_genesis(&mut self, genesis: &Block) -> Result<(), ChainError> {
        let hash = genesis.hash();
        let root = state_root(self.genesis_accounts.iter().map(|(a, s)| (a, s)));
        if hash != self.genesis_hash || root != genesis.header.state_root {
            return Err(ChainError::Inconsistent(
                "the network's genesis block does not match its accounts".into(),
            ));
        }
        let entry = IndexEntry {
            header: genesis.header,
            work: genesis.header.target.work(),
            anchor_time_ms: None,
            status: BlockStatus::Valid,
            seq: 0,
        };
        let mut batch = Batch::default();
        batch.push(Op::PutMeta(
            Meta::Schema,
            SCHEMA_VERSION.to_le_bytes().to_vec(),
        ));
        batch.push(Op::PutMeta(Meta::Genesis, hash.0.to_vec()));
        batch.push(Op::PutBlock(hash, genesis.encode()));
        batch.push(Op::PutIndex(hash, entry));
        self.genesis_state_ops(&mut batch);
        self.store.commit(batch)?;
        self.store.flush()?;
        Ok(())
    }

    /// Writes the genesis accounts, height 0 and the tip at genesis.
    fn genesis_state_ops(&self, batch: &mut Batch) {
        for (a, acc) in &self.genesis_accounts {
            batch.set_account(*a, *acc);
        }
        batch.push(Op::PutHeight(Height::GENESIS, self.genesis_hash));
        batch.set_tip(self.genesis_hash, Height::GENESIS);
        batch.checkpoint = true;
    }

    fn load_index(&mut self) -> Result<(), ChainError> {
        let entries = self.store.index_entries()?;
        for (h, e) in entries {
            self.next_seq = self.next_seq.max(e.seq + 1);
            if h != self.genesis_hash {
                self.children.entry(e.header.parent).or_default().push(h);
            }
            if e.status == BlockStatus::Valid {
                self.candidates.insert(entry_key(&e, h));
            }
            self.index.insert(h, e);
        }
        if !self.index.contains_key(&self.genesis_hash) {
            return Err(ChainError::Inconsistent(
                "the genesis block is missing from the block index".into(),
            ));
        }
        // # Correctness: every entry's ancestors are in the index. Entries
        // that do not lead back to genesis (a damaged store) are dropped so
        // that walking parents can never fall off the index.
        let mut reachable = HashSet::with_capacity(self.index.len());
        let mut stack = vec![self.genesis_hash];
        while let Some(h) = stack.pop() {
            if reachable.insert(h)
                && let Some(kids) = self.children.get(&h)
            {
                stack.extend(kids.iter().copied());
            }
        }
        let stray: Vec<BlockHash> = self
            .index
            .keys()
            .filter(|h| !reachable.contains(*h))
            .copied()
            .collect();
        if !stray.is_empty() {
            tracing::warn!(
                "{} stored blocks do not connect to genesis (a damaged store?); ignoring them",
                stray.len()
            );
            for h in stray {
                if let Some(e) = self.index.remove(&h) {
                    self.candidates.remove(&entry_key(&e, h));
                }
                self.children.remove(&h);
            }
        }
        Ok(())
    }

    /// Rebuilds `main` from the stored tip and checks the state against the
    /// tip's commitment. Returns why a rebuild is needed, if it is.
    fn load_main_and_check_state(&mut self) -> Result<Option<String>, ChainError> {
        let tip = match self.store.meta(Meta::Tip)? {
            Some(v) => match <[u8; 32]>::try_from(v.as_slice()) {
                Ok(b) => BlockHash(b),
                Err(_) => return Ok(Some("the stored tip is corrupt".into())),
            },
            None => {
                return Ok(Some(
                    "the store has no tip (an interrupted rebuild?)".into(),
                ));
            }
        };
        let mut path = Vec::new();
        let mut cursor = tip;
        loop {
            let Some(e) = self.index.get(&cursor) else {
                return Ok(Some(format!(
                    "block {cursor} on the stored best chain is missing from the index"
                )));
            };
            path.push(cursor);
            if cursor == self.genesis_hash {
                break;
            }
            if e.header.height.0 == 0 {
                return Ok(Some(
                    "the stored best chain does not lead to genesis".into(),
                ));
            }
            cursor = e.header.parent;
        }
        path.reverse();
        self.main = path;
        let tip_entry = self.index[&tip];
        match self.store.hash_at(tip_entry.header.height) {
            Ok(Some(h)) if h == tip => {}
            Ok(_) => {
                return Ok(Some(
                    "the height index disagrees with the stored tip".into(),
                ));
            }
            Err(e) => return Ok(Some(format!("the height index is unreadable: {e}"))),
        }
        let accounts = match self.store.all_accounts() {
            Ok(a) => a,
            Err(e) => return Ok(Some(format!("the account state is unreadable: {e}"))),
        };
        let computed = state_root(accounts.iter().map(|(a, s)| (a, s)));
        if computed != tip_entry.header.state_root {
            return Ok(Some(format!(
                "the stored accounts commit to {computed}, but tip {tip} at height {} commits to {}",
                tip_entry.header.height, tip_entry.header.state_root
            )));
        }
        Ok(None)
    }

    /// Rebuilds accounts, undo records and the height index from genesis by
    /// replaying the stored blocks of the best known chain. Blocks whose body
    /// is missing or corrupt are forgotten, so that they can be fetched again.
    /// Returns the number of blocks replayed.
    pub fn rebuild_state(&mut self) -> Result<u64, ChainError> {
        self.store.clear_state()?;
        let mut batch = Batch::default();
        self.genesis_state_ops(&mut batch);
        self.store.commit(batch)?;
        self.main = vec![self.genesis_hash];
        let before = self.main.len();
        self.activate_best_chain()?;
        self.store.flush()?;
        Ok((self.main.len() - before) as u64)
    }

    // ----- queries -----

    pub fn params(&self) -> &ConsensusParams {
        &self.params
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_hash
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn tip_hash(&self) -> BlockHash {
        *self.main.last().unwrap_or(&self.genesis_hash)
    }

    pub fn tip(&self) -> &IndexEntry {
        &self.index[&self.tip_hash()]
    }

    pub fn height(&self) -> Height {
        Height(self.main.len() as u64 - 1)
    }

    /// The main-chain block hash at `height`.
    pub fn hash_at(&self, height: Height) -> Option<BlockHash> {
        usize::try_from(height.0)
            .ok()
            .and_then(|h| self.main.get(h))
            .copied()
    }

    /// The index entry of any stored block.
    pub fn entry(&self, hash: &BlockHash) -> Option<&IndexEntry> {
        self.index.get(hash)
    }

    pub fn is_main(&self, hash: &BlockHash) -> bool {
        self.index
            .get(hash)
            .is_some_and(|e| self.hash_at(e.header.height) == Some(*hash))
    }

    /// Whether the block is stored, waiting as an orphan, or known invalid.
    pub fn knows(&self, hash: &BlockHash) -> bool {
        self.index.contains_key(hash)
            || self.orphans.contains(hash)
            || self.rejected.set.contains(hash)
    }

    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, ChainError> {
        Ok(self.store.block(hash)?)
    }

    /// A stored block, from memory if it was connected lately.
    pub fn shared_block(&self, hash: &BlockHash) -> Result<Option<Arc<Block>>, ChainError> {
        if let Some(b) = self.recent_block(hash) {
            return Ok(Some(b));
        }
        Ok(self.store.block(hash)?.map(Arc::new))
    }

    /// A block connected lately, if it is still in memory.
    pub fn recent_block(&self, hash: &BlockHash) -> Option<Arc<Block>> {
        self.recent
            .iter()
            .rev()
            .find(|(h, _)| h == hash)
            .map(|(_, b)| b.clone())
    }

    pub fn account(&self, address: &Address) -> Result<Account, ChainError> {
        Ok(self.store.account(address)?)
    }

    pub fn orphan_count(&self) -> usize {
        self.orphans.blocks.len()
    }

    /// Number of stored blocks (all branches).
    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// The header context of a stored block, for the shared contextual rules.
    pub fn header_meta(&self, hash: &BlockHash) -> Option<HeaderMeta> {
        self.index.get(hash).map(IndexEntry::meta)
    }

    /// Median time past of the chain ending at `hash`.
    pub fn median_time_past(&self, hash: &BlockHash) -> u64 {
        self.header_meta(hash).map_or(0, |m| {
            median_time_past_of(&m, &|h: &BlockHash| self.header_meta(h))
        })
    }

    /// The target a child of `parent` with time `time_ms` must carry.
    pub fn target_for_child(&self, parent: &BlockHash, time_ms: u64) -> Option<Target> {
        let e = self.index.get(parent)?;
        Some(self.params.next_target(&e.meta().parent_info(), time_ms))
    }

    // ----- processing -----

    /// Accepts a block from anywhere (miner, peer, RPC), in any order.
    /// The store is flushed before this returns.
    pub fn process_block(&mut self, block: Block, now_ms: u64) -> Result<Processed, ChainError> {
        let r = self.process_block_unflushed(block, now_ms);
        self.store.flush()?;
        r
    }

    /// [`Chain::process_block`] without the final flush, for callers that
    /// accept many blocks and then call [`Chain::flush`] once before
    /// reporting any of them.
    pub fn process_block_unflushed(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<Processed, ChainError> {
        let hash = block.hash();
        let mut processed = Processed {
            hash,
            outcome: Outcome::Duplicate,
            tip_change: TipChange::default(),
            rejected_orphans: Vec::new(),
        };
        match self.index.get(&hash) {
            Some(e) if e.status == BlockStatus::Invalid => {
                return Err(ChainError::KnownInvalid { hash });
            }
            Some(_) => return Ok(processed),
            None if self.orphans.contains(&hash) => return Ok(processed),
            None if self.rejected.set.contains(&hash) => {
                return Err(ChainError::KnownInvalid { hash });
            }
            None => {}
        }
        check_header(&block.header, &self.params).map_err(|error| {
            // a failed proof of work is a property of the hash itself
            self.rejected.insert(hash, self.config.max_rejected);
            ChainError::Invalid { hash, error }
        })?;
        let parent = block.header.parent;
        match self.index.get(&parent) {
            None => {
                self.orphans.insert(
                    hash,
                    block,
                    self.config.max_orphans,
                    self.config.max_orphan_bytes,
                );
                processed.outcome = Outcome::Orphan { missing: parent };
                return Ok(processed);
            }
            Some(p) if p.status == BlockStatus::Invalid => {
                self.rejected.insert(hash, self.config.max_rejected);
                return Err(ChainError::InvalidAncestor { hash, parent });
            }
            Some(_) => {}
        }
        let old_tip = self.tip_hash();
        let mut invalidated = self.accept_with_parent(hash, block, now_ms)?;
        // orphans waiting on this block (and on theirs)
        let mut queue = vec![hash];
        while let Some(p) = queue.pop() {
            for (h, b) in self.orphans.take_children(&p) {
                match self.accept_with_parent(h, b, now_ms) {
                    Ok(more) => {
                        invalidated.extend(more);
                        queue.push(h);
                    }
                    Err(e) => {
                        tracing::debug!("orphan {h} rejected: {e}");
                        processed.rejected_orphans.push(h);
                    }
                }
            }
        }
        processed.outcome = match self.index.get(&hash) {
            Some(e) if e.status == BlockStatus::Invalid => {
                return Err(match invalidated.into_iter().find(|(h, _)| *h == hash) {
                    Some((_, error)) => ChainError::Invalid { hash, error },
                    None => ChainError::InvalidAncestor {
                        hash,
                        parent: e.header.parent,
                    },
                });
            }
            _ if self.is_main(&hash) => Outcome::Connected,
            _ => Outcome::SideBranch,
        };
        processed.tip_change = self.tip_change_since(old_tip);
        Ok(processed)
    }

    pub fn flush(&self) -> Result<(), ChainError> {
        Ok(self.store.flush()?)
    }

    /// Checks a block whose parent is stored, stores it, and moves to the
    /// best chain. Returns the blocks found invalid on the way.
    fn accept_with_parent(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
    ) -> Result<Vec<(BlockHash, BlockError)>, ChainError> {
        let parent = self.index[&block.header.parent];
        if parent.status == BlockStatus::Invalid {
            self.rejected.insert(hash, self.config.max_rejected);
            return Err(ChainError::InvalidAncestor {
                hash,
                parent: block.header.parent,
            });
        }
        let invalid = |chain: &mut Self, error: BlockError| {
            if error.condemns_hash() {
                chain.rejected.insert(hash, chain.config.max_rejected);
            }
            ChainError::Invalid { hash, error }
        };
        let meta = match validate_header_in_context(
            &block.header,
            &parent.meta(),
            &|h: &BlockHash| self.header_meta(h),
            &self.params,
            now_ms,
        ) {
            Ok(m) => m,
            Err(e) => return Err(invalid(self, e)),
        };
        let entry = IndexEntry {
            header: block.header,
            work: meta.work,
            anchor_time_ms: meta.anchor_time_ms,
            status: BlockStatus::Valid,
            seq: self.next_seq,
        };
        // Three things run side by side (on rayon's pool) for a large block:
        // the body checks and signatures; when the block extends the tip,
        // its state effects and the store write that would connect it; and
        // the block's own encoding. The state and the write are used only if
        // the body passes; what remains after them is one store commit.
        let extends_tip = block.header.parent == self.tip_hash();
        let verify = &*self.verify;
        let this = &*self;
        let ids = crate::verify::tx_ids(&block);
        let body = || {
            check_block_with_ids(&block, &ids, &this.params)
                .and_then(|()| verify(&block.transfers, &ids[1..]))
        };
        let prepare = || {
            extends_tip.then(|| {
                this.state_effects(&block)
                    .map(|effects| effects.map(|e| connection(hash, &block, e)))
            })
        };
        let write = || block_write(hash, &block, entry);
        // a small block costs less than handing parts of it to other threads
        let (checked, (prepared, stage)) = if block.transfers.len() < crate::verify::PARALLEL_MIN {
            (body(), (prepare(), write()))
        } else {
            rayon::join(body, || rayon::join(prepare, write))
        };
        if let Err(e) = checked {
            return Err(invalid(self, e));
        }
        let connection = prepared.transpose()?;
        self.next_seq += 1;
        // A valid child of the tip is connected at once, as the only step:
        // the block goes into the same atomic write as its connection (one
        // store commit on the path of every new block, not two). Otherwise
        // it is stored first, before anything that may mark or move it.
        let stage = if matches!(connection, Some(Ok(_))) {
            Some(stage)
        } else {
            self.store.commit(stage)?;
            None
        };
        let staged = stage.is_some();
        self.index.insert(hash, entry);
        self.children
            .entry(block.header.parent)
            .or_default()
            .push(hash);
        self.candidates.insert(entry_key(&entry, hash));
        let activated = self.activate_best_chain_with(Some(FreshBlock {
            hash,
            block: Arc::new(block),
            connection,
            stage,
        }));
        if staged && activated.is_err() && !self.is_main(&hash) {
            // its write failed with its connection: it is not stored, so
            // it must not be known either (a copy from a peer is then
            // taken again, not answered as a duplicate)
            self.unlink(hash);
        }
        let invalidated = activated?;
        if let Some((_, error)) = invalidated.iter().find(|(h, _)| *h == hash) {
            return Err(ChainError::Invalid {
                hash,
                error: error.clone(),
            });
        }
        Ok(invalidated)
    }

    fn activate_best_chain(&mut self) -> Result<Vec<(BlockHash, BlockError)>, ChainError> {
        self.activate_best_chain_with(None)
    }

    /// Moves the tip to the valid chain with the most work, marking blocks
    /// that fail their state checks (and their descendants) invalid.
    /// `fresh` is a block just stored, to save reading it back, with the
    /// write that connects it if that was prepared on top of the current tip.
    fn activate_best_chain_with(
        &mut self,
        mut fresh: Option<FreshBlock>,
    ) -> Result<Vec<(BlockHash, BlockError)>, ChainError> {
        let mut invalidated = Vec::new();
        while let Some(&(best_work, _, best)) = self.candidates.last() {
            let tip = self.tip_hash();
            if best == tip || !is_better_chain(best_work, self.index[&tip].work) {
                break;
            }
            // the branch from the fork point to `best`
            let mut branch = Vec::new();
            let mut cursor = best;
            while !self.is_main(&cursor) {
                branch.push(cursor);
                cursor = self.index[&cursor].header.parent;
            }
            let fork = cursor;
            while self.tip_hash() != fork {
                self.disconnect_tip()?;
            }
            let tip_before = self.tip_hash();
            for h in branch.into_iter().rev() {
                let mut stage = None;
                let (block, connection) = match fresh.take() {
                    // a prepared connection holds only on top of the tip it was prepared on
                    Some(f) if f.hash == h => {
                        let on_tip =
                            f.block.header.parent == tip_before && self.tip_hash() == tip_before;
                        stage = f.stage;
                        (f.block, if on_tip { f.connection } else { None })
                    }
                    other => {
                        fresh = other;
                        match self.store.block(&h) {
                            Ok(Some(b)) => (Arc::new(b), None),
                            Ok(None) | Err(StoreError::Corrupt { .. }) => {
                                tracing::warn!(
                                    "block {h} is missing or corrupt in the store; forgetting it so it can be fetched again"
                                );
                                self.forget(h)?;
                                break;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                };
                if !matches!(connection, Some(Ok(_)))
                    && let Some(s) = stage.take()
                {
                    // not the expected single step after all: store it first
                    debug_assert!(false, "a staged block {h} was not connected at once");
                    self.store.commit(s)?;
                }
                if let Err(error) = self.connect(h, &block, connection, stage)? {
                    tracing::warn!(
                        "block {h} at height {} fails its state checks: {error}",
                        block.header.height
                    );
                    self.mark_invalid(h)?;
                    invalidated.push((h, error));
                    break;
                }
                if self.recent.len() == RECENT_BLOCKS {
                    self.recent.pop_front();
                }
                self.recent.push_back((h, block));
            }
        }
        if let Some(FreshBlock {
            hash,
            block,
            stage: Some(_),
            ..
        }) = fresh
        {
            debug_assert!(false, "a staged block {hash} was not connected at once");
            // store it as the index now has it (it may have been marked
            // invalid or forgotten meanwhile)
            if let Some(entry) = self.index.get(&hash).copied() {
                self.store.commit(block_write(hash, &block, entry))?;
            }
        }
        Ok(invalidated)
    }

    /// The state effects of `block` on top of the current tip, reading the
    /// accounts it touches (on all cores for a large block); nothing is
    /// written. `Ok(Err(_))` when the block is invalid against the state.
    fn state_effects(&self, block: &Block) -> Result<Result<BlockEffects, BlockError>, StoreError> {
        try_validate_block_state(
            block,
            &self.params,
            |addresses, out| self.store.accounts(addresses, out),
            self.tip().header.state_root,
        )
    }

    /// Connects `block` (a child of the tip), with the write that does it
    /// if that was already prepared on top of the tip. `Ok(Err(_))` when the
    /// block is invalid against the state; nothing is written then.
    /// `stage`: the block's own store write, to commit with it.
    fn connect(
        &mut self,
        hash: BlockHash,
        block: &Block,
        prepared: Option<Result<Batch, BlockError>>,
        stage: Option<Batch>,
    ) -> Result<Result<(), BlockError>, ChainError> {
        debug_assert_eq!(block.header.parent, self.tip_hash());
        let prepared = match prepared {
            Some(p) => p,
            None => self
                .state_effects(block)?
                .map(|effects| connection(hash, block, effects)),
        };
        let mut batch = match prepared {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(stage) = stage {
            batch.ops.extend(stage.ops);
        }
        self.store.commit(batch)?;
        self.main.push(hash);
        Ok(Ok(()))
    }

    /// Disconnects the tip, restoring the accounts from its undo record.
    fn disconnect_tip(&mut self) -> Result<(), ChainError> {
        let hash = self.tip_hash();
        let entry = self.index[&hash];
        if entry.header.height.0 == 0 {
            return Err(ChainError::Inconsistent("cannot disconnect genesis".into()));
        }
        let undo = self.store.undo(&hash)?.ok_or_else(|| {
            ChainError::Inconsistent(format!("undo record of block {hash} is missing"))
        })?;
        let mut batch = Batch::default();
        for c in &undo.changes {
            let current = self.store.account(&c.address)?;
            if current != c.after {
                return Err(ChainError::Inconsistent(format!(
                    "account {:?} holds {current:?}, not the {:?} block {hash} left",
                    c.address, c.after
                )));
            }
            batch.set_account(c.address, c.before);
        }
        batch.push(Op::DeleteUndo(hash));
        batch.push(Op::DeleteHeight(entry.header.height));
        batch.set_tip(entry.header.parent, Height(entry.header.height.0 - 1));
        self.store.commit(batch)?;
        self.main.pop();
        Ok(())
    }

    /// Marks `hash` and all its descendants invalid.
    fn mark_invalid(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let mut batch = Batch::default();
        let mut stack = vec![hash];
        while let Some(h) = stack.pop() {
            if let Some(e) = self.index.get_mut(&h) {
                self.candidates.remove(&entry_key(e, h));
                e.status = BlockStatus::Invalid;
                batch.push(Op::PutIndex(h, *e));
            }
            if let Some(kids) = self.children.get(&h) {
                stack.extend(kids.iter().copied());
            }
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// Drops `hash` and its descendants from the index and the store.
    fn forget(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let mut batch = Batch::default();
        let mut stack = vec![hash];
        while let Some(h) = stack.pop() {
            self.unlink(h);
            batch.push(Op::DeleteIndex(h));
            batch.push(Op::DeleteBlock(h));
            if let Some(kids) = self.children.remove(&h) {
                stack.extend(kids);
            }
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// Removes `hash` from the in-memory index, the candidates and its
    /// parent's children (not its own children, nor the store).
    fn unlink(&mut self, hash: BlockHash) {
        if let Some(e) = self.index.remove(&hash) {
            self.candidates.remove(&entry_key(&e, hash));
            if let Some(siblings) = self.children.get_mut(&e.header.parent) {
                siblings.retain(|x| *x != hash);
            }
        }
    }

    /// Blocks that left and joined the best chain since `old_tip` was the tip.
    pub fn tip_change_since(&self, old_tip: BlockHash) -> TipChange {
        let new_tip = self.tip_hash();
        if new_tip == old_tip {
            return TipChange::default();
        }
        let mut change = TipChange::default();
        // walk the old tip down to the best chain
        let mut cursor = old_tip;
        while !self.is_main(&cursor) {
            change.disconnected.push(cursor);
            match self.index.get(&cursor) {
                Some(e) => cursor = e.header.parent,
                None => break,
            }
        }
        let fork_height = self.index.get(&cursor).map_or(0, |e| e.header.height.0);
        let mut h = fork_height + 1;
        while let Some(hash) = self.hash_at(Height(h)) {
            change.connected.push(hash);
            h += 1;
        }
        change
    }
}

/// A block just stored, kept to save reading it back, with its state
/// effects if they were computed on top of the tip of the time.
/// The store write of a block and its index entry.
fn block_write(hash: BlockHash, block: &Block, entry: IndexEntry) -> Batch {
    let mut batch = Batch::default();
    batch.push(Op::PutBlock(hash, block.encode()));
    batch.push(Op::PutIndex(hash, entry));
    batch
}

/// The store writes that connect `block` (`hash`) on top of the tip, given
/// its state effects there: the accounts it changes, its undo record, its
/// height and the tip. Prepared alongside the signature checks.
fn connection(hash: BlockHash, block: &Block, effects: BlockEffects) -> Batch {
    let mut batch = Batch::default();
    batch.ops.reserve(effects.changes.len() + 4);
    for c in &effects.changes {
        batch.set_account(c.address, c.after);
    }
    batch.push(Op::PutHeight(block.header.height, hash));
    batch.set_tip(hash, block.header.height);
    batch.push(Op::put_undo(
        hash,
        &UndoRecord {
            changes: effects.changes,
        },
    ));
    batch
}

struct FreshBlock {
    hash: BlockHash,
    block: Arc<Block>,
    /// The write that connects it, or why it cannot connect, when that was
    /// worked out on top of the tip of the time.
    connection: Option<Result<Batch, BlockError>>,
    /// The block's own store write, when it is to be committed with its
    /// connection (valid effects on top of the tip).
    stage: Option<Batch>,
}

#[cfg(test)]
mod tests;
