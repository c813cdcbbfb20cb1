//! The cryptographic primitives BOLT 8 names, as plain functions.
//!
//! BOLT 8, "Handshake State" lists the building blocks: `ECDH(k, rk)`,
//! `HKDF(salt, ikm)`, `encryptWithAD(k, n, ad, plaintext)` and
//! `decryptWithAD(k, n, ad, ciphertext)`, plus SHA-256 for the handshake hash.
//! This module implements exactly those, on top of `secp256k1` (ECDH) and
//! `ring` (SHA-256, HMAC-SHA256, ChaCha20-Poly1305). It owns no state except
//! one lazily created, read-only secp256k1 context; the caller owns all keys.

use std::sync::OnceLock;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::digest;
use ring::hmac;
use secp256k1::ecdh::SharedSecret;
use secp256k1::{PublicKey, Secp256k1, SecretKey, SignOnly};

/// Length of every symmetric key, chaining key and hash in BOLT 8: SHA-256 and
/// ChaCha20 both use 32 bytes.
pub(crate) const KEY_LEN: usize = 32;

/// Length of a Poly1305 authentication tag (RFC 8439), appended to every
/// ciphertext BOLT 8 produces.
pub(crate) const TAG_LEN: usize = 16;

/// Length of a compressed secp256k1 public key: one parity byte and the
/// 32-byte x coordinate (BOLT 8 always sends keys "serialized in Bitcoin's
/// compressed format").
pub(crate) const PUBKEY_LEN: usize = 33;

/// A 32-byte symmetric key or chaining key.
pub(crate) type Key = [u8; KEY_LEN];

/// The one secp256k1 context this crate uses, created on first use and then
/// shared read-only: creating a context per handshake would cost an
/// allocation and a table set-up on the connection-accept path.
fn secp() -> &'static Secp256k1<SignOnly> {
    static CTX: OnceLock<Secp256k1<SignOnly>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::signing_only)
}

/// The public key of `secret`, compressed (33 bytes).
pub(crate) fn public_key_bytes(secret: &SecretKey) -> [u8; PUBKEY_LEN] {
    PublicKey::from_secret_key(secp(), secret).serialize()
}

/// BOLT 8 `ECDH(k, rk)`: SHA-256 of the compressed shared point `k * rk`.
pub(crate) fn ecdh(local: &SecretKey, remote: &PublicKey) -> Key {
    SharedSecret::new(remote, local).secret_bytes()
}

/// `SHA-256(a || b)`, the handshake's `MixHash` step.
pub(crate) fn sha256_concat(a: &[u8], b: &[u8]) -> Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(a);
    ctx.update(b);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `SHA-256(data)`.
pub(crate) fn sha256(data: &[u8]) -> Key {
    sha256_concat(data, &[])
}

/// BOLT 8 `HKDF(salt, ikm)`: RFC 5869 extract-and-expand with HMAC-SHA256, a
/// zero-length `info`, and 64 bytes of output returned as two 32-byte halves.
pub(crate) fn hkdf(salt: &Key, ikm: &[u8]) -> (Key, Key) {
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
    // T(1) = HMAC(PRK, info || 0x01); T(2) = HMAC(PRK, T(1) || info || 0x02).
    let t1 = hmac::sign(&prk, &[1u8]);
    let mut ctx = hmac::Context::with_key(&prk);
    ctx.update(t1.as_ref());
    ctx.update(&[2u8]);
    let t2 = ctx.sign();
    let mut first = [0u8; KEY_LEN];
    let mut second = [0u8; KEY_LEN];
    first.copy_from_slice(t1.as_ref());
    second.copy_from_slice(t2.as_ref());
    (first, second)
}

/// A ChaCha20-Poly1305 key ready for use (ring's key schedule done once).
pub(crate) fn aead_key(key: &Key) -> LessSafeKey {
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
        .expect("invariant: a 32-byte key is always valid for ChaCha20-Poly1305");
    LessSafeKey::new(unbound)
}

/// The Noise nonce encoding BOLT 8 requires: 32 zero bits, then the 64-bit
/// counter little-endian (unlike the big-endian used everywhere else in BOLTs).
pub(crate) fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; aead::NONCE_LEN];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// `encryptWithAD` in place: encrypts `in_out` and returns the tag.
pub(crate) fn seal(key: &LessSafeKey, n: u64, ad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
    let tag = key
        .seal_in_place_separate_tag(nonce(n), Aad::from(ad), in_out)
        .expect("invariant: ChaCha20-Poly1305 sealing only fails above 2^38 bytes");
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// `decryptWithAD` in place: `in_out` is ciphertext followed by the tag; on
/// success returns the length of the plaintext now at the front of `in_out`.
/// `None` means the MAC did not verify (the content of `in_out` is then
/// unspecified and must not be used).
pub(crate) fn open(key: &LessSafeKey, n: u64, ad: &[u8], in_out: &mut [u8]) -> Option<usize> {
    key.open_in_place(nonce(n), Aad::from(ad), in_out)
        .ok()
        .map(|plain| plain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handshake trace of BOLT 8 Appendix A: the first HKDF of act one.
    #[test]
    fn hkdf_matches_spec_trace() {
        let ck = hex_key("2640f52eebcd9e882958951c794250eedb28002c05d7dc2ea0f195406042caf1");
        let ss = hex_key("1e2fb3c8fe8fb9f262f649f64d26ecf0f2c0a805a767cf02dc2d77a6ef1fdcc3");
        let (ck2, k) = hkdf(&ck, &ss);
        assert_eq!(
            ck2,
            hex_key("b61ec1191326fa240decc9564369dbb3ae2b34341d1e11ad64ed89f89180582f")
        );
        assert_eq!(
            k,
            hex_key("e68f69b7f096d7917245f5e5cf8ae1595febe4d4644333c99f9c4a1282031c9f")
        );
    }

    /// The initial chaining key is SHA-256 of the protocol name (spec trace).
    #[test]
    fn protocol_name_hash_matches_spec_trace() {
        assert_eq!(
            sha256(b"Noise_XK_secp256k1_ChaChaPoly_SHA256"),
            hex_key("2640f52eebcd9e882958951c794250eedb28002c05d7dc2ea0f195406042caf1")
        );
    }

    fn hex_key(s: &str) -> Key {
        let v = hex::decode(s).unwrap();
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&v);
        k
    }
}
