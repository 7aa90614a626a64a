//! Whether the uplink keeps up with the audio, sans-IO: a slow network told from a bursty sender.
//!
//! The engine sends each frame as soon as it is framed, and `WebSocket.bufferedAmount` says how
//! many bytes the socket still holds. One reading is no verdict. A browser whose engine wakes in
//! bursts (Firefox's worker: gaps of up to about 20 ms) sends two or three frames at once, and
//! learns that earlier ones left only when its event loop gets round to it, so even a loopback
//! call shows several frames queued now and then; dropping audio on such a reading told people on
//! a fast network that it was too slow. A slow network looks different over time: the backlog
//! never drains. So the verdict is taken at each wake, on what the socket still holds from
//! earlier wakes:
//!
//! - while that backlog drains to at most [`LIMIT_US`] of audio (and at least three frames) at
//!   some wake in every [`SLOW_AFTER_US`], the network keeps up: audio is sent, and only a
//!   backlog above [`CAP_US`] (what a burst may add to the latency) drops a frame;
//! - once it has stayed above that limit at every wake for [`SLOW_AFTER_US`], the network is
//!   slow: audio frames are dropped whenever the socket holds more than the limit, which keeps
//!   the latency there, until a wake finds the backlog drained to half of it.
//!
//! Control frames are never the caller's to drop. What to tell the person is here too
//! ([`too_slow_message`]), so that the advice fits the link.

use crate::link::MOBILE_RATE;

/// Backlog the network may carry at every wake without being called slow, microseconds of audio.
pub const LIMIT_US: u64 = 30_000;
/// How long the backlog must stay above the limit, wake after wake, for the network to be slow.
pub const SLOW_AFTER_US: u64 = 250_000;
/// The most audio the socket may ever hold, microseconds: a bound on the latency a burst (or a
/// network that has not been judged yet) can add.
pub const CAP_US: u64 = 120_000;

/// The uplink's state, fed the socket's `bufferedAmount`.
#[derive(Clone, Debug)]
pub struct Uplink {
    /// [`LIMIT_US`] (or three frames, if longer) in bytes.
    limit: u64,
    /// [`CAP_US`] (or twice the limit, if more) in bytes.
    cap: u64,
    /// Bytes of audio per millisecond, for the figures in the stats.
    bytes_per_ms: f64,
    /// Since when every wake found the backlog above the limit.
    above_since_us: Option<u64>,
    slow: bool,
    /// Largest backlog found at a wake since the last [`Uplink::take_peak_backlog_ms`], bytes.
    peak: u64,
}

impl Uplink {
    /// An uplink for 16-bit mono audio at `wire_rate` Hz in frames of `frame_us`.
    #[must_use]
    pub fn new(wire_rate: u32, frame_us: u32) -> Self {
        let bytes_per_us = 2.0 * f64::from(wire_rate) / 1e6;
        let limit_us = LIMIT_US.max(3 * u64::from(frame_us));
        let limit = (limit_us as f64 * bytes_per_us) as u64;
        Self {
            limit,
            cap: ((CAP_US as f64 * bytes_per_us) as u64).max(2 * limit),
            bytes_per_ms: bytes_per_us * 1e3,
            above_since_us: None,
            slow: false,
            peak: 0,
        }
    }

    /// The engine woke at `now_us`, before sending anything, and the socket holds `buffered`
    /// bytes from earlier wakes.
    pub fn woke(&mut self, now_us: u64, buffered: u64) {
        self.peak = self.peak.max(buffered);
        if buffered <= self.limit {
            self.above_since_us = None;
        } else {
            let since = *self.above_since_us.get_or_insert(now_us);
            if now_us.saturating_sub(since) >= SLOW_AFTER_US {
                self.slow = true;
            }
        }
        if self.slow && buffered <= self.limit / 2 {
            self.slow = false;
        }
    }

    /// Whether an audio frame may be sent while the socket holds `buffered` bytes; `false`
    /// means drop it (and count it).
    #[must_use]
    pub fn admits_audio(&self, buffered: u64) -> bool {
        buffered <= if self.slow { self.limit } else { self.cap }
    }

    /// Whether the network is judged too slow for the audio now.
    #[must_use]
    pub fn is_slow(&self) -> bool {
        self.slow
    }

