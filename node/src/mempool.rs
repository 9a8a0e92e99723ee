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
//! - The pool is sharded by sender: a submission locks only its sender's
//!   shard unless a bound is reached (see [`Mempool`]).
//!
//! The pool reads no store: callers pass the sender's confirmed account,
//! or a function that reads it. Every rejection says what to change.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_utils::CachePadded;
use itertools::Itertools;

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

const ENTRY_BYTES: usize = SIGNED_TRANSFER_BYTES;

/// How many shards the senders are spread over by default. A submission
/// that finds its shard held sleeps on it (microseconds), so shards are
/// many; the whole-pool path locks every one, which costs about 1 us at
/// 64 (benches/mempool.rs prints it), once per block, template or listing,
/// and per submission only while the pool is full.
pub const SHARDS: usize = 64;

/// The shard of `shards` that holds `sender`'s transfers (addresses are
/// hashes).
fn shard_of(sender: &Address, shards: usize) -> usize {
    usize::from(u16::from_le_bytes([sender.0[0], sender.0[1]])) % shards
}

/// The pool, sharded by sender.
///
/// Everything about one sender (its transfers by nonce, its confirmed
/// nonce, the readiness of each transfer) lives in that sender's shard, so
/// a submission locks only its sender's shard when the pool has room: the
/// byte bounds are kept by reserving room in two counters that cover all
/// shards. Whatever needs the whole pool (eviction when a bound is reached,
/// the quoted fee, templates, the clean-up after a block, listings) locks
/// every shard, in order, through [`Mempool::lock`] and runs on a [`Pool`];
/// an insert that cannot reserve room takes that path. Both paths give the
/// same result for the same pool: the one-shard path is taken only where
/// the whole-pool algorithm would evict nothing.
pub struct Mempool {
    config: MempoolConfig,
    min_fee: Amount,
    /// Each on its own cache line, as are the counters: cores that work on
    /// different shards share nothing but the counters.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Ready and waiting entries in all shards. Changed only by a holder of
    /// the shard that changes; exact whenever every shard is held.
    ready_len: CachePadded<AtomicUsize>,
    waiting_len: CachePadded<AtomicUsize>,
    next_seq: CachePadded<AtomicU64>,
}

/// One shard: the transfers of the senders that hash to it.
#[derive(Default)]
struct Shard {
    entries: HashMap<TxId, Entry>,
    by_sender: HashMap<Address, BTreeMap<u64, TxId>>,
    /// Each sender's confirmed account nonce, as last given by the caller.
    account_nonces: HashMap<Address, u64>,
    /// Ready entries in eviction order.
    by_fee: BTreeSet<FeeKey>,
    /// Waiting entries in eviction order.
    waiting: BTreeSet<FeeKey>,
}

/// What the per-sender rules decided about a newcomer; room is separate.
struct Admission {
    sender: Address,
    replaced: Option<TxId>,
    /// Every nonce from the account's to the newcomer's is pending.
    ready: bool,
    /// The waiting transfers right after it that it would make ready.
    promotes: usize,
}

impl Mempool {
    pub fn new(config: MempoolConfig, min_fee: Amount) -> Mempool {
        Mempool::with_shards(config, min_fee, SHARDS)
    }

    /// A pool of `shards` shards (at least one; one is a single lock, as
    /// benchmarks compare). Decisions never depend on the count.
    pub fn with_shards(config: MempoolConfig, min_fee: Amount, shards: usize) -> Mempool {
        Mempool {
            config,
            min_fee,
            shards: (0..shards.max(1)).map(|_| CachePadded::default()).collect(),
            ready_len: CachePadded::default(),
            waiting_len: CachePadded::default(),
            next_seq: CachePadded::default(),
        }
    }

