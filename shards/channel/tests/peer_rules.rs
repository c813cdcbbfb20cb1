//! One test per BOLT 2 MUST that refuses a peer message, checking the
//! action the channel returns (and that a failed channel takes no more
//! input), plus the local send rules and the durability gate.

mod common;

use bitcoin::hashes::{sha256, Hash};
use common::{deliver, drain, pair, pump, receive_commitment, sign, Agreement, Reported};
use lnhub_channel::{Channel, ChannelError, Effect, RemovalKind, SendError};
use lnhub_tx::shachain::generate_from_seed;
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::{
    CommitmentSigned, RevokeAndAck, UpdateAddHtlc, UpdateFailHtlc, UpdateFailMalformedHtlc,
    UpdateFee, UpdateFulfillHtlc, ONION_PACKET_LEN,
};
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, PaymentPreimage, Txid};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

const CLTV: u32 = 800_000;

fn setup(agreement: &Agreement) -> (Secp256k1<All>, Channel, Channel) {
    let secp = Secp256k1::new();
    let (a, b) = pair(&secp, 7, agreement);
    (secp, a, b)
}

fn default_setup() -> (Secp256k1<All>, Channel, Channel) {
    setup(&Agreement::default_for(ChannelType::Anchors))
}

/// Limits on value in flight out of the way, to reach the balance rules.
fn unlimited_in_flight() -> (Secp256k1<All>, Channel, Channel) {
    let mut agreement = Agreement::default_for(ChannelType::Anchors);
    agreement.limits_a.max_htlc_value_in_flight_msat = Msat(u64::MAX);
    agreement.limits_b.max_htlc_value_in_flight_msat = Msat(u64::MAX);
    setup(&agreement)
}

fn preimage(i: u8) -> PaymentPreimage {
    PaymentPreimage([i; 32])
}

fn hash(p: PaymentPreimage) -> PaymentHash {
    PaymentHash(sha256::Hash::hash(&p.0).to_byte_array())
}

fn add_msg(ch: &Channel, id: u64, amount_msat: u64, cltv_expiry: u32) -> UpdateAddHtlc {
    UpdateAddHtlc {
        channel_id: ch.channel_id(),
        id,
        amount_msat: Msat(amount_msat),
        payment_hash: hash(preimage(1)),
        cltv_expiry,
        onion_routing_packet: [0; ONION_PACKET_LEN],
        blinded_path: None,
        unknown_tlvs: Vec::new(),
    }
}

