//! The ban list and the whitelist: who may not connect, and who is never
//! banned.
//!
//! A ban names a [`BanTarget`]: an IP subnet (a single IP is a /32 or /128),
//! or, for peers on loopback where every local node shares one IP, one exact
//! `IP:port` (the peer's advertised listen address, see [`auto_ban_target`]).
//! [`BanList::is_banned`] answers for a remote or listen address, treating an
//! IPv4-mapped IPv6 address as the IPv4 address it carries.
//!
//! # Who gets banned (decided by the caller)
//! Bans are for clear protocol abuse only, never for a refused or reset
//! connection. The caller does not ban, but only disconnects, peers that are
//! local to the operator: addresses on the [`Whitelist`] (`--whitelist`),
//! addresses the operator added (`--peer`, bootnodes, `net_addPeer`: see
//! `AddrBook`), and on dev networks loopback peers. This module only keeps the
//! list; those exemptions are the caller's rule.
//!
//! # Bounds
//! - At most [`BanListConfig::max_entries`] bans (default
//!   [`DEFAULT_MAX_BANS`], 10,000: a few hundred bytes each, so a few MiB at
//!   most). When the list is full, a new ban (automatic or by the operator)
//!   replaces the entry that expires soonest among the automatic bans and the
//!   already expired ones. A ban the operator set is never displaced before
//!   it ends, so peers that get themselves banned from many addresses cannot
//!   push out the operator's bans; when every entry is a live operator ban,
//!   [`BanList::ban`] returns [`BanError::Full`].
//! - A reason is at most [`MAX_REASON_BYTES`] (200) bytes, control
//!   characters replaced by spaces: reasons may quote what a peer sent and are
//!   shown to the operator by `net_listBanned`.
//! - At most [`MAX_WHITELIST`] whitelist entries (they come from the command
//!   line).
//! - Lookups cost one map probe per distinct prefix length in use (at most
//!   33 + 129), not one per ban.
//!
//! # Persistence
//! Keys are the byte [`KEY_PREFIX`] (`b'Z'`) followed by the encoded target;
//! values a version byte then the entry. [`BanList::load`] takes the stored
//! entries, drops (and schedules the deletion of) those that do not decode,
//! are not in canonical form, have expired or exceed the bound, and every
//! change queues a [`StoreOp`] that the caller collects with
//! [`BanList::take_writes`] and writes. Pending writes hold at most one
//! operation per key, and removing a ban never written cancels its write,
//! so they stay within twice the bound whatever the churn between drains.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::addr::{NetClass, canonical, classify};
use crate::addrbook::WriteQueue;
use crate::store::StoreOp;

/// Default bound on the number of bans.
pub const DEFAULT_MAX_BANS: usize = 10_000;
/// Longest reason kept, in bytes.
pub const MAX_REASON_BYTES: usize = 200;
/// Most entries a [`Whitelist`] holds.
pub const MAX_WHITELIST: usize = 1024;
/// Key prefix of ban entries in the [`crate::store::PeerStore`].
pub const KEY_PREFIX: u8 = b'Z';
/// Version byte of the stored value format.
const VALUE_VERSION: u8 = 1;

/// What a ban covers.
///
/// Values produced by this module are canonical: subnets are truncated to
/// their network address and IPv4-mapped IPv6 forms are stored as IPv4;
/// exact addresses carry no IPv6 flow label or scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    /// Every address in the subnet (a single IP is a /32 or /128), any port.
    Subnet(IpNet),
    /// One `IP:port` only (loopback peers, who share their IP with every
    /// other local node).
    Exact(SocketAddr),
}

/// Why a ban target or a whitelist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanTargetParseError {
    #[error(
        "empty ban target: give an IP (1.2.3.4), a subnet (1.2.3.0/24, 2001:db8::/32) or an IP:port (127.0.0.1:7541, [::1]:7541)"
    )]
    Empty,
    #[error(
        "{0:?} is not a valid subnet: write ADDRESS/PREFIX with a prefix of at most 32 for IPv4 or 128 for IPv6 (1.2.3.0/24, 2001:db8::/32)"
    )]
    Subnet(String),
    #[error(
        "{0:?} names port 0: give the peer's listening port (127.0.0.1:7541) or leave the port out to cover the whole IP"
    )]
    PortZero(String),
    #[error(
        "{0:?} is not an IP (1.2.3.4), a subnet (1.2.3.0/24, 2001:db8::/32) or an IP:port (127.0.0.1:7541, [::1]:7541); host names are not accepted"
    )]
    Invalid(String),
    #[error(
        "{0:?} is an IP:port, but only IP addresses and subnets are accepted here (1.2.3.4, 10.0.0.0/8)"
    )]
    PortNotAllowed(String),
}

/// The subnet in canonical form: IPv4-mapped IPv6 subnets (prefix 96 or
/// longer inside `::ffff:0:0/96`) become IPv4, and host bits are cleared.
pub fn canonical_net(net: IpNet) -> IpNet {
    // prefix_len - 96 <= 32: always a valid IPv4 prefix.
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n.trunc());
    }
    net.trunc()
}

/// The single-host subnet of `ip` (/32 or /128), canonical.
pub fn host_net(ip: IpAddr) -> IpNet {
    match canonical(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
    }
}

