//! `lnhub-loadgen`: how fast an `lnhubd` forwards, and at what cost.
//!
//! For each payment size it starts a fresh `lnhubd` (durable in LMDB, as always), connects
//! `2 x pairs` light peers to it over loopback (BOLT 8, BOLT 1, BOLT 2, built on lnhub's own
//! crates: see `node.rs`), each with a zero-conf channel to the hub, and has every node pay
//! its partner through the hub, `in_flight` payments outstanding per node (closed loop), the
//! nodes shared by `--gen-threads` event loops.
//! After a warm-up it measures for a fixed time, then reports: payments per second, payment
//! latency percentiles (offer -> preimage back, HDR histogram), failures by BOLT 4 code, the
//! hub's CPU time per forward (user + system, from `/proc`), the generator's own, the hub's
//! peak memory, and its LMDB commits and shard batches per commit. `--json` prints one
//! object per size on standard output (the human report goes to standard error then).
//!
//! `--attach` loads an `lnhubd` already running instead (it must trust the nodes' ids, which
//! `--print-trusted` prints as its flags); what is measured of it then comes from the
//! process id and the metrics address it is given. Either way, payers pay the fee and expiry
//! delta of the `channel_update` the hub sent each payee.
//!
//! Exit status: 0 when every size ran and every preimage checked out, 1 otherwise (with one
//! line saying why).

mod hub;
mod node;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use secp256k1::SecretKey;

use crate::hub::Hub;
use crate::node::pay::Payer;
use crate::node::{NodeConfig, NodeReport, Shared};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "lnhub-loadgen",
    version,
    about = "Load test an lnhubd: light peers pay each other through it over loopback"
)]
struct Args {
    /// A run under a minute: 1 pair, 50 in flight, 2 s warm-up, 8 s per size.
    #[arg(long)]
    quick: bool,
    /// Node pairs; each node pays its partner through the hub [default: 2].
    #[arg(long, value_name = "N")]
    pairs: Option<usize>,
    /// Payments each node keeps outstanding, 1 to 483 [default: 100].
    #[arg(long, value_name = "K")]
    in_flight: Option<usize>,
    /// Open loop: payments offered per second over all nodes, whatever is outstanding (for
    /// latency below saturation); replaces --in-flight.
    #[arg(long, value_name = "PER_SEC")]
    rate: Option<f64>,
    /// Pin the hub to the first core and the generator to the second (steadier figures on a
    /// shared machine).
    #[arg(long)]
    pin: bool,
    /// Seconds measured per payment size [default: 30].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Seconds of load before measuring [default: 5].
    #[arg(long, value_name = "SECS")]
    warmup: Option<f64>,
    /// Payment sizes in msat, comma-separated [default: 1000,10000000: 1 sat, below every
    /// dust limit, and 10,000 sat, a real HTLC output].
    #[arg(long, value_name = "MSAT", value_delimiter = ',')]
    sizes: Vec<u64>,
    /// The lnhubd to run [default: the one beside this executable].
    #[arg(long, value_name = "PATH")]
    hub: Option<PathBuf>,
    /// Extra lnhubd flags, space-separated (for example "--shards 1").
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    hub_args: Option<String>,
    /// One JSON object per payment size on standard output.
    #[arg(long)]
    json: bool,
    /// Load a running lnhubd instead of starting one per size. It must trust this run's node
    /// ids for zero-conf channels (`--print-trusted`); every size's channels stay open on it.
    #[arg(long, value_name = "NODE_ID@HOST:PORT")]
    attach: Option<String>,
    /// With --attach: the hub's process id, for its CPU time and peak memory (without it
    /// neither is reported).
    #[arg(long, value_name = "PID", requires = "attach")]
    hub_pid: Option<u32>,
    /// With --attach: the hub's metrics address (its --metrics), for its LMDB commits during
    /// the measured window.
    #[arg(long, value_name = "HOST:PORT", requires = "attach")]
    hub_metrics: Option<SocketAddr>,
    /// With --attach: the block height the hub sees (payments expire above it) [default: 0,
    /// a hub without a chain backend].
    #[arg(long, value_name = "N", requires = "attach")]
    hub_height: Option<u32>,
    /// The hub's shard count, which the node keys are chosen to spread over [default:
    /// `--shards` in --hub-args, else lnhubd's default, one per core].
    #[arg(long, value_name = "N")]
    hub_shards: Option<usize>,
    /// Node keys derive from this number: each run against one attached hub needs its own.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Threads that drive the nodes' payments (event loops, each for a share of the nodes)
    /// [default: one per core].
    #[arg(long, value_name = "N")]
    gen_threads: Option<usize>,
    /// Print the lnhubd flags that trust this run's node ids (`--trusted-peer ID` for every
    /// node of every size), then exit: start the hub with them, then --attach to it.
    #[arg(long)]
    print_trusted: bool,
}

