//! Randomised value accounting: for many HTLC sets, feerates, dust limits,
//! funders, owners and both channel types, every satoshi of the funding
//! output is accounted for (outputs + fee, the fee explained by base fee,
//! anchors not created, trimmed HTLCs, trimmed balances and msat rounding),
//! and every HTLC transaction pays exactly the HTLC amount minus its fee.
//! Also: outputs are in BIP 69 + CLTV order (identical ones in spec
//! order), and building into a previous commitment of another shape gives
//! the same commitment as building afresh, and keys derived for the spec
//! (without HTLC keys when every HTLC is trimmed) build the same
//! transaction.

mod common;
mod vectors;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::Amount;
use common::*;
use lnhub_tx::accounting::check_commitment_value;
use lnhub_tx::{
    build_commitment, build_commitment_into, fees, has_htlc_outputs, htlc_tx, ChannelType,
    CommitmentError, CommitmentKeys, CommitmentSpec, HtlcDirection, HtlcSpec, HtlcTxKind,
    OutputKind, Side,
};
use proptest::prelude::*;
use secp256k1::Secp256k1;

fn htlc_strategy() -> impl Strategy<Value = (bool, u64, u32, u8)> {
    (
        any::<bool>(),
        prop_oneof![1u64..5_000_000, 5_000_000u64..200_000_000],
        400u32..600,
        0u8..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn value_identity_holds(
        anchors in any::<bool>(),
        owner_local in any::<bool>(),
        funder_local in any::<bool>(),
        feerate_per_kw in prop_oneof![0u32..300, 253u32..20_000, 20_000u32..2_000_000],
        local_dust in prop_oneof![Just(0u64), 294u64..=546, 546u64..5_000],
        remote_dust in 294u64..5_000,
        raw_htlcs in proptest::collection::vec(htlc_strategy(), 0..24),
        extra_msat in 0u64..20_000_000_000,
        local_share in 0u64..=1_000,
        commitment_number in 0u64..(1 << 48),
    ) {
        let secp = Secp256k1::new();
        let channel_type = if anchors { ChannelType::Anchors } else { ChannelType::StaticRemoteKey };
        let owner = if owner_local { Side::Local } else { Side::Remote };
        let funder = if funder_local { Side::Local } else { Side::Remote };
        let (htlcs, funding_sat, to_local_msat, to_remote_msat) =
            random_commitment_parts(&raw_htlcs, extra_msat, local_share);

        let params = params_with(&secp, channel_type, local_dust, remote_dust, funder, funding_sat);
        let keys = CommitmentKeys::derive(&secp, &params, owner, &pk(vectors::appendix_c::LOCAL_PER_COMMITMENT_POINT))
            .expect("keys");
        let spec = CommitmentSpec { commitment_number, feerate_per_kw, to_local_msat, to_remote_msat, htlcs: &htlcs };
        let fresh = build_commitment(&params, owner, &keys, &spec);
        // The same built into a commitment of another shape (the other
        // owner's, HTLCs rotated), reusing its buffers; a refused build
        // leaves the target as it was.
        let mut rotated = htlcs.clone();
        let shift = usize::from(!rotated.is_empty());
        rotated.rotate_left(shift);
        let other = CommitmentSpec { htlcs: &rotated, ..spec };
        let other_keys = CommitmentKeys::derive(&secp, &params, owner.other(), &pk(vectors::appendix_c::LOCAL_PER_COMMITMENT_POINT))
            .expect("keys");
        if let Ok(mut target) = build_commitment(&params, owner.other(), &other_keys, &other) {
            let before = target.clone();
            match (build_commitment_into(&mut target, &params, owner, &keys, &spec), &fresh) {
                (Ok(()), Ok(c)) => prop_assert_eq!(&target, c),
                (Err(e), Err(f)) => {
                    prop_assert_eq!(e, *f);
                    prop_assert_eq!(&target, &before);
                }
                (into, fresh) => prop_assert!(false, "into: {into:?}, fresh: {fresh:?}"),
            }
        }
        let commitment = match fresh {
            Ok(c) => c,
            Err(CommitmentError::OutputsExceedFunding) => {
                // Only a funder too poor to pay for anchors gets here.
                prop_assert!(anchors);
                return Ok(());
            }
            Err(e) => panic!("unexpected {e}"),
        };
        // Keys derived for the spec have the HTLC keys exactly when an
        // HTLC gets an output, and build the same transaction; keys
        // without them are refused for a commitment with an HTLC output,
        // leaving the target as it was.
        let has_outputs = commitment.htlc_indices_in_output_order().next().is_some();
        prop_assert_eq!(has_htlc_outputs(&params, owner, &spec), has_outputs);
        let lean = CommitmentKeys::derive_for(&secp, &params, owner, &pk(vectors::appendix_c::LOCAL_PER_COMMITMENT_POINT), &spec)
            .expect("keys");
        prop_assert_eq!(lean.htlc.is_some(), has_outputs);
        let built = build_commitment(&params, owner, &lean, &spec).expect("the same spec builds");
        prop_assert_eq!(built.tx(), commitment.tx());
        prop_assert_eq!(built.outputs(), commitment.outputs());
        let bare = CommitmentKeys { htlc: None, ..keys };
        let mut target = commitment.clone();
        match build_commitment_into(&mut target, &params, owner, &bare, &spec) {
            Ok(()) => prop_assert!(!has_outputs),
            Err(e) => {
                prop_assert!(has_outputs);
                prop_assert_eq!(e, CommitmentError::MissingHtlcKeys);
                prop_assert_eq!(&target, &commitment);
            }
        }
        let breakdown = check_commitment_value(&params, &spec, &commitment).expect("books balance");
        prop_assert_eq!(
            params.funding_amount(),
            breakdown.to_local + breakdown.to_remote + breakdown.htlc_outputs + breakdown.anchors + breakdown.fee
        );
        prop_assert_eq!(breakdown.fee, params.funding_amount() - commitment.output_total());

        // Output order: BIP 69, then CLTV for HTLCs, then (identical
        // outputs) the HTLCs' order in the spec.
        let outs = &commitment.tx().output;
        let key = |i: usize| {
            let htlc_index = match commitment.outputs()[i].kind {
                OutputKind::Htlc { htlc_index } => Some(htlc_index),
                _ => None,
            };
            let cltv = htlc_index.map_or(0, |h| htlcs[h].cltv_expiry);
            ((outs[i].value, outs[i].script_pubkey.as_bytes(), cltv), htlc_index)
        };
        for i in 1..outs.len() {
            let ((a, a_index), (b, b_index)) = (key(i - 1), key(i));
            prop_assert!(a <= b);
            if a == b {
                prop_assert!(a_index.is_some() && a_index < b_index, "identical outputs in spec order");
            }
        }
        // Every untrimmed HTLC has a second-stage transaction paying amount - fee.
        let dust = params.side(owner).dust_limit;
        for i in commitment.htlc_indices_in_output_order() {
            let htx = htlc_tx(&commitment, i).expect("untrimmed");
            let fee = match htx.kind() {
                HtlcTxKind::Timeout => fees::htlc_timeout_fee(channel_type, feerate_per_kw),
                HtlcTxKind::Success => fees::htlc_success_fee(channel_type, feerate_per_kw),
            };
            let amount = Amount::from_sat(htlcs[i].amount_msat / 1000);
            prop_assert_eq!(htx.tx().output[0].value, amount - fee);
            prop_assert!(htx.tx().output[0].value >= dust);
        }
    }
}

#[test]
fn accounting_rejects_a_commitment_that_does_not_match_its_spec() {
    let secp = Secp256k1::new();
    let params = params(&secp, ChannelType::StaticRemoteKey, 546);
    let keys = local_keys(&secp, &params);
    let htlcs = htlcs(&[0, 1, 2, 3, 4]);
    let spec = CommitmentSpec {
        commitment_number: 42,
        feerate_per_kw: 2069,
        to_local_msat: 6_988_000_000,
        to_remote_msat: 3_000_000_000,
        htlcs: &htlcs,
    };
    let commitment = build_commitment(&params, Side::Local, &keys, &spec).expect("builds");
    check_commitment_value(&params, &spec, &commitment).expect("matches");
    // Same tx checked against a different feerate: the trimming of HTLC 0
    // or the fee no longer matches.
    for feerate_per_kw in [2070, 1000, 0] {
        let other = CommitmentSpec {
            feerate_per_kw,
            ..spec
        };
        assert!(
            check_commitment_value(&params, &other, &commitment).is_err(),
            "{feerate_per_kw}"
        );
    }
    // Balances moved between the sides.
    let other = CommitmentSpec {
        to_local_msat: 6_987_000_000,
        to_remote_msat: 3_001_000_000,
        ..spec
    };
    assert!(check_commitment_value(&params, &other, &commitment).is_err());
}

/// Found by `value_identity_holds`: an anchors funder whose balance (593 sat) cannot pay the
/// two anchors (660 sat) while a trimmed HTLC's value would have covered the gap. The anchors
/// are the funder's to pay, so the commitment must be refused, not built.
#[test]
fn anchors_are_never_paid_from_trimmed_htlcs() {
    let secp = Secp256k1::new();
    let htlcs = [
        HtlcSpec {
            id: 0,
            direction: HtlcDirection::Received,
            amount_msat: 65_319,
            cltv_expiry: 400,
            payment_hash: sha256::Hash::hash(&[0]),
        },
        HtlcSpec {
            id: 1,
            direction: HtlcDirection::Received,
            amount_msat: 28_994_603,
            cltv_expiry: 400,
            payment_hash: sha256::Hash::hash(&[0]),
        },
    ];
    let htlc_msat: u64 = htlcs.iter().map(|h| h.amount_msat).sum();
    let funding_sat = (htlc_msat + 11_628_079).div_ceil(1000);
    let balances_msat = funding_sat * 1000 - htlc_msat;
    let to_local_msat = balances_msat / 1000 * 51;
    let params = params_with(
        &secp,
        ChannelType::Anchors,
        492,
        294,
        Side::Local,
        funding_sat,
    );
    let keys = CommitmentKeys::derive(
        &secp,
        &params,
        Side::Local,
        &pk(vectors::appendix_c::LOCAL_PER_COMMITMENT_POINT),
    )
    .expect("keys");
    let spec = CommitmentSpec {
        commitment_number: 0,
        feerate_per_kw: 0,
        to_local_msat,
        to_remote_msat: balances_msat - to_local_msat,
        htlcs: &htlcs,
    };
    assert!(matches!(
        build_commitment(&params, Side::Local, &keys, &spec),
        Err(CommitmentError::OutputsExceedFunding)
    ));
}
