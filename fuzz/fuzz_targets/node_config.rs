#![no_main]
//! Fuzz target `node_config`: the properties are in `cairn_fuzz_checks::node_config`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::node_config(data));
