//! `testnet run SCENARIO.toml`: an experiment in one file. The network
//! (nodes, miners, block time, topology, link defaults), a timeline of
//! actions (partition, heal, link, mine, kill, start, reorg, load) and
//! assertions on the result. The run prints a report, writes it as JSON
//! next to the file (`NAME.report.json`), and fails naming every
//! assertion that did not hold.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api::LinkView;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::control;
use super::manifest::{LinkFault, Manifest};
use super::parse_ms;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub network: NetworkSpec,
    #[serde(default)]
    pub timeline: Vec<Event>,
    /// How long the timeline runs (default: until just after the last event).
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub assert: Assertions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub nodes: u32,
    #[serde(default = "one")]
    pub miners: u32,
    #[serde(default)]
    pub block_time: Option<String>,
    #[serde(default)]
    pub topology: Option<String>,
    /// `dev` (default) or `testnet`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub threads: Option<u32>,
    /// Shaping of every link from the start.
    #[serde(default)]
    pub link: Option<LinkSpec>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub loss: Option<f64>,
    #[serde(default)]
    pub rate: Option<String>,
}

impl LinkSpec {
    fn rule(&self) -> anyhow::Result<LinkView> {
        let ms = |s: &Option<String>| -> anyhow::Result<u64> {
            s.as_deref()
                .map(parse_ms)
                .transpose()
                .map_err(anyhow::Error::msg)
                .map(Option::unwrap_or_default)
        };
        let loss = self.loss.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&loss) {
            bail!("loss {loss} is not between 0 and 1");
        }
        Ok(LinkView {
            drop: false,
            delay_ms: ms(&self.delay)?,
            jitter_ms: ms(&self.jitter)?,
            loss,
            rate_bps: self
                .rate
                .as_deref()
                .map(control::parse_rate)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or(0),
        })
    }
}

/// One action at a time `at` after the start. Exactly one action per event.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: String,
    /// Groups, e.g. `["0,1,2", "3,4,5"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mine: Option<MineEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorg: Option<ReorgEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadEvent>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEvent {
    /// A node index or `all`.
    pub a: String,
    pub b: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

