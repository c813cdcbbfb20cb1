//! Updates in both directions (BOLT 2 "Adding an HTLC: `update_add_htlc`",
//! "Removing an HTLC", "Updating Fees: `update_fee`"): the `send_*`
//! commands that propose ours and the `handle_*` inputs that accept the
//! peer's, each with the spec's requirements.
//!
//! Updates only enter the books here; they reach the commitments through
//! the signature dance in [`crate::commit`].

use bitcoin::hashes::{sha256, Hash};
use lnhub_tx::Side;
use lnhub_wire::msgs::{
    UpdateAddHtlc, UpdateFailHtlc, UpdateFailMalformedHtlc, UpdateFee, UpdateFulfillHtlc,
    ONION_PACKET_LEN,
};
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage};
use lnhub_wire::Message;

use crate::book::Prospective;
use crate::channel::Channel;
use crate::config::CLTV_EXPIRY_TIMESTAMP_THRESHOLD;
use crate::effects::Effect;
use crate::error::{ChannelError, SendError};
use crate::htlc::{Htlc, Removal, RemovalKind, UpdateState, View};
use crate::limits::FEE_SPIKE_BUFFER_FEERATE_MULTIPLE;

/// The `BADONION` bit of a failure code (BOLT 4): required in
/// `update_fail_malformed_htlc`.
pub const BADONION: u16 = 0x8000;

impl Channel {
    /// Offers an HTLC to the peer (`update_add_htlc`); returns its `id`.
    /// Refused, with nothing sent, if it breaks a limit the peer set or
    /// our own reserve / fee / dust rules.
    pub fn send_add_htlc(
        &mut self,
        amount_msat: Msat,
        payment_hash: PaymentHash,
        cltv_expiry: u32,
        onion_routing_packet: &[u8; ONION_PACKET_LEN],
    ) -> Result<u64, SendError> {
        if !self.is_operational() {
            return Err(SendError::NotOperational);
        }
        if self.is_shutting_down() {
            return Err(SendError::ShuttingDown);
        }
        if amount_msat.0 == 0 || amount_msat < self.remote_limits.htlc_minimum_msat {
            return Err(SendError::BelowMinimum);
        }
        if cltv_expiry >= CLTV_EXPIRY_TIMESTAMP_THRESHOLD {
            return Err(SendError::InvalidCltvExpiry);
        }
        let extra = Prospective {
            offerer: Side::Local,
            amount_msat,
            cltv_expiry,
        };
        let mut scratch = core::mem::take(&mut self.scratch);
        let result = self.check_local_add(extra, &mut scratch);
        self.scratch = scratch;
        result?;
        let id = self.book.next_local_htlc_id();
        let sent_seq = self.take_send_seq();
        self.record_htlc(Htlc {
            offerer: Side::Local,
            id,
            amount_msat,
            payment_hash,
            cltv_expiry,
            add_state: UpdateState::Announced,
            sent_seq,
            removal: None,
            onion_routing_packet: *onion_routing_packet,
            over_dust_exposure: false,
            added_after_shutdown: false,
            resolution_reported: false,
        });
        self.emit(Effect::Send(Message::UpdateAddHtlc(UpdateAddHtlc {
            channel_id: self.channel_id,
            id,
            amount_msat,
            payment_hash,
            cltv_expiry,
            onion_routing_packet: *onion_routing_packet,
            blinded_path: None,
            unknown_tlvs: Vec::new(),
        })));
        Ok(id)
    }

