//! Consensus parameters of a network, as read from its genesis spec.

use crate::address::AddressPrefix;
use crate::amount::Amount;
use crate::block::Height;
use crate::pow::{AsertParams, Target, asert_target};

/// How the target of each block is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retarget {
    /// Every block uses the initial target (dev networks: blocks on demand).
    Pinned,
    /// ASERT toward the target block time with this half-life.
    Asert { half_life_ms: u64 },
}

/// Every rule parameter of one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusParams {
    /// Signed into every transfer: no replay across networks.
    pub chain_id: u64,
    /// Human-readable part of this network's addresses.
    pub address_prefix: AddressPrefix,
    pub genesis_time_ms: u64,
    pub target_block_time_ms: u64,
    /// Target of block 1 (and of every block when pinned).
    pub initial_target: Target,
    /// The easiest target any block may have.
    pub pow_limit: Target,
    pub retarget: Retarget,
    /// Reward of the first blocks, in base units.
    pub block_reward: Amount,
    /// The reward halves every this many blocks; 0 means never.
    pub halving_interval: u64,
    /// Largest encoded block, in bytes.
    pub max_block_bytes: usize,
    /// Most transfers in one block.
    pub max_block_transfers: usize,
    /// Smallest fee a transfer may pay.
    pub min_fee: Amount,
    /// How far past a node's clock a block's time may be.
    pub max_future_drift_ms: u64,
}

/// What the difficulty rule needs to know about a block's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentInfo {
    pub height: Height,
    /// Time of block 1 on the parent's branch (the ASERT anchor); `None` when
    /// the parent is genesis.
    pub anchor_time_ms: Option<u64>,
}

impl ConsensusParams {
    /// The coinbase reward at `height`: `block_reward >> (height / halving_interval)`.
    pub fn reward_at(&self, height: Height) -> Amount {
        if self.halving_interval == 0 {
            return self.block_reward;
        }
        let halvings = height.0 / self.halving_interval;
        if halvings >= 64 {
            Amount::ZERO
        } else {
            Amount(self.block_reward.0 >> halvings)
        }
    }

    /// The target a child of `parent` with time `time_ms` must carry.
    ///
    /// # Consensus
    /// Pinned: the initial target. ASERT: block 1 uses the initial target and
    /// becomes the anchor; block `n > 1` with time `t` gets
    /// `asert(initial, t - time(block 1), n - 1)`: the target doubles for
    /// every half-life the chain is behind its schedule of one block per
    /// target block time since block 1, and halves for every half-life ahead.
    ///
    /// The block's own time is used, not its parent's: a miner whose
    /// hashrate fell refreshes its template's time as it searches, and the
    /// target eases in real time. With the parent's time a block mined after
    /// a 100x hashrate drop would take 100 block times whatever the rule; with
    /// its own time it takes a few half-lives. A miner gains at most
    /// `2^(max_future_drift / half_life)` by stamping the largest allowed
    /// time, and the spec bounds that ratio.
    ///
    /// Anchoring at block 1 rather than genesis means a network launched long
    /// after its genesis time does not start with a huge schedule debt.
    pub fn next_target(&self, parent: &ParentInfo, time_ms: u64) -> Target {
        match self.retarget {
            Retarget::Pinned => self.initial_target,
            Retarget::Asert { half_life_ms } => match (parent.height.0, parent.anchor_time_ms) {
                (0, _) | (_, None) => self.initial_target,
                (h, Some(anchor)) => asert_target(
                    self.initial_target,
                    self.pow_limit,
                    AsertParams {
                        target_block_time_ms: self.target_block_time_ms,
                        half_life_ms,
                    },
                    i128::from(time_ms) - i128::from(anchor),
                    h,
                ),
            },
        }
    }
}
