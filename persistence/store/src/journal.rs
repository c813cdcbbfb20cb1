//! The store's journal: one append and one `fdatasync` make a group of batches durable; LMDB
//! takes the same writes afterwards, in a checkpoint that commits many groups at once.
//!
//! Why: an LMDB commit syncs twice (its data pages, then its meta page) and writes out every
//! page its puts touched, so on this hub's VM a commit of a few records costs ~265 µs of CPU,
//! most of it around the two syncs, and a lightly loaded hub commits about once per two
//! forwards. The journal makes a group durable with one sequential write into a file whose
//! blocks are already allocated and one data sync; LMDB then commits (with its own two syncs,
//! writing each touched page once however often it changed) at most every
//! [`CHECKPOINT_INTERVAL`](crate::CHECKPOINT_INTERVAL).
//!
//! **Layout.** `journal` in the store's directory, created zero-filled at
//! [`JOURNAL_BYTES`] (so that overwriting it changes no file metadata and a data sync has
//! nothing else to write) and grown only for a group larger than the file. Entries are
//! written with `O_DIRECT | O_DSYNC` where the file system takes it (one system call that
//! returns once the entry is on the disk, with no page cache copy and no separate flush:
//! about half the CPU and two thirds of the latency of `pwrite` + `fdatasync` here), else
//! with `pwrite` + `fdatasync`. Each entry starts on a 4 KiB boundary, from offset 0:
//!
//! `"LHJ2" ‖ epoch (u64) ‖ seq (u64) ‖ body length (u32) ‖ body ‖ XXH3-64 of everything
//! before`, integers big-endian; the body is the group's writes in order, each `table (u8) ‖
//! key length (u16) ‖ key ‖ value length (u32; u32::MAX deletes) ‖ value`. The check is
//! there to find a torn or stale entry, not to resist an attacker (whoever can write the
//! journal can write LMDB's files too), so it is a fast non-cryptographic hash: SHA-256 of a
//! group took ~15 µs of the writer's CPU per commit, XXH3 well under one. Entries headed
//! `"LHJ1"` (written before, checked with the first 8 bytes of a SHA-256) are still read, so
//! a journal left by a crash of an older build is applied at the next start.
//!
//! **Epochs.** LMDB's `meta` table holds the journal epoch E ([`lnhub_schema::JOURNAL_KEY`]):
//! every entry of an older epoch is in LMDB. Entries of epoch E are written from offset 0
//! with seq 0, 1, 2, ...; a checkpoint applies them to LMDB and sets E + 1 in the same LMDB
//! transaction, and only after that commit does the journal start again at offset 0 with the
//! new epoch. At open, the entries of epoch E are read from offset 0 up to the first that is
//! not the next in sequence of that epoch or whose check fails: the end of what was written,
//! a torn write (of a group that was never acknowledged: acknowledgements follow the sync),
//! or an older epoch's leftovers. Those entries are applied and checkpointed before anything
//! is read. Applying writes twice is harmless (each is a put or delete of a whole value), so a
//! crash during that recovery only repeats it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lnhub_schema::{StoreError, Table};

/// The journal file's name in the store's directory.
pub const JOURNAL_FILE: &str = "journal";

/// The size a journal file is created with (bytes): at ~6 KB per forward, room for
/// thousands of forwards between checkpoints; a checkpoint is forced when it is full.
pub const JOURNAL_BYTES: u64 = 16 << 20;

/// What heads an entry written now: checked with XXH3-64.
const MAGIC: &[u8; 4] = b"LHJ2";
/// What headed an entry written by a build before XXH3: checked with SHA-256 (read only).
const MAGIC_SHA256: &[u8; 4] = b"LHJ1";
/// Entries start on this boundary (direct I/O writes whole, aligned blocks).
const BLOCK: u64 = 4096;
/// Magic, epoch, seq, body length.
const HEADER: usize = 4 + 8 + 8 + 4;
const CHECK: usize = 8;
const DELETE: u32 = u32::MAX;

