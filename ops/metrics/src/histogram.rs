//! Fixed-bucket histograms kept in plain integers: observing is a short scan and two
//! additions, with no allocation and nothing shared, so a shard can observe on its hot path
//! and hand a copy over when asked. Histograms of the same layout merge by adding.

/// Most buckets a layout has (the `+Inf` bucket not counted).
pub const MAX_BUCKETS: usize = 16;

/// Where a histogram's buckets end, in the integer unit it observes, and how that unit turns
/// into the metric's base unit (nanoseconds to seconds: `1e-9`).
#[derive(Debug, PartialEq)]
pub struct Layout {
    /// Upper bounds (inclusive), ascending, at most [`MAX_BUCKETS`].
    pub bounds: &'static [u64],
    /// Multiplier from the observed unit to the exposed one.
    pub scale: f64,
}

// The scale is a finite constant, never NaN: equality is total.
impl Eq for Layout {}

/// Latencies from 100 us to 10 s, observed in nanoseconds, exposed in seconds.
pub const LATENCY: Layout = Layout {
    bounds: &[
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
    ],
    scale: 1e-9,
};

/// Short durations (a shard turn, an LMDB commit), 10 us to 1 s, in nanoseconds, exposed in
/// seconds.
pub const DURATION: Layout = Layout {
    bounds: &[
        10_000,
        25_000,
        50_000,
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        1_000_000_000,
    ],
    scale: 1e-9,
};

/// Counts (inputs per turn, onions per peel batch, records per commit): powers of two to
/// 4,096.
pub const COUNT: Layout = Layout {
    bounds: &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    scale: 1.0,
};

/// Sizes in bytes, 256 B to 16 MiB.
pub const BYTES: Layout = Layout {
    bounds: &[
        256, 1024, 4096, 16384, 65536, 262_144, 1_048_576, 4_194_304, 16_777_216,
    ],
    scale: 1.0,
};

/// A histogram over a fixed [`Layout`]: per-bucket counts (not cumulative), the number of
/// observations and their sum, in the observed unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    layout: &'static Layout,
    counts: [u64; MAX_BUCKETS],
    count: u64,
    sum: u64,
}

impl Histogram {
    /// An empty histogram over `layout`.
    pub const fn new(layout: &'static Layout) -> Histogram {
        assert!(layout.bounds.len() <= MAX_BUCKETS);
        Histogram {
            layout,
            counts: [0; MAX_BUCKETS],
            count: 0,
            sum: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, value: u64) {
        let bounds = self.layout.bounds;
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds `other`'s observations (the same layout; a different one is ignored, which only a
    /// programming error can cause).
    pub fn merge(&mut self, other: &Histogram) {
        debug_assert!(std::ptr::eq(self.layout, other.layout) || self.layout == other.layout);
        if self.layout != other.layout {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// The layout.
    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum, in the observed unit.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Cumulative counts per bucket bound, in the exposed unit, ending with `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let scale = self.layout.scale;
        let mut acc = 0;
        self.layout
            .bounds
            .iter()
            .zip(self.counts)
            .map(move |(b, c)| {
                acc += c;
                (*b as f64 * scale, acc)
            })
            .chain(std::iter::once((f64::INFINITY, self.count)))
    }

    /// The value below which `q` (0..=1) of the observations fall, as the upper bound of the
    /// bucket that holds it, in the exposed unit (`None` when empty; `+Inf` past the last
    /// bound).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative().find(|(_, c)| *c >= rank).map(|(b, _)| b)
    }
}
