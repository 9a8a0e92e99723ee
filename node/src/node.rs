//! The running node: the chain, the mempool, the indexes and the miner,
//! wired together. Everything here is synchronous and may block; async
//! callers (RPC, P2P) use `tokio::task::spawn_blocking`.
//!
//! # Correctness
//! - Locks are always taken in the order chain, then mempool. Transfer
//!   submission locks only its sender's mempool shard and reads the
//!   sender's account inside it; since the clean-up after every chain
//!   commit holds the whole mempool, a submission can never slip in
//!   between a block and the clean-up that block causes.
//! - A block is reported accepted (mined here, submitted over RPC) only
//!   after the store is flushed; it is relayed to peers before the flush.
//!   A block from a peer is reported to nobody: it is published and
//!   relayed first and flushed behind ([`crate::flusher`]).
//! - After every change of the best chain, in order: the P2P layer is told
//!   (relay), the change is queued for the indexer and the tip generation
//!   moves, the mempool drops
//!   confirmed and stale transfers and takes back those of disconnected
//!   blocks, the tip snapshot moves, subscribers and the miner are told.
//!   Readers of the indexes wait for the generation they saw
//!   ([`Node::wait_for_index`]), so a transfer that left the mempool for a
//!   block is found in the index.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_api::HeaderView;
use cairn_consensus::{
    Account, Address, Block, BlockHash, BlockHeader, Retarget, SignedTransfer, Target, TxId, Work,
};
use cairn_genesis::Network;
use tokio::sync::broadcast;

use crate::chain::{Chain, ChainConfig, ChainError, OpenReport, Outcome, Processed, TipChange};
use crate::config::NodeConfig;
use crate::index;
use crate::lock;
use crate::mempool::{Mempool, MempoolError, Pool};
use crate::miner::{HashrateMeter, MinerPool, Search, TemplateBase, build_template};
use crate::store::{ChainStore, SledStore, StoreError};
use crate::verify::SigCache;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a block came from, for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Miner,
    Rpc,
    Peer(u64),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Miner => f.write_str("miner"),
            Source::Rpc => f.write_str("rpc"),
            Source::Peer(id) => write!(f, "peer {id}"),
        }
    }
}

/// What the node tells the P2P layer: best-chain changes and accepted
/// transfers (see [`cairn_p2p::ChainEvent`]).
pub use cairn_p2p::ChainEvent as Event;

/// The most signatures of one batch of blocks checked ahead of connecting
/// them (see [`crate::verify::SigCache::warm`]).
const PREVERIFY_MAX: usize = 100_000;

/// Headers of connected blocks carried by one [`Event::TipChanged`].
const ANNOUNCED_HEADERS: usize = 16;

/// The best block, readable without the chain lock.
#[derive(Clone, Debug)]
pub struct TipSnapshot {
    pub hash: BlockHash,
    pub header: BlockHeader,
    pub work: Work,
}

