//! The forwarding decision (BOLT 4 "Returning Errors", BOLT 7 "HTLC Fees"): given an
//! irrevocably committed incoming HTLC, what its peeled onion asks for, and the outgoing
//! channel as the engine sees it, either forward (with the outgoing amount and expiry) or fail
//! with the exact BOLT 4 failure.
//!
//! This crate decides; it does not look anything up, hold state or touch time. The engine
//! resolves the outgoing channel (by `short_channel_id` or alias) into an
//! [`OutgoingChannel`] snapshot, passes the chain height and the current time, and applies
//! the returned [`Decision`].
//!
//! Order of the checks, when several fail: unknown channel, channel not usable, amount below
//! minimum / above maximum, fee, CLTV delta, expiry too soon, disabled, expiry too far, and
//! last the momentary liquidity and slot checks. The fee and CLTV failures come before the
//! transient ones because they tell the sender something it can fix (BOLT 4 leaves the choice
//! to the erring node: "the first error it encounters").
//!
//! `channel_update`s are not included in failures (`len` = 0): BOLT 4 no longer requires them,
//! and an update would reveal which real channel an alias belongs to.
//!
//! Blinded routes (BOLT 4 "Route Blinding"): the amounts and expiry come from the encrypted
//! `payment_relay`, computed by the onion crate, so our fee and CLTV-delta policy is not applied
//! again; every failure becomes `invalid_onion_blinding`, sent as `update_fail_malformed_htlc`
//! unless we are the introduction point (then encrypted, like any other failure).

#![deny(missing_docs)]

use lnhub_onion::failure::FailureMessage;
use lnhub_wire::types::{Msat, ShortChannelId};

/// BOLT 4 `invalid_onion_blinding` (BADONION|PERM|24).
pub const INVALID_ONION_BLINDING: u16 = 0x8000 | 0x4000 | 24;

/// A channel's forwarding policy, as announced in its `channel_update` (BOLT 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Fixed part of the fee, per HTLC.
    pub fee_base_msat: u32,
    /// Proportional part of the fee, in millionths of the forwarded amount.
    pub fee_proportional_millionths: u32,
    /// Blocks we want between the incoming and the outgoing expiry.
    pub cltv_expiry_delta: u16,
    /// Smallest HTLC we forward on this channel.
    pub htlc_minimum_msat: Msat,
    /// Largest HTLC we forward on this channel.
    pub htlc_maximum_msat: Msat,
}

impl Policy {
    /// The fee this policy asks for forwarding `amt_to_forward` (BOLT 7: base plus
    /// `amt * proportional / 1_000_000`, rounded down). `None` on overflow, which no real amount
    /// reaches (the result is bounded by ~2^64 * 2^32 / 10^6 and checked).
    pub fn fee_msat(&self, amt_to_forward: Msat) -> Option<Msat> {
        let proportional =
            u128::from(amt_to_forward.0) * u128::from(self.fee_proportional_millionths) / 1_000_000;
        let fee = proportional.checked_add(u128::from(self.fee_base_msat))?;
        u64::try_from(fee).ok().map(Msat)
    }

    /// Whether the incoming HTLC pays this policy's fee and CLTV delta.
    fn accepts_fee(&self, incoming: Msat, outgoing: Msat) -> bool {
        match (self.fee_msat(outgoing), incoming.checked_sub(outgoing)) {
            (Some(want), Some(paid)) => paid >= want,
            _ => false,
        }
    }

    fn accepts_cltv(&self, incoming_cltv: u32, outgoing_cltv: u32) -> bool {
        incoming_cltv
            .checked_sub(outgoing_cltv)
            .is_some_and(|d| d >= u32::from(self.cltv_expiry_delta))
    }
}

/// A channel's policy with the one it replaced, so senders that computed their route before
/// the change are not failed while the new `channel_update` propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyHistory {
    /// The policy in force.
    pub current: Policy,
    /// The previous policy and when (unix seconds) it was replaced.
    pub previous: Option<(Policy, u64)>,
}

impl PolicyHistory {
    /// A policy with no history.
    pub fn new(current: Policy) -> PolicyHistory {
        PolicyHistory {
            current,
            previous: None,
        }
    }

    /// Replaces the policy at `now` (unix seconds), keeping the old one for the grace period.
    pub fn update(&mut self, policy: Policy, now: u64) {
        if policy != self.current {
            self.previous = Some((self.current, now));
            self.current = policy;
        }
    }

