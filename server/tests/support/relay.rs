//! Relay clients' helpers for the server's tests, shared by the `it` and `deploy` binaries:
//! frames as a client sends them, and reading what the relay sends back.
#![allow(
    dead_code,
    reason = "shared by two test binaries, each using part of it"
)]

use std::time::Duration;

use futures_util::StreamExt as _;
use line_protocol::control::RelayMessage;
use line_protocol::header::Header;
use line_protocol::join::{JoinToken, ParticipantId};
use line_protocol::line_id::LineId;
use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How long the relay may take to send what a test waits for.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) fn random_line() -> LineId {
    LineId::from_bytes(rand::rng().random())
}

/// The join token the tests use for `line`: any 16 bytes do, as long as both peers agree.
pub(crate) fn token_of(line: LineId) -> JoinToken {
    let mut bytes = *line.as_bytes();
    bytes.reverse();
    JoinToken::from_bytes(bytes)
}

pub(crate) fn random_participant() -> ParticipantId {
    ParticipantId::from_random(rand::rng().random())
}

/// `line=..&join=..&participant=..` for a new participant on `line`.
pub(crate) fn join_params(line: LineId) -> String {
    join_params_as(line, random_participant())
}

/// `line=..&join=..&participant=..` for `participant` on `line`.
pub(crate) fn join_params_as(line: LineId, participant: ParticipantId) -> String {
    format!(
        "line={line}&join={}&participant={participant}",
        token_of(line)
    )
}

/// A frame as a client would send it: a valid SFrame header, then random "ciphertext".
pub(crate) fn frame(kid: u64, ctr: u64, body_len: usize) -> Vec<u8> {
    let mut out = vec![0u8; Header::MAX_LEN];
    let n = Header::new(kid, ctr).encode(&mut out);
    out.truncate(n);
    let mut body = vec![0u8; body_len];
    rand::rng().fill(&mut body[..]);
    out.extend_from_slice(&body);
    out
}

pub(crate) async fn next_message<S>(ws: &mut WebSocketStream<S>) -> Option<Message>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message arrives in time")?;
        match message {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(message) => return Some(message),
            Err(_) => return None,
        }
    }
}

pub(crate) async fn next_control<S>(ws: &mut WebSocketStream<S>) -> RelayMessage
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next_message(ws).await {
        Some(Message::Text(text)) => RelayMessage::from_json(&text).expect("a relay message"),
        other => panic!("expected a control message, got {other:?}"),
    }
}

pub(crate) async fn next_binary<S>(ws: &mut WebSocketStream<S>) -> Vec<u8>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next_message(ws).await {
        Some(Message::Binary(data)) => data.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

/// Reads until the close frame; returns its code and the error message sent before it, if any.
pub(crate) async fn expect_close<S>(ws: &mut WebSocketStream<S>) -> (u16, Option<RelayMessage>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut error = None;
    loop {
        match next_message(ws).await {
            Some(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                return (code, error);
            }
            Some(Message::Text(text)) => error = RelayMessage::from_json(&text).ok(),
            Some(Message::Binary(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
