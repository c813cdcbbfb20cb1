//! Recovery planning: the rows of every table, as read back at start-up, become the decoded and
//! checked records the shards are rebuilt from ([`Loaded`]). A record that does not decode stops
//! the load with an error naming it; nothing is skipped. A channel's record and its static
//! record (`channels`, `channel_statics`) come back joined in one [`ChannelRecord`].
//!
//! [`MemTables`] is the in-memory twin of the LMDB store's tables, for tests and the
//! simulators: it applies the same [`Batch`]es and loads through the same [`load`].

use std::collections::BTreeMap;

use lnhub_wire::types::ChannelId;

use crate::records::{
    decode_channel, decode_channel_statics, decode_htlc, decode_link, decode_opening,
    decode_replay, parse_htlc_key, parse_link_key, parse_replay_key, ChannelRecord, HtlcRecord,
    LinkRecord, OpeningRecord, RecordError,
};
use crate::{Batch, Table, JOURNAL_KEY, SCHEMA_KEY, SCHEMA_VERSION};

/// Everything the shards are rebuilt from, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Channels in normal operation or closing, each with its static record.
    pub channels: Vec<(ChannelId, ChannelRecord)>,
    /// Channels in establishment.
    pub openings: Vec<(ChannelId, OpeningRecord)>,
    /// Forwards in flight: outgoing channel, outgoing HTLC id, the link.
    pub links: Vec<(ChannelId, u64, LinkRecord)>,
    /// HTLCs' fixed terms: channel, offered by the peer, HTLC id, the record.
    pub htlcs: Vec<(ChannelId, bool, u64, HtlcRecord)>,
    /// The onion replay set: expiry height, tag, and the incoming HTLC (channel, id) that
    /// first carried the onion.
    pub replays: Vec<(u32, u128, ChannelId, u64)>,
    /// The on-chain wallet's change sets (checked), by number.
    pub wallet: Vec<(u64, Vec<u8>)>,
}

impl Loaded {
    /// The HTLC records stored for `channel_id`: offered by the peer, HTLC id, record; in
    /// that order.
    pub fn htlcs_of(&self, channel_id: &ChannelId) -> &[(ChannelId, bool, u64, HtlcRecord)] {
        let start = self.htlcs.partition_point(|(id, ..)| id < channel_id);
        let len = self.htlcs[start..].partition_point(|(id, ..)| id == channel_id);
        &self.htlcs[start..start + len]
    }

    /// The stored channel (or opening) `channel_id`'s peer, if there is one.
    pub fn peer_of(&self, channel_id: &ChannelId) -> Option<secp256k1::PublicKey> {
        if let Ok(i) = self.channels.binary_search_by(|(id, _)| id.cmp(channel_id)) {
            return Some(self.channels[i].1.header.peer);
        }
        let i = self
            .openings
            .binary_search_by(|(id, _)| id.cmp(channel_id))
            .ok()?;
        Some(self.openings[i].1.header.peer)
    }
}

fn channel_key(table: Table, key: &[u8]) -> Result<ChannelId, RecordError> {
    let id: [u8; 32] = key
        .try_into()
        .map_err(|_| RecordError::new(table, key, "key is not a 32-byte channel id"))?;
    Ok(ChannelId(id))
}

