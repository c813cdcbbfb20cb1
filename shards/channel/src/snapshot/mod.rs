//! The channel's durable record: a versioned binary encoding of a
//! [`Channel`] ([`Channel::encode`], [`Channel::decode`]) and the restart
//! transition ([`Channel::handle_restart`]). DESIGN "Rules that keep money
//! safe": a restarted node resumes every channel with
//! `channel_reestablish` (BOLT 2 "Message Retransmission") from exactly
//! what it wrote.
//!
//! # What goes in
//!
//! Everything the state machine holds between calls: parameters, limits,
//! policy and secrets, the books (every HTLC with its onion, or, in a lean
//! record, only its progress, its fixed terms kept apart: [`HtlcTerms`];
//! every pending fee update), commitment numbers and points, the peer's revealed
//! secrets, our last `commitment_signed` (retransmitted verbatim), the
//! peer's signatures on our commitment, the send sequence numbers that
//! order retransmissions, the `shutdown` terms and exchange, the closing negotiation (`closing_signed` or `option_simple_close`), and
//! the outbox with its held effects. The reused scratch allocations
//! (including the spare commitment) are not state and are not written.
//!
//! # Records
//!
//! - the **whole** record ([`Channel::encode`]): everything, HTLC terms
//!   included;
//! - the **lean** record ([`Channel::encode_lean`]): the same without the
//!   HTLCs' fixed terms, which the caller keeps under each HTLC's own key
//!   ([`HtlcTerms`]) and gives back to [`Channel::decode_lean`];
//! - the **static** record ([`Channel::encode_static`]) and the
//!   **progress** record ([`Channel::encode_progress`]): the lean record
//!   cut in two. The static record holds what never changes once the
//!   channel is operational (id, funding and both sides' keys and
//!   parameters, limits, our secrets, our alias, the upfront shutdown
//!   terms: about 600 bytes), written once; the progress record everything
//!   else, written every commitment round. [`Channel::decode_parts`] takes
//!   both.
//!
//! # Format
//!
//! `version (1 byte) || body || SHA256(version || body)`. The first byte
//! also tells the kinds apart: channel records (whole, lean, progress) use
//! versions below `0x40` ([`STATE_VERSION`]), static records `0x41` and up
//! ([`STATIC_STATE_VERSION`]), openings `0x81` and up
//! ([`crate::ESTABLISH_STATE_VERSION`]); each decoder refuses the others'
//! records with [`DecodeError::UnknownVersion`]. From version 7 a channel
//! record's body starts with a tag: whether its static fields are inline
//! (whole and lean records; they sit where version 6 put them) or in a
//! static record (progress records, which then name it by the first 8
//! bytes of the channel id). Integers are
//! big-endian and fixed-width, lists carry a `u32` count, options a `0`/`1`
//! tag, messages are length-prefixed BOLT encodings (`lnhub_wire`), keys and
//! signatures their compressed / compact forms. The checksum catches a
//! corrupted record before it is trusted (STYLE rule 6: check a record just
//! after it is read); the body is then parsed without ever panicking and
//! checked against the invariants the state machine asserts (value
//! conserved in every view, ids below the next ids, fee updates
//! normalised, gates within the persist sequence, one revealed secret per
//! revoked commitment, the secret store re-validated). Those checks cover
//! the shape a restart and reconnection rely on (tested on corrupted
//! records that carry a valid checksum); they cannot tell a well-formed
//! record of another state from the right one.
//!
//! The writer, reader, field encodings and checksum framing here are
//! shared with the record of a channel being opened
//! ([`crate::establish_snapshot`]).
//!
//! # Restart contract
//!
//! The caller writes the bytes of [`Channel::encode`] (or the lean or
//! progress record, with what they leave out written before or with it)
//! when asked by [`crate::Effect::Persist`] (see [`crate::channel`]): the
//! state as it is when the `Persist` is polled, or a later state written
//! together with the caller's own records of the effects it polled in
//! between (the engine's group commit puts both in one transaction). In
//! general the caller's record of a `Forward` or `Resolved` it acted on
//! must be durable no later than the next write of this channel completes.
//! After a crash it decodes the last durable record and calls
//! [`Channel::handle_restart`] before anything else. Then:
//! - the connection is down: call [`Channel::handle_reconnect`] when the
//!   peer is back; the peer's unsigned updates are reversed and our own
//!   are retransmitted by reestablish, as after any disconnection;
//! - every effect the record held is released (the record is durable, so
//!   every persist it waited for is done), except messages, which the
//!   reestablish exchange regenerates;
//! - a [`crate::Effect::Forward`] is emitted again for every HTLC the peer
//!   offered that is irrevocably committed and not yet removed by us, and
//!   a `Resolved { Fulfilled }` for every HTLC we offered whose fulfill is
//!   in the books: the caller may have seen them before the crash and
//!   must treat both as idempotent (keyed by channel and `htlc_id`);
//! - an HTLC we added after the record was written is not in the books:
//!   it was never committed (our `commitment_signed` waits for a persist),
//!   so the caller adds it again or fails it upstream;
//! - a `Resolved` for a failed HTLC leaves the books with the removal, so
//!   it is not derived again: it is in the record's outbox if the record
//!   predates it being polled, and in the caller's own records otherwise
//!   (the rule above). Likewise a fulfill the peer sent, reported, then
//!   reversed by a disconnection is not reported a second time.

