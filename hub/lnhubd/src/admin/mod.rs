//! The operator's surface: Prometheus metrics on `--metrics ADDR` ([`scrape`]) and the admin
//! JSON-RPC on `--rpc-listen ADDR` ([`rpc`]), each an HTTP server (tiny_http) on its own
//! thread, outside the forwarding path.
//!
//! Both read the hub the same way, through [`Context`]: the engine's [`lnhub_engine::Admin`]
//! asks every shard for its report (one input a shard answers between two turns), the
//! connection room answers [`NetCommand`]s, and the store's [`lnhub_store::Monitor`] gives the
//! writer's figures and reads the forwarding log. Nothing on the forwarding path takes a lock
//! or touches a shared counter for them.
//!
//! The RPC is authenticated by a cookie, as bitcoind's: `<data-dir>/.cookie` holds
//! `__cookie__:<64 hex>` (mode 0600), regenerated at every start and removed at a clean stop;
//! a request carries it as HTTP basic authentication. `<data-dir>/rpc_address` says where the
//! RPC listens, so `lnhub-cli --data-dir DIR` needs nothing else.

pub mod rpc;
pub mod scrape;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use secp256k1::PublicKey;

use crate::net::{NetCommand, NetHandle};

/// The cookie file, in the data directory.
pub const COOKIE_FILE: &str = ".cookie";
/// The file naming the RPC address, in the data directory.
pub const RPC_ADDRESS_FILE: &str = "rpc_address";
/// The user name of cookie authentication.
pub const COOKIE_USER: &str = "__cookie__";
/// How long a scrape or a request waits for a shard or the connection room to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the servers read the hub through.
#[derive(Clone)]
pub struct Context {
    /// Our node id.
    pub node_id: PublicKey,
    /// The network's name.
    pub network: String,
    /// Where peers reach us.
    pub listen: SocketAddr,
    /// The connection room.
    pub net: NetHandle,
    /// The channel engine.
    pub engine: lnhub_engine::Admin,
    /// The store writer's figures and the forwarding log.
    pub store: lnhub_store::Monitor,
    /// Process start to listening.
    pub startup: Duration,
    /// The shortest `cltv_expiry_delta` a policy may set.
    pub min_cltv_expiry_delta: u16,
    /// What the hub follows the chain with (`none`, or `bitcoind <url>`).
    pub chain_backend: String,
    /// The chain thread's counts.
    pub chain: std::sync::Arc<crate::chain::ChainStats>,
    /// The on-chain wallet's commands (answered on the chain thread); `None` without a
    /// chain backend.
    pub wallet: Option<Sender<crate::chain::WalletCommand>>,
}

impl Context {
    /// Asks the connection room something and waits for the answer.
    pub fn ask_net<T>(&self, command: impl FnOnce(Sender<T>) -> NetCommand) -> Result<T, String> {
        let (tx, rx) = bounded(1);
        if !self.net.send(command(tx)) {
            return Err("the connection loop has stopped".into());
        }
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| "the connection loop did not answer".to_string())
    }
}

/// Starts the metrics server on `addr`; returns the address bound.
pub fn serve_metrics(addr: SocketAddr, ctx: Context) -> Result<SocketAddr, String> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("metrics: {addr} is not an IP address"))?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, content_type, body) = match (request.method(), request.url()) {
                    (tiny_http::Method::Get, "/metrics") => match scrape::scrape(&ctx) {
                        Ok(text) => (200, lnhub_metrics::CONTENT_TYPE, text),
                        Err(e) => (503, "text/plain", format!("scrape failed: {e}\n")),
                    },
                    _ => (404, "text/plain", "try /metrics\n".into()),
                };
                let _ = request.respond(response(status, content_type, body));
            }
        })
        .map_err(|e| format!("metrics thread: {e}"))?;
    Ok(bound)
}

/// Starts the RPC server on `addr` with a fresh cookie in `data_dir`; returns the address
/// bound.
pub fn serve_rpc(addr: SocketAddr, data_dir: &Path, ctx: Context) -> Result<SocketAddr, String> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| format!("cannot serve RPC on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("rpc: {addr} is not an IP address"))?;
    let secret = crate::keys::fresh_secret()?;
    let cookie = format!(
        "{COOKIE_USER}:{}",
        crate::config::encode_hex(&secret.secret_bytes())
    );
    write_private(&data_dir.join(COOKIE_FILE), &cookie)?;
    write_private(&data_dir.join(RPC_ADDRESS_FILE), &format!("{bound}\n"))?;
    let auth = rpc::Auth::new(&cookie);
    std::thread::Builder::new()
        .name("rpc".into())
        .spawn(move || {
            for mut request in server.incoming_requests() {
                let (status, body, stop) = rpc::handle_http(&ctx, &auth, &mut request);
                let _ = request.respond(response(status, "application/json", body));
                if stop {
                    ctx.net.send(NetCommand::Stop);
                }
            }
        })
        .map_err(|e| format!("rpc thread: {e}"))?;
    Ok(bound)
}

/// Removes the cookie and address files (at a clean stop).
pub fn remove_rpc_files(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(COOKIE_FILE));
    let _ = fs::remove_file(data_dir.join(RPC_ADDRESS_FILE));
}

fn response(
    status: u16,
    content_type: &str,
    body: String,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a valid header");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

/// Writes `text` to `path` readable by the owner only, replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}
