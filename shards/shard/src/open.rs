//! Channel establishment in a shard (BOLT 2 "Channel Establishment v1"), both roles.
//!
//! Fundee: `open_channel` -> `accept_channel`, `funding_created` -> `funding_signed` (after the
//! state is durable), `channel_ready` both ways, then the channel joins the shard's running
//! channels and the peer gets our private `channel_update` (BOLT 7), which a payee needs to
//! put the channel in its invoices' route hints.
//!
//! Funder ([`Opener::open`], the operator's `openchannel`): `open_channel` ->
//! `accept_channel`, then the wallet builds the funding transaction (asked through the shard's
//! `Io`, answered with [`Opener::handle_funding_tx`]), `funding_created` -> `funding_signed`,
//! which is written with the funding transaction before the transaction is broadcast.
//!
//! Zero-conf channels (`option_zeroconf`, peers the operator trusts) are ready at once.
//! Others wait for the funding's `minimum_depth`, which the chain backend reports
//! ([`Opener::handle_funding`]); a fundee forgets a funding never seen after
//! [`FUNDING_TIMEOUT_BLOCKS`].
//!
//! The write before `funding_signed` stores the encoded state machine
//! (`Establishing::encode`, `lnhub_schema::OpeningRecord`); after a crash
//! [`crate::Shard::restore_opening`] decodes and restarts it. A peer reconnecting to a channel
//! still waiting for `channel_ready` sends `channel_reestablish` (BOLT 2): we answer with ours
//! (commitment 0 both ways) and our `channel_ready` again (`Establishing::handle_channel_reestablish`).
//! The moment both `channel_ready`s are exchanged the channel's own records (its static record
//! and its record) replace the opening's, in the same turn's commit, so a restart finds an open
//! channel as open.

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::{sha256, Hash};
use lnhub_channel::{
    Channel, ChannelError, ChannelPolicy, EstablishConfig, Establishing, NegotiatedType,
    OpenRequest, PeerContext, PeerParamLimits,
};
use lnhub_forward::Policy;
use lnhub_tx::ChannelType;
use lnhub_wire::features::{self, Features};
use lnhub_wire::msgs::{
    AcceptChannel, ChannelUpdate, FundingCreated, FundingSigned, Message, OpenChannel,
};
use lnhub_wire::types::{ChainHash, ChannelId, Msat, Sat, ShortChannelId};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::keys::{sign_channel_update, KeySource};
use crate::shard::FundingStatus;

/// Blocks a fundee waits for a funding transaction that never confirms before it forgets the
/// channel (BOLT 2: "SHOULD forget the channel if it does not see the correct funding
/// transaction after a timeout of 2016 blocks").
pub const FUNDING_TIMEOUT_BLOCKS: u32 = 2016;

/// Lowest block number of our scid aliases. Real `short_channel_id`s start with the funding
/// block height, which stays below 2^23 for the next ~150 years; aliases from the top half of
/// the 24-bit range never collide with one (BOLT 2: aliases "MUST NOT be a real scid").
const ALIAS_MIN_BLOCK: u32 = 1 << 23;

/// The establishment parameters lnhub uses: the documented defaults of [`EstablishConfig`] and
/// [`PeerParamLimits`] (each field there says why its value).
pub fn default_establish_config(chain_hash: ChainHash) -> EstablishConfig {
    EstablishConfig {
        chain_hash,
        dust_limit_satoshis: Sat(546),
        to_self_delay: 144,
        // No cap below the channel's own size: the reserve and the HTLC count bound exposure.
        max_htlc_value_in_flight_msat: Msat(u64::MAX),
        channel_reserve_proportional_millionths: 10_000,
        htlc_minimum_msat: Msat(1),
        max_accepted_htlcs: 483,
        minimum_depth: 3,
        policy: ChannelPolicy {
            max_dust_htlc_exposure_msat: Msat(5_000_000),
            min_feerate_per_kw: 253,
            max_feerate_per_kw: 100_000,
        },
        peer_limits: PeerParamLimits {
            max_to_self_delay: 2016,
            min_funding_satoshis: Sat(10_000),
            max_htlc_minimum_msat: Msat(1_000_000),
            min_max_htlc_value_in_flight_msat: Msat(1_000),
            max_channel_reserve_proportional_millionths: 200_000,
            min_max_accepted_htlcs: 5,
            max_dust_limit_satoshis: Sat(20_000),
            max_minimum_depth: 144,
        },
    }
}

