//! The forwarding log (`lnhub_schema::ForwardRecord`): one entry per incoming HTLC the hub
//! forwarded or failed, written by the shard that learns the outcome, in its next commit.
//!
//! - A forward that reached an outgoing channel is logged by the outgoing shard when its link
//!   is released (`Input::LinkDone`): the incoming HTLC is then resolved durably, and the link
//!   holds both amounts, the time the outgoing HTLC was added and how it ended.
//! - A forward the hub refuses (onion, policy, liquidity, unknown channel, a payment to the hub
//!   itself) is logged where the failure is decided, with its BOLT 4 code.
//!
//! The log is keyed by incoming HTLC, so deciding again after a restart rewrites the same
//! entry; a second time-index entry may remain, which pruning by age removes like any other.

use lnhub_schema::{ForwardOutcome, ForwardRecord};
use lnhub_wire::types::{ChannelId, Msat};

use crate::shard::Upstream;

/// The log's outcome for a resolution sent upstream.
pub(crate) fn outcome_of(upstream: &Upstream) -> ForwardOutcome {
    match upstream {
        Upstream::Fulfilled(_) => ForwardOutcome::Settled,
        Upstream::FailedDownstream(_) => ForwardOutcome::FailedDownstream { failure_code: None },
        Upstream::FailedMalformed { failure_code, .. } => ForwardOutcome::FailedDownstream {
            failure_code: Some(*failure_code),
        },
        Upstream::FailedHere(message) => ForwardOutcome::FailedHere {
            failure_code: message.failure_code(),
        },
        Upstream::FailedHereMalformed { failure_code, .. } => ForwardOutcome::FailedHere {
            failure_code: *failure_code,
        },
    }
}

/// The log entry of an incoming HTLC the hub fails before any outgoing HTLC exists, at `now`.
pub(crate) fn refused(
    in_channel_id: ChannelId,
    in_htlc_id: u64,
    in_amount_msat: Msat,
    now: u64,
    outcome: ForwardOutcome,
) -> ForwardRecord {
    ForwardRecord {
        in_channel_id,
        in_htlc_id,
        out: None,
        in_amount_msat,
        out_amount_msat: Msat(0),
        added_at: now,
        resolved_at: now,
        outcome,
    }
}
