//! BOLT 4 failure messages: every `failure_code` with its data, plus the
//! optional trailing TLV stream.
//!
//! BOLT 4 "Failure Messages". A `failuremsg` is a 2-byte `failure_code`, the
//! data that code defines, then an optional TLV stream. This module only
//! converts between bytes and values; wrapping a message in an encrypted
//! return packet is [`crate::error_packet`]'s job, and choosing which failure
//! to send is the forwarding policy's.

use lnhub_wire::tlv::TlvReader;
use lnhub_wire::types::Msat;
use lnhub_wire::{bigsize, DecodeError, Reader};

/// Flag bit: the onion could not be parsed by the sending peer (`BADONION`).
pub const BADONION: u16 = 0x8000;
/// Flag bit: permanent failure, otherwise transient (`PERM`).
pub const PERM: u16 = 0x4000;
/// Flag bit: node failure, otherwise channel failure (`NODE`).
pub const NODE: u16 = 0x2000;
/// Flag bit: a channel forwarding parameter was violated (`UPDATE`).
pub const UPDATE: u16 = 0x1000;

/// `temporary_node_failure` (NODE|2).
pub const TEMPORARY_NODE_FAILURE: u16 = NODE | 2;
/// `permanent_node_failure` (PERM|NODE|2).
pub const PERMANENT_NODE_FAILURE: u16 = PERM | NODE | 2;
/// `required_node_feature_missing` (PERM|NODE|3).
pub const REQUIRED_NODE_FEATURE_MISSING: u16 = PERM | NODE | 3;
/// `invalid_onion_version` (BADONION|PERM|4).
pub const INVALID_ONION_VERSION: u16 = BADONION | PERM | 4;
/// `invalid_onion_hmac` (BADONION|PERM|5).
pub const INVALID_ONION_HMAC: u16 = BADONION | PERM | 5;
/// `invalid_onion_key` (BADONION|PERM|6).
pub const INVALID_ONION_KEY: u16 = BADONION | PERM | 6;
/// `temporary_channel_failure` (UPDATE|7).
pub const TEMPORARY_CHANNEL_FAILURE: u16 = UPDATE | 7;
/// `permanent_channel_failure` (PERM|8).
pub const PERMANENT_CHANNEL_FAILURE: u16 = PERM | 8;
/// `required_channel_feature_missing` (PERM|9).
pub const REQUIRED_CHANNEL_FEATURE_MISSING: u16 = PERM | 9;
/// `unknown_next_peer` (PERM|10).
pub const UNKNOWN_NEXT_PEER: u16 = PERM | 10;
/// `amount_below_minimum` (UPDATE|11).
pub const AMOUNT_BELOW_MINIMUM: u16 = UPDATE | 11;
/// `fee_insufficient` (UPDATE|12).
pub const FEE_INSUFFICIENT: u16 = UPDATE | 12;
/// `incorrect_cltv_expiry` (UPDATE|13).
pub const INCORRECT_CLTV_EXPIRY: u16 = UPDATE | 13;
/// `expiry_too_soon` (UPDATE|14).
pub const EXPIRY_TOO_SOON: u16 = UPDATE | 14;
/// `incorrect_or_unknown_payment_details` (PERM|15).
pub const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u16 = PERM | 15;
/// `final_incorrect_cltv_expiry` (18).
pub const FINAL_INCORRECT_CLTV_EXPIRY: u16 = 18;
/// `final_incorrect_htlc_amount` (19).
pub const FINAL_INCORRECT_HTLC_AMOUNT: u16 = 19;
/// `channel_disabled` (UPDATE|20).
pub const CHANNEL_DISABLED: u16 = UPDATE | 20;
/// `expiry_too_far` (21).
pub const EXPIRY_TOO_FAR: u16 = 21;
/// `invalid_onion_payload` (PERM|22).
pub const INVALID_ONION_PAYLOAD: u16 = PERM | 22;
/// `mpp_timeout` (23).
pub const MPP_TIMEOUT: u16 = 23;
/// `invalid_onion_blinding` (BADONION|PERM|24).
pub const INVALID_ONION_BLINDING: u16 = BADONION | PERM | 24;

