//! What a [`crate::Server`] needs to run; `main` builds it from flags and environment.

use std::path::PathBuf;
use std::time::Duration;

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
            limits: Limits::default(),
        }
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
    /// How long shutdown waits for sockets to close before it gives up on them.
    pub shutdown_grace: Duration,
    /// How long a closing socket may take to flush its close frame.
    pub close_grace: Duration,
    /// How long a client may take to send its first request and each request's headers.
    pub header_timeout: Duration,
    /// Kernel send buffer asked for each accepted socket (Linux doubles it); `None` keeps the
    /// system's autotuning, which lets a stalled receiver's backlog grow to megabytes.
    pub socket_send_buffer: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_lines: 10_000,
            max_frame_len: line_protocol::MAX_FRAME_LEN,
            queue: QueueLimits::default(),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            auth_failures: 10,
            auth_window: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            close_grace: Duration::from_secs(2),
            header_timeout: Duration::from_secs(10),
            // 128 KiB (256 KiB on Linux) carries 200 kHz mono audio over a 200 ms round trip.
            socket_send_buffer: Some(128 * 1024),
        }
    }
}
