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
//!
//! The API is declared once, in the [`cairn_rpc!`] invocation at the end of
//! this file: each method's name, class ([`Class`]: who may call it where),
//! documentation, parameters and result. From that one declaration come the
//! jsonrpsee server and client traits, the [`method_specs`] table that the
//! node uses to gate calls and explain bad parameters, and the OpenRPC
//! document served by `rpc.discover` ([`openrpc::document`]). Adding a
//! method is one entry there plus its implementation in the node.
//!
//! [`auth`] holds the client side of the node's RPC authentication: where
//! the cookie file is and how to turn it into an HTTP header.

use cairn_consensus::{BlockHash, StateRoot, Target, TxId, TxRoot, Work};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use schemars::JsonSchema;
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

    /// The method changes the node and the RPC listens on a public address
    /// without `--rpc-allow-control`.
    pub const METHOD_REFUSED: i32 = 1050;
    /// The method exists only on dev networks.
    pub const DEV_ONLY: i32 = 1051;
    /// A request (a call or a whole batch) asks for more work than allowed.
    pub const REQUEST_TOO_LARGE: i32 = 1052;
}

/// An error with a stable code and a message.
pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

/// A block height (a number) or a block hash (64 hex characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum BlockId {
    Height(u64),
    Hash(BlockHash),
}

/// `chain_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// The network's minimum transfer fee, base units (the mempool may ask
    /// more when full: see `mempool_getInfo`).
    #[serde(default)]
    pub min_fee: u64,
    /// Sync progress while syncing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncProgress>,
}

/// Progress of a sync with peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncProgress {
    pub height: u64,
    pub target_height: u64,
    pub blocks_per_sec: u64,
    /// Estimated seconds left, when a rate is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
}

/// A block header, every field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CoinbaseView {
    pub txid: TxId,
    pub recipient: String,
    /// Reward plus fees, base units.
    pub amount: u64,
}

/// `chain_getBlock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    Pending,
    Confirmed,
    Unknown,
}

/// `chain_getTransaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryPage {
    pub address: String,
    pub entries: Vec<HistoryEntry>,
    /// Pass as `before_height` to get the next (older) page; absent at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before_height: Option<u64>,
}

/// `mempool_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MempoolInfo {
    /// Pending transfers, ready and waiting.
    pub count: u64,
    /// Bytes of the ready transfers (those that can be mined now).
    pub bytes: u64,
    /// The lowest fee a new transfer can pay and still enter, base units.
    pub min_fee: u64,
    /// Bound of `bytes`; when reached, `min_fee` rises.
    pub max_bytes: u64,
    /// Transfers waiting for an earlier nonce of their sender.
    pub waiting_count: u64,
    /// Their bytes; they never raise `min_fee`.
    pub waiting_bytes: u64,
    pub max_waiting_bytes: u64,
}

/// `mining_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MiningInfo {
    pub mining: bool,
    pub threads: u32,
    /// Hash attempts per second over the last few seconds.
    pub hashrate: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Blocks this node has mined since it started.
    pub blocks_mined: u64,
    /// `interval`, `continuous`, `instant`, `manual` or `paused` (see `mining_setMode`).
    #[serde(default)]
    pub mode: String,
    /// In `interval` mode: the (mean) interval between blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// In `interval` mode: whether intervals are drawn at random
    /// (exponentially, as proof of work makes them) around the mean.
    #[serde(default)]
    pub random: bool,
}

/// `lab_getObservations`: when this node first saw blocks and transfers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Observations {
    /// This node's clock when it answered, ms since the Unix epoch.
    pub now_ms: u64,
    /// Blocks, in the order first seen (the newest `limit`).
    pub blocks: Vec<SeenView>,
    /// Transfers, in the order first seen (the newest `limit`).
    pub transfers: Vec<SeenView>,
    /// Blocks this node mined since it started.
    pub mined: u64,
    /// Blocks this node mined that are off the best chain now (stale).
    pub stale_mined: Vec<BlockHash>,
    /// Reorganisations since start-up.
    pub reorgs: u64,
}

