//! The JSON-RPC server: implements [`cairn_api::CairnApiServer`] over a
//! [`Node`]. HTTP and WebSocket share one port; request size, response size,
//! connections, batch length and subscriptions are all bounded. Before a
//! call reaches a method it passes the HTTP front ([`crate::http`]: Host and
//! Origin guards, credentials, the unauthenticated routes) and the per-call
//! policy ([`crate::rpc_policy`]: method classes, request budgets, error
//! wording, metrics).

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_api::{
    AccountView, BanView, BlockId, BlockView, CairnApiServer, ChainInfo, CoinbaseView, Direction,
    HistoryEntry, HistoryPage, LinkEntry, LinkView, MempoolInfo, MiningInfo, PeerRef, PeerView,
    RpcResult, TransactionView, TransferView, TxStatus, codes, error,
};
use cairn_consensus::transfer::SIGNED_TRANSFER_BYTES;
use cairn_consensus::{
    Address, AddressError, Block, BlockHash, Height, SignedTransfer, TransferError, TxId,
};
use jsonrpsee::PendingSubscriptionSink;
use jsonrpsee::core::{SubscriptionResult, async_trait};
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Authenticator;
use crate::http::{Front, FrontLayer};
use crate::index::{self, Role};
use crate::mempool::MempoolError;
use crate::node::{Node, NodeError, SubmitError, header_view};
use crate::rpc_policy::{Policy, PolicyLayer};
use crate::store::{ChainStore, StoreError};
use cairn_p2p::{LinkRule, P2pError, P2pHandle, PeerSelector};

/// Most blocks one `mining_generate` call may ask for (a whole request,
/// batches included, is held to the same sum by [`crate::rpc_policy`]).
pub const MAX_GENERATE: u32 = crate::rpc_policy::MAX_GENERATE_PER_REQUEST as u32;
/// Most history entries per page.
pub const MAX_HISTORY: u32 = 1_000;

/// Starts the server on the configured address; returns its handle and the
/// address it actually listens on.
pub async fn start(
    node: Arc<Node>,
    p2p: Option<P2pHandle>,
    auth: Authenticator,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    crate::metrics::install();
    let cfg = &node.config.rpc;
    let config = ServerConfig::builder()
        .max_request_body_size(cfg.max_request_bytes)
        .max_response_body_size(cfg.max_response_bytes)
        .max_connections(cfg.max_connections)
        .max_subscriptions_per_connection(cfg.max_subscriptions)
        .set_batch_request_config(BatchRequestConfig::Limit(cfg.max_batch))
        .build();
    let policy = Arc::new(policy_for(&node));
    let api = Arc::new(RpcServer::new(node.clone(), p2p.clone(), policy.clone()));
    let front = Arc::new(Front::new(node.clone(), p2p.clone(), auth, api));
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(FrontLayer(front)))
        .set_rpc_middleware(
            jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
                .layer(PolicyLayer(policy.clone())),
        )
        .build(node.config.rpc_addr)
        .await?;
    let addr = server.local_addr()?;
    let handle = server.start(RpcServer::new(node, p2p, policy).into_rpc());
    Ok((handle, addr))
}

/// Whether `node` runs the built-in dev network (whose keys are public).
pub fn is_dev_network(node: &Node) -> bool {
    cairn_genesis::Network::builtin("dev")
        .is_ok_and(|d| d.genesis_hash == node.network.genesis_hash)
}

/// The per-call policy for `node`'s network and listen address.
pub fn policy_for(node: &Node) -> Policy {
    Policy::new(
        is_dev_network(node),
        !node.config.rpc_addr.ip().is_loopback(),
        node.config.access.allow_control,
        &node.network.name,
        node.config.rpc.max_response_bytes as usize,
    )
}

/// The API implementation.
pub struct RpcServer {
    pub node: Arc<Node>,
    pub p2p: Option<P2pHandle>,
    policy: Arc<Policy>,
    openrpc: std::sync::OnceLock<serde_json::Value>,
    faucet: tokio::sync::Mutex<()>,
}

impl RpcServer {
    pub fn new(node: Arc<Node>, p2p: Option<P2pHandle>, policy: Arc<Policy>) -> RpcServer {
        RpcServer {
            node,
            p2p,
            policy,
            openrpc: std::sync::OnceLock::new(),
            faucet: tokio::sync::Mutex::new(()),
        }
    }
}

/// Default `dev_faucet` amount: 1000 coins.
pub const FAUCET_DEFAULT: u64 = 1000 * cairn_consensus::COIN;
/// Most entries `mempool_getEntries` returns.
pub const MAX_MEMPOOL_ENTRIES: u32 = 1000;

fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    error(jsonrpsee::types::error::INTERNAL_ERROR_CODE, e.to_string())
}

fn store_err(e: StoreError) -> ErrorObjectOwned {
    internal(format!("storage failure: {e}"))
}

/// Runs blocking work off the async executor.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> RpcResult<R> + Send + 'static,
) -> RpcResult<R> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

fn address_error(e: AddressError) -> ErrorObjectOwned {
    match e {
        AddressError::WrongNetwork { .. } => error(codes::WRONG_NETWORK, e.to_string()),
        _ => error(codes::INVALID_ADDRESS, e.to_string()),
    }
}

impl RpcServer {
    fn p2p(&self) -> RpcResult<&P2pHandle> {
        self.p2p
            .as_ref()
            .ok_or_else(|| error(codes::PEER_FAILED, "P2P is disabled on this node"))
    }

    fn parse_address(&self, s: &str) -> RpcResult<Address> {
        Address::decode(s, &self.node.network.params.address_prefix).map_err(address_error)
    }

    fn encode_address(&self, a: &Address) -> String {
        a.encode(&self.node.network.params.address_prefix)
    }
}

fn p2p_error(e: P2pError) -> ErrorObjectOwned {
    let code = match e {
        P2pError::InvalidAddress(_)
        | P2pError::InvalidBanTarget(_)
        | P2pError::InvalidLinkRule(_) => jsonrpsee::types::error::INVALID_PARAMS_CODE,
        _ => codes::PEER_FAILED,
    };
    error(code, e.to_string())
}

/// The API view of a transfer.
pub fn transfer_view(node: &Node, t: &SignedTransfer) -> TransferView {
    let prefix = &node.network.params.address_prefix;
    TransferView {
        txid: t.id(),
        chain_id: t.transfer.chain_id,
        from: t.sender().encode(prefix),
        from_key: t.transfer.from.to_string(),
        to: t.transfer.to.encode(prefix),
        amount: t.transfer.amount.0,
        fee: t.transfer.fee.0,
        nonce: t.transfer.nonce,
        hex: hex::encode(t.encode()),
    }
}

fn block_view(node: &Node, hash: BlockHash, block: &Block) -> Result<BlockView, StoreError> {
    let main = node.store().hash_at(block.header.height)? == Some(hash);
    let tip_height = node.tip().header.height.0;
    Ok(BlockView {
        hash,
        header: header_view(hash, &block.header),
        coinbase: CoinbaseView {
            txid: block.coinbase.id(),
            recipient: block
                .coinbase
                .recipient
                .encode(&node.network.params.address_prefix),
            amount: block.coinbase.amount.0,
        },
        transactions: block
            .transfers
            .iter()
            .map(|t| transfer_view(node, t))
            .collect(),
        size: block.encoded_len() as u64,
        in_best_chain: main,
        confirmations: if main {
            tip_height.saturating_sub(block.header.height.0) + 1
        } else {
            0
        },
    })
}

/// The hash of the best-chain block at `height`, or a NOT_FOUND naming the best height.
fn best_chain_hash(node: &Node, height: u64) -> RpcResult<BlockHash> {
    node.store()
        .hash_at(Height(height))
        .map_err(store_err)?
        .ok_or_else(|| {
            error(
                codes::NOT_FOUND,
                format!(
                    "no block at height {height}; the best height is {}",
                    node.tip().header.height
                ),
            )
        })
}

fn submit_error(e: SubmitError) -> ErrorObjectOwned {
    let msg = e.to_string();
    let code = match &e {
        SubmitError::Transfer(t) => match t {
            TransferError::WrongChainId { .. } => codes::TX_WRONG_CHAIN,
            TransferError::ZeroAmount | TransferError::AmountOverflow { .. } => {
                codes::TX_BAD_AMOUNT
            }
            TransferError::FeeBelowMinimum { .. } => codes::TX_FEE_TOO_LOW,
            TransferError::BadSignature(_) => codes::TX_BAD_SIGNATURE,
            TransferError::Decode(_) => codes::TX_MALFORMED,
        },
        SubmitError::Mempool(m) => match m {
            MempoolError::Duplicate(_) => codes::TX_DUPLICATE,
            MempoolError::NonceTooLow { .. } => codes::TX_NONCE_TOO_LOW,
            MempoolError::NonceTooHigh { .. } => codes::TX_NONCE_TOO_HIGH,
            MempoolError::InsufficientBalance { .. } => codes::TX_INSUFFICIENT_BALANCE,
            MempoolError::ReplacementUnderpriced { .. } => codes::TX_REPLACEMENT_UNDERPRICED,
            MempoolError::SenderLimit { .. } => codes::TX_SENDER_LIMIT,
            MempoolError::Full { .. } | MempoolError::WaitingFull { .. } => codes::MEMPOOL_FULL,
        },
        SubmitError::AlreadyConfirmed { .. } => codes::TX_DUPLICATE,
        SubmitError::Store(_) => jsonrpsee::types::error::INTERNAL_ERROR_CODE,
    };
    error(code, msg)
}

