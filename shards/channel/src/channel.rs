//! The [`Channel`] type: one channel in normal operation (BOLT 2 "Normal
//! Operation"), its state and the call protocol. The updates live in
//! [`crate::updates`], the signature dance in [`crate::commit`], the
//! effect queue and durability gate in [`crate::effects`].
//!
//! # Call protocol
//!
//! - Peer messages go in through `handle_*` (updates, `revoke_and_ack`) or,
//!   for `commitment_signed`, through the stage / verify / apply triple
//!   ([`Channel::stage_commitment_signed`], [`crate::StagedVerify::verify`]
//!   or [`crate::verify_batch`], [`Channel::apply_commitment_signed`]).
//! - Local commands go in through `send_*`; to sign the peer's next
//!   commitment call [`Channel::stage_sign`], sign its jobs
//!   ([`crate::StagedSign::sign`] or a batch), then [`Channel::apply_signed`].
//!   A stage must be applied before any other input reaches the channel
//!   (asserted: a stage carries its channel id and the state version it
//!   was made from).
//! - After every call, drain [`Channel::poll_effect`] until `None`.
//! - An [`Effect::Persist`] asks the caller to write the channel (the
//!   bytes of [`Channel::encode`], as it is when polled, or any later
//!   state) and to call [`Channel::handle_persisted`] with its `seq` once
//!   the write is durable. Effects queued behind it (the `revoke_and_ack`,
//!   `commitment_signed` or fulfill that depend on it, and everything
//!   after them, in order) are only released then.
//! - A `handle_*` returning [`ChannelError::Close`] (or
//!   [`ChannelError::FallenBehind`]) leaves the channel failed: every later
//!   input is ignored.
//! - Connection changes: [`Channel::handle_disconnect`], then
//!   [`Channel::handle_reconnect`] (queues `channel_reestablish`), then the
//!   peer's [`Channel::handle_channel_reestablish`]; commands are refused
//!   ([`crate::SendError::NotOperational`]) in between.
//! - Cooperative close: [`Channel::send_shutdown`] /
//!   [`Channel::handle_shutdown`] (see [`crate::close`]); after the peer's,
//!   reply with `send_shutdown` while [`Channel::needs_shutdown_reply`].
//!   Then the fee negotiation: stage our messages with
//!   [`Channel::stage_closing_sign`] / [`Channel::apply_closing_sign`] and
//!   the peer's with [`Channel::stage_closing_message`] /
//!   [`Channel::apply_closing_verified`] (legacy `closing_signed`, see
//!   [`crate::closing`]; `closing_complete` / `closing_sig` with
//!   `option_simple_close`, see [`crate::simple_close`]) until
//!   [`Effect::ClosingTx`]; afterwards [`Channel::is_closed`].
//! - Each new block: [`Channel::handle_block_height`] (HTLC deadlines).
//! - After a crash: [`Channel::decode`] the last durable record, then
//!   [`Channel::handle_restart`] before anything else, then reconnect as
//!   above. Effects are delivered at least once across a restart: see
//!   [`crate::snapshot`] for what is re-emitted and what the caller must
//!   make durable itself.
//! - Where the curve arithmetic is: signing and signature checks are
//!   staged (never done by a transition); the `stage_*` calls do the
//!   per-commitment key derivations, build the transactions and compute
//!   the sighashes (no allocation per HTLC for those: `lnhub_tx::HtlcSighasher`),
//!   and compute our next per-commitment point for the `revoke_and_ack`;
//!   [`Channel::handle_revoke_and_ack`] checks the secret against the
//!   point (one multiplication). Each touches one channel only, so the
//!   engine runs them for many channels in parallel; applying a stage and
//!   every other transition do no curve arithmetic, apart from the rare
//!   reconnection and establishment paths.

use lnhub_tx::{ChannelParams, CommitmentTx, HtlcSpec, SecretStore, Side};
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::ChannelId;
use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;

use crate::book::{Book, BookEvent};
use crate::close::{ShutdownState, ShutdownTerms};
use crate::config::{ChannelPolicy, ChannelSecrets, FundedChannel, SideLimits};
use crate::effects::{Effect, Outbox};
use crate::error::ChannelError;
use crate::htlc::Htlc;

