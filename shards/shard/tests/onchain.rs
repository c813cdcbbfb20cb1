//! The chain in a shard's channels: an inbound channel from a peer the hub does not trust is
//! ready only at its funding depth, across a reorg; a commitment on chain fails the channel; a
//! fundee forgets a funding never seen in 2016 blocks; the hub opens a channel funded by its
//! wallet (the wallet asked after `accept_channel`, the broadcast after a durable
//! `funding_signed`). The chain backend is the test: it answers the shard's `ChainRequest`s
//! with `Input::Funding` and `Input::FundingTx`.

mod support;

use support::*;

/// A peer the hub does not trust proposes a channel that is not zero-conf: returns its side
/// and the hub's `accept_channel`.
fn untrusted_open(
    secp: &Secp256k1<All>,
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
) -> (Establishing, lnhub_wire::msgs::AcceptChannel) {
    let mut f = funder(secp, false);
    let replies = turn(shard, store, peer, sent(&mut f));
    let [Message::AcceptChannel(accept)] = &replies[..] else {
        panic!("{replies:?}")
    };
    let accept = accept.clone();
    (f, accept)
}

/// A funding output spent by a transaction the hub never signed as a close is a commitment
/// on chain: the channel fails (the peer gets an `error`) and stops forwarding.
#[test]
fn a_commitment_on_chain_fails_the_channel() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x6b; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[peer], true);
    let mut store = MemoryStore::default();
    let (_ch, channel_id) = opened(&secp, &mut shard, &mut store, peer, false);
    let commitment = Txid::from_byte_array([9; 32]);
    let input = Input::Funding {
        channel_id,
        status: FundingStatus {
            scid: None,
            depth: 0,
            spent: Some((commitment, 1)),
        },
    };
    let (replies, _) = turn_with(&mut shard, &mut store, peer, vec![input]);
    assert!(matches!(&replies[..], [Message::Error(_)]), "{replies:?}");
    let slot = shard
        .channel(&channel_id)
        .expect("kept: its outputs are to resolve");
    assert!(slot.channel.is_failed());
    assert!(!slot.channel.is_operational());
}

/// A peer the hub does not trust opens a channel: the hub asks for 3 confirmations, has the
/// chain backend watch the funding output, and sends `channel_ready` only once the funding
/// is 3 blocks deep; a reorg that unconfirms it on the way delays that. The channel then
/// runs under our alias and its real `short_channel_id`, both published to the other shards.
#[test]
fn untrusted_peer_channel_is_ready_at_its_depth_across_a_reorg() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x2a; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[], true);
    let mut store = MemoryStore::default();
    let (mut f, accept) = untrusted_open(&secp, &mut shard, &mut store, peer);
    assert_eq!(
        accept.minimum_depth, 3,
        "no zero-conf for an untrusted peer"
    );
    f.handle_accept_channel(&accept).unwrap();
    fund(&secp, &mut f);
    let channel_id = f.channel_id().unwrap();
    let outpoint = f.funding_output_point().unwrap();
    let inputs = from_peer(peer, sent(&mut f));
    let (replies, chain) = turn_with(&mut shard, &mut store, peer, inputs);
    let [Message::FundingSigned(signed)] = &replies[..] else {
        panic!("no channel_ready before the funding confirms: {replies:?}")
    };
    assert_eq!(
        chain,
        vec![ChainRequest::Watch {
            channel_id,
            outpoint,
            depth: lnhub_shard::DEFAULT_CLOSE_DEPTH,
            restored: false,
        }],
        "the funding output is watched (up to the close depth, beyond the 3 it needs)"
    );
    let staged = f.stage_funding_signed(&secp, signed).unwrap();
    f.apply_funding_signed(staged.verify(&secp)).unwrap();
    // The funder's `channel_ready` comes first (its own view of the chain was quicker).
    f.handle_funding_depth(3);
    let funder_ready = sent(&mut f);
    assert!(matches!(&funder_ready[..], [Message::ChannelReady(_)]));
    let replies = turn(&mut shard, &mut store, peer, funder_ready);
    assert!(replies.is_empty(), "nothing before the depth: {replies:?}");

    let scid = ShortChannelId::new(120, 4, outpoint.vout as u16).unwrap();
    let funding = |depth| Input::Funding {
        channel_id,
        status: FundingStatus {
            scid: (depth > 0).then_some(scid),
            depth,
            spent: None,
        },
    };
    for (depth, ready) in [(1, false), (2, false), (0, false), (1, false), (3, true)] {
        let (replies, _) = turn_with(&mut shard, &mut store, peer, vec![funding(depth)]);
        match &replies[..] {
            [] => assert!(!ready, "depth {depth}: channel_ready expected"),
            [Message::ChannelReady(_), Message::ChannelUpdate(_)] => {
                assert!(ready, "depth {depth}: channel_ready too early")
            }
            other => panic!("depth {depth}: {other:?}"),
        }
    }
    let slot = shard.channel(&channel_id).expect("the channel is open");
    assert_eq!(slot.real_scid, Some(scid));
    let routes = shard.own_routes();
    assert!(routes.iter().any(|(s, _)| *s == scid), "{routes:?}");
    assert!(routes.iter().any(|(s, _)| *s == slot.scid), "{routes:?}");
    assert!(PUBLISHED.with(|p| p.borrow().iter().any(|(s, _)| *s == scid)));
}

