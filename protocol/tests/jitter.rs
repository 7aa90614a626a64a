//! Jitter buffer scenarios on a virtual clock with seeded jitter: steady streams, stalls,
//! reordering, duplicates, losses, and the tone a 200 kHz -> 48 kHz conversion must keep.
#![cfg(feature = "std")]

// The same tests run in headless Chromium: `cargo test -p line-protocol --target wasm32-unknown-unknown`.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod jitter_support;

use jitter_support::{Signal, Sim, follow_sequence, goertzel_amplitude};
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
    let mut settled = None;
    sim.run_until(45.0, |t, stats, _| {
        assert_eq!(stats.correction_ppm, 0.0, "one clock: never resampled");
        if t > 20.0 {
            let settled = *settled.get_or_insert(*stats);
            assert_eq!(stats.edits, settled.edits, "edits once settled at {t:.2} s");
            assert!(
                (stats.delay_ms - stats.target_ms).abs() <= frame_ms,
                "at {t:.2} s mean depth {:.2} ms vs target {:.2} ms",
                stats.delay_ms,
                stats.target_ms
            );
            checked += 1;
        }
    });
    let stats = sim.jb.stats();
    assert!(checked > 5_000);
    assert_eq!(stats.underruns, 0, "{stats:?}");
    assert_eq!(stats.concealed_samples, 0, "{stats:?}");
    assert_eq!(stats.late_packets, 0, "{stats:?}");
    // The start may take a few edits to meet the target the jitter calls for; no more.
    assert!(stats.edits <= 4, "{stats:?}");
    // Low latency: two frames plus the measured jitter, not more.
    assert!(stats.target_ms <= 2.0 * frame_ms + 5.0, "{stats:?}");
    assert!(stats.jitter_ms > 2.0 && stats.jitter_ms < 4.0, "{stats:?}");
}

/// Plays a unique sequence through the buffer at one clock, with network jitter `phases` of
/// (until seconds, jitter us), and checks that every sample played after `warm_up` seconds is
/// the one sent, bit for bit, except across the edits counted meanwhile. Returns those edits.
fn plays_what_was_sent(rate: u32, frame: usize, phases: &[(f64, u64)], warm_up: f64) -> u64 {
    let seed = jitter_support::seed_from_env();
    let seconds = phases.last().expect("a phase").0;
    let mut sim = Sim::new(rate, rate, frame, 128, 1_000.0);
    sim.signal = Signal::Sequence;
    sim.rng = jitter_support::Rng::new(seed);
    let mut played = Vec::with_capacity(((seconds - warm_up) * f64::from(rate)) as usize + 128);
    let mut before = None;
    for &(until, jitter_us) in phases {
        sim.jitter_us = jitter_us;
        if before.is_none() && until > warm_up {
            sim.run_until(warm_up, |_, _, _| {});
            before = Some(sim.jb.stats());
        }
        sim.run_until(until, |t, _, out| {
            if t > warm_up {
                played.extend_from_slice(out);
            }
        });
    }
    let before = before.expect("warm_up before the end");
    let stats = sim.jb.stats();
    assert_eq!(stats.underruns, before.underruns, "{stats:?}");
    assert_eq!(
        stats.concealed_samples, before.concealed_samples,
        "{stats:?}"
    );
    assert_eq!(stats.correction_ppm, 0.0, "{stats:?}");
    let window = rate as usize / 500;
    let reach = i64::from(rate) / 20;
    // The device plays the sender's audio about the target delay after it was said.
    let first = ((warm_up - before.target_ms / 1e3).max(0.0) * f64::from(rate)) as u64;
    let followed = follow_sequence(&played, first, rate, window, reach);
    // Silence before the start, and its fade-in, when the recording starts with the stream.
    let silence = played.iter().position(|v| *v != 0.0).expect("audio played");
    let start = if silence > 0 { silence + window } else { 0 };
    // Each edit is one jump by exactly what it dropped or repeated.
    let edits = stats.edits - before.edits;
    assert_eq!(followed.jumps.len() as u64, edits, "{followed:?} {stats:?}");
    let net: i64 = followed.jumps.iter().map(|(_, n)| n).sum();
    let dropped = stats.dropped_samples - before.dropped_samples;
    let inserted = stats.inserted_samples - before.inserted_samples;
    assert_eq!(
        net,
        dropped as i64 - inserted as i64,
        "{followed:?} {stats:?}"
    );
    // Everything else is the sequence itself, except the 2 ms cross-fade of each edit (and the
    // first samples, until the follower has found the sequence).
    assert!(
        followed.other <= (start + window) as u64 + edits * window as u64,
        "{} samples differ: {silence} of silence before the start, {edits} edits; {stats:?}",
        followed.other,
    );
    assert_eq!(followed.exact + followed.other, played.len() as u64);
    eprintln!(
        "{rate} Hz, jitter {phases:?}: {} of {} samples exact, {edits} edits ({dropped} \
         dropped, {inserted} inserted)",
        followed.exact,
        played.len(),
    );
    edits
}

