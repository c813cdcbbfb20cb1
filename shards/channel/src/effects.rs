//! The outputs of a channel state machine and the durability gate (STYLE
//! rule 8, DESIGN "Rules that keep money safe": write-ahead).
//!
//! [`Outbox`] is a FIFO of [`Effect`]s plus a persist sequence. A
//! transition that must be durable requests a persist; every effect
//! emitted after the request (the `revoke_and_ack`, `commitment_signed`,
//! fulfill or preimage that depends on it, and anything after them, so the
//! peer sees messages in order) is held until the caller reports the write
//! with [`Outbox::handle_persisted`]. Persist requests themselves are never
//! held.

use std::collections::VecDeque;

use lnhub_wire::types::{Msat, PaymentHash};

use crate::htlc::RemovalKind;
use lnhub_wire::Message;

/// An output of the channel, drained with [`crate::Channel::poll_effect`].
///
/// `Send` carries the message inline (an `update_add_htlc` holds its
/// 1366-byte onion): the effect queue is allocated once per channel, and
/// boxing would allocate once per message instead.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this message to the peer.
    Send(Message),
    /// Make the channel's current state durable, then call
    /// [`crate::Channel::handle_persisted`] with `seq`. Sequence numbers increase;
    /// persisting `seq` covers every smaller one.
    Persist {
        /// Sequence number of this write.
        seq: u64,
    },
    /// An HTLC the peer offered is irrevocably committed: decide whether
    /// to forward it (its onion is [`crate::Channel::inbound_onion`]).
    Forward {
        /// The HTLC's `id`.
        htlc_id: u64,
        /// `amount_msat`.
        amount_msat: Msat,
        /// `payment_hash`.
        payment_hash: PaymentHash,
        /// `cltv_expiry`.
        cltv_expiry: u32,
        /// Accepting it pushed our trimmed-HTLC exposure over
        /// `max_dust_htlc_exposure_msat`: fail it, never settle it (BOLT 2
        /// "Bounding exposure to trimmed in-flight HTLCs").
        over_dust_exposure: bool,
        /// The peer added it after our `shutdown` (racing it): BOLT 2 says
        /// we SHOULD fail to route it; fail it.
        added_after_shutdown: bool,
    },
    /// The funder may broadcast its funding transaction: the peer's
    /// signature on our first commitment is valid and durable.
    BroadcastFunding {
        /// The funding transaction's id.
        funding_txid: bitcoin::Txid,
    },
    /// The cooperative close is agreed: `tx` is the mutual closing
    /// transaction with both funding signatures, ready to broadcast. The
    /// channel takes no more input ([`crate::Channel::is_closed`]).
    ClosingTx {
        /// The fully signed closing transaction.
        tx: bitcoin::Transaction,
    },
    /// An HTLC we offered is resolved (exactly once per HTLC).
    Resolved {
        /// The HTLC's `id`.
        htlc_id: u64,
        /// How.
        resolution: RemovalKind,
    },
}

/// Largest number of effects one input can queue before the caller drains
/// them: one message, one persist, and per-HTLC effects bounded by
/// 2 * 483 HTLCs. Used only to size the queue once.
const EFFECT_QUEUE_CAPACITY: usize = 16;

/// Effects and the persist sequence of one state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbox {
    pub(crate) next_persist_seq: u64,
    pub(crate) persisted_seq: u64,
    pub(crate) persist_requests: VecDeque<u64>,
    /// Effects in order, each gated on a persist sequence number.
    pub(crate) queue: VecDeque<(u64, Effect)>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            next_persist_seq: 1,
            persisted_seq: 0,
            persist_requests: VecDeque::with_capacity(4),
            queue: VecDeque::with_capacity(EFFECT_QUEUE_CAPACITY),
        }
    }
}

impl Outbox {
    /// The next effect: persist requests first, then the oldest queued
    /// effect if its persist is done.
    pub fn poll(&mut self) -> Option<Effect> {
        if let Some(seq) = self.persist_requests.pop_front() {
            return Some(Effect::Persist { seq });
        }
        match self.queue.front() {
            Some((gate, _)) if *gate <= self.persisted_seq => self.queue.pop_front().map(|e| e.1),
            _ => None,
        }
    }

    /// The write of `seq` and of every smaller sequence number is durable.
    pub fn handle_persisted(&mut self, seq: u64) {
        assert!(
            seq < self.next_persist_seq,
            "persisted seq {seq} was never requested"
        );
        self.persisted_seq = self.persisted_seq.max(seq);
    }

    /// Requests a write; effects emitted after this wait for it.
    pub fn request_persist(&mut self) -> u64 {
        let seq = self.next_persist_seq;
        self.next_persist_seq += 1;
        self.persist_requests.push_back(seq);
        seq
    }

    /// The state machine was just decoded from a durable record: every
    /// persist it requested is done (the record is that write or a later
    /// one), so nothing stays gated and no request is repeated.
    pub(crate) fn release_after_restart(&mut self) {
        self.persist_requests.clear();
        self.persisted_seq = self.next_persist_seq - 1;
    }

    /// Drops every queued `Send` (the connection they were for is gone);
    /// other effects stay.
    pub fn drop_sends(&mut self) {
        self.queue.retain(|(_, e)| !matches!(e, Effect::Send(_)));
    }

    /// Queues an effect behind every earlier one, gated on the latest
    /// persist request not yet done.
    pub fn emit(&mut self, effect: Effect) {
        let gate = self.next_persist_seq - 1;
        let gate = if gate > self.persisted_seq { gate } else { 0 };
        self.queue.push_back((gate, effect));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_after_a_persist_request_wait_for_it() {
        let mut o = Outbox::default();
        o.emit(Effect::Forward {
            htlc_id: 0,
            amount_msat: Msat(1),
            payment_hash: PaymentHash([0; 32]),
            cltv_expiry: 1,
            over_dust_exposure: false,
            added_after_shutdown: false,
        });
        let seq = o.request_persist();
        o.emit(Effect::Forward {
            htlc_id: 1,
            amount_msat: Msat(1),
            payment_hash: PaymentHash([0; 32]),
            cltv_expiry: 1,
            over_dust_exposure: false,
            added_after_shutdown: false,
        });
        assert_eq!(o.poll(), Some(Effect::Persist { seq }));
        assert!(matches!(o.poll(), Some(Effect::Forward { htlc_id: 0, .. })));
        assert_eq!(o.poll(), None);
        o.handle_persisted(seq);
        assert!(matches!(o.poll(), Some(Effect::Forward { htlc_id: 1, .. })));
        assert_eq!(o.poll(), None);
    }
}
