//! `cairn-node`: run a Cairn node.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::{
    MiningConfig, NodeConfig, RpcAccess, RpcConfig, StorageConfig, default_ports,
};
use cairn_node::mempool::MempoolConfig;
use cairn_node::service;
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

mod rpc_cli;
mod testnet;

#[derive(Parser)]
#[command(
    name = "cairn-node",
    version,
    about = "A Cairn proof-of-work node: validates and stores the chain, mines, and serves JSON-RPC.",
    long_about = "A Cairn proof-of-work node: validates and stores the chain, mines on all cores, \
                  and serves JSON-RPC (HTTP and WebSocket) for wallets and scripts.\n\n\
                  Quick start: `cairn-node run --network dev --mine` starts a dev chain that mines a \
                  block every 2 seconds, with ten prefunded accounts printed at start-up."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Run(Box<RunArgs>),
    /// A private testnet for experiments: up, down, status, partition, heal, link,
    /// mine, reorg, kill, start (see `cairn-node testnet --help`).
    Testnet(testnet::TestnetArgs),
    /// Call a JSON-RPC method of a running node and print the result as JSON.
    Rpc(rpc_cli::RpcArgs),
    /// Make a hashed login for --rpc-auth (the password is printed once, not stored).
    Rpcauth(rpc_cli::RpcauthArgs),
}

