//! The Grafana dashboard (`ops/grafana/lnhub.json`) asks only for what lnhubd exports: every
//! metric an expression names is in the catalogue (histogram series only on histograms),
//! every label it matches or groups by is one the metric has, and the dashboard covers
//! throughput, latency, failures, liquidity, shards and LMDB.

use std::collections::BTreeSet;

use lnhub_metrics::catalogue::{Metric, ALL};
use lnhub_metrics::Kind;

fn dashboard() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../grafana/lnhub.json");
    let text = std::fs::read_to_string(path).expect("ops/grafana/lnhub.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn expressions(d: &serde_json::Value) -> Vec<String> {
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect()
}

/// The catalogue metric a series name belongs to (`_bucket`, `_sum`, `_count` of a histogram).
fn metric_of(series: &str) -> Option<&'static Metric> {
    if let Some(m) = ALL.iter().find(|m| m.name == series) {
        return Some(m);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        ALL.iter()
            .find(|m| m.name == base && matches!(m.kind, Kind::Histogram(_)))
            .copied()
    })
}

/// Every `lnhub_...` identifier in `expr`, with the label matchers of its `{...}` if any.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("lnhub_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = Vec::new();
        if tail[end..].starts_with('{') {
            let close = tail[end..].find('}').expect("closed selector");
            for matcher in tail[end + 1..end + close].split(',') {
                let label: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !label.is_empty() {
                    labels.push(label);
                }
            }
        }
        out.push((name, labels));
        rest = &tail[end..];
    }
    out
}

/// The labels of every `by (...)` in `expr`.
fn grouped_by(expr: &str) -> Vec<String> {
    expr.match_indices("by (")
        .flat_map(|(i, _)| {
            let inner = &expr[i + 4..];
            let close = inner.find(')').expect("closed by");
            inner[..close]
                .split(',')
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_expression_names_exported_metrics_and_their_labels() {
    let d = dashboard();
    let exprs = expressions(&d);
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    for expr in &exprs {
        let sel = selectors(expr);
        assert!(!sel.is_empty(), "no lnhub metric in {expr:?}");
        let mut allowed: BTreeSet<&str> = BTreeSet::new();
        for (series, labels) in &sel {
            let m = metric_of(series)
                .unwrap_or_else(|| panic!("{series} in {expr:?} is not exported by lnhubd"));
            for l in labels {
                assert!(
                    m.labels.contains(&l.as_str()) || (l == "le" && series.ends_with("_bucket")),
                    "{series} has no label {l} ({expr:?})"
                );
            }
            allowed.extend(m.labels.iter().copied());
            if series.ends_with("_bucket") {
                allowed.insert("le");
            }
        }
        for l in grouped_by(expr) {
            assert!(allowed.contains(l.as_str()), "grouping by {l} in {expr:?}");
        }
    }
}

#[test]
fn the_dashboard_covers_what_an_operator_watches() {
    let exprs = expressions(&dashboard()).join("\n");
    for needed in [
        "lnhub_forwards_total",          // throughput, failures by code
        "lnhub_forward_add_seconds",     // latency
        "lnhub_forward_resolve_seconds", // latency
        "lnhub_forward_fees_msat_total",
        "lnhub_channel_local_balance_msat", // liquidity
        "lnhub_htlcs_in_flight",
        "lnhub_shard_queue_depth", // queues and turns
        "lnhub_shard_turn_seconds",
        "lnhub_store_commit_seconds", // LMDB
        "lnhub_store_commits_total",
        "lnhub_peers_connected",
    ] {
        assert!(exprs.contains(needed), "the dashboard shows no {needed}");
    }
}

#[test]
fn the_selector_reader_reads_selectors() {
    assert_eq!(
        selectors("sum by (le) (rate(lnhub_a_bucket{x=\"1\", y!~\"2\"}[1m])) / lnhub_b"),
        vec![
            ("lnhub_a_bucket".to_string(), vec!["x".into(), "y".into()]),
            ("lnhub_b".to_string(), vec![])
        ]
    );
    assert_eq!(grouped_by("sum by (le, shard) (x)"), vec!["le", "shard"]);
}