/// Why a node could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("{0}")]
    Config(String),
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a transfer was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Transfer(#[from] cairn_consensus::TransferError),
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    #[error("transfer {id} is already confirmed in block {block} at height {height}")]
    AlreadyConfirmed {
        id: TxId,
        block: BlockHash,
        height: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Miner state shared by the mining thread, `mining_generate` and RPC.
pub struct MiningState {
    pub meter: HashrateMeter,
    pool: Mutex<Arc<MinerPool>>,
    running: AtomicBool,
    address: Mutex<Option<Address>>,
    pub blocks_mined: AtomicU64,
    /// Serialises mining rounds and `mining_generate`.
    round: Mutex<()>,
    /// Bumped to abort the current search.
    stop_gen: AtomicU64,
    wake: (Mutex<()>, Condvar),
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The node.
pub struct Node {
    pub network: Network,
    pub config: NodeConfig,
    store: Arc<SledStore>,
    chain: Mutex<Chain<Arc<SledStore>>>,
    mempool: Mempool,
    sig_cache: Arc<SigCache>,
    tip: RwLock<TipSnapshot>,
    /// The tip as peers know it (see [`Node::relayed_tip`]).
    relayed: RwLock<TipSnapshot>,
    tip_gen: AtomicU64,
    heads: broadcast::Sender<HeaderView>,
    events: broadcast::Sender<Event>,
    pub mining: MiningState,
    shutting_down: AtomicBool,
    /// Reorganisations and side-branch blocks seen since start-up.
    pub forks: crate::forks::ForkLog,
    /// Experiment support: the miner's mode and first-seen records.
    pub lab: crate::lab::Lab,
    /// Writes the transaction and history indexes behind the tip.
    indexer: index::Indexer,
    /// Makes blocks from peers durable behind the tip.
    flusher: crate::flusher::Flusher,
}

/// The header as the API shows it.
pub fn header_view(hash: BlockHash, h: &BlockHeader) -> HeaderView {
    HeaderView {
        hash,
        version: h.version,
        parent: h.parent,
        height: h.height.0,
        tx_root: h.tx_root,
        state_root: h.state_root,
        time_ms: h.time_ms,
        target: h.target,
        nonce: h.nonce,
    }
}

impl Node {
    /// Opens the store in `config.datadir` and everything on top of it.
    pub fn open(
        network: Network,
        config: NodeConfig,
    ) -> Result<(Arc<Node>, OpenReport), NodeError> {
        let had_data = std::fs::metadata(config.datadir.join("db")).is_ok_and(|m| m.len() > 0);
        let store = Arc::new(SledStore::open(
            &config.datadir,
            config.storage.cache_bytes,
        )?);
        store.set_checkpoint_blocks(config.storage.checkpoint_blocks);
        let sig_cache = Arc::new(SigCache::new(262_144));
        let cache = sig_cache.clone();
        let (mut chain, mut report) = Chain::open(
            store.clone(),
            &network,
            move |txs: &[SignedTransfer], ids: &[TxId]| cache.verify(txs, ids),
            ChainConfig::default(),
        )?;
        if report.created && had_data {
            let msg = format!(
                "the database in {} existed but held no chain: it was damaged and nothing could be recovered; a new chain was started from genesis (blocks will be fetched again from peers)",
                config.datadir.display()
            );
            tracing::warn!("{msg}");
            report.notice = Some(msg);
        }
        // sled may reopen a damaged log at an older tip without an error:
        // compare with the tip recorded at the last flush
        if let Some((was, hash)) = store.flushed_tip_at_open() {
            let now = chain.height();
            if was > now && chain.entry(&hash).is_none() {
                let msg = format!(
                    "store lost {} blocks (was at height {}, now at {}): the database was damaged; refetching them from peers",
                    was.0 - now.0,
                    was.0,
                    now.0
                );
                tracing::warn!("{msg}");
                report.notice = Some(match report.notice.take() {
                    Some(old) => format!("{msg}; {old}"),
                    None => msg,
                });
            }
        }
        if config.reindex && report.rebuilt.is_none() {
            tracing::info!("--reindex: rebuilding the state from the stored blocks");
            report.blocks_replayed = chain.rebuild_state()?;
            report.rebuilt = Some("requested with --reindex".into());
        }
        if report.rebuilt.is_some() {
            // the derived indexes are rebuilt along with the state
            store
                .tree()
                .remove(b"Mindex_tip")
                .map_err(StoreError::from)?;
        }
        let indexed = index::catch_up(&chain, store.tree())?;
        if indexed > 1 {
            tracing::info!("indexed {indexed} blocks");
        }
        let threads = match config.mining.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = MinerPool::new(threads)
            .map_err(|e| NodeError::Config(format!("cannot start {threads} miner threads: {e}")))?;
        let miner_address = match &config.mining.address {
            Some(a) => Some(
                Address::decode(a, &network.params.address_prefix)
                    .map_err(|e| NodeError::Config(format!("--miner-address: {e}")))?,
            ),
            None => None,
        };
        let indexer = index::Indexer::start(store.clone(), 0)
            .map_err(|e| NodeError::Config(format!("cannot start the indexer thread: {e}")))?;
        let flusher = crate::flusher::Flusher::start(store.clone())
            .map_err(|e| NodeError::Config(format!("cannot start the flusher thread: {e}")))?;
        let tip = snapshot(&chain);
        let mempool = Mempool::new(config.mempool.clone(), network.params.min_fee);
        let (heads, _) = broadcast::channel(256);
        let (events, _) = broadcast::channel(4096);
        let node = Arc::new(Node {
            network,
            config,
            store,
            chain: Mutex::new(chain),
            mempool,
            sig_cache,
            relayed: RwLock::new(tip.clone()),
            tip: RwLock::new(tip),
            tip_gen: AtomicU64::new(0),
            heads,
            events,
            mining: MiningState {
                meter: HashrateMeter::default(),
                pool: Mutex::new(Arc::new(pool)),
                running: AtomicBool::new(false),
                address: Mutex::new(miner_address),
                blocks_mined: AtomicU64::new(0),
                round: Mutex::new(()),
                stop_gen: AtomicU64::new(0),
                wake: (Mutex::new(()), Condvar::new()),
                thread: Mutex::new(None),
            },
            shutting_down: AtomicBool::new(false),
            forks: crate::forks::ForkLog::default(),
            lab: crate::lab::Lab::default(),
            indexer,
            flusher,
        });
        Ok((node, report))
    }

    pub fn store(&self) -> &Arc<SledStore> {
        &self.store
    }

    /// Runs `f` with the chain locked.
    pub fn with_chain<R>(&self, f: impl FnOnce(&Chain<Arc<SledStore>>) -> R) -> R {
        f(&lock(&self.chain))
    }

    /// Runs `f` with the whole mempool locked (every submission waits:
    /// keep `f` short).
    pub fn with_mempool<R>(&self, f: impl FnOnce(&Pool<'_>) -> R) -> R {
        f(&self.mempool.lock())
    }

    /// For each id, the pending transfer; locks one mempool shard at a
    /// time, so submissions to other shards go on meanwhile.
    pub fn pending_transfers(&self, ids: &[TxId]) -> Vec<Option<SignedTransfer>> {
        self.mempool.get_each(ids)
    }

    /// The tip as the RPC shows it: it moves once a block mined here is
    /// durable, and with the indexes' generation and the mempool clean-up.
    pub fn tip(&self) -> TipSnapshot {
        self.tip.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tip as peers know it: it moves when a new tip is relayed, which
    /// for a block mined here is before its fsync. What the P2P layer reads
    /// (its own tip, the headers it serves, its locator) follows this one,
    /// so a peer asking for headers after our announcement gets the
    /// announced block.
    pub fn relayed_tip(&self) -> TipSnapshot {
        self.relayed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Incremented on every change of the best chain.
    pub fn tip_generation(&self) -> u64 {
        self.tip_gen.load(Ordering::SeqCst)
    }

    /// Waits (up to a few seconds) until the transaction and history
    /// indexes cover every block up to the current tip, so that a transfer
    /// whose block is the tip shows as confirmed. They lag the tip only by
    /// the time it takes to write them, unless a long sync runs.
    pub fn wait_for_index(&self) {
        self.indexer
            .wait_for(self.tip_generation(), Duration::from_secs(5));
    }

    pub fn subscribe_heads(&self) -> broadcast::Receiver<HeaderView> {
        self.heads.subscribe()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The account as confirmed in the best chain.
    pub fn account(&self, address: &Address) -> Result<Account, StoreError> {
        self.store.account(address)
    }

    // ----- blocks -----

    /// Processes blocks (in any order), flushes, then updates everything
    /// that depends on the best chain. One result per block.
    pub fn submit_blocks(
        &self,
        blocks: Vec<Block>,
        source: Source,
    ) -> Vec<Result<Processed, ChainError>> {
        if blocks.len() > 1 {
            // before the chain lock: the signatures of the whole batch in
            // one pass on all cores (each block then finds them cached)
            self.sig_cache.warm(&blocks, PREVERIFY_MAX);
        }
        let mut chain = lock(&self.chain);
        let old_tip = chain.tip_hash();
        let mut results = Vec::with_capacity(blocks.len());
        // batches come from a sync, whose progress lines replace the
        // per-block lines
        let quiet = blocks.len() > 1 && matches!(source, Source::Peer(_));
        for block in blocks {
            let (arrived, height) = (now_ms(), block.header.height.0);
            let r = process_logged(&mut chain, block, source, quiet);
            if let (Ok(p), Source::Peer(peer)) = (&r, source)
                && p.outcome != Outcome::Duplicate
            {
                let origin = crate::lab::Origin::Peer(peer);
                self.lab.saw_block(p.hash, height, arrived, origin);
            }
            results.push(r);
        }
        crate::forks::record_side_blocks(&self.forks, &chain, &results, now_ms());
        if let Source::Peer(_) = source {
            // reported to nobody: publish and relay first, flush behind
            // (see `flusher`)
            self.follow_tip(&chain, old_tip);
            if results
                .iter()
                .any(|r| r.as_ref().is_ok_and(|p| p.outcome != Outcome::Duplicate))
            {
                self.flusher.request();
            }
            return results;
        }
        if let Err(e) = self.finish_batch(&chain, old_tip) {
            tracing::error!("cannot flush the store: {e}");
            return results
                .into_iter()
                .map(|r| r.and_then(|_| Err(ChainError::Store(StoreError::Backend(e.to_string())))))
                .collect();
        }
        results
    }

    /// After a batch of blocks reported to their sender: relays the new
    /// tip to peers, flushes (nothing is reported accepted before), then
    /// brings everything else that follows the best chain up to it. Peers
    /// get the block before the fsync, as a peer's block is relayed before
    /// it is flushed: a peer that has it loses nothing if we crash. The
    /// followers are updated even when the flush fails: the chain in memory
    /// has moved either way.
    fn finish_batch(
        &self,
        chain: &Chain<Arc<SledStore>>,
        old_tip: BlockHash,
    ) -> Result<(), ChainError> {
        self.follow_tip_around(chain, old_tip, || chain.flush())
    }

    /// Relays the best chain and brings everything that follows it up to
    /// it, if it moved since `old_tip`.
    fn follow_tip(&self, chain: &Chain<Arc<SledStore>>, old_tip: BlockHash) {
        self.follow_tip_around(chain, old_tip, || ())
    }

    /// [`Node::follow_tip`], running `between` after the relay and before
    /// everything else.
    fn follow_tip_around<R>(
        &self,
        chain: &Chain<Arc<SledStore>>,
        old_tip: BlockHash,
        between: impl FnOnce() -> R,
    ) -> R {
        let change = chain.tip_change_since(old_tip);
        if !change.is_empty() {
            self.relay_tip_change(chain, &change);
        }
        let r = between();
        if !change.is_empty() {
            self.after_tip_change(chain, &change);
        }
        r
    }

    /// Tells the P2P layer (and other event subscribers) that the best
    /// chain moved: the first thing done after a change, so that relaying
    /// waits neither for the fsync nor for the mempool clean-up.
    fn relay_tip_change(&self, chain: &Chain<Arc<SledStore>>, change: &TipChange) {
        let tip = snapshot(chain);
        *self.relayed.write().unwrap_or_else(|p| p.into_inner()) = tip.clone();
        let skip = change.connected.len().saturating_sub(ANNOUNCED_HEADERS);
        let announced: Vec<BlockHeader> = change.connected[skip..]
            .iter()
            .filter_map(|h| chain.entry(h).map(|e| e.header))
            .collect();
        let _ = self.events.send(Event::TipChanged {
            tip: cairn_p2p::ChainTip {
                hash: tip.hash,
                height: tip.header.height.0,
                work: tip.work,
                header: tip.header,
            },
            connected: announced,
            tip_block: chain.recent_block(&tip.hash),
            connected_count: change.connected.len() as u64,
            disconnected: change.disconnected.len() as u64,
        });
    }

    /// Processes one block; see [`Node::submit_blocks`].
    pub fn submit_block(&self, block: Block, source: Source) -> Result<Processed, ChainError> {
        self.submit_blocks(vec![block], source)
            .pop()
            .unwrap_or_else(|| Err(ChainError::Inconsistent("no result".into())))
    }

    fn after_tip_change(&self, chain: &Chain<Arc<SledStore>>, change: &TipChange) {
        // the only writer: this runs under the chain lock
        let generation = self.tip_gen.load(Ordering::SeqCst) + 1;
        self.indexer.push(change, generation);
        // the generation moves before the mempool drops the transfers the
        // change confirmed: whoever no longer finds one there, or sees the
        // new tip, also sees a generation that covers its block (see
        // `wait_for_index`)
        self.tip_gen.store(generation, Ordering::SeqCst);
        crate::forks::record_tip_change(&self.forks, chain, change, now_ms());
        if !change.disconnected.is_empty() {
            tracing::warn!(
                "reorganisation: {} blocks left the best chain, {} joined; new tip {} at height {}",
                change.disconnected.len(),
                change.connected.len(),
                chain.tip_hash(),
                chain.height()
            );
        }
        let cleaning = Instant::now();
        {
            // an empty pool has nothing to drop: skip reading the blocks back
            // (the common case while syncing or generating); the ids and
            // senders are hashes, computed before the pool is locked
            let confirmed: Vec<(TxId, Address)> = if self.mempool.is_empty() {
                Vec::new()
            } else {
                change
                    .connected
                    .iter()
                    .filter_map(|h| chain.shared_block(h).ok().flatten())
                    .flat_map(|b| crate::verify::ids_and_senders(&b.transfers))
                    .collect()
            };
            // the confirmed senders' new accounts too (store reads, on all
            // cores for a large block): the pool lock, which every
            // submission waits on, is held only for the pool's own work
            let mut senders: Vec<Address> = confirmed.iter().map(|(_, s)| *s).collect();
            senders.sort_unstable();
            senders.dedup();
            let mut accounts = vec![Account::default(); senders.len()];
            let read = self.store.accounts(&senders, &mut accounts);
            let account = |a: &Address| match (&read, senders.binary_search(a)) {
                (Ok(()), Ok(i)) => accounts[i],
                _ => self.store.account(a).unwrap_or_default(),
            };
            let mut pool = self.mempool.lock();
            if !confirmed.is_empty() {
                pool.remove_confirmed_keys(&confirmed, account);
            }
            let now = now_ms();
            let mut back = 0;
            for h in change.disconnected.iter().rev() {
                let Ok(Some(b)) = chain.shared_block(h) else {
                    continue;
                };
                for tx in &b.transfers {
                    let id = tx.id();
                    let acc = account(&tx.sender());
                    if pool.insert(*tx, id, acc, now).is_ok() {
                        self.sig_cache.insert(id);
                        back += 1;
                        // peers may not have it any more: announce it again
                        let _ = self.events.send(Event::TransferAccepted {
                            id,
                            from_peer: None,
                        });
                    }
                }
            }
            if back > 0 {
                tracing::info!("{back} transfers from disconnected blocks returned to the mempool");
            }
            tracing::debug!(
                "mempool after the tip change: {} confirmed transfers dropped, {} pending, in {:.1} ms",
                confirmed.len(),
                pool.len(),
                cleaning.elapsed().as_secs_f64() * 1e3
            );
        }
        *self.tip.write().unwrap_or_else(|p| p.into_inner()) = snapshot(chain);
        for h in &change.connected {
            if let Some(e) = chain.entry(h) {
                let _ = self.heads.send(header_view(*h, &e.header));
            }
        }
    }

    // ----- transfers -----

    /// Checks a transfer and adds it to the mempool.
    pub fn submit_transfer(
        &self,
        tx: SignedTransfer,
        from_peer: Option<u64>,
    ) -> Result<TxId, SubmitError> {
        let r = self.submit_transfer_unrecorded(tx, from_peer);
        crate::metrics::transfer_submitted(&r, from_peer.is_some());
        r
    }

    fn submit_transfer_unrecorded(
        &self,
        tx: SignedTransfer,
        from_peer: Option<u64>,
    ) -> Result<TxId, SubmitError> {
        let params = &self.network.params;
        let id = tx.id();
        tx.check(params.chain_id, params.min_fee)?;
        if let Some(loc) = index::tx_location(self.store.tree(), &id)? {
            return Err(SubmitError::AlreadyConfirmed {
                id,
                block: loc.block,
                height: loc.height,
            });
        }
        if !self.sig_cache.contains(&id) {
            tx.verify_signature()?;
        }
        let inserted = self
            .mempool
            .insert_with(tx, id, now_ms(), |sender| self.store.account(sender))?;
        if let Err(e) = inserted {
            // confirmed in a block the indexes are still writing? (asked
            // over RPC only: a peer's transfers never wait on the index)
            if from_peer.is_none() && matches!(e, MempoolError::NonceTooLow { .. }) {
                self.wait_for_index();
                if let Some(loc) = index::tx_location(self.store.tree(), &id)? {
                    return Err(SubmitError::AlreadyConfirmed {
                        id,
                        block: loc.block,
                        height: loc.height,
                    });
                }
            }
            return Err(e.into());
        }
        let origin = from_peer.map_or(crate::lab::Origin::Local, crate::lab::Origin::Peer);
        self.lab.saw_transfer(id, now_ms(), origin);
        self.sig_cache.insert(id);
        let _ = self.events.send(Event::TransferAccepted { id, from_peer });
        Ok(id)
    }

    /// Drops expired mempool entries.
    pub fn expire_mempool(&self) -> usize {
        self.mempool.lock().expire(now_ms())
    }

    // ----- mining -----

    /// A template on the current tip paying `miner`.
    fn template(&self, chain: &Chain<Arc<SledStore>>, miner: Address) -> Result<Block, StoreError> {
        let parent = chain.tip_hash();
        let tip = chain.tip();
        let time_ms = now_ms().max(chain.median_time_past(&parent).saturating_add(1));
        let target = chain
            .target_for_child(&parent, time_ms)
            .unwrap_or(self.network.params.initial_target);
        let base = TemplateBase {
            params: &self.network.params,
            parent,
            parent_height: tip.header.height,
            parent_state_root: tip.header.state_root,
            time_ms,
            target,
        };
        // the candidates in template order, each sender's from the nonce
        // the pool last confirmed for it; the pool is held only for that
        let max = self.network.params.max_block_transfers;
        let candidates = {
            let pool = self.mempool.lock();
            let mut out = Vec::with_capacity(max.min(pool.len()));
            pool.select(
                |a| pool.confirmed_nonce(a),
                max,
                |tx| {
                    out.push(*tx);
                    true
                },
            );
            out
        };
        build_template(&base, miner, candidates, |addresses, out| {
            self.store.accounts(addresses, out)
        })
    }

    fn miner_pool(&self) -> Arc<MinerPool> {
        lock(&self.mining.pool).clone()
    }

    /// Mines `count` blocks on the current tip paying `miner`, each on the
    /// previous one; returns their hashes once durable.
    pub fn generate(&self, count: u32, miner: Address) -> Result<Vec<BlockHash>, NodeError> {
        let _round = lock(&self.mining.round);
        let pool = self.miner_pool();
        let mut chain = lock(&self.chain);
        let old_tip = chain.tip_hash();
        let mut hashes = Vec::with_capacity(count as usize);
        let mut result = Ok(());
        for _ in 0..count {
            if self.is_shutting_down() {
                result = Err(NodeError::ShuttingDown);
                break;
            }
            let started = Instant::now();
            let mut block = match self.template(&chain, miner) {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            };
            let built = started.elapsed();
            let stop = || self.is_shutting_down();
            if !pool.mine(&mut block, &self.mining.meter.attempts, &stop) {
                result = Err(NodeError::ShuttingDown);
                break;
            }
            let height = block.header.height.0;
            tracing::debug!(
                "block {height}: template of {} transfers in {:.1} ms, proof of work in {:.1} ms",
                block.transfers.len(),
                built.as_secs_f64() * 1e3,
                (started.elapsed() - built).as_secs_f64() * 1e3
            );
            match process_logged(&mut chain, block, Source::Miner, false) {
                Ok(p) => {
                    self.lab.mined(p.hash, height, now_ms());
                    hashes.push(p.hash);
                    self.mining.blocks_mined.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        let started = Instant::now();
        self.finish_batch(&chain, old_tip).map_err(|e| match e {
            ChainError::Store(s) => NodeError::Store(s),
            other => NodeError::Chain(other),
        })?;
        tracing::debug!(
            "generated {} blocks: flushed, relayed, indexed and the mempool cleaned in {:.1} ms",
            hashes.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        result.map(|()| hashes)
    }

    /// Mines one block on the current tip, refreshing the template every
    /// second (new time, target and transfers) and whenever the tip moves.
    /// `None` when `stop()` held first.
    fn mine_one(
        &self,
        miner: Address,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Block>, NodeError> {
        loop {
            if stop() {
                return Ok(None);
            }
            let _round = lock(&self.mining.round);
            let generation = self.tip_generation();
            let mut block = self.template(&lock(&self.chain), miner)?;
            let pool = self.miner_pool();
            let deadline = Instant::now() + Duration::from_secs(1);
            let per_thread = u64::MAX / pool.threads() as u64;
            let stop_round =
                || stop() || self.tip_generation() != generation || Instant::now() >= deadline;
            match pool.search(
                &block.header,
                0,
                per_thread,
                &self.mining.meter.attempts,
                &stop_round,
            ) {
                Search::Found(nonce) => {
                    block.header.nonce = nonce;
                    return Ok(Some(block));
                }
                Search::Stopped | Search::Exhausted => continue,
            }
        }
    }

    /// Starts the mining thread (or changes its address and threads).
    pub fn start_mining(
        self: &Arc<Self>,
        address: Option<Address>,
        threads: Option<usize>,
    ) -> Result<(), NodeError> {
        if let Some(a) = address {
            *lock(&self.mining.address) = Some(a);
        }
        if lock(&self.mining.address).is_none() {
            return Err(NodeError::Config(
                "no miner address: pass one, or start the node with --miner-address".into(),
            ));
        }
        if let Some(t) = threads {
            let t = t.max(1);
            if t != self.miner_pool().threads() {
                // stop the current search so the new pool takes over
                self.mining.stop_gen.fetch_add(1, Ordering::SeqCst);
                let pool = MinerPool::new(t).map_err(|e| {
                    NodeError::Config(format!("cannot start {t} miner threads: {e}"))
                })?;
                *lock(&self.mining.pool) = Arc::new(pool);
            }
        }
        self.mining.running.store(true, Ordering::SeqCst);
        let mut thread = lock(&self.mining.thread);
        if thread.as_ref().is_none_or(|t| t.is_finished()) {
            let node = self.clone();
            let handle = std::thread::Builder::new()
                .name("mining".into())
                .spawn(move || node.mining_loop())
                .map_err(|e| NodeError::Config(format!("cannot start the mining thread: {e}")))?;
            *thread = Some(handle);
        }
        Ok(())
    }

    /// Switches the miner's mode (and threads) at run time: the current
    /// search stops and the new schedule starts at once.
    pub fn set_mining_mode(
        self: &Arc<Self>,
        mode: crate::lab::MiningMode,
        threads: Option<usize>,
    ) -> Result<(), NodeError> {
        self.lab.set_mode(mode);
        self.mining.stop_gen.fetch_add(1, Ordering::SeqCst);
        self.mining.wake.1.notify_all();
        if mode.runs() {
            self.start_mining(None, threads)
        } else {
            self.stop_mining();
            if let Some(t) = threads.filter(|&t| t != self.miner_threads()) {
                let pool = MinerPool::new(t).map_err(|e| {
                    NodeError::Config(format!("cannot start {t} miner threads: {e}"))
                })?;
                *lock(&self.mining.pool) = Arc::new(pool);
            }
            Ok(())
        }
    }

    /// Stops the mining thread and waits for it.
    pub fn stop_mining(&self) {
        self.mining.running.store(false, Ordering::SeqCst);
        self.mining.stop_gen.fetch_add(1, Ordering::SeqCst);
        self.mining.wake.1.notify_all();
        let handle = lock(&self.mining.thread).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub fn is_mining(&self) -> bool {
        self.mining.running.load(Ordering::SeqCst)
    }

    pub fn miner_address(&self) -> Option<Address> {
        *lock(&self.mining.address)
    }

    pub fn miner_threads(&self) -> usize {
        self.miner_pool().threads()
    }

    /// The miner's mode: the one set with `mining_setMode`, else an
    /// interval of `--block-time` on pinned-target networks and continuous
    /// search elsewhere.
    pub fn mining_mode(&self) -> crate::lab::MiningMode {
        use crate::lab::MiningMode;
        self.lab
            .mode()
            .unwrap_or(match self.network.params.retarget {
                Retarget::Pinned => MiningMode::Interval {
                    ms: self.config.mining.block_time_ms.max(1),
                    random: false,
                },
                Retarget::Asert { .. } => MiningMode::Continuous,
            })
    }

    /// Whether a block mined now would carry a transfer (instant mode).
    fn transfers_ready(&self) -> bool {
        if self.mempool.is_empty() {
            return false;
        }
        let Some(miner) = self.miner_address() else {
            return false;
        };
        let chain = lock(&self.chain);
        self.template(&chain, miner)
            .is_ok_and(|b| !b.transfers.is_empty())
    }

    fn mining_loop(&self) {
        match self.mining_mode() {
            crate::lab::MiningMode::Interval { ms, .. } => {
                tracing::info!("mining one block every {ms} ms")
            }
            mode => tracing::info!(
                "mining ({}) on {} threads",
                mode.name(),
                self.miner_threads()
            ),
        }
        // a mode set at run time waits one interval for its first block
        // (so miners switched together do not all mine at once)
        let mut next = Instant::now()
            + match self.lab.mode() {
                Some(mode) => crate::lab::Lab::interval(mode).unwrap_or_default(),
                None => Duration::ZERO,
            };
        let mut generation = self.lab.generation();
        while self.is_mining() && !self.is_shutting_down() {
            let mode = self.mining_mode();
            if self.lab.generation() != generation {
                // a new mode starts its schedule now: its first block
                // comes one interval later, not at once on every miner
                generation = self.lab.generation();
                next = Instant::now() + crate::lab::Lab::interval(mode).unwrap_or_default();
            }
            let waiting = |_: &mut ()| {
                self.is_mining() && !self.is_shutting_down() && self.lab.generation() == generation
            };
            if let Some(d) = crate::lab::Lab::interval(mode) {
                // wait for the next tick, waking early on stop or a new mode
                let guard = lock(&self.mining.wake.0);
                let wait = next.saturating_duration_since(Instant::now());
                let _ = self
                    .mining
                    .wake
                    .1
                    .wait_timeout_while(guard, wait, |g| waiting(g) && Instant::now() < next);
                if !self.is_mining() || self.is_shutting_down() {
                    break;
                }
                if self.lab.generation() != generation {
                    continue;
                }
                next = Instant::now() + d;
            } else if mode == crate::lab::MiningMode::Instant {
                if !self.transfers_ready() {
                    let guard = lock(&self.mining.wake.0);
                    let _ = self.mining.wake.1.wait_timeout_while(
                        guard,
                        Duration::from_millis(10),
                        waiting,
                    );
                    continue;
                }
            } else if !mode.runs() {
                break;
            }
            let Some(miner) = self.miner_address() else {
                break;
            };
            let stop_gen = self.mining.stop_gen.load(Ordering::SeqCst);
            let stop = || {
                self.is_shutting_down() || self.mining.stop_gen.load(Ordering::SeqCst) != stop_gen
            };
            match self.mine_one(miner, &stop) {
                Ok(Some(block)) => {
                    let (found, height) = (now_ms(), block.header.height.0);
                    if let Ok(p) = self.submit_block(block, Source::Miner) {
                        self.lab.mined(p.hash, height, found);
                        self.mining.blocks_mined.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("mining stopped: {e}");
                    break;
                }
            }
        }
        tracing::info!("mining stopped");
    }

    /// Stops the miner and flushes the store. The store also flushes when
    /// the last reference to the node is dropped.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop_mining();
        self.indexer.stop();
        self.flusher.stop();
        // fold the in-memory account changes so the next start has nothing to replay
        let _chain = lock(&self.chain);
        if let Err(e) = self.store.checkpoint() {
            tracing::error!("writing the state checkpoint at shutdown failed: {e}");
        }
        if let Err(e) = self.store.flush() {
            tracing::error!("flushing the store at shutdown failed: {e}");
        }
    }

    /// The target for a block at the tip (shown by `chain_getInfo`).
    pub fn tip_target(&self) -> Target {
        self.tip().header.target
    }
}

fn snapshot(chain: &Chain<Arc<SledStore>>) -> TipSnapshot {
    let e = chain.tip();
    TipSnapshot {
        hash: chain.tip_hash(),
        header: e.header,
        work: e.work,
    }
}

fn short(h: &BlockHash) -> String {
    h.to_hex()[..16].to_string()
}

/// Processes one block without flushing, and logs the outcome.
fn process_logged(
    chain: &mut Chain<Arc<SledStore>>,
    block: Block,
    source: Source,
    quiet: bool,
) -> Result<Processed, ChainError> {
    let (height, transfers) = (block.header.height.0, block.transfers.len());
    let started = Instant::now();
    let r = chain.process_block_unflushed(block, now_ms());
    crate::metrics::block_processed(&r, started.elapsed());
    log_processed(&r, height, transfers, started.elapsed(), source, quiet);
    r
}

fn log_processed(
    r: &Result<Processed, ChainError>,
    height: u64,
    transfers: usize,
    took: Duration,
    source: Source,
    quiet: bool,
) {
    let ms = took.as_secs_f64() * 1000.0;
    match r {
        Ok(p) => match p.outcome {
            Outcome::Connected if quiet => tracing::debug!(
                "block {height} {} accepted: {transfers} transfers, validated in {ms:.1} ms ({source})",
                short(&p.hash)
            ),
            Outcome::Connected => tracing::info!(
                "block {height} {} accepted: {transfers} transfers, validated in {ms:.1} ms ({source})",
                short(&p.hash)
            ),
            Outcome::SideBranch => tracing::info!(
                "block {height} {} stored on a side branch: {transfers} transfers ({source})",
                short(&p.hash)
            ),
            Outcome::Orphan { missing } => tracing::debug!(
                "block {height} {} waits for its parent {} ({source})",
                short(&p.hash),
                short(&missing)
            ),
            Outcome::Duplicate => {
                tracing::debug!("block {height} {} already known ({source})", short(&p.hash))
            }
        },
        Err(e) if e.is_block_fault() => tracing::warn!("block {height} rejected ({source}): {e}"),
        Err(e) => tracing::error!("block {height} could not be processed ({source}): {e}"),
    }
}
