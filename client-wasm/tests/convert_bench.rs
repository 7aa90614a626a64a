//! What the rate conversions cost a browser, compiled to wasm32 and run in headless Chromium:
//! a second of 200 kHz audio in each direction, for a context at the wire rate (no conversion,
//! the jitter buffer only trims the speed) against one at the device's rate (the jitter buffer's
//! sinc down to 48 or 44.1 kHz, the capture side's sinc up to 200 kHz).
//!
//! Ignored by default, because only an optimized build says anything:
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-client --release --target wasm32-unknown-unknown --test convert_bench -- --include-ignored --nocapture`
//!
//! It ends with a table: milliseconds of CPU per second of audio (the best of several rounds,
//! and the median), which is also the percentage of one core the path takes.
#![cfg(target_arch = "wasm32")]

use line_client::resample::Resampler;
use line_protocol::jitter::{JitterBuffer, JitterConfig};
use wasm_bindgen::JsCast as _;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const WIRE: u32 = 200_000;
/// Rounds of each row; the first warms up and is not counted.
const ROUNDS: usize = 9;

fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .expect("the global scope has `performance`")
        .unchecked_into::<web_sys::Performance>()
        .now()
}

/// One row of the table: its name and one second of audio through its path.
type Row = (&'static str, Box<dyn FnMut()>);

/// Playback: a second of 200 kHz frames pushed, pulled at `output` Hz in render quanta.
fn playback(output: u32) -> impl FnMut() {
    let frame = WIRE as usize / 100;
    let mut jb = JitterBuffer::new(JitterConfig::new(WIRE, output, frame)).expect("valid");
    let samples: Vec<f32> = (0..frame).map(|n| (n as f32 * 0.01).sin() * 0.5).collect();
    let mut out = vec![0.0f32; output as usize / 100];
    let mut i = 0u64;
    move || {
        for _ in 0..100 {
            jb.push(i * 10_000, i * frame as u64, &samples);
            jb.pull(i * 10_000, &mut out);
            i += 1;
        }
        assert_eq!(jb.stats().underruns, 0);
    }
}

/// Capture: a second at `context` Hz, in render quanta, converted to 200 kHz.
fn capture(context: u32) -> impl FnMut() {
    let mut r = Resampler::new(context, WIRE);
    let quantum: Vec<f32> = (0..128).map(|n| (n as f32 * 0.05).sin() * 0.5).collect();
    let mut out = Vec::with_capacity(2 * WIRE as usize / 100);
    move || {
        for _ in 0..context as usize / 128 {
            r.process(&quantum, &mut out);
            if out.len() >= WIRE as usize / 100 {
                out.clear();
            }
        }
    }
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it optimised, with --include-ignored"]
fn conversions_per_second_of_audio() {
    let mut rows: Vec<Row> = vec![
        ("playback 200 kHz -> 200 kHz", Box::new(playback(200_000))),
        ("playback 200 kHz -> 48 kHz", Box::new(playback(48_000))),
        ("playback 200 kHz -> 44.1 kHz", Box::new(playback(44_100))),
        (
            "capture 200 kHz (no conversion)",
            Box::new(capture(200_000)),
        ),
        ("capture 48 kHz -> 200 kHz", Box::new(capture(48_000))),
        ("capture 44.1 kHz -> 200 kHz", Box::new(capture(44_100))),
    ];
    let mut times = vec![Vec::new(); rows.len()];
    for round in 0..ROUNDS {
        // The rows take turns, so a burst of load from another process hits them all alike.
        for (k, (_, run)) in rows.iter_mut().enumerate() {
            let start = now_ms();
            run();
            if round > 0 {
                times[k].push(now_ms() - start);
            }
        }
    }
    console_log!("| path | ms of CPU per s of audio, best | median |");
    console_log!("|---|---|---|");
    for ((name, _), t) in rows.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        console_log!("| {name} | {:.2} | {:.2} |", t[0], t[t.len() / 2]);
    }
}
