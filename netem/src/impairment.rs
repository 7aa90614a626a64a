//! The impairment itself, sans-IO: packets and `now` in, packets out when they are due.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use crate::profile::Profile;

/// Which way a packet travels on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the near side (the clients) to the far side (the server).
    Up,
    /// From the far side to the near side.
    Down,
}

impl Direction {
    /// Both directions, `Up` first.
    pub const BOTH: [Self; 2] = [Self::Up, Self::Down];

    const fn index(self) -> usize {
        match self {
            Self::Up => 0,
            Self::Down => 1,
        }
    }
}

/// The most packets one direction holds at once. A link with no bottleneck holds what arrives
/// within its delay; this bounds the memory whatever arrives (16 384 full-size packets: 24 MiB).
pub const MAX_IN_FLIGHT: usize = 16_384;

/// How long a packet chosen for reordering is held back at least, beyond its delay.
const MIN_REORDER_HOLD: Duration = Duration::from_millis(2);

/// What happened to the packets of one direction so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Packets that entered.
    pub packets: u64,
    /// Their bytes (IP packets, headers included).
    pub bytes: u64,
    /// Packets that left, at their time.
    pub delivered: u64,
    /// Dropped at random ([`Profile::loss`]).
    pub lost: u64,
    /// Dropped because the link was out ([`Netem::start_outage`]).
    pub outage_dropped: u64,
    /// Dropped because the bottleneck's queue was full, or [`MAX_IN_FLIGHT`] were in flight.
    pub queue_dropped: u64,
    /// Held back so that the packets after them overtake them ([`Profile::reorder`]).
    pub reordered: u64,
}

/// A link between two sides, each direction impaired as its [`Profile`] says.
///
/// Sans-IO, like quinn-proto's `Connection`: the caller hands in each packet with
/// [`push`](Self::push) when it arrives, asks [`poll_timeout`](Self::poll_timeout) when the next
/// one is due, and takes due packets with [`poll_packet`](Self::poll_packet) until it returns
/// `None`. It reads no clock and opens no device, so tests run it on a virtual clock.
///
/// Every packet draws its three random numbers (loss, jitter, reordering) whatever becomes of it,
/// so the n-th packet of a direction meets the same fate under the same seed.
///
/// ```
/// use std::time::{Duration, Instant};
/// use line_netem::{Direction, Netem, Profile};
///
/// let mut link = Netem::new(Profile::HOME, 7);
/// let t0 = Instant::now();
/// link.push(t0, Direction::Up, vec![0x45; 60]);
/// assert_eq!(link.poll_packet(t0), None, "nothing is due yet");
/// let due = link.poll_timeout().expect("a packet is in flight");
/// assert!(due - t0 >= Duration::from_millis(8) && due - t0 <= Duration::from_millis(12));
/// assert_eq!(link.poll_packet(due), Some((Direction::Up, vec![0x45; 60])));
/// ```
#[derive(Debug)]
pub struct Netem {
    profile: Profile,
    directions: [Lane; 2],
    /// The link is out from the first instant until the second.
    outage: Option<(Instant, Instant)>,
}

impl Netem {
    /// A link impaired by `profile`, its random draws seeded by `seed`.
    #[must_use]
    pub fn new(profile: Profile, seed: u64) -> Self {
        let lane = |d: Direction| {
            // One stream per direction, both from the one seed.
            Lane::new(seed.wrapping_add(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(d.index() as u64)))
        };
        Self {
            profile,
            directions: [lane(Direction::Up), lane(Direction::Down)],
            outage: None,
        }
    }

    /// The profile that packets arriving now meet.
    #[must_use]
    pub const fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Changes the profile for packets arriving from now on; those in flight keep their times.
    pub fn set_profile(&mut self, profile: Profile) {
        self.profile = profile;
    }

    /// Takes the link down for `length` from `now`: packets arriving meanwhile, and packets in
    /// flight that would have arrived meanwhile, are dropped, as when a radio loses its network.
    pub fn start_outage(&mut self, now: Instant, length: Duration) {
        self.outage = Some((now, now + length));
    }