// Each case is its own test: a browser's page must not block for long on one.
#[test]
fn from_the_first_packet_what_plays_is_what_was_sent() {
    // The start, its edits, and a steady stream.
    plays_what_was_sent(48_000, 480, &[(12.0, 3_000)], 0.0);
}

#[test]
fn as_the_jitter_falls_what_plays_is_what_was_sent_apart_from_edits() {
    // Rough arrivals, then calm: the target falls, and the buffer with it, by edits.
    let edits = plays_what_was_sent(48_000, 480, &[(5.0, 25_000), (22.0, 2_000)], 3.0);
    assert!(edits > 0, "the falling target was met without an edit");
}

#[test]
fn at_200_khz_what_plays_is_what_was_sent() {
    plays_what_was_sent(200_000, 500, &[(6.0, 2_000)], 0.0);
}

#[test]
fn a_rough_start_leaves_no_latency_behind() {
    // The call's first seconds are rough (a browser compiling, a device starting): 40 ms of
    // jitter for 3 s, then 2 ms. The target that grew meanwhile must come back down within
    // seconds, and the buffer with it, without trading the latency for underruns.
    let mut sim = sim_48k();
    sim.jitter_us = 40_000;
    sim.run_until(3.0, |_, _, _| {});
    let rough = sim.jb.stats();
    assert!(rough.target_ms > 40.0, "{rough:?}");
    sim.jitter_us = 2_000;
    let (frame_ms, pull_ms) = (sim.frame_ms(), sim.pull_ms());
    let mut worst_after: f64 = 0.0;
    sim.run_until(25.0, |t, stats, _| {
        if t > 20.0 {
            worst_after = worst_after.max(stats.delay_ms);
        }
    });
    let stats = sim.jb.stats();
    // Floor: jitter + frame + pull + 2 ms; the delay holds it within a frame.
    let floor = stats.jitter_ms + frame_ms + pull_ms + 2.0;
    assert!((stats.target_ms - floor).abs() < 0.5, "{stats:?}");
    assert!(
        worst_after <= floor + frame_ms,
        "delay {worst_after} ms: {stats:?}"
    );
    assert_eq!(
        stats.underruns, rough.underruns,
        "no underrun once calm: {stats:?}"
    );
    // What the drift loop could not drain in time was dropped, and that is all.
    assert!(stats.dropped_samples > rough.dropped_samples, "{stats:?}");
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

#[test]
fn tone_200k_to_200k_keeps_its_amplitude_up_to_15_khz() {
    // Same rate: the drift trim's cubic interpolation must stay flat across the audible band.
    for tone in [1_000.0, 15_000.0] {
        let mut sim = Sim::new(200_000, 200_000, 2_000, 128, tone);
        sim.sender_speed = 1.0 + 200e-6; // a trim is always in use
        let mut recorded = Vec::with_capacity(200_000);
        sim.run_until(2.0, |t, _, out| {
            if t > 1.0 {
                recorded.extend_from_slice(out);
            }
        });
        assert_eq!(sim.jb.stats().concealed_samples, 0);
        for window in recorded.chunks_exact(20_000) {
            // The trim shifts the pitch by up to 2000 ppm: take the strongest bin near the tone.
            let amplitude = (-20..=20)
                .map(|k| goertzel_amplitude(window, 200_000.0, tone * (1.0 + f64::from(k) * 1e-4)))
                .fold(0.0, f64::max);
            assert!(
                (amplitude - 0.5).abs() < 0.005,
                "{tone} Hz: amplitude {amplitude}"
            );
        }
    }
}

#[test]
fn stall_then_burst_catches_up_within_a_second() {
    let mut sim = sim_48k();
    sim.jitter_us = 2_000;
    // Everything sent between 10 s and 10.5 s arrives at once when the network recovers.
    sim.stall = Some((10_000_000, 10_500_000));
    let frame_ms = sim.frame_ms();
    let pull_ms = sim.pull_ms();
    let burst_s = 10.5 + sim.base_delay_us as f64 / 1e6;
    let mut before = None;
    let mut peak_depth: f64 = 0.0;
    sim.run_until(20.0, |t, stats, _| {
        if t < 10.0 {
            before = Some(*stats);
        }
        peak_depth = peak_depth.max(stats.depth_ms);
        if t > burst_s + 1.0 {
            assert!(
                stats.depth_ms <= stats.target_ms + frame_ms + pull_ms,
                "still late at {t:.2} s: {stats:?}"
            );
            // The target shrinks faster than the drift loop drains the buffer; the buffer
            // drops the rest once it lags by a frame (checked here at pull granularity).
            assert!(
                stats.delay_ms - stats.target_ms <= frame_ms + pull_ms
                    && stats.target_ms - stats.delay_ms <= frame_ms,
                "at {t:.2} s: {stats:?}"
            );
        }
    });
    let before = before.expect("ran past 10 s");
    let stats = sim.jb.stats();
    assert_eq!(before.underruns, 0, "{before:?}");
    // Before the stall, nothing but the few edits that brought the delay to its target.
    assert!(before.edits <= 4, "{before:?}");
    assert!(before.dropped_samples <= before.edits * 480, "{before:?}");
    assert_eq!(stats.underruns, 1, "one stall, one underrun: {stats:?}");
    // Nearly the whole half second was dropped to get back to the target.
    let dropped_ms = stats.dropped_samples as f64 / 48.0;
    assert!(
        dropped_ms > 400.0 && dropped_ms < 500.0,
        "dropped {dropped_ms} ms: {stats:?}"
    );
    assert!(
        stats.concealed_samples > 0 && stats.concealment_events == 1,
        "{stats:?}"
    );
    assert!(
        peak_depth < 100.0,
        "the burst never played late: peak {peak_depth} ms"
    );
    // The target grew by one frame for the underrun and shrinks back when calm.
    assert!(stats.target_ms <= before.target_ms + frame_ms, "{stats:?}");
}

#[test]
fn reordered_and_duplicated_packets_play_in_order() {
    let mut sim = sim_48k();
    // Up to 2.5 frames of jitter: packets overtake each other all the time.
    sim.jitter_us = 25_000;
    sim.duplicate = 0.1;
    let mut warm = None;
    let mut recorded = Vec::new();
    sim.run_until(30.0, |t, stats, out| {
        if t > 5.0 {
            let warm = *warm.get_or_insert(*stats);
            assert_eq!(
                stats.concealed_samples, warm.concealed_samples,
                "at {t:.2} s: {stats:?}"
            );
            assert_eq!(
                stats.late_packets, warm.late_packets,
                "at {t:.2} s: {stats:?}"
            );
            if recorded.len() < 48_000 {
                recorded.extend_from_slice(out);
            }
        }
    });
    let stats = sim.jb.stats();
    assert!(sim.sent_duplicates > 200);
    assert_eq!(stats.duplicate_packets, sim.sent_duplicates, "{stats:?}");
    assert!(
        stats.target_ms > 25.0,
        "the target followed the jitter: {stats:?}"
    );
    for window in recorded.chunks_exact(960) {
        let amplitude = goertzel_amplitude(window, 48_000.0, 1_000.0);
        assert!((amplitude - 0.5).abs() < 0.005, "amplitude {amplitude}");
    }
}

#[test]
fn lost_packets_are_concealed_and_counted() {
    let mut sim = sim_48k();
    sim.jitter_us = 2_000;
    sim.lose_every = Some(50);
    sim.run_until(20.0, |_, _, _| {});
    let stats = sim.jb.stats();
    assert!(sim.lost >= 39, "lost {}", sim.lost);
    // Frame 0 is lost before anything played: the stream simply starts at frame 1.
    let gaps = sim.lost - 1;
    let in_flight = u64::from(stats.received_packets < 1_999);
    assert!(stats.concealment_events + in_flight >= gaps, "{stats:?}");
    assert!(stats.concealment_events <= gaps, "{stats:?}");
    // A loss at the very end of what arrived looks like the buffer running dry until the next
    // packet comes: with a two-frame target that happens once, then the target has grown.
    assert!(stats.underruns <= 1, "{stats:?}");
    let gap_samples = stats.concealment_events * 480;
    assert!(stats.concealed_samples >= gap_samples, "{stats:?}");
    assert!(
        stats.concealed_samples <= gap_samples + stats.underruns * 480,
        "{stats:?}"
    );
    assert_eq!(stats.late_packets, 0, "{stats:?}");
}

/// Pushes 10 ms frames of a constant level at 48 kHz, and pulls as they arrive.
fn constant_frames(jb: &mut JitterBuffer, frames: std::ops::Range<u64>, level: f32) {
    let frame = vec![level; 480];
    let mut out = [0.0; 480];
    for i in frames {
        jb.push(i * 10_000, i * 480, &frame);
        jb.pull(i * 10_000, &mut out);
    }
}

#[test]
fn a_gap_repeats_then_fades_and_late_packet_is_counted() {
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000, 48_000, 480)).expect("valid");
    let frame = vec![0.5f32; 480];
    let mut out = vec![0.0; 480];
    let mut played = Vec::new();
    for i in 0..40u64 {
        // Frame 20 never comes in time.
        if i != 20 {
            jb.push(i * 10_000, i * 480, &frame);
        }
        jb.pull(i * 10_000, &mut out);
        played.extend_from_slice(&out);
    }
    jb.push(400_000, 20 * 480, &frame);
    let stats = jb.stats();
    assert_eq!(stats.late_packets, 1, "{stats:?}");
    assert_eq!(stats.concealment_events, 1, "{stats:?}");
    assert_eq!(stats.concealed_samples, 480, "{stats:?}");
    assert_eq!(stats.underruns, 0, "{stats:?}");
    // Where the gap played, the level fades from the repeated 0.5 towards silence and comes back.
    let dip = played
        .iter()
        .enumerate()
        .skip(48_00)
        .fold(
            (0, f32::MAX),
            |m, (i, v)| if *v < m.1 { (i, *v) } else { m },
        );
    assert!(dip.1 > 0.2 && dip.1 < 0.45, "deepest point {dip:?}");
    assert!((played[played.len() - 1] - 0.5).abs() < 1e-3);
    assert!(
        played.windows(2).all(|w| (w[1] - w[0]).abs() < 0.01),
        "no clicks"
    );
}

