//! Choosing an inbound peer to evict when every inbound slot is taken.
//!
//! When a new inbound connection arrives and the inbound slots are full, the
//! node may drop one existing inbound peer to make room, so that an attacker
//! who fills the slots first cannot lock everyone else out. The choice must
//! not let that attacker push out the peers that matter, so (as Bitcoin
//! Core's `SelectNodeToEvict` does) each step below protects peers by a
//! property an attacker cannot cheaply fake, and only what is left may be
//! evicted:
//!
//! 1. peers marked [`EvictionCandidate::protected`] (whitelisted or local to
//!    the operator) are never candidates;
//! 2. [`PROTECT_BY_GROUP`] (4) peers from distinct net groups, the groups
//!    ranked by a keyed hash ([`EvictionKey`]) so that an attacker cannot
//!    tell which groups to come from; in each such group its longest
//!    connected peer;
//! 3. the [`PROTECT_BY_PING`] (8) peers with the lowest minimum ping (latency
//!    needs physical closeness; peers never measured are not protected here);
//! 4. the [`PROTECT_BY_TX`] (4) peers that most recently sent us a new
//!    transfer, and 5. the [`PROTECT_BY_BLOCK`] (4) that most recently sent
//!    us a new block we accepted (useful work; a peer that never did is not
//!    protected by these steps);
//! 6. half of the rest (rounded down): those connected longest.
//!
//! If nothing is left there is no eviction (the new connection is refused
//! instead). Otherwise the victim is the youngest connection of the net
//! group with the most remaining connections (ties: the group whose youngest
//! member is youngest), so an attacker opening many connections from one
//! group evicts its own.
//!
//! # Correctness
//! The result depends only on the candidates' contents and the key, never on
//! their order in the slice: every sort ends on the peer id. The function
//! allocates in proportion to the number of candidates (bounded by the
//! inbound slots) and cannot panic.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::IpAddr;

use cairn_consensus::hash::tagged;
use rand::Rng;

use crate::addr::NetGroup;

/// Peers protected by distinct net group.
pub const PROTECT_BY_GROUP: usize = 4;
/// Peers protected by lowest minimum ping.
pub const PROTECT_BY_PING: usize = 8;
/// Peers protected for recent new transfers.
pub const PROTECT_BY_TX: usize = 4;
/// Peers protected for recent new blocks.
pub const PROTECT_BY_BLOCK: usize = 4;

/// An inbound peer that might be evicted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionCandidate {
    /// The caller's peer id, returned when this peer is chosen.
    pub id: u64,
    /// `net_group` of the peer's remote address.
    pub group: NetGroup,
    /// When the connection was made.
    pub connected_ms: u64,
    /// The lowest ping measured, if any.
    pub min_ping_ms: Option<u64>,
    /// Last time it sent us a new block we accepted.
    pub last_block_ms: Option<u64>,
    /// Last time it sent us a new transfer we accepted.
    pub last_tx_ms: Option<u64>,
    /// Whitelisted or local to the operator: never evicted.
    pub protected: bool,
}

/// The secret that ranks net groups for protection. Create one per node at
/// start-up ([`EvictionKey::random`]) and keep it: the same groups then stay
/// protected across evictions, and outsiders cannot compute which ones.
#[derive(Clone)]
pub struct EvictionKey([u8; 32]);

impl std::fmt::Debug for EvictionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvictionKey(..)")
    }
}

