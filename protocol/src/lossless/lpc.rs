//! Quantized linear prediction, as in FLAC: the encoder fits predictors of a few orders to the
//! frame (autocorrelation under a Welch window, Levinson-Durbin), quantizes their coefficients
//! to integers with a common right shift, and the decoder predicts with integers only, so every
//! platform decodes bit for bit the same whatever floating point the encoder used.

/// The longest predictor a frame may carry.
pub(super) const MAX_ORDER: usize = 32;
/// The widest coefficient a frame may carry, bits.
pub(super) const MAX_WIDTH: u32 = 24;
/// The largest right shift of the prediction a frame may carry.
pub(super) const MAX_SHIFT: u32 = 31;

/// The orders the encoder fits; each is tried when the frame holds four times as many samples.
const ORDERS: [usize; 7] = [2, 4, 8, 12, 16, 24, 32];
/// Coefficient precisions tried for each order, bits with sign: fewer bits cost less in the
/// header, more bits predict better.
const PRECISIONS: [u32; 4] = [12, 15, 18, 21];
/// Predictors fitted: one for each order.
const FITTED: usize = ORDERS.len();
/// Predictors the encoder measures exactly besides the lowest order: those the fit estimates
/// smallest. Measuring all seven would cost nearly three times as much for a frame about 0.1 %
/// smaller.
const MEASURED: usize = 2;
/// The largest shift the encoder uses.
const ENCODER_MAX_SHIFT: u32 = 24;

/// A quantized predictor: `prediction = (sum of coefs[j] * x[i - 1 - j]) >> shift`.
#[derive(Clone, Copy)]
pub(super) struct Lpc {
    pub(super) order: usize,
    /// Bits of each coefficient on the wire, two's complement.
    pub(super) width: u32,
    pub(super) shift: u32,
    coefs: [i32; MAX_ORDER],
}

impl Lpc {
    /// The coefficients, the one for the latest sample first.
    pub(super) fn coefs(&self) -> &[i32] {
        &self.coefs[..self.order]
    }

    /// A predictor with these coefficients, for tests of what uses one.
    #[cfg(test)]
    pub(super) fn new(coefs: &[i32], width: u32, shift: u32) -> Self {
        let mut lpc = Self {
            order: coefs.len(),
            width,
            shift,
            coefs: [0; MAX_ORDER],
        };
        lpc.coefs[..coefs.len()].copy_from_slice(coefs);
        lpc
    }

    /// The four parameter bytes, warm-up samples and coefficients.
    pub(super) fn header_bits(&self) -> u64 {
        32 + (16 + u64::from(self.width)) * self.order as u64
    }
}

/// The prediction of the sample after `history` (oldest first, as long as `coefs`).
#[inline]
pub(super) fn predict(coefs: &[i32], history: &[i16], shift: u32) -> i64 {
    let acc: i64 = coefs
        .iter()
        .zip(history.iter().rev())
        .map(|(&c, &x)| i64::from(c) * i64::from(x))
        .sum();
    acc >> shift
}

/// Quantized predictors worth measuring for `samples`: the lowest order, whose size the fit
/// misjudges on strong tones, and the [`MEASURED`] others the fit estimates smallest.
pub(super) fn candidates(samples: &[i16]) -> impl Iterator<Item = Lpc> {
    let n = samples.len();
    let max_order = ORDERS
        .iter()
        .copied()
        .filter(|&p| 4 * p <= n)
        .max()
        .unwrap_or(0);
    let mut found: [Option<(f64, Lpc)>; FITTED] = [None; FITTED];
    if max_order > 0 {
        let (r, window_energy) = autocorrelation(samples, max_order);
        if r[0] > 0.0 {
            fit(&r, window_energy, max_order, n, &mut found);
        }
    }
    let (lowest, others) = found.split_at_mut(1);
    others.sort_unstable_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.0.total_cmp(&b.0),
        // Orders the fit did not reach go last.
        _ => a.is_none().cmp(&b.is_none()),
    });
    let lowest = lowest[0];
    let others: [Option<(f64, Lpc)>; MEASURED] =
        core::array::from_fn(|i| others.get(i).copied().flatten());
    lowest
        .into_iter()
        .chain(others.into_iter().flatten())
        .map(|(_, lpc)| lpc)
}

