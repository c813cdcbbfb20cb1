//! The records themselves: envelopes with a kind, a version and a check (crate docs), their
//! bodies, and the decoders that refuse anything malformed without panicking.
//!
//! Integers are big-endian and fixed-width; keys are compressed points; options carry a `0`/`1`
//! tag; variable-length data a `u16` length (every blob here is part of a BOLT message, so it
//! fits).

use lnhub_forward::{Policy, PolicyHistory};
use lnhub_onion::failure::{Failure, FailureMessage};
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, PaymentPreimage, ShortChannelId};
use ring::digest::{digest, SHA256};
use secp256k1::PublicKey;

use crate::Table;

const KIND_CHANNEL: u8 = 1;
const KIND_OPENING: u8 = 2;
const KIND_LINK: u8 = 3;
const KIND_HTLC: u8 = 4;
const KIND_REPLAY: u8 = 5;
const KIND_FORWARD: u8 = 6;
const KIND_CLOSED: u8 = 7;
const KIND_WALLET: u8 = 8;
const KIND_CHANNEL_STATICS: u8 = 9;

/// Versions of each record kind's body. Bump on any change to its body; the decoder refuses
/// versions it does not know.
/// Channel records: version 2 added the peer's alias; version 3 keeps the header but follows
/// it with the channel's progress record, its static record being apart (`channel_statics`).
/// Versions 1 (no alias) and 2 (the whole channel after the header) are still read.
const CHANNEL_VERSION: u8 = 3;
/// A channel's static record: the envelope (an empty body) then `Channel::encode_static`.
const CHANNEL_STATICS_VERSION: u8 = 1;
const OPENING_VERSION: u8 = 3;
const LINK_VERSION: u8 = 1;
const HTLC_VERSION: u8 = 1;
const REPLAY_VERSION: u8 = 1;
const FORWARD_VERSION: u8 = 1;
const CLOSED_VERSION: u8 = 1;
const WALLET_VERSION: u8 = 1;

/// Length of the envelope's check: 64 bits of SHA-256 catch any accidental corruption of a
/// record of a few hundred bytes; the large state records carry a full SHA-256 of their own.
const CHECK_LEN: usize = 8;

/// Kind, version and the body's length (`u16`).
const HEADER_LEN: usize = 4;

/// Why a stored record was refused: the table and key it was read under, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The table.
    pub table: Table,
    /// The key, lower-case hex.
    pub key: String,
    /// What is wrong with it.
    pub why: String,
}

impl RecordError {
    /// A refusal of the record under `key` in `table`.
    pub fn new(table: Table, key: &[u8], why: impl Into<String>) -> RecordError {
        RecordError {
            table,
            key: key.iter().map(|b| format!("{b:02x}")).collect(),
            why: why.into(),
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} {} refused: {}",
            self.table.name(),
            self.key,
            self.why
        )
    }
}

impl std::error::Error for RecordError {}

/// How a forward ended downstream (or could not start): what the incoming HTLC is resolved
/// with. Recorded in a forward's [`LinkRecord`] in the same commit as the outgoing channel's
/// state that reports it, so it is sent upstream again after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Settle the incoming HTLC with this preimage.
    Fulfilled(PaymentPreimage),
    /// The downstream failure onion: obfuscate with our layer and pass it on.
    FailedDownstream(Vec<u8>),
    /// Downstream could not parse the onion: turn it into an encrypted failure.
    FailedMalformed {
        /// From `update_fail_malformed_htlc`.
        sha256_of_onion: [u8; 32],
        /// From `update_fail_malformed_htlc`.
        failure_code: u16,
    },
    /// We fail it ourselves (policy, liquidity): encrypt this failure with our layer.
    FailedHere(FailureMessage),
    /// Inside a blinded route, not at its introduction point.
    FailedHereMalformed {
        /// SHA256 of the onion we received.
        sha256_of_onion: [u8; 32],
        /// The BADONION code.
        failure_code: u16,
    },
}

/// What the shard keeps beside a channel's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHeader {
    /// The peer.
    pub peer: PublicKey,
    /// The scid (our alias) forwards name the channel by.
    pub scid: ShortChannelId,
    /// The peer's alias for the channel, which our `channel_update`s name it by.
    pub remote_alias: Option<ShortChannelId>,
    /// Our forwarding policy on it.
    pub policy: PolicyHistory,
}

