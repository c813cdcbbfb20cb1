//! The allocation-free HTLC sighashes ([`HtlcSighasher`]) equal the ones
//! computed on the built HTLC transactions ([`htlc_tx`], the `bitcoin`
//! crate's `SighashCache`), for every HTLC of the BOLT 3 Appendix C
//! (legacy) and Appendix F (anchors) commitments and of random
//! commitments, under every ECDSA sighash type; trimmed and missing HTLCs
//! give the same errors.

mod common;
mod vectors;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::sighash::EcdsaSighashType;
use common::*;
use lnhub_tx::{
    build_commitment, htlc_tx, ChannelType, CommitmentError, CommitmentKeys, CommitmentSpec,
    CommitmentTx, HtlcDirection, HtlcSighasher, Side,
};
use proptest::prelude::*;
use secp256k1::Secp256k1;
use vectors::{appendix_c as c, appendix_f as f};

const ALL_TYPES: [EcdsaSighashType; 6] = [
    EcdsaSighashType::All,
    EcdsaSighashType::None,
    EcdsaSighashType::Single,
    EcdsaSighashType::AllPlusAnyoneCanPay,
    EcdsaSighashType::NonePlusAnyoneCanPay,
    EcdsaSighashType::SinglePlusAnyoneCanPay,
];

/// Compares every HTLC of `commitment` (and one index past the end);
/// returns how many HTLC outputs it compared.
fn assert_same_sighashes(commitment: &CommitmentTx, name: &str) -> usize {
    let hasher = HtlcSighasher::new(commitment);
    let mut compared = 0;
    for i in 0..=commitment.htlcs().len() {
        match htlc_tx(commitment, i) {
            Ok(htx) => {
                assert_eq!(
                    hasher.remote_sighash(i),
                    Ok(htx.remote_sighash()),
                    "{name}: remote, HTLC {i}"
                );
                assert_eq!(
                    hasher.local_sighash(i),
                    Ok(htx.local_sighash()),
                    "{name}: local, HTLC {i}"
                );
                for t in ALL_TYPES {
                    assert_eq!(
                        hasher.sighash(i, t),
                        Ok(htx.sighash(t)),
                        "{name}: {t}, HTLC {i}"
                    );
                }
                compared += 1;
            }
            Err(e) => {
                assert_eq!(hasher.remote_sighash(i), Err(e), "{name}: HTLC {i}");
            }
        }
    }
    assert_eq!(compared, commitment.htlc_indices_in_output_order().count());
    compared
}

fn vector_commitment(
    channel_type: ChannelType,
    dust: u64,
    owner: Side,
    htlc_ids: &[u64],
    feerate_per_kw: u32,
    to_local_msat: u64,
    to_remote_msat: u64,
) -> CommitmentTx {
    let secp = Secp256k1::new();
    let params = params(&secp, channel_type, dust);
    let keys = CommitmentKeys::derive(&secp, &params, owner, &pk(c::LOCAL_PER_COMMITMENT_POINT))
        .expect("keys");
    // The tables are from local's side: seen from remote, balances swap
    // and offered becomes received.
    let mut specs = htlcs(htlc_ids);
    let (to_local_msat, to_remote_msat) = match owner {
        Side::Local => (to_local_msat, to_remote_msat),
        Side::Remote => {
            for h in &mut specs {
                h.direction = match h.direction {
                    HtlcDirection::Offered => HtlcDirection::Received,
                    HtlcDirection::Received => HtlcDirection::Offered,
                };
            }
            (to_remote_msat, to_local_msat)
        }
    };
    let spec = CommitmentSpec {
        commitment_number: c::COMMITMENT_NUMBER,
        feerate_per_kw,
        to_local_msat,
        to_remote_msat,
        htlcs: &specs,
    };
    build_commitment(&params, owner, &keys, &spec).expect("vector commitment")
}

#[test]
fn appendix_c_htlc_sighashes() {
    let mut compared = 0;
    for v in c::COMMITMENTS.iter() {
        // The vectors are local's commitments; the remote-owned ones of the
        // same state exercise the other keys and delay.
        for owner in [Side::Local, Side::Remote] {
            let commitment = vector_commitment(
                ChannelType::StaticRemoteKey,
                c::LOCAL_DUST_LIMIT_SATOSHI,
                owner,
                v.htlcs,
                v.feerate_per_kw,
                v.to_local_msat,
                v.to_remote_msat,
            );
            let n = assert_same_sighashes(&commitment, v.name);
            if owner == Side::Local {
                assert_eq!(n, v.htlc_txs.len(), "{}", v.name);
                compared += n;
            }
        }
    }
    assert_eq!(compared, 33);
}

#[test]
fn appendix_f_htlc_sighashes() {
    let mut compared = 0;
    for v in f::COMMITMENTS.iter() {
        for owner in [Side::Local, Side::Remote] {
            let commitment = vector_commitment(
                ChannelType::Anchors,
                v.dust_limit_satoshis,
                owner,
                v.htlcs,
                v.fee_per_kw,
                v.local_balance_msat,
                v.remote_balance_msat,
            );
            let n = assert_same_sighashes(&commitment, v.name);
            if owner == Side::Local {
                assert_eq!(n, v.htlc_descs.len(), "{}", v.name);
                compared += n;
            }
        }
    }
    assert_eq!(compared, 15);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_commitments_htlc_sighashes(
        anchors in any::<bool>(),
        owner_local in any::<bool>(),
        funder_local in any::<bool>(),
        feerate_per_kw in prop_oneof![0u32..300, 253u32..20_000],
        local_dust in 294u64..5_000,
        remote_dust in 294u64..5_000,
        raw_htlcs in proptest::collection::vec(
            (any::<bool>(), 1u64..200_000_000, any::<u32>(), 0u8..4),
            0..40,
        ),
        extra_msat in 0u64..20_000_000_000,
        local_share in 0u64..=1_000,
        commitment_number in 0u64..(1 << 48),
        point_seed in any::<[u8; 32]>(),
    ) {
        let secp = Secp256k1::new();
        let channel_type = if anchors { ChannelType::Anchors } else { ChannelType::StaticRemoteKey };
        let owner = if owner_local { Side::Local } else { Side::Remote };
        let funder = if funder_local { Side::Local } else { Side::Remote };
        let (htlcs, funding_sat, to_local_msat, to_remote_msat) =
            random_commitment_parts(&raw_htlcs, extra_msat, local_share);
        let params = params_with(&secp, channel_type, local_dust, remote_dust, funder, funding_sat);
        // A random per-commitment point (any valid key).
        let point = secp256k1::SecretKey::from_slice(&sha256::Hash::hash(&point_seed).to_byte_array())
            .map(|s| secp256k1::PublicKey::from_secret_key(&secp, &s))
            .unwrap_or_else(|_| pk(c::LOCAL_PER_COMMITMENT_POINT));
        let keys = CommitmentKeys::derive(&secp, &params, owner, &point).expect("keys");
        let spec = CommitmentSpec { commitment_number, feerate_per_kw, to_local_msat, to_remote_msat, htlcs: &htlcs };
        match build_commitment(&params, owner, &keys, &spec) {
            Ok(commitment) => {
                assert_same_sighashes(&commitment, "random");
            }
            Err(CommitmentError::OutputsExceedFunding) => prop_assert!(anchors),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}
