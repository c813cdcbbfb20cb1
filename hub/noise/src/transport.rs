//! The BOLT 8 encrypted transport: framing, in-place encryption and
//! decryption, and key rotation, after a successful handshake.
//!
//! Implements BOLT 8 "Lightning Message Specification" (encrypted 2-byte
//! length + MAC, then encrypted body + MAC), "Encrypting and Sending
//! Messages", "Receiving and Decrypting Messages" and "Lightning Message Key
//! Rotation". Sockets are the caller's: [`Encryptor::encrypt_message`] appends
//! wire bytes to a buffer the caller owns and reuses, and [`Decryptor::feed`]
//! takes bytes however the socket delivered them.
//!
//! Receive call protocol (the same on [`Transport`] and [`Decryptor`]):
//!
//! ```text
//! let mut rest = &bytes_read_from_socket[..];
//! while !rest.is_empty() {
//!     let accepted = transport.feed(rest)?;   // may accept fewer bytes
//!     rest = &rest[accepted..];
//!     while let Some(msg) = transport.next_message()? {
//!         handle(msg);                         // msg borrows the transport
//!     }
//! }
//! ```
//!
//! Bound: the decoder holds at most [`RECEIVE_BUFFER_LEN`] bytes, one
//! maximum-size frame. `feed` accepts only what fits and returns how many
//! bytes it took; the caller keeps the rest (back-pressure). If `feed`
//! accepts fewer bytes than offered, a complete frame is buffered, so the next
//! `next_message` returns a message (or an error): draining with
//! `next_message` until `Ok(None)` always makes room, and the loop above
//! always progresses. The buffer is allocated once, when the transport is
//! created; nothing is allocated per message.
//!
//! Any MAC failure kills the receiving side: that call and every later
//! `feed`/`next_message` (and, on a [`Transport`], `encrypt_message`) return
//! an error whose [`TransportError::action`] is to disconnect.

use std::fmt;

use ring::aead::LessSafeKey;

use crate::crypto::{self, Key, TAG_LEN};

/// BOLT 8: "The *maximum* size of _any_ Lightning message MUST NOT exceed
/// `65535` bytes" (the largest value of the 2-byte length prefix).
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// The encrypted length prefix: 2-byte big-endian length + its 16-byte MAC.
pub const LENGTH_HEADER_LEN: usize = 2 + TAG_LEN;

/// Per-message overhead on the wire: the length header plus the body's MAC.
pub const FRAME_OVERHEAD: usize = LENGTH_HEADER_LEN + TAG_LEN;

/// The largest frame on the wire, `2 + 16 + 65535 + 16 = 65569` bytes (BOLT 8).
pub const MAX_FRAME_LEN: usize = FRAME_OVERHEAD + MAX_MESSAGE_LEN;

/// Capacity of a [`Decryptor`]'s receive buffer: exactly one maximum frame,
/// the least that can always hold a complete frame (so decryption can be done
/// in place on a contiguous slice) and the most a peer can make us hold.
/// Costs 64 KiB per connection, allocated once at the end of the handshake.
pub const RECEIVE_BUFFER_LEN: usize = MAX_FRAME_LEN;

/// BOLT 8 "Lightning Message Key Rotation": a key is rotated once its nonce
/// reaches 1000, i.e. after 1000 encryptions (500 messages, each a length
/// prefix and a body).
pub const KEY_ROTATION_INTERVAL: u64 = 1000;

/// What the caller should do about a [`TransportError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorAction {
    /// The peer sent something that failed authentication (or the transport
    /// already died): close the connection, send nothing more.
    DisconnectPeer,
    /// Our own caller asked for something impossible; nothing was sent and
    /// the transport is still usable.
    RejectCall,
}

/// A transport error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// `encrypt_message` was given more than [`MAX_MESSAGE_LEN`] bytes.
    MessageTooLong {
        /// The length the caller passed.
        len: usize,
    },
    /// The MAC of a received length prefix did not verify.
    BadLengthTag,
    /// The MAC of a received message body did not verify.
    BadMessageTag,
    /// The receiving side failed earlier; it accepts no further calls.
    Dead,
}

