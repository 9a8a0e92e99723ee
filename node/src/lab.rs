//! Support for experiments on private testnets (`cairn-node testnet`):
//! the miner's run-time mode (`mining_setMode`) and a bounded record of
//! when this node first saw each block and transfer, and from whom
//! (`lab_getObservations`). Nothing here touches consensus: it only
//! schedules the local miner and observes.

use crate::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_consensus::{BlockHash, TxId};

/// Blocks remembered by the first-seen record.
pub const MAX_SEEN_BLOCKS: usize = 4096;
/// Transfers remembered by the first-seen record.
pub const MAX_SEEN_TRANSFERS: usize = 16_384;
/// Blocks this node mined, remembered to count the stale ones.
pub const MAX_MINED: usize = 4096;

/// How the miner makes blocks while it runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MiningMode {
    /// One block per interval; with `random`, each interval is drawn from
    /// an exponential distribution with this mean, as proof of work gives
    /// on a real network (so two miners can find blocks close together).
    Interval { ms: u64, random: bool },
    /// Search without pause (networks that retarget).
    Continuous,
    /// A block as soon as the mempool holds a transfer that can be mined.
    Instant,
    /// No automatic blocks; `mining_generate` still mines on request.
    Manual,
    /// No blocks at all: `mining_generate` is refused too.
    Paused,
}

