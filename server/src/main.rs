//! The `line-server` binary: flags and environment in, a running relay out.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};
use line_server::apikey::ApiKey;
use line_server::net::IpNet;
use line_server::tls::{self, TlsSettings};
use line_server::{AssetSource, Config, Limits, Server, WebTransport};
use tracing_subscriber::EnvFilter;

/// line: end-to-end-encrypted voice calls between two browsers, relayed by this server.
///
/// Every flag can also be set by the environment variable named in brackets.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The root API key browsers must present: at least 72 letters a-z, A-Z. Generated from the
    /// OS random source when unset (`line-server generate-apikey` prints a good one).
    #[arg(long, env = "APIKEY", hide_env_values = true)]
    apikey: Option<String>,
    /// The public base URL, e.g. https://line.example.com: used in the printed links and allowed
    /// as WebSocket Origin. Default: http(s)://BIND:PORT (127.0.0.1 when BIND is 0.0.0.0 or ::).
    #[arg(long, env = "SITEURL")]
    siteurl: Option<String>,
    /// The TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 7777)]
    port: u16,
    /// The address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// PEM certificate chain for HTTPS/WSS. With neither TLS_CERT nor TLS_KEY set, /tmp/fullchain.pem
    /// and /tmp/privkey.pem are used when both exist. Renewed files are picked up without restart.
    #[arg(long, env = "TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS/WSS.
    #[arg(long, env = "TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Also accept TLS 1.2 (only TLS 1.3 by default).
    #[arg(long, env = "TLS12", value_parser = BoolishValueParser::new())]
    tls12: bool,
    /// Seconds between checks of the certificate files for renewal.
    #[arg(long, env = "TLS_RELOAD_SECS", default_value_t = 60)]
    tls_reload_secs: u64,
    /// The UDP port for WebTransport over HTTP/3 (the audio as datagrams). Default: the same
    /// number as PORT. Open it in the firewall; behind a proxy, forward a UDP port to it.
    #[arg(long, env = "WEBTRANSPORT_PORT")]
    webtransport_port: Option<u16>,
    /// The UDP port pages are told to open WebTransport on, when what is in front forwards
    /// another port number to WEBTRANSPORT_PORT (a container's port mapping, nginx's `stream`).
    /// Default: WEBTRANSPORT_PORT.
    #[arg(
        long,
        env = "WEBTRANSPORT_PUBLIC_PORT",
        conflicts_with = "no_webtransport"
    )]
    webtransport_public_port: Option<u16>,
    /// Several instances behind one host name: every instance's WEBTRANSPORT_PUBLIC_PORT
    /// (comma-separated). The page one instance serves may be sent to any of them, so its
    /// Content-Security-Policy names them all.
    #[arg(
        long,
        env = "WEBTRANSPORT_SCALEOUT_PORTS",
        value_delimiter = ',',
        conflicts_with = "no_webtransport"
    )]
    webtransport_scaleout_ports: Vec<u16>,
    /// Serve only WebSockets, no WebTransport (nothing listens on UDP).
    #[arg(
        long,
        env = "NO_WEBTRANSPORT",
        conflicts_with = "webtransport_port",
        value_parser = BoolishValueParser::new()
    )]
    no_webtransport: bool,
    /// More origins (comma-separated, e.g. https://a.example,https://b.example) allowed to open a
    /// WebSocket, besides SITEURL's origin and the server's own host.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Proxies (comma-separated addresses or CIDR blocks) whose X-Forwarded-For names the client;
    /// nobody else's is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<IpNet>,
    /// How many lines (calls) the server holds at once; more get 503.
    #[arg(long, env = "MAX_LINES", default_value_t = 10_000)]
    max_lines: usize,
    /// TCP connections one client address (an IPv4 address, an IPv6 /64) may hold at once; more
    /// are closed at accept. TRUSTED_PROXIES are exempt. 0: no cap.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    max_connections_per_ip: usize,
    /// WebSockets (and so lines) one client address may hold at once, counting the address a
    /// trusted proxy forwards; more get 429. 0: no cap.
    #[arg(long, env = "MAX_SOCKETS_PER_IP", default_value_t = 32)]
    max_sockets_per_ip: usize,
    /// How long a person may wait alone on a line (e.g. 3h, 90m, 30s); then the socket is closed
    /// with 4410 and the page offers to wait again.
    #[arg(long, env = "MAX_WAIT_ALONE", default_value = "3h", value_parser = line_server::config::parse_duration)]
    max_wait_alone: Duration,
    /// MiB of audio all receivers' queues together may hold; past it, each keeps only its newest
    /// frame, so receivers that stall cannot use up the server's memory.
    #[arg(long, env = "QUEUE_BUDGET_MIB", default_value_t = 64)]
    queue_budget_mib: usize,
    /// Serve the client from this folder instead of the copy built into the binary.
    #[arg(long, env = "WWW")]
    www: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a fresh API key and exit.
    GenerateApikey,
    /// Ask the server running on this machine with the same PORT, BIND and TLS settings for
    /// GET /healthz; exit 0 when it answers 200, 1 otherwise (for container HEALTHCHECKs).
    Healthcheck,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::GenerateApikey) = args.command {
        #[allow(clippy::print_stdout, reason = "the key is this command's output")]
        {
            println!("{}", ApiKey::generate().expose());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Healthcheck) = args.command {
        return healthcheck(&args);
    }
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("line-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("line-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Every connection is a descriptor: start from the hard limit, not the soft default of 1024.
    match line_server::fd_limit::raise_to_hard() {
        Ok(raised) => tracing::info!(%raised, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    // An empty APIKEY (as `APIKEY=${APIKEY}` in a compose file gives) counts as unset.
    let apikey = match args.apikey.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => ApiKey::parse(key)?,
        None => {
            tracing::info!("no APIKEY set: generated one for this run");
            ApiKey::generate()
        }
    };
    let tls =
        tls::resolve_paths(args.tls_cert.clone(), args.tls_key.clone())?.map(|(cert, key)| {
            TlsSettings {
                allow_tls12: args.tls12,
                reload_interval: Duration::from_secs(args.tls_reload_secs.max(1)),
                ..TlsSettings::new(cert, key)
            }
        });
    let addr = SocketAddr::new(args.bind, args.port);
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let port = listener.local_addr()?.port();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let siteurl = args
        .siteurl
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}:{port}", link_host(args.bind)));
    let siteurl = siteurl.trim_end_matches('/').to_owned();
    let config = Config {
        site_url: Some(siteurl.clone()),
        allowed_origins: args.allowed_origins.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        assets: args
            .www
            .clone()
            .map_or(AssetSource::Embedded, AssetSource::Dir),
        tls,
        webtransport: match (args.no_webtransport, args.webtransport_port) {
            (true, _) => WebTransport::Off,
            (false, Some(port)) => WebTransport::Port(port),
            (false, None) => WebTransport::SamePort,
        },
        webtransport_public_port: args.webtransport_public_port,
        webtransport_scaleout_ports: args.webtransport_scaleout_ports.clone(),
        limits: Limits {
            max_lines: args.max_lines,
            connections_per_client: args.max_connections_per_ip,
            sockets_per_client: args.max_sockets_per_ip,
            max_wait_alone: args.max_wait_alone,
            queue_budget: args.queue_budget_mib.saturating_mul(1024 * 1024),
            ..Limits::default()
        },
        ..Config::new(apikey.clone())
    };
    let server = Server::new(config)?;
    #[allow(
        clippy::print_stdout,
        reason = "the operator needs the start links, once"
    )]
    {
        let key = apikey.expose();
        println!("Try {siteurl}/line.html?apikey={key}#generate_leaf");
        println!("Try {siteurl}/line.html?apikey={key}&mobile=1#generate_leaf");
    }
    tracing::info!(
        %addr,
        tls = server.is_tls(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// `line-server healthcheck`: the address and scheme the server would use, from the same flags.
fn healthcheck(args: &Args) -> ExitCode {
    let host = if args.bind.is_unspecified() {
        match args.bind {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        args.bind
    };
    let result = tls::resolve_paths(args.tls_cert.clone(), args.tls_key.clone())
        .map_err(anyhow::Error::from)
        .and_then(|tls| {
            line_server::healthcheck::check(
                SocketAddr::new(host, args.port),
                tls.is_some(),
                Duration::from_secs(5),
            )
            .map_err(anyhow::Error::from)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("line-server healthcheck: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// The host for the start links when no SITEURL is set: the bound address, or loopback when the
/// server listens on every address (a person on this machine can open that).
fn link_host(bind: std::net::IpAddr) -> String {
    match bind {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}
