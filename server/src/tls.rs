//! HTTPS/WSS with rustls, and picking up renewed certificate files without a restart.
//!
//! The watcher polls the files' modification times; when either changes it loads both and swaps
//! the server's rustls config. Connections already open keep the session they negotiated, so calls
//! go on; new connections get the new certificate. A half-written pair (certbot writes one file,
//! then the other) fails to load, is logged and retried at the next poll.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Where deployments mount the certificate chain when no flag names one.
pub const DEFAULT_CERT: &str = "/tmp/fullchain.pem";
/// Where deployments mount the private key when no flag names one.
pub const DEFAULT_KEY: &str = "/tmp/privkey.pem";

/// Which files to serve and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Also offer TLS 1.2 (TLS 1.3 only by default).
    pub allow_tls12: bool,
    /// How often the files are checked for renewal.
    pub reload_interval: Duration,
}

impl TlsSettings {
    /// TLS 1.3 only, checking the files every minute.
    #[must_use]
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self {
            cert,
            key,
            allow_tls12: false,
            reload_interval: Duration::from_secs(60),
        }
    }
}

/// Why TLS cannot be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// Only one of certificate and key was given.
    Incomplete,
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or broken.
        detail: String,
    },
    /// rustls refused the pair (for example, a key that does not match the certificate).
    Rustls(rustls::Error),
    /// The default key in `/tmp` could have been put there or changed by another user.
    UntrustedDefaultKey {
        /// The file.
        path: PathBuf,
        /// Who else could write it, and what to do.
        detail: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete => f.write_str("set both TLS_CERT and TLS_KEY, or neither"),
            Self::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Pem { path, detail } => write!(f, "{}: {detail}", path.display()),
            Self::Rustls(e) => write!(f, "tls configuration refused: {e}"),
            Self::UntrustedDefaultKey { path, detail } => write!(
                f,
                "refusing the default tls key {}: {detail}; fix that, or name the files with \
                 TLS_CERT and TLS_KEY",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// The certificate and key paths to use: both flags, or neither and then the deployment default
/// paths when both of those files exist and the key is safe to trust (see
/// [`check_default_key`]).
pub fn resolve_paths(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>, TlsError> {
    resolve_paths_with(
        cert,
        key,
        (Path::new(DEFAULT_CERT), Path::new(DEFAULT_KEY)),
        rustix::process::geteuid().as_raw(),
    )
}

/// [`resolve_paths`] with the default pair and the server's user id given.
pub fn resolve_paths_with(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    defaults: (&Path, &Path),
    euid: u32,
) -> Result<Option<(PathBuf, PathBuf)>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => {
            let (cert, key) = (defaults.0.to_owned(), defaults.1.to_owned());
            if !(cert.is_file() && key.is_file()) {
                return Ok(None);
            }
            check_default_key(&key, euid)?;
            Ok(Some((cert, key)))
        }
        _ => Err(TlsError::Incomplete),
    }
}

/// Whether a key found at the default path, in `/tmp` where any user may create files, can be
/// trusted: it (and a symlink at its path) must belong to root or to the server's own user, and
/// no group or other user may write it. Inside a container only the operator puts files there;
/// on a shared machine another user could plant a key of their own, and the server would then
/// serve a certificate whose key they hold.
pub fn check_default_key(path: &Path, euid: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt as _;
    let untrusted = |detail: String| TlsError::UntrustedDefaultKey {
        path: path.to_owned(),
        detail,
    };
    let read_error = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let trusted_owner = |uid: u32| uid == 0 || uid == euid;
    let link = std::fs::symlink_metadata(path).map_err(read_error)?;
    if link.file_type().is_symlink() && !trusted_owner(link.uid()) {
        return Err(untrusted(format!(
            "it is a symlink owned by uid {}, neither root nor this server's user (uid {euid})",
            link.uid()
        )));
    }
    let file = std::fs::metadata(path).map_err(read_error)?;
    if !trusted_owner(file.uid()) {
        return Err(untrusted(format!(
            "it is owned by uid {}, neither root nor this server's user (uid {euid}), so \
             another user may have put it there",
            file.uid()
        )));
    }
    let mode = file.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(untrusted(format!(
            "other users can write it (mode {mode:04o}); chmod go-w it"
        )));
    }
    Ok(())
}

