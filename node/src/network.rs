//! The node as the P2P layer sees it: [`cairn_p2p::ChainBackend`] over a
//! [`Node`], and the P2P layer's address book and bans in a sled tree of
//! their own ([`SledPeerStore`]).
//!
//! # Correctness
//! Every method but `tip`, `network` and `subscribe` reads the store or
//! takes the chain or mempool lock; the P2P layer calls them on blocking
//! threads only (see the trait's docs).

use std::sync::Arc;

use cairn_consensus::{Block, BlockHash, BlockHeader, Height, SignedTransfer, TxId};
use cairn_p2p::compact::{self, ShortId, ShortIdKey};
use cairn_p2p::{
    BackendError, BlockVerdict, ChainBackend, ChainEvent, ChainTip, NetworkInfo, PeerStore,
    StoreOp, StoredHeader, TxVerdict,
};
use tokio::sync::broadcast;

use crate::chain::{ChainError, Outcome};
use crate::index;
use crate::node::{Node, Source, SubmitError};
use crate::store::{BlockStatus, ChainStore, StoreError};

/// Most hashes in a locator.
const MAX_LOCATOR: usize = 64;

fn backend_err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// [`ChainBackend`] over a node.
pub struct NodeBackend(pub Arc<Node>);

impl ChainBackend for NodeBackend {
    fn network(&self) -> NetworkInfo {
        let n = &self.0.network;
        NetworkInfo {
            name: n.name.clone(),
            genesis_hash: n.genesis_hash,
            params: n.params.clone(),
            is_dev: n.params.retarget == cairn_consensus::Retarget::Pinned,
            bootnodes: n.bootnodes.clone(),
        }
    }

    fn tip(&self) -> ChainTip {
        let t = self.0.relayed_tip();
        ChainTip {
            hash: t.hash,
            height: t.header.height.0,
            work: t.work,
            header: t.header,
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.0.subscribe_events()
    }

    fn header(&self, hash: &BlockHash) -> Result<Option<StoredHeader>, BackendError> {
        Ok(self
            .0
            .store()
            .index_entry(hash)
            .map_err(backend_err)?
            .map(|e| StoredHeader {
                meta: e.meta(),
                invalid: e.status == BlockStatus::Invalid,
            }))
    }

    fn locator(&self) -> Result<Vec<BlockHash>, BackendError> {
        let store = self.0.store();
        let mut out = Vec::new();
        let mut h = self.0.relayed_tip().header.height.0;
        let mut step = 1u64;
        loop {
            if let Some(hash) = store.hash_at(Height(h)).map_err(backend_err)? {
                out.push(hash);
            }
            if h == 0 || out.len() >= MAX_LOCATOR - 1 {
                break;
            }
            if out.len() >= 10 {
                step = step.saturating_mul(2);
            }
            h = h.saturating_sub(step);
        }
        if let Some(g) = store.hash_at(Height(0)).map_err(backend_err)?
            && out.last() != Some(&g)
        {
            out.push(g);
        }
        Ok(out)
    }

    fn headers_after(
        &self,
        locator: &[BlockHash],
        max: usize,
    ) -> Result<Vec<BlockHeader>, BackendError> {
        let store = self.0.store();
        let tip = self.0.relayed_tip().header.height.0;
        let mut start = 1;
        for hash in locator {
            if let Some(e) = store.index_entry(hash).map_err(backend_err)?
                && store.hash_at(e.header.height).map_err(backend_err)? == Some(*hash)
            {
                start = e.header.height.0 + 1;
                break;
            }
        }
        let mut out = Vec::new();
        let mut h = start;
        while h <= tip && out.len() < max {
            let Some(hash) = store.hash_at(Height(h)).map_err(backend_err)? else {
                break;
            };
            let Some(e) = store.index_entry(&hash).map_err(backend_err)? else {
                break;
            };
            out.push(e.header);
            h += 1;
        }
        Ok(out)
    }

    fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, BackendError> {
        self.0.store().block_bytes(hash).map_err(backend_err)
    }

    fn submit_blocks(&self, blocks: Vec<Block>, peer: u64) -> Vec<BlockVerdict> {
        self.0
            .submit_blocks(blocks, Source::Peer(peer))
            .into_iter()
            .map(verdict)
            .collect()
    }

    fn submit_transfers(&self, txs: Vec<SignedTransfer>, peer: u64) -> Vec<TxVerdict> {
        txs.into_iter()
            .map(|tx| match self.0.submit_transfer(tx, Some(peer)) {
                Ok(_) => TxVerdict::Accepted,
                Err(SubmitError::Transfer(e)) => TxVerdict::Invalid {
                    reason: e.to_string(),
                },
                Err(e) => TxVerdict::Ignored {
                    reason: e.to_string(),
                },
            })
            .collect()
    }

    fn has_transfers(&self, ids: &[TxId]) -> Vec<bool> {
        let pending = self.0.pending_transfers(ids);
        let tree = self.0.store().tree();
        ids.iter()
            .zip(pending)
            .map(|(id, p)| p.is_some() || index::tx_location(tree, id).ok().flatten().is_some())
            .collect()
    }

    fn pending_transfers(&self, ids: &[TxId]) -> Vec<SignedTransfer> {
        self.0
            .pending_transfers(ids)
            .into_iter()
            .flatten()
            .collect()
    }

    fn mempool_ids(&self, limit: usize) -> Vec<TxId> {
        self.0.with_mempool(|pool| pool.best_ids(limit))
    }

    fn match_short_ids(&self, key: &ShortIdKey, ids: &[ShortId]) -> Vec<Option<SignedTransfer>> {
        self.0
            .with_mempool(|pool| compact::match_short_ids(key, ids, pool.transfers()))
    }
}

fn verdict(r: Result<crate::chain::Processed, ChainError>) -> BlockVerdict {
    match r {
        Ok(p) => match p.outcome {
            Outcome::Connected => BlockVerdict::Accepted { best: true },
            Outcome::SideBranch => BlockVerdict::Accepted { best: false },
            Outcome::Orphan { .. } => BlockVerdict::Orphan,
            Outcome::Duplicate => BlockVerdict::Duplicate,
        },
        Err(ChainError::Invalid { error, .. }) if !error.is_permanent() => BlockVerdict::NotYet {
            reason: error.to_string(),
        },
        Err(ChainError::Invalid { error, .. }) => BlockVerdict::Invalid {
            reason: error.to_string(),
            condemned: error.condemns_hash(),
        },
        Err(e @ (ChainError::KnownInvalid { .. } | ChainError::InvalidAncestor { .. })) => {
            BlockVerdict::Invalid {
                reason: e.to_string(),
                condemned: true,
            }
        }
        Err(e @ (ChainError::Store(_) | ChainError::Inconsistent(_))) => BlockVerdict::Failed {
            reason: e.to_string(),
        },
    }
}

/// The P2P layer's addresses and bans, in their own sled tree (`peers`).
pub struct SledPeerStore(pub sled::Tree);

impl SledPeerStore {
    /// Opens the `peers` tree of the node's store; removes what an older
    /// version kept in the chain tree (prefixes `P` and `Z`).
    pub fn open(node: &Node) -> Result<SledPeerStore, StoreError> {
        let tree = node.store().open_tree("peers")?;
        let chain = node.store().tree();
        for prefix in [b'P', b'Z'] {
            for k in chain.scan_prefix([prefix]).keys().flatten() {
                let _ = chain.remove(k);
            }
        }
        Ok(SledPeerStore(tree))
    }
}

impl PeerStore for SledPeerStore {
    fn load(&self, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .scan_prefix([prefix])
            .flatten()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    fn apply(&self, ops: Vec<StoreOp>) {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                StoreOp::Put(k, v) => batch.insert(k, v),
                StoreOp::Delete(k) => batch.remove(k),
            }
        }
        if let Err(e) = self.0.apply_batch(batch) {
            tracing::warn!("cannot save the address book and bans: {e}");
        }
    }
}

