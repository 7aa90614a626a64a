//! The leaf key: the secret both people on a line share, carried in the link's fragment.
//!
//! Thirty-two random bytes, written `leaf_` followed by 43 characters of base64url without padding.
//! Everything else is derived from it with HKDF-SHA512 (RFC 5869), one PRK and one label per use:
//!
//! - the [`LineId`] the relay sees: `HKDF-Expand(PRK, "line 1.0 line id", 16)`;
//! - the [`JoinToken`] the relay checks before it lets a socket on the line:
//!   `HKDF-Expand(PRK, "line 1.0 join", 16)`;
//! - each sender's SFrame base key: `HKDF-Expand(PRK, "line 1.0 sender" || KID (8 bytes BE), 32)`;
//!
//! where `PRK = HKDF-Extract(salt = "", IKM = leaf)`. SHA-512 because SFrame suite 0x0005 already
//! brings it, so the whole protocol rests on one hash. HKDF-Expand is one-way: a line id reveals
//! nothing about the leaf, nor about the keys derived under other labels.
//!
//! ```
//! use line_protocol::leaf::LeafKey;
//!
//! let leaf = LeafKey::from_random([7; 32]);
//! let text = leaf.to_string();
//! assert!(text.starts_with("leaf_") && text.len() == 48);
//! let parsed: LeafKey = text.parse()?;
//! assert_eq!(parsed, leaf);
//! assert_eq!(parsed.line_id(), leaf.line_id());
//! # Ok::<(), line_protocol::leaf::LeafKeyError>(())
//! ```

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::Sha512;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::join::JoinToken;
use crate::line_id::LineId;

/// The HKDF-Expand label of the line id.
const LINE_ID_LABEL: &[u8] = b"line 1.0 line id";
/// The HKDF-Expand label of the join token.
const JOIN_LABEL: &[u8] = b"line 1.0 join";
/// The HKDF-Expand label of a sender's base key, followed by the sender's KID.
const SENDER_LABEL: &[u8] = b"line 1.0 sender";

/// The shared secret of a line: 32 bytes, wiped on drop, never printed by `Debug`.
#[derive(Clone)]
pub struct LeafKey([u8; LeafKey::LEN]);

/// Why a string is not a leaf key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeafKeyError {
    /// The string does not start with `leaf_`.
    MissingPrefix,
    /// After the prefix come only base64url characters, but not 43 of them.
    Length {
        /// How many characters follow the prefix.
        len: usize,
    },
    /// A character outside base64url (A-Z, a-z, 0-9, `-`, `_`) among the first 43.
    Alphabet {
        /// Byte offset of the character in the whole string.
        index: usize,
    },
    /// The key ends in `=` padding; line's text form has none.
    Padding,
    /// A valid key followed by something else (a space, a newline, more text).
    TrailingJunk,
    /// The last character has bits set that 32 bytes cannot produce: not a canonical encoding.
    NonCanonical,
}

impl fmt::Display for LeafKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPrefix => f.write_str("a leaf key starts with \"leaf_\""),
            Self::Length { len } => write!(
                f,
                "a leaf key has {} characters after \"leaf_\", this one has {len}",
                LeafKey::TEXT_LEN
            ),
            Self::Alphabet { index } => write!(
                f,
                "character {index} of the leaf key is not base64url (A-Z, a-z, 0-9, - and _)"
            ),
            Self::Padding => f.write_str("a leaf key has no \"=\" padding"),
            Self::TrailingJunk => f.write_str("the leaf key is followed by other characters"),
            Self::NonCanonical => f.write_str("the leaf key's last character is not canonical"),
        }
    }
}

impl core::error::Error for LeafKeyError {}

impl LeafKey {
    /// Bytes in a leaf key.
    pub const LEN: usize = 32;
    /// The prefix of the text form.
    pub const PREFIX: &'static str = "leaf_";
    /// Base64url characters after the prefix.
    pub const TEXT_LEN: usize = 43;

