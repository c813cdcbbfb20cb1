//! Hub CPU per forward with LDK paying LDK through `lnhubd` (a separate process, durable in
//! LMDB): S -> hub -> R over loopback TCP with a fixed number of payments in flight, for
//! 1-sat payments (dust: trimmed, no HTLC signatures) and 1,000-sat ones (real HTLC outputs).
//!
//! The figure is the hub process's user + system CPU time (`/proc/<pid>/stat`) over the run,
//! divided by the payments settled. Run:
//! `cargo bench -p lnhub-tests --bench ldk_forward` (`LDK_FORWARD_PAYMENTS=N` to change the
//! count, default 1,000 1-sat and 400 1,000-sat payments, 100 in flight).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use lightning::types::payment::PaymentHash;
use lnhub_tests::{payer_hub_payee, LdkNode, LdkNodeConfig, TempDir};

const IN_FLIGHT: usize = 100;

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

/// CPU ticks per thread kind (thread name without its trailing number: `shard-`, `rayon-`,
/// `store-writer`, and `lnhubd` for the connection loop), summed over the hub's threads.
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

async fn run(amount_msat: u64, payments: usize) {
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
    let (hub, _) = payer_hub_payee(&s, &r, TempDir::new("bench")).await;
    let pid = hub.pid();
    // `LDK_FORWARD_PERF=<file>`: a CPU profile of the hub over the timed part (`perf report -i`).
    let perf = std::env::var("LDK_FORWARD_PERF").ok().map(|out| {
        std::process::Command::new("perf")
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
            .arg(format!("{out}.{}sat", amount_msat / 1000))
            .args(["-p", &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perf")
    });
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
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let threads_after = cpu_by_thread(pid);

    if let Some(mut perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
    println!(
        "{} sat x {payments}, {IN_FLIGHT} in flight: {:.0} payments/s, hub CPU {:.0} us per \
         forward ({cpu:.2} s CPU in {secs:.2} s)",
        amount_msat / 1000,
        payments as f64 / secs,
        cpu / payments as f64 * 1e6
    );
    let per_thread: Vec<String> = threads_after
        .iter()
        .map(|(kind, after)| {
            let before = threads_before.get(kind).copied().unwrap_or(0);
            // Ticks are 10 ms: microseconds per forward.
            let us = (after - before) as f64 * 10_000.0 / payments as f64;
            format!("{kind} {us:.0}")
        })
        .collect();
    println!(
        "  hub CPU per forward by thread (us): {}",
        per_thread.join(", ")
    );

    // The hub logs its store's totals when it stops (SIGTERM): bytes written per forward.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if hub.wait_for_log("store: ", Duration::from_secs(10)) {
        let log = hub.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("store: "))
            .unwrap_or("");
        let bytes = line
            .split(" records, ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|b| b.parse::<u64>().ok());
        let stats = &line[line.find("store: ").unwrap_or(0)..];
        match bytes {
            Some(b) => println!(
                "  {stats}\n  {} bytes written per forward",
                b / payments as u64
            ),
            None => println!("  {stats}"),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let n: Option<usize> = std::env::var("LDK_FORWARD_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(1_000, n.unwrap_or(1_000)));
    rt.block_on(run(1_000_000, n.unwrap_or(400)));
}
