//! Every HTTP route, the checks before a WebSocket upgrade, and the headers on every response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, STRICT_TRANSPORT_SECURITY};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use line_protocol::join::{JoinToken, ParticipantId};
use line_protocol::line_id::LineId;
use tower_http::compression::CompressionLayer;

use crate::AppState;
use crate::auth::key_matches;
use crate::net::client_ip;
use crate::outbox::Outbox;
use crate::redact::redact_uri;
use crate::registry::{JoinError, Joiner};
use crate::socket::{self, Session};

/// Bytes tungstenite reads from a socket at most at once (see `check_and_upgrade`).
const READ_BUFFER_SIZE: usize = 8 * 1024;

/// The Content-Security-Policy on every response.
///
/// `'wasm-unsafe-eval'` lets the page compile its WebAssembly and nothing else; `'self'` in
/// `connect-src` also covers `ws:`/`wss:` to the same host (CSP level 3); AudioWorklet modules
/// fall under `script-src`, workers under `worker-src`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// HSTS for two years, sent only over TLS.
const HSTS: &str = "max-age=63072000";

/// The router over the shared state.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let tls = state.tls;
    let static_client = Router::new()
        .route("/", get(asset))
        .fallback(asset)
        .layer(CompressionLayer::new());
    Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(static_client)
        .layer(middleware::from_fn(log_request))
        .layer(middleware::map_response(move |response| {
            security_headers(response, tls)
        }))
        .with_state(state)
}

async fn security_headers(mut response: Response, tls: bool) -> Response {
    let headers = response.headers_mut();
    let fixed: [(&str, &'static str); 7] = [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-embedder-policy", "require-corp"),
        ("cross-origin-resource-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
        ("permissions-policy", "microphone=(self)"),
    ];
    for (name, value) in fixed {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if tls {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

/// One debug line per request, with the API key redacted from the URI.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = redact_uri(&request.uri().to_string()).into_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        uri,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

async fn asset(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET\n").into_response();
    }
    crate::assets::respond(&state.config.assets, uri.path(), &headers)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// A refusal: its status and a short plain-text reason.
fn refuse(state: &AppState, status: StatusCode, reason: &'static str) -> Response {
    state.metrics.upgrade_refused(status.as_u16());
    (status, format!("{reason}\n")).into_response()
}

/// The refusal for a line the socket cannot join.
fn join_refused(state: &AppState, error: JoinError) -> (Response, &'static str) {
    match error {
        JoinError::LineFull => (
            refuse(
                state,
                StatusCode::CONFLICT,
                "this line already has two people on it",
            ),
            "refused 409",
        ),
        JoinError::WrongToken => (
            refuse(
                state,
                StatusCode::from_u16(line_protocol::join::WRONG_TOKEN_STATUS)
                    .expect("a valid status"),
                "this line is in use by people with another link (wrong join token)",
            ),
            "refused 423",
        ),
        JoinError::TooManyLines => (
            refuse(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "server full, try again later",
            ),
            "refused 503",
        ),
    }
}

/// The `join` and `participant` parameters, or the 400 that says which is wrong.
fn joiner(params: &HashMap<String, String>) -> Result<Joiner, &'static str> {
    let token = params
        .get("join")
        .ok_or("join (the line's join token) is missing")?
        .parse::<JoinToken>()
        .map_err(|_| "join must be 22 characters of base64url")?;
    let participant = match params.get("participant") {
        None => None,
        Some(p) => Some(
            p.parse::<ParticipantId>()
                .map_err(|_| "participant must be 22 characters of base64url")?,
        ),
    };
    Ok(Joiner { token, participant })
}

/// `GET /ws?apikey=<KEY>&line=<LINE_ID>&join=<TOKEN>&participant=<ID>`: every check happens
/// before the upgrade.
async fn ws(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ip = client_ip(peer, &headers, &state.config.trusted_proxies);
    let params = query.map(|Query(q)| q).unwrap_or_default();
    let (response, outcome) = check_and_upgrade(&state, ip, &headers, &params, upgrade);
    tracing::info!(peer = %ip, outcome, "connection received");
    // A line id names a call, and with it someone could hold the line while it is empty: only at
    // debug. Anything else a client put there is never logged, in case it pasted a key.
    if let Some(line) = params.get("line").and_then(|l| l.parse::<LineId>().ok()) {
        tracing::debug!(peer = %ip, %line, outcome, "connection received on line");
    }
    response
}

fn check_and_upgrade(
    state: &Arc<AppState>,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> (Response, &'static str) {
    let now = Instant::now();
    if state.limiter.is_blocked(ip, now) {
        return (
            refuse(
                state,
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed api key attempts, wait a minute",
            ),
            "refused 429",
        );
    }
    if !key_matches(
        &state.config.apikey,
        params.get("apikey").map(String::as_str),
    ) {
        state.limiter.record_failure(ip, now);
        state.metrics.auth_failed();
        return (
            refuse(state, StatusCode::UNAUTHORIZED, "missing or wrong api key"),
            "refused 401",
        );
    }
    if !state.origins.allows(headers) {
        return (
            refuse(state, StatusCode::FORBIDDEN, "origin not allowed"),
            "refused 403",
        );
    }
    let Some(line) = params.get("line").and_then(|l| l.parse::<LineId>().ok()) else {
        return (
            refuse(
                state,
                StatusCode::BAD_REQUEST,
                "line must be 22 characters of base64url",
            ),
            "refused 400",
        );
    };
    let joiner = match joiner(params) {
        Ok(joiner) => joiner,
        Err(reason) => {
            return (
                refuse(state, StatusCode::BAD_REQUEST, reason),
                "refused 400",
            );
        }
    };
    // Checked again, atomically, when joining below; this early look is for a plain GET, whose
    // missing upgrade would otherwise hide that the line is full or bound to another token.
    if let Err(error) = state.registry.check(line, &joiner) {
        return join_refused(state, error);
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return (
                rejection.into_response(),
                "refused: not a websocket upgrade",
            );
        }
    };
    let limits = state.config.limits;
    let outbox = Arc::new(Outbox::new(limits.queue));
    let membership = match state.registry.join(line, &joiner, Arc::clone(&outbox)) {
        Ok(membership) => membership,
        Err(error) => return join_refused(state, error),
    };
    let session = Session {
        metrics: Arc::clone(&state.metrics),
        limits,
        shutdown: state.shutdown.clone(),
        peer: ip,
        membership,
        outbox,
    };
    let tracker = state.sockets.clone();
    let response = upgrade
        .max_message_size(limits.max_frame_len)
        .max_frame_size(limits.max_frame_len)
        // tungstenite zero-fills its whole read buffer before every read, so its 128 KiB default
        // is resident per socket (256 KiB per call); 8 KiB holds two 10 ms 200 kHz frames and a
        // larger frame still grows the buffer as it needs.
        .read_buffer_size(READ_BUFFER_SIZE)
        .on_upgrade(move |socket| tracker.track_future(socket::run(socket, session)));
    (response, "upgraded")
}
