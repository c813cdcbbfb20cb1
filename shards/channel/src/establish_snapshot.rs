//! The durable record of a channel being opened: a versioned binary
//! encoding of an [`Establishing`] ([`Establishing::encode`],
//! [`Establishing::decode`]) and its restart transition
//! ([`Establishing::handle_restart`]), in the format of the channel record
//! ([`crate::snapshot`], whose writer, reader and checksum framing it
//! reuses).
//!
//! # What goes in
//!
//! Every field of the state machine: role and [`EstablishState`], our
//! configuration, keys and secrets, the temporary id, the proposal
//! (funding, push, feerate, channel type, the shutdown terms the `init`s
//! fixed, our limits), the peer's side,
//! `minimum_depth`, the funding parameters and channel id once known, the
//! peer's signature on our commitment 0, our alias and commitment-1 point,
//! the `channel_ready` exchange, the stage version, and the outbox with
//! its held effects.
//!
//! # Format
//!
//! `ESTABLISH_STATE_VERSION (1 byte) || body || SHA256(version || body)`,
//! with the encodings of [`crate::snapshot`]. The first byte doubles as the
//! record kind: [`ESTABLISH_STATE_VERSION`] has its high bit set and
//! channel record versions ([`crate::STATE_VERSION`]) never do, so
//! [`crate::Channel::decode`] refuses an opening's record and
//! [`Establishing::decode`] a channel's, both with
//! [`DecodeError::UnknownVersion`]. After the checksum the body is parsed
//! without panicking and checked against what the state machine relies on
//! (`expect`s included): the state belongs to the role; the peer's side is
//! known once past `open_channel`; the funding parameters and channel id
//! are present from `funding_created` on and are exactly what the funding
//! outpoint derives; the peer's signature is held exactly once
//! commitment 0 is verified; `channel_ready` only after it; the aliases an
//! `option_scid_alias` channel needs are there; the funding amount and
//! push leave the funder able to pay for commitment 0.
//!
//! # Restart contract
//!
//! The machine asks for a write ([`crate::Effect::Persist`]) once, when
//! commitment 0 is signed both ways (state
//! [`EstablishState::AwaitingReady`]): the fundee before its
//! `funding_signed` leaves, the funder before it may broadcast the funding
//! transaction. Those are the points from which BOLT 2 ("Message
//! Retransmission") says a node must remember the channel: the fundee
//! once it has sent `funding_signed`, the funder once it has broadcast.
//! Before them a disconnection, and so a restart, simply forgets the
//! channel; a caller that wrote an earlier record anyway may decode and
//! restart it, but should drop it. After a crash the caller decodes the
//! last durable record and calls [`Establishing::handle_restart`] first:
//! - every effect the record held is released, since the record is
//!   durable (a funder's [`crate::Effect::BroadcastFunding`] comes out, so
//!   the funding is broadcast at least once: broadcasting is idempotent);
//! - queued messages are dropped: the connection they were for is gone. A
//!   fundee's `funding_signed` that never left is lost with it; the funder
//!   then never broadcasts and forgets the channel, and the fundee holds a
//!   channel whose funding never appears (as after any such disconnect);
//! - our `channel_ready` is treated as not sent: the next
//!   [`Establishing::handle_funding_depth`] at or above `minimum_depth`
//!   sends it again (for a zero-conf channel, any depth), which is the
//!   retransmission BOLT 2 asks for on reconnection;
//! - the stage version moves on, so a signature staged before the crash
//!   is refused.

use lnhub_tx::{Side, SideParams};
use lnhub_wire::types::{ChainHash, ChannelId, Msat, Sat, ShortChannelId};

use crate::channel_type::NegotiatedType;
use crate::config::{EstablishConfig, PeerParamLimits};
use crate::establish::{
    initial_funder_charge_msat, EstablishState, Establishing, LocalKeys, RemoteSide,
};
use crate::snapshot::{
    read_channel_type, read_limits, read_outbox, read_params, read_policy, read_pubkeys,
    read_secrets, read_shutdown_terms, read_side_params, seal, unseal, write_channel_type,
    write_limits, write_outbox, write_params, write_policy, write_pubkeys, write_secrets,
    write_shutdown_terms, write_side_params, DecodeError, R, W,
};

/// The first byte of an opening's record: its format version and its
/// kind. Bump it on any change to the format (keeping the high bit, which
/// tells it from a channel record); [`Establishing::decode`] refuses
/// versions it does not know.
pub const ESTABLISH_STATE_VERSION: u8 = 0x81;

/// Every [`EstablishState`], in the order of its encoding.
const STATES: [EstablishState; 6] = [
    EstablishState::AwaitingAccept,
    EstablishState::AwaitingFundingTx,
    EstablishState::AwaitingFundingSigned,
    EstablishState::AwaitingFundingCreated,
    EstablishState::SigningFundingSigned,
    EstablishState::AwaitingReady,
];

