//! Establishment v1 in both roles: the full exchange for every channel
//! type, and one test per BOLT 2 requirement that makes the receiver of
//! `open_channel` / `accept_channel` / `funding_*` / `channel_ready` fail
//! the channel.

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use common::{establish_config as config, node_keys, pump};
use lnhub_channel::{
    Channel, ChannelError, Effect, EstablishConfig, EstablishState, Establishing, LocalKeys,
    NegotiatedType, OpenRequest, PeerContext,
};
use lnhub_tx::ChannelType;
use lnhub_wire::features::Features;
use lnhub_wire::msgs::{AcceptChannel, ChannelReady, OpenChannel, ONION_PACKET_LEN};
use lnhub_wire::types::{ChainHash, ChannelId, Msat, PaymentHash, Sat, ShortChannelId};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

fn ctx() -> PeerContext {
    PeerContext {
        large_channels: false,
        trusted_for_zeroconf: true,
        ..PeerContext::default()
    }
}

fn keys(secp: &Secp256k1<All>, name: &str) -> LocalKeys {
    let k = node_keys(secp, 11, name);
    LocalKeys {
        secrets: k.secrets,
        pubkeys: k.pubkeys,
    }
}

fn request(t: NegotiatedType) -> OpenRequest {
    OpenRequest {
        temporary_channel_id: ChannelId([3; 32]),
        funding_satoshis: Sat(1_000_000),
        push_msat: Msat(200_000_000),
        feerate_per_kw: 2_500,
        channel_type: t,
        announce: !t.scid_alias,
        alias: Some(ShortChannelId(0xabc)),
    }
}

fn anchors() -> NegotiatedType {
    NegotiatedType {
        commitment: ChannelType::Anchors,
        scid_alias: false,
        zeroconf: false,
    }
}

fn sent(e: &mut Establishing) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(effect) = e.poll_effect() {
        match effect {
            Effect::Send(m) => out.push(m),
            Effect::Persist { seq } => e.handle_persisted(seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// The `open_channel` a default funder sends.
fn open_msg(secp: &Secp256k1<All>, t: NegotiatedType) -> OpenChannel {
    let mut a = Establishing::open(secp, config(), keys(secp, "a"), ctx(), request(t)).unwrap();
    match sent(&mut a).pop() {
        Some(Message::OpenChannel(m)) => m,
        other => panic!("expected open_channel, got {other:?}"),
    }
}

fn funding_tx(output: TxOut) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(5_000),
                script_pubkey: ScriptBuf::new(),
            },
            output,
        ],
    }
}

