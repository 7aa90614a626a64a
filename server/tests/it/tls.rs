//! HTTPS/WSS with a certificate made here, and swapping it while a call goes on.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use line_protocol::control::RelayMessage;
use line_protocol::line_id::LineId;
use line_server::tls::TlsSettings;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

use crate::common::*;

struct Cert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    Cert {
        der: made.cert.der().clone(),
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
    }
}

fn write(dir: &Path, cert: &Cert) {
    // Write to a side file and rename, as certbot's symlink swap does: the watcher never sees half.
    for (name, text) in [
        ("privkey.pem", &cert.key_pem),
        ("fullchain.pem", &cert.cert_pem),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write pem");
        std::fs::rename(&tmp, dir.join(name)).expect("rename pem");
    }
}

fn connector(trusted: &[&Cert]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Opens a TLS connection and returns it with the certificate the server presented.
async fn tls_connect(
    server: &TestServer,
    connector: &TlsConnector,
) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
    let tcp = TcpStream::connect(server.addr).await.expect("tcp");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("tls handshake");
    let presented = tls.get_ref().1.peer_certificates().expect("certificate")[0].clone();
    (tls, presented)
}

async fn wss_join(
    server: &TestServer,
    connector: &TlsConnector,
    line: LineId,
    expect: RelayMessage,
) -> (
    WebSocketStream<TlsStream<TcpStream>>,
    CertificateDer<'static>,
) {
    let (tls, presented) = tls_connect(server, connector).await;
    let url = format!(
        "wss://localhost:{}/ws?apikey={}&{}",
        server.addr.port(),
        server.key.expose(),
        join_params(line)
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("wss upgrade");
    assert_eq!(next_control(&mut ws).await, expect);
    (ws, presented)
}

#[tokio::test]
async fn wss_works_and_renewed_certificate_is_picked_up_without_dropping_calls() {
    let dir = std::env::temp_dir().join(format!("line-tls-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (first, second) = (make_cert(), make_cert());
    write(&dir, &first);
    let mut cfg = config();
    cfg.tls = Some(TlsSettings {
        reload_interval: Duration::from_millis(100),
        ..TlsSettings::new(dir.join("fullchain.pem"), dir.join("privkey.pem"))
    });
    let server = start(cfg);
    let both = connector(&[&first, &second]);

    // HTTPS carries HSTS.
    let (tls, _) = tls_connect(&server, &both).await;
    let page = http_get(tls, "localhost", "/healthz", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.header("strict-transport-security").is_some());

    // A call over WSS.
    let line = random_line();
    let (mut a, cert_a) = wss_join(&server, &both, line, RelayMessage::Waiting).await;
    let (mut b, _) = wss_join(&server, &both, line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    assert_eq!(cert_a, first.der);
    let f = frame(1, 1, 4000);
    send(&mut a, f.clone()).await;
    assert_eq!(next_binary(&mut b).await, f);

    // Renew: new connections get the new certificate...
    write(&dir, &second);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, presented) = tls_connect(&server, &both).await;
        if presented == second.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let only_new = connector(&[&second]);
    let (mut c, _) = wss_join(&server, &only_new, random_line(), RelayMessage::Waiting).await;
    drop(c.close(None).await);

    // ...while the call that started on the old one goes on, both ways.
    for i in 2..10 {
        let f = frame(1, i, 4000);
        send(&mut a, f.clone()).await;
        assert_eq!(next_binary(&mut b).await, f);
        let f = frame(2, i, 300);
        send(&mut b, f.clone()).await;
        assert_eq!(next_binary(&mut a).await, f);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tls12_is_refused_unless_enabled() {
    let dir = std::env::temp_dir().join(format!("line-tls12-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = make_cert();
    write(&dir, &cert);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("root");
    let tls12_only = TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    ));
    for allow in [false, true] {
        let mut cfg = config();
        cfg.tls = Some(TlsSettings {
            allow_tls12: allow,
            ..TlsSettings::new(dir.join("fullchain.pem"), dir.join("privkey.pem"))
        });
        let server = start(cfg);
        let tcp = TcpStream::connect(server.addr).await.expect("tcp");
        let result = tls12_only
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await;
        assert_eq!(result.is_ok(), allow, "tls 1.2 allowed: {allow}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
