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
//! This file still holds the turn, forwarding, closing and the store seam together (about
//! 1,900 lines): it is due to be split by those concerns, with the shard made a pure crate.
//!
//! The shard does no I/O itself: messages to peers and inputs for other shards go out through
//! the [`Io`] the caller passes, durable writes through the [`Store`]. The threaded runtime
//! and the deterministic simulator drive the very same code.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use lnhub_channel::{verify_batch, Channel, ChannelError, Effect, Resolution, Routed, SendError};
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

/// Fewer channels than this are staged or signed on the shard's own thread. Handing work to
/// rayon wakes pool threads that then spin before sleeping, tens of microseconds of CPU per
/// batch, while one channel's step costs a few hundred: for two or three channels running
/// them in turn costs less CPU, and a busy shard's rounds, with many channels, still go
/// parallel.
pub const MIN_PARALLEL_CHANNELS: usize = 4;

/// How long (seconds) our closing message may wait for the peer's answer before the channel
/// is failed (`closing_signed`: BOLT 2 MUST) or the connection closed (`closing_complete`).
/// The runtime runs an empty turn every [`crate::runtime::TICK`] so the clock is looked at
/// even when nothing arrives.
pub const CLOSING_REPLY_TIMEOUT_SECS: u64 = 600;

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

/// What a submitted batch gates: released by [`Shard::persisted`] (or at once by a
/// synchronous store).
#[derive(Debug, Default)]
struct Gated {
    /// Channels and the persist sequence numbers the batch covers.
    persists: Vec<(ChannelId, u64)>,
    /// The same for channels in establishment.
    opening_persists: Vec<(ChannelId, u64)>,
    /// Every channel whose record the batch holds (their effects are drained after).
    written: Vec<ChannelId>,
    /// Inputs for shards that wait for the batch (see `Shard::held`).
    inputs: Vec<(usize, Input)>,
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

