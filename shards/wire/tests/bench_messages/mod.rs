//! The wire bytes of the hot-path messages `benches/codec.rs` measures (shared with the
//! smoke test `tests/bench_smoke.rs`).

use secp256k1::{Message as Digest, PublicKey, Secp256k1, SecretKey};

/// (name, wire bytes with the 2-byte type) of each hot-path message.
pub fn hot_path_messages() -> Vec<(&'static str, Vec<u8>)> {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let sig = secp
        .sign_ecdsa(&Digest::from_digest([7; 32]), &key)
        .serialize_compact();
    let point = PublicKey::from_secret_key(&secp, &key).serialize();
    let channel_id = [0x11u8; 32];

    let mut add = Vec::new();
    add.extend_from_slice(&128u16.to_be_bytes());
    add.extend_from_slice(&channel_id);
    add.extend_from_slice(&7u64.to_be_bytes());
    add.extend_from_slice(&10_001_000u64.to_be_bytes());
    add.extend_from_slice(&[0x22; 32]);
    add.extend_from_slice(&800_080u32.to_be_bytes());
    add.extend_from_slice(&[0x5a; 1366]);

    let mut commit = Vec::new();
    commit.extend_from_slice(&132u16.to_be_bytes());
    commit.extend_from_slice(&channel_id);
    commit.extend_from_slice(&sig);
    commit.extend_from_slice(&30u16.to_be_bytes());
    for _ in 0..30 {
        commit.extend_from_slice(&sig);
    }

    let mut revoke = Vec::new();
    revoke.extend_from_slice(&133u16.to_be_bytes());
    revoke.extend_from_slice(&channel_id);
    revoke.extend_from_slice(&[0x33; 32]);
    revoke.extend_from_slice(&point);

    let mut fulfill = Vec::new();
    fulfill.extend_from_slice(&130u16.to_be_bytes());
    fulfill.extend_from_slice(&channel_id);
    fulfill.extend_from_slice(&7u64.to_be_bytes());
    fulfill.extend_from_slice(&[0x44; 32]);

    vec![
        ("update_add_htlc", add),
        ("commitment_signed_30", commit),
        ("revoke_and_ack", revoke),
        ("update_fulfill_htlc", fulfill),
    ]
}
