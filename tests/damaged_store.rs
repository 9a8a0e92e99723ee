//! A node whose database file is damaged at chosen offsets: sled may
//! truncate its log and reopen at an older tip without an error. The node
//! must say how many blocks it lost (from the tip it recorded at its last
//! flush) and fetch them again from its peer.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use cairn_api::CairnApiClient;
use cairn_genesis::dev_accounts;
use support::*;

fn damage(path: &std::path::Path, offset: u64, len: usize) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open db");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
    f.write_all(&junk).expect("write junk");
}

async fn height_of(node: &NodeProcess) -> Option<u64> {
    node.client().chain_get_info().await.ok().map(|i| i.height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_reports_the_blocks_it_lost_and_refetches_them() {
    const HEIGHT: u64 = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = cairn_genesis::Network::builtin("dev").expect("dev");
    let miner = dev_accounts()[3].address.encode(&net.params.address_prefix);
    let source = NodeProcess::start(&dir.path().join("source"), &["--network", "dev"]);
    source
        .client()
        .mining_generate(HEIGHT as u32, miner)
        .await
        .expect("generate");
    let source_p2p = source.p2p_addr.clone().expect("P2P runs");
    let source_tip = source.client().chain_get_info().await.expect("info");
    let args = ["--network", "dev", "--peer", source_p2p.as_str()];

    let mut losses = Vec::new();
    let mut reopen_failures = Vec::new();
    for offset in [0u64, 4096, 20_000, 60_000] {
        // a fresh victim per offset: sled may refuse a store damaged twice
        let victim_dir = dir.path().join(format!("victim-{offset}"));
        // in sync with the source, then stopped cleanly (its last flush is at HEIGHT)
        let victim = NodeProcess::start(&victim_dir, &args);
        wait_for(
            "the victim to sync",
            Duration::from_secs(60),
            || async { (height_of(&victim).await? == HEIGHT).then_some(()) },
            || async { format!("victim at {:?}", height_of(&victim).await) },
        )
        .await;
        assert_eq!(victim.terminate(), Some(0), "clean exit");

        let db = victim_dir.join("db");
        let len = std::fs::metadata(&db).expect("db").len();
        damage(&db, offset.min(len.saturating_sub(600)), 512);

        let victim = NodeProcess::start(&victim_dir, &args);
        let reopened = victim.ready.height;
        eprintln!(
            "offset {offset}: reopened at height {reopened}, notice {:?}",
            victim.ready.notice
        );
        let notice = victim.ready.notice.clone().unwrap_or_default();
        // the height it opened at: the ready file is written after P2P
        // starts, so the refetch may already have moved the tip past it
        let opened = notice
            .split_once(&format!("(was at height {HEIGHT}, now at "))
            .and_then(|(_, rest)| rest.split_once(')'))
            .and_then(|(n, _)| n.parse::<u64>().ok());
        if reopened < HEIGHT || notice.contains("lost") {
            let Some(opened) = opened else {
                panic!(
                    "offset {offset}: ready at height {reopened} of {HEIGHT}, and the notice {notice:?} names no loss"
                )
            };
            assert!(
                opened <= reopened,
                "offset {offset}: opened at {opened}, ready at {reopened}"
            );
            let want = format!(
                "store lost {} blocks (was at height {HEIGHT}, now at {opened})",
                HEIGHT - opened
            );
            assert!(
                notice.contains(&want) && notice.contains("refetching them from peers"),
                "offset {offset}: the notice {notice:?} does not say {want:?}"
            );
            // the banner says it too
            assert!(
                victim.stdout.iter().any(|l| l.contains(&want)),
                "offset {offset}: the banner does not say {want:?}: {:?}",
                victim.stdout
            );
            losses.push(HEIGHT - opened);
        } else {
            assert!(
                victim
                    .ready
                    .notice
                    .as_deref()
                    .is_none_or(|n| !n.contains("lost")),
                "offset {offset}: nothing was lost, nothing is reported lost"
            );
        }
        // the lost blocks come back from the peer, on the same chain
        wait_for(
            "the victim to refetch the lost blocks",
            Duration::from_secs(60),
            || async {
                let info = victim.client().chain_get_info().await.ok()?;
                (info.best_hash == source_tip.best_hash).then_some(())
            },
            || async { format!("victim at {:?}", height_of(&victim).await) },
        )
        .await;
        assert_eq!(victim.terminate(), Some(0), "clean exit");
        // and the repaired store opens again, whole
        match NodeProcess::try_start(&victim_dir, &args, "warn") {
            Ok(again) => {
                assert_eq!(again.ready.best_hash, source_tip.best_hash.to_string());
                assert_eq!(
                    again.ready.notice, None,
                    "offset {offset}: {:?}",
                    again.ready
                );
            }
            Err(e) => reopen_failures.push(format!("offset {offset}: {e}")),
        }
    }
    assert!(
        reopen_failures.is_empty(),
        "a repaired store does not reopen: {reopen_failures:#?}"
    );
    assert!(
        !losses.is_empty(),
        "no damaged offset made the store lose blocks: the test proves nothing"
    );
    eprintln!("blocks lost and refetched per damaged offset: {losses:?}");
}
