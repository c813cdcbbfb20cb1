//! Hub CPU per forward with LDK paying LDK, side by side: S -> hub -> R over loopback TCP with
//! a fixed number of payments in flight, once with `lnhubd` as the hub (a separate process,
//! durable in LMDB) and once with an LDK node as the hub (`ldk-hub`, this crate's binary: a
//! separate process, durable in LDK's `FilesystemStore`, as an LDK user runs a routing node),
//! for 1-sat payments (dust: trimmed, no HTLC signatures) and 1,000-sat ones (real HTLC
//! outputs). S and R are LDK nodes, fresh for each hub with the same seeds and configuration;
//! both hubs charge `lnhubd`'s default fees (1,000 msat + 100 ppm, CLTV delta 80).
//!
//! The figure is the hub process's user + system CPU time (`/proc/<pid>/stat`) over the timed
//! part, divided by the payments settled; each row also gives payments (forwards) per second,
//! the hub's CPU per forward by thread, what the hub's store wrote and (from its metrics) the
//! signatures it verified and commitments it exchanged per forward. After both rows, the
//! ratios: LDK's hub CPU per forward over `lnhubd`'s, and `lnhubd`'s payments/s over LDK's.
//!
//! Run `cargo build --release -p lnhubd`, then `cargo bench -p lnhub-tests --bench ldk_forward`.
//! Environment: `LDK_FORWARD_HUBS=lnhubd|ldk|both` (default both), `LDK_FORWARD_PAYMENTS=N`
//! or `N,M` (N 1-sat payments and N, or M, 1,000-sat ones; default 1,000 of each, at most
//! about 1,900 1,000-sat ones; always 100 in flight), `LNHUBD=<path>` and
//! `LNHUBD_ARGS="..."` (another `lnhubd` build, more flags), `LDK_HUB_ARGS="..."` (more
//! `ldk-hub` flags, e.g. `--forward-delay 0` to process forwards at once instead of after LDK's
//! background processor's random delay), `LDK_FORWARD_PERF=<file>` (a `perf` profile of the
//! hub over the timed part: `<file>.<size>sat` for `lnhubd`, `<file>.ldk.<size>sat` for LDK).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use lightning::types::payment::PaymentHash;
use lnhub_tests::{
    lnhubd_has_flag, parse_metrics, payer_hub_payee_sized, payer_ldk_hub_payee, LdkNode,
    LdkNodeConfig, TempDir,
};

/// `--metrics` on an ephemeral port, for builds that have it (an older one, run with
/// `LNHUBD`, may not): the row then says what the hub's CPU went to, the signatures it
/// checked and the commitments each side sent, per forward.
fn metrics_flag() -> &'static [&'static str] {
    if lnhubd_has_flag("--metrics") {
        &["--metrics", "127.0.0.1:0"]
    } else {
        &[]
    }
}

const IN_FLIGHT: usize = 100;

/// Both channels' size (sat): the hub holds half of its channel to R, enough to forward the
/// default 1,000 1,000-sat payments (the tests' smaller channels hold about 490 of them).
const BENCH_CHANNEL_SAT: u64 = 4_000_000;

/// The process's user + system CPU time, from `/proc/<pid>/stat` (fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    stat_ticks(&stat).expect("/proc/<pid>/stat fields") as f64 / 100.0
}

/// User + system clock ticks from a `stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks per thread kind (thread name without its trailing number: for `lnhubd` `shard-`,
/// `rayon-`, `store-writer`, and `lnhubd` for the connection loop; for `ldk-hub`
/// `tokio-rt-worker` for the runtime's workers), summed over the hub's threads.
fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let kind = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit());
        *by.entry(kind.to_string()).or_default() += stat_ticks(&stat).unwrap_or(0);
    }
    by
}

/// S and R, the same for both hubs (seeds and configuration); R accepts 483 HTLCs so the
/// hub can keep 100 in flight to it.
fn payer_and_payee() -> (LdkNode, LdkNode) {
    let quiet = LdkNodeConfig {
        log_level: lightning::util::logger::Level::Warn,
        ..LdkNodeConfig::default()
    };
    let s = LdkNode::new("S", [0x81; 32], quiet.clone());
    let mut r_config = quiet;
    r_config
        .user_config
        .channel_handshake_config
        .our_max_accepted_htlcs = 483;
    let r = LdkNode::new("R", [0x82; 32], r_config);
    (s, r)
}