/// A channel as read back: the header and the state machine's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Peer, scid, policy.
    pub header: ChannelHeader,
    /// The channel's static record (`Channel::encode_static` output) for a record of version
    /// 3, joined from `channel_statics`; `None` for older versions, whose `state` holds the
    /// whole channel.
    pub statics: Option<Vec<u8>>,
    /// Version 3: `Channel::encode_progress` output, checked by `Channel::decode_parts` with
    /// `statics`. Older versions: `Channel::encode_lean` output, checked by
    /// `Channel::decode_lean`.
    pub state: Vec<u8>,
}

/// What the shard keeps beside a channel in establishment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningHeader {
    /// The peer.
    pub peer: PublicKey,
    /// The alias we gave the peer.
    pub alias: ShortChannelId,
    /// The block height when we accepted the funding (`funding_created`), from which the
    /// fundee's wait for the funding transaction is counted; 0 when unknown (records of
    /// version 1).
    pub funding_accepted_at: u32,
    /// Our funding transaction (consensus encoding) when we fund the channel, to broadcast
    /// again after a restart; `None` for the fundee (and in records before version 3).
    pub funding_tx: Option<Vec<u8>>,
}

/// A channel in establishment as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningRecord {
    /// Peer and alias.
    pub header: OpeningHeader,
    /// `Establishing::encode` output, checked by `Establishing::decode`.
    pub state: Vec<u8>,
}

/// A forward in flight, under its outgoing HTLC's key ([`link_key`]). It names the incoming
/// HTLC by channel and id only: which shard owns that channel is worked out again from its
/// peer at load, so a restart with another shard count finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// Incoming channel.
    pub in_channel_id: ChannelId,
    /// Incoming HTLC id.
    pub in_htlc_id: u64,
    /// Incoming amount.
    pub in_amount_msat: Msat,
    /// Outgoing amount (fee earned = in - out).
    pub out_amount_msat: Msat,
    /// When the outgoing HTLC was added (unix seconds), for the forwarding log.
    pub added_at: u64,
    /// How the outgoing HTLC ended, once it has.
    pub resolution: Option<Upstream>,
}

/// The key of a forward link: outgoing channel id, then outgoing HTLC id big-endian.
pub fn link_key(out_channel_id: &ChannelId, out_htlc_id: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&out_channel_id.0);
    k[32..].copy_from_slice(&out_htlc_id.to_be_bytes());
    k
}

/// The outgoing channel and HTLC id of a link key, if it is one.
pub fn parse_link_key(key: &[u8]) -> Option<(ChannelId, u64)> {
    let key: &[u8; 40] = key.try_into().ok()?;
    let id = ChannelId(key[..32].try_into().expect("32 bytes"));
    Some((
        id,
        u64::from_be_bytes(key[32..].try_into().expect("8 bytes")),
    ))
}

/// Appends a channel record: the envelope around `header`, then what `progress` appends (the
/// channel's progress record, `Channel::encode_progress`, written straight into `out`). Its
/// static record goes under the same key in `channel_statics` ([`encode_channel_statics`]),
/// before or in the same batch.
pub fn encode_channel(
    out: &mut Vec<u8>,
    header: &ChannelHeader,
    progress: impl FnOnce(&mut Vec<u8>),
) {
    let start = open_envelope(out, KIND_CHANNEL, CHANNEL_VERSION);
    out.extend_from_slice(&header.peer.serialize());
    out.extend_from_slice(&header.scid.0.to_be_bytes());
    write_policy_history(out, &header.policy);
    // Zero: none (no alias is zero: block 0 holds no channel).
    out.extend_from_slice(&header.remote_alias.map_or(0, |a| a.0).to_be_bytes());
    seal(out, start);
    progress(out);
}

/// Appends a channel's static record: an envelope with an empty body, then what `statics`
/// appends (`Channel::encode_static`, with its own version and checksum). Written once, when
/// the channel's record is first written; deleted when the channel is retired.
pub fn encode_channel_statics(out: &mut Vec<u8>, statics: impl FnOnce(&mut Vec<u8>)) {
    let start = open_envelope(out, KIND_CHANNEL_STATICS, CHANNEL_STATICS_VERSION);
    seal(out, start);
    statics(out);
}

/// Checks a channel's static record and returns the channel's own part (checked later, by
/// `Channel::decode_parts`).
pub fn decode_channel_statics(value: &[u8]) -> Result<&[u8], String> {
    let (r, statics) = unseal(
        value,
        KIND_CHANNEL_STATICS,
        CHANNEL_STATICS_VERSION,
        "channel static",
    )?;
    r.end()?;
    if statics.is_empty() {
        return Err("no channel static record after the envelope".into());
    }
    Ok(statics)
}