/// The connection, as the channel sees it (BOLT 2 "Message
/// Retransmission").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Reestablished (or never lost): messages flow.
    Up,
    /// Disconnected ([`Channel::handle_disconnect`]); nothing flows.
    Down,
    /// Reconnected, our `channel_reestablish` sent
    /// ([`Channel::handle_reconnect`]); waiting for the peer's.
    Reestablishing,
}

/// Book events one transition can produce before they become effects:
/// sized for a typical commitment round, grown (once) if more.
pub(crate) const EVENTS_CAPACITY: usize = 16;

/// One channel in normal operation. See the module docs for the call
/// protocol.
#[derive(Clone, Debug)]
pub struct Channel {
    pub(crate) channel_id: ChannelId,
    pub(crate) params: ChannelParams,
    pub(crate) local_limits: SideLimits,
    pub(crate) remote_limits: SideLimits,
    pub(crate) policy: ChannelPolicy,
    pub(crate) secrets: ChannelSecrets,
    pub(crate) book: Book,
    pub(crate) failed: bool,
    /// The connection as far as this channel knows.
    pub(crate) link: Link,
    /// Sequence number of the next update / `commitment_signed` /
    /// `revoke_and_ack` we send: retransmissions keep the original order.
    pub(crate) next_send_seq: u64,
    /// When we sent our last `revoke_and_ack`.
    pub(crate) last_revoke_seq: u64,
    /// When we sent our last `commitment_signed`.
    pub(crate) last_commitment_seq: u64,
    /// Our last `commitment_signed`, until the peer revokes (to retransmit
    /// it exactly).
    pub(crate) last_commitment_signed: Option<lnhub_wire::msgs::CommitmentSigned>,
    /// Our `short_channel_id` alias, for `channel_ready` retransmission.
    pub(crate) local_alias: Option<lnhub_wire::types::ShortChannelId>,
    /// The peer's point of the commitment we signed before its latest one,
    /// while its `revoke_and_ack` is outstanding.
    pub(crate) remote_prev_point: Option<PublicKey>,
    /// The peer's point of its latest commitment.
    pub(crate) remote_current_point: PublicKey,
    /// The peer's point of its next commitment (`None` while we await its
    /// `revoke_and_ack`: we cannot sign without it).
    pub(crate) remote_next_point: Option<PublicKey>,
    /// Secrets of the peer's revoked commitments.
    pub(crate) remote_secrets: SecretStore,
    /// The peer's signatures on our latest commitment (funding, then HTLCs
    /// in output order), to broadcast it.
    pub(crate) holder_signatures: Option<(Signature, Vec<Signature>)>,
    /// What was agreed about closing at establishment.
    pub(crate) shutdown_terms: ShutdownTerms,
    /// The `shutdown` exchange ([`crate::close`]).
    pub(crate) shutdown: ShutdownState,
    /// The `closing_signed` negotiation ([`crate::closing`]).
    pub(crate) closing: crate::closing::ClosingState,
    /// Bumped on every state change; stages carry it.
    pub(crate) version: u64,
    /// Effects and the durability gate.
    pub(crate) outbox: Outbox,
    /// Book events of the current transition (reused allocation).
    pub(crate) events: Vec<BookEvent>,
    /// HTLC list of the view being built (reused allocation).
    pub(crate) scratch: Vec<HtlcSpec>,
    /// The last applied stage's commitment, which the next one is built
    /// into so its scripts and vectors are reused (no allocation per HTLC
    /// in steady state). `None` at first, after a stage is dropped
    /// unapplied, or while one is outstanding: the next build then
    /// allocates afresh.
    pub(crate) spare: Option<CommitmentTx>,
    /// Our point of the commitment after the one last staged (sent as
    /// `next_per_commitment_point`), kept for the next stage: each point
    /// is a multiplication by the generator.
    pub(crate) next_local_point: Option<(u64, PublicKey)>,
}

