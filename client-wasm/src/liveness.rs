//! When to give up on a connection that has not failed but carries nothing: the engine's
//! watchdog, sans-IO (the worker passes `now` and does what [`Liveness::poll`] says).
//!
//! A changed network (Wi-Fi to mobile data) often leaves the old WebSocket open: no close, no
//! error, just nothing arriving, for as long as TCP keeps retrying. In a call the other person's
//! audio arrives every few milliseconds, so silence says the path is gone: the engine drops the
//! socket and reconnects, and its participant id takes its slot back at the relay at once.
//!
//! Silence cannot tell whose path broke. If it was the other person's, this side's reconnect was
//! not needed (it costs a moment), so each silent period in a row waits twice as long before the
//! next reconnect, until the other person is heard again. Alone on the line nothing arrives
//! anyway, so the watchdog sleeps then. A connection that does not open in time is given up too.

/// Silence in a call after which the connection is taken for dead, microseconds: the first time,
/// and the most it doubles to.
const SILENCE_US: (u64, u64) = (2_500_000, 20_000_000);
/// How long a connection may take to open, microseconds.
const OPEN_TIMEOUT_US: u64 = 8_000_000;

/// Why the engine should drop its socket and connect again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The socket did not open in time.
    OpenTimedOut,
    /// In a call, and nothing has arrived for the allowed silence.
    Silent,
}

/// The watchdog's state for the current socket.
#[derive(Clone, Debug)]
pub struct Liveness {
    /// When the socket started connecting, until it opens.
    connecting_since: Option<u64>,
    /// When anything last arrived (or the call started), while in a call.
    in_call_since_heard: Option<u64>,
    /// The silence allowed now.
    allowed_us: u64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// A watchdog with nothing to watch yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            connecting_since: None,
            in_call_since_heard: None,
            allowed_us: SILENCE_US.0,
        }
    }

    /// A new socket started connecting.
    pub fn connecting(&mut self, now_us: u64) {
        self.connecting_since = Some(now_us);
        self.in_call_since_heard = None;
    }

    /// The socket opened.
    pub fn opened(&mut self) {
        self.connecting_since = None;
    }

    /// The socket is gone (closed, or given up).
    pub fn closed(&mut self) {
        self.connecting_since = None;
        self.in_call_since_heard = None;
    }

    /// The relay says the other person is there (`true`) or not.
    pub fn in_call(&mut self, now_us: u64, in_call: bool) {
        self.in_call_since_heard = in_call.then_some(now_us);
    }

    /// Something arrived on the socket; `from_peer` when it was a frame from the other person,
    /// which proves both paths work.
    pub fn heard(&mut self, now_us: u64, from_peer: bool) {
        if let Some(heard) = &mut self.in_call_since_heard {
            *heard = now_us;
        }
        if from_peer {
            self.allowed_us = SILENCE_US.0;
        }
    }

    /// What to do now, if anything. Each verdict is given once per socket.
    pub fn poll(&mut self, now_us: u64) -> Option<Verdict> {
        if let Some(since) = self.connecting_since
            && now_us.saturating_sub(since) >= OPEN_TIMEOUT_US
        {
            self.connecting_since = None;
            return Some(Verdict::OpenTimedOut);
        }
        if let Some(heard) = self.in_call_since_heard
            && now_us.saturating_sub(heard) >= self.allowed_us
        {
            self.in_call_since_heard = None;
            self.allowed_us = (self.allowed_us * 2).min(SILENCE_US.1);
            return Some(Verdict::Silent);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn silence_in_a_call_is_a_dead_connection() {
        let mut l = Liveness::new();
        l.connecting(0);
        l.opened();
        l.in_call(S, true);
        // Audio every 10 ms keeps it alive.
        for t in (S..10 * S).step_by(10_000) {
            l.heard(t, true);
            assert_eq!(l.poll(t), None);
        }
        assert_eq!(l.poll(10 * S + 2_000_000), None);
        assert_eq!(l.poll(10 * S + SILENCE_US.0), Some(Verdict::Silent));
        assert_eq!(l.poll(20 * S), None, "said once");
    }

    #[test]
    fn alone_on_the_line_silence_is_normal() {
        let mut l = Liveness::new();
        l.connecting(0);
        l.opened();
        assert_eq!(l.poll(3600 * S), None);
        l.in_call(3600 * S, true);
        l.in_call(3601 * S, false);
        assert_eq!(l.poll(7200 * S), None);
    }

    #[test]
    fn silence_in_a_row_waits_longer_until_the_peer_is_heard() {
        let mut l = Liveness::new();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            l.connecting(now);
            l.opened();
            l.in_call(now, true);
            // The relay's own messages prove this path, not the other person's.
            l.heard(now, false);
            let start = now;
            while l.poll(now).is_none() {
                now += 100_000;
            }
            waits.push((now - start) / 100_000);
        }
        assert_eq!(waits, [25, 50, 100, 200, 200, 200]);
        l.connecting(now);
        l.opened();
        l.in_call(now, true);
        l.heard(now, true);
        assert_eq!(l.poll(now + SILENCE_US.0), Some(Verdict::Silent));
    }

    #[test]
    fn a_connection_that_does_not_open_is_given_up() {
        let mut l = Liveness::new();
        l.connecting(5 * S);
        assert_eq!(l.poll(5 * S + OPEN_TIMEOUT_US - 1), None);
        assert_eq!(l.poll(5 * S + OPEN_TIMEOUT_US), Some(Verdict::OpenTimedOut));
        assert_eq!(l.poll(60 * S), None);
        l.connecting(100 * S);
        l.opened();
        assert_eq!(l.poll(200 * S), None);
        l.connecting(300 * S);
        l.closed();
        assert_eq!(l.poll(400 * S), None);
    }
}
