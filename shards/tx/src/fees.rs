//! Fee and trimming arithmetic (BOLT 3, "Fees" and "Trimmed Outputs").
//!
//! Fees use the spec's *expected weights* (73-byte signatures, both balance
//! outputs present), never the real weight, so that both peers compute the
//! same numbers without seeing each other's signatures. All divisions round
//! down, as the spec requires.

use bitcoin::Amount;

use crate::params::ChannelType;

/// Expected weight of a commitment transaction without HTLC outputs and
/// without anchors (BOLT 3 Appendix A).
pub const COMMITMENT_BASE_WEIGHT: u64 = 724;

/// Expected weight of a commitment transaction without HTLC outputs under
/// `option_anchors` (BOLT 3 Appendix A): the two anchor outputs and the
/// P2WSH, CSV-locked `to_remote` in place of a P2WPKH one.
pub const COMMITMENT_BASE_WEIGHT_ANCHORS: u64 = 1124;

/// Weight added by each untrimmed HTLC output (43 bytes * 4).
pub const HTLC_OUTPUT_WEIGHT: u64 = 172;

/// Expected weight of an HTLC-timeout transaction without anchors.
pub const HTLC_TIMEOUT_WEIGHT: u64 = 663;

/// Expected weight of an HTLC-timeout transaction with anchors (three
/// bytes more script for `1 OP_CSV OP_DROP`). Only used by callers that
/// attach fees to the zero-fee transaction themselves.
pub const HTLC_TIMEOUT_WEIGHT_ANCHORS: u64 = 666;

/// Expected weight of an HTLC-success transaction without anchors.
pub const HTLC_SUCCESS_WEIGHT: u64 = 703;

/// Expected weight of an HTLC-success transaction with anchors.
pub const HTLC_SUCCESS_WEIGHT_ANCHORS: u64 = 706;

/// Value of each anchor output: 330 sat, Bitcoin Core's dust threshold for
/// P2WSH at the default dust relay feerate ((43 + 67) * 3 sat).
pub const ANCHOR_OUTPUT_VALUE: Amount = Amount::from_sat(330);

/// `feerate_per_kw * weight / 1000`, rounded down.
pub fn fee_for_weight(feerate_per_kw: u32, weight: u64) -> Amount {
    Amount::from_sat(u64::from(feerate_per_kw) * weight / 1000)
}

/// The base fee of a commitment transaction with `untrimmed_htlcs` HTLC
/// outputs (what the funder pays, before trimmed dust is added).
pub fn commitment_base_fee(
    channel_type: ChannelType,
    feerate_per_kw: u32,
    untrimmed_htlcs: usize,
) -> Amount {
    let base = match channel_type {
        ChannelType::StaticRemoteKey => COMMITMENT_BASE_WEIGHT,
        ChannelType::Anchors => COMMITMENT_BASE_WEIGHT_ANCHORS,
    };
    fee_for_weight(
        feerate_per_kw,
        base + HTLC_OUTPUT_WEIGHT * untrimmed_htlcs as u64,
    )
}

/// Fee of an HTLC-timeout transaction: zero under `option_anchors`.
pub fn htlc_timeout_fee(channel_type: ChannelType, feerate_per_kw: u32) -> Amount {
    match channel_type {
        ChannelType::StaticRemoteKey => fee_for_weight(feerate_per_kw, HTLC_TIMEOUT_WEIGHT),
        ChannelType::Anchors => Amount::ZERO,
    }
}

/// Fee of an HTLC-success transaction: zero under `option_anchors`.
pub fn htlc_success_fee(channel_type: ChannelType, feerate_per_kw: u32) -> Amount {
    match channel_type {
        ChannelType::StaticRemoteKey => fee_for_weight(feerate_per_kw, HTLC_SUCCESS_WEIGHT),
        ChannelType::Anchors => Amount::ZERO,
    }
}

/// Whether an HTLC of `amount_msat` is trimmed from a commitment whose owner
/// has `dust_limit`: its whole-satoshi amount minus its second-stage fee is
/// below the limit. `offered` is from the owner's point of view.
pub fn is_trimmed(
    channel_type: ChannelType,
    feerate_per_kw: u32,
    dust_limit: Amount,
    offered: bool,
    amount_msat: u64,
) -> bool {
    let second_stage_fee = if offered {
        htlc_timeout_fee(channel_type, feerate_per_kw)
    } else {
        htlc_success_fee(channel_type, feerate_per_kw)
    };
    let amount = Amount::from_sat(amount_msat / 1000);
    match amount.checked_sub(second_stage_fee) {
        Some(rest) => rest < dust_limit,
        None => true,
    }
}
