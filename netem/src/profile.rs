//! What a network does to each packet: the named profiles and their parameters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How one direction of a link treats packets. Both directions of a link use the same profile,
/// each with its own random draws.
///
/// A packet's fate, in order: dropped during an outage; dropped at random with probability
/// [`loss`](Self::loss); queued behind earlier packets at the bottleneck of
/// [`rate_bps`](Self::rate_bps) (dropped when it would wait longer than [`queue`](Self::queue));
/// then delayed by [`delay`](Self::delay) ± [`jitter`](Self::jitter), drawn uniformly per packet.
/// Packets leave in the order they came, as on one path (a packet delayed less than the one
/// before it waits for it), except a fraction [`reorder`](Self::reorder) that is held back an
/// extra `max(delay, 2 ms)` and overtaken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    /// One-way delay: half the round-trip time the profile stands for.
    pub delay: Duration,
    /// Each packet's delay is `delay` ± up to this much, uniformly.
    pub jitter: Duration,
    /// Probability that a packet is dropped, 0 to 1.
    pub loss: f64,
    /// Probability that a packet is held back and overtaken by the ones after it, 0 to 1.
    pub reorder: f64,
    /// The bottleneck's rate in bits per second (IP packets, headers included), or none.
    pub rate_bps: Option<u64>,
    /// The longest a packet may wait at the bottleneck before it is dropped (drop-tail).
    pub queue: Duration,
}

/// The named profiles, mildest first.
pub const PROFILES: [(&str, Profile); 4] = [
    ("lan", Profile::LAN),
    ("home", Profile::HOME),
    ("wifi", Profile::WIFI),
    ("mobile", Profile::MOBILE),
];

impl Profile {
    /// A wired local network: 1 ms round trip, no jitter, no loss.
    pub const LAN: Self = Self {
        delay: Duration::from_micros(500),
        jitter: Duration::ZERO,
        loss: 0.0,
        reorder: 0.0,
        rate_bps: None,
        queue: Duration::from_millis(100),
    };
    /// A home broadband line: 20 ms round trip, ±2 ms, 0.1 % loss.
    pub const HOME: Self = Self {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(2),
        loss: 0.001,
        ..Self::LAN
    };
    /// A busy Wi-Fi: 40 ms round trip, ±15 ms, 1 % loss.
    pub const WIFI: Self = Self {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        loss: 0.01,
        ..Self::LAN
    };
    /// A mobile data connection: 80 ms round trip, ±30 ms, 3 % loss, 8 Mbit/s each way.
    pub const MOBILE: Self = Self {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        loss: 0.03,
        rate_bps: Some(8_000_000),
        ..Self::LAN
    };
    /// No impairment at all: what the harness itself adds is all there is.
    pub const NONE: Self = Self {
        delay: Duration::ZERO,
        ..Self::LAN
    };

    /// The profile called `name` (`lan`, `home`, `wifi`, `mobile`, or `none`).
    pub fn named(name: &str) -> Result<Self, ProfileError> {
        if name == "none" {
            return Ok(Self::NONE);
        }
        PROFILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| ProfileError::UnknownName(name.to_owned()))
    }

    /// Checks that the probabilities are probabilities and the rate is not zero. (A jitter larger
    /// than the delay is allowed: a delay never goes below zero.)
    pub fn validate(&self) -> Result<(), ProfileError> {
        for (what, p) in [("loss", self.loss), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ProfileError::NotAProbability(what, p));
            }
        }
        if self.rate_bps == Some(0) {
            return Err(ProfileError::ZeroRate);
        }
        Ok(())
    }
}

impl FromStr for Profile {
    type Err = ProfileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::named(s)
    }
}

/// Why a profile could not be had.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProfileError {
    /// No profile has this name.
    UnknownName(String),
    /// A probability outside 0 to 1 (which one, and its value).
    NotAProbability(&'static str, f64),
    /// A bottleneck of 0 bit/s would deliver nothing.
    ZeroRate,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownName(name) => {
                let names: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
                write!(
                    f,
                    "no profile is called {name:?} (there are {} and none)",
                    names.join(", ")
                )
            }
            Self::NotAProbability(what, p) => write!(f, "{what} must be between 0 and 1, not {p}"),
            Self::ZeroRate => f.write_str("a rate of 0 bit/s delivers nothing"),
        }
    }
}

impl std::error::Error for ProfileError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_profiles_are_the_ones_documented() {
        let rtt = |p: Profile| p.delay * 2;
        assert_eq!(
            rtt(Profile::named("lan").unwrap()),
            Duration::from_millis(1)
        );
        let home = Profile::named("home").unwrap();
        assert_eq!(
            (rtt(home), home.jitter, home.loss),
            (Duration::from_millis(20), Duration::from_millis(2), 0.001)
        );
        let wifi = Profile::named("wifi").unwrap();
        assert_eq!(
            (rtt(wifi), wifi.jitter, wifi.loss),
            (Duration::from_millis(40), Duration::from_millis(15), 0.01)
        );
        let mobile = Profile::named("mobile").unwrap();
        assert_eq!(
            (rtt(mobile), mobile.jitter, mobile.loss, mobile.rate_bps),
            (
                Duration::from_millis(80),
                Duration::from_millis(30),
                0.03,
                Some(8_000_000)
            )
        );
        for (_, p) in PROFILES {
            p.validate().unwrap();
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = Profile::named("satellite").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no profile is called \"satellite\" (there are lan, home, wifi, mobile and none)"
        );
        let bad = Profile {
            loss: 1.5,
            ..Profile::LAN
        };
        assert_eq!(
            bad.validate(),
            Err(ProfileError::NotAProbability("loss", 1.5))
        );
        let zero = Profile {
            rate_bps: Some(0),
            ..Profile::LAN
        };
        assert_eq!(zero.validate(), Err(ProfileError::ZeroRate));
    }
}
