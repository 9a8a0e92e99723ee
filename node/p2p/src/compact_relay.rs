//! Compact block relay, as `impl Manager` (the wire format and the rebuild
//! are in [`crate::compact`]).
//!
//! Both sides send `SendCompact` once connected. A new tip that a peer
//! lacks, when it is the only block it lacks, goes to a peer that asked for
//! compact blocks as a `CompactBlock`; other peers, and a tip several blocks
//! ahead, are announced by header as before. The receiver:
//! 1. matches the short ids against its mempool (a blocking job);
//! 2. when nothing is missing and the transaction root matches, hands the
//!    rebuilt block to the node in that same job (no round through the
//!    manager: a block whose transfers we have costs one thread hop);
//!    otherwise asks the sender for the missing transfers in one
//!    `GetBlockTxs`, and rebuilds from its `BlockTxs`;
//! 3. falls back to the header path (`NewHeaders`: validate the header,
//!    then download the full block) whenever a rebuild fails: a block on
//!    another parent, a root mismatch, a wrong answer, a `NotFound`, or no
//!    answer within [`COMPACT_TIMEOUT`].
//!
//! # Correctness
//! - A compact block is an announcement: its short id list is bounded by
//!   the network's `max_block_transfers`, and its header is validated in
//!   context (proof of work, time, target) before the mempool is searched;
//!   a header that fails goes to the header path, which judges and
//!   penalises it as it would a `NewHeaders` announcement.
//! - One rebuild at a time per peer (a newer compact block replaces it), so
//!   what we keep for a peer is bounded by one block.
//! - Only a block whose transfers match its header's root reaches the node;
//!   an invalid one is then the sender's fault, as a full block would be.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_consensus::{Block, BlockHash, BlockHeader};

use crate::backend::{BlockVerdict, ChainBackend};
use cairn_consensus::validation::MEDIAN_TIME_SPAN;

use crate::compact::{self, BlockTxs, CompactBlock, GetBlockTxs, PartialBlock};
use crate::headers::validate_batch;
use crate::manager::{Job, Manager, now_ms};
use crate::message::Message;
use crate::peer::Misbehaviour;

/// How long we wait for the transfers asked of a compact block's sender
/// before fetching the whole block instead.
pub(crate) const COMPACT_TIMEOUT: Duration = Duration::from_secs(2);

/// A compact block of at most this many transfers is built on the
/// manager's task (microseconds); a bigger one on a blocking thread.
const INLINE_COMPACT_TRANSFERS: usize = 64;

impl Manager {
    /// Sends the tip to `peers` as a compact block: built here from the
    /// node's in-memory block when it is small, on a blocking thread
    /// otherwise (read from the store if the node no longer holds it). If
    /// the block cannot be read, they get its header instead.
    pub(crate) fn send_compact(
        &mut self,
        tip: BlockHeader,
        peers: Vec<u64>,
        block: Option<Arc<Block>>,
    ) {
        if peers.is_empty() {
            return;
        }
        let nonce: u64 = rand::Rng::r#gen(&mut self.rng);
        if let Some(b) = &block
            && b.transfers.len() <= INLINE_COMPACT_TRANSFERS
            && b.header.hash() == tip.hash()
        {
            let msg = Message::CompactBlock(Box::new(CompactBlock::of(b, nonce)));
            for id in peers {
                self.send(id, msg.clone());
            }
            return;
        }
        let backend = self.backend.clone();
        let max = self.network.params.max_block_bytes;
        self.spawn_job(move || {
            let hash = tip.hash();
            let block = match block.filter(|b| b.header.hash() == hash) {
                Some(b) => Ok(b),
                None => match backend.block_bytes(&hash) {
                    Ok(Some(bytes)) => Block::decode(&bytes, max).map(Arc::new).map_err(|e| {
                        tracing::error!("stored block {hash} does not decode: {e}");
                    }),
                    other => {
                        tracing::debug!("block {hash} not readable for a compact block: {other:?}");
                        Err(())
                    }
                },
            };
            let msg = match block {
                Ok(b) => Message::CompactBlock(Box::new(CompactBlock::of(&b, nonce))),
                Err(()) => Message::NewHeaders(vec![tip]),
            };
            Some(Job::Send(
                peers.into_iter().map(|id| (id, msg.clone())).collect(),
            ))
        });
    }

