//! The line id: the only thing the relay learns about a call.
//!
//! Sixteen bytes, written as 22 characters of base64url without padding. Both people derive the
//! same id from their shared leaf key with a one-way function, so the relay can pair them without
//! learning anything that opens their frames.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A line id: 16 bytes, text form 22 characters of base64url without padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineId([u8; LineId::LEN]);

/// Why a string is not a line id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineIdError {
    /// Not exactly 22 characters.
    Length {
        /// How many characters the string has.
        len: usize,
    },
    /// A character outside base64url, or non-canonical trailing bits.
    Alphabet,
}

impl fmt::Display for LineIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { len } => write!(
                f,
                "a line id has {} characters, this one has {len}",
                LineId::TEXT_LEN
            ),
            Self::Alphabet => f.write_str("a line id is base64url (A-Z, a-z, 0-9, - and _)"),
        }
    }
}

impl core::error::Error for LineIdError {}

impl LineId {
    /// Bytes in a line id.
    pub const LEN: usize = 16;
    /// Characters in its text form.
    pub const TEXT_LEN: usize = 22;

    /// A line id from its bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl FromStr for LineId {
    type Err = LineIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::TEXT_LEN {
            return Err(LineIdError::Length { len: s.len() });
        }
        let mut bytes = [0u8; Self::LEN];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(Self::LEN) => Ok(Self(bytes)),
            _ => Err(LineIdError::Alphabet),
        }
    }
}

impl fmt::Display for LineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; Self::TEXT_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut text)
            .expect("16 bytes encode to 22 characters");
        f.write_str(core::str::from_utf8(&text[..n]).expect("base64 is ascii"))
    }
}

impl fmt::Debug for LineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LineId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use alloc::string::ToString;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn text_form_round_trips() {
        let id = LineId::from_bytes(*b"0123456789abcdef");
        let text = id.to_string();
        assert_eq!(text.len(), LineId::TEXT_LEN);
        assert_eq!(text.parse(), Ok(id));
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!("abc".parse::<LineId>(), Err(LineIdError::Length { len: 3 }));
        assert_eq!(
            "!!!!!!!!!!!!!!!!!!!!!!".parse::<LineId>(),
            Err(LineIdError::Alphabet)
        );
        // Canonical 22-character ids end in a character whose low four bits are zero.
        assert_eq!(
            "AAAAAAAAAAAAAAAAAAAAAB".parse::<LineId>(),
            Err(LineIdError::Alphabet)
        );
    }
}