/// Decodes a channel record with its static record (`statics`: what [`decode_channel_statics`]
/// returned for the same key, if that key is stored). The state bytes are checked later, by
/// the channel's decoder. A record of version 3 needs its static record; older ones hold the
/// whole channel and must have none.
pub fn decode_channel(value: &[u8], statics: Option<&[u8]>) -> Result<ChannelRecord, String> {
    let version = match value.get(1) {
        Some(v @ (1 | 2)) => *v,
        _ => CHANNEL_VERSION,
    };
    let (mut r, state) = unseal(value, KIND_CHANNEL, version, "channel")?;
    let peer = r.point()?;
    let scid = ShortChannelId(r.u64()?);
    let policy = read_policy_history(&mut r)?;
    let remote_alias = match version {
        1 => None,
        _ => Some(r.u64()?).filter(|a| *a != 0).map(ShortChannelId),
    };
    r.end()?;
    if state.is_empty() {
        return Err("no channel state after the header".into());
    }
    let statics = match (version, statics) {
        (CHANNEL_VERSION, None) => {
            return Err(format!(
                "a version {CHANNEL_VERSION} channel record without its static record \
                 (channel_statics)"
            ))
        }
        (CHANNEL_VERSION, Some(s)) => Some(s.to_vec()),
        (_, None) => None,
        (v, Some(_)) => {
            return Err(format!(
                "a version {v} channel record, which holds the whole channel, with a static \
                 record beside it"
            ))
        }
    };
    Ok(ChannelRecord {
        header: ChannelHeader {
            peer,
            scid,
            remote_alias,
            policy,
        },
        statics,
        state: state.to_vec(),
    })
}

/// Appends an opening record: the envelope around `header`, then what `state` appends.
pub fn encode_opening(out: &mut Vec<u8>, header: &OpeningHeader, state: impl FnOnce(&mut Vec<u8>)) {
    let start = open_envelope(out, KIND_OPENING, OPENING_VERSION);
    out.extend_from_slice(&header.peer.serialize());
    out.extend_from_slice(&header.alias.0.to_be_bytes());
    out.extend_from_slice(&header.funding_accepted_at.to_be_bytes());
    // Length 0: none (no transaction is empty).
    write_blob(out, header.funding_tx.as_deref().unwrap_or_default());
    seal(out, start);
    state(out);
}

/// Decodes an opening record (its state bytes are checked later, by `Establishing::decode`).
/// Versions 1 (without the height the funding was accepted at) and 2 (without the funding
/// transaction) are still read.
pub fn decode_opening(value: &[u8]) -> Result<OpeningRecord, String> {
    let version = match value.get(1) {
        Some(v @ (1 | 2)) => *v,
        _ => OPENING_VERSION,
    };
    let (mut r, state) = unseal(value, KIND_OPENING, version, "opening")?;
    let peer = r.point()?;
    let alias = ShortChannelId(r.u64()?);
    let funding_accepted_at = match version {
        1 => 0,
        _ => r.u32()?,
    };
    let funding_tx = match version {
        1 | 2 => None,
        _ => Some(r.blob()?.to_vec()).filter(|t| !t.is_empty()),
    };
    r.end()?;
    if state.is_empty() {
        return Err("no establishment state after the header".into());
    }
    Ok(OpeningRecord {
        header: OpeningHeader {
            peer,
            alias,
            funding_accepted_at,
            funding_tx,
        },
        state: state.to_vec(),
    })
}

/// A channel retired after its closing transaction was deep enough, under its channel id in
/// [`crate::Table::Closed`]: what an operator asks of a closed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedRecord {
    /// The peer.
    pub peer: PublicKey,
    /// Our alias for it.
    pub alias: ShortChannelId,
    /// Its real `short_channel_id`, if the funding was seen confirmed.
    pub real_scid: Option<ShortChannelId>,
    /// Capacity.
    pub capacity_sat: u64,
    /// The funding output.
    pub funding_txid: [u8; 32],
    /// The funding output's index.
    pub funding_vout: u32,
    /// The closing transaction.
    pub closing_txid: [u8; 32],
    /// The height it confirmed at.
    pub closing_height: u32,
    /// Our balance when it closed.
    pub local_msat: u64,
    /// When it was retired (unix seconds).
    pub retired_at: u64,
}

