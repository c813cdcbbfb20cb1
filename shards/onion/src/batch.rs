//! Peeling a batch of onions on the rayon pool.
//!
//! The engine collects the onions of every HTLC that became irrevocably
//! committed in one shard iteration and peels them together (DESIGN.md, hot
//! path step 4). Results come back in input order, in caller-owned slots
//! that are reused from batch to batch, so a batch allocates nothing.

use rayon::prelude::*;
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::packet::OnionPacket;
use crate::peel::{peel, OnionFailure, PeeledHop};

/// One onion to peel: the packet and what came with it in `update_add_htlc`.
#[derive(Clone, Copy, Debug)]
pub struct PeelInput<'a> {
    /// `onion_routing_packet`.
    pub packet: &'a OnionPacket,
    /// `payment_hash` (the associated data).
    pub payment_hash: &'a [u8; 32],
    /// `path_key`, for HTLCs inside a blinded route.
    pub path_key: Option<&'a PublicKey>,
}

/// An output slot of [`peel_batch`]: the peeled hop and its outcome.
#[derive(Clone, Debug)]
pub struct PeelSlot {
    /// Valid when `result` is `Ok`.
    pub hop: PeeledHop,
    /// The outcome of peeling the input at the same index.
    pub result: Result<(), OnionFailure>,
}

impl Default for PeelSlot {
    fn default() -> Self {
        PeelSlot {
            hop: PeeledHop::new(),
            result: Ok(()),
        }
    }
}

/// Batches smaller than this are peeled on the calling thread. Handing a
/// batch to rayon puts the caller to sleep and wakes pool threads that spin
/// before they sleep again: tens of microseconds of CPU per batch on top of
/// the peels (~60 us each), paid for lower latency only. Through LDK (1-sat
/// payments, 100 in flight), raising this from 4 to 16 cut the hub's CPU per
/// forward by ~9 % (321 -> 293 us, three runs each); with the load generator,
/// whose busier shard sees larger batches, throughput did not change.
pub const MIN_PARALLEL_BATCH: usize = 16;

/// Peels `inputs[i]` into `slots[i]` for every `i`, in parallel on the
/// current rayon pool. `slots` must be exactly as long as `inputs`.
pub fn peel_batch(
    secp: &Secp256k1<All>,
    node_secret: &SecretKey,
    inputs: &[PeelInput<'_>],
    slots: &mut [PeelSlot],
) {
    assert_eq!(inputs.len(), slots.len(), "one output slot per onion");
    let one = |input: &PeelInput<'_>, slot: &mut PeelSlot| {
        slot.result = peel(
            secp,
            node_secret,
            input.packet,
            input.payment_hash,
            input.path_key,
            &mut slot.hop,
        );
    };
    if inputs.len() < MIN_PARALLEL_BATCH {
        inputs
            .iter()
            .zip(slots.iter_mut())
            .for_each(|(i, s)| one(i, s));
    } else {
        inputs
            .par_iter()
            .zip(slots.par_iter_mut())
            .for_each(|(i, s)| one(i, s));
    }
}
