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
//! # Format
//!
//! `version (1 byte) || body || SHA256(version || body)`. Integers are
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
//! ([`crate::establish_snapshot`]), whose first byte
//! ([`crate::ESTABLISH_STATE_VERSION`], high bit set) keeps the two kinds
//! of record apart: each decoder refuses the other's with
//! [`DecodeError::UnknownVersion`].
//!
//! # Restart contract
//!
//! The caller writes the bytes of [`Channel::encode`] when asked by
//! [`crate::Effect::Persist`] (see [`crate::channel`]): the state as it is
//! when the `Persist` is polled, or a later state written together with
//! the caller's own records of the effects it polled in between (the
//! engine's group commit puts both in one transaction). In general the
//! caller's record of a `Forward` or `Resolved` it acted on must be
//! durable no later than the next write of this channel completes. After
//! a crash it decodes the last durable record and calls
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
use crate::effects::{Effect, Outbox, Resolution};
use crate::htlc::{applies, Htlc, Removal, RemovalKind, UpdateState, View};
use crate::simple_close::{CloseTerms, PendingSig, SentComplete, SigField, SimpleState};

/// The encoding version written first. Bump it on any change to the
/// format; [`Channel::decode`] refuses versions it does not know.
/// Version 2 added the `shutdown` terms and exchange ([`crate::close`]).
/// Version 3 added the `closing_signed` negotiation ([`crate::closing`]).
/// Version 4 added the variant of the peer's `closing_signed` and
/// `option_simple_close` ([`crate::simple_close`]).
/// Version 5 let an HTLC's onion live outside the record.
/// Version 6 lets all of an HTLC's fixed terms live outside it
/// ([`Channel::encode_lean`], [`HtlcTerms`]).
pub const STATE_VERSION: u8 = 6;

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

/// Ends a record begun at `out[start]` (its version byte): appends the
/// SHA256 of everything from `start`.
pub(crate) fn seal(out: &mut Vec<u8>, start: usize) {
    let checksum = sha256::Hash::hash(&out[start..]).to_byte_array();
    out.extend_from_slice(&checksum);
}

/// Checks a record's version byte (`version`: the kind of record the
/// caller expects) and checksum, then reads its body with `body`, which
/// must consume it exactly. Never panics.
pub(crate) fn unseal<T>(
    bytes: &[u8],
    version: u8,
    body: impl FnOnce(&mut R<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let (&first, _) = bytes.split_first().ok_or(DecodeError::ShortRead)?;
    if first != version {
        return Err(DecodeError::UnknownVersion(first));
    }
    if bytes.len() < 1 + CHECKSUM_LEN {
        return Err(DecodeError::ShortRead);
    }
    let (record, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if sha256::Hash::hash(record).to_byte_array() != checksum {
        return Err(DecodeError::BadChecksum);
    }
    let mut r = R(&record[1..]);
    let value = body(&mut r)?;
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(value)
}

/// Appends fixed-width fields to a caller-owned buffer.
pub(crate) struct W<'a>(pub(crate) &'a mut Vec<u8>);

impl W<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(crate) fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("record lists are bounded far below 2^32"));
    }
    pub(crate) fn blob(&mut self, v: &[u8]) {
        self.count(v.len());
        self.bytes(v);
    }
    pub(crate) fn point(&mut self, p: &PublicKey) {
        self.bytes(&p.serialize());
    }
    pub(crate) fn sig(&mut self, s: &Signature) {
        self.bytes(&s.serialize_compact());
    }
    pub(crate) fn side(&mut self, s: Side) {
        self.u8(match s {
            Side::Local => 0,
            Side::Remote => 1,
        });
    }
    pub(crate) fn state(&mut self, s: UpdateState) {
        self.u8(s as u8);
    }
    pub(crate) fn message(&mut self, m: &Message) {
        let at = self.0.len();
        self.u32(0);
        m.encode(self.0);
        let len = u32::try_from(self.0.len() - at - 4).expect("a message is below 2^32 bytes");
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Reads fixed-width fields from a slice; every read is bounds-checked.
pub(crate) struct R<'a>(pub(crate) &'a [u8]);

