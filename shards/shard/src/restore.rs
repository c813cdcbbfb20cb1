//! Rebuilding shards from what the store loaded (`lnhub_schema::Loaded`): the hub's onion
//! replay set is refilled, every channel, channel in establishment and forward link goes to
//! the shard that owns its peer *now* ([`crate::shard_of`]), so a restart with another shard
//! count finds everything, and every shard learns every channel's route. A record that does
//! not decode stops the restore with an error naming it: a channel is never skipped.

use lnhub_onion::ReplaySet;
use lnhub_schema::Loaded;
use lnhub_wire::types::ChannelId;

use rayon::prelude::*;

use crate::shard::{decode_channel, ForwardLink, Origin, Shard};
use crate::shard_of;

/// Restores `loaded` into `shards` (fresh, in index order) and `replays` (the hub's replay
/// set, empty). Each channel's `Channel::handle_restart` runs, and links with a recorded
/// resolution are sent upstream again at each shard's first turn.
pub fn restore(
    shards: &mut [Shard],
    loaded: &Loaded,
    replays: &mut ReplaySet,
) -> Result<(), String> {
    let n = shards.len();
    assert!(n > 0, "at least one shard");
    // Decoding (points parsed and checked, the record's invariants) is most of a restore's
    // cost and independent per channel: it runs on the rayon pool; inserting is sequential.
    let decoded: Vec<_> = loaded
        .channels
        .par_iter()
        .map(|(id, record)| {
            let htlcs = loaded.htlcs_of(id);
            let channel = decode_channel(record, htlcs)
                .map_err(|e| format!("channel {id}: state record refused: {e:?}"))?;
            if channel.channel_id() != *id {
                return Err(format!(
                    "channel {id}: its state record is channel {}'s",
                    channel.channel_id()
                ));
            }
            Ok((
                channel,
                htlcs
                    .iter()
                    .map(|(_, p, h, _)| (*p, *h))
                    .collect::<Vec<_>>(),
            ))
        })
        .collect::<Result<_, String>>()?;
    for ((_, record), (channel, htlcs)) in loaded.channels.iter().zip(decoded) {
        let s = shard_of(&record.header.peer, n);
        shards[s].insert_restored(channel, record, htlcs);
    }
    for (id, record) in &loaded.openings {
        let s = shard_of(&record.header.peer, n);
        shards[s]
            .restore_opening(record)
            .map_err(|e| format!("channel {id} (opening): state record refused: {e:?}"))?;
    }
    let shard_for = |id: &ChannelId| loaded.peer_of(id).map(|peer| shard_of(&peer, n));
    for &(expiry, tag, channel_id, htlc_id) in &loaded.replays {
        match replays.restore(tag, expiry) {
            Ok(_) => {
                if let Some(s) = shard_for(&channel_id) {
                    shards[s].restore_replay_origin(tag, channel_id, htlc_id);
                }
            }
            Err(_) => {
                log::warn!("replay set full while restoring it: older onions not refused");
                break;
            }
        }
    }
    // Every shard forwards to every channel: each learns all routes.
    let routes: Vec<_> = shards.iter().flat_map(|s| s.own_routes()).collect();
    for shard in shards.iter_mut() {
        for &(scid, route) in &routes {
            shard.learn_route(scid, route);
        }
    }
    for (out_channel_id, out_htlc_id, record) in &loaded.links {
        let in_shard = shard_for(&record.in_channel_id);
        // The link lives with its outgoing channel; without it (an inconsistency the channel's
        // own record would have prevented), with the incoming one, so the resolution it may
        // hold still reaches upstream.
        let Some(home) = shard_for(out_channel_id).or(in_shard) else {
            log::warn!(
                "forward link {out_channel_id}/{out_htlc_id}: neither channel is stored; dropped"
            );
            continue;
        };
        let link = ForwardLink {
            out_channel_id: *out_channel_id,
            out_htlc_id: *out_htlc_id,
            origin: Origin {
                shard: in_shard.unwrap_or(home),
                channel_id: record.in_channel_id,
                htlc_id: record.in_htlc_id,
            },
            in_amount_msat: record.in_amount_msat,
            out_amount_msat: record.out_amount_msat,
            added_at: record.added_at,
            resolution: record.resolution.clone(),
        };
        shards[home].restore_link(link);
    }
    Ok(())
}
