//! Batch signature checks and signing on the rayon pool (DESIGN: "stage,
//! verify, apply": the engine checks every signature of a
//! `commitment_signed` batch at once).
//!
//! Both functions run on the *current* rayon pool (the global one, or the
//! one the caller `install`s), so the caller decides how many cores crypto
//! may use. They never spawn threads of their own and keep no state; the
//! caller owns the context and the output buffers.

use rayon::prelude::*;
use secp256k1::{
    ecdsa::Signature, Message, PublicKey, Secp256k1, SecretKey, Signing, Verification,
};

/// Smallest slice a rayon task takes: an ECDSA verification costs tens of
/// microseconds, so 8 per task keeps scheduling overhead under ~1% while
/// still splitting a 64-signature `commitment_signed` across cores.
const MIN_ITEMS_PER_TASK: usize = 8;

/// Batches smaller than this run on the calling thread: they would be one
/// rayon task anyway ([`MIN_ITEMS_PER_TASK`]), so the pool would only add a
/// hand-off (the caller sleeps, a pool thread wakes, spins after the work,
/// the caller wakes) and no parallelism. The common case is a commitment
/// whose HTLCs are all dust: one signature per `commitment_signed`.
pub const MIN_PARALLEL_ITEMS: usize = 2 * MIN_ITEMS_PER_TASK;

/// One signature to check: `sig` by `pubkey` over `msg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigCheck {
    /// The sighash.
    pub msg: Message,
    /// The signature (low-S, as BOLT 2 requires).
    pub sig: Signature,
    /// The key it must verify under.
    pub pubkey: PublicKey,
}

/// One message to sign with one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignJob {
    /// The sighash.
    pub msg: Message,
    /// The signing key.
    pub key: SecretKey,
}

/// Some signatures of a batch failed to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchVerifyError {
    /// Indices into the batch of every failed check, ascending.
    pub failed: Vec<usize>,
}

impl core::fmt::Display for BatchVerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} signature(s) failed: {:?}",
            self.failed.len(),
            self.failed
        )
    }
}

impl std::error::Error for BatchVerifyError {}

/// Verifies every check (in parallel from [`MIN_PARALLEL_ITEMS`]); `Ok` if
/// all pass, else the indices of all that failed (not just the first).
pub fn verify_batch<C: Verification + Sync>(
    secp: &Secp256k1<C>,
    checks: &[SigCheck],
) -> Result<(), BatchVerifyError> {
    let fails = |(i, c): (usize, &SigCheck)| {
        secp.verify_ecdsa(&c.msg, &c.sig, &c.pubkey)
            .is_err()
            .then_some(i)
    };
    let failed: Vec<usize> = if checks.len() < MIN_PARALLEL_ITEMS {
        checks.iter().enumerate().filter_map(fails).collect()
    } else {
        checks
            .par_iter()
            .with_min_len(MIN_ITEMS_PER_TASK)
            .enumerate()
            .filter_map(fails)
            .collect()
    };
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BatchVerifyError { failed })
    }
}

/// Signs every job (in parallel from [`MIN_PARALLEL_ITEMS`]; plain RFC 6979,
/// like [`crate::sighash::sign`]) into `out`, which is cleared first and then
/// holds one signature per job, same order. `out`'s allocation is reused.
pub fn sign_batch<C: Signing + Sync>(
    secp: &Secp256k1<C>,
    jobs: &[SignJob],
    out: &mut Vec<Signature>,
) {
    let sign = |j: &SignJob| secp.sign_ecdsa(&j.msg, &j.key);
    if jobs.len() < MIN_PARALLEL_ITEMS {
        out.clear();
        out.extend(jobs.iter().map(sign));
    } else {
        jobs.par_iter()
            .with_min_len(MIN_ITEMS_PER_TASK)
            .map(sign)
            .collect_into_vec(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(n: usize) -> Vec<SignJob> {
        (0..n)
            .map(|i| SignJob {
                msg: Message::from_digest([i as u8 + 1; 32]),
                key: SecretKey::from_slice(&[i as u8 + 7; 32]).unwrap(),
            })
            .collect()
    }

    #[test]
    fn small_and_large_batches_sign_and_verify_alike() {
        let secp = Secp256k1::new();
        // Below the threshold (the calling thread) and above it (the pool).
        for n in [
            1,
            MIN_PARALLEL_ITEMS - 1,
            MIN_PARALLEL_ITEMS,
            3 * MIN_PARALLEL_ITEMS,
        ] {
            let jobs = jobs(n);
            let mut sigs = vec![Signature::from_compact(&[1; 64]).unwrap(); 3];
            sign_batch(&secp, &jobs, &mut sigs);
            let one_by_one: Vec<Signature> = jobs
                .iter()
                .map(|j| secp.sign_ecdsa(&j.msg, &j.key))
                .collect();
            assert_eq!(sigs, one_by_one, "{n} jobs");
            let mut checks: Vec<SigCheck> = jobs
                .iter()
                .zip(&sigs)
                .map(|(j, sig)| SigCheck {
                    msg: j.msg,
                    sig: *sig,
                    pubkey: PublicKey::from_secret_key(&secp, &j.key),
                })
                .collect();
            assert_eq!(verify_batch(&secp, &checks), Ok(()), "{n} checks");
            // Every failure is named, in order, not just the first.
            let bad: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
            for &i in &bad {
                checks[i].msg = Message::from_digest([0xee; 32]);
            }
            assert_eq!(
                verify_batch(&secp, &checks),
                Err(BatchVerifyError { failed: bad }),
                "{n} checks"
            );
        }
    }
}
