//! Block validation, in tiers.
//!
//! 1. [`check_header`]: the header alone (version, target range, proof of
//!    work). Cheap; run first on anything from a peer.
//! 2. [`check_block`]: the body without state (sizes, coinbase shape, tx
//!    root, each transfer's stateless rules) and [`check_signatures`], which
//!    the node may run per transfer in parallel ([`SignedTransfer::verify_signature`]).
//! 3. [`validate_header`]: the header against its parent (height, time,
//!    required target).
//! 4. [`validate_block_state`]: the body against the parent's state (nonces,
//!    balances, coinbase amount) and the resulting state commitment.
//!
//! Only a block that passes all four reaches the store. Every failure is a
//! distinct [`BlockError`] variant carrying the data that explains it.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, BlockHeader, HEADER_VERSION, Height};
use crate::encoding::DecodeError;
use crate::hash::{BlockHash, StateRoot, TxId, TxRoot};
use crate::par;
use crate::params::{ConsensusParams, ParentInfo};
use crate::pow::{Target, Work};
use crate::state::{
    Account, AccountChange, BlockEffects, TransferStateError, root_after, transfer_result,
};
use crate::transfer::{SignedTransfer, TransferError};

/// Number of previous blocks whose median time a new block must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Why a block is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("header version {found} is unknown (expected {HEADER_VERSION})")]
    BadVersion { found: u32 },
    #[error("target {target} is outside [1, {pow_limit}]")]
    TargetOutOfRange { target: Target, pow_limit: Target },
    #[error("block hash {hash} does not meet its target {target}")]
    InsufficientProofOfWork { hash: BlockHash, target: Target },
    #[error("block is {bytes} bytes, over the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("block has {count} transfers, over the limit of {max}")]
    TooManyTransfers { count: usize, max: usize },
    #[error("coinbase height {found} differs from the block height {expected}")]
    CoinbaseHeight { expected: Height, found: Height },
    #[error("header tx root {header} differs from the transactions' root {computed}")]
    TxRootMismatch { header: TxRoot, computed: TxRoot },
    #[error("transfer {index} ({txid}) appears twice")]
    DuplicateTransfer { index: usize, txid: TxId },
    #[error("transfer {index} ({txid}): {error}")]
    Transfer {
        index: usize,
        txid: TxId,
        error: TransferError,
    },
    #[error("parent {found} is not the expected parent {expected}")]
    WrongParent {
        expected: BlockHash,
        found: BlockHash,
    },
    #[error("height {found} is not the parent's height plus one ({expected})")]
    WrongHeight { expected: Height, found: Height },
    #[error(
        "time {time_ms} ms is not after the median time {median_ms} ms of the previous {MEDIAN_TIME_SPAN} blocks"
    )]
    TimeNotAfterMedian { time_ms: u64, median_ms: u64 },
    #[error(
        "time {time_ms} ms is more than {max_drift_ms} ms ahead of this node's clock ({now_ms} ms)"
    )]
    TimeTooFarInFuture {
        time_ms: u64,
        now_ms: u64,
        max_drift_ms: u64,
    },
    #[error("target {found} differs from the difficulty rule's {expected}")]
    WrongTarget { expected: Target, found: Target },
    #[error(transparent)]
    TransferState(#[from] TransferStateError),
    #[error("coinbase pays {found}, but reward plus fees is {expected}")]
    CoinbaseAmount { expected: Amount, found: Amount },
    #[error("reward plus fees overflows")]
    FeesOverflow,
    #[error("crediting the coinbase to {0:?} overflows its balance")]
    CoinbaseOverflow(Address),
    #[error("header state root {header} differs from the computed state root {computed}")]
    StateRootMismatch {
        header: StateRoot,
        computed: StateRoot,
    },
    #[error("block height overflows")]
    HeightOverflow,
    #[error("cumulative work overflows")]
    WorkOverflow,
}

impl BlockError {
    /// Whether the block is invalid for good. A block from the future may
    /// become valid once the clock catches up; every other failure is final
    /// and depends on nothing but the block and its ancestors.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, BlockError::TimeTooFarInFuture { .. })
    }

    /// Whether the error condemns the block hash: true for everything but a
    /// body that does not match its header (the same header may arrive later
    /// with its real body) and a time that may become valid.
    pub fn condemns_hash(&self) -> bool {
        self.is_permanent()
            && !matches!(
                self,
                BlockError::TxRootMismatch { .. } | BlockError::Decode(_)
            )
    }
}

