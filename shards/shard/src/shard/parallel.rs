//! The round's parallel steps: the set-aside `commitment_signed`s and `revoke_and_ack`s
//! handled for every channel at once, every staged signature checked in one batch, and every
//! channel with updates to sign signed at once, each channel on its own rayon task (or in turn
//! on the shard's thread, below [`MIN_PARALLEL_CHANNELS`]).

use super::*;

/// Fewer channels than this are staged or signed on the shard's own thread. Handing work to
/// rayon wakes pool threads that then spin before sleeping, tens of microseconds of CPU per
/// batch, while one channel's step costs a few hundred: for two or three channels running
/// them in turn costs less CPU, and a busy shard's rounds, with many channels, still go
/// parallel.
pub const MIN_PARALLEL_CHANNELS: usize = 4;

impl Shard {
    /// Handles the round's set-aside messages in parallel (one per channel: each touches only
    /// its own channel): `revoke_and_ack`s are applied, `commitment_signed`s staged; then every
    /// staged signature is verified in one batch and applied.
    pub(super) fn verify_staged(&mut self, io: &mut dyn Io) {
        if self.to_stage.is_empty() {
            return;
        }
        let mut aside = std::mem::take(&mut self.to_stage);
        let handled = self.par_channels(aside.drain(..), |secp, ch, m| match m {
            Aside::Commit(m) => ch.stage_commitment_signed(secp, m).map(Some),
            Aside::Revoke(m) => ch.handle_revoke_and_ack(secp, &m).map(|()| None),
        });
        self.to_stage = aside;
        let mut ids = Vec::with_capacity(handled.len());
        let mut stages = Vec::with_capacity(handled.len());
        for (id, result) in handled {
            match result {
                Ok(Some(stage)) => {
                    ids.push(id);
                    stages.push(stage);
                }
                Ok(None) => {}
                Err(e) => {
                    let peer = self.slots[&id].peer;
                    self.channel_error(id, peer, e, io);
                }
            }
        }
        let checks = stages.iter().map(|s| s.checks().len() as u64).sum::<u64>();
        self.counters.signatures_verified_total += checks;
        if checks > 0 {
            self.counters.verify_batch.observe(checks);
        }
        let results = verify_batch(&self.secp, stages);
        self.staged_ids.clear();
        for (channel_id, verified) in ids.into_iter().zip(results) {
            let Some(slot) = self.slots.get_mut(&channel_id) else {
                continue;
            };
            if let Err(e) = slot.channel.apply_commitment_signed(verified) {
                let peer = slot.peer;
                self.channel_error(channel_id, peer, e, io);
            }
        }
    }

    /// Every touched channel with updates the peer has not signed for stages and signs its
    /// `commitment_signed`, all in parallel (each stage touches only its own channel); the
    /// signed stages are then applied in turn.
    pub(super) fn sign_all(&mut self) {
        // While a batch is in flight, a new `commitment_signed` could only leave with the next
        // one: signing after it is durable loses nothing and covers every update that arrived
        // meanwhile in one commitment (each commitment an HTLC sits in costs a signature and a
        // check on each side).
        if self.in_flight.is_some() {
            return;
        }
        let slots = &self.slots;
        let work: Vec<(ChannelId, ())> = self
            .touched
            .iter()
            .filter(|id| {
                slots
                    .get(*id)
                    .is_some_and(|s| s.connected && s.channel.can_sign())
            })
            .map(|id| (*id, ()))
            .collect();
        if work.is_empty() {
            return;
        }
        let signed = self.par_channels(work, |secp, ch, ()| {
            ch.stage_sign(secp).map(|s| s.map(|s| s.sign(secp)))
        });
        let before = self.counters.commitments_signed_total;
        for (id, result) in signed {
            match result {
                Ok(Some(signed)) => {
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.channel.apply_signed(signed);
                        self.counters.commitments_signed_total += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("channel {id}: cannot sign: {e}"),
            }
        }
        let signed = self.counters.commitments_signed_total - before;
        if signed > 0 {
            self.counters.sign_batch.observe(signed);
        }
    }

    /// Runs `f` on each listed channel (ids distinct) in parallel on rayon (in turn below
    /// [`MIN_PARALLEL_CHANNELS`]), with its work item:
    /// each call touches only its own channel. The slots are taken out of the map for the
    /// duration, so the cost is the listed channels', not the shard's. Results come back by id.
    pub(super) fn par_channels<W: Send, T: Send>(
        &mut self,
        work: impl IntoIterator<Item = (ChannelId, W)>,
        f: impl Fn(&Secp256k1<All>, &mut Channel, W) -> T + Sync,
    ) -> Vec<(ChannelId, T)> {
        let taken: Vec<(ChannelId, Slot, W)> = work
            .into_iter()
            .filter_map(|(id, w)| self.slots.remove(&id).map(|slot| (id, slot, w)))
            .collect();
        let secp = &self.secp;
        let one = |(id, mut slot, w): (ChannelId, Slot, W)| {
            let result = f(secp, &mut slot.channel, w);
            (id, slot, result)
        };
        let done: Vec<(ChannelId, Slot, T)> = if taken.len() < MIN_PARALLEL_CHANNELS {
            taken.into_iter().map(one).collect()
        } else {
            taken.into_par_iter().map(one).collect()
        };
        done.into_iter()
            .map(|(id, slot, result)| {
                self.slots.insert(id, slot);
                (id, result)
            })
            .collect()
    }
}
