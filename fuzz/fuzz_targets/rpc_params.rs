#![no_main]
//! Fuzz target `rpc_params`: the properties are in `cairn_fuzz_checks::rpc_params`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::rpc_params(data));
