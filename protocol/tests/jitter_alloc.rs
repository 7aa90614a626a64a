//! `push` and `pull` allocate nothing once the buffer is built, in every state: buffering,
//! playing, concealing a gap, running dry, catching up after a stall, and on every resampler
//! path. A global allocator that aborts on allocation inside `assert_no_alloc` proves it.
#![cfg(feature = "std")]

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use line_protocol::jitter::{JitterBuffer, JitterConfig};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

fn exercise(wire_rate: u32, output_rate: u32) {
    let frame_samples = wire_rate as usize / 100;
    let mut jb = JitterBuffer::new(JitterConfig::new(wire_rate, output_rate, frame_samples))
        .expect("valid configuration");
    let frame = vec![0.25f32; frame_samples];
    let mut out = vec![0.0f32; 128];
    let pull_us = 128_000_000 / u64::from(output_rate);
    assert_no_alloc(|| {
        let mut now = 0u64;
        let mut sent = 0u64;
        // Three seconds: buffering, playing, a loss, a stall, the catch-up, playing again.
        while now < 3_000_000 {
            now += pull_us;
            // Frames every 10 ms, with frame 30 lost and a stall from 1.5 s to 2 s.
            while (sent + 1) * 10_000 <= now {
                let stalled = (150..200).contains(&sent) && now < 2_000_000;
                if stalled {
                    break;
                }
                if sent != 30 {
                    jb.push(now, sent * frame_samples as u64, &frame);
                }
                if sent.is_multiple_of(7) {
                    jb.push(now, sent * frame_samples as u64, &frame);
                }
                sent += 1;
            }
            jb.pull(now, &mut out);
        }
    });
    let stats = jb.stats();
    assert!(
        stats.underruns >= 1 && stats.dropped_samples > 0,
        "{stats:?}"
    );
    assert!(
        stats.concealment_events >= 2 && stats.duplicate_packets > 0,
        "{stats:?}"
    );
}

#[test]
fn push_and_pull_never_allocate() {
    exercise(200_000, 48_000);
    exercise(48_000, 48_000);
    exercise(200_000, 200_000);
}
