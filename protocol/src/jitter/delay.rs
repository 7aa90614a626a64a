//! The buffer delay as the latency control sees it: robust to single odd measurements, and aware
//! of its own noise.

/// Measurements the estimate is the median of: two seconds of quarter-second bins.
const WINDOW: usize = 8;
/// Time constant of the noise estimate, in measurements (about ten seconds).
const NOISE_MEMORY: f64 = 40.0;

#[derive(Debug, Default)]
pub(crate) struct DelayMeter {
    /// The last measurements, oldest overwritten, and how many there are.
    recent: [f64; WINDOW],
    count: usize,
    next: usize,
    /// Mean absolute difference between successive measurements, seconds.
    noise: Option<f64>,
}

impl DelayMeter {
    /// The delay, seconds: the median of the last measurements (the higher middle one), once
    /// there are two.
    pub(crate) fn mean(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let mut sorted = [0.0; WINDOW];
        let held = &mut sorted[..self.count];
        held.copy_from_slice(&self.recent[..self.count]);
        held.sort_unstable_by(f64::total_cmp);
        Some(held[self.count / 2])
    }

    /// How much successive measurements differ, seconds: a change of the delay smaller than a
    /// few times this is noise, not worth an edit.
    pub(crate) fn noise(&self) -> f64 {
        self.noise.unwrap_or(0.0)
    }

    /// A fresh `delay` measurement.
    pub(crate) fn measure(&mut self, delay: f64) {
        if self.count > 0 {
            let last = self.recent[(self.next + WINDOW - 1) % WINDOW];
            let change = (delay - last).abs();
            self.noise = Some(match self.noise {
                None => change,
                Some(noise) => noise + (change - noise) / NOISE_MEMORY,
            });
        }
        self.recent[self.next] = delay;
        self.next = (self.next + 1) % WINDOW;
        self.count = (self.count + 1).min(WINDOW);
    }

    /// Every sample held now waits `seconds` longer (negative: shorter), as after an edit: the
    /// measurements move with it instead of starting over.
    pub(crate) fn shift(&mut self, seconds: f64) {
        for d in &mut self.recent[..self.count] {
            *d += seconds;
        }
    }

    /// Starts over, after a step of unknown size (the noise estimate stays).
    pub(crate) fn restart(&mut self) {
        self.count = 0;
        self.next = 0;
    }
}
