//! The mempool: signed transfers waiting for a block.
//!
//! - Per sender, transfers are kept by nonce. A transfer whose nonce leaves a
//!   gap waits (at most `max_nonce_gap` ahead of the account nonce, at most
//!   `max_per_sender` per sender) and becomes ready when the gap fills.
//! - Ready and waiting transfers have separate byte bounds: waiting ones
//!   (which cannot be mined yet) are held in a small pool of their own, so
//!   that filling it never raises the fee quoted to everyone else.
//! - A pending transfer can be replaced by one with the same sender and
//!   nonce paying at least `replace_bump_percent` more fee.
//! - The pool is bounded by bytes; when full, a new transfer evicts the
//!   lowest-fee ones (with their sender's later nonces) if it pays more,
//!   otherwise it is refused with the fee that would get it in.
//! - Transfers older than `expiry_ms` are dropped.
//! - Templates take ready transfers by fee, each sender's in nonce order.
//!
//! The pool holds no lock and reads no store: callers pass the sender's
//! confirmed account. Every rejection says what to change.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use cairn_consensus::transfer::SIGNED_TRANSFER_BYTES;
use cairn_consensus::{Account, Address, Amount, SignedTransfer, TxId};

/// Limits of the mempool.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Total size of the ready transfers' encodings (those that can be
    /// mined now); when full, the minimum fee rises.
    pub max_bytes: usize,
    /// Total size of the transfers waiting for an earlier nonce; when
    /// full, the lowest-fee waiting ones make room or a newcomer is refused.
    /// Never raises the minimum fee.
    pub max_waiting_bytes: usize,
    /// Pending transfers per sender (ready or waiting).
    pub max_per_sender: usize,
    /// How far ahead of the account nonce a transfer may be.
    pub max_nonce_gap: u64,
    /// A pending transfer is dropped after this long.
    pub expiry_ms: u64,
    /// Fee increase, in percent, needed to replace a pending transfer.
    pub replace_bump_percent: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_bytes: 32 << 20,
            max_waiting_bytes: 4 << 20,
            max_per_sender: 256,
            max_nonce_gap: 64,
            expiry_ms: 3 * 3600 * 1000,
            replace_bump_percent: 10,
        }
    }
}

/// Why the pool refused a transfer (on top of the consensus checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("transfer {0} is already pending")]
    Duplicate(TxId),
    #[error("nonce {nonce} is below the account nonce {account_nonce} (already used)")]
    NonceTooLow { nonce: u64, account_nonce: u64 },
    #[error(
        "nonce {nonce} is too far ahead: the account nonce is {account_nonce} and at most {max_gap} ahead are kept; send nonces {account_nonce}.. first"
    )]
    NonceTooHigh {
        nonce: u64,
        account_nonce: u64,
        max_gap: u64,
    },
    #[error(
        "balance {balance} does not cover {needed} (this transfer's amount plus fee plus {pending} already pending from this account), base units"
    )]
    InsufficientBalance {
        balance: Amount,
        needed: Amount,
        pending: Amount,
    },
    #[error(
        "a pending transfer with nonce {nonce} pays fee {old_fee}; a replacement must pay at least {required}"
    )]
    ReplacementUnderpriced {
        nonce: u64,
        old_fee: Amount,
        required: Amount,
    },
    #[error("the sender already has {count} pending transfers, the most kept per sender")]
    SenderLimit { count: usize },
    #[error("the mempool is full; a transfer needs a fee of at least {min_fee} to enter")]
    Full { min_fee: Amount },
    #[error(
        "nonce {nonce} leaves a gap after the account's next nonce {next_nonce}, and the pool of transfers waiting for earlier nonces is full; send nonce {next_nonce} first, or pay a fee of at least {min_fee}"
    )]
    WaitingFull {
        nonce: u64,
        next_nonce: u64,
        min_fee: Amount,
    },
}

/// A pending transfer.
#[derive(Clone, Debug)]
pub struct Entry {
    pub tx: SignedTransfer,
    pub id: TxId,
    pub sender: Address,
    pub added_ms: u64,
    seq: u64,
    /// Whether its nonce follows the account nonce without a gap.
    ready: bool,
}

