//! The rate converter: rubato's asynchronous resampler behind a small output FIFO.
//!
//! One resampler does both jobs: the fixed conversion from the wire rate to the device rate and
//! the tiny, continuously adjusted speed correction that absorbs clock drift. It runs with a
//! fixed output chunk of [`CHUNK`] frames (the Web Audio render quantum); the FIFO hands those
//! out to pulls of any size. Every buffer is allocated here, once.
//!
//! Choice of interpolation (cost per output sample, mono):
//! - Downsampling (device rate below wire rate, e.g. 200 kHz -> 48 kHz) needs an anti-alias
//!   filter: windowed sinc, [`SINC_LEN`] taps, Blackman-Harris², automatic cutoff (about 0.9 of
//!   the output Nyquist), [`OVERSAMPLING`] sub-sample tables with linear interpolation between
//!   them: two dot products of 128, about 256 multiply-adds per output sample.
//! - Same rate or upsampling (48 -> 48 kHz, 200 -> 200 kHz) only needs a fractional delay of a
//!   few hundred ppm: a septic (8-point) polynomial, a few dozen operations per sample and no
//!   roll-off below 0.4 of the sample rate. At [`CUBIC_FROM`] and above, audible sound (up to
//!   20 kHz) lies below 0.115 of the rate, where a cubic (4-point) polynomial is flat within
//!   0.05 dB at the worst fractional delay: a third of the work, at the rate where samples are
//!   many (200 kHz studio calls pull 200,000 a second).

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{
    Adjustable, Async, FixedAsync, PolynomialDegree, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use super::drift::MAX_CORRECTION;

/// Output frames per resampler call.
pub(crate) const CHUNK: usize = 128;
/// Taps of the sinc filter used for downsampling.
pub(crate) const SINC_LEN: usize = 128;
/// Output rate from which same-rate conversion interpolates with a cubic instead of a septic.
pub(crate) const CUBIC_FROM: u32 = 176_400;
/// Sub-sample positions tabulated for the sinc filter.
pub(crate) const OVERSAMPLING: usize = 256;

pub(crate) struct RateConverter {
    resampler: Async<f32>,
    output: Vec<f32>,
    read: usize,
    /// Same rates and no correction so far: the output is the input, delayed as the
    /// resampler delays it, bit for bit.
    exact: bool,
    /// Input not yet handed out by the exact path.
    pending: Vec<f32>,
}

impl core::fmt::Debug for RateConverter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RateConverter")
            .field("ratio", &self.resampler.resample_ratio())
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl RateConverter {
    /// Rates must be positive; the caller validated them.
    pub(crate) fn new(wire_rate: u32, output_rate: u32) -> Self {
        let ratio = f64::from(output_rate) / f64::from(wire_rate);
        // Headroom above the controller's clamp, so a correction never hits rubato's bound.
        let max_relative = 1.0 + 2.0 * MAX_CORRECTION;
        let resampler = if output_rate < wire_rate {
            let params =
                SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2)
                    .oversampling_factor(OVERSAMPLING)
                    .interpolation(SincInterpolationType::Linear);
            Async::new_sinc(ratio, max_relative, &params, CHUNK, 1, FixedAsync::Output)
        } else {
            let degree = if output_rate >= CUBIC_FROM {
                PolynomialDegree::Cubic
            } else {
                PolynomialDegree::Septic
            };
            Async::new_poly(ratio, max_relative, degree, CHUNK, 1, FixedAsync::Output)
        }
        .expect("validated rates give a finite positive ratio and a non-zero chunk");
        // The polynomial's first output lands one frame before what it reports as its delay.
        let delay = resampler.output_delay().saturating_sub(1);
        let mut pending = Vec::with_capacity(delay + resampler.input_frames_max() + CHUNK);
        pending.resize(delay, 0.0);
        RateConverter {
            resampler,
            output: vec![0.0; CHUNK],
            read: CHUNK,
            exact: wire_rate == output_rate,
            pending,
        }
    }

    /// How far the output lags the input, output frames: input taken that is still inside,
    /// beside what is [buffered](Self::buffered).
    pub(crate) fn delay(&self) -> usize {
        if self.exact {
            self.pending.len()
        } else {
            self.resampler.output_delay()
        }
    }

    /// Largest number of input frames one chunk may need.
    pub(crate) fn input_frames_max(&self) -> usize {
        self.resampler.input_frames_max()
    }

    /// Input frames the next chunk needs.
    pub(crate) fn input_frames_next(&self) -> usize {
        self.resampler.input_frames_next()
    }

    /// Output frames converted but not yet handed out.
    pub(crate) fn buffered(&self) -> usize {
        self.output.len() - self.read
    }

    /// Converts one chunk; `input` holds exactly [`Self::input_frames_next`] frames.
    pub(crate) fn process(&mut self, input: &[f32]) {
        debug_assert_eq!(self.buffered(), 0, "the previous chunk was handed out");
        let frames = input.len();
        let samples = input;
        let input = SequentialSlice::new(input, 1, frames).expect("one channel of `frames`");
        let mut output =
            SequentialSlice::new_mut(&mut self.output[..], 1, CHUNK).expect("one chunk");
        let (_, written) = self
            .resampler
            .process_into_buffer(&input, &mut output, None)
            .expect("buffers sized from the resampler's own figures");
        debug_assert_eq!(written, CHUNK);
        // The resampler keeps running, so that a correction can start without a jump; until one
        // does, its output is replaced by the input itself. (A polynomial at a ratio of exactly
        // 1 is not exact: the septic one differs from its input in the last bit or two.)
        if self.exact {
            // The input as one stream, delayed as the resampler delays it (which takes a few
            // frames more than a chunk the first time).
            self.pending.extend_from_slice(samples);
            self.output.copy_from_slice(&self.pending[..CHUNK]);
            self.pending.drain(..CHUNK);
        }
        self.read = 0;
    }

    /// Hands out converted frames into `out`; returns how many.
    pub(crate) fn read(&mut self, out: &mut [f32]) -> usize {
        let n = out.len().min(self.buffered());
        out[..n].copy_from_slice(&self.output[self.read..self.read + n]);
        self.read += n;
        n
    }

    /// Consumes wire audio `1 + correction` times faster than nominal.
    pub(crate) fn set_correction(&mut self, correction: f64) {
        if correction == 0.0 && self.exact {
            return;
        }
        // From the first correction on, the resampler's position is fractional: the exact
        // path could not take over again without a jump.
        self.exact = false;
        let correction = correction.clamp(-MAX_CORRECTION, MAX_CORRECTION);
        self.resampler
            .set_resample_ratio_relative(1.0 / (1.0 + correction), true)
            .expect("the correction is clamped inside the resampler's range");
    }

    /// Output rate over wire rate, correction included.
    pub(crate) fn ratio(&self) -> f64 {
        self.resampler.resample_ratio()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through `converter` chunk by chunk, switching `correction` on at `switch`.
    fn convert(
        converter: &mut RateConverter,
        input: &[f32],
        switch: Option<(usize, f64)>,
    ) -> Vec<f32> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + converter.input_frames_max() < input.len() {
            if let Some((at, c)) = switch
                && pos >= at
            {
                converter.set_correction(c);
            }
            let n = converter.input_frames_next();
            converter.process(&input[pos..pos + n]);
            pos += n;
            let mut chunk = [0.0f32; CHUNK];
            let got = converter.read(&mut chunk);
            out.extend_from_slice(&chunk[..got]);
        }
        out
    }

    /// 16-bit values as the wire carries them, scaled as the decoder scales them: their
    /// mantissas are full, so arithmetic on them rounds (a gentler input hides inexactness).
    fn noise(n: usize) -> Vec<f32> {
        (0..n as u32)
            .map(|i| f32::from((i.wrapping_mul(2_654_435_761) >> 16) as u16 as i16 / 2) / 32_767.0)
            .collect()
    }

    #[test]
    fn same_rate_without_correction_is_the_input_bit_for_bit() {
        for rate in [48_000, 200_000] {
            let input = noise(20_000);
            let mut converter = RateConverter::new(rate, rate);
            let d = converter.pending.len();
            let out = convert(&mut converter, &input, None);
            assert!(out[..d].iter().all(|v| *v == 0.0));
            assert_eq!(&out[d..], &input[..out.len() - d], "{rate} Hz");
        }
    }

    #[test]
    fn a_correction_takes_over_without_a_jump() {
        // Where the resampler takes over from the exact path, the two are aligned to the
        // sample: with a correction too small to move anything for a while, the output goes on
        // equal to the input, delayed as before, within the polynomial's rounding.
        for rate in [48_000, 200_000] {
            let input = noise(20_000);
            let mut converter = RateConverter::new(rate, rate);
            let d = converter.pending.len();
            let out = convert(&mut converter, &input, Some((10_000, 1e-9)));
            for (k, v) in out.iter().enumerate().skip(d) {
                assert!((v - input[k - d]).abs() < 1e-5, "{rate} Hz, sample {k}");
            }
        }
    }

    #[test]
    fn random_tones_up_to_20_khz_keep_their_pitch_and_85_db_from_200_khz_to_the_device() {
        use core::f64::consts::PI;
        let mut rng = crate::testing::Rng::from_env();
        let wire = 200_000;
        for output in [48_000, 44_100] {
            for _ in 0..3 {
                // Two tones in 1-20 kHz, at least 500 Hz apart, 0.4 each, as 16-bit samples
                // the way the decoder scales them.
                let freqs = loop {
                    let pair = [
                        1_000.0 + 19_000.0 * rng.unit(),
                        1_000.0 + 19_000.0 * rng.unit(),
                    ];
                    if (pair[0] - pair[1]).abs() >= 500.0 {
                        break pair;
                    }
                };
                let input: Vec<f32> = (0..wire)
                    .map(|i| {
                        let t = f64::from(i) / f64::from(wire);
                        let v: f64 = freqs.iter().map(|f| 0.4 * (2.0 * PI * f * t).sin()).sum();
                        f32::from((v * 32_767.0).round() as i16) / 32_767.0
                    })
                    .collect();
                let mut converter = RateConverter::new(wire, output);
                let out = convert(&mut converter, &input, None);
                // Half a second, past the filter's start.
                let start = output as usize / 10;
                let crate::testing::ToneFit {
                    snr_db: snr,
                    amplitudes,
                } = crate::testing::fit_tones(
                    &out[start..start + output as usize / 2],
                    output,
                    &freqs,
                );
                std::eprintln!(
                    "200 kHz -> {output}: {freqs:.1?} Hz at {amplitudes:.4?}, SNR {snr:.1} dB"
                );
                assert!(snr >= 85.0, "{output} Hz, {freqs:?} Hz: SNR {snr:.1} dB");
            }
        }
    }
}
