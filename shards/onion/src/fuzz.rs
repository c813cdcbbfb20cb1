//! Entry point for a fuzz target: peel arbitrary bytes, never panic.
//!
//! Not part of the API (hidden from docs). The target crate in `tests/`
//! calls [`fuzz_peel`] with the fuzzer's input.

use secp256k1::{PublicKey, Secp256k1, SecretKey};

use crate::blinding::EncryptedData;
use crate::packet::{OnionPacket, ONION_PACKET_LEN};
use crate::payload::HopPayload;
use crate::peel::{peel, PeeledHop};

/// Fixed node secret of the fuzzed node (any valid scalar works).
const FUZZ_NODE_SECRET: [u8; 32] = [0x41; 32];

/// Peels `data` (padded with zeros or truncated to 1366 bytes) with a fixed
/// node key, with and without a path key, and parses `data` as a hop payload
/// and as `encrypted_data_tlv`. Must never panic.
#[doc(hidden)]
pub fn fuzz_peel(data: &[u8]) {
    let secp = Secp256k1::new();
    let node_secret = SecretKey::from_slice(&FUZZ_NODE_SECRET).expect("valid scalar");
    let mut packet: OnionPacket = [0; ONION_PACKET_LEN];
    let n = data.len().min(ONION_PACKET_LEN);
    packet[..n].copy_from_slice(&data[..n]);
    let mut out = PeeledHop::new();
    let hash = [0u8; 32];
    if peel(&secp, &node_secret, &packet, &hash, None, &mut out).is_ok() {
        let _ = out.instructions(lnhub_wire::types::Msat(1_000), 500_000);
    }
    let path_key = PublicKey::from_secret_key(&secp, &node_secret);
    let _ = peel(
        &secp,
        &node_secret,
        &packet,
        &hash,
        Some(&path_key),
        &mut out,
    );
    let _ = HopPayload::parse(data);
    let _ = EncryptedData::parse(data);
}
