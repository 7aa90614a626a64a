//! What the load generator talks to: line-server, the Node `ws` baseline, or the raw-TCP baseline.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::Serialize;

/// Which relay, and so which wire the peers speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TargetKind {
    /// line-server: WebSocket on `/ws?apikey=..&line=..`, JSON control messages.
    Line,
    /// The Node.js `ws` baseline in bench/baselines/node-ws: the same wire as line-server.
    NodeWs,
    /// The raw-TCP baseline: line id and newline, then 4-byte big-endian length-prefixed frames.
    Tcp,
    /// line-server over WebTransport: frames as datagrams, control messages as records on the
    /// relay's stream (the port and certificate hash from `GET /webtransport` at the address).
    LineWebTransport,
}

impl TargetKind {
    /// The name used on the command line and in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::NodeWs => "node-ws",
            Self::Tcp => "tcp",
            Self::LineWebTransport => "line-wt",
        }
    }

    /// Whether peers present the relay's API key.
    #[must_use]
    pub const fn needs_apikey(self) -> bool {
        matches!(self, Self::Line | Self::NodeWs | Self::LineWebTransport)
    }

    /// Whether peers speak WebSocket (line-server's wire) to this relay.
    #[must_use]
    pub const fn is_websocket(self) -> bool {
        matches!(self, Self::Line | Self::NodeWs)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A target kind that is not `line`, `node-ws` or `tcp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTarget(String);

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown target {:?}: expected line, line-wt, node-ws or tcp",
            self.0
        )
    }
}

impl std::error::Error for UnknownTarget {}

impl FromStr for TargetKind {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "line" => Ok(Self::Line),
            "node-ws" => Ok(Self::NodeWs),
            "tcp" => Ok(Self::Tcp),
            "line-wt" => Ok(Self::LineWebTransport),
            other => Err(UnknownTarget(other.to_owned())),
        }
    }
}

/// The root API key for a WebSocket relay; never printed (`Debug` shows no letters).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment.
    #[must_use]
    pub const fn new(key: String) -> Self {
        Self(key)
    }

    /// The key itself, for the request URL only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// A running relay to load.
#[derive(Clone, Debug)]
pub struct Target {
    /// Which relay it is.
    pub kind: TargetKind,
    /// Its listening address.
    pub addr: SocketAddr,
    /// The API key (WebSocket relays only).
    pub apikey: Option<ApiKey>,
    /// What QUIC may hold of each peer's datagrams not yet sent (line-wt only): beyond it the
    /// oldest are dropped. [`Target::LOAD_DATAGRAM_BUFFER`] unless a caller models one peer.
    pub datagram_send_buffer: usize,
}

impl Target {
    /// The datagram buffer of a load peer. One runtime drives every peer of a load, so when it
    /// wakes late all of them send at once; a real peer's few frames (line-server keeps 4 KiB)
    /// would then drop datagrams inside the load generator, and its loss would be counted as
    /// the relay's. 64 KiB is 64 frames of 2.5 ms: latency shows such a stall instead.
    pub const LOAD_DATAGRAM_BUFFER: usize = 64 * 1024;

    /// line-server (or the Node baseline, with `kind`) at `addr` with this key.
    #[must_use]
    pub const fn websocket(kind: TargetKind, addr: SocketAddr, apikey: ApiKey) -> Self {
        Self {
            kind,
            addr,
            apikey: Some(apikey),
            datagram_send_buffer: Self::LOAD_DATAGRAM_BUFFER,
        }
    }

    /// The raw-TCP baseline at `addr`.
    #[must_use]
    pub const fn tcp(addr: SocketAddr) -> Self {
        Self {
            kind: TargetKind::Tcp,
            addr,
            apikey: None,
            datagram_send_buffer: Self::LOAD_DATAGRAM_BUFFER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for kind in [
            TargetKind::Line,
            TargetKind::LineWebTransport,
            TargetKind::NodeWs,
            TargetKind::Tcp,
        ] {
            assert_eq!(kind.name().parse::<TargetKind>(), Ok(kind));
        }
        assert!("udp".parse::<TargetKind>().is_err());
    }

    #[test]
    fn key_never_in_debug() {
        let target = Target::websocket(
            TargetKind::Line,
            "127.0.0.1:1".parse().expect("an address"),
            ApiKey::new("secretletters".into()),
        );
        assert!(!format!("{target:?}").contains("secret"));
    }
}
