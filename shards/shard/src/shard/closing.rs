//! The cooperative close of a shard's channels: `shutdown` when the operator asks or the peer
//! calls for it, the closing signatures, and the deadline on the peer's answer.

use super::*;

/// How long (seconds) our closing message may wait for the peer's answer before the channel
/// is failed (`closing_signed`: BOLT 2 MUST) or the connection closed (`closing_complete`).
/// The runtime runs an empty turn every `lnhub_engine::runtime::TICK` so the clock is looked at
/// even when nothing arrives.
pub const CLOSING_REPLY_TIMEOUT_SECS: u64 = 600;

impl Shard {
    /// Fails (or disconnects) the channels whose closing message went unanswered for
    /// [`CLOSING_REPLY_TIMEOUT_SECS`]; forgets the waits that ended.
    pub(super) fn check_closing_timeouts(&mut self, io: &mut dyn Io) {
        if self.closing_wait.is_empty() {
            return;
        }
        let now = self.now;
        let mut expired = Vec::new();
        let slots = &self.slots;
        self.closing_wait.retain(|id, since| match slots.get(id) {
            Some(slot) if slot.channel.awaiting_closing_reply() => {
                if now >= since.saturating_add(CLOSING_REPLY_TIMEOUT_SECS) {
                    expired.push(*id);
                    false
                } else {
                    true
                }
            }
            _ => false,
        });
        for id in expired {
            let slot = self.slots.get_mut(&id).expect("checked above");
            if let Err(e) = slot.channel.handle_closing_timeout() {
                let peer = slot.peer;
                self.touched.insert(id);
                self.channel_error(id, peer, e, io);
            }
        }
    }

    /// The cooperative close of every touched channel, after its updates are signed: our
    /// `shutdown` when the operator asked for it or the peer's calls for a reply, then our
    /// closing signatures (rare, so signed inline).
    pub(super) fn close_all(&mut self, io: &mut dyn Io) {
        // Only channels in a close (or asked to start one) have work here: on the forwarding
        // path this list is empty and allocates nothing.
        let slots = &self.slots;
        let requested = &self.close_requested;
        let ids: Vec<ChannelId> = self
            .touched
            .iter()
            .filter(|id| {
                requested.contains(*id)
                    || slots.get(*id).is_some_and(|s| s.channel.is_shutting_down())
            })
            .copied()
            .collect();
        for id in &ids {
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            let ch = &mut slot.channel;
            if !slot.connected || ch.is_failed() {
                continue;
            }
            let requested = self.close_requested.contains(id);
            if (requested || ch.needs_shutdown_reply())
                && ch.shutdown_state().local_script().is_none()
            {
                let script = match &self.config.close_script {
                    Some(script) => script.clone(),
                    None => crate::keys::shutdown_script(&self.secp, &self.config.node_secret, id),
                };
                match ch.send_shutdown(script) {
                    Ok(()) => {
                        log::info!("channel {id}: shutdown sent");
                        self.close_requested.remove(id);
                    }
                    // Sign first; the next turn that touches the channel tries again.
                    Err(SendError::PendingUpdates) => {}
                    Err(e) => {
                        log::warn!("channel {id}: cannot send shutdown: {e}");
                        self.close_requested.remove(id);
                    }
                }
            } else if requested {
                self.close_requested.remove(id);
            }
            match ch.stage_closing_sign() {
                Ok(Some(staged)) => {
                    ch.apply_closing_sign(staged.sign(&self.secp));
                    if ch.awaiting_closing_reply() {
                        self.closing_wait.insert(*id, self.now);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let peer = slot.peer;
                    self.channel_error(*id, peer, e, io);
                }
            }
        }
    }
}
