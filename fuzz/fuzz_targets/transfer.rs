#![no_main]
//! Fuzz target `transfer`: the properties are in `cairn_fuzz_checks::transfer`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::transfer(data));
