//! Helpers shared by the integration tests: deterministic keys and routes.

#![allow(dead_code)]

use lnhub_onion::build::{build_onion, RouteHop};
use lnhub_onion::packet::{OnionPacket, ONION_PACKET_LEN};
use lnhub_onion::payload::PayloadFields;
use lnhub_wire::types::{Msat, ShortChannelId};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

/// A valid secret key derived from `seed` (never zero, below the order).
pub fn key(seed: u32) -> SecretKey {
    let mut b = [0x11u8; 32];
    b[..4].copy_from_slice(&seed.to_be_bytes());
    SecretKey::from_slice(&b).unwrap()
}

/// A standard forwarding (or final, without scid) payload.
pub fn payload(i: usize, is_final: bool, metadata: &[u8]) -> Vec<u8> {
    payload_with(
        i,
        1_000_000 + i as u64,
        800_000 + i as u32,
        is_final,
        metadata,
    )
}

/// A payload with the given amount and expiry (zero values encode in 2 bytes).
pub fn payload_with(i: usize, amt: u64, cltv: u32, is_final: bool, metadata: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PayloadFields {
        amt_to_forward: Some(Msat(amt)),
        outgoing_cltv_value: Some(cltv),
        short_channel_id: (!is_final).then_some(ShortChannelId(i as u64 + 1)),
        payment_metadata: (!metadata.is_empty()).then_some(metadata),
        ..Default::default()
    }
    .write(&mut out);
    out
}

/// Builds an onion through `nodes` with the given payloads.
pub fn build(
    secp: &Secp256k1<All>,
    session: &SecretKey,
    nodes: &[SecretKey],
    payloads: &[Vec<u8>],
    payment_hash: &[u8; 32],
) -> (OnionPacket, Vec<[u8; 32]>) {
    let pks: Vec<PublicKey> = nodes
        .iter()
        .map(|k| PublicKey::from_secret_key(secp, k))
        .collect();
    let route: Vec<RouteHop<'_>> = pks
        .iter()
        .zip(payloads)
        .map(|(k, p)| RouteHop {
            pubkey: k,
            payload: p,
        })
        .collect();
    let mut onion = [0u8; ONION_PACKET_LEN];
    let secrets = build_onion(secp, session, &route, payment_hash, &mut onion).unwrap();
    (onion, secrets)
}
