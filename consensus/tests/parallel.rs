//! Large blocks are judged on all cores (the body checks, the state pass,
//! the Merkle tree and the state commitment): the verdict must be exactly
//! the one-transfer-at-a-time walk's, errors and their indices included.
//! The blocks here are above `par::PARALLEL_MIN`, so they take the parallel
//! paths; the references below are written one step at a time.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cairn_consensus::hash::tagged;
use cairn_consensus::par::PARALLEL_MIN;
use cairn_consensus::state::{TransferStateError, state_root};
use cairn_consensus::testkit::{self, address};
use cairn_consensus::transfer::TransferError;
use cairn_consensus::validation::{self, check_block, validate_block_state};
use cairn_consensus::*;
use proptest::prelude::*;

/// Accounts that send; recipients are drawn from a few more.
const SENDERS: u64 = 300;
const RECIPIENTS: u64 = 340;

fn public_keys() -> &'static [PublicKey] {
    static KEYS: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..SENDERS)
            .map(|i| transfer::public_key(&testkit::key(i)))
            .collect()
    })
}

/// An unsigned transfer (the state pass and the body checks other than
/// signatures do not read the signature).
fn transfer(from: u64, to: u64, amount: u64, fee: u64, nonce: u64) -> SignedTransfer {
    SignedTransfer {
        transfer: Transfer {
            chain_id: testkit::params().chain_id,
            from: public_keys()[from as usize],
            to: address(to),
            amount: Amount(amount),
            fee: Amount(fee),
            nonce,
        },
        signature: Signature([0; 64]),
    }
}

fn block(transfers: Vec<SignedTransfer>, coinbase_amount: Amount, state_root: StateRoot) -> Block {
    let params = testkit::params();
    let mut b = Block {
        header: BlockHeader {
            version: 1,
            parent: BlockHash::ZERO,
            height: Height(1),
            tx_root: TxRoot([0; 32]),
            state_root,
            time_ms: 1,
            target: params.initial_target,
            nonce: 0,
        },
        coinbase: Coinbase {
            height: Height(1),
            recipient: address(RECIPIENTS + 1),
            amount: coinbase_amount,
        },
        transfers,
    };
    b.header.tx_root = b.compute_tx_root();
    b
}

/// Accounts by address: (before the block, now).
type Touched = BTreeMap<Address, (Account, Account)>;

fn current(touched: &mut Touched, state: &BTreeMap<Address, Account>, a: Address) -> Account {
    let before = state.get(&a).copied().unwrap_or_default();
    touched.entry(a).or_insert((before, before)).1
}

/// One transfer, written out from the rules (not through the crate's state
/// code, which the parallel pass shares). On error nothing changes.
fn apply_one(
    touched: &mut Touched,
    state: &BTreeMap<Address, Account>,
    tx: &SignedTransfer,
) -> Result<(), AccountError> {
    let t = &tx.transfer;
    let from = tx.sender();
    let mut sender = current(touched, state, from);
    if t.nonce < sender.nonce {
        return Err(AccountError::NonceTooLow {
            nonce: t.nonce,
            account_nonce: sender.nonce,
        });
    }
    if t.nonce > sender.nonce {
        return Err(AccountError::NonceTooHigh {
            nonce: t.nonce,
            account_nonce: sender.nonce,
        });
    }
    let cost = t
        .amount
        .checked_add(t.fee)
        .ok_or(AccountError::CostOverflow)?;
    sender.balance = sender
        .balance
        .checked_sub(cost)
        .ok_or(AccountError::InsufficientBalance {
            balance: sender.balance,
            needed: cost,
        })?;
    sender.nonce = sender
        .nonce
        .checked_add(1)
        .ok_or(AccountError::NonceOverflow)?;
    // a transfer to oneself is credited after the debit
    let mut recipient = if t.to == from {
        sender
    } else {
        current(touched, state, t.to)
    };
    recipient.balance = recipient
        .balance
        .checked_add(t.amount)
        .ok_or(AccountError::BalanceOverflow)?;
    touched.get_mut(&from).unwrap().1 = sender;
    touched.get_mut(&t.to).unwrap().1 = recipient;
    Ok(())
}

