//! When a shard wakes the connection room: after a turn that gave it output, or after a turn
//! of a shard whose full queue refused a message the room now holds (so the room offers it
//! again); never after a turn that produced nothing for it, since each wake costs the
//! connection thread a context switch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lnhub_engine::{Engine, EngineConfig};
use lnhub_forward::Limits;
use lnhub_shard::{Input, MemoryStore, ShardConfig, Store};
use secp256k1::{PublicKey, Secp256k1, SecretKey};

/// A one-shard engine with a `depth`-deep queue and an in-memory store, and its wake count.
fn engine(depth: usize) -> (Engine, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = wakes.clone();
    let config = EngineConfig {
        shards: 1,
        queue_depth: depth,
        max_batch: 1024,
        pin_threads: false,
        rounds_per_turn: 1,
        chain: None,
    };
    let engine = Engine::start(
        &config,
        |index| ShardConfig {
            index,
            node_secret: SecretKey::from_slice(&[0x11; 32]).unwrap(),
            limits: Limits::default(),
            chain_hash: lnhub_wire::types::ChainHash::REGTEST,
            close_depth: lnhub_shard::DEFAULT_CLOSE_DEPTH,
            close_script: None,
            open: None,
        },
        |_| {
            (
                Box::new(MemoryStore::default()) as Box<dyn Store + Send>,
                None,
            )
        },
        &Default::default(),
        Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .expect("engine starts");
    (engine, wakes)
}

fn peer() -> PublicKey {
    PublicKey::from_secret_key(
        &Secp256k1::new(),
        &SecretKey::from_slice(&[0x22; 32]).unwrap(),
    )
}

/// Waits until every turn begun so far has ended: a report is answered inside a turn, so the
/// second round's turn starts after the first round's turn (and its wake, if any) is over.
fn settle(engine: &Engine) {
    for _ in 0..2 {
        engine
            .admin()
            .reports(Duration::from_secs(10))
            .expect("the shard answers");
    }
}

#[test]
fn a_turn_that_produces_nothing_does_not_wake_the_connection_room() {
    let (engine, wakes) = engine(16);
    // A block height with no channels: the shard has nothing to say to anyone.
    for height in 100..110 {
        engine
            .try_send(&peer(), Input::BlockHeight(height))
            .expect("room in the queue");
    }
    settle(&engine);
    assert!(engine.try_output().is_none(), "no output");
    assert_eq!(wakes.load(Ordering::SeqCst), 0, "no wake without output");
}

#[test]
fn a_turn_after_the_queue_refused_a_message_wakes_the_connection_room() {
    let (engine, wakes) = engine(1);
    // Offered until the one-slot queue refuses one: the room would now hold it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut height = 100;
    let held = loop {
        assert!(Instant::now() < deadline, "the queue never filled");
        height += 1;
        if let Err(input) = engine.try_send(&peer(), Input::BlockHeight(height)) {
            break input;
        }
    };
    // The shard's next turn frees the slot and wakes the room, although it produced nothing.
    while wakes.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no wake after a refusal");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(engine.try_output().is_none(), "the wake carried no output");
    // As the room does on a wake: offer the held message again (taken once there is room).
    let mut held = held;
    loop {
        match engine.try_send(&peer(), held) {
            Ok(()) => break,
            Err(back) => held = back,
        }
        assert!(
            Instant::now() < deadline,
            "the held message was never taken"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    settle(&engine);
}
