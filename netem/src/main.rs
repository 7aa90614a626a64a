//! `line-netem`: an impaired link between two network namespaces, for tests.
//!
//! It makes one TUN device for each side, moves each into its namespace and gives the two ends
//! of the link their addresses (a point-to-point pair), then moves every packet between them
//! through the impairment. Commands on standard input change it while it runs (see
//! [`line_netem::Command`]); each gets one JSON line on standard output. It stops at the end of
//! its input, and the devices go with it.

use std::io::{BufRead as _, Write as _};
use std::net::Ipv4Addr;
use std::process::Command as Process;

use anyhow::{Context as _, bail};
use clap::Parser;
use line_netem::router::Router;
use line_netem::{Command, Direction, Netem, Profile, control};
use serde_json::json;

#[derive(Parser)]
#[command(
    version,
    about = "An impaired link between two network namespaces: delays, jitters, reorders, drops and rate-limits the IP packets between them"
)]
struct Cli {
    /// The near side's network namespace (as `ip netns` names it): the clients
    #[arg(long)]
    near: String,
    /// The far side's network namespace: the server
    #[arg(long)]
    far: String,
    /// The near side's address on the link
    #[arg(long, default_value = "10.99.0.1")]
    near_addr: Ipv4Addr,
    /// The far side's address on the link
    #[arg(long, default_value = "10.99.0.2")]
    far_addr: Ipv4Addr,
    /// The profile to start with: lan, home, wifi, mobile or none
    #[arg(long, default_value = "lan")]
    profile: Profile,
    /// Changes to the profile, KEY=VALUE: rtt_ms, jitter_ms, loss, reorder, rate_mbit, queue_ms
    #[arg(long = "set", value_name = "KEY=VALUE")]
    changes: Vec<String>,
    /// The seed of the random draws (default: from the clock; printed either way)
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut profile = cli.profile;
    for change in &cli.changes {
        control::apply(&mut profile, change).with_context(|| format!("--set {change}"))?;
    }
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    // Names unique on the host, where the devices are made before they move.
    let pid = std::process::id();
    let near = device(&format!("nm{pid}n"), &cli.near, cli.near_addr, cli.far_addr)?;
    let far = device(&format!("nm{pid}f"), &cli.far, cli.far_addr, cli.near_addr)?;
    let router =
        Router::start(near, far, Netem::new(profile, seed)).context("starting the router")?;
    reply(&json!({
        "ready": true,
        "seed": seed,
        "near": cli.near_addr,
        "far": cli.far_addr,
        "profile": describe(&profile),
    }))?;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading a command")?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match Command::parse(&line) {
            Err(e) => json!({ "error": e.to_string() }),
            Ok(Command::Profile { name, profile }) => {
                router.with_link(|link, _| link.set_profile(profile));
                json!({ "profile": name, "is": describe(&profile) })
            }
            Ok(Command::Outage(length)) => {
                router.with_link(|link, now| link.start_outage(now, length));
                json!({ "outage_ms": length.as_millis() as u64 })
            }
            Ok(Command::Stats) => {
                let (up, down) = router
                    .with_link(|link, _| (link.stats(Direction::Up), link.stats(Direction::Down)));
                json!({ "up": up, "down": down, "io_errors": router.io_errors() })
            }
            Ok(_) => json!({ "error": "a command this version cannot carry out" }),
        };
        reply(&answer)?;
    }
    Ok(())
}

/// A TUN device called `name`, moved into namespace `netns` and given `addr`, with `peer` at the
/// other end of the link.
fn device(name: &str, netns: &str, addr: Ipv4Addr, peer: Ipv4Addr) -> anyhow::Result<tun::Device> {
    let mut config = tun::Configuration::default();
    config.tun_name(name).layer(tun::Layer::L3).mtu(1500);
    // Addresses and state are set with `ip` once the device is in its namespace.
    config.platform_config(|c| {
        c.ensure_root_privileges(false);
    });
    let dev = tun::create(&config)
        .with_context(|| format!("making TUN device {name} (this needs CAP_NET_ADMIN)"))?;
    ip(&["link", "set", name, "netns", netns])?;
    ip(&[
        "-n",
        netns,
        "addr",
        "add",
        &addr.to_string(),
        "peer",
        &peer.to_string(),
        "dev",
        name,
    ])?;
    ip(&["-n", netns, "link", "set", name, "up"])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    Ok(dev)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Process::new("ip")
        .args(args)
        .status()
        .context("running ip (iproute2)")?;
    if !status.success() {
        bail!("ip {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn describe(p: &Profile) -> serde_json::Value {
    json!({
        "rtt_ms": p.delay.as_secs_f64() * 2e3,
        "jitter_ms": p.jitter.as_secs_f64() * 1e3,
        "loss": p.loss,
        "reorder": p.reorder,
        "rate_mbit": p.rate_bps.map(|r| r as f64 / 1e6),
        "queue_ms": p.queue.as_secs_f64() * 1e3,
    })
}

fn reply(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}
