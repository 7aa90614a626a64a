//! The drift controller: a slow PI loop from buffer depth to playback speed.
//!
//! The sender's sound card and ours tick at slightly different rates (up to a few hundred ppm),
//! so at a fixed ratio the buffer would slowly fill or drain. The controller smooths the depth
//! (exponential average, [`SMOOTHING`]) and sets a speed correction `c`: the resampler consumes
//! wire audio `1 + c` times faster than nominal. `c = KP * e + KI * ∫e`, with `e` the smoothed
//! depth minus the target, in seconds.
//!
//! Depth obeys `d' = drift - c`, so the error follows `e'' + KP e' + KI e = 0`: with `KP = 0.1/s`
//! and `KI = 0.0025/s²` the loop is critically damped with a 20 s time constant. A step of
//! 300 ppm of drift moves the depth by at most about 2 ms, and the integral settles on the
//! drift itself, which is what [`DriftController::drift_ppm`] reports. The correction is clamped
//! to ±[`MAX_CORRECTION`] (2000 ppm, 3.5 cents of pitch: inaudible), and the integral to the same
//! range so it cannot wind up.

/// Time constant of the depth average, in seconds.
const SMOOTHING: f64 = 1.0;
/// Proportional gain, per second.
const KP: f64 = 0.1;
/// Integral gain, per second squared.
const KI: f64 = 0.0025;
/// Largest speed correction, as a fraction: 2000 ppm.
pub(crate) const MAX_CORRECTION: f64 = 2e-3;

#[derive(Debug, Default)]
pub(crate) struct DriftController {
    mean_depth: Option<f64>,
    integral: f64,
    correction: f64,
}

impl DriftController {
    /// Depth average the loop steers, in seconds.
    pub(crate) fn mean_depth(&self) -> Option<f64> {
        self.mean_depth
    }

    /// The sender's clock relative to ours, as learnt by the integral, in ppm.
    pub(crate) fn drift_ppm(&self) -> f64 {
        KI * self.integral * 1e6
    }

    /// Restarts the average at `depth`, after a step the loop should not chase (a drop, a
    /// rebuffer). The learnt drift stays: the clocks did not change.
    pub(crate) fn restart(&mut self, depth: f64) {
        self.mean_depth = Some(depth);
        self.correction = (KI * self.integral).clamp(-MAX_CORRECTION, MAX_CORRECTION);
    }

    /// One pull of `dt` seconds left `depth` seconds buffered; returns the new correction.
    pub(crate) fn update(&mut self, depth: f64, target: f64, dt: f64) -> f64 {
        let mean = match self.mean_depth {
            None => depth,
            Some(mean) => mean + (depth - mean) * (dt / SMOOTHING).min(1.0),
        };
        self.mean_depth = Some(mean);
        let error = mean - target;
        let limit = MAX_CORRECTION / KI;
        self.integral = (self.integral + error * dt).clamp(-limit, limit);
        self.correction = (KP * error + KI * self.integral).clamp(-MAX_CORRECTION, MAX_CORRECTION);
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
            let correction = c.update(depth, target, dt);
            depth += (drift - correction) * dt;
            worst = worst.max((depth - target).abs());
        }
        (c, worst)
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
            assert!(worst < 0.003, "worst depth error {worst}");
        }
    }
}
