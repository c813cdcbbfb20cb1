//! The requirements BOLT 2 puts on the peer's `open_channel` and
//! `accept_channel` ("The `open_channel` Message" and "The
//! `accept_channel` Message", receiver requirements), each MUST as its own
//! check with its own message, and the MAYs as our
//! [`crate::config::PeerParamLimits`].
//!
//! Every failure is [`ChannelError::Close`]: send `error` for the
//! temporary channel and forget it (nothing is at stake yet).

use lnhub_wire::msgs::{AcceptChannel, OpenChannel};
use lnhub_wire::types::{Msat, Sat};

use crate::channel_type::NegotiatedType;
use crate::config::{
    EstablishConfig, PeerContext, LARGE_CHANNEL_FUNDING_SATOSHIS, MAX_ACCEPTED_HTLCS_LIMIT,
    MIN_DUST_LIMIT_SATOSHIS,
};
use crate::error::ChannelError;
use crate::establish::initial_funder_charge_msat;

/// The fields both messages share, as the sender announced them.
struct Announced {
    dust_limit_satoshis: Sat,
    max_htlc_value_in_flight_msat: Msat,
    channel_reserve_satoshis: Sat,
    htlc_minimum_msat: Msat,
    to_self_delay: u16,
    max_accepted_htlcs: u16,
}

fn close(msg: String) -> Result<(), ChannelError> {
    Err(ChannelError::Close(msg))
}

/// Checks common to both messages: the MUSTs on the sender's own
/// parameters and our MAYs.
fn check_announced(
    config: &EstablishConfig,
    funding: Sat,
    a: &Announced,
) -> Result<(), ChannelError> {
    let lim = &config.peer_limits;
    if a.to_self_delay > lim.max_to_self_delay {
        return close(format!(
            "to_self_delay {} above our maximum {}",
            a.to_self_delay, lim.max_to_self_delay
        ));
    }
    if a.max_accepted_htlcs > MAX_ACCEPTED_HTLCS_LIMIT {
        return close(format!(
            "max_accepted_htlcs {} above {MAX_ACCEPTED_HTLCS_LIMIT}",
            a.max_accepted_htlcs
        ));
    }
    if a.dust_limit_satoshis < MIN_DUST_LIMIT_SATOSHIS {
        return close(format!(
            "dust_limit_satoshis {} below {MIN_DUST_LIMIT_SATOSHIS}",
            a.dust_limit_satoshis
        ));
    }
    if a.dust_limit_satoshis > a.channel_reserve_satoshis {
        return close(format!(
            "dust_limit_satoshis {} above channel_reserve_satoshis {}",
            a.dust_limit_satoshis, a.channel_reserve_satoshis
        ));
    }
    if a.htlc_minimum_msat > lim.max_htlc_minimum_msat {
        return close(format!(
            "htlc_minimum_msat {} too large",
            a.htlc_minimum_msat
        ));
    }
    if a.max_htlc_value_in_flight_msat < lim.min_max_htlc_value_in_flight_msat {
        return close(format!(
            "max_htlc_value_in_flight_msat {} too small",
            a.max_htlc_value_in_flight_msat
        ));
    }
    let max_reserve = u128::from(funding.0)
        * u128::from(lim.max_channel_reserve_proportional_millionths)
        / 1_000_000;
    if u128::from(a.channel_reserve_satoshis.0) > max_reserve {
        return close(format!(
            "channel_reserve_satoshis {} too large",
            a.channel_reserve_satoshis
        ));
    }
    if a.max_accepted_htlcs < lim.min_max_accepted_htlcs {
        return close(format!(
            "max_accepted_htlcs {} too small",
            a.max_accepted_htlcs
        ));
    }
    if a.dust_limit_satoshis > lim.max_dust_limit_satoshis {
        return close(format!(
            "dust_limit_satoshis {} too large",
            a.dust_limit_satoshis
        ));
    }
    Ok(())
}

