//! Accounts, the state commitment, and the state transition with its undo.
//!
//! # Consensus
//! The state is a map from [`Address`] to [`Account`]; an account that was
//! never touched is `{balance: 0, nonce: 0}` and is the same as absent.
//!
//! The state commitment is a homomorphic multiset hash: the sum modulo 2^256
//! of `H(address, balance, nonce)` over every non-empty account, where `H` is
//! tagged SHA-256 read as a little-endian number. A block updates it in
//! `O(accounts it touches)`: subtract each touched account's old element, add
//! its new one. Two nodes that disagree on any balance or nonce therefore
//! compute different commitments (except with probability about 2^-256 for
//! non-adversarial differences) and reject each other's headers.
//!
//! # Security
//! An additive hash detects divergence between honest nodes and corruption of
//! a node's own store. It does not authenticate a state received from an
//! untrusted party: finding a different multiset with the same sum is much
//! easier than a SHA-256 collision (Wagner's generalised birthday attack). A
//! future snapshot sync must use a different commitment (a lattice hash such
//! as LtHash, or a Merkle tree), not this one.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use ruint::aliases::U256;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::amount::Amount;
use crate::hash::{StateRoot, TxId, tagged};
use crate::transfer::SignedTransfer;

/// One account.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Account {
    pub balance: Amount,
    /// Number of transfers this account has sent; the next must carry it.
    pub nonce: u64,
}

impl Account {
    pub fn is_empty(&self) -> bool {
        self.balance == Amount::ZERO && self.nonce == 0
    }
}

/// Why a transfer cannot apply to the current accounts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("nonce {nonce} is below the account nonce {account_nonce} (already used)")]
    NonceTooLow { nonce: u64, account_nonce: u64 },
    #[error(
        "nonce {nonce} is ahead of the account nonce {account_nonce}; transfers {account_nonce}..{nonce} must come first"
    )]
    NonceTooHigh { nonce: u64, account_nonce: u64 },
    #[error("balance {balance} is below the {needed} needed for amount plus fee (base units)")]
    InsufficientBalance { balance: Amount, needed: Amount },
    #[error("amount plus fee overflows")]
    CostOverflow,
    #[error("the recipient's balance would overflow")]
    BalanceOverflow,
    #[error("the account nonce would overflow")]
    NonceOverflow,
}

/// The element an account contributes to the state commitment.
fn element(address: &Address, account: &Account) -> U256 {
    if account.is_empty() {
        return U256::ZERO;
    }
    let h = tagged(
        "cairn/account/v1",
        &[
            &address.0,
            &account.balance.0.to_le_bytes(),
            &account.nonce.to_le_bytes(),
        ],
    );
    U256::from_le_bytes(h)
}

fn root_value(root: &StateRoot) -> U256 {
    U256::from_le_bytes(root.0)
}

fn to_root(v: U256) -> StateRoot {
    StateRoot(v.to_le_bytes())
}

/// The commitment after one account changes from `before` to `after`.
pub fn update_root(
    root: StateRoot,
    address: &Address,
    before: &Account,
    after: &Account,
) -> StateRoot {
    let v = root_value(&root)
        .wrapping_sub(element(address, before))
        .wrapping_add(element(address, after));
    to_root(v)
}

/// The commitment of a whole state, from scratch (start-up checks, genesis).
pub fn state_root<'a>(accounts: impl IntoIterator<Item = (&'a Address, &'a Account)>) -> StateRoot {
    to_root(
        accounts
            .into_iter()
            .fold(U256::ZERO, |acc, (a, s)| acc.wrapping_add(element(a, s))),
    )
}

/// One account touched by a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AccountChange {
    pub address: Address,
    pub before: Account,
    pub after: Account,
}

/// What connecting a block does to the state: the changed accounts (sorted
/// by address, each once) and the resulting commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEffects {
    pub changes: Vec<AccountChange>,
    pub state_root: StateRoot,
    /// Sum of the transfers' fees.
    pub fees: Amount,
}

/// Everything needed to disconnect a block: the touched accounts before and
/// after it, so that undoing also checks the state is what the block left.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct UndoRecord {
    pub changes: Vec<AccountChange>,
}

impl BlockEffects {
    pub fn undo_record(&self) -> UndoRecord {
        UndoRecord {
            changes: self.changes.clone(),
        }
    }
}

impl UndoRecord {
    /// The commitment after undoing, from the commitment before undoing.
    pub fn undo_root(&self, root: StateRoot) -> StateRoot {
        self.changes
            .iter()
            .fold(root, |r, c| update_root(r, &c.address, &c.after, &c.before))
    }
}