mod closing_codec;
mod codec;
mod parts;
mod statics;

pub(crate) use closing_codec::*;
pub(crate) use codec::*;
pub(crate) use parts::*;
pub(crate) use statics::*;

use std::collections::VecDeque;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, OutPoint, ScriptBuf};
use lnhub_tx::keys::ChannelPublicKeys;
use lnhub_tx::{ChannelParams, ChannelType, SecretStore, Side, SideParams};
use lnhub_wire::msgs::{CommitmentSigned, ONION_PACKET_LEN};
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, PaymentPreimage, Sat, ShortChannelId};
use lnhub_wire::Message;
use secp256k1::ecdsa::Signature;
use secp256k1::{PublicKey, SecretKey};

use crate::book::{Book, FeeUpdate};
use crate::channel::{Channel, Link, EVENTS_CAPACITY};
use crate::close::{ShutdownState, ShutdownTerms};
use crate::closing::{ClosingState, Proposal, Received, Variant};
use crate::config::{ChannelPolicy, ChannelSecrets, SideLimits};
use crate::effects::{Effect, Outbox};
use crate::htlc::{applies, Htlc, Removal, RemovalKind, UpdateState, View};
use crate::simple_close::{CloseTerms, PendingSig, SentComplete, SigField, SimpleState};

/// The encoding version written first in a channel record (whole, lean
/// or progress). Bump it on any change to the format (staying below
/// `0x40`); [`Channel::decode`] refuses versions it does not know.
/// Version 2 added the `shutdown` terms and exchange ([`crate::close`]).
/// Version 3 added the `closing_signed` negotiation ([`crate::closing`]).
/// Version 4 added the variant of the peer's `closing_signed` and
/// `option_simple_close` ([`crate::simple_close`]).
/// Version 5 let an HTLC's onion live outside the record.
/// Version 6 lets all of an HTLC's fixed terms live outside it
/// ([`Channel::encode_lean`], [`HtlcTerms`]); still read.
/// Version 7 lets the static fields live outside it, in a static record
/// ([`Channel::encode_static`], [`Channel::encode_progress`]): a tag after
/// the version says whether they are inline, where version 6 had them.
pub const STATE_VERSION: u8 = 7;

/// The last version without the static tag: everything inline.
const V6: u8 = 6;

/// How much of the channel id a progress record carries to name its static
/// record: 64 bits tell any two channels of a node apart (ids are hashes);
/// this guards against records paired wrongly, not against an attacker.
const CHANNEL_TAG_LEN: usize = 8;

/// The first byte of a channel's static record ([`Channel::encode_static`]):
/// its format version, `0x40` set to tell it from a channel record's
/// ([`STATE_VERSION`]) and an opening's ([`crate::ESTABLISH_STATE_VERSION`]).
/// Bump it on any change to the static record's format (keeping `0x40`
/// and clear of `0x80`).
/// Version `0x41`: id, funding and both sides' parameters, both sides'
/// limits, our secrets, our alias, the upfront shutdown terms.
pub const STATIC_STATE_VERSION: u8 = 0x41;

