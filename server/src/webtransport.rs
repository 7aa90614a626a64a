//! WebTransport over HTTP/3: the same lines as `/ws`, with frames in QUIC datagrams, so a lost
//! packet delays only its own frame instead of every frame behind it.
//!
//! A session request (an extended CONNECT to [`PATH`] with the `/ws` query) passes the same
//! checks as a WebSocket upgrade before it is accepted; the peer then takes a slot in the same
//! registry, so one person on WebTransport and one on a WebSocket share a line. Frames arrive as
//! datagrams and go through the same read loop ([`crate::peer`]); what the relay sends goes out
//! as datagrams, and control messages (and frames too large for a datagram) as records on one
//! unidirectional stream. docs/PROTOCOL.md section 6.3 has the binding as clients see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Uri};
use line_protocol::control::RelayMessage;
use line_protocol::join::status;
use line_protocol::webtransport::{Record, RecordKind};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use wtransport::endpoint::{IncomingSession, SessionRequest};
use wtransport::error::ConnectionError;
use wtransport::proto::datagram::Datagram;
use wtransport::proto::ids::QStreamId;
use wtransport::quinn::congestion::BbrConfig;
use wtransport::{Connection, Endpoint, SendStream, ServerConfig, VarInt};

use crate::AppState;
use crate::config::Limits;
use crate::outbox::{Next, Outgoing};
use crate::peer::{
    End, Ending, Read, Reader, Session, Transport, WriterParts, close_reason, run_session,
};
use crate::routes::{self, Refusal};
use crate::webtransport_identity::IdentitySource;

pub(crate) use line_protocol::webtransport::PATH;

/// How often the certificate is looked at for renewal.
const RENEW_CHECK: Duration = Duration::from_secs(60);

/// The endpoint's QUIC settings: QUIC's own keepalive and idle timeout stand in for the
/// WebSocket's pings, and its datagram send buffer is small so a slow receiver's backlog stays in
/// the outbox (bounded, drop-oldest, within the shared budget).
fn transport_config(limits: &Limits) -> wtransport::quinn::TransportConfig {
    let mut transport = wtransport::quinn::TransportConfig::default();
    transport
        .max_idle_timeout(limits.idle_timeout.try_into().ok())
        .keep_alive_interval(Some(limits.ping_interval))
        .datagram_send_buffer_size(limits.datagram_send_buffer)
        // The reader takes datagrams as they come; this absorbs a burst of a few dozen frames.
        .datagram_receive_buffer_size(Some(64 * 1024))
        // HTTP/3 needs a few streams of the client's (the CONNECT request, its control and
        // QPACK streams); line's clients open no more, and what one reads nobody reads, so a
        // client that opens more gets little room to fill.
        .max_concurrent_bidi_streams(4u8.into())
        .max_concurrent_uni_streams(8u8.into())
        .stream_receive_window(wtransport::quinn::VarInt::from_u32(16 * 1024))
        .receive_window(wtransport::quinn::VarInt::from_u32(128 * 1024));
    // BBR paces to the path's measured bandwidth and round trip; a loss-based controller (quinn's
    // default, Cubic) reads a wifi link's random loss as congestion and holds a 3.3 Mbit/s call
    // below its rate: on the "wifi" profile (1 % loss) 40 % of the frames went, against the 1 %
    // the link lost with BBR (docs/SERVER.md, WebTransport).
    transport.congestion_controller_factory(Arc::new(BbrConfig::default()));
    transport
}

