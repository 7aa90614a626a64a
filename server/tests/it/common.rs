//! Starting a server on port 0 and talking to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::SinkExt as _;
use line_protocol::control::RelayMessage;
use line_protocol::header::Header;
use line_protocol::join::ParticipantId;
use line_protocol::line_id::LineId;
use line_server::apikey::ApiKey;
use line_server::metrics::Metrics;
use line_server::{Config, Server};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

#[path = "../support/http.rs"]
mod http;
#[path = "../support/relay.rs"]
mod relay;
#[path = "../support/wt_records.rs"]
mod wt_records;
pub(crate) use http::{HttpResponse, http_get};
pub(crate) use relay::{
    expect_close, frame, join_params, join_params_as, next_binary, next_control, next_message,
    random_line, random_participant, token_of,
};
pub(crate) use wt_records::Records;

/// Panics seen anywhere in this test binary since it started (server tasks included).
pub(crate) static PANICS: AtomicUsize = AtomicUsize::new(0);

/// How long a test waits for something that should happen at once.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server running on a port-0 listener.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    /// The WebTransport endpoint (UDP, its own port 0).
    pub(crate) wt_addr: SocketAddr,
    pub(crate) key: ApiKey,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: CancellationToken,
    pub(crate) task: JoinHandle<Result<(), line_server::ServerError>>,
}

pub(crate) fn config() -> Config {
    Config::new(ApiKey::generate())
}

pub(crate) fn start(config: Config) -> TestServer {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
    let key = config.apikey.clone();
    let server = Server::new(config).expect("server starts");
    let metrics = server.metrics();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    // A port of its own: the TCP port's number may be taken on UDP.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp port 0");
    let wt_addr = udp.local_addr().expect("local addr");
    let server = server.with_webtransport_socket(udp);
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    TestServer {
        addr,
        wt_addr,
        key,
        metrics,
        stop,
        task,
    }
}

impl TestServer {
    /// The WebSocket URL of a new participant on `line`.
    pub(crate) fn url(&self, line: LineId) -> String {
        format!(
            "ws://{}/ws?apikey={}&{}",
            self.addr,
            self.key.expose(),
            join_params(line)
        )
    }

    /// The WebSocket URL of `participant` on `line`.
    pub(crate) fn url_as(&self, line: LineId, participant: ParticipantId) -> String {
        format!(
            "ws://{}/ws?apikey={}&{}",
            self.addr,
            self.key.expose(),
            join_params_as(line, participant)
        )
    }

    /// Connects to `line` and checks the first control message.
    pub(crate) async fn join(&self, line: LineId, expect: RelayMessage) -> Ws {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.url(line))
            .await
            .expect("websocket connects");
        assert_eq!(next_control(&mut ws).await, expect);
        ws
    }

    /// Two peers on a fresh line, both told `peer-joined`.
    pub(crate) async fn call(&self) -> (Ws, Ws) {
        let line = random_line();
        let a = self.join(line, RelayMessage::Waiting).await;
        let mut a = a;
        let b = self.join(line, RelayMessage::PeerJoined).await;
        assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
        (a, b)
    }

    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        http_get(stream, &self.addr.to_string(), path, headers).await
    }

    pub(crate) async fn metrics_text(&self) -> String {
        self.get("/metrics", &[]).await.body_text()
    }
}

/// The counter in a frame's header.
pub(crate) fn ctr_of(frame: &[u8]) -> u64 {
    Header::parse(frame)
        .expect("relayed frames keep their header")
        .0
        .ctr
}

/// Sends a binary frame.
pub(crate) async fn send<S>(ws: &mut WebSocketStream<S>, frame: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::binary(frame)).await.expect("send");
}

/// The status with which `/ws` refused this URL (panics when it upgraded).
pub(crate) async fn refused_status(url: &str, origin: Option<&str>) -> (u16, String) {
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url).expect("valid url");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade was accepted"),
    }
}
