//! Hex decoding for the tests' vectors and the examples in docs/PROTOCOL.md.

use alloc::vec::Vec;

/// Decodes hex digits, ignoring ASCII whitespace; `None` on anything else or an odd count.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| char::from(b).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}
