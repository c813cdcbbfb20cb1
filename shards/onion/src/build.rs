//! Onion construction at the origin, with filler generation.
//!
//! BOLT 4 "Packet Construction" and "Filler Generation". Used by the hub for
//! its own payments, by the load generator and by tests. The caller supplies
//! the session key (no randomness here) and each hop's already-encoded TLV
//! `payload` (see [`crate::payload::PayloadWriter`]); this module adds the
//! BigSize length prefix, the per-hop HMACs, the obfuscation layers and the
//! filler. It returns the per-hop shared secrets, which the origin keeps to
//! decode a returned failure ([`crate::error_packet::decode_error_packet`]).

use lnhub_wire::bigsize::encoded_len as bigsize_len;
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::crypto::{self, KEY_MU, KEY_PAD, KEY_RHO};
use crate::packet::{
    OnionPacket, HMAC_LEN, HMAC_OFFSET, HOP_PAYLOADS_LEN, HOP_PAYLOADS_OFFSET, MIN_PAYLOAD_LEN,
    ONION_VERSION, PUBKEY_OFFSET,
};

/// One hop of a route to build: the key the onion layer is encrypted to
/// (a node id, or a `blinded_node_id` inside a blinded route) and its TLV
/// `payload` without the BigSize length prefix.
#[derive(Clone, Copy, Debug)]
pub struct RouteHop<'a> {
    /// The hop's node id (or blinded node id).
    pub pubkey: &'a PublicKey,
    /// The hop's TLV `payload`, without its length prefix.
    pub payload: &'a [u8],
}

/// Why a route cannot be turned into an onion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The route has no hops.
    EmptyRoute,
    /// A payload is shorter than the two bytes a reader requires.
    PayloadTooShort {
        /// Index of the hop in the route.
        hop: usize,
    },
    /// The payloads with their prefixes and HMACs exceed the 1300 bytes of `hop_payloads`.
    RouteTooLong {
        /// Bytes the route needs.
        needed: usize,
    },
    /// A derived ephemeral key is invalid (probability ~2^-128), or the session key is.
    InvalidKey,
}

/// Bytes a hop occupies in `hop_payloads`: length prefix, payload and HMAC.
pub(crate) fn hop_size(payload_len: usize) -> usize {
    bigsize_len(payload_len as u64) + payload_len + HMAC_LEN
}

