//! One shard: a set of channels owned outright (no locks on channel state), driven in turns.
//!
//! A turn takes every input that arrived (peer messages, hand-offs from other shards, chain
//! height) and runs them to quiescence in rounds:
//!
//! 1. **apply**: each input goes to its channel; a `commitment_signed` or `revoke_and_ack`
//!    (the messages whose handling needs curve arithmetic) is only *set aside*, and later
//!    inputs for that channel wait for the round's verification (a stage must be applied
//!    before anything else reaches it);
//! 2. **verify**: the set-aside messages are handled in parallel on rayon, each touching only
//!    its own channel: `revoke_and_ack`s applied (the secret checked against the point),
//!    `commitment_signed`s staged (key derivations, transaction building, sighashes); every
//!    staged signature check then runs in one rayon batch, and each stage is applied;
//! 3. **sign**: every channel with updates the peer has not signed for stages and signs its
//!    `commitment_signed`, all in parallel on rayon (updates that arrived while a
//!    `commitment_signed` was outstanding are coalesced into the next one by the channel);
//!    skipped while a batch is in flight (see below);
//! 4. **persist**: the writes of every channel that asked for one, and of forward links, go to
//!    the store in one batch ([`Store::submit`], one fsync); only once it is durable are the
//!    held `revoke_and_ack`, `commitment_signed` and fulfills released, and the forward links
//!    released to other shards. The daemon's store answers later ([`Shard::persisted`]):
//!    meanwhile the shard keeps taking inputs and verifying, and submits nothing more. It
//!    does not sign either: a new `commitment_signed` could only leave with the next batch,
//!    so signing once the first is durable loses nothing and coalesces every update that
//!    arrived meanwhile into one commitment;
//! 5. **forward**: HTLCs that became irrevocably committed are peeled in one rayon batch and
//!    decided; accepted ones are handed to the shard that owns the outgoing channel (this one
//!    included), failed ones are failed back with the exact BOLT 4 failure.
//!
//! Rounds repeat while they produce work (a hand-off to this shard, a deferred input), up to
//! [`Shard::set_rounds_per_turn`] ([`MAX_ROUNDS_PER_TURN`] by default); what is left waits for
//! the next turn, which the caller runs at once ([`Shard::has_pending_work`]). The daemon runs
//! one round per turn with a store that answers after its fsync: the turn after the answer
//! submits whatever changed during it, so one commit covers more. Nothing sleeps or waits on
//! a timer: a batch is whatever arrived.
//!
//! This file holds the shard, the turn and the routing of inputs; beside it: `types` (inputs,
//! the `Io` seam, settings, counters, slots, forward records), and the steps: `parallel`
//! (verify and sign), `persist` (the store seam), `forward` (peel,
//! decide, hand off, resolve), `closing` (the cooperative close), `operator` (reports,
//! policy changes), `restart` (rebuilding from the store).
//!
//! The shard does no I/O itself and shares no memory with other shards: messages to peers,
//! inputs for other shards and the hub's replay set go through the [`Io`] the caller passes,
//! durable writes through the [`Store`]. Each shard keeps its own copy of the route map
//! (`short_channel_id` -> owning shard), learnt at restore and from [`Input::Route`]s that a
//! shard opening a channel sends every other shard ([`Io::publish_route`]). The threaded
//! runtime and the deterministic simulator drive the very same code.

mod closing;
mod forward;
mod onchain;
mod operator;
mod parallel;
mod persist;
mod restart;
mod types;

pub use closing::CLOSING_REPLY_TIMEOUT_SECS;
pub use parallel::MIN_PARALLEL_CHANNELS;
use persist::Gated;
pub(crate) use restart::decode_channel;
pub use types::*;

use std::collections::{HashMap, HashSet, VecDeque};

