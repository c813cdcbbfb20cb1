//! The admin JSON-RPC (2.0, one request per HTTP POST, named parameters), authenticated by
//! the cookie.
//!
//! Errors are JSON-RPC errors: -32700 unparsable JSON, -32600 not a request, -32601 unknown
//! method, -32602 bad parameters, -32603 internal; -1 the hub cannot do it (unknown channel,
//! a peer that cannot be reached, ...). Without the cookie the answer is HTTP 401; a body over
//! [`MAX_REQUEST_BYTES`] is HTTP 413; anything but `POST /` is 404 or 405. Every answer is a
//! JSON object.

use std::io::Read;

use base64::Engine as _;
use bitcoin::hashes::Hash as _;
use lnhub_engine::{ChannelReport, Input, PolicyChange, ShardReport};
use lnhub_forward::Policy;
use lnhub_schema::{ClosedRecord, ForwardOutcome, ForwardRecord};
use lnhub_wire::types::{ChannelId, Msat, ShortChannelId};
use serde_json::{json, Map, Value};

use super::{Context, ANSWER_TIMEOUT};
use crate::chain::WalletCommand;
use crate::config::{decode_hex, parse_node_id, parse_peer_addr};
use crate::net::{NetCommand, PeerInfo};

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most forwards one `listforwards` page holds.
pub const MAX_FORWARDS_PAGE: usize = 10_000;
/// A page's size when the request names none.
pub const DEFAULT_FORWARDS_PAGE: usize = 100;

/// The methods, for `help` and the tests.
pub const METHODS: &[&str] = &[
    "getinfo",
    "connect",
    "disconnect",
    "listpeers",
    "listchannels",
    "setchannelfee",
    "closechannel",
    "listforwards",
    "listclosedchannels",
    "openchannel",
    "newaddr",
    "listfunds",
    "withdraw",
    "stop",
];

/// The expected `Authorization` header.
pub struct Auth(String);

impl Auth {
    /// For the cookie `user:password`.
    pub fn new(cookie: &str) -> Auth {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cookie);
        Auth(format!("Basic {b64}"))
    }

    fn accepts(&self, header: Option<&str>) -> bool {
        // Compared in time independent of where a guess first differs.
        header.is_some_and(|h| {
            let (a, b) = (h.trim().as_bytes(), self.0.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
        })
    }
}

/// An RPC error: code and message.
#[derive(Debug)]
pub struct RpcError(pub i64, pub String);

fn invalid(what: impl Into<String>) -> RpcError {
    RpcError(-32602, what.into())
}

fn failed(what: impl Into<String>) -> RpcError {
    RpcError(-1, what.into())
}

/// Answers one HTTP request: the status and the JSON body, and whether the daemon is to stop
/// once the answer is out (a `stop` that succeeded).
pub fn handle_http(
    ctx: &Context,
    auth: &Auth,
    request: &mut tiny_http::Request,
) -> (u16, String, bool) {
    let error = |status, code, message: &str| {
        let body = json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": code, "message": message}});
        (status, body.to_string(), false)
    };
    if request.url() != "/" {
        return error(404, -32600, "the RPC is served at /");
    }
    if *request.method() != tiny_http::Method::Post {
        return error(405, -32600, "use POST");
    }
    let header = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    if !auth.accepts(header.as_deref()) {
        return error(401, -32600, "missing or wrong cookie");
    }
    if request.body_length().unwrap_or(0) > MAX_REQUEST_BYTES {
        return error(413, -32600, "request too large");
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut body);
    if read.is_err() {
        return error(400, -32600, "cannot read the request");
    }
    if body.len() > MAX_REQUEST_BYTES {
        return error(413, -32600, "request too large");
    }
    let (body, stop) = handle_body(ctx, &body);
    (200, body, stop)
}

/// Answers one JSON-RPC request body; true if it was a `stop` that succeeded.
pub fn handle_body(ctx: &Context, body: &[u8]) -> (String, bool) {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let e = RpcError(-32700, format!("parse error: {e}"));
            return (answer(Value::Null, Err(e)), false);
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return (answer(id, Err(RpcError(-32600, "no method".into()))), false);
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return (answer(id, Err(invalid("params must be an object"))), false),
    };
    let result = call(ctx, method, &params);
    let stop = method == "stop" && result.is_ok();
    (answer(id, result), stop)
}