impl LinkEvent {
    fn spec(&self) -> LinkSpec {
        LinkSpec {
            delay: self.delay.clone(),
            jitter: self.jitter.clone(),
            loss: self.loss,
            rate: self.rate.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MineEvent {
    /// instant, interval:T, continuous, manual, paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Default: the miners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<usize>,
    /// Hashrate shares, one per node in `nodes` (interval modes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<f64>,
    #[serde(default)]
    pub random: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReorgEvent {
    pub depth: u32,
    #[serde(default)]
    pub nodes: Vec<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadEvent {
    pub tps: u32,
    pub duration: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertions {
    /// After the timeline (mining stopped), every node on one tip within this.
    pub converges_within: Option<String>,
    pub max_reorg_depth: Option<u64>,
    pub min_reorgs: Option<u64>,
    /// Blocks: p95 over blocks of the time to reach 90% of the nodes.
    pub max_propagation_p95_ms: Option<u64>,
    /// Blocks: same, at least (to show a delay took effect).
    pub min_propagation_p95_ms: Option<u64>,
    pub min_confirmed_tps: Option<f64>,
    pub max_stale_rate: Option<f64>,
    pub min_height: Option<u64>,
}

impl Event {
    fn action(&self) -> anyhow::Result<&'static str> {
        let set: Vec<&'static str> = [
            (self.partition.is_some(), "partition"),
            (self.heal.is_some(), "heal"),
            (self.link.is_some(), "link"),
            (self.mine.is_some(), "mine"),
            (self.kill.is_some(), "kill"),
            (self.start.is_some(), "start"),
            (self.reorg.is_some(), "reorg"),
            (self.load.is_some(), "load"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        match set.as_slice() {
            [one] => Ok(one),
            [] => bail!(
                "event at {} has no action (partition, heal, link, mine, kill, start, reorg or load)",
                self.at
            ),
            many => bail!(
                "event at {} has several actions {many:?}: one per event",
                self.at
            ),
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let s: Scenario =
            toml::from_str(&text).with_context(|| format!("scenario {}", path.display()))?;
        s.check()
            .with_context(|| format!("scenario {}", path.display()))?;
        Ok(s)
    }

    fn check(&self) -> anyhow::Result<()> {
        let n = self.network.nodes as usize;
        if !(1..=32).contains(&n) {
            bail!("network.nodes must be between 1 and 32");
        }
        if self.network.miners > self.network.nodes {
            bail!("network.miners is more than network.nodes");
        }
        if let Some(l) = &self.network.link {
            l.rule()?;
        }
        let node = |k: usize| {
            if k < n {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "node {k} does not exist (nodes 0 to {})",
                    n - 1
                ))
            }
        };
        for e in &self.timeline {
            parse_ms(&e.at)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("at = {:?}", e.at))?;
            e.action()?;
            if let Some(k) = e.kill.or(e.start) {
                node(k)?;
            }
            if let Some(r) = &e.reorg {
                r.nodes.iter().try_for_each(|k| node(*k))?;
            }
            if let Some(m) = &e.mine {
                m.nodes.iter().try_for_each(|k| node(*k))?;
                if let Some(mode) = &m.mode {
                    control::parse_mode(mode)?;
                }
                if !m.shares.is_empty() && m.shares.len() != m.nodes.len() {
                    bail!("mine.shares needs one share per node of mine.nodes");
                }
            }
            if let Some(p) = &e.partition {
                for g in p {
                    super::parse_indices(g)?.into_iter().try_for_each(node)?;
                }
            }
            if let Some(l) = &e.load {
                parse_ms(&l.duration).map_err(anyhow::Error::msg)?;
            }
            if let Some(l) = &e.link {
                l.spec().rule()?;
            }
        }
        if let Some(d) = &self.duration {
            parse_ms(d).map_err(anyhow::Error::msg)?;
        }
        if let Some(c) = &self.assert.converges_within {
            parse_ms(c).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Done {
    at_ms: u64,
    action: &'static str,
    event: Event,
    took_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, Clone)]
pub struct Verdict {
    pub assertion: String,
    pub limit: serde_json::Value,
    pub actual: serde_json::Value,
    pub ok: bool,
}

async fn perform(
    m: &mut Manifest,
    dir: &Path,
    e: &Event,
) -> anyhow::Result<Option<serde_json::Value>> {
    if let Some(groups) = &e.partition {
        control::partition(dir, groups).await?;
    } else if e.heal.is_some() {
        control::heal(dir).await?;
    } else if let Some(l) = &e.link {
        let rule = l.spec().rule()?;
        control::link(control::LinkArgs {
            dir: super::DirArg {
                dir: dir.to_path_buf(),
            },
            a: l.a.clone(),
            b: l.b.clone(),
            delay: Some(rule.delay_ms),
            jitter: Some(rule.jitter_ms),
            loss: Some(rule.loss),
            rate: (rule.rate_bps > 0).then_some(rule.rate_bps),
        })
        .await?;
    } else if let Some(mine) = &e.mine {
        let nodes = if mine.nodes.is_empty() {
            m.nodes
                .iter()
                .filter(|n| n.role == "miner")
                .map(|n| n.index)
                .collect()
        } else {
            mine.nodes.clone()
        };
        for (i, &k) in nodes.iter().enumerate() {
            let args = control::MineArgs {
                dir: super::DirArg {
                    dir: dir.to_path_buf(),
                },
                mode: mine.mode.clone(),
                node: vec![k],
                threads: mine.threads,
                share: mine.shares.get(i).copied(),
                random: mine.random,
                generate: mine.generate,
            };
            control::mine(args).await?;
        }
    } else if let Some(k) = e.kill {
        super::up::kill(dir, k)?;
    } else if let Some(k) = e.start {
        super::up::start(dir, k).await?;
    } else if let Some(r) = &e.reorg {
        *m = Manifest::load(dir)?;
        let heavy = if r.nodes.is_empty() {
            vec![m.nodes.len() - 1]
        } else {
            r.nodes.clone()
        };
        let report = control::make_reorg(m, dir, r.depth, &heavy).await?;
        return Ok(Some(serde_json::to_value(report)?));
    }
    *m = Manifest::load(dir)?;
    Ok(None)
}

/// Waits (mining stopped) until every node is on one tip. Tips of equal
/// work are a tie that only a next block breaks (each node keeps the one
/// it saw first), so once such a tie holds still for a second, node 0
/// mines one block. Returns whether it converged and how many ties it broke.
async fn converge(m: &Manifest, limit: Duration) -> (bool, u32) {
    let deadline = Instant::now() + limit;
    let mut ties = 0;
    let mut last: Option<(Vec<cairn_consensus::BlockHash>, Instant)> = None;
    loop {
        let states = control::node_states(m).await;
        let infos: Vec<&cairn_api::ChainInfo> =
            states.iter().filter_map(|s| s.info.as_ref().ok()).collect();
        let mut tips: Vec<cairn_consensus::BlockHash> = infos.iter().map(|i| i.best_hash).collect();
        if !infos.is_empty()
            && infos.len() == m.nodes.len()
            && tips.windows(2).all(|w| w[0] == w[1])
        {
            return (true, ties);
        }
        if Instant::now() > deadline {
            return (false, ties);
        }
        tips.sort();
        tips.dedup();
        let tie = infos.windows(2).all(|w| w[0].total_work == w[1].total_work);
        let still = match &last {
            Some((t, since)) if *t == tips => since.elapsed() > Duration::from_secs(1),
            _ => {
                last = Some((tips.clone(), Instant::now()));
                false
            }
        };
        if tie && still && ties < 3 {
            let n = &m.nodes[0];
            if let (Ok(c), Some(addr)) =
                (n.client(Duration::from_secs(30)), n.miner_address.clone())
            {
                let _ = cairn_api::CairnApiClient::mining_generate(&c, 1, addr).await;
                ties += 1;
                last = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `testnet run SCENARIO.toml`.
pub async fn run(file: &Path, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let sc = Scenario::load(file)?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let dir = dir.unwrap_or_else(|| PathBuf::from("data/scenarios").join(&stem));
    if dir.join("manifest.json").exists() {
        // a fresh network each run: stop what an earlier run left, then start over
        let _ = super::up::down(&dir);
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    } else if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not a testnet directory: choose another --dir",
            dir.display()
        );
    }
    println!(
        "scenario {}: {}",
        if sc.name.is_empty() { &stem } else { &sc.name },
        sc.description
    );
    let net = &sc.network;
    super::up::up(super::up::UpArgs {
        nodes: net.nodes,
        miners: net.miners,
        dir: dir.clone(),
        network: net.network.clone(),
        genesis: None,
        block_time: net.block_time.clone(),
        topology: net.topology.clone().unwrap_or_else(|| "mesh".into()),
        threads: net.threads,
        detach: true,
    })
    .await?;
    let dir = dir.canonicalize()?;
    // Ctrl-C stops the nodes too (they run detached from this terminal)
    let result = tokio::select! {
        r = run_timeline(&sc, &dir, file, &stem) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let down = super::up::down(&dir);
    let verdicts = result?;
    down?;
    let failed: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.ok)
        .map(|v| format!("{} (limit {}, actual {})", v.assertion, v.limit, v.actual))
        .collect();
    if !failed.is_empty() {
        bail!("assertion failed: {}", failed.join("; "));
    }
    Ok(())
}

async fn run_timeline(
    sc: &Scenario,
    dir: &Path,
    file: &Path,
    stem: &str,
) -> anyhow::Result<Vec<Verdict>> {
    let mut m = Manifest::load(dir)?;
    if let Some(l) = &sc.network.link {
        let rule = l.rule()?;
        m.faults.links = m
            .edges()?
            .into_iter()
            .map(|(a, b)| LinkFault {
                a,
                b,
                rule: rule.clone(),
            })
            .collect();
        m.save(dir)?;
        control::apply_faults(&m).await?;
    }
    let mut events = sc.timeline.clone();
    events.sort_by_key(|e| parse_ms(&e.at).unwrap_or(0));
    let last = events
        .last()
        .map(|e| parse_ms(&e.at).unwrap_or(0))
        .unwrap_or(0);
    let duration = sc
        .duration
        .as_deref()
        .map(parse_ms)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .unwrap_or(last + 1000);
    let start = Instant::now();
    let mut done = Vec::new();
    let mut loads = tokio::task::JoinSet::new();
    for e in events {
        let at = parse_ms(&e.at).unwrap_or(0);
        let wait = Duration::from_millis(at).saturating_sub(start.elapsed());
        tokio::time::sleep(wait).await;
        let action = e.action()?;
        let began = Instant::now();
        let at_ms = start.elapsed().as_millis() as u64;
        println!("[{:>6} ms] {action}", at_ms);
        let (result, error) = if let Some(l) = &e.load {
            let mm = m.clone();
            let (tps, d) = (l.tps, parse_ms(&l.duration).unwrap_or(1000));
            loads.spawn(async move { super::load::run_load(&mm, tps, d, 30_000).await });
            (None, None)
        } else {
            match perform(&mut m, dir, &e).await {
                Ok(r) => (r, None),
                Err(err) => {
                    eprintln!("  {action} failed: {err:#}");
                    (None, Some(format!("{err:#}")))
                }
            }
        };
        done.push(Done {
            at_ms,
            action,
            event: e,
            took_ms: began.elapsed().as_millis() as u64,
            result,
            error,
        });
    }
    tokio::time::sleep(Duration::from_millis(duration).saturating_sub(start.elapsed())).await;
    let mut load_reports = Vec::new();
    while let Some(r) = loads.join_next().await {
        match r {
            Ok(Ok(rep)) => load_reports.push(rep),
            Ok(Err(e)) => eprintln!("load failed: {e:#}"),
            Err(e) => eprintln!("load task failed: {e}"),
        }
    }
    // the end: no more blocks, then how long until one tip everywhere
    let m = Manifest::load(dir)?;
    let mut modes = Vec::new();
    for n in &m.nodes {
        let info = match n.client(Duration::from_secs(10)) {
            Ok(c) => cairn_api::CairnApiClient::mining_get_info(&c).await.ok(),
            Err(_) => None,
        };
        modes.push(info);
        let _ = control::set_mode(n, "manual", None, false, None).await;
    }
    let limit = sc
        .assert
        .converges_within
        .as_deref()
        .map(parse_ms)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .unwrap_or(60_000);
    let conv_start = Instant::now();
    let (converged, ties_broken) = converge(&m, Duration::from_millis(limit)).await;
    let converged_after_ms = converged.then(|| conv_start.elapsed().as_millis() as u64);
    let stats = super::stats::collect_with_modes(&m, Some(&modes)).await?;
    let height = control::node_states(&m)
        .await
        .iter()
        .filter_map(|s| s.info.as_ref().ok().map(|i| i.height))
        .max()
        .unwrap_or(0);
    let confirmed_tps: f64 = load_reports.iter().map(|r| r.confirmed_tps).sum();
    let mut verdicts = Vec::new();
    let mut check = |name: &str, limit: serde_json::Value, actual: serde_json::Value, ok: bool| {
        verdicts.push(Verdict {
            assertion: name.to_string(),
            limit,
            actual,
            ok,
        });
    };
    let a = &sc.assert;
    if let Some(c) = &a.converges_within {
        check(
            "converges_within",
            json!(c),
            json!(converged_after_ms.map(|ms| format!("{ms}ms"))),
            converged,
        );
    }
    if let Some(x) = a.max_reorg_depth {
        check(
            "max_reorg_depth",
            json!(x),
            json!(stats.reorg.max_depth),
            stats.reorg.max_depth <= x,
        );
    }
    if let Some(x) = a.min_reorgs {
        check(
            "min_reorgs",
            json!(x),
            json!(stats.reorg.count),
            stats.reorg.count >= x,
        );
    }
    let p95 = stats.propagation.blocks.to_90pct.p95_ms;
    if let Some(x) = a.max_propagation_p95_ms {
        check(
            "max_propagation_p95_ms",
            json!(x),
            json!(p95),
            p95.is_some_and(|p| p <= x),
        );
    }
    if let Some(x) = a.min_propagation_p95_ms {
        check(
            "min_propagation_p95_ms",
            json!(x),
            json!(p95),
            p95.is_some_and(|p| p >= x),
        );
    }
    if let Some(x) = a.min_confirmed_tps {
        check(
            "min_confirmed_tps",
            json!(x),
            json!(confirmed_tps),
            confirmed_tps >= x,
        );
    }
    if let Some(x) = a.max_stale_rate {
        check(
            "max_stale_rate",
            json!(x),
            json!(stats.stale.rate),
            stats.stale.rate <= x,
        );
    }
    if let Some(x) = a.min_height {
        check("min_height", json!(x), json!(height), height >= x);
    }
    let report = json!({
        "scenario": if sc.name.is_empty() { stem } else { &sc.name },
        "file": file.display().to_string(),
        "dir": dir.display().to_string(),
        "nodes": m.nodes.len(),
        "height": height,
        "timeline": done,
        "converged_after_ms": converged_after_ms,
        "ties_broken": ties_broken,
        "stats": stats,
        "load": load_reports,
        "assertions": verdicts.clone(),
        "passed": verdicts.iter().all(|v| v.ok),
    });
    let out = file.with_file_name(format!("{stem}.report.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!();
    super::stats::print(&stats);
    for l in &load_reports {
        super::load::print(l);
    }
    match converged_after_ms {
        Some(ms) => println!(
            "converged {ms} ms after the timeline ended, at height {height}{}",
            if ties_broken > 0 {
                format!(" ({ties_broken} tie of equal-work tips broken by one more block)")
            } else {
                String::new()
            }
        ),
        None => println!("did not converge within {limit} ms"),
    }
    println!("assertions:");
    for v in &verdicts {
        println!(
            "  {} {}: limit {}, actual {}",
            if v.ok { "ok  " } else { "FAIL" },
            v.assertion,
            v.limit,
            v.actual
        );
    }
    println!("report: {}", out.display());
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example scenarios in the repository are valid.
    #[test]
    fn the_example_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "{n} scenarios");
    }

    #[test]
    fn bad_scenarios_are_refused() {
        let bad = |text: &str, want: &str| {
            let e = toml::from_str::<Scenario>(text)
                .map_err(anyhow::Error::from)
                .and_then(|s| s.check().map(|_| s))
                .unwrap_err();
            assert!(format!("{e:#}").contains(want), "{e:#}");
        };
        bad(
            "[network]\nnodes = 2\n[[timeline]]\nat = \"1s\"\n",
            "no action",
        );
        bad(
            "[network]\nnodes = 2\n[[timeline]]\nat = \"1s\"\nkill = 5\n",
            "node 5 does not exist",
        );
        bad(
            "[network]\nnodes = 2\n[[timeline]]\nat = \"1s\"\nheal = true\nkill = 1\n",
            "one per event",
        );
        bad(
            "[network]\nnodes = 2\n[[timeline]]\nat = \"soon\"\nheal = true\n",
            "not a duration",
        );
        bad(
            "[network]\nnodes = 2\n[assert]\nmax_depth = 1\n",
            "unknown field",
        );
    }
}