/// The node key's file in the datadir.
pub const NODE_KEY_FILE: &str = "node.key";

/// Reads `<datadir>/node.key` (64 hex digits, the ed25519 secret), or
/// creates it readable by the owner only on first start.
pub fn load_or_create_node_key(datadir: &std::path::Path) -> anyhow::Result<cairn_p2p::NodeKey> {
    use anyhow::Context;
    let path = datadir.join(NODE_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .with_context(|| {
                    format!(
                        "{} is not a node key (64 hex digits); move it away to create a new identity",
                        path.display()
                    )
                })?;
            Ok(cairn_p2p::NodeKey::from_secret(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = cairn_p2p::NodeKey::generate();
            std::fs::create_dir_all(datadir)
                .with_context(|| format!("cannot create {}", datadir.display()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::io::Write::write_all(
                &mut file,
                format!("{}\n", hex::encode(key.secret())).as_bytes(),
            )
            .and_then(|_| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!("created node key {} (node id {})", path.display(), key.id());
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Reads an allow list: one node id (64 hex digits) per line; blank lines
/// and text after `#` are ignored.
pub fn read_allow_list(path: &std::path::Path) -> anyhow::Result<Vec<cairn_p2p::NodeId>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the allow list {}", path.display()))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let id = line
            .parse()
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
        ids.push(id);
    }
    if ids.is_empty() {
        anyhow::bail!(
            "the allow list {} names no node id: no peer could connect",
            path.display()
        );
    }
    Ok(ids)
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn the_node_key_is_created_once_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_node_key(dir.path()).unwrap();
        let b = load_or_create_node_key(dir.path()).unwrap();
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(NODE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(NODE_KEY_FILE), "not hex").unwrap();
        let err = load_or_create_node_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a node key"), "{err}");
    }

    #[test]
    fn allow_lists_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allow");
        let id = cairn_p2p::NodeKey::generate().id();
        std::fs::write(&path, format!("# lab nodes\n{id}  # node 0\n\n")).unwrap();
        assert_eq!(read_allow_list(&path).unwrap(), vec![id]);
        std::fs::write(&path, format!("{id}\nabc\n")).unwrap();
        let err = read_allow_list(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "# nobody\n").unwrap();
        assert!(read_allow_list(&path).is_err());
    }
}
