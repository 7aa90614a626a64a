//! A device that renders in 10 ms bursts (as Chromium does above 64 kHz, and any device with a
//! large buffer): the worker dates arrivals on its own clock and maps them to the audio clock
//! with [`ClockMap`], so the jitter buffer running per quantum still measures the other side's
//! clock drift, and finds none where there is none. Dated by the quantum that takes them,
//! arrivals would step in bursts and the drift fit would not find the slope.

use line_playout::record::{self, Header};
use line_playout::{ClockMap, Playout, stat};
use line_protocol::testing::{Rng, seed_from_env};

const RATE: u32 = 48_000;
const FRAME: usize = 480;
const QUANTUM: usize = 128;
const BURST_US: u64 = 10_000;

/// Runs `seconds` with the sender's clock `ppm` fast; returns the playout's statistics.
fn call(ppm: f64, seconds: u64, seed: u64, mapped: bool) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut playout = Playout::new(RATE);
    let mut map = ClockMap::default();
    // Frames in flight: (arrival on the worker's clock, first sample).
    let mut next_frame = 0u64;
    let frame_us = FRAME as f64 * 1e6 / f64::from(RATE) / (1.0 + ppm * 1e-6);
    let mut queue: Vec<Vec<f32>> = Vec::new();
    let mut rendered = 0u64;
    let mut out = [0.0f32; QUANTUM];
    let mut words = Vec::new();
    let tone: Vec<f32> = (0..FRAME).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let mut t = 0u64;
    let mut first = true;
    while t < seconds * 1_000_000 {
        let burst_end = t + BURST_US;
        // Frames that arrive before this burst: sent on the sender's clock, 5-8 ms on the way,
        // stamped by the worker when it decrypts them.
        loop {
            let sent = next_frame as f64 * frame_us;
            let arrival = (sent + 5_000.0 + 3_000.0 * rng.unit()) as u64;
            if arrival > t {
                break;
            }
            let (flags, arrival_us) = match map.to_audio_us(arrival).filter(|_| mapped) {
                Some(a) => (0, a),
                None => (record::NO_CLOCK, 0),
            };
            let header = Header {
                flags: flags | if first { record::NEW_STREAM } else { 0 },
                rate: RATE,
                first_sample: next_frame * FRAME as u64,
                arrival_us,
                age_us: 6_000,
            };
            first = false;
            header.write(&tone, &mut words);
            queue.push(words.clone());
            next_frame += 1;
        }
        // The burst: every quantum up to the burst's end at once, the records taken by the first.
        let mut taken = false;
        while (rendered + QUANTUM as u64) * 1_000_000 / u64::from(RATE) <= burst_end {
            if !taken {
                for r in queue.drain(..) {
                    playout.push(&r, rendered as f64);
                }
                taken = true;
            }
            playout.render(rendered as f64, &mut out);
            rendered += QUANTUM as u64;
        }
        // The worker reads the processor's report 0.2-2.7 ms after the burst.
        let wake = t + 200 + (2_500.0 * rng.unit()) as u64;
        map.observe(wake, playout.stats()[stat::RENDERED], f64::from(RATE));
        t = burst_end;
    }
    playout.stats().to_vec()
}

/// Drifts as far as real devices go (a few hundred ppm), either way.
const MAX_PPM: f64 = 400.0;

#[test]
fn drift_is_found_through_a_bursty_device() {
    let seed = seed_from_env();
    let mut draw = Rng::new(seed ^ 0xd71f7);
    for _ in 0..3 {
        let ppm = ((2.0 * draw.unit() - 1.0) * MAX_PPM).round();
        let s = call(ppm, 120, seed, true);
        eprintln!(
            "{ppm:+} ppm: measured {:+.1} ± {:.1}, playing at {:+.1}, underruns {}, edits {}, target {:.1} ms",
            s[stat::DRIFT_PPM],
            s[stat::DRIFT_ERROR_PPM],
            s[stat::CORRECTION_PPM],
            s[stat::UNDERRUNS],
            s[stat::EDITS],
            s[stat::TARGET_MS]
        );
        assert!((s[stat::DRIFT_PPM] - ppm).abs() < 15.0, "{ppm}: {s:?}");
        assert!((s[stat::CORRECTION_PPM] - ppm).abs() < 25.0, "{ppm}: {s:?}");
        assert_eq!(s[stat::BAD_RECORDS], 0.0);
    }
}

#[test]
fn no_drift_is_found_where_there_is_none() {
    let s = call(0.0, 120, seed_from_env(), true);
    eprintln!(
        "0 ppm: measured {:+.1} ± {:.1}, underruns {}",
        s[stat::DRIFT_PPM],
        s[stat::DRIFT_ERROR_PPM],
        s[stat::UNDERRUNS]
    );
    assert!(s[stat::DRIFT_PPM].abs() < 10.0, "{s:?}");
    assert_eq!(s[stat::CORRECTION_PPM], 0.0, "{s:?}");
}

/// The pitfall the map avoids: the same call with arrivals dated by the quantum that takes them
/// reads no drift (the fit's points sit on the bursts' steps), so a clear drift goes unseen.
#[test]
fn dated_by_the_bursts_the_drift_is_lost() {
    let seed = seed_from_env();
    let mut draw = Rng::new(seed ^ 0xd71f7);
    let sign = if draw.unit() < 0.5 { -1.0 } else { 1.0 };
    let ppm = (sign * (100.0 + draw.unit() * (MAX_PPM - 100.0))).round();
    let s = call(ppm, 120, seed, false);
    eprintln!(
        "{ppm:+} ppm dated by quanta: measured {:+.1} ± {:.1}, playing at {:+.1}",
        s[stat::DRIFT_PPM],
        s[stat::DRIFT_ERROR_PPM],
        s[stat::CORRECTION_PPM]
    );
    assert!((s[stat::DRIFT_PPM] - ppm).abs() > 25.0, "{ppm}: {s:?}");
}
