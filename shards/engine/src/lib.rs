//! The sharded forwarding engine (DESIGN.md "The hot path"): shards that own their channels
//! outright and run them in turns, with signature checks, signing and onion peeling batched
//! on rayon, one group commit per turn before any committing message leaves, and forwards
//! handed from the incoming channel's shard to the outgoing channel's shard.
//!
//! [`Shard`] is the deterministic core: it does no I/O of its own (output goes through
//! [`Io`], durability through [`Store`]), so the deterministic simulator drives exactly the
//! code the daemon's shard threads run. [`Engine`] (module [`runtime`]) is the shell: one
//! pinned thread per shard, the crossbeam queues between them and the connection room.

#![deny(missing_docs)]

mod forwards;
pub mod keys;
pub mod open;
pub mod restore;
pub mod runtime;
pub mod shard;
pub mod store;

pub use lnhub_schema::{Batch, Loaded, MemTables};
pub use open::{default_establish_config, OpenConfig, Opening};
pub use restore::restore;
pub use runtime::{
    abort_on_panic, shard_of, Engine, EngineConfig, Output, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DEPTH,
    DEFAULT_ROUNDS_PER_TURN,
};
pub use shard::{
    Counters, ForwardLink, HandOff, Input, Io, Origin, Replays, Route, Routes, Shard, ShardConfig,
    Slot, Upstream, MAX_ROUNDS_PER_TURN,
};
pub use store::{Completion, MemoryStore, Store, StoreError, Submitted};
