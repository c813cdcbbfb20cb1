//! The shard's vocabulary: what it consumes ([`Input`]), where its output goes ([`Io`]), its
//! settings and counters, a channel's slot, and the records of a forward as it travels
//! between shards.

use std::collections::HashSet;

use lnhub_channel::Channel;
use lnhub_forward::{Limits, Policy, PolicyHistory, Request};
use lnhub_metrics::histogram::{COUNT, DURATION, LATENCY};
use lnhub_metrics::labels::FAILURE_SLOTS;
use lnhub_metrics::Histogram;
use lnhub_onion::{OnionPacket, ReplayError, ReplaySet};
use lnhub_wire::features::Features;
use lnhub_wire::msgs::Message;
use lnhub_wire::types::{ChainHash, ChannelId, Msat, PaymentHash, Sat, ShortChannelId};
use secp256k1::{PublicKey, SecretKey};

use crate::open::OpenConfig;

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
    /// When the incoming HTLC became irrevocably committed (the shard clock, nanoseconds; see
    /// [`crate::Shard::set_clock`]): the outgoing shard measures the forward's latency.
    pub committed_at: u64,
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
    /// The operator opens a channel to `peer` (connected), funded by the on-chain wallet.
    OpenChannel {
        /// The peer.
        peer: PublicKey,
        /// `funding_satoshis`.
        funding: Sat,
        /// `push_msat`.
        push: Msat,
        /// Announce it (no `option_scid_alias` then).
        announce: bool,
    },
    /// The wallet's funding transaction for a channel we open ([`ChainRequest::Fund`]), or
    /// why there is none.
    FundingTx {
        /// The channel's temporary id.
        temporary_channel_id: ChannelId,
        /// The signed transaction, not broadcast.
        tx: Result<bitcoin::Transaction, String>,
    },
    /// The chain backend's news of a channel's funding output (asked for with
    /// [`ChainRequest::Watch`]): where it confirmed, how deep, and what spent it.
    Funding {
        /// The channel.
        channel_id: ChannelId,
        /// Its funding output's status.
        status: FundingStatus,
    },
    /// Another shard opened a channel: `scid` (its alias) now leads there.
    Route {
        /// The channel's `short_channel_id` (real or alias).
        scid: ShortChannelId,
        /// Where it lives.
        route: Route,
    },
    /// The operator asks to close this channel cooperatively: send `shutdown` (once the
    /// channel's pending updates are signed), let the HTLCs drain, negotiate the fee.
    CloseChannel {
        /// The channel.
        channel_id: ChannelId,
    },
    /// The operator asks for the shard's figures and channels: answered at once with
    /// [`Io::report`] and this `id`.
    Report {
        /// The caller's number for the request.
        id: u64,
    },
    /// The operator sets the forwarding policy of one channel of this shard, or of all of
    /// them: the previous policy is still honoured for the grace period, the peer receives
    /// the new `channel_update`, and the policy is written with the channel's next record.
    SetPolicy {
        /// The channel, or `None` for every channel of the shard.
        channel_id: Option<ChannelId>,
        /// What changes.
        change: PolicyChange,
    },
}

/// A channel's funding output on chain, as the chain backend sees it at its tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FundingStatus {
    /// The real `short_channel_id` (block height, transaction index, output index) once the
    /// funding transaction confirmed.
    pub scid: Option<ShortChannelId>,
    /// Its confirmations (0: unconfirmed, or no longer after a reorg), counted up to the
    /// depth the watch asked for.
    pub depth: u32,
    /// The transaction that spent the output and its confirmations (counted up to the
    /// same depth).
    pub spent: Option<(bitcoin::Txid, u32)>,
}

