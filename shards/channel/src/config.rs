//! What a channel is created from: the limits each side announced in
//! `open_channel`/`accept_channel` (BOLT 2 "Channel Establishment v1"), our
//! local policy, our secrets, and the funded starting point.
//!
//! Everything here is validated before a [`crate::Channel`] exists (STYLE
//! rule 13); the state machine only reads it.

use lnhub_tx::ChannelParams;
use lnhub_wire::types::{ChainHash, ChannelId, Msat, Sat, ShortChannelId};
use secp256k1::ecdsa::Signature;
use secp256k1::{PublicKey, SecretKey};

use crate::close::ShutdownTerms;
use crate::effects::Outbox;

/// The BOLT 2 upper bound on `max_accepted_htlcs`: keeps a
/// `commitment_signed` under 65535 bytes and a penalty transaction
/// standard even if both sides are full.
pub const MAX_ACCEPTED_HTLCS_LIMIT: u16 = 483;

/// `cltv_expiry` values at or above this are timestamps, which BOLT 2
/// forbids (only block heights are supported).
pub const CLTV_EXPIRY_TIMESTAMP_THRESHOLD: u32 = 500_000_000;

/// The limits one side announced; they bind the **other** side (BOLT 2
/// `open_channel` field names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideLimits {
    /// `max_htlc_value_in_flight_msat`: cap on the total of HTLCs the other
    /// side offers to the announcer.
    pub max_htlc_value_in_flight_msat: Msat,
    /// `channel_reserve_satoshis`: what the other side must keep on its
    /// side of the announcer's commitments.
    pub channel_reserve_satoshis: Sat,
    /// `htlc_minimum_msat`: smallest HTLC the announcer accepts.
    pub htlc_minimum_msat: Msat,
    /// `max_accepted_htlcs`: how many HTLCs the other side may offer at once
    /// (at most [`MAX_ACCEPTED_HTLCS_LIMIT`]).
    pub max_accepted_htlcs: u16,
}

/// Our local policy for this channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelPolicy {
    /// `max_dust_htlc_exposure_msat` (BOLT 2 "Bounding exposure to trimmed
    /// in-flight HTLCs"): the most value we let sit in trimmed HTLCs on
    /// either commitment. Default in lnhubd: 5,000,000 msat, LDK's figure;
    /// higher lets more micropayments through, at that much risk of
    /// miners taking it on a force-close.
    pub max_dust_htlc_exposure_msat: Msat,
    /// Lowest `feerate_per_kw` we accept in `update_fee` (253 is the
    /// 1 sat/vbyte relay floor).
    pub min_feerate_per_kw: u32,
    /// Highest `feerate_per_kw` we accept in `update_fee`; above it the
    /// funder could burn the channel in fees.
    pub max_feerate_per_kw: u32,
}

/// Our secrets for this channel. Held by the state machine only to hand
/// them to the signer in [`crate::StagedSign`] jobs; never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelSecrets {
    /// Key of our `funding_pubkey`.
    pub funding_key: SecretKey,
    /// Secret of our `htlc_basepoint`.
    pub htlc_basepoint_secret: SecretKey,
    /// Seed of our per-commitment secrets (BOLT 3 shachain).
    pub commitment_seed: [u8; 32],
}

impl core::fmt::Debug for ChannelSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ChannelSecrets(..)")
    }
}

/// A channel whose funding is locked and whose `channel_ready` messages
/// have been exchanged: the starting point of normal operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FundedChannel {
    /// The channel id (funding txid XOR output index).
    pub channel_id: ChannelId,
    /// The validated BOLT 3 parameters (funding, funder, keys, delays,
    /// dust limits, channel type).
    pub params: ChannelParams,
    /// What we announced (binds the peer).
    pub local_limits: SideLimits,
    /// What the peer announced (binds us).
    pub remote_limits: SideLimits,
    /// Our policy.
    pub policy: ChannelPolicy,
    /// Our secrets.
    pub secrets: ChannelSecrets,
    /// Our balance in commitment 0 (`funding - push_msat` for the funder).
    pub to_local: Msat,
    /// The peer's balance in commitment 0.
    pub to_remote: Msat,
    /// `feerate_per_kw` of commitment 0.
    pub feerate_per_kw: u32,
    /// The peer's `first_per_commitment_point` (its commitment 0).
    pub remote_first_per_commitment_point: PublicKey,
    /// The peer's `second_per_commitment_point` from `channel_ready`
    /// (its commitment 1).
    pub remote_second_per_commitment_point: PublicKey,
    /// The peer's signature on our commitment 0 (from `funding_created` or
    /// `funding_signed`), if known.
    pub holder_signature: Option<Signature>,
    /// Our `short_channel_id` alias sent in `channel_ready`.
    pub local_alias: Option<ShortChannelId>,
    /// The effect queue of the establishment that led here, so held
    /// effects and persist numbers carry over (`None`: a fresh one).
    pub outbox: Option<Outbox>,
    /// What was agreed about closing (`option_shutdown_anysegwit`, upfront
    /// shutdown scripts); `ShutdownTerms::default()` when nothing was.
    pub shutdown_terms: ShutdownTerms,
}