    /// Whether the link is out at `now`.
    #[must_use]
    pub fn is_out(&self, now: Instant) -> bool {
        self.outage
            .is_some_and(|(from, until)| from <= now && now < until)
    }

    /// A packet enters the link going `direction` at `now`.
    pub fn push(&mut self, now: Instant, direction: Direction, packet: Vec<u8>) {
        let out = self.is_out(now);
        let profile = self.profile;
        self.directions[direction.index()].push(now, &profile, out, packet);
    }

    /// When the next packet is due, if any is in flight.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.directions.iter().filter_map(Lane::next_due).min()
    }

    /// The next packet due at `now` and which way it goes, earliest first; `None` when nothing
    /// more is due yet.
    #[must_use]
    pub fn poll_packet(&mut self, now: Instant) -> Option<(Direction, Vec<u8>)> {
        loop {
            let (direction, at) = Direction::BOTH
                .into_iter()
                .filter_map(|d| self.directions[d.index()].next_due().map(|at| (d, at)))
                .filter(|&(_, at)| at <= now)
                .min_by_key(|&(_, at)| at)?;
            let out = self.is_out(at);
            let lane = &mut self.directions[direction.index()];
            let packet = lane.pop();
            if out {
                lane.stats.outage_dropped += 1;
                continue;
            }
            lane.stats.delivered += 1;
            return Some((direction, packet));
        }
    }

    /// What happened to the packets going `direction` so far.
    #[must_use]
    pub fn stats(&self, direction: Direction) -> DirectionStats {
        self.directions[direction.index()].stats
    }
}

/// One direction of the link.
#[derive(Debug)]
struct Lane {
    rng: StdRng,
    /// When the bottleneck will have sent everything queued at it.
    bottleneck_free: Option<Instant>,
    /// When the last packet that keeps its order leaves: no later one leaves before it.
    last_in_order: Option<Instant>,
    in_flight: BinaryHeap<Reverse<Scheduled>>,
    /// Breaks ties between packets due at the same instant: first in, first out.
    next_seq: u64,
    stats: DirectionStats,
}

impl Lane {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            bottleneck_free: None,
            last_in_order: None,
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            stats: DirectionStats::default(),
        }
    }

    fn push(&mut self, now: Instant, p: &Profile, out: bool, packet: Vec<u8>) {
        self.stats.packets += 1;
        self.stats.bytes += packet.len() as u64;
        let (lose, jitter, reorder): (f64, f64, f64) =
            (self.rng.random(), self.rng.random(), self.rng.random());
        if out {
            self.stats.outage_dropped += 1;
            return;
        }
        if lose < p.loss {
            self.stats.lost += 1;
            return;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.stats.queue_dropped += 1;
            return;
        }
        let sent = match p.rate_bps {
            None => now,
            Some(rate) => {
                let start = self.bottleneck_free.map_or(now, |free| free.max(now));
                if start - now > p.queue {
                    self.stats.queue_dropped += 1;
                    return;
                }
                let bits = packet.len() as u128 * 8;
                let nanos = bits * 1_000_000_000 / u128::from(rate);
                let done = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.bottleneck_free = Some(done);
                done
            }
        };
        let offset = (2.0 * jitter - 1.0) * p.jitter.as_secs_f64();
        let mut at = sent + Duration::from_secs_f64((p.delay.as_secs_f64() + offset).max(0.0));
        if reorder < p.reorder {
            at += p.delay.max(MIN_REORDER_HOLD);
            self.stats.reordered += 1;
        } else {
            if let Some(last) = self.last_in_order {
                at = at.max(last);
            }
            self.last_in_order = Some(at);
        }
        self.in_flight.push(Reverse(Scheduled {
            at,
            seq: self.next_seq,
            packet,
        }));
        self.next_seq += 1;
    }

    fn next_due(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse(s)| s.at)
    }

    fn pop(&mut self) -> Vec<u8> {
        self.in_flight
            .pop()
            .map(|Reverse(s)| s.packet)
            .expect("pop follows a next_due that found a packet")
    }
}

/// A packet in flight and when it leaves.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    packet: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
