//! The target delay: how much audio the buffer aims to hold, adapted to the network.
//!
//! Rules (times in seconds; `frame` is one sender frame, `pull` the largest recent device pull):
//! - Start at two frames; never go below one frame (the floor below is above it anyway).
//! - Jitter: each packet's *lateness* is its transit time (arrival minus media time) above the
//!   fastest transit of the last [`FAST`] blocks of [`BLOCK`]: a windowed minimum, so that it
//!   follows a sender whose clock is slower than ours, or whose audio thread lost time, within
//!   seconds. Each block keeps its largest lateness. The *fast* jitter is the second largest of the
//!   last [`FAST`] blocks (two seconds: one spike alone does not move it), the *slow* jitter the
//!   second largest of the last [`SLOW`] (ten seconds).
//! - Floor: `jitter + frame + pull + SAFETY`. When the floor of the fast jitter rises above the
//!   target, the target follows at once, before any underrun.
//! - Underrun: the target grows by one frame (up to the maximum).
//! - Calm: with no underrun and no growth for [`CALM_HOLD`], the target comes down to the floor of
//!   the *slow* jitter, if that is at least [`HYSTERESIS`] lower; the latency control then drops
//!   the excess in one edit. Every change of the target costs an edit, so it comes down only
//!   when the network has been calmer for ten seconds, and by a step worth taking; and at once
//!   then, because what makes a target large is mostly the call's first seconds (a browser
//!   compiling, a device starting), and every millisecond kept is latency for the rest of the
//!   call.
//! - A stall is not jitter: a lateness above `2 * target + frame` is left out of the estimate, so
//!   a half-second outage does not leave half a second of latency behind. Underruns still grow
//!   the target, and once it is large enough such delays count again.

/// Length of one block of the jitter window.
const BLOCK: f64 = 0.2;
/// Blocks of the fast window (and of the fastest-transit reference): two seconds.
const FAST: usize = 10;
/// Blocks of the slow window: ten seconds.
const SLOW: usize = 50;
/// Headroom above the jitter that a pull and a frame need.
const SAFETY: f64 = 0.002;
/// Quiet time before the target may come down.
const CALM_HOLD: f64 = 2.0;
/// The smallest step down worth an edit: this much, or this share of the target.
const HYSTERESIS: (f64, f64) = (0.003, 0.15);
/// A pull this old or older no longer counts towards the largest recent pull.
const PULL_MEMORY: f64 = 2.0;

/// One block of arrivals: the fastest transit, and the largest lateness.
#[derive(Debug, Clone, Copy)]
struct Block {
    fastest: f64,
    lateness: f64,
}

const EMPTY: Block = Block {
    fastest: f64::INFINITY,
    lateness: 0.0,
};

#[derive(Debug)]
pub(crate) struct TargetDelay {
    frame: f64,
    min: f64,
    max: f64,
    target: f64,
    /// The last [`SLOW`] blocks, oldest overwritten; `index` is the current one.
    blocks: [Block; SLOW],
    index: usize,
    /// Start of the current block; `None` until the first arrival (or after a restart).
    block_start: Option<f64>,
    jitter: f64,
    slow_jitter: f64,
    pull: f64,
    pull_seen: f64,
    calm_since: f64,
}

/// The second largest of `values`: one spike alone does not count.
fn second_largest(values: impl Iterator<Item = f64>) -> f64 {
    let (mut first, mut second) = (0.0f64, 0.0f64);
    for v in values {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

impl TargetDelay {
    pub(crate) fn new(frame: f64, max: f64) -> Self {
        TargetDelay {
            frame,
            min: frame.min(max),
            max,
            target: (2.0 * frame).min(max),
            blocks: [EMPTY; SLOW],
            index: 0,
            block_start: None,
            jitter: 0.0,
            slow_jitter: 0.0,
            pull: 0.0,
            pull_seen: 0.0,
            calm_since: 0.0,
        }
    }

    pub(crate) fn target(&self) -> f64 {
        self.target
    }

    /// The fast jitter estimate, seconds.
    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
    }

    pub(crate) fn frame(&self) -> f64 {
        self.frame
    }

    pub(crate) fn largest_pull(&self) -> f64 {
        self.pull
    }

    fn floor(&self, jitter: f64) -> f64 {
        (jitter + self.frame + self.pull + SAFETY).clamp(self.min, self.max)
    }

    fn raise_to(&mut self, level: f64, now: f64) {
        let level = level.min(self.max);
        if level > self.target {
            self.target = level;
            self.calm_since = now;
        }
    }

    /// The block `back` blocks before the current one.
    fn block(&self, back: usize) -> &Block {
        &self.blocks[(self.index + SLOW - back) % SLOW]
    }

    /// A packet whose first sample plays at `media` seconds of the sender's count arrived at `now`.
    pub(crate) fn on_arrival(&mut self, now: f64, media: f64) {
        let transit = now - media;
        let start = *self.block_start.get_or_insert_with(|| {
            self.calm_since = now;
            now
        });
        let mut start = start;
        let mut moved = 0;
        while now - start >= BLOCK && moved <= SLOW {
            self.index = (self.index + 1) % SLOW;
            self.blocks[self.index] = EMPTY;
            start += BLOCK;
            moved += 1;
        }
        if moved > SLOW {
            // A long silence: every block is stale.
            self.blocks = [EMPTY; SLOW];
            start = now;
        }
        self.block_start = Some(start);
        let current = &mut self.blocks[self.index];
        current.fastest = current.fastest.min(transit);
        let base = (0..FAST)
            .map(|back| self.block(back).fastest)
            .fold(f64::INFINITY, f64::min);
        let lateness = transit - base;
        if lateness <= 2.0 * self.target + self.frame {
            let current = &mut self.blocks[self.index];
            current.lateness = current.lateness.max(lateness);
        }
        self.jitter = second_largest((0..FAST).map(|back| self.block(back).lateness));
        self.slow_jitter = second_largest(self.blocks.iter().map(|b| b.lateness));
        self.raise_to(self.floor(self.jitter), now);
    }

    /// The stream restarted at an unrelated sample index: transit times start over.
    pub(crate) fn restart_timing(&mut self) {
        self.blocks = [EMPTY; SLOW];
        self.block_start = None;
    }

    /// The device pulled `duration` seconds of audio at `now`.
    pub(crate) fn on_pull(&mut self, now: f64, duration: f64) {
        if duration >= self.pull || now - self.pull_seen > PULL_MEMORY {
            self.pull = duration;
            self.pull_seen = now;
            self.raise_to(self.floor(self.jitter), now);
        }
        let floor = self.floor(self.slow_jitter.max(self.jitter));
        let step = HYSTERESIS.0.max(HYSTERESIS.1 * self.target);
        if now - self.calm_since > CALM_HOLD && self.target - floor >= step {
            self.target = floor;
            self.calm_since = now;
        }
    }

    /// The buffer ran dry at `now`.
    pub(crate) fn on_underrun(&mut self, now: f64) {
        let level = self.target.max(self.floor(self.jitter)) + self.frame;
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
        // Then a calm network: once the slow window forgot the jitter, the target comes down to
        // the floor.
        for i in 300..1000u32 {
            let media = f64::from(i) * 0.01;
            t.on_arrival(media + 0.05, media);
            t.on_pull(media, 0.01);
        }
        assert_eq!(t.target(), raised, "ten seconds of memory");
        for i in 1000..1400u32 {
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
