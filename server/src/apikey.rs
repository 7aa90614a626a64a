//! The root API key: what lets a browser use this server.

use std::fmt;

use rand::Rng;

/// The shortest key the server accepts.
pub const MIN_LEN: usize = 72;

/// A validated API key: at least [`MIN_LEN`] letters a-z or A-Z.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// Why a string is not an acceptable API key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// Fewer than [`MIN_LEN`] characters.
    TooShort {
        /// How many characters the key has.
        len: usize,
    },
    /// A character outside a-z and A-Z.
    NotALetter,
}

impl fmt::Display for ApiKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "APIKEY has {len} characters; it needs at least {MIN_LEN} letters a-z or A-Z \
                 (`line-server generate-apikey` prints a good one)"
            ),
            Self::NotALetter => f.write_str(
                "APIKEY may hold only letters a-z and A-Z \
                 (`line-server generate-apikey` prints a good one)",
            ),
        }
    }
}

impl std::error::Error for ApiKeyError {}

impl ApiKey {
    /// Checks a configured key.
    pub fn parse(key: &str) -> Result<Self, ApiKeyError> {
        if key.len() < MIN_LEN {
            return Err(ApiKeyError::TooShort { len: key.len() });
        }
        if !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ApiKeyError::NotALetter);
        }
        Ok(Self(key.to_owned()))
    }

    /// A fresh key of 80 letters from the OS random source (about 456 bits).
    #[must_use]
    pub fn generate() -> Self {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut rng = rand::rng();
        let key = (0..80)
            .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
            .collect();
        Self(key)
    }

    /// The key itself, for the start links and for comparison.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert!(ApiKey::parse(a.expose()).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn weak_keys_are_refused() {
        assert_eq!(
            ApiKey::parse("short"),
            Err(ApiKeyError::TooShort { len: 5 })
        );
        let digits = "1".repeat(80);
        assert_eq!(ApiKey::parse(&digits), Err(ApiKeyError::NotALetter));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = ApiKey::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
    }
}
