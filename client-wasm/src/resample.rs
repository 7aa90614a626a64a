//! The capture side's rate converter: the microphone's samples at the AudioContext's rate become
//! samples at the wire rate before they are framed.
//!
//! The context runs at the device's own rate (44.1 or 48 kHz on most hardware) and a studio call
//! sends 200 kHz, so this is mostly upsampling. Upsampling makes images of the band below the
//! device's Nyquist frequency (a 20 kHz tone at 48 kHz also appears at 28, 68, 76 ... kHz), and a
//! wire that carries up to 100 kHz would carry them: so a windowed sinc, the same filter the
//! jitter buffer uses to downsample on playback (rubato, [`SINC_LEN`] taps, Blackman-Harris²,
//! a table per sub-sample position, or [`OVERSAMPLING`] of them with linear interpolation between
//! them where the positions are many). Its cutoff sits
//! at about 0.89 of the lower rate's Nyquist frequency: images and aliases are more than 85 dB
//! down, and a tone at 20 kHz keeps an SNR above 85 dB from a 48 kHz device (the tests below
//! measure both). Downsampling (a 192 kHz device, a 48 kHz call) gets the same filter, which
//! then keeps what lies above the wire's Nyquist frequency out.
//!
//! Playback resampling is the jitter buffer's job (it also absorbs clock drift); capture needs
//! no drift correction, the other side's jitter buffer follows this side's clock.
//!
//! Cost: one dot product of [`SINC_LEN`] per output sample where the output falls on at most
//! [`MAX_EXACT_PHASES`] sub-sample positions (48 kHz to 200 kHz: 25), else two. The input is taken in chunks of
//! [`CHUNK`] frames, so up to `CHUNK - 1` frames wait for the next call; [`Resampler::delay`]
//! counts them with the filter's own delay, for the capture time of what leaves.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{
    Async, FixedAsync, Resampler as _, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Input frames per filter call: a quarter of a Web Audio render quantum, so a quantum never
/// leaves a remainder waiting.
pub const CHUNK: usize = 32;
/// Taps of the sinc filter.
pub const SINC_LEN: usize = 128;
/// Sub-sample positions tabulated for the sinc filter where the output's are too many to
/// tabulate each.
pub const OVERSAMPLING: usize = 256;

/// Converts a continuous mono stream from `from` Hz to `to` Hz.
pub struct Resampler {
    from: u32,
    to: u32,
    /// `None` when the rates are equal: the input passes through untouched.
    sinc: Option<Sinc>,
}

struct Sinc {
    resampler: Async<f32>,
    /// Input gathered for the next chunk; the first `held` frames are valid.
    chunk: [f32; CHUNK],
    held: usize,
    /// One chunk's output.
    output: Vec<f32>,
}

impl core::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("delay", &self.delay())
            .finish()
    }
}

/// The most sub-sample positions tabulated for an exact conversion (64 KiB of filter per 128).
pub const MAX_EXACT_PHASES: usize = 512;