/// What never changes about an HTLC once it is in the books: a store
/// keeps it under the HTLC's own key, written once when the HTLC enters
/// [`crate::book::Book::htlcs`] and deleted when it leaves, while the
/// channel's record ([`Channel::encode_lean`]) keeps only the HTLC's
/// progress (about 20 bytes instead of 1,430).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtlcTerms {
    /// `amount_msat`.
    pub amount_msat: Msat,
    /// `payment_hash`.
    pub payment_hash: PaymentHash,
    /// `cltv_expiry`.
    pub cltv_expiry: u32,
    /// See [`Htlc::over_dust_exposure`].
    pub over_dust_exposure: bool,
    /// See [`Htlc::added_after_shutdown`].
    pub added_after_shutdown: bool,
    /// `onion_routing_packet`.
    pub onion_routing_packet: [u8; ONION_PACKET_LEN],
}

/// Looks up the terms of an HTLC kept outside the record: offerer and id
/// in ([`Channel::decode_lean`]).
pub type HtlcLookup<'a> = dyn FnMut(Side, u64) -> Option<HtlcTerms> + 'a;

/// Length of the trailing checksum (a full SHA256: the record is written
/// once per commitment round, so its cost is noise next to the fsync).
const CHECKSUM_LEN: usize = 32;

/// Most HTLCs a record may hold: both sides at the BOLT 2 maximum of 483.
const MAX_HTLCS: u32 = 2 * 483;

/// Most effects a record's outbox may hold. The queue is drained after
/// every call, so it holds at most what a few transitions emit while a
/// persist is outstanding; this only bounds what a corrupted count can
/// make the decoder allocate.
const MAX_EFFECTS: u32 = 4 * MAX_HTLCS + 64;

