//! Gossip, as `impl Manager`: new best blocks are announced by header to
//! every peer not known to have them (syncing or not), transfers by id;
//! peers ask for what they lack. Addresses are exchanged on request.
//!
//! # Correctness
//! - Transfer announcements are rate limited per peer (`inv_per_sec`), and
//!   transfers nobody asked for are ignored.
//! - `GetAddrs` is answered once per connection; unsolicited `Addrs` are
//!   limited to a trickle, and addresses are filed under the peer that sent
//!   them (one source can fill only its own bucket).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use cairn_consensus::{Block, BlockHeader, SignedTransfer, TxId};

use crate::addr::{NetClass, classify};
use crate::backend::TxVerdict;
use crate::manager::{Job, MAX_TXS_IN_FLIGHT, Manager, now_ms, source_for};

/// Pending transfers announced to a peer when it connects: below what one
/// peer may have in flight from us, and within its announcement burst.
pub(crate) const ANNOUNCE_ON_CONNECT: usize = 4_000;
use crate::message::{MAX_ADDRS, MAX_ANNOUNCE, MAX_INV, Message, NetAddr};
use crate::peer::Misbehaviour;

/// Unsolicited addresses a peer may send, and how fast the allowance
/// refills (one per ten seconds), as Bitcoin Core's addr trickle.
const ADDR_TOKENS_MAX: u64 = 10;

