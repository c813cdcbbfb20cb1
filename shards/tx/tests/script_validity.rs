//! Script validity under Bitcoin Core's own interpreter (libbitcoinconsensus,
//! all pre-taproot consensus flags): every commitment of Appendices C and F
//! spends the funding output; every HTLC transaction spends its commitment
//! output; a penalty transaction spends `to_local`, every HTLC output and
//! every HTLC-transaction output with the revocation key; `to_remote` and
//! the anchors are spendable by their owners (anchors by anyone after 16
//! blocks, not before); `to_local` by its owner after `to_self_delay`, not
//! before.

mod common;
mod vectors;

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use common::*;
use lnhub_tx::keys::{derive_privkey, derive_revocation_privkey};
use lnhub_tx::sighash::{self, sign};
use lnhub_tx::{
    build_commitment, htlc_tx, witness, ChannelParams, ChannelType, CommitmentSpec, CommitmentTx,
    HtlcSpec, HtlcTxKind, OutputKind, Side,
};
use secp256k1::{All, Secp256k1, SecretKey};
use vectors::{appendix_c as c, appendix_f as f};

/// Runs Bitcoin Core's interpreter on input `index` of `tx` spending `prev`.
fn verify(tx: &Transaction, index: usize, prev: &TxOut) -> Result<(), bitcoinconsensus::Error> {
    bitcoinconsensus::verify_with_flags(
        prev.script_pubkey.as_bytes(),
        prev.value.to_sat(),
        &serialize(tx),
        None,
        index,
        bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT,
    )
}

/// A one-input sweep to a throwaway P2WPKH.
fn sweep(prev: OutPoint, value: Amount, sequence: u32, lock_time: u32) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(lock_time),
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: value - Amount::from_sat(200),
            script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([7; 20])),
        }],
    }
}

fn sig_all(
    secp: &Secp256k1<All>,
    msg: &secp256k1::Message,
    key: &SecretKey,
) -> bitcoin::ecdsa::Signature {
    witness::sig_all(&sign(secp, msg, key))
}

struct Case {
    channel_type: ChannelType,
    dust: u64,
    to_local_msat: u64,
    to_remote_msat: u64,
    feerate_per_kw: u32,
    htlcs: Vec<HtlcSpec>,
}

fn all_cases() -> Vec<Case> {
    let legacy = c::COMMITMENTS.iter().map(|v| Case {
        channel_type: ChannelType::StaticRemoteKey,
        dust: c::LOCAL_DUST_LIMIT_SATOSHI,
        to_local_msat: v.to_local_msat,
        to_remote_msat: v.to_remote_msat,
        feerate_per_kw: v.feerate_per_kw,
        htlcs: htlcs(v.htlcs),
    });
    let anchors = f::COMMITMENTS.iter().map(|v| Case {
        channel_type: ChannelType::Anchors,
        dust: v.dust_limit_satoshis,
        to_local_msat: v.local_balance_msat,
        to_remote_msat: v.remote_balance_msat,
        feerate_per_kw: v.fee_per_kw,
        htlcs: htlcs(v.htlcs),
    });
    legacy.chain(anchors).collect()
}

fn build(secp: &Secp256k1<All>, case: &Case) -> (ChannelParams, CommitmentTx, Transaction) {
    let params = params(secp, case.channel_type, case.dust);
    let keys = local_keys(secp, &params);
    let spec = CommitmentSpec {
        commitment_number: c::COMMITMENT_NUMBER,
        feerate_per_kw: case.feerate_per_kw,
        to_local_msat: case.to_local_msat,
        to_remote_msat: case.to_remote_msat,
        htlcs: &case.htlcs,
    };
    let commitment = build_commitment(&params, Side::Local, &keys, &spec).expect("builds");
    let msg = commitment.sighash(&params);
    let signed = commitment.signed(
        &params,
        &sign(secp, &msg, &sk(c::LOCAL_FUNDING_PRIVKEY)),
        &sign(secp, &msg, &sk(c::REMOTE_FUNDING_PRIVKEY)),
    );
    (params, commitment, signed)
}

