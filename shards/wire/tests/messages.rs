//! Message-level tests: BOLT 1 Appendix C (message extension) vectors,
//! proptest round trips of every message type, and decode robustness on
//! arbitrary bytes.

use lnhub_wire::features::Features;
use lnhub_wire::msgs::*;
use lnhub_wire::tlv::OwnedTlv;
use lnhub_wire::types::*;
use lnhub_wire::{fuzz_decode, is_channel_message, DecodeError, Message};
use proptest::prelude::*;
use secp256k1::ecdsa::Signature;
use secp256k1::{PublicKey, Secp256k1, SecretKey};

/// BOLT 1 Appendix C: (whole `init` message hex, valid, comment).
const MESSAGE_EXTENSION: &[(&str, bool, &str)] = &[
    ("001000000000", true, "no extension provided"),
    ("001000000000c9012acb0104", true, "the extension contains two unknown _odd_ TLV records (with types `0xc9` and `0xcb`)"),
    ("00100000000001", false, "the extension is present but truncated"),
    ("001000000000ca012a", false, "the extension contains unknown _even_ TLV records (assuming that TLV type `0xca` is unknown)"),
    ("001000000000c90101c90102", false, "the extension TLV stream is invalid (duplicate TLV record type `0xc9`)"),
];
#[test]
fn bolt01_message_extension() {
    for &(hex, valid, comment) in MESSAGE_EXTENSION {
        let bytes = hex::decode(hex).unwrap();
        let got = Message::decode(&bytes);
        assert_eq!(got.is_ok(), valid, "{comment}: {got:?}");
        if let Ok(msg) = got {
            let mut out = Vec::new();
            msg.encode(&mut out);
            assert_eq!(out, bytes, "{comment}: unknown odd records are re-emitted");
        }
    }
}

#[test]
fn unknown_types_odd_ignored_even_rejected() {
    assert_eq!(
        Message::decode(&[0x80, 0x01, 0xff]),
        Ok(Message::Unknown { msg_type: 0x8001 })
    );
    assert_eq!(
        Message::decode(&[0x80, 0x02]),
        Err(DecodeError::UnknownEvenType(0x8002))
    );
    assert_eq!(Message::decode(&[0x00]), Err(DecodeError::ShortRead));
}

#[test]
fn init_merges_global_features() {
    // globalfeatures = bit 9, features = bit 23, networks = [regtest].
    let mut bytes = hex::decode("0010000202000003800000").unwrap();
    bytes.extend_from_slice(&[0x01, 0x20]);
    bytes.extend_from_slice(&ChainHash::REGTEST.0);
    let Message::Init(init) = Message::decode(&bytes).unwrap() else {
        panic!("init")
    };
    assert_eq!(init.merged_features(), Features::from_bits(&[9, 23]));
    assert_eq!(init.networks, Some(vec![ChainHash::REGTEST]));
    let mut out = Vec::new();
    Message::Init(init).encode(&mut out);
    assert_eq!(out, bytes);
}

#[test]
fn length_beyond_buffer_is_short_read() {
    // ping with byteslen 0xffff but two bytes present.
    assert_eq!(
        Message::decode(&[0, 18, 0, 1, 0xff, 0xff, 0, 0]),
        Err(DecodeError::ShortRead)
    );
    // commitment_signed claiming 65535 HTLC signatures.
    let mut b = vec![0, 132];
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(&[1; 64]);
    b.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(Message::decode(&b), Err(DecodeError::ShortRead));
}

