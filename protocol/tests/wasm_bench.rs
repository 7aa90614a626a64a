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
use line_protocol::sframe::{CipherSuite, FrameReceiver, FrameSender, SUITE, SframeKey};
use wasm_bindgen::JsCast as _;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use webcrypto_support::{WebCryptoKey, bytes, settle};

wasm_bindgen_test_configure!(run_in_browser);

const SAMPLES: usize = 2000;
/// Rounds of the measurement; the first warms up and is not counted.
const ROUNDS: usize = 41;
/// How long each row runs in each round. The rows take turns, round after round, so a burst of
/// load from another process hits them all alike. Each row reports its best round (what the code
/// can do when it has a core) and its median round (what this machine gave it).
const SLICE_MS: f64 = 30.0;
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

/// Runs `step` (one frame) for [`SLICE_MS`]; returns frames per second.
fn rate(mut step: impl FnMut()) -> f64 {
    let start = now_ms();
    let mut count = 0u32;
    loop {
        for _ in 0..10 {
            step();
        }
        count += 10;
        let elapsed = now_ms() - start;
        if elapsed >= SLICE_MS {
            return f64::from(count) * 1000.0 / elapsed;
        }
    }
}

/// One line of the summary: what was timed, and frames per second in each counted round.
struct Row {
    what: String,
    rounds: Vec<f64>,
}

impl Row {
    fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            rounds: Vec::with_capacity(ROUNDS),
        }
    }

    fn record(&mut self, round: usize, frames_per_s: f64) {
        if round > 0 {
            self.rounds.push(frames_per_s);
        }
    }

    /// Frames per second in the best and in the median round.
    fn best_and_median(&self) -> (f64, f64) {
        let mut sorted = self.rounds.clone();
        sorted.sort_by(f64::total_cmp);
        (sorted[sorted.len() - 1], sorted[sorted.len() / 2])
    }
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

/// line's own path, as the client's worker runs it for every frame.
struct LineSframe {
    sender: FrameSender,
    receiver: FrameReceiver,
    frame: Vec<u8>,
    opened: Vec<u8>,
}

impl LineSframe {
    fn new() -> Self {
        let leaf = LeafKey::from_random([7; 32]);
        Self {
            sender: FrameSender::new(&leaf, KID),
            receiver: FrameReceiver::new(&leaf),
            frame: Vec::new(),
            opened: Vec::new(),
        }
    }

    fn step(&mut self, plaintext: &[u8]) {
        self.sender
            .encrypt(plaintext, &mut self.frame)
            .expect("encrypts");
        self.receiver
            .decrypt(&self.frame, &mut self.opened)
            .expect("decrypts");
    }
}

/// The same frame under SFrame's other AES-GCM suite, 0x0004 (AES-128, 10 rounds instead of 14),
/// through [`SframeKey`]: what a change of suite would buy.
struct Aes128Suite {
    key: SframeKey,
    ctr: u64,
    frame: Vec<u8>,
    opened: Vec<u8>,
}

impl Aes128Suite {
    fn new() -> Self {
        Self {
            key: SframeKey::derive(CipherSuite::Aes128GcmSha256, &BASE_KEY, KID),
            ctr: 0,
            frame: Vec::new(),
            opened: Vec::new(),
        }
    }

    fn step(&mut self, plaintext: &[u8]) {
        self.key
            .seal(Header::new(KID, self.ctr), &[], plaintext, &mut self.frame);
        self.ctr += 1;
        self.key
            .open(&self.frame, &[], &mut self.opened)
            .expect("opens");
    }
}

/// WebCrypto, one frame at a time: seal, await, open, await. Pushes each frame's seal + open time
/// in microseconds to `latencies_us`; returns frames per second.
async fn webcrypto_one_at_a_time(
    key: &WebCryptoKey,
    plaintext: &[u8],
    ctr: &mut u64,
    latencies_us: &mut Vec<f64>,
) -> f64 {
    let start = now_ms();
    let mut frames = 0u32;
    while now_ms() - start < SLICE_MS {
        let t0 = now_ms();
        let header = key.header(*ctr);
        let sealed = settle(Ok(key.seal(*ctr, &header, plaintext)))
            .await
            .expect("WebCrypto seals");
        let opened = settle(Ok(key.open(*ctr, &header, &bytes(&sealed))))
            .await
            .expect("WebCrypto opens");
        assert_eq!(bytes(&opened).len(), plaintext.len());
        latencies_us.push((now_ms() - t0) * 1000.0);
        *ctr += 1;
        frames += 1;
    }
    f64::from(frames) * 1000.0 / (now_ms() - start)
}

