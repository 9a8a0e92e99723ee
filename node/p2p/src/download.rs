//! The block downloader: which blocks of the best header chain to ask
//! whom for, which arrived blocks are ready for the node, and which peers
//! stall. Pure: the manager feeds it events and carries out what it
//! returns, so every rule here is unit-tested without sockets.
//!
//! # Correctness
//! - A block is asked only of a peer whose validated headers contain it
//!   (its *reach* on the path), never on a peer's word.
//! - Requests are bounded per peer and in all, and only blocks within a
//!   window of the first missing one are asked for, so one slow peer holding
//!   the lowest block cannot make the node buffer the whole chain.
//! - A `NotFound` frees the request at once and the block goes to another
//!   peer; a request unanswered for `timeout_ms` (or the lowest block of a
//!   full window, for `stall_ms`) marks the peer stalled: the manager
//!   disconnects it and its requests go to others.
//! - Arrived blocks wait in memory bounded by `max_arrived_bytes`.

use std::collections::{HashMap, HashSet, VecDeque};

use cairn_consensus::{Block, BlockHash};

/// Limits of the downloader.
#[derive(Clone, Copy, Debug)]
pub struct DownloadConfig {
    /// Blocks in flight over all peers.
    pub max_in_flight: usize,
    /// Blocks in flight from one peer.
    pub per_peer: usize,
    /// Blocks are asked for only within this many of the first missing one.
    pub window: usize,
    /// Bytes of arrived blocks waiting for earlier ones.
    pub max_arrived_bytes: usize,
    /// A request unanswered this long marks its peer stalled.
    pub timeout_ms: u64,
    /// The lowest missing block of a window that cannot move, held this
    /// long, marks its peer stalled.
    pub stall_ms: u64,
    /// Most blocks handed to the node at once.
    pub max_batch: usize,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            max_in_flight: 256,
            per_peer: 32,
            window: 1024,
            max_arrived_bytes: 64 << 20,
            timeout_ms: 15_000,
            stall_ms: 3_000,
            max_batch: 500,
        }
    }
}

