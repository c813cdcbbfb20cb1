//! Two connections talking through byte buffers: the handshake, framing across any read
//! boundary, held messages, a peer that never reads, and the admission rules.

use std::time::{Duration, Instant};

use lnhub_wire::msgs::{Message, Ping, UpdateFee};
use lnhub_wire::types::ChannelId;
use proptest::prelude::*;
use secp256k1::{PublicKey, Secp256k1, SecretKey};

use crate::admission::{Admission, AdmissionConfig, Decision, LogBudget, Refusal};
use crate::fuzz::test_peer_config;
use crate::{fuzz_connection, Close, Connection, Event, Limits, READ_CHUNK};

fn key(byte: u8) -> SecretKey {
    SecretKey::from_slice(&[byte; 32]).unwrap()
}

fn node_id(byte: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(byte))
}

fn fee(n: u32) -> Message {
    Message::UpdateFee(UpdateFee {
        channel_id: ChannelId([7; 32]),
        feerate_per_kw: n,
        unknown_tlvs: Vec::new(),
    })
}

/// One side of a test link: its connection and every event it produced.
struct Side {
    conn: Connection,
    events: Vec<Event>,
    scratch: Vec<u8>,
}

impl Side {
    fn poll(&mut self, now: Instant) {
        while let Some(e) = self.conn.poll(now, &mut self.scratch) {
            self.events.push(e);
        }
    }

    fn ready(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Ready { .. }))
    }

    fn channel_messages(&self) -> Vec<Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Channel(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn closed(&self) -> Option<&Close> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
    }
}

/// Moves everything `from` has to write into `to`, in chunks of at most `chunk` bytes, as
/// far as `to` wants to read.
fn transfer(from: &mut Side, to: &mut Side, chunk: usize, now: Instant) {
    loop {
        to.poll(now);
        let pending = from.conn.output().len();
        if pending == 0 || !to.conn.wants_read() {
            return;
        }
        let n = pending.min(chunk);
        let bytes = from.conn.output()[..n].to_vec();
        from.conn.consume(n);
        to.conn.receive(&bytes);
    }
}

/// A dialled connection (client, key 3) and an accepted one (server, key 1), handshaken and
/// with `init` exchanged.
fn link(limits: Limits, now: Instant) -> (Side, Side) {
    let client = Connection::outbound(
        &key(3),
        &node_id(1),
        &key(4),
        test_peer_config(),
        limits.clone(),
        now,
    );
    let server = Connection::inbound(&key(1), &key(2), test_peer_config(), limits, now);
    let side = |conn| Side {
        conn,
        events: Vec::new(),
        scratch: Vec::new(),
    };
    let (mut client, mut server) = (side(client), side(server));
    for _ in 0..10 {
        transfer(&mut client, &mut server, READ_CHUNK, now);
        transfer(&mut server, &mut client, READ_CHUNK, now);
    }
    assert!(client.ready() && server.ready(), "init exchanged");
    (client, server)
}

#[test]
fn handshake_authenticates_both_ends_and_exchanges_init() {
    let now = Instant::now();
    let (client, server) = link(Limits::default(), now);
    assert_eq!(server.events[0], Event::Authenticated(node_id(3)));
    assert_eq!(client.events[0], Event::Authenticated(node_id(1)));
    assert_eq!(server.conn.node_id(), Some(node_id(3)));
    assert!(!server.conn.is_handshaking() && !client.conn.is_handshaking());
    assert!(server.conn.wants_read() && server.conn.output().is_empty());
}

/// Each connection counts the messages it received and sent by type, its own BOLT 1
/// traffic (`init`) included, for the metrics.
#[test]
fn messages_are_counted_by_type_both_ways() {
    use lnhub_metrics::labels::message_index;
    let now = Instant::now();
    let (mut client, mut server) = link(Limits::default(), now);
    for n in 0..5 {
        assert!(client.conn.send(&fee(n), &mut client.scratch));
    }
    transfer(&mut client, &mut server, READ_CHUNK, now);
    let (init, update_fee) = (message_index(16), message_index(134));
    let c = client.conn.message_counts();
    let s = server.conn.message_counts();
    assert_eq!((c.sent[init], c.received[init]), (1, 1));
    assert_eq!((s.sent[init], s.received[init]), (1, 1));
    assert_eq!(c.sent[update_fee], 5);
    assert_eq!(s.received[update_fee], 5);
    assert_eq!(
        s.received.iter().sum::<u64>(),
        6,
        "init and five update_fee"
    );
    let mut total = *c;
    total.add(s);
    assert_eq!(total.sent[update_fee] + total.received[update_fee], 10);
}