    /// The largest backlog found at a wake since the last call, milliseconds of audio.
    pub fn take_peak_backlog_ms(&mut self) -> f64 {
        core::mem::take(&mut self.peak) as f64 / self.bytes_per_ms
    }

    /// A new connection: what the old socket held is gone with it.
    pub fn reset(&mut self) {
        self.above_since_us = None;
        self.slow = false;
    }
}

/// What the page tells the person when audio frames are being dropped on a link of `wire_rate`:
/// the mobile link where it would carry less, other advice where the link is already that light.
#[must_use]
pub fn too_slow_message(wire_rate: u32) -> String {
    let khz = f64::from(wire_rate) / 1000.0;
    if wire_rate > MOBILE_RATE {
        format!("your connection is too slow for {khz} kHz — try the mobile link")
    } else {
        format!(
            "your connection is too slow for {khz} kHz, so some of your audio is lost — a \
             steadier network (closer to the Wi-Fi, or wired) would help"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use line_protocol::testing::Rng;

    /// A sender of `frame_us` frames at 200 kHz (4000 bytes each, header aside) whose engine
    /// wakes every `wake()` microseconds and sends what was framed meanwhile, into a socket that
    /// moves `capacity` bytes a second and tells the sender about bytes gone only `ack_lag_us`
    /// after they left (a browser that learns it from its event loop).
    struct Sim {
        uplink: Uplink,
        frame_bytes: u64,
        frame_us: u64,
        capacity: f64,
        ack_lag_us: u64,
        /// Bytes handed to the socket, and how many of them have left, in all.
        queued: u64,
        left: f64,
        /// (when, bytes left by then): what the sender will learn, oldest first.
        acks: std::collections::VecDeque<(u64, u64)>,
        acked: u64,
        now: u64,
        framed_until: u64,
        sent: u64,
        dropped: u64,
        /// The largest backlog and the largest backlog the sender saw, bytes.
        worst_real: u64,
        worst_seen: u64,
        /// Times a reading exceeded the old one-reading limit (30 ms of audio).
        old_rule_drops: u64,
    }

    impl Sim {
        fn new(capacity_share: f64, ack_lag_us: u64) -> Self {
            let frame_us = 10_000;
            let frame_bytes = 4_000;
            Self {
                uplink: Uplink::new(200_000, frame_us as u32),
                frame_bytes,
                frame_us,
                capacity: capacity_share * frame_bytes as f64 * 1e6 / frame_us as f64,
                ack_lag_us,
                queued: 0,
                left: 0.0,
                acks: Default::default(),
                acked: 0,
                now: 0,
                framed_until: 0,
                sent: 0,
                dropped: 0,
                worst_real: 0,
                worst_seen: 0,
                old_rule_drops: 0,
            }
        }

        /// The network runs for `dt_us` at `share` of its capacity.
        fn network(&mut self, dt_us: u64, share: f64) {
            let step = 500;
            let mut t = 0;
            while t < dt_us {
                let dt = step.min(dt_us - t);
                self.left =
                    (self.left + share * self.capacity * dt as f64 / 1e6).min(self.queued as f64);
                t += dt;
                self.acks
                    .push_back((self.now + t + self.ack_lag_us, self.left as u64));
            }
            self.now += dt_us;
            while self.acks.front().is_some_and(|&(at, _)| at <= self.now) {
                self.acked = self.acks.pop_front().unwrap().1;
            }
        }

        fn buffered(&self) -> u64 {
            self.queued - self.acked
        }

        /// One wake after `gap_us` with the network at `share`: frames go out.
        fn wake(&mut self, gap_us: u64, share: f64) {
            self.network(gap_us, share);
            self.worst_real = self.worst_real.max(self.queued - self.left as u64);
            self.uplink.woke(self.now, self.buffered());
            while self.framed_until + self.frame_us <= self.now {
                self.framed_until += self.frame_us;
                let buffered = self.buffered();
                self.worst_seen = self.worst_seen.max(buffered);
                if buffered > self.uplink.limit {
                    self.old_rule_drops += 1;
                }
                if self.uplink.admits_audio(buffered) {
                    self.queued += self.frame_bytes;
                    self.sent += 1;
                } else {
                    self.dropped += 1;
                }
            }
        }

        fn ms(&self, bytes: u64) -> f64 {
            bytes as f64 / (self.frame_bytes as f64 / (self.frame_us as f64 / 1e3))
        }
    }

    #[test]
    fn a_bursty_sender_on_a_fast_network_drops_nothing() {
        let mut rng = Rng::from_env();
        // Wakes every 2-5 ms with a gap of up to 20 ms now and then, and 25 ms before the
        // sender hears that bytes left: what Firefox's engine looks like on loopback.
        let mut sim = Sim::new(20.0, 25_000);
        for _ in 0..30_000 {
            let gap = if rng.range(0.0, 1.0) < 0.1 {
                rng.range(10_000.0, 20_000.0)
            } else {
                rng.range(2_000.0, 5_000.0)
            };
            sim.wake(gap as u64, 1.0);
        }
        assert!(
            sim.old_rule_drops > 0,
            "the bursts exceed one reading's limit (they are bursts)"
        );
        assert_eq!(sim.dropped, 0, "{} frames dropped", sim.dropped);
        assert!(!sim.uplink.is_slow());
        // Whatever it saw, the socket never truly held more than the bursts.
        assert!(sim.ms(sim.worst_real) <= 25.0, "{}", sim.ms(sim.worst_real));
    }

    #[test]
    fn a_slow_network_is_found_and_its_latency_bounded() {
        let mut rng = Rng::from_env();
        let share = rng.range(0.3, 0.9);
        let mut sim = Sim::new(share, rng.range(0.0, 5_000.0) as u64);
        let mut slow_at = None;
        for _ in 0..3_000 {
            sim.wake(rng.range(2_000.0, 5_000.0) as u64, 1.0);
            if sim.uplink.is_slow() && slow_at.is_none() {
                slow_at = Some(sim.now);
            }
        }
        let slow_at = slow_at.expect("a network carrying part of the audio is found slow");
        assert!(slow_at <= 600_000, "found slow only after {slow_at} us");
        // About the share the network cannot carry is dropped, enough for the notice...
        let carried = sim.sent as f64 / (sim.sent + sim.dropped) as f64;
        assert!((carried - share).abs() < 0.1, "{carried} against {share}");
        // ...and the backlog never exceeded the cap, nor stays above the limit once found.
        assert!(
            sim.ms(sim.worst_real) <= CAP_US as f64 / 1e3 + 10.0,
            "{}",
            sim.ms(sim.worst_real)
        );
        for _ in 0..100 {
            sim.wake(3_000, 1.0);
        }
        assert!(sim.ms(sim.buffered()) <= LIMIT_US as f64 / 1e3 + 10.0);
    }

    #[test]
    fn a_stall_costs_at_most_the_cap_and_the_network_recovers() {
        let mut sim = Sim::new(3.0, 1_000);
        for _ in 0..200 {
            sim.wake(3_000, 1.0);
        }
        // Half a second with nothing leaving (a retransmission, a Wi-Fi scan).
        for _ in 0..170 {
            sim.wake(3_000, 0.0);
        }
        assert!(sim.dropped > 0, "a stall this long fills the cap");
        assert!(sim.ms(sim.worst_real) <= CAP_US as f64 / 1e3 + 10.0);
        let dropped = sim.dropped;
        for _ in 0..1_000 {
            sim.wake(3_000, 1.0);
        }
        assert!(
            !sim.uplink.is_slow(),
            "the backlog drained: the network keeps up again"
        );
        assert!(
            sim.dropped - dropped <= 20,
            "{} more dropped after the stall",
            sim.dropped - dropped
        );
        assert!(sim.ms(sim.buffered()) <= 10.0);
    }

    #[test]
    fn short_frames_keep_three_frames_of_room() {
        let uplink = Uplink::new(48_000, 20_000);
        // 60 ms at 48 kHz, 16-bit: three 20 ms frames.
        assert_eq!(uplink.limit, 5_760);
        assert!(uplink.cap >= 2 * uplink.limit);
    }

    #[test]
    fn the_advice_fits_the_link() {
        let fast = too_slow_message(200_000);
        assert!(
            fast.contains("200 kHz") && fast.contains("mobile link"),
            "{fast}"
        );
        for rate in [48_000, 32_000, 8_000] {
            let message = too_slow_message(rate);
            assert!(!message.contains("mobile"), "{message}");
            assert!(
                message.contains(&format!("{} kHz", rate / 1000)),
                "{message}"
            );
        }
        assert!(too_slow_message(96_000).contains("mobile link"));
        assert!(too_slow_message(44_100).contains("44.1 kHz"));
    }
}
