//! Latencies in a log-linear histogram: exact below 128 µs, then 64
//! buckets per doubling (under 1.6 % error), about 3,000 buckets up to an
//! hour. Fixed memory whatever the run's length, and histograms of several
//! connections merge by adding.

use std::time::Duration;

/// Sub-buckets per doubling, as a power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this (µs) have a bucket each.
const LINEAR: u64 = 2 * SUB;
/// Buckets: the linear ones, then `SUB` per doubling up to 2^42 µs.
const BUCKETS: usize = (LINEAR + (42 - SUB_BITS as u64 - 1) * SUB) as usize;

/// Counts of latencies, in microseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

/// The bucket of `us`.
fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let msb = 63 - us.leading_zeros(); // >= SUB_BITS + 1
    let shift = msb - SUB_BITS;
    let sub = (us >> shift) - SUB; // 0..SUB
    let i = LINEAR + u64::from(msb - SUB_BITS - 1) * SUB + sub;
    (i as usize).min(BUCKETS - 1)
}

/// The smallest value in bucket `i` (µs).
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = i - LINEAR;
    let shift = k / SUB + 1;
    (SUB + k % SUB) << shift
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.total += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency at quantile `q` (0..=1): the lower bound of the bucket
    /// holding it; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(lower_bound(i));
            }
        }
        Duration::from_micros(lower_bound(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in (0..5_000u64).chain((5_000..50_000_000).step_by(997)) {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            let lo = lower_bound(b);
            assert!(lo <= us, "{us}: bucket {b} starts at {lo}");
            assert!(
                (us - lo) as f64 <= us as f64 / SUB as f64 + 1.0,
                "{us}: {lo}"
            );
        }
        assert_eq!(lower_bound(bucket(LINEAR)), LINEAR);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.02, "{p50}");
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.02, "{p99}");
        let mut other = Histogram::default();
        other.record(Duration::from_secs(7200));
        h.merge(&other);
        assert_eq!(h.count(), 101);
        assert!(h.quantile(1.0) > Duration::from_secs(3000));
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }
}
