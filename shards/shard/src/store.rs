//! The durability boundary: everything a shard must have on disk before a committing message
//! (`revoke_and_ack`, `commitment_signed`, an upstream fulfill) may leave.
//!
//! A shard encodes a whole turn's records (`lnhub-schema`) into one [`Batch`] it reuses turn
//! after turn, on its own thread, and hands it to [`Store::submit`]: one transaction, however
//! many channels changed. A synchronous store answers at once ([`Submitted::Durable`]); the
//! daemon's store (`lnhub-store`) answers later ([`Submitted::InFlight`]): it sends the batch
//! to one writer thread shared by every shard, which commits everything submitted since its
//! last commit in one LMDB transaction and one fsync (group commit across shards), and hands
//! the batch back to the shard's driver, which hands it to [`crate::Shard::persisted`]. Meanwhile the shard keeps taking inputs,
//! verifying and signing; what it gated on the batch (`revoke_and_ack`, `commitment_signed`,
//! fulfills, released forward links) leaves only when the shard is told the batch is durable
//! ([`crate::Shard::persisted`]). A shard has at most one batch in flight: what changes
//! meanwhile goes into its next one, submitted as soon as the first is durable.
//!
//! [`MemoryStore`] keeps the tables in memory ([`MemTables`]) and is read back through the
//! same [`lnhub_schema::load`], so the deterministic simulator's crash-restarts go through the
//! real record encoding.

pub use lnhub_schema::StoreError;
use lnhub_schema::{
    encode_channel, encode_channel_statics, encode_htlc, encode_link, encode_opening, htlc_key,
    link_key, Batch, ChannelHeader, HtlcRecord, LinkRecord, MemTables, OpeningHeader, Table,
};
use lnhub_tx::Side;
use lnhub_wire::types::ChannelId;

use crate::open::Opening;
use crate::shard::{ForwardLink, Slot};

/// What a store did with a submitted batch.
#[derive(Debug)]
pub enum Submitted {
    /// Durable already (a synchronous store): the batch comes back for reuse.
    Durable(Batch),
    /// Being written: its [`Completion`] comes later (see [`Store::submit`]).
    InFlight,
}

/// A store's answer for one submitted batch: the batch back (for reuse), and whether it is
/// durable. An error is final: nothing the batch gated may leave, and the process stops.
pub type Completion = (Batch, Result<(), StoreError>);

/// Durable storage for shards: every write of a batch in one transaction.
pub trait Store {
    /// Hands `batch` to the store. An `Err` here, like one in a [`Completion`], is final.
    /// A store that answers later ([`Submitted::InFlight`]) gives its [`Completion`]s, in the
    /// order of submission, to whoever drives the shard, which passes each to
    /// [`crate::Shard::persisted`].
    fn submit(&mut self, batch: Batch) -> Result<Submitted, StoreError>;
}

/// Appends a channel's record: its state machine's progress (without its static part and its
/// HTLCs' fixed terms) and what the shard keeps beside it; the record of every HTLC that
/// entered the channel's books since its last record (amount, hash, expiry, onion: written
/// once), and the deletion of those that left. The first time (see [`Slot`]'s
/// `statics_on_disk`), also the channel's static record (id, funding, keys, limits, secrets:
/// written once) and the deletion of its opening record, if any.
pub fn write_channel(batch: &mut Batch, slot: &mut Slot) {
    let id = slot.channel.channel_id();
    let header = ChannelHeader {
        peer: slot.peer,
        scid: slot.scid,
        remote_alias: slot.remote_alias,
        policy: slot.policy,
    };
    let channel = &slot.channel;
    if !slot.statics_on_disk {
        batch.put_with(Table::ChannelStatics, &id.0, |out| {
            encode_channel_statics(out, |out| channel.encode_static(out))
        });
        batch.delete(Table::Openings, &id.0);
        slot.statics_on_disk = true;
    }
    batch.put_with(Table::Channels, &id.0, |out| {
        encode_channel(out, &header, |out| channel.encode_progress(out))
    });
    let book = channel.book();
    for h in book.htlcs() {
        let key = (h.offerer == Side::Remote, h.id);
        if slot.htlcs_on_disk.insert(key) {
            batch.put_with(Table::Htlcs, &htlc_key(&id, key.0, key.1), |out| {
                encode_htlc(
                    out,
                    h.amount_msat,
                    &h.payment_hash,
                    h.cltv_expiry,
                    (h.over_dust_exposure, h.added_after_shutdown),
                    &h.onion_routing_packet,
                )
            });
        }
    }
    // The set now holds every HTLC of the books: anything more has left them.
    if slot.htlcs_on_disk.len() > book.htlcs().len() {
        slot.htlcs_on_disk.retain(|&(by_peer, htlc_id)| {
            let offerer = if by_peer { Side::Remote } else { Side::Local };
            let kept = book.htlc(offerer, htlc_id).is_some();
            if !kept {
                batch.delete(Table::Htlcs, &htlc_key(&id, by_peer, htlc_id));
            }
            kept
        });
    }
}

