//! What a [`crate::Server`] needs to run; `main` builds it from flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use line_protocol::control::keepalive;

use crate::apikey::ApiKey;
use crate::net::IpNet;
use crate::outbox::QueueLimits;
use crate::tls::TlsSettings;

/// The server's whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The root API key browsers must present.
    pub apikey: ApiKey,
    /// The public base URL (`https://line.example.com`); its origin may open WebSockets.
    pub site_url: Option<String>,
    /// More origins allowed to open WebSockets, besides the site URL's and the server's own host.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Where the client page comes from.
    pub assets: AssetSource,
    /// HTTPS/WSS, when set.
    pub tls: Option<TlsSettings>,
    /// WebTransport over HTTP/3 on UDP, beside the WebSocket.
    pub webtransport: WebTransport,
    /// The UDP port pages are told to open WebTransport on, when a proxy in front (nginx's
    /// `stream`, a container's port mapping) forwards another port number to the one this server
    /// listens on; `None`: the one it listens on.
    pub webtransport_public_port: Option<u16>,
    /// Other instances' public UDP ports, when several share one host name behind a proxy: the
    /// page one instance serves may be sent to any of them, so its Content-Security-Policy names
    /// them all.
    pub webtransport_scaleout_ports: Vec<u16>,
    /// Sizes and timeouts.
    pub limits: Limits,
}

impl Config {
    /// A configuration with defaults for everything but the key: embedded assets, no TLS.
    #[must_use]
    pub fn new(apikey: ApiKey) -> Self {
        Self {
            apikey,
            site_url: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            assets: AssetSource::Embedded,
            tls: None,
            webtransport: WebTransport::SamePort,
            webtransport_public_port: None,
            webtransport_scaleout_ports: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// Whether and where the server listens for WebTransport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebTransport {
    /// Only WebSockets.
    Off,
    /// UDP on the same address and port number as the TCP listener.
    #[default]
    SamePort,
    /// UDP on the TCP listener's address and this port.
    Port(u16),
}

/// Why a duration flag does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Not a whole number followed by `s`, `m` or `h`.
    Format(String),
    /// Zero, or too long to count.
    OutOfRange(String),
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Format(s) => write!(f, "{s:?} is not a duration such as 30s, 90m or 3h"),
            Self::OutOfRange(s) => write!(f, "{s:?} is not a duration above zero"),
        }
    }
}

impl std::error::Error for DurationError {}

/// `30s`, `90m`, `3h` as a [`Duration`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let format = || DurationError::Format(text.to_owned());
    let unit_at = trimmed.len().checked_sub(1).ok_or_else(format)?;
    let (number, unit) = trimmed.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| format())?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => return Err(format()),
    };
    match seconds {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(DurationError::OutOfRange(text.to_owned())),
    }
}

/// Where the static client comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssetSource {
    /// `www/` inside the binary (read from the source tree in debug builds).
    Embedded,
    /// A folder on disk, read on every request (for development).
    Dir(PathBuf),
}