/// Asserts a `Close` and that the channel then ignores everything.
fn assert_closed(ch: &mut Channel, r: Result<(), ChannelError>, needle: &str) {
    match r {
        Err(ChannelError::Close(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Close containing {needle:?}, got {other:?}"),
    }
    assert!(ch.is_failed());
    let next = add_msg(ch, ch.book().next_remote_htlc_id(), 10_000, CLTV);
    assert!(matches!(
        ch.handle_update_add_htlc(&next),
        Err(ChannelError::Ignore(_))
    ));
}

/// A (funder) offers `amount_msat` to B and the dance completes.
fn committed_htlc(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
    p: PaymentPreimage,
    amount_msat: u64,
) -> u64 {
    let id = a
        .send_add_htlc(Msat(amount_msat), hash(p), CLTV, &[0; ONION_PACKET_LEN])
        .expect("affordable");
    let (_, rb) = pump(secp, a, b).expect("honest peers");
    assert_eq!(rb.forwards, vec![id], "B forwards the HTLC once committed");
    id
}

// ---- update_add_htlc ----

#[test]
fn add_with_wrong_id_fails_channel() {
    let (_, a, mut b) = default_setup();
    let r = b.handle_update_add_htlc(&add_msg(&a, 1, 10_000, CLTV));
    assert_closed(&mut b, r, "id 1 but 0 expected");
}

#[test]
fn add_of_zero_or_below_minimum_fails_channel() {
    let (_, a, mut b) = default_setup();
    let r = b.handle_update_add_htlc(&add_msg(&a, 0, 0, CLTV));
    assert_closed(&mut b, r, "below htlc_minimum_msat");
    let (_, a, mut b) = default_setup();
    let r = b.handle_update_add_htlc(&add_msg(&a, 0, 999, CLTV));
    assert_closed(&mut b, r, "below htlc_minimum_msat");
}

#[test]
fn add_with_timestamp_expiry_fails_channel() {
    let (_, a, mut b) = default_setup();
    let r = b.handle_update_add_htlc(&add_msg(&a, 0, 10_000, 500_000_000));
    assert_closed(&mut b, r, "not a block height");
}

#[test]
fn add_beyond_max_accepted_htlcs_fails_channel() {
    let mut agreement = Agreement::default_for(ChannelType::Anchors);
    agreement.limits_b.max_accepted_htlcs = 2;
    let (_, a, mut b) = setup(&agreement);
    b.handle_update_add_htlc(&add_msg(&a, 0, 10_000, CLTV))
        .unwrap();
    b.handle_update_add_htlc(&add_msg(&a, 1, 10_000, CLTV))
        .unwrap();
    let r = b.handle_update_add_htlc(&add_msg(&a, 2, 10_000, CLTV));
    assert_closed(&mut b, r, "max_accepted_htlcs is 2");
}

#[test]
fn add_beyond_max_in_flight_fails_channel() {
    let mut agreement = Agreement::default_for(ChannelType::Anchors);
    agreement.limits_b.max_htlc_value_in_flight_msat = Msat(10_000_000);
    let (_, a, mut b) = setup(&agreement);
    b.handle_update_add_htlc(&add_msg(&a, 0, 6_000_000, CLTV))
        .unwrap();
    let r = b.handle_update_add_htlc(&add_msg(&a, 1, 6_000_000, CLTV));
    assert_closed(&mut b, r, "max_htlc_value_in_flight_msat");
}

#[test]
fn add_breaking_sender_reserve_fails_channel() {
    let (_, a, mut b) = unlimited_in_flight();
    // A has 7,000,000 sat and must keep 100,000 sat.
    let r = b.handle_update_add_htlc(&add_msg(&a, 0, 6_950_000_000, CLTV));
    assert_closed(&mut b, r, "cannot afford");
}

#[test]
fn add_leaving_funder_unable_to_pay_fee_fails_channel() {
    let (_, a, mut b) = unlimited_in_flight();
    // Reserve kept with 1,000 sat to spare: less than the anchor commitment fee.
    let amount = 7_000_000_000 - 100_000_000 - 1_000_000;
    let r = b.handle_update_add_htlc(&add_msg(&a, 0, amount, CLTV));
    assert_closed(&mut b, r, "cannot afford");
}

#[test]
fn add_beyond_sender_balance_fails_channel() {
    let (_, a, mut b) = unlimited_in_flight();
    let r = b.handle_update_add_htlc(&add_msg(&a, 0, 8_000_000_000, CLTV));
    assert_closed(&mut b, r, "exceeds the sender's balance");
}

#[test]
fn non_funder_add_breaking_its_reserve_fails_channel() {
    let (_, mut a, b) = unlimited_in_flight();
    // B has 3,000,000 sat and must keep 100,000 sat.
    let r = a.handle_update_add_htlc(&add_msg(&b, 0, 2_950_000_000, CLTV));
    assert_closed(&mut a, r, "cannot afford");
}

#[test]
fn duplicate_payment_hashes_are_allowed() {
    let (_, a, mut b) = default_setup();
    b.handle_update_add_htlc(&add_msg(&a, 0, 10_000, CLTV))
        .unwrap();
    b.handle_update_add_htlc(&add_msg(&a, 1, 10_000, CLTV))
        .unwrap();
    assert_eq!(b.book().htlcs().len(), 2);
}

#[test]
fn message_for_another_channel_warns() {
    let (_, a, mut b) = default_setup();
    let mut m = add_msg(&a, 0, 10_000, CLTV);
    m.channel_id = ChannelId([9; 32]);
    assert!(matches!(
        b.handle_update_add_htlc(&m),
        Err(ChannelError::Warn(_))
    ));
    assert!(!b.is_failed());
}

// ---- removals ----

#[test]
fn fulfill_of_unknown_or_uncommitted_htlc_fails_channel() {
    let (_, mut a, b) = default_setup();
    let m = UpdateFulfillHtlc {
        channel_id: b.channel_id(),
        id: 0,
        payment_preimage: preimage(1),
        attribution_data: None,
        unknown_tlvs: Vec::new(),
    };
    let r = a.handle_update_fulfill_htlc(&m);
    assert_closed(&mut a, r, "not in our current commitment");

    // Offered but not yet irrevocably committed.
    let (_, mut a, _) = default_setup();
    a.send_add_htlc(
        Msat(10_000_000),
        hash(preimage(1)),
        CLTV,
        &[0; ONION_PACKET_LEN],
    )
    .unwrap();
    let r = a.handle_update_fulfill_htlc(&m);
    assert_closed(&mut a, r, "not in our current commitment");
}

#[test]
fn fulfill_with_wrong_preimage_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let id = committed_htlc(&secp, &mut a, &mut b, preimage(1), 10_000_000);
    let m = UpdateFulfillHtlc {
        channel_id: b.channel_id(),
        id,
        payment_preimage: preimage(2),
        attribution_data: None,
        unknown_tlvs: Vec::new(),
    };
    let r = a.handle_update_fulfill_htlc(&m);
    assert_closed(&mut a, r, "preimage does not match");
}

#[test]
fn second_removal_of_one_htlc_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let id = committed_htlc(&secp, &mut a, &mut b, preimage(1), 10_000_000);
    let fulfill = UpdateFulfillHtlc {
        channel_id: b.channel_id(),
        id,
        payment_preimage: preimage(1),
        attribution_data: None,
        unknown_tlvs: Vec::new(),
    };
    a.handle_update_fulfill_htlc(&fulfill).unwrap();
    let fail = UpdateFailHtlc {
        channel_id: b.channel_id(),
        id,
        reason: vec![1; 32],
        attribution_data: None,
        unknown_tlvs: Vec::new(),
    };
    let r = a.handle_update_fail_htlc(fail);
    assert_closed(&mut a, r, "removed twice");
}

