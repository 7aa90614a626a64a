//! WebTransport peers: a real wtransport client against the real endpoint, beside WebSocket
//! peers on the same lines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use line_protocol::control::{RelayMessage, close_code};
use line_protocol::line_id::LineId;
use line_protocol::webtransport::{MAX_DATAGRAM_FRAME_LEN, PATH, RecordKind};
use line_server::Config;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::net::UdpSocket;
use wtransport::endpoint::ConnectOptions;
use wtransport::error::{ConnectingError, ConnectionError};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint};

use crate::common::{
    PATIENCE, Records, TestServer, config, ctr_of, expect_close, frame, join_params, next_binary,
    next_control, random_line, send, start,
};

/// A seeded generator whose seed is printed, so a failing run can be repeated.
fn seeded() -> StdRng {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    StdRng::seed_from_u64(seed)
}

/// The certificate hash `/webtransport` gives, and the port it names.
async fn pinned(server: &TestServer) -> (u16, [u8; 32]) {
    let response = server
        .get(
            &format!("/webtransport?apikey={}", server.key.expose()),
            &[],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    let body = response.body_text();
    let port = body
        .split("\"port\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let hex = body
        .split("\"certificate_hashes\":[\"")
        .nth(1)
        .map(|rest| &rest[..64])
        .expect("one hash");
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    (port, hash)
}

/// A WebTransport client that trusts only `hash`.
fn client(hash: [u8; 32]) -> Endpoint<wtransport::endpoint::endpoint_side::Client> {
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(hash)])
        .build();
    Endpoint::client(config).expect("client endpoint")
}

fn wt_url(server: &TestServer, query: &str) -> String {
    format!("https://localhost:{}{PATH}?{query}", server.wt_addr.port())
}

fn join_query(server: &TestServer, line: LineId) -> String {
    format!("apikey={}&{}", server.key.expose(), join_params(line))
}

/// One WebTransport peer: its session and the relay's stream.
struct WtPeer {
    connection: Connection,
    records: Records,
}

impl WtPeer {
    async fn connect(server: &TestServer, query: &str) -> Result<Self, ConnectingError> {
        let (_, hash) = pinned(server).await;
        Self::connect_with(
            server,
            hash,
            ConnectOptions::builder(wt_url(server, query)).build(),
        )
        .await
    }

    async fn connect_with(
        _server: &TestServer,
        hash: [u8; 32],
        options: ConnectOptions,
    ) -> Result<Self, ConnectingError> {
        let endpoint = client(hash);
        let connection = endpoint.connect(options).await?;
        let stream = tokio::time::timeout(PATIENCE, connection.accept_uni())
            .await
            .expect("the relay opens its stream in time")
            .expect("the relay opens its stream");
        Ok(Self {
            connection,
            records: Records::new(stream),
        })
    }

    async fn join(server: &TestServer, line: LineId, expect: RelayMessage) -> Self {
        let mut peer = Self::connect(server, &join_query(server, line))
            .await
            .expect("session accepted");
        assert_eq!(peer.next_control().await, expect);
        peer
    }

    /// The next record on the relay's stream, `None` when the stream ends.
    async fn next_record(&mut self) -> Option<(RecordKind, Vec<u8>)> {
        self.records.next().await
    }

    async fn next_control(&mut self) -> RelayMessage {
        self.records.next_control().await
    }

    async fn next_datagram(&self) -> Vec<u8> {
        tokio::time::timeout(PATIENCE, self.connection.receive_datagram())
            .await
            .expect("a datagram arrives in time")
            .expect("the session is open")
            .payload()
            .to_vec()
    }

    fn send(&self, frame: &[u8]) {
        self.connection.send_datagram(frame).expect("datagram sent");
    }

    /// The error record and the close code the relay ended the session with.
    async fn expect_close(&mut self) -> (Option<RelayMessage>, u32) {
        let mut error = None;
        while let Some((kind, payload)) = self.next_record().await {
            if kind == RecordKind::Control {
                error = RelayMessage::from_json(std::str::from_utf8(&payload).expect("utf-8"))
                    .ok()
                    .filter(|m| matches!(m, RelayMessage::Error { .. }));
            }
        }
        let closed = tokio::time::timeout(PATIENCE, self.connection.closed())
            .await
            .expect("closed in time");
        let code = match closed {
            ConnectionError::ApplicationClosed(close) => {
                u32::try_from(close.code().into_inner()).expect("a u32 code")
            }
            other => panic!("expected an application close, got {other:?}"),
        };
        (error, code)
    }
}

