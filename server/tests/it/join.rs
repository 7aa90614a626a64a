//! Who may take a slot on a line: the join token, and a participant taking its own slot back.

use std::time::{Duration, Instant};

use line_protocol::control::RelayMessage;

use crate::common::*;

#[tokio::test]
async fn another_join_token_gets_423_and_the_call_goes_on() {
    let server = start(config());
    let line = random_line();
    let mut a = server.join(line, RelayMessage::Waiting).await;
    // Someone with the API key and the line id, but not the leaf: a made-up token.
    let squatter = format!(
        "ws://{}/ws?apikey={}&line={line}&join={}&participant={}",
        server.addr,
        server.key.expose(),
        token_of(random_line()),
        random_participant()
    );
    let (status, body) = refused_status(&squatter, None).await;
    assert_eq!(status, 423);
    assert!(body.contains("another link"), "{body}");
    // A browser whose WebSocket failed asks with a plain GET; it learns 423 too.
    let path = squatter
        .split_once(&server.addr.to_string())
        .expect("url")
        .1;
    assert_eq!(server.get(path, &[]).await.status, 423);
    // The person with the link still gets in, and the call works.
    let mut b = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    let f = frame(1, 0, 100);
    send(&mut b, f.clone()).await;
    assert_eq!(next_binary(&mut a).await, f);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("line_upgrades_refused_total{status=\"423\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn join_and_participant_must_be_well_formed() {
    let server = start(config());
    let line = random_line();
    let base = format!("ws://{}/ws?apikey={}", server.addr, server.key.expose());
    for query in [
        format!("line={line}"),
        format!("line={line}&join=short"),
        format!("line={line}&join={}&participant=!", token_of(line)),
    ] {
        let (status, body) = refused_status(&format!("{base}&{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    // Without a participant id a socket joins, but its slot can never be taken over.
    let url = format!("{base}&line={line}&join={}", token_of(line));
    let (mut anonymous, _) = tokio_tungstenite::connect_async(&url).await.expect("joins");
    assert_eq!(next_control(&mut anonymous).await, RelayMessage::Waiting);
    let _b = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(refused_status(&url, None).await.0, 409);
}

#[tokio::test]
async fn a_participant_takes_its_own_slot_back_at_once() {
    let server = start(config());
    let line = random_line();
    let me = random_participant();
    let (mut old, _) = tokio_tungstenite::connect_async(server.url_as(line, me))
        .await
        .expect("joins");
    assert_eq!(next_control(&mut old).await, RelayMessage::Waiting);
    let mut other = server.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut old).await, RelayMessage::PeerJoined);

    // The old connection goes quiet (its network changed: it reads and sends nothing more).
    // Another participant cannot get in, but `me` can, at once, on a new connection.
    assert_eq!(refused_status(&server.url(line), None).await.0, 409);
    let started = Instant::now();
    let (mut new, _) = tokio_tungstenite::connect_async(server.url_as(line, me))
        .await
        .expect("takes its slot back");
    assert_eq!(next_control(&mut new).await, RelayMessage::PeerJoined);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The other person is greeted again (the new connection brings new keys) and the call goes on.
    assert_eq!(next_control(&mut other).await, RelayMessage::PeerJoined);
    for i in 0..5 {
        let f = frame(7, i, 200);
        send(&mut new, f.clone()).await;
        assert_eq!(next_binary(&mut other).await, f);
        let g = frame(8, i, 300);
        send(&mut other, g.clone()).await;
        assert_eq!(next_binary(&mut new).await, g);
    }
    // The old socket was closed with 4409, and told why.
    let (code, error) = expect_close(&mut old).await;
    assert_eq!(code, 4409);
    assert!(
        matches!(error, Some(RelayMessage::Error { code: 4409, ref reason }) if reason.contains("newer connection")),
        "{error:?}"
    );
    // Its end freed nothing: the other person did not hear `peer-left`, and the call goes on.
    drop(old);
    let f = frame(7, 9, 200);
    send(&mut new, f.clone()).await;
    assert_eq!(next_binary(&mut other).await, f);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("line_slots_taken_over_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("line_open_connections 2"), "{metrics}");
}

#[tokio::test]
async fn a_stale_socket_that_still_sends_reaches_nobody_after_the_takeover() {
    let server = start(config());
    let line = random_line();
    let me = random_participant();
    let (mut old, _) = tokio_tungstenite::connect_async(server.url_as(line, me))
        .await
        .expect("joins");
    assert_eq!(next_control(&mut old).await, RelayMessage::Waiting);
    let mut other = server.join(line, RelayMessage::PeerJoined).await;
    let (mut new, _) = tokio_tungstenite::connect_async(server.url_as(line, me))
        .await
        .expect("takes its slot back");
    assert_eq!(next_control(&mut new).await, RelayMessage::PeerJoined);
    assert_eq!(next_control(&mut other).await, RelayMessage::PeerJoined);
    // Frames the old connection still sends (a relay cannot tell a stale one from a live one
    // by its frames) never reach the other person: only the new connection's do.
    send(&mut old, frame(1, 1, 64)).await;
    let f = frame(2, 1, 64);
    send(&mut new, f.clone()).await;
    assert_eq!(next_binary(&mut other).await, f);
}
