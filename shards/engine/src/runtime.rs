//! The engine's threads: one per shard, pinned to a core, each running its [`Shard`]'s turns.
//!
//! Queues (crossbeam):
//! - **connection room -> shard**: bounded ([`EngineConfig::queue_depth`]). When a shard's
//!   queue is full the connection room holds that peer's message (one message) and stops
//!   decoding and reading its socket until the shard catches up ([`Engine::try_send`]); other
//!   peers keep flowing. Connection events, rare, use the blocking [`Engine::send`].
//! - **shard -> shard** (forwards and their resolutions): unbounded, because a shard must never
//!   block on another (two full queues would deadlock). What flows there is bounded anyway:
//!   one hand-off and one resolution per HTLC, and HTLCs are capped per channel by
//!   `max_accepted_htlcs`.
//! - **shard -> connection room**: unbounded for the same reason (the connection thread blocks
//!   on shards); it carries at most what the shard's bounded inputs produced, and the
//!   connection room drops a peer whose socket backlog passes its bound.
//!
//! A shard thread blocks on its two queues and, while a batch of its is being written, on the
//! store's answer; drains up to [`EngineConfig::max_batch`] inputs, runs one turn (time from
//! the system clock), then wakes the connection thread if the turn gave it output or it holds
//! a message this shard's full queue refused (a wake costs the connection thread a context
//! switch, so turns that only staged HTLCs do not). A turn submits the shard's records
//! to the store's writer thread and goes on without waiting for the fsync; the store's answer
//! ([`crate::Shard::persisted`]) releases what the batch gated, and the turn after it submits
//! whatever changed meanwhile. The thread does not wait while the last turn left work
//! ([`crate::Shard::has_pending_work`]) or records to submit with no batch in flight
//! ([`crate::Shard::has_unwritten`]): a busy shard folds them into its next batch, an idle
//! one writes them at once. Nothing sleeps on a timer. A store failure stops the process:
//! releasing committing messages without durable state could lose funds.

use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender, TrySendError};
use lnhub_wire::msgs::Message;
use secp256k1::PublicKey;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lnhub_onion::{ReplayConfig, ReplayError, ReplaySet};
use lnhub_schema::Loaded;
use lnhub_shard::{
    shard_of, ChainRequest, Completion, Input, Io, Route, Shard, ShardConfig, ShardReport, Store,
    StoreError,
};
use lnhub_wire::types::ShortChannelId;

/// What shards ask the connection room to do.
// `Send` carries an `update_add_htlc` with its onion inline: boxing would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Output {
    /// What follows for this peer belongs to its connection number `connection` (see
    /// [`crate::Io::connected`]); drop sends for the peer until this names its live connection.
    Connected {
        /// The peer.
        node_id: PublicKey,
        /// The connection room's number for the connection.
        connection: u64,
    },
    /// Send `msg` to the peer.
    Send {
        /// The peer.
        node_id: PublicKey,
        /// The message.
        msg: Message,
    },
    /// Close the connection to the peer (after what was sent before).
    Disconnect {
        /// The peer.
        node_id: PublicKey,
    },
}

/// Engine settings, validated by the daemon's config.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Number of shards (threads).
    pub shards: usize,
    /// Depth of each shard's input queue from the connection room.
    pub queue_depth: usize,
    /// Most inputs one turn takes.
    pub max_batch: usize,
    /// Pin shard threads to cores.
    pub pin_threads: bool,
    /// Rounds a shard turn runs at most ([`Shard::set_rounds_per_turn`]).
    pub rounds_per_turn: usize,
    /// Where the shards' requests for the chain backend go ([`Io::chain`]), with the index of
    /// the shard asking; `None` without a backend (the requests are dropped).
    pub chain: Option<Sender<(usize, ChainRequest)>>,
}

/// Default [`EngineConfig::rounds_per_turn`]: one. Each round that persists commits (an
/// fsync); with one round per turn, what arrives during a commit joins the next turn's round
/// and its commit, instead of the turn's later rounds committing on their own.
pub const DEFAULT_ROUNDS_PER_TURN: usize = 1;

/// Default [`EngineConfig::queue_depth`]: a few turns' worth of messages; deeper queues only
/// add latency under overload.
pub const DEFAULT_QUEUE_DEPTH: usize = 4096;

