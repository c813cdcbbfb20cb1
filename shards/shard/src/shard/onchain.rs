//! What the chain tells a shard about its channels' funding outputs ([`Input::Funding`], in
//! answer to the [`ChainRequest::Watch`] every channel and opening with a known funding
//! output asks for):
//!
//! - a channel in establishment sends `channel_ready` once the funding is `minimum_depth`
//!   deep (a reorg that unconfirms it delays that until the depth is reached again);
//! - a channel whose funding confirmed gets its real `short_channel_id`, which then leads to
//!   it like its alias (published to every shard);
//! - a funding output spent by the agreed closing transaction means the close is on chain:
//!   once it is [`ShardConfig::close_depth`] deep the channel is **retired** (it leaves the
//!   live set; the store replaces its records with a [`ClosedRecord`]), and the backend is
//!   told to forget it;
//! - spent by anything else (a commitment: the channel was force-closed), the channel is
//!   failed and stops forwarding; resolving its outputs on chain is not done yet.

use bitcoin::hashes::Hash as _;
use lnhub_schema::{encode_closed, ClosedRecord};

use super::*;

/// A channel retired this turn: its summary and the HTLC records still stored for it.
#[derive(Debug)]
pub(super) struct Retired {
    pub(super) channel_id: ChannelId,
    pub(super) record: ClosedRecord,
    pub(super) htlcs_on_disk: Vec<(bool, u64)>,
}

impl Shard {
    /// Asks the chain backend to watch the funding of every opening whose funding output
    /// became known (`restored`: from the store, after a restart).
    pub(super) fn watch_new_fundings(&mut self, restored: bool) {
        for channel_id in std::mem::take(&mut self.opener.new_fundings) {
            let Some(o) = self.opener.opening.get(&channel_id) else {
                continue;
            };
            let Some(outpoint) = o.est.funding_output_point() else {
                continue;
            };
            self.chain_requests.push(ChainRequest::Watch {
                channel_id,
                outpoint,
                depth: o.est.minimum_depth().max(self.config.close_depth).max(1),
                restored,
            });
        }
    }

    /// Hands the wallet what the openings asked of it: funding transactions to build, and
    /// those to abandon.
    pub(super) fn flush_opener_requests(&mut self) {
        for (temporary_channel_id, script, amount) in self.opener.fund_requests.drain(..) {
            self.chain_requests.push(ChainRequest::Fund {
                temporary_channel_id,
                script,
                amount,
            });
        }
        for txid in self.opener.abandoned.drain(..) {
            self.chain_requests.push(ChainRequest::Abandon { txid });
        }
        for channel_id in self.opener.unwatched.drain(..) {
            self.chain_requests
                .push(ChainRequest::Forget { channel_id });
        }
    }

    /// Asks the chain backend to watch the funding of channel `channel_id` (`restored`: from
    /// the store, after a restart).
    pub(super) fn watch_funding(&mut self, channel_id: ChannelId, restored: bool) {
        let Some(slot) = self.slots.get(&channel_id) else {
            return;
        };
        self.chain_requests.push(ChainRequest::Watch {
            channel_id,
            outpoint: slot.channel.params().funding_outpoint(),
            depth: self.config.close_depth.max(1),
            restored,
        });
    }

    /// The chain backend's news of `channel_id`'s funding output.
    pub(super) fn handle_funding(
        &mut self,
        channel_id: ChannelId,
        status: FundingStatus,
        io: &mut dyn Io,
    ) {
        if self.opener.contains(&channel_id) {
            let peer = self.opener.opening[&channel_id].peer;
            let outcome = self.opener.handle_funding(&channel_id, status);
            if matches!(outcome, OpenOutcome::Refused(..)) {
                self.chain_requests
                    .push(ChainRequest::Forget { channel_id });
            }
            return self.after_open(peer, outcome, io);
        }
        let Some(slot) = self.slots.get_mut(&channel_id) else {
            return;
        };
        if let Some(scid) = status.scid {
            if slot.real_scid != Some(scid) {
                self.learn_real_scid(channel_id, scid, io);
            }
        }
        let Some((txid, depth)) = status.spent else {
            return;
        };
        let slot = self.slots.get_mut(&channel_id).expect("looked up above");
        if slot.channel.is_closed() {
            // The agreed closing transaction (with `option_simple_close` the peer may have
            // replaced ours: any spend after the agreement is one of the closing ones).
            log::info!(
                "channel {channel_id}: closing transaction {txid} has {depth} confirmations"
            );
            if depth >= self.config.close_depth {
                self.retire(channel_id, txid, depth);
            }
        } else if !slot.channel.is_failed() {
            let peer = slot.peer;
            let e = slot.channel.handle_funding_spent(&txid);
            log::warn!(
                "channel {channel_id}: funding spent by {txid}, not by a closing transaction we \
                 signed: a commitment is on chain; the channel stops forwarding"
            );
            self.counters.channels_failed_total += 1;
            send_error(io, &peer, channel_id, &e.to_string());
            self.touched.insert(channel_id);
            self.rewrites.push(channel_id);
        }
    }

