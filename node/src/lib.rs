//! # cairn-node
//!
//! The Cairn node as a library (the `cairn-node` binary is a thin shell
//! around it):
//!
//! - [`store`]: the chain store behind the [`store::ChainStore`] trait, on sled.
//! - [`chain`]: the chain manager: block acceptance in any order, side
//!   branches, orphans, reorganisations, start-up recovery.
//! - [`verify`]: parallel signature checks.

pub mod chain;
pub mod store;
pub mod verify;