/// A shard with no input for this long runs an empty turn: time-based work (the closing
/// negotiation timeout) happens even on an idle shard.
pub const TICK: Duration = Duration::from_secs(30);
/// Default [`EngineConfig::max_batch`]: large enough that a busy turn amortises its fsync and
/// batches over hundreds of HTLCs, small enough to keep a turn within a few milliseconds.
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// The running engine, owned by the connection room.
pub struct Engine {
    peer_inputs: Vec<Sender<Input>>,
    /// Per shard: the connection room holds a message that shard's full queue refused, so
    /// the shard wakes the room after its next turn even if the turn produced nothing.
    refused: Arc<[AtomicBool]>,
    outputs: Receiver<Output>,
    admin: Admin,
    /// Shard threads. They end when the engine is dropped (their input queues disconnect);
    /// the daemon need not wait for them: every turn's state is already durable.
    _threads: Vec<JoinHandle<()>>,
}

struct ThreadIo<'a> {
    index: usize,
    /// Whether anything was handed to the connection room since the last wake.
    produced: bool,
    out: &'a Sender<Output>,
    cross: &'a [Sender<Input>],
    /// The hub's onion replay set: the one state every shard shares, behind the one lock
    /// (taken once per peel batch and once per block).
    replays: &'a Mutex<ReplaySet>,
    /// Where reports for the operator go ([`Admin::reports`]).
    reports: &'a Sender<(u64, ShardReport)>,
    /// The chain backend's requests, if there is one.
    chain: Option<&'a Sender<(usize, ChainRequest)>>,
}

impl ThreadIo<'_> {
    fn replays(&self) -> std::sync::MutexGuard<'_, ReplaySet> {
        // A panic aborts the process (`abort_on_panic`), so a poisoned lock is never seen by
        // a running hub; taking the guard anyway keeps this total.
        self.replays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Io for ThreadIo<'_> {
    fn connected(&mut self, node_id: &PublicKey, connection: u64) {
        self.produced = true;
        let _ = self.out.send(Output::Connected {
            node_id: *node_id,
            connection,
        });
    }
    fn send(&mut self, node_id: &PublicKey, msg: Message) {
        // Unbounded: never fails while the connection room is alive.
        self.produced = true;
        let _ = self.out.send(Output::Send {
            node_id: *node_id,
            msg,
        });
    }
    fn disconnect(&mut self, node_id: &PublicKey) {
        self.produced = true;
        let _ = self.out.send(Output::Disconnect { node_id: *node_id });
    }
    fn to_shard(&mut self, shard: usize, input: Input) {
        assert_ne!(shard, self.index, "a shard keeps its own inputs");
        let _ = self.cross[shard].send(input);
    }
    fn publish_route(&mut self, scid: ShortChannelId, route: Route) {
        for (shard, tx) in self.cross.iter().enumerate() {
            if shard != self.index {
                let _ = tx.send(Input::Route { scid, route });
            }
        }
    }
    fn check_replays(
        &mut self,
        onions: &[([u8; 32], u32)],
        results: &mut Vec<Result<(), ReplayError>>,
    ) {
        results.clear();
        if !onions.is_empty() {
            lnhub_shard::check_replays_in(&mut self.replays(), onions, results);
        }
    }
    fn replays_at_height(&mut self, height: u32, forgotten: &mut Vec<(u32, u128)>) {
        lnhub_shard::replays_at_height_in(&mut self.replays(), height, forgotten);
    }
    fn report(&mut self, id: u64, report: ShardReport) {
        let _ = self.reports.send((id, report));
    }
    fn chain(&mut self, request: ChainRequest) {
        if let Some(chain) = self.chain {
            let _ = chain.send((self.index, request));
        }
    }
}

/// The operator's way into the running engine (the admin API and the metrics scrape), from
/// any thread: it asks every shard for its report, delivers operator inputs, and reads queue
/// depths. Nothing here touches the forwarding path: a report is one input a shard answers
/// between two of its turns, from figures it keeps on its own thread.
#[derive(Clone)]
pub struct Admin {
    peer_inputs: Vec<Sender<Input>>,
    cross: Vec<Sender<Input>>,
    reports: Receiver<(u64, ShardReport)>,
    /// One report round at a time; the number of the next.
    next: Arc<Mutex<u64>>,
}

