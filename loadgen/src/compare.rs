//! The whole relay comparison of BENCHMARKS.md's goals: line-server against the Node `ws` relay
//! and the raw-TCP relay, plus memory per call and a soak on line-server, with each goal next to its figure.

use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;
use crate::memory::{self, MemoryReport, SoakReport};
use crate::ramp::{RampConfig, RampReport, ramp, run_or_failure};
use crate::run::{RunConfig, RunReport, Timing};
use crate::target::Target;

/// A running relay and its process.
#[derive(Clone, Debug)]
pub struct Relay {
    /// Where it listens.
    pub target: Target,
    /// Its pid, for CPU and memory.
    pub pid: u32,
}

/// What to compare, and for how long.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// line-server.
    pub line: Relay,
    /// The Node `ws` baseline.
    pub node: Relay,
    /// The raw-TCP baseline.
    pub tcp: Relay,
    /// Warm-up and window of each ramp step, the memory points and the same-load runs.
    pub timing: Timing,
    /// The capacity search.
    pub ramp: RampConfig,
    /// The Ns at which line-server's memory per call is measured.
    pub memory_calls: Vec<usize>,
    /// Calls during the soak (0: no soak).
    pub soak_calls: usize,
    /// The soak's warm-up and length.
    pub soak: Timing,
    /// How often the soak samples RSS.
    pub rss_every: Duration,
}

/// The relay's goals (BENCHMARKS.md, Goals), each with its measured figure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goals {
    /// line-server's capacity / the Node relay's (goal: >= 2).
    pub capacity_ratio: Option<f64>,
    /// line-server's p99 / the raw-TCP relay's p99, at line-server's capacity (goal: <= 1.5).
    pub p99_ratio_vs_tcp: Option<f64>,
    /// line-server's p50 / the raw-TCP relay's p50 at the same load (no goal; for context).
    pub p50_ratio_vs_tcp: Option<f64>,
    /// RSS per active call at the largest N measured, KiB (goal: <= 200 KB).
    pub kib_per_call: f64,
    /// RSS growth over the soak, KiB (goal: none).
    pub soak_growth_kib: Option<i64>,
}

/// line-server and the raw-TCP relay at one load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SameLoad {
    /// Calls.
    pub calls: usize,
    /// line-server.
    pub line: RunReport,
    /// The raw-TCP relay.
    pub tcp: RunReport,
}

/// Everything the comparison measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Logical CPUs of this machine (relays and load generator share them).
    pub cpus: usize,
    /// /proc/loadavg before the comparison.
    pub loadavg_before: String,
    /// /proc/loadavg after it.
    pub loadavg_after: String,
    /// line-server's memory per call (measured first, from a fresh server).
    pub memory: MemoryReport,
    /// Capacity of line-server, the Node relay and the raw-TCP relay, in that order.
    pub ramps: Vec<RampReport>,
    /// line-server and the raw-TCP relay at line-server's capacity.
    pub same_load: SameLoad,
    /// The soak on line-server.
    pub soak: Option<SoakReport>,
    /// The goals.
    pub goals: Goals,
}

/// This machine's load average, as /proc/loadavg shows it.
#[must_use]
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn base(relay: &Relay, timing: Timing) -> RunConfig {
    let mut config = RunConfig::new(relay.target.clone(), 0, timing);
    config.server_pid = Some(relay.pid);
    config
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Runs the comparison; `progress` hears a line per phase.
pub async fn compare(
    config: &CompareConfig,
    mut progress: impl FnMut(&str),
) -> Result<Comparison, LoadError> {
    let loadavg_before = loadavg();
    progress("memory per call on line-server");
    let memory = memory::per_call(&base(&config.line, config.timing), &config.memory_calls).await?;

    let mut ramps = Vec::new();
    for relay in [&config.line, &config.node, &config.tcp] {
        progress(&format!("capacity of {}", relay.target.kind));
        ramps.push(ramp(&base(relay, config.timing), &config.ramp).await?);
    }

    let calls = ramps[0].capacity.max(1);
    progress(&format!("line-server and raw TCP at {calls} calls"));
    let line = run_or_failure(&RunConfig {
        calls,
        ..base(&config.line, config.timing)
    })
    .await?;
    tokio::time::sleep(config.ramp.pause).await;
    let tcp = run_or_failure(&RunConfig {
        calls,
        ..base(&config.tcp, config.timing)
    })
    .await?;
    tokio::time::sleep(config.ramp.pause).await;

    let soak = if config.soak_calls > 0 && !config.soak.measure.is_zero() {
        progress(&format!(
            "soak: {} calls for {} s on line-server",
            config.soak_calls,
            config.soak.measure.as_secs()
        ));
        Some(
            memory::soak(
                &RunConfig {
                    calls: config.soak_calls,
                    ..base(&config.line, config.soak)
                },
                config.rss_every,
            )
            .await?,
        )
    } else {
        None
    };

    let capacity_ratio = ratio(ramps[0].capacity as f64, ramps[1].capacity as f64);
    let goals = Goals {
        capacity_ratio,
        p99_ratio_vs_tcp: ratio(line.latency.p99_us, tcp.latency.p99_us),
        p50_ratio_vs_tcp: ratio(line.latency.p50_us, tcp.latency.p50_us),
        kib_per_call: memory.steady_kib_per_call(),
        soak_growth_kib: soak.as_ref().map(|s| s.growth_kib),
    };
    Ok(Comparison {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        loadavg_before,
        loadavg_after: loadavg(),
        memory,
        ramps,
        same_load: SameLoad { calls, line, tcp },
        soak,
        goals,
    })
}
