//! Known peer addresses and bans, persisted in the store.
//!
//! Addresses are `host:port` strings. Each has a retry time that backs off
//! exponentially (1 s doubling to 60 s) after failed connections. Bans are
//! kept per IP address, except on loopback, where every local node shares
//! the IP and the ban applies to the exact `ip:port`.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `P` | address | last success, ms (u64 LE) |
//! | `Z` | ban key | ban end, ms (u64 LE) |

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// Most addresses kept.
pub const MAX_ADDRS: usize = 2048;

#[derive(Clone, Debug)]
struct Entry {
    last_success_ms: u64,
    failures: u32,
    next_try_ms: u64,
    /// Configured (`--peer`, bootnode, `net_addPeer`): never forgotten.
    pinned: bool,
}

/// The address book.
pub struct AddrBook {
    entries: HashMap<String, Entry>,
    bans: HashMap<String, u64>,
    /// Addresses the operator disconnected: not dialled or accepted until added again.
    blocked: HashSet<String>,
    tree: Option<sled::Tree>,
}

fn ban_key(addr: &SocketAddr) -> String {
    if addr.ip().is_loopback() {
        addr.to_string()
    } else {
        addr.ip().to_string()
    }
}

impl AddrBook {
    /// Loads the book from `tree` (`None`: in memory only).
    pub fn load(tree: Option<sled::Tree>, now_ms: u64) -> AddrBook {
        let mut book = AddrBook {
            entries: HashMap::new(),
            bans: HashMap::new(),
            blocked: HashSet::new(),
            tree,
        };
        if let Some(t) = &book.tree {
            for (k, v) in t.scan_prefix([b'P']).flatten() {
                if let (Ok(addr), Ok(ms)) = (
                    std::str::from_utf8(&k[1..]),
                    <[u8; 8]>::try_from(v.as_ref()),
                ) && cairn_genesis::check_host_port(addr).is_ok()
                    && book.entries.len() < MAX_ADDRS
                {
                    book.entries.insert(
                        addr.to_string(),
                        Entry {
                            last_success_ms: u64::from_le_bytes(ms),
                            failures: 0,
                            next_try_ms: 0,
                            pinned: false,
                        },
                    );
                }
            }
            for (k, v) in t.scan_prefix([b'Z']).flatten() {
                if let (Ok(key), Ok(ms)) = (
                    std::str::from_utf8(&k[1..]),
                    <[u8; 8]>::try_from(v.as_ref()),
                ) {
                    let until = u64::from_le_bytes(ms);
                    if until > now_ms {
                        book.bans.insert(key.to_string(), until);
                    }
                }
            }
        }
        book
    }

