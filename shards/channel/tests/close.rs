//! Cooperative close, `shutdown` phase (BOLT 2 "Closing Initiation:
//! `shutdown`" and the `shutdown` line of "Message Retransmission"): one
//! test per requirement.
//!
//! Long because it is a checklist: one short test per BOLT 2 requirement
//! of the `shutdown` phase, in the spec's order.

mod common;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::ScriptBuf;
use common::{
    deliver, drain, pair, pair_with_terms, pump, sign, sign_closing, Agreement, Reported,
};
use lnhub_channel::{Channel, ChannelError, SendError, ShutdownTerms, View};
use lnhub_tx::Side;
use lnhub_wire::msgs::{ClosingSigned, FeeRange, Shutdown, ONION_PACKET_LEN};
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage, Sat};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

use lnhub_tx::ChannelType;

/// A pair whose closing terms `f` sets (A's, B's).
fn setup_with(
    f: impl FnOnce(&mut ShutdownTerms, &mut ShutdownTerms),
) -> (Secp256k1<All>, Channel, Channel) {
    let secp = Secp256k1::new();
    let (mut terms_a, mut terms_b) = (ShutdownTerms::default(), ShutdownTerms::default());
    f(&mut terms_a, &mut terms_b);
    let agreement = Agreement::default_for(ChannelType::Anchors);
    let (a, b) = pair_with_terms(&secp, 31, &agreement, terms_a, terms_b);
    (secp, a, b)
}

fn setup() -> (Secp256k1<All>, Channel, Channel) {
    let secp = Secp256k1::new();
    let (a, b) = pair(&secp, 31, &Agreement::default_for(ChannelType::Anchors));
    (secp, a, b)
}

/// A witness program of `version` (0, or 0x51..=0x60) with `len` bytes.
fn program(version: u8, len: u8) -> ScriptBuf {
    let mut v = vec![version, len];
    v.extend(std::iter::repeat_n(9, usize::from(len)));
    ScriptBuf::from_bytes(v)
}

fn p2wpkh(tag: u8) -> ScriptBuf {
    let mut v = vec![0x00, 20];
    v.extend([tag; 20]);
    ScriptBuf::from_bytes(v)
}

fn p2pkh() -> ScriptBuf {
    let mut v = vec![0x76, 0xa9, 20];
    v.extend([3; 20]);
    v.extend([0x88, 0xac]);
    ScriptBuf::from_bytes(v)
}

fn preimage(i: u8) -> PaymentPreimage {
    PaymentPreimage([i; 32])
}

fn hash(i: u8) -> PaymentHash {
    PaymentHash(sha256::Hash::hash(&preimage(i).0).to_byte_array())
}

fn add(ch: &mut Channel, i: u8) -> Result<u64, SendError> {
    ch.send_add_htlc(Msat(20_000_000), hash(i), 800_000, &[0; ONION_PACKET_LEN])
}

fn shutdown_msg(ch: &Channel, script: &ScriptBuf) -> Shutdown {
    Shutdown {
        channel_id: ch.channel_id(),
        scriptpubkey: script.to_bytes(),
        unknown_tlvs: Vec::new(),
    }
}

fn sent_shutdown(msgs: &[Message]) -> Option<&Shutdown> {
    msgs.iter().find_map(|m| match m {
        Message::Shutdown(s) => Some(s),
        _ => None,
    })
}

/// "if there are updates pending on the receiving node's commitment
/// transaction: MUST NOT send a `shutdown`"; the sender signs first.
#[test]
fn shutdown_waits_for_pending_updates_to_be_signed() {
    let (secp, mut a, mut b) = setup();
    add(&mut a, 1).expect("affordable");
    assert_eq!(a.send_shutdown(p2wpkh(1)), Err(SendError::PendingUpdates));
    assert!(!a.is_shutting_down());
    sign(&secp, &mut a).expect("sign");
    a.send_shutdown(p2wpkh(1)).expect("nothing pending for B");
    let msgs = drain(&mut a, &mut Reported::default());
    assert!(matches!(msgs.last(), Some(Message::Shutdown(_))));
    for m in msgs {
        deliver(&secp, &mut b, m).expect("valid in order");
    }
    assert_eq!(
        b.shutdown_state().remote_script(),
        Some(p2wpkh(1).as_script())
    );
}

/// "MUST NOT send multiple `shutdown` messages".
#[test]
fn shutdown_is_sent_once() {
    let (_, mut a, _) = setup();
    a.send_shutdown(p2wpkh(1)).expect("first");
    assert_eq!(
        a.send_shutdown(p2wpkh(1)),
        Err(SendError::ShutdownAlreadySent)
    );
}

/// "MUST set `scriptpubkey` in one of the following forms": v0 programs
/// always, v1..v16 only with `option_shutdown_anysegwit`, never P2PKH.
#[test]
fn our_shutdown_script_must_be_an_allowed_form() {
    let (_, mut a, _) = setup();
    assert_eq!(
        a.send_shutdown(program(0x51, 32)),
        Err(SendError::InvalidShutdownScript)
    );
    assert_eq!(
        a.send_shutdown(p2pkh()),
        Err(SendError::InvalidShutdownScript)
    );
    a.send_shutdown(program(0x00, 32)).expect("p2wsh");

    let (_, mut a, _) = setup_with(|ta, _| ta.option_shutdown_anysegwit = true);
    a.send_shutdown(program(0x51, 32))
        .expect("p2tr with anysegwit");
}

/// "if it sent a non-zero-length `shutdown_scriptpubkey` in `open_channel`
/// or `accept_channel`: MUST send the same value in `scriptpubkey`".
#[test]
fn our_shutdown_uses_the_committed_upfront_script() {
    let (_, mut a, _) = setup_with(|ta, _| {
        *ta = ShutdownTerms {
            local_upfront_shutdown_script: Some(p2wpkh(7)),
            ..ShutdownTerms::default()
        }
    });
    assert_eq!(
        a.send_shutdown(p2wpkh(8)),
        Err(SendError::InvalidShutdownScript)
    );
    a.send_shutdown(p2wpkh(7)).expect("the committed script");
}

