//! How much audio the engine keeps in the playback ring ahead of the audio thread, sans-IO.
//!
//! The engine tops the ring up each time it wakes; between two wakes the audio thread drains it,
//! in bursts as large as the device's buffer (10 ms at 200 kHz in Chromium). If the ring runs
//! dry, the audio thread plays silence: a click, and lost time. If it holds more than needed,
//! that is latency. So the fill is *measured*, not guessed: for the first seconds of a call the
//! controller notes the largest drain between wakes and then keeps that plus a margin; it grows
//! when the ring still runs dry (at most once per 200 ms, so one stall counts once),
//! and gives back a millisecond only after ten seconds in which the ring never came within three
//! milliseconds of empty. Every change moves the call's latency, so changes are rare.

/// The fill before anything is measured, and the least it is ever set to, milliseconds.
pub const MIN_FILL_MS: f64 = 5.0;
/// The most it grows to, milliseconds.
pub const MAX_FILL_MS: f64 = 40.0;
/// Headroom above the largest drain seen, milliseconds.
const MARGIN_MS: f64 = 3.0;
/// Growth on each starvation, milliseconds.
const GROW_MS: f64 = 2.0;
/// Starvations closer than this count once, microseconds.
const GROW_SPACING_US: u64 = 200_000;
/// What a calm spell gives back, milliseconds.
const SHRINK_MS: f64 = 1.0;
/// How long the ring must stay clear of empty before the fill shrinks, microseconds.
const CALM_US: u64 = 10_000_000;
/// How long the start of a call is measured before the fill is set from it, microseconds.
const LEARN_US: u64 = 2_000_000;

/// The playback-ring fill controller.
#[derive(Clone, Debug)]
pub struct PlaybackFill {
    target_ms: f64,
    /// When the current call started (the other person joined), microseconds.
    call_since_us: Option<u64>,
    learnt: bool,
    /// Largest drain between two wakes seen while learning, milliseconds.
    largest_drain_ms: f64,
    last_xruns: u64,
    last_grow_us: u64,
    calm_since_us: u64,
    /// Lowest fill seen at a wake since `calm_since_us`, milliseconds.
    low_ms: f64,
}

impl Default for PlaybackFill {
    fn default() -> Self {
        Self {
            target_ms: MIN_FILL_MS,
            call_since_us: None,
            learnt: false,
            largest_drain_ms: 0.0,
            last_xruns: 0,
            last_grow_us: 0,
            calm_since_us: 0,
            low_ms: f64::INFINITY,
        }
    }
}

impl PlaybackFill {
    /// The fill to keep, milliseconds.
    #[must_use]
    pub fn target_ms(&self) -> f64 {
        self.target_ms
    }

    /// A call started (`Some(since)`) or ended (`None`): a new call is learnt afresh.
    pub fn set_call(&mut self, since_us: Option<u64>) {
        if since_us.is_some() && self.call_since_us.is_none() {
            self.learnt = false;
            self.largest_drain_ms = 0.0;
        }
        self.call_since_us = since_us;
    }

    /// The engine woke at `now_us` and found `filled_ms` in the ring; the audio thread has
    /// found it empty for `xruns` samples in all. Returns the fill to top the ring up to.
    pub fn update(&mut self, now_us: u64, filled_ms: f64, xruns: u64) -> f64 {
        let starved = xruns > self.last_xruns;
        self.last_xruns = xruns;
        let Some(since) = self.call_since_us else {
            return self.target_ms;
        };
        if !self.learnt {
            // The ring was topped up to the target at the last wake: what is gone is the drain.
            let drain = if starved {
                self.target_ms
            } else {
                self.target_ms - filled_ms
            };
            self.largest_drain_ms = self.largest_drain_ms.max(drain);
            if now_us.saturating_sub(since) >= LEARN_US {
                self.learnt = true;
                self.target_ms =
                    (self.largest_drain_ms + MARGIN_MS).clamp(MIN_FILL_MS, MAX_FILL_MS);
                self.calm(now_us);
            } else if starved {
                // Meanwhile, keep the audio thread fed.
                self.target_ms = (self.target_ms + GROW_MS).min(MAX_FILL_MS);
            }
            return self.target_ms;
        }
        if starved {
            if now_us.saturating_sub(self.last_grow_us) >= GROW_SPACING_US {
                self.last_grow_us = now_us;
                self.target_ms = (self.target_ms + GROW_MS).min(MAX_FILL_MS);
            }
            self.calm(now_us);
            return self.target_ms;
        }
        self.low_ms = self.low_ms.min(filled_ms);
        if now_us.saturating_sub(self.calm_since_us) >= CALM_US {
            if self.low_ms >= 2.0 * SHRINK_MS + 1.0 {
                self.target_ms = (self.target_ms - SHRINK_MS).max(MIN_FILL_MS);
            }
            self.calm(now_us);
        }
        self.target_ms
    }

