#![no_main]
//! Fuzz target `block`: the properties are in `cairn_fuzz_checks::block`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::block(data));
