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
//! **What plays is what was sent.** Apart from the places counted in [`JitterStats`] (concealed
//! gaps and underruns, edits, drops after a stall), the samples that leave the buffer are the
//! sender's, in order; when the wire rate equals the output rate and no clock drift is measured,
//! they are bit for bit the samples the sender framed.
//!
//! **Concealment** (`conceal.rs`) repeats the last 10 ms (at most one frame) of audio, played
//! backwards and forwards so that no junction clicks, fading linearly to silence over 30 ms,
//! then plays silence. Real audio coming back, and every edit, are cross-faded over 2 ms, so no
//! splice clicks.
//!
//! **Target delay** (`target.rs`): starts at two frames; follows the observed arrival jitter
//! (`jitter + frame + largest recent pull + 2 ms`, jitter being a robust peak of how late
//! packets arrive relative to the fastest ones over the last 2 s) as soon as it rises; grows by
//! one frame on each underrun; after 2 s without trouble, comes down to that floor (at least one
//! frame). Capped at [`JitterConfig::max_target_ms`]. A stall is not counted as jitter.
//!
//! **Latency control** (`latency.rs`, `edit.rs`): the delay reaches its target by *edits*, never
//! by playing faster or slower (which would shift the pitch): when the delay (a one-second
//! average) is more than 2 ms off the target, the buffer drops a piece of audio or plays one
//! twice, chosen where the join cannot be heard (silence, or a whole number of periods of the
//! sound), cross-faded over 2 ms, and counted in [`JitterStats::edits`],
//! [`JitterStats::dropped_samples`] and [`JitterStats::inserted_samples`].
//!
//! **Bounded latency.** When the buffer holds more than `target + max(target, frame) + frame +
//! largest pull` (after a stall and the burst that follows it, for instance), it drops the
//! oldest audio down to the target at once (up to a period less, where the audio after the
//! jump continues the audio before it), cross-faded, and counts the samples in
//! [`JitterStats::dropped_samples`].
//!
//! **Clock drift** (`drift.rs`): resampling is for the one thing only it can fix, two sound
//! cards that tick at different rates. The buffer fits the slope of its delay over time (what it
//! would be without correction, steps left out) and, once that slope is clearly drift, plays at
//! exactly that ratio ([`JitterStats::correction_ppm`]); its estimate is
//! [`JitterStats::drift_ppm`]. Until then, and between devices of one clock, it does not resample
//! at all.
//!
//! **Rate conversion** (`resample.rs`): the same rubato resampler converts the wire rate to the
//! device rate: a 128-tap windowed sinc when downsampling (200 kHz -> 48 kHz), a polynomial
//! otherwise, which at the same rate and no correction passes every sample through unchanged.
//! All buffers are allocated in [`JitterBuffer::new`]; `push` and `pull` allocate nothing (a test
//! proves it).

mod conceal;
mod delay;
mod drift;
mod edit;
mod feeder;
mod latency;
mod resample;
mod store;
mod target;

use conceal::{Concealer, Splice};
use delay::DelayMeter;
use drift::DriftEstimator;
use edit::JumpSearch;
use feeder::{Feeder, State};
use latency::LatencyControl;
use resample::RateConverter;
use target::TargetDelay;

pub use crate::audio::{MAX_RATE, MIN_RATE};
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
/// How much less than asked a drop after a stall may take to find a join that cannot be heard,
/// seconds: a period of the lowest voice.
const STALL_JOIN_REACH: f64 = 0.012;

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

    /// Whether [`JitterBuffer::new`] accepts this configuration, without building the buffer
    /// (whose allocation a caller that only decides whether a stream is playable can spare).
    pub fn validate(&self) -> Result<(), JitterConfigError> {
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
    /// is pulled, for the packets that arrive first (later ones wait less, by up to the
    /// jitter), averaged over about a second, in milliseconds: what the latency control holds
    /// at the target.
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
    /// Samples of real audio never played: dropped by edits, after a stall, or because a packet
    /// came too far ahead to fit.
    pub dropped_samples: u64,
    /// Samples played twice by edits.
    pub inserted_samples: u64,
    /// Edits: pieces of audio dropped or played twice to bring the delay to its target.
    pub edits: u64,
    /// Packets that arrived after their samples had been played or concealed.
    pub late_packets: u64,
    /// Packets whose samples were all held already.
    pub duplicate_packets: u64,
    /// Times the stream restarted at a packet that did not connect to what was held.
    pub resyncs: u64,
    /// Resampling ratio in use: output rate over wire rate, divided by `1 + correction`.
    pub resample_ratio: f64,
    /// The clock-drift correction in use, in ppm: the other side's audio plays this much faster
    /// than nominal (0 unless drift is measured).
    pub correction_ppm: f64,
    /// The sender's clock relative to ours as measured so far, in ppm (positive: the sender
    /// runs fast), whether or not it is acted on yet.
    pub drift_ppm: f64,
    /// The standard error of [`Self::drift_ppm`], in ppm (infinite until measured).
    pub drift_error_ppm: f64,
}

