//! A whole shard turn at 1, 100 and 1,000 HTLCs: the hub side of forwarding, on one shard
//! with 8 payer and 8 payee channels (zero-conf anchors, every HTLC above dust), the batch
//! spread evenly over the pairs. A forward takes the hub two turns, measured apart (details
//! in `tests/turn/mod.rs`):
//!
//! - `commit/k`: the payers' `update_add_htlc`s and `commitment_signed`s in; signatures
//!   checked, the hub's `revoke_and_ack` and `commitment_signed` signed, one store batch,
//!   both messages out;
//! - `forward/k`: the payers' `revoke_and_ack`s in; every onion peeled and checked against
//!   the replay set, each forward decided and added to its payee's channel, the outgoing
//!   `commitment_signed`s signed, one store batch per round (two), everything out.
//!
//! One measured iteration is one `Shard::turn` call run to quiescence (the default rounds per
//! turn), with the in-memory store answering at once: no fsync (the LMDB commit has its own
//! bench, `cargo bench -p lnhub-store --bench commit`), but every record encoded. The rayon
//! pool is the process's global one, as in the daemon. Each iteration starts from a fresh hub
//! (rebuilt outside the timing, the forward's after running its commit turn) and the peers'
//! recorded messages.
//!
//! `cargo bench -p lnhub-shard --bench turn` reports HTLCs/s (criterion "elem/s"); the sum of
//! the two turns is the hub's work from an HTLC's arrival to its `commitment_signed` to the
//! payee. The smoke sizes run as a normal test in `tests/bench_smoke.rs`.

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/turn/mod.rs"]
mod turn;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_turn");
    // An iteration takes up to tens of milliseconds plus as long again to set up: a fixed
    // number of iterations per sample, and fewer samples than the default 100.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    for k in [1usize, 100, 1_000] {
        let fixture = turn::Fixture::new(k);
        group.throughput(Throughput::Elements(k as u64));
        group.bench_with_input(BenchmarkId::new("commit", k), &fixture, |b, f| {
            b.iter_batched(
                || f.before_commit(),
                |(mut hub, inputs)| {
                    hub.turn(inputs);
                    hub // dropped outside the timing
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("forward", k), &fixture, |b, f| {
            b.iter_batched(
                || f.before_forward(),
                |(mut hub, inputs)| {
                    hub.turn(inputs);
                    hub
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