#[test]
fn fail_of_unknown_htlc_fails_channel() {
    let (_, mut a, b) = default_setup();
    let fail = UpdateFailHtlc {
        channel_id: b.channel_id(),
        id: 3,
        reason: vec![1; 32],
        attribution_data: None,
        unknown_tlvs: Vec::new(),
    };
    let r = a.handle_update_fail_htlc(fail);
    assert_closed(&mut a, r, "not in our current commitment");
}

#[test]
fn fail_malformed_without_badonion_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let id = committed_htlc(&secp, &mut a, &mut b, preimage(1), 10_000_000);
    let m = UpdateFailMalformedHtlc {
        channel_id: b.channel_id(),
        id,
        sha256_of_onion: [0; 32],
        failure_code: 0x4000 | 5,
        unknown_tlvs: Vec::new(),
    };
    let r = a.handle_update_fail_malformed_htlc(&m);
    assert_closed(&mut a, r, "lacks BADONION");
}

// ---- update_fee ----

fn fee_msg(ch: &Channel, feerate_per_kw: u32) -> UpdateFee {
    UpdateFee {
        channel_id: ch.channel_id(),
        feerate_per_kw,
        unknown_tlvs: Vec::new(),
    }
}

#[test]
fn update_fee_from_non_funder_fails_channel() {
    let (_, mut a, b) = default_setup();
    let r = a.handle_update_fee(&fee_msg(&b, 3_000));
    assert_closed(&mut a, r, "non-funder");
}

#[test]
fn update_fee_out_of_range_fails_channel() {
    let (_, a, mut b) = default_setup();
    let r = b.handle_update_fee(&fee_msg(&a, 252));
    assert_closed(&mut b, r, "outside");
    let (_, a, mut b) = default_setup();
    let r = b.handle_update_fee(&fee_msg(&a, 100_001));
    assert_closed(&mut b, r, "outside");
}