fn write_config(w: &mut W<'_>, c: &EstablishConfig) {
    w.bytes(&c.chain_hash.0);
    w.u64(c.dust_limit_satoshis.0);
    w.u16(c.to_self_delay);
    w.u64(c.max_htlc_value_in_flight_msat.0);
    w.u32(c.channel_reserve_proportional_millionths);
    w.u64(c.htlc_minimum_msat.0);
    w.u16(c.max_accepted_htlcs);
    w.u32(c.minimum_depth);
    write_policy(w, &c.policy);
    let p = &c.peer_limits;
    w.u16(p.max_to_self_delay);
    w.u64(p.min_funding_satoshis.0);
    w.u64(p.max_htlc_minimum_msat.0);
    w.u64(p.min_max_htlc_value_in_flight_msat.0);
    w.u32(p.max_channel_reserve_proportional_millionths);
    w.u16(p.min_max_accepted_htlcs);
    w.u64(p.max_dust_limit_satoshis.0);
    w.u32(p.max_minimum_depth);
}

fn read_config(r: &mut R<'_>) -> Result<EstablishConfig, DecodeError> {
    Ok(EstablishConfig {
        chain_hash: ChainHash(r.arr()?),
        dust_limit_satoshis: Sat(r.u64()?),
        to_self_delay: r.u16()?,
        max_htlc_value_in_flight_msat: Msat(r.u64()?),
        channel_reserve_proportional_millionths: r.u32()?,
        htlc_minimum_msat: Msat(r.u64()?),
        max_accepted_htlcs: r.u16()?,
        minimum_depth: r.u32()?,
        policy: read_policy(r)?,
        peer_limits: PeerParamLimits {
            max_to_self_delay: r.u16()?,
            min_funding_satoshis: Sat(r.u64()?),
            max_htlc_minimum_msat: Msat(r.u64()?),
            min_max_htlc_value_in_flight_msat: Msat(r.u64()?),
            max_channel_reserve_proportional_millionths: r.u32()?,
            min_max_accepted_htlcs: r.u16()?,
            max_dust_limit_satoshis: Sat(r.u64()?),
            max_minimum_depth: r.u32()?,
        },
    })
}

/// The peer's side is written as the [`SideParams`] it becomes, then its
/// first point and limits.
fn write_remote(w: &mut W<'_>, s: &RemoteSide) {
    write_side_params(
        w,
        &SideParams {
            pubkeys: s.pubkeys,
            to_self_delay: s.to_self_delay,
            dust_limit: bitcoin::Amount::from_sat(s.dust_limit.0),
        },
    );
    w.point(&s.first_point);
    write_limits(w, &s.limits);
}

fn read_remote(r: &mut R<'_>) -> Result<RemoteSide, DecodeError> {
    let side = read_side_params(r)?;
    Ok(RemoteSide {
        pubkeys: side.pubkeys,
        to_self_delay: side.to_self_delay,
        dust_limit: Sat(side.dust_limit.to_sat()),
        first_point: r.point()?,
        limits: read_limits(r)?,
    })
}

impl Establishing {
    /// Appends the opening's record to `out` (the caller reuses it):
    /// every field, see the module docs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut w = W(out);
        w.u8(ESTABLISH_STATE_VERSION);
        w.side(self.role);
        w.u8(STATES
            .iter()
            .position(|s| *s == self.state)
            .expect("STATES lists every state") as u8);
        write_config(&mut w, &self.config);
        write_secrets(&mut w, &self.keys.secrets);
        write_pubkeys(&mut w, &self.keys.pubkeys);
        w.bytes(&self.temporary_channel_id.0);
        w.u64(self.funding_satoshis.0);
        w.u64(self.push_msat.0);
        w.u32(self.feerate_per_kw);
        write_channel_type(&mut w, self.channel_type.commitment);
        w.bool(self.channel_type.scid_alias);
        w.bool(self.channel_type.zeroconf);
        write_shutdown_terms(&mut w, &self.shutdown_terms);
        write_limits(&mut w, &self.local_limits);
        w.bool(self.remote.is_some());
        if let Some(remote) = &self.remote {
            write_remote(&mut w, remote);
        }
        w.u32(self.minimum_depth);
        w.bool(self.params.is_some());
        if let Some(params) = &self.params {
            write_params(&mut w, params);
        }
        w.bool(self.channel_id.is_some());
        if let Some(id) = &self.channel_id {
            w.bytes(&id.0);
        }
        w.bool(self.holder_signature.is_some());
        if let Some(sig) = &self.holder_signature {
            w.sig(sig);
        }
        w.bool(self.alias.is_some());
        if let Some(alias) = self.alias {
            w.u64(alias.0);
        }
        w.point(&self.second_point);
        w.bool(self.ready_sent);
        w.bool(self.remote_ready.is_some());
        if let Some((point, alias)) = &self.remote_ready {
            w.point(point);
            w.bool(alias.is_some());
            if let Some(alias) = alias {
                w.u64(alias.0);
            }
        }
        w.u64(self.version);
        write_outbox(&mut w, &self.outbox);
        seal(out, start);
    }

    /// Reads a record written by [`Establishing::encode`]: the exact
    /// opening that was encoded, or why the bytes are not one. Never
    /// panics, on any input. A restarted node then calls
    /// [`Establishing::handle_restart`].
    pub fn decode(bytes: &[u8]) -> Result<Establishing, DecodeError> {
        unseal(bytes, ESTABLISH_STATE_VERSION, read_establishing)
    }

    /// The node restarted from a record just decoded: see the module docs
    /// for what is released, dropped and sent again. Call before any
    /// other input.
    pub fn handle_restart(&mut self) {
        self.outbox.release_after_restart();
        self.outbox.drop_sends();
        self.ready_sent = false;
        self.version += 1;
    }
}

