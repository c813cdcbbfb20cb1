//! A full LDK node (channels and payments, not only the connection layer) for the end-to-end
//! tests: [`LdkNode`].
//!
//! It is assembled from LDK 0.2's public API the way `lightning-background-processor` does it,
//! with test-sized parts: a `ChannelManager` and a `ChainMonitor` persisting to an in-memory
//! [`MemStore`] (or, with [`LdkNodeConfig::store_dir`], to `lightning-persister`'s
//! `FilesystemStore`, the `ChannelManager` included: see [`NodeStore`]), a `KeysManager`, a
//! [`FixedFeeEstimator`] (253 sat/kw by default), a [`RecordingBroadcaster`], a
//! `DefaultRouter` over an (empty, gossip-less) `NetworkGraph` with a `ProbabilisticScorer`,
//! and a `PeerManager` on `lightning-net-tokio`. A tokio task processes
//! LDK's events, HTLC forwards and outgoing messages every 20 ms (or sooner when LDK wakes it) and
//! records every [`Event`] in a log the test can wait on. Pending HTLC forwards are handed to
//! LDK at once by default, or after LDK's background processor's random delay
//! ([`ForwardDelay`]).
//!
//! By default there is no bitcoind. Channels are meant to be **zero-conf**: the funder builds
//! a funding transaction spending a fabricated segwit input (dummy witness), nothing is ever
//! mined, and the channel is usable as soon as both `channel_ready` messages are exchanged.
//! Blocks can be fabricated with [`LdkNode::connect_blocks`] / [`LdkNode::confirm_transaction`]
//! when a test needs a different height.
//!
//! **Real chain** (optional): with [`LdkNodeConfig::following`] the node starts at a real
//! regtest `bitcoind`'s tip, [`LdkNode::sync_chain`] brings its view (`ChannelManager` and
//! `ChainMonitor`, through `Confirm`) to that node's best chain, reorgs included, and with
//! [`LdkNodeConfig::wallet`] the funding transactions spend real coins of a [`TestWallet`]
//! (change back to it). LDK's broadcasts are still only recorded; [`LdkNode::broadcast_to`]
//! submits them to `bitcoind`. Channels may then wait for confirmations
//! ([`LdkNode::open_channel_pending`], blocks mined by the test, `sync_chain`). Fabricated
//! blocks and real ones do not mix on one node.
//!
//! All constructors and `async` methods must run inside a tokio runtime (multi-threaded for
//! more than one node).
//!
//! # What LDK needs from the hub
//!
//! **Connection** (`init`): LDK disconnects unless the hub's `init` sets (optional or
//! compulsory) every bit LDK requires: `option_data_loss_protect` (0/1), `var_onion_optin`
//! (8/9), `option_static_remotekey` (12/13), `payment_secret` (14/15), `option_channel_type`
//! (44/45); and if it sends the `networks` TLV it must list the regtest chain hash.
//!
//! **Zero-conf channel opened by this node to the hub** ([`LdkNode::open_zero_conf_channel`]):
//! * `init`: the hub should signal `option_anchors_zero_fee_htlc_tx` (bits 22/23) and
//!   `option_static_remotekey` (12/13) if it wants anchors; LDK then proposes the channel type
//!   `anchors_zero_fee_htlc_tx + static_remotekey` in `open_channel`'s `channel_type` TLV. If
//!   the hub answers with an `error` on the temporary channel id, LDK retries once with a
//!   downgraded type (static_remotekey only).
//! * `accept_channel` with `minimum_depth = 0` and the same `channel_type` echoed. Any non-zero
//!   depth makes LDK wait for confirmations that never come (this node then reports
//!   "channel pending but not ready").
//! * After `funding_signed`, the hub sends `channel_ready` at once, carrying the
//!   `short_channel_id` TLV (type 1): an **SCID alias** chosen by the hub. LDK sends its own
//!   `channel_ready` (with its alias) right after `funding_signed` too; LDK emits
//!   `ChannelReady` once both are exchanged.
//! * No real SCID ever exists, so two aliases name the channel: the **hub's** alias (in the
//!   hub's `channel_ready`) is what this node's invoices put in route hints, hence what payers'
//!   onions ask the hub to forward to; **LDK's** alias (in LDK's `channel_ready`) is what the
//!   hub's `channel_update` for the channel must carry (see below).
//!
//! **Route hint through the hub in this node's invoices** ([`LdkNode::create_invoice`] with
//! `route_hint_via`): `ChannelManager::create_bolt11_invoice` adds a hint for a channel only if
//! all of the following hold (`invoice_utils::sort_and_filter_channels`):
//! * the channel `is_channel_ready` (both `channel_ready`s exchanged);
//! * it has an inbound payment SCID: the alias from the **hub's** `channel_ready`
//!   (`short_channel_id` TLV) or, once confirmed, the real SCID. Without the alias TLV there is
//!   no hint;
//! * `counterparty.forwarding_info` is set, which happens only when LDK receives a
//!   **`channel_update` from the hub** (sent directly to the peer; the channel is private)
//!   whose `short_channel_id` is one LDK knows for the channel, i.e. **the alias LDK sent in its
//!   own `channel_ready`** (LDK's `outbound_scid_alias`) or the real SCID once one exists, with
//!   the direction bit (`channel_flags & 1`) set for the hub's side
//!   (`1` iff hub node id > LDK node id, lexicographically on the compressed keys). LDK does not
//!   check its signature or timestamp, but a correct one costs nothing. The hint takes
//!   `fee_base_msat`, `fee_proportional_millionths` and `cltv_expiry_delta` from it (and
//!   nothing else: the hint's `htlc_minimum_msat` / `htlc_maximum_msat` are LDK's own
//!   `htlc_minimum_msat` and `max_htlc_value_in_flight_msat` for the channel);
//! * the channel is not announced (private). A single announced channel with 7+ confirmations
//!   suppresses all hints.
//!
//! The hint then reads: `src_node_id` = hub, `short_channel_id` = the hub's alias (from the
//! hub's `channel_ready`). A payer reaching the hub asks it to forward to that SCID, so the hub
//! must map its own alias to the channel. LDK itself sends the hub a `channel_update` for the
//! private channel, with `short_channel_id` = the alias from the hub's `channel_ready`, right
//! after `channel_ready` and again after every `channel_reestablish`; the hub should do the
//! same (LDK keeps the last forwarding info in memory, so one update per channel suffices for
//! these tests). The selftest's middle LDK node shows the expected exchange.
//!
//! **Failures**: LDK 0.2 exposes no BOLT 4 failure code in its events outside its own tests;
//! [`PaymentFailure`] therefore also carries the `Onion Error[from <node>: <name>(0x<code>)]`
//! lines LDK logs when it decodes a failure onion ([`OnionError`]).
//!
//! Long because it assembles one LDK node whole (the parts listed above, the event task,
//! payments and the failure-log reader) behind the one type the tests drive; its parts only
//! make sense together.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hash_types::{BlockHash, TxMerkleNode, Txid};
use bitcoin::hashes::{sha256, sha256d, Hash};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{
    absolute::LockTime, transaction::Version, Amount, CompactTarget, Network, OutPoint, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Witness,
};
use lightning::chain::chaininterface::{BroadcasterInterface, ConfirmationTarget, FeeEstimator};
use lightning::chain::chainmonitor::ChainMonitor;
use lightning::chain::{BestBlock, Confirm, Filter};
use lightning::events::bump_transaction::BumpTransactionEvent;
use lightning::events::{
    ClosureReason, Event, EventsProvider, PathFailure, PaymentFailureReason, ReplayEvent,
};
use lightning::ln::channelmanager::{
    Bolt11InvoiceParameters, ChainParameters, PaymentId, RecipientOnionFields, Retry,
    SimpleArcChannelManager,
};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler, PeerManager};
use lightning::ln::types::ChannelId;
use lightning::onion_message::messenger::DefaultMessageRouter;
use lightning::routing::gossip::{NetworkGraph, NetworkUpdate};
use lightning::routing::router::{
    DefaultRouter, PaymentParameters, RouteParameters, RouteParametersConfig,
};
use lightning::routing::scoring::{
    ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::sign::{EntropySource, InMemorySigner, KeysManager, NodeSigner, Recipient};
use lightning::types::payment::{PaymentHash, PaymentPreimage};
use lightning::util::config::UserConfig;
use lightning::util::logger::{Level, Logger, Record};
use lightning::util::persist::{
    KVStoreSync, CHANNEL_MANAGER_PERSISTENCE_KEY, CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::Writeable;
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Description};
use lightning_net_tokio::SocketDescriptor;
use lightning_persister::fs_store::FilesystemStore;

use crate::bitcoind::{Bitcoind, TestWallet};
pub use crate::ldk_store::{MemStore, NodeStore, StoreCounters, StoreStats};

/// A BOLT 4 failure LDK decoded from a failure onion (parsed from its log line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnionError {
    /// The payment it failed, when LDK attached it to the log record.
    pub payment_hash: Option<PaymentHash>,
    /// The node that produced the failure.
    pub from: PublicKey,
    /// The failure code, e.g. `0x1007` (temporary_channel_failure).
    pub code: u16,
    /// LDK's name for it, e.g. `TemporaryChannelFailure`.
    pub name: String,
}