/// Appends a closed-channel record.
pub fn encode_closed(out: &mut Vec<u8>, c: &ClosedRecord) {
    let start = open_envelope(out, KIND_CLOSED, CLOSED_VERSION);
    out.extend_from_slice(&c.peer.serialize());
    out.extend_from_slice(&c.alias.0.to_be_bytes());
    out.extend_from_slice(&c.real_scid.map_or(0, |s| s.0).to_be_bytes());
    out.extend_from_slice(&c.capacity_sat.to_be_bytes());
    out.extend_from_slice(&c.funding_txid);
    out.extend_from_slice(&c.funding_vout.to_be_bytes());
    out.extend_from_slice(&c.closing_txid);
    out.extend_from_slice(&c.closing_height.to_be_bytes());
    out.extend_from_slice(&c.local_msat.to_be_bytes());
    out.extend_from_slice(&c.retired_at.to_be_bytes());
    seal(out, start);
}

/// Decodes a closed-channel record.
pub fn decode_closed(value: &[u8]) -> Result<ClosedRecord, String> {
    let (mut r, rest) = unseal(value, KIND_CLOSED, CLOSED_VERSION, "closed channel")?;
    if !rest.is_empty() {
        return Err("bytes after the check".into());
    }
    let record = ClosedRecord {
        peer: r.point()?,
        alias: ShortChannelId(r.u64()?),
        real_scid: Some(r.u64()?).filter(|s| *s != 0).map(ShortChannelId),
        capacity_sat: r.u64()?,
        funding_txid: r.arr()?,
        funding_vout: r.u32()?,
        closing_txid: r.arr()?,
        closing_height: r.u32()?,
        local_msat: r.u64()?,
        retired_at: r.u64()?,
    };
    r.end()?;
    Ok(record)
}

/// The key of the wallet's change set number `seq`.
pub fn wallet_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Appends a wallet change set record (the wallet library's own serialisation of the change
/// set, opaque here). Its layout is its own, `kind (1) ‖ version (1) ‖ length (4) ‖ change set
/// ‖ check (8)`, the check over everything before it: a change set may pass the 64 KiB a
/// common envelope's body holds.
pub fn encode_wallet(out: &mut Vec<u8>, changeset: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[KIND_WALLET, WALLET_VERSION]);
    let len = u32::try_from(changeset.len()).expect("a change set below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(changeset);
    let check = digest(&SHA256, &out[start..]);
    out.extend_from_slice(&check.as_ref()[..CHECK_LEN]);
}

/// Checks a wallet change set record and returns the change set.
pub fn decode_wallet(value: &[u8]) -> Result<&[u8], String> {
    match value {
        [KIND_WALLET, WALLET_VERSION, ..] => {}
        [KIND_WALLET, v, ..] => {
            return Err(format!(
                "unknown wallet record version {v} (this build reads {WALLET_VERSION})"
            ))
        }
        [k, ..] => return Err(format!("not a wallet record (kind {k})")),
        [] => return Err("truncated record".into()),
    }
    let len = value
        .get(2..6)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or("truncated record")?;
    let end = 6usize.checked_add(len).ok_or("truncated record")?;
    if value.len() != end + CHECK_LEN {
        return Err("truncated record or bytes after the check".into());
    }
    let check = digest(&SHA256, &value[..end]);
    if check.as_ref()[..CHECK_LEN] != value[end..] {
        return Err("checksum mismatch".into());
    }
    Ok(&value[6..end])
}

/// Appends a link record.
pub fn encode_link(out: &mut Vec<u8>, link: &LinkRecord) {
    let start = open_envelope(out, KIND_LINK, LINK_VERSION);
    out.extend_from_slice(&link.in_channel_id.0);
    out.extend_from_slice(&link.in_htlc_id.to_be_bytes());
    out.extend_from_slice(&link.in_amount_msat.0.to_be_bytes());
    out.extend_from_slice(&link.out_amount_msat.0.to_be_bytes());
    out.extend_from_slice(&link.added_at.to_be_bytes());
    match &link.resolution {
        None => out.push(0),
        Some(u) => write_upstream(out, u),
    }
    seal(out, start);
}

/// Decodes a link record.
pub fn decode_link(value: &[u8]) -> Result<LinkRecord, String> {
    let (mut r, rest) = unseal(value, KIND_LINK, LINK_VERSION, "link")?;
    if !rest.is_empty() {
        return Err("bytes after the check".into());
    }
    let in_channel_id = ChannelId(r.arr()?);
    let in_htlc_id = r.u64()?;
    let in_amount_msat = Msat(r.u64()?);
    let out_amount_msat = Msat(r.u64()?);
    let added_at = r.u64()?;
    let resolution = read_upstream(&mut r)?;
    r.end()?;
    if out_amount_msat > in_amount_msat {
        return Err("outgoing amount above incoming amount".into());
    }
    Ok(LinkRecord {
        in_channel_id,
        in_htlc_id,
        in_amount_msat,
        out_amount_msat,
        added_at,
        resolution,
    })
}

/// What never changes about an HTLC in a channel's books (the channel state machine's
/// `HtlcTerms`), stored under the HTLC's own key ([`htlc_key`]): written once when the HTLC
/// enters the books, deleted when it leaves. The channel's record keeps only its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtlcRecord {
    /// `amount_msat`.
    pub amount_msat: Msat,
    /// `payment_hash`.
    pub payment_hash: PaymentHash,
    /// `cltv_expiry`.
    pub cltv_expiry: u32,
    /// Accepting it pushed the trimmed-HTLC exposure over its bound.
    pub over_dust_exposure: bool,
    /// The peer added it after our `shutdown`.
    pub added_after_shutdown: bool,
    /// `onion_routing_packet`.
    pub onion: Box<[u8; ONION_PACKET_LEN]>,
}

