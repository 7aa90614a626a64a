//! Fidelity of received audio: is what was heard what was sent?
//!
//! A test signal of a few pure tones goes in at one end; a block of what came out is fitted, by
//! least squares, with the same number of tones of free frequency, amplitude and phase. Three
//! figures say how faithful the path is:
//!
//! - **frequency error** of each tone, in ppm: a path that plays faster or slower (resampling to
//!   steer a buffer, a wrong rate) shifts every frequency by that much;
//! - **SNR**, the fitted tones against everything else, in dB: 16-bit quantization of two tones
//!   at 0.4 allows about 93 dB; any resampling, edit or dropout costs some;
//! - **glitches**: places where the audio departs from the tones (a click, a dropout, a splice, a
//!   jump in phase), found by fitting the tones' amplitudes again in each short window (the
//!   frequencies held): a window whose residual stands out from the others' is a glitch. Grouped
//!   into events, with their times, so a test can check each against what the receiver counted.
//!
//! The fit: each tone's frequency is found near the frequency sent (within ±[`SEARCH_PPM`]) as the
//! peak of the block's Hann-windowed spectrum, then all frequencies are refined together by
//! Gauss-Newton on the residual, the amplitudes and phases solved linearly at each step (variable
//! projection). Exact to a small fraction of a ppm on a 2 s block of clean audio.

use serde::Serialize;

/// How far from the frequency sent a tone is looked for, ppm.
pub const SEARCH_PPM: f64 = 5_000.0;
/// Glitches are looked for in windows this long, seconds, each fitted on its own...
const GLITCH_WINDOW: f64 = 0.005;
/// ...whose residual RMS is above this many times the median window's...
const GLITCH_RATIO: f64 = 10.0;
/// ...and above this level (4 LSB of 16-bit audio), so that a clean block's quantization noise,
/// a fraction of an LSB, never counts.
const GLITCH_FLOOR: f64 = 4.0 / 32_767.0;
/// Glitch windows closer than this belong to one event, seconds.
const GLITCH_GAP: f64 = 0.01;

/// One tone as fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FittedTone {
    /// The frequency sent, Hz.
    pub sent_hz: f64,
    /// The frequency heard, Hz.
    pub heard_hz: f64,
    /// `heard / sent - 1`, ppm.
    pub error_ppm: f64,
    /// Amplitude heard (1.0 is full scale).
    pub amplitude: f64,
}

/// A glitch: a run of residual samples above the noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Glitch {
    /// Offset of its first sample from the block's start, seconds.
    pub at_s: f64,
    /// From its first to its last sample above the noise, seconds.
    pub length_s: f64,
    /// Largest residual in it (1.0 is full scale).
    pub peak: f64,
}

/// What a block of audio says about the path it came through.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fidelity {
    /// Each tone, in the order given.
    pub tones: Vec<FittedTone>,
    /// Fitted tones against the residual, dB.
    pub snr_db: f64,
    /// Residual RMS over the block (1.0 is full scale).
    pub residual_rms: f64,
    /// Places where the residual jumps above the noise floor.
    pub glitches: Vec<Glitch>,
    /// Samples in the block.
    pub samples: usize,
}

impl Fidelity {
    /// The largest frequency error among the tones, ppm.
    #[must_use]
    pub fn worst_error_ppm(&self) -> f64 {
        self.tones
            .iter()
            .map(|t| t.error_ppm.abs())
            .fold(0.0, f64::max)
    }
}

