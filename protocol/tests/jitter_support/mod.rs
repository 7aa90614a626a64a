//! A deterministic network and sound-card simulator for the jitter buffer tests: a virtual clock,
//! a sender whose clock may run fast or slow, seeded jitter, stalls, losses and duplicates.

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use line_protocol::jitter::{JitterBuffer, JitterConfig, JitterStats};

pub use line_protocol::testing::{Rng, seed_from_env};

/// The sender's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A sine of amplitude 0.5 whose period divides the frame.
    Tone,
    /// Sample `i` is [`sequence_sample`]`(i)`: every stretch of a few samples is unique, so the
    /// output can be matched to the input sample for sample.
    Sequence,
}

/// Sample `index` of [`Signal::Sequence`]: a 16-bit value as the wire carries it, scaled as
/// `pcm::i16le_to_f32` scales it.
pub fn sequence_sample(index: u64) -> f32 {
    let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    let value = (x as i16) / 4; // a quarter of full scale
    (f32::from(value) / 32767.0).max(-1.0)
}

/// One simulated call: a sender, a network and a device pulling at a fixed period.
pub struct Sim {
    pub jb: JitterBuffer,
    pub wire_rate: u32,
    pub output_rate: u32,
    pub frame: usize,
    /// The sender's clock relative to ours: 1.0003 is 300 ppm fast.
    pub sender_speed: f64,
    /// Fixed one-way delay, microseconds.
    pub base_delay_us: u64,
    /// Extra delay, uniform in [0, jitter_us), per packet.
    pub jitter_us: u64,
    /// Packets sent in [start, end) microseconds arrive at `end` instead (a stall).
    pub stall: Option<(u64, u64)>,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Every n-th frame is lost.
    pub lose_every: Option<u64>,
    pub rng: Rng,
    /// What the sender says: the same tone frame after frame, or a unique 16-bit sequence.
    pub signal: Signal,
    /// One frame of the tone (a whole number of periods), or scratch for the sequence.
    frame_buf: Vec<f32>,
    next_frame: u64,
    /// (arrival, first sample, is a duplicate)
    in_flight: BinaryHeap<Reverse<(u64, u64, bool)>>,
    pub out: Vec<f32>,
    pulled: u64,
    /// Duplicates delivered so far.
    pub sent_duplicates: u64,
    pub lost: u64,
}

impl Sim {
    /// A sender of a `tone_hz` sine (amplitude 0.5) in frames of `frame` samples; the device
    /// pulls `pull` samples at a time.
    pub fn new(wire_rate: u32, output_rate: u32, frame: usize, pull: usize, tone_hz: f64) -> Self {
        let jb = JitterBuffer::new(JitterConfig::new(wire_rate, output_rate, frame))
            .expect("valid test configuration");
        let frame_buf = (0..frame)
            .map(|n| {
                (0.5 * (2.0 * std::f64::consts::PI * tone_hz * n as f64 / f64::from(wire_rate))
                    .sin()) as f32
            })
            .collect();
        Sim {
            jb,
            wire_rate,
            output_rate,
            frame,
            sender_speed: 1.0,
            base_delay_us: 20_000,
            jitter_us: 0,
            stall: None,
            loss: 0.0,
            duplicate: 0.0,
            lose_every: None,
            rng: Rng::new(0x5eed_1234),
            signal: Signal::Tone,
            frame_buf,
            next_frame: 0,
            in_flight: BinaryHeap::new(),
            out: vec![0.0; pull],
            pulled: 0,
            sent_duplicates: 0,
            lost: 0,
        }
    }

    /// Our clock now, in microseconds.
    pub fn now_us(&self) -> u64 {
        (self.pulled as u128 * 1_000_000 / u128::from(self.output_rate)) as u64
    }

    pub fn frame_ms(&self) -> f64 {
        self.frame as f64 * 1000.0 / f64::from(self.wire_rate)
    }

    pub fn pull_ms(&self) -> f64 {
        self.out.len() as f64 * 1000.0 / f64::from(self.output_rate)
    }

    /// Sends every frame the sender has finished by `now`, onto the network.
    fn send_until(&mut self, now: u64) {
        loop {
            let end_sample = (self.next_frame + 1) * self.frame as u64;
            let send_us =
                (end_sample as f64 * 1e6 / (f64::from(self.wire_rate) * self.sender_speed)) as u64;
            if send_us > now {
                return;
            }
            let index = self.next_frame;
            let first = index * self.frame as u64;
            self.next_frame += 1;
            let lose_this = self.lose_every.is_some_and(|n| index.is_multiple_of(n));
            if lose_this || self.rng.unit() < self.loss {
                self.lost += 1;
                continue;
            }
            let jitter = if self.jitter_us > 0 {
                (self.rng.unit() * self.jitter_us as f64) as u64
            } else {
                0
            };
            let mut arrival = send_us + self.base_delay_us + jitter;
            if let Some((start, end)) = self.stall
                && (start..end).contains(&send_us)
            {
                arrival = arrival.max(end + self.base_delay_us);
            }
            self.in_flight.push(Reverse((arrival, first, false)));
            if self.rng.unit() < self.duplicate {
                self.in_flight.push(Reverse((arrival + 1_000, first, true)));
            }
        }
    }

