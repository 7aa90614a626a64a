//! The lossless coder: first the compression ratio (coded bytes / raw bytes) of each test signal
//! at 48 and 200 kHz in 2.5 ms and 10 ms frames, printed as a table; then the cost of encoding and
//! decoding one 10 ms frame. `LINE_TEST_SEED` repeats a run's signals.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use line_protocol::lossless::signals::{Kind, generate};
use line_protocol::lossless::{decode, encode};
use line_protocol::testing::Rng;

/// Frames of each kind behind each figure of the table.
const FRAMES: usize = 200;

fn ratios() {
    let mut rng = Rng::from_env();
    eprintln!(
        "\ncompression ratio (coded / raw), mean of {FRAMES} frames, fresh random parameters each"
    );
    eprintln!(
        "{:<16} {:>12} {:>12} {:>12} {:>12}",
        "signal", "48k 2.5ms", "48k 10ms", "200k 2.5ms", "200k 10ms"
    );
    let mut coded = Vec::new();
    let mut back = Vec::new();
    for kind in Kind::ALL {
        let name = format!("{kind:?}");
        let mut row = format!("{name:<16}");
        for rate in [48_000u32, 200_000] {
            for ms_x10 in [25usize, 100] {
                let n = rate as usize * ms_x10 / 10_000;
                let (mut raw, mut total) = (0usize, 0usize);
                for _ in 0..FRAMES {
                    let samples = generate(kind, &mut rng, n, rate);
                    coded.clear();
                    encode(&samples, &mut coded);
                    decode(&coded, n, &mut back).expect("round trip");
                    assert_eq!(back, samples);
                    raw += 2 * n;
                    total += coded.len();
                }
                row += &format!(" {:>12.3}", total as f64 / raw as f64);
            }
        }
        eprintln!("{row}");
    }
}

fn speed(c: &mut Criterion) {
    ratios();
    let mut rng = Rng::from_env();
    for (op, decoding) in [("encode", false), ("decode", true)] {
        let mut group = c.benchmark_group(format!("lossless_{op}_10ms"));
        for (kind, rate) in [
            (Kind::UpsampledNoise, 200_000u32),
            (Kind::NoisyTone, 200_000),
            (Kind::UpsampledNoise, 48_000),
            (Kind::WhiteNoise, 200_000),
        ] {
            let n = rate as usize / 100;
            let samples = generate(kind, &mut rng, n, rate);
            let mut coded = Vec::with_capacity(3 + 2 * n);
            encode(&samples, &mut coded);
            let mut back = Vec::with_capacity(n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(
                BenchmarkId::from_parameter(format!("{kind:?}@{rate}")),
                |b| {
                    if decoding {
                        b.iter(|| {
                            decode(std::hint::black_box(&coded), n, &mut back).expect("valid");
                        });
                    } else {
                        b.iter(|| {
                            coded.clear();
                            encode(std::hint::black_box(&samples), &mut coded);
                        });
                    }
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, speed);
criterion_main!(benches);
