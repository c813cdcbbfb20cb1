//! The durability boundary: everything a shard must have on disk before a committing message
//! (`revoke_and_ack`, `commitment_signed`, an upstream fulfill) may leave.
//!
//! A shard collects the writes of a whole turn and hands them to [`Store::commit`] in one call:
//! one transaction, one fsync, however many channels changed (group commit). The call returns
//! only once the writes are durable; only then does the shard release the messages they gate.
//!
//! [`MemoryStore`] keeps the last committed state in memory. It exists for tests and the
//! deterministic simulator (which "crashes" a hub by dropping it and restoring from the store);
//! the daemon must use a durable implementation (LMDB, a later issue) and never this one.

use std::collections::HashMap;

use lnhub_forward::PolicyHistory;
use lnhub_wire::types::ChannelId;
use lnhub_wire::types::ShortChannelId;
use secp256k1::PublicKey;

use crate::open::Opening;
use crate::shard::{ForwardLink, Slot};

/// One record of a turn's batch.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// A channel's whole state, as of the end of the turn's transitions, with what the shard
    /// keeps beside it (peer, scid, policy).
    Channel(&'a Slot),
    /// A channel in establishment (after `funding_created`: commitment 0 is signed both ways
    /// and our `funding_signed` waits for this write), with its peer and our alias.
    Opening {
        /// Its channel id.
        channel_id: ChannelId,
        /// Its state machine (written as `Establishing::encode`) and what the shard keeps
        /// beside it.
        opening: &'a Opening,
    },
    /// A forward in flight: which incoming HTLC an outgoing HTLC pays back to.
    ForwardLink(&'a ForwardLink),
    /// A forward settled or failed upstream: its link is no longer needed.
    ForwardDone {
        /// The outgoing channel.
        channel_id: ChannelId,
        /// The outgoing HTLC id.
        htlc_id: u64,
    },
}

/// Why a commit failed. The shard treats any failure as fatal for the process: with state
/// it cannot persist, releasing committing messages would risk funds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Durable storage for shards. Implementations must make the whole batch durable atomically
/// before returning `Ok`.
pub trait Store {
    /// Makes every write of `batch` durable, in one transaction.
    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), StoreError>;
}

/// A channel record: the encoded state machine (`Channel::encode`) and the shard's data about
/// it.
#[derive(Debug, Clone)]
pub struct StoredChannel {
    /// `Channel::encode` output.
    pub bytes: Vec<u8>,
    /// The peer.
    pub peer: PublicKey,
    /// The scid (our alias) forwards name it by.
    pub scid: ShortChannelId,
    /// Our forwarding policy on it.
    pub policy: PolicyHistory,
}

/// A record of a channel in establishment: the encoded state machine
/// (`Establishing::encode`) and the shard's data about it. Restored with
/// [`crate::Shard::restore_opening`].
#[derive(Debug, Clone)]
pub struct StoredOpening {
    /// `Establishing::encode` output.
    pub bytes: Vec<u8>,
    /// The peer.
    pub peer: PublicKey,
    /// The alias we gave the peer (forwards will name the channel by it).
    pub alias: ShortChannelId,
}

/// In-memory [`Store`] for tests and the simulator: the "disk" is this struct.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    /// Last committed state of each channel, encoded as the LMDB store will hold it.
    pub channels: HashMap<ChannelId, StoredChannel>,
    /// Channels in establishment, encoded like channels; a channel's record replaces its
    /// opening's.
    pub openings: HashMap<ChannelId, StoredOpening>,
    /// Forwards in flight, keyed by outgoing channel and HTLC id.
    pub links: HashMap<(ChannelId, u64), ForwardLink>,
    /// Number of commits (group-commit batches) so far.
    pub commits: u64,
    /// Number of records written so far.
    pub records: u64,
}

impl Store for MemoryStore {
    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), StoreError> {
        for write in batch {
            match write {
                Write::Channel(slot) => {
                    let id = slot.channel.channel_id();
                    self.openings.remove(&id);
                    let mut bytes = Vec::new();
                    slot.channel.encode(&mut bytes);
                    let stored = StoredChannel {
                        bytes,
                        peer: slot.peer,
                        scid: slot.scid,
                        policy: slot.policy,
                    };
                    self.channels.insert(id, stored);
                }
                Write::Opening {
                    channel_id,
                    opening,
                } => {
                    let mut bytes = Vec::new();
                    opening.est.encode(&mut bytes);
                    let stored = StoredOpening {
                        bytes,
                        peer: opening.peer,
                        alias: opening.alias,
                    };
                    self.openings.insert(*channel_id, stored);
                }
                Write::ForwardLink(link) => {
                    self.links
                        .insert((link.out_channel_id, link.out_htlc_id), (*link).clone());
                }
                Write::ForwardDone {
                    channel_id,
                    htlc_id,
                } => {
                    self.links.remove(&(*channel_id, *htlc_id));
                }
            }
        }
        self.commits += 1;
        self.records += batch.len() as u64;
        Ok(())
    }
}
