//! One measured run: N calls connected, real-time traffic, then latency, loss and the server's
//! CPU and memory over the measured window.
//!
//! Every peer sends frame `i` at `start + offset + i * 10 ms`, computed from one start instant (so
//! a late wake-up never shifts the frames after it); offsets spread the 2N peers evenly over one
//! frame period, as independent calls would be. Latency is taken from just before a frame is
//! written to the socket (after encryption) to just after the other peer's socket read returns it
//! (before decryption): the relay's share, plus both kernels' loopback and this process's
//! scheduling. Only frames sent after the warm-up count towards latency and CPU; every frame
//! counts towards loss.

use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _};
use line_protocol::binding;
use line_protocol::header::Header;
use line_protocol::join::JoinToken;
use line_protocol::leaf::LeafKey;
use line_protocol::line_id::LineId;
use line_protocol::sframe::{FrameReceiver, FrameSender};
use serde::Serialize;

use crate::error::LoadError;
use crate::peer::{FrameSink, FrameSource, Incoming, Peer};
use crate::procfs::{Pid, Sample};
use crate::stats::{LatencySummary, nanos_u32};
use crate::target::{Target, TargetKind};
use crate::traffic::{AudioShape, SendTimes, Tone};

/// Calls set up at once while connecting (the relay sees a burst, not thousands at a time).
const CONNECTS_IN_FLIGHT: usize = 16;

/// Time between the last call connecting and the first frame.
const START_DELAY: Duration = Duration::from_millis(200);

/// How long a receiver waits after the last frame was due before counting the rest as lost.
const ARRIVAL_GRACE: Duration = Duration::from_secs(1);

/// Errors kept in a report (the first few say enough).
const MAX_ERRORS: usize = 5;

/// Warm-up and measured window of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Traffic before measuring (connections settle, allocators and caches warm up).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The relay.
    pub target: Target,
    /// Concurrent calls (two peers each).
    pub calls: usize,
    /// Warm-up and measured window.
    pub timing: Timing,
    /// The audio each peer sends.
    pub shape: AudioShape,
    /// The relay's process, for its CPU and memory.
    pub server_pid: Option<u32>,
    /// Sample the relay's resident memory this often during the measured window (a soak).
    pub rss_every: Option<Duration>,
}

impl RunConfig {
    /// `calls` calls of 200 kHz 10 ms frames against `target`.
    #[must_use]
    pub fn new(target: Target, calls: usize, timing: Timing) -> Self {
        Self {
            target,
            calls,
            timing,
            shape: AudioShape::STUDIO_10MS,
            server_pid: None,
            rss_every: None,
        }
    }
}

/// The relay's process over the measured window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServerUsage {
    /// CPU in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the end of the window, KiB.
    pub rss_kib: u64,
}

/// One resident-memory sample of the relay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RssSample {
    /// Seconds since the measured window began.
    pub secs: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// The relay.
    pub target: TargetKind,
    /// Concurrent calls.
    pub calls: usize,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Measured window, seconds.
    pub measure_secs: f64,
    /// Frames sent by all peers.
    pub frames_sent: u64,
    /// Frames that arrived at the other peer, decrypted and matched what was sent.
    pub frames_received: u64,
    /// Frames that never arrived.
    pub frames_lost: u64,
    /// Frames that arrived but failed to decrypt, did not match, or came out of order.
    pub frames_bad: u64,
    /// Relay latency of the frames sent in the measured window.
    pub latency: LatencySummary,
    /// The relay's CPU and memory (when its pid was given).
    pub server: Option<ServerUsage>,
    /// The load generator's own CPU over the window, percent of one core (it shares the machine).
    pub loadgen_cpu_percent: f64,
    /// The relay's memory during the window (soak runs).
    pub rss_samples: Vec<RssSample>,
    /// The first errors peers met (connections closed, unexpected messages).
    pub errors: Vec<String>,
}

