//! The jitter buffer: turns audio packets that arrive late, early, twice or never into the steady
//! stream a sound card asks for, at the lowest latency the network allows.
//!
//! Sans-IO, like the rest of the crate: the caller passes `now` (microseconds on any monotonic
//! clock) into [`JitterBuffer::push`] when a packet arrives and into [`JitterBuffer::pull`] when
//! the device wants audio. The buffer never sleeps and never reads a clock, so tests drive it with
//! a virtual clock and reproduce every scenario exactly.
//!
//! ```
//! use line_protocol::jitter::{JitterBuffer, JitterConfig};
//!
//! // 200 kHz on the wire, a 48 kHz sound card, 10 ms frames.
//! let mut jb = JitterBuffer::new(JitterConfig::new(200_000, 48_000, 2_000))?;
//! let frame = vec![0.25f32; 2_000];
//! let mut out = [0.0f32; 480];
//! for i in 0..100u64 {
//!     jb.push(i * 10_000, i * 2_000, &frame);
//!     jb.pull(i * 10_000, &mut out);
//! }
//! let stats = jb.stats();
//! assert_eq!(stats.underruns, 0);
//! assert!((out[479] - 0.25).abs() < 1e-3);
//! # Ok::<(), line_protocol::jitter::JitterConfigError>(())
//! ```
//!
//! # How it works
//!
//! **Delay.** The quantity everything below is about is the *buffer delay*: how long the newest
//! sample of a packet waits from the packet's arrival until the device pulls it. It is what the
//! buffer adds to the call's latency, and unlike the fill level at pull time (a saw-tooth) it does
//! not depend on how pulls and arrivals happen to line up. [`JitterStats::delay_ms`] reports its
//! one-second average, [`JitterStats::target_ms`] what it aims at.
//!
//! **Reordering.** Packets are placed by the index of their first sample in the sender's running
//! count (`store.rs`), so order of arrival does not matter, a duplicate is recognised because its
//! samples are all present already, and a packet whose samples were already played (or
//! concealed) is late and discarded. A sender that restarts its count is followed after three
//! packets that are hopelessly behind ([`JitterStats::resyncs`]), or at once with
//! [`JitterBuffer::reset`].
//!
//! **Play-out states.** The buffer starts *buffering*: silence until the newest audio, played
//! from now on, would have waited the target delay. Then it *plays*. A hole (missing samples
//! with audio after them) is concealed and skipped: the cursor does not wait for a packet that
//! is already later than the whole buffer. At the tail, when nothing newer has arrived, it
//! conceals up to one frame while moving on (one lost packet is a gap, not a stall); beyond that
//! it is an *underrun*: it keeps concealing, grows the target, and buffers again without moving
//! the cursor, so a stall loses nothing the sender said until the latency bound below drops it.
//!
//! **Concealment** (`conceal.rs`) repeats the last 10 ms (at most one frame) of audio, played
//! backwards and forwards so that no junction clicks, fading linearly to silence over 30 ms,
//! then plays silence. Real audio coming back, and audio dropped
//! to catch up, are cross-faded over 2 ms, so no splice clicks.
//!
//! **Target delay** (`target.rs`): starts at two frames; follows the observed arrival jitter
//! (`jitter + frame + largest recent pull + 2 ms`, jitter being a robust peak of how late
//! packets arrive relative to the fastest ones over the last 2 s) as soon as it rises; grows by
//! one frame on each underrun; shrinks by 4 ms per second after 2 s without trouble, down to
//! that floor (at least one frame). Capped at [`JitterConfig::max_target_ms`]. A stall is not
//! counted as jitter.
//!
//! **Bounded latency.** When the buffer holds more than `target + max(target, frame) + frame +
//! largest pull` (after a stall and the burst that follows it, for instance), it drops the
//! oldest audio down to the target at once, cross-faded, and counts the samples in
//! [`JitterStats::dropped_samples`]. Likewise when calm, if audio waits more than a frame
//! longer than the target (the target came down faster than the drift loop drains the buffer),
//! at most once per 2 s.
//!
//! **Clock drift** (`drift.rs`): a PI loop on the delay (1 s average) against the target adjusts
//! the resampler's speed by up to ±2000 ppm (critically damped, 10 s time constant), so a sender
//! clock up to ±300 ppm off keeps the delay at its target indefinitely, within about 2 ms, with
//! no drops and no underruns; [`JitterStats::drift_ppm`] reports the learnt offset.
//!
//! **Rate conversion** (`resample.rs`): the same rubato resampler converts the wire rate to the
//! device rate: a 128-tap windowed sinc when downsampling (200 kHz -> 48 kHz), a septic
//! polynomial otherwise. All buffers are allocated in [`JitterBuffer::new`]; `push` and `pull`
//! allocate nothing (a test proves it).