    /// A leaf key from 32 bytes the caller drew from a cryptographic random source.
    #[must_use]
    pub const fn from_random(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The line id for this leaf: what the relay uses to pair the two people.
    #[must_use]
    pub fn line_id(&self) -> LineId {
        let mut id = [0u8; LineId::LEN];
        self.hkdf()
            .expand(LINE_ID_LABEL, &mut id)
            .expect("16 bytes is a valid HKDF-SHA512 output length");
        LineId::from_bytes(id)
    }

    /// The token that binds the line's slots at the relay to the holders of this leaf. Derived
    /// under its own label: the relay, which sees the line id, cannot compute it.
    #[must_use]
    pub fn join_token(&self) -> JoinToken {
        let mut token = [0u8; JoinToken::LEN];
        self.hkdf()
            .expand(JOIN_LABEL, &mut token)
            .expect("16 bytes is a valid HKDF-SHA512 output length");
        JoinToken::from_bytes(token)
    }

    /// The SFrame base key of the sender with `kid` (RFC 9605 section 4.4.1: one per sender).
    pub(crate) fn sender_base_key(&self, kid: u64) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        self.hkdf()
            .expand_multi_info(&[SENDER_LABEL, &kid.to_be_bytes()], key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA512 output length");
        key
    }

    fn hkdf(&self) -> Hkdf<Sha512> {
        Hkdf::<Sha512>::new(None, &self.0)
    }
}

impl FromStr for LeafKey {
    type Err = LeafKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s
            .strip_prefix(Self::PREFIX)
            .ok_or(LeafKeyError::MissingPrefix)?;
        let is_b64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        match body.bytes().position(|b| !is_b64url(b)) {
            None if body.len() != Self::TEXT_LEN => {
                return Err(LeafKeyError::Length { len: body.len() });
            }
            None => {}
            Some(i) if body[i..].bytes().all(|b| b == b'=') => return Err(LeafKeyError::Padding),
            Some(i) if i >= Self::TEXT_LEN => return Err(LeafKeyError::TrailingJunk),
            Some(i) => {
                return Err(LeafKeyError::Alphabet {
                    index: Self::PREFIX.len() + i,
                });
            }
        }
        let mut bytes = Zeroizing::new([0u8; Self::LEN]);
        match URL_SAFE_NO_PAD.decode_slice(body, bytes.as_mut()) {
            Ok(Self::LEN) => Ok(Self(*bytes)),
            // The alphabet and length are right, so only the last character's spare bits remain.
            _ => Err(LeafKeyError::NonCanonical),
        }
    }
}

impl fmt::Display for LeafKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Zeroizing::new([0u8; LeafKey::TEXT_LEN]);
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, text.as_mut())
            .expect("32 bytes encode to 43 characters");
        f.write_str(Self::PREFIX)?;
        f.write_str(core::str::from_utf8(&text[..n]).expect("base64 is ascii"))
    }
}

impl fmt::Debug for LeafKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeafKey(..)")
    }
}

impl PartialEq for LeafKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for LeafKey {}

impl Drop for LeafKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for LeafKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample() -> LeafKey {
        LeafKey::from_random(core::array::from_fn(|i| i as u8))
    }

    #[test]
    fn text_form_round_trips() {
        let leaf = sample();
        let text = leaf.to_string();
        assert_eq!(text, "leaf_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");
        assert_eq!(text.parse::<LeafKey>(), Ok(leaf));
    }

    #[test]
    fn debug_prints_no_key_bytes() {
        let leaf = LeafKey::from_random([0xab; 32]);
        let debug = format!("{leaf:?}");
        assert_eq!(debug, "LeafKey(..)");
        assert!(!debug.contains(&leaf.to_string()[5..10]));
    }

    #[test]
    fn each_kind_of_bad_text_says_what_is_wrong() {
        let good = sample().to_string();
        let body = &good[5..];
        let cases: [(String, LeafKeyError); 8] = [
            (body.to_string(), LeafKeyError::MissingPrefix),
            (format!("LEAF_{body}"), LeafKeyError::MissingPrefix),
            (
                good[..good.len() - 1].to_string(),
                LeafKeyError::Length { len: 42 },
            ),
            (format!("{good}A"), LeafKeyError::Length { len: 44 }),
            (
                format!("{}+{}", &good[..10], &good[11..]),
                LeafKeyError::Alphabet { index: 10 },
            ),
            (format!("{good}="), LeafKeyError::Padding),
            (format!("{good}\n"), LeafKeyError::TrailingJunk),
            (
                format!("{}B", &good[..good.len() - 1]),
                LeafKeyError::NonCanonical,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<LeafKey>(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn line_id_is_stable_and_separates_leaves() {
        let leaf = sample();
        // Pinned so a change to the derivation cannot slip through; docs/PROTOCOL.md shows it too.
        assert_eq!(leaf.line_id().to_string(), "meHvxZx1wpQFv28f3q3Jng");
        assert_eq!(leaf.clone().line_id(), leaf.line_id());
        assert_ne!(LeafKey::from_random([1; 32]).line_id(), leaf.line_id());
    }

    #[test]
    fn join_token_is_stable_and_unlike_the_line_id() {
        let leaf = sample();
        // Pinned so a change to the derivation cannot slip through; docs/PROTOCOL.md shows it too.
        assert_eq!(leaf.join_token().to_string(), "BtGVH1rWPfe3w_NecGZdQg");
        assert_ne!(leaf.join_token().as_bytes(), leaf.line_id().as_bytes());
        assert_ne!(
            LeafKey::from_random([1; 32]).join_token(),
            leaf.join_token()
        );
    }

    #[test]
    fn sender_keys_differ_per_kid_and_from_the_line_id() {
        let leaf = sample();
        let a = leaf.sender_base_key(1);
        let b = leaf.sender_base_key(2);
        assert_ne!(*a, *b);
        assert_ne!(&a[..16], leaf.line_id().as_bytes());
    }

    #[test]
    fn equality_compares_all_bytes() {
        let mut other = [0u8; 32];
        other[31] = 1;
        assert_ne!(LeafKey::from_random([0; 32]), LeafKey::from_random(other));
    }
}
