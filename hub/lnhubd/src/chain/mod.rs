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
//! The thread that does all this, and feeds the on-chain wallet, is in `follow`.
//!
//! The client is `ureq` (already the CLI's) with `serde_json`: the handful of RPC methods
//! (`getblockchaininfo`, `getbestblockhash`, `getblockheader`, `getblockhash`, `getblock`,
//! `gettxout`, `estimatesmartfee`, `sendrawtransaction`) do not justify a client crate that
//! pins a type per Core version. Authentication: bitcoind's cookie file (read at each attempt,
//! as bitcoind rewrites it at every start) or a user and password.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

mod follow;

pub use follow::{follow, WalletCommand};

use base64::Engine as _;
use bitcoin::hashes::Hash as _;
use lnhub_chain::{BlockHash, Header, Tracker, TxSummary, DEFAULT_WINDOW};
use lnhub_engine::Input;

use crate::config::encode_hex;
use serde_json::{json, Value};

/// How often the best block is asked for.
pub const POLL: Duration = Duration::from_millis(500);
/// How long start-up waits for bitcoind to answer before giving up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the chain comes from: what the chain thread ([`follow`]) asks of a node. The logic
/// that turns the answers into events (`lnhub_chain::Tracker`, `lnhub_chain::Watcher`) is
/// pure; a source only fetches. [`Bitcoind`] is the one backend (an Esplora one would
/// implement the same).
pub trait ChainSource: Send + 'static {
    /// The best block's header.
    fn best(&mut self) -> Result<Header, String>;
    /// The header of block `hash`.
    fn header(&mut self, hash: &BlockHash) -> Result<Header, String>;
    /// Block `hash` (hex as bitcoind writes it).
    fn block(&mut self, hash: &str) -> Result<bitcoin::Block, String>;
    /// The hash of the best chain's block at `height`.
    fn block_hash(&mut self, height: u32) -> Result<bitcoin::BlockHash, String>;
    /// `outpoint`'s confirmations and the best block they count to, if it is an unspent
    /// output of a confirmed transaction; `None` if unconfirmed, spent or unknown.
    fn confirmations(
        &mut self,
        outpoint: &bitcoin::OutPoint,
    ) -> Result<Option<(u64, BlockHash)>, String>;
    /// Broadcasts `tx`: `Ok(true)` if the node took it now, `Ok(false)` if it already had it
    /// (in its mempool or chain), otherwise why it refused.
    fn broadcast(&mut self, tx: &bitcoin::Transaction) -> Result<bool, String>;
    /// A feerate for our transactions (sat per 1,000 weight), at least the floor.
    fn fee_rate(&mut self) -> u32;
}

impl ChainSource for Bitcoind {
    fn best(&mut self) -> Result<Header, String> {
        Bitcoind::best(self)
    }
    fn header(&mut self, hash: &BlockHash) -> Result<Header, String> {
        Bitcoind::header(self, hash)
    }
    fn block(&mut self, hash: &str) -> Result<bitcoin::Block, String> {
        Bitcoind::block(self, hash)
    }
    fn block_hash(&mut self, height: u32) -> Result<bitcoin::BlockHash, String> {
        Bitcoind::block_hash(self, height)
    }
    fn confirmations(
        &mut self,
        outpoint: &bitcoin::OutPoint,
    ) -> Result<Option<(u64, BlockHash)>, String> {
        let out = self.call(
            "gettxout",
            json!([outpoint.txid.to_string(), outpoint.vout, false]),
        )?;
        let Some(confirmations) = out["confirmations"].as_u64().filter(|c| *c > 0) else {
            return Ok(None);
        };
        let best = out["bestblock"]
            .as_str()
            .and_then(from_hex)
            .ok_or("gettxout without a best block")?;
        Ok(Some((confirmations, best)))
    }
    fn broadcast(&mut self, tx: &bitcoin::Transaction) -> Result<bool, String> {
        let hex = encode_hex(&bitcoin::consensus::serialize(tx));
        // Core's own checks first, for the reason of a refusal in one line.
        let verdict = self.call("testmempoolaccept", json!([[hex]]))?;
        let verdict = &verdict[0];
        if verdict["allowed"] != true {
            let reason = verdict["reject-reason"]
                .as_str()
                .unwrap_or("no reason given");
            if reason.contains("already") {
                return Ok(false);
            }
            // Its inputs already spent, by itself (confirmed) or by a transaction that won:
            // nothing to send; what the blocks hold says which.
            if reason == "missing-inputs" || reason.contains("bad-txns-inputs-missingorspent") {
                return Ok(false);
            }
            return Err(format!("bitcoind refuses it: {reason}"));
        }
        match self.call("sendrawtransaction", json!([hex])) {
            Ok(_) => Ok(true),
            Err(e) if e.contains("-27") || e.contains("already") => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn fee_rate(&mut self) -> u32 {
        Bitcoind::fee_rate(self)
    }
}

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

    /// Block `hash` (hex as bitcoind writes it).
    pub fn block(&mut self, hash: &str) -> Result<bitcoin::Block, String> {
        let raw = self.call("getblock", json!([hash, 0]))?;
        let bytes = raw
            .as_str()
            .and_then(crate::config::decode_hex)
            .ok_or("getblock: not hex")?;
        bitcoin::consensus::deserialize(&bytes)
            .map_err(|e| format!("getblock: undecodable block: {e}"))
    }

    /// The hash of the best chain's block at `height`.
    pub fn block_hash(&mut self, height: u32) -> Result<bitcoin::BlockHash, String> {
        let hash = self.call("getblockhash", json!([height]))?;
        hash.as_str()
            .and_then(|h| h.parse::<bitcoin::BlockHash>().ok())
            .ok_or_else(|| "getblockhash: not a block hash".to_string())
    }

    /// A feerate for our transactions: bitcoind's estimate for 6 blocks, or the fallback
    /// (regtest has no estimates), at least the floor.
    pub fn fee_rate(&mut self) -> u32 {
        let estimate = self
            .call("estimatesmartfee", json!([6]))
            .ok()
            .and_then(|v| v["feerate"].as_f64());
        lnhub_chain::fee_rate(estimate, FALLBACK_FEERATE_SAT_PER_KW)
    }
}

/// The feerate (sat per 1,000 weight units) used when bitcoind has no estimate: 1,000
/// (4 sat/vB).
pub const FALLBACK_FEERATE_SAT_PER_KW: u32 = 1_000;

/// What the watcher needs of `block`'s transactions.
fn summaries(block: &bitcoin::Block) -> Vec<TxSummary> {
    block
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
        .collect()
}

impl Bitcoind {
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
    /// Funding outputs watched.
    pub watched: AtomicU64,
    /// Transactions bitcoind took from us.
    pub broadcasts: AtomicU64,
    /// Transactions sent again at each block until they confirm.
    pub pending: AtomicU64,
    /// The wallet's balance (sat): confirmed, unconfirmed, immature.
    pub wallet: [AtomicU64; 3],
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