/// BOLT 2: a fundee forgets a channel whose funding transaction it has not seen after 2016
/// blocks: the funder gets an `error`, the opening's record is deleted, the chain backend
/// stops watching. One block earlier it is still kept.
#[test]
fn a_funding_never_confirmed_is_forgotten_after_2016_blocks() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x2b; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[], true);
    let mut store = MemoryStore::default();
    let (mut f, accept) = untrusted_open(&secp, &mut shard, &mut store, peer);
    f.handle_accept_channel(&accept).unwrap();
    fund(&secp, &mut f);
    let channel_id = f.channel_id().unwrap();
    turn(&mut shard, &mut store, peer, sent(&mut f));
    let stored = |store: &MemoryStore| {
        let loaded = store.tables.load().unwrap();
        assert_eq!(
            loaded
                .openings
                .first()
                .map(|(_, o)| o.header.funding_accepted_at),
            loaded.openings.first().map(|_| 100),
            "accepted at the shard's height"
        );
        loaded.openings.len()
    };
    assert_eq!(stored(&store), 1);
    let (replies, chain) = turn_with(&mut shard, &mut store, peer, vec![Input::BlockHeight(2115)]);
    assert!(
        replies.is_empty() && chain.is_empty(),
        "{replies:?} {chain:?}"
    );
    assert_eq!(shard.report().openings, 1);
    let (replies, chain) = turn_with(&mut shard, &mut store, peer, vec![Input::BlockHeight(2116)]);
    assert!(
        matches!(&replies[..], [Message::Error(e)] if e.channel_id == channel_id),
        "{replies:?}"
    );
    assert_eq!(chain, vec![ChainRequest::Forget { channel_id }]);
    assert_eq!(shard.report().openings, 0);
    assert_eq!(stored(&store), 0, "its record is deleted");
}

