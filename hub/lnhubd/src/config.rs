//! Configuration: raw (TOML file + command-line flags) -> validated, once, at start-up.
//!
//! The file is `<data-dir>/lnhub.toml`; every field is optional and a flag of the same name
//! overrides it. Unknown fields are an error, so a typo never silently falls back to a default.
//! Everything downstream sees only [`Config`], whose fields are already checked and converted
//! to the types the rest of the daemon uses.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use lnhub_wire::types::ChainHash;
use secp256k1::PublicKey;
use serde::Deserialize;

/// Name of the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "lnhub.toml";

/// Command-line flags of `lnhubd`. Every flag but `--data-dir` overrides the config file.
#[derive(Debug, Parser)]
#[command(
    name = "lnhubd",
    version,
    about = "lnhub: a Lightning Network routing hub"
)]
pub struct Flags {
    /// Data directory (created if missing): node key, config file, channel state.
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Bitcoin network: regtest (default), testnet, signet or bitcoin.
    #[arg(long)]
    pub network: Option<String>,
    /// Address to listen on for Lightning peers [default: 0.0.0.0:9735].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Peer to dial and keep connected, as <node_id>@<host>:<port>. Repeatable.
    #[arg(long, value_name = "NODE_ID@HOST:PORT")]
    pub connect: Vec<String>,
    /// Peer allowed to open zero-conf channels to us. Repeatable.
    #[arg(long, value_name = "NODE_ID")]
    pub trusted_peer: Vec<String>,
    /// Seconds of silence from a peer before we send it a ping [default: 30].
    #[arg(long, value_name = "SECS")]
    pub ping_interval_secs: Option<u64>,
    /// Seconds we wait for a pong before dropping the connection [default: 30].
    #[arg(long, value_name = "SECS")]
    pub pong_timeout_secs: Option<u64>,
    /// Log filter (error, warn, info, debug, trace) [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Shard threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Peers without a channel connected at once [default: 1024]; peers with channels are
    /// always let in.
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,
    /// Serve Prometheus metrics on http://ADDR/metrics [default: off].
    #[arg(long = "metrics", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Admin JSON-RPC address (loopback; `off` disables it) [default: 127.0.0.1:9835].
    #[arg(long, value_name = "ADDR")]
    pub rpc_listen: Option<String>,
    /// Seconds a replaced fee policy is still honoured [default: 600].
    #[arg(long, value_name = "SECS")]
    pub policy_grace_secs: Option<u64>,
    /// Confirmations of a closing transaction before its channel is retired [default: 6].
    #[arg(long, value_name = "BLOCKS")]
    pub close_depth: Option<u32>,
    /// `auto`: on regtest, run the bitcoind `scripts/bitcoind` built (data in
    /// `<data-dir>/bitcoind`) and follow it.
    #[arg(long, value_name = "auto")]
    pub bitcoind: Option<String>,
    /// bitcoind's JSON-RPC, as http://HOST:PORT [default: none: no chain backend].
    #[arg(long, value_name = "URL")]
    pub bitcoind_rpc: Option<String>,
    /// bitcoind's cookie file (its `<datadir>/<network>/.cookie`).
    #[arg(long, value_name = "FILE")]
    pub bitcoind_cookie: Option<PathBuf>,
    /// bitcoind's `rpcuser` (with --bitcoind-rpc-password, instead of the cookie).
    #[arg(long, value_name = "USER")]
    pub bitcoind_rpc_user: Option<String>,
    /// bitcoind's `rpcpassword`.
    #[arg(long, value_name = "PASSWORD")]
    pub bitcoind_rpc_password: Option<String>,
}

/// A flag error as one line ("invalid flag: ..."), whatever clap found wrong: its own
/// message spans several lines (a tip, the usage).
pub fn flag_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unreadable arguments");
    format!("invalid flag: {}", first.trim_start_matches("error: "))
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".lnhub"),
        None => PathBuf::from(".lnhub"),
    }
}