impl TransportError {
    /// What to do about this error.
    pub fn action(&self) -> ErrorAction {
        match self {
            TransportError::MessageTooLong { .. } => ErrorAction::RejectCall,
            TransportError::BadLengthTag | TransportError::BadMessageTag | TransportError::Dead => {
                ErrorAction::DisconnectPeer
            }
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::MessageTooLong { len } => {
                write!(f, "message of {len} bytes exceeds {MAX_MESSAGE_LEN}")
            }
            TransportError::BadLengthTag => f.write_str("length prefix MAC check failed"),
            TransportError::BadMessageTag => f.write_str("message MAC check failed"),
            TransportError::Dead => f.write_str("transport failed earlier and is closed"),
        }
    }
}

impl std::error::Error for TransportError {}

/// One direction's key, nonce and chaining key (`sk, sn, sck` or
/// `rk, rn, rck`), with rotation.
struct CipherState {
    key: Key,
    aead: LessSafeKey,
    ck: Key,
    nonce: u64,
}

impl CipherState {
    fn new(key: Key, ck: Key) -> Self {
        CipherState {
            aead: crypto::aead_key(&key),
            key,
            ck,
            nonce: 0,
        }
    }

    /// Encrypts `in_out` in place under the current nonce; returns the tag.
    fn seal(&mut self, in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = crypto::seal(&self.aead, self.nonce, &[], in_out);
        self.advance();
        tag
    }

    /// Decrypts ciphertext||tag in place; `false` if the MAC failed.
    fn open(&mut self, in_out: &mut [u8]) -> bool {
        let ok = crypto::open(&self.aead, self.nonce, &[], in_out).is_some();
        self.advance();
        ok
    }

    /// Increments the nonce; at [`KEY_ROTATION_INTERVAL`],
    /// `ck', k' = HKDF(ck, k)` and the nonce restarts at 0.
    fn advance(&mut self) {
        self.nonce += 1;
        if self.nonce == KEY_ROTATION_INTERVAL {
            let (ck, key) = crypto::hkdf(&self.ck, &self.key);
            self.ck = ck;
            self.key = key;
            self.aead = crypto::aead_key(&key);
            self.nonce = 0;
        }
        assert!(
            self.nonce < KEY_ROTATION_INTERVAL,
            "invariant: a nonce never reaches the rotation interval without rotating"
        );
    }
}

/// The sending half of a [`Transport`].
pub struct Encryptor {
    cipher: CipherState,
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("nonce", &self.cipher.nonce)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// Encrypts one Lightning message and appends its frame (18-byte
    /// encrypted length header, then the encrypted body and its 16-byte MAC:
    /// `msg.len() + FRAME_OVERHEAD` bytes) to `out`. Encrypts in place in
    /// `out`, so a reused `out` means no allocation.
    ///
    /// A message over [`MAX_MESSAGE_LEN`] bytes is
    /// [`TransportError::MessageTooLong`]; `out` and the nonce are untouched.
    pub fn encrypt_message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<(), TransportError> {
        let len = u16::try_from(msg.len())
            .map_err(|_| TransportError::MessageTooLong { len: msg.len() })?;
        out.reserve(msg.len() + FRAME_OVERHEAD);
        let header_start = out.len();
        out.extend_from_slice(&len.to_be_bytes());
        let tag = self.cipher.seal(&mut out[header_start..]);
        out.extend_from_slice(&tag);
        let body_start = out.len();
        out.extend_from_slice(msg);
        let tag = self.cipher.seal(&mut out[body_start..]);
        out.extend_from_slice(&tag);
        Ok(())
    }
}

