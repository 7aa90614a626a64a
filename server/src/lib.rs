//! line's relay server: it serves the client page and relays encrypted frames between the two
//! people on a line. It holds no key that opens a frame: it checks each frame's SFrame header and
//! size, and forwards the bytes unchanged.
//!
//! The binary is a thin `main` over [`Server`]; tests run the same server on port 0:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use line_server::{Config, Server, apikey::ApiKey};
//!
//! let server = Server::new(Config::new(ApiKey::generate()))?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod accept;
pub mod apikey;
pub mod assets;
pub mod auth;
pub mod config;
pub mod fd_limit;
pub mod healthcheck;
pub mod log_throttle;
pub mod metrics;
pub mod net;
pub mod outbox;
mod peer;
pub mod per_client;
pub mod redact;
pub mod registry;
mod routes;
pub mod socket;
pub mod tls;
mod webtransport;
pub mod webtransport_identity;

pub use config::{AssetSource, Config, Limits, WebTransport};
pub use routes::{CONTENT_SECURITY_POLICY, content_security_policy};

use accept::{AcceptError, CappedAcceptor, Http1Only};
use auth::FailureLimiter;
use log_throttle::LogThrottle;
use metrics::Metrics;
use net::OriginPolicy;
use outbox::QueueBudget;
use per_client::PerClientCap;
use registry::Registry;
use tls::{TlsError, TlsSettings};
use webtransport_identity::IdentitySource;

/// Why the server cannot start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The TLS certificate or key does not load.
    Tls(TlsError),
    /// The listener cannot be used.
    Io(std::io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(e) => write!(f, "tls: {e}"),
            Self::Io(e) => write!(f, "listener: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Tls(e) => Some(e),
            Self::Io(e) => Some(e),
        }
    }
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Bounds slow and idle clients (HTTP/2 is refused before this, see [`accept`]).
///
/// axum-server sets no header timeout by default, so a connection that trickles bytes
/// (slowloris) would otherwise hold a task and a descriptor forever; hyper's header timeout also
/// runs while a kept-alive connection waits for its next request, so idle ones close too.
fn harden<Acc>(
    mut server: axum_server::Server<SocketAddr, Acc>,
    timeout: Duration,
    accept_log: Arc<LogThrottle>,
) -> axum_server::Server<SocketAddr, Acc> {
    server.http_builder().http1().header_read_timeout(timeout);
    server
        .first_request_timeout(timeout)
        .accept_error_handler(move |peer, error| log_accept_error(&accept_log, peer, error))
}

/// A connection that failed before HTTP: refused by the per-client cap, a failed TLS handshake,
/// or the listener itself (out of file descriptors, say). Throttled: anyone can cause these.
fn log_accept_error(throttle: &LogThrottle, peer: Option<&SocketAddr>, error: &std::io::Error) {
    let refused = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<AcceptError>().is_some());
    if peer.is_some() && !refused {
        // A TLS handshake that failed, or a client that left: scanners make these all day.
        tracing::debug!(?peer, %error, "connection failed before http");
        return;
    }
    if !throttle.admit(std::time::Instant::now()) {
        return;
    }
    match peer {
        Some(_) => tracing::info!(%error, "connection refused"),
        None => tracing::warn!(%error, "accepting a connection failed"),
    }
}

/// What every request and socket shares.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) assets: Arc<assets::Assets>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) limiter: FailureLimiter,
    pub(crate) sockets_per_client: Arc<PerClientCap>,
    pub(crate) connections_per_client: Arc<PerClientCap>,
    pub(crate) queue_budget: Arc<QueueBudget>,
    pub(crate) refusal_log: LogThrottle,
    pub(crate) accept_log: Arc<LogThrottle>,
    pub(crate) origins: OriginPolicy,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sockets: TaskTracker,
    pub(crate) tls: bool,
    /// The UDP port pages are told to open WebTransport on, once the endpoint listens.
    pub(crate) webtransport_port: std::sync::OnceLock<u16>,
    /// The hash pages pin, when the endpoint's certificate was made here.
    pub(crate) pinned_hash: webtransport_identity::PinnedHash,
}