    /// The sender's side of BOLT 2 `update_add_htlc`: the peer's next
    /// commitment (exactly what the peer will check) and our own next one.
    fn check_local_add(
        &self,
        extra: Prospective,
        scratch: &mut Vec<lnhub_tx::HtlcSpec>,
    ) -> Result<(), SendError> {
        let funder = self.book.funder();
        for view in [View::RemoteNext, View::LocalNext] {
            let s = self
                .book
                .view_with(view, None, Some(extra), scratch)
                .ok_or(SendError::InsufficientBalance)?;
            let owner = view.owner();
            if view == View::RemoteNext {
                let (count, value) = Self::offered_by(owner, Side::Local, scratch);
                if count > usize::from(self.remote_limits.max_accepted_htlcs) {
                    return Err(SendError::TooManyHtlcs);
                }
                if value > self.remote_limits.max_htlc_value_in_flight_msat.0 {
                    return Err(SendError::InFlightExceeded);
                }
            }
            let (unacked_dust, unacked_untrimmed) =
                self.unacked_remote_htlcs(view, s.feerate_per_kw);
            let costs = self.view_costs(&s, scratch, s.feerate_per_kw, unacked_untrimmed);
            if self.headroom_msat(&s, &costs, Side::Local) < 0 {
                return Err(SendError::InsufficientBalance);
            }
            if funder == Side::Local {
                // Fee spike buffer: one more non-dust HTLC at twice the rate.
                let spike = self.view_costs(
                    &s,
                    scratch,
                    s.feerate_per_kw
                        .saturating_mul(FEE_SPIKE_BUFFER_FEERATE_MULTIPLE),
                    1 + unacked_untrimmed,
                );
                if self.headroom_msat(&s, &spike, Side::Local) < 0 {
                    return Err(SendError::InsufficientBalance);
                }
            } else if self.headroom_msat(&s, &costs, Side::Remote) < 0 {
                return Err(SendError::InsufficientBalance);
            }
            let dust = costs.trimmed_msat + unacked_dust;
            if self.is_trimmed_in(owner, Side::Local, s.feerate_per_kw, extra.amount_msat.0)
                && dust > self.policy.max_dust_htlc_exposure_msat.0
            {
                return Err(SendError::DustExposure);
            }
        }
        Ok(())
    }

