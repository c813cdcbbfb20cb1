//! The record of a channel being opened (`Establishing::encode` /
//! `Establishing::decode`): exact round trips at every establishment state
//! of both roles, after which the decoded machines finish the opening into
//! the same channels as the originals; truncated, corrupted, foreign and
//! random bytes refused without a panic; a restart that releases what the
//! record held, drops what the lost connection was to carry, and sends
//! `channel_ready` again.

mod common;

use std::collections::BTreeSet;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version;
use bitcoin::{OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use common::{establish_config as config, node_keys, pump, Rng};
use lnhub_channel::{
    Channel, DecodeError, Effect, EstablishState, Establishing, LocalKeys, NegotiatedType,
    OpenRequest, PeerContext, ESTABLISH_STATE_VERSION, STATE_VERSION,
};
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, Sat, ShortChannelId};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

fn keys(secp: &Secp256k1<All>, name: &str) -> LocalKeys {
    let k = node_keys(secp, 21, name);
    LocalKeys {
        secrets: k.secrets,
        pubkeys: k.pubkeys,
    }
}

/// The two channel types exercised: an `option_scid_alias` channel that
/// waits for depth 3, and a zero-conf one with a trusted fundee.
fn types() -> [NegotiatedType; 2] {
    [
        NegotiatedType {
            commitment: ChannelType::Anchors,
            scid_alias: true,
            zeroconf: false,
        },
        NegotiatedType {
            commitment: ChannelType::StaticRemoteKey,
            scid_alias: false,
            zeroconf: true,
        },
    ]
}

fn record(e: &Establishing) -> Vec<u8> {
    let mut out = Vec::new();
    e.encode(&mut out);
    out
}

/// Which side a checkpoint is on: A funds, B accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    A,
    B,
}

/// Called at every checkpoint of the exchange with the machine as it is:
/// may replace it (by its decoded record) or just look.
type Hook<'a> = &'a mut dyn FnMut(Who, &mut Establishing);

