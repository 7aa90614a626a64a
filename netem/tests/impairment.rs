//! The impairment's behaviour on a virtual clock, with random traffic from a printed seed:
//! every packet's fate is checked against what its profile promises.

use std::time::{Duration, Instant};

use line_netem::{Direction, MAX_IN_FLIGHT, Netem, Profile};
use line_protocol::testing::seed_from_env;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// A packet numbered `n`, `len` bytes long.
fn packet(n: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x45; len.max(4)];
    p[..4].copy_from_slice(&n.to_le_bytes());
    p
}

fn number(p: &[u8]) -> u32 {
    u32::from_le_bytes([p[0], p[1], p[2], p[3]])
}

/// What became of one packet that was delivered.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    n: u32,
    direction: Direction,
    sent: Duration,
    delivered: Duration,
}

/// Pushes `(offset from t0, direction, length)` in order, taking every packet at the instant it
/// is due, and returns the deliveries in the order they left.
fn run(link: &mut Netem, t0: Instant, traffic: &[(Duration, Direction, usize)]) -> Vec<Delivery> {
    run_with_change(link, t0, traffic, None)
}

/// What changes on the link during a run, at a time after `t0`.
#[derive(Clone, Copy)]
enum Change {
    /// The link goes down for this long.
    Outage(Duration),
    /// Packets from then on meet this profile.
    Profile(Profile),
}

/// [`run`], with `change` at its time after `t0`.
fn run_with_change(
    link: &mut Netem,
    t0: Instant,
    traffic: &[(Duration, Direction, usize)],
    mut change: Option<(Duration, Change)>,
) -> Vec<Delivery> {
    let mut sent = Vec::with_capacity(traffic.len());
    let mut out = Vec::new();
    let mut take_until = |link: &mut Netem, until: Option<Instant>, sent: &[Duration]| {
        while let Some(at) = link.poll_timeout() {
            if until.is_some_and(|u| at > u) {
                break;
            }
            // None: what was due was dropped by an outage.
            let Some((direction, p)) = link.poll_packet(at) else {
                continue;
            };
            let n = number(&p);
            out.push(Delivery {
                n,
                direction,
                sent: sent[n as usize],
                delivered: at - t0,
            });
        }
    };
    let apply = |link: &mut Netem, from: Duration, change: Change| match change {
        Change::Outage(length) => link.start_outage(t0 + from, length),
        Change::Profile(profile) => link.set_profile(profile),
    };
    for (n, &(at, direction, len)) in traffic.iter().enumerate() {
        if let Some((from, what)) = change.filter(|(from, _)| *from <= at) {
            take_until(link, Some(t0 + from), &sent);
            apply(link, from, what);
            change = None;
        }
        take_until(link, Some(t0 + at), &sent);
        sent.push(at);
        link.push(t0 + at, direction, packet(n as u32, len));
    }
    if let Some((from, what)) = change {
        take_until(link, Some(t0 + from), &sent);
        apply(link, from, what);
    }
    take_until(link, None, &sent);
    out
}

/// `count` packets going `direction`, a random 0 to `max_gap` apart, of random sizes 40-1500.
fn traffic(
    rng: &mut StdRng,
    count: usize,
    max_gap: Duration,
    direction: Direction,
) -> Vec<(Duration, Direction, usize)> {
    let mut at = Duration::ZERO;
    (0..count)
        .map(|_| {
            at += max_gap.mul_f64(rng.random());
            (at, direction, rng.random_range(40..=1500))
        })
        .collect()
}

#[test]
fn lan_delivers_every_packet_after_its_delay_in_order() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut link = Netem::new(Profile::LAN, seed);
    let mut sent = traffic(&mut rng, 2_000, Duration::from_millis(2), Direction::Up);
    sent.extend(traffic(
        &mut rng,
        2_000,
        Duration::from_millis(2),
        Direction::Down,
    ));
    sent.sort_by_key(|s| s.0);
    let out = run(&mut link, Instant::now(), &sent);
    assert_eq!(out.len(), sent.len(), "lan loses nothing");
    for d in &out {
        assert_eq!(d.delivered - d.sent, Duration::from_micros(500), "{d:?}");
        assert_eq!(
            d.direction, sent[d.n as usize].1,
            "{d:?} went the wrong way"
        );
    }
    for dir in Direction::BOTH {
        let order: Vec<u32> = out
            .iter()
            .filter(|d| d.direction == dir)
            .map(|d| d.n)
            .collect();
        assert!(
            order.is_sorted(),
            "{dir:?} reordered with no reordering asked for"
        );
        let s = link.stats(dir);
        assert_eq!(
            (s.packets, s.delivered, s.lost),
            (order.len() as u64, order.len() as u64, 0)
        );
    }
}

