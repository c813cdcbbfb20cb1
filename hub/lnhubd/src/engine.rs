//! Wiring of the channel engine into the daemon: validated config -> shard settings, one LMDB
//! store handle per shard (all feeding the one writer thread), the shards rebuilt from what the
//! store loaded, and the waker that lets shard threads hand output to the connection loop.

use std::sync::Arc;

use lnhub_engine::{
    default_establish_config, Batch, ChainRequest, Engine, EngineConfig, Loaded, OpenConfig,
    ShardConfig, Store, StoreError, Submitted, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DEPTH,
    DEFAULT_ROUNDS_PER_TURN,
};
use lnhub_forward::{Limits, Policy};
use lnhub_wire::types::Msat;
use secp256k1::SecretKey;

use crate::config::Config;

/// A shard's way to the LMDB writer, as the engine's [`Store`].
struct Durable(lnhub_store::Handle);

impl Store for Durable {
    fn submit(&mut self, batch: Batch) -> Result<Submitted, StoreError> {
        self.0.submit(batch).map(|()| Submitted::InFlight)
    }
}

/// Starts the shard threads, rebuilt from `loaded`, writing through `writer`; their requests
/// for the chain backend go to `chain`, if there is one.
pub fn start(
    config: &Config,
    node_secret: SecretKey,
    writer: &lnhub_store::Writer,
    loaded: &Loaded,
    waker: Arc<mio::Waker>,
    chain: Option<crossbeam_channel::Sender<(usize, ChainRequest)>>,
    close_script: Option<bitcoin::ScriptBuf>,
) -> Result<Engine, String> {
    let open = OpenConfig {
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
    };
    let engine_config = EngineConfig {
        shards: config.shards,
        queue_depth: DEFAULT_QUEUE_DEPTH,
        max_batch: DEFAULT_MAX_BATCH,
        pin_threads: true,
        rounds_per_turn: DEFAULT_ROUNDS_PER_TURN,
        chain,
    };
    let close_depth = config.close_depth;
    let chain_hash = config.chain_hash;
    let policy_grace_secs = config.policy_grace.as_secs();
    Engine::start(
        &engine_config,
        |index| ShardConfig {
            index,
            node_secret,
            limits: Limits {
                policy_grace_secs,
                ..Limits::default()
            },
            chain_hash,
            close_depth,
            close_script: close_script.clone(),
            open: Some(open.clone()),
        },
        |_| {
            let handle = writer.handle();
            let answers = handle.answers().clone();
            (
                Box::new(Durable(handle)) as Box<dyn Store + Send>,
                Some(answers),
            )
        },
        loaded,
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
