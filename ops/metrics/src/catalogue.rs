//! Every metric lnhubd exports: name, type, help text, label names and bucket layout. The
//! daemon writes its scrape from these constants only, the dashboard's test checks its
//! expressions against [`ALL`], and README "Operating lnhub" lists them.
//!
//! Label values come from bounded sets: `outcome` (3), `code` (the BOLT 4 failure names of
//! [`crate::labels`], plus `unknown`), `type` (the BOLT message names, plus `other`),
//! `shard` (the configured shard count), `state` (a handful), `direction` (2), `queue` (2),
//! and `channel`, one per channel, for the first [`MAX_CHANNEL_SERIES`] channels only.

use crate::histogram::{self, Layout};

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at zero with the process); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Fixed buckets, with `_bucket`, `_sum` and `_count` series.
    Histogram(&'static Layout),
}

/// One metric family.
#[derive(Debug)]
pub struct Metric {
    /// Full name, `lnhub_` prefix included.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names, in the order samples give them.
    pub labels: &'static [&'static str],
}

impl Metric {
    /// The type word of `# TYPE`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

/// Per-channel series (balances, capacity) are exported for this many channels at most, so a
/// hub with many channels does not flood Prometheus; the totals cover every channel.
pub const MAX_CHANNEL_SERIES: usize = 1000;

macro_rules! metrics {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:expr, [$($label:literal),*], $help:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: Metric = Metric {
                name: $name,
                help: $help,
                kind: $kind,
                labels: &[$($label),*],
            };
        )*
        /// Every metric, in exposition order.
        pub const ALL: &[&Metric] = &[$(&$id),*];
    };
}

use Kind::{Counter, Gauge};