/// `addr` with its IP canonical and no IPv6 flow label or scope id.
fn canonical_socket(addr: &SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

impl BanTarget {
    /// A ban of one IP (any port).
    pub fn ip(ip: IpAddr) -> BanTarget {
        BanTarget::Subnet(host_net(ip))
    }

    /// This target in canonical form (see the type's documentation).
    pub fn canonical(self) -> BanTarget {
        match self {
            BanTarget::Subnet(net) => BanTarget::Subnet(canonical_net(net)),
            BanTarget::Exact(a) => BanTarget::Exact(canonical_socket(&a)),
        }
    }

    /// Whether the target covers `addr` (compared in canonical form).
    pub fn matches(&self, addr: &SocketAddr) -> bool {
        match self.canonical() {
            BanTarget::Subnet(net) => net.contains(&canonical(addr.ip())),
            BanTarget::Exact(a) => a == canonical_socket(addr),
        }
    }
}

/// Parses an IP (`1.2.3.4`, `::1`) or a subnet (`1.2.3.0/24`,
/// `2001:db8::/32`) into a canonical [`IpNet`]; a single IP becomes a /32 or
/// /128. Host bits of a subnet are cleared (`1.2.3.4/24` is `1.2.3.0/24`).
/// Suitable as a clap value parser for `--whitelist`.
pub fn parse_net(s: &str) -> Result<IpNet, BanTargetParseError> {
    match s.trim().parse::<BanTarget>()? {
        BanTarget::Subnet(net) => Ok(net),
        BanTarget::Exact(_) => Err(BanTargetParseError::PortNotAllowed(s.trim().into())),
    }
}

impl FromStr for BanTarget {
    type Err = BanTargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(BanTargetParseError::Empty);
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err(BanTargetParseError::PortZero(s.into()));
            }
            return Ok(BanTarget::Exact(canonical_socket(&a)));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(BanTarget::ip(ip));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(BanTarget::Subnet(canonical_net(net)));
        }
        if s.contains('/') {
            return Err(BanTargetParseError::Subnet(s.into()));
        }
        Err(BanTargetParseError::Invalid(s.into()))
    }
}

impl fmt::Display for BanTarget {
    /// A single IP without its prefix (`1.2.3.4`), a subnet with it
    /// (`1.2.3.0/24`), an exact address as `IP:port` (`[::1]:7541`). The text
    /// parses back to the same target.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.canonical() {
            BanTarget::Subnet(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            BanTarget::Subnet(net) => write!(f, "{net}"),
            BanTarget::Exact(a) => write!(f, "{a}"),
        }
    }
}

/// The target to ban for a misbehaving peer: on loopback, where every local
/// node shares the IP, the exact address it listens on (when it told us one
/// on loopback too), else the remote address it connected from; elsewhere its
/// whole IP.
///
/// A loopback peer's advertised listen address is used only when it is
/// itself a loopback address: a local peer cannot get a foreign node banned
/// by advertising that node's address.
pub fn auto_ban_target(remote: &SocketAddr, listen: Option<SocketAddr>) -> BanTarget {
    let remote = canonical_socket(remote);
    if classify(remote.ip()) == NetClass::Loopback {
        let exact = listen
            .map(|l| canonical_socket(&l))
            .filter(|l| classify(l.ip()) == NetClass::Loopback && l.port() != 0)
            .unwrap_or(remote);
        BanTarget::Exact(exact)
    } else {
        BanTarget::ip(remote.ip())
    }
}

/// Who set a ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BanOrigin {
    /// Set by the node for misbehaviour; may be displaced when the list is
    /// full.
    Auto,
    /// Set by the operator (`net_setBan`); never displaced before it ends.
    Operator,
}

/// One ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanEntry {
    pub target: BanTarget,
    pub created_ms: u64,
    /// The ban ends at this time (exclusive).
    pub until_ms: u64,
    pub reason: String,
    pub origin: BanOrigin,
}

/// One ban as shown to the operator (`net_listBanned`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanView {
    /// The target as text (parses back with [`BanTarget::from_str`]).
    pub target: String,
    pub created_ms: u64,
    pub until_ms: u64,
    pub reason: String,
    pub origin: BanOrigin,
}

/// Why a ban was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    #[error(
        "the ban of {target} would end at {until_ms} ms, not after now ({now_ms} ms): give a positive duration"
    )]
    NotInFuture {
        target: String,
        until_ms: u64,
        now_ms: u64,
    },
    #[error(
        "the ban list is full ({max} bans, all set by the operator and still running): remove some with net_setBan or net_clearBanned first"
    )]
    Full { max: usize },
}

/// Bounds of a [`BanList`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanListConfig {
    /// Most bans kept (default [`DEFAULT_MAX_BANS`]).
    pub max_entries: usize,
}

impl Default for BanListConfig {
    fn default() -> Self {
        BanListConfig {
            max_entries: DEFAULT_MAX_BANS,
        }
    }
}

/// The ban list. See the module documentation for its rules and bounds.
#[derive(Debug)]
pub struct BanList {
    cfg: BanListConfig,
    entries: BTreeMap<BanTarget, BanEntry>,
    /// How many subnet bans use each (is IPv4, prefix length): lookups try
    /// only the lengths in use.
    prefixes: BTreeMap<(bool, u8), usize>,
    /// Pending writes, at most one per key.
    writes: WriteQueue,
}

/// `reason` with control characters replaced by spaces, cut to at most
/// [`MAX_REASON_BYTES`] bytes on a character boundary.
fn clean_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(MAX_REASON_BYTES));
    for c in reason.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_REASON_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[derive(BorshSerialize, BorshDeserialize)]
