//! Node processes on this host: start (detached, in their own process
//! group, output in `DATADIR/node.log`), wait until they answer, signal,
//! and tell whether a recorded process id is still the node it was.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api::CairnApiClient;

use super::manifest::ManifestNode;

/// Whether `pid` is alive and is a `cairn-node` running on `datadir`.
pub fn is_ours(pid: u32, datadir: Option<&Path>) -> bool {
    let proc_dir = Path::new("/proc");
    if proc_dir.is_dir() {
        let Ok(cmdline) = std::fs::read(proc_dir.join(pid.to_string()).join("cmdline")) else {
            return false;
        };
        // a zombie has an empty command line
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        return text.contains("cairn-node")
            && datadir.is_none_or(|d| text.contains(&*d.to_string_lossy()));
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends `signal` (`TERM`, `KILL`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Stops `node`'s process: SIGTERM, then SIGKILL after `grace`. Returns
/// whether it had to be killed.
pub fn stop(node: &ManifestNode, grace: Duration) -> bool {
    let Some(pid) = node.pid else { return false };
    let datadir = node.datadir.as_deref();
    if !is_ours(pid, datadir) {
        return false;
    }
    signal(pid, "TERM");
    let deadline = Instant::now() + grace;
    while is_ours(pid, datadir) {
        if Instant::now() > deadline {
            signal(pid, "KILL");
            wait_gone(pid, datadir);
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits (up to 10 s) until `pid` is gone.
pub fn wait_gone(pid: u32, datadir: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_ours(pid, datadir) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `cairn-node` with `args`, output appended to `datadir/node.log`,
/// in a process group of its own (Ctrl-C in the terminal that started it
/// does not reach it; `testnet down` stops it).
pub fn spawn(args: &[String], datadir: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    std::fs::create_dir_all(datadir)
        .with_context(|| format!("cannot create {}", datadir.display()))?;
    let log_path = datadir.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    // a stale cookie would let the wait below talk to nobody with old credentials
    let _ = std::fs::remove_file(cairn_api::auth::cookie_path(datadir));
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,jsonrpsee=warn,sled=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn().context("cannot start cairn-node")
}

/// The last lines of a node's log, for error messages.
pub fn log_tail(datadir: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(datadir.join("node.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `node` answers `chain_getInfo` (its cookie written),
/// failing early if `child` exits.
pub async fn wait_ready(
    node: &ManifestNode,
    mut child: Option<&mut Child>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let tail = node
                .datadir
                .as_deref()
                .map(|d| log_tail(d, 15))
                .unwrap_or_default();
            bail!(
                "{} exited ({status}) while starting; its log ends:\n{tail}",
                node.name()
            );
        }
        match node.client(Duration::from_secs(2)) {
            Ok(c) => match c.chain_get_info().await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer at {} within {} s: {last}",
                node.name(),
                node.rpc_url,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two free TCP ports on 127.0.0.1 for each of `n` nodes (held together
/// while choosing, so no two are the same).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<(u16, u16)>> {
    let mut held = Vec::new();
    for _ in 0..2 * n {
        held.push(std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?);
    }
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    Ok(ports.chunks(2).map(|c| (c[0], c[1])).collect())
}
