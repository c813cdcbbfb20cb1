//! One shard of the forwarding engine (DESIGN.md "The hot path"), as a deterministic, sans-IO
//! state machine: a set of channels owned outright and run in turns, with signature checks,
//! signing and onion peeling batched on rayon, one group commit per turn before any
//! committing message leaves, and forwards handed from the incoming channel's shard to the
//! outgoing channel's shard.
//!
//! [`Shard`] does no I/O of its own and shares nothing with other shards: messages to peers,
//! inputs for other shards (hand-offs, new routes) and the hub's onion replay set go through
//! the [`Io`] the caller passes to each call; durable writes through the [`Store`]; the time
//! comes in with each turn. So the deterministic simulator (`tests/sim.rs`) drives exactly
//! the code the daemon's shard threads run (`lnhub-engine`, the shell: threads, queues and
//! the replay set's lock).
//!
//! - [`shard`]: the shard, its inputs and the turn; beside it, verify and sign, the store
//!   seam, forwarding, closing, restart.
//! - [`store`]: the durability boundary (the [`Store`] trait, a turn's records, the
//!   in-memory store of the tests and simulators).
//! - [`open`]: channels being opened to us (BOLT 2 establishment, inbound).
//! - [`restore`]: shards rebuilt from what the store loaded.
//! - [`keys`]: channel keys derived from the node secret.

#![deny(missing_docs)]

mod forwards;
pub mod keys;
pub mod open;
pub mod restore;
pub mod shard;
pub mod store;

pub use lnhub_schema::{Batch, Loaded, MemTables};
pub use open::{default_establish_config, OpenConfig, Opening};
pub use restore::restore;
pub use shard::{
    check_replays_in, replays_at_height_in, ChainRequest, ChannelReport, ChannelState, Counters,
    ForwardLink, FundingStatus, HandOff, Input, Io, Origin, PolicyChange, Route, Shard,
    ShardConfig, ShardReport, Slot, Upstream, DEFAULT_CLOSE_DEPTH, MAX_ROUNDS_PER_TURN,
};
pub use store::{Completion, MemoryStore, Store, StoreError, Submitted};

use secp256k1::PublicKey;

/// Which shard owns a peer's channels. All of one peer's channels live on one shard, so its
/// channel messages and its connection events stay in one ordered queue, and nothing has to be
/// re-routed when a channel's id changes at funding.
pub fn shard_of(node_id: &PublicKey, shards: usize) -> usize {
    let bytes = node_id.serialize();
    // The key's bytes are uniformly distributed; the last eight are as good as a hash.
    let tail = u64::from_be_bytes(bytes[25..33].try_into().expect("33-byte key"));
    (tail % shards as u64) as usize
}
