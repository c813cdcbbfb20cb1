//! `lnhub-channel`: one Lightning channel as a sans-IO state machine
//! (BOLT 2 "Channel Establishment v1", "Normal Operation" and "Message
//! Retransmission", "Closing Initiation: `shutdown`", "Closing
//! Negotiation: `closing_complete` and `closing_sig`" and "Legacy Closing
//! Negotiation: `closing_signed`"). Messages and commands go in, [`Effect`]s
//! come out; time and randomness are inputs; signatures are staged for the
//! engine's batch, never made or checked inside a transition.
//!
//! Layers, bottom up:
//! - [`htlc`]: the five-state progress of an update across the two
//!   commitments ([`UpdateState`]) and the rule saying which commitment an
//!   update is part of ([`View`], [`htlc::applies`]);
//! - [`book`]: balances, HTLCs, fee updates and commitment numbers, and the
//!   three transitions of the commitment dance;
//! - [`limits`] and [`updates`]: the BOLT 2 requirements on every update,
//!   from both ends;
//! - [`commit`]: `commitment_signed` / `revoke_and_ack` with real BOLT 3
//!   transactions from `lnhub-tx`, the stage / verify / apply split;
//! - [`effects`]: the [`Effect`]s and the durability gate
//!   ([`Effect::Persist`] / [`Channel::handle_persisted`]);
//! - [`channel`]: the [`Channel`] type and its call protocol;
//! - [`reestablish`]: disconnection and `channel_reestablish`;
//! - [`close`]: `shutdown` and the freeze on new HTLCs that follows it;
//! - [`closing`]: the `closing_signed` fee negotiation, the signed
//!   mutual close transaction and the staging both negotiations share;
//! - [`simple_close`]: `option_simple_close` (`closing_complete` /
//!   `closing_sig`);
//! - [`timeouts`]: HTLC deadlines against the block height (an input);
//! - [`snapshot`]: the versioned, checksummed record of a [`Channel`]
//!   ([`Channel::encode`] / [`Channel::decode`]) and the restart
//!   transition ([`Channel::handle_restart`]);
//! - [`channel_type`], [`open_checks`] and [`establish`]: establishment v1
//!   in both roles ([`Establishing`]), which ends in a [`Channel`];
//! - [`establish_snapshot`]: the record of a channel being opened
//!   ([`Establishing::encode`] / [`Establishing::decode`], a record kind
//!   of its own) and its restart ([`Establishing::handle_restart`]).
//!
//! Errors from peer input carry the action ([`ChannelError`]); local
//! commands that would break a rule are refused with a [`SendError`] and
//! change nothing.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod book;
pub mod channel;
pub mod channel_type;
pub mod close;
pub mod closing;
pub mod commit;
pub mod config;
pub mod effects;
pub mod error;
pub mod establish;
pub mod establish_snapshot;
#[doc(hidden)]
pub mod fuzz;
pub mod htlc;
pub mod limits;
pub mod open_checks;
pub mod reestablish;
pub mod router;
pub mod simple_close;
pub mod snapshot;
pub mod timeouts;
pub mod updates;

pub use channel::{Channel, Link};
pub use channel_type::NegotiatedType;
pub use close::{dust_threshold, is_valid_shutdown_script, ShutdownState, ShutdownTerms};
pub use closing::{
    ClosingState, Proposal, SignedClosing, StagedClosingSign, StagedClosingVerify, VerifiedClosing,
};
pub use commit::{verify_batch, SignedCommitment, StagedSign, StagedVerify, Verified};
pub use config::{
    ChannelPolicy, ChannelSecrets, EstablishConfig, FundedChannel, PeerContext, PeerParamLimits,
    SideLimits,
};
pub use effects::{Effect, Outbox};
pub use error::{ChannelError, SendError};
pub use establish::{EstablishState, Establishing, LocalKeys, OpenRequest};
pub use establish_snapshot::ESTABLISH_STATE_VERSION;
pub use htlc::{RemovalKind, UpdateState, View};
pub use router::Routed;
pub use simple_close::{CloseTerms, SigField, SimpleState};
pub use snapshot::{DecodeError, HtlcLookup, HtlcTerms, STATE_VERSION, STATIC_STATE_VERSION};
