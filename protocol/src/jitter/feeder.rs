//! The feeder: what plays next, at the wire rate, from the store, concealment and planned edits.
//!
//! It hands the rate converter exactly the samples the sender framed, in order, except where it
//! must not: a hole or an underrun is concealed (`conceal.rs`), and an edit planned by the latency
//! control (`latency.rs`) drops or repeats a piece at a chosen join. Every such place is counted,
//! so what reaches the device is the sender's audio sample for sample everywhere else.

use super::conceal::{Concealer, Splice};
use super::edit::join_cost;
use super::store::{Run, SampleRing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// No packet yet: silence.
    Idle,
    /// Waiting until the target delay is held; concealment or silence meanwhile.
    Buffering,
    /// Playing from the store.
    Playing,
}

/// What an edit does at its join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EditKind {
    /// Jump forward: `len` samples are never played.
    Drop,
    /// Jump back: the `len` samples before the join play again.
    Insert,
}

/// An edit the latency control planned, waiting for the cursor to reach its join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edit {
    pub(crate) kind: EditKind,
    /// Store index at which the cursor jumps.
    pub(crate) at: u64,
    pub(crate) len: usize,
}

/// What [`Feeder::fill`] ran into, for the buffer to act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Filled {
    /// The buffer ran dry while playing.
    pub(crate) underrun: bool,
    /// An edit was carried out: the delay moved by this many samples (negative: a drop).
    pub(crate) edited: i64,
}

/// Everything that feeds wire-rate samples to the resampler.
#[derive(Debug)]
pub(crate) struct Feeder {
    pub(crate) store: SampleRing,
    pub(crate) concealer: Concealer,
    splice: Splice,
    pub(crate) state: State,
    /// Audio has played since the last resync: silence from now on is concealment.
    pub(crate) started: bool,
    /// How far past the newest audio received the cursor may conceal before calling it an
    /// underrun: one frame, so that one lost packet at the tail is a gap, not a stall.
    loss_allowance: u64,
    planned: Option<Edit>,
    /// The piece an insert plays again; `inject_pos..inject_len` of it is still to play.
    inject: Vec<f32>,
    inject_pos: usize,
    inject_len: usize,
    pub(crate) underruns: u64,
    pub(crate) concealed_samples: u64,
    pub(crate) concealment_events: u64,
    pub(crate) inserted_samples: u64,
    pub(crate) edit_dropped_samples: u64,
    pub(crate) edits: u64,
    /// Where a drop after a stall may land: the audio before the jump, and the stretch its
    /// join is looked for in ([`Self::drop_oldest`]).
    jump_from: Vec<f32>,
    jump_to: Vec<f32>,
}

impl Feeder {
    /// `capacity`: store samples; `max_edit`: the longest insert; `jump_reach`: how much less
    /// than asked a drop after a stall may take to join well; the rest as in `mod.rs`.
    pub(crate) fn new(
        capacity: usize,
        concealer: Concealer,
        splice: Splice,
        loss_allowance: u64,
        max_edit: usize,
        jump_reach: usize,
    ) -> Self {
        let window = splice.len();
        Feeder {
            store: SampleRing::new(capacity),
            concealer,
            splice,
            state: State::Idle,
            started: false,
            loss_allowance,
            planned: None,
            inject: vec![0.0; max_edit],
            inject_pos: 0,
            inject_len: 0,
            underruns: 0,
            concealed_samples: 0,
            concealment_events: 0,
            inserted_samples: 0,
            edit_dropped_samples: 0,
            edits: 0,
            jump_from: vec![0.0; window],
            jump_to: vec![0.0; jump_reach + window],
        }
    }

    /// Samples an insert in progress has still to play.
    pub(crate) fn injecting(&self) -> usize {
        self.inject_len - self.inject_pos
    }

    /// Whether an edit is planned or still playing out; then no other may be planned.
    pub(crate) fn editing(&self) -> bool {
        self.planned.is_some() || self.injecting() > 0
    }

    /// Plans an edit; for an insert, `piece` is the audio to play again (what precedes the join).
    pub(crate) fn plan(&mut self, edit: Edit, piece: &[f32]) {
        debug_assert!(!self.editing());
        if edit.kind == EditKind::Insert {
            self.inject[..piece.len()].copy_from_slice(piece);
        }
        self.planned = Some(edit);
    }

