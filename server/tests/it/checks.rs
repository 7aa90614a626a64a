//! What `/ws` checks before upgrading: 401, 400, 403, 429.

use line_protocol::control::RelayMessage;

use crate::common::*;

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let server = start(config());
    let line = random_line();
    let url = format!("ws://{}/ws?{}", server.addr, join_params(line));
    assert_eq!(refused_status(&url, None).await.0, 401);
    let wrong = line_server::apikey::ApiKey::generate();
    let url = format!(
        "ws://{}/ws?apikey={}&{}",
        server.addr,
        wrong.expose(),
        join_params(line)
    );
    let (status, body) = refused_status(&url, None).await;
    assert_eq!(status, 401);
    assert_eq!(body.trim(), "missing or wrong api key");
    // A prefix of the right key is wrong too.
    let url = format!(
        "ws://{}/ws?apikey={}&{}",
        server.addr,
        &server.key.expose()[..40],
        join_params(line)
    );
    assert_eq!(refused_status(&url, None).await.0, 401);
    let metrics = server.metrics_text().await;
    assert!(metrics.contains("line_auth_failures_total 3"), "{metrics}");
    assert!(
        metrics.contains("line_upgrades_refused_total{status=\"401\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_line_id_is_400() {
    let server = start(config());
    for line in [
        "",
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!",
        "AAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let url = format!(
            "ws://{}/ws?apikey={}&line={line}&join={}",
            server.addr,
            server.key.expose(),
            token_of(random_line())
        );
        assert_eq!(refused_status(&url, None).await.0, 400, "line {line:?}");
    }
    let url = format!("ws://{}/ws?apikey={}", server.addr, server.key.expose());
    assert_eq!(refused_status(&url, None).await.0, 400);
}

#[tokio::test]
async fn foreign_origin_is_403_and_own_origins_pass() {
    let mut cfg = config();
    cfg.site_url = Some("https://line.example.com".into());
    cfg.allowed_origins = vec!["https://other.example.org".into()];
    let server = start(cfg);
    let line = random_line();
    let (status, body) = refused_status(&server.url(line), Some("https://evil.example")).await;
    assert_eq!(status, 403);
    assert_eq!(body.trim(), "origin not allowed");
    for origin in [
        "https://line.example.com".to_owned(),
        "https://other.example.org".to_owned(),
        format!("http://{}", server.addr),
    ] {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                server.url(random_line()),
            )
            .expect("url");
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("origin {origin} refused: {e}"));
        assert_eq!(next_control(&mut ws).await, RelayMessage::Waiting);
    }
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let mut cfg = config();
    cfg.limits.auth_failures = 2;
    cfg.trusted_proxies = vec!["127.0.0.1".parse().expect("net")];
    let server = start(cfg);
    let line = random_line();
    let wrong = format!("ws://{}/ws?apikey=nope&{}", server.addr, join_params(line));
    let as_client = |ip: &'static str| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                wrong.as_str(),
            )
            .expect("url");
        request
            .headers_mut()
            .insert("x-forwarded-for", ip.parse().expect("header"));
        request
    };
    for _ in 0..2 {
        let r = tokio_tungstenite::connect_async(as_client("198.51.100.1")).await;
        assert!(
            matches!(r, Err(tokio_tungstenite::tungstenite::Error::Http(ref resp)) if resp.status() == 401)
        );
    }
    let r = tokio_tungstenite::connect_async(as_client("198.51.100.1")).await;
    assert!(
        matches!(r, Err(tokio_tungstenite::tungstenite::Error::Http(ref resp)) if resp.status() == 429)
    );
    // Another client behind the same proxy is not blocked.
    let r = tokio_tungstenite::connect_async(as_client("198.51.100.2")).await;
    assert!(
        matches!(r, Err(tokio_tungstenite::tungstenite::Error::Http(ref resp)) if resp.status() == 401)
    );
}

#[tokio::test]
async fn lines_past_max_lines_get_503() {
    let mut cfg = config();
    cfg.limits.max_lines = 1;
    let server = start(cfg);
    let _first = server.join(random_line(), RelayMessage::Waiting).await;
    let (status, body) = refused_status(&server.url(random_line()), None).await;
    assert_eq!(status, 503);
    assert!(body.contains("server full"), "{body}");
}