/// `cairn-node run`'s settings. The same struct is the command line and
/// the config file (`--config FILE`, TOML): every key of the file is a long
/// flag's name (`mine = true`, `block-time = "2s"`, `peer = ["HOST:PORT"]`),
/// so the two cannot drift apart. Subsystem tuning lives in sections of
/// the file only: `[rpc]`, `[mempool]`, `[storage]`, `[p2p]`.
#[derive(Args, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[command(after_long_help = CONFIG_HELP)]
struct RunArgs {
    /// Read settings from this TOML file (flags and CAIRN_* variables win).
    /// Keys are the long flag names; see cairn.example.toml.
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Built-in network to join: dev (pinned target, prefunded accounts, blocks on
    /// demand) or testnet (10 s blocks with real retargeting). Default: dev.
    #[arg(
        long,
        env = "CAIRN_NETWORK",
        value_name = "NAME",
        conflicts_with = "genesis"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<String>,

    /// Run the network defined by this genesis spec (TOML) instead of a built-in one.
    #[arg(long, env = "CAIRN_GENESIS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    genesis: Option<PathBuf>,

    /// Where the chain (and the RPC cookie, .cookie) is stored.
    /// Default: <user data dir>/cairn/<network>.
    #[arg(long, env = "CAIRN_DATADIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    datadir: Option<PathBuf>,

    /// JSON-RPC listen address (HTTP and WebSocket, also /metrics, /health and
    /// the explorer). Default: 127.0.0.1:7540 on dev, 127.0.0.1:7640 on testnet,
    /// 127.0.0.1:7740 otherwise.
    #[arg(long, env = "CAIRN_RPC_ADDR", value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc_addr: Option<SocketAddr>,

    /// P2P listen address. Default: the RPC port plus one (also when only
    /// --rpc-addr is given), on 127.0.0.1 for dev and on every interface
    /// (0.0.0.0) for other networks.
    #[arg(long, env = "CAIRN_P2P_ADDR", value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    p2p_addr: Option<SocketAddr>,

    /// Connect to this peer at start-up (repeatable). NODEID@HOST:PORT also
    /// requires that the peer proves it is that node (its id is in its
    /// start-up banner and in net_getPeers).
    #[arg(
        long = "peer",
        env = "CAIRN_PEERS",
        value_name = "[NODEID@]HOST:PORT",
        value_delimiter = ','
    )]
    #[serde(rename = "peer", default, skip_serializing_if = "Vec::is_empty")]
    peers: Vec<String>,

    /// Only nodes whose ids this file lists (64 hex digits per line, `#`
    /// comments) may connect, inbound or outbound: a private network.
    #[arg(long, env = "CAIRN_ALLOW_PEERS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_peers: Option<PathBuf>,

    /// Mine. On a network with a pinned target (dev) one block every --block-time;
    /// elsewhere continuously.
    #[arg(long, env = "CAIRN_MINE")]
    #[serde(default, skip_serializing_if = "is_false")]
    mine: bool,

    /// Address paid by mined blocks. Default on dev: the first dev account.
    #[arg(long, env = "CAIRN_MINER_ADDRESS", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    miner_address: Option<String>,

    /// Miner threads. Default: one per core.
    #[arg(long, env = "CAIRN_THREADS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,

    /// Interval between mined blocks on a pinned-target network, e.g. 2s or 500ms.
    #[arg(long, env = "CAIRN_BLOCK_TIME", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    block_time: Option<DurationMs>,

    /// Rebuild the account state and indexes from the stored blocks before starting.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    reindex: bool,

    /// Peers in this range (an IP or a subnet such as 10.0.0.0/8; repeatable) are
    /// your own: disconnected if they misbehave but never banned, and not limited
    /// per address. Peers given with --peer or net_addPeer, and loopback peers on
    /// dev networks, are treated so already.
    #[arg(
        long,
        env = "CAIRN_WHITELIST",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = parse_net
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    whitelist: Vec<String>,

    /// Write the log to this file (appended) instead of the terminal. The
    /// level comes from RUST_LOG, e.g. RUST_LOG=info,cairn_node=debug.
    #[arg(long, env = "CAIRN_LOG_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_file: Option<PathBuf>,

    /// Once listening, write a JSON file here describing the running node
    /// (`rpc_url`, `ws_url`, `p2p_addr`, `datadir`, `network`,
    /// `genesis_hash`, `height`, `pid`), for scripts and tests that start
    /// it with port 0. Replaced atomically; removed at a clean shutdown.
    #[arg(long, env = "CAIRN_READY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ready_file: Option<PathBuf>,

    /// Log in to JSON-RPC with this user instead of the cookie (needs --rpc-password).
    #[arg(
        long,
        env = "CAIRN_RPC_USER",
        value_name = "USER",
        requires = "rpc_password"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc_user: Option<String>,

    /// The password of --rpc-user. No cookie is written when it is set.
    #[arg(
        long,
        env = "CAIRN_RPC_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "rpc_user"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc_password: Option<String>,

    /// A hashed login USER:SALT$HASH (repeatable), as `cairn-node rpcauth USER`
    /// prints: the config file then holds no password.
    #[arg(
        long,
        env = "CAIRN_RPC_AUTH",
        value_name = "USER:SALT$HASH",
        value_delimiter = ','
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rpc_auth: Vec<String>,

    /// Also serve requests whose Host header is this name (repeatable; `*` for
    /// any). IP addresses and localhost are always served.
    #[arg(
        long,
        env = "CAIRN_RPC_ALLOW_HOST",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rpc_allow_host: Vec<String>,

    /// Let web pages from this origin call the RPC, e.g. https://wallet.example
    /// (repeatable; `*` for any). Other pages are refused.
    #[arg(
        long,
        env = "CAIRN_RPC_CORS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rpc_cors: Vec<String>,

    /// Allow methods that change the node (mining, peers, dev tools) when
    /// --rpc-addr is not a loopback address. Without it they are refused there.
    #[arg(long, env = "CAIRN_RPC_ALLOW_CONTROL")]
    #[serde(default, skip_serializing_if = "is_false")]
    rpc_allow_control: bool,

    /// Do not serve the block explorer at GET / on the RPC address.
    #[arg(long, env = "CAIRN_NO_EXPLORER")]
    #[serde(default, skip_serializing_if = "is_false")]
    no_explorer: bool,

    /// `[rpc]` section: server limits.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc: Option<RpcConfig>,
    /// `[mempool]` section.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    mempool: Option<MempoolConfig>,
    /// `[storage]` section.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<StorageConfig>,
    /// `[p2p]` section.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    p2p: Option<cairn_node::p2p::P2pConfig>,
}

