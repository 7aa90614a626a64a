//! The linear predictor's residual, computed for a block of consecutive samples at a time so the
//! compiler turns the products into SIMD lanes (wasm's simd128, SSE natively): each coefficient
//! is multiplied into every output of the block, rather than each output summing its own
//! products. The sums are exact: in 32-bit integer lanes when the frame's peak times the
//! coefficients' magnitudes fits in 31 bits, four to a 128-bit register, else in f64 lanes, whose
//! 53-bit mantissa holds any such sum (wasm has no fast 64-bit integer multiply in SIMD).

use super::lpc::{Lpc, MAX_ORDER};

/// Residuals computed together: enough to fill the SIMD registers, small enough for the stack.
pub(super) const BLOCK: usize = 32;
/// A prediction is clamped to this magnitude, so the residual fits an i32; a clamped one leaves
/// a residual far above any a frame may carry, as the true one would.
const PREDICTION_LIMIT: i32 = 1 << 22;

/// An exact accumulator of products of a coefficient and a sample.
trait Lane: Copy {
    const ZERO: Self;
    fn coef(c: i32) -> Self;
    fn sample(x: i16) -> Self;
    fn mul_add(self, c: Self, x: Self) -> Self;
    /// The prediction: the sum shifted right, clamped to [`PREDICTION_LIMIT`].
    fn prediction(self, shift: u32) -> i32;
}

impl Lane for i32 {
    const ZERO: Self = 0;
    fn coef(c: i32) -> Self {
        c
    }
    fn sample(x: i16) -> Self {
        Self::from(x)
    }
    // Wrapping only so that debug builds need no overflow checks: the caller proved the sum fits.
    fn mul_add(self, c: Self, x: Self) -> Self {
        self.wrapping_add(c.wrapping_mul(x))
    }
    fn prediction(self, shift: u32) -> i32 {
        (self >> shift).clamp(-PREDICTION_LIMIT, PREDICTION_LIMIT)
    }
}

impl Lane for f64 {
    const ZERO: Self = 0.0;
    fn coef(c: i32) -> Self {
        Self::from(c)
    }
    fn sample(x: i16) -> Self {
        Self::from(x)
    }
    // Exact: every product is an integer below 2^39 and every sum below 2^44, inside the 53
    // bits of the mantissa.
    fn mul_add(self, c: Self, x: Self) -> Self {
        self + c * x
    }
    fn prediction(self, shift: u32) -> i32 {
        let p = (self as i64) >> shift;
        p.clamp(-i64::from(PREDICTION_LIMIT), i64::from(PREDICTION_LIMIT)) as i32
    }
}

fn zigzag(r: i32) -> u32 {
    ((r << 1) ^ (r >> 31)) as u32
}

/// Calls `f` with the zigzagged residuals of `lpc` over `samples`, in order, up to [`BLOCK`] at
/// a time; false, and stops before the block, when one exceeds `max` (below 2^22). `peak` is the
/// largest sample magnitude of `samples`.
pub(super) fn lpc(lpc: &Lpc, samples: &[i16], peak: u32, max: u32, f: impl FnMut(&[u32])) -> bool {
    let magnitude: u64 = lpc
        .coefs()
        .iter()
        .map(|c| u64::from(c.unsigned_abs()))
        .sum();
    if magnitude * u64::from(peak) <= i32::MAX as u64 {
        lpc_blocks::<i32>(lpc, samples, max, f)
    } else {
        lpc_blocks::<f64>(lpc, samples, max, f)
    }
}

