#![no_main]
//! Fuzz target `genesis_spec`: the properties are in `cairn_fuzz_checks::genesis_spec`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::genesis_spec(data));
