//! Where to cut or repeat a piece of audio so that nobody hears it: the latency control's tool.
//!
//! The buffer reaches its target delay by playing a piece of audio twice (an *insert*) or not at
//! all (a *drop*), never by changing the playback speed, which would shift the pitch. Both edits
//! join the audio at `p` to the audio at `p + len` (a drop jumps forward from `p` to `p + len`; an
//! insert, having played up to `p + len`, jumps back to `p`), cross-fading over a short window. A
//! join is inaudible where the two sides match: in silence, or where the jump is a whole number
//! of periods of the sound. So the finder searches, over the audio already buffered, for the
//! position and length (near the amount wanted) that minimise the energy of the difference across
//! the cross-fade window: the error a listener would hear. Raw energy, not normalised, so quiet
//! moments win by themselves.
//!
//! The search runs on the signal decimated by block averages (to about 25 kHz), then is refined
//! at full rate around the best coarse candidate: a few hundred thousand multiply-adds per
//! search, and a search runs only while an edit is wanted. All buffers are allocated up front.

/// Cost of joining `a` to `b` over the window: the energy of their difference.
pub(crate) fn join_cost(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The coarse search's rate: high enough to tell the phase of audible sound, low enough to be cheap.
const COARSE_RATE: u32 = 25_000;

/// A join found by [`SpliceFinder::find`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Join {
    /// Offset of `p` from the start of the audio searched.
    pub(crate) at: usize,
    /// Samples between the two sides: the amount dropped or inserted.
    pub(crate) len: usize,
    /// Energy of the difference across the window, relative to the energy of the audio there
    /// (0: a perfect match; 1: as loud as the audio itself; `0.0` for silence).
    pub(crate) relative_cost: f32,
}

#[derive(Debug)]
pub(crate) struct SpliceFinder {
    /// Cross-fade window, samples at the wire rate.
    window: usize,
    decimation: usize,
    coarse: Vec<f32>,
}

impl SpliceFinder {
    /// A finder for audio of up to `max_audio` samples at `rate`, joining over `window` samples.
    pub(crate) fn new(rate: u32, window: usize, max_audio: usize) -> Self {
        let decimation = (rate / COARSE_RATE).max(1) as usize;
        SpliceFinder {
            window: window.max(1),
            decimation,
            coarse: vec![0.0; max_audio / decimation + 1],
        }
    }

    /// The cross-fade window, samples.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// The best join in `audio` (contiguous samples, all present) whose length lies in
    /// `min_len..=max_len`, or `None` if `audio` is too short for any.
    pub(crate) fn find(&mut self, audio: &[f32], min_len: usize, max_len: usize) -> Option<Join> {
        let w = self.window;
        let min_len = min_len.max(1);
        let max_len = max_len.min(audio.len().saturating_sub(w));
        if min_len > max_len {
            return None;
        }
        let (mut at, mut len) = self.coarse_search(audio, min_len, max_len);
        // Refine at full rate within one coarse step of the coarse winner.
        let d = self.decimation;
        let mut best = f32::INFINITY;
        let (at0, len0) = (at, len);
        for l in len0.saturating_sub(d).max(min_len)..=(len0 + d).min(max_len) {
            let last_at = audio.len() - l - w;
            for p in at0.saturating_sub(d)..=(at0 + d).min(last_at) {
                let cost = join_cost(&audio[p..p + w], &audio[p + l..p + l + w]);
                if cost < best {
                    (best, at, len) = (cost, p, l);
                }
            }
        }
        let energy = audio[at..at + w]
            .iter()
            .chain(&audio[at + len..at + len + w])
            .map(|x| x * x)
            .sum::<f32>();
        let relative_cost = if energy > 0.0 { best / energy } else { 0.0 };
        Some(Join {
            at,
            len,
            relative_cost,
        })
    }

    /// Best `(at, len)` on the decimated signal, in full-rate samples.
    fn coarse_search(&mut self, audio: &[f32], min_len: usize, max_len: usize) -> (usize, usize) {
        let d = self.decimation;
        let n = (audio.len() / d).min(self.coarse.len());
        for (c, block) in self.coarse[..n].iter_mut().zip(audio.chunks_exact(d)) {
            *c = block.iter().sum::<f32>() / d as f32;
        }
        let coarse = &self.coarse[..n];
        let w = (self.window / d).max(1);
        let (lo, hi) = (min_len.div_ceil(d), max_len / d);
        let mut best = (f32::INFINITY, 0, min_len);
        for l in lo.max(1)..=hi {
            if l + w > n {
                break;
            }
            // Sliding sum of squared differences over the window, for every position.
            let diff = |i: usize| {
                let e = coarse[i] - coarse[i + l];
                e * e
            };
            let mut sum: f32 = (0..w).map(diff).sum();
            for p in 0..=n - l - w {
                if sum < best.0 {
                    best = (sum, p * d, l * d);
                }
                if p + w + l < n {
                    sum += diff(p + w) - diff(p);
                }
            }
        }
        let (_, at, len) = best;
        (at, len.clamp(min_len, max_len))
    }
}

/// Where the audio after a jump best continues the audio it replaces: the drop after a stall.
/// The same coarse-then-fine search as [`SpliceFinder`] with the join's start fixed, so a drop at
/// 200 kHz costs tens of thousands of multiply-adds, not a million. Buffers are allocated up
/// front; the caller fills them with [`Self::buffers`].
#[derive(Debug)]
pub(crate) struct JumpSearch {
    decimation: usize,
    /// The audio the jump leaves: one cross-fade window.
    from: Vec<f32>,
    /// The audio it may land in: the reach plus a window.
    to: Vec<f32>,
    coarse_from: Vec<f32>,
    coarse_to: Vec<f32>,
}