/// A running hub to load instead of starting one (`--attach`).
#[derive(Debug, Clone)]
struct Attach {
    node_id: secp256k1::PublicKey,
    addr: SocketAddr,
    pid: Option<u32>,
    metrics: Option<SocketAddr>,
    height: u32,
}

impl Attach {
    fn parse(target: &str, args: &Args) -> Result<Attach, String> {
        let bad = || format!("--attach {target}: expected NODE_ID@HOST:PORT");
        let (id, host) = target.split_once('@').ok_or_else(bad)?;
        let node_id = id
            .parse()
            .map_err(|_| format!("--attach: {id} is not a node id (33 bytes, hex)"))?;
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("--attach: {host}: {e}"))?
            .next()
            .ok_or_else(bad)?;
        Ok(Attach {
            node_id,
            addr,
            pid: args.hub_pid,
            metrics: args.hub_metrics,
            height: args.hub_height.unwrap_or(0),
        })
    }
}

/// A run's settings, flags applied over the preset.
#[derive(Debug, Clone)]
struct Plan {
    pairs: usize,
    in_flight: usize,
    rate: Option<f64>,
    pin: bool,
    /// The hub's shard count: `--shards` in `--hub-args`, else lnhubd's default (the cores).
    shards: usize,
    warmup: Duration,
    duration: Duration,
    sizes: Vec<u64>,
    hub: PathBuf,
    hub_args: Vec<String>,
    json: bool,
    attach: Option<Attach>,
    seed: u64,
    print_trusted: bool,
    gen_threads: usize,
}

/// Channel capacity of every node (the largest without `option_support_large_channel`).
const FUNDING_SAT: u64 = 16_000_000;

