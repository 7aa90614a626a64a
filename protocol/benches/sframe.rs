//! Encrypt + decrypt of one 10 ms mono frame at 200 kHz: 2000 samples, 4000 bytes of PCM inside an
//! audio payload. Criterion reports frames per second as "elem/s"; a client does 100 encryptions
//! and 100 decryptions a second, so frames/s / 100 is the multiple of real time.
//!
//! `cargo bench -p line-protocol --bench sframe` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a quick run).
#![cfg_attr(target_arch = "wasm32", allow(missing_docs))]

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use criterion::{Criterion, Throughput};
    use line_protocol::leaf::LeafKey;
    use line_protocol::payload::{Audio, Payload};
    use line_protocol::pcm;
    use line_protocol::sframe::{FrameReceiver, FrameSender};

    const SAMPLE_RATE: u32 = 200_000;
    const SAMPLES: usize = 2000;

    /// A 1 kHz tone, as a microphone would deliver it.
    fn tone() -> Vec<f32> {
        (0..SAMPLES)
            .map(|i| 0.5 * (i as f32 * 1000.0 * std::f32::consts::TAU / SAMPLE_RATE as f32).sin())
            .collect()
    }

    fn audio_payload(pcm: &[u8], first_sample: u64) -> Vec<u8> {
        let mut plaintext = Vec::with_capacity(4100);
        Payload::Audio(Audio {
            sample_rate: SAMPLE_RATE,
            channels: 1,
            first_sample,
            capture_time_us: 1_764_150_000_000_000,
            pcm,
        })
        .encode(&mut plaintext);
        plaintext
    }

    /// An `Audio` payload's 23 bytes of fields and 4000 of PCM.
    const PLAINTEXT_LEN: usize = 23 + 4000;

    /// One step seals and opens the same 10 ms 200 kHz `Audio` frame: what both benchmarks time.
    fn seal_and_open(leaf: &LeafKey) -> impl FnMut() + use<> {
        let mut wire = vec![0u8; 2 * SAMPLES];
        pcm::f32_to_i16le(&tone(), &mut wire);
        let plaintext = audio_payload(&wire, 0);
        assert_eq!(plaintext.len(), PLAINTEXT_LEN);
        let mut sender = FrameSender::new(leaf, 0x1d2c_3b4a_5968_7786);
        let mut receiver = FrameReceiver::new(leaf);
        let (mut frame, mut opened) = (Vec::new(), Vec::new());
        move || {
            sender
                .encrypt(black_box(&plaintext), &mut frame)
                .expect("encrypts");
            receiver
                .decrypt(black_box(&frame), &mut opened)
                .expect("decrypts");
        }
    }

    pub(crate) fn benches(c: &mut Criterion) {
        let leaf = LeafKey::from_random([7; 32]);
        let mut group = c.benchmark_group("10ms_mono_200kHz");
        group.throughput(Throughput::Elements(1));

        let mut seal_open = seal_and_open(&leaf);
        group.bench_function("encrypt+decrypt", |b| b.iter(&mut seal_open));

        // The whole per-frame path of a client: f32 -> PCM -> payload -> frame and back.
        let input = tone();
        let mut wire = vec![0u8; 2 * SAMPLES];
        let (mut frame, mut opened) = (Vec::new(), Vec::new());
        let mut output = vec![0f32; SAMPLES];
        let mut plain = Vec::with_capacity(4100);
        let mut sender = FrameSender::new(&leaf, 0x0102_0304_0506_0708);
        let mut receiver = FrameReceiver::new(&leaf);
        let mut first_sample = 0u64;
        group.bench_function("pcm+payload+encrypt+decrypt", |b| {
            b.iter(|| {
                pcm::f32_to_i16le(black_box(&input), &mut wire);
                plain.clear();
                Payload::Audio(Audio {
                    sample_rate: SAMPLE_RATE,
                    channels: 1,
                    first_sample,
                    capture_time_us: 0,
                    pcm: &wire,
                })
                .encode(&mut plain);
                first_sample += SAMPLES as u64;
                sender.encrypt(&plain, &mut frame).expect("encrypts");
                receiver.decrypt(&frame, &mut opened).expect("decrypts");
                match Payload::decode(&opened) {
                    Ok(Payload::Audio(audio)) => pcm::i16le_to_f32(audio.pcm, &mut output),
                    other => panic!("not audio: {other:?}"),
                }
                black_box(&output);
            });
        });
        group.finish();
    }

    /// Rounds of the summary; the first warms up and is not counted.
    const ROUNDS: usize = 41;
    /// How long each row runs in each round. The rows take turns, so a burst of load from another
    /// process hits them alike; each reports its best round and its median round.
    const SLICE: Duration = Duration::from_millis(30);

    /// Runs `step` (one frame) for [`SLICE`]; returns frames per second.
    fn rate(mut step: impl FnMut()) -> f64 {
        let start = Instant::now();
        let mut count = 0u32;
        loop {
            for _ in 0..10 {
                step();
            }
            count += 10;
            let elapsed = start.elapsed();
            if elapsed >= SLICE {
                return f64::from(count) / elapsed.as_secs_f64();
            }
        }
    }

    /// Prints a table in the wasm benchmark's form (lines starting with "| "), measured the same
    /// way, so both land side by side in `just bench`'s summary.
    #[allow(clippy::print_stdout)] // a benchmark's report is its output
    pub(crate) fn summary() {
        let mut line = seal_and_open(&LeafKey::from_random([7; 32]));
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let frames_per_s = rate(&mut line);
            if round > 0 {
                rounds.push(frames_per_s);
            }
        }
        rounds.sort_by(f64::total_cmp);
        let (best, median) = (rounds[rounds.len() - 1], rounds[rounds.len() / 2]);
        println!(
            "| native {}: seal + open one 10 ms mono 200 kHz frame ({} B), {} rounds | µs/frame, best / median round | frames/s, best | × real time, best |",
            std::env::consts::ARCH,
            PLAINTEXT_LEN,
            ROUNDS - 1
        );
        println!("|---|---:|---:|---:|");
        println!(
            "| line SFrame, RustCrypto AES-256-GCM (AES-NI + PCLMULQDQ when the CPU has them: {}) | {:.2} / {:.2} | {:.0} | {:.0}× |",
            hardware_aes(),
            1e6 / best,
            1e6 / median,
            best,
            best / 100.0
        );
    }

    /// Whether this CPU has the instructions aes and polyval detect at run time.
    fn hardware_aes() -> &'static str {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        let yes = std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq");
        #[cfg(target_arch = "aarch64")]
        let yes = std::arch::is_aarch64_feature_detected!("aes");
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
        let yes = false;
        if yes { "yes" } else { "no" }
    }
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_group!(benches, native::benches);

/// Criterion's own main, then the summary table that `just bench` gathers.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    native::summary();
}

#[cfg(target_arch = "wasm32")]
fn main() {}
