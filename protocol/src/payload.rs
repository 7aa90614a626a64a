//! The plaintext inside a frame: audio, and the few messages the two clients exchange end to end.
//!
//! Every payload starts with the payload format version (1) and a type byte; the fields that follow
//! are big-endian (network order, like the SFrame header), except PCM, which is 16-bit
//! little-endian as in WAV files and Web Audio's typed arrays. docs/PROTOCOL.md has the layouts.
//!
//! Decoding is total: any byte string gives a payload or a [`PayloadError`], never a panic.
//! Decoded payloads borrow from the buffer, so receiving audio copies nothing.
//!
//! ```
//! use line_protocol::payload::{Payload, Ping};
//!
//! let mut buf = Vec::new();
//! Payload::Ping(Ping { id: 7, send_time_us: 1_000 }).encode(&mut buf);
//! assert_eq!(buf, [1, 3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
//! assert_eq!(Payload::decode(&buf), Ok(Payload::Ping(Ping { id: 7, send_time_us: 1_000 })));
//! ```

use alloc::vec::Vec;
use core::fmt;

/// The payload format version this crate writes and reads: the first byte of every payload.
pub const VERSION: u8 = 1;

/// The protocol version a [`Hello`] announces: the highest this crate speaks. Two peers speak the
/// lower of the two versions their Hellos announce. Version 2 adds payload types to version 1
/// ([`CodedAudio`], [`CodedRepair`]) and changes none, so its payloads keep [`VERSION`] 1: a
/// sender sends the added types only to a peer whose Hello announced [`LOSSLESS_VERSION`] or more.
pub const PROTOCOL_VERSION: u16 = 2;

/// The first protocol version whose peers take [`CodedAudio`] and [`CodedRepair`].
pub const LOSSLESS_VERSION: u16 = 2;

/// Bytes before the PCM of an [`Audio`] payload.
pub const AUDIO_HEADER_LEN: usize = 23;

/// Bytes before the PCM of a [`Repair`] payload.
pub const REPAIR_HEADER_LEN: usize = 24;

/// Bytes before the coded frame of a [`CodedAudio`] payload: the same fields as [`Audio`]'s.
pub const CODED_AUDIO_HEADER_LEN: usize = AUDIO_HEADER_LEN;

/// Bytes of a [`CodedRepair`] payload before its frames' lengths (2 bytes a frame).
pub const CODED_REPAIR_HEADER_LEN: usize = 26;

const TYPE_AUDIO: u8 = 1;
const TYPE_HELLO: u8 = 2;
const TYPE_PING: u8 = 3;
const TYPE_PONG: u8 = 4;
const TYPE_BYE: u8 = 5;
const TYPE_REPAIR: u8 = 6;
const TYPE_CODED_AUDIO: u8 = 7;
const TYPE_CODED_REPAIR: u8 = 8;