impl Entry {
    fn fee(&self) -> Amount {
        self.tx.transfer.fee
    }

    fn nonce(&self) -> u64 {
        self.tx.transfer.nonce
    }

    fn cost(&self) -> Amount {
        self.tx.transfer.total_cost().unwrap_or(Amount::MAX)
    }

    fn fee_key(&self) -> FeeKey {
        (self.fee(), Reverse(self.seq), self.id)
    }
}

/// Orders entries for eviction: lowest fee first, among equal fees the newest.
type FeeKey = (Amount, Reverse<u64>, TxId);

/// What an accepted insert changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    pub replaced: Option<TxId>,
    pub evicted: Vec<TxId>,
}

/// The pool.
pub struct Mempool {
    config: MempoolConfig,
    min_fee: Amount,
    entries: HashMap<TxId, Entry>,
    by_sender: HashMap<Address, BTreeMap<u64, TxId>>,
    /// Each sender's confirmed account nonce, as last given by the caller.
    account_nonces: HashMap<Address, u64>,
    /// Ready entries in eviction order.
    by_fee: BTreeSet<FeeKey>,
    /// Waiting entries in eviction order.
    waiting: BTreeSet<FeeKey>,
    next_seq: u64,
}

const ENTRY_BYTES: usize = SIGNED_TRANSFER_BYTES;

impl Mempool {
    pub fn new(config: MempoolConfig, min_fee: Amount) -> Mempool {
        Mempool {
            config,
            min_fee,
            entries: HashMap::new(),
            by_sender: HashMap::new(),
            account_nonces: HashMap::new(),
            by_fee: BTreeSet::new(),
            waiting: BTreeSet::new(),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all pending transfers, ready and waiting.
    pub fn bytes(&self) -> usize {
        self.entries.len() * ENTRY_BYTES
    }

    /// Bytes of the ready transfers (those bounded by `max_bytes`).
    pub fn ready_bytes(&self) -> usize {
        self.by_fee.len() * ENTRY_BYTES
    }

    /// Bytes of the transfers waiting for an earlier nonce.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting.len() * ENTRY_BYTES
    }

    pub fn max_bytes(&self) -> usize {
        self.config.max_bytes
    }

    pub fn max_waiting_bytes(&self) -> usize {
        self.config.max_waiting_bytes
    }

    /// How many transfers wait for an earlier nonce.
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub fn get(&self, id: &TxId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.entries.contains_key(id)
    }

    /// Every pending transfer with its id, in no particular order.
    pub fn transfers(&self) -> impl Iterator<Item = (&TxId, &SignedTransfer)> {
        self.entries.iter().map(|(id, e)| (id, &e.tx))
    }

    /// The lowest fee a new transfer can pay and enter now.
    pub fn min_fee(&self) -> Amount {
        if self.ready_bytes() + ENTRY_BYTES <= self.config.max_bytes {
            return self.min_fee;
        }
        match self.by_fee.first() {
            Some((fee, _, _)) => fee
                .checked_add(Amount(1))
                .unwrap_or(Amount::MAX)
                .max(self.min_fee),
            None => self.min_fee,
        }
    }

    /// The nonce the sender's next transfer should carry: the account nonce
    /// plus the pending transfers that follow it without a gap.
    pub fn next_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
        let mut next = account_nonce;
        if let Some(q) = self.by_sender.get(sender) {
            for n in q.range(account_nonce..).map(|(n, _)| *n) {
                if n != next {
                    break;
                }
                next += 1;
            }
        }
        next
    }

    /// Sum of amount plus fee of the sender's pending transfers.
    pub fn pending_spend(&self, sender: &Address) -> Amount {
        self.by_sender.get(sender).map_or(Amount::ZERO, |q| {
            q.values()
                .filter_map(|id| self.entries.get(id))
                .fold(Amount::ZERO, |acc, e| {
                    acc.checked_add(e.cost()).unwrap_or(Amount::MAX)
                })
        })
    }

    /// Up to `limit` pending ids: ready ones by fee, then waiting ones by fee.
    pub fn best_ids(&self, limit: usize) -> Vec<TxId> {
        self.by_fee
            .iter()
            .rev()
            .chain(self.waiting.iter().rev())
            .take(limit)
            .map(|k| k.2)
            .collect()
    }

