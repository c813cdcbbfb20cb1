//! The chain backend: a bitcoind over JSON-RPC, polled (as `lightning-block-sync` polls for
//! LDK): the best block hash every [`POLL`], and the headers a new tip needs, which
//! [`lnhub_chain::Tracker`] turns into blocks disconnected and connected in order. Each new
//! height goes to every shard (`Input::BlockHeight`): HTLC expiries, the forwarding
//! decision's CLTV limits and the onion replay set follow the node.
//!
//! The client is `ureq` (already the CLI's) with `serde_json`: three read-only RPC methods
//! (`getblockchaininfo`, `getbestblockhash`, `getblockheader`) do not justify a client crate
//! that pins a type per Core version. Authentication: bitcoind's cookie file (read at each
//! attempt, as bitcoind rewrites it at every start) or a user and password.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use lnhub_chain::{BlockHash, ChainEvent, Header, Tracker, DEFAULT_WINDOW};
use lnhub_engine::Input;
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
        let h = self.call("getblockheader", json!([to_hex(hash), true]))?;
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
            // Only a node not up yet (or still loading, RPC error -28) is waited for.
            Err(e) if !(e.starts_with("cannot reach") || e.contains("-28")) => {
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

/// Follows the node on a thread of its own: every new height goes to every shard.
pub fn follow(
    mut node: Bitcoind,
    mut tracker: Tracker,
    engine: lnhub_engine::Admin,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("chain".into())
        .spawn(move || {
            let mut events = Vec::new();
            let mut last_error: Option<(String, Instant)> = None;
            loop {
                std::thread::sleep(POLL);
                let before = tracker.height();
                let result = node.best().and_then(|tip| {
                    let mut fetch = |h: &BlockHash| node.header(h);
                    tracker
                        .update(tip, &mut fetch, &mut events)
                        .map_err(|e| format!("{e:?}"))
                });
                if let Err(e) = result {
                    // Once a minute for the same failure.
                    let repeat = last_error
                        .as_ref()
                        .is_some_and(|(l, at)| *l == e && at.elapsed() < Duration::from_secs(60));
                    if !repeat {
                        log::warn!("chain: {e}");
                        last_error = Some((e, Instant::now()));
                    }
                    continue;
                }
                last_error = None;
                for e in events.drain(..) {
                    match e {
                        ChainEvent::Disconnected(h) => log::warn!(
                            "chain: block {} at height {} left the best chain",
                            to_hex(&h.hash),
                            h.height
                        ),
                        ChainEvent::Connected(h) => {
                            log::debug!("chain: block {} at height {}", to_hex(&h.hash), h.height)
                        }
                    }
                }
                if let Some(height) = tracker.height().filter(|h| Some(*h) != before) {
                    log::info!("chain: height {height}");
                    tell_shards(&engine, height);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("chain thread: {e}"))
}

/// Gives every shard the new height.
pub fn tell_shards(engine: &lnhub_engine::Admin, height: u32) {
    for shard in 0..engine.shards() {
        let _ = engine.send(shard, Input::BlockHeight(height));
    }
}

/// A block hash as bitcoind writes it (hex, bytes as the node orders them).
fn to_hex(hash: &BlockHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<BlockHash> {
    let bytes = crate::config::decode_hex(s)?;
    bytes.try_into().ok()
}