use lnhub_channel::{verify_batch, Channel, ChannelError, Effect, RemovalKind, Routed, SendError};
use lnhub_forward::{decide, Decision, OutgoingChannel, PolicyHistory, Request};
use lnhub_onion::error_packet::{
    create_error_packet, malformed_to_error_packet, obfuscate_error_packet,
};
use lnhub_onion::failure::{Failure, FailureMessage};
use lnhub_onion::{peel_batch, HopAction, OnionFailure, PeelInput, PeelSlot};
use lnhub_onion::{ReplayError, ReplaySet};
use lnhub_wire::msgs::{CommitmentSigned, ErrorMessage, Message, RevokeAndAck, Warning};
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, ShortChannelId};
use rayon::prelude::*;
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::open::{channel_update, OpenOutcome, Opener};
use crate::store::{
    delete_link, write_channel, write_link, write_opening, Completion, Store, StoreError, Submitted,
};
use lnhub_schema::{
    encode_replay, replay_key, Batch, ChannelRecord, ForwardOutcome, ForwardRecord, OpeningRecord,
    Table,
};

/// Default bound on the rounds of one turn. Every round either finishes work or moves it one
/// step (a hand-off, a deferred input behind a verification); a handful covers any real turn,
/// and what is left waits for the next turn.
pub const MAX_ROUNDS_PER_TURN: usize = 8;

/// A message whose handling needs curve arithmetic, set aside for the round's parallel step.
#[derive(Debug)]
enum Aside {
    Commit(CommitmentSigned),
    Revoke(RevokeAndAck),
}

/// An HTLC that became irrevocably committed this round and waits to be peeled.
#[derive(Debug, Clone, Copy)]
struct ToPeel {
    channel_id: ChannelId,
    htlc_id: u64,
    amount_msat: Msat,
    payment_hash: PaymentHash,
    cltv_expiry: u32,
}

/// One shard. See the module docs.
pub struct Shard {
    config: ShardConfig,
    secp: Secp256k1<All>,
    node_id: PublicKey,
    opener: Opener,
    opening_persists: Vec<(ChannelId, u64)>,
    /// `short_channel_id` (real or alias) -> where its channel lives, for every shard's
    /// channels: this shard's own copy.
    routes: HashMap<ShortChannelId, Route>,
    slots: HashMap<ChannelId, Slot>,
    /// Shared secrets of incoming HTLCs being forwarded, to encrypt their failure, and when
    /// each was irrevocably committed (shard clock), for the forward's latency.
    incoming: HashMap<(ChannelId, u64), ([u8; 32], u64)>,
    /// Forward links of our outgoing HTLCs.
    links: HashMap<(ChannelId, u64), ForwardLink>,
    /// Links restored with a resolution: sent upstream again at the next turn.
    restored_resolutions: Vec<(ChannelId, u64)>,
    /// The incoming HTLCs of `links`: a forward is added once, even when a restart re-reports
    /// its incoming HTLC.
    origins: HashSet<Origin>,
    /// Channels the operator asked to close whose `shutdown` is not out yet (it waits for
    /// pending updates to be signed).
    close_requested: HashSet<ChannelId>,
    /// Channels whose closing message waits for the peer's answer, since when (unix seconds).
    closing_wait: HashMap<ChannelId, u64>,
    height: u32,
    now: u64,
    /// A monotonic clock in nanoseconds, set by the runtime before each turn
    /// ([`Shard::set_clock`]); only latencies are measured with it.
    clock: u64,
    counters: Counters,
    /// Channels whose header (policy) changed: their record is due with the next batch.
    rewrites: Vec<ChannelId>,
    // Per-turn scratch, reused.
    pending: VecDeque<Input>,
    deferred: Vec<Input>,
    /// Peers with an input in `deferred` this round.
    deferred_peers: HashSet<PublicKey>,
    /// `commitment_signed`s and `revoke_and_ack`s of this round, handled (in parallel) at the
    /// verify step: at most one per channel, its later inputs wait.
    to_stage: Vec<(ChannelId, Aside)>,
    staged_ids: HashSet<ChannelId>,
    touched: HashSet<ChannelId>,
    persists: Vec<(ChannelId, u64)>,
    new_links: Vec<ForwardLink>,
    done_links: Vec<(ChannelId, u64)>,
    /// Channels that became operational this turn: their first channel record is due.
    opened: Vec<ChannelId>,
    /// Replay-set entries (expiry, tag, incoming HTLC) this shard added, to write with its
    /// next commit.
    replays_seen: Vec<(u32, u128, ChannelId, u64)>,
    /// Entries of the replay set restored from the store whose first HTLC belongs to this
    /// shard: tag -> that HTLC. Re-reported after the restart, it is peeled again and must not
    /// count as a replay of itself (failing it upstream while its forward may settle
    /// downstream would lose the amount).
    restored_replays: HashMap<u128, (ChannelId, u64)>,
    /// Forwarding-log entries to write with the next commit (`crate::forwards`).
    forwards_done: Vec<ForwardRecord>,
    /// Replay-set entries this shard's block heights forgot, to delete with its next commit.
    replays_forgotten: Vec<(u32, u128)>,
    /// Inputs for other shards (or this one) that may only leave once this shard's next batch
    /// is durable: a released forward link (its incoming HTLC's resolution must be on disk
    /// before the outgoing shard forgets the link) and the refusal of a forward (its
    /// forwarding-log entry first).
    held: Vec<(usize, Input)>,
    to_peel: Vec<ToPeel>,
    peel_slots: Vec<PeelSlot>,
    /// A peel batch's questions to the replay set and its answers (reused).
    replay_queries: Vec<([u8; 32], u32)>,
    replay_verdicts: Vec<Result<(), ReplayError>>,
    packet: Vec<u8>,
    /// The turn's records, encoded here and handed to the store; reused (`None` while it is
    /// in flight).
    batch: Option<Batch>,
    /// What the batch in flight gates, released when the store says it is durable.
    in_flight: Option<Gated>,
    /// See [`Shard::set_rounds_per_turn`].
    rounds_per_turn: usize,
    /// Requests for the chain backend, handed to [`Io::chain`] at the end of the turn
    /// (restored channels queue theirs before any turn).
    chain_requests: Vec<ChainRequest>,
    /// Channels retired this turn, whose records the next batch replaces with a summary.
    retired: Vec<onchain::Retired>,
    /// Channels in establishment forgotten this turn (their funding never confirmed), whose
    /// records the next batch deletes.
    forgotten_openings: Vec<ChannelId>,
}

