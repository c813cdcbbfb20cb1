//! Deterministic simulator of a hub: one `lnhub-engine` hub with 8 channels over 2 shards,
//! and 8 peers, each the other end of one channel, run by the very same channel state machine.
//! Everything runs in one thread from a seed: which peer sends what, which shard runs its turn
//! when, how messages interleave, when peers disconnect and reconnect.
//!
//! Payments go peer -> hub -> peer through real onions: some succeed, some are failed by the
//! payee, some pay too little fee or name an unknown channel so the hub fails them itself.
//! At quiescence every payment has exactly one outcome, the failing node and code are the
//! expected ones, no HTLC is left in any channel, both ends of every channel agree on the
//! balances, and value is conserved exactly: payers lost amount + fee, payees gained the
//! amount, the hub gained the fees.
//!
//! The hub's store is in memory but read back through the real record encoding and loader at
//! every crash. For half the seeds it answers at once; for the other half it answers as the
//! daemon's does, later: each shard's batch stays in flight, the shard keeps working, and a
//! step of the simulation makes it durable (a crash loses whatever is still in flight).
//!
//! `SIM_SEEDS=N` runs N seeds (default 40); `SIM_SEED=S` runs one. A failure prints its seed.
//!
//! Long because one simulator is one piece: the hub, its peers, the store's answers, crashes
//! and the end-of-run checks (balances, outcomes, forwarding log) share their state.

use std::collections::{HashMap, VecDeque};

// The channel crate's own test fixtures (a funded pair, the staged crypto done inline).
#[path = "../../channel/tests/common/mod.rs"]
mod testing;

use lnhub_channel::{Channel, Effect, RemovalKind};
use lnhub_forward::{Limits, Policy, PolicyHistory};
use lnhub_onion::error_packet::{create_error_packet, decode_error_packet};
use lnhub_onion::failure::{Failure, FailureMessage};
use lnhub_onion::payload::PaymentData;
use lnhub_onion::{build_onion, peel, HopAction, PayloadFields, PeeledHop, RouteHop};
use lnhub_onion::{ReplayConfig, ReplayError, ReplaySet};
use lnhub_schema::ForwardOutcome;
use lnhub_shard::{
    Batch, Input, Io, MemoryStore, Route, Shard, ShardConfig, ShardReport, Store, StoreError,
    Submitted,
};
use lnhub_tx::{ChannelType, Side};
use lnhub_wire::msgs::Message;
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, PaymentPreimage, ShortChannelId};
use secp256k1::hashes::{sha256, Hash};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use testing::{Agreement, Rng};

const CHANNELS: usize = 8;
const SHARDS: usize = 2;
const HEIGHT: u32 = 1_000;
const NOW: u64 = 1_700_000_000;
const CLTV_DELTA: u16 = 40;
const FINAL_CLTV: u32 = HEIGHT + 60;

fn policy() -> Policy {
    Policy {
        fee_base_msat: 1_000,
        fee_proportional_millionths: 500,
        cltv_expiry_delta: CLTV_DELTA,
        htlc_minimum_msat: Msat(1_000),
        htlc_maximum_msat: Msat(5_000_000_000),
    }
}

fn scid(i: usize) -> ShortChannelId {
    ShortChannelId::new(500 + i as u32, 1, 0).unwrap()
}

fn secret(tag: &str, i: u64, seed: u64) -> SecretKey {
    let h = sha256::Hash::hash(format!("{tag}/{i}/{seed}").as_bytes());
    SecretKey::from_slice(h.as_byte_array()).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// The payee settles.
    Succeed,
    /// The payee fails it (incorrect_or_unknown_payment_details from hop 1).
    PayeeFails,
    /// One msat of fee short: fee_insufficient from the hub (hop 0).
    LowFee,
    /// The onion names a channel the hub does not have: unknown_next_peer from hop 0.
    UnknownChannel,
    /// A copy of an earlier payment's onion: the hub refuses the replay
    /// (temporary_node_failure from hop 0) and it never reaches the payee.
    Replay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Fulfilled,
    Failed { hop: usize, code: u16 },
}

#[derive(Debug)]
struct Payment {
    payer: usize,
    payee: usize,
    amount_msat: u64,
    fee_msat: u64,
    preimage: PaymentPreimage,
    hash: PaymentHash,
    secrets: Vec<[u8; 32]>,
    plan: Plan,
    payer_htlc_id: u64,
    outcome: Option<Outcome>,
    /// Hub crashes before its outcome arrived.
    resolved_epoch: u32,
    /// What was sent, for a later replay.
    sent: Sent,
}

/// An HTLC as the payer sent it: onion, amount, expiry.
#[derive(Clone, Copy)]
struct Sent([u8; 1366], u64, u32);

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sent(onion .., {} msat, cltv {})", self.1, self.2)
    }
}

struct Peer {
    secret: SecretKey,
    node_id: PublicKey,
    channel: Channel,
    connected: bool,
    /// The number of the peer's current connection (the connection room's `connection`).
    connection: u64,
    /// Messages from the hub not yet delivered (lost on disconnect).
    inbox: VecDeque<Message>,
}