#[test]
fn concealing_a_tone_does_not_click() {
    // 1234.5 Hz is not periodic in 10 ms, so a plain repetition would jump at each junction.
    let tone =
        |n: u64| (0.5 * (2.0 * std::f64::consts::PI * 1234.5 * n as f64 / 48_000.0).sin()) as f32;
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000, 48_000, 480)).expect("valid");
    let mut out = vec![0.0; 480];
    let mut played = Vec::new();
    for i in 0..60u64 {
        let frame: Vec<f32> = (i * 480..(i + 1) * 480).map(tone).collect();
        if i != 30 && i != 40 && i != 41 {
            jb.push(i * 10_000, i * 480, &frame);
        }
        jb.pull(i * 10_000, &mut out);
        played.extend_from_slice(&out);
    }
    let stats = jb.stats();
    assert_eq!(stats.concealment_events, 2, "{stats:?}");
    // The steepest a 0.5 amplitude 1234.5 Hz sine moves between samples is 0.081.
    let steepest = played
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max);
    assert!(steepest < 0.1, "a step of {steepest}");
}

#[test]
fn silence_before_the_first_packet_and_any_pull_size() {
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000, 48_000, 480)).expect("valid");
    let mut out = vec![1.0; 1_000];
    jb.pull(0, &mut out);
    assert!(out.iter().all(|v| *v == 0.0));
    assert_eq!(jb.stats().underruns, 0);
    jb.push(0, 0, &[]);
    assert_eq!(jb.stats().received_packets, 0);
    // A whole second arrives, then one pull takes half of it at once.
    let frame = vec![0.5f32; 480];
    for i in 0..100u64 {
        jb.push(1_000_000, i * 480, &frame);
    }
    let mut big = vec![0.0; 24_000];
    jb.pull(1_000_000, &mut big);
    let stats = jb.stats();
    assert_eq!(stats.underruns, 0, "{stats:?}");
    assert!((big[23_999] - 0.5).abs() < 1e-3, "{}", big[23_999]);
}