/// Largest length-prefixed blob (a message, a failure reason): BOLT 1
/// messages are at most 65535 bytes.
const MAX_BLOB: u32 = 65_535;

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The record ends before its fields do.
    ShortRead,
    /// The first byte is not a version this build can read.
    UnknownVersion(u8),
    /// The checksum does not match: the record was corrupted.
    BadChecksum,
    /// Bytes follow the last field.
    TrailingBytes,
    /// A field holds a value it can never hold (named).
    Invalid(&'static str),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::ShortRead => f.write_str("channel record ends early"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown channel record version {v}"),
            DecodeError::BadChecksum => f.write_str("channel record checksum mismatch"),
            DecodeError::TrailingBytes => f.write_str("bytes after the channel record"),
            DecodeError::Invalid(what) => write!(f, "invalid channel record: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Channel {
    /// Appends the channel's record to `out` (the caller reuses it):
    /// everything a restarted node needs, see the module docs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(out, false, true);
    }

    /// [`Channel::encode`] without the HTLCs' fixed terms ([`HtlcTerms`]:
    /// the onion's 1,366 bytes, amount, hash, expiry), most of a busy
    /// channel's record: the caller keeps each HTLC's terms under its own
    /// key from the time the HTLC enters [`crate::book::Book::htlcs`] until
    /// it leaves, and gives them back to [`Channel::decode_lean`].
    pub fn encode_lean(&self, out: &mut Vec<u8>) {
        self.encode_with(out, true, true);
    }

    /// Appends the channel's static record to `out`: what never changes
    /// once the channel is operational (see the module docs), with its own
    /// version ([`STATIC_STATE_VERSION`]) and checksum. The caller writes it
    /// once, before or with the first [`Channel::encode_progress`] record,
    /// and keeps it as long as the channel.
    pub fn encode_static(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut w = W(out);
        w.u8(STATIC_STATE_VERSION);
        write_statics(&mut w, self);
        seal(out, start);
    }

    /// [`Channel::encode_lean`] without the static fields
    /// ([`Channel::encode_static`]): what a commitment round changes, and a
    /// few fields that change rarely (the policy, the books' funding
    /// totals). [`Channel::decode_parts`] reads it with its static record.
    pub fn encode_progress(&self, out: &mut Vec<u8>) {
        self.encode_with(out, true, false);
    }

    /// `lean`: HTLC terms left out; `inline`: the static fields in.
    fn encode_with(&self, out: &mut Vec<u8>, lean: bool, inline: bool) {
        let start = out.len();
        let mut w = W(out);
        w.u8(STATE_VERSION);
        w.bool(inline);
        if inline {
            w.bytes(&self.channel_id.0);
            write_params(&mut w, &self.params);
            write_limits(&mut w, &self.local_limits);
            write_limits(&mut w, &self.remote_limits);
        } else {
            // Names the static record it goes with: enough of the channel id to tell channels
            // apart (they are hashes), so one paired with another's is refused.
            w.bytes(&self.channel_id.0[..CHANNEL_TAG_LEN]);
        }
        write_policy(&mut w, &self.policy);
        if inline {
            write_secrets(&mut w, &self.secrets);
        }
        write_book(&mut w, &self.book, lean);
        w.bool(self.failed);
        w.u8(match self.link {
            Link::Up => 0,
            Link::Down => 1,
            Link::Reestablishing => 2,
        });
        w.u64(self.next_send_seq);
        w.u64(self.last_revoke_seq);
        w.u64(self.last_commitment_seq);
        w.bool(self.last_commitment_signed.is_some());
        if let Some(m) = &self.last_commitment_signed {
            w.message(&Message::CommitmentSigned(m.clone()));
        }
        if inline {
            write_alias(&mut w, self.local_alias);
        }
        w.bool(self.remote_prev_point.is_some());
        if let Some(p) = &self.remote_prev_point {
            w.point(p);
        }
        w.point(&self.remote_current_point);
        w.bool(self.remote_next_point.is_some());
        if let Some(p) = &self.remote_next_point {
            w.point(p);
        }
        w.bool(self.remote_secrets.next_index().is_some());
        if let Some(n) = self.remote_secrets.next_index() {
            w.u64(n);
        }
        let entries: Vec<_> = self.remote_secrets.entries().collect();
        w.count(entries.len());
        for (index, secret) in entries {
            w.u64(index);
            w.bytes(&secret);
        }
        w.bool(self.holder_signatures.is_some());
        if let Some((sig, htlc_sigs)) = &self.holder_signatures {
            w.sig(sig);
            w.count(htlc_sigs.len());
            for s in htlc_sigs {
                w.sig(s);
            }
        }
        if inline {
            write_shutdown_terms(&mut w, &self.shutdown_terms);
        }
        write_shutdown(&mut w, &self.shutdown);
        write_closing(&mut w, &self.closing);
        w.u64(self.version);
        write_outbox(&mut w, &self.outbox);
        seal(out, start);
    }

    /// Reads a record written by [`Channel::encode`]: the exact channel
    /// that was encoded, or why the bytes are not one. Never panics, on
    /// any input. A restarted node then calls [`Channel::handle_restart`].
    pub fn decode(bytes: &[u8]) -> Result<Channel, DecodeError> {
        Channel::decode_lean(bytes, &mut |_, _| None)
    }

    /// Reads a whole or lean record (of this version or version 6);
    /// `lookup` gives back the terms [`Channel::encode_lean`] left out (an
    /// HTLC whose terms it does not have makes the record invalid). A
    /// progress record is refused: it needs [`Channel::decode_parts`].
    pub fn decode_lean(bytes: &[u8], lookup: &mut HtlcLookup<'_>) -> Result<Channel, DecodeError> {
        if bytes.first() == Some(&V6) {
            return unseal(bytes, V6, |r| read_channel(r, None, lookup));
        }
        unseal(bytes, STATE_VERSION, |r| {
            if !r.bool()? {
                return Err(DecodeError::Invalid(
                    "a progress record without its static record",
                ));
            }
            read_channel(r, None, lookup)
        })
    }

    /// Reads a channel kept in two records: its static record
    /// ([`Channel::encode_static`]) and a progress record
    /// ([`Channel::encode_progress`]), each checked; `lookup` as for
    /// [`Channel::decode_lean`]. A static record of another channel is
    /// refused: the progress record names its channel, and its books must
    /// match the static record's funding.
    pub fn decode_parts(
        statics: &[u8],
        progress: &[u8],
        lookup: &mut HtlcLookup<'_>,
    ) -> Result<Channel, DecodeError> {
        let statics = unseal(statics, STATIC_STATE_VERSION, read_statics)?;
        unseal(progress, STATE_VERSION, |r| {
            if r.bool()? {
                return Err(DecodeError::Invalid(
                    "a record with its static fields inline given a static record",
                ));
            }
            if r.take(CHANNEL_TAG_LEN)? != &statics.channel_id.0[..CHANNEL_TAG_LEN] {
                return Err(DecodeError::Invalid(
                    "the static record is another channel's",
                ));
            }
            read_channel(r, Some(&statics), lookup)
        })
    }

    /// The fixed terms of the HTLC `offerer` offered as `id`, if it is in
    /// the books: what lean and progress records leave out, for the caller
    /// to keep under the HTLC's own key.
    pub fn htlc_terms(&self, offerer: Side, id: u64) -> Option<HtlcTerms> {
        self.book.htlc(offerer, id).map(|h| HtlcTerms {
            amount_msat: h.amount_msat,
            payment_hash: h.payment_hash,
            cltv_expiry: h.cltv_expiry,
            over_dust_exposure: h.over_dust_exposure,
            added_after_shutdown: h.added_after_shutdown,
            onion_routing_packet: h.onion_routing_packet,
        })
    }

    /// The node restarted from a record just decoded: see the module docs
    /// for what is released and re-emitted. Call before any other input.
    pub fn handle_restart(&mut self) {
        // The record is durable, so every write it waited for is done.
        self.outbox.release_after_restart();
        // Messages are regenerated by reestablish; the link is down.
        if self.link == Link::Down {
            self.outbox.drop_sends();
        } else {
            self.handle_disconnect();
        }
        // Effects the caller may not have acted on, derived from the books.
        // Those still queued from the record are not repeated.
        let queued_forward = |o: &Outbox, id: u64| {
            o.queue
                .iter()
                .any(|(_, e)| matches!(e, Effect::Forward { htlc_id, .. } if *htlc_id == id))
        };
        let queued_resolved = |o: &Outbox, id: u64| {
            o.queue
                .iter()
                .any(|(_, e)| matches!(e, Effect::Resolved { htlc_id, .. } if *htlc_id == id))
        };
        let mut again = Vec::new();
        for h in self.book.htlcs() {
            match (h.offerer, &h.removal) {
                (Side::Remote, None)
                    if h.add_state == UpdateState::Irrevocable
                        && !queued_forward(&self.outbox, h.id) =>
                {
                    again.push(Effect::Forward {
                        htlc_id: h.id,
                        amount_msat: h.amount_msat,
                        payment_hash: h.payment_hash,
                        cltv_expiry: h.cltv_expiry,
                        over_dust_exposure: h.over_dust_exposure,
                        added_after_shutdown: h.added_after_shutdown,
                    });
                }
                (Side::Local, Some(rm))
                    if h.resolution_reported && !queued_resolved(&self.outbox, h.id) =>
                {
                    if let RemovalKind::Fulfill(p) = &rm.kind {
                        again.push(Effect::Resolved {
                            htlc_id: h.id,
                            resolution: RemovalKind::Fulfill(*p),
                        });
                    }
                }
                _ => {}
            }
        }
        for e in again {
            self.emit(e);
        }
        self.version += 1;
    }
}

