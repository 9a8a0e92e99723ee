//! # cairn-wallet
//!
//! Keys that never leave the machine unencrypted ([`keystore`]), transfers
//! signed locally, and a typed JSON-RPC client of `cairn-node` (the
//! generated [`cairn_api::CairnApiClient`]). The `cairn-wallet` binary is
//! the command line around it.

pub mod keystore;
