//! A native peer that calls a browser exactly as a browser would, with audio whose every sample is
//! known: the yardstick of line's fidelity tests.
//!
//! It runs line's own call engine ([`line_client::call::Call`], the code the browser's worker
//! runs) on a tokio clock: it joins the line of a call link, sends a sum of pure tones generated
//! sample by sample at the wire rate, paced by the wall clock (so its sample rate is exact), and
//! plays what the other side sends through the engine's jitter buffer as a device would, a
//! quantum at a time, recording blocks of it for [`crate::fidelity::analyze`].

use std::f64::consts::PI;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use line_client::call::{Call, CallConfig, frame_within};
use line_client::link::{Fragment, Link};
use line_client::messages::Stats;
use line_client::uplink::Uplink;
use line_protocol::control::RelayMessage;
use line_protocol::join::ParticipantId;
use line_protocol::leaf::LeafKey;
use line_protocol::webtransport::MAX_DATAGRAM_FRAME_LEN;
use serde::Serialize;
use tokio_tungstenite::tungstenite;

use crate::error::LoadError;
use crate::fidelity::{self, Fidelity};
use crate::peer::{FrameSink, FrameSource, Incoming, Peer};
use crate::target::{ApiKey, Target, TargetKind};

/// How often the peer captures and plays, like an audio thread with a 2.5 ms buffer.
const QUANTUM: Duration = Duration::from_micros(2_500);

/// What QUIC may hold of the tone peer's datagrams not yet sent: four frames of 2.5 ms.
const TONE_PEER_DATAGRAM_BUFFER: usize = 4 * 1024;

/// What to send and what to record.
#[derive(Clone)]
pub struct ToneCallConfig {
    /// The whole call link, leaf included (`http://host/line.html?apikey=...#leaf_...`).
    pub link: String,
    /// Frequencies of the tones sent, Hz.
    pub tones: Vec<f64>,
    /// Amplitude of each tone (1.0 is full scale).
    pub amplitude: f64,
    /// Frequencies of the tones the other side sends, Hz, to analyse what is heard.
    pub heard_tones: Vec<f64>,
    /// How long to stay in the call after the other side joined.
    pub duration: Duration,
    /// Starts of the recorded blocks, after the other side joined.
    pub blocks: Vec<Duration>,
    /// Length of each block.
    pub block: Duration,
    /// Stay in the call until the other side hangs up (at most `duration`), so that two peers
    /// can call each other and both end cleanly: the other side's leaving ends the call instead
    /// of failing it.
    pub until_hang_up: bool,
    /// Take the engine's counters this often after the other side joined, for a timeline of the
    /// call (none: no timeline).
    pub timeline_every: Option<Duration>,
    /// What carries the frames to the relay.
    pub transport: Transport,
}

/// What carries a tone call's frames, as a page chooses between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A WebSocket (`/ws`): every frame in order, over TCP.
    #[default]
    #[value(name = "websocket")]
    WebSocket,
    /// WebTransport datagrams (`/wt`): a lost frame is only that frame. Frames are the longest
    /// that fit a datagram, as the page's are (at 200 kHz, 2.5 ms).
    #[value(name = "webtransport")]
    WebTransport,
}

impl core::fmt::Debug for ToneCallConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The link holds the API key and the leaf.
        f.debug_struct("ToneCallConfig")
            .field("tones", &self.tones)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// One recorded block of what the peer heard.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeardBlock {
    /// Start, seconds after the other side joined.
    pub at_s: f64,
    /// The analysis of the block, when the other side's tones were given.
    pub fidelity: Option<Fidelity>,
    /// What the engine counted during the block that changes the audio: frames lost and
    /// concealed, samples dropped and inserted, underruns.
    pub counted: Counted,
}

/// Counters that account for a change in the audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counted {
    /// Frames that never arrived.
    pub frames_lost: u64,
    /// Frames' worth of audio made up.
    pub frames_concealed: u64,
    /// Samples made up: moves with any concealment, even one shorter than a frame.
    pub samples_concealed: u64,
    /// Samples dropped or played twice by edits, or dropped after a stall.
    pub samples_dropped: u64,
    /// Samples played twice.
    pub samples_inserted: u64,
    /// Times the jitter buffer ran dry.
    pub underruns: u64,
}