    /// `channel_id`'s funding confirmed at `scid`: forwards naming it reach the channel.
    pub(super) fn learn_real_scid(
        &mut self,
        channel_id: ChannelId,
        scid: ShortChannelId,
        io: &mut dyn Io,
    ) {
        let Some(slot) = self.slots.get_mut(&channel_id) else {
            return;
        };
        if let Some(old) = slot.real_scid.replace(scid) {
            // A reorg moved the funding: the old position names nothing any more.
            self.routes.remove(&old);
        }
        log::info!("channel {channel_id}: funding confirmed, short_channel_id {scid}");
        let route = Route {
            shard: self.config.index,
            channel_id,
        };
        self.routes.insert(scid, route);
        io.publish_route(scid, route);
    }

    /// Takes `channel_id` out of the live set, its closing transaction `closing_txid` being
    /// `depth` deep; its records are replaced with a summary in the next batch.
    fn retire(&mut self, channel_id: ChannelId, closing_txid: bitcoin::Txid, depth: u32) {
        let Some(slot) = self.slots.remove(&channel_id) else {
            return;
        };
        self.routes.remove(&slot.scid);
        if let Some(real) = slot.real_scid {
            self.routes.remove(&real);
        }
        self.close_requested.remove(&channel_id);
        self.closing_wait.remove(&channel_id);
        self.touched.remove(&channel_id);
        let funding = slot.channel.params().funding_outpoint();
        let book = slot.channel.book();
        let record = ClosedRecord {
            peer: slot.peer,
            alias: slot.scid,
            real_scid: slot.real_scid,
            capacity_sat: book.capacity_msat() / 1000,
            funding_txid: funding.txid.to_byte_array(),
            funding_vout: funding.vout,
            closing_txid: closing_txid.to_byte_array(),
            closing_height: self.height.saturating_sub(depth.saturating_sub(1)),
            local_msat: book.base_balance(lnhub_tx::Side::Local),
            retired_at: self.now,
        };
        log::info!(
            "channel {channel_id} retired: closing transaction {closing_txid} is {depth} blocks deep"
        );
        self.chain_requests
            .push(ChainRequest::Forget { channel_id });
        self.retired.push(Retired {
            channel_id,
            record,
            htlcs_on_disk: slot.htlcs_on_disk.into_iter().collect(),
        });
    }

    /// Forgets the channels in establishment whose funding never confirmed in
    /// [`crate::open::FUNDING_TIMEOUT_BLOCKS`] (the funder gets an `error`).
    pub(super) fn forget_expired_openings(&mut self, height: u32, io: &mut dyn Io) {
        for (channel_id, peer) in self.opener.handle_block_height(height) {
            log::warn!(
                "channel {channel_id}: the funding transaction was not seen in {} blocks: \
                 forgotten",
                crate::open::FUNDING_TIMEOUT_BLOCKS
            );
            send_error(io, &peer, channel_id, "funding transaction never confirmed");
            self.chain_requests
                .push(ChainRequest::Forget { channel_id });
            self.forgotten_openings.push(channel_id);
        }
    }

    /// Appends the retired channels' deletions (their records, static records and HTLC
    /// records) and summaries to `batch`, and the deletion of forgotten openings.
    pub(super) fn write_retired(&mut self, batch: &mut Batch) {
        for channel_id in self.forgotten_openings.drain(..) {
            batch.delete(Table::Openings, &channel_id.0);
        }
        for r in self.retired.drain(..) {
            batch.delete(Table::Channels, &r.channel_id.0);
            batch.delete(Table::ChannelStatics, &r.channel_id.0);
            for (by_peer, htlc_id) in r.htlcs_on_disk {
                batch.delete(
                    Table::Htlcs,
                    &lnhub_schema::htlc_key(&r.channel_id, by_peer, htlc_id),
                );
            }
            batch.put_with(Table::Closed, &r.channel_id.0, |out| {
                encode_closed(out, &r.record)
            });
        }
    }
}