#[test]
fn update_fee_funder_cannot_afford_fails_channel() {
    let mut agreement = Agreement::default_for(ChannelType::Anchors);
    agreement.push_msat = 9_899_000_000; // A keeps 101,000 sat.
    let (_, a, mut b) = setup(&agreement);
    // 1124 weight at 100,000 sat/kw is 112,400 sat.
    let r = b.handle_update_fee(&fee_msg(&a, 100_000));
    assert_closed(&mut b, r, "cannot pay the commitment fee");
}

/// BOLT 2 makes failing the channel on an `update_fee` that trims more
/// than our dust exposure limit a MAY; lnhub takes the update (an honest
/// funder can cross the limit in a reconnection race, see
/// `check_remote_fee`), and as funder never sends one.
#[test]
fn update_fee_trimming_too_much_dust_is_taken_but_never_sent() {
    let (_, mut a, mut b) = setup(&Agreement::default_for(ChannelType::StaticRemoteKey));
    for i in 0..3 {
        a.send_add_htlc(
            Msat(3_000_000),
            hash(preimage(i)),
            CLTV,
            &[0; ONION_PACKET_LEN],
        )
        .expect("not dust at 2,500 sat/kw");
    }
    // At 10,000 sat/kw the HTLC-success fee (7,030 sat) trims all three.
    assert_eq!(a.send_update_fee(10_000), Err(SendError::DustExposure));
    for m in drain(&mut a, &mut Reported::default()) {
        deliver(&Secp256k1::new(), &mut b, m).unwrap();
    }
    b.handle_update_fee(&fee_msg(&a, 10_000))
        .expect("taken: a MAY lnhub does not exercise");
    assert!(!b.is_failed());
}

// ---- commitment_signed ----

/// A offers an HTLC and signs; returns its `commitment_signed`.
fn signed_add(secp: &Secp256k1<All>, a: &mut Channel, b: &mut Channel) -> CommitmentSigned {
    a.send_add_htlc(
        Msat(50_000_000),
        hash(preimage(1)),
        CLTV,
        &[0; ONION_PACKET_LEN],
    )
    .unwrap();
    assert!(sign(secp, a).unwrap());
    let mut cs = None;
    for m in drain(a, &mut Reported::default()) {
        match m {
            Message::CommitmentSigned(m) => cs = Some(m),
            m => deliver(secp, b, m).unwrap(),
        }
    }
    cs.expect("A signed")
}

#[test]
fn commitment_signed_with_wrong_htlc_signature_count_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let mut cs = signed_add(&secp, &mut a, &mut b);
    cs.htlc_signature.clear();
    let r = receive_commitment(&secp, &mut b, cs);
    assert_closed(&mut b, r, "0 htlc_signatures for 1 HTLC outputs");
}

#[test]
fn commitment_signed_with_bad_signature_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let mut cs = signed_add(&secp, &mut a, &mut b);
    core::mem::swap(&mut cs.signature, &mut cs.htlc_signature[0]);
    let r = receive_commitment(&secp, &mut b, cs);
    assert_closed(&mut b, r, "invalid commitment signature");
}

#[test]
fn commitment_signed_with_bad_htlc_signature_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let mut cs = signed_add(&secp, &mut a, &mut b);
    cs.htlc_signature[0] = cs.signature;
    let r = receive_commitment(&secp, &mut b, cs);
    assert_closed(&mut b, r, "invalid htlc_signature 0");
}

#[test]
fn commitment_signed_for_other_funding_is_ignored() {
    let (secp, mut a, mut b) = default_setup();
    let mut cs = signed_add(&secp, &mut a, &mut b);
    cs.funding_txid = Some(Txid([5; 32]));
    let r = b.stage_commitment_signed(&secp, cs).map(|_| ());
    assert!(matches!(r, Err(ChannelError::Ignore(_))), "{r:?}");
    assert!(!b.is_failed());
}

// ---- revoke_and_ack ----

