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

/// Verifies every check in parallel; `Ok` if all pass, else the indices of
/// all that failed (not just the first).
pub fn verify_batch<C: Verification + Sync>(
    secp: &Secp256k1<C>,
    checks: &[SigCheck],
) -> Result<(), BatchVerifyError> {
    let failed: Vec<usize> = checks
        .par_iter()
        .with_min_len(MIN_ITEMS_PER_TASK)
        .enumerate()
        .filter_map(|(i, c)| {
            secp.verify_ecdsa(&c.msg, &c.sig, &c.pubkey)
                .is_err()
                .then_some(i)
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BatchVerifyError { failed })
    }
}

/// Signs every job in parallel (plain RFC 6979, like
/// [`crate::sighash::sign`]) into `out`, which is cleared first and then
/// holds one signature per job, same order. `out`'s allocation is reused.
pub fn sign_batch<C: Signing + Sync>(
    secp: &Secp256k1<C>,
    jobs: &[SignJob],
    out: &mut Vec<Signature>,
) {
    jobs.par_iter()
        .with_min_len(MIN_ITEMS_PER_TASK)
        .map(|j| secp.sign_ecdsa(&j.msg, &j.key))
        .collect_into_vec(out);
}
