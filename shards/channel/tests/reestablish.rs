//! Disconnection and `channel_reestablish` (BOLT 2 "Message
//! Retransmission"): what is reversed, what is retransmitted, and the
//! actions for a peer whose numbers do not fit.

mod common;

use bitcoin::hashes::{sha256, Hash};
use common::{deliver, drain, pair, pump, sign, Agreement, Reported};
use lnhub_channel::{Channel, ChannelError, Link, SendError};
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::{ChannelReestablish, ONION_PACKET_LEN};
use lnhub_wire::types::{Msat, PaymentHash};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

fn setup() -> (Secp256k1<All>, Channel, Channel) {
    let secp = Secp256k1::new();
    let (a, b) = pair(&secp, 21, &Agreement::default_for(ChannelType::Anchors));
    (secp, a, b)
}

fn hash(i: u8) -> PaymentHash {
    PaymentHash(sha256::Hash::hash(&[i; 32]).to_byte_array())
}

fn add(ch: &mut Channel, i: u8) -> u64 {
    ch.send_add_htlc(Msat(20_000_000), hash(i), 800_000, &[0; ONION_PACKET_LEN])
        .expect("affordable")
}

/// Disconnects both and reconnects; returns each side's
/// `channel_reestablish`.
fn bounce(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
) -> (ChannelReestablish, ChannelReestablish) {
    a.handle_disconnect();
    b.handle_disconnect();
    assert_eq!(a.link(), Link::Down);
    a.handle_reconnect(secp);
    b.handle_reconnect(secp);
    let take = |ch: &mut Channel| match drain(ch, &mut Reported::default()).pop() {
        Some(Message::ChannelReestablish(m)) => m,
        other => panic!("expected channel_reestablish, got {other:?}"),
    };
    (take(a), take(b))
}

#[test]
fn commands_wait_for_reestablish_and_messages_before_it_warn() {
    let (secp, mut a, mut b) = setup();
    a.handle_disconnect();
    assert_eq!(
        a.send_add_htlc(Msat(20_000_000), hash(1), 800_000, &[0; ONION_PACKET_LEN]),
        Err(SendError::NotOperational)
    );
    a.handle_reconnect(&secp);
    drain(&mut a, &mut Reported::default());
    add(&mut b, 1);
    let m = drain(&mut b, &mut Reported::default()).pop().unwrap();
    assert!(matches!(
        deliver(&secp, &mut a, m),
        Err(ChannelError::Warn(_))
    ));
    assert!(!a.is_failed());
}

#[test]
fn unsigned_updates_are_reversed_and_retransmitted() {
    let (secp, mut a, mut b) = setup();
    let id = add(&mut a, 1);
    for m in drain(&mut a, &mut Reported::default()) {
        deliver(&secp, &mut b, m).unwrap();
    }
    assert_eq!(b.book().htlcs().len(), 1);
    let (ra, rb) = bounce(&secp, &mut a, &mut b);
    assert_eq!(b.book().htlcs().len(), 0, "B reversed A's unsigned add");
    assert_eq!(b.book().next_remote_htlc_id(), id);
    assert_eq!(a.book().htlcs().len(), 1, "A keeps its own");
    b.handle_channel_reestablish(&secp, &ra).unwrap();
    a.handle_channel_reestablish(&secp, &rb).unwrap();
    let resent = drain(&mut a, &mut Reported::default());
    let types: Vec<u16> = resent.iter().map(Message::msg_type).collect();
    assert_eq!(
        types,
        [36, 128],
        "channel_ready (still at commitment 0), then the add"
    );
    assert!(matches!(&resent[1], Message::UpdateAddHtlc(m) if m.id == id));
    for m in resent {
        deliver(&secp, &mut b, m).unwrap();
    }
    let (_, rb) = pump(&secp, &mut a, &mut b).unwrap();
    assert_eq!(rb.forwards, vec![id]);
}