/// One page of confirmed history: up to `limit` records below `before`,
/// never splitting the records of one block across pages (a block's records
/// share a height, and heights are the paging cursor). Returns the records
/// and the `before_height` of the next page, if there is one.
fn history_page(
    node: &Node,
    addr: &Address,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<index::HistoryRecord>, Option<u64>), StoreError> {
    let mut records = index::history(node.store().tree(), addr, before, limit + 1)?;
    if records.len() <= limit {
        return Ok((records, None));
    }
    let cut = records[limit].height;
    if records[limit - 1].height != cut {
        records.truncate(limit);
        return Ok((records, Some(cut + 1)));
    }
    // the page would end inside block `cut`: end it before that block, or,
    // if the page holds nothing else, take the whole block
    let keep = records.iter().take_while(|r| r.height != cut).count();
    if keep > 0 {
        records.truncate(keep);
        return Ok((records, Some(cut + 1)));
    }
    let whole = index::history_at(node.store().tree(), addr, cut)?;
    Ok((whole, if cut > 0 { Some(cut) } else { None }))
}

/// Decodes a transfer from `tx_submit`'s hex, with a clear error.
pub fn decode_transfer_hex(hex_str: &str) -> RpcResult<SignedTransfer> {
    let s = hex_str.trim().trim_start_matches("0x");
    if s.len() > 2 * SIGNED_TRANSFER_BYTES {
        return Err(error(
            codes::TX_TOO_LARGE,
            format!(
                "transaction is {} hex characters; a signed transfer is exactly {}",
                s.len(),
                2 * SIGNED_TRANSFER_BYTES
            ),
        ));
    }
    let bytes = hex::decode(s).map_err(|e| {
        error(
            codes::TX_MALFORMED,
            format!("transaction is not valid hex: {e}"),
        )
    })?;
    SignedTransfer::decode(&bytes).map_err(|e| {
        error(
            codes::TX_MALFORMED,
            format!(
                "transaction does not decode ({e}); a signed transfer is {SIGNED_TRANSFER_BYTES} bytes of borsh"
            ),
        )
    })
}

#[async_trait]
impl CairnApiServer for RpcServer {
    async fn chain_get_info(&self) -> RpcResult<ChainInfo> {
        let n = &self.node;
        let tip = n.tip();
        let params = &n.network.params;
        let status = self.p2p.as_ref().map(P2pHandle::status).unwrap_or_default();
        let sync = status.sync.map(|s| cairn_api::SyncProgress {
            height: s.height,
            target_height: s.target_height,
            blocks_per_sec: s.blocks_per_sec,
            eta_secs: s.eta_secs,
        });
        Ok(ChainInfo {
            network: n.network.name.clone(),
            chain_id: params.chain_id,
            genesis_hash: n.network.genesis_hash,
            height: tip.header.height.0,
            best_hash: tip.hash,
            total_work: tip.work,
            target: tip.header.target,
            syncing: sync.is_some(),
            peers: (status.inbound + status.outbound) as u32,
            address_prefix: params.address_prefix.to_string(),
            min_fee: params.min_fee.0,
            sync,
        })
    }

    async fn chain_get_block(&self, id: BlockId) -> RpcResult<BlockView> {
        let node = self.node.clone();
        blocking(move || {
            let store = node.store();
            let hash = match id {
                BlockId::Hash(h) => h,
                BlockId::Height(h) => best_chain_hash(&node, h)?,
            };
            let block = store
                .block(&hash)
                .map_err(store_err)?
                .ok_or_else(|| error(codes::NOT_FOUND, format!("block {hash} is not known")))?;
            block_view(&node, hash, &block).map_err(store_err)
        })
        .await
    }

    async fn chain_get_block_hash(&self, height: u64) -> RpcResult<BlockHash> {
        let node = self.node.clone();
        blocking(move || best_chain_hash(&node, height)).await
    }

