//! The LMDB store on a real disk: what is committed is there after a reopen, exactly as the
//! in-memory tables would hold it; shards committing at once share commits; a corrupt record
//! stops the open naming it; the map grows before it fills, and a store that cannot grow
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

fn link(n: u64) -> LinkRecord {
    LinkRecord {
        in_channel_id: ChannelId([1; 32]),
        in_htlc_id: n,
        in_amount_msat: Msat(2_000 + n),
        out_amount_msat: Msat(1_000 + n),
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
    let err = match Db::open(&dir.0, Options::default()) {
        Err(e) => e,
        Ok(_) => panic!("a corrupt record must stop the open"),
    };
    let StoreError::Corrupt(record) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(record.table, Table::Links);
    assert!(record.key.ends_with("0000000000000002"), "{record}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn the_map_grows_before_it_fills() {
    let dir = Dir::new("grow");
    let options = Options {
        initial_map_size: 1 << 20,
        max_map_size: 64 << 20,
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
    };
    let (db, _) = Db::open(&dir.0, options).unwrap();
    let writer = db.start_writer();
    let mut handle = writer.handle();
    let mut batch = Batch::new();
    let mut first_error = None;
    for n in 0..64u64 {
        batch.clear();
        batch.put(
            Table::Links,
            &link_key(&ChannelId([5; 32]), n),
            &[1u8; 64 << 10],
        );
        if let Err(e) = handle.commit(&mut batch) {
            first_error = Some((n, e));
            break;
        }
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
}