    fn persist(&self, prefix: u8, key: &str, value: Option<u64>) {
        if let Some(t) = &self.tree {
            let mut k = vec![prefix];
            k.extend_from_slice(key.as_bytes());
            let r = match value {
                Some(v) => t.insert(k, &v.to_le_bytes()).map(|_| ()),
                None => t.remove(k).map(|_| ()),
            };
            if let Err(e) = r {
                tracing::warn!("cannot persist the address book: {e}");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an address (ignoring malformed ones). `pinned` addresses are
    /// configured by the operator and never evicted.
    pub fn add(&mut self, addr: &str, pinned: bool) {
        if cairn_genesis::check_host_port(addr).is_err() {
            return;
        }
        if pinned {
            self.blocked.remove(addr);
        }
        if let Some(e) = self.entries.get_mut(addr) {
            e.pinned |= pinned;
            return;
        }
        if self.entries.len() >= MAX_ADDRS {
            // forget the unpinned address that failed most
            let victim = self
                .entries
                .iter()
                .filter(|(_, e)| !e.pinned)
                .max_by_key(|(_, e)| (e.failures, std::cmp::Reverse(e.last_success_ms)))
                .map(|(a, _)| a.clone());
            match victim {
                Some(v) => {
                    self.entries.remove(&v);
                    self.persist(b'P', &v, None);
                }
                None => return,
            }
        }
        self.entries.insert(
            addr.to_string(),
            Entry {
                last_success_ms: 0,
                failures: 0,
                next_try_ms: 0,
                pinned,
            },
        );
        self.persist(b'P', addr, Some(0));
    }

    pub fn mark_success(&mut self, addr: &str, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.failures = 0;
            e.last_success_ms = now_ms;
            e.next_try_ms = 0;
            self.persist(b'P', addr, Some(now_ms));
        }
    }

    /// A failed connection: retry after 1 s, 2 s, 4 s ... at most 60 s.
    pub fn mark_failure(&mut self, addr: &str, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.failures = e.failures.saturating_add(1);
            let backoff = 1000u64.saturating_mul(1 << e.failures.min(6)).min(60_000);
            e.next_try_ms = now_ms + backoff;
        }
    }

    /// Makes `addr` wait `ms` before the next attempt (e.g. a peer on
    /// another network).
    pub fn defer(&mut self, addr: &str, now_ms: u64, ms: u64) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.next_try_ms = now_ms + ms;
        }
    }

    /// Addresses worth dialling now, most recently successful first.
    pub fn candidates(&self, now_ms: u64, exclude: &HashSet<String>) -> Vec<String> {
        let mut v: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(a, e)| {
                e.next_try_ms <= now_ms
                    && !exclude.contains(*a)
                    && !self.blocked.contains(*a)
                    && !self.is_banned_str(a, now_ms)
            })
            .collect();
        v.sort_by_key(|(_, e)| {
            (
                std::cmp::Reverse(e.pinned),
                std::cmp::Reverse(e.last_success_ms),
            )
        });
        v.into_iter().map(|(a, _)| a.clone()).collect()
    }

    /// Up to `n` addresses to share with a peer.
    pub fn sample(&self, n: usize) -> Vec<String> {
        let mut v: Vec<(&String, &Entry)> = self.entries.iter().collect();
        v.sort_by_key(|(_, e)| std::cmp::Reverse(e.last_success_ms));
        v.into_iter().take(n).map(|(a, _)| a.clone()).collect()
    }

    pub fn ban(&mut self, addr: &SocketAddr, until_ms: u64) {
        let key = ban_key(addr);
        self.bans.insert(key.clone(), until_ms);
        self.persist(b'Z', &key, Some(until_ms));
    }

    pub fn is_banned(&self, addr: &SocketAddr, now_ms: u64) -> bool {
        self.bans
            .get(&ban_key(addr))
            .is_some_and(|until| *until > now_ms)
    }

    fn is_banned_str(&self, addr: &str, now_ms: u64) -> bool {
        addr.parse::<SocketAddr>()
            .is_ok_and(|a| self.is_banned(&a, now_ms))
            || addr
                .rsplit_once(':')
                .and_then(|(h, _)| h.parse::<IpAddr>().ok())
                .is_some_and(|ip| {
                    !ip.is_loopback() && self.bans.get(&ip.to_string()).is_some_and(|u| *u > now_ms)
                })
    }

    /// Drops expired bans.
    pub fn expire_bans(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.bans.remove(&k);
            self.persist(b'Z', &k, None);
        }
    }

    pub fn block(&mut self, addr: &str) {
        self.blocked.insert(addr.to_string());
    }

    pub fn is_blocked(&self, addr: &str) -> bool {
        self.blocked.contains(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bans_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut book = AddrBook::load(Some(tree.clone()), 0);
        book.add("127.0.0.1:9000", true);
        book.add("10.0.0.1:9000", false);
        book.add("not an address", false);
        assert_eq!(book.len(), 2);
        book.mark_failure("127.0.0.1:9000", 1000);
        assert!(
            !book
                .candidates(1500, &HashSet::new())
                .contains(&"127.0.0.1:9000".to_string())
        );
        assert!(
            book.candidates(3001, &HashSet::new())
                .contains(&"127.0.0.1:9000".to_string())
        );
        book.ban(&"10.0.0.1:1234".parse().unwrap(), 10_000);
        assert!(
            book.is_banned(&"10.0.0.1:5555".parse().unwrap(), 5000),
            "bans are per IP"
        );
        assert!(
            !book
                .candidates(5000, &HashSet::new())
                .contains(&"10.0.0.1:9000".to_string())
        );
        book.ban(&"127.0.0.1:7".parse().unwrap(), 10_000);
        assert!(
            !book.is_banned(&"127.0.0.1:8".parse().unwrap(), 5000),
            "loopback bans are per port"
        );
        drop(book);
        let book = AddrBook::load(Some(tree), 5000);
        assert_eq!(book.len(), 2);
        assert!(
            book.is_banned(&"10.0.0.1:1".parse().unwrap(), 5000),
            "bans persist"
        );
        assert!(
            !book.is_banned(&"10.0.0.1:1".parse().unwrap(), 10_001),
            "and expire"
        );
    }
}