/// The relay: routes, lines, metrics and, when configured, TLS.
pub struct Server {
    state: Arc<AppState>,
    tls: Option<(RustlsConfig, TlsSettings)>,
    /// A UDP socket for WebTransport bound by the caller, instead of the configured port.
    webtransport_socket: Option<std::net::UdpSocket>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("tls", &self.state.tls)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `config`; loads the TLS certificate when one is configured.
    pub fn new(config: Config) -> Result<Self, ServerError> {
        let tls = match &config.tls {
            Some(settings) => {
                let rustls = tls::load(settings).map_err(ServerError::Tls)?;
                Some((RustlsConfig::from_config(rustls), settings.clone()))
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let origins = OriginPolicy::new(
            config
                .site_url
                .iter()
                .chain(&config.allowed_origins)
                .map(String::as_str),
        );
        let state = Arc::new(AppState {
            assets: assets::Assets::new(config.assets.clone()),
            registry: Registry::new(config.limits.max_lines, Arc::clone(&metrics)),
            limiter: FailureLimiter::new(
                config.limits.auth_failures,
                config.limits.auth_window,
                config.limits.auth_clients,
            ),
            sockets_per_client: PerClientCap::new(config.limits.sockets_per_client),
            connections_per_client: PerClientCap::new(config.limits.connections_per_client),
            queue_budget: QueueBudget::new(config.limits.queue_budget),
            refusal_log: LogThrottle::new(
                config.limits.refusal_log_lines,
                config.limits.refusal_log_interval,
            ),
            accept_log: Arc::new(LogThrottle::new(
                config.limits.refusal_log_lines,
                config.limits.refusal_log_interval,
            )),
            origins,
            metrics,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            tls: tls.is_some(),
            webtransport_port: std::sync::OnceLock::new(),
            pinned_hash: webtransport_identity::PinnedHash::default(),
            config,
        });
        Ok(Self {
            state,
            tls,
            webtransport_socket: None,
        })
    }

    /// Serves WebTransport on `socket` (bound by the caller, say on port 0) instead of the port
    /// [`Config::webtransport`] names, unless that is [`WebTransport::Off`].
    #[must_use]
    pub fn with_webtransport_socket(mut self, socket: std::net::UdpSocket) -> Self {
        self.webtransport_socket = Some(socket);
        self
    }

    /// Where WebTransport's certificate comes from: the HTTPS files, or one made here for the
    /// site's host name.
    fn identity_source(&self) -> IdentitySource {
        match &self.tls {
            Some((_, settings)) => IdentitySource::Files(settings.clone()),
            None => {
                let site_host = self
                    .state
                    .config
                    .site_url
                    .as_deref()
                    .and_then(|url| url.parse::<axum::http::Uri>().ok())
                    .and_then(|uri| uri.host().map(str::to_owned));
                let mut names: Vec<String> = site_host.into_iter().collect();
                names.push("localhost".into());
                IdentitySource::SelfSigned { names }
            }
        }
    }

    /// The UDP socket WebTransport listens on, if it is on.
    fn bind_webtransport(
        &mut self,
        tcp: SocketAddr,
    ) -> Result<Option<std::net::UdpSocket>, ServerError> {
        let port = match self.state.config.webtransport {
            WebTransport::Off => return Ok(None),
            WebTransport::SamePort => tcp.port(),
            WebTransport::Port(port) => port,
        };
        if let Some(socket) = self.webtransport_socket.take() {
            return Ok(Some(socket));
        }
        let addr = SocketAddr::new(tcp.ip(), port);
        std::net::UdpSocket::bind(addr).map(Some).map_err(|e| {
            ServerError::Io(std::io::Error::new(
                e.kind(),
                format!("udp {addr} for webtransport: {e}"),
            ))
        })
    }

    /// The HTTP routes, for serving with something else than [`Server::serve`].
    pub fn router(&self) -> Router {
        routes::router(Arc::clone(&self.state))
    }

    /// The server's counters, as `/metrics` shows them.
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.state.metrics)
    }

