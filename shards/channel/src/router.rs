//! The one place a peer's channel message becomes a call on [`Channel`]
//! ([`Channel::handle_message`]). The shard, the channel fuzz target and
//! the channel simulator all route through it, so a message routed to the
//! wrong handler (or dropped) is seen by every one of them.
//!
//! Two messages need curve arithmetic before the channel can take them,
//! and a shard runs that arithmetic for many channels at once, on rayon:
//! `commitment_signed` (commitment built, keys derived, then every
//! signature checked: [`Channel::stage_commitment_signed`],
//! [`crate::verify_batch`], [`Channel::apply_commitment_signed`]) and
//! `revoke_and_ack` (the secret checked against its point:
//! [`Channel::handle_revoke_and_ack`]). The router hands those back
//! ([`Routed::Commitment`], [`Routed::Revoke`]) instead of running them; a
//! caller that does not batch finishes them at once with
//! [`Routed::finish`]. The closing negotiation's one or two signature
//! checks are rare and run inline.

use lnhub_wire::msgs::{CommitmentSigned, RevokeAndAck};
use lnhub_wire::Message;
use secp256k1::{Secp256k1, Signing, Verification};

use crate::{verify_batch, Channel, ChannelError};

/// What [`Channel::handle_message`] left for the caller.
#[derive(Debug)]
pub enum Routed {
    /// The channel took the message: its effects are in the outbox.
    Done,
    /// A `commitment_signed` to stage, verify and apply (in parallel with
    /// other channels', or with [`Routed::finish`]).
    Commitment(CommitmentSigned),
    /// A `revoke_and_ack` to handle (in parallel with other channels', or
    /// with [`Routed::finish`]).
    Revoke(RevokeAndAck),
    /// Not a message a channel in normal operation takes (its type): the
    /// caller decides (BOLT 1 `error` and `warning` are the connection's).
    NotForChannel(u16),
}

impl Routed {
    /// Finishes the message on the calling thread: what a caller that
    /// batches nothing does with every [`Routed`].
    pub fn finish<C: Signing + Verification + Sync>(
        self,
        secp: &Secp256k1<C>,
        channel: &mut Channel,
    ) -> Result<(), ChannelError> {
        match self {
            Routed::Done | Routed::NotForChannel(_) => Ok(()),
            Routed::Commitment(m) => {
                let staged = channel.stage_commitment_signed(secp, m)?;
                let verified = verify_batch(secp, vec![staged])
                    .pop()
                    .expect("one result per stage");
                channel.apply_commitment_signed(verified)
            }
            Routed::Revoke(m) => channel.handle_revoke_and_ack(secp, &m),
        }
    }
}

impl Channel {
    /// Routes a peer's message to this channel's handler (BOLT 2 normal
    /// operation, reestablishment and closing). An `Err` is the channel's
    /// verdict on the message, as the handler gave it.
    pub fn handle_message<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: Message,
    ) -> Result<Routed, ChannelError> {
        let done = |r: Result<(), ChannelError>| r.map(|()| Routed::Done);
        match msg {
            Message::UpdateAddHtlc(m) => done(self.handle_update_add_htlc(&m)),
            Message::UpdateFulfillHtlc(m) => done(self.handle_update_fulfill_htlc(&m)),
            Message::UpdateFailHtlc(m) => done(self.handle_update_fail_htlc(m)),
            Message::UpdateFailMalformedHtlc(m) => done(self.handle_update_fail_malformed_htlc(&m)),
            Message::UpdateFee(m) => done(self.handle_update_fee(&m)),
            Message::CommitmentSigned(m) => Ok(Routed::Commitment(m)),
            Message::RevokeAndAck(m) => Ok(Routed::Revoke(m)),
            Message::ChannelReestablish(m) => done(self.handle_channel_reestablish(secp, &m)),
            Message::ChannelReady(m) => done(self.handle_channel_ready(&m)),
            Message::Shutdown(m) => done(self.handle_shutdown(&m)),
            other => match self.stage_closing_message(&other) {
                Some(Ok(staged)) => {
                    let verified = staged.verify(secp);
                    done(self.apply_closing_verified(verified))
                }
                Some(Err(e)) => Err(e),
                None => Ok(Routed::NotForChannel(other.msg_type())),
            },
        }
    }
}
