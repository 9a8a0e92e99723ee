//! Starting and stopping a whole node: store, chain, RPC server, miner and
//! maintenance tasks. Used by the binary and by in-process tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_genesis::Network;
use jsonrpsee::server::ServerHandle;
use tokio::sync::watch;

use crate::chain::OpenReport;
use crate::config::NodeConfig;
use crate::node::Node;

/// A started node.
pub struct Running {
    pub node: Arc<Node>,
    /// Where the JSON-RPC server listens (HTTP and WebSocket).
    pub rpc_addr: SocketAddr,
    /// The P2P layer, unless disabled.
    pub p2p: Option<cairn_p2p::P2pHandle>,
    pub report: OpenReport,
    /// The RPC cookie written to `<datadir>/.cookie` (absent when
    /// `--rpc-password` replaces it).
    pub cookie: Option<cairn_api::auth::Credentials>,
    rpc: ServerHandle,
    stop_tasks: watch::Sender<bool>,
}

impl Running {
    /// `http://host:port` of the RPC server.
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// This node's id, if P2P runs.
    pub fn node_id(&self) -> Option<cairn_p2p::NodeId> {
        self.p2p.as_ref().map(|p| p.node_id)
    }

    /// Where the node accepts peers, if P2P runs.
    pub fn p2p_addr(&self) -> Option<SocketAddr> {
        self.p2p.as_ref().map(|p| p.local_addr)
    }

    /// `ws://host:port` of the RPC server.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.rpc_addr)
    }

    /// Credentials for this node's RPC: the configured login, else the cookie.
    pub fn credentials(&self) -> Option<cairn_api::auth::Credentials> {
        let access = &self.node.config.access;
        match (&access.user, &access.password) {
            (Some(user), Some(password)) => Some(cairn_api::auth::Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            _ => self.cookie.clone(),
        }
    }

    /// An HTTP JSON-RPC client of this node, with its credentials.
    pub fn client(&self) -> jsonrpsee_http_client::HttpClient {
        crate::client::http_client(
            &self.rpc_url(),
            self.credentials().as_ref(),
            Duration::from_secs(120),
        )
        .expect("a client for a socket address builds")
    }

    /// Stops mining and the RPC server, then flushes the store.
    pub async fn stop(self) {
        let _ = self.stop_tasks.send(true);
        let _ = self.rpc.stop();
        self.rpc.stopped().await;
        let node = self.node.clone();
        let _ = tokio::task::spawn_blocking(move || node.shutdown()).await;
        if self.cookie.is_some() {
            crate::auth::remove_cookie(&self.node.config.datadir);
        }
    }
}

/// Opens the node, starts its RPC server, and starts mining if configured.
pub async fn launch(network: Network, config: NodeConfig) -> anyhow::Result<Running> {
    let datadir = config.datadir.clone();
    let (node, report) = tokio::task::spawn_blocking(move || Node::open(network, config))
        .await?
        .with_context(|| format!("cannot open the node in {}", datadir.display()))?;
    // the cookie is new on every start; a --rpc-password replaces it
    let cookie = if node.config.access.password.is_none() {
        Some(crate::auth::write_cookie(&node.config.datadir)?)
    } else {
        None
    };
    // a start that fails from here on leaves no cookie of a node that is not running
    let mut cookie_guard = CookieGuard(cookie.as_ref().map(|_| node.config.datadir.clone()));
    let auth = crate::auth::Authenticator::new(&node.config.access, cookie.clone())?;
    let (stop_tasks, stopped) = watch::channel(false);
    let p2p = if node.config.p2p.enabled {
        let n = node.clone();
        let store = tokio::task::spawn_blocking(move || crate::network::SledPeerStore::open(&n))
            .await?
            .context("cannot open the peer store")?;
        let identity = cairn_p2p::Identity {
            key: crate::network::load_or_create_node_key(&node.config.datadir)?,
            allowed: match &node.config.allow_peers {
                Some(path) => Some(crate::network::read_allow_list(path)?),
                None => None,
            },
        };
        let handle = cairn_p2p::start(
            Arc::new(crate::network::NodeBackend(node.clone())),
            Arc::new(store),
            node.config.p2p_addr,
            node.config.peers.clone(),
            identity,
            node.config.p2p.clone(),
            stopped.clone(),
        )
        .await
        .map_err(|e| match e {
            cairn_p2p::P2pError::Listen { addr, error } => anyhow::anyhow!(
                "cannot listen for peers on {addr}: {error} (is the port in use? choose another with --p2p-addr)"
            ),
            other => anyhow::anyhow!("cannot start P2P: {other}"),
        })?;
        Some(handle)
    } else {
        None
    };
    let (rpc, rpc_addr) = crate::rpc::start(node.clone(), p2p.clone(), auth).await.with_context(|| {
        format!(
            "cannot start the JSON-RPC server on {} (is the port in use? choose another with --rpc-addr)",
            node.config.rpc_addr
        )
    })?;
    spawn_maintenance(node.clone(), stopped);
    if node.config.mining.enabled {
        let n = node.clone();
        tokio::task::spawn_blocking(move || n.start_mining(None, None))
            .await?
            .context("cannot start mining")?;
    }
    cookie_guard.0 = None;
    Ok(Running {
        node,
        rpc_addr,
        p2p,
        report,
        cookie,
        rpc,
        stop_tasks,
    })
}

/// Removes the cookie when dropped (a failed start); disarmed on success.
struct CookieGuard(Option<std::path::PathBuf>);

impl Drop for CookieGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            crate::auth::remove_cookie(dir);
        }
    }
}

/// Mempool expiry every minute; a hashrate sample every second, logged
/// every 30 s while mining.
fn spawn_maintenance(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut expiry = tokio::time::interval(Duration::from_secs(60));
        let mut rate = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = expiry.tick() => {
                    let n = node.clone();
                    if let Ok(dropped) = tokio::task::spawn_blocking(move || n.expire_mempool()).await
                        && dropped > 0
                    {
                        tracing::info!("{dropped} expired transfers left the mempool");
                    }
                }
                _ = rate.tick() => {
                    let hashrate = node.mining.meter.sample();
                    ticks += 1;
                    if ticks.is_multiple_of(30) && node.is_mining() && hashrate > 0 {
                        tracing::info!(
                            "mining on {} threads at {} (tip height {})",
                            node.miner_threads(),
                            format_rate(hashrate),
                            node.tip().header.height
                        );
                    }
                }
            }
        }
    });
}

/// `12.3 MH/s` style.
pub fn format_rate(per_sec: u64) -> String {
    let r = per_sec as f64;
    if r >= 1e9 {
        format!("{:.2} GH/s", r / 1e9)
    } else if r >= 1e6 {
        format!("{:.2} MH/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} kH/s", r / 1e3)
    } else {
        format!("{per_sec} H/s")
    }
}
