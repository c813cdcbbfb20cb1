//! Inbound channel establishment through a shard: a peer (the channel crate's own funder state
//! machine) opens a zero-conf channel to the hub; the hub accepts, signs, persists before
//! `funding_signed`, goes ready at once for a trusted peer, starts the channel and sends its
//! private `channel_update`. An untrusted peer asking for zero-conf is refused with an error,
//! and a hub without an open config refuses every channel. Then the operator closes the channel
//! (`Input::CloseChannel`): the hub sends `shutdown` to its P2WPKH, the peer answers, and the
//! legacy `closing_signed` negotiation ends with the same transaction on both sides. With
//! `option_simple_close` negotiated by the connection's features, the hub proposes its own
//! closing transaction, and a peer that never answers is warned and disconnected after the
//! timeout.

mod support;

use support::*;

#[test]
fn trusted_peer_opens_a_zero_conf_channel() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x22; 32]).unwrap());
    let (mut shard, hub_id) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (mut f, replies) = open_to_funding_signed(&secp, &mut shard, &mut store, peer);
    let channel_id = f.channel_id().unwrap();
    assert!(
        store
            .tables
            .load()
            .unwrap()
            .openings
            .iter()
            .any(|(id, _)| *id == channel_id),
        "the establishment state was stored"
    );
    let [Message::FundingSigned(signed), Message::ChannelReady(ready)] = &replies[..] else {
        panic!("{replies:?}")
    };
    assert!(
        ready.short_channel_id.is_some(),
        "our alias goes in channel_ready"
    );
    let staged = f.stage_funding_signed(&secp, signed).unwrap();
    f.apply_funding_signed(staged.verify(&secp))
        .expect("hub's signature is valid");
    f.handle_channel_ready(ready).unwrap();
    f.handle_funding_depth(0);
    let replies = turn(&mut shard, &mut store, peer, sent(&mut f));
    let [Message::ChannelUpdate(update)] = &replies[..] else {
        panic!("{replies:?}")
    };
    assert_eq!(shard.counters().channels_opened_total, 1);

    // The channel runs in the shard under our alias, with the update describing it; the
    // other shards are told where that alias leads.
    let slot = shard.channel(&channel_id).expect("channel in the shard");
    assert_eq!(Some(slot.scid), ready.short_channel_id);
    let route = Route {
        shard: 0,
        channel_id,
    };
    assert_eq!(
        PUBLISHED.with(|p| p.borrow().clone()),
        vec![(slot.scid, route)]
    );
    assert_eq!(shard.own_routes(), vec![(slot.scid, route)]);
    assert_eq!(
        update.short_channel_id,
        ShortChannelId(0x0100_0000_0001_0001),
        "the update names the alias the peer gave us"
    );
    assert_eq!(update.fee_base_msat, POLICY.fee_base_msat);
    assert_eq!(update.cltv_expiry_delta, POLICY.cltv_expiry_delta);
    assert_eq!(
        update.htlc_maximum_msat,
        Msat(1_000_000_000),
        "capped at the capacity"
    );
    assert_eq!(
        update.message_flags & 2,
        2,
        "dont_forward: a private channel's update"
    );
    let mut bytes = Vec::new();
    Message::ChannelUpdate(update.clone()).encode(&mut bytes);
    let digest = sha256d::Hash::hash(&bytes[66..]).to_byte_array();
    secp.verify_ecdsa(
        &secp256k1::Message::from_digest(digest),
        &update.signature,
        &hub_id,
    )
    .expect("signed by the hub's node key");
    assert!(f.is_ready());
    let ch = f.into_channel();
    assert!(ch.is_operational());
}