#[test]
fn messages_survive_every_read_boundary() {
    let now = Instant::now();
    for chunk in [1, 2, 3, 17, 49, 50, 51, 65, 66, 67, 1000, READ_CHUNK] {
        let (mut client, mut server) = link(Limits::default(), now);
        let sent: Vec<Message> = (0..40).map(fee).collect();
        for m in &sent {
            assert!(client.conn.send(m, &mut client.scratch));
        }
        transfer(&mut client, &mut server, chunk, now);
        assert_eq!(server.channel_messages(), sent, "chunk {chunk}");
    }
}

#[test]
fn the_handshake_survives_every_read_boundary() {
    let now = Instant::now();
    for chunk in 1..=70 {
        let mut client = Side {
            conn: Connection::outbound(
                &key(3),
                &node_id(1),
                &key(4),
                test_peer_config(),
                Limits::default(),
                now,
            ),
            events: Vec::new(),
            scratch: Vec::new(),
        };
        let mut server = Side {
            conn: Connection::inbound(&key(1), &key(2), test_peer_config(), Limits::default(), now),
            events: Vec::new(),
            scratch: Vec::new(),
        };
        for _ in 0..200 {
            transfer(&mut client, &mut server, chunk, now);
            transfer(&mut server, &mut client, chunk, now);
        }
        assert!(client.ready() && server.ready(), "chunk {chunk}");
    }
}

#[test]
fn a_held_message_stops_decoding_until_it_is_taken() {
    let now = Instant::now();
    let (mut client, mut server) = link(Limits::default(), now);
    let sent: Vec<Message> = (0..5).map(fee).collect();
    for m in &sent {
        client.conn.send(m, &mut client.scratch);
    }
    let bytes = client.conn.output().to_vec();
    client.conn.consume(bytes.len());
    server.conn.receive(&bytes);
    // The shard takes the first message, not the second.
    let mut delivered = Vec::new();
    let first = server.conn.poll(now, &mut server.scratch);
    delivered.push(first.clone().unwrap());
    let Some(Event::Channel(second)) = server.conn.poll(now, &mut server.scratch) else {
        panic!("a channel message");
    };
    server.conn.hold(second);
    assert!(!server.conn.wants_read(), "a held message pauses reading");
    assert_eq!(server.conn.poll(now, &mut server.scratch), None);
    // The shard has room again: the held one goes first, then the rest in order.
    let held = server.conn.take_held().unwrap();
    delivered.push(Event::Channel(held));
    while let Some(e) = server.conn.poll(now, &mut server.scratch) {
        delivered.push(e);
    }
    assert_eq!(
        delivered,
        sent.into_iter().map(Event::Channel).collect::<Vec<_>>()
    );
    assert!(server.conn.wants_read());
}

#[test]
fn a_peer_that_never_reads_is_dropped_at_the_backlog_bound() {
    let now = Instant::now();
    let limits = Limits {
        max_backlog: 100_000,
        ..Limits::default()
    };
    let (mut slow, mut server) = link(limits.clone(), now);
    let (mut other, mut other_server) = link(limits, now);
    let mut sent = 0;
    while server.conn.send(&fee(sent), &mut server.scratch) {
        sent += 1;
        assert!(sent < 10_000, "the bound is hit");
    }
    server.poll(now);
    assert!(
        matches!(server.closed(), Some(Close::Backlog { bytes }) if *bytes > 100_000),
        "{:?}",
        server.closed()
    );
    assert!(server.conn.memory() < 100_000 + 2 * READ_CHUNK + 256 * 1024);
    // The slow peer's own end is fine; another link keeps working.
    slow.poll(now);
    assert!(slow.closed().is_none());
    other.conn.send(&fee(1), &mut other.scratch);
    transfer(&mut other, &mut other_server, READ_CHUNK, now);
    assert_eq!(other_server.channel_messages(), vec![fee(1)]);
}

