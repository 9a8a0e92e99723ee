//! Header sync and block download, as `impl Manager`.
//!
//! - A peer whose handshake claims more work than the node knows is asked
//!   for headers from a locator, one catch-up peer at a time; its answer is
//!   validated on a blocking thread ([`validate_batch`]) and handled by its
//!   [`PeerHeaders`] state (low-work chains are held apart, see
//!   `headers.rs`). A peer that claims more work than its headers show, or
//!   does not answer in time, is dropped and the next one asked.
//! - Announced headers (`NewHeaders`) are validated the same way; one that
//!   does not connect makes us ask its sender for headers, or, when a
//!   request to it is already out, ask again once that answer is in (the
//!   answer may end before the announced block). Only the asking counts
//!   towards the limit of announcements that never connect, the asking
//!   again included.
//! - Blocks of the best header chain are downloaded from the peers whose
//!   validated headers contain them ([`crate::download`]) and handed to the
//!   node in order, one batch at a time.

use std::time::{Duration, Instant};

use cairn_consensus::validation::{HeaderMeta, MEDIAN_TIME_SPAN};
use cairn_consensus::{Block, BlockHash, BlockHeader};

use crate::backend::{BlockVerdict, ChainEvent};
use crate::download::{Arrival, PeerSlot};
use crate::headers::{Decision, HeaderBatchError, ValidatedBatch, validate_batch};
use crate::manager::{HeadersRequest, Job, Manager, Shown, now_ms};
use crate::message::{MAX_GET_BLOCKS, MAX_HEADERS, MAX_LOCATOR, Message};
use crate::peer::{Direction, Misbehaviour};
use crate::progress::{SyncProgress, progress};

/// Blocks behind the best header from which the node counts as syncing.
const SYNC_THRESHOLD: u64 = 8;

