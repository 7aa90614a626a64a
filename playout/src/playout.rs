//! The jitter buffer per render quantum, as the playback processor runs it.

use line_protocol::audio::{DEFAULT_RATE, FrameDuration, MOBILE_RATE};
use line_protocol::jitter::{JitterBuffer, JitterConfig};

use crate::record::{self, Header};

/// Indices into the statistics [`Playout::stats`] fills: what the worker's `stats()` reads back.
pub mod stat {
    /// `currentFrame` at the end of the last quantum rendered (the worker's [`crate::ClockMap`]).
    pub const RENDERED: usize = 0;
    /// Audio held in the jitter buffer after the last pull, ms.
    pub const DEPTH_MS: usize = 1;
    /// The delay the jitter buffer aims at, ms.
    pub const TARGET_MS: usize = 2;
    /// Arrival jitter it measured, ms.
    pub const JITTER_MS: usize = 3;
    /// The other side's clock against the audio clock, ppm.
    pub const DRIFT_PPM: usize = 4;
    /// Its standard error, ppm (infinite until measured).
    pub const DRIFT_ERROR_PPM: usize = 5;
    /// The resampling ratio in use for the drift, ppm.
    pub const CORRECTION_PPM: usize = 6;
    /// Samples dropped (edits and after stalls).
    pub const DROPPED: usize = 7;
    /// Samples played twice by edits.
    pub const INSERTED: usize = 8;
    /// Edits.
    pub const EDITS: usize = 9;
    /// Underruns.
    pub const UNDERRUNS: usize = 10;
    /// Samples made up by concealment.
    pub const CONCEALED: usize = 11;
    /// Frames discarded as late or duplicate.
    pub const DISCARDED: usize = 12;
    /// Mouth to ear of the last frame received, less the device's latency, ms (NaN: none yet).
    pub const MOUTH_TO_EAR_MS: usize = 13;
    /// Peak level played over the last 50-100 ms.
    pub const OUTPUT_PEAK: usize = 14;
    /// Samples per frame of the stream playing.
    pub const FRAME_SAMPLES: usize = 15;
    /// Records taken from the ring.
    pub const RECORDS: usize = 16;
    /// Records that were no record (a bug if ever non-zero).
    pub const BAD_RECORDS: usize = 17;
    /// Records lost before they reached the playout: no room for them in the worklet's own ring
    /// (without shared memory; the worker counts those it found no room for in a shared one).
    pub const DROPPED_RECORDS: usize = 18;
    /// How many statistics there are.
    pub const LEN: usize = 19;
}

/// The longest quantum rendered at once (Web Audio's is 128; later specs allow a few more).
pub const MAX_QUANTUM: usize = 4_096;
/// How long the output peak holds, microseconds (reported as the larger of two such windows).
const PEAK_WINDOW_US: f64 = 50_000.0;
/// Jitter buffers kept, the playing one included. A jitter buffer is sized for its rate and
/// frame (1.6 MB at 200 kHz) and its resampler's filter is built for its rates, so a new stream
/// takes a kept one when it can: building one would allocate on the audio thread.
const KEPT: usize = 4;

/// The streams a buffer is built for at the start: the protocol's two standard rates, at the
/// default frame.
fn standard_streams() -> [(u32, usize); 2] {
    [DEFAULT_RATE, MOBILE_RATE].map(|rate| (rate, FrameDuration::DEFAULT.samples(rate)))
}

struct Stream {
    rate: u32,
    frame_samples: usize,
    jitter: JitterBuffer,
    /// When it last started, in streams started (the one kept longest unused goes first).
    started: u64,
}

/// The playback processor's state: the stream playing, its jitter buffer, scratch buffers that
/// JavaScript reads and writes in place, and the statistics.
pub struct Playout {
    context_rate: u32,
    /// Built jitter buffers, at most [`KEPT`], one per rate and frame size.
    streams: Vec<Stream>,
    /// Which of them is playing.
    playing: Option<usize>,
    starts: u64,
    record: Vec<f32>,
    out: Vec<f32>,
    stats: [f64; stat::LEN],
    peak: (f32, f32),
    peak_since_us: f64,
    mouth_to_ear_ms: f64,
    rendered: f64,
    records: u64,
    bad_records: u64,
    dropped_records: u64,
}