#[test]
fn pings_are_not_decoded_while_pongs_wait() {
    // A peer asking for large pongs without reading them: decoding stops at the pause bound,
    // so it can make us hold at most one pong beyond it.
    let now = Instant::now();
    let limits = Limits {
        pause_reading_above: 10_000,
        ..Limits::default()
    };
    let (mut client, mut server) = link(limits, now);
    let ping = Message::Ping(Ping {
        num_pong_bytes: 60_000,
        ignored: Vec::new(),
        ..Default::default()
    });
    for _ in 0..200 {
        client.conn.send(&ping, &mut client.scratch);
    }
    let bytes = client.conn.output().to_vec();
    server.conn.receive(&bytes[..READ_CHUNK.min(bytes.len())]);
    server.poll(now);
    assert!(
        server.conn.backlog() <= 10_000 + 60_100,
        "{}",
        server.conn.backlog()
    );
    assert!(!server.conn.wants_read());
    assert!(server.closed().is_none());
}

#[test]
fn a_silent_socket_times_out_in_the_handshake() {
    let now = Instant::now();
    let mut conn =
        Connection::inbound(&key(1), &key(2), test_peer_config(), Limits::default(), now);
    let deadline = conn.deadline().unwrap();
    assert_eq!(deadline, now + crate::HANDSHAKE_TIMEOUT);
    let mut scratch = Vec::new();
    conn.handle_timeout(deadline - Duration::from_millis(1), &mut scratch);
    assert_eq!(conn.poll(now, &mut scratch), None);
    conn.handle_timeout(deadline, &mut scratch);
    assert_eq!(
        conn.poll(now, &mut scratch),
        Some(Event::Closed(Close::HandshakeTimeout))
    );
    assert_eq!(conn.poll(now, &mut scratch), None);
    assert!(conn.is_closed() && !conn.wants_read());
}

#[test]
fn a_bad_act_one_closes_with_a_reason() {
    let now = Instant::now();
    let mut conn =
        Connection::inbound(&key(1), &key(2), test_peer_config(), Limits::default(), now);
    let mut scratch = Vec::new();
    conn.receive(&[0x01; 50]);
    match conn.poll(now, &mut scratch) {
        Some(Event::Closed(Close::Handshake(_))) => {}
        other => panic!("{other:?}"),
    }
    assert!(conn.output().is_empty(), "nothing is answered");
}

