//! `line-loadgen`: loads a running relay with simulated calls and reports latency, loss, CPU and
//! memory. The API key of a WebSocket relay comes from `LINE_BENCH_APIKEY` only, never a flag,
//! so it never sits in a logged command line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use line_loadgen::compare::{self, CompareConfig, Relay};
use line_loadgen::ramp::{self, RampConfig};
use line_loadgen::tone_call::{self, ToneCallConfig, Transport};
use line_loadgen::{ApiKey, RunConfig, Target, TargetKind, Timing, fidelity, memory, report};
use serde::Serialize;

/// The environment variable holding the relay's API key.
const APIKEY_ENV: &str = "LINE_BENCH_APIKEY";
/// The environment variable holding the call link the tone peer joins (key and leaf included).
const LINK_ENV: &str = "LINE_PEER_LINK";

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for line's relay, and the tone peer of the fidelity tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N calls for a warm-up and a measured window
    Run {
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        timing: TimingArgs,
        /// Concurrent calls
        #[arg(long, default_value_t = 10)]
        calls: usize,
    },
    /// Capacity: the largest N with p99 within the bound and no loss
    Ramp {
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        timing: TimingArgs,
        #[command(flatten)]
        ramp: RampArgs,
    },
    /// The relay's resident memory per active call, at each N
    Memory {
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        timing: TimingArgs,
        /// Numbers of calls, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "25,50,100")]
        calls: Vec<usize>,
    },
    /// A fixed N for a long window, the relay's RSS sampled throughout
    Soak {
        #[command(flatten)]
        relay: RelayArgs,
        /// Concurrent calls
        #[arg(long, default_value_t = 50)]
        calls: usize,
        /// Measured seconds (after a 10 s warm-up)
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// Seconds between RSS samples
        #[arg(long, default_value_t = 5)]
        sample_secs: u64,
        /// Write the report as JSON here
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The whole comparison: line-server, node-ws and tcp relays already running
    Compare(CompareArgs),
    /// Prints a free loopback TCP port (for scripts starting relays)
    FreePort,
    /// Calls the other side of the link in LINE_PEER_LINK as a browser would, sending exact tones
    /// and recording what it hears (the fidelity tests' peer)
    ToneCall {
        /// Frequencies sent, Hz, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        tones: Vec<f64>,
        /// Amplitude of each tone
        #[arg(long, default_value_t = 0.4)]
        amplitude: f64,
        /// Frequencies the other side sends, Hz, comma-separated: analyse each block for them
        #[arg(long, value_delimiter = ',')]
        heard: Vec<f64>,
        /// Seconds in the call after the other side joined
        #[arg(long, default_value_t = 40.0)]
        secs: f64,
        /// Starts of the recorded blocks, seconds after the other side joined
        #[arg(long, value_delimiter = ',', default_value = "5,15,25,35")]
        blocks: Vec<f64>,
        /// Length of each block, seconds
        #[arg(long, default_value_t = 2.0)]
        block_secs: f64,
        /// Stay until the other side hangs up (at most --secs): for a call between two tone peers
        #[arg(long)]
        until_hang_up: bool,
        /// Take the engine's counters every this many seconds after the other side joined, into the report's timeline
        #[arg(long)]
        timeline_secs: Option<f64>,
        /// What carries the frames: a WebSocket, or WebTransport datagrams (in frames that fit
        /// one, as the page's)
        #[arg(long, value_enum, default_value_t = Transport::WebSocket)]
        transport: Transport,
        /// Write the report as JSON here
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Fits tones to a block of audio (raw little-endian f32): frequency error, SNR, glitches
    Analyze {
        /// The block
        file: PathBuf,
        /// Its sample rate, Hz
        #[arg(long)]
        rate: f64,
        /// The frequencies sent, Hz, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        tones: Vec<f64>,
    },
}

#[derive(Args)]
struct RelayArgs {
    /// Which relay: line, line-wt (line-server over WebTransport datagrams), node-ws or tcp
    #[arg(long, default_value = "line")]
    target: TargetKind,
    /// Its address (for line-wt, its HTTP address: the UDP port comes from /webtransport)
    #[arg(long)]
    addr: SocketAddr,
    /// Samples of 200 kHz audio per frame: 2000 (10 ms, 4 KB), or 500 (2.5 ms, 1 KB: what fits a
    /// datagram, so line-wt's and line's figures can be set side by side)
    #[arg(long, default_value_t = 2000)]
    frame_samples: u32,
    /// Its pid, for CPU and memory from /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the report as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone, Copy)]
struct TimingArgs {
    /// Seconds of traffic before measuring
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Seconds measured
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
}

#[derive(Args, Clone, Copy)]
struct RampArgs {
    /// The first N
    #[arg(long, default_value_t = 8)]
    start: usize,
    /// The largest N tried
    #[arg(long, default_value_t = 4096)]
    max: usize,
    /// The p99 latency bound, milliseconds
    #[arg(long, default_value_t = 2.0)]
    p99_ms: f64,
}

#[derive(Args)]
struct CompareArgs {
    /// line-server's address
    #[arg(long)]
    line_addr: SocketAddr,
    /// line-server's pid
    #[arg(long)]
    line_pid: u32,
    /// The Node ws relay's address
    #[arg(long)]
    node_addr: SocketAddr,
    /// Its pid
    #[arg(long)]
    node_pid: u32,
    /// The raw-TCP relay's address
    #[arg(long)]
    tcp_addr: SocketAddr,
    /// Its pid
    #[arg(long)]
    tcp_pid: u32,
    #[command(flatten)]
    timing: TimingArgs,
    #[command(flatten)]
    ramp: RampArgs,
    /// Ns for memory per call, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "25,50,100")]
    memory_calls: Vec<usize>,
    /// Calls during the soak (0: no soak)
    #[arg(long, default_value_t = 50)]
    soak_calls: usize,
    /// Seconds of the soak (10 minutes by default, as the memory goal says)
    #[arg(long, default_value_t = 600)]
    soak_secs: u64,
    /// Write everything as JSON here
    #[arg(long)]
    json: PathBuf,
}

impl TimingArgs {
    fn timing(self) -> anyhow::Result<Timing> {
        Ok(Timing {
            warmup: Duration::try_from_secs_f64(self.warmup_secs).context("--warmup-secs")?,
            measure: Duration::try_from_secs_f64(self.secs).context("--secs")?,
        })
    }
}

impl RampArgs {
    fn config(self) -> anyhow::Result<RampConfig> {
        Ok(RampConfig {
            p99_limit: Duration::try_from_secs_f64(self.p99_ms / 1000.0).context("--p99-ms")?,
            start: self.start,
            max: self.max,
            ..RampConfig::default()
        })
    }
}

fn target(kind: TargetKind, addr: SocketAddr) -> anyhow::Result<Target> {
    if !kind.needs_apikey() {
        return Ok(Target::tcp(addr));
    }
    let key = std::env::var(APIKEY_ENV)
        .ok()
        .filter(|k| !k.is_empty())
        .with_context(|| format!("{kind} needs the relay's API key in {APIKEY_ENV}"))?;
    Ok(Target::websocket(kind, addr, ApiKey::new(key)))
}

fn base(relay: &RelayArgs, timing: Timing) -> anyhow::Result<RunConfig> {
    let mut config = RunConfig::new(target(relay.target, relay.addr)?, 0, timing);
    config.server_pid = relay.server_pid;
    config.shape.frame_samples = relay.frame_samples;
    Ok(config)
}

fn write_json(path: Option<&PathBuf>, value: &impl Serialize) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).context("serialising the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn show(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            relay,
            timing,
            calls,
        } => {
            let config = RunConfig {
                calls,
                ..base(&relay, timing.timing()?)?
            };
            let report = line_loadgen::run(&config).await?;
            show(&report::runs(&[&report]))?;
            write_json(relay.json.as_ref(), &report)?;
        }
        Command::Ramp {
            relay,
            timing,
            ramp: args,
        } => {
            let report = ramp::ramp(&base(&relay, timing.timing()?)?, &args.config()?).await?;
            show(&report::ramp(&report))?;
            write_json(relay.json.as_ref(), &report)?;
        }
        Command::Memory {
            relay,
            timing,
            calls,
        } => {
            let report = memory::per_call(&base(&relay, timing.timing()?)?, &calls).await?;
            show(&report::memory(&report))?;
            write_json(relay.json.as_ref(), &report)?;
        }
        Command::Soak {
            relay,
            calls,
            secs,
            sample_secs,
            json,
        } => {
            if relay.server_pid.is_none() {
                bail!("a soak needs --server-pid");
            }
            let config = RunConfig {
                calls,
                ..base(&relay, memory::soak_timing(Duration::from_secs(10), secs))?
            };
            let report = memory::soak(&config, Duration::from_secs(sample_secs.max(1))).await?;
            show(&report::soak(&report))?;
            write_json(json.as_ref().or(relay.json.as_ref()), &report)?;
        }
        Command::Compare(args) => {
            let timing = args.timing.timing()?;
            let config = CompareConfig {
                line: Relay {
                    target: target(TargetKind::Line, args.line_addr)?,
                    pid: args.line_pid,
                },
                node: Relay {
                    target: target(TargetKind::NodeWs, args.node_addr)?,
                    pid: args.node_pid,
                },
                tcp: Relay {
                    target: target(TargetKind::Tcp, args.tcp_addr)?,
                    pid: args.tcp_pid,
                },
                timing,
                ramp: args.ramp.config()?,
                memory_calls: args.memory_calls,
                soak_calls: args.soak_calls,
                soak: memory::soak_timing(Duration::from_secs(10), args.soak_secs),
                rss_every: Duration::from_secs(5),
            };
            let comparison = compare::compare(&config, |phase| {
                eprintln!("line-loadgen: {phase}");
            })
            .await?;
            write_json(Some(&args.json), &comparison)?;
            show(&report::comparison(&comparison))?;
        }
        Command::ToneCall {
            tones,
            amplitude,
            heard,
            secs,
            blocks,
            block_secs,
            until_hang_up,
            timeline_secs,
            transport,
            json,
        } => {
            let link = std::env::var(LINK_ENV)
                .ok()
                .filter(|l| !l.is_empty())
                .with_context(|| format!("the call link goes in {LINK_ENV}"))?;
            let seconds = |s: f64, what: &str| {
                Duration::try_from_secs_f64(s).with_context(|| format!("{what}: {s}"))
            };
            let config = ToneCallConfig {
                link,
                tones,
                amplitude,
                heard_tones: heard,
                duration: seconds(secs, "--secs")?,
                blocks: blocks
                    .into_iter()
                    .map(|b| seconds(b, "--blocks"))
                    .collect::<anyhow::Result<_>>()?,
                block: seconds(block_secs, "--block-secs")?,
                until_hang_up,
                timeline_every: timeline_secs
                    .map(|s| seconds(s, "--timeline-secs"))
                    .transpose()?,
                transport,
            };
            let report = tone_call::run(&config).await?;
            write_json(json.as_ref(), &report)?;
            show(&(serde_json::to_string_pretty(&report)? + "\n"))?;
        }
        Command::Analyze { file, rate, tones } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let block: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let result = fidelity::analyze(&block, rate, &tones);
            show(&(serde_json::to_string(&result)? + "\n"))?;
        }
        Command::FreePort => {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
            show(&format!("{}\n", listener.local_addr()?.port()))?;
        }
    }
    Ok(())
}
