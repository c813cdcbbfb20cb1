//! lnhub's durable store: LMDB (through `heed`) in the data directory, written by **one writer
//! thread for every shard** (DESIGN.md "The hot path", step 3).
//!
//! A shard encodes its turn's records into a [`Batch`] (`lnhub-schema`) and submits it through
//! its [`Handle`]; the writer takes every batch submitted since its last commit, from every
//! shard, applies them in one write transaction and commits it with one fsync, then hands each
//! batch back to its shard. N busy shards therefore cost one fsync per commit, not N, and a
//! commit's batch grows with the load (group commit). The shard waits for its batch to come
//! back; what that commit gates (`revoke_and_ack`, `commitment_signed`, upstream fulfills)
//! leaves only after.
//!
//! Start-up: [`Db::open`] creates or opens the environment, checks the schema version and reads
//! every table back through [`lnhub_schema::load`] (a record that does not decode stops it,
//! naming the record). The map (LMDB's maximum file size) starts at
//! [`Options::initial_map_size`] and doubles, between commits, whenever the data passes
//! three quarters of it, up to [`Options::max_map_size`]; past that a commit fails with
//! [`StoreError::MapFull`] and the process stops before anything the commit gated leaves.
//! Any failure of a commit is final for the writer: every later submission fails too, since
//! the shards cannot know which of their states reached the disk.
//!
//! The forwarding log is history, not state: [`Db::open`] does not read it, [`Reader`] reads
//! it while the writer runs, and the writer prunes it by age ([`Options::forward_retention_secs`])
//! between commits, [`PRUNE_BATCH`] entries per transaction, so forwards never wait long
//! behind it.
//!
//! What the writer counts ([`StoreStats`]): commits, records and bytes, the time spent in
//! commits, and the log entries pruned; the metrics exporter reads them.

#![deny(missing_docs)]
// LMDB is a memory map: heed marks opening and resizing one `unsafe` (see the SAFETY notes).
#![allow(unsafe_code)]

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, MdbError};
use lnhub_metrics::Histogram;
use lnhub_schema::{
    decode_closed, decode_forward, forward_time_key, parse_forward_time_key, RecordError,
    SCHEMA_KEY, SCHEMA_VERSION,
};
pub use lnhub_schema::{Batch, ClosedRecord, ForwardRecord, Loaded, StoreError, Table};

/// Map sizes and the forwarding log's retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The map size a fresh environment starts with (bytes, a multiple of the page size). The
    /// file itself grows only with the data; the map is address space.
    pub initial_map_size: usize,
    /// The largest the map may grow to (bytes): a limit on the database file's size.
    pub max_map_size: usize,
    /// Forwarding-log entries older than this (seconds since they were resolved) are deleted
    /// by the writer, [`PRUNE_BATCH`] at a time between commits; `None` keeps them forever.
    pub forward_retention_secs: Option<u64>,
}

/// How often the writer looks for forwarding-log entries past their retention (seconds).
pub const PRUNE_INTERVAL_SECS: u64 = 60;

/// Most forwarding-log entries one pruning transaction deletes: small enough that a commit of
/// the shards never waits behind it for more than a few milliseconds; a backlog is worked
/// off a batch per commit.
pub const PRUNE_BATCH: usize = 2_000;

impl Default for Options {
    /// 1 GiB to start (about 5,000 channels with 100 HTLCs in flight each); 1 TiB at most, far
    /// beyond any disk this hub runs on, so in practice the disk fills first; the forwarding
    /// log kept forever.
    fn default() -> Self {
        Options {
            initial_map_size: 1 << 30,
            max_map_size: 1 << 40,
            forward_retention_secs: None,
        }
    }
}

/// The environment and its tables, opened and read; not yet written.
pub struct Db {
    env: Env,
    tables: Tables,
    options: Options,
}

/// One database per [`Table`], indexed by `Table as usize`.
type Tables = [Database<Bytes, Bytes>; Table::ALL.len()];

fn io(what: &str, e: heed::Error) -> StoreError {
    match e {
        heed::Error::Mdb(MdbError::MapFull) => StoreError::MapFull { map_size: 0 },
        e => StoreError::Io(format!("{what}: {e}")),
    }
}

