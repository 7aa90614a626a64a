//! The sender's sound card 300 ppm fast, then 300 ppm slow, for one simulated hour each: once
//! the drift is measured, the buffer plays at exactly the clocks' ratio (within 20 ppm), never
//! runs dry, never edits the audio, and holds its delay at the target. Until then (the
//! first 45 s at most) it keeps the delay with a few edits.
//!
//! An hour is 173 million samples through the resampler: seconds when optimised, minutes
//! without. So the hour-long runs are skipped in unoptimised builds; run them with
//! `cargo test -p line-protocol --release --test jitter_drift`. A one-minute run of the same
//! checks always runs.
#![cfg(feature = "std")]

// The same tests run in headless Chromium: `cargo test -p line-protocol --target wasm32-unknown-unknown`.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod jitter_support;

use jitter_support::Sim;

const HOUR: f64 = 3_600.0;
/// Time to measure the drift (30 s of points) and slew the correction to it.
const WARM_UP: f64 = 45.0;

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
        assert_eq!(stats.edits, baseline.edits, "edit at {t:.1} s: {stats:?}");
        assert!(
            (stats.correction_ppm - ppm).abs() <= 20.0,
            "playing at {:+.1} ppm at {t:.1} s against {ppm:+} ppm of drift: {stats:?}",
            stats.correction_ppm
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
    // Before the drift is known, the delay drifts too, and a few edits keep it on target.
    assert!(stats.edits <= 8, "{stats:?}");
    assert!((stats.drift_ppm - ppm).abs() < 20.0, "{stats:?}");
    eprintln!(
        "{ppm:+} ppm for {seconds} s: worst delay error {worst:.2} ms, measured {:+.1} ± {:.1} \
         ppm, playing at {:+.1} ppm, {} edits, target {:.2} ms, delay {:.2} ms",
        stats.drift_ppm,
        stats.drift_error_ppm,
        stats.correction_ppm,
        stats.edits,
        stats.target_ms,
        stats.delay_ms
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
        let worst = drifting_sender(ppm, 75.0);
        assert!(worst < 5.0, "{ppm} ppm: worst delay error {worst:.2} ms");
    }
}

/// Two devices on one clock, and ours now and then late to pull (a busy machine: its playback
/// ring runs dry for under a millisecond, too little to stand out as a step). Each gap delays
/// the rest of the call a little more; announced, the gaps are steps of known size, so the
/// delay they add is never taken for the sender's clock running fast: the audio is never
/// resampled, the edits take the delay back to the target.
#[test]
fn a_device_that_loses_time_now_and_then_is_not_a_drifting_clock() {
    let seed = jitter_support::seed_from_env();
    let mut rng = jitter_support::Rng::new(seed);
    let mut sim = Sim::new(48_000, 48_000, 480, 480, 1_000.0);
    sim.jitter_us = 3_000;
    sim.rng = jitter_support::Rng::new(seed ^ 0x9e37_79b9);
    let (mut next_gap, mut lost) = (5.0, 0u64);
    let mut worst_correction: f64 = 0.0;
    while sim.now_us() < 120_000_000 {
        let stats = sim.step();
        let t = sim.now_us() as f64 / 1e6;
        worst_correction = worst_correction.max(stats.correction_ppm.abs());
        if t >= next_gap {
            // 0.2-1.2 ms, every 2-6 s: hundreds of ppm if it were read as drift.
            let samples = 10 + (rng.unit() * 48.0) as u64;
            sim.device_gap(samples);
            lost += samples;
            next_gap = t + 2.0 + 4.0 * rng.unit();
        }
    }
    let stats = sim.jb.stats();
    eprintln!(
        "seed {seed}: {lost} samples of gaps in 120 s, measured {:+.1} ± {:.1} ppm, \
         {} edits, delay {:.2} ms, target {:.2} ms",
        stats.drift_ppm, stats.drift_error_ppm, stats.edits, stats.delay_ms, stats.target_ms
    );
    assert!(
        lost > 48_000 / 1_000 * 10,
        "the run lost {lost} samples: too few to mean anything"
    );
    assert_eq!(worst_correction, 0.0, "seed {seed}: resampled: {stats:?}");
    assert!(stats.drift_ppm.abs() < 20.0, "seed {seed}: {stats:?}");
    assert!(stats.underruns == 0, "seed {seed}: {stats:?}");
    assert!(
        (stats.delay_ms - stats.target_ms).abs() < 2.0 * sim.frame_ms(),
        "seed {seed}: the delay was not brought back: {stats:?}"
    );
}

/// Two programs on one clock, ours playing from a coarse timer: a tick every 2.5 ms on a
/// millisecond clock, pulling whatever is due, and on a busy machine (for seconds at a time)
/// firing up to 1.5 ms late. The best-timed pull of a second is then now a millisecond early,
/// now not, for seconds at a time; none of that is drift: the estimate stays near zero, sure
/// of it, and the audio is never resampled.
#[test]
fn a_device_on_a_coarse_timer_is_not_a_drifting_clock() {
    let seed = jitter_support::seed_from_env();
    let mut rng = jitter_support::Rng::new(seed);
    let mut sim = Sim::new(48_000, 48_000, 960, 120, 1_000.0);
    sim.jitter_us = 2_000;
    sim.rng = jitter_support::Rng::new(seed ^ 0x9e37_79b9);
    const TICK_US: u64 = 2_500;
    let (mut tick, mut busy, mut regime_end) = (0u64, false, 0u64);
    let mut worst_correction: f64 = 0.0;
    let mut stats = sim.jb.stats();
    while tick * TICK_US < 120_000_000 {
        let nominal = tick * TICK_US;
        if nominal >= regime_end {
            busy = rng.unit() < 0.5;
            regime_end = nominal + 1_000_000 + (rng.unit() * 7e6) as u64;
        }
        let late = if busy {
            (rng.unit() * 1_500.0) as u64
        } else {
            0
        };
        // The timer fires on the next millisecond at or after its time.
        let fired = (nominal + late).div_ceil(1_000) * 1_000;
        stats = sim.pull_due(fired);
        worst_correction = worst_correction.max(stats.correction_ppm.abs());
        tick += 1;
    }
    eprintln!(
        "seed {seed}: measured {:+.1} ± {:.1} ppm, {} edits, {} underruns, delay {:.2} ms, \
         target {:.2} ms",
        stats.drift_ppm,
        stats.drift_error_ppm,
        stats.edits,
        stats.underruns,
        stats.delay_ms,
        stats.target_ms
    );
    assert_eq!(worst_correction, 0.0, "seed {seed}: resampled: {stats:?}");
    // The delay envelope scatters by a fraction of a millisecond from one point to the next, not
    // by the timer's millisecond: the fit is sure of its zero to well under a ppm.
    assert!(stats.drift_ppm.abs() < 2.0, "seed {seed}: {stats:?}");
    assert!(stats.drift_error_ppm < 0.5, "seed {seed}: {stats:?}");
}
