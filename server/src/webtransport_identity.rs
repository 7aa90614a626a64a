//! The certificate the WebTransport endpoint presents.
//!
//! With in-process TLS it is the HTTPS certificate itself (the same files, picked up again when
//! they are renewed). Behind a proxy, or on plain HTTP, there is no certificate a browser would
//! trust for the UDP port, and the real key belongs to the proxy alone: the server then makes its
//! own short-lived ECDSA P-256 certificate, which browsers accept when the page names its SHA-256
//! in `new WebTransport(url, {serverCertificateHashes})`. Browsers take such a certificate only
//! when it is valid for at most 14 days, so it lives [`LIFETIME`] and is replaced after
//! [`RENEW_AFTER`]; the page learns the current hash from `GET /webtransport` over the HTTPS it
//! was loaded from (see docs/PROTOCOL.md).

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use wtransport::Identity;

use crate::tls::TlsSettings;

/// How long a certificate made here is valid: under the 14 days browsers accept for a
/// certificate pinned by hash, with a day to spare for clocks that disagree.
pub const LIFETIME: Duration = Duration::from_secs(13 * 24 * 3600);

/// When a certificate made here is replaced: about halfway, so a page that fetched the hash just
/// before still connects for days, whatever the clocks say.
pub const RENEW_AFTER: Duration = Duration::from_secs(6 * 24 * 3600);

/// Where the endpoint's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentitySource {
    /// The HTTPS certificate and key files.
    Files(TlsSettings),
    /// A certificate made here for these DNS names, renewed before it expires.
    SelfSigned {
        /// Subject alternative names (the site's host name).
        names: Vec<String>,
    },
}

