//! The audio each simulated peer sends, and the check of what arrives from the other peer.
//!
//! Frame `i` of a peer is an `Audio` payload (200 kHz mono, 10 ms = 2000 samples of a 1 kHz tone,
//! 4000 bytes of PCM) with `first_sample = i * 2000`, encrypted by the peer's [`FrameSender`] and
//! bound to the receiving peer's KID as a browser binds it (`line_protocol::binding`), so its SFrame
//! counter is `i` too. The receiving peer decrypts with its [`FrameReceiver`] and checks every
//! field against what frame `i` must hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use line_protocol::payload::{Audio, Payload};
use line_protocol::pcm;

/// The audio format of the simulated calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioShape {
    /// Samples per second.
    pub sample_rate: u32,
    /// Samples in one frame.
    pub frame_samples: u32,
}

impl AudioShape {
    /// line's default: 200 kHz mono in 10 ms frames (about 4 KB on the wire).
    pub const STUDIO_10MS: Self = Self {
        sample_rate: 200_000,
        frame_samples: 2000,
    };

    /// The duration of one frame, which is also the pacing period.
    #[must_use]
    pub fn frame_duration(self) -> Duration {
        Duration::from_micros(
            u64::from(self.frame_samples) * 1_000_000 / u64::from(self.sample_rate),
        )
    }
}

/// Builds the plaintext of each frame and checks decrypted ones; shared by all peers.
#[derive(Debug)]
pub(crate) struct Tone {
    shape: AudioShape,
    /// The same 16-bit PCM in every frame: a 1 kHz tone at half scale.
    pcm: Vec<u8>,
}

/// How a decrypted frame differs from what its sender sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    NotAudio,
    Format,
    Position,
    Samples,
}

impl Tone {
    pub(crate) fn new(shape: AudioShape) -> Arc<Self> {
        let samples: Vec<f32> = (0..shape.frame_samples)
            .map(|i| {
                let t = f64::from(i) / f64::from(shape.sample_rate);
                (0.5 * (t * 1000.0 * std::f64::consts::TAU).sin()) as f32
            })
            .collect();
        let mut pcm = vec![0u8; samples.len() * 2];
        pcm::f32_to_i16le(&samples, &mut pcm);
        Arc::new(Self { shape, pcm })
    }

    /// Writes frame `index`'s payload into `out` (cleared first).
    pub(crate) fn plaintext(&self, index: u64, out: &mut Vec<u8>) {
        out.clear();
        Payload::Audio(Audio {
            sample_rate: self.shape.sample_rate,
            channels: 1,
            first_sample: index * u64::from(self.shape.frame_samples),
            capture_time_us: 0,
            pcm: &self.pcm,
        })
        .encode(out);
    }

    /// Whether `plaintext` is exactly frame `index`.
    pub(crate) fn check(&self, index: u64, plaintext: &[u8]) -> Result<(), Mismatch> {
        let Ok(Payload::Audio(audio)) = Payload::decode(plaintext) else {
            return Err(Mismatch::NotAudio);
        };
        if audio.sample_rate != self.shape.sample_rate || audio.channels != 1 {
            return Err(Mismatch::Format);
        }
        if audio.first_sample != index * u64::from(self.shape.frame_samples) {
            return Err(Mismatch::Position);
        }
        if audio.pcm != self.pcm.as_slice() {
            return Err(Mismatch::Samples);
        }
        Ok(())
    }
}

/// When each of one peer's recent frames was handed to the socket, for the other peer to compute
/// the relay latency on arrival (both peers live in this process, so one clock serves both).
///
/// A ring of 1024 slots (10 s of 10 ms frames), nanoseconds since `base`: a frame that arrives
/// over 10 s late would read a newer frame's time, but the relay drops audio long before that.
#[derive(Debug)]
pub(crate) struct SendTimes {
    base: Instant,
    slots: Box<[AtomicU64]>,
}

impl SendTimes {
    const SLOTS: u64 = 1024;

    pub(crate) fn new(base: Instant) -> Arc<Self> {
        Arc::new(Self {
            base,
            slots: (0..Self::SLOTS).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn slot(&self, index: u64) -> &AtomicU64 {
        let i = (index % Self::SLOTS) as usize;
        &self.slots[i]
    }

    /// Records that frame `index` is being sent now.
    pub(crate) fn sent(&self, index: u64, at: Instant) {
        let nanos = u64::try_from(at.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        // Release: the receiver's Acquire load after the frame crossed the sockets sees it.
        self.slot(index).store(nanos, Ordering::Release);
    }

    /// How long frame `index` took from its send to `arrival`.
    pub(crate) fn latency(&self, index: u64, arrival: Instant) -> Duration {
        let sent = Duration::from_nanos(self.slot(index).load(Ordering::Acquire));
        arrival.duration_since(self.base).saturating_sub(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_checks_against_its_own_index_only() {
        let tone = Tone::new(AudioShape::STUDIO_10MS);
        let mut plain = Vec::new();
        tone.plaintext(7, &mut plain);
        assert_eq!(plain.len(), 23 + 4000);
        assert_eq!(tone.check(7, &plain), Ok(()));
        assert_eq!(tone.check(8, &plain), Err(Mismatch::Position));
        let last = plain.len() - 1;
        plain[last] ^= 1;
        assert_eq!(tone.check(7, &plain), Err(Mismatch::Samples));
        assert_eq!(tone.check(7, b"\x01\x03"), Err(Mismatch::NotAudio));
    }

    #[test]
    fn ten_ms_frames() {
        assert_eq!(
            AudioShape::STUDIO_10MS.frame_duration(),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn send_times_give_latency() {
        let base = Instant::now();
        let times = SendTimes::new(base);
        times.sent(3, base + Duration::from_millis(5));
        assert_eq!(
            times.latency(3, base + Duration::from_millis(7)),
            Duration::from_millis(2)
        );
    }
}
