//! `cairn-node testnet`: a private network for experiments. `up` starts
//! nodes on this machine and writes `DIR/manifest.json`; every other
//! command reads only that manifest and drives the nodes over JSON-RPC, so
//! the same commands work on nodes started by hand on other hosts (a
//! manifest written by hand). Faults are injected inside the nodes (link
//! rules in the P2P layer), so no root, `tc` or containers are needed.

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub mod control;
pub mod load;
pub mod manifest;
pub mod procs;
pub mod scenario;
pub mod snapshot;
pub mod stats;
pub mod up;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TestnetArgs {
    #[command(subcommand)]
    pub action: Option<TestnetAction>,
    /// Without a command: `testnet up` in the foreground (the old form).
    #[command(flatten)]
    pub start: up::UpArgs,
}

/// The testnet's directory (`DIR/manifest.json`).
#[derive(Args, Clone)]
pub struct DirArg {
    /// The testnet's directory, holding manifest.json.
    #[arg(long, default_value = "./data/testnet")]
    pub dir: PathBuf,
}

#[derive(Subcommand)]
pub enum TestnetAction {
    /// Start the nodes (again, on the same ports, if DIR has a manifest).
    Up(up::UpArgs),
    /// Stop the nodes this host started.
    Down(DirArg),
    /// Height, tip, peers, mempool and mining mode of each node, and the
    /// last common block of diverged tips.
    Status {
        #[command(flatten)]
        dir: DirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Split the nodes into groups that exchange nothing: `partition 0,1,2 3,4,5`
    /// (nodes in no group form one more group).
    Partition {
        #[command(flatten)]
        dir: DirArg,
        /// Groups of node indices, comma-separated.
        #[arg(required = true, num_args = 1..)]
        groups: Vec<String>,
    },
    /// Remove every partition (link delays and losses stay).
    Heal(DirArg),
    /// Shape the link between nodes A and B (both directions): delay, jitter,
    /// loss, rate. `all` for every node; no shaping option clears the link.
    Link(control::LinkArgs),
    /// Switch mining modes at run time, give miners unequal power, or mine
    /// blocks now.
    Mine(control::MineArgs),
    /// Make a reorganisation of DEPTH blocks with the real miner: isolate
    /// --nodes, mine a heavier branch there, heal, wait until all switched.
    Reorg(control::ReorgArgs),
    /// Propagation (time to reach 50%, 90%, 100% of nodes), stale blocks,
    /// reorganisations, hashrate share per miner vs blocks won.
    Stats {
        #[command(flatten)]
        dir: DirArg,
        /// Print JSON (sections `propagation`, `reorg`, `stale`, `miners`).
        #[arg(long)]
        json: bool,
        /// Draw the propagation CDF and the block intervals into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Signed transfers from the funded accounts at a target rate, spread over
    /// the nodes; reports accepted, confirmed and submit-to-confirm latency.
    Load(load::LoadArgs),
    /// Save every node's chain and mempool under DIR/snapshots/NAME.
    Snapshot {
        #[command(flatten)]
        dir: DirArg,
        name: String,
    },
    /// Put every node back to snapshot NAME (repeatable: the snapshot stays).
    Restore {
        #[command(flatten)]
        dir: DirArg,
        name: String,
    },
    /// Run an experiment described in a TOML file: network, timeline, assertions.
    /// Prints the report, writes NAME.report.json next to the file, and exits
    /// non-zero naming each assertion that failed.
    Run {
        /// The scenario file (see scenarios/ in the source tree).
        scenario: PathBuf,
        /// Where the testnet lives while it runs (default ./data/scenarios/NAME; cleared first).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// SIGKILL node K.
    Kill {
        #[command(flatten)]
        dir: DirArg,
        /// The node's index.
        node: usize,
    },
    /// Start node K again (same ports, same datadir), and re-apply the faults.
    Start {
        #[command(flatten)]
        dir: DirArg,
        /// The node's index.
        node: usize,
    },
}

/// An error whose cause is a JSON-RPC error, with the node's message
/// instead of the client library's debug text.
fn tidy(e: anyhow::Error) -> anyhow::Error {
    let mut parts = Vec::new();
    for cause in e.chain() {
        match cause.downcast_ref::<jsonrpsee::core::ClientError>() {
            Some(jsonrpsee::core::ClientError::Call(obj)) => {
                parts.push(format!("{} (code {})", obj.message(), obj.code()));
                break;
            }
            Some(other) => {
                parts.push(other.to_string());
                break;
            }
            None => parts.push(cause.to_string()),
        }
    }
    anyhow::anyhow!(parts.join(": "))
}

/// Runs `cairn-node testnet ...`.
pub fn run(args: TestnetArgs) -> anyhow::Result<()> {
    run_inner(args).map_err(tidy)
}

fn run_inner(args: TestnetArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.action {
        None => rt.block_on(up::up(args.start)),
        Some(TestnetAction::Up(a)) => rt.block_on(up::up(a)),
        Some(TestnetAction::Down(d)) => up::down(&d.dir),
        Some(TestnetAction::Status { dir, json }) => rt.block_on(control::status(&dir.dir, json)),
        Some(TestnetAction::Partition { dir, groups }) => {
            rt.block_on(control::partition(&dir.dir, &groups))
        }
        Some(TestnetAction::Heal(d)) => rt.block_on(control::heal(&d.dir)),
        Some(TestnetAction::Link(a)) => rt.block_on(control::link(a)),
        Some(TestnetAction::Mine(a)) => rt.block_on(control::mine(a)),
        Some(TestnetAction::Reorg(a)) => rt.block_on(control::reorg(a)),
        Some(TestnetAction::Stats { dir, json, plot }) => {
            rt.block_on(stats::stats(&dir.dir, json, plot.as_deref()))
        }
        Some(TestnetAction::Load(a)) => rt.block_on(load::load(a)),
        Some(TestnetAction::Snapshot { dir, name }) => {
            rt.block_on(snapshot::snapshot(&dir.dir, &name))
        }
        Some(TestnetAction::Restore { dir, name }) => {
            rt.block_on(snapshot::restore(&dir.dir, &name))
        }
        Some(TestnetAction::Run { scenario, dir }) => rt.block_on(scenario::run(&scenario, dir)),
        Some(TestnetAction::Kill { dir, node }) => up::kill(&dir.dir, node),
        Some(TestnetAction::Start { dir, node }) => rt.block_on(up::start(&dir.dir, node)),
    }
}

/// `2s`, `500ms`, `1m`, or a bare number of milliseconds... of seconds.
pub fn parse_ms(s: &str) -> Result<u64, String> {
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
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Node indices: `0,2,5`.
pub fn parse_indices(s: &str) -> anyhow::Result<Vec<usize>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| anyhow::anyhow!("{p:?} is not a node index (0, 1, 2...)"))
        })
        .collect()
}

/// [`parse_ms`] for clap.
pub fn parse_ms_arg(s: &str) -> Result<u64, String> {
    parse_ms(s)
}
