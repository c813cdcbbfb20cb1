//! A fuzzing entry point for [`Connection`], for a fuzz target outside this crate (and this
//! crate's tests) to call.
//!
//! [`fuzz_connection`] plays a stranger against an inbound connection: either raw bytes from
//! the first byte (the handshake's checks), or a real BOLT 8 handshake followed by arbitrary
//! plaintexts, encrypted, so BOLT 1 and the channel hand-off are reached. The bytes arrive in
//! pseudo-random chunks; channel messages are randomly held as if the shard were full; the
//! socket randomly stops writing. Panics only if the connection breaks a promise: a bound, or
//! an event after its close.

use std::time::{Duration, Instant};

use lnhub_noise::{InitiatorHandshake, Transport, ACT_TWO_LEN};
use lnhub_wire::features::Features;
use lnhub_wire::types::ChainHash;
use secp256k1::{PublicKey, Secp256k1, SecretKey};

use crate::{Connection, Event, Limits, MAX_FIXED_BYTES, READ_CHUNK};

/// Control-byte bit: 1 = handshake first, then the rest is a list of plaintexts (2-byte
/// big-endian length, then bytes); 0 = the rest is raw wire bytes.
const STRUCTURED: u8 = 0x80;
/// Control-byte bits: log2 of the largest chunk size.
const CHUNK_SHIFT_MASK: u8 = 0x0f;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_slice(&[byte; 32]).expect("a valid key")
}

/// The peer settings of the fuzzed connection: no features required, regtest.
pub(crate) fn test_peer_config() -> lnhub_peer::PeerConfig {
    lnhub_peer::PeerConfig {
        features: Features::empty(),
        chain_hash: ChainHash::REGTEST,
        ping_interval: Duration::from_secs(30),
        pong_timeout: Duration::from_secs(30),
    }
}

/// What a fuzz run saw, for tests to check the entry point reaches what it should.
#[doc(hidden)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Channel messages handed out.
    pub channel_messages: usize,
    /// Whether the connection closed.
    pub closed: bool,
}

/// Drives an inbound [`Connection`] with `data` (see the module docs), at time `now`. Must
/// never panic.
#[doc(hidden)]
pub fn fuzz_connection(data: &[u8], now: Instant) -> FuzzOutcome {
    let Some((&control, rest)) = data.split_first() else {
        return FuzzOutcome::default();
    };
    let limits = Limits {
        pause_reading_above: 4096,
        max_backlog: 64 * 1024,
        ..Limits::default()
    };
    let mut conn = Connection::inbound(&key(0x41), &key(0x42), test_peer_config(), limits, now);
    let mut wire = Vec::new();
    if control & STRUCTURED != 0 {
        let secp = Secp256k1::new();
        let server = PublicKey::from_secret_key(&secp, &key(0x41));
        let (hs, act_one) = InitiatorHandshake::new(&key(0x43), &server, &key(0x44));
        let mut scratch = Vec::new();
        conn.receive(&act_one);
        while conn.poll(now, &mut scratch).is_some() {}
        let act_two = conn.output().to_vec();
        conn.consume(act_two.len());
        assert_eq!(act_two.len(), ACT_TWO_LEN, "act two follows act one");
        let (act_three, mut transport): (_, Transport) =
            hs.handle_act_two_slice(&act_two).expect("our own act two");
        wire.extend_from_slice(&act_three);
        let mut rest = rest;
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            transport
                .encrypt_message(&rest[2..2 + len], &mut wire)
                .expect("a message of at most 65535 bytes");
            rest = &rest[2 + len..];
        }
    } else {
        wire.extend_from_slice(rest);
    }
    drive(&mut conn, &wire, control, now)
}

fn drive(conn: &mut Connection, wire: &[u8], control: u8, now: Instant) -> FuzzOutcome {
    let max_chunk = (1usize << (control & CHUNK_SHIFT_MASK)).min(READ_CHUNK);
    let mut rng = u64::from(control) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut scratch = Vec::new();
    let mut closed = false;
    let mut channel_messages = 0;
    let mut offset = 0;
    let mut stalls = 0;
    while offset < wire.len() && stalls < 64 {
        if conn.wants_read() {
            let n = (1 + next() as usize % max_chunk).min(wire.len() - offset);
            conn.receive(&wire[offset..offset + n]);
            offset += n;
            stalls = 0;
        } else {
            stalls += 1;
        }
        while let Some(event) = conn.poll(now, &mut scratch) {
            assert!(!closed, "an event after the close");
            match event {
                Event::Closed(_) => closed = true,
                Event::Channel(msg) if next() % 3 == 0 => conn.hold(msg),
                Event::Channel(_) => channel_messages += 1,
                _ => {}
            }
        }
        if conn.has_held() && next() % 2 == 0 && conn.take_held().is_some() {
            channel_messages += 1;
        }
        if next() % 4 != 0 {
            let n = conn.output().len().min(next() as usize % 8192);
            conn.consume(n);
        }
        assert!(
            conn.memory() <= MAX_FIXED_BYTES + 64 * 1024 + 2 * READ_CHUNK,
            "connection holds {} bytes",
            conn.memory()
        );
        if closed {
            assert!(conn.poll(now, &mut scratch).is_none());
            return FuzzOutcome {
                channel_messages,
                closed,
            };
        }
    }
    conn.handle_timeout(now + Duration::from_secs(3600), &mut scratch);
    while let Some(event) = conn.poll(now, &mut scratch) {
        assert!(!closed, "an event after the close");
        closed = matches!(event, Event::Closed(_));
    }
    FuzzOutcome {
        channel_messages,
        closed,
    }
}
