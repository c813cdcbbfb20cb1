//! The internal field codec behind every message (BOLT 1 "Fundamental
//! Types", "Type-Length-Value Format"): how each field type reads and
//! writes, and the `wire_message!` macro that turns a BOLT field list into a
//! struct with `decode_body`/`encode_body`.
//!
//! Messages list their fields in spec order; the macro reads them in that
//! order, then reads the rest of the message as a TLV stream (known types to
//! their `Option` fields, unknown odd kept in `unknown_tlvs`, unknown even
//! rejected), or, for signed gossip, keeps the rest verbatim as
//! `excess_data`.

use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;

use crate::features::Features;
use crate::reader::SIGNATURE_LEN;
use crate::types::{
    ChainHash, ChannelId, Msat, PaymentHash, PaymentPreimage, Sat, ShortChannelId, Txid,
};
use crate::{DecodeError, Reader};

/// A fixed-position message field.
pub(crate) trait Field: Sized {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn write(&self, out: &mut Vec<u8>);
}

macro_rules! int_field {
    ($($t:ty => $m:ident),*) => {$(
        impl Field for $t {
            fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$m()
            }
            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
    )*};
}
int_field!(u8 => u8, u16 => u16, u32 => u32, u64 => u64, i64 => i64);

impl<const N: usize> Field for [u8; N] {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

macro_rules! newtype_field {
    ($($t:ident),*) => {$(
        impl Field for $t {
            fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Field::read(r).map($t)
            }
            fn write(&self, out: &mut Vec<u8>) {
                self.0.write(out)
            }
        }
    )*};
}
newtype_field!(
    ChainHash,
    ChannelId,
    PaymentHash,
    PaymentPreimage,
    Txid,
    ShortChannelId,
    Msat,
    Sat
);

impl Field for PublicKey {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.point()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.serialize());
    }
}

impl Field for Signature {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.signature()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.serialize_compact());
    }
}

/// Appends a u16 length prefix; our own values must fit (BOLT 1 messages
/// are at most 65535 bytes, so any longer field is a caller bug).
pub(crate) fn write_u16_len(out: &mut Vec<u8>, len: usize) {
    let len = u16::try_from(len).expect("a u16-length-prefixed field holds at most 65535 items");
    out.extend_from_slice(&len.to_be_bytes());
}

/// `u16 len` + `len*byte`.
impl Field for Vec<u8> {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u16_prefixed().map(<[u8]>::to_vec)
    }
    fn write(&self, out: &mut Vec<u8>) {
        write_u16_len(out, self.len());
        out.extend_from_slice(self);
    }
}

/// `u16 num` + `num*signature` (commitment_signed `htlc_signature`).
impl Field for Vec<Signature> {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = usize::from(r.u16()?);
        // Bound the allocation by the bytes present, not the peer's count.
        if n * SIGNATURE_LEN > r.remaining().len() {
            return Err(DecodeError::ShortRead);
        }
        (0..n).map(|_| r.signature()).collect()
    }
    fn write(&self, out: &mut Vec<u8>) {
        write_u16_len(out, self.len());
        self.iter().for_each(|s| s.write(out));
    }
}

/// `u16 len` + `len*byte` feature vector.
impl Field for Features {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Features::read(r)
    }
    fn write(&self, out: &mut Vec<u8>) {
        Features::write(self, out)
    }
}

/// The value of a known TLV record.
pub(crate) trait TlvValue: Sized {
    /// Decodes the whole value; a wrong length is [`DecodeError::TlvBadLength`].
    fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError>;
    /// The number of bytes [`TlvValue::encode_tlv`] appends.
    fn tlv_len(&self) -> usize;
    fn encode_tlv(&self, out: &mut Vec<u8>);
}

/// Decodes a fixed-layout value that must fill the record exactly.
pub(crate) fn decode_exact<T: Field>(typ: u64, value: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(value);
    let v = T::read(&mut r).map_err(|e| match e {
        DecodeError::ShortRead => DecodeError::TlvBadLength { typ },
        e => e,
    })?;
    if !r.is_empty() {
        return Err(DecodeError::TlvBadLength { typ });
    }
    Ok(v)
}

/// TLV values that are one fixed-size [`Field`], with their wire length.
macro_rules! fixed_tlv {
    ($($t:ty => $len:expr),* $(,)?) => {$(
        impl crate::msgs::codec::TlvValue for $t {
            fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError> {
                crate::msgs::codec::decode_exact(typ, value)
            }
            fn tlv_len(&self) -> usize {
                $len
            }
            fn encode_tlv(&self, out: &mut Vec<u8>) {
                crate::msgs::codec::Field::write(self, out)
            }
        }
    )*};
}
pub(crate) use fixed_tlv;

fixed_tlv!(
    PublicKey => crate::reader::POINT_LEN,
    Signature => SIGNATURE_LEN,
    ShortChannelId => 8,
    Txid => 32,
    u16 => 2,
);