/// One decoded payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload<'a> {
    /// A frame of audio.
    Audio(Audio<'a>),
    /// The first payload a client sends on a line: who it is and what it will send.
    Hello(Hello<'a>),
    /// A round-trip time probe; the peer answers with a [`Payload::Pong`] of the same fields.
    Ping(Ping),
    /// The answer to a [`Payload::Ping`], echoing its fields.
    Pong(Ping),
    /// The sender hangs up.
    Bye(Bye<'a>),
    /// What rebuilds any one lost frame of a group of audio frames (see [`crate::repair`]).
    Repair(Repair<'a>),
    /// A frame of audio, losslessly coded (protocol version 2).
    CodedAudio(CodedAudio<'a>),
    /// What rebuilds any one lost frame of a group of coded audio frames (protocol version 2).
    CodedRepair(CodedRepair<'a>),
}

/// A frame of 16-bit PCM audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audio<'a> {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels (1 = mono).
    pub channels: u8,
    /// Index of this frame's first sample in the sender's running count (per channel).
    pub first_sample: u64,
    /// The sender's wall-clock time of capture, in microseconds, for latency measurement.
    pub capture_time_us: u64,
    /// Signed 16-bit little-endian samples, channels interleaved.
    pub pcm: &'a [u8],
}

/// The parity of a group of consecutive audio frames of one length: with all of the group's
/// frames but one, it rebuilds that one exactly (see [`crate::repair`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair<'a> {
    /// The frames' sample rate.
    pub sample_rate: u32,
    /// The frames' channels.
    pub channels: u8,
    /// The `first_sample` of the group's first frame; frame `i` starts `i` frame lengths later.
    pub first_sample: u64,
    /// How many frames the group holds (at least 1).
    pub frames: u8,
    /// The XOR of the frames' `capture_time_us`.
    pub capture_time_xor: u64,
    /// The XOR of the frames' PCM, all of this length.
    pub pcm_xor: &'a [u8],
}

impl Repair<'_> {
    /// Samples per channel in each frame of the group.
    #[must_use]
    pub fn samples_per_channel(&self) -> usize {
        self.pcm_xor.len() / 2 / usize::from(self.channels.max(1))
    }
}

/// A frame of audio as [`Audio`], its samples coded by [`crate::lossless`]: the same samples in
/// a third to two fifths of the bytes for a microphone's audio at 200 kHz, never more than 3 bytes
/// more than raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodedAudio<'a> {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels (1 = mono).
    pub channels: u8,
    /// Index of this frame's first sample in the sender's running count (per channel).
    pub first_sample: u64,
    /// The sender's wall-clock time of capture, in microseconds, for latency measurement.
    pub capture_time_us: u64,
    /// One lossless frame (docs/LOSSLESS.md) of the samples, channels interleaved. Decoding
    /// checked only its sample count: the rest is checked when it is decoded.
    pub coded: &'a [u8],
}

impl CodedAudio<'_> {
    /// Samples per channel in this frame, as its coded frame announces.
    #[must_use]
    pub fn samples_per_channel(&self) -> usize {
        crate::lossless::sample_count(self.coded).unwrap_or(0) / usize::from(self.channels.max(1))
    }
}

/// The parity of a group of consecutive coded audio frames of one sample count: with all of the
/// group's frames but one, it rebuilds that one's coded bytes exactly (see [`crate::repair`]).
/// Coded frames differ in length, so each is zero-padded to the longest and the lengths travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodedRepair<'a> {
    /// The frames' sample rate.
    pub sample_rate: u32,
    /// The frames' channels.
    pub channels: u8,
    /// The `first_sample` of the group's first frame; frame `i` starts `i * frame_samples` later.
    pub first_sample: u64,
    /// How many frames the group holds (at least 1).
    pub frames: u8,
    /// The XOR of the frames' `capture_time_us`.
    pub capture_time_xor: u64,
    /// Samples per channel in each frame of the group.
    pub frame_samples: u16,
    /// Each frame's coded length in bytes, 16 bits big-endian, in the group's order.
    pub lengths: &'a [u8],
    /// The XOR of the frames' coded bytes, each zero-padded to the longest: as long as it.
    pub coded_xor: &'a [u8],
}

impl CodedRepair<'_> {
    /// The coded lengths of the group's frames, in order.
    pub fn frame_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.lengths
            .chunks_exact(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// What a client announces when it joins a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The highest line protocol version the client speaks (this crate: [`VERSION`]).
    pub protocol_version: u16,
    /// A name for the client software, for a person to read (e.g. `line-web 0.1.0`).
    pub client: &'a str,
    /// The sample rate of the audio it will send.
    pub sample_rate: u32,
    /// The channels of the audio it will send.
    pub channels: u8,
    /// The duration of one audio frame, in microseconds.
    pub frame_duration_us: u32,
}

/// A round-trip time probe (as [`Payload::Ping`]) or its answer (as [`Payload::Pong`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ping {
    /// Chosen by the pinging side to match the answer.
    pub id: u32,
    /// The pinging side's clock when it sent the ping, in microseconds.
    pub send_time_us: u64,
}

/// The sender hangs up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bye<'a> {
    /// Why, for a person to read; may be empty.
    pub reason: &'a str,
}

