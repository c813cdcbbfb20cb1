//! lnhub's durable records (DESIGN.md "persistence/schema"): which tables exist, how their keys
//! are laid out, how every record is encoded, versioned and checked, how a turn's writes travel
//! to the store as one owned [`Batch`], and how the rows read back at start-up become what the
//! shards need ([`Loaded`]).
//!
//! Pure: no files, no LMDB. The store (`lnhub-store`, LMDB) and the engine's in-memory store
//! both apply the same [`Batch`]es and read back through the same [`load`], so the simulator's
//! crash-restarts exercise the very encoding the daemon writes.
//!
//! # Tables and keys
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `b"schema"` | [`SCHEMA_VERSION`] as 4 bytes big-endian |
//! | `meta` | `b"journal"` | the store journal's epoch, 8 bytes big-endian ([`JOURNAL_KEY`]) |
//! | `channels` | `channel_id` (32 bytes) | [`ChannelRecord`]: peer, scid, policy, then the channel's progress record (`Channel::encode_progress`: what a commitment round changes); version 2 records (still read) carry the channel's whole lean record instead, and have no static record |
//! | `channel_statics` | `channel_id` (32 bytes) | the channel's static record (`Channel::encode_static`: id, funding, both sides' keys and parameters, limits, our secrets, alias, upfront shutdown terms), written once with the channel's first `channels` record, deleted when the channel is retired, joined with its `channels` record at load (added within layout version 2: see [`SCHEMA_VERSION`]) |
//! | `openings` | `channel_id` (32 bytes) | [`OpeningRecord`]: peer, alias, the height the funding was accepted at (the fundee's 2016-block wait counts from it; version 1 records lack it), then the establishment state record |
//! | `links` | outgoing `channel_id` (32) ‖ outgoing `htlc_id` (8, big-endian) | [`LinkRecord`]: the incoming HTLC a forward pays back to, amounts, resolution |
//! | `htlcs` | `channel_id` (32) ‖ offerer (1: `0` us, `1` the peer) ‖ `htlc_id` (8) | [`HtlcRecord`]: what never changes about the HTLC (amount, payment hash, expiry, the 1,366-byte onion), written once when the HTLC enters the channel's books, deleted when it leaves |
//! | `replays` | expiry height (4, big-endian) ‖ 128-bit replay tag (16) | the incoming HTLC (channel id, HTLC id) that first carried the onion: an onion seen (BOLT 4 replay protection), forgotten when its expiry passes |
//! | `forwards` | incoming `channel_id` (32) ‖ incoming `htlc_id` (8) | [`ForwardRecord`]: the forwarding log (amounts, fee, times, outcome, failure code) |
//! | `forwards_by_time` | resolution time (8, unix seconds) ‖ the `forwards` key | empty: the log in time order, for pruning by age |
//! | `wallet` | change set number (8, big-endian) | the on-chain wallet's change sets (`bdk_wallet`'s serialisation, in its own checked record: [`encode_wallet`]), merged in key order at start-up (added within layout version 2: older builds never open it) |
//! | `closed` | `channel_id` (32 bytes) | [`ClosedRecord`]: a channel retired once its closing transaction was deep enough (history, read on demand; added within layout version 2: older builds never open it) |
//!
//! A channel's record leaves out what never changes, so that it is written once, not with
//! every commitment round: its HTLCs' fixed terms (`htlcs`: most of a busy channel's bytes;
//! the record keeps about 20 bytes of progress per HTLC, which commitments hold its add and
//! its removal) and its own static part (`channel_statics`: about 600 bytes). [`load`] joins
//! a channel's record with its static record ([`ChannelRecord::statics`]) and refuses, naming
//! the key, a version 3 `channels` record without one, and a static record without its
//! channel (even beside an opening of that id: the static record is written in the batch that
//! deletes the opening, so it never outlives the channel's record).
//!
//! Keys are big-endian so that LMDB's byte order is the natural order (a channel's links are
//! adjacent, by HTLC id).
//!
//! # Record envelope
//!
//! `kind (1) ‖ version (1) ‖ body length (2) ‖ body ‖ check (8)`, where `check` is the first
//! 8 bytes of SHA-256 over everything before it. Channel, channel static and opening records
//! then carry the state machine's own record (`Channel::encode_progress`,
//! `Channel::encode_static`, `Establishing::encode`), which has its own version byte and a
//! full SHA-256 of its own: the envelope's check does not cover it again, so the largest part
//! of a write is hashed once. A record whose check fails, whose kind does not match
//! its table or whose version is unknown is refused with a [`RecordError`] that names the table
//! and key: start-up stops on it, never skips it.

