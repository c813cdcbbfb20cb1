//! The record's primitives: the version byte and SHA-256 seal around a body, and the
//! fixed-width writer and checked reader every part of a record is written with.

use super::*;

/// Ends a record begun at `out[start]` (its version byte): appends the
/// SHA256 of everything from `start`.
pub(crate) fn seal(out: &mut Vec<u8>, start: usize) {
    let checksum = sha256::Hash::hash(&out[start..]).to_byte_array();
    out.extend_from_slice(&checksum);
}

/// Checks a record's version byte (`version`: the kind of record the
/// caller expects) and checksum, then reads its body with `body`, which
/// must consume it exactly. Never panics.
pub(crate) fn unseal<T>(
    bytes: &[u8],
    version: u8,
    body: impl FnOnce(&mut R<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let (&first, _) = bytes.split_first().ok_or(DecodeError::ShortRead)?;
    if first != version {
        return Err(DecodeError::UnknownVersion(first));
    }
    if bytes.len() < 1 + CHECKSUM_LEN {
        return Err(DecodeError::ShortRead);
    }
    let (record, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if sha256::Hash::hash(record).to_byte_array() != checksum {
        return Err(DecodeError::BadChecksum);
    }
    let mut r = R(&record[1..]);
    let value = body(&mut r)?;
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(value)
}

/// Appends fixed-width fields to a caller-owned buffer.
pub(crate) struct W<'a>(pub(crate) &'a mut Vec<u8>);

impl W<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(crate) fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("record lists are bounded far below 2^32"));
    }
    pub(crate) fn blob(&mut self, v: &[u8]) {
        self.count(v.len());
        self.bytes(v);
    }
    pub(crate) fn point(&mut self, p: &PublicKey) {
        self.bytes(&p.serialize());
    }
    pub(crate) fn sig(&mut self, s: &Signature) {
        self.bytes(&s.serialize_compact());
    }
    pub(crate) fn side(&mut self, s: Side) {
        self.u8(match s {
            Side::Local => 0,
            Side::Remote => 1,
        });
    }
    pub(crate) fn state(&mut self, s: UpdateState) {
        self.u8(s as u8);
    }
    pub(crate) fn message(&mut self, m: &Message) {
        let at = self.0.len();
        self.u32(0);
        m.encode(self.0);
        let len = u32::try_from(self.0.len() - at - 4).expect("a message is below 2^32 bytes");
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Reads fixed-width fields from a slice; every read is bounds-checked.
pub(crate) struct R<'a>(pub(crate) &'a [u8]);

impl<'a> R<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::ShortRead);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("boolean")),
        }
    }
    pub(crate) fn count(&mut self, max: u32, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32()?;
        if n > max {
            return Err(DecodeError::Invalid(what));
        }
        Ok(n as usize)
    }
    pub(crate) fn blob(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(MAX_BLOB, what)?;
        self.take(n)
    }
    pub(crate) fn point(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_slice(&self.arr::<33>()?).map_err(|_| DecodeError::Invalid("public key"))
    }
    pub(crate) fn secret(&mut self) -> Result<SecretKey, DecodeError> {
        SecretKey::from_slice(&self.arr::<32>()?).map_err(|_| DecodeError::Invalid("secret key"))
    }
    pub(crate) fn sig(&mut self) -> Result<Signature, DecodeError> {
        Signature::from_compact(&self.arr::<64>()?).map_err(|_| DecodeError::Invalid("signature"))
    }
    pub(crate) fn side(&mut self) -> Result<Side, DecodeError> {
        match self.u8()? {
            0 => Ok(Side::Local),
            1 => Ok(Side::Remote),
            _ => Err(DecodeError::Invalid("side")),
        }
    }
    pub(crate) fn state(&mut self) -> Result<UpdateState, DecodeError> {
        use UpdateState::*;
        [
            Announced,
            ReceiverSigned,
            ReceiverRevoked,
            ProposerSigned,
            Irrevocable,
        ]
        .get(usize::from(self.u8()?))
        .copied()
        .ok_or(DecodeError::Invalid("update state"))
    }
    pub(crate) fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
    pub(crate) fn message(&mut self) -> Result<Message, DecodeError> {
        let bytes = self.blob("message length")?;
        Message::decode(bytes).map_err(|_| DecodeError::Invalid("message"))
    }
}
