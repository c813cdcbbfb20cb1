//! The per-hop `payload` TLV stream: parsing what a hop reads, writing what
//! the origin sends.
//!
//! BOLT 4 "`payload` format". Parsing borrows nothing and allocates nothing:
//! variable-length fields are recorded as [`Span`]s into the decrypted
//! payload bytes, which [`crate::peel::PeeledHop`] owns. TLV framing rules
//! (minimal BigSize, ascending types, lengths) come from `lnhub-wire`; this
//! module knows the payment namespace. Which fields are required depends on
//! the hop's position and on route blinding; [`HopPayload::check_unblinded`]
//! covers the unblinded rules, [`crate::blinding`] the blinded ones.

use lnhub_wire::tlv::{self, TlvReader};
use lnhub_wire::types::{Msat, ShortChannelId};
use lnhub_wire::{DecodeError, Reader};
use secp256k1::PublicKey;

/// TLV type of `amt_to_forward` (tu64).
pub const TLV_AMT_TO_FORWARD: u64 = 2;
/// TLV type of `outgoing_cltv_value` (tu32).
pub const TLV_OUTGOING_CLTV_VALUE: u64 = 4;
/// TLV type of `short_channel_id` (8 bytes).
pub const TLV_SHORT_CHANNEL_ID: u64 = 6;
/// TLV type of `payment_data` (32-byte secret, tu64 total).
pub const TLV_PAYMENT_DATA: u64 = 8;
/// TLV type of `encrypted_recipient_data` (bytes).
pub const TLV_ENCRYPTED_RECIPIENT_DATA: u64 = 10;
/// TLV type of `current_path_key` (point).
pub const TLV_CURRENT_PATH_KEY: u64 = 12;
/// TLV type of `payment_metadata` (bytes).
pub const TLV_PAYMENT_METADATA: u64 = 16;
/// TLV type of `total_amount_msat` (tu64).
pub const TLV_TOTAL_AMOUNT_MSAT: u64 = 18;

/// A byte range inside the decrypted payload (or decrypted recipient data).
/// Both fit in u16: a payload is at most 1300 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u16,
    /// Number of bytes.
    pub len: u16,
}

impl Span {
    /// The bytes this span covers in `buf`.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[usize::from(self.start)..usize::from(self.start) + usize::from(self.len)]
    }
}

/// `payment_data`: the invoice's `payment_secret` and the MPP total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentData {
    /// `payment_secret` from the invoice.
    pub payment_secret: [u8; 32],
    /// `total_msat` of the whole (multi-part) payment.
    pub total_msat: Msat,
}

/// A parsed hop `payload`. Byte fields are [`Span`]s into the raw payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopPayload {
    /// `amt_to_forward`.
    pub amt_to_forward: Option<Msat>,
    /// `outgoing_cltv_value`.
    pub outgoing_cltv_value: Option<u32>,
    /// `short_channel_id` of the outgoing channel.
    pub short_channel_id: Option<ShortChannelId>,
    /// `payment_data`.
    pub payment_data: Option<PaymentData>,
    /// `encrypted_recipient_data` (route blinding).
    pub encrypted_recipient_data: Option<Span>,
    /// `current_path_key` (set for the introduction point of a blinded route).
    pub current_path_key: Option<PublicKey>,
    /// `payment_metadata`.
    pub payment_metadata: Option<Span>,
    /// `total_amount_msat` (blinded final hop).
    pub total_amount_msat: Option<Msat>,
    /// Whether some unknown odd record was present (blinded hops forbid it).
    pub has_unknown_odd: bool,
}

/// What is wrong with a payload: maps to `invalid_onion_payload { type, offset }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadError {
    /// The TLV type at fault (0 when the framing itself is broken).
    pub typ: u64,
    /// Byte offset of the offending record in the decrypted payload.
    pub offset: u16,
    /// What is wrong.
    pub kind: PayloadErrorKind,
}

/// The specific payload fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadErrorKind {
    /// The `payload_length` prefix is malformed, below 2, or runs past `hop_payloads`.
    BadLengthPrefix,
    /// The TLV stream or a record's value is malformed.
    Decode(DecodeError),
    /// A field this hop needs is absent.
    Missing,
    /// A field is present that this hop must not receive.
    NotAllowed,
}

impl PayloadError {
    pub(crate) fn new(typ: u64, offset: usize, kind: PayloadErrorKind) -> Self {
        PayloadError {
            typ,
            offset: u16::try_from(offset).unwrap_or(u16::MAX),
            kind,
        }
    }
}