/// The journal file and where the next entry goes.
pub struct Journal {
    /// Reads, growth, and writes where direct I/O is refused.
    file: File,
    /// The same file opened `O_DIRECT | O_DSYNC`, if the file system takes it.
    direct: Option<File>,
    /// A block-aligned copy of the entry for `direct` (aligned within the vector).
    aligned: Vec<u8>,
    path: PathBuf,
    capacity: u64,
    offset: u64,
    epoch: u64,
    seq: u64,
    /// The entry being built: header space, then the body.
    entry: Vec<u8>,
}

/// Entries found at open: their bodies, concatenated, and how many.
pub struct Recovered {
    /// The bodies of the epoch's entries, in order, one after another.
    pub bodies: Vec<u8>,
    /// How many entries.
    pub entries: usize,
}

impl Recovered {
    /// Bytes of the entries' bodies.
    pub fn bytes(&self) -> usize {
        self.bodies.len()
    }
}

fn io_error(path: &Path, what: &str, e: io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

impl Journal {
    /// Opens (creating, zero-filled, if needed) the journal in `dir` and reads back the
    /// entries of `epoch`, the first epoch LMDB does not hold. Writing starts at offset 0 of
    /// the epoch after the recovered one once they are checkpointed ([`Journal::restart`]).
    /// With `existing`, a missing file is an error: the tables say a journal was kept, and it
    /// may hold commits they do not.
    pub fn open(
        dir: &Path,
        epoch: u64,
        existing: bool,
    ) -> Result<(Journal, Recovered), StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(!existing)
            .truncate(false)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::Io(format!(
                    "{} is missing: it may hold commits the tables do not have; put it back \
                     (a store is its LMDB files and its journal together)",
                    path.display()
                )),
                _ => io_error(&path, "cannot open", e),
            })?;
        let len = file
            .metadata()
            .map_err(|e| io_error(&path, "cannot stat", e))?
            .len();
        let mut journal = Journal {
            file,
            direct: None,
            aligned: Vec::new(),
            path,
            capacity: len,
            offset: 0,
            epoch,
            seq: 0,
            entry: Vec::new(),
        };
        let recovered = journal.read_epoch()?;
        if journal.capacity < JOURNAL_BYTES {
            journal.grow(JOURNAL_BYTES)?;
            // The file's new size and its name: a sync of the directory.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, "cannot sync", e))?;
        }
        journal.direct = journal.open_direct();
        Ok((journal, recovered))
    }

    /// The file opened for direct, synchronous writes, if the file system takes them: tried
    /// by writing the last block back as it is (a block no entry reaches before the file is
    /// full, and unchanged either way).
    fn open_direct(&mut self) -> Option<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(&self.path)
            .ok()?;
        let at = self.capacity.checked_sub(BLOCK)?;
        let block = aligned(&mut self.aligned, BLOCK as usize);
        self.file.read_exact_at(block, at).ok()?;
        direct.write_all_at(block, at).ok()?;
        Some(direct)
    }

    /// Reads the entries of the current epoch from offset 0, in sequence, up to the first
    /// that is not the next one or does not check.
    fn read_epoch(&mut self) -> Result<Recovered, StoreError> {
        let mut bodies = Vec::new();
        let mut entries = 0;
        let mut offset = 0u64;
        let mut header = [0u8; HEADER];
        while offset + (HEADER + CHECK) as u64 <= self.capacity {
            self.file
                .read_exact_at(&mut header, offset)
                .map_err(|e| io_error(&self.path, "cannot read", e))?;
            let (epoch, seq, len) = parse_header(&header);
            let check: fn(&[u8]) -> [u8; CHECK] = match &header[..4] {
                m if m == MAGIC => checksum,
                m if m == MAGIC_SHA256 => checksum_sha256,
                _ => break,
            };
            if epoch != self.epoch || seq != entries as u64 {
                break;
            }
            let total = (HEADER + len as usize + CHECK) as u64;
            if offset + total > self.capacity {
                break;
            }
            let mut entry = vec![0u8; total as usize];
            self.file
                .read_exact_at(&mut entry, offset)
                .map_err(|e| io_error(&self.path, "cannot read", e))?;
            let (covered, stored) = entry.split_at(entry.len() - CHECK);
            if check(covered) != stored {
                break;
            }
            bodies.extend_from_slice(&covered[HEADER..]);
            entries += 1;
            offset = align(offset + total);
        }
        Ok(Recovered { bodies, entries })
    }

    /// The epoch entries are written in now.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts writing `epoch` at offset 0: call only once LMDB holds every earlier entry and
    /// records `epoch` as its journal epoch.
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.offset = 0;
        self.seq = 0;
    }

    /// Starts a new entry; add its writes with [`Journal::push`].
    pub fn begin(&mut self) {
        self.entry.clear();
        self.entry.resize(HEADER, 0);
    }

    /// Adds one write to the entry begun.
    pub fn push(&mut self, table: Table, key: &[u8], value: Option<&[u8]>) {
        push_op(&mut self.entry, table, key, value);
    }

    /// Whether the entry begun fits in the file after the entries of this epoch (if not,
    /// checkpoint and [`Journal::restart`] first).
    pub fn fits(&self) -> bool {
        align(self.offset + (self.entry.len() + CHECK) as u64) <= self.capacity
    }

    /// Whether entries are written with direct, synchronous I/O.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Whether nothing was written in this epoch.
    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Writes the entry begun after the epoch's others and syncs it; it is durable when this
    /// returns. Grows the file if the entry is larger than the whole file. Returns the
    /// entry's body.
    pub fn commit(&mut self) -> Result<&[u8], StoreError> {
        let body_len = self.entry.len() - HEADER;
        let len = u32::try_from(body_len)
            .map_err(|_| StoreError::Io(format!("a group of {body_len} bytes")))?;
        self.entry[..4].copy_from_slice(MAGIC);
        self.entry[4..12].copy_from_slice(&self.epoch.to_be_bytes());
        self.entry[12..20].copy_from_slice(&self.seq.to_be_bytes());
        self.entry[20..24].copy_from_slice(&len.to_be_bytes());
        let check = checksum(&self.entry);
        self.entry.extend_from_slice(&check);
        let end = align(self.offset + self.entry.len() as u64);
        if end > self.capacity {
            self.grow(end.next_power_of_two())?;
        }
        let offset = self.offset;
        if let Some(direct) = &self.direct {
            // The entry and zeros to the next block boundary, from an aligned buffer.
            let block = aligned(&mut self.aligned, (end - offset) as usize);
            block[..self.entry.len()].copy_from_slice(&self.entry);
            block[self.entry.len()..].fill(0);
            direct
                .write_all_at(block, offset)
                .map_err(|e| io_error(&self.path, "cannot write", e))?;
        } else {
            self.file
                .write_all_at(&self.entry, offset)
                .map_err(|e| io_error(&self.path, "cannot write", e))?;
            self.file
                .sync_data()
                .map_err(|e| io_error(&self.path, "cannot sync", e))?;
        }
        self.offset = end;
        self.seq += 1;
        Ok(&self.entry[HEADER..HEADER + body_len])
    }

    /// Extends the file to `size` bytes of zeros, written (not a hole, so later overwrites
    /// allocate nothing), and syncs it with its new size.
    fn grow(&mut self, size: u64) -> Result<(), StoreError> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = self.capacity;
        while at < size {
            let n = CHUNK.min((size - at) as usize);
            self.file
                .write_all_at(&zeros[..n], at)
                .map_err(|e| io_error(&self.path, "cannot extend", e))?;
            at += n as u64;
        }
        self.file
            .sync_all()
            .map_err(|e| io_error(&self.path, "cannot sync", e))?;
        self.capacity = size;
        Ok(())
    }
}