/// Drains effects: persists complete at once (the hook sees the machine
/// between the request being polled and the write completing, with the
/// gated effects held), messages are returned, broadcasts counted.
fn drain(who: Who, e: &mut Establishing, hook: Hook<'_>, broadcasts: &mut u32) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(effect) = e.poll_effect() {
        match effect {
            Effect::Send(m) => out.push(m),
            Effect::Persist { seq } => {
                hook(who, e);
                e.handle_persisted(seq);
            }
            Effect::BroadcastFunding { .. } => *broadcasts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// Runs the whole exchange for `t`, calling `hook` at every checkpoint
/// (right after each transition, before its effects are drained); returns
/// both channels.
fn open_with(secp: &Secp256k1<All>, t: NegotiatedType, hook: Hook<'_>) -> (Channel, Channel) {
    let ctx = PeerContext {
        large_channels: false,
        trusted_for_zeroconf: t.zeroconf,
        ..PeerContext::default()
    };
    let mut broadcasts = 0;
    let req = OpenRequest {
        temporary_channel_id: ChannelId([3; 32]),
        funding_satoshis: Sat(1_000_000),
        push_msat: Msat(200_000_000),
        feerate_per_kw: 2_500,
        channel_type: t,
        announce: !t.scid_alias,
        alias: Some(ShortChannelId(0xabc)),
    };
    let mut a = Establishing::open(secp, config(), keys(secp, "a"), ctx, req).unwrap();
    hook(Who::A, &mut a);
    let Some(Message::OpenChannel(open)) = drain(Who::A, &mut a, hook, &mut broadcasts).pop()
    else {
        panic!("open_channel")
    };
    let alias_b = Some(ShortChannelId(0xdef));
    let mut b = Establishing::accept(secp, config(), keys(secp, "b"), ctx, &open, alias_b).unwrap();
    hook(Who::B, &mut b);
    let Some(Message::AcceptChannel(accept)) = drain(Who::B, &mut b, hook, &mut broadcasts).pop()
    else {
        panic!("accept_channel")
    };
    a.handle_accept_channel(&accept).unwrap();
    hook(Who::A, &mut a);
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([7; 32]),
                vout: 1,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![a.funding_output().unwrap() as TxOut],
    };
    let staged = a.stage_funding(secp, &tx, 0).unwrap();
    hook(Who::A, &mut a);
    a.apply_funding_signature(staged.sign(secp));
    hook(Who::A, &mut a);
    let Some(Message::FundingCreated(created)) = drain(Who::A, &mut a, hook, &mut broadcasts).pop()
    else {
        panic!("funding_created")
    };
    let staged = b.stage_funding_created(secp, &created).unwrap();
    hook(Who::B, &mut b);
    let to_sign = b.apply_funding_created(secp, staged.verify(secp)).unwrap();
    hook(Who::B, &mut b);
    b.apply_funding_signed_signature(to_sign.sign(secp));
    hook(Who::B, &mut b);
    let mut from_b = drain(Who::B, &mut b, hook, &mut broadcasts);
    let Message::FundingSigned(signed) = from_b.remove(0) else {
        panic!("funding_signed")
    };
    let staged = a.stage_funding_signed(secp, &signed).unwrap();
    hook(Who::A, &mut a);
    a.apply_funding_signed(staged.verify(secp)).unwrap();
    hook(Who::A, &mut a);
    let mut from_a = drain(Who::A, &mut a, hook, &mut broadcasts);
    assert_eq!(broadcasts, 1, "the funder broadcasts once");
    // Zero-conf: channel_ready went with commitment 0 (reporting depth 0
    // sends it again only after a restart). Otherwise it waits for depth.
    if !t.zeroconf {
        assert!(from_a.is_empty() && from_b.is_empty());
    }
    let depth = if t.zeroconf { 0 } else { 3 };
    a.handle_funding_depth(depth);
    hook(Who::A, &mut a);
    b.handle_funding_depth(depth);
    hook(Who::B, &mut b);
    from_a.extend(drain(Who::A, &mut a, hook, &mut broadcasts));
    from_b.extend(drain(Who::B, &mut b, hook, &mut broadcasts));
    let (Some(Message::ChannelReady(ra)), Some(Message::ChannelReady(rb))) =
        (from_a.pop(), from_b.pop())
    else {
        panic!("channel_ready both ways")
    };
    a.handle_channel_ready(&rb).unwrap();
    hook(Who::A, &mut a);
    b.handle_channel_ready(&ra).unwrap();
    hook(Who::B, &mut b);
    assert!(a.is_ready() && b.is_ready());
    (a.into_channel(), b.into_channel())
}

/// Every record written along the exchange for `t`, with its side and state.
fn records(secp: &Secp256k1<All>, t: NegotiatedType) -> Vec<(Who, EstablishState, Vec<u8>)> {
    let mut out = Vec::new();
    open_with(secp, t, &mut |who, e| out.push((who, e.state(), record(e))));
    out
}

/// Carries a payment A -> B: the channels work.
fn pay(secp: &Secp256k1<All>, a: &mut Channel, b: &mut Channel) {
    let hash = PaymentHash(sha256::Hash::hash(&[1; 32]).to_byte_array());
    a.send_add_htlc(Msat(5_000_000), hash, 800_000, &[0; ONION_PACKET_LEN])
        .expect("room for the HTLC");
    let (_, rb) = pump(secp, a, b).expect("honest peers");
    assert_eq!(rb.forwards, vec![0], "B sees the HTLC committed");
}

#[test]
fn every_state_of_both_roles_round_trips_and_finishes_the_same() {
    let secp = Secp256k1::new();
    for t in types() {
        let (mut plain_a, mut plain_b) = open_with(&secp, t, &mut |_, _| {});
        let mut seen = BTreeSet::new();
        let (mut a, mut b) = open_with(&secp, t, &mut |who, e| {
            let bytes = record(e);
            assert_eq!(bytes[0], ESTABLISH_STATE_VERSION);
            let back = Establishing::decode(&bytes)
                .unwrap_or_else(|err| panic!("{who:?} at {:?}: {err}", e.state()));
            assert_eq!(record(&back), bytes, "re-encoding is byte-identical");
            seen.insert((who, format!("{:?}", back.state())));
            *e = back;
        });
        let want: BTreeSet<_> = [
            (Who::A, EstablishState::AwaitingAccept),
            (Who::A, EstablishState::AwaitingFundingTx),
            (Who::A, EstablishState::AwaitingFundingSigned),
            (Who::A, EstablishState::AwaitingReady),
            (Who::B, EstablishState::AwaitingFundingCreated),
            (Who::B, EstablishState::SigningFundingSigned),
            (Who::B, EstablishState::AwaitingReady),
        ]
        .into_iter()
        .map(|(w, s)| (w, format!("{s:?}")))
        .collect();
        assert_eq!(seen, want, "every state of both roles was recorded");
        assert!(a == plain_a, "the funder's channel is the same");
        assert!(b == plain_b, "the fundee's channel is the same");
        pay(&secp, &mut a, &mut b);
        pay(&secp, &mut plain_a, &mut plain_b);
        assert!(a == plain_a && b == plain_b, "and runs the same");
    }
}

#[test]
fn truncated_flipped_and_foreign_records_are_refused() {
    let secp = Secp256k1::new();
    let mut rng = Rng::new(3);
    for t in types() {
        for (who, state, bytes) in records(&secp, t) {
            for len in 0..bytes.len() {
                assert!(
                    Establishing::decode(&bytes[..len]).is_err(),
                    "{who:?} at {state:?} cut at {len} bytes decodes"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Establishing::decode(&longer).is_err());
            for _ in 0..200 {
                let mut bad = bytes.clone();
                let i = rng.range(0, bad.len() as u64) as usize;
                bad[i] ^= 1 << rng.range(0, 8);
                match Establishing::decode(&bad) {
                    Err(DecodeError::BadChecksum | DecodeError::UnknownVersion(_)) => {}
                    other => panic!("a flipped bit at {i} gave {other:?}"),
                }
            }
            // An opening's record is never read as a channel's.
            assert_eq!(
                Channel::decode(&bytes).err(),
                Some(DecodeError::UnknownVersion(ESTABLISH_STATE_VERSION))
            );
        }
    }
    // Nor a channel's as an opening's.
    let (a, _) = open_with(&secp, types()[0], &mut |_, _| {});
    let mut bytes = Vec::new();
    a.encode(&mut bytes);
    assert_eq!(
        Establishing::decode(&bytes).err(),
        Some(DecodeError::UnknownVersion(STATE_VERSION))
    );
}

/// Seals `body` (version byte included) with a valid checksum.
fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    let sum = sha256::Hash::hash(&body).to_byte_array();
    body.extend_from_slice(&sum);
    body
}

/// Runs what a caller would on a decoded opening: restart, depth, effects
/// and, once ready, the channel it becomes. Must never panic.
fn exercise(mut e: Establishing) {
    e.handle_restart();
    let _ = e.funding_output();
    e.handle_funding_depth(1_000);
    while let Some(effect) = e.poll_effect() {
        if let Effect::Persist { seq } = effect {
            e.handle_persisted(seq);
        }
    }
    if e.is_ready() {
        let _ = e.into_channel();
    }
}

#[test]
fn resealed_corruption_is_refused_by_the_invariants() {
    let secp = Secp256k1::new();
    let mut rng = Rng::new(17);
    let mut refused = 0;
    let mut tried = 0;
    for t in types() {
        for (who, state, bytes) in records(&secp, t) {
            let body = bytes[..bytes.len() - 32].to_vec();
            // The other role (byte 1) never matches the state and funding.
            let mut other_role = body.clone();
            other_role[1] ^= 1;
            assert!(
                matches!(
                    Establishing::decode(&reseal(other_role)),
                    Err(DecodeError::Invalid(_))
                ),
                "{who:?} at {state:?} with the other role decodes"
            );
            // No state beyond the six (byte 2).
            let mut no_state = body.clone();
            no_state[2] = 6 + rng.range(0, 250) as u8;
            assert_eq!(
                Establishing::decode(&reseal(no_state)).err(),
                Some(DecodeError::Invalid("establishment state"))
            );
            // Another state: refused unless the record has that state's
            // shape too (e.g. a funder's staged funding reads as sent).
            for s in 0..6u8 {
                let mut other = body.clone();
                other[2] = s;
                if let Ok(e) = Establishing::decode(&reseal(other)) {
                    exercise(e);
                }
            }
            // Random damage, resealed.
            for round in 0..300 {
                let mut bad = body.clone();
                match round % 3 {
                    0 => {
                        let i = rng.range(1, bad.len() as u64) as usize;
                        bad[i] = rng.next_u64() as u8;
                    }
                    1 => bad.truncate(rng.range(1, bad.len() as u64) as usize),
                    _ => {
                        for _ in 0..4 {
                            let i = rng.range(1, bad.len() as u64) as usize;
                            bad[i] ^= 0xff;
                        }
                    }
                }
                tried += 1;
                match Establishing::decode(&reseal(bad)) {
                    Err(_) => refused += 1,
                    Ok(e) => exercise(e),
                }
            }
        }
    }
    assert!(
        refused * 2 > tried,
        "most damage is refused ({refused}/{tried})"
    );
}

/// Specific invariants, each broken on an otherwise valid record.
#[test]
fn named_invariants_are_checked() {
    let secp = Secp256k1::new();
    let recs = records(&secp, types()[0]);
    let find = |who: Who, state: EstablishState| {
        recs.iter()
            .find(|(w, s, _)| *w == who && *s == state)
            .map(|(_, _, b)| b[..b.len() - 32].to_vec())
            .expect("recorded")
    };
    // A funder waiting for funding_signed with its state read as "waiting
    // for accept_channel": the peer's side is there.
    let mut b = find(Who::A, EstablishState::AwaitingFundingSigned);
    b[2] = 0;
    assert_eq!(
        Establishing::decode(&reseal(b)).err(),
        Some(DecodeError::Invalid("peer's side"))
    );
    // A fundee's verified commitment 0 read as "waiting for
    // funding_created": the signature it holds belongs to a later state.
    let mut b = find(Who::B, EstablishState::SigningFundingSigned);
    b[2] = 3;
    assert_eq!(
        Establishing::decode(&reseal(b)).err(),
        Some(DecodeError::Invalid("holder signature"))
    );
    // A funder that accepted, read as having sent funding_created: no
    // funding parameters yet.
    let mut b = find(Who::A, EstablishState::AwaitingFundingTx);
    b[2] = 2;
    assert_eq!(
        Establishing::decode(&reseal(b)).err(),
        Some(DecodeError::Invalid("funding"))
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(99);
    for round in 0..20_000 {
        let len = rng.range(0, 1_200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if round % 2 == 0 {
            // Past the version and checksum, into the parser.
            if let Some(first) = bytes.first_mut() {
                *first = ESTABLISH_STATE_VERSION;
            }
            bytes = reseal(bytes);
        }
        if let Ok(e) = Establishing::decode(&bytes) {
            exercise(e);
        }
    }
}

/// The fundee's record is taken as it asks for its write, and it crashes
/// before `funding_signed` leaves: the message is lost with the
/// connection, the channel is kept (BOLT 2 after `funding_signed`) and
/// `channel_ready` goes again once the depth is reported. The funder
/// restarting from its own record broadcasts the funding (the held
/// effect is released) and sends nothing until the depth is reported.
#[test]
fn restart_releases_held_effects_and_drops_messages() {
    let secp = Secp256k1::new();
    for t in types() {
        let mut fundee = None;
        let mut funder = None;
        open_with(&secp, t, &mut |who, e| {
            let slot = match who {
                Who::A => &mut funder,
                Who::B => &mut fundee,
            };
            if e.state() == EstablishState::AwaitingReady && slot.is_none() {
                *slot = Some(record(e));
            }
        });
        // The first AwaitingReady checkpoint of each is right after the
        // transition, its persist request not yet polled.
        for (who, bytes) in [(Who::A, funder.unwrap()), (Who::B, fundee.unwrap())] {
            let mut e = Establishing::decode(&bytes).expect("decodes");
            e.handle_restart();
            let mut released = Vec::new();
            while let Some(effect) = e.poll_effect() {
                released.push(effect);
            }
            match who {
                Who::A => assert!(
                    matches!(released[..], [Effect::BroadcastFunding { .. }]),
                    "{released:?}"
                ),
                Who::B => assert!(released.is_empty(), "{released:?}"),
            }
            assert_eq!(e.state(), EstablishState::AwaitingReady);
            assert!(!e.is_ready());
            let depth = if t.zeroconf { 0 } else { 3 };
            if depth > 0 {
                e.handle_funding_depth(depth - 1);
                assert_eq!(e.poll_effect(), None, "not before minimum_depth");
            }
            e.handle_funding_depth(depth);
            assert!(
                matches!(
                    e.poll_effect(),
                    Some(Effect::Send(Message::ChannelReady(_)))
                ),
                "channel_ready again"
            );
            assert_eq!(e.poll_effect(), None);
        }
    }
}

/// A funder that crashed after its persist and restarted finishes the
/// opening with a fundee that never noticed, into working channels.
#[test]
fn restarted_funder_finishes_the_opening() {
    let secp = Secp256k1::new();
    for t in types() {
        let mut ready_checkpoints = 0;
        let (mut a, mut b) = open_with(&secp, t, &mut |who, e| {
            if who == Who::A && e.state() == EstablishState::AwaitingReady {
                ready_checkpoints += 1;
                // The second is the funder's persist, polled and pending:
                // it writes its record and crashes. The pending write
                // completes on the restarted machine, which no longer
                // gates anything on it.
                if ready_checkpoints == 2 {
                    let mut back = Establishing::decode(&record(e)).expect("decodes");
                    back.handle_restart();
                    *e = back;
                }
            }
        });
        assert!(ready_checkpoints > 2);
        pay(&secp, &mut a, &mut b);
    }
}
