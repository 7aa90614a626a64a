//! Conversions between Web Audio's `f32` samples and the wire's 16-bit little-endian PCM.
//!
//! Both write into buffers the caller owns, so the audio path allocates nothing per frame.
//! Full scale is 32767 both ways, so 1.0 -> 32767 -> 1.0 exactly; -32768 reads as -1.0.
//!
//! ```
//! use line_protocol::pcm;
//!
//! let mut wire = [0u8; 6];
//! pcm::f32_to_i16le(&[0.5, -2.0, 1.0], &mut wire);
//! assert_eq!(wire, [0x00, 0x40, 0x01, 0x80, 0xff, 0x7f]); // 16384, -32767 (clamped), 32767
//! let mut back = [0f32; 3];
//! pcm::i16le_to_f32(&wire, &mut back);
//! assert_eq!(back[1..], [-1.0, 1.0]);
//! ```

/// Full scale of a 16-bit sample.
const SCALE: f32 = 32767.0;

/// Writes each sample, clamped to [-1, 1] and rounded to the nearest 16-bit value, as two
/// little-endian bytes. NaN becomes 0.
///
/// # Panics
///
/// When `out.len() != 2 * input.len()`: a caller's bug.
pub fn f32_to_i16le(input: &[f32], out: &mut [u8]) {
    assert_eq!(
        out.len(),
        2 * input.len(),
        "the output holds two bytes per sample"
    );
    for (&sample, bytes) in input.iter().zip(out.chunks_exact_mut(2)) {
        bytes.copy_from_slice(&f32_to_i16(sample).to_le_bytes());
    }
}

/// One sample, clamped to [-1, 1] and rounded to the nearest 16-bit value, as
/// [`f32_to_i16le`] writes it. NaN becomes 0.
#[must_use]
pub fn f32_to_i16(sample: f32) -> i16 {
    let scaled = sample.clamp(-1.0, 1.0) * SCALE;
    // Round half away from zero without `f32::round`, which core lacks; `as` truncates and
    // maps NaN to 0.
    (scaled + 0.5f32.copysign(scaled)) as i16
}

/// Reads two little-endian bytes per sample into `out`, scaled to [-1, 1].
///
/// # Panics
///
/// When `input.len() != 2 * out.len()`: a caller's bug.
pub fn i16le_to_f32(input: &[u8], out: &mut [f32]) {
    assert_eq!(
        input.len(),
        2 * out.len(),
        "the input holds two bytes per sample"
    );
    for (bytes, sample) in input.chunks_exact(2).zip(out.iter_mut()) {
        let value = i16::from_le_bytes([bytes[0], bytes[1]]);
        *sample = (f32::from(value) / SCALE).max(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn clamps_rounds_and_maps_nan_to_zero() {
        let input = [
            0.0,
            1.0,
            -1.0,
            3.0,
            -3.0,
            f32::NAN,
            0.25,
            1.0 / 65534.0,
            -1.0 / 65534.0,
        ];
        let mut out = [0u8; 18];
        f32_to_i16le(&input, &mut out);
        let values: [i16; 9] =
            core::array::from_fn(|i| i16::from_le_bytes([out[2 * i], out[2 * i + 1]]));
        // 0.25 * 32767 = 8191.75 -> 8192; +-0.5 LSB rounds away from zero.
        assert_eq!(values, [0, 32767, -32767, 32767, -32767, 0, 8192, 1, -1]);
    }

    #[test]
    fn every_i16_survives_a_round_trip() {
        let mut wire = [0u8; 2];
        let mut sample = [0f32];
        let mut back = [0u8; 2];
        for value in i16::MIN..=i16::MAX {
            wire.copy_from_slice(&value.to_le_bytes());
            i16le_to_f32(&wire, &mut sample);
            assert!((-1.0..=1.0).contains(&sample[0]));
            f32_to_i16le(&sample, &mut back);
            // -32768 reads as -1.0, which writes back as -32767; everything else is exact.
            assert_eq!(i16::from_le_bytes(back), value.max(-32767));
        }
    }

    #[test]
    #[should_panic(expected = "two bytes per sample")]
    #[cfg(not(target_arch = "wasm32"))]
    fn mismatched_lengths_are_a_bug() {
        f32_to_i16le(&[0.0; 3], &mut [0u8; 4]);
    }
}