/// What a shard needs to accept channels.
#[derive(Debug, Clone)]
pub struct OpenConfig {
    /// Establishment parameters (what we announce, what we accept).
    pub establish: EstablishConfig,
    /// Peers allowed zero-conf channels.
    pub trusted_peers: HashSet<PublicKey>,
    /// The forwarding policy new channels start with.
    pub default_policy: Policy,
    /// Start of the key-derivation nonce (OS randomness from the shell, see [`KeySource`]).
    pub key_nonce_start: u64,
}

/// A channel being opened.
#[derive(Debug, Clone)]
pub struct Opening {
    /// The state machine.
    pub est: Establishing,
    /// The peer.
    pub peer: PublicKey,
    /// The alias we gave the peer (and that forwards will name).
    pub alias: ShortChannelId,
    /// What the chain backend last said of the funding output.
    pub funding: FundingStatus,
    /// The block height when we accepted the funding (0 until known: a record from before
    /// it was kept gets the first height seen after the restart).
    pub funding_accepted_at: u32,
    /// Our funding transaction, when we fund the channel (broadcast once the peer's
    /// `funding_signed` is durable).
    pub funding_tx: Option<bitcoin::Transaction>,
}

impl Opening {
    /// A channel just proposed or accepted: nothing known of its funding yet.
    pub fn new(est: Establishing, peer: PublicKey, alias: ShortChannelId) -> Opening {
        Opening {
            est,
            peer,
            alias,
            funding: FundingStatus::default(),
            funding_accepted_at: 0,
            funding_tx: None,
        }
    }
}

/// The feerate of commitment 0 of a channel we open (sat per 1,000 weight): the floor for an
/// anchors channel, whose commitments are bumped with a child when they must confirm; 2,500
/// otherwise, as a commitment without anchors must confirm at the fee it was signed with.
fn open_feerate(commitment: ChannelType) -> u32 {
    if commitment.has_anchors() {
        253
    } else {
        2_500
    }
}

/// A channel that finished establishment, for [`OpenOutcome::Ready`].
pub struct Ready {
    /// The channel in normal operation.
    pub channel: Channel,
    /// The peer.
    pub peer: PublicKey,
    /// Our alias.
    pub alias: ShortChannelId,
    /// The peer's alias.
    pub remote_alias: Option<ShortChannelId>,
    /// The real `short_channel_id`, once confirmed.
    pub real_scid: Option<ShortChannelId>,
}

/// The establishment side of a shard.
pub struct Opener {
    config: Option<OpenConfig>,
    keys: Option<KeySource>,
    /// Keyed by temporary id until `funding_created`, then by channel id.
    pub(crate) opening: HashMap<ChannelId, Opening>,
    /// The features each connected peer's `init` negotiated with ours.
    features: HashMap<PublicKey, Features>,
    /// Channels whose funding output became known (after `funding_created`, or restored),
    /// for the shard to have watched.
    pub(crate) new_fundings: Vec<ChannelId>,
    /// Channels we open whose funding transaction the wallet is to build: temporary id,
    /// funding script, amount.
    pub(crate) fund_requests: Vec<(ChannelId, bitcoin::ScriptBuf, Sat)>,
    /// Funding transactions built for openings that ended before they could be broadcast:
    /// the wallet may spend their inputs again.
    pub(crate) abandoned: Vec<bitcoin::Txid>,
    /// Openings forgotten after their funding output was watched: the watch ends.
    pub(crate) unwatched: Vec<ChannelId>,
    /// The shard's block height.
    height: u32,
}

/// What handling an establishment message led to.
pub enum OpenOutcome {
    /// Nothing more for the shard to do.
    Pending,
    /// The channel is ready: insert it. Carries the peer, our alias (forwards name it),
    /// the peer's alias (our `channel_update` must name it: the peer matches updates against
    /// the alias it gave us, LDK silently drops others) and the real `short_channel_id` when
    /// the funding confirmed.
    Ready(Box<Ready>),
    /// Refused: send this `error` for the channel.
    Refused(ChannelId, String),
}

impl Opener {
    /// `config` `None`: refuse every channel (no durable store configured).
    pub fn new(config: Option<OpenConfig>, node_secret: SecretKey) -> Opener {
        let keys = config
            .as_ref()
            .map(|c| KeySource::new(node_secret, c.key_nonce_start));
        Opener {
            config,
            keys,
            opening: HashMap::new(),
            features: HashMap::new(),
            new_fundings: Vec::new(),
            fund_requests: Vec::new(),
            abandoned: Vec::new(),
            unwatched: Vec::new(),
            height: 0,
        }
    }