/// Autocorrelation at lags `0..=max_order` of the frame under a Welch window, which tapers the
/// ends so the frame's edges do not read as content; and the window's energy (the sum of its
/// squares), which scales the lag-0 figure back to a power per sample.
///
/// The windowed samples go through a buffer a block at a time, each lag's products summed in
/// four lanes, so the compiler can keep them in SIMD registers.
fn autocorrelation(samples: &[i16], max_order: usize) -> ([f64; MAX_ORDER + 1], f64) {
    const BLOCK: usize = 64;
    const LANES: usize = 4;
    // The block's windowed samples after the `MAX_ORDER` before them (zeros before the frame).
    let mut buf = [0f64; MAX_ORDER + BLOCK];
    let mut lanes = [[0f64; LANES]; MAX_ORDER + 1];
    let mut window_energy = 0.0;
    let half = (samples.len() as f64 + 1.0) / 2.0;
    let centre = (samples.len() as f64 - 1.0) / 2.0;
    for (b, chunk) in samples.chunks(BLOCK).enumerate() {
        let (_, block) = buf.split_at_mut(MAX_ORDER);
        for (t, x) in block.iter_mut().enumerate() {
            *x = match chunk.get(t) {
                Some(&s) => {
                    let d = ((b * BLOCK + t) as f64 - centre) / half;
                    let w = 1.0 - d * d;
                    window_energy += w * w;
                    f64::from(s) * w
                }
                // Past the end of the frame: contributes nothing.
                None => 0.0,
            };
        }
        let block = &buf[MAX_ORDER..];
        for (lag, acc) in lanes.iter_mut().enumerate().take(max_order + 1) {
            let earlier = &buf[MAX_ORDER - lag..][..BLOCK];
            for (x, y) in block.chunks_exact(LANES).zip(earlier.chunks_exact(LANES)) {
                for k in 0..LANES {
                    acc[k] += x[k] * y[k];
                }
            }
        }
        buf.copy_within(BLOCK.., 0);
    }
    let mut r = [0f64; MAX_ORDER + 1];
    for (r, acc) in r.iter_mut().zip(&lanes) {
        *r = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
    // A tiny noise floor keeps the recursion stable on pure tones and rounded ramps.
    r[0] *= 1.0 + 1e-9;
    (r, window_energy)
}

/// Levinson-Durbin up to `max_order`; for each order in [`ORDERS`], the quantized predictor of
/// the precision with the smallest estimated size, and that size in bits.
fn fit(
    r: &[f64; MAX_ORDER + 1],
    window_energy: f64,
    max_order: usize,
    n: usize,
    found: &mut [Option<(f64, Lpc)>; FITTED],
) {
    let mut a = [0f64; MAX_ORDER + 1];
    let mut err = r[0];
    let signal_power = r[0] / window_energy;
    for i in 1..=max_order {
        let mut acc = r[i];
        for j in 1..i {
            acc -= a[j] * r[i - j];
        }
        let k = acc / err;
        let previous = a;
        a[i] = k;
        for j in 1..i {
            a[j] = previous[j] - k * previous[i - j];
        }
        err *= 1.0 - k * k;
        // Stop where the fit is exact or numerically broken.
        if !err.is_finite() || err <= 0.0 {
            break;
        }
        let Some(slot) = ORDERS.iter().position(|&p| p == i) else {
            continue;
        };
        // The estimate chooses each order's precision and which orders are measured, not the
        // order: a fit to the windowed frame misjudges how well a low order predicts a strong
        // tone in the frame itself, so the lowest is always measured.
        // The residual's power is what the fit leaves, plus two noises it does not see: the
        // samples' rounding (1/12 LSB^2) through the prediction filter, and the coefficients'
        // rounding (1/12 of a step each) times the signal.
        let gain: f64 = 1.0 + a[1..=i].iter().map(|c| c * c).sum::<f64>();
        let mut chosen = None;
        for precision in PRECISIONS {
            let Some(lpc) = quantize(&a[1..=i], precision) else {
                continue;
            };
            let step = 1.0 / f64::from(1u32 << lpc.shift);
            let power =
                err / window_energy + gain / 12.0 + i as f64 * signal_power * step * step / 12.0;
            // Half a bit per sample per halving of the power, plus the header.
            let bits = 0.5 * n as f64 * log2(power) + lpc.header_bits() as f64;
            if chosen.is_none_or(|(best, _)| bits < best) {
                chosen = Some((bits, lpc));
            }
        }
        found[slot] = chosen;
    }
}

/// Rounds the coefficients to `precision`-bit integers under the largest shift that fits, each
/// rounding error carried into the next coefficient.
fn quantize(coefs: &[f64], precision: u32) -> Option<Lpc> {
    let limit = f64::from((1i32 << (precision - 1)) - 1);
    let max_abs = coefs
        .iter()
        .fold(0f64, |m, &c| m.max(if c < 0.0 { -c } else { c }));
    let mut shift = ENCODER_MAX_SHIFT;
    while shift > 0 && max_abs * f64::from(1u32 << shift) > limit {
        shift -= 1;
    }
    if max_abs * f64::from(1u32 << shift) > limit || !max_abs.is_finite() {
        return None;
    }
    let scale = f64::from(1u32 << shift);
    let mut lpc = Lpc {
        order: coefs.len(),
        width: 1,
        shift,
        coefs: [0; MAX_ORDER],
    };
    let mut carry = 0.0;
    let mut widest = 0u32;
    for (q, &c) in lpc.coefs.iter_mut().zip(coefs) {
        let v = c * scale + carry;
        let rounded = if v < 0.0 { v - 0.5 } else { v + 0.5 } as i32;
        *q = rounded.clamp(-(limit as i32), limit as i32);
        carry = v - f64::from(*q);
        widest = widest.max(32 - q.unsigned_abs().leading_zeros());
    }
    // One bit more than the magnitude, for the sign.
    lpc.width = widest + 1;
    Some(lpc)
}

/// log2 of a positive number, to within 0.09: exponent plus the mantissa's linear part.
fn log2(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    exponent as f64 + mantissa - 1.0
}