/// "if the `scriptpubkey` is not in one of the above forms: SHOULD send a
/// `warning`"; legacy P2PKH is accepted for backwards compatibility, and
/// future segwit versions only with `option_shutdown_anysegwit`.
#[test]
fn peer_shutdown_script_forms() {
    let (_, a, mut b) = setup();
    for bad in [program(0x51, 32), program(0x00, 21), ScriptBuf::new()] {
        assert!(matches!(
            b.handle_shutdown(&shutdown_msg(&a, &bad)),
            Err(ChannelError::Warn(_))
        ));
        assert!(!b.is_shutting_down());
    }
    b.handle_shutdown(&shutdown_msg(&a, &p2pkh()))
        .expect("legacy form accepted");

    let (_, a, mut b) = setup_with(|_, tb| tb.option_shutdown_anysegwit = true);
    b.handle_shutdown(&shutdown_msg(&a, &program(0x60, 40)))
        .expect("v16 with anysegwit");
}

/// "if both nodes advertised the `option_upfront_shutdown_script` feature,
/// and the receiving node received a non-zero-length
/// `shutdown_scriptpubkey` ... not equal to `scriptpubkey`: MAY send a
/// `warning`. MUST fail the connection."
#[test]
fn peer_shutdown_must_match_its_upfront_script() {
    let (_, a, mut b) = setup_with(|_, tb| tb.remote_upfront_shutdown_script = Some(p2wpkh(5)));
    assert!(matches!(
        b.handle_shutdown(&shutdown_msg(&a, &p2wpkh(6))),
        Err(ChannelError::Warn(_))
    ));
    b.handle_shutdown(&shutdown_msg(&a, &p2wpkh(5)))
        .expect("the committed script");
}

/// "once there are no outstanding updates on the peer, UNLESS it has
/// already sent a `shutdown`: MUST reply to a `shutdown` message with a
/// `shutdown`": with an upfront script the channel replies itself, once
/// its own pending updates are signed; without one it asks the caller.
#[test]
fn receiver_replies_with_its_own_shutdown() {
    // No upfront script: the caller is asked.
    let (secp, mut a, mut b) = setup();
    a.send_shutdown(p2wpkh(1)).expect("clean");
    for m in drain(&mut a, &mut Reported::default()) {
        deliver(&secp, &mut b, m).expect("valid");
    }
    assert!(b.needs_shutdown_reply());
    assert!(sent_shutdown(&drain(&mut b, &mut Reported::default())).is_none());
    b.send_shutdown(p2wpkh(2)).expect("reply");
    assert!(!b.needs_shutdown_reply());

    // Upfront script, and an update of B's pending for A: B signs first,
    // then replies.
    let (secp, mut a, mut b) =
        setup_with(|_, tb| tb.local_upfront_shutdown_script = Some(p2wpkh(4)));
    add(&mut a, 1).expect("affordable");
    pump(&secp, &mut a, &mut b).expect("commit the HTLC");
    b.send_fulfill_htlc(0, preimage(1)).expect("known HTLC");
    a.send_shutdown(p2wpkh(1)).expect("nothing pending for B");
    for m in drain(&mut a, &mut Reported::default()) {
        deliver(&secp, &mut b, m).expect("valid");
    }
    assert!(b.needs_shutdown_reply(), "fulfill not yet signed");
    let before = drain(&mut b, &mut Reported::default());
    assert!(sent_shutdown(&before).is_none());
    sign(&secp, &mut b).expect("sign the fulfill");
    let after = drain(&mut b, &mut Reported::default());
    assert!(
        matches!(after.first(), Some(Message::CommitmentSigned(_))),
        "the signature goes before the reply: {after:?}"
    );
    assert_eq!(
        sent_shutdown(&after).map(|s| s.scriptpubkey.clone()),
        Some(p2wpkh(4).to_bytes())
    );
    assert!(!b.needs_shutdown_reply());
}

/// "MUST NOT send an `update_add_htlc` after a `shutdown`", from both
/// ends: our command is refused after either side's `shutdown`, and the
/// peer's add after its own `shutdown` fails the channel. Existing HTLCs
/// still settle.
#[test]
fn no_new_htlcs_after_shutdown_but_existing_ones_settle() {
    let (secp, mut a, mut b) = setup();
    add(&mut a, 1).expect("affordable");
    pump(&secp, &mut a, &mut b).expect("commit the HTLC");
    a.send_shutdown(p2wpkh(1)).expect("clean");
    assert_eq!(add(&mut a, 2), Err(SendError::ShuttingDown));
    let a_msgs = drain(&mut a, &mut Reported::default());
    for m in a_msgs {
        deliver(&secp, &mut b, m).expect("valid");
    }
    assert_eq!(add(&mut b, 3), Err(SendError::ShuttingDown));
    b.send_shutdown(p2wpkh(2)).expect("reply");

    // The HTLC from before the shutdown still settles.
    b.send_fulfill_htlc(0, preimage(1)).expect("existing HTLC");
    let (ra, _) = pump(&secp, &mut a, &mut b).expect("settle");
    assert_eq!(ra.resolved.len(), 1);
    assert!(a.book().htlcs().is_empty() && b.book().htlcs().is_empty());

    // A peer that adds after its own shutdown breaks the rule.
    let (secp, mut a, mut b) = setup();
    let add_msg = {
        let (_, mut a2, _) = setup();
        add(&mut a2, 9).expect("affordable");
        match drain(&mut a2, &mut Reported::default()).pop() {
            Some(Message::UpdateAddHtlc(m)) => m,
            other => panic!("expected update_add_htlc, got {other:?}"),
        }
    };
    a.send_shutdown(p2wpkh(1)).expect("clean");
    for m in drain(&mut a, &mut Reported::default()) {
        deliver(&secp, &mut b, m).expect("valid");
    }
    assert!(matches!(
        b.handle_update_add_htlc(&add_msg),
        Err(ChannelError::Close(_))
    ));
    assert!(b.is_failed());
}

