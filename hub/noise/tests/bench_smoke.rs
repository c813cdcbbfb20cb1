//! The smoke size of `benches/transport.rs`: the same round trip (encrypt, feed, decrypt)
//! for each message size the bench measures, checked byte for byte, across key rotations.

use lnhub_noise::{Transport, KEY_ROTATION_INTERVAL};

#[test]
fn round_trips_of_every_bench_size_survive_key_rotation() {
    let (sk, rk, ck) = ([0x11; 32], [0x22; 32], [0x33; 32]);
    let (mut a, mut b) = (
        Transport::from_keys(sk, rk, ck),
        Transport::from_keys(rk, sk, ck),
    );
    let mut wire = Vec::new();
    for len in [32usize, 1_450, 65_535] {
        let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
        for _ in 0..(KEY_ROTATION_INTERVAL as usize / 2 + 3) {
            wire.clear();
            a.encrypt_message(&msg, &mut wire).unwrap();
            let mut data = &wire[..];
            let mut got = None;
            while !data.is_empty() {
                let n = b.feed(data).unwrap();
                data = &data[n..];
                if let Some(m) = b.next_message().unwrap() {
                    got = Some(m.to_vec());
                }
            }
            assert_eq!(got.as_deref(), Some(&msg[..]));
        }
    }
}
