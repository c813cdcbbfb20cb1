//! Wiring of the channel engine into the daemon: validated config -> shard settings, stores,
//! and the waker that lets shard threads hand output to the connection loop.

use std::sync::Arc;

use lnhub_engine::{
    default_establish_config, Engine, EngineConfig, MemoryStore, OpenConfig, ShardConfig, Store,
    DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DEPTH,
};
use lnhub_forward::{Limits, Policy};
use lnhub_wire::types::Msat;
use secp256k1::SecretKey;

use crate::config::Config;

/// Starts the shard threads.
pub fn start(config: &Config, node_secret: SecretKey, waker: Arc<mio::Waker>) -> Engine {
    let open = config.dev_memory_store.then(|| OpenConfig {
        establish: default_establish_config(config.chain_hash),
        trusted_peers: config.trusted_peers.iter().copied().collect(),
        default_policy: Policy {
            fee_base_msat: config.fee_base_msat,
            fee_proportional_millionths: config.fee_proportional_millionths,
            cltv_expiry_delta: config.cltv_expiry_delta,
            htlc_minimum_msat: Msat(config.htlc_minimum_msat),
            htlc_maximum_msat: Msat(u64::MAX),
        },
        key_nonce_start: fresh_nonce(),
    });
    let engine_config = EngineConfig {
        shards: config.shards,
        queue_depth: DEFAULT_QUEUE_DEPTH,
        max_batch: DEFAULT_MAX_BATCH,
        pin_threads: true,
    };
    let chain_hash = config.chain_hash;
    Engine::start(
        &engine_config,
        |index| ShardConfig {
            index,
            node_secret,
            limits: Limits::default(),
            chain_hash,
            open: open.clone(),
        },
        // Only reachable with --dev-memory-store (open is None otherwise, so no channel ever
        // exists to be stored).
        |_| Box::new(MemoryStore::default()) as Box<dyn Store + Send>,
        Arc::new(move || {
            let _ = waker.wake();
        }),
    )
}

fn fresh_nonce() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    // No OS randomness: the clock still differs between runs, which is all the nonce needs.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