/// The peer must sign its updates before its `shutdown` (the sender's
/// "updates pending on the receiving node's commitment" rule, checked on
/// receipt).
#[test]
fn peer_shutdown_with_unsigned_updates_is_refused() {
    let (secp, mut a, mut b) = setup();
    add(&mut a, 1).expect("affordable");
    let msgs = drain(&mut a, &mut Reported::default());
    for m in msgs {
        deliver(&secp, &mut b, m).expect("valid");
    }
    assert!(matches!(
        b.handle_shutdown(&shutdown_msg(&a, &p2wpkh(1))),
        Err(ChannelError::Warn(_))
    ));
    assert!(!b.is_shutting_down());
}

/// "upon reconnection: if it has sent a previous `shutdown`: MUST
/// retransmit `shutdown`"; the receiver takes the identical retransmission
/// quietly.
#[test]
fn shutdown_is_retransmitted_after_reestablish() {
    let (secp, mut a, mut b) = setup();
    a.send_shutdown(p2wpkh(1)).expect("clean");
    let first = drain(&mut a, &mut Reported::default());
    for m in first {
        deliver(&secp, &mut b, m).expect("valid");
    }
    a.handle_disconnect();
    b.handle_disconnect();
    a.handle_reconnect(&secp);
    b.handle_reconnect(&secp);
    let ra = drain(&mut a, &mut Reported::default());
    let rb = drain(&mut b, &mut Reported::default());
    for m in rb {
        deliver(&secp, &mut a, m).expect("reestablish");
    }
    for m in ra {
        deliver(&secp, &mut b, m).expect("reestablish");
    }
    let resent = drain(&mut a, &mut Reported::default());
    assert_eq!(
        sent_shutdown(&resent).map(|s| s.scriptpubkey.clone()),
        Some(p2wpkh(1).to_bytes())
    );
    for m in resent {
        deliver(&secp, &mut b, m).expect("identical retransmission accepted");
    }
    // A different script the second time is not.
    assert!(matches!(
        b.handle_shutdown(&shutdown_msg(&a, &p2wpkh(2))),
        Err(ChannelError::Warn(_))
    ));
}

/// The shutdown exchange survives a restart: encoded, decoded, equal, and
/// still retransmitted.
#[test]
fn shutdown_state_round_trips() {
    let (secp, mut a, mut b) = setup_with(|ta, _| {
        *ta = ShutdownTerms {
            option_shutdown_anysegwit: true,
            local_upfront_shutdown_script: Some(p2wpkh(1)),
            remote_upfront_shutdown_script: Some(p2wpkh(2)),
            option_simple_close: false,
        }
    });
    a.send_shutdown(p2wpkh(1)).expect("clean");
    drain(&mut a, &mut Reported::default());
    b.send_shutdown(p2wpkh(2)).expect("clean");
    for m in drain(&mut b, &mut Reported::default()) {
        deliver(&secp, &mut a, m).expect("valid");
    }
    drain(&mut a, &mut Reported::default());
    let mut bytes = Vec::new();
    a.encode(&mut bytes);
    let decoded = Channel::decode(&bytes).expect("round trip");
    assert_eq!(decoded, a);
    assert_eq!(
        decoded.shutdown_state().local_script(),
        Some(p2wpkh(1).as_script())
    );
    assert_eq!(
        decoded.shutdown_state().remote_script(),
        Some(p2wpkh(2).as_script())
    );
}

// ---- Legacy closing negotiation (BOLT 2 "Legacy Closing Negotiation:
// `closing_signed`", BOLT 3 "Legacy Closing Transaction") ----

/// Exchanges both `shutdown`s (A first), then runs to quiescence with both
/// sides signing commitments and `closing_signed`s whenever they can.
fn shut_and_negotiate(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
) -> Result<(Reported, Reported), ChannelError> {
    a.send_shutdown(p2wpkh(1)).expect("A's shutdown");
    pump(secp, a, b)?;
    b.send_shutdown(p2wpkh(2)).expect("B's reply");
    let (mut ra, mut rb) = (Reported::default(), Reported::default());
    let (mut to_a, mut to_b) = (
        std::collections::VecDeque::new(),
        std::collections::VecDeque::new(),
    );
    loop {
        let mut progress = sign(secp, a)? | sign(secp, b)?;
        progress |= sign_closing(secp, a)? | sign_closing(secp, b)?;
        to_b.extend(drain(a, &mut ra));
        to_a.extend(drain(b, &mut rb));
        if let Some(m) = to_b.pop_front() {
            deliver(secp, b, m)?;
            progress = true;
        }
        if let Some(m) = to_a.pop_front() {
            deliver(secp, a, m)?;
            progress = true;
        }
        if !progress {
            return Ok((ra, rb));
        }
    }
}

/// Both funding signatures in `tx`'s witness verify under the funding
/// pubkeys (in the BOLT 3 order) over the funding input's sighash.
fn assert_funding_signatures(secp: &Secp256k1<All>, ch: &Channel, tx: &bitcoin::Transaction) {
    let mut unsigned = tx.clone();
    unsigned.input[0].witness = bitcoin::Witness::new();
    let msg = lnhub_tx::sighash::funding_input(&unsigned, ch.params());
    let w: Vec<&[u8]> = tx.input[0].witness.iter().collect();
    assert_eq!(w.len(), 4, "0, sig, sig, funding script");
    assert_eq!(w[3], ch.params().funding_script().as_bytes());
    let mut keys = [Side::Local, Side::Remote].map(|s| ch.params().side(s).pubkeys.funding_pubkey);
    keys.sort_by_key(|k| k.serialize());
    for (sig, key) in w[1..3].iter().zip(keys) {
        let (der, hashtype) = sig.split_at(sig.len() - 1);
        assert_eq!(hashtype, [1], "SIGHASH_ALL");
        let sig = secp256k1::ecdsa::Signature::from_der(der).expect("DER");
        secp.verify_ecdsa(&msg, &sig, &key)
            .expect("funding signature verifies");
    }
}

