//! The BOLT 8 handshake, `Noise_XK_secp256k1_ChaChaPoly_SHA256` with prologue
//! `lightning`, as three consuming state machines (one per waiting point).
//!
//! Implements BOLT 8 "Authenticated Key Exchange Handshake Specification":
//! "Handshake State Initialization" and Acts One, Two and Three, including
//! every receiver-side check (act length, version byte, public key encoding,
//! both MACs of act three). Time and randomness are the caller's: the
//! ephemeral key comes in as an argument (the spec requires it to be fresh and
//! strongly random for every session), and reading exactly 50/50/66 bytes off
//! the socket, with whatever timeout the shell chooses, is the caller's job.
//!
//! Call order:
//! * initiator: [`InitiatorHandshake::new`] gives act one to send; on reading
//!   act two, [`InitiatorHandshake::handle_act_two`] gives act three to send
//!   and the [`Transport`].
//! * responder: [`ResponderHandshake::new`]; on reading act one,
//!   [`ResponderHandshake::handle_act_one`] gives act two to send and a
//!   [`ResponderAwaitingActThree`]; on reading act three,
//!   [`ResponderAwaitingActThree::handle_act_three`] gives the [`Transport`]
//!   and the initiator's static public key (its node id).
//!
//! Every method consumes the state, so a failed handshake cannot be resumed:
//! on any [`HandshakeError`] the spec says to close the connection without
//! sending anything further.

use std::fmt;

use secp256k1::{PublicKey, SecretKey};

use crate::crypto::{self, Key, PUBKEY_LEN, TAG_LEN};
use crate::transport::Transport;

/// Act one is 50 bytes: version (1) + initiator ephemeral key (33) + MAC (16).
pub const ACT_ONE_LEN: usize = 1 + PUBKEY_LEN + TAG_LEN;

/// Act two is 50 bytes: version (1) + responder ephemeral key (33) + MAC (16).
pub const ACT_TWO_LEN: usize = 1 + PUBKEY_LEN + TAG_LEN;

/// Act three is 66 bytes: version (1) + encrypted initiator static key (33)
/// with its MAC (16) + final MAC (16).
pub const ACT_THREE_LEN: usize = 1 + PUBKEY_LEN + TAG_LEN + TAG_LEN;

/// The only handshake version BOLT 8 defines; any other leading byte is "an
/// unrecognized handshake version" and aborts the handshake.
pub const HANDSHAKE_VERSION: u8 = 0;

/// Noise protocol name; `SHA-256` of it is the initial `h` and `ck`.
const PROTOCOL_NAME: &[u8] = b"Noise_XK_secp256k1_ChaChaPoly_SHA256";

/// Noise prologue BOLT 8 mixes into `h` before any key.
const PROLOGUE: &[u8] = b"lightning";

/// Which of the three acts a [`HandshakeError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Act one (initiator -> responder, `e, es`).
    One,
    /// Act two (responder -> initiator, `e, ee`).
    Two,
    /// Act three (initiator -> responder, `s, se`).
    Three,
}

impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::One => f.write_str("act one"),
            Act::Two => f.write_str("act two"),
            Act::Three => f.write_str("act three"),
        }
    }
}

/// Why a received act was rejected. Every variant has the same action: close
/// the connection without sending anything more (BOLT 8 "MUST terminate the
/// connection without any further messages" / "MUST abort the connection
/// attempt").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The act did not have its exact length (the spec's `ACTn_READ_FAILED`).
    WrongLength {
        /// The act being read.
        act: Act,
        /// The length the spec requires.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The version byte was not [`HANDSHAKE_VERSION`] (`ACTn_BAD_VERSION`).
    BadVersion {
        /// The act being read.
        act: Act,
        /// The version byte received.
        version: u8,
    },
    /// A public key (an ephemeral key in acts one and two, the initiator's
    /// static key in act three) is not a valid compressed secp256k1 point
    /// (`ACTn_BAD_PUBKEY`).
    BadPubkey {
        /// The act being read.
        act: Act,
    },
    /// A zero-length payload's MAC did not verify: in act one, the initiator
    /// does not know our static key; otherwise the act was tampered with
    /// (`ACTn_BAD_TAG`).
    BadTag {
        /// The act being read.
        act: Act,
    },
    /// Act three's encrypted static key failed its MAC
    /// (`ACT3_BAD_CIPHERTEXT`).
    BadCiphertext,
}