mod conceal;
mod drift;
mod resample;
mod store;
mod target;

use conceal::{Concealer, Splice};
use drift::DriftController;
use resample::RateConverter;
use store::{Run, SampleRing};
use target::{CALM_HOLD, TargetDelay};

/// Lowest sample rate accepted on either side.
pub const MIN_RATE: u32 = 8_000;
/// Highest sample rate accepted on either side.
pub const MAX_RATE: u32 = 384_000;
/// Longest frame accepted, in milliseconds.
pub const MAX_FRAME_MS: u32 = 200;
/// Longest [`JitterConfig::capacity_ms`] accepted, in milliseconds.
pub const MAX_CAPACITY_MS: u32 = 10_000;

/// Concealment repeats at most this much of the last audio, in seconds.
const CONCEAL_PERIOD: f64 = 0.010;
/// Concealment fades to silence over this long, in seconds.
const CONCEAL_FADE: f64 = 0.030;
/// Cross-fade over splices, in seconds.
const SPLICE: f64 = 0.002;

/// How a [`JitterBuffer`] is set up. Build it with [`JitterConfig::new`], then adjust fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Sample rate of the audio in packets, in Hz (the sender's rate).
    pub wire_rate: u32,
    /// Sample rate the device pulls at, in Hz.
    pub output_rate: u32,
    /// Samples per packet the sender usually sends, at the wire rate. Sets the starting target
    /// (two frames) and the steps the target grows by.
    pub frame_samples: usize,
    /// Largest target delay the buffer will adapt to, in milliseconds. Default 500.
    pub max_target_ms: u32,
    /// How much audio ahead of the play cursor the buffer can hold, in milliseconds: the longest
    /// stall it can ride out without losing audio before catching up. Default 2000.
    pub capacity_ms: u32,
}

impl JitterConfig {
    /// A configuration with the default limits.
    pub fn new(wire_rate: u32, output_rate: u32, frame_samples: usize) -> Self {
        JitterConfig {
            wire_rate,
            output_rate,
            frame_samples,
            max_target_ms: 500,
            capacity_ms: 2_000,
        }
    }

    fn validate(&self) -> Result<(), JitterConfigError> {
        if !(MIN_RATE..=MAX_RATE).contains(&self.wire_rate) {
            return Err(JitterConfigError::WireRate(self.wire_rate));
        }
        if !(MIN_RATE..=MAX_RATE).contains(&self.output_rate) {
            return Err(JitterConfigError::OutputRate(self.output_rate));
        }
        let max_frame = self.wire_rate as usize * MAX_FRAME_MS as usize / 1000;
        if self.frame_samples == 0 || self.frame_samples > max_frame {
            return Err(JitterConfigError::FrameSamples(self.frame_samples));
        }
        let frame_ms = self.frame_samples as f64 * 1000.0 / f64::from(self.wire_rate);
        if f64::from(self.max_target_ms) < 2.0 * frame_ms {
            return Err(JitterConfigError::MaxTarget(self.max_target_ms));
        }
        if self.capacity_ms > MAX_CAPACITY_MS
            || f64::from(self.capacity_ms) < 2.0 * f64::from(self.max_target_ms) + 2.0 * frame_ms
        {
            return Err(JitterConfigError::Capacity(self.capacity_ms));
        }
        Ok(())
    }
}