/// LDK's log lines go to stderr (shown on failure) when at or above the node's level; the
/// decoded onion errors are kept.
pub struct NodeLogger {
    name: String,
    level: Level,
    onion_errors: Mutex<Vec<OnionError>>,
}

impl NodeLogger {
    fn new(name: &str, level: Level) -> NodeLogger {
        NodeLogger {
            name: name.to_string(),
            level,
            onion_errors: Mutex::new(Vec::new()),
        }
    }
}

/// Parses `Onion Error[from <pubkey>: <Name>(0x<code>)...`.
fn parse_onion_error(line: &str, payment_hash: Option<PaymentHash>) -> Option<OnionError> {
    let rest = line.strip_prefix("Onion Error[from ")?;
    let (node, rest) = rest.split_once(": ")?;
    let (name, rest) = rest.split_once("(0x")?;
    let code = rest.split(')').next()?;
    Some(OnionError {
        payment_hash,
        from: node.parse().ok()?,
        code: u16::from_str_radix(code, 16).ok()?,
        name: name.to_string(),
    })
}

impl Logger for NodeLogger {
    fn log(&self, record: Record<'_>) {
        // Formatting every trace record would cost the node more CPU than its work (what an
        // LDK user's logger avoids too): only records that are printed, or may be a decoded
        // onion error (LDK logs those at `Info`), are formatted.
        if record.level < self.level && record.level != Level::Info {
            return;
        }
        let line = record.args.to_string();
        if line.starts_with("Onion Error[") {
            if let Some(e) = parse_onion_error(&line, record.payment_hash) {
                self.onion_errors.lock().unwrap().push(e);
            }
        }
        if record.level >= self.level {
            eprintln!("[{} {}] {}", self.name, record.level, line);
        }
    }
}

/// A fee estimator answering one settable feerate for every target.
pub struct FixedFeeEstimator(AtomicU32);

impl FeeEstimator for FixedFeeEstimator {
    fn get_est_sat_per_1000_weight(&self, _target: ConfirmationTarget) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Records every transaction LDK broadcasts.
#[derive(Default)]
pub struct RecordingBroadcaster(pub Mutex<Vec<Transaction>>);

impl BroadcasterInterface for RecordingBroadcaster {
    fn broadcast_transactions(&self, txs: &[&Transaction]) {
        self.0
            .lock()
            .unwrap()
            .extend(txs.iter().map(|tx| (*tx).clone()));
    }
}

/// The chain monitor of an [`LdkNode`].
pub type NodeChainMonitor = ChainMonitor<
    InMemorySigner,
    Arc<dyn Filter + Send + Sync>,
    Arc<RecordingBroadcaster>,
    Arc<FixedFeeEstimator>,
    Arc<NodeLogger>,
    Arc<NodeStore>,
    Arc<KeysManager>,
>;

/// The channel manager of an [`LdkNode`].
pub type NodeChannelManager =
    SimpleArcChannelManager<NodeChainMonitor, RecordingBroadcaster, FixedFeeEstimator, NodeLogger>;

/// The peer manager of an [`LdkNode`]: channels, no gossip, no onion messages.
pub type NodePeerManager = PeerManager<
    SocketDescriptor,
    Arc<NodeChannelManager>,
    Arc<IgnoringMessageHandler>,
    Arc<IgnoringMessageHandler>,
    Arc<NodeLogger>,
    Arc<IgnoringMessageHandler>,
    Arc<KeysManager>,
    Arc<NodeChainMonitor>,
>;

type Graph = NetworkGraph<Arc<NodeLogger>>;
type Scorer = ProbabilisticScorer<Arc<Graph>, Arc<NodeLogger>>;

/// What the node does with an `OpenChannelRequest` (inbound channels are always manually
/// accepted, see [`LdkNode::default_user_config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundChannelPolicy {
    /// `accept_inbound_channel_from_trusted_peer_0conf` (sends `minimum_depth = 0`), for every
    /// peer or, with [`LdkNodeConfig::trusted_peers`], for those; others get
    /// `accept_inbound_channel`.
    AcceptZeroConf,
    /// `accept_inbound_channel` (the configured `minimum_depth`).
    Accept,
    /// Refuses the channel.
    Reject,
    /// Leaves it to the test: see [`LdkNode::accept_channel`].
    Manual,
}

/// When an [`LdkNode`]'s background task hands pending HTLC forwards to LDK
/// (`ChannelManager::process_pending_htlc_forwards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardDelay {
    /// As soon as forwards are pending (the default: tests stay quick).
    Immediate,
    /// At most once per this interval.
    Fixed(Duration),
    /// As LDK 0.2's `BackgroundProcessor` does, which LDK asks its users to imitate ("in
    /// irregular, randomly-distributed intervals"): after a delay drawn anew after each call,
    /// log-normal with a median of 50 ms (sigma 0.5 in log space), at most 200 ms, plus up to
    /// 1 ms. It batches forwards and blurs their timing for observers.
    BackgroundProcessor,
}

impl ForwardDelay {
    fn draw(self, rng: &mut SplitMix64) -> Duration {
        match self {
            ForwardDelay::Immediate => Duration::ZERO,
            ForwardDelay::Fixed(d) => d,
            ForwardDelay::BackgroundProcessor => loop {
                // Box-Muller: a standard normal from two uniforms in (0, 1).
                let z = (-2.0 * rng.unit().ln()).sqrt()
                    * (2.0 * std::f64::consts::PI * rng.unit()).cos();
                let ms = (50f64.ln() + 0.5 * z).exp().round();
                if ms <= 200.0 {
                    break Duration::from_millis(ms as u64)
                        + Duration::from_micros(rng.next_u64() % 1_000);
                }
            },
        }
    }
}

