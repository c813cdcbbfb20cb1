//! The return path: the encrypted error packet carried in `update_fail_htlc`.
//!
//! BOLT 4 "Returning Errors" (legacy packet; `attribution_data` is not
//! handled here). The erring node wraps a `failuremsg` as
//! `hmac || u16 failure_len || failuremsg || u16 pad_len || pad`, with the
//! HMAC under `um` and the whole packet XORed with the `ammag` stream; every
//! hop on the way back XORs its own `ammag` stream; the origin peels the
//! layers with its per-hop shared secrets and finds the hop whose `um` HMAC
//! matches. Also converts a downstream `update_fail_malformed_htlc` into the
//! encrypted `update_fail_htlc` the upstream peer expects (BOLT 2).
//! Packets are built into caller-owned `Vec`s that are reused (cleared, not
//! reallocated) on the hot path.

use crate::crypto::{self, KEY_AMMAG, KEY_UM};
use crate::failure::{Failure, FailureDecodeError, FailureMessage, BADONION};
use crate::packet::MAX_HOPS;

/// Minimum `failure_len + pad_len`: BOLT 4 says at least, and should be
/// exactly, 256 so failures of different lengths look alike on the wire.
pub const ERROR_PADDED_LEN: usize = 256;
/// Bytes before `failuremsg`: the 32-byte HMAC and the u16 `failure_len`.
const ERROR_HEADER_LEN: usize = 32 + 2;
/// Smallest well-formed return packet: HMAC, `failure_len`, `pad_len`.
pub const MIN_ERROR_PACKET_LEN: usize = ERROR_HEADER_LEN + 2;

/// Why a return packet cannot be built or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPacketError {
    /// The `failuremsg` is longer than a u16 length can describe.
    FailureTooLong,
    /// The packet is shorter than HMAC + two length fields.
    TooShort,
    /// No hop's `um` HMAC matched: some hop garbled the packet (or it is not ours).
    Unattributable,
    /// The attributed hop's `failure_len` runs past the packet.
    BadLength {
        /// Index (0 = first hop) of the hop that sent the failure.
        hop: usize,
    },
}

/// Why an `update_fail_malformed_htlc` cannot be converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedError {
    /// The `failure_code` lacks the BADONION bit: BOLT 2 says warn and close
    /// the connection, or fail the channel.
    NotBadOnion(u16),
}

/// The failure the origin decoded from a return packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedFailure {
    /// Index in the route (0 = first hop) of the node that created the failure.
    pub hop: usize,
    /// The `failuremsg` bytes that node sent.
    pub failure_bytes: Vec<u8>,
    /// Those bytes decoded, or why they could not be (the hop is still known).
    pub failure: Result<Failure, FailureDecodeError>,
}

/// XORs this hop's `ammag` stream into `packet` (in place): what every node
/// on the return path does, including the erring node itself.
pub fn obfuscate_error_packet(shared_secret: &[u8; 32], packet: &mut [u8]) {
    let ammag = crypto::derive_key(KEY_AMMAG, shared_secret);
    crypto::xor_stream(&ammag, packet);
}

/// Builds the obfuscated return packet for `failure` at the erring node into
/// `out` (cleared first; its capacity is reused).
pub fn create_error_packet(
    shared_secret: &[u8; 32],
    failure: &Failure,
    out: &mut Vec<u8>,
) -> Result<(), ErrorPacketError> {
    let failure_len = failure.encoded_len();
    let failure_len_u16 =
        u16::try_from(failure_len).map_err(|_| ErrorPacketError::FailureTooLong)?;
    let pad_len = ERROR_PADDED_LEN.saturating_sub(failure_len);
    out.clear();
    out.reserve(MIN_ERROR_PACKET_LEN + failure_len + pad_len);
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(&failure_len_u16.to_be_bytes());
    failure.write(out);
    assert_eq!(
        out.len(),
        ERROR_HEADER_LEN + failure_len,
        "failure encoded_len matches write"
    );
    out.extend_from_slice(&(pad_len as u16).to_be_bytes());
    out.resize(out.len() + pad_len, 0);
    let um = crypto::derive_key(KEY_UM, shared_secret);
    let mac = crypto::hmac_sha256(&um, &out[32..]);
    out[..32].copy_from_slice(&mac);
    obfuscate_error_packet(shared_secret, out);
    Ok(())
}

/// Converts `update_fail_malformed_htlc { sha256_of_onion, failure_code }`
/// received from downstream into the return packet for `update_fail_htlc`
/// upstream, encrypted with the shared secret of the incoming HTLC (BOLT 2:
/// "using the `failure_code` given and setting the data to `sha256_of_onion`").
pub fn malformed_to_error_packet(
    shared_secret: &[u8; 32],
    failure_code: u16,
    sha256_of_onion: [u8; 32],
    out: &mut Vec<u8>,
) -> Result<(), MalformedError> {
    if failure_code & BADONION == 0 {
        return Err(MalformedError::NotBadOnion(failure_code));
    }
    let message = FailureMessage::from_malformed(failure_code, sha256_of_onion).unwrap_or(
        FailureMessage::Unknown {
            failure_code,
            data: sha256_of_onion.to_vec(),
        },
    );
    create_error_packet(shared_secret, &Failure::new(message), out)
        .expect("a BADONION failure with 32 bytes of data fits a u16 length");
    Ok(())
}

/// Decodes a return packet at the origin, given the shared secret of each
/// hop of the route (as returned by [`crate::build::build_onion`]).
///
/// Runs [`MAX_HOPS`] peel-and-check rounds whatever the route length or the
/// position of the erring hop (dummy keys past the route), as BOLT 4
/// recommends, so timing does not leak the position.
pub fn decode_error_packet(
    shared_secrets: &[[u8; 32]],
    packet: &[u8],
) -> Result<DecodedFailure, ErrorPacketError> {
    if packet.len() < MIN_ERROR_PACKET_LEN {
        return Err(ErrorPacketError::TooShort);
    }
    let mut buf = packet.to_vec();
    let dummy = [0u8; 32];
    let mut found: Option<(usize, Vec<u8>)> = None;
    for i in 0..MAX_HOPS.max(shared_secrets.len()) {
        let ss = shared_secrets.get(i).unwrap_or(&dummy);
        obfuscate_error_packet(ss, &mut buf);
        let um = crypto::derive_key(KEY_UM, ss);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &um);
        let ok = ring::hmac::verify(&key, &buf[32..], &buf[..32]).is_ok();
        if ok && found.is_none() && i < shared_secrets.len() {
            found = Some((i, buf.clone()));
        }
    }
    let (hop, plain) = found.ok_or(ErrorPacketError::Unattributable)?;
    let failure_len = usize::from(u16::from_be_bytes([plain[32], plain[33]]));
    let body = plain
        .get(ERROR_HEADER_LEN..ERROR_HEADER_LEN + failure_len)
        .ok_or(ErrorPacketError::BadLength { hop })?;
    Ok(DecodedFailure {
        hop,
        failure_bytes: body.to_vec(),
        failure: Failure::decode(body),
    })
}
