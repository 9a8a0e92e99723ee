//! # cairn-api
//!
//! The JSON-RPC interface of a Cairn node, declared once. `cairn-node`
//! implements the generated [`CairnApiServer`] trait; `cairn-wallet` and the
//! tests call the node through the generated [`CairnApiClient`] trait on any
//! jsonrpsee client, so neither side writes JSON by hand.
//!
//! Conventions: hashes, ids and transactions travel as hex strings, amounts
//! as integers in base units (1 coin = 100000000), addresses as bech32m text.
//! Errors carry a stable code from [`codes`] and a message a person can act on.

use cairn_consensus::{BlockHash, StateRoot, Target, TxId, TxRoot, Work};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};

pub use jsonrpsee::core::RpcResult;

/// Stable error codes. The JSON-RPC standard ones keep their meaning
/// (-32700 parse error, -32600 invalid request, -32601 method not found,
/// -32602 invalid params, -32603 internal error), as do the server's limits
/// in the reserved range -32099..-32000 (-32007 request too large, -32010
/// batch too large, ...). The node's own codes are positive, outside every
/// reserved range, grouped by subject: 1001-1009 lookups and addresses,
/// 1010-1029 transfers and the mempool, 1030 mining, 1040 peers.
pub mod codes {
    /// A block, transaction or height that the node does not have.
    pub const NOT_FOUND: i32 = 1001;
    /// An address that does not parse (typo: checksum mismatch).
    pub const INVALID_ADDRESS: i32 = 1002;
    /// An address of another network.
    pub const WRONG_NETWORK: i32 = 1003;

    /// The transaction hex or its encoding is invalid.
    pub const TX_MALFORMED: i32 = 1010;
    /// The transaction is larger than any valid transfer.
    pub const TX_TOO_LARGE: i32 = 1011;
    /// Signed for another chain id.
    pub const TX_WRONG_CHAIN: i32 = 1012;
    /// The signature does not verify (`verify_strict`).
    pub const TX_BAD_SIGNATURE: i32 = 1013;
    /// Zero amount, or amount plus fee overflows.
    pub const TX_BAD_AMOUNT: i32 = 1014;
    /// The fee is below the network's or the mempool's minimum.
    pub const TX_FEE_TOO_LOW: i32 = 1015;
    /// The nonce is already used.
    pub const TX_NONCE_TOO_LOW: i32 = 1016;
    /// The nonce is too far ahead of the account's next nonce.
    pub const TX_NONCE_TOO_HIGH: i32 = 1017;
    /// Balance does not cover amount plus fee plus the sender's pending spends.
    pub const TX_INSUFFICIENT_BALANCE: i32 = 1018;
    /// Already in the mempool (or already confirmed).
    pub const TX_DUPLICATE: i32 = 1019;
    /// Replaces a pending transfer without the required fee increase.
    pub const TX_REPLACEMENT_UNDERPRICED: i32 = 1020;
    /// The mempool is full of transfers paying at least as much.
    pub const MEMPOOL_FULL: i32 = 1021;
    /// The sender has too many pending transfers.
    pub const TX_SENDER_LIMIT: i32 = 1022;

    /// Mining could not start or complete.
    pub const MINING_FAILED: i32 = 1030;
    /// A peer operation failed.
    pub const PEER_FAILED: i32 = 1040;
}

/// An error with a stable code and a message.
pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

/// A block by height or by hash (`chain_getBlock` accepts either).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlockId {
    Height(u64),
    Hash(BlockHash),
}

/// `chain_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    pub network: String,
    pub chain_id: u64,
    pub genesis_hash: BlockHash,
    pub height: u64,
    pub best_hash: BlockHash,
    /// Cumulative work of the best chain, hex.
    pub total_work: Work,
    /// The best block's target, 64 hex characters.
    pub target: Target,
    /// Whether the node is catching up with peers.
    pub syncing: bool,
    /// Connected peers.
    pub peers: u32,
    /// Prefix of this network's addresses.
    pub address_prefix: String,
    /// Sync progress while syncing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncProgress>,
}

/// Progress of a sync with peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub height: u64,
    pub target_height: u64,
    pub blocks_per_sec: u64,
    /// Estimated seconds left, when a rate is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
}

/// A block header, every field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderView {
    pub hash: BlockHash,
    pub version: u32,
    pub parent: BlockHash,
    pub height: u64,
    pub tx_root: TxRoot,
    pub state_root: StateRoot,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub target: Target,
    pub nonce: u64,
}

/// A transfer, decoded, with its hex encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferView {
    pub txid: TxId,
    pub chain_id: u64,
    /// The sender's address.
    pub from: String,
    /// The sender's public key, hex.
    pub from_key: String,
    pub to: String,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
    /// The borsh encoding, as `tx_submit` takes it.
    pub hex: String,
}

