//! BOLT 8 for lnhub: the `Noise_XK_secp256k1_ChaChaPoly_SHA256` handshake and
//! the encrypted, length-framed, key-rotating transport that follows it.
//!
//! This crate is pure (sans-IO): no sockets, clocks, threads or randomness of
//! its own. The caller supplies the ephemeral keys (fresh and strongly random
//! per connection, as BOLT 8 requires), reads exactly
//! [`ACT_ONE_LEN`]/[`ACT_TWO_LEN`]/[`ACT_THREE_LEN`] bytes per act with its own
//! timeouts, writes what the state machines return, and owns the send buffer.
//!
//! * [`handshake`]: BOLT 8 "Authenticated Key Exchange Handshake
//!   Specification", acts one to three, both roles, every receiver check.
//! * [`transport`]: BOLT 8 "Lightning Message Specification" and "Lightning
//!   Message Key Rotation": in-place encryption into a caller buffer and a
//!   bounded push-style frame decoder.
//!
//! Spec vectors (BOLT 8 Appendix A) are in `tests/bolt08_vectors.rs`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod crypto;
mod fuzz;
pub mod handshake;
pub mod transport;

#[doc(hidden)]
pub use fuzz::fuzz_framing;
pub use handshake::{
    Act, HandshakeError, InitiatorHandshake, ResponderAwaitingActThree, ResponderHandshake,
    ACT_ONE_LEN, ACT_THREE_LEN, ACT_TWO_LEN, HANDSHAKE_VERSION,
};
pub use transport::{
    Decryptor, Encryptor, ErrorAction, Transport, TransportError, FRAME_OVERHEAD,
    KEY_ROTATION_INTERVAL, LENGTH_HEADER_LEN, MAX_FRAME_LEN, MAX_MESSAGE_LEN, RECEIVE_BUFFER_LEN,
};
