//! Encoders and decoders of a channel record's closing parts: the `shutdown` terms and
//! exchange, the legacy `closing_signed` negotiation and `option_simple_close`.

use super::*;

pub(crate) fn write_script(w: &mut W<'_>, s: &Option<ScriptBuf>) {
    w.bool(s.is_some());
    if let Some(s) = s {
        w.blob(s.as_bytes());
    }
}

pub(crate) fn read_script(r: &mut R<'_>) -> Result<Option<ScriptBuf>, DecodeError> {
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

/// The `shutdown` exchange (its terms, agreed at establishment, are written apart: they are
/// part of the channel's static record).
pub(crate) fn write_shutdown(w: &mut W<'_>, state: &ShutdownState) {
    w.bool(state.local.is_some());
    if let Some((script, seq)) = &state.local {
        w.blob(script.as_bytes());
        w.u64(*seq);
    }
    write_script(w, &state.remote);
}

pub(crate) fn write_proposal(w: &mut W<'_>, p: &Proposal) {
    w.u64(p.fee);
    w.u64(p.min);
    w.u64(p.max);
}

pub(crate) fn read_proposal(r: &mut R<'_>) -> Result<Proposal, DecodeError> {
    Ok(Proposal {
        fee: r.u64()?,
        min: r.u64()?,
        max: r.u64()?,
    })
}

pub(crate) fn write_closing(w: &mut W<'_>, c: &ClosingState) {
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

pub(crate) fn write_terms(w: &mut W<'_>, t: &CloseTerms) {
    w.blob(t.closer_script.as_bytes());
    w.blob(t.closee_script.as_bytes());
    w.u64(t.fee);
    w.u32(t.locktime);
}

pub(crate) fn read_terms(r: &mut R<'_>) -> Result<CloseTerms, DecodeError> {
    Ok(CloseTerms {
        closer_script: ScriptBuf::from_bytes(r.blob("closer script")?.to_vec()),
        closee_script: ScriptBuf::from_bytes(r.blob("closee script")?.to_vec()),
        fee: r.u64()?,
        locktime: r.u32()?,
    })
}

pub(crate) fn read_field(r: &mut R<'_>) -> Result<SigField, DecodeError> {
    SigField::from_type(r.u8()?).ok_or(DecodeError::Invalid("closing signature field"))
}

pub(crate) fn write_simple(w: &mut W<'_>, s: &SimpleState) {
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

pub(crate) fn read_simple(r: &mut R<'_>) -> Result<SimpleState, DecodeError> {
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

pub(crate) fn read_closing(r: &mut R<'_>) -> Result<ClosingState, DecodeError> {
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

pub(crate) fn read_shutdown(r: &mut R<'_>) -> Result<ShutdownState, DecodeError> {
    let local = r.option(|r| {
        let script = ScriptBuf::from_bytes(r.blob("shutdown script")?.to_vec());
        Ok((script, r.u64()?))
    })?;
    Ok(ShutdownState {
        local,
        remote: read_script(r)?,
    })
}
