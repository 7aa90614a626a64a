//! The signals the coder is tested and measured on, shared by the unit tests and the benchmark
//! (test-support only): noise, silence, extremes, square waves, tones, and noise that went
//! through a 48 kHz microphone and was upsampled, as most 200 kHz audio here is.

use core::f64::consts::PI;
use std::vec::Vec;

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use crate::testing::Rng;

/// The kinds of signal, each drawn with random parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Uniform over the whole 16-bit range.
    WhiteNoise,
    /// All zero.
    Silence,
    /// Each sample `i16::MIN` or `i16::MAX` at random.
    Extremes,
    /// A square wave of random period (2 to 200 samples) between two random levels.
    Square,
    /// One sine of random frequency (up to 20 kHz) and amplitude, rounded.
    Tone,
    /// A tone with a microphone's noise floor under it (about 3 LSB rms).
    NoisyTone,
    /// White noise at 48 kHz, resampled to the frame's rate (band-limited to about 22 kHz).
    UpsampledNoise,
}

impl Kind {
    /// Every kind, in the order above.
    pub const ALL: [Kind; 7] = [
        Kind::WhiteNoise,
        Kind::Silence,
        Kind::Extremes,
        Kind::Square,
        Kind::Tone,
        Kind::NoisyTone,
        Kind::UpsampledNoise,
    ];
}

/// `n` samples of `kind` at `rate` Hz.
#[must_use]
pub fn generate(kind: Kind, rng: &mut Rng, n: usize, rate: u32) -> Vec<i16> {
    let full = f64::from(i16::MAX);
    let random_i16 = |rng: &mut Rng| (rng.next_u64() >> 48) as u16 as i16;
    match kind {
        Kind::WhiteNoise => (0..n).map(|_| random_i16(rng)).collect(),
        Kind::Silence => vec![0; n],
        Kind::Extremes => (0..n)
            .map(|_| {
                if rng.next_u64() & 1 == 0 {
                    i16::MIN
                } else {
                    i16::MAX
                }
            })
            .collect(),
        Kind::Square => {
            let period = 2 + (rng.next_u64() % 199) as usize;
            let (lo, hi) = (random_i16(rng), random_i16(rng));
            let start = (rng.next_u64() % period as u64) as usize;
            (0..n)
                .map(|i| {
                    if (i + start) % period < period / 2 {
                        lo
                    } else {
                        hi
                    }
                })
                .collect()
        }
        Kind::Tone | Kind::NoisyTone => {
            let top = 20_000f64.min(0.45 * f64::from(rate));
            let freq = rng.range(50.0, top);
            let amp = rng.range(0.05, 0.95) * full;
            let phase = rng.range(0.0, 2.0 * PI);
            let noise = if kind == Kind::NoisyTone { 3.0 } else { 0.0 };
            (0..n)
                .map(|i| {
                    let t = i as f64 / f64::from(rate);
                    // A sum of two uniforms: triangular, rms = noise.
                    let floor = noise * 6f64.sqrt() * (rng.unit() - rng.unit()) / 2.0;
                    to_i16(amp * (2.0 * PI * freq * t + phase).sin() + floor)
                })
                .collect()
        }
        Kind::UpsampledNoise => upsampled_noise(rng, n, rate),
    }
}

fn to_i16(x: f64) -> i16 {
    x.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// White noise (about a quarter of full scale rms) at 48 kHz through rubato's sinc resampler.
fn upsampled_noise(rng: &mut Rng, n: usize, rate: u32) -> Vec<i16> {
    let ratio = f64::from(rate) / 48_000.0;
    let input_len = (n as f64 / ratio) as usize + 64;
    let input: Vec<f32> = (0..input_len)
        .map(|_| rng.range(-0.45, 0.45) as f32)
        .collect();
    let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2)
        .oversampling_factor(256)
        .interpolation(SincInterpolationType::Linear);
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, 1024, 1, FixedAsync::Input)
        .expect("a valid fixed ratio");
    let mut output = vec![0f32; resampler.process_all_needed_output_len(input_len)];
    let out_len = output.len();
    let input_adapter = SequentialSlice::new(&input[..], 1, input_len).expect("one channel");
    let mut output_adapter =
        SequentialSlice::new_mut(&mut output[..], 1, out_len).expect("one channel");
    let (_, written) = resampler
        .process_all_into_buffer(&input_adapter, &mut output_adapter, input_len, None)
        .expect("buffers sized by the resampler");
    assert!(written >= n, "{written} samples resampled, {n} wanted");
    output[..n]
        .iter()
        .map(|&x| to_i16(f64::from(x) * full_scale()))
        .collect()
}

fn full_scale() -> f64 {
    f64::from(i16::MAX)
}
