//! Shared harness for the end-to-end tests: `lnhubd` as a real process, LDK as a real peer.
//!
//! [`Hub`] starts the `lnhubd` binary built by the same `cargo test` run, in a fresh data
//! directory, listening on an ephemeral loopback port; it reads the two start-up lines
//! (`node_id=`, `listen=`) and kills the process on drop. Its log (stderr) goes to
//! `<data-dir>/lnhubd.log` and is printed when a test fails while holding it.
//!
//! [`LdkHub`] does the same for `ldk-hub`, this crate's binary running one LDK node as the
//! routing hub (the `ldk_forward` bench's other row).
//!
//! [`LdkPeer`] is an independent Lightning node: LDK's `PeerManager` on
//! `lightning-net-tokio`, with its own keys, that connects to or accepts connections from the
//! hub over TCP exactly as it would from any other implementation.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::PublicKey;
use lightning::ln::peer_handler::{ErroringMessageHandler, IgnoringMessageHandler, PeerManager};
use lightning::sign::KeysManager;
use lightning::util::logger::{Logger, Record};
use lightning_net_tokio::SocketDescriptor;

pub mod bitcoind;
pub mod ldk_hub;
pub mod ldk_node;
pub mod ldk_store;
pub use ldk_hub::{payer_ldk_hub_payee, LdkHub};
pub use ldk_node::{
    payer_hub_payee, payer_hub_payee_sized, payer_hub_payee_with, payer_via_payee, ForwardDelay,
    InboundChannelPolicy, LdkNode, LdkNodeConfig, PaymentFailure, CHANNEL_SAT,
};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory under the system temp dir, removed by [`TempDir`]'s drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `lnhub-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("lnhub-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Path of the `lnhubd` binary of this build (`target/<profile>/lnhubd`).
pub fn lnhubd_path() -> PathBuf {
    // `LNHUBD=<path>`: another build, for before/after benchmark runs.
    if let Some(path) = std::env::var_os("LNHUBD") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps/; the binary one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("lnhubd");
    assert!(
        path.exists(),
        "{} not found: run the workspace tests (`cargo test --workspace`), which build it, \
         or `cargo build -p lnhubd` first",
        path.display()
    );
    path
}

/// Path of the `lnhub-cli` binary of this build, beside `lnhubd`.
pub fn lnhub_cli_path() -> PathBuf {
    let path = lnhubd_path().with_file_name("lnhub-cli");
    assert!(
        path.exists(),
        "{} not found: run the workspace tests, which build it, or `cargo build -p lnhub-cli`",
        path.display()
    );
    path
}

/// The `Authorization` header of HTTP basic authentication for `user:password`.
pub fn basic_auth(credentials: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in credentials.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | u32::from(*x) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Parses a Prometheus text scrape into `name{labels}` -> value (comments skipped).
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((series.to_string(), value))
        })
        .collect()
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): the status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    // A server may answer (413) before reading a large body: a failed write is not the test's.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A running `lnhubd` process.
pub struct Hub {
    child: Child,
    /// The hub's node id, as printed at start-up.
    pub node_id: PublicKey,
    /// The address it listens on, as printed at start-up.
    pub addr: SocketAddr,
    /// Its data directory (removed on drop).
    pub dir: TempDir,
    /// Where its admin RPC listens (`rpc=`; `None` with `--rpc-listen off`).
    pub rpc: Option<SocketAddr>,
    /// Where its metrics are served (`metrics=`, with `--metrics`).
    pub metrics: Option<SocketAddr>,
    /// The flags it was started with (again on a restart).
    extra: Vec<String>,
}

/// Whether the `lnhubd` under test takes `flag` (it is in its `--help`, read once): an older
/// build run with `LNHUBD` may lack flags this harness or a benchmark would pass.
pub fn lnhubd_has_flag(flag: &str) -> bool {
    static HELP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HELP.get_or_init(|| {
        Command::new(lnhubd_path())
            .arg("--help")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    })
    .contains(flag)
}

/// Whether the `lnhubd` under test has the admin RPC (`--rpc-listen` in its `--help`).
fn has_admin_rpc() -> bool {
    lnhubd_has_flag("--rpc-listen")
}

