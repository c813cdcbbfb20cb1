//! Every malformed case maps to the BOLT 4 / BOLT 2 response, plus the
//! malformed-to-fail conversion, the replay set in use, and the fuzz entry.

mod common;

use common::{build, key, payload, payload_with};
use lnhub_onion::blinding::BlindingError;
use lnhub_onion::error_packet::{decode_error_packet, malformed_to_error_packet, MalformedError};
use lnhub_onion::failure::{self, FailureMessage};
use lnhub_onion::fuzz_peel;
use lnhub_onion::packet::sha256_of_onion;
use lnhub_onion::payload::{PayloadFields, TLV_SHORT_CHANNEL_ID};
use lnhub_onion::peel::{peel, OnionFailure, PeelError, PeeledHop};
use lnhub_onion::replay::{ReplayConfig, ReplayError, ReplaySet};
use secp256k1::{PublicKey, Secp256k1};

#[test]
fn pre_hmac_faults_are_malformed_with_sha256_of_onion() {
    let secp = Secp256k1::new();
    let nodes = [key(1), key(2)];
    let payloads = vec![payload(0, false, &[]), payload(1, true, &[])];
    let (onion, _) = build(&secp, &key(9), &nodes, &payloads, &[0; 32]);
    let mut out = PeeledHop::new();
    let cases: [(usize, u8, u16); 3] = [
        (0, 1, failure::INVALID_ONION_VERSION),
        (1, 0xff, failure::INVALID_ONION_KEY), // 0x02 -> 0xfd: not a key prefix
        (40, 1, failure::INVALID_ONION_HMAC),
    ];
    for (pos, x, code) in cases {
        let mut bad = onion;
        bad[pos] ^= x;
        let err = peel(&secp, &nodes[0], &bad, &[0; 32], None, &mut out).unwrap_err();
        assert_eq!(
            err,
            OnionFailure::Malformed {
                failure_code: code,
                sha256_of_onion: sha256_of_onion(&bad),
                cause: err.cause()
            }
        );
    }
    // Wrong associated data is an HMAC failure too.
    let err = peel(&secp, &nodes[0], &onion, &[1; 32], None, &mut out).unwrap_err();
    assert_eq!(err.cause(), PeelError::HmacMismatch);
    // With a path_key every fault becomes invalid_onion_blinding, malformed.
    let pk = PublicKey::from_secret_key(&secp, &key(5));
    let err = peel(&secp, &nodes[0], &onion, &[0; 32], Some(&pk), &mut out).unwrap_err();
    assert_eq!(err.failure_code(), failure::INVALID_ONION_BLINDING);
    assert!(matches!(err, OnionFailure::Malformed { .. }));
}

