//! BigSize: the variable-length unsigned integer of BOLT 1 ("Fundamental
//! Types", "Appendix A: BigSize Test Vectors").
//!
//! Big-endian, with a one-byte discriminant: values below 0xfd fit in one
//! byte; 0xfd, 0xfe, 0xff prefix a u16, u32, u64. Decoding rejects any value
//! that would have fit in a shorter form, so every value has exactly one
//! encoding (TLV streams and signatures depend on that).

use crate::DecodeError;

/// Discriminant for a 2-byte value follows (BOLT 1: `0xfd`).
const PREFIX_U16: u8 = 0xfd;
/// Discriminant for a 4-byte value follows (BOLT 1: `0xfe`).
const PREFIX_U32: u8 = 0xfe;
/// Discriminant for an 8-byte value follows (BOLT 1: `0xff`).
const PREFIX_U64: u8 = 0xff;

/// Reads one BigSize from the front of `buf`, advancing it.
///
/// On error `buf` is left in an unspecified position.
pub fn read(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let (&first, rest) = buf.split_first().ok_or(DecodeError::ShortRead)?;
    *buf = rest;
    let (width, min) = match first {
        PREFIX_U16 => (2, 0xfd),
        PREFIX_U32 => (4, 0x1_0000),
        PREFIX_U64 => (8, 0x1_0000_0000),
        small => return Ok(u64::from(small)),
    };
    if buf.len() < width {
        return Err(DecodeError::ShortRead);
    }
    let (bytes, rest) = buf.split_at(width);
    *buf = rest;
    let v = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if v < min {
        return Err(DecodeError::NonMinimalBigSize);
    }
    Ok(v)
}

/// Appends the minimal BigSize encoding of `v` to `out`.
pub fn write(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfc => out.push(v as u8),
        0xfd..=0xffff => {
            out.push(PREFIX_U16);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(PREFIX_U32);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(PREFIX_U64);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// The number of bytes [`write`] appends for `v`.
pub fn encoded_len(v: u64) -> usize {
    match v {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_write() {
        for v in [
            0,
            0xfc,
            0xfd,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write(&mut out, v);
            assert_eq!(out.len(), encoded_len(v));
            let mut s = &out[..];
            assert_eq!(read(&mut s), Ok(v));
            assert!(s.is_empty());
        }
    }
}