/// Byte offset of `inner` within `outer` (both from the same buffer).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

impl HopPayload {
    /// Parses a payload TLV stream (without its length prefix).
    ///
    /// Framing, minimal encodings and per-type lengths are checked; unknown
    /// even types are rejected, unknown odd ones skipped. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<HopPayload, PayloadError> {
        let mut p = HopPayload::default();
        let mut record_start = 0usize;
        for rec in TlvReader::new(bytes) {
            let rec = rec.map_err(|e| {
                let typ = match e {
                    DecodeError::TlvNotAscending { typ }
                    | DecodeError::TlvLengthExceeded { typ } => typ,
                    _ => 0,
                };
                PayloadError::new(typ, record_start, PayloadErrorKind::Decode(e))
            })?;
            let value_start = offset_in(bytes, rec.value);
            let fail = |e: DecodeError| {
                PayloadError::new(rec.typ, record_start, PayloadErrorKind::Decode(e))
            };
            let span = || Span {
                start: value_start as u16,
                len: rec.value.len() as u16,
            };
            match rec.typ {
                TLV_AMT_TO_FORWARD => {
                    p.amt_to_forward = Some(Msat(tlv::read_tu64(rec.value).map_err(fail)?))
                }
                TLV_OUTGOING_CLTV_VALUE => {
                    p.outgoing_cltv_value = Some(tlv::read_tu32(rec.value).map_err(fail)?)
                }
                TLV_SHORT_CHANNEL_ID => {
                    let v: [u8; 8] = rec
                        .value
                        .try_into()
                        .map_err(|_| fail(DecodeError::TlvBadLength { typ: rec.typ }))?;
                    p.short_channel_id = Some(ShortChannelId(u64::from_be_bytes(v)));
                }
                TLV_PAYMENT_DATA => {
                    let mut r = Reader::new(rec.value);
                    let payment_secret = r
                        .array::<32>()
                        .map_err(|_| fail(DecodeError::TlvBadLength { typ: rec.typ }))?;
                    let total_msat = Msat(tlv::read_tu64(r.take_rest()).map_err(fail)?);
                    p.payment_data = Some(PaymentData {
                        payment_secret,
                        total_msat,
                    });
                }
                TLV_ENCRYPTED_RECIPIENT_DATA => p.encrypted_recipient_data = Some(span()),
                TLV_CURRENT_PATH_KEY => {
                    let mut r = Reader::new(rec.value);
                    let key = r.point().map_err(fail)?;
                    if !r.is_empty() {
                        return Err(fail(DecodeError::TlvBadLength { typ: rec.typ }));
                    }
                    p.current_path_key = Some(key);
                }
                TLV_PAYMENT_METADATA => p.payment_metadata = Some(span()),
                TLV_TOTAL_AMOUNT_MSAT => {
                    p.total_amount_msat = Some(Msat(tlv::read_tu64(rec.value).map_err(fail)?))
                }
                other => {
                    tlv::unknown_type(other).map_err(fail)?;
                    p.has_unknown_odd = true;
                }
            }
            record_start = value_start + rec.value.len();
        }
        Ok(p)
    }

    /// The reader rules for a hop outside any blinded route (BOLT 4 "payload
    /// format", Requirements, the reader): `amt_to_forward` and
    /// `outgoing_cltv_value` present, and `short_channel_id` present for a
    /// non-final hop. `path_key`/`current_path_key` are checked by the caller.
    pub fn check_unblinded(&self, is_final: bool) -> Result<(), PayloadError> {
        if self.amt_to_forward.is_none() {
            return Err(PayloadError::new(
                TLV_AMT_TO_FORWARD,
                0,
                PayloadErrorKind::Missing,
            ));
        }
        if self.outgoing_cltv_value.is_none() {
            return Err(PayloadError::new(
                TLV_OUTGOING_CLTV_VALUE,
                0,
                PayloadErrorKind::Missing,
            ));
        }
        if !is_final && self.short_channel_id.is_none() {
            return Err(PayloadError::new(
                TLV_SHORT_CHANNEL_ID,
                0,
                PayloadErrorKind::Missing,
            ));
        }
        Ok(())
    }
}

