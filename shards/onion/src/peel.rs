//! Peeling one layer of an onion: the per-HTLC hot path of a forwarding hub.
//!
//! BOLT 4 "Onion Decryption", "Shared Secret", "Blinding Ephemeral Onion
//! Keys", the payload reader rules and, for blinded routes, "Route
//! Blinding". One call costs one ECDH and one key tweak-mul (two of each
//! inside a blinded route, where BOLT 4 requires them), one HMAC and one
//! 2600-byte ChaCha20 stream. Results are written into a caller-owned,
//! reusable [`PeeledHop`]; nothing is allocated.
//!
//! Call order: [`peel`] (or [`crate::batch::peel_batch`]), then
//! [`PeeledHop::instructions`] with the incoming HTLC's amount and expiry,
//! then the forwarding policy. Any [`OnionFailure`] says exactly what to send
//! back: `update_fail_malformed_htlc` or an encrypted `update_fail_htlc`.

use lnhub_wire::bigsize;
use lnhub_wire::types::{Msat, ShortChannelId};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::blinding::{self, BlindingError, EncryptedData};
use crate::crypto::{self, KEY_MU, KEY_RHO};
use crate::failure::{
    FailureMessage, INVALID_ONION_BLINDING, INVALID_ONION_HMAC, INVALID_ONION_KEY,
    INVALID_ONION_VERSION,
};
use crate::packet::{
    sha256_of_onion, OnionPacket, HMAC_LEN, HMAC_OFFSET, HOP_PAYLOADS_LEN, HOP_PAYLOADS_OFFSET,
    MIN_PAYLOAD_LEN, ONION_PACKET_LEN, ONION_VERSION, PUBKEY_OFFSET,
};
use crate::payload::{
    HopPayload, PayloadError, PayloadErrorKind, Span, TLV_AMT_TO_FORWARD, TLV_CURRENT_PATH_KEY,
    TLV_ENCRYPTED_RECIPIENT_DATA, TLV_OUTGOING_CLTV_VALUE, TLV_TOTAL_AMOUNT_MSAT,
};

/// What exactly went wrong while peeling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeelError {
    /// `version` is not 0.
    UnknownVersion(u8),
    /// `public_key` is not a valid point.
    InvalidEphemeralKey,
    /// The packet HMAC does not match.
    HmacMismatch,
    /// The decrypted payload is malformed or misses a field.
    Payload(PayloadError),
    /// A route-blinding rule failed.
    Blinding(BlindingError),
}

/// A peel failure together with the response BOLT 2/4 prescribe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnionFailure {
    /// Answer with `update_fail_malformed_htlc` (the onion could not be
    /// authenticated, or the HTLC came with a `path_key`).
    Malformed {
        /// A BADONION `failure_code`.
        failure_code: u16,
        /// SHA256 of the received onion.
        sha256_of_onion: [u8; 32],
        /// The precise cause, for logs and metrics.
        cause: PeelError,
    },
    /// Answer with `update_fail_htlc`: wrap `message` with
    /// [`crate::error_packet::create_error_packet`] under `shared_secret`.
    Fail {
        /// Shared secret of this hop's layer.
        shared_secret: [u8; 32],
        /// The failure to return.
        message: FailureMessage,
        /// The precise cause, for logs and metrics.
        cause: PeelError,
    },
}

impl OnionFailure {
    /// The precise cause.
    pub fn cause(&self) -> PeelError {
        match self {
            OnionFailure::Malformed { cause, .. } | OnionFailure::Fail { cause, .. } => *cause,
        }
    }

    /// The BOLT 4 `failure_code` that will be returned.
    pub fn failure_code(&self) -> u16 {
        match self {
            OnionFailure::Malformed { failure_code, .. } => *failure_code,
            OnionFailure::Fail { message, .. } => message.failure_code(),
        }
    }
}

/// Route-blinding state of a peeled hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlindedHop {
    /// The decrypted `encrypted_data_tlv`.
    pub data: EncryptedData,
    /// `path_key` to put in the outgoing `update_add_htlc` (None at the final hop).
    pub next_path_key: Option<PublicKey>,
    /// True when the path key came from `current_path_key` (we are the
    /// introduction point); false when it came with the HTLC.
    pub introduction_point: bool,
    /// SHA256 of the received onion, for `invalid_onion_blinding`.
    pub sha256_of_onion: [u8; 32],
}

