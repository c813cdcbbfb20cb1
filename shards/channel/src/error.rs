//! Errors that carry the action to take (STYLE rule 5, BOLT 1 "The `error`
//! and `warning` Messages").
//!
//! A peer message that breaks a BOLT 2 rule is answered by one of four
//! actions; the variant *is* the decision, so the engine never has to guess:
//! it sends the `warning`/`error` message, fails the channel or drops the
//! connection as told. Misuse of the local API (an HTLC we may not send
//! right now) is a different type, [`SendError`], that never touches the
//! peer.

use core::fmt;

/// What to do about a peer message the channel refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// Drop the message and carry on (e.g. a retransmission BOLT 2 says to
    /// ignore).
    Ignore(String),
    /// Send a `warning` with this text and close the connection; the
    /// channel survives and is resumed with `channel_reestablish`.
    Warn(String),
    /// Send an `error` with this text and fail the channel: broadcast our
    /// latest commitment. The channel accepts no further input.
    Close(String),
    /// The peer proved it holds a newer state than ours (we lost data):
    /// send an `error` with this text asking the peer to close, and never
    /// broadcast our own (revoked) commitment.
    FallenBehind(String),
    /// Close the connection without a message.
    Disconnect,
}

impl ChannelError {
    /// Shorthand for [`ChannelError::Close`].
    pub(crate) fn close(msg: impl Into<String>) -> Self {
        ChannelError::Close(msg.into())
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Ignore(m) => write!(f, "ignore: {m}"),
            ChannelError::Warn(m) => write!(f, "warn and disconnect: {m}"),
            ChannelError::Close(m) => write!(f, "fail the channel: {m}"),
            ChannelError::FallenBehind(m) => write!(f, "we lost state, do not broadcast: {m}"),
            ChannelError::Disconnect => f.write_str("disconnect"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Why the channel refused a local command (send an HTLC, a removal, a fee
/// change). Nothing was sent and the channel is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The channel is not in a state that accepts this command (failed,
    /// or the connection not reestablished).
    NotOperational,
    /// `amount_msat` is zero or below the peer's `htlc_minimum_msat`.
    BelowMinimum,
    /// `cltv_expiry` is 500000000 or more (a timestamp, not a height).
    InvalidCltvExpiry,
    /// The peer's `max_accepted_htlcs` would be exceeded.
    TooManyHtlcs,
    /// The peer's `max_htlc_value_in_flight_msat` would be exceeded.
    InFlightExceeded,
    /// We cannot pay for it while keeping our reserve (and, as the funder,
    /// the commitment fee, anchors and fee spike buffer).
    InsufficientBalance,
    /// Trimmed-HTLC exposure would exceed `max_dust_htlc_exposure_msat`.
    DustExposure,
    /// No such HTLC, or it is not (yet / any more) removable by us.
    UnknownHtlc,
    /// The preimage does not hash to the HTLC's `payment_hash`.
    WrongPreimage,
    /// Only the funder sends `update_fee`.
    NotFunder,
    /// The feerate is outside the configured sane range.
    FeerateOutOfRange,
    /// `funding_satoshis` of 2^24 or more without
    /// `option_support_large_channel` on both sides.
    LargeChannelNotNegotiated,
    /// Shutting down (either side sent `shutdown`): no new HTLCs.
    ShuttingDown,
    /// We already sent `shutdown`.
    ShutdownAlreadySent,
    /// The `shutdown` script is not an allowed form (BOLT 2), or not the
    /// `upfront_shutdown_script` we committed to.
    InvalidShutdownScript,
    /// Updates wait to be signed into the peer's commitment: sign first.
    PendingUpdates,
    /// Shutting down with the channel empty and nothing outstanding: no
    /// update may be sent any more ([`crate::Channel::updates_frozen`]).
    UpdatesFrozen,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotOperational => "channel is not operational",
            SendError::BelowMinimum => "amount is zero or below the peer's htlc_minimum_msat",
            SendError::InvalidCltvExpiry => "cltv_expiry must be below 500000000",
            SendError::TooManyHtlcs => "peer's max_accepted_htlcs reached",
            SendError::InFlightExceeded => "peer's max_htlc_value_in_flight_msat exceeded",
            SendError::InsufficientBalance => "balance cannot cover amount, reserve and fees",
            SendError::DustExposure => "dust exposure limit exceeded",
            SendError::UnknownHtlc => "no removable HTLC with this id",
            SendError::WrongPreimage => "preimage does not match payment_hash",
            SendError::NotFunder => "only the funder may send update_fee",
            SendError::FeerateOutOfRange => "feerate outside the configured range",
            SendError::LargeChannelNotNegotiated => {
                "funding of 2^24 sat or more needs option_support_large_channel"
            }
            SendError::ShuttingDown => "channel is shutting down: no new HTLCs",
            SendError::ShutdownAlreadySent => "shutdown already sent",
            SendError::InvalidShutdownScript => {
                "shutdown script is not an allowed form or not the upfront script"
            }
            SendError::PendingUpdates => "updates wait to be signed into the peer's commitment",
            SendError::UpdatesFrozen => "closing negotiation may start: no more updates",
        })
    }
}

impl std::error::Error for SendError {}