fn lpc_blocks<A: Lane>(lpc: &Lpc, samples: &[i16], max: u32, mut f: impl FnMut(&[u32])) -> bool {
    let q = lpc.order;
    let coefs = lpc.coefs();
    let mut start = q;
    while start < samples.len() {
        let len = BLOCK.min(samples.len() - start);
        // The block's outputs and the `q` samples before them.
        let window = &samples[start - q..start + len];
        // Converted once, not once per product.
        let mut xs = [A::ZERO; MAX_ORDER + BLOCK];
        for (x, &s) in xs.iter_mut().zip(window) {
            *x = A::sample(s);
        }
        let mut acc = [A::ZERO; BLOCK];
        for (j, &c) in coefs.iter().enumerate() {
            let c = A::coef(c);
            let xs: &[A; BLOCK] = xs[q - 1 - j..][..BLOCK].try_into().expect("a whole block");
            for (a, &x) in acc.iter_mut().zip(xs) {
                *a = a.mul_add(c, x);
            }
        }
        let mut u = [0u32; BLOCK];
        for ((u, a), &x) in u.iter_mut().zip(&acc).zip(&window[q..]) {
            *u = zigzag(i32::from(x) - a.prediction(lpc.shift));
        }
        let u = &u[..len];
        if u.iter().fold(0, |m, &u| m.max(u)) > max {
            return false;
        }
        f(u);
        start += len;
    }
    true
}

/// Calls `f` with the zigzagged residuals of the order-`O` fixed predictor over `samples`, in
/// order, up to [`BLOCK`] at a time. None exceeds 2^20.
pub(super) fn fixed<const O: usize>(samples: &[i16], mut f: impl FnMut(&[u32])) {
    let mut start = O;
    while start < samples.len() {
        let len = BLOCK.min(samples.len() - start);
        let mut u = [0u32; BLOCK];
        for (u, w) in u
            .iter_mut()
            .zip(samples[start - O..start + len].windows(O + 1))
        {
            let x = |j: usize| i32::from(w[O - j]);
            let r = match O {
                0 => x(0),
                1 => x(0) - x(1),
                2 => x(0) - 2 * x(1) + x(2),
                3 => x(0) - 3 * x(1) + 3 * x(2) - x(3),
                _ => x(0) - 4 * x(1) + 6 * x(2) - 4 * x(3) + x(4),
            };
            *u = zigzag(r);
        }
        f(&u[..len]);
        start += len;
    }
}

/// The residual of the fixed predictor of order `w.len() - 1` for the last sample of `w`: the
/// order-th difference.
#[inline]
fn difference(w: &[i16]) -> i32 {
    let x = |j: usize| i32::from(w[w.len() - 1 - j]);
    match w.len() - 1 {
        0 => x(0),
        1 => x(0) - x(1),
        2 => x(0) - 2 * x(1) + x(2),
        3 => x(0) - 3 * x(1) + 3 * x(2) - x(3),
        _ => x(0) - 4 * x(1) + 6 * x(2) - 4 * x(3) + x(4),
    }
}

