//! The API-key check and the limit on failed attempts per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;

use crate::apikey::ApiKey;
use crate::net::ClientGroup;

/// Whether `presented` is the key, compared in constant time.
///
/// Only the length can leak, and every valid key is at least 72 random letters.
#[must_use]
pub fn key_matches(key: &ApiKey, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(key.expose().as_bytes().ct_eq(p.as_bytes())))
}

/// Counts failed API-key attempts per client ([`ClientGroup`]: an IPv4 address or an IPv6 /64)
/// in fixed windows.
///
/// It only ever slows failures: the key is checked first, and a right key always passes. The
/// table holds at most `capacity` clients; failures from clients it has no room for share one
/// window, so a scan from more addresses than that is limited as a whole rather than not at all.
/// Nothing on the failure path scans the table: [`FailureLimiter::sweep`] drops expired windows
/// from a timer.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    clients: HashMap<ClientGroup, Window>,
    /// Every client that did not fit in `clients`.
    overflow: Option<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn current(window: Option<&Window>, now: Instant, length: Duration) -> Option<&Window> {
        window.filter(|w| now.saturating_duration_since(w.start) < length)
    }
}

impl FailureLimiter {
    /// At most `max_failures` failed attempts per client within `window`, tracking at most
    /// `capacity` clients one by one.
    #[must_use]
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures,
            window,
            capacity: capacity.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    /// Whether `ip`'s client has used up its failures in the current window.
    #[must_use]
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let table = self.lock();
        let group = ClientGroup::of(ip);
        let window = match table.clients.get(&group) {
            Some(window) => Some(window),
            None if table.clients.len() >= self.capacity => table.overflow.as_ref(),
            None => None,
        };
        Window::current(window, now, self.window).is_some_and(|w| w.failures >= self.max_failures)
    }

    /// Records one failed attempt from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut table = self.lock();
        let table = &mut *table;
        let group = ClientGroup::of(ip);
        let window = if table.clients.len() < self.capacity || table.clients.contains_key(&group) {
            table.clients.entry(group).or_insert(Window {
                start: now,
                failures: 0,
            })
        } else {
            table.overflow.get_or_insert(Window {
                start: now,
                failures: 0,
            })
        };
        if now.saturating_duration_since(window.start) >= self.window {
            *window = Window {
                start: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    /// Forgets every window that has ended; returns how many clients are still tracked.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut table = self.lock();
        let length = self.window;
        table
            .clients
            .retain(|_, w| now.saturating_duration_since(w.start) < length);
        if Window::current(table.overflow.as_ref(), now, length).is_none() {
            table.overflow = None;
        }
        table.clients.len()
    }

    /// Clients tracked one by one now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.lock().clients.len()
    }

    /// How long a window lasts (and so how often a sweep is worth it).
    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("limiter lock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare() {
        let key = ApiKey::generate();
        assert!(key_matches(&key, Some(key.expose())));
        assert!(!key_matches(&key, Some("nope")));
        assert!(!key_matches(&key, None));
    }

    #[test]
    fn blocks_after_failures_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 100);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!limiter.is_blocked(ip, t0));
            limiter.record_failure(ip, t0);
        }
        assert!(limiter.is_blocked(ip, t0));
        assert!(!limiter.is_blocked(other, t0));
        assert!(!limiter.is_blocked(ip, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_window() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 1..=3u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, i));
            limiter.record_failure(ip, t0);
        }
        let fresh: IpAddr = "2001:db8:0:7:dead:beef::1".parse().expect("ip");
        assert!(limiter.is_blocked(fresh, t0));
        let next_net: IpAddr = "2001:db8:0:8::1".parse().expect("ip");
        assert!(!limiter.is_blocked(next_net, t0));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_share_one_window() {
        let limiter = FailureLimiter::new(5, Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        // A scan from 50,000 addresses within one window.
        for i in 0..50_000u32 {
            limiter.record_failure(IpAddr::V4((0x0a00_0000 + i).into()), t0);
        }
        assert_eq!(limiter.tracked(), 1000);
        // Each tracked address made one failure: not blocked.
        assert!(!limiter.is_blocked(IpAddr::V4(0x0a00_0000.into()), t0));
        // The 49,000 others share the overflow window, which is used up.
        assert!(limiter.is_blocked(IpAddr::V4(0x0b00_0000.into()), t0));
        // A timer sweep after the window forgets them all.
        assert_eq!(limiter.sweep(t0 + Duration::from_secs(61)), 0);
        assert!(!limiter.is_blocked(IpAddr::V4(0x0b00_0000.into()), t0 + Duration::from_secs(61)));
    }

    #[test]
    fn failures_never_sweep_the_table() {
        // Expired windows stay until the timer's sweep: the failure path never scans the table.
        let limiter = FailureLimiter::new(5, Duration::from_secs(1), 10);
        let t0 = Instant::now();
        for i in 0..10u32 {
            limiter.record_failure(IpAddr::V4(i.into()), t0);
        }
        let later = t0 + Duration::from_secs(5);
        for _ in 0..100 {
            limiter.record_failure(IpAddr::V4(99.into()), later);
        }
        assert_eq!(limiter.tracked(), 10);
        assert!(limiter.is_blocked(IpAddr::V4(98.into()), later));
        assert_eq!(limiter.sweep(later), 0);
        assert!(!limiter.is_blocked(IpAddr::V4(98.into()), later));
    }
}
