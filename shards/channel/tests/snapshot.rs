//! The channel record (`Channel::encode` / `Channel::decode`): exact
//! round trips with held effects, onions and revealed secrets, whole, lean
//! or cut into a static and a progress record; version 6 records written
//! by the build before still read; truncated, corrupted and foreign bytes
//! refused without a panic; a restart that releases what the record held
//! and resumes through reestablish.

mod common;

use bitcoin::hashes::{sha256, Hash};
use common::{deliver, drain, pair, pump, sign, Agreement, Reported, Rng};
use lnhub_channel::{Channel, DecodeError, Effect, STATE_VERSION, STATIC_STATE_VERSION};
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

fn record(ch: &Channel) -> Vec<u8> {
    let mut out = Vec::new();
    ch.encode(&mut out);
    out
}

fn add(ch: &mut Channel, n: u8, amount_msat: u64) -> PaymentPreimage {
    let preimage = PaymentPreimage([n; 32]);
    let hash = PaymentHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    let mut onion = [0u8; ONION_PACKET_LEN];
    onion[..4].copy_from_slice(&[n, 1, 2, 3]);
    ch.send_add_htlc(Msat(amount_msat), hash, 800_000, &onion)
        .expect("room for the HTLC");
    preimage
}

/// Two channels with HTLCs in flight both ways, fee updates pending, and
/// B holding a `revoke_and_ack` behind a persist it has not completed.
fn busy_pair(secp: &Secp256k1<All>) -> (Channel, Channel) {
    let (mut a, mut b) = pair(secp, 11, &Agreement::default_for(ChannelType::Anchors));
    add(&mut a, 1, 40_000_000);
    add(&mut a, 2, 500_000);
    pump(secp, &mut a, &mut b).expect("honest peers");
    add(&mut b, 3, 20_000_000);
    add(&mut a, 4, 30_000_000);
    sign(secp, &mut a).expect("a signs");
    let mut r = Reported::default();
    for m in drain(&mut a, &mut r) {
        deliver(secp, &mut b, m).expect("honest peer");
    }
    // Leave B's effects (a persist request, then a held revoke_and_ack)
    // in its outbox.
    (a, b)
}

#[test]
fn records_round_trip_exactly() {
    let secp = Secp256k1::new();
    let (mut a, mut b) = busy_pair(&secp);
    for ch in [&a, &b] {
        let bytes = record(ch);
        assert_eq!(bytes[0], STATE_VERSION);
        let back = Channel::decode(&bytes).expect("own record decodes");
        assert!(back == *ch, "decode(encode(c)) == c");
        assert_eq!(record(&back), bytes, "re-encoding is byte-identical");
    }
    // With held effects: B's persist request polled, its revoke held.
    let Some(Effect::Persist { seq }) = b.poll_effect() else {
        panic!("B asks for a persist first");
    };
    let mut copy = Channel::decode(&record(&b)).expect("decodes");
    assert!(copy == b);
    // Both release the same ungated effects, then hold the rest.
    let before = drain(&mut b, &mut Reported::default());
    assert_eq!(drain(&mut copy, &mut Reported::default()), before);
    assert!(!before.iter().any(|m| matches!(m, Message::RevokeAndAck(_))));
    b.handle_persisted(seq);
    copy.handle_persisted(seq);
    let msgs = drain(&mut b, &mut Reported::default());
    assert!(msgs.iter().any(|m| matches!(m, Message::RevokeAndAck(_))));
    assert_eq!(
        drain(&mut copy, &mut Reported::default()),
        msgs,
        "the copy releases the same messages"
    );
    let msgs: Vec<_> = before.into_iter().chain(msgs).collect();
    // Revealed secrets and onions survive many rounds.
    for m in msgs {
        deliver(&secp, &mut a, m).expect("honest peer");
    }
    pump(&secp, &mut a, &mut b).expect("honest peers");
    let back = Channel::decode(&record(&a)).expect("decodes");
    assert!(back == a);
    assert_eq!(back.inbound_onion(0).map(|o| o[0]), Some(3));
}

/// Without its onions the record is about 1,366 bytes per HTLC smaller; given them back it
/// decodes into the same channel, and without one of them it is refused.
#[test]
fn lean_records_round_trip_with_the_htlc_terms_given_back() {
    let secp = Secp256k1::new();
    let (a, b) = busy_pair(&secp);
    for ch in [&a, &b] {
        let htlcs = ch.book().htlcs();
        assert!(htlcs.len() >= 3, "HTLCs in flight both ways");
        let mut lean = Vec::new();
        ch.encode_lean(&mut lean);
        let full = record(ch);
        // Per HTLC: the onion, amount (8), hash (32), expiry (4) and two flags stay out.
        assert_eq!(
            full.len() - lean.len(),
            htlcs.len() * (ONION_PACKET_LEN + 8 + 32 + 4 + 2)
        );
        let back = Channel::decode_lean(&lean, &mut |side, id| ch.htlc_terms(side, id))
            .expect("decodes with its HTLCs' terms");
        assert!(back == *ch, "the same channel");
        assert_eq!(
            record(&back),
            full,
            "re-encoding with the terms is the full record"
        );
        assert_eq!(
            Channel::decode(&lean).err(),
            Some(DecodeError::Invalid("an HTLC's stored terms are missing"))
        );
        let (skip_side, skip_id) = (htlcs[0].offerer, htlcs[0].id);
        let missing_one = Channel::decode_lean(&lean, &mut |side, id| {
            ((side, id) != (skip_side, skip_id))
                .then(|| ch.htlc_terms(side, id))
                .flatten()
        });
        assert!(missing_one.is_err());
    }
}