/// The key of an HTLC's record: channel id, who offered the HTLC (`0` we did, `1` the peer),
/// HTLC id big-endian.
pub fn htlc_key(channel_id: &ChannelId, offered_by_peer: bool, htlc_id: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[..32].copy_from_slice(&channel_id.0);
    k[32] = u8::from(offered_by_peer);
    k[33..].copy_from_slice(&htlc_id.to_be_bytes());
    k
}

/// The channel, offerer and HTLC id of an HTLC key, if it is one.
pub fn parse_htlc_key(key: &[u8]) -> Option<(ChannelId, bool, u64)> {
    let key: &[u8; 41] = key.try_into().ok()?;
    let offered_by_peer = match key[32] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let id = ChannelId(key[..32].try_into().expect("32 bytes"));
    let htlc_id = u64::from_be_bytes(key[33..].try_into().expect("8 bytes"));
    Some((id, offered_by_peer, htlc_id))
}

/// Appends an HTLC record (fields by reference: the caller's HTLC is not copied).
pub fn encode_htlc(
    out: &mut Vec<u8>,
    amount_msat: Msat,
    payment_hash: &PaymentHash,
    cltv_expiry: u32,
    (over_dust_exposure, added_after_shutdown): (bool, bool),
    onion: &[u8; ONION_PACKET_LEN],
) {
    let start = open_envelope(out, KIND_HTLC, HTLC_VERSION);
    out.extend_from_slice(&amount_msat.0.to_be_bytes());
    out.extend_from_slice(&payment_hash.0);
    out.extend_from_slice(&cltv_expiry.to_be_bytes());
    out.push(u8::from(over_dust_exposure) | u8::from(added_after_shutdown) << 1);
    out.extend_from_slice(onion);
    seal(out, start);
}

/// Decodes an HTLC record.
pub fn decode_htlc(value: &[u8]) -> Result<HtlcRecord, String> {
    let (mut r, rest) = unseal(value, KIND_HTLC, HTLC_VERSION, "HTLC")?;
    if !rest.is_empty() {
        return Err("bytes after the check".into());
    }
    let amount_msat = Msat(r.u64()?);
    let payment_hash = PaymentHash(r.arr()?);
    let cltv_expiry = r.u32()?;
    let flags = r.u8()?;
    if flags > 0b11 {
        return Err("unknown HTLC flags".into());
    }
    let onion = Box::new(r.arr()?);
    r.end()?;
    Ok(HtlcRecord {
        amount_msat,
        payment_hash,
        cltv_expiry,
        over_dust_exposure: flags & 1 != 0,
        added_after_shutdown: flags & 2 != 0,
        onion,
    })
}

/// The key of a replay-set entry: its expiry height big-endian (so the entries a new block
/// height forgets are a prefix of the table), then its 128-bit tag.
pub fn replay_key(expiry_height: u32, tag: u128) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&expiry_height.to_be_bytes());
    k[4..].copy_from_slice(&tag.to_be_bytes());
    k
}

