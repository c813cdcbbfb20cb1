//! The LMDB store on a real disk: what is committed is there after a reopen, exactly as the
//! in-memory tables would hold it, and after a crash before its checkpoint (from the
//! journal); shards committing at once share commits; a corrupt record
//! stops the open naming it; channels come back joined with their static records; the map grows before it fills, and a store that cannot grow
//! fails every commit from then on (the process stops before anything gated leaves).

use std::path::PathBuf;

use lnhub_schema::{encode_link, link_key, LinkRecord, MemTables, StoreError, Upstream};
use lnhub_store::{Batch, Db, Options, Table};
use lnhub_wire::types::{ChannelId, Msat};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("lnhub-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The error that stops opening the store in `dir`, which must not open (`what` says why).
fn refused(dir: &Dir, options: Options, what: &str) -> StoreError {
    match Db::open(&dir.0, options) {
        Err(e) => e,
        Ok(_) => panic!("{what} must stop the open"),
    }
}

fn link(n: u64) -> LinkRecord {
    LinkRecord {
        in_channel_id: ChannelId([1; 32]),
        in_htlc_id: n,
        in_amount_msat: Msat(2_000 + n),
        out_amount_msat: Msat(1_000 + n),
        added_at: 1_700_000_000 + n,
        resolution: None,
    }
}

fn put_link(batch: &mut Batch, out: u8, htlc: u64) {
    batch.put_with(Table::Links, &link_key(&ChannelId([out; 32]), htlc), |o| {
        encode_link(o, &link(htlc))
    });
}

#[test]
fn committed_records_survive_a_reopen_exactly() {
    let dir = Dir::new("reopen");
    let mut mirror = MemTables::new();
    let (db, loaded) = Db::open(&dir.0, Options::default()).unwrap();
    assert_eq!(loaded, mirror.load().unwrap(), "a fresh store is empty");
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut batch = Batch::new();
    for round in 0..20u64 {
        batch.clear();
        for h in 0..10 {
            put_link(&mut batch, 2, round * 10 + h);
        }
        if round > 0 {
            batch.delete(Table::Links, &link_key(&ChannelId([2; 32]), round * 10 - 5));
        }
        handle.commit(&mut batch).unwrap();
        assert_eq!(
            batch.len(),
            if round > 0 { 11 } else { 10 },
            "batch handed back"
        );
        mirror.apply(&batch);
    }
    let stats = writer.stats();
    assert_eq!(stats.commits, 20);
    assert_eq!(stats.records, 20 * 10 + 19);
    drop(handle);
    writer.close();

    let (_db, loaded) = Db::open(&dir.0, Options::default()).unwrap();
    assert_eq!(loaded.links.len(), 200 - 19);
    assert_eq!(loaded, mirror.load().unwrap());
}

/// A checkpoint applies only the last write of each key: what LMDB holds afterwards is what
/// applying every write in order would give (rewrites, a put then a delete, a delete then a
/// put, a delete of a key an earlier checkpoint wrote).
#[test]
fn a_checkpoint_applies_the_last_write_of_each_key() {
    let dir = Dir::new("last-write");
    let mut mirror = MemTables::new();
    let (db, _) = Db::open(&dir.0, Options::default()).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut batch = Batch::new();
    let key = |htlc: u64| link_key(&ChannelId([3; 32]), htlc);
    let mut commit = |batch: &mut Batch, mirror: &mut MemTables| {
        handle.commit(batch).unwrap();
        mirror.apply(batch);
        batch.clear();
    };
    // Keys 0..10 reach LMDB in a first checkpoint.
    for h in 0..10 {
        put_link(&mut batch, 3, h);
    }
    commit(&mut batch, &mut mirror);
    writer.checkpoint();
    let before = writer.stats().checkpoints;
    // Then, within one checkpoint: key 0 rewritten three times with other values; key 1
    // deleted; key 2 deleted and put back; key 20 put and deleted; key 21 put, deleted, put.
    for value in [100, 200, 300] {
        batch.put_with(Table::Links, &key(0), |o| encode_link(o, &link(value)));
        commit(&mut batch, &mut mirror);
    }
    batch.delete(Table::Links, &key(1));
    batch.delete(Table::Links, &key(2));
    put_link(&mut batch, 3, 20);
    put_link(&mut batch, 3, 21);
    commit(&mut batch, &mut mirror);
    put_link(&mut batch, 3, 2);
    batch.delete(Table::Links, &key(20));
    batch.delete(Table::Links, &key(21));
    commit(&mut batch, &mut mirror);
    put_link(&mut batch, 3, 21);
    commit(&mut batch, &mut mirror);
    writer.checkpoint();
    assert_eq!(
        writer.stats().checkpoints,
        before + 1,
        "one checkpoint took them all"
    );
    drop(handle);
    writer.close();

    let (db, loaded) = Db::open(&dir.0, Options::default()).unwrap();
    assert_eq!(db.journal_entries_recovered(), 0, "all in LMDB");
    assert_eq!(loaded, mirror.load().unwrap());
    let links = &loaded.links;
    assert_eq!(links.len(), 10, "0, 2..10 and 21");
    let find = |h: u64| links.iter().find(|(_, out, _)| *out == h);
    assert_eq!(
        find(0).map(|(_, _, l)| l.in_htlc_id),
        Some(300),
        "the last value"
    );
    assert!(find(1).is_none() && find(20).is_none());
    assert!(find(2).is_some() && find(21).is_some());
}

/// Groups committed to the journal but not yet checkpointed into LMDB when the process ends
/// (a child process that exits right after its last commit returned: no checkpoint, no
/// destructor) are applied at the next open, once.
#[test]
fn commits_in_the_journal_survive_a_crash_before_their_checkpoint() {
    const CHILD: &str = "LNHUB_STORE_CRASH_CHILD";
    if let Some(dir) = std::env::var_os(CHILD) {
        let (db, _) = Db::open(std::path::Path::new(&dir), Options::default()).unwrap();
        let writer = db.start_writer();
        let mut handle = writer.handle();
        let mut batch = Batch::new();
        for round in 0..50u64 {
            batch.clear();
            for h in 0..10 {
                put_link(&mut batch, 8, round * 10 + h);
            }
            handle.commit(&mut batch).unwrap();
        }
        std::process::exit(3);
    }
    let dir = Dir::new("crash");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "commits_in_the_journal_survive_a_crash_before_their_checkpoint",
        ])
        .env(CHILD, &dir.0)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "the child ends after its commits");
    let (db, loaded) = Db::open(&dir.0, Options::default()).unwrap();
    assert!(
        db.journal_entries_recovered() > 0,
        "the last commits were in the journal only"
    );
    assert_eq!(loaded.links.len(), 500);
    drop(db);
    let (db, again) = Db::open(&dir.0, Options::default()).unwrap();
    assert_eq!(db.journal_entries_recovered(), 0, "applied once");
    assert_eq!(again, loaded);
    drop(db);
    // A store without its journal does not open: the journal may hold what the tables miss.
    std::fs::remove_file(dir.0.join(lnhub_store::journal::JOURNAL_FILE)).unwrap();
    let err = refused(&dir, Options::default(), "a store without its journal");
    assert!(err.to_string().contains("journal is missing"), "{err}");
}

