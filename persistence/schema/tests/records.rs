//! The records round-trip exactly (channel records of version 2 still read); truncated,
//! corrupted, mislabelled and future records are refused with an error naming them; random
//! bytes never panic a decoder; [`load`] rebuilds what batches wrote, in key order, joins each
//! channel with its static record, and refuses inconsistent tables.

use lnhub_forward::{Policy, PolicyHistory};
use lnhub_onion::failure::FailureMessage;
use lnhub_schema::{
    decode_channel, decode_channel_statics, decode_link, decode_opening, encode_channel,
    encode_channel_statics, encode_link, encode_opening, link_key, load, parse_link_key, Batch,
    ChannelHeader, LinkRecord, MemTables, OpeningHeader, Table, Upstream, SCHEMA_KEY,
    SCHEMA_VERSION,
};
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, PaymentPreimage, ShortChannelId};
use proptest::prelude::*;
use secp256k1::{PublicKey, Secp256k1, SecretKey};

fn peer(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[n; 32]).unwrap())
}

fn policy(n: u32) -> Policy {
    Policy {
        fee_base_msat: 1000 + n,
        fee_proportional_millionths: 100 + n,
        cltv_expiry_delta: 80,
        htlc_minimum_msat: Msat(1),
        htlc_maximum_msat: Msat(u64::MAX - n as u64),
    }
}

fn header(previous: bool) -> ChannelHeader {
    ChannelHeader {
        peer: peer(1),
        scid: ShortChannelId(0x0100_0000_0001_0001),
        remote_alias: previous.then_some(ShortChannelId(0x0100_0000_0002_0002)),
        policy: PolicyHistory {
            current: policy(1),
            previous: previous.then(|| (policy(0), 1_700_000_000)),
        },
    }
}

fn resolutions() -> Vec<Option<Upstream>> {
    vec![
        None,
        Some(Upstream::Fulfilled(PaymentPreimage([9; 32]))),
        Some(Upstream::FailedDownstream(vec![0xab; 292])),
        Some(Upstream::FailedMalformed {
            sha256_of_onion: [3; 32],
            failure_code: 0x8000 | 0x4000 | 5,
        }),
        Some(Upstream::FailedHere(
            FailureMessage::TemporaryChannelFailure {
                channel_update: vec![1, 2, 3],
            },
        )),
        Some(Upstream::FailedHere(FailureMessage::UnknownNextPeer)),
        Some(Upstream::FailedHereMalformed {
            sha256_of_onion: [4; 32],
            failure_code: 0x8000 | 0x4000 | 24,
        }),
    ]
}

fn link(resolution: Option<Upstream>) -> LinkRecord {
    LinkRecord {
        in_channel_id: ChannelId([7; 32]),
        in_htlc_id: 42,
        in_amount_msat: Msat(1_001_100),
        out_amount_msat: Msat(1_000_000),
        added_at: 1_700_000_000,
        resolution,
    }
}

fn channel_bytes(previous: bool, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel(&mut out, &header(previous), |o| o.extend_from_slice(state));
    out
}

fn statics_bytes(statics: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_statics(&mut out, |o| o.extend_from_slice(statics));
    out
}

/// A channel record of version 2, as builds before `channel_statics` wrote it: the envelope
/// of version 3 (the same body), then the whole channel's record.
fn version_2(previous: bool, state: &[u8]) -> Vec<u8> {
    let mut bytes = channel_bytes(previous, state);
    let sealed = 4 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    bytes[1] = 2;
    let check = ring::digest::digest(&ring::digest::SHA256, &bytes[..sealed]);
    bytes[sealed..sealed + 8].copy_from_slice(&check.as_ref()[..8]);
    bytes
}