/// The hub crashes once its opening is durable and its `funding_signed` and `channel_ready`
/// have left. A new hub restores the opening from the stored record and finishes the opening
/// when the funder's `channel_ready` arrives, sending its own `channel_ready` again (the
/// restart dropped it with the connection).
#[test]
fn restarted_hub_finishes_a_stored_zero_conf_opening() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x44; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (mut f, replies) = open_to_funding_signed(&secp, &mut shard, &mut store, peer);
    let [Message::FundingSigned(signed), Message::ChannelReady(ready)] = &replies[..] else {
        panic!("{replies:?}")
    };
    let channel_id = f.channel_id().unwrap();
    let loaded = store.tables.load().expect("the stored tables load");
    assert!(loaded.channels.is_empty());
    let [(stored_id, stored)] = &loaded.openings[..] else {
        panic!("one opening stored: {:?}", loaded.openings)
    };
    assert_eq!(*stored_id, channel_id);
    let stored = stored.clone();
    assert_eq!(stored.header.peer, peer);
    assert_eq!(Some(stored.header.alias), ready.short_channel_id);
    let decoded = Establishing::decode(&stored.state).expect("the stored record decodes");
    assert_eq!(decoded.channel_id(), Some(channel_id));
    drop(shard);

    let staged = f.stage_funding_signed(&secp, signed).unwrap();
    f.apply_funding_signed(staged.verify(&secp))
        .expect("hub's signature is valid");
    f.handle_channel_ready(ready).unwrap();
    f.handle_funding_depth(0);

    let (mut shard, _) = hub(&secp, &[peer], true);
    shard
        .restore_opening(&stored)
        .expect("the stored record decodes");
    let replies = turn(&mut shard, &mut store, peer, sent(&mut f));
    let [Message::ChannelReady(again), Message::ChannelUpdate(update)] = &replies[..] else {
        panic!("{replies:?}")
    };
    assert_eq!(again, ready, "the same channel_ready again");
    assert_eq!(
        update.short_channel_id,
        ShortChannelId(0x0100_0000_0001_0001)
    );
    assert_eq!(shard.counters().channels_opened_total, 1);
    assert!(shard.channel(&channel_id).is_some(), "channel in the shard");
    assert!(f.into_channel().is_operational());
}

/// After a restart the funder reconnects as BOLT 2 says for a channel past `funding_signed`:
/// with `channel_reestablish`. The hub answers with its own (commitment 0 on both sides) and
/// its `channel_ready` again; the funder's `channel_ready` opens the channel, whose record
/// replaces the opening's in the same commit.
#[test]
fn restarted_hub_answers_channel_reestablish_for_a_stored_opening() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x45; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (mut f, replies) = open_to_funding_signed(&secp, &mut shard, &mut store, peer);
    let [Message::FundingSigned(signed), Message::ChannelReady(ready)] = &replies[..] else {
        panic!("{replies:?}")
    };
    let channel_id = f.channel_id().unwrap();
    drop(shard);
    let staged = f.stage_funding_signed(&secp, signed).unwrap();
    f.apply_funding_signed(staged.verify(&secp))
        .expect("hub's signature is valid");

    let loaded = store.tables.load().unwrap();
    let (mut shard, _) = hub(&secp, &[peer], true);
    lnhub_shard::restore(
        std::slice::from_mut(&mut shard),
        &loaded,
        &mut ReplaySet::new(ReplayConfig::default(), 100),
    )
    .unwrap();
    let theirs = ChannelReestablish {
        channel_id,
        next_commitment_number: 1,
        next_revocation_number: 0,
        your_last_per_commitment_secret: [0; 32],
        my_current_per_commitment_point: peer,
        next_funding: None,
        my_current_funding_locked: None,
        unknown_tlvs: Vec::new(),
    };
    let replies = turn(
        &mut shard,
        &mut store,
        peer,
        vec![Message::ChannelReestablish(theirs.clone())],
    );
    let [Message::ChannelReestablish(ours), Message::ChannelReady(again)] = &replies[..] else {
        panic!("{replies:?}")
    };
    assert_eq!(
        (ours.next_commitment_number, ours.next_revocation_number),
        (1, 0)
    );
    assert_eq!(again, ready, "the same channel_ready again");
    f.handle_channel_ready(again).unwrap();
    f.handle_funding_depth(0);
    let replies = turn(&mut shard, &mut store, peer, sent(&mut f));
    assert!(
        matches!(&replies[..], [Message::ChannelUpdate(_)]),
        "{replies:?}"
    );
    let loaded = store.tables.load().unwrap();
    assert!(loaded.openings.is_empty(), "the opening record is gone");
    assert_eq!(loaded.channels.len(), 1, "the channel is stored open");
    assert_eq!(loaded.channels[0].0, channel_id);

    // A peer claiming a later commitment than an opening can have is refused.
    let (mut shard, _) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (_f, _) = open_to_funding_signed(&secp, &mut shard, &mut store, peer);
    let loaded = store.tables.load().unwrap();
    let (mut shard, _) = hub(&secp, &[peer], true);
    lnhub_shard::restore(
        std::slice::from_mut(&mut shard),
        &loaded,
        &mut ReplaySet::new(ReplayConfig::default(), 100),
    )
    .unwrap();
    let ahead = ChannelReestablish {
        channel_id: loaded.openings[0].0,
        next_commitment_number: 5,
        ..theirs
    };
    let replies = turn(
        &mut shard,
        &mut store,
        peer,
        vec![Message::ChannelReestablish(ahead)],
    );
    assert!(matches!(&replies[..], [Message::Error(_)]), "{replies:?}");
}