/// The smallest `dust_limit_satoshis` BOLT 2 allows: below it some
/// outputs would be non-standard and the commitment could not propagate
/// (BOLT 3 "Dust Limits").
pub const MIN_DUST_LIMIT_SATOSHIS: Sat = Sat(354);

/// `funding_satoshis` at or above 2^24 needs `option_support_large_channel`
/// on both sides.
pub const LARGE_CHANNEL_FUNDING_SATOSHIS: Sat = Sat(1 << 24);

/// Our side of channel establishment: what we announce, and what we
/// accept from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstablishConfig {
    /// The chain we open channels on.
    pub chain_hash: ChainHash,
    /// Our `dust_limit_satoshis` (at least 354). Default 546: Bitcoin
    /// Core's P2PKH dust threshold, safe for every output type.
    pub dust_limit_satoshis: Sat,
    /// `to_self_delay` we impose on the peer. Default 144 (one day): our
    /// window to punish a revoked commitment; longer locks the peer's funds
    /// longer after a unilateral close.
    pub to_self_delay: u16,
    /// `max_htlc_value_in_flight_msat` we announce.
    pub max_htlc_value_in_flight_msat: Msat,
    /// Our reserve requirement on the peer, in millionths of the funding.
    /// Default 10,000 (1%), the BOLT 2 recommendation: what the peer
    /// loses if it broadcasts a revoked state.
    pub channel_reserve_proportional_millionths: u32,
    /// `htlc_minimum_msat` we announce. Default 1 msat.
    pub htlc_minimum_msat: Msat,
    /// `max_accepted_htlcs` we announce (at most 483).
    pub max_accepted_htlcs: u16,
    /// `minimum_depth` we ask for as the acceptor (ignored for zero-conf).
    /// Default 3 blocks; more protects against double-spends of the funding.
    pub minimum_depth: u32,
    /// Our policy once the channel runs.
    pub policy: ChannelPolicy,
    /// Bounds on what the peer may ask of us.
    pub peer_limits: PeerParamLimits,
}

/// What we consider reasonable in the peer's `open_channel` /
/// `accept_channel` (the BOLT 2 "unreasonably large" / "too small" MAYs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerParamLimits {
    /// Longest `to_self_delay` we let the peer impose on us. Default 2016
    /// (two weeks), LDK's figure.
    pub max_to_self_delay: u16,
    /// Smallest channel we accept.
    pub min_funding_satoshis: Sat,
    /// Largest `htlc_minimum_msat` we accept.
    pub max_htlc_minimum_msat: Msat,
    /// Smallest `max_htlc_value_in_flight_msat` we accept.
    pub min_max_htlc_value_in_flight_msat: Msat,
    /// Largest reserve the peer may ask of us, in millionths of the
    /// funding. Default 200,000 (20%).
    pub max_channel_reserve_proportional_millionths: u32,
    /// Smallest `max_accepted_htlcs` we accept.
    pub min_max_accepted_htlcs: u16,
    /// Largest `dust_limit_satoshis` we accept.
    pub max_dust_limit_satoshis: Sat,
    /// Largest `minimum_depth` we wait for as the funder.
    pub max_minimum_depth: u32,
}

/// What we know about the peer when a channel is proposed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerContext {
    /// Both `init` messages advertised `option_support_large_channel`.
    pub large_channels: bool,
    /// We trust this peer not to double-spend an unconfirmed funding
    /// transaction (required for `option_zeroconf`).
    pub trusted_for_zeroconf: bool,
    /// Both `init` messages advertised `option_shutdown_anysegwit`.
    pub shutdown_anysegwit: bool,
    /// Both `init` messages advertised `option_simple_close`.
    pub simple_close: bool,
}

impl PeerContext {
    /// What the channel's close may use, as negotiated by the `init`s (no
    /// upfront shutdown scripts: lnhub sends none and does not advertise
    /// `option_upfront_shutdown_script`).
    pub fn shutdown_terms(&self) -> crate::close::ShutdownTerms {
        crate::close::ShutdownTerms {
            option_shutdown_anysegwit: self.shutdown_anysegwit,
            option_simple_close: self.simple_close,
            ..Default::default()
        }
    }
}
