//! A lossless coder for one frame of 16-bit PCM, with no state across frames: a frame decodes
//! alone, whatever was lost or reordered before it. Coded audio payloads carry it (protocol
//! version 2, docs/PROTOCOL.md); docs/LOSSLESS.md has the format byte by byte.
//!
//! The method is FLAC's, reduced to one frame and hand-written, because FLAC crates code whole
//! streams (a stream header, allocation per block) rather than one header-less frame into a
//! caller's buffer: each frame picks, of the predictors it measures, the one that leaves the
//! smallest residual, a fixed polynomial (order 0 to 4) or a quantized linear predictor (order 2
//! to 32), and Rice-codes that residual in 1 to 256 partitions, each with its own parameter. A
//! frame of one repeated value is coded as that value; a frame that would not get smaller is sent
//! verbatim, so a frame is never more than [`HEADER_LEN`] bytes larger than raw.
//!
//! ```
//! use line_protocol::lossless;
//!
//! let samples: Vec<i16> = (0..480).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
//! let mut coded = Vec::new();
//! lossless::encode(&samples, &mut coded);
//! assert!(coded.len() < 2 * samples.len());
//! let mut back = Vec::new();
//! lossless::decode(&coded, samples.len(), &mut back).unwrap();
//! assert_eq!(back, samples);
//! ```

mod bits;
mod lpc;
mod residual;
#[cfg(all(feature = "std", any(test, feature = "test-support")))]
pub mod signals;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use bits::{BitReader, BitWriter};

/// Bytes before the samples of a verbatim frame: the sample count and the method.
pub const HEADER_LEN: usize = 3;
/// The most samples one frame may hold (the count is 16 bits).
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// The sample count a coded frame announces (its first two bytes), or `None` when it is shorter
/// than a header: what a receiver needs to place a frame before it decodes it.
#[must_use]
pub fn sample_count(frame: &[u8]) -> Option<usize> {
    match frame {
        [c0, c1, _, ..] => Some(usize::from(u16::from_be_bytes([*c0, *c1]))),
        _ => None,
    }
}

const METHOD_VERBATIM: u8 = 0;
const METHOD_CONSTANT: u8 = 1;
const METHOD_FIXED: u8 = 2;
const METHOD_LPC: u8 = 3;

/// The highest order of the fixed polynomial predictors.
const MAX_FIXED_ORDER: usize = 4;
/// At most 2^8 partitions of the residual.
const MAX_PARTITION_ORDER: u32 = 8;
/// A partition should hold at least this many residuals: smaller ones cost more in parameter
/// fields than they save.
const MIN_PARTITION_LEN: usize = 16;
/// Width of each partition's Rice parameter field.
const RICE_FIELD_BITS: u32 = 5;
/// The largest Rice parameter: enough for any residual of an order-4 predictor on 16-bit samples.
const MAX_RICE: u32 = 20;
/// The largest zigzagged residual a frame may carry: an order-4 fixed residual is at most
/// 16 * 32768 = 2^19 in magnitude; the encoder drops a linear predictor that overshoots it.
const MAX_RESIDUAL: u32 = 1 << 20;

/// How each sample is predicted from the ones before it.
#[derive(Clone, Copy)]
enum Predictor {
    /// FLAC's fixed polynomial of this order (0 to 4): the order-th difference.
    Fixed(usize),
    /// Quantized linear prediction.
    Lpc(lpc::Lpc),
}

impl Predictor {
    /// Samples sent as they are before the first residual.
    fn order(&self) -> usize {
        match self {
            Self::Fixed(order) => *order,
            Self::Lpc(lpc) => lpc.order,
        }
    }

    /// Calls `f` with the zigzagged residuals in order, a block at a time; false, and stops,
    /// when one exceeds [`MAX_RESIDUAL`] (only linear prediction can overshoot that far).
    /// `peak` is the largest magnitude in `samples`.
    fn for_each_block(&self, samples: &[i16], peak: u32, f: impl FnMut(&[u32])) -> bool {
        match self {
            Self::Fixed(0) => residual::fixed::<0>(samples, f),
            Self::Fixed(1) => residual::fixed::<1>(samples, f),
            Self::Fixed(2) => residual::fixed::<2>(samples, f),
            Self::Fixed(3) => residual::fixed::<3>(samples, f),
            Self::Fixed(_) => residual::fixed::<4>(samples, f),
            Self::Lpc(lpc) => return residual::lpc(lpc, samples, peak, MAX_RESIDUAL, f),
        }
        true
    }
}

