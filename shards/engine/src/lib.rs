//! The shell of the sharded forwarding engine: one pinned thread per shard ([`lnhub_shard`],
//! the deterministic core), the crossbeam queues between them and the connection room, the
//! store's answers, and the hub's onion replay set behind its lock ([`runtime`]).
//!
//! The shard's types are re-exported, so the daemon needs only this crate.

#![deny(missing_docs)]

pub mod runtime;

pub use lnhub_shard::{
    default_establish_config, keys, open, restore, shard, shard_of, store, Batch, ChainRequest,
    ChannelReport, ChannelState, Completion, Counters, ForwardLink, FundingStatus, HandOff, Input,
    Io, Loaded, MemTables, MemoryStore, OpenConfig, Opening, Origin, PolicyChange, Route, Shard,
    ShardConfig, ShardReport, Slot, Store, StoreError, Submitted, Upstream, DEFAULT_CLOSE_DEPTH,
    MAX_ROUNDS_PER_TURN,
};
pub use runtime::{
    abort_on_panic, Admin, Engine, EngineConfig, Output, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DEPTH,
    DEFAULT_ROUNDS_PER_TURN,
};