impl Admin {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cross.len()
    }

    /// Every shard's report, in shard order, or an error if one does not answer within
    /// `timeout` (a shard stuck for that long is a fault worth reporting, not waiting on).
    pub fn reports(&self, timeout: Duration) -> Result<Vec<ShardReport>, String> {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next += 1;
        let id = *next;
        for tx in &self.cross {
            tx.send(Input::Report { id })
                .map_err(|_| "the engine has stopped".to_string())?;
        }
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<ShardReport>> = vec![None; self.cross.len()];
        let mut missing = got.len();
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                // An answer to an earlier round that timed out is dropped.
                Ok((rid, report)) if rid == id && report.shard < got.len() => {
                    if got[report.shard].replace(report).is_none() {
                        missing -= 1;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    let late: Vec<usize> = (0..got.len()).filter(|i| got[*i].is_none()).collect();
                    return Err(format!(
                        "shard(s) {late:?} did not answer within {} ms",
                        timeout.as_millis()
                    ));
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Delivers an operator input to shard `shard` (its queue from other shards: never full).
    pub fn send(&self, shard: usize, input: Input) -> Result<(), String> {
        self.cross
            .get(shard)
            .ok_or_else(|| format!("no shard {shard}"))?
            .send(input)
            .map_err(|_| "the engine has stopped".to_string())
    }

    /// The shard that owns `node_id`'s channels.
    pub fn shard_of(&self, node_id: &PublicKey) -> usize {
        shard_of(node_id, self.cross.len())
    }

    /// Inputs waiting in each shard's queues: (from peers, from other shards).
    pub fn queue_depths(&self) -> Vec<(usize, usize)> {
        self.peer_inputs
            .iter()
            .zip(&self.cross)
            .map(|(p, c)| (p.len(), c.len()))
            .collect()
    }
}

impl Engine {
    /// Starts one thread per shard. `shard_config(i)` and `store(i)` give shard `i` its
    /// settings, its store and, for a store that answers later, where its answers arrive;
    /// the shards are first rebuilt from `loaded` (what the store read at start-up, see
    /// [`crate::restore()`]); `wake` is called after every turn that produced output, or after
    /// which the connection room may offer a held message again. Fails,
    /// starting nothing, if a stored record does not decode.
    pub fn start(
        config: &EngineConfig,
        mut shard_config: impl FnMut(usize) -> ShardConfig,
        mut store: impl FnMut(usize) -> (Box<dyn Store + Send>, Option<Receiver<Completion>>),
        loaded: &Loaded,
        wake: std::sync::Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Engine, String> {
        assert!(
            config.shards > 0 && config.queue_depth > 0,
            "validated engine config"
        );
        let mut replays = ReplaySet::new(ReplayConfig::default(), 0);
        let (out_tx, out_rx) = unbounded();
        let (reports_tx, reports_rx) = unbounded();
        // Every shard's clock counts from here, so latencies across shards compare.
        let origin = Instant::now();
        let (peer_tx, peer_rx): (Vec<_>, Vec<_>) = (0..config.shards)
            .map(|_| bounded(config.queue_depth))
            .unzip();
        let (cross_tx, cross_rx): (Vec<_>, Vec<_>) =
            (0..config.shards).map(|_| unbounded()).unzip();
        let cores = if config.pin_threads {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let now = unix_now();
        let mut shards: Vec<Shard> = (0..config.shards)
            .map(|index| {
                let mut shard = Shard::new(shard_config(index), 0, now);
                shard.set_rounds_per_turn(config.rounds_per_turn);
                shard
            })
            .collect();
        lnhub_shard::restore(&mut shards, loaded, &mut replays)?;
        let replays = Arc::new(Mutex::new(replays));
        let refused: Arc<[AtomicBool]> =
            (0..config.shards).map(|_| AtomicBool::new(false)).collect();
        let mut threads = Vec::new();
        for ((index, (peer_rx, cross_rx)), mut shard) in
            peer_rx.into_iter().zip(cross_rx).enumerate().zip(shards)
        {
            let (mut store, completions) = store(index);
            let replays = replays.clone();
            let reports = reports_tx.clone();
            let out = out_tx.clone();
            let cross: Vec<Sender<Input>> = cross_tx.clone();
            let wake = wake.clone();
            let refused = refused.clone();
            let core = if cores.is_empty() {
                None
            } else {
                Some(cores[index % cores.len()])
            };
            let max_batch = config.max_batch;
            let chain = config.chain.clone();
            let handle = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let mut batch = Vec::with_capacity(max_batch);
                    let stop = |e: StoreError| -> ! {
                        log::error!("shard {index}: {e}; stopping: state cannot be made durable");
                        std::process::abort();
                    };
                    loop {
                        let mut io = ThreadIo {
                            index,
                            produced: false,
                            out: &out,
                            cross: &cross,
                            replays: &replays,
                            reports: &reports,
                            chain: chain.as_ref(),
                        };
                        // Work left by the last turn, or records to submit with no batch in
                        // flight: the next turn runs at once, with whatever arrived meanwhile.
                        // Otherwise wait for input or for the store's answer; nothing for a
                        // `TICK`: an empty turn, so clocks are looked at.
                        let busy = shard.has_pending_work()
                            || (shard.has_unwritten() && !shard.commit_in_flight());
                        let first = if busy {
                            None
                        } else {
                            let answers = completions.as_ref().filter(|_| shard.commit_in_flight());
                            match answers {
                                Some(answers) => select! {
                                    recv(answers) -> c => match c {
                                        Ok(c) => {
                                            if let Err(e) = shard.persisted(c, &mut io) {
                                                stop(e);
                                            }
                                            None
                                        }
                                        Err(_) => stop(StoreError::Stopped),
                                    },
                                    recv(peer_rx) -> m => Some(m),
                                    recv(cross_rx) -> m => Some(m),
                                },
                                None => select! {
                                    recv(peer_rx) -> m => Some(m),
                                    recv(cross_rx) -> m => Some(m),
                                    default(TICK) => None,
                                },
                            }
                        };
                        match first {
                            Some(Ok(first)) => batch.push(first),
                            Some(Err(_)) => return,
                            None => {}
                        }
                        // The store's answer, if it came meanwhile: what it gated goes out
                        // now and the turn below builds on it.
                        if let Some(answers) = completions.as_ref() {
                            if shard.commit_in_flight() {
                                if let Ok(c) = answers.try_recv() {
                                    if let Err(e) = shard.persisted(c, &mut io) {
                                        stop(e);
                                    }
                                }
                            }
                        }
                        while batch.len() < max_batch {
                            match cross_rx.try_recv().or_else(|_| peer_rx.try_recv()) {
                                Ok(input) => batch.push(input),
                                Err(_) => break,
                            }
                        }
                        let now = unix_now();
                        let started = Instant::now();
                        shard.set_clock(nanos_since(origin, started));
                        if let Err(e) = shard.turn(now, batch.drain(..), store.as_mut(), &mut io) {
                            stop(e);
                        }
                        shard.observe_turn(nanos_since(started, Instant::now()));
                        // A turn that handed the connection room nothing (HTLCs staged while
                        // a commit is in flight, say) does not wake it, unless the room holds
                        // a message this shard's queue refused: the queue has room now. (`|`,
                        // not `||`: the flag is cleared by any wake.)
                        if io.produced | refused[index].swap(false, Ordering::AcqRel) {
                            wake();
                        }
                    }
                })
                .expect("spawn shard thread");
            threads.push(handle);
        }
        let admin = Admin {
            peer_inputs: peer_tx.clone(),
            cross: cross_tx,
            reports: reports_rx,
            next: Arc::new(Mutex::new(0)),
        };
        Ok(Engine {
            peer_inputs: peer_tx,
            refused,
            outputs: out_rx,
            admin,
            _threads: threads,
        })
    }

    /// The operator's handle on the engine (clone it into other threads).
    pub fn admin(&self) -> Admin {
        self.admin.clone()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.peer_inputs.len()
    }

    /// Queues `input` for the shard owning `node_id`'s channels, blocking while that shard's
    /// queue is full (back-pressure on the connection room).
    pub fn send(&self, node_id: &PublicKey, input: Input) {
        let tx = &self.peer_inputs[shard_of(node_id, self.peer_inputs.len())];
        match tx.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(input)) => {
                let _ = tx.send(input);
            }
            Err(TrySendError::Disconnected(_)) => log::error!("shard thread gone"),
        }
    }

    /// Queues `input` for the shard owning `node_id`'s channels if its queue has room; gives
    /// it back otherwise, so the caller can hold it and stop reading that peer's socket.
    // The input comes back whole on a full queue; boxing it would allocate per message.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, node_id: &PublicKey, input: Input) -> Result<(), Input> {
        let shard = shard_of(node_id, self.peer_inputs.len());
        match self.peer_inputs[shard].try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(input)) => {
                // Set after the refusal: the shard, whose queue is full, has a turn to run
                // and sees it afterwards.
                self.refused[shard].store(true, Ordering::Release);
                Err(input)
            }
            Err(TrySendError::Disconnected(_)) => {
                log::error!("shard thread gone");
                Ok(())
            }
        }
    }

    /// The next output for the connection room, if any.
    pub fn try_output(&self) -> Option<Output> {
        self.outputs.try_recv().ok()
    }
}

/// Makes any panic, on any thread (a shard, the rayon pool, the connection loop), stop the
/// whole process once the default hook has printed it. A half-alive hub is worse than a dead
/// one: a shard that died drops its peers' messages silently while the rest keeps running,
/// and a lock it held poisons the others. Stopped, it is restarted and recovers everything
/// from the store, whose every commit is whole. The daemon installs this first thing.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        log::error!(
            "thread {} panicked: stopping the process (a restart recovers from the store)",
            thread.name().unwrap_or("unnamed")
        );
        std::process::abort();
    }));
}

fn nanos_since(origin: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
