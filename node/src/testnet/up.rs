//! `testnet up`, `down`, `kill`, `start`: node processes on this host.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_api::CairnApiClient;
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, SigningKey};
use cairn_genesis::{Network, dev_accounts};
use clap::Args;

use super::control;
use super::manifest::{Account, Manifest, ManifestNode, Topology};
use super::procs;

#[derive(Args, Clone)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub nodes: u32,
    /// How many of them mine (the first ones).
    #[arg(long, default_value_t = 1)]
    pub miners: u32,
    /// Directory for the nodes' datadirs, logs and manifest.json (reused if it exists).
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
    /// Which nodes talk: mesh, ring, star or random:K (K random links per node).
    #[arg(long, default_value = "mesh")]
    pub topology: String,
    /// Miner threads per node (default: one per core).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Return once every node answers, leaving them running (stop them with `testnet down`).
    #[arg(long)]
    pub detach: bool,
}

/// A miner key for a network without published dev keys, kept in the node's datadir.
fn miner_key(dir: &Path, network: &Network) -> anyhow::Result<(String, String)> {
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
            use std::io::Write;
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
    Ok((address, hex::encode(secret)))
}

/// Starts the testnet; in the foreground unless `--detach`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.miners > args.nodes {
        bail!(
            "--miners {} is more than --nodes {}",
            args.miners,
            args.nodes
        );
    }
    let topology = Topology::parse(&args.topology)?;
    if let Some(bt) = &args.block_time {
        super::parse_ms(bt).map_err(|e| anyhow::anyhow!("--block-time: {e}"))?;
    }
    let network = match (&args.network, &args.genesis) {
        (_, Some(g)) => Network::from_file(g)?,
        (Some(n), None) => Network::builtin(n)?,
        (None, None) => Network::builtin("dev")?,
    };
    let is_dev = network.genesis_hash == Network::builtin("dev")?.genesis_hash;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let genesis = args
        .genesis
        .as_ref()
        .map(|g| g.canonicalize())
        .transpose()?;
    let old = if Manifest::path(&dir).exists() {
        let m = Manifest::load(&dir)?;
        if m.nodes.iter().any(|n| {
            n.pid
                .is_some_and(|p| procs::is_ours(p, n.datadir.as_deref()))
        }) {
            bail!(
                "a testnet is already running in {} (stop it with `cairn-node testnet down --dir {}`, or choose another --dir)",
                dir.display(),
                dir.display()
            );
        }
        Some(m)
    } else {
        None
    };
    let n = args.nodes as usize;
    let fresh = procs::free_ports(n)?;
    let edges = topology.edges(n);
    let mut nodes = Vec::with_capacity(n);
    let mut accounts = Vec::new();
    for (i, (rpc_port, p2p_port)) in fresh.iter().copied().enumerate() {
        let datadir = dir.join(format!("node-{i}"));
        // ports are chosen once and kept: a restart finds its peers where they were
        let (rpc_url, p2p_addr) = match old.as_ref().and_then(|m| m.nodes.get(i)) {
            Some(o) => (o.rpc_url.clone(), o.p2p_addr.clone()),
            None => (
                format!("http://127.0.0.1:{rpc_port}"),
                format!("127.0.0.1:{p2p_port}"),
            ),
        };
        let rpc_addr = rpc_url.trim_start_matches("http://").to_string();
        let mut a: Vec<String> = vec![
            "run".into(),
            "--datadir".into(),
            datadir.display().to_string(),
        ];
        a.extend([
            "--rpc-addr".into(),
            rpc_addr,
            "--p2p-addr".into(),
            p2p_addr.clone(),
        ]);
        match (&genesis, &args.network) {
            (Some(g), _) => a.extend(["--genesis".into(), g.display().to_string()]),
            (None, Some(net)) => a.extend(["--network".into(), net.clone()]),
            (None, None) => a.extend(["--network".into(), "dev".into()]),
        }
        // each link is dialled by its higher-numbered end, started later
        for &(x, y) in &edges {
            if y == i {
                a.extend(["--peer".into(), nodes_p2p(&nodes, x)]);
            }
        }
        let mining = i < args.miners as usize;
        // every node has a miner address, so `testnet mine` can turn any of them on
        let (address, secret, note) = if is_dev {
            let d = &dev_accounts()[i % dev_accounts().len()];
            (
                d.address.encode(&network.params.address_prefix),
                d.secret_hex(),
                format!("dev account {}", d.index),
            )
        } else {
            let (addr, secret) = miner_key(&datadir, &network)?;
            (
                addr,
                secret,
                format!("node-{i}'s miner key ({}/miner.key)", datadir.display()),
            )
        };
        a.extend(["--miner-address".into(), address.clone()]);
        if mining {
            a.push("--mine".into());
            accounts.push(Account {
                address: address.clone(),
                secret: Some(secret),
                note: format!("{note}; node-{i}'s rewards"),
            });
        } else if is_dev {
            accounts.push(Account {
                address: address.clone(),
                secret: Some(secret),
                note,
            });
        }
        if let Some(bt) = &args.block_time {
            a.extend(["--block-time".into(), bt.clone()]);
        }
        if let Some(t) = args.threads {
            a.extend(["--threads".into(), t.to_string()]);
        }
        nodes.push(ManifestNode {
            index: i,
            rpc_url,
            p2p_addr,
            datadir: Some(datadir),
            role: if mining {
                "miner".into()
            } else {
                "node".into()
            },
            rpc_user: None,
            rpc_password: None,
            miner_address: Some(address),
            pid: None,
            args: a,
        });
    }
    if is_dev {
        // the dev accounts the nodes do not mine to are funded at genesis too
        for d in dev_accounts().iter().skip(n) {
            accounts.push(Account {
                address: d.address.encode(&network.params.address_prefix),
                secret: Some(d.secret_hex()),
                note: format!("dev account {}", d.index),
            });
        }
    }
    // more nodes than dev accounts share keys: list each account once
    let mut seen = std::collections::HashSet::new();
    accounts.retain(|a| seen.insert(a.address.clone()));
    let mut manifest = Manifest {
        network: network.name.clone(),
        genesis_hash: Some(network.genesis_hash.to_hex()),
        topology: Some(args.topology.clone()),
        nodes,
        accounts,
        faults: old.map(|m| m.faults).unwrap_or_default(),
    };
    manifest.faults.groups.clear();
    let mut children: Vec<Child> = Vec::new();
    for i in 0..n {
        let started = start_one(&mut manifest, &dir, i).await;
        match started {
            Ok(child) => children.push(child),
            Err(e) => {
                for c in &mut children {
                    procs::signal(c.id(), "TERM");
                    let _ = c.wait();
                }
                for node in &mut manifest.nodes {
                    node.pid = None;
                }
                manifest.save(&dir)?;
                return Err(e);
            }
        }
        // the topology's missing links are kept closed from the start
        let node = &manifest.nodes[i];
        control::apply_faults_to(&manifest, node).await?;
    }
    control::apply_faults(&manifest).await?;
    control::wait_for_links(&manifest, Duration::from_secs(20)).await;
    print_summary(&manifest, &dir, &network, is_dev);
    if args.detach {
        println!(
            "\nRunning in the background. Status: cairn-node testnet status --dir {}    Stop: cairn-node testnet down --dir {}",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    println!(
        "\nSide by side: cairn-node testnet status --dir {}    Stop: Ctrl-C",
        dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    println!("stopping {} nodes...", manifest.nodes.len());
    down(&dir)?;
    for c in &mut children {
        let _ = c.wait();
    }
    println!(
        "stopped; the chains stay in {} (run the same command to start again)",
        dir.display()
    );
    Ok(())
}

fn nodes_p2p(nodes: &[ManifestNode], i: usize) -> String {
    nodes[i].p2p_addr.clone()
}

/// Starts node `i` of `manifest` and records its process id.
pub(crate) async fn start_one(
    manifest: &mut Manifest,
    dir: &Path,
    i: usize,
) -> anyhow::Result<Child> {
    let node = manifest.node(i)?.clone();
    let Some(datadir) = node.datadir.clone() else {
        bail!("node {i} has no datadir in the manifest: it runs elsewhere; start it there");
    };
    if node.args.is_empty() {
        bail!(
            "node {i} has no start arguments in the manifest: it was started by hand; start it there"
        );
    }
    let mut child = procs::spawn(&node.args, &datadir)?;
    manifest.nodes[i].pid = Some(child.id());
    manifest.save(dir)?;
    if let Err(e) = procs::wait_ready(&node, Some(&mut child), Duration::from_secs(60)).await {
        procs::signal(child.id(), "KILL");
        let _ = child.wait();
        manifest.nodes[i].pid = None;
        manifest.save(dir)?;
        return Err(e);
    }
    Ok(child)
}

fn print_summary(m: &Manifest, dir: &Path, network: &Network, is_dev: bool) {
    println!(
        "Cairn private testnet: {} nodes on {}, {} mining, topology {}, in {}",
        m.nodes.len(),
        network.name,
        m.nodes.iter().filter(|n| n.role == "miner").count(),
        m.topology.as_deref().unwrap_or("mesh"),
        dir.display()
    );
    println!(
        "  {:<8} {:<6} {:<8} {:<26} {:<22} log",
        "node", "role", "pid", "JSON-RPC", "P2P"
    );
    for n in &m.nodes {
        println!(
            "  {:<8} {:<6} {:<8} {:<26} {:<22} {}",
            n.name(),
            n.role,
            n.pid.map(|p| p.to_string()).unwrap_or_default(),
            n.rpc_url,
            n.p2p_addr,
            n.datadir
                .as_deref()
                .map(|d| d.join("node.log").display().to_string())
                .unwrap_or_default()
        );
    }
    println!(
        "\nMetrics (Prometheus text, no login needed; a Grafana dashboard is in docs/grafana/):"
    );
    for n in &m.nodes {
        println!("  {}/metrics  ({})", n.rpc_url, n.name());
    }
    println!(
        "JSON-RPC calls need each node's cookie (DIR/node-N/.cookie): cairn-node rpc --rpc URL --datadir DIR/node-N METHOD"
    );
    println!(
        "Manifest (nodes, funded accounts with their keys): {}",
        Manifest::path(dir).display()
    );
    if is_dev {
        println!(
            "Funded at genesis: the ten dev accounts (see `cairn-node run --network dev` for their keys)."
        );
    }
    let miners: Vec<&Account> = m
        .accounts
        .iter()
        .filter(|a| a.note.contains("rewards"))
        .collect();
    if !miners.is_empty() {
        println!("Mining rewards go to:");
        for a in miners {
            println!("  {} ({})", a.address, a.note);
        }
    }
}

/// `testnet down`: stops every node this host started.
pub fn down(dir: &Path) -> anyhow::Result<()> {
    let mut m = Manifest::load(dir)?;
    let mut stopped = 0;
    let mut elsewhere = 0;
    // signal them all first, then wait: they shut down in parallel
    for n in &m.nodes {
        if let Some(pid) = n.pid
            && procs::is_ours(pid, n.datadir.as_deref())
        {
            procs::signal(pid, "TERM");
        }
    }
    for n in &mut m.nodes {
        match n.pid {
            Some(_) => {
                procs::stop(n, Duration::from_secs(15));
                n.pid = None;
                stopped += 1;
            }
            None if n.args.is_empty() => elsewhere += 1,
            None => {}
        }
    }
    m.save(dir)?;
    println!(
        "stopped {stopped} nodes; their chains stay in {}",
        dir.display()
    );
    if elsewhere > 0 {
        println!("{elsewhere} nodes of the manifest run elsewhere: stop them where they run");
    }
    Ok(())
}

/// `testnet kill K`: SIGKILL, no clean shutdown.
pub fn kill(dir: &Path, k: usize) -> anyhow::Result<()> {
    let mut m = Manifest::load(dir)?;
    let node = m.node(k)?.clone();
    match node.pid {
        Some(pid) if procs::is_ours(pid, node.datadir.as_deref()) => {
            procs::signal(pid, "KILL");
            procs::wait_gone(pid, node.datadir.as_deref());
            m.nodes[k].pid = None;
            m.save(dir)?;
            println!("killed node-{k} (pid {pid})");
            Ok(())
        }
        _ if node.args.is_empty() => {
            bail!("node {k} was not started by this host: kill it where it runs")
        }
        _ => bail!("node {k} is not running"),
    }
}

/// `testnet start K`: starts a stopped node again and re-applies the faults.
pub async fn start(dir: &Path, k: usize) -> anyhow::Result<()> {
    let mut m = Manifest::load(dir)?;
    let node = m.node(k)?.clone();
    if let Some(pid) = node.pid
        && procs::is_ours(pid, node.datadir.as_deref())
    {
        bail!("node {k} is already running (pid {pid})");
    }
    let _child = start_one(&mut m, dir, k).await?;
    control::apply_faults(&m).await?;
    let info = m
        .node(k)?
        .client(Duration::from_secs(5))?
        .chain_get_info()
        .await?;
    println!(
        "started node-{k} (pid {}) at height {}; JSON-RPC {}",
        m.nodes[k].pid.unwrap_or_default(),
        info.height,
        m.nodes[k].rpc_url
    );
    Ok(())
}
