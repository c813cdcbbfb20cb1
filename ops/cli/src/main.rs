//! `lnhub-cli`: lnhubd's admin API from the command line, in the manner of `lncli` and
//! `lightning-cli`: positional ids, `--flags`, the answer as JSON on standard output, a
//! non-zero exit status and one line on standard error when something is wrong.
//!
//! It finds the daemon by itself in the data directory (`--data-dir`, the daemon's default
//! `~/.lnhub`): the address in `rpc_address` and the cookie in `.cookie`, both written by
//! lnhubd at start-up. `--rpc` and `--cookie` override them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Debug, Parser)]
#[command(
    name = "lnhub-cli",
    version,
    about = "Operate a running lnhubd through its admin JSON-RPC"
)]
struct Cli {
    /// lnhubd's data directory (where it writes rpc_address and .cookie).
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir(), global = true)]
    data_dir: PathBuf,
    /// The RPC address, instead of the one in the data directory.
    #[arg(long, value_name = "ADDR", global = true)]
    rpc: Option<String>,
    /// The cookie file, instead of the one in the data directory.
    #[arg(long, value_name = "FILE", global = true)]
    cookie: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The node's id, network, block height, peers and channels by state.
    Getinfo,
    /// Connect to a peer.
    Connect {
        /// <node_id>@<host>:<port>
        peer: String,
    },
    /// Close the connection to a peer (a peer in the config is dialled again later).
    Disconnect {
        /// The peer's node id.
        id: String,
    },
    /// The connected peers.
    Listpeers,
    /// The channels: balances, HTLCs in flight, policy, state.
    Listchannels {
        /// Only the channels with this peer.
        #[arg(long, value_name = "NODE_ID")]
        peer: Option<String>,
    },
    /// Change the forwarding policy of one channel or all (the old one is honoured for the
    /// grace period; each peer receives the new channel_update).
    Setchannelfee {
        /// A channel id, a short channel id (BxTxO), or "all".
        channel: String,
        /// Base fee, msat.
        #[arg(long, value_name = "MSAT")]
        base_msat: Option<u64>,
        /// Proportional fee, parts per million.
        #[arg(long, value_name = "PPM")]
        ppm: Option<u64>,
        /// cltv_expiry_delta, blocks.
        #[arg(long, value_name = "BLOCKS")]
        cltv_expiry_delta: Option<u64>,
        /// Smallest HTLC forwarded, msat.
        #[arg(long, value_name = "MSAT")]
        htlc_minimum_msat: Option<u64>,
        /// Largest HTLC forwarded, msat.
        #[arg(long, value_name = "MSAT")]
        htlc_maximum_msat: Option<u64>,
    },
    /// Close a channel cooperatively.
    Closechannel {
        /// A channel id or a short channel id (BxTxO).
        channel: String,
    },
    /// The forwarding log, oldest first, one page at a time.
    Listforwards {
        /// Resolved at or after this unix time.
        #[arg(long, value_name = "UNIX_SECS")]
        since: Option<u64>,
        /// Resolved at or before this unix time.
        #[arg(long, value_name = "UNIX_SECS")]
        until: Option<u64>,
        /// Only forwards in or out of this channel.
        #[arg(long, value_name = "CHANNEL")]
        channel: Option<String>,
        /// Skip this many (the previous page's next_offset).
        #[arg(long, value_name = "N")]
        offset: Option<u64>,
        /// At most this many [default: 100].
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Channels retired after their closing transaction was deep enough.
    Listclosedchannels,
    /// Opens a channel to a connected peer, funded by the on-chain wallet.
    Openchannel {
        /// The peer's node id.
        peer: String,
        /// The channel's amount in satoshis.
        amount_sat: u64,
        /// Millisatoshis given to the peer at opening.
        #[arg(long, value_name = "MSAT")]
        push_msat: Option<u64>,
        /// Announce the channel (public).
        #[arg(long)]
        announce: bool,
    },
    /// A new address of the on-chain wallet.
    Newaddr,
    /// The on-chain wallet's unspent outputs and balances.
    Listfunds,
    /// Sends on-chain funds from the wallet.
    Withdraw {
        /// Where to.
        address: String,
        /// Satoshis, or `all` (everything, less the fee).
        amount: String,
        /// Feerate in sat/vB [default: bitcoind's estimate].
        #[arg(long, value_name = "N")]
        sat_per_vb: Option<u64>,
    },
    /// Stop lnhubd.
    Stop,
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".lnhub"),
        None => PathBuf::from(".lnhub"),
    }
}

