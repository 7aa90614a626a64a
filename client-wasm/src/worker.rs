//! The engine's worker: the I/O shell around the sans-IO [`Engine`].
//!
//! `www/worker.js` loads this module in a dedicated module Worker and calls [`start_worker`]. The
//! page then posts [`ToWorker::Start`] with the shared rings; from then on the audio never touches
//! the main thread, so a stalled page does not glitch the call. This module only moves things:
//! samples between the rings and the engine, bytes between the connection (a WebSocket or a
//! WebTransport session, [`crate::webtransport_io`]) and the engine, messages
//! to the page, timers; every decision is the engine's, tested natively.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Atomics, Int32Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    BinaryType, CloseEvent, DedicatedWorkerGlobalScope, Event, MessageEvent, Response, WebSocket,
};

use crate::audio_io::{CaptureSource, PlaybackSink, SharedReport, port_fallback};
use crate::engine::{Engine, Output, StartError, WEBTRANSPORT_READY_MS, Wake};
use crate::js_ring::JsRing;
use crate::messages::{EngineConfig, ErrorCode, FromWorker, ToWorker, Transport};
use crate::ring::{Consumer, Producer, WRITE_SLOT};
use crate::webtransport_io::{self, Incoming, Session};
use gloo_timers::callback::{Interval, Timeout};

/// How often the engine moves samples when it cannot follow the audio clock (no shared memory
/// or no `Atomics.waitAsync`), in milliseconds (browsers clamp worker timers near 4 ms).
const TICK_MS: u32 = 4;
/// Longest the engine sleeps without a wake from the audio thread (a suspended context), ms.
const WAKE_TIMEOUT_MS: f64 = 20.0;
/// Datagrams that may wait in the browser's queue before audio is dropped: 120 ms of 2.5 ms
/// frames, the most a WebSocket's backlog may hold too (`uplink::CAP_US`).
const DATAGRAM_BACKLOG: f64 = 48.0;
/// Datagrams that may wait in the browser's queue before repair frames are dropped (two wakes'
/// frames, 20 ms): repair uses only the room audio leaves. A browser's QUIC sender slows down on
/// a lossy path (its congestion control takes loss for congestion), and then every repair frame
/// sent would push an audio frame out of the queue.
const REPAIR_BACKLOG: f64 = 8.0;

thread_local! {
    /// The worker's one engine and its message handler, for the worker's lifetime.
    static WORKER: RefCell<Option<WorkerHandle>> = const { RefCell::new(None) };
}

struct WorkerHandle {
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    shell: Option<Rc<RefCell<Shell>>>,
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker) {
    let json = serde_json::to_string(message).expect("worker messages always serialize");
    let object = Object::new();
    // Defining a property on a fresh plain object cannot fail.
    let _ = Reflect::set(&object, &"json".into(), &json.into());
    // Posting fails only for uncloneable values; a string in an object always clones.
    let _ = scope().post_message(&object);
}

pub(crate) fn now_us() -> u64 {
    let performance = scope().performance().expect("workers have performance");
    ((performance.time_origin() + performance.now()) * 1000.0) as u64
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("crypto.getRandomValues is available in workers");
    u64::from_le_bytes(bytes)
}

/// Entry point of the engine's worker: listens for the page's messages.
#[wasm_bindgen(js_name = startWorker)]
pub fn start_worker() {
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(on_page_message);
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    WORKER.with(|w| {
        *w.borrow_mut() = Some(WorkerHandle {
            _on_message: on_message,
            shell: None,
        });
    });
    post(&FromWorker::Ready);
}