/// One first sighting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeenView {
    /// Block hash or transfer id, hex.
    pub id: String,
    /// Block height (0 for transfers).
    pub height: u64,
    /// When it first arrived (ms since the Unix epoch, this node's clock).
    pub time_ms: u64,
    /// `local` (mined here, or submitted over RPC), or the peer it came
    /// from: its listen address when still connected, else `peer#ID`.
    pub from: String,
}

/// A peer id (a number) or a peer address (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PeerRef {
    Id(u64),
    Address(String),
}

/// `net_getPeers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerView {
    /// The connection's number (a reconnection gets a new one).
    pub id: u64,
    /// The node at the other end (its ed25519 public key, hex), proven by
    /// the encrypted handshake; usable as `NODEID@host:port`.
    #[serde(default)]
    pub node_id: String,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkEntry {
    /// The peer's listen address, or `*` for every peer.
    pub peer: String,
    pub rule: LinkView,
}

/// `chain_getReorgs`: one change of the best chain that removed blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReorgView {
    /// When it happened, milliseconds since the Unix epoch (local clock).
    pub time_ms: u64,
    /// Blocks that left the best chain.
    pub depth: u64,
    /// Blocks that joined it.
    pub connected: u64,
    /// The last block both branches share.
    pub fork_point: BlockHash,
    pub fork_height: u64,
    pub old_tip: BlockHash,
    pub old_height: u64,
    pub new_tip: BlockHash,
    pub new_height: u64,
    /// The blocks that left the best chain, oldest first (at most 64 listed).
    pub disconnected_blocks: Vec<BlockHash>,
}

/// `chain_getForks`: a block stored off the best chain (a side branch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SideBlockView {
    pub hash: BlockHash,
    pub parent: BlockHash,
    pub height: u64,
    pub time_ms: u64,
    /// When this node stored it (or saw it leave the best chain), ms since the epoch.
    pub seen_ms: u64,
    /// `side-branch` when it arrived off the best chain, `reorged-out` when
    /// a reorganisation removed it.
    pub reason: String,
    /// Whether it is on the best chain now (a later reorganisation may bring it back).
    pub in_best_chain: bool,
}

/// `mempool_getEntries`: a pending transfer and whether it can be mined now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MempoolEntryView {
    pub txid: TxId,
    pub from: String,
    pub to: String,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
    /// Encoded size, bytes.
    pub size: u64,
    /// When it entered, ms since the epoch.
    pub added_ms: u64,
    /// `ready` (its nonce follows the account's) or `waiting`.
    pub state: String,
    /// While waiting: the nonce that must be mined or submitted first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_nonce: Option<u64>,
}

/// `rpc_methods`: the methods this node answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RpcMethods {
    pub version: u32,
    /// Names of the methods callable on this node.
    pub methods: Vec<String>,
    /// Every declared method with its class and whether this node allows it.
    pub details: Vec<MethodInfo>,
}

/// One entry of `rpc_methods.details`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MethodInfo {
    pub name: String,
    /// `read`, `submit`, `control` or `dev`.
    pub class: String,
    pub summary: String,
    /// Whether this node accepts calls to it (see `class`).
    pub available: bool,
    /// Why not, when it is not available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An OpenRPC document (`rpc.discover`), as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpenRpcDocument(pub serde_json::Value);

impl JsonSchema for OpenRpcDocument {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OpenRpcDocument".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "An OpenRPC 1.x document (https://spec.open-rpc.org)",
            "required": ["openrpc", "info", "methods"],
            "properties": {
                "openrpc": {"type": "string"},
                "info": {"type": "object"},
                "methods": {"type": "array", "items": {"type": "object"}},
                "components": {"type": "object"},
            },
        })
    }
}

pub mod auth;
pub mod openrpc;
mod spec;
pub use spec::{Class, MethodSpec, ParamSpec, TypeSpec};

