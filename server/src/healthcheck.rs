//! `line-server healthcheck`: asks a running server on this machine for `GET /healthz`.
//!
//! Container images carry only the binary (no curl), so the image's HEALTHCHECK runs the binary
//! itself. It talks to its own server, so over TLS it does not check the certificate's name or
//! chain (the certificate names the public host, not 127.0.0.1); it still checks the handshake
//! signature, so whatever answers holds the key of the certificate it presents.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The most of a response the check reads; `/healthz` answers a few hundred bytes.
const MAX_RESPONSE: u64 = 64 * 1024;

/// Why the server is not healthy, or could not be asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum HealthError {
    /// No connection, a failed TLS handshake, or a read or write that failed or timed out.
    Io(std::io::Error),
    /// The answer is not an HTTP response.
    Malformed,
    /// The server answered with a status other than 200.
    Status(u16),
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot ask the server: {e}"),
            Self::Malformed => f.write_str("the answer is not an http response"),
            Self::Status(status) => write!(f, "/healthz answered {status}"),
        }
    }
}

impl std::error::Error for HealthError {}

impl From<std::io::Error> for HealthError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// `GET /healthz` on `addr`, over TLS when `tls`; `Ok` only for a 200 within `timeout` per step.
pub fn check(addr: SocketAddr, tls: bool, timeout: Duration) -> Result<(), HealthError> {
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: line-server healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    let mut response = Vec::new();
    if tls {
        let name = ServerName::IpAddress(addr.ip().into());
        let connection = rustls::ClientConnection::new(client_config(), name)
            .map_err(|e| HealthError::Io(std::io::Error::other(e)))?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        stream.write_all(request.as_bytes())?;
        read_response(&mut stream, &mut response)?;
    } else {
        let mut stream = tcp;
        stream.write_all(request.as_bytes())?;
        read_response(&mut stream, &mut response)?;
    }
    match status_of(&response) {
        Some(200) => Ok(()),
        Some(status) => Err(HealthError::Status(status)),
        None => Err(HealthError::Malformed),
    }
}

fn read_response(stream: &mut impl std::io::Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    match stream.take(MAX_RESPONSE).read_to_end(out) {
        Ok(_) => Ok(()),
        // The server may close without a TLS close_notify; the status line is all we need.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The status code of an HTTP/1.x response.
fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts any certificate but still verifies the handshake signature made with its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\nok\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        assert!(matches!(
            check(addr, false, Duration::from_secs(2)),
            Err(HealthError::Io(_))
        ));
    }
}
