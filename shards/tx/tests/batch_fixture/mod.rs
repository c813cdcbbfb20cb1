//! Deterministic batches for the batch signing/verification test and the
//! `sigs` bench (one fixture, so the bench's code path is the tested one).
#![allow(dead_code)]

use bitcoin::hashes::{sha256, Hash, HashEngine};
use lnhub_tx::batch::{SigCheck, SignJob};
use secp256k1::{Message, PublicKey, Secp256k1, SecretKey, Signing};

/// Size `cargo test` runs: one `commitment_signed` with ~60 HTLCs.
pub const SMOKE_SIZE: usize = 64;

/// Size the bench measures.
pub const BENCH_SIZE: usize = 1024;

fn tagged(tag: &[u8], i: usize) -> [u8; 32] {
    let mut e = sha256::Hash::engine();
    e.input(tag);
    e.input(&(i as u64).to_be_bytes());
    sha256::Hash::from_engine(e).to_byte_array()
}

/// `n` sign jobs with distinct keys and messages.
pub fn sign_jobs(n: usize) -> Vec<SignJob> {
    (0..n)
        .map(|i| SignJob {
            msg: Message::from_digest(tagged(b"msg", i)),
            key: SecretKey::from_slice(&tagged(b"key", i)).expect("hash is a valid key"),
        })
        .collect()
}

/// The checks matching `jobs` signed into `sigs`.
pub fn checks<C: Signing>(
    secp: &Secp256k1<C>,
    jobs: &[SignJob],
    sigs: &[secp256k1::ecdsa::Signature],
) -> Vec<SigCheck> {
    jobs.iter()
        .zip(sigs)
        .map(|(j, s)| SigCheck {
            msg: j.msg,
            sig: *s,
            pubkey: PublicKey::from_secret_key(secp, &j.key),
        })
        .collect()
}
