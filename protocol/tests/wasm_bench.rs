//! The sframe benchmark in headless Chromium: encrypt + decrypt of a 10 ms mono 200 kHz frame
//! (2000 samples, 4000 bytes of PCM in an audio payload), compiled to wasm32.
//!
//! Ignored by default, because only an optimized build says anything:
//! `cargo test -p line-protocol --release --target wasm32-unknown-unknown --test wasm_bench -- --include-ignored`
//! It logs frames per second and the multiple of real time (100 frames/s each way).
#![cfg(target_arch = "wasm32")]

use line_protocol::leaf::LeafKey;
use line_protocol::payload::{Audio, Payload};
use line_protocol::pcm;
use line_protocol::sframe::{FrameReceiver, FrameSender};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const SAMPLES: usize = 2000;

/// Runs `step` until at least `budget_ms` have passed; returns steps per second.
fn rate(budget_ms: f64, mut step: impl FnMut()) -> f64 {
    let start = js_sys::Date::now();
    let mut count = 0u32;
    loop {
        for _ in 0..100 {
            step();
        }
        count += 100;
        let elapsed = js_sys::Date::now() - start;
        if elapsed >= budget_ms {
            return f64::from(count) * 1000.0 / elapsed;
        }
    }
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run in release with --include-ignored"]
fn encrypt_decrypt_10ms_mono_200khz() {
    let leaf = LeafKey::from_random([7; 32]);
    let tone: Vec<f32> = (0..SAMPLES)
        .map(|i| 0.5 * (i as f32 * 1000.0 * core::f32::consts::TAU / 200_000.0).sin())
        .collect();
    let mut wire = vec![0u8; 2 * SAMPLES];
    pcm::f32_to_i16le(&tone, &mut wire);
    let mut plaintext = Vec::new();
    Payload::Audio(Audio {
        sample_rate: 200_000,
        channels: 1,
        first_sample: 0,
        capture_time_us: 0,
        pcm: &wire,
    })
    .encode(&mut plaintext);

    let mut sender = FrameSender::new(&leaf, 0x1d2c_3b4a_5968_7786);
    let mut receiver = FrameReceiver::new(&leaf);
    let (mut frame, mut opened) = (Vec::new(), Vec::new());
    rate(300.0, || {
        sender.encrypt(&plaintext, &mut frame).expect("encrypts");
        receiver.decrypt(&frame, &mut opened).expect("decrypts");
    });
    let frames_per_s = rate(3000.0, || {
        sender.encrypt(&plaintext, &mut frame).expect("encrypts");
        receiver.decrypt(&frame, &mut opened).expect("decrypts");
    });
    assert_eq!(opened, plaintext);
    console_log!(
        "wasm32 encrypt+decrypt of a 10 ms 200 kHz frame: {:.0} frames/s, {:.1} us/frame, {:.0}x real time",
        frames_per_s,
        1e6 / frames_per_s,
        frames_per_s / 100.0
    );
}