/// What to do with the HTLC, once the incoming amount and expiry are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopAction {
    /// Relay to the next hop.
    Forward(ForwardInstruction),
    /// We are the final node.
    Receive(ReceiveInstruction),
}

/// Where and what to forward. The forwarding policy still checks fees, CLTV
/// delta and channel limits for unblinded hops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardInstruction {
    /// Outgoing channel (`short_channel_id`, from the payload or the blinded data).
    pub short_channel_id: Option<ShortChannelId>,
    /// `next_node_id` (blinded routes only; exclusive with `short_channel_id`).
    pub next_node_id: Option<PublicKey>,
    /// `amt_to_forward`.
    pub amt_to_forward: Msat,
    /// `outgoing_cltv_value`.
    pub outgoing_cltv_value: u32,
    /// `path_key` for the outgoing `update_add_htlc`.
    pub next_path_key: Option<PublicKey>,
}

/// What the final node reads from its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveInstruction {
    /// `amt_to_forward`.
    pub amt_to_forward: Msat,
    /// `outgoing_cltv_value`.
    pub outgoing_cltv_value: u32,
    /// Total of the (multi-part) payment: `total_msat` or `total_amount_msat`,
    /// else `amt_to_forward`.
    pub total_msat: Msat,
    /// `payment_secret`, if any.
    pub payment_secret: Option<[u8; 32]>,
}

/// The result of peeling one layer: reuse one per in-flight peel.
#[derive(Clone, Debug)]
pub struct PeeledHop {
    shared_secret: [u8; 32],
    payload: HopPayload,
    payload_len: u16,
    payload_bytes: [u8; HOP_PAYLOADS_LEN],
    is_final: bool,
    next_packet: OnionPacket,
    blinded: Option<BlindedHop>,
    recipient_data_len: u16,
    recipient_data: [u8; HOP_PAYLOADS_LEN],
}

impl Default for PeeledHop {
    fn default() -> Self {
        PeeledHop {
            shared_secret: [0; 32],
            payload: HopPayload::default(),
            payload_len: 0,
            payload_bytes: [0; HOP_PAYLOADS_LEN],
            is_final: false,
            next_packet: [0; ONION_PACKET_LEN],
            blinded: None,
            recipient_data_len: 0,
            recipient_data: [0; HOP_PAYLOADS_LEN],
        }
    }
}

impl PeeledHop {
    /// A blank slot to peel into.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shared secret of this layer: keep it with the HTLC to encrypt failures back.
    pub fn shared_secret(&self) -> &[u8; 32] {
        &self.shared_secret
    }

    /// The parsed payload.
    pub fn payload(&self) -> &HopPayload {
        &self.payload
    }

    /// The raw decrypted payload TLV stream.
    pub fn payload_bytes(&self) -> &[u8] {
        &self.payload_bytes[..usize::from(self.payload_len)]
    }

    /// Bytes of a payload [`Span`].
    pub fn span(&self, span: Span) -> &[u8] {
        span.of(self.payload_bytes())
    }

    /// True if we are the final node (`next_hmac` was all zero).
    pub fn is_final(&self) -> bool {
        self.is_final
    }

    /// The onion to forward, or `None` at the final node.
    pub fn next_packet(&self) -> Option<&OnionPacket> {
        (!self.is_final).then_some(&self.next_packet)
    }

    /// Route-blinding state, if this hop is inside a blinded route.
    pub fn blinded(&self) -> Option<&BlindedHop> {
        self.blinded.as_ref()
    }

    /// The decrypted `encrypted_data_tlv` bytes (empty when not blinded).
    pub fn recipient_data(&self) -> &[u8] {
        &self.recipient_data[..usize::from(self.recipient_data_len)]
    }

    /// `path_id` from the blinded data (final recipient of a blinded route).
    pub fn path_id(&self) -> Option<&[u8]> {
        let b = self.blinded.as_ref()?;
        Some(b.data.path_id?.of(self.recipient_data()))
    }

