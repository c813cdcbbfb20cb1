//! One generated peer: a node key, a BOLT 8 connection to the hub ([`lnhub_conn`]), one
//! zero-conf anchors channel to it ([`lnhub_channel`], as funder, half its capacity pushed to
//! the hub), paying its partner through the hub while the partner pays it. Establishment is
//! blocking code on one of a few threads ([`establish`]); the payments are driven by a few
//! event loops that share all the nodes ([`pay`]), so thousands of peers do not need
//! thousands of threads.
//!
//! Nodes come in pairs (node `2i` and `2i + 1`): each keeps up to `in_flight` payments to its
//! partner outstanding (closed loop), or offers them at a fixed rate whatever is outstanding
//! (open loop, up to BOLT 2's 483), and settles what its partner sends. Both directions run
//! at the same pace, so no channel drains however long the run; a node whose balance cannot
//! carry another HTLC waits until its partner's payments refill it.
//!
//! Everything the hub receives is valid protocol: real onions (two hops: the hub, then the
//! partner, named by the alias the hub gave the partner's channel), real commitment
//! signatures, every `revoke_and_ack`. The generator's shortcuts are where the hub cannot
//! see them: a payee looks its preimage up in a table the pair shares instead of peeling its
//! onion, and nothing waits for a disk. Every preimage the hub returns is checked against its
//! hash.

pub mod pay;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version;
use bitcoin::{OutPoint, ScriptBuf, Sequence, Transaction, TxIn, Txid, Witness};
use hdrhistogram::Histogram;
use lnhub_channel::{
    Channel, Effect, Establishing, NegotiatedType, OpenRequest, PeerContext, RemovalKind,
};
use lnhub_conn::{Connection, Event, Limits, READ_CHUNK};
use lnhub_onion::error_packet::decode_error_packet;
use lnhub_onion::payload::PaymentData;
use lnhub_onion::{build_onion, OnionPacket, PayloadFields, RouteHop, ONION_PACKET_LEN};
use lnhub_peer::PeerConfig;
use lnhub_tx::ChannelType;
use lnhub_wire::msgs::{ChannelUpdate, Message};
use lnhub_wire::types::ShortChannelId;
use lnhub_wire::types::{ChainHash, ChannelId, Msat, PaymentHash, PaymentPreimage, Sat};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

/// The final hop's `outgoing_cltv_value`, above the hub's height ([`NodeConfig::height`]).
const FINAL_CLTV_DELTA: u32 = 500;
/// How long a read waits during establishment before it looks at its deadline again.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// BOLT 2's bound on HTLCs one side may have outstanding.
const MAX_HTLCS: usize = 483;

/// What one node is asked to do.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Index in the run (its partner is `index ^ 1`).
    pub index: usize,
    /// The node key.
    pub secret: SecretKey,
    /// The hub.
    pub hub_id: PublicKey,
    /// Where it listens.
    pub hub_addr: SocketAddr,
    /// Channel capacity; half of it is pushed to the hub.
    pub funding_sat: u64,
    /// Payments kept outstanding (closed loop).
    pub in_flight: usize,
    /// Open loop: payments offered per second, whatever is outstanding (`in_flight` unused).
    pub rate: Option<f64>,
    /// Amount the partner receives per payment.
    pub amount_msat: u64,
    /// The partner's key (its node id is the onion's last hop).
    pub partner: PublicKey,
    /// The block height the hub sees (the final hop's expiry is [`FINAL_CLTV_DELTA`] above
    /// it).
    pub height: u32,
}

/// The hub's forwarding policy towards one node, from the `channel_update` the hub sent it
/// for its channel (BOLT 7: a private channel's update goes to its peer): what a payer to
/// that node must add to the amount and to the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubPolicy {
    /// `fee_base_msat`.
    pub fee_base_msat: u32,
    /// `fee_proportional_millionths`.
    pub fee_proportional_millionths: u32,
    /// `cltv_expiry_delta`.
    pub cltv_expiry_delta: u16,
}

impl HubPolicy {
    /// The hub's fee for forwarding `amount_msat` (BOLT 7: base plus the proportional part,
    /// rounded down).
    pub fn fee_msat(&self, amount_msat: u64) -> u64 {
        u64::from(self.fee_base_msat)
            + (u128::from(amount_msat) * u128::from(self.fee_proportional_millionths) / 1_000_000)
                as u64
    }
}

