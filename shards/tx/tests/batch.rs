//! Batch signing and verification at the bench's smoke size, so the bench
//! code path never rots; failures are reported by index.

mod batch_fixture;

use batch_fixture::*;
use lnhub_tx::batch::{sign_batch, verify_batch};
use lnhub_tx::sighash::sign;
use secp256k1::Secp256k1;

#[test]
fn batch_sign_then_verify_smoke() {
    let secp = Secp256k1::new();
    let jobs = sign_jobs(SMOKE_SIZE);
    let mut sigs = Vec::new();
    sign_batch(&secp, &jobs, &mut sigs);
    assert_eq!(sigs.len(), SMOKE_SIZE);
    // Same bytes as one-by-one RFC 6979 signing.
    for (j, s) in jobs.iter().zip(&sigs) {
        assert_eq!(*s, sign(&secp, &j.msg, &j.key));
    }
    let mut checks = checks(&secp, &jobs, &sigs);
    verify_batch(&secp, &checks).expect("all valid");

    // Corrupt three: wrong message, wrong key, signature of another item.
    checks[3].msg = checks[4].msg;
    checks[17].pubkey = checks[18].pubkey;
    checks[63].sig = checks[0].sig;
    let err = verify_batch(&secp, &checks).expect_err("three invalid");
    assert_eq!(err.failed, vec![3, 17, 63]);

    // Output buffer is reused, not appended to.
    sign_batch(&secp, &jobs[..8], &mut sigs);
    assert_eq!(sigs.len(), 8);
    verify_batch(&secp, &[]).expect("empty batch is valid");
}

#[test]
fn batch_on_single_thread_pool_matches() {
    let secp = Secp256k1::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let jobs = sign_jobs(SMOKE_SIZE);
    let mut sigs = Vec::new();
    pool.install(|| sign_batch(&secp, &jobs, &mut sigs));
    let checks = checks(&secp, &jobs, &sigs);
    pool.install(|| verify_batch(&secp, &checks))
        .expect("valid");
}
