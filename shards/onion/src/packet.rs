//! The fixed-size `onion_routing_packet` and its field offsets.
//!
//! BOLT 4 "Packet Structure": `version` (1) || `public_key` (33) ||
//! `hop_payloads` (1300) || `hmac` (32) = 1366 bytes. The packet is kept as a
//! plain byte array so it can live inside `update_add_htlc` buffers and be
//! peeled without copying into another representation.

/// Length of `hop_payloads`: fixed by BOLT 4 so every hop sees the same size
/// whatever its position in the route (20 legacy 65-byte hops).
pub const HOP_PAYLOADS_LEN: usize = 1300;
/// Length of the trailing HMAC and of each per-hop `next_hmac` (HMAC-SHA256).
pub const HMAC_LEN: usize = 32;
/// Length of a compressed secp256k1 public key.
pub const PUBKEY_LEN: usize = 33;
/// Total length of an `onion_routing_packet`: 1 + 33 + 1300 + 32.
pub const ONION_PACKET_LEN: usize = 1 + PUBKEY_LEN + HOP_PAYLOADS_LEN + HMAC_LEN;
/// The only packet `version` BOLT 4 defines.
pub const ONION_VERSION: u8 = 0;
/// Offset of `public_key` in the packet (after the version byte).
pub const PUBKEY_OFFSET: usize = 1;
/// Offset of `hop_payloads` in the packet.
pub const HOP_PAYLOADS_OFFSET: usize = PUBKEY_OFFSET + PUBKEY_LEN;
/// Offset of the packet `hmac`.
pub const HMAC_OFFSET: usize = HOP_PAYLOADS_OFFSET + HOP_PAYLOADS_LEN;
/// Smallest valid `payload_length`: BOLT 4 aborts below two bytes (a TLV
/// record needs at least a type and a length).
pub const MIN_PAYLOAD_LEN: usize = 2;
/// Number of decryption rounds the origin runs over a returned error, and the
/// largest route the property tests build: BOLT 4's "maximum route length of
/// tlv payload type".
pub const MAX_HOPS: usize = 27;

/// An `onion_routing_packet` as carried in `update_add_htlc`.
pub type OnionPacket = [u8; ONION_PACKET_LEN];

/// `sha256_of_onion`: the SHA256 of the whole 1366-byte packet, as carried by
/// the BADONION failures and `update_fail_malformed_htlc`.
pub fn sha256_of_onion(packet: &OnionPacket) -> [u8; 32] {
    crate::crypto::sha256(packet)
}