    /// Pending transfers sent by or to `address`.
    pub fn involving(&self, address: &Address) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.sender == *address || e.tx.transfer.to == *address)
            .collect();
        out.sort_by_key(|e| Reverse(e.seq));
        out
    }

    /// Up to `limit` pending transfers, highest fee first, each with the
    /// nonce it waits for: `None` when it is ready (its nonce follows the
    /// sender's confirmed nonce without a gap), else the first missing nonce
    /// of its sender. Reads only.
    pub fn entries_with_state(
        &self,
        account_nonce: impl Fn(&Address) -> u64,
        limit: usize,
    ) -> Vec<(&Entry, Option<u64>)> {
        let mut first_missing: HashMap<Address, u64> = HashMap::new();
        let mut out = Vec::with_capacity(limit.min(self.entries.len()));
        let mut ready = self.by_fee.iter().rev().peekable();
        let mut waiting = self.waiting.iter().rev().peekable();
        let by_fee_desc = std::iter::from_fn(|| match (ready.peek(), waiting.peek()) {
            (Some(r), Some(w)) if w > r => waiting.next(),
            (Some(_), _) => ready.next(),
            (None, _) => waiting.next(),
        });
        for (_, _, id) in by_fee_desc.take(limit) {
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            let missing = *first_missing.entry(e.sender).or_insert_with(|| {
                let mut next = account_nonce(&e.sender);
                if let Some(q) = self.by_sender.get(&e.sender) {
                    while q.contains_key(&next) {
                        match next.checked_add(1) {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                }
                next
            });
            out.push((e, (e.nonce() >= missing).then_some(missing)));
        }
        out
    }

    /// Adds a transfer whose stateless rules and signature already passed,
    /// given the sender's confirmed `account`. On error nothing changes.
    pub fn insert(
        &mut self,
        tx: SignedTransfer,
        id: TxId,
        account: Account,
        now_ms: u64,
    ) -> Result<Inserted, MempoolError> {
        if self.entries.contains_key(&id) {
            return Err(MempoolError::Duplicate(id));
        }
        let sender = tx.sender();
        let t = tx.transfer;
        if t.nonce < account.nonce {
            return Err(MempoolError::NonceTooLow {
                nonce: t.nonce,
                account_nonce: account.nonce,
            });
        }
        if t.nonce - account.nonce > self.config.max_nonce_gap {
            return Err(MempoolError::NonceTooHigh {
                nonce: t.nonce,
                account_nonce: account.nonce,
                max_gap: self.config.max_nonce_gap,
            });
        }
        let queue = self.by_sender.get(&sender);
        let replaced = queue.and_then(|q| q.get(&t.nonce)).copied();
        if let Some(old_id) = replaced {
            let old_fee = self.entries[&old_id].fee();
            let bump = (old_fee.0 / 100)
                .saturating_mul(self.config.replace_bump_percent)
                .max(1);
            let required = Amount(old_fee.0.saturating_add(bump));
            if t.fee < required {
                return Err(MempoolError::ReplacementUnderpriced {
                    nonce: t.nonce,
                    old_fee,
                    required,
                });
            }
        }
        let others = queue.map_or(0, |q| q.len()) - usize::from(replaced.is_some());
        if others >= self.config.max_per_sender {
            return Err(MempoolError::SenderLimit { count: others });
        }
        let mut pending = self.pending_spend(&sender);
        if let Some(old) = replaced {
            pending = pending
                .checked_sub(self.entries[&old].cost())
                .unwrap_or(Amount::ZERO);
        }
        let cost = t.total_cost().unwrap_or(Amount::MAX);
        let needed = pending.checked_add(cost).unwrap_or(Amount::MAX);
        if needed > account.balance {
            return Err(MempoolError::InsufficientBalance {
                balance: account.balance,
                needed,
                pending,
            });
        }
        // ready when every nonce from the account's up to this one is pending
        let ready = (account.nonce..t.nonce).all(|n| queue.is_some_and(|q| q.contains_key(&n)));
        // room: plan evictions first, so a refusal changes nothing
        let mut evicted = Vec::new();
        if replaced.is_none() {
            evicted = if ready {
                self.plan_room(true, t.fee, &sender)
                    .map_err(|min_fee| MempoolError::Full { min_fee })?
            } else {
                self.plan_room(false, t.fee, &sender).map_err(|min_fee| {
                    MempoolError::WaitingFull {
                        nonce: t.nonce,
                        next_nonce: self.next_nonce(&sender, account.nonce),
                        min_fee,
                    }
                })?
            };
        }
        for v in &evicted {
            self.remove(v);
        }
        if let Some(old) = replaced {
            self.remove(&old);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(t.nonce, id);
        self.account_nonces.insert(sender, account.nonce);
        let entry = Entry {
            tx,
            id,
            sender,
            added_ms: now_ms,
            seq,
            ready,
        };
        if ready {
            self.by_fee.insert(entry.fee_key());
        } else {
            self.waiting.insert(entry.fee_key());
        }
        self.entries.insert(id, entry);
        if ready {
            // it may close a gap: the transfers after it become ready, and
            // the ready pool makes room for them (never at this one's cost)
            self.restate(&sender);
            evicted.extend(self.enforce_bounds(Some((sender, t.nonce))));
        }
        Ok(Inserted { replaced, evicted })
    }

    /// The transfers to evict so that one more fits among the ready
    /// (`ready`) or the waiting ones, given the newcomer's fee; or the fee
    /// the newcomer would need. Only other senders' cheaper transfers are
    /// evicted, each with its sender's later nonces.
    fn plan_room(&self, ready: bool, fee: Amount, sender: &Address) -> Result<Vec<TxId>, Amount> {
        let (set, max) = if ready {
            (&self.by_fee, self.config.max_bytes)
        } else {
            (&self.waiting, self.config.max_waiting_bytes)
        };
        let mut free = max.saturating_sub(set.len() * ENTRY_BYTES);
        let mut planned = std::collections::HashSet::new();
        let mut evict = Vec::new();
        for (victim_fee, _, victim) in set.iter() {
            if free >= ENTRY_BYTES {
                break;
            }
            if planned.contains(victim) {
                continue;
            }
            if *victim_fee >= fee || self.entries[victim].sender == *sender {
                return Err(victim_fee
                    .checked_add(Amount(1))
                    .unwrap_or(Amount::MAX)
                    .max(self.min_fee));
            }
            for d in self.with_descendants(victim) {
                if planned.insert(d) {
                    if self.entries[&d].ready == ready {
                        free += ENTRY_BYTES;
                    }
                    evict.push(d);
                }
            }
        }
        if free < ENTRY_BYTES {
            return Err(if ready { self.min_fee() } else { self.min_fee });
        }
        Ok(evict)
    }

    /// Marks the sender's transfers ready or waiting from its account nonce.
    fn restate(&mut self, sender: &Address) {
        let Some(q) = self.by_sender.get(sender) else {
            return;
        };
        let mut next = self.account_nonces.get(sender).copied().unwrap_or(0);
        let mut moves = Vec::new();
        for (&nonce, id) in q {
            let ready = nonce == next;
            if ready {
                next = nonce.saturating_add(1);
            }
            if self.entries[id].ready != ready {
                moves.push(*id);
            }
        }
        for id in moves {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            let key = e.fee_key();
            e.ready = !e.ready;
            if e.ready {
                self.waiting.remove(&key);
                self.by_fee.insert(key);
            } else {
                self.by_fee.remove(&key);
                self.waiting.insert(key);
            }
        }
    }

    /// Evicts the lowest-fee transfers (with their sender's later nonces)
    /// while the ready or the waiting transfers exceed their bound, sparing
    /// `protect`'s sender's transfers up to that nonce. Returns the evicted.
    fn enforce_bounds(&mut self, protect: Option<(Address, u64)>) -> Vec<TxId> {
        let mut out = Vec::new();
        for ready in [true, false] {
            loop {
                let (set, max) = if ready {
                    (&self.by_fee, self.config.max_bytes)
                } else {
                    (&self.waiting, self.config.max_waiting_bytes)
                };
                if set.len() * ENTRY_BYTES <= max {
                    break;
                }
                let victim = set.iter().map(|k| k.2).find(|id| {
                    let e = &self.entries[id];
                    !matches!(protect, Some((s, n)) if e.sender == s && e.nonce() <= n)
                });
                let Some(victim) = victim else {
                    break;
                };
                for d in self.with_descendants(&victim) {
                    if self.remove(&d).is_some() {
                        out.push(d);
                    }
                }
            }
        }
        out
    }

    /// `id` and the same sender's pending transfers with higher nonces.
    fn with_descendants(&self, id: &TxId) -> Vec<TxId> {
        let Some(e) = self.entries.get(id) else {
            return vec![];
        };
        self.by_sender
            .get(&e.sender)
            .map(|q| q.range(e.nonce()..).map(|(_, id)| *id).collect())
            .unwrap_or_default()
    }

    /// Removes one transfer.
    pub fn remove(&mut self, id: &TxId) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        if e.ready {
            self.by_fee.remove(&e.fee_key());
        } else {
            self.waiting.remove(&e.fee_key());
        }
        if let Some(q) = self.by_sender.get_mut(&e.sender) {
            q.remove(&e.nonce());
            if q.is_empty() {
                self.by_sender.remove(&e.sender);
                self.account_nonces.remove(&e.sender);
            }
        }
        Some(e)
    }

    /// After a block is connected: drops its transfers and, for every
    /// sender whose account changed, transfers whose nonce is now used and
    /// those the balance no longer covers. Returns how many were dropped.
    pub fn remove_confirmed(
        &mut self,
        transfers: &[SignedTransfer],
        account: impl Fn(&Address) -> Account,
    ) -> usize {
        let keys: Vec<(TxId, Address)> = transfers.iter().map(|t| (t.id(), t.sender())).collect();
        self.remove_confirmed_keys(&keys, account)
    }

    /// [`Mempool::remove_confirmed`] given each confirmed transfer's id and
    /// sender (computed before the pool is locked: they are hashes).
    pub fn remove_confirmed_keys(
        &mut self,
        confirmed: &[(TxId, Address)],
        account: impl Fn(&Address) -> Account,
    ) -> usize {
        let before = self.len();
        let mut senders = Vec::with_capacity(confirmed.len());
        for (id, sender) in confirmed {
            self.remove(id);
            senders.push(*sender);
        }
        senders.sort_unstable();
        senders.dedup();
        for s in senders {
            self.revalidate_sender(&s, account(&s));
        }
        before - self.len()
    }

    /// Drops the sender's transfers below its nonce, and those (with all
    /// later nonces) that its balance no longer covers; the rest become
    /// ready or waiting from the new nonce.
    pub fn revalidate_sender(&mut self, sender: &Address, account: Account) {
        let Some(q) = self.by_sender.get(sender) else {
            return;
        };
        self.account_nonces.insert(*sender, account.nonce);
        let stale: Vec<TxId> = q.range(..account.nonce).map(|(_, id)| *id).collect();
        let mut spent = Amount::ZERO;
        let mut unaffordable = Vec::new();
        for (_, id) in q.range(account.nonce..) {
            let cost = self.entries[id].cost();
            match spent.checked_add(cost) {
                Some(s) if s <= account.balance && unaffordable.is_empty() => spent = s,
                _ => unaffordable.push(*id),
            }
        }
        for id in stale.iter().chain(&unaffordable) {
            self.remove(id);
        }
        self.restate(sender);
        self.enforce_bounds(None);
    }

    /// Drops transfers older than the expiry, with their later nonces.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let old: Vec<TxId> = self
            .entries
            .values()
            .filter(|e| now_ms.saturating_sub(e.added_ms) > self.config.expiry_ms)
            .map(|e| e.id)
            .collect();
        let mut n = 0;
        for id in old {
            for d in self.with_descendants(&id) {
                if self.remove(&d).is_some() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Ready transfers in template order: highest fee first across senders,
    /// each sender's in nonce order starting at its account nonce. `take`
    /// is called for each candidate and returns whether it was used; a
    /// sender whose transfer is not used contributes nothing more. Stops
    /// after `max` used transfers.
    pub fn select(
        &self,
        account_nonce: impl Fn(&Address) -> u64,
        max: usize,
        mut take: impl FnMut(&SignedTransfer) -> bool,
    ) -> usize {
        let mut heap = BinaryHeap::new();
        for (sender, q) in &self.by_sender {
            let n = account_nonce(sender);
            if let Some(id) = q.get(&n) {
                let e = &self.entries[id];
                heap.push((e.fee(), Reverse(e.seq), *sender, n));
            }
        }
        let mut used = 0;
        while used < max {
            let Some((_, _, sender, nonce)) = heap.pop() else {
                break;
            };
            let q = &self.by_sender[&sender];
            let e = &self.entries[&q[&nonce]];
            if !take(&e.tx) {
                continue;
            }
            used += 1;
            if let Some(next_id) = q.get(&(nonce + 1)) {
                let n = &self.entries[next_id];
                heap.push((n.fee(), Reverse(n.seq), sender, nonce + 1));
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::testkit::{self, address};
    use cairn_consensus::transfer::public_key;
    use cairn_consensus::{COIN, Transfer};

    fn tx(from: u64, nonce: u64, fee: u64) -> SignedTransfer {
        let k = testkit::key(from);
        Transfer {
            chain_id: 1,
            from: public_key(&k),
            to: address(99),
            amount: Amount(COIN),
            fee: Amount(fee),
            nonce,
        }
        .sign(&k)
    }

    fn rich() -> Account {
        Account {
            balance: Amount(1000 * COIN),
            nonce: 0,
        }
    }

    fn pool() -> Mempool {
        Mempool::new(MempoolConfig::default(), Amount(1))
    }

    fn add(p: &mut Mempool, t: SignedTransfer, acc: Account) -> Result<Inserted, MempoolError> {
        p.insert(t, t.id(), acc, 0)
    }

    #[test]
    fn gaps_wait_and_fill() {
        let mut p = pool();
        add(&mut p, tx(1, 2, 10), rich()).unwrap();
        assert_eq!(p.next_nonce(&address(1), 0), 0);
        let mut taken = vec![];
        p.select(
            |_| 0,
            10,
            |t| {
                taken.push(t.transfer.nonce);
                true
            },
        );
        assert!(taken.is_empty(), "nonce 2 waits for 0 and 1");
        add(&mut p, tx(1, 0, 10), rich()).unwrap();
        add(&mut p, tx(1, 1, 10), rich()).unwrap();
        assert_eq!(p.next_nonce(&address(1), 0), 3);
        p.select(
            |_| 0,
            10,
            |t| {
                taken.push(t.transfer.nonce);
                true
            },
        );
        assert_eq!(taken, vec![0, 1, 2]);
    }

    #[test]
    fn rejections_name_the_reason() {
        let mut p = pool();
        let acc = Account {
            balance: Amount(3 * COIN),
            nonce: 5,
        };
        assert!(matches!(
            add(&mut p, tx(1, 4, 10), acc),
            Err(MempoolError::NonceTooLow {
                nonce: 4,
                account_nonce: 5
            })
        ));
        assert!(matches!(
            add(&mut p, tx(1, 5 + 65, 10), acc),
            Err(MempoolError::NonceTooHigh { .. })
        ));
        let t = tx(1, 5, 10);
        add(&mut p, t, acc).unwrap();
        assert_eq!(add(&mut p, t, acc), Err(MempoolError::Duplicate(t.id())));
        add(&mut p, tx(1, 6, 10), acc).unwrap();
        // a third coin plus fees is beyond the balance, counting pending spends
        match add(&mut p, tx(1, 7, 10), acc) {
            Err(MempoolError::InsufficientBalance { pending, .. }) => {
                assert_eq!(pending, Amount(2 * COIN + 20))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            add(&mut p, tx(1, 5, 10), acc),
            Err(MempoolError::Duplicate(_))
        ));
        assert!(
            add(&mut p, tx(1, 5, 10_000), acc)
                .unwrap()
                .replaced
                .is_some()
        );
        assert!(matches!(
            add(&mut p, tx(1, 5, 10_500), acc),
            Err(MempoolError::ReplacementUnderpriced {
                required: Amount(11_000),
                ..
            })
        ));
    }

    #[test]
    fn full_pool_evicts_lowest_fee_or_refuses() {
        let config = MempoolConfig {
            max_bytes: 3 * ENTRY_BYTES,
            ..MempoolConfig::default()
        };
        let mut p = Mempool::new(config, Amount(1));
        add(&mut p, tx(1, 0, 5), rich()).unwrap();
        add(&mut p, tx(1, 1, 50), rich()).unwrap();
        add(&mut p, tx(2, 0, 20), rich()).unwrap();
        assert_eq!(p.min_fee(), Amount(6));
        assert_eq!(
            add(&mut p, tx(3, 0, 5), rich()),
            Err(MempoolError::Full { min_fee: Amount(6) })
        );
        // evicting sender 1's nonce 0 takes its nonce 1 too
        let r = add(&mut p, tx(3, 0, 6), rich()).unwrap();
        assert_eq!(r.evicted.len(), 2);
        assert_eq!(p.len(), 2);
    }

    fn small_pool(ready: usize, waiting: usize) -> Mempool {
        let config = MempoolConfig {
            max_bytes: ready * ENTRY_BYTES,
            max_waiting_bytes: waiting * ENTRY_BYTES,
            ..MempoolConfig::default()
        };
        Mempool::new(config, Amount(1))
    }

    #[test]
    fn waiting_transfers_never_raise_the_quoted_fee() {
        let mut p = small_pool(2, 3);
        // one sender fills the waiting pool with high-fee gap transfers
        for n in 1..=3 {
            add(&mut p, tx(1, n, 1_000), rich()).unwrap();
        }
        assert_eq!(p.waiting_bytes(), 3 * ENTRY_BYTES);
        assert_eq!(p.ready_bytes(), 0);
        assert_eq!(p.min_fee(), Amount(1), "nothing ready: the floor holds");
        // everyone else still enters at the floor
        add(&mut p, tx(2, 0, 1), rich()).unwrap();
        add(&mut p, tx(3, 0, 1), rich()).unwrap();
        // a fourth waiting transfer from another sender must outbid the
        // cheapest waiting one, and is told so
        match add(&mut p, tx(4, 5, 500), rich()) {
            Err(MempoolError::WaitingFull {
                nonce: 5,
                next_nonce: 0,
                min_fee,
            }) => assert_eq!(min_fee, Amount(1_001)),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.len(), 5, "a refusal changes nothing");
        // outbidding evicts the cheapest waiting transfer (among equal fees
        // the newest: sender 1's last nonce, so its earlier ones stay whole)
        let r = add(&mut p, tx(4, 5, 2_000), rich()).unwrap();
        assert_eq!(r.evicted, vec![tx(1, 3, 1_000).id()]);
        assert_eq!(p.waiting_bytes(), 3 * ENTRY_BYTES);
        // the ready pool is full at fee 1: the quote is 2, whatever waits
        assert_eq!(p.min_fee(), Amount(2));
    }

    #[test]
    fn a_filled_gap_promotes_and_the_ready_bound_holds() {
        let mut p = small_pool(3, 4);
        add(&mut p, tx(2, 0, 5), rich()).unwrap();
        add(&mut p, tx(3, 0, 6), rich()).unwrap();
        add(&mut p, tx(1, 1, 100), rich()).unwrap();
        add(&mut p, tx(1, 2, 100), rich()).unwrap();
        assert_eq!(
            (p.ready_bytes(), p.waiting_bytes()),
            (2 * ENTRY_BYTES, 2 * ENTRY_BYTES)
        );
        // nonce 0 closes the gap: 1 and 2 become ready; the ready pool
        // evicts the cheapest others to stay within three entries
        let r = add(&mut p, tx(1, 0, 50), rich()).unwrap();
        assert_eq!(p.waiting_bytes(), 0);
        assert_eq!(p.ready_bytes(), 3 * ENTRY_BYTES);
        let mut evicted = r.evicted.clone();
        evicted.sort();
        let mut expected = vec![tx(2, 0, 5).id(), tx(3, 0, 6).id()];
        expected.sort();
        assert_eq!(evicted, expected);
        let mut taken = vec![];
        p.select(
            |_| 0,
            10,
            |t| {
                taken.push(t.transfer.nonce);
                true
            },
        );
        assert_eq!(taken, vec![0, 1, 2]);
    }

    #[test]
    fn a_confirmed_nonce_promotes_waiting_transfers() {
        let mut p = small_pool(10, 10);
        add(&mut p, tx(1, 1, 10), rich()).unwrap();
        assert_eq!(p.waiting_bytes(), ENTRY_BYTES);
        // the account's nonce 0 was mined elsewhere: nonce 1 is now next
        p.revalidate_sender(
            &address(1),
            Account {
                balance: Amount(1000 * COIN),
                nonce: 1,
            },
        );
        assert_eq!((p.ready_bytes(), p.waiting_bytes()), (ENTRY_BYTES, 0));
    }

    /// Every entry sits in the set its readiness says, and readiness is
    /// exactly "no gap from the sender's account nonce".
    fn check_invariants(p: &Mempool) {
        assert_eq!(p.by_fee.len() + p.waiting.len(), p.entries.len());
        for (sender, q) in &p.by_sender {
            let mut next = p.account_nonces[sender];
            for (&nonce, id) in q {
                let e = &p.entries[id];
                let ready = nonce == next;
                if ready {
                    next += 1;
                }
                assert_eq!(e.ready, ready, "nonce {nonce} of {sender:?}");
                let set = if ready { &p.by_fee } else { &p.waiting };
                assert!(set.contains(&e.fee_key()));
            }
        }
        assert!(p.waiting_bytes() <= p.config.max_waiting_bytes);
    }

    #[test]
    fn random_operations_keep_the_sets_consistent() {
        let mut p = small_pool(12, 6);
        let mut nonces = [0u64; 5];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let r = next();
            let sender = (r % 5) as usize;
            let account = Account {
                balance: Amount(1000 * COIN),
                nonce: nonces[sender],
            };
            if r % 11 == 0 {
                // a block confirmed the sender's next nonce
                nonces[sender] += 1;
                p.revalidate_sender(
                    &address(sender as u64 + 1),
                    Account {
                        nonce: nonces[sender],
                        ..account
                    },
                );
            } else {
                let nonce = nonces[sender] + (r >> 8) % 6;
                let fee = 1 + (r >> 16) % 50;
                let _ = add(&mut p, tx(sender as u64 + 1, nonce, fee), account);
            }
            check_invariants(&p);
        }
    }

    #[test]
    fn selection_is_by_fee_across_senders_in_nonce_order() {
        let mut p = pool();
        add(&mut p, tx(1, 0, 5), rich()).unwrap();
        add(&mut p, tx(1, 1, 100), rich()).unwrap();
        add(&mut p, tx(2, 0, 50), rich()).unwrap();
        let mut order = vec![];
        p.select(
            |_| 0,
            10,
            |t| {
                order.push((t.transfer.fee.0, t.transfer.nonce));
                true
            },
        );
        assert_eq!(order, vec![(50, 0), (5, 0), (100, 1)]);
        let mut two = 0;
        assert_eq!(
            p.select(
                |_| 0,
                2,
                |_| {
                    two += 1;
                    true
                }
            ),
            2
        );
    }

    #[test]
    fn confirmed_and_stale_leave() {
        let mut p = pool();
        let a = tx(1, 0, 5);
        let b = tx(1, 1, 5);
        add(&mut p, a, rich()).unwrap();
        add(&mut p, b, rich()).unwrap();
        add(&mut p, tx(2, 0, 5), rich()).unwrap();
        // a block confirms a conflicting nonce-0 and nonce-1 from sender 1
        let conflicting = tx(1, 0, 7);
        let after = Account {
            balance: Amount(10 * COIN),
            nonce: 2,
        };
        let dropped = p.remove_confirmed(&[conflicting], |_| after);
        assert_eq!(dropped, 2);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn expiry_drops_old_transfers() {
        let mut p = pool();
        p.insert(tx(1, 0, 5), tx(1, 0, 5).id(), rich(), 0).unwrap();
        p.insert(tx(2, 0, 5), tx(2, 0, 5).id(), rich(), 10_000_000)
            .unwrap();
        assert_eq!(p.expire(3 * 3600 * 1000 + 1), 1);
        assert_eq!(p.len(), 1);
    }
}
