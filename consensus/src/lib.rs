//! # cairn-consensus
//!
//! The rules of the Cairn chain as a pure, deterministic library: no I/O, no
//! clock, no floating point. Everything a node needs to decide whether a
//! block or a transfer is valid lives here, and nothing else does. A large
//! block's checks spread over rayon's threads ([`par`]), in ways that
//! cannot change a result.
//!
//! - [`hash`]: tagged SHA-256 and the hash newtypes ([`BlockHash`], [`TxId`], ...).
//! - [`amount`]: [`Amount`] in integer base units, checked arithmetic, exact decimal text.
//! - [`address`]: public keys, signatures, [`Address`] with a bech32m checksum.
//! - [`encoding`]: canonical borsh with bounded decoding.
//! - [`transfer`]: [`Transfer`]s, signing, `verify_strict`.
//! - [`block`]: headers, coinbase, blocks, the Merkle tx root.
//! - [`pow`]: [`Target`], [`Work`], the two-compression nonce hasher, ASERT.
//! - [`params`]: a network's [`ConsensusParams`] and its difficulty schedule.
//! - [`state`]: accounts, the incremental state commitment, apply and undo.
//! - [`validation`]: the validation tiers and [`BlockError`].
//! - [`fork`]: fork choice.
//! - [`par`]: splitting work over all cores without changing its result.
//!
//! The rules, with the reason for each, are written in `consensus/RULES.md`.

pub mod address;
pub mod amount;
pub mod block;
pub mod encoding;
pub mod fork;
pub mod genesis;
pub mod hash;
pub mod par;
pub mod params;
pub mod pow;
#[cfg(feature = "schemars")]
pub mod schema;
pub mod state;
pub mod transfer;
pub mod validation;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use address::{Address, AddressError, AddressPrefix, PublicKey, Signature};
pub use amount::{Amount, COIN};
pub use block::{Block, BlockHeader, Coinbase, Height};
pub use hash::{BlockHash, StateRoot, TxId, TxRoot};
pub use params::{ConsensusParams, ParentInfo, Retarget};
pub use pow::{Target, Work};
pub use state::{Account, AccountChange, AccountError, BlockEffects, UndoRecord};
pub use transfer::{SignedTransfer, Transfer, TransferError};
pub use validation::BlockError;

/// Re-exported so dependants sign with the same ed25519 implementation.
pub use ed25519_dalek::SigningKey;