/// The hub's view of the world for one shard's turn.
struct SimIo<'a> {
    shard: usize,
    /// Which connection the hub's sends to a peer are for (its last `connected`), as the
    /// connection room tracks it.
    hub_connection: &'a mut HashMap<PublicKey, u64>,
    /// Each peer's live connection: sends for an older one are dropped, as the connection
    /// room drops what a shard sends after a connection it has not yet seen replaced.
    live: &'a HashMap<PublicKey, u64>,
    to_peers: &'a mut HashMap<PublicKey, VecDeque<Message>>,
    to_shards: &'a mut [VecDeque<Input>],
    disconnects: &'a mut Vec<PublicKey>,
    /// The hub's replay set, which the runtime keeps behind a lock for all shards.
    replays: &'a mut ReplaySet,
}

impl Io for SimIo<'_> {
    fn connected(&mut self, node_id: &PublicKey, connection: u64) {
        self.hub_connection.insert(*node_id, connection);
    }
    fn send(&mut self, node_id: &PublicKey, msg: Message) {
        if self.hub_connection.get(node_id) == self.live.get(node_id) {
            self.to_peers.entry(*node_id).or_default().push_back(msg);
        }
    }
    fn disconnect(&mut self, node_id: &PublicKey) {
        self.disconnects.push(*node_id);
    }
    fn to_shard(&mut self, shard: usize, input: Input) {
        assert_ne!(shard, self.shard, "a shard keeps its own inputs");
        self.to_shards[shard].push_back(input);
    }
    fn publish_route(&mut self, scid: ShortChannelId, route: Route) {
        for (shard, queue) in self.to_shards.iter_mut().enumerate() {
            if shard != self.shard {
                queue.push_back(Input::Route { scid, route });
            }
        }
    }
    fn check_replays(
        &mut self,
        onions: &[([u8; 32], u32)],
        results: &mut Vec<Result<(), ReplayError>>,
    ) {
        lnhub_shard::check_replays_in(self.replays, onions, results);
    }
    fn replays_at_height(&mut self, height: u32, forgotten: &mut Vec<(u32, u128)>) {
        lnhub_shard::replays_at_height_in(self.replays, height, forgotten);
    }
    fn report(&mut self, _: u64, _: ShardReport) {
        unreachable!("the simulator asks for no report");
    }
    // No chain in the simulator: its channels are zero-conf and never closed on chain.
    fn chain(&mut self, _: lnhub_shard::ChainRequest) {}
}

/// The hub's store as one shard sees it: the shared tables, and the shard's batch in flight
/// when the store answers later (`deferred`).
struct SimStore<'a> {
    store: &'a mut MemoryStore,
    in_flight: &'a mut Option<Batch>,
    deferred: bool,
}