    /// The whole pool, every shard locked (in shard order, so two callers
    /// never deadlock; a one-shard submission holds no other lock).
    pub fn lock(&self) -> Pool<'_> {
        Pool {
            pool: self,
            shards: self.shards.iter().map(|s| crate::lock(s)).collect(),
        }
    }

    /// Pending transfers; exact only when nothing is being submitted.
    pub fn len(&self) -> usize {
        self.ready_len.load(Ordering::Acquire) + self.waiting_len.load(Ordering::Acquire)
    }

    /// Whether nothing is pending; a hint, like [`Mempool::len`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For each id, the pending transfer; one shard locked at a time (the
    /// id does not say which shard holds it).
    pub fn get_each(&self, ids: &[TxId]) -> Vec<Option<SignedTransfer>> {
        let mut out = vec![None; ids.len()];
        for shard in self.shards.iter() {
            let shard = crate::lock(shard);
            for (found, id) in out.iter_mut().zip(ids) {
                if found.is_none() {
                    *found = shard.entries.get(id).map(|e| e.tx);
                }
            }
        }
        out
    }

    /// Adds a transfer whose stateless rules and signature already passed,
    /// given the sender's confirmed `account`. On error nothing changes.
    pub fn insert(
        &self,
        tx: SignedTransfer,
        id: TxId,
        account: Account,
        now_ms: u64,
    ) -> Result<Inserted, MempoolError> {
        self.insert_with(tx, id, now_ms, |_| {
            Ok::<_, std::convert::Infallible>(account)
        })
        .unwrap_or_else(|never| match never {})
    }

    /// [`Mempool::insert`], reading the sender's confirmed account with
    /// `account` while the sender's transfers are locked: the caller's
    /// clean-up after a block (which holds the whole pool) can then never
    /// fall between the read and the insert.
    pub fn insert_with<E>(
        &self,
        tx: SignedTransfer,
        id: TxId,
        now_ms: u64,
        mut account: impl FnMut(&Address) -> Result<Account, E>,
    ) -> Result<Result<Inserted, MempoolError>, E> {
        let sender = tx.sender();
        {
            let mut shard = crate::lock(&self.shards[shard_of(&sender, self.shards.len())]);
            if shard.entries.contains_key(&id) {
                return Ok(Err(MempoolError::Duplicate(id)));
            }
            let account = account(&sender)?;
            let admission = match shard.admit(&self.config, &tx, id, account) {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
            // a confirmed nonce that moved would restate the sender's other
            // transfers: that, and a lack of room, is the whole pool's work
            let same_nonce = shard
                .account_nonces
                .get(&sender)
                .is_none_or(|n| *n == account.nonce);
            if same_nonce && self.reserve(&admission) {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                let before = (shard.by_fee.len(), shard.waiting.len());
                shard.put(&admission, tx, id, account.nonce, now_ms, seq);
                // the reservation is exact (see `reserve`); should it ever
                // not be, the counters still follow the shard
                let expected = match (admission.replaced, admission.ready) {
                    (Some(_), _) => before,
                    (None, true) => (
                        before.0 + 1 + admission.promotes,
                        before.1.saturating_sub(admission.promotes),
                    ),
                    (None, false) => (before.0, before.1 + 1),
                };
                let after = (shard.by_fee.len(), shard.waiting.len());
                debug_assert_eq!(expected, after, "mempool reservation");
                adjust(&self.ready_len, expected.0, after.0);
                adjust(&self.waiting_len, expected.1, after.1);
                return Ok(Ok(Inserted {
                    replaced: admission.replaced,
                    evicted: Vec::new(),
                }));
            }
        }
        let mut pool = self.lock();
        let account = account(&sender)?;
        Ok(pool.insert(tx, id, account, now_ms))
    }

    /// Reserves room for `a` in the counters, if both bounds still hold
    /// with it; where they would not, the whole-pool path decides who
    /// leaves. With the sender's confirmed nonce unchanged, a ready
    /// newcomer adds itself and the waiting transfers it promotes to the
    /// ready set, a waiting one adds itself to the waiting set, and a
    /// replacement adds nothing.
    fn reserve(&self, a: &Admission) -> bool {
        if a.replaced.is_some() {
            return true;
        }
        let (counter, add, max) = if a.ready {
            (&self.ready_len, 1 + a.promotes, self.config.max_bytes)
        } else {
            (&self.waiting_len, 1, self.config.max_waiting_bytes)
        };
        let max = max / ENTRY_BYTES;
        let reserved = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            n.checked_add(add).filter(|m| *m <= max)
        });
        if reserved.is_ok() && a.ready {
            // the promoted ones leave the waiting set: never below zero,
            // since they are counted there under this (locked) shard
            self.waiting_len.fetch_sub(a.promotes, Ordering::AcqRel);
        }
        reserved.is_ok()
    }
}

/// Moves `counter` by `actual - expected` (both computed under the lock
/// of the shard whose entries they count).
fn adjust(counter: &AtomicUsize, expected: usize, actual: usize) {
    if actual > expected {
        counter.fetch_add(actual - expected, Ordering::AcqRel);
    } else if expected > actual {
        counter.fetch_sub(expected - actual, Ordering::AcqRel);
    }
}

impl Shard {
    fn set(&self, ready: bool) -> &BTreeSet<FeeKey> {
        if ready { &self.by_fee } else { &self.waiting }
    }

    fn next_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
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

    fn pending_spend(&self, sender: &Address) -> Amount {
        self.by_sender.get(sender).map_or(Amount::ZERO, |q| {
            q.values()
                .filter_map(|id| self.entries.get(id))
                .fold(Amount::ZERO, |acc, e| {
                    acc.checked_add(e.cost()).unwrap_or(Amount::MAX)
                })
        })
    }

