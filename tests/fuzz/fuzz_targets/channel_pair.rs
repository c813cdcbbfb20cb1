//! Two channels driven by fuzz bytes (adds, removals, fee updates,
//! signatures, deliveries, persists, disconnects, crash-restarts, hostile
//! messages to a copy): any disagreement, panic or lost HTLC is a crash.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lnhub_channel::fuzz::fuzz_pair(data));