/// The config file as written by the operator; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// See [`Flags::network`].
    pub network: Option<String>,
    /// See [`Flags::listen`].
    pub listen: Option<String>,
    /// See [`Flags::connect`].
    #[serde(default)]
    pub connect: Vec<String>,
    /// See [`Flags::trusted_peer`].
    #[serde(default)]
    pub trusted_peers: Vec<String>,
    /// See [`Flags::ping_interval_secs`].
    pub ping_interval_secs: Option<u64>,
    /// See [`Flags::pong_timeout_secs`].
    pub pong_timeout_secs: Option<u64>,
    /// See [`Flags::log_level`].
    pub log_level: Option<String>,
    /// See [`Flags::max_peers`]. All connections' buffers together are bounded by
    /// `max_peers` x 256 KiB (see the README's "Memory").
    pub max_peers: Option<usize>,
    /// See [`Flags::shards`].
    pub shards: Option<usize>,
    /// Fixed fee per forwarded HTLC [default: 1000 msat].
    pub fee_base_msat: Option<u32>,
    /// Proportional fee in millionths [default: 100].
    pub fee_proportional_millionths: Option<u32>,
    /// Blocks we keep between incoming and outgoing expiry [default: 80]. BOLT 2 asks for at
    /// least 34; more gives more time to react to a misbehaving peer on chain.
    pub cltv_expiry_delta: Option<u16>,
    /// Smallest HTLC we forward on our channels [default: 1 msat]; 0 is refused (BOLT 2
    /// forbids zero-value HTLCs, so 1 is the real floor).
    pub htlc_minimum_msat: Option<u64>,
    /// Days the forwarding log keeps an entry [default: 365]; 0 keeps them forever. A busy
    /// hub's log grows by about 150 bytes per forward (a million forwards a day is ~55 GB a
    /// year); older entries are pruned in small batches between commits.
    pub forward_log_retention_days: Option<u64>,
    /// See [`Flags::metrics_listen`].
    pub metrics_listen: Option<String>,
    /// See [`Flags::rpc_listen`].
    pub rpc_listen: Option<String>,
    /// See [`Flags::policy_grace_secs`].
    pub policy_grace_secs: Option<u64>,
    /// See [`Flags::close_depth`].
    pub close_depth: Option<u32>,
    /// See [`Flags::bitcoind`].
    pub bitcoind: Option<String>,
    /// See [`Flags::bitcoind_rpc`].
    pub bitcoind_rpc: Option<String>,
    /// See [`Flags::bitcoind_cookie`].
    pub bitcoind_cookie: Option<PathBuf>,
    /// See [`Flags::bitcoind_rpc_user`].
    pub bitcoind_rpc_user: Option<String>,
    /// See [`Flags::bitcoind_rpc_password`].
    pub bitcoind_rpc_password: Option<String>,
}

/// A peer to keep connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's node id, checked during the BOLT 8 handshake.
    pub node_id: PublicKey,
    /// Where to dial it, as given (resolved at each attempt).
    pub addr: String,
}

/// Validated configuration: the only form the daemon's rooms see.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory, created if missing.
    pub data_dir: PathBuf,
    /// Network name as configured ("regtest", ...).
    pub network: String,
    /// Genesis hash of the chain we serve, sent in `init` `networks`.
    pub chain_hash: ChainHash,
    /// Listening address.
    pub listen: SocketAddr,
    /// Peers to keep connected.
    pub connect: Vec<PeerAddr>,
    /// Peers allowed zero-conf channels.
    pub trusted_peers: BTreeSet<PublicKey>,
    /// Idle time before a ping.
    pub ping_interval: Duration,
    /// Time allowed for a pong.
    pub pong_timeout: Duration,
    /// Log filter.
    pub log_level: String,
    /// Bound on simultaneous connections.
    pub max_peers: usize,
    /// Shard threads.
    pub shards: usize,
    /// Fixed fee per forwarded HTLC.
    pub fee_base_msat: u32,
    /// Proportional fee in millionths.
    pub fee_proportional_millionths: u32,
    /// Our `cltv_expiry_delta`.
    pub cltv_expiry_delta: u16,
    /// Smallest HTLC we forward (our channels' `htlc_minimum_msat` policy).
    pub htlc_minimum_msat: u64,
    /// How long the forwarding log keeps an entry; `None` forever.
    pub forward_log_retention: Option<Duration>,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the admin JSON-RPC listens, if anywhere.
    pub rpc_listen: Option<SocketAddr>,
    /// How long a replaced policy is still honoured.
    pub policy_grace: Duration,
    /// Confirmations of a closing transaction before its channel is retired.
    pub close_depth: u32,
    /// The chain backend, if any.
    pub bitcoind: Option<crate::chain::BitcoindConfig>,
    /// Run our own regtest bitcoind (`--bitcoind auto`).
    pub bitcoind_auto: bool,
}

