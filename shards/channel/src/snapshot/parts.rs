//! Encoders and decoders of a channel record's parts: parameters, keys, limits, policy and
//! secrets; the books (HTLCs, inline or lean, and fee updates) with the invariants a decoded
//! book must hold; and the outbox with its held effects.

use super::*;

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

pub(crate) fn write_removal_kind(w: &mut W<'_>, k: &RemovalKind) {
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

pub(crate) fn read_removal_kind(r: &mut R<'_>) -> Result<RemovalKind, DecodeError> {
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

pub(crate) fn write_htlc(w: &mut W<'_>, h: &Htlc, lean: bool) {
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

pub(crate) fn read_htlc(r: &mut R<'_>, lookup: &mut HtlcLookup<'_>) -> Result<Htlc, DecodeError> {
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

pub(crate) fn write_book(w: &mut W<'_>, b: &Book, lean: bool) {
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

pub(crate) fn read_book(r: &mut R<'_>, lookup: &mut HtlcLookup<'_>) -> Result<Book, DecodeError> {
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
pub(crate) fn check_book(b: &Book) -> Result<(), DecodeError> {
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

pub(crate) fn write_effect(w: &mut W<'_>, e: &Effect) {
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
            write_removal_kind(w, resolution);
        }
    }
}

pub(crate) fn read_effect(r: &mut R<'_>) -> Result<Effect, DecodeError> {
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
            resolution: read_removal_kind(r)?,
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