/// Declares the API once: emits the jsonrpsee trait [`CairnApi`] (with its
/// generated `CairnApiServer` and `CairnApiClient`) and [`method_specs`].
///
/// Each entry is `CLASS "wire_name" => fn rust_name(params) -> Result;`
/// with its doc comment. A parameter typed `Option<T>` may be omitted by
/// callers. Classes are [`Class`] variants.
macro_rules! cairn_rpc {
    (@params [$($out:expr),*] $p:ident : Option<$t:ty> $(, $($rest:tt)*)?) => {
        cairn_rpc!(@params [$($out,)* ParamSpec::optional::<$t>(stringify!($p))] $($($rest)*)?)
    };
    (@params [$($out:expr),*] $p:ident : $t:ty $(, $($rest:tt)*)?) => {
        cairn_rpc!(@params [$($out,)* ParamSpec::required::<$t>(stringify!($p))] $($($rest)*)?)
    };
    (@params [$($out:expr),*]) => {
        vec![$($out),*]
    };
    (
        $(
            $(#[doc = $doc:literal])*
            $class:ident $name:literal => fn $f:ident ( $($params:tt)* ) -> $ret:ty;
        )*
    ) => {
        /// The Cairn JSON-RPC API.
        #[rpc(server, client)]
        pub trait CairnApi {
            $(
                $(#[doc = $doc])*
                #[method(name = $name)]
                async fn $f(&self, $($params)*) -> RpcResult<$ret>;
            )*

            /// Each new best block's header, as it arrives (WebSocket only).
            #[subscription(name = "chain_subscribeNewHeads" => "chain_newHead", unsubscribe = "chain_unsubscribeNewHeads", item = HeaderView)]
            async fn subscribe_new_heads(&self) -> SubscriptionResult;
        }

        /// Every method of the API, in declaration order: the source of the
        /// OpenRPC document and of the node's per-method policy.
        pub fn method_specs() -> Vec<MethodSpec> {
            let mut specs = vec![$(
                MethodSpec {
                    name: $name,
                    class: Class::$class,
                    doc: concat!($($doc, "\n"),*),
                    params: cairn_rpc!(@params [] $($params)*),
                    result: TypeSpec::of::<$ret>(),
                    subscription: None,
                }
            ),*];
            specs.push(MethodSpec {
                name: "chain_subscribeNewHeads",
                class: Class::Read,
                doc: " Each new best block's header, as it arrives (WebSocket only): notifications `chain_newHead`, ended by `chain_unsubscribeNewHeads`.",
                params: vec![],
                result: TypeSpec::of::<HeaderView>(),
                subscription: Some(("chain_newHead", "chain_unsubscribeNewHeads")),
            });
            specs
        }
    };
}

cairn_rpc! {
    /// Network, best block and sync state.
    Read "chain_getInfo" => fn chain_get_info() -> ChainInfo;

    /// A block by height (on the best chain) or by hash (any stored block).
    Read "chain_getBlock" => fn chain_get_block(id: BlockId) -> BlockView;

    /// The hash of the best-chain block at `height`.
    Read "chain_getBlockHash" => fn chain_get_block_hash(height: u64) -> BlockHash;

    /// A transfer by id: pending, confirmed (with block and confirmations) or unknown.
    Read "chain_getTransaction" => fn chain_get_transaction(txid: TxId) -> TransactionView;

    /// Recent reorganisations of the best chain, newest first (at most
    /// `limit`, default 20; the node keeps the last 64 since it started).
    Read "chain_getReorgs" => fn chain_get_reorgs(limit: Option<u32>) -> Vec<ReorgView>;

    /// Recent blocks stored off the best chain (side branches and blocks a
    /// reorganisation removed), newest first (at most `limit`, default 50).
    Read "chain_getForks" => fn chain_get_forks(limit: Option<u32>) -> Vec<SideBlockView>;

    /// Balance and nonces of an address.
    Read "state_getAccount" => fn state_get_account(address: String) -> AccountView;

    /// Transfers in and out of an address and its rewards, newest first:
    /// pending ones, then up to `limit` confirmed ones below `before_height`.
    Read "state_getHistory" => fn state_get_history(address: String, limit: Option<u32>, before_height: Option<u64>) -> HistoryPage;

    /// Submits a signed transfer (hex of its borsh encoding); returns its id.
    Submit "tx_submit" => fn tx_submit(transfer_hex: String) -> TxId;

    /// Size and entry fee of the mempool.
    Read "mempool_getInfo" => fn mempool_get_info() -> MempoolInfo;

    /// Pending transfers, best fee first, each `ready` or `waiting` for an
    /// earlier nonce (at most `limit`, default 100, at most 1000).
    Read "mempool_getEntries" => fn mempool_get_entries(limit: Option<u32>) -> Vec<MempoolEntryView>;

    /// Mines `count` blocks now with the node's miner, paying `address`;
    /// returns their hashes once they are durable. A request (one call or a
    /// whole batch) may ask for at most 10000 blocks.
    Control "mining_generate" => fn mining_generate(count: u32, address: String) -> Vec<BlockHash>;

    /// Whether the node mines, on how many threads, at what hashrate.
    Read "mining_getInfo" => fn mining_get_info() -> MiningInfo;

    /// Starts mining continuously to `address` (default: the configured
    /// miner address) on `threads` threads (default: all cores).
    Control "mining_start" => fn mining_start(address: Option<String>, threads: Option<u32>) -> ();

    /// Stops continuous mining.
    Control "mining_stop" => fn mining_stop() -> ();

    /// Switches the miner's mode at run time: `instant` (a block as soon
    /// as a transfer can be mined), `interval` (one block every
    /// `interval_ms`; with `random`, intervals drawn exponentially around
    /// it, as proof of work makes them), `continuous`, `manual` (blocks
    /// only from `mining_generate`) or `paused` (no blocks at all), on
    /// `threads` threads. For experiments on private testnets.
    Control "mining_setMode" => fn mining_set_mode(mode: String, interval_ms: Option<u64>, random: Option<bool>, threads: Option<u32>) -> MiningInfo;

    /// When this node first saw each recent block and transfer, and from
    /// which peer; its stale mined blocks and reorganisation count (the
    /// newest `limit` records, default and at most 4096 blocks and 16384
    /// transfers). Read by `cairn-node testnet stats`.
    Read "lab_getObservations" => fn lab_get_observations(limit: Option<u32>) -> Observations;

    /// Connected peers.
    Read "net_getPeers" => fn net_get_peers() -> Vec<PeerView>;

    /// Connects to a peer at `host:port` and returns it once connected; an
    /// error says why not (unreachable, refused and why). Lifts an earlier
    /// `net_disconnectPeer` and any ban on that address.
    Control "net_addPeer" => fn net_add_peer(address: String) -> PeerView;

    /// Disconnects a peer by id (a number) or address (`host:port`) and
    /// keeps it away until `net_addPeer`.
    Control "net_disconnectPeer" => fn net_disconnect_peer(peer: PeerRef) -> ();

    /// Current bans: target, when set, until when, why, by whom.
    Read "net_listBanned" => fn net_list_banned() -> Vec<BanView>;

    /// Bans an IP, a subnet (`10.0.0.0/8`) or, on loopback, an `ip:port`
    /// for `duration_secs` seconds (0 lifts the ban). Connected peers it
    /// covers are disconnected.
    Control "net_setBan" => fn net_set_ban(target: String, duration_secs: u64) -> ();

    /// Lifts every ban; returns how many there were.
    Control "net_clearBanned" => fn net_clear_banned() -> u64;

    /// Sets a link fault on what this node sends to the peer listening at
    /// `peer` (`host:port`), or to every peer (`*`): partition (`drop`),
    /// delay, jitter, loss, rate. A default rule clears it. Returns how many
    /// connected peers it applies to. Never causes a ban.
    Control "net_setLink" => fn net_set_link(peer: String, rule: LinkView) -> u64;

    /// The link faults in force.
    Read "net_getLinks" => fn net_get_links() -> Vec<LinkEntry>;

    /// Sends `amount` base units (default 1000 coins) to `address` from a
    /// prefunded dev account; returns the transfer's id. Dev networks only.
    Dev "dev_faucet" => fn dev_faucet(address: String, amount: Option<u64>) -> TxId;

    /// This API as an OpenRPC 1.x document: every method with its
    /// parameters and result schemas.
    Read "rpc.discover" => fn rpc_discover() -> OpenRpcDocument;

    /// The methods this node answers, with their classes.
    Read "rpc_methods" => fn rpc_methods() -> RpcMethods;
}
