#![no_main]
//! Fuzz target `noise_handshake`: the properties are in `cairn_fuzz_checks::noise_handshake`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_checks::noise_handshake(data));