impl<'a> R<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::ShortRead);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("boolean")),
        }
    }
    pub(crate) fn count(&mut self, max: u32, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32()?;
        if n > max {
            return Err(DecodeError::Invalid(what));
        }
        Ok(n as usize)
    }
    pub(crate) fn blob(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(MAX_BLOB, what)?;
        self.take(n)
    }
    pub(crate) fn point(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_slice(&self.arr::<33>()?).map_err(|_| DecodeError::Invalid("public key"))
    }
    pub(crate) fn secret(&mut self) -> Result<SecretKey, DecodeError> {
        SecretKey::from_slice(&self.arr::<32>()?).map_err(|_| DecodeError::Invalid("secret key"))
    }
    pub(crate) fn sig(&mut self) -> Result<Signature, DecodeError> {
        Signature::from_compact(&self.arr::<64>()?).map_err(|_| DecodeError::Invalid("signature"))
    }
    pub(crate) fn side(&mut self) -> Result<Side, DecodeError> {
        match self.u8()? {
            0 => Ok(Side::Local),
            1 => Ok(Side::Remote),
            _ => Err(DecodeError::Invalid("side")),
        }
    }
    pub(crate) fn state(&mut self) -> Result<UpdateState, DecodeError> {
        use UpdateState::*;
        [
            Announced,
            ReceiverSigned,
            ReceiverRevoked,
            ProposerSigned,
            Irrevocable,
        ]
        .get(usize::from(self.u8()?))
        .copied()
        .ok_or(DecodeError::Invalid("update state"))
    }
    pub(crate) fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
    pub(crate) fn message(&mut self) -> Result<Message, DecodeError> {
        let bytes = self.blob("message length")?;
        Message::decode(bytes).map_err(|_| DecodeError::Invalid("message"))
    }
}

pub(crate) fn write_pubkeys(w: &mut W<'_>, k: &ChannelPublicKeys) {
    for point in [
        &k.funding_pubkey,
        &k.revocation_basepoint,
        &k.payment_basepoint,
        &k.delayed_payment_basepoint,
        &k.htlc_basepoint,
    ] {
        w.point(point);
    }
}

pub(crate) fn read_pubkeys(r: &mut R<'_>) -> Result<ChannelPublicKeys, DecodeError> {
    Ok(ChannelPublicKeys {
        funding_pubkey: r.point()?,
        revocation_basepoint: r.point()?,
        payment_basepoint: r.point()?,
        delayed_payment_basepoint: r.point()?,
        htlc_basepoint: r.point()?,
    })
}

pub(crate) fn write_side_params(w: &mut W<'_>, p: &SideParams) {
    write_pubkeys(w, &p.pubkeys);
    w.u16(p.to_self_delay);
    w.u64(p.dust_limit.to_sat());
}

pub(crate) fn read_side_params(r: &mut R<'_>) -> Result<SideParams, DecodeError> {
    let pubkeys = read_pubkeys(r)?;
    Ok(SideParams {
        pubkeys,
        to_self_delay: r.u16()?,
        dust_limit: Amount::from_sat(r.u64()?),
    })
}

pub(crate) fn write_params(w: &mut W<'_>, p: &ChannelParams) {
    let o = p.funding_outpoint();
    w.bytes(&o.txid.to_byte_array());
    w.u32(o.vout);
    w.u64(p.funding_amount().to_sat());
    w.side(p.funder());
    write_channel_type(w, p.channel_type());
    write_side_params(w, p.side(Side::Local));
    write_side_params(w, p.side(Side::Remote));
}

pub(crate) fn read_params(r: &mut R<'_>) -> Result<ChannelParams, DecodeError> {
    let txid = bitcoin::Txid::from_byte_array(r.arr()?);
    let vout = r.u32()?;
    let funding_amount = Amount::from_sat(r.u64()?);
    let funder = r.side()?;
    let channel_type = read_channel_type(r)?;
    let local = read_side_params(r)?;
    let remote = read_side_params(r)?;
    ChannelParams::new(
        OutPoint { txid, vout },
        funding_amount,
        funder,
        channel_type,
        local,
        remote,
    )
    .map_err(|_| DecodeError::Invalid("channel parameters"))
}