/// SplitMix64: a small, fast generator for the forward delays (not for keys).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Settings of an [`LdkNode`].
#[derive(Clone, Debug)]
pub struct LdkNodeConfig {
    /// Chain (invoice currency, chain hash in messages). Default: regtest.
    pub network: Network,
    /// LDK's configuration; defaults to [`LdkNode::default_user_config`].
    pub user_config: UserConfig,
    /// The feerate every estimate returns, sat per 1000 weight. Default 253.
    pub feerate_sat_per_kw: u32,
    /// The best block height at start (a fabricated block hash). Default 0 (genesis).
    pub start_height: u32,
    /// Answer to `OpenChannelRequest`. Default [`InboundChannelPolicy::AcceptZeroConf`].
    pub inbound_channels: InboundChannelPolicy,
    /// Claim every `PaymentClaimable` whose preimage LDK knows. Default true; with false the
    /// test calls [`LdkNode::claim`] or [`LdkNode::fail_htlc_backwards`].
    pub auto_claim: bool,
    /// Retries of a payment after a failed path. Default 0 (each failure is final).
    pub payment_retries: u32,
    /// Lowest level printed to stderr. Default `Debug`, or `LNHUB_LDK_LOG`
    /// (`gossip|trace|debug|info|warn|error`).
    pub log_level: Level,
    /// Start at this real block `(hash, height)` (e.g. [`Bitcoind::tip`], see
    /// [`LdkNodeConfig::following`]) instead of the fabricated one of `start_height`; what
    /// [`LdkNode::sync_chain`] needs. Default `None`.
    pub chain_tip: Option<(BlockHash, u32)>,
    /// Funds channels with real coins of this wallet (inputs it signs, change back to it)
    /// instead of a fabricated input. Default `None`.
    pub wallet: Option<Arc<TestWallet>>,
    /// Feerate of the wallet's funding transactions, sat/vB. Default 2.
    pub funding_fee_sat_per_vb: u64,
    /// Persist to `lightning-persister`'s `FilesystemStore` in this directory, the
    /// `ChannelManager` included, instead of memory ([`NodeStore`]). Default `None`. Nothing
    /// is read back: the node starts fresh whatever the directory holds.
    pub store_dir: Option<PathBuf>,
    /// With [`InboundChannelPolicy::AcceptZeroConf`], only these peers get zero-conf channels.
    /// Default `None` (every peer).
    pub trusted_peers: Option<Vec<PublicKey>>,
    /// When pending HTLC forwards are processed. Default [`ForwardDelay::Immediate`].
    pub forward_delay: ForwardDelay,
}

impl LdkNodeConfig {
    /// This configuration starting at `btc`'s current tip ([`LdkNodeConfig::chain_tip`]).
    pub fn following(self, btc: &Bitcoind) -> LdkNodeConfig {
        LdkNodeConfig {
            chain_tip: Some(btc.tip()),
            ..self
        }
    }
}

impl Default for LdkNodeConfig {
    fn default() -> Self {
        let log_level = match std::env::var("LNHUB_LDK_LOG").as_deref() {
            Ok("gossip") => Level::Gossip,
            Ok("trace") => Level::Trace,
            Ok("info") => Level::Info,
            Ok("warn") => Level::Warn,
            Ok("error") => Level::Error,
            _ => Level::Debug,
        };
        LdkNodeConfig {
            network: Network::Regtest,
            user_config: LdkNode::default_user_config(),
            feerate_sat_per_kw: 253,
            start_height: 0,
            inbound_channels: InboundChannelPolicy::AcceptZeroConf,
            auto_claim: true,
            payment_retries: 0,
            log_level,
            chain_tip: None,
            wallet: None,
            funding_fee_sat_per_vb: 2,
            store_dir: None,
            trusted_peers: None,
            forward_delay: ForwardDelay::Immediate,
        }
    }
}

/// One channel as the test sees it.
#[derive(Clone, Debug)]
pub struct ChannelSummary {
    /// The channel id (temporary until funding).
    pub channel_id: ChannelId,
    /// The peer.
    pub counterparty: PublicKey,
    /// Real SCID (none for an unconfirmed zero-conf channel).
    pub short_channel_id: Option<u64>,
    /// Alias the peer gave us in its `channel_ready`: what our invoices' route hints use.
    pub inbound_scid_alias: Option<u64>,
    /// Alias we gave the peer in our `channel_ready`: what the peer's `channel_update` and
    /// forwards to us must use.
    pub outbound_scid_alias: Option<u64>,
    /// Channel value.
    pub channel_value_sat: u64,
    /// What we can send now.
    pub outbound_capacity_msat: u64,
    /// What we can receive now.
    pub inbound_capacity_msat: u64,
    /// Largest single HTLC we can send now.
    pub next_outbound_htlc_limit_msat: u64,
    /// Both `channel_ready`s exchanged.
    pub is_channel_ready: bool,
    /// Ready, peer connected, not shutting down.
    pub is_usable: bool,
    /// The channel type is `anchors_zero_fee_htlc_tx`.
    pub is_anchors: bool,
    /// Announced (public) channel.
    pub is_announced: bool,
    /// We funded it.
    pub is_outbound: bool,
    /// The peer's `(fee_base_msat, fee_proportional_millionths, cltv_expiry_delta)` from its
    /// `channel_update`; needed for route hints.
    pub counterparty_forwarding_info: Option<(u32, u32, u16)>,
    /// Confirmations LDK waits for (`Some(0)`: zero-conf).
    pub confirmations_required: Option<u32>,
    /// Confirmations of the funding transaction LDK has seen (`None`/`Some(0)`: unconfirmed).
    pub confirmations: Option<u32>,
    /// Our user channel id.
    pub user_channel_id: u128,
}

/// A connected peer.
#[derive(Clone, Debug)]
pub struct PeerSummary {
    /// Its node id.
    pub node_id: PublicKey,
    /// Its address, when known.
    pub address: Option<String>,
    /// It dialed us.
    pub is_inbound: bool,
    /// Its `init` features, as LDK prints them.
    pub features: String,
}

/// One failed path of a payment.
#[derive(Clone, Debug)]
pub struct FailedPath {
    /// The channel LDK blames (may be an alias from a route hint or the first hop).
    pub short_channel_id: Option<u64>,
    /// The failure makes the whole payment fail (e.g. from the recipient).
    pub payment_failed_permanently: bool,
    /// What LDK learnt from the failure onion (failing channel or node).
    pub network_update: Option<NetworkUpdate>,
    /// Set when the HTLC was never sent (`PathFailure::InitialSend`).
    pub initial_send_error: Option<String>,
}

/// Everything known about a failed payment.
#[derive(Clone, Debug)]
pub struct PaymentFailure {
    /// From `PaymentFailed`.
    pub reason: Option<PaymentFailureReason>,
    /// From every `PaymentPathFailed` of this payment hash.
    pub paths: Vec<FailedPath>,
    /// Decoded failure onions of this payment hash (failure codes).
    pub onion_errors: Vec<OnionError>,
}

struct Ctx {
    cm: Arc<NodeChannelManager>,
    chain_monitor: Arc<NodeChainMonitor>,
    pm: Arc<NodePeerManager>,
    events: Mutex<Vec<Event>>,
    node_id: PublicKey,
    policy: InboundChannelPolicy,
    trusted_peers: Option<HashSet<PublicKey>>,
    forward_delay: ForwardDelay,
    store: Arc<NodeStore>,
    persist_manager: bool,
    auto_claim: bool,
    counter: AtomicU64,
    wallet: Option<Arc<TestWallet>>,
    funding_fee_sat_per_vb: u64,
    broadcaster: Arc<RecordingBroadcaster>,
}

impl Ctx {
    fn next_u128(&self) -> u128 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        (now << 16) ^ n as u128
    }

    fn handle(&self, event: &Event) {
        match event {
            Event::FundingGenerationReady {
                temporary_channel_id,
                counterparty_node_id,
                channel_value_satoshis,
                output_script,
                ..
            } => {
                let tx = match &self.wallet {
                    Some(wallet) => {
                        let out = TxOut {
                            value: Amount::from_sat(*channel_value_satoshis),
                            script_pubkey: output_script.clone(),
                        };
                        match wallet.try_build_tx(vec![out], self.funding_fee_sat_per_vb) {
                            Ok(tx) => tx,
                            Err(e) => {
                                eprintln!("funding from the test wallet failed: {e}");
                                return;
                            }
                        }
                    }
                    None => fabricated_funding_tx(
                        &self.node_id,
                        self.next_u128(),
                        *channel_value_satoshis,
                        output_script.clone(),
                    ),
                };
                if let Err(e) = self.cm.funding_transaction_generated(
                    *temporary_channel_id,
                    *counterparty_node_id,
                    tx,
                ) {
                    eprintln!("funding_transaction_generated failed: {e:?}");
                }
            }
            Event::OpenChannelRequest {
                temporary_channel_id,
                counterparty_node_id,
                ..
            } => {
                let id = self.next_u128();
                let trusted = self
                    .trusted_peers
                    .as_ref()
                    .is_none_or(|t| t.contains(counterparty_node_id));
                let res = match self.policy {
                    InboundChannelPolicy::AcceptZeroConf if trusted => {
                        self.cm.accept_inbound_channel_from_trusted_peer_0conf(
                            temporary_channel_id,
                            counterparty_node_id,
                            id,
                            None,
                        )
                    }
                    InboundChannelPolicy::AcceptZeroConf | InboundChannelPolicy::Accept => {
                        self.cm.accept_inbound_channel(
                            temporary_channel_id,
                            counterparty_node_id,
                            id,
                            None,
                        )
                    }
                    InboundChannelPolicy::Reject => self.cm.force_close_broadcasting_latest_txn(
                        temporary_channel_id,
                        counterparty_node_id,
                        "channel rejected by test policy".to_string(),
                    ),
                    InboundChannelPolicy::Manual => Ok(()),
                };
                if let Err(e) = res {
                    eprintln!("answering OpenChannelRequest failed: {e:?}");
                }
            }
            Event::PaymentClaimable { purpose, .. } if self.auto_claim => {
                if let Some(preimage) = purpose.preimage() {
                    self.cm.claim_funds(preimage);
                }
            }
            // An anchor channel's force close: LDK hands over its commitment for a CPFP of the
            // anchor. Its own fee (the commitment's feerate, 253 sat/kw by default) relays on
            // regtest, so it is recorded as broadcast as it is, with no child.
            Event::BumpTransaction(BumpTransactionEvent::ChannelClose {
                commitment_tx, ..
            }) => {
                self.broadcaster.broadcast_transactions(&[commitment_tx]);
            }
            _ => {}
        }
    }
}

