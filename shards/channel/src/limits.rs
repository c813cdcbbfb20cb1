//! The limits BOLT 2 puts on updates, checked on a materialised commitment
//! view: HTLC count and value in flight ("Adding an HTLC"), reserve and
//! commitment fee of the funder (and the fee spike buffer we keep when we
//! are the funder), trimmed-HTLC exposure ("Bounding exposure to trimmed
//! in-flight HTLCs") and fee updates ("Updating Fees").
//!
//! The sender's check of the peer's next commitment and the receiver's
//! check of its own next commitment look at the same set of updates (both
//! are "every update the proposer sent so far plus the other side's that
//! the proposer acknowledged"), so what we send is never refused by a peer
//! with the same rules, and we check the peer by exactly those rules.

use bitcoin::Amount;
use lnhub_tx::fees::{self, ANCHOR_OUTPUT_VALUE};
use lnhub_tx::{HtlcDirection, HtlcSpec, Side};

use crate::book::ViewSummary;
use crate::channel::Channel;
use crate::htlc::{UpdateState, View};

/// Multiplier on the feerate for the funder's fee spike buffer: BOLT 2
/// recommends surviving a doubling "to ensure predictability between
/// implementations".
pub const FEE_SPIKE_BUFFER_FEERATE_MULTIPLE: u32 = 2;

/// What a view costs and holds, for the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewCosts {
    /// Untrimmed HTLC outputs.
    pub untrimmed: usize,
    /// Commitment fee plus both anchors (if any), in msat: what the funder
    /// pays.
    pub funder_charge_msat: u64,
    /// Sum of the trimmed HTLCs, in msat (dust exposure).
    pub trimmed_msat: u64,
}

impl Channel {
    /// Fee, anchors and trimmed value of a view at `feerate`, with
    /// `extra_untrimmed` hypothetical HTLC outputs added.
    pub(crate) fn view_costs(
        &self,
        summary: &ViewSummary,
        htlcs: &[HtlcSpec],
        feerate_per_kw: u32,
        extra_untrimmed: usize,
    ) -> ViewCosts {
        let channel_type = self.params.channel_type();
        let dust_limit = self.params.side(summary.view.owner()).dust_limit;
        let mut untrimmed = extra_untrimmed;
        let mut trimmed_msat = 0;
        for h in htlcs {
            let trimmed = fees::is_trimmed(
                channel_type,
                feerate_per_kw,
                dust_limit,
                h.direction == HtlcDirection::Offered,
                h.amount_msat,
            );
            if trimmed {
                trimmed_msat += h.amount_msat;
            } else {
                untrimmed += 1;
            }
        }
        let anchors = if channel_type.has_anchors() {
            ANCHOR_OUTPUT_VALUE + ANCHOR_OUTPUT_VALUE
        } else {
            Amount::ZERO
        };
        let fee = fees::commitment_base_fee(channel_type, feerate_per_kw, untrimmed) + anchors;
        ViewCosts {
            untrimmed,
            funder_charge_msat: fee.to_sat() * 1000,
            trimmed_msat,
        }
    }

    /// The reserve `side` must keep: what the *other* side announced.
    pub(crate) fn reserve_of_msat(&self, side: Side) -> u64 {
        let limits = match side {
            Side::Local => &self.remote_limits,
            Side::Remote => &self.local_limits,
        };
        limits.channel_reserve_satoshis.0 * 1000
    }

    /// What `side` has left in `summary` after its reserve and, if it is
    /// the funder, the commitment fee and anchors (negative if short).
    pub(crate) fn headroom_msat(
        &self,
        summary: &ViewSummary,
        costs: &ViewCosts,
        side: Side,
    ) -> i128 {
        let mut need = i128::from(self.reserve_of_msat(side));
        if self.book.funder() == side {
            need += i128::from(costs.funder_charge_msat);
        }
        i128::from(summary.balance_of(side)) - need
    }

    /// Count and total of the HTLCs `offerer` has in `htlcs` of a view
    /// owned by `owner`.
    pub(crate) fn offered_by(owner: Side, offerer: Side, htlcs: &[HtlcSpec]) -> (usize, u64) {
        let dir = if owner == offerer {
            HtlcDirection::Offered
        } else {
            HtlcDirection::Received
        };
        htlcs
            .iter()
            .filter(|h| h.direction == dir)
            .fold((0, 0), |(n, v), h| (n + 1, v + h.amount_msat))
    }

    /// What a sender's checks must add to its view of the peer's next
    /// commitment (`view` = [`View::RemoteNext`]; nothing otherwise): the
    /// peer's HTLCs we received but have not acknowledged yet, as (trimmed
    /// value in msat, untrimmed count). They are not in that view, but can
    /// be in the peer's own by the time it reads what we send now (after a
    /// reconnection our updates are replayed after everything the peer has
    /// since seen), so only this worst case keeps the peer's dust and fee
    /// checks from refusing what we send.
    pub(crate) fn unacked_remote_htlcs(&self, view: View, feerate_per_kw: u32) -> (u64, usize) {
        if view != View::RemoteNext {
            return (0, 0);
        }
        let mut trimmed_msat = 0;
        let mut untrimmed = 0;
        for h in self.book.htlcs() {
            if h.offerer != Side::Remote || h.add_state != UpdateState::Announced {
                continue;
            }
            if self.is_trimmed_in(Side::Remote, Side::Remote, feerate_per_kw, h.amount_msat.0) {
                trimmed_msat += h.amount_msat.0;
            } else {
                untrimmed += 1;
            }
        }
        (trimmed_msat, untrimmed)
    }

    /// Whether an HTLC of `amount_msat` offered by `offerer` is trimmed in
    /// a view owned by `owner` at `feerate`.
    pub(crate) fn is_trimmed_in(
        &self,
        owner: Side,
        offerer: Side,
        feerate_per_kw: u32,
        amount_msat: u64,
    ) -> bool {
        fees::is_trimmed(
            self.params.channel_type(),
            feerate_per_kw,
            self.params.side(owner).dust_limit,
            owner == offerer,
            amount_msat,
        )
    }
}
