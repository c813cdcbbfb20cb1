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

#[test]
fn a_smoke_run_settles_payments_of_both_sizes() {
    let out = Command::new(env!("CARGO_BIN_EXE_lnhub-loadgen"))
        .args([
            "--pairs",
            "1",
            "--in-flight",
            "10",
            "--warmup",
            "0.5",
            "--duration",
            "2",
        ])
        .arg("--hub")
        .arg(lnhubd())
        .arg("--json")
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