impl Db {
    /// Opens (creating if needed) the store in `dir` and reads every record back. Refuses a
    /// store written by another schema version, and any record that does not decode.
    pub fn open(dir: &Path, options: Options) -> Result<(Db, Loaded), StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let mut open = EnvOpenOptions::new();
        open.map_size(options.initial_map_size)
            .max_dbs(Table::ALL.len() as u32);
        // SAFETY: the daemon holds the data directory's lock file for its whole life, so no
        // other lnhub process maps this environment, and nothing in this process writes the
        // files except through LMDB. heed itself refuses to open one environment twice in a
        // process.
        let env = unsafe { open.open(dir) }
            .map_err(|e| io(&format!("cannot open LMDB in {}", dir.display()), e))?;
        let mut txn = env.write_txn().map_err(|e| io("begin", e))?;
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            let db = env
                .create_database::<Bytes, Bytes>(&mut txn, Some(table.name()))
                .map_err(|e| io(table.name(), e))?;
            tables.push(db);
        }
        let tables: Tables = tables.try_into().expect("one database per table");
        let meta = tables[Table::Meta as usize];
        if meta
            .get(&txn, SCHEMA_KEY)
            .map_err(|e| io("meta", e))?
            .is_none()
        {
            meta.put(&mut txn, SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                .map_err(|e| io("meta", e))?;
        }
        txn.commit().map_err(|e| io("commit", e))?;
        let loaded = {
            let txn = env.read_txn().map_err(|e| io("read", e))?;
            let mut rows = Vec::new();
            // The history tables are read on demand ([`Reader`]), not at start-up.
            let state = Table::ALL
                .into_iter()
                .filter(|t| !matches!(t, Table::Forwards | Table::ForwardsByTime | Table::Closed));
            for table in state {
                for row in tables[table as usize]
                    .iter(&txn)
                    .map_err(|e| io(table.name(), e))?
                {
                    let (k, v) = row.map_err(|e| io(table.name(), e))?;
                    rows.push((table, k, v));
                }
            }
            lnhub_schema::load(rows)?
        };
        Ok((
            Db {
                env,
                tables,
                options,
            },
            loaded,
        ))
    }

    /// The map size now (bytes).
    pub fn map_size(&self) -> usize {
        self.env.info().map_size
    }

    /// A reader of the history tables.
    pub fn reader(&self) -> Reader {
        Reader {
            env: self.env.clone(),
            tables: self.tables,
        }
    }

    /// Starts the writer thread; shards submit through [`Writer::handle`]s.
    pub fn start_writer(self) -> Writer {
        let reader = self.reader();
        let (tx, rx) = unbounded::<Submission>();
        let stats = Arc::new(Stats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(self, rx, &thread_stats))
            .expect("spawn the store writer thread");
        Writer {
            tx: Some(tx),
            stats,
            thread: Some(thread),
            reader,
        }
    }

    /// Applies the batches of `group` in one transaction and commits it (one fsync), growing
    /// the map first when it is three quarters full, and once more on `MDB_MAP_FULL`.
    fn write_group(&mut self, group: &[Submission]) -> Result<(), StoreError> {
        self.grow_if_needed(false)?;
        match self.try_write(group) {
            Err(heed::Error::Mdb(MdbError::MapFull)) => {
                self.grow_if_needed(true)?;
                self.try_write(group).map_err(|e| match e {
                    heed::Error::Mdb(MdbError::MapFull) => StoreError::MapFull {
                        map_size: self.map_size() as u64,
                    },
                    e => io("commit", e),
                })
            }
            r => r.map_err(|e| io("commit", e)),
        }
    }

    fn try_write(&self, group: &[Submission]) -> heed::Result<()> {
        let mut txn = self.env.write_txn()?;
        for submission in group {
            for (table, key, value) in submission.batch.iter() {
                let db = self.tables[table as usize];
                match value {
                    Some(v) => db.put(&mut txn, key, v)?,
                    None => {
                        db.delete(&mut txn, key)?;
                    }
                }
            }
        }
        txn.commit()
    }

    /// Doubles the map (up to the maximum) if the data passed three quarters of it, or if
    /// `full` (a transaction just hit the limit).
    fn grow_if_needed(&mut self, full: bool) -> Result<(), StoreError> {
        let info = self.env.info();
        let page_size = self.env.stat().page_size as usize;
        let used = (info.last_page_number + 1) * page_size;
        if !full && used * 4 <= info.map_size * 3 {
            return Ok(());
        }
        let grown = (info.map_size * 2).min(self.options.max_map_size);
        if grown <= info.map_size {
            // At the maximum: what still fits is written; a transaction that does not fit
            // fails with the map's size.
            return if full {
                Err(StoreError::MapFull {
                    map_size: info.map_size as u64,
                })
            } else {
                Ok(())
            };
        }
        // SAFETY: only this thread uses the environment once the writer runs (the start-up
        // read transaction is over), and no transaction of it is open between commits.
        unsafe { self.env.resize(grown) }.map_err(|e| io("growing the map", e))?;
        log::info!(
            "store: map grown from {} MiB to {} MiB ({} MiB used)",
            info.map_size >> 20,
            grown >> 20,
            used >> 20
        );
        Ok(())
    }
}

