//! `DIR/manifest.json`: everything the testnet commands know about a
//! testnet. `testnet up` writes it; every other command only reads it (and
//! `kill`/`start` update a node's process id). A manifest can also be
//! written by hand for nodes running anywhere: a node needs `index`,
//! `rpc_url` and `p2p_addr`, and either `datadir` (where its RPC cookie is,
//! readable from here) or `rpc_user`/`rpc_password`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_api::auth::Credentials;
use jsonrpsee_http_client::HttpClient;
use serde::{Deserialize, Serialize};

/// The manifest's file name inside the testnet directory.
pub const MANIFEST: &str = "manifest.json";
/// Most nodes a testnet may have.
pub const MAX_NODES: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Network name (informational).
    #[serde(default)]
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// `mesh`, `ring`, `star` or `random:K`: which nodes may talk (the
    /// others are kept apart by link faults). Absent: every node with every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    pub nodes: Vec<ManifestNode>,
    /// Accounts funded at genesis (or by mining) that `load` may spend.
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// The faults in force (`partition`, `link`), re-applied to a node
    /// when it starts again.
    #[serde(default, skip_serializing_if = "Faults::is_empty")]
    pub faults: Faults,
}

/// Faults the testnet commands keep in force.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Partition groups: nodes in different groups exchange nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Vec<usize>>,
    /// Shaped links (both directions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkFault>,
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.links.is_empty()
    }

    /// The group of node `i` (nodes in no listed group share one more).
    pub fn group_of(&self, i: usize) -> usize {
        self.groups
            .iter()
            .position(|g| g.contains(&i))
            .unwrap_or(self.groups.len())
    }
}

/// Delay, jitter, loss and rate on the link between nodes `a` and `b`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFault {
    pub a: usize,
    pub b: usize,
    pub rule: cairn_api::LinkView,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestNode {
    pub index: usize,
    /// `http://HOST:PORT`.
    pub rpc_url: String,
    /// The node's P2P listen address as its peers see it, `HOST:PORT`.
    pub p2p_addr: String,
    /// The node's datadir, where its `.cookie` is (for nodes on this host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadir: Option<PathBuf>,
    /// `miner` or `node`.
    #[serde(default = "default_role")]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miner_address: Option<String>,
    /// Process id, for nodes `testnet up` started on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The `cairn-node` arguments that start it again (`testnet start`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

fn default_role() -> String {
    "node".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub address: String,
    /// The secret key, hex (dev accounts and miner keys); `load` signs with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub note: String,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    /// Reads and checks `DIR/manifest.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Manifest> {
        let path = Manifest::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no testnet manifest at {} (start one with `cairn-node testnet up --dir {}`, \
                 or write one by hand: see the README)",
                path.display(),
                dir.display()
            )
        })?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a testnet manifest", path.display()))?;
        m.check()
            .with_context(|| format!("manifest {}", path.display()))?;
        Ok(m)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.nodes.is_empty() {
            bail!("it lists no nodes");
        }
        if self.nodes.len() > MAX_NODES {
            bail!("it lists {} nodes; at most {MAX_NODES}", self.nodes.len());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.index != i {
                bail!(
                    "node entries must be in order with index 0, 1, 2...: entry {i} has index {}",
                    n.index
                );
            }
            if !n.rpc_url.starts_with("http://") && !n.rpc_url.starts_with("https://") {
                bail!("node {i}: rpc_url {:?} must start with http://", n.rpc_url);
            }
            cairn_genesis::check_host_port(&n.p2p_addr)
                .map_err(|e| anyhow::anyhow!("node {i}: p2p_addr: {e}"))?;
            if n.datadir.is_none() && (n.rpc_user.is_none() || n.rpc_password.is_none()) {
                bail!(
                    "node {i}: give its datadir (for the RPC cookie) or rpc_user and rpc_password"
                );
            }
        }
        if let Some(t) = &self.topology {
            Topology::parse(t)?;
        }
        Ok(())
    }

    /// Writes the manifest atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Manifest::path(dir);
        let tmp = dir.join(".manifest.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn node(&self, k: usize) -> anyhow::Result<&ManifestNode> {
        self.nodes.get(k).with_context(|| {
            format!(
                "there is no node {k}: the testnet has nodes 0 to {}",
                self.nodes.len() - 1
            )
        })
    }

    /// Pairs `(a, b)`, `a < b`, that the topology lets talk.
    pub fn edges(&self) -> anyhow::Result<Vec<(usize, usize)>> {
        let t = Topology::parse(self.topology.as_deref().unwrap_or("mesh"))?;
        Ok(t.edges(self.nodes.len()))
    }
}

