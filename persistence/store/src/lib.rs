//! lnhub's durable store: LMDB (through `heed`) in the data directory, written by **one writer
//! thread for every shard** (DESIGN.md "The hot path", step 3).
//!
//! A shard encodes its turn's records into a [`Batch`] (`lnhub-schema`) and submits it through
//! its [`Handle`]; the writer takes every batch submitted since its last commit, from every
//! shard, appends them as one entry to the store's [`journal`] and syncs it (one
//! `fdatasync`), then hands each batch back to its shard. N busy shards therefore cost one
//! sync per commit, not N, and a commit's batch grows with the load (group commit). What that
//! commit gates (`revoke_and_ack`, `commitment_signed`, upstream fulfills) leaves only after
//! the batch is back.
//!
//! The LMDB tables take the journal's writes in a **checkpoint**: one write transaction for
//! every group since the last checkpoint, committed with LMDB's own syncs, at most
//! [`CHECKPOINT_INTERVAL`] after the first of them, sooner when the writer has been idle for
//! [`IDLE_CHECKPOINT`], when [`CHECKPOINT_BYTES`] are waiting or the journal is full, when a
//! [`Reader`] asks (so a reader sees every commit made before it asked), and when the writer
//! stops. A checkpoint hands LMDB only the last write of each key: a record
//! rewritten by many groups in between (a busy channel's) costs one put, and an HTLC added and
//! removed in between one delete.
//!
//! Start-up: [`Db::open`] creates or opens the environment, checks the schema version, applies
//! the journal's entries that LMDB does not hold yet (the groups committed since the last
//! checkpoint before a crash) in a checkpoint, and reads every table back through
//! [`lnhub_schema::load`] (a record that does not decode stops it, naming the record). The map
//! (LMDB's maximum file size) starts at
//! [`Options::initial_map_size`] and doubles, between commits, whenever the data passes
//! three quarters of it, up to [`Options::max_map_size`]; past that a commit fails with
//! [`StoreError::MapFull`] and the process stops before anything the commit gated leaves.
//! Any failure of a commit or a checkpoint is final for the writer: every later submission
//! fails too, since the shards cannot know which of their states reached the disk (what the
//! journal holds is applied at the next start, or stops it with the same error).
//!
//! The forwarding log is history, not state: [`Db::open`] does not read it, [`Reader`] reads
//! it while the writer runs, and the writer prunes it by age ([`Options::forward_retention_secs`])
//! in its checkpoints, [`PRUNE_BATCH`] entries at a time, so forwards never wait long behind
//! it.
//!
//! What the writer counts ([`StoreStats`]): commits, checkpoints, records and bytes, the time
//! spent in each, and the log entries pruned; the metrics exporter reads them.

#![deny(missing_docs)]
// LMDB is a memory map: heed marks opening and resizing one `unsafe` (see the SAFETY notes).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, MdbError, RwTxn};
use lnhub_metrics::Histogram;
use lnhub_schema::{
    decode_closed, decode_forward, forward_time_key, parse_forward_time_key, RecordError,
    JOURNAL_KEY, SCHEMA_KEY, SCHEMA_VERSION,
};

pub mod journal;
use journal::Journal;
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

/// Most forwarding-log entries one checkpoint prunes: small enough that a commit of the
/// shards never waits behind it for more than a few milliseconds; a backlog is worked off a
/// batch per checkpoint.
pub const PRUNE_BATCH: usize = 2_000;

/// The longest the journal's groups wait for a checkpoint into the LMDB tables.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1000);

/// A checkpoint is made once no batch came for this long (so a hub at rest, and whoever reads
/// the tables, has everything in LMDB soon after its last commit).
pub const IDLE_CHECKPOINT: Duration = Duration::from_millis(250);

/// A checkpoint is made once this many bytes of journal bodies wait for one.
pub const CHECKPOINT_BYTES: usize = 8 << 20;

/// Keys LMDB takes: 1 to 511 bytes. A longer one is refused before it reaches the journal, so
/// no acknowledged write can fail later in a checkpoint.
const MAX_KEY: usize = 511;

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

