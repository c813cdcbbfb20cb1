//! The hub under load: an `lnhubd` process started on a fresh data directory (durable in
//! LMDB, as it always is), and what `/proc` says about it (CPU time, peak memory) and what
//! its log says about its store at exit (commits, batches).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secp256k1::PublicKey;

/// A running `lnhubd`.
pub struct Hub {
    child: Child,
    /// Its node id.
    pub node_id: PublicKey,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves its metrics (started with `--metrics`).
    pub metrics: Option<SocketAddr>,
    dir: PathBuf,
}

/// The forwarding policy written to the config of the hubs the generator starts (the
/// payers pay what the hub's `channel_update` says, which is this unless attached).
pub const FEE_BASE_MSAT: u64 = 1_000;
/// See [`FEE_BASE_MSAT`].
pub const FEE_PPM: u64 = 100;
/// See [`FEE_BASE_MSAT`].
pub const CLTV_DELTA: u32 = 80;

/// A started hub's fee for forwarding `amount_msat` (to check that the sizes fit the
/// channels before any starts).
pub fn fee_msat(amount_msat: u64) -> u64 {
    FEE_BASE_MSAT + amount_msat * FEE_PPM / 1_000_000
}

/// The `lnhubd` beside this executable (a `cargo build` puts both in `target/<profile>`).
pub fn default_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("lnhubd")));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("lnhubd"),
    }
}

/// Whether `binary --help` lists `flag`.
fn knows_flag(binary: &Path, flag: &str) -> bool {
    Command::new(binary)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

impl Hub {
    /// Starts `binary` on a fresh data directory under the system's temporary directory,
    /// trusting `trusted` for zero-conf channels, with `extra` flags; `pin`: on the first
    /// core only (`taskset -c 0`).
    pub fn start(
        binary: &Path,
        tag: &str,
        trusted: &[PublicKey],
        extra: &[String],
        pin: bool,
    ) -> Result<Hub, String> {
        let dir = std::env::temp_dir().join(format!("lnhub-loadgen-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(
            dir.join("lnhub.toml"),
            format!(
                "fee_base_msat = {FEE_BASE_MSAT}\nfee_proportional_millionths = {FEE_PPM}\n\
                 cltv_expiry_delta = {CLTV_DELTA}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("lnhubd.log")).map_err(|e| e.to_string())?;
        let mut cmd = if pin {
            // The first core for the hub (the generator takes the second).
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", "0"]).arg(binary);
            taskset
        } else {
            Command::new(binary)
        };
        cmd.arg("--data-dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0"]);
        for id in trusted {
            cmd.args(["--trusted-peer", &id.to_string()]);
        }
        // Builds with an admin RPC would take its default port, which another hub (or a
        // second generator) may hold: an ephemeral one instead. Older builds have none.
        if !extra.iter().any(|a| a == "--rpc-listen") && knows_flag(binary, "--rpc-listen") {
            cmd.args(["--rpc-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut node_id, mut addr, mut metrics) = (None, None, None);
        let want_metrics = extra.iter().any(|a| a == "--metrics");
        while node_id.is_none() || addr.is_none() || (want_metrics && metrics.is_none()) {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(dir.join("lnhubd.log")).unwrap_or_default();
                    return Err(format!("lnhubd did not start: {}", log.trim()));
                }
            };
            if let Some(v) = line.strip_prefix("node_id=") {
                node_id = v.parse::<PublicKey>().ok();
            } else if let Some(v) = line.strip_prefix("listen=") {
                addr = v.parse::<SocketAddr>().ok();
            } else if let Some(v) = line.strip_prefix("metrics=") {
                metrics = v.parse::<SocketAddr>().ok();
            }
        }
        // The rest of standard output is drained, so the hub never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Hub {
            child,
            node_id: node_id.expect("checked"),
            addr: addr.expect("checked"),
            metrics,
            dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM (it logs its store's figures on the way out) and returns those
    /// figures and the last lines of its log; the data directory is removed.
    pub fn stop(mut self) -> (StoreFigures, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(self.dir.join("lnhubd.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&self.dir);
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        (StoreFigures::from_log(&log), tail)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What lnhubd's exit line says about its store: `store: N commits (M shard batches, ...)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreFigures {
    /// LMDB write transactions (one fsync each).
    pub commits: u64,
    /// Shard batches they carried (`None`: not known, for a hub attached to).
    pub batches: Option<u64>,
}

impl StoreFigures {
    fn from_log(log: &str) -> StoreFigures {
        let Some(line) = log
            .lines()
            .rev()
            .find(|l| l.contains("store: ") && l.contains("commits"))
        else {
            return StoreFigures::default();
        };
        let after = &line[line.find("store: ").expect("found") + 7..];
        let mut words = after.split_whitespace();
        let commits = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let batches = after
            .split('(')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|w| w.parse().ok());
        StoreFigures { commits, batches }
    }
}

/// User + system CPU seconds of process `pid` (`/proc/<pid>/stat`, clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_ticks(&stat))
        .unwrap_or(0) as f64
        / 100.0
}

/// User + system clock ticks from a `stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Peak resident memory of process `pid` in KiB (`VmHWM` of `/proc/<pid>/status`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The hub's metrics page (`http://addr/metrics`), if it answers 200.
fn metrics_page(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: lnhub\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = Vec::new();
    s.read_to_end(&mut text).ok()?;
    let text = String::from_utf8(text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// The value of the unlabelled sample `name` on the hub's metrics page.
pub fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    sample(&metrics_page(addr)?, name)
}

/// The value of the unlabelled sample `name` in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Scrapes `http://addr/metrics` every `every` until `stop` is set, as Prometheus would (its
/// default is every 15 s; a second makes the cost of metrics easy to see): returns how many
/// scrapes answered 200.
pub fn scrape_until(
    addr: SocketAddr,
    every: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> u64 {
    let mut ok = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if metrics_page(addr).is_some() {
            ok += 1;
        }
        std::thread::sleep(every);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_figures_come_from_the_exit_line() {
        let log = "[x INFO lnhubd] store: 812 commits (1530 shard batches, at most 2 in one), \
                   9000 records, 100 bytes, 300 us per commit, 0 forwarding-log entries pruned\n";
        let f = StoreFigures::from_log(log);
        assert_eq!((f.commits, f.batches), (812, Some(1530)));
        assert_eq!(StoreFigures::from_log("nothing").commits, 0);
    }

    #[test]
    fn samples_are_found_by_their_whole_name() {
        let page = "HTTP/1.1 200 OK\r\n\r\n# TYPE lnhub_store_commits_total counter\n\
                    lnhub_store_commits_total_x 9\nlnhub_store_commits_total 812\n\
                    lnhub_x{a=\"b\"} 1\n";
        assert_eq!(sample(page, "lnhub_store_commits_total"), Some(812.0));
        assert_eq!(sample(page, "lnhub_x"), None);
    }

    #[test]
    fn stat_fields_after_the_command_name() {
        let stat = "42 (lnhubd x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(stat_ticks(stat), Some(300));
    }

    #[test]
    fn fee_is_the_configured_policy() {
        assert_eq!(fee_msat(1_000), 1_000);
        assert_eq!(fee_msat(10_000_000), 2_000);
    }
}