/// Why a byte string is not a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// No bytes at all.
    Empty,
    /// A payload format version this crate does not read.
    UnsupportedVersion {
        /// The version byte.
        version: u8,
    },
    /// A type byte this version does not define.
    UnknownType {
        /// The type byte.
        kind: u8,
    },
    /// Fewer bytes than the type's fixed fields need.
    Truncated {
        /// Bytes the fixed fields need.
        needed: usize,
        /// Bytes the payload has.
        available: usize,
    },
    /// Bytes after a fixed-size payload.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A sample rate of zero.
    ZeroSampleRate,
    /// Zero channels.
    NoChannels,
    /// The PCM does not hold a whole number of 16-bit samples for every channel.
    PcmLength {
        /// Bytes of PCM.
        len: usize,
        /// Channels announced.
        channels: u8,
    },
    /// A text field that is not UTF-8.
    Utf8,
    /// A repair payload for a group of no frames.
    EmptyGroup,
    /// A coded frame whose sample count is not a whole number of samples for every channel.
    SampleCount {
        /// Samples the coded frame announces.
        samples: usize,
        /// Channels announced.
        channels: u8,
    },
    /// A coded repair whose parity is not as long as the longest frame it announces.
    ParityLength {
        /// Bytes of parity.
        len: usize,
        /// The longest frame's length.
        longest: usize,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty payload"),
            Self::UnsupportedVersion { version } => {
                write!(
                    f,
                    "payload version {version} is not supported (this side speaks {VERSION})"
                )
            }
            Self::UnknownType { kind } => write!(f, "unknown payload type {kind}"),
            Self::Truncated { needed, available } => write!(
                f,
                "truncated payload: needs {needed} bytes, has {available}"
            ),
            Self::TrailingBytes { extra } => {
                write!(f, "{extra} unexpected bytes after the payload")
            }
            Self::ZeroSampleRate => f.write_str("sample rate of zero"),
            Self::NoChannels => f.write_str("audio with zero channels"),
            Self::PcmLength { len, channels } => write!(
                f,
                "{len} bytes of pcm are not whole 16-bit samples for {channels} channels"
            ),
            Self::Utf8 => f.write_str("text field is not utf-8"),
            Self::EmptyGroup => f.write_str("repair for a group of no frames"),
            Self::SampleCount { samples, channels } => write!(
                f,
                "a coded frame of {samples} samples is not whole samples for {channels} channels"
            ),
            Self::ParityLength { len, longest } => write!(
                f,
                "{len} bytes of parity for a group whose longest frame has {longest}"
            ),
        }
    }
}

impl core::error::Error for PayloadError {}