#[test]
fn garbage_after_the_handshake_closes_the_connection() {
    let now = Instant::now();
    let (_, mut server) = link(Limits::default(), now);
    server.conn.receive(&[0xff; 100]);
    server.poll(now);
    assert!(matches!(server.closed(), Some(Close::Transport(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = fuzz_connection(&data, Instant::now());
    }

    #[test]
    fn fuzz_entry_past_the_handshake_never_panics(
        control in any::<u8>(),
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
    ) {
        let mut data = vec![control | 0x80];
        for m in msgs {
            data.extend_from_slice(&(m.len() as u16).to_be_bytes());
            data.extend_from_slice(&m);
        }
        let _ = fuzz_connection(&data, Instant::now());
    }
}

#[test]
fn fuzz_entry_reaches_channel_messages() {
    // init (type 16, no features, no TLVs) then update_fee: the structured mode gets past
    // BOLT 1 to the channel hand-off.
    let mut data = vec![0x80 | 0x03];
    let init = [0u8, 16, 0, 0, 0, 0];
    data.extend_from_slice(&(init.len() as u16).to_be_bytes());
    data.extend_from_slice(&init);
    let mut update = Vec::new();
    fee(5).encode(&mut update);
    data.extend_from_slice(&(update.len() as u16).to_be_bytes());
    data.extend_from_slice(&update);
    let outcome = fuzz_connection(&data, Instant::now());
    assert_eq!(outcome.channel_messages, 1, "{outcome:?}");
    // Garbage from the first byte never gets a message through.
    let outcome = fuzz_connection(&[0x03; 200], Instant::now());
    assert!(
        outcome.closed && outcome.channel_messages == 0,
        "{outcome:?}"
    );
}

fn at(base: Instant, secs: u64) -> Instant {
    base + Duration::from_secs(secs)
}

#[test]
fn one_address_gets_a_few_handshakes_and_idle_ones_make_room() {
    let t = Instant::now();
    let mut adm: Admission<u8> = Admission::new(AdmissionConfig {
        max_peers: 10,
        max_handshakes: 100,
        max_handshakes_per_address: 3,
        handshake_grace: Duration::from_secs(2),
    });
    for id in 0..3 {
        assert_eq!(adm.accept(id, 1, t), Decision::Admit);
    }
    // Young handshakes keep their slots.
    assert_eq!(
        adm.accept(3, 1, at(t, 1)),
        Decision::Refuse(Refusal::Address)
    );
    // Another address is not affected.
    assert_eq!(adm.accept(4, 2, at(t, 1)), Decision::Admit);
    // Once idle past the grace, the oldest of that address makes room.
    assert_eq!(adm.accept(5, 1, at(t, 3)), Decision::AdmitEvicting(0));
    assert_eq!(adm.accept(6, 1, at(t, 3)), Decision::AdmitEvicting(1));
    assert_eq!(adm.handshakes(), 4);
    // A finished handshake frees its slot.
    assert_eq!(adm.authenticated(2, false), Decision::Admit);
    assert_eq!(adm.accept(7, 1, at(t, 3)), Decision::Admit);
}

#[test]
fn the_handshake_budget_evicts_the_oldest_idle_anywhere() {
    let t = Instant::now();
    let mut adm: Admission<u32> = Admission::new(AdmissionConfig {
        max_peers: 10,
        max_handshakes: 4,
        max_handshakes_per_address: 8,
        handshake_grace: Duration::from_secs(2),
    });
    for id in 0..4 {
        assert_eq!(adm.accept(id, id as u32, at(t, id)), Decision::Admit);
    }
    assert_eq!(adm.accept(10, 9, at(t, 4)), Decision::AdmitEvicting(0));
    assert_eq!(adm.accept(11, 9, at(t, 4)), Decision::AdmitEvicting(1));
    assert_eq!(
        adm.accept(12, 9, at(t, 4)),
        Decision::Refuse(Refusal::Handshakes)
    );
    adm.remove(2);
    assert_eq!(adm.accept(12, 9, at(t, 4)), Decision::Admit);
}

#[test]
fn protected_peers_always_get_in() {
    let t = Instant::now();
    let mut adm: Admission<u8> = Admission::new(AdmissionConfig::new(2));
    for id in 0..4 {
        adm.accept(id, 1, t);
    }
    assert_eq!(adm.authenticated(0, false), Decision::Admit);
    assert_eq!(adm.authenticated(1, false), Decision::Admit);
    assert_eq!(
        adm.authenticated(2, false),
        Decision::Refuse(Refusal::Peers)
    );
    assert_eq!(adm.authenticated(3, true), Decision::Admit);
    assert_eq!(adm.peers(), 2);
    adm.remove(0);
    assert_eq!(adm.peers(), 1);
    assert_eq!(adm.handshakes(), 0);
    // A peer that opens a channel stops counting: a stranger gets its slot.
    adm.accept(4, 1, t);
    assert_eq!(adm.authenticated(4, false), Decision::Admit);
    assert_eq!(adm.peers(), 2);
    adm.protect(4);
    adm.accept(5, 1, t);
    assert_eq!(adm.authenticated(5, false), Decision::Admit);
}

#[test]
fn the_log_budget_counts_what_it_leaves_out() {
    let t = Instant::now();
    let mut log = LogBudget::new(3, Duration::from_secs(10));
    let allowed = (0..100).filter(|_| log.allow(t)).count();
    assert_eq!(allowed, 3);
    assert_eq!(log.deadline(), Some(at(t, 10)));
    assert_eq!(log.summary(at(t, 9)), None);
    assert_eq!(log.summary(at(t, 10)), Some(97));
    assert_eq!(log.summary(at(t, 30)), None);
    assert!(log.allow(at(t, 30)));
}