    /// A new block height: returns the channels whose funding never confirmed within
    /// [`FUNDING_TIMEOUT_BLOCKS`] of its acceptance, with their peers, now forgotten.
    pub fn handle_block_height(&mut self, height: u32) -> Vec<(ChannelId, PublicKey)> {
        self.height = height;
        let mut expired = Vec::new();
        for (id, o) in &mut self.opening {
            // The funder never forgets: it may spend its funding inputs elsewhere instead.
            if o.est.channel_id().is_none() || o.est.minimum_depth() == 0 || o.est.is_funder() {
                continue;
            }
            if o.funding_accepted_at == 0 {
                o.funding_accepted_at = height;
            }
            let waited = height.saturating_sub(o.funding_accepted_at);
            if o.funding.scid.is_none() && waited >= FUNDING_TIMEOUT_BLOCKS {
                expired.push((*id, o.peer));
            }
        }
        for (id, _) in &expired {
            self.opening.remove(id);
        }
        expired
    }

    /// `peer` connected with these negotiated features.
    pub fn set_features(&mut self, peer: PublicKey, features: Features) {
        self.features.insert(peer, features);
    }

    /// Whether `channel_id` is in establishment.
    pub fn contains(&self, channel_id: &ChannelId) -> bool {
        self.opening.contains_key(channel_id)
    }

    /// Handles an establishment message from `peer`.
    pub fn handle(&mut self, secp: &Secp256k1<All>, peer: PublicKey, msg: Message) -> OpenOutcome {
        match msg {
            Message::OpenChannel(m) => self.handle_open(secp, peer, &m),
            Message::FundingCreated(m) => self.handle_funding_created(secp, peer, &m),
            Message::AcceptChannel(m) => self.handle_accept(peer, &m),
            Message::FundingSigned(m) => self.handle_funding_signed(secp, peer, &m),
            Message::ChannelReady(m) => {
                let Some(o) = self.opening.get_mut(&m.channel_id) else {
                    return OpenOutcome::Pending;
                };
                if o.peer != peer {
                    return OpenOutcome::Refused(m.channel_id, "unknown channel".into());
                }
                // Ours goes first if it is due and not out yet (after a restart, a peer may
                // skip `channel_reestablish`).
                o.est.handle_funding_depth(o.funding.depth);
                if let Err(e) = o.est.handle_channel_ready(&m) {
                    return self.fail(m.channel_id, e);
                }
                self.ready_or_pending(&m.channel_id)
            }
            Message::ChannelReestablish(m) => {
                let Some(o) = self.opening.get_mut(&m.channel_id) else {
                    return OpenOutcome::Refused(m.channel_id, "unknown channel".into());
                };
                if o.peer != peer {
                    return OpenOutcome::Refused(m.channel_id, "unknown channel".into());
                }
                let depth = o.funding.depth;
                match o.est.handle_channel_reestablish(secp, &m, depth) {
                    Ok(()) => OpenOutcome::Pending,
                    Err(e) => self.fail(m.channel_id, e),
                }
            }
            other => OpenOutcome::Refused(
                other.channel_id().unwrap_or(ChannelId::ZERO),
                format!(
                    "unexpected message type {} during establishment",
                    other.msg_type()
                ),
            ),
        }
    }

    /// We open a channel of `funding` to `peer` (connected), pushing `push`: queues
    /// `open_channel` and returns the temporary channel id. The channel type is the best
    /// both sides support: anchors if they can, `option_scid_alias` unless announced; never
    /// zero-conf (the peer waits for confirmations it asks for).
    pub fn open(
        &mut self,
        secp: &Secp256k1<All>,
        peer: PublicKey,
        funding: Sat,
        push: Msat,
        announce: bool,
    ) -> Result<ChannelId, String> {
        let (Some(config), Some(keys)) = (&self.config, &mut self.keys) else {
            return Err("lnhub opens no channels: no durable store".into());
        };
        let Some(negotiated) = self.features.get(&peer) else {
            return Err(format!("{peer} is not connected"));
        };
        let both = |f| negotiated.supports(f);
        let channel_type = NegotiatedType {
            commitment: if both(features::ANCHORS) {
                ChannelType::Anchors
            } else {
                ChannelType::StaticRemoteKey
            },
            scid_alias: both(features::SCID_ALIAS) && !announce,
            zeroconf: false,
        };
        let temporary = keys.temporary_channel_id(&peer);
        let local = keys.channel_keys(secp, &peer, &temporary);
        let alias = alias_for(&local.pubkeys.funding_pubkey);
        let ctx = PeerContext {
            large_channels: both(features::SUPPORT_LARGE_CHANNEL),
            trusted_for_zeroconf: false,
            shutdown_anysegwit: both(features::SHUTDOWN_ANYSEGWIT),
            simple_close: both(features::SIMPLE_CLOSE),
        };
        let req = OpenRequest {
            temporary_channel_id: temporary,
            funding_satoshis: funding,
            push_msat: push,
            feerate_per_kw: open_feerate(channel_type.commitment),
            channel_type,
            announce,
            alias: Some(alias),
        };
        let est = Establishing::open(secp, config.establish, local, ctx, req)
            .map_err(|e| format!("cannot open: {e:?}"))?;
        self.opening
            .insert(temporary, Opening::new(est, peer, alias));
        Ok(temporary)
    }

