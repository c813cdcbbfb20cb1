//! Property tests: random handshakes, random messages in random chunk
//! splits, random garbage and single-byte corruption (BOLT 8 handshake and
//! "Receiving and Decrypting Messages").

use lnhub_noise::{
    fuzz_framing, InitiatorHandshake, ResponderHandshake, Transport, TransportError,
    MAX_MESSAGE_LEN,
};
use proptest::prelude::*;
use secp256k1::{PublicKey, Secp256k1, SecretKey};

fn secret_key() -> impl Strategy<Value = SecretKey> {
    any::<[u8; 32]>().prop_filter_map("valid secp256k1 scalar", |b| SecretKey::from_slice(&b).ok())
}

/// Runs a full handshake; returns (initiator transport, responder transport).
fn handshake(
    init_static: &SecretKey,
    init_eph: &SecretKey,
    resp_static: &SecretKey,
    resp_eph: &SecretKey,
) -> (Transport, Transport) {
    let secp = Secp256k1::signing_only();
    let resp_pub = PublicKey::from_secret_key(&secp, resp_static);
    let (initiator, act_one) = InitiatorHandshake::new(init_static, &resp_pub, init_eph);
    let responder = ResponderHandshake::new(resp_static, resp_eph);
    let (responder, act_two) = responder.handle_act_one(&act_one).expect("act one");
    let (act_three, init_transport) = initiator.handle_act_two(&act_two).expect("act two");
    let (resp_transport, remote) = responder.handle_act_three(&act_three).expect("act three");
    assert_eq!(remote, PublicKey::from_secret_key(&secp, init_static));
    (init_transport, resp_transport)
}

/// Feeds `wire` in chunks of the given sizes (cycled), collecting messages.
fn feed_chunked(
    t: &mut Transport,
    wire: &[u8],
    sizes: &[usize],
) -> Result<Vec<Vec<u8>>, TransportError> {
    let mut got = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        let (mut piece, tail) = rest.split_at(n);
        rest = tail;
        while !piece.is_empty() {
            let accepted = t.feed(piece)?;
            piece = &piece[accepted..];
            while let Some(m) = t.next_message()? {
                got.push(m.to_vec());
            }
        }
    }
    Ok(got)
}

fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let msg = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..300),
        1 => prop::collection::vec(any::<u8>(), 0..=MAX_MESSAGE_LEN),
    ];
    prop::collection::vec(msg, 0..12)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![1usize..4, 1usize..40, 1usize..70_000, 131_000usize..140_000],
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn messages_survive_any_chunking_both_ways(
        is in secret_key(), ie in secret_key(), rs in secret_key(), re in secret_key(),
        to_resp in messages(), to_init in messages(), sizes in chunk_sizes(),
    ) {
        let (mut init, mut resp) = handshake(&is, &ie, &rs, &re);
        let mut wire = Vec::new();
        for m in &to_resp {
            init.encrypt_message(m, &mut wire).unwrap();
        }
        prop_assert_eq!(&feed_chunked(&mut resp, &wire, &sizes).unwrap(), &to_resp);
        wire.clear();
        for m in &to_init {
            resp.encrypt_message(m, &mut wire).unwrap();
        }
        prop_assert_eq!(&feed_chunked(&mut init, &wire, &sizes).unwrap(), &to_init);
        prop_assert_eq!(init.buffered() + resp.buffered(), 0);
    }

    #[test]
    fn random_bytes_are_rejected_without_panicking(
        garbage in prop::collection::vec(any::<u8>(), 0..2_000), sizes in chunk_sizes(),
    ) {
        let (_, mut resp) = handshake(
            &SecretKey::from_slice(&[1; 32]).unwrap(),
            &SecretKey::from_slice(&[2; 32]).unwrap(),
            &SecretKey::from_slice(&[3; 32]).unwrap(),
            &SecretKey::from_slice(&[4; 32]).unwrap(),
        );
        let result = feed_chunked(&mut resp, &garbage, &sizes);
        if garbage.len() >= 18 {
            // A forged 16-byte MAC passes with probability 2^-128.
            prop_assert_eq!(result, Err(TransportError::BadLengthTag));
            prop_assert_eq!(resp.feed(&[0]), Err(TransportError::Dead));
            prop_assert_eq!(resp.next_message(), Err(TransportError::Dead));
        } else {
            prop_assert_eq!(result, Ok(Vec::new()));
        }
    }

    #[test]
    fn any_flipped_ciphertext_byte_is_detected(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 1..5),
        position in any::<prop::sample::Index>(), mask in 1u8..=255, sizes in chunk_sizes(),
    ) {
        let mut sender = Transport::from_keys([5; 32], [6; 32], [7; 32]);
        let mut receiver = Transport::from_keys([6; 32], [5; 32], [7; 32]);
        let mut wire = Vec::new();
        for m in &msgs {
            sender.encrypt_message(m, &mut wire).unwrap();
        }
        let at = position.index(wire.len());
        wire[at] ^= mask;
        let result = feed_chunked(&mut receiver, &wire, &sizes);
        prop_assert!(result.is_err(), "flip at {} undetected", at);
        prop_assert!(receiver.is_dead());
    }

    #[test]
    fn fuzz_entry_point_never_panics(data in prop::collection::vec(any::<u8>(), 0..3_000)) {
        fuzz_framing(&data);
    }

    #[test]
    fn corrupted_handshake_acts_are_rejected(
        is in secret_key(), ie in secret_key(), rs in secret_key(), re in secret_key(),
        act in 0usize..3, position in any::<prop::sample::Index>(), mask in 1u8..=255,
    ) {
        let secp = Secp256k1::signing_only();
        let (initiator, mut act_one) =
            InitiatorHandshake::new(&is, &PublicKey::from_secret_key(&secp, &rs), &ie);
        if act == 0 {
            act_one[position.index(act_one.len())] ^= mask;
            prop_assert!(ResponderHandshake::new(&rs, &re).handle_act_one(&act_one).is_err());
            return Ok(());
        }
        let (responder, mut act_two) =
            ResponderHandshake::new(&rs, &re).handle_act_one(&act_one).unwrap();
        if act == 1 {
            act_two[position.index(act_two.len())] ^= mask;
            prop_assert!(initiator.handle_act_two(&act_two).is_err());
            return Ok(());
        }
        let (mut act_three, _) = initiator.handle_act_two(&act_two).unwrap();
        act_three[position.index(act_three.len())] ^= mask;
        prop_assert!(responder.handle_act_three(&act_three).is_err());
    }
}
