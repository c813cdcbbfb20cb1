//! Rebuilding a shard after a restart: channels decoded from their records (in parallel, by
//! [`crate::restore()`]), channels in establishment, forward links and the replay set's
//! origins; and the records a test writes for channels it built by hand.

use super::*;

impl Shard {
    /// Records that the restored replay-set entry `tag` was first carried by this shard's
    /// incoming HTLC `htlc_id` on `channel_id` (see [`crate::restore()`]).
    pub fn restore_replay_origin(&mut self, tag: u128, channel_id: ChannelId, htlc_id: u64) {
        self.restored_replays.insert(tag, (channel_id, htlc_id));
    }

    /// Restores forward links after a restart (from the store).
    pub fn restore_link(&mut self, link: ForwardLink) {
        self.origins.insert(link.origin);
        if link.resolution.is_some() {
            self.restored_resolutions
                .push((link.out_channel_id, link.out_htlc_id));
        }
        self.links
            .insert((link.out_channel_id, link.out_htlc_id), link);
    }

    /// Restores a channel after a restart, decoded from its stored record
    /// ([`decode_channel`], which [`crate::restore()`] runs in parallel): releases what its last
    /// write gated and lets it re-report the forwards and resolutions it may not have seen
    /// acted on (at least once: the shard de-duplicates). `htlcs_on_disk` are the (offered by
    /// the peer, HTLC id) of every HTLC record stored for it. A channel stored without a static
    /// record (the layout before them) gets one with its next write. The peer counts as
    /// disconnected until it reconnects.
    pub(crate) fn insert_restored(
        &mut self,
        mut channel: Channel,
        stored: &ChannelRecord,
        htlcs_on_disk: impl IntoIterator<Item = (bool, u64)>,
    ) {
        channel.handle_restart();
        let id = channel.channel_id();
        let h = &stored.header;
        if let Some(tx) = channel.closing_tx() {
            // Closed before the restart: broadcast again until it confirms.
            self.chain_requests.push(ChainRequest::Broadcast {
                channel_id: id,
                tx: tx.clone(),
            });
        }
        self.insert_channel(channel, h.peer, h.scid, h.policy, false, h.remote_alias);
        self.watch_funding(id, true);
        let slot = self.slots.get_mut(&id).expect("just inserted");
        // Every stored HTLC record, even one whose HTLC the channel's record no longer holds:
        // the next write deletes those.
        slot.htlcs_on_disk = htlcs_on_disk.into_iter().collect();
        slot.statics_on_disk = stored.statics.is_some();
        self.touched.insert(id);
    }

    /// Appends every channel's record to `batch` (as after establishment): for tests and
    /// tools that build a shard's channels by hand and store them.
    pub fn write_channels(&mut self, batch: &mut Batch) {
        for slot in self.slots.values_mut() {
            write_channel(batch, slot);
        }
    }

    /// Restores a channel in establishment after a restart from its stored record (written
    /// once commitment 0 was signed both ways, before our `funding_signed` left): decodes it
    /// (the record is checked) and restarts it (`Establishing::handle_restart`: what the
    /// write gated is released, the messages the lost connection was to carry are dropped).
    /// BOLT 2 keeps such a channel, since the funder may have broadcast; a record from before
    /// `funding_created` (never written by a shard) is forgotten, as a disconnection would.
    /// The peer's `channel_reestablish` (or its `channel_ready`) brings our `channel_ready`
    /// again once it is due: at once for a zero-conf channel, otherwise once the chain
    /// backend, asked to watch the funding again, reports it deep enough.
    pub fn restore_opening(
        &mut self,
        stored: &OpeningRecord,
    ) -> Result<(), lnhub_channel::DecodeError> {
        let mut est = lnhub_channel::Establishing::decode(&stored.state)?;
        let funding_tx = match &stored.header.funding_tx {
            Some(bytes) => Some(
                bitcoin::consensus::deserialize::<bitcoin::Transaction>(bytes).map_err(|_| {
                    lnhub_channel::DecodeError::Invalid("the funding transaction does not decode")
                })?,
            ),
            None => None,
        };
        est.handle_restart();
        if let Some(id) = est.channel_id() {
            // Ours, signed both ways before the write: broadcast again until it confirms.
            if let Some(tx) = &funding_tx {
                if est.state() == lnhub_channel::EstablishState::AwaitingReady {
                    self.chain_requests.push(ChainRequest::Broadcast {
                        channel_id: id,
                        tx: tx.clone(),
                    });
                }
            }
            let opening = crate::open::Opening {
                est,
                peer: stored.header.peer,
                alias: stored.header.alias,
                funding: FundingStatus::default(),
                funding_accepted_at: stored.header.funding_accepted_at,
                funding_tx,
            };
            self.opener.opening.insert(id, opening);
            self.opener.new_fundings.push(id);
            self.watch_new_fundings(true);
        }
        Ok(())
    }
}

/// Decodes a stored channel's records (its static record and progress record, or the whole
/// channel's record of the layout before static records) with its stored HTLC records
/// (`Loaded::htlcs_of`: in (offered by the peer, HTLC id) order): pure and independent per
/// channel, so a restore runs it in parallel.
pub(crate) fn decode_channel(
    stored: &ChannelRecord,
    htlcs: &[(ChannelId, bool, u64, lnhub_schema::HtlcRecord)],
) -> Result<Channel, lnhub_channel::DecodeError> {
    let mut lookup = |side, id| {
        let key = (side == lnhub_tx::Side::Remote, id);
        let i = htlcs
            .binary_search_by(|(_, p, h, _)| (*p, *h).cmp(&key))
            .ok()?;
        Some(crate::store::htlc_terms(&htlcs[i].3))
    };
    match &stored.statics {
        Some(statics) => Channel::decode_parts(statics, &stored.state, &mut lookup),
        None => Channel::decode_lean(&stored.state, &mut lookup),
    }
}