    /// Delivers what arrived by now, then pulls one device period. Returns the stats after it.
    pub fn step(&mut self) -> JitterStats {
        let now = self.now_us();
        self.deliver(now);
        self.jb.pull(now, &mut self.out);
        self.pulled += self.out.len() as u64;
        self.jb.stats()
    }

    /// A device woken by a timer at `now_us` (ours), as a program without a sound card plays:
    /// it pulls every sample due by then, however late the timer fired. Returns the stats after
    /// it.
    pub fn pull_due(&mut self, now_us: u64) -> JitterStats {
        self.deliver(now_us);
        let due = (u128::from(now_us) * u128::from(self.output_rate) / 1_000_000) as u64;
        if due > self.pulled {
            self.out.resize((due - self.pulled) as usize, 0.0);
            self.jb.pull(now_us, &mut self.out);
            self.pulled = due;
        }
        self.jb.stats()
    }

    /// Sends what the sender finished by `now` and pushes what arrived by then.
    fn deliver(&mut self, now: u64) {
        self.send_until(now);
        while let Some(Reverse((arrival, first, duplicate))) = self.in_flight.peek().copied() {
            if arrival > now {
                break;
            }
            self.in_flight.pop();
            self.sent_duplicates += u64::from(duplicate);
            if self.signal == Signal::Sequence {
                for (i, v) in self.frame_buf.iter_mut().enumerate() {
                    *v = sequence_sample(first + i as u64);
                }
            }
            self.jb.push(arrival, first, &self.frame_buf);
        }
    }

    /// The device plays `samples` of silence of its own (its ring ran dry: our pull came late),
    /// and says so: our clock moves on and nothing is pulled meanwhile.
    pub fn device_gap(&mut self, samples: u64) {
        self.pulled += samples;
        self.jb.output_gap(samples);
    }

    /// Runs until our clock reaches `seconds`, calling `check` after every pull.
    pub fn run_until(&mut self, seconds: f64, mut check: impl FnMut(f64, &JitterStats, &[f32])) {
        let end = (seconds * 1e6) as u64;
        while self.now_us() < end {
            let stats = self.step();
            let t = self.now_us() as f64 / 1e6;
            check(t, &stats, &self.out);
        }
    }
}

/// Amplitude of the `freq` component of `x` sampled at `rate`, by the Goertzel algorithm.
pub fn goertzel_amplitude(x: &[f32], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

/// How a played [`Signal::Sequence`] relates to the sequence sent.
#[derive(Debug, Default)]
pub struct Followed {
    /// Samples equal, bit for bit, to the sequence sample they stand for.
    pub exact: u64,
    /// Samples that are not (cross-fades, concealment, silence before the start).
    pub other: u64,
    /// Jumps in the sequence: (output index, samples jumped; positive: skipped ahead).
    pub jumps: Vec<(usize, i64)>,
}

/// Follows `out`, a played [`Signal::Sequence`], sample by sample: where it is the sequence, and
/// where (and by how much) it jumps. `first` is about the sequence index of `out[0]` (its first
/// sample, if the stream starts with `out`), looked for a second either way at `rate`. After
/// losing the sequence, skips `window` samples (a cross-fade) and searches up to `reach` samples
/// either way.
pub fn follow_sequence(out: &[f32], first: u64, rate: u32, window: usize, reach: i64) -> Followed {
    // Samples that must match in a row to find the sequence again.
    const RUN: usize = 16;
    let matches = |at: usize, offset: i64, len: usize| {
        (0..len).all(|k| {
            let want = (at + k) as i64 - offset;
            want >= 0 && sequence_sample(want as u64) == out[at + k]
        })
    };
    let mut result = Followed::default();
    let mut offset: Option<i64> = None;
    let mut j = 0;
    while j < out.len() {
        if let Some(o) = offset
            && matches(j, o, 1)
        {
            result.exact += 1;
            j += 1;
            continue;
        }
        // Lost: find the sequence again at the first place where a run of it matches.
        let found = (j + RUN <= out.len() && out[j..j + RUN].iter().any(|v| *v != 0.0))
            .then(|| {
                let (around, reach) = match offset {
                    Some(o) => (o, reach),
                    None => (j as i64 - first as i64, i64::from(rate)),
                };
                (0..=reach)
                    .flat_map(|d| [around - d, around + d])
                    .find(|&o| matches(j, o, RUN))
            })
            .flatten();
        match found {
            Some(o) => {
                if let Some(old) = offset {
                    result.jumps.push((j, old - o));
                }
                offset = Some(o);
            }
            None => {
                // Inside a cross-fade nothing matches: step over it at once.
                // Before the start, silence is stepped over sample by sample, to find the
                // first sample exactly; a fade-in too, a window at a time.
                let audible = j + RUN <= out.len() && out[j..j + RUN].iter().any(|v| *v != 0.0);
                let skip = if (offset.is_some() || audible) && j + RUN <= out.len() {
                    window.max(1).min(out.len() - j)
                } else {
                    1
                };
                result.other += skip as u64;
                j += skip;
            }
        }
    }
    result
}
