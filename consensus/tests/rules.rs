//! Each validation tier and each of its errors, on blocks built by the
//! testkit and then altered one field at a time.

use std::collections::BTreeMap;

use cairn_consensus::block::merkle_root;
use cairn_consensus::state::{StateOverlay, state_root};
use cairn_consensus::testkit::{self, ChainBuilder, address, mine};
use cairn_consensus::transfer::TransferError;
use cairn_consensus::validation::{
    HeaderContext, check_block, check_header, check_signatures, validate_block_state,
    validate_header,
};
use cairn_consensus::*;
use proptest::prelude::*;

fn chain() -> ChainBuilder {
    ChainBuilder::new(testkit::params(), 4, Amount(1_000 * COIN))
}

/// Recomputes the tx root and re-mines, so later checks see the alteration.
fn reseal(b: &mut Block) {
    b.header.tx_root = b.compute_tx_root();
    mine(&mut b.header);
}

fn ctx(c: &ChainBuilder, now_ms: u64) -> HeaderContext {
    HeaderContext {
        parent_hash: c.tip_hash(),
        parent_height: c.tip().header.height,
        median_time_past_ms: c.median_time_past(),
        expected_target: c.params.initial_target,
        now_ms,
        max_future_drift_ms: c.params.max_future_drift_ms,
    }
}

fn full_check(c: &ChainBuilder, b: &Block, now_ms: u64) -> Result<BlockEffects, BlockError> {
    check_header(&b.header, &c.params)?;
    check_block(b, &c.params)?;
    check_signatures(&b.transfers)?;
    validate_header(&b.header, &ctx(c, now_ms))?;
    let accounts = c.accounts.clone();
    validate_block_state(
        b,
        &c.params,
        move |a| accounts.get(a).copied().unwrap_or_default(),
        c.tip().header.state_root,
    )
}

fn now(c: &ChainBuilder) -> u64 {
    c.tip().header.time_ms + 10_000
}

fn valid_block(c: &ChainBuilder) -> Block {
    let txs = vec![
        c.transfer(0, address(1), Amount(5 * COIN), Amount(100), 0),
        c.transfer(0, address(2), Amount(COIN), Amount(100), 1),
        c.transfer(1, address(0), Amount(COIN), Amount(7), 0),
    ];
    c.build(txs, address(3))
}

#[test]
fn valid_block_passes_every_tier() {
    let c = chain();
    let b = valid_block(&c);
    let effects = full_check(&c, &b, now(&c)).expect("valid");
    assert_eq!(effects.fees, Amount(207));
    assert_eq!(effects.state_root, b.header.state_root);
    let future = BlockError::TimeTooFarInFuture {
        time_ms: 0,
        now_ms: 0,
        max_drift_ms: 0,
    };
    assert!(!future.is_permanent());
}

/// A transfer to its own sender costs only its fee and uses one nonce,
/// whether the block is applied one transfer at a time (a template) or
/// checked as a whole.
#[test]
fn a_transfer_to_oneself_costs_only_its_fee() {
    let c = chain();
    let start = c.accounts[&address(0)];
    let txs = vec![
        c.transfer(0, address(0), Amount(3 * COIN), Amount(5), 0),
        c.transfer(0, address(1), Amount(COIN), Amount(5), 1),
        c.transfer(0, address(0), Amount(2 * COIN), Amount(5), 2),
    ];
    let b = c.build(txs, address(3));
    let effects = full_check(&c, &b, now(&c)).expect("valid");
    let change = effects
        .changes
        .iter()
        .find(|ch| ch.address == address(0))
        .expect("the sender changed");
    assert_eq!(change.before, start);
    assert_eq!(
        change.after,
        Account {
            balance: Amount(start.balance.0 - COIN - 15),
            nonce: start.nonce + 3,
        }
    );
}