impl Plan {
    fn from(args: Args) -> Result<Plan, String> {
        let attach = args
            .attach
            .as_deref()
            .map(|target| Attach::parse(target, &args))
            .transpose()?;
        let (pairs, in_flight, warmup, duration) = if args.quick {
            (1, 50, 2.0, 8.0)
        } else {
            (2, 100, 5.0, 30.0)
        };
        let hub_args: Vec<String> = args
            .hub_args
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let shards = args
            .hub_shards
            .or_else(|| {
                hub_args
                    .iter()
                    .position(|a| a == "--shards")
                    .and_then(|i| hub_args.get(i + 1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or_else(|| {
                // lnhubd runs a shard per core it may use: pinned, one.
                if args.pin {
                    1
                } else {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1)
                }
            });
        let pairs = args.pairs.unwrap_or(pairs);
        let mut hub_args = hub_args;
        let peers = 2 * pairs + 16;
        if peers > 1024 && !hub_args.iter().any(|a| a == "--max-peers") {
            // Every node is a peer before its channel makes it one the hub always admits;
            // above lnhubd's default of 1,024 the hub must be told.
            hub_args.extend(["--max-peers".to_string(), peers.to_string()]);
        }
        let plan = Plan {
            pairs,
            in_flight: args.in_flight.unwrap_or(in_flight),
            rate: args.rate,
            pin: args.pin,
            shards,
            warmup: secs(args.warmup.unwrap_or(warmup))?,
            duration: secs(args.duration.unwrap_or(duration))?,
            sizes: if args.sizes.is_empty() {
                vec![1_000, 10_000_000]
            } else {
                args.sizes
            },
            hub: args.hub.unwrap_or_else(hub::default_binary),
            hub_args,
            json: args.json,
            attach,
            seed: args.seed,
            print_trusted: args.print_trusted,
            gen_threads: args
                .gen_threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        };
        if !(1..=256).contains(&plan.gen_threads) {
            return Err(format!(
                "--gen-threads {} is outside 1..=256",
                plan.gen_threads
            ));
        }
        if !(1..=64).contains(&plan.shards) {
            return Err(format!("--hub-shards {} is outside 1..=64", plan.shards));
        }
        if !(1..=1_000).contains(&plan.pairs) {
            return Err(format!("--pairs {} is outside 1..=1000", plan.pairs));
        }
        if !(1..=483).contains(&plan.in_flight) {
            return Err(format!("--in-flight {} is outside 1..=483", plan.in_flight));
        }
        if let Some(rate) = plan.rate {
            if !(rate > 0.0 && rate <= 1e6) {
                return Err(format!("--rate {rate} is outside (0, 1000000]"));
            }
        }
        if plan.duration.is_zero() {
            return Err("--duration must be above 0".into());
        }
        // `in_flight` of the largest payment must fit in a node's half of its channel, with
        // room for the reserve and the commitment fee: 45 % of the capacity.
        let room_msat = FUNDING_SAT * 1000 * 45 / 100;
        for &size in &plan.sizes {
            let worst = (size + hub::fee_msat(size)) * plan.in_flight as u64;
            if size == 0 || worst > room_msat {
                return Err(format!(
                    "--sizes {size}: must be above 0 and at most {} msat with {} in flight",
                    room_msat / plan.in_flight as u64 - hub::fee_msat(size),
                    plan.in_flight
                ));
            }
        }
        Ok(plan)
    }
}

fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s} is not a number of seconds"))
}

/// What one payment size gave.
#[derive(Debug)]
struct Outcome {
    amount_msat: u64,
    forwards: u64,
    failed: u64,
    seconds: f64,
    /// Forwards per second from the first payment (warm-up included) to the window's end.
    overall_per_s: f64,
    /// `None` when attached without `--hub-pid`.
    hub_cpu_s: Option<f64>,
    gen_cpu_s: f64,
    latency_us: Histogram<u64>,
    failures: BTreeMap<u16, u64>,
    bad_preimages: u64,
    unknown_payments: u64,
    hub_rss_kib: Option<u64>,
    /// `None` when attached without `--hub-metrics`.
    store: Option<hub::StoreFigures>,
    /// Metrics scrapes answered during the run (with `--hub-args "--metrics ..."`).
    scrapes: u64,
}

impl Outcome {
    fn per_s(&self) -> f64 {
        self.forwards as f64 / self.seconds
    }

