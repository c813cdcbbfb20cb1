//! Any bytes as an onion packet and as a hop payload: peeling and payload parsing return a
//! BOLT 4 failure or a hop, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lnhub_onion::fuzz_peel(data));
