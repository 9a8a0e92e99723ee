//! The address book: addresses the node may dial, where each came from, and
//! how each fared.
//!
//! Two kinds of entries:
//! - **operator** entries ([`AddrSource::Operator`]) from `--peer`, bootnodes
//!   and `net_addPeer`. They may name a host (resolved when dialled), are
//!   never evicted or forgotten, back off at most [`OPERATOR_BACKOFF_CAP_MS`]
//!   (a restarted testnet node must come back quickly), are dialled first and
//!   ignore the diversity limits below;
//! - **learned** entries ([`AddrSource::Peer`]) from a peer's `Addrs` gossip,
//!   always IP addresses.
//!
//! # Bounds (see [`AddrBookConfig`] for the defaults)
//! Learned addresses sit in buckets by the net group of their **source**
//! (the peer that told us): at most `per_source` (64) from one source group,
//! at most `max_learned` (2048) in all, and at most `per_group` (8) in one
//! net group of the **address** itself. To make room, an address from source
//! S may only evict
//! - an address that S's own group told us (the worst of them: most
//!   failures, then oldest), or
//! - a *terrible* address from anyone: one never reached that failed at
//!   least [`TERRIBLE_FAILURES`] times in a row (it does not work, so losing
//!   it costs nothing),
//!
//! and never a *tried* address (one we once connected to). When no such
//! victim exists the address is dropped. So one peer's `Addrs`, however
//! many, never push out working addresses learned from others: it churns its
//! own bucket. Operator entries are bounded by `max_operator` (an error
//! when full) and blocks by `max_blocked`.
//!
//! Learned addresses are also refused on entry when they cannot mean
//! anything to us: unroutable ones and port 0 (for operator entries too),
//! loopback addresses unless the source itself is on loopback (another
//! machine's loopback is not ours), and private addresses unless the source
//! is on a private network or loopback. A learned entry that failed
//! `forget_after_failures` (10) times in a row is forgotten, or twice that for
//! a tried one: gossip can bring it back.
//!
//! # Backoff
//! After a failure the next attempt waits
//! `min(cap, BACKOFF_BASE_MS * 2^(failures - 1))`: base 1 s, cap 60 s for
//! operator entries and 10 min for learned ones; a peer on another network or
//! a connection to ourselves waits [`LONG_BACKOFF_MS`] (1 hour) as it will not
//! change soon. [`FailureKind`] says why a dial failed; none of the kinds is
//! misbehaviour. [`AddrBook::mark_success`] resets the count. A connection
//! that ends soon after its handshake is the caller's to report as a
//! [`FailureKind::Closed`] failure, or the node would redial a peer that
//! keeps hanging up as fast as it can.
//!
//! # Blocks
//! [`AddrBook::block`] (after `net_disconnectPeer`) stops the address from
//! being dialled or gossiped, and the caller refuses its inbound connections
//! ([`AddrBook::is_blocked`]), until [`AddrBook::add_operator`] or
//! [`AddrBook::unblock`] names it again. Blocks are persisted.
//!
//! # Persistence
//! Entries are stored under the one-byte prefix [`KEY_PREFIX`] (`b'P'`)
//! followed by the encoded address, with a version byte then the entry as
//! value; blocks under [`BLOCK_PREFIX`] (`b'K'`). [`AddrBook::load`] takes
//! what the store holds, drops (and schedules the deletion of) entries that
//! do not decode, are not canonical or exceed the bounds, and clamps times
//! from the future. Every change queues a [`StoreOp`]; the caller collects
//! them with [`AddrBook::take_writes`] and writes them. Pending writes hold
//! at most one operation per key, and removing an entry never written
//! cancels its write, so they stay within the keys present plus the keys
//! stored, however fast a peer churns its bucket between two drains.
//!
//! # Canonical form
//! IP addresses are stored as the book sees them: IPv4-mapped IPv6 as IPv4,
//! no IPv6 flow label or scope id. Methods taking a [`PeerAddr`] accept any
//! form; the addresses returned by [`AddrBook::candidates`] are canonical,
//! and are what the caller should put in [`DialContext::connected_or_dialing`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use borsh::{BorshDeserialize, BorshSerialize};
use rand::Rng;

use crate::addr::{NetClass, NetGroup, PeerAddr, canonical, classify, net_group};
use crate::store::StoreOp;

/// Key prefix of address entries in the [`crate::store::PeerStore`].
pub const KEY_PREFIX: u8 = b'P';
/// Key prefix of operator blocks.
pub const BLOCK_PREFIX: u8 = b'K';
/// Version byte of the stored value formats.
const VALUE_VERSION: u8 = 1;

/// First backoff after a failure.
pub const BACKOFF_BASE_MS: u64 = 1_000;
/// Longest backoff of an operator entry.
pub const OPERATOR_BACKOFF_CAP_MS: u64 = 60_000;
/// Longest backoff of a learned entry.
pub const LEARNED_BACKOFF_CAP_MS: u64 = 600_000;
/// Wait after [`FailureKind::WrongNetwork`] or [`FailureKind::SelfConnection`].
pub const LONG_BACKOFF_MS: u64 = 3_600_000;
/// Failures in a row after which a never-reached learned address is
/// *terrible*: evictable by anyone, and not gossiped.
pub const TERRIBLE_FAILURES: u32 = 3;
/// A success this recent ranks an address first in [`AddrBook::sample`].
pub const RECENT_SUCCESS_MS: u64 = 24 * 3_600_000;

/// Bounds and limits of an [`AddrBook`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrBookConfig {
    /// Most learned addresses from one source net group (default 64).
    pub per_source: usize,
    /// Most learned addresses in all (default 2048).
    pub max_learned: usize,
    /// Most learned addresses in one net group of the address (default 8).
    pub per_group: usize,
    /// Most outbound connections to addresses learned from one source group
    /// (default 2).
    pub max_outbound_per_source: usize,
    /// Most operator entries (default 1024).
    pub max_operator: usize,
    /// Most blocked addresses (default 1024).
    pub max_blocked: usize,
    /// Failures in a row after which a learned entry is forgotten (default
    /// 10, about 17 minutes of backoff); twice that for a tried one.
    pub forget_after_failures: u32,
}

impl Default for AddrBookConfig {
    fn default() -> Self {
        AddrBookConfig {
            per_source: 64,
            max_learned: 2048,
            per_group: 8,
            max_outbound_per_source: 2,
            max_operator: 1024,
            max_blocked: 1024,
            forget_after_failures: 10,
        }
    }
}

/// Where the book learned an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrSource {
    /// `--peer`, bootnodes, `net_addPeer`.
    Operator,
    /// This peer's `Addrs` gossip (its address as the caller gave it).
    Peer(SocketAddr),
}

/// Why a peer refused us, as it told us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefuseKind {
    /// It has no free slot.
    Full,
    /// Its operator disconnected us.
    Disconnected,
    /// It banned us.
    Banned,
    /// It is already connected to us.
    Duplicate,
    /// Another reason.
    Other,
}

/// Why a dial failed. None of these is misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Connecting failed or timed out (or the host did not resolve).
    Unreachable,
    /// Reset or closed during the handshake.
    Closed,
    /// The peer refused us and said why.
    Refused(RefuseKind),
    /// The peer is on another network (waits [`LONG_BACKOFF_MS`]).
    WrongNetwork,
    /// The address is this node (waits [`LONG_BACKOFF_MS`]).
    SelfConnection,
}

impl FailureKind {
    fn code(self) -> u8 {
        match self {
            FailureKind::Unreachable => 0,
            FailureKind::Closed => 1,
            FailureKind::Refused(RefuseKind::Full) => 2,
            FailureKind::Refused(RefuseKind::Disconnected) => 3,
            FailureKind::Refused(RefuseKind::Banned) => 4,
            FailureKind::Refused(RefuseKind::Duplicate) => 5,
            FailureKind::Refused(RefuseKind::Other) => 6,
            FailureKind::WrongNetwork => 7,
            FailureKind::SelfConnection => 8,
        }
    }

    fn from_code(code: u8) -> Option<FailureKind> {
        Some(match code {
            0 => FailureKind::Unreachable,
            1 => FailureKind::Closed,
            2 => FailureKind::Refused(RefuseKind::Full),
            3 => FailureKind::Refused(RefuseKind::Disconnected),
            4 => FailureKind::Refused(RefuseKind::Banned),
            5 => FailureKind::Refused(RefuseKind::Duplicate),
            6 => FailureKind::Refused(RefuseKind::Other),
            7 => FailureKind::WrongNetwork,
            8 => FailureKind::SelfConnection,
            _ => return None,
        })
    }
}

/// How long to wait before the next attempt after the `failures`-th failure
/// in a row (counting from 1) of the given kind.
pub fn backoff_ms(operator: bool, failures: u32, kind: FailureKind) -> u64 {
    match kind {
        FailureKind::WrongNetwork | FailureKind::SelfConnection => LONG_BACKOFF_MS,
        _ => {
            let cap = if operator {
                OPERATOR_BACKOFF_CAP_MS
            } else {
                LEARNED_BACKOFF_CAP_MS
            };
            // 2^32 s is far above every cap: no overflow, same result.
            let shift = failures.saturating_sub(1).min(32);
            (BACKOFF_BASE_MS << shift).min(cap)
        }
    }
}

/// Why the book refused an operator request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrBookError {
    #[error(
        "{0} cannot be dialled: it is unspecified, multicast, broadcast, reserved or documentation-only, or has port 0; give a reachable host:port"
    )]
    Unroutable(PeerAddr),
    #[error(
        "the address book already holds {max} addresses added by the operator (--peer, net_addPeer), the most it keeps: remove unused ones first"
    )]
    OperatorFull { max: usize },
    #[error(
        "{max} addresses are blocked already, the most the node remembers: add some back with net_addPeer first"
    )]
    BlockFull { max: usize },
}

/// One entry as shown for debugging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrView {
    pub addr: PeerAddr,
    pub source: AddrSource,
    /// A connection to it succeeded once.
    pub tried: bool,
    /// Failures in a row.
    pub failures: u32,
    pub last_failure: Option<FailureKind>,
    pub added_ms: u64,
    pub last_success_ms: Option<u64>,
    /// Not dialled before this time.
    pub next_try_ms: u64,
    pub blocked: bool,
}