/// Field-for-field equality of the state (what [`Channel::encode`]
/// writes); the reused scratch allocations are not state.
impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so a new field cannot be forgotten here.
        let Channel {
            channel_id,
            params,
            local_limits,
            remote_limits,
            policy,
            secrets,
            book,
            failed,
            link,
            next_send_seq,
            last_revoke_seq,
            last_commitment_seq,
            last_commitment_signed,
            local_alias,
            remote_prev_point,
            remote_current_point,
            remote_next_point,
            remote_secrets,
            holder_signatures,
            shutdown_terms,
            shutdown,
            closing,
            version,
            outbox,
            events: _,
            scratch: _,
            spare: _,
            next_local_point: _,
        } = self;
        *channel_id == other.channel_id
            && *params == other.params
            && *local_limits == other.local_limits
            && *remote_limits == other.remote_limits
            && *policy == other.policy
            && *secrets == other.secrets
            && *book == other.book
            && *failed == other.failed
            && *link == other.link
            && *next_send_seq == other.next_send_seq
            && *last_revoke_seq == other.last_revoke_seq
            && *last_commitment_seq == other.last_commitment_seq
            && *last_commitment_signed == other.last_commitment_signed
            && *local_alias == other.local_alias
            && *remote_prev_point == other.remote_prev_point
            && *remote_current_point == other.remote_current_point
            && *remote_next_point == other.remote_next_point
            && *remote_secrets == other.remote_secrets
            && *holder_signatures == other.holder_signatures
            && *shutdown_terms == other.shutdown_terms
            && *shutdown == other.shutdown
            && *closing == other.closing
            && *version == other.version
            && *outbox == other.outbox
    }
}

impl Channel {
    /// A channel in normal operation from its funded starting point.
    pub fn from_funded(f: FundedChannel) -> Self {
        assert_eq!(
            f.to_local.0 + f.to_remote.0,
            f.params.funding_amount().to_sat() * 1000,
            "commitment 0 balances must sum to the funding amount"
        );
        Channel {
            channel_id: f.channel_id,
            book: Book::new(f.params.funder(), f.to_local, f.to_remote, f.feerate_per_kw),
            params: f.params,
            local_limits: f.local_limits,
            remote_limits: f.remote_limits,
            policy: f.policy,
            secrets: f.secrets,
            failed: false,
            link: Link::Up,
            next_send_seq: 1,
            last_revoke_seq: 0,
            last_commitment_seq: 0,
            last_commitment_signed: None,
            local_alias: f.local_alias,
            remote_prev_point: None,
            remote_current_point: f.remote_first_per_commitment_point,
            remote_next_point: Some(f.remote_second_per_commitment_point),
            remote_secrets: SecretStore::new(),
            holder_signatures: f.holder_signature.map(|s| (s, Vec::new())),
            shutdown_terms: f.shutdown_terms,
            shutdown: ShutdownState::default(),
            closing: crate::closing::ClosingState::default(),
            version: 0,
            outbox: f.outbox.unwrap_or_default(),
            events: Vec::with_capacity(EVENTS_CAPACITY),
            scratch: Vec::new(),
            spare: None,
            next_local_point: None,
        }
    }

    /// The channel id.
    pub fn channel_id(&self) -> ChannelId {
        self.channel_id
    }

    /// The BOLT 3 parameters.
    pub fn params(&self) -> &ChannelParams {
        &self.params
    }

    /// The books (balances, HTLCs, commitment numbers).
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Whether the channel failed (after a [`ChannelError::Close`]).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether we are waiting for the peer's `revoke_and_ack`.
    pub fn awaiting_revoke(&self) -> bool {
        self.remote_next_point.is_none()
    }

    /// Whether the channel takes commands and messages now: not failed,
    /// connection reestablished.
    pub fn is_operational(&self) -> bool {
        self.closing_link_up() && !self.is_closed()
    }

    /// The connection state.
    pub fn link(&self) -> Link {
        self.link
    }

    /// Whether [`Channel::stage_sign`] would produce a signature now.
    pub fn can_sign(&self) -> bool {
        self.is_operational() && !self.awaiting_revoke() && self.book.has_changes_for_remote()
    }

