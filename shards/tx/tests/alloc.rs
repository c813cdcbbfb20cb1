//! Heap allocations of the HTLC-sighash path, counted by a global
//! allocator: [`HtlcSighasher`] allocates nothing, per HTLC or at all,
//! while [`htlc_tx`] allocates for every HTLC. Also pins how many
//! allocations [`build_commitment`] makes per HTLC output (the witness
//! script and the `scriptPubKey` each HTLC output owns), and that
//! [`build_commitment_into`] a commitment with at least as many outputs
//! (a channel's steady state) allocates nothing at all. A dedicated binary: the counting allocator must not be shared
//! with other tests, and the counter is per thread so the test harness's
//! own threads do not disturb it. It is also the smoke twin of the `stage`
//! bench (same fixture, both sighash paths compared).

// A `GlobalAlloc` impl is `unsafe` by definition; it only forwards to the
// system allocator.
#![allow(unsafe_code)]

mod common;
mod counting_alloc;
mod stage_fixture;
mod vectors;

use common::*;
use counting_alloc::allocations;
use lnhub_tx::{ChannelType, HtlcSighasher, Side};
use secp256k1::Secp256k1;
use stage_fixture::*;

/// Allocations of: building the commitment, building it into one with
/// [`HTLCS`] HTLCs, the sighasher path (all HTLC sighashes, remote and
/// local), and the `htlc_tx` path.
fn counts(channel_type: ChannelType, n: usize) -> (u64, u64, u64, u64) {
    let secp = Secp256k1::new();
    let params = params_with(&secp, channel_type, 546, 546, Side::Local, FUNDING_SAT);
    let keys = local_keys(&secp, &params);
    let htlcs = spec_htlcs(n);
    let (build_allocs, commitment) = allocations(|| build(&params, &keys, &htlcs));
    assert_eq!(commitment.htlc_indices_in_output_order().count(), n);
    // A channel's spare after a round of the larger size.
    let mut target = build(&params, &keys, &spec_htlcs(HTLCS));
    let (into_allocs, ()) = allocations(|| build_into(&mut target, &params, &keys, &htlcs));
    assert_eq!(
        target, commitment,
        "the same commitment, built into another"
    );
    let (sighasher_allocs, ()) = allocations(|| {
        let hasher = HtlcSighasher::new(&commitment);
        for i in commitment.htlc_indices_in_output_order() {
            std::hint::black_box(hasher.remote_sighash(i).expect("untrimmed"));
            std::hint::black_box(hasher.local_sighash(i).expect("untrimmed"));
        }
    });
    // The bench's two paths, compared, each into a Vec sized beforehand.
    let mut old = Vec::with_capacity(n);
    let (htlc_tx_allocs, ()) = allocations(|| sighashes_htlc_tx(&commitment, &mut old));
    let mut new = Vec::with_capacity(n);
    let (path_allocs, ()) = allocations(|| sighashes_sighasher(&commitment, &mut new));
    assert_eq!(old, new);
    assert_eq!(path_allocs, 0);
    (build_allocs, into_allocs, sighasher_allocs, htlc_tx_allocs)
}

#[test]
fn htlc_sighashes_allocate_nothing() {
    for channel_type in [ChannelType::StaticRemoteKey, ChannelType::Anchors] {
        let (build0, into0, sighasher0, htlc_tx0) = counts(channel_type, 0);
        let (build30, into30, sighasher30, htlc_tx30) = counts(channel_type, HTLCS);
        eprintln!(
            "{channel_type:?}: build_commitment {build0} allocations with 0 HTLCs, {build30} with \
             30; build_commitment_into a 30-HTLC commitment {into0} with 0 HTLCs, {into30} with \
             30; HtlcSighasher {sighasher30} for 30 HTLCs; htlc_tx {htlc_tx30} for 30 HTLCs"
        );
        assert_eq!(
            (into0, into30),
            (0, 0),
            "{channel_type:?}: building into a large enough commitment allocates nothing"
        );
        assert_eq!(sighasher0, 0);
        assert_eq!(
            sighasher30, 0,
            "{channel_type:?}: the sighasher must not allocate"
        );
        assert_eq!(htlc_tx0, 0);
        assert!(htlc_tx30 >= HTLCS as u64, "the old path allocates per HTLC");
        // build_commitment: a fixed number of Vecs per commitment (two of
        // them empty, so unallocated, without HTLCs), plus what each HTLC
        // output owns: its witness script and its scriptPubKey, one exact
        // allocation each.
        assert!(
            build30 - build0 <= 2 * HTLCS as u64 + 2,
            "{channel_type:?}: build_commitment allocates {build0} + {} for 30 HTLCs",
            build30 - build0
        );
    }
}