impl Counted {
    fn of(stats: &Stats) -> Self {
        Self {
            frames_lost: stats.frames_lost,
            frames_concealed: stats.frames_concealed,
            samples_concealed: stats.samples_concealed,
            samples_dropped: stats.samples_dropped,
            samples_inserted: stats.samples_inserted,
            underruns: stats.underruns,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            frames_lost: self.frames_lost - before.frames_lost,
            frames_concealed: self.frames_concealed - before.frames_concealed,
            samples_concealed: self.samples_concealed - before.samples_concealed,
            samples_dropped: self.samples_dropped - before.samples_dropped,
            samples_inserted: self.samples_inserted - before.samples_inserted,
            underruns: self.underruns - before.underruns,
        }
    }

    /// Whether nothing was counted.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// The engine's counters at one moment of the call, for following its audio over time.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePoint {
    /// Seconds of audio played since the other side joined.
    pub at_s: f64,
    /// The wall clock, milliseconds since 1970, to place what a test did to the call.
    pub unix_ms: u64,
    /// Audio frames sent so far.
    pub frames_sent: u64,
    /// Audio frames received and decrypted so far.
    pub frames_received: u64,
    /// Audio frames lost on the way, and not rebuilt, so far.
    pub frames_lost: u64,
    /// Audio frames lost on the way and rebuilt from a repair frame so far.
    pub frames_repaired: u64,
    /// Samples of the other side's audio made up so far.
    pub samples_concealed: u64,
    /// Frames' worth of the other side's audio made up so far (whole frames, rounded up).
    pub frames_concealed: u64,
    /// Frames the jitter buffer discarded so far (late, duplicate, or to catch up).
    pub frames_discarded: u64,
    /// Times the jitter buffer ran dry so far.
    pub underruns: u64,
    /// Frames that failed decryption so far.
    pub decrypt_failures: u64,
    /// The engine's estimate of mouth-to-ear latency of the last frame received, milliseconds.
    pub mouth_to_ear_ms: f64,
}

impl TimelinePoint {
    fn of(at_s: f64, stats: &Stats) -> Self {
        Self {
            at_s,
            unix_ms: wall_clock_us() / 1_000,
            frames_sent: stats.frames_sent,
            frames_received: stats.frames_received,
            frames_lost: stats.frames_lost,
            frames_repaired: stats.frames_repaired,
            samples_concealed: stats.samples_concealed,
            frames_concealed: stats.frames_concealed,
            frames_discarded: stats.frames_discarded,
            underruns: stats.underruns,
            decrypt_failures: stats.decrypt_failures,
            mouth_to_ear_ms: stats.mouth_to_ear_ms,
        }
    }
}

/// What a tone call did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToneCallReport {
    /// The wire rate used, Hz.
    pub rate: u32,
    /// Samples sent per second as measured against the wall clock over the whole call.
    pub sent_rate: f64,
    /// The blocks recorded.
    pub blocks: Vec<HeardBlock>,
    /// The counters over time (empty unless asked for).
    pub timeline: Vec<TimelinePoint>,
    /// Whether the other side hung up first (only with `until_hang_up`).
    pub peer_hung_up: bool,
    /// What carried the frames.
    pub transport: Transport,
    /// The engine's statistics at the end.
    pub stats: Stats,
}

/// The tones' sum at sample `n` of a stream at `rate`.
fn tone_sample(tones: &[f64], amplitude: f64, rate: f64, n: u64) -> f32 {
    tones
        .iter()
        .map(|f| amplitude * (2.0 * PI * (f * n as f64 / rate).fract()).sin())
        .sum::<f64>() as f32
}

fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The WebSocket address of the call link's line, as the page builds it, for `participant`.
fn ws_url(link: &Link, leaf: &LeafKey, participant: &ParticipantId) -> Result<String, LoadError> {
    let key = link.api_key.as_deref().ok_or(LoadError::MissingApiKey)?;
    let origin = link
        .base
        .rsplit_once('/')
        .map(|(origin, _)| origin)
        .ok_or_else(|| LoadError::Unexpected("a link without a path".into()))?;
    let origin = origin
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    Ok(format!(
        "{origin}/ws?apikey={key}&line={}&join={}&participant={participant}",
        leaf.line_id(),
        leaf.join_token()
    ))
}

/// Joins the call link's line over `transport`: the two halves of the connection, and whether
/// the other side is already there.
async fn connect(
    link: &Link,
    leaf: &LeafKey,
    transport: Transport,
) -> Result<(FrameSink, FrameSource, bool), LoadError> {
    match transport {
        Transport::WebSocket => {
            let participant = ParticipantId::from_random(rand::random());
            // Without Nagle's algorithm, as browsers open WebSockets: with it, the answer to the
            // relay's ping waits for the acknowledgement of the frame before it, up to the
            // receiver's delayed-ACK timeout (40 ms), and the audio waits behind it.
            let url = ws_url(link, leaf, &participant)?;
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) => LoadError::Refused {
                        status: response.status().as_u16(),
                    },
                    other => LoadError::WebSocket(other),
                })?;
            let (sink, stream) = ws.split();
            // The relay's first message (`waiting` or `peer-joined`) arrives in the call's loop.
            Ok((FrameSink::Ws(sink), FrameSource::Ws(stream), false))
        }
        Transport::WebTransport => {
            let apikey = link.api_key.clone().ok_or(LoadError::MissingApiKey)?;
            let target = Target {
                // One peer, as a page: a few frames, as line-server keeps; what the network
                // cannot take soon is dropped rather than played late.
                datagram_send_buffer: TONE_PEER_DATAGRAM_BUFFER,
                ..Target::websocket(
                    TargetKind::LineWebTransport,
                    link_addr(link).await?,
                    ApiKey::new(apikey),
                )
            };
            let peer = Peer::join(&target, leaf.line_id(), &leaf.join_token()).await?;
            let present = peer.partner_present();
            let (sink, source) = peer.split();
            Ok((sink, source, present))
        }
    }
}

/// The address of the link's host, where the relay's HTTP and `/webtransport` are.
async fn link_addr(link: &Link) -> Result<SocketAddr, LoadError> {
    let authority = link
        .base
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .ok_or_else(|| LoadError::Unexpected("a link without a host".into()))?;
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    tokio::net::lookup_host(&authority)
        .await
        .map_err(LoadError::Connect)?
        .next()
        .ok_or_else(|| LoadError::Unexpected(format!("{authority} resolves to nothing")))
}