#[test]
fn loss_drops_the_profiles_share_and_nothing_else() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    for profile in [Profile::HOME, Profile::WIFI, Profile::MOBILE] {
        let profile = Profile {
            rate_bps: None,
            ..profile
        };
        let mut link = Netem::new(profile, rng.random());
        let n = 100_000;
        let out = run(
            &mut link,
            Instant::now(),
            &traffic(&mut rng, n, Duration::from_millis(1), Direction::Down),
        );
        let s = link.stats(Direction::Down);
        assert_eq!(s.packets, n as u64);
        assert_eq!(s.delivered + s.lost, s.packets, "{s:?}: only loss drops");
        assert_eq!(out.len() as u64, s.delivered);
        // Within five standard deviations of the binomial: fails about once in 3 million runs.
        let expected = profile.loss * n as f64;
        let sigma = (n as f64 * profile.loss * (1.0 - profile.loss)).sqrt();
        assert!(
            (s.lost as f64 - expected).abs() <= 5.0 * sigma,
            "loss {}: {} lost of {n}, expected {expected:.0} ± {:.0}",
            profile.loss,
            s.lost,
            5.0 * sigma
        );
    }
}

#[test]
fn jitter_spreads_the_delay_within_its_bounds_and_keeps_the_order() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    for profile in [Profile::HOME, Profile::WIFI, Profile::MOBILE] {
        let profile = Profile {
            loss: 0.0,
            rate_bps: None,
            ..profile
        };
        let (low, high) = (
            profile.delay - profile.jitter,
            profile.delay + profile.jitter,
        );
        // Dense traffic (packets wait for the ones before them) and sparse (they never do).
        for gap in [Duration::from_micros(500), Duration::from_millis(200)] {
            let mut link = Netem::new(profile, rng.random());
            let t0 = Instant::now();
            let out = run(&mut link, t0, &traffic(&mut rng, 5_000, gap, Direction::Up));
            assert!(
                out.windows(2).all(|w| w[0].n < w[1].n),
                "the order was kept"
            );
            let delays: Vec<Duration> = out.iter().map(|d| d.delivered - d.sent).collect();
            for (d, delay) in out.iter().zip(&delays) {
                assert!(
                    *delay >= low && *delay <= high,
                    "{d:?}: {delay:?} outside {low:?}..{high:?}"
                );
            }
            let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            if gap > high {
                // Uniform over ±jitter: the mean within 5 % of the jitter of the delay, and the
                // extremes near both bounds.
                let off = mean.abs_diff(profile.delay);
                assert!(
                    off <= profile.jitter / 20,
                    "mean {mean:?} for {:?} ± {:?}",
                    profile.delay,
                    profile.jitter
                );
                assert!(
                    *min < low + profile.jitter / 20 && *max > high - profile.jitter / 20,
                    "{min:?}..{max:?}"
                );
            }
        }
    }
}

#[test]
fn reordered_packets_are_overtaken() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    let profile = Profile {
        reorder: 0.1,
        ..Profile::HOME
    };
    let profile = Profile {
        loss: 0.0,
        ..profile
    };
    let mut link = Netem::new(profile, seed);
    let n = 20_000;
    // A tail that is never held back follows, so that the last held-back packets too have
    // something to overtake them: a hold (a delay more) outlasts the gap to the tail's first.
    let sent = traffic(&mut rng, n + 100, Duration::from_millis(1), Direction::Up);
    let tail_from = sent[n].0;
    let in_order = Profile {
        reorder: 0.0,
        ..profile
    };
    let out = run_with_change(
        &mut link,
        Instant::now(),
        &sent,
        Some((tail_from, Change::Profile(in_order))),
    );
    assert_eq!(out.len(), n + 100, "reordering loses nothing");
    let s = link.stats(Direction::Up);
    // A packet held back leaves after some packet sent after it.
    let mut latest_sent = 0;
    let mut overtaken = 0;
    for d in &out {
        if d.n < latest_sent {
            overtaken += 1;
        }
        latest_sent = latest_sent.max(d.n);
    }
    assert_eq!(
        overtaken, s.reordered,
        "every held-back packet, and only those, is overtaken"
    );
    let sigma = (n as f64 * 0.1 * 0.9).sqrt();
    assert!(
        (s.reordered as f64 - 0.1 * n as f64).abs() <= 5.0 * sigma,
        "{s:?}"
    );
}