/// WebCrypto with [`IN_FLIGHT`] frames at once: seal them all, then open them all.
async fn webcrypto_in_flight(key: &WebCryptoKey, plaintext: &[u8], ctr: &mut u64) -> f64 {
    let start = now_ms();
    let mut frames = 0usize;
    while now_ms() - start < SLICE_MS {
        let first = *ctr;
        let headers: Vec<Vec<u8>> = (first..first + IN_FLIGHT as u64)
            .map(|c| key.header(c))
            .collect();
        let seals: Array = (first..)
            .zip(&headers)
            .map(|(c, header)| key.seal(c, header, plaintext))
            .collect();
        let sealed: Array = all(seals).await;
        let opens: Array = (first..)
            .zip(&headers)
            .zip(sealed.iter())
            .map(|((c, header), sealed)| key.open(c, header, &bytes(&sealed)))
            .collect();
        for opened in all(opens).await.iter() {
            assert_eq!(bytes(&opened).len(), plaintext.len());
        }
        *ctr += IN_FLIGHT as u64;
        frames += IN_FLIGHT;
    }
    frames as f64 * 1000.0 / (now_ms() - start)
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
    let mut line = LineSframe::new();
    let mut aes128 = Aes128Suite::new();
    // Half of the AEAD: the AES-256 blocks of the CTR keystream for sealing and opening a frame.
    let aes = Aes256::new(&[9u8; 32].into());
    let mut blocks = vec![Block::default(); 2 * plaintext.len().div_ceil(16)];
    // The other half: GHASH over the frame, twice. Sealing an empty message with the frame as
    // associated data runs GHASH over it and AES over just two blocks.
    let aead = Aes256Gcm::new(&[9u8; 32].into());
    let nonce = Nonce::from([3u8; 12]);
    let mut ctr = 0u64;
    let mut latencies_us = Vec::new();

    let mut rows = [
        Row::new(format!(
            "line SFrame, RustCrypto AES-256-GCM in wasm (simd128 {simd})"
        )),
        Row::new("… of which AES-256 keystream alone"),
        Row::new("… of which GHASH alone"),
        Row::new("SFrame suite 0x0004 (AES-128-GCM) instead, for comparison"),
        Row::new("WebCrypto AES-256-GCM, one frame at a time"),
        Row::new(format!(
            "WebCrypto AES-256-GCM, {IN_FLIGHT} frames in flight"
        )),
    ];
    for round in 0..ROUNDS {
        rows[0].record(round, rate(|| line.step(&plaintext)));
        rows[1].record(
            round,
            rate(|| aes.encrypt_blocks(core::hint::black_box(&mut blocks))),
        );
        rows[2].record(
            round,
            rate(|| {
                for _ in 0..2 {
                    let tag = aead
                        .encrypt_inout_detached(
                            &nonce,
                            core::hint::black_box(&plaintext),
                            (&mut [][..]).into(),
                        )
                        .expect("within AES-GCM's limits");
                    core::hint::black_box(tag);
                }
            }),
        );
        rows[3].record(round, rate(|| aes128.step(&plaintext)));
        if round == 0 {
            latencies_us.clear();
        }
        let one = webcrypto_one_at_a_time(&webcrypto, &plaintext, &mut ctr, &mut latencies_us);
        rows[4].record(round, one.await);
        let many = webcrypto_in_flight(&webcrypto, &plaintext, &mut ctr);
        rows[5].record(round, many.await);
    }
    assert_eq!(line.opened, plaintext);

    latencies_us.sort_by(f64::total_cmp);
    let at = |q: f64| latencies_us[((latencies_us.len() - 1) as f64 * q) as usize];
    console_log!(
        "WebCrypto one frame at a time, seal + open: p50 {:.0} us, p99 {:.0} us over {} frames \
         (the browser's clock is coarse: 5-100 us)",
        at(0.5),
        at(0.99),
        latencies_us.len()
    );
    console_log!(
        "| wasm32 in headless Chromium: seal + open one 10 ms mono 200 kHz frame ({} B), {} rounds | µs/frame, best / median round | frames/s, best | × real time, best |",
        plaintext.len(),
        ROUNDS - 1
    );
    console_log!("|---|---:|---:|---:|");
    for row in rows {
        let (best, median) = row.best_and_median();
        console_log!(
            "| {} | {:.1} / {:.1} | {:.0} | {:.0}× |",
            row.what,
            1e6 / best,
            1e6 / median,
            best,
            best / 100.0
        );
    }
}
