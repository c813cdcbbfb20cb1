//! Disconnection and reconnection (BOLT 2 "Message Retransmission":
//! `channel_reestablish`).
//!
//! - [`Channel::handle_disconnect`]: the peer's updates that no
//!   `commitment_signed` covered are reversed (it will send them again);
//!   queued messages are dropped (other effects stay); the channel takes
//!   no commands until reestablished.
//! - [`Channel::handle_reconnect`]: queues our `channel_reestablish`.
//! - [`Channel::handle_channel_reestablish`]: checks the peer's numbers
//!   and secret against ours, then retransmits what it missed in the order
//!   we first sent it (every update, `commitment_signed` and
//!   `revoke_and_ack` carries a send sequence number): our
//!   `revoke_and_ack`, our updates covered by our last `commitment_signed`
//!   and that signature (stored verbatim, so no new signing), and our
//!   updates no signature covered yet. Order matters: the peer checks each
//!   update against what it has seen so far. A replayed update can still
//!   meet a newer peer state than the first time (the peer may have seen
//!   our `revoke_and_ack` and so counts its own HTLCs it had in flight);
//!   our send-side checks already count those HTLCs as a worst case
//!   ([`crate::limits`]), so the replay passes the peer's checks.
//!
//! Our `shutdown`, once sent, is retransmitted in its place in that order
//! ([`crate::close`]).
//!
//! The `short_channel_id` alias and `channel_ready` are retransmitted when
//! both sides are still at commitment 0 (`next_commitment_number` 1).

use lnhub_tx::shachain::MAX_INDEX;
use lnhub_tx::Side;
use lnhub_wire::msgs::{
    ChannelReady, ChannelReestablish, UpdateAddHtlc, UpdateFailHtlc, UpdateFailMalformedHtlc,
    UpdateFee, UpdateFulfillHtlc,
};
use lnhub_wire::Message;
use secp256k1::{Secp256k1, Signing};

use crate::channel::{Channel, Link};
use crate::effects::Effect;
use crate::error::ChannelError;
use crate::htlc::{RemovalKind, UpdateState};

impl Channel {
    /// The connection to the peer is gone.
    pub fn handle_disconnect(&mut self) {
        if self.link == Link::Down {
            return;
        }
        self.book.reverse_remote_uncommitted();
        self.reset_closing();
        self.outbox.drop_sends();
        self.link = Link::Down;
        self.version += 1;
    }

    /// A new connection is up: queues our `channel_reestablish`. Nothing
    /// else is sent until the peer's arrives.
    pub fn handle_reconnect<C: Signing>(&mut self, secp: &Secp256k1<C>) {
        assert_eq!(self.link, Link::Down, "reconnect follows a disconnect");
        let local_cn = self.book.local_commitment_number();
        let remote_cn = self.book.remote_commitment_number();
        let next_revocation_number = if self.awaiting_revoke() {
            remote_cn - 1
        } else {
            remote_cn
        };
        let your_last_per_commitment_secret = match next_revocation_number {
            0 => [0; 32],
            n => self
                .remote_secrets
                .get(MAX_INDEX - (n - 1))
                .expect("every revoked commitment's secret is stored"),
        };
        let msg = ChannelReestablish {
            channel_id: self.channel_id,
            next_commitment_number: local_cn + 1,
            next_revocation_number,
            your_last_per_commitment_secret,
            my_current_per_commitment_point: self.local_point(secp, local_cn),
            next_funding: None,
            my_current_funding_locked: None,
            unknown_tlvs: Vec::new(),
        };
        self.link = Link::Reestablishing;
        self.version += 1;
        self.emit(Effect::Send(Message::ChannelReestablish(msg)));
    }

