use std::collections::BTreeMap;

use cairn_consensus::testkit::{self, ChainBuilder, address, mine};
use cairn_consensus::{Amount, COIN, StateRoot};
use cairn_genesis::testkit::network;
use proptest::prelude::*;

use super::*;
use crate::store::MemStore;
use crate::verify::verify_signatures;

fn builder() -> ChainBuilder {
    ChainBuilder::new(testkit::params(), 6, Amount(1_000 * COIN))
}

const NOW: u64 = u64::MAX / 2;

fn open(b: &ChainBuilder) -> Chain<MemStore> {
    open_with(b, MemStore::new())
}

fn open_with<S: ChainStore>(b: &ChainBuilder, store: S) -> Chain<S> {
    Chain::open(
        store,
        &network(b),
        verify_signatures,
        ChainConfig::default(),
    )
    .expect("opens")
    .0
}

/// The store's accounts as a map.
fn accounts<S: ChainStore>(c: &Chain<S>) -> BTreeMap<Address, Account> {
    c.store().all_accounts().unwrap().into_iter().collect()
}

fn pay(b: &ChainBuilder, from: u64, to: u64, coins: u64) -> SignedTransfer {
    b.transfer(from, address(to), Amount(coins * COIN), Amount(10), 0)
}

#[test]
fn fresh_store_starts_at_genesis() {
    let b = builder();
    let c = open(&b);
    assert_eq!(c.height(), Height(0));
    assert_eq!(c.tip_hash(), b.genesis().hash());
    assert_eq!(accounts(&c), b.accounts);
}

#[test]
fn connects_a_chain_and_tracks_balances() {
    let mut b = builder();
    let mut c = open(&b);
    for i in 0..5 {
        let blk = b.extend(vec![pay(&b, i, i + 1, 3)], address(9));
        let p = c.process_block(blk.clone(), NOW).unwrap();
        assert_eq!(p.outcome, Outcome::Connected);
        assert_eq!(p.tip_change.connected, vec![blk.hash()]);
    }
    assert_eq!(c.height(), Height(5));
    assert_eq!(accounts(&c), b.accounts);
    let again = c.process_block(b.tip().clone(), NOW).unwrap();
    assert_eq!(again.outcome, Outcome::Duplicate);
}

#[test]
fn accepts_blocks_in_reverse_order() {
    let mut b = builder();
    let blocks: Vec<Block> = (0..6)
        .map(|i| b.extend(vec![pay(&b, i % 3, 4, 1)], address(8)))
        .collect();
    let mut c = open(&b);
    for blk in blocks.iter().skip(1).rev() {
        let p = c.process_block(blk.clone(), NOW).unwrap();
        assert!(matches!(p.outcome, Outcome::Orphan { .. }));
    }
    assert_eq!(c.orphan_count(), 5);
    let p = c.process_block(blocks[0].clone(), NOW).unwrap();
    assert_eq!(p.outcome, Outcome::Connected);
    assert_eq!(p.tip_change.connected.len(), 6);
    assert_eq!(c.tip_hash(), b.tip_hash());
    assert_eq!(c.orphan_count(), 0);
    assert_eq!(accounts(&c), b.accounts);
}

