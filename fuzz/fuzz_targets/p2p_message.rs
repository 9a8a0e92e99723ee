#![no_main]
//! Fuzz target `p2p_message`: the properties are in `cairn_fuzz_checks::p2p_message`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::p2p_message(data));
