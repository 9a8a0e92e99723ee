//! The node around a reorganisation: transfers of disconnected blocks return
//! to the mempool and are mined again; the indexes follow.

use cairn_consensus::testkit::{self, ChainBuilder, address};
use cairn_consensus::{Amount, COIN};
use cairn_genesis::testkit::network;
use cairn_node::config::NodeConfig;
use cairn_node::index;
use cairn_node::node::{Node, Source};

#[test]
fn transfers_of_a_losing_branch_return_to_the_mempool_and_get_mined() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = ChainBuilder::new(testkit::params(), 4, Amount(100 * COIN));
    let (node, _) = Node::open(network(&other), NodeConfig::ephemeral(dir.path().into())).unwrap();

    let tx = other.transfer(0, address(1), Amount(COIN), Amount(10), 0);
    node.submit_transfer(tx, None).unwrap();
    let mined = node.generate(1, address(9)).unwrap();
    assert_eq!(node.with_mempool(|p| p.len()), 0);
    node.wait_for_index();
    let loc = index::tx_location(node.store().tree(), &tx.id())
        .unwrap()
        .unwrap();
    assert_eq!(loc.block, mined[0]);

    // a heavier branch without the transfer
    let b1 = other.extend(vec![], address(8));
    let b2 = other.extend(vec![], address(8));
    for r in node.submit_blocks(vec![b1, b2.clone()], Source::Peer(1)) {
        r.unwrap();
    }
    assert_eq!(node.tip().hash, b2.hash());
    assert_eq!(node.with_mempool(|p| p.len()), 1, "the transfer is back");
    node.wait_for_index();
    assert_eq!(
        index::tx_location(node.store().tree(), &tx.id()).unwrap(),
        None
    );
    assert_eq!(
        node.account(&address(1)).unwrap().balance,
        Amount(100 * COIN)
    );

    let again = node.generate(1, address(9)).unwrap();
    assert_eq!(node.with_mempool(|p| p.len()), 0);
    node.wait_for_index();
    let loc = index::tx_location(node.store().tree(), &tx.id())
        .unwrap()
        .unwrap();
    assert_eq!((loc.block, loc.height), (again[0], 3));
    assert_eq!(
        node.account(&address(1)).unwrap().balance,
        Amount(101 * COIN)
    );
    node.shutdown();
}