impl ManifestNode {
    /// A JSON-RPC client of this node with its credentials.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<HttpClient> {
        let creds = match (&self.rpc_user, &self.rpc_password, &self.datadir) {
            (Some(u), Some(p), _) => Credentials {
                user: u.clone(),
                password: p.clone(),
            },
            (_, _, Some(d)) => {
                cairn_api::auth::read_cookie(d).with_context(|| format!("node {}", self.index))?
            }
            _ => bail!("node {}: no credentials in the manifest", self.index),
        };
        cairn_node::client::http_client(&self.rpc_url, Some(&creds), timeout)
            .map_err(|e| anyhow::anyhow!("node {}: {e}", self.index))
    }

    pub fn name(&self) -> String {
        format!("node-{}", self.index)
    }
}

/// Which nodes are neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Mesh,
    Ring,
    Star,
    /// Each node links to K others chosen at random (a fixed seed, so the
    /// graph is the same on every read of the manifest), plus a ring so
    /// the graph is connected.
    Random(usize),
}

impl Topology {
    pub fn parse(s: &str) -> anyhow::Result<Topology> {
        Ok(match s.trim() {
            "mesh" => Topology::Mesh,
            "ring" => Topology::Ring,
            "star" => Topology::Star,
            other => match other.strip_prefix("random:").map(str::parse::<usize>) {
                Some(Ok(k)) if (1..=MAX_NODES).contains(&k) => Topology::Random(k),
                _ => bail!(
                    "topology {other:?} is not mesh, ring, star or random:K (K from 1 to {MAX_NODES})"
                ),
            },
        })
    }

    /// The links of `n` nodes, each pair `(a, b)` with `a < b`, sorted.
    pub fn edges(self, n: usize) -> Vec<(usize, usize)> {
        let mut set = std::collections::BTreeSet::new();
        let mut add = |a: usize, b: usize| {
            if a != b {
                set.insert((a.min(b), a.max(b)));
            }
        };
        match self {
            Topology::Mesh => {
                for a in 0..n {
                    for b in a + 1..n {
                        add(a, b);
                    }
                }
            }
            Topology::Ring => {
                for a in 0..n {
                    add(a, (a + 1) % n);
                }
            }
            Topology::Star => {
                for b in 1..n {
                    add(0, b);
                }
            }
            Topology::Random(k) => {
                for a in 0..n {
                    add(a, (a + 1) % n);
                }
                // a small deterministic generator: the graph is a function of n and k
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (n as u64) << 8 ^ k as u64;
                for a in 0..n {
                    for _ in 0..k.min(n.saturating_sub(1)) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        add(a, (x % n as u64) as usize);
                    }
                }
            }
        }
        set.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies() {
        assert_eq!(
            Topology::parse("mesh").unwrap().edges(3),
            vec![(0, 1), (0, 2), (1, 2)]
        );
        assert_eq!(
            Topology::parse("ring").unwrap().edges(4),
            vec![(0, 1), (0, 3), (1, 2), (2, 3)]
        );
        assert_eq!(
            Topology::parse("star").unwrap().edges(3),
            vec![(0, 1), (0, 2)]
        );
        let r = Topology::parse("random:2").unwrap();
        assert_eq!(r.edges(8), r.edges(8));
        assert!(r.edges(8).len() >= 8);
        assert!(Topology::parse("random:0").is_err());
        assert!(Topology::parse("tree").is_err());
        assert!(Topology::parse("ring").unwrap().edges(1).is_empty());
    }

    /// The README's example of nodes on three hosts is a valid manifest.
    #[test]
    fn the_three_host_example_is_valid() {
        let text = include_str!("../../../docs/testnet/three-hosts.manifest.json");
        let m: Manifest = serde_json::from_str(text).unwrap();
        m.check().unwrap();
        assert_eq!(m.nodes.len(), 3);
        assert_eq!(m.edges().unwrap().len(), 3);
    }

    #[test]
    fn hand_written_manifests_are_checked() {
        let ok = r#"{"nodes":[{"index":0,"rpc_url":"http://10.0.0.1:7540","p2p_addr":"10.0.0.1:7541",
            "rpc_user":"lab","rpc_password":"pw"}]}"#;
        let m: Manifest = serde_json::from_str(ok).unwrap();
        m.check().unwrap();
        assert_eq!(m.nodes[0].role, "node");
        let no_creds = r#"{"nodes":[{"index":0,"rpc_url":"http://10.0.0.1:7540","p2p_addr":"10.0.0.1:7541"}]}"#;
        let m: Manifest = serde_json::from_str(no_creds).unwrap();
        assert!(m.check().unwrap_err().to_string().contains("rpc_user"));
        let bad_index =
            r#"{"nodes":[{"index":1,"rpc_url":"http://h:1","p2p_addr":"h:2","datadir":"/x"}]}"#;
        let m: Manifest = serde_json::from_str(bad_index).unwrap();
        assert!(m.check().is_err());
    }
}