#[test]
fn the_bottleneck_paces_packets_and_drops_what_its_queue_cannot_hold() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    let rate = rng.random_range(1_000_000..20_000_000_u64);
    let profile = Profile {
        rate_bps: Some(rate),
        ..Profile::NONE
    };
    let mut link = Netem::new(profile, seed);
    // Twice what the bottleneck carries, for a second.
    let len = 1_000;
    let gap = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64 / 2.0);
    let sent: Vec<_> = (0..(1.0 / gap.as_secs_f64()) as u32)
        .map(|i| (gap * i, Direction::Down, len))
        .collect();
    let out = run(&mut link, Instant::now(), &sent);
    let s = link.stats(Direction::Down);
    assert!(s.queue_dropped > 0, "{s:?}: the queue never overflowed");
    assert_eq!(s.delivered + s.queue_dropped, s.packets);
    let per_packet = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
    for w in out.windows(2) {
        // Never faster than the rate (a nanosecond for the rounding of each packet's time).
        assert!(
            w[1].delivered - w[0].delivered + Duration::from_nanos(1) >= per_packet,
            "{w:?}"
        );
    }
    for d in &out {
        assert!(
            d.delivered - d.sent <= profile.queue + per_packet,
            "{d:?} waited longer than the queue holds"
        );
    }
}

#[test]
fn an_outage_drops_what_it_meets_and_the_link_comes_back() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    let profile = Profile {
        loss: 0.0,
        ..Profile::WIFI
    };
    let mut link = Netem::new(profile, seed);
    let (from, length) = (
        Duration::from_millis(rng.random_range(100..500)),
        Duration::from_secs(2),
    );
    let sent = traffic(&mut rng, 2_000, Duration::from_millis(3), Direction::Up);
    let out = run_with_change(
        &mut link,
        Instant::now(),
        &sent,
        Some((from, Change::Outage(length))),
    );
    let end = from + length;
    for d in &out {
        assert!(
            d.delivered < from || d.delivered >= end,
            "{d:?} delivered during the outage"
        );
        assert!(
            d.sent < from || d.sent >= end,
            "{d:?} sent during the outage was delivered"
        );
    }
    let s = link.stats(Direction::Up);
    assert_eq!(s.delivered + s.outage_dropped, s.packets);
    let sent_during = sent.iter().filter(|t| t.0 >= from && t.0 < end).count() as u64;
    assert!(
        s.outage_dropped > sent_during,
        "{s:?}: what was in flight when the link went down was delivered"
    );
    assert!(
        out.iter().any(|d| d.sent >= end),
        "nothing sent after the outage arrived"
    );
    assert!(
        out.iter().any(|d| d.sent < from),
        "nothing sent before the outage arrived"
    );
}

#[test]
fn a_seed_repeats_every_fate() {
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    let profile = Profile {
        reorder: 0.05,
        ..Profile::MOBILE
    };
    let traffic = traffic(
        &mut rng,
        10_000,
        Duration::from_micros(300),
        Direction::Down,
    );
    let fates = |link_seed: u64| {
        let mut link = Netem::new(profile, link_seed);
        let out = run(&mut link, Instant::now(), &traffic);
        (
            out.iter()
                .map(|d| (d.n, d.delivered - d.sent))
                .collect::<Vec<_>>(),
            link.stats(Direction::Down),
        )
    };
    assert_eq!(fates(seed), fates(seed), "the same seed, the same fates");
    assert_ne!(
        fates(seed).0,
        fates(seed ^ 1).0,
        "another seed, other fates"
    );
}

#[test]
fn what_is_in_flight_is_bounded() {
    let mut link = Netem::new(Profile::LAN, seed_from_env());
    let t0 = Instant::now();
    for n in 0..MAX_IN_FLIGHT + 100 {
        link.push(t0, Direction::Up, packet(n as u32, 40));
    }
    let s = link.stats(Direction::Up);
    assert_eq!(s.queue_dropped, 100);
    let mut delivered = 0;
    while link.poll_packet(t0 + Duration::from_millis(1)).is_some() {
        delivered += 1;
    }
    assert_eq!(delivered, MAX_IN_FLIGHT);
}
