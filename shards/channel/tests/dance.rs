//! One HTLC through BOLT 2's five steps ("Normal Operation": pending on
//! the receiver, in the receiver's commitment, receiver revoked, in the
//! sender's commitment, sender revoked), checking the state and the
//! commitments that contain it on both sides after every message; then its
//! removal the same way. Also: several HTLCs removed in one round are
//! folded into the balances together, the others left in add order.

mod common;

use bitcoin::hashes::{sha256, Hash};
use common::{deliver, drain, pair, sign, Agreement, Reported};
use lnhub_channel::{Channel, UpdateState, View};
use lnhub_tx::{ChannelType, Side};
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage};
use secp256k1::{All, Secp256k1};

const VIEWS: [View; 4] = [
    View::LocalCurrent,
    View::LocalNext,
    View::RemoteCurrent,
    View::RemoteNext,
];

/// (add state, [in LocalCurrent, LocalNext, RemoteCurrent, RemoteNext]).
fn seen(ch: &Channel, offerer: Side) -> (UpdateState, [bool; 4]) {
    let h = ch.book().htlc(offerer, 0).expect("the HTLC is in flight");
    (h.add_state, VIEWS.map(|v| h.is_in(v)))
}

fn removal(ch: &Channel, offerer: Side) -> Option<(UpdateState, [bool; 4])> {
    let h = ch.book().htlc(offerer, 0)?;
    Some((h.removal.as_ref()?.state, VIEWS.map(|v| h.is_in(v))))
}

/// Moves every message `from` has queued to `to`.
fn flush(secp: &Secp256k1<All>, from: &mut Channel, to: &mut Channel) -> Reported {
    let mut r = Reported::default();
    for m in drain(from, &mut r) {
        deliver(secp, to, m).expect("honest peer");
    }
    r
}

#[test]
fn an_htlc_walks_the_five_steps_and_back() {
    use UpdateState::*;
    let secp = Secp256k1::new();
    let (mut a, mut b) = pair(&secp, 3, &Agreement::default_for(ChannelType::Anchors));
    let preimage = PaymentPreimage([5; 32]);
    let hash = PaymentHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    a.send_add_htlc(Msat(30_000_000), hash, 800_000, &[0; ONION_PACKET_LEN])
        .unwrap();
    // 1. Pending on the receiver.
    flush(&secp, &mut a, &mut b);
    assert_eq!(
        seen(&a, Side::Local),
        (Announced, [false, false, false, true])
    );
    assert_eq!(
        seen(&b, Side::Remote),
        (Announced, [false, true, false, false])
    );
    // 2. In the receiver's latest commitment; 3. the receiver revoked.
    assert!(sign(&secp, &mut a).unwrap());
    assert_eq!(
        seen(&a, Side::Local),
        (ReceiverSigned, [false, false, true, true])
    );
    flush(&secp, &mut a, &mut b);
    assert_eq!(
        seen(&b, Side::Remote),
        (ReceiverRevoked, [true, true, false, true])
    );
    flush(&secp, &mut b, &mut a);
    assert_eq!(
        seen(&a, Side::Local),
        (ReceiverRevoked, [false, true, true, true])
    );
    // 4. In the sender's latest commitment (A revokes at once).
    assert!(sign(&secp, &mut b).unwrap());
    assert_eq!(
        seen(&b, Side::Remote),
        (ProposerSigned, [true, true, true, true])
    );
    flush(&secp, &mut b, &mut a);
    assert_eq!(
        seen(&a, Side::Local),
        (Irrevocable, [true, true, true, true])
    );
    // 5. The sender revoked: irrevocably committed, B may forward.
    let r = flush(&secp, &mut a, &mut b);
    assert!(r.forwards.is_empty(), "A forwards nothing");
    let mut rb = Reported::default();
    drain(&mut b, &mut rb);
    assert_eq!(rb.forwards, vec![0]);
    assert_eq!(
        seen(&b, Side::Remote),
        (Irrevocable, [true, true, true, true])
    );
    assert!(!a.can_sign() && !b.can_sign(), "nothing left to sign");

    // The removal walks the same steps with the roles swapped.
    b.send_fulfill_htlc(0, preimage).unwrap();
    flush(&secp, &mut b, &mut a);
    assert_eq!(
        removal(&b, Side::Remote),
        Some((Announced, [true, true, true, false]))
    );
    assert_eq!(
        removal(&a, Side::Local),
        Some((Announced, [true, false, true, true]))
    );
    assert!(sign(&secp, &mut b).unwrap());
    flush(&secp, &mut b, &mut a);
    assert_eq!(
        removal(&a, Side::Local),
        Some((ReceiverRevoked, [false, false, true, false]))
    );
    flush(&secp, &mut a, &mut b);
    assert_eq!(
        removal(&b, Side::Remote),
        Some((ReceiverRevoked, [true, false, false, false]))
    );
    assert!(sign(&secp, &mut a).unwrap());
    assert_eq!(
        removal(&a, Side::Local),
        Some((ProposerSigned, [false, false, false, false]))
    );
    flush(&secp, &mut a, &mut b);
    assert_eq!(
        removal(&b, Side::Remote),
        None,
        "B's removal is irrevocable: folded"
    );
    flush(&secp, &mut b, &mut a);
    assert!(a.book().htlcs().is_empty() && b.book().htlcs().is_empty());
    let mut v = Vec::new();
    assert_eq!(
        b.book().view(View::LocalCurrent, &mut v).to_local_msat,
        3_000_000_000 + 30_000_000
    );
}