/// Signed HTLC transactions of a commitment, with the index of the HTLC.
fn signed_htlc_txs(
    secp: &Secp256k1<All>,
    commitment: &CommitmentTx,
    case: &Case,
) -> Vec<(usize, Transaction)> {
    commitment
        .htlc_indices_in_output_order()
        .map(|i| {
            let htx = htlc_tx(commitment, i).expect("untrimmed");
            let remote = sign(secp, &htx.remote_sighash(), &sk(c::REMOTE_PRIVKEY));
            let local = sign(secp, &htx.local_sighash(), &sk(c::LOCAL_PRIVKEY));
            let preimage = preimage(case.htlcs[i].id);
            let preimage = (htx.kind() == HtlcTxKind::Success).then_some(&preimage);
            (i, htx.signed(&remote, &local, preimage).expect("kind"))
        })
        .collect()
}

#[test]
fn commitments_spend_funding_and_htlc_txs_spend_commitments() {
    let secp = Secp256k1::new();
    let mut htlc_checked = 0;
    for case in all_cases() {
        let (params, commitment, signed) = build(&secp, &case);
        verify(&signed, 0, &params.funding_output()).expect("commitment spends funding");
        // A wrong signature must fail (the check is not vacuous).
        let mut bad = signed.clone();
        let msg = commitment.sighash(&params);
        bad.input[0].witness = witness::funding(
            &params,
            &sign(&secp, &msg, &sk(c::LOCAL_FUNDING_PRIVKEY)),
            &sign(&secp, &msg, &sk(c::LOCAL_FUNDING_PRIVKEY)),
        );
        assert!(verify(&bad, 0, &params.funding_output()).is_err());

        for (_, htx) in signed_htlc_txs(&secp, &commitment, &case) {
            let prev = &signed.output[htx.input[0].previous_output.vout as usize];
            verify(&htx, 0, prev).expect("HTLC tx spends its commitment output");
            htlc_checked += 1;
        }
    }
    assert_eq!(htlc_checked, 33 + 15);
}

#[test]
fn penalty_spends_to_local_and_every_htlc_output_with_revocation_key() {
    let secp = Secp256k1::new();
    let revocation_key = derive_revocation_privkey(
        &secp,
        &sk(c::REMOTE_REVOCATION_BASEPOINT_SECRET),
        &sk(c::LOCAL_PER_COMMITMENT_SECRET),
    )
    .expect("derivable");
    let mut spent = 0;
    for case in all_cases() {
        let (_, commitment, signed) = build(&secp, &case);
        let txid = signed.compute_txid();
        let keys = commitment.keys();
        // One penalty transaction claiming every revocable output at once.
        let mut penalty = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: vec![TxOut {
                value: Amount::from_sat(1000),
                script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(
                    [9; 20],
                )),
            }],
        };
        let mut prevouts = vec![];
        for (vout, info) in commitment.outputs().iter().enumerate() {
            if matches!(info.kind, OutputKind::ToLocal | OutputKind::Htlc { .. }) {
                penalty.input.push(TxIn {
                    previous_output: OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                });
                prevouts.push((signed.output[vout].clone(), info.clone()));
            }
        }
        if penalty.input.is_empty() {
            continue;
        }
        let witnesses: Vec<Witness> = prevouts
            .iter()
            .enumerate()
            .map(|(i, (prev, info))| {
                let script = info.witness_script.as_ref().expect("p2wsh");
                let msg = sighash::p2wsh(&penalty, i, script, prev.value, EcdsaSighashType::All);
                let sig = sig_all(&secp, &msg, &revocation_key);
                match info.kind {
                    OutputKind::ToLocal => witness::to_local_penalty(&sig, script),
                    _ => witness::htlc_penalty(&sig, &keys.revocation_pubkey, script),
                }
            })
            .collect();
        for (input, w) in penalty.input.iter_mut().zip(witnesses) {
            input.witness = w;
        }
        for (i, (prev, _)) in prevouts.iter().enumerate() {
            verify(&penalty, i, prev).expect("penalty input valid");
            spent += 1;
        }

        // And each HTLC transaction's output, revoked.
        for (_, htx) in signed_htlc_txs(&secp, &commitment, &case) {
            let script = lnhub_tx::scripts::to_local_script(
                &keys.revocation_pubkey,
                commitment.csv_delay(),
                &keys.local_delayed_pubkey,
            );
            let prev = htx.output[0].clone();
            let mut tx = sweep(
                OutPoint {
                    txid: htx.compute_txid(),
                    vout: 0,
                },
                prev.value,
                u32::MAX,
                0,
            );
            let msg = sighash::p2wsh(&tx, 0, &script, prev.value, EcdsaSighashType::All);
            tx.input[0].witness =
                witness::to_local_penalty(&sig_all(&secp, &msg, &revocation_key), &script);
            verify(&tx, 0, &prev).expect("penalty on HTLC tx output");
        }
    }
    assert!(spent > 50, "penalty inputs checked: {spent}");
}

