//! The commands that drive running nodes over JSON-RPC: status, faults
//! (partition, heal, link), mining modes, and one-call reorganisations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api::{CairnApiClient, LinkView, TxStatus};
use cairn_consensus::BlockHash;
use clap::Args;
use jsonrpsee_http_client::HttpClient;
use serde_json::json;

use super::manifest::{LinkFault, Manifest, ManifestNode};

const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn client(n: &ManifestNode) -> anyhow::Result<HttpClient> {
    n.client(RPC_TIMEOUT)
}

// ----- faults -----

/// The rule node `a` applies to what it sends to node `b`.
fn desired_rule(m: &Manifest, edges: &[(usize, usize)], a: usize, b: usize) -> LinkView {
    let pair = (a.min(b), a.max(b));
    let mut rule = m
        .faults
        .links
        .iter()
        .rev()
        .find(|l| (l.a.min(l.b), l.a.max(l.b)) == pair)
        .map(|l| l.rule.clone())
        .unwrap_or_default();
    rule.drop = !edges.contains(&pair) || m.faults.group_of(a) != m.faults.group_of(b);
    rule
}

/// Brings `node`'s link rules toward every other node of the manifest to
/// what the topology and the faults say (only changed rules are sent).
pub async fn apply_faults_to(m: &Manifest, node: &ManifestNode) -> anyhow::Result<()> {
    let edges = m.edges()?;
    let c = client(node)?;
    let current: HashMap<String, LinkView> = c
        .net_get_links()
        .await
        .with_context(|| format!("node {}: net_getLinks", node.index))?
        .into_iter()
        .map(|e| (e.peer, e.rule))
        .collect();
    for other in &m.nodes {
        if other.index == node.index {
            continue;
        }
        let want = desired_rule(m, &edges, node.index, other.index);
        let have = current.get(&other.p2p_addr).cloned().unwrap_or_default();
        if want != have {
            c.net_set_link(other.p2p_addr.clone(), want)
                .await
                .with_context(|| format!("node {}: net_setLink {}", node.index, other.p2p_addr))?;
        }
    }
    Ok(())
}

/// [`apply_faults_to`] every node; a node that does not answer is skipped
/// with a warning (it gets its rules when it starts again).
pub async fn apply_faults(m: &Manifest) -> anyhow::Result<()> {
    for n in &m.nodes {
        if let Err(e) = apply_faults_to(m, n).await {
            if n.pid.is_none() && !n.args.is_empty() {
                continue; // stopped: `testnet start` applies them
            }
            eprintln!(
                "warning: node {} did not take its link rules: {e:#}",
                n.index
            );
        }
    }
    Ok(())
}

