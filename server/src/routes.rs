//! Every HTTP route, the checks before a WebSocket upgrade, and the headers on every response.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, STRICT_TRANSPORT_SECURITY};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use line_protocol::join::{JoinToken, ParticipantId, status};
use line_protocol::line_id::LineId;

use crate::auth::key_matches;
use crate::net::{ClientGroup, client_ip};
use crate::outbox::Outbox;
use crate::peer::Session;
use crate::per_client::ClientSlot;
use crate::redact::redact_uri;
use crate::registry::{JoinError, Joiner};
use crate::socket;
use crate::{AppState, webtransport_identity};

/// Bytes tungstenite reads from a socket at most at once (see `start_socket`).
const READ_BUFFER_SIZE: usize = 8 * 1024;

/// The Content-Security-Policy on every response, as it is without WebTransport; with it,
/// `connect-src` also names the endpoint ([`content_security_policy`]).
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
    let static_client = Router::new().route("/", get(asset)).fallback(asset);
    Router::new()
        .route("/ws", get(ws))
        .route("/webtransport", get(webtransport))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(static_client)
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            move |State(state): State<Arc<AppState>>, request: Request, next: Next| {
                security_headers(state, request, next, tls)
            },
        ))
        .with_state(state)
}

/// The policy for a page loaded from `host` (the request's `Host`) when pages open WebTransport on
/// UDP `webtransport_ports` of that host: `'self'` covers only the page's own scheme, host and
/// port, and the endpoint may be on another port (behind a proxy, say, or on another instance of
/// a scale-out), so `connect-src` names `https://host:port` for each. A `Host` that is not a plain
/// host name or address adds nothing.
pub fn content_security_policy(host: Option<&str>, webtransport_ports: &[u16]) -> String {
    let host = host
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|authority| authority.host().to_owned())
        .filter(|host| {
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
            let ipv6 = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
            (!host.is_empty() && host.chars().all(plain))
                || host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .is_some_and(|h| !h.is_empty() && h.chars().all(ipv6))
        });
    match host {
        Some(host) if !webtransport_ports.is_empty() => {
            let mut sources = String::from("connect-src 'self'");
            let mut named = Vec::new();
            for port in webtransport_ports {
                if !named.contains(port) {
                    named.push(*port);
                    sources.push_str(&format!(" https://{host}:{port}"));
                }
            }
            CONTENT_SECURITY_POLICY.replacen("connect-src 'self'", &sources, 1)
        }
        _ => CONTENT_SECURITY_POLICY.to_owned(),
    }
}

