//! Starting a server on port 0 and talking to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use line_protocol::header::Header;
use line_protocol::line_id::LineId;
use line_server::apikey::ApiKey;
use line_server::metrics::Metrics;
use line_server::{Config, Server};
use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

#[path = "../support/http.rs"]
mod http;
pub(crate) use http::{HttpResponse, http_get};

/// Panics seen anywhere in this test binary since it started (server tasks included).
pub(crate) static PANICS: AtomicUsize = AtomicUsize::new(0);

/// How long a test waits for something that should happen at once.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server running on a port-0 listener.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
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
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    TestServer {
        addr,
        key,
        metrics,
        stop,
        task,
    }
}

pub(crate) fn random_line() -> LineId {
    LineId::from_bytes(rand::rng().random())
}

impl TestServer {
    pub(crate) fn url(&self, line: LineId) -> String {
        format!(
            "ws://{}/ws?apikey={}&line={line}",
            self.addr,
            self.key.expose()
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

/// A frame as a client would send it: a valid SFrame header, then random "ciphertext".
pub(crate) fn frame(kid: u64, ctr: u64, body_len: usize) -> Vec<u8> {
    let mut out = vec![0u8; Header::MAX_LEN];
    let n = Header::new(kid, ctr).encode(&mut out);
    out.truncate(n);
    let mut body = vec![0u8; body_len];
    rand::rng().fill(&mut body[..]);
    out.extend_from_slice(&body);
    out
}

/// The counter in a frame's header.
pub(crate) fn ctr_of(frame: &[u8]) -> u64 {
    Header::parse(frame)
        .expect("relayed frames keep their header")
        .0
        .ctr
}

pub(crate) async fn next_message<S>(ws: &mut WebSocketStream<S>) -> Option<Message>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message arrives in time")?;
        match message {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(message) => return Some(message),
            Err(_) => return None,
        }
    }
}

pub(crate) async fn next_control<S>(ws: &mut WebSocketStream<S>) -> RelayMessage
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next_message(ws).await {
        Some(Message::Text(text)) => RelayMessage::from_json(&text).expect("a relay message"),
        other => panic!("expected a control message, got {other:?}"),
    }
}

pub(crate) async fn next_binary<S>(ws: &mut WebSocketStream<S>) -> Vec<u8>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next_message(ws).await {
        Some(Message::Binary(data)) => data.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

/// Reads until the close frame; returns its code and the error message sent before it, if any.
pub(crate) async fn expect_close<S>(ws: &mut WebSocketStream<S>) -> (u16, Option<RelayMessage>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut error = None;
    loop {
        match next_message(ws).await {
            Some(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                return (code, error);
            }
            Some(Message::Text(text)) => error = RelayMessage::from_json(&text).ok(),
            Some(Message::Binary(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
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
