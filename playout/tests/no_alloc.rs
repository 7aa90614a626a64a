//! The audio thread must never wait on an allocator: taking records, rendering quanta, reading
//! the statistics and starting a stream at a standard rate (a reconnect, the other side's rate
//! change) allocate nothing. A global allocator that aborts on allocation inside
//! `assert_no_alloc` proves it.
#![cfg(not(target_arch = "wasm32"))]

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use line_playout::record::{self, Header};
use line_playout::{Playout, stat};
use line_protocol::testing::Rng;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

const CONTEXT: u32 = 48_000;
/// Frames per stream: one second of 10 ms frames.
const FRAMES: u64 = 100;

/// One second of a stream at `rate` (10 ms frames of a tone at `freq` Hz, its sample count
/// starting again at 0), arriving from `start_us` on, 0-3 ms late.
fn stream(rate: u32, freq: f32, start_us: u64, rng: &mut Rng) -> Vec<(u64, Vec<f32>)> {
    let frame = rate as usize / 100;
    (0..FRAMES)
        .map(|k| {
            let samples: Vec<f32> = (0..frame)
                .map(|n| {
                    let t = (k as usize * frame + n) as f32 / rate as f32;
                    (t * freq * std::f32::consts::TAU).sin() * 0.5
                })
                .collect();
            let arrival_us = start_us + k * 10_000 + rng.next_u64() % 3_000;
            let mut words = Vec::new();
            Header {
                flags: if k == 0 { record::NEW_STREAM } else { 0 },
                rate,
                first_sample: k * frame as u64,
                arrival_us,
                age_us: 5_000,
            }
            .write(&samples, &mut words);
            (arrival_us, words)
        })
        .collect()
}

#[test]
fn records_quanta_and_new_streams_allocate_nothing() {
    let mut rng = Rng::from_env();
    let freq = 300.0 + (rng.next_u64() % 1_000) as f32;
    // 200 kHz on the wire into a 48 kHz context (the sinc path, as in a default call), the same
    // sender reconnected, then a 48 kHz sender (a mobile link), then 200 kHz again.
    let rates = [200_000u32, 200_000, 48_000, 200_000];
    let streams: Vec<_> = rates
        .iter()
        .enumerate()
        .map(|(i, &rate)| stream(rate, freq, i as u64 * 1_000_000, &mut rng))
        .collect();
    let mut playout = Playout::new(CONTEXT);
    let mut out = [0.0f32; 128];
    let mut rendered = 0u64;
    let mut peaks = [0.0f64; 4];
    let mut frames = [0.0f64; 4];
    assert_no_alloc(|| {
        for (i, records) in streams.iter().enumerate() {
            for (arrival_us, r) in records {
                let len = r.len();
                playout.record_scratch()[..len].copy_from_slice(r);
                playout.push_scratch(len, rendered as f64);
                // Render up to 10 ms after this frame arrived.
                while rendered * 1_000_000 < (arrival_us + 10_000) * u64::from(CONTEXT) {
                    playout.render(rendered as f64, &mut out);
                    rendered += 128;
                }
                let _ = playout.stats()[stat::DEPTH_MS];
            }
            let stats = playout.stats();
            peaks[i] = stats[stat::OUTPUT_PEAK];
            frames[i] = stats[stat::FRAME_SAMPLES];
        }
    });
    let stats = playout.stats();
    assert_eq!(stats[stat::RECORDS], 4.0 * FRAMES as f64);
    assert_eq!(stats[stat::BAD_RECORDS], 0.0);
    for (i, rate) in rates.iter().enumerate() {
        assert!(peaks[i] > 0.4, "stream {i} at {rate} Hz played: {peaks:?}");
        assert_eq!(frames[i], f64::from(rate / 100), "stream {i}");
    }
}
