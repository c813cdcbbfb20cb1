//! A bounds-checked cursor over a peer's bytes: the decoding half of BOLT 1
//! "Fundamental Types" (`byte`, `u16`..`u64`, `s8`..`s64`, `bigsize`,
//! `point`, `signature`).
//!
//! Every read either returns a value and advances, or returns
//! [`DecodeError::ShortRead`] (or a validation error) without panicking.
//! Slices are borrowed from the input, so reading allocates nothing; the
//! caller decides what to copy.

use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;

use crate::{bigsize, DecodeError};

/// Length of a compressed secp256k1 point on the wire (BOLT 1 `point`).
pub const POINT_LEN: usize = 33;
/// Length of a compact ECDSA signature on the wire (BOLT 1 `signature`:
/// 32-byte `r` then 32-byte `s`).
pub const SIGNATURE_LEN: usize = 64;

/// A cursor over `&'a [u8]` that reads BOLT 1 fundamental types big-endian.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

macro_rules! read_int {
    ($($(#[$m:meta])* $name:ident -> $t:ty;)*) => {$(
        $(#[$m])*
        pub fn $name(&mut self) -> Result<$t, DecodeError> {
            Ok(<$t>::from_be_bytes(self.array()?))
        }
    )*};
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// Consumes and returns all the bytes not read yet.
    pub fn take_rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Consumes the next `n` bytes. A length larger than what is left is a
    /// [`DecodeError::ShortRead`], checked before anything is copied.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::ShortRead);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Consumes the next `N` bytes into an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    read_int! {
        /// Reads a `byte`.
        u8 -> u8;
        /// Reads a big-endian `u16`.
        u16 -> u16;
        /// Reads a big-endian `u32`.
        u32 -> u32;
        /// Reads a big-endian `u64`.
        u64 -> u64;
        /// Reads an `s8` (two's complement).
        i8 -> i8;
        /// Reads a big-endian two's complement `s16`.
        i16 -> i16;
        /// Reads a big-endian two's complement `s32`.
        i32 -> i32;
        /// Reads a big-endian two's complement `s64`.
        i64 -> i64;
    }

    /// Reads a minimal BigSize.
    pub fn bigsize(&mut self) -> Result<u64, DecodeError> {
        bigsize::read(&mut self.buf)
    }

    /// Reads a u16 length, then that many bytes.
    pub fn u16_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// Reads a 33-byte compressed `point` and checks it is on the curve.
    pub fn point(&mut self) -> Result<PublicKey, DecodeError> {
        let b = self.bytes(POINT_LEN)?;
        PublicKey::from_slice(b).map_err(|_| DecodeError::InvalidPoint)
    }

    /// Reads a 64-byte compact `signature` (`r` and `s` below the curve
    /// order; high-S is accepted here, policy is the caller's).
    pub fn signature(&mut self) -> Result<Signature, DecodeError> {
        let b = self.bytes(SIGNATURE_LEN)?;
        Signature::from_compact(b).map_err(|_| DecodeError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_do_not_advance_past_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(DecodeError::ShortRead));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.is_empty());
        assert_eq!(r.bytes(usize::MAX), Err(DecodeError::ShortRead));
    }

    #[test]
    fn u16_prefixed_checks_length_first() {
        let mut r = Reader::new(&[0xff, 0xff, 0]);
        assert_eq!(r.u16_prefixed(), Err(DecodeError::ShortRead));
    }
}
