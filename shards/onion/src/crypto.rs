//! Key derivation and the three primitives every onion operation uses.
//!
//! BOLT 4 "Key Generation", "Pseudo Random Byte Stream", "Shared Secret" and
//! "Blinding Ephemeral Onion Keys": HMAC-SHA256 sub-keys (`rho`, `mu`, `um`,
//! `pad`, `ammag`, `blinded_node_id`), a ChaCha20 stream with an all-zero
//! nonce, the SHA256-of-compressed-point ECDH and the per-hop blinding factor.
//! Everything here is a pure function of its arguments and allocates nothing.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use ring::{digest, hmac};
use secp256k1::ecdh::SharedSecret;
use secp256k1::{PublicKey, Scalar, SecretKey};

/// Key type of the stream that obfuscates `hop_payloads` (ASCII "rho").
pub const KEY_RHO: &[u8] = b"rho";
/// Key type of the HMAC over `hop_payloads || associated_data` (ASCII "mu").
pub const KEY_MU: &[u8] = b"mu";
/// Key type of the HMAC over a returned error packet (ASCII "um").
pub const KEY_UM: &[u8] = b"um";
/// Key type of the stream that obfuscates a returned error packet (ASCII "ammag").
pub const KEY_AMMAG: &[u8] = b"ammag";
/// Key type of the stream that fills the initial `hop_payloads` (ASCII "pad").
pub const KEY_PAD: &[u8] = b"pad";
/// Key type of the route-blinding tweak of a node id (ASCII "blinded_node_id").
pub const KEY_BLINDED_NODE_ID: &[u8] = b"blinded_node_id";

/// `HMAC256(key, data)`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&k, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Derives a sub-key: `HMAC256(key_type, secret)` (BOLT 4 "Key Generation").
pub fn derive_key(key_type: &[u8], secret: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(key_type, secret)
}

/// `SHA256(data)`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// XORs the ChaCha20 stream of `key` (all-zero 96-bit nonce, counter 0) into `buf`.
pub fn xor_stream(key: &[u8; 32], buf: &mut [u8]) {
    let nonce = [0u8; 12];
    let mut cipher = ChaCha20::new(key.into(), (&nonce).into());
    cipher.apply_keystream(buf);
}

/// The BOLT 4 shared secret: `SHA256(compressed(secret * point))`.
pub fn shared_secret(point: &PublicKey, secret: &SecretKey) -> [u8; 32] {
    SharedSecret::new(point, secret).secret_bytes()
}

/// The blinding factor `SHA256(compressed(pubkey) || shared_secret)` as a scalar.
///
/// Returns `None` only if the hash is not below the curve order, which happens
/// with probability ~2^-128; callers treat it as a bad key.
pub fn blinding_factor(pubkey: &PublicKey, secret: &[u8; 32]) -> Option<Scalar> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&pubkey.serialize());
    ctx.update(secret);
    let d = ctx.finish();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(d.as_ref());
    Scalar::from_be_bytes(bytes).ok()
}

/// `HMAC256("blinded_node_id", ss)` as a scalar (route blinding node-key tweak).
pub fn blinded_node_id_tweak(ss: &[u8; 32]) -> Option<Scalar> {
    Scalar::from_be_bytes(derive_key(KEY_BLINDED_NODE_ID, ss)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_vector_keys() {
        // onion-error-test.json, hops[4]: um and ammag from the shared secret.
        let ss: [u8; 32] =
            hex::decode("b5756b9b542727dbafc6765a49488b023a725d631af688fc031217e90770c328")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            hex::encode(derive_key(KEY_UM, &ss)),
            "4da7f2923edce6c2d85987d1d9fa6d88023e6c3a9c3d20f07d3b10b61a78d646"
        );
        assert_eq!(
            hex::encode(derive_key(KEY_AMMAG, &ss)),
            "2f36bb8822e1f0d04c27b7d8bb7d7dd586e032a3218b8d414afbba6f169a4d68"
        );
    }
}
