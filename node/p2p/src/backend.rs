//! How the P2P layer reaches the node: the [`ChainBackend`] trait.
//!
//! # Correctness
//! Methods marked *blocking* may read storage or wait for the chain or
//! mempool locks; the P2P layer calls them only on blocking threads
//! (`tokio::task::spawn_blocking`), never on the task that serves every
//! peer. Only [`ChainBackend::tip`] and [`ChainBackend::subscribe`] are
//! called on async tasks: they must return at once from memory.

use cairn_consensus::validation::HeaderMeta;
use cairn_consensus::{Block, BlockHash, BlockHeader, ConsensusParams, SignedTransfer, TxId, Work};
use tokio::sync::broadcast;

/// The best block of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainTip {
    pub hash: BlockHash,
    pub height: u64,
    pub work: Work,
    pub header: BlockHeader,
}

/// What the node's network is.
#[derive(Clone, Debug)]
pub struct NetworkInfo {
    pub name: String,
    pub genesis_hash: BlockHash,
    pub params: ConsensusParams,
    /// A development network (loopback peers are the operator's own).
    pub is_dev: bool,
    /// Where to find peers (`host:port`), from the network's spec.
    pub bootnodes: Vec<String>,
}

/// A block the node stores, as far as header sync cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredHeader {
    pub meta: HeaderMeta,
    /// The block failed validation (it and its descendants are invalid).
    pub invalid: bool,
}

/// Something the node did that peers may want to hear about.
// the tip variant is the common one: boxing it would allocate per event
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ChainEvent {
    /// The best chain moved to `tip`. `connected` holds the headers of the
    /// blocks that joined it, oldest first (at most the newest 16; earlier
    /// ones are counted in `connected_count`); `disconnected` counts the
    /// blocks that left it. `tip_block` is the tip's block when the node
    /// still has it in memory (it relays as a compact block without being
    /// read back).
    TipChanged {
        tip: ChainTip,
        connected: Vec<BlockHeader>,
        tip_block: Option<std::sync::Arc<Block>>,
        connected_count: u64,
        disconnected: u64,
    },
    /// A transfer entered the mempool (`from_peer`: the connection it came
    /// from, not to be told about it again).
    TransferAccepted { id: TxId, from_peer: Option<u64> },
}

/// What became of a block handed to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockVerdict {
    /// Stored; `best` when it is on the best chain now.
    Accepted { best: bool },
    /// Already stored.
    Duplicate,
    /// Its parent is unknown to the node (kept as an orphan, if at all).
    Orphan,
    /// Invalid. `condemned`: the block hash itself is invalid (its header
    /// commits to a body that breaks the rules, or the header does), as
    /// opposed to a body that does not match its header.
    Invalid { reason: String, condemned: bool },
    /// Not acceptable now, possibly later (a time too far in the future):
    /// nobody's fault.
    NotYet { reason: String },
    /// The node could not process it (storage): nobody's fault.
    Failed { reason: String },
}

/// What became of a transfer handed to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxVerdict {
    Accepted,
    /// Already pending or confirmed, or refused by policy (fees, nonces,
    /// a full mempool): not the sender's fault.
    Ignored {
        reason: String,
    },
    /// Invalid whatever the state (a bad signature, another chain id, a
    /// malformed amount): the sender relayed garbage.
    Invalid {
        reason: String,
    },
}

/// A failure of the node's storage while serving the P2P layer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// The node, as the P2P layer sees it.
pub trait ChainBackend: Send + Sync + 'static {
    /// The network. Called once at start-up.
    fn network(&self) -> NetworkInfo;

    /// The best block, from memory. Never blocks.
    fn tip(&self) -> ChainTip;

    /// Best-chain changes and accepted transfers. Never blocks.
    fn subscribe(&self) -> broadcast::Receiver<ChainEvent>;

    /// *Blocking.* A stored block's header context, on any branch.
    fn header(&self, hash: &BlockHash) -> Result<Option<StoredHeader>, BackendError>;

    /// *Blocking.* A locator of the best chain: the tip, nine below it, then
    /// doubling distances down to genesis (genesis last).
    fn locator(&self) -> Result<Vec<BlockHash>, BackendError>;

    /// *Blocking.* Headers of the best chain after the first `locator` hash
    /// found on it (after genesis if none is), at most `max`.
    fn headers_after(
        &self,
        locator: &[BlockHash],
        max: usize,
    ) -> Result<Vec<BlockHeader>, BackendError>;

    /// *Blocking.* A stored block's canonical encoding.
    fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, BackendError>;

    /// *Blocking.* Processes blocks in order (each one's parent stored or
    /// earlier in the list); one verdict per block. Returns once the
    /// accepted blocks are durable.
    fn submit_blocks(&self, blocks: Vec<Block>, peer: u64) -> Vec<BlockVerdict>;

    /// *Blocking.* Checks transfers and adds them to the mempool.
    fn submit_transfers(&self, txs: Vec<SignedTransfer>, peer: u64) -> Vec<TxVerdict>;

    /// *Blocking.* Which of these transfers the node already has (pending or
    /// confirmed recently enough to know).
    fn has_transfers(&self, ids: &[TxId]) -> Vec<bool>;

    /// *Blocking.* Pending transfers by id (those the mempool holds).
    fn pending_transfers(&self, ids: &[TxId]) -> Vec<SignedTransfer>;

    /// *Blocking.* Up to `limit` pending transfer ids, best fee first: what
    /// a newly connected peer is told about (a transfer that reached only
    /// one side of a partition must not stay there after it heals).
    fn mempool_ids(&self, limit: usize) -> Vec<TxId>;

    /// *Blocking.* The pending transfers whose short ids under `key` are
    /// `ids` (one slot per id, see [`crate::compact::match_short_ids`]),
    /// for rebuilding a compact block. A backend without a mempool finds
    /// nothing, and every compact block is then fetched in full.
    fn match_short_ids(
        &self,
        key: &crate::compact::ShortIdKey,
        ids: &[crate::compact::ShortId],
    ) -> Vec<Option<SignedTransfer>> {
        let _ = key;
        vec![None; ids.len()]
    }
}