/// Fits `tones` (the frequencies sent, Hz) to `block`, sampled at `rate` Hz.
///
/// # Panics
/// If `tones` is empty or `block` shorter than a few periods of the lowest tone: a caller's bug.
#[must_use]
pub fn analyze(block: &[f32], rate: f64, tones: &[f64]) -> Fidelity {
    assert!(!tones.is_empty(), "at least one tone");
    assert!(
        block.len() as f64 > 8.0 * rate / tones.iter().copied().fold(f64::MAX, f64::min),
        "a block of a few periods at least"
    );
    let x: Vec<f64> = block.iter().map(|&v| f64::from(v)).collect();
    let mut freqs: Vec<f64> = tones.iter().map(|&f| spectral_peak(&x, rate, f)).collect();
    let mut fit = fit_amplitudes(&x, rate, &freqs);
    for _ in 0..8 {
        let step = gauss_newton_step(&x, rate, &freqs, &fit);
        let next: Vec<f64> = freqs.iter().zip(&step).map(|(f, d)| f + d).collect();
        let next_fit = fit_amplitudes(&x, rate, &next);
        if next_fit.residual_energy > fit.residual_energy {
            break;
        }
        let done = step.iter().all(|d| d.abs() < 1e-7);
        freqs = next;
        fit = next_fit;
        if done {
            break;
        }
    }
    let signal_energy: f64 = x.iter().map(|v| v * v).sum::<f64>() - fit.residual_energy;
    let snr_db = 10.0 * (signal_energy.max(1e-30) / fit.residual_energy.max(1e-30)).log10();
    let fitted = tones
        .iter()
        .zip(&freqs)
        .zip(fit.coefficients.chunks_exact(2))
        .map(|((&sent, &heard), c)| FittedTone {
            sent_hz: sent,
            heard_hz: heard,
            error_ppm: (heard / sent - 1.0) * 1e6,
            amplitude: c[0].hypot(c[1]),
        })
        .collect();
    Fidelity {
        tones: fitted,
        snr_db,
        residual_rms: (fit.residual_energy / x.len() as f64).sqrt(),
        glitches: glitches(&x, rate, &freqs),
        samples: block.len(),
    }
}

/// The frequency within ±[`SEARCH_PPM`] of `near` where the Hann-windowed spectrum of `x` peaks.
fn spectral_peak(x: &[f64], rate: f64, near: f64) -> f64 {
    let n = x.len() as f64;
    let windowed: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v * (0.5 - 0.5 * (2.0 * core::f64::consts::PI * i as f64 / n).cos()))
        .collect();
    let power = |f: f64| {
        let (re, im) = dtft(&windowed, f / rate);
        re * re + im * im
    };
    // A grid of a quarter of the main lobe's width, then golden-section search around its best.
    let span = near * SEARCH_PPM * 1e-6;
    let step = rate / n / 4.0;
    let points = (2.0 * span / step).ceil().max(2.0) as usize;
    let best = (0..=points)
        .map(|k| near - span + 2.0 * span * k as f64 / points as f64)
        .map(|f| (f, power(f)))
        .fold((near, f64::MIN), |b, c| if c.1 > b.1 { c } else { b })
        .0;
    let (mut lo, mut hi) = (best - step, best + step);
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..40 {
        let a = hi - golden * (hi - lo);
        let b = lo + golden * (hi - lo);
        if power(a) > power(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    (lo + hi) / 2.0
}

/// The DTFT of `x` at `cycles` per sample: (real, imaginary), by a rotating phasor.
fn dtft(x: &[f64], cycles: f64) -> (f64, f64) {
    let w = 2.0 * core::f64::consts::PI * cycles;
    let (step_re, step_im) = (w.cos(), -w.sin());
    let (mut re, mut im) = (1.0f64, 0.0f64);
    let (mut sum_re, mut sum_im) = (0.0, 0.0);
    for (i, v) in x.iter().enumerate() {
        sum_re += v * re;
        sum_im += v * im;
        (re, im) = (re * step_re - im * step_im, re * step_im + im * step_re);
        if i % 1024 == 1023 {
            // Renormalise the phasor against rounding drift.
            let k = (i + 1) as f64 * w;
            (re, im) = (k.cos(), -k.sin());
        }
    }
    (sum_re, sum_im)
}

struct LinearFit {
    /// `[a_0, b_0, a_1, b_1, ...]`: tone k is `a_k cos + b_k sin`.
    coefficients: Vec<f64>,
    residual_energy: f64,
}

/// The basis of `freqs` at sample `i`: cos and sin of each tone.
fn basis(rate: f64, freqs: &[f64], i: usize, out: &mut [f64]) {
    for (k, f) in freqs.iter().enumerate() {
        let phase = 2.0 * core::f64::consts::PI * f / rate * i as f64;
        out[2 * k] = phase.cos();
        out[2 * k + 1] = phase.sin();
    }
}

/// Amplitudes and phases of `freqs` in `x` by linear least squares (normal equations).
fn fit_amplitudes(x: &[f64], rate: f64, freqs: &[f64]) -> LinearFit {
    let m = 2 * freqs.len();
    let mut ata = vec![0.0; m * m];
    let mut atb = vec![0.0; m];
    let mut row = vec![0.0; m];
    for (i, &v) in x.iter().enumerate() {
        basis(rate, freqs, i, &mut row);
        for r in 0..m {
            atb[r] += row[r] * v;
            for c in 0..m {
                ata[r * m + c] += row[r] * row[c];
            }
        }
    }
    let coefficients = solve(ata, atb, m);
    let residual_energy = residual(x, rate, freqs, &coefficients)
        .iter()
        .map(|r| r * r)
        .sum();
    LinearFit {
        coefficients,
        residual_energy,
    }
}

fn residual(x: &[f64], rate: f64, freqs: &[f64], coefficients: &[f64]) -> Vec<f64> {
    let mut row = vec![0.0; coefficients.len()];
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            basis(rate, freqs, i, &mut row);
            v - row
                .iter()
                .zip(coefficients)
                .map(|(b, c)| b * c)
                .sum::<f64>()
        })
        .collect()
}

