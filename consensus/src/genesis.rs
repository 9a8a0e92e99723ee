//! The genesis block, built from a network's parameters and allocations.
//!
//! # Consensus
//! Genesis is not validated by the block rules; it is defined. Its `parent`
//! field carries the hash of the network spec that produced it, so nodes
//! whose specs differ in any parameter disagree on the genesis hash and
//! refuse each other at the handshake.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, BlockHeader, Coinbase, HEADER_VERSION, Height, merkle_root};
use crate::hash::BlockHash;
use crate::params::ConsensusParams;
use crate::state::{Account, state_root};

/// The genesis accounts: allocations summed per address, sorted by address.
/// `None` if an address's total overflows.
pub fn genesis_accounts(allocations: &[(Address, Amount)]) -> Option<Vec<(Address, Account)>> {
    let mut map = std::collections::BTreeMap::<Address, Account>::new();
    for (addr, amount) in allocations {
        let acc = map.entry(*addr).or_default();
        acc.balance = acc.balance.checked_add(*amount)?;
    }
    Some(map.into_iter().collect())
}

/// The genesis block of a network whose spec hashes to `spec_hash`.
pub fn genesis_block(
    params: &ConsensusParams,
    spec_hash: [u8; 32],
    accounts: &[(Address, Account)],
) -> Block {
    let coinbase = Coinbase {
        height: Height::GENESIS,
        recipient: Address::default(),
        amount: Amount::ZERO,
    };
    let header = BlockHeader {
        version: HEADER_VERSION,
        parent: BlockHash(spec_hash),
        height: Height::GENESIS,
        tx_root: merkle_root(&[coinbase.id()]),
        state_root: state_root(accounts.iter().map(|(a, s)| (a, s))),
        time_ms: params.genesis_time_ms,
        target: params.initial_target,
        nonce: 0,
    };
    Block {
        header,
        coinbase,
        transfers: Vec::new(),
    }
}