fn answer(id: Value, result: Result<Value, RpcError>) -> String {
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(RpcError(code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
    .to_string()
}

/// Runs `method`.
pub fn call(ctx: &Context, method: &str, p: &Map<String, Value>) -> Result<Value, RpcError> {
    let known = |allowed: &[&str]| -> Result<(), RpcError> {
        match p.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(invalid(format!("unknown parameter {k:?} for {method}"))),
            None => Ok(()),
        }
    };
    match method {
        "getinfo" => {
            known(&[])?;
            getinfo(ctx)
        }
        "connect" => {
            known(&["peer"])?;
            let peer = parse_peer_addr(str_param(p, "peer")?.ok_or_else(|| invalid("peer?"))?)
                .map_err(invalid)?;
            let node_id = peer.node_id;
            ctx.ask_net(|tx| NetCommand::Connect(peer, tx))
                .map_err(failed)?
                .map_err(failed)?;
            Ok(json!({"id": node_id.to_string()}))
        }
        "disconnect" => {
            known(&["id"])?;
            let id = str_param(p, "id")?.ok_or_else(|| invalid("id?"))?;
            let node_id = parse_node_id(id).map_err(invalid)?;
            if !ctx
                .ask_net(|tx| NetCommand::Disconnect(node_id, tx))
                .map_err(failed)?
            {
                return Err(failed(format!("{node_id} is not connected")));
            }
            Ok(json!({"disconnected": node_id.to_string()}))
        }
        "listpeers" => {
            known(&[])?;
            let mut peers = ctx.ask_net(NetCommand::Peers).map_err(failed)?;
            peers.sort_by_key(|p| p.node_id.serialize());
            Ok(json!({"peers": peers.iter().map(peer_json).collect::<Vec<_>>()}))
        }
        "listchannels" => {
            known(&["peer"])?;
            let peer = match str_param(p, "peer")? {
                Some(s) => Some(parse_node_id(s).map_err(invalid)?),
                None => None,
            };
            let reports = reports(ctx)?;
            let channels: Vec<Value> = reports
                .iter()
                .flat_map(|r| r.channels.iter().map(move |c| channel_json(r.shard, c)))
                .filter(|c| peer.is_none_or(|p| c["peer"] == p.to_string()))
                .collect();
            Ok(json!({ "channels": channels }))
        }
        "setchannelfee" => {
            known(&[
                "channel",
                "base_msat",
                "ppm",
                "cltv_expiry_delta",
                "htlc_minimum_msat",
                "htlc_maximum_msat",
            ])?;
            setchannelfee(ctx, p)
        }
        "closechannel" => {
            known(&["channel"])?;
            let which = str_param(p, "channel")?.ok_or_else(|| invalid("channel?"))?;
            let reports = reports(ctx)?;
            let (shard, c) = find_channel(&reports, which)?;
            ctx.engine
                .send(
                    shard,
                    Input::CloseChannel {
                        channel_id: c.channel_id,
                    },
                )
                .map_err(failed)?;
            Ok(json!({
                "channel_id": c.channel_id.to_string(),
                "status": "shutdown requested: HTLCs in flight settle, then the fee is negotiated",
            }))
        }
        "listforwards" => {
            known(&["since", "until", "channel", "offset", "limit"])?;
            listforwards(ctx, p)
        }
        "openchannel" => {
            known(&["peer", "amount_sat", "push_msat", "announce"])?;
            let peer = str_param(p, "peer")?.ok_or_else(|| invalid("peer is required"))?;
            let peer = parse_node_id(peer).map_err(invalid)?;
            let amount =
                u64_param(p, "amount_sat")?.ok_or_else(|| invalid("amount_sat is required"))?;
            if !(MIN_CHANNEL_SAT..=MAX_CHANNEL_SAT).contains(&amount) {
                return Err(invalid(format!(
                    "amount_sat must be within {MIN_CHANNEL_SAT}..={MAX_CHANNEL_SAT}"
                )));
            }
            let push = u64_param(p, "push_msat")?.unwrap_or(0);
            if push > amount * 1000 {
                return Err(invalid("push_msat is above the channel's amount"));
            }
            let announce = match p.get("announce") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("announce must be true or false")),
            };
            if ctx.wallet.is_none() {
                return Err(failed(
                    "no on-chain wallet: lnhubd runs without a chain backend",
                ));
            }
            let peers = ctx.ask_net(NetCommand::Peers).map_err(failed)?;
            if !peers.iter().any(|p| p.node_id == peer) {
                return Err(failed(format!(
                    "{peer} is not connected (lnhub-cli connect first)"
                )));
            }
            ctx.engine
                .send(
                    ctx.engine.shard_of(&peer),
                    Input::OpenChannel {
                        peer,
                        funding: lnhub_wire::types::Sat(amount),
                        push: Msat(push),
                        announce,
                    },
                )
                .map_err(failed)?;
            Ok(json!({
                "peer": peer.to_string(),
                "amount_sat": amount,
                "push_msat": push,
                "status": "open_channel sent; the wallet funds it once the peer accepts, and it \
                           is listed once both channel_ready are exchanged",
            }))
        }
        "newaddr" => {
            known(&[])?;
            ask_wallet(ctx, WalletCommand::NewAddress)
        }
        "listfunds" => {
            known(&[])?;
            ask_wallet(ctx, WalletCommand::ListFunds)
        }
        "withdraw" => {
            known(&["address", "amount_sat", "sat_per_vb"])?;
            let address = str_param(p, "address")?
                .ok_or_else(|| invalid("address is required"))?
                .to_string();
            let amount = match p.get("amount_sat") {
                Some(Value::String(s)) if s == "all" => None,
                Some(v) => match v.as_u64() {
                    Some(sat) if sat > 0 => Some(bitcoin::Amount::from_sat(sat)),
                    _ => return Err(invalid("amount_sat must be a positive integer or \"all\"")),
                },
                None => return Err(invalid("amount_sat is required (a number or \"all\")")),
            };
            let sat_per_vb = u64_param(p, "sat_per_vb")?;
            if sat_per_vb.is_some_and(|r| !(1..=10_000).contains(&r)) {
                return Err(invalid("sat_per_vb must be within 1..=10000"));
            }
            ask_wallet(ctx, |reply| WalletCommand::Withdraw {
                address,
                amount,
                sat_per_vb,
                reply,
            })
        }
        "listclosedchannels" => {
            known(&[])?;
            let closed = ctx
                .store
                .reader()
                .closed()
                .map_err(|e| RpcError(-32603, e.to_string()))?;
            Ok(json!({
                "channels": closed.iter().map(|(id, c)| closed_json(id, c)).collect::<Vec<_>>(),
            }))
        }
        // The server stops the daemon once this answer is out (`handle_http`).
        "stop" => {
            known(&[])?;
            Ok(json!({"stopping": true}))
        }
        other => Err(RpcError(
            -32601,
            format!("unknown method {other:?} (known: {})", METHODS.join(", ")),
        )),
    }
}

