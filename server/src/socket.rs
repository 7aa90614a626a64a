//! One WebSocket after the upgrade: a reader that checks and forwards the client's frames, and a
//! writer that drains this peer's [`Outbox`]. When the reader ends, the socket is closed with a
//! code that says why, the line slot is freed, and the writer gets a bounded time to finish.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use line_protocol::header::Header;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Limits;
use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Closing, Next, Outbox, Outgoing};
use crate::per_client::ClientSlot;
use crate::registry::Membership;

/// Close codes the relay uses (the wire crate owns them).
pub use line_protocol::control::close_code;

/// The SFrame authentication tag every frame ends with (AES-256-GCM, 16 bytes).
const TAG_LEN: usize = 16;

/// Everything one socket needs.
pub(crate) struct Session {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) shutdown: CancellationToken,
    pub(crate) peer: IpAddr,
    pub(crate) membership: Membership,
    pub(crate) outbox: Arc<Outbox>,
    /// This client's share of its per-address socket cap, held while the socket is open.
    pub(crate) client_slot: ClientSlot,
}

/// Why the reader stopped.
#[derive(Debug)]
enum End {
    /// The client sent a close frame.
    ClientClosed,
    /// The stream ended or broke without a close frame.
    Gone,
    /// The writer could not write any more.
    WriterGone,
    /// The client broke a rule; close with this code and reason.
    Violation(u16, String),
    /// No frames and no pongs for the idle timeout.
    Idle,
    /// Alone on the line for `max_wait_alone`.
    WaitedTooLong,
    /// A newer connection of the same participant took the slot.
    TakenOver,
    /// The server is shutting down.
    Shutdown,
}

/// What one socket did, for its last log line.
#[derive(Debug, Default)]
struct Stats {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    no_peer_drops: AtomicU64,
}

/// Runs one upgraded socket to its end.
pub(crate) async fn run(socket: WebSocket, session: Session) {
    let line = session.membership.line_id();
    let span = tracing::info_span!("socket", peer = %session.peer);
    async move {
        // Line ids only at debug (see `routes::ws`).
        tracing::debug!(%line, "socket on line");
        run_inner(socket, session).await;
    }
    .instrument(span)
    .await;
}

async fn run_inner(socket: WebSocket, session: Session) {
    let Session {
        metrics,
        limits,
        shutdown,
        membership,
        outbox,
        client_slot,
        ..
    } = session;
    metrics.connection_opened();
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    let (sink, mut stream) = socket.split();
    let writer_done = CancellationToken::new();
    let mut writer = tokio::spawn(write_loop(
        sink,
        Arc::clone(&outbox),
        limits.ping_interval,
        Arc::clone(&metrics),
        Arc::clone(&stats),
        writer_done.clone(),
    ));

    let end = read_loop(
        &mut stream,
        &membership,
        &limits,
        &metrics,
        &stats,
        &shutdown,
        &writer_done,
    )
    .await;

    let closing = match &end {
        End::ClientClosed => Some(Closing {
            code: close_code::NORMAL,
            reason: String::new(),
            explain: false,
        }),
        End::Gone | End::WriterGone => None,
        End::Violation(code, reason) => Some(Closing {
            code: *code,
            reason: reason.clone(),
            explain: true,
        }),
        End::Idle => Some(Closing {
            code: close_code::IDLE,
            reason: format!("no frames or pongs for {} s", limits.idle_timeout.as_secs()),
            explain: true,
        }),
        End::WaitedTooLong => Some(Closing {
            code: close_code::WAITED_TOO_LONG,
            reason: format!(
                "nobody else joined this line within {}",
                human_duration(limits.max_wait_alone)
            ),
            explain: true,
        }),
        End::TakenOver => Some(Closing {
            code: close_code::TAKEN_OVER,
            reason: "replaced by a newer connection of the same participant".into(),
            explain: true,
        }),
        End::Shutdown => Some(Closing {
            code: close_code::GOING_AWAY,
            reason: "server is shutting down".into(),
            explain: true,
        }),
    };
    if !matches!(end, End::ClientClosed | End::Gone | End::WriterGone) {
        metrics.closed_by_server();
    }
    // Free the slot now, so the other peer hears `peer-left` without waiting for our close.
    drop(membership);
    let deadline = Instant::now() + limits.close_grace;
    match closing {
        Some(closing) => {
            let reply_expected = !matches!(end, End::ClientClosed);
            outbox.close(closing);
            // Keep reading until the client answers our close frame: dropping the TCP connection
            // first could reset it before the client has read why it was closed.
            if reply_expected {
                let _ = tokio::time::timeout_at(deadline, drain(&mut stream)).await;
            }
            if tokio::time::timeout_at(deadline, &mut writer)
                .await
                .is_err()
            {
                // A peer that does not read cannot receive its close frame; stop trying.
                writer.abort();
            }
        }
        None => writer.abort(),
    }
    metrics.connection_closed();
    drop(client_slot);
    tracing::info!(
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        frames_in = stats.frames_in.load(Ordering::Relaxed),
        frames_out = stats.frames_out.load(Ordering::Relaxed),
        dropped_queue_full = outbox.dropped(),
        dropped_no_peer = stats.no_peer_drops.load(Ordering::Relaxed),
        end = ?end,
        "connection ended"
    );
}

