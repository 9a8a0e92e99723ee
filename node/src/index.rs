//! Derived indexes over the best chain: where each transaction is, and the
//! history of each address. They are not consensus data: they are written
//! after the block's own commit, in their own batches with their own tip,
//! and rebuilt from the stored blocks whenever they lag or diverge.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `T` | txid | [`TxLocation`] |
//! | `X` | address, height (BE), position (BE), kind | [`HistoryRecord`] |
//! | `M` | `index_tip` | hash of the last indexed block |

use borsh::{BorshDeserialize, BorshSerialize};
use cairn_consensus::{Address, Amount, Block, BlockHash, Height, TxId, encoding};

use crate::chain::{Chain, ChainError};
use crate::store::{ChainStore, StoreError};

const TX: u8 = b'T';
const HISTORY: u8 = b'X';
const TIP_KEY: &[u8] = b"Mindex_tip";

/// Where a transaction sits on the best chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxLocation {
    pub block: BlockHash,
    pub height: u64,
    /// 0 for the coinbase, then 1.. for the transfers in block order.
    pub position: u32,
}

/// How an address takes part in a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Role {
    Sent,
    Received,
    ToSelf,
    Mined,
}

/// One entry of an address's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HistoryRecord {
    pub txid: TxId,
    pub role: Role,
    pub counterparty: Option<Address>,
    pub amount: Amount,
    pub fee: Amount,
    pub block: BlockHash,
    pub height: u64,
    pub time_ms: u64,
}

type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn history_key(address: &Address, height: u64, position: u32, role: Role) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 20 + 8 + 4 + 1);
    k.push(HISTORY);
    k.extend_from_slice(&address.0);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&position.to_be_bytes());
    k.push(role as u8);
    k
}

fn tx_key(id: &TxId) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(TX);
    k.extend_from_slice(&id.0);
    k
}

/// Every index record a block adds: `(key, value)`.
fn records(block: &Block, hash: BlockHash) -> Vec<(Vec<u8>, Vec<u8>)> {
    let height = block.header.height.0;
    let time_ms = block.header.time_ms;
    let mut out = Vec::with_capacity(1 + 3 * block.transfers.len());
    let add_tx = |id: TxId, position: u32, out: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        let loc = TxLocation {
            block: hash,
            height,
            position,
        };
        out.push((tx_key(&id), encoding::encode(&loc)));
    };
    let cb = block.coinbase;
    let cb_id = cb.id();
    add_tx(cb_id, 0, &mut out);
    if height > 0 {
        let rec = HistoryRecord {
            txid: cb_id,
            role: Role::Mined,
            counterparty: None,
            amount: cb.amount,
            fee: Amount::ZERO,
            block: hash,
            height,
            time_ms,
        };
        out.push((
            history_key(&cb.recipient, height, 0, Role::Mined),
            encoding::encode(&rec),
        ));
    }
    for (i, tx) in block.transfers.iter().enumerate() {
        let position = i as u32 + 1;
        let id = tx.id();
        add_tx(id, position, &mut out);
        let t = tx.transfer;
        let from = tx.sender();
        let base = HistoryRecord {
            txid: id,
            role: Role::Sent,
            counterparty: Some(t.to),
            amount: t.amount,
            fee: t.fee,
            block: hash,
            height,
            time_ms,
        };
        if from == t.to {
            let rec = HistoryRecord {
                role: Role::ToSelf,
                ..base
            };
            out.push((
                history_key(&from, height, position, Role::ToSelf),
                encoding::encode(&rec),
            ));
        } else {
            out.push((
                history_key(&from, height, position, Role::Sent),
                encoding::encode(&base),
            ));
            let rec = HistoryRecord {
                role: Role::Received,
                counterparty: Some(from),
                fee: Amount::ZERO,
                ..base
            };
            out.push((
                history_key(&t.to, height, position, Role::Received),
                encoding::encode(&rec),
            ));
        }
    }
    out
}

