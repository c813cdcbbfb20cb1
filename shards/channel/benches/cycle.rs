//! One channel's update cycle, both ends: A offers `n` HTLCs, the commitment dance runs
//! (A signs, B checks and revokes, B signs, A checks and revokes), then B fulfills all `n`
//! and the dance runs again; then the same from B to A (so the cycle can repeat without
//! draining either side). Real signatures and checks on both sides, anchors channel,
//! HTLCs above dust (each an output every commitment signs).
//!
//! `cargo bench -p lnhub-channel --bench cycle` reports HTLCs/s (criterion "elem/s") for a
//! cycle of 1 HTLC and of 30 (the most this channel's limits allow in flight): what the
//! second figure saves per HTLC is what batching updates into one commitment is worth. The
//! smoke size runs as a normal test in `tests/bench_smoke.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lnhub_tx::ChannelType;
use secp256k1::Secp256k1;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/cycle/mod.rs"]
mod cycle;

fn bench(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let mut group = c.benchmark_group("htlc_cycle");
    for n in [1usize, 30] {
        let agreement = common::Agreement::default_for(ChannelType::Anchors);
        let (mut a, mut b) = common::pair(&secp, 7, &agreement);
        let mut counter = 0u64;
        group.throughput(Throughput::Elements(2 * n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, &n| {
            bench.iter(|| cycle::run(&secp, &mut a, &mut b, n, &mut counter))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