pub(crate) fn write_channel_type(w: &mut W<'_>, t: ChannelType) {
    w.u8(match t {
        ChannelType::StaticRemoteKey => 0,
        ChannelType::Anchors => 1,
    });
}

pub(crate) fn read_channel_type(r: &mut R<'_>) -> Result<ChannelType, DecodeError> {
    match r.u8()? {
        0 => Ok(ChannelType::StaticRemoteKey),
        1 => Ok(ChannelType::Anchors),
        _ => Err(DecodeError::Invalid("channel type")),
    }
}

pub(crate) fn write_policy(w: &mut W<'_>, p: &ChannelPolicy) {
    w.u64(p.max_dust_htlc_exposure_msat.0);
    w.u32(p.min_feerate_per_kw);
    w.u32(p.max_feerate_per_kw);
}

pub(crate) fn read_policy(r: &mut R<'_>) -> Result<ChannelPolicy, DecodeError> {
    Ok(ChannelPolicy {
        max_dust_htlc_exposure_msat: Msat(r.u64()?),
        min_feerate_per_kw: r.u32()?,
        max_feerate_per_kw: r.u32()?,
    })
}

pub(crate) fn write_secrets(w: &mut W<'_>, s: &ChannelSecrets) {
    w.bytes(&s.funding_key.secret_bytes());
    w.bytes(&s.htlc_basepoint_secret.secret_bytes());
    w.bytes(&s.commitment_seed);
}

pub(crate) fn read_secrets(r: &mut R<'_>) -> Result<ChannelSecrets, DecodeError> {
    Ok(ChannelSecrets {
        funding_key: r.secret()?,
        htlc_basepoint_secret: r.secret()?,
        commitment_seed: r.arr()?,
    })
}

pub(crate) fn write_limits(w: &mut W<'_>, l: &SideLimits) {
    w.u64(l.max_htlc_value_in_flight_msat.0);
    w.u64(l.channel_reserve_satoshis.0);
    w.u64(l.htlc_minimum_msat.0);
    w.u16(l.max_accepted_htlcs);
}

pub(crate) fn read_limits(r: &mut R<'_>) -> Result<SideLimits, DecodeError> {
    Ok(SideLimits {
        max_htlc_value_in_flight_msat: Msat(r.u64()?),
        channel_reserve_satoshis: Sat(r.u64()?),
        htlc_minimum_msat: Msat(r.u64()?),
        max_accepted_htlcs: r.u16()?,
    })
}

fn write_removal_kind(w: &mut W<'_>, k: &RemovalKind) {
    match k {
        RemovalKind::Fulfill(p) => {
            w.u8(0);
            w.bytes(&p.0);
        }
        RemovalKind::Fail(reason) => {
            w.u8(1);
            w.blob(reason);
        }
        RemovalKind::FailMalformed {
            sha256_of_onion,
            failure_code,
        } => {
            w.u8(2);
            w.bytes(sha256_of_onion);
            w.u16(*failure_code);
        }
    }
}

fn read_removal_kind(r: &mut R<'_>) -> Result<RemovalKind, DecodeError> {
    Ok(match r.u8()? {
        0 => RemovalKind::Fulfill(PaymentPreimage(r.arr()?)),
        1 => RemovalKind::Fail(r.blob("failure reason")?.to_vec()),
        2 => RemovalKind::FailMalformed {
            sha256_of_onion: r.arr()?,
            failure_code: r.u16()?,
        },
        _ => return Err(DecodeError::Invalid("removal kind")),
    })
}

fn write_htlc(w: &mut W<'_>, h: &Htlc, lean: bool) {
    w.side(h.offerer);
    w.u64(h.id);
    // The terms never change once added: a store may keep them under the
    // HTLC's own key, written once, instead of in every record of the
    // channel.
    w.bool(lean);
    if !lean {
        w.u64(h.amount_msat.0);
        w.bytes(&h.payment_hash.0);
        w.u32(h.cltv_expiry);
        w.bool(h.over_dust_exposure);
        w.bool(h.added_after_shutdown);
        w.bytes(&h.onion_routing_packet);
    }
    w.state(h.add_state);
    w.u64(h.sent_seq);
    w.bool(h.removal.is_some());
    if let Some(rm) = &h.removal {
        write_removal_kind(w, &rm.kind);
        w.state(rm.state);
        w.u64(rm.sent_seq);
    }
    w.bool(h.resolution_reported);
}

