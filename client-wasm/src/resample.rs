//! A streaming linear-interpolation resampler for the capture side.
//!
//! Used only where the browser will not run the AudioContext at the wire rate (Firefox connects a
//! microphone only to a context at the device rate): the microphone's samples at the context rate
//! become samples at the wire rate before they are framed. Playback resampling is the jitter
//! buffer's job (it also absorbs clock drift). Linear interpolation is enough for speech at rates
//! at or above the device's; it keeps no allocation per call after the first.

/// Converts a continuous stream from `from` Hz to `to` Hz.
#[derive(Clone, Debug)]
pub struct LinearResampler {
    from: u32,
    to: u32,
    /// Position of the next output sample, in input samples, relative to `last`.
    position: f64,
    /// The last input sample of the previous call (index -1 of the next one).
    last: f32,
}

impl LinearResampler {
    /// A resampler from `from` Hz to `to` Hz.
    ///
    /// # Panics
    /// If either rate is zero: the link parser never allows one, so that is a bug.
    #[must_use]
    pub fn new(from: u32, to: u32) -> Self {
        assert!(from > 0 && to > 0, "sample rates are positive");
        Self {
            from,
            to,
            position: 1.0,
            last: 0.0,
        }
    }

    /// Whether this resampler changes anything.
    #[must_use]
    pub fn is_identity(&self) -> bool {
        self.from == self.to
    }

    /// Appends the resampled form of `input` to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.is_identity() {
            out.extend_from_slice(input);
            return;
        }
        let step = f64::from(self.from) / f64::from(self.to);
        // Sample i of the virtual stream [last, input...] sits at index i; `position` counts
        // from `last` at 0.
        let at = |i: usize| if i == 0 { self.last } else { input[i - 1] };
        while self.position <= input.len() as f64 {
            let left = self.position.floor();
            let frac = (self.position - left) as f32;
            let i = left as usize;
            let a = at(i);
            let b = if frac > 0.0 { at(i + 1) } else { a };
            out.push(a + (b - a) * frac);
            self.position += step;
        }
        self.position -= input.len() as f64;
        if let Some(&last) = input.last() {
            self.last = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_rate_passes_through() {
        let mut r = LinearResampler::new(48_000, 48_000);
        let mut out = Vec::new();
        r.process(&[0.1, 0.2], &mut out);
        assert_eq!(out, [0.1, 0.2]);
    }

    #[test]
    fn upsampling_keeps_the_count_and_interpolates() {
        let mut r = LinearResampler::new(48_000, 96_000);
        let mut out = Vec::new();
        let input: Vec<f32> = (1..=480).map(|i| i as f32).collect();
        // Feed in uneven chunks: the stream must not notice the boundaries.
        for chunk in input.chunks(77) {
            r.process(chunk, &mut out);
        }
        // The last output waits for the next input to interpolate towards: one sample behind.
        assert_eq!(out.len(), 959);
        for pair in out.windows(2).skip(1) {
            assert!(
                (pair[1] - pair[0] - 0.5).abs() < 1e-4,
                "a straight ramp stays straight"
            );
        }
    }

    #[test]
    fn downsampling_a_second_gives_a_second() {
        let mut r = LinearResampler::new(44_100, 16_000);
        let mut out = Vec::new();
        for _ in 0..100 {
            r.process(&[0.5; 441], &mut out);
        }
        assert!((out.len() as i64 - 16_000).abs() <= 1, "{}", out.len());
        assert!(out[10..].iter().all(|&s| (s - 0.5).abs() < 1e-6));
    }
}