/// Below this many multiply-adds the search is exact: nothing to save.
const EXACT_UP_TO: usize = 1 << 16;

/// How many coarse winners are refined: a tone above the coarse rate's reach has a good join every
/// period, and the finest alignment is found by looking near more than one.
const REFINED: usize = 3;

impl JumpSearch {
    /// A search at `rate` over joins of `window` samples landing up to `reach` samples short of
    /// the drop asked for.
    pub(crate) fn new(rate: u32, window: usize, reach: usize) -> Self {
        let decimation = (rate / COARSE_RATE).max(1) as usize;
        JumpSearch {
            decimation,
            from: vec![0.0; window],
            to: vec![0.0; reach + window],
            coarse_from: vec![0.0; window / decimation],
            coarse_to: vec![0.0; (reach + window) / decimation],
        }
    }

    /// The cross-fade window, samples.
    pub(crate) fn window(&self) -> usize {
        self.from.len()
    }

    /// The longest reach, samples.
    pub(crate) fn reach(&self) -> usize {
        self.to.len() - self.from.len()
    }

    /// Where to put the audio before the jump and the `reach + window` samples it may land in.
    pub(crate) fn buffers(&mut self, reach: usize) -> (&mut [f32], &mut [f32]) {
        let window = self.from.len();
        (&mut self.from, &mut self.to[..reach + window])
    }

    /// The lag `0..=reach` into the landing audio whose join costs least; ties go to the longest.
    pub(crate) fn best(&mut self, reach: usize) -> usize {
        let window = self.from.len();
        let to = &self.to[..reach + window];
        let cost = |k: usize| join_cost(&self.from, &to[k..k + window]);
        let d = self.decimation;
        if d == 1 || (reach + 1) * window <= EXACT_UP_TO || window < 2 * d {
            return Self::least(0..=reach, cost);
        }
        // Coarse: block averages at about 25 kHz; keep the best few lags.
        let (w, n) = (window / d, (reach + window) / d);
        for (c, block) in self.coarse_from.iter_mut().zip(self.from.chunks_exact(d)) {
            *c = block.iter().sum::<f32>() / d as f32;
        }
        for (c, block) in self.coarse_to[..n].iter_mut().zip(to.chunks_exact(d)) {
            *c = block.iter().sum::<f32>() / d as f32;
        }
        let mut winners = [(f32::INFINITY, 0usize); REFINED];
        for kc in (0..=(reach / d).min(n - w)).rev() {
            let c = join_cost(&self.coarse_from[..w], &self.coarse_to[kc..kc + w]);
            if c < winners[REFINED - 1].0 {
                winners[REFINED - 1] = (c, kc * d);
                winners.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        // Fine: every lag within a coarse step of each winner, and the drop asked for itself.
        let mut best = (cost(reach), reach);
        for &(c, k) in &winners {
            if c.is_finite() {
                // Whole, even at the ends: above the coarse rate's reach the phase is found
                // here, and 2d + 1 lags hold a period of anything the coarse search misses.
                let lo = k.saturating_sub(d).min(reach.saturating_sub(2 * d));
                let k = Self::least(lo..=(lo + 2 * d).min(reach), cost);
                let here = cost(k);
                if here < best.0 || (here == best.0 && k > best.1) {
                    best = (here, k);
                }
            }
        }
        best.1
    }

    /// The lag in `lags` of least `cost`, the longest on ties.
    fn least(lags: core::ops::RangeInclusive<usize>, cost: impl Fn(usize) -> f32) -> usize {
        let mut best = (f32::INFINITY, *lags.end());
        for k in lags.rev() {
            let c = cost(k);
            if c < best.0 {
                best = (c, k);
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * core::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn a_tone_is_joined_a_whole_number_of_periods_apart() {
        // 1 kHz at 48 kHz: a period is 48 samples; ask for about 5 ms (240 samples).
        let audio = tone(1_000.0, 48_000, 1_440);
        let mut finder = SpliceFinder::new(48_000, 96, 4_800);
        let join = finder.find(&audio, 200, 300).expect("long enough");
        assert_eq!(join.len % 48, 0, "{join:?}");
        assert!(join.relative_cost < 1e-6, "{join:?}");
    }

    #[test]
    fn silence_is_where_to_cut() {
        // Noise-like audio with 4 ms of silence in the middle: the join lands in the silence.
        let mut seed = 1u32;
        let mut audio: Vec<f32> = (0..4_800)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        audio[2_000..2_192].fill(0.0);
        let mut finder = SpliceFinder::new(48_000, 48, 4_800);
        let join = finder.find(&audio, 60, 140).expect("long enough");
        assert!(
            join.at >= 2_000 && join.at + join.len + 48 <= 2_192,
            "{join:?}"
        );
        assert_eq!(join.relative_cost, 0.0);
    }

    #[test]
    fn too_little_audio_finds_nothing() {
        let mut finder = SpliceFinder::new(48_000, 96, 4_800);
        assert_eq!(finder.find(&[0.0; 100], 50, 80), None);
    }

    #[test]
    fn works_at_200_khz() {
        // 3.1 kHz is not a whole number of samples per period at 200 kHz.
        let audio = tone(3_100.0, 200_000, 8_000);
        let mut finder = SpliceFinder::new(200_000, 400, 8_000);
        let join = finder.find(&audio, 800, 1_600).expect("long enough");
        assert!((800..=1_600).contains(&join.len));
        assert!(join.relative_cost < 1e-3, "{join:?}");
    }
}
