//! One Prometheus scrape: every shard's report, the connection room's figures and the store
//! writer's, folded and written with the names of [`lnhub_metrics::catalogue`].

use lnhub_engine::{ChannelState, Counters, ShardReport};
use lnhub_metrics::catalogue::{self as m, MAX_CHANNEL_SERIES};
use lnhub_metrics::labels::{self, FAILURE_SLOTS, MESSAGE_SLOTS};
use lnhub_metrics::Exposition;
use std::sync::atomic::Ordering;

use super::{Context, ANSWER_TIMEOUT};
use crate::net::{NetCommand, NetStats};

/// The states `lnhub_channels` always has a series for.
const STATES: [ChannelState; 5] = [
    ChannelState::Normal,
    ChannelState::Disconnected,
    ChannelState::ShuttingDown,
    ChannelState::Closed,
    ChannelState::Failed,
];

/// Everything a scrape reports, gathered.
pub struct Figures {
    /// Every shard's report, in shard order.
    pub reports: Vec<ShardReport>,
    /// Each shard's queue depths (from peers, from shards).
    pub depths: Vec<(usize, usize)>,
    /// The connection room's.
    pub net: NetStats,
    /// The store writer's.
    pub store: lnhub_store::StoreStats,
    /// The store writer's histograms.
    pub commits: lnhub_store::CommitHistograms,
    /// Process start to listening, seconds.
    pub startup_secs: f64,
    /// The chain thread's figures.
    pub chain: ChainFigures,
}

/// Gathers the figures and writes the scrape.
pub fn scrape(ctx: &Context) -> Result<String, String> {
    let reports = ctx.engine.reports(ANSWER_TIMEOUT)?;
    let net = ctx.ask_net(NetCommand::Stats)?;
    Ok(render(&Figures {
        reports,
        depths: ctx.engine.queue_depths(),
        net,
        store: ctx.store.stats(),
        commits: ctx.store.histograms(),
        startup_secs: ctx.startup.as_secs_f64(),
        chain: ChainFigures::read(&ctx.chain, ctx.wallet.is_some()),
    }))
}

/// What the chain thread publishes (its own atomics), as one scrape reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainFigures {
    /// Blocks connected, disconnected; failed polls.
    pub blocks: (u64, u64, u64),
    /// Funding outputs watched.
    pub watched: u64,
    /// Transactions bitcoind took; those sent again until they confirm.
    pub broadcasts: (u64, u64),
    /// The wallet's balance (confirmed, unconfirmed, immature), if there is a wallet.
    pub wallet: Option<[u64; 3]>,
}

impl ChainFigures {
    fn read(stats: &crate::chain::ChainStats, wallet: bool) -> ChainFigures {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ChainFigures {
            blocks: (
                get(&stats.connected),
                get(&stats.disconnected),
                get(&stats.poll_errors),
            ),
            watched: get(&stats.watched),
            broadcasts: (get(&stats.broadcasts), get(&stats.pending)),
            wallet: wallet.then(|| stats.wallet.each_ref().map(get)),
        }
    }
}

