//! The client page: MIME types, ETags, compression, security headers.

use crate::common::*;

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    ("x-content-type-options", "nosniff"),
    ("permissions-policy", "microphone=(self)"),
];

fn www_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("line-www-{}", rand::random::<u64>()));
    std::fs::create_dir_all(dir.join("pkg")).expect("temp dir");
    std::fs::write(
        dir.join("line.html"),
        "<!doctype html><title>line</title>".repeat(20),
    )
    .expect("write");
    std::fs::write(dir.join("pkg/app_bg.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(dir.join("pkg/app.js"), "export const x = 1;\n".repeat(50)).expect("write");
    dir
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = start(config());
    for path in [
        "/",
        "/line.html",
        "/healthz",
        "/metrics",
        "/nope",
        "/ws?line=x",
    ] {
        let response = server.get(path, &[]).await;
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(response.header(name), Some(value), "{name} on {path}");
        }
        // The policy, with the WebTransport endpoint on the host asked for beside the page.
        let csp = response
            .header("content-security-policy")
            .expect("a policy");
        let (before, after) = csp
            .split_once("connect-src 'self' https://127.0.0.1:")
            .unwrap_or_else(|| panic!("no WebTransport source on {path}: {csp}"));
        let after = after.trim_start_matches(|c: char| c.is_ascii_digit());
        assert_eq!(
            format!("{before}connect-src 'self'{after}"),
            line_server::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(
            response.header("strict-transport-security"),
            None,
            "no HSTS without TLS"
        );
    }
    let csp = line_server::CONTENT_SECURITY_POLICY;
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval'"));
}

#[tokio::test]
async fn embedded_page_is_served_at_root() {
    let server = start(config());
    let root = server.get("/", &[]).await;
    assert_eq!(root.status, 200);
    assert_eq!(
        root.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        root.body,
        std::fs::read("../www/line.html").expect("www/line.html")
    );
    assert_eq!(server.get("/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn folder_assets_have_mime_etag_and_compression() {
    let dir = www_dir();
    let mut cfg = config();
    cfg.assets = line_server::AssetSource::Dir(dir.clone());
    let server = start(cfg);

    let wasm = server.get("/pkg/app_bg.wasm", &[]).await;
    assert_eq!(wasm.status, 200);
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(wasm.body, b"\0asm\x01\0\0\0");
    assert_eq!(wasm.header("cache-control"), Some("no-cache"));
    let etag = wasm.header("etag").expect("an etag").to_owned();

    let again = server
        .get("/pkg/app_bg.wasm", &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    let js = server
        .get("/pkg/app.js", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-encoding"), Some("gzip"));
    assert!(
        js.header("content-type")
            .expect("type")
            .contains("javascript")
    );
    assert!(js.body.len() < 1000, "compressed {} bytes", js.body.len());

    let page = server.get("/", &[]).await;
    assert!(page.body_text().starts_with("<!doctype html>"));

    for path in [
        "/../Cargo.toml",
        "/pkg/../../etc/passwd",
        "/%2e%2e/Cargo.toml",
        "/missing.js",
    ] {
        assert_eq!(server.get(path, &[]).await.status, 404, "{path}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