/// How many sub-sample positions the output of `from` -> `to` Hz falls on, if few: output sample
/// `k` sits at input position `k * from / to`, whose fractional parts are multiples of
/// `1 / (to / gcd(from, to))`. 48 -> 200 kHz: 25; 44.1 -> 200 kHz: 2000 (too many: interpolated).
fn exact_phases(from: u32, to: u32) -> Option<usize> {
    let (mut a, mut b) = (from, to);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let phases = (to / a) as usize;
    (phases <= MAX_EXACT_PHASES).then_some(phases)
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz. Builds the filter tables (a few hundred kB): do it
    /// once per call, not per block.
    ///
    /// # Panics
    /// If either rate is zero: the link parser never allows one, so that is a bug.
    #[must_use]
    pub fn new(from: u32, to: u32) -> Self {
        assert!(from > 0 && to > 0, "sample rates are positive");
        let sinc = (from != to).then(|| {
            // Where the output falls on few sub-sample positions, one table per position and
            // no interpolation between tables: exact, and half the work.
            let (phases, interpolation) = match exact_phases(from, to) {
                Some(phases) => (phases, SincInterpolationType::Nearest),
                None => (OVERSAMPLING, SincInterpolationType::Linear),
            };
            let params =
                SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2)
                    .oversampling_factor(phases)
                    .interpolation(interpolation);
            let ratio = f64::from(to) / f64::from(from);
            let resampler = Async::new_sinc(ratio, 1.0, &params, CHUNK, 1, FixedAsync::Input)
                .expect("positive rates give a finite positive ratio and a non-zero chunk");
            let output = vec![0.0; resampler.output_frames_max()];
            Sinc {
                resampler,
                chunk: [0.0; CHUNK],
                held: 0,
                output,
            }
        });
        Self { from, to, sinc }
    }

    /// Whether this resampler changes anything.
    #[must_use]
    pub fn is_identity(&self) -> bool {
        self.sinc.is_none()
    }

    /// How far the newest output sample lags the newest input sample, in output samples: the
    /// filter's delay plus the input waiting for a whole chunk.
    #[must_use]
    pub fn delay(&self) -> usize {
        self.sinc.as_ref().map_or(0, |s| {
            let held = s.held as u64 * u64::from(self.to) / u64::from(self.from);
            s.resampler.output_delay() + held as usize
        })
    }

    /// The fewest further input samples after which `wanted` more output samples may have come
    /// out. A lower bound (every chunk is taken to give the most a chunk gives, its share of
    /// the ratio rounded up), so whoever waits for this much input before looking never looks
    /// after the output was there; at most a chunk or two early.
    #[must_use]
    pub fn input_for(&self, wanted: usize) -> usize {
        match &self.sinc {
            None => wanted,
            Some(s) => {
                let most = (CHUNK as u64 * u64::from(self.to)).div_ceil(u64::from(self.from));
                (wanted.div_ceil(most as usize) * CHUNK).saturating_sub(s.held)
            }
        }
    }

    /// Appends the resampled form of `input` to `out`. Allocates nothing but what `out` needs
    /// to grow.
    pub fn process(&mut self, mut input: &[f32], out: &mut Vec<f32>) {
        let Some(s) = &mut self.sinc else {
            out.extend_from_slice(input);
            return;
        };
        while !input.is_empty() {
            let take = (CHUNK - s.held).min(input.len());
            s.chunk[s.held..s.held + take].copy_from_slice(&input[..take]);
            s.held += take;
            input = &input[take..];
            if s.held < CHUNK {
                break;
            }
            s.held = 0;
            let frames = s.output.len();
            let chunk = SequentialSlice::new(&s.chunk[..], 1, CHUNK).expect("one chunk");
            let mut output =
                SequentialSlice::new_mut(&mut s.output[..], 1, frames).expect("one channel");
            let (_, written) = s
                .resampler
                .process_into_buffer(&chunk, &mut output, None)
                .expect("buffers sized from the resampler's own figures");
            out.extend_from_slice(&s.output[..written]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::f64::consts::PI;
    use line_protocol::testing::{Rng, fit_tones};

    /// Two tones of amplitude 0.4 at `freqs`, `n` samples at `rate`.
    fn tones(freqs: [f64; 2], rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                freqs
                    .iter()
                    .map(|f| 0.4 * (2.0 * PI * f * t).sin())
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// Runs `input` through a resampler in chunks of random sizes, as the capture ring hands
    /// it over.
    fn convert(from: u32, to: u32, input: &[f32], rng: &mut Rng) -> (Vec<f32>, usize) {
        let mut r = Resampler::new(from, to);
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = (1 + (rng.unit() * 700.0) as usize).min(rest.len());
            r.process(&rest[..n], &mut out);
            rest = &rest[n..];
        }
        (
            out,
            r.sinc.as_ref().map_or(0, |s| s.resampler.output_delay()),
        )
    }

    /// Amplitude of the `freq` component of `x` sampled at `rate` (Goertzel), through a
    /// Blackman-Harris window: without one, the tones' own leakage is -85 dB at 10 kHz from
    /// them in half a second, and would be taken for an image.
    fn amplitude(x: &[f32], rate: u32, freq: f64) -> f64 {
        let coeff = 2.0 * (2.0 * PI * freq / f64::from(rate)).cos();
        let n = x.len() as f64;
        let window = |i: usize| {
            let p = 2.0 * PI * i as f64 / n;
            0.35875 - 0.48829 * p.cos() + 0.14128 * (2.0 * p).cos() - 0.01168 * (3.0 * p).cos()
        };
        let (mut s1, mut s2, mut gain) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &v) in x.iter().enumerate() {
            let w = window(i);
            gain += w;
            let s0 = f64::from(v) * w + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0).sqrt() / gain
    }

    /// Two random tones in 1-20 kHz, at least 500 Hz apart.
    fn two_tones(rng: &mut Rng) -> [f64; 2] {
        loop {
            let pair = [
                1_000.0 + 19_000.0 * rng.unit(),
                1_000.0 + 19_000.0 * rng.unit(),
            ];
            if (pair[0] - pair[1]).abs() >= 500.0 {
                return pair;
            }
        }
    }

    #[test]
    fn common_rates_get_exact_phases() {
        assert_eq!(exact_phases(48_000, 200_000), Some(25));
        assert_eq!(exact_phases(192_000, 48_000), Some(1));
        assert_eq!(exact_phases(44_100, 200_000), None);
    }

    #[test]
    fn same_rate_passes_through() {
        let mut r = Resampler::new(48_000, 48_000);
        let mut out = Vec::new();
        r.process(&[0.1, 0.2], &mut out);
        assert_eq!(out, [0.1, 0.2]);
        assert_eq!(r.delay(), 0);
    }

    #[test]
    fn a_second_in_is_a_second_out_whatever_the_chunks() {
        let mut rng = Rng::from_env();
        for (from, to) in [(48_000, 200_000), (44_100, 200_000), (192_000, 48_000)] {
            let mut r = Resampler::new(from, to);
            let mut out = Vec::new();
            let mut counts = Vec::new();
            for _ in 0..3 {
                let mut rest = &vec![0.25f32; from as usize][..];
                while !rest.is_empty() {
                    let n = (1 + (rng.unit() * 700.0) as usize).min(rest.len());
                    r.process(&rest[..n], &mut out);
                    rest = &rest[n..];
                }
                counts.push(out.len());
            }
            // The first second comes out short by the filter's start; every second after it
            // is a second at the output rate, give or take a chunk waiting.
            let chunk = CHUNK * to as usize / from as usize + 1;
            for pair in counts.windows(2) {
                let second = pair[1] - pair[0];
                assert!(
                    second.abs_diff(to as usize) <= chunk,
                    "{from} -> {to}: {counts:?}"
                );
            }
            assert!(
                (3 * to as usize).abs_diff(counts[2]) <= chunk + r.delay(),
                "{from} -> {to}: {counts:?}"
            );
            // A constant stays that constant once the filter is full.
            for v in &out[2 * r.delay()..] {
                assert!((v - 0.25).abs() < 1e-4, "{from} -> {to}: {v}");
            }
        }
    }

    #[test]
    fn random_tones_up_to_20_khz_arrive_exact_and_without_images() {
        let mut rng = Rng::from_env();
        for (from, to) in [(48_000, 200_000), (44_100, 200_000), (96_000, 200_000)] {
            for _ in 0..3 {
                let freqs = two_tones(&mut rng);
                let input = tones(freqs, from, from as usize);
                let (out, delay) = convert(from, to, &input, &mut rng);
                // Half a second, past the filter's start.
                let block = &out[2 * delay..2 * delay + to as usize / 2];
                let snr = fit_tones(block, to, &freqs).snr_db;
                assert!(snr >= 85.0, "{from} -> {to}, {freqs:?} Hz: SNR {snr:.1} dB");
                // Every image of a tone f upsampled from `from` lies at k·from ± f.
                let nyquist = f64::from(to) / 2.0;
                let mut worst = f64::MIN;
                for f in freqs {
                    let mut k = 1.0;
                    while k * f64::from(from) - f < nyquist {
                        for image in [k * f64::from(from) - f, k * f64::from(from) + f] {
                            if image < nyquist {
                                let level = amplitude(block, to, image) / 0.4;
                                worst = worst.max(20.0 * level.log10());
                            }
                        }
                        k += 1.0;
                    }
                }
                assert!(
                    worst <= -85.0,
                    "{from} -> {to}, {freqs:?} Hz: an image at {worst:.1} dB"
                );
                eprintln!(
                    "{from} -> {to}, {freqs:.1?} Hz: SNR {snr:.1} dB, worst image {worst:.1} dB"
                );
            }
        }
    }

    #[test]
    fn downsampling_keeps_tones_and_keeps_out_what_the_wire_cannot_carry() {
        let mut rng = Rng::from_env();
        // A 192 kHz device on a 48 kHz call: tones below 20 kHz arrive, a 30 kHz one (above
        // the wire's Nyquist frequency, which would alias to 18 kHz) does not.
        let (from, to) = (192_000, 48_000);
        let freqs = two_tones(&mut rng);
        let input = tones(freqs, from, from as usize);
        let (out, delay) = convert(from, to, &input, &mut rng);
        let block = &out[2 * delay..2 * delay + to as usize / 2];
        let snr = fit_tones(block, to, &freqs).snr_db;
        assert!(snr >= 85.0, "{freqs:?} Hz: SNR {snr:.1} dB");
        let ultrasonic = tones([30_000.0, 30_000.0], from, from as usize);
        let (out, delay) = convert(from, to, &ultrasonic, &mut rng);
        let alias = amplitude(&out[2 * delay..2 * delay + 24_000], to, 18_000.0) / 0.8;
        assert!(20.0 * alias.log10() <= -85.0, "alias {alias:e}");
    }

    #[test]
    fn the_delay_counts_what_waits_for_a_chunk() {
        let mut r = Resampler::new(48_000, 200_000);
        let filter = r.delay();
        assert!(filter > 0);
        let mut out = Vec::new();
        r.process(&[0.0; 10], &mut out);
        assert!(out.is_empty());
        assert_eq!(r.delay(), filter + 10 * 200_000 / 48_000);
        r.process(&[0.0; CHUNK - 10], &mut out);
        assert_eq!(r.delay(), filter);
        assert!(!out.is_empty());
    }

    #[test]
    fn input_for_never_asks_for_more_input_than_the_output_needs() {
        let mut rng = Rng::from_env();
        for (from, to) in [
            (48_000, 200_000),
            (44_100, 200_000),
            (44_100, 48_000),
            (192_000, 48_000),
        ] {
            let mut r = Resampler::new(from, to);
            let mut out = Vec::new();
            let input = |r: &mut Resampler, out: &mut Vec<f32>, rng: &mut Rng, n: usize| {
                for _ in 0..n {
                    r.process(&[rng.range(-0.5, 0.5) as f32], out);
                }
            };
            for _ in 0..200 {
                // Anywhere in the stream, any frame length a call uses (2.5 to 20 ms of `to`).
                let n = (rng.unit() * 300.0) as usize;
                input(&mut r, &mut out, &mut rng, n);
                let wanted = 1 + (rng.unit() * f64::from(to) / 50.0) as usize;
                let before = out.len();
                let n = r.input_for(wanted);
                input(&mut r, &mut out, &mut rng, n.saturating_sub(1));
                assert!(
                    out.len() - before < wanted,
                    "{from} -> {to} Hz: {} of {wanted} came out before the {n} samples asked for",
                    out.len() - before,
                );
                // Nor far too few: two chunks more, and the output is there.
                input(&mut r, &mut out, &mut rng, 2 * CHUNK + 1);
                assert!(
                    out.len() - before >= wanted,
                    "{from} -> {to} Hz: only {} of {wanted} two chunks after the {n} asked for",
                    out.len() - before,
                );
            }
        }
    }
}
