//! Route blinding, forwarding side (plus path creation for origins and tests).
//!
//! BOLT 4 "Route Blinding" and "Inside `encrypted_recipient_data`". A hop in
//! a blinded route gets a `path_key` (in `update_add_htlc`, or as
//! `current_path_key` in the payload at the introduction point); with it it
//! derives `ss = SHA256(k * E)`, decrypts `encrypted_recipient_data` with
//! ChaCha20-Poly1305 under `rho(ss)` and an all-zero nonce, reads the
//! `encrypted_data_tlv` (next channel, relay fee and CLTV delta, payment
//! constraints) and computes the next `path_key`. Every fault here becomes
//! `invalid_onion_blinding` (the mapping is in [`crate::peel`]).

use lnhub_wire::tlv::{self, TlvReader};
use lnhub_wire::types::{Msat, ShortChannelId};
use lnhub_wire::{DecodeError, Reader};
use ring::aead;
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::crypto::{self, KEY_RHO};
use crate::payload::Span;

/// TLV type of `padding` in `encrypted_data_tlv`.
pub const ENC_PADDING: u64 = 1;
/// TLV type of `short_channel_id` in `encrypted_data_tlv`.
pub const ENC_SHORT_CHANNEL_ID: u64 = 2;
/// TLV type of `next_node_id` in `encrypted_data_tlv`.
pub const ENC_NEXT_NODE_ID: u64 = 4;
/// TLV type of `path_id` in `encrypted_data_tlv`.
pub const ENC_PATH_ID: u64 = 6;
/// TLV type of `next_path_key_override` in `encrypted_data_tlv`.
pub const ENC_NEXT_PATH_KEY_OVERRIDE: u64 = 8;
/// TLV type of `payment_relay` in `encrypted_data_tlv`.
pub const ENC_PAYMENT_RELAY: u64 = 10;
/// TLV type of `payment_constraints` in `encrypted_data_tlv`.
pub const ENC_PAYMENT_CONSTRAINTS: u64 = 12;
/// TLV type of `allowed_features` in `encrypted_data_tlv`.
pub const ENC_ALLOWED_FEATURES: u64 = 14;
/// Length of the Poly1305 tag that ends `encrypted_recipient_data`.
pub const TAG_LEN: usize = 16;
/// Denominator of `fee_proportional_millionths` (parts per million).
const MILLION: u128 = 1_000_000;

/// `payment_relay`: how the recipient wants this hop to charge and delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentRelay {
    /// `cltv_expiry_delta` to subtract from the incoming expiry.
    pub cltv_expiry_delta: u16,
    /// `fee_proportional_millionths`.
    pub fee_proportional_millionths: u32,
    /// `fee_base_msat`.
    pub fee_base_msat: u32,
}

/// `payment_constraints`: limits that stop probing through the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentConstraints {
    /// `max_cltv_expiry`: the incoming `cltv_expiry` may not exceed it.
    pub max_cltv_expiry: u32,
    /// `htlc_minimum_msat`: the incoming amount may not be below it.
    pub htlc_minimum_msat: Msat,
}

/// A decrypted `encrypted_data_tlv`. `path_id` is a span into the
/// decrypted bytes held by [`crate::peel::PeeledHop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncryptedData {
    /// `short_channel_id` of the next hop's channel.
    pub short_channel_id: Option<ShortChannelId>,
    /// `next_node_id`.
    pub next_node_id: Option<PublicKey>,
    /// `path_id` (final recipient only).
    pub path_id: Option<Span>,
    /// `next_path_key_override`.
    pub next_path_key_override: Option<PublicKey>,
    /// `payment_relay`.
    pub payment_relay: Option<PaymentRelay>,
    /// `payment_constraints`.
    pub payment_constraints: Option<PaymentConstraints>,
    /// Whether `allowed_features` sets any bit. This crate knows no feature
    /// that may appear there, so [`EncryptedData::check_features`] rejects it.
    pub allowed_features_set: bool,
}

/// Why a blinded hop is rejected (all answered with `invalid_onion_blinding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlindingError {
    /// `encrypted_recipient_data` present but no `path_key` from either source.
    MissingPathKey,
    /// Both the `update_add_htlc` `path_key` and `current_path_key` were set.
    BothPathKeys,
    /// A `path_key` was given but the payload has no `encrypted_recipient_data`.
    MissingEncryptedData,
    /// The ChaCha20-Poly1305 tag did not verify.
    DecryptFailed,
    /// The decrypted `encrypted_data_tlv` is malformed.
    Data(DecodeError),
    /// Both `short_channel_id` and `next_node_id` are set.
    BothNextHops,
    /// A non-final hop has neither `short_channel_id` nor `next_node_id`.
    MissingNextHop,
    /// A non-final hop has no `payment_relay`.
    MissingPaymentRelay,
    /// `allowed_features` sets a bit (none is known, so every bit is unknown).
    UnknownFeature,
    /// The payload has a TLV field a blinded hop must not receive.
    PayloadFieldNotAllowed(u64),
    /// The blinded final payload lacks a required field.
    PayloadFieldMissing(u64),
    /// The incoming `cltv_expiry` exceeds `max_cltv_expiry`.
    ExpiryAboveMax,
    /// The incoming amount is below `htlc_minimum_msat`.
    AmountBelowMinimum,
    /// The incoming amount is below `fee_base_msat`.
    AmountBelowFee,
    /// The incoming `cltv_expiry` is below `cltv_expiry_delta`.
    ExpiryBelowDelta,
    /// A key derivation failed (invalid point or tweak; probability ~2^-128).
    BadKey,
}