/// Tier 1: the header alone. Returns the block hash.
pub fn check_header(
    header: &BlockHeader,
    params: &ConsensusParams,
) -> Result<BlockHash, BlockError> {
    if header.version != HEADER_VERSION {
        return Err(BlockError::BadVersion {
            found: header.version,
        });
    }
    if header.target.0 == [0u8; 32] || header.target > params.pow_limit {
        return Err(BlockError::TargetOutOfRange {
            target: header.target,
            pow_limit: params.pow_limit,
        });
    }
    let hash = header.hash();
    if !header.target.is_met_by(&hash) {
        return Err(BlockError::InsufficientProofOfWork {
            hash,
            target: header.target,
        });
    }
    Ok(hash)
}

/// Tier 2: the body without state and without signatures.
pub fn check_block(block: &Block, params: &ConsensusParams) -> Result<(), BlockError> {
    check_block_with_ids(block, &block.tx_ids(), params)
}

/// [`check_block`] with the block's [`Block::tx_ids`] already computed
/// (the node computes them once, on all cores, and uses them again for
/// its signature cache). `ids` must be exactly those: the root, the
/// duplicate check and the errors are computed from them.
pub fn check_block_with_ids(
    block: &Block,
    ids: &[TxId],
    params: &ConsensusParams,
) -> Result<(), BlockError> {
    if ids.len() != block.transfers.len() + 1 {
        // a caller's mistake, not the block's: check it with its own ids
        debug_assert!(false, "check_block_with_ids given {} ids", ids.len());
        return check_block(block, params);
    }
    // The tx root first: once it matches, the header commits to exactly this
    // body, so any later failure condemns the block hash itself. A body that
    // fails here may be a valid block's header with a corrupted body, and
    // says nothing about the hash (the lesson of CVE-2012-2459).
    let computed = crate::block::merkle_root(ids);
    if computed != block.header.tx_root {
        return Err(BlockError::TxRootMismatch {
            header: block.header.tx_root,
            computed,
        });
    }
    let count = block.transfers.len();
    if count > params.max_block_transfers {
        return Err(BlockError::TooManyTransfers {
            count,
            max: params.max_block_transfers,
        });
    }
    let bytes = block.encoded_len();
    if bytes > params.max_block_bytes {
        return Err(BlockError::TooLarge {
            bytes,
            max: params.max_block_bytes,
        });
    }
    if block.coinbase.height != block.header.height {
        return Err(BlockError::CoinbaseHeight {
            expected: block.header.height,
            found: block.coinbase.height,
        });
    }
    // A large block is checked on all cores; one that fails is then walked
    // in order, to report the first failure exactly as the walk alone would.
    if count >= par::PARALLEL_MIN {
        let (checked, distinct) = rayon::join(
            || {
                par::all(&block.transfers, |tx| {
                    tx.check(params.chain_id, params.min_fee).is_ok()
                })
            },
            || {
                let mut sorted = ids[1..].to_vec();
                par::sort(&mut sorted);
                sorted.windows(2).all(|w| w[0] != w[1])
            },
        );
        if checked && distinct {
            return Ok(());
        }
    }
    let mut seen = std::collections::HashSet::with_capacity(count);
    for (index, (tx, id)) in block.transfers.iter().zip(&ids[1..]).enumerate() {
        if !seen.insert(*id) {
            return Err(BlockError::DuplicateTransfer { index, txid: *id });
        }
        tx.check(params.chain_id, params.min_fee)
            .map_err(|error| BlockError::Transfer {
                index,
                txid: *id,
                error,
            })?;
    }
    Ok(())
}

/// Tier 2: every signature, in order, on this thread. The node runs
/// [`SignedTransfer::verify_signature`] in parallel instead; the result is
/// the same.
pub fn check_signatures(transfers: &[SignedTransfer]) -> Result<(), BlockError> {
    for (index, tx) in transfers.iter().enumerate() {
        tx.verify_signature()
            .map_err(|error| BlockError::Transfer {
                index,
                txid: tx.id(),
                error,
            })?;
    }
    Ok(())
}

/// What [`validate_header`] needs to know about the chain the header extends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderContext {
    pub parent_hash: BlockHash,
    pub parent_height: Height,
    /// Median time of the parent and up to ten of its ancestors.
    pub median_time_past_ms: u64,
    /// From [`ConsensusParams::next_target`].
    pub expected_target: Target,
    /// This node's clock.
    pub now_ms: u64,
    pub max_future_drift_ms: u64,
}