impl Payload<'_> {
    /// Appends the encoding of this payload to `out`.
    ///
    /// Encoding does not validate: an [`Audio`] whose `pcm` is not whole samples encodes, and
    /// [`Payload::decode`] refuses it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(VERSION);
        match self {
            Self::Audio(a) => {
                out.push(TYPE_AUDIO);
                put_stream(out, a.sample_rate, a.channels, a.first_sample);
                out.extend_from_slice(&a.capture_time_us.to_be_bytes());
                out.extend_from_slice(a.pcm);
            }
            Self::Hello(h) => {
                out.push(TYPE_HELLO);
                out.extend_from_slice(&h.protocol_version.to_be_bytes());
                out.extend_from_slice(&h.sample_rate.to_be_bytes());
                out.push(h.channels);
                out.extend_from_slice(&h.frame_duration_us.to_be_bytes());
                out.extend_from_slice(h.client.as_bytes());
            }
            Self::Ping(p) | Self::Pong(p) => {
                out.push(if matches!(self, Self::Ping(_)) {
                    TYPE_PING
                } else {
                    TYPE_PONG
                });
                out.extend_from_slice(&p.id.to_be_bytes());
                out.extend_from_slice(&p.send_time_us.to_be_bytes());
            }
            Self::Bye(b) => {
                out.push(TYPE_BYE);
                out.extend_from_slice(b.reason.as_bytes());
            }
            Self::Repair(r) => {
                out.push(TYPE_REPAIR);
                put_stream(out, r.sample_rate, r.channels, r.first_sample);
                out.push(r.frames);
                out.extend_from_slice(&r.capture_time_xor.to_be_bytes());
                out.extend_from_slice(r.pcm_xor);
            }
            Self::CodedAudio(a) => {
                out.push(TYPE_CODED_AUDIO);
                put_stream(out, a.sample_rate, a.channels, a.first_sample);
                out.extend_from_slice(&a.capture_time_us.to_be_bytes());
                out.extend_from_slice(a.coded);
            }
            Self::CodedRepair(r) => {
                out.push(TYPE_CODED_REPAIR);
                put_stream(out, r.sample_rate, r.channels, r.first_sample);
                out.push(r.frames);
                out.extend_from_slice(&r.capture_time_xor.to_be_bytes());
                out.extend_from_slice(&r.frame_samples.to_be_bytes());
                out.extend_from_slice(r.lengths);
                out.extend_from_slice(r.coded_xor);
            }
        }
    }

    /// Bytes [`Payload::encode`] appends.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Self::Audio(a) => AUDIO_HEADER_LEN - 2 + a.pcm.len(),
            Self::Hello(h) => 11 + h.client.len(),
            Self::Ping(_) | Self::Pong(_) => 12,
            Self::Bye(b) => b.reason.len(),
            Self::Repair(r) => REPAIR_HEADER_LEN - 2 + r.pcm_xor.len(),
            Self::CodedAudio(a) => CODED_AUDIO_HEADER_LEN - 2 + a.coded.len(),
            Self::CodedRepair(r) => {
                CODED_REPAIR_HEADER_LEN - 2 + r.lengths.len() + r.coded_xor.len()
            }
        }
    }

    /// Decodes a payload, borrowing its PCM and text from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Payload<'_>, PayloadError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8().map_err(|_| PayloadError::Empty)?;
        if version != VERSION {
            return Err(PayloadError::UnsupportedVersion { version });
        }
        // A lone version byte is as truncated as any other short payload.
        r.fixed(2)?;
        let kind = r.u8()?;
        match kind {
            TYPE_AUDIO => {
                r.fixed(AUDIO_HEADER_LEN)?;
                let (sample_rate, channels, first_sample) = r.stream()?;
                let capture_time_us = r.u64()?;
                let pcm = r.rest();
                if !pcm.len().is_multiple_of(2 * usize::from(channels)) {
                    return Err(PayloadError::PcmLength {
                        len: pcm.len(),
                        channels,
                    });
                }
                Ok(Payload::Audio(Audio {
                    sample_rate,
                    channels,
                    first_sample,
                    capture_time_us,
                    pcm,
                }))
            }
            TYPE_HELLO => {
                r.fixed(13)?;
                let protocol_version = r.u16()?;
                let sample_rate = r.u32()?;
                let channels = r.u8()?;
                let frame_duration_us = r.u32()?;
                let client = core::str::from_utf8(r.rest()).map_err(|_| PayloadError::Utf8)?;
                if sample_rate == 0 {
                    return Err(PayloadError::ZeroSampleRate);
                }
                if channels == 0 {
                    return Err(PayloadError::NoChannels);
                }
                Ok(Payload::Hello(Hello {
                    protocol_version,
                    client,
                    sample_rate,
                    channels,
                    frame_duration_us,
                }))
            }
            TYPE_PING | TYPE_PONG => {
                r.fixed(14)?;
                let ping = Ping {
                    id: r.u32()?,
                    send_time_us: r.u64()?,
                };
                r.end()?;
                Ok(if kind == TYPE_PING {
                    Payload::Ping(ping)
                } else {
                    Payload::Pong(ping)
                })
            }
            TYPE_BYE => {
                let reason = core::str::from_utf8(r.rest()).map_err(|_| PayloadError::Utf8)?;
                Ok(Payload::Bye(Bye { reason }))
            }
            TYPE_REPAIR => {
                r.fixed(REPAIR_HEADER_LEN)?;
                let (sample_rate, channels, first_sample) = r.stream()?;
                let frames = r.u8()?;
                let capture_time_xor = r.u64()?;
                let pcm_xor = r.rest();
                if frames == 0 {
                    return Err(PayloadError::EmptyGroup);
                }
                if !pcm_xor.len().is_multiple_of(2 * usize::from(channels)) {
                    return Err(PayloadError::PcmLength {
                        len: pcm_xor.len(),
                        channels,
                    });
                }
                Ok(Payload::Repair(Repair {
                    sample_rate,
                    channels,
                    first_sample,
                    frames,
                    capture_time_xor,
                    pcm_xor,
                }))
            }
            TYPE_CODED_AUDIO => {
                r.fixed(CODED_AUDIO_HEADER_LEN + crate::lossless::HEADER_LEN)?;
                let (sample_rate, channels, first_sample) = r.stream()?;
                let capture_time_us = r.u64()?;
                let coded = r.rest();
                let samples = crate::lossless::sample_count(coded).unwrap_or(0);
                if !samples.is_multiple_of(usize::from(channels)) {
                    return Err(PayloadError::SampleCount { samples, channels });
                }
                Ok(Payload::CodedAudio(CodedAudio {
                    sample_rate,
                    channels,
                    first_sample,
                    capture_time_us,
                    coded,
                }))
            }
            TYPE_CODED_REPAIR => {
                r.fixed(CODED_REPAIR_HEADER_LEN)?;
                let (sample_rate, channels, first_sample) = r.stream()?;
                let frames = r.u8()?;
                let capture_time_xor = r.u64()?;
                let frame_samples = r.u16()?;
                if frames == 0 {
                    return Err(PayloadError::EmptyGroup);
                }
                let lengths_len = 2 * usize::from(frames);
                r.fixed(CODED_REPAIR_HEADER_LEN + lengths_len)?;
                let lengths = r.slice(lengths_len)?;
                let coded_xor = r.rest();
                let repair = CodedRepair {
                    sample_rate,
                    channels,
                    first_sample,
                    frames,
                    capture_time_xor,
                    frame_samples,
                    lengths,
                    coded_xor,
                };
                let longest = repair.frame_lengths().max().unwrap_or(0);
                if coded_xor.len() != longest {
                    return Err(PayloadError::ParityLength {
                        len: coded_xor.len(),
                        longest,
                    });
                }
                Ok(Payload::CodedRepair(repair))
            }
            kind => Err(PayloadError::UnknownType { kind }),
        }
    }
}

