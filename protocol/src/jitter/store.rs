//! The reorder store: wire-rate samples placed by their index in the sender's running count.
//!
//! A power-of-two ring holds the samples from the play cursor onwards; a parallel mask says which
//! slots hold audio that arrived. Packets land wherever their first sample says, in any order, so
//! reordering costs nothing and a duplicate is a packet whose slots are all filled already.

/// What became of one pushed packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Insert {
    /// Samples written into empty slots.
    pub(crate) stored: usize,
    /// Every sample of the packet was already held: a duplicate.
    pub(crate) duplicate: bool,
    /// Every sample of the packet is older than the play cursor: it came too late to play.
    pub(crate) late: bool,
    /// Samples dropped from the front so that a far-ahead packet fits.
    pub(crate) dropped: u64,
    /// The store restarted at this packet (first packet, or a jump it could not follow).
    pub(crate) resync: bool,
}

/// What waits at the play cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// This many samples are present from the cursor on (never zero).
    Data(usize),
    /// This many samples are missing from the cursor on, with audio after them (never zero).
    Hole(usize),
    /// Nothing at or after the cursor.
    Empty,
}

/// Packets that far behind the cursor in a row mean the sender restarted its count.
const RESTART_STREAK: u32 = 3;

#[derive(Debug)]
pub(crate) struct SampleRing {
    samples: Vec<f32>,
    present: Vec<bool>,
    /// `samples.len() - 1`; the length is a power of two.
    mask: usize,
    /// How far ahead of the cursor audio may be stored.
    capacity: u64,
    /// Index of the next sample to play.
    cursor: u64,
    /// One past the highest index ever stored.
    end: u64,
    anchored: bool,
    /// Until playback starts, an earlier packet may still move the cursor back.
    may_rewind: bool,
    far_behind_streak: u32,
}

impl SampleRing {
    pub(crate) fn new(capacity: usize) -> Self {
        let len = capacity.next_power_of_two();
        SampleRing {
            samples: vec![0.0; len],
            present: vec![false; len],
            mask: len - 1,
            capacity: capacity as u64,
            cursor: 0,
            end: 0,
            anchored: false,
            may_rewind: true,
            far_behind_streak: 0,
        }
    }

    /// Samples from the cursor to the newest one stored, holes included; zero when the cursor
    /// has moved past everything received (concealing a loss at the tail).
    pub(crate) fn depth(&self) -> u64 {
        self.end.saturating_sub(self.cursor)
    }

    /// Index of the next sample to play.
    pub(crate) fn cursor(&self) -> u64 {
        self.cursor
    }

    /// One past the newest sample received (the cursor may be past it).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Forget everything; the next packet anchors the stream again.
    pub(crate) fn clear(&mut self) {
        self.present.fill(false);
        self.anchored = false;
        self.may_rewind = true;
        self.cursor = 0;
        self.end = 0;
        self.far_behind_streak = 0;
    }

    /// Playback has consumed audio: from now on the cursor only moves forward.
    pub(crate) fn start_playing(&mut self) {
        self.may_rewind = false;
    }

    pub(crate) fn insert(&mut self, first: u64, samples: &[f32]) -> Insert {
        let mut outcome = Insert::default();
        if samples.is_empty() {
            return outcome;
        }
        let Some(last) = first.checked_add(samples.len() as u64) else {
            // An index this close to u64::MAX is garbage, not audio.
            outcome.late = true;
            return outcome;
        };
        if !self.anchored {
            self.anchor(first);
            outcome.resync = true;
        }
        if last.saturating_add(self.capacity) <= self.cursor {
            self.far_behind_streak += 1;
            if self.far_behind_streak < RESTART_STREAK {
                outcome.late = true;
                return outcome;
            }
            self.anchor(first);
            outcome.resync = true;
        } else {
            self.far_behind_streak = 0;
        }
        if first < self.cursor && self.may_rewind && self.end.saturating_sub(first) <= self.capacity
        {
            // A packet older than the first one, reordered, before anything played.
            self.cursor = first;
        }
        if last.saturating_sub(self.cursor) > self.capacity {
            if first >= self.cursor + self.capacity {
                // A jump past everything held: nothing here connects to it.
                outcome.dropped = self.depth();
                self.anchor(first);
                outcome.resync = true;
            } else {
                let new_cursor = last - self.capacity;
                outcome.dropped = new_cursor - self.cursor;
                self.skip(outcome.dropped);
            }
        }
        // Only the part at or after the cursor can still be played.
        let start = first.max(self.cursor);
        if start >= last {
            outcome.late = true;
            return outcome;
        }
        let samples = &samples[(start - first) as usize..];
        let mut stored = 0;
        let mut offset = 0;
        while offset < samples.len() {
            let at = (start + offset as u64) as usize & self.mask;
            let n = (samples.len() - offset).min(self.samples.len() - at);
            stored += self.present[at..at + n].iter().filter(|p| !**p).count();
            self.samples[at..at + n].copy_from_slice(&samples[offset..offset + n]);
            self.present[at..at + n].fill(true);
            offset += n;
        }
        outcome.stored = stored;
        outcome.duplicate = stored == 0;
        self.end = self.end.max(last);
        outcome
    }

    fn anchor(&mut self, first: u64) {
        self.present.fill(false);
        self.cursor = first;
        self.end = first;
        self.anchored = true;
        self.far_behind_streak = 0;
    }

    /// Looks at most `max` samples ahead of the cursor.
    pub(crate) fn next_run(&self, max: usize) -> Run {
        self.run_at(self.cursor, max)
    }