/// The sums of the zigzagged residuals of the fixed predictors of order 0 to 4 over `samples`,
/// in one pass.
pub(super) fn fixed_sums(samples: &[i16]) -> [u64; 5] {
    let mut sums = [0u64; 5];
    // The residuals before order 4 has its history.
    for i in 0..samples.len().min(4) {
        for (o, sum) in sums.iter_mut().enumerate().take(i + 1) {
            *sum += u64::from(zigzag(difference(&samples[i - o..=i])));
        }
    }
    let mut start = 4;
    while start < samples.len() {
        let len = BLOCK.min(samples.len() - start);
        // A block's residuals, each at most 2^20, sum below 2^25.
        let mut block = [0u32; 5];
        for w in samples[start - 4..start + len].windows(5) {
            for (o, b) in block.iter_mut().enumerate() {
                *b += zigzag(difference(&w[4 - o..]));
            }
        }
        for (sum, b) in sums.iter_mut().zip(block) {
            *sum += u64::from(b);
        }
        start += len;
    }
    sums
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::super::lpc::{self, Lpc};
    use super::*;
    use crate::testing::Rng;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// One residual at a time, each prediction its own sum: what the decoder inverts.
    fn one_by_one(lpc: &Lpc, samples: &[i16]) -> Vec<i64> {
        samples
            .windows(lpc.order + 1)
            .map(|w| {
                let (history, current) = w.split_at(lpc.order);
                i64::from(current[0]) - lpc::predict(lpc.coefs(), history, lpc.shift)
            })
            .map(|r| (r << 1) ^ (r >> 63))
            .collect()
    }

    #[test]
    fn blocks_give_the_residuals_of_one_prediction_at_a_time_in_both_widths() {
        let mut rng = Rng::from_env();
        let (mut narrow, mut wide) = (0, 0);
        for _ in 0..400 {
            let order = 1 + (rng.next_u64() % lpc::MAX_ORDER as u64) as usize;
            let n = order + (rng.next_u64() % 300) as usize;
            // Quiet frames take the 32-bit lanes, loud frames and wide coefficients the 64-bit.
            let amplitude = 1u64 << (rng.next_u64() % 16);
            let samples: Vec<i16> = (0..n)
                .map(|_| ((rng.next_u64() % (2 * amplitude)) as i64 - amplitude as i64) as i16)
                .collect();
            let width = 1 + (rng.next_u64() % u64::from(lpc::MAX_WIDTH)) as u32;
            let half = 1i64 << (width - 1);
            let coefs: Vec<i32> = (0..order)
                .map(|_| ((rng.next_u64() % (2 * half as u64)) as i64 - half) as i32)
                .collect();
            let shift = (rng.next_u64() % u64::from(lpc::MAX_SHIFT + 1)) as u32;
            let lpc = Lpc::new(&coefs, width, shift);
            let peak = samples
                .iter()
                .map(|s| u32::from(s.unsigned_abs()))
                .max()
                .unwrap_or(0);
            let magnitude: u64 = coefs.iter().map(|c| u64::from(c.unsigned_abs())).sum();
            if magnitude * u64::from(peak) <= i32::MAX as u64 {
                narrow += 1;
            } else {
                wide += 1;
            }
            let want = one_by_one(&lpc, &samples);
            // Every limit stops before the block of the first residual above it: the frame's
            // own limit, or one near the largest residual.
            let top = want.iter().copied().max().unwrap_or(0);
            let limit = if rng.next_u64() & 1 == 0 {
                super::super::MAX_RESIDUAL
            } else {
                (rng.next_u64() % (top as u64).clamp(1, 1 << 21)) as u32
            };
            let stop = want.iter().position(|&u| u > i64::from(limit));
            let mut got = Vec::new();
            let complete = super::lpc(&lpc, &samples, peak, limit, |u| {
                assert!(!u.is_empty() && u.len() <= BLOCK);
                got.extend(u.iter().map(|&u| i64::from(u)));
            });
            assert_eq!(complete, stop.is_none());
            let whole = stop.map_or(want.len(), |s| s / BLOCK * BLOCK);
            assert_eq!(
                got,
                want[..whole],
                "order {order}, width {width}, shift {shift}"
            );
        }
        assert!(narrow > 20 && wide > 20, "{narrow} narrow, {wide} wide");
    }

    #[test]
    fn the_fixed_sums_of_one_pass_are_those_of_each_order_alone() {
        let mut rng = Rng::from_env();
        for _ in 0..200 {
            let n = (rng.next_u64() % 200) as usize;
            let samples: Vec<i16> = (0..n).map(|_| (rng.next_u64() >> 48) as i16).collect();
            let mut want = [0u64; 5];
            for (o, sum) in want.iter_mut().enumerate() {
                let add = |u: &[u32]| *sum += u.iter().map(|&u| u64::from(u)).sum::<u64>();
                match o {
                    0 => fixed::<0>(&samples, add),
                    1 => fixed::<1>(&samples, add),
                    2 => fixed::<2>(&samples, add),
                    3 => fixed::<3>(&samples, add),
                    _ => fixed::<4>(&samples, add),
                }
            }
            assert_eq!(fixed_sums(&samples), want, "{n} samples");
        }
    }
}