/// A decoded `failuremsg` body: the failure code and its data.
///
/// `channel_update` fields hold the raw message bytes (possibly empty: BOLT 4
/// no longer requires them); this crate does not interpret them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureMessage {
    /// `temporary_node_failure`.
    TemporaryNodeFailure,
    /// `permanent_node_failure`.
    PermanentNodeFailure,
    /// `required_node_feature_missing`.
    RequiredNodeFeatureMissing,
    /// `invalid_onion_version`.
    InvalidOnionVersion {
        /// SHA256 of the onion the processing node received.
        sha256_of_onion: [u8; 32],
    },
    /// `invalid_onion_hmac`.
    InvalidOnionHmac {
        /// SHA256 of the onion the processing node received.
        sha256_of_onion: [u8; 32],
    },
    /// `invalid_onion_key`.
    InvalidOnionKey {
        /// SHA256 of the onion the processing node received.
        sha256_of_onion: [u8; 32],
    },
    /// `temporary_channel_failure`.
    TemporaryChannelFailure {
        /// Raw `channel_update` (may be empty).
        channel_update: Vec<u8>,
    },
    /// `permanent_channel_failure`.
    PermanentChannelFailure,
    /// `required_channel_feature_missing`.
    RequiredChannelFeatureMissing,
    /// `unknown_next_peer`.
    UnknownNextPeer,
    /// `amount_below_minimum`.
    AmountBelowMinimum {
        /// Amount of the outgoing HTLC.
        htlc_msat: Msat,
        /// Raw `channel_update` (may be empty).
        channel_update: Vec<u8>,
    },
    /// `fee_insufficient`.
    FeeInsufficient {
        /// Amount of the incoming HTLC.
        htlc_msat: Msat,
        /// Raw `channel_update` (may be empty).
        channel_update: Vec<u8>,
    },
    /// `incorrect_cltv_expiry`.
    IncorrectCltvExpiry {
        /// `cltv_expiry` of the outgoing HTLC.
        cltv_expiry: u32,
        /// Raw `channel_update` (may be empty).
        channel_update: Vec<u8>,
    },
    /// `expiry_too_soon`.
    ExpiryTooSoon {
        /// Raw `channel_update` (may be empty).
        channel_update: Vec<u8>,
    },
    /// `incorrect_or_unknown_payment_details`.
    IncorrectOrUnknownPaymentDetails {
        /// Amount of the HTLC received.
        htlc_msat: Msat,
        /// The final node's best block height.
        height: u32,
    },
    /// `final_incorrect_cltv_expiry`.
    FinalIncorrectCltvExpiry {
        /// `cltv_expiry` of the received HTLC.
        cltv_expiry: u32,
    },
    /// `final_incorrect_htlc_amount`.
    FinalIncorrectHtlcAmount {
        /// Amount of the received HTLC.
        incoming_htlc_amt: Msat,
    },
    /// `channel_disabled`.
    ChannelDisabled {
        /// `disabled_flags` (none defined: always 0).
        disabled_flags: u16,
        /// Raw `channel_update` (may be empty).
        channel_update: Vec<u8>,
    },
    /// `expiry_too_far`.
    ExpiryTooFar,
    /// `invalid_onion_payload`.
    InvalidOnionPayload {
        /// The TLV type at fault (0 when it cannot be narrowed down).
        typ: u64,
        /// Byte offset of that record in the decrypted payload.
        offset: u16,
    },
    /// `mpp_timeout`.
    MppTimeout,
    /// `invalid_onion_blinding`.
    InvalidOnionBlinding {
        /// SHA256 of the onion the processing node received (may be zero).
        sha256_of_onion: [u8; 32],
    },
    /// A code this crate does not know; its data is kept raw (and any TLV
    /// stream is part of `data`, since its start is unknown).
    Unknown {
        /// The `failure_code`.
        failure_code: u16,
        /// Everything after the code.
        data: Vec<u8>,
    },
}

