//! Every BOLT 3 test vector, table-driven: Appendix B (funding), C (legacy
//! commitments and HTLC transactions), D (per-commitment secrets), E (key
//! derivation), F (anchors) and the fee example. Transactions are rebuilt,
//! signed with plain RFC 6979 and compared byte for byte.

mod common;
mod vectors;

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, Transaction};
use common::*;
use lnhub_tx::keys::{
    derive_privkey, derive_privkey_from_basepoint, derive_pubkey, derive_revocation_privkey,
    derive_revocation_pubkey, per_commitment_point,
};
use lnhub_tx::sighash::sign;
use lnhub_tx::{
    build_commitment, generate_from_seed, htlc_tx, scripts, ChannelType, CommitmentSpec,
    HtlcTxKind, SecretStore, Side,
};
use secp256k1::{PublicKey, Secp256k1};
use vectors::{appendix_b as b, appendix_c as c, appendix_d as d, appendix_e as e};
use vectors::{appendix_f as f, fee_example as fe};

#[test]
fn appendix_b_funding_transaction() {
    let secp = Secp256k1::new();
    let params = params(&secp, ChannelType::StaticRemoteKey, 546);
    assert_eq!(
        hex::encode(params.funding_script().as_bytes()),
        b::FUNDING_WITNESS_SCRIPT
    );
    let funding_out = params.funding_output();
    assert_eq!(
        hex::encode(funding_out.script_pubkey.as_bytes()),
        b::FUNDING_OUTPUT_SCRIPT
    );
    assert_eq!(funding_out.value, Amount::from_sat(b::FUNDING_SATOSHIS));

    // Rebuild the spec's funding transaction around our funding output and
    // re-sign its P2PKH input with the coinbase key.
    let expected: Transaction = deserialize(&h(b::FUNDING_TX)).expect("tx");
    let coinbase: Transaction = deserialize(&h(b::BLOCK1_COINBASE_TX)).expect("tx");
    let mut tx = expected.clone();
    assert_eq!(tx.output[b::FUNDING_OUTPUT_INDEX as usize], funding_out);
    assert_eq!(tx.output[1].value, Amount::from_sat(b::CHANGE_SATOSHIS));
    let fee = Amount::from_sat(b::INPUT_SATOSHIS - b::FUNDING_SATOSHIS - b::CHANGE_SATOSHIS);
    assert!(fee > Amount::ZERO);
    let prev_spk = &coinbase.output[b::INPUT_INDEX as usize].script_pubkey;
    let key = sk(&b::BLOCK1_COINBASE_PRIVKEY[..64]);
    let pubkey = bitcoin::PublicKey::new(PublicKey::from_secret_key(&secp, &key));
    tx.input[0].script_sig = bitcoin::ScriptBuf::new();
    let hash = SighashCache::new(&tx)
        .legacy_signature_hash(0, prev_spk, EcdsaSighashType::All.to_u32())
        .expect("sighash");
    let signature = sign(
        &secp,
        &secp256k1::Message::from_digest(hash.to_byte_array()),
        &key,
    );
    let sig = bitcoin::ecdsa::Signature {
        signature,
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].script_sig = bitcoin::script::Builder::new()
        .push_slice(sig.serialize())
        .push_key(&pubkey)
        .into_script();
    assert_eq!(tx_hex(&tx), b::FUNDING_TX);
    assert_eq!(tx.compute_txid().to_string(), b::FUNDING_TXID);
    assert_eq!(b::LOCAL_FUNDING_PUBKEY, c::LOCAL_FUNDING_PUBKEY);
    assert_eq!(b::REMOTE_FUNDING_PUBKEY, c::REMOTE_FUNDING_PUBKEY);
    assert_eq!(b::INPUT_TXID, coinbase.compute_txid().to_string());
}

