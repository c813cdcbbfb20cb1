//! A fuzzing entry point for the BOLT 8 frame decoder ("Receiving and
//! Decrypting Messages"), for a fuzz target outside this crate to call.
//!
//! [`fuzz_framing`] builds a matched sender/receiver pair from fixed keys, so
//! the fuzzer can reach every decoder state, including bodies that
//! authenticate. Panics only if the decoder breaks one of its own promises.

use crate::transport::{Transport, TransportError};

/// The fixed sender key of the fuzz pair: any value works; fixed so a crash
/// input reproduces.
const FUZZ_SK: [u8; 32] = [0x11; 32];
/// The fixed key for the other direction; distinct from [`FUZZ_SK`] so a mixed
/// up direction would show.
const FUZZ_RK: [u8; 32] = [0x22; 32];
/// The fixed chaining key both directions start from (used only by key
/// rotation, which streams of over 500 messages reach).
const FUZZ_CK: [u8; 32] = [0x33; 32];

/// Control-byte bit: 1 = the rest is a list of plaintexts (2-byte big-endian
/// length, then bytes) to encrypt and decode; 0 = the rest is raw wire bytes.
const STRUCTURED: u8 = 0x40;
/// Control-byte bit (structured mode): flip one bit of the encrypted stream.
const FLIP: u8 = 0x20;
/// Control-byte bits: log2 of the largest chunk size (capped at 2^17, twice
/// the receive buffer, so back-pressure is exercised too).
const CHUNK_SHIFT_MASK: u8 = 0x1f;

/// Drives a fixed-key transport with `data`. The first byte chooses the mode
/// and the chunk sizes (see the constants of this module); the rest is fed in
/// pseudo-random chunks. Must never panic.
#[doc(hidden)]
pub fn fuzz_framing(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut chunks = Chunks::new(control);
    let mut receiver = Transport::from_keys(FUZZ_RK, FUZZ_SK, FUZZ_CK);
    if control & STRUCTURED == 0 {
        let mut got = Vec::new();
        if feed_all(&mut receiver, rest, &mut chunks, &mut got).is_err() {
            assert!(receiver.is_dead(), "a failed decoder must be dead");
            assert_eq!(receiver.feed(b"x"), Err(TransportError::Dead));
            assert_eq!(receiver.next_message(), Err(TransportError::Dead));
        }
        return;
    }

    let mut sender = Transport::from_keys(FUZZ_SK, FUZZ_RK, FUZZ_CK);
    let mut plaintexts = Vec::new();
    let mut wire = Vec::new();
    let mut rest = rest;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let msg = &rest[2..2 + len];
        sender
            .encrypt_message(msg, &mut wire)
            .expect("messages of at most 65535 bytes always encrypt");
        plaintexts.push(msg);
        rest = &rest[2 + len..];
    }
    let flipped = control & FLIP != 0 && !wire.is_empty();
    if flipped {
        let at = (usize::from(control) * 7919 + wire.len() * 31) % wire.len();
        wire[at] ^= 1 << (control % 8);
    }
    let mut got = Vec::new();
    let result = feed_all(&mut receiver, &wire, &mut chunks, &mut got);
    assert!(
        got.len() <= plaintexts.len(),
        "decoded more messages than sent"
    );
    for (g, p) in got.iter().zip(&plaintexts) {
        assert_eq!(g, p, "decoded message differs from the one sent");
    }
    if flipped {
        assert!(result.is_err(), "a flipped ciphertext bit must be detected");
        assert!(receiver.is_dead(), "a failed decoder must be dead");
    } else {
        assert_eq!(result, Ok(()), "an untouched stream must decode");
        assert_eq!(got.len(), plaintexts.len(), "every message must come out");
        assert_eq!(receiver.buffered(), 0, "nothing may be left over");
    }
}

/// Feeds `wire` in chunks, draining messages into `out` after every feed.
fn feed_all(
    t: &mut Transport,
    wire: &[u8],
    chunks: &mut Chunks,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), TransportError> {
    let mut rest = wire;
    while !rest.is_empty() {
        let n = chunks.next_len().min(rest.len());
        let (mut piece, tail) = rest.split_at(n);
        rest = tail;
        while !piece.is_empty() {
            let accepted = t.feed(piece)?;
            piece = &piece[accepted..];
            let before = out.len();
            while let Some(msg) = t.next_message()? {
                out.push(msg.to_vec());
            }
            assert!(
                accepted > 0 || out.len() > before,
                "feed refused bytes without a complete frame to drain"
            );
        }
    }
    Ok(())
}

/// A deterministic chunk-length sequence (xorshift) seeded by the control
/// byte.
struct Chunks {
    state: u32,
    max: usize,
}

impl Chunks {
    fn new(control: u8) -> Self {
        let shift = u32::from(control & CHUNK_SHIFT_MASK).min(17);
        Chunks {
            state: 0x9e37_79b9 ^ u32::from(control),
            max: 1usize << shift,
        }
    }

    fn next_len(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        1 + (x as usize) % self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke() {
        fuzz_framing(&[]);
        fuzz_framing(&[0]);
        fuzz_framing(&[
            0x05, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ]);
        for control in [0x40u8, 0x41, 0x4f, 0x51, 0x60, 0x63, 0x7f] {
            let mut data = vec![control];
            for len in [0usize, 1, 5, 300, 2000] {
                data.extend_from_slice(&(len as u16).to_be_bytes());
                data.extend((0..len).map(|i| i as u8));
            }
            fuzz_framing(&data);
        }
    }
}
