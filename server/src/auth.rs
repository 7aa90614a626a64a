//! The API-key check and the limit on failed attempts per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;

use crate::apikey::ApiKey;

/// Whether `presented` is the key, compared in constant time.
///
/// Only the length can leak, and every valid key is at least 72 random letters.
#[must_use]
pub fn key_matches(key: &ApiKey, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(key.expose().as_bytes().ct_eq(p.as_bytes())))
}

/// Counts failed API-key attempts per address in fixed windows.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Addresses tracked before expired windows are swept, so a scan from many addresses stays bounded.
const SWEEP_AT: usize = 10_000;

impl FailureLimiter {
    /// At most `max_failures` failed attempts per address within `window`.
    #[must_use]
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` has used up its failures in the current window.
    #[must_use]
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let entries = self.entries.lock().expect("limiter lock is never poisoned");
        entries.get(&ip).is_some_and(|w| {
            now.duration_since(w.start) < self.window && w.failures >= self.max_failures
        })
    }

    /// Records one failed attempt from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().expect("limiter lock is never poisoned");
        if entries.len() >= SWEEP_AT {
            let window = self.window;
            entries.retain(|_, w| now.duration_since(w.start) < window);
        }
        let entry = entries.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(entry.start) >= self.window {
            *entry = Window {
                start: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
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
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
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
}