/// `LDK_FORWARD_PERF=<file>`: a CPU profile of the hub over the timed part (`perf report -i`).
fn start_perf(pid: u32, file_suffix: &str) -> Option<std::process::Child> {
    let out = std::env::var("LDK_FORWARD_PERF").ok()?;
    let child = std::process::Command::new("perf")
        // DWARF unwinding: the release build keeps no frame pointers.
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "2000",
            "--call-graph=dwarf,32768",
        ])
        .arg("-o")
        .arg(format!("{out}.{file_suffix}"))
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf");
    Some(child)
}

fn stop_perf(perf: Option<std::process::Child>) {
    if let Some(mut perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
}

/// One hub's run: the timed part's wall-clock and the hub's CPU seconds.
struct Measured {
    payments: usize,
    secs: f64,
    cpu: f64,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.payments as f64 / self.secs
    }

    fn cpu_us_per_forward(&self) -> f64 {
        self.cpu / self.payments as f64 * 1e6
    }
}

/// The hub under measurement.
struct Target {
    /// The row's name.
    label: &'static str,
    node_id: PublicKey,
    pid: u32,
    /// Of the `perf` profile's file name.
    perf_suffix: String,
}

/// S pays `payments` of R's invoices through the hub, `IN_FLIGHT` at a time; prints the row
/// and the hub's CPU per forward by thread.
async fn drive(
    s: &LdkNode,
    r: &LdkNode,
    hub: &Target,
    amount_msat: u64,
    payments: usize,
) -> Measured {
    let (label, pid) = (hub.label, hub.pid);
    let perf = start_perf(pid, &hub.perf_suffix);
    let cpu_before = cpu_seconds(pid);
    let threads_before = cpu_by_thread(pid);
    let started = Instant::now();
    let mut pending = VecDeque::new();
    let (mut sent, mut done) = (0, 0);
    while done < payments {
        while sent < payments && pending.len() < IN_FLIGHT {
            let invoice = r
                .create_invoice(amount_msat, "bench", Some(hub.node_id))
                .unwrap();
            s.pay_invoice(&invoice).unwrap();
            pending.push_back(PaymentHash(invoice.payment_hash().to_byte_array()));
            sent += 1;
        }
        let hash = pending.pop_front().unwrap();
        s.wait_payment_sent(hash, Duration::from_secs(60))
            .await
            .expect("payment settles");
        done += 1;
    }
    let m = Measured {
        payments,
        secs: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid) - cpu_before,
    };
    let threads_after = cpu_by_thread(pid);
    stop_perf(perf);

    println!(
        "  {label:<6} {:.0} payments/s, hub CPU {:.0} us per forward ({:.2} s CPU in {:.2} s)",
        m.per_second(),
        m.cpu_us_per_forward(),
        m.cpu,
        m.secs
    );
    let per_thread: Vec<String> = threads_after
        .iter()
        .map(|(kind, after)| {
            let before = threads_before.get(kind).copied().unwrap_or(0);
            // Ticks are 10 ms: microseconds per forward.
            let us = after.saturating_sub(before) as f64 * 10_000.0 / payments as f64;
            format!("{kind} {us:.0}")
        })
        .collect();
    println!(
        "         hub CPU per forward by thread (us): {}",
        per_thread.join(", ")
    );
    m
}