    /// The previous policy if it is still honoured at `now`.
    fn previous_in_grace(&self, now: u64, grace_secs: u64) -> Option<&Policy> {
        self.previous
            .as_ref()
            .filter(|(_, at)| now < at.saturating_add(grace_secs))
            .map(|(p, _)| p)
    }
}

/// Node-wide limits, validated once from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An outgoing HTLC must expire at least this many blocks after the current height, so we
    /// can still fail it back or claim it on chain in time (`expiry_too_soon` otherwise).
    pub min_outgoing_cltv_blocks: u32,
    /// An incoming HTLC may expire at most this many blocks after the current height
    /// (`expiry_too_far` otherwise): bounds how long a peer can lock our liquidity.
    pub max_incoming_cltv_blocks: u32,
    /// How long (seconds) a replaced policy is still honoured.
    pub policy_grace_secs: u64,
}

/// Default [`Limits::min_outgoing_cltv_blocks`]: 6 blocks to get a claim or timeout confirmed
/// plus 12 of latency for the peer to settle before we go on chain (LDK and CLN sit at 14-18).
pub const DEFAULT_MIN_OUTGOING_CLTV_BLOCKS: u32 = 18;
/// Default [`Limits::max_incoming_cltv_blocks`]: two weeks of blocks, the value the major
/// implementations use.
pub const DEFAULT_MAX_INCOMING_CLTV_BLOCKS: u32 = 2016;
/// Default [`Limits::policy_grace_secs`]: ten minutes, enough for a `channel_update` to reach
/// most of the network through gossip.
pub const DEFAULT_POLICY_GRACE_SECS: u64 = 600;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_outgoing_cltv_blocks: DEFAULT_MIN_OUTGOING_CLTV_BLOCKS,
            max_incoming_cltv_blocks: DEFAULT_MAX_INCOMING_CLTV_BLOCKS,
            policy_grace_secs: DEFAULT_POLICY_GRACE_SECS,
        }
    }
}

/// The outgoing channel as the engine sees it at decision time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingChannel {
    /// Its real `short_channel_id` (or the alias the onion named).
    pub short_channel_id: ShortChannelId,
    /// Our policy on it.
    pub policy: PolicyHistory,
    /// The operator disabled it (`setchannelfee --disable` or a pending close).
    pub disabled: bool,
    /// The peer is connected and the channel is in normal operation.
    pub usable: bool,
    /// What we can still send on it now (balance minus reserve, in-flight and fee buffer).
    pub available_msat: Msat,
    /// HTLC slots the peer still accepts from us (its `max_accepted_htlcs` minus in flight).
    pub free_htlc_slots: u16,
}

/// The incoming HTLC and what its onion asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `amount_msat` of the incoming `update_add_htlc`.
    pub incoming_amount_msat: Msat,
    /// `cltv_expiry` of the incoming `update_add_htlc`.
    pub incoming_cltv_expiry: u32,
    /// The outgoing channel the onion named.
    pub short_channel_id: ShortChannelId,
    /// `amt_to_forward` (for blinded hops: computed from `payment_relay`).
    pub amt_to_forward: Msat,
    /// `outgoing_cltv_value` (for blinded hops: computed from `payment_relay`).
    pub outgoing_cltv_value: u32,
    /// Set when the HTLC is inside a blinded route.
    pub blinded: Option<Blinded>,
}

/// Where we stand in a blinded route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blinded {
    /// We are the introduction point (the path key came in the onion, not in
    /// `update_add_htlc`): failures go back encrypted.
    pub introduction_point: bool,
    /// SHA256 of the onion we received, for `update_fail_malformed_htlc`.
    pub sha256_of_onion: [u8; 32],
}

/// What to do with the incoming HTLC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Add this HTLC to the outgoing channel.
    Forward {
        /// The outgoing channel.
        short_channel_id: ShortChannelId,
        /// `amount_msat` of the outgoing `update_add_htlc`.
        amount_msat: Msat,
        /// `cltv_expiry` of the outgoing `update_add_htlc`.
        cltv_expiry: u32,
        /// Fee we earn: incoming minus outgoing amount.
        fee_msat: Msat,
    },
    /// Fail upstream with this message, encrypted with the incoming onion's shared secret.
    Fail(FailureMessage),
    /// Fail upstream with `update_fail_malformed_htlc` (inside a blinded route, not at its
    /// introduction point).
    FailMalformed {
        /// Always `invalid_onion_blinding` here.
        failure_code: u16,
        /// SHA256 of the onion we received.
        sha256_of_onion: [u8; 32],
    },
}