enum StoredTarget {
    Net4([u8; 4], u8),
    Net6([u8; 16], u8),
    Exact4([u8; 4], u16),
    Exact6([u8; 16], u16),
}

#[derive(BorshSerialize, BorshDeserialize)]
struct StoredBan {
    created_ms: u64,
    until_ms: u64,
    /// 0: automatic, 1: operator.
    origin: u8,
    reason: String,
}

fn encode_key(target: &BanTarget) -> Vec<u8> {
    let stored = match target.canonical() {
        BanTarget::Subnet(IpNet::V4(n)) => StoredTarget::Net4(n.addr().octets(), n.prefix_len()),
        BanTarget::Subnet(IpNet::V6(n)) => StoredTarget::Net6(n.addr().octets(), n.prefix_len()),
        BanTarget::Exact(SocketAddr::V4(a)) => StoredTarget::Exact4(a.ip().octets(), a.port()),
        BanTarget::Exact(SocketAddr::V6(a)) => StoredTarget::Exact6(a.ip().octets(), a.port()),
    };
    let mut key = vec![KEY_PREFIX];
    // Writing into a Vec cannot fail.
    let _ = borsh::to_writer(&mut key, &stored);
    key
}

fn encode_value(e: &BanEntry) -> Vec<u8> {
    let stored = StoredBan {
        created_ms: e.created_ms,
        until_ms: e.until_ms,
        origin: match e.origin {
            BanOrigin::Auto => 0,
            BanOrigin::Operator => 1,
        },
        reason: e.reason.clone(),
    };
    let mut value = vec![VALUE_VERSION];
    let _ = borsh::to_writer(&mut value, &stored);
    value
}

/// Decodes one stored entry; `None` when it is malformed or not canonical.
fn decode_entry(key: &[u8], value: &[u8]) -> Option<BanEntry> {
    let (&prefix, rest) = key.split_first()?;
    if prefix != KEY_PREFIX {
        return None;
    }
    let target = match borsh::from_slice::<StoredTarget>(rest).ok()? {
        StoredTarget::Net4(ip, len) => {
            BanTarget::Subnet(IpNet::V4(Ipv4Net::new(ip.into(), len).ok()?))
        }
        StoredTarget::Net6(ip, len) => {
            BanTarget::Subnet(IpNet::V6(Ipv6Net::new(ip.into(), len).ok()?))
        }
        StoredTarget::Exact4(ip, port) => {
            BanTarget::Exact(SocketAddr::new(IpAddr::V4(ip.into()), port))
        }
        StoredTarget::Exact6(ip, port) => {
            BanTarget::Exact(SocketAddr::new(IpAddr::V6(ip.into()), port))
        }
    };
    if target.canonical() != target || encode_key(&target) != key {
        return None;
    }
    if let BanTarget::Exact(a) = target
        && a.port() == 0
    {
        return None;
    }
    let (&version, rest) = value.split_first()?;
    if version != VALUE_VERSION {
        return None;
    }
    let stored = borsh::from_slice::<StoredBan>(rest).ok()?;
    let origin = match stored.origin {
        0 => BanOrigin::Auto,
        1 => BanOrigin::Operator,
        _ => return None,
    };
    if clean_reason(&stored.reason) != stored.reason {
        return None;
    }
    Some(BanEntry {
        target,
        created_ms: stored.created_ms,
        until_ms: stored.until_ms,
        reason: stored.reason,
        origin,
    })
}

fn prefix_key(net: &IpNet) -> (bool, u8) {
    (matches!(net, IpNet::V4(_)), net.prefix_len())
}

impl BanList {
    /// An empty list.
    pub fn new(cfg: BanListConfig) -> BanList {
        BanList {
            cfg,
            entries: BTreeMap::new(),
            prefixes: BTreeMap::new(),
            writes: WriteQueue::default(),
        }
    }

    /// The list from stored entries (those under [`KEY_PREFIX`]). Entries
    /// that do not decode, are not canonical, have ended by `now_ms`, or
    /// exceed the bound (operator bans kept first, then the longest) are
    /// dropped and their deletion queued.
    pub fn load(entries: Vec<(Vec<u8>, Vec<u8>)>, cfg: BanListConfig, now_ms: u64) -> BanList {
        let mut list = BanList::new(cfg);
        let mut good = Vec::new();
        for (key, value) in entries {
            list.writes.loaded(key.clone());
            match decode_entry(&key, &value) {
                Some(e) if e.until_ms > now_ms => good.push(e),
                _ => {
                    list.writes.delete(key);
                }
            }
        }
        good.sort_by(|a, b| {
            let rank = |e: &BanEntry| e.origin == BanOrigin::Operator;
            rank(b)
                .cmp(&rank(a))
                .then(b.until_ms.cmp(&a.until_ms))
                .then(a.target.cmp(&b.target))
        });
        for e in good {
            if list.entries.len() < list.cfg.max_entries {
                list.insert_raw(e);
            } else {
                list.writes.delete(encode_key(&e.target));
            }
        }
        list
    }

    fn insert_raw(&mut self, e: BanEntry) {
        if let BanTarget::Subnet(net) = e.target {
            *self.prefixes.entry(prefix_key(&net)).or_insert(0) += 1;
        }
        self.entries.insert(e.target, e);
    }