/// Why a [`JitterConfig`] was refused. Rates come from the peer, so this is input, not a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JitterConfigError {
    /// The wire sample rate is outside [`MIN_RATE`]..=[`MAX_RATE`].
    WireRate(u32),
    /// The output sample rate is outside [`MIN_RATE`]..=[`MAX_RATE`].
    OutputRate(u32),
    /// The frame is empty or longer than [`MAX_FRAME_MS`].
    FrameSamples(usize),
    /// The largest target is shorter than two frames.
    MaxTarget(u32),
    /// The capacity is above [`MAX_CAPACITY_MS`] or below twice the largest target plus two frames.
    Capacity(u32),
}

impl core::fmt::Display for JitterConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WireRate(r) => write!(
                f,
                "wire sample rate {r} Hz is outside {MIN_RATE}..={MAX_RATE}"
            ),
            Self::OutputRate(r) => {
                write!(
                    f,
                    "output sample rate {r} Hz is outside {MIN_RATE}..={MAX_RATE}"
                )
            }
            Self::FrameSamples(n) => {
                write!(
                    f,
                    "frame of {n} samples is empty or longer than {MAX_FRAME_MS} ms"
                )
            }
            Self::MaxTarget(ms) => {
                write!(f, "largest target of {ms} ms is shorter than two frames")
            }
            Self::Capacity(ms) => write!(
                f,
                "capacity of {ms} ms is above {MAX_CAPACITY_MS} ms or below twice the largest target plus two frames"
            ),
        }
    }
}

impl std::error::Error for JitterConfigError {}

/// What the buffer has been doing, for a person to read or a test to check.
///
/// Sample counts are at the wire rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Audio buffered after the last pull, in milliseconds.
    pub depth_ms: f64,
    /// How long audio waits in the buffer, from the arrival of a packet until its last sample
    /// is pulled, averaged over about a second, in milliseconds: the latency the buffer adds,
    /// and what the drift controller holds at the target.
    pub delay_ms: f64,
    /// The delay the buffer currently aims at, in milliseconds.
    pub target_ms: f64,
    /// The arrival jitter currently estimated, in milliseconds.
    pub jitter_ms: f64,
    /// Packets pushed.
    pub received_packets: u64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
    /// Samples made up by concealment (gaps and underruns; not the silence before the start).
    pub concealed_samples: u64,
    /// Concealment episodes: each gap or underrun counts once.
    pub concealment_events: u64,
    /// Samples of real audio dropped to bring the latency back to the target.
    pub dropped_samples: u64,
    /// Packets that arrived after their samples had been played or concealed.
    pub late_packets: u64,
    /// Packets whose samples were all held already.
    pub duplicate_packets: u64,
    /// Times the stream restarted at a packet that did not connect to what was held.
    pub resyncs: u64,
    /// Resampling ratio in use: output rate over wire rate, times the drift correction.
    pub resample_ratio: f64,
    /// The sender's clock relative to ours, as learnt by the drift controller, in ppm
    /// (positive: the sender runs fast).
    pub drift_ppm: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No packet yet: silence.
    Idle,
    /// Waiting until the target delay is held; concealment or silence meanwhile.
    Buffering,
    /// Playing from the store.
    Playing,
}

/// Everything that feeds wire-rate samples to the resampler.
#[derive(Debug)]
struct Feeder {
    store: SampleRing,
    concealer: Concealer,
    splice: Splice,
    state: State,
    /// Audio has played since the last resync: silence from now on is concealment.
    started: bool,
    /// How far past the newest audio received the cursor may conceal before calling it an
    /// underrun: one frame, so that one lost packet at the tail is a gap, not a stall.
    loss_allowance: u64,
    underruns: u64,
    concealed_samples: u64,
    concealment_events: u64,
}