    /// The peer's `update_add_htlc` (BOLT 2 receiver requirements).
    pub fn handle_update_add_htlc(&mut self, msg: &UpdateAddHtlc) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        if self.shutdown.remote.is_some() {
            // BOLT 2: "MUST NOT send an `update_add_htlc` after a
            // `shutdown`". An add racing our own shutdown is accepted (the
            // peer had not seen it yet); BOLT 2 says we SHOULD fail it,
            // which the caller does (`Effect::Forward::added_after_shutdown`).
            return Err(self.fail(ChannelError::close("update_add_htlc after shutdown")));
        }
        let over_dust_exposure = self.check_remote_add(msg).map_err(|e| self.fail(e))?;
        self.record_htlc(Htlc {
            offerer: Side::Remote,
            id: msg.id,
            amount_msat: msg.amount_msat,
            payment_hash: msg.payment_hash,
            cltv_expiry: msg.cltv_expiry,
            add_state: UpdateState::Announced,
            sent_seq: 0,
            removal: None,
            onion_routing_packet: msg.onion_routing_packet,
            over_dust_exposure,
            added_after_shutdown: self.shutdown.local.is_some(),
            resolution_reported: false,
        });
        Ok(())
    }

    /// The receiver's side of BOLT 2 `update_add_htlc`; `Ok(true)` if the
    /// HTLC is acceptable but must be failed once committed (dust
    /// exposure).
    fn check_remote_add(&mut self, msg: &UpdateAddHtlc) -> Result<bool, ChannelError> {
        let expected = self.book.next_remote_htlc_id();
        if msg.id != expected {
            return Err(ChannelError::close(format!(
                "update_add_htlc id {} but {expected} expected",
                msg.id
            )));
        }
        if msg.amount_msat.0 == 0 || msg.amount_msat < self.local_limits.htlc_minimum_msat {
            return Err(ChannelError::close(format!(
                "update_add_htlc amount {} below htlc_minimum_msat {}",
                msg.amount_msat, self.local_limits.htlc_minimum_msat
            )));
        }
        if msg.cltv_expiry >= CLTV_EXPIRY_TIMESTAMP_THRESHOLD {
            return Err(ChannelError::close(format!(
                "update_add_htlc cltv_expiry {} is not a block height",
                msg.cltv_expiry
            )));
        }
        let extra = Prospective {
            offerer: Side::Remote,
            amount_msat: msg.amount_msat,
            cltv_expiry: msg.cltv_expiry,
        };
        let mut scratch = core::mem::take(&mut self.scratch);
        let Some(s) = self
            .book
            .view_with(View::LocalNext, None, Some(extra), &mut scratch)
        else {
            self.scratch = scratch;
            return Err(ChannelError::close(
                "update_add_htlc: amount exceeds the sender's balance",
            ));
        };
        let (count, value) = Self::offered_by(Side::Local, Side::Remote, &scratch);
        let costs = self.view_costs(&s, &scratch, s.feerate_per_kw, 0);
        self.scratch = scratch;
        if count > usize::from(self.local_limits.max_accepted_htlcs) {
            return Err(ChannelError::close(format!(
                "{count} HTLCs offered, max_accepted_htlcs is {}",
                self.local_limits.max_accepted_htlcs
            )));
        }
        if value > self.local_limits.max_htlc_value_in_flight_msat.0 {
            return Err(ChannelError::close(format!(
                "{value} msat offered, max_htlc_value_in_flight_msat is {}",
                self.local_limits.max_htlc_value_in_flight_msat
            )));
        }
        if self.headroom_msat(&s, &costs, Side::Remote) < 0 {
            return Err(ChannelError::close(
                "update_add_htlc: sender cannot afford it with its reserve and fees",
            ));
        }
        Ok(self.exceeds_dust_exposure(extra))
    }

    /// Whether `extra` is trimmed on either next commitment and takes the
    /// trimmed total over our `max_dust_htlc_exposure_msat`.
    fn exceeds_dust_exposure(&mut self, extra: Prospective) -> bool {
        let mut scratch = core::mem::take(&mut self.scratch);
        let mut exceeded = false;
        for view in [View::LocalNext, View::RemoteNext] {
            let Some(s) = self.book.view_with(view, None, Some(extra), &mut scratch) else {
                continue;
            };
            let trimmed = self.is_trimmed_in(
                view.owner(),
                extra.offerer,
                s.feerate_per_kw,
                extra.amount_msat.0,
            );
            let costs = self.view_costs(&s, &scratch, s.feerate_per_kw, 0);
            exceeded |= trimmed && costs.trimmed_msat > self.policy.max_dust_htlc_exposure_msat.0;
        }
        self.scratch = scratch;
        exceeded
    }

    /// The HTLC the peer offered with `id`, if we may remove it now: its
    /// add is irrevocably committed and it has no removal yet.
    fn removable_inbound(&self, id: u64) -> Result<(), SendError> {
        if !self.is_operational() {
            return Err(SendError::NotOperational);
        }
        match self.book.htlc(Side::Remote, id) {
            Some(h) if h.add_state == UpdateState::Irrevocable && h.removal.is_none() => Ok(()),
            _ => Err(SendError::UnknownHtlc),
        }
    }

    fn set_removal(&mut self, offerer: Side, id: u64, kind: RemovalKind) {
        // Ours (removing the peer's HTLC) get a send sequence number.
        let sent_seq = if offerer == Side::Remote {
            self.take_send_seq()
        } else {
            0
        };
        let h = self
            .book
            .htlc_mut(offerer, id)
            .expect("removal target checked by the caller");
        assert!(h.removal.is_none(), "an HTLC is removed once");
        h.removal = Some(Removal {
            kind,
            state: UpdateState::Announced,
            sent_seq,
        });
        self.version += 1;
    }

    /// Settles an HTLC the peer offered (`update_fulfill_htlc`). The
    /// message waits for a persist: once sent, we are committed to it.
    pub fn send_fulfill_htlc(
        &mut self,
        htlc_id: u64,
        payment_preimage: PaymentPreimage,
    ) -> Result<(), SendError> {
        self.removable_inbound(htlc_id)?;
        let h = self.book.htlc(Side::Remote, htlc_id).expect("checked");
        if sha256::Hash::hash(&payment_preimage.0).to_byte_array() != h.payment_hash.0 {
            return Err(SendError::WrongPreimage);
        }
        self.set_removal(
            Side::Remote,
            htlc_id,
            RemovalKind::Fulfill(payment_preimage),
        );
        self.request_persist();
        self.emit(Effect::Send(Message::UpdateFulfillHtlc(
            UpdateFulfillHtlc {
                channel_id: self.channel_id,
                id: htlc_id,
                payment_preimage,
                attribution_data: None,
                unknown_tlvs: Vec::new(),
            },
        )));
        Ok(())
    }

    /// Fails an HTLC the peer offered (`update_fail_htlc`) with an already
    /// encrypted `reason`.
    pub fn send_fail_htlc(&mut self, htlc_id: u64, reason: Vec<u8>) -> Result<(), SendError> {
        self.removable_inbound(htlc_id)?;
        // Kept until irrevocable, to retransmit after a reconnection.
        self.set_removal(Side::Remote, htlc_id, RemovalKind::Fail(reason.clone()));
        self.emit(Effect::Send(Message::UpdateFailHtlc(UpdateFailHtlc {
            channel_id: self.channel_id,
            id: htlc_id,
            reason,
            attribution_data: None,
            unknown_tlvs: Vec::new(),
        })));
        Ok(())
    }

    /// Fails an HTLC whose onion we could not parse
    /// (`update_fail_malformed_htlc`); `failure_code` must have BADONION.
    pub fn send_fail_malformed_htlc(
        &mut self,
        htlc_id: u64,
        sha256_of_onion: [u8; 32],
        failure_code: u16,
    ) -> Result<(), SendError> {
        assert!(
            failure_code & BADONION != 0,
            "update_fail_malformed_htlc carries a BADONION failure code"
        );
        self.removable_inbound(htlc_id)?;
        self.set_removal(
            Side::Remote,
            htlc_id,
            RemovalKind::FailMalformed {
                sha256_of_onion,
                failure_code,
            },
        );
        self.emit(Effect::Send(Message::UpdateFailMalformedHtlc(
            UpdateFailMalformedHtlc {
                channel_id: self.channel_id,
                id: htlc_id,
                sha256_of_onion,
                failure_code,
                unknown_tlvs: Vec::new(),
            },
        )));
        Ok(())
    }

    /// Checks that the peer may remove our HTLC `id`: it is in our current
    /// commitment (its add irrevocable) and not removed already.
    fn check_remote_removal(&self, id: u64) -> Result<(), ChannelError> {
        match self.book.htlc(Side::Local, id) {
            Some(h) if h.add_state == UpdateState::Irrevocable && h.removal.is_none() => Ok(()),
            Some(h) if h.removal.is_some() => {
                Err(ChannelError::close(format!("HTLC {id} removed twice")))
            }
            _ => Err(ChannelError::close(format!(
                "HTLC {id} is not in our current commitment"
            ))),
        }
    }

    /// The peer's `update_fulfill_htlc`. The preimage is reported
    /// ([`RemovalKind::Fulfill`]) once it is durable.
    pub fn handle_update_fulfill_htlc(
        &mut self,
        msg: &UpdateFulfillHtlc,
    ) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        self.check_remote_removal(msg.id)
            .map_err(|e| self.fail(e))?;
        let h = self.book.htlc(Side::Local, msg.id).expect("checked");
        if sha256::Hash::hash(&msg.payment_preimage.0).to_byte_array() != h.payment_hash.0 {
            return Err(self.fail(ChannelError::close(format!(
                "update_fulfill_htlc {}: preimage does not match payment_hash",
                msg.id
            ))));
        }
        let reported = h.resolution_reported;
        self.set_removal(
            Side::Local,
            msg.id,
            RemovalKind::Fulfill(msg.payment_preimage),
        );
        if reported {
            // A retransmission of a fulfill we already reported.
            return Ok(());
        }
        self.book
            .htlc_mut(Side::Local, msg.id)
            .expect("checked")
            .resolution_reported = true;
        self.request_persist();
        self.emit(Effect::Resolved {
            htlc_id: msg.id,
            resolution: RemovalKind::Fulfill(msg.payment_preimage),
        });
        Ok(())
    }

    /// The peer's `update_fail_htlc` (taken by value: its `reason` is kept
    /// until the failure is irrevocable, then reported upstream).
    pub fn handle_update_fail_htlc(&mut self, msg: UpdateFailHtlc) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        self.check_remote_removal(msg.id)
            .map_err(|e| self.fail(e))?;
        self.set_removal(Side::Local, msg.id, RemovalKind::Fail(msg.reason));
        Ok(())
    }

    /// The peer's `update_fail_malformed_htlc`.
    pub fn handle_update_fail_malformed_htlc(
        &mut self,
        msg: &UpdateFailMalformedHtlc,
    ) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        self.check_remote_removal(msg.id)
            .map_err(|e| self.fail(e))?;
        if msg.failure_code & BADONION == 0 {
            return Err(self.fail(ChannelError::close(format!(
                "update_fail_malformed_htlc {}: failure_code {:#06x} lacks BADONION",
                msg.id, msg.failure_code
            ))));
        }
        self.set_removal(
            Side::Local,
            msg.id,
            RemovalKind::FailMalformed {
                sha256_of_onion: msg.sha256_of_onion,
                failure_code: msg.failure_code,
            },
        );
        Ok(())
    }

    /// Proposes a new commitment feerate (`update_fee`); only the funder.
    pub fn send_update_fee(&mut self, feerate_per_kw: u32) -> Result<(), SendError> {
        if !self.is_operational() {
            return Err(SendError::NotOperational);
        }
        if self.book.funder() != Side::Local {
            return Err(SendError::NotFunder);
        }
        if self.updates_frozen() {
            return Err(SendError::UpdatesFrozen);
        }
        if feerate_per_kw < self.policy.min_feerate_per_kw
            || feerate_per_kw > self.policy.max_feerate_per_kw
        {
            return Err(SendError::FeerateOutOfRange);
        }
        let mut scratch = core::mem::take(&mut self.scratch);
        let mut result = Ok(());
        for view in [View::RemoteNext, View::LocalNext] {
            let s = self
                .book
                .view_with(view, Some(feerate_per_kw), None, &mut scratch)
                .expect("no prospective HTLC");
            let (unacked_dust, unacked_untrimmed) = self.unacked_remote_htlcs(view, feerate_per_kw);
            let costs = self.view_costs(&s, &scratch, feerate_per_kw, unacked_untrimmed);
            let dust = costs.trimmed_msat + unacked_dust;
            if self.headroom_msat(&s, &costs, Side::Local) < 0 {
                result = Err(SendError::InsufficientBalance);
            } else if dust > self.policy.max_dust_htlc_exposure_msat.0 {
                result = Err(SendError::DustExposure);
            }
        }
        self.scratch = scratch;
        result?;
        let sent_seq = self.take_send_seq();
        self.book.add_fee_update(feerate_per_kw, sent_seq);
        self.version += 1;
        self.emit(Effect::Send(Message::UpdateFee(UpdateFee {
            channel_id: self.channel_id,
            feerate_per_kw,
            unknown_tlvs: Vec::new(),
        })));
        Ok(())
    }

    /// The peer's `update_fee` (BOLT 2 receiver requirements; the
    /// affordability and dust checks are done at once, on our next
    /// commitment).
    pub fn handle_update_fee(&mut self, msg: &UpdateFee) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        self.check_remote_fee(msg.feerate_per_kw)
            .map_err(|e| self.fail(e))?;
        self.book.add_fee_update(msg.feerate_per_kw, 0);
        self.version += 1;
        Ok(())
    }

    fn check_remote_fee(&mut self, feerate_per_kw: u32) -> Result<(), ChannelError> {
        if self.book.funder() != Side::Remote {
            return Err(ChannelError::close("update_fee from the non-funder"));
        }
        if feerate_per_kw < self.policy.min_feerate_per_kw
            || feerate_per_kw > self.policy.max_feerate_per_kw
        {
            return Err(ChannelError::close(format!(
                "update_fee feerate_per_kw {feerate_per_kw} outside [{}, {}]",
                self.policy.min_feerate_per_kw, self.policy.max_feerate_per_kw
            )));
        }
        let mut scratch = core::mem::take(&mut self.scratch);
        let s = self
            .book
            .view_with(View::LocalNext, Some(feerate_per_kw), None, &mut scratch)
            .expect("no prospective HTLC");
        let costs = self.view_costs(&s, &scratch, feerate_per_kw, 0);
        self.scratch = scratch;
        if (s.balance_of(Side::Remote) as u128) < u128::from(costs.funder_charge_msat) {
            return Err(ChannelError::close(format!(
                "update_fee {feerate_per_kw}: funder cannot pay the commitment fee"
            )));
        }
        // BOLT 2 lets the receiver fail the channel when the new feerate
        // trims more than `max_dust_htlc_exposure_msat` (a MAY). We do not:
        // after a reconnection the funder cannot see our adds still in flight
        // to it, so an honest `update_fee` can cross the limit in a race
        // (the simulator found one), and failing the channel would cost both
        // sides a force close. HTLCs added over the limit are still failed
        // (`Effect::Forward::over_dust_exposure`), and as funder we never
        // send such an `update_fee` ourselves.
        Ok(())
    }
}
