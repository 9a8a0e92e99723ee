//! Persistence of the address book and the ban list, behind a small
//! key-value trait the node implements on its own storage (a tree of its
//! own). Every method may block: the P2P layer calls them on blocking
//! threads only, never on the task that serves the peers.

/// A key-value store for P2P data. Keys start with a one-byte prefix per
/// table.
pub trait PeerStore: Send + Sync + 'static {
    /// Every entry whose key starts with `prefix`. Blocking.
    fn load(&self, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Applies writes in order. Blocking.
    fn apply(&self, ops: Vec<StoreOp>);
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// A store that keeps nothing (tests, or P2P without persistence).
pub struct NoStore;

impl PeerStore for NoStore {
    fn load(&self, _prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        Vec::new()
    }
    fn apply(&self, _ops: Vec<StoreOp>) {}
}