/// How often the buffer measures its delay, seconds.
const BIN: f64 = 0.25;
/// Bins of the delay envelope: a second of them, one drift point.
const ENVELOPE_BINS: usize = 4;

/// The buffer delay of the packets that wait longest, measured every [`BIN`] over the
/// last [`ENVELOPE_BINS`] bins.
///
/// Packets arrive late by anything from nothing to the jitter, and the device's pulls come in
/// bursts, so the delay of one packet at one pull is noisy by milliseconds. The fastest packet
/// of a second and the best-timed pull are not: on a quiet network both are stable to a fraction
/// of a millisecond. So the delay is the largest `media time - arrival` of the packets plus the
/// smallest pull offset, over the last second (a quarter second alone sometimes holds only late
/// packets), and the target (`target.rs`) counts the jitter above it.
///
/// The drift fit gets the same envelope with the *mean* pull offset instead. The best-timed pull
/// of a second is an extreme of the device's timing, and a device driven by a coarse timer (a
/// tick every few milliseconds on a millisecond clock) has its best pull now a millisecond early,
/// now not, for seconds at a time as the machine's load comes and goes: a wander the fit would
/// read as drift. The mean of hundreds of pulls does not wander, and only its slope matters.
#[derive(Debug, Clone, Copy)]
struct DelayEnvelope {
    start: Option<f64>,
    /// Per bin, oldest overwritten.
    bins: [Bin; ENVELOPE_BINS],
    index: usize,
}

/// One [`BIN`] of a [`DelayEnvelope`], seconds.
#[derive(Debug, Clone, Copy)]
struct Bin {
    /// The largest `newest media time - arrival` of its packets.
    arrival: f64,
    /// The smallest `pull time + duration + depth - newest media time` of its pulls...
    pull: f64,
    /// ...their sum, and how many.
    pull_sum: f64,
    pulls: u32,
}

const NO_BIN: Bin = Bin {
    arrival: f64::NEG_INFINITY,
    pull: f64::INFINITY,
    pull_sum: 0.0,
    pulls: 0,
};

/// What a [`DelayEnvelope`] measured over its window, seconds.
#[derive(Debug, Clone, Copy)]
struct Envelope {
    /// The delay, to the best-timed pull.
    delay: f64,
    /// The delay to the mean pull, for the drift fit, if the window is all new since the last
    /// one returned (a drift point).
    drift_point: Option<f64>,
}

impl Default for DelayEnvelope {
    fn default() -> Self {
        DelayEnvelope {
            start: None,
            bins: [NO_BIN; ENVELOPE_BINS],
            index: 0,
        }
    }
}

impl DelayEnvelope {
    fn arrived(&mut self, media_minus_arrival: f64) {
        let bin = &mut self.bins[self.index];
        bin.arrival = bin.arrival.max(media_minus_arrival);
    }

    /// A pull at `now` with `offset`; returns what the window measured each time a bin
    /// completes.
    fn pulled(&mut self, now: f64, offset: f64) -> Option<Envelope> {
        let bin = &mut self.bins[self.index];
        bin.pull = bin.pull.min(offset);
        bin.pull_sum += offset;
        bin.pulls += 1;
        let start = *self.start.get_or_insert(now);
        if now - start < BIN {
            return None;
        }
        self.start = Some(now);
        self.index = (self.index + 1) % ENVELOPE_BINS;
        let window = self.bins.iter().fold(NO_BIN, |w, b| Bin {
            arrival: w.arrival.max(b.arrival),
            pull: w.pull.min(b.pull),
            pull_sum: w.pull_sum + b.pull_sum,
            pulls: w.pulls + b.pulls,
        });
        self.bins[self.index] = NO_BIN;
        window.arrival.is_finite().then(|| Envelope {
            delay: window.arrival + window.pull,
            drift_point: (self.index == 0)
                .then(|| window.arrival + window.pull_sum / f64::from(window.pulls)),
        })
    }