fn balance_sat(ch: &Channel, side: Side) -> u64 {
    let mut v = Vec::new();
    ch.book().view(View::LocalCurrent, &mut v).balance_of(side) / 1000
}

/// The funder proposes, the fundee accepts, both end with the same fully
/// signed transaction paying each side its balance, the fee from the
/// funder's; then neither channel takes input.
#[test]
fn closing_signed_negotiation_ends_in_one_signed_transaction() {
    let (secp, mut a, mut b) = setup();
    let (a_sat, b_sat) = (balance_sat(&a, Side::Local), balance_sat(&a, Side::Remote));
    let (ra, rb) = shut_and_negotiate(&secp, &mut a, &mut b).expect("negotiation");
    assert_eq!(ra.closing_txs.len(), 1);
    assert_eq!(ra.closing_txs, rb.closing_txs, "identical transactions");
    let tx = &ra.closing_txs[0];
    assert!(a.is_closed() && b.is_closed());
    let fee = a.closing_state().sent().expect("A proposed").fee;
    assert_eq!(b.closing_state().sent().expect("B replied").fee, fee);
    assert!(fee > 0);
    let value = |script: &ScriptBuf| {
        tx.output
            .iter()
            .find(|o| o.script_pubkey == *script)
            .map(|o| o.value.to_sat())
    };
    assert_eq!(value(&p2wpkh(1)), Some(a_sat - fee), "funder pays the fee");
    assert_eq!(value(&p2wpkh(2)), Some(b_sat));
    assert_eq!(tx.output.len(), 2);
    assert_funding_signatures(&secp, &a, tx);
    assert_funding_signatures(&secp, &b, tx);
    assert_eq!(
        a.send_add_htlc(Msat(20_000_000), hash(9), 800_000, &[0; ONION_PACKET_LEN]),
        Err(SendError::NotOperational)
    );
    let stray = closing_signed(&b, fee, None);
    assert!(matches!(
        deliver(&secp, &mut b, Message::ClosingSigned(stray)),
        Err(ChannelError::Ignore(_))
    ));
}

/// "MUST remove any output below its own `dust_limit_satoshis`": B's
/// balance is dust and is left out.
#[test]
fn closing_transaction_omits_dust_outputs() {
    let secp = Secp256k1::new();
    let mut agreement = Agreement::default_for(ChannelType::Anchors);
    agreement.push_msat = 200_000;
    let (mut a, mut b) = pair(&secp, 31, &agreement);
    let (ra, rb) = shut_and_negotiate(&secp, &mut a, &mut b).expect("negotiation");
    assert_eq!(ra.closing_txs, rb.closing_txs);
    let tx = &ra.closing_txs[0];
    assert_eq!(tx.output.len(), 1);
    assert_eq!(tx.output[0].script_pubkey, p2wpkh(1));
    assert_funding_signatures(&secp, &a, tx);
}

fn closing_signed(ch: &Channel, fee: u64, range: Option<(u64, u64)>) -> ClosingSigned {
    ClosingSigned {
        channel_id: ch.channel_id(),
        fee_satoshis: Sat(fee),
        signature: secp256k1::ecdsa::Signature::from_compact(&[1; 64]).expect("valid"),
        fee_range: range.map(|(min, max)| FeeRange {
            min_fee_satoshis: Sat(min),
            max_fee_satoshis: Sat(max),
        }),
        unknown_tlvs: Vec::new(),
    }
}

/// Both shutdowns exchanged, A's opening `closing_signed` signed and
/// drained (not delivered): (secp, A, B, A's message).
fn after_first_proposal() -> (Secp256k1<All>, Channel, Channel, ClosingSigned) {
    let (secp, mut a, mut b) = setup();
    a.send_shutdown(p2wpkh(1)).expect("A's shutdown");
    pump(&secp, &mut a, &mut b).expect("pump");
    b.send_shutdown(p2wpkh(2)).expect("B's reply");
    pump(&secp, &mut a, &mut b).expect("pump");
    assert!(sign_closing(&secp, &mut a).expect("stage"));
    let Some(Message::ClosingSigned(first)) = drain(&mut a, &mut Reported::default()).pop() else {
        panic!("A sends closing_signed");
    };
    (secp, a, b, first)
}

/// "if there is no overlap between that and its own `fee_range`: SHOULD
/// send a warning"; the funder receiving a fee outside the overlap "MUST
/// fail the channel"; a bad signature fails it too.
#[test]
fn closing_signed_outside_the_fee_range() {
    let (secp, mut a, mut b, first) = after_first_proposal();
    let range = first.fee_range.expect("we always send fee_range");
    let (min, max) = (range.min_fee_satoshis.0, range.max_fee_satoshis.0);

    // B (fundee): a range entirely below its own: warning, nothing changes.
    let low = closing_signed(&b, 1, Some((1, 2)));
    assert!(matches!(
        deliver(&secp, &mut b, Message::ClosingSigned(low)),
        Err(ChannelError::Warn(_))
    ));
    assert!(!b.is_failed() && b.closing_state().received_fee().is_none());

    // A (funder): overlapping ranges, fee outside the overlap: fail.
    let out = closing_signed(&a, max + 1, Some((min, max + 10)));
    assert!(matches!(
        deliver(&secp, &mut a, Message::ClosingSigned(out)),
        Err(ChannelError::Close(_))
    ));
    assert!(a.is_failed());

    // B: the funder's real proposal but with a forged signature: fail.
    let mut forged = first.clone();
    forged.signature = secp256k1::ecdsa::Signature::from_compact(&[1; 64]).expect("valid");
    assert!(matches!(
        deliver(&secp, &mut b, Message::ClosingSigned(forged)),
        Err(ChannelError::Close(_))
    ));
}