    /// Applies the reader rules that need the incoming HTLC: for blinded
    /// hops, `payment_constraints` and the `payment_relay` amount/expiry
    /// computation; otherwise the values come from the payload.
    pub fn instructions(
        &self,
        amount_msat: Msat,
        cltv_expiry: u32,
    ) -> Result<HopAction, OnionFailure> {
        let p = &self.payload;
        if let Some(b) = &self.blinded {
            let fail = |e: BlindingError| self.blinded_failure(b, e);
            blinding::check_constraints(
                b.data.payment_constraints.as_ref(),
                amount_msat,
                cltv_expiry,
            )
            .map_err(fail)?;
            if self.is_final {
                // Presence checked at peel time.
                return Ok(HopAction::Receive(ReceiveInstruction {
                    amt_to_forward: p.amt_to_forward.unwrap_or_default(),
                    outgoing_cltv_value: p.outgoing_cltv_value.unwrap_or_default(),
                    total_msat: p.total_amount_msat.unwrap_or_default(),
                    payment_secret: None,
                }));
            }
            let relay = b.data.check_relay().map_err(fail)?;
            let (amt_to_forward, outgoing_cltv_value) =
                blinding::relay_amounts(&relay, amount_msat, cltv_expiry).map_err(fail)?;
            return Ok(HopAction::Forward(ForwardInstruction {
                short_channel_id: b.data.short_channel_id,
                next_node_id: b.data.next_node_id,
                amt_to_forward,
                outgoing_cltv_value,
                next_path_key: b.next_path_key,
            }));
        }
        // Presence of amt/cltv (and scid when forwarding) checked at peel time.
        let amt_to_forward = p.amt_to_forward.unwrap_or_default();
        let outgoing_cltv_value = p.outgoing_cltv_value.unwrap_or_default();
        if self.is_final {
            let total_msat = p
                .payment_data
                .map(|d| d.total_msat)
                .or(p.total_amount_msat)
                .unwrap_or(amt_to_forward);
            Ok(HopAction::Receive(ReceiveInstruction {
                amt_to_forward,
                outgoing_cltv_value,
                total_msat,
                payment_secret: p.payment_data.map(|d| d.payment_secret),
            }))
        } else {
            Ok(HopAction::Forward(ForwardInstruction {
                short_channel_id: p.short_channel_id,
                next_node_id: None,
                amt_to_forward,
                outgoing_cltv_value,
                next_path_key: None,
            }))
        }
    }

    /// The height after which no HTLC carrying this onion can be accepted
    /// any more, for [`crate::replay::ReplaySet`]: the onion's own
    /// authenticated bound (`outgoing_cltv_value`, or a blinded route's
    /// `max_cltv_expiry`) when it has one, else the incoming `cltv_expiry`.
    pub fn replay_expiry(&self, incoming_cltv_expiry: u32) -> u32 {
        let blinded_max = self
            .blinded
            .and_then(|b| b.data.payment_constraints)
            .map(|c| c.max_cltv_expiry);
        match (self.payload.outgoing_cltv_value, blinded_max) {
            (_, Some(m)) => m.max(self.payload.outgoing_cltv_value.unwrap_or(0)),
            (Some(v), None) => v,
            (None, None) => incoming_cltv_expiry,
        }
    }

    fn blinded_failure(&self, b: &BlindedHop, cause: BlindingError) -> OnionFailure {
        let cause = PeelError::Blinding(cause);
        if b.introduction_point {
            OnionFailure::Fail {
                shared_secret: self.shared_secret,
                message: FailureMessage::InvalidOnionBlinding {
                    sha256_of_onion: b.sha256_of_onion,
                },
                cause,
            }
        } else {
            OnionFailure::Malformed {
                failure_code: INVALID_ONION_BLINDING,
                sha256_of_onion: b.sha256_of_onion,
                cause,
            }
        }
    }
}