    /// Records that the restored replay-set entry `tag` was first carried by this shard's
    /// incoming HTLC `htlc_id` on `channel_id` (see [`crate::restore()`]).
    pub fn restore_replay_origin(&mut self, tag: u128, channel_id: ChannelId, htlc_id: u64) {
        self.restored_replays.insert(tag, (channel_id, htlc_id));
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

    /// Restores forward links after a restart (from the store).
    pub fn restore_link(&mut self, link: ForwardLink) {
        self.origins.insert(link.origin);
        if link.resolution.is_some() {
            self.restored_resolutions
                .push((link.out_channel_id, link.out_htlc_id));
        }
        self.links
            .insert((link.out_channel_id, link.out_htlc_id), link);
    }

    /// Restores a channel after a restart, decoded from its stored record
    /// ([`decode_channel`], which [`crate::restore()`] runs in parallel): releases what its last
    /// write gated and lets it re-report the forwards and resolutions it may not have seen
    /// acted on (at least once: the shard de-duplicates). `htlcs_on_disk` are the (offered by
    /// the peer, HTLC id) of every HTLC record stored for it. The peer counts as disconnected until
    /// it reconnects.
    pub(crate) fn insert_restored(
        &mut self,
        mut channel: Channel,
        stored: &ChannelRecord,
        htlcs_on_disk: impl IntoIterator<Item = (bool, u64)>,
    ) {
        channel.handle_restart();
        let id = channel.channel_id();
        let h = &stored.header;
        self.insert_channel(channel, h.peer, h.scid, h.policy, false);
        let slot = self.slots.get_mut(&id).expect("just inserted");
        // Every stored HTLC record, even one whose HTLC the channel's record no longer holds:
        // the next write deletes those.
        slot.htlcs_on_disk = htlcs_on_disk.into_iter().collect();
        self.touched.insert(id);
    }

    /// Appends every channel's record to `batch` (as after establishment): for tests and
    /// tools that build a shard's channels by hand and store them.
    pub fn write_channels(&mut self, batch: &mut Batch) {
        for slot in self.slots.values_mut() {
            write_channel(batch, slot);
        }
    }

    /// Restores a channel in establishment after a restart from its stored record (written
    /// once commitment 0 was signed both ways, before our `funding_signed` left): decodes it
    /// (the record is checked) and restarts it (`Establishing::handle_restart`: what the
    /// write gated is released, the messages the lost connection was to carry are dropped).
    /// BOLT 2 keeps such a channel, since the funder may have broadcast; a record from before
    /// `funding_created` (never written by a shard) is forgotten, as a disconnection would.
    /// The peer's `channel_reestablish` (or its `channel_ready`) brings our `channel_ready`
    /// again once it is due; the shard has no chain source yet, so only a zero-conf channel's
    /// is, and others stay in establishment as before the restart.
    pub fn restore_opening(
        &mut self,
        stored: &OpeningRecord,
    ) -> Result<(), lnhub_channel::DecodeError> {
        let mut est = lnhub_channel::Establishing::decode(&stored.state)?;
        est.handle_restart();
        if let Some(id) = est.channel_id() {
            let opening = crate::open::Opening {
                est,
                peer: stored.header.peer,
                alias: stored.header.alias,
            };
            self.opener.opening.insert(id, opening);
        }
        Ok(())
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

    /// Handles the round's set-aside messages in parallel (one per channel: each touches only
    /// its own channel): `revoke_and_ack`s are applied, `commitment_signed`s staged; then every
    /// staged signature is verified in one batch and applied.
    fn verify_staged(&mut self, io: &mut dyn Io) {
        if self.to_stage.is_empty() {
            return;
        }
        let mut aside = std::mem::take(&mut self.to_stage);
        let handled = self.par_channels(aside.drain(..), |secp, ch, m| match m {
            Aside::Commit(m) => ch.stage_commitment_signed(secp, m).map(Some),
            Aside::Revoke(m) => ch.handle_revoke_and_ack(secp, &m).map(|()| None),
        });
        self.to_stage = aside;
        let mut ids = Vec::with_capacity(handled.len());
        let mut stages = Vec::with_capacity(handled.len());
        for (id, result) in handled {
            match result {
                Ok(Some(stage)) => {
                    ids.push(id);
                    stages.push(stage);
                }
                Ok(None) => {}
                Err(e) => {
                    let peer = self.slots[&id].peer;
                    self.channel_error(id, peer, e, io);
                }
            }
        }
        self.counters.signatures_verified_total +=
            stages.iter().map(|s| s.checks().len() as u64).sum::<u64>();
        let results = verify_batch(&self.secp, stages);
        self.staged_ids.clear();
        for (channel_id, verified) in ids.into_iter().zip(results) {
            let Some(slot) = self.slots.get_mut(&channel_id) else {
                continue;
            };
            if let Err(e) = slot.channel.apply_commitment_signed(verified) {
                let peer = slot.peer;
                self.channel_error(channel_id, peer, e, io);
            }
        }
    }

    /// Every touched channel with updates the peer has not signed for stages and signs its
    /// `commitment_signed`, all in parallel (each stage touches only its own channel); the
    /// signed stages are then applied in turn.
    fn sign_all(&mut self) {
        // While a batch is in flight, a new `commitment_signed` could only leave with the next
        // one: signing after it is durable loses nothing and covers every update that arrived
        // meanwhile in one commitment (each commitment an HTLC sits in costs a signature and a
        // check on each side).
        if self.in_flight.is_some() {
            return;
        }
        let slots = &self.slots;
        let work: Vec<(ChannelId, ())> = self
            .touched
            .iter()
            .filter(|id| {
                slots
                    .get(*id)
                    .is_some_and(|s| s.connected && s.channel.can_sign())
            })
            .map(|id| (*id, ()))
            .collect();
        if work.is_empty() {
            return;
        }
        let signed = self.par_channels(work, |secp, ch, ()| {
            ch.stage_sign(secp).map(|s| s.map(|s| s.sign(secp)))
        });
        for (id, result) in signed {
            match result {
                Ok(Some(signed)) => {
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.channel.apply_signed(signed);
                        self.counters.commitments_signed_total += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("channel {id}: cannot sign: {e}"),
            }
        }
    }

    /// Runs `f` on each listed channel (ids distinct) in parallel on rayon (in turn below
    /// [`MIN_PARALLEL_CHANNELS`]), with its work item:
    /// each call touches only its own channel. The slots are taken out of the map for the
    /// duration, so the cost is the listed channels', not the shard's. Results come back by id.
    fn par_channels<W: Send, T: Send>(
        &mut self,
        work: impl IntoIterator<Item = (ChannelId, W)>,
        f: impl Fn(&Secp256k1<All>, &mut Channel, W) -> T + Sync,
    ) -> Vec<(ChannelId, T)> {
        let taken: Vec<(ChannelId, Slot, W)> = work
            .into_iter()
            .filter_map(|(id, w)| self.slots.remove(&id).map(|slot| (id, slot, w)))
            .collect();
        let secp = &self.secp;
        let one = |(id, mut slot, w): (ChannelId, Slot, W)| {
            let result = f(secp, &mut slot.channel, w);
            (id, slot, result)
        };
        let done: Vec<(ChannelId, Slot, T)> = if taken.len() < MIN_PARALLEL_CHANNELS {
            taken.into_iter().map(one).collect()
        } else {
            taken.into_par_iter().map(one).collect()
        };
        done.into_iter()
            .map(|(id, slot, result)| {
                self.slots.insert(id, slot);
                (id, result)
            })
            .collect()
    }

    /// Fails (or disconnects) the channels whose closing message went unanswered for
    /// [`CLOSING_REPLY_TIMEOUT_SECS`]; forgets the waits that ended.
    fn check_closing_timeouts(&mut self, io: &mut dyn Io) {
        if self.closing_wait.is_empty() {
            return;
        }
        let now = self.now;
        let mut expired = Vec::new();
        let slots = &self.slots;
        self.closing_wait.retain(|id, since| match slots.get(id) {
            Some(slot) if slot.channel.awaiting_closing_reply() => {
                if now >= since.saturating_add(CLOSING_REPLY_TIMEOUT_SECS) {
                    expired.push(*id);
                    false
                } else {
                    true
                }
            }
            _ => false,
        });
        for id in expired {
            let slot = self.slots.get_mut(&id).expect("checked above");
            if let Err(e) = slot.channel.handle_closing_timeout() {
                let peer = slot.peer;
                self.touched.insert(id);
                self.channel_error(id, peer, e, io);
            }
        }
    }

    /// The cooperative close of every touched channel, after its updates are signed: our
    /// `shutdown` when the operator asked for it or the peer's calls for a reply, then our
    /// closing signatures (rare, so signed inline).
    fn close_all(&mut self, io: &mut dyn Io) {
        // Only channels in a close (or asked to start one) have work here: on the forwarding
        // path this list is empty and allocates nothing.
        let slots = &self.slots;
        let requested = &self.close_requested;
        let ids: Vec<ChannelId> = self
            .touched
            .iter()
            .filter(|id| {
                requested.contains(*id)
                    || slots.get(*id).is_some_and(|s| s.channel.is_shutting_down())
            })
            .copied()
            .collect();
        for id in &ids {
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            let ch = &mut slot.channel;
            if !slot.connected || ch.is_failed() {
                continue;
            }
            let requested = self.close_requested.contains(id);
            if (requested || ch.needs_shutdown_reply())
                && ch.shutdown_state().local_script().is_none()
            {
                let script = crate::keys::shutdown_script(&self.secp, &self.config.node_secret, id);
                match ch.send_shutdown(script) {
                    Ok(()) => {
                        log::info!("channel {id}: shutdown sent");
                        self.close_requested.remove(id);
                    }
                    // Sign first; the next turn that touches the channel tries again.
                    Err(SendError::PendingUpdates) => {}
                    Err(e) => {
                        log::warn!("channel {id}: cannot send shutdown: {e}");
                        self.close_requested.remove(id);
                    }
                }
            } else if requested {
                self.close_requested.remove(id);
            }
            match ch.stage_closing_sign() {
                Ok(Some(staged)) => {
                    ch.apply_closing_sign(staged.sign(&self.secp));
                    if ch.awaiting_closing_reply() {
                        self.closing_wait.insert(*id, self.now);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let peer = slot.peer;
                    self.channel_error(*id, peer, e, io);
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

    /// Group commit: every channel that asked, plus forward links, in one batch handed to the
    /// store. A synchronous store makes it durable at once and what it gates is released
    /// here; otherwise the batch is in flight, the turn goes on, and [`Shard::persisted`]
    /// releases it. While a batch is in flight nothing more is submitted: what changes
    /// meanwhile waits for the next batch.
    fn commit(&mut self, store: &mut dyn Store, io: &mut dyn Io) -> Result<(), StoreError> {
        if self.in_flight.is_some() || !self.has_unwritten() {
            return Ok(());
        }
        let mut gated = Gated {
            persists: std::mem::take(&mut self.persists),
            opening_persists: std::mem::take(&mut self.opening_persists),
            written: Vec::new(),
            inputs: std::mem::take(&mut self.held),
        };
        // A link is written with its outgoing channel's state (which holds the added HTLC), even
        // when that channel asked for no write this turn: a link whose HTLC the record lacks
        // would stop the forward from ever being retried after a restart.
        let mut unique: Vec<ChannelId> = gated
            .persists
            .iter()
            .map(|(id, _)| *id)
            .chain(self.new_links.iter().map(|l| l.out_channel_id))
            .chain(self.opened.drain(..))
            .collect();
        unique.sort_unstable_by_key(|id| id.0);
        unique.dedup();
        let mut batch = self.batch.take().unwrap_or_default();
        batch.clear();
        for id in &unique {
            if let Some(slot) = self.slots.get_mut(id) {
                write_channel(&mut batch, slot);
            }
        }
        gated.written = unique;
        for link in self.new_links.drain(..) {
            write_link(&mut batch, &link);
        }
        for (id, _) in &gated.opening_persists {
            if let Some(o) = self.opener.opening.get(id) {
                write_opening(&mut batch, id, o);
            }
        }
        for (channel_id, htlc_id) in self.done_links.drain(..) {
            delete_link(&mut batch, &channel_id, htlc_id);
        }
        for (expiry, tag, channel_id, htlc_id) in self.replays_seen.drain(..) {
            batch.put_with(Table::Replays, &replay_key(expiry, tag), |out| {
                encode_replay(out, &channel_id, htlc_id)
            });
        }
        for (expiry, tag) in self.replays_forgotten.drain(..) {
            batch.delete(Table::Replays, &replay_key(expiry, tag));
        }
        for f in self.forwards_done.drain(..) {
            lnhub_schema::put_forward(&mut batch, &f);
        }
        self.counters.commits_total += 1;
        self.counters.records_total += batch.len() as u64;
        self.counters.bytes_written_total += batch.bytes() as u64;
        match store.submit(batch)? {
            Submitted::Durable(batch) => {
                self.batch = Some(batch);
                self.release(gated, io);
            }
            Submitted::InFlight => self.in_flight = Some(gated),
        }
        Ok(())
    }

    /// The store's answer for the batch in flight: on success, releases what it gated (the
    /// messages go out through `io`; forwards that became irrevocable wait for the next
    /// turn, which the caller should run now: [`Shard::has_pending_work`]). An error is final:
    /// nothing is released and the caller must stop.
    pub fn persisted(&mut self, completion: Completion, io: &mut dyn Io) -> Result<(), StoreError> {
        let (batch, result) = completion;
        result?;
        self.batch = Some(batch);
        match self.in_flight.take() {
            Some(gated) => self.release(gated, io),
            None => log::error!(
                "shard {}: a store answer with no batch in flight",
                self.config.index
            ),
        }
        Ok(())
    }

    /// Whether a batch of this shard is being written.
    pub fn commit_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Releases what a durable batch gated.
    fn release(&mut self, gated: Gated, io: &mut dyn Io) {
        for (id, seq) in gated.persists {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.channel.handle_persisted(seq);
            }
            self.touched.insert(id);
        }
        for id in gated.written {
            self.drain_channel(id, io);
        }
        let mut peers = Vec::new();
        for (id, seq) in gated.opening_persists {
            if let Some(o) = self.opener.opening.get_mut(&id) {
                o.est.handle_persisted(seq);
                peers.push(o.peer);
            }
        }
        peers.dedup();
        for peer in peers {
            self.drain_openings(peer, io);
        }
        for (shard, input) in gated.inputs {
            if shard == self.config.index {
                self.pending.push_back(input);
            } else {
                io.to_shard(shard, input);
            }
        }
    }

    /// Peels every HTLC that became irrevocably committed, in one rayon batch, and decides.
    fn peel_and_decide(&mut self, io: &mut dyn Io) {
        if self.to_peel.is_empty() {
            return;
        }
        let mut work = std::mem::take(&mut self.to_peel);
        // An HTLC already being resolved is not forwarded again: after a restart its incoming
        // channel re-reports it while its forward's stored resolution settles it; handed off
        // after that, its outgoing shard (whose link may be gone) would take it for new.
        let slots = &self.slots;
        work.retain(|w| {
            slots.get(&w.channel_id).is_some_and(|s| {
                s.channel
                    .book()
                    .htlc(lnhub_tx::Side::Remote, w.htlc_id)
                    .is_some_and(|h| h.removal.is_none())
            })
        });
        if work.is_empty() {
            return;
        }
        self.peel_slots.resize_with(work.len(), PeelSlot::default);
        {
            let slots = &self.slots;
            let inputs: Vec<PeelInput<'_>> = work
                .iter()
                .filter_map(|w| {
                    let onion = slots.get(&w.channel_id)?.channel.inbound_onion(w.htlc_id)?;
                    Some(PeelInput {
                        packet: onion,
                        payment_hash: &w.payment_hash.0,
                        path_key: None,
                    })
                })
                .collect();
            assert_eq!(
                inputs.len(),
                work.len(),
                "an HTLC reported for forwarding keeps its onion"
            );
            peel_batch(
                &self.secp,
                &self.config.node_secret,
                &inputs,
                &mut self.peel_slots[..work.len()],
            );
        }
        self.counters.onions_peeled_total += work.len() as u64;
        let routes = self.routes.clone();
        let routes = routes
            .read()
            .expect("routes lock poisoned: a shard panicked");
        let replays = self.replays.clone();
        let mut replays = replays
            .lock()
            .expect("replay set lock poisoned: a shard panicked");
        for (i, w) in work.iter().enumerate() {
            let slot = &self.peel_slots[i];
            let origin = Origin {
                shard: self.config.index,
                channel_id: w.channel_id,
                htlc_id: w.htlc_id,
            };
            let hop = match &slot.result {
                Err(OnionFailure::Malformed {
                    failure_code,
                    sha256_of_onion,
                    ..
                }) => {
                    let upstream = Upstream::FailedHereMalformed {
                        sha256_of_onion: *sha256_of_onion,
                        failure_code: *failure_code,
                    };
                    self.counters.forwards_failed_total += 1;
                    self.log_failed_here(w.channel_id, w.htlc_id, *failure_code);
                    self.pending.push_back(Input::Resolve {
                        channel_id: w.channel_id,
                        htlc_id: w.htlc_id,
                        upstream,
                        link: None,
                    });
                    continue;
                }
                Err(OnionFailure::Fail {
                    shared_secret,
                    message,
                    ..
                }) => {
                    let (ss, message) = (*shared_secret, message.clone());
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(ss), message);
                    continue;
                }
                Ok(()) => &slot.hop,
            };
            let shared_secret = *hop.shared_secret();
            // BOLT 4: an onion seen before is refused. Expiries the forward decision rejects
            // anyway (too soon, too far) are left to it.
            let expiry = hop.replay_expiry(w.cltv_expiry);
            let replays_before = self.replays_seen.len();
            match replays.check_and_insert(&shared_secret, expiry) {
                // Recorded with this shard's next commit, which a failure or a forward within
                // the shard waits for; a forward handed to another shard takes the entry along,
                // to be written with its outgoing HTLC (below).
                Ok(()) => self.replays_seen.push((
                    expiry,
                    ReplaySet::tag(&shared_secret),
                    w.channel_id,
                    w.htlc_id,
                )),
                Err(ReplayError::AlreadyExpired) | Err(ReplayError::TooFarAhead) => {}
                // The HTLC that first carried the onion, reported again after a restart.
                Err(ReplayError::Replayed)
                    if self
                        .restored_replays
                        .get(&ReplaySet::tag(&shared_secret))
                        .is_some_and(|first| *first == (w.channel_id, w.htlc_id)) => {}
                Err(ReplayError::Replayed) | Err(ReplayError::Full) => {
                    self.counters.replays_refused_total += 1;
                    let failure = FailureMessage::TemporaryNodeFailure;
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(shared_secret), failure);
                    continue;
                }
            }
            let action = match hop.instructions(w.amount_msat, w.cltv_expiry) {
                Ok(action) => action,
                Err(OnionFailure::Malformed {
                    failure_code,
                    sha256_of_onion,
                    ..
                }) => {
                    let upstream = Upstream::FailedHereMalformed {
                        sha256_of_onion,
                        failure_code,
                    };
                    self.log_failed_here(w.channel_id, w.htlc_id, failure_code);
                    self.incoming
                        .insert((w.channel_id, w.htlc_id), shared_secret);
                    self.pending.push_back(Input::Resolve {
                        channel_id: w.channel_id,
                        htlc_id: w.htlc_id,
                        upstream,
                        link: None,
                    });
                    continue;
                }
                Err(OnionFailure::Fail { message, .. }) => {
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(shared_secret), message);
                    continue;
                }
            };
            self.incoming
                .insert((w.channel_id, w.htlc_id), shared_secret);
            let forward = match action {
                HopAction::Forward(f) => f,
                HopAction::Receive(_) => {
                    // lnhub is a hub: it issues no invoices, so it is never a payee.
                    let failure = FailureMessage::IncorrectOrUnknownPaymentDetails {
                        htlc_msat: w.amount_msat,
                        height: self.height,
                    };
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(shared_secret), failure);
                    continue;
                }
            };
            let route = forward
                .short_channel_id
                .and_then(|scid| routes.get(&scid).copied());
            let (Some(route), Some(scid)) = (route, forward.short_channel_id) else {
                self.fail_incoming_here(
                    w.channel_id,
                    w.htlc_id,
                    Some(shared_secret),
                    FailureMessage::UnknownNextPeer,
                );
                continue;
            };
            let next = hop.next_packet().expect("a forward hop has a next packet");
            let replay =
                if route.shard != self.config.index && self.replays_seen.len() > replays_before {
                    self.replays_seen
                        .pop()
                        .map(|(expiry, tag, ..)| (expiry, tag))
                } else {
                    None
                };
            let handoff = HandOff {
                replay,
                origin,
                out_channel_id: route.channel_id,
                request: Request {
                    incoming_amount_msat: w.amount_msat,
                    incoming_cltv_expiry: w.cltv_expiry,
                    short_channel_id: scid,
                    amt_to_forward: forward.amt_to_forward,
                    outgoing_cltv_value: forward.outgoing_cltv_value,
                    blinded: None,
                },
                payment_hash: w.payment_hash,
                onion: *next,
            };
            if route.shard == self.config.index {
                self.pending.push_back(Input::Add(handoff));
            } else {
                io.to_shard(route.shard, Input::Add(handoff));
            }
        }
    }

    /// Logs an incoming HTLC of this shard that the hub fails itself.
    fn log_failed_here(&mut self, channel_id: ChannelId, htlc_id: u64, failure_code: u16) {
        let in_amount_msat = self
            .slots
            .get(&channel_id)
            .and_then(|s| s.channel.book().htlc(lnhub_tx::Side::Remote, htlc_id))
            .map_or(Msat(0), |h| h.amount_msat);
        self.forwards_done.push(crate::forwards::refused(
            channel_id,
            htlc_id,
            in_amount_msat,
            self.now,
            ForwardOutcome::FailedHere { failure_code },
        ));
    }

    /// Fails an incoming HTLC of this shard with a failure we create.
    fn fail_incoming_here(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        ss: Option<[u8; 32]>,
        failure: FailureMessage,
    ) {
        if let Some(ss) = ss {
            self.incoming.insert((channel_id, htlc_id), ss);
        }
        self.counters.forwards_failed_total += 1;
        self.log_failed_here(channel_id, htlc_id, failure.failure_code());
        let upstream = Upstream::FailedHere(failure);
        self.pending.push_back(Input::Resolve {
            channel_id,
            htlc_id,
            upstream,
            link: None,
        });
    }

    /// The outgoing shard's half of a forward: apply the outgoing channel's policy and add.
    fn add_outgoing(&mut self, h: HandOff) {
        if let Some((expiry, tag)) = h.replay {
            self.replays_seen
                .push((expiry, tag, h.origin.channel_id, h.origin.htlc_id));
        }
        if self.origins.contains(&h.origin) {
            // Already forwarded: a restart re-reported the incoming HTLC.
            return;
        }
        let bounce = |shard: &mut Shard, upstream: Upstream| {
            shard.counters.forwards_failed_total += 1;
            shard.forwards_done.push(crate::forwards::refused(
                h.origin.channel_id,
                h.origin.htlc_id,
                h.request.incoming_amount_msat,
                shard.now,
                crate::forwards::outcome_of(&upstream),
            ));
            // The refusal goes upstream once its log entry is durable (another shard's
            // batches are not ordered with this one's).
            let input = Input::Resolve {
                channel_id: h.origin.channel_id,
                htlc_id: h.origin.htlc_id,
                upstream,
                link: None,
            };
            if h.origin.shard == shard.config.index {
                shard.pending.push_back(input);
            } else {
                shard.held.push((h.origin.shard, input));
            }
        };
        let Some(slot) = self.slots.get_mut(&h.out_channel_id) else {
            return bounce(self, Upstream::FailedHere(FailureMessage::UnknownNextPeer));
        };
        let view = OutgoingChannel {
            short_channel_id: slot.scid,
            policy: slot.policy,
            disabled: slot.disabled,
            usable: slot.connected && slot.channel.is_operational(),
            // The channel itself checks liquidity, reserve, dust and slots when the HTLC is
            // added; a refusal there is reported as temporary_channel_failure below.
            available_msat: Msat(u64::MAX),
            free_htlc_slots: u16::MAX,
        };
        match decide(
            &h.request,
            Some(&view),
            self.height,
            self.now,
            &self.config.limits,
        ) {
            Decision::Forward {
                amount_msat,
                cltv_expiry,
                ..
            } => {
                match slot
                    .channel
                    .send_add_htlc(amount_msat, h.payment_hash, cltv_expiry, &h.onion)
                {
                    Ok(out_htlc_id) => {
                        let link = ForwardLink {
                            out_channel_id: h.out_channel_id,
                            out_htlc_id,
                            origin: h.origin,
                            in_amount_msat: h.request.incoming_amount_msat,
                            out_amount_msat: amount_msat,
                            added_at: self.now,
                            resolution: None,
                        };
                        self.links
                            .insert((h.out_channel_id, out_htlc_id), link.clone());
                        self.origins.insert(h.origin);
                        self.new_links.push(link);
                        self.touched.insert(h.out_channel_id);
                        self.counters.forwards_total += 1;
                    }
                    Err(e) => {
                        log::debug!("forward to {}: channel refused: {e:?}", h.out_channel_id);
                        let failure = FailureMessage::TemporaryChannelFailure {
                            channel_update: Vec::new(),
                        };
                        bounce(self, Upstream::FailedHere(failure))
                    }
                }
            }
            Decision::Fail(failure) => bounce(self, Upstream::FailedHere(failure)),
            Decision::FailMalformed {
                failure_code,
                sha256_of_onion,
            } => bounce(
                self,
                Upstream::FailedHereMalformed {
                    sha256_of_onion,
                    failure_code,
                },
            ),
        }
    }

    /// An outgoing HTLC of ours resolved: pass it upstream.
    fn resolved_outgoing(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        resolution: Resolution,
        io: &mut dyn Io,
    ) {
        let Some(link) = self.links.get_mut(&(channel_id, htlc_id)) else {
            log::warn!("channel {channel_id}: HTLC {htlc_id} resolved with no forward link");
            return;
        };
        let upstream = match resolution {
            Resolution::Fulfilled { payment_preimage } => Upstream::Fulfilled(payment_preimage),
            Resolution::Failed { reason } => Upstream::FailedDownstream(reason),
            Resolution::FailedMalformed {
                sha256_of_onion,
                failure_code,
            } => Upstream::FailedMalformed {
                sha256_of_onion,
                failure_code,
            },
        };
        // Durable with the outgoing channel's write that reports it (same commit).
        link.resolution = Some(upstream.clone());
        let origin = link.origin;
        self.new_links.push(link.clone());
        let link_key = Some((self.config.index, channel_id, htlc_id));
        self.send_upstream(origin, upstream, link_key, io);
    }

    fn send_upstream(
        &mut self,
        origin: Origin,
        upstream: Upstream,
        link: Option<LinkKey>,
        io: &mut dyn Io,
    ) {
        let input = Input::Resolve {
            channel_id: origin.channel_id,
            htlc_id: origin.htlc_id,
            upstream,
            link,
        };
        if origin.shard == self.config.index {
            self.pending.push_back(input);
        } else {
            io.to_shard(origin.shard, input);
        }
    }

    /// The incoming shard's half of a resolution: settle or fail the incoming HTLC.
    fn resolve_incoming(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        upstream: Upstream,
        link: Option<LinkKey>,
        io: &mut dyn Io,
    ) {
        let Some(slot) = self.slots.get_mut(&channel_id) else {
            log::warn!("resolution for unknown channel {channel_id}");
            return;
        };
        // After a restart the shared secret is gone from memory: peel the kept onion again.
        let ss = match self.incoming.get(&(channel_id, htlc_id)) {
            Some(ss) => Some(*ss),
            None => repeel(&self.secp, &self.config.node_secret, &slot.channel, htlc_id),
        };
        let packet = &mut self.packet;
        let result = match &upstream {
            Upstream::Fulfilled(preimage) => slot.channel.send_fulfill_htlc(htlc_id, *preimage),
            Upstream::FailedHereMalformed {
                sha256_of_onion,
                failure_code,
            } => slot
                .channel
                .send_fail_malformed_htlc(htlc_id, *sha256_of_onion, *failure_code),
            failure => {
                let Some(ss) = ss else {
                    log::error!(
                        "channel {channel_id}: no shared secret for HTLC {htlc_id}; cannot fail it"
                    );
                    return;
                };
                match failure {
                    Upstream::FailedDownstream(reason) => {
                        packet.clear();
                        packet.extend_from_slice(reason);
                        obfuscate_error_packet(&ss, packet);
                    }
                    Upstream::FailedMalformed {
                        sha256_of_onion,
                        failure_code,
                    } => {
                        if malformed_to_error_packet(&ss, *failure_code, *sha256_of_onion, packet)
                            .is_err()
                        {
                            // Downstream sent a code without BADONION: report it as ours.
                            let f = Failure::new(FailureMessage::TemporaryChannelFailure {
                                channel_update: Vec::new(),
                            });
                            create_error_packet(&ss, &f, packet).expect("a short failure fits");
                        }
                    }
                    Upstream::FailedHere(message) => {
                        let f = Failure::new(message.clone());
                        create_error_packet(&ss, &f, packet)
                            .expect("our failures fit a u16 length");
                    }
                    Upstream::Fulfilled(_) | Upstream::FailedHereMalformed { .. } => {
                        unreachable!("matched above")
                    }
                }
                slot.channel.send_fail_htlc(htlc_id, packet.clone())
            }
        };
        match result {
            Ok(()) => {
                if matches!(upstream, Upstream::Fulfilled(_)) {
                    self.counters.fulfills_total += 1;
                }
                self.incoming.remove(&(channel_id, htlc_id));
                self.touched.insert(channel_id);
                if let Some(link) = link {
                    self.hold_link_done(link);
                }
            }
            Err(SendError::UnknownHtlc) => {
                // Already resolved (a restart re-reported it): nothing left to do.
                self.incoming.remove(&(channel_id, htlc_id));
                if let Some(link) = link {
                    self.hold_link_done(link);
                }
            }
            Err(SendError::NotOperational) => {
                // Peer away: keep it and retry when the channel is back.
                log::debug!("channel {channel_id}: resolution of HTLC {htlc_id} parked");
                slot.parked.push((htlc_id, upstream, link));
            }
            Err(e) => log::error!("channel {channel_id}: cannot resolve HTLC {htlc_id}: {e:?}"),
        }
        let _ = io;
    }

    /// The outgoing shard may forget the forward link once this shard's next batch (with the
    /// incoming HTLC's resolution) is durable.
    fn hold_link_done(&mut self, (shard, channel_id, htlc_id): LinkKey) {
        self.held.push((
            shard,
            Input::LinkDone {
                channel_id,
                htlc_id,
            },
        ));
    }

    fn retry_parked(&mut self, io: &mut dyn Io) {
        let ids: Vec<ChannelId> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.parked.is_empty() && s.channel.is_operational())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let parked = std::mem::take(&mut self.slots.get_mut(&id).expect("listed").parked);
            for (htlc_id, upstream, link) in parked {
                self.resolve_incoming(id, htlc_id, upstream, link, io);
            }
        }
    }
}

/// Decodes a stored channel's state record with its stored HTLC records (`Loaded::htlcs_of`:
/// in (offered by the peer, HTLC id) order): pure and independent per channel, so a restore
/// runs it in parallel.
pub(crate) fn decode_channel(
    stored: &ChannelRecord,
    htlcs: &[(ChannelId, bool, u64, lnhub_schema::HtlcRecord)],
) -> Result<Channel, lnhub_channel::DecodeError> {
    Channel::decode_lean(&stored.state, &mut |side, id| {
        let key = (side == lnhub_tx::Side::Remote, id);
        let i = htlcs
            .binary_search_by(|(_, p, h, _)| (*p, *h).cmp(&key))
            .ok()?;
        let h = &htlcs[i].3;
        Some(lnhub_channel::HtlcTerms {
            amount_msat: h.amount_msat,
            payment_hash: h.payment_hash,
            cltv_expiry: h.cltv_expiry,
            over_dust_exposure: h.over_dust_exposure,
            added_after_shutdown: h.added_after_shutdown,
            onion_routing_packet: *h.onion,
        })
    })
}

/// The shared secret of an incoming HTLC, from its onion (kept by the channel while the HTLC
/// is in flight); `None` if the onion does not peel (it was failed as malformed).
fn repeel(
    secp: &Secp256k1<All>,
    node_secret: &SecretKey,
    channel: &Channel,
    htlc_id: u64,
) -> Option<[u8; 32]> {
    let htlc = channel.book().htlc(lnhub_tx::Side::Remote, htlc_id)?;
    let mut hop = lnhub_onion::PeeledHop::new();
    lnhub_onion::peel(
        secp,
        node_secret,
        &htlc.onion_routing_packet,
        &htlc.payment_hash.0,
        None,
        &mut hop,
    )
    .ok()?;
    Some(*hop.shared_secret())
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