/// Why no certificate could be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate or key file does not load.
    Files {
        /// The certificate file.
        cert: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A name is not usable in a certificate.
    Name(String),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Files { cert, detail } => {
                write!(
                    f,
                    "cannot load {} for webtransport: {detail}",
                    cert.display()
                )
            }
            Self::Name(name) => write!(f, "{name:?} cannot be a certificate's name"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// A certificate with what the rest of the server needs to know about it.
pub struct Issued {
    /// Certificate chain and key.
    pub identity: Identity,
    /// The leaf's SHA-256, when browsers must be told it (a certificate made here).
    pub pinned_hash: Option<[u8; 32]>,
    /// When it was made or loaded.
    pub at: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Issued")
            .field("pinned_hash", &self.pinned_hash.map(hex))
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl IdentitySource {
    /// Loads or makes a certificate now.
    pub async fn issue(&self) -> Result<Issued, IdentityError> {
        let at = SystemTime::now();
        match self {
            Self::Files(settings) => {
                let identity = Identity::load_pemfiles(&settings.cert, &settings.key)
                    .await
                    .map_err(|e| IdentityError::Files {
                        cert: settings.cert.clone(),
                        detail: e.to_string(),
                    })?;
                Ok(Issued {
                    identity,
                    pinned_hash: None,
                    at,
                })
            }
            Self::SelfSigned { names } => {
                let identity = self_signed(names)?;
                let hash = *identity.certificate_chain().as_slice()[0].hash().as_ref();
                Ok(Issued {
                    identity,
                    pinned_hash: Some(hash),
                    at,
                })
            }
        }
    }

    /// The files' modification stamps, to tell when they were renewed.
    pub(crate) fn stamps(&self) -> Option<[(SystemTime, u64); 2]> {
        match self {
            Self::Files(settings) => crate::tls::stamp(settings),
            Self::SelfSigned { .. } => None,
        }
    }

    /// Whether a certificate issued at `issued` should be replaced at `now`. Files are
    /// replaced when they change, which [`crate::tls`]'s stamps tell, not by age.
    #[must_use]
    pub fn due(&self, issued: SystemTime, now: SystemTime) -> bool {
        match self {
            Self::Files(_) => false,
            // A clock that went back past the issue time would leave a certificate that is not
            // valid yet: replace it too.
            Self::SelfSigned { .. } => now
                .duration_since(issued)
                .map_or(true, |age| age >= RENEW_AFTER),
        }
    }
}

/// An ECDSA P-256 certificate for `names`, valid from now for [`LIFETIME`].
fn self_signed(names: &[String]) -> Result<Identity, IdentityError> {
    let days = u32::try_from(LIFETIME.as_secs() / (24 * 3600)).expect("a few days");
    Identity::self_signed_builder()
        .subject_alt_names(names)
        .from_now_utc()
        .validity_days(days)
        .build()
        .map_err(|_| IdentityError::Name(names.join(",")))
}

/// Lower-case hex, as `/webtransport` gives a hash.
#[must_use]
pub fn hex(bytes: [u8; 32]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The hash of the certificate the endpoint presents now, for pages about to connect.
#[derive(Debug, Default)]
pub struct PinnedHash(RwLock<Option<[u8; 32]>>);

impl PinnedHash {
    /// The current hash, `None` when the certificate needs no pinning.
    #[must_use]
    pub fn get(&self) -> Option<[u8; 32]> {
        *self.0.read().expect("hash lock is never poisoned")
    }

    pub(crate) fn set(&self, hash: Option<[u8; 32]>) {
        *self.0.write().expect("hash lock is never poisoned") = hash;
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;
    use x509_parser::prelude::*;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn made_here() -> IdentitySource {
        IdentitySource::SelfSigned {
            names: vec!["line.example".into(), "localhost".into()],
        }
    }

    #[tokio::test]
    async fn a_certificate_made_here_is_one_browsers_pin() {
        let issued = made_here().issue().await.expect("issues");
        let der = issued.identity.certificate_chain().as_slice()[0]
            .der()
            .to_vec();
        // The hash the page pins is the SHA-256 of the DER, computed here independently.
        let expected: [u8; 32] = sha2::Sha256::digest(&der).into();
        assert_eq!(issued.pinned_hash, Some(expected));
        let (_, cert) = X509Certificate::from_der(&der).expect("parses");
        assert_eq!(cert.version(), X509Version::V3);
        let validity = cert.validity();
        let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert!(lifetime > 0 && lifetime <= 14 * 24 * 3600, "{lifetime} s");
        assert_eq!(
            u64::try_from(lifetime).expect("positive"),
            LIFETIME.as_secs()
        );
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("fits");
        assert!((validity.not_before.timestamp() - now).abs() < 60);
        let key = cert.public_key();
        assert_eq!(
            key.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = key
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .expect("a named curve");
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
        let names: Vec<String> = cert
            .subject_alternative_name()
            .expect("parses")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["DNSName(line.example)", "DNSName(localhost)"]);
        // Each certificate has its own key, so its own hash.
        let again = made_here().issue().await.expect("issues");
        assert_ne!(again.pinned_hash, issued.pinned_hash);
    }

    #[test]
    fn certificates_made_here_are_renewed_well_before_they_expire() {
        let source = made_here();
        let issued = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert!(!source.due(issued, issued));
        assert!(!source.due(issued, issued + RENEW_AFTER - Duration::from_secs(1)));
        assert!(source.due(issued, issued + RENEW_AFTER));
        assert!(source.due(issued, issued + LIFETIME));
        // A clock set back before the certificate's start renews it too.
        assert!(source.due(issued, issued - Duration::from_secs(1)));
        // Renewed with at least a week of validity left for pages that fetched the old hash.
        assert!(LIFETIME - RENEW_AFTER >= 7 * DAY);
        assert!(LIFETIME <= 14 * DAY);
        // Files change on their own schedule.
        let files = IdentitySource::Files(TlsSettings::new("c.pem".into(), "k.pem".into()));
        assert!(!files.due(issued, issued + 100 * DAY));
    }

    #[test]
    fn hashes_print_as_lower_case_hex() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let text = hex(bytes);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00") && text.ends_with("0001"));
    }

    #[test]
    fn bad_names_are_an_error() {
        let source = IdentitySource::SelfSigned {
            names: vec!["bücher.example".into()],
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert!(matches!(
            runtime.block_on(source.issue()),
            Err(IdentityError::Name(_))
        ));
    }
}