#[test]
fn shards_committing_at_once_share_commits() {
    let dir = Dir::new("group");
    let (db, _) = Db::open(&dir.0, Options::default()).unwrap();
    let writer = db.start_writer();
    const SHARDS: u8 = 4;
    const TURNS: u64 = 200;
    std::thread::scope(|s| {
        for shard in 0..SHARDS {
            let mut handle = writer.handle();
            s.spawn(move || {
                let mut batch = Batch::new();
                for turn in 0..TURNS {
                    batch.clear();
                    put_link(&mut batch, shard, turn);
                    handle.commit(&mut batch).unwrap();
                }
            });
        }
    });
    let stats = writer.stats();
    assert_eq!(stats.submissions, SHARDS as u64 * TURNS);
    assert!(
        stats.commits < stats.submissions,
        "concurrent submissions share fsyncs: {stats:?}"
    );
    assert!(stats.largest_group > 1, "{stats:?}");
    writer.close();
    let (_db, loaded) = Db::open(&dir.0, Options::default()).unwrap();
    assert_eq!(loaded.links.len(), SHARDS as usize * TURNS as usize);
}

#[test]
fn a_corrupt_record_stops_the_open_naming_it() {
    let dir = Dir::new("corrupt");
    let (db, _) = Db::open(&dir.0, Options::default()).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut batch = Batch::new();
    put_link(&mut batch, 3, 1);
    // A record whose last byte (its check) is wrong, as a torn or flipped write would leave.
    let mut bad = Vec::new();
    encode_link(&mut bad, &link(2));
    *bad.last_mut().unwrap() ^= 1;
    batch.put(Table::Links, &link_key(&ChannelId([3; 32]), 2), &bad);
    handle.commit(&mut batch).unwrap();
    drop(handle);
    writer.close();
    let err = refused(&dir, Options::default(), "a corrupt record");
    let StoreError::Corrupt(record) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(record.table, Table::Links);
    assert!(record.key.ends_with("0000000000000002"), "{record}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

/// The static records' table (`channel_statics`) is opened and read at start-up like every
/// state table: a channel comes back joined with its static record, and without it the open
/// stops, naming the channel's record.
#[test]
fn channels_come_back_joined_with_their_static_records() {
    use lnhub_forward::{Policy, PolicyHistory};
    use lnhub_schema::{encode_channel, encode_channel_statics, ChannelHeader};
    let dir = Dir::new("statics");
    let (db, _) = Db::open(&dir.0, Options::default()).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let secp = secp256k1::Secp256k1::new();
    let key = secp256k1::SecretKey::from_slice(&[4; 32]).unwrap();
    let header = ChannelHeader {
        peer: secp256k1::PublicKey::from_secret_key(&secp, &key),
        scid: lnhub_wire::types::ShortChannelId(1 << 40),
        remote_alias: None,
        policy: PolicyHistory::new(Policy {
            fee_base_msat: 1,
            fee_proportional_millionths: 1,
            cltv_expiry_delta: 40,
            htlc_minimum_msat: Msat(1),
            htlc_maximum_msat: Msat(1 << 40),
        }),
    };
    let mut batch = Batch::new();
    batch.put_with(Table::Channels, &[4; 32], |o| {
        encode_channel(o, &header, |o| o.extend_from_slice(b"progress"))
    });
    batch.put_with(Table::ChannelStatics, &[4; 32], |o| {
        encode_channel_statics(o, |o| o.extend_from_slice(b"static"))
    });
    handle.commit(&mut batch).unwrap();
    drop(handle);
    writer.close();
    let (db, loaded) = Db::open(&dir.0, Options::default()).unwrap();
    let [(id, record)] = &loaded.channels[..] else {
        panic!("one channel: {:?}", loaded.channels)
    };
    assert_eq!(*id, ChannelId([4; 32]));
    assert_eq!(record.statics.as_deref(), Some(&b"static"[..]));
    assert_eq!(record.state, b"progress");

    let writer = db.start_writer();
    let mut handle = writer.handle();
    batch.clear();
    batch.delete(Table::ChannelStatics, &[4; 32]);
    handle.commit(&mut batch).unwrap();
    drop(handle);
    writer.close();
    let err = refused(
        &dir,
        Options::default(),
        "a channel without its static record",
    );
    let StoreError::Corrupt(record) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (record.table, record.key.as_str()),
        (Table::Channels, &*"04".repeat(32))
    );
    assert!(record.why.contains("without its static record"), "{record}");
}

#[test]
fn the_map_grows_before_it_fills() {
    let dir = Dir::new("grow");
    let options = Options {
        initial_map_size: 1 << 20,
        max_map_size: 64 << 20,
        forward_retention_secs: None,
    };
    let (db, _) = Db::open(&dir.0, options).unwrap();
    assert_eq!(db.map_size(), 1 << 20);
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut batch = Batch::new();
    // 16 MiB in links carrying 64,000-byte failure onions: sixteen times the initial map.
    for n in 0..256u64 {
        batch.clear();
        let big = LinkRecord {
            resolution: Some(Upstream::FailedDownstream(vec![n as u8; 64_000])),
            ..link(n)
        };
        batch.put_with(Table::Links, &link_key(&ChannelId([4; 32]), n), |o| {
            encode_link(o, &big)
        });
        handle.commit(&mut batch).unwrap();
    }
    drop(handle);
    writer.close();
    let (db, loaded) = Db::open(&dir.0, options).unwrap();
    assert_eq!(loaded.links.len(), 256);
    assert!(db.map_size() > 16 << 20, "map is {} bytes", db.map_size());
}

#[test]
fn a_store_that_cannot_grow_fails_every_commit_from_then_on() {
    let dir = Dir::new("full");
    let options = Options {
        initial_map_size: 1 << 20,
        max_map_size: 2 << 20,
        forward_retention_secs: None,
    };
    let (db, _) = Db::open(&dir.0, options).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let reader = writer.reader();
    let mut batch = Batch::new();
    let mut first_error = None;
    for n in 0..64u64 {
        batch.clear();
        let big = LinkRecord {
            resolution: Some(Upstream::FailedDownstream(vec![n as u8; 64_000])),
            ..link(n)
        };
        batch.put_with(Table::Links, &link_key(&ChannelId([5; 32]), n), |o| {
            encode_link(o, &big)
        });
        if let Err(e) = handle.commit(&mut batch) {
            first_error = Some((n, e));
            break;
        }
        // A reader's catch-up: the checkpoint into LMDB, where the map fills.
        reader.closed().unwrap();
    }
    let (n, e) = first_error.expect("4 MiB do not fit a 2 MiB map");
    assert!(
        matches!(e, StoreError::MapFull { map_size } if map_size == 2 << 20),
        "{e:?}"
    );
    assert!(e.to_string().contains("database full"), "{e}");
    assert!(n > 8, "the map grew to its maximum first (failed at {n})");
    batch.clear();
    put_link(&mut batch, 5, 1_000);
    assert_eq!(
        handle.commit(&mut batch),
        Err(e),
        "every later commit fails too"
    );
    // What was committed before the checkpoint that failed is in the journal: the same map
    // refuses it at the next start, a larger one takes it.
    drop((handle, reader));
    writer.close();
    let err = refused(&dir, options, "what did not fit, at the next start");
    assert!(matches!(err, StoreError::MapFull { .. }), "{err:?}");
    let larger = Options {
        max_map_size: 64 << 20,
        ..options
    };
    let (db, loaded) = Db::open(&dir.0, larger).unwrap();
    assert!(db.journal_entries_recovered() > 0);
    assert_eq!(
        loaded.links.len(),
        n as usize,
        "every commit acknowledged is there"
    );
}

fn forward(n: u64, resolved_at: u64) -> lnhub_schema::ForwardRecord {
    lnhub_schema::ForwardRecord {
        in_channel_id: ChannelId([6; 32]),
        in_htlc_id: n,
        out: Some((ChannelId([7; 32]), n)),
        in_amount_msat: Msat(1_001_000),
        out_amount_msat: Msat(1_000_000),
        added_at: resolved_at - 1,
        resolved_at,
        outcome: lnhub_schema::ForwardOutcome::Settled,
    }
}

#[test]
fn the_forwarding_log_is_read_in_time_order_and_pruned_by_age() {
    let dir = Dir::new("forwards");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = 86_400;
    let (db, _) = Db::open(&dir.0, Options::default()).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut batch = Batch::new();
    // 3,000 entries ten days old (more than one pruning batch), 10 from yesterday, and one
    // decided twice: first ten days ago, again yesterday (the later decision stands).
    for n in 0..3_000 {
        lnhub_schema::put_forward(&mut batch, &forward(n, now - 10 * day + n));
    }
    for n in 3_000..3_010 {
        lnhub_schema::put_forward(&mut batch, &forward(n, now - day));
    }
    handle.commit(&mut batch).unwrap();
    batch.clear();
    lnhub_schema::put_forward(&mut batch, &forward(7, now - day + 5));
    handle.commit(&mut batch).unwrap();
    let reader = writer.reader();
    let all = reader.forwards(0, usize::MAX).unwrap();
    assert_eq!(all.len(), 3_010, "one entry per incoming HTLC");
    assert!(all.windows(2).all(|w| w[0].resolved_at <= w[1].resolved_at));
    assert_eq!(
        all.last().unwrap().in_htlc_id,
        7,
        "the later decision is listed last"
    );
    assert_eq!(reader.forwards(now - 2 * day, 5).unwrap().len(), 5, "limit");
    assert_eq!(all[0].fee_msat(), Msat(1_000));
    drop((handle, reader));
    writer.close();

    // Five days' retention: the writer prunes at start-up, a batch per checkpoint.
    let options = Options {
        forward_retention_secs: Some(5 * day),
        ..Options::default()
    };
    let (db, _) = Db::open(&dir.0, options).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let reader = writer.reader();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while reader.forwards(0, usize::MAX).unwrap().len() > 11 {
        assert!(std::time::Instant::now() < deadline, "pruning finishes");
        batch.clear();
        put_link(&mut batch, 9, 0);
        handle.commit(&mut batch).unwrap();
    }
    let left = reader.forwards(0, usize::MAX).unwrap();
    let mut ids: Vec<u64> = left.iter().map(|f| f.in_htlc_id).collect();
    ids.sort();
    let mut want: Vec<u64> = (3_000..3_010).collect();
    want.insert(0, 7);
    assert_eq!(
        ids, want,
        "yesterday's entries and the re-decided one are kept"
    );
    assert_eq!(writer.stats().forwards_pruned, 3_000);
}
