//! The chain backend: a bitcoind over JSON-RPC, polled (as `lightning-block-sync` polls for
//! LDK): the best block hash every [`POLL`], and the headers a new tip needs, which
//! [`lnhub_chain::Tracker`] turns into blocks disconnected and connected in order. Each new
//! height goes to every shard (`Input::BlockHeight`): HTLC expiries, the forwarding
//! decision's CLTV limits and the onion replay set follow the node.
//!
//! The shards' funding outputs are watched here ([`lnhub_chain::Watcher`]): every block
//! connected while one is watched is read (`getblock`, raw, decoded with `bitcoin`) for the
//! funding transactions and what spends them; a reorg takes back what its blocks said. An
//! output first watched after it confirmed (a restart) is found with `gettxout`, so no
//! transaction index is needed. Closing transactions are sent with `sendrawtransaction`, and
//! again at each block until one spends the funding.
//!
//! The client is `ureq` (already the CLI's) with `serde_json`: the handful of RPC methods
//! (`getblockchaininfo`, `getbestblockhash`, `getblockheader`, `getblockhash`, `getblock`,
//! `gettxout`, `sendrawtransaction`) do not justify a client crate that pins a type per Core
//! version. Authentication: bitcoind's cookie file (read at each
//! attempt, as bitcoind rewrites it at every start) or a user and password.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Transaction, Txid};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use lnhub_chain::{
    BlockHash, ChainEvent, Header, Position, Tracker, TxSummary, Watch, Watcher, DEFAULT_WINDOW,
};
use lnhub_engine::{ChainRequest, FundingStatus, Input};
use lnhub_wire::types::{ChannelId, ShortChannelId};
use std::collections::HashMap;

use crate::config::encode_hex;
use serde_json::{json, Value};

/// How often the best block is asked for.
pub const POLL: Duration = Duration::from_millis(500);
/// How long start-up waits for bitcoind to answer before giving up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach bitcoind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoindConfig {
    /// `http://host:port`.
    pub url: String,
    /// Cookie file or user and password.
    pub auth: RpcAuth,
}

/// bitcoind RPC credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAuth {
    /// bitcoind's `.cookie` (`__cookie__:<hex>`).
    Cookie(PathBuf),
    /// `rpcuser` / `rpcpassword`.
    UserPass(String, String),
}

/// A JSON-RPC client of one bitcoind.
pub struct Bitcoind {
    config: BitcoindConfig,
    agent: ureq::Agent,
    next_id: u64,
}

impl Bitcoind {
    /// A client (nothing is sent yet).
    pub fn new(config: BitcoindConfig) -> Bitcoind {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        Bitcoind {
            config,
            agent,
            next_id: 0,
        }
    }

    /// Calls `method` with `params`; its `result`, or one line saying what went wrong.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let credentials = match &self.config.auth {
            RpcAuth::Cookie(path) => std::fs::read_to_string(path)
                .map(|c| c.trim().to_string())
                .map_err(|e| format!("cannot read the cookie {}: {e}", path.display()))?,
            RpcAuth::UserPass(user, password) => format!("{user}:{password}"),
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let body =
            json!({"jsonrpc": "1.0", "id": self.next_id, "method": method, "params": params});
        let answer = match self
            .agent
            .post(&self.config.url)
            .set("Authorization", &auth)
            .send_string(&body.to_string())
        {
            Ok(r) => r.into_string(),
            // bitcoind answers RPC errors with HTTP 500 and the JSON error in the body.
            Err(ureq::Error::Status(401, _)) => {
                return Err(format!(
                    "bitcoind at {} refused our credentials",
                    self.config.url
                ))
            }
            Err(ureq::Error::Status(_, r)) => r.into_string(),
            Err(ureq::Error::Transport(t)) => {
                return Err(format!("cannot reach bitcoind at {}: {t}", self.config.url))
            }
        }
        .map_err(|e| format!("unreadable answer from bitcoind: {e}"))?;
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|e| format!("unreadable answer from bitcoind: {e}"))?;
        match answer.get("error") {
            Some(e) if !e.is_null() => Err(format!(
                "bitcoind {method}: {} (code {})",
                e["message"], e["code"]
            )),
            _ => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The node's chain name (`main`, `test`, `signet`, `regtest`).
    pub fn chain(&mut self) -> Result<String, String> {
        let info = self.call("getblockchaininfo", json!([]))?;
        info["chain"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "getblockchaininfo without a chain".into())
    }

    /// The header of block `hash`.
    pub fn header(&mut self, hash: &BlockHash) -> Result<Header, String> {
        let h = self.call("getblockheader", json!([encode_hex(hash), true]))?;
        let parse = |v: &Value| v.as_str().and_then(from_hex);
        Ok(Header {
            hash: parse(&h["hash"]).ok_or("getblockheader without a hash")?,
            // Genesis has no parent: all ones, which no block has.
            prev: parse(&h["previousblockhash"]).unwrap_or([0xff; 32]),
            height: h["height"]
                .as_u64()
                .and_then(|h| u32::try_from(h).ok())
                .ok_or("getblockheader without a height")?,
        })
    }

    /// The transactions of block `hash`, reduced to what the watcher needs.
    pub fn block_txs(&mut self, hash: &BlockHash) -> Result<Vec<TxSummary>, String> {
        let raw = self.call("getblock", json!([encode_hex(hash), 0]))?;
        let bytes = raw
            .as_str()
            .and_then(crate::config::decode_hex)
            .ok_or("getblock: not hex")?;
        let block: bitcoin::Block = bitcoin::consensus::deserialize(&bytes)
            .map_err(|e| format!("getblock: undecodable block: {e}"))?;
        Ok(block
            .txdata
            .iter()
            .map(|tx| TxSummary {
                txid: tx.compute_txid().to_byte_array(),
                spends: tx
                    .input
                    .iter()
                    .map(|i| lnhub_chain::OutPoint {
                        txid: i.previous_output.txid.to_byte_array(),
                        vout: i.previous_output.vout,
                    })
                    .collect(),
            })
            .collect())
    }

    /// The best block's header.
    pub fn best(&mut self) -> Result<Header, String> {
        let hash = self.call("getbestblockhash", json!([]))?;
        let hash = hash
            .as_str()
            .and_then(from_hex)
            .ok_or("getbestblockhash: not a block hash")?;
        self.header(&hash)
    }
}