fn read_htlc(r: &mut R<'_>, lookup: &mut HtlcLookup<'_>) -> Result<Htlc, DecodeError> {
    let offerer = r.side()?;
    let id = r.u64()?;
    let terms = if r.bool()? {
        lookup(offerer, id).ok_or(DecodeError::Invalid("an HTLC's stored terms are missing"))?
    } else {
        HtlcTerms {
            amount_msat: Msat(r.u64()?),
            payment_hash: PaymentHash(r.arr()?),
            cltv_expiry: r.u32()?,
            over_dust_exposure: r.bool()?,
            added_after_shutdown: r.bool()?,
            onion_routing_packet: r.arr::<ONION_PACKET_LEN>()?,
        }
    };
    Ok(Htlc {
        offerer,
        id,
        amount_msat: terms.amount_msat,
        payment_hash: terms.payment_hash,
        cltv_expiry: terms.cltv_expiry,
        add_state: r.state()?,
        sent_seq: r.u64()?,
        removal: r.option(|r| {
            Ok(Removal {
                kind: read_removal_kind(r)?,
                state: r.state()?,
                sent_seq: r.u64()?,
            })
        })?,
        onion_routing_packet: terms.onion_routing_packet,
        resolution_reported: r.bool()?,
        over_dust_exposure: terms.over_dust_exposure,
        added_after_shutdown: terms.added_after_shutdown,
    })
}

fn write_book(w: &mut W<'_>, b: &Book, lean: bool) {
    w.side(b.funder);
    w.u64(b.capacity_msat);
    w.u64(b.base_local_msat);
    w.u64(b.base_remote_msat);
    w.u32(b.base_feerate_per_kw);
    w.count(b.fee_updates.len());
    for f in &b.fee_updates {
        w.u32(f.feerate_per_kw);
        w.state(f.state);
        w.u64(f.sent_seq);
    }
    w.count(b.htlcs.len());
    for h in &b.htlcs {
        write_htlc(w, h, lean);
    }
    w.u64(b.next_local_htlc_id);
    w.u64(b.next_remote_htlc_id);
    w.u64(b.local_commitment_number);
    w.u64(b.remote_commitment_number);
}

fn read_book(r: &mut R<'_>, lookup: &mut HtlcLookup<'_>) -> Result<Book, DecodeError> {
    let funder = r.side()?;
    let capacity_msat = r.u64()?;
    let base_local_msat = r.u64()?;
    let base_remote_msat = r.u64()?;
    let base_feerate_per_kw = r.u32()?;
    let n = r.count(4, "fee update count")?;
    let mut fee_updates = Vec::with_capacity(n + 1);
    for _ in 0..n {
        fee_updates.push(FeeUpdate {
            feerate_per_kw: r.u32()?,
            state: r.state()?,
            sent_seq: r.u64()?,
        });
    }
    let n = r.count(MAX_HTLCS, "HTLC count")?;
    let mut htlcs = Vec::with_capacity(n);
    for _ in 0..n {
        htlcs.push(read_htlc(r, lookup)?);
    }
    let book = Book {
        funder,
        capacity_msat,
        base_local_msat,
        base_remote_msat,
        base_feerate_per_kw,
        fee_updates,
        htlcs,
        next_local_htlc_id: r.u64()?,
        next_remote_htlc_id: r.u64()?,
        local_commitment_number: r.u64()?,
        remote_commitment_number: r.u64()?,
    };
    check_book(&book)?;
    Ok(book)
}

