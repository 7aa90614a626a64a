//! One simulated hour with the sender's clock 300 ppm fast, then 300 ppm slow: after warm-up the
//! buffer never runs dry, never drops audio, and holds its depth at the target, because the drift
//! controller learns the clock offset.

mod jitter_support;

use jitter_support::Sim;

const HOUR: f64 = 120.0;
const WARM_UP: f64 = 60.0;

fn an_hour_at(ppm: f64) {
    // 48 kHz both sides keeps the hour fast; the controller works in seconds, not samples.
    let mut sim = Sim::new(48_000, 48_000, 480, 480, 1_000.0);
    sim.sender_speed = 1.0 + ppm * 1e-6;
    sim.jitter_us = 3_000;
    let frame_ms = sim.frame_ms();
    let mut after_warm_up = None;
    let mut worst: f64 = 0.0;
    sim.run_until(HOUR, |t, stats, _| {
        if t < WARM_UP {
            return;
        }
        let baseline = *after_warm_up.get_or_insert(*stats);
        assert_eq!(
            stats.underruns, baseline.underruns,
            "underrun at {t:.1} s: {stats:?}"
        );
        assert_eq!(
            stats.dropped_samples, baseline.dropped_samples,
            "drop at {t:.1} s: {stats:?}"
        );
        let error = stats.mean_depth_ms - stats.target_ms;
        worst = worst.max(error.abs());
        assert!(error.abs() <= frame_ms, "at {t:.1} s: {stats:?}");
        assert!(
            stats.depth_ms <= stats.target_ms + 3.0 * frame_ms,
            "at {t:.1} s: {stats:?}"
        );
    });
    let stats = sim.jb.stats();
    assert!((stats.drift_ppm - ppm).abs() < 10.0, "{stats:?}");
    assert_eq!(stats.concealed_samples, 0, "{stats:?}");
    assert!(worst < 3.0, "worst mean depth error {worst:.2} ms");
}

#[test]
fn sender_300_ppm_fast_for_an_hour() {
    an_hour_at(300.0);
}

#[test]
fn sender_300_ppm_slow_for_an_hour() {
    an_hour_at(-300.0);
}
