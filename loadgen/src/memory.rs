//! The relay's resident memory per active call, and whether it grows over a long run.
//!
//! Per call: (RSS with N calls in steady traffic - RSS before any call) / N, for increasing N
//! (increasing, because an allocator keeps freed memory: a smaller N after a larger one would
//! read high). Soak: one fixed N for a long window, RSS sampled every few seconds; growth is the
//! last sample minus the first, both after the warm-up.

use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;
use crate::procfs::{Pid, Sample};
use crate::run::{RunConfig, RunReport, Timing, run};

/// RSS at one number of calls.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryPoint {
    /// Active calls.
    pub calls: usize,
    /// The relay's RSS at the end of the measured window, KiB.
    pub rss_kib: u64,
    /// (rss - idle) / calls, KiB.
    pub kib_per_call: f64,
    /// The run itself (latency and loss, to show the calls were really active).
    pub run: RunReport,
}

/// RSS per call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryReport {
    /// The relay's RSS before these calls, KiB.
    pub idle_rss_kib: u64,
    /// One point per N.
    pub points: Vec<MemoryPoint>,
}

impl MemoryReport {
    /// The per-call figure at the largest N: fixed costs (thread arenas, first allocations) are
    /// spread over the most calls there, so it is the steady-state figure to hold against a goal.
    #[must_use]
    pub fn steady_kib_per_call(&self) -> f64 {
        self.points
            .iter()
            .max_by_key(|p| p.calls)
            .map_or(0.0, |p| p.kib_per_call)
    }
}

/// Measures RSS per call at each N of `calls` (sorted ascending here). Needs `base.server_pid`.
pub async fn per_call(base: &RunConfig, calls: &[usize]) -> Result<MemoryReport, LoadError> {
    let pid = base
        .server_pid
        .ok_or(LoadError::Unexpected("memory needs the relay's pid".into()))?;
    let idle = Sample::take(Pid::Of(pid))?.rss_kib;
    let mut sorted = calls.to_vec();
    sorted.sort_unstable();
    let mut points = Vec::new();
    for n in sorted.into_iter().filter(|&n| n > 0) {
        let report = run(&RunConfig {
            calls: n,
            ..base.clone()
        })
        .await?;
        let rss = report.server.map_or(0, |s| s.rss_kib);
        let kib_per_call = rss.saturating_sub(idle) as f64 / n as f64;
        points.push(MemoryPoint {
            calls: n,
            rss_kib: rss,
            kib_per_call,
            run: report,
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(MemoryReport {
        idle_rss_kib: idle,
        points,
    })
}

/// A long run at a fixed N.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SoakReport {
    /// Active calls.
    pub calls: usize,
    /// The first RSS sample after the warm-up, KiB.
    pub first_rss_kib: u64,
    /// The last, KiB.
    pub last_rss_kib: u64,
    /// last - first, KiB (negative: it shrank).
    pub growth_kib: i64,
    /// The run, with every RSS sample.
    pub run: RunReport,
}

/// Runs `base.calls` calls for `base.timing`, sampling RSS every `every`. Needs `base.server_pid`.
pub async fn soak(base: &RunConfig, every: Duration) -> Result<SoakReport, LoadError> {
    if base.server_pid.is_none() {
        return Err(LoadError::Unexpected("a soak needs the relay's pid".into()));
    }
    let report = run(&RunConfig {
        rss_every: Some(every),
        ..base.clone()
    })
    .await?;
    let first = report.rss_samples.first().map_or(0, |s| s.rss_kib);
    let last = report.rss_samples.last().map_or(0, |s| s.rss_kib);
    Ok(SoakReport {
        calls: base.calls,
        first_rss_kib: first,
        last_rss_kib: last,
        growth_kib: i64::try_from(last).unwrap_or(i64::MAX)
            - i64::try_from(first).unwrap_or(i64::MAX),
        run: report,
    })
}

/// A soak timing: `warmup` then `secs` measured.
#[must_use]
pub fn soak_timing(warmup: Duration, secs: u64) -> Timing {
    Timing {
        warmup,
        measure: Duration::from_secs(secs),
    }
}
