//! Capacity: the largest number of concurrent calls a relay carries with p99 latency within a
//! bound and no frame lost.
//!
//! Doubles N from a start value until a step fails, then bisects between the last N that held
//! and the first that did not, down to a resolution of 1/8 of the passing N (finer steps would
//! measure this machine's noise more than the relay). Every step connects fresh calls, warms up,
//! then measures; a step whose calls cannot even connect counts as a failure, and a failed step is
//! run once more before the N counts as failed (both runs are in the report).

use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;
use crate::run::{RunConfig, RunReport, run};
use crate::target::TargetKind;

/// Runs of one N before it counts as failed: on a shared machine one window's p99 near 2 ms
/// catches a scheduler hiccup as easily as a relay at its limit, and one failure ends doubling.
const ATTEMPTS: usize = 2;

/// How to search.
#[derive(Clone, Copy, Debug)]
pub struct RampConfig {
    /// The latency bound: a step passes with p99 at or below it.
    pub p99_limit: Duration,
    /// The first N tried.
    pub start: usize,
    /// The largest N tried: capacity is reported as "at least" this when it passes.
    pub max: usize,
    /// Pause between steps, so the relay has closed the previous step's sockets.
    pub pause: Duration,
}

impl Default for RampConfig {
    /// p99 <= 2 ms (BENCHMARKS.md, Goals), from 8 calls up to 4096.
    fn default() -> Self {
        Self {
            p99_limit: Duration::from_millis(2),
            start: 8,
            max: 4096,
            pause: Duration::from_secs(1),
        }
    }
}

/// The result of a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RampReport {
    /// The relay.
    pub target: TargetKind,
    /// The latency bound, milliseconds.
    pub p99_limit_ms: f64,
    /// The largest N that passed (0: none did).
    pub capacity: usize,
    /// The search stopped at its maximum N, which still passed.
    pub capacity_is_lower_bound: bool,
    /// Every step, in the order run.
    pub steps: Vec<RunReport>,
}

impl RampReport {
    /// The step that ran at `calls`, if any.
    #[must_use]
    pub fn step(&self, calls: usize) -> Option<&RunReport> {
        self.steps.iter().rev().find(|s| s.calls == calls)
    }
}

/// Searches the capacity of `base.target` (`base.calls` is ignored).
pub async fn ramp(base: &RunConfig, config: &RampConfig) -> Result<RampReport, LoadError> {
    let mut steps = Vec::new();
    let mut step = async |calls: usize| -> Result<bool, LoadError> {
        let run_config = RunConfig {
            calls,
            ..base.clone()
        };
        for _ in 0..ATTEMPTS {
            let report = run_or_failure(&run_config).await?;
            let passed = report.sustains(config.p99_limit);
            steps.push(report);
            tokio::time::sleep(config.pause).await;
            if passed {
                return Ok(true);
            }
        }
        Ok(false)
    };

    let mut passed_at = 0;
    let mut failed_at = None;
    let mut n = config.start.max(1);
    while n <= config.max {
        if step(n).await? {
            passed_at = n;
            n = n.saturating_mul(2);
        } else {
            failed_at = Some(n);
            break;
        }
    }
    if let Some(mut hi) = failed_at {
        let mut lo = passed_at;
        while hi - lo > (lo / 8).max(1) {
            let mid = lo + (hi - lo) / 2;
            if step(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        passed_at = lo;
    } else if passed_at < config.max && passed_at > 0 {
        // Doubling jumped over max: try max itself.
        if step(config.max).await? {
            passed_at = config.max;
        }
    }
    Ok(RampReport {
        target: base.target.kind,
        p99_limit_ms: config.p99_limit.as_secs_f64() * 1000.0,
        capacity: passed_at,
        capacity_is_lower_bound: failed_at.is_none(),
        steps,
    })
}

/// Runs a step; calls that cannot connect make a failed step, not an error (the relay may be
/// refusing or timing out because it is overloaded). Errors reading /proc still stop the search.
pub(crate) async fn run_or_failure(config: &RunConfig) -> Result<RunReport, LoadError> {
    match run(config).await {
        Ok(report) => Ok(report),
        Err(LoadError::Proc(e)) => Err(LoadError::Proc(e)),
        Err(e) => Ok(RunReport {
            errors: vec![format!("connecting: {e}")],
            ..RunReport::empty(config)
        }),
    }
}
