//! The drift controller: a slow PI loop from buffer delay to playback speed.
//!
//! The sender's sound card and ours tick at slightly different rates (up to a few hundred ppm),
//! so at a fixed ratio the buffer would slowly fill or drain. The controller smooths the buffer
//! delay (exponential average, [`SMOOTHING`]) and sets a speed correction `c`: the resampler
//! consumes wire audio `1 + c` times faster than nominal. `c = KP * e + KI * ∫e`, with `e` the
//! smoothed delay minus the target, in seconds.
//!
//! The delay measured is how long each packet's newest sample waits from its arrival until it
//! plays, not the fill level at pull time: the fill level is a saw-tooth (up by a frame at each
//! arrival, down at each pull), and when pulls and frames have nearly the same period the phase
//! between them slides slowly, which the loop would otherwise chase as a fake slow oscillation.
//!
//! The delay obeys `d' = drift - c`, so the error follows `e'' + KP e' + KI e = 0`: with
//! `KP = 0.2/s` and `KI = 0.01/s²` the loop is critically damped with a 10 s time constant. A
//! step of 300 ppm of drift moves the delay by at most 1.2 ms, and the integral settles on the
//! drift itself, which is what [`DriftController::drift_ppm`] reports. The correction is clamped
//! to ±[`MAX_CORRECTION`] (2000 ppm, 3.5 cents of pitch: inaudible). The integral takes in
//! only errors within ±[`INTEGRATED_ERROR`], so a large error at start-up (the buffer starts
//! playing up to one pull late) is corrected by the proportional term without winding the
//! integral up: a 10 ms start error plus 300 ppm of drift undershoots by less than 2 ms.
//!
//! A target that shrinks (the calm-network rule of `target.rs`, 4 ms per second) is fed
//! forward: the delay must fall as fast as the target, so `-target'` is added to the correction
//! directly. Without it the integral would ramp up to chase the moving target and report that
//! ramp as clock drift: +300 ppm between two browsers sharing one clock, which is also a
//! needless pitch offset. Steps up of the target are not fed forward: they are steps.
//! Likewise the integral takes in only errors within ±[`INTEGRATED_ERROR`] and stops while the
//! correction is saturated (anti-windup): a delay 60 ms above the target, worked off by the
//! proportional term, would otherwise leave 150-300 ppm of learnt "drift" behind.

/// Time constant of the delay average, in seconds.
const SMOOTHING: f64 = 1.0;
/// Proportional gain, per second.
const KP: f64 = 0.2;
/// Integral gain, per second squared.
const KI: f64 = 0.01;
/// Largest error the integral takes in, in seconds.
const INTEGRATED_ERROR: f64 = 0.002;
/// Largest speed correction, as a fraction: 2000 ppm.
pub(crate) const MAX_CORRECTION: f64 = 2e-3;

#[derive(Debug, Default)]
pub(crate) struct DriftController {
    mean_delay: Option<f64>,
    /// Time since the average last took a measurement.
    unmeasured: f64,
    integral: f64,
    correction: f64,
    /// The target at the last update, to feed its rate of shrinking forward.
    last_target: Option<f64>,
}

impl DriftController {
    /// The delay average the loop steers, in seconds.
    pub(crate) fn mean_delay(&self) -> Option<f64> {
        self.mean_delay
    }

    /// The sender's clock relative to ours, as learnt by the integral, in ppm.
    pub(crate) fn drift_ppm(&self) -> f64 {
        KI * self.integral * 1e6
    }

    /// Restarts the average at the next measurement, after a step the loop should not chase (a
    /// drop, a rebuffer). The learnt drift stays: the clocks did not change.
    pub(crate) fn restart(&mut self) {
        self.mean_delay = None;
        self.unmeasured = 0.0;
        self.correction = (KI * self.integral).clamp(-MAX_CORRECTION, MAX_CORRECTION);
        self.last_target = None;
    }

    /// Every sample held now waits `seconds` longer (negative: shorter), as after a drop of
    /// known length: the average moves with it instead of starting over.
    pub(crate) fn shift(&mut self, seconds: f64) {
        if let Some(mean) = &mut self.mean_delay {
            *mean += seconds;
        }
    }

