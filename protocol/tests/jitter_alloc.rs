//! `push` and `pull` allocate nothing once the buffer is built, in every state: buffering,
//! playing, concealing a gap, running dry, catching up after a stall, editing the audio to hold
//! the delay, and on every resampler path. A global allocator that aborts on allocation inside `assert_no_alloc` proves it.
#![cfg(all(feature = "std", not(target_arch = "wasm32")))]

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use line_protocol::jitter::{JitterBuffer, JitterConfig};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

fn exercise(wire_rate: u32, output_rate: u32) -> line_protocol::jitter::JitterStats {
    let frame_samples = wire_rate as usize / 100;
    let mut jb = JitterBuffer::new(JitterConfig::new(wire_rate, output_rate, frame_samples))
        .expect("valid configuration");
    let frame = vec![0.25f32; frame_samples];
    let mut out = vec![0.0f32; 128];
    let pull_us = 128_000_000 / u64::from(output_rate);
    assert_no_alloc(|| {
        let mut now = 0u64;
        let mut sent = 0u64;
        // Buffering, playing, a loss, a stall, the catch-up, playing again; then the network
        // path grows 15 ms longer (the delay falls short: an insert) and shorter again (a drop).
        while now < 9_000_000 {
            now += pull_us;
            // Frames every 10 ms, with frame 30 lost and a stall from 1.5 s to 2 s.
            let longer = if (3_500_000..5_500_000).contains(&now) {
                15_000
            } else {
                0
            };
            while (sent + 1) * 10_000 + longer <= now {
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
    stats
}

#[test]
fn push_and_pull_never_allocate() {
    let edits: Vec<_> = [(200_000, 48_000), (48_000, 48_000), (200_000, 200_000)]
        .into_iter()
        .map(|(wire, output)| exercise(wire, output))
        .map(|stats| (stats.edits, stats.inserted_samples))
        .collect();
    // The latency control cut and repeated audio on the way (the search for a join included).
    assert!(edits.iter().map(|e| e.0).sum::<u64>() >= 2, "{edits:?}");
    assert!(edits.iter().any(|e| e.1 > 0), "{edits:?}");
}