/// A funding transaction paying `value` to `script`, spending a fabricated segwit outpoint
/// with a dummy witness (LDK only checks that every input has one).
fn fabricated_funding_tx(node: &PublicKey, n: u128, value: u64, script: ScriptBuf) -> Transaction {
    let mut seed = node.serialize().to_vec();
    seed.extend_from_slice(&n.to_le_bytes());
    let txid = Txid::from_raw_hash(sha256d::Hash::hash(&seed));
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid, vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[vec![0x30u8; 72], vec![0x02u8; 33]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script,
        }],
    }
}

fn fabricated_header(prev: BlockHash, height: u32) -> Header {
    Header {
        version: BlockVersion::from_consensus(0x2000_0000),
        prev_blockhash: prev,
        merkle_root: TxMerkleNode::all_zeros(),
        time: 1_700_000_000 + height * 600,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce: height,
    }
}

/// A real LDK node (see the module docs).
pub struct LdkNode {
    /// Name used in log lines.
    pub name: String,
    /// Its node id.
    pub node_id: PublicKey,
    /// LDK's channel manager.
    pub channel_manager: Arc<NodeChannelManager>,
    /// LDK's chain monitor.
    pub chain_monitor: Arc<NodeChainMonitor>,
    /// LDK's peer manager.
    pub peer_manager: Arc<NodePeerManager>,
    /// Keys.
    pub keys: Arc<KeysManager>,
    /// Transactions LDK broadcast (funding transactions, closes).
    pub broadcaster: Arc<RecordingBroadcaster>,
    /// The fee estimator (settable).
    pub fee_estimator: Arc<FixedFeeEstimator>,
    /// Where ChannelMonitors (and, on disk, the ChannelManager) are persisted.
    pub store: Arc<NodeStore>,
    /// The (gossip-less) network graph the router uses.
    pub network_graph: Arc<Graph>,
    logger: Arc<NodeLogger>,
    ctx: Arc<Ctx>,
    tip: Mutex<(BlockHash, u32)>,
    sent_to_bitcoind: Mutex<HashSet<Txid>>,
    payment_retries: u32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LdkNode {
    /// LDK configuration for the tests: inbound channels accepted manually (so zero-conf can be
    /// granted), anchors negotiated, private channels, forwards to private channels allowed,
    /// 100 % of the channel usable for inbound HTLCs in flight.
    pub fn default_user_config() -> UserConfig {
        let mut c = UserConfig {
            manually_accept_inbound_channels: true,
            accept_forwards_to_priv_channels: true,
            ..Default::default()
        };
        c.channel_handshake_config
            .negotiate_anchors_zero_fee_htlc_tx = true;
        c.channel_handshake_config.announce_for_forwarding = false;
        c.channel_handshake_config
            .max_inbound_htlc_value_in_flight_percent_of_channel = 100;
        c.channel_handshake_limits.trust_own_funding_0conf = true;
        c.channel_handshake_limits
            .force_announced_channel_preference = false;
        c
    }

    /// A new node whose keys come from `seed`. Must be called inside a tokio runtime: it spawns
    /// the node's background task.
    pub fn new(name: &str, seed: [u8; 32], config: LdkNodeConfig) -> LdkNode {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let logger = Arc::new(NodeLogger::new(name, config.log_level));
        let keys = Arc::new(KeysManager::new(
            &seed,
            now.as_secs(),
            now.subsec_nanos(),
            true,
        ));
        let node_id = keys.get_node_id(Recipient::Node).unwrap();
        let fee_estimator = Arc::new(FixedFeeEstimator(AtomicU32::new(config.feerate_sat_per_kw)));
        let broadcaster = Arc::new(RecordingBroadcaster::default());
        let store = Arc::new(match &config.store_dir {
            Some(dir) => NodeStore::Fs(FilesystemStore::new(dir.clone()), StoreCounters::default()),
            None => NodeStore::Mem(MemStore::default(), StoreCounters::default()),
        });
        let chain_monitor: Arc<NodeChainMonitor> = Arc::new(ChainMonitor::new(
            None,
            Arc::clone(&broadcaster),
            Arc::clone(&logger),
            Arc::clone(&fee_estimator),
            Arc::clone(&store),
            Arc::clone(&keys),
            keys.get_peer_storage_key(),
        ));
        let network_graph = Arc::new(NetworkGraph::new(config.network, Arc::clone(&logger)));
        let scorer = Arc::new(RwLock::new(Scorer::new(
            ProbabilisticScoringDecayParameters::default(),
            Arc::clone(&network_graph),
            Arc::clone(&logger),
        )));
        let router = Arc::new(DefaultRouter::new(
            Arc::clone(&network_graph),
            Arc::clone(&logger),
            Arc::clone(&keys),
            scorer,
            ProbabilisticScoringFeeParameters::default(),
        ));
        let message_router = Arc::new(DefaultMessageRouter::new(
            Arc::clone(&network_graph),
            Arc::clone(&keys),
        ));
        let best_block = if let Some((hash, height)) = config.chain_tip {
            BestBlock::new(hash, height)
        } else if config.start_height == 0 {
            BestBlock::from_network(config.network)
        } else {
            let hash =
                BlockHash::from_raw_hash(sha256d::Hash::hash(&config.start_height.to_le_bytes()));
            BestBlock::new(hash, config.start_height)
        };
        let tip = (best_block.block_hash, best_block.height);
        let cm = Arc::new(NodeChannelManager::new(
            Arc::clone(&fee_estimator),
            Arc::clone(&chain_monitor),
            Arc::clone(&broadcaster),
            router,
            message_router,
            Arc::clone(&logger),
            Arc::clone(&keys),
            Arc::clone(&keys),
            Arc::clone(&keys),
            config.user_config,
            ChainParameters {
                network: config.network,
                best_block,
            },
            now.as_secs() as u32,
        ));
        let ignoring = Arc::new(IgnoringMessageHandler {});
        let pm = Arc::new(NodePeerManager::new(
            MessageHandler {
                chan_handler: Arc::clone(&cm),
                route_handler: Arc::clone(&ignoring),
                onion_message_handler: Arc::clone(&ignoring),
                custom_message_handler: Arc::clone(&ignoring),
                send_only_message_handler: Arc::clone(&chain_monitor),
            },
            now.as_secs() as u32,
            &keys.get_secure_random_bytes(),
            Arc::clone(&logger),
            Arc::clone(&keys),
        ));
        let ctx = Arc::new(Ctx {
            cm: Arc::clone(&cm),
            chain_monitor: Arc::clone(&chain_monitor),
            pm: Arc::clone(&pm),
            events: Mutex::new(Vec::new()),
            node_id,
            policy: config.inbound_channels,
            trusted_peers: config
                .trusted_peers
                .map(|t| t.into_iter().collect::<HashSet<_>>()),
            forward_delay: config.forward_delay,
            store: Arc::clone(&store),
            persist_manager: config.store_dir.is_some(),
            auto_claim: config.auto_claim,
            counter: AtomicU64::new(0),
            wallet: config.wallet,
            funding_fee_sat_per_vb: config.funding_fee_sat_per_vb,
            broadcaster: Arc::clone(&broadcaster),
        });
        let task = tokio::spawn(background(Arc::clone(&ctx)));
        LdkNode {
            name: name.to_string(),
            node_id,
            channel_manager: cm,
            chain_monitor,
            peer_manager: pm,
            keys,
            broadcaster,
            fee_estimator,
            store,
            network_graph,
            logger,
            ctx,
            tip: Mutex::new(tip),
            sent_to_bitcoind: Mutex::new(HashSet::new()),
            payment_retries: config.payment_retries,
            tasks: vec![task],
        }
    }

    // ---- connections ----

    /// Listens on an ephemeral loopback port and accepts every connection.
    pub async fn listen(&mut self) -> SocketAddr {
        self.listen_on("127.0.0.1:0").await.expect("bind")
    }

    /// Listens on `addr` (`ip:port`, port 0 for an ephemeral one) and accepts every connection;
    /// returns the bound address.
    pub async fn listen_on(&mut self, addr: &str) -> Result<SocketAddr, String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{}: bind {addr}: {e}", self.name))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let pm = Arc::clone(&self.peer_manager);
        self.tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let stream = stream.into_std().expect("std stream");
                tokio::spawn(lightning_net_tokio::setup_inbound(Arc::clone(&pm), stream));
            }
        }));
        Ok(addr)
    }

    /// Dials `node_id` at `addr` and waits (10 s) until both `init`s are exchanged.
    pub async fn connect(&self, node_id: PublicKey, addr: SocketAddr) -> Result<(), String> {
        let fut =
            lightning_net_tokio::connect_outbound(Arc::clone(&self.peer_manager), node_id, addr)
                .await
                .ok_or_else(|| format!("{}: TCP connect to {addr} failed", self.name))?;
        tokio::spawn(fut);
        if self
            .wait(Duration::from_secs(10), |n| n.is_connected(&node_id))
            .await
        {
            Ok(())
        } else {
            Err(format!("{}: no init exchange with {node_id}", self.name))
        }
    }

    /// Drops the connection to `node_id` (LDK marks its channels disconnected).
    pub fn disconnect(&self, node_id: &PublicKey) {
        self.peer_manager.disconnect_by_node_id(*node_id);
    }

    /// Disconnects (if connected), waits until the peer is gone, dials again and waits until
    /// every channel with it is usable again (`channel_reestablish` done), 10 s each.
    pub async fn reconnect(&self, node_id: PublicKey, addr: SocketAddr) -> Result<(), String> {
        self.disconnect(&node_id);
        if !self
            .wait(Duration::from_secs(10), |n| !n.is_connected(&node_id))
            .await
        {
            return Err(format!("{}: {node_id} still connected", self.name));
        }
        self.connect(node_id, addr).await?;
        self.wait_channels_usable(&node_id, Duration::from_secs(10))
            .await
    }

    /// Whether `node_id` is connected with its `init` received.
    pub fn is_connected(&self, node_id: &PublicKey) -> bool {
        self.peer_manager.peer_by_node_id(node_id).is_some()
    }

    /// Connected peers.
    pub fn list_peers(&self) -> Vec<PeerSummary> {
        self.peer_manager
            .list_peers()
            .into_iter()
            .map(|p| PeerSummary {
                node_id: p.counterparty_node_id,
                address: p.socket_address.map(|a| a.to_string()),
                is_inbound: p.is_inbound_connection,
                features: format!("{}", p.init_features),
            })
            .collect()
    }

    // ---- channels ----

    /// Sends `open_channel` (anchors if the peer supports them, private) and returns the
    /// temporary channel id; the funding transaction is fabricated when LDK asks for it, or
    /// built by [`LdkNodeConfig::wallet`].
    pub fn open_channel(
        &self,
        peer: PublicKey,
        capacity_sat: u64,
        push_msat: u64,
    ) -> Result<(ChannelId, u128), String> {
        let user_channel_id = self.ctx.next_u128();
        self.channel_manager
            .create_channel(peer, capacity_sat, push_msat, user_channel_id, None, None)
            .map(|id| (id, user_channel_id))
            .map_err(|e| format!("{}: create_channel: {e:?}", self.name))
    }

    /// Opens a channel to `peer` and waits (10 s) for `ChannelReady`, without any block: the
    /// peer must answer `minimum_depth = 0`. Returns the (final) channel id.
    pub async fn open_zero_conf_channel(
        &self,
        peer: PublicKey,
        capacity_sat: u64,
        push_msat: u64,
    ) -> Result<ChannelId, String> {
        let (_, user_channel_id) = self.open_channel(peer, capacity_sat, push_msat)?;
        let ready = self
            .wait_event(Duration::from_secs(10), |e| {
                matches!(e, Event::ChannelReady { user_channel_id: u, .. } if *u == user_channel_id)
                    || matches!(e, Event::ChannelClosed { user_channel_id: u, .. } if *u == user_channel_id)
            })
            .await;
        match ready {
            Some(Event::ChannelReady { channel_id, .. }) => Ok(channel_id),
            Some(Event::ChannelClosed { reason, .. }) => Err(format!(
                "{}: channel to {peer} closed while opening: {reason}",
                self.name
            )),
            _ => {
                let pending = self
                    .list_channels()
                    .into_iter()
                    .find(|c| c.user_channel_id == user_channel_id);
                Err(format!(
                    "{}: no ChannelReady from {peer} within 10 s (channel pending but not ready; \
                     did the peer send minimum_depth = 0 and channel_ready?): {pending:?}",
                    self.name
                ))
            }
        }
    }

    /// Opens a channel to `peer` and waits (10 s) for `ChannelPending`: funding signed by
    /// both sides and the funding transaction broadcast (recorded; see
    /// [`LdkNode::broadcast_to`]). Returns the (final) channel id and the funding transaction.
    /// For a channel the peer wants confirmed (`minimum_depth` > 0): it becomes ready once
    /// both nodes saw that many confirmations ([`LdkNode::sync_chain`]).
    pub async fn open_channel_pending(
        &self,
        peer: PublicKey,
        capacity_sat: u64,
        push_msat: u64,
    ) -> Result<(ChannelId, Transaction), String> {
        let (_, user_channel_id) = self.open_channel(peer, capacity_sat, push_msat)?;
        let pending = self
            .wait_event(Duration::from_secs(10), |e| {
                matches!(e, Event::ChannelPending { user_channel_id: u, .. } if *u == user_channel_id)
                    || matches!(e, Event::ChannelClosed { user_channel_id: u, .. } if *u == user_channel_id)
            })
            .await;
        let (channel_id, funding_txid) = match pending {
            Some(Event::ChannelPending {
                channel_id,
                funding_txo,
                ..
            }) => (channel_id, funding_txo.txid),
            Some(Event::ChannelClosed { reason, .. }) => {
                return Err(format!(
                    "{}: channel to {peer} closed while opening: {reason}",
                    self.name
                ))
            }
            _ => {
                return Err(format!(
                    "{}: no ChannelPending with {peer} within 10 s: {:?}",
                    self.name,
                    self.list_channels()
                ))
            }
        };
        let mut funding = None;
        self.wait(Duration::from_secs(10), |n| {
            funding = n
                .broadcast_txs()
                .into_iter()
                .find(|tx| tx.compute_txid() == funding_txid);
            funding.is_some()
        })
        .await;
        let funding = funding.ok_or_else(|| {
            format!(
                "{}: funding transaction {funding_txid} never broadcast",
                self.name
            )
        })?;
        Ok((channel_id, funding))
    }

    /// Accepts a pending inbound channel (with [`InboundChannelPolicy::Manual`]).
    pub fn accept_channel(
        &self,
        temporary_channel_id: &ChannelId,
        peer: &PublicKey,
        zero_conf: bool,
    ) -> Result<(), String> {
        let id = self.ctx.next_u128();
        let res = if zero_conf {
            self.channel_manager
                .accept_inbound_channel_from_trusted_peer_0conf(
                    temporary_channel_id,
                    peer,
                    id,
                    None,
                )
        } else {
            self.channel_manager
                .accept_inbound_channel(temporary_channel_id, peer, id, None)
        };
        res.map_err(|e| format!("{}: accept: {e:?}", self.name))
    }

    /// Cooperative close.
    pub fn close_channel(&self, channel_id: &ChannelId, peer: &PublicKey) -> Result<(), String> {
        self.channel_manager
            .close_channel(channel_id, peer)
            .map_err(|e| format!("{}: close: {e:?}", self.name))
    }

    /// Force close (the commitment transaction lands in [`LdkNode::broadcast_txs`]).
    pub fn force_close(&self, channel_id: &ChannelId, peer: &PublicKey) -> Result<(), String> {
        self.channel_manager
            .force_close_broadcasting_latest_txn(channel_id, peer, "test".to_string())
            .map_err(|e| format!("{}: force close: {e:?}", self.name))
    }

    /// All channels.
    pub fn list_channels(&self) -> Vec<ChannelSummary> {
        self.channel_manager
            .list_channels()
            .into_iter()
            .map(|c| ChannelSummary {
                channel_id: c.channel_id,
                counterparty: c.counterparty.node_id,
                short_channel_id: c.short_channel_id,
                inbound_scid_alias: c.inbound_scid_alias,
                outbound_scid_alias: c.outbound_scid_alias,
                channel_value_sat: c.channel_value_satoshis,
                outbound_capacity_msat: c.outbound_capacity_msat,
                inbound_capacity_msat: c.inbound_capacity_msat,
                next_outbound_htlc_limit_msat: c.next_outbound_htlc_limit_msat,
                is_channel_ready: c.is_channel_ready,
                is_usable: c.is_usable,
                is_anchors: c
                    .channel_type
                    .as_ref()
                    .is_some_and(|t| t.supports_anchors_zero_fee_htlc_tx()),
                is_announced: c.is_announced,
                is_outbound: c.is_outbound,
                counterparty_forwarding_info: c.counterparty.forwarding_info.map(|f| {
                    (
                        f.fee_base_msat,
                        f.fee_proportional_millionths,
                        f.cltv_expiry_delta,
                    )
                }),
                confirmations_required: c.confirmations_required,
                confirmations: c.confirmations,
                user_channel_id: c.user_channel_id,
            })
            .collect()
    }

    /// The payment hashes with `PaymentSent` or `PaymentFailed` so far.
    pub fn resolved_payments(&self) -> std::collections::HashSet<PaymentHash> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::PaymentSent { payment_hash, .. } => Some(*payment_hash),
                Event::PaymentFailed {
                    payment_hash: Some(h),
                    ..
                } => Some(*h),
                _ => None,
            })
            .collect()
    }

    /// HTLCs pending in all channels: (inbound, outbound).
    pub fn pending_htlcs(&self) -> (usize, usize) {
        self.channel_manager
            .list_channels()
            .iter()
            .fold((0, 0), |(i, o), c| {
                (
                    i + c.pending_inbound_htlcs.len(),
                    o + c.pending_outbound_htlcs.len(),
                )
            })
    }

    /// What this node can send over its channel with `peer` (panics if it has none).
    pub fn outbound_capacity(&self, peer: &PublicKey) -> u64 {
        self.list_channels()
            .iter()
            .find(|c| c.counterparty == *peer)
            .map(|c| c.outbound_capacity_msat)
            .expect("a channel with the peer")
    }

    /// The channel with id `channel_id`.
    pub fn channel(&self, channel_id: &ChannelId) -> Option<ChannelSummary> {
        self.list_channels()
            .into_iter()
            .find(|c| c.channel_id == *channel_id)
    }

    /// Waits until every channel with `peer` (at least one) is usable.
    pub async fn wait_channels_usable(
        &self,
        peer: &PublicKey,
        timeout: Duration,
    ) -> Result<(), String> {
        let ok = self
            .wait(timeout, |n| {
                let chans: Vec<_> = n
                    .list_channels()
                    .into_iter()
                    .filter(|c| c.counterparty == *peer)
                    .collect();
                !chans.is_empty() && chans.iter().all(|c| c.is_usable)
            })
            .await;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{}: channels with {peer} not usable: {:?}",
                self.name,
                self.list_channels()
            ))
        }
    }

    /// Waits until a usable channel with `hub` can serve as a route hint: it has an inbound
    /// SCID (alias) and the hub's forwarding info from its `channel_update`.
    pub async fn wait_route_hint_ready(
        &self,
        hub: &PublicKey,
        timeout: Duration,
    ) -> Result<(), String> {
        let ok = self
            .wait(timeout, |n| {
                n.list_channels().iter().any(|c| {
                    c.counterparty == *hub
                        && c.is_usable
                        && (c.inbound_scid_alias.is_some() || c.short_channel_id.is_some())
                        && c.counterparty_forwarding_info.is_some()
                })
            })
            .await;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{}: no channel with {hub} fit for a route hint (needs is_usable, an \
                 inbound_scid_alias from the peer's channel_ready and \
                 counterparty_forwarding_info from its channel_update): {:?}",
                self.name,
                self.list_channels()
            ))
        }
    }

    // ---- payments ----

    /// A BOLT 11 invoice from `ChannelManager::create_bolt11_invoice` (LDK chooses the route
    /// hints). With `route_hint_via = Some(hub)`, fails unless a hint starts at `hub`.
    pub fn create_invoice(
        &self,
        amount_msat: u64,
        description: &str,
        route_hint_via: Option<PublicKey>,
    ) -> Result<Bolt11Invoice, String> {
        let description =
            Description::new(description.to_string()).map_err(|e| format!("description: {e:?}"))?;
        let params = Bolt11InvoiceParameters {
            amount_msats: Some(amount_msat),
            description: Bolt11InvoiceDescription::Direct(description),
            ..Default::default()
        };
        let invoice = self
            .channel_manager
            .create_bolt11_invoice(params)
            .map_err(|e| format!("{}: create_bolt11_invoice: {e:?}", self.name))?;
        if let Some(hub) = route_hint_via {
            let has_hint = invoice
                .route_hints()
                .iter()
                .any(|h| h.0.first().is_some_and(|hop| hop.src_node_id == hub));
            if !has_hint {
                return Err(format!(
                    "{}: invoice has no route hint via {hub} (hints: {:?}); channels: {:?}",
                    self.name,
                    invoice.route_hints(),
                    self.list_channels()
                ));
            }
        }
        Ok(invoice)
    }

    /// Pays `invoice` (which must carry an amount); the payment id is the payment hash.
    pub fn pay_invoice(&self, invoice: &Bolt11Invoice) -> Result<PaymentId, String> {
        self.pay_invoice_amount(invoice, None)
    }

    /// Pays `invoice`, with `amount_msat` for amount-less invoices.
    pub fn pay_invoice_amount(
        &self,
        invoice: &Bolt11Invoice,
        amount_msat: Option<u64>,
    ) -> Result<PaymentId, String> {
        let payment_id = PaymentId(invoice.payment_hash().to_byte_array());
        self.channel_manager
            .pay_for_bolt11_invoice(
                invoice,
                payment_id,
                amount_msat,
                RouteParametersConfig::default(),
                Retry::Attempts(self.payment_retries),
            )
            .map_err(|e| format!("{}: pay_for_bolt11_invoice: {e:?}", self.name))?;
        Ok(payment_id)
    }

    /// Spontaneous (keysend) payment to `node_id` with a random preimage. The router only
    /// knows first hops (no gossip), so `node_id` must be a direct channel peer.
    pub fn keysend(
        &self,
        node_id: PublicKey,
        amount_msat: u64,
    ) -> Result<(PaymentId, PaymentHash), String> {
        let preimage = PaymentPreimage(self.keys.get_secure_random_bytes());
        let hash = PaymentHash(sha256::Hash::hash(&preimage.0).to_byte_array());
        let payment_id = PaymentId(hash.0);
        let params = RouteParameters::from_payment_params_and_value(
            PaymentParameters::for_keysend(node_id, 40, false),
            amount_msat,
        );
        self.channel_manager
            .send_spontaneous_payment(
                Some(preimage),
                RecipientOnionFields::spontaneous_empty(),
                payment_id,
                params,
                Retry::Attempts(self.payment_retries),
            )
            .map_err(|e| format!("{}: send_spontaneous_payment: {e:?}", self.name))?;
        Ok((payment_id, hash))
    }

    /// Waits for `PaymentSent` of `payment_hash`: `(preimage, fee_paid_msat)`. Fails early on
    /// `PaymentFailed`.
    pub async fn wait_payment_sent(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<(PaymentPreimage, u64), String> {
        let ev = self
            .wait_event(timeout, |e| match e {
                Event::PaymentSent {
                    payment_hash: h, ..
                } => *h == payment_hash,
                Event::PaymentFailed {
                    payment_hash: h, ..
                } => *h == Some(payment_hash),
                _ => false,
            })
            .await;
        match ev {
            Some(Event::PaymentSent {
                payment_preimage,
                fee_paid_msat,
                ..
            }) => Ok((payment_preimage, fee_paid_msat.unwrap_or(0))),
            Some(_) => Err(format!(
                "{}: payment {payment_hash} failed: {:?}",
                self.name,
                self.payment_failure(payment_hash)
            )),
            None => Err(format!(
                "{}: no PaymentSent for {payment_hash} within {timeout:?}",
                self.name
            )),
        }
    }

    /// Waits for `PaymentFailed` of `payment_hash` and returns what is known about it. Fails
    /// on `PaymentSent`.
    pub async fn wait_payment_failed(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<PaymentFailure, String> {
        let ev = self
            .wait_event(timeout, |e| match e {
                Event::PaymentSent {
                    payment_hash: h, ..
                } => *h == payment_hash,
                Event::PaymentFailed {
                    payment_hash: h, ..
                } => *h == Some(payment_hash),
                _ => false,
            })
            .await;
        match ev {
            Some(Event::PaymentFailed { .. }) => Ok(self.payment_failure(payment_hash)),
            Some(_) => Err(format!("{}: payment {payment_hash} succeeded", self.name)),
            None => Err(format!(
                "{}: no PaymentFailed for {payment_hash} within {timeout:?}",
                self.name
            )),
        }
    }

    /// Failure events and decoded onion errors recorded for `payment_hash` so far.
    pub fn payment_failure(&self, payment_hash: PaymentHash) -> PaymentFailure {
        let mut out = PaymentFailure {
            reason: None,
            paths: Vec::new(),
            onion_errors: self
                .onion_errors()
                .into_iter()
                .filter(|e| e.payment_hash.is_none_or(|h| h == payment_hash))
                .collect(),
        };
        for e in self.events() {
            match e {
                Event::PaymentFailed {
                    payment_hash: Some(h),
                    reason,
                    ..
                } if h == payment_hash => out.reason = reason,
                Event::PaymentPathFailed {
                    payment_hash: h,
                    payment_failed_permanently,
                    failure,
                    short_channel_id,
                    ..
                } if h == payment_hash => {
                    let (network_update, initial_send_error) = match failure {
                        PathFailure::OnPath { network_update } => (network_update, None),
                        PathFailure::InitialSend { err } => (None, Some(format!("{err:?}"))),
                    };
                    out.paths.push(FailedPath {
                        short_channel_id,
                        payment_failed_permanently,
                        network_update,
                        initial_send_error,
                    });
                }
                _ => {}
            }
        }
        out
    }

    /// Waits for `PaymentClaimable` of `payment_hash` (use with `auto_claim = false`); returns
    /// the amount.
    pub async fn wait_claimable(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<u64, String> {
        match self
            .wait_event(timeout, |e| {
                matches!(e, Event::PaymentClaimable { payment_hash: h, .. } if *h == payment_hash)
            })
            .await
        {
            Some(Event::PaymentClaimable { amount_msat, .. }) => Ok(amount_msat),
            _ => Err(format!(
                "{}: no PaymentClaimable for {payment_hash} within {timeout:?}",
                self.name
            )),
        }
    }

    /// Waits for `PaymentClaimed` of `payment_hash`; returns the amount received.
    pub async fn wait_claimed(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<u64, String> {
        match self
            .wait_event(timeout, |e| {
                matches!(e, Event::PaymentClaimed { payment_hash: h, .. } if *h == payment_hash)
            })
            .await
        {
            Some(Event::PaymentClaimed { amount_msat, .. }) => Ok(amount_msat),
            _ => Err(format!(
                "{}: no PaymentClaimed for {payment_hash} within {timeout:?}",
                self.name
            )),
        }
    }

    /// The preimage of a claimable payment to one of our invoices (with `auto_claim = false`).
    pub fn claimable_preimage(&self, payment_hash: PaymentHash) -> Option<PaymentPreimage> {
        self.events().into_iter().find_map(|e| match e {
            Event::PaymentClaimable {
                payment_hash: h,
                purpose,
                ..
            } if h == payment_hash => purpose.preimage(),
            _ => None,
        })
    }

    /// Claims a claimable payment (with `auto_claim = false`).
    pub fn claim(&self, preimage: PaymentPreimage) {
        self.channel_manager.claim_funds(preimage);
    }

    /// Fails a claimable payment back (with `auto_claim = false`).
    pub fn fail_htlc_backwards(&self, payment_hash: &PaymentHash) {
        self.channel_manager.fail_htlc_backwards(payment_hash);
    }

    // ---- events ----

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.ctx.events.lock().unwrap().clone()
    }

    /// Failure onions LDK decoded so far.
    pub fn onion_errors(&self) -> Vec<OnionError> {
        self.logger.onion_errors.lock().unwrap().clone()
    }

    /// Waits until an event (past or future) matches `pred`; returns the first match.
    pub async fn wait_event(
        &self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.ctx.events.lock().unwrap().iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (async) until `cond` holds or `timeout` passes.
    pub async fn wait(&self, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `ChannelClosed` reasons so far.
    pub fn closures(&self) -> Vec<(ChannelId, ClosureReason)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::ChannelClosed {
                    channel_id, reason, ..
                } => Some((channel_id, reason)),
                _ => None,
            })
            .collect()
    }

    // ---- chain ----

    /// Transactions broadcast so far.
    pub fn broadcast_txs(&self) -> Vec<Transaction> {
        self.broadcaster.0.lock().unwrap().clone()
    }

    /// Sets the feerate every estimate returns.
    pub fn set_feerate(&self, sat_per_kw: u32) {
        self.fee_estimator.0.store(sat_per_kw, Ordering::Relaxed);
    }

    /// Current best block height.
    pub fn best_block_height(&self) -> u32 {
        self.tip.lock().unwrap().1
    }

    /// Connects `n` fabricated empty blocks (`Confirm::best_block_updated`).
    pub fn connect_blocks(&self, n: u32) {
        for _ in 0..n {
            self.connect_block(&[]);
        }
    }

    /// Connects one fabricated block containing `tx` (`transactions_confirmed`).
    pub fn confirm_transaction(&self, tx: &Transaction) {
        self.connect_block(&[tx]);
    }

    /// Submits every transaction LDK broadcast and this node has not offered yet to `btc`
    /// ([`Bitcoind::try_send`]: `testmempoolaccept`, then `sendrawtransaction`); returns the
    /// txids it accepted now. One already in its mempool or chain (`txn-already-...`) counts
    /// as done; a refused one is not offered again and makes the result an `Err` naming it
    /// with Core's reason (after all were tried).
    pub fn broadcast_to(&self, btc: &Bitcoind) -> Result<Vec<Txid>, String> {
        let mut offered = self.sent_to_bitcoind.lock().unwrap();
        let (mut accepted, mut refused) = (Vec::new(), Vec::new());
        for tx in self.broadcast_txs() {
            let txid = tx.compute_txid();
            if !offered.insert(txid) {
                continue;
            }
            match btc.try_send(&tx) {
                Ok(_) => accepted.push(txid),
                Err(e) if e.contains("already") => {}
                Err(e) => refused.push(format!("{txid}: {e}")),
            }
        }
        if refused.is_empty() {
            Ok(accepted)
        } else {
            Err(format!(
                "{}: bitcoind refused {}",
                self.name,
                refused.join("; ")
            ))
        }
    }

    /// Brings LDK's chain view (`ChannelManager` and `ChainMonitor`, via `Confirm`) to
    /// `btc`'s best chain: transactions LDK watches whose block left the best chain are
    /// unconfirmed (`transaction_unconfirmed`); from the last block both share (LDK's tip,
    /// walked back through headers), LDK is moved back there if needed, then every block
    /// after it up to the tip is connected (`transactions_confirmed` with all its
    /// transactions, LDK filters, and `best_block_updated`). Returns the new height.
    ///
    /// The node must have started on `btc`'s chain ([`LdkNodeConfig::following`]) and never
    /// connected fabricated blocks (panics on a block `btc` does not know).
    pub fn sync_chain(&self, btc: &Bitcoind) -> u32 {
        let mut tip = self.tip.lock().unwrap();
        let confirms: [&dyn Confirm; 2] = [&*self.channel_manager, &*self.chain_monitor];
        for c in confirms {
            for (txid, _, block) in c.get_relevant_txids() {
                if block.is_some_and(|b| btc.in_best_chain(&b) != Some(true)) {
                    c.transaction_unconfirmed(&txid);
                }
            }
        }
        let (mut hash, mut height) = *tip;
        loop {
            match btc.in_best_chain(&hash) {
                Some(true) => break,
                Some(false) => {
                    hash = btc.header(&hash).prev_blockhash;
                    height -= 1;
                }
                None => panic!(
                    "{}: bitcoind does not know block {hash} (height {height}): start the node \
                     with LdkNodeConfig::following and connect no fabricated block",
                    self.name
                ),
            }
        }
        if hash != tip.0 {
            let header = btc.header(&hash);
            for c in confirms {
                c.best_block_updated(&header, height);
            }
            *tip = (hash, height);
        }
        let best = btc.height();
        for h in height + 1..=best {
            let block = btc.block(&btc.block_hash(h));
            let txdata: Vec<(usize, &Transaction)> = block.txdata.iter().enumerate().collect();
            for c in confirms {
                c.transactions_confirmed(&block.header, &txdata, h);
                c.best_block_updated(&block.header, h);
            }
            *tip = (block.block_hash(), h);
        }
        tip.1
    }

    fn connect_block(&self, txs: &[&Transaction]) {
        let mut tip = self.tip.lock().unwrap();
        let height = tip.1 + 1;
        let header = fabricated_header(tip.0, height);
        let txdata: Vec<(usize, &Transaction)> = txs.iter().copied().enumerate().collect();
        if !txdata.is_empty() {
            self.channel_manager
                .transactions_confirmed(&header, &txdata, height);
            self.chain_monitor
                .transactions_confirmed(&header, &txdata, height);
        }
        self.channel_manager.best_block_updated(&header, height);
        self.chain_monitor.best_block_updated(&header, height);
        *tip = (header.block_hash(), height);
    }
}

impl Drop for LdkNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.peer_manager.disconnect_all_peers();
    }
}

