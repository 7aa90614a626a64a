//! The worker's map from its own clock to the audio clock.
//!
//! The playback processor reports how far it has rendered (`currentFrame` at the end of its last
//! quantum); the worker notes its own time whenever it reads such a report. A report is read
//! some time after the render (the worker wakes late, and a device that renders in bursts renders
//! ahead of the audio it plays), never before, so the smallest `worker time − audio time` seen is
//! the truest offset. The map keeps that minimum over the last few seconds, so it follows the two
//! clocks drifting apart while a single slow wake never moves it.
//!
//! Arrivals mapped this way are smooth (the worker's own clock) where the quanta that take them
//! come in bursts: the jitter buffer sees how late frames really arrive, and a drift.

/// Seconds of reports each block of the sliding minimum spans, microseconds.
const BLOCK_US: u64 = 1_000_000;
/// Blocks the minimum is taken over.
const BLOCKS: usize = 4;

/// Worker clock to audio clock (both in microseconds).
#[derive(Clone, Debug, Default)]
pub struct ClockMap {
    /// Minimum offset of each recent block, the current one last.
    blocks: [Option<f64>; BLOCKS],
    block_start_us: u64,
    offset_us: Option<f64>,
}

impl ClockMap {
    /// At `now_us` (worker clock) the processor had rendered up to `frame` at `rate`.
    pub fn observe(&mut self, now_us: u64, frame: f64, rate: f64) {
        if !(frame.is_finite() && frame > 0.0 && rate > 0.0) {
            return;
        }
        let offset = now_us as f64 - frame * 1e6 / rate;
        if self.blocks[BLOCKS - 1].is_none() || now_us >= self.block_start_us + BLOCK_US {
            if self.blocks[BLOCKS - 1].is_some() {
                self.blocks.rotate_left(1);
            }
            self.blocks[BLOCKS - 1] = None;
            self.block_start_us = now_us;
        }
        let last = &mut self.blocks[BLOCKS - 1];
        *last = Some(last.map_or(offset, |m| m.min(offset)));
        self.offset_us = self.blocks.iter().flatten().copied().reduce(f64::min);
    }

    /// `now_us` on the worker's clock, on the audio clock; `None` before any report.
    #[must_use]
    pub fn to_audio_us(&self, now_us: u64) -> Option<u64> {
        self.offset_us
            .map(|offset| (now_us as f64 - offset).max(0.0) as u64)
    }

    /// Forgets every report (a new audio context).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_report_sets_the_offset_and_a_slow_wake_does_not_move_it() {
        let mut map = ClockMap::default();
        assert_eq!(map.to_audio_us(5), None);
        // The audio clock started 1 s after the worker's; reports come 0.3-2 ms late.
        for (k, late) in [(1u64, 2_000u64), (2, 300), (3, 40_000), (4, 900)] {
            let audio_us = k * 2_667;
            map.observe(
                1_000_000 + audio_us + late,
                audio_us as f64 * 0.048,
                48_000.0,
            );
        }
        assert_eq!(map.to_audio_us(1_500_000), Some(499_700));
    }

    #[test]
    fn follows_clocks_that_drift_apart() {
        let mut map = ClockMap::default();
        // The audio clock runs 100 ppm slow against the worker's, for a minute.
        let mut worst: f64 = 0.0;
        for k in 1..60_000u64 {
            let now = k * 1_000;
            let audio = now as f64 * (1.0 - 100e-6);
            map.observe(now + 500 + (k * 7919) % 1_500, audio * 0.048, 48_000.0);
            if k > 5_000 {
                let error = map.to_audio_us(now).unwrap() as f64 - audio;
                worst = worst.max(error.abs());
            }
        }
        // Within the late reports' floor plus a few blocks' worth of drift.
        assert!(worst < 500.0 + 600.0, "{worst}");
    }
}
