//! `cairn-node`: run a Cairn node.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cairn_genesis::{Network, dev_accounts};
use cairn_node::config::{MiningConfig, NodeConfig, RpcConfig, StorageConfig, default_ports};
use cairn_node::mempool::MempoolConfig;
use cairn_node::service;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

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
    Run(RunArgs),
    /// Start a private testnet of several nodes on this machine (or show its status).
    Testnet(testnet::TestnetArgs),
}

#[derive(Args, Default)]
struct RunArgs {
    /// Read settings from this TOML file (flags and CAIRN_* variables win).
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Built-in network to join: dev (pinned target, prefunded accounts, blocks on
    /// demand) or testnet (10 s blocks with real retargeting). Default: dev.
    #[arg(
        long,
        env = "CAIRN_NETWORK",
        value_name = "NAME",
        conflicts_with = "genesis"
    )]
    network: Option<String>,

    /// Run the network defined by this genesis spec (TOML) instead of a built-in one.
    #[arg(long, env = "CAIRN_GENESIS", value_name = "FILE")]
    genesis: Option<PathBuf>,

    /// Where the chain is stored. Default: <user data dir>/cairn/<network>.
    #[arg(long, env = "CAIRN_DATADIR", value_name = "DIR")]
    datadir: Option<PathBuf>,

    /// JSON-RPC listen address (HTTP and WebSocket). Default: 127.0.0.1:7540 on dev,
    /// 127.0.0.1:7640 on testnet, 127.0.0.1:7740 otherwise.
    #[arg(long, env = "CAIRN_RPC_ADDR", value_name = "HOST:PORT")]
    rpc_addr: Option<SocketAddr>,

    /// P2P listen address. Default: the RPC port plus one, on 127.0.0.1 for
    /// dev and on every interface (0.0.0.0) for other networks.
    #[arg(long, env = "CAIRN_P2P_ADDR", value_name = "HOST:PORT")]
    p2p_addr: Option<SocketAddr>,

    /// Connect to this peer at start-up (repeatable).
    #[arg(
        long = "peer",
        env = "CAIRN_PEERS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    peers: Vec<String>,

    /// Mine. On a network with a pinned target (dev) one block every --block-time;
    /// elsewhere continuously.
    #[arg(long, env = "CAIRN_MINE")]
    mine: bool,

    /// Address paid by mined blocks. Default on dev: the first dev account.
    #[arg(long, env = "CAIRN_MINER_ADDRESS", value_name = "ADDR")]
    miner_address: Option<String>,

    /// Miner threads. Default: one per core.
    #[arg(long, env = "CAIRN_THREADS", value_name = "N")]
    threads: Option<usize>,

    /// Interval between mined blocks on a pinned-target network, e.g. 2s or 500ms.
    #[arg(long, env = "CAIRN_BLOCK_TIME", value_name = "DURATION", value_parser = parse_duration_ms)]
    block_time: Option<u64>,

    /// Rebuild the account state and indexes from the stored blocks before starting.
    #[arg(long)]
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
    whitelist: Vec<cairn_node::p2p::IpNet>,
}

fn parse_net(s: &str) -> Result<cairn_node::p2p::IpNet, String> {
    cairn_node::p2p::bans::parse_net(s).map_err(|e| e.to_string())
}

/// The TOML config file: every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    network: Option<String>,
    genesis: Option<PathBuf>,
    datadir: Option<PathBuf>,
    rpc_addr: Option<SocketAddr>,
    p2p_addr: Option<SocketAddr>,
    peers: Option<Vec<String>>,
    reindex: Option<bool>,
    rpc: Option<RpcConfig>,
    mining: Option<MiningConfig>,
    mempool: Option<MempoolConfig>,
    storage: Option<StorageConfig>,
    p2p: Option<cairn_node::p2p::P2pConfig>,
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

fn build_config(args: RunArgs) -> anyhow::Result<(Network, NodeConfig)> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let genesis = args.genesis.clone().or(file.genesis.clone());
    let name = args.network.clone().or(if genesis.is_some() {
        None
    } else {
        file.network.clone()
    });
    let network = load_network(name.as_deref(), genesis.as_ref())?;
    let datadir = args
        .datadir
        .or(file.datadir)
        .unwrap_or_else(|| default_datadir(&network.name));
    let mut config = NodeConfig::new(&network.name, datadir);
    let (_, p2p_port) = default_ports(&network.name);
    if let Some(a) = file.rpc_addr {
        config.rpc_addr = a;
    }
    if let Some(a) = args.rpc_addr {
        config.rpc_addr = a;
    }
    config.p2p_addr = args.p2p_addr.or(file.p2p_addr).unwrap_or_else(|| {
        let ip: std::net::IpAddr = if network.name == "dev" {
            [127, 0, 0, 1].into()
        } else {
            [0, 0, 0, 0].into()
        };
        SocketAddr::new(ip, p2p_port)
    });
    config.peers = if args.peers.is_empty() {
        file.peers.unwrap_or_default()
    } else {
        args.peers
    };
    for p in &config.peers {
        cairn_genesis::check_host_port(p).map_err(|e| anyhow::anyhow!("--peer: {e}"))?;
    }
    config.reindex = args.reindex || file.reindex.unwrap_or(false);
    config.rpc = file.rpc.unwrap_or_default();
    config.mempool = file.mempool.unwrap_or_default();
    config.storage = file.storage.unwrap_or_default();
    config.p2p = file.p2p.unwrap_or_default();
    config.p2p.whitelist.extend(args.whitelist.iter().copied());
    config.mining = file.mining.unwrap_or_default();
    if args.mine {
        config.mining.enabled = true;
    }
    if let Some(a) = args.miner_address {
        config.mining.address = Some(a);
    }
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        config.mining.threads = t;
    }
    if let Some(ms) = args.block_time {
        config.mining.block_time_ms = ms;
    }
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
    Ok((network, config))
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
    if !running.rpc_addr.ip().is_loopback() {
        println!(
            "  WARNING   JSON-RPC listens on {}: anyone who can reach it can mine, submit and manage peers; there is no authentication",
            running.rpc_addr.ip()
        );
    }
    match running.p2p_addr() {
        Some(a) => println!("  P2P       {a}"),
        None => println!("  P2P       disabled"),
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (network, config) = build_config(args)?;
    let running = service::launch(network.clone(), config).await?;
    print_banner(&network, &running);
    if std::io::IsTerminal::is_terminal(&std::io::stderr())
        && let Some(p2p) = running.p2p.clone()
    {
        spawn_sync_bar(p2p);
    }
    tracing::info!("node started; press Ctrl-C to stop");
    shutdown_signal().await;
    tracing::info!("shutting down: stopping the miner and the RPC server, flushing the store");
    running.stop().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,jsonrpsee=warn,sled=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Testnet(t) => {
            drop(runtime);
            match t.action {
                Some(testnet::TestnetAction::Status { dir, json }) => testnet::status(&dir, json),
                None => testnet::start(t.start),
            }
        }
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

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