/// A configuration error: one line naming the field and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(field: &str, what: impl std::fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("invalid config: {field}: {what}")))
}

/// Default listening port of Lightning nodes (BOLT 1 "Connection Handling").
pub const DEFAULT_PORT: u16 = 9735;
/// Default idle time before a ping: peers such as LDK ping every 10 s; 30 s keeps NAT mappings
/// alive without adding traffic a busy hub would notice.
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 30;
/// Default pong deadline: long enough for a loaded peer, short enough to free a dead slot.
pub const DEFAULT_PONG_TIMEOUT_SECS: u64 = 30;
/// Default connection bound, see [`RawConfig::max_peers`].
pub const DEFAULT_MAX_PEERS: usize = 1024;
/// Default base fee: 1 sat per HTLC, what LND and Core Lightning charge by default.
pub const DEFAULT_FEE_BASE_MSAT: u32 = 1_000;
/// Default proportional fee: 100 ppm (0.01%), mid-range of what routing nodes charge.
pub const DEFAULT_FEE_PROPORTIONAL_MILLIONTHS: u32 = 100;
/// Default `cltv_expiry_delta`: LND's default; above BOLT 2's minimum of 34.
pub const DEFAULT_CLTV_EXPIRY_DELTA: u16 = 80;
/// Smallest `cltv_expiry_delta` we accept in config (BOLT 2 "cltv_expiry_delta Selection").
pub const MIN_CLTV_EXPIRY_DELTA: u16 = 34;
/// Default forwarding-log retention: a year of history for accounting, after which entries
/// are pruned (see [`RawConfig::forward_log_retention_days`]).
pub const DEFAULT_FORWARD_LOG_RETENTION_DAYS: u64 = 365;
/// Longest retention accepted short of "forever" (0): a century, far past any use, keeps the
/// seconds arithmetic far from overflow.
pub const MAX_FORWARD_LOG_RETENTION_DAYS: u64 = 36_500;
/// Default admin RPC address: loopback only, the port after Lightning's 9735.
pub const DEFAULT_RPC_LISTEN: &str = "127.0.0.1:9835";
/// Default grace period of a replaced policy: ten minutes, time enough for the new
/// `channel_update` to reach the senders that computed routes with the old one (LND and
/// Core Lightning keep the old fee for about as long).
pub const DEFAULT_POLICY_GRACE_SECS: u64 = 600;

/// Default forwarding `htlc_minimum_msat`: any non-zero HTLC.
pub const DEFAULT_HTLC_MINIMUM_MSAT: u64 = 1;
/// Largest forwarding `htlc_minimum_msat` we accept in config: 1 BTC. Anything above makes
/// the hub useless for payments and is surely a unit mistake (sat for msat).
pub const MAX_HTLC_MINIMUM_MSAT: u64 = 100_000_000_000;