fn read_establishing(r: &mut R<'_>) -> Result<Establishing, DecodeError> {
    let role = r.side()?;
    let state = *STATES
        .get(usize::from(r.u8()?))
        .ok_or(DecodeError::Invalid("establishment state"))?;
    let config = read_config(r)?;
    let keys = LocalKeys {
        secrets: read_secrets(r)?,
        pubkeys: read_pubkeys(r)?,
    };
    let temporary_channel_id = ChannelId(r.arr()?);
    let funding_satoshis = Sat(r.u64()?);
    let push_msat = Msat(r.u64()?);
    let feerate_per_kw = r.u32()?;
    let channel_type = NegotiatedType {
        commitment: read_channel_type(r)?,
        scid_alias: r.bool()?,
        zeroconf: r.bool()?,
    };
    let e = Establishing {
        role,
        state,
        config,
        keys,
        temporary_channel_id,
        funding_satoshis,
        push_msat,
        feerate_per_kw,
        channel_type,
        shutdown_terms: read_shutdown_terms(r)?,
        local_limits: read_limits(r)?,
        remote: r.option(read_remote)?,
        minimum_depth: r.u32()?,
        params: r.option(read_params)?,
        channel_id: r.option(|r| r.arr().map(ChannelId))?,
        holder_signature: r.option(R::sig)?,
        alias: r.option(|r| r.u64().map(ShortChannelId))?,
        second_point: r.point()?,
        ready_sent: r.bool()?,
        remote_ready: r.option(|r| Ok((r.point()?, r.option(|r| r.u64().map(ShortChannelId))?)))?,
        version: r.u64()?,
        outbox: read_outbox(r)?,
    };
    check(&e)?;
    Ok(e)
}

/// What the state machine relies on (its `expect`s and the arithmetic of
/// commitment 0), checked on a record just read.
fn check(e: &Establishing) -> Result<(), DecodeError> {
    use EstablishState::*;
    let invalid = DecodeError::Invalid;
    let role_holds = match e.state {
        AwaitingAccept | AwaitingFundingTx | AwaitingFundingSigned => e.role == Side::Local,
        AwaitingFundingCreated | SigningFundingSigned => e.role == Side::Remote,
        AwaitingReady => true,
    };
    if !role_holds {
        return Err(invalid("state of the other role"));
    }
    if e.remote.is_some() != (e.state != AwaitingAccept) {
        return Err(invalid("peer's side"));
    }
    // The funding is fixed when it is staged, before the state moves on.
    let funded = matches!(
        e.state,
        AwaitingFundingSigned | SigningFundingSigned | AwaitingReady
    );
    if e.params.is_some() != e.channel_id.is_some()
        || (funded && e.params.is_none())
        || (e.remote.is_none() && e.params.is_some())
    {
        return Err(invalid("funding"));
    }
    if let Some(params) = &e.params {
        let derived = e
            .derive_funding(params.funding_outpoint())
            .map_err(|_| invalid("funding outpoint"))?;
        if derived.0 != *params || Some(derived.1) != e.channel_id {
            return Err(invalid("parameters do not match the funding"));
        }
    }
    let verified = matches!(e.state, SigningFundingSigned | AwaitingReady);
    if e.holder_signature.is_some() != verified {
        return Err(invalid("holder signature"));
    }
    if (e.ready_sent || e.remote_ready.is_some()) && e.state != AwaitingReady {
        return Err(invalid("channel_ready before commitment 0 is signed"));
    }
    if e.channel_type.scid_alias
        && (e.alias.is_none() || e.remote_ready.is_some_and(|(_, alias)| alias.is_none()))
    {
        return Err(invalid("option_scid_alias without an alias"));
    }
    if e.funding_satoshis.0 > bitcoin::Amount::MAX_MONEY.to_sat()
        || e.push_msat.0 > e.funding_satoshis.0 * 1000
        || e.funding_satoshis.0 * 1000 - e.push_msat.0
            < initial_funder_charge_msat(e.channel_type, e.feerate_per_kw)
    {
        return Err(invalid("funding and push"));
    }
    if e.version == u64::MAX {
        return Err(invalid("version"));
    }
    Ok(())
}
