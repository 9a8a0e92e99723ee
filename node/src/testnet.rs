//! `cairn-node testnet`: a private network of several nodes on this machine,
//! each a child process with its own datadir and ports, connected as a
//! mesh; and `cairn-node testnet status`, a side-by-side view of them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api::CairnApiClient;
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, SigningKey};
use cairn_genesis::{Network, dev_accounts};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TestnetArgs {
    #[command(subcommand)]
    pub action: Option<TestnetAction>,
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Subcommand)]
pub enum TestnetAction {
    /// Show each node's height, tip, peers and mempool side by side.
    Status {
        /// The testnet's directory.
        #[arg(long, default_value = "./data/testnet")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct StartArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub nodes: u32,
    /// How many of them mine (the first ones).
    #[arg(long, default_value_t = 1)]
    pub miners: u32,
    /// Directory for the nodes' datadirs, logs and testnet.json (reused if it exists).
    #[arg(long, default_value = "./data/testnet")]
    pub dir: PathBuf,
    /// Built-in network: dev (default) or testnet.
    #[arg(long, conflicts_with = "genesis")]
    pub network: Option<String>,
    /// A genesis spec file instead of a built-in network.
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// Block interval of the miners on a pinned-target network, e.g. 2s.
    #[arg(long)]
    pub block_time: Option<String>,
}

/// What `testnet.json` records.
#[derive(Serialize, Deserialize)]
struct TestnetFile {
    network: String,
    genesis_hash: String,
    nodes: Vec<NodeEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct NodeEntry {
    name: String,
    role: String,
    rpc: String,
    p2p: String,
    datadir: PathBuf,
    pid: u32,
    miner_address: Option<String>,
}

struct Started {
    child: Child,
    entry: NodeEntry,
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn terminate(children: &mut [Started]) {
    for s in children.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for s in children.iter_mut() {
        loop {
            match s.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// A miner key for a network without published dev keys, kept in the node's datadir.
fn miner_key(dir: &Path, network: &Network) -> anyhow::Result<(String, Option<String>)> {
    let path = dir.join("miner.key");
    let secret: [u8; 32] = match std::fs::read_to_string(&path) {
        Ok(hex_text) => {
            let mut b = [0u8; 32];
            hex::decode_to_slice(hex_text.trim(), &mut b)
                .with_context(|| format!("{} is not a 32-byte hex secret", path.display()))?;
            b
        }
        Err(_) => {
            let b: [u8; 32] = rand::random();
            std::fs::create_dir_all(dir)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            options
                .open(&path)
                .and_then(|mut f| f.write_all(hex::encode(b).as_bytes()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            b
        }
    };
    let key = SigningKey::from_bytes(&secret);
    let address =
        Address::from_public_key(&public_key(&key)).encode(&network.params.address_prefix);
    Ok((address, Some(path.display().to_string())))
}

/// Starts the testnet and runs until Ctrl-C or SIGTERM.
pub fn start(args: StartArgs) -> anyhow::Result<()> {
    if args.miners > args.nodes {
        bail!(
            "--miners {} is more than --nodes {}",
            args.miners,
            args.nodes
        );
    }
    let network = match (&args.network, &args.genesis) {
        (_, Some(g)) => Network::from_file(g)?,
        (Some(n), None) => Network::builtin(n)?,
        (None, None) => Network::builtin("dev")?,
    };
    let is_dev = network.genesis_hash == Network::builtin("dev")?.genesis_hash;
    let dir = args.dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let record = dir.join("testnet.json");
    if let Ok(text) = std::fs::read_to_string(&record)
        && let Ok(old) = serde_json::from_str::<TestnetFile>(&text)
        && old.nodes.iter().any(|n| alive(n.pid))
    {
        bail!(
            "a testnet is already running in {} (stop it first, or choose another --dir)",
            dir.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut started: Vec<Started> = Vec::new();
    let mut funded: Vec<String> = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node-{i}");
        let datadir = dir.join(&name);
        std::fs::create_dir_all(&datadir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(datadir.join("node.log"))
            .with_context(|| format!("cannot open {}/node.log", datadir.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("run").arg("--datadir").arg(&datadir);
        cmd.args(["--rpc-addr", "127.0.0.1:0", "--p2p-addr", "127.0.0.1:0"]);
        match (&args.genesis, &args.network) {
            (Some(g), _) => {
                cmd.arg("--genesis").arg(g);
            }
            (None, Some(n)) => {
                cmd.args(["--network", n]);
            }
            (None, None) => {
                cmd.args(["--network", "dev"]);
            }
        }
        for s in &started {
            cmd.args(["--peer", &s.entry.p2p]);
        }
        let mining = i < args.miners;
        let mut miner_address = None;
        if mining {
            let (address, key_file) = if is_dev {
                let a = &dev_accounts()[i as usize % dev_accounts().len()];
                (a.address.encode(&network.params.address_prefix), None)
            } else {
                miner_key(&datadir, &network)?
            };
            cmd.args(["--mine", "--miner-address", &address]);
            if let Some(bt) = &args.block_time {
                cmd.args(["--block-time", bt]);
            }
            funded.push(match key_file {
                Some(f) => format!("{address} ({name}'s rewards; secret key in {f})"),
                None => format!("{address} ({name}'s rewards; dev account {i})"),
            });
            miner_address = Some(address);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .stdin(Stdio::null());
        let mut child = cmd.spawn().context("cannot start a node")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut rpc, mut p2p) = (String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            let t = line.trim();
            if let Some(r) = t.strip_prefix("JSON-RPC") {
                rpc = r.split_whitespace().next().unwrap_or_default().to_string();
            } else if let Some(r) = t.strip_prefix("P2P") {
                p2p = r.split_whitespace().next().unwrap_or_default().to_string();
            } else if t.starts_with("tip") {
                break;
            }
        }
        if rpc.is_empty() || p2p.is_empty() {
            let _ = child.kill();
            terminate(&mut started);
            bail!("{name} did not start; see {}/node.log", datadir.display());
        }
        // keep draining its stdout into the log
        let mut log_out = log;
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let _ = writeln!(log_out, "{l}");
            }
        });
        started.push(Started {
            entry: NodeEntry {
                name,
                role: if mining {
                    "miner".into()
                } else {
                    "node".into()
                },
                rpc,
                p2p,
                datadir,
                pid: child.id(),
                miner_address,
            },
            child,
        });
    }
    let file = TestnetFile {
        network: network.name.clone(),
        genesis_hash: network.genesis_hash.to_hex(),
        nodes: started.iter().map(|s| s.entry.clone()).collect(),
    };
    std::fs::write(&record, serde_json::to_string_pretty(&file)?)
        .with_context(|| format!("cannot write {}", record.display()))?;

    println!(
        "Cairn private testnet: {} nodes on {}, {} mining, in {}",
        args.nodes,
        network.name,
        args.miners,
        dir.display()
    );
    println!(
        "  {:<8} {:<6} {:<26} {:<22} log",
        "node", "role", "JSON-RPC", "P2P"
    );
    for s in &started {
        let e = &s.entry;
        println!(
            "  {:<8} {:<6} {:<26} {:<22} {}",
            e.name,
            e.role,
            e.rpc,
            e.p2p,
            e.datadir.join("node.log").display()
        );
    }
    println!(
        "\nMetrics (Prometheus text, no login needed; a Grafana dashboard is in docs/grafana/):"
    );
    for s in &started {
        println!("  {}/metrics  ({})", s.entry.rpc, s.entry.name);
    }
    println!(
        "JSON-RPC calls need each node's cookie (DIR/node-N/.cookie): cairn-node rpc --rpc URL --datadir DIR/node-N METHOD"
    );
    if is_dev {
        println!(
            "\nFunded at genesis: the ten dev accounts (see `cairn-node run --network dev` for their keys)."
        );
    }
    if !funded.is_empty() {
        println!("Mining rewards go to:");
        for f in &funded {
            println!("  {f}");
        }
    }
    println!(
        "\nSide by side: cairn-node testnet status --dir {}    Stop: Ctrl-C",
        dir.display()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!("stopping {} nodes...", started.len());
    terminate(&mut started);
    println!(
        "stopped; the chains stay in {} (run the same command to start again)",
        dir.display()
    );
    Ok(())
}

/// `testnet status`: one line per node.
pub fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let record = dir.join("testnet.json");
    let text = std::fs::read_to_string(&record).with_context(|| {
        format!(
            "no testnet in {} (start one with `cairn-node testnet --dir {}`)",
            dir.display(),
            dir.display()
        )
    })?;
    let file: TestnetFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a testnet record", record.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for n in &file.nodes {
            let client = cairn_node::client::client_for_datadir(&n.rpc, &n.datadir, Duration::from_secs(5));
            let row = match client {
                Err(e) => serde_json::json!({"name": n.name, "role": n.role, "rpc": n.rpc, "error": e}),
                Ok(c) => match (c.chain_get_info().await, c.net_get_peers().await, c.mempool_get_info().await) {
                    (Ok(info), Ok(peers), Ok(pool)) => serde_json::json!({
                        "name": n.name, "role": n.role, "rpc": n.rpc,
                        "height": info.height, "tip": info.best_hash, "peers": peers.len(),
                        "mempool": pool.count, "syncing": info.syncing,
                    }),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        serde_json::json!({"name": n.name, "role": n.role, "rpc": n.rpc, "error": e.to_string()})
                    }
                },
            };
            rows.push(row);
        }
        rows
    });
    if json {
        println!(
            "{}",
            serde_json::json!({"network": file.network, "nodes": rows})
        );
        return Ok(());
    }
    println!("testnet in {} ({})", dir.display(), file.network);
    println!(
        "  {:<8} {:<6} {:>8}  {:<18} {:>5} {:>8}",
        "node", "role", "height", "tip", "peers", "mempool"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        if r.get("error").is_some() {
            println!(
                "  {:<8} {:<6} unreachable at {}: {}",
                s("name"),
                s("role"),
                s("rpc"),
                s("error")
            );
            continue;
        }
        let tip = s("tip");
        println!(
            "  {:<8} {:<6} {:>8}  {:<18} {:>5} {:>8}{}",
            s("name"),
            s("role"),
            r["height"].to_string(),
            &tip[..tip.len().min(16)],
            r["peers"].to_string(),
            r["mempool"].to_string(),
            if r["syncing"] == true {
                "  syncing"
            } else {
                ""
            }
        );
    }
    Ok(())
}
