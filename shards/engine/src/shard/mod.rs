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
//! This file holds the shard's types, the turn and the routing of inputs; the steps live
//! beside it: `parallel` (verify and sign), `persist` (the store seam), `forward` (peel,
//! decide, hand off, resolve), `closing` (the cooperative close), `restart` (rebuilding from
//! the store). The shard is still in the shell crate `lnhub-engine` (it shares the route map
//! and the replay set through locks); making it a pure crate of its own is the next step.
//!
//! The shard does no I/O itself: messages to peers and inputs for other shards go out through
//! the [`Io`] the caller passes, durable writes through the [`Store`]. The threaded runtime
//! and the deterministic simulator drive the very same code.

mod closing;
mod forward;
mod parallel;
mod persist;
mod restart;

pub use closing::CLOSING_REPLY_TIMEOUT_SECS;
pub use parallel::MIN_PARALLEL_CHANNELS;
use persist::Gated;
pub(crate) use restart::decode_channel;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use lnhub_channel::{verify_batch, Channel, ChannelError, Effect, RemovalKind, Routed, SendError};
use lnhub_forward::{decide, Decision, Limits, OutgoingChannel, PolicyHistory, Request};
use lnhub_onion::error_packet::{
    create_error_packet, malformed_to_error_packet, obfuscate_error_packet,
};
use lnhub_onion::failure::{Failure, FailureMessage};
use lnhub_onion::{peel_batch, HopAction, OnionFailure, OnionPacket, PeelInput, PeelSlot};
use lnhub_onion::{ReplayConfig, ReplayError, ReplaySet};
use lnhub_wire::features::Features;
use lnhub_wire::msgs::{CommitmentSigned, ErrorMessage, Message, RevokeAndAck, Warning};
use lnhub_wire::types::{ChainHash, ChannelId, Msat, PaymentHash, ShortChannelId};
use rayon::prelude::*;
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::open::{channel_update, OpenConfig, OpenOutcome, Opener};
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

/// A forward link's key with the shard that holds it: (shard, outgoing channel, HTLC id).
pub type LinkKey = (usize, ChannelId, u64);

/// Where a channel lives: which shard, and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the owning shard.
    pub shard: usize,
    /// The channel.
    pub channel_id: ChannelId,
}

/// `short_channel_id` (real or alias) to channel, shared by all shards; written only when a
/// channel opens or closes, read once per forward.
pub type Routes = Arc<RwLock<HashMap<ShortChannelId, Route>>>;

/// Onions seen recently, shared by all shards (a replayed onion can come in on any channel):
/// locked once per peel batch.
pub type Replays = Arc<Mutex<ReplaySet>>;

/// The incoming HTLC a forward started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Shard of the incoming channel.
    pub shard: usize,
    /// Incoming channel.
    pub channel_id: ChannelId,
    /// Incoming HTLC id.
    pub htlc_id: u64,
}

/// A forward in flight, kept (durably) by the outgoing shard until the incoming HTLC is
/// resolved: the outgoing HTLC pays back to `origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardLink {
    /// Outgoing channel.
    pub out_channel_id: ChannelId,
    /// Outgoing HTLC id.
    pub out_htlc_id: u64,
    /// The incoming HTLC.
    pub origin: Origin,
    /// Incoming amount (for the forwarding record: fee earned = in - out).
    pub in_amount_msat: Msat,
    /// Outgoing amount.
    pub out_amount_msat: Msat,
    /// When the outgoing HTLC was added (unix seconds).
    pub added_at: u64,
    /// How the outgoing HTLC ended, recorded in the same write as the outgoing channel's
    /// state that reports it: after a restart the resolution is sent upstream again, even if
    /// the outgoing HTLC has since left its channel's books.
    pub resolution: Option<Upstream>,
}

/// An accepted-so-far forward, on its way to the outgoing channel's shard, which applies its
/// policy and adds the HTLC.
#[derive(Debug, Clone)]
pub struct HandOff {
    /// The incoming HTLC.
    pub origin: Origin,
    /// The outgoing channel.
    pub out_channel_id: ChannelId,
    /// What the onion asks for, for the forwarding decision.
    pub request: Request,
    /// `payment_hash` of both HTLCs.
    pub payment_hash: PaymentHash,
    /// The peeled onion for the next hop.
    pub onion: OnionPacket,
    /// The onion's new replay-set entry (expiry, tag), when the incoming shard is another:
    /// the outgoing shard writes it in the same commit as the outgoing HTLC, so no forward
    /// leaves before its entry is durable.
    pub replay: Option<(u32, u128)>,
}

/// How a forward ended downstream (or could not start), sent to the incoming shard; the
/// record type of `lnhub-schema`, since a forward link stores it.
pub use lnhub_schema::Upstream;