async fn read_loop(
    stream: &mut SplitStream<WebSocket>,
    membership: &Membership,
    limits: &Limits,
    metrics: &Metrics,
    stats: &Stats,
    shutdown: &CancellationToken,
    writer_done: &CancellationToken,
) -> End {
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let alone = tokio::time::sleep(limits.max_wait_alone);
    tokio::pin!(alone);
    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => return End::Shutdown,
            () = writer_done.cancelled() => return End::WriterGone,
            () = &mut idle => return End::Idle,
            () = membership.taken_over() => return End::TakenOver,
            () = &mut alone => {
                // The line may have had two people since the timer was set: look again.
                let now = Instant::now();
                match membership.alone_since() {
                    Some(since) if now >= since + limits.max_wait_alone => {
                        return End::WaitedTooLong;
                    }
                    Some(since) => alone.as_mut().reset(since + limits.max_wait_alone),
                    None => alone.as_mut().reset(now + limits.max_wait_alone),
                }
                continue;
            }
            message = stream.next() => message,
        };
        let message = match message {
            None => return End::Gone,
            Some(Err(e)) => {
                return match too_big(e) {
                    Some(detail) => End::Violation(close_code::TOO_BIG, detail),
                    None => End::Gone,
                };
            }
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(frame) => {
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                stats.frames_in.fetch_add(1, Ordering::Relaxed);
                if let Err((code, reason)) = check_frame(&frame, limits.max_frame_len) {
                    return End::Violation(code, reason);
                }
                forward(frame, membership, metrics, stats);
            }
            Message::Pong(_) | Message::Ping(_) => {
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
            }
            Message::Text(_) => {
                return End::Violation(
                    close_code::UNSUPPORTED_DATA,
                    "peers talk only in encrypted binary frames".into(),
                );
            }
            Message::Close(_) => return End::ClientClosed,
        }
    }
}

/// "3 h", "90 min", "45 s": a limit as a person reads it.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else if secs >= 1 {
        format!("{secs} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A close frame's reason holds at most 123 bytes; cut at a character boundary.
fn close_reason(reason: &str) -> &str {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Reads and discards until the client's close frame or the end of the stream.
async fn drain(stream: &mut SplitStream<WebSocket>) {
    while let Some(Ok(message)) = stream.next().await {
        if matches!(message, Message::Close(_)) {
            return;
        }
    }
}

/// Whether a read error is a message over the size cap (tungstenite stops reading it at the
/// frame header, so the oversized payload is never buffered).
fn too_big(error: axum::Error) -> Option<String> {
    match error.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) if matches!(*e, tungstenite::Error::Capacity(_)) => {
            Some(format!("frame too large: {e}"))
        }
        _ => None,
    }
}