/// The receiving half of a [`Transport`]: a push-style frame decoder that
/// decrypts in place. See the module docs for the call protocol and bound.
pub struct Decryptor {
    cipher: CipherState,
    /// Received bytes; `buf[start..]` is not yet consumed. Its length never
    /// exceeds [`RECEIVE_BUFFER_LEN`] (its capacity, reserved at creation).
    buf: Vec<u8>,
    /// Start of the first unconsumed frame in `buf`.
    start: usize,
    /// Body length of the frame at `start`, once its header is decrypted.
    pending_len: Option<usize>,
    /// Set by the first MAC failure; from then on every call fails.
    dead: bool,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("nonce", &self.cipher.nonce)
            .field("buffered", &self.buffered())
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    fn new(cipher: CipherState) -> Self {
        Decryptor {
            cipher,
            buf: Vec::with_capacity(RECEIVE_BUFFER_LEN),
            start: 0,
            pending_len: None,
            dead: false,
        }
    }

    /// Bytes held and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether a MAC failure has closed this side.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Takes received bytes, split anywhere. Returns how many bytes of
    /// `data` were accepted: all of them unless the buffer would exceed
    /// [`RECEIVE_BUFFER_LEN`]. In that case a complete frame is buffered:
    /// drain [`Decryptor::next_message`] until `Ok(None)`, then offer the
    /// rest again. Fails only with [`TransportError::Dead`].
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, TransportError> {
        if self.dead {
            return Err(TransportError::Dead);
        }
        let held = self.buffered();
        if held == 0 {
            self.buf.clear();
            self.start = 0;
        }
        let accepted = data.len().min(RECEIVE_BUFFER_LEN - held);
        if self.buf.len() + accepted > RECEIVE_BUFFER_LEN {
            // Move the partial frame to the front; at most one frame.
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(held);
            self.start = 0;
        }
        self.buf.extend_from_slice(&data[..accepted]);
        assert!(
            self.buf.len() <= RECEIVE_BUFFER_LEN,
            "invariant: the receive buffer never grows past one maximum frame"
        );
        Ok(accepted)
    }

    /// Decrypts the next complete message in place and returns it, or
    /// `Ok(None)` if more bytes are needed. The slice is valid until the next
    /// call on this decoder. A MAC failure kills the decoder.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, TransportError> {
        if self.dead {
            return Err(TransportError::Dead);
        }
        let held = self.buffered();
        let body_len = match self.pending_len {
            Some(len) => len,
            None => {
                if held < LENGTH_HEADER_LEN {
                    return Ok(None);
                }
                let header = &mut self.buf[self.start..self.start + LENGTH_HEADER_LEN];
                if !self.cipher.open(header) {
                    self.dead = true;
                    return Err(TransportError::BadLengthTag);
                }
                let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
                self.pending_len = Some(len);
                len
            }
        };
        let frame_len = body_len + FRAME_OVERHEAD;
        if held < frame_len {
            return Ok(None);
        }
        let body_start = self.start + LENGTH_HEADER_LEN;
        let frame_end = self.start + frame_len;
        if !self.cipher.open(&mut self.buf[body_start..frame_end]) {
            self.dead = true;
            return Err(TransportError::BadMessageTag);
        }
        self.start = frame_end;
        self.pending_len = None;
        Ok(Some(&self.buf[body_start..body_start + body_len]))
    }
}

/// An established BOLT 8 session: an [`Encryptor`] for what we send and a
/// [`Decryptor`] for what we receive. Produced by the handshake.
///
/// Call protocol: [`Transport::encrypt_message`] any time to send;
/// [`Transport::feed`] then [`Transport::next_message`] until `Ok(None)` to
/// receive (see the module docs). [`Transport::into_split`] gives the halves
/// to a shell that sends and receives in different places.
pub struct Transport {
    encryptor: Encryptor,
    decryptor: Decryptor,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("encryptor", &self.encryptor)
            .field("decryptor", &self.decryptor)
            .finish()
    }
}