#[test]
fn unexpected_revoke_and_ack_fails_channel() {
    let (secp, mut a, b) = default_setup();
    let m = RevokeAndAck {
        channel_id: b.channel_id(),
        per_commitment_secret: [1; 32],
        next_per_commitment_point: secp256k1::PublicKey::from_secret_key(
            &secp,
            &secp256k1::SecretKey::from_slice(&[1; 32]).unwrap(),
        ),
        unknown_tlvs: Vec::new(),
    };
    let r = a.handle_revoke_and_ack(&secp, &m);
    assert_closed(&mut a, r, "without a commitment to revoke");
}

/// B's `revoke_and_ack` for A's first signature.
fn first_revoke(secp: &Secp256k1<All>, a: &mut Channel, b: &mut Channel) -> RevokeAndAck {
    let cs = signed_add(secp, a, b);
    receive_commitment(secp, b, cs).unwrap();
    drain(b, &mut Reported::default())
        .into_iter()
        .find_map(|m| match m {
            Message::RevokeAndAck(m) => Some(m),
            _ => None,
        })
        .expect("B revokes")
}

#[test]
fn revoke_and_ack_with_wrong_secret_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let mut raa = first_revoke(&secp, &mut a, &mut b);
    raa.per_commitment_secret = generate_from_seed(&[3; 32], 1);
    let r = a.handle_revoke_and_ack(&secp, &raa);
    assert_closed(
        &mut a,
        r,
        "does not match the previous per_commitment_point",
    );
}

#[test]
fn revoke_and_ack_with_invalid_secret_key_fails_channel() {
    let (secp, mut a, mut b) = default_setup();
    let mut raa = first_revoke(&secp, &mut a, &mut b);
    raa.per_commitment_secret = [0; 32];
    let r = a.handle_revoke_and_ack(&secp, &raa);
    assert_closed(&mut a, r, "not a valid secret key");
}

// ---- local rules and durability ----

#[test]
fn local_sends_breaking_rules_are_refused_without_effect() {
    let (secp, mut a, mut b) = unlimited_in_flight();
    let onion = [0; ONION_PACKET_LEN];
    let h = hash(preimage(1));
    assert_eq!(
        a.send_add_htlc(Msat(999), h, CLTV, &onion),
        Err(SendError::BelowMinimum)
    );
    assert_eq!(
        a.send_add_htlc(Msat(10_000), h, 500_000_000, &onion),
        Err(SendError::InvalidCltvExpiry)
    );
    assert_eq!(
        a.send_add_htlc(Msat(6_950_000_000), h, CLTV, &onion),
        Err(SendError::InsufficientBalance)
    );
    assert_eq!(b.send_update_fee(3_000), Err(SendError::NotFunder));
    assert_eq!(a.send_update_fee(100), Err(SendError::FeerateOutOfRange));
    assert!(a.poll_effect().is_none(), "refused commands send nothing");
    let id = committed_htlc(&secp, &mut a, &mut b, preimage(1), 10_000_000);
    assert_eq!(
        b.send_fulfill_htlc(id, preimage(2)),
        Err(SendError::WrongPreimage)
    );
    assert_eq!(
        b.send_fail_htlc(id + 1, vec![]),
        Err(SendError::UnknownHtlc)
    );
}

#[test]
fn committing_messages_wait_for_their_persist() {
    let (secp, mut a, _) = default_setup();
    a.send_add_htlc(
        Msat(50_000_000),
        hash(preimage(1)),
        CLTV,
        &[0; ONION_PACKET_LEN],
    )
    .unwrap();
    assert!(matches!(
        a.poll_effect(),
        Some(Effect::Send(Message::UpdateAddHtlc(_)))
    ));
    assert!(sign(&secp, &mut a).unwrap());
    let Some(Effect::Persist { seq }) = a.poll_effect() else {
        panic!("signing asks for a persist first");
    };
    // Another update after the signature queues behind it.
    a.send_add_htlc(
        Msat(50_000_000),
        hash(preimage(2)),
        CLTV,
        &[0; ONION_PACKET_LEN],
    )
    .unwrap();
    assert_eq!(
        a.poll_effect(),
        None,
        "commitment_signed held until durable"
    );
    a.handle_persisted(seq);
    assert!(matches!(
        a.poll_effect(),
        Some(Effect::Send(Message::CommitmentSigned(_)))
    ));
    assert!(matches!(
        a.poll_effect(),
        Some(Effect::Send(Message::UpdateAddHtlc(_)))
    ));
    assert_eq!(a.poll_effect(), None);
}