/// The lean record cut in two: the static record (written once) and the progress record
/// (written every round) decode together into the same channel, given its HTLCs' terms back;
/// neither is read alone, as the other kind, or with another channel's half.
#[test]
fn static_and_progress_records_round_trip_with_the_htlc_terms_given_back() {
    let secp = Secp256k1::new();
    let (a, b) = busy_pair(&secp);
    let (other, _) = pair(&secp, 12, &Agreement::default_for(ChannelType::Anchors));
    let mut other_static = Vec::new();
    other.encode_static(&mut other_static);
    for ch in [&a, &b] {
        assert!(ch.book().htlcs().len() >= 3, "HTLCs in flight both ways");
        let (mut statics, mut progress, mut lean) = (Vec::new(), Vec::new(), Vec::new());
        ch.encode_static(&mut statics);
        ch.encode_progress(&mut progress);
        ch.encode_lean(&mut lean);
        assert_eq!(
            (statics[0], progress[0]),
            (STATIC_STATE_VERSION, STATE_VERSION)
        );
        // The static fields leave the lean record whole (the static record adds its version
        // and checksum); the progress record names its channel in 8 bytes.
        assert_eq!(lean.len() - progress.len(), statics.len() - 1 - 32 - 8);
        let mut terms = |side, id| ch.htlc_terms(side, id);
        let back = Channel::decode_parts(&statics, &progress, &mut terms)
            .expect("decodes with its static record and its HTLCs' terms");
        assert!(back == *ch, "the same channel");
        let (mut statics_again, mut progress_again) = (Vec::new(), Vec::new());
        back.encode_static(&mut statics_again);
        back.encode_progress(&mut progress_again);
        assert_eq!(
            (statics_again, progress_again),
            (statics.clone(), progress.clone()),
            "re-encoding is byte-identical"
        );
        assert_eq!(
            Channel::decode_parts(&statics, &progress, &mut |_, _| None).err(),
            Some(DecodeError::Invalid("an HTLC's stored terms are missing"))
        );
        let invalid = |why| Some(DecodeError::Invalid(why));
        assert_eq!(
            Channel::decode_lean(&progress, &mut terms).err(),
            invalid("a progress record without its static record")
        );
        assert_eq!(
            Channel::decode_parts(&statics, &lean, &mut terms).err(),
            invalid("a record with its static fields inline given a static record")
        );
        assert_eq!(
            Channel::decode_parts(&other_static, &progress, &mut terms).err(),
            invalid("the static record is another channel's")
        );
        assert_eq!(
            Channel::decode(&statics).err(),
            Some(DecodeError::UnknownVersion(STATIC_STATE_VERSION))
        );
        assert_eq!(
            Channel::decode_parts(&progress, &progress, &mut terms).err(),
            Some(DecodeError::UnknownVersion(STATE_VERSION))
        );
        for cut in 0..statics.len() {
            assert!(
                Channel::decode_parts(&statics[..cut], &progress, &mut terms).is_err(),
                "a static record cut at {cut} bytes decodes"
            );
        }
        for i in 0..statics.len() {
            let mut bad = statics.clone();
            bad[i] ^= 0x10;
            match Channel::decode_parts(&bad, &progress, &mut terms) {
                Err(DecodeError::BadChecksum | DecodeError::UnknownVersion(_)) => {}
                other => panic!("a flipped bit at {i} of the static record gave {other:?}"),
            }
        }
        // Garbage sealed with a valid checksum is refused by the parser, never a panic.
        let mut rng = Rng::new(13);
        let body = statics.len() - 32;
        for _ in 0..2_000 {
            let mut bad = statics[..body].to_vec();
            let i = rng.range(1, body as u64) as usize;
            bad[i] = rng.next_u64() as u8;
            if rng.range(0, 2) == 0 {
                bad.truncate(rng.range(i as u64, body as u64) as usize);
            }
            let sum = sha256::Hash::hash(&bad).to_byte_array();
            bad.extend_from_slice(&sum);
            let _ = Channel::decode_parts(&bad, &progress, &mut terms);
        }
    }
}