    fn us_per_forward(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / self.forwards.max(1) as f64
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// LMDB shard batches per commit, where known.
    fn batches_per_commit(&self) -> Option<f64> {
        let store = self.store?;
        Some(store.batches? as f64 / store.commits.max(1) as f64)
    }

    fn json(&self, plan: &Plan) -> serde_json::Value {
        let failures: serde_json::Map<String, serde_json::Value> = self
            .failures
            .iter()
            .map(|(code, n)| (format!("0x{code:04x}"), (*n).into()))
            .collect();
        serde_json::json!({
            "amount_msat": self.amount_msat,
            "forwards": self.forwards,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "overall_forwards_per_s": round(self.overall_per_s, 1),
            "forwards_per_s": round(self.per_s(), 1),
            "hub_cpu_us_per_forward": self.hub_cpu_s.map(|s| round(self.us_per_forward(s), 1)),
            "gen_cpu_us_per_forward": round(self.us_per_forward(self.gen_cpu_s), 1),
            "p50_ms": round(self.ms(0.50), 3),
            "p90_ms": round(self.ms(0.90), 3),
            "p99_ms": round(self.ms(0.99), 3),
            "p999_ms": round(self.ms(0.999), 3),
            "max_ms": round(self.latency_us.max() as f64 / 1000.0, 3),
            "failures": failures,
            "hub_peak_rss_kib": self.hub_rss_kib,
            "lmdb_commits": self.store.map(|s| s.commits),
            "shard_batches_per_commit": self.batches_per_commit().map(|b| round(b, 2)),
            "durable": true,
            "attached": plan.attach.is_some(),
            "metrics_scrapes": self.scrapes,
            "pairs": plan.pairs,
            "in_flight_per_node": if plan.rate.is_some() { None } else { Some(plan.in_flight) },
            "offered_per_s": plan.rate,
            "pinned": plan.pin,
            "shards": plan.shards,
        })
    }

    fn human(&self) -> String {
        let failures = if self.failures.is_empty() {
            "none".to_string()
        } else {
            self.failures
                .iter()
                .map(|(code, n)| format!("{n} x 0x{code:04x}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hub_cpu = match self.hub_cpu_s {
            Some(s) => format!("{:.0} us/forward", self.us_per_forward(s)),
            None => "not measured (no --hub-pid)".into(),
        };
        let rss = match self.hub_rss_kib {
            Some(kib) => format!("{} MiB", kib / 1024),
            None => "not measured".into(),
        };
        let store = match (self.store, self.batches_per_commit()) {
            (Some(s), Some(b)) => format!(
                "LMDB (whole run): {} commits, {b:.2} shard batches per commit",
                s.commits
            ),
            (Some(s), None) => format!("LMDB (measured window): {} commits", s.commits),
            (None, _) => "LMDB: not measured (no --hub-metrics)".into(),
        };
        format!(
            "{} msat: {} forwards in {:.1} s = {:.0}/s steady ({:.0}/s with the warm-up); {} \
             failed ({failures})\n  \
             hub CPU {hub_cpu}, generator CPU {:.0} us/forward, hub peak RSS {rss}\n  \
             payment latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n  \
             {store}; {} metrics scrapes",
            self.amount_msat,
            self.forwards,
            self.seconds,
            self.per_s(),
            self.overall_per_s,
            self.failed,
            self.us_per_forward(self.gen_cpu_s),
            self.ms(0.50),
            self.ms(0.90),
            self.ms(0.99),
            self.ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
            self.scrapes,
        )
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Prints a progress line (standard error, rewritten in place).
fn progress(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{line:<78}");
    let _ = err.flush();
}

/// Keys and node ids of size number `round`'s nodes.
fn node_keys(plan: &Plan, round: usize) -> (Vec<SecretKey>, Vec<secp256k1::PublicKey>) {
    let secp = secp256k1::Secp256k1::signing_only();
    let keys: Vec<SecretKey> = (0..2 * plan.pairs)
        .map(|i| node::key_for(plan.seed, round, i, plan.shards))
        .collect();
    let ids = keys
        .iter()
        .map(|k| secp256k1::PublicKey::from_secret_key(&secp, k))
        .collect();
    (keys, ids)
}

/// Runs payment size number `round` on a fresh hub, or on the one attached to.
fn run_size(plan: &Plan, round: usize, amount_msat: u64) -> Result<Outcome, String> {
    let nodes = 2 * plan.pairs;
    let (keys, ids) = node_keys(plan, round);
    let hub = match &plan.attach {
        Some(_) => None,
        None => Some(Hub::start(
            &plan.hub,
            &amount_msat.to_string(),
            &ids,
            &plan.hub_args,
            plan.pin,
        )?),
    };
    let (hub_id, hub_addr, pid, height) = match (&hub, &plan.attach) {
        (Some(h), _) => (h.node_id, h.addr, Some(h.pid()), 0),
        (None, Some(a)) => (a.node_id, a.addr, a.pid, a.height),
        (None, None) => unreachable!("a hub is started unless one is attached to"),
    };
    let attached_metrics = plan.attach.as_ref().and_then(|a| a.metrics);
    let shared = Arc::new(Shared::new(nodes));
    // With metrics on, they are scraped every second throughout, so their cost shows.
    let scraping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = hub.as_ref().and_then(|h| h.metrics).map(|addr| {
        let stop = scraping.clone();
        std::thread::spawn(move || hub::scrape_until(addr, Duration::from_secs(1), &stop))
    });
    let configs: Vec<NodeConfig> = keys
        .into_iter()
        .enumerate()
        .map(|(index, secret)| NodeConfig {
            index,
            secret,
            hub_id,
            hub_addr,
            funding_sat: FUNDING_SAT,
            in_flight: plan.in_flight,
            rate: plan.rate.map(|r| r / nodes as f64),
            amount_msat,
            partner: ids[index ^ 1],
            height,
        })
        .collect();
    let label = format!("{amount_msat} msat");
    progress(&format!("[{label}] opening {nodes} channels"));
    let (payers, mut errors) = establish_all(configs, &shared);
    let failed_start = !errors.is_empty();
    // The payment phase: `gen_threads` event loops share the nodes.
    let mut groups: Vec<Vec<Payer>> = (0..plan.gen_threads.min(nodes))
        .map(|_| Vec::new())
        .collect();
    if !failed_start {
        for (i, p) in payers.into_iter().enumerate() {
            let g = i % groups.len();
            groups[g].push(p);
        }
    }
    let workers: Vec<_> = groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .enumerate()
        .map(|(w, group)| {
            std::thread::Builder::new()
                .name(format!("payers-{w}"))
                .spawn(move || node::pay::drive(group))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("generator thread: {e}"))?;
    let hub_cpu = |pid: Option<u32>| pid.map(hub::cpu_seconds);
    let commits = || attached_metrics.and_then(|m| hub::metric(m, "lnhub_store_commits_total"));
    let me = std::process::id();
    let mut window = None;
    let mut overall_per_s = 0.0;
    if !failed_start {
        let start = Instant::now();
        while start.elapsed() < plan.warmup && !shared.exit.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let done = shared.settled.load(Ordering::Relaxed);
            progress(&format!(
                "[{label}] warm-up {:.0}/{:.0} s, {done} settled",
                start.elapsed().as_secs_f64(),
                plan.warmup.as_secs_f64()
            ));
        }
        shared.measuring.store(true, Ordering::SeqCst);
        let begin = (
            Instant::now(),
            hub_cpu(pid),
            hub::cpu_seconds(me),
            shared.settled.load(Ordering::SeqCst),
            shared.failed.load(Ordering::SeqCst),
            commits(),
        );
        while begin.0.elapsed() < plan.duration && !shared.exit.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let t = begin.0.elapsed().as_secs_f64();
            let done = shared.settled.load(Ordering::Relaxed) - begin.3;
            progress(&format!(
                "[{label}] {t:.0}/{:.0} s, {done} forwards, {:.0}/s",
                plan.duration.as_secs_f64(),
                done as f64 / t.max(1e-3)
            ));
        }
        let end = (
            Instant::now(),
            hub_cpu(pid),
            hub::cpu_seconds(me),
            shared.settled.load(Ordering::SeqCst),
            shared.failed.load(Ordering::SeqCst),
            commits(),
        );
        overall_per_s = end.3 as f64 / (end.0 - start).as_secs_f64();
        window = Some((begin, end));
    }
    // Drain: no new payment; everything in flight resolves; then the nodes leave.
    shared.stop.store(true, Ordering::SeqCst);
    let drain = Instant::now();
    while shared.outstanding.load(Ordering::SeqCst) > 0 && drain.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let unresolved = shared.outstanding.load(Ordering::SeqCst);
    shared.exit.store(true, Ordering::SeqCst);
    let mut reports: Vec<NodeReport> = Vec::new();
    for t in workers {
        match t.join() {
            Ok((r, e)) => {
                reports.extend(r);
                errors.extend(e);
            }
            Err(_) => errors.push("a generator thread panicked".into()),
        }
    }
    scraping.store(true, Ordering::SeqCst);
    let scrapes = scraper.map_or(0, |t| t.join().unwrap_or(0));
    let hub_rss_kib = pid.map(hub::peak_rss_kib);
    let (store, log_tail) = match hub {
        Some(hub) => {
            let (store, tail) = hub.stop();
            (Some(store), tail)
        }
        None => (None, String::new()),
    };
    progress("");
    let _ = writeln!(std::io::stderr());
    if let Some(e) = errors.into_iter().next() {
        return Err(if log_tail.is_empty() {
            e
        } else {
            format!("{e}\nlnhubd's last log lines:\n{log_tail}")
        });
    }
    if unresolved > 0 {
        return Err(format!(
            "{unresolved} payment(s) still unresolved a minute after the run"
        ));
    }
    let (begin, end) = window.ok_or("no node started")?;
    let mut latency_us = Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut failures = BTreeMap::new();
    let (mut bad_preimages, mut unknown_payments) = (0, 0);
    for r in &reports {
        latency_us.add(&r.latency_us).map_err(|e| e.to_string())?;
        for (code, n) in &r.failures {
            *failures.entry(*code).or_default() += n;
        }
        bad_preimages += r.bad_preimages;
        unknown_payments += r.unknown_payments;
    }
    Ok(Outcome {
        amount_msat,
        forwards: end.3 - begin.3,
        failed: end.4 - begin.4,
        seconds: (end.0 - begin.0).as_secs_f64(),
        overall_per_s,
        hub_cpu_s: end.1.zip(begin.1).map(|(e, b)| e - b),
        gen_cpu_s: end.2 - begin.2,
        latency_us,
        failures,
        bad_preimages,
        unknown_payments,
        hub_rss_kib,
        // Attached: the window's commits, from the hub's metrics (shard batches are not
        // exported); started: the whole run's, from its exit line.
        store: store.or_else(|| {
            end.5.zip(begin.5).map(|(e, b)| hub::StoreFigures {
                commits: (e - b).max(0.0) as u64,
                batches: None,
            })
        }),
        scrapes,
    })
}

/// Connects every node and opens its channel: blocking work, and the hub admits only a few
/// handshakes from one address at a time, so a few threads take the nodes in turn. Returns
/// the nodes ready to pay and the errors of those that are not.
fn establish_all(configs: Vec<NodeConfig>, shared: &Arc<Shared>) -> (Vec<Payer>, Vec<String>) {
    const THREADS: usize = 16;
    let threads = configs.len().clamp(1, THREADS);
    let mut shares: Vec<Vec<NodeConfig>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, config) in configs.into_iter().enumerate() {
        shares[i % threads].push(config);
    }
    let results: Vec<Result<node::Established, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|config| node::establish(config, shared.clone()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("a node thread panicked".into())])
            })
            .collect()
    });
    let (mut payers, mut errors) = (Vec::new(), Vec::new());
    let mut established = Vec::new();
    for r in results {
        match r {
            Ok(e) => established.push(e),
            Err(e) => errors.push(e),
        }
    }
    // Only once every node has its channel are the partners' aliases all known.
    for e in established {
        match Payer::new(e) {
            Ok(p) => payers.push(p),
            Err(e) => errors.push(e),
        }
    }
    (payers, errors)
}