/// Peels one layer of `packet` with our `node_secret`.
///
/// `payment_hash` is the associated data; `path_key` is the one from
/// `update_add_htlc` (route blinding), if any. On success `out` holds the
/// payload, the shared secret and, unless we are the final node, the next
/// packet (and next `path_key` inside a blinded route). On failure `out` is
/// unspecified and the error says what to send back.
pub fn peel(
    secp: &Secp256k1<All>,
    node_secret: &SecretKey,
    packet: &OnionPacket,
    payment_hash: &[u8; 32],
    path_key: Option<&PublicKey>,
    out: &mut PeeledHop,
) -> Result<(), OnionFailure> {
    // Every failure before the payload is read, and every failure at all
    // when the HTLC carried a path_key, is answered with malformed.
    let malformed = |code: u16, cause: PeelError| OnionFailure::Malformed {
        failure_code: if path_key.is_some() {
            INVALID_ONION_BLINDING
        } else {
            code
        },
        sha256_of_onion: sha256_of_onion(packet),
        cause,
    };
    if packet[0] != ONION_VERSION {
        return Err(malformed(
            INVALID_ONION_VERSION,
            PeelError::UnknownVersion(packet[0]),
        ));
    }
    let epk = PublicKey::from_slice(&packet[PUBKEY_OFFSET..HOP_PAYLOADS_OFFSET])
        .map_err(|_| malformed(INVALID_ONION_KEY, PeelError::InvalidEphemeralKey))?;

    // Inside a blinded route the sender encrypted to our blinded id: tweak our key.
    let mut blinding_ss = [0u8; 32];
    let layer_secret = match path_key {
        None => *node_secret,
        Some(pk) => {
            blinding_ss = crypto::shared_secret(pk, node_secret);
            let bad = || {
                malformed(
                    INVALID_ONION_BLINDING,
                    PeelError::Blinding(BlindingError::BadKey),
                )
            };
            let tweak = crypto::blinded_node_id_tweak(&blinding_ss).ok_or_else(bad)?;
            node_secret.mul_tweak(&tweak).map_err(|_| bad())?
        }
    };
    let ss = crypto::shared_secret(&epk, &layer_secret);

    let hop_payloads = &packet[HOP_PAYLOADS_OFFSET..HMAC_OFFSET];
    let mu = crypto::derive_key(KEY_MU, &ss);
    let mu_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &mu);
    // ring's verify compares in constant time; it wants one contiguous input.
    let mut authenticated = [0u8; HOP_PAYLOADS_LEN + 32];
    authenticated[..HOP_PAYLOADS_LEN].copy_from_slice(hop_payloads);
    authenticated[HOP_PAYLOADS_LEN..].copy_from_slice(payment_hash);
    if ring::hmac::verify(&mu_key, &authenticated, &packet[HMAC_OFFSET..]).is_err() {
        return Err(malformed(INVALID_ONION_HMAC, PeelError::HmacMismatch));
    }
    out.shared_secret = ss;
    out.blinded = None;
    out.recipient_data_len = 0;

    let mut buf = [0u8; 2 * HOP_PAYLOADS_LEN];
    buf[..HOP_PAYLOADS_LEN].copy_from_slice(hop_payloads);
    crypto::xor_stream(&crypto::derive_key(KEY_RHO, &ss), &mut buf);

    // From here on the packet is authentic: faults are the sender's payload.
    let payload_fail = |cause: PeelError| -> OnionFailure {
        if path_key.is_some() {
            return malformed(INVALID_ONION_BLINDING, cause);
        }
        let (typ, offset) = match cause {
            PeelError::Payload(e) => (e.typ, e.offset),
            _ => (TLV_ENCRYPTED_RECIPIENT_DATA, 0),
        };
        OnionFailure::Fail {
            shared_secret: ss,
            message: FailureMessage::InvalidOnionPayload { typ, offset },
            cause,
        }
    };
    let bad_prefix = || {
        payload_fail(PeelError::Payload(PayloadError::new(
            0,
            0,
            PayloadErrorKind::BadLengthPrefix,
        )))
    };
    let mut cursor = &buf[..HOP_PAYLOADS_LEN];
    let payload_len = bigsize::read(&mut cursor).map_err(|_| bad_prefix())?;
    let prefix_len = HOP_PAYLOADS_LEN - cursor.len();
    let payload_len = usize::try_from(payload_len).map_err(|_| bad_prefix())?;
    if payload_len < MIN_PAYLOAD_LEN || payload_len > HOP_PAYLOADS_LEN - prefix_len - HMAC_LEN {
        return Err(bad_prefix());
    }
    let payload_end = prefix_len + payload_len;
    let shift = payload_end + HMAC_LEN;
    let next_hmac = &buf[payload_end..shift];
    out.is_final = next_hmac.iter().all(|&b| b == 0);
    out.payload_len = payload_len as u16;
    out.payload_bytes[..payload_len].copy_from_slice(&buf[prefix_len..payload_end]);
    out.payload = HopPayload::parse(&out.payload_bytes[..payload_len])
        .map_err(|e| payload_fail(PeelError::Payload(e)))?;

    if !out.is_final {
        let bad = || malformed(INVALID_ONION_KEY, PeelError::InvalidEphemeralKey);
        let factor = crypto::blinding_factor(&epk, &ss).ok_or_else(bad)?;
        let next_epk = epk.mul_tweak(secp, &factor).map_err(|_| bad())?;
        out.next_packet[0] = ONION_VERSION;
        out.next_packet[PUBKEY_OFFSET..HOP_PAYLOADS_OFFSET].copy_from_slice(&next_epk.serialize());
        out.next_packet[HOP_PAYLOADS_OFFSET..HMAC_OFFSET]
            .copy_from_slice(&buf[shift..shift + HOP_PAYLOADS_LEN]);
        out.next_packet[HMAC_OFFSET..].copy_from_slice(&buf[payload_end..shift]);
    }

    let p = out.payload;
    let intro = path_key.is_none() && p.current_path_key.is_some();
    // Blinding faults: malformed if path_key came with the HTLC, encrypted
    // invalid_onion_blinding at a non-final introduction point, else
    // invalid_onion_payload (a final node's own unblinded payload).
    let blind_fail = |e: BlindingError| -> OnionFailure {
        let cause = PeelError::Blinding(e);
        if intro && !out.is_final {
            OnionFailure::Fail {
                shared_secret: ss,
                message: FailureMessage::InvalidOnionBlinding {
                    sha256_of_onion: sha256_of_onion(packet),
                },
                cause,
            }
        } else {
            payload_fail(cause)
        }
    };
    let Some(erd) = p.encrypted_recipient_data else {
        if path_key.is_some() || p.current_path_key.is_some() {
            return Err(blind_fail(BlindingError::MissingEncryptedData));
        }
        return p
            .check_unblinded(out.is_final)
            .map_err(|e| payload_fail(PeelError::Payload(e)));
    };
    let (path_key, bss) = match (path_key, p.current_path_key) {
        (Some(_), Some(_)) => return Err(blind_fail(BlindingError::BothPathKeys)),
        (None, None) => return Err(blind_fail(BlindingError::MissingPathKey)),
        (Some(pk), None) => (*pk, blinding_ss),
        (None, Some(pk)) => (pk, crypto::shared_secret(&pk, node_secret)),
    };
    check_blinded_payload_fields(&p, out.is_final).map_err(blind_fail)?;
    let enc = erd.of(&out.payload_bytes[..payload_len]);
    out.recipient_data[..enc.len()].copy_from_slice(enc);
    let plain_len = blinding::decrypt_recipient_data(&bss, &mut out.recipient_data[..enc.len()])
        .map_err(blind_fail)?;
    out.recipient_data_len = plain_len as u16;
    let data = EncryptedData::parse(&out.recipient_data[..plain_len]).map_err(blind_fail)?;
    data.check_features().map_err(blind_fail)?;
    let next_path_key = if out.is_final {
        None
    } else {
        data.check_relay().map_err(blind_fail)?;
        Some(match data.next_path_key_override {
            Some(k) => k,
            None => blinding::next_path_key(secp, &path_key, &bss).map_err(blind_fail)?,
        })
    };
    out.blinded = Some(BlindedHop {
        data,
        next_path_key,
        introduction_point: intro,
        sha256_of_onion: sha256_of_onion(packet),
    });
    Ok(())
}