/// Closing negotiation needs an empty channel: with an HTLC on the
/// commitments, `closing_signed` is refused and the funder does not start.
#[test]
fn closing_signed_refused_while_htlcs_remain() {
    let (secp, mut a, mut b) = setup();
    add(&mut a, 1).expect("affordable");
    pump(&secp, &mut a, &mut b).expect("committed");
    a.send_shutdown(p2wpkh(1)).expect("A's shutdown");
    pump(&secp, &mut a, &mut b).expect("pump");
    b.send_shutdown(p2wpkh(2)).expect("B's reply");
    pump(&secp, &mut a, &mut b).expect("pump");
    assert!(!a.closing_ready());
    assert!(!sign_closing(&secp, &mut a).expect("nothing to stage"));
    let msg = closing_signed(&b, 1_000, Some((500, 2_000)));
    assert!(matches!(
        deliver(&secp, &mut b, Message::ClosingSigned(msg)),
        Err(ChannelError::Warn(_))
    ));
    assert!(!b.is_closed() && !b.is_failed());
}

/// The negotiation state survives `encode` / `decode`, mid-way and
/// finished.
#[test]
fn closing_state_round_trips() {
    let (secp, a, mut b, first) = after_first_proposal();
    let mut record = Vec::new();
    a.encode(&mut record);
    let again = Channel::decode(&record).expect("decode");
    assert_eq!(again, a);
    assert!(again.closing_state().sent().is_some());
    deliver(&secp, &mut b, Message::ClosingSigned(first)).expect("accepted");
    sign_closing(&secp, &mut b).expect("reply");
    drain(&mut b, &mut Reported::default());
    assert!(b.is_closed());
    let mut record = Vec::new();
    b.encode(&mut record);
    let again = Channel::decode(&record).expect("decode");
    assert_eq!(again, b);
    assert!(again.is_closed());
}

/// BOLT 3: "MUST remove any output below its own `dust_limit_satoshis`".
/// B's balance lies between the two dust limits, so A (whose limit is
/// higher) leaves B's output out and B would keep it: B verifies A's
/// transaction with A's limit and signs exactly it; A recognises B's
/// signature on its own transaction. Both ways round.
#[test]
fn closing_signed_with_different_dust_limits() {
    for (dust_a, dust_b, outputs) in [(2_000, 354, 1), (354, 2_000, 2)] {
        let secp = Secp256k1::new();
        let mut agreement = Agreement::default_for(ChannelType::Anchors);
        agreement.dust_limit_a = dust_a;
        agreement.dust_limit_b = dust_b;
        agreement.push_msat = 1_000_000;
        let (mut a, mut b) = pair(&secp, 31, &agreement);
        let (ra, rb) = shut_and_negotiate(&secp, &mut a, &mut b).expect("negotiation");
        assert_eq!(ra.closing_txs.len(), 1, "A closed ({dust_a}/{dust_b})");
        assert_eq!(ra.closing_txs, rb.closing_txs, "one transaction");
        let tx = &ra.closing_txs[0];
        assert_eq!(tx.output.len(), outputs, "A's dust limit decides");
        assert_funding_signatures(&secp, &a, tx);
        assert_funding_signatures(&secp, &b, tx);
    }
}

/// `signer`'s `closing_signed` with `fee` and no `fee_range`, signed for
/// real over the transaction it builds (its own dust limit).
fn signed_closing_signed(
    secp: &Secp256k1<All>,
    signer: &Channel,
    key: &secp256k1::SecretKey,
    fee: u64,
) -> ClosingSigned {
    use lnhub_tx::closing::{legacy_closing, CloseOutput};
    let out = |side: Side, script: Option<&bitcoin::Script>| CloseOutput {
        script_pubkey: script.expect("shutdown exchanged").into(),
        balance_msat: balance_sat(signer, side) * 1000,
    };
    let s = signer.shutdown_state();
    let tx = legacy_closing(
        signer.params(),
        Some(&out(Side::Local, s.local_script())),
        Some(&out(Side::Remote, s.remote_script())),
        bitcoin::Amount::from_sat(fee),
        signer.params().side(Side::Local).dust_limit,
    )
    .expect("buildable");
    let msg = lnhub_tx::sighash::funding_input(&tx, signer.params());
    let mut m = closing_signed(signer, fee, None);
    m.signature = secp.sign_ecdsa(&msg, key);
    m
}