impl HandshakeError {
    /// The act this error is about.
    pub fn act(&self) -> Act {
        match *self {
            HandshakeError::WrongLength { act, .. }
            | HandshakeError::BadVersion { act, .. }
            | HandshakeError::BadPubkey { act }
            | HandshakeError::BadTag { act } => act,
            HandshakeError::BadCiphertext => Act::Three,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::WrongLength {
                act,
                expected,
                actual,
            } => write!(f, "{act}: expected {expected} bytes, got {actual}"),
            HandshakeError::BadVersion { act, version } => {
                write!(f, "{act}: unknown handshake version {version}")
            }
            HandshakeError::BadPubkey { act } => write!(f, "{act}: invalid public key"),
            HandshakeError::BadTag { act } => write!(f, "{act}: MAC check failed"),
            HandshakeError::BadCiphertext => {
                f.write_str("act three: MAC check of the encrypted static key failed")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Converts a slice to a fixed-size act, or reports a wrong length.
fn exact<const N: usize>(act: Act, bytes: &[u8]) -> Result<&[u8; N], HandshakeError> {
    bytes.try_into().map_err(|_| HandshakeError::WrongLength {
        act,
        expected: N,
        actual: bytes.len(),
    })
}

/// The Noise symmetric state: chaining key `ck` and handshake hash `h`.
struct SymmetricState {
    ck: Key,
    h: Key,
}

impl SymmetricState {
    /// "Handshake State Initialization", ending with the responder's static
    /// key mixed into `h` (both sides mix the same key: the responder's).
    fn new(responder_static: &[u8; PUBKEY_LEN]) -> Self {
        let h = crypto::sha256(PROTOCOL_NAME);
        let ck = h;
        let h = crypto::sha256_concat(&h, PROLOGUE);
        let h = crypto::sha256_concat(&h, responder_static);
        SymmetricState { ck, h }
    }

    /// `h = SHA-256(h || data)`.
    fn mix_hash(&mut self, data: &[u8]) {
        self.h = crypto::sha256_concat(&self.h, data);
    }

    /// `ck, temp_k = HKDF(ck, ss)`; returns `temp_k`.
    fn mix_key(&mut self, ss: &Key) -> Key {
        let (ck, temp_k) = crypto::hkdf(&self.ck, ss);
        self.ck = ck;
        temp_k
    }

    /// `c = encryptWithAD(temp_k, n, h, zero)` for an empty payload: the tag.
    fn encrypt_empty(&self, temp_k: &Key, n: u64) -> [u8; TAG_LEN] {
        crypto::seal(&crypto::aead_key(temp_k), n, &self.h, &mut [])
    }

    /// `decryptWithAD(temp_k, n, h, c)` for an empty payload: the tag checks.
    fn decrypt_empty(&self, temp_k: &Key, n: u64, tag: &[u8]) -> bool {
        let mut buf = [0u8; TAG_LEN];
        buf.copy_from_slice(tag);
        crypto::open(&crypto::aead_key(temp_k), n, &self.h, &mut buf).is_some()
    }

    /// Final split: `k1, k2 = HKDF(ck, zero)`; also returns `ck` for rotation.
    fn split(&self) -> (Key, Key, Key) {
        let (k1, k2) = crypto::hkdf(&self.ck, &[]);
        (k1, k2, self.ck)
    }
}

/// Checks the version byte and parses the ephemeral key of act one or two,
/// then does the receiver steps shared by both: `h = SHA-256(h || re)`,
/// `ss = ECDH(local, re)`, `ck, temp_k = HKDF(ck, ss)`, MAC check on the
/// empty payload, `h = SHA-256(h || c)`. Returns `(re, temp_k)`.
fn receive_ephemeral(
    state: &mut SymmetricState,
    act: Act,
    msg: &[u8; ACT_ONE_LEN],
    local: &SecretKey,
) -> Result<(PublicKey, Key), HandshakeError> {
    if msg[0] != HANDSHAKE_VERSION {
        return Err(HandshakeError::BadVersion {
            act,
            version: msg[0],
        });
    }
    let re_bytes = &msg[1..1 + PUBKEY_LEN];
    let tag = &msg[1 + PUBKEY_LEN..];
    let re = parse_compressed(re_bytes).ok_or(HandshakeError::BadPubkey { act })?;
    state.mix_hash(re_bytes);
    let temp_k = state.mix_key(&crypto::ecdh(local, &re));
    if !state.decrypt_empty(&temp_k, 0, tag) {
        return Err(HandshakeError::BadTag { act });
    }
    state.mix_hash(tag);
    Ok((re, temp_k))
}

/// Sender steps shared by acts one and two: `e.pub` into `h`,
/// `ss = ECDH(e.priv, remote)` (`es` in act one, `ee` in act two),
/// `ck, temp_k = HKDF(ck, ss)`, the empty payload sealed under `temp_k` and
/// mixed into `h`. Returns the 50-byte act and `temp_k`.
fn send_ephemeral(
    state: &mut SymmetricState,
    ephemeral: &SecretKey,
    remote: &PublicKey,
) -> ([u8; ACT_ONE_LEN], Key) {
    let e_pub = crypto::public_key_bytes(ephemeral);
    state.mix_hash(&e_pub);
    let temp_k = state.mix_key(&crypto::ecdh(ephemeral, remote));
    let tag = state.encrypt_empty(&temp_k, 0);
    state.mix_hash(&tag);
    let mut act = [0u8; ACT_ONE_LEN];
    act[0] = HANDSHAKE_VERSION;
    act[1..1 + PUBKEY_LEN].copy_from_slice(&e_pub);
    act[1 + PUBKEY_LEN..].copy_from_slice(&tag);
    (act, temp_k)
}

/// Parses a 33-byte compressed public key; rejects any other encoding (the
/// spec only ever sends compressed keys, so a 65-byte form cannot appear in a
/// fixed 33-byte field, and prefix bytes other than 2/3 are invalid).
fn parse_compressed(bytes: &[u8]) -> Option<PublicKey> {
    if bytes.len() != PUBKEY_LEN || (bytes[0] != 0x02 && bytes[0] != 0x03) {
        return None;
    }
    PublicKey::from_slice(bytes).ok()
}

/// The initiator after sending act one, waiting for act two.
///
/// Created by [`InitiatorHandshake::new`], which also returns act one; finish
/// with [`InitiatorHandshake::handle_act_two`].
pub struct InitiatorHandshake {
    state: SymmetricState,
    local_static: SecretKey,
    ephemeral: SecretKey,
}

impl fmt::Debug for InitiatorHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorHandshake").finish_non_exhaustive()
    }
}

impl InitiatorHandshake {
    /// Starts a handshake to the node whose static key (node id) is
    /// `remote_static`, with our node key `local_static` and a fresh
    /// `ephemeral` key (the caller MUST draw it from strong randomness for
    /// every connection). Returns the state and act one, to be sent as is.
    pub fn new(
        local_static: &SecretKey,
        remote_static: &PublicKey,
        ephemeral: &SecretKey,
    ) -> (InitiatorHandshake, [u8; ACT_ONE_LEN]) {
        let mut state = SymmetricState::new(&remote_static.serialize());
        // Act one, sender: e, es.
        let (act, _temp_k1) = send_ephemeral(&mut state, ephemeral, remote_static);
        let hs = InitiatorHandshake {
            state,
            local_static: *local_static,
            ephemeral: *ephemeral,
        };
        (hs, act)
    }

    /// Processes act two (exactly [`ACT_TWO_LEN`] bytes from the responder)
    /// and returns act three, to be sent as is, and the ready [`Transport`].
    pub fn handle_act_two(
        self,
        act: &[u8; ACT_TWO_LEN],
    ) -> Result<([u8; ACT_THREE_LEN], Transport), HandshakeError> {
        let mut state = self.state;
        // Act two, receiver: e, ee.
        let (re, temp_k2) = receive_ephemeral(&mut state, Act::Two, act, &self.ephemeral)?;

        // Act three, sender: s, se.
        let mut out = [0u8; ACT_THREE_LEN];
        out[0] = HANDSHAKE_VERSION;
        let c = &mut out[1..1 + PUBKEY_LEN + TAG_LEN];
        c[..PUBKEY_LEN].copy_from_slice(&crypto::public_key_bytes(&self.local_static));
        let tag = crypto::seal(
            &crypto::aead_key(&temp_k2),
            1,
            &state.h,
            &mut c[..PUBKEY_LEN],
        );
        c[PUBKEY_LEN..].copy_from_slice(&tag);
        state.mix_hash(&out[1..1 + PUBKEY_LEN + TAG_LEN]);
        let temp_k3 = state.mix_key(&crypto::ecdh(&self.local_static, &re));
        let t = state.encrypt_empty(&temp_k3, 0);
        out[1 + PUBKEY_LEN + TAG_LEN..].copy_from_slice(&t);
        // sk, rk = HKDF(ck, zero): the initiator sends with the first half.
        let (sk, rk, ck) = state.split();
        Ok((out, Transport::new(sk, rk, ck)))
    }

    /// [`InitiatorHandshake::handle_act_two`] for a slice of unchecked length,
    /// for a shell that reads into a larger buffer: a length other than
    /// [`ACT_TWO_LEN`] is [`HandshakeError::WrongLength`].
    pub fn handle_act_two_slice(
        self,
        act: &[u8],
    ) -> Result<([u8; ACT_THREE_LEN], Transport), HandshakeError> {
        self.handle_act_two(exact(Act::Two, act)?)
    }
}

/// The responder before act one arrives.
///
/// Created by [`ResponderHandshake::new`]; continue with
/// [`ResponderHandshake::handle_act_one`].
pub struct ResponderHandshake {
    state: SymmetricState,
    local_static: SecretKey,
    ephemeral: SecretKey,
}

impl fmt::Debug for ResponderHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderHandshake").finish_non_exhaustive()
    }
}

