//! Staging one `commitment_signed` as the channel does: build a commitment
//! with 30 untrimmed HTLCs, then the funding sighash and one HTLC sighash
//! per HTLC output, in output order. Two HTLC-sighash paths are measured
//! in the same run so their figures compare: `htlc_tx` (builds each HTLC
//! transaction, the old path) and `sighasher` ([`HtlcSighasher`], no
//! allocation per HTLC). `sighashes/*` measures the HTLC sighashes alone
//! on an already built commitment. Both channel types.
//! Run: `cargo bench -p lnhub-tx --bench stage`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/vectors/mod.rs"]
mod vectors;

use bitcoin::hashes::{sha256, Hash};
use common::*;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lnhub_tx::{
    build_commitment, htlc_tx, ChannelParams, ChannelType, CommitmentKeys, CommitmentSpec,
    CommitmentTx, HtlcDirection, HtlcSighasher, HtlcSpec, Side,
};
use secp256k1::{Message, Secp256k1};

/// HTLCs per commitment.
const HTLCS: usize = 30;

/// 30 HTLCs well above dust, half offered, distinct hashes and expiries.
fn spec_htlcs() -> Vec<HtlcSpec> {
    (0..HTLCS)
        .map(|i| HtlcSpec {
            id: i as u64,
            direction: if i % 2 == 0 {
                HtlcDirection::Offered
            } else {
                HtlcDirection::Received
            },
            amount_msat: 10_000_000 + 10_000 * i as u64,
            cltv_expiry: 500_000 + i as u32,
            payment_hash: sha256::Hash::hash(&(i as u64).to_le_bytes()),
        })
        .collect()
}

fn build(params: &ChannelParams, keys: &CommitmentKeys, htlcs: &[HtlcSpec]) -> CommitmentTx {
    let htlc_msat: u64 = htlcs.iter().map(|h| h.amount_msat).sum();
    let funding_msat = params.funding_amount().to_sat() * 1000;
    let spec = CommitmentSpec {
        commitment_number: 42,
        feerate_per_kw: 2_500,
        to_local_msat: (funding_msat - htlc_msat) / 2,
        to_remote_msat: funding_msat - htlc_msat - (funding_msat - htlc_msat) / 2,
        htlcs,
    };
    build_commitment(params, Side::Local, keys, &spec).expect("buildable")
}

/// One way to compute the HTLC sighashes of a commitment.
type SighashPath = fn(&CommitmentTx, &mut Vec<Message>);

/// The old path: one built HTLC transaction per sighash.
fn sighashes_htlc_tx(c: &CommitmentTx, out: &mut Vec<Message>) {
    for i in c.htlc_indices_in_output_order() {
        out.push(htlc_tx(c, i).expect("untrimmed").remote_sighash());
    }
}

/// The new path.
fn sighashes_sighasher(c: &CommitmentTx, out: &mut Vec<Message>) {
    let hasher = HtlcSighasher::new(c);
    for i in c.htlc_indices_in_output_order() {
        out.push(hasher.remote_sighash(i).expect("untrimmed"));
    }
}

fn bench(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let htlcs = spec_htlcs();
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(1));
    for (name, channel_type) in [
        ("legacy", ChannelType::StaticRemoteKey),
        ("anchors", ChannelType::Anchors),
    ] {
        let params = params_with(&secp, channel_type, 546, 546, Side::Local, 10_000_000);
        let keys = local_keys(&secp, &params);
        let built = build(&params, &keys, &htlcs);
        assert_eq!(built.htlc_indices_in_output_order().count(), HTLCS);
        let (mut old, mut new) = (Vec::new(), Vec::new());
        sighashes_htlc_tx(&built, &mut old);
        sighashes_sighasher(&built, &mut new);
        assert_eq!(old, new, "both paths give the same sighashes");

        let paths: [(&str, SighashPath); 2] = [
            ("htlc_tx", sighashes_htlc_tx),
            ("sighasher", sighashes_sighasher),
        ];
        for (path, sighashes) in paths {
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