#[test]
fn sender_restarting_its_count_resyncs() {
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000, 48_000, 480)).expect("valid");
    constant_frames(&mut jb, 1_000..1_500, 0.5);
    let frame = vec![0.25f32; 480];
    let mut out = [0.0; 480];
    for i in 0..100u64 {
        jb.push(5_000_000 + i * 10_000, i * 480, &frame);
        jb.pull(5_000_000 + i * 10_000, &mut out);
    }
    let stats = jb.stats();
    assert_eq!(stats.resyncs, 1, "{stats:?}");
    assert_eq!(stats.late_packets, 2, "{stats:?}");
    assert!((out[479] - 0.25).abs() < 1e-3, "{}", out[479]);
}

#[test]
fn same_rate_and_200k_paths_keep_a_tone() {
    for (wire, output, frame) in [
        (48_000, 48_000, 480),
        (200_000, 200_000, 2_000),
        (48_000, 44_100, 480),
    ] {
        let mut sim = Sim::new(wire, output, frame, 128, 1_000.0);
        let mut recorded = Vec::new();
        sim.run_until(1.5, |t, _, out| {
            if t > 1.0 {
                recorded.extend_from_slice(out);
            }
        });
        // A tenth of a second: whole periods of 1 kHz at every rate here.
        let window = output as usize / 10;
        let amplitude = goertzel_amplitude(&recorded[..window], f64::from(output), 1_000.0);
        assert!(
            (amplitude - 0.5).abs() < 0.005,
            "{wire} -> {output}: amplitude {amplitude}"
        );
    }
}