#[test]
fn appendix_c_keys_match_internal_derivation() {
    let secp = Secp256k1::new();
    let pcs = sk(c::LOCAL_PER_COMMITMENT_SECRET);
    let pcp = per_commitment_point(&secp, &pcs.secret_bytes()).expect("point");
    assert_eq!(pcp, pk(c::LOCAL_PER_COMMITMENT_POINT));
    let params = params(&secp, ChannelType::StaticRemoteKey, 546);
    let keys = local_keys(&secp, &params);
    let htlc = keys.htlc.expect("derive gives every key");
    assert_eq!(htlc.local_htlc_pubkey, pk(c::LOCAL_HTLCPUBKEY));
    assert_eq!(htlc.remote_htlc_pubkey, pk(c::REMOTE_HTLCPUBKEY));
    assert_eq!(keys.local_delayed_pubkey, pk(c::LOCAL_DELAYEDPUBKEY));
    assert_eq!(keys.revocation_pubkey, pk(c::LOCAL_REVOCATION_PUBKEY));
    assert_eq!(keys.remote_payment_pubkey, pk(c::REMOTE_PAYMENT_BASEPOINT));
    let local_htlc = derive_privkey(&secp, &sk(c::LOCAL_PAYMENT_BASEPOINT_SECRET), &pcp).unwrap();
    assert_eq!(local_htlc, sk(c::LOCAL_PRIVKEY));
    let remote_htlc = derive_privkey(&secp, &sk(c::REMOTE_PAYMENT_BASEPOINT_SECRET), &pcp).unwrap();
    assert_eq!(remote_htlc, sk(c::REMOTE_PRIVKEY));
    let delayed =
        derive_privkey(&secp, &sk(c::LOCAL_DELAYED_PAYMENT_BASEPOINT_SECRET), &pcp).unwrap();
    assert_eq!(delayed, sk(c::LOCAL_DELAYED_PRIVKEY));
    let revocation =
        derive_revocation_privkey(&secp, &sk(c::REMOTE_REVOCATION_BASEPOINT_SECRET), &pcs).unwrap();
    assert_eq!(
        PublicKey::from_secret_key(&secp, &revocation),
        keys.revocation_pubkey
    );
    assert_eq!(
        hex::encode(params.funding_script().as_bytes()),
        c::FUNDING_WITNESS_SCRIPT
    );
    // "obscured commitment number = 0x2bb038521914 ^ 42"
    assert_eq!(params.obscuring_factor(), 0x2bb0_3852_1914);
}

/// Checks one commitment and all its HTLC transactions against the spec.
#[allow(clippy::too_many_arguments)]
fn check_commitment(
    channel_type: ChannelType,
    dust: u64,
    name: &str,
    to_local_msat: u64,
    to_remote_msat: u64,
    feerate_per_kw: u32,
    htlc_ids: &[u64],
    commit_tx: &str,
    remote_sig_hex: &str,
    htlc_vectors: &[(Option<u64>, &str, &str)],
) {
    let secp = Secp256k1::new();
    let params = params(&secp, channel_type, dust);
    let keys = local_keys(&secp, &params);
    let specs = htlcs(htlc_ids);
    let spec = CommitmentSpec {
        commitment_number: c::COMMITMENT_NUMBER,
        feerate_per_kw,
        to_local_msat,
        to_remote_msat,
        htlcs: &specs,
    };
    let commitment = build_commitment(&params, Side::Local, &keys, &spec).expect(name);
    let msg = commitment.sighash(&params);
    let local_sig = sign(&secp, &msg, &sk(c::LOCAL_FUNDING_PRIVKEY));
    let remote_sig = sign(&secp, &msg, &sk(c::REMOTE_FUNDING_PRIVKEY));
    assert_eq!(
        hex::encode(remote_sig.serialize_der()),
        remote_sig_hex,
        "{name}: remote sig"
    );
    let signed = commitment.signed(&params, &local_sig, &remote_sig);
    assert_eq!(tx_hex(&signed), commit_tx, "{name}: commitment tx");
    lnhub_tx::accounting::check_commitment_value(&params, &spec, &commitment).expect(name);

    let order: Vec<usize> = commitment.htlc_indices_in_output_order().collect();
    assert_eq!(
        order.len(),
        htlc_vectors.len(),
        "{name}: number of HTLC txs"
    );
    let local_htlc_key = sk(c::LOCAL_PRIVKEY);
    let remote_htlc_key = sk(c::REMOTE_PRIVKEY);
    for (htlc_index, (spec_id, remote_hex, tx_hex_expected)) in order.into_iter().zip(htlc_vectors)
    {
        let htlc = &specs[htlc_index];
        if let Some(id) = spec_id {
            assert_eq!(htlc.id, *id, "{name}: HTLC order");
        }
        let htx = htlc_tx(&commitment, htlc_index).expect("untrimmed");
        let remote = sign(&secp, &htx.remote_sighash(), &remote_htlc_key);
        let local = sign(&secp, &htx.local_sighash(), &local_htlc_key);
        assert_eq!(
            hex::encode(remote.serialize_der()),
            *remote_hex,
            "{name}: remote HTLC sig"
        );
        let preimage = preimage(htlc.id);
        let preimage = (htx.kind() == HtlcTxKind::Success).then_some(&preimage);
        let signed = htx.signed(&remote, &local, preimage).expect("kind matches");
        assert_eq!(
            tx_hex(&signed),
            *tx_hex_expected,
            "{name}: HTLC {} tx",
            htlc.id
        );
    }
}