    /// The per-sender rules for a newcomer: everything but room.
    fn admit(
        &self,
        config: &MempoolConfig,
        tx: &SignedTransfer,
        id: TxId,
        account: Account,
    ) -> Result<Admission, MempoolError> {
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
        if t.nonce - account.nonce > config.max_nonce_gap {
            return Err(MempoolError::NonceTooHigh {
                nonce: t.nonce,
                account_nonce: account.nonce,
                max_gap: config.max_nonce_gap,
            });
        }
        let queue = self.by_sender.get(&sender);
        let replaced = queue.and_then(|q| q.get(&t.nonce)).copied();
        if let Some(old_id) = replaced {
            let old_fee = self.entries[&old_id].fee();
            let bump = (old_fee.0 / 100)
                .saturating_mul(config.replace_bump_percent)
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
        if others >= config.max_per_sender {
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
        let promotes = match (ready, replaced, queue) {
            (true, None, Some(q)) => q
                .range(t.nonce.saturating_add(1)..)
                .zip(t.nonce.saturating_add(1)..)
                .take_while(|((n, _), want)| *n == want)
                .count(),
            _ => 0,
        };
        Ok(Admission {
            sender,
            replaced,
            ready,
            promotes,
        })
    }

    /// Adds an admitted transfer (after room was made), replacing the one
    /// it replaces, and restates its sender's transfers from the account
    /// nonce (a ready one makes the transfers after it ready).
    fn put(
        &mut self,
        a: &Admission,
        tx: SignedTransfer,
        id: TxId,
        account_nonce: u64,
        now_ms: u64,
        seq: u64,
    ) {
        if let Some(old) = a.replaced {
            self.remove(&old);
        }
        self.by_sender
            .entry(a.sender)
            .or_default()
            .insert(tx.transfer.nonce, id);
        self.account_nonces.insert(a.sender, account_nonce);
        let entry = Entry {
            tx,
            id,
            sender: a.sender,
            added_ms: now_ms,
            seq,
            ready: a.ready,
        };
        if a.ready {
            self.by_fee.insert(entry.fee_key());
        } else {
            self.waiting.insert(entry.fee_key());
        }
        self.entries.insert(id, entry);
        self.restate(&a.sender);
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

    fn remove(&mut self, id: &TxId) -> Option<Entry> {
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

    /// Drops the sender's transfers below its nonce, and those (with all
    /// later nonces) that its balance no longer covers; the rest become
    /// ready or waiting from the new nonce. Bounds are the caller's.
    fn revalidate_sender(&mut self, sender: &Address, account: Account) {
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
    }
}

/// The whole pool, every shard locked ([`Mempool::lock`]). The counters
/// are brought back to the shards' sizes when it is dropped.
pub struct Pool<'a> {
    pool: &'a Mempool,
    shards: Vec<MutexGuard<'a, Shard>>,
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        let (ready, waiting) = (self.ready_len(), self.waiting_len());
        self.pool.ready_len.store(ready, Ordering::Release);
        self.pool.waiting_len.store(waiting, Ordering::Release);
    }
}

impl Pool<'_> {
    fn config(&self) -> &MempoolConfig {
        &self.pool.config
    }

    fn shard(&self, sender: &Address) -> &Shard {
        &self.shards[shard_of(sender, self.shards.len())]
    }

    fn shard_mut(&mut self, sender: &Address) -> &mut Shard {
        let n = self.shards.len();
        &mut self.shards[shard_of(sender, n)]
    }

    /// The shard holding `id`, if it is pending.
    fn find(&self, id: &TxId) -> Option<usize> {
        self.shards.iter().position(|s| s.entries.contains_key(id))
    }

    fn ready_len(&self) -> usize {
        self.shards.iter().map(|s| s.by_fee.len()).sum()
    }

    /// How many transfers wait for an earlier nonce.
    pub fn waiting_len(&self) -> usize {
        self.shards.iter().map(|s| s.waiting.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.entries.is_empty())
    }

    /// Bytes of all pending transfers, ready and waiting.
    pub fn bytes(&self) -> usize {
        self.len() * ENTRY_BYTES
    }

    /// Bytes of the ready transfers (those bounded by `max_bytes`).
    pub fn ready_bytes(&self) -> usize {
        self.ready_len() * ENTRY_BYTES
    }

    /// Bytes of the transfers waiting for an earlier nonce.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_len() * ENTRY_BYTES
    }

    pub fn max_bytes(&self) -> usize {
        self.config().max_bytes
    }

    pub fn max_waiting_bytes(&self) -> usize {
        self.config().max_waiting_bytes
    }

    pub fn get(&self, id: &TxId) -> Option<&Entry> {
        self.shards.iter().find_map(|s| s.entries.get(id))
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.find(id).is_some()
    }

    /// Every pending transfer with its id, in no particular order.
    pub fn transfers(&self) -> impl Iterator<Item = (&TxId, &SignedTransfer)> {
        self.shards
            .iter()
            .flat_map(|s| s.entries.iter().map(|(id, e)| (id, &e.tx)))
    }

