//! `lnhub-onion`: BOLT 4 onion routing for a forwarding hub, pure and sans-IO.
//!
//! - [`peel`] / [`batch`]: peel one layer (or a batch on rayon) into
//!   caller-owned buffers, with every malformed case mapped to its BOLT 4
//!   response ([`peel::OnionFailure`]).
//! - [`payload`]: the hop payload TLV stream.
//! - [`blinding`]: route blinding, forwarding side (and path creation).
//! - [`build`]: onion construction with filler, for the origin.
//! - [`failure`] and [`error_packet`]: failure messages and the encrypted
//!   return path (create, obfuscate, decode at the origin, malformed
//!   conversion).
//! - [`replay`]: a bounded replay set keyed by shared secret.
//!
//! No I/O, clocks or randomness: session keys, chain heights and the
//! `Secp256k1` context come from the caller. Attribution data (BOLT 4
//! `option_attribution_data`) and onion messages are not implemented.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod batch;
pub mod blinding;
pub mod build;
pub mod crypto;
pub mod error_packet;
pub mod failure;
mod fuzz;
pub mod packet;
pub mod payload;
pub mod peel;
pub mod replay;

pub use batch::{peel_batch, PeelInput, PeelSlot};
pub use build::{build_onion, BuildError, RouteHop};
pub use error_packet::{
    create_error_packet, decode_error_packet, malformed_to_error_packet, obfuscate_error_packet,
    DecodedFailure, ErrorPacketError, MalformedError,
};
pub use failure::{Failure, FailureMessage};
#[doc(hidden)]
pub use fuzz::fuzz_peel;
pub use packet::{sha256_of_onion, OnionPacket, ONION_PACKET_LEN};
pub use payload::{HopPayload, PayloadFields};
pub use peel::{peel, HopAction, OnionFailure, PeelError, PeeledHop};
pub use replay::{ReplayConfig, ReplayError, ReplaySet};