#[test]
fn hostile_sample_indices_do_not_panic() {
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000, 48_000, 480)).expect("valid");
    let frame = [0.5f32; 480];
    let mut out = [0.0f32; 128];
    for (i, first) in [
        0,
        u64::MAX - 100,
        u64::MAX,
        1 << 63,
        5,
        u64::MAX / 2,
        0,
        480,
        960,
    ]
    .into_iter()
    .enumerate()
    {
        jb.push(i as u64 * 10_000, first, &frame);
        jb.pull(i as u64 * 10_000, &mut out);
    }
    assert!(out.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    // After all that, a plain stream plays again.
    constant_frames(&mut jb, 2_000..2_100, 0.25);
    let mut out = [0.0f32; 480];
    jb.pull(21_000_000, &mut out);
    assert!((out[479] - 0.25).abs() < 1e-3, "{}", out[479]);
    jb.reset();
    constant_frames(&mut jb, 0..50, 0.125);
    jb.pull(500_000, &mut out);
    assert!((out[479] - 0.125).abs() < 1e-3, "{}", out[479]);
}

#[test]
fn bad_configurations_are_refused() {
    let refused = |c: JitterConfig| JitterBuffer::new(c).map(|_| ()).unwrap_err();
    assert_eq!(
        refused(JitterConfig::new(0, 48_000, 480)),
        JitterConfigError::WireRate(0)
    );
    assert_eq!(
        refused(JitterConfig::new(48_000, 1_000_000, 480)),
        JitterConfigError::OutputRate(1_000_000)
    );
    assert_eq!(
        refused(JitterConfig::new(48_000, 48_000, 0)),
        JitterConfigError::FrameSamples(0)
    );
    assert_eq!(
        refused(JitterConfig::new(48_000, 48_000, 48_000)),
        JitterConfigError::FrameSamples(48_000)
    );
    let mut small = JitterConfig::new(48_000, 48_000, 480);
    small.capacity_ms = 100;
    assert_eq!(refused(small), JitterConfigError::Capacity(100));
    let mut tight = JitterConfig::new(48_000, 48_000, 4_800);
    tight.max_target_ms = 150;
    assert_eq!(refused(tight), JitterConfigError::MaxTarget(150));
    assert_eq!(
        JitterConfigError::WireRate(0).to_string(),
        "wire sample rate 0 Hz is outside 8000..=384000"
    );
}

#[test]
fn what_is_held_ahead_of_a_packet_is_what_plays_before_it() {
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000, 48_000, 480)).expect("a good config");
    let frame = vec![0.25f32; 480];
    let mut out = [0.0f32; 128];
    for i in 0..50u64 {
        jb.push(i * 10_000, i * 480, &frame);
        for k in 0..4 {
            jb.pull(i * 10_000 + k * 2_500, &mut out[..120]);
        }
    }
    let stats = jb.stats();
    assert_eq!(stats.underruns, 0, "{stats:?}");
    // Right after a pull, what is held ahead of the next packet is the depth, plus the few
    // samples inside the rate converter.
    let end = 50 * 480;
    let lag = jb.held_before(end) - stats.depth_ms / 1e3;
    assert!((0.0..0.001).contains(&lag), "{lag} s beyond {stats:?}");
    // A packet after a missing one waits for the gap too, concealed or filled.
    assert!((jb.held_before(end + 480) - jb.held_before(end) - 0.01).abs() < 1e-9);
    // A sample that already played would have waited that much less: it played 0.5 s ago.
    assert!((jb.held_before(end) - jb.held_before(0) - 0.5).abs() < 1e-9);
}