fn on_page_message(event: MessageEvent) {
    let data = event.data();
    let Some(json) = Reflect::get(&data, &"json".into())
        .ok()
        .and_then(|j| j.as_string())
    else {
        return;
    };
    let Ok(message) = serde_json::from_str::<ToWorker>(&json) else {
        post(&FromWorker::Error {
            code: ErrorCode::Internal,
            message: "the page sent a message the engine does not know".into(),
            fatal: false,
        });
        return;
    };
    let shell = WORKER.with(|w| w.borrow().as_ref().and_then(|h| h.shell.clone()));
    match (message, shell) {
        (ToWorker::Start(config), None) => match Shell::start(config, &data) {
            Ok(shell) => WORKER.with(|w| {
                if let Some(handle) = w.borrow_mut().as_mut() {
                    handle.shell = Some(shell);
                }
            }),
            Err(error) => post(&FromWorker::Error {
                code: error.code(),
                message: error.to_string(),
                fatal: true,
            }),
        },
        (ToWorker::Mute { muted }, Some(shell)) => shell.borrow_mut().engine.set_muted(muted),
        (ToWorker::OutputLatency { ms }, Some(shell)) => {
            shell.borrow_mut().engine.set_output_latency(ms);
        }
        (ToWorker::HangUp, Some(shell)) => {
            let mut shell = shell.borrow_mut();
            shell.engine.hang_up(now_us());
            shell.pump();
        }
        (ToWorker::HangUp, None) => post(&FromWorker::Closed),
        _ => {}
    }
}

/// An open or opening WebSocket with its handlers, removed when dropped.
struct Socket {
    ws: WebSocket,
    opened: bool,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Removes the handlers and closes the socket: nothing of it reaches the engine any more. The
    /// closures stay alive with `self`, which matters when one of them is running now.
    fn detach(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The engine's connection to the relay.
enum Connection {
    WebSocket(Socket),
    /// A WebTransport session on its way (the endpoint's address, the handshake): the flag is
    /// set when the engine asked to close it before it was ready.
    Opening(Rc<Cell<bool>>),
    WebTransport(Session),
}

impl Connection {
    fn detach(&self) {
        match self {
            Self::WebSocket(socket) => socket.detach(),
            Self::Opening(_) => {}
            Self::WebTransport(session) => session.detach(),
        }
    }
}

/// The engine with its sockets, timers and rings.
struct Shell {
    me: Weak<RefCell<Shell>>,
    config: EngineConfig,
    engine: Engine,
    capture: CaptureSource,
    playback: PlaybackSink,
    /// The playback worklet's statistics block (shared memory, playout in the worklet).
    report: Option<SharedReport>,
    connection: Option<Connection>,
    /// Connections and timeouts whose handlers may still be running; dropped on the next wake.
    retired: (Vec<Connection>, Vec<Timeout>),
    /// The wake timer, when the engine cannot follow the audio clock.
    tick: Option<Interval>,
    /// The engine's deadline and the timeout armed for it.
    deadline: Option<(u64, Timeout)>,
    capture_scratch: Vec<f32>,
    /// A received frame, copied out of its ArrayBuffer; reused so receiving allocates nothing.
    receive_scratch: Vec<u8>,
}

impl Shell {
    fn start(mut config: EngineConfig, data: &JsValue) -> Result<Rc<RefCell<Self>>, StartError> {
        if !webtransport_io::available() {
            config.webtransport_url = None;
        }
        let engine = Engine::new(&config, now_us(), random_u64())?;
        let field = |name: &str| Reflect::get(data, &name.into()).unwrap_or(JsValue::UNDEFINED);
        let (capture, playback) = if config.shared {
            let capture = JsRing::over(field("capture").unchecked_into());
            let playback = JsRing::over(field("playback").unchecked_into());
            (
                CaptureSource::Shared(Consumer::new(capture)),
                PlaybackSink::Shared(Producer::new(playback)),
            )
        } else {
            port_fallback(&field("capturePort"), &field("playbackPort"))?
        };
        let report = SharedReport::over(&field("playoutStats"));
        let shell = Rc::new_cyclic(|me| {
            RefCell::new(Self {
                me: me.clone(),
                config,
                engine,
                capture,
                playback,
                report,
                connection: None,
                retired: (Vec::new(), Vec::new()),
                tick: None,
                deadline: None,
                capture_scratch: Vec::new(),
                receive_scratch: Vec::new(),
            })
        });
        {
            let mut s = shell.borrow_mut();
            let me = s.me.clone();
            match &s.capture {
                CaptureSource::Shared(capture) if has_wait_async() => {
                    follow_audio_clock(me, capture.memory().indices().clone());
                }
                _ => {
                    s.tick = Some(Interval::new(TICK_MS, move || {
                        with_me(&me, Self::on_wake);
                    }));
                }
            }
            s.pump();
        }
        Ok(shell)
    }

    /// Sends what the call queued, then does what the engine asks, and arms its timer.
    fn pump(&mut self) {
        // Frames decrypted just now go to the audio thread now, not at the next wake.
        if let Some(records) = self.engine.take_records() {
            // A ring with no room means an audio thread stalled for half a second: those
            // frames are lost, as they would be late anyway, and the worklet conceals them;
            // the statistics count them.
            let lost = if self.playback.push_records(records) {
                0
            } else {
                line_playout::record::count(records)
            };
            records.clear();
            if lost > 0 {
                self.engine.handle_records_dropped(lost as u64);
            }
        }
        self.flush();
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Connect(Transport::WebTransport) => self.connect_webtransport(),
                Output::Connect(_) => self.connect(),
                Output::DropSocket => {
                    if let Some(connection) = self.connection.take() {
                        connection.detach();
                        self.retired.0.push(connection);
                    }
                }
                Output::Close { code, reason } => match &self.connection {
                    Some(Connection::WebSocket(socket)) => {
                        let _ = socket.ws.close_with_code_and_reason(code, reason);
                    }
                    Some(Connection::WebTransport(session)) => session.close(code, reason),
                    Some(Connection::Opening(closing)) => closing.set(true),
                    None => {}
                },
                Output::CheckStatus => self.check_status(),
                Output::Page(message) => post(&message),
            }
        }
        self.arm_deadline();
        if !self.engine.running() {
            self.tick = None;
        }
    }