/// What a shard consumes.
// Hand-offs carry their 1366-byte onion inline: a queue slot is allocated once, a box would
// allocate per forward.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A channel message from a connected peer.
    Peer {
        /// The peer.
        node_id: PublicKey,
        /// The message (its `channel_id` picks the channel).
        msg: Message,
    },
    /// The peer's connection is up (after `init`): channels resume with `channel_reestablish`.
    PeerConnected {
        /// The peer.
        node_id: PublicKey,
        /// The features both `init`s negotiated (`lnhub_wire::features::negotiate`): they
        /// fix what new channels with this peer may use.
        features: Features,
        /// Which connection (the connection room's number for it): everything the shard
        /// sends after this belongs to it, see [`Io::connected`].
        connection: u64,
    },
    /// The peer's connection is gone.
    PeerDisconnected {
        /// The peer.
        node_id: PublicKey,
    },
    /// Add this forward to one of our channels.
    Add(HandOff),
    /// Resolve this incoming HTLC of one of our channels.
    Resolve {
        /// Incoming channel.
        channel_id: ChannelId,
        /// Incoming HTLC id.
        htlc_id: u64,
        /// How.
        upstream: Upstream,
        /// The forward link to release once this resolution is durable (`None` when the
        /// forward never reached an outgoing channel).
        link: Option<LinkKey>,
    },
    /// The incoming side of a forward is resolved durably: forget its link.
    LinkDone {
        /// Outgoing channel.
        channel_id: ChannelId,
        /// Outgoing HTLC id.
        htlc_id: u64,
    },
    /// A new block height.
    BlockHeight(u32),
    /// The operator asks to close this channel cooperatively: send `shutdown` (once the
    /// channel's pending updates are signed), let the HTLCs drain, negotiate the fee.
    CloseChannel {
        /// The channel.
        channel_id: ChannelId,
    },
}

/// Where a shard's output goes.
pub trait Io {
    /// The shard now sends to `node_id`'s connection number `connection`. Sends before this
    /// call belonged to an earlier connection and must not reach this one: a
    /// `revoke_and_ack` made for the old link, arriving before our `channel_reestablish`,
    /// makes the peer fail the channel.
    fn connected(&mut self, node_id: &PublicKey, connection: u64);
    /// Send `msg` to `node_id` (in order with earlier sends to it).
    fn send(&mut self, node_id: &PublicKey, msg: Message);
    /// Close the connection to `node_id` (after the messages already sent to it).
    fn disconnect(&mut self, node_id: &PublicKey);
    /// Deliver `input` to shard `shard` (never this shard: the shard keeps its own).
    fn to_shard(&mut self, shard: usize, input: Input);
}

/// A shard's static settings.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This shard's index.
    pub index: usize,
    /// Our node secret (onion peeling).
    pub node_secret: SecretKey,
    /// Forwarding limits.
    pub limits: Limits,
    /// The chain (for our `channel_update`s).
    pub chain_hash: ChainHash,
    /// How to accept inbound channels; `None` refuses them all.
    pub open: Option<OpenConfig>,
}

/// Monotonic counters of one shard, read by the metrics exporter (a later issue) and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Turns run.
    pub turns: u64,
    /// Inputs handled.
    pub inputs: u64,
    /// HTLCs added to an outgoing channel.
    pub forwards_total: u64,
    /// Forwards failed by this shard (policy, liquidity, onion), as incoming shard or outgoing.
    pub forwards_failed_total: u64,
    /// Incoming HTLCs fulfilled upstream.
    pub fulfills_total: u64,
    /// Onions peeled.
    pub onions_peeled_total: u64,
    /// Store commits (group-commit batches).
    pub commits_total: u64,
    /// Records written.
    pub records_total: u64,
    /// Bytes of keys and values written.
    pub bytes_written_total: u64,
    /// Signatures verified (commitment + HTLC).
    pub signatures_verified_total: u64,
    /// `commitment_signed` messages produced.
    pub commitments_signed_total: u64,
    /// Channels failed (error sent, on-chain close due).
    pub channels_failed_total: u64,
    /// Inbound channels that reached normal operation.
    pub channels_opened_total: u64,
    /// Onions refused as replays (or with the replay set full).
    pub replays_refused_total: u64,
    /// Channels whose cooperative close produced a signed closing transaction.
    pub channels_closed_total: u64,
}

/// A channel and what the shard knows around it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The state machine.
    pub channel: Channel,
    /// The peer.
    pub peer: PublicKey,
    /// The `short_channel_id` (or alias) forwards name it by.
    pub scid: ShortChannelId,
    /// Our forwarding policy on it.
    pub policy: PolicyHistory,
    /// Disabled by the operator.
    pub disabled: bool,
    /// Whether the peer is connected.
    pub connected: bool,
    /// Resolutions that could not be applied (the channel was not operational): retried
    /// every turn until they are, so a preimage is never dropped.
    parked: Vec<(u64, Upstream, Option<LinkKey>)>,
    /// The HTLCs (offered by the peer, id) whose onion is in the store: each is written once,
    /// with the first record of the channel that holds the HTLC.
    pub(crate) htlcs_on_disk: HashSet<(bool, u64)>,
}

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
    routes: Routes,
    replays: Replays,
    slots: HashMap<ChannelId, Slot>,
    /// Shared secrets of incoming HTLCs being forwarded, to encrypt their failure.
    incoming: HashMap<(ChannelId, u64), [u8; 32]>,
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
    counters: Counters,
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
    packet: Vec<u8>,
    /// The turn's records, encoded here and handed to the store; reused (`None` while it is
    /// in flight).
    batch: Option<Batch>,
    /// What the batch in flight gates, released when the store says it is durable.
    in_flight: Option<Gated>,
    /// See [`Shard::set_rounds_per_turn`].
    rounds_per_turn: usize,
}

