//! HTLC deadlines (BOLT 2 "`cltv_expiry_delta` Selection": "a node MUST
//! fail the channel ... if an offered HTLC ... is past its timeout" and
//! the fulfill deadline of a received HTLC). Block height is an input;
//! this module only decides, the on-chain work is the caller's (BOLT 5).

use lnhub_tx::Side;

use crate::channel::Channel;
use crate::error::ChannelError;
use crate::htlc::{RemovalKind, UpdateState};

/// Blocks we wait past an offered HTLC's `cltv_expiry` before going
/// on-chain to time it out: BOLT 2's recommended `G` (grace period) of one
/// to two blocks plus one for our own block processing latency.
pub const OFFERED_HTLC_GRACE_BLOCKS: u32 = 3;

/// Blocks before a received HTLC's `cltv_expiry` by which a fulfill we
/// sent must be irrevocable, or we claim it on-chain: BOLT 2's fulfillment
/// deadline, `cltv_expiry_delta`'s `R` (2 blocks to confirm a claim) plus
/// reorganisation margin of 4 blocks.
pub const FULFILL_DEADLINE_BLOCKS: u32 = 6;

impl Channel {
    /// The chain tip is at `height`: fails the channel (so the caller goes
    /// on-chain) if an HTLC we offered is past its timeout, or a fulfill we
    /// sent is not irrevocable close to the HTLC's expiry.
    pub fn handle_block_height(&mut self, height: u32) -> Result<(), ChannelError> {
        if self.failed {
            return Ok(());
        }
        let mut violation = None;
        for h in self.book.htlcs() {
            let removal_done = h
                .removal
                .as_ref()
                .is_some_and(|r| r.state == UpdateState::Irrevocable);
            if removal_done || h.add_state != UpdateState::Irrevocable {
                continue;
            }
            let fulfilled = h
                .removal
                .as_ref()
                .is_some_and(|r| matches!(r.kind, RemovalKind::Fulfill(_)));
            violation = match h.offerer {
                // Once the peer fulfilled, we hold the preimage: no race.
                Side::Local
                    if !fulfilled
                        && height >= h.cltv_expiry.saturating_add(OFFERED_HTLC_GRACE_BLOCKS) =>
                {
                    Some(format!(
                        "offered HTLC {} expired at {} (height {height})",
                        h.id, h.cltv_expiry
                    ))
                }
                Side::Remote
                    if fulfilled
                        && height.saturating_add(FULFILL_DEADLINE_BLOCKS) >= h.cltv_expiry =>
                {
                    Some(format!(
                        "fulfilled HTLC {} not settled {FULFILL_DEADLINE_BLOCKS} blocks before \
                         its expiry {}",
                        h.id, h.cltv_expiry
                    ))
                }
                _ => None,
            };
            if violation.is_some() {
                break;
            }
        }
        match violation {
            Some(m) => Err(self.fail(ChannelError::Close(m))),
            None => Ok(()),
        }
    }
}