/// `len` bytes of `buf` starting on a block boundary (`buf` grows to hold them).
fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len + BLOCK as usize {
        buf.resize(len + BLOCK as usize, 0);
    }
    let start = buf.as_ptr().align_offset(BLOCK as usize);
    &mut buf[start..start + len]
}

/// `offset` rounded up to the next block boundary.
fn align(offset: u64) -> u64 {
    offset.div_ceil(BLOCK) * BLOCK
}

fn parse_header(h: &[u8; HEADER]) -> (u64, u64, u32) {
    let epoch = u64::from_be_bytes(h[4..12].try_into().expect("8 bytes"));
    let seq = u64::from_be_bytes(h[12..20].try_into().expect("8 bytes"));
    let len = u32::from_be_bytes(h[20..24].try_into().expect("4 bytes"));
    (epoch, seq, len)
}

/// An entry's check, as written now.
fn checksum(bytes: &[u8]) -> [u8; CHECK] {
    xxhash_rust::xxh3::xxh3_64(bytes).to_be_bytes()
}

/// The check of an entry headed [`MAGIC_SHA256`].
fn checksum_sha256(bytes: &[u8]) -> [u8; CHECK] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..CHECK].try_into().expect("8 bytes")
}

/// Appends one write to a journal body.
pub fn push_op(body: &mut Vec<u8>, table: Table, key: &[u8], value: Option<&[u8]>) {
    body.push(table as u8);
    // Keys are a few dozen bytes (LMDB refuses keys over 511).
    body.extend_from_slice(&(key.len() as u16).to_be_bytes());
    body.extend_from_slice(key);
    match value {
        Some(v) => {
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
        }
        None => body.extend_from_slice(&DELETE.to_be_bytes()),
    }
}