impl EvictionKey {
    /// A fresh secret key.
    pub fn random(rng: &mut impl Rng) -> EvictionKey {
        EvictionKey(rng.r#gen())
    }

    /// A key derived from `seed`, for tests and replays. Not secret.
    pub fn from_seed(seed: u64) -> EvictionKey {
        EvictionKey(tagged(
            "cairn/p2p/eviction-key-seed",
            &[&seed.to_le_bytes()],
        ))
    }

    /// The keyed rank of a net group.
    fn rank(&self, group: &NetGroup) -> [u8; 32] {
        tagged("cairn/p2p/eviction-group", &[&self.0, &group_bytes(group)])
    }
}

/// An unambiguous encoding of a net group.
fn group_bytes(group: &NetGroup) -> Vec<u8> {
    fn ip(out: &mut Vec<u8>, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(6);
                out.extend_from_slice(&a.octets());
            }
        }
    }
    let mut out = Vec::with_capacity(20);
    match group {
        NetGroup::V4Slash16(b) => {
            out.push(0);
            out.extend_from_slice(b);
        }
        NetGroup::V6Slash32(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
        NetGroup::Host(a) => {
            out.push(2);
            ip(&mut out, a);
        }
        NetGroup::Local(a) => {
            out.push(3);
            ip(&mut out, &a.ip());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
    out
}

/// Removes from `remaining` up to `k` of the `eligible` candidates with the
/// smallest `key` (keys end on the id, so the choice is order independent).
fn protect<K: Ord>(
    remaining: &mut Vec<&EvictionCandidate>,
    k: usize,
    eligible: impl Fn(&EvictionCandidate) -> bool,
    key: impl Fn(&EvictionCandidate) -> K,
) {
    let mut order: Vec<usize> = (0..remaining.len())
        .filter(|&i| eligible(remaining[i]))
        .collect();
    order.sort_by_key(|&i| key(remaining[i]));
    let mut drop = vec![false; remaining.len()];
    for &i in order.iter().take(k) {
        drop[i] = true;
    }
    let mut i = 0;
    remaining.retain(|_| {
        let keep = !drop[i];
        i += 1;
        keep
    });
}

/// The candidates left after every protection step, in no particular order.
fn unprotected<'a>(
    candidates: &'a [EvictionCandidate],
    key: &EvictionKey,
) -> Vec<&'a EvictionCandidate> {
    let mut remaining: Vec<&EvictionCandidate> =
        candidates.iter().filter(|c| !c.protected).collect();

    // Distinct groups, ranked by the keyed hash; the longest connected peer
    // of each of the first PROTECT_BY_GROUP groups is kept.
    let mut oldest: BTreeMap<NetGroup, (u64, u64)> = BTreeMap::new();
    for c in &remaining {
        let e = oldest.entry(c.group).or_insert((c.connected_ms, c.id));
        *e = (*e).min((c.connected_ms, c.id));
    }
    let mut groups: Vec<([u8; 32], (u64, u64))> =
        oldest.iter().map(|(g, m)| (key.rank(g), *m)).collect();
    groups.sort();
    groups.truncate(PROTECT_BY_GROUP);
    let chosen: Vec<(u64, u64)> = groups.into_iter().map(|(_, m)| m).collect();
    protect(
        &mut remaining,
        PROTECT_BY_GROUP,
        |c| chosen.contains(&(c.connected_ms, c.id)),
        |c| (c.connected_ms, c.id),
    );

    protect(
        &mut remaining,
        PROTECT_BY_PING,
        |c| c.min_ping_ms.is_some(),
        |c| (c.min_ping_ms, c.connected_ms, c.id),
    );
    protect(
        &mut remaining,
        PROTECT_BY_TX,
        |c| c.last_tx_ms.is_some(),
        |c| (Reverse(c.last_tx_ms), c.connected_ms, c.id),
    );
    protect(
        &mut remaining,
        PROTECT_BY_BLOCK,
        |c| c.last_block_ms.is_some(),
        |c| (Reverse(c.last_block_ms), c.connected_ms, c.id),
    );
    let half = remaining.len() / 2;
    protect(&mut remaining, half, |_| true, |c| (c.connected_ms, c.id));
    remaining
}

/// The id of the inbound peer to evict, or `None` when every peer is
/// protected (see the module documentation for the rules).
pub fn select_victim(candidates: &[EvictionCandidate], key: &EvictionKey) -> Option<u64> {
    youngest_of_largest_group(&unprotected(candidates, key))
}

