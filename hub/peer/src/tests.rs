//! One test per BOLT 1 rule the connection enforces, driven with a virtual clock.

use super::*;
use lnhub_wire::features::{self, Features};

fn config() -> PeerConfig {
    let mut features = Features::empty();
    features.set_required(features::VAR_ONION_OPTIN);
    features.set_required(features::STATIC_REMOTEKEY);
    features.set_optional(features::ANCHORS);
    PeerConfig {
        features,
        chain_hash: ChainHash::REGTEST,
        ping_interval: Duration::from_secs(30),
        pong_timeout: Duration::from_secs(10),
    }
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

fn sent(peer: &mut Peer) -> Vec<Message> {
    let mut msgs = Vec::new();
    let mut buf = Vec::new();
    while {
        buf.clear();
        peer.poll_transmit(&mut buf)
    } {
        msgs.push(Message::decode(&buf).expect("we send valid messages"));
    }
    msgs
}

fn events(peer: &mut Peer) -> Vec<PeerEvent> {
    std::iter::from_fn(|| peer.poll_event()).collect()
}

fn their_init(features: Features, networks: Option<Vec<ChainHash>>) -> Vec<u8> {
    encode(&Message::Init(Init {
        features,
        networks,
        ..Init::default()
    }))
}

/// A peer past `init`, with its first output and events drained.
fn active(now: Instant) -> Peer {
    let mut peer = Peer::new(config(), now);
    let _ = sent(&mut peer);
    peer.handle_message(&their_init(config().features, None), now);
    assert!(matches!(events(&mut peer)[..], [PeerEvent::Ready { .. }]));
    peer
}

#[test]
fn init_goes_out_first_with_our_features_and_chain() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    let out = sent(&mut peer);
    assert_eq!(out.len(), 1);
    let Message::Init(init) = &out[0] else {
        panic!("first message is {:?}", out[0])
    };
    assert_eq!(init.features, config().features);
    assert_eq!(init.networks.as_deref(), Some(&[ChainHash::REGTEST][..]));
    assert!(!peer.is_active());
}

#[test]
fn messages_before_init_close_the_connection() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    let ping = encode(&Message::Ping(Ping {
        num_pong_bytes: 4,
        ignored: vec![],
        ..Default::default()
    }));
    peer.handle_message(&ping, now);
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Disconnect(DisconnectReason::NoInitFirst)]
    );
    // Nothing is accepted afterwards.
    peer.handle_message(&their_init(config().features, None), now);
    assert!(events(&mut peer).is_empty());
    assert!(!peer.is_active());
}

#[test]
fn unknown_odd_message_before_init_is_ignored() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    peer.handle_message(&[0x80, 0x01, 0xaa], now); // type 32769: odd, unknown
    assert!(events(&mut peer).is_empty());
    peer.handle_message(&their_init(config().features, None), now);
    assert!(matches!(events(&mut peer)[..], [PeerEvent::Ready { .. }]));
}

#[test]
fn unknown_even_feature_closes_with_a_warning() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    let _ = sent(&mut peer);
    let mut f = config().features;
    f.set_bit(100); // even, unknown
    peer.handle_message(&their_init(f, None), now);
    assert!(matches!(
        events(&mut peer)[..],
        [PeerEvent::Disconnect(
            DisconnectReason::UnsupportedFeatures(_)
        )]
    ));
    assert!(matches!(sent(&mut peer)[..], [Message::Warning(_)]));
}

#[test]
fn unknown_odd_feature_is_ignored() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    let mut f = config().features;
    f.set_bit(101);
    peer.handle_message(&their_init(f, None), now);
    assert!(matches!(events(&mut peer)[..], [PeerEvent::Ready { .. }]));
}

#[test]
fn missing_dependency_closes() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    let mut f = config().features;
    f.set_optional(features::ZEROCONF); // needs option_scid_alias, not set
    peer.handle_message(&their_init(f, None), now);
    assert!(matches!(
        events(&mut peer)[..],
        [PeerEvent::Disconnect(
            DisconnectReason::UnsupportedFeatures(_)
        )]
    ));
}

#[test]
fn no_common_chain_closes_but_absent_networks_is_fine() {
    let now = Instant::now();
    let mut peer = Peer::new(config(), now);
    peer.handle_message(
        &their_init(config().features, Some(vec![ChainHash::BITCOIN])),
        now,
    );
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Disconnect(DisconnectReason::NoCommonChain)]
    );

    let mut peer = Peer::new(config(), now);
    let chains = Some(vec![ChainHash::BITCOIN, ChainHash::REGTEST]);
    peer.handle_message(&their_init(config().features, chains), now);
    assert!(matches!(events(&mut peer)[..], [PeerEvent::Ready { .. }]));
}

