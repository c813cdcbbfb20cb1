//! BOLT 4 spec vectors, table-driven (tables in `vectors/mod.rs`).

mod vectors;

use lnhub_onion::blinding::{self, create_blinded_path, EncryptedData};
use lnhub_onion::build::{build_onion, route_shared_secrets, RouteHop};
use lnhub_onion::crypto::{self, KEY_AMMAG, KEY_UM};
use lnhub_onion::error_packet::{create_error_packet, decode_error_packet, obfuscate_error_packet};
use lnhub_onion::failure::{Failure, FailureMessage};
use lnhub_onion::packet::{OnionPacket, ONION_PACKET_LEN};
use lnhub_onion::peel::{peel, HopAction, PeeledHop};
use lnhub_wire::bigsize;
use lnhub_wire::types::{Msat, ShortChannelId};
use secp256k1::{PublicKey, Secp256k1, SecretKey};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}
fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}
fn sk(s: &str) -> SecretKey {
    SecretKey::from_slice(&h(s)).unwrap()
}
fn pk(s: &str) -> PublicKey {
    PublicKey::from_slice(&h(s)).unwrap()
}
fn packet(s: &str) -> OnionPacket {
    h(s).try_into().unwrap()
}
/// Strips the BigSize length prefix of a vector payload.
fn strip_prefix(p: &[u8]) -> Vec<u8> {
    let mut c = p;
    let n = bigsize::read(&mut c).unwrap() as usize;
    assert_eq!(c.len(), n, "vector payload length prefix");
    c.to_vec()
}

#[test]
fn onion_test_build_and_every_hop_decode() {
    use vectors::onion::*;
    let secp = Secp256k1::new();
    let keys: Vec<PublicKey> = HOPS.iter().map(|(k, _)| pk(k)).collect();
    let payloads: Vec<Vec<u8>> = HOPS.iter().map(|(_, p)| strip_prefix(&h(p))).collect();
    let route: Vec<RouteHop<'_>> = keys
        .iter()
        .zip(&payloads)
        .map(|(k, p)| RouteHop {
            pubkey: k,
            payload: p,
        })
        .collect();
    let mut onion = [0u8; ONION_PACKET_LEN];
    build_onion(
        &secp,
        &sk(SESSION_KEY),
        &route,
        &h(ASSOCIATED_DATA),
        &mut onion,
    )
    .unwrap();
    assert_eq!(hex::encode(onion), ONION);

    let ad = h32(ASSOCIATED_DATA);
    let mut current = packet(ONION);
    let mut out = PeeledHop::new();
    for (i, node) in DECODE.iter().enumerate() {
        peel(&secp, &sk(node), &current, &ad, None, &mut out).unwrap();
        assert_eq!(out.payload_bytes(), &payloads[i][..], "hop {i} payload");
        assert_eq!(
            out.is_final(),
            i == DECODE.len() - 1,
            "hop {i} final marker"
        );
        if let Some(next) = out.next_packet() {
            current = *next;
        }
    }
}

#[test]
fn onion_error_test_obfuscation_and_decode() {
    use vectors::error::*;
    let secp = Secp256k1::new();
    let keys: Vec<PublicKey> = HOPS.iter().map(|(k, _, _)| pk(k)).collect();
    let route: Vec<RouteHop<'_>> = keys
        .iter()
        .map(|k| RouteHop {
            pubkey: k,
            payload: &[0, 0],
        })
        .collect();
    let mut secrets = vec![[0u8; 32]; route.len()];
    route_shared_secrets(&secp, &sk(SESSION_KEY), &route, &mut secrets).unwrap();
    for (i, (_, ss, ammag)) in HOPS.iter().enumerate() {
        assert_eq!(hex::encode(secrets[i]), *ss, "hop {i} shared secret");
        assert_eq!(
            hex::encode(crypto::derive_key(KEY_AMMAG, &secrets[i])),
            *ammag,
            "hop {i} ammag"
        );
    }
    assert_eq!(hex::encode(crypto::derive_key(KEY_UM, &secrets[4])), UM_KEY);

    let failure = Failure::decode(&h(FAILURE_MESSAGE)).unwrap();
    assert_eq!(failure.message, FailureMessage::TemporaryNodeFailure);
    let mut pkt = Vec::new();
    create_error_packet(&secrets[4], &failure, &mut pkt).unwrap();
    // Undo the erring node's layer to compare with the unobfuscated payload.
    let mut plain = pkt.clone();
    obfuscate_error_packet(&secrets[4], &mut plain);
    assert_eq!(hex::encode(&plain[32..]), PAYLOAD);
    for i in (0..4).rev() {
        obfuscate_error_packet(&secrets[i], &mut pkt);
    }
    assert_eq!(hex::encode(&pkt), ERROR_PACKET);

    let decoded = decode_error_packet(&secrets, &h(ERROR_PACKET)).unwrap();
    assert_eq!(decoded.hop, 4);
    assert_eq!(
        decoded.failure.unwrap().message,
        FailureMessage::TemporaryNodeFailure
    );
}