    fn remove_raw(&mut self, target: &BanTarget) -> Option<BanEntry> {
        let e = self.entries.remove(target)?;
        if let BanTarget::Subnet(net) = e.target {
            let k = prefix_key(&net);
            if let Some(n) = self.prefixes.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.prefixes.remove(&k);
                }
            }
        }
        self.writes.delete(encode_key(target));
        Some(e)
    }

    fn put(&mut self, e: BanEntry) {
        self.writes.put(encode_key(&e.target), encode_value(&e));
        self.insert_raw(e);
    }

    /// Bans `target` until `until_ms` (exclusive).
    ///
    /// An operator ban of a target already banned replaces that ban (so the
    /// operator can shorten it); an automatic ban only extends it (and keeps
    /// an operator origin). When the list is full, the entry that ends
    /// soonest among automatic and already ended bans makes room (see the
    /// module documentation).
    pub fn ban(
        &mut self,
        target: BanTarget,
        until_ms: u64,
        reason: &str,
        origin: BanOrigin,
        now_ms: u64,
    ) -> Result<(), BanError> {
        let target = target.canonical();
        if until_ms <= now_ms {
            return Err(BanError::NotInFuture {
                target: target.to_string(),
                until_ms,
                now_ms,
            });
        }
        let reason = clean_reason(reason);
        if let Some(old) = self.entries.get(&target) {
            let live = old.until_ms > now_ms;
            let entry = match origin {
                BanOrigin::Auto if live && old.until_ms >= until_ms => return Ok(()),
                BanOrigin::Auto if live => BanEntry {
                    until_ms,
                    reason,
                    created_ms: now_ms,
                    ..old.clone()
                },
                _ => BanEntry {
                    target,
                    created_ms: now_ms,
                    until_ms,
                    reason,
                    origin,
                },
            };
            self.put(entry);
            return Ok(());
        }
        if self.entries.len() >= self.cfg.max_entries {
            let victim = self
                .entries
                .values()
                .filter(|e| e.origin == BanOrigin::Auto || e.until_ms <= now_ms)
                .min_by_key(|e| (e.until_ms, e.target))
                .map(|e| e.target);
            match victim {
                Some(v) => {
                    self.remove_raw(&v);
                }
                None => {
                    return Err(BanError::Full {
                        max: self.cfg.max_entries,
                    });
                }
            }
        }
        self.put(BanEntry {
            target,
            created_ms: now_ms,
            until_ms,
            reason,
            origin,
        });
        Ok(())
    }

    /// Lifts the ban of exactly `target` (not of subnets that contain it);
    /// whether there was one.
    pub fn unban(&mut self, target: &BanTarget) -> bool {
        self.remove_raw(&target.canonical()).is_some()
    }

    /// Lifts every ban.
    pub fn clear(&mut self) {
        let targets: Vec<BanTarget> = self.entries.keys().copied().collect();
        for t in targets {
            self.remove_raw(&t);
        }
    }

    /// The ban that covers `addr` at `now_ms`, if any: an exact ban of the
    /// address, else the most specific subnet ban containing its IP
    /// (IPv4-mapped IPv6 counts as IPv4). Ended bans never match, even before
    /// [`BanList::expire`] removes them.
    ///
    /// The caller asks for both the remote address and, when the peer told
    /// one, its listen address.
    pub fn is_banned(&self, addr: &SocketAddr, now_ms: u64) -> Option<&BanEntry> {
        let live = |e: &&BanEntry| e.until_ms > now_ms;
        let addr = canonical_socket(addr);
        if let Some(e) = self.entries.get(&BanTarget::Exact(addr)).filter(live) {
            return Some(e);
        }
        let ip = addr.ip();
        let is_v4 = ip.is_ipv4();
        for &(v4, len) in self.prefixes.keys().rev() {
            if v4 != is_v4 {
                continue;
            }
            let net = match ip {
                IpAddr::V4(a) => Ipv4Net::new(a, len).map(IpNet::V4),
                IpAddr::V6(a) => Ipv6Net::new(a, len).map(IpNet::V6),
            };
            if let Ok(net) = net
                && let Some(e) = self
                    .entries
                    .get(&BanTarget::Subnet(net.trunc()))
                    .filter(live)
            {
                return Some(e);
            }
        }
        None
    }

    /// Removes the bans that ended by `now_ms`; how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let ended: Vec<BanTarget> = self
            .entries
            .values()
            .filter(|e| e.until_ms <= now_ms)
            .map(|e| e.target)
            .collect();
        for t in &ended {
            self.remove_raw(t);
        }
        ended.len()
    }

    /// Every ban, ordered by target.
    pub fn list(&self) -> Vec<BanView> {
        self.entries
            .values()
            .map(|e| BanView {
                target: e.target.to_string(),
                created_ms: e.created_ms,
                until_ms: e.until_ms,
                reason: e.reason.clone(),
                origin: e.origin,
            })
            .collect()
    }

    /// Number of bans (ended ones included until [`BanList::expire`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The writes queued since the last call, at most one per key, for the
    /// caller to apply to its store.
    pub fn take_writes(&mut self) -> Vec<StoreOp> {
        self.writes.take()
    }
}

/// Why a whitelist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhitelistError {
    #[error(
        "{given} whitelist entries given, at most {MAX_WHITELIST} are allowed: use wider subnets"
    )]
    TooMany { given: usize },
}

/// Addresses whose peers are never banned, only disconnected, when they
/// misbehave (`--whitelist`). Matching ignores the port; IPv4-mapped IPv6
/// counts as IPv4.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whitelist {
    nets: Vec<IpNet>,
}