    /// The peer's `channel_reestablish` (BOLT 2 requirements for the
    /// receiving node).
    pub fn handle_channel_reestablish<C: Signing>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: &ChannelReestablish,
    ) -> Result<(), ChannelError> {
        if self.failed {
            return Err(ChannelError::Ignore("channel has failed".into()));
        }
        if msg.channel_id != self.channel_id {
            return Err(ChannelError::Warn(
                "channel_reestablish for another channel".into(),
            ));
        }
        if self.link != Link::Reestablishing {
            return Err(ChannelError::Warn("unexpected channel_reestablish".into()));
        }
        let plan = self.check_reestablish(msg).map_err(|e| self.fail(e))?;
        self.link = Link::Up;
        self.version += 1;
        if msg.next_commitment_number == 1 && self.book.local_commitment_number() == 0 {
            let ready = ChannelReady {
                channel_id: self.channel_id,
                second_per_commitment_point: self.local_point(secp, 1),
                short_channel_id: self.local_alias,
                unknown_tlvs: Vec::new(),
            };
            self.emit(Effect::Send(Message::ChannelReady(ready)));
        }
        // Everything the peer missed, in the order we first sent it.
        let mut resend: Vec<(u64, Message)> = Vec::new();
        if plan.resend_revoke {
            let revoked = self.book.local_commitment_number() - 1;
            let raa = self.revoke_and_ack_for(secp, revoked);
            resend.push((self.last_revoke_seq, Message::RevokeAndAck(raa)));
        }
        if plan.resend_commitment {
            self.collect_updates(UpdateState::ReceiverSigned, &mut resend);
            let cs = self
                .last_commitment_signed
                .clone()
                .expect("an unrevoked commitment_signed is kept");
            resend.push((self.last_commitment_seq, Message::CommitmentSigned(cs)));
        }
        self.collect_updates(UpdateState::Announced, &mut resend);
        // BOLT 2: "if it has sent a previous `shutdown`: MUST retransmit
        // `shutdown`".
        if let Some((script, seq)) = &self.shutdown.local {
            resend.push((*seq, Message::Shutdown(self.shutdown_message(script))));
        }
        resend.sort_by_key(|(seq, _)| *seq);
        // A legacy close we finished: the funder repeats its final
        // `closing_signed` in case the peer missed it ([`crate::closing`]).
        if self.book.funder() == lnhub_tx::Side::Local {
            if let Some(m) = self.final_closing_signed() {
                resend.push((u64::MAX, Message::ClosingSigned(m)));
            }
        }
        for (_, m) in resend {
            self.emit(Effect::Send(m));
        }
        Ok(())
    }

    /// Compares the peer's numbers with ours; decides what to resend.
    fn check_reestablish(&self, msg: &ChannelReestablish) -> Result<Resend, ChannelError> {
        let local_cn = self.book.local_commitment_number();
        let remote_cn = self.book.remote_commitment_number();
        let nc = msg.next_commitment_number;
        let nr = msg.next_revocation_number;
        if nc == 0 {
            return Err(ChannelError::close(
                "channel_reestablish next_commitment_number 0",
            ));
        }
        // The secret the peer last received from us.
        let expected_secret = match nr {
            0 => [0; 32],
            n => self.local_secret(n - 1),
        };
        if nr > local_cn {
            return if msg.your_last_per_commitment_secret == expected_secret {
                Err(ChannelError::FallenBehind(format!(
                    "peer expects our revocation {nr}, we are at commitment {local_cn}"
                )))
            } else {
                Err(ChannelError::close(format!(
                    "next_revocation_number {nr} ahead of our commitment {local_cn}"
                )))
            };
        }
        if msg.your_last_per_commitment_secret != expected_secret {
            return Err(ChannelError::close(
                "your_last_per_commitment_secret does not match",
            ));
        }
        let resend_revoke = if local_cn > 0 && nr == local_cn - 1 {
            true
        } else if nr == local_cn {
            false
        } else {
            return Err(ChannelError::close(format!(
                "next_revocation_number {nr}, our commitment is {local_cn}"
            )));
        };
        let resend_commitment = if remote_cn > 0 && nc == remote_cn && self.awaiting_revoke() {
            true
        } else if nc == remote_cn + 1 {
            false
        } else {
            return Err(ChannelError::close(format!(
                "next_commitment_number {nc}, we signed up to {remote_cn}"
            )));
        };
        Ok(Resend {
            resend_revoke,
            resend_commitment,
        })
    }

    /// Our update messages in `state`, each with its send sequence number.
    fn collect_updates(&self, state: UpdateState, msgs: &mut Vec<(u64, Message)>) {
        let channel_id = self.channel_id;
        for h in self.book.htlcs() {
            if h.offerer == Side::Local && h.add_state == state {
                let m = Message::UpdateAddHtlc(UpdateAddHtlc {
                    channel_id,
                    id: h.id,
                    amount_msat: h.amount_msat,
                    payment_hash: h.payment_hash,
                    cltv_expiry: h.cltv_expiry,
                    onion_routing_packet: h.onion_routing_packet,
                    blinded_path: None,
                    unknown_tlvs: Vec::new(),
                });
                msgs.push((h.sent_seq, m));
            }
        }
        for h in self.book.htlcs() {
            let Some(r) = h.removal.as_ref() else {
                continue;
            };
            if h.offerer != Side::Remote || r.state != state {
                continue;
            }
            let m = match &r.kind {
                RemovalKind::Fulfill(p) => Message::UpdateFulfillHtlc(UpdateFulfillHtlc {
                    channel_id,
                    id: h.id,
                    payment_preimage: *p,
                    attribution_data: None,
                    unknown_tlvs: Vec::new(),
                }),
                RemovalKind::Fail(reason) => Message::UpdateFailHtlc(UpdateFailHtlc {
                    channel_id,
                    id: h.id,
                    reason: reason.clone(),
                    attribution_data: None,
                    unknown_tlvs: Vec::new(),
                }),
                RemovalKind::FailMalformed {
                    sha256_of_onion,
                    failure_code,
                } => Message::UpdateFailMalformedHtlc(UpdateFailMalformedHtlc {
                    channel_id,
                    id: h.id,
                    sha256_of_onion: *sha256_of_onion,
                    failure_code: *failure_code,
                    unknown_tlvs: Vec::new(),
                }),
            };
            msgs.push((r.sent_seq, m));
        }
        if self.book.funder() == Side::Local {
            if let Some(f) = self
                .book
                .fee_updates()
                .iter()
                .rev()
                .find(|f| f.state == state)
            {
                let m = Message::UpdateFee(UpdateFee {
                    channel_id,
                    feerate_per_kw: f.feerate_per_kw,
                    unknown_tlvs: Vec::new(),
                });
                msgs.push((f.sent_seq, m));
            }
        }
    }

    /// A `channel_ready` in normal operation is redundant (a
    /// retransmission): ignored, as BOLT 2 requires.
    pub fn handle_channel_ready(&mut self, msg: &ChannelReady) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)
    }
}

/// What the peer missed.
struct Resend {
    resend_revoke: bool,
    resend_commitment: bool,
}