#[test]
fn channel_records_round_trip() {
    for previous in [false, true] {
        let bytes = channel_bytes(previous, b"the channel's progress record");
        let r = decode_channel(&bytes, Some(b"its static record")).unwrap();
        assert_eq!(r.header, header(previous));
        assert_eq!(r.statics.as_deref(), Some(&b"its static record"[..]));
        assert_eq!(r.state, b"the channel's progress record");
        // Version 3 needs its static record.
        let err = decode_channel(&bytes, None).unwrap_err();
        assert!(err.contains("without its static record"), "{err}");
        // Version 2 (the whole channel after the header) still reads, without one.
        let old = version_2(previous, b"the whole channel");
        let r = decode_channel(&old, None).unwrap();
        assert_eq!(
            (r.header, r.statics, r.state),
            (header(previous), None, b"the whole channel".to_vec())
        );
        let err = decode_channel(&old, Some(b"s")).unwrap_err();
        assert!(err.contains("with a static record beside it"), "{err}");
    }
    let bytes = statics_bytes(b"the channel's static record");
    assert_eq!(
        decode_channel_statics(&bytes).unwrap(),
        b"the channel's static record"
    );
}

#[test]
fn opening_records_round_trip() {
    let h = OpeningHeader {
        peer: peer(2),
        alias: ShortChannelId(77),
        funding_accepted_at: 812_345,
        funding_tx: Some(vec![2, 0, 0, 0, 1, 2, 3]),
    };
    let mut out = Vec::new();
    encode_opening(&mut out, &h, |o| o.extend_from_slice(b"establishing"));
    let r = decode_opening(&out).unwrap();
    assert_eq!(
        (r.header, r.state.as_slice()),
        (h.clone(), &b"establishing"[..])
    );

    // Version 1 had no height: read as 0 (unknown).
    let mut v1 = vec![2, 1, 0, 41];
    v1.extend_from_slice(&h.peer.serialize());
    v1.extend_from_slice(&77u64.to_be_bytes());
    let check = ring::digest::digest(&ring::digest::SHA256, &v1);
    v1.extend_from_slice(&check.as_ref()[..8]);
    v1.extend_from_slice(b"establishing");
    let r = decode_opening(&v1).unwrap();
    assert_eq!(r.header.funding_accepted_at, 0);
    assert_eq!(r.header.funding_tx, None);
    assert_eq!((r.header.peer, r.header.alias), (h.peer, h.alias));
}

#[test]
fn link_records_round_trip_with_every_resolution() {
    for resolution in resolutions() {
        let l = link(resolution);
        let mut out = Vec::new();
        encode_link(&mut out, &l);
        assert_eq!(decode_link(&out).unwrap(), l);
    }
    let key = link_key(&ChannelId([5; 32]), 0x0102_0304_0506_0708);
    assert_eq!(
        parse_link_key(&key),
        Some((ChannelId([5; 32]), 0x0102_0304_0506_0708))
    );
    assert_eq!(parse_link_key(&key[..39]), None);
}