/// Without `fee_range` (an old peer): "if `fee_satoshis` is not strictly
/// between its last-sent `fee_satoshis` and its previously-received
/// `fee_satoshis`... SHOULD send a `warning`"; otherwise the receiver
/// "MUST propose a value strictly between the received `fee_satoshis` and
/// its previously-sent `fee_satoshis`", and agrees once it is in range.
#[test]
fn closing_signed_without_fee_range_moves_strictly_between() {
    let (secp, mut a, b, first) = after_first_proposal();
    let b_key = common::node_keys(&secp, 31, "b").secrets.funding_key;
    let ours = first.fee_satoshis.0;
    let max = first
        .fee_range
        .expect("we always send fee_range")
        .max_fee_satoshis
        .0;
    // B asks for far more than A's maximum: A counters with the midpoint.
    let high = max + 1_000;
    deliver(
        &secp,
        &mut a,
        Message::ClosingSigned(signed_closing_signed(&secp, &b, &b_key, high)),
    )
    .expect("valid, outside A's range");
    assert!(sign_closing(&secp, &mut a).expect("A counters"));
    let mid = ours + (high - ours) / 2;
    assert_eq!(a.closing_state().sent().map(|p| p.fee), Some(mid));
    drain(&mut a, &mut Reported::default());
    // B's next fee must lie strictly between A's mid and B's high (or
    // equal A's, which ends the negotiation).
    for bad in [high, high + 1, mid - 1] {
        let msg = signed_closing_signed(&secp, &b, &b_key, bad);
        assert!(
            matches!(
                deliver(&secp, &mut a.clone(), Message::ClosingSigned(msg)),
                Err(ChannelError::Warn(_))
            ),
            "fee {bad} is not strictly between {mid} and {high}"
        );
    }
    // Inside A's range: A agrees with the same fee and the close is done.
    let msg = signed_closing_signed(&secp, &b, &b_key, max);
    assert!(max > mid && max < high, "A's maximum lies between");
    deliver(&secp, &mut a, Message::ClosingSigned(msg)).expect("strictly between, in range");
    assert!(sign_closing(&secp, &mut a).expect("A agrees"));
    let mut reported = Reported::default();
    let sent = drain(&mut a, &mut reported);
    assert!(
        matches!(&sent[..], [Message::ClosingSigned(m)] if m.fee_satoshis.0 == max),
        "A repeats B's fee"
    );
    assert_eq!(reported.closing_txs.len(), 1);
    assert_funding_signatures(&secp, &a, &reported.closing_txs[0]);
}

/// Once a `shutdown` is out and the channel is empty, no update may be
/// sent: "MUST NOT send any `update` message after that point".
#[test]
fn no_update_fee_once_closing_may_start() {
    let (secp, mut a, mut b) = setup();
    a.send_shutdown(p2wpkh(1)).expect("A's shutdown");
    pump(&secp, &mut a, &mut b).expect("pump");
    assert!(a.updates_frozen() && b.updates_frozen());
    assert_eq!(a.send_update_fee(3_000), Err(SendError::UpdatesFrozen));
}

/// A fundee that finished while the funder missed its last
/// `closing_signed` answers the funder's restarted negotiation with it,
/// and the funder finishes with the same transaction.
#[test]
fn lost_final_closing_signed_is_repeated_on_reconnection() {
    let (secp, mut a, mut b, first) = after_first_proposal();
    // B (fundee) agrees with A's fee and is done; its reply is lost.
    deliver(&secp, &mut b, Message::ClosingSigned(first)).expect("B takes it");
    assert!(sign_closing(&secp, &mut b).expect("B agrees"));
    let mut rb = Reported::default();
    let lost = drain(&mut b, &mut rb);
    assert!(matches!(&lost[..], [Message::ClosingSigned(_)]));
    assert_eq!(rb.closing_txs.len(), 1, "B agreed with A's fee: done");
    // A reconnects and restarts the negotiation; B, closed, answers with
    // its final message.
    a.handle_disconnect();
    b.handle_disconnect();
    a.handle_reconnect(&secp);
    b.handle_reconnect(&secp);
    let (ra, rb2) = shut_and_resume(&secp, &mut a, &mut b);
    assert_eq!(ra.closing_txs.len(), 1, "A finished after reconnecting");
    assert!(rb2.closing_txs.is_empty(), "B reported its close once");
    assert_eq!(ra.closing_txs, rb.closing_txs, "the same transaction");
}

/// Delivers and signs until quiet, ignoring what a closed side ignores.
fn shut_and_resume(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
) -> (Reported, Reported) {
    let (mut ra, mut rb) = (Reported::default(), Reported::default());
    let (mut to_a, mut to_b) = (
        std::collections::VecDeque::new(),
        std::collections::VecDeque::new(),
    );
    loop {
        let mut progress = sign_closing(secp, a).expect("A") | sign_closing(secp, b).expect("B");
        to_b.extend(drain(a, &mut ra));
        to_a.extend(drain(b, &mut rb));
        for (ch, inbox) in [(&mut *b, &mut to_b), (&mut *a, &mut to_a)] {
            if let Some(m) = inbox.pop_front() {
                match deliver(secp, ch, m) {
                    Ok(()) | Err(ChannelError::Ignore(_)) => {}
                    Err(e) => panic!("refused: {e}"),
                }
                progress = true;
            }
        }
        if !progress {
            return (ra, rb);
        }
    }
}

// ---- option_simple_close (BOLT 2 "Closing Negotiation: `closing_complete`
// and `closing_sig`", BOLT 3 "Closing Transaction") ----

fn simple_terms() -> ShutdownTerms {
    ShutdownTerms {
        option_simple_close: true,
        ..ShutdownTerms::default()
    }
}

/// Both sides exchanged `shutdown` with `option_simple_close`: (secp, A, B).
fn simple_shut(agreement: &Agreement) -> (Secp256k1<All>, Channel, Channel) {
    let secp = Secp256k1::new();
    let (mut a, mut b) = pair_with_terms(&secp, 31, agreement, simple_terms(), simple_terms());
    a.send_shutdown(p2wpkh(1)).expect("A's shutdown");
    pump(&secp, &mut a, &mut b).expect("pump");
    b.send_shutdown(p2wpkh(2)).expect("B's reply");
    pump(&secp, &mut a, &mut b).expect("pump");
    assert!(a.closing_ready() && b.closing_ready());
    (secp, a, b)
}

/// The output paying `script` in `tx`.
fn paid(tx: &bitcoin::Transaction, script: &ScriptBuf) -> Option<u64> {
    tx.output
        .iter()
        .find(|o| o.script_pubkey == *script)
        .map(|o| o.value.to_sat())
}