/// A whole `failuremsg`: the message and its trailing TLV stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Code and data.
    pub message: FailureMessage,
    /// The raw trailing TLV stream (empty if none). On decode it is kept only
    /// when it is a well-formed TLV stream; BOLT 4 tells the origin to ignore
    /// extra bytes, so a malformed tail is dropped rather than failing.
    pub tlv_stream: Vec<u8>,
}

/// Why bytes are not a `failuremsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureDecodeError {
    /// Fewer than the two bytes of `failure_code`.
    MissingCode,
    /// The data of a known code is truncated or invalid.
    BadData {
        /// The `failure_code` whose data is bad.
        failure_code: u16,
        /// The underlying decode error.
        error: DecodeError,
    },
}

impl FailureMessage {
    /// The 2-byte `failure_code`.
    pub fn failure_code(&self) -> u16 {
        use FailureMessage as F;
        match self {
            F::TemporaryNodeFailure => TEMPORARY_NODE_FAILURE,
            F::PermanentNodeFailure => PERMANENT_NODE_FAILURE,
            F::RequiredNodeFeatureMissing => REQUIRED_NODE_FEATURE_MISSING,
            F::InvalidOnionVersion { .. } => INVALID_ONION_VERSION,
            F::InvalidOnionHmac { .. } => INVALID_ONION_HMAC,
            F::InvalidOnionKey { .. } => INVALID_ONION_KEY,
            F::TemporaryChannelFailure { .. } => TEMPORARY_CHANNEL_FAILURE,
            F::PermanentChannelFailure => PERMANENT_CHANNEL_FAILURE,
            F::RequiredChannelFeatureMissing => REQUIRED_CHANNEL_FEATURE_MISSING,
            F::UnknownNextPeer => UNKNOWN_NEXT_PEER,
            F::AmountBelowMinimum { .. } => AMOUNT_BELOW_MINIMUM,
            F::FeeInsufficient { .. } => FEE_INSUFFICIENT,
            F::IncorrectCltvExpiry { .. } => INCORRECT_CLTV_EXPIRY,
            F::ExpiryTooSoon { .. } => EXPIRY_TOO_SOON,
            F::IncorrectOrUnknownPaymentDetails { .. } => INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
            F::FinalIncorrectCltvExpiry { .. } => FINAL_INCORRECT_CLTV_EXPIRY,
            F::FinalIncorrectHtlcAmount { .. } => FINAL_INCORRECT_HTLC_AMOUNT,
            F::ChannelDisabled { .. } => CHANNEL_DISABLED,
            F::ExpiryTooFar => EXPIRY_TOO_FAR,
            F::InvalidOnionPayload { .. } => INVALID_ONION_PAYLOAD,
            F::MppTimeout => MPP_TIMEOUT,
            F::InvalidOnionBlinding { .. } => INVALID_ONION_BLINDING,
            F::Unknown { failure_code, .. } => *failure_code,
        }
    }

    /// The BADONION message carrying `sha256_of_onion` for `failure_code`, as
    /// an upstream node builds it from `update_fail_malformed_htlc`; `None`
    /// if the code is not one of the four BADONION codes with that data.
    pub fn from_malformed(failure_code: u16, sha256_of_onion: [u8; 32]) -> Option<Self> {
        Some(match failure_code {
            INVALID_ONION_VERSION => FailureMessage::InvalidOnionVersion { sha256_of_onion },
            INVALID_ONION_HMAC => FailureMessage::InvalidOnionHmac { sha256_of_onion },
            INVALID_ONION_KEY => FailureMessage::InvalidOnionKey { sha256_of_onion },
            INVALID_ONION_BLINDING => FailureMessage::InvalidOnionBlinding { sha256_of_onion },
            _ => return None,
        })
    }

