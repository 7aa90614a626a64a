//! The target delay: how much audio the buffer aims to hold, adapted to the network.
//!
//! Rules (times in seconds; `frame` is one sender frame, `pull` the largest recent device pull):
//! - Start at two frames; never go below one frame (the floor below is above it anyway).
//! - Jitter: each packet's relative delay is its transit time (arrival minus media time) above
//!   the fastest recent transit, a running minimum that may rise by [`BASE_LEAK`] per second so
//!   that it follows a sender clock slower than ours. Delays are kept as the maximum of each
//!   [`BLOCK`]-long block for the last [`BLOCKS`] blocks; the jitter estimate is the second
//!   largest of these, so one spike alone does not move it.
//! - Floor: `jitter + frame + pull + SAFETY`. When the floor rises above the target, the target
//!   follows at once, before any underrun.
//! - Underrun: the target grows by one frame (up to the maximum).
//! - Calm: with no underrun and no growth for [`CALM_HOLD`], the target shrinks by
//!   [`SHRINK_RATE`] towards the floor (never below the minimum). Fast, because what makes a
//!   target large is mostly the call's first seconds (a browser compiling, a device starting),
//!   and every millisecond kept is latency for the rest of the call; a target too low for the
//!   network is raised again at once by the floor or by the next underrun.
//! - A stall is not jitter: a delay above `2 * target + frame` is left out of the estimate, so a
//!   half-second outage does not leave half a second of latency behind. Underruns still grow the
//!   target, and once it is large enough such delays count again.

/// How fast the fastest-transit reference may rise, in seconds per second: above the 300 ppm of
/// drift to follow, small enough that the jitter estimate hardly erodes between fast packets.
const BASE_LEAK: f64 = 1e-3;
/// Length of one block of the jitter window.
const BLOCK: f64 = 0.2;
/// Blocks in the jitter window: two seconds.
const BLOCKS: usize = 10;
/// Headroom above the jitter that a pull and a frame need.
const SAFETY: f64 = 0.002;
/// Quiet time before the target starts to shrink.
pub(crate) const CALM_HOLD: f64 = 2.0;
/// How fast the target shrinks when calm, in seconds per second. Faster than the drift loop can
/// follow smoothly (2 ms/s): the buffer drops the rest once it is a frame behind (`mod.rs`).
const SHRINK_RATE: f64 = 4e-3;
/// A pull this old or older no longer counts towards the largest recent pull.
const PULL_MEMORY: f64 = 2.0;

#[derive(Debug)]
pub(crate) struct TargetDelay {
    frame: f64,
    min: f64,
    max: f64,
    target: f64,
    base_transit: Option<f64>,
    last_arrival: f64,
    blocks: [f64; BLOCKS],
    block_index: usize,
    block_start: f64,
    jitter: f64,
    pull: f64,
    pull_seen: f64,
    calm_since: f64,
}

impl TargetDelay {
    pub(crate) fn new(frame: f64, max: f64) -> Self {
        TargetDelay {
            frame,
            min: frame.min(max),
            max,
            target: (2.0 * frame).min(max),
            base_transit: None,
            last_arrival: 0.0,
            blocks: [0.0; BLOCKS],
            block_index: 0,
            block_start: 0.0,
            jitter: 0.0,
            pull: 0.0,
            pull_seen: 0.0,
            calm_since: 0.0,
        }
    }

