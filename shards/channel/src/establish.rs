//! Channel establishment v1, both roles (BOLT 2 "Channel Establishment
//! v1": `open_channel`, `accept_channel`, `funding_created`,
//! `funding_signed`, `channel_ready`).
//!
//! ```text
//!  funder (Side::Local)                          fundee
//!  Establishing::open --- open_channel ------->  Establishing::accept
//!  handle_accept_channel <-- accept_channel ---
//!  stage_funding(tx) / apply_funding_signature
//!                     --- funding_created ---->  stage_funding_created / apply_funding_created
//!                                                 (sign the funder's commitment 0)
//!  stage_funding_signed <-- funding_signed ----  apply_funding_signed_signature (after a persist)
//!  apply_funding_signed (persist, BroadcastFunding)
//!  handle_funding_depth --- channel_ready ---->  handle_channel_ready
//!  handle_channel_ready <-- channel_ready -----  handle_funding_depth
//!  into_channel                                  into_channel
//! ```
//!
//! Every requirement the spec puts on the peer's parameters is checked in
//! [`crate::open_checks`]. Signatures are staged exactly like in normal
//! operation ([`StagedSign`], [`StagedVerify`]). The funding transaction
//! is an input (the caller's wallet builds it around
//! [`Establishing::funding_output`]); confirmations and our
//! `short_channel_id` alias are inputs too.
//!
//! The state is written when commitment 0 is signed both ways (an
//! [`Effect::Persist`] before `funding_signed` leaves the fundee, before
//! the funder may broadcast); its record and what a restart does are in
//! [`crate::establish_snapshot`].

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, Transaction, TxOut};
use lnhub_tx::batch::{SigCheck, SignJob};
use lnhub_tx::fees::{self, ANCHOR_OUTPUT_VALUE};
use lnhub_tx::keys::per_commitment_point;
use lnhub_tx::shachain::{generate_from_seed, MAX_INDEX};
use lnhub_tx::{
    build_commitment, scripts, ChannelParams, ChannelPublicKeys, CommitmentKeys, CommitmentSpec,
    CommitmentTx, Side, SideParams,
};
use lnhub_wire::msgs::{
    AcceptChannel, ChannelReady, ChannelReestablish, FundingCreated, FundingSigned, OpenChannel,
};
use lnhub_wire::types::{ChannelId, Msat, Sat, ShortChannelId};
use lnhub_wire::Message;
use secp256k1::ecdsa::Signature;
use secp256k1::{PublicKey, Secp256k1, Signing, Verification};

use crate::channel::Channel;
use crate::channel_type::NegotiatedType;
use crate::close::ShutdownTerms;
use crate::commit::{SignedCommitment, StagedSign, StagedVerify, Stamp, Verified};
use crate::config::{
    ChannelSecrets, EstablishConfig, FundedChannel, PeerContext, SideLimits,
    LARGE_CHANNEL_FUNDING_SATOSHIS,
};
use crate::effects::{Effect, Outbox};
use crate::error::{ChannelError, SendError};
use crate::open_checks;

/// `announce_channel`, bit 0 of `channel_flags`.
const ANNOUNCE_CHANNEL_FLAG: u8 = 1;

/// Our keys for one channel: the secrets the state machine signs with and
/// the basepoints we announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalKeys {
    /// Secrets (funding key, HTLC basepoint secret, commitment seed).
    pub secrets: ChannelSecrets,
    /// The public keys we announce.
    pub pubkeys: ChannelPublicKeys,
}

/// What the funder proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// `temporary_channel_id` (random, from the caller).
    pub temporary_channel_id: ChannelId,
    /// `funding_satoshis`.
    pub funding_satoshis: Sat,
    /// `push_msat`.
    pub push_msat: Msat,
    /// `feerate_per_kw` of commitment 0.
    pub feerate_per_kw: u32,
    /// The `channel_type` we want.
    pub channel_type: NegotiatedType,
    /// `announce_channel`.
    pub announce: bool,
    /// Our alias for `channel_ready` (required with `option_scid_alias`).
    pub alias: Option<ShortChannelId>,
}