/// Decrypts `encrypted_recipient_data` in place with `rho(ss)`; returns the
/// plaintext length (the ciphertext minus the tag).
pub fn decrypt_recipient_data(ss: &[u8; 32], buf: &mut [u8]) -> Result<usize, BlindingError> {
    let rho = crypto::derive_key(KEY_RHO, ss);
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &rho).expect("32-byte ChaCha20 key"),
    );
    let nonce = aead::Nonce::assume_unique_for_key([0u8; 12]);
    key.open_in_place(nonce, aead::Aad::empty(), buf)
        .map(|p| p.len())
        .map_err(|_| BlindingError::DecryptFailed)
}

/// Encrypts an `encrypted_data_tlv` for the hop sharing `ss`: ciphertext || tag.
pub fn encrypt_recipient_data(ss: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let rho = crypto::derive_key(KEY_RHO, ss);
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &rho).expect("32-byte ChaCha20 key"),
    );
    let mut buf = plaintext.to_vec();
    let nonce = aead::Nonce::assume_unique_for_key([0u8; 12]);
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut buf)
        .expect("encrypted_data_tlv is far below the AEAD length limit");
    buf
}

impl EncryptedData {
    /// Parses a decrypted `encrypted_data_tlv` (unknown even types rejected).
    pub fn parse(bytes: &[u8]) -> Result<EncryptedData, BlindingError> {
        let mut d = EncryptedData::default();
        for rec in TlvReader::new(bytes) {
            let rec = rec.map_err(BlindingError::Data)?;
            let bad_len = BlindingError::Data(DecodeError::TlvBadLength { typ: rec.typ });
            match rec.typ {
                ENC_PADDING => {}
                ENC_SHORT_CHANNEL_ID => {
                    let v: [u8; 8] = rec.value.try_into().map_err(|_| bad_len)?;
                    d.short_channel_id = Some(ShortChannelId(u64::from_be_bytes(v)));
                }
                ENC_NEXT_NODE_ID => d.next_node_id = Some(read_point(rec.value, bad_len)?),
                ENC_PATH_ID => {
                    let start = (rec.value.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
                    d.path_id = Some(Span {
                        start: start as u16,
                        len: rec.value.len() as u16,
                    });
                }
                ENC_NEXT_PATH_KEY_OVERRIDE => {
                    d.next_path_key_override = Some(read_point(rec.value, bad_len)?)
                }
                ENC_PAYMENT_RELAY => {
                    let mut r = Reader::new(rec.value);
                    let cltv_expiry_delta = r.u16().map_err(|_| bad_len)?;
                    let fee_proportional_millionths = r.u32().map_err(|_| bad_len)?;
                    let fee_base_msat =
                        tlv::read_tu32(r.take_rest()).map_err(BlindingError::Data)?;
                    d.payment_relay = Some(PaymentRelay {
                        cltv_expiry_delta,
                        fee_proportional_millionths,
                        fee_base_msat,
                    });
                }
                ENC_PAYMENT_CONSTRAINTS => {
                    let mut r = Reader::new(rec.value);
                    let max_cltv_expiry = r.u32().map_err(|_| bad_len)?;
                    let htlc_minimum_msat =
                        Msat(tlv::read_tu64(r.take_rest()).map_err(BlindingError::Data)?);
                    d.payment_constraints = Some(PaymentConstraints {
                        max_cltv_expiry,
                        htlc_minimum_msat,
                    });
                }
                ENC_ALLOWED_FEATURES => d.allowed_features_set = rec.value.iter().any(|&b| b != 0),
                other => tlv::unknown_type(other).map_err(BlindingError::Data)?,
            }
        }
        if d.short_channel_id.is_some() && d.next_node_id.is_some() {
            return Err(BlindingError::BothNextHops);
        }
        Ok(d)
    }

    /// BOLT 4: reject `allowed_features` with a feature bit we do not know
    /// (even if odd); we know none, so any set bit is rejected.
    pub fn check_features(&self) -> Result<(), BlindingError> {
        if self.allowed_features_set {
            return Err(BlindingError::UnknownFeature);
        }
        Ok(())
    }

    /// The relay rules for a non-final blinded hop: a next hop and `payment_relay`.
    pub fn check_relay(&self) -> Result<PaymentRelay, BlindingError> {
        if self.short_channel_id.is_none() && self.next_node_id.is_none() {
            return Err(BlindingError::MissingNextHop);
        }
        self.payment_relay.ok_or(BlindingError::MissingPaymentRelay)
    }
}

fn read_point(value: &[u8], bad_len: BlindingError) -> Result<PublicKey, BlindingError> {
    if value.len() != 33 {
        return Err(bad_len);
    }
    PublicKey::from_slice(value).map_err(|_| BlindingError::Data(DecodeError::InvalidPoint))
}

/// Checks `payment_constraints` against the incoming HTLC.
pub fn check_constraints(
    constraints: Option<&PaymentConstraints>,
    amount_msat: Msat,
    cltv_expiry: u32,
) -> Result<(), BlindingError> {
    if let Some(c) = constraints {
        if cltv_expiry > c.max_cltv_expiry {
            return Err(BlindingError::ExpiryAboveMax);
        }
        if amount_msat < c.htlc_minimum_msat {
            return Err(BlindingError::AmountBelowMinimum);
        }
    }
    Ok(())
}

/// The outgoing amount and expiry a blinded relay hop must use (BOLT 4:
/// `amt_to_forward = ceil((amount_msat - fee_base_msat) * 1e6 / (1e6 + fee_proportional_millionths))`,
/// `outgoing_cltv_value = cltv_expiry - cltv_expiry_delta`).
pub fn relay_amounts(
    relay: &PaymentRelay,
    amount_msat: Msat,
    cltv_expiry: u32,
) -> Result<(Msat, u32), BlindingError> {
    let after_base = amount_msat
        .0
        .checked_sub(u64::from(relay.fee_base_msat))
        .ok_or(BlindingError::AmountBelowFee)?;
    let denom = MILLION + u128::from(relay.fee_proportional_millionths);
    let amt = (u128::from(after_base) * MILLION).div_ceil(denom);
    let outgoing = cltv_expiry
        .checked_sub(u32::from(relay.cltv_expiry_delta))
        .ok_or(BlindingError::ExpiryBelowDelta)?;
    // amt <= after_base <= u64::MAX because denom >= MILLION.
    Ok((Msat(amt as u64), outgoing))
}

/// `E_{i+1} = SHA256(E_i || ss_i) * E_i`, the next hop's `path_key`.
pub fn next_path_key(
    secp: &Secp256k1<All>,
    path_key: &PublicKey,
    ss: &[u8; 32],
) -> Result<PublicKey, BlindingError> {
    let f = crypto::blinding_factor(path_key, ss).ok_or(BlindingError::BadKey)?;
    path_key
        .mul_tweak(secp, &f)
        .map_err(|_| BlindingError::BadKey)
}

/// One hop of a blinded path as given to a sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindedPathHop {
    /// `blinded_node_id` the sender encrypts the onion layer to.
    pub blinded_node_id: PublicKey,
    /// `encrypted_recipient_data` for that hop.
    pub encrypted_recipient_data: Vec<u8>,
}