fn apply(tree: &sled::Tree, ops: Ops, tip: Option<BlockHash>) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for (k, v) in ops {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    match tip {
        Some(t) => batch.insert(TIP_KEY, &t.0[..]),
        None => batch.remove(TIP_KEY),
    }
    tree.apply_batch(batch)?;
    Ok(())
}

/// The last indexed block.
pub fn tip(tree: &sled::Tree) -> Result<Option<BlockHash>, StoreError> {
    Ok(tree
        .get(TIP_KEY)?
        .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
        .map(BlockHash))
}

/// Where `id` is on the indexed chain, if anywhere.
pub fn tx_location(tree: &sled::Tree, id: &TxId) -> Result<Option<TxLocation>, StoreError> {
    match tree.get(tx_key(id))? {
        None => Ok(None),
        Some(v) => encoding::decode::<TxLocation>("tx location", &v, 64)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: format!("tx index entry {id}"),
                detail: e.to_string(),
            }),
    }
}

/// Up to `limit` history records of `address` below `before_height`
/// (all heights when `None`), newest first.
pub fn history(
    tree: &sled::Tree,
    address: &Address,
    before_height: Option<u64>,
    limit: usize,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut start = vec![HISTORY];
    start.extend_from_slice(&address.0);
    let mut end = start.clone();
    match before_height {
        Some(h) => end.extend_from_slice(&h.to_be_bytes()),
        None => end.extend_from_slice(&[0xff; 13]),
    }
    history_range(tree, start, end, limit)
}

/// Every history record of `address` in the block at `height`.
pub fn history_at(
    tree: &sled::Tree,
    address: &Address,
    height: u64,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut start = vec![HISTORY];
    start.extend_from_slice(&address.0);
    let end = {
        let mut e = start.clone();
        e.extend_from_slice(&height.saturating_add(1).to_be_bytes());
        e
    };
    start.extend_from_slice(&height.to_be_bytes());
    history_range(tree, start, end, usize::MAX)
}