    /// Pulls from now on are offset by `seconds` more than those measured so far.
    fn shift(&mut self, seconds: f64) {
        for bin in &mut self.bins {
            bin.pull += seconds;
            bin.pull_sum += seconds * f64::from(bin.pulls);
        }
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
    delay: DelayMeter,
    drift: DriftEstimator,
    latency: LatencyControl,
    depth: f64,
    bin: DelayEnvelope,
    /// Arrival time and newest sample (one past) of the last packet stored.
    last_arrival: Option<(f64, u64)>,
    received_packets: u64,
    /// Samples dropped outside edits: after a stall, or to fit a far-ahead packet.
    dropped_samples: u64,
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
        let splice = seconds(SPLICE);
        let latency = LatencyControl::new(config.wire_rate, splice);
        let feeder = Feeder::new(
            capacity,
            Concealer::new(
                seconds(CONCEAL_PERIOD).min(config.frame_samples),
                seconds(CONCEAL_FADE),
            ),
            Splice::new(splice),
            config.frame_samples as u64,
            latency.max_edit(),
            JumpSearch::new(config.wire_rate, splice, seconds(STALL_JOIN_REACH)),
        );
        Ok(JitterBuffer {
            wire_rate,
            output_rate: f64::from(config.output_rate),
            feeder,
            input: vec![0.0; converter.input_frames_max()],
            converter,
            target: TargetDelay::new(frame, f64::from(config.max_target_ms) / 1000.0),
            delay: DelayMeter::default(),
            drift: DriftEstimator::default(),
            latency,
            depth: 0.0,
            bin: DelayEnvelope::default(),
            last_arrival: None,
            received_packets: 0,
            dropped_samples: 0,
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
        if outcome.dropped > 0 {
            self.feeder.cancel_edit();
            self.steps();
        }
        if outcome.resync {
            if self.feeder.state != State::Idle {
                self.resyncs += 1;
            }
            self.feeder.state = State::Buffering;
            self.feeder.started = false;
            self.feeder.concealer.clear();
            self.feeder.cancel_edit();
            self.last_arrival = None;
            self.target.restart_timing();
            self.steps();
        }
        if outcome.duplicate {
            self.duplicate_packets += 1;
            return;
        }
        let now = now_us as f64 / 1e6;
        if outcome.late {
            self.late_packets += 1;
        } else {
            let Some(newest) = first_sample.checked_add(samples.len() as u64) else {
                return;
            };
            self.bin.arrived(newest as f64 / self.wire_rate - now);
            if self.last_arrival.is_none_or(|(_, last)| newest >= last) {
                self.last_arrival = Some((now, newest));
            }
        }
        self.target
            .on_arrival(now, first_sample as f64 / self.wire_rate);
    }

    /// The device wants `out.len()` samples at the output rate, at `now_us`; fills all of `out`.
    pub fn pull(&mut self, now_us: u64, out: &mut [f32]) {
        self.pull_ahead(now_us, 0, out);
    }

    /// Like [`Self::pull`], for a device that plays what it pulls `ahead_us` later: the audio is
    /// taken at `now_us` and its first sample plays at `now_us + ahead_us` (a playback ring
    /// between the buffer and the sound card holds that much). The buffer delay is measured to
    /// the playout, and the target keeps room for the lead.
    pub fn pull_ahead(&mut self, now_us: u64, ahead_us: u64, out: &mut [f32]) {
        if out.is_empty() {
            return;
        }
        let ahead = ahead_us as f64 / 1e6;
        // From here on, times are playout times.
        let now = now_us as f64 / 1e6 + ahead;
        let duration = out.len() as f64 / self.output_rate;
        if self.feeder.state == State::Idle {
            out.fill(0.0);
            return;
        }
        self.target.on_pull(now, duration + ahead);
        let correction = self.drift.advance(duration);
        self.converter.set_correction(correction);
        let mut written = 0;
        while written < out.len() {
            if self.converter.buffered() == 0 {
                self.before_chunk(now);
                let need = self.converter.input_frames_next();
                let filled = self.feeder.fill(&mut self.input[..need]);
                self.converter.process(&self.input[..need]);
                if filled.underrun {
                    self.target.on_underrun(now);
                    self.steps();
                }
                if filled.edited != 0 {
                    // Every sample still held waits exactly that much longer (or shorter).
                    self.shifts(filled.edited as f64 / self.wire_rate);
                }
            }
            written += self.converter.read(&mut out[written..]);
        }
        self.depth = self.depth_now();
        // The device plays what it pulls without a break, so sample `i` plays at
        // `now + duration + depth - (end - i) / wire_rate`.
        let offset = now + duration + self.depth - self.feeder.store.end() as f64 / self.wire_rate;
        if let Some(envelope) = self.bin.pulled(now, offset)
            && self.feeder.state == State::Playing
        {
            self.delay.measure(envelope.delay);
            if let Some(delay) = envelope.drift_point {
                self.drift.observe(now, delay);
            }
        }
    }

    /// How long the audio held ahead of sample `index` of the sender's count takes to play out
    /// of the buffer, in seconds: the samples before it (a hole counts, as it is concealed
    /// when not filled), an insert still playing, and the rate converter's delay and what it
    /// converted and has not handed out yet. Negative for a sample the cursor has passed: it
    /// would have played that long ago. Plus what was pulled and not played yet (a playback
    /// ring, the device), it is how long a packet pushed now waits until it is heard.
    #[must_use]
    pub fn held_before(&self, index: u64) -> f64 {
        let store = &self.feeder.store;
        let ahead = index as f64 - store.cursor() as f64 + self.feeder.injecting() as f64;
        ahead / self.wire_rate
            + (self.converter.delay() + self.converter.buffered()) as f64 / self.output_rate
    }

    /// Starts playing once the target is held, and plans the edits that keep the delay there.
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
            self.steps();
        }
        if self.feeder.state != State::Playing {
            return;
        }
        let limit = target + target.max(frame) + frame + self.target.largest_pull();
        if depth > limit {
            // After a stall and its burst: back to the target at once, at the best join within
            // a period of it.
            let samples =
                (((depth - target) * self.wire_rate) as u64).min(self.feeder.store.depth());
            self.dropped_samples += self.feeder.drop_oldest(samples);
            self.steps();
            return;
        }
        if let Some(delay) = self.delay.mean() {
            let noise = self.delay.noise();
            self.latency
                .update(now, delay - target, noise, &mut self.feeder);
        }
    }

