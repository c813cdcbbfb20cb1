//! Message codec throughput: decode a hub's hot-path messages from their wire bytes and
//! encode them back, byte-exact (`update_add_htlc` with its 1,366-byte onion,
//! `commitment_signed` with 30 HTLC signatures, `revoke_and_ack`, `update_fulfill_htlc`).
//!
//! `cargo bench -p lnhub-wire --bench codec` reports messages/s (criterion "elem/s"). The
//! message bytes and the smoke size (every message decoded, re-encoded and compared) are in
//! `tests/bench_smoke.rs`, included here.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lnhub_wire::msgs::Message;

#[path = "../tests/bench_messages/mod.rs"]
mod bench_messages;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_encode");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    for (name, bytes) in bench_messages::hot_path_messages() {
        group.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| {
                let msg = Message::decode(bytes).expect("valid bytes");
                out.clear();
                msg.encode(&mut out);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