/// Tier 3: the header against its parent.
pub fn validate_header(header: &BlockHeader, ctx: &HeaderContext) -> Result<(), BlockError> {
    if header.parent != ctx.parent_hash {
        return Err(BlockError::WrongParent {
            expected: ctx.parent_hash,
            found: header.parent,
        });
    }
    let expected_height = ctx.parent_height.next().ok_or(BlockError::HeightOverflow)?;
    if header.height != expected_height {
        return Err(BlockError::WrongHeight {
            expected: expected_height,
            found: header.height,
        });
    }
    if header.time_ms <= ctx.median_time_past_ms {
        return Err(BlockError::TimeNotAfterMedian {
            time_ms: header.time_ms,
            median_ms: ctx.median_time_past_ms,
        });
    }
    if header.time_ms > ctx.now_ms.saturating_add(ctx.max_future_drift_ms) {
        return Err(BlockError::TimeTooFarInFuture {
            time_ms: header.time_ms,
            now_ms: ctx.now_ms,
            max_drift_ms: ctx.max_future_drift_ms,
        });
    }
    if header.target != ctx.expected_target {
        return Err(BlockError::WrongTarget {
            expected: ctx.expected_target,
            found: header.target,
        });
    }
    Ok(())
}

/// What the contextual rules need to know about an accepted header: a
/// stored block, or a header whose proof of work and context were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderMeta {
    pub header: BlockHeader,
    /// Cumulative work from genesis to this header, inclusive.
    pub work: Work,
    /// Time of block 1 on this header's branch (the ASERT anchor); `None`
    /// for genesis.
    pub anchor_time_ms: Option<u64>,
}

impl HeaderMeta {
    /// The meta of a genesis header.
    pub fn genesis(header: BlockHeader) -> HeaderMeta {
        HeaderMeta {
            header,
            work: header.target.work(),
            anchor_time_ms: None,
        }
    }

    /// What the difficulty rule needs to know about this header as a parent.
    pub fn parent_info(&self) -> ParentInfo {
        ParentInfo {
            height: self.header.height,
            anchor_time_ms: self.anchor_time_ms,
        }
    }
}

/// Finds accepted headers by hash: a chain's block index, a tree of
/// validated headers, or both. The one source of header context for every
/// caller, so the contextual rules are written once.
pub trait HeaderLookup {
    fn header_meta(&self, hash: &BlockHash) -> Option<HeaderMeta>;
}

impl<F: Fn(&BlockHash) -> Option<HeaderMeta>> HeaderLookup for F {
    fn header_meta(&self, hash: &BlockHash) -> Option<HeaderMeta> {
        self(hash)
    }
}

/// The median time past of the chain ending at `tip` (`tip` and up to ten
/// ancestors, as far as `lookup` knows them).
pub fn median_time_past_of(tip: &HeaderMeta, lookup: &impl HeaderLookup) -> u64 {
    let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
    let mut cursor = *tip;
    loop {
        times.push(cursor.header.time_ms);
        if times.len() == MEDIAN_TIME_SPAN || cursor.header.height.0 == 0 {
            break;
        }
        match lookup.header_meta(&cursor.header.parent) {
            Some(p) => cursor = p,
            None => break,
        }
    }
    times.reverse();
    median_time_past(&times)
}

/// Tier 3 with its context gathered from the chain: checks `header`
/// against `parent` (its parent, as found by the caller) and the parent's
/// ancestors (through `lookup`), and returns the header's own meta (its
/// cumulative work and ASERT anchor). The header's proof of work is tier 1
/// ([`check_header`]), checked before.
///
/// # Consensus
/// Used by the chain for blocks and by header sync for headers, so a header
/// is judged by the same rules whichever way it arrives.
pub fn validate_header_in_context(
    header: &BlockHeader,
    parent: &HeaderMeta,
    lookup: &impl HeaderLookup,
    params: &ConsensusParams,
    now_ms: u64,
) -> Result<HeaderMeta, BlockError> {
    let ctx = HeaderContext {
        parent_hash: parent.header.hash(),
        parent_height: parent.header.height,
        median_time_past_ms: median_time_past_of(parent, lookup),
        expected_target: params.next_target(&parent.parent_info(), header.time_ms),
        now_ms,
        max_future_drift_ms: params.max_future_drift_ms,
    };
    validate_header(header, &ctx)?;
    let work = parent
        .work
        .checked_add(header.target.work())
        .ok_or(BlockError::WorkOverflow)?;
    let anchor_time_ms = if header.height == Height(1) {
        Some(header.time_ms)
    } else {
        parent.anchor_time_ms
    };
    Ok(HeaderMeta {
        header: *header,
        work,
        anchor_time_ms,
    })
}

