//! Staging one `commitment_signed` as the channel does: build a commitment
//! with 30 untrimmed HTLCs, then the funding sighash and one HTLC sighash
//! per HTLC output, in output order. Two HTLC-sighash paths are measured
//! in the same run so their figures compare: `htlc_tx` (builds each HTLC
//! transaction, the old path) and `sighasher` ([`lnhub_tx::HtlcSighasher`],
//! no allocation per HTLC). `sighashes/*` measures the HTLC sighashes alone
//! on an already built commitment. `build_into+sighashes/sighasher` is the
//! channel's path: the commitment built into the previous one
//! ([`lnhub_tx::build_commitment_into`], no allocation), and `build` /
//! `build_into` time the commitment alone. Both channel types.
//! Run: `cargo bench -p lnhub-tx --bench stage`. The same fixture runs in
//! `cargo test` (tests/alloc.rs), which also counts the allocations.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/stage_fixture/mod.rs"]
mod stage_fixture;
#[path = "../tests/vectors/mod.rs"]
mod vectors;

use common::*;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lnhub_tx::{ChannelType, Side};
use secp256k1::Secp256k1;
use stage_fixture::*;

fn bench(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let htlcs = spec_htlcs(HTLCS);
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(1));
    for (name, channel_type) in [
        ("legacy", ChannelType::StaticRemoteKey),
        ("anchors", ChannelType::Anchors),
    ] {
        let params = params_with(&secp, channel_type, 546, 546, Side::Local, FUNDING_SAT);
        let keys = local_keys(&secp, &params);
        let built = build(&params, &keys, &htlcs);
        assert_eq!(built.htlc_indices_in_output_order().count(), HTLCS);
        let (mut old, mut new) = (Vec::new(), Vec::new());
        sighashes_htlc_tx(&built, &mut old);
        sighashes_sighasher(&built, &mut new);
        assert_eq!(old, new, "both paths give the same sighashes");

        // The channel's path: built into the previous round's commitment
        // (its buffers reused), HTLC sighashes by the sighasher.
        let mut target = built.clone();
        let mut msgs = Vec::with_capacity(1 + HTLCS);
        group.bench_function(format!("{name}/build_into+sighashes/sighasher"), |b| {
            b.iter(|| {
                msgs.clear();
                build_into(&mut target, &params, &keys, black_box(&htlcs));
                msgs.push(target.sighash(&params));
                sighashes_sighasher(&target, &mut msgs);
                black_box(&msgs);
            })
        });
        group.bench_function(format!("{name}/build"), |b| {
            b.iter(|| build(&params, &keys, black_box(&htlcs)))
        });
        group.bench_function(format!("{name}/build_into"), |b| {
            b.iter(|| build_into(&mut target, &params, &keys, black_box(&htlcs)))
        });
        for (path, sighashes) in PATHS {
            let mut msgs = Vec::with_capacity(1 + HTLCS);
            group.bench_function(format!("{name}/build+sighashes/{path}"), |b| {
                b.iter(|| {
                    msgs.clear();
                    let commitment = build(&params, &keys, black_box(&htlcs));
                    msgs.push(commitment.sighash(&params));
                    sighashes(&commitment, &mut msgs);
                    black_box(&msgs);
                })
            });
            group.bench_function(format!("{name}/sighashes/{path}"), |b| {
                b.iter(|| {
                    msgs.clear();
                    sighashes(black_box(&built), &mut msgs);
                    black_box(&msgs);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