    /// One pull of `dt` seconds, with a fresh `measured` delay if packets arrived since the last
    /// one; returns the new correction.
    pub(crate) fn update(&mut self, measured: Option<f64>, target: f64, dt: f64) -> f64 {
        self.unmeasured += dt;
        let shrinking = match self.last_target {
            Some(last) if dt > 0.0 => ((last - target) / dt).clamp(0.0, MAX_CORRECTION),
            _ => 0.0,
        };
        self.last_target = Some(target);
        if let Some(delay) = measured {
            let mean = match self.mean_delay {
                None => delay,
                Some(mean) => mean + (delay - mean) * (self.unmeasured / SMOOTHING).min(1.0),
            };
            self.mean_delay = Some(mean);
            self.unmeasured = 0.0;
        }
        let Some(mean) = self.mean_delay else {
            return self.correction;
        };
        let error = mean - target;
        let limit = MAX_CORRECTION / KI;
        // Anti-windup: only an error within ±INTEGRATED_ERROR is integrated (drift keeps it
        // there), and not while the correction is pinned at its limit. A larger error (tens of
        // ms after an underrun or a stall) is the proportional term's to work off; integrating
        // it would learn its size as hundreds of ppm of fake drift.
        let unclamped = KP * error + KI * self.integral + shrinking;
        let saturated = unclamped.abs() >= MAX_CORRECTION && unclamped.signum() == error.signum();
        if !saturated && error.abs() <= INTEGRATED_ERROR {
            self.integral = (self.integral + error * dt).clamp(-limit, limit);
        }
        self.correction =
            (KP * error + KI * self.integral + shrinking).clamp(-MAX_CORRECTION, MAX_CORRECTION);
        self.correction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates the loop against a sender `drift` faster than us, in 10 ms steps.
    fn settle(drift: f64, seconds: u32) -> (DriftController, f64) {
        let mut c = DriftController::default();
        let target = 0.03;
        let mut depth = target;
        let dt = 0.01;
        let mut worst: f64 = 0.0;
        for _ in 0..seconds * 100 {
            let correction = c.update(Some(depth), target, dt);
            depth += (drift - correction) * dt;
            worst = worst.max((depth - target).abs());
        }
        (c, worst)
    }

    #[test]
    fn a_shrinking_target_is_followed_without_learning_fake_drift() {
        // Same clocks; the target creeps down 1 ms per second from 50 to 20 ms, as when calm.
        let mut c = DriftController::default();
        let dt = 0.01;
        let mut depth = 0.05;
        let mut worst: f64 = 0.0;
        for step in 0..6_000u32 {
            let target = (0.05 - 1e-3 * f64::from(step) * dt).max(0.02);
            let correction = c.update(Some(depth), target, dt);
            depth -= correction * dt;
            worst = worst.max((depth - target).abs());
        }
        assert!(
            c.drift_ppm().abs() < 30.0,
            "fake drift {} ppm",
            c.drift_ppm()
        );
        assert!(worst < 0.0015, "worst depth error {worst}");
    }

    #[test]
    fn a_large_excess_is_worked_off_without_winding_up() {
        // Same clocks; the delay starts 60 ms above the target (audio piled up by a stall).
        let mut c = DriftController::default();
        let (dt, target) = (0.01, 0.03);
        let mut depth = 0.09;
        let mut peak: f64 = 0.0;
        for _ in 0..6_000u32 {
            let correction = c.update(Some(depth), target, dt);
            depth -= correction * dt;
            peak = peak.max(c.drift_ppm().abs());
        }
        assert!(peak < 60.0, "learnt up to {peak} ppm of fake drift");
        assert!((depth - target).abs() < 0.002, "delay {depth}");
    }

    #[test]
    fn learns_the_drift_and_holds_the_depth() {
        for drift in [300e-6, -300e-6] {
            let (c, worst) = settle(drift, 600);
            assert!(
                (c.drift_ppm() - drift * 1e6).abs() < 1.0,
                "drift {}",
                c.drift_ppm()
            );
            assert!(worst < 0.0015, "worst depth error {worst}");
        }
    }
}
