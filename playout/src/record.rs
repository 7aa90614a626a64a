//! Frame records: how a decrypted audio frame travels from the worker to the audio thread.
//!
//! A record is a run of `f32` words in the playback ring (the same Float32 ring as capture,
//! `client-wasm/src/ring.rs`), so the ring's tested code carries it, over shared memory or, without
//! cross-origin isolation, as one posted `Float32Array` per record. The header holds only integers
//! below 2^24, which `f32` represents exactly; larger numbers are split in two such halves.
//!
//! | word | meaning |
//! |------|---------|
//! | 0 | words in the record, header included |
//! | 1 | flags: [`NEW_STREAM`], [`REBUILT`], [`NO_CLOCK`] |
//! | 2 | the stream's sample rate, Hz |
//! | 3, 4 | the frame's first sample in the sender's count, high and low 24 bits |
//! | 5, 6 | its arrival on the audio clock, microseconds, high and low 24 bits |
//! | 7 | its age at arrival (arrival − the sender's capture time), microseconds |
//! | 8.. | the samples at the stream's rate |

/// Words before the samples.
pub const HEADER: usize = 8;
/// The sender restarted (another connection's sender, or another rate): a new jitter buffer.
pub const NEW_STREAM: u32 = 1;
/// Rebuilt from the other frames of its group and a repair frame: its age says nothing.
pub const REBUILT: u32 = 2;
/// The worker has no map to the audio clock yet: date it by the quantum that takes it.
pub const NO_CLOCK: u32 = 4;
/// Largest number a header field holds (ages are clamped to it).
const SPLIT: f64 = 16_777_216.0;
/// The longest record: 200 ms (the jitter buffer's longest frame) at 384 kHz (its highest rate).
pub const MAX_WORDS: usize = HEADER + 384_000 / 5;

/// A record's header, decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Header {
    /// Flags ([`NEW_STREAM`], [`REBUILT`], [`NO_CLOCK`]).
    pub flags: u32,
    /// The stream's sample rate, Hz.
    pub rate: u32,
    /// The frame's first sample in the sender's count (below 2^48).
    pub first_sample: u64,
    /// Arrival on the audio clock (context frames × 10^6 / context rate), microseconds.
    pub arrival_us: u64,
    /// Arrival − the sender's capture time, microseconds (at most 2^24 − 1).
    pub age_us: u64,
}

fn split(x: u64) -> (f32, f32) {
    let x = x.min((1u64 << 48) - 1);
    ((x >> 24) as f32, (x & 0xff_ffff) as f32)
}

fn join(hi: f32, lo: f32) -> u64 {
    ((hi as u64) << 24) | lo as u64
}

impl Header {
    /// Writes the header and `samples` into `out` (cleared first).
    pub fn write(&self, samples: &[f32], out: &mut Vec<f32>) {
        out.clear();
        let (first_hi, first_lo) = split(self.first_sample);
        let (arrival_hi, arrival_lo) = split(self.arrival_us);
        out.extend_from_slice(&[
            (HEADER + samples.len()) as f32,
            self.flags as f32,
            self.rate as f32,
            first_hi,
            first_lo,
            arrival_hi,
            arrival_lo,
            (self.age_us as f64).min(SPLIT - 1.0) as f32,
        ]);
        out.extend_from_slice(samples);
    }

    /// The header and samples of `record`, or `None` for words that are no record.
    #[must_use]
    pub fn read(record: &[f32]) -> Option<(Self, &[f32])> {
        let head = record.get(..HEADER)?;
        let len = head[0] as usize;
        if len <= HEADER || len != record.len() || len > MAX_WORDS {
            return None;
        }
        let header = Self {
            flags: head[1] as u32,
            rate: head[2] as u32,
            first_sample: join(head[3], head[4]),
            arrival_us: join(head[5], head[6]),
            age_us: head[7] as u64,
        };
        Some((header, &record[HEADER..]))
    }
}

/// How many records lie one after the other at the start of `words` (a batch of them), up to
/// the first word that starts no record.
#[must_use]
pub fn count(mut words: &[f32]) -> usize {
    let mut n = 0;
    while let Some(&len) = words.first() {
        let len = len as usize;
        if len <= HEADER || len > words.len() {
            break;
        }
        n += 1;
        words = &words[len..];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use line_protocol::testing::Rng;

    #[test]
    fn a_record_reads_back_what_was_written() {
        let mut rng = Rng::from_env();
        let mut next = || rng.next_u64();
        let mut out = Vec::new();
        for _ in 0..1000 {
            let header = Header {
                flags: (next() % 8) as u32,
                rate: 8_000 + (next() % 376_001) as u32,
                first_sample: next() >> 16,
                arrival_us: next() >> 16,
                age_us: next() % (1 << 24),
            };
            let samples: Vec<f32> = (0..1 + next() % 500).map(|i| i as f32 * 1e-3).collect();
            header.write(&samples, &mut out);
            let (back, got) = Header::read(&out).expect("a record");
            assert_eq!(back, header);
            assert_eq!(got, &samples[..]);
        }
        assert_eq!(Header::read(&out[..out.len() - 1]), None, "a cut record");
        assert_eq!(Header::read(&[0.0; 3]), None);
    }

    #[test]
    fn a_batch_counts_its_records() {
        let mut rng = Rng::from_env();
        let mut next = || rng.next_u64();
        let (mut batch, mut record) = (Vec::new(), Vec::new());
        assert_eq!(count(&batch), 0);
        for n in 1..=50 {
            let samples = vec![0.5; 1 + (next() % 2_000) as usize];
            let header = Header {
                flags: 0,
                rate: 200_000,
                first_sample: n,
                arrival_us: 0,
                age_us: 0,
            };
            header.write(&samples, &mut record);
            batch.extend_from_slice(&record);
            assert_eq!(count(&batch), n as usize);
        }
        // A cut last record is none.
        let cut = batch.len() - 1 - (next() % record.len() as u64) as usize;
        assert_eq!(count(&batch[..cut]), 49);
    }
}