/// Runs the whole exchange; returns both channels.
fn establish(secp: &Secp256k1<All>, t: NegotiatedType) -> (Channel, Channel) {
    let mut a = Establishing::open(secp, config(), keys(secp, "a"), ctx(), request(t)).unwrap();
    let Some(Message::OpenChannel(open)) = sent(&mut a).pop() else {
        panic!("open_channel")
    };
    // A trusted acceptor picks depth 0 even without option_zeroconf; the
    // untrusted one waits for its configured depth.
    let trusted = Establishing::accept(
        secp,
        config(),
        keys(secp, "b"),
        ctx(),
        &open,
        Some(ShortChannelId(0xdef)),
    )
    .unwrap();
    assert_eq!(trusted.minimum_depth(), 0);
    let mut b = Establishing::accept(
        secp,
        config(),
        keys(secp, "b"),
        PeerContext {
            trusted_for_zeroconf: t.zeroconf,
            ..ctx()
        },
        &open,
        Some(ShortChannelId(0xdef)),
    )
    .unwrap();
    assert_eq!(b.minimum_depth(), if t.zeroconf { 0 } else { 3 });
    let Some(Message::AcceptChannel(accept)) = sent(&mut b).pop() else {
        panic!("accept_channel")
    };
    a.handle_accept_channel(&accept).unwrap();
    assert_eq!(a.state(), EstablishState::AwaitingFundingTx);
    let tx = funding_tx(a.funding_output().unwrap());
    let staged = a.stage_funding(secp, &tx, 1).unwrap();
    a.apply_funding_signature(staged.sign(secp));
    let Some(Message::FundingCreated(created)) = sent(&mut a).pop() else {
        panic!("funding_created")
    };
    let staged = b.stage_funding_created(secp, &created).unwrap();
    let verified = staged.verify(secp);
    let to_sign = b.apply_funding_created(secp, verified).unwrap();
    b.apply_funding_signed_signature(to_sign.sign(secp));
    // funding_signed waits for the persist.
    let Some(Effect::Persist { seq }) = b.poll_effect() else {
        panic!("fundee persists before funding_signed")
    };
    assert_eq!(b.poll_effect(), None);
    b.handle_persisted(seq);
    let mut from_b = sent(&mut b);
    let Message::FundingSigned(signed) = from_b.remove(0) else {
        panic!("funding_signed")
    };
    assert_eq!(Some(signed.channel_id), b.channel_id());
    let staged = a.stage_funding_signed(secp, &signed).unwrap();
    a.apply_funding_signed(staged.verify(secp)).unwrap();
    let Some(Effect::Persist { seq }) = a.poll_effect() else {
        panic!("funder persists before broadcasting")
    };
    assert_eq!(a.poll_effect(), None);
    a.handle_persisted(seq);
    assert!(matches!(
        a.poll_effect(),
        Some(Effect::BroadcastFunding { funding_txid }) if funding_txid == tx.compute_txid()
    ));
    let mut from_a = sent(&mut a);
    if !t.zeroconf {
        assert!(
            from_a.is_empty() && from_b.is_empty(),
            "no channel_ready before depth"
        );
        a.handle_funding_depth(2);
        b.handle_funding_depth(2);
        assert!(sent(&mut a).is_empty(), "depth 2 < minimum_depth 3");
        a.handle_funding_depth(3);
        b.handle_funding_depth(3);
        from_a = sent(&mut a);
        from_b = sent(&mut b);
    }
    let (Some(Message::ChannelReady(ra)), Some(Message::ChannelReady(rb))) =
        (from_a.pop(), from_b.pop())
    else {
        panic!("channel_ready both ways")
    };
    assert_eq!(ra.short_channel_id, Some(ShortChannelId(0xabc)));
    a.handle_channel_ready(&rb).unwrap();
    b.handle_channel_ready(&ra).unwrap();
    assert_eq!(a.remote_alias(), Some(ShortChannelId(0xdef)));
    assert!(a.is_ready() && b.is_ready());
    (a.into_channel(), b.into_channel())
}

#[test]
fn every_channel_type_opens_and_carries_a_payment() {
    let secp = Secp256k1::new();
    for commitment in [ChannelType::StaticRemoteKey, ChannelType::Anchors] {
        for scid_alias in [false, true] {
            for zeroconf in [false, true] {
                let t = NegotiatedType {
                    commitment,
                    scid_alias,
                    zeroconf,
                };
                let (mut a, mut b) = establish(&secp, t);
                assert_eq!(a.channel_id(), b.channel_id());
                let preimage = [9u8; 32];
                let hash = PaymentHash(bitcoin::hashes::Hash::to_byte_array(
                    <bitcoin::hashes::sha256::Hash as bitcoin::hashes::Hash>::hash(&preimage),
                ));
                let id = a
                    .send_add_htlc(Msat(50_000_000), hash, 800_000, &[0; ONION_PACKET_LEN])
                    .unwrap();
                let (_, rb) = pump(&secp, &mut a, &mut b).unwrap();
                assert_eq!(rb.forwards, vec![id], "{t:?}");
                b.send_fulfill_htlc(id, lnhub_wire::types::PaymentPreimage(preimage))
                    .unwrap();
                let (ra, _) = pump(&secp, &mut a, &mut b).unwrap();
                assert_eq!(ra.resolved.len(), 1, "{t:?}");
                let mut htlcs = Vec::new();
                let v = b.book().view(lnhub_channel::View::LocalCurrent, &mut htlcs);
                assert_eq!(v.to_local_msat, 250_000_000, "{t:?}");
            }
        }
    }
}

