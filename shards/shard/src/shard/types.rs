//! The shard's vocabulary: what it consumes ([`Input`]), where its output goes ([`Io`]), its
//! settings and counters, a channel's slot, and the records of a forward as it travels
//! between shards.

use std::collections::HashSet;

use lnhub_channel::Channel;
use lnhub_forward::{Limits, PolicyHistory, Request};
use lnhub_onion::{OnionPacket, ReplayError, ReplaySet};
use lnhub_wire::features::Features;
use lnhub_wire::msgs::Message;
use lnhub_wire::types::{ChainHash, ChannelId, Msat, PaymentHash, ShortChannelId};
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
    pub(crate) parked: Vec<(u64, Upstream, Option<LinkKey>)>,
    /// The HTLCs (offered by the peer, id) whose onion is in the store: each is written once,
    /// with the first record of the channel that holds the HTLC.
    pub(crate) htlcs_on_disk: HashSet<(bool, u64)>,
}