#[test]
fn reorganises_to_the_branch_with_more_work_and_back_is_consistent() {
    let mut a = builder();
    a.extend(vec![pay(&a, 0, 1, 5)], address(7));
    let mut bb = a.clone();
    for _ in 0..2 {
        a.extend(vec![pay(&a, 1, 2, 1)], address(7));
    }
    for _ in 0..3 {
        bb.extend(vec![pay(&bb, 2, 3, 2)], address(8));
    }
    let mut c = open(&a);
    for blk in &a.blocks[1..] {
        c.process_block(blk.clone(), NOW).unwrap();
    }
    assert_eq!(c.tip_hash(), a.tip_hash());
    // first two blocks of the other branch: less or equal work, side branch
    for blk in &bb.blocks[2..4] {
        let p = c.process_block(blk.clone(), NOW).unwrap();
        assert_eq!(
            p.outcome,
            Outcome::SideBranch,
            "equal work keeps the first seen"
        );
        assert!(p.tip_change.is_empty());
    }
    let p = c.process_block(bb.blocks[4].clone(), NOW).unwrap();
    assert_eq!(p.outcome, Outcome::Connected);
    assert_eq!(
        p.tip_change.disconnected,
        vec![a.blocks[3].hash(), a.blocks[2].hash()]
    );
    assert_eq!(
        p.tip_change.connected,
        bb.blocks[2..5].iter().map(|b| b.hash()).collect::<Vec<_>>()
    );
    assert_eq!(accounts(&c), bb.accounts);
    // the first branch grows past: back again
    for _ in 0..2 {
        let blk = a.extend(vec![], address(7));
        c.process_block(blk, NOW).unwrap();
    }
    assert_eq!(c.tip_hash(), a.tip_hash());
    assert_eq!(accounts(&c), a.accounts);
}