/// Reads the history tables while the writer runs (LMDB readers never block the writer).
#[derive(Clone)]
pub struct Reader {
    env: Env,
    tables: Tables,
}

impl Reader {
    /// The channels retired after their close, in channel id order. A record that does not
    /// decode is an error naming it.
    pub fn closed(&self) -> Result<Vec<(lnhub_wire::types::ChannelId, ClosedRecord)>, StoreError> {
        let txn = self.env.read_txn().map_err(|e| io("read", e))?;
        let table = self.tables[Table::Closed as usize];
        let mut out = Vec::new();
        for row in table.iter(&txn).map_err(|e| io("closed", e))? {
            let (key, value) = row.map_err(|e| io("closed", e))?;
            let bad = |why: String| StoreError::from(RecordError::new(Table::Closed, key, why));
            let id: [u8; 32] = key
                .try_into()
                .map_err(|_| bad("key is not a 32-byte channel id".into()))?;
            let record = decode_closed(value).map_err(bad)?;
            out.push((lnhub_wire::types::ChannelId(id), record));
        }
        Ok(out)
    }

    /// Forwarding-log entries resolved at or after `since` (unix seconds), oldest first, at
    /// most `limit` of them. A record that does not decode is an error naming it.
    pub fn forwards(&self, since: u64, limit: usize) -> Result<Vec<ForwardRecord>, StoreError> {
        self.forwards_where(since, u64::MAX, 0, limit, |_| true)
    }