    /// The onion of an HTLC the peer offered, while it is in flight.
    pub fn inbound_onion(&self, htlc_id: u64) -> Option<&[u8; ONION_PACKET_LEN]> {
        self.book
            .htlc(Side::Remote, htlc_id)
            .map(|h| &h.onion_routing_packet)
    }

    /// The next effect, or `None` when the queue is drained (or only holds
    /// effects waiting for a persist to complete).
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.outbox.poll()
    }

    /// The write of `seq` (and of every smaller sequence number) is
    /// durable: release what it held.
    pub fn handle_persisted(&mut self, seq: u64) {
        self.outbox.handle_persisted(seq);
    }

    /// Asks for a write; effects emitted after this wait for it.
    pub(crate) fn request_persist(&mut self) -> u64 {
        self.outbox.request_persist()
    }

    /// Queues an effect behind every earlier one.
    pub(crate) fn emit(&mut self, effect: Effect) {
        self.outbox.emit(effect);
    }

    /// Turns the book events of the last transition into effects.
    pub(crate) fn emit_book_events(&mut self) {
        let mut events = core::mem::take(&mut self.events);
        for e in events.drain(..) {
            match e {
                BookEvent::InboundCommitted { id } => {
                    let h = self
                        .book
                        .htlc(Side::Remote, id)
                        .expect("an HTLC whose add just became irrevocable is in the book");
                    let effect = Effect::Forward {
                        htlc_id: id,
                        amount_msat: h.amount_msat,
                        payment_hash: h.payment_hash,
                        cltv_expiry: h.cltv_expiry,
                        over_dust_exposure: h.over_dust_exposure,
                        added_after_shutdown: h.added_after_shutdown,
                    };
                    self.emit(effect);
                }
                BookEvent::OutboundRemoved { reported: true, .. } => {}
                // A fulfill was reported when it arrived (durable), not when it left the books.
                BookEvent::OutboundRemoved { kind, .. } if kind.is_fulfill() => {}
                BookEvent::OutboundRemoved { id, kind, .. } => {
                    self.emit(Effect::Resolved {
                        htlc_id: id,
                        resolution: kind,
                    });
                }
                BookEvent::InboundRemoved { .. } => {}
            }
        }
        self.events = events;
    }

    /// Marks the channel failed and returns the error.
    pub(crate) fn fail(&mut self, e: ChannelError) -> ChannelError {
        if matches!(e, ChannelError::Close(_) | ChannelError::FallenBehind(_)) {
            self.failed = true;
        }
        e
    }

    /// Refuses input once failed, and messages for another channel.
    pub(crate) fn check_input(&self, channel_id: &ChannelId) -> Result<(), ChannelError> {
        self.check_input_when(channel_id, false)
    }

    /// [`Channel::check_input`], taking input on a closed channel too when
    /// `closed_ok` (`option_simple_close` answers `closing_complete` after
    /// a closing transaction).
    pub(crate) fn check_input_when(
        &self,
        channel_id: &ChannelId,
        closed_ok: bool,
    ) -> Result<(), ChannelError> {
        if self.failed {
            return Err(ChannelError::Ignore("channel has failed".into()));
        }
        if !closed_ok && self.is_closed() {
            return Err(ChannelError::Ignore("channel is closed".into()));
        }
        if *channel_id != self.channel_id {
            return Err(ChannelError::Warn(format!(
                "message for channel {channel_id} routed to {}",
                self.channel_id
            )));
        }
        if self.link != Link::Up {
            return Err(ChannelError::Warn(
                "channel message before channel_reestablish".into(),
            ));
        }
        Ok(())
    }

    /// The next send sequence number.
    pub(crate) fn take_send_seq(&mut self) -> u64 {
        let seq = self.next_send_seq;
        self.next_send_seq += 1;
        seq
    }

    /// Records a new HTLC in the books (after the caller's checks).
    pub(crate) fn record_htlc(&mut self, htlc: Htlc) {
        self.book.add_htlc(htlc);
        self.version += 1;
    }
}