/// Where establishment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstablishState {
    /// Funder: `open_channel` sent; waiting for `accept_channel`.
    AwaitingAccept,
    /// Funder: `accept_channel` accepted; waiting for the caller's funding
    /// transaction ([`Establishing::stage_funding`]).
    AwaitingFundingTx,
    /// Funder: `funding_created` sent; waiting for `funding_signed`.
    AwaitingFundingSigned,
    /// Fundee: `accept_channel` sent; waiting for `funding_created`.
    AwaitingFundingCreated,
    /// Fundee: `funding_created` verified; our `funding_signed` is being
    /// signed ([`Establishing::apply_funding_signed_signature`]).
    SigningFundingSigned,
    /// Both: commitment 0 is signed both ways; waiting for depth and for
    /// the peer's `channel_ready`.
    AwaitingReady,
}

/// The peer's side, as announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RemoteSide {
    pub(crate) pubkeys: ChannelPublicKeys,
    pub(crate) first_point: PublicKey,
    pub(crate) to_self_delay: u16,
    pub(crate) dust_limit: Sat,
    pub(crate) limits: SideLimits,
}

/// One channel being opened.
#[derive(Clone, Debug)]
pub struct Establishing {
    pub(crate) role: Side,
    pub(crate) state: EstablishState,
    pub(crate) config: EstablishConfig,
    pub(crate) keys: LocalKeys,
    pub(crate) temporary_channel_id: ChannelId,
    pub(crate) funding_satoshis: Sat,
    pub(crate) push_msat: Msat,
    pub(crate) feerate_per_kw: u32,
    pub(crate) channel_type: NegotiatedType,
    /// What the close may use, fixed by the `init`s (see
    /// [`PeerContext::shutdown_terms`]).
    pub(crate) shutdown_terms: ShutdownTerms,
    pub(crate) local_limits: SideLimits,
    pub(crate) remote: Option<RemoteSide>,
    pub(crate) minimum_depth: u32,
    pub(crate) params: Option<ChannelParams>,
    pub(crate) channel_id: Option<ChannelId>,
    pub(crate) holder_signature: Option<Signature>,
    pub(crate) alias: Option<ShortChannelId>,
    /// Our point of commitment 1, sent in `channel_ready`.
    pub(crate) second_point: PublicKey,
    pub(crate) ready_sent: bool,
    pub(crate) remote_ready: Option<(PublicKey, Option<ShortChannelId>)>,
    pub(crate) version: u64,
    pub(crate) outbox: Outbox,
}

/// The reserve we require of the peer: a share of the funding, never
/// below either dust limit (BOLT 2: reserve >= both dust limits).
/// The peer's side of the channel from its `open_channel` or `accept_channel`: both carry
/// these fields under the same names.
macro_rules! remote_side {
    ($msg:expr) => {
        RemoteSide {
            pubkeys: ChannelPublicKeys {
                funding_pubkey: $msg.funding_pubkey,
                revocation_basepoint: $msg.revocation_basepoint,
                payment_basepoint: $msg.payment_basepoint,
                delayed_payment_basepoint: $msg.delayed_payment_basepoint,
                htlc_basepoint: $msg.htlc_basepoint,
            },
            first_point: $msg.first_per_commitment_point,
            to_self_delay: $msg.to_self_delay,
            dust_limit: $msg.dust_limit_satoshis,
            limits: SideLimits {
                max_htlc_value_in_flight_msat: $msg.max_htlc_value_in_flight_msat,
                channel_reserve_satoshis: $msg.channel_reserve_satoshis,
                htlc_minimum_msat: $msg.htlc_minimum_msat,
                max_accepted_htlcs: $msg.max_accepted_htlcs,
            },
        }
    };
}

fn reserve_for(config: &EstablishConfig, funding: Sat, peer_dust: Sat) -> Sat {
    let share = funding.0 * u64::from(config.channel_reserve_proportional_millionths) / 1_000_000;
    Sat(share.max(peer_dust.0).max(config.dust_limit_satoshis.0))
}

fn our_point<C: Signing>(secp: &Secp256k1<C>, keys: &LocalKeys, n: u64) -> PublicKey {
    per_commitment_point(
        secp,
        &generate_from_seed(&keys.secrets.commitment_seed, MAX_INDEX - n),
    )
    .expect("a shachain secret is a valid key but with negligible probability")
}