#[test]
fn header_tier_errors() {
    let c = chain();
    let b = valid_block(&c);
    let mut v = b.clone();
    v.header.version = 2;
    mine(&mut v.header);
    assert_eq!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::BadVersion { found: 2 })
    );

    let mut v = b.clone();
    v.header.target = Target([0; 32]);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::TargetOutOfRange { .. })
    ));
    v.header.target = Target([0xff; 32]);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::TargetOutOfRange { .. })
    ));

    // find a nonce that fails the target
    let mut v = b.clone();
    v.header.nonce = (0..)
        .find(|n| {
            let mut h = v.header;
            h.nonce = *n;
            !h.target.is_met_by(&h.hash())
        })
        .unwrap();
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::InsufficientProofOfWork { .. })
    ));
}

#[test]
fn body_tier_errors() {
    let c = chain();
    let b = valid_block(&c);

    let mut v = b.clone();
    v.coinbase.height = Height(9);
    reseal(&mut v);
    assert_eq!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::CoinbaseHeight {
            expected: Height(1),
            found: Height(9)
        })
    );

    let mut v = b.clone();
    v.transfers.swap(0, 2);
    mine(&mut v.header);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::TxRootMismatch { .. })
    ));

    let mut v = b.clone();
    v.transfers.push(v.transfers[0]);
    reseal(&mut v);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::DuplicateTransfer { index: 3, .. })
    ));

    let mut p = c.params.clone();
    p.max_block_transfers = 2;
    assert_eq!(
        check_block(&b, &p),
        Err(BlockError::TooManyTransfers { count: 3, max: 2 })
    );
    let mut p = c.params.clone();
    p.max_block_bytes = 500;
    assert!(matches!(
        check_block(&b, &p),
        Err(BlockError::TooLarge { max: 500, .. })
    ));

    let mut v = b.clone();
    let k = testkit::key(2);
    v.transfers[1] = Transfer {
        chain_id: 99,
        ..v.transfers[1].transfer
    }
    .sign(&testkit::key(0));
    reseal(&mut v);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::Transfer {
            index: 1,
            error: TransferError::WrongChainId {
                expected: 0xCA11,
                found: 99
            },
            ..
        })
    ));

    let mut v = b.clone();
    v.transfers[2].signature = v.transfers[2].transfer.sign(&k).signature;
    reseal(&mut v);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::Transfer {
            index: 2,
            error: TransferError::BadSignature(_),
            ..
        })
    ));
}

#[test]
fn context_tier_errors() {
    let c = chain();
    let b = valid_block(&c);

    let mut v = b.clone();
    v.header.parent = BlockHash([1; 32]);
    mine(&mut v.header);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::WrongParent { .. })
    ));

    let mut v = b.clone();
    v.header.height = Height(2);
    v.coinbase.height = Height(2);
    reseal(&mut v);
    assert_eq!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::WrongHeight {
            expected: Height(1),
            found: Height(2)
        })
    );

    let mut v = b.clone();
    v.header.time_ms = c.median_time_past();
    mine(&mut v.header);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::TimeNotAfterMedian { .. })
    ));

    let e = full_check(&c, &b, b.header.time_ms - c.params.max_future_drift_ms - 1).unwrap_err();
    assert!(matches!(e, BlockError::TimeTooFarInFuture { .. }));
    assert!(
        !e.is_permanent(),
        "a block from the future may become valid"
    );

    let mut v = b.clone();
    v.header.target = testkit::params().pow_limit;
    mine(&mut v.header);
    assert!(matches!(
        full_check(&c, &v, now(&c)),
        Err(BlockError::WrongTarget { .. })
    ));
}