    /// Appends the code and its data to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        use FailureMessage as F;
        out.extend_from_slice(&self.failure_code().to_be_bytes());
        let update = |out: &mut Vec<u8>, cu: &[u8]| {
            let len = u16::try_from(cu.len()).expect("channel_update is at most 65535 bytes");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(cu);
        };
        match self {
            F::TemporaryNodeFailure
            | F::PermanentNodeFailure
            | F::RequiredNodeFeatureMissing
            | F::PermanentChannelFailure
            | F::RequiredChannelFeatureMissing
            | F::UnknownNextPeer
            | F::ExpiryTooFar
            | F::MppTimeout => {}
            F::InvalidOnionVersion { sha256_of_onion }
            | F::InvalidOnionHmac { sha256_of_onion }
            | F::InvalidOnionKey { sha256_of_onion }
            | F::InvalidOnionBlinding { sha256_of_onion } => out.extend_from_slice(sha256_of_onion),
            F::TemporaryChannelFailure { channel_update } | F::ExpiryTooSoon { channel_update } => {
                update(out, channel_update)
            }
            F::AmountBelowMinimum {
                htlc_msat,
                channel_update,
            }
            | F::FeeInsufficient {
                htlc_msat,
                channel_update,
            } => {
                out.extend_from_slice(&htlc_msat.0.to_be_bytes());
                update(out, channel_update);
            }
            F::IncorrectCltvExpiry {
                cltv_expiry,
                channel_update,
            } => {
                out.extend_from_slice(&cltv_expiry.to_be_bytes());
                update(out, channel_update);
            }
            F::IncorrectOrUnknownPaymentDetails { htlc_msat, height } => {
                out.extend_from_slice(&htlc_msat.0.to_be_bytes());
                out.extend_from_slice(&height.to_be_bytes());
            }
            F::FinalIncorrectCltvExpiry { cltv_expiry } => {
                out.extend_from_slice(&cltv_expiry.to_be_bytes())
            }
            F::FinalIncorrectHtlcAmount { incoming_htlc_amt } => {
                out.extend_from_slice(&incoming_htlc_amt.0.to_be_bytes())
            }
            F::ChannelDisabled {
                disabled_flags,
                channel_update,
            } => {
                out.extend_from_slice(&disabled_flags.to_be_bytes());
                update(out, channel_update);
            }
            F::InvalidOnionPayload { typ, offset } => {
                bigsize::write(out, *typ);
                out.extend_from_slice(&offset.to_be_bytes());
            }
            F::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }

    /// The encoded length of [`Self::write`]'s output.
    pub fn encoded_len(&self) -> usize {
        use FailureMessage as F;
        2 + match self {
            F::TemporaryNodeFailure
            | F::PermanentNodeFailure
            | F::RequiredNodeFeatureMissing
            | F::PermanentChannelFailure
            | F::RequiredChannelFeatureMissing
            | F::UnknownNextPeer
            | F::ExpiryTooFar
            | F::MppTimeout => 0,
            F::InvalidOnionVersion { .. }
            | F::InvalidOnionHmac { .. }
            | F::InvalidOnionKey { .. }
            | F::InvalidOnionBlinding { .. } => 32,
            F::TemporaryChannelFailure { channel_update } | F::ExpiryTooSoon { channel_update } => {
                2 + channel_update.len()
            }
            F::AmountBelowMinimum { channel_update, .. }
            | F::FeeInsufficient { channel_update, .. } => 8 + 2 + channel_update.len(),
            F::IncorrectCltvExpiry { channel_update, .. } => 4 + 2 + channel_update.len(),
            F::IncorrectOrUnknownPaymentDetails { .. } => 12,
            F::FinalIncorrectCltvExpiry { .. } => 4,
            F::FinalIncorrectHtlcAmount { .. } => 8,
            F::ChannelDisabled { channel_update, .. } => 2 + 2 + channel_update.len(),
            F::InvalidOnionPayload { typ, .. } => bigsize::encoded_len(*typ) + 2,
            F::Unknown { data, .. } => data.len(),
        }
    }