/// The bitcoind chain name of our network.
pub fn chain_name(network: &str) -> &'static str {
    match network {
        "bitcoin" | "mainnet" => "main",
        "testnet" => "test",
        "signet" => "signet",
        _ => "regtest",
    }
}

/// Connects at start-up: waits (at most [`START_TIMEOUT`]) for bitcoind to answer, checks it
/// follows our network, and returns the client and the tracker at the node's tip.
pub fn connect(config: BitcoindConfig, network: &str) -> Result<(Bitcoind, Tracker), String> {
    let mut node = Bitcoind::new(config);
    let started = Instant::now();
    let chain = loop {
        match node.chain() {
            Ok(chain) => break chain,
            // Only a node not up yet (no cookie yet, not listening, or still loading: RPC
            // error -28) is waited for.
            Err(e)
                if !(e.starts_with("cannot reach")
                    || e.starts_with("cannot read the cookie")
                    || e.contains("-28")) =>
            {
                return Err(format!("bitcoind: {e}"))
            }
            Err(e) if started.elapsed() >= START_TIMEOUT => {
                return Err(format!(
                    "bitcoind: {e} (gave up after {} s)",
                    START_TIMEOUT.as_secs()
                ))
            }
            Err(e) => {
                log::info!("waiting for bitcoind: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let want = chain_name(network);
    if chain != want {
        return Err(format!(
            "bitcoind at {} follows {chain:?}, not {want:?} (network {network})",
            node.config.url
        ));
    }
    let mut tracker = Tracker::new(DEFAULT_WINDOW);
    let tip = node.best()?;
    let mut events = Vec::new();
    tracker
        .update(tip, |h| node.header(h), &mut events)
        .map_err(|e| format!("bitcoind: {e:?}"))?;
    Ok((node, tracker))
}

/// What the chain thread counts, for the metrics (its own atomics: nothing on the
/// forwarding path touches them).
#[derive(Debug, Default)]
pub struct ChainStats {
    /// Blocks reported connected.
    pub connected: AtomicU64,
    /// Blocks reported disconnected.
    pub disconnected: AtomicU64,
    /// Polls that failed.
    pub poll_errors: AtomicU64,
}

/// Follows the node on a thread of its own: every new height goes to every shard; the
/// shards' requests ([`ChainRequest`], from `requests`) are served: funding outputs watched
/// through every block connected and disconnected ([`Watcher`]) and their news sent to the
/// asking shard ([`Input::Funding`]), transactions broadcast and broadcast again at each
/// block until they confirm.
pub fn follow(
    node: Bitcoind,
    tracker: Tracker,
    engine: lnhub_engine::Admin,
    stats: Arc<ChainStats>,
    requests: Receiver<(usize, ChainRequest)>,
) -> Result<(), String> {
    let mut follower = Follower {
        node,
        tracker,
        engine,
        stats,
        watcher: Watcher::new(),
        owners: HashMap::new(),
        broadcasts: HashMap::new(),
        unaccounted: Vec::new(),
        last_error: None,
    };
    std::thread::Builder::new()
        .name("chain".into())
        .spawn(move || follower.run(&requests))
        .map(|_| ())
        .map_err(|e| format!("chain thread: {e}"))
}

struct Follower {
    node: Bitcoind,
    tracker: Tracker,
    engine: lnhub_engine::Admin,
    stats: Arc<ChainStats>,
    watcher: Watcher<ChannelId>,
    /// The shard that asked about each watched channel (it owns the channel).
    owners: HashMap<ChannelId, usize>,
    /// Transactions to broadcast until they confirm, by channel.
    broadcasts: HashMap<ChannelId, Transaction>,
    /// Watched outputs the node's UTXO set does not hold: unconfirmed, or spent while we were
    /// not watching. The recent blocks are read again for them ([`Follower::rescan`]).
    unaccounted: Vec<ChannelId>,
    last_error: Option<(String, Instant)>,
}

impl Follower {
    fn run(&mut self, requests: &Receiver<(usize, ChainRequest)>) {
        let mut events = Vec::new();
        let mut next_poll = Instant::now();
        loop {
            match requests.recv_deadline(next_poll) {
                Ok((shard, request)) => {
                    self.serve(shard, request);
                    // A burst of requests (every channel after a restart) is answered once.
                    if requests.is_empty() {
                        self.report_changes();
                    }
                    // Requests never hold back the poll for long.
                    if Instant::now() < next_poll {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The engine is gone: the daemon is stopping.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            next_poll = Instant::now() + POLL;
            if !self.unaccounted.is_empty() {
                match self.rescan() {
                    Ok(()) => self.report_changes(),
                    Err(e) => self.warn(format!("reading recent blocks again: {e}")),
                }
            }
            let before = self.tracker.tip().map(|t| t.hash);
            let result = self.poll(&mut events);
            if let Err(e) = result {
                self.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                self.warn(e);
                continue;
            }
            self.last_error = None;
            if self.tracker.tip().map(|t| t.hash) == before {
                continue;
            }
            if let Some(height) = self.tracker.height() {
                log::info!("chain: height {height}");
                tell_shards(&self.engine, height);
                self.rebroadcast();
            }
            self.report_changes();
        }
    }

    /// Logs a failure, once a minute for the same one.
    fn warn(&mut self, e: String) {
        let repeat = self
            .last_error
            .as_ref()
            .is_some_and(|(l, at)| *l == e && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            log::warn!("chain: {e}");
            self.last_error = Some((e, Instant::now()));
        }
    }

    /// Moves to the node's tip, feeding the watcher every block disconnected and connected.
    fn poll(&mut self, events: &mut Vec<ChainEvent>) -> Result<(), String> {
        let tip = self.node.best()?;
        let node = &mut self.node;
        self.tracker
            .update(tip, |h| node.header(h), events)
            .map_err(|e| format!("{e:?}"))?;
        for e in events.drain(..) {
            match e {
                ChainEvent::Disconnected(h) => {
                    self.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "chain: block {} at height {} left the best chain",
                        encode_hex(&h.hash),
                        h.height
                    );
                    self.watcher.block_disconnected(h.hash);
                }
                ChainEvent::Connected(h) => {
                    self.stats.connected.fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "chain: block {} at height {}",
                        encode_hex(&h.hash),
                        h.height
                    );
                    if self.watcher.watched().next().is_some() {
                        // A block that cannot be read now is read again at the next poll:
                        // the tracker forgets the blocks after it.
                        let txs = self.node.block_txs(&h.hash)?;
                        self.watcher.block_connected(h.hash, h.height, &txs);
                    }
                }
            }
        }
        Ok(())
    }

    fn serve(&mut self, shard: usize, request: ChainRequest) {
        match request {
            ChainRequest::Watch {
                channel_id,
                outpoint,
                depth,
                restored,
            } => {
                self.owners.insert(channel_id, shard);
                let watched = lnhub_chain::OutPoint {
                    txid: outpoint.txid.to_byte_array(),
                    vout: outpoint.vout,
                };
                self.watcher.watch(
                    channel_id,
                    Watch {
                        outpoint: watched,
                        report_depth: depth,
                    },
                );
                if let Err(e) = self.catch_up(&channel_id, &outpoint, restored) {
                    self.warn(format!("funding {outpoint} of channel {channel_id}: {e}"));
                }
            }
            ChainRequest::Broadcast { channel_id, tx } => {
                self.send_tx(&channel_id, &tx);
                self.broadcasts.insert(channel_id, tx);
            }
            ChainRequest::Forget { channel_id } => {
                self.unaccounted.retain(|id| *id != channel_id);
                self.watcher.forget(&channel_id);
                self.owners.remove(&channel_id);
                self.broadcasts.remove(&channel_id);
            }
        }
    }

    /// A funding output already confirmed when it is first watched (after a restart, or a
    /// funding that confirmed before the channel's establishment ended): the node's
    /// `gettxout` gives its confirmations, the block at that height its position.
    fn catch_up(
        &mut self,
        channel_id: &ChannelId,
        outpoint: &OutPoint,
        restored: bool,
    ) -> Result<(), String> {
        if self.watcher.is_confirmed(channel_id) {
            return Ok(());
        }
        let out = self.node.call(
            "gettxout",
            json!([outpoint.txid.to_string(), outpoint.vout, false]),
        )?;
        let Some(confirmations) = out["confirmations"].as_u64().filter(|c| *c > 0) else {
            // Unconfirmed, or (restored after a stop) spent already: recent blocks say which.
            if restored {
                self.unaccounted.push(*channel_id);
            }
            return Ok(());
        };
        let best = out["bestblock"]
            .as_str()
            .and_then(from_hex)
            .ok_or("gettxout without a best block")?;
        let best = self.node.header(&best)?;
        let height = u32::try_from(u64::from(best.height) + 1 - confirmations)
            .map_err(|_| "gettxout: more confirmations than blocks")?;
        let hash = self.node.call("getblockhash", json!([height]))?;
        let hash = hash
            .as_str()
            .and_then(from_hex)
            .ok_or("getblockhash: not a block hash")?;
        let txs = self.node.block_txs(&hash)?;
        let txid = outpoint.txid.to_byte_array();
        let index = txs
            .iter()
            .position(|t| t.txid == txid)
            .ok_or("the funding transaction is not in the block gettxout names")?;
        self.watcher.set_confirmed(
            channel_id,
            Position {
                height,
                block: hash,
                tx_index: u32::try_from(index).map_err(|_| "transaction index")?,
            },
        );
        Ok(())
    }

    /// Reads the last [`DEFAULT_WINDOW`] blocks again for outputs the node's UTXO set did not
    /// hold when they were first watched: a funding that confirmed and was spent (a channel
    /// closed on chain while lnhubd was stopped) is found there, with its spender. Older
    /// than that, it is logged as not found.
    fn rescan(&mut self) -> Result<(), String> {
        let Some(tip) = self.tracker.height() else {
            return Ok(());
        };
        let from = tip.saturating_sub(DEFAULT_WINDOW as u32 - 1);
        log::info!(
            "chain: {} watched output(s) not in the UTXO set: reading blocks {from}..={tip} again",
            self.unaccounted.len()
        );
        for height in from..=tip {
            let hash = self.node.call("getblockhash", json!([height]))?;
            let hash = hash
                .as_str()
                .and_then(from_hex)
                .ok_or("getblockhash: not a block hash")?;
            let txs = self.node.block_txs(&hash)?;
            self.watcher.block_connected(hash, height, &txs);
        }
        for id in std::mem::take(&mut self.unaccounted) {
            if self.watcher.is_spent(&id) {
                log::info!("chain: channel {id}: its funding was spent while we were away");
            } else if !self.watcher.is_confirmed(&id) {
                log::debug!("chain: channel {id}: funding not confirmed in the last blocks");
            }
        }
        Ok(())
    }

    /// Tells each watched channel's shard what changed at the tip.
    fn report_changes(&mut self) {
        let Some(tip) = self.tracker.height() else {
            return;
        };
        let mut changes = Vec::new();
        self.watcher.changes(tip, &mut changes);
        for (channel_id, status) in changes {
            let Some(shard) = self.owners.get(&channel_id).copied() else {
                continue;
            };
            let vout = self
                .watcher
                .watch_of(&channel_id)
                .map_or(0, |w| w.outpoint.vout);
            let scid = status.confirmed.and_then(|p| {
                let vout = u16::try_from(vout).ok()?;
                ShortChannelId::new(p.height, p.tx_index, vout)
            });
            let status = FundingStatus {
                scid,
                depth: status.depth,
                spent: status
                    .spent
                    .map(|(txid, _, depth)| (Txid::from_byte_array(txid), depth)),
            };
            log::debug!("chain: channel {channel_id}: {status:?}");
            let _ = self
                .engine
                .send(shard, Input::Funding { channel_id, status });
        }
    }

    /// Broadcasts again every transaction not yet confirmed.
    fn rebroadcast(&mut self) {
        let confirmed: Vec<ChannelId> = self
            .broadcasts
            .keys()
            .filter(|id| self.watcher.is_spent(id))
            .copied()
            .collect();
        for id in confirmed {
            self.broadcasts.remove(&id);
        }
        let pending: Vec<(ChannelId, Transaction)> = self
            .broadcasts
            .iter()
            .map(|(id, tx)| (*id, tx.clone()))
            .collect();
        for (id, tx) in pending {
            self.send_tx(&id, &tx);
        }
    }

    fn send_tx(&mut self, channel_id: &ChannelId, tx: &Transaction) {
        let txid = tx.compute_txid();
        let hex = encode_hex(&bitcoin::consensus::serialize(tx));
        match self.node.call("sendrawtransaction", json!([hex])) {
            Ok(_) => log::info!("chain: broadcast {txid} (channel {channel_id})"),
            // Already in the mempool or in a block: nothing to do.
            Err(e) if e.contains("-27") || e.contains("already") => {
                log::debug!("chain: {txid} already known: {e}")
            }
            Err(e) => self.warn(format!("broadcasting {txid} of channel {channel_id}: {e}")),
        }
    }
}

/// Gives every shard the new height.
pub fn tell_shards(engine: &lnhub_engine::Admin, height: u32) {
    for shard in 0..engine.shards() {
        let _ = engine.send(shard, Input::BlockHeight(height));
    }
}

fn from_hex(s: &str) -> Option<BlockHash> {
    let bytes = crate::config::decode_hex(s)?;
    bytes.try_into().ok()
}

/// A regtest bitcoind lnhubd runs itself (`--bitcoind auto`): the binary `scripts/bitcoind`
/// built and cached, its data in `<data-dir>/bitcoind`, its RPC on a free loopback port. It is
/// stopped with the daemon; one left running by a killed daemon is stopped at the next start
/// (its pid file says which) before a new one starts on the same data.
pub struct OwnNode {
    child: Child,
    /// How to reach it.
    pub config: BitcoindConfig,
}

/// The `libbitcoinkernel-sys` version `scripts/bitcoind` builds by default.
const BITCOIND_CRATE_VERSION: &str = "0.4.1";

impl OwnNode {
    /// Starts it (answering comes later: [`connect`] waits for that).
    pub fn start(data_dir: &Path) -> Result<OwnNode, String> {
        let binary = cached_bitcoind()?;
        let dir = data_dir.join("bitcoind");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let pid_file = dir.join("bitcoind.pid");
        stop_orphan(&pid_file);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port for bitcoind: {e}"))?;
        let child = Command::new(&binary)
            .arg("-regtest")
            .arg(format!("-datadir={}", dir.display()))
            .arg(format!("-pid={}", pid_file.display()))
            .arg(format!("-rpcport={port}"))
            .args([
                "-server",
                "-listen=0",
                "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1",
                "-fallbackfee=0.0002",
                "-printtoconsole=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        log::info!(
            "started {} (pid {}) on regtest, data in {}",
            binary.display(),
            child.id(),
            dir.display()
        );
        Ok(OwnNode {
            child,
            config: BitcoindConfig {
                url: format!("http://127.0.0.1:{port}"),
                auth: RpcAuth::Cookie(dir.join("regtest/.cookie")),
            },
        })
    }
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// The bitcoind `scripts/bitcoind` built: `LNHUB_BITCOIND`, else its cache.
fn cached_bitcoind() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("LNHUB_BITCOIND") {
        return Ok(PathBuf::from(p));
    }
    let root = std::env::var_os("LNHUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("lnhub")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lnhub")))
        .ok_or("no HOME to find the cached bitcoind in")?;
    let path = root.join(format!("bitcoind-{BITCOIND_CRATE_VERSION}/bin/bitcoind"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "--bitcoind auto: no bitcoind at {}: run scripts/bitcoind (it builds one, about 10 \
             minutes, once) or set LNHUB_BITCOIND",
            path.display()
        ))
    }
}

/// Stops a bitcoind a killed daemon left running on this data (its pid file names it).
fn stop_orphan(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "bitcoind" {
        return;
    }
    log::info!("stopping the bitcoind (pid {pid}) a previous lnhubd left running");
    terminate(pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM: bitcoind shuts down cleanly on it.
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