#[test]
fn state_tier_errors() {
    let c = chain();
    let miner = address(3);
    let rebuild = |txs: Vec<SignedTransfer>, coinbase_delta: i64| {
        // a block with arbitrary transfers, state root and coinbase computed
        // leniently so only the intended rule fails
        let mut b = c.build(vec![], miner);
        let fees: u64 = txs.iter().map(|t| t.transfer.fee.0).sum();
        b.coinbase.amount =
            Amount((b.coinbase.amount.0 + fees).wrapping_add_signed(coinbase_delta));
        b.transfers = txs;
        reseal(&mut b);
        b
    };

    let b = rebuild(vec![c.transfer(0, address(1), Amount(1), Amount(1), 1)], 0);
    assert!(matches!(
        full_check(&c, &b, now(&c)),
        Err(BlockError::TransferState(e)) if e.error == AccountError::NonceTooHigh { nonce: 1, account_nonce: 0 }
    ));

    let mut c2 = c.clone();
    c2.extend(
        vec![c.transfer(0, address(1), Amount(1), Amount(1), 0)],
        miner,
    );
    let stale = c.transfer(0, address(1), Amount(1), Amount(1), 0);
    let mut b = c2.build(vec![], miner);
    b.coinbase.amount = Amount(b.coinbase.amount.0 + 1);
    b.transfers = vec![stale];
    reseal(&mut b);
    assert!(matches!(
        full_check(&c2, &b, now(&c2)),
        Err(BlockError::TransferState(e)) if e.error == AccountError::NonceTooLow { nonce: 0, account_nonce: 1 }
    ));

    let b = rebuild(
        vec![c.transfer(0, address(1), Amount(1_000 * COIN), Amount(1), 0)],
        0,
    );
    assert!(matches!(
        full_check(&c, &b, now(&c)),
        Err(BlockError::TransferState(e)) if matches!(e.error, AccountError::InsufficientBalance { .. })
    ));

    let b = rebuild(vec![c.transfer(0, address(1), Amount(1), Amount(1), 0)], 1);
    assert!(matches!(
        full_check(&c, &b, now(&c)),
        Err(BlockError::CoinbaseAmount { .. })
    ));

    // everything right but the state root
    let mut b = c.build(
        vec![c.transfer(0, address(1), Amount(1), Amount(1), 0)],
        miner,
    );
    b.header.state_root = StateRoot([9; 32]);
    mine(&mut b.header);
    assert!(matches!(
        full_check(&c, &b, now(&c)),
        Err(BlockError::StateRootMismatch { .. })
    ));
}

#[test]
fn block_encoding_is_canonical_and_bounded() {
    let c = chain();
    let b = valid_block(&c);
    let bytes = b.encode();
    assert_eq!(bytes.len(), b.encoded_len());
    assert_eq!(Block::decode(&bytes, 1 << 20).unwrap(), b);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Block::decode(&trailing, 1 << 20).is_err());
    assert!(matches!(
        Block::decode(&bytes, bytes.len() - 1),
        Err(encoding::DecodeError::TooLarge { .. })
    ));
    // a length prefix claiming four billion transfers, with none present
    let mut bomb = bytes[..block::HEADER_BYTES + block::COINBASE_BYTES].to_vec();
    bomb.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(Block::decode(&bomb, 1 << 20).is_err());
}

#[test]
fn reward_halves() {
    let mut p = testkit::params();
    p.halving_interval = 10;
    assert_eq!(p.reward_at(Height(9)), p.block_reward);
    assert_eq!(p.reward_at(Height(10)).0, p.block_reward.0 / 2);
    assert_eq!(p.reward_at(Height(10 * 70)), Amount::ZERO);
}

/// (balance, nonce) of each test account.
type Balances = Vec<(u64, u64)>;
/// (from, to, amount, fee) of each transfer.
type Transfers = Vec<(u8, u8, u64, u64)>;