#[test]
fn owners_spend_to_remote_to_local_and_anchors() {
    let secp = Secp256k1::new();
    let pcp = pk(c::LOCAL_PER_COMMITMENT_POINT);
    let remote_payment_key = sk(c::REMOTE_PAYMENT_BASEPOINT_SECRET);
    let delayed_key =
        derive_privkey(&secp, &sk(c::LOCAL_DELAYED_PAYMENT_BASEPOINT_SECRET), &pcp).unwrap();
    let (mut to_remote_checked, mut anchors_checked) = (0, 0);
    for case in all_cases() {
        let (params, commitment, signed) = build(&secp, &case);
        let txid = signed.compute_txid();
        for (vout, info) in commitment.outputs().iter().enumerate() {
            let prev = signed.output[vout].clone();
            let outpoint = OutPoint {
                txid,
                vout: vout as u32,
            };
            match info.kind {
                OutputKind::ToRemote => {
                    to_remote_checked += 1;
                    match &info.witness_script {
                        None => {
                            let mut tx = sweep(outpoint, prev.value, u32::MAX, 0);
                            let msg = sighash::p2wpkh(&tx, 0, &prev.script_pubkey, prev.value);
                            tx.input[0].witness = witness::to_remote_p2wpkh(
                                &sig_all(&secp, &msg, &remote_payment_key),
                                &pk(c::REMOTE_PAYMENT_BASEPOINT),
                            );
                            verify(&tx, 0, &prev).expect("P2WPKH to_remote");
                        }
                        Some(script) => {
                            for (sequence, ok) in [(1, true), (0, false)] {
                                let mut tx = sweep(outpoint, prev.value, sequence, 0);
                                let msg = sighash::p2wsh(
                                    &tx,
                                    0,
                                    script,
                                    prev.value,
                                    EcdsaSighashType::All,
                                );
                                tx.input[0].witness = witness::single_sig(
                                    &sig_all(&secp, &msg, &remote_payment_key),
                                    script,
                                );
                                assert_eq!(
                                    verify(&tx, 0, &prev).is_ok(),
                                    ok,
                                    "anchors to_remote, nSequence {sequence}"
                                );
                            }
                        }
                    }
                }
                OutputKind::ToLocal => {
                    let script = info.witness_script.as_ref().unwrap();
                    let delay = u32::from(commitment.csv_delay());
                    for (sequence, ok) in [(delay, true), (delay - 1, false)] {
                        let mut tx = sweep(outpoint, prev.value, sequence, 0);
                        let msg = sighash::p2wsh(&tx, 0, script, prev.value, EcdsaSighashType::All);
                        tx.input[0].witness =
                            witness::to_local_delayed(&sig_all(&secp, &msg, &delayed_key), script);
                        assert_eq!(
                            verify(&tx, 0, &prev).is_ok(),
                            ok,
                            "to_local, nSequence {sequence}"
                        );
                    }
                }
                OutputKind::LocalAnchor | OutputKind::RemoteAnchor => {
                    anchors_checked += 1;
                    let script = info.witness_script.as_ref().unwrap();
                    let funding_key = if info.kind == OutputKind::LocalAnchor {
                        sk(c::LOCAL_FUNDING_PRIVKEY)
                    } else {
                        sk(c::REMOTE_FUNDING_PRIVKEY)
                    };
                    // Owner, at once.
                    let mut tx = sweep(outpoint, prev.value, 0, 0);
                    let msg = sighash::p2wsh(&tx, 0, script, prev.value, EcdsaSighashType::All);
                    tx.input[0].witness =
                        witness::single_sig(&sig_all(&secp, &msg, &funding_key), script);
                    verify(&tx, 0, &prev).expect("anchor by its owner");
                    // The other funding key cannot.
                    let other_key = if info.kind == OutputKind::LocalAnchor {
                        sk(c::REMOTE_FUNDING_PRIVKEY)
                    } else {
                        sk(c::LOCAL_FUNDING_PRIVKEY)
                    };
                    tx.input[0].witness =
                        witness::single_sig(&sig_all(&secp, &msg, &other_key), script);
                    assert!(verify(&tx, 0, &prev).is_err());
                    // Anyone, after 16 blocks only.
                    for (sequence, ok) in [(16, true), (15, false)] {
                        let mut tx = sweep(outpoint, prev.value, sequence, 0);
                        tx.input[0].witness = witness::anchor_sweep(script);
                        assert_eq!(
                            verify(&tx, 0, &prev).is_ok(),
                            ok,
                            "anchor sweep, nSequence {sequence}"
                        );
                    }
                }
                OutputKind::Htlc { .. } => {}
            }
        }
        let _ = params;
    }
    assert_eq!(to_remote_checked, 16 + 8);
    assert!(anchors_checked >= 15, "{anchors_checked}");
}