/// Each side proposes its own transaction paying its own fee and the other
/// signs it: two transactions, each reported by both sides, each with both
/// outputs, the closer paying the fee, RBF-signalling, both signatures
/// valid.
#[test]
fn simple_close_each_side_pays_its_own_fee() {
    let (secp, mut a, mut b) = simple_shut(&Agreement::default_for(ChannelType::Anchors));
    let (a_sat, b_sat) = (balance_sat(&a, Side::Local), balance_sat(&a, Side::Remote));
    let (ra, rb) = shut_and_resume(&secp, &mut a, &mut b);
    assert_eq!(ra.closing_txs.len(), 2, "A: its own and B's");
    assert_eq!(rb.closing_txs.len(), 2, "B: its own and A's");
    for tx in &ra.closing_txs {
        assert!(
            rb.closing_txs.contains(tx),
            "both sides hold each transaction"
        );
        assert_funding_signatures(&secp, &a, tx);
        assert_eq!(tx.input[0].sequence.0, 0xFFFF_FFFD);
        assert_eq!(tx.output.len(), 2);
        let (to_a, to_b) = (paid(tx, &p2wpkh(1)), paid(tx, &p2wpkh(2)));
        assert!(
            to_a == Some(a_sat) && to_b < Some(b_sat) || to_b == Some(b_sat) && to_a < Some(a_sat),
            "exactly one side (the closer) pays the fee: {to_a:?} {to_b:?}"
        );
    }
    assert!(a.is_closed() && b.is_closed());
    assert!(a.closing_state().simple().proposed() && b.closing_state().simple().proposed());
    assert!(
        !sign_closing(&secp, &mut a).expect("nothing"),
        "no second proposal"
    );
}

/// The lesser side's output is dust: it cannot pay a fee and does not
/// propose; the other sets only `closer_output_only`, and the closee,
/// whose own output is dust, uses that signature.
#[test]
fn simple_close_drops_a_dust_output() {
    let mut agreement = Agreement::default_for(ChannelType::Anchors);
    agreement.push_msat = 200_000;
    let (secp, mut a, mut b) = simple_shut(&agreement);
    assert!(sign_closing(&secp, &mut a).expect("A proposes"));
    let sent = drain(&mut a, &mut Reported::default());
    let [Message::ClosingComplete(cc)] = &sent[..] else {
        panic!("A sends closing_complete: {sent:?}");
    };
    assert!(cc.closer_output_only.is_some());
    assert!(cc.closee_output_only.is_none() && cc.closer_and_closee_outputs.is_none());
    assert!(!sign_closing(&secp, &mut b).expect("B"), "B cannot pay");
    deliver(&secp, &mut b, Message::ClosingComplete(cc.clone())).expect("valid");
    let (ra, rb) = shut_and_resume(&secp, &mut a, &mut b);
    assert_eq!(ra.closing_txs.len(), 1);
    assert_eq!(ra.closing_txs, rb.closing_txs);
    assert_eq!(ra.closing_txs[0].output.len(), 1);
    assert_funding_signatures(&secp, &a, &ra.closing_txs[0]);
}

/// Both shutdowns exchanged with `option_simple_close`, A's real
/// `closing_complete` signed and not delivered: (secp, A, B, A's message).
fn simple_exchange() -> (
    Secp256k1<All>,
    Channel,
    Channel,
    lnhub_wire::msgs::ClosingComplete,
) {
    let (secp, mut a, b) = simple_shut(&Agreement::default_for(ChannelType::Anchors));
    assert!(sign_closing(&secp, &mut a).expect("A proposes"));
    let sent = drain(&mut a, &mut Reported::default());
    let [Message::ClosingComplete(cc)] = &sent[..] else {
        panic!("A sends closing_complete: {sent:?}");
    };
    (secp, a, b, cc.clone())
}

/// The closee's MUSTs and SHOULDs: a `closing_complete` naming another
/// script for us, an invalid closer script, a fee over the closer's
/// balance, a missing signature or an invalid one is refused with a
/// warning (and a disconnection); nothing changes.
#[test]
fn simple_close_bad_closing_complete_is_refused() {
    let (secp, _a, b, cc) = simple_exchange();
    let b_sat_of_a = balance_sat(&b, Side::Remote);
    let cases: Vec<(&str, lnhub_wire::msgs::ClosingComplete)> = vec![
        ("closee script is not ours", {
            let mut m = cc.clone();
            m.closee_scriptpubkey = p2wpkh(7).to_bytes();
            m
        }),
        ("closer script not an allowed form", {
            let mut m = cc.clone();
            m.closer_scriptpubkey = program(0x51, 32).to_bytes();
            m
        }),
        ("fee over the closer's balance", {
            let mut m = cc.clone();
            m.fee_satoshis = Sat(b_sat_of_a + 1);
            m
        }),
        ("no signature we may use", {
            let mut m = cc.clone();
            m.closer_and_closee_outputs = None;
            m.closee_output_only = None;
            m
        }),
        ("forged signature", {
            let mut m = cc.clone();
            m.closer_and_closee_outputs =
                Some(secp256k1::ecdsa::Signature::from_compact(&[1; 64]).expect("valid"));
            m
        }),
    ];
    for (name, m) in cases {
        let mut b = b.clone();
        let before = b.clone();
        assert!(
            matches!(
                deliver(&secp, &mut b, Message::ClosingComplete(m)),
                Err(ChannelError::Warn(_))
            ),
            "{name}"
        );
        assert_eq!(b, before, "{name}: nothing changed");
    }
}