impl ResponderHandshake {
    /// Prepares to answer an incoming connection with our node key
    /// `local_static` and a fresh `ephemeral` key (the caller MUST draw it
    /// from strong randomness for every connection).
    pub fn new(local_static: &SecretKey, ephemeral: &SecretKey) -> ResponderHandshake {
        let state = SymmetricState::new(&crypto::public_key_bytes(local_static));
        ResponderHandshake {
            state,
            local_static: *local_static,
            ephemeral: *ephemeral,
        }
    }

    /// Processes act one (exactly [`ACT_ONE_LEN`] bytes from the initiator)
    /// and returns the next state and act two, to be sent as is.
    pub fn handle_act_one(
        self,
        act: &[u8; ACT_ONE_LEN],
    ) -> Result<(ResponderAwaitingActThree, [u8; ACT_TWO_LEN]), HandshakeError> {
        let mut state = self.state;
        // Act one, receiver: e, es.
        let (re, _temp_k1) = receive_ephemeral(&mut state, Act::One, act, &self.local_static)?;
        // Act two, sender: e, ee.
        let (out, temp_k2) = send_ephemeral(&mut state, &self.ephemeral, &re);
        let next = ResponderAwaitingActThree {
            state,
            ephemeral: self.ephemeral,
            temp_k2,
        };
        Ok((next, out))
    }

