//! The audio thread must never wait on an allocator: once a stream has started (its jitter
//! buffer is the one allocation), taking records, rendering quanta and reading the statistics
//! allocate nothing. A global allocator that aborts on allocation inside `assert_no_alloc`
//! proves it.
#![cfg(not(target_arch = "wasm32"))]

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use line_playout::record::{self, Header};
use line_playout::{Playout, stat};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[test]
fn records_and_quanta_allocate_nothing_once_the_stream_started() {
    // 200 kHz on the wire into a 48 kHz context: the sinc path, as in a default call.
    let (rate, frame) = (200_000u32, 2_000usize);
    let mut playout = Playout::new(48_000);
    let samples: Vec<f32> = (0..frame).map(|n| (n as f32 * 0.01).sin() * 0.5).collect();
    let records: Vec<Vec<f32>> = (0..200u64)
        .map(|k| {
            let mut words = Vec::new();
            Header {
                flags: if k == 0 { record::NEW_STREAM } else { 0 },
                rate,
                first_sample: k * frame as u64,
                arrival_us: k * 10_000,
                age_us: 5_000,
            }
            .write(&samples, &mut words);
            words
        })
        .collect();
    let mut out = [0.0f32; 128];
    playout.push(&records[0], 0.0);
    let mut rendered = 0u64;
    assert_no_alloc(|| {
        for (k, r) in records.iter().enumerate().skip(1) {
            let len = r.len();
            playout.record_scratch()[..len].copy_from_slice(r);
            playout.push_scratch(len, rendered as f64);
            while rendered * 1_000_000 < (k as u64 + 1) * 10_000 * 48_000 {
                playout.render(rendered as f64, &mut out);
                rendered += 128;
            }
            let _ = playout.stats()[stat::DEPTH_MS];
        }
    });
    let stats = playout.stats();
    assert_eq!(stats[stat::RECORDS], 200.0);
    assert!(stats[stat::OUTPUT_PEAK] > 0.4, "{stats:?}");
}