/// The expiry height and tag of a replay key, if it is one.
pub fn parse_replay_key(key: &[u8]) -> Option<(u32, u128)> {
    let key: &[u8; 20] = key.try_into().ok()?;
    Some((
        u32::from_be_bytes(key[..4].try_into().expect("4 bytes")),
        u128::from_be_bytes(key[4..].try_into().expect("16 bytes")),
    ))
}

/// Appends a replay-set entry's value: the incoming HTLC (channel, id) that first carried the
/// onion. After a restart that same HTLC is reported again and peeled again; it is not a
/// replay of itself.
pub fn encode_replay(out: &mut Vec<u8>, channel_id: &ChannelId, htlc_id: u64) {
    let start = open_envelope(out, KIND_REPLAY, REPLAY_VERSION);
    out.extend_from_slice(&channel_id.0);
    out.extend_from_slice(&htlc_id.to_be_bytes());
    seal(out, start);
}

/// Decodes a replay-set entry's value: the HTLC that first carried the onion.
pub fn decode_replay(value: &[u8]) -> Result<(ChannelId, u64), String> {
    let (mut r, rest) = unseal(value, KIND_REPLAY, REPLAY_VERSION, "replay")?;
    if !rest.is_empty() {
        return Err("bytes after the check".into());
    }
    let channel_id = ChannelId(r.arr()?);
    let htlc_id = r.u64()?;
    r.end()?;
    Ok((channel_id, htlc_id))
}

/// How a forward ended, in the forwarding log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The outgoing HTLC was fulfilled and the incoming one settled: the fee was earned.
    Settled,
    /// The outgoing HTLC failed downstream. The failure is encrypted for the payer, so its
    /// code is known only when downstream reported a malformed onion.
    FailedDownstream {
        /// The BADONION code of an `update_fail_malformed_htlc`, if that is how it failed.
        failure_code: Option<u16>,
    },
    /// The hub failed the incoming HTLC itself (policy, liquidity, unknown channel, onion).
    FailedHere {
        /// The BOLT 4 failure code.
        failure_code: u16,
    },
}

/// One entry of the forwarding log, under its incoming HTLC's key ([`forward_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRecord {
    /// Incoming channel.
    pub in_channel_id: ChannelId,
    /// Incoming HTLC id.
    pub in_htlc_id: u64,
    /// Outgoing channel and HTLC id, if an outgoing HTLC was added.
    pub out: Option<(ChannelId, u64)>,
    /// Incoming amount.
    pub in_amount_msat: Msat,
    /// Outgoing amount (zero if no outgoing HTLC was added).
    pub out_amount_msat: Msat,
    /// When the outgoing HTLC was added, or the failure decided (unix seconds).
    pub added_at: u64,
    /// When the outcome was known (unix seconds).
    pub resolved_at: u64,
    /// How it ended.
    pub outcome: ForwardOutcome,
}

impl ForwardRecord {
    /// The fee earned: incoming minus outgoing amount for a settled forward, else zero.
    pub fn fee_msat(&self) -> Msat {
        match self.outcome {
            ForwardOutcome::Settled => {
                Msat(self.in_amount_msat.0.saturating_sub(self.out_amount_msat.0))
            }
            _ => Msat(0),
        }
    }
}

/// The forwarding log's key: the incoming channel and HTLC id (one entry per incoming HTLC,
/// however often a restart makes the hub decide it again).
pub fn forward_key(in_channel_id: &ChannelId, in_htlc_id: u64) -> [u8; 40] {
    link_key(in_channel_id, in_htlc_id)
}

/// The time index's key: resolution time (unix seconds, big-endian) then the forward's key,
/// so the oldest entries are a prefix of the index.
pub fn forward_time_key(resolved_at: u64, in_channel_id: &ChannelId, in_htlc_id: u64) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..8].copy_from_slice(&resolved_at.to_be_bytes());
    k[8..].copy_from_slice(&forward_key(in_channel_id, in_htlc_id));
    k
}

/// The resolution time and forward key of a time-index key, if it is one.
pub fn parse_forward_time_key(key: &[u8]) -> Option<(u64, [u8; 40])> {
    let key: &[u8; 48] = key.try_into().ok()?;
    Some((
        u64::from_be_bytes(key[..8].try_into().expect("8 bytes")),
        key[8..].try_into().expect("40 bytes"),
    ))
}