/// A random set of accounts and a random sequence of transfers among them.
fn arb_case() -> impl Strategy<Value = (Balances, Transfers)> {
    (
        proptest::collection::vec((0u64..1_000_000, 0u64..5), 6),
        proptest::collection::vec((0u8..6, 0u8..8, 1u64..400_000, 1u64..50), 0..30),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Applying any valid block and undoing it restores the exact state and
    /// commitment; the incremental commitment equals a full recomputation.
    #[test]
    fn apply_then_undo_restores_state((balances, txs) in arb_case()) {
        let params = testkit::params();
        let mut state: BTreeMap<Address, Account> = BTreeMap::new();
        for (i, (bal, nonce)) in balances.iter().enumerate() {
            let a = Account { balance: Amount(*bal), nonce: *nonce };
            if !a.is_empty() { state.insert(address(i as u64), a); }
        }
        let root = state_root(state.iter());
        // keep only transfers that apply, in order, as a miner would
        let mut included = Vec::new();
        {
            let base = state.clone();
            let mut overlay = StateOverlay::new(move |a: &Address| base.get(a).copied().unwrap_or_default());
            for (from, to, amount, fee) in txs {
                let k = testkit::key(u64::from(from));
                let t = Transfer {
                    chain_id: params.chain_id,
                    from: transfer::public_key(&k),
                    to: address(u64::from(to)),
                    amount: Amount(amount),
                    fee: Amount(fee),
                    nonce: overlay.get(&address(u64::from(from))).nonce,
                }.sign(&k);
                if overlay.apply_transfer(&t).is_ok() { included.push(t); }
            }
        }
        let fees: u64 = included.iter().map(|t| t.transfer.fee.0).sum();
        let coinbase = Coinbase { height: Height(1), recipient: address(7), amount: Amount(params.block_reward.0 + fees) };
        let mut ids = vec![coinbase.id()];
        ids.extend(included.iter().map(|t| t.id()));
        let base = state.clone();
        let dry = {
            let mut o = StateOverlay::new(|a: &Address| base.get(a).copied().unwrap_or_default());
            for t in &included { o.apply_transfer(t).unwrap(); }
            o.credit(coinbase.recipient, coinbase.amount).unwrap();
            o.into_effects(root, Amount(fees))
        };
        let block = Block {
            header: BlockHeader { version: 1, parent: BlockHash::ZERO, height: Height(1), tx_root: merkle_root(&ids), state_root: dry.state_root, time_ms: 1, target: params.initial_target, nonce: 0 },
            coinbase,
            transfers: included,
        };
        let effects = validate_block_state(&block, &params, |a| base.get(a).copied().unwrap_or_default(), root).unwrap();

        let mut after = state.clone();
        for ch in &effects.changes {
            prop_assert_eq!(after.get(&ch.address).copied().unwrap_or_default(), ch.before);
            if ch.after.is_empty() { after.remove(&ch.address); } else { after.insert(ch.address, ch.after); }
        }
        prop_assert_eq!(state_root(after.iter()), effects.state_root);

        let undo = effects.undo_record();
        prop_assert_eq!(undo.undo_root(effects.state_root), root);
        for ch in &undo.changes {
            prop_assert_eq!(after.get(&ch.address).copied().unwrap_or_default(), ch.after);
            if ch.before.is_empty() { after.remove(&ch.address); } else { after.insert(ch.address, ch.before); }
        }
        prop_assert_eq!(&after, &state);
        prop_assert_eq!(state_root(after.iter()), root);
    }

    /// Any single account differing changes the commitment.
    #[test]
    fn any_balance_difference_changes_the_commitment(balances in proptest::collection::vec(1u64..1_000_000, 1..20), which in any::<prop::sample::Index>(), delta in 1u64..1000) {
        let state: BTreeMap<Address, Account> = balances.iter().enumerate()
            .map(|(i, b)| (address(i as u64), Account { balance: Amount(*b), nonce: 0 })).collect();
        let mut other = state.clone();
        let i = which.index(balances.len());
        other.get_mut(&address(i as u64)).unwrap().balance.0 += delta;
        prop_assert_ne!(state_root(state.iter()), state_root(other.iter()));
    }
}