/// Checks a `--whitelist` entry (the text is kept for the config file).
fn parse_net(s: &str) -> Result<String, String> {
    cairn_node::p2p::bans::parse_net(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

const CONFIG_HELP: &str = "\
Config file (--config FILE, TOML): every key is a long flag name without the dashes,
so the file and the command line say the same things:

    network = \"dev\"
    datadir = \"/var/lib/cairn\"
    rpc-addr = \"127.0.0.1:7540\"
    mine = true
    block-time = \"2s\"
    peer = [\"10.0.0.2:7641\"]
    rpc-auth = [\"ops:5f0c...$9a1b...\"]

Tuning sections: [rpc] (max_request_bytes, max_response_bytes, max_connections,
max_batch, max_subscriptions), [mempool] (max_bytes, max_per_sender, max_nonce_gap,
expiry_ms, replace_bump_percent), [storage] (cache_bytes, checkpoint_blocks), [p2p]. A commented example
is cairn.example.toml in the source tree. Precedence: flags, then CAIRN_* variables,
then the file, then defaults. An unknown key is an error.

Logging: RUST_LOG sets the level per module, e.g. RUST_LOG=info,cairn_node=debug
(sled and jsonrpsee stay quiet unless named); --log-file FILE writes the log there.";

fn is_false(b: &bool) -> bool {
    !*b
}

/// A duration in milliseconds that reads and writes as `2s`, `500ms`, `1m`
/// (a bare number is seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DurationMs(u64);

impl std::str::FromStr for DurationMs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration_ms(s).map(DurationMs)
    }
}

impl Serialize for DurationMs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0))
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        let text = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration like \"2s\", \"500ms\" or \"1m\"")
        })? {
            Raw::Text(t) => t,
            Raw::Seconds(n) => n.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Lays `args` over the file's settings: each key given on the command line
/// (or by a CAIRN_* variable) replaces the file's.
fn merge_with_file(
    args: RunArgs,
    file_text: &str,
    path: &std::path::Path,
) -> anyhow::Result<RunArgs> {
    let config = args.config.clone();
    let mut file: toml::Table = toml::from_str(file_text)
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    // check the file on its own first, so its errors name the file
    RunArgs::deserialize(toml::Value::Table(file.clone()))
        .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))?;
    let given = toml::Table::try_from(&args).context("cannot merge the flags")?;
    for (k, v) in given {
        file.insert(k, v);
    }
    let mut merged = RunArgs::deserialize(toml::Value::Table(file))
        .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))?;
    merged.config = config;
    Ok(merged)
}

/// `2s`, `500ms`, `1m`, or a number of seconds.
fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 2s, 500ms or 1m"))?;
    match n.checked_mul(mult) {
        Some(0) => Err("the duration must be above zero".into()),
        Some(ms) => Ok(ms),
        None => Err(format!("{s:?} is too long")),
    }
}

fn load_network(name: Option<&str>, genesis: Option<&PathBuf>) -> anyhow::Result<Network> {
    match (name, genesis) {
        (_, Some(path)) => Network::from_file(path).map_err(anyhow::Error::from),
        (Some(n), None) => Network::builtin(n).map_err(anyhow::Error::from),
        (None, None) => Network::builtin("dev").map_err(anyhow::Error::from),
    }
}

fn default_datadir(network: &str) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cairn")
        .join(network)
}

/// What `cairn-node run` needs besides the node's configuration.
struct RunExtras {
    log_file: Option<PathBuf>,
    ready_file: Option<PathBuf>,
}