/// The fundee's checks of `open_channel`; returns the channel type.
pub fn check_open_channel(
    config: &EstablishConfig,
    ctx: &PeerContext,
    m: &OpenChannel,
) -> Result<NegotiatedType, ChannelError> {
    if m.chain_hash != config.chain_hash {
        return Err(ChannelError::close(format!(
            "unknown chain_hash {}",
            m.chain_hash
        )));
    }
    let Some(features) = &m.channel_type else {
        return Err(ChannelError::close("open_channel without channel_type"));
    };
    let Some(t) = NegotiatedType::from_features(features) else {
        return Err(ChannelError::close("channel_type is not a defined type"));
    };
    let announce = m.channel_flags & 1 != 0;
    if t.scid_alias && announce {
        return Err(ChannelError::close(
            "option_scid_alias on a channel to be announced",
        ));
    }
    if t.zeroconf && !ctx.trusted_for_zeroconf {
        return Err(ChannelError::close(
            "option_zeroconf from a peer we do not trust",
        ));
    }
    let funding_msat = m
        .funding_satoshis
        .to_msat()
        .ok_or_else(|| ChannelError::close("funding_satoshis overflows"))?;
    if m.push_msat > funding_msat {
        return Err(ChannelError::close(format!(
            "push_msat {} above funding_satoshis {}",
            m.push_msat, m.funding_satoshis
        )));
    }
    if m.funding_satoshis >= LARGE_CHANNEL_FUNDING_SATOSHIS && !ctx.large_channels {
        return Err(ChannelError::close(
            "funding_satoshis of 2^24 or more without option_support_large_channel",
        ));
    }
    if m.funding_satoshis < config.peer_limits.min_funding_satoshis {
        return Err(ChannelError::close(format!(
            "funding_satoshis {} too small",
            m.funding_satoshis
        )));
    }
    if m.feerate_per_kw < config.policy.min_feerate_per_kw
        || m.feerate_per_kw > config.policy.max_feerate_per_kw
    {
        return Err(ChannelError::close(format!(
            "feerate_per_kw {} outside [{}, {}]",
            m.feerate_per_kw, config.policy.min_feerate_per_kw, config.policy.max_feerate_per_kw
        )));
    }
    check_announced(
        config,
        m.funding_satoshis,
        &Announced {
            dust_limit_satoshis: m.dust_limit_satoshis,
            max_htlc_value_in_flight_msat: m.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis: m.channel_reserve_satoshis,
            htlc_minimum_msat: m.htlc_minimum_msat,
            to_self_delay: m.to_self_delay,
            max_accepted_htlcs: m.max_accepted_htlcs,
        },
    )?;
    // Commitment 0: the funder pays the full fee, and someone has more
    // than the reserve.
    let funder_msat = funding_msat.0 - m.push_msat.0;
    let charge = initial_funder_charge_msat(t, m.feerate_per_kw);
    if funder_msat < charge {
        return Err(ChannelError::close(format!(
            "funder's {funder_msat} msat cannot pay the initial fee of {charge} msat"
        )));
    }
    let reserve_msat = m.channel_reserve_satoshis.0 * 1000;
    if funder_msat - charge <= reserve_msat && m.push_msat.0 <= reserve_msat {
        return Err(ChannelError::close(
            "both initial balances are at or below channel_reserve_satoshis",
        ));
    }
    Ok(t)
}

/// The funder's checks of `accept_channel`. `our_reserve` is the
/// `channel_reserve_satoshis` we sent.
pub fn check_accept_channel(
    config: &EstablishConfig,
    funding: Sat,
    channel_type: NegotiatedType,
    our_reserve: Sat,
    m: &AcceptChannel,
) -> Result<(), ChannelError> {
    match m.channel_type.as_ref().map(NegotiatedType::from_features) {
        None => return Err(ChannelError::close("accept_channel without channel_type")),
        Some(t) if t != Some(channel_type) => {
            return Err(ChannelError::close(
                "accept_channel channel_type differs from open_channel",
            ))
        }
        Some(_) => {}
    }
    if m.minimum_depth > config.peer_limits.max_minimum_depth {
        return Err(ChannelError::close(format!(
            "minimum_depth {} too large",
            m.minimum_depth
        )));
    }
    if m.channel_reserve_satoshis < config.dust_limit_satoshis {
        return Err(ChannelError::close(format!(
            "channel_reserve_satoshis {} below our dust_limit_satoshis {}",
            m.channel_reserve_satoshis, config.dust_limit_satoshis
        )));
    }
    if our_reserve < m.dust_limit_satoshis {
        return Err(ChannelError::close(format!(
            "dust_limit_satoshis {} above the channel_reserve_satoshis {our_reserve} we asked",
            m.dust_limit_satoshis
        )));
    }
    check_announced(
        config,
        funding,
        &Announced {
            dust_limit_satoshis: m.dust_limit_satoshis,
            max_htlc_value_in_flight_msat: m.max_htlc_value_in_flight_msat,
            channel_reserve_satoshis: m.channel_reserve_satoshis,
            htlc_minimum_msat: m.htlc_minimum_msat,
            to_self_delay: m.to_self_delay,
            max_accepted_htlcs: m.max_accepted_htlcs,
        },
    )
}
