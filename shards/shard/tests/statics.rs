//! A channel's static record (`channel_statics`: id, funding, keys, limits, secrets) is written
//! once, in the batch that first writes the channel, which also deletes its opening record; the
//! commitment rounds after it write only the channel's progress record, smaller than the whole
//! lean record by the static part. A channel restored from a record of the layout before static
//! records gets its static record with its next write, and restores from the new layout.

mod support;

use bitcoin::hashes::sha256;
use lnhub_channel::Channel;
use lnhub_forward::PolicyHistory;
use lnhub_schema::{
    decode_channel, decode_channel_statics, decode_htlc, encode_channel, parse_htlc_key, Batch,
    Table,
};
use lnhub_shard::{Store, StoreError, Submitted};
use lnhub_tx::Side;
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::PaymentHash;
use support::testing::{self, Agreement};
use support::*;

/// One batch's writes: table, key, value (`None`: a deletion).
type Writes = Vec<(Table, Vec<u8>, Option<Vec<u8>>)>;

/// A synchronous store that keeps a copy of every batch it makes durable.
#[derive(Default)]
struct Recording {
    store: MemoryStore,
    batches: Vec<Writes>,
}

impl Store for Recording {
    fn submit(&mut self, batch: Batch) -> Result<Submitted, StoreError> {
        let writes = batch
            .iter()
            .map(|(t, k, v)| (t, k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        self.batches.push(writes);
        self.store.submit(batch)
    }
}

/// The writes of `batch` to `table` under `key`.
fn writes<'a>(batch: &'a Writes, table: Table, key: &[u8]) -> Vec<&'a Option<Vec<u8>>> {
    batch
        .iter()
        .filter(|(t, k, _)| *t == table && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

/// The peer adds an HTLC (`n` names its hash and its made-up onion) and signs.
fn peer_adds(secp: &Secp256k1<All>, peer: &mut lnhub_channel::Channel, n: u8) -> Vec<Message> {
    let hash = PaymentHash(sha256::Hash::hash(&[n; 32]).to_byte_array());
    let mut onion = [0u8; ONION_PACKET_LEN];
    onion[..4].copy_from_slice(&[n, 1, 2, 3]);
    peer.send_add_htlc(Msat(2_000_000), hash, 800_000, &onion)
        .expect("room for the HTLC");
    assert!(testing::sign(secp, peer).expect("the peer signs"));
    peer_out(peer).0
}

/// A hub shard owning the funder's side of a channel in normal operation that was never
/// written (as establishment hands it over), the peer's side, and the peer's node id.
fn hub_with_channel(secp: &Secp256k1<All>) -> (Shard, lnhub_channel::Channel, PublicKey) {
    let peer = PublicKey::from_secret_key(secp, &SecretKey::from_slice(&[0x5a; 32]).unwrap());
    let (mut shard, _) = hub(secp, &[], false);
    let (ours, theirs) = testing::pair(secp, 77, &Agreement::default_for(ChannelType::Anchors));
    let scid = ShortChannelId::new(600, 1, 0).expect("a valid scid");
    shard.insert_channel(ours, peer, scid, PolicyHistory::new(POLICY), true, None);
    (shard, theirs, peer)
}

#[test]
fn the_static_record_is_written_once_and_each_round_writes_only_the_progress() {
    let secp = Secp256k1::new();
    let (mut shard, mut theirs, peer) = hub_with_channel(&secp);
    let channel_id = theirs.channel_id();
    let key = channel_id.0;
    let mut store = Recording::default();

    // Round 1: the peer's update_add_htlc and commitment_signed; the hub writes before its
    // revoke_and_ack and commitment_signed leave.
    let mut io = Collect::default();
    let inputs = from_peer(peer, peer_adds(&secp, &mut theirs, 1));
    shard.turn(T0, inputs, &mut store, &mut io).unwrap();
    let [first] = &store.batches[..] else {
        panic!("one batch: {:?}", store.batches.len())
    };
    let [Some(statics)] = &writes(first, Table::ChannelStatics, &key)[..] else {
        panic!("the first write of the channel holds its static record")
    };
    assert_eq!(
        writes(first, Table::Openings, &key),
        [&None],
        "and deletes its opening"
    );
    assert!(
        matches!(&writes(first, Table::Channels, &key)[..], [Some(_)]),
        "and its record"
    );
    let statics = decode_channel_statics(statics).unwrap().to_vec();

    // Round 2: the peer's revoke_and_ack (then the hub fails the HTLC back, its onion being
    // made up: more rounds, more batches).
    for msg in io.to_peers.remove(&peer).expect("the hub answers") {
        testing::deliver(&secp, &mut theirs, msg).expect("the peer accepts");
    }
    let inputs = from_peer(peer, peer_out(&mut theirs).0);
    let mut io = Collect::default();
    shard.turn(T0 + 1, inputs, &mut store, &mut io).unwrap();
    let later = &store.batches[1..];
    assert!(!later.is_empty(), "the second round is written");
    for batch in later {
        assert!(
            writes(batch, Table::ChannelStatics, &key).is_empty()
                && writes(batch, Table::Openings, &key).is_empty(),
            "the static record is written once, the opening deleted once"
        );
    }
    let [Some(record)] = &writes(&later[0], Table::Channels, &key)[..] else {
        panic!("the second round writes the channel's record")
    };
    // The same state in the layout before static records (the header, then the lean record,
    // which holds the static fields inline) is larger by the static fields, less the 8 bytes
    // by which the progress record names its static record.
    let stored = decode_channel(record, Some(&statics)).unwrap();
    let mut terms = HashMap::new();
    for (_, key, value) in store.batches.iter().flatten() {
        if let (Some((_, by_peer, id)), Some(v)) = (parse_htlc_key(key), value) {
            terms.insert((by_peer, id), decode_htlc(v).unwrap());
        }
    }
    let written = Channel::decode_parts(&statics, &stored.state, &mut |side, id| {
        terms
            .get(&(side == Side::Remote, id))
            .map(lnhub_shard::store::htlc_terms)
    })
    .expect("the written records decode");
    assert!(!written.book().htlcs().is_empty(), "HTLCs in flight");
    let mut lean = Vec::new();
    written.encode_lean(&mut lean);
    let header = record.len() - stored.state.len();
    let static_fields = statics.len() - 1 - 32;
    assert_eq!(header + lean.len() - record.len(), static_fields - 8);
    assert!(
        static_fields > 500,
        "{static_fields} bytes not written each round"
    );

    // What the store holds restores: the records joined, decoded, the same channel.
    let loaded = store.store.tables.load().expect("the tables load");
    let [(id, stored)] = &loaded.channels[..] else {
        panic!("one channel: {:?}", loaded.channels)
    };
    assert_eq!(
        (*id, stored.statics.as_deref()),
        (channel_id, Some(&statics[..]))
    );
    let (mut restarted, _) = hub(&secp, &[], false);
    lnhub_shard::restore(
        std::slice::from_mut(&mut restarted),
        &loaded,
        &mut ReplaySet::new(ReplayConfig::default(), 100),
    )
    .expect("the stored channel restores");
    let before = &shard.channel(&channel_id).unwrap().channel;
    let after = &restarted.channel(&channel_id).unwrap().channel;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    before.encode_static(&mut a);
    after.encode_static(&mut b);
    assert_eq!(a, b, "the same static part");
    assert_eq!(before.book(), after.book(), "the same books");
}

/// A store written before static records holds each channel's whole lean record after the
/// header (a channel record of version 2). It restores; the channel's next write adds its
/// static record and a version 3 record, which restore again.
#[test]
fn a_channel_restored_from_the_layout_before_gets_its_static_record_with_its_next_write() {
    let secp = Secp256k1::new();
    let (shard, _, peer) = hub_with_channel(&secp);
    let slot = shard.slots().next().expect("one channel");
    let channel_id = slot.channel.channel_id();
    let header = lnhub_schema::ChannelHeader {
        peer,
        scid: slot.scid,
        remote_alias: None,
        policy: slot.policy,
    };
    let mut value = Vec::new();
    encode_channel(&mut value, &header, |out| slot.channel.encode_lean(out));
    // Version 2's envelope is version 3's: only what follows it differs.
    let sealed = 4 + usize::from(u16::from_be_bytes([value[2], value[3]]));
    value[1] = 2;
    let check = sha256::Hash::hash(&value[..sealed]).to_byte_array();
    value[sealed..sealed + 8].copy_from_slice(&check[..8]);
    let mut store = Recording::default();
    let mut batch = Batch::new();
    batch.put(Table::Channels, &channel_id.0, &value);
    store.store.apply(&batch);

    let loaded = store.store.tables.load().expect("a version 2 record loads");
    assert_eq!(loaded.channels[0].1.statics, None);
    let (mut restored, _) = hub(&secp, &[], false);
    let mut replays = ReplaySet::new(ReplayConfig::default(), 100);
    lnhub_shard::restore(std::slice::from_mut(&mut restored), &loaded, &mut replays)
        .expect("it restores");

    // The next write: a policy change, written with the next batch.
    let change = PolicyChange {
        fee_base_msat: Some(2_000),
        ..PolicyChange::default()
    };
    let set = Input::SetPolicy {
        channel_id: Some(channel_id),
        change,
    };
    let mut io = Collect::default();
    restored.turn(T0, [set], &mut store, &mut io).unwrap();
    let [written] = &store.batches[..] else {
        panic!("one batch: {:?}", store.batches.len())
    };
    assert!(matches!(
        &writes(written, Table::ChannelStatics, &channel_id.0)[..],
        [Some(_)]
    ));

    let loaded = store.store.tables.load().expect("the new layout loads");
    assert!(loaded.channels[0].1.statics.is_some(), "joined");
    let (mut again, _) = hub(&secp, &[], false);
    let mut replays = ReplaySet::new(ReplayConfig::default(), 100);
    lnhub_shard::restore(std::slice::from_mut(&mut again), &loaded, &mut replays)
        .expect("the new layout restores");
    let slot = again.channel(&channel_id).expect("the channel");
    assert_eq!(slot.policy.current.fee_base_msat, 2_000);
    assert_eq!(
        slot.channel.book(),
        restored.channel(&channel_id).unwrap().channel.book()
    );
}