impl Store for SimStore<'_> {
    fn submit(&mut self, batch: Batch) -> Result<Submitted, StoreError> {
        if self.deferred {
            assert!(self.in_flight.is_none(), "one batch in flight per shard");
            *self.in_flight = Some(batch);
            Ok(Submitted::InFlight)
        } else {
            self.store.submit(batch)
        }
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    secp: Secp256k1<All>,
    hub_id: PublicKey,
    shards: Vec<Shard>,
    /// The hub's store, shared by its shards as the daemon's LMDB store is.
    store: MemoryStore,
    /// Whether the store answers later (the daemon's way) rather than at once.
    deferred: bool,
    /// Each shard's batch in flight (`deferred` only).
    in_flight: Vec<Option<Batch>>,
    /// See `SimIo`.
    hub_connection: HashMap<PublicKey, u64>,
    live: HashMap<PublicKey, u64>,
    shard_inputs: Vec<VecDeque<Input>>,
    to_peers: HashMap<PublicKey, VecDeque<Message>>,
    peers: Vec<Peer>,
    /// Which shard owns channel i (the engine's rule: by the peer's node id); recomputed when
    /// a restart changes the shard count.
    shard_of: Vec<usize>,
    channel_ids: Vec<ChannelId>,
    payments: Vec<Payment>,
    initial: Vec<(u64, u64)>,
    hub_secret: SecretKey,
    /// Hub crash-restarts so far.
    crashes: u32,
    /// The hub's replay set (see `SimIo`).
    replays: ReplaySet,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let secp = Secp256k1::new();
        let hub_secret = secret("hub", 0, seed);
        let hub_id = PublicKey::from_secret_key(&secp, &hub_secret);
        // Half the seeds run the daemon's one round per turn, the rest 2 to 8.
        let rounds = if seed.is_multiple_of(2) {
            1
        } else {
            2 + (seed / 2 % 7) as usize
        };
        let mut shards = empty_hub(hub_secret, SHARDS, rounds);
        let mut peers = Vec::new();
        let mut shard_of = Vec::new();
        let mut channel_ids = Vec::new();
        let mut initial = Vec::new();
        for i in 0..CHANNELS {
            let agreement = Agreement::default_for(if i % 2 == 0 {
                ChannelType::Anchors
            } else {
                ChannelType::StaticRemoteKey
            });
            // A = the hub (funder, most of the capacity), B = the peer (the push).
            let (hub_side, peer_side) = testing::pair(
                &secp,
                seed.wrapping_mul(31).wrapping_add(i as u64),
                &agreement,
            );
            let peer_secret = secret("peer", i as u64, seed);
            let node_id = PublicKey::from_secret_key(&secp, &peer_secret);
            let shard = lnhub_shard::shard_of(&node_id, SHARDS);
            channel_ids.push(hub_side.channel_id());
            initial.push((balance(&hub_side), balance(&peer_side)));
            shards[shard].insert_channel(
                hub_side,
                node_id,
                scid(i),
                PolicyHistory::new(policy()),
                true,
                None,
            );
            shard_of.push(shard);
            peers.push(Peer {
                secret: peer_secret,
                node_id,
                channel: peer_side,
                connected: true,
                connection: 0,
                inbox: VecDeque::new(),
            });
        }
        // Every shard forwards to every channel (the restore's rule).
        let routes: Vec<(ShortChannelId, Route)> =
            shards.iter().flat_map(|s| s.own_routes()).collect();
        for shard in shards.iter_mut() {
            for &(scid, route) in &routes {
                shard.learn_route(scid, route);
            }
        }
        // Every channel is on disk from its opening on, as establishment leaves it.
        let mut store = MemoryStore::default();
        let mut batch = Batch::new();
        for shard in shards.iter_mut() {
            shard.write_channels(&mut batch);
        }
        store.apply(&batch);
        Sim {
            deferred: seed % 4 < 2,
            in_flight: vec![None; SHARDS],
            hub_connection: peers.iter().map(|p| (p.node_id, 0)).collect(),
            live: peers.iter().map(|p| (p.node_id, 0)).collect(),
            seed,
            rng: Rng::new(seed),
            secp,
            hub_id,
            hub_secret,
            crashes: 0,
            replays: ReplaySet::new(ReplayConfig::default(), HEIGHT),
            shards,
            store,
            shard_inputs: vec![VecDeque::new(); SHARDS],
            to_peers: HashMap::new(),
            peers,
            shard_of,
            channel_ids,
            payments: Vec::new(),
            initial,
        }
    }

    /// Starts a payment from `payer` to `payee` (through the hub).
    fn start_payment(&mut self, payer: usize, payee: usize, plan: Plan) {
        let amount_msat = self.rng.range(10_000, 20_000_000);
        let fee_msat = policy().fee_msat(Msat(amount_msat)).unwrap().0;
        let preimage = PaymentPreimage(self.rng.bytes32());
        let hash = PaymentHash(sha256::Hash::hash(&preimage.0).to_byte_array());
        let out_scid = if plan == Plan::UnknownChannel {
            ShortChannelId::new(9_999, 9, 9).unwrap()
        } else {
            scid(payee)
        };
        let mut hub_payload = Vec::new();
        PayloadFields {
            amt_to_forward: Some(Msat(amount_msat)),
            outgoing_cltv_value: Some(FINAL_CLTV),
            short_channel_id: Some(out_scid),
            ..PayloadFields::default()
        }
        .write(&mut hub_payload);
        let mut final_payload = Vec::new();
        PayloadFields {
            amt_to_forward: Some(Msat(amount_msat)),
            outgoing_cltv_value: Some(FINAL_CLTV),
            payment_data: Some(PaymentData {
                payment_secret: [7; 32],
                total_msat: Msat(amount_msat),
            }),
            ..PayloadFields::default()
        }
        .write(&mut final_payload);
        let payee_id = self.peers[payee].node_id;
        let route = [
            RouteHop {
                pubkey: &self.hub_id,
                payload: &hub_payload,
            },
            RouteHop {
                pubkey: &payee_id,
                payload: &final_payload,
            },
        ];
        let session = SecretKey::from_slice(&self.rng.bytes32()).unwrap();
        let mut onion = [0u8; 1366];
        let secrets = build_onion(&self.secp, &session, &route, &hash.0, &mut onion).unwrap();
        let paid_fee = if plan == Plan::LowFee {
            fee_msat - 1
        } else {
            fee_msat
        };
        let cltv = FINAL_CLTV + u32::from(CLTV_DELTA);
        let peer = &mut self.peers[payer];
        let Ok(id) = peer
            .channel
            .send_add_htlc(Msat(amount_msat + paid_fee), hash, cltv, &onion)
        else {
            return; // the payer's channel is busy (limits, or disconnected): no payment
        };
        self.payments.push(Payment {
            payer,
            payee,
            amount_msat,
            fee_msat,
            preimage,
            hash,
            secrets,
            plan,
            payer_htlc_id: id,
            outcome: None,
            resolved_epoch: 0,
            sent: Sent(onion, amount_msat + paid_fee, cltv),
        });
    }

    /// Re-sends the onion of an earlier payment from `payer`.
    fn replay_payment(&mut self, payer: usize) {
        // Only an onion the hub has already peeled (its payment is resolved) is a replay; an
        // original still in flight could lose the race to its copy. The original may be from
        // before a hub crash: the replay set is durable.
        let Some(original) = self
            .payments
            .iter()
            .rfind(|p| p.plan != Plan::Replay && p.outcome.is_some())
        else {
            return;
        };
        let Sent(onion, amount, cltv) = original.sent;
        let (hash, secrets, payee) = (original.hash, original.secrets.clone(), original.payee);
        let (amount_msat, fee_msat, preimage) =
            (original.amount_msat, original.fee_msat, original.preimage);
        let Ok(id) = self.peers[payer]
            .channel
            .send_add_htlc(Msat(amount), hash, cltv, &onion)
        else {
            return;
        };
        self.payments.push(Payment {
            payer,
            payee,
            amount_msat,
            fee_msat,
            preimage,
            hash,
            secrets,
            plan: Plan::Replay,
            payer_htlc_id: id,
            outcome: None,
            resolved_epoch: 0,
            sent: Sent(onion, amount, cltv),
        });
    }

    /// A peer signs if it can, then sends everything its channel emitted to the hub.
    fn peer_flush(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        if !peer.connected {
            return;
        }
        if peer.channel.can_sign() {
            testing::sign(&self.secp, &mut peer.channel)
                .unwrap_or_else(|e| panic!("seed {}: peer sign: {e}", self.seed));
        }
        let mut forwards = Vec::new();
        let mut resolved = Vec::new();
        while let Some(effect) = self.peers[i].channel.poll_effect() {
            match effect {
                Effect::Send(msg) => {
                    let node_id = self.peers[i].node_id;
                    self.shard_inputs[self.shard_of[i]].push_back(Input::Peer { node_id, msg });
                }
                Effect::Persist { seq } => self.peers[i].channel.handle_persisted(seq),
                Effect::Forward { htlc_id, .. } => forwards.push(htlc_id),
                Effect::Resolved {
                    htlc_id,
                    resolution,
                } => resolved.push((htlc_id, resolution)),
                Effect::BroadcastFunding { .. } => {}
                Effect::ClosingTx { .. } => {}
            }
        }
        for htlc_id in forwards {
            self.payee_receive(i, htlc_id);
        }
        for (htlc_id, resolution) in resolved {
            self.payer_resolved(i, htlc_id, resolution);
        }
    }

    /// The payee side: peel, then settle or fail as planned.
    fn payee_receive(&mut self, i: usize, htlc_id: u64) {
        let peer = &mut self.peers[i];
        let htlc = peer
            .channel
            .book()
            .htlc(Side::Remote, htlc_id)
            .expect("forwarded HTLC")
            .clone();
        let onion = *peer.channel.inbound_onion(htlc_id).expect("onion kept");
        let mut hop = PeeledHop::new();
        peel(
            &self.secp,
            &peer.secret,
            &onion,
            &htlc.payment_hash.0,
            None,
            &mut hop,
        )
        .unwrap_or_else(|e| panic!("seed {}: payee cannot peel: {e:?}", self.seed));
        assert!(
            hop.is_final(),
            "seed {}: the payee is the last hop",
            self.seed
        );
        let Ok(HopAction::Receive(r)) = hop.instructions(htlc.amount_msat, htlc.cltv_expiry) else {
            panic!("seed {}: final hop instructions", self.seed);
        };
        let payment = self
            .payments
            .iter()
            .find(|p| p.hash == htlc.payment_hash)
            .expect("known payment");
        assert_eq!(
            payment.payee, i,
            "seed {}: HTLC reached the wrong payee",
            self.seed
        );
        assert_eq!(r.amt_to_forward.0, payment.amount_msat);
        assert_eq!(
            htlc.amount_msat.0, payment.amount_msat,
            "seed {}: hub forwarded the onion's amount",
            self.seed
        );
        assert_eq!(htlc.cltv_expiry, FINAL_CLTV);
        let result = match payment.plan {
            Plan::Succeed => peer.channel.send_fulfill_htlc(htlc_id, payment.preimage),
            Plan::PayeeFails => {
                let failure = Failure::new(FailureMessage::IncorrectOrUnknownPaymentDetails {
                    htlc_msat: htlc.amount_msat,
                    height: HEIGHT,
                });
                let mut packet = Vec::new();
                create_error_packet(hop.shared_secret(), &failure, &mut packet).unwrap();
                peer.channel.send_fail_htlc(htlc_id, packet)
            }
            other => panic!(
                "seed {}: a {other:?} payment must not reach the payee",
                self.seed
            ),
        };
        if let Err(e) = result {
            // Disconnected in between: the payee retries when it is back (next flush).
            panic!("seed {}: payee could not resolve: {e:?}", self.seed);
        }
    }

    fn payer_resolved(&mut self, i: usize, htlc_id: u64, resolution: RemovalKind) {
        let (seed, crashes) = (self.seed, self.crashes);
        let payment = self
            .payments
            .iter_mut()
            .find(|p| p.payer == i && p.payer_htlc_id == htlc_id)
            .unwrap_or_else(|| panic!("seed {seed}: resolution for an unknown HTLC {i}/{htlc_id}"));
        assert!(
            payment.outcome.is_none(),
            "seed {seed}: HTLC resolved twice: {payment:?}"
        );
        payment.resolved_epoch = crashes;
        payment.outcome = Some(match resolution {
            RemovalKind::Fulfill(payment_preimage) => {
                assert_eq!(
                    payment_preimage, payment.preimage,
                    "seed {seed}: wrong preimage"
                );
                Outcome::Fulfilled
            }
            RemovalKind::Fail(reason) => {
                let decoded = decode_error_packet(&payment.secrets, &reason)
                    .unwrap_or_else(|e| panic!("seed {seed}: undecodable failure: {e:?}"));
                let failure = decoded
                    .failure
                    .unwrap_or_else(|e| panic!("seed {seed}: bad failure: {e:?}"));
                Outcome::Failed {
                    hop: decoded.hop,
                    code: failure.message.failure_code(),
                }
            }
            RemovalKind::FailMalformed { .. } => {
                panic!("seed {seed}: the hub never sends malformed here")
            }
        });
    }

    /// Delivers every queued hub message to peer `i`.
    fn deliver_to_peer(&mut self, i: usize) {
        let node_id = self.peers[i].node_id;
        if let Some(q) = self.to_peers.get_mut(&node_id) {
            self.peers[i].inbox.extend(q.drain(..));
        }
        if !self.peers[i].connected {
            self.peers[i].inbox.clear();
            return;
        }
        while let Some(msg) = self.peers[i].inbox.pop_front() {
            match msg {
                Message::Error(e) => panic!(
                    "seed {}: hub sent error: {}",
                    self.seed,
                    String::from_utf8_lossy(&e.data)
                ),
                Message::Warning(w) => panic!(
                    "seed {}: hub sent warning: {}",
                    self.seed,
                    String::from_utf8_lossy(&w.data)
                ),
                msg => {
                    let what = format!("{:?}", msg).chars().take(60).collect::<String>();
                    if let Err(e) = testing::deliver(&self.secp, &mut self.peers[i].channel, msg) {
                        panic!(
                            "seed {}: peer {i} rejected a hub message: {e} ({})",
                            self.seed, what
                        );
                    }
                }
            }
            self.peer_flush(i);
        }
    }

    fn run_shard(&mut self, s: usize) {
        let inputs: Vec<Input> = self.shard_inputs[s].drain(..).collect();
        self.with_hub_io(s, |mut store, shard, io| {
            shard
                .turn(NOW, inputs, &mut store, io)
                .expect("memory store never fails");
        });
    }

    /// The store makes shard `s`'s batch in flight durable and tells the shard.
    fn complete_commit(&mut self, s: usize) {
        let Some(batch) = self.in_flight[s].take() else {
            return;
        };
        self.store.apply(&batch);
        self.with_hub_io(s, |_, shard, io| {
            shard
                .persisted((batch, Ok(())), io)
                .expect("a durable batch");
        });
    }

    /// Runs `f` on shard `s` with the hub's view of the world; the hub must not disconnect
    /// anyone, and what it wrote to a connection that is already gone is lost with it.
    fn with_hub_io(&mut self, s: usize, f: impl FnOnce(SimStore<'_>, &mut Shard, &mut SimIo<'_>)) {
        let mut disconnects = Vec::new();
        let mut io = SimIo {
            shard: s,
            hub_connection: &mut self.hub_connection,
            live: &self.live,
            to_peers: &mut self.to_peers,
            to_shards: &mut self.shard_inputs,
            disconnects: &mut disconnects,
            replays: &mut self.replays,
        };
        let store = SimStore {
            store: &mut self.store,
            in_flight: &mut self.in_flight[s],
            deferred: self.deferred,
        };
        f(store, &mut self.shards[s], &mut io);
        assert!(
            disconnects.is_empty(),
            "seed {}: hub disconnected {:?}",
            self.seed,
            disconnects
        );
        for peer in self.peers.iter().filter(|p| !p.connected) {
            self.to_peers.remove(&peer.node_id);
        }
    }

    fn disconnect(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        if !peer.connected {
            return;
        }
        peer.connected = false;
        peer.inbox.clear();
        peer.channel.handle_disconnect();
        self.to_peers.remove(&peer.node_id);
        let node_id = peer.node_id;
        self.shard_inputs[self.shard_of[i]].push_back(Input::PeerDisconnected { node_id });
    }

    fn reconnect(&mut self, i: usize) {
        let node_id = self.peers[i].node_id;
        let hub_saw_disconnect = !self.shard_inputs[self.shard_of[i]]
            .iter()
            .any(|input| matches!(input, Input::PeerDisconnected { node_id: n } if *n == node_id));
        // A new connection only comes up once the hub has noticed the old one is gone.
        if self.peers[i].connected || !hub_saw_disconnect {
            return;
        }
        self.peers[i].connected = true;
        self.peers[i].connection += 1;
        let connection = self.peers[i].connection;
        self.live.insert(node_id, connection);
        self.peers[i].channel.handle_reconnect(&self.secp);
        self.shard_inputs[self.shard_of[i]].push_back(Input::PeerConnected {
            node_id,
            connection,
            features: lnhub_wire::features::Features::empty(),
        });
        self.peer_flush(i);
    }

    /// Kills the hub and restarts it from its store, with a shard count drawn anew (1 to 3):
    /// the stored tables are read back through the schema's loader exactly as the daemon reads
    /// LMDB at start-up, and every shard is rebuilt by the engine's own restore (channels,
    /// channels in establishment and forward links, each on the shard its peer maps to now);
    /// queues and connections are gone.
    fn crash_hub(&mut self) {
        self.crashes += 1;
        let n = self.rng.range(1, 4) as usize;
        let loaded = self.store.tables.load().expect("stored records load");
        let rounds = self.rng.range(1, 9) as usize;
        let mut shards = empty_hub(self.hub_secret, n, rounds);
        let mut replays = ReplaySet::new(ReplayConfig::default(), HEIGHT);
        lnhub_shard::restore(&mut shards, &loaded, &mut replays).expect("stored records restore");
        self.shards = shards;
        self.replays = replays;
        self.shard_inputs = vec![VecDeque::new(); n];
        // What was in flight never reached the disk.
        self.in_flight = vec![None; n];
        self.hub_connection.clear();
        for (i, peer) in self.peers.iter().enumerate() {
            self.shard_of[i] = lnhub_shard::shard_of(&peer.node_id, n);
        }
        self.to_peers.clear();
        for peer in self.peers.iter_mut().filter(|p| p.connected) {
            peer.connected = false;
            peer.inbox.clear();
            peer.channel.handle_disconnect();
        }
    }

    fn step(&mut self) {
        if self.rng.chance(1, 150) {
            return self.crash_hub();
        }
        match self.rng.range(0, 100) {
            0..=19 => {
                let payer = self.rng.range(0, CHANNELS as u64) as usize;
                let mut payee = self.rng.range(0, CHANNELS as u64 - 1) as usize;
                if payee >= payer {
                    payee += 1;
                }
                let plan = match self.rng.range(0, 12) {
                    0 => Plan::PayeeFails,
                    1 => Plan::LowFee,
                    2 => Plan::UnknownChannel,
                    3 => Plan::Replay,
                    _ => Plan::Succeed,
                };
                if self.peers[payer].connected {
                    if plan == Plan::Replay {
                        self.replay_payment(payer);
                    } else {
                        self.start_payment(payer, payee, plan);
                    }
                    self.peer_flush(payer);
                }
            }
            20..=59 => {
                let i = self.rng.range(0, CHANNELS as u64) as usize;
                self.deliver_to_peer(i);
            }
            60..=81 => {
                let s = self.rng.range(0, self.shards.len() as u64) as usize;
                self.run_shard(s);
            }
            82..=95 => {
                let s = self.rng.range(0, self.shards.len() as u64) as usize;
                if self.deferred {
                    self.complete_commit(s);
                } else {
                    self.run_shard(s);
                }
            }
            96..=97 => {
                let i = self.rng.range(0, CHANNELS as u64) as usize;
                self.disconnect(i);
            }
            _ => {
                let i = self.rng.range(0, CHANNELS as u64) as usize;
                self.reconnect(i);
            }
        }
    }

    /// Reconnects everyone and runs until nothing moves.
    fn settle(&mut self) {
        for s in 0..self.shards.len() {
            self.run_shard(s);
        }
        for i in 0..CHANNELS {
            self.reconnect(i);
        }
        for _ in 0..400 {
            for s in 0..self.shards.len() {
                self.complete_commit(s);
                self.run_shard(s);
            }
            for i in 0..CHANNELS {
                self.deliver_to_peer(i);
                self.peer_flush(i);
            }
            let idle = self.shard_inputs.iter().all(VecDeque::is_empty)
                && self.in_flight.iter().all(Option::is_none)
                && self.to_peers.values().all(VecDeque::is_empty)
                && self.shards.iter().all(|s| !s.has_pending_work());
            if idle && self.payments.iter().all(|p| p.outcome.is_some()) {
                return;
            }
        }
        let open: Vec<_> = self
            .payments
            .iter()
            .filter(|p| p.outcome.is_none())
            .collect();
        panic!("seed {}: no quiescence; unresolved: {open:#?}", self.seed);
    }

    fn check(&self) {
        let seed = self.seed;
        let mut delta_hub: i128 = 0;
        let mut delta_peer = [0i128; CHANNELS];
        for p in &self.payments {
            let outcome = p
                .outcome
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: unresolved {p:?}"));
            let expected = expected_outcome(p.plan);
            // A payee that was disconnected when the hub tried to forward makes the hub fail the
            // payment itself with temporary_channel_failure: correct, and counted.
            let unavailable = Outcome::Failed {
                hop: 0,
                code: 0x1007,
            };
            let payee_reachable_plan = !matches!(p.plan, Plan::UnknownChannel | Plan::Replay);
            // The replay set is durable: a replay is refused whether its original was seen
            // before or after a hub crash, and an original re-reported after a crash is not a
            // replay of itself. A replay the hub fails before peeling it (the incoming
            // channel's dust exposure, checked first) gets temporary_channel_failure.
            let may_be_unavailable = payee_reachable_plan || p.plan == Plan::Replay;
            assert!(
                outcome == &expected || (may_be_unavailable && outcome == &unavailable),
                "seed {seed}: expected {expected:?}, got {outcome:?} for {p:?}"
            );
            if *outcome == Outcome::Fulfilled {
                delta_peer[p.payer] -= i128::from(p.amount_msat + p.fee_msat);
                delta_peer[p.payee] += i128::from(p.amount_msat);
                delta_hub += i128::from(p.fee_msat);
            }
        }
        let mut hub_total: i128 = 0;
        let mut hub_initial: i128 = 0;
        for (i, delta) in delta_peer.iter().enumerate() {
            let slot = self.shards[self.shard_of[i]]
                .channel(&self.channel_ids[i])
                .expect("hub channel");
            assert!(
                slot.channel.book().htlcs().is_empty(),
                "seed {seed}: channel {i} still holds HTLCs"
            );
            assert!(
                self.peers[i].channel.book().htlcs().is_empty(),
                "seed {seed}: peer {i} still holds HTLCs"
            );
            let (hub_now, peer_now) = (balance(&slot.channel), balance(&self.peers[i].channel));
            assert_eq!(
                hub_now + peer_now,
                self.initial[i].0 + self.initial[i].1,
                "seed {seed}: channel {i} value"
            );
            assert_eq!(
                i128::from(peer_now) - i128::from(self.initial[i].1),
                *delta,
                "seed {seed}: peer {i} balance"
            );
            hub_total += i128::from(hub_now);
            hub_initial += i128::from(self.initial[i].0);
        }
        assert_eq!(
            hub_total - hub_initial,
            delta_hub,
            "seed {seed}: the hub earns exactly the fees"
        );
        let links: usize = self.shards.iter().map(|s| s.links().count()).sum();
        assert_eq!(links, 0, "seed {seed}: forward links left behind");
        self.check_forwarding_log(delta_hub);
    }

    /// Every payment has its entry in the durable forwarding log, keyed by the hub's incoming
    /// HTLC, with the outcome the payer saw; the settled entries' fees add up to what the hub
    /// earned. No link is left in the store.
    fn check_forwarding_log(&self, delta_hub: i128) {
        let seed = self.seed;
        let mut log = HashMap::new();
        for (table, key, value) in self.store.tables.rows() {
            match table {
                lnhub_schema::Table::Forwards => {
                    let f = lnhub_schema::decode_forward(value).expect("a log record decodes");
                    log.insert(key.to_vec(), f);
                }
                lnhub_schema::Table::Links => panic!("seed {seed}: a stored link left behind"),
                _ => {}
            }
        }
        let mut fees: i128 = 0;
        for p in &self.payments {
            let key = lnhub_schema::forward_key(&self.channel_ids[p.payer], p.payer_htlc_id);
            let f = log
                .get(&key[..])
                .unwrap_or_else(|| panic!("seed {seed}: no forwarding log entry for {p:?}"));
            let outcome = p.outcome.as_ref().expect("checked");
            match (outcome, f.outcome) {
                (Outcome::Fulfilled, ForwardOutcome::Settled) => {
                    assert_eq!(f.fee_msat().0, p.fee_msat, "seed {seed}: fee of {p:?}");
                    assert_eq!(f.out_amount_msat.0, p.amount_msat, "seed {seed}: {p:?}");
                    assert_eq!(f.out.map(|o| o.0), Some(self.channel_ids[p.payee]));
                    fees += i128::from(f.fee_msat().0);
                }
                (Outcome::Failed { hop: 0, code }, ForwardOutcome::FailedHere { failure_code }) => {
                    assert_eq!(*code, failure_code, "seed {seed}: code of {p:?}")
                }
                (Outcome::Failed { hop: 1, .. }, ForwardOutcome::FailedDownstream { .. }) => {}
                (o, logged) => {
                    panic!("seed {seed}: payer saw {o:?}, the hub logged {logged:?} for {p:?}")
                }
            }
        }
        assert_eq!(
            fees, delta_hub,
            "seed {seed}: logged fees are the fees earned"
        );
    }
}