/// The node's background work: events, HTLC forwards, outgoing messages, timers, and on disk
/// the `ChannelManager`'s persistence.
async fn background(ctx: Arc<Ctx>) {
    let mut last_tick = Instant::now();
    let mut rng = SplitMix64(ctx.next_u128() as u64);
    let mut forwards_due = Instant::now() + ctx.forward_delay.draw(&mut rng);
    loop {
        let woken = ctx.cm.get_event_or_persistence_needed_future();
        let handler = |event: Event| -> Result<(), ReplayEvent> {
            ctx.handle(&event);
            ctx.events.lock().unwrap().push(event);
            Ok(())
        };
        ctx.cm.process_pending_events(&handler);
        ctx.chain_monitor.process_pending_events(&handler);
        let now = Instant::now();
        if now >= forwards_due {
            if ctx.cm.needs_pending_htlc_processing() {
                ctx.cm.process_pending_htlc_forwards();
            }
            forwards_due = now + ctx.forward_delay.draw(&mut rng);
        }
        ctx.pm.process_events();
        if last_tick.elapsed() >= Duration::from_secs(10) {
            ctx.cm.timer_tick_occurred();
            ctx.pm.timer_tick_occurred();
            last_tick = Instant::now();
        }
        let mut nap = Duration::from_millis(20);
        if ctx.cm.needs_pending_htlc_processing() {
            nap = nap.min(forwards_due.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(nap) => {}
        }
        // As LDK's background processor: the whole ChannelManager, whenever it says it changed.
        if ctx.persist_manager && ctx.cm.get_and_clear_needs_persistence() {
            if let Err(e) = ctx.store.write(
                CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
                CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
                CHANNEL_MANAGER_PERSISTENCE_KEY,
                ctx.cm.encode(),
            ) {
                eprintln!("persisting the ChannelManager failed: {e}");
            }
        }
    }
}

/// The payment tests' channel size ([`payer_hub_payee`]): R pushes half of it to the hub, so
/// the hub can forward about 490 1,000-sat payments to R.
pub const CHANNEL_SAT: u64 = 1_000_000;

/// The payment tests' topology: `lnhubd` (durable in the data directory `dir`, trusting both
/// nodes) with a zero-conf channel from `s` ([`CHANNEL_SAT`], nothing pushed) and one from `r`
/// (as large, half pushed to the hub so it can pay `r`), `r`'s route hint through the hub
/// ready. Returns the hub and `s`'s channel id.
pub async fn payer_hub_payee(
    s: &LdkNode,
    r: &LdkNode,
    dir: crate::TempDir,
) -> (crate::Hub, ChannelId) {
    payer_hub_payee_with(s, r, dir, &[]).await
}

/// [`payer_hub_payee`] with more flags for the hub.
pub async fn payer_hub_payee_with(
    s: &LdkNode,
    r: &LdkNode,
    dir: crate::TempDir,
    extra: &[&str],
) -> (crate::Hub, ChannelId) {
    payer_hub_payee_sized(s, r, dir, extra, CHANNEL_SAT).await
}

/// [`payer_hub_payee_with`] with both channels `capacity_sat` large (the hub can then forward
/// up to about half of that to `r`).
pub async fn payer_hub_payee_sized(
    s: &LdkNode,
    r: &LdkNode,
    dir: crate::TempDir,
    extra: &[&str],
    capacity_sat: u64,
) -> (crate::Hub, ChannelId) {
    let (sid, rid) = (s.node_id.to_string(), r.node_id.to_string());
    let mut args = vec!["--trusted-peer", &sid, "--trusted-peer", &rid];
    args.extend_from_slice(extra);
    let hub = crate::Hub::start_in(dir, &args);
    let s_chan = payer_via_payee(s, r, hub.node_id, hub.addr, capacity_sat).await;
    (hub, s_chan)
}

/// [`payer_hub_payee`]'s channels, each `capacity_sat` large, through any hub that trusts `s`
/// and `r` with zero-conf channels (`lnhubd`, or an LDK node: [`crate::LdkHub`]): both
/// connect, open their channels (`r` pushing half of its own to the hub) and `r` waits for its
/// route hint. Returns `s`'s channel id.
pub async fn payer_via_payee(
    s: &LdkNode,
    r: &LdkNode,
    hub: PublicKey,
    addr: SocketAddr,
    capacity_sat: u64,
) -> ChannelId {
    s.connect(hub, addr).await.expect("S connects");
    r.connect(hub, addr).await.expect("R connects");
    let s_chan = s
        .open_zero_conf_channel(hub, capacity_sat, 0)
        .await
        .expect("S -> hub channel");
    r.open_zero_conf_channel(hub, capacity_sat, capacity_sat * 1000 / 2)
        .await
        .expect("R -> hub channel");
    r.wait_route_hint_ready(&hub, Duration::from_secs(20))
        .await
        .expect("R learns the hub's channel_update");
    s_chan
}
