//! One peer on a line, whatever carries it (a WebSocket or a WebTransport session): the checks on
//! each frame it sends, forwarding to the other peer's [`Outbox`], the timers and events that end
//! it, and the close each ending calls for. A [`Transport`] supplies what the client sends, a
//! writer that drains this peer's outbox, and how it says goodbye; [`run_session`] does the rest,
//! once for both.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use line_protocol::header::Header;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Closing, Outbox};
use crate::per_client::ClientSlot;
use crate::registry::Membership;

use line_protocol::control::close_code;

/// The SFrame authentication tag every frame ends with (AES-256-GCM, 16 bytes).
const TAG_LEN: usize = 16;

/// Everything one admitted peer needs.
pub(crate) struct Session {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) shutdown: CancellationToken,
    pub(crate) peer: IpAddr,
    pub(crate) membership: Membership,
    pub(crate) outbox: Arc<Outbox>,
    /// This client's share of its per-address connection cap, held while the peer is on; none
    /// for a trusted proxy's own address, which speaks for many clients.
    pub(crate) client_slot: Option<ClientSlot>,
}

/// Why the reader stopped.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed the connection cleanly.
    ClientClosed,
    /// The connection ended or broke without a clean close.
    Gone,
    /// The writer could not write any more.
    WriterGone,
    /// The client broke a rule; close with this code and reason.
    Violation(u16, String),
    /// Nothing from the client (no frame, no keepalive answer) for the idle timeout.
    Idle,
    /// Alone on the line for `max_wait_alone`.
    WaitedTooLong,
    /// A newer connection of the same participant took the slot.
    TakenOver,
    /// The server is shutting down.
    Shutdown,
}

impl End {
    /// How the writer closes the connection, or `None` when there is nobody left to tell.
    pub(crate) fn closing(&self, limits: &Limits) -> Option<Closing> {
        let explained = |code, reason| {
            Some(Closing {
                code,
                reason,
                explain: true,
            })
        };
        match self {
            Self::ClientClosed => Some(Closing {
                code: close_code::NORMAL,
                reason: String::new(),
                explain: false,
            }),
            Self::Gone | Self::WriterGone => None,
            Self::Violation(code, reason) => explained(*code, reason.clone()),
            Self::Idle => explained(
                close_code::IDLE,
                format!("no frames or pongs for {} s", limits.idle_timeout.as_secs()),
            ),
            Self::WaitedTooLong => explained(
                close_code::WAITED_TOO_LONG,
                format!(
                    "nobody else joined this line within {}",
                    human_duration(limits.max_wait_alone)
                ),
            ),
            Self::TakenOver => explained(
                close_code::TAKEN_OVER,
                "replaced by a newer connection of the same participant".into(),
            ),
            Self::Shutdown => explained(close_code::GOING_AWAY, "server is shutting down".into()),
        }
    }

    /// Whether the server, not the client or the network, ended the connection.
    pub(crate) fn by_server(&self) -> bool {
        !matches!(self, Self::ClientClosed | Self::Gone | Self::WriterGone)
    }
}

/// What one peer did, for its last log line.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) no_peer_drops: AtomicU64,
}