impl Audio<'_> {
    /// Samples per channel in this frame.
    #[must_use]
    pub fn samples_per_channel(&self) -> usize {
        self.pcm.len() / 2 / usize::from(self.channels.max(1))
    }
}

/// Writes the fields that place a frame in a stream, as [`Reader::stream`] reads them.
fn put_stream(out: &mut Vec<u8>, sample_rate: u32, channels: u8, first_sample: u64) {
    out.extend_from_slice(&sample_rate.to_be_bytes());
    out.push(channels);
    out.extend_from_slice(&first_sample.to_be_bytes());
}

/// Reads big-endian fields from the front of a payload; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Fails unless the payload has at least `len` bytes in all (checked once per type, so the
    /// error names the whole fixed part rather than the first field that ran out).
    fn fixed(&self, len: usize) -> Result<(), PayloadError> {
        if self.bytes.len() < len {
            return Err(PayloadError::Truncated {
                needed: len,
                available: self.bytes.len(),
            });
        }
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        let field = self.slice(N)?;
        Ok(field.try_into().expect("slice of length N"))
    }

    fn u8(&mut self) -> Result<u8, PayloadError> {
        self.take::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Result<u16, PayloadError> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, PayloadError> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, PayloadError> {
        self.take().map(u64::from_be_bytes)
    }

    /// The fields that place a frame in a stream: its sample rate (not zero), channels (at least
    /// one) and first sample.
    fn stream(&mut self) -> Result<(u32, u8, u64), PayloadError> {
        let sample_rate = self.u32()?;
        let channels = self.u8()?;
        let first_sample = self.u64()?;
        if sample_rate == 0 {
            return Err(PayloadError::ZeroSampleRate);
        }
        if channels == 0 {
            return Err(PayloadError::NoChannels);
        }
        Ok((sample_rate, channels, first_sample))
    }

    fn slice(&mut self, len: usize) -> Result<&'a [u8], PayloadError> {
        let end = self.pos + len;
        let field = self
            .bytes
            .get(self.pos..end)
            .ok_or(PayloadError::Truncated {
                needed: end,
                available: self.bytes.len(),
            })?;
        self.pos = end;
        Ok(field)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        rest
    }

    fn end(&self) -> Result<(), PayloadError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => Err(PayloadError::TrailingBytes { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn round_trip(payload: Payload<'_>) -> Vec<u8> {
        let mut buf = vec![0xaa];
        payload.encode(&mut buf);
        assert_eq!(buf.len(), 1 + payload.encoded_len());
        assert_eq!(Payload::decode(&buf[1..]), Ok(payload));
        buf.remove(0);
        buf
    }

    #[test]
    fn every_type_round_trips() {
        let pcm = [1, 0, 0xff, 0x7f, 0, 0x80, 2, 0];
        let audio = round_trip(Payload::Audio(Audio {
            sample_rate: 200_000,
            channels: 2,
            first_sample: 1 << 40,
            capture_time_us: 1_700_000_000_000_000,
            pcm: &pcm,
        }));
        assert_eq!(audio.len(), AUDIO_HEADER_LEN + pcm.len());
        round_trip(Payload::Hello(Hello {
            protocol_version: 1,
            client: "line-web 0.1.0 ünïcode",
            sample_rate: 48_000,
            channels: 1,
            frame_duration_us: 10_000,
        }));
        round_trip(Payload::Ping(Ping {
            id: 1,
            send_time_us: 2,
        }));
        round_trip(Payload::Pong(Ping {
            id: u32::MAX,
            send_time_us: u64::MAX,
        }));
        round_trip(Payload::Bye(Bye { reason: "" }));
        round_trip(Payload::Bye(Bye { reason: "hung up" }));
        let repair = round_trip(Payload::Repair(Repair {
            sample_rate: 200_000,
            channels: 1,
            first_sample: 1 << 40,
            frames: 4,
            capture_time_xor: 0x0123_4567_89ab_cdef,
            pcm_xor: &pcm,
        }));
        assert_eq!(repair.len(), REPAIR_HEADER_LEN + pcm.len());
        let coded = [0, 2, 1, 5, 0];
        let audio = round_trip(Payload::CodedAudio(CodedAudio {
            sample_rate: 200_000,
            channels: 2,
            first_sample: 1 << 40,
            capture_time_us: 1_700_000_000_000_000,
            coded: &coded,
        }));
        assert_eq!(audio.len(), CODED_AUDIO_HEADER_LEN + coded.len());
        let repair = round_trip(Payload::CodedRepair(CodedRepair {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 7,
            frames: 2,
            capture_time_xor: 0x0123_4567_89ab_cdef,
            frame_samples: 480,
            lengths: &[0, 5, 0, 3],
            coded_xor: &coded,
        }));
        assert_eq!(repair.len(), CODED_REPAIR_HEADER_LEN + 4 + coded.len());
    }

    #[test]
    fn bad_coded_payloads_get_typed_errors() {
        let audio = round_trip(Payload::CodedAudio(CodedAudio {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 0,
            capture_time_us: 0,
            coded: &[0, 3, 1, 0, 0],
        }));
        let repair = round_trip(Payload::CodedRepair(CodedRepair {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 0,
            frames: 2,
            capture_time_xor: 0,
            frame_samples: 3,
            lengths: &[0, 5, 0, 4],
            coded_xor: &[0, 3, 1, 0, 0],
        }));
        let with = |bytes: &[u8], at: usize, value: u8| {
            let mut b = bytes.to_vec();
            b[at] = value;
            b
        };
        let cases: [(Vec<u8>, PayloadError); 9] = [
            (
                audio[..CODED_AUDIO_HEADER_LEN + 2].to_vec(),
                PayloadError::Truncated {
                    needed: 26,
                    available: 25,
                },
            ),
            (with(&audio, 6, 0), PayloadError::NoChannels),
            (
                with(&audio, 6, 2),
                PayloadError::SampleCount {
                    samples: 3,
                    channels: 2,
                },
            ),
            (
                repair[..CODED_REPAIR_HEADER_LEN - 1].to_vec(),
                PayloadError::Truncated {
                    needed: 26,
                    available: 25,
                },
            ),
            (
                repair[..CODED_REPAIR_HEADER_LEN + 3].to_vec(),
                PayloadError::Truncated {
                    needed: 30,
                    available: 29,
                },
            ),
            (with(&repair, 15, 0), PayloadError::EmptyGroup),
            (with(&repair, 6, 0), PayloadError::NoChannels),
            (
                repair[..repair.len() - 1].to_vec(),
                PayloadError::ParityLength { len: 4, longest: 5 },
            ),
            (
                with(&repair, CODED_REPAIR_HEADER_LEN + 3, 6),
                PayloadError::ParityLength { len: 5, longest: 6 },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Payload::decode(&bytes), Err(expected), "{bytes:02x?}");
        }
    }

    #[test]
    fn bad_payloads_get_typed_errors() {
        let ping = round_trip(Payload::Ping(Ping {
            id: 9,
            send_time_us: 9,
        }));
        let audio = round_trip(Payload::Audio(Audio {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 0,
            capture_time_us: 0,
            pcm: &[0; 4],
        }));
        let with = |bytes: &[u8], at: usize, value: u8| {
            let mut b = bytes.to_vec();
            b[at] = value;
            b
        };
        let cases: [(Vec<u8>, PayloadError); 12] = [
            (vec![], PayloadError::Empty),
            (
                vec![1],
                PayloadError::Truncated {
                    needed: 2,
                    available: 1,
                },
            ),
            (
                with(&ping, 0, 2),
                PayloadError::UnsupportedVersion { version: 2 },
            ),
            (with(&ping, 1, 0), PayloadError::UnknownType { kind: 0 }),
            (with(&ping, 1, 9), PayloadError::UnknownType { kind: 9 }),
            (
                ping[..13].to_vec(),
                PayloadError::Truncated {
                    needed: 14,
                    available: 13,
                },
            ),
            (
                [&ping[..], &[0]].concat(),
                PayloadError::TrailingBytes { extra: 1 },
            ),
            (
                audio[..22].to_vec(),
                PayloadError::Truncated {
                    needed: 23,
                    available: 22,
                },
            ),
            (
                [&audio[..2], &[0; 4], &audio[6..]].concat(),
                PayloadError::ZeroSampleRate,
            ),
            (with(&audio, 6, 0), PayloadError::NoChannels),
            (
                with(&audio, 6, 3),
                PayloadError::PcmLength {
                    len: 4,
                    channels: 3,
                },
            ),
            (vec![1, 5, 0xff], PayloadError::Utf8),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Payload::decode(&bytes), Err(expected), "{bytes:02x?}");
        }
        let repair = round_trip(Payload::Repair(Repair {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 0,
            frames: 4,
            capture_time_xor: 0,
            pcm_xor: &[0; 4],
        }));
        for (bytes, expected) in [
            (
                repair[..23].to_vec(),
                PayloadError::Truncated {
                    needed: 24,
                    available: 23,
                },
            ),
            (with(&repair, 15, 0), PayloadError::EmptyGroup),
            (with(&repair, 6, 0), PayloadError::NoChannels),
            (
                repair[..REPAIR_HEADER_LEN + 1].to_vec(),
                PayloadError::PcmLength {
                    len: 1,
                    channels: 1,
                },
            ),
        ] {
            assert_eq!(Payload::decode(&bytes), Err(expected), "{bytes:02x?}");
        }
        assert_eq!(
            Payload::decode(&audio[..AUDIO_HEADER_LEN + 1]),
            Err(PayloadError::PcmLength {
                len: 1,
                channels: 1
            })
        );
    }

    #[test]
    fn short_prefixes_are_errors() {
        let hello = round_trip(Payload::Hello(Hello {
            protocol_version: 1,
            client: "x",
            sample_rate: 8_000,
            channels: 1,
            frame_duration_us: 20_000,
        }));
        // 13 fixed bytes; a shorter prefix is an error, a longer one a hello with a shorter name.
        for len in 0..13 {
            assert!(Payload::decode(&hello[..len]).is_err(), "prefix {len}");
        }
        assert!(matches!(
            Payload::decode(&hello[..13]),
            Ok(Payload::Hello(Hello { client: "", .. }))
        ));
    }

    #[test]
    fn audio_counts_samples_per_channel() {
        let audio = Audio {
            sample_rate: 48_000,
            channels: 2,
            first_sample: 0,
            capture_time_us: 0,
            pcm: &[0; 16],
        };
        assert_eq!(audio.samples_per_channel(), 4);
    }
}