impl Manager {
    pub(crate) fn on_job(&mut self, job: Job) {
        match job {
            Job::HelloResolved { id, best } => {
                if let Some(m) = best {
                    self.note_shown(id, &m);
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.hint = None;
                    }
                } else {
                    self.resolve_hints();
                }
                self.schedule_blocks();
            }
            Job::HeadersChecked {
                id,
                result,
                answer,
                full,
                continues,
            } => {
                self.on_headers_checked(id, result, answer, full, continues);
                if answer {
                    self.ask_again_if_announced(id);
                }
            }
            Job::BlocksProcessed { blocks, verdicts } => self.on_blocks_processed(blocks, verdicts),
            Job::TxsUnknown { id, ids } => self.request_txs(id, ids),
            Job::MempoolIds { id, ids } => self.announce_mempool(id, ids),
            Job::TxsProcessed { id, verdicts } => self.on_txs_processed(id, verdicts),
            Job::Send(msgs) => {
                for (id, msg) in msgs {
                    self.send(id, msg);
                }
            }
            Job::CompactMatched { id, partial } => self.on_compact_matched(id, *partial),
            Job::CompactHeader { id, header } => self.on_compact_header(id, header),
            Job::CompactProcessed {
                id,
                header,
                verdict,
            } => self.on_compact_processed(id, header, verdict),
        }
    }

    /// Headers arrived: peers whose announced block is among them now count
    /// as having it (an announcement says whom to ask; a peer that does not
    /// deliver is dropped and its requests go to others).
    fn resolve_hints(&mut self) {
        let found: Vec<(u64, HeaderMeta)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| Some((*id, *self.tree.get(&p.hint?)?)))
            .collect();
        for (id, m) in found {
            self.note_shown(id, &m);
            if let Some(p) = self.peers.get_mut(&id) {
                p.hint = None;
            }
        }
    }

    /// Inserts validated headers into the tree.
    fn insert_headers(&mut self, metas: &[HeaderMeta]) {
        if self.tree.insert(metas) > 0 {
            self.resolve_hints();
        }
    }

    /// The peer has shown `m`: it has that block and its ancestors.
    fn note_shown(&mut self, id: u64, m: &HeaderMeta) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let shown = Shown::of(m);
        p.known_blocks.insert(shown.hash);
        if p.best_known.is_none_or(|b| shown.work > b.work) {
            p.best_known = Some(shown);
        }
    }

    /// Asks `id` for headers: after `from` when continuing a chain, else
    /// from our best header and the best chain's locator.
    pub(crate) fn request_headers(&mut self, id: u64, from: Option<BlockHash>, catch_up: bool) {
        let best = self.tree.best().map(|b| b.header.hash());
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.headers_request.is_some() || p.headers_checking {
            return;
        }
        let first = from.or(best);
        p.headers_request = Some(HeadersRequest {
            since: Instant::now(),
            first,
            catch_up,
        });
        p.headers_deferred = None;
        let outbox = p.outbox.clone();
        let backend = self.backend.clone();
        let prefix: Vec<BlockHash> = first.into_iter().collect();
        tokio::task::spawn_blocking(move || {
            let mut loc = prefix;
            match backend.locator() {
                Ok(rest) => {
                    for h in rest {
                        if loc.len() >= MAX_LOCATOR {
                            break;
                        }
                        if !loc.contains(&h) {
                            loc.push(h);
                        }
                    }
                }
                Err(e) => tracing::error!("cannot build a block locator: {e}"),
            }
            // a full queue means a peer that does not read: the ping and
            // request timeouts catch it
            let _ = outbox.send(&Message::GetHeaders(loc));
        });
    }

    pub(crate) fn on_headers(&mut self, id: u64, headers: Vec<BlockHeader>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(request) = p.headers_request.take() else {
            // nobody asked: ignore (the message rate limit bounds the cost)
            return;
        };
        let full = headers.len() == MAX_HEADERS;
        if headers.is_empty() {
            // it has nothing after our locator
            self.after_peer_done(id, request.first.and_then(|h| self.tree.get(&h).copied()));
            self.ask_again_if_announced(id);
            return;
        }
        self.check_headers(id, headers, true, full);
    }

    /// After an answer to our headers request: if the peer announced a
    /// block that did not connect while the request was out, ask again
    /// (the answer showed its chain as it was when it answered, which may
    /// end before that block; nothing else would ask for it).
    fn ask_again_if_announced(&mut self, id: u64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.headers_busy() {
            // a request that is still to come will do
            return;
        }
        let Some(announced) = p.headers_again.take() else {
            return;
        };
        if !self.tree.contains(&announced) && self.tip.hash != announced {
            self.ask_unconnected(id);
        }
    }

    /// Asks `id` for headers after an announcement of a block we cannot
    /// connect. Each such request counts: a peer that keeps announcing
    /// blocks it never shows the way to is dropped after
    /// [`MAX_UNCONNECTING`](crate::manager::MAX_UNCONNECTING) of them in a
    /// row (headers that connect reset the count).
    fn ask_unconnected(&mut self, id: u64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.unconnecting += 1;
        if p.unconnecting > crate::manager::MAX_UNCONNECTING {
            self.misbehaved(id, Misbehaviour::UnconnectingHeaders);
            return;
        }
        self.request_headers(id, None, false);
    }

    pub(crate) fn on_new_headers(&mut self, id: u64, headers: Vec<BlockHeader>) {
        if headers.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get_mut(&id) {
            for h in &headers {
                p.known_blocks.insert(h.hash());
            }
        }
        self.check_headers(id, headers, false, false);
    }

    /// Validates a batch on a blocking thread with the context we hold.
    fn check_headers(&mut self, id: u64, headers: Vec<BlockHeader>, answer: bool, full: bool) {
        let Some(first) = headers.first().copied() else {
            return;
        };
        if headers
            .iter()
            .any(|h| self.tree.is_invalid(&h.hash()) || self.tree.is_invalid(&h.parent))
        {
            self.misbehaved(
                id,
                Misbehaviour::InvalidHeaders("headers of a chain found invalid".into()),
            );
            return;
        }
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let (context, continues) = match p.headers.tail() {
            Some((tail, mut ctx)) if answer && tail == first.parent => {
                // the held chain may hang off the header tree: its ancestors
                // there count for the median time too
                if let Some(root) = ctx.last().map(|m| m.header.parent)
                    && ctx.len() < MEDIAN_TIME_SPAN
                {
                    ctx.extend(self.tree.ancestors(&root, MEDIAN_TIME_SPAN - ctx.len()));
                }
                (ctx, true)
            }
            _ => (self.tree.ancestors(&first.parent, MEDIAN_TIME_SPAN), false),
        };
        if answer && let Some(p) = self.peers.get_mut(&id) {
            p.headers_checking = true;
        }
        let backend = self.backend.clone();
        let params = self.network.params.clone();
        self.spawn_job(move || {
            let stored = |h: &BlockHash| backend.header(h);
            let result = validate_batch(&headers, &context, &stored, &params, now_ms());
            Some(Job::HeadersChecked {
                id,
                result,
                answer,
                full,
                continues,
            })
        });
    }

    fn on_headers_checked(
        &mut self,
        id: u64,
        result: Result<ValidatedBatch, HeaderBatchError>,
        answer: bool,
        full: bool,
        continues: bool,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if answer {
            p.headers_checking = false;
        }
        let batch = match result {
            Ok(b) => b,
            Err(e) if e.is_abuse() => {
                if let HeaderBatchError::Invalid { hash, .. } = &e {
                    self.tree.mark_invalid(hash);
                }
                self.misbehaved(id, Misbehaviour::InvalidHeaders(e.to_string()));
                return;
            }
            Err(HeaderBatchError::Unconnected { hash, .. }) if !answer => {
                // an announcement on a chain we do not know (yet): ask, or,
                // with a request out, once its answer is in (unless the
                // answer shows it). Only the asking counts: an honest peer
                // relaying a burst of blocks faster than we connect them
                // sends many such announcements.
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                if p.headers_busy() {
                    if p.headers_again.is_none() {
                        tracing::debug!(
                            "peer {id} ({}) announced a block that does not connect while our headers request is out: asking again after the answer",
                            p.remote
                        );
                    }
                    p.headers_again = Some(hash);
                    return;
                }
                self.ask_unconnected(id);
                return;
            }
            Err(HeaderBatchError::Unconnected { hash, parent }) => {
                self.misbehaved(
                    id,
                    Misbehaviour::UselessHeaders(format!(
                        "its answer to our locator starts at {hash}, whose parent {parent} we never had"
                    )),
                );
                return;
            }
            Err(e) => {
                tracing::debug!("headers from peer {id} not checked: {e}");
                return;
            }
        };
        if let Some(last) = batch.metas.last() {
            self.note_shown(id, last);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.unconnecting = 0;
        }
        let unstored: Vec<HeaderMeta> = batch.metas[batch.stored..].to_vec();
        if !answer {
            // an announcement: keep what beats our chain, fetch it
            if unstored.last().is_some_and(|m| m.work > self.tip.work) {
                self.insert_headers(&unstored);
            }
            self.schedule_blocks();
            self.publish_progress();
            return;
        }
        if unstored.is_empty() {
            // all known to us: walk on through them, or it is done
            let last = batch.metas.last().map(|m| m.header.hash());
            if full {
                self.request_headers(id, last, true);
            } else {
                self.after_peer_done(id, None);
            }
            return;
        }
        let our_work = self.tip.work;
        let budget = self.budget;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let decision = p
            .headers
            .on_batch(unstored, continues, full, our_work, budget);
        match decision {
            Decision::Insert { headers, more } => {
                self.insert_headers(&headers);
                if more {
                    let last = headers.last().map(|m| m.header.hash());
                    self.more_headers(id, last);
                } else {
                    self.after_peer_done(id, None);
                }
                self.schedule_blocks();
            }
            Decision::AskMore { from } | Decision::Redownload { from } => {
                self.request_headers(id, Some(from), true);
            }
            Decision::Behind => self.after_peer_done(id, None),
            Decision::Drop(reason) => self.misbehaved(id, Misbehaviour::UselessHeaders(reason)),
        }
        self.publish_progress();
    }

    /// Asks for the next batch after `last`, or waits while the tree is full.
    fn more_headers(&mut self, id: u64, last: Option<BlockHash>) {
        if self.tree.len() >= self.cfg.max_headers_ahead {
            if let Some(p) = self.peers.get_mut(&id) {
                p.headers_deferred = last;
            }
        } else {
            self.request_headers(id, last, true);
        }
    }

    /// The peer has sent all it has: check what it claimed against what it
    /// showed. `empty_from`: the header our locator started at, when the
    /// answer was empty (the peer has nothing past it).
    fn after_peer_done(&mut self, id: u64, empty_from: Option<HeaderMeta>) {
        let known = self.known_work();
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some(m) = empty_from {
            // an empty answer to a locator that starts at our best header:
            // the peer has that header on its chain or knows nothing we lack
            let _ = m;
        }
        let shown = p.best_known.map(|b| b.work);
        let claimed = p.claimed_work.take();
        if let Some(c) = claimed
            && c > known
            && shown.is_none_or(|s| s < c)
        {
            self.misbehaved(
                id,
                Misbehaviour::ClaimedWorkNotShown(format!(
                    "claimed chain work 0x{} in its handshake, but its headers show {}",
                    c.to_hex(),
                    shown.map_or("nothing new".to_string(), |s| format!("0x{}", s.to_hex()))
                )),
            );
        }
    }

    /// Starts the catch-up header sync, when none is running, with a peer
    /// that claims more work than we know: one we chose (outbound) or the
    /// operator's own first, then the longest connected. A claim is never a
    /// reason to go first: a peer that boasts, stalls and reconnects at once
    /// would otherwise be asked before every honest peer, every time. Each
    /// peer is asked once per claim, so every claim gets its turn. Also
    /// resumes header requests that waited for room in the tree.
    pub(crate) fn sync_tick(&mut self) {
        if self.tree.len() < self.cfg.max_headers_ahead {
            let deferred: Vec<(u64, BlockHash)> = self
                .peers
                .iter()
                .filter_map(|(id, p)| p.headers_deferred.map(|h| (*id, h)))
                .collect();
            for (id, from) in deferred {
                self.request_headers(id, Some(from), true);
            }
        }
        self.start_catch_up();
        self.schedule_blocks();
        self.submit_ready();
        self.publish_progress();
    }

    /// Starts the catch-up header sync (see [`Manager::sync_tick`]) unless
    /// one is running.
    pub(crate) fn start_catch_up(&mut self) {
        let catching_up = self.peers.values().any(|p| {
            p.headers_request.is_some_and(|r| r.catch_up)
                || p.headers_checking
                || p.headers_deferred.is_some()
        });
        if catching_up {
            return;
        }
        let known = self.known_work();
        let next = self
            .peers
            .iter()
            .filter(|(_, p)| p.headers_request.is_none() && !p.headers_checking)
            .filter(|(_, p)| p.claimed_work.is_some_and(|c| c > known))
            .min_by_key(|(id, p)| {
                let chosen = p.direction == Direction::Outbound || p.local;
                (!chosen, p.connected_at, **id)
            })
            .map(|(id, _)| *id);
        if let Some(id) = next {
            self.request_headers(id, None, true);
        }
    }

    /// Sends block requests the downloader decides on.
    pub(crate) fn schedule_blocks(&mut self) {
        if self.tree.is_empty() {
            return;
        }
        let ids: Vec<(u64, Option<BlockHash>)> = self
            .peers
            .iter()
            .map(|(id, p)| (*id, p.best_known.map(|b| b.hash)))
            .collect();
        let mut slots = Vec::with_capacity(ids.len());
        for (id, best) in ids {
            let reach = best.and_then(|h| self.tree.path_reach(&h));
            slots.push(PeerSlot { id, reach });
        }
        let (start, path) = self.tree.path();
        let path = path.clone();
        let requests = self.downloader.schedule(start, &path, &slots, now_ms());
        if requests.is_empty() && self.downloader.in_flight() == 0 && !path.is_empty() {
            tracing::debug!(
                "nothing to download: path from {start} ({} blocks), peers {:?}, {}",
                path.len(),
                slots,
                self.downloader.describe()
            );
        }
        for (peer, hashes) in requests {
            for chunk in hashes.chunks(MAX_GET_BLOCKS) {
                self.send(peer, Message::GetBlocks(chunk.to_vec()));
            }
        }
    }

    pub(crate) fn on_block(&mut self, id: u64, block: Box<Block>) {
        let hash = block.hash();
        if let Some(p) = self.peers.get_mut(&id) {
            p.known_blocks.insert(hash);
        }
        match self.downloader.on_block(id, hash, block) {
            Arrival::Requested => {
                self.submit_ready();
                if self.downloader.in_flight_from(id) < self.downloader.config().per_peer / 2 {
                    self.schedule_blocks();
                }
            }
            Arrival::Unrequested(block) => {
                // nobody asked: its header is an announcement, within a limit
                let limit = self.cfg.unrequested_blocks_per_min;
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                if p.unrequested.1.elapsed() > Duration::from_secs(60) {
                    p.unrequested = (0, Instant::now());
                }
                p.unrequested.0 += 1;
                if p.unrequested.0 > limit {
                    self.misbehaved(id, Misbehaviour::UnrequestedBlocks);
                    return;
                }
                if !self.downloader.has(&hash) && !self.tree.contains(&hash) {
                    self.check_headers(id, vec![block.header], false, false);
                }
            }
        }
    }

    /// Hands the next run of downloaded blocks to the node.
    pub(crate) fn submit_ready(&mut self) {
        if self.downloader.is_processing() {
            return;
        }
        let (_, path) = self.tree.path();
        let path = path.clone();
        let ready = self.downloader.take_ready(&path);
        if ready.is_empty() {
            return;
        }
        let first_peer = ready[0].1;
        let blocks_meta: Vec<(BlockHash, u64)> =
            ready.iter().map(|(b, p)| (b.hash(), *p)).collect();
        let blocks: Vec<Block> = ready.into_iter().map(|(b, _)| b).collect();
        let backend = self.backend.clone();
        self.spawn_job(move || {
            let verdicts = backend.submit_blocks(blocks, first_peer);
            Some(Job::BlocksProcessed {
                blocks: blocks_meta,
                verdicts,
            })
        });
    }

    fn on_blocks_processed(&mut self, blocks: Vec<(BlockHash, u64)>, verdicts: Vec<BlockVerdict>) {
        let hashes: Vec<BlockHash> = blocks.iter().map(|(h, _)| *h).collect();
        self.downloader.on_processed(&hashes);
        let now = now_ms();
        let mut stored = Vec::new();
        let mut fetched = 0u64;
        for ((hash, peer), verdict) in blocks.into_iter().zip(verdicts) {
            match verdict {
                BlockVerdict::Accepted { .. } => {
                    fetched += 1;
                    stored.push(hash);
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.last_block_ms = Some(now);
                    }
                }
                BlockVerdict::Duplicate => stored.push(hash),
                BlockVerdict::Invalid { reason, condemned } => {
                    if condemned {
                        self.tree.mark_invalid(&hash);
                    }
                    self.misbehaved(
                        peer,
                        Misbehaviour::InvalidBlock(format!("{hash}: {reason}")),
                    );
                }
                BlockVerdict::NotYet { reason } => {
                    tracing::info!("block {hash} from peer {peer} not accepted yet: {reason}");
                    self.tree.forget(&hash);
                }
                BlockVerdict::Orphan => {
                    tracing::debug!("block {hash} from peer {peer} has no stored parent");
                }
                BlockVerdict::Failed { reason } => {
                    tracing::error!("block {hash} could not be processed: {reason}");
                }
            }
        }
        self.rate.add(fetched, Instant::now());
        self.tree.remove_stored(&stored);
        self.tip = self.backend.tip();
        self.tree.prune(self.tip.work);
        let tree = &self.tree;
        self.downloader.retain_arrived(|h| tree.contains(h));
        self.submit_ready();
        self.schedule_blocks();
        self.publish_progress();
    }

    /// The node's best chain moved (or a transfer arrived).
    pub(crate) fn on_chain_event(&mut self, ev: ChainEvent) {
        match ev {
            ChainEvent::TipChanged {
                tip,
                connected,
                tip_block,
                connected_count: _,
                disconnected: _,
            } => {
                self.tip = tip;
                let hashes: Vec<BlockHash> = connected.iter().map(|h| h.hash()).collect();
                self.tree.remove_stored(&hashes);
                if !self.tree.is_empty() {
                    self.tree.prune(self.tip.work);
                    let tree = &self.tree;
                    self.downloader.retain_arrived(|h| tree.contains(h));
                }
                self.announce_tip(&connected, tip_block);
            }
            ChainEvent::TransferAccepted { id, from_peer } => {
                self.pending_tx_announce.push((id, from_peer));
            }
        }
    }

    /// Chain events were lost: catch up with the tip from memory and
    /// announce it.
    pub(crate) fn on_events_lost(&mut self) {
        self.tip = self.backend.tip();
        self.tree.remove_stored(&[self.tip.hash]);
        self.tree.prune(self.tip.work);
        let header = self.tip.header;
        self.announce_tip(&[header], None);
    }

    /// Sync progress, while the node is catching up: from the moment the
    /// best header is [`SYNC_THRESHOLD`] blocks ahead until every block of
    /// its chain is in (a block or two in flight is ordinary relay).
    pub(crate) fn current_progress(&mut self) -> Option<SyncProgress> {
        let best = self.tree.best()?;
        if best.work <= self.tip.work {
            return None;
        }
        let (_, path) = self.tree.path();
        let remaining = path.len() as u64;
        let threshold = if self.was_syncing { 1 } else { SYNC_THRESHOLD };
        if remaining < threshold {
            return None;
        }
        Some(progress(
            best.header.height.0,
            remaining,
            self.rate.per_sec(Instant::now()),
        ))
    }

    /// Publishes the status and logs sync progress every few seconds.
    pub(crate) fn publish_progress(&mut self) {
        let p = self.current_progress();
        match &p {
            Some(pr) => {
                if !self.was_syncing || self.last_progress_log.elapsed() > Duration::from_secs(5) {
                    tracing::info!(
                        "syncing: block {} of {}, {} blocks/s{}",
                        pr.height,
                        pr.target_height,
                        pr.blocks_per_sec,
                        pr.eta_secs
                            .map(|s| format!(", about {s} s left"))
                            .unwrap_or_default()
                    );
                    self.last_progress_log = Instant::now();
                    let reach: Vec<(u64, Option<u64>)> = self
                        .peers
                        .iter()
                        .map(|(id, p)| (*id, p.best_known.map(|b| b.height)))
                        .collect();
                    tracing::debug!(
                        "download: {}; peers' best known heights {reach:?}",
                        self.downloader.describe()
                    );
                }
                self.was_syncing = true;
            }
            None => {
                if self.was_syncing {
                    tracing::info!("synced: height {}", self.tip.height);
                }
                self.was_syncing = false;
            }
        }
        self.publish_status(p);
    }
}