/// Why a frame could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LosslessError {
    /// The frame ends before what its header announces.
    Truncated,
    /// The frame announces more samples than the caller accepts.
    TooManySamples {
        /// The count in the frame.
        count: usize,
        /// The caller's limit.
        max: usize,
    },
    /// The method byte names no method of this format.
    UnknownMethod(u8),
    /// A predictor order, partition order or Rice parameter outside its range.
    BadParameter,
    /// A residual larger than any encoder writes.
    ResidualOutOfRange,
    /// A decoded sample outside the 16-bit range.
    SampleOutOfRange,
    /// Bytes, or non-zero padding bits, after the end of the frame.
    TrailingBytes,
}

impl fmt::Display for LosslessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("lossless frame truncated"),
            Self::TooManySamples { count, max } => {
                write!(
                    f,
                    "lossless frame of {count} samples, at most {max} accepted"
                )
            }
            Self::UnknownMethod(m) => write!(f, "unknown lossless method {m}"),
            Self::BadParameter => f.write_str("lossless parameter out of range"),
            Self::ResidualOutOfRange => f.write_str("lossless residual out of range"),
            Self::SampleOutOfRange => f.write_str("lossless sample out of the 16-bit range"),
            Self::TrailingBytes => f.write_str("bytes after the end of a lossless frame"),
        }
    }
}

impl core::error::Error for LosslessError {}

