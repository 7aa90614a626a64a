//! The linear predictor's residual, computed for a block of consecutive samples at a time so the
//! compiler turns the products into SIMD lanes (wasm's simd128, SSE natively): each coefficient
//! is multiplied into every output of the block, rather than each output summing its own
//! products. The sums are exact: in 32-bit lanes when the frame's peak times the coefficients'
//! magnitudes fits in 31 bits, four to a 128-bit register, else in 64-bit lanes.

use super::lpc::Lpc;

/// Outputs computed together: enough to fill the registers, small enough for the stack.
const BLOCK: usize = 32;

/// An exact accumulator of products of a coefficient and a sample.
trait Lane: Copy {
    const ZERO: Self;
    fn coef(c: i32) -> Self;
    fn sample(x: i16) -> Self;
    fn mul_add(self, c: Self, x: Self) -> Self;
    fn shr(self, shift: u32) -> i64;
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
    fn shr(self, shift: u32) -> i64 {
        i64::from(self >> shift)
    }
}

impl Lane for i64 {
    const ZERO: Self = 0;
    fn coef(c: i32) -> Self {
        Self::from(c)
    }
    fn sample(x: i16) -> Self {
        Self::from(x)
    }
    // |c| < 2^24 and |x| <= 2^15: at most 32 products below 2^39 each never overflow.
    fn mul_add(self, c: Self, x: Self) -> Self {
        self.wrapping_add(c.wrapping_mul(x))
    }
    fn shr(self, shift: u32) -> i64 {
        self >> shift
    }
}

/// Calls `f` with each zigzagged residual of `lpc` over `samples`, in order; false (and stops)
/// at the first above `max`. `peak` is the largest sample magnitude of `samples`.
pub(super) fn for_each(
    lpc: &Lpc,
    samples: &[i16],
    peak: u32,
    max: u32,
    f: impl FnMut(u32),
) -> bool {
    let magnitude: u64 = lpc
        .coefs()
        .iter()
        .map(|c| u64::from(c.unsigned_abs()))
        .sum();
    if magnitude * u64::from(peak) <= i32::MAX as u64 {
        blocks::<i32>(lpc, samples, max, f)
    } else {
        blocks::<i64>(lpc, samples, max, f)
    }
}

fn blocks<A: Lane>(lpc: &Lpc, samples: &[i16], max: u32, mut f: impl FnMut(u32)) -> bool {
    let q = lpc.order;
    let coefs = lpc.coefs();
    let mut start = q;
    while start < samples.len() {
        let len = BLOCK.min(samples.len() - start);
        // The block's outputs and the `q` samples before them.
        let window = &samples[start - q..start + len];
        let mut acc = [A::ZERO; BLOCK];
        if len == BLOCK {
            for (j, &c) in coefs.iter().enumerate() {
                let c = A::coef(c);
                let xs: &[i16; BLOCK] = window[q - 1 - j..][..BLOCK]
                    .try_into()
                    .expect("a whole block");
                for (a, &x) in acc.iter_mut().zip(xs) {
                    *a = a.mul_add(c, A::sample(x));
                }
            }
        } else {
            for (j, &c) in coefs.iter().enumerate() {
                let c = A::coef(c);
                for (a, &x) in acc[..len].iter_mut().zip(&window[q - 1 - j..]) {
                    *a = a.mul_add(c, A::sample(x));
                }
            }
        }
        for (a, &x) in acc[..len].iter().zip(&window[q..]) {
            let r = i64::from(x) - a.shr(lpc.shift);
            let u = ((r << 1) ^ (r >> 63)) as u64;
            if u > u64::from(max) {
                return false;
            }
            f(u as u32);
        }
        start += len;
    }
    true
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
            // Every limit stops at the first residual above it, none short of that.
            let top = want.iter().copied().max().unwrap_or(0);
            let limit = if rng.next_u64() % 2 == 0 {
                u32::MAX
            } else {
                (rng.next_u64() % (top as u64).clamp(1, u64::from(u32::MAX))) as u32
            };
            let stop = want.iter().position(|&u| u > i64::from(limit));
            let mut got = Vec::new();
            let complete = for_each(&lpc, &samples, peak, limit, |u| got.push(i64::from(u)));
            assert_eq!(complete, stop.is_none());
            assert_eq!(
                got,
                want[..stop.unwrap_or(want.len())],
                "order {order}, width {width}, shift {shift}"
            );
        }
        assert!(narrow > 20 && wide > 20, "{narrow} narrow, {wide} wide");
    }
}