/// The `lnhubd` row; its store's totals come from the line it logs when it stops (SIGTERM).
async fn lnhubd_row(amount_msat: u64, payments: usize) -> Measured {
    let (s, r) = payer_and_payee();
    let (hub, _) = payer_hub_payee_sized(
        &s,
        &r,
        TempDir::new("bench"),
        metrics_flag(),
        BENCH_CHANNEL_SAT,
    )
    .await;
    let pid = hub.pid();
    let target = Target {
        label: "lnhubd",
        node_id: hub.node_id,
        pid,
        perf_suffix: format!("{}sat", amount_msat / 1000),
    };
    let before = hub.metrics.map(|_| parse_metrics(&hub.scrape()));
    let m = drive(&s, &r, &target, amount_msat, payments).await;
    if let Some(before) = before {
        let after = parse_metrics(&hub.scrape());
        let per_forward = |series: &str| {
            let count = after.get(series).copied().unwrap_or(0.0)
                - before.get(series).copied().unwrap_or(0.0);
            count / payments as f64
        };
        let message = |dir: &str, name: &str| {
            per_forward(&format!("lnhub_messages_{dir}_total{{type=\"{name}\"}}"))
        };
        println!(
            "         per forward: {:.1} signatures verified, commitment_signed {:.2} received / \
             {:.2} sent, revoke_and_ack {:.2} received / {:.2} sent",
            per_forward("lnhub_signatures_verified_total"),
            message("received", "commitment_signed"),
            message("sent", "commitment_signed"),
            message("received", "revoke_and_ack"),
            message("sent", "revoke_and_ack"),
        );
    }

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    // The exit line: `store: N commits (...) ... forwarding-log entries pruned`.
    if hub.wait_for_log("forwarding-log entries pruned", Duration::from_secs(10)) {
        let log = hub.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("store: ") && l.contains(" commits ("))
            .unwrap_or("");
        let bytes = line
            .split(" records, ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|b| b.parse::<u64>().ok());
        let stats = &line[line.find("store: ").unwrap_or(0)..];
        println!("         {stats}");
        if let Some(b) = bytes {
            println!("         {} bytes written per forward", b / payments as u64);
        }
    }
    m
}

/// The LDK row: `ldk-hub`, which prints its store's totals when it stops.
async fn ldk_row(amount_msat: u64, payments: usize) -> Measured {
    let (s, r) = payer_and_payee();
    let (mut hub, _) = payer_ldk_hub_payee(
        &s,
        &r,
        env!("CARGO_BIN_EXE_ldk-hub"),
        TempDir::new("bench-ldk"),
        &[],
        BENCH_CHANNEL_SAT,
    )
    .await;
    let target = Target {
        label: "LDK",
        node_id: hub.node_id,
        pid: hub.pid(),
        perf_suffix: format!("ldk.{}sat", amount_msat / 1000),
    };
    let m = drive(&s, &r, &target, amount_msat, payments).await;

    if let Some(line) = hub.stop() {
        println!("         {line}");
        // `store: <writes> writes, <bytes> bytes (...)`
        let bytes = line
            .split_whitespace()
            .nth(3)
            .and_then(|b| b.parse::<u64>().ok());
        if let Some(b) = bytes {
            println!("         {} bytes written per forward", b / payments as u64);
        }
    }
    m
}

async fn run(hubs: &str, amount_msat: u64, payments: usize) {
    println!(
        "{} sat x {payments}, {IN_FLIGHT} in flight:",
        amount_msat / 1000
    );
    let lnhubd = if hubs != "ldk" {
        Some(lnhubd_row(amount_msat, payments).await)
    } else {
        None
    };
    let ldk = if hubs != "lnhubd" {
        Some(ldk_row(amount_msat, payments).await)
    } else {
        None
    };
    if let (Some(lnhubd), Some(ldk)) = (lnhubd, ldk) {
        println!(
            "  ratios: hub CPU per forward LDK / lnhubd {:.2}x, payments/s lnhubd / LDK {:.2}x",
            ldk.cpu_us_per_forward() / lnhubd.cpu_us_per_forward(),
            lnhubd.per_second() / ldk.per_second()
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    // `N` for both sizes, or `N,M`: N 1-sat payments and M 1,000-sat ones.
    let counts: Vec<Option<usize>> = std::env::var("LDK_FORWARD_PAYMENTS")
        .map(|v| v.split(',').map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default();
    let small = counts.first().copied().flatten();
    let large = counts.get(1).copied().flatten().or(small);
    let hubs = std::env::var("LDK_FORWARD_HUBS").unwrap_or_else(|_| "both".to_string());
    assert!(
        ["lnhubd", "ldk", "both"].contains(&hubs.as_str()),
        "LDK_FORWARD_HUBS={hubs}: lnhubd, ldk or both"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&hubs, 1_000, small.unwrap_or(1_000)));
    rt.block_on(run(&hubs, 1_000_000, large.unwrap_or(1_000)));
}
