//! Crash safety: a child process writes blocks (with reorganisations, and
//! state checkpoints that the reorganisations cross) to a sled store and is
//! killed with SIGKILL at random instants, 50 times. After
//! every kill the store must reopen to a consistent chain: every block the
//! child reported durable is still there, and the accounts are exactly the
//! state of the chain up to the reopened tip.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_consensus::testkit::{self, ChainBuilder, address};
use cairn_consensus::{Amount, Block, COIN, Height};
use cairn_genesis::testkit::network;
use cairn_node::chain::{Chain, ChainConfig};
use cairn_node::store::{ChainStore, SledStore};
use cairn_node::verify::verify_signatures;
use rand::Rng;

const DIR_ENV: &str = "CAIRN_CRASH_TEST_DIR";
const NOW: u64 = u64::MAX / 2;

fn root() -> ChainBuilder {
    ChainBuilder::new(testkit::params(), 8, Amount(1_000_000 * COIN))
}

/// The deterministic main line: block `h` carries two transfers.
fn main_block(b: &ChainBuilder) -> Block {
    let h = b.tip().header.height.0;
    let txs = vec![
        b.transfer(h % 8, address((h + 1) % 8), Amount(COIN), Amount(10), 0),
        b.transfer(
            (h + 3) % 8,
            address(20 + h % 5),
            Amount(2 * COIN),
            Amount(10),
            0,
        ),
    ];
    b.build(txs, address(30))
}

/// A competing sibling of the main block at the same height.
fn rival_block(b: &ChainBuilder) -> Block {
    let h = b.tip().header.height.0;
    b.build(
        vec![b.transfer((h + 5) % 8, address(40), Amount(COIN), Amount(10), 0)],
        address(31),
    )
}

/// The builder at the main line's height `height`.
fn builder_at(height: u64) -> ChainBuilder {
    let mut b = root();
    while b.tip().header.height.0 < height {
        let blk = main_block(&b);
        b.push(blk);
    }
    b
}

/// Run as a child: writes blocks forever, printing each durable height.
/// Every fifth height, a rival block arrives first and is then reorganised
/// away when the main line grows past it.
#[test]
#[ignore = "run by crash_recovery as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let b = root();
    let store = SledStore::open(std::path::Path::new(&dir), 8 << 20).unwrap();
    let (mut chain, _) = Chain::open(
        store,
        &network(&b),
        verify_signatures,
        ChainConfig::default(),
    )
    .unwrap();
    // resume the main line from the main-line block below the tip
    let tip_height = chain.height().0;
    let mut b = builder_at(tip_height.saturating_sub(1));
    loop {
        let h = b.tip().header.height.0 + 1;
        if h.is_multiple_of(5) {
            chain.process_block(rival_block(&b), NOW).unwrap();
        }
        let m = main_block(&b);
        chain.process_block(m.clone(), NOW).unwrap();
        b.push(m);
        // fold the account overlay now and then, so kills land in checkpoints
        // and reorganisations cross them
        if h.is_multiple_of(3) {
            chain.store().checkpoint().unwrap();
        }
        if chain.tip_hash() == b.tip_hash() {
            println!("durable {}", chain.height().0);
        }
    }
}

#[test]
fn kill_9_at_random_instants_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut durable: u64 = 0;
    let mut rebuilds = 0;
    let started = Instant::now();
    for round in 0..50 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wanted: u32 = rng.gen_range(1..25);
        let mut seen = 0;
        while seen < wanted {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(h) = line.strip_prefix("durable ") {
                        durable = durable.max(h.trim().parse().unwrap());
                        seen += 1;
                    }
                }
                other => panic!("child stopped in round {round}: {other:?}"),
            }
        }
        // a random instant within the next few blocks: the point of the test
        // is to land the kill anywhere inside a commit, a flush or a reorg
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3_000)));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        let b = root();
        let (chain, report) = Chain::open(
            store,
            &network(&b),
            verify_signatures,
            ChainConfig::default(),
        )
        .unwrap_or_else(|e| panic!("round {round}: store does not reopen: {e}"));
        if report.rebuilt.is_some() {
            rebuilds += 1;
        }
        let tip = chain.tip_hash();
        let height = chain.height().0;
        assert!(
            height >= durable,
            "round {round}: height {height} lost durable height {durable}"
        );
        // the tip is the main block or its rival at that height
        let expected = builder_at(height);
        let accounts: std::collections::BTreeMap<_, _> =
            chain.store().all_accounts().unwrap().into_iter().collect();
        if tip == expected.tip_hash() {
            assert_eq!(
                accounts, expected.accounts,
                "round {round}: state at tip {height}"
            );
        } else {
            let mut rival = builder_at(height - 1);
            let r = rival_block(&rival);
            assert_eq!(
                tip,
                r.hash(),
                "round {round}: tip is neither main nor rival block"
            );
            rival.push(r);
            assert_eq!(
                accounts, rival.accounts,
                "round {round}: state at rival tip {height}"
            );
        }
        assert_eq!(chain.hash_at(Height(height)), Some(tip));
    }
    eprintln!(
        "50 kills survived in {:?}; final durable height {durable}; state rebuilt {rebuilds} times",
        started.elapsed()
    );
}