/// What the funder pays at commitment 0 (fee and anchors), in msat.
pub(crate) fn initial_funder_charge_msat(t: NegotiatedType, feerate_per_kw: u32) -> u64 {
    let mut fee = fees::commitment_base_fee(t.commitment, feerate_per_kw, 0);
    if t.commitment.has_anchors() {
        fee += ANCHOR_OUTPUT_VALUE + ANCHOR_OUTPUT_VALUE;
    }
    fee.to_sat() * 1000
}

impl Establishing {
    /// Funder: proposes a channel; queues `open_channel`.
    pub fn open<C: Signing>(
        secp: &Secp256k1<C>,
        config: EstablishConfig,
        keys: LocalKeys,
        ctx: PeerContext,
        req: OpenRequest,
    ) -> Result<Self, SendError> {
        let funding_msat = req
            .funding_satoshis
            .to_msat()
            .ok_or(SendError::InsufficientBalance)?;
        if req.push_msat > funding_msat
            || funding_msat.0 - req.push_msat.0
                < initial_funder_charge_msat(req.channel_type, req.feerate_per_kw)
        {
            return Err(SendError::InsufficientBalance);
        }
        if req.funding_satoshis >= LARGE_CHANNEL_FUNDING_SATOSHIS && !ctx.large_channels {
            return Err(SendError::LargeChannelNotNegotiated);
        }
        assert!(
            !(req.channel_type.scid_alias && req.announce),
            "an option_scid_alias channel is never announced"
        );
        assert!(
            !req.channel_type.scid_alias || req.alias.is_some(),
            "option_scid_alias needs an alias"
        );
        let local_limits = SideLimits {
            max_htlc_value_in_flight_msat: config.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis: reserve_for(&config, req.funding_satoshis, Sat(0)),
            htlc_minimum_msat: config.htlc_minimum_msat,
            max_accepted_htlcs: config.max_accepted_htlcs,
        };
        let mut e = Establishing {
            role: Side::Local,
            state: EstablishState::AwaitingAccept,
            config,
            temporary_channel_id: req.temporary_channel_id,
            funding_satoshis: req.funding_satoshis,
            push_msat: req.push_msat,
            feerate_per_kw: req.feerate_per_kw,
            channel_type: req.channel_type,
            shutdown_terms: ctx.shutdown_terms(),
            local_limits,
            remote: None,
            minimum_depth: 0,
            params: None,
            channel_id: None,
            holder_signature: None,
            alias: req.alias,
            second_point: our_point(secp, &keys, 1),
            ready_sent: false,
            remote_ready: None,
            version: 0,
            outbox: Outbox::default(),
            keys,
        };
        let pk = e.keys.pubkeys;
        let msg = OpenChannel {
            chain_hash: config.chain_hash,
            temporary_channel_id: req.temporary_channel_id,
            funding_satoshis: req.funding_satoshis,
            push_msat: req.push_msat,
            dust_limit_satoshis: config.dust_limit_satoshis,
            max_htlc_value_in_flight_msat: local_limits.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis: local_limits.channel_reserve_satoshis,
            htlc_minimum_msat: local_limits.htlc_minimum_msat,
            feerate_per_kw: req.feerate_per_kw,
            to_self_delay: config.to_self_delay,
            max_accepted_htlcs: local_limits.max_accepted_htlcs,
            funding_pubkey: pk.funding_pubkey,
            revocation_basepoint: pk.revocation_basepoint,
            payment_basepoint: pk.payment_basepoint,
            delayed_payment_basepoint: pk.delayed_payment_basepoint,
            htlc_basepoint: pk.htlc_basepoint,
            first_per_commitment_point: our_point(secp, &e.keys, 0),
            channel_flags: if req.announce {
                ANNOUNCE_CHANNEL_FLAG
            } else {
                0
            },
            upfront_shutdown_script: Some(Vec::new()),
            channel_type: Some(req.channel_type.to_features()),
            unknown_tlvs: Vec::new(),
        };
        e.outbox.emit(Effect::Send(Message::OpenChannel(msg)));
        Ok(e)
    }

