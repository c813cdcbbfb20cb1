//! An LDK node as the routing hub, in a process of its own: the `ldk-hub` binary of this
//! crate (`src/bin/ldk_hub.rs`) and [`LdkHub`], which starts it the way [`crate::Hub`] starts
//! `lnhubd`, so the `ldk_forward` bench can put both hubs under the same workload and read each
//! one's CPU time from `/proc/<pid>`.
//!
//! The hub is an [`LdkNode`] set up as an LDK user would run a routing node
//! ([`ldk_hub_config`]): `ChannelMonitor`s and the `ChannelManager` in `lightning-persister`'s
//! `FilesystemStore` (fsync on every write), pending forwards processed after LDK's background
//! processor's random delay, zero-conf channels accepted from the peers it is told to trust
//! only, and the same forwarding policy as `lnhubd`'s defaults.
//!
//! The process prints one line when it listens, `node_id=<hex> listen=<ip:port>`, and when it
//! stops (standard input closed, SIGTERM or SIGINT) one `store: ...` line with what it wrote
//! ([`StoreStats`](crate::ldk_node::StoreStats)). Its stderr (LDK's warnings) goes to
//! `<dir>/ldk-hub.log`, printed when a test fails while holding it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use lightning::ln::types::ChannelId;
use lightning::util::logger::Level;

use crate::ldk_node::{payer_via_payee, ForwardDelay, InboundChannelPolicy};
use crate::{LdkNode, LdkNodeConfig, TempDir};

/// `lnhubd`'s default fixed fee per forwarded HTLC (`DEFAULT_FEE_BASE_MSAT` in
/// `hub/lnhubd/src/config.rs`).
pub const HUB_FEE_BASE_MSAT: u32 = 1_000;
/// `lnhubd`'s default proportional fee (`DEFAULT_FEE_PROPORTIONAL_MILLIONTHS`).
pub const HUB_FEE_PROPORTIONAL_MILLIONTHS: u32 = 100;
/// `lnhubd`'s default `cltv_expiry_delta` (`DEFAULT_CLTV_EXPIRY_DELTA`).
pub const HUB_CLTV_EXPIRY_DELTA: u16 = 80;
/// `lnhubd`'s `max_accepted_htlcs` (`default_establish_config` in `lnhub-shard`); LDK's own
/// default (50) would hold the bench's 100 payments in flight to half.
pub const HUB_MAX_ACCEPTED_HTLCS: u16 = 483;

/// The LDK hub's configuration: [`LdkNode::default_user_config`] with `lnhubd`'s forwarding
/// policy (fees, CLTV delta, 483 accepted HTLCs, 1-msat HTLC minimum), a `FilesystemStore` in
/// `store_dir`, zero-conf channels from `trusted` only, and forwards processed as `forward_delay`
/// says (an LDK user's background processor: [`ForwardDelay::BackgroundProcessor`]).
pub fn ldk_hub_config(
    store_dir: PathBuf,
    trusted: Vec<PublicKey>,
    forward_delay: ForwardDelay,
    log_level: Level,
) -> LdkNodeConfig {
    let mut user_config = LdkNode::default_user_config();
    user_config.channel_config.forwarding_fee_base_msat = HUB_FEE_BASE_MSAT;
    user_config
        .channel_config
        .forwarding_fee_proportional_millionths = HUB_FEE_PROPORTIONAL_MILLIONTHS;
    user_config.channel_config.cltv_expiry_delta = HUB_CLTV_EXPIRY_DELTA;
    user_config.channel_handshake_config.our_max_accepted_htlcs = HUB_MAX_ACCEPTED_HTLCS;
    user_config.channel_handshake_config.our_htlc_minimum_msat = 1;
    LdkNodeConfig {
        user_config,
        inbound_channels: InboundChannelPolicy::AcceptZeroConf,
        trusted_peers: Some(trusted),
        store_dir: Some(store_dir),
        forward_delay,
        log_level,
        ..LdkNodeConfig::default()
    }
}

/// A running `ldk-hub` process (see the module docs). Stopped (standard input closed, then
/// SIGKILL after 10 s) on drop.
pub struct LdkHub {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The hub's node id, as printed at start-up.
    pub node_id: PublicKey,
    /// The address it listens on, as printed at start-up.
    pub addr: SocketAddr,
    /// Holds `store/` (the `FilesystemStore`) and `ldk-hub.log`; removed on drop.
    pub dir: TempDir,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LdkHub {
    /// Starts the `ldk-hub` binary `exe` (in tests and benches of this crate:
    /// `env!("CARGO_BIN_EXE_ldk-hub")`) on 127.0.0.1 with an ephemeral port, its store in
    /// `<dir>/store`, trusting `trusted` with zero-conf channels, with `extra` flags (and those
    /// of `LDK_HUB_ARGS`, split on whitespace, for benchmark variants).
    pub fn start(
        exe: impl AsRef<Path>,
        dir: TempDir,
        trusted: &[PublicKey],
        extra: &[&str],
    ) -> Self {
        let log = std::fs::File::create(dir.0.join("ldk-hub.log")).expect("log file");
        let mut cmd = Command::new(exe.as_ref());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--store-dir")
            .arg(dir.0.join("store"));
        for peer in trusted {
            cmd.arg("--trusted-peer").arg(peer.to_string());
        }
        let mut child = cmd
            .args(extra)
            .args(
                std::env::var("LDK_HUB_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.as_ref().display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let started = loop {
            if let Some(s) = lines.lock().unwrap().iter().find_map(|l| parse_started(l)) {
                break Some(s);
            }
            if Instant::now() >= deadline || !matches!(child.try_wait(), Ok(None)) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let Some((node_id, addr)) = started else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ldk-hub printed no `node_id=... listen=...` line; log:\n{}",
                std::fs::read_to_string(dir.0.join("ldk-hub.log")).unwrap_or_default()
            );
        };
        LdkHub {
            child,
            stdin,
            node_id,
            addr,
            dir,
            lines,
        }
    }

    /// The process id (for its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `FilesystemStore`'s directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.0.join("store")
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("ldk-hub.log")).unwrap_or_default()
    }

    /// Closes its standard input (the hub stops cleanly), waits at most 10 s (then SIGKILL),
    /// and returns its `store: ...` line, if it printed one.
    pub fn stop(&mut self) -> Option<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread sees the pipe close right after the exit.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with("store: "))
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LdkHub {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("---- ldk-hub log ----\n{}", self.log());
        }
    }
}

/// Parses `node_id=<hex> listen=<ip:port>`.
pub fn parse_started(line: &str) -> Option<(PublicKey, SocketAddr)> {
    let mut node_id = None;
    let mut addr = None;
    for word in line.split_whitespace() {
        if let Some(v) = word.strip_prefix("node_id=") {
            node_id = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("listen=") {
            addr = v.parse().ok();
        }
    }
    Some((node_id?, addr?))
}

/// [`crate::payer_hub_payee_sized`] with an `ldk-hub` process (`exe`, store in `dir`) as the
/// hub, trusting `s` and `r`: the same channels (`capacity_sat` each) and route hint. Returns
/// the hub and `s`'s channel.
pub async fn payer_ldk_hub_payee(
    s: &LdkNode,
    r: &LdkNode,
    exe: impl AsRef<Path>,
    dir: TempDir,
    extra: &[&str],
    capacity_sat: u64,
) -> (LdkHub, ChannelId) {
    let hub = LdkHub::start(exe, dir, &[s.node_id, r.node_id], extra);
    let s_chan = payer_via_payee(s, r, hub.node_id, hub.addr, capacity_sat).await;
    (hub, s_chan)
}