/// Appends the coded form of `samples` to `out`: at most `HEADER_LEN + 2 * samples.len()` bytes.
/// Allocates only if `out` must grow.
///
/// # Panics
///
/// When `samples` holds more than [`MAX_SAMPLES`]: a caller's bug.
pub fn encode(samples: &[i16], out: &mut Vec<u8>) {
    let n = samples.len();
    let count = u16::try_from(n).expect("at most MAX_SAMPLES samples a frame");
    out.extend_from_slice(&count.to_be_bytes());
    let body = out.len();
    if let Some(&first) = samples.first()
        && samples.iter().all(|&s| s == first)
    {
        out.push(METHOD_CONSTANT);
        out.extend_from_slice(&first.to_le_bytes());
        return;
    }
    let peak = peak(samples);
    if let Some(plan) = best_plan(samples, peak)
        // Against the raw samples; the method byte is common to both.
        && plan.bits < 16 * n as u64
    {
        write_plan(samples, peak, &plan, out);
        if out.len() - body <= 1 + 2 * n {
            return;
        }
        // The estimate was off: raw is smaller.
        out.truncate(body);
    }
    out.push(METHOD_VERBATIM);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Decodes one frame into `out` (cleared first; left empty on error). `max_samples` bounds what
/// a frame may announce, and so what decoding may allocate.
///
/// # Errors
///
/// When `bytes` is not a frame this format describes, or holds more than `max_samples`.
pub fn decode(bytes: &[u8], max_samples: usize, out: &mut Vec<i16>) -> Result<(), LosslessError> {
    out.clear();
    let result = decode_into(bytes, max_samples, out);
    if result.is_err() {
        out.clear();
    }
    result
}

fn decode_into(bytes: &[u8], max_samples: usize, out: &mut Vec<i16>) -> Result<(), LosslessError> {
    let [c0, c1, method, rest @ ..] = bytes else {
        return Err(LosslessError::Truncated);
    };
    let n = usize::from(u16::from_be_bytes([*c0, *c1]));
    if n > max_samples {
        return Err(LosslessError::TooManySamples {
            count: n,
            max: max_samples,
        });
    }
    match *method {
        METHOD_VERBATIM => {
            check_len(rest, 2 * n)?;
            out.extend(
                rest.chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
            Ok(())
        }
        METHOD_CONSTANT => {
            check_len(rest, 2)?;
            out.resize(n, i16::from_le_bytes([rest[0], rest[1]]));
            Ok(())
        }
        METHOD_FIXED => decode_fixed(rest, n, out),
        METHOD_LPC => decode_lpc(rest, n, out),
        other => Err(LosslessError::UnknownMethod(other)),
    }
}

fn check_len(rest: &[u8], want: usize) -> Result<(), LosslessError> {
    match rest.len().cmp(&want) {
        core::cmp::Ordering::Less => Err(LosslessError::Truncated),
        core::cmp::Ordering::Greater => Err(LosslessError::TrailingBytes),
        core::cmp::Ordering::Equal => Ok(()),
    }
}

/// First residual index of partition `j` over `len` residuals at `partition_order`. Partitions
/// at one order split exactly into the two halves at the next, since
/// `floor(2j * len / 2P) = floor(j * len / P)`.
fn boundary(j: usize, len: usize, partition_order: u32) -> usize {
    (j * len) >> partition_order
}

/// What the encoder chose for a frame, with the estimated size of all but the method byte.
struct Plan {
    predictor: Predictor,
    partition_order: u32,
    rice: [u8; 1 << MAX_PARTITION_ORDER],
    bits: u64,
}

/// The best partition order and Rice parameters for `predictor`'s residual of `samples`, with
/// the bits they take; `None` when a residual is out of range.
fn plan_rice(samples: &[i16], peak: u32, predictor: Predictor, header_bits: u64) -> Option<Plan> {
    let len = samples.len() - predictor.order();
    let finest = (len / MIN_PARTITION_LEN)
        .checked_ilog2()
        .unwrap_or(0)
        .min(MAX_PARTITION_ORDER);
    let mut sums = [0u64; 1 << MAX_PARTITION_ORDER];
    let (mut i, mut part, mut next) = (0usize, 0usize, boundary(1, len, finest));
    let in_range = predictor.for_each_block(samples, peak, |mut block| {
        while !block.is_empty() {
            while i == next {
                part += 1;
                next = boundary(part + 1, len, finest);
            }
            let (head, rest) = block.split_at((next - i).min(block.len()));
            // A block's residuals, each at most 2^20, sum below 2^25.
            sums[part] += u64::from(head.iter().sum::<u32>());
            i += head.len();
            block = rest;
        }
    });
    if !in_range {
        return None;
    }
    let mut best = Plan {
        predictor,
        partition_order: 0,
        rice: [0; 1 << MAX_PARTITION_ORDER],
        bits: u64::MAX,
    };
    let mut rice = [0u8; 1 << MAX_PARTITION_ORDER];
    for p in (0..=finest).rev() {
        let parts = 1usize << p;
        let mut bits = header_bits;
        for (j, (&sum, k)) in sums[..parts].iter().zip(&mut rice).enumerate() {
            let count = boundary(j + 1, len, p) - boundary(j, len, p);
            let (kj, b) = best_rice(sum, count);
            *k = kj as u8;
            bits += u64::from(RICE_FIELD_BITS) + b;
        }
        if bits < best.bits {
            best.partition_order = p;
            best.rice[..parts].copy_from_slice(&rice[..parts]);
            best.bits = bits;
        }
        // Merge pairs for the next coarser order.
        for j in 0..parts / 2 {
            sums[j] = sums[2 * j] + sums[2 * j + 1];
        }
    }
    Some(best)
}

/// The best Rice parameter for `count` values summing to `sum`, and the bits it takes: each value
/// costs `k + 1` bits plus its quotient, estimated from the sum as FLAC's reference encoder does.
fn best_rice(sum: u64, count: usize) -> (u32, u64) {
    if count == 0 {
        return (0, 0);
    }
    let count64 = count as u64;
    // floor(log2(sum / count)) without a division: it is one of the difference of the logs
    // and the integer below.
    let guess = if sum < count64 {
        0
    } else {
        let g = sum.ilog2() - count64.ilog2();
        let g = if count64 << g > sum { g - 1 } else { g };
        g.min(MAX_RICE)
    };
    (guess.saturating_sub(1)..=(guess + 1).min(MAX_RICE))
        .map(|k| (k, count as u64 * u64::from(k + 1) + (sum >> k)))
        .min_by_key(|&(_, bits)| bits)
        .unwrap_or((0, u64::MAX))
}

/// The frame's largest sample magnitude.
fn peak(samples: &[i16]) -> u32 {
    samples
        .iter()
        .map(|s| u32::from(s.unsigned_abs()))
        .max()
        .unwrap_or(0)
}

fn best_plan(samples: &[i16], peak: u32) -> Option<Plan> {
    let n = samples.len();
    let mut best: Option<Plan> = None;
    let mut consider = |plan: Option<Plan>| {
        if let Some(plan) = plan
            && best.as_ref().is_none_or(|b| plan.bits < b.bits)
        {
            best = Some(plan);
        }
    };
    // Of the fixed predictors only the one whose residual sums smallest as one partition, as
    // FLAC's encoder does: all five are summed in one pass, and they rarely differ by less than
    // what partitioning gains.
    let fixed_header = |order: usize| 8 + 16 * order as u64;
    let sums = residual::fixed_sums(samples);
    if let Some(order) =
        (0..=MAX_FIXED_ORDER.min(n)).min_by_key(|&o| fixed_header(o) + best_rice(sums[o], n - o).1)
    {
        consider(plan_rice(
            samples,
            peak,
            Predictor::Fixed(order),
            fixed_header(order),
        ));
    }
    for lpc in lpc::candidates(samples) {
        consider(plan_rice(
            samples,
            peak,
            Predictor::Lpc(lpc),
            lpc.header_bits(),
        ));
    }
    best
}

fn write_plan(samples: &[i16], peak: u32, plan: &Plan, out: &mut Vec<u8>) {
    let order = plan.predictor.order();
    match &plan.predictor {
        Predictor::Fixed(_) => {
            out.push(METHOD_FIXED);
            out.push(((order as u8) << 4) | plan.partition_order as u8);
        }
        Predictor::Lpc(lpc) => {
            out.push(METHOD_LPC);
            out.extend_from_slice(&[
                order as u8,
                lpc.width as u8,
                lpc.shift as u8,
                plan.partition_order as u8,
            ]);
        }
    }
    for s in &samples[..order] {
        out.extend_from_slice(&s.to_le_bytes());
    }
    let len = samples.len() - order;
    let p = plan.partition_order;
    let mut w = BitWriter::new(out);
    if let Predictor::Lpc(lpc) = &plan.predictor {
        for &c in lpc.coefs() {
            w.put(c as u32 & ((1u64 << lpc.width) - 1) as u32, lpc.width);
        }
    }
    let (mut i, mut part, mut next) = (0usize, 0usize, boundary(1, len, p));
    let mut k = u32::from(plan.rice[0]);
    w.put(k, RICE_FIELD_BITS);
    plan.predictor.for_each_block(samples, peak, |block| {
        for &u in block {
            while i == next {
                part += 1;
                next = boundary(part + 1, len, p);
                k = u32::from(plan.rice[part]);
                w.put(k, RICE_FIELD_BITS);
            }
            w.put_rice(u, k);
            i += 1;
        }
    });
    // Empty partitions at the end still carry their parameter.
    for part in part + 1..1 << p {
        w.put(u32::from(plan.rice[part]), RICE_FIELD_BITS);
    }
    w.finish();
}

fn read_warm_up<'a>(
    rest: &'a [u8],
    order: usize,
    out: &mut Vec<i16>,
) -> Result<&'a [u8], LosslessError> {
    let Some((warm, rest)) = rest.split_at_checked(2 * order) else {
        return Err(LosslessError::Truncated);
    };
    out.extend(
        warm.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
    Ok(rest)
}

fn decode_fixed(rest: &[u8], n: usize, out: &mut Vec<i16>) -> Result<(), LosslessError> {
    let [params, rest @ ..] = rest else {
        return Err(LosslessError::Truncated);
    };
    let order = usize::from(params >> 4);
    let p = u32::from(params & 0x0f);
    if order > MAX_FIXED_ORDER || order > n || p > MAX_PARTITION_ORDER {
        return Err(LosslessError::BadParameter);
    }
    out.reserve(n);
    let rest = read_warm_up(rest, order, out)?;
    let mut r = BitReader::new(rest);
    read_partitions(&mut r, n - order, p, |r, k, count| match order {
        0 => restore::<0>(r, k, count, out),
        1 => restore::<1>(r, k, count, out),
        2 => restore::<2>(r, k, count, out),
        3 => restore::<3>(r, k, count, out),
        _ => restore::<4>(r, k, count, out),
    })?;
    r.finish()
}

fn decode_lpc(rest: &[u8], n: usize, out: &mut Vec<i16>) -> Result<(), LosslessError> {
    let [order, width, shift, p, rest @ ..] = rest else {
        return Err(LosslessError::Truncated);
    };
    let (order, width, shift, p) = (
        usize::from(*order),
        u32::from(*width),
        u32::from(*shift),
        u32::from(*p),
    );
    if !(1..=lpc::MAX_ORDER).contains(&order)
        || order > n
        || !(1..=lpc::MAX_WIDTH).contains(&width)
        || shift > lpc::MAX_SHIFT
        || p > MAX_PARTITION_ORDER
    {
        return Err(LosslessError::BadParameter);
    }
    out.reserve(n);
    let rest = read_warm_up(rest, order, out)?;
    let mut r = BitReader::new(rest);
    let mut coefs = [0i32; lpc::MAX_ORDER];
    for c in &mut coefs[..order] {
        // Sign-extend from `width` bits.
        let raw = r.get(width)?;
        *c = ((raw << (32 - width)) as i32) >> (32 - width);
    }
    let coefs = &coefs[..order];
    read_partitions(&mut r, n - order, p, |r, k, count| {
        for _ in 0..count {
            let residual = unzigzag(r.get_rice(k, MAX_RESIDUAL)?);
            let history = &out[out.len() - order..];
            let prediction = lpc::predict(coefs, history, shift);
            out.push(to_sample(prediction + i64::from(residual))?);
        }
        Ok(())
    })?;
    r.finish()
}

/// Reads each partition's Rice parameter and hands it, with the partition's residual count, to
/// `restore`.
fn read_partitions(
    r: &mut BitReader<'_>,
    len: usize,
    p: u32,
    mut restore: impl FnMut(&mut BitReader<'_>, u32, usize) -> Result<(), LosslessError>,
) -> Result<(), LosslessError> {
    for j in 0..1usize << p {
        let k = r.get(RICE_FIELD_BITS)?;
        if k > MAX_RICE {
            return Err(LosslessError::BadParameter);
        }
        restore(r, k, boundary(j + 1, len, p) - boundary(j, len, p))?;
    }
    Ok(())
}

fn unzigzag(u: u32) -> i32 {
    (u >> 1) as i32 ^ -((u & 1) as i32)
}

fn to_sample(x: i64) -> Result<i16, LosslessError> {
    i16::try_from(x).map_err(|_| LosslessError::SampleOutOfRange)
}

/// Reads `count` residuals of the order-`O` fixed predictor and appends the samples they give.
fn restore<const O: usize>(
    r: &mut BitReader<'_>,
    k: u32,
    count: usize,
    out: &mut Vec<i16>,
) -> Result<(), LosslessError> {
    for _ in 0..count {
        let residual = unzigzag(r.get_rice(k, MAX_RESIDUAL)?);
        // `out` holds at least O samples: the warm-up.
        let x = |j: usize| i64::from(out[out.len() - j]);
        let prediction = match O {
            0 => 0,
            1 => x(1),
            2 => 2 * x(1) - x(2),
            3 => 3 * x(1) - 3 * x(2) + x(3),
            _ => 4 * x(1) - 6 * x(2) + 4 * x(3) - x(4),
        };
        out.push(to_sample(prediction + i64::from(residual))?);
    }
    Ok(())
}