/// The counter line of `/metrics` that starts with `prefix`.
async fn metric(server: &TestServer, prefix: &str) -> u64 {
    server
        .metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix}"))
}

#[tokio::test]
async fn the_page_learns_port_and_hash_with_the_key_only() {
    let server = start(config());
    let response = server.get("/webtransport", &[]).await;
    assert_eq!(response.status, 401);
    let response = server.get("/webtransport?apikey=wrong", &[]).await;
    assert_eq!(response.status, 401);
    let (port, hash) = pinned(&server).await;
    assert_eq!(port, server.wt_addr.port());
    let response = server
        .get(
            &format!("/webtransport?apikey={}", server.key.expose()),
            &[],
        )
        .await;
    assert!(
        response
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("cache-control") && v == "no-store")
    );
    // The hash is that of the certificate the endpoint presents: pinned, a session opens...
    let line = random_line();
    let _peer = WtPeer::join(&server, line, RelayMessage::Waiting).await;
    // ...and pinned to anything else, the handshake fails.
    let mut wrong = hash;
    wrong[0] ^= 1;
    let options =
        ConnectOptions::builder(wt_url(&server, &join_query(&server, random_line()))).build();
    assert!(WtPeer::connect_with(&server, wrong, options).await.is_err());
    // The page names its line (for a proxy that sends each line to one instance): the same
    // answer; a line that is not a line id gets /ws's reason; the key still comes first.
    let with_line = server
        .get(
            &format!("/webtransport?apikey={}&line={line}", server.key.expose()),
            &[],
        )
        .await;
    assert_eq!(with_line.status, 200);
    assert_eq!(with_line.body_text(), response.body_text());
    let bad = server
        .get(
            &format!("/webtransport?apikey={}&line=nope", server.key.expose()),
            &[],
        )
        .await;
    assert_eq!(
        (bad.status, bad.body_text()),
        (400, "line must be 22 characters of base64url\n".to_owned())
    );
    let response = server
        .get("/webtransport?apikey=wrong&line=nope", &[])
        .await;
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn the_page_is_told_the_public_port_and_may_open_every_instances() {
    let mut cfg = config();
    cfg.webtransport_public_port = Some(8443);
    cfg.webtransport_scaleout_ports = vec![8443, 8444];
    let server = start(cfg);
    let (port, _) = pinned(&server).await;
    assert_eq!(port, 8443);
    let page = server.get("/", &[]).await;
    let csp = page
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-security-policy"))
        .map(|(_, v)| v.clone())
        .expect("a policy");
    let host = server.addr.ip();
    assert!(
        csp.contains(&format!(
            "connect-src 'self' https://{host}:8443 https://{host}:8444;"
        )),
        "{csp}"
    );
    assert!(
        !csp.contains(&format!(":{}", server.wt_addr.port())),
        "{csp}"
    );
}

#[tokio::test]
async fn off_means_no_udp_and_a_404() {
    let mut cfg = config();
    cfg.webtransport = line_server::WebTransport::Off;
    let key = cfg.apikey.clone();
    let server = line_server::Server::new(cfg).expect("server");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let response = crate::common::http_get(
        stream,
        &addr.to_string(),
        &format!("/webtransport?apikey={}", key.expose()),
        &[],
    )
    .await;
    assert_eq!(response.status, 404);
    // Nothing took the UDP port of the same number.
    std::net::UdpSocket::bind(addr).expect("the udp port is free");
    stop.cancel();
    task.await.expect("joins").expect("serves");
}