/// Writes the scrape of `f`.
pub fn render(f: &Figures) -> String {
    let mut total = Counters::default();
    for r in &f.reports {
        total.merge(&r.counters);
    }
    let channels = || f.reports.iter().flat_map(|r| r.channels.iter());
    let mut e = Exposition::new();
    e.family(&m::BUILD_INFO)
        .sample(&[env!("CARGO_PKG_VERSION")], 1.0);
    e.single(&m::STARTUP_SECONDS, f.startup_secs);
    let height = f.reports.iter().map(|r| r.height).max().unwrap_or(0);
    e.single(&m::BLOCK_HEIGHT, f64::from(height));

    let mut forwards = e.family(&m::FORWARDS);
    forwards.sample(&["settled", "none"], total.forwards_settled_total as f64);
    for slot in 0..FAILURE_SLOTS {
        let code = labels::failure_index_label(slot);
        let failed = total.forwards_failed_downstream[slot];
        // The encrypted failures (code unknown) always have a series: most failures are.
        if failed > 0 || slot == FAILURE_SLOTS - 1 {
            forwards.sample(&["failed", code], failed as f64);
        }
        let here = total.forwards_failed_here[slot];
        if here > 0 {
            forwards.sample(&["local_failed", code], here as f64);
        }
    }
    e.single(&m::FEES, total.fees_msat_total as f64);
    e.single(&m::VOLUME, total.volume_msat_total as f64);
    e.family(&m::FORWARD_ADD_SECONDS)
        .histogram(&[], &total.forward_add_nanos);
    let mut resolve = e.family(&m::FORWARD_RESOLVE_SECONDS);
    resolve.histogram(&["settled"], &total.forward_settle_nanos);
    resolve.histogram(&["failed"], &total.forward_fail_nanos);

    let (mut htlcs_in, mut htlcs_out) = ((0, 0), (0, 0));
    let (mut local, mut remote) = (0, 0);
    for c in channels() {
        htlcs_in.0 += c.htlcs_in.0;
        htlcs_in.1 += c.htlcs_in.1;
        htlcs_out.0 += c.htlcs_out.0;
        htlcs_out.1 += c.htlcs_out.1;
        local += c.local_msat;
        remote += c.remote_msat;
    }
    let mut h = e.family(&m::HTLCS_IN_FLIGHT);
    h.sample(&["incoming"], htlcs_in.0 as f64);
    h.sample(&["outgoing"], htlcs_out.0 as f64);
    let mut h = e.family(&m::HTLCS_IN_FLIGHT_MSAT);
    h.sample(&["incoming"], htlcs_in.1 as f64);
    h.sample(&["outgoing"], htlcs_out.1 as f64);
    let in_flight: usize = f.reports.iter().map(|r| r.forwards_in_flight).sum();
    e.single(&m::FORWARDS_IN_FLIGHT, in_flight as f64);

    let mut states = e.family(&m::CHANNELS);
    for state in STATES {
        let n = channels().filter(|c| c.state == state).count();
        states.sample(&[state.as_str()], n as f64);
    }
    let openings: usize = f.reports.iter().map(|r| r.openings).sum();
    states.sample(&["opening"], openings as f64);
    let listed: Vec<_> = channels().take(MAX_CHANNEL_SERIES).collect();
    let names: Vec<String> = listed.iter().map(|c| c.scid.to_string()).collect();
    let mut fam = e.family(&m::CHANNEL_CAPACITY);
    for (c, name) in listed.iter().zip(&names) {
        fam.sample(&[name], c.capacity_msat as f64);
    }
    let mut fam = e.family(&m::CHANNEL_LOCAL_BALANCE);
    for (c, name) in listed.iter().zip(&names) {
        fam.sample(&[name], c.local_msat as f64);
    }
    let mut fam = e.family(&m::CHANNEL_REMOTE_BALANCE);
    for (c, name) in listed.iter().zip(&names) {
        fam.sample(&[name], c.remote_msat as f64);
    }
    e.single(&m::LOCAL_BALANCE, local as f64);
    e.single(&m::REMOTE_BALANCE, remote as f64);
    e.single(&m::CHANNELS_OPENED, total.channels_opened_total as f64);
    e.single(&m::CHANNELS_CLOSED, total.channels_closed_total as f64);
    e.single(&m::CHANNELS_FAILED, total.channels_failed_total as f64);

    e.single(&m::PEERS, f.net.peers as f64);
    e.single(&m::CONNECTIONS, f.net.connections as f64);
    let mut fam = e.family(&m::MESSAGES_RECEIVED);
    for slot in 0..MESSAGE_SLOTS {
        fam.sample(
            &[labels::message_label(slot)],
            f.net.messages.received[slot] as f64,
        );
    }
    let mut fam = e.family(&m::MESSAGES_SENT);
    for slot in 0..MESSAGE_SLOTS {
        fam.sample(
            &[labels::message_label(slot)],
            f.net.messages.sent[slot] as f64,
        );
    }
    e.single(&m::BYTES_RECEIVED, f.net.bytes_received as f64);
    e.single(&m::BYTES_SENT, f.net.bytes_sent as f64);

    e.single(&m::ONIONS_PEELED, total.onions_peeled_total as f64);
    e.single(&m::REPLAYS_REFUSED, total.replays_refused_total as f64);
    e.single(
        &m::SIGNATURES_VERIFIED,
        total.signatures_verified_total as f64,
    );
    e.single(
        &m::COMMITMENTS_SIGNED,
        total.commitments_signed_total as f64,
    );

    let shard_names: Vec<String> = f.reports.iter().map(|r| r.shard.to_string()).collect();
    let mut fam = e.family(&m::SHARD_QUEUE_DEPTH);
    for (i, (peers, shards)) in f.depths.iter().enumerate() {
        let shard = i.to_string();
        fam.sample(&[&shard, "peers"], *peers as f64);
        fam.sample(&[&shard, "shards"], *shards as f64);
    }
    let per_shard = |e: &mut Exposition, metric, value: &dyn Fn(&Counters) -> u64| {
        let mut fam = e.family(metric);
        for (r, name) in f.reports.iter().zip(&shard_names) {
            fam.sample(&[name], value(&r.counters) as f64);
        }
    };
    per_shard(&mut e, &m::SHARD_TURNS, &|c| c.turns);
    per_shard(&mut e, &m::SHARD_INPUTS, &|c| c.inputs);
    let mut fam = e.family(&m::SHARD_TURN_SECONDS);
    for (r, name) in f.reports.iter().zip(&shard_names) {
        fam.histogram(&[name], &r.counters.turn_nanos);
    }
    let mut fam = e.family(&m::SHARD_TURN_INPUTS);
    for (r, name) in f.reports.iter().zip(&shard_names) {
        fam.histogram(&[name], &r.counters.turn_inputs);
    }
    e.family(&m::PEEL_BATCH).histogram(&[], &total.peel_batch);
    e.family(&m::VERIFY_BATCH)
        .histogram(&[], &total.verify_batch);
    e.family(&m::SIGN_BATCH).histogram(&[], &total.sign_batch);
    per_shard(&mut e, &m::SHARD_COMMITS, &|c| c.commits_total);

    e.single(&m::STORE_COMMITS, f.store.commits as f64);
    e.single(&m::STORE_RECORDS, f.store.records as f64);
    e.single(&m::STORE_BYTES, f.store.bytes as f64);
    e.family(&m::STORE_COMMIT_SECONDS)
        .histogram(&[], &f.commits.nanos);
    e.family(&m::STORE_COMMIT_RECORDS)
        .histogram(&[], &f.commits.records);
    e.family(&m::STORE_COMMIT_BYTES)
        .histogram(&[], &f.commits.bytes);
    e.single(&m::STORE_CHECKPOINTS, f.store.checkpoints as f64);
    e.single(
        &m::STORE_CHECKPOINT_SECONDS,
        f.store.checkpoint_nanos as f64 / 1e9,
    );
    e.single(&m::STORE_FORWARDS_PRUNED, f.store.forwards_pruned as f64);
    let c = &f.chain;
    e.single(&m::CHAIN_BLOCKS_CONNECTED, c.blocks.0 as f64);
    e.single(&m::CHAIN_BLOCKS_DISCONNECTED, c.blocks.1 as f64);
    e.single(&m::CHAIN_POLL_ERRORS, c.blocks.2 as f64);
    e.single(&m::CHAIN_WATCHED_OUTPUTS, c.watched as f64);
    e.single(&m::CHAIN_BROADCASTS, c.broadcasts.0 as f64);
    e.single(&m::CHAIN_BROADCASTS_PENDING, c.broadcasts.1 as f64);
    // Without a wallet the family is declared with no samples.
    {
        let mut wallet = e.family(&m::WALLET_BALANCE);
        if let Some(sat) = c.wallet {
            for (state, sat) in ["confirmed", "unconfirmed", "immature"].iter().zip(sat) {
                wallet.sample(&[state], sat as f64);
            }
        }
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric of the catalogue appears in a scrape, even of an idle hub, each family
    /// once and in catalogue order.
    #[test]
    fn every_catalogued_metric_is_exported_once_in_order() {
        let text = render(&Figures {
            reports: vec![ShardReport {
                shard: 0,
                height: 0,
                counters: Counters::default(),
                channels: Vec::new(),
                openings: 0,
                forwards_in_flight: 0,
            }],
            depths: vec![(0, 0)],
            net: NetStats::default(),
            store: lnhub_store::StoreStats::default(),
            commits: lnhub_store::CommitHistograms::default(),
            startup_secs: 0.25,
            chain: ChainFigures {
                wallet: Some([1, 2, 3]),
                ..ChainFigures::default()
            },
        });
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let catalogue: Vec<&str> = m::ALL.iter().map(|m| m.name).collect();
        assert_eq!(typed, catalogue);
        assert!(text.contains("\nlnhub_startup_seconds 0.25\n"), "{text}");
        assert!(text.contains("lnhub_channels{state=\"opening\"} 0\n"));
        assert!(text.contains("lnhub_forwards_total{outcome=\"failed\",code=\"unknown\"} 0\n"));
        assert!(text.contains("lnhub_wallet_balance_sat{state=\"immature\"} 3\n"));
    }
}
