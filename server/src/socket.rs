//! One WebSocket after the upgrade, as a `Transport` for the shared session (`peer::run_session`):
//! a reader for the read loop (which checks and forwards the client's frames), a writer that
//! drains this peer's outbox and pings, and a close that waits for the client's answer, so that
//! it reads why it was closed.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::config::Limits;
use crate::outbox::{Next, Outgoing};
use crate::peer::{
    End, Ending, Read, Reader, Session, Transport, WriterParts, close_reason, run_session,
};

/// Close codes the relay uses (the wire crate owns them).
pub use line_protocol::control::close_code;

/// An upgraded WebSocket as a [`Transport`]: its writing half goes to the writer task.
struct WsTransport {
    sink: Option<SplitSink<WebSocket, Message>>,
    stream: SplitStream<WebSocket>,
}

impl Reader for WsTransport {
    async fn read(&mut self) -> Read {
        let message = match self.stream.next().await {
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

impl Transport for WsTransport {
    fn idle_timeout(&self, limits: &Limits) -> Option<Duration> {
        Some(limits.idle_timeout)
    }

    fn start_writer(&mut self, parts: WriterParts) -> JoinHandle<()> {
        let sink = self.sink.take().expect("the writer starts once");
        tokio::spawn(write_loop(sink, parts))
    }

    async fn close(&mut self, ending: Ending<'_>) {
        let Ending {
            end,
            closing,
            outbox,
            writer,
            limits,
        } = ending;
        let Some(closing) = closing else {
            writer.abort();
            return;
        };
        let deadline = Instant::now() + limits.close_grace;
        outbox.close(closing);
        // Keep reading until the client answers our close frame: dropping the TCP connection
        // first could reset it before the client has read why it was closed.
        if !matches!(end, End::ClientClosed) {
            let _ = tokio::time::timeout_at(deadline, drain(&mut self.stream)).await;
        }
        if tokio::time::timeout_at(deadline, &mut *writer)
            .await
            .is_err()
        {
            // A peer that does not read cannot receive its close frame; stop trying.
            writer.abort();
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
        let (sink, stream) = socket.split();
        let transport = WsTransport {
            sink: Some(sink),
            stream,
        };
        run_session(transport, session).await;
    }
    .instrument(span)
    .await;
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

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, parts: WriterParts) {
    let WriterParts {
        outbox,
        limits,
        metrics,
        stats,
        done,
    } = parts;
    let ping_interval = limits.ping_interval;
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
