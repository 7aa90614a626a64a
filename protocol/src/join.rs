//! What a client presents to the relay, besides the line id, to take a slot on a line.
//!
//! - The [`JoinToken`] binds a line's two slots to the people who hold its leaf. The first socket
//!   on a line registers it; the relay lets a later socket on that line in only if it presents the
//!   same token. It is derived from the leaf under its own HKDF label (`line 1.0 join`), so it
//!   reveals nothing about the leaf or the keys, and the relay cannot compute it from the line id
//!   it sees: someone who learnt a line id alone cannot take a slot on a line that is in use.
//! - The [`ParticipantId`] names one person's place on the line across reconnects: 16 random
//!   bytes a client draws once per call and sends with every connection of that call. A new
//!   connection with the participant id of a slot that is still held takes that slot over at
//!   once (the relay closes the old socket), so a changed network does not lock the person out
//!   until the old socket times out.
//!
//! Both travel as query parameters of `/ws` (`join=` and `participant=`), 22 characters of
//! base64url each, and neither is ever printed by `Debug`.
//!
//! ```
//! use line_protocol::join::{JoinToken, ParticipantId};
//! use line_protocol::leaf::LeafKey;
//!
//! let leaf = LeafKey::from_random([7; 32]);
//! let token = leaf.join_token();
//! assert_eq!(token.to_string().parse::<JoinToken>(), Ok(token.clone()));
//! assert_eq!(format!("{token:?}"), "JoinToken(..)");
//! let me = ParticipantId::from_random([1; 16]);
//! assert_eq!(me.to_string().len(), 22);
//! ```

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

/// The HTTP statuses with which the relay refuses a WebSocket upgrade, one list for the relay and
/// the client. The relay answers a plain `GET` of the same URL with the same status, so a client,
/// which sees a refused upgrade only as a failed WebSocket, can ask why.
pub mod status {
    /// `line`, `join` or `participant` is missing or malformed (also what a plain `GET` without
    /// the upgrade headers gets once every check passed).
    pub const BAD_REQUEST: u16 = 400;
    /// `apikey` is missing or wrong.
    pub const API_KEY_REFUSED: u16 = 401;
    /// The `Origin` header is not one the relay allows.
    pub const ORIGIN_REFUSED: u16 = 403;
    /// Both slots of the line are held by other participants.
    pub const LINE_FULL: u16 = 409;
    /// The join token is not the line's: the line is in use by people with another link.
    pub const WRONG_TOKEN: u16 = 423;
    /// Too many failed API keys from this client, or too many sockets from its address.
    pub const TOO_MANY: u16 = 429;
    /// The relay holds as many lines as it may.
    pub const SERVER_FULL: u16 = 503;
}

/// Bytes in a join token or a participant id.
const LEN: usize = 16;
/// Characters in their text form (base64url without padding).
const TEXT_LEN: usize = 22;

/// The token that binds a line's slots to the holders of its leaf; see the [module docs](self).
#[derive(Clone)]
pub struct JoinToken([u8; LEN]);

/// One person's place on a line across reconnects; see the [module docs](self).
#[derive(Clone, Copy)]
pub struct ParticipantId([u8; LEN]);

/// Why a query parameter is not a join token or a participant id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinTextError {
    /// Not exactly 22 characters.
    Length {
        /// How many characters the text has.
        len: usize,
    },
    /// A character outside base64url, or non-canonical trailing bits.
    Alphabet,
}

impl fmt::Display for JoinTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { len } => write!(f, "has {len} characters instead of {TEXT_LEN}"),
            Self::Alphabet => f.write_str("is not base64url (A-Z, a-z, 0-9, - and _)"),
        }
    }
}

impl core::error::Error for JoinTextError {}

fn decode(s: &str) -> Result<[u8; LEN], JoinTextError> {
    if s.len() != TEXT_LEN {
        return Err(JoinTextError::Length { len: s.len() });
    }
    let mut bytes = [0u8; LEN];
    match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
        Ok(LEN) => Ok(bytes),
        _ => Err(JoinTextError::Alphabet),
    }
}

fn encode(bytes: &[u8; LEN], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut text = [0u8; TEXT_LEN];
    let n = URL_SAFE_NO_PAD
        .encode_slice(bytes, &mut text)
        .expect("16 bytes encode to 22 characters");
    f.write_str(core::str::from_utf8(&text[..n]).expect("base64 is ascii"))
}

impl JoinToken {
    /// Bytes in a join token.
    pub const LEN: usize = LEN;

    /// A token from its bytes: what [`LeafKey::join_token`](crate::leaf::LeafKey::join_token)
    /// derives, or what a relay parsed.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; LEN]) -> Self {
        Self(bytes)
    }

    /// The token's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

impl ParticipantId {
    /// Bytes in a participant id.
    pub const LEN: usize = LEN;

    /// A participant id from 16 bytes the caller drew from a cryptographic random source.
    #[must_use]
    pub const fn from_random(bytes: [u8; LEN]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

macro_rules! text_form {
    ($ty:ident, $name:literal) => {
        impl FromStr for $ty {
            type Err = JoinTextError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode(s).map(Self)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                encode(&self.0, f)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // A bearer credential for a line or a slot: never in a log.
                f.write_str(concat!($name, "(..)"))
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }

        impl Eq for $ty {}
    };
}

text_form!(JoinToken, "JoinToken");
text_form!(ParticipantId, "ParticipantId");

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn text_forms_round_trip() {
        let token = JoinToken::from_bytes(*b"0123456789abcdef");
        assert_eq!(token.to_string().len(), TEXT_LEN);
        assert_eq!(token.to_string().parse(), Ok(token.clone()));
        let id = ParticipantId::from_random([0xfe; 16]);
        assert_eq!(id.to_string().parse(), Ok(id));
    }

    #[test]
    fn bad_text_says_what_is_wrong() {
        assert_eq!(
            "abc".parse::<JoinToken>(),
            Err(JoinTextError::Length { len: 3 })
        );
        assert_eq!(
            "!!!!!!!!!!!!!!!!!!!!!!".parse::<ParticipantId>(),
            Err(JoinTextError::Alphabet)
        );
        // 22 characters of which the last carries bits 16 bytes cannot have.
        assert_eq!(
            "AAAAAAAAAAAAAAAAAAAAAB".parse::<JoinToken>(),
            Err(JoinTextError::Alphabet)
        );
    }

    #[test]
    fn debug_prints_no_bytes() {
        let token = JoinToken::from_bytes([0xab; 16]);
        let text = token.to_string();
        assert_eq!(format!("{token:?}"), "JoinToken(..)");
        let id = ParticipantId::from_random([0xab; 16]);
        assert_eq!(format!("{id:?}"), "ParticipantId(..)");
        assert!(!format!("{token:?}{id:?}").contains(&text[..8]));
    }

    #[test]
    fn equality_compares_every_byte() {
        let mut other = [0u8; 16];
        other[15] = 1;
        assert_ne!(JoinToken::from_bytes([0; 16]), JoinToken::from_bytes(other));
        assert_ne!(
            ParticipantId::from_random([0; 16]),
            ParticipantId::from_random(other)
        );
    }
}