impl Config {
    /// Reads `<data-dir>/lnhub.toml` (if present), applies the flags over it and validates.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let path = flags.data_dir.join(CONFIG_FILE);
        let raw = read_raw(&path)?;
        Config::validate(flags, raw)
    }

    /// Merges flags over the file and checks every field.
    pub fn validate(flags: Flags, raw: RawConfig) -> Result<Config, ConfigError> {
        let network = flags
            .network
            .or(raw.network)
            .unwrap_or_else(|| "regtest".into());
        let chain_hash = match network.as_str() {
            "regtest" => ChainHash::REGTEST,
            "testnet" => ChainHash::TESTNET,
            "signet" => ChainHash::SIGNET,
            "bitcoin" | "mainnet" => ChainHash::BITCOIN,
            other => {
                return err(
                    "network",
                    format!("unknown network {other:?} (regtest, testnet, signet, bitcoin)"),
                )
            }
        };
        let listen_str = flags
            .listen
            .or(raw.listen)
            .unwrap_or_else(|| format!("0.0.0.0:{DEFAULT_PORT}"));
        let listen = match listen_str.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                return err(
                    "listen",
                    format!("{listen_str:?} is not an IP:port address ({e})"),
                )
            }
        };
        let mut connect = Vec::new();
        for s in raw.connect.iter().chain(flags.connect.iter()) {
            let peer = parse_peer_addr(s).or_else(|e| err("connect", e))?;
            if !connect.contains(&peer) {
                connect.push(peer);
            }
        }
        let mut trusted_peers = BTreeSet::new();
        for s in raw.trusted_peers.iter().chain(flags.trusted_peer.iter()) {
            trusted_peers.insert(parse_node_id(s).or_else(|e| err("trusted_peer", e))?);
        }
        let ping = flags
            .ping_interval_secs
            .or(raw.ping_interval_secs)
            .unwrap_or(DEFAULT_PING_INTERVAL_SECS);
        if !(1..=3600).contains(&ping) {
            return err("ping_interval_secs", format!("{ping} is outside 1..=3600"));
        }
        let pong = flags
            .pong_timeout_secs
            .or(raw.pong_timeout_secs)
            .unwrap_or(DEFAULT_PONG_TIMEOUT_SECS);
        if !(1..=3600).contains(&pong) {
            return err("pong_timeout_secs", format!("{pong} is outside 1..=3600"));
        }
        let log_level = flags
            .log_level
            .or(raw.log_level)
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return err(
                "log_level",
                format!("{log_level:?} is not one of error, warn, info, debug, trace"),
            );
        }
        let max_peers = flags
            .max_peers
            .or(raw.max_peers)
            .unwrap_or(DEFAULT_MAX_PEERS);
        if !(1..=65_536).contains(&max_peers) {
            return err("max_peers", format!("{max_peers} is outside 1..=65536"));
        }
        let shards = flags.shards.or(raw.shards).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        if !(1..=256).contains(&shards) {
            return err("shards", format!("{shards} is outside 1..=256"));
        }
        let cltv_expiry_delta = raw.cltv_expiry_delta.unwrap_or(DEFAULT_CLTV_EXPIRY_DELTA);
        if cltv_expiry_delta < MIN_CLTV_EXPIRY_DELTA {
            return err(
                "cltv_expiry_delta",
                format!(
                    "{cltv_expiry_delta} is below the BOLT 2 minimum of {MIN_CLTV_EXPIRY_DELTA}"
                ),
            );
        }
        let htlc_minimum_msat = raw.htlc_minimum_msat.unwrap_or(DEFAULT_HTLC_MINIMUM_MSAT);
        if !(1..=MAX_HTLC_MINIMUM_MSAT).contains(&htlc_minimum_msat) {
            return err(
                "htlc_minimum_msat",
                format!("{htlc_minimum_msat} is outside 1..={MAX_HTLC_MINIMUM_MSAT}"),
            );
        }
        let retention_days = raw
            .forward_log_retention_days
            .unwrap_or(DEFAULT_FORWARD_LOG_RETENTION_DAYS);
        if retention_days > MAX_FORWARD_LOG_RETENTION_DAYS {
            return err(
                "forward_log_retention_days",
                format!(
                    "{retention_days} is above {MAX_FORWARD_LOG_RETENTION_DAYS} (0 keeps the log \
                     forever)"
                ),
            );
        }
        let forward_log_retention =
            (retention_days > 0).then(|| Duration::from_secs(retention_days * 86_400));
        let metrics_listen = match flags.metrics_listen.or(raw.metrics_listen) {
            None => None,
            Some(a) => Some(parse_addr("metrics_listen", &a)?),
        };
        let rpc = flags
            .rpc_listen
            .or(raw.rpc_listen)
            .unwrap_or_else(|| DEFAULT_RPC_LISTEN.into());
        let rpc_listen = match rpc.as_str() {
            "off" | "none" => None,
            a => {
                let addr = parse_addr("rpc_listen", a)?;
                // The cookie guards it, but the admin API has no transport security: it
                // stays on this machine.
                if !addr.ip().is_loopback() {
                    return err(
                        "rpc_listen",
                        format!("{a} is not a loopback address (the admin API stays local)"),
                    );
                }
                Some(addr)
            }
        };
        let grace = flags
            .policy_grace_secs
            .or(raw.policy_grace_secs)
            .unwrap_or(DEFAULT_POLICY_GRACE_SECS);
        if grace > 86_400 {
            return err("policy_grace_secs", format!("{grace} is above 86400"));
        }
        let close_depth = flags
            .close_depth
            .or(raw.close_depth)
            .unwrap_or(lnhub_engine::DEFAULT_CLOSE_DEPTH);
        if !(1..=1000).contains(&close_depth) {
            return err(
                "close_depth",
                format!("{close_depth} is not within 1..=1000"),
            );
        }
        let bitcoind = bitcoind_config(
            flags.bitcoind_rpc.or(raw.bitcoind_rpc),
            flags.bitcoind_cookie.or(raw.bitcoind_cookie),
            flags.bitcoind_rpc_user.or(raw.bitcoind_rpc_user),
            flags.bitcoind_rpc_password.or(raw.bitcoind_rpc_password),
        )?;
        let bitcoind_auto = match flags.bitcoind.or(raw.bitcoind).as_deref() {
            None => false,
            Some("auto") if network != "regtest" => {
                return err(
                    "bitcoind",
                    "auto runs a regtest node: use it with network regtest",
                )
            }
            Some("auto") if bitcoind.is_some() => {
                return err("bitcoind", "auto or bitcoind_rpc, not both")
            }
            Some("auto") => true,
            Some(other) => return err("bitcoind", format!("{other:?}: the one mode is auto")),
        };
        Ok(Config {
            bitcoind,
            bitcoind_auto,
            metrics_listen,
            rpc_listen,
            policy_grace: Duration::from_secs(grace),
            close_depth,
            htlc_minimum_msat,
            forward_log_retention,
            shards,
            fee_base_msat: raw.fee_base_msat.unwrap_or(DEFAULT_FEE_BASE_MSAT),
            fee_proportional_millionths: raw
                .fee_proportional_millionths
                .unwrap_or(DEFAULT_FEE_PROPORTIONAL_MILLIONTHS),
            cltv_expiry_delta,
            data_dir: flags.data_dir,
            network,
            chain_hash,
            listen,
            connect,
            trusted_peers,
            ping_interval: Duration::from_secs(ping),
            pong_timeout: Duration::from_secs(pong),
            log_level,
            max_peers,
        })
    }
}

