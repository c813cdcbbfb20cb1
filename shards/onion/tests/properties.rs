//! Property tests: build/peel round trips, tamper detection, failure attribution.

mod common;

use common::{build, key, payload, payload_with};
use lnhub_onion::error_packet::{create_error_packet, decode_error_packet, obfuscate_error_packet};
use lnhub_onion::failure::{Failure, FailureMessage};
use lnhub_onion::packet::{HOP_PAYLOADS_LEN, MAX_HOPS};
use lnhub_onion::peel::{peel, PeelError, PeeledHop};
use lnhub_wire::types::Msat;
use proptest::prelude::*;
use secp256k1::Secp256k1;

/// Per hop: (amt_to_forward, outgoing_cltv_value, payment_metadata length).
type HopSpec = (u64, u32, usize);

fn route_strategy() -> impl Strategy<Value = (Vec<HopSpec>, u32)> {
    (1..=MAX_HOPS).prop_flat_map(|n| {
        (
            prop::collection::vec((any::<u64>(), any::<u32>(), 0usize..300), n),
            any::<u32>(),
        )
    })
}

/// Encodes the hops' payloads, shrinking them until the route fits in 1300
/// bytes: first dropping metadata, then zeroing amounts and expiries (which
/// encode in two bytes), from the last hop back. Even 27 hops fit that way.
fn payloads_that_fit(spec: &mut [HopSpec]) -> Vec<Vec<u8>> {
    let n = spec.len();
    let encode = |spec: &[HopSpec]| -> Vec<Vec<u8>> {
        spec.iter()
            .enumerate()
            .map(|(i, &(amt, cltv, m))| payload_with(i, amt, cltv, i == n - 1, &vec![i as u8; m]))
            .collect()
    };
    let size = |p: &[Vec<u8>]| p.iter().map(|p| p.len() + 3 + 32).sum::<usize>();
    let mut p = encode(spec);
    if size(&p) > HOP_PAYLOADS_LEN {
        spec.iter_mut().for_each(|s| s.2 = 0);
        p = encode(spec);
    }
    for i in (0..n).rev() {
        if size(&p) <= HOP_PAYLOADS_LEN {
            break;
        }
        spec[i].0 = 0;
        spec[i].1 = 0;
        p = encode(spec);
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_routes_round_trip((mut spec, seed) in route_strategy()) {
        let payloads = payloads_that_fit(&mut spec);
        let secp = Secp256k1::new();
        let n = spec.len();
        let nodes: Vec<_> = (0..n).map(|i| key(seed.wrapping_add(i as u32 + 1))).collect();
        let hash = [seed as u8; 32];
        let (mut onion, secrets) = build(&secp, &key(seed ^ 0xdead), &nodes, &payloads, &hash);
        let mut out = PeeledHop::new();
        for i in 0..n {
            peel(&secp, &nodes[i], &onion, &hash, None, &mut out).unwrap();
            prop_assert_eq!(out.payload_bytes(), &payloads[i][..]);
            prop_assert_eq!(out.shared_secret(), &secrets[i]);
            prop_assert_eq!(out.is_final(), i == n - 1);
            prop_assert_eq!(out.payload().amt_to_forward, Some(Msat(spec[i].0)));
            prop_assert_eq!(out.payload().outgoing_cltv_value, Some(spec[i].1));
            if let Some(next) = out.next_packet() {
                onion = *next;
            }
        }
    }

    #[test]
    fn any_flipped_byte_fails_at_the_first_hop_that_sees_it(
        n in 1usize..8, at_hop in 0usize..8, pos in 0usize..1366, bit in 0u8..8, seed in any::<u32>()
    ) {
        let at_hop = at_hop % n;
        let secp = Secp256k1::new();
        let nodes: Vec<_> = (0..n).map(|i| key(seed.wrapping_add(i as u32 + 1))).collect();
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| payload(i, i == n - 1, &[])).collect();
        let hash = [7u8; 32];
        let (mut onion, _) = build(&secp, &key(seed ^ 0xbeef), &nodes, &payloads, &hash);
        let mut out = PeeledHop::new();
        for node in &nodes[..at_hop] {
            peel(&secp, node, &onion, &hash, None, &mut out).unwrap();
            onion = *out.next_packet().unwrap();
        }
        onion[pos] ^= 1 << bit;
        let err = peel(&secp, &nodes[at_hop], &onion, &hash, None, &mut out).unwrap_err();
        match pos {
            0 => prop_assert!(matches!(err.cause(), PeelError::UnknownVersion(_))),
            1..=33 => prop_assert!(matches!(
                err.cause(),
                PeelError::InvalidEphemeralKey | PeelError::HmacMismatch
            )),
            _ => prop_assert_eq!(err.cause(), PeelError::HmacMismatch),
        }
    }

    #[test]
    fn failures_decode_to_the_erring_hop(
        n in 1usize..=MAX_HOPS, erring in 0usize..MAX_HOPS, code in 0usize..6,
        amount in any::<u64>(), update_len in 0usize..200, tlv in any::<bool>(), seed in any::<u32>()
    ) {
        let erring = erring % n;
        let secp = Secp256k1::new();
        let nodes: Vec<_> = (0..n).map(|i| key(seed.wrapping_add(i as u32 + 1))).collect();
        // Zero amounts keep even 27 hops within 1300 bytes.
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| payload_with(i, 0, 0, i == n - 1, &[])).collect();
        let (_, secrets) = build(&secp, &key(seed ^ 0xf00d), &nodes, &payloads, &[1; 32]);
        let message = match code {
            0 => FailureMessage::TemporaryNodeFailure,
            1 => FailureMessage::FeeInsufficient { htlc_msat: Msat(amount), channel_update: vec![3; update_len] },
            2 => FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: Msat(amount), height: seed },
            3 => FailureMessage::InvalidOnionPayload { typ: amount, offset: update_len as u16 },
            4 => FailureMessage::ChannelDisabled { disabled_flags: 0, channel_update: vec![9; update_len * 2] },
            _ => FailureMessage::InvalidOnionBlinding { sha256_of_onion: [seed as u8; 32] },
        };
        let failure = Failure { message, tlv_stream: if tlv { vec![1, 1, 42] } else { vec![] } };
        let mut pkt = Vec::new();
        create_error_packet(&secrets[erring], &failure, &mut pkt).unwrap();
        for ss in secrets[..erring].iter().rev() {
            obfuscate_error_packet(ss, &mut pkt);
        }
        let decoded = decode_error_packet(&secrets, &pkt).unwrap();
        prop_assert_eq!(decoded.hop, erring);
        prop_assert_eq!(decoded.failure.unwrap(), failure);
    }
}