impl Transport {
    /// A transport sending with `sk`, receiving with `rk`, both chaining keys
    /// starting at the handshake's final `ck`, nonces at 0.
    pub(crate) fn new(sk: Key, rk: Key, ck: Key) -> Self {
        Transport {
            encryptor: Encryptor {
                cipher: CipherState::new(sk, ck),
            },
            decryptor: Decryptor::new(CipherState::new(rk, ck)),
        }
    }

    /// Test and fuzz hook: a transport from raw session keys, as if a
    /// handshake had ended with these keys. Not for production use.
    #[doc(hidden)]
    pub fn from_keys(sk: [u8; 32], rk: [u8; 32], ck: [u8; 32]) -> Self {
        Transport::new(sk, rk, ck)
    }

    /// Test hook: the current `(sk, rk, sck, rck)`, to check them against
    /// spec vectors. Not for production use.
    #[doc(hidden)]
    pub fn keys_for_tests(&self) -> ([u8; 32], [u8; 32], [u8; 32], [u8; 32]) {
        (
            self.encryptor.cipher.key,
            self.decryptor.cipher.key,
            self.encryptor.cipher.ck,
            self.decryptor.cipher.ck,
        )
    }

    /// Encrypts `msg` and appends its frame to `out`; see
    /// [`Encryptor::encrypt_message`]. Fails with [`TransportError::Dead`]
    /// once the receiving side has failed (the connection is to be closed).
    pub fn encrypt_message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<(), TransportError> {
        if self.decryptor.dead {
            return Err(TransportError::Dead);
        }
        self.encryptor.encrypt_message(msg, out)
    }

    /// Takes received bytes; see [`Decryptor::feed`].
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, TransportError> {
        self.decryptor.feed(data)
    }

    /// The next decrypted message; see [`Decryptor::next_message`].
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, TransportError> {
        self.decryptor.next_message()
    }

