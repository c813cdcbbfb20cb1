//! Start-up time with a large store: `STARTUP_CHANNELS` channels (default 100,000; each a
//! channel record and its static record, as the shards write them) and
//! `STARTUP_FORWARDS` forwarding-log rows (default 1,000,000) are written to a fresh LMDB
//! store, which is then opened and read back (`Db::open`: every state table decoded and
//! checked) and restored into 2 shards (`lnhub_engine::restore`: every channel record decoded
//! by the channel state machine), as `lnhubd` does at start-up. Run:
//! `cargo bench -p lnhub-tests --bench startup`.

use std::time::Instant;

use lnhub_engine::{Shard, ShardConfig};
use lnhub_forward::{Limits, Policy, PolicyHistory};
use lnhub_schema::{
    encode_channel, encode_channel_statics, put_forward, ChannelHeader, ForwardOutcome,
    ForwardRecord,
};
use lnhub_store::{Batch, Db, Options, Table};
use lnhub_tx::ChannelType;
use lnhub_wire::types::{ChannelId, Msat, ShortChannelId};
use rayon::prelude::*;
use secp256k1::{PublicKey, Secp256k1, SecretKey};

// The channel crate's own fixtures: a funded pair of channel state machines.
#[path = "../../shards/channel/tests/common/mod.rs"]
mod testing;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let channels = env("STARTUP_CHANNELS", 100_000);
    let forwards = env("STARTUP_FORWARDS", 1_000_000);
    let dir = std::env::temp_dir().join(format!("lnhub-startup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (db, _) = Db::open(&dir, Options::default()).expect("open");
    let writer = db.start_writer();
    let mut handle = writer.handle();

    let started = Instant::now();
    let agreement = testing::Agreement::default_for(ChannelType::Anchors);
    let policy = PolicyHistory::new(Policy {
        fee_base_msat: 1_000,
        fee_proportional_millionths: 100,
        cltv_expiry_delta: 80,
        htlc_minimum_msat: Msat(1),
        htlc_maximum_msat: Msat(u64::MAX),
    });
    let mut batch = Batch::new();
    for chunk in (0..channels as u64).collect::<Vec<_>>().chunks(5_000) {
        let records: Vec<(ChannelId, Vec<u8>, Vec<u8>)> = chunk
            .par_iter()
            .map(|&i| {
                let secp = Secp256k1::new();
                let (hub, _) = testing::pair(&secp, i, &agreement);
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&(i + 1).to_be_bytes());
                let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&key).unwrap());
                let header = ChannelHeader {
                    peer,
                    scid: ShortChannelId(0x0100_0000_0000_0000 + i),
                    remote_alias: None,
                    policy,
                };
                let mut value = Vec::new();
                encode_channel(&mut value, &header, |out| hub.encode_progress(out));
                let mut statics = Vec::new();
                encode_channel_statics(&mut statics, |out| hub.encode_static(out));
                (hub.channel_id(), value, statics)
            })
            .collect();
        batch.clear();
        for (id, value, statics) in &records {
            batch.put(Table::Channels, &id.0, value);
            batch.put(Table::ChannelStatics, &id.0, statics);
        }
        handle.commit(&mut batch).expect("commit");
    }
    println!(
        "wrote {channels} channel records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut n = 0u64;
    while (n as usize) < forwards {
        batch.clear();
        for _ in 0..10_000.min(forwards - n as usize) {
            let f = ForwardRecord {
                in_channel_id: ChannelId([(n % 251) as u8; 32]),
                in_htlc_id: n,
                out: Some((ChannelId([(n % 241) as u8; 32]), n)),
                in_amount_msat: Msat(1_001_100),
                out_amount_msat: Msat(1_000_000),
                added_at: 1_700_000_000 + n / 100,
                resolved_at: 1_700_000_000 + n / 100,
                outcome: ForwardOutcome::Settled,
            };
            put_forward(&mut batch, &f);
            n += 1;
        }
        handle.commit(&mut batch).expect("commit");
    }
    println!(
        "wrote {forwards} forwarding-log rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(handle);
    writer.close();
    let size = std::fs::metadata(dir.join("data.mdb")).map_or(0, |m| m.len());

    let started = Instant::now();
    let (db, loaded) = Db::open(&dir, Options::default()).expect("reopen");
    let opened = started.elapsed();
    let node_secret = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let mut shards: Vec<Shard> = (0..2)
        .map(|index| {
            let config = ShardConfig {
                index,
                node_secret,
                limits: Limits::default(),
                chain_hash: lnhub_wire::types::ChainHash::REGTEST,
                close_depth: lnhub_engine::DEFAULT_CLOSE_DEPTH,
                close_script: None,
                open: None,
            };
            Shard::new(config, 0, 1_700_000_000)
        })
        .collect();
    let mut replays = lnhub_onion::ReplaySet::new(lnhub_onion::ReplayConfig::default(), 0);
    lnhub_engine::restore(&mut shards, &loaded, &mut replays).expect("restore");
    let restored = started.elapsed() - opened;
    let in_shards: usize = shards.iter().map(|s| s.slots().count()).sum();
    assert_eq!(in_shards, channels);
    println!(
        "start-up with {channels} channels and {forwards} log rows ({} MB on disk): store opened \
         and read in {} ms, channels restored into 2 shards in {} ms, {} ms in all",
        size >> 20,
        opened.as_millis(),
        restored.as_millis(),
        (opened + restored).as_millis()
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