/// A blinded path: `first_path_key` and the blinded hops (BOLT 4 `blinded_path`,
/// without `first_node_id`, which is the caller's first node id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindedPath {
    /// `first_path_key` (`E_0`).
    pub first_path_key: PublicKey,
    /// The blinded hops, introduction point first.
    pub hops: Vec<BlindedPathHop>,
}

/// Creates a blinded path over `hops` (node id, encoded `encrypted_data_tlv`)
/// from the ephemeral `session_key` (`e_0`, supplied by the caller).
pub fn create_blinded_path(
    secp: &Secp256k1<All>,
    session_key: &SecretKey,
    hops: &[(PublicKey, &[u8])],
) -> Result<BlindedPath, BlindingError> {
    let mut e = *session_key;
    let first_path_key = PublicKey::from_secret_key(secp, &e);
    let mut out = Vec::with_capacity(hops.len());
    for (node_id, tlvs) in hops {
        let big_e = PublicKey::from_secret_key(secp, &e);
        let ss = crypto::shared_secret(node_id, &e);
        let tweak = crypto::blinded_node_id_tweak(&ss).ok_or(BlindingError::BadKey)?;
        let blinded_node_id = node_id
            .mul_tweak(secp, &tweak)
            .map_err(|_| BlindingError::BadKey)?;
        out.push(BlindedPathHop {
            blinded_node_id,
            encrypted_recipient_data: encrypt_recipient_data(&ss, tlvs),
        });
        let f = crypto::blinding_factor(&big_e, &ss).ok_or(BlindingError::BadKey)?;
        e = e.mul_tweak(&f).map_err(|_| BlindingError::BadKey)?;
    }
    Ok(BlindedPath {
        first_path_key,
        hops: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_amount_rounds_up() {
        let relay = PaymentRelay {
            cltv_expiry_delta: 50,
            fee_proportional_millionths: 0,
            fee_base_msat: 10_000,
        };
        assert_eq!(
            relay_amounts(&relay, Msat(110_125), 749_150),
            Ok((Msat(100_125), 749_100))
        );
        assert_eq!(
            relay_amounts(&relay, Msat(9_999), 749_150),
            Err(BlindingError::AmountBelowFee)
        );
        let relay = PaymentRelay {
            cltv_expiry_delta: 0,
            fee_proportional_millionths: u32::MAX,
            fee_base_msat: 0,
        };
        assert!(relay_amounts(&relay, Msat(u64::MAX), 0).is_ok());
    }
}