/// Calls the other side of `config.link` and records what it hears.
pub async fn run(config: &ToneCallConfig) -> Result<ToneCallReport, LoadError> {
    let link =
        Link::parse(&config.link).map_err(|e| LoadError::Unexpected(format!("call link: {e}")))?;
    let Fragment::Leaf(leaf_text) = &link.fragment else {
        return Err(LoadError::Unexpected("the call link has no leaf".into()));
    };
    let leaf: LeafKey = leaf_text
        .parse()
        .map_err(|e| LoadError::Unexpected(format!("leaf: {e}")))?;
    let rate = link.rate;
    let rate_f = f64::from(rate);
    // As the page does: on datagrams, the longest frame no longer than the link's that fits one.
    let frame = match config.transport {
        Transport::WebSocket => link.frame,
        Transport::WebTransport => frame_within(rate, link.frame, MAX_DATAGRAM_FRAME_LEN)
            .ok_or(LoadError::NoDatagramFrame { rate })?,
    };
    let mut call = Call::new(
        CallConfig {
            wire_rate: rate,
            frame,
            context_rate: rate,
        },
        leaf.clone(),
    );
    // As the page does: repair frames on datagrams, which may be lost; the link's coding.
    call.set_repair(config.transport == Transport::WebTransport);
    call.set_coding(link.coding);
    let (sink, mut source, partner_present) = connect(&link, &leaf, config.transport).await?;
    let mut uplink = Sender::start(sink, Uplink::new(rate, frame.micros()));
    call.connected(wall_clock_us(), rand::random());

    let start = Instant::now();
    let mut ticker = tokio::time::interval(QUANTUM);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut captured, mut played) = (0u64, 0u64);
    let mut joined: Option<u64> = None;
    let mut scratch = Vec::new();
    let mut recording: Vec<(usize, u64, Vec<f32>, Counted)> = Vec::new();
    let mut heard = Vec::new();
    let block_samples = (config.block.as_secs_f64() * rate_f) as u64;
    let mut next_block = 0;
    let mut timeline = Vec::new();
    let mut peer_hung_up = false;
    if partner_present {
        call.peer_joined();
        joined = Some(0);
    }
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = wall_clock_us();
                // Exactly `rate` samples per second of wall clock, in and out.
                let due = (start.elapsed().as_secs_f64() * rate_f) as u64;
                scratch.clear();
                scratch.extend((captured..due).map(|n| tone_sample(&config.tones, config.amplitude, rate_f, n)));
                captured = due;
                uplink.woke(now);
                call.capture(now, &scratch);
                call.tick(now);
                scratch.resize((due - played) as usize, 0.0);
                call.play(now, &mut scratch);
                if let Some(since) = joined {
                    record(&mut call, &config.blocks, &mut next_block, &mut recording, &mut heard, since, played, &scratch, block_samples, rate_f);
                    if let Some(every) = config.timeline_every {
                        let at_s = (due - since) as f64 / rate_f;
                        let next_s = timeline.len() as f64 * every.as_secs_f64();
                        if at_s >= next_s {
                            timeline.push(TimelinePoint::of(at_s, &call.stats()));
                        }
                    }
                    if (played - since) as f64 >= config.duration.as_secs_f64() * rate_f {
                        break;
                    }
                }
                played = due;
            }
            incoming = source.next() => match incoming? {
                Incoming::Frame(bytes) => call.receive(wall_clock_us(), &bytes),
                Incoming::Control(RelayMessage::PeerJoined) => {
                    call.peer_joined();
                    joined.get_or_insert(played);
                }
                Incoming::Control(RelayMessage::PeerLeft) if config.until_hang_up && joined.is_some() => {
                    peer_hung_up = true;
                    break;
                }
                Incoming::Control(RelayMessage::PeerLeft) => return Err(LoadError::Unexpected("the other side left".into())),
                Incoming::Control(_) => {}
            },
        }
        uplink.send_all(&mut call).await?;
    }
    call.hang_up();
    uplink.send_all(&mut call).await?;
    uplink.close().await?;
    let sent_rate = captured as f64 / start.elapsed().as_secs_f64();
    Ok(ToneCallReport {
        rate,
        sent_rate,
        blocks: heard
            .into_iter()
            .map(
                |(at, samples, counted): (f64, Vec<f32>, Counted)| HeardBlock {
                    at_s: at,
                    fidelity: (!config.heard_tones.is_empty())
                        .then(|| fidelity::analyze(&samples, rate_f, &config.heard_tones)),
                    counted,
                },
            )
            .collect(),
        timeline,
        peer_hung_up,
        transport: config.transport,
        stats: call.stats(),
    })
}

/// The socket's sending half, written by a task of its own so that a slow network never holds
/// up the audio: like a browser's WebSocket, it buffers, and like the browser's engine, the peer
/// drops audio frames when the [`Uplink`] judges the backlog too long.
struct Sender {
    queue: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes handed to the task and not yet written to the socket (`bufferedAmount`).
    buffered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<(), LoadError>>,
    uplink: Uplink,
}

impl Sender {
    fn start(mut sink: FrameSink, uplink: Uplink) -> Self {
        let (queue, mut frames) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let buffered = Arc::new(AtomicU64::new(0));
        let written = Arc::clone(&buffered);
        let task = tokio::spawn(async move {
            while let Some(bytes) = frames.recv().await {
                let n = bytes.len();
                sink.send(bytes).await?;
                written.fetch_sub(n as u64, Ordering::Relaxed);
            }
            sink.close().await;
            Ok(())
        });
        Self {
            queue,
            buffered,
            task,
            uplink,
        }
    }

