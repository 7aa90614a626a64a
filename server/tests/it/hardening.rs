//! What a crowd or an attacker can do to the server, and what the server does about it:
//! HTTP/2 and idle connections, per-address caps, the failed-key limiter, lines that wait alone,
//! clean hang-ups and the compressed client files.

use std::io::Read as _;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;

/// Reads until the server closes the connection or `within` passes; returns what it sent and
/// whether it closed.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// An HTTP/2 connection with prior knowledge: the preface, an empty SETTINGS frame, and a
/// `GET /healthz` HEADERS frame (HPACK: indexed `:method GET`, `:scheme http`, `:path /`, then a
/// literal `:path /healthz` would need more; `/` is enough to be a complete request).
fn http2_request() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS, length 0, no flags, stream 0.
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let authority = b"localhost";
    let mut block = vec![0x82, 0x86, 0x84, 0x41, authority.len() as u8];
    block.extend_from_slice(authority);
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    let len = block.len();
    out.extend_from_slice(&[0, 0, len as u8, 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    out
}

#[tokio::test]
async fn http2_is_refused_at_once_rather_than_kept_open() {
    // The header timeout is long: the connection must end because it is HTTP/2, not idle.
    let server = start(config());
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(&http2_request()).await.expect("write");
    let (got, closed) = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
    assert!(closed, "an HTTP/2 connection stayed open");
    // Nothing in HTTP/2 came back (a SETTINGS frame would start with type 0x4 at byte 3).
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1"),
        "answered in HTTP/2: {:?}",
        &got[..got.len().min(16)]
    );
    // HTTP/1.1 and WebSockets still work.
    assert_eq!(server.get("/healthz", &[]).await.status, 200);
    let _a = server.join(random_line(), RelayMessage::Waiting).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let mut cfg = config();
    cfg.limits.header_timeout = Duration::from_millis(400);
    let server = start(cfg);
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (got, closed) = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(closed, "a kept-alive connection stayed open while idle");
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections() {
    let mut cfg = config();
    cfg.limits.connections_per_client = 4;
    let server = start(cfg);
    // Four connections that send nothing yet are held...
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // ...the fifth is closed at once, long before any timeout.
    let mut fifth = TcpStream::connect(server.addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut fifth, Duration::from_secs(2)).await;
    assert!(closed, "a fifth connection was kept");
    // The four still work.
    let stream = held.pop().expect("one");
    let response = http_get(stream, &server.addr.to_string(), "/healthz", &[]).await;
    assert_eq!(response.status, 200);
    // A freed connection makes room.
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let (got, _) = read_until_closed(&mut tcp, Duration::from_secs(2)).await;
        if got.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_right_key_always_passes_after_many_wrong_ones() {
    let mut cfg = config();
    cfg.limits.auth_failures = 3;
    let server = start(cfg);
    let line = random_line();
    let wrong = format!("ws://{}/ws?apikey=nope&{}", server.addr, join_params(line));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(refused_status(&wrong, None).await.0);
    }
    assert_eq!(&statuses[..3], &[401, 401, 401]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // Someone else behind the same address, with the link, gets in at once.
    let _joined = server.join(line, RelayMessage::Waiting).await;
    // And wrong keys are still slowed.
    assert_eq!(refused_status(&wrong, None).await.0, 429);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("line_upgrades_refused_total{status=\"429\"} 10"),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_address_holds_at_most_its_sockets_and_each_forwarded_client_its_own() {
    let mut cfg = config();
    cfg.limits.sockets_per_client = 3;
    cfg.trusted_proxies = vec!["127.0.0.2".parse().expect("net")];
    let server = start(cfg);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.join(random_line(), RelayMessage::Waiting).await);
    }
    let (status, body) = refused_status(&server.url(random_line()), None).await;
    assert_eq!(status, 429);
    assert_eq!(body.trim(), "too many connections from your address");
    // Closing one frees its place.
    let mut first = held.remove(0);
    first.close(None).await.expect("close");
    while first.next().await.is_some() {}
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio_tungstenite::connect_async(server.url(random_line())).await {
            Ok((ws, _)) => {
                held.push(ws);
                break;
            }
            Err(_) => assert!(Instant::now() < deadline, "the place was never freed"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Behind a trusted proxy, each forwarded client has its own three.
    let mut forwarded = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2"] {
        for i in 0..4 {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    server.url(random_line()),
                )
                .expect("url");
            request
                .headers_mut()
                .insert("x-forwarded-for", client.parse().expect("header"));
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("addr"))
                .expect("bind 127.0.0.2");
            let tcp = socket.connect(server.addr).await.expect("connect");
            let result = tokio_tungstenite::client_async(request, tcp).await;
            match (i, result) {
                (0..=2, Ok((ws, _))) => forwarded.push(ws),
                (3, Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                    assert_eq!(response.status(), 429, "{client}");
                }
                (i, other) => panic!("{client} socket {i}: {:?}", other.map(|_| ())),
            }
        }
    }
}