/// What the nodes of one run share: the payment table, the partners' channel aliases, and
/// the run's phase.
pub struct Shared {
    /// payment hash -> preimage, for the payee (sharded by the hash's first byte).
    preimages: Vec<Mutex<HashMap<[u8; 32], [u8; 32]>>>,
    /// Each node's channel alias at the hub (what a payer puts in the hub's hop) and the
    /// hub's policy towards it (what a payer adds).
    aliases: Mutex<Vec<Option<(ShortChannelId, HubPolicy)>>>,
    /// Held while a node runs its BOLT 8 handshake: the hub admits only a few handshakes
    /// from one address at a time (all the nodes share 127.0.0.1).
    connecting: Mutex<()>,
    /// Latencies and counts are recorded (set after the warm-up).
    pub measuring: AtomicBool,
    /// Start no new payment.
    pub stop: AtomicBool,
    /// Leave: every payment is resolved.
    pub exit: AtomicBool,
    /// Payments offered and not yet resolved, over all nodes.
    pub outstanding: AtomicU64,
    /// Payments settled (preimage checked), over all nodes.
    pub settled: AtomicU64,
    /// Payments failed, over all nodes.
    pub failed: AtomicU64,
}

impl Shared {
    /// For `nodes` nodes.
    pub fn new(nodes: usize) -> Shared {
        Shared {
            preimages: (0..256).map(|_| Mutex::new(HashMap::new())).collect(),
            aliases: Mutex::new(vec![None; nodes]),
            connecting: Mutex::new(()),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            exit: AtomicBool::new(false),
            outstanding: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    pub(crate) fn remember(&self, hash: [u8; 32], preimage: [u8; 32]) {
        self.preimages[hash[0] as usize]
            .lock()
            .expect("preimage table")
            .insert(hash, preimage);
    }

    fn take_preimage(&self, hash: &[u8; 32]) -> Option<[u8; 32]> {
        self.preimages[hash[0] as usize]
            .lock()
            .expect("preimage table")
            .remove(hash)
    }
}

/// What one node saw while measuring.
#[derive(Debug)]
pub struct NodeReport {
    /// Payment latency (our `update_add_htlc` offered -> the preimage back), microseconds,
    /// for payments offered while measuring.
    pub latency_us: Histogram<u64>,
    /// Failed payments by BOLT 4 failure code.
    pub failures: BTreeMap<u16, u64>,
    /// Payments whose preimage did not hash to the payment hash (must stay zero).
    pub bad_preimages: u64,
    /// Payments that reached us with a hash we never issued (must stay zero).
    pub unknown_payments: u64,
}

/// A payment of ours in flight.
pub(crate) struct Outgoing {
    hash: [u8; 32],
    started: Instant,
    measured: bool,
    secrets: Vec<[u8; 32]>,
}

/// A node at work.
pub(crate) struct Node {
    config: NodeConfig,
    secp: Secp256k1<All>,
    node_id: PublicKey,
    stream: TcpStream,
    conn: Connection,
    scratch: Vec<u8>,
    read_buf: Vec<u8>,
    /// Channel messages read but not yet taken (establishment reads one at a time).
    pending: std::collections::VecDeque<Message>,
    /// The hub's `channel_update`s read during establishment.
    updates: Vec<ChannelUpdate>,
    shared: Arc<Shared>,
}

/// A node with its channel open, ready to pay once every node is ([`crate::pay::Payer`]).
pub struct Established {
    pub(crate) node: Node,
    pub(crate) channel: Channel,
}

/// Connects node `config` to the hub and opens its channel (blocking; a few seconds at most).
pub fn establish(config: NodeConfig, shared: Arc<Shared>) -> Result<Established, String> {
    let mut node = Node::connect(config, shared)?;
    let channel = node.open_channel()?;
    Ok(Established { node, channel })
}

fn hash(data: &[&[u8]]) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    for d in data {
        bitcoin::hashes::HashEngine::input(&mut engine, d);
    }
    sha256::Hash::from_engine(engine).to_byte_array()
}

fn key_from(seed: [u8; 32]) -> SecretKey {
    let mut bytes = seed;
    loop {
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            return k;
        }
        bytes = hash(&[&bytes]);
    }
}

