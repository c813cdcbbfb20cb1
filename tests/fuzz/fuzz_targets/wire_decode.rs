//! Any bytes as a Lightning message: decoding must return an error or a message that
//! re-encodes to bytes decoding to the same message; never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lnhub_wire::fuzz_decode(data));
