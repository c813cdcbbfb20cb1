//! The update cycle `benches/cycle.rs` measures, shared with its smoke test: A offers `n`
//! HTLCs, both sides sign and revoke, B fulfills them all, both sides sign and revoke again;
//! then the same from B to A, so balances end where they started and the cycle can repeat
//! forever.

use bitcoin::hashes::{sha256, Hash};
use lnhub_channel::{Channel, RemovalKind};
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage};
use secp256k1::{All, Secp256k1};

use crate::common;

/// Runs `n` HTLCs from A to B, then `n` from B to A; returns how many were fulfilled (always
/// `2n`).
pub fn run(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
    n: usize,
    counter: &mut u64,
) -> usize {
    one_way(secp, a, b, n, counter) + one_way(secp, b, a, n, counter)
}

/// `n` HTLCs from `a` to `b`, each settled.
fn one_way(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
    n: usize,
    counter: &mut u64,
) -> usize {
    let onion = [0u8; lnhub_wire::msgs::ONION_PACKET_LEN];
    let mut preimages = Vec::with_capacity(n);
    for _ in 0..n {
        *counter += 1;
        let mut preimage = [0u8; 32];
        preimage[..8].copy_from_slice(&counter.to_be_bytes());
        let hash = sha256::Hash::hash(&preimage).to_byte_array();
        a.send_add_htlc(Msat(1_000_000), PaymentHash(hash), 500, &onion)
            .expect("the channel carries the HTLC");
        preimages.push(preimage);
    }
    let (_, rb) = common::pump(secp, a, b).expect("the dance completes");
    assert_eq!(rb.forwards.len(), n, "B sees every HTLC committed");
    for (htlc_id, preimage) in rb.forwards.iter().zip(preimages) {
        b.send_fulfill_htlc(*htlc_id, PaymentPreimage(preimage))
            .expect("B settles");
    }
    let (ra, _) = common::pump(secp, a, b).expect("the dance completes");
    ra.resolved
        .iter()
        .filter(|(_, r)| matches!(r, RemovalKind::Fulfill(_)))
        .count()
}
