//! Heap allocations of staging a `commitment_signed`, counted by a global
//! allocator, in steady state (after a round with at least as many HTLCs,
//! so the channel's scratch buffers and spare commitment are grown):
//! [`Channel::stage_sign`] and [`Channel::stage_commitment_signed`] make
//! the same number of allocations whatever the HTLC count (the commitment
//! is built into the spare, its scripts reused; the HTLC sighashes
//! allocate nothing).
//! A dedicated binary, so the counting allocator is not shared; the counter
//! is per thread, so the harness's threads do not disturb it.

// A `GlobalAlloc` impl is `unsafe` by definition; it only forwards to the
// system allocator.
#![allow(unsafe_code)]

mod common;
#[path = "../../tx/tests/counting_alloc/mod.rs"]
mod counting_alloc;

use bitcoin::hashes::{sha256, Hash};
use common::{deliver, drain, pair, pump, Agreement, Reported};
use counting_alloc::allocations;
use lnhub_channel::Channel;
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::{CommitmentSigned, ONION_PACKET_LEN};
use lnhub_wire::types::{Msat, PaymentHash};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

/// One round of A's pending updates, staged by hand so each side's staging
/// is counted: A stages (counted), signs and applies its
/// `commitment_signed`; B takes A's updates, stages the `commitment_signed`
/// (counted), verifies and applies it; the rest of the dance is pumped.
/// Returns the two counts and the HTLC outputs of the staged commitment.
fn counted_round(secp: &Secp256k1<All>, a: &mut Channel, b: &mut Channel) -> (u64, u64, usize) {
    let (sign_allocs, staged) = allocations(|| {
        a.stage_sign(secp)
            .expect("stages")
            .expect("something to sign")
    });
    let htlc_outputs = staged.jobs().len() - 1;
    a.apply_signed(staged.sign(secp));
    let mut commitment_signed: Option<CommitmentSigned> = None;
    for m in drain(a, &mut Reported::default()) {
        match m {
            Message::CommitmentSigned(c) => commitment_signed = Some(c),
            other => deliver(secp, b, other).expect("honest peer"),
        }
    }
    // The message is moved in: built outside the count.
    let msg = commitment_signed.expect("A sent commitment_signed");
    let (verify_allocs, staged) = allocations(|| b.stage_commitment_signed(secp, msg));
    let staged = staged.expect("stages");
    assert_eq!(staged.checks().len(), 1 + htlc_outputs);
    b.apply_commitment_signed(staged.verify(secp))
        .expect("valid signatures");
    pump(secp, a, b).expect("honest peers");
    (sign_allocs, verify_allocs, htlc_outputs)
}

/// A offers [`WARM_UP`] HTLCs to B (the first round: everything allocated
/// afresh), B fails all but `n` of them, then A changes the feerate: the
/// counts of that round, with `n` HTLC outputs.
fn steady_state_allocations(secp: &Secp256k1<All>, n: usize) -> (u64, u64) {
    let (mut a, mut b) = pair(secp, 7, &Agreement::default_for(ChannelType::Anchors));
    for i in 0..WARM_UP {
        let hash = PaymentHash(sha256::Hash::hash(&(i as u64).to_le_bytes()).to_byte_array());
        a.send_add_htlc(Msat(30_000_000), hash, 800_000, &[0; ONION_PACKET_LEN])
            .expect("within limits");
    }
    let (sign_first, verify_first, outputs) = counted_round(secp, &mut a, &mut b);
    assert_eq!(outputs, WARM_UP);
    eprintln!(
        "first round, {WARM_UP} HTLCs: stage_sign {sign_first} allocations, \
         stage_commitment_signed {verify_first}"
    );
    for id in n as u64..WARM_UP as u64 {
        b.send_fail_htlc(id, vec![0; 32]).expect("committed");
    }
    pump(secp, &mut a, &mut b).expect("honest peers");
    a.send_update_fee(3_000).expect("within policy");
    let (sign_allocs, verify_allocs, outputs) = counted_round(secp, &mut a, &mut b);
    assert_eq!(outputs, n);
    (sign_allocs, verify_allocs)
}

/// HTLCs of the first round.
const WARM_UP: usize = 20;

#[test]
fn staging_allocates_nothing_per_htlc_in_steady_state() {
    let secp = Secp256k1::new();
    let (sign10, verify10) = steady_state_allocations(&secp, 10);
    let (sign20, verify20) = steady_state_allocations(&secp, 20);
    eprintln!(
        "steady state: stage_sign {sign10} allocations with 10 HTLCs, {sign20} with 20; \
         stage_commitment_signed {verify10} with 10, {verify20} with 20"
    );
    assert_eq!(sign10, sign20, "stage_sign allocates per HTLC");
    assert_eq!(
        verify10, verify20,
        "stage_commitment_signed allocates per HTLC"
    );
}

/// A stage dropped unapplied takes the spare with it: the next round
/// builds afresh (and verifies at the peer), the one after is back to the
/// steady-state count.
#[test]
fn a_dropped_stage_costs_one_fresh_build() {
    let secp = Secp256k1::new();
    let (steady_sign, _) = steady_state_allocations(&secp, 10);
    let (mut a, mut b) = pair(&secp, 7, &Agreement::default_for(ChannelType::Anchors));
    for i in 0..10u64 {
        let hash = PaymentHash(sha256::Hash::hash(&i.to_le_bytes()).to_byte_array());
        a.send_add_htlc(Msat(30_000_000), hash, 800_000, &[0; ONION_PACKET_LEN])
            .expect("within limits");
    }
    counted_round(&secp, &mut a, &mut b);
    a.send_update_fee(3_000).expect("within policy");
    drop(
        a.stage_sign(&secp)
            .expect("stages")
            .expect("something to sign"),
    );
    let (fresh_sign, _, outputs) = counted_round(&secp, &mut a, &mut b);
    assert_eq!(outputs, 10);
    assert!(
        fresh_sign > steady_sign,
        "the spare went with the dropped stage"
    );
    a.send_update_fee(3_500).expect("within policy");
    let (sign, _, _) = counted_round(&secp, &mut a, &mut b);
    assert_eq!(sign, steady_sign, "back to the steady state");
}
