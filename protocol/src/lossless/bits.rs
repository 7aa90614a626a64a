//! MSB-first bit packing for the Rice-coded residual: a writer that appends to the caller's
//! buffer and a reader that refuses to run past the end of its input.

use alloc::vec::Vec;

use super::LosslessError;

/// Appends bits, most significant first, to a byte vector.
pub(super) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits in `acc` not yet written out (always below 8 between calls).
    pending: u32,
}

impl<'a> BitWriter<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            pending: 0,
        }
    }

    /// The low `bits` bits of `value` (`bits` at most 32; higher bits of `value` must be zero).
    pub(super) fn put(&mut self, value: u32, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 32 || value >> bits == 0));
        // At most 7 + 32 bits are live, so nothing of them is shifted out of the u64.
        self.acc = (self.acc << bits) | u64::from(value);
        self.pending += bits;
        while self.pending >= 8 {
            self.pending -= 8;
            self.out.push((self.acc >> self.pending) as u8);
        }
    }

    /// `u` as a Rice code with parameter `k`: `u >> k` zero bits, a one bit, then the low `k` bits.
    pub(super) fn put_rice(&mut self, u: u32, k: u32) {
        let mut q = u >> k;
        let low = u & ((1u32 << k) - 1);
        if q + 1 + k <= 32 {
            self.put((1 << k) | low, q + 1 + k);
            return;
        }
        while q >= 32 {
            self.put(0, 32);
            q -= 32;
        }
        self.put(1, q + 1);
        self.put(low, k);
    }

    /// Pads the last byte with zero bits.
    pub(super) fn finish(self) {
        if self.pending > 0 {
            self.out.push((self.acc << (8 - self.pending)) as u8);
        }
    }
}

/// Reads bits, most significant first; every read past the end is an error.
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u64,
    /// Valid bits at the bottom of `acc`.
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            acc: 0,
            avail: 0,
        }
    }

    fn refill(&mut self) {
        while self.avail <= 56 {
            let Some(&b) = self.bytes.get(self.next) else {
                break;
            };
            self.acc = (self.acc << 8) | u64::from(b);
            self.next += 1;
            self.avail += 8;
        }
    }

    fn low(&self) -> u64 {
        if self.avail >= 64 {
            self.acc
        } else {
            self.acc & ((1u64 << self.avail) - 1)
        }
    }

    /// The next `bits` bits (at most 32).
    pub(super) fn get(&mut self, bits: u32) -> Result<u32, LosslessError> {
        debug_assert!(bits <= 32);
        if bits == 0 {
            return Ok(0);
        }
        if self.avail < bits {
            self.refill();
            if self.avail < bits {
                return Err(LosslessError::Truncated);
            }
        }
        self.avail -= bits;
        Ok(((self.acc >> self.avail) & ((1u64 << bits) - 1)) as u32)
    }

    /// A Rice code with parameter `k` whose value must not exceed `max`: the bound keeps a
    /// forged run of zero bits from being read as a huge residual.
    pub(super) fn get_rice(&mut self, k: u32, max: u32) -> Result<u32, LosslessError> {
        let max_q = max >> k;
        let mut q = 0u32;
        loop {
            if self.avail == 0 {
                self.refill();
                if self.avail == 0 {
                    return Err(LosslessError::Truncated);
                }
            }
            let window = self.low();
            if window == 0 {
                q += self.avail;
                self.avail = 0;
            } else {
                // The highest one bit ends the unary run; it is consumed too.
                let top = 63 - window.leading_zeros();
                q += self.avail - 1 - top;
                self.avail = top;
                break;
            }
            if q > max_q {
                return Err(LosslessError::ResidualOutOfRange);
            }
        }
        if q > max_q {
            return Err(LosslessError::ResidualOutOfRange);
        }
        let u = (q << k) | self.get(k)?;
        if u > max {
            return Err(LosslessError::ResidualOutOfRange);
        }
        Ok(u)
    }

    /// Succeeds when only zero padding, less than a byte of it, is left.
    pub(super) fn finish(mut self) -> Result<(), LosslessError> {
        self.refill();
        if self.avail >= 8 || self.low() != 0 {
            return Err(LosslessError::TrailingBytes);
        }
        Ok(())
    }
}