#[test]
fn fee_updates_apply_per_commitment_and_collapse_per_state() {
    use UpdateState::*;
    let secp = Secp256k1::new();
    let (mut a, mut b) = pair(&secp, 4, &Agreement::default_for(ChannelType::Anchors));
    let base = a.book().feerate(View::LocalCurrent);
    a.send_update_fee(3_000).unwrap();
    a.send_update_fee(3_500).unwrap();
    let states = |ch: &Channel| -> Vec<(u32, UpdateState)> {
        ch.book()
            .fee_updates()
            .iter()
            .map(|f| (f.feerate_per_kw, f.state))
            .collect()
    };
    assert_eq!(states(&a), [(3_500, Announced)], "the later one replaces");
    assert!(sign(&secp, &mut a).unwrap());
    a.send_update_fee(4_000).unwrap();
    assert_eq!(states(&a), [(3_500, ReceiverSigned), (4_000, Announced)]);
    let feerates = |ch: &Channel| VIEWS.map(|v| ch.book().feerate(v));
    assert_eq!(feerates(&a), [base, base, 3_500, 4_000]);
    // B sees all three messages; its next commitment takes the last.
    flush(&secp, &mut a, &mut b);
    assert_eq!(feerates(&b), [3_500, 4_000, base, 3_500]);
    // B's revocation reaches A: 3,500 is now in B's current commitment.
    flush(&secp, &mut b, &mut a);
    assert_eq!(states(&a), [(3_500, ReceiverRevoked), (4_000, Announced)]);
    assert!(sign(&secp, &mut b).unwrap());
    flush(&secp, &mut b, &mut a);
    assert_eq!(
        states(&a),
        [(4_000, Announced)],
        "3,500 irrevocable: folded"
    );
    assert_eq!(feerates(&a), [3_500, 3_500, 3_500, 4_000]);
    common::pump(&secp, &mut a, &mut b).unwrap();
    assert!(a.book().fee_updates().is_empty() && b.book().fee_updates().is_empty());
    assert_eq!(feerates(&a), [4_000; 4]);
    assert_eq!(feerates(&b), [4_000; 4]);
}

/// Runs commitment rounds until neither side has anything to sign or send.
fn settle(secp: &Secp256k1<All>, a: &mut Channel, b: &mut Channel) -> (Reported, Reported) {
    let (mut ra, mut rb) = (Reported::default(), Reported::default());
    loop {
        let signed = sign(secp, a).unwrap() | sign(secp, b).unwrap();
        let (to_b, to_a) = (drain(a, &mut ra), drain(b, &mut rb));
        if !signed && to_b.is_empty() && to_a.is_empty() {
            return (ra, rb);
        }
        for m in to_b {
            deliver(secp, b, m).expect("honest peer");
        }
        for m in to_a {
            deliver(secp, a, m).expect("honest peer");
        }
    }
}

#[test]
fn htlcs_removed_in_one_round_fold_together_and_the_rest_keep_their_order() {
    let secp = Secp256k1::new();
    let (mut a, mut b) = pair(&secp, 5, &Agreement::default_for(ChannelType::Anchors));
    let preimage = |i: u8| PaymentPreimage([i + 1; 32]);
    let amount = |i: u64| 10_000_000 + i * 1_000_000;
    for i in 0..6u8 {
        let hash = PaymentHash(sha256::Hash::hash(&preimage(i).0).to_byte_array());
        a.send_add_htlc(
            Msat(amount(i.into())),
            hash,
            800_000,
            &[i; ONION_PACKET_LEN],
        )
        .unwrap();
    }
    let (_, rb) = settle(&secp, &mut a, &mut b);
    assert_eq!(rb.forwards, vec![0, 1, 2, 3, 4, 5]);
    let mut v = Vec::new();
    let before = b.book().view(View::LocalCurrent, &mut v).to_local_msat;

    // B resolves four of them in one batch: 0, 2 and 5 fulfilled, 3 failed.
    for i in [0u8, 2, 5] {
        b.send_fulfill_htlc(i.into(), preimage(i)).unwrap();
    }
    b.send_fail_htlc(3, vec![9; 32]).unwrap();
    let (ra, _) = settle(&secp, &mut a, &mut b);

    let mut resolved: Vec<u64> = ra.resolved.iter().map(|(id, _)| *id).collect();
    resolved.sort_unstable();
    assert_eq!(
        resolved,
        vec![0, 2, 3, 5],
        "each removal reported to the offerer"
    );
    for ch in [&a, &b] {
        let left: Vec<(u64, u8)> = ch
            .book()
            .htlcs()
            .iter()
            .map(|h| (h.id, h.onion_routing_packet[0]))
            .collect();
        assert_eq!(
            left,
            vec![(1, 1), (4, 4)],
            "the rest in add order, onions intact"
        );
    }
    let fulfilled = amount(0) + amount(2) + amount(5);
    assert_eq!(
        b.book().view(View::LocalCurrent, &mut v).to_local_msat,
        before + fulfilled
    );
    assert_eq!(
        a.book().view(View::RemoteCurrent, &mut v).to_local_msat,
        before + fulfilled,
        "both sides fold the same amounts"
    );
}