/// The channel owner's settled balance on its current commitment.
fn balance(ch: &Channel) -> u64 {
    let mut scratch = Vec::new();
    ch.book()
        .view(lnhub_channel::View::LocalCurrent, &mut scratch)
        .balance_of(Side::Local)
}

fn run(seed: u64, steps: usize) -> Sim {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.settle();
    // An empty turn per shard: what a turn's end left for the next commit (released links and
    // their log entries) is written, as the next turn of a running hub would.
    for s in 0..sim.shards.len() {
        sim.run_shard(s);
        sim.complete_commit(s);
    }
    sim.check();
    sim
}

#[test]
fn hub_with_eight_channels_over_two_shards() {
    let one: Option<u64> = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok());
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let range: Vec<u64> = match one {
        Some(s) => vec![s],
        None => (0..seeds).collect(),
    };
    let mut payments = 0;
    let mut forwards = 0;
    let mut fulfilled = 0;
    let mut commits = 0;
    let mut replays = 0;
    let mut crashes = 0;
    for seed in range {
        let result = std::panic::catch_unwind(|| run(seed, 300));
        match result {
            Ok(sim) => {
                payments += sim.payments.len();
                fulfilled += sim
                    .payments
                    .iter()
                    .filter(|p| p.outcome == Some(Outcome::Fulfilled))
                    .count();
                commits += sim.store.commits;
                crashes += sim.crashes;
                replays += sim
                    .shards
                    .iter()
                    .map(|s| s.counters().replays_refused_total)
                    .sum::<u64>();
                forwards += sim
                    .shards
                    .iter()
                    .map(|s| s.counters().forwards_total)
                    .sum::<u64>();
            }
            Err(e) => {
                eprintln!("simulation failed with seed {seed} (rerun: SIM_SEED={seed} cargo test -p lnhub-shard --test sim)");
                std::panic::resume_unwind(e);
            }
        }
    }
    assert!(
        fulfilled * 2 > payments,
        "most payments must settle: {fulfilled} of {payments}"
    );
    assert!(
        forwards > 0 && commits > 0,
        "the simulation must forward and persist"
    );
    eprintln!(
        "{payments} payments, {fulfilled} fulfilled, {forwards} forwards, {commits} group commits, \
         {replays} replays refused, {crashes} hub crash-restarts"
    );
}