    pub(crate) fn on_compact_block(&mut self, id: u64, cb: CompactBlock) {
        let hash = cb.hash();
        let header = cb.header;
        let max = self.network.params.max_block_transfers;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.known_blocks.insert(hash);
        if cb.short_ids.len() > max {
            self.misbehaved(
                id,
                Misbehaviour::InvalidBlock(format!(
                    "compact block {hash} lists {} transfers, over the limit of {max}",
                    cb.short_ids.len()
                )),
            );
            return;
        }
        if hash == self.tip.hash {
            return;
        }
        if header.parent != self.tip.hash
            || self.tree.is_invalid(&hash)
            || self.tree.is_invalid(&header.parent)
        {
            // not a child of our tip (or a known bad one): the header path
            // sorts it out, fetching the full block if it is worth it
            self.on_new_headers(id, vec![header]);
            return;
        }
        metrics::counter!("cairn_p2p_compact_blocks_total", "outcome" => "received").increment(1);
        let backend = self.backend.clone();
        let context = self.tree.ancestors(&header.parent, MEDIAN_TIME_SPAN);
        let params = self.network.params.clone();
        self.spawn_job(move || {
            // the header first (proof of work, time, target: cheap), so a
            // bogus one costs no mempool scan; any doubt goes to the header
            // path, which judges it as an announcement
            let stored = |h: &BlockHash| backend.header(h);
            if validate_batch(&[header], &context, &stored, &params, now_ms()).is_err() {
                return Some(Job::CompactHeader { id, header });
            }
            let slots = backend.match_short_ids(&cb.key(), &cb.short_ids);
            let partial = PartialBlock::new(cb, slots);
            // the common case, every transfer known: straight to the node,
            // without a round through the manager (each hop between
            // threads costs a wake-up)
            if partial.missing().is_empty()
                && backend.tip().hash != header.hash()
                && let Ok(block) = partial.rebuild()
            {
                return Some(submit_rebuilt(&*backend, id, block));
            }
            Some(Job::CompactMatched {
                id,
                partial: Box::new(partial),
            })
        });
    }