/// The coinbase of a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinbaseView {
    pub txid: TxId,
    pub recipient: String,
    /// Reward plus fees, base units.
    pub amount: u64,
}

/// `chain_getBlock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    pub hash: BlockHash,
    pub header: HeaderView,
    pub coinbase: CoinbaseView,
    /// The transfers, in block order.
    pub transactions: Vec<TransferView>,
    /// Encoded size in bytes.
    pub size: u64,
    /// Whether the block is on the best chain.
    pub in_best_chain: bool,
    /// Blocks on top of it, itself included (0 when not on the best chain).
    pub confirmations: u64,
}

/// Status of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    Pending,
    Confirmed,
    Unknown,
}

/// `chain_getTransaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionView {
    /// `None` when unknown.
    pub transaction: Option<TransferView>,
    pub status: TxStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<BlockHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
}

/// `state_getAccount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub address: String,
    /// Confirmed balance, base units.
    pub balance: u64,
    /// Confirmed nonce: transfers sent and mined.
    pub nonce: u64,
    /// The nonce the next transfer should carry, counting the mempool.
    pub next_nonce: u64,
    /// Sum of amount plus fee of this account's pending transfers.
    pub pending_spend: u64,
}

/// Direction of a history entry, seen from the queried address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
    /// Sent to itself.
    #[serde(rename = "self")]
    SelfTransfer,
    /// A block reward (coinbase) to the address.
    Mined,
}

/// One transfer (or reward) involving an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub txid: TxId,
    pub direction: Direction,
    /// The other side: recipient when out, sender when in, absent for rewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    pub amount: u64,
    /// Fee paid (0 unless out or self).
    pub fee: u64,
    pub status: TxStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<BlockHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// Block time, for confirmed entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
}

/// `state_getHistory`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub address: String,
    pub entries: Vec<HistoryEntry>,
    /// Pass as `before_height` to get the next (older) page; absent at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before_height: Option<u64>,
}

/// `mempool_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolInfo {
    pub count: u64,
    pub bytes: u64,
    /// The lowest fee a new transfer can pay and still enter, base units.
    pub min_fee: u64,
    pub max_bytes: u64,
}

/// `mining_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiningInfo {
    pub mining: bool,
    pub threads: u32,
    /// Hash attempts per second over the last few seconds.
    pub hashrate: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Blocks this node has mined since it started.
    pub blocks_mined: u64,
}

/// A peer, by id or by `host:port` (`net_disconnectPeer` accepts either).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PeerRef {
    Id(u64),
    Address(String),
}

/// `net_getPeers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The connection's number (a reconnection gets a new one).
    pub id: u64,
    /// The address we dialled, or the one the peer listens on.
    pub address: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The best height the peer showed or claimed.
    pub height: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The socket's remote address.
    #[serde(default)]
    pub remote: String,
    /// The best block whose header the peer showed us (validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_hash: Option<BlockHash>,
    #[serde(default)]
    pub user_agent: String,
    /// The operator's own peer (`--peer`, `net_addPeer`, `--whitelist`,
    /// loopback on dev): disconnected on misbehaviour, never banned.
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub connected_secs: u64,
    /// Blocks we are downloading from it now.
    #[serde(default)]
    pub blocks_in_flight: u64,
}

/// `net_listBanned`: one ban.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    /// An IP, a subnet (`10.0.0.0/8`), or `ip:port` for a loopback peer.
    pub target: String,
    pub created_ms: u64,
    /// The ban ends then (ms since the Unix epoch).
    pub until_ms: u64,
    pub reason: String,
    /// `auto` (misbehaviour) or `operator` (`net_setBan`).
    pub origin: String,
}

/// A link fault on the messages a node sends to a peer (`net_setLink`).
/// Every field is optional; an all-default rule clears the fault.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkView {
    /// Nothing passes, in either direction: the peers are partitioned.
    pub drop: bool,
    /// Every message waits this long.
    pub delay_ms: u64,
    /// Plus up to this much more, at random.
    pub jitter_ms: u64,
    /// The fraction of messages lost, 0 to 1.
    pub loss: f64,
    /// At most this many bits per second (0: no limit).
    pub rate_bps: u64,
}

/// `net_getLinks`: a link fault and whom it applies to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// The peer's listen address, or `*` for every peer.
    pub peer: String,
    pub rule: LinkView,
}

/// The Cairn JSON-RPC API.
#[rpc(server, client)]
pub trait CairnApi {
    /// Network, best block and sync state.
    #[method(name = "chain_getInfo")]
    async fn chain_get_info(&self) -> RpcResult<ChainInfo>;