#[tokio::test]
async fn a_webtransport_peer_and_a_websocket_peer_share_a_line() {
    let mut rng = seeded();
    let server = start(config());
    let line = random_line();
    let mut wt = WtPeer::join(&server, line, RelayMessage::Waiting).await;
    let mut ws = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(wt.next_control().await, RelayMessage::PeerJoined);

    // WebTransport to WebSocket: datagrams of any size a datagram holds arrive unchanged.
    for ctr in 0..40 {
        let body = rng.random_range(16..=MAX_DATAGRAM_FRAME_LEN - 17);
        let sent = frame(7, ctr, body);
        wt.send(&sent);
        // Loopback loses nothing; datagrams could still be reordered, so match by counter.
        let got = next_binary(&mut ws).await;
        assert_eq!(got.len(), sent.len());
        if ctr_of(&got) == ctr {
            assert_eq!(got, sent);
        }
    }

    // WebSocket to WebTransport: frames that fit come as datagrams, unchanged...
    let mut sent = Vec::new();
    for ctr in 0..40 {
        let f = frame(9, ctr, rng.random_range(16..=900));
        send(&mut ws, f.clone()).await;
        sent.push(f);
    }
    let mut got = Vec::new();
    for _ in 0..40 {
        got.push(wt.next_datagram().await);
    }
    got.sort_by_key(|f| ctr_of(f));
    assert_eq!(got, sent);

    // ...and one too large for a datagram (long frames from a WebSocket peer) as a record.
    let big = frame(9, 1000, rng.random_range(2000..20_000));
    send(&mut ws, big.clone()).await;
    assert_eq!(wt.next_record().await, Some((RecordKind::Frame, big)));

    // The WebSocket peer leaves: the WebTransport peer hears it on its stream.
    drop(ws);
    assert_eq!(wt.next_control().await, RelayMessage::PeerLeft);
    assert!(metric(&server, "line_bytes_relayed_total").await > 0);
}

#[tokio::test]
async fn two_webtransport_peers_relay_datagrams() {
    let mut rng = seeded();
    let server = start(config());
    let line = random_line();
    let mut a = WtPeer::join(&server, line, RelayMessage::Waiting).await;
    let b = WtPeer::join(&server, line, RelayMessage::PeerJoined).await;
    assert_eq!(a.next_control().await, RelayMessage::PeerJoined);
    for ctr in 0..50 {
        let sent = frame(3, ctr, rng.random_range(16..=MAX_DATAGRAM_FRAME_LEN - 17));
        a.send(&sent);
        assert_eq!(b.next_datagram().await.len(), sent.len());
    }
    // The client closes: the other peer is told.
    b.connection.close(0u32.into(), b"bye");
    assert_eq!(a.next_control().await, RelayMessage::PeerLeft);
}

