//! Two peers on a line: relay, control messages, third peer, shutdown.

use std::time::Duration;

use futures_util::SinkExt as _;
use line_protocol::control::RelayMessage;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn frames_relay_both_ways_unchanged_and_never_echo() {
    let server = start(config());
    let (mut a, mut b) = server.call().await;
    for i in 0..20 {
        let to_b = frame(1, i, 4000);
        send(&mut a, to_b.clone()).await;
        assert_eq!(next_binary(&mut b).await, to_b);
        let to_a = frame(2, i, 100 + i as usize);
        send(&mut b, to_a.clone()).await;
        assert_eq!(next_binary(&mut a).await, to_a);
    }
    // Nothing came back to its sender: after a ping round trip, no frame is pending on either side.
    a.send(Message::Ping(b"x".to_vec().into()))
        .await
        .expect("ping");
    match tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut a),
    )
    .await
    {
        Ok(Some(Ok(Message::Pong(_)))) | Err(_) => {}
        other => panic!("a got something unexpected: {other:?}"),
    }
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("line_frames_relayed_total 40"),
        "{metrics}"
    );
    assert!(metrics.contains("line_open_connections 2"), "{metrics}");
    assert!(metrics.contains("line_active_lines 1"), "{metrics}");
}

#[tokio::test]
async fn waiting_joined_left_and_rejoin() {
    let server = start(config());
    let line = random_line();
    let mut a = server.join(line, RelayMessage::Waiting).await;
    let mut b = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    b.close(None).await.expect("close");
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerLeft);
    // a stays connected and a newcomer takes the free slot.
    let mut c = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    let f = frame(9, 1, 64);
    send(&mut c, f.clone()).await;
    assert_eq!(next_binary(&mut a).await, f);
    // A peer that vanishes without a close frame also frees its slot.
    drop(c);
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerLeft);
}

#[tokio::test]
async fn third_peer_gets_409_and_call_goes_on() {
    let server = start(config());
    let line = random_line();
    let mut a = server.join(line, RelayMessage::Waiting).await;
    let mut b = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    let (status, body) = refused_status(&server.url(line), None).await;
    assert_eq!(status, 409);
    assert!(body.contains("two people"), "{body}");
    // A browser whose WebSocket failed asks with a plain GET; it must learn 409 too.
    let path = format!("/ws?apikey={}&{}", server.key.expose(), join_params(line));
    let plain = server.get(&path, &[]).await;
    assert_eq!(plain.status, 409, "{}", plain.body_text());
    let f = frame(3, 3, 500);
    send(&mut a, f.clone()).await;
    assert_eq!(next_binary(&mut b).await, f);
    assert!(
        server
            .metrics_text()
            .await
            .contains("line_upgrades_refused_total{status=\"409\"} 2")
    );
}

#[tokio::test]
async fn plain_get_on_a_free_line_is_not_409() {
    let server = start(config());
    let line = random_line();
    let path = format!("/ws?apikey={}&{}", server.key.expose(), join_params(line));
    let plain = server.get(&path, &[]).await;
    assert_ne!(plain.status, 409);
    assert!(
        plain.status >= 400,
        "a plain GET never upgrades: {}",
        plain.status
    );
    // It took no slot: two peers still fit.
    let _a = server.join(line, RelayMessage::Waiting).await;
    let _b = server.join(line, RelayMessage::PeerJoined).await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let mut cfg = config();
    cfg.limits.shutdown_grace = Duration::from_secs(2);
    let server = start(cfg);
    let (mut a, mut b) = server.call().await;
    let mut lone = server.join(random_line(), RelayMessage::Waiting).await;
    let started = std::time::Instant::now();
    server.stop.cancel();
    for ws in [&mut a, &mut b, &mut lone] {
        let (code, error) = expect_close(ws).await;
        assert_eq!(code, 1001);
        assert!(matches!(
            error,
            Some(RelayMessage::Error { code: 1001, .. })
        ));
    }
    let result = tokio::time::timeout(Duration::from_secs(4), server.task)
        .await
        .expect("serve returns within the bound");
    assert!(result.expect("no panic").is_ok());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Prints relay round-trip figures (`cargo test -p line-server --test it -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn relay_round_trip_figures() {
    let server = start(config());
    let (mut a, mut b) = server.call().await;
    let mut rtts = Vec::new();
    for i in 0..2000 {
        // A 10 ms frame of 200 kHz mono PCM: 4000 bytes plus header and tag.
        let f = frame(1, i, 4016);
        let t = std::time::Instant::now();
        send(&mut a, f).await;
        let echoed = next_binary(&mut b).await;
        send(&mut b, echoed).await;
        let back = next_binary(&mut a).await;
        rtts.push(t.elapsed());
        assert_eq!(ctr_of(&back), i);
    }
    rtts.sort();
    let pct = |p: usize| rtts[rtts.len() * p / 100];
    eprintln!(
        "two relay hops, 4 KB frames: p50 {:?}, p99 {:?}, max {:?}",
        pct(50),
        pct(99),
        rtts[rtts.len() - 1]
    );
}
