//! A peer that sends a bad onion gets `update_fail_malformed_htlc` from `lnhubd`.
//!
//! LDK never sends a bad onion, so the sender S here is a [`RawPeer`] driven by lnhub's own
//! channel state machine (`lnhub-channel`): S opens a zero-conf anchors channel to the hub as a
//! trusted funder over TCP, then offers HTLCs and runs the commitment dance by hand.
//!
//! * An onion with version byte 1 is answered with `update_fail_malformed_htlc`
//!   (`invalid_onion_version`, BADONION|PERM|4 = 0xc004); one with a flipped HMAC byte with
//!   `invalid_onion_hmac` (0xc005). Both carry the SHA256 of the onion S sent, and the HTLC is removed on both sides.
//! * A valid onion whose final hop is the hub is failed with an encrypted `update_fail_htlc`
//!   that S decodes to `incorrect_or_unknown_payment_details` from hop 0: the hub is never a
//!   payee.
//!
//! After each HTLC S's balances are back to what they were before it.

#[path = "../../shards/channel/tests/common/mod.rs"]
mod common;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{OutPoint, ScriptBuf, Sequence, Transaction, TxIn, Txid, Witness};
use lnhub_channel::{
    Channel, Effect, Establishing, LocalKeys, NegotiatedType, OpenRequest, PeerContext,
    RemovalKind, View,
};
use lnhub_onion::error_packet::decode_error_packet;
use lnhub_onion::payload::PaymentData;
use lnhub_onion::{
    build_onion, sha256_of_onion, FailureMessage, OnionPacket, PayloadFields, RouteHop,
    ONION_PACKET_LEN,
};
use lnhub_tests::{Hub, RawPeer};
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::{Message, Pong};
use lnhub_wire::types::{ChainHash, ChannelId, Msat, PaymentHash, Sat, ShortChannelId};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

/// S's static key seed for [`RawPeer::connect`]: its node key is `[SEED; 32]`.
const SEED: u8 = 0x5a;
const HTLC_MSAT: u64 = 10_000_000;
const CLTV_EXPIRY: u32 = 1_000;

/// BOLT 4 failure codes (BADONION = 0x8000, PERM = 0x4000).
const INVALID_ONION_VERSION: u16 = 0xc004;
const INVALID_ONION_HMAC: u16 = 0xc005;
const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u16 = 0x400f;

/// S's end of the connection and the channel-level messages the hub sent it.
struct Sender {
    secp: Secp256k1<All>,
    peer: RawPeer,
    /// Every channel message received from the hub, in order.
    received: Vec<Message>,
}

impl Sender {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let mut bytes = Vec::new();
            m.encode(&mut bytes);
            self.peer.send(&bytes).expect("send to the hub");
        }
    }

    /// The next channel message from the hub; answers pings, skips gossip and the like.
    fn recv(&mut self) -> Message {
        loop {
            let bytes = self
                .peer
                .recv()
                .expect("recv from the hub")
                .expect("the hub closed the connection");
            match Message::decode(&bytes).expect("a message the wire crate decodes") {
                Message::Ping(p) => self.send(vec![Message::Pong(Pong {
                    ignored: vec![0; p.num_pong_bytes as usize],
                    unknown_tlvs: Vec::new(),
                })]),
                Message::Error(e) => panic!("hub sent error: {e:?}"),
                m @ (Message::OpenChannel(_)
                | Message::AcceptChannel(_)
                | Message::FundingCreated(_)
                | Message::FundingSigned(_)
                | Message::ChannelReady(_)
                | Message::UpdateAddHtlc(_)
                | Message::UpdateFulfillHtlc(_)
                | Message::UpdateFailHtlc(_)
                | Message::UpdateFailMalformedHtlc(_)
                | Message::UpdateFee(_)
                | Message::CommitmentSigned(_)
                | Message::RevokeAndAck(_)) => {
                    self.received.push(m.clone());
                    return m;
                }
                _ => {}
            }
        }
    }

    /// Runs the commitment dance until `htlc_id` is resolved and the channel is quiescent;
    /// every persist completes at once.
    fn settle(&mut self, ch: &mut Channel, htlc_id: u64) -> RemovalKind {
        let mut report = common::Reported::default();
        loop {
            common::sign(&self.secp, ch).expect("sign our commitment");
            let out = common::drain(ch, &mut report);
            self.send(out);
            let resolved = report.resolved.iter().find(|(id, _)| *id == htlc_id);
            if let Some((_, resolution)) = resolved {
                if !ch.can_sign() && !ch.awaiting_revoke() {
                    return resolution.clone();
                }
            }
            let m = self.recv();
            common::deliver(&self.secp, ch, m).expect("the hub's update is valid");
        }
    }
}