/// Computes the shared secret of every hop into `secrets` (same length as `route`).
///
/// Walks the ephemeral private key along the route: `e_{i+1} = e_i * SHA256(E_i || ss_i)`.
pub fn route_shared_secrets(
    secp: &Secp256k1<All>,
    session_key: &SecretKey,
    route: &[RouteHop<'_>],
    secrets: &mut [[u8; 32]],
) -> Result<(), BuildError> {
    assert_eq!(route.len(), secrets.len(), "one shared secret slot per hop");
    let mut e = *session_key;
    for (i, hop) in route.iter().enumerate() {
        let epk = PublicKey::from_secret_key(secp, &e);
        let ss = crypto::shared_secret(hop.pubkey, &e);
        secrets[i] = ss;
        if i + 1 < route.len() {
            let factor = crypto::blinding_factor(&epk, &ss).ok_or(BuildError::InvalidKey)?;
            e = e.mul_tweak(&factor).map_err(|_| BuildError::InvalidKey)?;
        }
    }
    Ok(())
}

/// Generates the filler: the bytes hops `0..n-1` append while peeling, as the
/// final hop will see them at the tail of its `hop_payloads`.
///
/// Hop `i` appends `stream_i[1300 .. 1300 + size_i]` after shifting; every
/// earlier hop's appended bytes sit `size_i` further left by then and are
/// covered by `stream_i[1300 - sum(size_0..i) .. 1300]`. So the filler is
/// the XOR, for each `i < n-1`, of `stream_i[1300 - sum_{j<i} size_j .. 1300 + size_i]`
/// aligned at the start. `filler.len()` must be `sum_{i<n-1} size_i`.
pub fn generate_filler(secrets: &[[u8; 32]], hop_sizes: &[usize], filler: &mut [u8]) {
    assert_eq!(secrets.len(), hop_sizes.len(), "one size per shared secret");
    let n = secrets.len();
    let total: usize = hop_sizes[..n.saturating_sub(1)].iter().sum();
    assert_eq!(
        filler.len(),
        total,
        "filler length is the sum of forwarded hop sizes"
    );
    assert!(total <= HOP_PAYLOADS_LEN, "filler fits in hop_payloads");
    filler.fill(0);
    let mut stream = [0u8; 2 * HOP_PAYLOADS_LEN];
    let mut before = 0usize;
    for i in 0..n.saturating_sub(1) {
        stream.fill(0);
        let rho = crypto::derive_key(KEY_RHO, &secrets[i]);
        let start = HOP_PAYLOADS_LEN - before;
        let end = HOP_PAYLOADS_LEN + hop_sizes[i];
        crypto::xor_stream(&rho, &mut stream[..end]);
        for (f, s) in filler.iter_mut().zip(&stream[start..end]) {
            *f ^= *s;
        }
        before += hop_sizes[i];
    }
}

/// Builds the onion for `route` into `out` and returns the per-hop shared secrets.
///
/// `associated_data` is the `payment_hash` for payments. The initial
/// `hop_payloads` are the `pad` stream of the session key, as BOLT 4 requires.
pub fn build_onion(
    secp: &Secp256k1<All>,
    session_key: &SecretKey,
    route: &[RouteHop<'_>],
    associated_data: &[u8],
    out: &mut OnionPacket,
) -> Result<Vec<[u8; 32]>, BuildError> {
    if route.is_empty() {
        return Err(BuildError::EmptyRoute);
    }
    let mut sizes = Vec::with_capacity(route.len());
    for (i, hop) in route.iter().enumerate() {
        if hop.payload.len() < MIN_PAYLOAD_LEN {
            return Err(BuildError::PayloadTooShort { hop: i });
        }
        sizes.push(hop_size(hop.payload.len()));
    }
    let needed: usize = sizes.iter().sum();
    if needed > HOP_PAYLOADS_LEN {
        return Err(BuildError::RouteTooLong { needed });
    }
    let mut secrets = vec![[0u8; 32]; route.len()];
    route_shared_secrets(secp, session_key, route, &mut secrets)?;

    let filler_len = needed - sizes[route.len() - 1];
    let mut filler = [0u8; HOP_PAYLOADS_LEN];
    generate_filler(&secrets, &sizes, &mut filler[..filler_len]);

    let mut mix = [0u8; HOP_PAYLOADS_LEN];
    let pad = crypto::derive_key(KEY_PAD, &session_key.secret_bytes());
    crypto::xor_stream(&pad, &mut mix);

    let mut next_hmac = [0u8; HMAC_LEN];
    for i in (0..route.len()).rev() {
        let size = sizes[i];
        let payload = route[i].payload;
        mix.copy_within(0..HOP_PAYLOADS_LEN - size, size);
        let prefix = write_bigsize(payload.len() as u64, &mut mix[..]);
        mix[prefix..prefix + payload.len()].copy_from_slice(payload);
        mix[prefix + payload.len()..size].copy_from_slice(&next_hmac);
        let rho = crypto::derive_key(KEY_RHO, &secrets[i]);
        crypto::xor_stream(&rho, &mut mix);
        if i == route.len() - 1 {
            mix[HOP_PAYLOADS_LEN - filler_len..].copy_from_slice(&filler[..filler_len]);
        }
        let mu = crypto::derive_key(KEY_MU, &secrets[i]);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &mu);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(&mix);
        ctx.update(associated_data);
        next_hmac.copy_from_slice(ctx.sign().as_ref());
    }

    out[0] = ONION_VERSION;
    out[PUBKEY_OFFSET..HOP_PAYLOADS_OFFSET]
        .copy_from_slice(&PublicKey::from_secret_key(secp, session_key).serialize());
    out[HOP_PAYLOADS_OFFSET..HMAC_OFFSET].copy_from_slice(&mix);
    out[HMAC_OFFSET..].copy_from_slice(&next_hmac);
    Ok(secrets)
}

/// Writes the BigSize encoding of `n` at the start of `buf` (in place, where
/// `lnhub_wire::bigsize::write` appends to a `Vec`); returns its length.
fn write_bigsize(n: u64, buf: &mut [u8]) -> usize {
    match bigsize_len(n) {
        1 => buf[0] = n as u8,
        3 => {
            buf[0] = 0xfd;
            buf[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        }
        5 => {
            buf[0] = 0xfe;
            buf[1..5].copy_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            buf[0] = 0xff;
            buf[1..9].copy_from_slice(&n.to_be_bytes());
        }
    }
    bigsize_len(n)
}