/// What a shard asks of the chain backend ([`Io::chain`]). Without a backend the requests
/// are dropped: channels are zero-conf and closing transactions are only logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainRequest {
    /// Watch `channel_id`'s funding output: its confirmations up to `depth` and what spends
    /// it, told back with [`Input::Funding`] whenever that changes (once at once).
    Watch {
        /// The channel.
        channel_id: ChannelId,
        /// Its funding output.
        outpoint: bitcoin::OutPoint,
        /// Depths up to this one are reported.
        depth: u32,
        /// The channel was restored from the store: its funding may have confirmed, even
        /// been spent, while lnhubd was stopped.
        restored: bool,
    },
    /// Broadcast `tx` for `channel_id`, and again at each block until it confirms.
    Broadcast {
        /// The channel.
        channel_id: ChannelId,
        /// The transaction (fully signed).
        tx: bitcoin::Transaction,
    },
    /// Build (and sign, but not broadcast) a transaction paying `amount` to `script` for the
    /// channel we open: answered with [`Input::FundingTx`].
    Fund {
        /// The channel's temporary id.
        temporary_channel_id: ChannelId,
        /// The funding output's script.
        script: bitcoin::ScriptBuf,
        /// Its amount.
        amount: Sat,
    },
    /// A funding transaction [`ChainRequest::Fund`] built will never be broadcast: its inputs
    /// are the wallet's to spend again.
    Abandon {
        /// The transaction.
        txid: bitcoin::Txid,
    },
    /// The channel is retired: stop watching and broadcasting for it.
    Forget {
        /// The channel.
        channel_id: ChannelId,
    },
}

/// A change of forwarding policy: each field set replaces the channel's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyChange {
    /// `fee_base_msat`.
    pub fee_base_msat: Option<u32>,
    /// `fee_proportional_millionths`.
    pub fee_proportional_millionths: Option<u32>,
    /// `cltv_expiry_delta`.
    pub cltv_expiry_delta: Option<u16>,
    /// `htlc_minimum_msat`.
    pub htlc_minimum_msat: Option<Msat>,
    /// `htlc_maximum_msat`.
    pub htlc_maximum_msat: Option<Msat>,
}

impl PolicyChange {
    /// `policy` with this change applied.
    pub fn apply(&self, mut policy: Policy) -> Policy {
        if let Some(v) = self.fee_base_msat {
            policy.fee_base_msat = v;
        }
        if let Some(v) = self.fee_proportional_millionths {
            policy.fee_proportional_millionths = v;
        }
        if let Some(v) = self.cltv_expiry_delta {
            policy.cltv_expiry_delta = v;
        }
        if let Some(v) = self.htlc_minimum_msat {
            policy.htlc_minimum_msat = v;
        }
        if let Some(v) = self.htlc_maximum_msat {
            policy.htlc_maximum_msat = v;
        }
        policy
    }
}

/// A shard's answer to [`Input::Report`].
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// The shard.
    pub shard: usize,
    /// Its block height.
    pub height: u32,
    /// Its counters.
    pub counters: Counters,
    /// Its channels in normal operation or closing.
    pub channels: Vec<ChannelReport>,
    /// Channels in establishment.
    pub openings: usize,
    /// Forwards whose outgoing HTLC (on this shard) is not yet resolved upstream.
    pub forwards_in_flight: usize,
}

/// Where a channel stands, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    /// Forwarding (the peer connected).
    Normal,
    /// The peer is away.
    Disconnected,
    /// `shutdown` sent or received: HTLCs drain, then the fee is negotiated.
    ShuttingDown,
    /// The closing transaction is signed.
    Closed,
    /// Failed with an error: its commitment goes on chain.
    Failed,
}

impl ChannelState {
    /// The name the API and the metrics use.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelState::Normal => "normal",
            ChannelState::Disconnected => "disconnected",
            ChannelState::ShuttingDown => "shutting_down",
            ChannelState::Closed => "closed",
            ChannelState::Failed => "failed",
        }
    }
}

/// One channel, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReport {
    /// The channel.
    pub channel_id: ChannelId,
    /// The peer.
    pub peer: PublicKey,
    /// Our alias for it (forwards name it by this).
    pub scid: ShortChannelId,
    /// The peer's alias for it, if it gave one.
    pub remote_alias: Option<ShortChannelId>,
    /// Its real `short_channel_id`, once the funding confirmed (forwards may name it too).
    pub real_scid: Option<ShortChannelId>,
    /// The funding output.
    pub funding: bitcoin::OutPoint,
    /// The closing transaction, once signed.
    pub closing_txid: Option<bitcoin::Txid>,
    /// Where it stands.
    pub state: ChannelState,
    /// Capacity.
    pub capacity_msat: u64,
    /// Our balance, HTLCs in flight excluded.
    pub local_msat: u64,
    /// The peer's balance, HTLCs in flight excluded.
    pub remote_msat: u64,
    /// HTLCs the peer offered: count and amount.
    pub htlcs_in: (usize, u64),
    /// HTLCs we offered: count and amount.
    pub htlcs_out: (usize, u64),
    /// Our forwarding policy.
    pub policy: Policy,
    /// The policy it replaced and when (unix seconds), while it may still be honoured.
    pub previous_policy: Option<(Policy, u64)>,
    /// Whether we opened (funded) it.
    pub we_funded: bool,
}