/// The invariants [`Book`] asserts, checked on a record just read.
fn check_book(b: &Book) -> Result<(), DecodeError> {
    let invalid = DecodeError::Invalid;
    if !b.fee_updates.windows(2).all(|w| w[0].state > w[1].state)
        || b.fee_updates
            .iter()
            .any(|f| f.state == UpdateState::Irrevocable)
    {
        return Err(invalid("fee updates not normalised"));
    }
    // HTLC amounts are bounded, ids consistent, removals after adds.
    let mut offered = 0u64;
    for (i, h) in b.htlcs.iter().enumerate() {
        let next = match h.offerer {
            Side::Local => b.next_local_htlc_id,
            Side::Remote => b.next_remote_htlc_id,
        };
        offered = offered
            .checked_add(h.amount_msat.0)
            .ok_or(invalid("HTLC amounts overflow"))?;
        if h.id >= next || h.id >= 1 << 62 {
            return Err(invalid("HTLC id not below the next id"));
        }
        if b.htlcs[..i]
            .iter()
            .any(|o| o.offerer == h.offerer && o.id == h.id)
        {
            return Err(invalid("HTLC id held twice"));
        }
        if let Some(rm) = &h.removal {
            if h.add_state != UpdateState::Irrevocable || rm.state == UpdateState::Irrevocable {
                return Err(invalid("HTLC removal state"));
            }
        }
        for v in [
            View::LocalCurrent,
            View::LocalNext,
            View::RemoteCurrent,
            View::RemoteNext,
        ] {
            let add = applies(h.offerer, h.add_state, v);
            let rm = h
                .removal
                .as_ref()
                .is_some_and(|rm| applies(h.offerer.other(), rm.state, v));
            if rm && !add {
                return Err(invalid("HTLC removal applies before its add"));
            }
        }
    }
    // Every view materialises without going below zero, in the order
    // `Book::view_with` walks the HTLCs.
    for v in [
        View::LocalCurrent,
        View::LocalNext,
        View::RemoteCurrent,
        View::RemoteNext,
    ] {
        let (mut local, mut remote) = (b.base_local_msat, b.base_remote_msat);
        for h in b
            .htlcs
            .iter()
            .filter(|h| applies(h.offerer, h.add_state, v))
        {
            let amount = h.amount_msat.0;
            let (from, to) = match h.offerer {
                Side::Local => (&mut local, &mut remote),
                Side::Remote => (&mut remote, &mut local),
            };
            *from = from
                .checked_sub(amount)
                .ok_or(invalid("balance does not cover offered HTLCs"))?;
            if let Some(rm) = &h.removal {
                if applies(h.offerer.other(), rm.state, v) {
                    let to = if rm.kind.is_fulfill() { to } else { from };
                    *to = to.checked_add(amount).ok_or(invalid("balances overflow"))?;
                }
            }
        }
    }
    let total = b
        .base_local_msat
        .checked_add(b.base_remote_msat)
        .ok_or(invalid("balances overflow"))?;
    if total != b.capacity_msat {
        return Err(invalid("balances do not sum to the capacity"));
    }
    if b.local_commitment_number >= 1 << 48 || b.remote_commitment_number >= 1 << 48 {
        return Err(invalid("commitment number above 2^48"));
    }
    Ok(())
}

fn write_effect(w: &mut W<'_>, e: &Effect) {
    match e {
        Effect::Send(m) => {
            w.u8(0);
            w.message(m);
        }
        Effect::Persist { seq } => {
            w.u8(1);
            w.u64(*seq);
        }
        Effect::Forward {
            htlc_id,
            amount_msat,
            payment_hash,
            cltv_expiry,
            over_dust_exposure,
            added_after_shutdown,
        } => {
            w.u8(2);
            w.u64(*htlc_id);
            w.u64(amount_msat.0);
            w.bytes(&payment_hash.0);
            w.u32(*cltv_expiry);
            w.bool(*over_dust_exposure);
            w.bool(*added_after_shutdown);
        }
        Effect::BroadcastFunding { funding_txid } => {
            w.u8(3);
            w.bytes(&funding_txid.to_byte_array());
        }
        Effect::ClosingTx { tx } => {
            w.u8(5);
            w.blob(&bitcoin::consensus::encode::serialize(tx));
        }
        Effect::Resolved {
            htlc_id,
            resolution,
        } => {
            w.u8(4);
            w.u64(*htlc_id);
            match resolution {
                Resolution::Fulfilled { payment_preimage } => {
                    w.u8(0);
                    w.bytes(&payment_preimage.0);
                }
                Resolution::Failed { reason } => {
                    w.u8(1);
                    w.blob(reason);
                }
                Resolution::FailedMalformed {
                    sha256_of_onion,
                    failure_code,
                } => {
                    w.u8(2);
                    w.bytes(sha256_of_onion);
                    w.u16(*failure_code);
                }
            }
        }
    }
}

