//! Replays every stored fuzz corpus entry and crash input through its
//! target's check, on stable, as part of `make test`. A crash input the
//! fuzzer found (`fuzz/artifacts/<target>/crash-*`, ...) is kept in the
//! repository once fixed, so the fix stays fixed.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let fuzz = fuzz_dir();
    for (name, _) in cairn_fuzz_checks::TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty: run `make fuzz-seed` (or the fuzzer) and commit it"
        );
        let target = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.exists(), "{} is missing", target.display());
    }
}

#[test]
fn stored_corpora_and_crash_inputs_replay() {
    let fuzz = fuzz_dir();
    let mut total = 0;
    for (name, check) in cairn_fuzz_checks::TARGETS {
        for kind in ["corpus", "artifacts"] {
            for path in inputs(&fuzz.join(kind).join(name)) {
                let data = std::fs::read(&path).expect("read input");
                let result = std::panic::catch_unwind(|| check(&data));
                assert!(
                    result.is_ok(),
                    "{} fails the {name} properties; replay with \
                     `cargo +nightly fuzz run {name} {}` in fuzz/",
                    path.display(),
                    path.display()
                );
                total += 1;
            }
        }
    }
    eprintln!("replayed {total} stored fuzz inputs");
    assert!(total > 0);
}
