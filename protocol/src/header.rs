//! The SFrame header of RFC 9605 section 4.3: a key id (KID) and a counter (CTR).
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+---------------------------+---------------------------+
//! |X|  K  |Y|  C  |   Key ID (0..8 bytes)     |   Counter (0..8 bytes)    |
//! +-+-+-+-+-+-+-+-+---------------------------+---------------------------+
//! ```
//!
//! When X is 0, K holds the KID itself (0..=7); when X is 1, K + 1 is the length in bytes of the
//! big-endian KID that follows. Y and C say the same of the counter. Encoding always uses the
//! shortest form; parsing accepts any well-formed header, as the RFC's receivers must.

use core::fmt;

/// A parsed or to-be-written SFrame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The key id: which sender's key protects the frame.
    pub kid: u64,
    /// The frame counter, unique per key; XORed into the nonce.
    pub ctr: u64,
}

/// Why a byte string is not an SFrame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The buffer holds no byte at all.
    Empty,
    /// The config byte announces more KID or counter bytes than the buffer holds.
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty frame: no sframe header"),
            Self::Truncated { needed, available } => write!(
                f,
                "truncated sframe header: needs {needed} bytes, frame has {available}"
            ),
        }
    }
}

impl core::error::Error for HeaderError {}

impl Header {
    /// The longest header: one config byte, an 8-byte KID and an 8-byte counter.
    pub const MAX_LEN: usize = 17;

    /// A header for `kid` and `ctr`.
    #[must_use]
    pub const fn new(kid: u64, ctr: u64) -> Self {
        Self { kid, ctr }
    }

    /// The length of this header's shortest encoding.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        1 + field_len(self.kid) + field_len(self.ctr)
    }

    /// Writes the shortest encoding into the front of `out` and returns its length.
    ///
    /// # Panics
    ///
    /// When `out` is shorter than [`Header::encoded_len`]; [`Header::MAX_LEN`] bytes always fit.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let kid_len = field_len(self.kid);
        let ctr_len = field_len(self.ctr);
        let len = 1 + kid_len + ctr_len;
        assert!(
            out.len() >= len,
            "header buffer shorter than the encoded header"
        );
        out[0] = config_nibble(self.kid, kid_len) << 4 | config_nibble(self.ctr, ctr_len);
        out[1..1 + kid_len].copy_from_slice(&self.kid.to_be_bytes()[8 - kid_len..]);
        out[1 + kid_len..len].copy_from_slice(&self.ctr.to_be_bytes()[8 - ctr_len..]);
        len
    }

    /// Parses the header at the front of `buf`; returns it and its length in bytes.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), HeaderError> {
        let &config = buf.first().ok_or(HeaderError::Empty)?;
        let kid_len = extended_len(config >> 4);
        let ctr_len = extended_len(config & 0x0f);
        let len = 1 + kid_len + ctr_len;
        if buf.len() < len {
            return Err(HeaderError::Truncated {
                needed: len,
                available: buf.len(),
            });
        }
        let kid = if kid_len == 0 {
            u64::from((config >> 4) & 0x07)
        } else {
            be_u64(&buf[1..1 + kid_len])
        };
        let ctr = if ctr_len == 0 {
            u64::from(config & 0x07)
        } else {
            be_u64(&buf[1 + kid_len..len])
        };
        Ok((Self { kid, ctr }, len))
    }
}

/// Bytes a value needs after the config byte: none when it fits the 3-bit field.
const fn field_len(value: u64) -> usize {
    if value < 8 {
        0
    } else {
        8 - (value.leading_zeros() as usize / 8)
    }
}

/// The 4-bit half of the config byte for a value and its extended length.
fn config_nibble(value: u64, len: usize) -> u8 {
    if len == 0 {
        // The value fits in three bits; the check in `field_len` guarantees it.
        value as u8
    } else {
        0x08 | (len - 1) as u8
    }
}

/// The extended length a config nibble announces, or 0 when the value sits in the nibble.
const fn extended_len(nibble: u8) -> usize {
    if nibble & 0x08 == 0 {
        0
    } else {
        (nibble & 0x07) as usize + 1
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| acc << 8 | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn small_values_sit_in_the_config_byte() {
        let mut buf = [0u8; Header::MAX_LEN];
        assert_eq!(Header::new(5, 3).encode(&mut buf), 1);
        assert_eq!(buf[0], 0x53);
    }

    #[test]
    fn largest_header_round_trips() {
        let header = Header::new(u64::MAX, u64::MAX);
        let mut buf = [0u8; Header::MAX_LEN];
        assert_eq!(header.encode(&mut buf), Header::MAX_LEN);
        assert_eq!(Header::parse(&buf), Ok((header, Header::MAX_LEN)));
    }

    #[test]
    fn truncated_and_empty_are_errors() {
        assert_eq!(Header::parse(&[]), Err(HeaderError::Empty));
        assert_eq!(
            Header::parse(&[0x8f, 1, 2]),
            Err(HeaderError::Truncated {
                needed: 10,
                available: 3
            })
        );
    }
}
