//! Latency percentiles.
//!
//! Exact percentiles from a sorted `Vec` of every measured frame's latency: a run of a few seconds
//! at a few hundred calls holds a few hundred thousand values (4 bytes each), sorting them takes
//! milliseconds after the run, and nothing is binned, so p99.9 and max are the real ones. A
//! histogram crate (hdrhistogram) would only pay off for runs of hours.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of per-frame relay latency, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Frames measured.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises latencies in nanoseconds (sorted here).
    #[must_use]
    pub fn from_nanos(mut nanos: Vec<u32>) -> Self {
        if nanos.is_empty() {
            return Self::default();
        }
        nanos.sort_unstable();
        let us = |n: u32| f64::from(n) / 1000.0;
        Self {
            count: nanos.len(),
            p50_us: us(percentile(&nanos, 0.50)),
            p99_us: us(percentile(&nanos, 0.99)),
            p999_us: us(percentile(&nanos, 0.999)),
            max_us: us(nanos[nanos.len() - 1]),
        }
    }

    /// The 99th percentile as a duration.
    #[must_use]
    pub fn p99(&self) -> Duration {
        Duration::from_secs_f64(self.p99_us / 1e6)
    }
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds in a `u32`, saturating at about 4.3 s (a frame that late is lost for any call).
#[must_use]
pub(crate) fn nanos_u32(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u32> = (1..=1000).rev().map(|v| v * 1000).collect();
        let s = LatencySummary::from_nanos(values);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < f64::EPSILON);
        assert!((s.p99_us - 990.0).abs() < f64::EPSILON);
        assert!((s.p999_us - 999.0).abs() < f64::EPSILON);
        assert!((s.max_us - 1000.0).abs() < f64::EPSILON);
        assert_eq!(LatencySummary::from_nanos(Vec::new()).count, 0);
    }
}