/// Decides one forward. `out` is `None` when no channel (or alias) matches
/// `request.short_channel_id`; `height` is the current block height, `now` unix seconds.
pub fn decide(
    request: &Request,
    out: Option<&OutgoingChannel>,
    height: u32,
    now: u64,
    limits: &Limits,
) -> Decision {
    match check(request, out, height, now, limits) {
        Ok(decision) => decision,
        Err(failure) => match request.blinded {
            None => Decision::Fail(failure),
            Some(b) if b.introduction_point => {
                Decision::Fail(FailureMessage::InvalidOnionBlinding {
                    sha256_of_onion: b.sha256_of_onion,
                })
            }
            Some(b) => Decision::FailMalformed {
                failure_code: INVALID_ONION_BLINDING,
                sha256_of_onion: b.sha256_of_onion,
            },
        },
    }
}

fn check(
    request: &Request,
    out: Option<&OutgoingChannel>,
    height: u32,
    now: u64,
    limits: &Limits,
) -> Result<Decision, FailureMessage> {
    let no_update = Vec::new;
    let Some(out) = out else {
        return Err(FailureMessage::UnknownNextPeer);
    };
    if !out.usable {
        return Err(FailureMessage::TemporaryChannelFailure {
            channel_update: no_update(),
        });
    }
    let amount = request.amt_to_forward;
    let policy = &out.policy.current;
    let previous = out.policy.previous_in_grace(now, limits.policy_grace_secs);
    if amount < policy.htlc_minimum_msat {
        return Err(FailureMessage::AmountBelowMinimum {
            htlc_msat: amount,
            channel_update: no_update(),
        });
    }
    if amount > policy.htlc_maximum_msat {
        // No code names "above maximum"; LDK, CLN and LND all report it as transient.
        return Err(FailureMessage::TemporaryChannelFailure {
            channel_update: no_update(),
        });
    }
    let (incoming, incoming_cltv) = (request.incoming_amount_msat, request.incoming_cltv_expiry);
    let Some(fee_msat) = incoming.checked_sub(amount) else {
        return Err(FailureMessage::FeeInsufficient {
            htlc_msat: incoming,
            channel_update: no_update(),
        });
    };
    if request.blinded.is_none() {
        let fee_ok = |p: &Policy| p.accepts_fee(incoming, amount);
        if !fee_ok(policy) && !previous.is_some_and(fee_ok) {
            return Err(FailureMessage::FeeInsufficient {
                htlc_msat: incoming,
                channel_update: no_update(),
            });
        }
        let cltv_ok = |p: &Policy| p.accepts_cltv(incoming_cltv, request.outgoing_cltv_value);
        if !cltv_ok(policy) && !previous.is_some_and(cltv_ok) {
            return Err(FailureMessage::IncorrectCltvExpiry {
                cltv_expiry: request.outgoing_cltv_value,
                channel_update: no_update(),
            });
        }
    } else if incoming_cltv < request.outgoing_cltv_value {
        // The relay computation guarantees this; keep the invariant explicit for the
        // checks below, which assume the outgoing expiry is the earlier one.
        return Err(FailureMessage::IncorrectCltvExpiry {
            cltv_expiry: request.outgoing_cltv_value,
            channel_update: no_update(),
        });
    }
    if u64::from(request.outgoing_cltv_value)
        < u64::from(height) + u64::from(limits.min_outgoing_cltv_blocks)
    {
        return Err(FailureMessage::ExpiryTooSoon {
            channel_update: no_update(),
        });
    }
    if out.disabled {
        return Err(FailureMessage::ChannelDisabled {
            disabled_flags: 0,
            channel_update: no_update(),
        });
    }
    if u64::from(incoming_cltv) > u64::from(height) + u64::from(limits.max_incoming_cltv_blocks) {
        return Err(FailureMessage::ExpiryTooFar);
    }
    if amount > out.available_msat || out.free_htlc_slots == 0 {
        return Err(FailureMessage::TemporaryChannelFailure {
            channel_update: no_update(),
        });
    }
    Ok(Decision::Forward {
        short_channel_id: out.short_channel_id,
        amount_msat: amount,
        cltv_expiry: request.outgoing_cltv_value,
        fee_msat,
    })
}

#[cfg(test)]
mod tests;