/// The payload rules for a hop inside a blinded route: a relay hop may carry
/// only `encrypted_recipient_data` and `current_path_key`; the final hop also
/// `amt_to_forward`, `outgoing_cltv_value` and `total_amount_msat`, all three required.
fn check_blinded_payload_fields(p: &HopPayload, is_final: bool) -> Result<(), BlindingError> {
    let not_allowed = BlindingError::PayloadFieldNotAllowed;
    if p.short_channel_id.is_some() {
        return Err(not_allowed(crate::payload::TLV_SHORT_CHANNEL_ID));
    }
    if p.payment_data.is_some() {
        return Err(not_allowed(crate::payload::TLV_PAYMENT_DATA));
    }
    if p.payment_metadata.is_some() {
        return Err(not_allowed(crate::payload::TLV_PAYMENT_METADATA));
    }
    if p.has_unknown_odd {
        return Err(not_allowed(0));
    }
    let finals = [
        (TLV_AMT_TO_FORWARD, p.amt_to_forward.is_some()),
        (TLV_OUTGOING_CLTV_VALUE, p.outgoing_cltv_value.is_some()),
        (TLV_TOTAL_AMOUNT_MSAT, p.total_amount_msat.is_some()),
    ];
    for (typ, present) in finals {
        match (is_final, present) {
            (true, false) => return Err(BlindingError::PayloadFieldMissing(typ)),
            (false, true) => return Err(not_allowed(typ)),
            _ => {}
        }
    }
    let _ = TLV_CURRENT_PATH_KEY;
    Ok(())
}