/// Version 6 records, written by `Channel::encode` and `Channel::encode_lean` of the build
/// before the static record (commit c6b6659) for [`busy_pair`]'s B and kept in `tests/data`,
/// decode into the same channel. Written again they are version 7: the same fields in the
/// same places, after the tag saying the static fields are inline.
#[test]
fn version_6_records_still_decode_to_the_same_channel() {
    let secp = Secp256k1::new();
    let (_, b) = busy_pair(&secp);
    let whole: &[u8] = include_bytes!("data/v6_whole.bin");
    let lean: &[u8] = include_bytes!("data/v6_lean.bin");
    assert_eq!((whole[0], lean[0]), (6, 6));
    let back = Channel::decode(whole).expect("a version 6 whole record decodes");
    assert!(back == b, "the same channel");
    let back = Channel::decode_lean(lean, &mut |side, id| b.htlc_terms(side, id))
        .expect("a version 6 lean record decodes with its HTLCs' terms");
    assert!(back == b, "the same channel");
    let now = record(&b);
    assert_eq!((now[0], now[1]), (STATE_VERSION, 1));
    assert_eq!(
        now[2..now.len() - 32],
        whole[1..whole.len() - 32],
        "the fields of version 6, in its order"
    );
    // A version 6 record holds its static fields: it is no progress record.
    let mut statics = Vec::new();
    b.encode_static(&mut statics);
    assert_eq!(
        Channel::decode_parts(&statics, lean, &mut |side, id| b.htlc_terms(side, id)).err(),
        Some(DecodeError::UnknownVersion(6))
    );
}

#[test]
fn truncated_and_corrupted_records_are_refused() {
    let secp = Secp256k1::new();
    let (_, b) = busy_pair(&secp);
    let bytes = record(&b);
    for len in 0..bytes.len() {
        assert!(
            Channel::decode(&bytes[..len]).is_err(),
            "a record cut at {len} bytes decodes"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Channel::decode(&longer).is_err());
    let mut rng = Rng::new(5);
    for _ in 0..2_000 {
        let mut bad = bytes.clone();
        let i = rng.range(0, bad.len() as u64) as usize;
        bad[i] ^= 1 << rng.range(0, 8);
        match Channel::decode(&bad) {
            Err(DecodeError::BadChecksum | DecodeError::UnknownVersion(_)) => {}
            other => panic!("a flipped bit at {i} gave {other:?}"),
        }
    }
    let mut future = bytes.clone();
    future[0] = STATE_VERSION + 1;
    assert_eq!(
        Channel::decode(&future),
        Err(DecodeError::UnknownVersion(STATE_VERSION + 1))
    );
}

/// Corrupts the body and seals it with a valid checksum: the parser
/// itself must refuse what it cannot hold, never panic.
#[test]
fn resealed_garbage_never_panics() {
    let secp = Secp256k1::new();
    let (_, b) = busy_pair(&secp);
    let bytes = record(&b);
    let body = bytes.len() - 32;
    let mut rng = Rng::new(9);
    let mut refused = 0;
    for round in 0..6_000 {
        let mut bad = bytes[..body].to_vec();
        match round % 3 {
            0 => {
                let i = rng.range(1, body as u64) as usize;
                bad[i] = rng.next_u64() as u8;
            }
            1 => {
                let i = rng.range(1, body as u64) as usize;
                bad.truncate(i);
            }
            _ => {
                for _ in 0..8 {
                    let i = rng.range(1, body as u64) as usize;
                    bad[i] ^= 0xff;
                }
            }
        }
        let sum = sha256::Hash::hash(&bad).to_byte_array();
        bad.extend_from_slice(&sum);
        match Channel::decode(&bad) {
            Err(_) => refused += 1,
            Ok(mut ch) => {
                // Whatever passed the checks restarts and reconnects.
                ch.handle_restart();
                ch.handle_reconnect(&secp);
                while ch.poll_effect().is_some() {}
                let _ = ch.can_sign();
            }
        }
    }
    assert!(refused > 2_000, "most garbage is refused ({refused})");
}

#[test]
fn restart_releases_held_effects_and_resumes() {
    let secp = Secp256k1::new();
    let (mut a, mut b) = busy_pair(&secp);
    // B writes its record at the persist request, then crashes before
    // acknowledging it: the record is durable, the revoke never left.
    let Some(Effect::Persist { .. }) = b.poll_effect() else {
        panic!("B asks for a persist first");
    };
    let bytes = record(&b);
    drop(b);
    let mut b = Channel::decode(&bytes).expect("decodes");
    b.handle_restart();
    a.handle_disconnect();
    a.handle_reconnect(&secp);
    b.handle_reconnect(&secp);
    let (ra, rb) = pump(&secp, &mut a, &mut b).expect("reestablish and resume");
    assert!(a.is_operational() && b.is_operational());
    assert_eq!(a.book().htlcs().len(), 4, "no HTLC lost");
    assert_eq!(
        rb.forwards
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [0, 1, 2].into_iter().collect(),
        "B forwards what A committed"
    );
    assert!(ra.forwards.contains(&0), "A forwards B's HTLC");
    // Restarting again from a fresh record reports the undecided HTLCs
    // again (at least once), and nothing else.
    let mut c = Channel::decode(&record(&b)).expect("decodes");
    c.handle_restart();
    let mut r = Reported::default();
    let msgs = drain(&mut c, &mut r);
    assert!(msgs.is_empty(), "no message before reestablish");
    assert_eq!(r.forwards, vec![0, 1, 2]);
}
