//! BOLT 1 test vectors (Appendix A BigSize, Appendix B TLV streams with the
//! spec's `n1`/`n2` test namespaces, Appendix D signed integers), as
//! table-driven tests over the crate's public API.

use lnhub_wire::tlv::{self, TlvReader};
use lnhub_wire::types::ShortChannelId;
use lnhub_wire::{bigsize, DecodeError, Reader};
use secp256k1::PublicKey;

/// The two test namespaces of BOLT 1 Appendix B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    N1,
    N2,
}

/// What a valid stream must decode to in namespace `n1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum N1 {
    Ignored,
    Tlv1(u64),
    Tlv2(&'static str),
    Tlv3(&'static str, u64, u64),
    Tlv4(u16),
}

// Tables transcribed from the BOLT 1 appendices (lightning/bolts a3772650d8eb).

/// BOLT 1 Appendix A, decoding: (name, hex, Ok(value) or the expected error).
const BIGSIZE_DECODING: &[(&str, &str, Result<u64, DecodeError>)] = &[
    ("zero", "00", Ok(0)),
    ("one byte high", "fc", Ok(252)),
    ("two byte low", "fd00fd", Ok(253)),
    ("two byte high", "fdffff", Ok(65535)),
    ("four byte low", "fe00010000", Ok(65536)),
    ("four byte high", "feffffffff", Ok(4294967295)),
    ("eight byte low", "ff0000000100000000", Ok(4294967296)),
    (
        "eight byte high",
        "ffffffffffffffffff",
        Ok(18446744073709551615),
    ),
    (
        "two byte not canonical",
        "fd00fc",
        Err(DecodeError::NonMinimalBigSize),
    ),
    (
        "four byte not canonical",
        "fe0000ffff",
        Err(DecodeError::NonMinimalBigSize),
    ),
    (
        "eight byte not canonical",
        "ff00000000ffffffff",
        Err(DecodeError::NonMinimalBigSize),
    ),
    ("two byte short read", "fd00", Err(DecodeError::ShortRead)),
    (
        "four byte short read",
        "feffff",
        Err(DecodeError::ShortRead),
    ),
    (
        "eight byte short read",
        "ffffffffff",
        Err(DecodeError::ShortRead),
    ),
    ("one byte no read", "", Err(DecodeError::ShortRead)),
    ("two byte no read", "fd", Err(DecodeError::ShortRead)),
    ("four byte no read", "fe", Err(DecodeError::ShortRead)),
    ("eight byte no read", "ff", Err(DecodeError::ShortRead)),
];

/// BOLT 1 Appendix A, encoding: (name, value, hex).
const BIGSIZE_ENCODING: &[(&str, u64, &str)] = &[
    ("zero", 0, "00"),
    ("one byte high", 252, "fc"),
    ("two byte low", 253, "fd00fd"),
    ("two byte high", 65535, "fdffff"),
    ("four byte low", 65536, "fe00010000"),
    ("four byte high", 4294967295, "feffffffff"),
    ("eight byte low", 4294967296, "ff0000000100000000"),
    (
        "eight byte high",
        18446744073709551615,
        "ffffffffffffffffff",
    ),
];

/// BOLT 1 Appendix B, streams that must fail: (hex, namespaces, reason).
const TLV_INVALID: &[(&str, &[Ns], &str)] = &[
    ("fd", &[Ns::N1, Ns::N2], "type truncated"),
    ("fd01", &[Ns::N1, Ns::N2], "type truncated"),
    ("fd000100", &[Ns::N1, Ns::N2], "not minimally encoded type"),
    ("fd0101", &[Ns::N1, Ns::N2], "missing length"),
    ("0ffd", &[Ns::N1, Ns::N2], "(length truncated)"),
    ("0ffd26", &[Ns::N1, Ns::N2], "(length truncated)"),
    ("0ffd2602", &[Ns::N1, Ns::N2], "missing value"),
    ("0ffd000100", &[Ns::N1, Ns::N2], "not minimally encoded length"),
    ("0ffd0201000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", &[Ns::N1, Ns::N2], "value truncated"),
    ("1200", &[Ns::N1, Ns::N2], "unknown even type."),
    ("fd010200", &[Ns::N1, Ns::N2], "unknown even type."),
    ("fe0100000200", &[Ns::N1, Ns::N2], "unknown even type."),
    ("ff010000000000000200", &[Ns::N1, Ns::N2], "unknown even type."),
    ("0109ffffffffffffffffff", &[Ns::N1], "greater than encoding length for `n1`s `tlv1`."),
    ("010100", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("01020001", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("0103000100", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("010400010000", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("01050001000000", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("0106000100000000", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("010700010000000000", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("01080001000000000000", &[Ns::N1], "encoding for `n1`s `tlv1`s `amount_msat` is not minimal"),
    ("020701010101010101", &[Ns::N1], "less than encoding length for `n1`s `tlv2`."),
    ("0209010101010101010101", &[Ns::N1], "greater than encoding length for `n1`s `tlv2`."),
    ("0321023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb", &[Ns::N1], "less than encoding length for `n1`s `tlv3`."),
    ("0329023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb0000000000000001", &[Ns::N1], "less than encoding length for `n1`s `tlv3`."),
    ("0330023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb000000000000000100000000000001", &[Ns::N1], "less than encoding length for `n1`s `tlv3`."),
    ("0331043da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb00000000000000010000000000000002", &[Ns::N1], "`n1`s `node_id` is not a valid point."),
    ("0332023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb0000000000000001000000000000000001", &[Ns::N1], "greater than encoding length for `n1`s `tlv3`."),
    ("fd00fe00", &[Ns::N1], "less than encoding length for `n1`s `tlv4`."),
    ("fd00fe0101", &[Ns::N1], "less than encoding length for `n1`s `tlv4`."),
    ("fd00fe03010101", &[Ns::N1], "greater than encoding length for `n1`s `tlv4`."),
    ("0000", &[Ns::N1], "unknown even field for `n1`s namespace."),
    ("0208000000000000022601012a", &[Ns::N1], "valid TLV records but invalid ordering"),
    ("0208000000000000023102080000000000000451", &[Ns::N1], "duplicate TLV type"),
    ("1f000f012a", &[Ns::N1], "valid (ignored) TLV records but invalid ordering"),
    ("1f001f012a", &[Ns::N1], "duplicate TLV type (ignored)"),
    ("ffffffffffffffffff000000", &[Ns::N2], "valid TLV records but invalid ordering"),
];

/// BOLT 1 Appendix B, streams that must decode: (hex, namespaces, what n1 decodes).
const TLV_VALID: &[(&str, &[Ns], N1)] = &[
    ("", &[Ns::N1, Ns::N2], N1::Ignored),
    ("2100", &[Ns::N1, Ns::N2], N1::Ignored),
    ("fd020100", &[Ns::N1, Ns::N2], N1::Ignored),
    ("fd00fd00", &[Ns::N1, Ns::N2], N1::Ignored),
    ("fd00ff00", &[Ns::N1, Ns::N2], N1::Ignored),
    ("fe0200000100", &[Ns::N1, Ns::N2], N1::Ignored),
    ("ff020000000000000100", &[Ns::N1, Ns::N2], N1::Ignored),
    ("0100", &[Ns::N1], N1::Tlv1(0)),
    ("010101", &[Ns::N1], N1::Tlv1(1)),
    ("01020100", &[Ns::N1], N1::Tlv1(256)),
    ("0103010000", &[Ns::N1], N1::Tlv1(65536)),
    ("010401000000", &[Ns::N1], N1::Tlv1(16777216)),
    ("01050100000000", &[Ns::N1], N1::Tlv1(4294967296)),
    ("0106010000000000", &[Ns::N1], N1::Tlv1(1099511627776)),
    ("010701000000000000", &[Ns::N1], N1::Tlv1(281474976710656)),
    ("01080100000000000000", &[Ns::N1], N1::Tlv1(72057594037927936)),
    ("02080000000000000226", &[Ns::N1], N1::Tlv2("0x0x550")),
    ("0331023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb00000000000000010000000000000002", &[Ns::N1], N1::Tlv3("023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb", 1, 2)),
    ("fd00fe020226", &[Ns::N1], N1::Tlv4(550)),
];

/// BOLT 1 Appendix D: (value, hex in the smallest of s8/s16/s32/s64).
const SIGNED_INTEGERS: &[(i64, &str)] = &[
    (0, "00"),
    (42, "2a"),
    (-42, "d6"),
    (127, "7f"),
    (-128, "80"),
    (128, "0080"),
    (-129, "ff7f"),
    (15000, "3a98"),
    (-15000, "c568"),
    (32767, "7fff"),
    (-32768, "8000"),
    (32768, "00008000"),
    (-32769, "ffff7fff"),
    (21000000, "01406f40"),
    (-21000000, "febf90c0"),
    (2147483647, "7fffffff"),
    (-2147483648, "80000000"),
    (2147483648, "0000000080000000"),
    (-2147483649, "ffffffff7fffffff"),
    (500000000000, "000000746a528800"),
    (-500000000000, "ffffff8b95ad7800"),
    (9223372036854775807, "7fffffffffffffff"),
    (-9223372036854775808, "8000000000000000"),
];
/// One decoded record of either test namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    N1Tlv1(u64),
    N1Tlv2(ShortChannelId),
    N1Tlv3(PublicKey, u64, u64),
    N1Tlv4(u16),
    N2Tlv1(u64),
    N2Tlv2(u32),
}

/// Decodes a fixed-layout record value, requiring it to be consumed exactly.
fn fixed<T>(
    typ: u64,
    value: &[u8],
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut r = Reader::new(value);
    let v = f(&mut r).map_err(|e| match e {
        DecodeError::ShortRead => DecodeError::TlvBadLength { typ },
        e => e,
    })?;
    if !r.is_empty() {
        return Err(DecodeError::TlvBadLength { typ });
    }
    Ok(v)
}

/// Decodes `stream` in namespace `ns` with the crate's TLV API.
fn decode(ns: Ns, stream: &[u8]) -> Result<Vec<Rec>, DecodeError> {
    let mut recs = Vec::new();
    for rec in TlvReader::new(stream) {
        let rec = rec?;
        let (typ, v) = (rec.typ, rec.value);
        let decoded = match (ns, typ) {
            (Ns::N1, 1) => Rec::N1Tlv1(tlv::read_tu64(v)?),
            (Ns::N1, 2) => Rec::N1Tlv2(ShortChannelId(fixed(typ, v, |r| r.u64())?)),
            (Ns::N1, 3) => {
                let (p, a, b) = fixed(typ, v, |r| Ok((r.point()?, r.u64()?, r.u64()?)))?;
                Rec::N1Tlv3(p, a, b)
            }
            (Ns::N1, 254) => Rec::N1Tlv4(fixed(typ, v, |r| r.u16())?),
            (Ns::N2, 0) => Rec::N2Tlv1(tlv::read_tu64(v)?),
            (Ns::N2, 11) => Rec::N2Tlv2(tlv::read_tu32(v)?),
            (_, t) => {
                tlv::unknown_type(t)?;
                continue;
            }
        };
        recs.push(decoded);
    }
    Ok(recs)
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex is valid")
}

#[test]
fn bigsize_decoding() {
    for &(name, hex, expected) in BIGSIZE_DECODING {
        let bytes = unhex(hex);
        let mut buf = &bytes[..];
        let got = bigsize::read(&mut buf);
        assert_eq!(got, expected, "{name}");
        if got.is_ok() {
            assert!(buf.is_empty(), "{name}: must consume every byte");
        }
    }
}

#[test]
fn bigsize_encoding() {
    for &(name, value, hex) in BIGSIZE_ENCODING {
        let mut out = vec![0xaa];
        bigsize::write(&mut out, value);
        assert_eq!(
            &out[1..],
            unhex(hex),
            "{name}: appends after existing bytes"
        );
        assert_eq!(bigsize::encoded_len(value), out.len() - 1, "{name}");
    }
}

#[test]
fn tlv_invalid_streams_fail_in_every_listed_namespace() {
    for &(hex, namespaces, reason) in TLV_INVALID {
        for &ns in namespaces {
            let got = decode(ns, &unhex(hex));
            assert!(
                got.is_err(),
                "{hex} in {ns:?} ({reason}) decoded to {got:?}"
            );
        }
    }
}

#[test]
fn tlv_valid_streams_decode() {
    for &(hex, namespaces, expected) in TLV_VALID {
        for &ns in namespaces {
            let got = decode(ns, &unhex(hex)).unwrap_or_else(|e| panic!("{hex} in {ns:?}: {e}"));
            if expected == N1::Ignored {
                assert!(
                    got.is_empty(),
                    "{hex} in {ns:?}: all records are unknown odd"
                );
                continue;
            }
            assert_eq!(ns, Ns::N1, "only n1 rows carry decoded values");
            let want = match expected {
                N1::Ignored => unreachable!(),
                N1::Tlv1(v) => Rec::N1Tlv1(v),
                N1::Tlv2(s) => Rec::N1Tlv2(s.parse().expect("vector scid parses")),
                N1::Tlv3(p, a, b) => Rec::N1Tlv3(
                    PublicKey::from_slice(&unhex(p)).expect("vector point"),
                    a,
                    b,
                ),
                N1::Tlv4(v) => Rec::N1Tlv4(v),
            };
            assert_eq!(got, vec![want], "{hex}");
        }
    }
}

/// The last type of a valid stream, and its first type.
fn type_bounds(stream: &[u8]) -> Option<(u64, u64)> {
    let types: Vec<u64> = TlvReader::new(stream).map(|r| r.unwrap().typ).collect();
    Some((*types.first()?, *types.last()?))
}

#[test]
fn tlv_appending_rules() {
    for ns in [Ns::N1, Ns::N2] {
        let valid: Vec<Vec<u8>> = TLV_VALID
            .iter()
            .filter(|(_, nss, _)| nss.contains(&ns))
            .map(|(h, _, _)| unhex(h))
            .collect();
        let invalid: Vec<Vec<u8>> = TLV_INVALID
            .iter()
            .filter(|(_, nss, _)| nss.contains(&ns))
            .map(|(h, _, _)| unhex(h))
            .collect();
        for a in &valid {
            // Appending an invalid stream to a valid one must fail.
            for b in &invalid {
                let joined = [&a[..], &b[..]].concat();
                assert!(
                    decode(ns, &joined).is_err(),
                    "{a:02x?} ++ {b:02x?} in {ns:?}"
                );
            }
            // Appending a higher-typed valid stream must not fail.
            for b in &valid {
                let ordered = match (type_bounds(a), type_bounds(b)) {
                    (Some((_, last_a)), Some((first_b, _))) => first_b > last_a,
                    _ => true,
                };
                if ordered {
                    let joined = [&a[..], &b[..]].concat();
                    assert!(
                        decode(ns, &joined).is_ok(),
                        "{a:02x?} ++ {b:02x?} in {ns:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn signed_integers() {
    for &(value, hex) in SIGNED_INTEGERS {
        let bytes = unhex(hex);
        let mut r = Reader::new(&bytes);
        let (got, smallest) = match bytes.len() {
            1 => (i64::from(r.i8().unwrap()), i8::try_from(value).is_ok()),
            2 => (i64::from(r.i16().unwrap()), i8::try_from(value).is_err()),
            4 => (i64::from(r.i32().unwrap()), i16::try_from(value).is_err()),
            8 => (r.i64().unwrap(), i32::try_from(value).is_err()),
            n => panic!("{hex}: {n} bytes is no signed width"),
        };
        assert_eq!(got, value, "{hex}");
        assert!(r.is_empty());
        assert!(smallest, "{hex}: vector uses the smallest width");
        let encoded = match bytes.len() {
            1 => (value as i8).to_be_bytes().to_vec(),
            2 => (value as i16).to_be_bytes().to_vec(),
            4 => (value as i32).to_be_bytes().to_vec(),
            _ => value.to_be_bytes().to_vec(),
        };
        assert_eq!(encoded, bytes, "{value}");
    }
}
