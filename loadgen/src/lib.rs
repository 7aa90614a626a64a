//! Load generator for line's relay.
//!
//! Simulates N concurrent calls of two peers against a running relay (line-server, or one of the
//! baselines in bench/baselines/). Each peer joins its line as a browser does, sends real
//! SFrame-encrypted 10 ms 200 kHz audio frames (about 4 KB) paced in real time, receives the other
//! peer's frames, decrypts and checks each one. A run reports per-frame relay latency (p50, p99,
//! p99.9, max), frames lost or bad, and the relay's CPU and resident memory; [`ramp`] searches the
//! largest number of calls a relay carries within a latency bound with no loss, and [`memory`]
//! measures memory per call and its growth over a long run.
//!
//! It does not measure anything in a browser, and it runs beside the relay on one machine, so the
//! two share the CPU: every report includes the load generator's own CPU use.
//!
//! ```no_run
//! # async fn demo() -> Result<(), line_loadgen::LoadError> {
//! use std::time::Duration;
//! use line_loadgen::{ApiKey, RunConfig, Target, TargetKind, Timing};
//!
//! let key = ApiKey::new(std::env::var("LINE_BENCH_APIKEY").unwrap_or_default());
//! let target = Target::websocket(TargetKind::Line, "127.0.0.1:7777".parse().unwrap(), key);
//! let timing = Timing { warmup: Duration::from_secs(1), measure: Duration::from_secs(3) };
//! let report = line_loadgen::run(&RunConfig::new(target, 10, timing)).await?;
//! assert_eq!(report.frames_lost, 0);
//! # Ok(()) }
//! ```

pub mod compare;
mod error;
pub mod fidelity;
pub mod memory;
mod peer;
pub mod procfs;
pub mod ramp;
pub mod report;
mod run;
mod stats;
mod target;
pub mod tone_call;
mod traffic;

pub use error::LoadError;
pub use peer::Peer;
pub use run::{
    Call, RssSample, RunConfig, RunReport, ServerUsage, Timing, connect_calls, run, run_calls,
};
pub use stats::LatencySummary;
pub use target::{ApiKey, Target, TargetKind, UnknownTarget};
pub use traffic::AudioShape;