/// The method and named parameters of a command.
fn request(command: Command) -> (&'static str, Map<String, Value>) {
    let mut p = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            p.insert(k.to_string(), v);
        }
    };
    let method = match command {
        Command::Getinfo => "getinfo",
        Command::Connect { peer } => {
            put("peer", Some(json!(peer)));
            "connect"
        }
        Command::Disconnect { id } => {
            put("id", Some(json!(id)));
            "disconnect"
        }
        Command::Listpeers => "listpeers",
        Command::Listchannels { peer } => {
            put("peer", peer.map(Value::from));
            "listchannels"
        }
        Command::Setchannelfee {
            channel,
            base_msat,
            ppm,
            cltv_expiry_delta,
            htlc_minimum_msat,
            htlc_maximum_msat,
        } => {
            put("channel", Some(json!(channel)));
            put("base_msat", base_msat.map(Value::from));
            put("ppm", ppm.map(Value::from));
            put("cltv_expiry_delta", cltv_expiry_delta.map(Value::from));
            put("htlc_minimum_msat", htlc_minimum_msat.map(Value::from));
            put("htlc_maximum_msat", htlc_maximum_msat.map(Value::from));
            "setchannelfee"
        }
        Command::Closechannel { channel } => {
            put("channel", Some(json!(channel)));
            "closechannel"
        }
        Command::Listforwards {
            since,
            until,
            channel,
            offset,
            limit,
        } => {
            put("since", since.map(Value::from));
            put("until", until.map(Value::from));
            put("channel", channel.map(Value::from));
            put("offset", offset.map(Value::from));
            put("limit", limit.map(Value::from));
            "listforwards"
        }
        Command::Listclosedchannels => "listclosedchannels",
        Command::Openchannel {
            peer,
            amount_sat,
            push_msat,
            announce,
        } => {
            put("peer", Some(json!(peer)));
            put("amount_sat", Some(json!(amount_sat)));
            put("push_msat", push_msat.map(Value::from));
            put("announce", announce.then_some(Value::Bool(true)));
            "openchannel"
        }
        Command::Newaddr => "newaddr",
        Command::Listfunds => "listfunds",
        Command::Withdraw {
            address,
            amount,
            sat_per_vb,
        } => {
            put("address", Some(json!(address)));
            let amount = match amount.parse::<u64>() {
                Ok(sat) => json!(sat),
                Err(_) => json!(amount),
            };
            put("amount_sat", Some(amount));
            put("sat_per_vb", sat_per_vb.map(Value::from));
            "withdraw"
        }
        Command::Stop => "stop",
    };
    (method, p)
}

fn read_trimmed(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            format!(
                "cannot read the {what} {}: {e} (is lnhubd running with this --data-dir?)",
                path.display()
            )
        })
}

/// Where the daemon is and how to prove we may ask.
struct Target {
    data_dir: PathBuf,
    rpc: Option<String>,
    cookie: Option<PathBuf>,
}

/// Calls `method` and returns its result, or the one line to print.
fn call(cli: &Target, method: &str, params: Map<String, Value>) -> Result<Value, String> {
    let addr = match &cli.rpc {
        Some(a) => a.clone(),
        None => read_trimmed(&cli.data_dir.join("rpc_address"), "RPC address file")?,
    };
    let cookie_path = cli
        .cookie
        .clone()
        .unwrap_or_else(|| cli.data_dir.join(".cookie"));
    let cookie = read_trimmed(&cookie_path, "cookie")?;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(cookie)
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let response = agent
        .post(&format!("http://{addr}/"))
        .set("Authorization", &auth)
        .send_string(&body.to_string());
    let text = match response {
        Ok(r) => r.into_string(),
        Err(ureq::Error::Status(401, _)) => {
            return Err(format!(
                "lnhubd at {addr} refused the cookie {} (stale: is it another daemon's?)",
                cookie_path.display()
            ))
        }
        Err(ureq::Error::Status(_, r)) => r.into_string(),
        Err(ureq::Error::Transport(t)) => {
            return Err(format!(
                "cannot reach lnhubd at {addr}: {t} (is it running?)"
            ))
        }
    }
    .map_err(|e| format!("unreadable answer from {addr}: {e}"))?;
    let answer: Value =
        serde_json::from_str(&text).map_err(|e| format!("unreadable answer from {addr}: {e}"))?;
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        let message = error["message"].as_str().unwrap_or("error");
        return Err(format!("{message} (code {})", error["code"]));
    }
    Ok(answer.get("result").cloned().unwrap_or(Value::Null))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
    };
    let Cli {
        data_dir,
        rpc,
        cookie,
        command,
    } = cli;
    let target = Target {
        data_dir,
        rpc,
        cookie,
    };
    let (method, params) = request(command);
    match call(&target, method, params) {
        Ok(result) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lnhub-cli: {e}");
            ExitCode::FAILURE
        }
    }
}