/// The chain backend from its four settings: a URL and either a cookie file or a user and a
/// password (credentials without a URL are a mistake worth saying).
fn bitcoind_config(
    url: Option<String>,
    cookie: Option<PathBuf>,
    user: Option<String>,
    password: Option<String>,
) -> Result<Option<crate::chain::BitcoindConfig>, ConfigError> {
    use crate::chain::{BitcoindConfig, RpcAuth};
    let Some(url) = url else {
        if cookie.is_some() || user.is_some() || password.is_some() {
            return err("bitcoind_rpc", "credentials given without the RPC URL");
        }
        return Ok(None);
    };
    let valid = url
        .strip_prefix("http://")
        .and_then(|rest| rest.trim_end_matches('/').rsplit_once(':'))
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return err("bitcoind_rpc", format!("{url:?} is not http://HOST:PORT"));
    }
    let auth = match (cookie, user, password) {
        (Some(cookie), None, None) => RpcAuth::Cookie(cookie),
        (None, Some(user), Some(password)) => RpcAuth::UserPass(user, password),
        (None, None, None) => {
            return err(
                "bitcoind_rpc",
                "needs bitcoind_cookie, or bitcoind_rpc_user and bitcoind_rpc_password",
            )
        }
        _ => {
            return err(
                "bitcoind_cookie",
                "give the cookie, or the user and the password, not a mix",
            )
        }
    };
    Ok(Some(BitcoindConfig { url, auth }))
}