/// The median of up to [`MEDIAN_TIME_SPAN`] block times (the parent's and
/// its ancestors'); for an even count, the upper middle. `0` for none.
pub fn median_time_past(times: &[u64]) -> u64 {
    let mut t: Vec<u64> = times.iter().rev().take(MEDIAN_TIME_SPAN).copied().collect();
    if t.is_empty() {
        return 0;
    }
    t.sort_unstable();
    t[t.len() / 2]
}

/// The accounts a block reads or writes, and where each of its parties is
/// among them.
struct Touched {
    /// Every touched address (the miner, each transfer's sender and
    /// recipient), sorted, each once.
    addresses: Vec<Address>,
    /// Transfer `k`'s sender and recipient, as positions in `addresses`.
    slots: Vec<(usize, usize)>,
    /// The miner's position in `addresses`.
    miner: usize,
}

impl Touched {
    /// One sort of every mention of an address gives both the touched set
    /// and each mention's position in it (no lookups afterwards).
    fn of(block: &Block) -> Touched {
        let n = block.transfers.len();
        // mention 2k is transfer k's sender, 2k + 1 its recipient, 2n the
        // miner; a sender's address is a hash of its key, computed once
        let mut mentions: Vec<(Address, usize)> = par::map(&block.transfers, |t| t.sender())
            .into_iter()
            .zip(&block.transfers)
            .enumerate()
            .flat_map(|(k, (from, t))| [(from, 2 * k), (t.transfer.to, 2 * k + 1)])
            .collect();
        mentions.push((block.coinbase.recipient, 2 * n));
        par::sort(&mut mentions);
        let mut addresses: Vec<Address> = Vec::with_capacity(mentions.len());
        let mut position = vec![0usize; mentions.len()];
        for (address, mention) in mentions {
            if addresses.last() != Some(&address) {
                addresses.push(address);
            }
            position[mention] = addresses.len() - 1;
        }
        Touched {
            addresses,
            slots: (0..n)
                .map(|k| (position[2 * k], position[2 * k + 1]))
                .collect(),
            miner: position[2 * n],
        }
    }
}

