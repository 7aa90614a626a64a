//! Keeps a kind of log line from flooding the log: anyone can make the server refuse a request,
//! so lines about refusals are allowed a few per interval and the rest are only counted.
//!
//! Sans-IO: the caller passes `now`. A housekeeping timer calls [`LogThrottle::take_suppressed`]
//! once per interval, so the count of lines left out is reported even when no line follows.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_interval` lines per `interval`; the rest are counted.
#[derive(Debug)]
pub struct LogThrottle {
    per_interval: u32,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle allowing `per_interval` lines per `interval`.
    #[must_use]
    pub fn new(per_interval: u32, interval: Duration) -> Self {
        Self {
            per_interval,
            interval,
            state: Mutex::new(State {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be written now; when not, it is counted as suppressed.
    #[must_use]
    pub fn admit(&self, now: Instant) -> bool {
        let mut state = self.lock();
        let expired = state
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.interval);
        if expired {
            state.started = Some(now);
            state.logged = 0;
        }
        if state.logged < self.per_interval {
            state.logged += 1;
            true
        } else {
            state.suppressed += 1;
            false
        }
    }

    /// Lines left out since the last call (for one summary line).
    #[must_use]
    pub fn take_suppressed(&self) -> u64 {
        std::mem::take(&mut self.lock().suppressed)
    }

    /// The interval the allowance is counted over.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("throttle lock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_per_interval_then_a_count() {
        let throttle = LogThrottle::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let admitted = (0..1000).filter(|_| throttle.admit(t0)).count();
        assert_eq!(admitted, 3);
        assert_eq!(throttle.take_suppressed(), 997);
        assert_eq!(throttle.take_suppressed(), 0);
        // Still within the interval: nothing more.
        assert!(!throttle.admit(t0 + Duration::from_secs(9)));
        // A new interval allows three more.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!((0..10).filter(|_| throttle.admit(t1)).count(), 3);
        assert_eq!(throttle.take_suppressed(), 8);
    }
}