impl Whitelist {
    /// A whitelist of `nets` (canonicalised, duplicates removed), at most
    /// [`MAX_WHITELIST`] of them.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Result<Whitelist, WhitelistError> {
        let mut v: Vec<IpNet> = Vec::new();
        for (given, net) in nets.into_iter().enumerate() {
            if given >= MAX_WHITELIST {
                return Err(WhitelistError::TooMany { given: given + 1 });
            }
            v.push(canonical_net(net));
        }
        v.sort();
        v.dedup();
        Ok(Whitelist { nets: v })
    }

    /// Whether `addr`'s IP is in one of the whitelisted subnets.
    pub fn is_whitelisted(&self, addr: &SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The subnets, canonical and sorted.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn t(s: &str) -> BanTarget {
        s.parse().unwrap()
    }
    fn small(max: usize) -> BanList {
        BanList::new(BanListConfig { max_entries: max })
    }

    #[test]
    fn parse_and_display_round_trip() {
        for (input, shown) in [
            ("1.2.3.4", "1.2.3.4"),
            (" 1.2.3.0/24 ", "1.2.3.0/24"),
            ("1.2.3.77/24", "1.2.3.0/24"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1", "2001:db8::1"),
            ("127.0.0.1:7541", "127.0.0.1:7541"),
            ("[::1]:7541", "[::1]:7541"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::ffff:1.2.3.0/120", "1.2.3.0/24"),
            ("[::ffff:127.0.0.1]:9", "127.0.0.1:9"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ] {
            let target = t(input);
            assert_eq!(target.to_string(), shown, "{input}");
            assert_eq!(t(shown), target, "{shown} parses back");
        }
        assert_eq!(
            t("1.2.3.4"),
            BanTarget::Subnet("1.2.3.4/32".parse().unwrap())
        );
        assert_eq!(t("::1"), BanTarget::Subnet("::1/128".parse().unwrap()));
    }

    #[test]
    fn parse_errors_are_specific() {
        assert_eq!("".parse::<BanTarget>(), Err(BanTargetParseError::Empty));
        assert!(matches!(
            "1.2.3.0/33".parse::<BanTarget>(),
            Err(BanTargetParseError::Subnet(_))
        ));
        assert!(matches!(
            "::/129".parse::<BanTarget>(),
            Err(BanTargetParseError::Subnet(_))
        ));
        assert!(matches!(
            "127.0.0.1:0".parse::<BanTarget>(),
            Err(BanTargetParseError::PortZero(_))
        ));
        for bad in [
            "example.org",
            "1.2.3",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[::1]",
            "a/b",
        ] {
            assert!(bad.parse::<BanTarget>().is_err(), "{bad}");
        }
        let msg = "example.org".parse::<BanTarget>().unwrap_err().to_string();
        assert!(msg.contains("host names are not accepted"), "{msg}");
        assert!(matches!(
            parse_net("1.2.3.4:5"),
            Err(BanTargetParseError::PortNotAllowed(_))
        ));
        assert_eq!(
            parse_net("10.1.2.3/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn subnet_and_exact_matching() {
        let mut b = BanList::new(BanListConfig::default());
        b.ban(t("10.1.0.0/16"), 1000, "flood", BanOrigin::Auto, 0)
            .unwrap();
        b.ban(t("[::1]:7541"), 1000, "bad block", BanOrigin::Auto, 0)
            .unwrap();
        b.ban(t("2001:db8::/32"), 1000, "op", BanOrigin::Operator, 0)
            .unwrap();
        assert!(b.is_banned(&sa("10.1.200.3:9"), 10).is_some());
        assert!(
            b.is_banned(&sa("[::ffff:10.1.2.3]:9"), 10).is_some(),
            "mapped IPv4"
        );
        assert!(b.is_banned(&sa("10.2.0.1:9"), 10).is_none());
        assert!(b.is_banned(&sa("[::1]:7541"), 10).is_some());
        assert!(
            b.is_banned(&sa("[::1]:7542"), 10).is_none(),
            "exact ban is per port"
        );
        assert!(b.is_banned(&sa("[2001:db8:ffff::5]:1"), 10).is_some());
        assert!(b.is_banned(&sa("[2001:db9::5]:1"), 10).is_none());
        // Ended bans never match, even before expire().
        assert!(b.is_banned(&sa("10.1.200.3:9"), 1000).is_none());
    }

    #[test]
    fn most_specific_ban_wins() {
        let mut b = BanList::new(BanListConfig::default());
        b.ban(t("10.0.0.0/8"), 1000, "wide", BanOrigin::Operator, 0)
            .unwrap();
        b.ban(t("10.1.2.3"), 500, "narrow", BanOrigin::Auto, 0)
            .unwrap();
        assert_eq!(b.is_banned(&sa("10.1.2.3:1"), 1).unwrap().reason, "narrow");
        assert_eq!(b.is_banned(&sa("10.1.2.3:1"), 600).unwrap().reason, "wide");
        assert_eq!(b.is_banned(&sa("10.9.9.9:1"), 1).unwrap().reason, "wide");
    }

    #[test]
    fn auto_target_rules() {
        assert_eq!(
            auto_ban_target(&sa("8.8.8.8:4000"), Some(sa("8.8.8.8:7541"))),
            t("8.8.8.8")
        );
        assert_eq!(auto_ban_target(&sa("[2a00::1]:4000"), None), t("2a00::1"));
        assert_eq!(
            auto_ban_target(&sa("127.0.0.1:51000"), Some(sa("127.0.0.1:7541"))),
            t("127.0.0.1:7541")
        );
        assert_eq!(
            auto_ban_target(&sa("127.0.0.1:51000"), None),
            t("127.0.0.1:51000")
        );
        // A local peer cannot get a foreign node banned through its claimed listen address.
        assert_eq!(
            auto_ban_target(&sa("127.0.0.1:51000"), Some(sa("8.8.8.8:7541"))),
            t("127.0.0.1:51000")
        );
        assert_eq!(
            auto_ban_target(&sa("[::ffff:10.0.0.1]:5"), None),
            t("10.0.0.1")
        );
    }

    #[test]
    fn reasons_are_bounded_and_cleaned() {
        let mut b = BanList::new(BanListConfig::default());
        let long = format!("é{}\n\u{1b}[31m", "x".repeat(500));
        b.ban(t("1.2.3.4"), 10, &long, BanOrigin::Auto, 0).unwrap();
        let r = &b.list()[0].reason;
        assert!(
            r.len() <= MAX_REASON_BYTES && r.len() >= MAX_REASON_BYTES - 1,
            "{}",
            r.len()
        );
        assert!(r.starts_with('é'));
        assert!(!r.chars().any(char::is_control));
        let reason = clean_reason("a\nb\u{1b}c");
        assert_eq!(reason, "a b c");
    }

    #[test]
    fn ban_in_the_past_is_refused_and_changes_nothing() {
        let mut b = BanList::new(BanListConfig::default());
        let err = b
            .ban(t("1.2.3.4"), 5, "x", BanOrigin::Operator, 5)
            .unwrap_err();
        assert!(err.to_string().contains("positive duration"), "{err}");
        assert!(b.is_empty());
        assert!(b.take_writes().is_empty());
    }

    #[test]
    fn rebans_extend_or_replace() {
        let mut b = BanList::new(BanListConfig::default());
        b.ban(t("1.2.3.4"), 100, "first", BanOrigin::Auto, 0)
            .unwrap();
        b.ban(t("1.2.3.4"), 50, "shorter", BanOrigin::Auto, 1)
            .unwrap();
        assert_eq!(b.list()[0].until_ms, 100, "an automatic ban never shortens");
        b.ban(t("1.2.3.4"), 200, "longer", BanOrigin::Auto, 2)
            .unwrap();
        assert_eq!(
            (b.list()[0].until_ms, b.list()[0].reason.as_str()),
            (200, "longer")
        );
        b.ban(t("1.2.3.4"), 20, "op", BanOrigin::Operator, 3)
            .unwrap();
        assert_eq!(b.list()[0].until_ms, 20, "the operator may shorten");
        assert_eq!(b.list()[0].origin, BanOrigin::Operator);
        b.ban(t("1.2.3.4"), 300, "auto again", BanOrigin::Auto, 4)
            .unwrap();
        assert_eq!(
            b.list()[0].origin,
            BanOrigin::Operator,
            "an operator ban stays the operator's"
        );
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn full_list_replaces_soonest_ending_auto_ban_and_keeps_operator_bans() {
        let mut b = small(3);
        b.ban(t("1.0.0.1"), 1_000_000, "op", BanOrigin::Operator, 0)
            .unwrap();
        b.ban(t("1.0.0.2"), 500, "a", BanOrigin::Auto, 0).unwrap();
        b.ban(t("1.0.0.3"), 400, "b", BanOrigin::Auto, 0).unwrap();
        b.ban(t("1.0.0.4"), 600, "c", BanOrigin::Auto, 1).unwrap();
        assert_eq!(b.len(), 3);
        assert!(
            b.is_banned(&sa("1.0.0.3:1"), 2).is_none(),
            "soonest-ending replaced"
        );
        assert!(b.is_banned(&sa("1.0.0.4:1"), 2).is_some());
        // Many automatic bans never displace the operator's.
        for i in 0..100u8 {
            b.ban(
                BanTarget::ip([2, 0, 0, i].into()),
                10_000 + u64::from(i),
                "spam",
                BanOrigin::Auto,
                3,
            )
            .unwrap();
        }
        assert_eq!(b.len(), 3);
        assert!(b.is_banned(&sa("1.0.0.1:1"), 4).is_some());
        // Only operator bans left: an operator ban that cannot fit is refused.
        let mut b = small(1);
        b.ban(t("1.0.0.1"), 100, "op", BanOrigin::Operator, 0)
            .unwrap();
        let err = b
            .ban(t("1.0.0.2"), 100, "op2", BanOrigin::Operator, 0)
            .unwrap_err();
        assert_eq!(err, BanError::Full { max: 1 });
        assert!(err.to_string().contains("net_clearBanned"));
        assert!(
            b.ban(t("1.0.0.2"), 100, "auto", BanOrigin::Auto, 0)
                .is_err()
        );
        // Once it has ended it can be displaced.
        b.ban(t("1.0.0.2"), 300, "auto", BanOrigin::Auto, 100)
            .unwrap();
        assert_eq!(b.list()[0].target, "1.0.0.2");
        let mut zero = small(0);
        assert!(
            zero.ban(t("1.0.0.2"), 300, "x", BanOrigin::Auto, 0)
                .is_err()
        );
    }

    #[test]
    fn pending_writes_stay_bounded_under_churn() {
        let mut b = small(16);
        for i in 0..16u8 {
            b.ban(
                BanTarget::ip([1, 0, 0, i].into()),
                100,
                "x",
                BanOrigin::Auto,
                0,
            )
            .unwrap();
        }
        let mut store = BTreeMap::new();
        apply(&mut store, b.take_writes());
        // A flood of automatic bans replacing each other between two drains.
        for i in 0..5_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0200_0000 + i);
            b.ban(
                BanTarget::ip(ip.into()),
                200 + u64::from(i),
                "x",
                BanOrigin::Auto,
                1,
            )
            .unwrap();
            assert!(b.writes.pending_len() <= 2 * 16);
        }
        apply(&mut store, b.take_writes());
        let loaded = BanList::load(
            store.into_iter().collect(),
            BanListConfig { max_entries: 16 },
            2,
        );
        assert_eq!(loaded.list(), b.list());
    }

    #[test]
    fn unban_clear_expire() {
        let mut b = BanList::new(BanListConfig::default());
        b.ban(t("10.0.0.0/8"), 100, "a", BanOrigin::Operator, 0)
            .unwrap();
        b.ban(t("10.0.0.1"), 50, "b", BanOrigin::Auto, 0).unwrap();
        b.ban(t("127.0.0.1:7"), 500, "c", BanOrigin::Auto, 0)
            .unwrap();
        assert!(!b.unban(&t("10.0.0.2")), "only the exact target is lifted");
        assert_eq!(b.expire(50), 1);
        assert!(
            b.is_banned(&sa("10.0.0.1:1"), 60).is_some(),
            "still in the /8"
        );
        assert!(b.unban(&t("10.0.0.0/8")));
        assert!(b.is_banned(&sa("10.0.0.1:1"), 60).is_none());
        assert!(b.prefixes.is_empty(), "prefix index follows removals");
        b.clear();
        assert!(b.is_empty());
        assert!(b.is_banned(&sa("127.0.0.1:7"), 60).is_none());
    }

    #[test]
    fn persistence_round_trip() {
        let mut b = BanList::new(BanListConfig::default());
        b.ban(t("10.0.0.0/8"), 100, "a", BanOrigin::Operator, 1)
            .unwrap();
        b.ban(t("2001:db8::7"), 200, "b", BanOrigin::Auto, 2)
            .unwrap();
        b.ban(t("[::1]:7541"), 300, "c", BanOrigin::Auto, 3)
            .unwrap();
        b.ban(t("127.0.0.1:7541"), 400, "d", BanOrigin::Auto, 4)
            .unwrap();
        let mut store = BTreeMap::new();
        apply(&mut store, b.take_writes());
        assert!(store.keys().all(|k| k[0] == KEY_PREFIX));
        let loaded = BanList::load(
            store.clone().into_iter().collect(),
            BanListConfig::default(),
            5,
        );
        assert_eq!(loaded.list(), b.list());
        assert!(loaded.is_banned(&sa("10.9.9.9:1"), 5).is_some());
        // Changes are persisted as deletes.
        b.unban(&t("10.0.0.0/8"));
        b.expire(250);
        apply(&mut store, b.take_writes());
        assert_eq!(store.len(), 2);
        assert!(b.take_writes().is_empty(), "drained");
        b.clear();
        apply(&mut store, b.take_writes());
        assert!(store.is_empty());
    }

    #[test]
    fn load_drops_bad_expired_and_excess_entries() {
        let mut b = BanList::new(BanListConfig::default());
        b.ban(t("10.0.0.1"), 100, "auto-short", BanOrigin::Auto, 0)
            .unwrap();
        b.ban(t("10.0.0.2"), 900, "auto-long", BanOrigin::Auto, 0)
            .unwrap();
        b.ban(t("10.0.0.3"), 50, "op", BanOrigin::Operator, 0)
            .unwrap();
        b.ban(t("10.0.0.4"), 10, "ended", BanOrigin::Operator, 0)
            .unwrap();
        let mut store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        apply(&mut store, b.take_writes());
        let good_key = store.keys().next().unwrap().clone();
        let good_value = store[&good_key].clone();
        let mut bad_version = good_value.clone();
        bad_version[0] = 9;
        let mut trailing = good_value.clone();
        trailing.push(0);
        let not_truncated = encode_key(&BanTarget::Subnet("10.0.0.0/8".parse().unwrap()));
        let mut not_truncated_key = not_truncated.clone();
        not_truncated_key[4] = 7; // 10.0.7.0/8: host bits set
        let mut bad_origin = good_value.clone();
        bad_origin[17] = 5;
        let bad: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![KEY_PREFIX], good_value.clone()),
            (vec![KEY_PREFIX, 99, 1, 2], good_value.clone()),
            (b"Zjunk".to_vec(), good_value.clone()),
            (not_truncated_key.clone(), good_value.clone()),
            (vec![KEY_PREFIX, 2, 127, 0, 0, 1, 0, 0], good_value.clone()), // exact port 0
            (encode_key(&t("10.0.0.9")), bad_version),
            (encode_key(&t("10.0.0.10")), trailing),
            (encode_key(&t("10.0.0.11")), bad_origin),
            (encode_key(&t("10.0.0.12")), vec![]),
        ];
        let mut all: Vec<_> = store.clone().into_iter().collect();
        all.extend(bad.iter().cloned());
        let mut loaded = BanList::load(all, BanListConfig { max_entries: 2 }, 20);
        let kept: Vec<String> = loaded.list().into_iter().map(|v| v.target).collect();
        assert_eq!(
            kept,
            ["10.0.0.2", "10.0.0.3"],
            "operator first, then the longest"
        );
        let deletes: Vec<Vec<u8>> = loaded
            .take_writes()
            .into_iter()
            .map(|op| match op {
                StoreOp::Delete(k) => k,
                StoreOp::Put(..) => panic!("load writes only deletes"),
            })
            .collect();
        assert_eq!(
            deletes.len(),
            bad.len() + 2,
            "every bad entry, the ended and the excess one"
        );
        for (k, _) in &bad {
            assert!(deletes.contains(k));
        }
        assert!(deletes.contains(&encode_key(&t("10.0.0.4"))));
        assert!(deletes.contains(&encode_key(&t("10.0.0.1"))));
    }

    #[test]
    fn whitelist() {
        let w = Whitelist::new(
            ["10.0.0.0/8", "1.2.3.4", "::ffff:5.6.7.0/120", "1.2.3.4"]
                .map(|s| parse_net(s).unwrap()),
        )
        .unwrap();
        assert_eq!(w.nets().len(), 3);
        assert!(w.is_whitelisted(&sa("10.200.0.1:7541")));
        assert!(w.is_whitelisted(&sa("[::ffff:10.0.0.1]:1")));
        assert!(w.is_whitelisted(&sa("5.6.7.200:1")));
        assert!(w.is_whitelisted(&sa("1.2.3.4:9")));
        assert!(!w.is_whitelisted(&sa("1.2.3.5:9")));
        assert!(!Whitelist::default().is_whitelisted(&sa("1.2.3.4:9")));
        let too_many = (0..=MAX_WHITELIST as u32).map(|i| host_net(IpAddr::V4(i.into())));
        assert_eq!(
            Whitelist::new(too_many),
            Err(WhitelistError::TooMany {
                given: MAX_WHITELIST + 1
            })
        );
    }

    fn apply(store: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: Vec<StoreOp>) {
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

    fn arb_target() -> impl Strategy<Value = BanTarget> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(ip, len)| BanTarget::Subnet(IpNet::V4(
                Ipv4Net::new(ip.into(), len).unwrap()
            ))),
            (any::<[u8; 16]>(), 0u8..=128).prop_map(|(ip, len)| BanTarget::Subnet(IpNet::V6(
                Ipv6Net::new(ip.into(), len).unwrap()
            ))),
            (any::<[u8; 4]>(), 1u16..)
                .prop_map(|(ip, p)| BanTarget::Exact(SocketAddr::new(IpAddr::V4(ip.into()), p))),
            (any::<[u8; 16]>(), 1u16..)
                .prop_map(|(ip, p)| BanTarget::Exact(SocketAddr::new(IpAddr::V6(ip.into()), p))),
        ]
    }

    proptest! {
        #[test]
        fn text_and_store_round_trip(target in arb_target(), reason in ".{0,300}", until in 1u64..) {
            let c = target.canonical();
            prop_assert_eq!(c.to_string().parse::<BanTarget>().unwrap(), c);
            let mut b = BanList::new(BanListConfig::default());
            b.ban(target, until, &reason, BanOrigin::Auto, 0).unwrap();
            let loaded = BanList::load(
                b.take_writes().into_iter().map(|op| match op {
                    StoreOp::Put(k, v) => (k, v),
                    StoreOp::Delete(_) => unreachable!(),
                }).collect(),
                BanListConfig::default(),
                0,
            );
            prop_assert_eq!(loaded.list(), b.list());
        }

        #[test]
        fn lookup_agrees_with_a_linear_scan(
            targets in proptest::collection::vec(arb_target(), 0..20),
            probes in proptest::collection::vec(any::<([u8; 4], u16, bool)>(), 1..20),
        ) {
            let mut b = BanList::new(BanListConfig::default());
            for t in &targets {
                b.ban(*t, 10, "x", BanOrigin::Auto, 0).unwrap();
            }
            let mut addrs: Vec<SocketAddr> = probes
                .iter()
                .map(|(ip, port, mapped)| {
                    let v4 = std::net::Ipv4Addr::from(*ip);
                    let ip = if *mapped { IpAddr::V6(v4.to_ipv6_mapped()) } else { IpAddr::V4(v4) };
                    SocketAddr::new(ip, *port)
                })
                .collect();
            // Probe inside every target too.
            addrs.extend(targets.iter().map(|t| match t {
                BanTarget::Subnet(n) => SocketAddr::new(n.addr(), 1),
                BanTarget::Exact(a) => *a,
            }));
            for a in addrs {
                let linear = targets.iter().any(|t| t.matches(&a));
                prop_assert_eq!(b.is_banned(&a, 5).is_some(), linear, "{}", a);
                prop_assert!(b.is_banned(&a, 10).is_none());
            }
        }

        #[test]
        fn list_never_exceeds_its_bound(ops in proptest::collection::vec((any::<u8>(), 1u64..1000, any::<bool>()), 0..200)) {
            let mut b = small(16);
            for (i, (last, until, op)) in ops.into_iter().enumerate() {
                let origin = if op { BanOrigin::Operator } else { BanOrigin::Auto };
                let _ = b.ban(BanTarget::ip([9, 9, 9, last].into()), until + i as u64, "r", origin, i as u64);
                prop_assert!(b.len() <= 16);
            }
        }
    }
}