    /// Funder: the peer's `accept_channel`; the wallet is asked for the funding transaction.
    fn handle_accept(&mut self, peer: PublicKey, m: &AcceptChannel) -> OpenOutcome {
        let id = m.temporary_channel_id;
        let Some(o) = self.opening.get_mut(&id).filter(|o| o.peer == peer) else {
            return OpenOutcome::Refused(id, "unknown temporary_channel_id".into());
        };
        if let Err(e) = o.est.handle_accept_channel(m) {
            return self.fail(id, e);
        }
        let Some(output) = o.est.funding_output() else {
            return self.fail(
                id,
                ChannelError::Close("no funding output after accept_channel".into()),
            );
        };
        self.fund_requests
            .push((id, output.script_pubkey, Sat(output.value.to_sat())));
        OpenOutcome::Pending
    }

    /// Funder: the wallet's funding transaction for `temporary` (or why there is none):
    /// commitment 0 of the peer is signed and `funding_created` queued.
    pub fn handle_funding_tx(
        &mut self,
        secp: &Secp256k1<All>,
        temporary: ChannelId,
        tx: Result<bitcoin::Transaction, String>,
    ) -> OpenOutcome {
        let Some(mut o) = self.opening.remove(&temporary) else {
            // The opening ended meanwhile (the peer left): the wallet keeps its coins.
            if let Ok(tx) = tx {
                self.abandoned.push(tx.compute_txid());
            }
            return OpenOutcome::Pending;
        };
        let tx = match tx {
            Ok(tx) => tx,
            Err(why) => {
                return OpenOutcome::Refused(temporary, format!("cannot fund the channel: {why}"))
            }
        };
        let expected = o.est.funding_output();
        let Some(vout) = tx
            .output
            .iter()
            .position(|out| Some(out) == expected.as_ref())
        else {
            self.abandoned.push(tx.compute_txid());
            return OpenOutcome::Refused(
                temporary,
                "the funding transaction lacks the output".into(),
            );
        };
        let staged = o
            .est
            .stage_funding(secp, &tx, u16::try_from(vout).unwrap_or(u16::MAX));
        match staged {
            Ok(staged) => o.est.apply_funding_signature(staged.sign(secp)),
            Err(e) => {
                self.abandoned.push(tx.compute_txid());
                return OpenOutcome::Refused(temporary, format!("cannot fund the channel: {e:?}"));
            }
        }
        let channel_id = o
            .est
            .channel_id()
            .expect("funding known after stage_funding");
        o.funding_tx = Some(tx);
        o.funding_accepted_at = self.height;
        self.opening.insert(channel_id, o);
        self.new_fundings.push(channel_id);
        OpenOutcome::Pending
    }

    /// Funder: the peer's `funding_signed`: checked, then written; the funding transaction
    /// is broadcast once the write is durable (`Effect::BroadcastFunding`).
    fn handle_funding_signed(
        &mut self,
        secp: &Secp256k1<All>,
        peer: PublicKey,
        m: &FundingSigned,
    ) -> OpenOutcome {
        let id = m.channel_id;
        let Some(o) = self.opening.get_mut(&id).filter(|o| o.peer == peer) else {
            return OpenOutcome::Refused(id, "unknown channel".into());
        };
        let result = o
            .est
            .stage_funding_signed(secp, m)
            .map(|staged| staged.verify(secp))
            .and_then(|verified| o.est.apply_funding_signed(verified));
        match result {
            Ok(()) => OpenOutcome::Pending,
            Err(e) => {
                if let Some(tx) = &o.funding_tx {
                    self.abandoned.push(tx.compute_txid());
                }
                self.fail(id, e)
            }
        }
    }