impl Shard {
    /// An empty shard at block `height` and unix time `now`.
    pub fn new(config: ShardConfig, height: u32, now: u64) -> Shard {
        let secp = Secp256k1::new();
        let node_id = PublicKey::from_secret_key(&secp, &config.node_secret);
        let mut opener = Opener::new(config.open.clone(), config.node_secret);
        opener.handle_block_height(height);
        Shard {
            config,
            secp,
            node_id,
            opener,
            opening_persists: Vec::new(),
            routes: HashMap::new(),
            slots: HashMap::new(),
            incoming: HashMap::new(),
            links: HashMap::new(),
            restored_resolutions: Vec::new(),
            origins: HashSet::new(),
            close_requested: HashSet::new(),
            closing_wait: HashMap::new(),
            height,
            now,
            clock: 0,
            counters: Counters::default(),
            rewrites: Vec::new(),
            pending: VecDeque::new(),
            deferred: Vec::new(),
            deferred_peers: HashSet::new(),
            to_stage: Vec::new(),
            staged_ids: HashSet::new(),
            touched: HashSet::new(),
            persists: Vec::new(),
            new_links: Vec::new(),
            done_links: Vec::new(),
            opened: Vec::new(),
            replays_seen: Vec::new(),
            forwards_done: Vec::new(),
            restored_replays: HashMap::new(),
            replays_forgotten: Vec::new(),
            held: Vec::new(),
            to_peel: Vec::new(),
            peel_slots: Vec::new(),
            replay_queries: Vec::new(),
            replay_verdicts: Vec::new(),
            packet: Vec::new(),
            batch: Some(Batch::new()),
            in_flight: None,
            rounds_per_turn: MAX_ROUNDS_PER_TURN,
            chain_requests: Vec::new(),
            retired: Vec::new(),
            forgotten_openings: Vec::new(),
        }
    }

    /// Learns that `scid` leads to `route` (restore, and [`Input::Route`]).
    pub fn learn_route(&mut self, scid: ShortChannelId, route: Route) {
        self.routes.insert(scid, route);
    }

