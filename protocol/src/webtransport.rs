//! The WebTransport binding: what travels where on a WebTransport session with the relay.
//!
//! Frames travel as datagrams, one frame per datagram, unchanged. The relay also opens one
//! unidirectional stream to the client, which carries [records](Record): relay control messages
//! and any frame too large for a datagram on that session (one from a peer on a WebSocket with
//! longer frames). docs/PROTOCOL.md section 6.3 has the whole binding.
//!
//! ```
//! use line_protocol::webtransport::{Record, RecordKind};
//!
//! let mut stream = Vec::new();
//! Record::new(RecordKind::Control, br#"{"type":"waiting"}"#).encode_into(&mut stream);
//! let (record, used) = Record::parse(&stream).unwrap().expect("a whole record");
//! assert_eq!(record.kind, RecordKind::Control);
//! assert_eq!(used, stream.len());
//! ```

use alloc::vec::Vec;
use core::fmt;

/// The path of the WebTransport session (the query is that of `/ws`).
pub const PATH: &str = "/wt";

/// The largest frame a sender puts in one datagram: every QUIC path carries a 1200-byte UDP
/// payload, less QUIC's and HTTP/3's headers. 2.5 ms of 200 kHz mono audio, or 10 ms at 48 kHz,
/// fits with room to spare.
pub const MAX_DATAGRAM_FRAME_LEN: usize = 1100;

/// Bytes before a record's payload: its kind and its length (big-endian `u16`).
pub const RECORD_HEADER_LEN: usize = 3;

/// What a record on the relay's stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// A relay control message (section 7), JSON text.
    Control,
    /// A frame too large for a datagram, unchanged.
    Frame,
}

impl RecordKind {
    /// The kind's byte on the wire.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Control => 1,
            Self::Frame => 2,
        }
    }
}

/// One record of the relay's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// What it carries.
    pub kind: RecordKind,
    /// The control message or frame.
    pub payload: &'a [u8],
}

/// A stream that is not a sequence of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// A kind byte this version does not know.
    UnknownKind(u8),
    /// A payload longer than a record holds.
    TooLong(usize),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(kind) => write!(f, "unknown record kind {kind}"),
            Self::TooLong(len) => write!(f, "a record holds at most 65535 bytes, not {len}"),
        }
    }
}

impl core::error::Error for RecordError {}

impl<'a> Record<'a> {
    /// A record of `kind` around `payload`.
    #[must_use]
    pub const fn new(kind: RecordKind, payload: &'a [u8]) -> Self {
        Self { kind, payload }
    }

    /// The record's header; fails for a payload over 65535 bytes (frames are at most
    /// [`crate::MAX_FRAME_LEN`], control messages a few hundred bytes).
    pub fn header(&self) -> Result<[u8; RECORD_HEADER_LEN], RecordError> {
        let len = u16::try_from(self.payload.len())
            .map_err(|_| RecordError::TooLong(self.payload.len()))?;
        let [hi, lo] = len.to_be_bytes();
        Ok([self.kind.to_byte(), hi, lo])
    }

    /// Appends the record to `out`.
    ///
    /// # Panics
    ///
    /// When the payload is over 65535 bytes: a caller's bug (see [`Record::header`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let header = self.header().expect("record payloads fit a u16 length");
        out.extend_from_slice(&header);
        out.extend_from_slice(self.payload);
    }

    /// The first record in `buf` and the bytes it took, or `None` until a whole one is there.
    pub fn parse(buf: &'a [u8]) -> Result<Option<(Self, usize)>, RecordError> {
        let [kind, hi, lo, ..] = *buf else {
            return Ok(None);
        };
        let kind = match kind {
            1 => RecordKind::Control,
            2 => RecordKind::Frame,
            other => return Err(RecordError::UnknownKind(other)),
        };
        let end = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([hi, lo]));
        Ok(buf
            .get(RECORD_HEADER_LEN..end)
            .map(|payload| (Self { kind, payload }, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_wait_for_their_whole_payload() {
        let mut stream = Vec::new();
        Record::new(RecordKind::Control, b"{}").encode_into(&mut stream);
        Record::new(RecordKind::Frame, &[7; 300]).encode_into(&mut stream);
        assert_eq!(&stream[..3], &[1, 0, 2]);
        assert_eq!(&stream[5..8], &[2, 1, 44]);
        for cut in 0..5 {
            assert_eq!(Record::parse(&stream[..cut]), Ok(None), "{cut}");
        }
        let (first, used) = Record::parse(&stream).unwrap().unwrap();
        assert_eq!(
            (first.kind, first.payload, used),
            (RecordKind::Control, &b"{}"[..], 5)
        );
        assert_eq!(Record::parse(&stream[5..stream.len() - 1]), Ok(None));
        let (second, used) = Record::parse(&stream[5..]).unwrap().unwrap();
        assert_eq!(
            (second.kind, second.payload.len(), used),
            (RecordKind::Frame, 300, 303)
        );
    }

    #[test]
    fn unknown_kinds_and_oversized_payloads_are_errors() {
        assert_eq!(Record::parse(&[9, 0, 0]), Err(RecordError::UnknownKind(9)));
        let big = alloc::vec![0; 70_000];
        assert_eq!(
            Record::new(RecordKind::Frame, &big).header(),
            Err(RecordError::TooLong(70_000))
        );
        const { assert!(crate::MAX_FRAME_LEN < 65_536) };
    }
}