    fn arm_deadline(&mut self) {
        let wanted = self.engine.poll_timeout();
        if self.deadline.as_ref().map(|(at, _)| *at) == wanted {
            return;
        }
        // The old timeout may be the one running now: retire it, do not drop it.
        if let Some((_, old)) = self.deadline.take() {
            self.retired.1.push(old);
        }
        if let Some(at) = wanted {
            let ms = at.saturating_sub(now_us()).div_ceil(1000);
            let me = self.me.clone();
            // setTimeout takes a signed 32-bit delay: anything longer would fire at once.
            let ms = u32::try_from(ms)
                .unwrap_or(u32::MAX)
                .min(i32::MAX.unsigned_abs());
            let timeout = Timeout::new(ms, move || {
                with_me(&me, |s| {
                    // This timeout has fired: the next pump arms a new one if the engine still
                    // waits (a clock that read a hair early, say).
                    if let Some((_, fired)) = s.deadline.take() {
                        s.retired.1.push(fired);
                    }
                    s.engine.handle_timeout(now_us());
                    s.pump();
                });
            });
            self.deadline = Some((at, timeout));
        }
    }

    fn connect(&mut self) {
        let Ok(ws) = WebSocket::new(&self.config.ws_url) else {
            self.engine.handle_connect_error();
            return;
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = self.me.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| with_me(&me, Self::on_open));
        let me = self.me.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            with_me(&me, |s| s.on_socket_message(&event));
        });
        let me = self.me.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            with_me(&me, |s| s.on_close(&event));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.connection = Some(Connection::WebSocket(Socket {
            ws,
            opened: false,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        }));
    }

    /// Opens a WebTransport session; the engine hears [`Engine::handle_open`] when it is ready,
    /// or [`Engine::handle_webtransport_failed`].
    fn connect_webtransport(&mut self) {
        let Some(endpoint_url) = self.config.webtransport_url.clone() else {
            self.engine.handle_webtransport_failed(now_us());
            return;
        };
        let check_url = self.config.check_url.clone();
        let closing = Rc::new(Cell::new(false));
        self.connection = Some(Connection::Opening(Rc::clone(&closing)));
        let me = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let opened =
                webtransport_io::open(&endpoint_url, &check_url, WEBTRANSPORT_READY_MS).await;
            with_me(&me, |s| s.on_webtransport(&closing, opened));
        });
    }

    fn on_webtransport(
        &mut self,
        attempt: &Rc<Cell<bool>>,
        opened: Result<webtransport_io::WebTransport, webtransport_io::OpenError>,
    ) {
        let current =
            matches!(&self.connection, Some(Connection::Opening(a)) if Rc::ptr_eq(a, attempt));
        let session = match opened {
            Ok(transport) if current && !attempt.get() => {
                let me = self.me.clone();
                Session::start(transport, move |incoming| {
                    with_me(&me, |s| s.on_session(incoming));
                })
                .ok()
            }
            Ok(transport) => {
                // Given up or hung up while it opened.
                webtransport_io::abandon(&transport);
                None
            }
            Err(error) => {
                web_sys::console::info_1(
                    &format!("line: WebTransport did not open: {error}; using a WebSocket").into(),
                );
                None
            }
        };
        if !current {
            return;
        }
        match session {
            Some(session) => {
                self.connection = Some(Connection::WebTransport(session));
                self.on_open();
            }
            None => {
                self.connection = None;
                self.engine.handle_webtransport_failed(now_us());
                self.pump();
            }
        }
    }

    fn on_session(&mut self, incoming: Incoming<'_>) {
        let now = now_us();
        match incoming {
            Incoming::Frame(frame) => self.engine.handle_frame(now, frame),
            Incoming::Control(text) => self.engine.handle_text(now, text),
            Incoming::Ended => {
                // This runs inside the session's own task: retire it, do not drop it now.
                if let Some(connection) = self.connection.take() {
                    connection.detach();
                    self.retired.0.push(connection);
                }
                self.engine.handle_ended(now);
            }
        }
        self.pump();
    }

    fn on_open(&mut self) {
        if let Some(Connection::WebSocket(socket)) = &mut self.connection {
            socket.opened = true;
        }
        self.engine.handle_open(now_us(), random_u64());
        self.pump();
    }

    fn on_socket_message(&mut self, event: &MessageEvent) {
        let data = event.data();
        let now = now_us();
        if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
            let view = Uint8Array::new(buffer);
            self.receive_scratch.resize(view.length() as usize, 0);
            view.copy_to(&mut self.receive_scratch);
            self.engine.handle_frame(now, &self.receive_scratch);
        } else if let Some(text) = data.as_string() {
            self.engine.handle_text(now, &text);
        }
        // A Pong goes out now, not at the next wake: the RTT is the network's, not ours.
        self.pump();
    }

    fn on_close(&mut self, event: &CloseEvent) {
        // This handler runs inside the socket's own closure: retire it, do not drop it now.
        if let Some(connection) = self.connection.take() {
            self.retired.0.push(connection);
        }
        self.engine.handle_close(now_us(), event.code());
        self.pump();
    }

    /// A failed upgrade hides the server's status from WebSocket; ask again with a plain GET.
    fn check_status(&self) {
        let url = self.config.check_url.clone();
        let me = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let status = fetch_status(&url).await;
            with_me(&me, |s| {
                s.engine.handle_check(now_us(), status);
                s.pump();
            });
        });
    }

    /// Sends what the call queued; audio is dropped (and counted) while the uplink is behind.
    fn flush(&mut self) {
        let socket = match &self.connection {
            Some(Connection::WebSocket(socket)) if socket.opened => socket,
            Some(Connection::WebTransport(session)) => {
                while let Some(out) = self.engine.poll_transmit() {
                    let backlog = if out.is_repair {
                        REPAIR_BACKLOG
                    } else {
                        DATAGRAM_BACKLOG
                    };
                    if out.is_audio && !session.has_room(backlog) {
                        self.engine.dropped_outgoing(&out);
                    } else {
                        session.send(&out.bytes);
                        self.engine.sent(out.bytes.len());
                    }
                    self.engine.recycle(out);
                }
                return;
            }
            _ => {
                while let Some(out) = self.engine.poll_transmit() {
                    self.engine.recycle(out);
                }
                return;
            }
        };
        while let Some(out) = self.engine.poll_transmit() {
            if out.is_audio
                && !self
                    .engine
                    .admits_audio(u64::from(socket.ws.buffered_amount()))
            {
                self.engine.dropped_outgoing(&out);
            } else if socket.ws.send_with_u8_array(&out.bytes).is_ok() {
                self.engine.sent(out.bytes.len());
            }
            self.engine.recycle(out);
        }
    }

    fn on_wake(&mut self) {
        self.retired.0.clear();
        self.retired.1.clear();
        if !self.engine.running() {
            return;
        }
        if let Some(report) = &mut self.report
            && report.read()
        {
            self.engine.handle_worklet_report(now_us(), &report.stats);
        } else if let Some((at, stats)) = self.playback.take_port_report() {
            self.engine.handle_worklet_report(at, &stats);
        }
        let mut captured = core::mem::take(&mut self.capture_scratch);
        captured.clear();
        self.capture.drain(&mut captured);
        let wake = Wake {
            captured: &captured,
            capture_xruns: self.capture.xruns(),
            playback_filled: self.playback.filled(),
            playback_xruns: self.playback.xruns(),
            socket_buffered: match &self.connection {
                Some(Connection::WebSocket(s)) if s.opened => {
                    Some(u64::from(s.ws.buffered_amount()))
                }
                _ => None,
            },
        };
        let play = self.engine.handle_wake(now_us(), wake);
        if !play.is_empty() {
            self.playback.push(play);
        }
        self.capture_scratch = captured;
        self.capture.wake_after(self.engine.wake_after());
        self.pump();
    }
}

