//! BOLT 3 "Fees" example and expected weights.
//!
//! Transcribed from BOLT 3 (lightning/bolts) by script from the machine-readable
//! vectors; hex strings are verbatim spec text, never retyped.

/// Expected weight `commitment_base_no_anchors`.
pub const WEIGHT_COMMITMENT_BASE_NO_ANCHORS: u64 = 724;
/// Expected weight `commitment_base_anchors`.
pub const WEIGHT_COMMITMENT_BASE_ANCHORS: u64 = 1124;
/// Expected weight `per_untrimmed_htlc`.
pub const WEIGHT_PER_UNTRIMMED_HTLC: u64 = 172;
/// Expected weight `htlc_timeout_no_anchors`.
pub const WEIGHT_HTLC_TIMEOUT_NO_ANCHORS: u64 = 663;
/// Expected weight `htlc_timeout_anchors`.
pub const WEIGHT_HTLC_TIMEOUT_ANCHORS: u64 = 666;
/// Expected weight `htlc_success_no_anchors`.
pub const WEIGHT_HTLC_SUCCESS_NO_ANCHORS: u64 = 703;
/// Expected weight `htlc_success_anchors`.
pub const WEIGHT_HTLC_SUCCESS_ANCHORS: u64 = 706;
/// Example `feerate_per_kw`.
pub const FEERATE_PER_KW: u32 = 5000;
/// Example `dust_limit_satoshis`.
pub const DUST_LIMIT_SATOSHIS: u64 = 546;
/// Offered HTLCs (msat).
pub const OFFERED_HTLCS_MSAT: [u64; 2] = [5000000, 1000000];
/// Received HTLCs (msat).
pub const RECEIVED_HTLCS_MSAT: [u64; 2] = [7000000, 800000];
/// `htlc_timeout_fee_sat`.
pub const HTLC_TIMEOUT_FEE_SAT: u64 = 3315;
/// `htlc_success_fee_sat`.
pub const HTLC_SUCCESS_FEE_SAT: u64 = 3515;
/// `commitment_weight`.
pub const COMMITMENT_WEIGHT: u64 = 1068;
/// `base_fee_sat`.
pub const BASE_FEE_SAT: u64 = 5340;
/// `actual_fee_sat`.
pub const ACTUAL_FEE_SAT: u64 = 7140;
/// Untrimmed offered / received (sat).
pub const UNTRIMMED: ([u64; 1], [u64; 1]) = ([5000], [7000]);
