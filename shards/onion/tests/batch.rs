//! Batch peeling at a smoke size (the bench's real sizes run on demand).

mod common;

use common::{build, key, payload};
use lnhub_onion::peel::{peel, PeelError, PeeledHop};
use lnhub_onion::{peel_batch, PeelInput, PeelSlot};
use secp256k1::Secp256k1;

/// Smoke batch: big enough to be split across threads, small enough for `cargo test`.
const SMOKE: usize = 16;

#[test]
fn batch_peel_keeps_input_order_and_matches_single_peel() {
    let secp = Secp256k1::new();
    let hub = key(1);
    let nodes = [hub, key(2)];
    let mut data = Vec::new();
    for i in 0..SMOKE {
        let payloads = vec![payload(i, false, &[]), payload(i + 100, true, &[])];
        let hash = [i as u8; 32];
        let (mut onion, _) = build(&secp, &key(1000 + i as u32), &nodes, &payloads, &hash);
        if i % 5 == 3 {
            onion[500] ^= 1; // tampered: must fail, in its own slot
        }
        data.push((onion, hash));
    }
    let inputs: Vec<PeelInput<'_>> = data
        .iter()
        .map(|(o, h)| PeelInput {
            packet: o,
            payment_hash: h,
            path_key: None,
        })
        .collect();
    let mut slots: Vec<PeelSlot> = (0..SMOKE).map(|_| PeelSlot::default()).collect();
    peel_batch(&secp, &hub, &inputs, &mut slots);
    let mut single = PeeledHop::new();
    for (i, slot) in slots.iter().enumerate() {
        let r = peel(&secp, &hub, &data[i].0, &data[i].1, None, &mut single);
        assert_eq!(slot.result, r, "slot {i}");
        if i % 5 == 3 {
            assert_eq!(
                slot.result.as_ref().unwrap_err().cause(),
                PeelError::HmacMismatch
            );
        } else {
            assert_eq!(
                slot.hop.payload_bytes(),
                payload(i, false, &[]).as_slice(),
                "slot {i} order"
            );
            assert_eq!(slot.hop.next_packet(), single.next_packet());
        }
    }
}