#[test]
fn appendix_c_all_commitments_and_htlc_txs() {
    let mut htlc_txs = 0;
    for v in c::COMMITMENTS.iter() {
        // The explicit local signatures too.
        let secp = Secp256k1::new();
        let params = params(
            &secp,
            ChannelType::StaticRemoteKey,
            c::LOCAL_DUST_LIMIT_SATOSHI,
        );
        let keys = local_keys(&secp, &params);
        let specs = htlcs(v.htlcs);
        let spec = CommitmentSpec {
            commitment_number: c::COMMITMENT_NUMBER,
            feerate_per_kw: v.feerate_per_kw,
            to_local_msat: v.to_local_msat,
            to_remote_msat: v.to_remote_msat,
            htlcs: &specs,
        };
        let commitment = build_commitment(&params, Side::Local, &keys, &spec).unwrap();
        let local = sign(
            &secp,
            &commitment.sighash(&params),
            &sk(c::LOCAL_FUNDING_PRIVKEY),
        );
        assert_eq!(
            hex::encode(local.serialize_der()),
            v.local_signature,
            "{}",
            v.name
        );
        for (i, t) in v.htlc_txs.iter().enumerate() {
            let htlc_index = commitment.htlc_indices_in_output_order().nth(i).unwrap();
            assert_eq!(
                commitment.htlcs()[htlc_index].output_index,
                Some(t.commit_output_index)
            );
            let htx = htlc_tx(&commitment, htlc_index).unwrap();
            assert_eq!(htx.kind() == HtlcTxKind::Success, t.success);
            let local = sign(&secp, &htx.local_sighash(), &sk(c::LOCAL_PRIVKEY));
            assert_eq!(
                hex::encode(local.serialize_der()),
                t.local_htlc_signature,
                "{}",
                v.name
            );
        }

        let htlc_vectors: Vec<_> = v
            .htlc_txs
            .iter()
            .map(|t| (Some(t.htlc), t.remote_htlc_signature, t.tx))
            .collect();
        htlc_txs += htlc_vectors.len();
        check_commitment(
            ChannelType::StaticRemoteKey,
            c::LOCAL_DUST_LIMIT_SATOSHI,
            v.name,
            v.to_local_msat,
            v.to_remote_msat,
            v.feerate_per_kw,
            v.htlcs,
            v.commit_tx,
            v.remote_signature,
            &htlc_vectors,
        );
    }
    assert_eq!(c::COMMITMENTS.len(), 16);
    assert_eq!(htlc_txs, 33);
}

#[test]
fn appendix_f_all_anchor_commitments_and_htlc_txs() {
    let mut htlc_txs = 0;
    for v in f::COMMITMENTS.iter() {
        let htlc_vectors: Vec<_> = v
            .htlc_descs
            .iter()
            .map(|d| (None, d.remote_sig, d.resolution_tx))
            .collect();
        htlc_txs += htlc_vectors.len();
        check_commitment(
            ChannelType::Anchors,
            v.dust_limit_satoshis,
            v.name,
            v.local_balance_msat,
            v.remote_balance_msat,
            v.fee_per_kw,
            v.htlcs,
            v.commit_tx,
            v.remote_sig,
            &htlc_vectors,
        );
    }
    assert_eq!(f::COMMITMENTS.len(), 9);
    assert_eq!(htlc_txs, 15);
}

#[test]
fn appendix_d_generation() {
    for (name, seed, index, output) in d::GENERATION {
        assert_eq!(
            hex::encode(generate_from_seed(&h32(seed), index)),
            output,
            "{name}"
        );
    }
}

#[test]
fn appendix_d_storage() {
    let mut errors = 0;
    for (name, steps) in d::STORAGE {
        let mut store = SecretStore::new();
        for (index, secret, ok) in steps {
            let result = store.insert(*index, h32(secret));
            assert_eq!(result.is_ok(), *ok, "{name}: index {index}: {result:?}");
            if result.is_err() {
                errors += 1;
            } else {
                assert_eq!(store.get(*index), Some(h32(secret)));
            }
        }
    }
    assert_eq!(errors, 8);
}

