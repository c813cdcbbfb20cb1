//! The shard's store seam: a turn's records encoded into one batch and handed to the store
//! ([`Store::submit`]), and what the batch gated released once it is durable
//! ([`Shard::persisted`]): held messages, forward links and refusals for other shards.

use super::*;

/// What a submitted batch gates: released by [`Shard::persisted`] (or at once by a
/// synchronous store).
#[derive(Debug, Default)]
pub(super) struct Gated {
    /// Channels and the persist sequence numbers the batch covers.
    pub(super) persists: Vec<(ChannelId, u64)>,
    /// The same for channels in establishment.
    pub(super) opening_persists: Vec<(ChannelId, u64)>,
    /// Every channel whose record the batch holds (their effects are drained after).
    pub(super) written: Vec<ChannelId>,
    /// Inputs for shards that wait for the batch (see `Shard::held`).
    pub(super) inputs: Vec<(usize, Input)>,
}

impl Shard {
    /// Group commit: every channel that asked, plus forward links, in one batch handed to the
    /// store. A synchronous store makes it durable at once and what it gates is released
    /// here; otherwise the batch is in flight, the turn goes on, and [`Shard::persisted`]
    /// releases it. While a batch is in flight nothing more is submitted: what changes
    /// meanwhile waits for the next batch.
    pub(super) fn commit(
        &mut self,
        store: &mut dyn Store,
        io: &mut dyn Io,
    ) -> Result<(), StoreError> {
        if self.in_flight.is_some() || !self.has_unwritten() {
            return Ok(());
        }
        let mut gated = Gated {
            persists: std::mem::take(&mut self.persists),
            opening_persists: std::mem::take(&mut self.opening_persists),
            written: Vec::new(),
            inputs: std::mem::take(&mut self.held),
        };
        // A link is written with its outgoing channel's state (which holds the added HTLC), even
        // when that channel asked for no write this turn: a link whose HTLC the record lacks
        // would stop the forward from ever being retried after a restart.
        let mut unique: Vec<ChannelId> = gated
            .persists
            .iter()
            .map(|(id, _)| *id)
            .chain(self.new_links.iter().map(|l| l.out_channel_id))
            .chain(self.opened.drain(..))
            .chain(self.rewrites.drain(..))
            .collect();
        unique.sort_unstable_by_key(|id| id.0);
        unique.dedup();
        let mut batch = self.batch.take().unwrap_or_default();
        batch.clear();
        for id in &unique {
            if let Some(slot) = self.slots.get_mut(id) {
                write_channel(&mut batch, slot);
            }
        }
        self.write_retired(&mut batch);
        gated.written = unique;
        for link in self.new_links.drain(..) {
            write_link(&mut batch, &link);
        }
        for (id, _) in &gated.opening_persists {
            if let Some(o) = self.opener.opening.get(id) {
                write_opening(&mut batch, id, o);
            }
        }
        for (channel_id, htlc_id) in self.done_links.drain(..) {
            delete_link(&mut batch, &channel_id, htlc_id);
        }
        for (expiry, tag, channel_id, htlc_id) in self.replays_seen.drain(..) {
            batch.put_with(Table::Replays, &replay_key(expiry, tag), |out| {
                encode_replay(out, &channel_id, htlc_id)
            });
        }
        for (expiry, tag) in self.replays_forgotten.drain(..) {
            batch.delete(Table::Replays, &replay_key(expiry, tag));
        }
        for f in self.forwards_done.drain(..) {
            lnhub_schema::put_forward(&mut batch, &f);
        }
        self.counters.commits_total += 1;
        self.counters.records_total += batch.len() as u64;
        self.counters.bytes_written_total += batch.bytes() as u64;
        match store.submit(batch)? {
            Submitted::Durable(batch) => {
                self.batch = Some(batch);
                self.release(gated, io);
            }
            Submitted::InFlight => self.in_flight = Some(gated),
        }
        Ok(())
    }

    /// The store's answer for the batch in flight: on success, releases what it gated (the
    /// messages go out through `io`; forwards that became irrevocable wait for the next
    /// turn, which the caller should run now: [`Shard::has_pending_work`]). An error is final:
    /// nothing is released and the caller must stop.
    pub fn persisted(&mut self, completion: Completion, io: &mut dyn Io) -> Result<(), StoreError> {
        let (batch, result) = completion;
        result?;
        self.batch = Some(batch);
        match self.in_flight.take() {
            Some(gated) => self.release(gated, io),
            None => log::error!(
                "shard {}: a store answer with no batch in flight",
                self.config.index
            ),
        }
        Ok(())
    }

    /// Whether a batch of this shard is being written.
    pub fn commit_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Releases what a durable batch gated.
    pub(super) fn release(&mut self, gated: Gated, io: &mut dyn Io) {
        for (id, seq) in gated.persists {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.channel.handle_persisted(seq);
            }
            self.touched.insert(id);
        }
        for id in gated.written {
            self.drain_channel(id, io);
        }
        let mut peers = Vec::new();
        for (id, seq) in gated.opening_persists {
            if let Some(o) = self.opener.opening.get_mut(&id) {
                o.est.handle_persisted(seq);
                peers.push(o.peer);
            }
        }
        peers.dedup();
        for peer in peers {
            self.drain_openings(peer, io);
        }
        for (shard, input) in gated.inputs {
            if shard == self.config.index {
                self.pending.push_back(input);
            } else {
                io.to_shard(shard, input);
            }
        }
    }
}