impl RunReport {
    /// A report of `config` with nothing counted yet.
    pub(crate) fn empty(config: &RunConfig) -> Self {
        RunReport {
            target: config.target.kind,
            calls: config.calls,
            warmup_secs: config.timing.warmup.as_secs_f64(),
            measure_secs: config.timing.measure.as_secs_f64(),
            frames_sent: 0,
            frames_received: 0,
            frames_lost: 0,
            frames_bad: 0,
            latency: LatencySummary::default(),
            server: None,
            loadgen_cpu_percent: 0.0,
            rss_samples: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Whether the relay carried this load: every frame delivered intact, no peer error, and
    /// p99 latency within `p99_limit`.
    #[must_use]
    pub fn sustains(&self, p99_limit: Duration) -> bool {
        self.frames_lost == 0
            && self.frames_bad == 0
            && self.errors.is_empty()
            && self.frames_received > 0
            && self.latency.p99() <= p99_limit
    }
}

/// Two peers joined on one fresh line, ready for traffic.
#[derive(Debug)]
pub struct Call {
    leaf: LeafKey,
    a: Peer,
    b: Peer,
}

impl Call {
    /// Draws a leaf key and joins both peers to its line, as two browsers would.
    pub async fn connect(target: &Target) -> Result<Self, LoadError> {
        let leaf = LeafKey::from_random(rand::random());
        let (line, token) = (leaf.line_id(), leaf.join_token());
        let mut a = Peer::join(target, line, &token).await?;
        let mut b = Peer::join(target, line, &token).await?;
        b.wait_for_partner().await?;
        a.wait_for_partner().await?;
        Ok(Self { leaf, a, b })
    }

    /// The call's line.
    #[must_use]
    pub fn line(&self) -> LineId {
        self.leaf.line_id()
    }

    /// The call's join token, which a third peer needs to be refused with 409 rather than 423.
    #[must_use]
    pub fn join_token(&self) -> JoinToken {
        self.leaf.join_token()
    }
}

/// Connects `n` calls, a few at a time.
pub async fn connect_calls(target: &Target, n: usize) -> Result<Vec<Call>, LoadError> {
    futures_util::stream::iter((0..n).map(|_| Call::connect(target)))
        .buffer_unordered(CONNECTS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Connects `config.calls` calls and runs them.
pub async fn run(config: &RunConfig) -> Result<RunReport, LoadError> {
    let calls = connect_calls(&config.target, config.calls).await?;
    run_calls(config, calls).await
}

/// One direction of a call: the sending peer's half and the receiving peer's half.
struct Direction {
    sink: FrameSink,
    sender: Bound<FrameSender>,
    source: FrameSource,
    receiver: Bound<FrameReceiver>,
}

/// A frame sender or receiver, with the SFrame metadata that binds this direction's frames to the
/// receiving peer.
struct Bound<T> {
    crypto: T,
    metadata: [u8; binding::METADATA_LEN],
}

/// What one receiving peer saw.
#[derive(Default)]
struct Received {
    frames: u64,
    bad: u64,
    latencies: Vec<u32>,
    error: Option<String>,
}

/// Runs traffic on calls already connected (tests use this to poke at a line first).
pub async fn run_calls(config: &RunConfig, calls: Vec<Call>) -> Result<RunReport, LoadError> {
    let period = config.shape.frame_duration();
    let total = config.timing.warmup + config.timing.measure;
    let frames = frame_count(total, period);
    let warmup_frames = frame_count(config.timing.warmup, period);
    let tone = Tone::new(config.shape);

    let mut directions = Vec::with_capacity(calls.len() * 2);
    for call in calls {
        let (a_sink, a_source) = call.a.split();
        let (b_sink, b_source) = call.b.split();
        // Each peer's sender KID; a peer's frames are bound to the other's (as a browser's are).
        let (a_kid, b_kid) = (rand::random(), rand::random());
        for (sink, kid, source, receiver_kid) in [
            (a_sink, a_kid, b_source, b_kid),
            (b_sink, b_kid, a_source, a_kid),
        ] {
            directions.push(Direction {
                sink,
                sender: Bound {
                    crypto: FrameSender::new(&call.leaf, kid),
                    metadata: binding::metadata(receiver_kid),
                },
                source,
                receiver: Bound {
                    crypto: FrameReceiver::new(&call.leaf),
                    metadata: binding::metadata(receiver_kid),
                },
            });
        }
    }

    let start = Instant::now() + START_DELAY;
    let peers = u32::try_from(directions.len().max(1)).unwrap_or(u32::MAX);
    let last_due = start + period * u32::try_from(frames).unwrap_or(u32::MAX);
    let deadline = last_due + period + ARRIVAL_GRACE;
    let mut senders = Vec::with_capacity(directions.len());
    let mut receivers = Vec::with_capacity(directions.len());
    for (p, d) in directions.into_iter().enumerate() {
        let offset = period * u32::try_from(p).unwrap_or(u32::MAX) / peers;
        let times = SendTimes::new(start);
        senders.push(tokio::spawn(send_frames(
            d.sink,
            d.sender,
            tone.clone(),
            times.clone(),
            start + offset,
            period,
            frames,
        )));
        receivers.push(tokio::spawn(receive_frames(
            d.source,
            d.receiver,
            tone.clone(),
            times,
            frames,
            warmup_frames,
            deadline,
        )));
    }

    // The measured window, watched from here.
    let window_start = start + config.timing.warmup;
    let window_end = window_start + config.timing.measure;
    tokio::time::sleep_until(window_start.into()).await;
    let pid = config.server_pid.map(Pid::Of);
    let server_before = pid.map(Sample::take).transpose()?;
    let self_before = Sample::take(Pid::Myself)?;
    let mut rss_samples = Vec::new();
    if let (Some(pid), Some(every)) = (pid, config.rss_every) {
        let mut next = window_start;
        while next < window_end {
            tokio::time::sleep_until(next.into()).await;
            let sample = Sample::take(pid)?;
            rss_samples.push(RssSample {
                secs: sample.at.duration_since(window_start).as_secs_f64(),
                rss_kib: sample.rss_kib,
            });
            next += every;
        }
    }
    tokio::time::sleep_until(window_end.into()).await;
    let server_after = pid.map(Sample::take).transpose()?;
    let self_after = Sample::take(Pid::Myself)?;
    if let Some(after) = server_after.filter(|_| config.rss_every.is_some()) {
        rss_samples.push(RssSample {
            secs: after.at.duration_since(window_start).as_secs_f64(),
            rss_kib: after.rss_kib,
        });
    }

    let mut report = RunReport {
        server: server_before
            .zip(server_after)
            .map(|(before, after)| ServerUsage {
                cpu_percent: after.cpu_percent_since(&before),
                rss_kib: after.rss_kib,
            }),
        loadgen_cpu_percent: self_after.cpu_percent_since(&self_before),
        rss_samples,
        ..RunReport::empty(config)
    };
    let mut sinks = Vec::with_capacity(senders.len());
    for sender in senders {
        let (sink, sent) = sender.await.expect("a sender task never panics");
        match sent {
            Ok(n) => report.frames_sent += n,
            Err((n, e)) => {
                report.frames_sent += n;
                note(&mut report.errors, format!("sending: {e}"));
            }
        }
        sinks.push(sink);
    }
    let mut latencies = Vec::new();
    for receiver in receivers {
        let received = receiver.await.expect("a receiver task never panics");
        report.frames_received += received.frames;
        report.frames_bad += received.bad;
        latencies.extend_from_slice(&received.latencies);
        if let Some(e) = received.error {
            note(&mut report.errors, format!("receiving: {e}"));
        }
    }
    report.frames_lost = report
        .frames_sent
        .saturating_sub(report.frames_received + report.frames_bad);
    report.latency = LatencySummary::from_nanos(latencies);
    for mut sink in sinks {
        let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
    }
    Ok(report)
}

fn note(errors: &mut Vec<String>, error: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(error);
    }
}

fn frame_count(d: Duration, period: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(period.as_nanos().max(1))).unwrap_or(u64::MAX)
}

/// Sends `frames` frames paced from `first`; returns the sink (to close later) and how many went.
async fn send_frames(
    mut sink: FrameSink,
    mut sender: Bound<FrameSender>,
    tone: std::sync::Arc<Tone>,
    times: std::sync::Arc<SendTimes>,
    first: Instant,
    period: Duration,
    frames: u64,
) -> (FrameSink, Result<u64, (u64, LoadError)>) {
    let mut plaintext = Vec::new();
    let mut due = first;
    for i in 0..frames {
        tokio::time::sleep_until(due.into()).await;
        due += period;
        tone.plaintext(i, &mut plaintext);
        let mut frame = Vec::with_capacity(plaintext.len() + Header::MAX_LEN + 16);
        if let Err(e) = sender
            .crypto
            .encrypt_with(&sender.metadata, &plaintext, &mut frame)
        {
            return (sink, Err((i, LoadError::Encrypt(e))));
        }
        times.sent(i, Instant::now());
        if let Err(e) = sink.send(frame).await {
            return (sink, Err((i, e)));
        }
    }
    (sink, Ok(frames))
}

/// Receives the other peer's frames until all arrived or `deadline`, checking each.
async fn receive_frames(
    mut source: FrameSource,
    mut receiver: Bound<FrameReceiver>,
    tone: std::sync::Arc<Tone>,
    times: std::sync::Arc<SendTimes>,
    frames: u64,
    warmup_frames: u64,
    deadline: Instant,
) -> Received {
    let mut out = Received {
        latencies: Vec::with_capacity(
            usize::try_from(frames.saturating_sub(warmup_frames)).unwrap_or(0),
        ),
        ..Received::default()
    };
    let mut opened = Vec::new();
    let mut expected = 0;
    while expected < frames {
        let incoming = match tokio::time::timeout_at(deadline.into(), source.next()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                out.error = Some(e.to_string());
                break;
            }
            Ok(Ok(incoming)) => incoming,
        };
        let arrival = Instant::now();
        let frame = match incoming {
            Incoming::Frame(frame) => frame,
            Incoming::Control(message) => {
                out.error = Some(format!("control message {message:?} during the call"));
                break;
            }
        };
        let Ok((header, _)) =
            receiver
                .crypto
                .decrypt_with(&frame, &[&receiver.metadata], &mut opened)
        else {
            out.bad += 1;
            continue;
        };
        let index = header.ctr;
        if index < expected || index >= frames || tone.check(index, &opened).is_err() {
            out.bad += 1;
            continue;
        }
        expected = index + 1;
        out.frames += 1;
        if index >= warmup_frames {
            out.latencies.push(nanos_u32(times.latency(index, arrival)));
        }
    }
    out
}