/// `...*byte`: the whole value.
impl TlvValue for Vec<u8> {
    fn decode_tlv(_: u64, value: &[u8]) -> Result<Self, DecodeError> {
        Ok(value.to_vec())
    }
    fn tlv_len(&self) -> usize {
        self.len()
    }
    fn encode_tlv(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

/// A feature vector filling the whole value (`channel_type`).
impl TlvValue for Features {
    fn decode_tlv(_: u64, value: &[u8]) -> Result<Self, DecodeError> {
        Ok(Features::from_wire_bytes(value))
    }
    fn tlv_len(&self) -> usize {
        self.as_bytes().len()
    }
    fn encode_tlv(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}

/// `...*chain_hash` (init `networks`).
impl TlvValue for Vec<ChainHash> {
    fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError> {
        let chunks = value.chunks_exact(32);
        if !chunks.remainder().is_empty() {
            return Err(DecodeError::TlvBadLength { typ });
        }
        Ok(chunks
            .map(|c| ChainHash(c.try_into().expect("chunks_exact(32) yields 32 bytes")))
            .collect())
    }
    fn tlv_len(&self) -> usize {
        self.len() * 32
    }
    fn encode_tlv(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|c| out.extend_from_slice(&c.0))
    }
}

/// Defines a message struct from its BOLT field list; see the module docs.
///
/// Known TLV types must be listed in ascending order.
macro_rules! wire_message {
    (@struct $(#[$meta:meta])* $name:ident = $typ:literal,
        { $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)? }
        { $( $(#[$tmeta:meta])* $tfield:ident : $tty:ty ),* }
        $(#[$xmeta:meta])* $extra:ident : $xty:ty
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
            $( $(#[$tmeta])* pub $tfield: Option<$tty>, )*
            $(#[$xmeta])*
            pub $extra: $xty,
        }

        impl $name {
            /// The BOLT message type.
            pub const MSG_TYPE: u16 = $typ;
        }
    };

    (
        $(#[$meta:meta])* $name:ident = $typ:literal {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        }
        tlvs {
            $( $(#[$tmeta:meta])* $ttyp:literal => $tfield:ident : $tty:ty ),* $(,)?
        }
    ) => {
        crate::msgs::codec::wire_message!(@struct $(#[$meta])* $name = $typ,
            { $( $(#[$fmeta])* $field : $fty ),* }
            { $( $(#[$tmeta])* $tfield : $tty ),* }
            /// Unknown odd TLV records, ascending, re-emitted verbatim.
            unknown_tlvs: Vec<crate::tlv::OwnedTlv>
        );

        impl $name {
            pub(crate) fn decode_body(r: &mut crate::Reader<'_>) -> Result<Self, crate::DecodeError> {
                $( let $field = <$fty as crate::msgs::codec::Field>::read(r)?; )*
                $( let mut $tfield: Option<$tty> = None; )*
                let mut unknown_tlvs = Vec::new();
                for rec in crate::tlv::TlvReader::new(r.take_rest()) {
                    let rec = rec?;
                    match rec.typ {
                        $( $ttyp => {
                            $tfield = Some(<$tty as crate::msgs::codec::TlvValue>::decode_tlv(
                                rec.typ, rec.value,
                            )?)
                        } )*
                        t => {
                            crate::tlv::unknown_type(t)?;
                            unknown_tlvs.push(crate::tlv::OwnedTlv::from(rec));
                        }
                    }
                }
                Ok($name { $($field,)* $($tfield,)* unknown_tlvs })
            }

            pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
                $( crate::msgs::codec::Field::write(&self.$field, out); )*
                #[allow(unused_mut)]
                let mut w = crate::tlv::TlvStreamWriter::new(out, &self.unknown_tlvs);
                $( if let Some(v) = &self.$tfield {
                    let len = crate::msgs::codec::TlvValue::tlv_len(v);
                    w.record($ttyp, len, |o| crate::msgs::codec::TlvValue::encode_tlv(v, o));
                } )*
                w.finish();
            }
        }
    };

    (
        $(#[$meta:meta])* $name:ident = $typ:literal {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        }
        excess_data
    ) => {
        crate::msgs::codec::wire_message!(@struct $(#[$meta])* $name = $typ,
            { $( $(#[$fmeta])* $field : $fty ),* }
            { }
            /// Bytes after the known fields, kept verbatim: the signature
            /// covers them (BOLT 1 "Appendix C", BOLT 7).
            excess_data: Vec<u8>
        );

        impl $name {
            pub(crate) fn decode_body(r: &mut crate::Reader<'_>) -> Result<Self, crate::DecodeError> {
                $( let $field = <$fty as crate::msgs::codec::Field>::read(r)?; )*
                let excess_data = r.take_rest().to_vec();
                Ok($name { $($field,)* excess_data })
            }

            pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
                $( crate::msgs::codec::Field::write(&self.$field, out); )*
                out.extend_from_slice(&self.excess_data);
            }
        }
    };
}
pub(crate) use wire_message;

/// Defines a fixed-layout struct of [`Field`]s (a BOLT subtype or a
/// fixed TLV value) with its `Field` and `TlvValue` impls.
macro_rules! fixed_struct {
    ($(#[$m:meta])* $name:ident ($len:expr) {
        $( $(#[$fm:meta])* $f:ident : $t:ty ),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl crate::msgs::codec::Field for $name {
            fn read(r: &mut crate::Reader<'_>) -> Result<Self, crate::DecodeError> {
                Ok($name { $( $f: crate::msgs::codec::Field::read(r)?, )* })
            }
            fn write(&self, out: &mut Vec<u8>) {
                $( crate::msgs::codec::Field::write(&self.$f, out); )*
            }
        }

        crate::msgs::codec::fixed_tlv!($name => $len);
    };
}
pub(crate) use fixed_struct;
