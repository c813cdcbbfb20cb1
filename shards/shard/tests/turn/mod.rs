//! The shard turns `benches/turn.rs` measures, shared with its smoke test
//! (`tests/bench_smoke.rs`).
//!
//! One hub shard owns [`PAIRS`] channels from payers and as many to payees, zero-conf anchors
//! channels in normal operation built by the channel crate's fixtures, as `tests/sim.rs` builds
//! them (the hub funded each and holds most of its capacity; the payer side holds the push).
//! A batch of `k` payments payer -> hub -> payee, each with a real two-hop onion and an amount
//! above dust (every HTLC is an output of every commitment, with its own signature), is spread
//! evenly over the pairs: payment `j` goes from payer `j % PAIRS` to payee `j % PAIRS`.
//!
//! The hub takes such a batch in two turns, each run to quiescence (the default rounds per
//! turn, the in-memory store answering at once):
//!
//! - the **commit** turn takes the payers' `update_add_htlc`s and `commitment_signed`s: the
//!   commitment and HTLC signatures checked, the hub's `revoke_and_ack` and its own
//!   `commitment_signed` (one signature per HTLC) built, the channels written to the store in
//!   one batch, the messages released;
//! - the **forward** turn takes the payers' `revoke_and_ack`s, which make the HTLCs
//!   irrevocably committed: every onion peeled in one batch and checked against the replay set,
//!   each forward decided and handed to the payee's channel (on this shard), then, in the
//!   turn's next round, the outgoing `update_add_htlc`s added and a `commitment_signed` signed
//!   per payee channel, channels, forward links and replay entries written, the messages
//!   released.
//!
//! Everything is deterministic (fixed keys, sessions and preimages, RFC 6979 signatures), so
//! [`Fixture::new`] drives the peers once, records what they send, and checks the whole
//! exchange (the payees accept the hub's `commitment_signed` over every forwarded HTLC);
//! every iteration then replays those messages into a fresh hub.

// The bench and its smoke test each use part of it.
#![allow(dead_code)]

use bitcoin::hashes::sha256;
use lnhub_forward::PolicyHistory;
use lnhub_onion::{build_onion, PayloadFields, RouteHop};
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::PaymentHash;

use crate::support::testing::{self, Agreement};
use crate::support::*;

/// Payer channels, and as many payee channels.
pub const PAIRS: usize = 8;
/// What each payment delivers to its payee: 5,000 sat, above both dust limits.
const AMOUNT_MSAT: u64 = 5_000_000;
/// The block height of [`hub`]'s shard.
const HEIGHT: u32 = 100;
/// The payee's `cltv_expiry` (the onion's `outgoing_cltv_value` at the hub).
const FINAL_CLTV: u32 = HEIGHT + 40;

/// A hub shard with its store and the [`Io`] its turns write to.
pub struct Hub {
    pub shard: Shard,
    pub store: MemoryStore,
    pub io: Collect,
}

impl Hub {
    /// One turn over `inputs`: it leaves nothing for the next turn and disconnects nobody.
    pub fn turn(&mut self, inputs: Vec<Input>) {
        self.shard
            .turn(T0, inputs, &mut self.store, &mut self.io)
            .expect("the memory store never fails");
        debug_assert!(!self.shard.has_pending_work());
        debug_assert!(self.io.disconnected.is_empty());
    }

    /// How many messages of each kind the hub sent `peer` and nobody took yet:
    /// (`update_add_htlc`, `commitment_signed`, `revoke_and_ack`).
    pub fn sent_to(&self, peer: &PublicKey) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for msg in self.io.to_peers.get(peer).into_iter().flatten() {
            match msg {
                Message::UpdateAddHtlc(_) => counts.0 += 1,
                Message::CommitmentSigned(_) => counts.1 += 1,
                Message::RevokeAndAck(_) => counts.2 += 1,
                other => panic!("the hub sent {other:?}"),
            }
        }
        counts
    }
}

/// One peer: its node id and its side of its channel with the hub.
struct Peer {
    node_id: PublicKey,
    channel: lnhub_channel::Channel,
}

