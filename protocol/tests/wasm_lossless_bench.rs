//! The lossless coder in headless Chromium: encode and decode of one 10 ms frame at 200 kHz and at
//! 48 kHz, compiled to wasm32, for the CPU a browser would spend on it.
//!
//! Ignored by default, because only an optimized build says anything:
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --release --target wasm32-unknown-unknown --test wasm_lossless_bench -- --include-ignored --nocapture`
//!
//! Each row cycles through [`FRAMES`] frames of its signal, fresh random parameters each, and
//! prints the best and the median of its rounds, microseconds per frame, and the share of one
//! core the best takes at 100 frames a second. The seed is fixed (a browser has no environment
//! to take `LINE_TEST_SEED` from), so runs on different commits code the same frames.
#![cfg(target_arch = "wasm32")]

use line_protocol::lossless::signals::{Kind, generate};
use line_protocol::lossless::{decode, encode};
use line_protocol::testing::Rng;
use wasm_bindgen::JsCast as _;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Frames of each signal, each with its own random parameters.
const FRAMES: usize = 16;
/// The seed of every run.
const SEED: u64 = 1;
/// Rounds of each row; the first warms up and is not counted.
const ROUNDS: usize = 21;
/// How long each round runs.
const SLICE_MS: f64 = 50.0;

/// The browser's high-resolution clock, in milliseconds.
fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .expect("the global scope has `performance`")
        .unchecked_into::<web_sys::Performance>()
        .now()
}

/// Microseconds per call of `step`, over one round.
fn round_us(step: &mut impl FnMut()) -> f64 {
    let start = now_ms();
    let mut count = 0u32;
    loop {
        step();
        count += 1;
        let elapsed = now_ms() - start;
        if elapsed >= SLICE_MS {
            return elapsed * 1000.0 / f64::from(count);
        }
    }
}

fn report(what: &str, mut step: impl FnMut()) {
    let mut rounds: Vec<f64> = (0..ROUNDS).map(|_| round_us(&mut step)).skip(1).collect();
    rounds.sort_by(f64::total_cmp);
    let (best, median) = (rounds[0], rounds[rounds.len() / 2]);
    console_log!(
        "| {what} | {best:.1} / {median:.1} us | {:.2} % of a core |",
        best / 100.0
    );
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it with --release --include-ignored"]
fn lossless_10ms_frames() {
    let mut rng = Rng::new(SEED);
    console_log!("seed {SEED}, {FRAMES} frames a row");
    for (kind, rate) in [
        (Kind::UpsampledNoise, 200_000u32),
        (Kind::NoisyTone, 200_000),
        (Kind::UpsampledNoise, 48_000),
    ] {
        let n = rate as usize / 100;
        let frames: Vec<Vec<i16>> = (0..FRAMES)
            .map(|_| generate(kind, &mut rng, n, rate))
            .collect();
        let coded: Vec<Vec<u8>> = frames
            .iter()
            .map(|samples| {
                let mut coded = Vec::with_capacity(3 + 2 * n);
                encode(samples, &mut coded);
                coded
            })
            .collect();
        let ratio = coded.iter().map(Vec::len).sum::<usize>() as f64 / (2 * n * FRAMES) as f64;
        let mut out = Vec::with_capacity(3 + 2 * n);
        let mut back = Vec::with_capacity(n);
        let mut next = 0;
        report(
            &format!("encode {kind:?} {rate} Hz (ratio {ratio:.3})"),
            || {
                out.clear();
                encode(std::hint::black_box(&frames[next % FRAMES]), &mut out);
                next += 1;
            },
        );
        report(&format!("decode {kind:?} {rate} Hz"), || {
            decode(std::hint::black_box(&coded[next % FRAMES]), n, &mut back)
                .expect("a valid frame");
            next += 1;
        });
        for (samples, coded) in frames.iter().zip(&coded) {
            decode(coded, n, &mut back).expect("a valid frame");
            assert_eq!(&back, samples);
        }
    }
}