    async fn chain_get_transaction(&self, txid: TxId) -> RpcResult<TransactionView> {
        let node = self.node.clone();
        blocking(move || {
            if let Some(tx) = node.with_mempool(|p| p.get(&txid).map(|e| e.tx)) {
                return Ok(TransactionView {
                    transaction: Some(transfer_view(&node, &tx)),
                    status: TxStatus::Pending,
                    block_hash: None,
                    height: None,
                    confirmations: None,
                });
            }
            node.wait_for_index();
            let store = node.store();
            if let Some(loc) = index::tx_location(store.tree(), &txid).map_err(store_err)? {
                let on_main =
                    store.hash_at(Height(loc.height)).map_err(store_err)? == Some(loc.block);
                let block = store.block(&loc.block).map_err(store_err)?;
                if let (true, Some(block)) = (on_main, block) {
                    let tip = node.tip().header.height.0;
                    let transaction = (loc.position as usize)
                        .checked_sub(1)
                        .and_then(|i| block.transfers.get(i))
                        .map(|t| transfer_view(&node, t));
                    return Ok(TransactionView {
                        transaction,
                        status: TxStatus::Confirmed,
                        block_hash: Some(loc.block),
                        height: Some(loc.height),
                        confirmations: Some(tip.saturating_sub(loc.height) + 1),
                    });
                }
            }
            Ok(TransactionView {
                transaction: None,
                status: TxStatus::Unknown,
                block_hash: None,
                height: None,
                confirmations: None,
            })
        })
        .await
    }

    async fn state_get_account(&self, address: String) -> RpcResult<AccountView> {
        let addr = self.parse_address(&address)?;
        let node = self.node.clone();
        blocking(move || {
            let (account, next_nonce, pending) = node
                .with_mempool(|p| {
                    let acc = node.account(&addr)?;
                    Ok::<_, StoreError>((
                        acc,
                        p.next_nonce(&addr, acc.nonce),
                        p.pending_spend(&addr),
                    ))
                })
                .map_err(store_err)?;
            Ok(AccountView {
                address: addr.encode(&node.network.params.address_prefix),
                balance: account.balance.0,
                nonce: account.nonce,
                next_nonce,
                pending_spend: pending.0,
            })
        })
        .await
    }

    async fn state_get_history(
        &self,
        address: String,
        limit: Option<u32>,
        before_height: Option<u64>,
    ) -> RpcResult<HistoryPage> {
        let addr = self.parse_address(&address)?;
        let limit = limit.unwrap_or(50);
        if limit == 0 || limit > MAX_HISTORY {
            return Err(error(
                jsonrpsee::types::error::INVALID_PARAMS_CODE,
                format!("limit must be between 1 and {MAX_HISTORY}"),
            ));
        }
        let node = self.node.clone();
        let text = self.encode_address(&addr);
        blocking(move || {
            let prefix = &node.network.params.address_prefix;
            let mut entries = Vec::new();
            if before_height.is_none() {
                node.with_mempool(|p| {
                    for e in p.involving(&addr) {
                        let t = e.tx.transfer;
                        let direction = if e.sender == t.to {
                            Direction::SelfTransfer
                        } else if e.sender == addr {
                            Direction::Out
                        } else {
                            Direction::In
                        };
                        let counterparty = match direction {
                            Direction::Out => Some(t.to.encode(prefix)),
                            Direction::In => Some(e.sender.encode(prefix)),
                            _ => None,
                        };
                        entries.push(HistoryEntry {
                            txid: e.id,
                            direction,
                            counterparty,
                            amount: t.amount.0,
                            fee: if direction == Direction::In {
                                0
                            } else {
                                t.fee.0
                            },
                            status: TxStatus::Pending,
                            block_hash: None,
                            height: None,
                            confirmations: None,
                            time_ms: None,
                        });
                    }
                });
            }
            // after the mempool: a transfer that has left it is indexed
            node.wait_for_index();
            let tip = node.tip().header.height.0;
            let (records, next_before_height) =
                history_page(&node, &addr, before_height, limit as usize).map_err(store_err)?;
            for r in &records {
                entries.push(HistoryEntry {
                    txid: r.txid,
                    direction: match r.role {
                        Role::Sent => Direction::Out,
                        Role::Received => Direction::In,
                        Role::ToSelf => Direction::SelfTransfer,
                        Role::Mined => Direction::Mined,
                    },
                    counterparty: r.counterparty.map(|a| a.encode(prefix)),
                    amount: r.amount.0,
                    fee: r.fee.0,
                    status: TxStatus::Confirmed,
                    block_hash: Some(r.block),
                    height: Some(r.height),
                    confirmations: Some(tip.saturating_sub(r.height) + 1),
                    time_ms: Some(r.time_ms),
                });
            }
            Ok(HistoryPage {
                address: text,
                entries,
                next_before_height,
            })
        })
        .await
    }