#![deny(missing_docs)]

mod batch;
mod load;
mod records;

pub use batch::{Batch, Op, Table};
pub use load::{load, Loaded, MemTables};
pub use records::{
    decode_channel, decode_channel_statics, decode_closed, decode_forward, decode_htlc,
    decode_link, decode_opening, decode_replay, decode_wallet, encode_channel,
    encode_channel_statics, encode_closed, encode_forward, encode_htlc, encode_link,
    encode_opening, encode_replay, encode_wallet, forward_key, forward_time_key, htlc_key,
    link_key, parse_forward_time_key, parse_htlc_key, parse_link_key, parse_replay_key,
    put_forward, replay_key, wallet_key, ChannelHeader, ChannelRecord, ClosedRecord,
    ForwardOutcome, ForwardRecord, HtlcRecord, LinkRecord, OpeningHeader, OpeningRecord,
    RecordError, Upstream,
};

/// Version of the whole layout (tables, keys, envelopes), kept in `meta`. A store written by a
/// newer layout is refused at start-up rather than misread.
///
/// Version 2: the `onions` table became `htlcs` (an HTLC's fixed terms, not only its onion).
///
/// Tables added within version 2 (`wallet`, `closed`, `channel_statics`) are never opened by
/// an older build of it. `channel_statics` came with `channels` records of version 3 (the
/// progress record after the header, the static part apart), which such a build refuses by
/// their record version ("unknown channel record version 3"): it stops at start-up on a store
/// the newer build wrote rather than misreading it. The newer build reads version 2 records
/// (the whole channel after the header) and writes each channel in the new layout with its
/// next write.
pub const SCHEMA_VERSION: u32 = 2;

/// Key of the schema version in [`Table::Meta`].
pub const SCHEMA_KEY: &[u8] = b"schema";

/// Key of the store journal's epoch in [`Table::Meta`] (8 bytes big-endian): every journal
/// entry of an older epoch is in the tables (`lnhub-store`'s journal). A build from before
/// the journal refuses a store that has it ("unknown meta key"), so it never opens one whose
/// journal holds writes it would not see.
pub const JOURNAL_KEY: &[u8] = b"journal";

/// Why the store could not make a batch durable, or could not be read. Any of them stops the
/// process before anything the batch gated leaves (DESIGN "Rules that keep money safe").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database file reached its size limit and could not grow.
    MapFull {
        /// The map size in bytes when it filled.
        map_size: u64,
    },
    /// The disk or the database library failed.
    Io(String),
    /// A stored record is corrupt, of an unknown version, or inconsistent.
    Corrupt(RecordError),
    /// The store's writer is gone (it failed earlier, or the process is stopping).
    Stopped,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::MapFull { map_size } => write!(
                f,
                "store: database full at {map_size} bytes and could not grow (free disk space, \
                 then restart)"
            ),
            StoreError::Io(e) => write!(f, "store: {e}"),
            StoreError::Corrupt(e) => write!(f, "store: {e}"),
            StoreError::Stopped => write!(f, "store: writer stopped"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<RecordError> for StoreError {
    fn from(e: RecordError) -> Self {
        StoreError::Corrupt(e)
    }
}
