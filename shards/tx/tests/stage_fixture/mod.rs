//! One staged commitment for the `stage` bench and its smoke twin
//! (tests/alloc.rs): a commitment with [`HTLCS`] untrimmed HTLCs and its
//! HTLC sighashes by both paths, so the bench's code is the tested code.
#![allow(dead_code)]

use bitcoin::hashes::{sha256, Hash};
use lnhub_tx::{
    build_commitment, build_commitment_into, htlc_tx, ChannelParams, CommitmentKeys,
    CommitmentSpec, CommitmentTx, HtlcDirection, HtlcSighasher, HtlcSpec, Side,
};
use secp256k1::Message;

/// HTLCs per commitment in the bench.
pub const HTLCS: usize = 30;

/// Funding of the fixture channel (`params_with(.., FUNDING_SAT)`).
pub const FUNDING_SAT: u64 = 10_000_000;

/// `n` HTLCs well above dust at [`FEERATE_PER_KW`], alternating offered
/// and received, distinct hashes and expiries.
pub fn spec_htlcs(n: usize) -> Vec<HtlcSpec> {
    (0..n)
        .map(|i| HtlcSpec {
            id: i as u64,
            direction: if i % 2 == 0 {
                HtlcDirection::Offered
            } else {
                HtlcDirection::Received
            },
            amount_msat: 10_000_000 + 10_000 * i as u64,
            cltv_expiry: 500_000 + i as u32,
            payment_hash: sha256::Hash::hash(&(i as u64).to_le_bytes()),
        })
        .collect()
}

/// Feerate of the fixture commitments.
pub const FEERATE_PER_KW: u32 = 2_500;

/// Local's commitment 42 with `htlcs` and the rest split evenly.
pub fn spec<'a>(params: &ChannelParams, htlcs: &'a [HtlcSpec]) -> CommitmentSpec<'a> {
    let htlc_msat: u64 = htlcs.iter().map(|h| h.amount_msat).sum();
    let balances_msat = params.funding_amount().to_sat() * 1000 - htlc_msat;
    CommitmentSpec {
        commitment_number: 42,
        feerate_per_kw: FEERATE_PER_KW,
        to_local_msat: balances_msat / 2,
        to_remote_msat: balances_msat - balances_msat / 2,
        htlcs,
    }
}

/// Builds [`spec`].
pub fn build(params: &ChannelParams, keys: &CommitmentKeys, htlcs: &[HtlcSpec]) -> CommitmentTx {
    build_commitment(params, Side::Local, keys, &spec(params, htlcs)).expect("buildable")
}

/// Builds [`spec`] into `target`, reusing its allocations.
pub fn build_into(
    target: &mut CommitmentTx,
    params: &ChannelParams,
    keys: &CommitmentKeys,
    htlcs: &[HtlcSpec],
) {
    build_commitment_into(target, params, Side::Local, keys, &spec(params, htlcs))
        .expect("buildable");
}

/// One way to compute the remote HTLC sighashes of a commitment, in
/// output order, appended to `out`.
pub type SighashPath = fn(&CommitmentTx, &mut Vec<Message>);

/// The old path: one built HTLC transaction per sighash.
pub fn sighashes_htlc_tx(c: &CommitmentTx, out: &mut Vec<Message>) {
    for i in c.htlc_indices_in_output_order() {
        out.push(htlc_tx(c, i).expect("untrimmed").remote_sighash());
    }
}

/// The allocation-free path.
pub fn sighashes_sighasher(c: &CommitmentTx, out: &mut Vec<Message>) {
    let hasher = HtlcSighasher::new(c);
    for i in c.htlc_indices_in_output_order() {
        out.push(hasher.remote_sighash(i).expect("untrimmed"));
    }
}

/// Both paths, named as in the bench.
pub const PATHS: [(&str, SighashPath); 2] = [
    ("htlc_tx", sighashes_htlc_tx),
    ("sighasher", sighashes_sighasher),
];