/// Default [`ShardConfig::close_depth`]: 6 confirmations, the depth wallets have long
/// treated as final.
pub const DEFAULT_CLOSE_DEPTH: u32 = 6;

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
    /// Deliver [`Input::Route`] for `scid` to every other shard (this shard opened the
    /// channel and knows its route already).
    fn publish_route(&mut self, scid: ShortChannelId, route: Route);
    /// Checks each of a peel batch's onions (shared secret, replay expiry) against the hub's
    /// replay set, which every shard shares (a replayed onion may come in on any channel),
    /// and records the new ones, in order; one result per onion in `results` (cleared first).
    fn check_replays(
        &mut self,
        onions: &[([u8; 32], u32)],
        results: &mut Vec<Result<(), ReplayError>>,
    );
    /// Moves the hub's replay set to `height`: the entries it forgets, (expiry, tag), are
    /// pushed to `forgotten` (by the first shard to report the height; the others see none).
    fn replays_at_height(&mut self, height: u32, forgotten: &mut Vec<(u32, u128)>);
    /// The answer to [`Input::Report`] `id`.
    fn report(&mut self, id: u64, report: ShardReport);
    /// Asks the chain backend to watch or broadcast (dropped when there is none).
    fn chain(&mut self, request: ChainRequest);
}

/// What an [`Io`] owning a plain replay set does for [`Io::check_replays`]: checks and records
/// each onion in order, one result per onion in `results` (cleared first).
pub fn check_replays_in(
    set: &mut ReplaySet,
    onions: &[([u8; 32], u32)],
    results: &mut Vec<Result<(), ReplayError>>,
) {
    results.clear();
    results.extend(
        onions
            .iter()
            .map(|(secret, expiry)| set.check_and_insert(secret, *expiry)),
    );
}

/// What an [`Io`] owning a plain replay set does for [`Io::replays_at_height`].
pub fn replays_at_height_in(set: &mut ReplaySet, height: u32, forgotten: &mut Vec<(u32, u128)>) {
    set.handle_block_height_with(height, |tag, expiry| forgotten.push((expiry, tag)));
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
    /// Where our cooperative closes pay us: an address of the on-chain wallet. `None`
    /// (no wallet): a P2WPKH derived from the node secret per channel
    /// ([`crate::keys::shutdown_script`]).
    pub close_script: Option<bitcoin::ScriptBuf>,
    /// Confirmations of a cooperative closing transaction after which the channel is
    /// retired: it leaves the live set and the store keeps a summary of it
    /// ([`DEFAULT_CLOSE_DEPTH`]).
    pub close_depth: u32,
    /// How to accept inbound channels; `None` refuses them all.
    pub open: Option<OpenConfig>,
}

/// What one shard counts and measures, in plain integers on its own thread: read by the
/// metrics scrape (through [`Input::Report`], folded over every shard) and by tests. Counters
/// only go up; histograms observe in nanoseconds or counts.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// Forwards logged as settled (by the outgoing shard, when the incoming side is
    /// resolved durably).
    pub forwards_settled_total: u64,
    /// Forwards logged as failed downstream, by BOLT 4 code slot
    /// (`lnhub_metrics::labels::failure_index`; the last slot: code unknown, which is every
    /// encrypted failure).
    pub forwards_failed_downstream: [u64; FAILURE_SLOTS],
    /// Forwards the hub failed itself, by BOLT 4 code slot.
    pub forwards_failed_here: [u64; FAILURE_SLOTS],
    /// Fees earned by settled forwards.
    pub fees_msat_total: u64,
    /// Outgoing amount of settled forwards.
    pub volume_msat_total: u64,
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
    /// Irrevocable commitment of an incoming HTLC to its outgoing `update_add_htlc`.
    pub forward_add_nanos: Histogram,
    /// Irrevocable commitment of an incoming HTLC to its fulfill sent upstream.
    pub forward_settle_nanos: Histogram,
    /// Irrevocable commitment of an incoming HTLC to its failure sent upstream.
    pub forward_fail_nanos: Histogram,
    /// Turn durations, as the runtime measured them ([`crate::Shard::observe_turn`]).
    pub turn_nanos: Histogram,
    /// Inputs per turn.
    pub turn_inputs: Histogram,
    /// Onions per peel batch.
    pub peel_batch: Histogram,
    /// Signatures per verification batch.
    pub verify_batch: Histogram,
    /// `commitment_signed`s per signing batch.
    pub sign_batch: Histogram,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            turns: 0,
            inputs: 0,
            forwards_total: 0,
            forwards_failed_total: 0,
            fulfills_total: 0,
            forwards_settled_total: 0,
            forwards_failed_downstream: [0; FAILURE_SLOTS],
            forwards_failed_here: [0; FAILURE_SLOTS],
            fees_msat_total: 0,
            volume_msat_total: 0,
            onions_peeled_total: 0,
            commits_total: 0,
            records_total: 0,
            bytes_written_total: 0,
            signatures_verified_total: 0,
            commitments_signed_total: 0,
            channels_failed_total: 0,
            channels_opened_total: 0,
            replays_refused_total: 0,
            channels_closed_total: 0,
            forward_add_nanos: Histogram::new(&LATENCY),
            forward_settle_nanos: Histogram::new(&LATENCY),
            forward_fail_nanos: Histogram::new(&LATENCY),
            turn_nanos: Histogram::new(&DURATION),
            turn_inputs: Histogram::new(&COUNT),
            peel_batch: Histogram::new(&COUNT),
            verify_batch: Histogram::new(&COUNT),
            sign_batch: Histogram::new(&COUNT),
        }
    }
}