    /// The routes of this shard's own channels.
    pub fn own_routes(&self) -> Vec<(ShortChannelId, Route)> {
        let index = self.config.index;
        self.routes
            .iter()
            .filter(|(_, r)| r.shard == index)
            .map(|(scid, r)| (*scid, *r))
            .collect()
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
        self.config.index
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sets the shard's monotonic clock (nanoseconds from any fixed origin shared by every
    /// shard): forward latencies are measured with it. The simulator leaves it at zero.
    pub fn set_clock(&mut self, nanos: u64) {
        self.clock = self.clock.max(nanos);
    }

    /// Records how long the runtime measured the last turn to take.
    pub fn observe_turn(&mut self, nanos: u64) {
        self.counters.turn_nanos.observe(nanos);
    }

    /// The shard's figures and channels, as [`Input::Report`] answers.
    pub fn report(&self) -> ShardReport {
        let mut channels: Vec<ChannelReport> =
            self.slots.values().map(operator::channel_report).collect();
        channels.sort_by_key(|c| c.scid.0);
        ShardReport {
            shard: self.config.index,
            height: self.height,
            counters: self.counters,
            channels,
            openings: self.opener.opening.len(),
            forwards_in_flight: self.links.len(),
        }
    }

    /// A channel of this shard.
    pub fn channel(&self, channel_id: &ChannelId) -> Option<&Slot> {
        self.slots.get(channel_id)
    }

    /// Every channel of this shard.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    /// Forward links in flight (outgoing HTLC -> incoming HTLC).
    pub fn links(&self) -> impl Iterator<Item = &ForwardLink> {
        self.links.values()
    }

    /// Takes ownership of a channel in normal operation and publishes its route.
    pub fn insert_channel(
        &mut self,
        channel: Channel,
        peer: PublicKey,
        scid: ShortChannelId,
        policy: PolicyHistory,
        connected: bool,
        remote_alias: Option<ShortChannelId>,
    ) {
        let channel_id = channel.channel_id();
        let route = Route {
            shard: self.config.index,
            channel_id,
        };
        self.routes.insert(scid, route);
        let slot = Slot {
            channel,
            peer,
            scid,
            remote_alias,
            policy,
            disabled: false,
            connected,
            real_scid: None,
            parked: Vec::new(),
            htlcs_on_disk: HashSet::new(),
            statics_on_disk: false,
        };
        self.slots.insert(channel_id, slot);
    }

    /// Runs one turn over `inputs` at unix time `now` (seconds: policy grace periods, closing
    /// timeouts, forwarding-log timestamps; see the module docs). Fails only if the store
    /// fails, in which case nothing gated on that commit was released and the caller must
    /// stop.
    pub fn turn(
        &mut self,
        now: u64,
        inputs: impl IntoIterator<Item = Input>,
        store: &mut dyn Store,
        io: &mut dyn Io,
    ) -> Result<(), StoreError> {
        self.now = self.now.max(now);
        self.counters.turns += 1;
        let inputs_before = self.counters.inputs;
        self.pending.extend(inputs);
        for key in std::mem::take(&mut self.restored_resolutions) {
            if let Some(link) = self.links.get(&key) {
                let (origin, upstream) = (link.origin, link.resolution.clone());
                if let Some(upstream) = upstream {
                    self.send_upstream(
                        origin,
                        upstream,
                        Some((self.config.index, key.0, key.1)),
                        io,
                    );
                }
            }
        }
        self.retry_parked(io);
        self.check_closing_timeouts(io);
        for _ in 0..self.rounds_per_turn {
            while let Some(input) = self.pending.pop_front() {
                self.counters.inputs += 1;
                self.apply_input(input, io);
            }
            self.verify_staged(io);
            self.sign_all();
            self.close_all(io);
            self.collect_effects(io);
            self.commit(store, io)?;
            self.peel_and_decide(io);
            self.pending.extend(self.deferred.drain(..));
            self.deferred_peers.clear();
            if !self.has_pending_work() {
                break;
            }
        }
        // Released links are forgotten now and deleted with the next commit rather than in
        // one of their own (an fsync saved per turn): until then a restart restores such a
        // link, whose resolution the incoming channel then reports as already applied
        // (`SendError::UnknownHtlc`), and the link is released again.
        if self
            .pending
            .iter()
            .any(|i| matches!(i, Input::LinkDone { .. }))
        {
            let mut rest = VecDeque::with_capacity(self.pending.len());
            for input in std::mem::take(&mut self.pending) {
                match input {
                    Input::LinkDone { .. } => self.apply_input(input, io),
                    other => rest.push_back(other),
                }
            }
            self.pending = rest;
        }
        // What the rounds did not finish (inputs behind the last round, channels with updates
        // to sign) waits for the next turn: the caller runs one without waiting for input
        // ([`Shard::has_pending_work`]).
        if self.pending.is_empty() && !self.has_unsigned() {
            self.touched.clear();
        }
        for request in self.chain_requests.drain(..) {
            io.chain(request);
        }
        self.counters
            .turn_inputs
            .observe(self.counters.inputs - inputs_before);
        Ok(())
    }

    /// Whether anything waits for the next batch: channel and opening writes, forward links,
    /// released links, forwarding-log and replay-set entries. A runtime about to wait for
    /// input runs one more, empty turn to submit them (once no batch is in flight), so an idle
    /// hub's store is up to date and nothing gated stays held.
    pub fn has_unwritten(&self) -> bool {
        !(self.persists.is_empty()
            && self.opening_persists.is_empty()
            && self.new_links.is_empty()
            && self.opened.is_empty()
            && self.rewrites.is_empty()
            && self.held.is_empty()
            && self.done_links.is_empty()
            && self.forwards_done.is_empty()
            && self.replays_seen.is_empty()
            && self.replays_forgotten.is_empty()
            && self.retired.is_empty()
            && self.forgotten_openings.is_empty())
    }

    /// Whether the last turn left work for the next one (inputs behind its last round,
    /// channels with updates to sign while no batch is in flight): a runtime runs the next
    /// turn at once, taking whatever input has arrived meanwhile, instead of waiting for input.
    pub fn has_pending_work(&self) -> bool {
        !self.pending.is_empty() || (self.in_flight.is_none() && self.has_unsigned())
    }

    /// Whether a touched channel has updates to sign.
    fn has_unsigned(&self) -> bool {
        self.touched.iter().any(|id| self.needs_signing(id))
    }

    /// How many rounds a turn runs at most before it returns, leaving the rest to the next
    /// turn (default [`MAX_ROUNDS_PER_TURN`]). Each round that persists commits once: the
    /// threaded runtime runs one round per turn, so that the next turn folds whatever arrived
    /// during the commit into the next commit.
    pub fn set_rounds_per_turn(&mut self, rounds: usize) {
        assert!(rounds > 0, "a turn runs at least one round");
        self.rounds_per_turn = rounds;
    }

    fn needs_signing(&self, channel_id: &ChannelId) -> bool {
        self.slots
            .get(channel_id)
            .is_some_and(|s| s.connected && s.channel.can_sign())
    }

    /// Whether `input` would reach a channel whose `commitment_signed` is staged and not yet
    /// verified: such an input waits for the round's verification.
    fn blocked(&self, input: &Input) -> bool {
        if self.staged_ids.is_empty() {
            return false;
        }
        let peer_staged = |node_id: &PublicKey| {
            self.staged_ids
                .iter()
                .any(|id| self.slots.get(id).is_some_and(|s| &s.peer == node_id))
        };
        match input {
            Input::Peer { msg, .. } => msg
                .channel_id()
                .is_some_and(|id| self.staged_ids.contains(&id)),
            Input::PeerConnected { node_id, .. } | Input::PeerDisconnected { node_id } => {
                peer_staged(node_id)
            }
            Input::Add(h) => self.staged_ids.contains(&h.out_channel_id),
            Input::Resolve { channel_id, .. }
            | Input::CloseChannel { channel_id }
            | Input::Funding { channel_id, .. } => self.staged_ids.contains(channel_id),
            Input::SetPolicy {
                channel_id: Some(channel_id),
                ..
            } => self.staged_ids.contains(channel_id),
            Input::LinkDone { .. }
            | Input::Route { .. }
            | Input::Report { .. }
            | Input::SetPolicy { .. }
            | Input::OpenChannel { .. }
            | Input::FundingTx { .. } => false,
            Input::BlockHeight(_) => true,
        }
    }

    fn apply_input(&mut self, input: Input, io: &mut dyn Io) {
        // A peer's inputs keep their order: once one waits, the ones behind it wait too.
        let peer = match &input {
            Input::Peer { node_id, .. }
            | Input::PeerConnected { node_id, .. }
            | Input::PeerDisconnected { node_id } => Some(*node_id),
            _ => None,
        };
        let waiting_peer = peer.is_some_and(|p| self.deferred_peers.contains(&p));
        if waiting_peer || self.blocked(&input) {
            if let Some(p) = peer {
                self.deferred_peers.insert(p);
            }
            self.deferred.push(input);
            return;
        }
        match input {
            Input::Peer { node_id, msg } => self.apply_peer_message(node_id, msg, io),
            Input::PeerConnected {
                node_id,
                connection,
                features,
            } => {
                io.connected(&node_id, connection);
                self.opener.set_features(node_id, features);
                for slot in self.slots.values_mut().filter(|s| s.peer == node_id) {
                    if slot.connected {
                        slot.channel.handle_disconnect();
                    }
                    slot.connected = true;
                    slot.channel.handle_reconnect(&self.secp);
                    self.touched.insert(slot.channel.channel_id());
                }
            }
            Input::PeerDisconnected { node_id } => {
                self.opener.handle_disconnect(&node_id);
                self.flush_opener_requests();
                for slot in self.slots.values_mut().filter(|s| s.peer == node_id) {
                    slot.connected = false;
                    slot.channel.handle_disconnect();
                }
            }
            Input::Add(handoff) => self.add_outgoing(handoff),
            Input::Resolve {
                channel_id,
                htlc_id,
                upstream,
                link,
            } => self.resolve_incoming(channel_id, htlc_id, upstream, link, io),
            Input::LinkDone {
                channel_id,
                htlc_id,
            } => {
                if let Some(link) = self.links.remove(&(channel_id, htlc_id)) {
                    self.origins.remove(&link.origin);
                    self.done_links.push((channel_id, htlc_id));
                    if let Some(resolution) = &link.resolution {
                        self.log_forward(ForwardRecord {
                            in_channel_id: link.origin.channel_id,
                            in_htlc_id: link.origin.htlc_id,
                            out: Some((channel_id, htlc_id)),
                            in_amount_msat: link.in_amount_msat,
                            out_amount_msat: link.out_amount_msat,
                            added_at: link.added_at,
                            resolved_at: self.now,
                            outcome: crate::forwards::outcome_of(resolution),
                        });
                    }
                }
            }
            Input::CloseChannel { channel_id } => {
                if self.slots.contains_key(&channel_id) {
                    self.close_requested.insert(channel_id);
                    self.touched.insert(channel_id);
                } else {
                    log::warn!("close requested for unknown channel {channel_id}");
                }
            }
            Input::Route { scid, route } => self.learn_route(scid, route),
            Input::Report { id } => io.report(id, self.report()),
            Input::SetPolicy { channel_id, change } => self.set_policy(channel_id, change, io),
            Input::Funding { channel_id, status } => self.handle_funding(channel_id, status, io),
            Input::OpenChannel {
                peer,
                funding,
                push,
                announce,
            } => match self.opener.open(&self.secp, peer, funding, push, announce) {
                Ok(id) => {
                    log::info!("opening channel {id} of {} sat to {peer}", funding.0);
                    self.drain_openings(peer, io);
                }
                Err(why) => log::warn!("cannot open a channel to {peer}: {why}"),
            },
            Input::FundingTx {
                temporary_channel_id,
                tx,
            } => {
                let peer = self
                    .opener
                    .opening
                    .get(&temporary_channel_id)
                    .map(|o| o.peer);
                let outcome = self
                    .opener
                    .handle_funding_tx(&self.secp, temporary_channel_id, tx);
                match peer {
                    Some(peer) => self.after_open(peer, outcome, io),
                    None => self.flush_opener_requests(),
                }
            }
            Input::BlockHeight(height) => {
                self.height = height;
                self.forget_expired_openings(height, io);
                // The shard that moves the shared set forward deletes what it forgets.
                io.replays_at_height(height, &mut self.replays_forgotten);
                let ids: Vec<ChannelId> = self.slots.keys().copied().collect();
                for id in ids {
                    let slot = self.slots.get_mut(&id).expect("listed");
                    if let Err(e) = slot.channel.handle_block_height(height) {
                        let peer = slot.peer;
                        self.channel_error(id, peer, e, io);
                    }
                    self.touched.insert(id);
                }
            }
        }
    }

    fn apply_peer_message(&mut self, node_id: PublicKey, msg: Message, io: &mut dyn Io) {
        let Some(channel_id) = msg.channel_id() else {
            return;
        };
        let establishing = matches!(msg, Message::OpenChannel(_) | Message::FundingCreated(_))
            || self.opener.contains(&channel_id);
        if establishing {
            let outcome = self.opener.handle(&self.secp, node_id, msg);
            return self.after_open(node_id, outcome, io);
        }
        let Some(slot) = self.slots.get_mut(&channel_id) else {
            if (32..=255).contains(&msg.msg_type()) {
                send_error(io, &node_id, channel_id, "unknown channel");
            }
            return;
        };
        if slot.peer != node_id {
            // Another peer naming our channel: BOLT 1 treats it as unknown.
            send_error(io, &node_id, channel_id, "unknown channel");
            return;
        }
        self.touched.insert(channel_id);
        let result = match slot.channel.handle_message(&self.secp, msg) {
            Ok(Routed::Done) => Ok(()),
            // The two that need curve arithmetic are set aside for the round's verify step and
            // run there with the other channels', in parallel; the channel's later inputs wait
            // for it (`blocked`).
            Ok(Routed::Commitment(m)) => {
                self.to_stage.push((channel_id, Aside::Commit(m)));
                self.staged_ids.insert(channel_id);
                Ok(())
            }
            Ok(Routed::Revoke(m)) => {
                self.to_stage.push((channel_id, Aside::Revoke(m)));
                self.staged_ids.insert(channel_id);
                Ok(())
            }
            Ok(Routed::NotForChannel(msg_type)) => {
                // BOLT 1 `error` and `warning` are the connection room's business.
                log::debug!("channel {channel_id}: ignoring message type {msg_type}");
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.channel_error(channel_id, node_id, e, io);
        }
    }

    /// Carries out the action a channel error names.
    fn channel_error(
        &mut self,
        channel_id: ChannelId,
        peer: PublicKey,
        e: ChannelError,
        io: &mut dyn Io,
    ) {
        match e {
            ChannelError::Ignore(why) => log::debug!("channel {channel_id}: ignored: {why}"),
            ChannelError::Warn(why) => {
                log::warn!("channel {channel_id}: warning peer {peer}: {why}");
                let data = why.into_bytes();
                io.send(
                    &peer,
                    Message::Warning(Warning {
                        channel_id,
                        data,
                        ..Default::default()
                    }),
                );
                io.disconnect(&peer);
            }
            ChannelError::Close(why) | ChannelError::FallenBehind(why) => {
                log::warn!("channel {channel_id}: failing: {why}");
                self.counters.channels_failed_total += 1;
                send_error(io, &peer, channel_id, &why);
            }
            ChannelError::Disconnect => io.disconnect(&peer),
        }
    }

    /// Carries out what an establishment message led to, and sends what it queued.
    fn after_open(&mut self, peer: PublicKey, outcome: OpenOutcome, io: &mut dyn Io) {
        match outcome {
            OpenOutcome::Pending => {}
            OpenOutcome::Refused(channel_id, why) => {
                log::info!("refusing channel {channel_id} from {peer}: {why}");
                send_error(io, &peer, channel_id, &why);
            }
            OpenOutcome::Ready(ready) => {
                let crate::open::Ready {
                    channel,
                    peer,
                    alias,
                    remote_alias,
                    real_scid,
                } = *ready;
                let channel_id = channel.channel_id();
                let policy = self.config.open.as_ref().map(|o| o.default_policy);
                let policy = policy.expect("channels are only accepted with an open config");
                let history = PolicyHistory::new(policy);
                self.insert_channel(channel, peer, alias, history, true, remote_alias);
                self.watch_funding(channel_id, false);
                let route = Route {
                    shard: self.config.index,
                    channel_id,
                };
                io.publish_route(alias, route);
                if let Some(scid) = real_scid {
                    self.learn_real_scid(channel_id, scid, io);
                }
                // Its record replaces the opening's in this turn's commit: a restart must find
                // an open channel open (the peer will reestablish it as one).
                self.opened.push(channel_id);
                self.counters.channels_opened_total += 1;
                self.touched.insert(channel_id);
                self.drain_channel(channel_id, io);
                self.send_channel_update(channel_id, io);
                log::info!("channel {channel_id} with {peer} is open (alias {alias})");
            }
        }
        self.watch_new_fundings(false);
        self.flush_opener_requests();
        self.drain_openings(peer, io);
    }

    /// Sends what the peer's channels in establishment queued; collects their persists.
    fn drain_openings(&mut self, peer: PublicKey, io: &mut dyn Io) {
        for (id, o) in self
            .opener
            .opening
            .iter_mut()
            .filter(|(_, o)| o.peer == peer)
        {
            while let Some(effect) = o.est.poll_effect() {
                match effect {
                    Effect::Send(msg) => io.send(&peer, msg),
                    Effect::Persist { seq } => self.opening_persists.push((*id, seq)),
                    Effect::BroadcastFunding { funding_txid } => match &o.funding_tx {
                        Some(tx) => {
                            log::info!("channel {id}: funding_signed is durable: broadcasting {funding_txid}");
                            self.chain_requests.push(ChainRequest::Broadcast {
                                channel_id: *id,
                                tx: tx.clone(),
                            });
                        }
                        None => log::error!(
                            "channel {id}: funding {funding_txid} to broadcast is unknown"
                        ),
                    },
                    other => log::debug!("channel {id} in establishment: {other:?}"),
                }
            }
        }
    }

    /// Drains the effects of every touched channel.
    fn collect_effects(&mut self, io: &mut dyn Io) {
        let ids: Vec<ChannelId> = self.touched.iter().copied().collect();
        for id in ids {
            self.drain_channel(id, io);
        }
    }

    fn drain_channel(&mut self, id: ChannelId, io: &mut dyn Io) {
        loop {
            let Some(slot) = self.slots.get_mut(&id) else {
                return;
            };
            let Some(effect) = slot.channel.poll_effect() else {
                return;
            };
            let peer = slot.peer;
            match effect {
                Effect::Send(msg) => io.send(&peer, msg),
                Effect::Persist { seq } => self.persists.push((id, seq)),
                Effect::Forward {
                    htlc_id,
                    amount_msat,
                    payment_hash,
                    cltv_expiry,
                    over_dust_exposure,
                    added_after_shutdown,
                } => {
                    if over_dust_exposure {
                        let failure = FailureMessage::TemporaryChannelFailure {
                            channel_update: Vec::new(),
                        };
                        self.fail_incoming_here(id, htlc_id, None, failure);
                    } else if added_after_shutdown {
                        // BOLT 2: "SHOULD fail to route any HTLC added after it has sent
                        // `shutdown`". The channel is closing for good.
                        self.fail_incoming_here(
                            id,
                            htlc_id,
                            None,
                            FailureMessage::PermanentChannelFailure,
                        );
                    } else {
                        self.to_peel.push(ToPeel {
                            channel_id: id,
                            htlc_id,
                            amount_msat,
                            payment_hash,
                            cltv_expiry,
                        });
                    }
                }
                Effect::Resolved {
                    htlc_id,
                    resolution,
                } => self.resolved_outgoing(id, htlc_id, resolution, io),
                Effect::BroadcastFunding { funding_txid } => {
                    log::info!("channel {id}: funding {funding_txid} may be broadcast");
                }
                Effect::ClosingTx { tx } => {
                    self.counters.channels_closed_total += 1;
                    log::info!(
                        "channel {id} closed cooperatively: tx {} ({} outputs)",
                        tx.compute_txid(),
                        tx.output.len()
                    );
                    self.chain_requests
                        .push(ChainRequest::Broadcast { channel_id: id, tx });
                }
            }
        }
    }
}

/// Sends a BOLT 1 `error` for `channel_id` to `peer`.
fn send_error(io: &mut dyn Io, peer: &PublicKey, channel_id: ChannelId, text: &str) {
    let data = text.as_bytes().to_vec();
    io.send(
        peer,
        Message::Error(ErrorMessage {
            channel_id,
            data,
            ..Default::default()
        }),
    );
}