/// What `lnhubd` printed at start-up.
struct Started {
    node_id: PublicKey,
    addr: SocketAddr,
    rpc: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

/// Runs `lnhubd` on `data_dir`, listening on `listen`, logging (appended) to
/// `<data_dir>/lnhubd.log`; returns it with what it printed. The admin RPC listens on an
/// ephemeral loopback port unless `extra` says otherwise (tests run hubs side by side).
fn spawn_hub(data_dir: &Path, listen: &str, extra: &[String]) -> (Child, Started) {
    // Builds from before the admin RPC (`LNHUBD=<older build>`) have neither the flag nor
    // the `rpc=` line.
    let rpc_flag = extra.iter().any(|a| a == "--rpc-listen") || !has_admin_rpc();
    let want_rpc = has_admin_rpc()
        && !extra
            .windows(2)
            .any(|w| w[0] == "--rpc-listen" && w[1] == "off");
    let want_metrics = extra.iter().any(|a| a == "--metrics");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("lnhubd.log"))
        .expect("log file");
    let mut child = Command::new(lnhubd_path())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen, "--log-level", "debug"])
        .args(if rpc_flag {
            &[][..]
        } else {
            &["--rpc-listen", "127.0.0.1:0"][..]
        })
        .args(extra)
        // `LNHUBD_ARGS="--flag value ..."`: more arguments, for before/after benchmark runs
        // (with `LNHUBD`).
        .args(
            std::env::var("LNHUBD_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn lnhubd");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut node_id = None;
    let mut addr = None;
    let (mut rpc, mut metrics) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while node_id.is_none()
        || addr.is_none()
        || (want_rpc && rpc.is_none())
        || (want_metrics && metrics.is_none())
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "lnhubd printed no start-up lines; log:\n{}",
                    read_log(data_dir)
                );
            }
        };
        if let Some(v) = line.strip_prefix("node_id=") {
            node_id = Some(v.parse::<PublicKey>().expect("node_id line"));
        } else if let Some(v) = line.strip_prefix("listen=") {
            addr = Some(v.parse::<SocketAddr>().expect("listen line"));
        } else if let Some(v) = line.strip_prefix("rpc=") {
            rpc = Some(v.parse::<SocketAddr>().expect("rpc line"));
        } else if let Some(v) = line.strip_prefix("metrics=") {
            metrics = Some(v.parse::<SocketAddr>().expect("metrics line"));
        }
    }
    let started = Started {
        node_id: node_id.unwrap(),
        addr: addr.unwrap(),
        rpc,
        metrics,
    };
    (child, started)
}

impl Hub {
    /// Starts `lnhubd` on 127.0.0.1 with an ephemeral port and `extra` flags.
    pub fn start(extra: &[&str]) -> Hub {
        let dir = TempDir::new("hub");
        Hub::start_in(dir, extra)
    }

