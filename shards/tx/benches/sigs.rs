//! Batch ECDSA throughput (sigs/s) for `commitment_signed`-style batches:
//! verify and sign, on a one-thread rayon pool and on a pool with one
//! thread per core. Run: `cargo bench -p lnhub-tx --bench sigs`. The same
//! code runs at a smoke size in `cargo test` (tests/batch.rs).

#[path = "../tests/batch_fixture/mod.rs"]
mod batch_fixture;

use batch_fixture::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lnhub_tx::batch::{sign_batch, verify_batch};
use secp256k1::Secp256k1;

fn bench(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let jobs = sign_jobs(BENCH_SIZE);
    let mut sigs = Vec::new();
    sign_batch(&secp, &jobs, &mut sigs);
    let checks = checks(&secp, &jobs, &sigs);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let mut group = c.benchmark_group("sigs");
    group.throughput(Throughput::Elements(BENCH_SIZE as u64));
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        group.bench_function(format!("verify/{threads}-thread"), |b| {
            b.iter(|| {
                pool.install(|| verify_batch(&secp, &checks))
                    .expect("valid")
            })
        });
        group.bench_function(format!("sign/{threads}-thread"), |b| {
            b.iter_batched_ref(
                Vec::new,
                |out| pool.install(|| sign_batch(&secp, &jobs, out)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