/// Pins this thread to the second core (the hub gets the first, `taskset -c 0`); the node
/// threads it spawns inherit the mask.
fn pin_generator() {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.len() < 2 {
        eprintln!("lnhub-loadgen: one core only: --pin ignored");
        return;
    }
    core_affinity::set_for_current(cores[1]);
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("lnhub-loadgen: {}", first.trim_start_matches("error: "));
            return ExitCode::FAILURE;
        }
    };
    let plan = match Plan::from(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("lnhub-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if plan.print_trusted {
        let flags: Vec<String> = (0..plan.sizes.len())
            .flat_map(|round| node_keys(&plan, round).1)
            .map(|id| format!("--trusted-peer {id}"))
            .collect();
        println!("{}", flags.join(" "));
        return ExitCode::SUCCESS;
    }
    if plan.pin {
        pin_generator();
    }
    let load = match plan.rate {
        Some(rate) => format!("{rate:.0} payments/s offered (open loop)"),
        None => format!("{} payments in flight per node", plan.in_flight),
    };
    eprintln!(
        "lnhub-loadgen: {} pair(s) of nodes over {} shard(s), {load}, {:.0} s warm-up, {:.0} s \
         measured per size, hub {}{}",
        plan.pairs,
        plan.shards,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64(),
        match &plan.attach {
            Some(a) => format!("{}@{} (attached)", a.node_id, a.addr),
            None => plan.hub.display().to_string(),
        },
        if plan.pin { ", pinned" } else { "" }
    );
    let mut status = ExitCode::SUCCESS;
    for (round, &size) in plan.sizes.iter().enumerate() {
        match run_size(&plan, round, size) {
            Ok(outcome) => {
                let human = outcome.human();
                if plan.json {
                    eprintln!("{human}");
                    println!("{}", outcome.json(&plan));
                } else {
                    println!("{human}");
                }
                if outcome.bad_preimages > 0 || outcome.unknown_payments > 0 {
                    eprintln!(
                        "lnhub-loadgen: {} wrong preimage(s), {} unknown payment(s)",
                        outcome.bad_preimages, outcome.unknown_payments
                    );
                    status = ExitCode::FAILURE;
                }
                if outcome.forwards == 0 {
                    eprintln!("lnhub-loadgen: no payment settled at {size} msat");
                    status = ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("lnhub-loadgen: {size} msat: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
