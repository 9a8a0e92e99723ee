//! `testnet stats`: propagation, stale blocks, reorganisations and mining
//! shares, computed from every node's first-seen records
//! (`lab_getObservations`), and an SVG picture of them.
//!
//! Times compare the clocks of different nodes: exact on one host, as good
//! as the hosts' clock sync (NTP: a few ms) across hosts.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use cairn_api::CairnApiClient;
use serde::Serialize;

use super::manifest::Manifest;

/// Median and 95th percentile of a set of milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub median_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// The `q`-quantile (0..=100) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}

impl Spread {
    pub fn of(mut v: Vec<u64>) -> Spread {
        v.sort_unstable();
        Spread {
            count: v.len(),
            median_ms: quantile(&v, 50),
            p95_ms: quantile(&v, 95),
            max_ms: v.last().copied(),
        }
    }
}

/// How long items took to reach 50%, 90% and 100% of the nodes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Propagation {
    /// Items first seen somewhere as local (mined or submitted there).
    pub items: usize,
    pub to_50pct: Spread,
    pub to_90pct: Spread,
    pub to_100pct: Spread,
    /// Every arrival at a node other than the origin: delay after the origin, ms.
    #[serde(skip)]
    pub arrivals: Vec<u64>,
}

/// Delays to reach fractions of `nodes` nodes, from each item's sightings
/// (`time_ms` per node that saw it, the origin among them).
pub fn propagation(
    sightings: &HashMap<String, (Option<u64>, Vec<u64>)>,
    nodes: usize,
) -> Propagation {
    let mut p = Propagation::default();
    let (mut t50, mut t90, mut t100) = (Vec::new(), Vec::new(), Vec::new());
    for (origin, times) in sightings.values() {
        let Some(t0) = *origin else { continue };
        p.items += 1;
        let mut delays: Vec<u64> = times.iter().map(|t| t.saturating_sub(t0)).collect();
        delays.sort_unstable();
        p.arrivals.extend(delays.iter().skip(1));
        for (pct, out) in [(50u64, &mut t50), (90, &mut t90), (100, &mut t100)] {
            let needed = ((pct * nodes as u64).div_ceil(100)).max(1) as usize;
            if let Some(d) = delays.get(needed - 1) {
                out.push(*d);
            }
        }
    }
    p.to_50pct = Spread::of(t50);
    p.to_90pct = Spread::of(t90);
    p.to_100pct = Spread::of(t100);
    p
}

