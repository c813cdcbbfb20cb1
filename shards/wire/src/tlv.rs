//! TLV streams (BOLT 1 "Type-Length-Value Format", "Appendix B").
//!
//! [`TlvReader`] walks a stream and enforces the rules every namespace
//! shares: minimal BigSize type and length, strictly ascending types, and a
//! length that fits in the stream. Deciding which types are known, and
//! rejecting unknown even ones with [`unknown_type`], is the caller's part.
//! The truncated integers (`tu16`, `tu32`, `tu64`) live here too, since they
//! only ever appear as a whole TLV value.

use crate::{bigsize, DecodeError};

/// One record of a TLV stream, borrowing its value from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvRecord<'a> {
    /// The record type.
    pub typ: u64,
    /// The record value (exactly `length` bytes).
    pub value: &'a [u8],
}

/// Iterates the records of a TLV stream, validating as it goes.
///
/// After the first `Err` the iterator is fused and yields `None`.
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    buf: &'a [u8],
    last_typ: Option<u64>,
    failed: bool,
}

impl<'a> TlvReader<'a> {
    /// A reader over the whole stream `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        TlvReader {
            buf,
            last_typ: None,
            failed: false,
        }
    }

    fn next_record(&mut self) -> Result<TlvRecord<'a>, DecodeError> {
        let typ = bigsize::read(&mut self.buf)?;
        if self.last_typ.is_some_and(|last| typ <= last) {
            return Err(DecodeError::TlvNotAscending { typ });
        }
        self.last_typ = Some(typ);
        let len = bigsize::read(&mut self.buf)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::TlvLengthExceeded { typ })?;
        if len > self.buf.len() {
            return Err(DecodeError::TlvLengthExceeded { typ });
        }
        let (value, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(TlvRecord { typ, value })
    }
}

impl<'a> Iterator for TlvReader<'a> {
    type Item = Result<TlvRecord<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let rec = self.next_record();
        self.failed = rec.is_err();
        Some(rec)
    }
}

impl core::iter::FusedIterator for TlvReader<'_> {}

/// The rule for a type the namespace does not know (BOLT 1 "it's OK to be
/// odd"): even is mandatory, so fail; odd may be skipped.
pub fn unknown_type(typ: u64) -> Result<(), DecodeError> {
    if typ.is_multiple_of(2) {
        Err(DecodeError::UnknownEvenTlv(typ))
    } else {
        Ok(())
    }
}

fn read_truncated(value: &[u8], max_len: usize) -> Result<u64, DecodeError> {
    if value.len() > max_len {
        return Err(DecodeError::TruncatedIntTooLong);
    }
    if value.first() == Some(&0) {
        return Err(DecodeError::NonMinimalTruncatedInt);
    }
    Ok(value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Decodes a whole TLV value as a minimal `tu16` (0 to 2 bytes).
pub fn read_tu16(value: &[u8]) -> Result<u16, DecodeError> {
    read_truncated(value, 2).map(|v| v as u16)
}

/// Decodes a whole TLV value as a minimal `tu32` (0 to 4 bytes).
pub fn read_tu32(value: &[u8]) -> Result<u32, DecodeError> {
    read_truncated(value, 4).map(|v| v as u32)
}

/// Decodes a whole TLV value as a minimal `tu64` (0 to 8 bytes).
pub fn read_tu64(value: &[u8]) -> Result<u64, DecodeError> {
    read_truncated(value, 8)
}

/// The minimal big-endian bytes of `v` (no leading zero byte; 0 is empty).
fn truncated(v: u64) -> ([u8; 8], usize) {
    let skip = (v.leading_zeros() / 8) as usize;
    (v.to_be_bytes(), skip)
}

/// Appends the record header (type, length) for a value of `len` bytes.
pub fn write_header(out: &mut Vec<u8>, typ: u64, len: usize) {
    bigsize::write(out, typ);
    bigsize::write(out, len as u64);
}

/// Appends one record. The caller keeps types strictly ascending.
pub fn write_record(out: &mut Vec<u8>, typ: u64, value: &[u8]) {
    write_header(out, typ, value.len());
    out.extend_from_slice(value);
}

/// Appends a record whose value is `v` as a minimal `tu64`.
pub fn write_tu64_record(out: &mut Vec<u8>, typ: u64, v: u64) {
    let (bytes, skip) = truncated(v);
    write_record(out, typ, &bytes[skip..]);
}

/// Appends a record whose value is `v` as a minimal `tu32`.
pub fn write_tu32_record(out: &mut Vec<u8>, typ: u64, v: u32) {
    write_tu64_record(out, typ, u64::from(v));
}

/// Appends a record whose value is `v` as a minimal `tu16`.
pub fn write_tu16_record(out: &mut Vec<u8>, typ: u64, v: u16) {
    write_tu64_record(out, typ, u64::from(v));
}

/// A TLV record with an owned value: how a message keeps the unknown odd
/// records it must re-emit byte for byte (BOLT 1: extension bytes are signed
/// over and must survive a round trip).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedTlv {
    /// The record type (odd, since unknown even types are rejected).
    pub typ: u64,
    /// The record value.
    pub value: Vec<u8>,
}

impl From<TlvRecord<'_>> for OwnedTlv {
    fn from(r: TlvRecord<'_>) -> Self {
        OwnedTlv {
            typ: r.typ,
            value: r.value.to_vec(),
        }
    }
}

