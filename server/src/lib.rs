//! line's relay server: it serves the client page and relays encrypted frames between the two
//! people on a line. It holds no key that opens a frame.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;

pub mod apikey;

/// What the server needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The folder the client page is served from.
    pub www: PathBuf,
}

/// The HTTP router of the server.
pub fn router(config: &Config) -> Router {
    let page = config.www.join("line.html");
    Router::new()
        .route_service("/", tower_http::services::ServeFile::new(page))
        .fallback_service(ServeDir::new(&config.www))
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, config: Config) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(&config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