/// Reads a record's body (after its version and static tag): the static
/// fields from it where version 6 put them (`given` is `None`) or from
/// `given`.
fn read_channel(
    r: &mut R<'_>,
    given: Option<&Statics>,
    lookup: &mut HtlcLookup<'_>,
) -> Result<Channel, DecodeError> {
    let channel_id = fixed(r, given, |s| s.channel_id, |r| Ok(ChannelId(r.arr()?)))?;
    let params = fixed(r, given, |s| s.params.clone(), read_params)?;
    let local_limits = fixed(r, given, |s| s.local_limits, read_limits)?;
    let remote_limits = fixed(r, given, |s| s.remote_limits, read_limits)?;
    let policy = read_policy(r)?;
    let secrets = fixed(r, given, |s| s.secrets.clone(), read_secrets)?;
    let book = read_book(r, lookup)?;
    if book.funder != params.funder()
        || Some(book.capacity_msat) != params.funding_amount().to_sat().checked_mul(1000)
    {
        return Err(DecodeError::Invalid("books do not match the funding"));
    }
    let failed = r.bool()?;
    let link = match r.u8()? {
        0 => Link::Up,
        1 => Link::Down,
        2 => Link::Reestablishing,
        _ => return Err(DecodeError::Invalid("link")),
    };
    let next_send_seq = r.u64()?;
    let last_revoke_seq = r.u64()?;
    let last_commitment_seq = r.u64()?;
    let last_commitment_signed = r.option(|r| match r.message()? {
        Message::CommitmentSigned(m) => Ok::<CommitmentSigned, DecodeError>(m),
        _ => Err(DecodeError::Invalid("last commitment_signed")),
    })?;
    let local_alias = fixed(r, given, |s| s.local_alias, read_alias)?;
    let remote_prev_point = r.option(R::point)?;
    let remote_current_point = r.point()?;
    let remote_next_point = r.option(R::point)?;
    let next_index = r.option(R::u64)?;
    let n = r.count(49, "secret count")?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push((r.u64()?, r.arr::<32>()?));
    }
    let remote_secrets = SecretStore::from_entries(next_index, entries)
        .map_err(|_| DecodeError::Invalid("revealed secrets"))?;
    let holder_signatures = r.option(|r| {
        let sig = r.sig()?;
        let n = r.count(MAX_HTLCS, "HTLC signature count")?;
        let mut sigs = Vec::with_capacity(n);
        for _ in 0..n {
            sigs.push(r.sig()?);
        }
        Ok((sig, sigs))
    })?;
    let shutdown_terms = fixed(r, given, |s| s.shutdown_terms.clone(), read_shutdown_terms)?;
    let shutdown = read_shutdown(r)?;
    let closing = read_closing(r)?;
    let version = r.u64()?;
    let outbox = read_outbox(r)?;
    if next_send_seq == 0
        || next_send_seq == u64::MAX
        || last_revoke_seq >= next_send_seq
        || last_commitment_seq >= next_send_seq
        || version == u64::MAX
        || shutdown
            .local
            .as_ref()
            .is_some_and(|(_, seq)| *seq == 0 || *seq >= next_send_seq)
    {
        return Err(DecodeError::Invalid("sequence numbers"));
    }
    // While the peer's revoke_and_ack is outstanding we hold the point of
    // the commitment it will revoke and the signature to retransmit; the
    // store holds exactly one secret per revoked commitment.
    let awaiting = remote_next_point.is_none();
    if awaiting != remote_prev_point.is_some() || (awaiting && last_commitment_signed.is_none()) {
        return Err(DecodeError::Invalid("outstanding revocation"));
    }
    let revoked = book
        .remote_commitment_number
        .checked_sub(u64::from(awaiting))
        .ok_or(DecodeError::Invalid(
            "awaiting a revocation at commitment 0",
        ))?;
    if remote_secrets.next_index() != Some(lnhub_tx::shachain::MAX_INDEX - revoked) {
        return Err(DecodeError::Invalid(
            "revealed secrets do not match revocations",
        ));
    }
    Ok(Channel {
        channel_id,
        params,
        local_limits,
        remote_limits,
        policy,
        secrets,
        book,
        failed,
        link,
        next_send_seq,
        last_revoke_seq,
        last_commitment_seq,
        last_commitment_signed,
        local_alias,
        remote_prev_point,
        remote_current_point,
        remote_next_point,
        remote_secrets,
        holder_signatures,
        shutdown_terms,
        shutdown,
        closing,
        version,
        outbox,
        events: Vec::with_capacity(EVENTS_CAPACITY),
        scratch: Vec::new(),
        spare: None,
        next_local_point: None,
    })
}