/// The fields of a payload to send, for the origin (and tests) to encode.
#[derive(Clone, Copy, Debug, Default)]
pub struct PayloadFields<'a> {
    /// `amt_to_forward`.
    pub amt_to_forward: Option<Msat>,
    /// `outgoing_cltv_value`.
    pub outgoing_cltv_value: Option<u32>,
    /// `short_channel_id`.
    pub short_channel_id: Option<ShortChannelId>,
    /// `payment_data`.
    pub payment_data: Option<PaymentData>,
    /// `encrypted_recipient_data`.
    pub encrypted_recipient_data: Option<&'a [u8]>,
    /// `current_path_key`.
    pub current_path_key: Option<PublicKey>,
    /// `payment_metadata`.
    pub payment_metadata: Option<&'a [u8]>,
    /// `total_amount_msat`.
    pub total_amount_msat: Option<Msat>,
    /// Extra records (type, value) appended after the known ones; types must
    /// be above 18, ascending, and odd unless the receiver knows them.
    pub extra_records: &'a [(u64, &'a [u8])],
}

impl PayloadFields<'_> {
    /// Appends the TLV stream (no length prefix) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        if let Some(v) = self.amt_to_forward {
            tlv::write_tu64_record(out, TLV_AMT_TO_FORWARD, v.0);
        }
        if let Some(v) = self.outgoing_cltv_value {
            tlv::write_tu32_record(out, TLV_OUTGOING_CLTV_VALUE, v);
        }
        if let Some(v) = self.short_channel_id {
            tlv::write_record(out, TLV_SHORT_CHANNEL_ID, &v.0.to_be_bytes());
        }
        if let Some(pd) = self.payment_data {
            let skip = (pd.total_msat.0.leading_zeros() / 8) as usize;
            let total = pd.total_msat.0.to_be_bytes();
            tlv::write_header(out, TLV_PAYMENT_DATA, 32 + 8 - skip);
            out.extend_from_slice(&pd.payment_secret);
            out.extend_from_slice(&total[skip..]);
        }
        if let Some(v) = self.encrypted_recipient_data {
            tlv::write_record(out, TLV_ENCRYPTED_RECIPIENT_DATA, v);
        }
        if let Some(v) = self.current_path_key {
            tlv::write_record(out, TLV_CURRENT_PATH_KEY, &v.serialize());
        }
        if let Some(v) = self.payment_metadata {
            tlv::write_record(out, TLV_PAYMENT_METADATA, v);
        }
        if let Some(v) = self.total_amount_msat {
            tlv::write_tu64_record(out, TLV_TOTAL_AMOUNT_MSAT, v.0);
        }
        let mut last = TLV_TOTAL_AMOUNT_MSAT;
        for &(typ, value) in self.extra_records {
            assert!(
                typ > last,
                "extra payload records must be ascending and above type 18"
            );
            last = typ;
            tlv::write_record(out, typ, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_payload_parses() {
        // onion-test.json hop 0 payload (length prefix 0x12 stripped).
        let b = hex::decode("02023a98040205dc06080000000000000001").unwrap();
        let p = HopPayload::parse(&b).unwrap();
        assert_eq!(p.amt_to_forward, Some(Msat(15000)));
        assert_eq!(p.outgoing_cltv_value, Some(1500));
        assert_eq!(p.short_channel_id, Some(ShortChannelId(1)));
        p.check_unblinded(false).unwrap();
        let mut out = Vec::new();
        PayloadFields {
            amt_to_forward: p.amt_to_forward,
            outgoing_cltv_value: p.outgoing_cltv_value,
            short_channel_id: p.short_channel_id,
            ..Default::default()
        }
        .write(&mut out);
        assert_eq!(out, b);
    }

    #[test]
    fn errors_carry_type_and_offset() {
        // amt ok (4 bytes), then unknown even type 6? no: type 7 odd skipped, type 10 ok, type 20 even unknown.
        let b = hex::decode("0201010701ff0a0161140100").unwrap();
        let e = HopPayload::parse(&b).unwrap_err();
        assert_eq!((e.typ, e.offset), (20, 9));
        assert_eq!(
            e.kind,
            PayloadErrorKind::Decode(DecodeError::UnknownEvenTlv(20))
        );
        let e = HopPayload::parse(&hex::decode("02020001").unwrap()).unwrap_err();
        assert_eq!((e.typ, e.offset), (2, 0));
        let e = HopPayload::parse(&hex::decode("0201010201").unwrap()).unwrap_err();
        assert_eq!((e.typ, e.offset), (2, 3));
    }
}
