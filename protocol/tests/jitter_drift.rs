//! The sender's sound card 300 ppm fast, then 300 ppm slow, for one simulated hour each: after
//! warm-up the buffer never runs dry, never drops audio, and holds its delay at the target,
//! because the drift controller learns the clock offset.
//!
//! An hour is 173 million samples through the resampler: seconds when optimised, minutes
//! without. So the hour-long runs are skipped in unoptimised builds; run them with
//! `cargo test -p line-protocol --release --test jitter_drift`. A one-minute run of the same
//! checks always runs.
#![cfg(feature = "std")]

mod jitter_support;

use jitter_support::Sim;

const HOUR: f64 = 3_600.0;
const WARM_UP: f64 = 10.0;

/// Runs `seconds` with the sender's clock `ppm` off ours; returns the worst delay error, in ms.
fn drifting_sender(ppm: f64, seconds: f64) -> f64 {
    // 48 kHz both sides and 10 ms pulls keep an hour cheap; the controller works in seconds.
    let mut sim = Sim::new(48_000, 48_000, 480, 480, 1_000.0);
    sim.sender_speed = 1.0 + ppm * 1e-6;
    sim.jitter_us = 3_000;
    let frame_ms = sim.frame_ms();
    let mut after_warm_up = None;
    let mut worst: f64 = 0.0;
    sim.run_until(seconds, |t, stats, _| {
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
        let error = stats.delay_ms - stats.target_ms;
        worst = worst.max(error.abs());
        assert!(error.abs() <= frame_ms, "at {t:.1} s: {stats:?}");
        assert!(
            stats.depth_ms <= stats.target_ms + frame_ms,
            "at {t:.1} s: {stats:?}"
        );
        // The target itself stays put: drift is not jitter.
        assert!(stats.target_ms < 3.0 * frame_ms, "at {t:.1} s: {stats:?}");
    });
    let stats = sim.jb.stats();
    assert_eq!(stats.concealed_samples, 0, "{stats:?}");
    assert_eq!(stats.underruns, 0, "{stats:?}");
    assert_eq!(stats.dropped_samples, 0, "{stats:?}");
    assert!((stats.drift_ppm - ppm).abs() < 30.0, "{stats:?}");
    eprintln!(
        "{ppm:+} ppm for {seconds} s: worst delay error {worst:.2} ms, learnt {:+.1} ppm, \
         target {:.2} ms, delay {:.2} ms",
        stats.drift_ppm, stats.target_ms, stats.delay_ms
    );
    worst
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an hour of audio: run with --release")]
fn sender_300_ppm_fast_for_an_hour() {
    let worst = drifting_sender(300.0, HOUR);
    assert!(worst < 3.0, "worst delay error {worst:.2} ms");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an hour of audio: run with --release")]
fn sender_300_ppm_slow_for_an_hour() {
    let worst = drifting_sender(-300.0, HOUR);
    assert!(worst < 3.0, "worst delay error {worst:.2} ms");
}

#[test]
fn sender_300_ppm_fast_and_slow_for_a_minute() {
    for ppm in [300.0, -300.0] {
        let worst = drifting_sender(ppm, 60.0);
        assert!(worst < 5.0, "{ppm} ppm: worst delay error {worst:.2} ms");
    }
}