#[test]
fn ping_is_answered_by_the_size_rules() {
    let now = Instant::now();
    let mut peer = active(now);
    for (asked, answered) in [
        (0u16, Some(0usize)),
        (12, Some(12)),
        (65531, Some(65531)),
        (65532, None),
    ] {
        let ping = Message::Ping(Ping {
            num_pong_bytes: asked,
            ignored: vec![0; 3],
            ..Default::default()
        });
        peer.handle_message(&encode(&ping), now);
        let out = sent(&mut peer);
        match answered {
            Some(n) => {
                let [Message::Pong(pong)] = &out[..] else {
                    panic!("{out:?}")
                };
                assert_eq!(pong.ignored.len(), n);
                assert!(
                    pong.ignored.iter().all(|&b| b == 0),
                    "pong padding is zeros"
                );
            }
            None => assert!(out.is_empty(), "num_pong_bytes >= 65532 MUST be ignored"),
        }
    }
    assert!(events(&mut peer).is_empty());
}

#[test]
fn idle_peer_is_pinged_and_dropped_without_pong() {
    let t0 = Instant::now();
    let mut peer = active(t0);
    assert_eq!(peer.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    peer.handle_timeout(t0 + Duration::from_secs(29));
    assert!(sent(&mut peer).is_empty());
    let t1 = t0 + Duration::from_secs(30);
    peer.handle_timeout(t1);
    assert!(matches!(sent(&mut peer)[..], [Message::Ping(_)]));
    assert_eq!(peer.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    peer.handle_timeout(t1 + Duration::from_secs(10));
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Disconnect(DisconnectReason::PongTimeout)]
    );
}

#[test]
fn pong_clears_the_ping_and_a_stray_pong_closes() {
    let t0 = Instant::now();
    let mut peer = active(t0);
    let t1 = t0 + Duration::from_secs(30);
    peer.handle_timeout(t1);
    let _ = sent(&mut peer);
    peer.handle_message(
        &encode(&Message::Pong(Pong {
            ignored: vec![],
            ..Default::default()
        })),
        t1,
    );
    assert!(events(&mut peer).is_empty());
    // The next ping is due a full interval after the pong, not at the old deadline.
    assert_eq!(peer.poll_timeout(), Some(t1 + Duration::from_secs(30)));
    peer.handle_message(
        &encode(&Message::Pong(Pong {
            ignored: vec![],
            ..Default::default()
        })),
        t1,
    );
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Disconnect(DisconnectReason::UnexpectedPong)]
    );
}

#[test]
fn init_timeout() {
    let t0 = Instant::now();
    let mut peer = Peer::new(config(), t0);
    assert_eq!(peer.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    peer.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Disconnect(DisconnectReason::InitTimeout)]
    );
}

#[test]
fn unknown_even_message_closes_with_warning_and_odd_is_ignored() {
    let now = Instant::now();
    let mut peer = active(now);
    peer.handle_message(&[0x9c, 0x41, 1, 2], now); // 40001: odd
    assert!(events(&mut peer).is_empty());
    peer.handle_message(&[0x9c, 0x40, 1, 2], now); // 40000: even
    assert!(matches!(
        events(&mut peer)[..],
        [PeerEvent::Disconnect(DisconnectReason::Malformed(
            DecodeError::UnknownEvenType(40000)
        ))]
    ));
    assert!(matches!(sent(&mut peer)[..], [Message::Warning(_)]));
}

#[test]
fn truncated_known_message_closes() {
    let now = Instant::now();
    let mut peer = active(now);
    peer.handle_message(&[0x00, 0x12, 0x00], now); // ping cut short
    assert!(matches!(
        events(&mut peer)[..],
        [PeerEvent::Disconnect(DisconnectReason::Malformed(_))]
    ));
}

#[test]
fn errors_and_warnings_are_reported() {
    let now = Instant::now();
    let mut peer = active(now);
    let id = ChannelId([7; 32]);
    let warning = Message::Warning(Warning {
        channel_id: id,
        data: b"careful".to_vec(),
        ..Default::default()
    });
    peer.handle_message(&encode(&warning), now);
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Warning {
            channel_id: id,
            data: b"careful".to_vec()
        }]
    );
    let error = Message::Error(ErrorMessage {
        channel_id: id,
        data: b"bad".to_vec(),
        ..Default::default()
    });
    peer.handle_message(&encode(&error), now);
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Error {
            channel_id: id,
            data: b"bad".to_vec()
        }]
    );
    assert!(
        peer.is_active(),
        "an error for one channel keeps the connection"
    );
    let all = Message::Error(ErrorMessage {
        channel_id: ChannelId::ZERO,
        data: vec![],
        ..Default::default()
    });
    peer.handle_message(&encode(&all), now);
    assert_eq!(
        events(&mut peer),
        [
            PeerEvent::Error {
                channel_id: ChannelId::ZERO,
                data: vec![]
            },
            PeerEvent::Disconnect(DisconnectReason::ErrorReceived)
        ]
    );
}

#[test]
fn ping_flood_is_bounded() {
    let now = Instant::now();
    let mut peer = active(now);
    let ping = encode(&Message::Ping(Ping {
        num_pong_bytes: 1,
        ignored: vec![],
        ..Default::default()
    }));
    for _ in 0..MAX_QUEUED_CONTROL {
        peer.handle_message(&ping, now);
    }
    assert!(events(&mut peer).is_empty());
    peer.handle_message(&ping, now);
    assert_eq!(
        events(&mut peer),
        [PeerEvent::Disconnect(DisconnectReason::Flooding)]
    );
}