impl Node {
    fn connect(config: NodeConfig, shared: Arc<Shared>) -> Result<Node, String> {
        let secp = Secp256k1::new();
        let node_id = PublicKey::from_secret_key(&secp, &config.secret);
        let handshake = shared.clone();
        let _one_at_a_time = handshake.connecting.lock().expect("connect lock");
        let stream = TcpStream::connect(config.hub_addr)
            .map_err(|e| format!("node {}: connect to {}: {e}", config.index, config.hub_addr))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let peer_config = PeerConfig {
            features: lnhub_peer::lnhub_features(),
            chain_hash: ChainHash::REGTEST,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
        };
        let ephemeral = key_from(hash(&[b"ephemeral", &config.secret.secret_bytes()]));
        let conn = Connection::outbound(
            &config.secret,
            &config.hub_id,
            &ephemeral,
            peer_config,
            Limits::default(),
            Instant::now(),
        );
        let mut node = Node {
            config,
            secp,
            node_id,
            stream,
            conn,
            scratch: Vec::new(),
            read_buf: vec![0; READ_CHUNK],
            pending: std::collections::VecDeque::new(),
            updates: Vec::new(),
            shared,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            node.flush()?;
            for event in node.read_events()? {
                if let Event::Ready { .. } = event {
                    return Ok(node);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("node {}: no init from the hub", node.config.index));
            }
        }
    }

    /// Writes everything the connection has to send (blocking).
    fn flush(&mut self) -> Result<(), String> {
        while !self.conn.output().is_empty() {
            let n = self
                .stream
                .write(self.conn.output())
                .map_err(|e| format!("node {}: write: {e}", self.config.index))?;
            self.conn.consume(n);
        }
        Ok(())
    }

