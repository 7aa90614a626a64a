//! Clock drift: how much faster the sender's sound card runs than ours, measured, not steered.
//!
//! Two sound cards never tick at exactly the same rate: a few to a few hundred ppm apart. Left
//! alone, the buffer then fills or drains by that much (300 ppm is 18 ms a minute). The cure is
//! to play the other side's audio at the ratio of the two clocks, and only that: a correction
//! that also steered the buffer towards its target delay would shift the pitch whenever the
//! buffer is off target, which is most of the time after a network hiccup (`mod.rs` reaches the
//! target by cutting or repeating whole pieces of audio instead).
//!
//! **Measuring.** What drift does is make the buffer delay (how long audio waits between arrival
//! and playout) slope: `d' = drift - c`, with `c` the correction in use. So `u = d + ∫c dt`, the
//! delay the buffer *would* have without the correction, rises at exactly the drift. The estimator
//! fits a straight line to `u` over time, by least squares on the buffer's quarter-second delay
//! measurements with exponential forgetting ([`MEMORY`]), so the fit follows a clock that warms
//! up. An edit moves the delay by an amount known to the sample: it is taken out of `u`. Anything
//! else that moves the delay in a step (an underrun, a drop after a stall, a device that lost
//! time, seen as a point far off the line) starts a new *segment*: the fit shares one slope across
//! segments, each with its own intercept, so a step never reads as drift, whatever its size.
//!
//! **Deciding.** A slope fitted to jittery arrivals is noisy for the first seconds, and most calls
//! have no measurable drift at all (two browsers on one computer share its clock). So the
//! correction stays exactly zero until the slope is both clearly above its own standard error
//! ([`SIGNIFICANCE`] standard errors) and above [`NEGLIGIBLE`]; then it follows the slope, at most
//! [`SLEW`] per second, and goes back to zero when the slope stops being significant. At zero the
//! audio passes through untouched: a call between two devices of one clock is bit-exact. Drift
//! below [`NEGLIGIBLE`] (0.6 ms a minute) is left to the edits.

/// How often the fit takes a point, seconds: the buffer's delay envelope over a whole window
/// (`mod.rs`), so that successive points share no measurement and their scatter is honest.
pub(crate) const POINT: f64 = 1.0;
/// A point this far off the fitted line is a step, seconds. Small: the delay envelope is steady
/// to a fraction of a millisecond, and a step taken for drift is worse than a point of drift
/// thrown away (the first shifts the pitch, the second only slows the fit down).
const STEP: f64 = 0.0015;
/// Time constant of the fit's forgetting, seconds.
const MEMORY: f64 = 120.0;
/// The fit needs as many points as this much time gives in one segment before its slope
/// counts, seconds: with fewer, its own estimate of its error is too rough to trust.
const MIN_SPAN: f64 = 30.0;
/// How many standard errors a slope must be from zero to be acted on: many, since the delay's
/// scatter is not quite independent from one second to the next, which makes the fit's own
/// error estimate optimistic; a real drift soon clears any bar (300 ppm is 30 standard errors
/// after half a minute on a quiet network).
const SIGNIFICANCE: f64 = 8.0;
/// Below this, drift is not worth resampling for; the edits take care of it.
const NEGLIGIBLE: f64 = 20e-6;
/// Fastest change of the correction, per second: far below what an ear could follow.
const SLEW: f64 = 50e-6;
/// Largest correction: crystals are within ±100 ppm; anything far beyond is not a clock.
pub(crate) const MAX_CORRECTION: f64 = 1e-3;

/// Least-squares sums of one segment, times relative to the segment's first point.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    w: f64,
    t: f64,
    y: f64,
    tt: f64,
    ty: f64,
    yy: f64,
}

impl Sums {
    fn add(&mut self, t: f64, y: f64) {
        self.w += 1.0;
        self.t += t;
        self.y += y;
        self.tt += t * t;
        self.ty += t * y;
        self.yy += y * y;
    }

    fn scale(&mut self, k: f64) {
        self.w *= k;
        self.t *= k;
        self.y *= k;
        self.tt *= k;
        self.ty *= k;
        self.yy *= k;
    }