    /// What lies at `index` (at or after the cursor), at most `max` samples and never across the
    /// ring's wrap.
    fn run_at(&self, index: u64, max: usize) -> Run {
        if index >= self.end {
            return Run::Empty;
        }
        let at = index as usize & self.mask;
        let limit = (((self.end - index).min(max as u64)) as usize).min(self.samples.len() - at);
        let slots = &self.present[at..at + limit];
        if slots[0] {
            Run::Data(slots.iter().position(|p| !*p).unwrap_or(limit))
        } else {
            Run::Hole(slots.iter().position(|p| *p).unwrap_or(limit))
        }
    }

    /// Copies `out.len()` samples from the cursor, which [`Self::next_run`] reported present.
    pub(crate) fn take(&mut self, out: &mut [f32]) {
        let at = self.cursor as usize & self.mask;
        out.copy_from_slice(&self.samples[at..at + out.len()]);
        self.present[at..at + out.len()].fill(false);
        self.cursor += out.len() as u64;
    }

    /// Moves the cursor `n` samples on, discarding what was there.
    pub(crate) fn skip(&mut self, n: u64) {
        let n = n.min(self.capacity);
        let mut done = 0;
        while done < n {
            let at = (self.cursor + done) as usize & self.mask;
            let len = ((n - done) as usize).min(self.samples.len() - at);
            self.present[at..at + len].fill(false);
            done += len as u64;
        }
        self.cursor += n;
    }

    /// Copies the samples present from the cursor on, up to the first missing one or
    /// `out.len()`, without consuming them; returns how many.
    pub(crate) fn contiguous(&self, out: &mut [f32]) -> usize {
        let mut copied = 0;
        while copied < out.len() {
            let Run::Data(n) = self.run_at(self.cursor + copied as u64, out.len() - copied) else {
                break;
            };
            let at = (self.cursor + copied as u64) as usize & self.mask;
            out[copied..copied + n].copy_from_slice(&self.samples[at..at + n]);
            copied += n;
        }
        copied
    }

    /// Copies up to `out.len()` samples from the cursor without consuming them; missing ones
    /// read as silence. Used to cross-fade away from audio that is about to be dropped.
    pub(crate) fn peek(&self, out: &mut [f32]) {
        self.peek_at(0, out);
    }

    /// Like [`Self::peek`], from `offset` samples past the cursor.
    pub(crate) fn peek_at(&self, offset: u64, out: &mut [f32]) {
        let from = self.cursor + offset;
        for (i, v) in out.iter_mut().enumerate() {
            let at = (from + i as u64) as usize & self.mask;
            *v = if from + (i as u64) < self.end && self.present[at] {
                self.samples[at]
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(first: u64, n: usize) -> Vec<f32> {
        (0..n).map(|i| (first + i as u64) as f32).collect()
    }

    #[test]
    fn reorders_and_detects_duplicates() {
        let mut ring = SampleRing::new(64);
        assert!(ring.insert(100, &ramp(100, 4)).resync);
        ring.start_playing();
        let later = ring.insert(108, &ramp(108, 4));
        assert_eq!(later.stored, 4);
        assert_eq!(ring.next_run(100), Run::Data(4));
        let mut out = [0.0; 4];
        ring.take(&mut out);
        assert_eq!(out, [100.0, 101.0, 102.0, 103.0]);
        assert_eq!(ring.next_run(100), Run::Hole(4));
        assert_eq!(ring.insert(104, &ramp(104, 4)).stored, 4);
        assert!(ring.insert(104, &ramp(104, 4)).duplicate);
        assert_eq!(ring.next_run(100), Run::Data(8));
        assert!(ring.insert(96, &ramp(96, 4)).late);
    }

    #[test]
    fn wraps_around_the_ring() {
        let mut ring = SampleRing::new(16);
        let mut out = [0.0; 6];
        let mut next = 0;
        for _ in 0..10 {
            ring.insert(next, &ramp(next, 6));
            let Run::Data(n) = ring.next_run(6) else {
                panic!("data expected")
            };
            assert!(n <= 6);
            ring.take(&mut out[..n]);
            if n < 6 {
                assert_eq!(ring.next_run(6), Run::Data(6 - n));
                ring.take(&mut out[n..]);
            }
            assert_eq!(out.to_vec(), ramp(next, 6));
            next += 6;
        }
    }

    #[test]
    fn far_ahead_packet_drops_the_oldest() {
        let mut ring = SampleRing::new(16);
        ring.insert(0, &ramp(0, 8));
        let outcome = ring.insert(12, &ramp(12, 8));
        assert_eq!(outcome.dropped, 4);
        assert_eq!(ring.depth(), 16);
        assert_eq!(ring.next_run(16), Run::Data(4));
        ring.skip(4);
        assert_eq!(ring.next_run(16), Run::Hole(4));
        // A jump past everything held restarts the stream there.
        let jump = ring.insert(100, &ramp(100, 8));
        assert!(jump.resync);
        assert_eq!(jump.dropped, 12);
        assert_eq!(ring.next_run(16), Run::Data(8));
    }

    #[test]
    fn restart_after_a_streak_of_ancient_packets() {
        let mut ring = SampleRing::new(16);
        ring.insert(1000, &ramp(1000, 8));
        ring.start_playing();
        ring.skip(8);
        assert!(ring.insert(0, &ramp(0, 4)).late);
        assert!(ring.insert(4, &ramp(4, 4)).late);
        let third = ring.insert(8, &ramp(8, 4));
        assert!(third.resync && !third.late);
        assert_eq!(ring.next_run(16), Run::Data(4));
    }
}
