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
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod apikey;
pub mod assets;
pub mod auth;
pub mod config;
pub mod healthcheck;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod redact;
pub mod registry;
mod routes;
pub mod socket;
pub mod tls;

pub use config::{AssetSource, Config, Limits};
pub use routes::CONTENT_SECURITY_POLICY;

use auth::FailureLimiter;
use metrics::Metrics;
use net::OriginPolicy;
use registry::Registry;
use tls::{TlsError, TlsSettings};

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

/// Bounds slow clients: axum-server sets no header timeout by default, so a connection that
/// trickles bytes (slowloris) would otherwise hold a task and a descriptor forever.
fn harden<A: axum_server::Address, Acc>(
    mut server: axum_server::Server<A, Acc>,
    timeout: Duration,
) -> axum_server::Server<A, Acc> {
    server.http_builder().http1().header_read_timeout(timeout);
    server.first_request_timeout(timeout)
}

/// What every request and socket shares.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) limiter: FailureLimiter,
    pub(crate) origins: OriginPolicy,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sockets: TaskTracker,
    pub(crate) tls: bool,
}

/// The relay: routes, lines, metrics and, when configured, TLS.
pub struct Server {
    state: Arc<AppState>,
    tls: Option<(RustlsConfig, TlsSettings)>,
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
            registry: Registry::new(config.limits.max_lines, Arc::clone(&metrics)),
            limiter: FailureLimiter::new(config.limits.auth_failures, config.limits.auth_window),
            origins,
            metrics,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            tls: tls.is_some(),
            config,
        });
        Ok(Self { state, tls })
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

    /// Whether the server speaks HTTPS/WSS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.state.tls
    }

    /// Serves on `listener` until `shutdown` completes; then closes every WebSocket with 1001,
    /// stops accepting, and returns once sockets and requests have ended or
    /// [`Limits::shutdown_grace`] has passed.
    pub async fn serve<F>(
        self,
        listener: std::net::TcpListener,
        shutdown: F,
    ) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send,
    {
        listener.set_nonblocking(true)?;
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
        type Serving = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;
        // Both acceptors turn Nagle off on every accepted socket: a relayed frame must leave at
        // once, not wait for the peer's ACK of the previous one (browsers and nginx do the same).
        let serving: Serving = match self.tls {
            Some((live, settings)) => {
                tokio::spawn(tls::watch(live.clone(), settings, stop_watcher.clone()));
                Box::pin(
                    harden(
                        axum_server::from_tcp_rustls(listener, live)?
                            .map(|tls| tls.acceptor(NoDelayAcceptor::new())),
                        header_timeout,
                    )
                    .handle(handle.clone())
                    .serve(app),
                )
            }
            None => Box::pin(
                harden(
                    axum_server::from_tcp(listener)?.acceptor(NoDelayAcceptor::new()),
                    header_timeout,
                )
                .handle(handle.clone())
                .serve(app),
            ),
        };
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
        // Plain HTTP requests in flight get the rest of the grace period.
        let _ = tokio::time::timeout_at(deadline + Duration::from_millis(100), serving).await;
        Ok(())
    }
}
