//! What a WebTransport session with the relay needs besides the browser, sans-IO: the relay's
//! answer to `GET /webtransport` and its stream of records (docs/PROTOCOL.md section 6.3).
//!
//! ```
//! use line_client::webtransport::{Endpoint, RecordReader};
//! use line_protocol::webtransport::{Record, RecordKind};
//!
//! let endpoint = Endpoint::from_json(r#"{"port":7777,"path":"/wt","certificate_hashes":[]}"#)
//!     .expect("a good answer");
//! assert_eq!((endpoint.port, endpoint.path.as_str()), (7777, "/wt"));
//!
//! let mut stream = Vec::new();
//! Record::new(RecordKind::Control, br#"{"type":"waiting"}"#).encode_into(&mut stream);
//! let mut reader = RecordReader::default();
//! reader.push(&stream[..4]);
//! reader.push(&stream[4..]);
//! let mut seen = Vec::new();
//! reader.drain(|kind, payload| seen.push((kind, payload.len())));
//! assert_eq!(seen, [(RecordKind::Control, 18)]);
//! ```

use core::fmt;

use line_protocol::webtransport::{RECORD_HEADER_LEN, RecordKind};
use serde::Deserialize;

/// Where the relay's WebTransport endpoint listens, from `GET /webtransport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The UDP port on the page's own host name.
    pub port: u16,
    /// The session's path (`/wt`).
    pub path: String,
    /// SHA-256 of the certificate to pin, when the relay made its own (behind a proxy); empty
    /// when it presents a CA-signed one.
    pub certificate_hashes: Vec<[u8; 32]>,
}

/// An answer of `/webtransport` that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// Not the JSON object the protocol describes.
    Json(String),
    /// A certificate hash that is not 64 hex digits.
    Hash,
    /// A path that does not start with `/`.
    Path,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "the webtransport answer is not what it should be: {e}"),
            Self::Hash => f.write_str("a certificate hash is not 64 hex digits"),
            Self::Path => f.write_str("the webtransport path does not start with /"),
        }
    }
}

impl std::error::Error for EndpointError {}

#[derive(Deserialize)]
struct Answer {
    port: u16,
    path: String,
    #[serde(default)]
    certificate_hashes: Vec<String>,
}

impl Endpoint {
    /// Reads the relay's answer (unknown fields are a later relay's, and ignored).
    pub fn from_json(json: &str) -> Result<Self, EndpointError> {
        let answer: Answer =
            serde_json::from_str(json).map_err(|e| EndpointError::Json(e.to_string()))?;
        if !answer.path.starts_with('/') {
            return Err(EndpointError::Path);
        }
        let certificate_hashes = answer
            .certificate_hashes
            .iter()
            .map(|hex| sha256_from_hex(hex).ok_or(EndpointError::Hash))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            port: answer.port,
            path: answer.path,
            certificate_hashes,
        })
    }
}

fn sha256_from_hex(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The relay's stream, cut into records as its bytes arrive in chunks of any size. It holds at
/// most one record's worth (under 64 KiB) beyond the chunk just pushed.
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: Vec<u8>,
}

impl RecordReader {
    /// Bytes that arrived on the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Hands each whole record to `f`, in order, and keeps the incomplete rest. Records of kinds
    /// this version does not know are skipped, as the protocol asks.
    pub fn drain(&mut self, mut f: impl FnMut(RecordKind, &[u8])) {
        let mut at = 0;
        while let [kind, hi, lo, ..] = self.buf[at..] {
            let end = at + RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([hi, lo]));
            let Some(payload) = self.buf.get(at + RECORD_HEADER_LEN..end) else {
                break;
            };
            if kind == RecordKind::Control.to_byte() {
                f(RecordKind::Control, payload);
            } else if kind == RecordKind::Frame.to_byte() {
                f(RecordKind::Frame, payload);
            }
            at = end;
        }
        self.buf.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use line_protocol::webtransport::Record;

    use super::*;

    #[test]
    fn the_answer_gives_the_port_path_and_pinned_hashes() {
        let hash = "00ff".repeat(16);
        let json =
            format!(r#"{{"port":443,"path":"/wt","certificate_hashes":["{hash}"],"later":1}}"#);
        let endpoint = Endpoint::from_json(&json).expect("a good answer");
        assert_eq!(endpoint.port, 443);
        assert_eq!(endpoint.certificate_hashes.len(), 1);
        assert_eq!(&endpoint.certificate_hashes[0][..2], &[0x00, 0xff]);
        for bad in [
            r#"{"port":443,"path":"/wt","certificate_hashes":["00"]}"#.to_owned(),
            format!(
                r#"{{"port":443,"path":"/wt","certificate_hashes":["{}"]}}"#,
                "zz".repeat(32)
            ),
        ] {
            assert_eq!(Endpoint::from_json(&bad), Err(EndpointError::Hash), "{bad}");
        }
        assert_eq!(
            Endpoint::from_json(r#"{"port":443,"path":"wt"}"#),
            Err(EndpointError::Path)
        );
        assert!(matches!(
            Endpoint::from_json(r#"{"port":70000,"path":"/wt"}"#),
            Err(EndpointError::Json(_))
        ));
    }

    #[test]
    fn records_are_cut_from_chunks_of_any_size_and_unknown_kinds_skipped() {
        let mut stream = Vec::new();
        Record::new(RecordKind::Control, br#"{"type":"peer-joined"}"#).encode_into(&mut stream);
        // A kind from a later version, with its length: skipped whole.
        stream.extend_from_slice(&[9, 0, 3, 1, 2, 3]);
        let frame: Vec<u8> = (0..4_000u32).map(|i| i as u8).collect();
        Record::new(RecordKind::Frame, &frame).encode_into(&mut stream);
        Record::new(RecordKind::Control, b"").encode_into(&mut stream);
        // Cut into chunks whose sizes are drawn from a seed printed on failure.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let mut x = seed;
        let mut reader = RecordReader::default();
        let mut seen = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let take = (1 + (x % 700) as usize).min(stream.len() - at);
            reader.push(&stream[at..at + take]);
            at += take;
            reader.drain(|kind, payload| seen.push((kind, payload.to_vec())));
        }
        assert_eq!(seen.len(), 3, "seed {seed}");
        assert_eq!(seen[0].0, RecordKind::Control, "seed {seed}");
        assert_eq!(seen[1], (RecordKind::Frame, frame), "seed {seed}");
        assert_eq!(seen[2], (RecordKind::Control, Vec::new()), "seed {seed}");
        assert!(reader.buf.is_empty());
    }
}