#[tokio::test]
async fn every_refusal_comes_before_a_session() {
    let server = start(config());
    let refused = |status: u16| format!("line_upgrades_refused_total{{status=\"{status}\"}}");
    let rejected = |result: Result<WtPeer, ConnectingError>| {
        matches!(result, Err(ConnectingError::SessionRejected))
    };

    // A wrong or missing key.
    let line = random_line();
    let query = format!("apikey=wrong&{}", join_params(line));
    assert!(rejected(WtPeer::connect(&server, &query).await));
    assert!(rejected(WtPeer::connect(&server, &join_params(line)).await));
    assert_eq!(metric(&server, &refused(401)).await, 2);

    // A malformed line id.
    let query = format!("apikey={}&line=short&join=x", server.key.expose());
    assert!(rejected(WtPeer::connect(&server, &query).await));
    assert_eq!(metric(&server, &refused(400)).await, 1);

    // A foreign origin; the server's own (the HTTPS port under the name used) passes.
    let (_, hash) = pinned(&server).await;
    let options = ConnectOptions::builder(wt_url(&server, &join_query(&server, random_line())))
        .add_header("origin", "https://evil.example")
        .build();
    assert!(rejected(WtPeer::connect_with(&server, hash, options).await));
    assert_eq!(metric(&server, &refused(403)).await, 1);
    let own = format!("http://localhost:{}", server.addr.port());
    let options = ConnectOptions::builder(wt_url(&server, &join_query(&server, random_line())))
        .add_header("origin", own)
        .build();
    let mut peer = WtPeer::connect_with(&server, hash, options)
        .await
        .expect("own origin accepted");
    assert_eq!(peer.next_control().await, RelayMessage::Waiting);

    // A full line: two WebSocket peers hold it.
    let (_a, _b) = server.call().await;
    let full = {
        // `call` made its own line; fill one we know.
        let line = random_line();
        let _x = WtPeer::join(&server, line, RelayMessage::Waiting).await;
        let _y = server.join(line, RelayMessage::PeerJoined).await;
        let result = WtPeer::connect(&server, &join_query(&server, line)).await;
        rejected(result)
    };
    assert!(full);
    assert_eq!(metric(&server, &refused(409)).await, 1);

    // Another join token on a line in use.
    let line = random_line();
    let _holder = WtPeer::join(&server, line, RelayMessage::Waiting).await;
    let query = format!(
        "apikey={}&line={line}&join={}",
        server.key.expose(),
        crate::common::token_of(random_line())
    );
    assert!(rejected(WtPeer::connect(&server, &query).await));
    assert_eq!(metric(&server, &refused(423)).await, 1);
    assert_eq!(crate::common::PANICS.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn too_many_sessions_from_one_address_get_429() {
    let mut cfg = config();
    cfg.limits.sockets_per_client = 2;
    let server = start(cfg);
    let _a = WtPeer::join(&server, random_line(), RelayMessage::Waiting).await;
    let _b = server.join(random_line(), RelayMessage::Waiting).await;
    let third = WtPeer::connect(&server, &join_query(&server, random_line())).await;
    assert!(matches!(third, Err(ConnectingError::SessionRejected)));
    assert_eq!(
        metric(&server, "line_upgrades_refused_total{status=\"429\"}").await,
        1
    );
}

#[tokio::test]
async fn a_trusted_proxys_own_address_is_not_capped() {
    // Sessions through a UDP forwarder all come from its address; it counts them per client.
    let mut cfg = config();
    cfg.limits.sockets_per_client = 2;
    cfg.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a block")];
    let server = start(cfg);
    let mut peers = Vec::new();
    for _ in 0..4 {
        // Each accepted, where the third would get 429 from any other address.
        peers.push(WtPeer::join(&server, random_line(), RelayMessage::Waiting).await);
    }
}

#[tokio::test]
async fn with_many_handshakes_under_way_clients_prove_their_address_first() {
    // A threshold of 0: every new client is in the "flood" and gets a Retry first.
    let mut cfg = config();
    cfg.limits.handshakes_before_retry = 0;
    let server = start(cfg);
    let line = random_line();
    let a = WtPeer::join(&server, line, RelayMessage::Waiting).await;
    let b = WtPeer::join(&server, line, RelayMessage::PeerJoined).await;
    let f = frame(1, 0, 100);
    a.send(&f);
    assert_eq!(b.next_datagram().await, f);
    assert_eq!(
        metric(&server, "line_webtransport_retries_total").await,
        2,
        "each client retried once, then was let in"
    );
    // The default lets calls start without the extra round trip.
    let server = start(config());
    let _c = WtPeer::join(&server, random_line(), RelayMessage::Waiting).await;
    assert_eq!(metric(&server, "line_webtransport_retries_total").await, 0);
}

#[tokio::test]
async fn rule_breakers_and_replaced_sessions_are_closed_with_the_websocket_codes() {
    let server = start(config());
    // Not an SFrame frame.
    let mut peer = WtPeer::join(&server, random_line(), RelayMessage::Waiting).await;
    peer.send(&[0xff, 1, 2]);
    let (error, code) = peer.expect_close().await;
    assert_eq!(code, u32::from(close_code::MALFORMED));
    assert!(
        matches!(error, Some(RelayMessage::Error { code: 4400, .. })),
        "{error:?}"
    );

    // The same participant on a WebSocket takes the slot over.
    let line = random_line();
    let participant = crate::common::random_participant();
    let query = format!(
        "apikey={}&{}",
        server.key.expose(),
        crate::common::join_params_as(line, participant)
    );
    let mut old = WtPeer::connect(&server, &query).await.expect("accepted");
    assert_eq!(old.next_control().await, RelayMessage::Waiting);
    let (mut new, _) = tokio_tungstenite::connect_async(server.url_as(line, participant))
        .await
        .expect("connects");
    assert_eq!(next_control(&mut new).await, RelayMessage::Waiting);
    let (error, code) = old.expect_close().await;
    assert_eq!(code, u32::from(close_code::TAKEN_OVER));
    assert!(matches!(
        error,
        Some(RelayMessage::Error { code: 4409, .. })
    ));

    // And the other way round: a WebSocket replaced by a WebTransport session.
    let line = random_line();
    let participant = crate::common::random_participant();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url_as(line, participant))
        .await
        .expect("connects");
    assert_eq!(next_control(&mut ws).await, RelayMessage::Waiting);
    let query = format!(
        "apikey={}&{}",
        server.key.expose(),
        crate::common::join_params_as(line, participant)
    );
    let mut wt = WtPeer::connect(&server, &query).await.expect("accepted");
    assert_eq!(wt.next_control().await, RelayMessage::Waiting);
    assert_eq!(expect_close(&mut ws).await.0, close_code::TAKEN_OVER);
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1001() {
    let server = start(config());
    let mut peer = WtPeer::join(&server, random_line(), RelayMessage::Waiting).await;
    server.stop.cancel();
    let (error, code) = peer.expect_close().await;
    assert_eq!(code, u32::from(close_code::GOING_AWAY));
    assert!(matches!(
        error,
        Some(RelayMessage::Error { code: 1001, .. })
    ));
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("stops in time")
        .expect("joins")
        .expect("serves");
}

/// A UDP path that can stop delivering to the client, as a network that stalls does.
struct StallingPath {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
}

async fn stalling_path(server: SocketAddr) -> StallingPath {
    let outer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let inner = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    inner.connect(server).await.expect("connect");
    let addr = outer.local_addr().expect("addr");
    let stalled = Arc::new(AtomicBool::new(false));
    let stall = Arc::clone(&stalled);
    tokio::spawn(async move {
        let mut client = None;
        let mut up = [0u8; 2048];
        let mut down = [0u8; 2048];
        loop {
            tokio::select! {
                Ok((n, from)) = outer.recv_from(&mut up) => {
                    client = Some(from);
                    let _ = inner.send(&up[..n]).await;
                }
                Ok(n) = inner.recv(&mut down) => {
                    if let (Some(to), false) = (client, stall.load(Ordering::Relaxed)) {
                        let _ = outer.send_to(&down[..n], to).await;
                    }
                }
            }
        }
    });
    StallingPath { addr, stalled }
}

#[tokio::test]
async fn a_stalled_webtransport_receiver_costs_bounded_memory() {
    let mut cfg: Config = config();
    cfg.limits.queue = line_server::outbox::QueueLimits {
        frames: 20,
        bytes: 20 * 1024,
    };
    let limits = cfg.limits.queue;
    let server = start(cfg);
    let path = stalling_path(server.wt_addr).await;
    let (_, hash) = pinned(&server).await;
    let line = random_line();
    let url = format!(
        "https://localhost:{}{PATH}?{}",
        path.addr.port(),
        join_query(&server, line)
    );
    let mut wt = WtPeer::connect_with(&server, hash, ConnectOptions::builder(url).build())
        .await
        .expect("accepted through the path");
    assert_eq!(wt.next_control().await, RelayMessage::Waiting);
    let mut ws = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(wt.next_control().await, RelayMessage::PeerJoined);
    // The network stops delivering; the sender goes on at full speed.
    path.stalled.store(true, Ordering::Relaxed);
    let mut rng = seeded();
    for ctr in 0..2000 {
        send(&mut ws, frame(5, ctr, rng.random_range(200..1000))).await;
        if ctr % 100 == 0 {
            let queued = metric(&server, "line_queued_bytes").await;
            assert!(queued <= limits.bytes as u64, "{queued} bytes queued");
        }
    }
    // Once QUIC's window is spent, frames wait in the outbox, which drops the oldest.
    let dropped = metric(&server, "line_frames_dropped_total{reason=\"queue_full\"}").await;
    assert!(dropped > 1000, "only {dropped} dropped");
    let queued = metric(&server, "line_queued_bytes").await;
    assert!(queued <= limits.bytes as u64, "{queued} bytes queued");
    // The WebSocket peer was never held back.
    send(&mut ws, frame(5, 5000, 100)).await;
    drop(wt);
}