/// The channel's view of a stored HTLC record: what `Channel::encode_lean` and
/// `Channel::encode_progress` leave out, given back to their decoders.
pub fn htlc_terms(h: &HtlcRecord) -> lnhub_channel::HtlcTerms {
    lnhub_channel::HtlcTerms {
        amount_msat: h.amount_msat,
        payment_hash: h.payment_hash,
        cltv_expiry: h.cltv_expiry,
        over_dust_exposure: h.over_dust_exposure,
        added_after_shutdown: h.added_after_shutdown,
        onion_routing_packet: *h.onion,
    }
}

/// Appends the record of a channel in establishment.
pub fn write_opening(batch: &mut Batch, channel_id: &ChannelId, opening: &Opening) {
    let header = OpeningHeader {
        peer: opening.peer,
        alias: opening.alias,
        funding_accepted_at: opening.funding_accepted_at,
        funding_tx: opening
            .funding_tx
            .as_ref()
            .map(bitcoin::consensus::serialize),
    };
    batch.put_with(Table::Openings, &channel_id.0, |out| {
        encode_opening(out, &header, |out| opening.est.encode(out))
    });
}

/// Appends a forward link's record (its incoming HTLC without the shard, which is worked out
/// again at load).
pub fn write_link(batch: &mut Batch, link: &ForwardLink) {
    let record = LinkRecord {
        in_channel_id: link.origin.channel_id,
        in_htlc_id: link.origin.htlc_id,
        in_amount_msat: link.in_amount_msat,
        out_amount_msat: link.out_amount_msat,
        added_at: link.added_at,
        resolution: link.resolution.clone(),
    };
    batch.put_with(
        Table::Links,
        &link_key(&link.out_channel_id, link.out_htlc_id),
        |out| encode_link(out, &record),
    );
}

/// Appends the deletion of a forward link whose incoming side is resolved durably.
pub fn delete_link(batch: &mut Batch, out_channel_id: &ChannelId, out_htlc_id: u64) {
    batch.delete(Table::Links, &link_key(out_channel_id, out_htlc_id));
}

/// In-memory [`Store`] for tests and the simulator: the "disk" is [`MemTables`], written with
/// the same batches and read back with the same loader as the LMDB store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    /// The tables as of the last commit.
    pub tables: MemTables,
    /// Number of commits (group-commit batches) so far.
    pub commits: u64,
    /// Number of records written so far.
    pub records: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            tables: MemTables::new(),
            commits: 0,
            records: 0,
        }
    }
}

impl MemoryStore {
    /// Applies `batch` to the tables (one commit).
    pub fn apply(&mut self, batch: &Batch) {
        self.tables.apply(batch);
        self.commits += 1;
        self.records += batch.len() as u64;
    }
}

impl Store for MemoryStore {
    fn submit(&mut self, batch: Batch) -> Result<Submitted, StoreError> {
        self.apply(&batch);
        Ok(Submitted::Durable(batch))
    }
}
