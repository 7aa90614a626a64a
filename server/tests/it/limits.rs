//! Bad frames, slow receivers and idle sockets: each costs only its own socket.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::MAX_FRAME_LEN;
use line_protocol::control::RelayMessage;
use line_server::outbox::QueueLimits;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Checks a call still relays both ways.
async fn still_relays(a: &mut Ws, b: &mut Ws, ctr: u64) {
    let f = frame(1, ctr, 2000);
    send(a, f.clone()).await;
    assert_eq!(next_binary(b).await, f);
    let f = frame(2, ctr, 2000);
    send(b, f.clone()).await;
    assert_eq!(next_binary(a).await, f);
}

#[tokio::test]
async fn bad_frames_get_their_close_codes_while_another_call_goes_on() {
    let server = start(config());
    let (mut a, mut b) = server.call().await;
    let cases: Vec<(Message, u16)> = vec![
        (Message::binary(vec![0x8f, 1, 2]), 4400),
        (Message::binary(Vec::new()), 4400),
        (Message::binary(frame(1, 1, 4)), 4400),
        (Message::binary(frame(1, 1, MAX_FRAME_LEN)), 1009),
        (Message::text("hello"), 1003),
    ];
    for (i, (message, expected)) in cases.into_iter().enumerate() {
        let (mut bad, mut partner) = server.call().await;
        bad.send(message).await.expect("send");
        let (code, error) = expect_close(&mut bad).await;
        assert_eq!(code, expected, "case {i}");
        match error {
            Some(RelayMessage::Error { code, reason }) => {
                assert_eq!(code, expected);
                assert!(!reason.is_empty());
            }
            other => panic!("case {i}: expected an error message first, got {other:?}"),
        }
        // The bad peer's partner stays, told the other left.
        assert_eq!(next_control(&mut partner).await, RelayMessage::PeerLeft);
        still_relays(&mut a, &mut b, i as u64).await;
    }
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("line_sockets_closed_by_server_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn largest_legal_frame_passes() {
    let server = start(config());
    let (mut a, mut b) = server.call().await;
    let f = frame(u64::MAX, u64::MAX, MAX_FRAME_LEN - 17);
    assert_eq!(f.len(), MAX_FRAME_LEN);
    send(&mut a, f.clone()).await;
    assert_eq!(next_binary(&mut b).await, f);
}

#[tokio::test]
async fn non_reading_peer_slows_nobody_and_its_queue_stays_bounded() {
    let mut cfg = config();
    cfg.limits.queue = QueueLimits::for_millis(200);
    let server = start(cfg);
    let (mut sender, mut stalled) = server.call().await;
    let (mut c, mut d) = server.call().await;

    // The sender pushes 3000 10 ms frames (12 MB) at a receiver that reads nothing.
    const N: u64 = 3000;
    let started = Instant::now();
    let mut worst_other = Duration::ZERO;
    for i in 0..N {
        sender
            .feed(Message::binary(frame(7, i, 4000)))
            .await
            .expect("the sender is never blocked");
        if i % 250 == 0 {
            sender.flush().await.expect("flush");
            // Meanwhile, another line's round trip stays fast.
            let t = Instant::now();
            still_relays(&mut c, &mut d, i).await;
            worst_other = worst_other.max(t.elapsed());
        }
    }
    sender.flush().await.expect("flush");
    let send_time = started.elapsed();
    assert!(
        send_time < Duration::from_secs(15),
        "sending took {send_time:?}"
    );
    assert!(
        worst_other < Duration::from_millis(500),
        "other line took {worst_other:?}"
    );

    // Wait until the server has taken every frame in and the drop count settles.
    let deadline = Instant::now() + PATIENCE;
    let mut previous = u64::MAX;
    let dropped = loop {
        let now = server
            .metrics
            .dropped(line_server::metrics::DropReason::QueueFull);
        if now > 0 && now == previous {
            break now;
        }
        previous = now;
        assert!(Instant::now() < deadline, "no drops counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(dropped > 0);
    let text = server.metrics_text().await;
    assert!(text.contains("line_frames_dropped_total{reason=\"queue_full\"}"));

    // Now the stalled peer reads: it gets the newest frames, and every frame is either delivered
    // or counted as dropped.
    let mut delivered = 0u64;
    let mut last = 0;
    while last != N - 1 {
        let f = next_binary(&mut stalled).await;
        last = ctr_of(&f);
        delivered += 1;
    }
    let dropped = server
        .metrics
        .dropped(line_server::metrics::DropReason::QueueFull);
    eprintln!(
        "sent {N} frames in {send_time:?}; other line worst round trip {worst_other:?}; \
         delivered {delivered}, dropped {dropped}"
    );
    assert_eq!(
        delivered + dropped,
        N,
        "delivered {delivered}, dropped {dropped}"
    );
    // What was held for it was bounded: the queue (80 frames) plus a small kernel send buffer
    // and the client's receive window (about 200 frames here), far below what was sent.
    assert!(
        delivered < 600,
        "delivered {delivered} of {N}: the backlog was not bounded"
    );
}

#[tokio::test]
async fn silent_sockets_are_closed_and_answering_ones_stay() {
    let mut cfg = config();
    cfg.limits.ping_interval = Duration::from_millis(100);
    cfg.limits.idle_timeout = Duration::from_millis(600);
    let server = start(cfg);
    let line = random_line();
    // `quiet` never reads, so it never answers pings.
    let mut quiet = server.join(line, RelayMessage::Waiting).await;
    let mut lively = server.join(line, RelayMessage::PeerJoined).await;
    let stop_reading = Instant::now() + Duration::from_millis(1500);
    // `lively` reads (tungstenite answers pings as it reads) and sends nothing.
    let mut saw_left = false;
    while Instant::now() < stop_reading {
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(50), lively.next()).await
            && RelayMessage::from_json(&text) == Ok(RelayMessage::PeerLeft)
        {
            saw_left = true;
        }
    }
    assert!(saw_left, "the silent peer was not removed");
    let mut codes = Vec::new();
    while let Some(message) = next_message(&mut quiet).await {
        match message {
            Message::Close(Some(frame)) => {
                codes.push(u16::from(frame.code));
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(codes, vec![4408]);
    // `lively` is still connected and served.
    lively
        .send(Message::Ping(b"still here".to_vec().into()))
        .await
        .expect("still open");
    let mut pong = false;
    for _ in 0..10 {
        if let Ok(Some(Ok(Message::Pong(_)))) =
            tokio::time::timeout(Duration::from_millis(200), lively.next()).await
        {
            pong = true;
            break;
        }
    }
    assert!(pong);
}