    /// A block by height (on the best chain) or by hash (any stored block).
    #[method(name = "chain_getBlock")]
    async fn chain_get_block(&self, id: BlockId) -> RpcResult<BlockView>;

    /// The hash of the best-chain block at `height`.
    #[method(name = "chain_getBlockHash")]
    async fn chain_get_block_hash(&self, height: u64) -> RpcResult<BlockHash>;

    /// A transfer by id: pending, confirmed (with block and confirmations) or unknown.
    #[method(name = "chain_getTransaction")]
    async fn chain_get_transaction(&self, txid: TxId) -> RpcResult<TransactionView>;

    /// Balance and nonces of an address.
    #[method(name = "state_getAccount")]
    async fn state_get_account(&self, address: String) -> RpcResult<AccountView>;

    /// Transfers in and out of an address and its rewards, newest first:
    /// pending ones, then up to `limit` confirmed ones below `before_height`.
    #[method(name = "state_getHistory")]
    async fn state_get_history(
        &self,
        address: String,
        limit: Option<u32>,
        before_height: Option<u64>,
    ) -> RpcResult<HistoryPage>;

    /// Submits a signed transfer (hex of its borsh encoding); returns its id.
    #[method(name = "tx_submit")]
    async fn tx_submit(&self, transfer_hex: String) -> RpcResult<TxId>;

    /// Size and entry fee of the mempool.
    #[method(name = "mempool_getInfo")]
    async fn mempool_get_info(&self) -> RpcResult<MempoolInfo>;

    /// Mines `count` blocks now with the node's miner, paying `address`;
    /// returns their hashes once they are durable.
    #[method(name = "mining_generate")]
    async fn mining_generate(&self, count: u32, address: String) -> RpcResult<Vec<BlockHash>>;

    /// Whether the node mines, on how many threads, at what hashrate.
    #[method(name = "mining_getInfo")]
    async fn mining_get_info(&self) -> RpcResult<MiningInfo>;

    /// Starts mining continuously to `address` (default: the configured
    /// miner address) on `threads` threads (default: all cores).
    #[method(name = "mining_start")]
    async fn mining_start(&self, address: Option<String>, threads: Option<u32>) -> RpcResult<()>;

    /// Stops continuous mining.
    #[method(name = "mining_stop")]
    async fn mining_stop(&self) -> RpcResult<()>;

    /// Connected peers.
    #[method(name = "net_getPeers")]
    async fn net_get_peers(&self) -> RpcResult<Vec<PeerView>>;

    /// Connects to a peer at `host:port` and returns it once connected; an
    /// error says why not (unreachable, refused and why). Lifts an earlier
    /// `net_disconnectPeer` and any ban on that address.
    #[method(name = "net_addPeer")]
    async fn net_add_peer(&self, address: String) -> RpcResult<PeerView>;

    /// Disconnects a peer by id (a number) or address (`host:port`) and
    /// keeps it away until `net_addPeer`.
    #[method(name = "net_disconnectPeer")]
    async fn net_disconnect_peer(&self, peer: PeerRef) -> RpcResult<()>;

    /// Current bans.
    #[method(name = "net_listBanned")]
    async fn net_list_banned(&self) -> RpcResult<Vec<BanView>>;

    /// Bans an IP, a subnet (`10.0.0.0/8`) or, on loopback, an `ip:port`
    /// for `duration_secs` seconds (0 lifts the ban). Connected peers it
    /// covers are disconnected.
    #[method(name = "net_setBan")]
    async fn net_set_ban(&self, target: String, duration_secs: u64) -> RpcResult<()>;

    /// Lifts every ban; returns how many there were.
    #[method(name = "net_clearBanned")]
    async fn net_clear_banned(&self) -> RpcResult<u64>;

    /// Sets a link fault on what this node sends to the peer listening at
    /// `peer` (`host:port`), or to every peer (`*`): partition (`drop`),
    /// delay, jitter, loss, rate. A default rule clears it. Returns how many
    /// connected peers it applies to. Never causes a ban.
    #[method(name = "net_setLink")]
    async fn net_set_link(&self, peer: String, rule: LinkView) -> RpcResult<u64>;

    /// The link faults in force.
    #[method(name = "net_getLinks")]
    async fn net_get_links(&self) -> RpcResult<Vec<LinkEntry>>;

    /// Each new best block's header, as it arrives (WebSocket only).
    #[subscription(name = "chain_subscribeNewHeads" => "chain_newHead", unsubscribe = "chain_unsubscribeNewHeads", item = HeaderView)]
    async fn subscribe_new_heads(&self) -> SubscriptionResult;
}
