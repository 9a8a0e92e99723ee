//! The built-in networks and the refusal of bad specs.

use cairn_consensus::{Amount, BlockHash, Retarget};
use cairn_genesis::{DEV_SPEC, Network, SpecError, dev_accounts};

/// Changing either built-in genesis is a hard fork: these pins make that a
/// deliberate decision.
#[test]
fn builtin_genesis_hashes_are_pinned() {
    let dev = Network::builtin("dev").unwrap();
    let testnet = Network::builtin("testnet").unwrap();
    assert_eq!(
        dev.genesis_hash.to_string(),
        "e1c4bec0865445f2b0ca9fd93913b8f698f2a9e48b3c5df7d867e5d2726455a1",
        "dev genesis changed"
    );
    assert_eq!(
        testnet.genesis_hash.to_string(),
        "8546756f06032c6d16465b4c2a2bf28f6cfafde6f6d6a2089741f8925784aa72",
        "testnet genesis changed"
    );
    assert_ne!(dev.genesis_hash, testnet.genesis_hash);
    assert_eq!(dev.params.retarget, Retarget::Pinned);
    assert!(matches!(testnet.params.retarget, Retarget::Asert { .. }));
}

#[test]
fn dev_spec_funds_the_published_dev_accounts() {
    let dev = Network::builtin("dev").unwrap();
    let accounts = dev_accounts();
    assert_eq!(dev.accounts.len(), accounts.len());
    for a in &accounts {
        let funded = dev.accounts.iter().find(|(addr, _)| *addr == a.address);
        assert_eq!(
            funded.map(|(_, acc)| acc.balance),
            Some(Amount(100_000_000_000_000)),
            "dev account {} is funded",
            a.index
        );
    }
}

#[test]
fn every_parameter_changes_the_genesis_hash() {
    let base = Network::from_toml(DEV_SPEC).unwrap().genesis_hash;
    let edits = [
        ("chain_id = 1337", "chain_id = 1338"),
        ("name = \"dev\"", "name = \"dev2\""),
        (
            "genesis_time_ms = 1767225600000",
            "genesis_time_ms = 1767225600001",
        ),
        ("target_block_time_ms = 2000", "target_block_time_ms = 2001"),
        ("block_reward = 5000000000", "block_reward = 5000000001"),
        ("halving_interval = 0", "halving_interval = 1"),
        ("max_block_bytes = 2000000", "max_block_bytes = 2000001"),
        ("max_block_transfers = 12000", "max_block_transfers = 12001"),
        ("min_fee = 1000", "min_fee = 1001"),
        ("max_future_drift_ms = 15000", "max_future_drift_ms = 15001"),
        ("initial_target = \"00ff", "initial_target = \"00fe"),
        ("amount = 100000000000000", "amount = 100000000000001"),
    ];
    for (from, to) in edits {
        assert!(DEV_SPEC.contains(from), "{from} is in the spec");
        let edited = DEV_SPEC.replacen(from, to, 1);
        let net = Network::from_toml(&edited).unwrap_or_else(|e| panic!("{to}: {e}"));
        assert_ne!(
            net.genesis_hash, base,
            "editing {from} must change the genesis hash"
        );
    }
    // bootnodes are where to find peers, not consensus
    let with_boot = format!("bootnodes = [\"127.0.0.1:9000\"]\n{DEV_SPEC}");
    let net = Network::from_toml(&with_boot).unwrap();
    assert_eq!(net.genesis_hash, base);
    assert_eq!(net.bootnodes, vec!["127.0.0.1:9000".to_string()]);
}

fn refused(edit_from: &str, edit_to: &str) -> String {
    let text = DEV_SPEC.replacen(edit_from, edit_to, 1);
    assert_ne!(text, DEV_SPEC, "edit {edit_from} applies");
    match Network::from_toml(&text) {
        Ok(_) => panic!("spec with {edit_to} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_specs_are_refused_naming_the_field() {
    let cases = [
        ("chain_id = 1337", "chain_id = 0", "`chain_id`"),
        (
            "address_prefix = \"cdev\"",
            "address_prefix = \"C-DEV\"",
            "`address_prefix`",
        ),
        ("name = \"dev\"", "name = \"Dev Net\"", "`name`"),
        (
            "initial_target = \"00ff",
            "initial_target = \"zzff",
            "`consensus.initial_target`",
        ),
        (
            "pow_limit      = \"00ff",
            "pow_limit      = \"000f",
            "`consensus.initial_target`",
        ),
        (
            "retarget = \"pinned\"",
            "retarget = \"magic\"",
            "`consensus.retarget`",
        ),
        (
            "retarget = \"pinned\"",
            "retarget = \"asert\"",
            "`consensus.asert_half_life_ms`",
        ),
        (
            "max_block_bytes = 2000000",
            "max_block_bytes = 10",
            "`consensus.max_block_bytes`",
        ),
        (
            "max_block_transfers = 12000",
            "max_block_transfers = 0",
            "`consensus.max_block_transfers`",
        ),
        (
            "max_future_drift_ms = 15000",
            "max_future_drift_ms = 0",
            "`consensus.max_future_drift_ms`",
        ),
        (
            "target_block_time_ms = 2000",
            "target_block_time_ms = 1",
            "`consensus.target_block_time_ms`",
        ),
        (
            "cdev1wf6fdvmw3rjs2n4hdr7xx0znlh2k588mc7cghj",
            "cdev1wf6fdvmw3rjs2n4hdr7xx0znlh2k588mc7cghk",
            "`allocations[0].address`",
        ),
        (
            "cdev1dkcpu7jpauau67yczll6tcys4c6g6ughqvrqaq",
            "ctest1dkcpu7jpauau67yczll6tcys4c6g6ughqvrqaq",
            "`allocations[1].address`",
        ),
        (
            "amount = 100000000000000",
            "amount = 0",
            "`allocations[0].amount`",
        ),
        (
            "chain_id = 1337",
            "chain_id = 1337\ncolour = \"blue\"",
            "colour",
        ),
        ("chain_id = 1337", "chain_id = \"x\"", "chain_id"),
    ];
    for (from, to, needle) in cases {
        let msg = refused(from, to);
        assert!(
            msg.contains(needle),
            "error for {to:?} should mention {needle}: {msg}"
        );
    }
    let asert_too_short = DEV_SPEC.replacen(
        "retarget = \"pinned\"",
        "retarget = \"asert\"\nasert_half_life_ms = 3000",
        1,
    );
    let e = Network::from_toml(&asert_too_short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`consensus.asert_half_life_ms`"), "{e}");
    let overflow = DEV_SPEC.replace("amount = 100000000000000", "amount = 9000000000000000000");
    let e = Network::from_toml(&overflow).unwrap_err().to_string();
    assert!(e.contains("`allocations`"), "{e}");
    let bad_boot = format!("bootnodes = [\"nohost\"]\n{DEV_SPEC}");
    let e = Network::from_toml(&bad_boot).unwrap_err().to_string();
    assert!(e.contains("`bootnodes[0]`"), "{e}");
}

#[test]
fn files_are_read_with_a_limit_and_named_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.toml");
    std::fs::write(&path, DEV_SPEC).unwrap();
    assert_eq!(
        Network::from_file(&path).unwrap().genesis_hash,
        Network::builtin("dev").unwrap().genesis_hash
    );
    let missing = dir.path().join("missing.toml");
    match Network::from_file(&missing) {
        Err(SpecError::Read { path, .. }) => assert!(path.contains("missing.toml")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        Network::builtin("mainnet"),
        Err(SpecError::UnknownNetwork(_))
    ));
    let _ = BlockHash::ZERO;
}