fn getinfo(ctx: &Context) -> Result<Value, RpcError> {
    let reports = reports(ctx)?;
    let peers = ctx.ask_net(NetCommand::Peers).map_err(failed)?;
    let mut states = Map::new();
    for c in reports.iter().flat_map(|r| &r.channels) {
        let n = states.entry(c.state.as_str()).or_insert(Value::from(0u64));
        *n = Value::from(n.as_u64().unwrap_or(0) + 1);
    }
    let openings: usize = reports.iter().map(|r| r.openings).sum();
    if openings > 0 {
        states.insert("opening".into(), Value::from(openings));
    }
    Ok(json!({
        "id": ctx.node_id.to_string(),
        "alias": "lnhub",
        "version": env!("CARGO_PKG_VERSION"),
        "network": ctx.network,
        "blockheight": reports.iter().map(|r| r.height).max().unwrap_or(0),
        "chain_backend": ctx.chain_backend,
        "listen": ctx.listen.to_string(),
        "num_peers": peers.len(),
        "num_channels": reports.iter().map(|r| r.channels.len()).sum::<usize>(),
        "channels": states,
        "shards": reports.len(),
    }))
}

fn setchannelfee(ctx: &Context, p: &Map<String, Value>) -> Result<Value, RpcError> {
    let which = str_param(p, "channel")?
        .ok_or_else(|| invalid("channel? (an id, a short channel id or \"all\")"))?;
    let u32_param = |name| {
        u64_param(p, name)?
            .map(|v| u32::try_from(v).map_err(|_| invalid(format!("{name}: {v} is too large"))))
            .transpose()
    };
    let cltv = u64_param(p, "cltv_expiry_delta")?
        .map(|v| match u16::try_from(v) {
            Ok(d) if d >= ctx.min_cltv_expiry_delta => Ok(d),
            _ => Err(invalid(format!(
                "cltv_expiry_delta: {v} is outside {}..=65535",
                ctx.min_cltv_expiry_delta
            ))),
        })
        .transpose()?;
    let change = PolicyChange {
        fee_base_msat: u32_param("base_msat")?,
        fee_proportional_millionths: u32_param("ppm")?,
        cltv_expiry_delta: cltv,
        htlc_minimum_msat: u64_param(p, "htlc_minimum_msat")?.map(Msat),
        htlc_maximum_msat: u64_param(p, "htlc_maximum_msat")?.map(Msat),
    };
    if change == PolicyChange::default() {
        return Err(invalid(
            "nothing to change: give base_msat, ppm, cltv_expiry_delta, htlc_minimum_msat or \
             htlc_maximum_msat",
        ));
    }
    if change.htlc_minimum_msat == Some(Msat(0)) {
        return Err(invalid(
            "htlc_minimum_msat: 0 (BOLT 2 forbids zero-value HTLCs)",
        ));
    }
    let before = reports(ctx)?;
    let targets: Vec<(usize, ChannelId, Policy)> = if which == "all" {
        before
            .iter()
            .flat_map(|r| r.channels.iter().map(|c| (r.shard, c.channel_id, c.policy)))
            .collect()
    } else {
        let (shard, c) = find_channel(&before, which)?;
        vec![(shard, c.channel_id, c.policy)]
    };
    for (_, _, policy) in &targets {
        let new = change.apply(*policy);
        if new.htlc_minimum_msat > new.htlc_maximum_msat {
            return Err(invalid(
                "htlc_minimum_msat would be above htlc_maximum_msat",
            ));
        }
    }
    for (shard, channel_id, _) in &targets {
        let input = Input::SetPolicy {
            channel_id: Some(*channel_id),
            change,
        };
        ctx.engine.send(*shard, input).map_err(failed)?;
    }
    // Each shard applies its inputs in order: a report asked now shows the change.
    let after = reports(ctx)?;
    let updated: Vec<Value> = targets
        .iter()
        .filter_map(|(shard, id, _)| {
            let c = after[*shard]
                .channels
                .iter()
                .find(|c| c.channel_id == *id)?;
            Some(json!({
                "channel_id": id.to_string(),
                "short_channel_id": c.scid.to_string(),
                "policy": policy_json(&c.policy),
            }))
        })
        .collect();
    Ok(json!({ "updated": updated }))
}