impl Feeder {
    /// Fills `buf` with what plays next; returns whether the buffer ran dry.
    fn fill(&mut self, buf: &mut [f32]) -> bool {
        let mut underrun = false;
        let mut filled = 0;
        while filled < buf.len() {
            let seg = &mut buf[filled..];
            if self.state != State::Playing {
                self.conceal(seg);
                filled = buf.len();
                continue;
            }
            match self.store.next_run(seg.len()) {
                Run::Data(n) => {
                    let seg = &mut seg[..n];
                    if self.concealer.is_active() {
                        let concealer = &mut self.concealer;
                        self.splice.start(|old| concealer.conceal(old));
                        concealer.end();
                    }
                    self.store.take(seg);
                    self.splice.apply(seg);
                    self.concealer.remember(seg);
                    self.started = true;
                    filled += n;
                }
                Run::Hole(n) => {
                    if !self.concealer.is_active() {
                        self.concealment_events += 1;
                    }
                    self.conceal(&mut seg[..n]);
                    self.store.skip(n as u64);
                    filled += n;
                }
                Run::Empty => {
                    if !self.concealer.is_active() {
                        self.concealment_events += 1;
                    }
                    let allowed_until = self.store.end() + self.loss_allowance;
                    let cursor = self.store.cursor();
                    if cursor < allowed_until {
                        // Perhaps only the next packet is lost: conceal it and move on, as
                        // for a hole. If the one after it does not come either, it is a stall.
                        let n = seg.len().min((allowed_until - cursor) as usize);
                        self.conceal(&mut seg[..n]);
                        self.store.skip(n as u64);
                        filled += n;
                        continue;
                    }
                    self.underruns += 1;
                    self.state = State::Buffering;
                    underrun = true;
                }
            }
        }
        underrun
    }

    fn conceal(&mut self, seg: &mut [f32]) {
        self.concealer.conceal(seg);
        self.splice.apply(seg);
        if self.started {
            self.concealed_samples += seg.len() as u64;
        }
    }

    /// Drops `n` samples at the cursor, cross-fading from them into what follows.
    fn drop_oldest(&mut self, n: u64) {
        let store = &self.store;
        self.splice.start(|old| store.peek(old));
        self.store.skip(n);
    }
}

/// A jitter buffer with adaptive delay, concealment and clock-drift compensation; see the
/// [module documentation](self).
#[derive(Debug)]
pub struct JitterBuffer {
    wire_rate: f64,
    output_rate: f64,
    feeder: Feeder,
    converter: RateConverter,
    /// Wire-rate samples for the next resampler chunk.
    input: Vec<f32>,
    target: TargetDelay,
    drift: DriftController,
    depth: f64,
    /// Sum over packets stored since the last pull of (newest sample's media time - arrival).
    arrival_sum: f64,
    arrival_count: u32,
    /// Arrival time and newest sample (one past) of the last packet stored.
    last_arrival: Option<(f64, u64)>,
    received_packets: u64,
    dropped_samples: u64,
    /// When the buffer last dropped audio to catch up with a target that came down, seconds.
    last_catch_up: f64,
    late_packets: u64,
    duplicate_packets: u64,
    resyncs: u64,
}

