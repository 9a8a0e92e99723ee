#![no_main]
//! Fuzz target `wallet_file`: the properties are in `cairn_fuzz_checks::wallet_file`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::wallet_file(data));