fn build_config(args: RunArgs) -> anyhow::Result<(Network, NodeConfig, RunExtras)> {
    let args = match args.config.clone() {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            merge_with_file(args, &text, &path)?
        }
        None => args,
    };
    let network = load_network(args.network.as_deref(), args.genesis.as_ref())?;
    let datadir = args
        .datadir
        .clone()
        .unwrap_or_else(|| default_datadir(&network.name));
    let mut config = NodeConfig::new(&network.name, datadir);
    if let Some(a) = args.rpc_addr {
        config.rpc_addr = a;
    }
    config.p2p_addr = match args.p2p_addr {
        Some(a) => a,
        None => {
            let ip: std::net::IpAddr = if network.name == "dev" {
                [127, 0, 0, 1].into()
            } else {
                [0, 0, 0, 0].into()
            };
            // --rpc-addr alone moves the P2P port along: RPC port + 1 (0 stays 0)
            let port = match args.rpc_addr {
                Some(rpc) if rpc.port() == 0 => 0,
                Some(rpc) => rpc.port().checked_add(1).with_context(|| {
                    format!(
                        "--rpc-addr port {} leaves no room for the P2P port after it; give --p2p-addr",
                        rpc.port()
                    )
                })?,
                None => default_ports(&network.name).1,
            };
            SocketAddr::new(ip, port)
        }
    };
    config.peers = args.peers.clone();
    for p in &config.peers {
        let addr = match p.split_once('@') {
            Some((id, addr)) => {
                id.parse::<cairn_node::p2p::NodeId>()
                    .map_err(|e| anyhow::anyhow!("--peer {p}: {e}"))?;
                addr
            }
            None => p,
        };
        cairn_genesis::check_host_port(addr).map_err(|e| anyhow::anyhow!("--peer: {e}"))?;
    }
    if let Some(path) = &args.allow_peers {
        cairn_node::network::read_allow_list(path)
            .map_err(|e| anyhow::anyhow!("--allow-peers: {e:#}"))?;
        config.allow_peers = Some(path.clone());
    }
    config.reindex = args.reindex;
    config.rpc = args.rpc.clone().unwrap_or_default();
    config.mempool = args.mempool.clone().unwrap_or_default();
    config.storage = args.storage.clone().unwrap_or_default();
    config.p2p = args.p2p.clone().unwrap_or_default();
    for w in &args.whitelist {
        let net =
            cairn_node::p2p::bans::parse_net(w).map_err(|e| anyhow::anyhow!("--whitelist: {e}"))?;
        config.p2p.whitelist.push(net);
    }
    config.mining = MiningConfig {
        enabled: args.mine,
        address: args.miner_address.clone(),
        ..MiningConfig::default()
    };
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        config.mining.threads = t;
    }
    if let Some(DurationMs(ms)) = args.block_time {
        config.mining.block_time_ms = ms;
    }
    config.access = RpcAccess {
        user: args.rpc_user.clone(),
        password: args.rpc_password.clone(),
        auth: args.rpc_auth.clone(),
        allow_hosts: args.rpc_allow_host.clone(),
        cors: args.rpc_cors.clone(),
        allow_control: args.rpc_allow_control,
        explorer: !args.no_explorer,
    };
    // refuse a bad login before anything starts
    cairn_node::auth::Authenticator::new(&config.access, None)?;
    if config.mining.address.is_none()
        && network.name == "dev"
        && network.genesis_hash == Network::builtin("dev")?.genesis_hash
    {
        config.mining.address = dev_accounts()
            .first()
            .map(|a| a.address.encode(&network.params.address_prefix));
    }
    if config.mining.enabled && config.mining.address.is_none() {
        bail!(
            "--mine needs --miner-address ADDR on this network (create one with `cairn-wallet new`)"
        );
    }
    let extras = RunExtras {
        log_file: args.log_file.clone(),
        ready_file: args.ready_file.clone(),
    };
    Ok((network, config, extras))
}

