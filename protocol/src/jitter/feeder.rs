//! The feeder: what plays next, at the wire rate, from the store, concealment and planned edits.
//!
//! It hands the rate converter exactly the samples the sender framed, in order, except where it
//! must not: a hole or an underrun is concealed (`conceal.rs`), and an edit planned by the latency
//! control (`latency.rs`) drops or repeats a piece at a chosen join. Every such place is counted,
//! so what reaches the device is the sender's audio sample for sample everywhere else.

use super::conceal::{Concealer, Splice};
use super::edit::JumpSearch;
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
    /// Where a drop after a stall lands ([`Self::drop_oldest`]).
    jump: JumpSearch,
}

impl Feeder {
    /// `capacity`: store samples; `max_edit`: the longest insert; `jump`: where a drop after a
    /// stall joins, up to its reach short of what was asked; the rest as in `mod.rs`.
    pub(crate) fn new(
        capacity: usize,
        concealer: Concealer,
        splice: Splice,
        loss_allowance: u64,
        max_edit: usize,
        jump: JumpSearch,
    ) -> Self {
        // A jump's join is judged over the window its cross-fade then covers.
        debug_assert_eq!(jump.window(), splice.len());
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
            jump,
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
        let reach = self.jump.reach().min(n.saturating_sub(1) as usize);
        if reach == 0 {
            return n;
        }
        let shortest = n - reach as u64;
        let (from, to) = self.jump.buffers(reach);
        self.store.peek_at(0, from);
        self.store.peek_at(shortest, to);
        shortest + self.jump.best(reach) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cross-fade and the reach of a drop after a stall at `rate`, as the buffer sets them.
    fn splice_and_reach(rate: u32) -> (usize, usize) {
        (rate as usize / 500, rate as usize * 12 / 1000)
    }

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * core::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    /// A feeder at `rate` playing `audio`, its cursor at the start.
    fn playing(rate: u32, audio: &[f32]) -> Feeder {
        let (splice, reach) = splice_and_reach(rate);
        let frame = rate as usize / 100;
        let mut feeder = Feeder::new(
            audio.len().next_power_of_two(),
            Concealer::new(frame, 3 * frame),
            Splice::new(splice),
            frame as u64,
            4 * frame,
            JumpSearch::new(rate, splice, reach),
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
        // one phase and the output stays the tone, never dipping. At 48 kHz the search is
        // exact; at 200 kHz coarse, then refined. Some cases fixed, the rest drawn: any tone
        // in 90 Hz-20 kHz (a period fits the reach), any drop the audio holds.
        let mut rng = crate::testing::Rng::from_env();
        let fixed = [
            (437.0, 0.1875),
            (1_234.5, 0.1),
            (97.3, 0.417),
            (3_001.0, 0.0162),
            (19_876.5, 0.05),
        ];
        for rate in [48_000u32, 200_000] {
            let (splice, reach) = splice_and_reach(rate);
            let drawn: Vec<(f64, f64)> = (0..10)
                .map(|_| (rng.range(90.0, 20_000.0), rng.range(0.0125, 0.75)))
                .collect();
            for (freq, asked_s) in fixed.into_iter().chain(drawn) {
                let asked = (asked_s * f64::from(rate)) as u64;
                let lead = rate as usize / 48;
                let audio = tone(freq, rate, rate as usize * 17 / 20);
                let mut feeder = playing(rate, &audio);
                let mut out = vec![0.0; lead];
                feeder.fill(&mut out);
                let dropped = feeder.drop_oldest(asked);
                let case =
                    format!("{rate} Hz, {freq:.1} Hz tone, {asked} asked, {dropped} dropped");
                assert!(
                    dropped <= asked && dropped + reach as u64 >= asked,
                    "{case}"
                );
                let mut after = vec![0.0; 2 * lead];
                feeder.fill(&mut after);
                let period = f64::from(rate) / freq;
                let off = (dropped as f64 / period).fract();
                let off = off.min(1.0 - off) * period;
                assert!(off < 1.0, "{case}: {off:.2} samples off a period");
                // No dip: in every stretch of a period the tone still peaks near its amplitude
                // (a join half a period off would mix opposite phases and fall to nothing).
                // Only where a period spans enough samples for its peak to show.
                if period >= 8.0 {
                    let span = period.ceil() as usize + 1;
                    let lowest = after
                        .windows(span)
                        .map(|w| w.iter().fold(0.0f32, |m, v| m.max(v.abs())))
                        .fold(f32::INFINITY, f32::min);
                    assert!(lowest > 0.45, "{case}: dips to {lowest}");
                }
                // As good a join as trying every lag, within 5 % of the audio's energy: half a
                // sample of phase at 20 kHz, a dip of 0.1 dB in the cross-fade (a join out of
                // phase costs as much as the audio itself).
                let from = &audio[lead..lead + splice];
                let energy: f32 = from.iter().map(|x| 2.0 * x * x).sum();
                let join = |drop: usize| {
                    crate::jitter::edit::join_cost(from, &audio[lead + drop..lead + drop + splice])
                };
                let shortest = asked as usize - reach.min(asked as usize - 1);
                let exhaustive = (shortest..=asked as usize)
                    .map(join)
                    .fold(f32::INFINITY, f32::min);
                let chosen = join(dropped as usize);
                assert!(
                    chosen <= exhaustive + 0.05 * energy,
                    "{case}: join costs {:.4} of the energy, the best {:.4}",
                    chosen / energy,
                    exhaustive / energy
                );
                // Past the cross-fade, what plays is the audio from where the drop landed.
                let landed = lead + dropped as usize;
                for (k, v) in after.iter().enumerate().skip(splice) {
                    assert!((v - audio[landed + k]).abs() < 1e-6, "{case}: sample {k}");
                }
            }
        }
    }

    #[test]
    fn a_drop_in_silence_takes_what_was_asked() {
        for rate in [48_000, 200_000] {
            let mut feeder = playing(rate, &vec![0.0; rate as usize]);
            assert_eq!(feeder.drop_oldest(12_345), 12_345);
        }
    }
}