// ---- open_channel (fundee side) ----

fn refuse_open(m: &OpenChannel, c: EstablishConfig, x: PeerContext, needle: &str) {
    let secp = Secp256k1::new();
    match Establishing::accept(&secp, c, keys(&secp, "b"), x, m, Some(ShortChannelId(1))) {
        Err(ChannelError::Close(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        Err(e) => panic!("expected Close({needle}), got {e:?}"),
        Ok(_) => panic!("expected Close({needle}), got acceptance"),
    }
}

fn with(f: impl FnOnce(&mut OpenChannel)) -> OpenChannel {
    let secp = Secp256k1::new();
    let mut m = open_msg(&secp, anchors());
    f(&mut m);
    m
}

#[test]
fn open_channel_musts_fail_the_channel() {
    let (c, x) = (config(), ctx());
    refuse_open(
        &with(|m| m.chain_hash = ChainHash::BITCOIN),
        c,
        x,
        "unknown chain_hash",
    );
    refuse_open(
        &with(|m| m.channel_type = None),
        c,
        x,
        "without channel_type",
    );
    refuse_open(
        &with(|m| m.channel_type = Some(Features::from_bits(&[12, 20]))),
        c,
        x,
        "not a defined type",
    );
    refuse_open(
        &with(|m| m.push_msat = Msat(m.funding_satoshis.0 * 1000 + 1)),
        c,
        x,
        "push_msat",
    );
    refuse_open(&with(|m| m.to_self_delay = 2017), c, x, "to_self_delay");
    refuse_open(&with(|m| m.max_accepted_htlcs = 484), c, x, "above 483");
    refuse_open(&with(|m| m.feerate_per_kw = 252), c, x, "feerate_per_kw");
    refuse_open(
        &with(|m| m.feerate_per_kw = 100_001),
        c,
        x,
        "feerate_per_kw",
    );
    refuse_open(
        &with(|m| m.dust_limit_satoshis = Sat(353)),
        c,
        x,
        "below 354",
    );
    refuse_open(
        &with(|m| m.dust_limit_satoshis = Sat(m.channel_reserve_satoshis.0 + 1)),
        c,
        x,
        "above channel_reserve_satoshis",
    );
    // The funder keeps less than the anchor commitment fee (3,470 sat).
    refuse_open(
        &with(|m| m.push_msat = Msat(m.funding_satoshis.0 * 1000 - 3_000_000)),
        c,
        x,
        "cannot pay the initial fee",
    );
    // Both sides at or below the reserve (with a policy that allows
    // such a reserve, to reach the MUST).
    let mut lenient = c;
    lenient
        .peer_limits
        .max_channel_reserve_proportional_millionths = 1_000_000;
    refuse_open(
        &with(|m| {
            m.funding_satoshis = Sat(30_000);
            m.push_msat = Msat(0);
            m.channel_reserve_satoshis = Sat(29_500);
            m.feerate_per_kw = 253;
        }),
        lenient,
        x,
        "both initial balances",
    );
    refuse_open(
        &with(|m| m.funding_satoshis = Sat(1 << 24)),
        c,
        x,
        "option_support_large_channel",
    );
}

#[test]
fn large_channel_accepted_when_negotiated() {
    let secp = Secp256k1::new();
    let m = with(|m| {
        m.funding_satoshis = Sat(1 << 24);
        m.channel_reserve_satoshis = Sat(200_000);
    });
    let x = PeerContext {
        large_channels: true,
        ..ctx()
    };
    assert!(Establishing::accept(&secp, config(), keys(&secp, "b"), x, &m, None).is_ok());
}

#[test]
fn channel_type_rules_fail_the_channel() {
    let secp = Secp256k1::new();
    let alias_announced = with(|m| {
        let t = NegotiatedType {
            scid_alias: true,
            ..anchors()
        };
        m.channel_type = Some(t.to_features());
        m.channel_flags = 1;
    });
    refuse_open(&alias_announced, config(), ctx(), "option_scid_alias");
    let zeroconf = open_msg(
        &secp,
        NegotiatedType {
            zeroconf: true,
            ..anchors()
        },
    );
    let untrusted = PeerContext {
        trusted_for_zeroconf: false,
        ..ctx()
    };
    refuse_open(&zeroconf, config(), untrusted, "do not trust");
}

#[test]
fn open_channel_mays_fail_the_channel_per_policy() {
    let (c, x) = (config(), ctx());
    refuse_open(
        &with(|m| {
            m.funding_satoshis = Sat(19_999);
            m.push_msat = Msat(0);
        }),
        c,
        x,
        "funding_satoshis 19999sat too small",
    );
    refuse_open(
        &with(|m| m.htlc_minimum_msat = Msat(1_000_001)),
        c,
        x,
        "htlc_minimum_msat",
    );
    refuse_open(
        &with(|m| m.max_htlc_value_in_flight_msat = Msat(999_999)),
        c,
        x,
        "max_htlc_value_in_flight_msat",
    );
    refuse_open(
        &with(|m| m.channel_reserve_satoshis = Sat(200_001)),
        c,
        x,
        "channel_reserve_satoshis",
    );
    refuse_open(&with(|m| m.max_accepted_htlcs = 4), c, x, "too small");
    refuse_open(
        &with(|m| m.dust_limit_satoshis = Sat(10_001)),
        c,
        x,
        "dust_limit_satoshis",
    );
}

// ---- accept_channel (funder side) ----

fn accept_msg(secp: &Secp256k1<All>) -> (Establishing, AcceptChannel) {
    let a = Establishing::open(secp, config(), keys(secp, "a"), ctx(), request(anchors())).unwrap();
    let mut b = Establishing::accept(
        secp,
        config(),
        keys(secp, "b"),
        ctx(),
        &open_msg(secp, anchors()),
        None,
    )
    .unwrap();
    let Some(Message::AcceptChannel(m)) = sent(&mut b).pop() else {
        panic!("accept_channel")
    };
    (a, m)
}

fn refuse_accept(f: impl FnOnce(&mut AcceptChannel), needle: &str) {
    let secp = Secp256k1::new();
    let (mut a, mut m) = accept_msg(&secp);
    f(&mut m);
    match a.handle_accept_channel(&m) {
        Err(ChannelError::Close(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        other => panic!("expected Close({needle}), got {other:?}"),
    }
}

#[test]
fn accept_channel_musts_fail_the_channel() {
    refuse_accept(|m| m.channel_type = None, "without channel_type");
    refuse_accept(
        |m| m.channel_type = Some(Features::from_bits(&[12])),
        "differs from open_channel",
    );
    refuse_accept(|m| m.minimum_depth = 145, "minimum_depth");
    refuse_accept(
        |m| m.channel_reserve_satoshis = Sat(545),
        "below our dust_limit",
    );
    refuse_accept(
        |m| m.dust_limit_satoshis = Sat(10_001),
        "above the channel_reserve",
    );
    refuse_accept(|m| m.max_accepted_htlcs = 484, "above 483");
    refuse_accept(|m| m.dust_limit_satoshis = Sat(353), "below 354");
    refuse_accept(|m| m.to_self_delay = 5_000, "to_self_delay");
}

#[test]
fn accept_for_another_temporary_id_warns() {
    let secp = Secp256k1::new();
    let (mut a, mut m) = accept_msg(&secp);
    m.temporary_channel_id = ChannelId([8; 32]);
    assert!(matches!(
        a.handle_accept_channel(&m),
        Err(ChannelError::Warn(_))
    ));
    assert_eq!(a.state(), EstablishState::AwaitingAccept);
}

// ---- funding signatures and channel_ready ----

#[test]
fn bad_funding_signatures_fail_the_channel() {
    let secp = Secp256k1::new();
    let mut a =
        Establishing::open(&secp, config(), keys(&secp, "a"), ctx(), request(anchors())).unwrap();
    let Some(Message::OpenChannel(open)) = sent(&mut a).pop() else {
        panic!()
    };
    let mut b =
        Establishing::accept(&secp, config(), keys(&secp, "b"), ctx(), &open, None).unwrap();
    let Some(Message::AcceptChannel(accept)) = sent(&mut b).pop() else {
        panic!()
    };
    a.handle_accept_channel(&accept).unwrap();
    let tx = funding_tx(a.funding_output().unwrap());
    assert!(matches!(
        a.stage_funding(&secp, &tx, 0),
        Err(ChannelError::Close(_))
    ));
    let staged = a.stage_funding(&secp, &tx, 1).unwrap();
    a.apply_funding_signature(staged.sign(&secp));
    let Some(Message::FundingCreated(mut created)) = sent(&mut a).pop() else {
        panic!()
    };
    let good = created.signature;
    // A signature by the wrong key (a valid signature of something else).
    created.signature = secp.sign_ecdsa(
        &secp256k1::Message::from_digest([1; 32]),
        &secp256k1::SecretKey::from_slice(&[2; 32]).unwrap(),
    );
    let staged = b.stage_funding_created(&secp, &created).unwrap();
    let verified = staged.verify(&secp);
    assert!(matches!(
        b.apply_funding_created(&secp, verified),
        Err(ChannelError::Close(m)) if m.contains("invalid commitment signature")
    ));
    // The funder refuses a bad funding_signed the same way.
    let mut b2 =
        Establishing::accept(&secp, config(), keys(&secp, "b"), ctx(), &open, None).unwrap();
    sent(&mut b2);
    created.signature = good;
    let staged = b2.stage_funding_created(&secp, &created).unwrap();
    let to_sign = b2
        .apply_funding_created(&secp, staged.verify(&secp))
        .unwrap();
    b2.apply_funding_signed_signature(to_sign.sign(&secp));
    let Some(Message::FundingSigned(mut signed)) = sent(&mut b2).into_iter().next() else {
        panic!()
    };
    signed.signature = good;
    let staged = a.stage_funding_signed(&secp, &signed).unwrap();
    assert!(matches!(
        a.apply_funding_signed(staged.verify(&secp)),
        Err(ChannelError::Close(_))
    ));
}

#[test]
fn channel_ready_without_alias_on_alias_channel_fails() {
    let secp = Secp256k1::new();
    let t = NegotiatedType {
        scid_alias: true,
        zeroconf: true,
        ..anchors()
    };
    let mut a = Establishing::open(&secp, config(), keys(&secp, "a"), ctx(), request(t)).unwrap();
    let Some(Message::OpenChannel(open)) = sent(&mut a).pop() else {
        panic!()
    };
    let mut b = Establishing::accept(
        &secp,
        config(),
        keys(&secp, "b"),
        ctx(),
        &open,
        Some(ShortChannelId(5)),
    )
    .unwrap();
    let Some(Message::AcceptChannel(accept)) = sent(&mut b).pop() else {
        panic!()
    };
    a.handle_accept_channel(&accept).unwrap();
    let tx = funding_tx(a.funding_output().unwrap());
    let staged = a.stage_funding(&secp, &tx, 1).unwrap();
    a.apply_funding_signature(staged.sign(&secp));
    let Some(Message::FundingCreated(created)) = sent(&mut a).pop() else {
        panic!()
    };
    let staged = b.stage_funding_created(&secp, &created).unwrap();
    let to_sign = b
        .apply_funding_created(&secp, staged.verify(&secp))
        .unwrap();
    b.apply_funding_signed_signature(to_sign.sign(&secp));
    let msgs = sent(&mut b);
    let Some(Message::ChannelReady(ready)) = msgs.last().cloned() else {
        panic!("zero-conf fundee sends channel_ready at once")
    };
    let Message::FundingSigned(signed) = &msgs[0] else {
        panic!()
    };
    let staged = a.stage_funding_signed(&secp, signed).unwrap();
    a.apply_funding_signed(staged.verify(&secp)).unwrap();
    let bad = ChannelReady {
        short_channel_id: None,
        ..ready
    };
    assert!(matches!(
        a.handle_channel_ready(&bad),
        Err(ChannelError::Close(m)) if m.contains("without alias")
    ));
}