fn listforwards(ctx: &Context, p: &Map<String, Value>) -> Result<Value, RpcError> {
    let since = u64_param(p, "since")?.unwrap_or(0);
    let until = u64_param(p, "until")?.unwrap_or(u64::MAX);
    let offset = u64_param(p, "offset")?.unwrap_or(0) as usize;
    let limit = u64_param(p, "limit")?.unwrap_or(DEFAULT_FORWARDS_PAGE as u64) as usize;
    if limit == 0 || limit > MAX_FORWARDS_PAGE {
        return Err(invalid(format!(
            "limit: {limit} is outside 1..={MAX_FORWARDS_PAGE}"
        )));
    }
    let channel = match str_param(p, "channel")? {
        Some(which) => Some(find_channel(&reports(ctx)?, which)?.1.channel_id),
        None => None,
    };
    let keep = |f: &ForwardRecord| {
        channel.is_none_or(|c| f.in_channel_id == c || f.out.is_some_and(|(o, _)| o == c))
    };
    let forwards = ctx
        .store
        .reader()
        .forwards_where(since, until, offset, limit, keep)
        .map_err(|e| RpcError(-32603, e.to_string()))?;
    let next = (forwards.len() == limit).then_some(offset + limit);
    Ok(json!({
        "forwards": forwards.iter().map(forward_json).collect::<Vec<_>>(),
        "next_offset": next,
    }))
}

/// Asks the wallet (on the chain thread) and waits for its answer.
fn ask_wallet(
    ctx: &Context,
    command: impl FnOnce(crossbeam_channel::Sender<Result<Value, String>>) -> WalletCommand,
) -> Result<Value, RpcError> {
    let wallet = ctx
        .wallet
        .as_ref()
        .ok_or_else(|| failed("no on-chain wallet: lnhubd runs without a chain backend"))?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    wallet
        .send(command(tx))
        .map_err(|_| RpcError(-32603, "the chain thread has stopped".into()))?;
    rx.recv_timeout(WALLET_TIMEOUT)
        .map_err(|_| RpcError(-32603, "the wallet did not answer in time".into()))?
        .map_err(failed)
}

/// The smallest channel `openchannel` opens (peers commonly refuse smaller ones).
const MIN_CHANNEL_SAT: u64 = 20_000;
/// The largest: 2^24 - 1 sat, the limit without `option_support_large_channel`.
const MAX_CHANNEL_SAT: u64 = (1 << 24) - 1;

/// How long a wallet command may take (the chain thread may be reading blocks).
const WALLET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn reports(ctx: &Context) -> Result<Vec<ShardReport>, RpcError> {
    ctx.engine
        .reports(ANSWER_TIMEOUT)
        .map_err(|e| RpcError(-32603, e))
}

