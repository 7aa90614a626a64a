//! A call through a running line container: two WebSocket peers join one line over WSS, through
//! Docker's published port, and exchange SFrame-shaped frames both ways.
//!
//! `scripts/docker-test.sh` starts the container as the README's run line does and runs this with
//! `--ignored`, naming the container in the environment:
//!
//! - `LINE_CONTAINER_ADDR`: the published port on this machine, e.g. `127.0.0.1:41234`;
//! - `LINE_CONTAINER_SITE`: the container's `SITEURL`, whose host the certificate names and whose
//!   origin a browser on the page would send;
//! - `LINE_CONTAINER_CA`: the PEM certificate the container serves (self-signed, the only root);
//! - `LINE_CONTAINER_APIKEY`: the container's `APIKEY`;
//! - `LINE_CONTAINER_SEED` (optional): the seed of the frame sizes, printed by every run.
//!
//! A plain `cargo test` has no container to call, so the test is ignored there.

#[path = "support/relay.rs"]
mod relay;

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

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// The running container, as the environment names it.
struct Container {
    addr: SocketAddr,
    site: String,
    host: String,
    apikey: String,
    tls: TlsConnector,
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
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Joins `line` as a browser on the page would (with the line's join token and a participant
    /// id of its own), and checks the first control message.
    async fn join(&self, line: LineId, expect: RelayMessage) -> Wss {
        let tcp = TcpStream::connect(self.addr)
            .await
            .expect("connect to the published port");
        let name = ServerName::try_from(self.host.clone()).expect("a server name");
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the container's certificate");
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