    async fn tx_submit(&self, transfer_hex: String) -> RpcResult<TxId> {
        let tx = decode_transfer_hex(&transfer_hex).inspect_err(|e| {
            let reason = if e.code() == codes::TX_TOO_LARGE {
                "too_large"
            } else {
                "malformed"
            };
            metrics::counter!("cairn_transfers_rejected_total", "reason" => reason, "source" => "rpc")
                .increment(1);
        })?;
        let node = self.node.clone();
        blocking(move || node.submit_transfer(tx, None).map_err(submit_error)).await
    }

    async fn mempool_get_info(&self) -> RpcResult<MempoolInfo> {
        Ok(self.node.with_mempool(|p| MempoolInfo {
            count: p.len() as u64,
            bytes: p.ready_bytes() as u64,
            min_fee: p.min_fee().0,
            max_bytes: p.max_bytes() as u64,
            waiting_count: p.waiting_len() as u64,
            waiting_bytes: p.waiting_bytes() as u64,
            max_waiting_bytes: p.max_waiting_bytes() as u64,
        }))
    }

    async fn mining_generate(&self, count: u32, address: String) -> RpcResult<Vec<BlockHash>> {
        if count == 0 || count > MAX_GENERATE {
            return Err(error(
                jsonrpsee::types::error::INVALID_PARAMS_CODE,
                format!("count must be between 1 and {MAX_GENERATE}"),
            ));
        }
        let addr = self.parse_address(&address)?;
        if self.node.mining_mode() == crate::lab::MiningMode::Paused {
            return Err(error(
                codes::MINING_FAILED,
                "mining is paused (mining_setMode); set another mode first",
            ));
        }
        let node = self.node.clone();
        blocking(move || {
            node.generate(count, addr).map_err(|e| match e {
                NodeError::Store(e) => store_err(e),
                other => error(codes::MINING_FAILED, other.to_string()),
            })
        })
        .await
    }