fn print_banner(network: &Network, running: &service::Running) {
    let node = &running.node;
    let prefix = &network.params.address_prefix;
    let tip = node.tip();
    println!("Cairn node {}", env!("CARGO_PKG_VERSION"));
    println!(
        "  network   {} (chain id {})",
        network.name, network.params.chain_id
    );
    println!("  genesis   {}", network.genesis_hash);
    println!("  datadir   {}", node.config.datadir.display());
    println!("  JSON-RPC  {} (HTTP and WebSocket)", running.rpc_url());
    let access = &node.config.access;
    match (&access.user, &running.cookie) {
        (Some(user), _) => println!("  auth      login {user} (--rpc-user), no cookie"),
        (None, Some(_)) => println!(
            "  auth      cookie {} (cairn-wallet and `cairn-node rpc` read it)",
            cairn_api::auth::cookie_path(&node.config.datadir).display()
        ),
        (None, None) => {}
    }
    println!(
        "  metrics   {}/metrics  (health: {}/health)",
        running.rpc_url(),
        running.rpc_url()
    );
    if access.explorer {
        println!("  explorer  {}/", running.rpc_url());
    }
    if !running.rpc_addr.ip().is_loopback() {
        println!(
            "  WARNING   JSON-RPC listens on {}: anyone who can reach it can read the chain and the explorer; calls need the cookie or a login{}",
            running.rpc_addr.ip(),
            if access.allow_control {
                ", and with them control methods (mining, peers) are allowed (--rpc-allow-control)"
            } else {
                "; control methods (mining, peers) are refused there unless --rpc-allow-control"
            }
        );
    }
    match running.p2p_addr() {
        Some(a) => println!("  P2P       {a} (encrypted)"),
        None => println!("  P2P       disabled"),
    }
    if let Some(id) = running.node_id() {
        println!("  node id   {id}");
    }
    if node.config.mining.enabled {
        let to = node
            .miner_address()
            .map(|a| a.encode(prefix))
            .unwrap_or_default();
        match network.params.retarget {
            cairn_consensus::Retarget::Pinned => println!(
                "  mining    one block every {} to {to}",
                format_ms(node.config.mining.block_time_ms)
            ),
            cairn_consensus::Retarget::Asert { .. } => println!(
                "  mining    continuously on {} threads to {to}",
                node.miner_threads()
            ),
        }
    }
    println!("  tip       height {} ({})", tip.header.height, tip.hash);
    if let Some(notice) = &running.report.notice {
        println!("  WARNING   {notice}");
    }
    if let Some(reason) = &running.report.rebuilt {
        println!(
            "  state     rebuilt from {} stored blocks: {reason}",
            running.report.blocks_replayed
        );
    }
    if network.genesis_hash
        == Network::builtin("dev")
            .map(|n| n.genesis_hash)
            .unwrap_or_default()
    {
        println!();
        println!(
            "Dev accounts (keys from a published seed: anyone can spend them, never use them for value):"
        );
        for a in dev_accounts() {
            println!(
                "  ({}) {}  secret {}",
                a.index,
                a.address.encode(prefix),
                a.secret_hex()
            );
        }
        println!(
            "Import one with: cairn-wallet import --secret-file FILE (the secret above, in a file)"
        );
    }
    println!();
}

fn format_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// A progress bar on the terminal while the node syncs with its peers:
/// blocks fetched toward the best validated header chain.
fn spawn_sync_bar(p2p: cairn_node::p2p::P2pHandle) {
    tokio::spawn(async move {
        let mut bar: Option<indicatif::ProgressBar> = None;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            match p2p.status().sync {
                Some(p) => {
                    let b = bar.get_or_insert_with(|| {
                        let b = indicatif::ProgressBar::new(p.target_height);
                        b.set_style(
                            indicatif::ProgressStyle::with_template(
                                "syncing {bar:40} {pos}/{len} blocks  {msg}",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                        b
                    });
                    b.set_length(p.target_height);
                    b.set_position(p.height);
                    b.set_message(match p.eta_secs {
                        Some(eta) => format!("{} blocks/s, about {eta} s left", p.blocks_per_sec),
                        None => format!("{} blocks/s", p.blocks_per_sec),
                    });
                }
                None => {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                }
            }
        }
    });
}

/// SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent as soon as
/// the node says it is ready (banner, `--ready-file`) stops it cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            match (int, term) {
                (Some(mut int), Some(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {},
                        _ = term.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The `--ready-file` JSON: how scripts and tests find a node started
/// with port 0 without parsing the banner.
fn ready_json(network: &Network, running: &service::Running) -> serde_json::Value {
    let tip = running.node.tip();
    serde_json::json!({
        "rpc_url": running.rpc_url(),
        "ws_url": running.ws_url(),
        "p2p_addr": running.p2p_addr().map(|a| a.to_string()),
        "node_id": running.node_id().map(|id| id.to_string()),
        "datadir": running.node.config.datadir,
        "network": network.name,
        "genesis_hash": network.genesis_hash.to_string(),
        "height": tip.header.height.0,
        "best_hash": tip.hash.to_string(),
        "notice": running.report.notice,
        "pid": std::process::id(),
    })
}

/// Writes `value` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
fn write_ready_file(path: &std::path::Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{value}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the ready file {}", path.display()))
}

async fn run(
    network: Network,
    config: NodeConfig,
    ready_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = &ready_file {
        // a file left by an earlier run must not pass for this one
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot remove the old ready file {}: {e}", path.display()),
        }
    }
    let running = service::launch(network.clone(), config).await?;
    let stop = shutdown_signal();
    print_banner(&network, &running);
    if let Some(path) = &ready_file {
        write_ready_file(path, &ready_json(&network, &running))?;
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr())
        && let Some(p2p) = running.p2p.clone()
    {
        spawn_sync_bar(p2p);
    }
    tracing::info!("node started; press Ctrl-C to stop");
    stop.await;
    tracing::info!("shutting down: stopping the miner and the RPC server, flushing the store");
    running.stop().await;
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The default log filter: our own info lines, libraries only when they warn.
const DEFAULT_LOG: &str = "info,jsonrpsee=warn,sled=warn";

/// Sets up logging from RUST_LOG (refusing an invalid filter) to the
/// terminal or to `file`.
fn init_logging(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&text)
            .map_err(|e| {
                anyhow::anyhow!(
                    "RUST_LOG={text:?} is not a valid log filter ({e}); \
                     write it like RUST_LOG=info,cairn_node=debug or RUST_LOG=warn"
                )
            })?,
        _ => tracing_subscriber::EnvFilter::new(DEFAULT_LOG),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            builder
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false)
                .init();
        }
        None => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
}

