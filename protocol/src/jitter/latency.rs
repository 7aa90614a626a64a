//! Latency control: bringing the buffer delay to its target by editing the audio, not its speed.
//!
//! When the delay has been off its target by more than [`THRESHOLD`] (or a few times the noise of
//! the delay measurement, where that is larger), the control looks in the
//! audio already buffered for a join (`edit.rs`) that drops (delay too long) or repeats (too
//! short) about the difference, and plans it in the feeder. It takes a join at once if it is
//! inaudible (a [`GOOD_JOIN`]: silence, or a whole number of periods of the sound), and otherwise
//! looks again every [`SEARCH_EVERY`] as new audio arrives, for at most [`PATIENCE`]: speech has a
//! pause every second or so. After that, or when the error is large, it takes the best join it
//! finds. Every edit is counted ([`super::JitterStats::edits`]).

use super::edit::SpliceFinder;
use super::feeder::{Edit, EditKind, Feeder};

/// Delay error that starts an edit, seconds: above the delay average's own noise.
pub(crate) const THRESHOLD: f64 = 0.002;
/// Longest single edit, seconds; larger errors take several.
pub(crate) const MAX_EDIT: f64 = 0.04;
/// The threshold is at least this many times the delay measurement's own noise...
const NOISE_MARGIN: f64 = 3.0;
/// ...but no more than this, seconds.
const MAX_THRESHOLD: f64 = 0.005;
/// A join whose difference energy is below this share of the audio's is taken at once.
const GOOD_JOIN: f32 = 0.02;
/// How often to look again for a good join while an edit is wanted, seconds.
const SEARCH_EVERY: f64 = 0.02;
/// How long to wait for a good join before taking the best one, seconds.
const PATIENCE: f64 = 1.0;
/// An error this many times the threshold is taken care of at once, seconds.
const URGENT: f64 = 8.0;
/// The join length may be this far from the amount wanted, seconds, so that a join can be a
/// whole number of periods of a sound (down to 333 Hz; lower voices wait for a pause). Below
/// the threshold, so that one edit is enough.
const SLACK: f64 = 0.0015;
/// How far past the amount wanted the join may lie, seconds: the positions searched.
const SPAN: f64 = 0.02;

#[derive(Debug)]
pub(crate) struct LatencyControl {
    rate: f64,
    finder: SpliceFinder,
    /// The audio from the cursor on, copied out of the store for the search.
    lookahead: Vec<f32>,
    /// Since when an edit has been wanted, seconds.
    wanted_since: Option<f64>,
    next_search: f64,
}

impl LatencyControl {
    /// For audio at `rate`, joining over `window` samples.
    pub(crate) fn new(rate: u32, window: usize) -> Self {
        let rate_f = f64::from(rate);
        let max_edit = (MAX_EDIT * rate_f) as usize;
        let slack = (SLACK * rate_f) as usize;
        let lookahead = max_edit + slack + window + (SPAN * rate_f) as usize;
        LatencyControl {
            rate: rate_f,
            finder: SpliceFinder::new(rate, window, lookahead),
            lookahead: vec![0.0; lookahead],
            wanted_since: None,
            next_search: f64::NEG_INFINITY,
        }
    }

    /// Longest edit, samples: what the feeder's insert buffer must hold.
    pub(crate) fn max_edit(&self) -> usize {
        ((MAX_EDIT + SLACK) * self.rate) as usize
    }

    /// Before each chunk while playing: `error` is the delay minus the target, and `noise` how
    /// much the delay measurement wanders by itself, seconds.
    pub(crate) fn update(&mut self, now: f64, error: f64, noise: f64, feeder: &mut Feeder) {
        // The band the delay may wander in: up to a threshold above the target, but hardly below
        // it, since the target's margin is what keeps the late packets in time.
        let threshold = (NOISE_MARGIN * noise).clamp(THRESHOLD, MAX_THRESHOLD);
        let outside = error > threshold || error < -threshold / 4.0;
        if !outside || feeder.editing() {
            if !feeder.editing() {
                self.wanted_since = None;
            }
            return;
        }
        let since = *self.wanted_since.get_or_insert(now);
        if now < self.next_search {
            return;
        }
        self.next_search = now + SEARCH_EVERY;
        let kind = if error > 0.0 {
            EditKind::Drop
        } else {
            EditKind::Insert
        };
        // Across the band: whatever pushed the delay out (drift, or a device losing time) will
        // likely push it the same way again, and this way that takes longest.
        let aim = if kind == EditKind::Drop {
            0.0
        } else {
            threshold / 2.0
        };
        let amount = (error - aim).abs().min(MAX_EDIT);
        let wanted = (amount * self.rate) as usize;
        let slack = (SLACK * self.rate).min(amount * self.rate / 4.0) as usize;
        // Only audio that is all there can be searched: up to the first hole.
        let span = wanted + slack + self.finder.window() + (SPAN * self.rate) as usize;
        let available = feeder.store.contiguous(&mut self.lookahead[..span]);
        let audio = &self.lookahead[..available];
        let Some(join) = self.finder.find(audio, wanted - slack, wanted + slack) else {
            return;
        };
        let urgent = error.abs() > URGENT * threshold;
        if join.relative_cost > GOOD_JOIN && !urgent && now - since < PATIENCE {
            return;
        }
        let cursor = feeder.store.cursor();
        let edit = match kind {
            EditKind::Drop => Edit {
                kind,
                at: cursor + join.at as u64,
                len: join.len,
            },
            EditKind::Insert => Edit {
                kind,
                at: cursor + (join.at + join.len) as u64,
                len: join.len,
            },
        };
        feeder.plan(edit, &audio[join.at..join.at + join.len]);
        self.wanted_since = None;
    }
}
