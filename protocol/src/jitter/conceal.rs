//! Concealment of missing audio, and the short cross-fades that hide every splice.
//!
//! A gap is filled by repeating the most recent audio, fading linearly to silence, then
//! silence: a lost packet sounds like a brief smear instead of a click, and a long stall does not
//! drone. The repetition runs backwards from the last sample played, then forwards, and so on (a
//! ping-pong loop): every turn joins two equal samples, so unlike a plain loop, whose junctions
//! are steps wherever the audio is not periodic in the loop length, it never clicks. When real audio comes back, or when the buffer drops audio to catch up, the new audio
//! is cross-faded in from what would have played otherwise.

#[derive(Debug)]
pub(crate) struct Concealer {
    /// The last audio played, as a ring; `write` is its oldest sample.
    history: Vec<f32>,
    write: usize,
    /// Samples concealed in the current episode, or `None` while real audio plays.
    position: Option<usize>,
    /// Samples over which the repetition fades to silence.
    fade_len: usize,
}

impl Concealer {
    /// `period` samples of history are repeated; the repeat fades out over `fade_len` samples.
    pub(crate) fn new(period: usize, fade_len: usize) -> Self {
        Concealer {
            history: vec![0.0; period.max(1)],
            write: 0,
            position: None,
            fade_len: fade_len.max(1),
        }
    }

    /// Whether a concealment episode is running.
    pub(crate) fn is_active(&self) -> bool {
        self.position.is_some()
    }

    /// Notes audio that was played, to repeat it if what follows goes missing.
    pub(crate) fn remember(&mut self, played: &[f32]) {
        let period = self.history.len();
        let played = &played[played.len().saturating_sub(period)..];
        let first = played.len().min(period - self.write);
        self.history[self.write..self.write + first].copy_from_slice(&played[..first]);
        self.history[..played.len() - first].copy_from_slice(&played[first..]);
        self.write = (self.write + played.len()) % period;
    }

    /// Fills `out` with concealment, starting an episode if none runs.
    pub(crate) fn conceal(&mut self, out: &mut [f32]) {
        let period = self.history.len();
        // Chronological index `i` of the history (0 the oldest) is `history[(write + i) % period]`.
        let turn = 2 * (period - 1);
        let mut position = self.position.unwrap_or(0);
        for v in out.iter_mut() {
            *v = if position < self.fade_len {
                let gain = 1.0 - position as f32 / self.fade_len as f32;
                let along = if turn == 0 { 0 } else { (position + 1) % turn };
                // Chronological index, bouncing between the newest and the oldest sample.
                let index = (period - 1).abs_diff(along);
                self.history[(self.write + index) % period] * gain
            } else {
                0.0
            };
            position += 1;
        }
        self.position = Some(position.min(self.fade_len));
    }

    /// Real audio plays again; the repeated history stays for the next gap.
    pub(crate) fn end(&mut self) {
        self.position = None;
    }

    /// Forgets the history: what follows is unrelated audio.
    pub(crate) fn clear(&mut self) {
        self.history.fill(0.0);
        self.position = None;
    }
}

/// A pending cross-fade from the audio that would have played to the audio that plays instead.
#[derive(Debug)]
pub(crate) struct Splice {
    old: Vec<f32>,
    /// Next sample of `old` to mix in; `old.len()` when no fade is pending.
    position: usize,
}

impl Splice {
    pub(crate) fn new(len: usize) -> Self {
        let len = len.max(1);
        Splice {
            old: vec![0.0; len],
            position: len,
        }
    }

    /// Samples a cross-fade lasts.
    pub(crate) fn len(&self) -> usize {
        self.old.len()
    }

    /// Starts a cross-fade; `fill` writes what the old path would have played next.
    pub(crate) fn start(&mut self, fill: impl FnOnce(&mut [f32])) {
        fill(&mut self.old);
        self.position = 0;
    }

    /// Mixes the pending cross-fade into the start of `new`.
    pub(crate) fn apply(&mut self, new: &mut [f32]) {
        let len = self.old.len();
        for v in new.iter_mut() {
            if self.position >= len {
                return;
            }
            let w = (self.position + 1) as f32 / (len + 1) as f32;
            *v = *v * w + self.old[self.position] * (1.0 - w);
            self.position += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_period_back_and_forth_then_fades_to_silence() {
        let mut c = Concealer::new(4, 8);
        c.remember(&[9.0, 9.0, 1.0, 2.0, 3.0, 4.0]);
        let mut out = [0.0; 12];
        c.conceal(&mut out);
        assert!(c.is_active());
        let expected = [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0];
        for (i, (o, e)) in out.iter().zip(expected).enumerate() {
            assert!((o - e * (1.0 - i as f32 / 8.0)).abs() < 1e-6, "sample {i}");
        }
        assert_eq!(&out[8..], &[0.0; 4]);
    }

    #[test]
    fn history_wraps_across_small_writes() {
        let mut c = Concealer::new(3, 100);
        for v in 1..=7 {
            c.remember(&[v as f32]);
        }
        let mut out = [0.0; 4];
        c.conceal(&mut out);
        assert!((out[0] - 6.0).abs() < 1e-6);
        assert!((out[1] - 5.0 * 0.99).abs() < 1e-5);
        assert!((out[2] - 6.0 * 0.98).abs() < 1e-5);
        assert!((out[3] - 7.0 * 0.97).abs() < 1e-5);
    }

    #[test]
    fn splice_fades_from_old_to_new() {
        let mut s = Splice::new(3);
        s.start(|old| old.fill(1.0));
        let mut new = [0.0; 5];
        s.apply(&mut new);
        assert!((new[0] - 0.75).abs() < 1e-6);
        assert!((new[1] - 0.5).abs() < 1e-6);
        assert!((new[2] - 0.25).abs() < 1e-6);
        assert_eq!(&new[3..], &[0.0, 0.0]);
    }
}