    /// Bytes received and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.decryptor.buffered()
    }

    /// Whether a MAC failure has closed the transport.
    pub fn is_dead(&self) -> bool {
        self.decryptor.dead
    }

    /// Splits into independent halves. After the split, a receive failure
    /// kills only the [`Decryptor`]; the shell must stop using the
    /// [`Encryptor`] itself when it closes the connection.
    pub fn into_split(self) -> (Encryptor, Decryptor) {
        (self.encryptor, self.decryptor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Transport, Transport) {
        let (a, b, ck) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        (Transport::new(a, b, ck), Transport::new(b, a, ck))
    }

    #[test]
    fn too_long_message_is_rejected_without_side_effects() {
        let (mut alice, mut bob) = pair();
        let mut out = vec![0xaa];
        let err = alice
            .encrypt_message(&vec![0u8; MAX_MESSAGE_LEN + 1], &mut out)
            .unwrap_err();
        assert_eq!(err, TransportError::MessageTooLong { len: 65536 });
        assert_eq!(err.action(), ErrorAction::RejectCall);
        assert_eq!(out, [0xaa]);
        // The nonce did not move: the next message still decodes.
        out.clear();
        alice.encrypt_message(b"hi", &mut out).unwrap();
        bob.feed(&out).unwrap();
        assert_eq!(bob.next_message(), Ok(Some(&b"hi"[..])));
    }

    #[test]
    fn empty_and_maximum_messages_round_trip() {
        let (mut alice, mut bob) = pair();
        let big: Vec<u8> = (0..MAX_MESSAGE_LEN).map(|i| i as u8).collect();
        let mut out = Vec::new();
        alice.encrypt_message(&[], &mut out).unwrap();
        assert_eq!(out.len(), FRAME_OVERHEAD);
        alice.encrypt_message(&big, &mut out).unwrap();
        assert_eq!(out.len(), FRAME_OVERHEAD + MAX_FRAME_LEN);
        let mut rest = &out[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let n = bob.feed(rest).unwrap();
            rest = &rest[n..];
            while let Some(m) = bob.next_message().unwrap() {
                got.push(m.to_vec());
            }
        }
        assert_eq!(got, vec![Vec::new(), big]);
        assert_eq!(bob.buffered(), 0);
    }

    #[test]
    fn feed_applies_back_pressure_at_one_frame() {
        let (mut alice, mut bob) = pair();
        let big = vec![7u8; MAX_MESSAGE_LEN];
        let mut out = Vec::new();
        alice.encrypt_message(&big, &mut out).unwrap();
        alice.encrypt_message(&big, &mut out).unwrap();
        assert_eq!(bob.feed(&out), Ok(RECEIVE_BUFFER_LEN));
        assert_eq!(bob.feed(&out[RECEIVE_BUFFER_LEN..]), Ok(0));
        assert_eq!(
            bob.next_message().unwrap().map(<[u8]>::len),
            Some(MAX_MESSAGE_LEN)
        );
        assert_eq!(bob.next_message(), Ok(None));
        assert_eq!(bob.feed(&out[RECEIVE_BUFFER_LEN..]), Ok(MAX_FRAME_LEN));
        assert_eq!(
            bob.next_message().unwrap().map(<[u8]>::len),
            Some(MAX_MESSAGE_LEN)
        );
        assert_eq!(bob.buffered(), 0);
        assert!(bob.decryptor.buf.capacity() <= RECEIVE_BUFFER_LEN + 64);
    }

    #[test]
    fn failure_kills_the_transport() {
        let (_, mut bob) = pair();
        assert_eq!(bob.feed(&[0u8; LENGTH_HEADER_LEN]), Ok(LENGTH_HEADER_LEN));
        let err = bob.next_message().unwrap_err();
        assert_eq!(err, TransportError::BadLengthTag);
        assert_eq!(err.action(), ErrorAction::DisconnectPeer);
        assert!(bob.is_dead());
        assert_eq!(bob.feed(b"x"), Err(TransportError::Dead));
        assert_eq!(bob.next_message(), Err(TransportError::Dead));
        assert_eq!(
            bob.encrypt_message(b"x", &mut Vec::new()),
            Err(TransportError::Dead)
        );
    }

    #[test]
    fn bad_body_tag_is_reported_as_such() {
        let (mut alice, mut bob) = pair();
        let mut out = Vec::new();
        alice.encrypt_message(b"hello", &mut out).unwrap();
        let last = out.len() - 1;
        out[last] ^= 0x80;
        bob.feed(&out).unwrap();
        assert_eq!(bob.next_message(), Err(TransportError::BadMessageTag));
    }

    #[test]
    fn split_halves_work_independently() {
        let (alice, bob) = pair();
        let (mut alice_tx, mut alice_rx) = alice.into_split();
        let (mut bob_tx, mut bob_rx) = bob.into_split();
        let mut out = Vec::new();
        alice_tx.encrypt_message(b"ping", &mut out).unwrap();
        bob_rx.feed(&out).unwrap();
        assert_eq!(bob_rx.next_message(), Ok(Some(&b"ping"[..])));
        out.clear();
        bob_tx.encrypt_message(b"pong", &mut out).unwrap();
        alice_rx.feed(&out).unwrap();
        assert_eq!(alice_rx.next_message(), Ok(Some(&b"pong"[..])));
    }

    /// Both directions rotate independently and stay in step across many
    /// rotations, with the length prefix and body each using a nonce.
    #[test]
    fn rotation_keeps_both_sides_in_step() {
        let (mut alice, mut bob) = pair();
        let mut out = Vec::new();
        for i in 0..2_600u32 {
            out.clear();
            alice.encrypt_message(&i.to_be_bytes(), &mut out).unwrap();
            bob.feed(&out).unwrap();
            assert_eq!(bob.next_message(), Ok(Some(&i.to_be_bytes()[..])));
        }
        assert_eq!(
            alice.encryptor.cipher.nonce,
            2 * 2_600 % KEY_ROTATION_INTERVAL
        );
        assert_eq!(alice.encryptor.cipher.key, bob.decryptor.cipher.key);
        assert_eq!(alice.encryptor.cipher.ck, bob.decryptor.cipher.ck);
    }
}
