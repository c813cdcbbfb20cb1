//! `lnhub-wire`: the Lightning wire codec, byte-exact to BOLT 1 ("Lightning
//! Message Format", "Fundamental Types", "Type-Length-Value Format") and
//! BOLT 9 (feature bits), with the BOLT 2 and BOLT 7 messages a routing hub
//! exchanges.
//!
//! Pure and sans-IO: it turns byte slices into values and values into bytes
//! appended to a caller-owned buffer. It never touches sockets, clocks or
//! randomness, never panics on a peer's bytes and never allocates more than
//! the bytes actually present. Acting on a [`DecodeError`] (warn, close,
//! fail the channel) is the caller's job.
//!
//! Layers, bottom up: [`bigsize`] and [`reader`] (fundamental types),
//! [`tlv`] (TLV streams and truncated integers), [`types`] (newtypes for
//! ids and amounts), [`features`] (BOLT 9 bits and negotiation), [`msgs`]
//! (every message and the [`Message`] enum).
//!
//! ```
//! use lnhub_wire::msgs::Ping;
//! use lnhub_wire::Message;
//!
//! let mut buf = Vec::new(); // owned by the caller, reused across messages
//! let ping = Message::Ping(Ping { num_pong_bytes: 4, ignored: vec![], unknown_tlvs: vec![] });
//! ping.encode(&mut buf);
//! assert_eq!(buf, [0, 18, 0, 4, 0, 0]);
//! assert_eq!(Message::decode(&buf), Ok(ping));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bigsize;
pub mod error;
pub mod features;
pub mod msgs;
pub mod reader;
pub mod tlv;
pub mod types;

pub use error::DecodeError;
pub use msgs::{fuzz_decode, is_channel_message, Message};
pub use reader::Reader;