/// Decodes every row (`table`, key, value), in any order, into what the shards need. Refuses,
/// naming the record: a schema version other than [`SCHEMA_VERSION`], an unknown `meta` key,
/// a record that does not decode, a malformed key, a channel stored both as opening and as
/// channel, an HTLC whose channel is not stored, a channel record of version 3 without its
/// static record (or one of an older version with one), a static record whose channel is
/// not stored (even if an opening of that id is: the static record is written with the
/// channel's first record, in the batch that deletes the opening).
pub fn load<'a>(
    rows: impl IntoIterator<Item = (Table, &'a [u8], &'a [u8])>,
) -> Result<Loaded, RecordError> {
    let mut loaded = Loaded::default();
    // Joined once every row is in: a channel's two records may come in any order.
    let mut channels: Vec<(ChannelId, &'a [u8])> = Vec::new();
    let mut statics: BTreeMap<ChannelId, &'a [u8]> = BTreeMap::new();
    for (table, key, value) in rows {
        let bad = |why: String| RecordError::new(table, key, why);
        match table {
            Table::Meta if key == SCHEMA_KEY => {
                let version = <[u8; 4]>::try_from(value)
                    .map(u32::from_be_bytes)
                    .map_err(|_| bad("schema version is not 4 bytes".into()))?;
                if version != SCHEMA_VERSION {
                    return Err(bad(format!(
                        "schema version {version}, this build reads {SCHEMA_VERSION}"
                    )));
                }
            }
            Table::Meta if key == JOURNAL_KEY => {
                if value.len() != 8 {
                    return Err(bad("journal epoch is not 8 bytes".into()));
                }
            }
            Table::Meta => return Err(bad("unknown meta key".into())),
            Table::Channels => channels.push((channel_key(table, key)?, value)),
            Table::ChannelStatics => {
                let id = channel_key(table, key)?;
                statics.insert(id, decode_channel_statics(value).map_err(bad)?);
            }
            Table::Openings => {
                let id = channel_key(table, key)?;
                loaded
                    .openings
                    .push((id, decode_opening(value).map_err(bad)?));
            }
            Table::Links => {
                let (id, htlc_id) = parse_link_key(key)
                    .ok_or_else(|| bad("key is not a channel id and an HTLC id".into()))?;
                loaded
                    .links
                    .push((id, htlc_id, decode_link(value).map_err(bad)?));
            }
            // History, not state: the shards need none of it, and a log of millions of rows
            // is read on demand (its records are checked as they are read), not at start-up.
            Table::Forwards | Table::ForwardsByTime | Table::Closed => {}
            Table::Wallet => {
                let seq = <[u8; 8]>::try_from(key)
                    .map(u64::from_be_bytes)
                    .map_err(|_| bad("key is not a change set number".into()))?;
                let changeset = crate::records::decode_wallet(value).map_err(bad)?;
                loaded.wallet.push((seq, changeset.to_vec()));
            }
            Table::Replays => {
                let (expiry, tag) = parse_replay_key(key)
                    .ok_or_else(|| bad("key is not an expiry height and a tag".into()))?;
                let (channel_id, htlc_id) = decode_replay(value).map_err(bad)?;
                loaded.replays.push((expiry, tag, channel_id, htlc_id));
            }
            Table::Htlcs => {
                let (id, offered_by_peer, htlc_id) = parse_htlc_key(key).ok_or_else(|| {
                    bad("key is not a channel id, an offerer and an HTLC id".into())
                })?;
                let record = decode_htlc(value).map_err(bad)?;
                loaded.htlcs.push((id, offered_by_peer, htlc_id, record));
            }
        }
    }
    for (id, value) in channels {
        let record = decode_channel(value, statics.remove(&id))
            .map_err(|why| RecordError::new(Table::Channels, &id.0, why))?;
        loaded.channels.push((id, record));
    }
    if let Some(id) = statics.keys().next() {
        return Err(RecordError::new(
            Table::ChannelStatics,
            &id.0,
            "a static record of a channel that is not stored",
        ));
    }
    loaded.channels.sort_by_key(|a| a.0);
    loaded.openings.sort_by_key(|a| a.0);
    loaded.links.sort_by_key(|a| (a.0, a.1));
    loaded.htlcs.sort_by_key(|a| (a.0, a.1, a.2));
    loaded.wallet.sort_by_key(|a| a.0);
    for (id, offered_by_peer, htlc_id, _) in &loaded.htlcs {
        if loaded
            .channels
            .binary_search_by(|(c, _)| c.cmp(id))
            .is_err()
        {
            return Err(RecordError::new(
                Table::Htlcs,
                &crate::records::htlc_key(id, *offered_by_peer, *htlc_id),
                "an HTLC of a channel that is not stored",
            ));
        }
    }
    for (id, _) in &loaded.openings {
        if loaded.channels.binary_search_by(|(c, _)| c.cmp(id)).is_ok() {
            return Err(RecordError::new(
                Table::Openings,
                &id.0,
                "the channel is stored both in establishment and open",
            ));
        }
    }
    Ok(loaded)
}

/// Tables in memory, applied and loaded exactly like the LMDB store's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemTables {
    rows: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
}

impl MemTables {
    /// Empty tables with the schema version written, as the store creates them.
    pub fn new() -> MemTables {
        let mut t = MemTables::default();
        t.rows.insert(
            (Table::Meta, SCHEMA_KEY.to_vec()),
            SCHEMA_VERSION.to_be_bytes().to_vec(),
        );
        t
    }

    /// Applies `batch` in order.
    pub fn apply(&mut self, batch: &Batch) {
        for (table, key, value) in batch.iter() {
            match value {
                Some(v) => {
                    self.rows.insert((table, key.to_vec()), v.to_vec());
                }
                None => {
                    self.rows.remove(&(table, key.to_vec()));
                }
            }
        }
    }

    /// Every row: table, key, value.
    pub fn rows(&self) -> impl Iterator<Item = (Table, &[u8], &[u8])> + '_ {
        self.rows
            .iter()
            .map(|((t, k), v)| (*t, k.as_slice(), v.as_slice()))
    }

    /// The value of `key` in `table`, mutable (tests corrupt records with it).
    pub fn get_mut(&mut self, table: Table, key: &[u8]) -> Option<&mut Vec<u8>> {
        self.rows.get_mut(&(table, key.to_vec()))
    }

    /// [`load`] over these rows.
    pub fn load(&self) -> Result<Loaded, RecordError> {
        load(self.rows())
    }
}