impl Playout {
    /// Playout into a context running at `context_rate`; every buffer is allocated here, the
    /// jitter buffers for the standard streams included. Only a stream at a rate or frame size
    /// neither standard nor among the last few played allocates, its jitter buffer.
    #[must_use]
    pub fn new(context_rate: u32) -> Self {
        let mut streams = Vec::with_capacity(KEPT);
        for (rate, frame_samples) in standard_streams() {
            let config = JitterConfig::new(rate, context_rate, frame_samples);
            // A context rate the jitter buffer refuses plays nothing anyway.
            if let Ok(jitter) = JitterBuffer::new(config) {
                streams.push(Stream {
                    rate,
                    frame_samples,
                    jitter,
                    started: 0,
                });
            }
        }
        Self {
            context_rate,
            streams,
            playing: None,
            starts: 0,
            record: vec![0.0; record::MAX_WORDS],
            out: vec![0.0; MAX_QUANTUM],
            stats: [0.0; stat::LEN],
            peak: (0.0, 0.0),
            peak_since_us: 0.0,
            mouth_to_ear_ms: f64::NAN,
            rendered: 0.0,
            records: 0,
            bad_records: 0,
            dropped_records: 0,
        }
    }

    /// Where JavaScript copies a record before [`Self::push_scratch`].
    pub fn record_scratch(&mut self) -> &mut [f32] {
        &mut self.record
    }

    /// Where [`Self::render_scratch`] leaves the quantum.
    #[must_use]
    pub fn out(&self) -> &[f32] {
        &self.out
    }

    fn now_us(&self, frame: f64) -> f64 {
        frame * 1e6 / f64::from(self.context_rate)
    }

    /// Takes the record of `len` words in the record scratch, before rendering the quantum
    /// that starts at `frame`.
    pub fn push_scratch(&mut self, len: usize, frame: f64) {
        let record = core::mem::take(&mut self.record);
        if let Some(words) = record.get(..len) {
            self.push(words, frame);
        } else {
            self.bad_records += 1;
        }
        self.record = record;
    }

    /// A record never came: it found no room in the ring before the playout.
    pub fn record_dropped(&mut self) {
        self.dropped_records += 1;
    }

    /// Takes one record, before rendering the quantum that starts at `frame`.
    pub fn push(&mut self, words: &[f32], frame: f64) {
        let Some((header, samples)) = Header::read(words) else {
            self.bad_records += 1;
            return;
        };
        self.records += 1;
        let now_us = self.now_us(frame);
        let fresh = header.flags & record::NEW_STREAM != 0
            || self.stream().is_none_or(|s| s.rate != header.rate);
        if fresh {
            let Some(playing) = self.start(header.rate, samples.len()) else {
                // The worker refuses streams the buffer cannot play; this is no such stream.
                self.bad_records += 1;
                return;
            };
            self.playing = Some(playing);
        }
        let Some(stream) = self.playing.and_then(|i| self.streams.get_mut(i)) else {
            return;
        };
        let arrival_us = if header.flags & record::NO_CLOCK != 0 {
            now_us as u64
        } else {
            header.arrival_us
        };
        stream.jitter.push(arrival_us, header.first_sample, samples);
        if header.flags & record::REBUILT == 0 {
            // Its first sample plays once what the buffer holds ahead of it has played, from
            // this quantum on; it arrived `now - arrival` before this quantum.
            let held_us = stream.jitter.held_before(header.first_sample) * 1e6;
            let waited_us = now_us - arrival_us as f64;
            self.mouth_to_ear_ms = (header.age_us as f64 + waited_us + held_us).max(0.0) / 1e3;
        }
    }

    fn stream(&self) -> Option<&Stream> {
        self.playing.and_then(|i| self.streams.get(i))
    }