    /// The delay just moved by an amount nobody measured: its average starts over, and the
    /// drift fit starts a new segment.
    fn steps(&mut self) {
        self.delay.restart();
        self.drift.step();
        self.bin = DelayEnvelope::default();
    }

    /// Every sample held now waits `seconds` longer (negative: shorter): everything that
    /// measures the delay moves with it.
    fn shifts(&mut self, seconds: f64) {
        self.delay.shift(seconds);
        self.drift.shift(seconds);
        self.bin.shift(seconds);
    }

    /// Audio held, in seconds: the store, an insert still playing, and converted frames not
    /// yet handed out.
    fn depth_now(&self) -> f64 {
        (self.feeder.store.depth() + self.feeder.injecting() as u64) as f64 / self.wire_rate
            + self.converter.buffered() as f64 / self.output_rate
    }

    /// The device played `samples` (at the output rate) of silence of its own, because what
    /// was pulled from here reached it late (a playback ring that ran dry): everything held
    /// now plays that much later. A step of known size, taken out of the delay measurements
    /// like an edit's, so that a device hiccup too small to read as a step never reads as
    /// drift either.
    pub fn output_gap(&mut self, samples: u64) {
        if samples > 0 && self.feeder.state == State::Playing {
            self.shifts(samples as f64 / self.output_rate);
        }
    }

    /// Forgets the stream: for a sender that restarted its sample count (a new connection).
    /// The next packet starts the stream again; the adapted target, the measured drift and the
    /// counters stay.
    pub fn reset(&mut self) {
        self.feeder.store.clear();
        self.feeder.concealer.clear();
        self.feeder.cancel_edit();
        self.feeder.state = State::Idle;
        self.feeder.started = false;
        self.last_arrival = None;
        self.target.restart_timing();
        self.steps();
    }

    /// What the buffer has been doing.
    pub fn stats(&self) -> JitterStats {
        let feeder = &self.feeder;
        JitterStats {
            depth_ms: self.depth * 1e3,
            delay_ms: self.delay.mean().unwrap_or(0.0) * 1e3,
            target_ms: self.target.target() * 1e3,
            jitter_ms: self.target.jitter() * 1e3,
            received_packets: self.received_packets,
            underruns: feeder.underruns,
            concealed_samples: feeder.concealed_samples,
            concealment_events: feeder.concealment_events,
            dropped_samples: self.dropped_samples + feeder.edit_dropped_samples,
            inserted_samples: feeder.inserted_samples,
            edits: feeder.edits,
            late_packets: self.late_packets,
            duplicate_packets: self.duplicate_packets,
            resyncs: self.resyncs,
            resample_ratio: self.converter.ratio(),
            correction_ppm: self.drift.correction() * 1e6,
            drift_ppm: self.drift.drift_ppm(),
            drift_error_ppm: self.drift.std_error_ppm(),
        }
    }
}
