//! Onion peeling throughput: one thread and all cores.
//!
//! `cargo bench -p lnhub-onion --bench peel`. Reports onions/s (criterion
//! "elem/s") for `peel_batch` of `BATCH` 3-hop onions, first on a one-thread
//! rayon pool, then on the global pool (all cores). The smoke size runs as a
//! normal test in `tests/batch.rs`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lnhub_onion::build::{build_onion, RouteHop};
use lnhub_onion::packet::{OnionPacket, ONION_PACKET_LEN};
use lnhub_onion::payload::PayloadFields;
use lnhub_onion::{peel_batch, PeelInput, PeelSlot};
use lnhub_wire::types::{Msat, ShortChannelId};
use secp256k1::{PublicKey, Secp256k1, SecretKey};

/// Onions per batch: roughly what a busy shard collects per iteration.
const BATCH: usize = 256;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_slice(&[seed; 32]).unwrap()
}

fn onions(secp: &Secp256k1<secp256k1::All>, hub: &SecretKey) -> Vec<(OnionPacket, [u8; 32])> {
    let keys = [
        PublicKey::from_secret_key(secp, hub),
        PublicKey::from_secret_key(secp, &key(2)),
        PublicKey::from_secret_key(secp, &key(3)),
    ];
    let mut payloads = Vec::new();
    for i in 0..3u64 {
        let mut p = Vec::new();
        PayloadFields {
            amt_to_forward: Some(Msat(10_000_000 - i)),
            outgoing_cltv_value: Some(800_000),
            short_channel_id: (i < 2).then_some(ShortChannelId(i + 1)),
            ..Default::default()
        }
        .write(&mut p);
        payloads.push(p);
    }
    (0..BATCH)
        .map(|i| {
            let route: Vec<RouteHop<'_>> = keys
                .iter()
                .zip(&payloads)
                .map(|(k, p)| RouteHop {
                    pubkey: k,
                    payload: p,
                })
                .collect();
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let mut session = [0x55u8; 32];
            session[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let mut onion = [0u8; ONION_PACKET_LEN];
            build_onion(
                secp,
                &SecretKey::from_slice(&session).unwrap(),
                &route,
                &hash,
                &mut onion,
            )
            .unwrap();
            (onion, hash)
        })
        .collect()
}

fn bench_peel(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let hub = key(1);
    let data = onions(&secp, &hub);
    let inputs: Vec<PeelInput<'_>> = data
        .iter()
        .map(|(o, h)| PeelInput {
            packet: o,
            payment_hash: h,
            path_key: None,
        })
        .collect();
    let mut slots: Vec<PeelSlot> = (0..BATCH).map(|_| PeelSlot::default()).collect();
    let mut g = c.benchmark_group("peel_batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_function("1_thread", |b| {
        b.iter(|| one.install(|| peel_batch(&secp, &hub, &inputs, &mut slots)))
    });
    g.bench_function(format!("all_cores_{}", rayon::current_num_threads()), |b| {
        b.iter(|| peel_batch(&secp, &hub, &inputs, &mut slots))
    });
    g.finish();
    assert!(
        slots.iter().all(|s| s.result.is_ok()),
        "every benchmark onion peels"
    );
}

criterion_group!(benches, bench_peel);
criterion_main!(benches);
