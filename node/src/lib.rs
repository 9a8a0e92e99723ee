//! # cairn-node
//!
//! The Cairn node as a library (the `cairn-node` binary is a thin shell
//! around it):
//!
//! - [`store`]: the chain store behind the [`store::ChainStore`] trait, on sled.
//! - [`chain`]: the chain manager: block acceptance in any order, side
//!   branches, orphans, reorganisations, start-up recovery.
//! - [`mempool`]: pending transfers, by sender and nonce, selected by fee.
//! - [`miner`]: the proof-of-work search on a dedicated rayon pool, templates.
//! - [`index`]: transaction locations and address histories, written by
//!   a thread that follows the tip; [`flusher`]: makes blocks from peers
//!   durable behind the tip.
//! - [`node`]: everything wired together, with the mining thread.
//! - [`network`]: the node as the P2P layer (crate `cairn-p2p`, re-exported
//!   as [`p2p`]) sees it, and the peer store.
//! - [`rpc`]: the JSON-RPC server; [`http`] its HTTP front (Host and
//!   Origin guards, credentials, `/metrics`, `/health`, the [`explorer`]);
//!   [`rpc_policy`] the per-call policy (method classes, request budgets);
//!   [`auth`] the cookie and logins.
//! - [`metrics`]: Prometheus metrics; [`status`]: sync state, peers, health;
//!   [`forks`]: the record of reorganisations and side branches.
//! - [`config`]: configuration structs.
//! - [`verify`]: parallel signature checks and the signature cache.

pub mod auth;
pub mod chain;
pub mod client;
pub mod config;
pub mod explorer;
pub mod flusher;
pub mod forks;
pub mod http;
pub mod index;
pub mod lab;
pub mod mempool;
pub mod metrics;
pub mod miner;
pub mod network;
pub mod node;
pub mod rpc;
pub mod rpc_policy;
pub mod service;
pub mod status;
pub mod store;
pub mod verify;

/// Locks `m`, taking the data of a poisoned mutex as it is: every holder
/// in this crate leaves its data consistent between statements, so a panic
/// elsewhere must not take the node down with it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub use cairn_p2p as p2p;