/// Appends a forwarding-log entry and its time-index entry to `batch`.
pub fn put_forward(batch: &mut crate::Batch, f: &ForwardRecord) {
    batch.put_with(
        Table::Forwards,
        &forward_key(&f.in_channel_id, f.in_htlc_id),
        |out| encode_forward(out, f),
    );
    batch.put(
        Table::ForwardsByTime,
        &forward_time_key(f.resolved_at, &f.in_channel_id, f.in_htlc_id),
        &[],
    );
}

/// Appends a forwarding-log record.
pub fn encode_forward(out: &mut Vec<u8>, f: &ForwardRecord) {
    let start = open_envelope(out, KIND_FORWARD, FORWARD_VERSION);
    out.extend_from_slice(&f.in_channel_id.0);
    out.extend_from_slice(&f.in_htlc_id.to_be_bytes());
    match &f.out {
        None => out.push(0),
        Some((id, htlc)) => {
            out.push(1);
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&htlc.to_be_bytes());
        }
    }
    out.extend_from_slice(&f.in_amount_msat.0.to_be_bytes());
    out.extend_from_slice(&f.out_amount_msat.0.to_be_bytes());
    out.extend_from_slice(&f.added_at.to_be_bytes());
    out.extend_from_slice(&f.resolved_at.to_be_bytes());
    match f.outcome {
        ForwardOutcome::Settled => out.push(0),
        ForwardOutcome::FailedDownstream { failure_code: None } => out.push(1),
        ForwardOutcome::FailedDownstream {
            failure_code: Some(c),
        } => {
            out.push(2);
            out.extend_from_slice(&c.to_be_bytes());
        }
        ForwardOutcome::FailedHere { failure_code } => {
            out.push(3);
            out.extend_from_slice(&failure_code.to_be_bytes());
        }
    }
    seal(out, start);
}

/// Decodes a forwarding-log record.
pub fn decode_forward(value: &[u8]) -> Result<ForwardRecord, String> {
    let (mut r, rest) = unseal(value, KIND_FORWARD, FORWARD_VERSION, "forward")?;
    if !rest.is_empty() {
        return Err("bytes after the check".into());
    }
    let in_channel_id = ChannelId(r.arr()?);
    let in_htlc_id = r.u64()?;
    let out = match r.u8()? {
        0 => None,
        1 => Some((ChannelId(r.arr()?), r.u64()?)),
        t => return Err(format!("bad option tag {t} for the outgoing HTLC")),
    };
    let in_amount_msat = Msat(r.u64()?);
    let out_amount_msat = Msat(r.u64()?);
    let added_at = r.u64()?;
    let resolved_at = r.u64()?;
    let outcome = match r.u8()? {
        0 => ForwardOutcome::Settled,
        1 => ForwardOutcome::FailedDownstream { failure_code: None },
        2 => ForwardOutcome::FailedDownstream {
            failure_code: Some(r.u16()?),
        },
        3 => ForwardOutcome::FailedHere {
            failure_code: r.u16()?,
        },
        t => return Err(format!("unknown forward outcome {t}")),
    };
    r.end()?;
    Ok(ForwardRecord {
        in_channel_id,
        in_htlc_id,
        out,
        in_amount_msat,
        out_amount_msat,
        added_at,
        resolved_at,
        outcome,
    })
}

fn write_policy(out: &mut Vec<u8>, p: &Policy) {
    out.extend_from_slice(&p.fee_base_msat.to_be_bytes());
    out.extend_from_slice(&p.fee_proportional_millionths.to_be_bytes());
    out.extend_from_slice(&p.cltv_expiry_delta.to_be_bytes());
    out.extend_from_slice(&p.htlc_minimum_msat.0.to_be_bytes());
    out.extend_from_slice(&p.htlc_maximum_msat.0.to_be_bytes());
}

fn read_policy(r: &mut Reader<'_>) -> Result<Policy, String> {
    Ok(Policy {
        fee_base_msat: r.u32()?,
        fee_proportional_millionths: r.u32()?,
        cltv_expiry_delta: r.u16()?,
        htlc_minimum_msat: Msat(r.u64()?),
        htlc_maximum_msat: Msat(r.u64()?),
    })
}

fn write_policy_history(out: &mut Vec<u8>, p: &PolicyHistory) {
    write_policy(out, &p.current);
    match &p.previous {
        None => out.push(0),
        Some((prev, since)) => {
            out.push(1);
            write_policy(out, prev);
            out.extend_from_slice(&since.to_be_bytes());
        }
    }
}