#[test]
fn route_blinding_test_generate_and_unblind() {
    use vectors::route_blinding::*;
    let secp = Secp256k1::new();
    // Two concatenated routes: Bob -> Carol (session 0202..), Dave -> Eve (session 0101..).
    let mut hops = Vec::new();
    for part in [&GENERATE[0..2], &GENERATE[2..4]] {
        let tlvs: Vec<(PublicKey, Vec<u8>)> = part.iter().map(|g| (pk(g.1), h(g.2))).collect();
        let input: Vec<(PublicKey, &[u8])> = tlvs.iter().map(|(k, t)| (*k, &t[..])).collect();
        let path = create_blinded_path(&secp, &sk(part[0].0), &input).unwrap();
        assert_eq!(hex::encode(path.first_path_key.serialize()), part[0].4);
        hops.extend(path.hops);
    }
    for (i, g) in GENERATE.iter().enumerate() {
        assert_eq!(
            hex::encode(hops[i].blinded_node_id.serialize()),
            g.8,
            "hop {i} blinded id"
        );
        assert_eq!(
            hex::encode(&hops[i].encrypted_recipient_data),
            g.7,
            "hop {i} encrypted data"
        );
        assert_eq!(g.7, ROUTE_ENCRYPTED_DATA[i]);
        let ss = crypto::shared_secret(&pk(g.1), &sk(g.3));
        assert_eq!(hex::encode(ss), g.5, "hop {i} shared secret");
        assert_eq!(
            hex::encode(crypto::derive_key(crypto::KEY_RHO, &ss)),
            g.6,
            "hop {i} rho"
        );
    }
    assert_eq!(FIRST_NODE_ID, GENERATE[0].1);
    assert_eq!(FIRST_PATH_KEY, GENERATE[0].4);

    for (i, u) in UNBLIND.iter().enumerate() {
        let node = sk(u.0);
        let path_key = pk(u.1);
        let ss = crypto::shared_secret(&path_key, &node);
        let tweak = crypto::blinded_node_id_tweak(&ss).unwrap();
        assert_eq!(
            hex::encode(node.mul_tweak(&tweak).unwrap().secret_bytes()),
            u.2,
            "hop {i} blinded privkey"
        );
        let mut buf = h(ROUTE_ENCRYPTED_DATA[i]);
        let n = blinding::decrypt_recipient_data(&ss, &mut buf).unwrap();
        assert_eq!(hex::encode(&buf[..n]), u.3, "hop {i} decrypted data");
        let data = EncryptedData::parse(&buf[..n]).unwrap();
        let next = blinding::next_path_key(&secp, &path_key, &ss).unwrap();
        assert_eq!(hex::encode(next.serialize()), u.4, "hop {i} next path key");
        let over = data
            .next_path_key_override
            .map(|k| hex::encode(k.serialize()));
        assert_eq!(over.as_deref().unwrap_or(""), u.5, "hop {i} override");
    }
}

#[test]
fn blinded_payment_onion_test_build_and_forward() {
    use vectors::blinded_payment::*;
    let secp = Secp256k1::new();
    let keys: Vec<PublicKey> = FULL_ROUTE.iter().map(|(k, _)| pk(k)).collect();
    let payloads: Vec<Vec<u8>> = FULL_ROUTE
        .iter()
        .map(|(_, p)| strip_prefix(&h(p)))
        .collect();
    let route: Vec<RouteHop<'_>> = keys
        .iter()
        .zip(&payloads)
        .map(|(k, p)| RouteHop {
            pubkey: k,
            payload: p,
        })
        .collect();
    let mut onion = [0u8; ONION_PACKET_LEN];
    build_onion(
        &secp,
        &sk(SESSION_KEY),
        &route,
        &h(ASSOCIATED_DATA),
        &mut onion,
    )
    .unwrap();
    assert_eq!(hex::encode(onion), ONION);
    assert_eq!(DECRYPT[0].0, ONION);

    let ad = h32(ASSOCIATED_DATA);
    let mut out = PeeledHop::new();
    let mut path_key: Option<PublicKey> = None;
    let (mut amount, mut cltv) = (Msat(BOB_INCOMING.0), BOB_INCOMING.1);
    for (i, (onion_hex, node, next_path_key)) in DECRYPT.iter().enumerate() {
        let incoming = packet(onion_hex);
        peel(
            &secp,
            &sk(node),
            &incoming,
            &ad,
            path_key.as_ref(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.payload_bytes(), &payloads[i][..], "hop {i} payload");
        if let Some(next) = out.next_packet() {
            assert_eq!(hex::encode(next), DECRYPT[i + 1].0, "hop {i} next onion");
        }
        if i == 0 {
            // Alice: unblinded hop; Bob is reached normally.
            assert!(out.blinded().is_none());
            continue;
        }
        let b = *out.blinded().expect("blinded hop");
        assert_eq!(b.introduction_point, i == 1, "hop {i} introduction point");
        if i == 1 {
            assert_eq!(
                hex::encode(out.payload().current_path_key.unwrap().serialize()),
                FIRST_PATH_KEY
            );
        }
        match out.instructions(amount, cltv).unwrap() {
            HopAction::Forward(f) => {
                let (scid, delta, prop, base) = RELAYS[i - 1];
                assert_eq!(
                    f.short_channel_id,
                    Some(scid.parse::<ShortChannelId>().unwrap())
                );
                let relay = b.data.payment_relay.unwrap();
                assert_eq!(
                    (
                        relay.cltv_expiry_delta,
                        relay.fee_proportional_millionths,
                        relay.fee_base_msat
                    ),
                    (delta, prop, base)
                );
                assert_eq!(
                    hex::encode(f.next_path_key.unwrap().serialize()),
                    *next_path_key
                );
                amount = f.amt_to_forward;
                cltv = f.outgoing_cltv_value;
                path_key = f.next_path_key;
            }
            HopAction::Receive(r) => {
                assert_eq!(i, 4);
                assert_eq!(r.amt_to_forward, Msat(FINAL_AMOUNT_MSAT));
                assert_eq!(r.outgoing_cltv_value, FINAL_CLTV);
                assert_eq!((amount, cltv), (Msat(FINAL_AMOUNT_MSAT), FINAL_CLTV));
                assert!(out.path_id().is_some());
            }
        }
    }
}