    /// Forgets a planned edit (the stream restarted, or the buffer dropped past it).
    pub(crate) fn cancel_edit(&mut self) {
        self.planned = None;
        self.inject_pos = 0;
        self.inject_len = 0;
    }

    /// Fills `buf` with what plays next.
    pub(crate) fn fill(&mut self, buf: &mut [f32]) -> Filled {
        let mut result = Filled::default();
        let mut filled = 0;
        while filled < buf.len() {
            let seg = &mut buf[filled..];
            if self.state != State::Playing {
                self.conceal(seg);
                filled = buf.len();
                continue;
            }
            if self.injecting() > 0 {
                let n = seg.len().min(self.injecting());
                let seg = &mut seg[..n];
                seg.copy_from_slice(&self.inject[self.inject_pos..self.inject_pos + n]);
                self.inject_pos += n;
                self.splice.apply(seg);
                self.concealer.remember(seg);
                filled += n;
                continue;
            }
            let cursor = self.store.cursor();
            let mut limit = seg.len();
            if let Some(edit) = self.planned {
                if edit.at == cursor {
                    result.edited += self.execute(edit);
                    continue;
                }
                if edit.at < cursor {
                    self.planned = None;
                } else {
                    limit = limit.min((edit.at - cursor) as usize);
                }
            }
            match self.store.next_run(limit) {
                Run::Data(n) => {
                    let seg = &mut seg[..n];
                    if self.concealer.is_active() {
                        let concealer = &mut self.concealer;
                        self.splice.start(|old| concealer.conceal(old));
                        concealer.end();
                    }
                    self.store.take(seg);
                    self.splice.apply(seg);
                    self.concealer.remember(seg);
                    self.started = true;
                    filled += n;
                }
                Run::Hole(n) => {
                    // The join's audio is no longer all there: plan again later.
                    self.planned = None;
                    if !self.concealer.is_active() {
                        self.concealment_events += 1;
                    }
                    self.conceal(&mut seg[..n]);
                    self.store.skip(n as u64);
                    filled += n;
                }
                Run::Empty => {
                    self.planned = None;
                    if !self.concealer.is_active() {
                        self.concealment_events += 1;
                    }
                    let allowed_until = self.store.end() + self.loss_allowance;
                    if cursor < allowed_until {
                        // Perhaps only the next packet is lost: conceal it and move on, as
                        // for a hole. If the one after it does not come either, it is a stall.
                        let n = seg.len().min((allowed_until - cursor) as usize);
                        self.conceal(&mut seg[..n]);
                        self.store.skip(n as u64);
                        filled += n;
                        continue;
                    }
                    self.underruns += 1;
                    self.state = State::Buffering;
                    result.underrun = true;
                }
            }
        }
        result
    }

    /// Carries out `edit` at the cursor; returns how many samples it added (negative: dropped).
    fn execute(&mut self, edit: Edit) -> i64 {
        self.planned = None;
        // What would have played, cross-faded into what plays instead.
        let store = &self.store;
        self.splice.start(|old| store.peek(old));
        self.edits += 1;
        match edit.kind {
            EditKind::Drop => {
                self.store.skip(edit.len as u64);
                self.edit_dropped_samples += edit.len as u64;
                -(edit.len as i64)
            }
            EditKind::Insert => {
                self.inject_pos = 0;
                self.inject_len = edit.len;
                self.inserted_samples += edit.len as u64;
                edit.len as i64
            }
        }
    }

    fn conceal(&mut self, seg: &mut [f32]) {
        self.concealer.conceal(seg);
        self.splice.apply(seg);
        if self.started {
            self.concealed_samples += seg.len() as u64;
        }
    }

    /// Drops about `n` samples at the cursor, cross-fading from them into what follows; returns
    /// how many. It may drop up to the jump reach fewer, wherever the audio after the jump best
    /// continues the audio it replaces (in a tone, a whole number of periods on): a drop that
    /// falls anywhere jumps the phase, which is heard as a click.
    pub(crate) fn drop_oldest(&mut self, n: u64) -> u64 {
        self.cancel_edit();
        let n = self.best_jump(n);
        let store = &self.store;
        self.splice.start(|old| store.peek(old));
        self.store.skip(n);
        n
    }