/// What the caller knows of its connections when asking whom to dial.
pub struct DialContext<'a> {
    /// Addresses connected to or being dialled (as returned by
    /// [`AddrBook::candidates`]).
    pub connected_or_dialing: &'a HashSet<PeerAddr>,
    /// Whether the ban list covers an address. Host entries are not asked:
    /// the caller checks them once resolved.
    pub is_banned: &'a dyn Fn(&SocketAddr) -> bool,
    /// The classes the node itself is on (its listen IP and the operator's
    /// peers): learned loopback/private addresses are dialled only when
    /// their class is here.
    pub local_classes: &'a HashSet<NetClass>,
    /// Outbound connections per source group ([`AddrBook::source_of`] of
    /// each outbound peer's address).
    pub outbound_per_source: &'a HashMap<NetGroup, usize>,
    /// Net groups (`net_group` of the address) that have an outbound
    /// connection.
    pub outbound_groups: &'a HashSet<NetGroup>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    source: AddrSource,
    tried: bool,
    added_ms: u64,
    last_success_ms: Option<u64>,
    failures: u32,
    last_failure: Option<FailureKind>,
    next_try_ms: u64,
}

impl Entry {
    fn is_learned(&self) -> bool {
        matches!(self.source, AddrSource::Peer(_))
    }

    fn is_terrible(&self) -> bool {
        self.is_learned() && !self.tried && self.failures >= TERRIBLE_FAILURES
    }

    /// Larger is worse: most failures, then oldest.
    fn badness(&self) -> (u32, Reverse<u64>) {
        (self.failures, Reverse(self.added_ms))
    }
}

/// The address book. See the module documentation for its rules.
#[derive(Debug)]
pub struct AddrBook {
    cfg: AddrBookConfig,
    entries: BTreeMap<PeerAddr, Entry>,
    /// Learned entries by the net group of their source.
    by_source: BTreeMap<NetGroup, BTreeSet<PeerAddr>>,
    /// Learned entries by the net group of the address.
    by_group: BTreeMap<NetGroup, BTreeSet<PeerAddr>>,
    /// Learned entries that are terrible, by badness: the last is the one
    /// to evict first, found without a scan.
    terrible: BTreeSet<((u32, Reverse<u64>), PeerAddr)>,
    learned: usize,
    operator: usize,
    /// Blocked addresses and when they were blocked.
    blocked: BTreeMap<PeerAddr, u64>,
    /// Pending writes, at most one per key.
    writes: WriteQueue,
}

fn canon_socket(a: &SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(a.ip()), a.port())
}

fn canon(addr: &PeerAddr) -> PeerAddr {
    match addr {
        PeerAddr::Ip(a) => PeerAddr::Ip(canon_socket(a)),
        host => host.clone(),
    }
}

/// Port non-zero and the IP not unroutable.
fn dialable(addr: &PeerAddr) -> bool {
    match addr {
        PeerAddr::Ip(a) => a.port() != 0 && classify(a.ip()) != NetClass::Unroutable,
        PeerAddr::Host { port, .. } => *port != 0,
    }
}

/// Whether a peer on `source` can usefully tell us about `addr`.
fn meaningful_from(addr: &SocketAddr, source: &SocketAddr) -> bool {
    let source = classify(source.ip());
    match classify(addr.ip()) {
        NetClass::Public => true,
        NetClass::Private => matches!(source, NetClass::Private | NetClass::Loopback),
        NetClass::Loopback => source == NetClass::Loopback,
        NetClass::Unroutable => false,
    }
}

fn is_local(class: NetClass) -> bool {
    matches!(class, NetClass::Loopback | NetClass::Private)
}

fn learned_ip(addr: &PeerAddr) -> Option<SocketAddr> {
    addr.ip()
}

// ---- persistence -----------------------------------------------------------

#[derive(BorshSerialize, BorshDeserialize, PartialEq, Eq)]
enum StoredSock {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

#[derive(BorshSerialize, BorshDeserialize, PartialEq, Eq)]
enum StoredAddr {
    Ip(StoredSock),
    Host(String, u16),
}

#[derive(BorshSerialize, BorshDeserialize)]
struct StoredEntry {
    /// `None`: operator.
    source: Option<StoredSock>,
    tried: bool,
    added_ms: u64,
    last_success_ms: Option<u64>,
    failures: u32,
    last_failure: Option<u8>,
    next_try_ms: u64,
}

fn store_sock(a: &SocketAddr) -> StoredSock {
    match canon_socket(a) {
        SocketAddr::V4(a) => StoredSock::V4(a.ip().octets(), a.port()),
        SocketAddr::V6(a) => StoredSock::V6(a.ip().octets(), a.port()),
    }
}

fn load_sock(s: StoredSock) -> SocketAddr {
    match s {
        StoredSock::V4(ip, port) => SocketAddr::new(IpAddr::V4(ip.into()), port),
        StoredSock::V6(ip, port) => SocketAddr::new(IpAddr::V6(ip.into()), port),
    }
}

fn encode_key(prefix: u8, addr: &PeerAddr) -> Vec<u8> {
    let stored = match canon(addr) {
        PeerAddr::Ip(a) => StoredAddr::Ip(store_sock(&a)),
        PeerAddr::Host { host, port } => StoredAddr::Host(host, port),
    };
    let mut key = vec![prefix];
    // Writing into a Vec cannot fail.
    let _ = borsh::to_writer(&mut key, &stored);
    key
}

/// The address of a key, if it is well formed, canonical and dialable.
fn decode_key(prefix: u8, key: &[u8]) -> Option<PeerAddr> {
    let (&p, rest) = key.split_first()?;
    if p != prefix {
        return None;
    }
    let addr = match borsh::from_slice::<StoredAddr>(rest).ok()? {
        StoredAddr::Ip(s) => PeerAddr::Ip(load_sock(s)),
        StoredAddr::Host(host, port) => {
            // Host names must be exactly what parsing produces.
            let parsed: PeerAddr = format!("{host}:{port}").parse().ok()?;
            if !matches!(&parsed, PeerAddr::Host { host: h, port: p } if *h == host && *p == port) {
                return None;
            }
            parsed
        }
    };
    (canon(&addr) == addr && dialable(&addr) && encode_key(prefix, &addr) == key).then_some(addr)
}

fn encode_entry(e: &Entry) -> Vec<u8> {
    let stored = StoredEntry {
        source: match &e.source {
            AddrSource::Operator => None,
            AddrSource::Peer(s) => Some(store_sock(s)),
        },
        tried: e.tried,
        added_ms: e.added_ms,
        last_success_ms: e.last_success_ms,
        failures: e.failures,
        last_failure: e.last_failure.map(FailureKind::code),
        next_try_ms: e.next_try_ms,
    };
    let mut value = vec![VALUE_VERSION];
    let _ = borsh::to_writer(&mut value, &stored);
    value
}

fn decode_entry(addr: &PeerAddr, value: &[u8]) -> Option<Entry> {
    let (&version, rest) = value.split_first()?;
    if version != VALUE_VERSION {
        return None;
    }
    let s = borsh::from_slice::<StoredEntry>(rest).ok()?;
    let source = match s.source {
        None => AddrSource::Operator,
        Some(src) => {
            let src = load_sock(src);
            let ip = learned_ip(addr)?;
            if canon_socket(&src) != src || !meaningful_from(&ip, &src) {
                return None;
            }
            AddrSource::Peer(src)
        }
    };
    let last_failure = match s.last_failure {
        None => None,
        Some(code) => Some(FailureKind::from_code(code)?),
    };
    if s.tried != s.last_success_ms.is_some() {
        return None;
    }
    Some(Entry {
        source,
        tried: s.tried,
        added_ms: s.added_ms,
        last_success_ms: s.last_success_ms,
        failures: s.failures,
        last_failure,
        next_try_ms: s.next_try_ms,
    })
}

// ---- the book --------------------------------------------------------------

impl AddrBook {
    /// An empty book.
    pub fn new(cfg: AddrBookConfig) -> AddrBook {
        AddrBook {
            cfg,
            entries: BTreeMap::new(),
            by_source: BTreeMap::new(),
            by_group: BTreeMap::new(),
            terrible: BTreeSet::new(),
            learned: 0,
            operator: 0,
            blocked: BTreeMap::new(),
            writes: WriteQueue::default(),
        }
    }

    /// The book from stored entries (those under [`KEY_PREFIX`] and
    /// [`BLOCK_PREFIX`], in any order and mixed). Entries that do not decode,
    /// are not canonical, are forgotten by the failure rule or exceed a bound
    /// (operator entries first, then tried, then the fewest failures) are
    /// dropped and their deletion queued; times later than `now_ms` are
    /// clamped (the clock may have gone back) and the fixed entry queued.
    pub fn load(entries: Vec<(Vec<u8>, Vec<u8>)>, cfg: AddrBookConfig, now_ms: u64) -> AddrBook {
        let mut book = AddrBook::new(cfg);
        let mut good: Vec<(PeerAddr, Entry, bool)> = Vec::new();
        let mut blocks: Vec<(PeerAddr, u64)> = Vec::new();
        for (key, value) in entries {
            book.writes.loaded(key.clone());
            match key.first() {
                Some(&KEY_PREFIX) => {
                    let decoded = decode_key(KEY_PREFIX, &key)
                        .and_then(|a| decode_entry(&a, &value).map(|e| (a, e)));
                    match decoded {
                        Some((a, mut e)) => {
                            let before = e.clone();
                            e.added_ms = e.added_ms.min(now_ms);
                            e.last_success_ms = e.last_success_ms.map(|t| t.min(now_ms));
                            e.next_try_ms =
                                e.next_try_ms.min(now_ms.saturating_add(LONG_BACKOFF_MS));
                            let changed = e != before;
                            good.push((a, e, changed));
                        }
                        None => {
                            book.writes.delete(key);
                        }
                    }
                }
                Some(&BLOCK_PREFIX) => {
                    let decoded = decode_key(BLOCK_PREFIX, &key).and_then(|a| {
                        let (&v, rest) = value.split_first()?;
                        let at = borsh::from_slice::<u64>(rest).ok()?;
                        (v == VALUE_VERSION).then_some((a, at.min(now_ms)))
                    });
                    match decoded {
                        Some(b) => blocks.push(b),
                        None => {
                            book.writes.delete(key);
                        }
                    }
                }
                _ => {
                    book.writes.delete(key);
                }
            }
        }
        // Newest blocks first.
        blocks.sort_by_key(|(a, at)| (Reverse(*at), a.clone()));
        for (addr, at) in blocks {
            if book.blocked.len() < book.cfg.max_blocked {
                book.blocked.insert(addr, at);
            } else {
                book.writes.delete(encode_key(BLOCK_PREFIX, &addr));
            }
        }
        good.sort_by(|(a1, e1, _), (a2, e2, _)| {
            (
                e1.is_learned(),
                !e1.tried,
                e1.failures,
                Reverse(e1.last_success_ms),
                a1,
            )
                .cmp(&(
                    e2.is_learned(),
                    !e2.tried,
                    e2.failures,
                    Reverse(e2.last_success_ms),
                    a2,
                ))
        });
        for (addr, entry, changed) in good {
            let fits = match entry.source {
                AddrSource::Operator => book.operator < book.cfg.max_operator,
                AddrSource::Peer(src) => {
                    !book.forgotten(&entry)
                        && learned_ip(&addr).is_some_and(|ip| {
                            let sg = net_group(&src);
                            let ag = net_group(&ip);
                            book.learned < book.cfg.max_learned
                                && book.by_source.get(&sg).map_or(0, BTreeSet::len)
                                    < book.cfg.per_source
                                && book.by_group.get(&ag).map_or(0, BTreeSet::len)
                                    < book.cfg.per_group
                        })
                }
            };
            if fits {
                if changed {
                    book.put(addr, entry);
                } else {
                    book.insert_raw(addr, entry);
                }
            } else {
                book.writes.delete(encode_key(KEY_PREFIX, &addr));
            }
        }
        book
    }