    fn calm(&mut self, now_us: u64) {
        self.calm_since_us = now_us;
        self.low_ms = f64::INFINITY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that drains `burst_ms` at once every `burst_ms`, an engine that wakes every
    /// `wake_ms` and tops up; returns the controller and the xruns counted after `learn_s`.
    fn run(burst_ms: f64, wake_ms: f64, seconds: f64) -> (PlaybackFill, u64) {
        let mut fill = PlaybackFill::default();
        fill.set_call(Some(0));
        let (mut ring, mut xruns) = (0.0f64, 0u64);
        let mut next_burst = burst_ms;
        let mut t = 0.0;
        let mut xruns_after_learning = 0;
        while t < seconds * 1e3 {
            t += wake_ms;
            while next_burst <= t {
                if ring < burst_ms {
                    xruns += ((burst_ms - ring) * 48.0) as u64;
                    if t > 2_500.0 {
                        xruns_after_learning += 1;
                    }
                }
                ring = (ring - burst_ms).max(0.0);
                next_burst += burst_ms;
            }
            let target = fill.update((t * 1e3) as u64, ring, xruns);
            ring = ring.max(target);
        }
        (fill, xruns_after_learning)
    }

    #[test]
    fn learns_the_device_burst_and_never_starves_after() {
        let (fill, xruns) = run(10.0, 4.5, 60.0);
        assert_eq!(xruns, 0);
        // The largest drain is a burst (plus a wake period at most), then the margin, of which
        // calm spells give back what the ring never needed.
        assert!(
            fill.target_ms() >= 11.0 && fill.target_ms() <= 18.0,
            "{}",
            fill.target_ms()
        );
    }

    #[test]
    fn small_bursts_keep_the_minimum() {
        let (fill, xruns) = run(2.67, 2.67, 30.0);
        assert_eq!(xruns, 0);
        assert!(fill.target_ms() <= 7.0, "{}", fill.target_ms());
    }

    #[test]
    fn a_stall_grows_the_fill_once_and_calm_gives_it_back_slowly() {
        let mut fill = PlaybackFill::default();
        fill.set_call(Some(0));
        fill.update(2_100_000, 3.0, 0);
        let learnt = fill.target_ms();
        // A stall: the audio thread starved several times within 100 ms.
        for (i, xruns) in [100, 200, 300].into_iter().enumerate() {
            fill.update(3_000_000 + i as u64 * 30_000, 0.0, xruns);
        }
        assert_eq!(fill.target_ms(), learnt + GROW_MS);
        // Ten calm seconds with plenty in the ring: one millisecond back.
        for k in 0..=100u64 {
            fill.update(3_100_000 + k * 100_000, 6.0, 300);
        }
        assert_eq!(fill.target_ms(), learnt + GROW_MS - SHRINK_MS);
    }

    #[test]
    fn a_close_call_is_not_calm() {
        let mut fill = PlaybackFill::default();
        fill.set_call(Some(0));
        fill.update(2_100_000, 3.0, 0);
        let learnt = fill.target_ms();
        for k in 0..200u64 {
            // Once in a while the ring comes within a millisecond of empty.
            let filled = if k % 37 == 0 { 1.0 } else { 6.0 };
            fill.update(2_200_000 + k * 100_000, filled, 0);
        }
        assert_eq!(fill.target_ms(), learnt);
    }
}