#[test]
fn preimage_is_reported_once_durable_and_failure_once_irrevocable() {
    let (secp, mut a, mut b) = default_setup();
    let id = committed_htlc(&secp, &mut a, &mut b, preimage(1), 10_000_000);
    b.send_fulfill_htlc(id, preimage(1)).unwrap();
    let Some(Effect::Persist { seq }) = b.poll_effect() else {
        panic!("a fulfill is persisted before it leaves");
    };
    assert_eq!(b.poll_effect(), None);
    b.handle_persisted(seq);
    let Some(Effect::Send(Message::UpdateFulfillHtlc(f))) = b.poll_effect() else {
        panic!("fulfill released");
    };
    a.handle_update_fulfill_htlc(&f).unwrap();
    let Some(Effect::Persist { seq }) = a.poll_effect() else {
        panic!("a learned preimage is persisted first");
    };
    assert_eq!(a.poll_effect(), None);
    a.handle_persisted(seq);
    assert_eq!(
        a.poll_effect(),
        Some(Effect::Resolved {
            htlc_id: id,
            resolution: RemovalKind::Fulfill(preimage(1))
        })
    );
    let (ra, _) = pump(&secp, &mut a, &mut b).unwrap();
    assert!(ra.resolved.is_empty(), "a fulfilled HTLC is resolved once");
    assert!(a.book().htlcs().is_empty() && b.book().htlcs().is_empty());

    let id = committed_htlc(&secp, &mut a, &mut b, preimage(3), 10_000_000);
    b.send_fail_htlc(id, vec![7; 32]).unwrap();
    let (ra, _) = pump(&secp, &mut a, &mut b).unwrap();
    assert_eq!(ra.resolved, vec![(id, RemovalKind::Fail(vec![7; 32]))]);
}

#[test]
fn verify_batch_maps_failures_to_their_channel() {
    let (secp, mut a1, mut b1) = default_setup();
    let (_, mut a2, mut b2) = default_setup();
    let good = signed_add(&secp, &mut a1, &mut b1);
    let mut bad = signed_add(&secp, &mut a2, &mut b2);
    bad.htlc_signature[0] = bad.signature;
    let staged = vec![
        b1.stage_commitment_signed(&secp, good).unwrap(),
        b2.stage_commitment_signed(&secp, bad).unwrap(),
    ];
    assert_eq!(staged[0].checks().len(), 2, "commitment + one HTLC");
    let mut results = lnhub_channel::verify_batch(&secp, staged).into_iter();
    b1.apply_commitment_signed(results.next().unwrap())
        .expect("the good one applies");
    let r = b2.apply_commitment_signed(results.next().unwrap());
    assert_closed(&mut b2, r, "invalid htlc_signature 0");
    assert!(!b1.is_failed());
}

#[test]
fn expired_offered_htlc_and_late_fulfill_fail_the_channel() {
    let (secp, mut a, mut b) = default_setup();
    let id = committed_htlc(&secp, &mut a, &mut b, preimage(1), 10_000_000);
    assert_eq!(
        a.handle_block_height(CLTV + 2),
        Ok(()),
        "within the grace period"
    );
    // B fulfils but A never acknowledges: B must claim before the expiry.
    b.send_fulfill_htlc(id, preimage(1)).unwrap();
    assert_eq!(b.handle_block_height(CLTV - 7), Ok(()));
    let r = b.handle_block_height(CLTV - 6);
    assert_closed(&mut b, r, "not settled");
    let r = a.handle_block_height(CLTV + 3);
    assert_closed(&mut a, r, "expired");
}
