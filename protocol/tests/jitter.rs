//! Jitter buffer scenarios on a virtual clock with seeded jitter: steady streams, stalls,
//! reordering, duplicates, losses, and the tone a 200 kHz -> 48 kHz conversion must keep.

mod jitter_support;

use jitter_support::{Sim, goertzel_amplitude};
use line_protocol::jitter::{JitterBuffer, JitterConfig, JitterConfigError};

/// 10 ms frames at 48 kHz, pulled in Web Audio render quanta of 128 samples.
fn sim_48k() -> Sim {
    Sim::new(48_000, 48_000, 480, 128, 1_000.0)
}

#[test]
fn steady_stream_never_underruns_and_holds_the_target() {
    let mut sim = sim_48k();
    sim.jitter_us = 4_000;
    let frame_ms = sim.frame_ms();
    let mut checked = 0;
    sim.run_until(60.0, |t, stats, _| {
        if t > 30.0 {
            assert!(
                (stats.mean_depth_ms - stats.target_ms).abs() <= frame_ms,
                "at {t:.2} s mean depth {:.2} ms vs target {:.2} ms",
                stats.mean_depth_ms,
                stats.target_ms
            );
            checked += 1;
        }
    });
    let stats = sim.jb.stats();
    assert!(checked > 5_000);
    assert_eq!(stats.underruns, 0, "{stats:?}");
    assert_eq!(stats.concealed_samples, 0, "{stats:?}");
    assert_eq!(stats.dropped_samples, 0, "{stats:?}");
    assert_eq!(stats.late_packets, 0, "{stats:?}");
    // Low latency: two frames plus the measured jitter, not more.
    assert!(stats.target_ms <= 2.0 * frame_ms + 5.0, "{stats:?}");
    assert!(stats.jitter_ms > 2.0 && stats.jitter_ms < 4.0, "{stats:?}");
}

#[test]
fn tone_200k_to_48k_keeps_its_amplitude() {
    let mut sim = Sim::new(200_000, 48_000, 2_000, 128, 1_000.0);
    let mut recorded = Vec::with_capacity(48_000);
    sim.run_until(2.0, |t, _, out| {
        if t > 1.0 {
            recorded.extend_from_slice(out);
        }
    });
    let stats = sim.jb.stats();
    assert_eq!(stats.concealed_samples, 0, "{stats:?}");
    for window in recorded.chunks_exact(4_800) {
        let amplitude = goertzel_amplitude(window, 48_000.0, 1_000.0);
        assert!((amplitude - 0.5).abs() < 0.005, "amplitude {amplitude}");
    }
}