/// One Gauss-Newton step on the frequencies, amplitudes held: the change to each, Hz.
fn gauss_newton_step(x: &[f64], rate: f64, freqs: &[f64], fit: &LinearFit) -> Vec<f64> {
    let k = freqs.len();
    let mut jtj = vec![0.0; k * k];
    let mut jtr = vec![0.0; k];
    let mut row = vec![0.0; 2 * k];
    let mut jac = vec![0.0; k];
    for (i, &v) in x.iter().enumerate() {
        basis(rate, freqs, i, &mut row);
        let model: f64 = row.iter().zip(&fit.coefficients).map(|(b, c)| b * c).sum();
        let r = v - model;
        let t = 2.0 * core::f64::consts::PI / rate * i as f64;
        for j in 0..k {
            let (a, b) = (fit.coefficients[2 * j], fit.coefficients[2 * j + 1]);
            // d/df of a cos(2π f t) + b sin(2π f t).
            jac[j] = t * (-a * row[2 * j + 1] + b * row[2 * j]);
        }
        for r_ in 0..k {
            jtr[r_] += jac[r_] * r;
            for c in 0..k {
                jtj[r_ * k + c] += jac[r_] * jac[c];
            }
        }
    }
    solve(jtj, jtr, k)
}

/// Solves the `m`x`m` system `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, m: usize) -> Vec<f64> {
    for col in 0..m {
        let pivot = (col..m)
            .max_by(|&i, &j| a[i * m + col].abs().total_cmp(&a[j * m + col].abs()))
            .expect("a non-empty range");
        if a[pivot * m + col] == 0.0 {
            continue;
        }
        for c in 0..m {
            a.swap(col * m + c, pivot * m + c);
        }
        b.swap(col, pivot);
        for r in col + 1..m {
            let factor = a[r * m + col] / a[col * m + col];
            for c in col..m {
                a[r * m + c] -= factor * a[col * m + c];
            }
            b[r] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; m];
    for r in (0..m).rev() {
        let sum: f64 = (r + 1..m).map(|c| a[r * m + c] * x[c]).sum();
        x[r] = if a[r * m + r] == 0.0 {
            0.0
        } else {
            (b[r] - sum) / a[r * m + r]
        };
    }
    x
}

/// Windows where the audio departs from the tones, grouped into events: each window (half
/// overlapping the next) is fitted with the tones' amplitudes and phases of its own, so a jump
/// in phase shows only where it happens.
fn glitches(x: &[f64], rate: f64, freqs: &[f64]) -> Vec<Glitch> {
    let len = ((GLITCH_WINDOW * rate) as usize).max(16);
    let hop = len / 2;
    let windows: Vec<(usize, f64)> = (0..x.len().saturating_sub(len) / hop + 1)
        .map(|k| {
            let start = k * hop;
            let seg = &x[start..(start + len).min(x.len())];
            // Times from the block's start, so the basis is continuous across windows.
            let fit = fit_window(seg, start, rate, freqs);
            (start, (fit / seg.len() as f64).sqrt())
        })
        .collect();
    let mut rms: Vec<f64> = windows.iter().map(|w| w.1).collect();
    let mid = rms.len() / 2;
    rms.select_nth_unstable_by(mid, f64::total_cmp);
    let threshold = (GLITCH_RATIO * rms[mid]).max(GLITCH_FLOOR);
    let gap = (GLITCH_GAP * rate) as usize;
    let mut events: Vec<Glitch> = Vec::new();
    let mut last_end: Option<usize> = None;
    for &(start, level) in &windows {
        if level <= threshold {
            continue;
        }
        match (last_end, events.last_mut()) {
            (Some(end), Some(event)) if start <= end + gap => {
                event.length_s = (start + len) as f64 / rate - event.at_s;
                event.peak = event.peak.max(level);
            }
            _ => events.push(Glitch {
                at_s: start as f64 / rate,
                length_s: len as f64 / rate,
                peak: level,
            }),
        }
        last_end = Some(start + len);
    }
    events
}

