//! Any bytes, split into arbitrary chunks, into an established BOLT 8 transport's framing
//! decoder: errors, never panics, never unbounded buffering.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lnhub_noise::fuzz_framing(data));