    /// Starts `lnhubd` with data directory `dir`.
    pub fn start_in(dir: TempDir, extra: &[&str]) -> Hub {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, s) = spawn_hub(&dir.0, "127.0.0.1:0", &extra);
        Hub {
            child,
            node_id: s.node_id,
            addr: s.addr,
            rpc: s.rpc,
            metrics: s.metrics,
            dir,
            extra,
        }
    }

    /// Kills the process with SIGKILL (no clean shutdown: whatever it was doing is cut short)
    /// and starts it again on the same data directory, address and flags.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// Kills the process with SIGKILL (see [`Hub::restart`]).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the process again on the same data directory, address and flags (after
    /// [`Hub::kill`] or [`Hub::stop`]).
    pub fn restart(&mut self) {
        let (child, s) = spawn_hub(&self.dir.0, &self.addr.to_string(), &self.extra);
        assert_eq!(s.node_id, self.node_id, "the same node key after a restart");
        assert_eq!(s.addr, self.addr, "the same address after a restart");
        self.child = child;
        self.rpc = s.rpc;
        self.metrics = s.metrics;
    }

    /// The hub's log so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.0)
    }

    /// Waits until the log contains `needle` or `timeout` passes.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Stops the process with SIGTERM and waits for it (at most 10 s, then SIGKILL).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `lnhub-cli --data-dir <ours> <args>`: its JSON answer, or its error line.
    pub fn cli(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let out = Command::new(lnhub_cli_path())
            .arg("--data-dir")
            .arg(&self.dir.0)
            .args(args)
            .output()
            .expect("run lnhub-cli");
        if out.status.success() {
            serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("lnhub-cli printed no JSON ({e}): {:?}", out.stdout))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The hub's metrics now (started with `--metrics`).
    pub fn scrape(&self) -> String {
        let addr = self.metrics.expect("the hub serves metrics (--metrics)");
        let (status, body) = http(addr, "GET", "/metrics", &[], b"").expect("scrape");
        assert_eq!(status, 200, "scrape: {body}");
        body
    }

    /// The process id (for its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- lnhubd log ----\n{}", self.log());
        }
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("lnhubd.log")).unwrap_or_default()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// LDK's log lines go to the test's stderr (shown on failure).
pub struct StderrLogger(pub &'static str);

impl Logger for StderrLogger {
    fn log(&self, record: Record<'_>) {
        eprintln!("[{} {}] {}", self.0, record.level, record.args);
    }
}

/// The LDK peer manager type used by connection-level tests: no channels, no gossip.
pub type LdkPeerManager = PeerManager<
    SocketDescriptor,
    ErroringMessageHandler,
    Arc<IgnoringMessageHandler>,
    IgnoringMessageHandler,
    Arc<StderrLogger>,
    IgnoringMessageHandler,
    Arc<KeysManager>,
    IgnoringMessageHandler,
>;

/// An independent LDK node that only speaks the connection layer (BOLT 1/8).
pub struct LdkPeer {
    /// LDK's peer manager.
    pub pm: Arc<LdkPeerManager>,
    /// Its node id.
    pub node_id: PublicKey,
}

impl LdkPeer {
    /// A new LDK node whose keys come from `seed`.
    pub fn new(name: &'static str, seed: [u8; 32]) -> LdkPeer {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let keys = Arc::new(KeysManager::new(
            &seed,
            now.as_secs(),
            now.subsec_nanos(),
            true,
        ));
        let node_id = {
            use lightning::sign::{NodeSigner, Recipient};
            keys.get_node_id(Recipient::Node).unwrap()
        };
        let mut ephemeral = [0u8; 32];
        ephemeral[..8].copy_from_slice(&now.as_nanos().to_le_bytes()[..8]);
        ephemeral[8] = seed[0];
        let pm = Arc::new(LdkPeerManager::new_routing_only(
            Arc::new(IgnoringMessageHandler {}),
            now.as_secs() as u32,
            &ephemeral,
            Arc::new(StderrLogger(name)),
            keys,
        ));
        LdkPeer { pm, node_id }
    }

    /// Dials `node_id` at `addr`; the connection runs on the current tokio runtime.
    pub async fn connect(&self, node_id: PublicKey, addr: SocketAddr) {
        let fut = lightning_net_tokio::connect_outbound(Arc::clone(&self.pm), node_id, addr)
            .await
            .expect("TCP connect to the hub");
        tokio::spawn(fut);
    }

    /// Listens on an ephemeral loopback port and accepts every connection.
    pub async fn listen(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let pm = Arc::clone(&self.pm);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let stream = stream.into_std().expect("std stream");
                tokio::spawn(lightning_net_tokio::setup_inbound(Arc::clone(&pm), stream));
            }
        });
        addr
    }

    /// Whether `node_id` is connected with its `init` received.
    pub fn is_connected(&self, node_id: &PublicKey) -> bool {
        self.pm.peer_by_node_id(node_id).is_some()
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A hand-driven BOLT 8 client built from lnhub's own pure crates, for tests that must send
/// what no well-behaved implementation would (garbage frames, unknown even messages).
pub struct RawPeer {
    stream: std::net::TcpStream,
    transport: lnhub_noise::Transport,
    out: Vec<u8>,
}

impl RawPeer {
    /// Connects to `node_id` at `addr` and completes the BOLT 8 handshake (blocking).
    pub fn connect(node_id: &PublicKey, addr: SocketAddr, seed: u8) -> std::io::Result<RawPeer> {
        use bitcoin::secp256k1::SecretKey;
        use std::io::{Read, Write};
        let local = SecretKey::from_slice(&[seed.max(1); 32]).unwrap();
        let ephemeral = SecretKey::from_slice(&[seed.max(1).wrapping_add(1).max(1); 32]).unwrap();
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (hs, act_one) = lnhub_noise::InitiatorHandshake::new(&local, node_id, &ephemeral);
        stream.write_all(&act_one)?;
        let mut act_two = [0u8; lnhub_noise::ACT_TWO_LEN];
        stream.read_exact(&mut act_two)?;
        let (act_three, transport) = hs
            .handle_act_two(&act_two)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        stream.write_all(&act_three)?;
        Ok(RawPeer {
            stream,
            transport,
            out: Vec::new(),
        })
    }

    /// Encrypts and sends one message (type included).
    pub fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.out.clear();
        self.transport
            .encrypt_message(msg, &mut self.out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stream.write_all(&self.out)
    }

    /// Sends raw bytes outside any frame.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.stream.write_all(bytes)
    }

    /// Receives the next message (blocking, 10 s timeout). `Ok(None)`: the hub closed.
    pub fn recv(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(msg) = self
                .transport
                .next_message()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
            {
                return Ok(Some(msg.to_vec()));
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut data = &buf[..n];
            while !data.is_empty() {
                let used = self.transport.feed(data).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
                data = &data[used..];
                if used == 0 {
                    break;
                }
            }
        }
    }

    /// Reads until the hub closes the connection; returns the messages received before that.
    pub fn recv_until_closed(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut msgs = Vec::new();
        while let Some(m) = self.recv()? {
            msgs.push(m);
        }
        Ok(msgs)
    }
}
