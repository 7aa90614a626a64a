//! Calls through a running line container: two WebSocket peers join one line over WSS, through
//! Docker's published port, and exchange SFrame-shaped frames both ways; then a WebTransport peer
//! and a WebSocket peer do, through the published UDP and TCP ports.
//!
//! `scripts/docker-test.sh` starts the container as the README's run line does and runs this with
//! `--ignored`, naming the container in the environment:
//!
//! - `LINE_CONTAINER_ADDR`: the published port on this machine, e.g. `127.0.0.1:41234`;
//! - `LINE_CONTAINER_SITE`: the container's `SITEURL`, whose host the certificate names and whose
//!   origin a browser on the page would send;
//! - `LINE_CONTAINER_CA`: the PEM certificate the container serves (self-signed, the only root);
//! - `LINE_CONTAINER_APIKEY`: the container's `APIKEY`;
//! - `LINE_CONTAINER_SEED` (optional): the seed of the frame sizes, printed by every run;
//! - `LINE_CONTAINER_WT_PORT`: the UDP port published for WebTransport (443 inside the container),
//!   which `/webtransport` names since the run line sets it as `WEBTRANSPORT_PUBLIC_PORT`.
//!
//! A plain `cargo test` has no container to call, so the test is ignored there.

#[path = "support/http.rs"]
mod http;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/wt_records.rs"]
mod wt_records;

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::SinkExt as _;
use line_protocol::control::RelayMessage;
use line_protocol::header::Header;
use line_protocol::line_id::LineId;
use line_protocol::sframe::TAG_LEN;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use relay::{frame, join_params, next_binary, next_control, random_line};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
use wt_records::Records;
use wtransport::config::{DnsLookupFuture, DnsResolver};
use wtransport::{ClientConfig, Connection, Endpoint};

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// The running container, as the environment names it.
struct Container {
    addr: SocketAddr,
    site: String,
    host: String,
    apikey: String,
    tls: TlsConnector,
    /// The client TLS configuration, for WebTransport.
    tls_config: rustls::ClientConfig,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is unset: scripts/docker-test.sh runs this test against a container it starts"
        )
    })
}