fn read_policy_history(r: &mut Reader<'_>) -> Result<PolicyHistory, String> {
    let current = read_policy(r)?;
    let previous = match r.u8()? {
        0 => None,
        1 => Some((read_policy(r)?, r.u64()?)),
        t => return Err(format!("bad option tag {t} for the previous policy")),
    };
    Ok(PolicyHistory { current, previous })
}

fn write_blob(out: &mut Vec<u8>, blob: &[u8]) {
    let len = u16::try_from(blob.len()).expect("a BOLT message field fits a u16 length");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(blob);
}

fn write_upstream(out: &mut Vec<u8>, u: &Upstream) {
    match u {
        Upstream::Fulfilled(p) => {
            out.push(1);
            out.extend_from_slice(&p.0);
        }
        Upstream::FailedDownstream(reason) => {
            out.push(2);
            write_blob(out, reason);
        }
        Upstream::FailedMalformed {
            sha256_of_onion,
            failure_code,
        } => {
            out.push(3);
            out.extend_from_slice(sha256_of_onion);
            out.extend_from_slice(&failure_code.to_be_bytes());
        }
        Upstream::FailedHere(message) => {
            out.push(4);
            let mut failure = Vec::new();
            Failure::new(message.clone()).write(&mut failure);
            write_blob(out, &failure);
        }
        Upstream::FailedHereMalformed {
            sha256_of_onion,
            failure_code,
        } => {
            out.push(5);
            out.extend_from_slice(sha256_of_onion);
            out.extend_from_slice(&failure_code.to_be_bytes());
        }
    }
}

fn read_upstream(r: &mut Reader<'_>) -> Result<Option<Upstream>, String> {
    Ok(Some(match r.u8()? {
        0 => return Ok(None),
        1 => Upstream::Fulfilled(PaymentPreimage(r.arr()?)),
        2 => Upstream::FailedDownstream(r.blob()?.to_vec()),
        3 => Upstream::FailedMalformed {
            sha256_of_onion: r.arr()?,
            failure_code: r.u16()?,
        },
        4 => {
            let failure = Failure::decode(r.blob()?)
                .map_err(|e| format!("stored failure does not decode: {e:?}"))?;
            Upstream::FailedHere(failure.message)
        }
        5 => Upstream::FailedHereMalformed {
            sha256_of_onion: r.arr()?,
            failure_code: r.u16()?,
        },
        t => return Err(format!("unknown resolution tag {t}")),
    }))
}

/// Starts an envelope at the end of `out`: kind, version and a placeholder for the body's
/// length, which [`seal`] fills in. Returns where the envelope starts.
fn open_envelope(out: &mut Vec<u8>, kind: u8, version: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[kind, version, 0, 0]);
    start
}

/// Closes the envelope opened at `start`: fills in the body's length and appends the check
/// over `kind ‖ version ‖ length ‖ body`.
fn seal(out: &mut Vec<u8>, start: usize) {
    let body_len = u16::try_from(out.len() - start - HEADER_LEN).expect("record bodies are small");
    out[start + 2..start + HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
    let check = digest(&SHA256, &out[start..]);
    out.extend_from_slice(&check.as_ref()[..CHECK_LEN]);
}

/// Checks the envelope of `value`. Returns a reader over the body and what follows the check
/// (the state machine's record in channel, channel static and opening records).
fn unseal<'a>(
    value: &'a [u8],
    kind: u8,
    version: u8,
    what: &str,
) -> Result<(Reader<'a>, &'a [u8]), String> {
    let header: &[u8; HEADER_LEN] = value
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or("truncated record")?;
    if header[0] != kind {
        return Err(format!("not a {what} record (kind {})", header[0]));
    }
    if header[1] != version {
        return Err(format!(
            "unknown {what} record version {} (this build reads {version})",
            header[1]
        ));
    }
    let sealed_end = HEADER_LEN + u16::from_be_bytes([header[2], header[3]]) as usize;
    let check_end = sealed_end + CHECK_LEN;
    if value.len() < check_end {
        return Err("truncated record".into());
    }
    let check = digest(&SHA256, &value[..sealed_end]);
    if check.as_ref()[..CHECK_LEN] != value[sealed_end..check_end] {
        return Err("checksum mismatch".into());
    }
    Ok((Reader(&value[HEADER_LEN..sealed_end]), &value[check_end..]))
}

/// A bounds-checked reader over a record body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated record".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    fn blob(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn point(&mut self) -> Result<PublicKey, String> {
        PublicKey::from_slice(&self.arr::<33>()?).map_err(|_| "invalid public key".to_string())
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("bytes left in the record body".into())
        }
    }
}