    pub(crate) fn target(&self) -> f64 {
        self.target
    }

    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
    }

    pub(crate) fn frame(&self) -> f64 {
        self.frame
    }

    pub(crate) fn largest_pull(&self) -> f64 {
        self.pull
    }

    /// Whether nothing has raised the target for [`CALM_HOLD`].
    pub(crate) fn is_calm(&self, now: f64) -> bool {
        now - self.calm_since > CALM_HOLD
    }

    fn floor(&self) -> f64 {
        (self.jitter + self.frame + self.pull + SAFETY).clamp(self.min, self.max)
    }

    fn raise_to(&mut self, level: f64, now: f64) {
        let level = level.min(self.max);
        if level > self.target {
            self.target = level;
            self.calm_since = now;
        }
    }

    /// A packet whose first sample plays at `media` seconds of the sender's count arrived at `now`.
    pub(crate) fn on_arrival(&mut self, now: f64, media: f64) {
        let transit = now - media;
        let base = match self.base_transit {
            None => {
                self.block_start = now;
                self.calm_since = now;
                transit
            }
            Some(base) => transit.min(base + BASE_LEAK * (now - self.last_arrival).max(0.0)),
        };
        self.base_transit = Some(base);
        self.last_arrival = now;
        let delay = transit - base;
        if delay > 2.0 * self.target + self.frame {
            return;
        }
        while now - self.block_start >= BLOCK {
            self.block_index = (self.block_index + 1) % BLOCKS;
            self.blocks[self.block_index] = 0.0;
            self.block_start += BLOCK;
            if now - self.block_start >= BLOCK * BLOCKS as f64 {
                // A long silence: every block is stale.
                self.blocks = [0.0; BLOCKS];
                self.block_start = now;
            }
        }
        let current = &mut self.blocks[self.block_index];
        *current = current.max(delay);
        let (mut first, mut second) = (0.0f64, 0.0f64);
        for &b in &self.blocks {
            if b > first {
                second = first;
                first = b;
            } else if b > second {
                second = b;
            }
        }
        self.jitter = second;
        self.raise_to(self.floor(), now);
    }

    /// The stream restarted at an unrelated sample index: transit times start over.
    pub(crate) fn restart_timing(&mut self) {
        self.base_transit = None;
    }

    /// The device pulled `duration` seconds of audio at `now`.
    pub(crate) fn on_pull(&mut self, now: f64, duration: f64) {
        if duration >= self.pull || now - self.pull_seen > PULL_MEMORY {
            self.pull = duration;
            self.pull_seen = now;
            self.raise_to(self.floor(), now);
        }
        let floor = self.floor();
        let calm_for = now - self.calm_since;
        if self.is_calm(now) && self.target > floor {
            let step = SHRINK_RATE * (calm_for - CALM_HOLD).min(duration);
            self.target = (self.target - step).max(floor);
        }
    }

    /// The buffer ran dry at `now`.
    pub(crate) fn on_underrun(&mut self, now: f64) {
        let level = self.target.max(self.floor()) + self.frame;
        self.raise_to(level, now);
        self.calm_since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_two_frames_and_grows_on_underrun() {
        let mut t = TargetDelay::new(0.01, 0.5);
        assert!((t.target() - 0.02).abs() < 1e-12);
        t.on_underrun(1.0);
        assert!((t.target() - 0.03).abs() < 1e-12);
    }

    #[test]
    fn follows_jitter_then_shrinks_when_calm() {
        let mut t = TargetDelay::new(0.01, 0.5);
        // Every tenth packet is 15 ms late, for three seconds.
        for i in 0..300u32 {
            let media = f64::from(i) * 0.01;
            let late = if i % 10 == 5 { 0.015 } else { 0.0 };
            t.on_arrival(media + 0.05 + late, media);
            t.on_pull(media, 0.01);
        }
        assert!((t.jitter() - 0.015).abs() < 1e-4, "jitter {}", t.jitter());
        let raised = t.target();
        assert!(
            (raised - (0.015 + 0.01 + 0.01 + SAFETY)).abs() < 1e-4,
            "target {raised}"
        );
        // Then a calm network: after the hold the target comes down to the floor.
        for i in 300..1000u32 {
            let media = f64::from(i) * 0.01;
            t.on_arrival(media + 0.05, media);
            t.on_pull(media, 0.01);
        }
        assert!(t.target() < raised);
        assert!(
            (t.target() - (0.01 + 0.01 + SAFETY)).abs() < 1e-9,
            "target {}",
            t.target()
        );
    }

    #[test]
    fn a_stall_is_not_jitter() {
        let mut t = TargetDelay::new(0.01, 0.5);
        for i in 0..100u32 {
            let media = f64::from(i) * 0.01;
            t.on_arrival(media, media);
        }
        // 500 ms of packets arrive at once.
        for i in 100..150u32 {
            t.on_arrival(1.5, f64::from(i) * 0.01);
        }
        assert!(t.jitter() < 0.06, "jitter {}", t.jitter());
        assert!(t.target() < 0.1, "target {}", t.target());
    }
}