/// Runs the endpoint on `socket`: accepts sessions, renews the certificate, and after `stop`
/// waits for the sessions to close before it closes the endpoint. `ready` is sent once the
/// endpoint listens and `/webtransport` can say where (dropped unsent if it cannot start).
pub(crate) async fn serve(
    state: Arc<AppState>,
    socket: std::net::UdpSocket,
    source: IdentitySource,
    https_port: u16,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<()> {
    let local = socket.local_addr()?;
    let limits = state.config.limits;
    let mut issued = source
        .issue()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let endpoint = Endpoint::server(
        ServerConfig::builder()
            .with_bind_socket(socket)
            .with_custom_transport(issued.identity.clone_identity(), transport_config(&limits))
            .build(),
    )?;
    state.pinned_hash.set(issued.pinned_hash);
    let public = state
        .config
        .webtransport_public_port
        .unwrap_or(local.port());
    let _ = state.webtransport_port.set(public);
    let _ = ready.send(());
    tracing::info!(
        port = local.port(),
        public,
        pinned = issued.pinned_hash.is_some(),
        "webtransport listening"
    );
    let handshaking = Arc::new(AtomicUsize::new(0));
    let mut renew = tokio::time::interval(RENEW_CHECK);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stamps = source.stamps();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = renew.tick() => {
                let changed = source.stamps() != stamps;
                if !(changed || source.due(issued.at, SystemTime::now())) {
                    continue;
                }
                match source.issue().await {
                    Ok(next) => {
                        let config = ServerConfig::builder()
                            .with_bind_address(local)
                            .with_custom_transport(next.identity.clone_identity(), transport_config(&limits))
                            .build();
                        // Sessions already open keep the certificate they were made with.
                        endpoint.reload_config(config, false)?;
                        state.pinned_hash.set(next.pinned_hash);
                        stamps = source.stamps();
                        issued = next;
                        tracing::info!("webtransport certificate renewed");
                    }
                    // A half-written pair of files loads at the next look.
                    Err(e) => tracing::warn!(error = %e, "webtransport certificate not renewed"),
                }
            }
            incoming = endpoint.accept() => {
                if !incoming.remote_address_validated()
                    && handshaking.load(Ordering::Relaxed) >= limits.handshakes_before_retry
                {
                    state.metrics.webtransport_retry();
                    incoming.retry();
                    continue;
                }
                let handshake = Handshake::start(&handshaking);
                let span = tracing::info_span!(
                    "webtransport",
                    peer = %incoming.remote_address().ip().to_canonical()
                );
                let tracker = state.sockets.clone();
                tracker.spawn(
                    handle(Arc::clone(&state), incoming, https_port, handshake).instrument(span),
                );
            }
        }
    }
    // Each session closes itself on shutdown with its code and reason; the endpoint outlives
    // them until their close has gone out.
    state.sockets.wait().await;
    endpoint.close(VarInt::from_u32(0), b"");
    let _ = tokio::time::timeout(limits.close_grace, endpoint.wait_idle()).await;
    Ok(())
}

/// One QUIC connection between its first packet and its session request, counted while it
/// lasts.
struct Handshake(Arc<AtomicUsize>);

impl Handshake {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One incoming QUIC connection, from handshake to the end of its session.
async fn handle(
    state: Arc<AppState>,
    incoming: IncomingSession,
    https_port: u16,
    handshake: Handshake,
) {
    let timeout = state.config.limits.header_timeout;
    let request = tokio::time::timeout(timeout, incoming).await;
    drop(handshake);
    let request = match request {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "webtransport handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("no webtransport session request within the header timeout");
            return;
        }
    };
    let ip = request.remote_address().ip().to_canonical();
    let (path, params) = split_path(request.path());
    if path != PATH {
        request.not_found().await;
        return;
    }
    let headers = origin_headers(&request, https_port);
    let admitted = match routes::check(&state, ip, &headers, &params) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            routes::log_refusal(&state, ip, &params, refusal.status.as_str());
            state.metrics.upgrade_refused(refusal.status.as_u16());
            refuse(request, &refusal).await;
            return;
        }
    };
    let connection = match request.accept().await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::debug!(error = %e, "webtransport session not established");
            return;
        }
    };
    let control = match open_control(&connection).await {
        Some(control) => control,
        None => return,
    };
    // The slot is taken only now that the session is up, so a session that fails to start never
    // tells the other person `peer-joined`; the line may have filled since the check.
    match routes::join_session(&state, ip, admitted) {
        Ok(session) => {
            tracing::info!(peer = %ip, outcome = "session", "connection received");
            routes::log_line(ip, &params, "session");
            run(connection, control, session).await;
        }
        Err(error) => {
            let refusal = Refusal::join(error);
            routes::log_refusal(&state, ip, &params, refusal.status.as_str());
            state.metrics.upgrade_refused(refusal.status.as_u16());
            let mut control = control;
            let _ = close_with(
                &connection,
                &mut control,
                refusal.status.as_u16(),
                refusal.reason,
                state.config.limits.close_grace,
            )
            .await;
        }
    }
}