    /// The bounds this book was made with.
    pub fn config(&self) -> &AddrBookConfig {
        &self.cfg
    }

    fn forgotten(&self, e: &Entry) -> bool {
        let limit = if e.tried {
            self.cfg.forget_after_failures.saturating_mul(2)
        } else {
            self.cfg.forget_after_failures
        };
        e.is_learned() && e.failures >= limit
    }

    /// Inserts into the maps and indexes, no write queued.
    fn insert_raw(&mut self, addr: PeerAddr, e: Entry) {
        self.unindex(&addr);
        match (&e.source, learned_ip(&addr)) {
            (AddrSource::Peer(src), Some(ip)) => {
                self.learned += 1;
                self.by_source
                    .entry(net_group(src))
                    .or_default()
                    .insert(addr.clone());
                self.by_group
                    .entry(net_group(&ip))
                    .or_default()
                    .insert(addr.clone());
                if e.is_terrible() {
                    self.terrible.insert((e.badness(), addr.clone()));
                }
            }
            _ => self.operator += 1,
        }
        self.entries.insert(addr, e);
    }

    /// Removes `addr` from the maps and indexes, no write queued.
    fn unindex(&mut self, addr: &PeerAddr) -> Option<Entry> {
        let e = self.entries.remove(addr)?;
        match (&e.source, learned_ip(addr)) {
            (AddrSource::Peer(src), Some(ip)) => {
                self.learned -= 1;
                remove_member(&mut self.by_source, &net_group(src), addr);
                remove_member(&mut self.by_group, &net_group(&ip), addr);
                self.terrible.remove(&(e.badness(), addr.clone()));
            }
            _ => self.operator -= 1,
        }
        Some(e)
    }

    /// Stores `e` for `addr` and queues its write.
    fn put(&mut self, addr: PeerAddr, e: Entry) {
        self.writes
            .put(encode_key(KEY_PREFIX, &addr), encode_entry(&e));
        self.insert_raw(addr, e);
    }

    /// Removes `addr` and queues its deletion.
    fn remove(&mut self, addr: &PeerAddr) -> Option<Entry> {
        let e = self.unindex(addr)?;
        self.writes.delete(encode_key(KEY_PREFIX, addr));
        Some(e)
    }

    /// The worst of `members` that `ok` accepts and is not in `skip`.
    fn worst<'a>(
        &self,
        members: impl IntoIterator<Item = &'a PeerAddr>,
        skip: &[PeerAddr],
        ok: impl Fn(&Entry) -> bool,
    ) -> Option<PeerAddr> {
        members
            .into_iter()
            .filter(|a| !skip.contains(a))
            .filter_map(|a| {
                self.entries
                    .get(a)
                    .filter(|e| ok(e))
                    .map(|e| (e.badness(), a))
            })
            .max()
            .map(|(_, a)| a.clone())
    }

    /// The entries to evict so that a learned `addr` (group `ag`) from
    /// source group `sg` fits, or `None` when it may not (see the module
    /// documentation). Changes nothing.
    fn room_for(&self, sg: NetGroup, ag: NetGroup) -> Option<Vec<PeerAddr>> {
        let new_from_source =
            |e: &Entry| !e.tried && matches!(e.source, AddrSource::Peer(s) if net_group(&s) == sg);
        let empty = BTreeSet::new();
        let in_source = self.by_source.get(&sg).unwrap_or(&empty);
        let in_group = self.by_group.get(&ag).unwrap_or(&empty);
        let mut victims: Vec<PeerAddr> = Vec::new();
        if in_group.len() >= self.cfg.per_group {
            let v = self
                .worst(in_group, &victims, Entry::is_terrible)
                .or_else(|| self.worst(in_group, &victims, new_from_source))?;
            victims.push(v);
        }
        let freed_in_source = victims.iter().filter(|v| in_source.contains(*v)).count();
        if in_source.len() - freed_in_source >= self.cfg.per_source {
            let v = self.worst(in_source, &victims, new_from_source)?;
            victims.push(v);
        }
        if self.learned - victims.len() >= self.cfg.max_learned {
            let v = self
                .terrible
                .iter()
                .rev()
                .map(|(_, a)| a)
                .find(|a| !victims.contains(a))
                .cloned()
                .or_else(|| self.worst(in_source, &victims, new_from_source))?;
            victims.push(v);
        }
        Some(victims)
    }

    /// Records addresses that the peer `source` gossiped; returns how many
    /// were new to the book. Addresses already known (also as operator
    /// entries), blocked, unroutable, with port 0, meaningless from this
    /// source (see the module documentation) or without room are skipped.
    ///
    /// `source` should be the peer's advertised listen address when known
    /// (stable across its reconnections), else its remote address.
    pub fn add_learned(&mut self, addrs: &[SocketAddr], source: SocketAddr, now_ms: u64) -> usize {
        let source = canon_socket(&source);
        let sg = net_group(&source);
        let mut added = 0;
        for a in addrs {
            let a = canon_socket(a);
            let addr = PeerAddr::Ip(a);
            if !dialable(&addr)
                || !meaningful_from(&a, &source)
                || self.entries.contains_key(&addr)
                || self.blocked.contains_key(&addr)
            {
                continue;
            }
            let Some(victims) = self.room_for(sg, net_group(&a)) else {
                continue;
            };
            for v in &victims {
                self.remove(v);
            }
            self.put(
                addr,
                Entry {
                    source: AddrSource::Peer(source),
                    tried: false,
                    added_ms: now_ms,
                    last_success_ms: None,
                    failures: 0,
                    last_failure: None,
                    next_try_ms: now_ms,
                },
            );
            added += 1;
        }
        added
    }

    /// Adds (or re-adds) an operator entry and lifts any block of it. An
    /// entry already known becomes an operator entry and its backoff is reset
    /// (the operator asks to connect now). Returns whether the address was
    /// not an operator entry before.
    pub fn add_operator(&mut self, addr: PeerAddr, now_ms: u64) -> Result<bool, AddrBookError> {
        let addr = canon(&addr);
        if !dialable(&addr) {
            return Err(AddrBookError::Unroutable(addr));
        }
        let existing = self.entries.get(&addr).cloned();
        let was_operator = existing.as_ref().is_some_and(|e| !e.is_learned());
        if !was_operator && self.operator >= self.cfg.max_operator {
            return Err(AddrBookError::OperatorFull {
                max: self.cfg.max_operator,
            });
        }
        self.unblock(&addr);
        let entry = match existing {
            Some(e) => Entry {
                source: AddrSource::Operator,
                failures: 0,
                last_failure: None,
                next_try_ms: now_ms,
                ..e
            },
            None => Entry {
                source: AddrSource::Operator,
                tried: false,
                added_ms: now_ms,
                last_success_ms: None,
                failures: 0,
                last_failure: None,
                next_try_ms: now_ms,
            },
        };
        self.put(addr, entry);
        Ok(!was_operator)
    }

    /// Removes an entry, operator or learned; whether it was there. Its block,
    /// if any, stays.
    pub fn forget(&mut self, addr: &PeerAddr) -> bool {
        self.remove(&canon(addr)).is_some()
    }

    /// A connection to `addr` completed its handshake: the entry becomes
    /// tried and its failures are reset. Whether the address is in the book.
    pub fn mark_success(&mut self, addr: &PeerAddr, now_ms: u64) -> bool {
        let addr = canon(addr);
        let Some(e) = self.entries.get(&addr).cloned() else {
            return false;
        };
        let e = Entry {
            tried: true,
            last_success_ms: Some(now_ms),
            failures: 0,
            last_failure: None,
            next_try_ms: now_ms,
            ..e
        };
        self.put(addr, e);
        true
    }

    /// A dial of `addr` failed: backs it off (see the module documentation),
    /// forgetting a learned entry that failed too often. Returns when it may
    /// be dialled again, `None` when it is not (or no longer) in the book.
    pub fn mark_failure(&mut self, addr: &PeerAddr, kind: FailureKind, now_ms: u64) -> Option<u64> {
        let addr = canon(addr);
        let e = self.entries.get(&addr)?.clone();
        let failures = e.failures.saturating_add(1);
        let wait = backoff_ms(!e.is_learned(), failures, kind);
        let e = Entry {
            failures,
            last_failure: Some(kind),
            next_try_ms: now_ms.saturating_add(wait),
            ..e
        };
        if self.forgotten(&e) {
            self.remove(&addr);
            return None;
        }
        let next = e.next_try_ms;
        self.put(addr, e);
        Some(next)
    }