/// The relay's only look at a frame: its size and SFrame header.
fn check_frame(frame: &[u8], max_len: usize) -> Result<(), (u16, String)> {
    if frame.len() > max_len {
        return Err((
            close_code::TOO_BIG,
            format!(
                "frame of {} bytes is over the {max_len}-byte limit",
                frame.len()
            ),
        ));
    }
    let (_, header_len) = Header::parse(frame)
        .map_err(|e| (close_code::MALFORMED, format!("malformed frame: {e}")))?;
    if frame.len() - header_len < TAG_LEN {
        return Err((
            close_code::MALFORMED,
            format!("malformed frame: shorter than its {TAG_LEN}-byte tag"),
        ));
    }
    Ok(())
}

fn forward(frame: Bytes, membership: &Membership, metrics: &Metrics, stats: &Stats) {
    match membership.other() {
        Some(other) => {
            let dropped = other.push_frame(frame);
            if dropped > 0 {
                metrics.frames_dropped(DropReason::QueueFull, dropped);
            }
        }
        None => {
            stats.no_peer_drops.fetch_add(1, Ordering::Relaxed);
            metrics.frames_dropped(DropReason::NoPeer, 1);
        }
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    outbox: Arc<Outbox>,
    ping_interval: Duration,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    done: CancellationToken,
) {
    let _done = done.drop_guard();
    let mut next_ping = Instant::now() + ping_interval;
    loop {
        if Instant::now() >= next_ping {
            if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                return;
            }
            next_ping = Instant::now() + ping_interval;
        }
        let message = match outbox.pop() {
            Next::Send(Outgoing::Frame(frame)) => {
                let len = frame.len();
                if sink.feed(Message::Binary(frame)).await.is_err() {
                    return;
                }
                metrics.frame_relayed(len);
                stats.frames_out.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Next::Send(Outgoing::Control(text)) => Message::Text(text.into()),
            Next::Close(closing) => {
                if closing.explain {
                    let error = RelayMessage::Error {
                        code: closing.code,
                        reason: closing.reason.clone(),
                    };
                    let _ = sink.send(Message::Text(error.to_json().into())).await;
                }
                let sent = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: closing.code,
                        reason: close_reason(&closing.reason).into(),
                    })))
                    .await;
                if sent.is_err() {
                    // The client closed first: tungstenite refuses a second close frame, having
                    // queued the answer to the client's (its own code echoed). Send that, or
                    // the client sees the connection drop (1006) instead of a clean close.
                    let _ = sink.flush().await;
                }
                return;
            }
            Next::Empty => {
                if sink.flush().await.is_err() {
                    return;
                }
                tokio::select! {
                    () = outbox.ready() => {}
                    () = tokio::time::sleep_until(next_ping) => {}
                }
                continue;
            }
        };
        if sink.feed(message).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: usize) -> Vec<u8> {
        let mut out = vec![0u8; Header::MAX_LEN];
        let n = Header::new(1234, 99).encode(&mut out);
        out.truncate(n);
        out.resize(n + payload_len, 0xab);
        out
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(cut));
    }

    #[test]
    fn durations_read_as_a_person_would() {
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 h");
        assert_eq!(human_duration(Duration::from_secs(90 * 60)), "90 min");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(human_duration(Duration::from_millis(300)), "300 ms");
    }

    #[test]
    fn frame_checks() {
        assert_eq!(check_frame(&frame(16), 100), Ok(()));
        assert_eq!(check_frame(&frame(200), 100).map_err(|e| e.0), Err(1009));
        assert_eq!(check_frame(&frame(15), 100).map_err(|e| e.0), Err(4400));
        assert_eq!(check_frame(&[], 100).map_err(|e| e.0), Err(4400));
        assert_eq!(check_frame(&[0xff, 1], 100).map_err(|e| e.0), Err(4400));
    }
}
