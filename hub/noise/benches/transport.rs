//! BOLT 8 transport throughput: encrypt a message into the send buffer, then feed the bytes
//! to the peer's decoder and take the message out, for the sizes a hub moves most (a 32-byte
//! `revoke_and_ack`-sized body, a 1,450-byte `update_add_htlc`, a 65,535-byte maximum).
//!
//! `cargo bench -p lnhub-noise --bench transport` reports messages/s (criterion "elem/s") for
//! a round trip of `BATCH` messages. The smoke size runs as a normal test in
//! `tests/bench_smoke.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lnhub_noise::Transport;

/// Messages per measured iteration.
const BATCH: usize = 256;

fn pair() -> (Transport, Transport) {
    let (sk, rk, ck) = ([0x11; 32], [0x22; 32], [0x33; 32]);
    (
        Transport::from_keys(sk, rk, ck),
        Transport::from_keys(rk, sk, ck),
    )
}

/// Encrypts `BATCH` messages of `len` bytes and decrypts them on the other side; returns
/// the bytes decrypted (so nothing is optimised away).
fn round_trip(a: &mut Transport, b: &mut Transport, msg: &[u8], wire: &mut Vec<u8>) -> usize {
    wire.clear();
    let mut got = 0;
    for _ in 0..BATCH {
        a.encrypt_message(msg, wire).expect("a message fits");
        let mut data = &wire[..];
        while !data.is_empty() {
            let n = b.feed(data).expect("valid frames");
            data = &data[n..];
            while let Some(m) = b.next_message().expect("valid frames") {
                got += m.len();
            }
        }
        wire.clear();
    }
    got
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("bolt8_round_trip");
    group.throughput(Throughput::Elements(BATCH as u64));
    for len in [32usize, 1_450, 65_535] {
        let msg = vec![0xa5u8; len];
        let (mut a, mut b) = pair();
        let mut wire = Vec::with_capacity(len + 64);
        group.bench_with_input(BenchmarkId::from_parameter(len), &len, |bench, _| {
            bench.iter(|| round_trip(&mut a, &mut b, &msg, &mut wire))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