    /// Fundee: checks the peer's `open_channel` and queues
    /// `accept_channel`. `alias` is ours for `channel_ready`.
    pub fn accept<C: Signing>(
        secp: &Secp256k1<C>,
        config: EstablishConfig,
        keys: LocalKeys,
        ctx: PeerContext,
        msg: &OpenChannel,
        alias: Option<ShortChannelId>,
    ) -> Result<Self, ChannelError> {
        let channel_type = open_checks::check_open_channel(&config, &ctx, msg)?;
        if channel_type.scid_alias && alias.is_none() {
            return Err(ChannelError::close(
                "option_scid_alias needs an alias we lack",
            ));
        }
        let reserve = reserve_for(&config, msg.funding_satoshis, msg.dust_limit_satoshis);
        if config.dust_limit_satoshis > msg.channel_reserve_satoshis {
            return Err(ChannelError::close(format!(
                "our dust_limit_satoshis {} exceeds the channel_reserve_satoshis {} asked of us",
                config.dust_limit_satoshis, msg.channel_reserve_satoshis
            )));
        }
        let local_limits = SideLimits {
            max_htlc_value_in_flight_msat: config.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis: reserve,
            htlc_minimum_msat: config.htlc_minimum_msat,
            max_accepted_htlcs: config.max_accepted_htlcs,
        };
        // BOLT 2: `option_zeroconf` MUST get 0; without it the acceptor MAY still choose 0,
        // which we do for the peers the operator trusts (LDK opens zero-conf channels that way).
        let minimum_depth = if channel_type.zeroconf || ctx.trusted_for_zeroconf {
            0
        } else {
            config.minimum_depth
        };
        let remote = remote_side!(msg);
        let mut e = Establishing {
            role: Side::Remote,
            state: EstablishState::AwaitingFundingCreated,
            config,
            temporary_channel_id: msg.temporary_channel_id,
            funding_satoshis: msg.funding_satoshis,
            push_msat: msg.push_msat,
            feerate_per_kw: msg.feerate_per_kw,
            channel_type,
            shutdown_terms: ctx.shutdown_terms(),
            local_limits,
            remote: Some(remote),
            minimum_depth,
            params: None,
            channel_id: None,
            holder_signature: None,
            alias,
            second_point: our_point(secp, &keys, 1),
            ready_sent: false,
            remote_ready: None,
            version: 0,
            outbox: Outbox::default(),
            keys,
        };
        let pk = e.keys.pubkeys;
        let reply = AcceptChannel {
            temporary_channel_id: msg.temporary_channel_id,
            dust_limit_satoshis: config.dust_limit_satoshis,
            max_htlc_value_in_flight_msat: local_limits.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis: local_limits.channel_reserve_satoshis,
            htlc_minimum_msat: local_limits.htlc_minimum_msat,
            minimum_depth,
            to_self_delay: config.to_self_delay,
            max_accepted_htlcs: local_limits.max_accepted_htlcs,
            funding_pubkey: pk.funding_pubkey,
            revocation_basepoint: pk.revocation_basepoint,
            payment_basepoint: pk.payment_basepoint,
            delayed_payment_basepoint: pk.delayed_payment_basepoint,
            htlc_basepoint: pk.htlc_basepoint,
            first_per_commitment_point: our_point(secp, &e.keys, 0),
            upfront_shutdown_script: Some(Vec::new()),
            channel_type: Some(channel_type.to_features()),
            unknown_tlvs: Vec::new(),
        };
        e.outbox.emit(Effect::Send(Message::AcceptChannel(reply)));
        Ok(e)
    }

    /// This (temporary) channel and its state version, for stages.
    fn stamp(&self) -> Stamp {
        Stamp {
            channel_id: self.temporary_channel_id,
            version: self.version,
        }
    }

    /// Where establishment stands.
    pub fn state(&self) -> EstablishState {
        self.state
    }

    /// The negotiated channel type.
    pub fn channel_type(&self) -> NegotiatedType {
        self.channel_type
    }

