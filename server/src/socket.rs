//! One WebSocket after the upgrade: a reader for the shared read loop (which checks and
//! forwards the client's frames), and a writer that drains this peer's [`Outbox`]. When the
//! reader ends, the socket is closed with a code that says why, the line slot is freed, and the
//! writer gets a bounded time to finish.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::outbox::{Next, Outbox, Outgoing};
use crate::peer::{End, Read, Reader, Session, Stats, Watch, close_reason, log_end, read_loop};

/// Close codes the relay uses (the wire crate owns them).
pub use line_protocol::control::close_code;

/// The WebSocket's reading half as a [`Reader`].
struct WsReader<'a>(&'a mut SplitStream<WebSocket>);

impl Reader for WsReader<'_> {
    async fn read(&mut self) -> Read {
        let message = match self.0.next().await {
            None => return Read::End(End::Gone),
            Some(Err(e)) => {
                return Read::End(match too_big(e) {
                    Some(detail) => End::Violation(close_code::TOO_BIG, detail),
                    None => End::Gone,
                });
            }
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(frame) => Read::Frame(frame),
            Message::Pong(_) | Message::Ping(_) => Read::Alive,
            Message::Text(_) => Read::End(End::Violation(
                close_code::UNSUPPORTED_DATA,
                "peers talk only in encrypted binary frames".into(),
            )),
            Message::Close(_) => Read::End(End::ClientClosed),
        }
    }
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
        &mut WsReader(&mut stream),
        Watch {
            membership: &membership,
            limits: &limits,
            metrics: &metrics,
            stats: &stats,
            shutdown: &shutdown,
            writer_done: &writer_done,
            idle_timeout: Some(limits.idle_timeout),
        },
    )
    .await;

    let closing = end.closing(&limits);
    if end.by_server() {
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
    log_end(started, &stats, &outbox, &end);
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
                stats.sent(&metrics, len);
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