#[test]
fn every_truncation_and_every_flipped_byte_of_the_envelope_is_refused() {
    let mut links = Vec::new();
    for resolution in resolutions() {
        let mut out = Vec::new();
        encode_link(&mut out, &link(resolution));
        links.push(out);
    }
    for bytes in &links {
        for cut in 0..bytes.len() {
            assert!(decode_link(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(decode_link(&bad).is_err(), "flipped byte {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_link(&longer).is_err(), "a trailing byte");
    }
    // The channel envelope: everything up to its check is covered (the state after it is
    // checked by the channel's own decoder).
    let bytes = channel_bytes(true, b"state");
    let envelope = bytes.len() - b"state".len();
    for cut in 0..envelope {
        assert!(
            decode_channel(&bytes[..cut], Some(b"s")).is_err(),
            "cut at {cut}"
        );
    }
    assert!(
        decode_channel(&bytes[..envelope], Some(b"s")).is_err(),
        "no state after the header"
    );
    for i in 0..envelope {
        let mut bad = bytes.clone();
        bad[i] ^= 0x80;
        assert!(
            decode_channel(&bad, Some(b"s")).is_err(),
            "flipped byte {i}"
        );
    }
    // The static record's envelope likewise.
    let bytes = statics_bytes(b"static");
    let envelope = bytes.len() - b"static".len();
    for cut in 0..=envelope {
        assert!(
            decode_channel_statics(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    for i in 0..envelope {
        let mut bad = bytes.clone();
        bad[i] ^= 0x80;
        assert!(decode_channel_statics(&bad).is_err(), "flipped byte {i}");
    }
}

#[test]
fn wrong_kind_and_unknown_version_are_refused_by_name() {
    let mut l = Vec::new();
    encode_link(&mut l, &link(None));
    let err = decode_channel(&l, None).unwrap_err();
    assert!(err.contains("not a channel record"), "{err}");
    let mut c = channel_bytes(false, b"s");
    c[1] = 99;
    let err = decode_channel(&c, Some(b"s")).unwrap_err();
    assert!(err.contains("unknown channel record version 99"), "{err}");
    let err = decode_channel_statics(&channel_bytes(false, b"s")).unwrap_err();
    assert!(err.contains("not a channel static record"), "{err}");
    let err = decode_channel(&statics_bytes(b"s"), None).unwrap_err();
    assert!(err.contains("not a channel record"), "{err}");
    let mut st = statics_bytes(b"s");
    st[1] = 2;
    let err = decode_channel_statics(&st).unwrap_err();
    assert!(
        err.contains("unknown channel static record version 2"),
        "{err}"
    );
}

#[test]
fn load_rebuilds_what_batches_wrote_in_key_order() {
    let mut tables = MemTables::new();
    let mut batch = Batch::new();
    for n in [3u8, 1, 2] {
        batch.put_with(Table::Channels, &[n; 32], |out| {
            encode_channel(out, &header(n == 2), |o| o.extend_from_slice(&[n; 10]))
        });
        batch.put(Table::ChannelStatics, &[n; 32], &statics_bytes(&[n; 3]));
    }
    // A channel still in the layout before `channel_statics`.
    batch.put(Table::Channels, &[4; 32], &version_2(false, &[4; 10]));
    for htlc in [5u64, 1] {
        batch.put_with(Table::Links, &link_key(&ChannelId([1; 32]), htlc), |out| {
            encode_link(out, &link(None))
        });
    }
    batch.put_with(Table::Openings, &[9; 32], |out| {
        let h = OpeningHeader {
            peer: peer(3),
            alias: ShortChannelId(1),
            funding_accepted_at: 0,
            funding_tx: None,
        };
        encode_opening(out, &h, |o| o.push(1))
    });
    tables.apply(&batch);
    batch.clear();
    batch.delete(Table::Links, &link_key(&ChannelId([1; 32]), 5));
    tables.apply(&batch);

    let loaded = tables.load().unwrap();
    let ids: Vec<u8> = loaded.channels.iter().map(|(id, _)| id.0[0]).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert_eq!(loaded.channels[2].1.state, vec![3; 10]);
    assert_eq!(loaded.channels[2].1.statics, Some(vec![3; 3]), "joined");
    assert_eq!(loaded.channels[3].1.statics, None, "version 2");
    assert_eq!(loaded.links.len(), 1);
    assert_eq!(loaded.links[0].1, 1);
    assert_eq!(loaded.openings.len(), 1);
    assert_eq!(loaded.peer_of(&ChannelId([2; 32])), Some(peer(1)));
    assert_eq!(loaded.peer_of(&ChannelId([9; 32])), Some(peer(3)));
    assert_eq!(loaded.peer_of(&ChannelId([8; 32])), None);
}

#[test]
fn load_refuses_corrupt_records_naming_them() {
    let mut tables = MemTables::new();
    let mut batch = Batch::new();
    let key = link_key(&ChannelId([1; 32]), 7);
    batch.put_with(Table::Links, &key, |out| encode_link(out, &link(None)));
    tables.apply(&batch);
    tables.get_mut(Table::Links, &key).unwrap()[10] ^= 1;
    let err = tables.load().unwrap_err();
    assert_eq!(err.table, Table::Links);
    assert_eq!(
        err.key,
        format!("{}{}", "01".repeat(32), "0000000000000007")
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn load_refuses_other_schema_versions_unknown_meta_and_duplicates() {
    let refuse = |rows: Vec<(Table, Vec<u8>, Vec<u8>)>, what: &str| {
        let err = load(
            rows.iter()
                .map(|(t, k, v)| (*t, k.as_slice(), v.as_slice())),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(what), "{err}");
    };
    refuse(
        vec![(
            Table::Meta,
            SCHEMA_KEY.to_vec(),
            (SCHEMA_VERSION + 1).to_be_bytes().to_vec(),
        )],
        &format!("schema version {}", SCHEMA_VERSION + 1),
    );
    // The layout before this one (onions, not HTLC records) is refused too.
    refuse(
        vec![(
            Table::Meta,
            SCHEMA_KEY.to_vec(),
            (SCHEMA_VERSION - 1).to_be_bytes().to_vec(),
        )],
        &format!("schema version {}", SCHEMA_VERSION - 1),
    );
    refuse(
        vec![(Table::Meta, b"other".to_vec(), vec![])],
        "unknown meta key",
    );
    refuse(
        vec![(Table::Channels, vec![1; 31], channel_bytes(false, b"s"))],
        "not a 32-byte channel id",
    );
    let mut opening = Vec::new();
    let h = OpeningHeader {
        peer: peer(1),
        alias: ShortChannelId(1),
        funding_accepted_at: 0,
        funding_tx: None,
    };
    encode_opening(&mut opening, &h, |o| o.push(1));
    refuse(
        vec![
            (Table::Channels, vec![1; 32], channel_bytes(false, b"s")),
            (Table::ChannelStatics, vec![1; 32], statics_bytes(b"s")),
            (Table::Openings, vec![1; 32], opening),
        ],
        "both in establishment and open",
    );
}

/// A channel's static record is joined with its record; each half without the other, and a
/// static record that does not check, stop the load with an error naming the table and key.
#[test]
fn load_joins_static_records_and_refuses_either_half_alone() {
    let id = [5u8; 32];
    let key_hex = "05".repeat(32);
    let mut tables = MemTables::new();
    let mut batch = Batch::new();
    batch.put(Table::ChannelStatics, &id, &statics_bytes(b"static"));
    batch.put(Table::Channels, &id, &channel_bytes(false, b"progress"));
    tables.apply(&batch);
    let loaded = tables.load().unwrap();
    let [(loaded_id, record)] = &loaded.channels[..] else {
        panic!("one channel: {:?}", loaded.channels)
    };
    assert_eq!(loaded_id.0, id);
    assert_eq!(
        (record.statics.as_deref(), record.state.as_slice()),
        (Some(&b"static"[..]), &b"progress"[..])
    );

    let refused = |tables: &MemTables, table: Table, why: &str| {
        let err = tables.load().unwrap_err();
        assert_eq!((err.table, err.key.as_str()), (table, key_hex.as_str()));
        assert!(err.why.contains(why), "{err}");
    };
    let mut corrupt = tables.clone();
    corrupt.get_mut(Table::ChannelStatics, &id).unwrap()[5] ^= 1;
    refused(&corrupt, Table::ChannelStatics, "checksum mismatch");
    let mut future = tables.clone();
    future.get_mut(Table::ChannelStatics, &id).unwrap()[1] = 9;
    refused(
        &future,
        Table::ChannelStatics,
        "unknown channel static record version 9",
    );

    let mut no_statics = tables.clone();
    batch.clear();
    batch.delete(Table::ChannelStatics, &id);
    no_statics.apply(&batch);
    refused(&no_statics, Table::Channels, "without its static record");

    // A static record alone, even beside an opening of that id.
    let mut no_channel = tables.clone();
    batch.clear();
    batch.delete(Table::Channels, &id);
    batch.put_with(Table::Openings, &id, |out| {
        let h = OpeningHeader {
            peer: peer(1),
            alias: ShortChannelId(1),
            funding_accepted_at: 0,
            funding_tx: None,
        };
        encode_opening(out, &h, |o| o.push(1))
    });
    no_channel.apply(&batch);
    refused(
        &no_channel,
        Table::ChannelStatics,
        "a static record of a channel that is not stored",
    );

    // A version 2 record holds the whole channel: a static record beside it is inconsistent.
    let mut beside_v2 = tables.clone();
    batch.clear();
    batch.put(Table::Channels, &id, &version_2(false, b"whole"));
    beside_v2.apply(&batch);
    refused(
        &beside_v2,
        Table::Channels,
        "with a static record beside it",
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_channel(&bytes, None);
        let _ = decode_channel(&bytes, Some(&bytes));
        let _ = decode_channel_statics(&bytes);
        let _ = decode_opening(&bytes);
        let _ = decode_link(&bytes);
        let _ = load([(Table::Links, &bytes[..bytes.len().min(40)], &bytes[..])]);
    }

    #[test]
    fn random_links_round_trip(
        in_htlc_id in any::<u64>(),
        out in 0u64..1 << 40,
        fee in 0u64..1 << 20,
        reason in proptest::collection::vec(any::<u8>(), 0..600),
        tag in 0usize..8,
    ) {
        let resolution = match tag {
            0 => None,
            1 => Some(Upstream::FailedDownstream(reason)),
            n => resolutions()[n - 1].clone(),
        };
        let l = LinkRecord {
            in_channel_id: ChannelId([2; 32]),
            in_htlc_id,
            in_amount_msat: Msat(out + fee),
            out_amount_msat: Msat(out),
            added_at: in_htlc_id / 3,
            resolution,
        };
        let mut bytes = Vec::new();
        encode_link(&mut bytes, &l);
        prop_assert_eq!(decode_link(&bytes).unwrap(), l);
    }
}

#[test]
fn htlc_records_round_trip_and_orphans_are_refused() {
    use lnhub_schema::{decode_htlc, encode_htlc, htlc_key, parse_htlc_key, HtlcRecord};
    let mut onion = [0u8; 1366];
    onion[0] = 0;
    onion[1365] = 0xee;
    let record = HtlcRecord {
        amount_msat: Msat(1_234_567),
        payment_hash: PaymentHash([0x42; 32]),
        cltv_expiry: 800_144,
        over_dust_exposure: false,
        added_after_shutdown: true,
        onion: Box::new(onion),
    };
    let mut bytes = Vec::new();
    encode_htlc(
        &mut bytes,
        record.amount_msat,
        &record.payment_hash,
        record.cltv_expiry,
        (record.over_dust_exposure, record.added_after_shutdown),
        &record.onion,
    );
    assert_eq!(decode_htlc(&bytes).unwrap(), record);
    for cut in 0..bytes.len() {
        assert!(decode_htlc(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad = bytes.clone();
    bad[700] ^= 4;
    assert!(decode_htlc(&bad).unwrap_err().contains("checksum mismatch"));
    let key = htlc_key(&ChannelId([6; 32]), true, 9);
    assert_eq!(parse_htlc_key(&key), Some((ChannelId([6; 32]), true, 9)));
    let mut odd = key;
    odd[32] = 2;
    assert_eq!(parse_htlc_key(&odd), None);

    let mut tables = MemTables::new();
    let mut batch = Batch::new();
    batch.put_with(Table::Channels, &[6; 32], |out| {
        encode_channel(out, &header(false), |o| o.push(1))
    });
    batch.put(Table::ChannelStatics, &[6; 32], &statics_bytes(&[1]));
    batch.put(Table::Htlcs, &key, &bytes);
    batch.put(
        Table::Htlcs,
        &htlc_key(&ChannelId([6; 32]), false, 2),
        &bytes,
    );
    tables.apply(&batch);
    let loaded = tables.load().unwrap();
    let of: Vec<_> = loaded
        .htlcs_of(&ChannelId([6; 32]))
        .iter()
        .map(|(_, p, h, r)| (*p, *h, r.clone()))
        .collect();
    assert_eq!(
        of,
        vec![(false, 2, record.clone()), (true, 9, record.clone())]
    );
    assert!(loaded.htlcs_of(&ChannelId([5; 32])).is_empty());
    // An HTLC whose channel is not stored.
    batch.clear();
    batch.put(
        Table::Htlcs,
        &htlc_key(&ChannelId([7; 32]), false, 1),
        &bytes,
    );
    tables.apply(&batch);
    let err = tables.load().unwrap_err().to_string();
    assert!(
        err.contains("an HTLC of a channel that is not stored"),
        "{err}"
    );
}

#[test]
fn replay_records_round_trip_in_expiry_order() {
    use lnhub_schema::{decode_replay, encode_replay, parse_replay_key, replay_key};
    let mut value = Vec::new();
    encode_replay(&mut value, &ChannelId([3; 32]), 17);
    assert_eq!(decode_replay(&value).unwrap(), (ChannelId([3; 32]), 17));
    for cut in 0..value.len() {
        assert!(decode_replay(&value[..cut]).is_err(), "cut at {cut}");
    }
    let key = replay_key(800_123, u128::MAX - 5);
    assert_eq!(parse_replay_key(&key), Some((800_123, u128::MAX - 5)));
    assert_eq!(parse_replay_key(&key[1..]), None);
    // Keys sort by expiry first: the entries a block forgets are a prefix.
    assert!(replay_key(100, u128::MAX) < replay_key(101, 0));

    let mut tables = MemTables::new();
    let mut batch = Batch::new();
    batch.put(Table::Replays, &replay_key(200, 1), &value);
    batch.put(Table::Replays, &replay_key(100, 2), &value);
    tables.apply(&batch);
    let loaded = tables.load().unwrap();
    assert_eq!(
        loaded.replays,
        vec![
            (100, 2, ChannelId([3; 32]), 17),
            (200, 1, ChannelId([3; 32]), 17)
        ]
    );
    let mut other = Vec::new();
    encode_link(&mut other, &link(None));
    batch.clear();
    batch.put(Table::Replays, &replay_key(300, 3), &other);
    tables.apply(&batch);
    assert!(tables
        .load()
        .unwrap_err()
        .to_string()
        .contains("not a replay record"));
}

/// A retired channel's summary comes back as written, with and without a real
/// `short_channel_id`; any flipped byte or truncation is refused.
#[test]
fn closed_records_round_trip_and_are_checked() {
    for real_scid in [None, Some(ShortChannelId(0x0000_7800_0004_0001))] {
        let record = lnhub_schema::ClosedRecord {
            peer: peer(3),
            alias: ShortChannelId(0x0080_0001_0002_0003),
            real_scid,
            capacity_sat: 1_000_000,
            funding_txid: [4; 32],
            funding_vout: 1,
            closing_txid: [5; 32],
            closing_height: 130,
            local_msat: 123_456_789,
            retired_at: 1_700_000_000,
        };
        let mut out = Vec::new();
        lnhub_schema::encode_closed(&mut out, &record);
        assert_eq!(lnhub_schema::decode_closed(&out).unwrap(), record);
        for cut in 0..out.len() {
            assert!(
                lnhub_schema::decode_closed(&out[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            assert!(lnhub_schema::decode_closed(&bad).is_err(), "flipped {i}");
        }
    }
}

/// A wallet change set comes back byte for byte, also past 64 KiB; flipped bytes,
/// truncations, extra bytes and other kinds are refused; `load` returns the change sets in
/// number order.
#[test]
fn wallet_records_round_trip_and_load_in_order() {
    for size in [0usize, 10, 70_000] {
        let changeset: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        lnhub_schema::encode_wallet(&mut out, &changeset);
        assert_eq!(lnhub_schema::decode_wallet(&out).unwrap(), &changeset[..]);
        let mut longer = out.clone();
        longer.push(0);
        assert!(lnhub_schema::decode_wallet(&longer).is_err());
        for cut in [0, 1, 5, out.len() - 1] {
            assert!(
                lnhub_schema::decode_wallet(&out[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for i in (0..out.len()).step_by(997) {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            assert!(lnhub_schema::decode_wallet(&bad).is_err(), "flipped {i}");
        }
    }
    let mut tables = MemTables::new();
    let mut batch = Batch::new();
    for seq in [3u64, 1, 2] {
        batch.put_with(Table::Wallet, &lnhub_schema::wallet_key(seq), |out| {
            lnhub_schema::encode_wallet(out, format!("set {seq}").as_bytes())
        });
    }
    tables.apply(&batch);
    let loaded = tables.load().unwrap();
    let sets: Vec<(u64, &[u8])> = loaded
        .wallet
        .iter()
        .map(|(s, c)| (*s, c.as_slice()))
        .collect();
    assert_eq!(
        sets,
        vec![(1, &b"set 1"[..]), (2, &b"set 2"[..]), (3, &b"set 3"[..])]
    );
}