impl JitterBuffer {
    /// A buffer for `config`, with every buffer it will need allocated now.
    pub fn new(config: JitterConfig) -> Result<Self, JitterConfigError> {
        config.validate()?;
        let wire_rate = f64::from(config.wire_rate);
        let seconds = |s: f64| (s * wire_rate).round() as usize;
        let capacity = config.capacity_ms as usize * config.wire_rate as usize / 1000;
        let converter = RateConverter::new(config.wire_rate, config.output_rate);
        let frame = config.frame_samples as f64 / wire_rate;
        Ok(JitterBuffer {
            wire_rate,
            output_rate: f64::from(config.output_rate),
            feeder: Feeder {
                store: SampleRing::new(capacity),
                concealer: Concealer::new(
                    seconds(CONCEAL_PERIOD).min(config.frame_samples),
                    seconds(CONCEAL_FADE),
                ),
                splice: Splice::new(seconds(SPLICE)),
                state: State::Idle,
                started: false,
                loss_allowance: config.frame_samples as u64,
                underruns: 0,
                concealed_samples: 0,
                concealment_events: 0,
            },
            input: vec![0.0; converter.input_frames_max()],
            converter,
            target: TargetDelay::new(frame, f64::from(config.max_target_ms) / 1000.0),
            drift: DriftController::default(),
            depth: 0.0,
            arrival_sum: 0.0,
            arrival_count: 0,
            last_arrival: None,
            received_packets: 0,
            dropped_samples: 0,
            last_catch_up: f64::NEG_INFINITY,
            late_packets: 0,
            duplicate_packets: 0,
            resyncs: 0,
        })
    }

    /// A packet arrived at `now_us`: mono `samples` at the wire rate, the first of which is
    /// sample number `first_sample` of the sender's running count.
    pub fn push(&mut self, now_us: u64, first_sample: u64, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        self.received_packets += 1;
        let outcome = self.feeder.store.insert(first_sample, samples);
        self.dropped_samples += outcome.dropped;
        if outcome.resync {
            if self.feeder.state != State::Idle {
                self.resyncs += 1;
            }
            self.feeder.state = State::Buffering;
            self.feeder.started = false;
            self.feeder.concealer.clear();
            self.last_arrival = None;
            self.target.restart_timing();
        }
        if outcome.duplicate {
            self.duplicate_packets += 1;
            return;
        }
        let now = now_us as f64 / 1e6;
        if outcome.late {
            self.late_packets += 1;
        } else {
            let newest = first_sample + samples.len() as u64;
            self.arrival_sum += newest as f64 / self.wire_rate - now;
            self.arrival_count += 1;
            if self.last_arrival.is_none_or(|(_, last)| newest >= last) {
                self.last_arrival = Some((now, newest));
            }
        }
        self.target
            .on_arrival(now, first_sample as f64 / self.wire_rate);
    }

    /// The device wants `out.len()` samples at the output rate, at `now_us`; fills all of `out`.
    pub fn pull(&mut self, now_us: u64, out: &mut [f32]) {
        if out.is_empty() {
            return;
        }
        let now = now_us as f64 / 1e6;
        let duration = out.len() as f64 / self.output_rate;
        if self.feeder.state == State::Idle {
            out.fill(0.0);
            return;
        }
        self.target.on_pull(now, duration);
        let mut written = 0;
        while written < out.len() {
            if self.converter.buffered() == 0 {
                self.before_chunk(now);
                let need = self.converter.input_frames_next();
                let input = &mut self.input[..need];
                if self.feeder.fill(input) {
                    self.target.on_underrun(now);
                }
                self.converter.process(input);
            }
            written += self.converter.read(&mut out[written..]);
        }
        self.depth = self.depth_now();
        let measured = (self.arrival_count > 0).then(|| {
            // The device plays what it pulls without a break, so sample `i` is pulled at
            // `now + duration + depth - (end - i) / wire_rate`.
            let offset =
                now + duration + self.depth - self.feeder.store.end() as f64 / self.wire_rate;
            offset + self.arrival_sum / f64::from(self.arrival_count)
        });
        self.arrival_sum = 0.0;
        self.arrival_count = 0;
        if self.feeder.state == State::Playing {
            let correction = self.drift.update(measured, self.target.target(), duration);
            self.converter.set_correction(correction);
        }
    }