    /// Bytes of audio queued for every receiver together now (see [`Limits::queue_budget`]).
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.state.queue_budget.used()
    }

    /// Whether the server speaks HTTPS/WSS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.state.tls
    }

    /// Serves on `listener` until `shutdown` completes; then closes every WebSocket with 1001,
    /// stops accepting, and returns once sockets and requests have ended or
    /// [`Limits::shutdown_grace`] has passed.
    pub async fn serve<F>(
        mut self,
        listener: std::net::TcpListener,
        shutdown: F,
    ) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send,
    {
        listener.set_nonblocking(true)?;
        let tcp = listener.local_addr()?;
        let webtransport_socket = self.bind_webtransport(tcp)?;
        let identity_source = self.identity_source();
        if let Some(size) = self.state.config.limits.socket_send_buffer {
            // Accepted sockets inherit the listener's buffer size.
            socket2::SockRef::from(&listener).set_send_buffer_size(size)?;
        }
        let handle = axum_server::Handle::<SocketAddr>::new();
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let stop_watcher = CancellationToken::new();
        let header_timeout = self.state.config.limits.header_timeout;
        let accept_log = Arc::clone(&self.state.accept_log);
        let acceptor = CappedAcceptor::new(
            Arc::clone(&self.state.connections_per_client),
            &self.state.config.trusted_proxies,
        )
        .unsent_limit(self.state.config.limits.socket_unsent_limit);
        type Serving = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;
        let serving: Serving = match self.tls {
            Some((live, settings)) => {
                tokio::spawn(tls::watch(live.clone(), settings, stop_watcher.clone()));
                Box::pin(
                    harden(
                        axum_server::from_tcp_rustls(listener, live)?
                            .map(|tls| Http1Only::new(tls.acceptor(acceptor), header_timeout)),
                        header_timeout,
                        accept_log,
                    )
                    .handle(handle.clone())
                    .serve(app),
                )
            }
            None => Box::pin(
                harden(
                    axum_server::from_tcp(listener)?
                        .acceptor(Http1Only::new(acceptor, header_timeout)),
                    header_timeout,
                    accept_log,
                )
                .handle(handle.clone())
                .serve(app),
            ),
        };
        tokio::spawn(housekeeping(Arc::clone(&self.state), stop_watcher.clone()));
        // Until the endpoint listens, `/webtransport` would answer that it is off.
        let (ready, listening) = tokio::sync::oneshot::channel();
        let webtransport = match webtransport_socket {
            Some(socket) => {
                let serving = webtransport::serve(
                    Arc::clone(&self.state),
                    socket,
                    identity_source,
                    tcp.port(),
                    self.state.shutdown.clone(),
                    ready,
                );
                Some(tokio::spawn(async move {
                    // WebSockets go on without it: say so, loudly, once.
                    if let Err(e) = serving.await {
                        tracing::error!(error = %e, "webtransport stopped");
                    }
                }))
            }
            None => {
                drop(ready);
                None
            }
        };
        // A debug build reads the embedded files from disk and compresses slowly: it compresses
        // each file when it is first asked for instead.
        if !cfg!(debug_assertions) {
            let assets = Arc::clone(&self.state.assets);
            tokio::spawn(async move { assets.warm_up().await });
        }
        // Either it listens or it could not start (the sender dropped): HTTP may begin.
        let _ = listening.await;
        let mut serving = tokio::spawn(serving);
        let _stop_watcher = stop_watcher.drop_guard();
        tokio::select! {
            () = shutdown => {}
            result = &mut serving => {
                return match result {
                    Ok(result) => result.map_err(ServerError::Io),
                    Err(join) => Err(ServerError::Io(std::io::Error::other(join))),
                };
            }
        }
        let grace = self.state.config.limits.shutdown_grace;
        tracing::info!(
            sockets = self.state.metrics.open_connections(),
            "shutting down: closing every socket with 1001"
        );
        self.state.shutdown.cancel();
        handle.graceful_shutdown(Some(grace));
        self.state.sockets.close();
        let deadline = tokio::time::Instant::now() + grace;
        if tokio::time::timeout_at(deadline, self.state.sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sockets did not close in time");
        }
        if let Some(task) = webtransport {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        // Plain HTTP requests in flight get the rest of the grace period.
        let _ = tokio::time::timeout_at(deadline + Duration::from_millis(100), serving).await;
        Ok(())
    }
}

/// What runs on a timer rather than on a request's path: the limiter forgets ended windows, and
/// the lines the log throttles left out are counted in one line.
async fn housekeeping(state: Arc<AppState>, stop: CancellationToken) {
    let every = state
        .limiter
        .window()
        .min(state.refusal_log.interval())
        .max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        state.limiter.sweep(std::time::Instant::now());
        let left_out = state.refusal_log.take_suppressed() + state.accept_log.take_suppressed();
        if left_out > 0 {
            tracing::info!(
                left_out,
                seconds = every.as_secs_f64(),
                "more refused requests and connections than the log shows (see /metrics)"
            );
        }
    }
}
