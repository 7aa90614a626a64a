//! The cost of `JitterBuffer::pull`: 10 ms of output per call, in steady state, for each
//! resampler path. Real time is 100 pulls per second.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use line_protocol::jitter::{JitterBuffer, JitterConfig};

fn pull_10ms(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter_pull_10ms");
    for (wire, output) in [
        (200_000u32, 48_000u32),
        (48_000, 48_000),
        (200_000, 200_000),
    ] {
        let frame_samples = wire as usize / 100;
        let mut jb = JitterBuffer::new(JitterConfig::new(wire, output, frame_samples))
            .expect("valid configuration");
        let frame: Vec<f32> = (0..frame_samples)
            .map(|n| (n as f32 * 0.01).sin() * 0.5)
            .collect();
        let mut out = vec![0.0f32; output as usize / 100];
        let mut i = 0u64;
        group.bench_function(
            BenchmarkId::from_parameter(format!("{wire}->{output}")),
            |b| {
                b.iter(|| {
                    // One frame in, one frame's worth out: the buffer stays at its target.
                    jb.push(i * 10_000, i * frame_samples as u64, &frame);
                    jb.pull(i * 10_000, &mut out);
                    i += 1;
                    std::hint::black_box(out[0]);
                });
            },
        );
        let stats = jb.stats();
        assert_eq!(stats.underruns, 0, "{stats:?}");
    }
    group.finish();
}

criterion_group!(benches, pull_10ms);
criterion_main!(benches);
