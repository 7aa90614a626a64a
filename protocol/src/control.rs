//! The few messages the relay sends to a client, as WebSocket text frames of JSON.
//!
//! Peers never talk in text: everything between them is an encrypted binary frame. These messages
//! carry only what the relay itself knows: whether the other person is there, and why it is about
//! to close the socket.
//!
//! ```
//! use line_protocol::control::RelayMessage;
//!
//! let text = RelayMessage::PeerJoined.to_json();
//! assert_eq!(text, r#"{"type":"peer-joined"}"#);
//! assert_eq!(RelayMessage::from_json(&text), Ok(RelayMessage::PeerJoined));
//! ```

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};

/// The WebSocket close codes the relay uses: one list for the relay and the client.
pub mod close_code {
    /// The client closed, or the relay closes a socket normally.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down: reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// The client sent a text frame; peers talk only in encrypted binary frames.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The client sent a frame larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// The client sent a binary frame that is not an SFrame frame.
    pub const MALFORMED: u16 = 4400;
    /// No frame and no pong for [`keepalive::IDLE_TIMEOUT_SECS`](super::keepalive::IDLE_TIMEOUT_SECS).
    pub const IDLE: u16 = 4408;
    /// A newer connection of the same participant took this socket's slot (a changed network).
    /// A client that still uses that socket should not reconnect: its call goes on elsewhere.
    pub const TAKEN_OVER: u16 = 4409;
    /// Nobody else joined the line within the server's waiting limit (hours): the client may
    /// offer to wait again.
    pub const WAITED_TOO_LONG: u16 = 4410;
}

/// How the relay tells a live socket from a dead one. A client needs to do nothing for it: every
/// browser answers WebSocket pings by itself, and any frame counts too.
pub mod keepalive {
    /// The relay sends a WebSocket ping this often, seconds.
    pub const PING_INTERVAL_SECS: u64 = 10;
    /// A socket that sent no frame and no pong for this long is closed with
    /// [`close_code::IDLE`](super::close_code::IDLE), seconds.
    pub const IDLE_TIMEOUT_SECS: u64 = 30;
}

/// A message from the relay to one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RelayMessage {
    /// You are alone on the line; the relay will say `peer-joined` when the other person arrives.
    Waiting,
    /// The other person is on the line: frames you send now reach them.
    PeerJoined,
    /// The other person left; you stay connected and wait for them (or someone with the link).
    PeerLeft,
    /// The relay is about to close the socket with `code`; `reason` says why, for a person.
    Error {
        /// The WebSocket close code that follows.
        code: u16,
        /// A short reason a person can read.
        reason: String,
    },
}

/// A text frame that is not a relay message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlDecodeError;

impl fmt::Display for ControlDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text frame is not a relay message")
    }
}

impl core::error::Error for ControlDecodeError {}

impl RelayMessage {
    /// The JSON text frame for this message.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a relay message always serializes")
    }

    /// Parses a text frame from the relay.
    pub fn from_json(text: &str) -> Result<Self, ControlDecodeError> {
        serde_json::from_str(text).map_err(|_| ControlDecodeError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn wire_names_are_fixed() {
        assert_eq!(RelayMessage::Waiting.to_json(), r#"{"type":"waiting"}"#);
        assert_eq!(RelayMessage::PeerLeft.to_json(), r#"{"type":"peer-left"}"#);
        let error = RelayMessage::Error {
            code: 4400,
            reason: "malformed frame".into(),
        };
        assert_eq!(
            error.to_json(),
            r#"{"type":"error","code":4400,"reason":"malformed frame"}"#
        );
        assert_eq!(RelayMessage::from_json(&error.to_json()), Ok(error));
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(RelayMessage::from_json("{"), Err(ControlDecodeError));
        assert_eq!(
            RelayMessage::from_json(r#"{"type":"nope"}"#),
            Err(ControlDecodeError)
        );
    }
}