    /// [`ResponderHandshake::handle_act_one`] for a slice of unchecked
    /// length: a length other than [`ACT_ONE_LEN`] is
    /// [`HandshakeError::WrongLength`].
    pub fn handle_act_one_slice(
        self,
        act: &[u8],
    ) -> Result<(ResponderAwaitingActThree, [u8; ACT_TWO_LEN]), HandshakeError> {
        self.handle_act_one(exact(Act::One, act)?)
    }
}

/// The responder after sending act two, waiting for act three.
pub struct ResponderAwaitingActThree {
    state: SymmetricState,
    ephemeral: SecretKey,
    temp_k2: Key,
}

impl fmt::Debug for ResponderAwaitingActThree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderAwaitingActThree")
            .finish_non_exhaustive()
    }
}

impl ResponderAwaitingActThree {
    /// Processes act three (exactly [`ACT_THREE_LEN`] bytes) and returns the
    /// ready [`Transport`] and the initiator's static public key (its node
    /// id, now authenticated).
    pub fn handle_act_three(
        self,
        act: &[u8; ACT_THREE_LEN],
    ) -> Result<(Transport, PublicKey), HandshakeError> {
        let mut state = self.state;
        if act[0] != HANDSHAKE_VERSION {
            return Err(HandshakeError::BadVersion {
                act: Act::Three,
                version: act[0],
            });
        }
        let c = &act[1..1 + PUBKEY_LEN + TAG_LEN];
        let t = &act[1 + PUBKEY_LEN + TAG_LEN..];
        // rs = decryptWithAD(temp_k2, 1, h, c)
        let mut rs_bytes = [0u8; PUBKEY_LEN + TAG_LEN];
        rs_bytes.copy_from_slice(c);
        if crypto::open(&crypto::aead_key(&self.temp_k2), 1, &state.h, &mut rs_bytes).is_none() {
            return Err(HandshakeError::BadCiphertext);
        }
        let rs = parse_compressed(&rs_bytes[..PUBKEY_LEN])
            .ok_or(HandshakeError::BadPubkey { act: Act::Three })?;
        state.mix_hash(c);
        let temp_k3 = state.mix_key(&crypto::ecdh(&self.ephemeral, &rs));
        if !state.decrypt_empty(&temp_k3, 0, t) {
            return Err(HandshakeError::BadTag { act: Act::Three });
        }
        // rk, sk = HKDF(ck, zero): the responder receives with the first half.
        let (rk, sk, ck) = state.split();
        Ok((Transport::new(sk, rk, ck), rs))
    }

    /// [`ResponderAwaitingActThree::handle_act_three`] for a slice of
    /// unchecked length: a length other than [`ACT_THREE_LEN`] is
    /// [`HandshakeError::WrongLength`].
    pub fn handle_act_three_slice(
        self,
        act: &[u8],
    ) -> Result<(Transport, PublicKey), HandshakeError> {
        self.handle_act_three(exact(Act::Three, act)?)
    }
}