impl MiningMode {
    /// Parses `instant`, `interval`, `continuous`, `manual`, `paused`.
    pub fn parse(mode: &str, interval_ms: Option<u64>, random: bool) -> Result<MiningMode, String> {
        match mode {
            "instant" => Ok(MiningMode::Instant),
            "continuous" => Ok(MiningMode::Continuous),
            "manual" => Ok(MiningMode::Manual),
            "paused" => Ok(MiningMode::Paused),
            "interval" => match interval_ms {
                Some(ms) if (1..=86_400_000).contains(&ms) => {
                    Ok(MiningMode::Interval { ms, random })
                }
                Some(ms) => Err(format!("interval_ms {ms} is not between 1 and 86400000")),
                None => Err("mode interval needs interval_ms".into()),
            },
            other => Err(format!(
                "mode {other:?} is not instant, interval, continuous, manual or paused"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            MiningMode::Interval { .. } => "interval",
            MiningMode::Continuous => "continuous",
            MiningMode::Instant => "instant",
            MiningMode::Manual => "manual",
            MiningMode::Paused => "paused",
        }
    }

    /// Whether the mining thread runs in this mode.
    pub fn runs(&self) -> bool {
        !matches!(self, MiningMode::Manual | MiningMode::Paused)
    }
}

/// Where a block or transfer was first seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Mined here (blocks) or submitted over RPC (transfers).
    Local,
    /// Received from the peer with this connection id.
    Peer(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen<K> {
    pub key: K,
    pub height: u64,
    pub time_ms: u64,
    pub origin: Origin,
}

/// A bounded first-seen table: the oldest entries leave first.
struct Ring<K: std::hash::Hash + Eq + Copy> {
    order: VecDeque<K>,
    map: HashMap<K, Seen<K>>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq + Copy> Ring<K> {
    fn new(cap: usize) -> Self {
        Ring {
            order: VecDeque::new(),
            map: HashMap::new(),
            cap,
        }
    }

    /// Records `key` unless it is already known; returns whether it was new.
    fn record(&mut self, key: K, height: u64, time_ms: u64, origin: Origin) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(key);
        self.map.insert(
            key,
            Seen {
                key,
                height,
                time_ms,
                origin,
            },
        );
        true
    }

    /// The newest `limit` entries, oldest first.
    fn newest(&self, limit: usize) -> Vec<Seen<K>> {
        let skip = self.order.len().saturating_sub(limit);
        self.order
            .iter()
            .skip(skip)
            .filter_map(|k| self.map.get(k).cloned())
            .collect()
    }
}

struct Records {
    blocks: Ring<BlockHash>,
    transfers: Ring<TxId>,
    mined: VecDeque<BlockHash>,
    mined_total: u64,
}

/// The experiment state of one node.
pub struct Lab {
    mode: Mutex<Option<MiningMode>>,
    /// Bumped on every mode change, so a miner waiting for its next block
    /// picks the new mode up at once.
    generation: AtomicU64,
    records: Mutex<Records>,
}

impl Default for Lab {
    fn default() -> Self {
        Lab {
            mode: Mutex::new(None),
            generation: AtomicU64::new(0),
            records: Mutex::new(Records {
                blocks: Ring::new(MAX_SEEN_BLOCKS),
                transfers: Ring::new(MAX_SEEN_TRANSFERS),
                mined: VecDeque::new(),
                mined_total: 0,
            }),
        }
    }
}

impl Lab {
    /// The mode set with `mining_setMode`, if any (otherwise the node's
    /// configuration decides: an interval on pinned-target networks,
    /// continuous elsewhere).
    pub fn mode(&self) -> Option<MiningMode> {
        *lock(&self.mode)
    }

    pub fn set_mode(&self, mode: MiningMode) {
        *lock(&self.mode) = Some(mode);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How long to wait before the next block in `mode`'s interval.
    pub fn interval(mode: MiningMode) -> Option<Duration> {
        match mode {
            MiningMode::Interval { ms, random: false } => {
                // within 20% of `ms`: miners started together (a testnet)
                // would otherwise tick in phase, every tick a tie at one
                // height on every side, and two sides of a healed
                // partition could stay apart on equal work for ever
                let spread = ms / 5;
                let jitter = rand::random::<u64>() % (2 * spread + 1);
                Some(Duration::from_millis(ms - spread + jitter))
            }
            MiningMode::Interval { ms, random: true } => {
                // exponential with mean `ms`: -ln(U) * ms, U in (0, 1]
                let u: f64 = 1.0 - rand::random::<f64>();
                let draw = (-u.ln() * ms as f64).min(ms as f64 * 20.0);
                Some(Duration::from_millis(draw as u64))
            }
            _ => None,
        }
    }

    pub fn saw_block(&self, hash: BlockHash, height: u64, time_ms: u64, origin: Origin) {
        lock(&self.records)
            .blocks
            .record(hash, height, time_ms, origin);
    }

    pub fn saw_transfer(&self, id: TxId, time_ms: u64, origin: Origin) {
        lock(&self.records).transfers.record(id, 0, time_ms, origin);
    }

    /// A block this node mined (and accepted).
    pub fn mined(&self, hash: BlockHash, height: u64, time_ms: u64) {
        let mut r = lock(&self.records);
        r.blocks.record(hash, height, time_ms, Origin::Local);
        if r.mined.len() >= MAX_MINED {
            r.mined.pop_front();
        }
        r.mined.push_back(hash);
        r.mined_total += 1;
    }

    /// The newest first-seen records, oldest first.
    pub fn blocks(&self, limit: usize) -> Vec<Seen<BlockHash>> {
        lock(&self.records).blocks.newest(limit)
    }

    pub fn transfers(&self, limit: usize) -> Vec<Seen<TxId>> {
        lock(&self.records).transfers.newest(limit)
    }

    /// Blocks mined here (the remembered ones) and the total since start-up.
    pub fn mined_blocks(&self) -> (Vec<BlockHash>, u64) {
        let r = lock(&self.records);
        (r.mined.iter().copied().collect(), r.mined_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_keep_the_first_sighting_and_stay_bounded() {
        let mut ring = Ring::new(3);
        let h = |i: u8| BlockHash([i; 32]);
        assert!(ring.record(h(1), 1, 100, Origin::Peer(7)));
        assert!(
            !ring.record(h(1), 1, 200, Origin::Local),
            "first sighting wins"
        );
        for i in 2..=5 {
            ring.record(h(i), u64::from(i), 100 + u64::from(i), Origin::Local);
        }
        let all = ring.newest(10);
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter().map(|s| s.height).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(ring.newest(1)[0].height, 5);
        assert_eq!(ring.map.len(), 3);
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            MiningMode::parse("instant", None, false),
            Ok(MiningMode::Instant)
        );
        assert_eq!(
            MiningMode::parse("interval", Some(500), true),
            Ok(MiningMode::Interval {
                ms: 500,
                random: true
            })
        );
        assert!(MiningMode::parse("interval", None, false).is_err());
        assert!(MiningMode::parse("interval", Some(0), false).is_err());
        assert!(MiningMode::parse("fast", None, false).is_err());
        assert!(!MiningMode::Paused.runs() && MiningMode::Instant.runs());
    }

    #[test]
    fn random_intervals_average_to_their_mean() {
        let mode = MiningMode::Interval {
            ms: 1000,
            random: true,
        };
        let n = 4000;
        let total: u128 = (0..n)
            .map(|_| Lab::interval(mode).unwrap().as_millis())
            .sum();
        let mean = total / n;
        assert!((850..1150).contains(&mean), "mean {mean}");
    }

    #[test]
    fn fixed_intervals_keep_their_pace_but_not_their_phase() {
        let mode = MiningMode::Interval {
            ms: 500,
            random: false,
        };
        let draws: Vec<u128> = (0..2000)
            .map(|_| Lab::interval(mode).unwrap().as_millis())
            .collect();
        assert!(draws.iter().all(|d| (400..=600).contains(d)), "within 20%");
        let mean = draws.iter().sum::<u128>() / 2000;
        assert!((480..=520).contains(&mean), "mean {mean}");
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 50, "two miners drift apart");
    }
}