    /// Starts playing once the target is held, and drops audio the latency bound forbids.
    fn before_chunk(&mut self, now: f64) {
        let target = self.target.target();
        let depth = self.depth_now();
        // Start when the newest audio, played from now on, would have waited the target delay.
        let newest_delay = self.last_arrival.map_or(0.0, |(arrival, newest)| {
            let ahead = newest.saturating_sub(self.feeder.store.cursor());
            now + ahead as f64 / self.wire_rate - arrival
        });
        let frame = self.target.frame();
        if self.feeder.state == State::Buffering
            && newest_delay >= target
            && depth >= frame.min(target)
        {
            self.feeder.state = State::Playing;
            self.feeder.store.start_playing();
            self.drift.restart();
        }
        if self.feeder.state != State::Playing {
            return;
        }
        let limit = target + target.max(frame) + frame + self.target.largest_pull();
        if depth > limit {
            self.drop_seconds(depth - target);
            return;
        }
        // Calm, yet audio waits a frame or more longer than the target (a target that came down
        // after a rough start, faster than the drift loop's 2 ms/s): catch up at once, at most
        // once per calm hold, rather than carry the excess for tens of seconds. The wait is the
        // smaller of the 1 s average, which lags, and the newest packet's, which jitters.
        let Some(mean) = self.drift.mean_delay() else {
            return;
        };
        let excess = mean.min(newest_delay) - target;
        if self.target.is_calm(now) && now - self.last_catch_up > CALM_HOLD && excess > frame {
            self.last_catch_up = now;
            let dropped = self.drop_oldest(excess);
            // Every sample still held now waits exactly that much less: no need to re-measure.
            self.drift.shift(-dropped);
        }
    }

    /// Drops up to `seconds` of the oldest audio, cross-faded; returns the seconds dropped.
    fn drop_oldest(&mut self, seconds: f64) -> f64 {
        let samples = ((seconds * self.wire_rate) as u64).min(self.feeder.store.depth());
        self.feeder.drop_oldest(samples);
        self.dropped_samples += samples;
        samples as f64 / self.wire_rate
    }

    /// Drops audio down to the target after a burst: the delay average starts over.
    fn drop_seconds(&mut self, seconds: f64) {
        self.drop_oldest(seconds);
        self.drift.restart();
        // Packets measured so far may be among the dropped: their delay means nothing.
        self.arrival_sum = 0.0;
        self.arrival_count = 0;
    }

    /// Audio held, in seconds: the store plus converted frames not yet handed out.
    fn depth_now(&self) -> f64 {
        self.feeder.store.depth() as f64 / self.wire_rate
            + self.converter.buffered() as f64 / self.output_rate
    }

    /// Forgets the stream: for a sender that restarted its sample count (a new connection).
    /// The next packet starts the stream again; the adapted target and the counters stay.
    pub fn reset(&mut self) {
        self.feeder.store.clear();
        self.feeder.concealer.clear();
        self.feeder.state = State::Idle;
        self.feeder.started = false;
        self.drift = DriftController::default();
        self.converter.set_correction(0.0);
        self.arrival_sum = 0.0;
        self.arrival_count = 0;
        self.last_arrival = None;
        self.target.restart_timing();
    }

    /// What the buffer has been doing.
    pub fn stats(&self) -> JitterStats {
        let feeder = &self.feeder;
        JitterStats {
            depth_ms: self.depth * 1e3,
            delay_ms: self.drift.mean_delay().unwrap_or(0.0) * 1e3,
            target_ms: self.target.target() * 1e3,
            jitter_ms: self.target.jitter() * 1e3,
            received_packets: self.received_packets,
            underruns: feeder.underruns,
            concealed_samples: feeder.concealed_samples,
            concealment_events: feeder.concealment_events,
            dropped_samples: self.dropped_samples,
            late_packets: self.late_packets,
            duplicate_packets: self.duplicate_packets,
            resyncs: self.resyncs,
            resample_ratio: self.converter.ratio(),
            drift_ppm: self.drift.drift_ppm(),
        }
    }
}