/// A batch of `k` payments, recorded once (see the module docs).
pub struct Fixture {
    pub k: usize,
    pub payers: Vec<PublicKey>,
    pub payees: Vec<PublicKey>,
    /// The hub's side of every channel with its peer and `short_channel_id`, as it starts.
    hub_channels: Vec<(lnhub_channel::Channel, PublicKey, ShortChannelId)>,
    /// The commit turn's inputs: each payer's `update_add_htlc`s and `commitment_signed`.
    commit_inputs: Vec<Input>,
    /// The forward turn's inputs: each payer's `revoke_and_ack`.
    forward_inputs: Vec<Input>,
}

impl Fixture {
    /// Records and checks the exchange for a batch of `k` payments.
    pub fn new(k: usize) -> Fixture {
        let secp = Secp256k1::new();
        let mut agreement = Agreement::default_for(ChannelType::Anchors);
        // The BOLT 2 maximum, so 1,000 HTLCs fit on 8 channels.
        agreement.limits_a.max_accepted_htlcs = 483;
        agreement.limits_b.max_accepted_htlcs = 483;
        let mut hub_channels = Vec::new();
        let mut peer = |i: usize| {
            let secret = SecretKey::from_slice(&hash(&format!("peer/{i}"))).expect("a key");
            let node_id = PublicKey::from_secret_key(&secp, &secret);
            // A = the hub (funder), B = the peer.
            let (hub_side, peer_side) = testing::pair(&secp, 1_000 + i as u64, &agreement);
            let scid = ShortChannelId::new(500 + i as u32, 1, 0).expect("a valid scid");
            hub_channels.push((hub_side, node_id, scid));
            Peer {
                node_id,
                channel: peer_side,
            }
        };
        let mut payers: Vec<Peer> = (0..PAIRS).map(&mut peer).collect();
        let mut payees: Vec<Peer> = (PAIRS..2 * PAIRS).map(&mut peer).collect();
        let mut fixture = Fixture {
            k,
            payers: payers.iter().map(|p| p.node_id).collect(),
            payees: payees.iter().map(|p| p.node_id).collect(),
            hub_channels,
            commit_inputs: Vec::new(),
            forward_inputs: Vec::new(),
        };

        let mut hub = fixture.fresh_hub();
        let hub_id = PublicKey::from_secret_key(&secp, &hub_node_secret());
        for j in 0..k {
            let (payer, payee) = (j % PAIRS, j % PAIRS);
            let (hash, onion) = payment(&secp, j, &hub_id, &fixture.hub_channels[PAIRS + payee]);
            let fee = POLICY.fee_msat(Msat(AMOUNT_MSAT)).expect("a fee").0;
            let cltv = FINAL_CLTV + u32::from(POLICY.cltv_expiry_delta);
            payers[payer]
                .channel
                .send_add_htlc(Msat(AMOUNT_MSAT + fee), hash, cltv, &onion)
                .expect("the payer's channel carries the HTLC");
        }
        for payer in payers.iter_mut().take(k.min(PAIRS)) {
            assert!(testing::sign(&secp, &mut payer.channel).expect("the payer signs"));
            let (msgs, _) = peer_out(&mut payer.channel);
            fixture
                .commit_inputs
                .extend(msgs.into_iter().map(|msg| Input::Peer {
                    node_id: payer.node_id,
                    msg,
                }));
        }

        hub.turn(fixture.commit_inputs.clone());
        for payer in payers.iter_mut().take(k.min(PAIRS)) {
            assert_eq!(hub.sent_to(&payer.node_id), (0, 1, 1));
            let replies = hub.io.to_peers.remove(&payer.node_id).expect("replies");
            for msg in replies {
                testing::deliver(&secp, &mut payer.channel, msg).expect("the payer accepts");
            }
            let (msgs, _) = peer_out(&mut payer.channel);
            let [Message::RevokeAndAck(_)] = &msgs[..] else {
                panic!("the payer answers with revoke_and_ack alone: {msgs:?}")
            };
            fixture
                .forward_inputs
                .extend(msgs.into_iter().map(|msg| Input::Peer {
                    node_id: payer.node_id,
                    msg,
                }));
        }

        hub.turn(fixture.forward_inputs.clone());
        assert_eq!(hub.shard.counters().forwards_total, k as u64);
        for (i, payee) in payees.iter_mut().enumerate() {
            let expected = (k + PAIRS - 1 - i) / PAIRS;
            if expected == 0 {
                assert_eq!(hub.sent_to(&payee.node_id), (0, 0, 0));
                continue;
            }
            assert_eq!(hub.sent_to(&payee.node_id), (expected, 1, 0));
            for msg in hub.io.to_peers.remove(&payee.node_id).expect("forwards") {
                testing::deliver(&secp, &mut payee.channel, msg).expect("the payee accepts");
            }
            let (msgs, _) = peer_out(&mut payee.channel);
            assert!(matches!(msgs[..], [Message::RevokeAndAck(_)]), "{msgs:?}");
            assert_eq!(payee.channel.book().htlcs().len(), expected);
        }
        fixture
    }