#[derive(Clone, Debug, Serialize)]
pub struct MinerStats {
    pub index: usize,
    pub mode: String,
    pub threads: u32,
    /// Hash attempts per second now.
    pub hashrate: u64,
    /// Its share of the summed hashrate.
    pub hashrate_share: f64,
    /// In interval modes: its share of the block rate it was set to
    /// (1/interval over the sum of them).
    pub scheduled_share: Option<f64>,
    pub mined: u64,
    pub stale: u64,
    /// Its blocks on the best chain, and their share of all won blocks.
    pub won: u64,
    pub won_share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReorgStats {
    /// Reorganisations summed over the nodes.
    pub count: u64,
    pub max_depth: u64,
    /// Depth of each recorded reorganisation (each node's last 64).
    pub depths: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub nodes: usize,
    pub nodes_answering: usize,
    pub propagation: PropagationReport,
    pub reorg: ReorgStats,
    pub stale: StaleStats,
    pub miners: Vec<MinerStats>,
    /// Time between consecutive best-chain blocks, by their first sighting.
    pub block_intervals: Spread,
    /// Bytes of block relay (announcements, requests, blocks, headers)
    /// all nodes sent, over the blocks they saw; from each node's
    /// `/metrics` since it started.
    pub block_relay_bytes: u64,
    pub bytes_sent_per_block: Option<u64>,
    #[serde(skip)]
    pub intervals: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PropagationReport {
    pub blocks: Propagation,
    pub transfers: Propagation,
}

#[derive(Clone, Debug, Serialize)]
pub struct StaleStats {
    pub mined: u64,
    pub stale: u64,
    /// Stale over mined.
    pub rate: f64,
}

/// Reads every node's records and computes the figures.
pub async fn collect(m: &Manifest) -> anyhow::Result<Stats> {
    collect_with_modes(m, None).await
}

/// [`collect`], with the nodes' mining state as it was earlier (a scenario
/// stops mining before it measures, but reports the modes it ran with).
pub async fn collect_with_modes(
    m: &Manifest,
    modes: Option<&[Option<cairn_api::MiningInfo>]>,
) -> anyhow::Result<Stats> {
    let n = m.nodes.len();
    let mut blocks: HashMap<String, (Option<u64>, Vec<u64>)> = HashMap::new();
    let mut transfers: HashMap<String, (Option<u64>, Vec<u64>)> = HashMap::new();
    let mut local_blocks: HashMap<usize, Vec<(u64, String, u64)>> = HashMap::new();
    let mut answering = 0;
    let mut reorg = ReorgStats {
        count: 0,
        max_depth: 0,
        depths: Vec::new(),
    };
    let mut miners = Vec::new();
    let mut best: Option<(u64, HashMap<u64, String>)> = None;
    for node in &m.nodes {
        let Ok(c) = node.client(Duration::from_secs(30)) else {
            continue;
        };
        let Ok(obs) = c.lab_get_observations(None).await else {
            continue;
        };
        answering += 1;
        for (items, list) in [(&mut blocks, &obs.blocks), (&mut transfers, &obs.transfers)] {
            for s in list {
                let e = items.entry(s.id.clone()).or_insert((None, Vec::new()));
                e.1.push(s.time_ms);
                if s.from == "local" {
                    e.0 = Some(e.0.map_or(s.time_ms, |t: u64| t.min(s.time_ms)));
                }
            }
        }
        for s in obs.blocks.iter().filter(|s| s.from == "local") {
            local_blocks
                .entry(node.index)
                .or_default()
                .push((s.height, s.id.clone(), s.time_ms));
        }
        reorg.count += obs.reorgs;
        for r in c.chain_get_reorgs(Some(64)).await.unwrap_or_default() {
            reorg.depths.push(r.depth);
            reorg.max_depth = reorg.max_depth.max(r.depth);
        }
        let info = match modes.and_then(|v| v.get(node.index).cloned().flatten()) {
            Some(i) => i,
            None => c.mining_get_info().await.context("mining_getInfo")?,
        };
        miners.push(MinerStats {
            index: node.index,
            mode: info.mode.clone(),
            threads: info.threads,
            hashrate: info.hashrate,
            hashrate_share: 0.0,
            scheduled_share: info
                .interval_ms
                .filter(|_| info.mode == "interval")
                .map(|ms| 1.0 / ms.max(1) as f64),
            mined: obs.mined,
            stale: obs.stale_mined.len() as u64,
            won: 0,
            won_share: 0.0,
        });
        if best.is_none() {
            // the best chain as this node sees it, over the heights the records cover
            let chain = c.chain_get_info().await?;
            let low = obs
                .blocks
                .iter()
                .map(|s| s.height)
                .min()
                .unwrap_or(chain.height);
            let mut by_height = HashMap::new();
            for h in low..=chain.height {
                if let Ok(hash) = c.chain_get_block_hash(h).await {
                    by_height.insert(h, hash.to_hex());
                }
            }
            best = Some((chain.height, by_height));
        }
    }
    let (_, best_chain) = best.unwrap_or_default();
    let on_best: std::collections::HashSet<&String> = best_chain.values().collect();
    // blocks won: locally mined blocks on the best chain
    let mut total_won = 0;
    for ms in &mut miners {
        ms.won = local_blocks.get(&ms.index).map_or(0, |v| {
            v.iter().filter(|(_, id, _)| on_best.contains(id)).count() as u64
        });
        total_won += ms.won;
    }
    let total_rate: u64 = miners
        .iter()
        .filter(|m| m.mode != "manual" && m.mode != "paused" && m.mode != "stopped")
        .map(|m| m.hashrate)
        .sum();
    let total_sched: f64 = miners.iter().filter_map(|m| m.scheduled_share).sum();
    for ms in &mut miners {
        let active = ms.mode != "manual" && ms.mode != "paused" && ms.mode != "stopped";
        ms.hashrate_share = if active && total_rate > 0 {
            ms.hashrate as f64 / total_rate as f64
        } else {
            0.0
        };
        ms.scheduled_share = ms.scheduled_share.map(|s| s / total_sched);
        ms.won_share = if total_won > 0 {
            ms.won as f64 / total_won as f64
        } else {
            0.0
        };
    }
    // block intervals along the best chain, by the first sighting anywhere
    let mut first: Vec<(u64, u64)> = best_chain
        .iter()
        .filter_map(|(h, id)| {
            let (o, times) = blocks.get(id)?;
            Some((*h, o.or_else(|| times.iter().min().copied())?))
        })
        .collect();
    first.sort_unstable();
    let intervals: Vec<u64> = first
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .collect();
    let mut relay_bytes = 0;
    for node in &m.nodes {
        relay_bytes += scrape_block_bytes(&node.rpc_url).await.unwrap_or(0);
    }
    let distinct_blocks = blocks.len() as u64;
    let mined: u64 = miners.iter().map(|m| m.mined).sum();
    let stale: u64 = miners.iter().map(|m| m.stale).sum();
    Ok(Stats {
        nodes: n,
        nodes_answering: answering,
        propagation: PropagationReport {
            blocks: propagation(&blocks, n),
            transfers: propagation(&transfers, n),
        },
        reorg,
        stale: StaleStats {
            mined,
            stale,
            rate: if mined > 0 {
                stale as f64 / mined as f64
            } else {
                0.0
            },
        },
        miners: miners
            .into_iter()
            .filter(|m| m.mined > 0 || !["manual", "paused", "stopped"].contains(&m.mode.as_str()))
            .collect(),
        block_intervals: Spread::of(intervals.clone()),
        block_relay_bytes: relay_bytes,
        bytes_sent_per_block: relay_bytes.checked_div(distinct_blocks),
        intervals,
    })
}

/// Message types that carry blocks or their announcements.
const BLOCK_RELAY: &[&str] = &[
    "newheaders",
    "getblocks",
    "block",
    "headers",
    "getheaders",
    "notfound",
    "compactblock",
    "getblocktxs",
    "blocktxs",
];
/// Most bytes read from one `/metrics` page.
const MAX_METRICS_BYTES: u64 = 4 << 20;

/// Bytes of block relay a node sent, from its `/metrics` (no login needed).
async fn scrape_block_bytes(rpc_url: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = rpc_url.strip_prefix("http://")?.trim_end_matches('/');
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(hostport).await.ok()?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        s.take(MAX_METRICS_BYTES)
            .read_to_end(&mut body)
            .await
            .ok()?;
        Some(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&body);
    Some(
        text.lines()
            .filter(|l| l.starts_with("cairn_p2p_bytes_total{") && l.contains("direction=\"out\""))
            .filter(|l| {
                BLOCK_RELAY
                    .iter()
                    .any(|k| l.contains(&format!("type=\"{k}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum(),
    )
}

fn show(s: &Spread) -> String {
    match (s.median_ms, s.p95_ms) {
        (Some(m), Some(p)) => format!("median {m:>6} ms   p95 {p:>6} ms   ({} items)", s.count),
        _ => "no data".to_string(),
    }
}

/// Prints the figures for a person.
pub fn print(s: &Stats) {
    println!("{} nodes ({} answering)", s.nodes, s.nodes_answering);
    for (what, p) in [
        ("blocks", &s.propagation.blocks),
        ("transfers", &s.propagation.transfers),
    ] {
        println!("{what} propagation ({} with a known origin):", p.items);
        println!("  to 50% of nodes   {}", show(&p.to_50pct));
        println!("  to 90% of nodes   {}", show(&p.to_90pct));
        println!("  to 100% of nodes  {}", show(&p.to_100pct));
    }
    println!("block intervals     {}", show(&s.block_intervals));
    if let Some(b) = s.bytes_sent_per_block {
        println!("block relay         {b} bytes sent per block (all nodes)");
    }
    println!(
        "stale blocks        {} of {} mined ({:.1}%)",
        s.stale.stale,
        s.stale.mined,
        s.stale.rate * 100.0
    );
    println!(
        "reorganisations     {} (deepest {}, depths {:?})",
        s.reorg.count, s.reorg.max_depth, s.reorg.depths
    );
    if !s.miners.is_empty() {
        // the share of power: the scheduled one in interval modes (blocks
        // come on a timer there, so the hash rate says little), else the
        // measured hash rate
        println!("  node  mode        threads  power share  mined  stale  won  won share");
        for m in &s.miners {
            println!(
                "  {:<5} {:<11} {:>7}  {:>10.1}%  {:>5}  {:>5}  {:>3}  {:>8.1}%",
                m.index,
                m.mode,
                m.threads,
                m.scheduled_share.unwrap_or(m.hashrate_share) * 100.0,
                m.mined,
                m.stale,
                m.won,
                m.won_share * 100.0
            );
        }
    }
}

/// Draws the propagation CDF and the block intervals into an SVG file.
pub fn plot(s: &Stats, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    // propagation: fraction of arrivals within x ms
    let cdf = |v: &[u64]| -> Vec<(f64, f64)> {
        let mut v = v.to_vec();
        v.sort_unstable();
        let n = v.len().max(1) as f64;
        v.iter()
            .enumerate()
            .map(|(i, d)| (*d as f64, (i + 1) as f64 / n))
            .collect()
    };
    let b = cdf(&s.propagation.blocks.arrivals);
    let t = cdf(&s.propagation.transfers.arrivals);
    let xmax = b.iter().chain(t.iter()).map(|p| p.0).fold(10.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&left)
        .caption("Propagation: arrivals within x ms", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..xmax, 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("ms after the origin")
        .y_desc("fraction")
        .draw()?;
    chart
        .draw_series(LineSeries::new(b, &BLUE))?
        .label("blocks")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(t, &RED))?
        .label("transfers")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    // block intervals, in chain order
    let iv: Vec<(f64, f64)> = s
        .intervals
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64, *v as f64))
        .collect();
    let ymax = iv.iter().map(|p| p.1).fold(10.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&right)
        .caption("Block intervals", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(54)
        .build_cartesian_2d(0f64..(iv.len().max(2) as f64), 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("block (chain order)")
        .y_desc("ms since the previous")
        .draw()?;
    chart.draw_series(iv.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))?;
    root.present()?;
    Ok(())
}

/// `testnet stats`.
pub async fn stats(dir: &Path, json: bool, plot_to: Option<&Path>) -> anyhow::Result<()> {
    let m = Manifest::load(dir)?;
    let s = collect(&m).await?;
    if let Some(p) = plot_to {
        plot(&s, p).with_context(|| format!("cannot draw {}", p.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print(&s);
        if let Some(p) = plot_to {
            println!("picture: {}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_propagation() {
        assert_eq!(quantile(&[], 50), None);
        assert_eq!(quantile(&[5], 95), Some(5));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 50), Some(50));
        assert_eq!(quantile(&v, 95), Some(95));
        assert_eq!(quantile(&v, 100), Some(100));
        let mut items = HashMap::new();
        // origin at 1000, four nodes: 0, 10, 20, 300 ms
        items.insert("a".to_string(), (Some(1000), vec![1000, 1010, 1300, 1020]));
        // seen by two of four
        items.insert("b".to_string(), (Some(0), vec![0, 40]));
        // no known origin: not counted
        items.insert("c".to_string(), (None, vec![5, 6]));
        let p = propagation(&items, 4);
        assert_eq!(p.items, 2);
        assert_eq!(p.to_50pct.count, 2);
        assert_eq!(p.to_50pct.max_ms, Some(40));
        assert_eq!(p.to_90pct.count, 1);
        assert_eq!(p.to_100pct.median_ms, Some(300));
        assert_eq!(p.arrivals.len(), 4);
    }
}
