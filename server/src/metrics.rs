//! Counters an operator scrapes from `GET /metrics` in the Prometheus text format.
//!
//! Hand-rolled atomics: a dozen numbers do not need a metrics framework, and every update is a
//! single relaxed atomic add on the relay's hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a frame was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The receiver's outbound queue was full: the oldest queued audio frame made room.
    QueueFull,
    /// Nobody else was on the line.
    NoPeer,
}

impl DropReason {
    const ALL: [Self; 2] = [Self::QueueFull, Self::NoPeer];

    fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::NoPeer => "no_peer",
        }
    }
}

/// HTTP statuses with which `/ws` refuses an upgrade.
const REFUSED_STATUSES: [u16; 7] = {
    use line_protocol::join::status::*;
    [
        BAD_REQUEST,
        API_KEY_REFUSED,
        ORIGIN_REFUSED,
        LINE_FULL,
        WRONG_TOKEN,
        TOO_MANY,
        SERVER_FULL,
    ]
};

/// The server's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    open_connections: AtomicU64,
    connections_total: AtomicU64,
    active_lines: AtomicU64,
    frames_relayed: AtomicU64,
    bytes_relayed: AtomicU64,
    dropped: [AtomicU64; 2],
    auth_failures: AtomicU64,
    refused: [AtomicU64; REFUSED_STATUSES.len()],
    closed_by_server: AtomicU64,
    slots_taken_over: AtomicU64,
    webtransport_retries: AtomicU64,
}

impl Metrics {
    /// A WebSocket was upgraded.
    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket ended.
    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// The server closed a socket for what the client did (bad frame, idle, shutdown).
    pub fn closed_by_server(&self) {
        self.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }

    /// A participant's new connection took over its slot from its old one.
    pub fn slot_taken_over(&self) {
        self.slots_taken_over.fetch_add(1, Ordering::Relaxed);
    }

    /// A QUIC client was asked to prove its address before its handshake (a Retry).
    pub fn webtransport_retry(&self) {
        self.webtransport_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of lines with at least one peer changed.
    pub fn set_active_lines(&self, n: usize) {
        self.active_lines.store(n as u64, Ordering::Relaxed);
    }

    /// A frame of `bytes` bytes was written to its receiver.
    pub fn frame_relayed(&self, bytes: usize) {
        self.frames_relayed.fetch_add(1, Ordering::Relaxed);
        self.bytes_relayed
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `n` frames were dropped for `reason`.
    pub fn frames_dropped(&self, reason: DropReason, n: u64) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed in ALL");
        self.dropped[i].fetch_add(n, Ordering::Relaxed);
    }

    /// A client presented a missing or wrong API key.
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// `/ws` refused an upgrade with `status`.
    pub fn upgrade_refused(&self, status: u16) {
        if let Some(i) = REFUSED_STATUSES.iter().position(|s| *s == status) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frames dropped so far for `reason`.
    #[must_use]
    pub fn dropped(&self, reason: DropReason) -> u64 {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed in ALL");
        self.dropped[i].load(Ordering::Relaxed)
    }

    /// Open WebSocket connections.
    #[must_use]
    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut single = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        single(
            "line_open_connections",
            "gauge",
            "WebSocket connections open now.",
            load(&self.open_connections),
        );
        single(
            "line_connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            load(&self.connections_total),
        );
        single(
            "line_active_lines",
            "gauge",
            "Lines with at least one peer.",
            load(&self.active_lines),
        );
        single(
            "line_frames_relayed_total",
            "counter",
            "Binary frames written to the other peer.",
            load(&self.frames_relayed),
        );
        single(
            "line_bytes_relayed_total",
            "counter",
            "Bytes of binary frames written to the other peer.",
            load(&self.bytes_relayed),
        );
        single(
            "line_auth_failures_total",
            "counter",
            "WebSocket requests with a missing or wrong API key.",
            load(&self.auth_failures),
        );
        single(
            "line_sockets_closed_by_server_total",
            "counter",
            "Sockets the server closed (bad frames, idle, shutdown).",
            load(&self.closed_by_server),
        );
        single(
            "line_slots_taken_over_total",
            "counter",
            "Slots a participant's new connection took over from its old one (a changed network).",
            load(&self.slots_taken_over),
        );
        single(
            "line_webtransport_retries_total",
            "counter",
            "QUIC clients asked to prove their address first (Retry), with many handshakes under way.",
            load(&self.webtransport_retries),
        );
        let _ = writeln!(
            out,
            "# HELP line_frames_dropped_total Frames not delivered, by reason.\n\
             # TYPE line_frames_dropped_total counter"
        );
        for (reason, count) in DropReason::ALL.iter().zip(&self.dropped) {
            let _ = writeln!(
                out,
                "line_frames_dropped_total{{reason=\"{}\"}} {}",
                reason.label(),
                load(count)
            );
        }
        let _ = writeln!(
            out,
            "# HELP line_upgrades_refused_total WebSocket upgrades refused, by HTTP status.\n\
             # TYPE line_upgrades_refused_total counter"
        );
        for (status, count) in REFUSED_STATUSES.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "line_upgrades_refused_total{{status=\"{status}\"}} {}",
                load(count)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_counts() {
        let m = Metrics::default();
        m.frames_dropped(DropReason::QueueFull, 3);
        m.upgrade_refused(409);
        m.frame_relayed(100);
        m.upgrade_refused(423);
        m.slot_taken_over();
        let text = m.render();
        assert!(text.contains("line_upgrades_refused_total{status=\"423\"} 1"));
        assert!(text.contains("line_slots_taken_over_total 1"));
        assert!(text.contains("line_frames_dropped_total{reason=\"queue_full\"} 3"));
        assert!(text.contains("line_upgrades_refused_total{status=\"409\"} 1"));
        assert!(text.contains("line_bytes_relayed_total 100"));
        assert_eq!(m.dropped(DropReason::QueueFull), 3);
    }
}