fn history_range(
    tree: &sled::Tree,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: usize,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut out = Vec::new();
    for r in tree.range(start..end).rev().take(limit) {
        let (_, v) = r?;
        let rec = encoding::decode::<HistoryRecord>("history record", &v, 256).map_err(|e| {
            StoreError::Corrupt {
                what: "history record".into(),
                detail: e.to_string(),
            }
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// Removes every index record and the index tip.
fn clear(tree: &sled::Tree) -> Result<(), StoreError> {
    for prefix in [TX, HISTORY] {
        let mut batch = sled::Batch::default();
        for k in tree.scan_prefix([prefix]).keys() {
            batch.remove(k?);
        }
        tree.apply_batch(batch)?;
    }
    tree.remove(TIP_KEY)?;
    Ok(())
}

fn load(chain: &Chain<impl ChainStore>, hash: &BlockHash) -> Result<Block, ChainError> {
    chain
        .block(hash)?
        .ok_or_else(|| ChainError::Inconsistent(format!("block {hash} is not stored")))
}

/// Brings the index to the chain's tip: removes the records of blocks that
/// left the best chain, adds those of blocks that joined it. Returns the
/// number of blocks indexed. Records are written in batches of many blocks.
pub fn catch_up(chain: &Chain<impl ChainStore>, tree: &sled::Tree) -> Result<u64, ChainError> {
    let mut tip = tip(tree)?;
    if tip.is_none() {
        // nothing recorded, or a rebuild: drop whatever records are left
        clear(tree)?;
    }
    // unwind blocks that are no longer on the best chain
    while let Some(t) = tip {
        if chain.is_main(&t) {
            break;
        }
        let Some(entry) = chain.entry(&t) else {
            tracing::warn!("index tip {t} is unknown to the chain; rebuilding the indexes");
            clear(tree)?;
            tip = None;
            break;
        };
        let parent = entry.header.parent;
        let block = load(chain, &t)?;
        let ops = records(&block, t)
            .into_iter()
            .map(|(k, _)| (k, None))
            .collect();
        apply(tree, ops, Some(parent))?;
        tip = Some(parent);
    }
    let from = match tip {
        Some(t) => chain.entry(&t).map_or(0, |e| e.header.height.0 + 1),
        None => 0,
    };
    let to = chain.height().0;
    let mut ops: Ops = Vec::new();
    let mut last = tip;
    let mut indexed = 0;
    for h in from..=to {
        let Some(hash) = chain.hash_at(Height(h)) else {
            break;
        };
        let block = load(chain, &hash)?;
        ops.extend(records(&block, hash).into_iter().map(|(k, v)| (k, Some(v))));
        last = Some(hash);
        indexed += 1;
        if ops.len() >= 50_000 {
            apply(tree, std::mem::take(&mut ops), last)?;
        }
    }
    if indexed > 0 || !ops.is_empty() {
        apply(tree, ops, last)?;
    }
    Ok(indexed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainConfig;
    use crate::store::SledStore;
    use crate::verify::verify_signatures;
    use cairn_consensus::testkit::{self, ChainBuilder, address};
    use cairn_consensus::{COIN, Height};
    use cairn_genesis::testkit::network;
    use std::sync::Arc;

    const NOW: u64 = u64::MAX / 2;

    #[test]
    fn follows_the_best_chain_through_a_reorg() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap());
        let mut a = ChainBuilder::new(testkit::params(), 3, Amount(100 * COIN));
        let mut b = a.clone();
        let (mut chain, _) = Chain::open(
            store.clone(),
            &network(&a),
            verify_signatures,
            ChainConfig::default(),
        )
        .unwrap();
        let t1 = a.transfer(0, address(1), Amount(COIN), Amount(5), 0);
        a.extend(vec![t1], address(7));
        let t2 = a.transfer(0, address(1), Amount(2 * COIN), Amount(5), 0);
        a.extend(vec![t2], address(7));
        for blk in &a.blocks[1..] {
            chain.process_block(blk.clone(), NOW).unwrap();
        }
        assert_eq!(
            catch_up(&chain, store.tree()).unwrap(),
            3,
            "genesis and two blocks"
        );
        let loc = tx_location(store.tree(), &t2.id()).unwrap().unwrap();
        assert_eq!((loc.height, loc.position), (2, 1));
        let h = history(store.tree(), &address(1), None, 10).unwrap();
        assert_eq!(
            h.iter().map(|r| r.txid).collect::<Vec<_>>(),
            vec![t2.id(), t1.id()]
        );
        assert_eq!(h[0].role, Role::Received);
        assert_eq!(
            history(store.tree(), &address(1), Some(2), 10)
                .unwrap()
                .len(),
            1
        );
        // a longer branch without t2 replaces the chain
        let t3 = b.transfer(2, address(1), Amount(3 * COIN), Amount(5), 0);
        for txs in [vec![t1], vec![t3], vec![]] {
            let blk = b.extend(txs, address(8));
            chain.process_block(blk, NOW).unwrap();
        }
        assert_eq!(chain.tip_hash(), b.tip_hash());
        catch_up(&chain, store.tree()).unwrap();
        assert_eq!(tx_location(store.tree(), &t2.id()).unwrap(), None);
        let loc = tx_location(store.tree(), &t3.id()).unwrap().unwrap();
        assert_eq!(loc.block, b.blocks[2].hash());
        let mined: Vec<_> = history(store.tree(), &address(7), None, 10).unwrap();
        assert!(
            mined.is_empty(),
            "the old branch's rewards left the history"
        );
        assert_eq!(
            history(store.tree(), &address(8), None, 10).unwrap().len(),
            3
        );
        assert_eq!(tip(store.tree()).unwrap(), Some(b.tip_hash()));
        assert_eq!(chain.hash_at(Height(3)), Some(b.tip_hash()));
    }
}