#[test]
fn payload_faults_are_encrypted_invalid_onion_payload() {
    let secp = Secp256k1::new();
    let nodes = [key(1), key(2)];
    // Forwarding payload without short_channel_id.
    let payloads = vec![payload_with(0, 5, 6, true, &[]), payload(1, true, &[])];
    let (onion, secrets) = build(&secp, &key(9), &nodes, &payloads, &[0; 32]);
    let mut out = PeeledHop::new();
    let err = peel(&secp, &nodes[0], &onion, &[0; 32], None, &mut out).unwrap_err();
    match err {
        OnionFailure::Fail {
            shared_secret,
            message,
            ..
        } => {
            assert_eq!(shared_secret, secrets[0]);
            assert_eq!(
                message,
                FailureMessage::InvalidOnionPayload {
                    typ: TLV_SHORT_CHANNEL_ID,
                    offset: 0
                }
            );
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    // Unknown even type 20 after amt(3) + cltv(3): offset 6... payload_with(0, 5, 6) = 02 01 05 04 01 06.
    let mut p = Vec::new();
    PayloadFields {
        amt_to_forward: Some(lnhub_wire::types::Msat(5)),
        outgoing_cltv_value: Some(6),
        extra_records: &[(20, &[1])],
        ..Default::default()
    }
    .write(&mut p);
    let (onion, _) = build(&secp, &key(9), &nodes[..1], &[p], &[0; 32]);
    let err = peel(&secp, &nodes[0], &onion, &[0; 32], None, &mut out).unwrap_err();
    assert_eq!(err.failure_code(), failure::INVALID_ONION_PAYLOAD);
    assert!(matches!(
        err,
        OnionFailure::Fail {
            message: FailureMessage::InvalidOnionPayload { typ: 20, offset: 6 },
            ..
        }
    ));
}

#[test]
fn current_path_key_without_encrypted_data_at_relay_is_invalid_onion_blinding() {
    let secp = Secp256k1::new();
    let nodes = [key(1), key(2)];
    let mut p = Vec::new();
    PayloadFields {
        current_path_key: Some(PublicKey::from_secret_key(&secp, &key(7))),
        ..Default::default()
    }
    .write(&mut p);
    let (onion, _) = build(
        &secp,
        &key(9),
        &nodes,
        &[p, payload(1, true, &[])],
        &[0; 32],
    );
    let mut out = PeeledHop::new();
    let err = peel(&secp, &nodes[0], &onion, &[0; 32], None, &mut out).unwrap_err();
    assert!(matches!(
        err,
        OnionFailure::Fail {
            message: FailureMessage::InvalidOnionBlinding { .. },
            cause: PeelError::Blinding(BlindingError::MissingEncryptedData),
            ..
        }
    ));
}

#[test]
fn malformed_from_downstream_becomes_encrypted_fail_upstream() {
    let ss = [[3u8; 32], [4u8; 32]];
    let mut pkt = Vec::new();
    malformed_to_error_packet(&ss[0], failure::INVALID_ONION_HMAC, [9; 32], &mut pkt).unwrap();
    let d = decode_error_packet(&ss, &pkt).unwrap();
    assert_eq!(d.hop, 0);
    assert_eq!(
        d.failure.unwrap().message,
        FailureMessage::InvalidOnionHmac {
            sha256_of_onion: [9; 32]
        }
    );
    assert_eq!(
        malformed_to_error_packet(&ss[0], failure::TEMPORARY_NODE_FAILURE, [9; 32], &mut pkt),
        Err(MalformedError::NotBadOnion(failure::TEMPORARY_NODE_FAILURE))
    );
}

#[test]
fn replayed_onion_is_refused_until_it_expires() {
    let secp = Secp256k1::new();
    let nodes = [key(1), key(2)];
    let (onion, _) = build(
        &secp,
        &key(9),
        &nodes,
        &[payload(0, false, &[]), payload(1, true, &[])],
        &[0; 32],
    );
    let mut out = PeeledHop::new();
    let mut set = ReplaySet::new(ReplayConfig::default(), 799_000);
    peel(&secp, &nodes[0], &onion, &[0; 32], None, &mut out).unwrap();
    let expiry = out.replay_expiry(800_100);
    assert_eq!(
        expiry, 800_000,
        "bounded by the authenticated outgoing_cltv_value"
    );
    set.check_and_insert(out.shared_secret(), expiry).unwrap();
    peel(&secp, &nodes[0], &onion, &[0; 32], None, &mut out).unwrap();
    assert_eq!(
        set.check_and_insert(out.shared_secret(), expiry),
        Err(ReplayError::Replayed)
    );
    set.handle_block_height(800_000);
    assert!(set.is_empty());
}

#[test]
fn fuzz_entry_never_panics_on_edge_inputs() {
    let secp = Secp256k1::new();
    let (onion, _) = build(
        &secp,
        &key(9),
        &[key(0x41414141)],
        &[payload(0, true, &[])],
        &[0; 32],
    );
    for data in [&[][..], &[0u8; 10][..], &[0xffu8; 2000][..], &onion[..]] {
        fuzz_peel(data);
    }
}