    /// A fresh hub: its shard owns every channel as it starts, and the store holds them, as
    /// establishment leaves them.
    fn fresh_hub(&self) -> Hub {
        let secp = Secp256k1::new();
        let (mut shard, _) = hub(&secp, &[], false);
        for (channel, peer, scid) in &self.hub_channels {
            let policy = PolicyHistory::new(POLICY);
            shard.insert_channel(channel.clone(), *peer, *scid, policy, true, None);
        }
        let mut store = MemoryStore::default();
        let mut batch = lnhub_shard::Batch::new();
        shard.write_channels(&mut batch);
        store.apply(&batch);
        Hub {
            shard,
            store,
            io: Collect::default(),
        }
    }

    /// A fresh hub and the inputs of its commit turn.
    pub fn before_commit(&self) -> (Hub, Vec<Input>) {
        (self.fresh_hub(), self.commit_inputs.clone())
    }

    /// A hub that ran the commit turn (what it sent taken), and the inputs of its forward turn.
    pub fn before_forward(&self) -> (Hub, Vec<Input>) {
        let mut hub = self.fresh_hub();
        hub.turn(self.commit_inputs.clone());
        hub.io.to_peers.clear();
        (hub, self.forward_inputs.clone())
    }
}

/// The hub's node secret ([`hub`]'s).
fn hub_node_secret() -> SecretKey {
    SecretKey::from_slice(&[0x11; 32]).expect("a key")
}

fn hash(tag: &str) -> [u8; 32] {
    sha256::Hash::hash(tag.as_bytes()).to_byte_array()
}

/// Payment `j`'s hash and onion: hub, then the payee over `out` (its channel from the hub).
fn payment(
    secp: &Secp256k1<All>,
    j: usize,
    hub_id: &PublicKey,
    out: &(lnhub_channel::Channel, PublicKey, ShortChannelId),
) -> (PaymentHash, [u8; ONION_PACKET_LEN]) {
    let (_, payee_id, out_scid) = out;
    let preimage = hash(&format!("preimage/{j}"));
    let payment_hash = PaymentHash(sha256::Hash::hash(&preimage).to_byte_array());
    let mut hub_payload = Vec::new();
    PayloadFields {
        amt_to_forward: Some(Msat(AMOUNT_MSAT)),
        outgoing_cltv_value: Some(FINAL_CLTV),
        short_channel_id: Some(*out_scid),
        ..PayloadFields::default()
    }
    .write(&mut hub_payload);
    let mut final_payload = Vec::new();
    PayloadFields {
        amt_to_forward: Some(Msat(AMOUNT_MSAT)),
        outgoing_cltv_value: Some(FINAL_CLTV),
        payment_data: Some(lnhub_onion::payload::PaymentData {
            payment_secret: [7; 32],
            total_msat: Msat(AMOUNT_MSAT),
        }),
        ..PayloadFields::default()
    }
    .write(&mut final_payload);
    let route = [
        RouteHop {
            pubkey: hub_id,
            payload: &hub_payload,
        },
        RouteHop {
            pubkey: payee_id,
            payload: &final_payload,
        },
    ];
    let session = SecretKey::from_slice(&hash(&format!("session/{j}"))).expect("a key");
    let mut onion = [0u8; ONION_PACKET_LEN];
    build_onion(secp, &session, &route, &payment_hash.0, &mut onion).expect("an onion");
    (payment_hash, onion)
}