    pub(crate) fn on_compact_matched(&mut self, id: u64, partial: PartialBlock) {
        let header = partial.compact.header;
        if header.hash() == self.tip.hash {
            return;
        }
        let missing = partial.missing();
        if missing.is_empty() {
            self.finish_compact(id, &partial);
            return;
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        tracing::debug!(
            "compact block {} from peer {id}: asking for {} of {} transfers",
            header.hash(),
            missing.len(),
            partial.slots.len()
        );
        p.compact = Some((partial, Instant::now()));
        self.send(
            id,
            Message::GetBlockTxs(GetBlockTxs {
                block: header.hash(),
                indexes: missing,
            }),
        );
    }

    /// Rebuilds and submits a complete partial block, or falls back.
    fn finish_compact(&mut self, id: u64, partial: &PartialBlock) {
        let header = partial.compact.header;
        match partial.rebuild() {
            Ok(block) => {
                let backend = self.backend.clone();
                self.spawn_job(move || Some(submit_rebuilt(&*backend, id, block)));
            }
            Err(e) => self.compact_fallback(id, header, &e.to_string()),
        }
    }

    /// A compact block whose header did not pass: judged as an announcement.
    pub(crate) fn on_compact_header(&mut self, id: u64, header: BlockHeader) {
        self.compact_fallback(id, header, "its header did not pass the checks");
    }

    /// Fetches the full block the ordinary way: as if `id` had announced
    /// its header.
    fn compact_fallback(&mut self, id: u64, header: BlockHeader, why: &str) {
        metrics::counter!("cairn_p2p_compact_blocks_total", "outcome" => "fallback").increment(1);
        tracing::debug!(
            "compact block {} from peer {id} not rebuilt ({why}): fetching it whole",
            header.hash()
        );
        if header.hash() == self.tip.hash {
            return;
        }
        self.on_new_headers(id, vec![header]);
    }

    pub(crate) fn on_compact_processed(
        &mut self,
        id: u64,
        header: BlockHeader,
        verdict: BlockVerdict,
    ) {
        let hash = header.hash();
        match verdict {
            BlockVerdict::Accepted { .. } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.last_block_ms = Some(now_ms());
                }
                self.rate.add(1, Instant::now());
            }
            BlockVerdict::Duplicate => {}
            BlockVerdict::Invalid { reason, condemned } => {
                if condemned {
                    self.tree.mark_invalid(&hash);
                }
                self.misbehaved(id, Misbehaviour::InvalidBlock(format!("{hash}: {reason}")));
            }
            BlockVerdict::Orphan => self.compact_fallback(id, header, "its parent is unknown"),
            BlockVerdict::NotYet { reason } => {
                tracing::info!("compact block {hash} from peer {id} not accepted yet: {reason}");
            }
            BlockVerdict::Failed { reason } => {
                tracing::error!("compact block {hash} could not be processed: {reason}");
            }
        }
    }

    /// Serves the transfers of a stored block (on a blocking thread).
    pub(crate) fn on_get_block_txs(&mut self, id: u64, req: GetBlockTxs) {
        let max_txs = self.network.params.max_block_transfers;
        if req.indexes.len() > max_txs {
            self.misbehaved(
                id,
                Misbehaviour::Undecodable(format!(
                    "a request for {} transfers of one block, over the limit of {max_txs}",
                    req.indexes.len()
                )),
            );
            return;
        }
        let backend = self.backend.clone();
        let max = self.network.params.max_block_bytes;
        self.spawn_job(move || {
            let block = backend
                .block_bytes(&req.block)
                .ok()
                .flatten()
                .and_then(|b| Block::decode(&b, max).ok());
            let msg = match block {
                Some(block) => match compact::pick(&block, &req.indexes) {
                    Some(transfers) => Message::BlockTxs(BlockTxs {
                        block: req.block,
                        transfers,
                    }),
                    // an index past the block's end: nothing to give
                    None => Message::NotFound(vec![req.block]),
                },
                None => Message::NotFound(vec![req.block]),
            };
            Some(Job::Send(vec![(id, msg)]))
        });
    }

    pub(crate) fn on_block_txs(&mut self, id: u64, answer: BlockTxs) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some((mut partial, _)) = p
            .compact
            .take_if(|(partial, _)| partial.compact.hash() == answer.block)
        else {
            // nobody asked (or we gave up waiting): ignore
            return;
        };
        let header = partial.compact.header;
        match partial.fill(answer) {
            Ok(()) => self.finish_compact(id, &partial),
            Err(e) => self.compact_fallback(id, header, &e.to_string()),
        }
    }

    /// A `NotFound` for a block we are rebuilding: fetch it whole.
    pub(crate) fn compact_not_found(&mut self, id: u64, hashes: &[BlockHash]) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some((partial, _)) = p
            .compact
            .take_if(|(partial, _)| hashes.contains(&partial.compact.hash()))
        {
            let header = partial.compact.header;
            self.compact_fallback(id, header, "its sender did not find it");
        }
    }

    /// Gives up on rebuilds whose transfers did not come in time.
    pub(crate) fn compact_tick(&mut self, now: Instant) {
        let late: Vec<(u64, BlockHeader)> = self
            .peers
            .iter_mut()
            .filter_map(|(id, p)| {
                let (partial, _) = p
                    .compact
                    .take_if(|(_, since)| now.duration_since(*since) > COMPACT_TIMEOUT)?;
                Some((*id, partial.compact.header))
            })
            .collect();
        for (id, header) in late {
            self.compact_fallback(id, header, "no answer in time");
        }
    }
}

/// Hands a block rebuilt from a compact block to the node (on a blocking
/// thread); its verdict goes back to the manager.
fn submit_rebuilt(backend: &dyn ChainBackend, id: u64, block: Block) -> Job {
    metrics::counter!("cairn_p2p_compact_blocks_total", "outcome" => "rebuilt").increment(1);
    let header = block.header;
    let verdict = backend
        .submit_blocks(vec![block], id)
        .pop()
        .unwrap_or(BlockVerdict::Failed {
            reason: "no verdict".into(),
        });
    Job::CompactProcessed {
        id,
        header,
        verdict,
    }
}