/// The path and its query parameters, as `/ws` reads them.
fn split_path(path_and_query: &str) -> (String, HashMap<String, String>) {
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return (String::new(), HashMap::new());
    };
    let params = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    (uri.path().to_owned(), params)
}

/// The request's `Origin`, and as `Host` the HTTPS listener's address under the name the client
/// used: the page comes from the HTTPS port, so that is the origin that counts as the server's
/// own.
fn origin_headers(request: &SessionRequest, https_port: u16) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(origin) = request.origin().and_then(|o| HeaderValue::from_str(o).ok()) {
        headers.insert(ORIGIN, origin);
    }
    let authority = request.authority();
    let host = authority
        .parse::<axum::http::uri::Authority>()
        .map(|a| a.host().to_owned())
        .unwrap_or_default();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{https_port}")
    } else {
        format!("{host}:{https_port}")
    };
    if let Ok(host) = HeaderValue::from_str(&host) {
        headers.insert(HOST, host);
    }
    headers
}

/// Refuses a session request before it exists. HTTP/3 can carry any status, but the library
/// sends only 403, 404 and 429, and a browser shows a page none of them anyway: a client asks
/// `/ws` with the same query to learn which (docs/PROTOCOL.md section 6.3).
async fn refuse(request: SessionRequest, refusal: &Refusal) {
    if refusal.status.as_u16() == status::TOO_MANY {
        request.too_many_requests().await;
    } else {
        request.forbidden().await;
    }
}

async fn open_control(connection: &Connection) -> Option<SendStream> {
    match connection.open_uni().await {
        Ok(opening) => match opening.await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the control stream");
                None
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "cannot open the control stream");
            None
        }
    }
}

/// Writes one record to the relay's stream.
async fn write_record(stream: &mut SendStream, kind: RecordKind, payload: &[u8]) -> bool {
    let Ok(header) = Record::new(kind, payload).header() else {
        return false;
    };
    stream.write_all(&header).await.is_ok() && stream.write_all(payload).await.is_ok()
}

/// Tells the client why (an `error` record), lets that record arrive, and closes the session
/// with `code`.
async fn close_with(
    connection: &Connection,
    control: &mut SendStream,
    code: u16,
    reason: &str,
    grace: Duration,
) -> bool {
    let error = RelayMessage::Error {
        code,
        reason: reason.to_owned(),
    };
    let written = write_record(control, RecordKind::Control, error.to_json().as_bytes()).await;
    // A closed connection discards what is in flight: wait (briefly) until the client has it.
    let _ = tokio::time::timeout(grace, control.finish()).await;
    connection.close(
        VarInt::from_u32(code.into()),
        close_reason(reason).as_bytes(),
    );
    written
}

/// An accepted session as a [`Transport`]: frames arrive as datagrams; the writer owns the
/// control stream.
struct WtTransport {
    connection: Connection,
    control: Option<SendStream>,
}

impl Reader for WtTransport {
    async fn read(&mut self) -> Read {
        match self.connection.receive_datagram().await {
            Ok(datagram) => Read::Frame(datagram.payload()),
            Err(e) => Read::End(end_of(&e)),
        }
    }
}