    /// Centred sums `(Stt, Sty, Syy)`: each segment's own mean removed.
    fn centred(&self) -> (f64, f64, f64) {
        if self.w <= 0.0 {
            return (0.0, 0.0, 0.0);
        }
        (
            self.tt - self.t * self.t / self.w,
            self.ty - self.t * self.y / self.w,
            self.yy - self.y * self.y / self.w,
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct DriftEstimator {
    /// Centred sums `(Stt, Sty, Syy)`, weight and segment count of the closed segments, decayed.
    closed: (f64, f64, f64),
    closed_weight: f64,
    closed_segments: f64,
    /// The open segment: its origin (seconds), its sums.
    origin: Option<f64>,
    open: Sums,
    /// ∫c dt minus the shifts announced so far, seconds: added to a delay, what it would be
    /// with neither correction nor edits.
    corrected: f64,
    /// The slope and its standard error at the last point.
    slope: f64,
    std_error: f64,
    /// The correction in use, and whether the drift is being acted on.
    correction: f64,
    active: bool,
}

impl DriftEstimator {
    /// The correction in use: the resampler consumes audio `1 + correction` times faster.
    pub(crate) fn correction(&self) -> f64 {
        self.correction
    }

    /// The drift fitted so far, in ppm (positive: the sender runs fast), whether acted on or not.
    pub(crate) fn drift_ppm(&self) -> f64 {
        self.slope * 1e6
    }

    /// The fitted drift's standard error, in ppm.
    pub(crate) fn std_error_ppm(&self) -> f64 {
        self.std_error * 1e6
    }

    /// The delay just moved in a step the fit must not read as drift.
    pub(crate) fn step(&mut self) {
        self.close_segment();
    }

    /// Every sample held now waits `seconds` longer (negative: shorter), as after an edit of
    /// known length: the fit takes it out instead of starting a new segment.
    pub(crate) fn shift(&mut self, seconds: f64) {
        self.corrected -= seconds;
    }

    /// A delay measurement (seconds) at `now`, one [`POINT`] after the last.
    pub(crate) fn observe(&mut self, now: f64, delay: f64) {
        let u = delay + self.corrected;
        // A point far off the line fitted so far is a step nobody announced (the device losing time, say), not drift: it starts a new
        // segment.
        if let Some(origin) = self.origin {
            let (w, t, y) = (self.open.w, self.open.t, self.open.y);
            let predicted = y / w + self.slope * (now - origin - t / w);
            if (u - predicted).abs() > STEP {
                self.step();
            }
        }
        self.add_point(now, u);
    }

    /// The device played `dt` seconds; returns the correction for what plays next.
    pub(crate) fn advance(&mut self, dt: f64) -> f64 {
        self.corrected += self.correction * dt;
        let decay = (-dt / MEMORY).exp();
        self.open.scale(decay);
        let (stt, sty, syy) = &mut self.closed;
        *stt *= decay;
        *sty *= decay;
        *syy *= decay;
        self.closed_weight *= decay;
        self.closed_segments *= decay;
        let wanted = if self.significant() {
            self.slope.clamp(-MAX_CORRECTION, MAX_CORRECTION)
        } else {
            0.0
        };
        let step = SLEW * dt;
        self.correction = if wanted == 0.0 && self.correction.abs() <= step {
            0.0
        } else {
            self.correction + (wanted - self.correction).clamp(-step, step)
        };
        self.correction
    }

    /// Whether the fitted slope is drift to act on, with hysteresis: once acting, the slope may
    /// fall to half the bars before the correction is let go.
    fn significant(&mut self) -> bool {
        let bar = if self.active { 0.5 } else { 1.0 };
        self.active = self.std_error.is_finite()
            && self.slope.abs() > bar * NEGLIGIBLE
            && self.slope.abs() > bar * SIGNIFICANCE * self.std_error;
        self.active
    }

    fn add_point(&mut self, t: f64, u: f64) {
        let origin = *self.origin.get_or_insert(t);
        self.open.add(t - origin, u);
        self.fit();
    }

    fn close_segment(&mut self) {
        let (stt, sty, syy) = self.open.centred();
        if self.open.w >= 2.0 {
            self.closed.0 += stt;
            self.closed.1 += sty;
            self.closed.2 += syy;
            self.closed_weight += self.open.w;
            self.closed_segments += 1.0;
        }
        self.open = Sums::default();
        self.origin = None;
    }

    fn fit(&mut self) {
        let (ott, oty, oyy) = self.open.centred();
        let stt = self.closed.0 + ott;
        let sty = self.closed.1 + oty;
        let syy = self.closed.2 + oyy;
        let segments = self.closed_segments + 1.0;
        let points = self.closed_weight + self.open.w;
        // A provisional slope as soon as there is one: the step test predicts with it.
        if stt > 0.0 {
            self.slope = sty / stt;
        }
        // Stt grows as span² x points: MIN_SPAN of points within one segment.
        let min_stt = MIN_SPAN * MIN_SPAN * MIN_SPAN / (12.0 * POINT);
        if stt < min_stt || points < segments + MIN_SPAN / POINT {
            self.std_error = f64::INFINITY;
            return;
        }
        let residual = (syy - sty * sty / stt).max(0.0);
        let variance = residual / (points - segments - 1.0);
        self.std_error = (variance / stt).sqrt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `seconds` of a delay that drifts at `drift`, with `noise(t)` added, measured every
    /// [`POINT`] and corrected every 10 ms; `event(t, delay, estimator)` may step the delay.
    fn run(
        drift: f64,
        seconds: f64,
        noise: impl Fn(f64) -> f64,
        mut event: impl FnMut(f64, &mut f64, &mut DriftEstimator),
    ) -> DriftEstimator {
        let mut e = DriftEstimator::default();
        let mut delay = 0.03;
        let dt = 0.01;
        let mut step = 0u32;
        while f64::from(step) * dt < seconds {
            let c = e.advance(dt);
            delay += (drift - c) * dt;
            step += 1;
            let t = f64::from(step) * dt;
            event(t, &mut delay, &mut e);
            if step.is_multiple_of(100) {
                e.observe(t, delay + noise(t));
            }
        }
        e
    }

    /// Uniform noise of ±0.3 ms, a fixed pseudo-random function of the time: about what the
    /// delay envelope scatters by on a quiet network.
    fn noise(t: f64) -> f64 {
        0.3 * rough(t)
    }

    /// Uniform noise of ±1 ms.
    fn rough(t: f64) -> f64 {
        let mut x = ((t * 1e3).round() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        x ^= x >> 31;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        1e-3 * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    }

    #[test]
    fn no_drift_means_no_correction_at_all() {
        let mut worst: f64 = 0.0;
        let e = run(0.0, 120.0, rough, |_, _, e| {
            worst = worst.max(e.correction().abs())
        });
        assert_eq!(worst, 0.0);
        assert!(e.drift_ppm().abs() < 10.0, "{}", e.drift_ppm());
    }

    #[test]
    fn learns_the_drift_and_follows_it() {
        for drift in [300e-6, -300e-6, 40e-6] {
            let e = run(drift, 60.0, noise, |_, _, _| {});
            assert!(
                (e.correction() - drift).abs() < 5e-6,
                "{drift}: correction {}",
                e.correction()
            );
        }
    }

    #[test]
    fn edits_are_not_drift() {
        // A 5 ms edit every 3 s, announced.
        let e = run(
            0.0,
            60.0,
            |_| 0.0,
            |t, delay, e| {
                if (t % 3.0) < 0.005 {
                    *delay -= 0.005;
                    e.shift(-0.005);
                }
            },
        );
        assert_eq!(e.correction(), 0.0);
        assert!(e.drift_ppm().abs() < 1.0, "{}", e.drift_ppm());
    }

    #[test]
    fn unannounced_steps_are_not_drift_either() {
        // The device loses 8 ms every 5 s, while the sender drifts 100 ppm.
        let e = run(100e-6, 90.0, noise, |t, delay, _| {
            if (t % 5.0) < 0.005 {
                *delay += 0.008;
            }
        });
        assert!((e.drift_ppm() - 100.0).abs() < 20.0, "{}", e.drift_ppm());
    }
}
