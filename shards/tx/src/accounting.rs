//! Value accounting: where every satoshi of the funding output went (the
//! identity the channel state machine asserts on after building each
//! commitment).
//!
//! `funding = to_local + to_remote + HTLC outputs + anchors + fee`, and the
//! fee itself is explained part by part: the base fee the funder paid (BOLT
//! 3 "Fee Payment"), trimmed HTLCs, balances trimmed as dust, an anchor the
//! funder paid for but that was not created, and whole satoshis formed by
//! the msat remainders that rounding down dropped. [`check_commitment_value`]
//! recomputes all of it from the spec and checks it against the built
//! transaction.

use bitcoin::Amount;

use crate::commitment::{CommitmentSpec, CommitmentTx, HtlcDirection, OutputKind};
use crate::fees::{self, ANCHOR_OUTPUT_VALUE};
use crate::params::ChannelParams;

/// Where the funding amount went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueBreakdown {
    /// The owner's `to_local` output (zero if trimmed).
    pub to_local: Amount,
    /// The `to_remote` output (zero if trimmed).
    pub to_remote: Amount,
    /// Sum of the HTLC outputs.
    pub htlc_outputs: Amount,
    /// Sum of the anchor outputs.
    pub anchors: Amount,
    /// The actual fee: funding minus all outputs.
    pub fee: Amount,
    /// Part of the fee: the base fee the funder actually paid (capped by
    /// what was left of its balance after the anchors).
    pub base_fee_paid: Amount,
    /// Part of the fee: anchor value charged to the funder for an anchor
    /// that was not created.
    pub uncreated_anchors: Amount,
    /// Part of the fee: trimmed HTLC amounts.
    pub trimmed_htlcs: Amount,
    /// Part of the fee: balances below the dust limit after fees.
    pub trimmed_balances: Amount,
    /// Part of the fee: whole satoshis made of the msat remainders.
    pub msat_rounding: Amount,
}

/// The books do not balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountingError {
    /// Outputs exceed the funding amount.
    OutputsExceedFunding,
    /// The spec's balances and HTLCs do not add up to the funding amount.
    SpecMismatch,
    /// An HTLC's trimmed/untrimmed status or output value is wrong.
    HtlcMismatch {
        /// Index of the HTLC in the spec.
        htlc_index: usize,
    },
    /// `to_local` or `to_remote` is not what the fee rules give.
    BalanceOutputMismatch,
    /// The fee differs from the sum of its explained parts.
    FeeMismatch {
        /// Funding minus outputs.
        fee: Amount,
        /// Sum of the explained parts.
        explained: Amount,
    },
}

impl core::fmt::Display for AccountingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AccountingError::OutputsExceedFunding => f.write_str("outputs exceed funding"),
            AccountingError::SpecMismatch => {
                f.write_str("balances and HTLCs do not sum to funding")
            }
            AccountingError::HtlcMismatch { htlc_index } => {
                write!(f, "HTLC {htlc_index} trimmed status or value is wrong")
            }
            AccountingError::BalanceOutputMismatch => {
                f.write_str("to_local/to_remote value is wrong")
            }
            AccountingError::FeeMismatch { fee, explained } => {
                write!(f, "fee {fee} differs from its explained parts {explained}")
            }
        }
    }
}

impl std::error::Error for AccountingError {}

/// Recomputes where each satoshi of the funding output went for the
/// commitment built from `spec`, and checks the transaction against it.
pub fn check_commitment_value(
    params: &ChannelParams,
    spec: &CommitmentSpec<'_>,
    commitment: &CommitmentTx,
) -> Result<ValueBreakdown, AccountingError> {
    let funding = params.funding_amount();
    let owner = commitment.owner();
    let channel_type = params.channel_type();
    let committed = spec.committed_msat();
    if committed != u128::from(funding.to_sat()) * 1000 {
        return Err(AccountingError::SpecMismatch);
    }

    // Outputs by kind, from the transaction itself.
    let mut b = ValueBreakdown::default();
    for (txout, info) in commitment.tx().output.iter().zip(commitment.outputs()) {
        match info.kind {
            OutputKind::ToLocal => b.to_local += txout.value,
            OutputKind::ToRemote => b.to_remote += txout.value,
            OutputKind::LocalAnchor | OutputKind::RemoteAnchor => b.anchors += txout.value,
            OutputKind::Htlc { .. } => b.htlc_outputs += txout.value,
        }
    }
    let outputs = b.to_local + b.to_remote + b.htlc_outputs + b.anchors;
    b.fee = funding
        .checked_sub(outputs)
        .ok_or(AccountingError::OutputsExceedFunding)?;

    // HTLCs: trimming decision and value, recomputed.
    let dust_limit = params.side(owner).dust_limit;
    let mut untrimmed = 0;
    let mut whole_sats = Amount::ZERO;
    for (i, (h, out)) in spec.htlcs.iter().zip(commitment.htlcs()).enumerate() {
        let amount = Amount::from_sat(h.amount_msat / 1000);
        whole_sats += amount;
        let trimmed = fees::is_trimmed(
            channel_type,
            spec.feerate_per_kw,
            dust_limit,
            h.direction == HtlcDirection::Offered,
            h.amount_msat,
        );
        match (trimmed, out.output_index) {
            (true, None) => b.trimmed_htlcs += amount,
            (false, Some(idx)) if commitment.tx().output[idx as usize].value == amount => {
                untrimmed += 1
            }
            _ => return Err(AccountingError::HtlcMismatch { htlc_index: i }),
        }
    }

    // Balances after the funder's charge.
    let mut local = Amount::from_sat(spec.to_local_msat / 1000);
    let mut remote = Amount::from_sat(spec.to_remote_msat / 1000);
    whole_sats += local + remote;
    b.msat_rounding = funding - whole_sats;
    let base_fee = fees::commitment_base_fee(channel_type, spec.feerate_per_kw, untrimmed);
    let anchor_charge = if channel_type.has_anchors() {
        ANCHOR_OUTPUT_VALUE + ANCHOR_OUTPUT_VALUE
    } else {
        Amount::ZERO
    };
    let funder = if params.funder() == owner {
        &mut local
    } else {
        &mut remote
    };
    let paid = (*funder).min(base_fee + anchor_charge);
    *funder -= paid;
    // The funder pays the anchors first, then as much base fee as it can.
    let anchors_paid = paid.min(anchor_charge);
    b.base_fee_paid = paid - anchors_paid;
    b.uncreated_anchors = anchors_paid
        .checked_sub(b.anchors)
        .ok_or(AccountingError::OutputsExceedFunding)?;

    for (balance, out) in [(local, b.to_local), (remote, b.to_remote)] {
        if out == Amount::ZERO {
            b.trimmed_balances += balance;
        } else if out != balance || balance < dust_limit {
            return Err(AccountingError::BalanceOutputMismatch);
        }
    }

    let explained = b.base_fee_paid
        + b.uncreated_anchors
        + b.trimmed_htlcs
        + b.trimmed_balances
        + b.msat_rounding;
    if explained != b.fee {
        return Err(AccountingError::FeeMismatch {
            fee: b.fee,
            explained,
        });
    }
    assert_eq!(
        funding,
        b.to_local + b.to_remote + b.htlc_outputs + b.anchors + b.fee,
        "funding must equal outputs plus fee"
    );
    Ok(b)
}