metrics! {
    /// Build identity.
    BUILD_INFO = "lnhub_build_info", Gauge, ["version"],
        "Always 1; the version label says which build runs";
    /// Start-up time.
    STARTUP_SECONDS = "lnhub_startup_seconds", Gauge, [],
        "Seconds from process start to listening (store load and shard rebuild included)";
    /// Block height.
    BLOCK_HEIGHT = "lnhub_block_height", Gauge, [],
        "Best block height the hub knows";
    /// Forwards by outcome.
    FORWARDS = "lnhub_forwards_total", Counter, ["outcome", "code"],
        "Incoming HTLCs resolved: settled, failed downstream, or local_failed by the hub with a BOLT 4 code";
    /// Fees.
    FEES = "lnhub_forward_fees_msat_total", Counter, [],
        "Fees earned by settled forwards (incoming minus outgoing amount), msat";
    /// Volume.
    VOLUME = "lnhub_forward_volume_msat_total", Counter, [],
        "Outgoing amount of settled forwards, msat";
    /// Incoming commit to outgoing add.
    FORWARD_ADD_SECONDS = "lnhub_forward_add_seconds", Kind::Histogram(&histogram::LATENCY), [],
        "From an incoming HTLC's irrevocable commitment (when the hub may first forward it) to the outgoing update_add_htlc";
    /// Incoming commit to resolution upstream.
    FORWARD_RESOLVE_SECONDS = "lnhub_forward_resolve_seconds", Kind::Histogram(&histogram::LATENCY), ["outcome"],
        "From an incoming HTLC's irrevocable commitment to its fulfill or fail sent upstream";
    /// In-flight HTLCs.
    HTLCS_IN_FLIGHT = "lnhub_htlcs_in_flight", Gauge, ["direction"],
        "HTLCs in the hub's channels: incoming (offered by peers) and outgoing (offered by the hub)";
    /// In-flight msat.
    HTLCS_IN_FLIGHT_MSAT = "lnhub_htlcs_in_flight_msat", Gauge, ["direction"],
        "Amount of the HTLCs in the hub's channels, msat";
    /// Forwards waiting for their outgoing HTLC to resolve.
    FORWARDS_IN_FLIGHT = "lnhub_forwards_in_flight", Gauge, [],
        "Forwards whose outgoing HTLC is added and not yet resolved upstream";
    /// Channels by state.
    CHANNELS = "lnhub_channels", Gauge, ["state"],
        "Channels by state: normal, disconnected, shutting_down, closed, failed, opening";
    /// Capacity of a channel.
    CHANNEL_CAPACITY = "lnhub_channel_capacity_msat", Gauge, ["channel"],
        "Capacity of a channel (label: its short channel id or alias), msat";
    /// Our balance.
    CHANNEL_LOCAL_BALANCE = "lnhub_channel_local_balance_msat", Gauge, ["channel"],
        "The hub's balance in a channel, HTLCs in flight excluded, msat";
    /// Their balance.
    CHANNEL_REMOTE_BALANCE = "lnhub_channel_remote_balance_msat", Gauge, ["channel"],
        "The peer's balance in a channel, HTLCs in flight excluded, msat";
    /// Total local balance.
    LOCAL_BALANCE = "lnhub_local_balance_msat", Gauge, [],
        "The hub's balance over every channel, HTLCs in flight excluded, msat";
    /// Total remote balance.
    REMOTE_BALANCE = "lnhub_remote_balance_msat", Gauge, [],
        "The peers' balance over every channel, HTLCs in flight excluded, msat";
    /// Channel events.
    CHANNELS_OPENED = "lnhub_channels_opened_total", Counter, [],
        "Inbound channels that reached normal operation";
    /// Closes.
    CHANNELS_CLOSED = "lnhub_channels_closed_total", Counter, [],
        "Channels closed cooperatively (closing transaction signed)";
    /// Failures.
    CHANNELS_FAILED = "lnhub_channels_failed_total", Counter, [],
        "Channels failed with an error (force close due)";
    /// Peers.
    PEERS = "lnhub_peers_connected", Gauge, [],
        "Peers connected (init exchanged)";
    /// Connections.
    CONNECTIONS = "lnhub_connections", Gauge, [],
        "Open connections, handshakes included";
    /// Messages received.
    MESSAGES_RECEIVED = "lnhub_messages_received_total", Counter, ["type"],
        "Lightning messages received from peers, by BOLT message name";
    /// Messages sent.
    MESSAGES_SENT = "lnhub_messages_sent_total", Counter, ["type"],
        "Lightning messages sent to peers, by BOLT message name";
    /// Bytes in.
    BYTES_RECEIVED = "lnhub_received_bytes_total", Counter, [],
        "Bytes read from peer sockets (BOLT 8 framing included)";
    /// Bytes out.
    BYTES_SENT = "lnhub_sent_bytes_total", Counter, [],
        "Bytes written to peer sockets (BOLT 8 framing included)";
    /// Onions.
    ONIONS_PEELED = "lnhub_onions_peeled_total", Counter, [],
        "Onion packets peeled";
    /// Replays.
    REPLAYS_REFUSED = "lnhub_onion_replays_refused_total", Counter, [],
        "Onions refused as replays (or with the replay set full)";
    /// Signatures.
    SIGNATURES_VERIFIED = "lnhub_signatures_verified_total", Counter, [],
        "Commitment and HTLC signatures verified";
    /// Commitments.
    COMMITMENTS_SIGNED = "lnhub_commitments_signed_total", Counter, [],
        "commitment_signed messages produced";
    /// Queue depth.
    SHARD_QUEUE_DEPTH = "lnhub_shard_queue_depth", Gauge, ["shard", "queue"],
        "Inputs waiting in a shard's queue: from peers (bounded) or from other shards";
    /// Turns.
    SHARD_TURNS = "lnhub_shard_turns_total", Counter, ["shard"],
        "Turns a shard ran";
    /// Inputs.
    SHARD_INPUTS = "lnhub_shard_inputs_total", Counter, ["shard"],
        "Inputs a shard handled";
    /// Turn time.
    SHARD_TURN_SECONDS = "lnhub_shard_turn_seconds", Kind::Histogram(&histogram::DURATION), ["shard"],
        "Duration of a shard turn";
    /// Inputs per turn.
    SHARD_TURN_INPUTS = "lnhub_shard_turn_inputs", Kind::Histogram(&histogram::COUNT), ["shard"],
        "Inputs taken by one shard turn";
    /// Peel batches.
    PEEL_BATCH = "lnhub_onion_peel_batch_size", Kind::Histogram(&histogram::COUNT), [],
        "Onions peeled in one rayon batch";
    /// Verify batches.
    VERIFY_BATCH = "lnhub_signature_verify_batch_size", Kind::Histogram(&histogram::COUNT), [],
        "Signatures verified in one rayon batch";
    /// Sign batches.
    SIGN_BATCH = "lnhub_commitment_sign_batch_size", Kind::Histogram(&histogram::COUNT), [],
        "commitment_signed messages produced in one rayon batch";
    /// Shard submissions.
    SHARD_COMMITS = "lnhub_shard_commits_total", Counter, ["shard"],
        "Batches a shard submitted to the store";
    /// Store commits.
    STORE_COMMITS = "lnhub_store_commits_total", Counter, [],
        "Group commits: journal entries synced (one fdatasync each), every shard's batches in one";
    /// Store records.
    STORE_RECORDS = "lnhub_store_records_total", Counter, [],
        "Records written or deleted (group commits)";
    /// Store bytes.
    STORE_BYTES = "lnhub_store_written_bytes_total", Counter, [],
        "Bytes of keys and values committed";
    /// Commit latency.
    STORE_COMMIT_SECONDS = "lnhub_store_commit_seconds", Kind::Histogram(&histogram::DURATION), [],
        "Duration of one group commit (journal write and fdatasync)";
    /// Commit size.
    STORE_COMMIT_RECORDS = "lnhub_store_commit_records", Kind::Histogram(&histogram::COUNT), [],
        "Records in one group commit";
    /// Commit bytes.
    STORE_COMMIT_BYTES = "lnhub_store_commit_bytes", Kind::Histogram(&histogram::BYTES), [],
        "Bytes of keys and values in one group commit";
    /// Checkpoints.
    STORE_CHECKPOINTS = "lnhub_store_checkpoints_total", Counter, [],
        "LMDB transactions applying the journal's group commits to the tables";
    /// Checkpoint time.
    STORE_CHECKPOINT_SECONDS = "lnhub_store_checkpoint_seconds_total", Counter, [],
        "Time spent in checkpoints, LMDB's syncs included";
    /// Pruned log entries.
    STORE_FORWARDS_PRUNED = "lnhub_store_forwards_pruned_total", Counter, [],
        "Forwarding-log entries pruned by age";
    /// Blocks connected.
    CHAIN_BLOCKS_CONNECTED = "lnhub_chain_blocks_connected_total", Counter, [],
        "Blocks that joined the best chain as the hub followed its bitcoind";
    /// Blocks disconnected.
    CHAIN_BLOCKS_DISCONNECTED = "lnhub_chain_blocks_disconnected_total", Counter, [],
        "Blocks that left the best chain (reorgs) as the hub followed its bitcoind";
    /// Poll failures.
    CHAIN_POLL_ERRORS = "lnhub_chain_poll_errors_total", Counter, [],
        "Polls of the bitcoind that failed (unreachable, refused, inconsistent answers)";
    /// Outputs watched.
    CHAIN_WATCHED_OUTPUTS = "lnhub_chain_watched_outputs", Gauge, [],
        "Funding outputs the chain thread watches (channels and openings)";
    /// Broadcasts taken.
    CHAIN_BROADCASTS = "lnhub_chain_broadcasts_total", Counter, [],
        "Transactions bitcoind took from the hub (funding, closing, withdrawals)";
    /// Broadcasts pending.
    CHAIN_BROADCASTS_PENDING = "lnhub_chain_broadcasts_pending", Gauge, [],
        "Transactions sent again at each block until they confirm";
    /// Wallet balance.
    WALLET_BALANCE = "lnhub_wallet_balance_sat", Gauge, ["state"],
        "The on-chain wallet's balance by state: confirmed, unconfirmed, immature";
}
