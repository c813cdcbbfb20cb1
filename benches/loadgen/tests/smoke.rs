//! A smoke-size run of `lnhub-loadgen` against this build's `lnhubd`, both payment sizes, so
//! the generator never rots: it must exit 0 (every preimage checked, payments settled) and
//! print one JSON object per size with the fields the README documents.

use std::path::PathBuf;
use std::process::Command;

fn lnhubd() -> PathBuf {
    let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_lnhub-loadgen"));
    let path = loadgen.with_file_name("lnhubd");
    assert!(
        path.exists(),
        "{} not found: run the workspace tests (`cargo test --workspace`), which build it, or \
         `cargo build -p lnhubd` first",
        path.display()
    );
    path
}

/// Runs the generator with `args` and a smoke-size load (1 pair, 10 in flight, 2 s per size,
/// `--json`); it must succeed. Returns its rows, one per size.
fn smoke_run(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_lnhub-loadgen"))
        .args(["--pairs", "1", "--in-flight", "10", "--warmup", "0.5"])
        .args(["--duration", "2", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    rows
}

#[test]
fn a_smoke_run_settles_payments_of_both_sizes() {
    let rows = smoke_run(&["--hub", lnhubd().to_str().unwrap()]);
    for (row, amount) in rows.iter().zip([1_000u64, 10_000_000]) {
        assert_eq!(row["amount_msat"], amount);
        assert!(row["forwards"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["failed"], 0, "{row}");
        assert_eq!(row["durable"], true);
        for field in [
            "forwards_per_s",
            "overall_forwards_per_s",
            "hub_cpu_us_per_forward",
            "gen_cpu_us_per_forward",
            "p50_ms",
            "p99_ms",
        ] {
            assert!(row[field].as_f64().unwrap() > 0.0, "{field}: {row}");
        }
        assert!(row["lmdb_commits"].as_u64().unwrap() > 0, "{row}");
    }
}

#[test]
fn bad_flags_are_one_line_and_status_1() {
    for args in [&["--pairs", "0"][..], &["--in-flight", "999"], &["--bogus"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_lnhub-loadgen"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

/// A hub started by hand, the way `--attach` expects: trusting the ids `--print-trusted`
/// printed, with a fee policy other than the one the generator writes for the hubs it starts
/// (so a payment that settles proves the generator paid what the hub's `channel_update` said).
struct HandStarted {
    child: std::process::Child,
    dir: PathBuf,
    node_id: String,
    listen: String,
    metrics: String,
}

impl HandStarted {
    fn start(trusted: &[&str]) -> HandStarted {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("lnhub-loadgen-attach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("lnhub.toml"),
            "fee_base_msat = 2500\nfee_proportional_millionths = 300\ncltv_expiry_delta = 100\n",
        )
        .unwrap();
        let mut child = Command::new(lnhubd())
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"])
            .args(["--metrics", "127.0.0.1:0", "--shards", "2"])
            .args(trusted)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut node_id, mut listen, mut metrics) = (None, None, None);
        while node_id.is_none() || listen.is_none() || metrics.is_none() {
            let line = lines.next().expect("lnhubd prints its addresses").unwrap();
            let value = |prefix: &str| line.strip_prefix(prefix).map(String::from);
            node_id = node_id.or(value("node_id="));
            listen = listen.or(value("listen="));
            metrics = metrics.or(value("metrics="));
        }
        std::thread::spawn(move || lines.for_each(drop));
        HandStarted {
            child,
            dir,
            node_id: node_id.unwrap(),
            listen: listen.unwrap(),
            metrics: metrics.unwrap(),
        }
    }
}

impl Drop for HandStarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn attached_to_a_running_hub_it_pays_the_hubs_own_policy_and_measures_it() {
    let loadgen = env!("CARGO_BIN_EXE_lnhub-loadgen");
    // The smoke run's one pair (`smoke_run`), and the keys' seed and spread.
    let run = ["--seed", "7", "--hub-shards", "2"];
    let out = Command::new(loadgen)
        .args(["--pairs", "1"])
        .args(run)
        .arg("--print-trusted")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let flags: Vec<&str> = printed.split_whitespace().collect();
    // Two nodes for each of the two sizes.
    assert_eq!(flags.len(), 8, "{printed}");
    assert!(flags
        .chunks(2)
        .all(|f| f[0] == "--trusted-peer" && f[1].len() == 66));
    let mut hub = HandStarted::start(&flags);
    let target = format!("{}@{}", hub.node_id, hub.listen);
    let pid = hub.child.id().to_string();
    let mut args = vec![
        "--attach",
        &target,
        "--hub-pid",
        &pid,
        "--hub-metrics",
        &hub.metrics,
    ];
    args.extend(run);
    let rows = smoke_run(&args);
    for row in &rows {
        assert_eq!(row["attached"], true);
        assert!(row["forwards"].as_u64().unwrap() > 0, "{row}");
        // A fee or expiry below the hub's policy would fail every payment.
        assert_eq!(row["failed"], 0, "{row}");
        assert!(
            row["hub_cpu_us_per_forward"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        assert!(row["lmdb_commits"].as_u64().unwrap() > 0, "{row}");
        assert!(row["shard_batches_per_commit"].is_null(), "{row}");
    }
    // The hub was loaded, not stopped.
    assert!(hub.child.try_wait().unwrap().is_none());
}
