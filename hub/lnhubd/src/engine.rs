//! Wiring of the channel engine into the daemon: validated config -> shard settings, stores,
//! and the waker that lets shard threads hand output to the connection loop.

use std::sync::Arc;

use lnhub_channel::{ChannelPolicy, EstablishConfig, PeerParamLimits};
use lnhub_engine::{
    Engine, EngineConfig, MemoryStore, OpenConfig, ShardConfig, Store, DEFAULT_MAX_BATCH,
    DEFAULT_QUEUE_DEPTH,
};
use lnhub_forward::{Limits, Policy};
use lnhub_wire::types::{Msat, Sat};
use secp256k1::SecretKey;

use crate::config::Config;

/// Our channel-establishment parameters. Each value says why in [`EstablishConfig`] /
/// [`PeerParamLimits`]; these are the documented defaults.
fn establish_config(config: &Config) -> EstablishConfig {
    EstablishConfig {
        chain_hash: config.chain_hash,
        dust_limit_satoshis: Sat(546),
        to_self_delay: 144,
        // No cap below the channel's own size: the reserve and the HTLC count bound exposure.
        max_htlc_value_in_flight_msat: Msat(u64::MAX),
        channel_reserve_proportional_millionths: 10_000,
        htlc_minimum_msat: Msat(1),
        max_accepted_htlcs: 483,
        minimum_depth: 3,
        policy: ChannelPolicy {
            max_dust_htlc_exposure_msat: Msat(5_000_000),
            min_feerate_per_kw: 253,
            max_feerate_per_kw: 100_000,
        },
        peer_limits: PeerParamLimits {
            max_to_self_delay: 2016,
            min_funding_satoshis: Sat(10_000),
            max_htlc_minimum_msat: Msat(1_000_000),
            min_max_htlc_value_in_flight_msat: Msat(1_000),
            max_channel_reserve_proportional_millionths: 200_000,
            min_max_accepted_htlcs: 5,
            max_dust_limit_satoshis: Sat(20_000),
            max_minimum_depth: 144,
        },
    }
}

/// Starts the shard threads.
pub fn start(config: &Config, node_secret: SecretKey, waker: Arc<mio::Waker>) -> Engine {
    let open = config.dev_memory_store.then(|| OpenConfig {
        establish: establish_config(config),
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