fn main() {
    let cli = rpc_cli::parse_cli();
    let result = match cli.command {
        Command::Run(args) => build_config(*args).and_then(|(network, config, extras)| {
            init_logging(extras.log_file.as_deref())?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(run(network, config, extras.ready_file))
        }),
        Command::Testnet(t) => init_logging(None).and_then(|()| testnet::run(t)),
        Command::Rpc(args) => rpc_cli::run(args),
        Command::Rpcauth(args) => rpc_cli::rpcauth(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("3"), Ok(3000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("fast").is_err());
    }

    /// Every key in the example config file, uncommented, is a real
    /// setting, and the active ones load.
    #[test]
    fn the_example_config_file_is_true() {
        let text = include_str!("../../cairn.example.toml");
        let parsed: toml::Table = toml::from_str(text).unwrap();
        RunArgs::deserialize(toml::Value::Table(parsed)).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(k, _)| !k.contains(' ') && !k.is_empty()) =>
                {
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let all: toml::Table =
            toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert!(all.contains_key("rpc-allow-control") && all.contains_key("mempool"));
        RunArgs::deserialize(toml::Value::Table(all)).unwrap();
    }

    #[test]
    fn flags_and_file_keys_are_the_same_names() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let flags: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long().map(String::from))
            .filter(|l| l != "config" && l != "help")
            .collect();
        // a value for every flag, serialized: the keys must be the flag names
        let args = RunArgs {
            network: Some("dev".into()),
            genesis: Some("g.toml".into()),
            datadir: Some("d".into()),
            rpc_addr: Some("127.0.0.1:1".parse().unwrap()),
            p2p_addr: Some("127.0.0.1:2".parse().unwrap()),
            peers: vec!["h:1".into()],
            mine: true,
            miner_address: Some("a".into()),
            threads: Some(1),
            block_time: Some(DurationMs(2000)),
            reindex: true,
            log_file: Some("l".into()),
            ready_file: Some("r.json".into()),
            rpc_user: Some("u".into()),
            rpc_password: Some("p".into()),
            rpc_auth: vec!["x".into()],
            rpc_allow_host: vec!["h".into()],
            rpc_cors: vec!["o".into()],
            rpc_allow_control: true,
            no_explorer: true,
            whitelist: vec!["10.0.0.0/8".into()],
            allow_peers: Some("allowed.txt".into()),
            ..RunArgs::default()
        };
        let table = toml::Table::try_from(&args).unwrap();
        let mut keys: Vec<&String> = table.keys().collect();
        let mut want: Vec<&String> = flags.iter().collect();
        keys.sort();
        want.sort();
        assert_eq!(keys, want, "every flag is a config key of the same name");
        // and the file form reads back
        let back = RunArgs::deserialize(toml::Value::Table(table)).unwrap();
        assert_eq!(back.block_time, Some(DurationMs(2000)));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
