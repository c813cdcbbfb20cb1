//! Group-commit throughput of the store: one commit (a journal entry and one fdatasync) of
//! batches of 1, 10, 100 and 1,000 records of a forward link's size, through the writer thread
//! as shards use it; the checkpoints into LMDB this load causes are part of the time.
//! Records/s = commits/s × batch size. `cargo bench -p lnhub-store --bench commit`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lnhub_store::{Batch, Db, Options, Table};

fn commit(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("lnhub-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (db, _) = Db::open(&dir, Options::default()).expect("open");
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut group = c.benchmark_group("lmdb_commit");
    let mut next_key = 0u64;
    for size in [1usize, 10, 100, 1000] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let mut batch = Batch::new();
            b.iter(|| {
                batch.clear();
                for _ in 0..size {
                    // Keys cycle over a bounded set so the file stays small however long it runs.
                    next_key = (next_key + 1) % 100_000;
                    let mut key = [0u8; 40];
                    key[32..].copy_from_slice(&next_key.to_be_bytes());
                    batch.put(Table::Links, &key, &[7u8; 100]);
                }
                handle.commit(&mut batch).expect("commit");
            });
        });
    }
    group.finish();
    drop(handle);
    writer.close();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, commit);
criterion_main!(benches);