/// The receiver of `closing_sig`: fields that do not match our
/// `closing_complete`, more than one signature, or a signature for a
/// transaction we did not offer are refused with a warning; the real one
/// completes our transaction.
#[test]
fn simple_close_bad_closing_sig_is_refused() {
    let (secp, mut a, mut b, cc) = simple_exchange();
    deliver(&secp, &mut b, Message::ClosingComplete(cc)).expect("valid");
    assert!(sign_closing(&secp, &mut b).expect("B signs"));
    let mut rb = Reported::default();
    let sent = drain(&mut b, &mut rb);
    assert_eq!(rb.closing_txs.len(), 1, "B holds A's transaction");
    let Some(Message::ClosingSig(cs)) = sent
        .into_iter()
        .find(|m| matches!(m, Message::ClosingSig(_)))
    else {
        panic!("B sends closing_sig");
    };
    assert!(
        cs.closer_and_closee_outputs.is_some(),
        "B used both outputs"
    );
    let sig = cs.closer_and_closee_outputs;
    let cases: Vec<(&str, lnhub_wire::msgs::ClosingSig)> = vec![
        ("other fee", {
            let mut m = cs.clone();
            m.fee_satoshis = Sat(m.fee_satoshis.0 + 1);
            m
        }),
        ("other locktime", {
            let mut m = cs.clone();
            m.locktime += 1;
            m
        }),
        ("other closee script", {
            let mut m = cs.clone();
            m.closee_scriptpubkey = p2wpkh(7).to_bytes();
            m
        }),
        ("two signatures", {
            let mut m = cs.clone();
            m.closer_output_only = sig;
            m
        }),
        ("a field we did not offer", {
            let mut m = cs.clone();
            m.closer_and_closee_outputs = None;
            m.closee_output_only = sig;
            m
        }),
        ("signature of the other transaction", {
            let mut m = cs.clone();
            m.closer_and_closee_outputs = None;
            m.closer_output_only = sig;
            m
        }),
    ];
    for (name, m) in cases {
        let mut a = a.clone();
        assert!(
            matches!(
                deliver(&secp, &mut a, Message::ClosingSig(m)),
                Err(ChannelError::Warn(_))
            ),
            "{name}"
        );
        assert!(!a.is_closed(), "{name}");
    }
    deliver(&secp, &mut a, Message::ClosingSig(cs)).expect("the real one");
    let mut ra = Reported::default();
    drain(&mut a, &mut ra);
    assert_eq!(ra.closing_txs, rb.closing_txs, "the same transaction");
    assert_funding_signatures(&secp, &a, &ra.closing_txs[0]);
}

/// The simple-close state survives `encode` / `decode` mid-way (our
/// `closing_complete` waiting) and after a transaction.
#[test]
fn simple_close_state_round_trips() {
    let (_secp, a, _b, _cc) = simple_exchange();
    let mut record = Vec::new();
    a.encode(&mut record);
    let again = Channel::decode(&record).expect("decode");
    assert_eq!(again, a);
    assert!(again.closing_state().simple().sent().is_some());
    assert!(again.shutdown_terms().option_simple_close);
}

/// A disconnection drops our unanswered `closing_complete`; after
/// `channel_reestablish` we propose again and finish.
#[test]
fn simple_close_restarts_after_reconnection() {
    let (secp, mut a, mut b, _lost) = simple_exchange();
    a.handle_disconnect();
    b.handle_disconnect();
    assert!(a.closing_state().simple().sent().is_none());
    a.handle_reconnect(&secp);
    b.handle_reconnect(&secp);
    let (ra, rb) = shut_and_resume(&secp, &mut a, &mut b);
    assert_eq!(ra.closing_txs.len(), 2);
    assert_eq!(rb.closing_txs.len(), 2);
}

/// BOLT 2: "SHOULD fail to route any HTLC added after it has sent
/// `shutdown`". A's add crosses B's `shutdown`: B accepts it (A had not
/// seen the `shutdown`) and reports it with `added_after_shutdown`, so the
/// engine fails it; an HTLC added before is forwarded as usual.
#[test]
fn an_add_racing_our_shutdown_is_flagged_for_failing() {
    let (secp, mut a, mut b) = setup();
    let before = add(&mut a, 1).expect("affordable");
    pump(&secp, &mut a, &mut b).expect("committed");
    b.send_shutdown(p2wpkh(2)).expect("B's shutdown");
    let from_b = drain(&mut b, &mut Reported::default());
    let racing = add(&mut a, 2).expect("A has not seen B's shutdown");
    for m in drain(&mut a, &mut Reported::default()) {
        deliver(&secp, &mut b, m).expect("the racing add is accepted");
    }
    for m in from_b {
        deliver(&secp, &mut a, m).expect("B's shutdown");
    }
    let (_, rb) = pump(&secp, &mut a, &mut b).expect("the racing add is committed");
    assert!(rb.forwards.contains(&racing), "reported once committed");
    let flag = |id| {
        b.book()
            .htlc(Side::Remote, id)
            .map(|h| h.added_after_shutdown)
    };
    assert_eq!(flag(racing), Some(true));
    assert_eq!(flag(before), Some(false));
    assert!(matches!(add(&mut a, 3), Err(SendError::ShuttingDown)));
}

/// "if it doesn't receive a `closing_signed` response after a reasonable
/// amount of time: MUST fail the channel"; for `closing_complete`, "SHOULD
/// close the connection if it doesn't receive `closing_sig`". The clock is
/// the caller's: the channel says what it waits for and what a timeout
/// means.
#[test]
fn unanswered_closing_messages_time_out() {
    let (_secp, mut a, b, _first) = after_first_proposal();
    assert!(a.awaiting_closing_reply() && !b.awaiting_closing_reply());
    assert!(matches!(
        a.handle_closing_timeout(),
        Err(ChannelError::Close(_))
    ));
    assert!(a.is_failed());

    let (_secp, mut a, mut b, _cc) = simple_exchange();
    assert!(a.awaiting_closing_reply());
    assert_eq!(b.handle_closing_timeout(), Ok(()), "B waits for nothing");
    assert!(matches!(
        a.handle_closing_timeout(),
        Err(ChannelError::Warn(_))
    ));
    assert!(
        !a.is_failed(),
        "a warning and a reconnection, not a force close"
    );
}