/// The hub opens a channel as the funder: `open_channel` with the best type both support,
/// the wallet asked for the funding transaction once the peer accepts, `funding_created`
/// with it, the funding transaction broadcast only once the peer's `funding_signed` is
/// durable, `channel_ready` at the peer's depth; the channel is ours to fund. A wallet that
/// cannot fund refuses the opening; a peer leaving before `funding_signed` has the built
/// transaction abandoned.
#[test]
fn the_hub_opens_a_channel_funded_by_its_wallet() {
    let secp = Secp256k1::new();
    let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[0x3c; 32]).unwrap());
    let (mut shard, _) = hub(&secp, &[], true);
    let mut store = MemoryStore::default();
    let mut features = lnhub_wire::features::Features::empty();
    features.set_optional(lnhub_wire::features::ANCHORS);
    features.set_optional(lnhub_wire::features::SCID_ALIAS);
    let connected = Input::PeerConnected {
        node_id: peer,
        connection: 1,
        features: features.clone(),
    };
    let open = Input::OpenChannel {
        peer,
        funding: Sat(500_000),
        push: Msat(0),
        announce: false,
    };
    let (out, _) = turn_with(&mut shard, &mut store, peer, vec![connected, open]);
    let [Message::OpenChannel(open)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(open.funding_satoshis, Sat(500_000));
    let ty = NegotiatedType::from_features(open.channel_type.as_ref().unwrap()).unwrap();
    assert_eq!(
        (ty.commitment, ty.scid_alias, ty.zeroconf),
        (ChannelType::Anchors, true, false)
    );
    let temporary = open.temporary_channel_id;

    let mut f = fundee(&secp, open);
    let inputs = from_peer(peer, sent(&mut f));
    let (out, chain) = turn_with(&mut shard, &mut store, peer, inputs);
    assert!(out.is_empty(), "{out:?}");
    let [ChainRequest::Fund {
        temporary_channel_id,
        script,
        amount,
    }] = &chain[..]
    else {
        panic!("the wallet is asked: {chain:?}")
    };
    assert_eq!((*temporary_channel_id, *amount), (temporary, Sat(500_000)));
    assert!(script.is_p2wsh());
    let tx = fabricated_tx(
        6,
        vec![
            bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(9_000),
                script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::all_zeros()),
            },
            bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(500_000),
                script_pubkey: script.clone(),
            },
        ],
    );
    let funding_tx = Input::FundingTx {
        temporary_channel_id: temporary,
        tx: Ok(tx.clone()),
    };
    let (out, chain) = turn_with(&mut shard, &mut store, peer, vec![funding_tx]);
    let [Message::FundingCreated(created)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(created.funding_output_index, 1);
    let [ChainRequest::Watch { channel_id, .. }] = chain[..] else {
        panic!("{chain:?}")
    };
    assert!(
        store.tables.load().unwrap().openings.is_empty(),
        "nothing durable yet"
    );

    let staged = f.stage_funding_created(&secp, created).unwrap();
    let verified = staged.verify(&secp);
    let stage = f.apply_funding_created(&secp, verified).unwrap();
    f.apply_funding_signed_signature(stage.sign(&secp));
    let signed = sent(&mut f);
    assert!(
        matches!(&signed[..], [Message::FundingSigned(_)]),
        "{signed:?}"
    );
    let inputs = from_peer(peer, signed);
    let commits = store.commits;
    let (out, chain) = turn_with(&mut shard, &mut store, peer, inputs);
    assert!(out.is_empty(), "no channel_ready before the depth: {out:?}");
    assert!(store.commits > commits);
    assert_eq!(
        chain,
        vec![ChainRequest::Broadcast {
            channel_id,
            tx: tx.clone()
        }],
        "broadcast once funding_signed is durable"
    );
    let stored = store.tables.load().unwrap();
    let stored_tx = stored.openings[0].1.header.funding_tx.clone();
    assert_eq!(
        stored_tx,
        Some(bitcoin::consensus::serialize(&tx)),
        "kept for a restart"
    );

    // 3 confirmations: both channel_ready, the channel is ours to fund.
    let scid = ShortChannelId::new(130, 7, 1).unwrap();
    let depth = Input::Funding {
        channel_id,
        status: FundingStatus {
            scid: Some(scid),
            depth: 3,
            spent: None,
        },
    };
    let (out, _) = turn_with(&mut shard, &mut store, peer, vec![depth]);
    assert!(matches!(&out[..], [Message::ChannelReady(_)]), "{out:?}");
    f.handle_funding_depth(3);
    let inputs = from_peer(peer, sent(&mut f));
    let (out, _) = turn_with(&mut shard, &mut store, peer, inputs);
    assert!(matches!(&out[..], [Message::ChannelUpdate(_)]), "{out:?}");
    let slot = shard.channel(&channel_id).expect("open");
    assert_eq!(slot.real_scid, Some(scid));
    let report = shard.report();
    let c = report
        .channels
        .iter()
        .find(|c| c.channel_id == channel_id)
        .unwrap();
    assert!(c.we_funded);
    assert_eq!(c.local_msat + c.remote_msat, 500_000_000);

    // A wallet without the coins: the opening is refused.
    let open = Input::OpenChannel {
        peer,
        funding: Sat(400_000),
        push: Msat(0),
        announce: false,
    };
    let (temporary, mut f) = hub_opens(&secp, &mut shard, &mut store, peer, open);
    let inputs = from_peer(peer, sent(&mut f));
    turn_with(&mut shard, &mut store, peer, inputs);
    let no_coins = Input::FundingTx {
        temporary_channel_id: temporary,
        tx: Err("insufficient funds".into()),
    };
    let (out, _) = turn_with(&mut shard, &mut store, peer, vec![no_coins]);
    assert!(
        matches!(&out[..], [Message::Error(e)] if e.channel_id == temporary),
        "{out:?}"
    );
    assert_eq!(shard.report().openings, 0);

    // Funded, `funding_created` sent, and the peer leaves: the transaction is abandoned.
    let open = Input::OpenChannel {
        peer,
        funding: Sat(300_000),
        push: Msat(0),
        announce: false,
    };
    let (temporary, mut f) = hub_opens(&secp, &mut shard, &mut store, peer, open);
    let inputs = from_peer(peer, sent(&mut f));
    let (_, chain) = turn_with(&mut shard, &mut store, peer, inputs);
    let [ChainRequest::Fund { script, .. }] = &chain[..] else {
        panic!("{chain:?}")
    };
    let mut tx = tx.clone();
    tx.output[1] = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(300_000),
        script_pubkey: script.clone(),
    };
    let funded = Input::FundingTx {
        temporary_channel_id: temporary,
        tx: Ok(tx.clone()),
    };
    let (out, chain) = turn_with(&mut shard, &mut store, peer, vec![funded]);
    assert!(matches!(&out[..], [Message::FundingCreated(_)]), "{out:?}");
    let [ChainRequest::Watch { channel_id, .. }] = chain[..] else {
        panic!("{chain:?}")
    };
    let gone = Input::PeerDisconnected { node_id: peer };
    let (_, chain) = turn_with(&mut shard, &mut store, peer, vec![gone]);
    assert_eq!(
        chain,
        vec![
            ChainRequest::Abandon {
                txid: tx.compute_txid()
            },
            ChainRequest::Forget { channel_id }
        ]
    );
    assert_eq!(shard.report().openings, 0);
}