    /// Decodes code and data from the front of `r`, leaving the TLV stream.
    fn read(r: &mut Reader<'_>) -> Result<Self, FailureDecodeError> {
        use FailureMessage as F;
        let failure_code = r.u16().map_err(|_| FailureDecodeError::MissingCode)?;
        let bad = |error| FailureDecodeError::BadData {
            failure_code,
            error,
        };
        let msg = (|| -> Result<Self, DecodeError> {
            let update = |r: &mut Reader<'_>| r.u16_prefixed().map(<[u8]>::to_vec);
            Ok(match failure_code {
                TEMPORARY_NODE_FAILURE => F::TemporaryNodeFailure,
                PERMANENT_NODE_FAILURE => F::PermanentNodeFailure,
                REQUIRED_NODE_FEATURE_MISSING => F::RequiredNodeFeatureMissing,
                INVALID_ONION_VERSION => F::InvalidOnionVersion {
                    sha256_of_onion: r.array()?,
                },
                INVALID_ONION_HMAC => F::InvalidOnionHmac {
                    sha256_of_onion: r.array()?,
                },
                INVALID_ONION_KEY => F::InvalidOnionKey {
                    sha256_of_onion: r.array()?,
                },
                TEMPORARY_CHANNEL_FAILURE => F::TemporaryChannelFailure {
                    channel_update: update(r)?,
                },
                PERMANENT_CHANNEL_FAILURE => F::PermanentChannelFailure,
                REQUIRED_CHANNEL_FEATURE_MISSING => F::RequiredChannelFeatureMissing,
                UNKNOWN_NEXT_PEER => F::UnknownNextPeer,
                AMOUNT_BELOW_MINIMUM => F::AmountBelowMinimum {
                    htlc_msat: Msat(r.u64()?),
                    channel_update: update(r)?,
                },
                FEE_INSUFFICIENT => F::FeeInsufficient {
                    htlc_msat: Msat(r.u64()?),
                    channel_update: update(r)?,
                },
                INCORRECT_CLTV_EXPIRY => F::IncorrectCltvExpiry {
                    cltv_expiry: r.u32()?,
                    channel_update: update(r)?,
                },
                EXPIRY_TOO_SOON => F::ExpiryTooSoon {
                    channel_update: update(r)?,
                },
                INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS => F::IncorrectOrUnknownPaymentDetails {
                    htlc_msat: Msat(r.u64()?),
                    height: r.u32()?,
                },
                FINAL_INCORRECT_CLTV_EXPIRY => F::FinalIncorrectCltvExpiry {
                    cltv_expiry: r.u32()?,
                },
                FINAL_INCORRECT_HTLC_AMOUNT => F::FinalIncorrectHtlcAmount {
                    incoming_htlc_amt: Msat(r.u64()?),
                },
                CHANNEL_DISABLED => F::ChannelDisabled {
                    disabled_flags: r.u16()?,
                    channel_update: update(r)?,
                },
                EXPIRY_TOO_FAR => F::ExpiryTooFar,
                INVALID_ONION_PAYLOAD => F::InvalidOnionPayload {
                    typ: r.bigsize()?,
                    offset: r.u16()?,
                },
                MPP_TIMEOUT => F::MppTimeout,
                INVALID_ONION_BLINDING => F::InvalidOnionBlinding {
                    sha256_of_onion: r.array()?,
                },
                other => F::Unknown {
                    failure_code: other,
                    data: r.take_rest().to_vec(),
                },
            })
        })();
        msg.map_err(bad)
    }
}

impl Failure {
    /// A failure with no TLV stream.
    pub fn new(message: FailureMessage) -> Self {
        Failure {
            message,
            tlv_stream: Vec::new(),
        }
    }