impl Container {
    fn from_env() -> Self {
        let site = var("LINE_CONTAINER_SITE");
        let host = site
            .strip_prefix("https://")
            .expect("SITEURL is https://")
            .split([':', '/'])
            .next()
            .expect("a host")
            .to_owned();
        let mut roots = rustls::RootCertStore::empty();
        let ca = var("LINE_CONTAINER_CA");
        for cert in CertificateDer::pem_file_iter(&ca).expect("the certificate file reads") {
            roots.add(cert.expect("a PEM certificate")).expect("a root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            addr: var("LINE_CONTAINER_ADDR")
                .parse()
                .expect("LINE_CONTAINER_ADDR is host:port"),
            site,
            host,
            apikey: var("LINE_CONTAINER_APIKEY"),
            tls: TlsConnector::from(Arc::new(config.clone())),
            tls_config: config,
        }
    }

    /// A TLS connection to the published port, checked against the container's certificate.
    async fn tls(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .expect("connect to the published port");
        let name = ServerName::try_from(self.host.clone()).expect("a server name");
        self.tls
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the container's certificate")
    }

    /// Joins `line` as a browser on the page would (with the line's join token and a participant
    /// id of its own), and checks the first control message.
    async fn join(&self, line: LineId, expect: RelayMessage) -> Wss {
        let tls = self.tls().await;
        let url = format!(
            "wss://{}:{}/ws?apikey={}&{}",
            self.host,
            self.addr.port(),
            self.apikey,
            join_params(line)
        );
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(url).expect("url");
        request
            .headers_mut()
            .insert("origin", self.site.parse().expect("origin"));
        let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .expect("WebSocket upgrade through the published port");
        assert_eq!(next_control(&mut ws).await, expect);
        ws
    }
}

#[tokio::test]
#[ignore = "needs a running container: scripts/docker-test.sh starts one and runs this"]
async fn two_peers_call_through_the_published_port() {
    let container = Container::from_env();
    let line = random_line();
    let mut a = container.join(line, RelayMessage::Waiting).await;
    let mut b = container.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    // Frames of random sizes, from a bare AEAD tag up to the relay's limit, both ways, each
    // arriving unchanged. The seed of the sizes is printed, to replay a failure.
    let n = 50;
    let bodies = TAG_LEN..=line_protocol::MAX_FRAME_LEN - Header::MAX_LEN;
    let seed: u64 = std::env::var("LINE_CONTAINER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("container: frame sizes from seed {seed} (LINE_CONTAINER_SEED)");
    let mut rng = StdRng::seed_from_u64(seed);
    for ctr in 0..n {
        let f = frame(1, ctr, rng.random_range(bodies.clone()));
        a.send(Message::binary(f.clone()))
            .await
            .expect("send a -> b");
        assert_eq!(next_binary(&mut b).await, f);
        let f = frame(2, ctr, rng.random_range(bodies.clone()));
        b.send(Message::binary(f.clone()))
            .await
            .expect("send b -> a");
        assert_eq!(next_binary(&mut a).await, f);
    }
    a.close(None).await.expect("close a");
    b.close(None).await.expect("close b");
    eprintln!(
        "container: two peers on one line exchanged {n} frames each way through {}",
        container.addr
    );
}

/// Resolves every name to the published ports' address, as curl's `--resolve` does: the URL
/// keeps the certificate's host name.
#[derive(Debug)]
struct PublishedAt(std::net::IpAddr);

impl DnsResolver for PublishedAt {
    fn resolve(&self, host: &str) -> std::pin::Pin<Box<dyn DnsLookupFuture>> {
        let port = host.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        let ip = self.0;
        Box::pin(async move { Ok(port.map(|port| SocketAddr::new(ip, port))) })
    }
}

impl Container {
    /// Opens a WebTransport session on `line` through the published UDP port, trusting the
    /// container's certificate as the browser does (no hash: it presents its HTTPS one).
    async fn join_webtransport(&self, line: LineId, expect: RelayMessage) -> (Connection, Records) {
        let response = http::http_get(
            self.tls().await,
            &format!("{}:{}", self.host, self.addr.port()),
            &format!("/webtransport?apikey={}", self.apikey),
            &[],
        )
        .await;
        assert_eq!(
            response.status,
            200,
            "/webtransport: {}",
            response.body_text()
        );
        let body = response.body_text();
        let wt_port: u16 = var("LINE_CONTAINER_WT_PORT").parse().expect("a port");
        assert!(
            body.contains(&format!("\"port\":{wt_port},"))
                && body.contains("\"certificate_hashes\":[]"),
            "/webtransport names the published UDP port and no hash (the HTTPS certificate): {body}"
        );
        let mut tls = self.tls_config.clone();
        tls.alpn_protocols = vec![wtransport::tls::WEBTRANSPORT_ALPN.to_vec()];
        let mut config = ClientConfig::builder()
            .with_bind_default()
            .with_custom_tls(tls)
            .build();
        config.set_dns_resolver(PublishedAt(self.addr.ip()));
        let endpoint = Endpoint::client(config).expect("client endpoint");
        let url = format!(
            "https://{}:{wt_port}{}?apikey={}&{}",
            self.host,
            line_protocol::webtransport::PATH,
            self.apikey,
            join_params(line)
        );
        let connection = endpoint
            .connect(url)
            .await
            .expect("a WebTransport session through the published UDP port");
        let stream = tokio::time::timeout(relay::PATIENCE, connection.accept_uni())
            .await
            .expect("the relay opens its stream in time")
            .expect("the relay opens its stream");
        let mut records = Records::new(stream);
        assert_eq!(records.next_control().await, expect);
        (connection, records)
    }
}

#[tokio::test]
#[ignore = "needs a running container: scripts/docker-test.sh starts one and runs this"]
async fn a_webtransport_peer_calls_a_websocket_peer_through_the_published_ports() {
    let container = Container::from_env();
    let line = random_line();
    let (wt, mut records) = container
        .join_webtransport(line, RelayMessage::Waiting)
        .await;
    let mut ws = container.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(records.next_control().await, RelayMessage::PeerJoined);
    // Datagram-sized frames both ways; loopback loses none, and one at a time keeps the order.
    let n = 20;
    // Sizes drawn from a bare tag up to what a datagram holds, seed printed to replay a failure.
    let bodies = TAG_LEN..=line_protocol::webtransport::MAX_DATAGRAM_FRAME_LEN - Header::MAX_LEN;
    let seed: u64 = rand::random();
    eprintln!("container: webtransport frame sizes from seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for ctr in 0..n {
        let f = frame(3, ctr, rng.random_range(bodies.clone()));
        wt.send_datagram(f.clone()).expect("datagram sent");
        assert_eq!(next_binary(&mut ws).await, f);
        let f = frame(4, ctr, rng.random_range(bodies.clone()));
        ws.send(Message::binary(f.clone()))
            .await
            .expect("send ws -> wt");
        let got = tokio::time::timeout(relay::PATIENCE, wt.receive_datagram())
            .await
            .expect("a datagram in time")
            .expect("the session is open");
        assert_eq!(got.payload().to_vec(), f);
    }
    wt.close(0u32.into(), b"");
    ws.close(None).await.expect("close ws");
    eprintln!(
        "container: a WebTransport and a WebSocket peer exchanged {n} frames each way through {}",
        container.addr
    );
}