/// The residual energy of `seg` (starting at sample `offset` of the block) after fitting the
/// amplitudes and phases of `freqs` to it alone.
fn fit_window(seg: &[f64], offset: usize, rate: f64, freqs: &[f64]) -> f64 {
    let m = 2 * freqs.len();
    let mut ata = vec![0.0; m * m];
    let mut atb = vec![0.0; m];
    let mut row = vec![0.0; m];
    for (i, &v) in seg.iter().enumerate() {
        basis(rate, freqs, offset + i, &mut row);
        for r in 0..m {
            atb[r] += row[r] * v;
            for c in 0..m {
                ata[r * m + c] += row[r] * row[c];
            }
        }
    }
    let coefficients = solve(ata, atb, m);
    seg.iter()
        .enumerate()
        .map(|(i, &v)| {
            basis(rate, freqs, offset + i, &mut row);
            let r = v - row
                .iter()
                .zip(&coefficients)
                .map(|(b, c)| b * c)
                .sum::<f64>();
            r * r
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tones at 0.4, quantised to 16 bits, optionally played `ppm` fast.
    fn two_tones(rate: f64, n: usize, f: [f64; 2], ppm: f64) -> Vec<f32> {
        let speed = 1.0 + ppm * 1e-6;
        (0..n)
            .map(|i| {
                let t = i as f64 / rate * speed;
                let v = 0.4 * (2.0 * core::f64::consts::PI * f[0] * t).sin()
                    + 0.4 * (2.0 * core::f64::consts::PI * f[1] * t + 1.0).sin();
                ((v * 32_767.0).round() / 32_767.0) as f32
            })
            .collect()
    }

    #[test]
    fn clean_tones_are_exact_with_16_bit_snr() {
        let rate = 48_000.0;
        let block = two_tones(rate, 24_000, [1_234.5, 7_654.3], 0.0);
        let fid = analyze(&block, rate, &[1_234.5, 7_654.3]);
        assert!(fid.worst_error_ppm() < 0.5, "{fid:?}");
        assert!(fid.snr_db > 90.0 && fid.snr_db < 96.0, "{fid:?}");
        assert!(fid.glitches.is_empty(), "{fid:?}");
        assert!((fid.tones[0].amplitude - 0.4).abs() < 1e-4, "{fid:?}");
    }

    #[test]
    fn a_path_playing_fast_shows_in_ppm() {
        let rate = 48_000.0;
        let block = two_tones(rate, 24_000, [2_000.0, 9_000.0], 2_000.0);
        let fid = analyze(&block, rate, &[2_000.0, 9_000.0]);
        for tone in &fid.tones {
            assert!((tone.error_ppm - 2_000.0).abs() < 1.0, "{fid:?}");
        }
    }

    #[test]
    fn a_jump_in_phase_is_one_glitch_where_it_happened() {
        // 37 samples skipped at 0.2 s, as a drop would: no silence, no click, just a jump.
        let rate = 48_000.0;
        let whole = two_tones(rate, 24_037, [1_234.5, 7_654.3], 0.0);
        let block: Vec<f32> = whole[..9_600]
            .iter()
            .chain(&whole[9_637..])
            .copied()
            .collect();
        let fid = analyze(&block, rate, &[1_234.5, 7_654.3]);
        assert_eq!(fid.glitches.len(), 1, "{fid:?}");
        assert!((fid.glitches[0].at_s - 0.2).abs() < 0.006, "{fid:?}");
    }

    #[test]
    fn a_dropout_is_one_glitch_where_it_happened() {
        let rate = 48_000.0;
        let mut block = two_tones(rate, 24_000, [1_500.0, 4_321.0], 0.0);
        // 1 ms of silence at 0.3 s.
        block[14_400..14_448].fill(0.0);
        let fid = analyze(&block, rate, &[1_500.0, 4_321.0]);
        assert_eq!(fid.glitches.len(), 1, "{fid:?}");
        assert!((fid.glitches[0].at_s - 0.3).abs() < 0.006, "{fid:?}");
        assert!(fid.snr_db < 40.0, "{fid:?}");
        assert!(fid.worst_error_ppm() < 20.0, "{fid:?}");
    }
}