    /// Appends the `failuremsg` bytes (code, data, TLV stream) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.message.write(out);
        out.extend_from_slice(&self.tlv_stream);
    }

    /// Length of [`Self::write`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.message.encoded_len() + self.tlv_stream.len()
    }

    /// Decodes a whole `failuremsg`.
    pub fn decode(bytes: &[u8]) -> Result<Self, FailureDecodeError> {
        let mut r = Reader::new(bytes);
        let message = FailureMessage::read(&mut r)?;
        let rest = r.take_rest();
        let well_formed = TlvReader::new(rest).all(|rec| rec.is_ok());
        let tlv_stream = if well_formed {
            rest.to_vec()
        } else {
            Vec::new()
        };
        Ok(Failure {
            message,
            tlv_stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<FailureMessage> {
        use FailureMessage as F;
        let cu = vec![1, 2, 3];
        let h = [7u8; 32];
        vec![
            F::TemporaryNodeFailure,
            F::PermanentNodeFailure,
            F::RequiredNodeFeatureMissing,
            F::InvalidOnionVersion { sha256_of_onion: h },
            F::InvalidOnionHmac { sha256_of_onion: h },
            F::InvalidOnionKey { sha256_of_onion: h },
            F::TemporaryChannelFailure {
                channel_update: cu.clone(),
            },
            F::PermanentChannelFailure,
            F::RequiredChannelFeatureMissing,
            F::UnknownNextPeer,
            F::AmountBelowMinimum {
                htlc_msat: Msat(5),
                channel_update: cu.clone(),
            },
            F::FeeInsufficient {
                htlc_msat: Msat(6),
                channel_update: vec![],
            },
            F::IncorrectCltvExpiry {
                cltv_expiry: 700_000,
                channel_update: cu.clone(),
            },
            F::ExpiryTooSoon {
                channel_update: cu.clone(),
            },
            F::IncorrectOrUnknownPaymentDetails {
                htlc_msat: Msat(9),
                height: 800_000,
            },
            F::FinalIncorrectCltvExpiry { cltv_expiry: 3 },
            F::FinalIncorrectHtlcAmount {
                incoming_htlc_amt: Msat(4),
            },
            F::ChannelDisabled {
                disabled_flags: 0,
                channel_update: cu,
            },
            F::ExpiryTooFar,
            F::InvalidOnionPayload {
                typ: 0x1_0000,
                offset: 17,
            },
            F::MppTimeout,
            F::InvalidOnionBlinding { sha256_of_onion: h },
            F::Unknown {
                failure_code: 0x0777,
                data: vec![9, 9],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_with_and_without_tlvs() {
        for m in all_messages() {
            for tlv in [vec![], vec![1, 2, 0xab, 0xcd, 3, 0]] {
                let f = Failure {
                    message: m.clone(),
                    tlv_stream: tlv,
                };
                let mut out = Vec::new();
                f.write(&mut out);
                assert_eq!(out.len(), f.encoded_len());
                let back = Failure::decode(&out).unwrap();
                if matches!(m, FailureMessage::Unknown { .. }) {
                    assert_eq!(back.message.failure_code(), m.failure_code());
                } else {
                    assert_eq!(back, f);
                }
            }
        }
    }

    #[test]
    fn truncated_data_is_an_error_and_bad_tail_is_ignored() {
        assert_eq!(
            Failure::decode(&[0x40]),
            Err(FailureDecodeError::MissingCode)
        );
        assert!(matches!(
            Failure::decode(&[0x10, 0x0b, 0, 0]),
            Err(FailureDecodeError::BadData {
                failure_code: AMOUNT_BELOW_MINIMUM,
                ..
            })
        ));
        let f = Failure::decode(&[0x20, 0x02, 5, 9]).unwrap();
        assert_eq!(f.message, FailureMessage::TemporaryNodeFailure);
        assert!(f.tlv_stream.is_empty());
    }
}