    /// The audio loop woke at `now_us`, before it sends anything.
    fn woke(&mut self, now_us: u64) {
        self.uplink
            .woke(now_us, self.buffered.load(Ordering::Relaxed));
    }

    /// Sends what the call has to send, dropping audio frames the uplink does not admit.
    async fn send_all(&mut self, call: &mut Call) -> Result<(), LoadError> {
        while let Some(out) = call.poll_transmit() {
            let held = self.buffered.load(Ordering::Relaxed);
            if out.is_audio && !self.uplink.admits_audio(held) {
                call.dropped_outgoing(&out);
                continue;
            }
            self.buffered
                .fetch_add(out.bytes.len() as u64, Ordering::Relaxed);
            if self.queue.send(out.bytes).is_err() {
                // The task ended, which it only does on an error: that is the one to report.
                return Err(self.finish().await.err().unwrap_or(LoadError::Closed));
            }
        }
        Ok(())
    }

    /// Writes what is queued, then closes the socket.
    async fn close(mut self) -> Result<(), LoadError> {
        self.finish().await
    }

    /// Ends the queue and waits for the task (once: a finished task cannot be awaited again).
    async fn finish(&mut self) -> Result<(), LoadError> {
        let (closed, _) = tokio::sync::mpsc::unbounded_channel();
        drop(core::mem::replace(&mut self.queue, closed));
        (&mut self.task)
            .await
            .map_err(|e| LoadError::Unexpected(format!("the sending task: {e}")))?
    }
}

/// Adds what was just played (`out`, starting at sample `played`) to the blocks being recorded,
/// starting and finishing blocks as their times come.
#[allow(clippy::too_many_arguments)]
fn record(
    call: &mut Call,
    starts: &[Duration],
    next_block: &mut usize,
    recording: &mut Vec<(usize, u64, Vec<f32>, Counted)>,
    heard: &mut Vec<(f64, Vec<f32>, Counted)>,
    since: u64,
    played: u64,
    out: &[f32],
    block_samples: u64,
    rate: f64,
) {
    let end = played + out.len() as u64;
    while let Some(start) = starts.get(*next_block) {
        let first = since + (start.as_secs_f64() * rate) as u64;
        if first >= end {
            break;
        }
        recording.push((
            *next_block,
            first,
            Vec::with_capacity(block_samples as usize),
            Counted::of(&call.stats()),
        ));
        *next_block += 1;
    }
    for (_, first, samples, _) in recording.iter_mut() {
        for (k, &v) in out.iter().enumerate() {
            let n = played + k as u64;
            if n >= *first && samples.len() < block_samples as usize {
                samples.push(v);
            }
        }
    }
    let counted_now = Counted::of(&call.stats());
    recording.retain_mut(|(index, _, samples, before)| {
        if samples.len() < block_samples as usize {
            return true;
        }
        heard.push((
            starts[*index].as_secs_f64(),
            core::mem::take(samples),
            counted_now.since(*before),
        ));
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tones_are_exact_at_any_sample() {
        // Far into a call the phase must not have drifted: sample n is computed from n itself.
        let rate = 200_000.0;
        let n = 200_000 * 3_600;
        let v = tone_sample(&[1_000.0], 0.5, rate, n);
        assert!(v.abs() < 1e-6, "{v}");
        let v = tone_sample(&[1_000.0], 0.5, rate, n + 50);
        assert!((v - 0.5).abs() < 1e-6, "{v}");
    }

    #[test]
    fn the_websocket_address_is_the_pages() {
        let leaf = LeafKey::from_random([7; 32]);
        let link = Link::parse(&format!(
            "https://line.example/line.html?apikey=KEY&mobile=1#{}",
            leaf
        ))
        .unwrap();
        let me = ParticipantId::from_random([1; 16]);
        let url = ws_url(&link, &leaf, &me).unwrap();
        assert_eq!(
            url,
            format!(
                "wss://line.example/ws?apikey=KEY&line={}&join={}&participant={me}",
                leaf.line_id(),
                leaf.join_token()
            )
        );
    }
}