/// Loads the files into a rustls server config.
pub fn load(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = read(&settings.cert)?;
    let key_pem = read(&settings.key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: settings.cert.clone(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: settings.cert.clone(),
            detail: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: settings.key.clone(),
        detail: e.to_string(),
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .map_err(TlsError::Rustls)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(TlsError::Rustls)?;
    // WebSockets ride on HTTP/1.1 upgrades.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// What identifies one version of the files on disk.
pub(crate) fn stamp(settings: &TlsSettings) -> Option<[(SystemTime, u64); 2]> {
    let one = |p: &Path| {
        let meta = std::fs::metadata(p).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    Some([one(&settings.cert)?, one(&settings.key)?])
}

/// Reloads `live` whenever the files change, until `stop` is cancelled.
pub async fn watch(live: RustlsConfig, settings: TlsSettings, stop: CancellationToken) {
    let mut loaded = stamp(&settings);
    let mut ticker = tokio::time::interval(settings.reload_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = stamp(&settings);
        if now.is_none() || now == loaded {
            continue;
        }
        match load(&settings) {
            Ok(config) => {
                live.reload_from_config(config);
                loaded = now;
                tracing::info!(cert = %settings.cert.display(), "tls certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "tls certificate changed but does not load yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_or_neither() {
        let (cert, key) = (PathBuf::from("c.pem"), PathBuf::from("k.pem"));
        assert!(matches!(
            resolve_paths(Some(cert.clone()), None),
            Err(TlsError::Incomplete)
        ));
        assert!(matches!(
            resolve_paths(None, Some(key.clone())),
            Err(TlsError::Incomplete)
        ));
        assert_eq!(
            resolve_paths(Some(cert.clone()), Some(key.clone())).ok(),
            Some(Some((cert, key)))
        );
    }

    #[test]
    fn a_default_key_others_could_write_or_plant_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("line-tls-owner-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
        std::fs::write(&cert, "cert").expect("write");
        std::fs::write(&key, "key").expect("write");
        let me = rustix::process::geteuid().as_raw();
        let resolve = |euid| resolve_paths_with(None, None, (&cert, &key), euid);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(resolve(me).ok(), Some(Some((cert.clone(), key.clone()))));
        // Explicit paths are the operator's choice and are not checked.
        assert!(
            resolve_paths_with(Some(cert.clone()), Some(key.clone()), (&cert, &key), me).is_ok()
        );

        // Writable by the group or by everyone.
        for mode in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let error = resolve(me).expect_err("refused").to_string();
            assert!(error.contains("other users can write it"), "{error}");
            assert!(error.contains("TLS_KEY"), "{error}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // Owned by somebody else: seen from a server running as another, non-root user.
        if me != 0 {
            let error = resolve(me + 1).expect_err("refused").to_string();
            assert!(error.contains(&format!("owned by uid {me}")), "{error}");
        } else {
            // As root, a file of our own is root's; a server running as uid 4242 trusts it, and
            // one handed to uid 4243 is refused by a server running as 4242.
            assert!(resolve(4242).is_ok());
            std::os::unix::fs::chown(&key, Some(4243), None).expect("chown");
            let error = resolve(4242).expect_err("refused").to_string();
            assert!(error.contains("owned by uid 4243"), "{error}");
            assert!(resolve(4243).is_ok());
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unreadable_or_empty_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("line-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all").expect("write");
        let missing = TlsSettings::new(dir.join("nope.pem"), dir.join("nope.key"));
        assert!(matches!(load(&missing), Err(TlsError::Read { .. })));
        let no_cert = TlsSettings::new(empty.clone(), empty);
        assert!(matches!(load(&no_cert), Err(TlsError::Pem { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }
}