    /// Reads once (up to the read timeout) and returns the connection's events.
    fn read_events(&mut self) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        let now = Instant::now();
        while let Some(e) = self.conn.poll(now, &mut self.scratch) {
            events.push(e);
        }
        if !self.conn.wants_read() {
            return Ok(events);
        }
        match self.stream.read(&mut self.read_buf) {
            Ok(0) => {
                return Err(format!(
                    "node {}: the hub closed the connection",
                    self.config.index
                ))
            }
            Ok(n) => self.conn.receive(&self.read_buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("node {}: read: {e}", self.config.index)),
        }
        let now = Instant::now();
        while let Some(e) = self.conn.poll(now, &mut self.scratch) {
            events.push(e);
        }
        for e in &events {
            match e {
                Event::Closed(why) => {
                    return Err(format!(
                        "node {}: connection closed: {why}",
                        self.config.index
                    ))
                }
                Event::Error { data, .. } => {
                    return Err(format!(
                        "node {}: the hub sent an error: {}",
                        self.config.index,
                        String::from_utf8_lossy(data)
                    ))
                }
                _ => {}
            }
        }
        Ok(events)
    }

    /// The next channel message from the hub (skipping gossip), within 10 s; `what` names
    /// the one awaited, for the error.
    fn recv_channel_message(&mut self, what: &str) -> Result<Message, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return Ok(msg);
            }
            self.flush()?;
            for event in self.read_events()? {
                self.keep(event);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {}: no {what} from the hub within 10 s",
                    self.config.index
                ));
            }
        }
    }

    /// Keeps what establishment reads: the hub's `channel_update`s (which the connection
    /// hands over as channel messages, since they concern one channel) and the channel's
    /// messages.
    fn keep(&mut self, event: Event) {
        match event {
            Event::Channel(Message::ChannelUpdate(u))
            | Event::Gossip(Message::ChannelUpdate(u)) => self.updates.push(u),
            Event::Channel(m) => self.pending.push_back(m),
            _ => {}
        }
    }

    fn send(&mut self, msg: &Message) {
        self.conn.send(msg, &mut self.scratch);
    }

    /// Opens a zero-conf anchors channel to the hub as its funder, pushing half the capacity;
    /// records the alias the hub gave it.
    fn open_channel(&mut self) -> Result<Channel, String> {
        let index = self.config.index;
        let err = |what: &str, e: &dyn std::fmt::Debug| format!("node {index}: {what}: {e:?}");
        let temporary = ChannelId(hash(&[b"temporary channel id", &self.node_id.serialize()]));
        let mut keys = lnhub_shard::keys::KeySource::new(self.config.secret, 0);
        let local = keys.channel_keys(&self.secp, &self.config.hub_id, &temporary);
        let req = OpenRequest {
            temporary_channel_id: temporary,
            funding_satoshis: Sat(self.config.funding_sat),
            push_msat: Msat(self.config.funding_sat * 1000 / 2),
            feerate_per_kw: 253,
            channel_type: NegotiatedType {
                commitment: ChannelType::Anchors,
                scid_alias: true,
                zeroconf: true,
            },
            announce: false,
            alias: Some(ShortChannelId(0x0100_0000_0000_0000 | index as u64)),
        };
        let ctx = PeerContext {
            trusted_for_zeroconf: true,
            ..PeerContext::default()
        };
        let config = lnhub_shard::default_establish_config(ChainHash::REGTEST);
        let mut f = Establishing::open(&self.secp, config, local, ctx, req)
            .map_err(|e| err("open_channel", &e))?;
        self.establishing_flush(&mut f);
        let Message::AcceptChannel(accept) = self.recv_channel_message("accept_channel")? else {
            return Err(format!("node {index}: expected accept_channel"));
        };
        f.handle_accept_channel(&accept)
            .map_err(|e| err("accept_channel", &e))?;
        // The funding transaction is never broadcast (the hub has no chain): any outpoint will
        // do, different per node.
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array(hash(&[b"funding", &self.node_id.serialize()])),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![f.funding_output().ok_or("no funding output")?],
        };
        let staged = f
            .stage_funding(&self.secp, &tx, 0)
            .map_err(|e| err("funding", &e))?;
        f.apply_funding_signature(staged.sign(&self.secp));
        self.establishing_flush(&mut f);
        let Message::FundingSigned(signed) = self.recv_channel_message("funding_signed")? else {
            return Err(format!("node {index}: expected funding_signed"));
        };
        let staged = f
            .stage_funding_signed(&self.secp, &signed)
            .map_err(|e| err("funding_signed", &e))?;
        f.apply_funding_signed(staged.verify(&self.secp))
            .map_err(|e| err("funding_signed", &e))?;
        let Message::ChannelReady(ready) = self.recv_channel_message("channel_ready")? else {
            return Err(format!("node {index}: expected channel_ready"));
        };
        f.handle_channel_ready(&ready)
            .map_err(|e| err("channel_ready", &e))?;
        f.handle_funding_depth(0);
        self.establishing_flush(&mut f);
        self.flush()?;
        let alias = ready
            .short_channel_id
            .ok_or_else(|| format!("node {index}: the hub gave no alias"))?;
        if !f.is_ready() {
            return Err(format!("node {index}: channel not ready"));
        }
        let policy = self.hub_policy()?;
        self.shared.aliases.lock().expect("aliases")[index] = Some((alias, policy));
        Ok(f.into_channel())
    }

    /// Waits (up to 10 s) for the hub's `channel_update` for our channel (our only one, named
    /// by the alias we gave or the hub's): the fee and expiry delta our partner adds to pay
    /// us through the hub. Channel messages read meanwhile are kept for the channel.
    fn hub_policy(&mut self) -> Result<HubPolicy, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(u) = self.updates.last() {
                return Ok(HubPolicy {
                    fee_base_msat: u.fee_base_msat,
                    fee_proportional_millionths: u.fee_proportional_millionths,
                    cltv_expiry_delta: u.cltv_expiry_delta,
                });
            }
            self.flush()?;
            for event in self.read_events()? {
                self.keep(event);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {}: no channel_update from the hub within 10 s",
                    self.config.index
                ));
            }
        }
    }

    fn establishing_flush(&mut self, f: &mut Establishing) {
        while let Some(effect) = f.poll_effect() {
            match effect {
                Effect::Send(m) => self.send(&m),
                Effect::Persist { seq } => f.handle_persisted(seq),
                _ => {}
            }
        }
    }

    /// Signs what needs signing and acts on the channel's effects until it has none.
    fn settle_effects(
        &mut self,
        channel: &mut Channel,
        outgoing: &mut HashMap<u64, Outgoing>,
        report: &mut NodeReport,
    ) -> Result<(), String> {
        let index = self.config.index;
        loop {
            let mut progress = false;
            if channel.can_sign() {
                if let Some(staged) = channel
                    .stage_sign(&self.secp)
                    .map_err(|e| format!("node {index}: sign: {e:?}"))?
                {
                    channel.apply_signed(staged.sign(&self.secp));
                    progress = true;
                }
            }
            while let Some(effect) = channel.poll_effect() {
                progress = true;
                match effect {
                    Effect::Send(msg) => self.send(&msg),
                    Effect::Persist { seq } => channel.handle_persisted(seq),
                    Effect::Forward {
                        htlc_id,
                        payment_hash,
                        ..
                    } => match self.shared.take_preimage(&payment_hash.0) {
                        Some(preimage) => channel
                            .send_fulfill_htlc(htlc_id, PaymentPreimage(preimage))
                            .map_err(|e| format!("node {index}: fulfill: {e:?}"))?,
                        None => {
                            report.unknown_payments += 1;
                            let reason = vec![0u8; 256];
                            channel
                                .send_fail_htlc(htlc_id, reason)
                                .map_err(|e| format!("node {index}: fail: {e:?}"))?;
                        }
                    },
                    Effect::Resolved {
                        htlc_id,
                        resolution,
                    } => {
                        let Some(out) = outgoing.remove(&htlc_id) else {
                            continue;
                        };
                        self.shared.outstanding.fetch_sub(1, Ordering::Relaxed);
                        self.resolved(out, resolution, report);
                    }
                    Effect::BroadcastFunding { .. } | Effect::ClosingTx { .. } => {}
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    fn resolved(&mut self, out: Outgoing, resolution: RemovalKind, report: &mut NodeReport) {
        let shared = &self.shared;
        match resolution {
            RemovalKind::Fulfill(preimage) => {
                if hash(&[&preimage.0]) != out.hash {
                    report.bad_preimages += 1;
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                shared.settled.fetch_add(1, Ordering::Relaxed);
                if out.measured {
                    let us = out.started.elapsed().as_micros() as u64;
                    let _ = report.latency_us.record(us.max(1));
                }
            }
            RemovalKind::Fail(reason) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                // Our own partner never fails a payment it knows: the failure is the hub's.
                let code = decode_error_packet(&out.secrets, &reason)
                    .ok()
                    .and_then(|d| d.failure.ok())
                    .map_or(0, |f| f.message.failure_code());
                *report.failures.entry(code).or_default() += 1;
            }
            RemovalKind::FailMalformed { failure_code, .. } => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                *report.failures.entry(failure_code).or_default() += 1;
            }
        }
    }
}

/// Node `index`'s key for payment size number `round` of a run with `seed`: derived from
/// them, so a run's node ids are known before any node starts (the hub is told to trust
/// them: `--print-trusted`), different for every size (a hub attached to keeps each size's
/// channels) and every seed (each run against one hub needs its own), and chosen so that
/// node `index` lands on the hub's shard `index % shards` (`lnhub_shard::shard_of`): every
/// shard gets peers, and with two shards every payment crosses from one to the other.
pub fn key_for(seed: u64, round: usize, index: usize, shards: usize) -> SecretKey {
    let secp = Secp256k1::signing_only();
    let shards = shards.max(1);
    let mut attempt: u64 = 0;
    loop {
        let key = key_from(hash(&[
            b"lnhub-loadgen node",
            &seed.to_be_bytes(),
            &(round as u64).to_be_bytes(),
            &(index as u64).to_be_bytes(),
            &attempt.to_be_bytes(),
        ]));
        let id = PublicKey::from_secret_key(&secp, &key);
        if lnhub_shard::shard_of(&id, shards) == index % shards {
            return key;
        }
        attempt += 1;
    }
}

/// Builds the two-hop onion: the hub (forward to `partner_alias`), then the partner (final).
#[allow(clippy::too_many_arguments)]
fn build_payment_onion(
    secp: &Secp256k1<All>,
    session_key: &SecretKey,
    config: &NodeConfig,
    (hub_id, partner_alias): (&PublicKey, ShortChannelId),
    partner: &PublicKey,
    payment_hash: &[u8; 32],
    (hub_payload, final_payload): &mut (Vec<u8>, Vec<u8>),
    onion: &mut OnionPacket,
) -> Result<Vec<[u8; 32]>, String> {
    hub_payload.clear();
    final_payload.clear();
    PayloadFields {
        amt_to_forward: Some(Msat(config.amount_msat)),
        outgoing_cltv_value: Some(config.height + FINAL_CLTV_DELTA),
        short_channel_id: Some(partner_alias),
        ..PayloadFields::default()
    }
    .write(hub_payload);
    PayloadFields {
        amt_to_forward: Some(Msat(config.amount_msat)),
        outgoing_cltv_value: Some(config.height + FINAL_CLTV_DELTA),
        payment_data: Some(PaymentData {
            payment_secret: *payment_hash,
            total_msat: Msat(config.amount_msat),
        }),
        ..PayloadFields::default()
    }
    .write(final_payload);
    let route = [
        RouteHop {
            pubkey: hub_id,
            payload: hub_payload,
        },
        RouteHop {
            pubkey: partner,
            payload: final_payload,
        },
    ];
    build_onion(secp, session_key, &route, payment_hash, onion).map_err(|e| format!("onion: {e:?}"))
}