#[test]
fn appendix_e_key_derivation() {
    let secp = Secp256k1::new();
    let base_secret = sk(e::BASE_SECRET);
    let per_commitment_secret = sk(e::PER_COMMITMENT_SECRET);
    let base_point = pk(e::BASE_POINT);
    let pcp = pk(e::PER_COMMITMENT_POINT);
    assert_eq!(PublicKey::from_secret_key(&secp, &base_secret), base_point);
    assert_eq!(
        per_commitment_point(&secp, &per_commitment_secret.secret_bytes()).unwrap(),
        pcp
    );
    assert_eq!(
        derive_pubkey(&secp, &base_point, &pcp).unwrap(),
        pk(e::LOCALPUBKEY)
    );
    assert_eq!(
        derive_privkey(&secp, &base_secret, &pcp).unwrap(),
        sk(e::LOCALPRIVKEY)
    );
    assert_eq!(
        derive_privkey_from_basepoint(&base_secret, &base_point, &pcp).unwrap(),
        sk(e::LOCALPRIVKEY)
    );
    assert_eq!(
        derive_revocation_pubkey(&secp, &base_point, &pcp).unwrap(),
        pk(e::REVOCATIONPUBKEY)
    );
    assert_eq!(
        derive_revocation_privkey(&secp, &base_secret, &per_commitment_secret).unwrap(),
        sk(e::REVOCATIONPRIVKEY)
    );
}

#[test]
fn fee_example_and_expected_weights() {
    use lnhub_tx::fees::*;
    assert_eq!(
        COMMITMENT_BASE_WEIGHT,
        fe::WEIGHT_COMMITMENT_BASE_NO_ANCHORS
    );
    assert_eq!(
        COMMITMENT_BASE_WEIGHT_ANCHORS,
        fe::WEIGHT_COMMITMENT_BASE_ANCHORS
    );
    assert_eq!(HTLC_OUTPUT_WEIGHT, fe::WEIGHT_PER_UNTRIMMED_HTLC);
    assert_eq!(HTLC_TIMEOUT_WEIGHT, fe::WEIGHT_HTLC_TIMEOUT_NO_ANCHORS);
    assert_eq!(HTLC_TIMEOUT_WEIGHT_ANCHORS, fe::WEIGHT_HTLC_TIMEOUT_ANCHORS);
    assert_eq!(HTLC_SUCCESS_WEIGHT, fe::WEIGHT_HTLC_SUCCESS_NO_ANCHORS);
    assert_eq!(HTLC_SUCCESS_WEIGHT_ANCHORS, fe::WEIGHT_HTLC_SUCCESS_ANCHORS);
    let ct = ChannelType::StaticRemoteKey;
    let dust = Amount::from_sat(fe::DUST_LIMIT_SATOSHIS);
    assert_eq!(
        htlc_timeout_fee(ct, fe::FEERATE_PER_KW).to_sat(),
        fe::HTLC_TIMEOUT_FEE_SAT
    );
    assert_eq!(
        htlc_success_fee(ct, fe::FEERATE_PER_KW).to_sat(),
        fe::HTLC_SUCCESS_FEE_SAT
    );
    let mut untrimmed = 0;
    let mut trimmed_sat = 0;
    for (offered, msat) in fe::OFFERED_HTLCS_MSAT
        .iter()
        .map(|m| (true, *m))
        .chain(fe::RECEIVED_HTLCS_MSAT.iter().map(|m| (false, *m)))
    {
        if is_trimmed(ct, fe::FEERATE_PER_KW, dust, offered, msat) {
            trimmed_sat += msat / 1000;
        } else {
            let expected = if offered {
                fe::UNTRIMMED.0[0]
            } else {
                fe::UNTRIMMED.1[0]
            };
            assert_eq!(msat / 1000, expected);
            untrimmed += 1;
        }
    }
    assert_eq!(
        COMMITMENT_BASE_WEIGHT + HTLC_OUTPUT_WEIGHT * untrimmed,
        fe::COMMITMENT_WEIGHT
    );
    let base = commitment_base_fee(ct, fe::FEERATE_PER_KW, untrimmed as usize).to_sat();
    assert_eq!(base, fe::BASE_FEE_SAT);
    assert_eq!(base + trimmed_sat, fe::ACTUAL_FEE_SAT);
    // Scripts module sanity: the anchor script is 40 bytes (BOLT 3 weight).
    let secp = Secp256k1::new();
    assert_eq!(scripts::anchor_script(&unused_point(&secp, 1)).len(), 40);
}
