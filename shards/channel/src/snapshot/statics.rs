//! The channel's static part: what is fixed once the channel is operational (its id, the
//! funding and both sides' keys and parameters, both sides' limits, our secrets, our alias,
//! the terms agreed about closing), which a store writes once, in a record of its own
//! ([`Channel::encode_static`]), instead of with every commitment round.
//!
//! Nothing in this crate changes these fields after [`Channel::from_funded`] (or a decode):
//! each is set from the establishment's outcome and only read afterwards. [`ChannelPolicy`]
//! (the dust exposure and `update_fee` bounds) is not among them, though nothing changes it
//! today either: it is the node's configuration, not an agreement with the peer, so an
//! operator's change to it must not need a rewrite of the static record; nor are the
//! funder and capacity the books repeat, which the decoder checks against the static part's
//! funding (a static record paired with another channel's progress is refused).

use super::*;

/// The static part, as read from a static record ([`Channel::decode_parts`]).
#[derive(Clone, Debug)]
pub(crate) struct Statics {
    pub(crate) channel_id: ChannelId,
    pub(crate) params: ChannelParams,
    pub(crate) local_limits: SideLimits,
    pub(crate) remote_limits: SideLimits,
    pub(crate) secrets: ChannelSecrets,
    pub(crate) local_alias: Option<ShortChannelId>,
    pub(crate) shutdown_terms: ShutdownTerms,
}

/// The body of a static record: the static fields of `c`, in a fixed order.
pub(crate) fn write_statics(w: &mut W<'_>, c: &Channel) {
    w.bytes(&c.channel_id.0);
    write_params(w, &c.params);
    write_limits(w, &c.local_limits);
    write_limits(w, &c.remote_limits);
    write_secrets(w, &c.secrets);
    write_alias(w, c.local_alias);
    write_shutdown_terms(w, &c.shutdown_terms);
}

pub(crate) fn read_statics(r: &mut R<'_>) -> Result<Statics, DecodeError> {
    Ok(Statics {
        channel_id: ChannelId(r.arr()?),
        params: read_params(r)?,
        local_limits: read_limits(r)?,
        remote_limits: read_limits(r)?,
        secrets: read_secrets(r)?,
        local_alias: read_alias(r)?,
        shutdown_terms: read_shutdown_terms(r)?,
    })
}

pub(crate) fn write_alias(w: &mut W<'_>, alias: Option<ShortChannelId>) {
    w.bool(alias.is_some());
    if let Some(a) = alias {
        w.u64(a.0);
    }
}

pub(crate) fn read_alias(r: &mut R<'_>) -> Result<Option<ShortChannelId>, DecodeError> {
    r.option(|r| r.u64().map(ShortChannelId))
}

/// Where a record's static fields come from while its body is read: the body itself
/// (`None`: a whole record) or a static record read before (a progress record). A whole
/// record keeps each static field where version 6 put it, so one reader serves every layout.
pub(crate) fn fixed<T>(
    r: &mut R<'_>,
    given: Option<&Statics>,
    field: impl FnOnce(&Statics) -> T,
    read: impl FnOnce(&mut R<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    match given {
        Some(s) => Ok(field(s)),
        None => read(r),
    }
}