/// A channel named by its id (64 hex), its short channel id or alias (`BxTxO`), or the peer's
/// alias for it.
fn find_channel<'a>(
    reports: &'a [ShardReport],
    which: &str,
) -> Result<(usize, &'a ChannelReport), RpcError> {
    let by_id = decode_hex(which)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(ChannelId);
    let by_scid = which.parse::<ShortChannelId>().ok();
    if by_id.is_none() && by_scid.is_none() {
        return Err(invalid(format!(
            "{which:?} is neither a channel id (64 hex) nor a short channel id (BxTxO)"
        )));
    }
    reports
        .iter()
        .flat_map(|r| r.channels.iter().map(move |c| (r.shard, c)))
        .find(|(_, c)| {
            Some(c.channel_id) == by_id
                || by_scid.is_some_and(|s| s == c.scid || Some(s) == c.remote_alias)
        })
        .ok_or_else(|| failed(format!("no channel {which}")))
}

fn str_param<'a>(p: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, RpcError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

fn u64_param(p: &Map<String, Value>, name: &str) -> Result<Option<u64>, RpcError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{name} must be a non-negative integer"))),
    }
}

fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "id": p.node_id.to_string(),
        "address": p.addr.to_string(),
        "direction": if p.inbound { "inbound" } else { "outbound" },
        "has_channels": p.has_channels,
        "send_backlog_bytes": p.backlog,
    })
}

fn policy_json(p: &Policy) -> Value {
    json!({
        "fee_base_msat": p.fee_base_msat,
        "fee_proportional_millionths": p.fee_proportional_millionths,
        "cltv_expiry_delta": p.cltv_expiry_delta,
        "htlc_minimum_msat": p.htlc_minimum_msat.0,
        "htlc_maximum_msat": p.htlc_maximum_msat.0,
    })
}

fn channel_json(shard: usize, c: &ChannelReport) -> Value {
    json!({
        "channel_id": c.channel_id.to_string(),
        "short_channel_id": c.scid.to_string(),
        "peer_alias": c.remote_alias.map(|a| a.to_string()),
        "real_short_channel_id": c.real_scid.map(|s| s.to_string()),
        "funding_outpoint": c.funding.to_string(),
        "closing_txid": c.closing_txid.map(|t| t.to_string()),
        "peer": c.peer.to_string(),
        "state": c.state.as_str(),
        "opener": if c.we_funded { "local" } else { "remote" },
        "capacity_msat": c.capacity_msat,
        "local_balance_msat": c.local_msat,
        "remote_balance_msat": c.remote_msat,
        "htlcs_in": {"count": c.htlcs_in.0, "msat": c.htlcs_in.1},
        "htlcs_out": {"count": c.htlcs_out.0, "msat": c.htlcs_out.1},
        "policy": policy_json(&c.policy),
        "previous_policy": c.previous_policy.map(|(p, at)| json!({
            "policy": policy_json(&p), "replaced_at": at,
        })),
        "shard": shard,
    })
}

fn closed_json(id: &ChannelId, c: &ClosedRecord) -> Value {
    // Transaction ids are shown the way bitcoind shows them (byte-reversed).
    let txid = |b: &[u8; 32]| bitcoin::Txid::from_byte_array(*b).to_string();
    json!({
        "channel_id": id.to_string(),
        "short_channel_id": c.alias.to_string(),
        "real_short_channel_id": c.real_scid.map(|s| s.to_string()),
        "peer": c.peer.to_string(),
        "capacity_msat": c.capacity_sat * 1000,
        "final_local_balance_msat": c.local_msat,
        "funding_outpoint": format!("{}:{}", txid(&c.funding_txid), c.funding_vout),
        "closing_txid": txid(&c.closing_txid),
        "closing_height": c.closing_height,
        "retired_at": c.retired_at,
    })
}

fn forward_json(f: &ForwardRecord) -> Value {
    let (outcome, code) = match f.outcome {
        ForwardOutcome::Settled => ("settled", None),
        ForwardOutcome::FailedDownstream { failure_code } => ("failed", failure_code),
        ForwardOutcome::FailedHere { failure_code } => ("local_failed", Some(failure_code)),
    };
    json!({
        "in_channel": f.in_channel_id.to_string(),
        "in_htlc_id": f.in_htlc_id,
        "out_channel": f.out.map(|(c, _)| c.to_string()),
        "out_htlc_id": f.out.map(|(_, h)| h),
        "in_msat": f.in_amount_msat.0,
        "out_msat": f.out_amount_msat.0,
        "fee_msat": f.fee_msat().0,
        "added_at": f.added_at,
        "resolved_at": f.resolved_at,
        "outcome": outcome,
        "failure": code.map(|c| lnhub_metrics::labels::failure_code(Some(c))),
        "failure_code": code,
    })
}
