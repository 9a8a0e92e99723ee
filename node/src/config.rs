//! Node configuration: one serde struct per subsystem, aggregated in
//! [`NodeConfig`]. The binary fills it from (in order of precedence)
//! command-line flags, `CAIRN_*` environment variables, a TOML file
//! (`--config`), and the defaults here.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mempool::MempoolConfig;
use cairn_p2p::P2pConfig;

/// Default ports per network: RPC, then P2P.
pub fn default_ports(network: &str) -> (u16, u16) {
    match network {
        "dev" => (7540, 7541),
        "testnet" => (7640, 7641),
        _ => (7740, 7741),
    }
}

/// JSON-RPC server limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Largest request body, bytes.
    pub max_request_bytes: u32,
    /// Largest response body, bytes.
    pub max_response_bytes: u32,
    /// Simultaneous connections (HTTP and WebSocket).
    pub max_connections: u32,
    /// Calls in one batch request.
    pub max_batch: u32,
    /// Subscriptions per WebSocket connection.
    pub max_subscriptions: u32,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            max_request_bytes: 2 << 20,
            max_response_bytes: 32 << 20,
            max_connections: 256,
            max_batch: 200,
            max_subscriptions: 16,
        }
    }
}

/// Who may use the RPC port, and how (from the `--rpc-*` flags).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcAccess {
    /// `--rpc-user` / `--rpc-password`: a fixed login instead of the cookie.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `--rpc-auth USER:SALT$HASH` entries (hashed passwords, see `cairn-node rpcauth`).
    pub auth: Vec<String>,
    /// Host names accepted in the `Host` header besides localhost and IP
    /// addresses (`*` accepts any).
    pub allow_hosts: Vec<String>,
    /// Browser origins allowed to call (`*` allows any).
    pub cors: Vec<String>,
    /// Allow control and dev methods when the RPC listens on a public address.
    pub allow_control: bool,
    /// Serve the block explorer at `GET /`.
    pub explorer: bool,
}

impl Default for RpcAccess {
    fn default() -> Self {
        RpcAccess {
            user: None,
            password: None,
            auth: Vec::new(),
            allow_hosts: Vec::new(),
            cors: Vec::new(),
            allow_control: false,
            explorer: true,
        }
    }
}

impl std::fmt::Debug for RpcAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcAccess")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("auth", &self.auth.len())
            .field("allow_hosts", &self.allow_hosts)
            .field("cors", &self.cors)
            .field("allow_control", &self.allow_control)
            .field("explorer", &self.explorer)
            .finish()
    }
}

/// Mining settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiningConfig {
    /// Mine from start-up.
    pub enabled: bool,
    /// Address paid by mined blocks (dev default: the first dev account).
    pub address: Option<String>,
    /// Miner threads; 0 means one per core.
    pub threads: usize,
    /// On a network with a pinned target, one block every this many ms.
    pub block_time_ms: u64,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            enabled: false,
            address: None,
            threads: 0,
            block_time_ms: 2000,
        }
    }
}

/// Storage settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// sled's page cache, bytes.
    pub cache_bytes: u64,
    /// Fold the in-memory account changes into the account table at least
    /// every this many blocks (a state checkpoint; start-up replays the
    /// blocks since the last one).
    pub checkpoint_blocks: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache_bytes: 256 << 20,
            checkpoint_blocks: crate::store::MAX_BLOCKS_PER_CHECKPOINT,
        }
    }
}

/// Everything a node needs besides its network.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub datadir: PathBuf,
    pub rpc_addr: SocketAddr,
    pub p2p_addr: SocketAddr,
    /// `host:port` or `NODEID@host:port` of peers to connect to at start-up.
    #[serde(default)]
    pub peers: Vec<String>,
    /// A file of node ids: only those nodes may connect, either way.
    #[serde(default)]
    pub allow_peers: Option<PathBuf>,
    /// Rebuild the state and indexes from the stored blocks at start-up.
    #[serde(default)]
    pub reindex: bool,
    #[serde(default)]
    pub rpc: RpcConfig,
    #[serde(default)]
    pub access: RpcAccess,
    #[serde(default)]
    pub mining: MiningConfig,
    #[serde(default)]
    pub mempool: MempoolConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub p2p: P2pConfig,
}

impl NodeConfig {
    /// Defaults for `network` with its data in `datadir`, listening on
    /// loopback at the network's default ports.
    pub fn new(network: &str, datadir: PathBuf) -> NodeConfig {
        let (rpc, p2p) = default_ports(network);
        NodeConfig {
            datadir,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], rpc)),
            p2p_addr: SocketAddr::from(([127, 0, 0, 1], p2p)),
            peers: Vec::new(),
            allow_peers: None,
            reindex: false,
            rpc: RpcConfig::default(),
            access: RpcAccess::default(),
            mining: MiningConfig::default(),
            mempool: MempoolConfig::default(),
            storage: StorageConfig::default(),
            p2p: P2pConfig::default(),
        }
    }

    /// A config for tests: loopback, ports chosen by the OS.
    pub fn ephemeral(datadir: PathBuf) -> NodeConfig {
        let mut c = NodeConfig::new("test", datadir);
        c.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c.p2p_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c
    }
}