    /// The ready (or waiting) entries of all shards, lowest fee first, with
    /// their shard.
    fn ascending(&self, ready: bool) -> impl Iterator<Item = (usize, &FeeKey)> {
        self.shards
            .iter()
            .enumerate()
            .map(|(i, s)| s.set(ready).iter().map(move |k| (i, k)))
            .kmerge_by(|a, b| a.1 < b.1)
    }

    /// The ready (or waiting) entries of all shards, highest fee first.
    fn descending(&self, ready: bool) -> impl Iterator<Item = &FeeKey> {
        self.shards
            .iter()
            .map(|s| s.set(ready).iter().rev())
            .kmerge_by(|a, b| a > b)
    }

    /// The lowest fee a new transfer can pay and enter now.
    pub fn min_fee(&self) -> Amount {
        let floor = self.pool.min_fee;
        if self.ready_bytes() + ENTRY_BYTES <= self.config().max_bytes {
            return floor;
        }
        match self.ascending(true).next() {
            Some((_, (fee, _, _))) => fee.checked_add(Amount(1)).unwrap_or(Amount::MAX).max(floor),
            None => floor,
        }
    }

    /// The nonce the sender's next transfer should carry: the account nonce
    /// plus the pending transfers that follow it without a gap.
    pub fn next_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
        self.shard(sender).next_nonce(sender, account_nonce)
    }

    /// Sum of amount plus fee of the sender's pending transfers.
    pub fn pending_spend(&self, sender: &Address) -> Amount {
        self.shard(sender).pending_spend(sender)
    }

    /// The sender's account nonce as the pool last heard it (kept current
    /// by the clean-up after every block); 0 for a sender with nothing
    /// pending.
    pub fn confirmed_nonce(&self, sender: &Address) -> u64 {
        let shard = self.shard(sender);
        shard.account_nonces.get(sender).copied().unwrap_or(0)
    }

    /// Up to `limit` pending ids: ready ones by fee, then waiting ones by fee.
    pub fn best_ids(&self, limit: usize) -> Vec<TxId> {
        self.descending(true)
            .chain(self.descending(false))
            .take(limit)
            .map(|k| k.2)
            .collect()
    }

    /// Pending transfers sent by or to `address`.
    pub fn involving(&self, address: &Address) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = self
            .shards
            .iter()
            .flat_map(|s| s.entries.values())
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
        let mut out = Vec::with_capacity(limit.min(self.len()));
        let by_fee_desc = self
            .shards
            .iter()
            .flat_map(|s| [s.by_fee.iter().rev(), s.waiting.iter().rev()])
            .kmerge_by(|a, b| a > b);
        for (_, _, id) in by_fee_desc.take(limit) {
            let Some(e) = self.get(id) else {
                continue;
            };
            let missing = *first_missing.entry(e.sender).or_insert_with(|| {
                let mut next = account_nonce(&e.sender);
                if let Some(q) = self.shard(&e.sender).by_sender.get(&e.sender) {
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

    /// [`Mempool::insert`] on the whole pool: makes room by evicting
    /// cheaper transfers where a bound is reached. On error nothing changes.
    pub fn insert(
        &mut self,
        tx: SignedTransfer,
        id: TxId,
        account: Account,
        now_ms: u64,
    ) -> Result<Inserted, MempoolError> {
        let sender = tx.sender();
        let a = self.shard(&sender).admit(self.config(), &tx, id, account)?;
        let t = tx.transfer;
        // room: plan evictions first, so a refusal changes nothing
        let mut evicted = Vec::new();
        if a.replaced.is_none() {
            evicted = if a.ready {
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
        for (shard, v) in &evicted {
            self.shards[*shard].remove(v);
        }
        let seq = self.pool.next_seq.fetch_add(1, Ordering::Relaxed);
        self.shard_mut(&sender)
            .put(&a, tx, id, account.nonce, now_ms, seq);
        let mut evicted: Vec<TxId> = evicted.into_iter().map(|(_, id)| id).collect();
        // it may have closed a gap (or the account nonce moved): the ready
        // pool makes room for the transfers that became ready, never at
        // this one's cost
        evicted.extend(self.enforce_bounds(Some((sender, t.nonce))));
        Ok(Inserted {
            replaced: a.replaced,
            evicted,
        })
    }

    /// The transfers to evict (with their shards) so that one more fits
    /// among the ready (`ready`) or the waiting ones, given the newcomer's
    /// fee; or the fee the newcomer would need. Only other senders' cheaper
    /// transfers are evicted, each with its sender's later nonces.
    fn plan_room(
        &self,
        ready: bool,
        fee: Amount,
        sender: &Address,
    ) -> Result<Vec<(usize, TxId)>, Amount> {
        let (len, max) = if ready {
            (self.ready_len(), self.config().max_bytes)
        } else {
            (self.waiting_len(), self.config().max_waiting_bytes)
        };
        let mut free = max.saturating_sub(len * ENTRY_BYTES);
        let mut planned = std::collections::HashSet::new();
        let mut evict = Vec::new();
        for (shard, (victim_fee, _, victim)) in self.ascending(ready) {
            if free >= ENTRY_BYTES {
                break;
            }
            if planned.contains(victim) {
                continue;
            }
            let s = &self.shards[shard];
            if *victim_fee >= fee || s.entries[victim].sender == *sender {
                return Err(victim_fee
                    .checked_add(Amount(1))
                    .unwrap_or(Amount::MAX)
                    .max(self.pool.min_fee));
            }
            for d in s.with_descendants(victim) {
                if planned.insert(d) {
                    if s.entries[&d].ready == ready {
                        free += ENTRY_BYTES;
                    }
                    evict.push((shard, d));
                }
            }
        }
        if free < ENTRY_BYTES {
            return Err(if ready {
                self.min_fee()
            } else {
                self.pool.min_fee
            });
        }
        Ok(evict)
    }

    /// Evicts the lowest-fee transfers (with their sender's later nonces)
    /// while the ready or the waiting transfers exceed their bound, sparing
    /// `protect`'s sender's transfers up to that nonce. Returns the evicted.
    fn enforce_bounds(&mut self, protect: Option<(Address, u64)>) -> Vec<TxId> {
        let mut out = Vec::new();
        for ready in [true, false] {
            loop {
                let (len, max) = if ready {
                    (self.ready_len(), self.config().max_bytes)
                } else {
                    (self.waiting_len(), self.config().max_waiting_bytes)
                };
                if len * ENTRY_BYTES <= max {
                    break;
                }
                let victim = self.ascending(ready).find(|(shard, k)| {
                    let e = &self.shards[*shard].entries[&k.2];
                    !matches!(protect, Some((s, n)) if e.sender == s && e.nonce() <= n)
                });
                let Some((shard, (_, _, victim))) = victim else {
                    break;
                };
                let victim = *victim;
                let s = &mut self.shards[shard];
                for d in s.with_descendants(&victim) {
                    if s.remove(&d).is_some() {
                        out.push(d);
                    }
                }
            }
        }
        out
    }

    /// After a block is connected: drops its transfers and, for every
    /// sender whose account changed, transfers whose nonce is now used and
    /// those the balance no longer covers. Returns how many were dropped.
    pub fn remove_confirmed(
        &mut self,
        transfers: &[SignedTransfer],
        account: impl Fn(&Address) -> Account + Sync,
    ) -> usize {
        let keys: Vec<(TxId, Address)> = transfers.iter().map(|t| (t.id(), t.sender())).collect();
        self.remove_confirmed_keys(&keys, account)
    }

    /// [`Pool::remove_confirmed`] given each confirmed transfer's id and
    /// sender (computed before the pool is locked: they are hashes).
    /// The shards are independent here, so a large block's are cleaned on
    /// all cores.
    pub fn remove_confirmed_keys(
        &mut self,
        confirmed: &[(TxId, Address)],
        account: impl Fn(&Address) -> Account + Sync,
    ) -> usize {
        let before = self.len();
        let n = self.shards.len();
        let mut by_shard: Vec<Vec<(TxId, Address)>> = vec![Vec::new(); n];
        for (id, sender) in confirmed {
            by_shard[shard_of(sender, n)].push((*id, *sender));
        }
        let clean = |(shard, confirmed): (&mut &mut Shard, Vec<(TxId, Address)>)| {
            let mut senders = Vec::with_capacity(confirmed.len());
            for (id, sender) in confirmed {
                shard.remove(&id);
                senders.push(sender);
            }
            senders.sort_unstable();
            senders.dedup();
            for s in senders {
                shard.revalidate_sender(&s, account(&s));
            }
        };
        let mut shards: Vec<&mut Shard> = self.shards.iter_mut().map(|g| &mut **g).collect();
        if confirmed.len() < crate::verify::PARALLEL_MIN {
            shards.iter_mut().zip(by_shard).for_each(clean);
        } else {
            use rayon::prelude::*;
            shards.par_iter_mut().zip(by_shard).for_each(clean);
        }
        self.enforce_bounds(None);
        before - self.len()
    }

    /// Drops the sender's transfers below its nonce, and those (with all
    /// later nonces) that its balance no longer covers; the rest become
    /// ready or waiting from the new nonce.
    pub fn revalidate_sender(&mut self, sender: &Address, account: Account) {
        self.shard_mut(sender).revalidate_sender(sender, account);
        self.enforce_bounds(None);
    }

    /// Drops transfers older than the expiry, with their later nonces.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let expiry_ms = self.config().expiry_ms;
        let mut n = 0;
        for s in &mut self.shards {
            let old: Vec<TxId> = s
                .entries
                .values()
                .filter(|e| now_ms.saturating_sub(e.added_ms) > expiry_ms)
                .map(|e| e.id)
                .collect();
            for id in old {
                for d in s.with_descendants(&id) {
                    if s.remove(&d).is_some() {
                        n += 1;
                    }
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
        for s in &self.shards {
            for (sender, q) in &s.by_sender {
                let n = account_nonce(sender);
                if let Some(id) = q.get(&n) {
                    let e = &s.entries[id];
                    heap.push((e.fee(), Reverse(e.seq), *sender, n));
                }
            }
        }
        let mut used = 0;
        while used < max {
            let Some((_, _, sender, nonce)) = heap.pop() else {
                break;
            };
            let s = self.shard(&sender);
            let q = &s.by_sender[&sender];
            let e = &s.entries[&q[&nonce]];
            if !take(&e.tx) {
                continue;
            }
            used += 1;
            if let Some(next_id) = q.get(&(nonce + 1)) {
                let n = &s.entries[next_id];
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

    /// Ready and waiting bytes (one lock: a second `lock()` in the same
    /// expression would wait for the first forever).
    fn sizes(p: &Mempool) -> (usize, usize) {
        let pool = p.lock();
        (pool.ready_bytes(), pool.waiting_bytes())
    }

    fn add(p: &Mempool, t: SignedTransfer, acc: Account) -> Result<Inserted, MempoolError> {
        p.insert(t, t.id(), acc, 0)
    }

    #[test]
    fn gaps_wait_and_fill() {
        let p = pool();
        add(&p, tx(1, 2, 10), rich()).unwrap();
        assert_eq!(p.lock().next_nonce(&address(1), 0), 0);
        let mut taken = vec![];
        p.lock().select(
            |_| 0,
            10,
            |t| {
                taken.push(t.transfer.nonce);
                true
            },
        );
        assert!(taken.is_empty(), "nonce 2 waits for 0 and 1");
        add(&p, tx(1, 0, 10), rich()).unwrap();
        add(&p, tx(1, 1, 10), rich()).unwrap();
        assert_eq!(p.lock().next_nonce(&address(1), 0), 3);
        p.lock().select(
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
        let p = pool();
        let acc = Account {
            balance: Amount(3 * COIN),
            nonce: 5,
        };
        assert!(matches!(
            add(&p, tx(1, 4, 10), acc),
            Err(MempoolError::NonceTooLow {
                nonce: 4,
                account_nonce: 5
            })
        ));
        assert!(matches!(
            add(&p, tx(1, 5 + 65, 10), acc),
            Err(MempoolError::NonceTooHigh { .. })
        ));
        let t = tx(1, 5, 10);
        add(&p, t, acc).unwrap();
        assert_eq!(add(&p, t, acc), Err(MempoolError::Duplicate(t.id())));
        add(&p, tx(1, 6, 10), acc).unwrap();
        // a third coin plus fees is beyond the balance, counting pending spends
        match add(&p, tx(1, 7, 10), acc) {
            Err(MempoolError::InsufficientBalance { pending, .. }) => {
                assert_eq!(pending, Amount(2 * COIN + 20))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            add(&p, tx(1, 5, 10), acc),
            Err(MempoolError::Duplicate(_))
        ));
        assert!(add(&p, tx(1, 5, 10_000), acc).unwrap().replaced.is_some());
        assert!(matches!(
            add(&p, tx(1, 5, 10_500), acc),
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
        let p = Mempool::new(config, Amount(1));
        add(&p, tx(1, 0, 5), rich()).unwrap();
        add(&p, tx(1, 1, 50), rich()).unwrap();
        add(&p, tx(2, 0, 20), rich()).unwrap();
        assert_eq!(p.lock().min_fee(), Amount(6));
        assert_eq!(
            add(&p, tx(3, 0, 5), rich()),
            Err(MempoolError::Full { min_fee: Amount(6) })
        );
        // evicting sender 1's nonce 0 takes its nonce 1 too
        let r = add(&p, tx(3, 0, 6), rich()).unwrap();
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
        let p = small_pool(2, 3);
        // one sender fills the waiting pool with high-fee gap transfers
        for n in 1..=3 {
            add(&p, tx(1, n, 1_000), rich()).unwrap();
        }
        assert_eq!(p.lock().waiting_bytes(), 3 * ENTRY_BYTES);
        assert_eq!(p.lock().ready_bytes(), 0);
        assert_eq!(
            p.lock().min_fee(),
            Amount(1),
            "nothing ready: the floor holds"
        );
        // everyone else still enters at the floor
        add(&p, tx(2, 0, 1), rich()).unwrap();
        add(&p, tx(3, 0, 1), rich()).unwrap();
        // a fourth waiting transfer from another sender must outbid the
        // cheapest waiting one, and is told so
        match add(&p, tx(4, 5, 500), rich()) {
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
        let r = add(&p, tx(4, 5, 2_000), rich()).unwrap();
        assert_eq!(r.evicted, vec![tx(1, 3, 1_000).id()]);
        assert_eq!(p.lock().waiting_bytes(), 3 * ENTRY_BYTES);
        // the ready pool is full at fee 1: the quote is 2, whatever waits
        assert_eq!(p.lock().min_fee(), Amount(2));
    }

    #[test]
    fn a_filled_gap_promotes_and_the_ready_bound_holds() {
        let p = small_pool(3, 4);
        add(&p, tx(2, 0, 5), rich()).unwrap();
        add(&p, tx(3, 0, 6), rich()).unwrap();
        add(&p, tx(1, 1, 100), rich()).unwrap();
        add(&p, tx(1, 2, 100), rich()).unwrap();
        assert_eq!(sizes(&p), (2 * ENTRY_BYTES, 2 * ENTRY_BYTES));
        // nonce 0 closes the gap: 1 and 2 become ready; the ready pool
        // evicts the cheapest others to stay within three entries
        let r = add(&p, tx(1, 0, 50), rich()).unwrap();
        assert_eq!(p.lock().waiting_bytes(), 0);
        assert_eq!(p.lock().ready_bytes(), 3 * ENTRY_BYTES);
        let mut evicted = r.evicted.clone();
        evicted.sort();
        let mut expected = vec![tx(2, 0, 5).id(), tx(3, 0, 6).id()];
        expected.sort();
        assert_eq!(evicted, expected);
        let mut taken = vec![];
        p.lock().select(
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
        let p = small_pool(10, 10);
        add(&p, tx(1, 1, 10), rich()).unwrap();
        assert_eq!(p.lock().waiting_bytes(), ENTRY_BYTES);
        // the account's nonce 0 was mined elsewhere: nonce 1 is now next
        p.lock().revalidate_sender(
            &address(1),
            Account {
                balance: Amount(1000 * COIN),
                nonce: 1,
            },
        );
        assert_eq!(sizes(&p), (ENTRY_BYTES, 0));
    }

    /// Every entry sits in the set its readiness says, readiness is exactly
    /// "no gap from the sender's account nonce", every sender is in its
    /// shard, both bounds hold and the counters match the shards.
    fn check_invariants(p: &Mempool) {
        let pool = p.lock();
        for (i, s) in pool.shards.iter().enumerate() {
            assert_eq!(s.by_fee.len() + s.waiting.len(), s.entries.len());
            for (sender, q) in &s.by_sender {
                assert_eq!(shard_of(sender, pool.shards.len()), i);
                let mut next = s.account_nonces[sender];
                for (&nonce, id) in q {
                    let e = &s.entries[id];
                    let ready = nonce == next;
                    if ready {
                        next += 1;
                    }
                    assert_eq!(e.ready, ready, "nonce {nonce} of {sender:?}");
                    assert!(s.set(ready).contains(&e.fee_key()));
                }
            }
        }
        assert!(pool.waiting_bytes() <= p.config.max_waiting_bytes);
        assert!(pool.ready_bytes() <= p.config.max_bytes);
        assert_eq!(p.ready_len.load(Ordering::SeqCst), pool.ready_len());
        assert_eq!(p.waiting_len.load(Ordering::SeqCst), pool.waiting_len());
    }

    #[test]
    fn random_operations_keep_the_sets_consistent() {
        let p = small_pool(12, 6);
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
                p.lock().revalidate_sender(
                    &address(sender as u64 + 1),
                    Account {
                        nonce: nonces[sender],
                        ..account
                    },
                );
            } else {
                let nonce = nonces[sender] + (r >> 8) % 6;
                let fee = 1 + (r >> 16) % 50;
                let _ = add(&p, tx(sender as u64 + 1, nonce, fee), account);
            }
            check_invariants(&p);
        }
    }

    /// Every pending id with its readiness, sorted.
    fn contents(p: &Mempool) -> Vec<(TxId, bool)> {
        let pool = p.lock();
        let mut out: Vec<(TxId, bool)> = pool
            .shards
            .iter()
            .flat_map(|s| s.entries.values().map(|e| (e.id, e.ready)))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn one_shard_inserts_decide_as_the_whole_pool_does() {
        // the same operations on two pools: one inserts through the
        // one-shard path wherever it can, the other always through the
        // whole pool; every verdict, eviction and content must agree
        let fast = small_pool(10, 5);
        let whole = small_pool(10, 5);
        let mut nonces = [0u64; 12];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut one_shard, mut evictions) = (0, 0);
        for step in 0..3_000 {
            let r = next();
            let sender = (r % 12) as usize;
            let account = Account {
                balance: Amount(1000 * COIN),
                nonce: nonces[sender],
            };
            if r % 13 == 0 {
                // a block confirmed the sender's next nonce; every third
                // time the pool hears of it only from the next submission
                nonces[sender] += 1;
                if r % 3 != 0 {
                    let account = Account {
                        nonce: nonces[sender],
                        ..account
                    };
                    fast.lock()
                        .revalidate_sender(&address(sender as u64 + 1), account);
                    whole
                        .lock()
                        .revalidate_sender(&address(sender as u64 + 1), account);
                }
            } else {
                let nonce = nonces[sender] + (r >> 8) % 5;
                let fee = 1 + (r >> 16) % 40;
                let t = tx(sender as u64 + 1, nonce, fee);
                let a = fast.insert(t, t.id(), account, step);
                let b = whole.lock().insert(t, t.id(), account, step);
                assert_eq!(a, b, "step {step}");
                match &a {
                    Ok(i) if i.evicted.is_empty() => one_shard += 1,
                    Ok(i) => evictions += i.evicted.len(),
                    Err(_) => {}
                }
            }
            assert_eq!(contents(&fast), contents(&whole), "step {step}");
            check_invariants(&fast);
        }
        // both paths were exercised (about 290 and 480 with this seed)
        assert!(
            one_shard > 200 && evictions > 200,
            "{one_shard} {evictions}"
        );
    }

    #[test]
    fn a_large_block_is_cleaned_up_shard_by_shard_as_in_one_pool() {
        // the clean-up after a block runs on all cores, shard by shard: it
        // must leave what one pool (one shard, one thread's order) leaves
        let sharded = small_pool(300, 100);
        let single = Mempool::with_shards(sharded.config.clone(), Amount(1), 1);
        for p in [&sharded, &single] {
            for sender in 1..=80 {
                for nonce in [0, 1, 2, 3, 5] {
                    let _ = add(p, tx(sender, nonce, 1 + (sender * 3 + nonce) % 20), rich());
                }
            }
        }
        // a block confirmed nonces 0 and 1 of every sender; some senders
        // are left unable to pay for all they still have pending
        let block: Vec<SignedTransfer> = (1..=80)
            .flat_map(|s| [tx(s, 0, 1 + (s * 3) % 20), tx(s, 1, 1 + (s * 3 + 1) % 20)])
            .collect();
        let after = |a: &Address| Account {
            balance: Amount(if a.0[0].is_multiple_of(3) {
                COIN + 5
            } else {
                1000 * COIN
            }),
            nonce: 2,
        };
        let dropped = sharded.lock().remove_confirmed(&block, after);
        assert_eq!(dropped, single.lock().remove_confirmed(&block, after));
        assert!(
            dropped > block.len(),
            "some were left unaffordable: {dropped}"
        );
        assert_eq!(contents(&sharded), contents(&single));
        check_invariants(&sharded);
        assert!(sharded.lock().waiting_len() > 0, "nonce 5 waits for 4");
    }

    #[test]
    fn concurrent_submissions_keep_the_bounds_and_the_counts() {
        let p = small_pool(40, 10);
        std::thread::scope(|s| {
            for thread in 0..4u64 {
                let p = &p;
                s.spawn(move || {
                    for i in 0..120u64 {
                        let sender = 1 + thread * 8 + i % 8;
                        // gaps, replacements and fees that outbid others
                        let nonce = i / 8 + u64::from(i % 5 == 0) * 2;
                        let t = tx(sender, nonce, 1 + (i * 7 + thread) % 30);
                        let _ = p.insert(t, t.id(), rich(), i);
                        if i % 40 == 39 {
                            let mut pool = p.lock();
                            pool.revalidate_sender(&address(sender), rich());
                            pool.expire(i);
                        }
                    }
                });
            }
        });
        check_invariants(&p);
        let pool = p.lock();
        assert_eq!(
            pool.ready_bytes(),
            40 * ENTRY_BYTES,
            "the ready pool filled up"
        );
        assert_eq!(p.len(), pool.len());
    }

    #[test]
    fn selection_is_by_fee_across_senders_in_nonce_order() {
        let p = pool();
        add(&p, tx(1, 0, 5), rich()).unwrap();
        add(&p, tx(1, 1, 100), rich()).unwrap();
        add(&p, tx(2, 0, 50), rich()).unwrap();
        let mut order = vec![];
        p.lock().select(
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
            p.lock().select(
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
        let p = pool();
        let a = tx(1, 0, 5);
        let b = tx(1, 1, 5);
        add(&p, a, rich()).unwrap();
        add(&p, b, rich()).unwrap();
        add(&p, tx(2, 0, 5), rich()).unwrap();
        // a block confirms a conflicting nonce-0 and nonce-1 from sender 1
        let conflicting = tx(1, 0, 7);
        let after = Account {
            balance: Amount(10 * COIN),
            nonce: 2,
        };
        let dropped = p.lock().remove_confirmed(&[conflicting], |_| after);
        assert_eq!(dropped, 2);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn expiry_drops_old_transfers() {
        let p = pool();
        p.insert(tx(1, 0, 5), tx(1, 0, 5).id(), rich(), 0).unwrap();
        p.insert(tx(2, 0, 5), tx(2, 0, 5).id(), rich(), 10_000_000)
            .unwrap();
        assert_eq!(p.lock().expire(3 * 3600 * 1000 + 1), 1);
        assert_eq!(p.len(), 1);
    }
}