#[tokio::test]
async fn a_line_waiting_alone_too_long_is_closed_with_4410() {
    let mut cfg = config();
    cfg.limits.max_wait_alone = Duration::from_millis(600);
    cfg.limits.ping_interval = Duration::from_millis(100);
    let server = start(cfg);

    // Alone from the start: closed with 4410, with the reason first.
    let started = Instant::now();
    let mut lone = server.join(random_line(), RelayMessage::Waiting).await;
    let (code, error) = expect_close(&mut lone).await;
    let waited = started.elapsed();
    assert_eq!(code, 4410);
    match error {
        Some(RelayMessage::Error { code: 4410, reason }) => {
            assert!(reason.contains("nobody else joined"), "{reason}");
        }
        other => panic!("expected an error message first, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(550),
        "closed after {waited:?}"
    );

    // Two people on a line are never closed for it, and the clock starts again when one leaves.
    let (mut a, b) = server.call().await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    drop(b);
    let left = Instant::now();
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerLeft);
    let (code, _) = expect_close(&mut a).await;
    assert_eq!(code, 4410);
    let alone = left.elapsed();
    assert!(
        alone >= Duration::from_millis(500) && alone < Duration::from_secs(3),
        "closed {alone:?} after the other left"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("line_sockets_closed_by_server_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_close_gets_a_close_reply() {
    let server = start(config());
    let (mut a, mut b) = server.call().await;
    a.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "hang up".into(),
    })))
    .await
    .expect("send close");
    // The server answers with its own close frame (a browser then reports 1000, clean), rather
    // than dropping the connection (1006).
    let reply = tokio::time::timeout(PATIENCE, async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(frame))) => return Some(frame),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("no close reply, the connection broke: {e}"),
                None => return None,
            }
        }
    })
    .await
    .expect("a reply in time");
    let frame = reply.expect("a close frame, not a dropped connection");
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
    assert_eq!(next_control(&mut b).await, RelayMessage::PeerLeft);
}

#[tokio::test]
async fn compressed_client_files_are_made_once_and_served_whole() {
    let dir = std::env::temp_dir().join(format!("line-www-{}", rand::random::<u64>()));
    std::fs::create_dir_all(dir.join("pkg")).expect("temp dir");
    let wasm: Vec<u8> = (0..200_000u32)
        .map(|i| (i % 251) as u8 ^ (i / 977) as u8)
        .collect();
    std::fs::write(dir.join("pkg/app_bg.wasm"), &wasm).expect("write");
    std::fs::write(dir.join("line.html"), "<!doctype html>".repeat(100)).expect("write");
    let mut cfg = config();
    cfg.assets = line_server::AssetSource::Dir(dir.clone());
    let server = start(cfg);

    let identity = server.get("/pkg/app_bg.wasm", &[]).await;
    assert_eq!(identity.body, wasm);
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.header("vary"), Some("accept-encoding"));

    let mut seen = std::collections::HashMap::new();
    for (accept, encoding) in [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0.1, gzip", "gzip"),
    ] {
        for _ in 0..3 {
            let response = server
                .get("/pkg/app_bg.wasm", &[("accept-encoding", accept)])
                .await;
            assert_eq!(response.status, 200);
            assert_eq!(
                response.header("content-encoding"),
                Some(encoding),
                "{accept}"
            );
            assert_eq!(response.header("vary"), Some("accept-encoding"));
            assert_eq!(response.header("content-type"), Some("application/wasm"));
            // Stored bytes, sent with their length (a compressing stream would be chunked).
            assert_eq!(
                response.header("content-length"),
                Some(response.body.len().to_string().as_str())
            );
            assert!(
                response.body.len() < wasm.len() / 2,
                "{encoding} did not shrink"
            );
            assert_eq!(decode(encoding, &response.body), wasm);
            let etag = response.header("etag").expect("etag").to_owned();
            let first = seen
                .entry(encoding)
                .or_insert_with(|| (etag.clone(), response.body.clone()));
            assert_eq!(first.0, etag, "one etag per encoding");
            assert_eq!(first.1, response.body, "the same bytes every time");
        }
    }
    // Each encoding has its own strong ETag, and revalidates against it.
    let identity_etag = identity.header("etag").expect("etag");
    let (br_etag, _) = &seen["br"];
    let (gzip_etag, _) = &seen["gzip"];
    assert!(identity_etag != br_etag && br_etag != gzip_etag && identity_etag != gzip_etag);
    let fresh = server
        .get(
            "/pkg/app_bg.wasm",
            &[("accept-encoding", "br"), ("if-none-match", br_etag)],
        )
        .await;
    assert_eq!(fresh.status, 304);
    assert_eq!(fresh.header("etag"), Some(br_etag.as_str()));
    let stale = server
        .get(
            "/pkg/app_bg.wasm",
            &[("accept-encoding", "gzip"), ("if-none-match", br_etag)],
        )
        .await;
    assert_eq!(stale.status, 200);
    // HEAD: the headers of the stored form, its length, no body.
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(
        b"HEAD /pkg/app_bg.wasm HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let (head, _) = read_until_closed(&mut tcp, PATIENCE).await;
    let head = String::from_utf8(head).expect("text");
    let br_len = seen["br"].1.len();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {br_len}\r\n")),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "a body came with HEAD: {head}");
    // A range request gets the whole file: ranges are not offered.
    let ranged = server
        .get("/pkg/app_bg.wasm", &[("range", "bytes=0-99")])
        .await;
    assert_eq!((ranged.status, ranged.body.len()), (200, wasm.len()));
    assert_eq!(ranged.header("accept-ranges"), Some("none"));
    let _ = std::fs::remove_dir_all(dir);
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("brotli");
        }
        other => panic!("unknown encoding {other}"),
    }
    out
}