/// The environment, its tables and the journal, opened and read; not yet written.
pub struct Db {
    env: Env,
    tables: Tables,
    options: Options,
    journal: Journal,
    /// Journal bodies of the groups committed since the last checkpoint, in order.
    pending: Vec<u8>,
    /// When the first of them was committed.
    pending_since: Option<Instant>,
    /// Journal entries applied at open: groups committed after the last checkpoint.
    recovered: usize,
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
        let kept = meta
            .get(&txn, JOURNAL_KEY)
            .map_err(|e| io("meta", e))?
            .map(|v| <[u8; 8]>::try_from(v).map(u64::from_be_bytes));
        let existing = kept.is_some();
        let epoch = match kept {
            Some(Ok(epoch)) => epoch,
            Some(Err(_)) => {
                return Err(RecordError::new(
                    Table::Meta,
                    JOURNAL_KEY,
                    "journal epoch is not 8 bytes",
                )
                .into())
            }
            None => {
                // Written at once, so a build from before the journal refuses this store.
                meta.put(&mut txn, JOURNAL_KEY, &0u64.to_be_bytes())
                    .map_err(|e| io("meta", e))?;
                0
            }
        };
        txn.commit().map_err(|e| io("commit", e))?;
        let (journal, recovered) = Journal::open(dir, epoch, existing)?;
        let (entries, bytes) = (recovered.entries, recovered.bytes());
        let mut db = Db {
            env,
            tables,
            options,
            journal,
            pending: recovered.bodies,
            pending_since: None,
            recovered: entries,
        };
        if entries > 0 {
            let started = Instant::now();
            db.checkpoint(None)?;
            log::info!(
                "store: {} journal entries ({} bytes) committed since the last checkpoint \
                 applied in {} ms",
                entries,
                bytes,
                started.elapsed().as_millis()
            );
        }
        let Db { env, tables, .. } = &db;
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
        Ok((db, loaded))
    }

    /// How many journal entries (group commits made after the last checkpoint before the
    /// process ended) [`Db::open`] found and applied.
    pub fn journal_entries_recovered(&self) -> usize {
        self.recovered
    }

    /// Whether the journal is written with direct, synchronous I/O (else with `pwrite` and
    /// `fdatasync`: the file system refuses direct I/O).
    pub fn journal_is_direct(&self) -> bool {
        self.journal.is_direct()
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
            catch_up: None,
        }
    }

    /// Starts the writer thread; shards submit through [`Writer::handle`]s.
    pub fn start_writer(self) -> Writer {
        let (catch_up_tx, catch_up_rx) = unbounded::<Sender<()>>();
        let reader = Reader {
            catch_up: Some(catch_up_tx),
            ..self.reader()
        };
        let (tx, rx) = unbounded::<Submission>();
        let stats = Arc::new(Stats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(self, rx, catch_up_rx, &thread_stats))
            .expect("spawn the store writer thread");
        Writer {
            tx: Some(tx),
            stats,
            thread: Some(thread),
            reader,
        }
    }

    /// Makes the batches of `group` durable: one journal entry, one sync. Checkpoints first
    /// if the journal has no room for it.
    fn write_group(&mut self, group: &[Submission]) -> Result<(), StoreError> {
        self.journal.begin();
        for submission in group {
            for (table, key, value) in submission.batch.iter() {
                if key.is_empty() || key.len() > MAX_KEY {
                    return Err(StoreError::Io(format!(
                        "a {} key of {} bytes (LMDB takes 1 to {MAX_KEY})",
                        table.name(),
                        key.len()
                    )));
                }
                self.journal.push(table, key, value);
            }
        }
        if !self.journal.fits() && !self.journal.is_empty() {
            self.checkpoint(None)?;
        }
        let body = self.journal.commit()?;
        self.pending.extend_from_slice(body);
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Whether a checkpoint is due now, after a group.
    fn checkpoint_due(&self) -> bool {
        self.pending.len() >= CHECKPOINT_BYTES
            || self
                .pending_since
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// Applies every group since the last checkpoint to the tables, with the next journal
    /// epoch, and prunes the forwarding log before `prune` (unix seconds) if asked, in one
    /// LMDB transaction committed with LMDB's syncs; then the journal starts again. Grows the
    /// map first when it is three quarters full, and again on each `MDB_MAP_FULL`. Returns how
    /// many forwarding-log entries it pruned.
    fn checkpoint(&mut self, prune: Option<u64>) -> Result<usize, StoreError> {
        self.grow_if_needed(false)?;
        let next = self.journal.epoch() + 1;
        // A checkpoint may carry many groups: double the map until they fit (or it is at
        // its maximum, where growing fails with the map's size).
        let pruned = loop {
            match self.try_checkpoint(next, prune) {
                Err(StoreError::MapFull { .. }) => self.grow_if_needed(true)?,
                r => break r?,
            }
        };
        self.journal.restart(next);
        self.pending.clear();
        self.pending_since = None;
        Ok(pruned)
    }

    fn try_checkpoint(&self, next: u64, prune: Option<u64>) -> Result<usize, StoreError> {
        // Only the last write of each key matters (every write is a whole value or a delete),
        // and most keys are written more than once between checkpoints: a channel's progress
        // record every round, an HTLC's record and its forward link put and deleted again.
        // LMDB gets each key's last write only, in the journal's order.
        // About one write per 200 bytes of journal; ahash: a keyed hash (no collisions to
        // craft) several times faster than the standard library's on these short keys.
        let guess = self.pending.len() / 200;
        let mut writes: Vec<Option<journal::Write<'_>>> = Vec::with_capacity(guess);
        let mut last: HashMap<(Table, &[u8]), usize, ahash::RandomState> =
            HashMap::with_capacity_and_hasher(guess, ahash::RandomState::new());
        for op in journal::ops(&self.pending) {
            let op = op.map_err(|why| {
                StoreError::Io(format!("journal epoch {}: {why}", self.journal.epoch()))
            })?;
            if let Some(earlier) = last.insert((op.0, op.1), writes.len()) {
                writes[earlier] = None;
            }
            writes.push(Some(op));
        }
        let mut txn = self.env.write_txn().map_err(|e| io("begin", e))?;
        for (table, key, value) in writes.into_iter().flatten() {
            let db = self.tables[table as usize];
            match value {
                Some(v) => db.put(&mut txn, key, v),
                None => db.delete(&mut txn, key).map(|_| ()),
            }
            .map_err(|e| io(table.name(), e))?;
        }
        self.tables[Table::Meta as usize]
            .put(&mut txn, JOURNAL_KEY, &next.to_be_bytes())
            .map_err(|e| io("meta", e))?;
        let pruned = match prune {
            Some(cutoff) => prune_forwards(&self.tables, &mut txn, cutoff, PRUNE_BATCH)
                .map_err(|e| io("pruning the forwarding log", e))?,
            None => 0,
        };
        txn.commit().map_err(|e| io("commit", e))?;
        Ok(pruned)
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
/// Each read first asks a running writer for a checkpoint, so it sees every commit made
/// before it.
#[derive(Clone)]
pub struct Reader {
    env: Env,
    tables: Tables,
    catch_up: Option<Sender<Sender<()>>>,
}

impl Reader {
    /// Waits (up to 10 s) for the writer's checkpoint of what it committed so far; without a
    /// writer (stopped, or never started) the tables hold everything already.
    fn catch_up(&self) {
        if let Some(tx) = &self.catch_up {
            let (done_tx, done_rx) = bounded(1);
            if tx.send(done_tx).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
        }
    }

    /// The channels retired after their close, in channel id order. A record that does not
    /// decode is an error naming it.
    pub fn closed(&self) -> Result<Vec<(lnhub_wire::types::ChannelId, ClosedRecord)>, StoreError> {
        self.catch_up();
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
        self.catch_up();
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
/// `txn`; returns how many index entries it removed.
fn prune_forwards(
    tables: &Tables,
    txn: &mut RwTxn<'_>,
    cutoff: u64,
    max: usize,
) -> heed::Result<usize> {
    let index = tables[Table::ForwardsByTime as usize];
    let log = tables[Table::Forwards as usize];
    let txn = &mut *txn;
    let end = cutoff.to_be_bytes();
    let old: Vec<Vec<u8>> = index
        .range(txn, &(Bound::Unbounded, Bound::Excluded(&end[..])))?
        .take(max)
        .map(|row| row.map(|(k, _)| k.to_vec()))
        .collect::<heed::Result<_>>()?;
    for key in &old {
        index.delete(txn, key)?;
        if let Some((resolved_at, forward)) = parse_forward_time_key(key) {
            // Only if the entry is the one this index key was written for: a forward decided
            // again later has a later index key, which keeps it.
            let current = log
                .get(txn, &forward)?
                .and_then(|v| decode_forward(v).ok())
                .map(|f| f.resolved_at);
            if current.is_none_or(|t| t == resolved_at) {
                log.delete(txn, &forward)?;
            }
        }
    }
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
    checkpoints: AtomicU64,
    checkpoint_nanos: AtomicU64,
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
            checkpoints: AtomicU64::new(0),
            checkpoint_nanos: AtomicU64::new(0),
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
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            checkpoint_nanos: self.checkpoint_nanos.load(Ordering::Relaxed),
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
    /// Duration of each commit (journal write and sync), nanoseconds.
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
    /// Group commits: journal entries written and synced (one sync each).
    pub commits: u64,
    /// Batches submitted by shards and committed (each commit takes one or more).
    pub submissions: u64,
    /// Records (puts and deletes) committed.
    pub records: u64,
    /// Bytes of keys and values committed.
    pub bytes: u64,
    /// Time spent writing and syncing the journal, nanoseconds.
    pub commit_nanos: u64,
    /// Checkpoints: LMDB transactions applying the journal's groups (two syncs each).
    pub checkpoints: u64,
    /// Time spent in checkpoints, nanoseconds.
    pub checkpoint_nanos: u64,
    /// Forwarding-log entries deleted for their age.
    pub forwards_pruned: u64,
    /// Most submissions one commit took.
    pub largest_group: u64,
}

fn run(mut db: Db, rx: Receiver<Submission>, catch_up: Receiver<Sender<()>>, stats: &Stats) {
    let mut catch_up = catch_up;
    let mut group = Vec::new();
    let mut failed: Option<StoreError> = None;
    let mut next_prune = Instant::now();
    let mut waiting: Vec<Sender<()>> = Vec::new();
    // A checkpoint, counted; its failure is final like a commit's.
    let checkpoint = |db: &mut Db, failed: &mut Option<StoreError>, next_prune: &mut Instant| {
        if failed.is_some() {
            return;
        }
        let now = Instant::now();
        let prune = db
            .options
            .forward_retention_secs
            .filter(|_| now >= *next_prune)
            .map(|retention| {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                unix.saturating_sub(retention)
            });
        if db.pending.is_empty() && prune.is_none() {
            return;
        }
        match db.checkpoint(prune) {
            Ok(pruned) => {
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                stats
                    .checkpoint_nanos
                    .fetch_add(now.elapsed().as_nanos() as u64, Ordering::Relaxed);
                stats
                    .forwards_pruned
                    .fetch_add(pruned as u64, Ordering::Relaxed);
                if prune.is_some() {
                    // A full batch: more may be due, at the next checkpoint.
                    *next_prune = if pruned == PRUNE_BATCH {
                        Instant::now()
                    } else {
                        Instant::now() + Duration::from_secs(PRUNE_INTERVAL_SECS)
                    };
                }
            }
            Err(e) => {
                log::error!("{e}");
                *failed = Some(e);
                // Nothing more is applied: no checkpoint is waited for.
                db.pending_since = None;
            }
        }
    };
    loop {
        // Until the next checkpoint: a short idle wait while groups wait for one, else until
        // the next pruning is due.
        let timeout = match db.pending_since {
            Some(since) => IDLE_CHECKPOINT.min(CHECKPOINT_INTERVAL.saturating_sub(since.elapsed())),
            None if db.options.forward_retention_secs.is_some() => {
                next_prune.saturating_duration_since(Instant::now())
            }
            None => Duration::from_secs(PRUNE_INTERVAL_SECS),
        };
        let first = select! {
            recv(rx) -> first => match first {
                Ok(first) => first,
                Err(_) => {
                    // Every handle is gone: what the journal holds goes into the tables.
                    next_prune = Instant::now() + Duration::from_secs(PRUNE_INTERVAL_SECS);
                    checkpoint(&mut db, &mut failed, &mut next_prune);
                    return;
                }
            },
            recv(catch_up) -> asked => {
                let Ok(asked) = asked else {
                    // Every reader is gone (the shards' handles may outlive them): no more
                    // requests, and no busy loop on the closed channel.
                    catch_up = crossbeam_channel::never();
                    continue;
                };
                waiting.push(asked);
                waiting.extend(catch_up.try_iter());
                checkpoint(&mut db, &mut failed, &mut next_prune);
                for w in waiting.drain(..) {
                    let _ = w.send(());
                }
                continue;
            },
            default(timeout) => {
                checkpoint(&mut db, &mut failed, &mut next_prune);
                continue;
            },
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
        if db.checkpoint_due() {
            checkpoint(&mut db, &mut failed, &mut next_prune);
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

    /// Waits for a checkpoint of every group committed so far (the journal's writes applied
    /// to the tables), as a reader does before it reads.
    pub fn checkpoint(&self) {
        self.reader.catch_up();
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
