//! Human-readable tables of runs, searches and the comparison.

use std::fmt::Write as _;

use crate::compare::Comparison;
use crate::memory::{MemoryReport, SoakReport};
use crate::ramp::RampReport;
use crate::run::RunReport;

/// One row per run: load, delivery, latency percentiles, the relay's and the load generator's CPU.
#[must_use]
pub fn runs(reports: &[&RunReport]) -> String {
    let mut out = String::from(
        "target   calls     sent     lost   bad   p50 us   p99 us  p99.9 us   max us  relay cpu%  relay MiB  loadgen cpu%\n",
    );
    for r in reports {
        let (cpu, mib) = r.server.map_or(("-".into(), "-".into()), |s| {
            (
                format!("{:.0}", s.cpu_percent),
                format!("{:.1}", kib_to_mib(s.rss_kib)),
            )
        });
        let _ = writeln!(
            out,
            "{:<8} {:>5} {:>8} {:>8} {:>5} {:>8.0} {:>8.0} {:>9.0} {:>8.0} {:>10} {:>10} {:>13.0}",
            r.target.name(),
            r.calls,
            r.frames_sent,
            r.frames_lost,
            r.frames_bad,
            r.latency.p50_us,
            r.latency.p99_us,
            r.latency.p999_us,
            r.latency.max_us,
            cpu,
            mib,
            r.loadgen_cpu_percent,
        );
        for e in &r.errors {
            let _ = writeln!(out, "         error: {e}");
        }
    }
    out
}

/// A capacity search: every step, then the capacity.
#[must_use]
pub fn ramp(report: &RampReport) -> String {
    let steps: Vec<&RunReport> = report.steps.iter().collect();
    let mut out = runs(&steps);
    let _ = writeln!(
        out,
        "capacity of {}: {}{} calls (p99 <= {} ms, no loss)",
        report.target.name(),
        if report.capacity_is_lower_bound {
            ">= "
        } else {
            ""
        },
        report.capacity,
        report.p99_limit_ms
    );
    out
}

/// Memory per call.
#[must_use]
pub fn memory(report: &MemoryReport) -> String {
    let mut out = format!(
        "idle RSS {:.1} MiB\ncalls  RSS MiB  KiB/call\n",
        kib_to_mib(report.idle_rss_kib)
    );
    for p in &report.points {
        let _ = writeln!(
            out,
            "{:>5} {:>8.1} {:>9.1}",
            p.calls,
            kib_to_mib(p.rss_kib),
            p.kib_per_call
        );
    }
    out
}

/// A soak.
#[must_use]
pub fn soak(report: &SoakReport) -> String {
    let mut out = runs(&[&report.run]);
    let _ = writeln!(
        out,
        "soak: {} calls, {:.0} s, RSS {:.1} -> {:.1} MiB, growth {} KiB over {} samples",
        report.calls,
        report.run.measure_secs,
        kib_to_mib(report.first_rss_kib),
        kib_to_mib(report.last_rss_kib),
        report.growth_kib,
        report.run.rss_samples.len()
    );
    out
}

/// The comparison's summary: each goal beside its figure.
#[must_use]
pub fn comparison(c: &Comparison) -> String {
    let mut out = format!(
        "relay comparison: {} CPUs, load average {} before, {} after\n\n",
        c.cpus, c.loadavg_before, c.loadavg_after
    );
    for r in &c.ramps {
        out.push_str(&ramp(r));
        out.push('\n');
    }
    let _ = writeln!(out, "same load, {} calls:", c.same_load.calls);
    out.push_str(&runs(&[&c.same_load.line, &c.same_load.tcp]));
    out.push('\n');
    out.push_str(&memory(&c.memory));
    if let Some(s) = &c.soak {
        out.push('\n');
        out.push_str(&soak(s));
    }
    let g = &c.goals;
    let fmt = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.2}"));
    let capacity = |i: usize| {
        c.ramps.get(i).map_or("?".into(), |r| {
            format!(
                "{}{}",
                if r.capacity_is_lower_bound { ">=" } else { "" },
                r.capacity
            )
        })
    };
    let _ = write!(
        out,
        "\ngoal                                            figure      goal     met\n\
         line capacity / node-ws capacity ({} / {})   {:>9}  >= 2.00  {}\n\
         line p99 / tcp p99 at {} calls                 {:>9}  <= 1.50  {}\n\
         line p50 / tcp p50 at the same load            {:>9}\n\
         KiB per active call at {} calls                 {:>9.1}  <= 195.3 {}\n\
         RSS growth over the soak, KiB                  {:>9}\n",
        capacity(0),
        capacity(1),
        fmt(g.capacity_ratio),
        met(g.capacity_ratio.map(|r| r >= 2.0)),
        c.same_load.calls,
        fmt(g.p99_ratio_vs_tcp),
        met(g.p99_ratio_vs_tcp.map(|r| r <= 1.5)),
        fmt(g.p50_ratio_vs_tcp),
        c.memory.points.iter().map(|p| p.calls).max().unwrap_or(0),
        g.kib_per_call,
        met(Some(g.kib_per_call <= 200_000.0 / 1024.0)),
        g.soak_growth_kib.map_or("n/a".into(), |v| v.to_string()),
    );
    out
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "n/a",
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