#[test]
fn remote_claims_htlcs_directly() {
    // The non-owner's own paths: preimage on an offered HTLC, timeout on a
    // received one (after cltv_expiry; nSequence 1 with anchors).
    let secp = Secp256k1::new();
    let remote_htlc_key = sk(c::REMOTE_PRIVKEY);
    for case in all_cases() {
        let (_, commitment, signed) = build(&secp, &case);
        let seq = if case.channel_type == ChannelType::Anchors {
            1
        } else {
            0
        };
        for i in commitment.htlc_indices_in_output_order() {
            let vout = commitment.htlcs()[i].output_index.unwrap();
            let prev = signed.output[vout as usize].clone();
            let script = commitment.outputs()[vout as usize]
                .witness_script
                .clone()
                .unwrap();
            let h = case.htlcs[i];
            let outpoint = OutPoint {
                txid: signed.compute_txid(),
                vout,
            };
            let mut tx = match h.direction {
                lnhub_tx::HtlcDirection::Offered => sweep(outpoint, prev.value, seq, 0),
                lnhub_tx::HtlcDirection::Received => {
                    sweep(outpoint, prev.value, seq, h.cltv_expiry)
                }
            };
            let msg = sighash::p2wsh(&tx, 0, &script, prev.value, EcdsaSighashType::All);
            let sig = sig_all(&secp, &msg, &remote_htlc_key);
            tx.input[0].witness = match h.direction {
                lnhub_tx::HtlcDirection::Offered => {
                    witness::offered_htlc_preimage(&sig, &preimage(h.id), &script)
                }
                lnhub_tx::HtlcDirection::Received => witness::received_htlc_timeout(&sig, &script),
            };
            verify(&tx, 0, &prev).expect("remote claims HTLC");
        }
    }
}