fn with_me(me: &Weak<RefCell<Shell>>, f: impl FnOnce(&mut Shell)) {
    if let Some(shell) = me.upgrade() {
        f(&mut shell.borrow_mut());
    }
}

/// Whether this browser has `Atomics.waitAsync` (Chromium 87+, Safari 16.4+, Firefox 145+).
fn has_wait_async() -> bool {
    Reflect::get(&js_sys::global(), &"Atomics".into())
        .and_then(|atomics| Reflect::get(&atomics, &"waitAsync".into()))
        .is_ok_and(|f| f.is_function())
}

/// Runs the engine each time the capture worklet publishes samples (it `Atomics.notify`s the
/// capture ring's write index once the next frame's samples are there, or every 1.9-2.7 ms on the
/// worker's playout path), so frames leave and the playback ring is topped up on the audio clock, not on a worker timer that browsers clamp to 4 ms and deliver late.
/// Wakes at least every [`WAKE_TIMEOUT_MS`] (a suspended context) for pings and stats; ends
/// with the engine, its hang-up or its fatal stop.
fn follow_audio_clock(me: Weak<RefCell<Shell>>, indices: Int32Array) {
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let seen = Atomics::load(&indices, WRITE_SLOT).unwrap_or(0);
            // "not-equal" (samples came since the load) or "timed-out" answer at once.
            let waiting =
                Atomics::wait_async_with_timeout(&indices, WRITE_SLOT, seen, WAKE_TIMEOUT_MS)
                    .ok()
                    .filter(|r| Reflect::get(r, &"async".into()).is_ok_and(|a| a.is_truthy()))
                    .and_then(|r| Reflect::get(&r, &"value".into()).ok())
                    .and_then(|v| v.dyn_into::<Promise>().ok());
            if let Some(promise) = waiting {
                let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            }
            let Some(shell) = me.upgrade() else { return };
            let mut shell = shell.borrow_mut();
            if !shell.engine.running() {
                return;
            }
            shell.on_wake();
        }
    });
}

/// The HTTP status of a plain GET of `url`, or `None` when the server cannot be reached.
async fn fetch_status(url: &str) -> Option<u16> {
    let promise = scope().fetch_with_str(url);
    let response = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let response: Response = response.dyn_into().ok()?;
    Some(response.status())
}
