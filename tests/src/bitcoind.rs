//! A real regtest `bitcoind` for the chain tests: the binary `scripts/bitcoind` builds from
//! the Bitcoin Core source vendored in `libbitcoinkernel-sys`, started on free loopback ports
//! with its own data directory, and stopped (killed) on drop.
//!
//! The binary is `LNHUB_BITCOIND` (`.ci/run` sets it from `scripts/bitcoind`), else the
//! script's cache for the crate version it builds. Missing in CI (`CI` set), a test that needs
//! it fails; elsewhere it is skipped with a note saying how to get it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{basic_auth, http, TempDir};

/// The `libbitcoinkernel-sys` version `scripts/bitcoind` builds by default.
const CRATE_VERSION: &str = "0.4.1";

/// The `bitcoind` binary, if there is one; `None` (after saying why) outside CI when
/// it is missing; in CI a missing binary panics.
pub fn bitcoind_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("LNHUB_BITCOIND") {
        Some(p) => PathBuf::from(p),
        None => {
            let root = std::env::var_os("LNHUB_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lnhub")))
                .unwrap_or_else(|| PathBuf::from(".cache/lnhub"));
            root.join(format!("bitcoind-{CRATE_VERSION}/bin/bitcoind"))
        }
    };
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "no bitcoind at {}: run scripts/bitcoind (builds it once, ~10 minutes) or set \
         LNHUB_BITCOIND",
        path.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// A running regtest `bitcoind`: ours, or one we only talk to ([`Bitcoind::attach`]).
pub struct Bitcoind {
    child: Option<Child>,
    /// Its data directory (removed on drop), when we started it.
    pub dir: Option<TempDir>,
    /// Its RPC address.
    pub rpc: SocketAddr,
    /// Its cookie file.
    pub cookie: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Bitcoind {
    /// Starts `binary` on regtest and waits until its RPC answers.
    pub fn start(binary: &PathBuf) -> Bitcoind {
        let dir = TempDir::new("bitcoind");
        let rpc_port = free_port();
        let child = Command::new(binary)
            .arg("-regtest")
            .arg(format!("-datadir={}", dir.0.display()))
            .arg(format!("-rpcport={rpc_port}"))
            .args([
                "-server",
                "-listen=0",
                "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1",
                "-fallbackfee=0.0002",
                "-printtoconsole=0",
                "-txindex=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bitcoind");
        let node = Bitcoind {
            child: Some(child),
            rpc: SocketAddr::from(([127, 0, 0, 1], rpc_port)),
            cookie: dir.0.join("regtest/.cookie"),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if node.cookie.exists() && node.try_rpc("getblockchaininfo", json!([])).is_ok() {
                return node;
            }
            assert!(Instant::now() < deadline, "bitcoind did not answer in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A node someone else runs (lnhubd's `--bitcoind auto`), reached at `rpc` with `cookie`.
    pub fn attach(rpc: SocketAddr, cookie: PathBuf) -> Bitcoind {
        Bitcoind {
            child: None,
            dir: None,
            rpc,
            cookie,
        }
    }

    /// `http://127.0.0.1:<port>`, for `--bitcoind-rpc`.
    pub fn url(&self) -> String {
        format!("http://{}", self.rpc)
    }

    fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let cookie = std::fs::read_to_string(&self.cookie).map_err(|e| e.to_string())?;
        let auth = basic_auth(cookie.trim());
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let (status, text) = http(
            self.rpc,
            "POST",
            "/",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{status}: {e}"))?;
        match v.get("error") {
            Some(e) if !e.is_null() => Err(e.to_string()),
            _ => Ok(v["result"].clone()),
        }
    }

    /// Calls `method`; panics with bitcoind's error.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|e| panic!("bitcoind {method}: {e}"))
    }

    /// Mines `n` blocks to a fixed regtest address; returns their hashes.
    pub fn mine(&self, n: u32) -> Vec<String> {
        // P2WPKH of the public key of secret 1 (regtest): nobody spends these in the tests.
        let address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        let hashes = self.rpc("generatetoaddress", json!([n, address]));
        Self::hashes(hashes)
    }

    /// Mines `n` blocks paying another script (`OP_TRUE`): after `invalidateblock`, blocks
    /// mined as before in the same second would be the invalidated ones again, which the node
    /// refuses.
    pub fn mine_other(&self, n: u32) -> Vec<String> {
        let hashes = self.rpc("generatetodescriptor", json!([n, "raw(51)"]));
        Self::hashes(hashes)
    }

    fn hashes(hashes: Value) -> Vec<String> {
        hashes
            .as_array()
            .expect("block hashes")
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    }

    /// The best height.
    pub fn height(&self) -> u32 {
        self.rpc("getblockcount", json!([])).as_u64().unwrap() as u32
    }
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