    /// Forwarding-log entries resolved in `since..=until` (unix seconds) for which `keep` holds,
    /// oldest first: `skip` of them are passed over, then at most `limit` returned (a page of
    /// `listforwards`). A record that does not decode is an error naming it.
    pub fn forwards_where(
        &self,
        since: u64,
        until: u64,
        mut skip: usize,
        limit: usize,
        keep: impl Fn(&ForwardRecord) -> bool,
    ) -> Result<Vec<ForwardRecord>, StoreError> {
        let txn = self.env.read_txn().map_err(|e| io("read", e))?;
        let index = self.tables[Table::ForwardsByTime as usize];
        let log = self.tables[Table::Forwards as usize];
        let mut out = Vec::new();
        let start = since.to_be_bytes();
        for row in index
            .range(&txn, &(Bound::Included(&start[..]), Bound::Unbounded))
            .map_err(|e| io("forwards_by_time", e))?
        {
            if out.len() >= limit {
                break;
            }
            let (key, _) = row.map_err(|e| io("forwards_by_time", e))?;
            let Some((resolved_at, forward)) = parse_forward_time_key(key) else {
                return Err(RecordError::new(Table::ForwardsByTime, key, "malformed key").into());
            };
            if resolved_at > until {
                break;
            }
            // An index entry left by a forward decided again later: the entry's own time
            // decides where it is listed.
            let Some(value) = log.get(&txn, &forward).map_err(|e| io("forwards", e))? else {
                continue;
            };
            let f = decode_forward(value)
                .map_err(|why| RecordError::new(Table::Forwards, &forward, why))?;
            if &forward_time_key(f.resolved_at, &f.in_channel_id, f.in_htlc_id)[..] == key
                && keep(&f)
            {
                if skip > 0 {
                    skip -= 1;
                } else {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }
}

/// Deletes at most `max` forwarding-log entries resolved before `cutoff` (unix seconds), in
/// one transaction; returns how many index entries it removed.
fn prune_forwards(env: &Env, tables: &Tables, cutoff: u64, max: usize) -> heed::Result<usize> {
    let index = tables[Table::ForwardsByTime as usize];
    let log = tables[Table::Forwards as usize];
    let mut txn = env.write_txn()?;
    let end = cutoff.to_be_bytes();
    let old: Vec<Vec<u8>> = index
        .range(&txn, &(Bound::Unbounded, Bound::Excluded(&end[..])))?
        .take(max)
        .map(|row| row.map(|(k, _)| k.to_vec()))
        .collect::<heed::Result<_>>()?;
    for key in &old {
        index.delete(&mut txn, key)?;
        if let Some((resolved_at, forward)) = parse_forward_time_key(key) {
            // Only if the entry is the one this index key was written for: a forward decided
            // again later has a later index key, which keeps it.
            let current = log
                .get(&txn, &forward)?
                .and_then(|v| decode_forward(v).ok())
                .map(|f| f.resolved_at);
            if current.is_none_or(|t| t == resolved_at) {
                log.delete(&mut txn, &forward)?;
            }
        }
    }
    txn.commit()?;
    Ok(old.len())
}

/// A shard's batch on its way to the writer, and where to send it back.
struct Submission {
    batch: Batch,
    reply: Sender<(Batch, Result<(), StoreError>)>,
}

struct Stats {
    commits: AtomicU64,
    submissions: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    commit_nanos: AtomicU64,
    largest_group: AtomicU64,
    forwards_pruned: AtomicU64,
    /// Taken by the writer once per commit and by a metrics scrape, never by a shard.
    histograms: Mutex<CommitHistograms>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            commits: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
            largest_group: AtomicU64::new(0),
            forwards_pruned: AtomicU64::new(0),
            histograms: Mutex::new(CommitHistograms::default()),
        }
    }
}

impl Stats {
    fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            submissions: self.submissions.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            commit_nanos: self.commit_nanos.load(Ordering::Relaxed),
            largest_group: self.largest_group.load(Ordering::Relaxed),
            forwards_pruned: self.forwards_pruned.load(Ordering::Relaxed),
        }
    }

    fn histograms(&self) -> CommitHistograms {
        *self
            .histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A read-only view of a running writer: its figures and the history tables.
#[derive(Clone)]
pub struct Monitor {
    stats: Arc<Stats>,
    reader: Reader,
}

impl Monitor {
    /// The writer's counters so far.
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    /// The commits' histograms so far.
    pub fn histograms(&self) -> CommitHistograms {
        self.stats.histograms()
    }

    /// A reader of the history tables (the forwarding log).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}

/// The writer's commits by duration, records and bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitHistograms {
    /// Duration of each commit (write and fsync), nanoseconds.
    pub nanos: Histogram,
    /// Records in each commit.
    pub records: Histogram,
    /// Bytes of keys and values in each commit.
    pub bytes: Histogram,
}

impl Default for CommitHistograms {
    fn default() -> CommitHistograms {
        CommitHistograms {
            nanos: Histogram::new(&lnhub_metrics::histogram::DURATION),
            records: Histogram::new(&lnhub_metrics::histogram::COUNT),
            bytes: Histogram::new(&lnhub_metrics::histogram::BYTES),
        }
    }
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed (fsyncs).
    pub commits: u64,
    /// Batches submitted by shards and committed (each commit takes one or more).
    pub submissions: u64,
    /// Records (puts and deletes) committed.
    pub records: u64,
    /// Bytes of keys and values committed.
    pub bytes: u64,
    /// Time spent writing and committing, nanoseconds.
    pub commit_nanos: u64,
    /// Forwarding-log entries deleted for their age.
    pub forwards_pruned: u64,
    /// Most submissions one commit took.
    pub largest_group: u64,
}

fn run(mut db: Db, rx: Receiver<Submission>, stats: &Stats) {
    let mut group = Vec::new();
    let mut failed: Option<StoreError> = None;
    let mut next_prune = Instant::now();
    loop {
        // Pruning between commits, never during one: a batch at most, then the shards' turn.
        if let Some(retention) = db.options.forward_retention_secs {
            if failed.is_none() && Instant::now() >= next_prune {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                match prune_forwards(
                    &db.env,
                    &db.tables,
                    now.saturating_sub(retention),
                    PRUNE_BATCH,
                ) {
                    Ok(n) => {
                        stats.forwards_pruned.fetch_add(n as u64, Ordering::Relaxed);
                        // A full batch: more may be due, after the next commit.
                        next_prune = if n == PRUNE_BATCH {
                            Instant::now()
                        } else {
                            Instant::now() + Duration::from_secs(PRUNE_INTERVAL_SECS)
                        };
                    }
                    Err(e) => {
                        log::warn!("store: pruning the forwarding log: {e}");
                        next_prune = Instant::now() + Duration::from_secs(PRUNE_INTERVAL_SECS);
                    }
                }
            }
        }
        let first = match rx.recv_timeout(Duration::from_secs(PRUNE_INTERVAL_SECS)) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        group.push(first);
        // A shard has one batch in flight at a time, so this takes at most one per shard.
        group.extend(rx.try_iter());
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => {
                let started = Instant::now();
                let result = db.write_group(&group);
                let nanos = started.elapsed().as_nanos() as u64;
                if result.is_ok() {
                    let records: usize = group.iter().map(|s| s.batch.len()).sum();
                    let bytes: usize = group.iter().map(|s| s.batch.bytes()).sum();
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats
                        .submissions
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    stats.records.fetch_add(records as u64, Ordering::Relaxed);
                    stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    stats.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
                    stats
                        .largest_group
                        .fetch_max(group.len() as u64, Ordering::Relaxed);
                    let mut h = stats
                        .histograms
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    h.nanos.observe(nanos);
                    h.records.observe(records as u64);
                    h.bytes.observe(bytes as u64);
                }
                result
            }
        };
        if let Err(e) = &result {
            if failed.is_none() {
                log::error!("{e}");
            }
            failed = Some(e.clone());
        }
        for s in group.drain(..) {
            let _ = s.reply.send((s.batch, result.clone()));
        }
    }
}