impl Stats {
    /// One frame written to this peer.
    pub(crate) fn sent(&self, metrics: &Metrics, len: usize) {
        metrics.frame_relayed(len);
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a transport read from its client.
#[derive(Debug)]
pub(crate) enum Read {
    /// An audio frame to check and forward.
    Frame(Bytes),
    /// Proof of life without a frame (a pong).
    Alive,
    /// The connection ended, or the client broke a rule the transport itself checks.
    End(End),
}

/// The receiving half of a transport.
pub(crate) trait Reader {
    /// The next thing the client sent; cancel-safe.
    async fn read(&mut self) -> Read;
}

/// What a transport's writer needs: the outbox it drains and where it counts what it sent.
pub(crate) struct WriterParts {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stats: Arc<Stats>,
    /// Cancelled when the writer ends, which ends the read loop too.
    pub(crate) done: CancellationToken,
}

/// A connection that carries one peer.
pub(crate) trait Transport: Reader {
    /// `None` when the transport detects dead clients itself (QUIC's idle timeout).
    fn idle_timeout(&self, limits: &Limits) -> Option<Duration>;

    /// Starts the task that drains the outbox onto the wire.
    fn start_writer(&mut self, parts: WriterParts) -> JoinHandle<()>;

    /// Ends the connection after the read loop ended: tells the client why where there is a
    /// client to tell, and gives the writer a bounded time to deliver it.
    async fn close(&mut self, ending: Ending<'_>);
}

/// How a session ended, for its transport's [`Transport::close`].
pub(crate) struct Ending<'a> {
    pub(crate) end: &'a End,
    /// What to tell the client, when anything: queue it on the outbox.
    pub(crate) closing: Option<Closing>,
    pub(crate) outbox: &'a Outbox,
    pub(crate) writer: &'a mut JoinHandle<()>,
    pub(crate) limits: &'a Limits,
}

/// Runs one peer on `transport` from its first frame to its last log line.
pub(crate) async fn run_session<T: Transport>(mut transport: T, session: Session) {
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
    let writer_done = CancellationToken::new();
    let mut writer = transport.start_writer(WriterParts {
        outbox: Arc::clone(&outbox),
        limits,
        metrics: Arc::clone(&metrics),
        stats: Arc::clone(&stats),
        done: writer_done.clone(),
    });
    let idle_timeout = transport.idle_timeout(&limits);
    let end = read_loop(
        &mut transport,
        Watch {
            membership: &membership,
            limits: &limits,
            metrics: &metrics,
            stats: &stats,
            shutdown: &shutdown,
            writer_done: &writer_done,
            idle_timeout,
        },
    )
    .await;
    if end.by_server() {
        metrics.closed_by_server();
    }
    // Free the slot now, so the other peer hears `peer-left` without waiting for our close.
    drop(membership);
    transport
        .close(Ending {
            end: &end,
            closing: end.closing(&limits),
            outbox: &outbox,
            writer: &mut writer,
            limits: &limits,
        })
        .await;
    metrics.connection_closed();
    drop(client_slot);
    log_end(started, &stats, &outbox, &end);
}

/// Everything the read loop watches besides the client.
pub(crate) struct Watch<'a> {
    pub(crate) membership: &'a Membership,
    pub(crate) limits: &'a Limits,
    pub(crate) metrics: &'a Metrics,
    pub(crate) stats: &'a Stats,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) writer_done: &'a CancellationToken,
    /// `None` when the transport detects dead clients itself (QUIC's idle timeout).
    pub(crate) idle_timeout: Option<Duration>,
}

/// Reads, checks and forwards the client's frames until something ends the peer.
pub(crate) async fn read_loop<R: Reader>(reader: &mut R, watch: Watch<'_>) -> End {
    let Watch {
        membership,
        limits,
        metrics,
        stats,
        shutdown,
        writer_done,
        idle_timeout,
    } = watch;
    // A timer that never fires stands in for the transport's own idle detection.
    let idle_after = idle_timeout.unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    let idle = tokio::time::sleep(idle_after);
    tokio::pin!(idle);
    let alone = tokio::time::sleep(limits.max_wait_alone);
    tokio::pin!(alone);
    loop {
        let read = tokio::select! {
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
            read = reader.read() => read,
        };
        match read {
            Read::Frame(frame) => {
                idle.as_mut().reset(Instant::now() + idle_after);
                stats.frames_in.fetch_add(1, Ordering::Relaxed);
                if let Err((code, reason)) = check_frame(&frame, limits.max_frame_len) {
                    return End::Violation(code, reason);
                }
                forward(frame, membership, metrics, stats);
            }
            Read::Alive => idle.as_mut().reset(Instant::now() + idle_after),
            Read::End(end) => return end,
        }
    }
}

/// Hands a checked frame to the other peer's outbox, untouched.
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

/// The relay's only look at a frame: its size and SFrame header.
/// A close's reason, cut to 123 bytes at a character boundary: what a WebSocket close frame
/// holds, and on QUIC it keeps the close in one packet.
pub(crate) fn close_reason(reason: &str) -> &str {
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

pub(crate) fn check_frame(frame: &[u8], max_len: usize) -> Result<(), (u16, String)> {
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

/// The last log line of a peer.
fn log_end(started: Instant, stats: &Stats, outbox: &Outbox, end: &End) {
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

/// "3 h", "90 min", "45 s": a limit as a person reads it.
pub(crate) fn human_duration(d: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(cut));
    }

    fn frame(payload_len: usize) -> Vec<u8> {
        let mut out = vec![0u8; Header::MAX_LEN];
        let n = Header::new(1234, 99).encode(&mut out);
        out.truncate(n);
        out.resize(n + payload_len, 0xab);
        out
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