    /// A jitter buffer for a new stream, by its index in `streams`: a kept one for the same rate
    /// and frame size, reset (which keeps the adapted target and measured drift: mostly the same
    /// sender, reconnected), or else a new one, which allocates.
    fn start(&mut self, rate: u32, frame_samples: usize) -> Option<usize> {
        self.starts += 1;
        let kept = self
            .streams
            .iter()
            .position(|s| s.rate == rate && s.frame_samples == frame_samples);
        if let Some(i) = kept {
            let stream = &mut self.streams[i];
            stream.jitter.reset();
            stream.started = self.starts;
            return Some(i);
        }
        let config = JitterConfig::new(rate, self.context_rate, frame_samples);
        let stream = Stream {
            rate,
            frame_samples,
            jitter: JitterBuffer::new(config).ok()?,
            started: self.starts,
        };
        if self.streams.len() < KEPT {
            self.streams.push(stream);
            return Some(self.streams.len() - 1);
        }
        // The playing one started last but for this one: never the longest unused.
        let (oldest, _) = self
            .streams
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.started)?;
        self.streams[oldest] = stream;
        Some(oldest)
    }

    /// Renders `n` samples (at most [`MAX_QUANTUM`]) for the quantum starting at `frame` into
    /// the output scratch.
    pub fn render_scratch(&mut self, frame: f64, n: usize) {
        let n = n.min(MAX_QUANTUM);
        let mut out = core::mem::take(&mut self.out);
        self.render(frame, &mut out[..n]);
        self.out = out;
    }

    /// Renders the quantum starting at `frame` into `out`.
    pub fn render(&mut self, frame: f64, out: &mut [f32]) {
        let now_us = self.now_us(frame);
        match self.playing.and_then(|i| self.streams.get_mut(i)) {
            Some(stream) => stream.jitter.pull(now_us as u64, out),
            None => out.fill(0.0),
        }
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        if now_us - self.peak_since_us >= PEAK_WINDOW_US {
            self.peak = (self.peak.1, 0.0);
            self.peak_since_us = now_us;
        }
        self.peak.1 = self.peak.1.max(peak);
        self.rendered = frame + out.len() as f64;
    }

    /// The statistics (indices in [`stat`]), as of now.
    pub fn stats(&mut self) -> &[f64] {
        let s = &mut self.stats;
        s.fill(0.0);
        s[stat::RENDERED] = self.rendered;
        s[stat::MOUTH_TO_EAR_MS] = self.mouth_to_ear_ms;
        s[stat::OUTPUT_PEAK] = f64::from(self.peak.0.max(self.peak.1));
        s[stat::RECORDS] = self.records as f64;
        s[stat::BAD_RECORDS] = self.bad_records as f64;
        s[stat::DROPPED_RECORDS] = self.dropped_records as f64;
        s[stat::DRIFT_ERROR_PPM] = f64::INFINITY;
        if let Some(stream) = self.playing.and_then(|i| self.streams.get(i)) {
            let j = stream.jitter.stats();
            s[stat::DEPTH_MS] = j.depth_ms;
            s[stat::TARGET_MS] = j.target_ms;
            s[stat::JITTER_MS] = j.jitter_ms;
            s[stat::DRIFT_PPM] = j.drift_ppm;
            s[stat::DRIFT_ERROR_PPM] = j.drift_error_ppm;
            s[stat::CORRECTION_PPM] = j.correction_ppm;
            s[stat::DROPPED] = j.dropped_samples as f64;
            s[stat::INSERTED] = j.inserted_samples as f64;
            s[stat::EDITS] = j.edits as f64;
            s[stat::UNDERRUNS] = j.underruns as f64;
            s[stat::CONCEALED] = j.concealed_samples as f64;
            s[stat::DISCARDED] = (j.late_packets + j.duplicate_packets) as f64;
            s[stat::FRAME_SAMPLES] = stream.frame_samples as f64;
        }
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use line_protocol::testing::Rng;

    #[test]
    fn lost_and_malformed_records_are_counted_apart_from_those_played() {
        let mut rng = Rng::from_env();
        let mut next = || rng.next_u64();
        let mut playout = Playout::new(48_000);
        let samples = vec![0.25; 480];
        let (mut good, mut bad, mut lost) = (0u64, 0u64, 0u64);
        let mut words = Vec::new();
        for k in 0..300u64 {
            match next() % 5 {
                0 => {
                    playout.record_dropped();
                    lost += 1;
                }
                1 => {
                    // Words that are no record: cut short, or longer than the scratch.
                    if next() % 2 == 0 {
                        let cut = (next() % (words.len().max(1) as u64)) as usize;
                        playout.push(&words[..cut], 0.0);
                    } else {
                        playout.push_scratch(record::MAX_WORDS + 1, 0.0);
                    }
                    bad += 1;
                }
                _ => {
                    Header {
                        flags: 0,
                        rate: 48_000,
                        first_sample: k * 480,
                        arrival_us: k * 10_000,
                        age_us: 0,
                    }
                    .write(&samples, &mut words);
                    playout.push(&words, (k * 480) as f64);
                    good += 1;
                }
            }
        }
        let s = playout.stats();
        assert_eq!(s[stat::RECORDS], good as f64);
        assert_eq!(s[stat::BAD_RECORDS], bad as f64);
        assert_eq!(s[stat::DROPPED_RECORDS], lost as f64);
    }
}
