//! Builders for tests and benchmarks: deterministic keys, network
//! parameters with an easy pinned target, and a [`ChainBuilder`] that mines
//! valid blocks in memory. Only compiled for tests and with feature `testkit`.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use crate::address::{Address, AddressPrefix};
use crate::amount::{Amount, COIN};
use crate::block::{Block, BlockHeader, Coinbase, HEADER_VERSION, merkle_root};
use crate::genesis::{genesis_accounts, genesis_block};
use crate::hash::{BlockHash, tagged};
use crate::params::{ConsensusParams, ParentInfo, Retarget};
use crate::pow::{PowHasher, Target};
use crate::state::{Account, StateOverlay};
use crate::transfer::{SignedTransfer, Transfer, public_key};
use crate::validation::median_time_past;

/// The `i`-th deterministic test key.
pub fn key(i: u64) -> SigningKey {
    SigningKey::from_bytes(&tagged("cairn/testkit/key", &[&i.to_le_bytes()]))
}

/// The address of [`key`]`(i)`.
pub fn address(i: u64) -> Address {
    Address::from_public_key(&public_key(&key(i)))
}

/// Parameters of a small test network: pinned target needing about 16
/// attempts per block, 1 s blocks, 50-coin reward.
pub fn params() -> ConsensusParams {
    ConsensusParams {
        chain_id: 0xCA11,
        address_prefix: AddressPrefix::new("ctk").expect("valid prefix"),
        genesis_time_ms: 1_767_225_600_000,
        target_block_time_ms: 1_000,
        initial_target: Target::from_difficulty_bits(4),
        pow_limit: Target::from_difficulty_bits(1),
        retarget: Retarget::Pinned,
        block_reward: Amount(50 * COIN),
        halving_interval: 0,
        max_block_bytes: 4_000_000,
        max_block_transfers: 20_000,
        min_fee: Amount(1),
        max_future_drift_ms: 15_000,
    }
}

/// Finds a nonce for `header` by brute force from 0 (test targets are easy).
pub fn mine(header: &mut BlockHeader) {
    let hasher = PowHasher::new(&header.prehash());
    let mut nonce = 0u64;
    while !header.target.is_met_by(&hasher.hash(nonce)) {
        nonce += 1;
    }
    header.nonce = nonce;
}

/// Builds a valid chain in memory, block by block.
#[derive(Clone)]
pub struct ChainBuilder {
    pub params: ConsensusParams,
    pub accounts: BTreeMap<Address, Account>,
    /// The accounts at genesis.
    pub genesis_accounts: Vec<(Address, Account)>,
    pub blocks: Vec<Block>,
    /// Milliseconds added to the parent's time for each new block.
    pub spacing_ms: u64,
}

impl ChainBuilder {
    /// A chain at genesis, with `balance` for each of the test keys `0..funded`.
    pub fn new(params: ConsensusParams, funded: u64, balance: Amount) -> ChainBuilder {
        let allocations: Vec<(Address, Amount)> =
            (0..funded).map(|i| (address(i), balance)).collect();
        let accounts = genesis_accounts(&allocations).expect("no overflow");
        let genesis = genesis_block(&params, [0x5e; 32], &accounts);
        let spacing_ms = params.target_block_time_ms;
        ChainBuilder {
            params,
            genesis_accounts: accounts.clone(),
            accounts: accounts.into_iter().collect(),
            blocks: vec![genesis],
            spacing_ms,
        }
    }

    pub fn genesis(&self) -> &Block {
        &self.blocks[0]
    }

    pub fn tip(&self) -> &Block {
        self.blocks.last().expect("genesis is always there")
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.tip().hash()
    }

    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).copied().unwrap_or_default()
    }

    /// A signed transfer from test key `from` with its next nonce (counting
    /// `pending` earlier transfers by the same key not yet in a block).
    pub fn transfer(
        &self,
        from: u64,
        to: Address,
        amount: Amount,
        fee: Amount,
        pending: u64,
    ) -> SignedTransfer {
        let k = key(from);
        Transfer {
            chain_id: self.params.chain_id,
            from: public_key(&k),
            to,
            amount,
            fee,
            nonce: self.account(&address(from)).nonce + pending,
        }
        .sign(&k)
    }

    /// The header fields for a child of the tip, before the state root and nonce.
    fn child_header(&self, time_ms: u64) -> BlockHeader {
        let parent = self.tip();
        let anchor = self.blocks.get(1).map(|b| b.header.time_ms);
        let target = self.params.next_target(
            &ParentInfo {
                height: parent.header.height,
                anchor_time_ms: anchor,
            },
            time_ms,
        );
        BlockHeader {
            version: HEADER_VERSION,
            parent: parent.hash(),
            height: parent.header.height.next().expect("height"),
            tx_root: Default::default(),
            state_root: Default::default(),
            time_ms,
            target,
            nonce: 0,
        }
    }

    /// The median time past at the tip.
    pub fn median_time_past(&self) -> u64 {
        let times: Vec<u64> = self.blocks.iter().map(|b| b.header.time_ms).collect();
        median_time_past(&times)
    }

    /// Builds and mines (but does not append) a valid child of the tip.
    /// Panics if a transfer does not apply: tests build valid chains.
    pub fn build(&self, transfers: Vec<SignedTransfer>, miner: Address) -> Block {
        let time_ms = self.tip().header.time_ms + self.spacing_ms.max(1);
        let mut header = self.child_header(time_ms);
        let accounts = &self.accounts;
        let mut overlay =
            StateOverlay::new(|a: &Address| accounts.get(a).copied().unwrap_or_default());
        let mut fees = Amount::ZERO;
        for t in &transfers {
            overlay.apply_transfer(t).expect("testkit transfers apply");
            fees = fees.checked_add(t.transfer.fee).expect("fees");
        }
        let coinbase = Coinbase {
            height: header.height,
            recipient: miner,
            amount: self
                .params
                .reward_at(header.height)
                .checked_add(fees)
                .expect("reward"),
        };
        overlay.credit(miner, coinbase.amount).expect("credit");
        let effects = overlay.into_effects(self.tip().header.state_root, fees);
        header.state_root = effects.state_root;
        let mut ids = vec![coinbase.id()];
        ids.extend(transfers.iter().map(|t| t.id()));
        header.tx_root = merkle_root(&ids);
        mine(&mut header);
        Block {
            header,
            coinbase,
            transfers,
        }
    }

    /// Appends a block built by [`ChainBuilder::build`] (trusted: no checks).
    pub fn push(&mut self, block: Block) {
        let accounts = &self.accounts;
        let mut overlay =
            StateOverlay::new(|a: &Address| accounts.get(a).copied().unwrap_or_default());
        for t in &block.transfers {
            overlay.apply_transfer(t).expect("applies");
        }
        overlay
            .credit(block.coinbase.recipient, block.coinbase.amount)
            .expect("credit");
        let effects = overlay.into_effects(self.tip().header.state_root, Amount::ZERO);
        for c in effects.changes {
            if c.after.is_empty() {
                self.accounts.remove(&c.address);
            } else {
                self.accounts.insert(c.address, c.after);
            }
        }
        self.blocks.push(block);
    }

    /// Builds, appends and returns a block.
    pub fn extend(&mut self, transfers: Vec<SignedTransfer>, miner: Address) -> Block {
        let b = self.build(transfers, miner);
        self.push(b.clone());
        b
    }
}