#[test]
fn known_tlv_wrong_length_and_unknown_even_rejected() {
    let mut b = vec![0, 36];
    b.extend_from_slice(&[7; 32]);
    b.extend_from_slice(&point(1).serialize());
    let ok = b.clone();
    assert!(Message::decode(&ok).is_ok());
    let mut short = b.clone();
    short.extend_from_slice(&[1, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        Message::decode(&short),
        Err(DecodeError::TlvBadLength { typ: 1 })
    );
    let mut even = b;
    even.extend_from_slice(&[2, 0]);
    assert_eq!(Message::decode(&even), Err(DecodeError::UnknownEvenTlv(2)));
}

#[test]
fn channel_routing_helpers() {
    assert!(is_channel_message(2) && is_channel_message(32) && is_channel_message(136));
    assert!(!is_channel_message(16) && !is_channel_message(256) && !is_channel_message(18));
    let m = Message::UpdateFee(UpdateFee {
        channel_id: ChannelId([5; 32]),
        feerate_per_kw: 253,
        unknown_tlvs: vec![],
    });
    assert_eq!(m.channel_id(), Some(ChannelId([5; 32])));
    assert_eq!(
        Message::Ping(Ping {
            num_pong_bytes: 1,
            ignored: vec![],
            unknown_tlvs: vec![]
        })
        .channel_id(),
        None
    );
}

/// A deterministic generator of field values, seeded by proptest.
struct G(u64);

impl G {
    fn next(&mut self) -> u64 {
        // xorshift64*: cheap, deterministic, good enough for test data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn g<T: Gen>(&mut self) -> T {
        T::gen(self)
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn opt<T: Gen>(&mut self) -> Option<T> {
        self.next().is_multiple_of(2).then(|| T::gen(self))
    }
    fn unknown_tlvs(&mut self) -> Vec<OwnedTlv> {
        // Odd types above every known TLV type, strictly ascending.
        let mut typ = 1000 + 2 * (self.next() % 100) + 1;
        (0..self.next() % 3)
            .map(|_| {
                typ += 2 * (self.next() % 70_000) + 2;
                OwnedTlv {
                    typ,
                    value: self.bytes(40),
                }
            })
            .collect()
    }
}

fn point(i: u8) -> PublicKey {
    let mut sk = [0u8; 32];
    sk[31] = i;
    sk[0] = 1;
    PublicKey::from_secret_key(
        &Secp256k1::signing_only(),
        &SecretKey::from_slice(&sk).unwrap(),
    )
}

trait Gen {
    fn gen(g: &mut G) -> Self;
}

macro_rules! gen_via {
    ($($t:ty => |$g:ident| $e:expr;)*) => {$(
        impl Gen for $t {
            fn gen($g: &mut G) -> Self {
                $e
            }
        }
    )*};
}

gen_via! {
    u8 => |g| g.next() as u8;
    u16 => |g| g.next() as u16;
    u32 => |g| g.next() as u32;
    u64 => |g| g.next();
    Msat => |g| Msat(g.next());
    Sat => |g| Sat(g.next());
    ShortChannelId => |g| ShortChannelId(g.next());
    ChannelId => |g| ChannelId(g.g());
    ChainHash => |g| ChainHash(g.g());
    PaymentHash => |g| PaymentHash(g.g());
    PaymentPreimage => |g| PaymentPreimage(g.g());
    Txid => |g| Txid(g.g());
    Vec<u8> => |g| g.bytes(80);
    Features => |g| Features::from_wire_bytes(&g.bytes(10));
    PublicKey => |g| POINTS.with(|p| p[(g.next() % 8) as usize]);
    Signature => |g| {
        let mut b: [u8; 64] = g.g();
        b[0] &= 0x7f; // r below the curve order
        b[32] &= 0x7f; // s below the curve order
        Signature::from_compact(&b).unwrap()
    };
    Vec<Signature> => |g| (0..g.next() % 4).map(|_| g.g()).collect();
    Vec<ChainHash> => |g| (0..g.next() % 3).map(|_| g.g()).collect();
    AttributionData => |g| AttributionData(g.g());
    FeeRange => |g| FeeRange { min_fee_satoshis: g.g(), max_fee_satoshis: g.g() };
    NextFunding => |g| NextFunding { next_funding_txid: g.g(), retransmit_flags: g.g() };
    MyCurrentFundingLocked => |g| MyCurrentFundingLocked {
        my_current_funding_locked_txid: g.g(),
        retransmit_flags: g.g(),
    };
    QueryFlags => |g| QueryFlags { encoding_type: g.g(), encoded_query_flags: g.g() };
    EncodedTimestamps => |g| EncodedTimestamps { encoding_type: g.g(), encoded_timestamps: g.g() };
    QueryOption => |g| QueryOption { query_option_flags: g.g() };
    ChannelUpdateChecksums => |g| ChannelUpdateChecksums {
        checksum_node_id_1: g.g(),
        checksum_node_id_2: g.g(),
    };
    Vec<ChannelUpdateChecksums> => |g| (0..g.next() % 3).map(|_| g.g()).collect();
}

impl<const N: usize> Gen for [u8; N] {
    fn gen(g: &mut G) -> Self {
        core::array::from_fn(|_| g.next() as u8)
    }
}

thread_local! {
    static POINTS: [PublicKey; 8] = core::array::from_fn(|i| point(i as u8 + 1));
}

/// Builds a message struct: `msg!(g, Type { fixed fields } tlvs { tlv fields })`.
macro_rules! msg {
    ($g:ident, $t:ident { $($f:ident),* } tlvs { $($tf:ident),* }) => {
        Message::$t($t { $($f: $g.g(),)* $($tf: $g.opt(),)* unknown_tlvs: $g.unknown_tlvs() })
    };
    ($g:ident, $t:ident { $($f:ident),* } excess_data) => {
        Message::$t($t { $($f: $g.g(),)* excess_data: $g.bytes(30) })
    };
}

/// Number of message kinds `build` generates.
const KINDS: u8 = 32;

fn build(kind: u8, seed: u64) -> Message {
    let g = &mut G(seed | 1);
    match kind {
        0 => msg!(g, Init { global_features, features } tlvs { networks, remote_addr }),
        1 => Message::Error(ErrorMessage {
            channel_id: g.g(),
            data: g.g(),
            unknown_tlvs: g.unknown_tlvs(),
        }),
        2 => msg!(g, Warning { channel_id, data } tlvs {}),
        3 => msg!(g, Ping { num_pong_bytes, ignored } tlvs {}),
        4 => msg!(g, Pong { ignored } tlvs {}),
        5 => msg!(g, OpenChannel {
            chain_hash, temporary_channel_id, funding_satoshis, push_msat, dust_limit_satoshis,
            max_htlc_value_in_flight_msat, channel_reserve_satoshis, htlc_minimum_msat,
            feerate_per_kw, to_self_delay, max_accepted_htlcs, funding_pubkey,
            revocation_basepoint, payment_basepoint, delayed_payment_basepoint, htlc_basepoint,
            first_per_commitment_point, channel_flags
        } tlvs { upfront_shutdown_script, channel_type }),
        6 => msg!(g, AcceptChannel {
            temporary_channel_id, dust_limit_satoshis, max_htlc_value_in_flight_msat,
            channel_reserve_satoshis, htlc_minimum_msat, minimum_depth, to_self_delay,
            max_accepted_htlcs, funding_pubkey, revocation_basepoint, payment_basepoint,
            delayed_payment_basepoint, htlc_basepoint, first_per_commitment_point
        } tlvs { upfront_shutdown_script, channel_type }),
        7 => msg!(g, FundingCreated {
            temporary_channel_id, funding_txid, funding_output_index, signature
        } tlvs {}),
        8 => msg!(g, FundingSigned { channel_id, signature } tlvs {}),
        9 => {
            msg!(g, ChannelReady { channel_id, second_per_commitment_point } tlvs { short_channel_id })
        }
        10 => msg!(g, Stfu { channel_id, initiator } tlvs {}),
        11 => msg!(g, Shutdown { channel_id, scriptpubkey } tlvs {}),
        12 => msg!(g, ClosingSigned { channel_id, fee_satoshis, signature } tlvs { fee_range }),
        13 => msg!(g, ClosingComplete {
            channel_id, closer_scriptpubkey, closee_scriptpubkey, fee_satoshis, locktime
        } tlvs { closer_output_only, closee_output_only, closer_and_closee_outputs }),
        14 => msg!(g, ClosingSig {
            channel_id, closer_scriptpubkey, closee_scriptpubkey, fee_satoshis, locktime
        } tlvs { closer_output_only, closee_output_only, closer_and_closee_outputs }),
        15 => msg!(g, UpdateAddHtlc {
            channel_id, id, amount_msat, payment_hash, cltv_expiry, onion_routing_packet
        } tlvs { blinded_path }),
        16 => {
            msg!(g, UpdateFulfillHtlc { channel_id, id, payment_preimage } tlvs { attribution_data })
        }
        17 => msg!(g, UpdateFailHtlc { channel_id, id, reason } tlvs { attribution_data }),
        18 => msg!(g, UpdateFailMalformedHtlc {
            channel_id, id, sha256_of_onion, failure_code
        } tlvs {}),
        19 => {
            msg!(g, CommitmentSigned { channel_id, signature, htlc_signature } tlvs { funding_txid })
        }
        20 => msg!(g, RevokeAndAck {
            channel_id, per_commitment_secret, next_per_commitment_point
        } tlvs {}),
        21 => msg!(g, UpdateFee { channel_id, feerate_per_kw } tlvs {}),
        22 => msg!(g, ChannelReestablish {
            channel_id, next_commitment_number, next_revocation_number,
            your_last_per_commitment_secret, my_current_per_commitment_point
        } tlvs { next_funding, my_current_funding_locked }),
        23 => msg!(g, ChannelAnnouncement {
            node_signature_1, node_signature_2, bitcoin_signature_1, bitcoin_signature_2,
            features, chain_hash, short_channel_id, node_id_1, node_id_2, bitcoin_key_1,
            bitcoin_key_2
        } excess_data),
        24 => msg!(g, NodeAnnouncement {
            signature, features, timestamp, node_id, rgb_color, alias, addresses
        } excess_data),
        25 => msg!(g, ChannelUpdate {
            signature, chain_hash, short_channel_id, timestamp, message_flags, channel_flags,
            cltv_expiry_delta, htlc_minimum_msat, fee_base_msat, fee_proportional_millionths,
            htlc_maximum_msat
        } excess_data),
        26 => msg!(g, AnnouncementSignatures {
            channel_id, short_channel_id, node_signature, bitcoin_signature
        } tlvs {}),
        27 => msg!(g, QueryShortChannelIds { chain_hash, encoded_short_ids } tlvs { query_flags }),
        28 => msg!(g, ReplyShortChannelIdsEnd { chain_hash, full_information } tlvs {}),
        29 => msg!(g, QueryChannelRange {
            chain_hash, first_blocknum, number_of_blocks
        } tlvs { query_option }),
        30 => msg!(g, ReplyChannelRange {
            chain_hash, first_blocknum, number_of_blocks, sync_complete, encoded_short_ids
        } tlvs { timestamps_tlv, checksums_tlv }),
        31 => {
            msg!(g, GossipTimestampFilter { chain_hash, first_timestamp, timestamp_range } tlvs {})
        }
        _ => unreachable!("kind < KINDS"),
    }
}

#[test]
fn every_kind_is_a_distinct_type() {
    let mut types: Vec<u16> = (0..KINDS).map(|k| build(k, 7).msg_type()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), usize::from(KINDS));
}

proptest! {
    #[test]
    fn generated_messages_round_trip(kind in 0..KINDS, seed in any::<u64>()) {
        let msg = build(kind, seed);
        let mut out = vec![0xee]; // encode appends
        msg.encode(&mut out);
        prop_assert_eq!(out[0], 0xee);
        let decoded = Message::decode(&out[1..]).unwrap();
        prop_assert_eq!(&decoded, &msg);
        let mut again = Vec::new();
        decoded.encode(&mut again);
        prop_assert_eq!(&again[..], &out[1..]);
        fuzz_decode(&again);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz_decode(&bytes);
    }

    #[test]
    fn random_bodies_of_known_types_never_panic(
        kind in 0..KINDS,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = build(kind, 3).msg_type().to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        fuzz_decode(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        kind in 0..KINDS,
        seed in any::<u64>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut out = Vec::new();
        build(kind, seed).encode(&mut out);
        for (pos, val) in flips {
            let i = pos % out.len();
            out[i] ^= val;
        }
        out.truncate(cut % (out.len() + 1));
        fuzz_decode(&out);
    }
}

/// `attribution_data`'s accessors read each slot big-endian and answer `None` past the last
/// (20 hold times, 210 truncated HMACs) instead of panicking on the caller's index.
#[test]
fn attribution_data_slots_are_bounded() {
    use lnhub_wire::msgs::{AttributionData, ATTRIBUTION_DATA_LEN};
    let mut bytes = [0u8; ATTRIBUTION_DATA_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    let a = AttributionData(bytes);
    assert_eq!(a.htlc_hold_time(0), Some(0x0001_0203));
    assert_eq!(
        a.htlc_hold_time(19),
        Some(u32::from_be_bytes([76, 77, 78, 79]))
    );
    assert_eq!(a.htlc_hold_time(20), None);
    assert_eq!(a.truncated_hmac(0), Some([80, 81, 82, 83]));
    let last = ATTRIBUTION_DATA_LEN - 4;
    assert_eq!(
        a.truncated_hmac(209),
        Some([
            last as u8,
            (last + 1) as u8,
            (last + 2) as u8,
            (last + 3) as u8
        ])
    );
    assert_eq!(a.truncated_hmac(210), None);
    assert_eq!(a.truncated_hmac(usize::MAX), None);
}
