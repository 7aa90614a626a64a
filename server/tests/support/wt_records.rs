//! The relay's stream of records on a WebTransport session, as a test client reads it; shared
//! by the `it` and `container` binaries.
#![allow(
    dead_code,
    reason = "shared by two test binaries, each using part of it"
)]

use std::time::Duration;

use line_protocol::control::RelayMessage;
use line_protocol::webtransport::{Record, RecordKind};
use wtransport::RecvStream;

/// How long the relay may take to send the next record.
const PATIENCE: Duration = Duration::from_secs(5);

/// The relay's unidirectional stream and what has arrived of its next record.
pub(crate) struct Records {
    stream: RecvStream,
    buffered: Vec<u8>,
}

impl Records {
    pub(crate) const fn new(stream: RecvStream) -> Self {
        Self {
            stream,
            buffered: Vec::new(),
        }
    }

    /// The next record, `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<(RecordKind, Vec<u8>)> {
        loop {
            if let Some((record, used)) = Record::parse(&self.buffered).expect("records") {
                let out = (record.kind, record.payload.to_vec());
                self.buffered.drain(..used);
                return Some(out);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("a record arrives in time");
            match read {
                Ok(Some(n)) => self.buffered.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// The next record, which must be a control message.
    pub(crate) async fn next_control(&mut self) -> RelayMessage {
        match self.next().await {
            Some((RecordKind::Control, json)) => {
                RelayMessage::from_json(std::str::from_utf8(&json).expect("utf-8"))
                    .expect("a relay message")
            }
            other => panic!("expected a control record, got {other:?}"),
        }
    }
}