/// The daemon's store answers after the fsync: while a shard's batch is in flight its
/// `revoke_and_ack` and `commitment_signed` stay held and no second batch is submitted; once
/// the batch is durable the held messages leave, in order.
#[test]
fn messages_wait_for_the_batch_in_flight() {
    let mut sim = Sim::new(4);
    sim.deferred = true;
    let (payer, payee) = (0, 1);
    let s = sim.shard_of[payer];
    let hub_sent = |sim: &Sim, i: usize| -> Vec<&'static str> {
        sim.to_peers
            .get(&sim.peers[i].node_id)
            .map(|q| {
                q.iter()
                    .map(|m| match m {
                        Message::RevokeAndAck(_) => "revoke_and_ack",
                        Message::CommitmentSigned(_) => "commitment_signed",
                        _ => "other",
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // The payer's update_add_htlc and commitment_signed reach the hub.
    sim.start_payment(payer, payee, Plan::Succeed);
    sim.peer_flush(payer);
    sim.run_shard(s);
    assert!(sim.in_flight[s].is_some(), "the turn submitted a batch");
    assert!(
        hub_sent(&sim, payer).is_empty(),
        "nothing that depends on the batch leaves before it is durable"
    );
    // Another turn while the batch is in flight: no second batch, still nothing sent.
    let commits = sim.store.commits;
    sim.run_shard(s);
    assert_eq!(sim.store.commits, commits, "one batch in flight per shard");
    assert!(hub_sent(&sim, payer).is_empty());
    // Durable: the revoke_and_ack and the hub's commitment_signed (signed in the same turn,
    // before the batch was submitted) leave, in that order.
    sim.complete_commit(s);
    assert_eq!(
        hub_sent(&sim, payer),
        ["revoke_and_ack", "commitment_signed"]
    );
    // And the payment completes through the same path.
    sim.settle();
    sim.check();
}

/// A hub of `n` empty shards, as the runtime builds it, each running at most `rounds` rounds
/// a turn (the daemon runs 1, tests default to 8).
fn empty_hub(hub_secret: SecretKey, n: usize, rounds: usize) -> Vec<Shard> {
    (0..n)
        .map(|index| {
            let config = ShardConfig {
                index,
                node_secret: hub_secret,
                limits: Limits::default(),
                chain_hash: lnhub_wire::types::ChainHash::REGTEST,
                close_depth: lnhub_shard::DEFAULT_CLOSE_DEPTH,
                close_script: None,
                open: None,
            };
            let mut shard = Shard::new(config, HEIGHT, NOW);
            shard.set_rounds_per_turn(rounds);
            shard
        })
        .collect()
}

/// What a payment of this plan must end with when nothing else interferes.
fn expected_outcome(plan: Plan) -> Outcome {
    match plan {
        Plan::Succeed => Outcome::Fulfilled,
        Plan::PayeeFails => Outcome::Failed {
            hop: 1,
            code: 0x400f,
        },
        Plan::LowFee => Outcome::Failed {
            hop: 0,
            code: 0x100c,
        },
        Plan::UnknownChannel => Outcome::Failed {
            hop: 0,
            code: 0x400a,
        },
        Plan::Replay => Outcome::Failed {
            hop: 0,
            code: 0x2002,
        },
    }
}