    /// The chain backend's news of `channel_id`'s funding output: once deep enough our
    /// `channel_ready` goes out (the peer's may already be in: the channel is then ready).
    /// A reorg that unconfirms the funding before that delays it until the depth is reached
    /// again. Spent before the channel was ready, the funding is gone: the channel is
    /// refused.
    pub fn handle_funding(&mut self, channel_id: &ChannelId, status: FundingStatus) -> OpenOutcome {
        let Some(o) = self.opening.get_mut(channel_id) else {
            return OpenOutcome::Pending;
        };
        if let Some((txid, _)) = status.spent {
            self.opening.remove(channel_id);
            return OpenOutcome::Refused(
                *channel_id,
                format!("funding output spent by {txid} before the channel was ready"),
            );
        }
        if status.depth < o.funding.depth && status.depth < o.est.minimum_depth() {
            log::warn!(
                "channel {channel_id}: funding back to {} confirmations after a reorg",
                status.depth
            );
        }
        o.funding = status;
        o.est.handle_funding_depth(status.depth);
        self.ready_or_pending(channel_id)
    }

    /// [`OpenOutcome::Ready`] with the channel if both `channel_ready`s are exchanged.
    fn ready_or_pending(&mut self, channel_id: &ChannelId) -> OpenOutcome {
        if !self
            .opening
            .get(channel_id)
            .is_some_and(|o| o.est.is_ready())
        {
            return OpenOutcome::Pending;
        }
        let o = self.opening.remove(channel_id).expect("present");
        let remote_alias = o.est.remote_alias();
        OpenOutcome::Ready(Box::new(Ready {
            channel: o.est.into_channel(),
            peer: o.peer,
            alias: o.alias,
            remote_alias,
            real_scid: o.funding.scid,
        }))
    }

    /// The funding output of `channel_id`, once known (after `funding_created`).
    pub fn funding_outpoint(&self, channel_id: &ChannelId) -> Option<bitcoin::OutPoint> {
        self.opening.get(channel_id)?.est.funding_output_point()
    }

    fn handle_open(
        &mut self,
        secp: &Secp256k1<All>,
        peer: PublicKey,
        m: &OpenChannel,
    ) -> OpenOutcome {
        let (Some(config), Some(keys)) = (&self.config, &mut self.keys) else {
            return OpenOutcome::Refused(
                m.temporary_channel_id,
                "lnhub does not accept channels: no durable store".into(),
            );
        };
        if self.opening.contains_key(&m.temporary_channel_id) {
            return OpenOutcome::Refused(
                m.temporary_channel_id,
                "temporary_channel_id already in use".into(),
            );
        }
        let local = keys.channel_keys(secp, &peer, &m.temporary_channel_id);
        let negotiated = self.features.get(&peer);
        let both = |f| negotiated.is_some_and(|n: &Features| n.supports(f));
        let ctx = PeerContext {
            large_channels: both(features::SUPPORT_LARGE_CHANNEL),
            trusted_for_zeroconf: config.trusted_peers.contains(&peer),
            shutdown_anysegwit: both(features::SHUTDOWN_ANYSEGWIT),
            simple_close: both(features::SIMPLE_CLOSE),
        };
        let alias = alias_for(&local.pubkeys.funding_pubkey);
        match Establishing::accept(secp, config.establish, local, ctx, m, Some(alias)) {
            Ok(est) => {
                self.opening
                    .insert(m.temporary_channel_id, Opening::new(est, peer, alias));
                OpenOutcome::Pending
            }
            Err(e) => OpenOutcome::Refused(m.temporary_channel_id, e.to_string()),
        }
    }

    fn handle_funding_created(
        &mut self,
        secp: &Secp256k1<All>,
        peer: PublicKey,
        m: &FundingCreated,
    ) -> OpenOutcome {
        let id = m.temporary_channel_id;
        let Some(mut o) = self.opening.remove(&id) else {
            return OpenOutcome::Refused(id, "unknown temporary_channel_id".into());
        };
        if o.peer != peer {
            self.opening.insert(id, o);
            return OpenOutcome::Refused(id, "unknown temporary_channel_id".into());
        }
        // Establishment is rare next to forwarding: its two signature operations run inline
        // rather than in the turn's batches.
        let result = o
            .est
            .stage_funding_created(secp, m)
            .map(|staged| staged.verify(secp))
            .and_then(|verified| o.est.apply_funding_created(secp, verified));
        match result {
            Ok(stage) => {
                o.funding_accepted_at = self.height;
                o.est.apply_funding_signed_signature(stage.sign(secp));
                let channel_id = o
                    .est
                    .channel_id()
                    .expect("funding known after funding_created");
                self.opening.insert(channel_id, o);
                self.new_fundings.push(channel_id);
                OpenOutcome::Pending
            }
            Err(e) => OpenOutcome::Refused(id, e.to_string()),
        }
    }