    /// The drop of at most `n` and at least `n - reach` samples whose join costs least.
    fn best_jump(&mut self, n: u64) -> u64 {
        let window = self.jump_from.len();
        let reach = (self.jump_to.len() - window).min(n.saturating_sub(1) as usize);
        if reach == 0 {
            return n;
        }
        let shortest = n - reach as u64;
        self.store.peek_at(0, &mut self.jump_from);
        self.store
            .peek_at(shortest, &mut self.jump_to[..reach + window]);
        // The longest drop wins ties: it is the one asked for.
        let (mut best, mut best_cost) = (reach, f32::INFINITY);
        for k in (0..=reach).rev() {
            let cost = join_cost(&self.jump_from, &self.jump_to[k..k + window]);
            if cost < best_cost {
                (best, best_cost) = (k, cost);
            }
        }
        shortest + best as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 48_000.0;
    const SPLICE: usize = 96;
    const REACH: usize = 576;

    fn tone(freq: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (0.5 * (2.0 * core::f64::consts::PI * freq * i as f64 / RATE).sin()) as f32)
            .collect()
    }

    /// A feeder playing `audio`, its cursor at the start.
    fn playing(audio: &[f32]) -> Feeder {
        let mut feeder = Feeder::new(
            1 << 16,
            Concealer::new(480, 1440),
            Splice::new(SPLICE),
            480,
            1920,
            REACH,
        );
        feeder.store.insert(0, audio);
        feeder.store.start_playing();
        feeder.state = State::Playing;
        feeder
    }

    #[test]
    fn a_drop_after_a_stall_lands_where_the_tone_goes_on_unbroken() {
        // Tones whose periods are not whole samples, drops of any length: the jump lands a
        // whole number of periods on (within a sample), so the cross-fade mixes two copies of
        // one phase and the output stays the tone, never dipping. Some cases fixed, the rest
        // drawn: any tone whose period fits the reach, any drop the audio holds.
        let mut rng = crate::testing::Rng::from_env();
        let fixed = [
            (437.0, 9_001u64),
            (1_234.5, 4_800),
            (97.3, 20_000),
            (3_001.0, 777),
        ];
        let drawn: Vec<(f64, u64)> = (0..8)
            .map(|_| (rng.range(90.0, 4_000.0), rng.range(600.0, 36_000.0) as u64))
            .collect();
        for (freq, asked) in fixed.into_iter().chain(drawn) {
            let audio = tone(freq, 40_000);
            let mut feeder = playing(&audio);
            let mut out = vec![0.0; 1_000];
            feeder.fill(&mut out);
            let dropped = feeder.drop_oldest(asked);
            assert!(
                dropped <= asked && dropped + REACH as u64 >= asked,
                "{freq} Hz: {dropped}"
            );
            let mut after = vec![0.0; 2_000];
            feeder.fill(&mut after);
            let period = RATE / freq;
            let off = (dropped as f64 / period)
                .fract()
                .min(1.0 - (dropped as f64 / period).fract());
            assert!(
                off * period < 1.0,
                "{freq} Hz: dropped {dropped}, {:.2} samples off a period",
                off * period
            );
            // No dip: in every stretch of a period the tone still peaks near its amplitude
            // (a join half a period off would mix opposite phases and fall to nothing).
            let span = period.ceil() as usize + 1;
            let lowest = after
                .windows(span)
                .map(|w| w.iter().fold(0.0f32, |m, v| m.max(v.abs())))
                .fold(f32::INFINITY, f32::min);
            assert!(
                lowest > 0.45,
                "{freq} Hz: dropped {dropped}, dips to {lowest}"
            );
            // Past the cross-fade, what plays is the audio from where the drop landed.
            let landed = 1_000 + dropped as usize;
            for (k, v) in after.iter().enumerate().skip(SPLICE) {
                assert!(
                    (v - audio[landed + k]).abs() < 1e-6,
                    "{freq} Hz: sample {k}"
                );
            }
        }
    }

    #[test]
    fn a_drop_in_silence_takes_what_was_asked() {
        let mut feeder = playing(&vec![0.0; 30_000]);
        assert_eq!(feeder.drop_oldest(12_345), 12_345);
    }
}
