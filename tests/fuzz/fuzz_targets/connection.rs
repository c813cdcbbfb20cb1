//! Any bytes, in arbitrary chunks, at an accepted connection: from the first handshake byte,
//! or after a real handshake as arbitrary encrypted messages (BOLT 1, the channel hand-off,
//! held messages, a socket that stops writing). Errors, never panics, never unbounded memory.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lnhub_conn::fuzz_connection(data, std::time::Instant::now());
});