impl Transport for WtTransport {
    fn idle_timeout(&self, _limits: &Limits) -> Option<Duration> {
        // QUIC's idle timeout (the same 30 s) ends a session whose client went silent.
        None
    }

    fn start_writer(&mut self, parts: WriterParts) -> JoinHandle<()> {
        let control = self.control.take().expect("the writer starts once");
        tokio::spawn(write_loop(self.connection.clone(), control, parts))
    }

    async fn close(&mut self, ending: Ending<'_>) {
        let Ending {
            end,
            closing,
            outbox,
            writer,
            limits,
        } = ending;
        match closing {
            Some(closing) if !matches!(end, End::ClientClosed | End::Idle) => {
                outbox.close(closing);
                let deadline = Instant::now() + limits.close_grace * 2;
                if tokio::time::timeout_at(deadline, &mut *writer)
                    .await
                    .is_err()
                {
                    writer.abort();
                    self.connection.close(VarInt::from_u32(0), b"");
                }
            }
            // The client closed, or QUIC gave up on it: there is nobody to tell.
            _ => writer.abort(),
        }
    }
}

/// Why a connection ended, as the read loop tells it.
fn end_of(error: &ConnectionError) -> End {
    match error {
        ConnectionError::ApplicationClosed(_) => End::ClientClosed,
        ConnectionError::TimedOut => End::Idle,
        _ => End::Gone,
    }
}

/// Runs one accepted session to its end.
async fn run(connection: Connection, control: SendStream, session: Session) {
    tracing::debug!(line = %session.membership.line_id(), "session on line");
    let transport = WtTransport {
        connection,
        control: Some(control),
    };
    run_session(transport, session).await;
}

/// The H3 datagram header for this session: its quarter stream id.
fn datagram_prefix(connection: &Connection) -> Vec<u8> {
    let qstream = QStreamId::from_session_id(connection.session_id());
    let len = Datagram::header_size(qstream);
    let mut prefix = vec![0u8; len];
    let written = Datagram::new(qstream, &[])
        .write(&mut prefix)
        .expect("the header fits its own size");
    prefix.truncate(written);
    prefix
}

/// Drains this peer's outbox: frames as datagrams when they fit, everything else as records.
async fn write_loop(connection: Connection, mut control: SendStream, parts: WriterParts) {
    let WriterParts {
        outbox,
        limits,
        metrics,
        stats,
        done,
    } = parts;
    let grace = limits.close_grace;
    let _done = done.drop_guard();
    let prefix = datagram_prefix(&connection);
    loop {
        match outbox.pop() {
            Next::Send(Outgoing::Frame(frame)) => {
                let len = frame.len();
                let fits = connection.max_datagram_size().is_some_and(|max| len <= max);
                let sent = if fits {
                    let mut datagram = Vec::with_capacity(prefix.len() + len);
                    datagram.extend_from_slice(&prefix);
                    datagram.extend_from_slice(&frame);
                    // Waits while QUIC's small datagram buffer is full (congestion control
                    // paces it), so the backlog stays in the outbox, which drops the oldest.
                    connection
                        .quic_connection()
                        .send_datagram_wait(Bytes::from(datagram))
                        .await
                        .is_ok()
                } else {
                    write_record(&mut control, RecordKind::Frame, &frame).await
                };
                if !sent {
                    return;
                }
                stats.sent(&metrics, len);
            }
            Next::Send(Outgoing::Control(text)) => {
                if !write_record(&mut control, RecordKind::Control, text.as_bytes()).await {
                    return;
                }
            }
            Next::Close(closing) => {
                if closing.explain {
                    close_with(
                        &connection,
                        &mut control,
                        closing.code,
                        &closing.reason,
                        grace,
                    )
                    .await;
                } else {
                    connection.close(
                        VarInt::from_u32(closing.code.into()),
                        close_reason(&closing.reason).as_bytes(),
                    );
                }
                return;
            }
            Next::Empty => outbox.ready().await,
        }
    }
}