    /// Clears the backoff of `addr` so that it may be dialled at once (for
    /// example when the operator heals a link that a partition experiment
    /// cut). Whether the address is in the book.
    pub fn reset_backoff(&mut self, addr: &PeerAddr) -> bool {
        let addr = canon(addr);
        let Some(e) = self.entries.get(&addr).cloned() else {
            return false;
        };
        if e.failures != 0 || e.next_try_ms != 0 || e.last_failure.is_some() {
            let e = Entry {
                failures: 0,
                last_failure: None,
                next_try_ms: 0,
                ..e
            };
            self.put(addr, e);
        }
        true
    }

    /// [`AddrBook::reset_backoff`] for every entry; how many were backing
    /// off.
    pub fn reset_all_backoff(&mut self) -> usize {
        let backing_off: Vec<PeerAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.failures != 0 || e.last_failure.is_some())
            .map(|(a, _)| a.clone())
            .collect();
        for a in &backing_off {
            self.reset_backoff(a);
        }
        backing_off.len()
    }

    /// Whether `addr` is an operator entry (`--peer`, bootnodes,
    /// `net_addPeer`): such peers are disconnected, not banned, when they
    /// misbehave.
    pub fn is_operator(&self, addr: &PeerAddr) -> bool {
        self.entries
            .get(&canon(addr))
            .is_some_and(|e| e.source == AddrSource::Operator)
    }

    /// Blocks `addr` (after `net_disconnectPeer`): it is not dialled or
    /// gossiped, and the caller refuses its inbound connections, until
    /// [`AddrBook::add_operator`] or [`AddrBook::unblock`] names it. Its entry,
    /// if any, is kept. Returns whether it was not blocked before.
    pub fn block(&mut self, addr: &PeerAddr, now_ms: u64) -> Result<bool, AddrBookError> {
        let addr = canon(addr);
        if self.blocked.contains_key(&addr) {
            return Ok(false);
        }
        if self.blocked.len() >= self.cfg.max_blocked {
            return Err(AddrBookError::BlockFull {
                max: self.cfg.max_blocked,
            });
        }
        let mut value = vec![VALUE_VERSION];
        value.extend_from_slice(&now_ms.to_le_bytes());
        self.writes.put(encode_key(BLOCK_PREFIX, &addr), value);
        self.blocked.insert(addr, now_ms);
        Ok(true)
    }

    /// Lifts a block; whether there was one.
    pub fn unblock(&mut self, addr: &PeerAddr) -> bool {
        let addr = canon(addr);
        let was = self.blocked.remove(&addr).is_some();
        if was {
            self.writes.delete(encode_key(BLOCK_PREFIX, &addr));
        }
        was
    }

    /// Whether `addr` is blocked by the operator.
    pub fn is_blocked(&self, addr: &PeerAddr) -> bool {
        self.blocked.contains_key(&canon(addr))
    }

    /// Blocked addresses and when they were blocked.
    pub fn blocked(&self) -> Vec<(PeerAddr, u64)> {
        self.blocked.iter().map(|(a, t)| (a.clone(), *t)).collect()
    }

    /// The net group of the peer that told us `addr`, for counting outbound
    /// connections per source; `None` for operator entries and unknown
    /// addresses.
    pub fn source_of(&self, addr: &PeerAddr) -> Option<NetGroup> {
        match self.entries.get(&canon(addr))?.source {
            AddrSource::Operator => None,
            AddrSource::Peer(s) => Some(net_group(&s)),
        }
    }

    /// Addresses to dial now, best first: operator entries, then tried, then
    /// new ones; within each, fewer failures first, and a random order among
    /// equals (so that nodes do not all pick the same peers).
    ///
    /// Excluded: addresses in backoff, blocked, in
    /// `ctx.connected_or_dialing`, or banned; and, for learned addresses
    /// only, loopback/private ones whose class is not in
    /// `ctx.local_classes`, those whose source group already has
    /// `max_outbound_per_source` outbound connections, and those whose own
    /// net group already has an outbound connection (unless loopback or
    /// private). The limits are counted along the list as if each earlier
    /// address were dialled, so dialling any prefix of it keeps them.
    pub fn candidates(
        &self,
        now_ms: u64,
        ctx: &DialContext<'_>,
        rng: &mut impl Rng,
    ) -> Vec<PeerAddr> {
        let mut ranked: Vec<((u8, u32, u64), &PeerAddr, &Entry)> = Vec::new();
        for (addr, e) in &self.entries {
            if e.next_try_ms > now_ms
                || self.blocked.contains_key(addr)
                || ctx.connected_or_dialing.contains(addr)
            {
                continue;
            }
            if addr.ip().is_some_and(|ip| (ctx.is_banned)(&ip)) {
                continue;
            }
            let tier = match (&e.source, addr.ip()) {
                (AddrSource::Operator, _) => 0,
                (AddrSource::Peer(_), Some(ip)) => {
                    let class = classify(ip.ip());
                    if is_local(class) && !ctx.local_classes.contains(&class) {
                        continue;
                    }
                    if e.tried { 1 } else { 2 }
                }
                (AddrSource::Peer(_), None) => continue,
            };
            ranked.push(((tier, e.failures, rng.r#gen()), addr, e));
        }
        ranked.sort_by_key(|(k, _, _)| *k);

        let mut per_source: HashMap<NetGroup, usize> = ctx.outbound_per_source.clone();
        let mut groups: HashSet<NetGroup> = ctx.outbound_groups.clone();
        let mut out = Vec::new();
        for (_, addr, e) in ranked {
            let ip = addr.ip();
            if let (AddrSource::Peer(src), Some(ip)) = (&e.source, ip) {
                let sg = net_group(src);
                if per_source.get(&sg).copied().unwrap_or(0) >= self.cfg.max_outbound_per_source {
                    continue;
                }
                let ag = net_group(&ip);
                if !is_local(classify(ip.ip())) && groups.contains(&ag) {
                    continue;
                }
                *per_source.entry(sg).or_insert(0) += 1;
            }
            if let Some(ip) = ip {
                groups.insert(net_group(&ip));
            }
            out.push(addr.clone());
        }
        out
    }

    /// Up to `n` IP addresses to gossip to a peer: never blocked, terrible
    /// or host-name entries, operator entries only once we reached them, and
    /// loopback/private addresses only with `include_local` (when the asking
    /// peer is itself on such a network). Addresses reached in the last
    /// [`RECENT_SUCCESS_MS`] come first, then other tried ones, then new
    /// ones, each group in random order.
    pub fn sample(
        &self,
        n: usize,
        include_local: bool,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        let mut ranked: Vec<((u8, u64), SocketAddr)> = Vec::new();
        for (addr, e) in &self.entries {
            let Some(ip) = addr.ip() else { continue };
            if self.blocked.contains_key(addr)
                || e.is_terrible()
                || (!e.is_learned() && !e.tried)
                || (!include_local && is_local(classify(ip.ip())))
                || !dialable(addr)
            {
                continue;
            }
            let recent = e
                .last_success_ms
                .is_some_and(|t| now_ms.saturating_sub(t) <= RECENT_SUCCESS_MS);
            let tier = if recent {
                0
            } else if e.tried {
                1
            } else {
                2
            };
            ranked.push(((tier, rng.r#gen()), ip));
        }
        ranked.sort_by_key(|(k, _)| *k);
        ranked.into_iter().take(n).map(|(_, a)| a).collect()
    }

    /// The entry for `addr`.
    pub fn get(&self, addr: &PeerAddr) -> Option<AddrView> {
        let addr = canon(addr);
        let e = self.entries.get(&addr)?;
        Some(self.view_of(&addr, e))
    }

    fn view_of(&self, addr: &PeerAddr, e: &Entry) -> AddrView {
        AddrView {
            addr: addr.clone(),
            source: e.source,
            tried: e.tried,
            failures: e.failures,
            last_failure: e.last_failure,
            added_ms: e.added_ms,
            last_success_ms: e.last_success_ms,
            next_try_ms: e.next_try_ms,
            blocked: self.blocked.contains_key(addr),
        }
    }

    /// Every entry, ordered by address, for debugging.
    pub fn view(&self) -> Vec<AddrView> {
        self.entries
            .iter()
            .map(|(a, e)| self.view_of(a, e))
            .collect()
    }

    /// Number of entries (operator and learned).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of learned entries.
    pub fn learned_len(&self) -> usize {
        self.learned
    }

    /// The writes queued since the last call, at most one per key, for the
    /// caller to apply to its store.
    pub fn take_writes(&mut self) -> Vec<StoreOp> {
        self.writes.take()
    }
}

/// Writes waiting for the caller, at most one per key.
///
/// # Bounds
/// The queue knows which keys the store holds (loaded, or handed out by
/// [`WriteQueue::take`]), so removing an entry that was never written
/// cancels its pending write instead of queuing a delete. Pending operations
/// therefore never exceed the keys present plus the keys stored, however
/// fast a peer churns its own bucket between two drains.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    stored: BTreeSet<Vec<u8>>,
}

impl WriteQueue {
    /// Records that the store holds `key` (it came from a load).
    pub(crate) fn loaded(&mut self, key: Vec<u8>) {
        self.stored.insert(key);
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        if self.stored.contains(&key) {
            self.pending.insert(key, None);
        } else {
            self.pending.remove(&key);
        }
    }

    /// The pending operations, in key order; the store is assumed to apply
    /// them.
    pub(crate) fn take(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => {
                    self.stored.insert(k.clone());
                    StoreOp::Put(k, v)
                }
                None => {
                    self.stored.remove(&k);
                    StoreOp::Delete(k)
                }
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

fn remove_member(
    map: &mut BTreeMap<NetGroup, BTreeSet<PeerAddr>>,
    group: &NetGroup,
    addr: &PeerAddr,
) {
    if let Some(set) = map.get_mut(group) {
        set.remove(addr);
        if set.is_empty() {
            map.remove(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> PeerAddr {
        PeerAddr::Ip(sa(s))
    }
    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4([a, b, c, d].into()), port)
    }
    fn rng() -> StdRng {
        StdRng::seed_from_u64(1)
    }

    impl AddrBook {
        /// Every index and counter agrees with the entries, and every bound
        /// holds.
        fn check(&self) {
            let learned: Vec<_> = self
                .entries
                .iter()
                .filter(|(_, e)| e.is_learned())
                .collect();
            assert_eq!(self.learned, learned.len());
            assert_eq!(self.operator, self.entries.len() - learned.len());
            assert!(self.learned <= self.cfg.max_learned);
            assert!(self.operator <= self.cfg.max_operator);
            assert!(self.blocked.len() <= self.cfg.max_blocked);
            let mut by_source: BTreeMap<NetGroup, BTreeSet<PeerAddr>> = BTreeMap::new();
            let mut by_group: BTreeMap<NetGroup, BTreeSet<PeerAddr>> = BTreeMap::new();
            for (a, e) in &learned {
                let AddrSource::Peer(src) = e.source else {
                    unreachable!()
                };
                let ip = a.ip().expect("learned entries are IPs");
                assert!(dialable(a) && meaningful_from(&ip, &src));
                by_source
                    .entry(net_group(&src))
                    .or_default()
                    .insert((*a).clone());
                by_group
                    .entry(net_group(&ip))
                    .or_default()
                    .insert((*a).clone());
                assert_eq!(
                    self.terrible.contains(&(e.badness(), (*a).clone())),
                    e.is_terrible()
                );
            }
            let terrible = learned.iter().filter(|(_, e)| e.is_terrible()).count();
            assert_eq!(self.terrible.len(), terrible);
            assert_eq!(by_source, self.by_source);
            assert_eq!(by_group, self.by_group);
            assert!(
                self.by_source
                    .values()
                    .all(|s| s.len() <= self.cfg.per_source)
            );
            assert!(
                self.by_group
                    .values()
                    .all(|s| s.len() <= self.cfg.per_group)
            );
        }
    }

    fn store_apply(store: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: Vec<StoreOp>) {
        for op in ops {
            match op {
                StoreOp::Put(k, v) => {
                    store.insert(k, v);
                }
                StoreOp::Delete(k) => {
                    store.remove(&k);
                }
            }
        }
    }

    struct Ctx {
        connected: HashSet<PeerAddr>,
        banned: HashSet<SocketAddr>,
        local: HashSet<NetClass>,
        per_source: HashMap<NetGroup, usize>,
        groups: HashSet<NetGroup>,
    }

    impl Ctx {
        fn new() -> Ctx {
            Ctx {
                connected: HashSet::new(),
                banned: HashSet::new(),
                local: HashSet::new(),
                per_source: HashMap::new(),
                groups: HashSet::new(),
            }
        }
        fn candidates(&self, book: &AddrBook, now: u64, rng: &mut StdRng) -> Vec<PeerAddr> {
            let banned = |a: &SocketAddr| self.banned.contains(a);
            let ctx = DialContext {
                connected_or_dialing: &self.connected,
                is_banned: &banned,
                local_classes: &self.local,
                outbound_per_source: &self.per_source,
                outbound_groups: &self.groups,
            };
            book.candidates(now, &ctx, rng)
        }
    }

    #[test]
    fn backoff_schedule() {
        let unreachable = FailureKind::Unreachable;
        let op: Vec<u64> = (1..=9).map(|f| backoff_ms(true, f, unreachable)).collect();
        assert_eq!(
            op,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(backoff_ms(false, 10, unreachable), 512_000);
        assert_eq!(backoff_ms(false, 11, unreachable), 600_000);
        assert_eq!(backoff_ms(false, u32::MAX, unreachable), 600_000);
        assert_eq!(backoff_ms(true, 0, FailureKind::Closed), 1_000);
        for kind in [FailureKind::WrongNetwork, FailureKind::SelfConnection] {
            assert_eq!(backoff_ms(true, 1, kind), LONG_BACKOFF_MS);
            assert_eq!(backoff_ms(false, 50, kind), LONG_BACKOFF_MS);
        }
        assert_eq!(
            backoff_ms(false, 3, FailureKind::Refused(RefuseKind::Full)),
            4_000
        );
    }

    #[test]
    fn failures_back_off_and_success_resets() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let a = ip("8.8.8.8:7541");
        book.add_operator(a.clone(), 0).unwrap();
        let ctx = Ctx::new();
        let mut r = rng();
        assert_eq!(ctx.candidates(&book, 0, &mut r), std::slice::from_ref(&a));
        assert_eq!(
            book.mark_failure(&a, FailureKind::Unreachable, 100),
            Some(1_100)
        );
        assert!(
            ctx.candidates(&book, 1_099, &mut r).is_empty(),
            "in backoff"
        );
        assert_eq!(
            ctx.candidates(&book, 1_100, &mut r),
            std::slice::from_ref(&a)
        );
        assert_eq!(
            book.mark_failure(&a, FailureKind::Refused(RefuseKind::Disconnected), 1_100),
            Some(3_100)
        );
        for _ in 0..20 {
            book.mark_failure(&a, FailureKind::Closed, 5_000);
        }
        let v = book.get(&a).unwrap();
        assert_eq!(
            (v.failures, v.next_try_ms),
            (22, 65_000),
            "operator cap 60 s, never forgotten"
        );
        assert_eq!(v.last_failure, Some(FailureKind::Closed));
        assert!(book.mark_success(&a, 70_000));
        let v = book.get(&a).unwrap();
        assert_eq!(
            (v.failures, v.tried, v.last_success_ms, v.next_try_ms),
            (0, true, Some(70_000), 70_000)
        );
        assert_eq!(
            book.mark_failure(&a, FailureKind::WrongNetwork, 80_000),
            Some(80_000 + LONG_BACKOFF_MS)
        );
        assert_eq!(
            book.mark_failure(&ip("1.1.1.1:1"), FailureKind::Closed, 0),
            None
        );
        assert!(!book.mark_success(&ip("1.1.1.1:1"), 0));
    }

    #[test]
    fn reset_backoff_and_is_operator() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let op = ip("5.5.5.5:1");
        book.add_operator(op.clone(), 0).unwrap();
        book.add_learned(
            &[v4(8, 8, 8, 8, 1), v4(9, 8, 8, 8, 1)],
            v4(9, 9, 9, 9, 1),
            0,
        );
        let learned = ip("8.8.8.8:1");
        assert!(book.is_operator(&op) && !book.is_operator(&learned));
        assert!(book.is_operator(&PeerAddr::Ip(sa("[::ffff:5.5.5.5]:1"))));
        assert!(!book.is_operator(&ip("1.1.1.1:1")));
        book.take_writes();
        for a in [&op, &learned] {
            book.mark_failure(a, FailureKind::Closed, 10);
            book.mark_failure(a, FailureKind::SelfConnection, 20);
        }
        let ctx = Ctx::new();
        let mut r = rng();
        assert_eq!(ctx.candidates(&book, 30, &mut r), [ip("9.8.8.8:1")]);
        assert!(book.reset_backoff(&learned));
        assert!(!book.reset_backoff(&ip("1.1.1.1:1")));
        assert_eq!(ctx.candidates(&book, 30, &mut r).len(), 2);
        let v = book.get(&learned).unwrap();
        assert_eq!((v.failures, v.last_failure), (0, None));
        assert_eq!(
            book.reset_all_backoff(),
            1,
            "only the operator entry was still backing off"
        );
        assert_eq!(ctx.candidates(&book, 30, &mut r).len(), 3);
        // Resets are persisted; a second reset writes nothing.
        assert_eq!(book.take_writes().len(), 2, "one write per key");
        assert_eq!(book.reset_all_backoff(), 0);
        book.reset_backoff(&op);
        assert!(book.take_writes().is_empty());
    }

    #[test]
    fn learned_entries_back_off_longer_and_are_forgotten() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let a = v4(8, 8, 8, 8, 7541);
        assert_eq!(book.add_learned(&[a], v4(9, 9, 9, 9, 7541), 0), 1);
        let a = PeerAddr::Ip(a);
        let mut next = 0;
        for i in 1..10 {
            next = book
                .mark_failure(&a, FailureKind::Unreachable, next)
                .unwrap();
            assert_eq!(book.get(&a).unwrap().failures, i);
            book.check();
        }
        assert!(book.get(&a).is_some());
        assert_eq!(
            book.mark_failure(&a, FailureKind::Unreachable, next),
            None,
            "forgotten"
        );
        assert!(book.is_empty());
        book.check();
        // A tried one lasts twice as long.
        book.add_learned(&[v4(8, 8, 8, 8, 7541)], v4(9, 9, 9, 9, 7541), 0);
        book.mark_success(&a, 1);
        for _ in 0..19 {
            assert!(book.mark_failure(&a, FailureKind::Unreachable, 2).is_some());
        }
        assert_eq!(
            book.get(&a).unwrap().next_try_ms,
            2 + LEARNED_BACKOFF_CAP_MS,
            "learned cap 10 min"
        );
        assert_eq!(book.mark_failure(&a, FailureKind::Unreachable, 3), None);
    }

    #[test]
    fn refuses_what_cannot_be_dialled_or_means_nothing_here() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let public_src = v4(9, 9, 9, 9, 7541);
        let bad = [
            v4(0, 0, 0, 0, 7541),
            v4(8, 8, 8, 8, 0),
            v4(224, 0, 0, 1, 7541),
            v4(255, 255, 255, 255, 7541),
            v4(192, 0, 2, 1, 7541),
            sa("[2001:db8::1]:7541"),
            v4(127, 0, 0, 1, 7541),
            v4(10, 0, 0, 1, 7541),
            sa("[fd00::1]:7541"),
        ];
        assert_eq!(book.add_learned(&bad, public_src, 0), 0);
        // A LAN peer may tell us about its LAN, not its loopback.
        let lan_src = v4(192, 168, 1, 2, 7541);
        assert_eq!(
            book.add_learned(&[v4(192, 168, 1, 3, 7541), v4(127, 0, 0, 1, 7)], lan_src, 0),
            1
        );
        // A local peer may tell us about both.
        let local_src = v4(127, 0, 0, 1, 7541);
        assert_eq!(
            book.add_learned(
                &[v4(127, 0, 0, 1, 7542), v4(10, 1, 1, 1, 7541)],
                local_src,
                0
            ),
            2
        );
        // IPv4-mapped addresses are the same address.
        let mapped = SocketAddr::new(
            IpAddr::V6(std::net::Ipv4Addr::new(8, 8, 8, 8).to_ipv6_mapped()),
            7541,
        );
        assert_eq!(
            book.add_learned(&[v4(8, 8, 8, 8, 7541), mapped], public_src, 0),
            1
        );
        assert!(book.get(&PeerAddr::Ip(mapped)).is_some());
        assert_eq!(book.len(), 4);
        for a in [
            "0.0.0.0:7541",
            "8.8.8.8:0",
            "[2001:db8::1]:1",
            "239.1.1.1:1",
        ] {
            let err = book.add_operator(ip(a), 0).unwrap_err();
            assert!(matches!(err, AddrBookError::Unroutable(_)), "{a}");
            assert!(err.to_string().contains("cannot be dialled"));
        }
        // The operator may name loopback, private addresses and hosts.
        book.add_operator(ip("127.0.0.1:9"), 0).unwrap();
        book.add_operator(ip("10.0.0.9:9"), 0).unwrap();
        book.add_operator("Seed.Example.org:7541".parse().unwrap(), 0)
            .unwrap();
        assert_eq!(book.len(), 7);
        book.check();
    }

    #[test]
    fn one_source_cannot_push_out_addresses_learned_from_others() {
        let cfg = AddrBookConfig {
            per_source: 16,
            max_learned: 64,
            per_group: 4,
            ..AddrBookConfig::default()
        };
        let mut book = AddrBook::new(cfg);
        // Three honest sources tell us 16 addresses each, in many groups.
        for s in 0..3u8 {
            let src = v4(20 + s, 0, 0, 1, 7541);
            let addrs: Vec<_> = (0..16u8).map(|i| v4(100 + s, i, 0, 1, 7541)).collect();
            assert_eq!(book.add_learned(&addrs, src, 0), 16);
        }
        let honest: Vec<PeerAddr> = book.view().into_iter().map(|v| v.addr).collect();
        // An attacker sends 10,000 addresses from many IPs of one /16, some
        // in the honest addresses' groups.
        for round in 0..50u8 {
            let src = v4(66, 6, round, 1, 7541);
            let addrs: Vec<_> = (0..200u16)
                .map(|i| v4(1 + (i % 200) as u8, round, (i / 200) as u8, 9, 7541))
                .collect();
            book.add_learned(&addrs, src, u64::from(round));
            book.check();
        }
        for a in &honest {
            assert!(book.get(a).is_some(), "{a} was pushed out");
        }
        let attackers: Vec<PeerAddr> = book
            .view()
            .into_iter()
            .filter(|v| !honest.contains(&v.addr))
            .map(|v| v.addr)
            .collect();
        assert_eq!(
            attackers.len(),
            16,
            "the attacker holds its own bucket only"
        );
        assert_eq!(book.learned_len(), 64);
        // The book is full: a new honest source is refused until the
        // attacker's addresses prove useless (terrible), then takes their
        // place.
        let newcomer = v4(30, 0, 0, 1, 7541);
        let fresh: Vec<_> = (0..16u8).map(|i| v4(200, i, 0, 1, 7541)).collect();
        assert_eq!(book.add_learned(&fresh, newcomer, 100), 0);
        for a in &attackers {
            for t in 0..TERRIBLE_FAILURES {
                book.mark_failure(a, FailureKind::Unreachable, 100 + u64::from(t));
            }
        }
        assert_eq!(book.add_learned(&fresh, newcomer, 200), 16);
        assert!(attackers.iter().all(|a| book.get(a).is_none()));
        assert!(honest.iter().all(|a| book.get(a).is_some()));
        book.check();
    }

    #[test]
    fn source_churns_its_own_bucket_and_terrible_entries_make_room() {
        let cfg = AddrBookConfig {
            per_source: 4,
            max_learned: 8,
            per_group: 8,
            ..AddrBookConfig::default()
        };
        let mut book = AddrBook::new(cfg);
        let s1 = v4(20, 0, 0, 1, 7541);
        let s2 = v4(21, 0, 0, 1, 7541);
        let s3 = v4(22, 0, 0, 1, 7541);
        let first: Vec<_> = (0..4u8).map(|i| v4(100, i, 0, 1, 7541)).collect();
        for (t, a) in first.iter().enumerate() {
            assert_eq!(book.add_learned(&[*a], s1, t as u64), 1);
        }
        // The source's bucket is full: its worst entry (most failures, then
        // oldest) makes room; tried entries are kept.
        book.mark_success(&PeerAddr::Ip(first[0]), 4);
        book.mark_failure(&PeerAddr::Ip(first[2]), FailureKind::Unreachable, 4);
        assert_eq!(book.add_learned(&[v4(100, 9, 0, 1, 7541)], s1, 5), 1);
        assert!(
            book.get(&PeerAddr::Ip(first[2])).is_none(),
            "the failing one went"
        );
        assert_eq!(book.add_learned(&[v4(100, 10, 0, 1, 7541)], s1, 6), 1);
        assert!(
            book.get(&PeerAddr::Ip(first[1])).is_none(),
            "then the oldest"
        );
        assert!(book.get(&PeerAddr::Ip(first[0])).is_some(), "tried kept");
        // Fill the book from s2.
        let second: Vec<_> = (0..4u8).map(|i| v4(110, i, 0, 1, 7541)).collect();
        assert_eq!(book.add_learned(&second, s2, 7), 4);
        // The book is full and s3 has nothing of its own: refused ...
        assert_eq!(book.add_learned(&[v4(120, 0, 0, 1, 7541)], s3, 8), 0);
        // ... unless an entry is terrible (failed 3 times, never reached).
        for t in 9..12 {
            book.mark_failure(&PeerAddr::Ip(second[3]), FailureKind::Unreachable, t);
        }
        assert_eq!(book.add_learned(&[v4(120, 0, 0, 1, 7541)], s3, 12), 1);
        assert!(book.get(&PeerAddr::Ip(second[3])).is_none());
        // Now s3 has an entry of its own and churns it.
        assert_eq!(book.add_learned(&[v4(120, 1, 0, 1, 7541)], s3, 13), 1);
        assert!(book.get(&ip("120.0.0.1:7541")).is_none());
        assert_eq!(book.learned_len(), 8);
        book.check();
    }

    #[test]
    fn per_group_bound_evicts_only_the_same_source() {
        let cfg = AddrBookConfig {
            per_group: 3,
            ..AddrBookConfig::default()
        };
        let mut book = AddrBook::new(cfg);
        let honest = v4(20, 0, 0, 1, 7541);
        let attacker = v4(66, 0, 0, 1, 7541);
        assert_eq!(
            book.add_learned(&[v4(50, 50, 0, 1, 1), v4(50, 50, 0, 2, 1)], honest, 0),
            2
        );
        // The attacker gets the one free slot of 50.50/16, then only churns it.
        let flood: Vec<_> = (0..100u8).map(|i| v4(50, 50, 1, i, 1)).collect();
        assert_eq!(book.add_learned(&flood, attacker, 1), 100);
        assert_eq!(book.learned_len(), 3);
        assert!(book.get(&ip("50.50.0.1:1")).is_some() && book.get(&ip("50.50.0.2:1")).is_some());
        // Another honest source is refused rather than pushing anyone out.
        assert_eq!(
            book.add_learned(&[v4(50, 50, 2, 1, 1)], v4(30, 0, 0, 1, 1), 2),
            0
        );
        book.check();
    }

    #[test]
    fn operator_entries_rules() {
        let cfg = AddrBookConfig {
            max_operator: 2,
            ..AddrBookConfig::default()
        };
        let mut book = AddrBook::new(cfg);
        let learned = v4(8, 8, 8, 8, 7541);
        book.add_learned(&[learned], v4(9, 9, 9, 9, 1), 0);
        let a = PeerAddr::Ip(learned);
        book.mark_failure(&a, FailureKind::Unreachable, 0);
        assert_eq!(book.source_of(&a), Some(net_group(&v4(9, 9, 9, 9, 1))));
        // Adding a learned address as operator converts it and resets backoff.
        assert_eq!(book.add_operator(a.clone(), 5), Ok(true));
        let v = book.get(&a).unwrap();
        assert_eq!(
            (v.source, v.failures, v.next_try_ms),
            (AddrSource::Operator, 0, 5)
        );
        assert_eq!(book.source_of(&a), None);
        assert_eq!(book.learned_len(), 0);
        assert_eq!(
            book.add_operator(a.clone(), 6),
            Ok(false),
            "already an operator entry"
        );
        book.add_operator(ip("1.2.3.4:5"), 0).unwrap();
        let err = book.add_operator(ip("1.2.3.5:5"), 0).unwrap_err();
        assert_eq!(err, AddrBookError::OperatorFull { max: 2 });
        assert!(err.to_string().contains("remove unused ones"));
        // Learned gossip does not touch operator entries.
        assert_eq!(book.add_learned(&[learned], v4(7, 7, 7, 7, 1), 9), 0);
        assert_eq!(book.get(&a).unwrap().source, AddrSource::Operator);
        assert!(book.forget(&a));
        assert!(book.add_operator(ip("1.2.3.5:5"), 0).is_ok());
        book.check();
    }

    #[test]
    fn blocks() {
        let cfg = AddrBookConfig {
            max_blocked: 2,
            ..AddrBookConfig::default()
        };
        let mut book = AddrBook::new(cfg);
        let a = ip("8.8.8.8:7541");
        book.add_operator(a.clone(), 0).unwrap();
        book.mark_success(&a, 0);
        assert_eq!(book.block(&a, 1), Ok(true));
        assert_eq!(book.block(&a, 2), Ok(false));
        assert!(book.is_blocked(&a));
        assert!(book.is_blocked(&PeerAddr::Ip(sa("[::ffff:8.8.8.8]:7541"))));
        assert!(book.get(&a).unwrap().blocked);
        let ctx = Ctx::new();
        let mut r = rng();
        assert!(ctx.candidates(&book, 10, &mut r).is_empty(), "not dialled");
        assert!(book.sample(10, true, 10, &mut r).is_empty(), "not gossiped");
        // Gossip does not bring a blocked address back.
        let b = v4(9, 9, 9, 9, 1);
        book.block(&PeerAddr::Ip(b), 3).unwrap();
        assert_eq!(book.add_learned(&[b], v4(7, 7, 7, 7, 1), 4), 0);
        assert_eq!(
            book.block(&ip("1.1.1.1:1"), 5),
            Err(AddrBookError::BlockFull { max: 2 })
        );
        // add_operator lifts it.
        book.add_operator(a.clone(), 20).unwrap();
        assert!(!book.is_blocked(&a));
        assert_eq!(ctx.candidates(&book, 20, &mut r), std::slice::from_ref(&a));
        assert!(book.unblock(&PeerAddr::Ip(b)));
        assert!(!book.unblock(&PeerAddr::Ip(b)));
        assert!(book.blocked().is_empty());
    }

    #[test]
    fn candidate_order_and_exclusions() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let op = ip("5.5.5.5:1");
        book.add_operator(op.clone(), 0).unwrap();
        let src = v4(20, 0, 0, 1, 1);
        let tried = v4(30, 0, 0, 1, 1);
        let new = v4(40, 0, 0, 1, 1);
        book.add_learned(&[new, tried], src, 0);
        book.mark_success(&PeerAddr::Ip(tried), 0);
        let mut ctx = Ctx::new();
        let mut r = rng();
        assert_eq!(
            ctx.candidates(&book, 1, &mut r),
            [op.clone(), PeerAddr::Ip(tried), PeerAddr::Ip(new)]
        );
        // Connected, banned and backing-off addresses are skipped.
        ctx.connected.insert(op.clone());
        ctx.banned.insert(tried);
        book.mark_failure(&PeerAddr::Ip(new), FailureKind::Closed, 1);
        assert!(ctx.candidates(&book, 1, &mut r).is_empty());
        assert_eq!(ctx.candidates(&book, 1_001, &mut r), [PeerAddr::Ip(new)]);
        // Source limit: two outbound from this source already.
        ctx.per_source.insert(net_group(&src), 2);
        assert!(ctx.candidates(&book, 1_001, &mut r).is_empty());
        ctx.per_source.clear();
        // Group limit: an outbound peer in 40.0/16 already.
        ctx.groups.insert(net_group(&new));
        assert!(ctx.candidates(&book, 1_001, &mut r).is_empty());
        // Operator entries ignore the source and group limits.
        ctx.connected.clear();
        ctx.groups.insert(net_group(&sa("5.5.5.5:1")));
        assert_eq!(ctx.candidates(&book, 1_001, &mut r), [op]);
    }

    #[test]
    fn limits_count_along_the_list() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let s1 = v4(20, 0, 0, 1, 1);
        let s2 = v4(21, 0, 0, 1, 1);
        // Five addresses from s1 in distinct groups, two from s2 in one group.
        let from_s1: Vec<_> = (0..5u8).map(|i| v4(100 + i, 0, 0, 1, 1)).collect();
        book.add_learned(&from_s1, s1, 0);
        book.add_learned(&[v4(150, 0, 0, 1, 1), v4(150, 0, 0, 2, 1)], s2, 0);
        let ctx = Ctx::new();
        for seed in 0..20 {
            let list = ctx.candidates(&book, 0, &mut StdRng::seed_from_u64(seed));
            let n1 = list
                .iter()
                .filter(|a| book.source_of(a) == Some(net_group(&s1)))
                .count();
            let n2 = list
                .iter()
                .filter(|a| book.source_of(a) == Some(net_group(&s2)))
                .count();
            assert_eq!((n1, n2), (2, 1), "two per source, one per group");
        }
    }

    #[test]
    fn local_classes_gate_learned_local_addresses() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let local_src = v4(127, 0, 0, 1, 7000);
        let lo1 = v4(127, 0, 0, 1, 7001);
        let lo2 = v4(127, 0, 0, 1, 7002);
        let lan = v4(10, 0, 0, 5, 7001);
        book.add_learned(&[lo1, lo2, lan], local_src, 0);
        let mut ctx = Ctx::new();
        let mut r = rng();
        assert!(
            ctx.candidates(&book, 0, &mut r).is_empty(),
            "public node: no local dials"
        );
        ctx.local.insert(NetClass::Loopback);
        let list = ctx.candidates(&book, 0, &mut r);
        assert_eq!(list.len(), 2, "loopback only: {list:?}");
        assert!(!list.contains(&PeerAddr::Ip(lan)));
        // Loopback addresses are exempt from the group rule (every local node
        // is its own group anyway) but not from the source rule.
        ctx.local.insert(NetClass::Private);
        assert_eq!(ctx.candidates(&book, 0, &mut r).len(), 2);
        let cfg = AddrBookConfig {
            max_outbound_per_source: 3,
            ..AddrBookConfig::default()
        };
        let mut wide = AddrBook::new(cfg);
        let same_ip: Vec<_> = (7001..7004).map(|p| v4(10, 0, 0, 5, p)).collect();
        wide.add_learned(&same_ip, local_src, 0);
        let mut ctx = Ctx::new();
        ctx.local.insert(NetClass::Private);
        ctx.groups.insert(net_group(&lan));
        let list = ctx.candidates(&wide, 0, &mut r);
        assert_eq!(
            list.len(),
            3,
            "private addresses of one IP are not limited by group"
        );
        // The operator's own loopback entries need no local class.
        let mut book = AddrBook::new(AddrBookConfig::default());
        book.add_operator(PeerAddr::Ip(lo1), 0).unwrap();
        assert_eq!(Ctx::new().candidates(&book, 0, &mut r), [PeerAddr::Ip(lo1)]);
    }

    #[test]
    fn candidates_are_random_among_equals_and_deterministic_per_seed() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        for s in 0..10u8 {
            book.add_learned(&[v4(100 + s, 0, 0, 1, 1)], v4(20 + s, 0, 0, 1, 1), 0);
        }
        let ctx = Ctx::new();
        let a = ctx.candidates(&book, 0, &mut StdRng::seed_from_u64(5));
        assert_eq!(a, ctx.candidates(&book, 0, &mut StdRng::seed_from_u64(5)));
        let orders: BTreeSet<Vec<PeerAddr>> = (0..10)
            .map(|s| ctx.candidates(&book, 0, &mut StdRng::seed_from_u64(s)))
            .collect();
        assert!(orders.len() > 1);
        // Fewer failures still come first.
        let worst = PeerAddr::Ip(v4(100, 0, 0, 1, 1));
        book.mark_failure(&worst, FailureKind::Closed, 0);
        for s in 0..10 {
            let list = ctx.candidates(&book, 10_000, &mut StdRng::seed_from_u64(s));
            assert_eq!(list.last(), Some(&worst));
        }
    }

    #[test]
    fn sample_rules() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let local_src = v4(127, 0, 0, 1, 7000);
        book.add_learned(&[v4(127, 0, 0, 1, 7001), v4(10, 0, 0, 1, 1)], local_src, 0);
        let src = v4(20, 0, 0, 1, 1);
        let public: Vec<_> = (0..20u8).map(|i| v4(100 + i, 0, 0, 1, 1)).collect();
        book.add_learned(&public, src, 0);
        book.add_operator("seed.example.org:1".parse().unwrap(), 0)
            .unwrap();
        book.add_operator(ip("6.6.6.6:1"), 0).unwrap(); // never reached: not gossiped
        book.add_operator(ip("7.7.7.7:1"), 0).unwrap();
        book.mark_success(&ip("7.7.7.7:1"), 0);
        book.mark_success(&PeerAddr::Ip(public[5]), 0);
        book.mark_success(&PeerAddr::Ip(public[6]), 0);
        for t in 0..3 {
            book.mark_failure(&PeerAddr::Ip(public[7]), FailureKind::Closed, t); // terrible
        }
        book.block(&PeerAddr::Ip(public[8]), 0).unwrap();
        let mut r = rng();
        let all = book.sample(100, false, RECENT_SUCCESS_MS + 1, &mut r);
        assert_eq!(all.len(), 18 + 1, "{all:?}");
        for a in [
            sa("6.6.6.6:1"),
            public[7],
            public[8],
            v4(127, 0, 0, 1, 7001),
            v4(10, 0, 0, 1, 1),
        ] {
            assert!(!all.contains(&a), "{a}");
        }
        // Tried first.
        let first: BTreeSet<_> = all[..3].iter().copied().collect();
        assert_eq!(
            first,
            BTreeSet::from([sa("7.7.7.7:1"), public[5], public[6]])
        );
        assert_eq!(book.sample(2, false, 0, &mut r).len(), 2);
        assert!(book.sample(0, false, 0, &mut r).is_empty());
        let with_local = book.sample(100, true, 0, &mut r);
        assert_eq!(with_local.len(), 21);
        // Recent successes before older ones.
        book.mark_success(&PeerAddr::Ip(public[9]), 2 * RECENT_SUCCESS_MS);
        assert_eq!(
            book.sample(1, false, 2 * RECENT_SUCCESS_MS, &mut r),
            [public[9]]
        );
    }

    #[test]
    fn persistence_round_trip() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        book.add_operator("seed.example.org:7541".parse().unwrap(), 1)
            .unwrap();
        book.add_operator(ip("[::1]:7541"), 2).unwrap();
        book.add_learned(
            &[v4(8, 8, 8, 8, 1), sa("[2a00::5]:9")],
            v4(9, 9, 9, 9, 1),
            3,
        );
        book.mark_success(&ip("8.8.8.8:1"), 4);
        book.mark_failure(
            &ip("[2a00::5]:9"),
            FailureKind::Refused(RefuseKind::Banned),
            5,
        );
        book.block(&ip("1.2.3.4:5"), 6).unwrap();
        let mut store = BTreeMap::new();
        store_apply(&mut store, book.take_writes());
        assert!(
            store
                .keys()
                .all(|k| k[0] == KEY_PREFIX || k[0] == BLOCK_PREFIX)
        );
        let mut loaded = AddrBook::load(
            store.clone().into_iter().collect(),
            AddrBookConfig::default(),
            10,
        );
        assert_eq!(loaded.view(), book.view());
        assert_eq!(loaded.blocked(), book.blocked());
        assert!(loaded.take_writes().is_empty(), "nothing to fix");
        loaded.check();
        // Removals are persisted.
        book.forget(&ip("8.8.8.8:1"));
        book.unblock(&ip("1.2.3.4:5"));
        store_apply(&mut store, book.take_writes());
        let loaded = AddrBook::load(store.into_iter().collect(), AddrBookConfig::default(), 10);
        assert_eq!(loaded.len(), 3);
        assert!(loaded.blocked().is_empty());
    }

    #[test]
    fn pending_writes_stay_bounded_under_churn() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let honest: Vec<_> = (0..64u8).map(|i| v4(100, i, 0, 1, 1)).collect();
        book.add_learned(&honest, v4(20, 0, 0, 1, 1), 0);
        let mut store = BTreeMap::new();
        store_apply(&mut store, book.take_writes());
        // An entry never written and removed again leaves no operation.
        book.add_learned(&[v4(101, 0, 0, 1, 1)], v4(21, 0, 0, 1, 1), 1);
        assert!(book.forget(&ip("101.0.0.1:1")));
        assert!(book.take_writes().is_empty());
        // A peer churning its bucket with 20,000 addresses between two drains.
        for m in 0..100u32 {
            let addrs: Vec<_> = (0..200u32)
                .map(|i| v4(150 + (i % 50) as u8, (i / 50) as u8, m as u8, 1, 1))
                .collect();
            book.add_learned(&addrs, v4(66, 0, 0, 1, 1), 2);
            assert!(book.writes.pending_len() <= book.len() + store.len());
        }
        // Stored entries removed are deleted; the store mirrors the book.
        for a in &honest[..10] {
            book.forget(&PeerAddr::Ip(*a));
        }
        let ops = book.take_writes();
        assert!(ops.len() <= book.len() + 10, "{}", ops.len());
        store_apply(&mut store, ops);
        let loaded = AddrBook::load(store.into_iter().collect(), AddrBookConfig::default(), 3);
        assert_eq!(loaded.view(), book.view());
    }

    #[test]
    fn load_drops_bad_entries_and_clamps_times() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        book.add_learned(&[v4(8, 8, 8, 8, 1)], v4(9, 9, 9, 9, 1), 1_000_000);
        book.mark_failure(&ip("8.8.8.8:1"), FailureKind::WrongNetwork, 1_000_000);
        let mut store = BTreeMap::new();
        store_apply(&mut store, book.take_writes());
        let (good_key, good_value) = store
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        let entry_for = |e: Entry| encode_entry(&e);
        let learned = |src: &str| Entry {
            source: AddrSource::Peer(sa(src)),
            tried: false,
            added_ms: 0,
            last_success_ms: None,
            failures: 0,
            last_failure: None,
            next_try_ms: 0,
        };
        let mut bad_version = good_value.clone();
        bad_version[0] = 2;
        let mut trailing = good_value.clone();
        trailing.push(1);
        let host_key = |h: &str| {
            let mut k = vec![KEY_PREFIX];
            borsh::to_writer(&mut k, &StoredAddr::Host(h.into(), 1)).unwrap();
            k
        };
        let mapped_key = {
            let mut k = vec![KEY_PREFIX];
            let m = std::net::Ipv4Addr::new(8, 8, 4, 4)
                .to_ipv6_mapped()
                .octets();
            borsh::to_writer(&mut k, &StoredAddr::Ip(StoredSock::V6(m, 1))).unwrap();
            k
        };
        let bad: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![KEY_PREFIX], good_value.clone()),
            (vec![b'?', 1], good_value.clone()),
            (host_key("UPPER.example"), entry_for(learned("9.9.9.9:1"))),
            (host_key("bad host"), good_value.clone()),
            (mapped_key, good_value.clone()),
            (encode_key(KEY_PREFIX, &ip("0.0.0.0:1")), good_value.clone()),
            (encode_key(KEY_PREFIX, &ip("8.8.4.4:1")), bad_version),
            (encode_key(KEY_PREFIX, &ip("8.8.4.5:1")), trailing),
            (encode_key(KEY_PREFIX, &ip("8.8.4.6:1")), vec![]),
            // A host name cannot be learned; loopback not from a public source.
            (
                encode_key(KEY_PREFIX, &"h.example:1".parse().unwrap()),
                entry_for(learned("9.9.9.9:1")),
            ),
            (
                encode_key(KEY_PREFIX, &ip("127.0.0.1:1")),
                entry_for(learned("9.9.9.9:1")),
            ),
            // Tried without a success time.
            (
                encode_key(KEY_PREFIX, &ip("8.8.4.7:1")),
                entry_for(Entry {
                    tried: true,
                    ..learned("9.9.9.9:1")
                }),
            ),
            // Failed too often to be kept.
            (
                encode_key(KEY_PREFIX, &ip("8.8.4.8:1")),
                entry_for(Entry {
                    failures: 10,
                    ..learned("9.9.9.9:1")
                }),
            ),
            (
                encode_key(BLOCK_PREFIX, &ip("1.1.1.1:1")),
                vec![VALUE_VERSION, 1, 2],
            ),
        ];
        let mut all: Vec<_> = store.into_iter().collect();
        all.extend(bad.iter().cloned());
        // The clock went back: the stored times are in the future.
        let mut loaded = AddrBook::load(all, AddrBookConfig::default(), 500);
        assert_eq!(loaded.len(), 1);
        let v = loaded.get(&ip("8.8.8.8:1")).unwrap();
        assert_eq!((v.added_ms, v.next_try_ms), (500, 500 + LONG_BACKOFF_MS));
        let writes = loaded.take_writes();
        for (k, _) in &bad {
            assert!(writes.contains(&StoreOp::Delete(k.clone())), "{k:?}");
        }
        assert!(
            writes
                .iter()
                .any(|op| matches!(op, StoreOp::Put(k, _) if *k == good_key)),
            "clamped entry rewritten"
        );
        assert_eq!(writes.len(), bad.len() + 1);
    }

    #[test]
    fn load_enforces_bounds() {
        let mut book = AddrBook::new(AddrBookConfig::default());
        let src = v4(20, 0, 0, 1, 1);
        let addrs: Vec<_> = (0..10u8).map(|i| v4(100 + i, 0, 0, 1, 1)).collect();
        book.add_learned(&addrs, src, 0);
        book.mark_success(&PeerAddr::Ip(addrs[9]), 1);
        for i in 0..3u8 {
            book.add_operator(ip(&format!("1.1.1.{i}:1")), 0).unwrap();
            book.block(&ip(&format!("2.2.2.{i}:1")), u64::from(i))
                .unwrap();
        }
        let mut store = BTreeMap::new();
        store_apply(&mut store, book.take_writes());
        let cfg = AddrBookConfig {
            per_source: 4,
            max_operator: 2,
            max_blocked: 1,
            ..AddrBookConfig::default()
        };
        let mut loaded = AddrBook::load(store.into_iter().collect(), cfg, 10);
        loaded.check();
        assert_eq!(loaded.learned_len(), 4);
        assert!(
            loaded.get(&PeerAddr::Ip(addrs[9])).is_some(),
            "tried kept first"
        );
        assert_eq!(loaded.len(), 6);
        assert_eq!(
            loaded.blocked(),
            [(ip("2.2.2.2:1"), 2)],
            "newest block kept"
        );
        let deletes = loaded
            .take_writes()
            .into_iter()
            .filter(|op| matches!(op, StoreOp::Delete(_)))
            .count();
        assert_eq!(deletes, 6 + 1 + 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Learn(Vec<(u8, u8, u16)>, u8),
        Operator(u8),
        Success(u8, u8),
        Failure(u8, u8, u8),
        Block(u8, u8),
        Unblock(u8, u8),
        Forget(u8, u8),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let addr = || (0u8..12, 0u8..4);
        prop_oneof![
            4 => (proptest::collection::vec((0u8..12, 0u8..4, 0u16..3), 0..30), 0u8..6).prop_map(|(a, s)| Op::Learn(a, s)),
            1 => (0u8..6).prop_map(Op::Operator),
            2 => addr().prop_map(|(a, b)| Op::Success(a, b)),
            3 => (0u8..12, 0u8..4, 0u8..9).prop_map(|(a, b, k)| Op::Failure(a, b, k)),
            1 => addr().prop_map(|(a, b)| Op::Block(a, b)),
            1 => addr().prop_map(|(a, b)| Op::Unblock(a, b)),
            1 => addr().prop_map(|(a, b)| Op::Forget(a, b)),
        ]
    }

    /// Addresses in a few /16s (some private, some loopback) so that every
    /// bound is reached.
    fn addr_of(a: u8, b: u8, port: u16) -> SocketAddr {
        match a {
            0 => v4(127, 0, 0, 1, 7000 + u16::from(b)),
            1 => v4(10, 0, 0, b, 1),
            _ => v4(40 + a % 4, b, a, 1, 1 + port),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn invariants_hold_and_the_store_mirrors_the_book(ops in proptest::collection::vec(arb_op(), 1..60)) {
            let cfg = AddrBookConfig {
                per_source: 6,
                max_learned: 20,
                per_group: 4,
                max_operator: 4,
                max_blocked: 3,
                forget_after_failures: 4,
                ..AddrBookConfig::default()
            };
            let mut book = AddrBook::new(cfg.clone());
            let mut store = BTreeMap::new();
            let sources = [v4(127, 0, 0, 1, 9000), v4(10, 9, 9, 9, 1), v4(20, 0, 0, 1, 1), v4(21, 0, 0, 1, 1), v4(20, 0, 7, 7, 1), v4(22, 0, 0, 1, 1)];
            for (t, op) in ops.into_iter().enumerate() {
                let now = t as u64 * 1000;
                match op {
                    Op::Learn(addrs, s) => {
                        let addrs: Vec<_> = addrs.iter().map(|&(a, b, p)| addr_of(a, b, p)).collect();
                        let before = book.learned_len();
                        let added = book.add_learned(&addrs, sources[usize::from(s)], now);
                        prop_assert!(book.learned_len() <= before + added);
                    }
                    Op::Operator(i) => { let _ = book.add_operator(PeerAddr::Ip(addr_of(i + 2, 200, 0)), now); }
                    Op::Success(a, b) => { book.mark_success(&PeerAddr::Ip(addr_of(a, b, 0)), now); }
                    Op::Failure(a, b, k) => {
                        let kind = FailureKind::from_code(k).unwrap();
                        if let Some(next) = book.mark_failure(&PeerAddr::Ip(addr_of(a, b, 0)), kind, now) {
                            prop_assert!(next > now && next <= now + LONG_BACKOFF_MS);
                        }
                    }
                    Op::Block(a, b) => { let _ = book.block(&PeerAddr::Ip(addr_of(a, b, 0)), now); }
                    Op::Unblock(a, b) => { book.unblock(&PeerAddr::Ip(addr_of(a, b, 0))); }
                    Op::Forget(a, b) => { book.forget(&PeerAddr::Ip(addr_of(a, b, 0))); }
                }
                book.check();
                store_apply(&mut store, book.take_writes());
            }
            let now = 1_000_000;
            let loaded = AddrBook::load(store.into_iter().collect(), cfg, now);
            loaded.check();
            prop_assert_eq!(loaded.view(), book.view());
            prop_assert_eq!(loaded.blocked(), book.blocked());
        }
    }
}
