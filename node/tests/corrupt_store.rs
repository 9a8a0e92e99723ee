//! A damaged database file: the node still opens, on a consistent chain,
//! and says so when nothing could be recovered.

use std::io::{Seek, SeekFrom, Write};

use cairn_consensus::testkit::{self, ChainBuilder, address};
use cairn_consensus::{Amount, COIN};
use cairn_genesis::testkit::network;
use cairn_node::config::NodeConfig;
use cairn_node::node::Node;
use cairn_node::store::ChainStore;

fn damage(path: &std::path::Path, offset: u64, len: usize) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
    f.write_all(&junk).unwrap();
}

#[test]
fn a_damaged_database_opens_consistently_and_says_so() {
    let b = ChainBuilder::new(testkit::params(), 2, Amount(100 * COIN));
    let mut lost = 0;
    for offset in [0u64, 4096, 20_000] {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig::ephemeral(dir.path().into());
        {
            let (node, _) = Node::open(network(&b), config.clone()).unwrap();
            node.generate(40, address(5)).unwrap();
            node.shutdown();
        }
        let db = dir.path().join("db");
        let len = std::fs::metadata(&db).unwrap().len();
        damage(&db, offset.min(len.saturating_sub(600)), 512);
        let (node, report) = Node::open(network(&b), config)
            .unwrap_or_else(|e| panic!("offset {offset}: the damaged store does not open: {e}"));
        let height = node.tip().header.height.0;
        assert!(height <= 40);
        if height < 40 {
            // sled truncated its log: the node says how much it lost
            let notice = report.notice.clone().unwrap_or_default();
            let want = format!(
                "store lost {} blocks (was at height 40, now at {height})",
                40 - height
            );
            assert!(
                notice.contains(&want),
                "offset {offset}: reopened at {height} of 40 with notice {notice:?}"
            );
            lost += 1;
        }
        // whatever survived is consistent: every account sums to the rewards mined
        let miner = node.account(&address(5)).unwrap().balance;
        assert_eq!(miner.0, height * b.params.block_reward.0, "offset {offset}");
        assert_eq!(
            node.store()
                .hash_at(cairn_consensus::Height(height))
                .unwrap(),
            Some(node.tip().hash)
        );
        node.shutdown();
    }
    assert!(
        lost > 0,
        "no damage made the store lose blocks: the test proves nothing"
    );
}

/// A kill while sled writes a snapshot leaves `snap.<lsn>.generating`,
/// which sled 0.34 then reads as the newest snapshot and refuses to open
/// (sled #1527); the node removes it and opens on its last snapshot.
#[test]
fn a_snapshot_left_half_written_by_a_kill_does_not_stop_the_node() {
    let b = ChainBuilder::new(testkit::params(), 2, Amount(100 * COIN));
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::ephemeral(dir.path().into());
    {
        let (node, _) = Node::open(network(&b), config.clone()).unwrap();
        node.generate(40, address(5)).unwrap();
        node.shutdown();
    }
    let sled_dir = dir.path().join("db").parent().unwrap().to_path_buf();
    let half = sled_dir.join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&half, [0x5a; 100]).unwrap();
    let (node, _) = Node::open(network(&b), config)
        .unwrap_or_else(|e| panic!("a half-written snapshot stops the store opening: {e}"));
    assert_eq!(node.tip().header.height.0, 40);
    assert!(!half.exists());
    node.shutdown();
}