/// Tier 4: applies the block to the parent's state (`accounts` reads it) and
/// checks nonces, balances, the coinbase amount and the state commitment.
/// Returns the changes to commit; on error nothing was changed anywhere.
pub fn validate_block_state(
    block: &Block,
    params: &ConsensusParams,
    accounts: impl Fn(&Address) -> Account + Sync,
    parent_state_root: StateRoot,
) -> Result<BlockEffects, BlockError> {
    let read = |addresses: &[Address], out: &mut [Account]| {
        par::fill(addresses, out, &accounts);
        Ok::<_, std::convert::Infallible>(())
    };
    match try_validate_block_state(block, params, read, parent_state_root) {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// [`validate_block_state`] with the reads done by the caller, in one call
/// for every account the block touches (a store reads them on all cores),
/// and allowed to fail: the read error is returned as the outer error, and
/// nothing is judged. `read(addresses, out)` sets `out[i]` to the account
/// at `addresses[i]` (`out` starts as empty accounts).
///
/// A large block is validated on all cores except for one pass in block
/// order: the touched accounts are found with one parallel sort, the
/// transfers are applied in order to an array of those accounts (a few
/// nanoseconds each), and the commitment's hashes are computed in
/// parallel. The result, errors included, is the same as applying the
/// transfers one by one: the first transfer in block order that fails is
/// the one reported.
pub fn try_validate_block_state<E>(
    block: &Block,
    params: &ConsensusParams,
    read: impl FnOnce(&[Address], &mut [Account]) -> Result<(), E>,
    parent_state_root: StateRoot,
) -> Result<Result<BlockEffects, BlockError>, E> {
    let touched = Touched::of(block);
    let mut before = vec![Account::default(); touched.addresses.len()];
    read(&touched.addresses, &mut before)?;
    Ok(apply_block(
        block,
        params,
        &touched,
        before,
        parent_state_root,
    ))
}

/// A template's state pass: `block`'s transfers are candidates in
/// priority order, applied as [`try_validate_block_state`] applies a
/// block's, except that one that does not apply to the state reached so
/// far (or whose fee would overflow the total) is left out, changing
/// nothing, instead of failing the block. The coinbase then pays the
/// reward plus the kept fees to its recipient. Returns the block with the
/// kept transfers and its effects; its header's roots are the caller's to
/// set (the state root is the effects'). The accounts are read as for a
/// block (`read`, on all cores for a store), so a large template costs
/// what validating it costs.
pub fn try_fill_template<E>(
    mut block: Block,
    params: &ConsensusParams,
    read: impl FnOnce(&[Address], &mut [Account]) -> Result<(), E>,
    parent_state_root: StateRoot,
) -> Result<(Block, BlockEffects), E> {
    let touched = Touched::of(&block);
    let mut before = vec![Account::default(); touched.addresses.len()];
    read(&touched.addresses, &mut before)?;
    let mut after = before.clone();
    let mut fees = Amount::ZERO;
    let mut kept = vec![false; block.transfers.len()];
    for (k, (tx, &(from, to))) in block.transfers.iter().zip(&touched.slots).enumerate() {
        let recipient = (to != from).then(|| after[to]);
        let Some(total) = fees.checked_add(tx.transfer.fee) else {
            continue;
        };
        if let Ok((sender, recipient)) = transfer_result(tx, after[from], recipient) {
            after[from] = sender;
            after[to] = recipient;
            fees = total;
            kept[k] = true;
        }
    }
    let height = block.header.height;
    block.coinbase.amount = params
        .reward_at(height)
        .checked_add(fees)
        .unwrap_or(params.reward_at(height));
    let miner = touched.miner;
    // an overflow here leaves a template that fails validation: it would
    // take more than the whole supply in one account
    after[miner].balance = after[miner]
        .balance
        .checked_add(block.coinbase.amount)
        .unwrap_or(Amount::MAX);
    let changes: Vec<AccountChange> = touched
        .addresses
        .iter()
        .zip(before)
        .zip(after)
        .filter(|((_, before), after)| before != after)
        .map(|((&address, before), after)| AccountChange {
            address,
            before,
            after,
        })
        .collect();
    let state_root = root_after(parent_state_root, &changes);
    let mut k = 0;
    block.transfers.retain(|_| {
        k += 1;
        kept[k - 1]
    });
    Ok((
        block,
        BlockEffects {
            changes,
            state_root,
            fees,
        },
    ))
}

/// The state pass of [`try_validate_block_state`]: `before[i]` is the
/// account at `touched.addresses[i]`.
fn apply_block(
    block: &Block,
    params: &ConsensusParams,
    touched: &Touched,
    before: Vec<Account>,
    parent_state_root: StateRoot,
) -> Result<BlockEffects, BlockError> {
    let mut after = before.clone();
    let mut fees = Amount::ZERO;
    for (index, (tx, &(from, to))) in block.transfers.iter().zip(&touched.slots).enumerate() {
        let recipient = (to != from).then(|| after[to]);
        let (sender, recipient) =
            transfer_result(tx, after[from], recipient).map_err(|error| TransferStateError {
                index,
                txid: tx.id(),
                error,
            })?;
        after[from] = sender;
        after[to] = recipient;
        fees = fees
            .checked_add(tx.transfer.fee)
            .ok_or(BlockError::FeesOverflow)?;
    }
    let expected = params
        .reward_at(block.header.height)
        .checked_add(fees)
        .ok_or(BlockError::FeesOverflow)?;
    if block.coinbase.amount != expected {
        return Err(BlockError::CoinbaseAmount {
            expected,
            found: block.coinbase.amount,
        });
    }
    let miner = touched.miner;
    after[miner].balance = after[miner]
        .balance
        .checked_add(block.coinbase.amount)
        .ok_or(BlockError::CoinbaseOverflow(block.coinbase.recipient))?;
    let changes: Vec<AccountChange> = touched
        .addresses
        .iter()
        .zip(before)
        .zip(after)
        .filter(|((_, before), after)| before != after)
        .map(|((&address, before), after)| AccountChange {
            address,
            before,
            after,
        })
        .collect();
    let state_root = root_after(parent_state_root, &changes);
    if state_root != block.header.state_root {
        return Err(BlockError::StateRootMismatch {
            header: block.header.state_root,
            computed: state_root,
        });
    }
    Ok(BlockEffects {
        changes,
        state_root,
        fees,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_uses_last_eleven() {
        assert_eq!(median_time_past(&[]), 0);
        assert_eq!(median_time_past(&[5]), 5);
        assert_eq!(median_time_past(&[1, 9]), 9);
        let times: Vec<u64> = (0..20).collect();
        // last eleven: 9..=19, median 14
        assert_eq!(median_time_past(&times), 14);
        assert_eq!(median_time_past(&[3, 1, 2]), 2);
    }
}
