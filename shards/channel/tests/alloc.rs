//! Heap allocations of staging a `commitment_signed`, counted by a global
//! allocator, in steady state (the channel's scratch buffers already
//! grown): per HTLC, [`Channel::stage_sign`] and
//! [`Channel::stage_commitment_signed`] allocate only what
//! `lnhub_tx::build_commitment` makes each HTLC output own (its witness
//! script and its `scriptPubKey`); the HTLC sighashes allocate nothing.
//! A dedicated binary, so the counting allocator is not shared; the counter
//! is per thread, so the harness's threads do not disturb it.

// A `GlobalAlloc` impl is `unsafe` by definition; it only forwards to the
// system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bitcoin::hashes::{sha256, Hash};
use common::{deliver, drain, pair, Agreement, Reported};
use lnhub_channel::Channel;
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::{CommitmentSigned, ONION_PACKET_LEN};
use lnhub_wire::types::{Msat, PaymentHash};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

/// Forwards to [`System`], counting allocations and reallocations made by
/// the current thread.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the slot may be gone while the thread is exiting.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees hold; the counter is a const-initialised
// thread-local `Cell`, whose access does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCS.with(Cell::get);
    let out = f();
    (ALLOCS.with(Cell::get) - before, out)
}

/// A offers `n` HTLCs to B; returns the allocations of A's second
/// `stage_sign` and of B's second `stage_commitment_signed` (the first of
/// each grows the scratch buffers).
fn staging_allocations(secp: &Secp256k1<All>, n: usize) -> (u64, u64) {
    let (mut a, mut b) = pair(secp, 7, &Agreement::default_for(ChannelType::Anchors));
    for i in 0..n {
        let hash = PaymentHash(sha256::Hash::hash(&(i as u64).to_le_bytes()).to_byte_array());
        a.send_add_htlc(Msat(30_000_000), hash, 800_000, &[0; ONION_PACKET_LEN])
            .expect("within limits");
    }
    let stage = |a: &mut Channel| {
        a.stage_sign(secp)
            .expect("stages")
            .expect("something to sign")
    };
    let first = stage(&mut a);
    assert_eq!(first.jobs().len(), 1 + n);
    drop(first);
    let (sign_allocs, staged) = allocations(|| stage(&mut a));
    a.apply_signed(staged.sign(secp));
    let mut commitment_signed: Option<CommitmentSigned> = None;
    for m in drain(&mut a, &mut Reported::default()) {
        match m {
            Message::CommitmentSigned(c) => commitment_signed = Some(c),
            other => deliver(secp, &mut b, other).expect("honest peer"),
        }
    }
    let msg = commitment_signed.expect("A sent commitment_signed");
    let first = b
        .stage_commitment_signed(secp, msg.clone())
        .expect("stages");
    assert_eq!(first.checks().len(), 1 + n);
    drop(first);
    // The message is moved in: clone it outside the count.
    let second = msg.clone();
    let (verify_allocs, staged) = allocations(|| b.stage_commitment_signed(secp, second));
    staged
        .expect("stages")
        .verify(secp)
        .expect("valid signatures");
    (sign_allocs, verify_allocs)
}

#[test]
fn staging_allocates_two_per_htlc_output() {
    let secp = Secp256k1::new();
    let (sign10, verify10) = staging_allocations(&secp, 10);
    let (sign20, verify20) = staging_allocations(&secp, 20);
    eprintln!(
        "stage_sign: {sign10} allocations with 10 HTLCs, {sign20} with 20; \
         stage_commitment_signed: {verify10} with 10, {verify20} with 20"
    );
    // Ten more HTLC outputs: a witness script and a scriptPubKey each.
    assert_eq!(sign20 - sign10, 2 * 10, "stage_sign per HTLC");
    assert_eq!(
        verify20 - verify10,
        2 * 10,
        "stage_commitment_signed per HTLC"
    );
}