/// The running writer. Handles keep it alive; [`Writer::close`] waits for it to finish once
/// every handle is gone.
pub struct Writer {
    tx: Option<Sender<Submission>>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
    reader: Reader,
}

impl Writer {
    /// A submission handle for one shard.
    pub fn handle(&self) -> Handle {
        // Unbounded: the writer never blocks on a shard; a shard has one batch in flight.
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        Handle {
            tx: self.tx.clone().expect("the writer is running"),
            reply_tx,
            reply_rx,
        }
    }

    /// A reader of the history tables (the forwarding log), usable while the writer runs.
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// A read-only view of the writer's figures and the history tables, for other threads
    /// (the metrics scrape, the admin API).
    pub fn monitor(&self) -> Monitor {
        Monitor {
            stats: self.stats.clone(),
            reader: self.reader.clone(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    /// The commits' histograms so far.
    pub fn histograms(&self) -> CommitHistograms {
        self.stats.histograms()
    }

    /// Waits for the writer thread to end: call after every [`Handle`] is dropped (the
    /// environment is closed when it returns, so the store can be opened again).
    pub fn close(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One shard's way to the writer.
pub struct Handle {
    tx: Sender<Submission>,
    reply_tx: Sender<(Batch, Result<(), StoreError>)>,
    reply_rx: Receiver<(Batch, Result<(), StoreError>)>,
}

impl Handle {
    /// Hands `batch` to the writer, which makes it durable with whatever other shards
    /// submitted meanwhile, in one transaction; the answer (the batch back, and the result)
    /// arrives on [`Handle::answers`], in the order of submission.
    pub fn submit(&mut self, batch: Batch) -> Result<(), StoreError> {
        let submission = Submission {
            batch,
            reply: self.reply_tx.clone(),
        };
        self.tx.send(submission).map_err(|_| StoreError::Stopped)
    }

    /// Where the answers to [`Handle::submit`] arrive.
    pub fn answers(&self) -> &Receiver<(Batch, Result<(), StoreError>)> {
        &self.reply_rx
    }

    /// Makes `batch` durable and returns once it is, with `batch` handed back unchanged (for
    /// a handle with nothing else in flight).
    pub fn commit(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        self.submit(std::mem::take(batch))?;
        let (back, result) = self.reply_rx.recv().map_err(|_| StoreError::Stopped)?;
        *batch = back;
        result
    }
}