#[test]
fn invalid_block_changes_nothing_and_is_remembered() {
    let mut b = builder();
    b.extend(vec![], address(1));
    let mut c = open(&b);
    c.process_block(b.tip().clone(), NOW).unwrap();
    let before = accounts(&c);
    let tip = c.tip_hash();
    let mut bad = b.build(vec![pay(&b, 0, 1, 1)], address(2));
    bad.header.state_root = StateRoot([1; 32]);
    mine(&mut bad.header);
    let err = c.process_block(bad.clone(), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Invalid {
                error: BlockError::StateRootMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(c.tip_hash(), tip);
    assert_eq!(accounts(&c), before);
    assert!(matches!(
        c.process_block(bad.clone(), NOW),
        Err(ChainError::Invalid { .. } | ChainError::KnownInvalid { .. })
    ));
    // a child of the invalid block is refused too
    let mut child = b.clone();
    child.push(bad.clone());
    let kid = child.build(vec![], address(3));
    assert!(matches!(
        c.process_block(kid, NOW),
        Err(ChainError::InvalidAncestor { .. })
    ));
}

#[test]
fn a_body_that_does_not_match_its_header_does_not_condemn_the_hash() {
    let mut b = builder();
    let good = b.build(vec![pay(&b, 0, 1, 1)], address(2));
    let mut c = open(&b);
    let mut mangled = good.clone();
    mangled.transfers.clear();
    assert!(matches!(
        c.process_block(mangled, NOW),
        Err(ChainError::Invalid {
            error: BlockError::TxRootMismatch { .. },
            ..
        })
    ));
    let p = c.process_block(good.clone(), NOW).unwrap();
    assert_eq!(p.outcome, Outcome::Connected);
    b.push(good);
    assert_eq!(accounts(&c), b.accounts);
}

#[test]
fn a_heavier_branch_with_an_invalid_block_is_abandoned() {
    let mut a = builder();
    let mut c = open(&a);
    let mut bb = a.clone();
    for _ in 0..2 {
        let blk = a.extend(vec![pay(&a, 0, 1, 1)], address(7));
        c.process_block(blk, NOW).unwrap();
    }
    let good_state = accounts(&c);
    // branch: valid, invalid (state), valid child of the invalid one
    bb.extend(vec![], address(8));
    let mut bad = bb.build(vec![], address(8));
    bad.header.state_root = StateRoot([3; 32]);
    mine(&mut bad.header);
    let mut after_bad = bb.clone();
    after_bad.push(bad.clone());
    let kid = after_bad.build(vec![], address(8));
    c.process_block(bb.blocks[1].clone(), NOW).unwrap();
    c.process_block(kid.clone(), NOW).unwrap(); // orphan until `bad` arrives
    let err = c.process_block(bad, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Invalid {
                error: BlockError::StateRootMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(c.tip_hash(), a.tip_hash());
    assert_eq!(accounts(&c), good_state);
}

#[test]
fn orphan_pool_is_bounded() {
    let mut b = builder();
    let blocks: Vec<Block> = (0..30).map(|_| b.extend(vec![], address(8))).collect();
    let config = ChainConfig {
        max_orphans: 10,
        ..ChainConfig::default()
    };
    let mut c = Chain::open(MemStore::new(), &network(&b), verify_signatures, config)
        .unwrap()
        .0;
    for blk in blocks.iter().skip(1) {
        c.process_block(blk.clone(), NOW).unwrap();
    }
    assert_eq!(c.orphan_count(), 10);
}

#[test]
fn a_block_from_the_future_is_refused_but_not_condemned() {
    let mut b = builder();
    let blk = b.extend(vec![], address(1));
    let mut c = open(&b);
    let now = blk.header.time_ms - c.params().max_future_drift_ms - 1;
    let err = c.process_block(blk.clone(), now).unwrap_err();
    assert!(matches!(
        err,
        ChainError::Invalid {
            error: BlockError::TimeTooFarInFuture { .. },
            ..
        }
    ));
    assert_eq!(
        c.process_block(blk, NOW).unwrap().outcome,
        Outcome::Connected
    );
}

#[test]
fn reopening_keeps_everything_and_detects_a_wrong_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = builder();
    {
        let mut c = open_with(
            &b,
            crate::store::SledStore::open(dir.path(), 1 << 20).unwrap(),
        );
        for i in 0..4 {
            let blk = b.extend(vec![pay(&b, i, 5, 2)], address(9));
            c.process_block(blk, NOW).unwrap();
        }
    }
    {
        let store = crate::store::SledStore::open(dir.path(), 1 << 20).unwrap();
        let (c, report) = Chain::open(
            store,
            &network(&b),
            verify_signatures,
            ChainConfig::default(),
        )
        .unwrap();
        assert!(!report.created && report.rebuilt.is_none());
        assert_eq!(c.tip_hash(), b.tip_hash());
        assert_eq!(accounts(&c), b.accounts);
        // corrupt one balance behind the chain's back (in the table, after a checkpoint)
        c.store().checkpoint().unwrap();
        let mut batch = Batch::default();
        batch.set_account(
            address(5),
            Account {
                balance: Amount(1),
                nonce: 0,
            },
        );
        c.store().commit(batch).unwrap();
        c.store().flush().unwrap();
    }
    let store = crate::store::SledStore::open(dir.path(), 1 << 20).unwrap();
    let (c, report) = Chain::open(
        store,
        &network(&b),
        verify_signatures,
        ChainConfig::default(),
    )
    .unwrap();
    assert!(
        report.rebuilt.as_deref().unwrap().contains("commit to"),
        "{report:?}"
    );
    assert_eq!(report.blocks_replayed, 4);
    assert_eq!(c.tip_hash(), b.tip_hash());
    assert_eq!(accounts(&c), b.accounts);
}

#[test]
fn another_networks_datadir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder();
    drop(open_with(
        &b,
        crate::store::SledStore::open(dir.path(), 1 << 20).unwrap(),
    ));
    let mut other = testkit::params();
    other.chain_id += 1;
    let ob = ChainBuilder::new(other, 1, Amount(1));
    let store = crate::store::SledStore::open(dir.path(), 1 << 20).unwrap();
    let err = Chain::open(
        store,
        &network(&ob),
        verify_signatures,
        ChainConfig::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("genesis"), "{err}");
}

/// One step of a random block tree: extend the block at `parent_pick`
/// (an index into the blocks made so far) with `txs` transfers.
fn arb_tree() -> impl Strategy<Value = (Vec<(prop::sample::Index, u8, u8)>, prop::sample::Index)> {
    (
        proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, 0u8..20), 1..24),
        any::<prop::sample::Index>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Blocks of a random tree, fed in a random order: the chain ends on a
    /// tip with the most work, and its state is exactly the state of
    /// applying that chain from genesis.
    #[test]
    fn random_reorgs_end_in_the_state_of_the_winning_chain((steps, shuffle_seed) in arb_tree()) {
        let root = builder();
        let mut builders = vec![root.clone()];
        let mut blocks = Vec::new();
        for (pick, ntx, miner) in steps {
            let parent = builders[pick.index(builders.len())].clone();
            let txs: Vec<SignedTransfer> = (0..ntx as u64)
                .map(|i| parent.transfer(i, address(u64::from(miner) + 10), Amount(COIN), Amount(5), 0))
                .collect();
            let mut next = parent.clone();
            let blk = next.extend(txs, address(u64::from(miner) + 100));
            blocks.push(blk);
            builders.push(next);
        }
        // a deterministic shuffle from the seed
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        let mut s = shuffle_seed.index(1 << 30) as u64 | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut c = open(&root);
        for i in order {
            c.process_block(blocks[i].clone(), NOW).unwrap();
        }
        prop_assert_eq!(c.orphan_count(), 0);
        let best_work = c.index.values().map(|e| e.work).max().unwrap();
        prop_assert_eq!(c.tip().work, best_work);
        let winner = builders.iter().find(|b| b.tip_hash() == c.tip_hash()).unwrap();
        prop_assert_eq!(&accounts(&c), &winner.accounts);
        // and a fresh node given only the winning chain agrees
        let mut fresh = open(&root);
        for blk in &winner.blocks[1..] {
            fresh.process_block(blk.clone(), NOW).unwrap();
        }
        prop_assert_eq!(accounts(&fresh), accounts(&c));
    }
}

/// A block large enough to be checked on all cores, on a sled store whose
/// accounts are partly in memory (changed by the block before, not yet
/// folded into the account table) and partly in the table: it connects to
/// exactly the state the one-at-a-time builder computes, and the store's
/// batch read answers as its single read does.
#[test]
fn a_large_block_on_a_sled_store_connects_as_one_at_a_time() {
    let n = 300u64;
    let mut b = ChainBuilder::new(testkit::params(), n, Amount(100 * COIN));
    let dir = tempfile::tempdir().unwrap();
    let mut c = open_with(
        &b,
        crate::store::SledStore::open(dir.path(), 16 << 20).unwrap(),
    );
    // half the senders pay new accounts: those changes stay in the overlay
    let first = (0..n / 2)
        .map(|i| b.transfer(i, address(n + i), Amount(COIN), Amount(1), 0))
        .collect();
    let blk = b.extend(first, address(3 * n));
    c.process_block(blk, NOW).unwrap();
    assert!(
        c.store().pending_accounts() > 0,
        "the overlay holds changes"
    );
    // every sender pays, old and new recipients alike, one pays itself,
    // one twice, and the miner is a sender too
    let mut second: Vec<SignedTransfer> = (0..n)
        .map(|i| {
            let to = if i == 7 { i } else { (i * 7 + 1) % (2 * n) };
            b.transfer(i, address(to), Amount(COIN), Amount(2), 0)
        })
        .collect();
    second.push(b.transfer(11, address(5 * n), Amount(COIN), Amount(2), 1));
    let blk = b.extend(second, address(12));
    assert_eq!(
        c.process_block(blk, NOW).unwrap().outcome,
        Outcome::Connected
    );
    assert_eq!(accounts(&c), b.accounts);
    let addresses: Vec<Address> = (0..6 * n).map(address).collect();
    let mut batch = vec![Account::default(); addresses.len()];
    c.store().accounts(&addresses, &mut batch).unwrap();
    for (a, got) in addresses.iter().zip(&batch) {
        assert_eq!(*got, c.store().account(a).unwrap());
        assert_eq!(*got, b.accounts.get(a).copied().unwrap_or_default());
    }
}
