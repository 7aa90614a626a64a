//! The sframe benchmark in headless Chromium: encrypt + decrypt of a 10 ms mono 200 kHz frame
//! (2000 samples, 4000 bytes of PCM in an audio payload), compiled to wasm32, side by side with the
//! browser's own WebCrypto AES-GCM on the same frames in the same page.
//!
//! Ignored by default, because only an optimized build says anything:
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --release --target wasm32-unknown-unknown --test wasm_bench -- --include-ignored --nocapture`
//!
//! It ends with a table (lines starting with "| "): time per frame, frames per second and the
//! multiple of real time (a client seals 100 frames a second and opens 100). Two rows split our
//! AEAD into its halves, the AES-256 keystream and GHASH, to show where the time goes.
#![cfg(target_arch = "wasm32")]

mod webcrypto_support;

use aes_gcm::aead::AeadInOut as _;
use aes_gcm::aes::cipher::BlockCipherEncrypt as _;
use aes_gcm::aes::{Aes256, Block};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use js_sys::{Array, Promise};
use line_protocol::header::Header;
use line_protocol::leaf::LeafKey;
use line_protocol::payload::{Audio, Payload};
use line_protocol::pcm;
use line_protocol::sframe::{FrameReceiver, FrameSender, SUITE, SframeKey};
use wasm_bindgen::JsCast as _;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use webcrypto_support::{WebCryptoKey, bytes, settle};

wasm_bindgen_test_configure!(run_in_browser);

const SAMPLES: usize = 2000;
/// How long each row is measured; each also gets a tenth of this to warm up.
const BUDGET_MS: f64 = 2000.0;
/// Frames WebCrypto has in flight at once in the throughput row.
const IN_FLIGHT: usize = 64;
const BASE_KEY: [u8; 32] = *b"a base key for the webcrypto cmp";
const KID: u64 = 0x1d2c_3b4a_5968_7786;

/// The browser's high-resolution clock, in milliseconds (coarsened by the browser to 5-100 us).
fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .expect("the global scope has `performance`")
        .unchecked_into::<web_sys::Performance>()
        .now()
}

/// Runs `step` until `budget_ms` have passed; returns steps per second.
fn rate(budget_ms: f64, mut step: impl FnMut()) -> f64 {
    let start = now_ms();
    let mut count = 0u32;
    loop {
        for _ in 0..10 {
            step();
        }
        count += 10;
        let elapsed = now_ms() - start;
        if elapsed >= budget_ms {
            return f64::from(count) * 1000.0 / elapsed;
        }
    }
}

/// One line of the summary: what was timed and how many frames per second it managed.
struct Row {
    what: String,
    frames_per_s: f64,
}

/// The plaintext of one 10 ms 200 kHz audio frame: a 1 kHz tone, 4023 bytes.
fn audio_plaintext() -> Vec<u8> {
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
    plaintext
}

/// line's own path: what the client's worker does for every frame.
fn line_sframe(plaintext: &[u8]) -> f64 {
    let leaf = LeafKey::from_random([7; 32]);
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let (mut frame, mut opened) = (Vec::new(), Vec::new());
    let mut step = || {
        sender.encrypt(plaintext, &mut frame).expect("encrypts");
        receiver.decrypt(&frame, &mut opened).expect("decrypts");
    };
    rate(BUDGET_MS / 10.0, &mut step);
    let frames_per_s = rate(BUDGET_MS, &mut step);
    assert_eq!(opened, plaintext);
    frames_per_s
}

/// Half of the AEAD: the AES-256 blocks of the CTR keystream for sealing and opening one frame.
fn aes_keystream_only(plaintext: &[u8]) -> f64 {
    let aes = Aes256::new(&[9u8; 32].into());
    let mut blocks = vec![Block::default(); 2 * plaintext.len().div_ceil(16)];
    let mut step = || aes.encrypt_blocks(core::hint::black_box(&mut blocks));
    rate(BUDGET_MS / 10.0, &mut step);
    rate(BUDGET_MS, &mut step)
}

/// The other half: GHASH over the frame's bytes, twice (seal and open). Sealing an empty message
/// with the frame as associated data runs GHASH over it and AES over just two blocks.
fn ghash_only(plaintext: &[u8]) -> f64 {
    let aead = Aes256Gcm::new(&[9u8; 32].into());
    let nonce = Nonce::from([3u8; 12]);
    let mut step = || {
        for _ in 0..2 {
            let tag = aead
                .encrypt_inout_detached(
                    &nonce,
                    core::hint::black_box(plaintext),
                    (&mut [][..]).into(),
                )
                .expect("within AES-GCM's limits");
            core::hint::black_box(tag);
        }
    };
    rate(BUDGET_MS / 10.0, &mut step);
    rate(BUDGET_MS, &mut step)
}

/// WebCrypto, one frame at a time: seal, await, open, await. Returns frames per second and the
/// p50 and p99 of one frame's seal + open, in microseconds.
async fn webcrypto_one_at_a_time(key: &WebCryptoKey, plaintext: &[u8]) -> (f64, f64, f64) {
    let mut ctr = 0u64;
    let mut times_us = Vec::new();
    for budget_ms in [BUDGET_MS / 10.0, BUDGET_MS] {
        times_us.clear();
        let start = now_ms();
        while now_ms() - start < budget_ms {
            let t0 = now_ms();
            let header = key.header(ctr);
            let sealed = settle(Ok(key.seal(ctr, &header, plaintext)))
                .await
                .expect("WebCrypto seals");
            let opened = settle(Ok(key.open(ctr, &header, &bytes(&sealed))))
                .await
                .expect("WebCrypto opens");
            assert_eq!(bytes(&opened).len(), plaintext.len());
            times_us.push((now_ms() - t0) * 1000.0);
            ctr += 1;
        }
    }
    let frames_per_s = times_us.len() as f64 * 1e6 / times_us.iter().sum::<f64>();
    times_us.sort_by(f64::total_cmp);
    let at = |q: f64| times_us[((times_us.len() - 1) as f64 * q) as usize];
    (frames_per_s, at(0.5), at(0.99))
}

/// WebCrypto with [`IN_FLIGHT`] frames at once: seal them all, then open them all.
async fn webcrypto_in_flight(key: &WebCryptoKey, plaintext: &[u8]) -> f64 {
    let mut ctr = 0u64;
    let mut frames = 0usize;
    let mut elapsed = 0.0;
    for budget_ms in [BUDGET_MS / 10.0, BUDGET_MS] {
        frames = 0;
        let start = now_ms();
        while now_ms() - start < budget_ms {
            let headers: Vec<Vec<u8>> = (ctr..ctr + IN_FLIGHT as u64)
                .map(|c| key.header(c))
                .collect();
            let seals: Array = (ctr..)
                .zip(&headers)
                .map(|(c, header)| key.seal(c, header, plaintext))
                .collect();
            let sealed: Array = all(seals).await;
            let opens: Array = (ctr..)
                .zip(&headers)
                .zip(sealed.iter())
                .map(|((c, header), sealed)| key.open(c, header, &bytes(&sealed)))
                .collect();
            for opened in all(opens).await.iter() {
                assert_eq!(bytes(&opened).len(), plaintext.len());
            }
            ctr += IN_FLIGHT as u64;
            frames += IN_FLIGHT;
        }
        elapsed = now_ms() - start;
    }
    frames as f64 * 1000.0 / elapsed
}

async fn all(promises: Array) -> Array {
    JsFuture::from(Promise::all(&promises))
        .await
        .expect("WebCrypto settles every frame")
        .unchecked_into()
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run in release with --include-ignored"]
async fn encrypt_decrypt_10ms_mono_200khz() {
    let plaintext = audio_plaintext();
    let webcrypto = WebCryptoKey::derive(&BASE_KEY, KID).await;

    // The same frame both ways first: WebCrypto must seal exactly what we seal.
    let mut frame = Vec::new();
    SframeKey::derive(SUITE, &BASE_KEY, KID).seal(Header::new(KID, 5), &[], &plaintext, &mut frame);
    let header = webcrypto.header(5);
    let theirs = settle(Ok(webcrypto.seal(5, &header, &plaintext)))
        .await
        .expect("WebCrypto seals");
    assert_eq!(
        frame[header.len()..],
        bytes(&theirs),
        "same frame, same bytes"
    );

    let simd = if cfg!(target_feature = "simd128") {
        "on"
    } else {
        "off"
    };
    let mut rows = vec![
        Row {
            what: format!("line SFrame, RustCrypto AES-256-GCM in wasm (simd128 {simd})"),
            frames_per_s: line_sframe(&plaintext),
        },
        Row {
            what: "… of which AES-256 keystream alone".into(),
            frames_per_s: aes_keystream_only(&plaintext),
        },
        Row {
            what: "… of which GHASH alone".into(),
            frames_per_s: ghash_only(&plaintext),
        },
    ];
    let (one_rate, p50, p99) = webcrypto_one_at_a_time(&webcrypto, &plaintext).await;
    rows.push(Row {
        what: format!(
            "WebCrypto AES-256-GCM, one frame at a time (p50 {p50:.0} µs, p99 {p99:.0} µs)"
        ),
        frames_per_s: one_rate,
    });
    rows.push(Row {
        what: format!("WebCrypto AES-256-GCM, {IN_FLIGHT} frames in flight"),
        frames_per_s: webcrypto_in_flight(&webcrypto, &plaintext).await,
    });

    console_log!(
        "| wasm32 in headless Chromium: seal + open one 10 ms mono 200 kHz frame ({} B) | µs/frame | frames/s | × real time |",
        plaintext.len()
    );
    console_log!("|---|---:|---:|---:|");
    for row in rows {
        console_log!(
            "| {} | {:.1} | {:.0} | {:.0}× |",
            row.what,
            1e6 / row.frames_per_s,
            row.frames_per_s,
            row.frames_per_s / 100.0
        );
    }
}
