use crate::catalogue::{self, ALL};
use crate::histogram::{COUNT, LATENCY};
use crate::labels;
use crate::{Exposition, Histogram, Kind};

#[test]
fn names_follow_prometheus_practice() {
    let mut seen = std::collections::HashSet::new();
    for m in ALL {
        assert!(m.name.starts_with("lnhub_"), "{}", m.name);
        assert!(seen.insert(m.name), "{} twice", m.name);
        assert!(
            m.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            m.name
        );
        // `_total` on counters and only on counters.
        assert_eq!(
            m.name.ends_with("_total"),
            m.kind == Kind::Counter,
            "{}",
            m.name
        );
        assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
        for l in m.labels {
            assert_ne!(*l, "le", "{}", m.name);
        }
    }
}

#[test]
fn histogram_buckets_are_cumulative_and_end_in_inf() {
    let mut h = Histogram::new(&LATENCY);
    for ns in [50_000, 100_000, 100_001, 3_000_000, 20_000_000_000] {
        h.observe(ns);
    }
    let buckets: Vec<(f64, u64)> = h.cumulative().collect();
    assert_eq!(buckets.len(), LATENCY.bounds.len() + 1);
    assert_eq!(
        buckets[0],
        (0.0001, 2),
        "50 us and 100 us (bounds are inclusive)"
    );
    assert_eq!(buckets[1], (0.00025, 3));
    assert_eq!(buckets[4].1, 3, "2.5 ms");
    assert_eq!(buckets[5].1, 4, "5 ms holds 3 ms");
    assert_eq!(buckets[15].1, 4, "10 s");
    assert_eq!(buckets[16], (f64::INFINITY, 5), "20 s only in +Inf");
    assert_eq!(h.count(), 5);
    assert_eq!(h.sum(), 20_003_250_001);
    assert_eq!(h.quantile(0.5), Some(0.00025));
    assert_eq!(h.quantile(1.0), Some(f64::INFINITY));

    let mut merged = Histogram::new(&LATENCY);
    merged.merge(&h);
    merged.merge(&h);
    assert_eq!(merged.count(), 10);
    assert_eq!(merged.cumulative().nth(1), Some((0.00025, 6)));
    assert_eq!(Histogram::new(&COUNT).quantile(0.5), None);
}

#[test]
fn exposition_writes_families_samples_and_histograms() {
    let mut e = Exposition::new();
    let mut f = e.family(&catalogue::FORWARDS);
    f.sample(&["settled", ""], 3.0);
    f.sample(&["local_failed", "fee_insufficient"], 1.0);
    e.single(&catalogue::FEES, 1234.0);
    let mut h = Histogram::new(&COUNT);
    h.observe(3);
    h.observe(300);
    e.family(&catalogue::SHARD_TURN_INPUTS)
        .histogram(&["0"], &h);
    let text = e.finish();
    let expected_start = "\
# HELP lnhub_forwards_total Incoming HTLCs resolved: settled, failed downstream, or local_failed by the hub with a BOLT 4 code
# TYPE lnhub_forwards_total counter
lnhub_forwards_total{outcome=\"settled\",code=\"\"} 3
lnhub_forwards_total{outcome=\"local_failed\",code=\"fee_insufficient\"} 1
# HELP lnhub_forward_fees_msat_total Fees earned by settled forwards (incoming minus outgoing amount), msat
# TYPE lnhub_forward_fees_msat_total counter
lnhub_forward_fees_msat_total 1234
# HELP lnhub_shard_turn_inputs Inputs taken by one shard turn
# TYPE lnhub_shard_turn_inputs histogram
lnhub_shard_turn_inputs_bucket{shard=\"0\",le=\"1\"} 0
lnhub_shard_turn_inputs_bucket{shard=\"0\",le=\"2\"} 0
lnhub_shard_turn_inputs_bucket{shard=\"0\",le=\"4\"} 1
";
    assert!(text.starts_with(expected_start), "{text}");
    assert!(text.contains("lnhub_shard_turn_inputs_bucket{shard=\"0\",le=\"256\"} 1\n"));
    assert!(text.contains("lnhub_shard_turn_inputs_bucket{shard=\"0\",le=\"512\"} 2\n"));
    assert!(text.contains("lnhub_shard_turn_inputs_bucket{shard=\"0\",le=\"+Inf\"} 2\n"));
    assert!(text.ends_with(
        "lnhub_shard_turn_inputs_sum{shard=\"0\"} 303\nlnhub_shard_turn_inputs_count{shard=\"0\"} 2\n"
    ));
}

#[test]
fn label_values_are_escaped_and_seconds_are_fractional() {
    let mut e = Exposition::new();
    e.family(&catalogue::BUILD_INFO)
        .sample(&["a\"b\\c\nd"], 1.0);
    let mut h = Histogram::new(&LATENCY);
    h.observe(1_500_000);
    e.family(&catalogue::FORWARD_ADD_SECONDS).histogram(&[], &h);
    let text = e.finish();
    assert!(
        text.contains("lnhub_build_info{version=\"a\\\"b\\\\c\\nd\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("lnhub_forward_add_seconds_bucket{le=\"0.0025\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("lnhub_forward_add_seconds_sum 0.0015\n"),
        "{text}"
    );
}

#[test]
fn label_sets_are_bounded() {
    assert_eq!(labels::failure_code(Some(0x100C)), "fee_insufficient");
    assert_eq!(labels::failure_code(Some(0xBEEF)), "unknown");
    assert_eq!(labels::failure_code(None), "unknown");
    assert_eq!(
        labels::failure_index_label(labels::failure_index(0x400A)),
        "unknown_next_peer"
    );
    assert_eq!(labels::failure_index(0x7777), labels::FAILURE_SLOTS - 1);
    for t in 0..=u16::MAX {
        assert!(labels::message_index(t) < labels::MESSAGE_SLOTS);
    }
    assert_eq!(
        labels::message_label(labels::message_index(128)),
        "update_add_htlc"
    );
    assert_eq!(labels::message_label(labels::message_index(9999)), "other");
}