/// Sizes, counts and timeouts; tests shorten them.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Lines the server holds at once.
    pub max_lines: usize,
    /// The largest binary frame a client may send.
    pub max_frame_len: usize,
    /// Each peer's outbound queue.
    pub queue: QueueLimits,
    /// How often the server pings each socket.
    pub ping_interval: Duration,
    /// A socket that sends no frame and no pong for this long is closed.
    pub idle_timeout: Duration,
    /// Failed API-key attempts one address may make per window before it gets 429.
    pub auth_failures: u32,
    /// The window for `auth_failures`.
    pub auth_window: Duration,
    /// Clients the failed-attempt limiter tracks one by one; the rest share one window.
    pub auth_clients: usize,
    /// TCP connections one client address (IPv4 address, IPv6 /64) may hold at once; 0 is no
    /// cap. Trusted proxies are exempt: their clients are counted at `/ws`.
    pub connections_per_client: usize,
    /// WebSockets and WebTransport sessions one client address may hold at once (behind
    /// trusted proxies, the address they forward); 0 is no cap. Every line needs one, so this
    /// caps lines too. A trusted proxy's own address is exempt: a UDP forwarder cannot pass on
    /// its clients' addresses, and counts them itself.
    pub sockets_per_client: usize,
    /// A socket alone on its line for this long is closed (code 4410): nobody came.
    pub max_wait_alone: Duration,
    /// Bytes of audio all outboxes together may hold; past it, each keeps only its newest frame.
    pub queue_budget: usize,
    /// Bytes tungstenite gathers before it writes to the socket; past them, and whenever the
    /// outbox is empty, it writes. Small, so a stalled receiver's backlog sits in the outbox
    /// (bounded, drop-oldest) and not in a per-socket buffer.
    pub write_buffer: usize,
    /// QUIC handshakes in progress at once past which a new client must first prove it receives
    /// at its address (a QUIC Retry, one more round trip): below it connections start at once;
    /// above it, as in a flood of Initial packets from forged addresses, each costs the endpoint
    /// no state and no signature until its address is proven. 0: always.
    pub handshakes_before_retry: usize,
    /// Bytes of datagrams QUIC may hold for one WebTransport peer before the relay waits; small,
    /// so a slow receiver's backlog sits in its outbox (bounded, drop-oldest) as on WebSockets.
    pub datagram_send_buffer: usize,
    /// Lines about refused requests (and failed accepts) logged per `refusal_log_interval`;
    /// the rest are counted and summed up in one line.
    pub refusal_log_lines: u32,
    /// See `refusal_log_lines`.
    pub refusal_log_interval: Duration,
    /// How long shutdown waits for sockets to close before it gives up on them.
    pub shutdown_grace: Duration,
    /// How long a closing socket may take to flush its close frame.
    pub close_grace: Duration,
    /// How long a client may take to send its first request and each request's headers.
    pub header_timeout: Duration,
    /// Kernel send buffer asked for each accepted socket (Linux doubles it); `None` keeps the
    /// system's autotuning, which lets a stalled receiver's backlog grow to megabytes.
    pub socket_send_buffer: Option<usize>,
    /// Bytes not yet sent that the kernel may hold for each accepted socket before it takes no
    /// more (`TCP_NOTSENT_LOWAT`); `None` lets the whole send buffer fill. Either way a stalled
    /// receiver's backlog ends in its outbox, which drops the oldest audio; with a limit the
    /// kernel adds at most about this much to it, without, up to its whole send buffer.
    pub socket_unsent_limit: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_lines: 10_000,
            max_frame_len: line_protocol::MAX_FRAME_LEN,
            queue: QueueLimits::default(),
            ping_interval: Duration::from_secs(keepalive::PING_INTERVAL_SECS),
            idle_timeout: Duration::from_secs(keepalive::IDLE_TIMEOUT_SECS),
            auth_failures: 10,
            auth_window: Duration::from_secs(60),
            auth_clients: 65_536,
            connections_per_client: 256,
            sockets_per_client: 32,
            max_wait_alone: Duration::from_secs(3 * 60 * 60),
            queue_budget: 64 * 1024 * 1024,
            write_buffer: 0,
            // Far more than people start calls at once on one relay; a flood passes it at once.
            handshakes_before_retry: 64,
            // About three 1200-byte datagrams: each waits at most a few packets behind others.
            datagram_send_buffer: 4 * 1024,
            refusal_log_lines: 20,
            refusal_log_interval: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            close_grace: Duration::from_secs(2),
            header_timeout: Duration::from_secs(10),
            // 128 KiB (256 KiB on Linux) carries 200 kHz mono audio over a 200 ms round trip.
            socket_send_buffer: Some(128 * 1024),
            // About a 10 ms frame of 200 kHz audio: 10 ms at 200 kHz, 40 ms at 48 kHz.
            socket_unsent_limit: Some(4 * 1024),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
        for bad in ["", "h", "3", "3d", "-1h", "1.5h", "three hours"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Format(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }
}