    /// `minimum_depth` in force (0 for zero-conf).
    pub fn minimum_depth(&self) -> u32 {
        self.minimum_depth
    }

    /// Whether we fund the channel.
    pub fn is_funder(&self) -> bool {
        self.role == Side::Local
    }

    /// The funding output, once `funding_created` named it.
    pub fn funding_output_point(&self) -> Option<OutPoint> {
        self.params.as_ref().map(|p| p.funding_outpoint())
    }

    /// The channel id, once the funding outpoint is known.
    pub fn channel_id(&self) -> Option<ChannelId> {
        self.channel_id
    }

    /// The peer's alias from its `channel_ready`, if any.
    pub fn remote_alias(&self) -> Option<ShortChannelId> {
        self.remote_ready.and_then(|r| r.1)
    }

    /// The next effect (see [`crate::Channel`] for the protocol).
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.outbox.poll()
    }

    /// A persist requested by an [`Effect::Persist`] is durable.
    pub fn handle_persisted(&mut self, seq: u64) {
        self.outbox.handle_persisted(seq);
    }

    fn expect_state(&self, want: EstablishState, what: &str) -> Result<(), ChannelError> {
        if self.state == want {
            Ok(())
        } else {
            Err(ChannelError::Warn(format!(
                "unexpected {what} in state {:?}",
                self.state
            )))
        }
    }

    /// Funder: the peer's `accept_channel`.
    pub fn handle_accept_channel(&mut self, msg: &AcceptChannel) -> Result<(), ChannelError> {
        self.expect_state(EstablishState::AwaitingAccept, "accept_channel")?;
        if msg.temporary_channel_id != self.temporary_channel_id {
            return Err(ChannelError::Warn(
                "accept_channel for another temporary_channel_id".into(),
            ));
        }
        open_checks::check_accept_channel(
            &self.config,
            self.funding_satoshis,
            self.channel_type,
            self.local_limits.channel_reserve_satoshis,
            msg,
        )?;
        self.minimum_depth = msg.minimum_depth;
        self.remote = Some(remote_side!(msg));
        self.state = EstablishState::AwaitingFundingTx;
        self.version += 1;
        Ok(())
    }

    fn remote(&self) -> &RemoteSide {
        self.remote
            .as_ref()
            .expect("the peer's side is known after open/accept")
    }

    /// Funder: the output the funding transaction must contain.
    pub fn funding_output(&self) -> Option<TxOut> {
        let remote = self.remote.as_ref()?;
        let script = scripts::funding_script(
            &self.keys.pubkeys.funding_pubkey,
            &remote.pubkeys.funding_pubkey,
        );
        Some(TxOut {
            value: Amount::from_sat(self.funding_satoshis.0),
            script_pubkey: scripts::p2wsh(&script),
        })
    }

    /// Fixes the funding outpoint: derives the parameters and channel id.
    fn set_funding(&mut self, outpoint: OutPoint) -> Result<(), ChannelError> {
        let (params, channel_id) = self.derive_funding(outpoint)?;
        self.channel_id = Some(channel_id);
        self.params = Some(params);
        Ok(())
    }

    /// The parameters and channel id a funding `outpoint` gives this
    /// channel (the record decoder checks stored ones against it).
    pub(crate) fn derive_funding(
        &self,
        outpoint: OutPoint,
    ) -> Result<(ChannelParams, ChannelId), ChannelError> {
        let remote = *self.remote();
        let local = SideParams {
            pubkeys: self.keys.pubkeys,
            to_self_delay: self.config.to_self_delay,
            dust_limit: Amount::from_sat(self.config.dust_limit_satoshis.0),
        };
        let remote_params = SideParams {
            pubkeys: remote.pubkeys,
            to_self_delay: remote.to_self_delay,
            dust_limit: Amount::from_sat(remote.dust_limit.0),
        };
        let params = ChannelParams::new(
            outpoint,
            Amount::from_sat(self.funding_satoshis.0),
            self.role,
            self.channel_type.commitment,
            local,
            remote_params,
        )
        .map_err(|e| ChannelError::close(format!("channel parameters: {e}")))?;
        let mut id = outpoint.txid.to_byte_array();
        let index = u16::try_from(outpoint.vout)
            .map_err(|_| ChannelError::close("funding_output_index above 65535"))?;
        id[30] ^= (index >> 8) as u8;
        id[31] ^= index as u8;
        Ok((params, ChannelId(id)))
    }

    /// Commitment 0 owned by `owner`, with balances from the opening.
    fn commitment0<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        owner: Side,
        point: &PublicKey,
    ) -> Result<CommitmentTx, ChannelError> {
        let params = self.params.as_ref().expect("funding set");
        let keys = CommitmentKeys::derive(secp, params, owner, point)
            .map_err(|e| ChannelError::close(format!("first_per_commitment_point: {e}")))?;
        let funder_msat = self.funding_satoshis.0 * 1000 - self.push_msat.0;
        let (to_local_msat, to_remote_msat) = if params.funder() == owner {
            (funder_msat, self.push_msat.0)
        } else {
            (self.push_msat.0, funder_msat)
        };
        build_commitment(
            params,
            owner,
            &keys,
            &CommitmentSpec {
                commitment_number: 0,
                feerate_per_kw: self.feerate_per_kw,
                to_local_msat,
                to_remote_msat,
                htlcs: &[],
            },
        )
        .map_err(|e| ChannelError::close(format!("commitment 0: {e}")))
    }

    /// Stages our signature of the peer's commitment 0.
    fn stage_sign_remote0<C: Signing + Verification>(
        &self,
        secp: &Secp256k1<C>,
    ) -> Result<StagedSign, ChannelError> {
        let commitment = self.commitment0(secp, Side::Remote, &self.remote().first_point)?;
        let params = self.params.as_ref().expect("funding set");
        Ok(StagedSign {
            stamp: self.stamp(),
            jobs: vec![SignJob {
                msg: commitment.sighash(params),
                key: self.keys.secrets.funding_key,
            }],
            commitment,
        })
    }

    /// Stages the check of the peer's signature on our commitment 0.
    fn stage_verify_local0<C: Signing + Verification>(
        &self,
        secp: &Secp256k1<C>,
        signature: Signature,
    ) -> Result<StagedVerify, ChannelError> {
        let commitment = self.commitment0(secp, Side::Local, &our_point(secp, &self.keys, 0))?;
        let params = self.params.as_ref().expect("funding set");
        Ok(StagedVerify {
            stamp: self.stamp(),
            checks: vec![SigCheck {
                msg: commitment.sighash(params),
                sig: signature,
                pubkey: self.remote().pubkeys.funding_pubkey,
            }],
            commitment,
            signature,
            htlc_signatures: Vec::new(),
            next_point: self.second_point,
        })
    }

    /// Funder: the caller's funding transaction (unbroadcast) and the index
    /// of its funding output; stages our signature of the peer's first
    /// commitment.
    pub fn stage_funding<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        funding_tx: &Transaction,
        output_index: u16,
    ) -> Result<StagedSign, ChannelError> {
        self.expect_state(EstablishState::AwaitingFundingTx, "funding transaction")?;
        let want = self.funding_output().expect("known after accept_channel");
        if funding_tx.output.get(usize::from(output_index)) != Some(&want) {
            return Err(ChannelError::close(
                "funding output does not pay funding_satoshis to the 2-of-2",
            ));
        }
        self.set_funding(OutPoint {
            txid: funding_tx.compute_txid(),
            vout: u32::from(output_index),
        })?;
        self.version += 1;
        self.stage_sign_remote0(secp)
    }

    /// Funder: queues `funding_created` with our signature.
    pub fn apply_funding_signature(&mut self, signed: SignedCommitment) {
        assert_eq!(signed.staged.stamp, self.stamp(), "stage applied at once");
        let outpoint = self
            .params
            .as_ref()
            .expect("funding set")
            .funding_outpoint();
        self.state = EstablishState::AwaitingFundingSigned;
        self.version += 1;
        self.outbox
            .emit(Effect::Send(Message::FundingCreated(FundingCreated {
                temporary_channel_id: self.temporary_channel_id,
                funding_txid: lnhub_wire::types::Txid(outpoint.txid.to_byte_array()),
                funding_output_index: outpoint.vout as u16,
                signature: signed.sigs[0],
                unknown_tlvs: Vec::new(),
            })));
    }

    /// Fundee: stages the check of the funder's signature in
    /// `funding_created`.
    pub fn stage_funding_created<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: &FundingCreated,
    ) -> Result<StagedVerify, ChannelError> {
        self.expect_state(EstablishState::AwaitingFundingCreated, "funding_created")?;
        if msg.temporary_channel_id != self.temporary_channel_id {
            return Err(ChannelError::Warn(
                "funding_created for another temporary_channel_id".into(),
            ));
        }
        self.set_funding(OutPoint {
            txid: bitcoin::Txid::from_byte_array(msg.funding_txid.0),
            vout: u32::from(msg.funding_output_index),
        })?;
        self.version += 1;
        self.stage_verify_local0(secp, msg.signature)
    }

    /// Fundee: applies the verified `funding_created`; stages our signature
    /// of the funder's commitment 0 (the `funding_signed`).
    pub fn apply_funding_created<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        verified: Result<Verified, ChannelError>,
    ) -> Result<StagedSign, ChannelError> {
        let v = verified?;
        assert_eq!(v.0.stamp, self.stamp(), "stage applied at once");
        self.holder_signature = Some(v.0.signature);
        self.state = EstablishState::SigningFundingSigned;
        self.version += 1;
        self.stage_sign_remote0(secp)
    }

    /// Fundee: queues `funding_signed` behind a persist (once sent, the
    /// funder can broadcast and our funds are in the channel).
    pub fn apply_funding_signed_signature(&mut self, signed: SignedCommitment) {
        assert_eq!(signed.staged.stamp, self.stamp(), "stage applied at once");
        self.state = EstablishState::AwaitingReady;
        self.version += 1;
        self.outbox.request_persist();
        self.outbox
            .emit(Effect::Send(Message::FundingSigned(FundingSigned {
                channel_id: self.channel_id.expect("funding set"),
                signature: signed.sigs[0],
                unknown_tlvs: Vec::new(),
            })));
        if self.minimum_depth == 0 {
            self.send_ready_now();
        }
    }

    /// Funder: stages the check of the fundee's `funding_signed`.
    pub fn stage_funding_signed<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: &FundingSigned,
    ) -> Result<StagedVerify, ChannelError> {
        self.expect_state(EstablishState::AwaitingFundingSigned, "funding_signed")?;
        if Some(msg.channel_id) != self.channel_id {
            return Err(ChannelError::close("funding_signed for another channel_id"));
        }
        self.stage_verify_local0(secp, msg.signature)
    }

    /// Funder: applies the verified `funding_signed`; the funding
    /// transaction may be broadcast once this is durable.
    pub fn apply_funding_signed(
        &mut self,
        verified: Result<Verified, ChannelError>,
    ) -> Result<(), ChannelError> {
        let v = verified?;
        assert_eq!(v.0.stamp, self.stamp(), "stage applied at once");
        self.holder_signature = Some(v.0.signature);
        self.state = EstablishState::AwaitingReady;
        self.version += 1;
        self.outbox.request_persist();
        let funding_txid = self
            .params
            .as_ref()
            .expect("funding set")
            .funding_outpoint()
            .txid;
        self.outbox.emit(Effect::BroadcastFunding { funding_txid });
        if self.minimum_depth == 0 {
            self.send_ready_now();
        }
        Ok(())
    }

    fn send_ready_now(&mut self) {
        if self.ready_sent {
            return;
        }
        self.ready_sent = true;
        self.outbox
            .emit(Effect::Send(Message::ChannelReady(ChannelReady {
                channel_id: self.channel_id.expect("funding set"),
                second_per_commitment_point: self.second_point,
                short_channel_id: self.alias,
                unknown_tlvs: Vec::new(),
            })));
    }

    /// The funding transaction has `depth` confirmations: sends
    /// `channel_ready` once `minimum_depth` is reached. A zero-conf
    /// channel sent it when commitment 0 was signed; after a restart
    /// ([`Establishing::handle_restart`]) any depth sends it again.
    pub fn handle_funding_depth(&mut self, depth: u32) {
        if self.state == EstablishState::AwaitingReady && depth >= self.minimum_depth {
            self.send_ready_now();
        }
    }

    /// The peer's `channel_reestablish` for a channel still waiting for `channel_ready`
    /// (BOLT 2 "Message Retransmission": once `funding_signed` is out, a reconnection starts
    /// with `channel_reestablish`, after a restart too). Commitment 0 is all either side
    /// signed, so ours says `next_commitment_number` 1 and `next_revocation_number` 0; with 1
    /// on both sides BOLT 2 has `channel_ready` sent again, which follows once the funding has
    /// `depth` confirmations (at once for a zero-conf channel). A peer claiming later
    /// commitments knows a state we do not: the channel is failed without broadcasting.
    pub fn handle_channel_reestablish<C: Signing>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: &ChannelReestablish,
        depth: u32,
    ) -> Result<(), ChannelError> {
        self.expect_state(EstablishState::AwaitingReady, "channel_reestablish")?;
        let channel_id = self.channel_id.expect("funding set in AwaitingReady");
        if msg.channel_id != channel_id {
            return Err(ChannelError::Warn(
                "channel_reestablish for another channel".into(),
            ));
        }
        if msg.next_commitment_number > 1 || msg.next_revocation_number > 0 {
            return Err(ChannelError::FallenBehind(format!(
                "peer is at commitment {} / revocation {} of a channel we hold at commitment 0",
                msg.next_commitment_number, msg.next_revocation_number
            )));
        }
        self.outbox.emit(Effect::Send(Message::ChannelReestablish(
            ChannelReestablish {
                channel_id,
                next_commitment_number: 1,
                next_revocation_number: 0,
                your_last_per_commitment_secret: [0; 32],
                my_current_per_commitment_point: our_point(secp, &self.keys, 0),
                next_funding: None,
                my_current_funding_locked: None,
                unknown_tlvs: Vec::new(),
            },
        )));
        self.ready_sent = false;
        self.handle_funding_depth(depth);
        Ok(())
    }

    /// The peer's `channel_ready`.
    pub fn handle_channel_ready(&mut self, msg: &ChannelReady) -> Result<(), ChannelError> {
        self.expect_state(EstablishState::AwaitingReady, "channel_ready")?;
        if Some(msg.channel_id) != self.channel_id {
            return Err(ChannelError::Warn(
                "channel_ready for another channel".into(),
            ));
        }
        if self.channel_type.scid_alias && msg.short_channel_id.is_none() {
            return Err(ChannelError::close(
                "channel_ready without alias on an option_scid_alias channel",
            ));
        }
        self.remote_ready = Some((msg.second_per_commitment_point, msg.short_channel_id));
        Ok(())
    }

    /// Both `channel_ready` messages are exchanged.
    pub fn is_ready(&self) -> bool {
        self.ready_sent && self.remote_ready.is_some()
    }

    /// The channel in normal operation; its effect queue carries over.
    ///
    /// # Panics
    /// If [`is_ready`](Self::is_ready) is false (a caller bug).
    pub fn into_channel(self) -> Channel {
        assert!(self.is_ready(), "into_channel after both channel_ready");
        let params = self.params.expect("funding set");
        let remote = self.remote.expect("remote known");
        let funder_msat = self.funding_satoshis.0 * 1000 - self.push_msat.0;
        let (to_local, to_remote) = match self.role {
            Side::Local => (Msat(funder_msat), self.push_msat),
            Side::Remote => (self.push_msat, Msat(funder_msat)),
        };
        Channel::from_funded(FundedChannel {
            channel_id: self.channel_id.expect("funding set"),
            params,
            local_limits: self.local_limits,
            remote_limits: remote.limits,
            policy: self.config.policy,
            secrets: self.keys.secrets,
            to_local,
            to_remote,
            feerate_per_kw: self.feerate_per_kw,
            remote_first_per_commitment_point: remote.first_point,
            remote_second_per_commitment_point: self.remote_ready.expect("ready").0,
            holder_signature: self.holder_signature,
            local_alias: self.alias,
            outbox: Some(self.outbox),
            shutdown_terms: self.shutdown_terms,
        })
    }
}