/// Opens a zero-conf anchors channel from S to the hub, as its funder.
fn open_channel(s: &mut Sender) -> Channel {
    let k = common::node_keys(&s.secp, 7, "sender");
    let req = OpenRequest {
        temporary_channel_id: ChannelId([0x5a; 32]),
        funding_satoshis: Sat(1_000_000),
        push_msat: Msat(0),
        feerate_per_kw: 253,
        channel_type: NegotiatedType {
            commitment: ChannelType::Anchors,
            scid_alias: true,
            zeroconf: true,
        },
        announce: false,
        alias: Some(ShortChannelId(0x0100_0000_0001_0001)),
    };
    let ctx = PeerContext {
        trusted_for_zeroconf: true,
        ..PeerContext::default()
    };
    let keys = LocalKeys {
        secrets: k.secrets,
        pubkeys: k.pubkeys,
    };
    let config = lnhub_engine::default_establish_config(ChainHash::REGTEST);
    let mut f = Establishing::open(&s.secp, config, keys, ctx, req).expect("valid request");
    let flush = |s: &mut Sender, f: &mut Establishing| {
        let mut out = Vec::new();
        while let Some(effect) = f.poll_effect() {
            match effect {
                Effect::Send(m) => out.push(m),
                Effect::Persist { seq } => f.handle_persisted(seq),
                _ => {}
            }
        }
        s.send(out);
    };

    flush(s, &mut f);
    let Message::AcceptChannel(accept) = s.recv() else {
        panic!("expected accept_channel: {:?}", s.received)
    };
    assert_eq!(accept.minimum_depth, 0, "zero-conf for a trusted peer");
    f.handle_accept_channel(&accept).expect("acceptable");

    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([5; 32]),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![f.funding_output().unwrap()],
    };
    let staged = f.stage_funding(&s.secp, &tx, 0).unwrap();
    f.apply_funding_signature(staged.sign(&s.secp));
    flush(s, &mut f);
    let Message::FundingSigned(signed) = s.recv() else {
        panic!("expected funding_signed: {:?}", s.received)
    };
    let staged = f.stage_funding_signed(&s.secp, &signed).unwrap();
    f.apply_funding_signed(staged.verify(&s.secp))
        .expect("the hub's signature is valid");
    let Message::ChannelReady(ready) = s.recv() else {
        panic!("expected channel_ready: {:?}", s.received)
    };
    f.handle_channel_ready(&ready).unwrap();
    f.handle_funding_depth(0);
    flush(s, &mut f);
    assert!(f.is_ready());
    let ch = f.into_channel();
    assert!(ch.is_operational());
    ch
}

/// A 1-hop onion to the hub as the final node, and the route's shared secrets.
fn onion_to_hub(
    secp: &Secp256k1<All>,
    hub: &PublicKey,
    payment_hash: &PaymentHash,
) -> (Box<OnionPacket>, Vec<[u8; 32]>) {
    let mut payload = Vec::new();
    PayloadFields {
        amt_to_forward: Some(Msat(HTLC_MSAT)),
        outgoing_cltv_value: Some(CLTV_EXPIRY),
        payment_data: Some(PaymentData {
            payment_secret: [0x33; 32],
            total_msat: Msat(HTLC_MSAT),
        }),
        ..PayloadFields::default()
    }
    .write(&mut payload);
    let route = [RouteHop {
        pubkey: hub,
        payload: &payload,
    }];
    let session_key = SecretKey::from_slice(&[0x44; 32]).unwrap();
    let mut onion = Box::new([0u8; ONION_PACKET_LEN]);
    let secrets = build_onion(secp, &session_key, &route, &payment_hash.0, &mut onion)
        .expect("a 1-hop route fits");
    (onion, secrets)
}

/// S's balance and the hub's, in S's current commitment.
fn balances(ch: &Channel) -> (u64, u64) {
    let view = ch.book().view(View::LocalCurrent, &mut Vec::new());
    (view.to_local_msat, view.to_remote_msat)
}

fn offer(ch: &mut Channel, payment_hash: PaymentHash, onion: &OnionPacket) -> u64 {
    ch.send_add_htlc(Msat(HTLC_MSAT), payment_hash, CLTV_EXPIRY, onion)
        .expect("the channel can carry the HTLC")
}