fn parse_addr(field: &str, a: &str) -> Result<SocketAddr, ConfigError> {
    a.parse::<SocketAddr>()
        .or_else(|e| err(field, format!("{a:?} is not an IP:port address ({e})")))
}

fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            // toml's message spans several lines (it quotes the offending line); keep the first.
            let first = e
                .message()
                .lines()
                .next()
                .unwrap_or("parse error")
                .to_string();
            let at = e
                .span()
                .map(|s| format!(" (line {})", line_of(&text, s.start)))
                .unwrap_or_default();
            ConfigError(format!("invalid config: {}: {first}{at}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RawConfig::default()),
        Err(e) => Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The 1-based line of byte `offset` in `text` (an offset at a line's start is on that line).
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Parses a 33-byte compressed public key written as 66 hex characters.
pub fn parse_node_id(s: &str) -> Result<PublicKey, String> {
    let bytes = decode_hex(s).ok_or_else(|| format!("{s:?} is not 66 hex characters"))?;
    PublicKey::from_slice(&bytes).map_err(|_| format!("{s:?} is not a valid public key"))
}

/// Parses `<node_id>@<host>:<port>`.
pub fn parse_peer_addr(s: &str) -> Result<PeerAddr, String> {
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?} is not <node_id>@<host>:<port>"))?;
    let node_id = parse_node_id(id)?;
    // Check the shape now (host and port present) so a typo fails at start-up; resolution
    // happens at every dial so a changing DNS name keeps working.
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => return Err(format!("{addr:?} is not <host>:<port>")),
    }
    Ok(PeerAddr {
        node_id,
        addr: addr.to_string(),
    })
}

/// Resolves a `host:port` to its first socket address.
pub fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

/// Lower-case hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes an even-length hex string.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("lnhubd").chain(args.iter().copied())).unwrap()
    }

    const ID: &str = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7";

    #[test]
    fn defaults_are_regtest_on_9735() {
        let c = Config::validate(flags(&["--data-dir", "/tmp/x"]), RawConfig::default()).unwrap();
        assert_eq!(c.network, "regtest");
        assert_eq!(c.chain_hash, ChainHash::REGTEST);
        assert_eq!(c.listen, "0.0.0.0:9735".parse().unwrap());
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert!(c.connect.is_empty());
        assert_eq!(c.rpc_listen, Some("127.0.0.1:9835".parse().unwrap()));
        assert_eq!(c.metrics_listen, None);
        let c = Config::validate(flags(&["--rpc-listen", "off"]), RawConfig::default()).unwrap();
        assert_eq!(c.rpc_listen, None);
    }

    #[test]
    fn flags_override_file() {
        let raw: RawConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nnetwork = \"signet\"").unwrap();
        let c = Config::validate(flags(&["--listen", "127.0.0.1:2"]), raw).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(c.network, "signet");
    }

    #[test]
    fn bad_fields_name_the_field() {
        let e =
            Config::validate(flags(&["--listen", "nowhere"]), RawConfig::default()).unwrap_err();
        assert!(e.0.contains("listen"), "{e}");
        let e = Config::validate(flags(&["--network", "moon"]), RawConfig::default()).unwrap_err();
        assert!(e.0.contains("network"), "{e}");
        let e =
            Config::validate(flags(&["--connect", "abc@x:1"]), RawConfig::default()).unwrap_err();
        assert!(e.0.contains("connect"), "{e}");
        let e = Config::validate(flags(&["--ping-interval-secs", "0"]), RawConfig::default())
            .unwrap_err();
        assert!(e.0.contains("ping_interval_secs"), "{e}");
        assert!(toml::from_str::<RawConfig>("lisen = \"x\"").is_err());
        let e = Config::validate(flags(&["--rpc-listen", "0.0.0.0:1"]), RawConfig::default())
            .unwrap_err();
        assert!(
            e.0.contains("rpc_listen") && e.0.contains("loopback"),
            "{e}"
        );
        let e = Config::validate(flags(&["--metrics", "x"]), RawConfig::default()).unwrap_err();
        assert!(e.0.contains("metrics_listen"), "{e}");
        for args in [
            &[
                "--bitcoind-rpc",
                "127.0.0.1:18443",
                "--bitcoind-cookie",
                "c",
            ][..],
            &["--bitcoind-rpc", "http://127.0.0.1:18443"],
            &["--bitcoind-cookie", "c"],
            &[
                "--bitcoind-rpc",
                "http://127.0.0.1:1",
                "--bitcoind-cookie",
                "c",
                "--bitcoind-rpc-user",
                "u",
            ],
        ] {
            let e = Config::validate(flags(args), RawConfig::default()).unwrap_err();
            assert!(e.0.contains("bitcoind"), "{args:?}: {e}");
        }
        let c = Config::validate(
            flags(&[
                "--bitcoind-rpc",
                "http://127.0.0.1:18443",
                "--bitcoind-cookie",
                "c",
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert!(c.bitcoind.is_some());
        let c = Config::validate(flags(&["--bitcoind", "auto"]), RawConfig::default()).unwrap();
        assert!(c.bitcoind_auto && c.bitcoind.is_none());
        for args in [
            &["--bitcoind", "manual"][..],
            &["--bitcoind", "auto", "--network", "signet"],
            &[
                "--bitcoind",
                "auto",
                "--bitcoind-rpc",
                "http://127.0.0.1:1",
                "--bitcoind-cookie",
                "c",
            ],
        ] {
            let e = Config::validate(flags(args), RawConfig::default()).unwrap_err();
            assert!(e.0.contains("invalid config: bitcoind"), "{args:?}: {e}");
        }
        let raw: RawConfig = toml::from_str("htlc_minimum_msat = 0").unwrap();
        let e = Config::validate(flags(&["--data-dir", "/tmp/x"]), raw).unwrap_err();
        assert!(e.0.contains("htlc_minimum_msat"), "{e}");
    }

    #[test]
    fn toml_errors_name_their_own_line() {
        let text = "network = \"regtest\"\nlisen = 1\n";
        let start = text.find("lisen").unwrap();
        assert_eq!(line_of(text, start), 2);
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, text.len()), 3);
    }

    #[test]
    fn flag_errors_are_one_line() {
        for args in [
            &["lnhubd", "--no-such-flag"][..],
            &["lnhubd", "--shards", "many"],
            &["lnhubd", "--max-peers"],
        ] {
            let e = Flags::try_parse_from(args.iter().copied()).unwrap_err();
            let line = flag_error_line(&e);
            assert!(line.starts_with("invalid flag: "), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn peer_addr_parses() {
        let p = parse_peer_addr(&format!("{ID}@127.0.0.1:9735")).unwrap();
        assert_eq!(p.addr, "127.0.0.1:9735");
        assert!(parse_peer_addr(&format!("{ID}@127.0.0.1")).is_err());
        assert!(parse_peer_addr("02@127.0.0.1:1").is_err());
    }
}