/// The writes of journal bodies (one or several, concatenated), in order; an error names
/// what is malformed (a body that passed its entry's check and still does not parse).
pub fn ops(mut body: &[u8]) -> impl Iterator<Item = Result<Write<'_>, String>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        let op = next_op(body);
        match op {
            Ok((op, rest)) => {
                body = rest;
                Some(Ok(op))
            }
            Err(e) => {
                body = &[];
                Some(Err(e))
            }
        }
    })
}

/// One write of a journal body: table, key, and the value (`None`: delete).
pub type Write<'a> = (Table, &'a [u8], Option<&'a [u8]>);

type OpAndRest<'a> = (Write<'a>, &'a [u8]);

fn next_op(body: &[u8]) -> Result<OpAndRest<'_>, String> {
    let short = || "journal entry ends inside a write".to_string();
    let (&table, rest) = body.split_first().ok_or_else(short)?;
    let table = *Table::ALL
        .get(table as usize)
        .ok_or_else(|| format!("journal entry names table {table}"))?;
    let (len, rest) = rest.split_at_checked(2).ok_or_else(short)?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let (key, rest) = rest.split_at_checked(len).ok_or_else(short)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(short)?;
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes"));
    if len == DELETE {
        return Ok(((table, key, None), rest));
    }
    let (value, rest) = rest.split_at_checked(len as usize).ok_or_else(short)?;
    Ok(((table, key, Some(value)), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("lnhub-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Flips one bit of the byte at `at` in the journal file.
    fn flip(j: &Journal, at: u64) {
        let mut b = [0u8];
        j.file.read_exact_at(&mut b, at).unwrap();
        j.file.write_all_at(&[b[0] ^ 1], at).unwrap();
    }

    fn write(j: &mut Journal, n: u8) {
        j.begin();
        j.push(Table::Links, &[n; 40], Some(&[n; 100]));
        j.push(Table::Htlcs, &[n; 41], None);
        j.commit().unwrap();
    }

    #[test]
    fn entries_come_back_in_order_up_to_the_first_torn_one() {
        // Written directly (this file system takes it) and with pwrite + fdatasync (as on one
        // that refuses direct I/O): the same file either way.
        torn(true);
        torn(false);
    }

    fn torn(direct: bool) {
        let d = dir(if direct { "torn-direct" } else { "torn-sync" });
        let (mut j, r) = Journal::open(&d, 7, false).unwrap();
        assert_eq!((r.entries, j.capacity), (0, JOURNAL_BYTES));
        if direct && !j.is_direct() {
            eprintln!("direct case skipped: the temp dir's file system refuses direct I/O");
            return;
        }
        if !direct {
            j.direct = None;
        }
        // Entries start on block boundaries.
        write(&mut j, 9);
        assert_eq!(j.offset, BLOCK);
        j.restart(7);
        for n in 0..3 {
            write(&mut j, n);
        }
        let third = j.offset;
        write(&mut j, 3);
        write(&mut j, 4);
        // A flipped byte in the fourth entry: it and everything after it are not taken.
        flip(&j, third + 30);
        drop(j);
        let (_, r) = Journal::open(&d, 7, false).unwrap();
        assert_eq!(r.entries, 3);
        let got: Vec<_> = ops(&r.bodies).map(Result::unwrap).collect();
        assert_eq!(got.len(), 6);
        assert_eq!(
            got[4],
            (Table::Links, &[2u8; 40][..], Some(&[2u8; 100][..]))
        );
        assert_eq!(got[5], (Table::Htlcs, &[2u8; 41][..], None));
        // Another epoch's entries are not this epoch's.
        let (_, r) = Journal::open(&d, 8, true).unwrap();
        assert_eq!(r.entries, 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_an_older_build_checked_with_sha256_are_still_read() {
        let d = dir("sha256");
        let (mut j, _) = Journal::open(&d, 4, false).unwrap();
        j.direct = None;
        write(&mut j, 1);
        let second = j.offset;
        write(&mut j, 2);
        write(&mut j, 3);
        // The first two entries rewritten as an "LHJ1" build wrote them; the third keeps
        // "LHJ2": both kinds are read, in sequence.
        for (at, body) in [(0, 1u8), (second, 2)] {
            let mut entry = Vec::new();
            entry.extend_from_slice(MAGIC_SHA256);
            entry.extend_from_slice(&4u64.to_be_bytes());
            entry.extend_from_slice(&u64::from(body - 1).to_be_bytes());
            let mut ops = Vec::new();
            push_op(&mut ops, Table::Links, &[body; 40], Some(&[body; 100]));
            push_op(&mut ops, Table::Htlcs, &[body; 41], None);
            entry.extend_from_slice(&(ops.len() as u32).to_be_bytes());
            entry.extend_from_slice(&ops);
            let check = checksum_sha256(&entry);
            entry.extend_from_slice(&check);
            j.file.write_all_at(&entry, at).unwrap();
        }
        drop(j);
        let (_, r) = Journal::open(&d, 4, true).unwrap();
        assert_eq!(r.entries, 3);
        let got: Vec<_> = ops(&r.bodies).map(Result::unwrap).collect();
        assert_eq!(got.len(), 6);
        assert_eq!(
            got[2],
            (Table::Links, &[2u8; 40][..], Some(&[2u8; 100][..]))
        );
        assert_eq!(got[5], (Table::Htlcs, &[3u8; 41][..], None));
        // An "LHJ1" entry whose SHA-256 does not match ends the epoch there.
        let (j, _) = Journal::open(&d, 4, true).unwrap();
        flip(&j, second + 30);
        drop(j);
        let (_, r) = Journal::open(&d, 4, true).unwrap();
        assert_eq!(r.entries, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_restarted_epoch_overwrites_the_old_one_and_reads_only_its_own() {
        let d = dir("restart");
        let (mut j, _) = Journal::open(&d, 1, false).unwrap();
        for n in 0..5 {
            write(&mut j, n);
        }
        j.restart(2);
        write(&mut j, 9);
        drop(j);
        // Epoch 2 has one entry; what follows it on disk is epoch 1's and is not taken.
        let (_, r) = Journal::open(&d, 2, true).unwrap();
        assert_eq!(r.entries, 1);
        assert_eq!(ops(&r.bodies).count(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_group_larger_than_the_file_grows_it() {
        let d = dir("grow");
        let (mut j, _) = Journal::open(&d, 0, false).unwrap();
        j.begin();
        let big = vec![5u8; JOURNAL_BYTES as usize];
        j.push(Table::Wallet, b"k", Some(&big));
        assert!(!j.fits());
        j.commit().unwrap();
        assert_eq!(j.capacity, 2 * JOURNAL_BYTES);
        drop(j);
        let (_, r) = Journal::open(&d, 0, false).unwrap();
        assert_eq!(r.entries, 1);
        let got: Vec<_> = ops(&r.bodies).map(Result::unwrap).collect();
        assert_eq!(got, vec![(Table::Wallet, &b"k"[..], Some(&big[..]))]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_malformed_body_is_an_error_not_a_panic() {
        let mut body = Vec::new();
        push_op(&mut body, Table::Links, b"key", Some(b"value"));
        for cut in 0..body.len() {
            let got: Vec<_> = ops(&body[..cut]).collect();
            if cut > 0 {
                assert!(got.last().unwrap().is_err(), "cut at {cut}");
            }
        }
        assert!(ops(&[200, 0, 0, 0, 0, 0, 0]).next().unwrap().is_err());
    }
}