#[test]
fn malformed_onion_is_answered_with_update_fail_malformed_htlc() {
    let secp = Secp256k1::new();
    let s_id = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[SEED; 32]).unwrap());
    let hub = Hub::start(&["--trusted-peer", &s_id.to_string()]);
    let mut peer = RawPeer::connect(&hub.node_id, hub.addr, SEED).expect("handshake");
    let init = peer.recv().unwrap().expect("hub's init");
    assert!(matches!(Message::decode(&init), Ok(Message::Init(_))));
    peer.send(&init).unwrap(); // the hub's own features and chain are acceptable to it
    let mut s = Sender {
        secp,
        peer,
        received: Vec::new(),
    };
    let mut ch = open_channel(&mut s);
    let start = balances(&ch);
    assert_eq!(start.1, 0, "no push: all funds are S's");

    // Two malformed onions: a bad version byte, then a bad HMAC.
    for (i, expected_code) in [INVALID_ONION_VERSION, INVALID_ONION_HMAC]
        .into_iter()
        .enumerate()
    {
        let payment_hash = PaymentHash([0x10 + i as u8; 32]);
        let (mut onion, _) = onion_to_hub(&s.secp, &hub.node_id, &payment_hash);
        match expected_code {
            INVALID_ONION_VERSION => onion[0] = 1,
            _ => onion[ONION_PACKET_LEN - 1] ^= 1,
        }
        let htlc_id = offer(&mut ch, payment_hash, &onion);
        let first = s.received.len();
        let resolution = s.settle(&mut ch, htlc_id);

        let malformed: Vec<_> = s.received[first..]
            .iter()
            .filter_map(|m| match m {
                Message::UpdateFailMalformedHtlc(m) => Some(m),
                _ => None,
            })
            .collect();
        let [m] = &malformed[..] else {
            panic!("one update_fail_malformed_htlc: {:?}", &s.received[first..])
        };
        assert_eq!(m.channel_id, ch.channel_id());
        assert_eq!(m.id, htlc_id);
        assert_eq!(m.failure_code, expected_code);
        assert_eq!(m.sha256_of_onion, sha256_of_onion(&onion));
        assert!(
            !s.received[first..]
                .iter()
                .any(|m| matches!(m, Message::UpdateFailHtlc(_))),
            "a malformed onion is not failed with update_fail_htlc"
        );
        assert_eq!(
            resolution,
            RemovalKind::FailMalformed {
                sha256_of_onion: sha256_of_onion(&onion),
                failure_code: expected_code,
            }
        );
        assert!(ch.book().htlcs().is_empty(), "the HTLC is gone");
        assert_eq!(balances(&ch), start, "the balance is back");
    }

    // A valid onion for which the hub is the final hop: an encrypted failure from hop 0.
    let payment_hash = PaymentHash([0x20; 32]);
    let (onion, secrets) = onion_to_hub(&s.secp, &hub.node_id, &payment_hash);
    let htlc_id = offer(&mut ch, payment_hash, &onion);
    let first = s.received.len();
    let resolution = s.settle(&mut ch, htlc_id);
    let fail = s.received[first..]
        .iter()
        .find_map(|m| match m {
            Message::UpdateFailHtlc(m) => Some(m),
            _ => None,
        })
        .unwrap_or_else(|| panic!("update_fail_htlc: {:?}", &s.received[first..]));
    assert_eq!(fail.id, htlc_id);
    assert!(
        !s.received[first..]
            .iter()
            .any(|m| matches!(m, Message::UpdateFailMalformedHtlc(_))),
        "a valid onion is not reported malformed"
    );
    let RemovalKind::Fail(reason) = resolution else {
        panic!("expected Failed, got {resolution:?}")
    };
    assert_eq!(reason, fail.reason);
    let decoded = decode_error_packet(&secrets, &reason).expect("the failure decodes");
    assert_eq!(decoded.hop, 0, "the hub itself failed it");
    let failure = decoded.failure.expect("a known failure");
    assert_eq!(
        failure.message.failure_code(),
        INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
    );
    let FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat, .. } = failure.message else {
        unreachable!()
    };
    assert_eq!(htlc_msat, Msat(HTLC_MSAT));
    assert!(ch.book().htlcs().is_empty(), "the HTLC is gone");
    assert_eq!(balances(&ch), start, "the balance is back");
    assert!(ch.is_operational() && !ch.is_failed());
}