fn read_effect(r: &mut R<'_>) -> Result<Effect, DecodeError> {
    Ok(match r.u8()? {
        0 => Effect::Send(r.message()?),
        1 => Effect::Persist { seq: r.u64()? },
        2 => Effect::Forward {
            htlc_id: r.u64()?,
            amount_msat: Msat(r.u64()?),
            payment_hash: PaymentHash(r.arr()?),
            cltv_expiry: r.u32()?,
            over_dust_exposure: r.bool()?,
            added_after_shutdown: r.bool()?,
        },
        3 => Effect::BroadcastFunding {
            funding_txid: bitcoin::Txid::from_byte_array(r.arr()?),
        },
        4 => Effect::Resolved {
            htlc_id: r.u64()?,
            resolution: match r.u8()? {
                0 => Resolution::Fulfilled {
                    payment_preimage: PaymentPreimage(r.arr()?),
                },
                1 => Resolution::Failed {
                    reason: r.blob("failure reason")?.to_vec(),
                },
                2 => Resolution::FailedMalformed {
                    sha256_of_onion: r.arr()?,
                    failure_code: r.u16()?,
                },
                _ => return Err(DecodeError::Invalid("resolution")),
            },
        },
        5 => Effect::ClosingTx {
            tx: bitcoin::consensus::encode::deserialize(r.blob("closing tx")?)
                .map_err(|_| DecodeError::Invalid("closing tx"))?,
        },
        _ => return Err(DecodeError::Invalid("effect")),
    })
}

pub(crate) fn write_outbox(w: &mut W<'_>, o: &Outbox) {
    w.u64(o.next_persist_seq);
    w.u64(o.persisted_seq);
    w.count(o.persist_requests.len());
    for s in &o.persist_requests {
        w.u64(*s);
    }
    w.count(o.queue.len());
    for (gate, e) in &o.queue {
        w.u64(*gate);
        write_effect(w, e);
    }
}

pub(crate) fn read_outbox(r: &mut R<'_>) -> Result<Outbox, DecodeError> {
    let next_persist_seq = r.u64()?;
    let persisted_seq = r.u64()?;
    if next_persist_seq == 0 || persisted_seq >= next_persist_seq || next_persist_seq == u64::MAX {
        return Err(DecodeError::Invalid("persist sequence"));
    }
    let n = r.count(MAX_EFFECTS, "persist request count")?;
    let mut persist_requests = VecDeque::with_capacity(n.max(4));
    for _ in 0..n {
        let s = r.u64()?;
        if s >= next_persist_seq {
            return Err(DecodeError::Invalid("persist request"));
        }
        persist_requests.push_back(s);
    }
    let n = r.count(MAX_EFFECTS, "effect count")?;
    let mut queue = VecDeque::with_capacity(n.max(16));
    for _ in 0..n {
        let gate = r.u64()?;
        if gate >= next_persist_seq {
            return Err(DecodeError::Invalid("effect gate"));
        }
        queue.push_back((gate, read_effect(r)?));
    }
    Ok(Outbox {
        next_persist_seq,
        persisted_seq,
        persist_requests,
        queue,
    })
}