impl Manager {
    /// Announces the new best chain: the connected headers each peer lacks.
    /// `tip_block`: the tip's block, when the node has it in memory.
    pub(crate) fn announce_tip(
        &mut self,
        connected: &[BlockHeader],
        tip_block: Option<Arc<Block>>,
    ) {
        let Some(tip) = connected.last() else { return };
        let tip_hash = tip.hash();
        let start = connected.len().saturating_sub(MAX_ANNOUNCE);
        let headers = &connected[start..];
        let hashes: Vec<_> = headers.iter().map(|h| h.hash()).collect();
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        // peers that take compact blocks and lack only the tip get it so
        let mut compact_to = Vec::new();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if p.known_blocks.contains(&tip_hash) {
                p.sent_height = p.sent_height.max(tip.height.0);
                continue;
            }
            // skip the ones it has; it asks for the parent if it lacks it
            let from = hashes
                .iter()
                .rposition(|h| p.known_blocks.contains(h))
                .map_or(0, |i| i + 1);
            for h in &hashes[from..] {
                p.known_blocks.insert(*h);
            }
            p.sent_height = p.sent_height.max(tip.height.0);
            if p.wants_compact && from + 1 == headers.len() {
                compact_to.push(id);
                continue;
            }
            let msg = Message::NewHeaders(headers[from..].to_vec());
            self.send(id, msg);
        }
        self.send_compact(*tip, compact_to, tip_block);
    }

    /// Announces accepted transfers to the peers that do not have them.
    pub(crate) fn flush_tx_announcements(&mut self) {
        if self.pending_tx_announce.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.pending_tx_announce);
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let t: Vec<TxId> = txs
                .iter()
                .filter(|(t, from)| *from != Some(id) && p.known_txs.insert(*t))
                .map(|(t, _)| *t)
                .collect();
            for chunk in t.chunks(MAX_INV) {
                self.send(id, Message::InvTxs(chunk.to_vec()));
            }
        }
    }

    /// Announces our pending transfers to a peer that just connected (those
    /// it is not known to have).
    pub(crate) fn announce_mempool(&mut self, id: u64, ids: Vec<TxId>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let fresh: Vec<TxId> = ids.into_iter().filter(|t| p.known_txs.insert(*t)).collect();
        for chunk in fresh.chunks(MAX_INV) {
            self.send(id, Message::InvTxs(chunk.to_vec()));
        }
    }

    pub(crate) fn on_inv_txs(&mut self, id: u64, ids: Vec<TxId>) {
        let rate = u64::from(self.cfg.inv_per_sec);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        // token bucket: `inv_per_sec`, bursts up to four seconds' worth
        let now = Instant::now();
        let refill = now.duration_since(p.inv_tokens.1).as_millis() as u64 * rate / 1000;
        p.inv_tokens = ((p.inv_tokens.0 + refill).min(rate * 4), now);
        let n = ids.len() as u64;
        if p.inv_tokens.0 < n {
            self.misbehaved(id, Misbehaviour::Flood("transfer announcements"));
            return;
        }
        p.inv_tokens.0 -= n;
        let asked: HashSet<TxId> = self
            .peers
            .values()
            .flat_map(|p| p.txs_in_flight.keys().copied())
            .collect();
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let fresh: Vec<TxId> = ids
            .into_iter()
            .filter(|t| {
                p.known_txs.insert(*t);
                !asked.contains(t)
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        let backend = self.backend.clone();
        self.spawn_job(move || {
            let known = backend.has_transfers(&fresh);
            let ids: Vec<TxId> = fresh
                .into_iter()
                .zip(known)
                .filter(|(_, k)| !k)
                .map(|(t, _)| t)
                .collect();
            (!ids.is_empty()).then_some(Job::TxsUnknown { id, ids })
        });
    }

    pub(crate) fn request_txs(&mut self, id: u64, ids: Vec<TxId>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let room = MAX_TXS_IN_FLIGHT.saturating_sub(p.txs_in_flight.len());
        for t in ids.into_iter().take(room) {
            if p.txs_in_flight.insert(t, now).is_none() {
                p.txs_to_request.push(t);
            }
        }
        self.send_tx_requests(id);
    }

    /// Sends the transfers `id` is to be asked for, in requests of up to
    /// `MAX_INV`, as far as this tick's budget allows (the rest waits for
    /// the next tick, and then fills fuller requests).
    pub(crate) fn send_tx_requests(&mut self, id: u64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let mut requests = Vec::new();
        while p.gettxs_budget > 0 && !p.txs_to_request.is_empty() {
            let n = p.txs_to_request.len().min(MAX_INV);
            requests.push(p.txs_to_request.drain(..n).collect::<Vec<_>>());
            p.gettxs_budget -= 1;
        }
        for r in requests {
            self.send(id, Message::GetTxs(r));
        }
    }

    pub(crate) fn on_txs(&mut self, id: u64, mut txs: Vec<SignedTransfer>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        // only what we asked for
        txs.retain(|t| p.txs_in_flight.remove(&t.id()).is_some());
        if txs.is_empty() {
            return;
        }
        let backend = self.backend.clone();
        self.spawn_job(move || {
            let ids: Vec<TxId> = txs.iter().map(|t| t.id()).collect();
            let verdicts = backend.submit_transfers(txs, id);
            Some(Job::TxsProcessed {
                id,
                verdicts: ids.into_iter().zip(verdicts).collect(),
            })
        });
    }

    pub(crate) fn on_txs_processed(&mut self, id: u64, verdicts: Vec<(TxId, TxVerdict)>) {
        for (txid, v) in verdicts {
            match v {
                TxVerdict::Accepted => {
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.last_tx_ms = Some(now_ms());
                    }
                }
                TxVerdict::Ignored { .. } => {}
                TxVerdict::Invalid { reason } => {
                    self.misbehaved(
                        id,
                        Misbehaviour::InvalidTransfer(format!("{txid}: {reason}")),
                    );
                    return;
                }
            }
        }
    }

    pub(crate) fn on_get_addrs(&mut self, id: u64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.addrs_answered {
            return;
        }
        p.addrs_answered = true;
        let include_local = matches!(
            classify(p.remote.ip()),
            NetClass::Loopback | NetClass::Private
        );
        let addrs: Vec<NetAddr> = self
            .book
            .sample(MAX_ADDRS, include_local, now_ms(), &mut self.rng)
            .into_iter()
            .map(NetAddr::from)
            .collect();
        self.send(id, Message::Addrs(addrs));
    }

    pub(crate) fn on_addrs(&mut self, id: u64, list: Vec<NetAddr>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let solicited = std::mem::take(&mut p.addrs_asked);
        if !solicited {
            // a trickle: one address per ten seconds, ten at most at once
            let now = Instant::now();
            let refill = now.duration_since(p.addr_tokens.1).as_secs() / 10;
            if refill > 0 {
                p.addr_tokens = ((p.addr_tokens.0 + refill).min(ADDR_TOKENS_MAX), now);
            }
            let n = list.len() as u64;
            if n > p.addr_tokens.0 {
                // too many: ignore them (not misbehaviour; Core relays addresses)
                return;
            }
            p.addr_tokens.0 -= n;
        }
        let source = source_for(p);
        let addrs: Vec<SocketAddr> = list.into_iter().map(SocketAddr::from).collect();
        let crate::addrbook::AddrSource::Peer(src) = source else {
            return;
        };
        self.book.add_learned(&addrs, src, now_ms());
    }
}
