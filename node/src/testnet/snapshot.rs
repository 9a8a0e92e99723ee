//! `testnet snapshot NAME` and `testnet restore NAME`: every node's chain
//! (its datadir) and mempool at one instant. The nodes stop together (a
//! clean shutdown flushes their stores), their datadirs are copied to
//! `DIR/snapshots/NAME/node-K`, and they start again on their ports with
//! their mempools resubmitted. A restore copies the snapshot back and
//! never consumes it, so it can be restored again and again.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_api::CairnApiClient;
use serde::{Deserialize, Serialize};

use super::manifest::Manifest;
use super::procs;

/// Files of a datadir that are not state: left out of snapshots.
const NOT_STATE: &[&str] = &[".cookie", "node.log", "mempool.json"];

#[derive(Serialize, Deserialize, Default)]
struct Mempools {
    /// Per node, the hex of each pending transfer.
    nodes: Vec<Vec<String>>,
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("snapshot name {name:?}: use 1 to 64 letters, digits, - and _");
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_STATE.iter().any(|n| name == *n) || name == "snapshots" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

/// Every node must be one this host started.
fn local_nodes(m: &Manifest) -> anyhow::Result<()> {
    for n in &m.nodes {
        if n.args.is_empty() || n.datadir.is_none() {
            bail!(
                "node {} runs elsewhere: snapshots need nodes started by `testnet up` on this host",
                n.index
            );
        }
    }
    Ok(())
}

async fn mempools(m: &Manifest) -> anyhow::Result<Mempools> {
    let mut out = Mempools::default();
    for n in &m.nodes {
        let mut txs = Vec::new();
        if let Ok(c) = n.client(Duration::from_secs(30))
            && let Ok(entries) = c.mempool_get_entries(Some(1000)).await
        {
            for e in entries {
                if let Ok(v) = c.chain_get_transaction(e.txid).await
                    && let Some(t) = v.transaction
                {
                    txs.push(t.hex);
                }
            }
        }
        out.nodes.push(txs);
    }
    Ok(out)
}

fn stop_all(m: &mut Manifest, dir: &Path) -> anyhow::Result<Vec<bool>> {
    let running: Vec<bool> = m
        .nodes
        .iter()
        .map(|n| {
            n.pid
                .is_some_and(|p| procs::is_ours(p, n.datadir.as_deref()))
        })
        .collect();
    for (n, r) in m.nodes.iter().zip(&running) {
        if *r && let Some(pid) = n.pid {
            procs::signal(pid, "TERM");
        }
    }
    for n in &mut m.nodes {
        procs::stop(n, Duration::from_secs(15));
        n.pid = None;
    }
    m.save(dir)?;
    Ok(running)
}

async fn start_all(
    m: &mut Manifest,
    dir: &Path,
    which: &[bool],
    pools: &Mempools,
) -> anyhow::Result<()> {
    for i in 0..m.nodes.len() {
        if which.get(i).copied().unwrap_or(true) {
            super::up::start_one(m, dir, i).await?;
        }
    }
    super::control::apply_faults(m).await?;
    super::control::wait_for_links(m, Duration::from_secs(20)).await;
    let mut back = 0;
    for (n, txs) in m.nodes.iter().zip(&pools.nodes) {
        let Ok(c) = n.client(Duration::from_secs(30)) else {
            continue;
        };
        for t in txs {
            if c.tx_submit(t.clone()).await.is_ok() {
                back += 1;
            }
        }
    }
    if back > 0 {
        println!("{back} pending transfers resubmitted to the mempools");
    }
    Ok(())
}

/// `testnet snapshot NAME`.
pub async fn snapshot(dir: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut m = Manifest::load(dir)?;
    local_nodes(&m)?;
    let target = dir.join("snapshots").join(name);
    if target.exists() {
        bail!("snapshot {name} exists already in {}", target.display());
    }
    let pools = mempools(&m).await?;
    let running = stop_all(&mut m, dir)?;
    let tmp = dir.join("snapshots").join(format!(".{name}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    let copied = (|| {
        for n in &m.nodes {
            let datadir = n.datadir.as_deref().context("no datadir")?;
            copy_dir(datadir, &tmp.join(n.name()))?;
        }
        std::fs::write(tmp.join("mempools.json"), serde_json::to_string(&pools)?)?;
        std::fs::rename(&tmp, &target)?;
        anyhow::Ok(())
    })();
    // the nodes come back whether or not the copy worked
    start_all(&mut m, dir, &running, &pools).await?;
    copied.with_context(|| format!("snapshot {name} failed"))?;
    let pending: usize = pools.nodes.iter().map(Vec::len).sum();
    println!(
        "snapshot {name}: {} nodes' chains and {pending} pending transfers in {}",
        m.nodes.len(),
        target.display()
    );
    Ok(())
}

/// `testnet restore NAME`.
pub async fn restore(dir: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut m = Manifest::load(dir)?;
    local_nodes(&m)?;
    let source = dir.join("snapshots").join(name);
    if !source.is_dir() {
        bail!(
            "there is no snapshot {name} in {}",
            dir.join("snapshots").display()
        );
    }
    for n in &m.nodes {
        if !source.join(n.name()).is_dir() {
            bail!(
                "snapshot {name} has no {} (it was taken of another testnet)",
                n.name()
            );
        }
    }
    let pools: Mempools =
        serde_json::from_str(&std::fs::read_to_string(source.join("mempools.json"))?)?;
    stop_all(&mut m, dir)?;
    for n in &m.nodes {
        let datadir = n.datadir.as_deref().context("no datadir")?;
        for entry in std::fs::read_dir(datadir)? {
            let entry = entry?;
            if NOT_STATE.iter().any(|x| entry.file_name() == *x) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        copy_dir(&source.join(n.name()), datadir)?;
    }
    m.faults.groups.clear();
    m.save(dir)?;
    start_all(&mut m, dir, &[], &pools).await?;
    println!(
        "restored snapshot {name}: {} nodes running on their ports",
        m.nodes.len()
    );
    Ok(())
}