impl Channel {
    /// Appends the channel's record to `out` (the caller reuses it):
    /// everything a restarted node needs, see the module docs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(out, false);
    }

    /// [`Channel::encode`] without the HTLCs' fixed terms ([`HtlcTerms`]:
    /// the onion's 1,366 bytes, amount, hash, expiry), most of a busy
    /// channel's record: the caller keeps each HTLC's terms under its own
    /// key from the time the HTLC enters [`crate::book::Book::htlcs`] until
    /// it leaves, and gives them back to [`Channel::decode_lean`].
    pub fn encode_lean(&self, out: &mut Vec<u8>) {
        self.encode_with(out, true);
    }

    fn encode_with(&self, out: &mut Vec<u8>, lean: bool) {
        let start = out.len();
        let mut w = W(out);
        w.u8(STATE_VERSION);
        w.bytes(&self.channel_id.0);
        write_params(&mut w, &self.params);
        write_limits(&mut w, &self.local_limits);
        write_limits(&mut w, &self.remote_limits);
        write_policy(&mut w, &self.policy);
        write_secrets(&mut w, &self.secrets);
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
        w.bool(self.local_alias.is_some());
        if let Some(a) = self.local_alias {
            w.u64(a.0);
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
        write_shutdown(&mut w, &self.shutdown_terms, &self.shutdown);
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

    /// Reads a record written by either encoder; `lookup` gives back the
    /// terms [`Channel::encode_lean`] left out (an HTLC whose terms it
    /// does not have makes the record invalid).
    pub fn decode_lean(bytes: &[u8], lookup: &mut HtlcLookup<'_>) -> Result<Channel, DecodeError> {
        unseal(bytes, STATE_VERSION, |r| read_channel(r, lookup))
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
                            resolution: Resolution::Fulfilled {
                                payment_preimage: *p,
                            },
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

fn write_script(w: &mut W<'_>, s: &Option<ScriptBuf>) {
    w.bool(s.is_some());
    if let Some(s) = s {
        w.blob(s.as_bytes());
    }
}

fn read_script(r: &mut R<'_>) -> Result<Option<ScriptBuf>, DecodeError> {
    r.option(|r| Ok(ScriptBuf::from_bytes(r.blob("script")?.to_vec())))
}

pub(crate) fn write_shutdown_terms(w: &mut W<'_>, terms: &ShutdownTerms) {
    w.bool(terms.option_shutdown_anysegwit);
    w.bool(terms.option_simple_close);
    write_script(w, &terms.local_upfront_shutdown_script);
    write_script(w, &terms.remote_upfront_shutdown_script);
}

pub(crate) fn read_shutdown_terms(r: &mut R<'_>) -> Result<ShutdownTerms, DecodeError> {
    Ok(ShutdownTerms {
        option_shutdown_anysegwit: r.bool()?,
        option_simple_close: r.bool()?,
        local_upfront_shutdown_script: read_script(r)?,
        remote_upfront_shutdown_script: read_script(r)?,
    })
}

fn write_shutdown(w: &mut W<'_>, terms: &ShutdownTerms, state: &ShutdownState) {
    write_shutdown_terms(w, terms);
    w.bool(state.local.is_some());
    if let Some((script, seq)) = &state.local {
        w.blob(script.as_bytes());
        w.u64(*seq);
    }
    write_script(w, &state.remote);
}

fn write_proposal(w: &mut W<'_>, p: &Proposal) {
    w.u64(p.fee);
    w.u64(p.min);
    w.u64(p.max);
}

fn read_proposal(r: &mut R<'_>) -> Result<Proposal, DecodeError> {
    Ok(Proposal {
        fee: r.u64()?,
        min: r.u64()?,
        max: r.u64()?,
    })
}

fn write_closing(w: &mut W<'_>, c: &ClosingState) {
    w.bool(c.sent.is_some());
    if let Some((p, sig)) = &c.sent {
        write_proposal(w, p);
        w.sig(sig);
    }
    w.bool(c.received.is_some());
    if let Some(r) = &c.received {
        w.u64(r.fee);
        w.sig(&r.sig);
        w.u8(r.variant as u8);
    }
    w.bool(c.pending.is_some());
    if let Some(p) = &c.pending {
        write_proposal(w, p);
    }
    w.bool(c.tx.is_some());
    if let Some(tx) = &c.tx {
        w.blob(&bitcoin::consensus::encode::serialize(tx));
    }
    write_simple(w, &c.simple);
}

fn write_terms(w: &mut W<'_>, t: &CloseTerms) {
    w.blob(t.closer_script.as_bytes());
    w.blob(t.closee_script.as_bytes());
    w.u64(t.fee);
    w.u32(t.locktime);
}

fn read_terms(r: &mut R<'_>) -> Result<CloseTerms, DecodeError> {
    Ok(CloseTerms {
        closer_script: ScriptBuf::from_bytes(r.blob("closer script")?.to_vec()),
        closee_script: ScriptBuf::from_bytes(r.blob("closee script")?.to_vec()),
        fee: r.u64()?,
        locktime: r.u32()?,
    })
}

fn read_field(r: &mut R<'_>) -> Result<SigField, DecodeError> {
    SigField::from_type(r.u8()?).ok_or(DecodeError::Invalid("closing signature field"))
}

fn write_simple(w: &mut W<'_>, s: &SimpleState) {
    write_script(w, &s.remote_script);
    w.bool(s.sent.is_some());
    if let Some(sent) = &s.sent {
        write_terms(w, &sent.terms);
        w.u32(sent.sigs.len() as u32);
        for (f, sig) in &sent.sigs {
            w.u8(*f as u8);
            w.sig(sig);
        }
    }
    w.bool(s.proposed);
    w.bool(s.pending.is_some());
    if let Some(p) = &s.pending {
        write_terms(w, &p.terms);
        w.u8(p.field as u8);
        w.sig(&p.remote_sig);
    }
}

fn read_simple(r: &mut R<'_>) -> Result<SimpleState, DecodeError> {
    let remote_script = read_script(r)?;
    let sent = r.option(|r| {
        let terms = read_terms(r)?;
        let n = r.u32()?;
        if n == 0 || n > 3 {
            return Err(DecodeError::Invalid("closing_complete signature count"));
        }
        let mut sigs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            sigs.push((read_field(r)?, r.sig()?));
        }
        Ok(SentComplete { terms, sigs })
    })?;
    let proposed = r.bool()?;
    let pending = r.option(|r| {
        Ok(PendingSig {
            terms: read_terms(r)?,
            field: read_field(r)?,
            remote_sig: r.sig()?,
        })
    })?;
    Ok(SimpleState {
        remote_script,
        sent,
        proposed,
        pending,
    })
}

fn read_closing(r: &mut R<'_>) -> Result<ClosingState, DecodeError> {
    let sent = r.option(|r| Ok((read_proposal(r)?, r.sig()?)))?;
    let received = r.option(|r| {
        Ok(Received {
            fee: r.u64()?,
            sig: r.sig()?,
            variant: Variant::from_u8(r.u8()?)
                .ok_or(DecodeError::Invalid("closing_signed variant"))?,
        })
    })?;
    let pending = r.option(read_proposal)?;
    let tx = r.option(|r| {
        bitcoin::consensus::encode::deserialize(r.blob("closing tx")?)
            .map_err(|_| DecodeError::Invalid("closing tx"))
    })?;
    let simple = read_simple(r)?;
    Ok(ClosingState {
        sent,
        received,
        pending,
        tx,
        simple,
    })
}

fn read_shutdown(r: &mut R<'_>) -> Result<(ShutdownTerms, ShutdownState), DecodeError> {
    let terms = read_shutdown_terms(r)?;
    let local = r.option(|r| {
        let script = ScriptBuf::from_bytes(r.blob("shutdown script")?.to_vec());
        Ok((script, r.u64()?))
    })?;
    let state = ShutdownState {
        local,
        remote: read_script(r)?,
    };
    Ok((terms, state))
}

fn read_channel(r: &mut R<'_>, lookup: &mut HtlcLookup<'_>) -> Result<Channel, DecodeError> {
    let channel_id = ChannelId(r.arr()?);
    let params = read_params(r)?;
    let local_limits = read_limits(r)?;
    let remote_limits = read_limits(r)?;
    let policy = read_policy(r)?;
    let secrets = read_secrets(r)?;
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
    let local_alias = r.option(|r| r.u64().map(ShortChannelId))?;
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
    let (shutdown_terms, shutdown) = read_shutdown(r)?;
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
    })
}