/// Checks `tx` against its sender's account: the exact nonce and enough
/// balance for amount plus fee. Returns that cost.
fn check_against(tx: &SignedTransfer, sender: &Account) -> Result<Amount, AccountError> {
    let t = &tx.transfer;
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
    let cost = t.total_cost().ok_or(AccountError::CostOverflow)?;
    if sender.balance < cost {
        return Err(AccountError::InsufficientBalance {
            balance: sender.balance,
            needed: cost,
        });
    }
    Ok(cost)
}

/// A block's (or a block template's) view of the state: reads fall through
/// to `base`, writes stay here until the caller commits them.
pub struct StateOverlay<F> {
    base: F,
    touched: BTreeMap<Address, (Account, Account)>,
}

impl<F: Fn(&Address) -> Account> StateOverlay<F> {
    pub fn new(base: F) -> Self {
        StateOverlay {
            base,
            touched: BTreeMap::new(),
        }
    }

    /// The current account at `address`.
    pub fn get(&self, address: &Address) -> Account {
        match self.touched.get(address) {
            Some((_, after)) => *after,
            None => (self.base)(address),
        }
    }

    fn set(&mut self, address: Address, account: Account) {
        match self.touched.get_mut(&address) {
            Some((_, after)) => *after = account,
            None => {
                let before = (self.base)(&address);
                self.touched.insert(address, (before, account));
            }
        }
    }

    /// Checks `tx` against the current accounts without changing anything.
    pub fn check_transfer(&self, tx: &SignedTransfer) -> Result<(), AccountError> {
        check_against(tx, &self.get(&tx.sender())).map(|_| ())
    }

    /// Applies one transfer: nonce, debit of amount plus fee, credit of
    /// amount. The fee is the caller's to credit (to the coinbase).
    /// On error nothing changes.
    pub fn apply_transfer(&mut self, tx: &SignedTransfer) -> Result<(), AccountError> {
        let from = tx.sender();
        let to = tx.transfer.to;
        let recipient = (to != from).then(|| self.get(&to));
        let (sender, recipient) = transfer_result(tx, self.get(&from), recipient)?;
        self.set(from, sender);
        if to != from {
            self.set(to, recipient);
        }
        Ok(())
    }

    /// Adds `amount` to `address`.
    pub fn credit(&mut self, address: Address, amount: Amount) -> Result<(), AccountError> {
        let mut acc = self.get(&address);
        acc.balance = acc
            .balance
            .checked_add(amount)
            .ok_or(AccountError::BalanceOverflow)?;
        self.set(address, acc);
        Ok(())
    }

    /// The changes made, sorted by address, and the commitment they lead to
    /// from `parent_root`. Accounts written back to their old value are left out.
    pub fn into_effects(self, parent_root: StateRoot, fees: Amount) -> BlockEffects {
        let changes: Vec<AccountChange> = self
            .touched
            .into_iter()
            .filter(|(_, (before, after))| before != after)
            .map(|(address, (before, after))| AccountChange {
                address,
                before,
                after,
            })
            .collect();
        BlockEffects {
            state_root: root_after(parent_root, &changes),
            changes,
            fees,
        }
    }
}

/// The sender's and the recipient's accounts after `tx`: the nonce goes
/// up, amount plus fee leaves the sender, the amount reaches the recipient
/// (the fee is the caller's to credit, to the coinbase). `recipient` is
/// `None` when the transfer pays its own sender; both results are then
/// that one account.
pub(crate) fn transfer_result(
    tx: &SignedTransfer,
    sender: Account,
    recipient: Option<Account>,
) -> Result<(Account, Account), AccountError> {
    let mut sender = sender;
    let cost = check_against(tx, &sender)?;
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
    let mut credited = recipient.unwrap_or(sender);
    credited.balance = credited
        .balance
        .checked_add(tx.transfer.amount)
        .ok_or(AccountError::BalanceOverflow)?;
    match recipient {
        Some(_) => Ok((sender, credited)),
        None => Ok((credited, credited)),
    }
}

/// The commitment after `changes` from `root`. Each change costs two
/// hashes, computed on all cores for a large block; their sum does not
/// depend on the order it is taken in (addition modulo 2^256).
pub fn root_after(root: StateRoot, changes: &[AccountChange]) -> StateRoot {
    let deltas = crate::par::map(changes, |c| {
        element(&c.address, &c.after).wrapping_sub(element(&c.address, &c.before))
    });
    let sum = deltas
        .into_iter()
        .fold(root_value(&root), |a, d| a.wrapping_add(d));
    to_root(sum)
}

/// A transfer that failed against the state, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transfer {index} ({txid}): {error}")]
pub struct TransferStateError {
    pub index: usize,
    pub txid: TxId,
    pub error: AccountError,
}
