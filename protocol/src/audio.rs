//! What audio a version-1 sender sends, and what every receiver must be able to play.
//!
//! A sender sends mono ([`CHANNELS`]) 16-bit PCM at one rate in [`MIN_RATE`]..=[`MAX_RATE`], in
//! frames of one of the [`FrameDuration`]s. A receiver must play every such stream; anything else
//! (more channels, another rate) it may refuse, and then it must count the refused frames and say
//! so rather than stay silent without a reason.
//!
//! ```
//! use line_protocol::audio::{FrameDuration, MAX_RATE, MIN_RATE};
//!
//! assert_eq!(FrameDuration::DEFAULT.samples(48_000), 480);
//! assert_eq!(FrameDuration::from_micros(2_500), Some(FrameDuration::Ms2_5));
//! assert!(MIN_RATE <= 200_000 && 200_000 <= MAX_RATE);
//! ```

/// The rate a sender uses unless told otherwise (a link without `rate` or `mobile`), Hz.
pub const DEFAULT_RATE: u32 = 200_000;
/// The rate a sender uses for a `mobile=1` link, Hz: phones and slow networks.
pub const MOBILE_RATE: u32 = 48_000;
/// The lowest sample rate a sender may use and a receiver must accept, Hz.
pub const MIN_RATE: u32 = 8_000;
/// The highest sample rate a sender may use and a receiver must accept, Hz.
pub const MAX_RATE: u32 = 384_000;
/// The channels of every audio frame in version 1: mono.
pub const CHANNELS: u8 = 1;

/// How much audio one frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameDuration {
    /// 2.5 ms.
    Ms2_5,
    /// 5 ms.
    Ms5,
    /// 10 ms, the default.
    Ms10,
    /// 20 ms.
    Ms20,
}

impl FrameDuration {
    /// Every duration a sender may use, shortest first.
    pub const ALL: [Self; 4] = [Self::Ms2_5, Self::Ms5, Self::Ms10, Self::Ms20];
    /// The duration a sender uses unless told otherwise.
    pub const DEFAULT: Self = Self::Ms10;

    /// The duration in microseconds.
    #[must_use]
    pub const fn micros(self) -> u32 {
        match self {
            Self::Ms2_5 => 2_500,
            Self::Ms5 => 5_000,
            Self::Ms10 => 10_000,
            Self::Ms20 => 20_000,
        }
    }

    /// The duration in milliseconds.
    #[must_use]
    pub fn millis(self) -> f64 {
        f64::from(self.micros()) / 1000.0
    }

    /// Samples (per channel) in one frame at `rate` Hz, rounded down: every allowed rate divides
    /// evenly except odd rates at 2.5 ms.
    #[must_use]
    pub const fn samples(self, rate: u32) -> usize {
        (rate as u64 * self.micros() as u64 / 1_000_000) as usize
    }

    /// The duration from milliseconds, if it is one of 2.5, 5, 10 and 20.
    #[must_use]
    pub fn from_millis(ms: f64) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.millis() == ms)
    }

    /// The duration from microseconds, if it is one of [`FrameDuration::ALL`].
    #[must_use]
    pub fn from_micros(us: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.micros() == us)
    }
}

/// Whether `rate` is a sample rate every receiver must accept.
#[must_use]
pub const fn rate_is_supported(rate: u32) -> bool {
    MIN_RATE <= rate && rate <= MAX_RATE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn durations_round_trip_and_nothing_else_is_one() {
        for d in FrameDuration::ALL {
            assert_eq!(FrameDuration::from_micros(d.micros()), Some(d));
            assert_eq!(FrameDuration::from_millis(d.millis()), Some(d));
        }
        assert_eq!(FrameDuration::from_millis(7.0), None);
        assert_eq!(FrameDuration::from_micros(0), None);
        assert_eq!(FrameDuration::Ms2_5.samples(MAX_RATE), 960);
        assert_eq!(FrameDuration::Ms20.samples(MIN_RATE), 160);
    }

    #[test]
    fn the_rate_range_is_inclusive() {
        assert!(rate_is_supported(MIN_RATE) && rate_is_supported(MAX_RATE));
        assert!(!rate_is_supported(MIN_RATE - 1) && !rate_is_supported(MAX_RATE + 1));
    }
}