    async fn mining_get_info(&self) -> RpcResult<MiningInfo> {
        let n = &self.node;
        let mode = n.mining_mode();
        let (interval_ms, random) = match mode {
            crate::lab::MiningMode::Interval { ms, random } => (Some(ms), random),
            _ => (None, false),
        };
        Ok(MiningInfo {
            mode: if n.is_mining() || !mode.runs() {
                mode.name().to_string()
            } else {
                "stopped".to_string()
            },
            interval_ms,
            random,
            mining: n.is_mining(),
            threads: n.miner_threads() as u32,
            hashrate: n.mining.meter.sample(),
            address: n.miner_address().map(|a| self.encode_address(&a)),
            blocks_mined: n
                .mining
                .blocks_mined
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    async fn mining_start(&self, address: Option<String>, threads: Option<u32>) -> RpcResult<()> {
        let addr = address.map(|a| self.parse_address(&a)).transpose()?;
        if let Some(t) = threads
            && (t == 0 || t > 1024)
        {
            return Err(error(
                jsonrpsee::types::error::INVALID_PARAMS_CODE,
                "threads must be between 1 and 1024",
            ));
        }
        let node = self.node.clone();
        blocking(move || {
            node.start_mining(addr, threads.map(|t| t as usize))
                .map_err(|e| error(codes::MINING_FAILED, e.to_string()))
        })
        .await
    }

    async fn mining_set_mode(
        &self,
        mode: String,
        interval_ms: Option<u64>,
        random: Option<bool>,
        threads: Option<u32>,
    ) -> RpcResult<MiningInfo> {
        let invalid = |m: String| error(jsonrpsee::types::error::INVALID_PARAMS_CODE, m);
        let mode = crate::lab::MiningMode::parse(mode.trim(), interval_ms, random.unwrap_or(false))
            .map_err(invalid)?;
        if let Some(t) = threads
            && (t == 0 || t > 1024)
        {
            return Err(invalid("threads must be between 1 and 1024".into()));
        }
        if mode.runs() && self.node.miner_address().is_none() {
            return Err(error(
                codes::MINING_FAILED,
                "no miner address: start the node with --miner-address, or call mining_start with one",
            ));
        }
        let node = self.node.clone();
        blocking(move || {
            node.set_mining_mode(mode, threads.map(|t| t as usize))
                .map_err(|e| error(codes::MINING_FAILED, e.to_string()))
        })
        .await?;
        self.mining_get_info().await
    }

    async fn lab_get_observations(&self, limit: Option<u32>) -> RpcResult<cairn_api::Observations> {
        let limit = bounded_limit(
            limit,
            crate::lab::MAX_SEEN_TRANSFERS as u32,
            crate::lab::MAX_SEEN_TRANSFERS as u32,
        )? as usize;
        let names: std::collections::HashMap<u64, String> = match &self.p2p {
            Some(p) => p
                .peers()
                .await
                .into_iter()
                .map(|v| {
                    let v = crate::status::peer_view(v);
                    (v.id, v.address)
                })
                .collect(),
            None => Default::default(),
        };
        let from = |o: crate::lab::Origin| match o {
            crate::lab::Origin::Local => "local".to_string(),
            crate::lab::Origin::Peer(id) => names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("peer#{id}")),
        };
        let lab = &self.node.lab;
        let blocks = lab
            .blocks(limit.min(crate::lab::MAX_SEEN_BLOCKS))
            .into_iter()
            .map(|s| cairn_api::SeenView {
                id: s.key.to_hex(),
                height: s.height,
                time_ms: s.time_ms,
                from: from(s.origin),
            })
            .collect();
        let transfers = lab
            .transfers(limit)
            .into_iter()
            .map(|s| cairn_api::SeenView {
                id: s.key.to_hex(),
                height: 0,
                time_ms: s.time_ms,
                from: from(s.origin),
            })
            .collect();
        let (mined_hashes, mined) = lab.mined_blocks();
        let node = self.node.clone();
        let stale_mined = blocking(move || {
            Ok(node.with_chain(|c| {
                mined_hashes
                    .into_iter()
                    .filter(|h| !c.is_main(h))
                    .collect::<Vec<_>>()
            }))
        })
        .await?;
        Ok(cairn_api::Observations {
            now_ms: crate::node::now_ms(),
            blocks,
            transfers,
            mined,
            stale_mined,
            reorgs: self.node.forks.total_reorgs(),
        })
    }

    async fn mining_stop(&self) -> RpcResult<()> {
        let node = self.node.clone();
        blocking(move || {
            node.stop_mining();
            Ok(())
        })
        .await
    }

    async fn net_get_peers(&self) -> RpcResult<Vec<PeerView>> {
        Ok(self
            .p2p()?
            .peers()
            .await
            .into_iter()
            .map(crate::status::peer_view)
            .collect())
    }

    async fn net_add_peer(&self, address: String) -> RpcResult<PeerView> {
        self.p2p()?
            .add_peer(address)
            .await
            .map(crate::status::peer_view)
            .map_err(p2p_error)
    }

    async fn net_disconnect_peer(&self, peer: PeerRef) -> RpcResult<()> {
        let sel = match peer {
            PeerRef::Id(n) => PeerSelector::Id(n),
            PeerRef::Address(a) => PeerSelector::Address(a),
        };
        self.p2p()?
            .disconnect(sel)
            .await
            .map(|_| ())
            .map_err(p2p_error)
    }

    async fn net_list_banned(&self) -> RpcResult<Vec<BanView>> {
        let bans = self.p2p()?.list_banned().await.map_err(p2p_error)?;
        Ok(bans
            .into_iter()
            .map(|b| BanView {
                target: b.target,
                created_ms: b.created_ms,
                until_ms: b.until_ms,
                reason: b.reason,
                origin: match b.origin {
                    cairn_p2p::BanOrigin::Auto => "auto".into(),
                    cairn_p2p::BanOrigin::Operator => "operator".into(),
                },
            })
            .collect())
    }

    async fn net_set_ban(&self, target: String, duration_secs: u64) -> RpcResult<()> {
        self.p2p()?
            .set_ban(target, duration_secs)
            .await
            .map_err(p2p_error)
    }

    async fn net_clear_banned(&self) -> RpcResult<u64> {
        self.p2p()?
            .clear_banned()
            .await
            .map(|n| n as u64)
            .map_err(p2p_error)
    }

    async fn net_set_link(&self, peer: String, rule: LinkView) -> RpcResult<u64> {
        let target = match peer.trim() {
            "*" => None,
            p => Some(p.parse::<SocketAddr>().map_err(|_| {
                error(
                    jsonrpsee::types::error::INVALID_PARAMS_CODE,
                    format!("{p:?} is not a peer's listen address (ip:port) or * for every peer"),
                )
            })?),
        };
        if !(0.0..=1.0).contains(&rule.loss) {
            return Err(error(
                jsonrpsee::types::error::INVALID_PARAMS_CODE,
                format!("loss {} is not a fraction between 0 and 1", rule.loss),
            ));
        }
        let rule = LinkRule {
            drop: rule.drop,
            delay_ms: rule.delay_ms,
            jitter_ms: rule.jitter_ms,
            loss_ppm: (rule.loss * 1_000_000.0).round() as u32,
            rate_bps: rule.rate_bps,
        };
        self.p2p()?
            .set_link_rule(target, rule)
            .await
            .map(|n| n as u64)
            .map_err(p2p_error)
    }

    async fn net_get_links(&self) -> RpcResult<Vec<LinkEntry>> {
        let rules = self.p2p()?.link_rules().await.map_err(p2p_error)?;
        Ok(rules
            .into_iter()
            .map(|(peer, r)| LinkEntry {
                peer: peer.map_or("*".to_string(), |p| p.to_string()),
                rule: LinkView {
                    drop: r.drop,
                    delay_ms: r.delay_ms,
                    jitter_ms: r.jitter_ms,
                    loss: f64::from(r.loss_ppm) / 1_000_000.0,
                    rate_bps: r.rate_bps,
                },
            })
            .collect())
    }

    async fn chain_get_reorgs(&self, limit: Option<u32>) -> RpcResult<Vec<cairn_api::ReorgView>> {
        let limit = bounded_limit(limit, 20, crate::forks::MAX_REORGS as u32)?;
        Ok(self
            .node
            .forks
            .reorgs(limit)
            .into_iter()
            .map(|r| cairn_api::ReorgView {
                time_ms: r.time_ms,
                depth: r.depth,
                connected: r.connected,
                fork_point: r.fork_point,
                fork_height: r.fork_height,
                old_tip: r.old_tip,
                old_height: r.old_height,
                new_tip: r.new_tip,
                new_height: r.new_height,
                disconnected_blocks: r.disconnected,
            })
            .collect())
    }

    async fn chain_get_forks(
        &self,
        limit: Option<u32>,
    ) -> RpcResult<Vec<cairn_api::SideBlockView>> {
        let limit = bounded_limit(limit, 50, crate::forks::MAX_SIDE_BLOCKS as u32)?;
        let node = self.node.clone();
        blocking(move || Ok(side_blocks(&node, limit))).await
    }

    async fn mempool_get_entries(
        &self,
        limit: Option<u32>,
    ) -> RpcResult<Vec<cairn_api::MempoolEntryView>> {
        let limit = bounded_limit(limit, 100, MAX_MEMPOOL_ENTRIES)?;
        let node = self.node.clone();
        blocking(move || Ok(mempool_entries(&node, limit))).await
    }

    async fn dev_faucet(&self, address: String, amount: Option<u64>) -> RpcResult<TxId> {
        let to = self.parse_address(&address)?;
        let amount = amount.unwrap_or(FAUCET_DEFAULT);
        if amount == 0 {
            return Err(error(
                jsonrpsee::types::error::INVALID_PARAMS_CODE,
                "amount must be above zero (base units; 1 coin = 100000000)",
            ));
        }
        // one at a time, so two calls never pick the same nonce
        let _one = self.faucet.lock().await;
        let node = self.node.clone();
        blocking(move || faucet(&node, to, amount)).await
    }

    async fn rpc_discover(&self) -> RpcResult<cairn_api::OpenRpcDocument> {
        let doc = self.openrpc.get_or_init(|| {
            cairn_api::openrpc::document(&cairn_api::method_specs(), env!("CARGO_PKG_VERSION"))
        });
        Ok(cairn_api::OpenRpcDocument(doc.clone()))
    }

    async fn rpc_methods(&self) -> RpcResult<cairn_api::RpcMethods> {
        let details: Vec<cairn_api::MethodInfo> = cairn_api::method_specs()
            .iter()
            .map(|s| {
                let check = self.policy.check(s);
                cairn_api::MethodInfo {
                    name: s.name.to_string(),
                    class: s.class.as_str().to_string(),
                    summary: s.summary(),
                    available: check.is_ok(),
                    reason: check.err().map(|e| e.message().to_string()),
                }
            })
            .collect();
        Ok(cairn_api::RpcMethods {
            version: 1,
            methods: details
                .iter()
                .filter(|d| d.available)
                .map(|d| d.name.clone())
                .collect(),
            details,
        })
    }

    async fn subscribe_new_heads(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let mut heads = self.node.subscribe_heads();
        let sink = pending.accept().await?;
        loop {
            tokio::select! {
                _ = sink.closed() => break,
                next = heads.recv() => match next {
                    Ok(h) => {
                        let msg = serde_json::value::to_raw_value(&h)?;
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                    // a slow subscriber skips headers it missed; the next one is current
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!("a head subscriber lagged by {n} headers");
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
        Ok(())
    }
}

/// `limit` or its default, refused above `max`.
fn bounded_limit(limit: Option<u32>, default: u32, max: u32) -> RpcResult<usize> {
    match limit.unwrap_or(default) {
        0 => Err(error(
            jsonrpsee::types::error::INVALID_PARAMS_CODE,
            format!("limit must be between 1 and {max}"),
        )),
        n if n > max => Err(error(
            jsonrpsee::types::error::INVALID_PARAMS_CODE,
            format!("limit must be between 1 and {max}"),
        )),
        n => Ok(n as usize),
    }
}

/// Recent side-branch blocks, newest first, with whether they are on the
/// best chain now.
pub fn side_blocks(node: &Node, limit: usize) -> Vec<cairn_api::SideBlockView> {
    let blocks = node.forks.side_blocks(limit);
    node.with_chain(|chain| {
        blocks
            .into_iter()
            .map(|b| cairn_api::SideBlockView {
                in_best_chain: chain.is_main(&b.hash),
                hash: b.hash,
                parent: b.parent,
                height: b.height,
                time_ms: b.time_ms,
                seen_ms: b.seen_ms,
                reason: b.reason.as_str().to_string(),
            })
            .collect()
    })
}

/// The mempool's entries with their state, best fee first.
pub fn mempool_entries(node: &Node, limit: usize) -> Vec<cairn_api::MempoolEntryView> {
    let prefix = &node.network.params.address_prefix;
    node.with_mempool(|p| {
        p.entries_with_state(|a| node.account(a).map(|acc| acc.nonce).unwrap_or(0), limit)
            .into_iter()
            .map(|(e, waiting)| {
                let t = &e.tx.transfer;
                cairn_api::MempoolEntryView {
                    txid: e.id,
                    from: e.sender.encode(prefix),
                    to: t.to.encode(prefix),
                    amount: t.amount.0,
                    fee: t.fee.0,
                    nonce: t.nonce,
                    size: SIGNED_TRANSFER_BYTES as u64,
                    added_ms: e.added_ms,
                    state: if waiting.is_some() {
                        "waiting"
                    } else {
                        "ready"
                    }
                    .to_string(),
                    waiting_for_nonce: waiting,
                }
            })
            .collect()
    })
}

/// Sends `amount` to `to` from the dev account with the most spendable coins.
fn faucet(node: &Node, to: Address, amount: u64) -> RpcResult<TxId> {
    use cairn_consensus::{Amount, Transfer, transfer::public_key};
    let fee = node.with_mempool(|p| p.min_fee());
    let cost = amount
        .checked_add(fee.0)
        .ok_or_else(|| error(codes::TX_BAD_AMOUNT, "amount plus fee overflows"))?;
    let mut best: Option<(u64, u64, cairn_genesis::DevAccount)> = None;
    for a in cairn_genesis::dev_accounts() {
        if a.address == to {
            continue;
        }
        let (available, nonce) = node
            .with_mempool(|p| {
                let acc = node.account(&a.address)?;
                let pending = p.pending_spend(&a.address);
                Ok::<_, StoreError>((
                    acc.balance.0.saturating_sub(pending.0),
                    p.next_nonce(&a.address, acc.nonce),
                ))
            })
            .map_err(store_err)?;
        if best.as_ref().is_none_or(|(b, _, _)| available > *b) {
            best = Some((available, nonce, a));
        }
    }
    let Some((available, nonce, account)) = best else {
        return Err(error(
            codes::TX_INSUFFICIENT_BALANCE,
            "no dev account to pay from",
        ));
    };
    if available < cost {
        return Err(error(
            codes::TX_INSUFFICIENT_BALANCE,
            format!(
                "the richest dev account has {available} base units available; ask for less than {}",
                available.saturating_sub(fee.0)
            ),
        ));
    }
    let tx = Transfer {
        chain_id: node.network.params.chain_id,
        from: public_key(&account.key),
        to,
        amount: Amount(amount),
        fee,
        nonce,
    }
    .sign(&account.key);
    node.submit_transfer(tx, None).map_err(submit_error)
}