    fn fail(&mut self, channel_id: ChannelId, e: ChannelError) -> OpenOutcome {
        match e {
            ChannelError::Ignore(_) => OpenOutcome::Pending,
            e => {
                self.opening.remove(&channel_id);
                OpenOutcome::Refused(channel_id, e.to_string())
            }
        }
    }

    /// A peer disconnected: BOLT 2 forgets channels not yet past `funding_signed`; the others
    /// stay (their funding may confirm). A funding transaction of ours that was built but
    /// never broadcast is abandoned.
    pub fn handle_disconnect(&mut self, peer: &PublicKey) {
        self.features.remove(peer);
        let (abandoned, unwatched) = (&mut self.abandoned, &mut self.unwatched);
        self.opening.retain(|_, o| {
            let signed = o.est.state() == lnhub_channel::EstablishState::AwaitingReady;
            let keep =
                &o.peer != peer || signed || (!o.est.is_funder() && o.est.channel_id().is_some());
            if !keep {
                if let Some(tx) = &o.funding_tx {
                    abandoned.push(tx.compute_txid());
                }
                unwatched.extend(o.est.channel_id());
            }
            keep
        });
    }
}

/// Our alias for a channel: a block number in the alias range and the rest from a hash of a key
/// unique to the channel.
fn alias_for(funding_pubkey: &PublicKey) -> ShortChannelId {
    let h = sha256::Hash::hash(&funding_pubkey.serialize()).to_byte_array();
    let block =
        ALIAS_MIN_BLOCK | (u32::from_be_bytes([0, h[0], h[1], h[2]]) & (ALIAS_MIN_BLOCK - 1));
    let tx = u32::from_be_bytes([0, h[3], h[4], h[5]]);
    let output = u16::from_be_bytes([h[6], h[7]]);
    ShortChannelId::new(block, tx, output).expect("components within their widths")
}

/// Our private `channel_update` for `channel` (BOLT 7), signed: `dont_forward` set, `direction`
/// from the node id order, the policy's fees and limits, `htlc_maximum_msat` at most the
/// capacity.
#[allow(clippy::too_many_arguments)]
pub fn channel_update(
    secp: &Secp256k1<All>,
    node_secret: &SecretKey,
    chain_hash: ChainHash,
    scid: ShortChannelId,
    our_id: &PublicKey,
    peer: &PublicKey,
    policy: &Policy,
    capacity_msat: u64,
    timestamp: u32,
) -> ChannelUpdate {
    /// `message_flags`: bit 0 `must_be_one`, bit 1 `dont_forward` (a private channel's update
    /// goes to the peer only).
    const MESSAGE_FLAGS: u8 = 0b11;
    // BOLT 7: direction 0 if we are node_1, the lesser of the two compressed ids.
    let direction = u8::from(our_id.serialize() > peer.serialize());
    let mut update = ChannelUpdate {
        signature: secp.sign_ecdsa(&secp256k1::Message::from_digest([0; 32]), node_secret),
        chain_hash,
        short_channel_id: scid,
        timestamp,
        message_flags: MESSAGE_FLAGS,
        channel_flags: direction,
        cltv_expiry_delta: policy.cltv_expiry_delta,
        htlc_minimum_msat: policy.htlc_minimum_msat,
        fee_base_msat: policy.fee_base_msat,
        fee_proportional_millionths: policy.fee_proportional_millionths,
        htlc_maximum_msat: Msat(policy.htlc_maximum_msat.0.min(capacity_msat)),
        excess_data: Vec::new(),
    };
    sign_channel_update(secp, node_secret, &mut update);
    update
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_outside_real_block_heights() {
        let secp = Secp256k1::new();
        for i in 1..50u8 {
            let k = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[i; 32]).unwrap());
            let alias = alias_for(&k);
            assert!(alias.block() >= ALIAS_MIN_BLOCK, "{alias}");
        }
    }
}
