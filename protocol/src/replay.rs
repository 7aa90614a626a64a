//! A sliding replay window over frame counters, as SRTP's (RFC 3711 section 3.3.2).
//!
//! The window remembers the highest counter seen and which of the [`ReplayWindow::SIZE`] counters
//! below it were seen. A counter above the highest is new; one inside the window is new unless its
//! bit is set; one below the window is refused as too old, because nothing can tell it apart from a
//! replay. At 100 frames a second the window spans 1.28 s, longer than any audio is worth playing.
//!
//! [`check`](ReplayWindow::check) does not change the window, so a receiver can check, then
//! authenticate, and only [`mark`](ReplayWindow::mark) a counter of a frame that proved authentic:
//! a forged frame never moves the window.
//!
//! ```
//! use line_protocol::replay::{ReplayError, ReplayWindow};
//!
//! let mut window = ReplayWindow::new();
//! assert_eq!(window.check(5), Ok(()));
//! window.mark(5);
//! assert_eq!(window.check(5), Err(ReplayError::Duplicate));
//! assert_eq!(window.check(3), Ok(()));
//! window.mark(500);
//! assert_eq!(window.check(3), Err(ReplayError::TooOld));
//! ```

use core::fmt;

/// Which counters of one sender were seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest counter marked, or `None` before the first.
    top: Option<u64>,
    /// Bit `i` is set when counter `top - i` was marked.
    seen: u128,
}

/// Why a counter is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// This counter was already marked.
    Duplicate,
    /// The counter is older than the window, so it may have been seen.
    TooOld,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate => f.write_str("frame counter already seen"),
            Self::TooOld => f.write_str("frame counter older than the replay window"),
        }
    }
}

impl core::error::Error for ReplayError {}

impl ReplayWindow {
    /// Counters the window remembers below the highest one, the highest included.
    pub const SIZE: u64 = u128::BITS as u64;

    /// An empty window: every counter is new.
    #[must_use]
    pub const fn new() -> Self {
        Self { top: None, seen: 0 }
    }

    /// Whether `ctr` would be accepted; changes nothing.
    pub fn check(&self, ctr: u64) -> Result<(), ReplayError> {
        let Some(top) = self.top else { return Ok(()) };
        if ctr > top {
            return Ok(());
        }
        let age = top - ctr;
        if age >= Self::SIZE {
            Err(ReplayError::TooOld)
        } else if self.seen >> age & 1 == 1 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `ctr` as seen, sliding the window forward when it is the new highest. Marking a
    /// counter below the window changes nothing.
    pub fn mark(&mut self, ctr: u64) {
        match self.top {
            Some(top) if ctr <= top => {
                let age = top - ctr;
                if age < Self::SIZE {
                    self.seen |= 1 << age;
                }
            }
            Some(top) => {
                let shift = ctr - top;
                self.seen = if shift >= Self::SIZE {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.top = Some(ctr);
            }
            None => {
                self.seen = 1;
                self.top = Some(ctr);
            }
        }
    }

    /// The highest counter marked so far.
    #[must_use]
    pub const fn highest(&self) -> Option<u64> {
        self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn accept(window: &mut ReplayWindow, ctr: u64) {
        assert_eq!(window.check(ctr), Ok(()), "counter {ctr}");
        window.mark(ctr);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut window = ReplayWindow::new();
        accept(&mut window, 0);
        accept(&mut window, 1);
        assert_eq!(window.check(0), Err(ReplayError::Duplicate));
        assert_eq!(window.check(1), Err(ReplayError::Duplicate));
    }

    #[test]
    fn out_of_order_inside_the_window_is_accepted_once() {
        let mut window = ReplayWindow::new();
        for ctr in [10, 7, 9, 8, 12, 11] {
            accept(&mut window, ctr);
        }
        for ctr in 7..=12 {
            assert_eq!(window.check(ctr), Err(ReplayError::Duplicate));
        }
        // Never seen, still inside the window.
        accept(&mut window, 0);
        assert_eq!(window.highest(), Some(12));
    }

    #[test]
    fn the_window_edge_is_exact() {
        let mut window = ReplayWindow::new();
        accept(&mut window, 1000);
        accept(&mut window, 1000 - (ReplayWindow::SIZE - 1));
        assert_eq!(
            window.check(1000 - ReplayWindow::SIZE),
            Err(ReplayError::TooOld)
        );
    }

    #[test]
    fn a_far_jump_forgets_the_past_but_refuses_it() {
        let mut window = ReplayWindow::new();
        accept(&mut window, 5);
        accept(&mut window, 5 + 10_000);
        assert_eq!(window.check(5), Err(ReplayError::TooOld));
        assert_eq!(window.check(6), Err(ReplayError::TooOld));
        accept(&mut window, 5 + 10_000 - 1);
        accept(&mut window, u64::MAX);
        assert_eq!(window.check(u64::MAX), Err(ReplayError::Duplicate));
    }

    #[test]
    fn a_jump_inside_the_window_keeps_earlier_marks() {
        let mut window = ReplayWindow::new();
        accept(&mut window, 1);
        accept(&mut window, 100);
        assert_eq!(window.check(1), Err(ReplayError::Duplicate));
        accept(&mut window, 2);
    }

    #[test]
    fn checking_does_not_mark() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.check(3), Ok(()));
        assert_eq!(window.check(3), Ok(()));
        window.mark(3);
        assert_eq!(window.check(3), Err(ReplayError::Duplicate));
    }
}