/// What the downloader knows of one peer: the highest height of the path
/// its validated headers contain (`None`: none of it).
#[derive(Clone, Copy, Debug)]
pub struct PeerSlot {
    pub id: u64,
    pub reach: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Flight {
    peer: u64,
    since_ms: u64,
}

struct Arrived {
    block: Block,
    peer: u64,
    bytes: usize,
}

/// What an arriving block was.
pub enum Arrival {
    /// Asked of this peer: kept until it is ready for the node.
    Requested,
    /// Not asked of this peer (unsolicited, or too late): handed back.
    Unrequested(Box<Block>),
}

/// See the module docs.
pub struct Downloader {
    cfg: DownloadConfig,
    in_flight: HashMap<BlockHash, Flight>,
    per_peer: HashMap<u64, usize>,
    arrived: HashMap<BlockHash, Arrived>,
    arrived_bytes: usize,
    /// Handed to the node, not reported back yet.
    processing: HashSet<BlockHash>,
    /// Blocks a peer said it does not have.
    refused: HashMap<u64, HashSet<BlockHash>>,
}

/// Most refused hashes remembered per peer.
const MAX_REFUSED: usize = 4096;

impl Downloader {
    pub fn new(cfg: DownloadConfig) -> Self {
        Downloader {
            cfg,
            in_flight: HashMap::new(),
            per_peer: HashMap::new(),
            arrived: HashMap::new(),
            arrived_bytes: 0,
            processing: HashSet::new(),
            refused: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DownloadConfig {
        &self.cfg
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn in_flight_from(&self, peer: u64) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    pub fn arrived_bytes(&self) -> usize {
        self.arrived_bytes
    }

    /// A one-line account of the state, for logs.
    pub fn describe(&self) -> String {
        format!(
            "{} in flight, {} arrived ({} bytes), {} with the node",
            self.in_flight.len(),
            self.arrived.len(),
            self.arrived_bytes,
            self.processing.len()
        )
    }

    pub fn is_processing(&self) -> bool {
        !self.processing.is_empty()
    }

    /// Whether the block is requested, waiting, or with the node.
    pub fn has(&self, hash: &BlockHash) -> bool {
        self.in_flight.contains_key(hash)
            || self.arrived.contains_key(hash)
            || self.processing.contains(hash)
    }

    /// The requests to send now: blocks of `path` (whose first block is at
    /// height `start`) that are not requested, waiting or with the node,
    /// each to the least busy peer that has it.
    pub fn schedule(
        &mut self,
        start: u64,
        path: &VecDeque<BlockHash>,
        peers: &[PeerSlot],
        now_ms: u64,
    ) -> Vec<(u64, Vec<BlockHash>)> {
        let mut out: HashMap<u64, Vec<BlockHash>> = HashMap::new();
        if self.arrived_bytes >= self.cfg.max_arrived_bytes {
            return Vec::new();
        }
        let mut budget = self.cfg.max_in_flight.saturating_sub(self.in_flight.len());
        for (i, hash) in path.iter().enumerate().take(self.cfg.window) {
            if budget == 0 {
                break;
            }
            if self.has(hash) {
                continue;
            }
            let height = start + i as u64;
            let choice = peers
                .iter()
                .filter(|p| p.reach.is_some_and(|r| r >= height))
                .filter(|p| {
                    !self
                        .refused
                        .get(&p.id)
                        .is_some_and(|set| set.contains(hash))
                })
                .map(|p| (self.per_peer.get(&p.id).copied().unwrap_or(0), p.id))
                .filter(|(load, _)| *load < self.cfg.per_peer)
                .min();
            let Some((_, peer)) = choice else {
                continue;
            };
            self.in_flight.insert(
                *hash,
                Flight {
                    peer,
                    since_ms: now_ms,
                },
            );
            *self.per_peer.entry(peer).or_default() += 1;
            out.entry(peer).or_default().push(*hash);
            budget -= 1;
        }
        let mut v: Vec<(u64, Vec<BlockHash>)> = out.into_iter().collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    fn release(&mut self, hash: &BlockHash) -> Option<Flight> {
        let f = self.in_flight.remove(hash)?;
        if let Some(n) = self.per_peer.get_mut(&f.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&f.peer);
            }
        }
        Some(f)
    }

    /// A block arrived from `peer`.
    pub fn on_block(&mut self, peer: u64, hash: BlockHash, block: Box<Block>) -> Arrival {
        match self.in_flight.get(&hash) {
            Some(f) if f.peer == peer => {}
            _ => return Arrival::Unrequested(block),
        }
        self.release(&hash);
        let bytes = block.encoded_len();
        self.arrived_bytes += bytes;
        self.arrived.insert(
            hash,
            Arrived {
                block: *block,
                peer,
                bytes,
            },
        );
        Arrival::Requested
    }

    /// The peer does not have these blocks: ask others.
    pub fn on_not_found(&mut self, peer: u64, hashes: &[BlockHash]) {
        for h in hashes {
            if self.in_flight.get(h).is_some_and(|f| f.peer == peer) {
                self.release(h);
                let set = self.refused.entry(peer).or_default();
                if set.len() < MAX_REFUSED {
                    set.insert(*h);
                }
            }
        }
    }

    /// The peer is gone: its requests go to others.
    pub fn on_peer_gone(&mut self, peer: u64) {
        let mine: Vec<BlockHash> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.peer == peer)
            .map(|(h, _)| *h)
            .collect();
        for h in mine {
            self.release(&h);
        }
        self.refused.remove(&peer);
    }

    /// The next blocks for the node: the run of arrived blocks at the
    /// front of `path`, in order. Nothing while a batch is with the node.
    pub fn take_ready(&mut self, path: &VecDeque<BlockHash>) -> Vec<(Block, u64)> {
        if !self.processing.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for hash in path.iter() {
            if out.len() >= self.cfg.max_batch {
                break;
            }
            let Some(a) = self.arrived.remove(hash) else {
                break;
            };
            self.arrived_bytes -= a.bytes;
            self.processing.insert(*hash);
            out.push((a.block, a.peer));
        }
        out
    }

    /// The node reported on these blocks.
    pub fn on_processed(&mut self, hashes: &[BlockHash]) {
        for h in hashes {
            self.processing.remove(h);
        }
    }

    /// Drops waiting blocks that `keep` rejects (no longer on a chain being
    /// fetched); returns how many.
    pub fn retain_arrived(&mut self, keep: impl Fn(&BlockHash) -> bool) -> usize {
        let drop: Vec<BlockHash> = self.arrived.keys().filter(|h| !keep(h)).copied().collect();
        for h in &drop {
            if let Some(a) = self.arrived.remove(h) {
                self.arrived_bytes -= a.bytes;
            }
        }
        drop.len()
    }

    /// Peers whose requests are overdue: any request older than
    /// `timeout_ms`, or the first missing block of `path` held longer than
    /// `stall_ms` while later blocks wait (the window cannot move).
    pub fn stalled(&self, path: &VecDeque<BlockHash>, now_ms: u64) -> Vec<u64> {
        let mut out: HashSet<u64> = self
            .in_flight
            .values()
            .filter(|f| now_ms.saturating_sub(f.since_ms) > self.cfg.timeout_ms)
            .map(|f| f.peer)
            .collect();
        // the window cannot move: blocks wait behind the first missing one,
        // and nothing more can be asked for
        let blocked = !self.arrived.is_empty()
            && (self.arrived_bytes >= self.cfg.max_arrived_bytes
                || self.in_flight.len() >= self.cfg.max_in_flight
                || path.iter().take(self.cfg.window).all(|h| self.has(h)));
        if blocked
            && let Some(first) = path.iter().find(|h| !self.arrived.contains_key(h))
            && let Some(f) = self.in_flight.get(first)
            && now_ms.saturating_sub(f.since_ms) > self.cfg.stall_ms
        {
            out.insert(f.peer);
        }
        let mut v: Vec<u64> = out.into_iter().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{Amount, COIN};

    fn setup(n: usize) -> (ChainBuilder, VecDeque<BlockHash>) {
        let mut b = ChainBuilder::new(testkit::params(), 1, Amount(COIN));
        for _ in 0..n {
            b.extend(vec![], address(1));
        }
        let path = b.blocks[1..].iter().map(|x| x.hash()).collect();
        (b, path)
    }

    fn cfg() -> DownloadConfig {
        DownloadConfig {
            max_in_flight: 8,
            per_peer: 4,
            window: 16,
            max_arrived_bytes: 1 << 20,
            timeout_ms: 1000,
            stall_ms: 100,
            max_batch: 100,
        }
    }

    #[test]
    fn blocks_go_only_to_peers_that_have_them() {
        let (_, path) = setup(30);
        let mut d = Downloader::new(cfg());
        // peer 1 showed headers up to height 3, peer 2 none, peer 3 all
        let peers = [
            PeerSlot {
                id: 1,
                reach: Some(3),
            },
            PeerSlot { id: 2, reach: None },
            PeerSlot {
                id: 3,
                reach: Some(30),
            },
        ];
        let reqs = d.schedule(1, &path, &peers, 0);
        let of = |p: u64| reqs.iter().find(|r| r.0 == p).map_or(0, |r| r.1.len());
        assert_eq!(of(2), 0);
        // the least busy peer that has a block gets it: 1, 3, 1, then only 3 has the rest
        assert_eq!(of(1), 2);
        assert_eq!(of(3), 4, "peer 3 up to its cap");
        assert_eq!(d.in_flight(), 6);
        // nothing twice
        assert!(d.schedule(1, &path, &peers, 0).is_empty());
    }

    #[test]
    fn not_found_and_departure_move_requests_at_once() {
        let (_, path) = setup(10);
        let mut d = Downloader::new(cfg());
        let peers = [PeerSlot {
            id: 1,
            reach: Some(10),
        }];
        let reqs = d.schedule(1, &path, &peers, 0);
        assert_eq!(reqs[0].1.len(), 4);
        d.on_not_found(1, &reqs[0].1[..2]);
        let both = [
            PeerSlot {
                id: 1,
                reach: Some(10),
            },
            PeerSlot {
                id: 2,
                reach: Some(10),
            },
        ];
        let again = d.schedule(1, &path, &both, 1);
        let to2: Vec<BlockHash> = again
            .iter()
            .filter(|r| r.0 == 2)
            .flat_map(|r| r.1.clone())
            .collect();
        assert!(to2.contains(&reqs[0].1[0]) && to2.contains(&reqs[0].1[1]));
        d.on_peer_gone(2);
        assert_eq!(d.in_flight_from(2), 0);
        let after = d.schedule(1, &path, &both[..1], 2);
        // peer 1 refused two of them: they stay unassigned until someone else has them
        assert!(after.iter().all(|r| !r.1.contains(&reqs[0].1[0])));
    }

    #[test]
    fn arrivals_are_released_in_order_one_batch_at_a_time() {
        let (b, path) = setup(6);
        let mut d = Downloader::new(cfg());
        let peers = [PeerSlot {
            id: 1,
            reach: Some(6),
        }];
        d.schedule(1, &path, &peers, 0);
        // block 2 arrives before block 1: nothing ready yet
        assert!(matches!(
            d.on_block(1, path[1], Box::new(b.blocks[2].clone())),
            Arrival::Requested
        ));
        assert!(d.take_ready(&path).is_empty());
        // an unrequested block is handed back
        assert!(matches!(
            d.on_block(2, path[0], Box::new(b.blocks[1].clone())),
            Arrival::Unrequested(_)
        ));
        d.on_block(1, path[0], Box::new(b.blocks[1].clone()));
        let ready = d.take_ready(&path);
        assert_eq!(ready.len(), 2);
        assert!(d.is_processing());
        d.on_block(1, path[2], Box::new(b.blocks[3].clone()));
        assert!(d.take_ready(&path).is_empty(), "one batch at a time");
        d.on_processed(&[path[0], path[1]]);
        let rest: VecDeque<BlockHash> = path.iter().skip(2).copied().collect();
        assert_eq!(d.take_ready(&rest).len(), 1);
        assert_eq!(d.arrived_bytes(), 0);
    }

    #[test]
    fn stalls_are_detected() {
        let (b, path) = setup(20);
        let mut d = Downloader::new(cfg());
        let peers = [
            PeerSlot {
                id: 1,
                reach: Some(20),
            },
            PeerSlot {
                id: 2,
                reach: Some(20),
            },
        ];
        let reqs = d.schedule(1, &path, &peers, 0);
        // peer 2 answers everything, peer 1 holds the first block
        for (peer, hashes) in &reqs {
            if *peer == 2 {
                for h in hashes {
                    let i = path.iter().position(|x| x == h).unwrap();
                    d.on_block(2, *h, Box::new(b.blocks[i + 1].clone()));
                }
            }
        }
        assert!(d.stalled(&path, 50).is_empty());
        let first_holder = reqs.iter().find(|r| r.1.contains(&path[0])).unwrap().0;
        assert_eq!(first_holder, 1);
        // the window is not blocked yet (few blocks waiting): only the long timeout applies
        assert!(d.stalled(&path, 500).is_empty());
        assert_eq!(d.stalled(&path, 1001), vec![1]);
        // once the whole window is taken, holding its first block is a stall
        let mut d = Downloader::new(DownloadConfig { window: 8, ..cfg() });
        let reqs = d.schedule(1, &path, &peers, 0);
        for (peer, hashes) in &reqs {
            if *peer == 2 {
                for h in hashes {
                    let i = path.iter().position(|x| x == h).unwrap();
                    d.on_block(2, *h, Box::new(b.blocks[i + 1].clone()));
                }
            }
        }
        assert!(d.stalled(&path, 50).is_empty());
        assert_eq!(d.stalled(&path, 101), vec![1]);
    }
}