/// Waits until each node has at least as many peers as it has links in the
/// topology (or the time is up: a warning, not an error).
pub async fn wait_for_links(m: &Manifest, timeout: Duration) {
    let Ok(edges) = m.edges() else { return };
    let deadline = Instant::now() + timeout;
    for n in &m.nodes {
        let degree = edges
            .iter()
            .filter(|(a, b)| *a == n.index || *b == n.index)
            .count();
        let Ok(c) = client(n) else { continue };
        loop {
            let peers = c.net_get_peers().await.map(|p| p.len()).unwrap_or(0);
            if peers >= degree {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: node {} has {peers} peers of its {degree} links so far",
                    n.index
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `testnet partition 0,1 2,3`.
pub async fn partition(dir: &Path, groups: &[String]) -> anyhow::Result<()> {
    let mut m = Manifest::load(dir)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut parsed = Vec::new();
    for g in groups {
        let idx = super::parse_indices(g)?;
        if idx.is_empty() {
            bail!("an empty group");
        }
        for &i in &idx {
            m.node(i)?;
            if !seen.insert(i) {
                bail!("node {i} is in two groups");
            }
        }
        parsed.push(idx);
    }
    m.faults.groups = parsed;
    m.save(dir)?;
    apply_faults(&m).await?;
    let rest: Vec<usize> = (0..m.nodes.len()).filter(|i| !seen.contains(i)).collect();
    let mut shown: Vec<String> = m.faults.groups.iter().map(|g| format!("{g:?}")).collect();
    if !rest.is_empty() {
        shown.push(format!("{rest:?} (in no group)"));
    }
    println!("partitioned: {}", shown.join(" | "));
    Ok(())
}

/// `testnet heal`.
pub async fn heal(dir: &Path) -> anyhow::Result<()> {
    let mut m = Manifest::load(dir)?;
    m.faults.groups.clear();
    m.save(dir)?;
    apply_faults(&m).await?;
    println!("healed: every link of the topology is open (shaped links keep their delay and loss)");
    Ok(())
}

#[derive(Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub dir: super::DirArg,
    /// A node index, or `all`.
    pub a: String,
    /// A node index, or `all`.
    pub b: String,
    /// Every message waits this long, e.g. 200ms.
    #[arg(long, value_parser = super::parse_ms_arg)]
    pub delay: Option<u64>,
    /// Plus up to this much more, at random, e.g. 20ms.
    #[arg(long, value_parser = super::parse_ms_arg)]
    pub jitter: Option<u64>,
    /// Fraction of messages lost, 0 to 1, e.g. 0.05.
    #[arg(long)]
    pub loss: Option<f64>,
    /// Bandwidth: 1mbit, 500kbit, 64000 (bits per second).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<u64>,
}

/// `1mbit`, `500kbit`, `2gbit`, `64000bit`, `64000` (bits per second).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1_000_000_000)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1_000_000)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1)
    } else {
        (t.as_str(), 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 1mbit, 500kbit or 64000"))?;
    match n.checked_mul(mult) {
        Some(0) => Err("the rate must be above zero".into()),
        Some(r) => Ok(r),
        None => Err(format!("{s:?} is too large")),
    }
}

fn side(m: &Manifest, s: &str) -> anyhow::Result<Vec<usize>> {
    if s == "all" {
        return Ok((0..m.nodes.len()).collect());
    }
    let v = super::parse_indices(s)?;
    for &i in &v {
        m.node(i)?;
    }
    Ok(v)
}

/// `testnet link A B --delay ...`.
pub async fn link(args: LinkArgs) -> anyhow::Result<()> {
    let dir = &args.dir.dir;
    let mut m = Manifest::load(dir)?;
    if let Some(l) = args.loss
        && !(0.0..=1.0).contains(&l)
    {
        bail!("--loss {l} is not a fraction between 0 and 1");
    }
    let rule = LinkView {
        drop: false,
        delay_ms: args.delay.unwrap_or(0),
        jitter_ms: args.jitter.unwrap_or(0),
        loss: args.loss.unwrap_or(0.0),
        rate_bps: args.rate.unwrap_or(0),
    };
    let (a_side, b_side) = (side(&m, &args.a)?, side(&m, &args.b)?);
    let edges = m.edges()?;
    let mut pairs = Vec::new();
    for &a in &a_side {
        for &b in &b_side {
            let p = (a.min(b), a.max(b));
            if a != b && edges.contains(&p) && !pairs.contains(&p) {
                pairs.push(p);
            }
        }
    }
    if pairs.is_empty() {
        bail!("no link of the topology joins {} and {}", args.a, args.b);
    }
    m.faults
        .links
        .retain(|l| !pairs.contains(&(l.a.min(l.b), l.a.max(l.b))));
    if rule != LinkView::default() {
        for &(a, b) in &pairs {
            m.faults.links.push(LinkFault {
                a,
                b,
                rule: rule.clone(),
            });
        }
    }
    m.save(dir)?;
    apply_faults(&m).await?;
    let what = if rule == LinkView::default() {
        "cleared".to_string()
    } else {
        format!(
            "delay {} ms, jitter {} ms, loss {}, rate {}",
            rule.delay_ms,
            rule.jitter_ms,
            rule.loss,
            if rule.rate_bps == 0 {
                "unlimited".to_string()
            } else {
                format!("{} bit/s", rule.rate_bps)
            }
        )
    };
    println!("{} links {what}: {pairs:?}", pairs.len());
    Ok(())
}

// ----- mining -----

#[derive(Args)]
pub struct MineArgs {
    #[command(flatten)]
    pub dir: super::DirArg,
    /// instant, interval:T (e.g. interval:2s), continuous, manual or paused.
    #[arg(long)]
    pub mode: Option<String>,
    /// The nodes to change (comma-separated; repeatable). Default: the miners.
    #[arg(long, value_delimiter = ',')]
    pub node: Vec<usize>,
    /// Miner threads (unequal power on networks that retarget).
    #[arg(long)]
    pub threads: Option<u32>,
    /// This node's share of the hashrate, 0 to 1, in interval mode: its
    /// blocks come at random intervals (as proof of work gives) with mean
    /// T / share.
    #[arg(long)]
    pub share: Option<f64>,
    /// Draw intervals at random (exponentially) around T, as proof of work does.
    #[arg(long)]
    pub random: bool,
    /// Mine this many blocks now on the (first) chosen node, with its real miner.
    #[arg(long)]
    pub generate: Option<u32>,
}

/// A mode as the command line gives it: `interval:2s`.
pub fn parse_mode(s: &str) -> anyhow::Result<(String, Option<u64>)> {
    match s.split_once(':') {
        Some(("interval", t)) => {
            let ms = super::parse_ms(t).map_err(|e| anyhow::anyhow!("--mode {s}: {e}"))?;
            Ok(("interval".into(), Some(ms)))
        }
        None if ["instant", "continuous", "manual", "paused"].contains(&s) => Ok((s.into(), None)),
        None if s == "interval" => bail!("--mode interval needs a time: interval:2s"),
        _ => bail!("--mode {s:?} is not instant, interval:T, continuous, manual or paused"),
    }
}

/// Sets a mode on one node.
pub async fn set_mode(
    n: &ManifestNode,
    mode: &str,
    share: Option<f64>,
    random: bool,
    threads: Option<u32>,
) -> anyhow::Result<cairn_api::MiningInfo> {
    let (name, interval) = parse_mode(mode)?;
    let (interval, random) = match (interval, share) {
        (Some(ms), Some(s)) => {
            if !(s > 0.0 && s <= 1.0) {
                bail!("--share {s} is not a fraction above 0 and at most 1");
            }
            (Some(((ms as f64) / s).round().max(1.0) as u64), true)
        }
        (None, Some(_)) => bail!("--share needs an interval mode: --mode interval:T --share S"),
        (i, None) => (i, random),
    };
    client(n)?
        .mining_set_mode(name, interval, Some(random), threads)
        .await
        .with_context(|| format!("node {}: mining_setMode", n.index))
}

/// `testnet mine`.
pub async fn mine(args: MineArgs) -> anyhow::Result<()> {
    let m = Manifest::load(&args.dir.dir)?;
    let mut targets: Vec<usize> = if args.node.is_empty() {
        m.nodes
            .iter()
            .filter(|n| n.role == "miner")
            .map(|n| n.index)
            .collect()
    } else {
        args.node.clone()
    };
    if targets.is_empty() {
        targets.push(0);
    }
    if args.mode.is_none() && args.generate.is_none() && args.threads.is_none() {
        bail!("say what to do: --mode MODE, --threads N or --generate N");
    }
    for &k in &targets {
        let n = m.node(k)?;
        let mode = match &args.mode {
            Some(mode) => mode.clone(),
            None if args.threads.is_some() => {
                let info = client(n)?.mining_get_info().await?;
                match (info.mode.as_str(), info.interval_ms) {
                    ("interval", Some(ms)) => format!("interval:{ms}ms"),
                    ("stopped", _) => "manual".into(),
                    (other, _) => other.to_string(),
                }
            }
            None => continue,
        };
        let info = set_mode(n, &mode, args.share, args.random, args.threads).await?;
        println!(
            "node-{k}: {}{} on {} threads",
            info.mode,
            match info.interval_ms {
                Some(ms) if info.random => format!(" (random, mean {ms} ms)"),
                Some(ms) => format!(" (every {ms} ms)"),
                None => String::new(),
            },
            info.threads
        );
    }
    if let Some(count) = args.generate {
        let n = m.node(targets[0])?;
        let address = n
            .miner_address
            .clone()
            .or_else(|| m.accounts.first().map(|a| a.address.clone()));
        let Some(address) = address else {
            bail!("node {} has no miner address in the manifest", n.index);
        };
        let hashes = client(n)?.mining_generate(count, address).await?;
        println!(
            "node-{}: mined {} blocks, last {}",
            n.index,
            hashes.len(),
            hashes.last().map(|h| h.to_hex()).unwrap_or_default()
        );
    }
    Ok(())
}

// ----- status -----

/// One node's view, or why it has none.
pub struct NodeState {
    pub index: usize,
    pub info: Result<cairn_api::ChainInfo, String>,
    pub peers: usize,
    pub mempool: u64,
    pub mode: String,
}

pub async fn node_states(m: &Manifest) -> Vec<NodeState> {
    let mut out = Vec::new();
    for n in &m.nodes {
        let mut s = NodeState {
            index: n.index,
            info: Err(String::new()),
            peers: 0,
            mempool: 0,
            mode: String::new(),
        };
        match client(n) {
            Err(e) => s.info = Err(format!("{e:#}")),
            Ok(c) => match c.chain_get_info().await {
                Err(e) => s.info = Err(e.to_string()),
                Ok(info) => {
                    s.info = Ok(info);
                    s.peers = c.net_get_peers().await.map(|p| p.len()).unwrap_or(0);
                    s.mempool = c.mempool_get_info().await.map(|p| p.count).unwrap_or(0);
                    s.mode = c
                        .mining_get_info()
                        .await
                        .map(|i| i.mode)
                        .unwrap_or_default();
                }
            },
        }
        out.push(s);
    }
    out
}

/// The last block all answering nodes share: a binary search over heights,
/// since once two chains differ at a height they differ above it too.
pub async fn common_ancestor(
    m: &Manifest,
    states: &[NodeState],
) -> anyhow::Result<Option<(u64, BlockHash)>> {
    let mut clients = Vec::new();
    let mut min_height = u64::MAX;
    for s in states {
        if let Ok(info) = &s.info {
            clients.push(client(&m.nodes[s.index])?);
            min_height = min_height.min(info.height);
        }
    }
    if clients.is_empty() {
        return Ok(None);
    }
    async fn agree(clients: &[HttpClient], h: u64) -> anyhow::Result<Option<BlockHash>> {
        let mut first = None;
        for c in clients {
            let hash = c.chain_get_block_hash(h).await?;
            match first {
                None => first = Some(hash),
                Some(f) if f != hash => return Ok(None),
                _ => {}
            }
        }
        Ok(first)
    }
    let (mut lo, mut hi) = (0u64, min_height);
    let mut best = agree(&clients, 0).await?.map(|h| (0, h));
    if best.is_none() {
        return Ok(None); // different genesis blocks: different networks
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match agree(&clients, mid).await? {
            Some(h) => {
                best = Some((mid, h));
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    Ok(best)
}

/// The last block shared by the tips the nodes reported, found by walking
/// back from those very tips (so nodes that move on meanwhile do not skew
/// it). `None` when a walk fails or is longer than [`MAX_WALK`] steps.
async fn fork_point(m: &Manifest, states: &[NodeState]) -> Option<(u64, BlockHash)> {
    // (height, hash, the node that reported it)
    let mut heads: Vec<(u64, BlockHash, usize)> = Vec::new();
    for s in states {
        if let Ok(i) = &s.info
            && !heads.iter().any(|h| h.1 == i.best_hash)
        {
            heads.push((i.height, i.best_hash, s.index));
        }
    }
    let mut steps = 0;
    while heads.windows(2).any(|w| w[0].1 != w[1].1) {
        steps += 1;
        if steps > MAX_WALK {
            return None;
        }
        // step the highest head back to its parent
        let k = (0..heads.len()).max_by_key(|&k| heads[k].0)?;
        let (height, hash, node) = heads[k];
        if height == 0 {
            return None; // different genesis blocks
        }
        let b = client(&m.nodes[node])
            .ok()?
            .chain_get_block(cairn_api::BlockId::Hash(hash))
            .await
            .ok()?;
        heads[k] = (height - 1, b.header.parent, node);
    }
    heads.first().map(|h| (h.0, h.1))
}

/// Most blocks `status` walks back to find where tips diverged.
const MAX_WALK: usize = 2_000;

/// `testnet status`.
pub async fn status(dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let m = Manifest::load(dir)?;
    let states = node_states(&m).await;
    let tips: std::collections::BTreeSet<BlockHash> = states
        .iter()
        .filter_map(|s| s.info.as_ref().ok().map(|i| i.best_hash))
        .collect();
    let ancestor = if tips.len() > 1 {
        match fork_point(&m, &states).await {
            Some(a) => Some(a),
            None => common_ancestor(&m, &states).await?,
        }
    } else {
        None
    };
    let nodes: Vec<serde_json::Value> = states
        .iter()
        .map(|s| {
            let n = &m.nodes[s.index];
            match &s.info {
                Ok(i) => json!({
                    "index": s.index, "rpc_url": n.rpc_url, "p2p_addr": n.p2p_addr, "datadir": n.datadir,
                    "role": n.role, "up": true, "height": i.height, "best_hash": i.best_hash,
                    "total_work": i.total_work, "peers": s.peers, "mempool": s.mempool,
                    "mining": s.mode, "syncing": i.syncing,
                }),
                Err(e) => json!({
                    "index": s.index, "rpc_url": n.rpc_url, "p2p_addr": n.p2p_addr, "datadir": n.datadir,
                    "role": n.role, "up": false, "error": e,
                }),
            }
        })
        .collect();
    if as_json {
        let out = json!({
            "network": m.network,
            "topology": m.topology,
            "nodes": nodes,
            "converged": tips.len() <= 1,
            "tips": tips.len(),
            "common_ancestor": ancestor.map(|(h, hash)| json!({"height": h, "hash": hash})),
            "partition": m.faults.groups,
            "links": m.faults.links,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "testnet in {} ({}, topology {})",
        dir.display(),
        m.network,
        m.topology.as_deref().unwrap_or("mesh")
    );
    println!(
        "  {:<8} {:<6} {:>7}  {:<18} {:>5} {:>7}  mining",
        "node", "role", "height", "tip", "peers", "mempool"
    );
    for s in &states {
        let n = &m.nodes[s.index];
        match &s.info {
            Err(e) => println!(
                "  {:<8} {:<6} down or unreachable at {}: {e}",
                n.name(),
                n.role,
                n.rpc_url
            ),
            Ok(i) => println!(
                "  {:<8} {:<6} {:>7}  {:<18} {:>5} {:>7}  {}{}",
                n.name(),
                n.role,
                i.height,
                &i.best_hash.to_hex()[..16],
                s.peers,
                s.mempool,
                s.mode,
                if i.syncing { "  syncing" } else { "" }
            ),
        }
    }
    match (tips.len(), ancestor) {
        (0, _) => println!("no node answers"),
        (1, _) => println!("one tip everywhere"),
        (t, Some((h, hash))) => println!(
            "{t} different tips; last common block {} at height {h}",
            &hash.to_hex()[..16]
        ),
        (t, None) => println!("{t} different tips and no common block (different networks?)"),
    }
    if !m.faults.groups.is_empty() {
        println!("partition: {:?}", m.faults.groups);
    }
    for l in &m.faults.links {
        println!(
            "link {}-{}: delay {} ms, jitter {} ms, loss {}, rate {} bit/s",
            l.a, l.b, l.rule.delay_ms, l.rule.jitter_ms, l.rule.loss, l.rule.rate_bps
        );
    }
    Ok(())
}

/// Waits until every node in `which` answers with the same tip; returns it.
pub async fn wait_converged(
    m: &Manifest,
    which: &[usize],
    timeout: Duration,
) -> anyhow::Result<BlockHash> {
    let deadline = Instant::now() + timeout;
    let clients: Vec<HttpClient> = which
        .iter()
        .map(|&i| client(&m.nodes[i]))
        .collect::<Result<_, _>>()?;
    loop {
        let mut tips = Vec::new();
        for c in &clients {
            if let Ok(i) = c.chain_get_info().await {
                tips.push(i.best_hash);
            }
        }
        if tips.len() == clients.len() && tips.windows(2).all(|w| w[0] == w[1]) {
            return Ok(tips[0]);
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = tips.iter().map(|t| t.to_hex()[..12].to_string()).collect();
            bail!(
                "nodes {which:?} did not agree on a tip within {} s (tips {shown:?})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- reorg -----

#[derive(Args)]
pub struct ReorgArgs {
    #[command(flatten)]
    pub dir: super::DirArg,
    /// Blocks the reorganisation replaces.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub depth: u32,
    /// The nodes that mine the heavier branch (default: the last node).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one reorganisation did.
#[derive(serde::Serialize)]
pub struct ReorgReport {
    pub depth: u64,
    pub fork_height: u64,
    pub replaced: Vec<BlockHash>,
    pub new_tip: BlockHash,
    pub new_height: u64,
    /// Transfers of the replaced blocks that went back to the mempools.
    pub returned_to_mempool: Vec<String>,
    pub took_ms: u64,
}

/// Runs a reorganisation of `depth` on `heavy` (the rest is replaced).
pub async fn make_reorg(
    m: &mut Manifest,
    dir: &Path,
    depth: u32,
    heavy: &[usize],
) -> anyhow::Result<ReorgReport> {
    let started = Instant::now();
    let all: Vec<usize> = (0..m.nodes.len()).collect();
    let light: Vec<usize> = all.iter().copied().filter(|i| !heavy.contains(i)).collect();
    if heavy.is_empty() || light.is_empty() {
        bail!("--nodes must name some nodes but not all of them");
    }
    for &i in heavy {
        m.node(i)?;
    }
    // 1. no automatic blocks while the branches are built
    let mut modes = Vec::new();
    for n in &m.nodes {
        let info = client(n)?.mining_get_info().await?;
        modes.push(info.clone());
        client(n)?
            .mining_set_mode("manual".into(), None, None, None)
            .await?;
    }
    let result = reorg_steps(m, dir, depth, heavy, &light).await;
    // the partition is lifted and the modes come back whatever happened
    if !m.faults.groups.is_empty() {
        m.faults.groups.clear();
        m.save(dir)?;
        apply_faults(m).await?;
    }
    for (n, info) in m.nodes.iter().zip(modes) {
        let (mode, interval) = match info.mode.as_str() {
            "stopped" => ("manual".to_string(), None),
            other => (other.to_string(), info.interval_ms),
        };
        if let Err(e) = client(n)?
            .mining_set_mode(mode, interval, Some(info.random), None)
            .await
        {
            eprintln!(
                "warning: node {}: cannot restore its mining mode: {e}",
                n.index
            );
        }
    }
    let mut report = result?;
    report.took_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn reorg_steps(
    m: &mut Manifest,
    dir: &Path,
    depth: u32,
    heavy: &[usize],
    light: &[usize],
) -> anyhow::Result<ReorgReport> {
    let everyone: Vec<usize> = (0..m.nodes.len()).collect();
    let fork = wait_converged(m, &everyone, Duration::from_secs(30))
        .await
        .context("before the reorganisation")?;
    // 2. isolate the heavy side
    m.faults.groups = vec![heavy.to_vec(), light.to_vec()];
    m.save(dir)?;
    apply_faults(m).await?;
    // 3. the branch to be replaced
    let l0 = &m.nodes[light[0]];
    let l_addr = l0
        .miner_address
        .clone()
        .context("no miner address for the light side")?;
    let replaced = client(l0)?.mining_generate(depth, l_addr).await?;
    wait_converged(m, light, Duration::from_secs(30)).await?;
    let light_work = client(l0)?.chain_get_info().await?.total_work;
    // 4. a heavier branch on the other side, by the real miner
    let h0 = &m.nodes[heavy[0]];
    let h_addr = h0
        .miner_address
        .clone()
        .context("no miner address for the heavy side")?;
    let hc = client(h0)?;
    hc.mining_generate(depth + 1, h_addr.clone()).await?;
    let mut extra = 0;
    while hc.chain_get_info().await?.total_work <= light_work {
        // a retargeting network may need more blocks for more work
        extra += 1;
        if extra > 1000 {
            bail!("the heavy branch does not get more work than the light one");
        }
        hc.mining_generate(1, h_addr.clone()).await?;
    }
    let heavy_tip = wait_converged(m, heavy, Duration::from_secs(30)).await?;
    // 5. heal and wait until every node switched
    m.faults.groups.clear();
    m.save(dir)?;
    apply_faults(m).await?;
    let tip = wait_converged(m, &everyone, Duration::from_secs(60))
        .await
        .context("after healing")?;
    if tip != heavy_tip {
        bail!("the nodes converged on {tip}, not on the heavy branch {heavy_tip}");
    }
    let lc = client(l0)?;
    let info = lc.chain_get_info().await?;
    let reorg =
        lc.chain_get_reorgs(Some(5)).await?.into_iter().find(|r| {
            r.new_tip == tip || r.disconnected_blocks.iter().any(|h| replaced.contains(h))
        });
    let fork_height = match &reorg {
        Some(r) => r.fork_height,
        None => {
            client(&m.nodes[0])?
                .chain_get_block(cairn_api::BlockId::Hash(fork))
                .await?
                .header
                .height
        }
    };
    let mut returned = Vec::new();
    for h in &replaced {
        let b = lc.chain_get_block(cairn_api::BlockId::Hash(*h)).await?;
        for t in b.transactions {
            if lc
                .chain_get_transaction(t.txid)
                .await
                .is_ok_and(|v| v.status == TxStatus::Pending)
            {
                returned.push(t.txid.to_hex());
            }
        }
    }
    Ok(ReorgReport {
        depth: reorg.map_or(replaced.len() as u64, |r| r.depth),
        fork_height,
        replaced,
        new_tip: tip,
        new_height: info.height,
        returned_to_mempool: returned,
        took_ms: 0,
    })
}

/// `testnet reorg`.
pub async fn reorg(args: ReorgArgs) -> anyhow::Result<()> {
    let dir: PathBuf = args.dir.dir.clone();
    let mut m = Manifest::load(&dir)?;
    let heavy = if args.nodes.is_empty() {
        vec![m.nodes.len() - 1]
    } else {
        args.nodes.clone()
    };
    let r = make_reorg(&mut m, &dir, args.depth, &heavy).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "reorganisation of depth {} from height {}: every node is on {} at height {} ({} ms)",
        r.depth,
        r.fork_height,
        &r.new_tip.to_hex()[..16],
        r.new_height,
        r.took_ms
    );
    println!("blocks replaced:");
    for h in &r.replaced {
        println!("  {h}");
    }
    println!(
        "transfers back in the mempools: {}",
        r.returned_to_mempool.len()
    );
    for t in &r.returned_to_mempool {
        println!("  {t}");
    }
    Ok(())
}
