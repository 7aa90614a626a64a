//! What tests in this workspace share: a seeded generator whose seed is printed, so a failing run
//! with random inputs can be repeated, and a least-squares tone fit that measures both noise and
//! pitch error. Built for this crate's own tests and, through the `test-support` feature, for
//! other crates' tests; never for a build that ships.
//!
//! The integration tests under `tests/` include this file by path, since they see the library
//! without `cfg(test)`.

use core::f64::consts::PI;

/// A seed for a test run: `LINE_TEST_SEED` if set, else drawn from the clock (in a browser, from
/// `Math.random`), printed either way so that a failing run can be repeated.
#[must_use]
pub fn seed_from_env() -> u64 {
    #[cfg(not(target_arch = "wasm32"))]
    let seed = std::env::var("LINE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    // No environment and no system clock in a browser.
    #[cfg(target_arch = "wasm32")]
    let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64;
    std::eprintln!("seed {seed} (LINE_TEST_SEED={seed} repeats this run)");
    seed
}

/// xorshift64*: a tiny seeded generator, so runs repeat exactly without extra dependencies.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that starts from `seed` (any value; zero is moved off the fixed point).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A generator seeded by [`seed_from_env`].
    #[must_use]
    pub fn from_env() -> Self {
        Self::new(seed_from_env())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..1`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// What [`fit_tones`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneFit {
    /// The fitted tones' energy against the residual's, dB.
    pub snr_db: f64,
    /// Each tone's amplitude, in the order of the frequencies given.
    pub amplitudes: Vec<f64>,
}

/// Least-squares fit of tones at exactly `freqs` (amplitude and phase free) to `x` sampled at
/// `rate`. The frequencies are held: a pitch error of 1 ppm turns a 20 kHz tone's phase by
/// 0.06 rad over half a second and caps the figure near 30 dB, so a high SNR also says the pitch
/// is exact.
#[must_use]
pub fn fit_tones(x: &[f32], rate: u32, freqs: &[f64]) -> ToneFit {
    let n = freqs.len() * 2;
    let basis = |i: usize, k: usize| {
        let w = 2.0 * PI * freqs[k / 2] * i as f64 / f64::from(rate);
        if k.is_multiple_of(2) {
            w.sin()
        } else {
            w.cos()
        }
    };
    // Normal equations, solved by Gaussian elimination (two unknowns a tone).
    let mut a = vec![vec![0.0f64; n + 1]; n];
    let mut b = vec![0.0f64; n];
    for (i, &v) in x.iter().enumerate() {
        for (k, bk) in b.iter_mut().enumerate() {
            *bk = basis(i, k);
        }
        for r in 0..n {
            for c in 0..n {
                a[r][c] += b[r] * b[c];
            }
            a[r][n] += b[r] * f64::from(v);
        }
    }
    for p in 0..n {
        let pivot = a[p].clone();
        for row in a.iter_mut().skip(p + 1) {
            let f = row[p] / pivot[p];
            for (x, y) in row.iter_mut().zip(&pivot).skip(p) {
                *x -= f * y;
            }
        }
    }
    let mut coef = vec![0.0; n];
    for p in (0..n).rev() {
        let s: f64 = (p + 1..n).map(|c| a[p][c] * coef[c]).sum();
        coef[p] = (a[p][n] - s) / a[p][p];
    }
    let (mut signal, mut residual) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let fitted: f64 = (0..n).map(|k| coef[k] * basis(i, k)).sum();
        signal += fitted * fitted;
        residual += (f64::from(v) - fitted).powi(2);
    }
    ToneFit {
        snr_db: 10.0 * (signal / residual.max(1e-300)).log10(),
        amplitudes: coef.chunks_exact(2).map(|c| c[0].hypot(c[1])).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers_in_range() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..1000 {
            let x = a.range(-3.0, 5.0);
            assert_eq!(x, b.range(-3.0, 5.0));
            assert!((-3.0..5.0).contains(&x));
        }
        assert_ne!(Rng::new(0).next_u64(), 0, "zero must not be a fixed point");
    }

    #[test]
    fn a_fit_finds_the_tones_and_their_amplitudes_and_sees_a_pitch_error() {
        let mut rng = Rng::from_env();
        let rate = 48_000;
        let freqs = [rng.range(200.0, 5_000.0), rng.range(6_000.0, 20_000.0)];
        let amps = [rng.range(0.1, 0.5), rng.range(0.1, 0.5)];
        let tone = |scale: f64| -> Vec<f32> {
            (0..rate as usize / 2)
                .map(|i| {
                    let t = i as f64 / f64::from(rate);
                    (amps[0] * (2.0 * PI * freqs[0] * scale * t).sin()
                        + amps[1] * (2.0 * PI * freqs[1] * scale * t + 1.0).sin())
                        as f32
                })
                .collect()
        };
        let exact = fit_tones(&tone(1.0), rate, &freqs);
        assert!(exact.snr_db > 100.0, "{exact:?}");
        for (found, want) in exact.amplitudes.iter().zip(amps) {
            assert!((found - want).abs() < 1e-5, "{exact:?} against {amps:?}");
        }
        // 20 ppm off: far below a half-amplitude threshold, plain to the fit.
        let shifted = fit_tones(&tone(1.0 + 20e-6), rate, &freqs);
        assert!(shifted.snr_db < exact.snr_db - 30.0, "{shifted:?}");
    }
}
