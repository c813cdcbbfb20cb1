//! Decode errors for the wire codec (BOLT 1 "Lightning Message Format",
//! "Type-Length-Value Format", "Fundamental Types").
//!
//! Every variant names one specific way a peer's bytes can be malformed, so
//! the caller can choose the action (BOLT 1: send `warning` and close the
//! connection, or fail the channel). The codec itself never acts on them.

use core::fmt;

/// Why a byte string could not be decoded. Small, `Copy`, and specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The buffer ended before a field (or a length-prefixed value) did.
    ShortRead,
    /// A BigSize was not encoded in its shortest form (BOLT 1 "Appendix A").
    NonMinimalBigSize,
    /// A TLV record's type was not strictly greater than the previous one.
    TlvNotAscending {
        /// The offending (repeated or decreasing) type.
        typ: u64,
    },
    /// A TLV record's length runs past the end of the stream.
    TlvLengthExceeded {
        /// The type of the record whose value is cut off.
        typ: u64,
    },
    /// A known TLV record's value has the wrong length for its fields.
    TlvBadLength {
        /// The type of the record with the wrong length.
        typ: u64,
    },
    /// A TLV stream contained an unknown even (mandatory) type.
    UnknownEvenTlv(u64),
    /// A message had an unknown even (mandatory) message type.
    UnknownEvenType(u16),
    /// A truncated integer (`tu16`/`tu32`/`tu64`) had a leading zero byte.
    NonMinimalTruncatedInt,
    /// A truncated integer was longer than its type allows.
    TruncatedIntTooLong,
    /// A `point` was not a valid compressed secp256k1 public key.
    InvalidPoint,
    /// A `signature` was not a valid 64-byte compact ECDSA signature.
    InvalidSignature,
    /// A field held a value its definition forbids.
    InvalidValue(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::ShortRead => write!(f, "short read"),
            DecodeError::NonMinimalBigSize => write!(f, "non-minimal BigSize"),
            DecodeError::TlvNotAscending { typ } => {
                write!(f, "TLV type {typ} not strictly ascending")
            }
            DecodeError::TlvLengthExceeded { typ } => {
                write!(f, "TLV type {typ} length exceeds the stream")
            }
            DecodeError::TlvBadLength { typ } => write!(f, "TLV type {typ} has a wrong length"),
            DecodeError::UnknownEvenTlv(t) => write!(f, "unknown even TLV type {t}"),
            DecodeError::UnknownEvenType(t) => write!(f, "unknown even message type {t}"),
            DecodeError::NonMinimalTruncatedInt => write!(f, "non-minimal truncated integer"),
            DecodeError::TruncatedIntTooLong => write!(f, "truncated integer too long"),
            DecodeError::InvalidPoint => write!(f, "invalid point"),
            DecodeError::InvalidSignature => write!(f, "invalid signature"),
            DecodeError::InvalidValue(what) => write!(f, "invalid value: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}