#[test]
fn untrusted_zero_conf_and_closed_hubs_are_refused() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x33; 32]).unwrap());
    for (trusted, open) in [(false, true), (true, false)] {
        let trusted_list = if trusted { vec![peer] } else { vec![] };
        let (mut shard, _) = hub(&secp, &trusted_list, open);
        let mut store = MemoryStore::default();
        let mut f = funder(&secp, true);
        let replies = turn(&mut shard, &mut store, peer, sent(&mut f));
        let [Message::Error(e)] = &replies[..] else {
            panic!("{replies:?}")
        };
        assert_eq!(
            e.channel_id,
            ChannelId([0x77; 32]),
            "error names the temporary channel id"
        );
        assert_eq!(store.commits, 0);
    }
}

#[test]
fn operator_closes_a_channel_cooperatively() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x66; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (mut ch, channel_id) = opened(&secp, &mut shard, &mut store, peer, false);

    let mut io = Collect::default();
    shard
        .turn(
            T0,
            [Input::CloseChannel { channel_id }],
            &mut store,
            &mut io,
        )
        .unwrap();
    let out: Vec<Message> = io.to_peers.remove(&peer).map(Vec::from).unwrap_or_default();
    let [Message::Shutdown(shutdown)] = &out[..] else {
        panic!("the hub sends shutdown: {out:?}")
    };
    let hub_script = ScriptBuf::from_bytes(shutdown.scriptpubkey.clone());
    assert!(hub_script.is_p2wpkh(), "the hub closes to a P2WPKH");

    // The peer (funder) answers with its own shutdown and opens the fee negotiation.
    ch.handle_shutdown(shutdown).expect("a valid shutdown");
    assert!(ch.needs_shutdown_reply());
    let mut peer_script = vec![0x00, 20];
    peer_script.extend([0x77; 20]);
    ch.send_shutdown(ScriptBuf::from_bytes(peer_script))
        .expect("nothing pending");
    let staged = ch
        .stage_closing_sign()
        .unwrap()
        .expect("the funder proposes");
    ch.apply_closing_sign(staged.sign(&secp));
    let (msgs, _) = peer_out(&mut ch);
    assert!(matches!(
        &msgs[..],
        [Message::Shutdown(_), Message::ClosingSigned(_)]
    ));

    // The hub (fundee) takes the funder's fee, signs the same transaction and is done.
    let inputs = msgs
        .into_iter()
        .map(|msg| Input::Peer { node_id: peer, msg })
        .collect();
    let (replies, chain) = turn_with(&mut shard, &mut store, peer, inputs);
    let [Message::ClosingSigned(reply)] = &replies[..] else {
        panic!("the hub agrees: {replies:?}")
    };
    let [ChainRequest::Broadcast {
        channel_id: id,
        tx: broadcast,
    }] = &chain[..]
    else {
        panic!("the closing transaction is broadcast: {chain:?}")
    };
    assert_eq!(*id, channel_id);
    assert_eq!(shard.counters().channels_closed_total, 1);
    let hub_side = shard
        .channel(&channel_id)
        .expect("kept")
        .channel
        .closing_state()
        .tx();
    let hub_tx = hub_side
        .expect("the hub holds the signed closing transaction")
        .clone();
    let staged = ch
        .stage_closing_message(&Message::ClosingSigned(reply.clone()))
        .expect("a closing message")
        .expect("the hub's fee is ours");
    ch.apply_closing_verified(staged.verify(&secp))
        .expect("valid signature");
    let (_, txs) = peer_out(&mut ch);
    assert_eq!(txs, vec![hub_tx.clone()], "one transaction on both sides");
    let hub_sat = {
        let mut htlcs = Vec::new();
        let slot = shard.channel(&channel_id).expect("kept");
        let view = slot
            .channel
            .book()
            .view(lnhub_channel::View::LocalCurrent, &mut htlcs);
        view.balance_of(lnhub_tx::Side::Local) / 1000
    };
    let paid: Vec<u64> = hub_tx
        .output
        .iter()
        .filter(|o| o.script_pubkey == hub_script)
        .map(|o| o.value.to_sat())
        .collect();
    assert_eq!(
        paid,
        vec![hub_sat],
        "the hub (fundee) gets its whole balance"
    );
    assert!(
        store
            .tables
            .load()
            .unwrap()
            .channels
            .iter()
            .any(|(id, _)| *id == channel_id),
        "the closed channel's record is kept"
    );
    assert_eq!(*broadcast, hub_tx);

    // The closing transaction confirms; at the close depth the channel is retired: out of
    // the live set and the store, a summary kept, the chain backend told to forget it.
    let txid = hub_tx.compute_txid();
    let spent = |depth| Input::Funding {
        channel_id,
        status: FundingStatus {
            scid: None,
            depth: 6,
            spent: Some((txid, depth)),
        },
    };
    let (_, chain) = turn_with(&mut shard, &mut store, peer, vec![spent(1)]);
    assert!(chain.is_empty(), "{chain:?}");
    assert!(
        shard.channel(&channel_id).is_some(),
        "kept until deep enough"
    );
    let (_, chain) = turn_with(
        &mut shard,
        &mut store,
        peer,
        vec![spent(lnhub_shard::DEFAULT_CLOSE_DEPTH)],
    );
    assert_eq!(chain, vec![ChainRequest::Forget { channel_id }]);
    assert!(shard.channel(&channel_id).is_none(), "retired");
    let loaded = store.tables.load().unwrap();
    assert!(loaded.channels.is_empty() && loaded.htlcs.is_empty());
    let closed: Vec<_> = store
        .tables
        .rows()
        .filter(|(t, ..)| *t == lnhub_schema::Table::Closed)
        .map(|(_, k, v)| (k.to_vec(), lnhub_schema::decode_closed(v).unwrap()))
        .collect();
    let [(key, record)] = &closed[..] else {
        panic!("one summary: {closed:?}")
    };
    assert_eq!(key[..], channel_id.0);
    assert_eq!(record.closing_txid, txid.to_byte_array());
    assert_eq!(record.local_msat / 1000, hub_sat);
    assert_eq!(record.capacity_sat, 1_000_000);
    assert_eq!(record.peer, peer);
}