/// The verdict of applying `block` one transfer at a time, with the
/// commitment recomputed from scratch.
fn one_at_a_time(
    block: &Block,
    state: &BTreeMap<Address, Account>,
) -> Result<Vec<AccountChange>, BlockError> {
    let params = testkit::params();
    let mut touched = Touched::new();
    let mut fees = Amount::ZERO;
    for (index, tx) in block.transfers.iter().enumerate() {
        apply_one(&mut touched, state, tx).map_err(|error| TransferStateError {
            index,
            txid: tx.id(),
            error,
        })?;
        fees = fees
            .checked_add(tx.transfer.fee)
            .ok_or(BlockError::FeesOverflow)?;
    }
    let expected = params
        .reward_at(block.header.height)
        .checked_add(fees)
        .unwrap();
    if block.coinbase.amount != expected {
        return Err(BlockError::CoinbaseAmount {
            expected,
            found: block.coinbase.amount,
        });
    }
    let miner = block.coinbase.recipient;
    let mut paid = current(&mut touched, state, miner);
    paid.balance = paid
        .balance
        .checked_add(block.coinbase.amount)
        .ok_or(BlockError::CoinbaseOverflow(miner))?;
    touched.get_mut(&miner).unwrap().1 = paid;
    let changes: Vec<AccountChange> = touched
        .into_iter()
        .filter(|(_, (before, after))| before != after)
        .map(|(address, (before, after))| AccountChange {
            address,
            before,
            after,
        })
        .collect();
    let mut after = state.clone();
    for c in &changes {
        after.insert(c.address, c.after);
    }
    let computed = state_root(after.iter().filter(|(_, a)| !a.is_empty()));
    if computed != block.header.state_root {
        return Err(BlockError::StateRootMismatch {
            header: block.header.state_root,
            computed,
        });
    }
    Ok(changes)
}

/// How a generated block is spoiled, at a transfer chosen by the case.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    Nothing,
    NonceAhead,
    NonceBehind,
    SpendsTooMuch,
    CoinbaseAmount,
    StateRoot,
}