#[test]
fn lost_commitment_signed_and_revoke_are_retransmitted_in_order() {
    let (secp, mut a, mut b) = setup();
    add(&mut a, 1);
    assert!(sign(&secp, &mut a).unwrap());
    let sent_by_a = drain(&mut a, &mut Reported::default());
    let Some(Message::CommitmentSigned(original)) = sent_by_a.last().cloned() else {
        panic!("A signed")
    };
    // B gets the add and the signature, revokes; the revocation is lost.
    for m in sent_by_a {
        deliver(&secp, &mut b, m).unwrap();
    }
    drain(&mut b, &mut Reported::default());
    let (ra, rb) = bounce(&secp, &mut a, &mut b);
    assert_eq!(
        (ra.next_commitment_number, ra.next_revocation_number),
        (1, 0)
    );
    assert_eq!(
        (rb.next_commitment_number, rb.next_revocation_number),
        (2, 0)
    );
    a.handle_channel_reestablish(&secp, &rb).unwrap();
    assert!(
        drain(&mut a, &mut Reported::default()).is_empty(),
        "B has everything"
    );
    b.handle_channel_reestablish(&secp, &ra).unwrap();
    let resent = drain(&mut b, &mut Reported::default());
    let types: Vec<u16> = resent.iter().map(Message::msg_type).collect();
    assert_eq!(types, [133], "only the lost revoke_and_ack");
    for m in resent {
        deliver(&secp, &mut a, m).unwrap();
    }
    // Now the other way: A's signature is lost in flight.
    add(&mut b, 2);
    assert!(sign(&secp, &mut b).unwrap());
    let from_b = drain(&mut b, &mut Reported::default());
    for m in from_b {
        deliver(&secp, &mut a, m).unwrap();
    }
    let lost = drain(&mut a, &mut Reported::default());
    assert!(matches!(lost.first(), Some(Message::RevokeAndAck(_))));
    assert!(sign(&secp, &mut a).unwrap());
    let lost_cs = drain(&mut a, &mut Reported::default());
    let (ra, rb) = bounce(&secp, &mut a, &mut b);
    b.handle_channel_reestablish(&secp, &ra).unwrap();
    a.handle_channel_reestablish(&secp, &rb).unwrap();
    let resent = drain(&mut a, &mut Reported::default());
    let names: Vec<u16> = resent.iter().map(Message::msg_type).collect();
    assert_eq!(
        names,
        [133, 132],
        "revoke_and_ack then commitment_signed, as first sent"
    );
    assert_eq!(resent[1], lost_cs[0], "the same signature, not a new one");
    assert_ne!(Message::CommitmentSigned(original), resent[1]);
    for m in resent {
        deliver(&secp, &mut b, m).unwrap();
    }
    for m in drain(&mut b, &mut Reported::default()) {
        deliver(&secp, &mut a, m).unwrap();
    }
    pump(&secp, &mut a, &mut b).unwrap();
    assert_eq!(
        a.book().local_commitment_number(),
        b.book().remote_commitment_number()
    );
    assert_eq!(
        b.book().local_commitment_number(),
        a.book().remote_commitment_number()
    );
}

#[test]
fn channel_ready_is_retransmitted_at_commitment_zero() {
    let (secp, mut a, mut b) = setup();
    let (ra, _) = bounce(&secp, &mut a, &mut b);
    b.handle_channel_reestablish(&secp, &ra).unwrap();
    let resent = drain(&mut b, &mut Reported::default());
    assert!(matches!(resent.as_slice(), [Message::ChannelReady(_)]));
    // A redundant channel_ready is ignored once the link is up.
    let Message::ChannelReady(ready) = &resent[0] else {
        unreachable!()
    };
    let (_, rb) = bounce(&secp, &mut a, &mut b);
    a.handle_channel_reestablish(&secp, &rb).unwrap();
    assert_eq!(a.handle_channel_ready(ready), Ok(()));
}

#[test]
fn zero_next_commitment_number_fails_channel() {
    let (secp, mut a, mut b) = setup();
    let (_, mut rb) = bounce(&secp, &mut a, &mut b);
    rb.next_commitment_number = 0;
    let r = a.handle_channel_reestablish(&secp, &rb);
    assert!(matches!(r, Err(ChannelError::Close(_))), "{r:?}");
    assert!(a.is_failed());
}

#[test]
fn wrong_last_secret_fails_channel() {
    let (secp, mut a, mut b) = setup();
    add(&mut a, 1);
    pump(&secp, &mut a, &mut b).unwrap();
    let (_, mut rb) = bounce(&secp, &mut a, &mut b);
    assert!(rb.next_revocation_number > 0);
    rb.your_last_per_commitment_secret = [7; 32];
    let r = a.handle_channel_reestablish(&secp, &rb);
    assert!(
        matches!(&r, Err(ChannelError::Close(m)) if m.contains("your_last_per_commitment_secret")),
        "{r:?}"
    );
}

#[test]
fn peer_ahead_with_proof_means_we_fell_behind() {
    let (secp, mut a, mut b) = setup();
    // A snapshot of A before two commitment rounds stands for lost data.
    let mut stale = a.clone();
    add(&mut a, 1);
    pump(&secp, &mut a, &mut b).unwrap();
    add(&mut a, 2);
    pump(&secp, &mut a, &mut b).unwrap();
    stale.handle_disconnect();
    stale.handle_reconnect(&secp);
    let (_, rb) = bounce(&secp, &mut a, &mut b);
    let r = stale.handle_channel_reestablish(&secp, &rb);
    assert!(matches!(r, Err(ChannelError::FallenBehind(_))), "{r:?}");
    assert!(stale.is_failed());
    // The same numbers without the proof are a plain protocol violation.
    let mut stale2 = a.clone();
    let mut rb2 = rb.clone();
    rb2.next_revocation_number += 5;
    stale2.handle_disconnect();
    stale2.handle_reconnect(&secp);
    let r = stale2.handle_channel_reestablish(&secp, &rb2);
    assert!(matches!(r, Err(ChannelError::Close(_))), "{r:?}");
}
