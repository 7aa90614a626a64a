//! What can go wrong while loading a relay.

use std::fmt;
use std::io;

use line_protocol::sframe::EncryptError;
use tokio_tungstenite::tungstenite;

use crate::procfs::ProcError;

/// Why a call could not be set up or a run could not be measured.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The TCP connection to the relay failed.
    Connect(io::Error),
    /// The WebSocket handshake or a WebSocket read or write failed.
    WebSocket(tungstenite::Error),
    /// The relay answered the upgrade with this HTTP status instead of switching protocols.
    Refused {
        /// The HTTP status (409: the line already has two peers).
        status: u16,
    },
    /// The relay sent something a peer did not expect at that point.
    Unexpected(String),
    /// A read or write on the raw-TCP baseline failed.
    Io(io::Error),
    /// The relay closed the connection.
    Closed,
    /// A frame could not be encrypted (a bug: the frames are far below every limit).
    Encrypt(EncryptError),
    /// A WebSocket target was given without an API key.
    MissingApiKey,
    /// The server's CPU or memory could not be read from /proc.
    Proc(ProcError),
    /// A WebTransport session could not be set up, or broke.
    WebTransport(String),
    /// No frame at the link's rate fits a datagram, so the call cannot go over WebTransport.
    NoDatagramFrame {
        /// The link's rate, Hz.
        rate: u32,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect to the relay: {e}"),
            Self::WebSocket(e) => write!(f, "websocket: {e}"),
            Self::Refused { status } => write!(f, "the relay refused the peer with HTTP {status}"),
            Self::Unexpected(what) => write!(f, "unexpected from the relay: {what}"),
            Self::Io(e) => write!(f, "relay connection: {e}"),
            Self::Closed => f.write_str("the relay closed the connection"),
            Self::Encrypt(e) => write!(f, "cannot encrypt a frame: {e}"),
            Self::MissingApiKey => f.write_str("a websocket target needs an api key"),
            Self::Proc(e) => write!(f, "{e}"),
            Self::WebTransport(e) => write!(f, "webtransport: {e}"),
            Self::NoDatagramFrame { rate } => write!(
                f,
                "no frame at {rate} Hz fits a datagram ({} bytes): call over a websocket",
                line_protocol::webtransport::MAX_DATAGRAM_FRAME_LEN
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) | Self::Io(e) => Some(e),
            Self::WebSocket(e) => Some(e),
            Self::Encrypt(e) => Some(e),
            Self::Proc(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProcError> for LoadError {
    fn from(e: ProcError) -> Self {
        Self::Proc(e)
    }
}