/// With `option_simple_close` negotiated (the features of the peer's connection), the hub
/// proposes its own closing transaction; a peer that never answers with `closing_sig` gets a
/// warning and is disconnected once `CLOSING_REPLY_TIMEOUT_SECS` have passed, and not before.
#[test]
fn unanswered_closing_complete_times_out() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x67; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let mut features = lnhub_wire::features::Features::empty();
    features.set_optional(lnhub_wire::features::SHUTDOWN_ANYSEGWIT);
    features.set_optional(lnhub_wire::features::SIMPLE_CLOSE);
    let mut io = Collect::default();
    let connected = Input::PeerConnected {
        node_id: peer,
        connection: 1,
        features,
    };
    shard.turn(T0, [connected], &mut store, &mut io).unwrap();
    let (mut ch, channel_id) = opened(&secp, &mut shard, &mut store, peer, true);
    assert!(ch.shutdown_terms().option_simple_close);
    let hub_terms = shard
        .channel(&channel_id)
        .unwrap()
        .channel
        .shutdown_terms()
        .clone();
    assert!(hub_terms.option_simple_close && hub_terms.option_shutdown_anysegwit);

    // The peer starts the close; the hub answers and proposes at once.
    let mut script = vec![0x00, 20];
    script.extend([0x78; 20]);
    ch.send_shutdown(ScriptBuf::from_bytes(script)).unwrap();
    let (msgs, _) = peer_out(&mut ch);
    let replies = turn(&mut shard, &mut store, peer, msgs);
    assert!(
        matches!(
            &replies[..],
            [Message::Shutdown(_), Message::ClosingComplete(_)]
        ),
        "{replies:?}"
    );
    let t0 = 1_700_000_000;
    for (now, timed_out) in [(t0 + 599, false), (t0 + 600, true)] {
        let mut io = Collect::default();
        shard.turn(now, [], &mut store, &mut io).unwrap();
        assert_eq!(io.disconnected == vec![peer], timed_out, "at {now}");
        if timed_out {
            let sent = io.to_peers.remove(&peer).map(Vec::from).unwrap_or_default();
            assert!(matches!(&sent[..], [Message::Warning(_)]), "{sent:?}");
        }
    }
    assert!(!shard.channel(&channel_id).unwrap().channel.is_failed());
}

