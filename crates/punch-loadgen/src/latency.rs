//! A latency histogram with one-microsecond buckets: bounded memory however long the run,
//! exact percentiles up to [`Histogram::LIMIT_US`], and the true maximum above it.

/// Latencies in whole microseconds.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    /// Latencies at or above this many microseconds share the last bucket (the maximum is
    /// still kept exactly).
    pub const LIMIT_US: u64 = 1_000_000;

    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; Self::LIMIT_US as usize + 1],
            total: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, us: u64) {
        self.counts[us.min(Self::LIMIT_US) as usize] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// The `q` quantile (0..=1) in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (us, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // The last bucket holds everything from the limit up: its top is the max.
                return if us as u64 == Self::LIMIT_US {
                    self.max
                } else {
                    (us as u64).min(self.max)
                };
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::new();
        for us in 1..=100 {
            h.record(us);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(1.0), 100);
        h.record(5_000_000);
        assert_eq!(h.max(), 5_000_000);
        assert_eq!(h.quantile(1.0), 5_000_000);
        assert_eq!(h.total, 101);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Histogram::new().quantile(0.99), 0);
    }
}
