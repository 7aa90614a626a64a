//! The capture side's resampler allocates nothing once built, whatever the sizes of the blocks
//! it is handed, as long as its output vector has room: a global allocator that aborts on
//! allocation inside `assert_no_alloc` proves it.
#![cfg(not(target_arch = "wasm32"))]

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use line_client::resample::Resampler;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[test]
fn processing_allocates_nothing() {
    for (from, to) in [
        (48_000, 200_000),
        (44_100, 200_000),
        (192_000, 48_000),
        (48_000, 48_000),
    ] {
        let mut r = Resampler::new(from, to);
        let input: Vec<f32> = (0..4_000).map(|n| (n as f32 * 0.03).sin() * 0.5).collect();
        let mut out = Vec::with_capacity(2 * 4_000 * to as usize / from as usize + 1_000);
        assert_no_alloc(|| {
            // Render quanta, odd sizes and a batch, as the capture ring hands them over.
            for size in [128, 1, 31, 33, 127, 640, 128, 128] {
                r.process(&input[..size], &mut out);
                out.clear();
            }
            r.process(&input, &mut out);
        });
        assert!(!out.is_empty(), "{from} -> {to}");
    }
}
