//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then its samples, label values escaped, histograms as cumulative `_bucket` series
//! with `le`, then `_sum` and `_count`.

use std::fmt::Write;

use crate::catalogue::{Kind, Metric};
use crate::histogram::Histogram;

/// The content type of the format, for the HTTP answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A scrape being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// One family being written: its samples follow its header, contiguously (the format
/// requires it), which the borrow on the [`Exposition`] guarantees.
pub struct Family<'a> {
    out: &'a mut String,
    metric: &'static Metric,
}

impl Exposition {
    /// An empty scrape.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts `metric`'s family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, metric: &'static Metric) -> Family<'_> {
        let _ = writeln!(self.out, "# HELP {} {}", metric.name, metric.help);
        let _ = writeln!(self.out, "# TYPE {} {}", metric.name, metric.type_name());
        Family {
            out: &mut self.out,
            metric,
        }
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, metric: &'static Metric, value: f64) {
        self.family(metric).sample(&[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    /// One counter or gauge sample with these label values (in the metric's label order).
    pub fn sample(&mut self, values: &[&str], value: f64) {
        debug_assert!(!matches!(self.metric.kind, Kind::Histogram(_)));
        debug_assert_eq!(
            values.len(),
            self.metric.labels.len(),
            "{}",
            self.metric.name
        );
        self.out.push_str(self.metric.name);
        write_labels(self.out, self.metric.labels, values, None);
        self.out.push(' ');
        write_value(self.out, value);
        self.out.push('\n');
    }

    /// One histogram's series with these label values.
    pub fn histogram(&mut self, values: &[&str], h: &Histogram) {
        let Kind::Histogram(layout) = self.metric.kind else {
            debug_assert!(false, "{} is not a histogram", self.metric.name);
            return;
        };
        debug_assert_eq!(layout, h.layout(), "{}", self.metric.name);
        debug_assert_eq!(
            values.len(),
            self.metric.labels.len(),
            "{}",
            self.metric.name
        );
        let name = self.metric.name;
        for (bound, count) in h.cumulative() {
            let _ = write!(self.out, "{name}_bucket");
            let mut le = String::new();
            write_value(&mut le, bound);
            write_labels(self.out, self.metric.labels, values, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(self.out, self.metric.labels, values, None);
        self.out.push(' ');
        write_value(self.out, h.sum() as f64 * layout.scale);
        self.out.push('\n');
        let _ = write!(self.out, "{name}_count");
        write_labels(self.out, self.metric.labels, values, None);
        let _ = writeln!(self.out, " {}", h.count());
    }
}

fn write_labels(out: &mut String, names: &[&str], values: &[&str], le: Option<&str>) {
    if names.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let pairs = names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, *v))
        .chain(le.map(|le| ("le", le)));
    for (name, value) in pairs {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Integers as integers, `+Inf`, `-Inf`, `NaN` as the format spells them.
fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}