/// Writes a message's TLV stream: its known records, in ascending type
/// order, merged with the unknown odd records it decoded, so re-encoding
/// reproduces the received bytes.
pub(crate) struct TlvStreamWriter<'o, 'u> {
    out: &'o mut Vec<u8>,
    unknown: &'u [OwnedTlv],
    last_typ: Option<u64>,
}

impl<'o, 'u> TlvStreamWriter<'o, 'u> {
    pub(crate) fn new(out: &'o mut Vec<u8>, unknown: &'u [OwnedTlv]) -> Self {
        TlvStreamWriter {
            out,
            unknown,
            last_typ: None,
        }
    }

    fn check_order(&mut self, typ: u64) {
        assert!(
            self.last_typ.is_none_or(|last| typ > last),
            "TLV stream types must be strictly ascending and unknown_tlvs must not repeat a known type (type {typ})"
        );
        self.last_typ = Some(typ);
    }

    fn flush_unknown_below(&mut self, typ: Option<u64>) {
        while let Some((first, rest)) = self.unknown.split_first() {
            if typ.is_some_and(|t| first.typ >= t) {
                break;
            }
            self.check_order(first.typ);
            write_record(self.out, first.typ, &first.value);
            self.unknown = rest;
        }
    }

    /// Writes a known record of `len` bytes; `write` must append exactly
    /// `len` bytes.
    pub(crate) fn record(&mut self, typ: u64, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.flush_unknown_below(Some(typ));
        self.check_order(typ);
        write_header(self.out, typ, len);
        let start = self.out.len();
        write(self.out);
        assert_eq!(
            self.out.len() - start,
            len,
            "TLV type {typ}: value writer must append exactly its declared length"
        );
    }

    /// Writes the remaining unknown records.
    pub(crate) fn finish(mut self) {
        self.flush_unknown_below(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_ints_round_trip() {
        for v in [0u64, 1, 0xff, 0x100, 0xffff_ffff, u64::MAX] {
            let mut out = Vec::new();
            write_tu64_record(&mut out, 1, v);
            let rec = TlvReader::new(&out).next().unwrap().unwrap();
            assert_eq!(read_tu64(rec.value), Ok(v));
        }
        assert_eq!(read_tu16(&[0, 1]), Err(DecodeError::NonMinimalTruncatedInt));
        assert_eq!(read_tu16(&[1, 1, 1]), Err(DecodeError::TruncatedIntTooLong));
        assert_eq!(read_tu32(&[]), Ok(0));
    }

    #[test]
    fn writer_merges_unknown_records_in_order() {
        let unknown = [
            OwnedTlv {
                typ: 1,
                value: vec![0xaa],
            },
            OwnedTlv {
                typ: 5,
                value: vec![],
            },
        ];
        let mut out = Vec::new();
        let mut w = TlvStreamWriter::new(&mut out, &unknown);
        w.record(2, 1, |o| o.push(7));
        w.finish();
        assert_eq!(out, [1, 1, 0xaa, 2, 1, 7, 5, 0]);
    }
}