async fn security_headers(
    state: Arc<AppState>,
    request: Request,
    next: Next,
    tls: bool,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    let ports: Vec<u16> = state
        .webtransport_port
        .get()
        .map(|port| {
            std::iter::once(*port)
                .chain(state.config.webtransport_scaleout_ports.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    let csp = content_security_policy(host.as_deref(), &ports);
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(HeaderName::from_static("content-security-policy"), csp);
    }
    let fixed: [(&str, &'static str); 6] = [
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
    state.assets.respond(uri.path(), &headers).await
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.metrics.render();
    // Read from the budget itself: the hot path keeps one counter, not two.
    text.push_str(&format!(
        "# HELP line_queued_bytes Bytes of audio waiting in every receiver's queue together.\n\
         # TYPE line_queued_bytes gauge\nline_queued_bytes {}\n",
        state.queue_budget.used()
    ));
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Why `/ws` (or a WebTransport session) is refused: a status and a short plain-text reason.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

impl Refusal {
    /// `status` is one of [`line_protocol::join::status`]: the list the client reads too.
    fn new(status: u16, reason: &'static str) -> Self {
        let status = StatusCode::from_u16(status).expect("the protocol's statuses are valid");
        Self { status, reason }
    }

    /// The refusal for a line the socket cannot join.
    pub(crate) fn join(error: JoinError) -> Self {
        match error {
            JoinError::LineFull => {
                Self::new(status::LINE_FULL, "this line already has two people on it")
            }
            JoinError::WrongToken => Self::new(
                status::WRONG_TOKEN,
                "this line is in use by people with another link (wrong join token)",
            ),
            JoinError::TooManyLines => {
                Self::new(status::SERVER_FULL, "server full, try again later")
            }
        }
    }

    fn into_response(self, state: &AppState) -> Response {
        state.metrics.upgrade_refused(self.status.as_u16());
        (self.status, format!("{}\n", self.reason)).into_response()
    }
}

/// The reason for a `line` parameter that is not a line id.
const BAD_LINE: &str = "line must be 22 characters of base64url";

/// What the checks before an upgrade let through.
pub(crate) struct Admitted {
    line: LineId,
    joiner: Joiner,
    client_slot: Option<ClientSlot>,
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
    let refusal = match check(&state, ip, &headers, &params) {
        Ok(admitted) => match upgrade {
            Ok(upgrade) => match start_socket(&state, ip, admitted, upgrade) {
                Ok(response) => {
                    tracing::info!(peer = %ip, outcome = "upgraded", "connection received");
                    log_line(ip, &params, "upgraded");
                    return response;
                }
                Err(refusal) => refusal,
            },
            Err(rejection) => {
                log_refusal(&state, ip, &params, "not a websocket upgrade");
                return rejection.into_response();
            }
        },
        Err(refusal) => refusal,
    };
    log_refusal(&state, ip, &params, refusal.status.as_str());
    refusal.into_response(&state)
}

/// `GET /webtransport?apikey=<KEY>&line=<LINE_ID>`: where to open a WebTransport session and,
/// when the server made its own certificate for it, the SHA-256 the page passes as
/// `serverCertificateHashes`. The key is asked for so that only the people with the link learn
/// even that much. The line is optional and only checked: it is there so that a proxy that sends
/// each line to one instance (by `$arg_line`) sends this request to the instance that will
/// relay the session, which answers with its own port and hash.
async fn webtransport(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let ip = client_ip(peer, &headers, &state.config.trusted_proxies);
    let params = query.map(|Query(q)| q).unwrap_or_default();
    if let Err(refusal) = check_key(&state, ip, &params) {
        return (refusal.status, format!("{}\n", refusal.reason)).into_response();
    }
    if params
        .get("line")
        .is_some_and(|l| l.parse::<LineId>().is_err())
    {
        return (StatusCode::BAD_REQUEST, format!("{BAD_LINE}\n")).into_response();
    }
    let Some(port) = state.webtransport_port.get() else {
        return (
            StatusCode::NOT_FOUND,
            "webtransport is off on this server\n",
        )
            .into_response();
    };
    let hashes = state
        .pinned_hash
        .get()
        .map(|hash| format!("\"{}\"", webtransport_identity::hex(hash)))
        .unwrap_or_default();
    (
        [
            (CONTENT_TYPE, "application/json"),
            // The hash changes when the certificate is renewed: always ask again.
            (CACHE_CONTROL, "no-store"),
        ],
        format!(
            "{{\"port\":{port},\"path\":\"{}\",\"certificate_hashes\":[{hashes}]}}\n",
            crate::webtransport::PATH
        ),
    )
        .into_response()
}

/// Anyone can make the server refuse requests: these lines are throttled (the counts are in
/// `/metrics`, and a housekeeping timer logs how many lines were left out).
pub(crate) fn log_refusal(
    state: &AppState,
    ip: IpAddr,
    params: &HashMap<String, String>,
    outcome: &str,
) {
    let outcome = format!("refused {outcome}");
    if state.refusal_log.admit(Instant::now()) {
        tracing::info!(peer = %ip, outcome, "connection refused");
    }
    log_line(ip, params, &outcome);
}

/// A line id names a call, and with it someone could hold the line while it is empty: only at
/// debug. Anything else a client put there is never logged, in case it pasted a key.
pub(crate) fn log_line(ip: IpAddr, params: &HashMap<String, String>, outcome: &str) {
    if let Some(line) = params.get("line").and_then(|l| l.parse::<LineId>().ok()) {
        tracing::debug!(peer = %ip, %line, outcome, "connection received on line");
    }
}

/// The checks before an upgrade (or a WebTransport session), in order; the first that fails
/// decides the status.
pub(crate) fn check(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Admitted, Refusal> {
    check_key(state, ip, params)?;
    check_after_key(state, ip, headers, params)
}

/// The API key, compared in constant time. A right key always passes, so nobody who shares an
/// address with a scanner (a carrier or office NAT) is locked out; the limiter only slows wrong
/// keys.
fn check_key(
    state: &AppState,
    ip: IpAddr,
    params: &HashMap<String, String>,
) -> Result<(), Refusal> {
    if !key_matches(
        &state.config.apikey,
        params.get("apikey").map(String::as_str),
    ) {
        let now = Instant::now();
        let blocked = state.limiter.is_blocked(ip, now);
        state.limiter.record_failure(ip, now);
        state.metrics.auth_failed();
        return Err(if blocked {
            Refusal::new(
                status::TOO_MANY,
                "too many failed api key attempts, wait a minute",
            )
        } else {
            Refusal::new(status::API_KEY_REFUSED, "missing or wrong api key")
        });
    }
    Ok(())
}

/// The origin, the line and the joiner, after the key.
fn check_after_key(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Admitted, Refusal> {
    if !state.origins.allows(headers) {
        return Err(Refusal::new(status::ORIGIN_REFUSED, "origin not allowed"));
    }
    let Some(line) = params.get("line").and_then(|l| l.parse::<LineId>().ok()) else {
        return Err(Refusal::new(status::BAD_REQUEST, BAD_LINE));
    };
    let joiner = joiner(params).map_err(|reason| Refusal::new(status::BAD_REQUEST, reason))?;
    // Checked again, atomically, when joining; this early look is for a plain GET, whose
    // missing upgrade would otherwise hide that the line is full or bound to another token.
    state.registry.check(line, &joiner).map_err(Refusal::join)?;
    // A trusted proxy's own address is many clients whose addresses it could not pass on (a
    // WebTransport session through nginx's UDP forwarding): it is capped where it counts them,
    // as its TCP connections are.
    let client_slot = if state
        .config
        .trusted_proxies
        .iter()
        .any(|net| net.contains(ip))
    {
        None
    } else {
        Some(
            state
                .sockets_per_client
                .try_acquire(ClientGroup::of(ip))
                .ok_or_else(|| {
                    Refusal::new(status::TOO_MANY, "too many connections from your address")
                })?,
        )
    };
    Ok(Admitted {
        line,
        joiner,
        client_slot,
    })
}

/// Takes a slot on the admitted line, with a fresh outbox: the peer is on the line from here,
/// whichever transport carries it.
pub(crate) fn join_session(
    state: &AppState,
    ip: IpAddr,
    admitted: Admitted,
) -> Result<Session, JoinError> {
    let limits = state.config.limits;
    let outbox = Arc::new(Outbox::new(limits.queue, Arc::clone(&state.queue_budget)));
    let membership = state
        .registry
        .join(admitted.line, &admitted.joiner, Arc::clone(&outbox))?;
    Ok(Session {
        metrics: Arc::clone(&state.metrics),
        limits,
        shutdown: state.shutdown.clone(),
        peer: ip,
        membership,
        outbox,
        client_slot: admitted.client_slot,
    })
}

/// Takes the line slot and upgrades.
fn start_socket(
    state: &Arc<AppState>,
    ip: IpAddr,
    admitted: Admitted,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Refusal> {
    let limits = state.config.limits;
    let session = join_session(state, ip, admitted).map_err(Refusal::join)?;
    let tracker = state.sockets.clone();
    Ok(upgrade
        .max_message_size(limits.max_frame_len)
        .max_frame_size(limits.max_frame_len)
        // tungstenite zero-fills its whole read buffer before every read, so its 128 KiB default
        // is resident per socket (256 KiB per call); 8 KiB holds two 10 ms 200 kHz frames and a
        // larger frame still grows the buffer as it needs.
        .read_buffer_size(READ_BUFFER_SIZE)
        // Its 128 KiB write buffer would hold a stalled receiver's backlog outside the outbox,
        // per socket, beyond the queue budget.
        .write_buffer_size(limits.write_buffer)
        .on_upgrade(move |socket| tracker.track_future(socket::run(socket, session))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_webtransport_endpoint_on_the_pages_host() {
        let csp = |host, port: Option<u16>| content_security_policy(host, port.as_slice());
        assert_eq!(csp(Some("line.example"), None), CONTENT_SECURITY_POLICY);
        assert_eq!(csp(None, Some(7777)), CONTENT_SECURITY_POLICY);
        for (host, source) in [
            ("line.example", "https://line.example:7777"),
            ("line.example:8443", "https://line.example:7777"),
            ("127.0.0.1:3000", "https://127.0.0.1:7777"),
            ("[::1]:3000", "https://[::1]:7777"),
        ] {
            let policy = csp(Some(host), Some(7777));
            assert!(
                policy.contains(&format!("connect-src 'self' {source};")),
                "{host}: {policy}"
            );
            assert_eq!(
                policy.replacen(&format!(" {source}"), "", 1),
                CONTENT_SECURITY_POLICY
            );
        }
        // Nothing from a Host header that is not a plain host reaches the header.
        for host in ["evil.example; script-src *", "a b", "", "[::1;]"] {
            assert_eq!(
                csp(Some(host), Some(7777)),
                CONTENT_SECURITY_POLICY,
                "{host}"
            );
        }
    }

    #[test]
    fn the_policy_names_every_instances_port_once() {
        let policy = content_security_policy(Some("line.example"), &[8443, 8444, 8443, 8445]);
        assert!(
            policy.contains(
                "connect-src 'self' https://line.example:8443 https://line.example:8444 \
                 https://line.example:8445;"
            ),
            "{policy}"
        );
    }
}
