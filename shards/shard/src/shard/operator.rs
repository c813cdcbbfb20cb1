//! What the operator asks of a shard: its figures and channels ([`Input::Report`]), and a new
//! forwarding policy ([`Input::SetPolicy`]); and the forwarding log's counts by outcome.

use super::*;

use lnhub_metrics::labels;
use lnhub_tx::Side;

impl Shard {
    /// Applies a policy change to one channel or all of this shard's: the previous policy
    /// stays honoured for the grace period ([`PolicyHistory::update`]), the record is
    /// rewritten with the next batch, and each connected peer gets the new `channel_update`.
    pub(super) fn set_policy(
        &mut self,
        channel_id: Option<ChannelId>,
        change: PolicyChange,
        io: &mut dyn Io,
    ) {
        let ids: Vec<ChannelId> = match channel_id {
            Some(id) if self.slots.contains_key(&id) => vec![id],
            Some(id) => {
                log::warn!("policy change for unknown channel {id}");
                return;
            }
            None => self.slots.keys().copied().collect(),
        };
        let now = self.now;
        for id in ids {
            let slot = self.slots.get_mut(&id).expect("listed");
            let policy = change.apply(slot.policy.current);
            if policy == slot.policy.current {
                continue;
            }
            slot.policy.update(policy, now);
            log::info!(
                "channel {id}: policy now {} msat + {} ppm, cltv delta {}, htlc {}..{} msat",
                policy.fee_base_msat,
                policy.fee_proportional_millionths,
                policy.cltv_expiry_delta,
                policy.htlc_minimum_msat.0,
                policy.htlc_maximum_msat.0
            );
            self.rewrites.push(id);
            if slot.connected && slot.channel.is_operational() {
                self.send_channel_update(id, io);
            }
        }
    }

    /// Sends the peer our `channel_update` for `channel_id` (current policy), named by the
    /// peer's alias when it gave one (a private channel's update goes to the peer only).
    pub(super) fn send_channel_update(&mut self, channel_id: ChannelId, io: &mut dyn Io) {
        let Some(slot) = self.slots.get(&channel_id) else {
            return;
        };
        let update = channel_update(
            &self.secp,
            &self.config.node_secret,
            self.config.chain_hash,
            slot.remote_alias.unwrap_or(slot.scid),
            &self.node_id,
            &slot.peer,
            &slot.policy.current,
            slot.channel.book().capacity_msat(),
            u32::try_from(self.now).unwrap_or(u32::MAX),
        );
        io.send(&slot.peer, Message::ChannelUpdate(update));
    }

    /// Queues a forwarding-log entry for the next batch and counts it by outcome.
    pub(super) fn log_forward(&mut self, record: ForwardRecord) {
        let c = &mut self.counters;
        match record.outcome {
            ForwardOutcome::Settled => {
                c.forwards_settled_total += 1;
                c.fees_msat_total += record.fee_msat().0;
                c.volume_msat_total += record.out_amount_msat.0;
            }
            ForwardOutcome::FailedDownstream { failure_code } => {
                let slot = failure_code.map_or(labels::FAILURE_SLOTS - 1, labels::failure_index);
                c.forwards_failed_downstream[slot] += 1;
            }
            ForwardOutcome::FailedHere { failure_code } => {
                c.forwards_failed_here[labels::failure_index(failure_code)] += 1;
            }
        }
        self.forwards_done.push(record);
    }
}

/// One channel as the operator sees it.
pub(super) fn channel_report(slot: &Slot) -> ChannelReport {
    let channel = &slot.channel;
    let book = channel.book();
    let (mut htlcs_in, mut htlcs_out) = ((0, 0), (0, 0));
    for h in book.htlcs() {
        let side = match h.offerer {
            Side::Remote => &mut htlcs_in,
            Side::Local => &mut htlcs_out,
        };
        side.0 += 1;
        side.1 += h.amount_msat.0;
    }
    // The books fold an HTLC into a balance once it is fully resolved; until then it is
    // counted apart, so the two balances and the HTLCs add up to the capacity.
    let local_msat = book.base_balance(Side::Local).saturating_sub(htlcs_out.1);
    let remote_msat = book.base_balance(Side::Remote).saturating_sub(htlcs_in.1);
    let state = if channel.is_failed() {
        ChannelState::Failed
    } else if channel.is_closed() {
        ChannelState::Closed
    } else if channel.shutdown_state().started() {
        ChannelState::ShuttingDown
    } else if !slot.connected || !channel.is_operational() {
        ChannelState::Disconnected
    } else {
        ChannelState::Normal
    };
    ChannelReport {
        channel_id: channel.channel_id(),
        peer: slot.peer,
        scid: slot.scid,
        remote_alias: slot.remote_alias,
        real_scid: slot.real_scid,
        funding: channel.params().funding_outpoint(),
        closing_txid: channel.closing_tx().map(|tx| tx.compute_txid()),
        state,
        capacity_msat: book.capacity_msat(),
        local_msat,
        remote_msat,
        htlcs_in,
        htlcs_out,
        policy: slot.policy.current,
        previous_policy: slot.policy.previous,
        we_funded: book.funder() == Side::Local,
    }
}