/// The youngest peer of the group with the most peers (ties: the group with
/// the youngest member; "youngest" compares `(connected_ms, id)`).
fn youngest_of_largest_group(remaining: &[&EvictionCandidate]) -> Option<u64> {
    // Per group: (count, youngest member as (connected_ms, id)).
    let mut groups: BTreeMap<NetGroup, (usize, (u64, u64))> = BTreeMap::new();
    for c in remaining {
        let e = groups.entry(c.group).or_insert((0, (c.connected_ms, c.id)));
        e.0 += 1;
        e.1 = e.1.max((c.connected_ms, c.id));
    }
    groups
        .into_values()
        .max_by_key(|&(count, youngest)| (count, youngest))
        .map(|(_, (_, id))| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn g(a: u8, b: u8) -> NetGroup {
        NetGroup::V4Slash16([a, b])
    }

    fn peer(id: u64, group: NetGroup, connected_ms: u64) -> EvictionCandidate {
        EvictionCandidate {
            id,
            group,
            connected_ms,
            min_ping_ms: None,
            last_block_ms: None,
            last_tx_ms: None,
            protected: false,
        }
    }

    /// 8 honest peers with good latency, 4 that recently relayed blocks and
    /// 4 transfers, each in its own group, connected early.
    fn honest() -> Vec<EvictionCandidate> {
        let mut v = Vec::new();
        for i in 0..16u64 {
            let mut p = peer(i, g(10 + i as u8, 0), 1_000 + i);
            match i {
                0..8 => p.min_ping_ms = Some(20 + i),
                8..12 => p.last_block_ms = Some(50_000 + i),
                _ => p.last_tx_ms = Some(50_000 + i),
            }
            v.push(p);
        }
        v
    }

    #[test]
    fn nothing_to_evict() {
        let key = EvictionKey::from_seed(1);
        assert_eq!(select_victim(&[], &key), None);
        let all_protected: Vec<_> = (0..100)
            .map(|i| EvictionCandidate {
                protected: true,
                ..peer(i, g(1, 1), i)
            })
            .collect();
        assert_eq!(select_victim(&all_protected, &key), None);
        // 12 peers with a measured ping: 4 kept by group, the other 8 by
        // ping, none left.
        for seed in 0..20 {
            let key = EvictionKey::from_seed(seed);
            let v: Vec<_> = (0..12u64)
                .map(|i| EvictionCandidate {
                    min_ping_ms: Some(100 + i),
                    ..peer(i, g(i as u8, 0), i)
                })
                .collect();
            assert_eq!(select_victim(&v, &key), None);
            // One more peer leaves exactly one unprotected, and it is evicted
            // (the newcomer, or a ping peer when the newcomer's group was
            // among the four protected by group).
            let mut more = v.clone();
            more.push(peer(99, g(99, 0), 5_000));
            let rest = unprotected(&more, &key);
            assert_eq!(rest.len(), 1);
            assert_eq!(select_victim(&more, &key), Some(rest[0].id));
        }
    }

    #[test]
    fn attacker_from_one_group_evicts_only_itself() {
        for seed in 0..50 {
            let key = EvictionKey::from_seed(seed);
            let mut peers = honest();
            // Attacker connections: one /16, connected later, some with
            // recent-looking claims it cannot back (no accepted blocks).
            let mut next_id = 100;
            let mut t = 10_000;
            for _ in 0..40 {
                peers.push(peer(next_id, g(66, 6), t));
                next_id += 1;
                t += 1;
            }
            // Repeated rounds: evict, the attacker reconnects.
            for _ in 0..100 {
                let victim = select_victim(&peers, &key).expect("attackers remain evictable");
                assert!(victim >= 100, "seed {seed}: evicted honest peer {victim}");
                peers.retain(|p| p.id != victim);
                peers.push(peer(next_id, g(66, 6), t));
                next_id += 1;
                t += 1;
            }
        }
    }

    #[test]
    fn attacker_spread_over_groups_cannot_evict_latency_or_block_peers() {
        for seed in 0..50u64 {
            let key = EvictionKey::from_seed(seed);
            let mut rng = StdRng::seed_from_u64(seed);
            let mut peers = honest();
            // The attacker also has long-lived connections and many groups,
            // but worse latency than the honest peers.
            for i in 0..60u64 {
                let mut p = peer(100 + i, g(200, (i % 7) as u8), rng.gen_range(0..5_000));
                p.min_ping_ms = Some(500 + i);
                peers.push(p);
            }
            peers.shuffle(&mut rng);
            for _ in 0..50 {
                let Some(victim) = select_victim(&peers, &key) else {
                    break;
                };
                assert!(victim >= 100, "seed {seed}: evicted honest peer {victim}");
                peers.retain(|p| p.id != victim);
            }
            assert!((0..16).all(|id| peers.iter().any(|p| p.id == id)));
        }
    }

    #[test]
    fn victim_is_youngest_of_largest_group() {
        let pick =
            |v: &[EvictionCandidate]| youngest_of_largest_group(&v.iter().collect::<Vec<_>>());
        // The largest group loses its youngest member, even when a smaller
        // group has a younger one.
        let v = [
            peer(1, g(1, 1), 100),
            peer(2, g(1, 1), 300),
            peer(3, g(1, 1), 200),
            peer(4, g(2, 2), 900),
        ];
        assert_eq!(pick(&v), Some(2));
        // Equal sizes: the group whose youngest member is youngest.
        let v = [
            peer(1, g(1, 1), 5_000),
            peer(2, g(1, 1), 9_000),
            peer(3, g(2, 2), 6_000),
            peer(4, g(2, 2), 9_500),
            peer(5, g(3, 3), 9_900),
        ];
        assert_eq!(pick(&v), Some(4));
        // Equal times: the id decides, whatever the order.
        let mut v = vec![peer(7, g(1, 1), 10), peer(8, g(2, 2), 10)];
        assert_eq!(pick(&v), Some(8));
        v.reverse();
        assert_eq!(pick(&v), Some(8));
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn victim_follows_the_rule_after_protection() {
        let key = EvictionKey::from_seed(7);
        let mut peers = honest();
        for (i, (grp, t)) in [
            (g(1, 1), 5_000),
            (g(1, 1), 9_000),
            (g(2, 2), 6_000),
            (g(2, 2), 9_500),
        ]
        .into_iter()
        .enumerate()
        {
            peers.push(peer(200 + i as u64, grp, t));
        }
        for i in 0..8u64 {
            peers.push(peer(300 + i, g(3, i as u8), 100 + i));
        }
        let rest = unprotected(&peers, &key);
        assert!(
            rest.iter().all(|c| c.id >= 200),
            "honest peers are protected"
        );
        // Half of what the four special steps left was kept by age: at
        // most 6 of the 12 others remain.
        assert!(rest.len() <= 6, "{}", rest.len());
        let victim = select_victim(&peers, &key).unwrap();
        assert!(rest.iter().any(|c| c.id == victim));
        assert!(victim >= 200, "{victim}");
    }

    #[test]
    fn deterministic_for_a_key_and_independent_of_order() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut peers: Vec<_> = (0..80u64)
            .map(|i| {
                let mut p = peer(i, g(rng.gen_range(0..12), 0), rng.gen_range(0..10_000));
                p.min_ping_ms = rng.gen_bool(0.5).then(|| rng.gen_range(1..1000));
                p.last_block_ms = rng.gen_bool(0.2).then(|| rng.gen_range(1..1000));
                p
            })
            .collect();
        let key = EvictionKey::from_seed(42);
        let first = select_victim(&peers, &key);
        assert!(first.is_some());
        for _ in 0..20 {
            peers.shuffle(&mut rng);
            assert_eq!(select_victim(&peers, &key), first);
            assert_eq!(select_victim(&peers, &EvictionKey::from_seed(42)), first);
        }
    }

    #[test]
    fn group_protection_depends_on_the_key() {
        // 30 single-peer groups, identical otherwise: which 4 are protected
        // by group varies with the key.
        let peers: Vec<_> = (0..30u64).map(|i| peer(i, g(i as u8, 0), 1_000)).collect();
        let mut protected_sets = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let key = EvictionKey::from_seed(seed);
            let rest: Vec<u64> = unprotected(&peers, &key).iter().map(|c| c.id).collect();
            // 4 by group, then half of the remaining 26 by connection time.
            assert_eq!(rest.len(), 13);
            let mut by_group: Vec<u64> = (0..30).filter(|i| !rest.contains(i)).collect();
            by_group.sort();
            protected_sets.insert(by_group);
        }
        assert!(
            protected_sets.len() > 1,
            "the key changes which groups are protected"
        );
        let mut rng = StdRng::seed_from_u64(9);
        let a = EvictionKey::random(&mut rng);
        let b = EvictionKey::random(&mut rng);
        assert_ne!(a.rank(&g(1, 2)), b.rank(&g(1, 2)));
        assert_eq!(
            format!("{a:?}"),
            "EvictionKey(..)",
            "the key is not printed"
        );
    }

    #[test]
    fn group_protection_is_one_peer_per_distinct_group() {
        // Two groups only: at most two peers protected by group, not four
        // from the same group.
        let peers: Vec<_> = (0..10u64)
            .map(|i| peer(i, if i < 5 { g(1, 0) } else { g(2, 0) }, 100 * i))
            .collect();
        let rest = unprotected(&peers, &EvictionKey::from_seed(0));
        // 10 - 2 by group = 8, half protected by age: 4 left.
        assert_eq!(rest.len(), 4);
        // The oldest of each group (0 and 5) were protected by group.
        assert!(rest.iter().all(|c| c.id != 0 && c.id != 5));
    }

    #[test]
    fn group_encoding_is_unambiguous() {
        let groups = [
            NetGroup::V4Slash16([1, 2]),
            NetGroup::V6Slash32([1, 2, 0, 0]),
            NetGroup::Host("1.2.0.0".parse().unwrap()),
            NetGroup::Host("::102:0".parse().unwrap()),
            NetGroup::Local("127.0.0.1:1".parse().unwrap()),
            NetGroup::Local("127.0.0.1:256".parse().unwrap()),
        ];
        let enc: std::collections::BTreeSet<_> = groups.iter().map(group_bytes).collect();
        assert_eq!(enc.len(), groups.len());
    }

    fn arb_candidate() -> impl Strategy<Value = EvictionCandidate> {
        (
            any::<u64>(),
            0u8..6,
            0u64..1000,
            proptest::option::of(0u64..500),
            proptest::option::of(0u64..1000),
            proptest::option::of(0u64..1000),
            any::<bool>(),
        )
            .prop_map(|(id, grp, connected_ms, ping, block, tx, protected)| {
                EvictionCandidate {
                    id,
                    group: g(grp, 0),
                    connected_ms,
                    min_ping_ms: ping,
                    last_block_ms: block,
                    last_tx_ms: tx,
                    protected,
                }
            })
    }

    proptest! {
        #[test]
        fn protected_peers_are_never_chosen(
            mut peers in proptest::collection::vec(arb_candidate(), 0..120),
            seed in any::<u64>(),
        ) {
            // Unique ids, as the caller guarantees.
            for (i, p) in peers.iter_mut().enumerate() {
                p.id = i as u64;
            }
            let key = EvictionKey::from_seed(seed);
            let unprotected_count = peers.iter().filter(|p| !p.protected).count();
            match select_victim(&peers, &key) {
                Some(id) => {
                    let v = peers.iter().find(|p| p.id == id).unwrap();
                    prop_assert!(!v.protected);
                    prop_assert!(unprotected(&peers, &key).iter().any(|c| c.id == id));
                }
                None => {
                    // No eviction only when too few unprotected peers are left
                    // for the protection steps to leave any.
                    prop_assert!(unprotected_count <= PROTECT_BY_GROUP + PROTECT_BY_PING + PROTECT_BY_TX + PROTECT_BY_BLOCK);
                }
            }
            let mut reversed = peers.clone();
            reversed.reverse();
            prop_assert_eq!(select_victim(&reversed, &key), select_victim(&peers, &key));
        }
    }
}