impl Counters {
    /// Adds `other`'s counts (another shard's) to these.
    pub fn merge(&mut self, o: &Counters) {
        self.turns += o.turns;
        self.inputs += o.inputs;
        self.forwards_total += o.forwards_total;
        self.forwards_failed_total += o.forwards_failed_total;
        self.fulfills_total += o.fulfills_total;
        self.forwards_settled_total += o.forwards_settled_total;
        for (a, b) in self
            .forwards_failed_downstream
            .iter_mut()
            .zip(o.forwards_failed_downstream)
        {
            *a += b;
        }
        for (a, b) in self
            .forwards_failed_here
            .iter_mut()
            .zip(o.forwards_failed_here)
        {
            *a += b;
        }
        self.fees_msat_total += o.fees_msat_total;
        self.volume_msat_total += o.volume_msat_total;
        self.onions_peeled_total += o.onions_peeled_total;
        self.commits_total += o.commits_total;
        self.records_total += o.records_total;
        self.bytes_written_total += o.bytes_written_total;
        self.signatures_verified_total += o.signatures_verified_total;
        self.commitments_signed_total += o.commitments_signed_total;
        self.channels_failed_total += o.channels_failed_total;
        self.channels_opened_total += o.channels_opened_total;
        self.replays_refused_total += o.replays_refused_total;
        self.channels_closed_total += o.channels_closed_total;
        self.forward_add_nanos.merge(&o.forward_add_nanos);
        self.forward_settle_nanos.merge(&o.forward_settle_nanos);
        self.forward_fail_nanos.merge(&o.forward_fail_nanos);
        self.turn_nanos.merge(&o.turn_nanos);
        self.turn_inputs.merge(&o.turn_inputs);
        self.peel_batch.merge(&o.peel_batch);
        self.verify_batch.merge(&o.verify_batch);
        self.sign_batch.merge(&o.sign_batch);
    }
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
    /// The peer's alias for the channel (our `channel_update`s name it by this).
    pub remote_alias: Option<ShortChannelId>,
    /// Our forwarding policy on it.
    pub policy: PolicyHistory,
    /// Disabled by the operator.
    pub disabled: bool,
    /// Whether the peer is connected.
    pub connected: bool,
    /// The real `short_channel_id`, once the chain backend saw the funding confirmed.
    pub real_scid: Option<ShortChannelId>,
    /// Resolutions that could not be applied (the channel was not operational): retried
    /// every turn until they are, so a preimage is never dropped.
    pub(crate) parked: Vec<(u64, Upstream, Option<LinkKey>)>,
    /// The HTLCs (offered by the peer, id) whose terms are in the store: each is written once,
    /// with the first record of the channel that holds the HTLC.
    pub(crate) htlcs_on_disk: HashSet<(bool, u64)>,
    /// Whether the channel's static record is in the store: written once, with the channel's
    /// first record (or, for a channel restored from a record of the layout before static
    /// records, with its next one).
    pub(crate) statics_on_disk: bool,
}
