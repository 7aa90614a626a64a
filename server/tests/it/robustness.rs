//! Nothing a client sends panics the server.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt as _;
use line_protocol::MAX_FRAME_LEN;
use line_protocol::control::RelayMessage;
use rand::Rng as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_and_frames_of_every_size_never_panic() {
    let server = start(config());
    let before = PANICS.load(Ordering::SeqCst);
    let (mut a, mut b) = server.call().await;

    // Raw garbage on fresh TCP connections, before and instead of any HTTP.
    for len in [0usize, 1, 7, 100, 4096, 70_000] {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        let mut junk = vec![0u8; len];
        rand::rng().fill(&mut junk[..]);
        let _ = tcp.write_all(&junk).await;
        let _ = tcp.shutdown().await;
    }
    // Garbage after a valid upgrade: the server may close the socket, but must not panic.
    for _ in 0..5 {
        let (ws, _) = tokio_tungstenite::connect_async(server.url(random_line()))
            .await
            .expect("connects");
        let mut tcp = match ws.into_inner() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!("plain tcp"),
        };
        let mut junk = vec![0u8; 3000];
        rand::rng().fill(&mut junk[..]);
        let _ = tcp.write_all(&junk).await;
    }

    // Binary frames of every size from 0 to past the cap, random content: each peer that breaks
    // a rule is closed and replaced.
    let mut rng = rand::rng();
    let mut sizes: Vec<usize> = (0..=300).collect();
    sizes.extend((0..200).map(|_| rng.random_range(0..=MAX_FRAME_LEN + 100)));
    sizes.extend([
        MAX_FRAME_LEN - 1,
        MAX_FRAME_LEN,
        MAX_FRAME_LEN + 1,
        2 * MAX_FRAME_LEN,
    ]);
    let line = random_line();
    let mut peer = server.join(line, RelayMessage::Waiting).await;
    for size in sizes {
        let mut bytes = vec![0u8; size];
        rng.fill(&mut bytes[..]);
        if peer.send(Message::binary(bytes)).await.is_err() {
            peer = reconnect(&server, line).await;
        }
    }
    // Same with random frames with a valid header.
    for size in (0..2000).step_by(37) {
        if peer
            .send(Message::binary(frame(rng.random(), rng.random(), size)))
            .await
            .is_err()
        {
            peer = reconnect(&server, line).await;
        }
    }
    drop(peer);

    // The server still serves: health, and the first call still relays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.get("/healthz", &[]).await.status, 200);
    let f = frame(5, 5, 1000);
    send(&mut a, f.clone()).await;
    assert_eq!(next_binary(&mut b).await, f);
    assert_eq!(PANICS.load(Ordering::SeqCst), before, "something panicked");
}

async fn reconnect(server: &TestServer, line: line_protocol::line_id::LineId) -> Ws {
    // The old socket's slot frees as soon as the server has closed it.
    for _ in 0..50 {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(server.url(line)).await {
            let _ = next_control(&mut ws).await;
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not rejoin the line");
}

#[tokio::test]
async fn a_client_that_trickles_its_request_is_cut_off() {
    let mut cfg = config();
    cfg.limits.header_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // The server closes the connection: a read returns end of file (or a reset) in time.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the trickling connection stayed open");
}