/// The shard's report for the operator names the channel with its state, balances and
/// policy; a policy change is honoured at once, written with the next batch (the record's
/// header carries it and the peer's alias across a restart), and the peer receives the new
/// `channel_update` under its own alias for the channel.
#[test]
fn operator_reads_channels_and_changes_their_policy() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x6a; 32]).unwrap());
    let (mut shard, hub_id) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (_ch, channel_id) = opened(&secp, &mut shard, &mut store, peer, false);

    let mut io = Collect::default();
    shard
        .turn(T0, [Input::Report { id: 7 }], &mut store, &mut io)
        .unwrap();
    let [(7, report)] = &io.reports[..] else {
        panic!("one report: {:?}", io.reports)
    };
    let [c] = &report.channels[..] else {
        panic!("{report:?}")
    };
    assert_eq!(c.channel_id, channel_id);
    assert_eq!(c.peer, peer);
    assert_eq!(c.state, ChannelState::Normal);
    assert_eq!(c.state.as_str(), "normal");
    assert!(!c.we_funded);
    assert_eq!(c.htlcs_in, (0, 0));
    assert_eq!(
        c.local_msat + c.remote_msat,
        c.capacity_msat,
        "no HTLC in flight: the balances make the capacity"
    );
    let remote_alias = c.remote_alias.expect("the funder gave its alias");
    let old = c.policy;

    let change = PolicyChange {
        fee_base_msat: Some(2_000),
        fee_proportional_millionths: Some(500),
        ..PolicyChange::default()
    };
    let commits = store.commits;
    let mut io = Collect::default();
    shard
        .turn(
            T0 + 5,
            [
                Input::SetPolicy {
                    channel_id: None,
                    change,
                },
                Input::Report { id: 8 },
            ],
            &mut store,
            &mut io,
        )
        .unwrap();
    assert!(store.commits > commits, "the new policy is written");
    let out: Vec<Message> = io.to_peers.remove(&peer).map(Vec::from).unwrap_or_default();
    let [Message::ChannelUpdate(update)] = &out[..] else {
        panic!("the peer gets the new channel_update: {out:?}")
    };
    assert_eq!(update.short_channel_id, remote_alias);
    assert_eq!(update.fee_base_msat, 2_000);
    assert_eq!(update.fee_proportional_millionths, 500);
    assert_eq!(update.cltv_expiry_delta, old.cltv_expiry_delta);
    assert_eq!(update.timestamp, (T0 + 5) as u32);
    let mut bytes = Vec::new();
    Message::ChannelUpdate(update.clone()).encode(&mut bytes);
    // BOLT 7: the signature covers the double SHA-256 of what follows it.
    let digest = sha256d::Hash::hash(&bytes[2 + 64..]);
    let signed = secp256k1::Message::from_digest(digest.to_byte_array());
    secp.verify_ecdsa(&signed, &update.signature, &hub_id)
        .expect("signed by the hub");
    let c = &io.reports[0].1.channels[0];
    assert_eq!(c.policy.fee_base_msat, 2_000);
    assert_eq!(
        c.previous_policy,
        Some((old, T0 + 5)),
        "the old one in grace"
    );

    // An unchanged policy sends nothing and writes nothing.
    let commits = store.commits;
    let mut io = Collect::default();
    let set = Input::SetPolicy {
        channel_id: Some(channel_id),
        change,
    };
    shard.turn(T0 + 6, [set], &mut store, &mut io).unwrap();
    assert!(io.to_peers.is_empty());
    assert_eq!(store.commits, commits);
}