impl Shard {
    /// An empty shard.
    pub fn new(config: ShardConfig, routes: Routes, height: u32, now: u64) -> Shard {
        let secp = Secp256k1::new();
        let node_id = PublicKey::from_secret_key(&secp, &config.node_secret);
        let opener = Opener::new(config.open.clone(), config.node_secret);
        Shard {
            config,
            secp,
            node_id,
            opener,
            opening_persists: Vec::new(),
            routes,
            replays: Arc::new(Mutex::new(ReplaySet::new(ReplayConfig::default(), height))),
            slots: HashMap::new(),
            incoming: HashMap::new(),
            links: HashMap::new(),
            restored_resolutions: Vec::new(),
            origins: HashSet::new(),
            close_requested: HashSet::new(),
            closing_wait: HashMap::new(),
            height,
            now,
            counters: Counters::default(),
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
            packet: Vec::new(),
            batch: Some(Batch::new()),
            in_flight: None,
            rounds_per_turn: MAX_ROUNDS_PER_TURN,
        }
    }

    /// The replay set this shard uses (shared by all shards of a hub).
    pub fn replays(&self) -> &Replays {
        &self.replays
    }

    /// Shares one replay set between shards (the runtime gives all shards the same).
    pub fn share_replays(&mut self, replays: Replays) {
        self.replays = replays;
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
        self.config.index
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
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
    ) {
        let channel_id = channel.channel_id();
        self.routes
            .write()
            .expect("routes lock poisoned: a shard panicked")
            .insert(
                scid,
                Route {
                    shard: self.config.index,
                    channel_id,
                },
            );
        let slot = Slot {
            channel,
            peer,
            scid,
            policy,
            disabled: false,
            connected,
            parked: Vec::new(),
            htlcs_on_disk: HashSet::new(),
        };
        self.slots.insert(channel_id, slot);
    }

    /// Sets the wall-clock time (unix seconds) used for policy grace periods.
    pub fn set_time(&mut self, now: u64) {
        self.now = now;
    }

    /// Runs one turn over `inputs` (see the module docs). Fails only if the store fails, in
    /// which case nothing gated on that commit was released and the caller must stop.
    pub fn turn(
        &mut self,
        inputs: impl IntoIterator<Item = Input>,
        store: &mut dyn Store,
        io: &mut dyn Io,
    ) -> Result<(), StoreError> {
        self.counters.turns += 1;
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
            && self.held.is_empty()
            && self.done_links.is_empty()
            && self.forwards_done.is_empty()
            && self.replays_seen.is_empty()
            && self.replays_forgotten.is_empty())
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
            Input::Resolve { channel_id, .. } | Input::CloseChannel { channel_id } => {
                self.staged_ids.contains(channel_id)
            }
            Input::LinkDone { .. } => false,
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
                        self.forwards_done.push(ForwardRecord {
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
            Input::BlockHeight(height) => {
                self.height = height;
                // The shard that moves the shared set forward deletes what it forgets.
                let forgotten = &mut self.replays_forgotten;
                self.replays
                    .lock()
                    .expect("replay set lock poisoned")
                    .handle_block_height_with(height, |tag, expiry| forgotten.push((expiry, tag)));
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
            OpenOutcome::Ready(channel, peer, alias, remote_alias) => {
                let channel_id = channel.channel_id();
                let policy = self.config.open.as_ref().map(|o| o.default_policy);
                let policy = policy.expect("channels are only accepted with an open config");
                let capacity_msat = channel.book().capacity_msat();
                self.insert_channel(*channel, peer, alias, PolicyHistory::new(policy), true);
                // Its record replaces the opening's in this turn's commit: a restart must find
                // an open channel open (the peer will reestablish it as one).
                self.opened.push(channel_id);
                self.counters.channels_opened_total += 1;
                self.touched.insert(channel_id);
                self.drain_channel(channel_id, io);
                let update = channel_update(
                    &self.secp,
                    &self.config.node_secret,
                    self.config.chain_hash,
                    remote_alias.unwrap_or(alias),
                    &self.node_id,
                    &peer,
                    &policy,
                    capacity_msat,
                    u32::try_from(self.now).unwrap_or(u32::MAX),
                );
                io.send(&peer, Message::ChannelUpdate(update));
                log::info!("channel {channel_id} with {peer} is open (alias {alias})");
            }
        }
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
                // Not broadcast yet: that needs the chain source (a later issue).
                Effect::ClosingTx { tx } => {
                    self.counters.channels_closed_total += 1;
                    log::info!(
                        "channel {id} closed cooperatively: tx {} ready to broadcast ({} outputs)",
                        tx.compute_txid(),
                        tx.output.len()
                    );
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