fn arb_spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        2 => Just(Spoil::Nothing),
        1 => Just(Spoil::NonceAhead),
        1 => Just(Spoil::NonceBehind),
        1 => Just(Spoil::SpendsTooMuch),
        1 => Just(Spoil::CoinbaseAmount),
        1 => Just(Spoil::StateRoot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random large blocks (repeated senders, transfers to oneself, new
    /// recipients), valid or spoiled at a random transfer: the verdict on
    /// all cores is the one-at-a-time verdict.
    #[test]
    fn a_large_block_gets_the_one_at_a_time_verdict(
        balances in proptest::collection::vec(0u64..2_000_000, SENDERS as usize),
        sends in proptest::collection::vec((0..SENDERS, 0..=RECIPIENTS + 1, 1u64..50_000, 1u64..20), PARALLEL_MIN..PARALLEL_MIN * 2),
        spoil in arb_spoil(),
        at in any::<prop::sample::Index>(),
    ) {
        let params = testkit::params();
        let state: BTreeMap<Address, Account> = balances
            .iter()
            .enumerate()
            .filter(|(_, b)| **b > 0)
            .map(|(i, b)| (address(i as u64), Account { balance: Amount(*b), nonce: 0 }))
            .collect();
        let mut nonces = vec![0u64; SENDERS as usize];
        let mut txs: Vec<SignedTransfer> = sends
            .iter()
            .enumerate()
            .map(|(k, &(from, to, amount, fee))| {
                // every tenth pays its own sender
                let to = if k % 10 == 0 { from } else { to };
                let nonce = nonces[from as usize];
                nonces[from as usize] += 1;
                transfer(from, to, amount, fee, nonce)
            })
            .collect();
        let k = at.index(txs.len());
        match spoil {
            Spoil::NonceAhead => txs[k].transfer.nonce += 1,
            Spoil::NonceBehind => txs[k].transfer.nonce = txs[k].transfer.nonce.wrapping_sub(1),
            Spoil::SpendsTooMuch => txs[k].transfer.amount = Amount(u64::MAX / 2),
            _ => {}
        }
        let fees: u64 = txs.iter().map(|t| t.transfer.fee.0).sum();
        let mut coinbase = Amount(params.block_reward.0 + fees);
        if let Spoil::CoinbaseAmount = spoil {
            coinbase.0 += 1;
        }
        // the honest commitment, if the transfers apply
        let draft = block(txs.clone(), coinbase, StateRoot([0; 32]));
        let honest = match one_at_a_time(&draft, &state) {
            Err(BlockError::StateRootMismatch { computed, .. }) => computed,
            _ => StateRoot([0; 32]),
        };
        let root = if let Spoil::StateRoot = spoil { StateRoot([7; 32]) } else { honest };
        let b = block(txs, coinbase, root);
        let expected = one_at_a_time(&b, &state);
        let parent_root = state_root(state.iter());
        let got = validate_block_state(&b, &params, |a| state.get(a).copied().unwrap_or_default(), parent_root);
        match (&got, &expected) {
            (Ok(effects), Ok(changes)) => {
                prop_assert_eq!(&effects.changes, changes);
                prop_assert_eq!(effects.state_root, b.header.state_root);
                prop_assert_eq!(effects.fees, Amount(fees));
            }
            _ => prop_assert_eq!(got.map(|e| e.changes), expected),
        }
        if let Spoil::Nothing = spoil {
            prop_assert!(check_block(&b, &params).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A large template, from candidates some of which do not apply (gaps,
    /// spent balances, one sender's later nonces after a failure): it keeps
    /// exactly the candidates that apply in order, skipping the rest as if
    /// they were absent, and the block it gives validates with the effects
    /// it computed.
    #[test]
    fn a_large_template_keeps_what_applies_in_order(
        balances in proptest::collection::vec(0u64..400_000, SENDERS as usize),
        sends in proptest::collection::vec((0..SENDERS, 0..=RECIPIENTS + 1, 1u64..50_000, 1u64..20, 0u8..20), PARALLEL_MIN..PARALLEL_MIN * 2),
    ) {
        let params = testkit::params();
        let state: BTreeMap<Address, Account> = balances
            .iter()
            .enumerate()
            .filter(|(_, b)| **b > 0)
            .map(|(i, b)| (address(i as u64), Account { balance: Amount(*b), nonce: 0 }))
            .collect();
        let mut nonces = vec![0u64; SENDERS as usize];
        let candidates: Vec<SignedTransfer> = sends
            .iter()
            .map(|&(from, to, amount, fee, odd)| {
                let nonce = nonces[from as usize];
                nonces[from as usize] += 1;
                // now and then a gap, or a nonce already used
                let nonce = match odd {
                    0 => nonce + 1,
                    1 => nonce.saturating_sub(1),
                    _ => nonce,
                };
                transfer(from, to, amount, fee, nonce)
            })
            .collect();
        // the reference: each candidate applied on what the kept ones left
        let mut touched = BTreeMap::new();
        let mut kept = Vec::new();
        for tx in &candidates {
            if apply_one(&mut touched, &state, tx).is_ok() {
                kept.push(*tx);
            }
        }
        let parent_root = state_root(state.iter());
        let read = |addresses: &[Address], out: &mut [Account]| {
            for (o, a) in out.iter_mut().zip(addresses) {
                *o = state.get(a).copied().unwrap_or_default();
            }
            Ok::<_, std::convert::Infallible>(())
        };
        let draft = block(candidates, Amount(0), StateRoot([0; 32]));
        let Ok((filled, effects)) = validation::try_fill_template(draft, &params, read, parent_root);
        prop_assert_eq!(&filled.transfers, &kept);
        prop_assert!(kept.len() < sends.len(), "some candidates were meant to fail");
        let fees: u64 = kept.iter().map(|t| t.transfer.fee.0).sum();
        prop_assert_eq!(filled.coinbase.amount, Amount(params.block_reward.0 + fees));
        let b = block(kept, filled.coinbase.amount, effects.state_root);
        let validated = validate_block_state(&b, &params, |a| state.get(a).copied().unwrap_or_default(), parent_root);
        prop_assert_eq!(validated.as_ref().map(|e| &e.changes), Ok(&effects.changes));
        prop_assert_eq!(one_at_a_time(&b, &state), Ok(effects.changes));
    }
}

/// A large block with two faults reports the first in block order, as the
/// one-at-a-time walk does, whichever kind of fault comes first.
#[test]
fn a_large_block_reports_its_first_fault_in_block_order() {
    let params = testkit::params();
    let n = PARALLEL_MIN * 2;
    let clean = || -> Vec<SignedTransfer> {
        (0..n as u64)
            .map(|i| transfer(i % SENDERS, i % RECIPIENTS, 10, 1, i / SENDERS))
            .collect()
    };
    assert!(check_block(&block(clean(), Amount(0), StateRoot([0; 32])), &params).is_ok());

    let duplicate_at = |txs: &mut Vec<SignedTransfer>, i: usize| txs[i] = txs[i - 7];
    let wrong_chain_at = |txs: &mut Vec<SignedTransfer>, i: usize| txs[i].transfer.chain_id ^= 1;

    // a duplicate first, a bad transfer later
    let mut txs = clean();
    duplicate_at(&mut txs, 100);
    wrong_chain_at(&mut txs, 400);
    let b = block(txs, Amount(0), StateRoot([0; 32]));
    let id = b.transfers[100].id();
    assert_eq!(
        check_block(&b, &params),
        Err(BlockError::DuplicateTransfer {
            index: 100,
            txid: id
        })
    );

    // a bad transfer first, a duplicate later
    let mut txs = clean();
    wrong_chain_at(&mut txs, 90);
    duplicate_at(&mut txs, 300);
    let b = block(txs, Amount(0), StateRoot([0; 32]));
    match check_block(&b, &params) {
        Err(BlockError::Transfer {
            index: 90,
            error: TransferError::WrongChainId { .. },
            ..
        }) => {}
        other => panic!("expected the wrong chain id at 90, got {other:?}"),
    }

    // only a duplicate, at the very end
    let mut txs = clean();
    duplicate_at(&mut txs, n - 1);
    let b = block(txs, Amount(0), StateRoot([0; 32]));
    assert!(matches!(
        check_block(&b, &params),
        Err(BlockError::DuplicateTransfer { index, .. }) if index == n - 1
    ));
}

/// The Merkle root, hashed level by level on all cores, is the tree of the
/// one-thread definition for sizes around the parallel threshold.
#[test]
fn the_merkle_root_of_many_ids_is_the_one_thread_tree() {
    fn one_thread(ids: &[TxId]) -> TxRoot {
        let mut level: Vec<[u8; 32]> = ids
            .iter()
            .map(|id| tagged("cairn/merkle/leaf", &[&id.0]))
            .collect();
        while level.len() > 1 {
            let mut next = Vec::new();
            let mut i = 0;
            while i < level.len() {
                if i + 1 < level.len() {
                    next.push(tagged("cairn/merkle/node", &[&level[i], &level[i + 1]]));
                } else {
                    next.push(level[i]);
                }
                i += 2;
            }
            level = next;
        }
        TxRoot(level[0])
    }
    for n in [
        PARALLEL_MIN - 1,
        PARALLEL_MIN,
        PARALLEL_MIN + 1,
        1000,
        1001,
        5001,
    ] {
        let ids: Vec<TxId> = (0..n as u64)
            .map(|i| TxId(tagged("test/id", &[&i.to_le_bytes()])))
            .collect();
        assert_eq!(block::merkle_root(&ids), one_thread(&ids), "{n} ids");
    }
}
