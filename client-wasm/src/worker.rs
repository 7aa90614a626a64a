//! The engine's worker: WebSocket I/O, timers and rings around the sans-IO [`Call`].
//!
//! `www/worker.js` loads this module in a dedicated module Worker and calls [`start_worker`]. The
//! page then posts [`ToWorker::Start`] with the shared rings; from then on the audio never touches
//! the main thread, so a stalled page does not glitch the call.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{
    ArrayBuffer, Atomics, Float32Array, Int32Array, Object, Promise, Reflect, Uint8Array,
};
use line_protocol::control::{RelayMessage, close_code};
use line_protocol::join::WRONG_TOKEN_STATUS;
use line_protocol::leaf::LeafKey;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    BinaryType, CloseEvent, DedicatedWorkerGlobalScope, Event, MessageEvent, MessagePort, Response,
    WebSocket,
};

use crate::call::{Call, CallConfig, PeerEvent};
use crate::js_ring::JsRing;
use crate::link::FrameDuration;
use crate::liveness::{Liveness, Verdict};
use crate::messages::{CallState, EngineConfig, ErrorCode, FromWorker, ToWorker};
use crate::playback_fill::PlaybackFill;
use crate::ring::{Consumer, Producer, WRITE_SLOT};
use crate::uplink::{Uplink, too_slow_message};

/// How often the engine moves samples when it cannot follow the audio clock (no shared memory
/// or no `Atomics.waitAsync`), in milliseconds (browsers clamp worker timers near 4 ms).
const TICK_MS: i32 = 4;
/// Longest the engine sleeps without a wake from the audio thread (a suspended context), ms.
const WAKE_TIMEOUT_MS: f64 = 20.0;
/// How often stats go to the page, microseconds.
const STATS_INTERVAL_US: u64 = 100_000;
/// Reconnect delays grow from this, doubling, milliseconds...
const BACKOFF_START_MS: f64 = 500.0;
/// ...up to this.
const BACKOFF_MAX_MS: f64 = 8_000.0;
/// Refused upgrades (with the plain check passing) before the page hears that the server refuses.
const REFUSALS_BEFORE_NOTICE: u32 = 3;

thread_local! {
    /// The worker's one engine and its message handler, for the worker's lifetime.
    static WORKER: RefCell<Option<WorkerHandle>> = const { RefCell::new(None) };
}

struct WorkerHandle {
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    engine: Option<Rc<RefCell<Engine>>>,
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker) {
    let json = serde_json::to_string(message).expect("worker messages always serialize");
    let object = Object::new();
    set(&object, "json", &json.into());
    // Posting fails only for uncloneable values; a string in an object always clones.
    let _ = scope().post_message(&object);
}

fn set(object: &Object, key: &str, value: &JsValue) {
    // Defining a property on a fresh plain object cannot fail.
    let _ = Reflect::set(object, &key.into(), value);
}

fn now_us() -> u64 {
    let performance = scope().performance().expect("workers have performance");
    ((performance.time_origin() + performance.now()) * 1000.0) as u64
}

fn random_kid() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("crypto.getRandomValues is available in workers");
    u64::from_le_bytes(bytes)
}

fn post_error(code: ErrorCode, message: impl Into<String>, fatal: bool) {
    post(&FromWorker::Error {
        code,
        message: message.into(),
        fatal,
    });
}

/// Entry point of the engine's worker: listens for the page's messages.
#[wasm_bindgen(js_name = startWorker)]
pub fn start_worker() {
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(on_page_message);
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    WORKER.with(|w| {
        *w.borrow_mut() = Some(WorkerHandle {
            _on_message: on_message,
            engine: None,
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
        post_error(
            ErrorCode::Internal,
            "the page sent a message the engine does not know",
            false,
        );
        return;
    };
    let engine = WORKER.with(|w| w.borrow().as_ref().and_then(|h| h.engine.clone()));
    match (message, engine) {
        (ToWorker::Start(config), None) => match Engine::start(config, &data) {
            Ok(engine) => WORKER.with(|w| {
                if let Some(handle) = w.borrow_mut().as_mut() {
                    handle.engine = Some(engine);
                }
            }),
            Err(error) => post_error(error.0, error.1, true),
        },
        (ToWorker::Mute { muted }, Some(engine)) => engine.borrow_mut().call.set_muted(muted),
        (ToWorker::OutputLatency { ms }, Some(engine)) if ms.is_finite() && ms >= 0.0 => {
            engine.borrow_mut().config.output_latency_ms = ms;
        }
        (ToWorker::HangUp, Some(engine)) => Engine::hang_up(&engine),
        (ToWorker::HangUp, None) => post(&FromWorker::Closed),
        _ => {}
    }
}

/// Where captured samples come from.
enum CaptureSource {
    Shared(Consumer<JsRing>),
    /// MessagePort fallback: the worklet posts batches, queued here until the next tick.
    Port {
        port: MessagePort,
        queue: Rc<RefCell<Vec<f32>>>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
    },
}

/// Where samples to play go.
enum PlaybackSink {
    Shared(Producer<JsRing>),
    /// MessagePort fallback: the worklet reports how much it has played, and its underruns.
    Port {
        port: MessagePort,
        sent: u64,
        played: Rc<RefCell<(u64, u64)>>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
    },
}

impl Drop for CaptureSource {
    fn drop(&mut self) {
        if let Self::Port { port, .. } = self {
            port.set_onmessage(None);
        }
    }
}

impl Drop for PlaybackSink {
    fn drop(&mut self) {
        if let Self::Port { port, .. } = self {
            port.set_onmessage(None);
        }
    }
}

impl CaptureSource {
    fn drain(&self, out: &mut Vec<f32>) {
        match self {
            Self::Shared(consumer) => {
                let n = consumer.available();
                let start = out.len();
                out.resize(start + n, 0.0);
                let got = consumer.pop(&mut out[start..]);
                out.truncate(start + got);
            }
            Self::Port { queue, .. } => out.append(&mut queue.borrow_mut()),
        }
    }

    fn xruns(&self) -> u64 {
        match self {
            Self::Shared(consumer) => u64::from(consumer.memory().xruns()),
            Self::Port { .. } => 0,
        }
    }
}

impl PlaybackSink {
    fn filled(&self) -> usize {
        match self {
            Self::Shared(producer) => producer.filled(),
            Self::Port { sent, played, .. } => sent.saturating_sub(played.borrow().0) as usize,
        }
    }

    fn push(&mut self, samples: &[f32]) {
        match self {
            Self::Shared(producer) => {
                producer.push(samples);
            }
            Self::Port { port, sent, .. } => {
                let chunk = Float32Array::from(samples);
                let transfer = js_sys::Array::of1(&chunk.buffer());
                if port
                    .post_message_with_transferable(&chunk, &transfer)
                    .is_ok()
                {
                    *sent += samples.len() as u64;
                }
            }
        }
    }

    fn xruns(&self) -> u64 {
        match self {
            Self::Shared(producer) => u64::from(producer.memory().xruns()),
            Self::Port { played, .. } => played.borrow().1,
        }
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

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// A `setInterval` or `setTimeout` with its closure, cleared when dropped.
struct Timer {
    id: i32,
    interval: bool,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    fn new(ms: i32, interval: bool, callback: Closure<dyn FnMut()>) -> Self {
        let f = callback.as_ref().unchecked_ref();
        let id = if interval {
            scope().set_interval_with_callback_and_timeout_and_arguments_0(f, ms)
        } else {
            scope().set_timeout_with_callback_and_timeout_and_arguments_0(f, ms)
        }
        .expect("workers have timers");
        Self {
            id,
            interval,
            _callback: callback,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.interval {
            scope().clear_interval_with_handle(self.id);
        } else {
            scope().clear_timeout_with_handle(self.id);
        }
    }
}

struct Engine {
    me: Weak<RefCell<Engine>>,
    config: EngineConfig,
    call: Call,
    capture: CaptureSource,
    playback: PlaybackSink,
    socket: Option<Socket>,
    /// Sockets and timers whose handlers may still be running; dropped on the next tick.
    retired: (Vec<Socket>, Vec<Timer>),
    tick: Option<Timer>,
    reconnect: Option<Timer>,
    /// Gives up a socket that does not open, or that goes silent in a call (a changed network).
    liveness: Liveness,
    state: CallState,
    attempts: u32,
    /// Failed upgrades in a row whose plain check passed.
    refused_upgrades: u32,
    reconnects: u32,
    ever_open: bool,
    hanging_up: bool,
    stopped: bool,
    capture_scratch: Vec<f32>,
    play_scratch: Vec<f32>,
    /// A received frame, copied out of its ArrayBuffer; reused so receiving allocates nothing.
    receive_scratch: Vec<u8>,
    fill: PlaybackFill,
    /// Whether the socket keeps up with the audio, judged over time.
    uplink: Uplink,
    /// Lowest playback-ring fill seen at a wake since the last stats, samples.
    playback_fill_low: Option<usize>,
    /// When the engine last woke, and the longest gap between wakes since the last stats.
    last_wake_us: u64,
    wake_gap_us: u64,
    xrun_baseline: u64,
    in_call_since_us: Option<u64>,
    next_stats_us: u64,
    bytes: Bitrate,
    cannot_decrypt_reported: bool,
    dropped_reported_at: u64,
}

#[derive(Default)]
struct Bitrate {
    sent: u64,
    received: u64,
    last: (u64, u64, u64),
    rates: (f64, f64),
}

impl Bitrate {
    fn update(&mut self, now_us: u64) {
        let (at, sent, received) = self.last;
        let dt = now_us.saturating_sub(at);
        if dt >= 1_000_000 {
            let per_second = 8.0 * 1e6 / dt as f64;
            self.rates = (
                (self.sent - sent) as f64 * per_second,
                (self.received - received) as f64 * per_second,
            );
            self.last = (now_us, self.sent, self.received);
        }
    }
}

type StartError = (ErrorCode, String);

impl Engine {
    fn start(config: EngineConfig, data: &JsValue) -> Result<Rc<RefCell<Self>>, StartError> {
        let leaf: LeafKey = config
            .leaf
            .parse()
            .map_err(|e| (ErrorCode::BadLeaf, format!("{e}")))?;
        let frame = FrameDuration::from_millis(f64::from(config.frame_us) / 1000.0)
            .ok_or((ErrorCode::BadLink, "unsupported frame length".to_owned()))?;
        let call = Call::new(
            CallConfig {
                wire_rate: config.wire_rate,
                frame,
                context_rate: config.context_rate,
            },
            leaf,
        );
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
        let engine = Rc::new_cyclic(|me| {
            RefCell::new(Self {
                me: me.clone(),
                call,
                capture,
                playback,
                socket: None,
                retired: (Vec::new(), Vec::new()),
                tick: None,
                reconnect: None,
                liveness: Liveness::new(),
                state: CallState::Connecting,
                attempts: 0,
                refused_upgrades: 0,
                reconnects: 0,
                ever_open: false,
                hanging_up: false,
                stopped: false,
                capture_scratch: Vec::new(),
                receive_scratch: Vec::new(),
                play_scratch: Vec::new(),
                fill: PlaybackFill::default(),
                uplink: Uplink::new(config.wire_rate, config.frame_us),
                playback_fill_low: None,
                last_wake_us: 0,
                wake_gap_us: 0,
                xrun_baseline: 0,
                in_call_since_us: None,
                next_stats_us: 0,
                bytes: Bitrate::default(),
                cannot_decrypt_reported: false,
                dropped_reported_at: 0,
                config,
            })
        });
        {
            let mut e = engine.borrow_mut();
            let muted = e.config.muted;
            e.call.set_muted(muted);
            let me = e.me.clone();
            match &e.capture {
                CaptureSource::Shared(capture) if has_wait_async() => {
                    follow_audio_clock(me, capture.memory().indices().clone());
                }
                _ => {
                    e.tick = Some(Timer::new(
                        TICK_MS,
                        true,
                        Closure::new(move || {
                            if let Some(engine) = me.upgrade() {
                                engine.borrow_mut().on_tick();
                            }
                        }),
                    ));
                }
            }
            e.set_state(CallState::Connecting);
            e.connect();
        }
        Ok(engine)
    }

    fn with_me(me: &Weak<RefCell<Self>>, f: impl FnOnce(&mut Self)) {
        if let Some(engine) = me.upgrade() {
            f(&mut engine.borrow_mut());
        }
    }

    fn set_state(&mut self, state: CallState) {
        if self.state == state && state != CallState::Connecting {
            return;
        }
        self.state = state;
        match state {
            // The call timer runs on through a reconnect; it restarts when the other person leaves.
            CallState::InCall => {
                self.xrun_baseline = self.playback.xruns();
                self.in_call_since_us.get_or_insert_with(now_us);
            }
            CallState::Ended => self.in_call_since_us = None,
            // Waiting after a reconnect is not the end of the call: `peer-left` is (see below).
            _ => {}
        }
        post(&FromWorker::State { state });
    }

    fn connect(&mut self) {
        let ws = match WebSocket::new(&self.config.ws_url) {
            Ok(ws) => ws,
            Err(_) => {
                post_error(ErrorCode::Internal, "the server address is not valid", true);
                self.stop();
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = self.me.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| {
            Self::with_me(&me, Self::on_open);
        });
        let me = self.me.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            Self::with_me(&me, |e| e.on_socket_message(&event));
        });
        let me = self.me.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let me2 = me.clone();
            Self::with_me(&me, |e| e.on_close(&event, me2));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.liveness.connecting(now_us());
        self.socket = Some(Socket {
            ws,
            opened: false,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
    }

    fn on_open(&mut self) {
        if let Some(socket) = &mut self.socket {
            socket.opened = true;
        }
        self.liveness.opened();
        if self.ever_open {
            self.reconnects += 1;
        }
        self.ever_open = true;
        self.attempts = 0;
        self.refused_upgrades = 0;
        self.uplink.reset();
        self.call.connected(now_us(), random_kid());
        self.flush();
    }

    fn on_socket_message(&mut self, event: &MessageEvent) {
        let data = event.data();
        let now = now_us();
        if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
            self.liveness.heard(now, true);
            let view = Uint8Array::new(buffer);
            self.receive_scratch.resize(view.length() as usize, 0);
            view.copy_to(&mut self.receive_scratch);
            self.bytes.received += self.receive_scratch.len() as u64;
            self.call.receive(now, &self.receive_scratch);
            // A Pong goes out now, not at the next wake: the RTT is the network's, not ours.
            self.flush();
            if self.call.cannot_decrypt() && !self.cannot_decrypt_reported {
                self.cannot_decrypt_reported = true;
                post_error(
                    ErrorCode::CannotDecrypt,
                    "cannot decrypt the other side — check that you both use the same link",
                    false,
                );
            }
            return;
        }
        let Some(text) = data.as_string() else { return };
        self.liveness.heard(now, false);
        match RelayMessage::from_json(&text) {
            Ok(RelayMessage::Waiting) => {
                self.liveness.in_call(now, false);
                self.set_state(CallState::Waiting);
            }
            Ok(RelayMessage::PeerJoined) => {
                self.liveness.in_call(now, true);
                self.call.peer_joined();
                self.cannot_decrypt_reported = false;
                post(&FromWorker::PeerJoined);
                self.set_state(CallState::InCall);
                self.flush();
            }
            Ok(RelayMessage::PeerLeft) => {
                self.liveness.in_call(now, false);
                self.call.peer_left();
                self.in_call_since_us = None;
                post(&FromWorker::PeerLeft);
                self.set_state(CallState::Waiting);
            }
            // The close that follows says it, as a fatal error.
            Ok(RelayMessage::Error { code, .. })
                if code == close_code::WAITED_TOO_LONG || code == close_code::TAKEN_OVER => {}
            Ok(RelayMessage::Error { code, reason }) => post_error(
                ErrorCode::ServerError,
                format!("the server closed the connection ({code}): {reason}"),
                false,
            ),
            // Messages from a newer server are ignored.
            Ok(_) | Err(_) => {}
        }
    }

    fn on_close(&mut self, event: &CloseEvent, me: Weak<RefCell<Self>>) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let opened = socket.opened;
        // This handler runs inside the socket's own closure: drop it later, not now.
        self.retired.0.push(socket);
        self.call.disconnected();
        self.liveness.closed();
        if self.hanging_up || self.stopped {
            post(&FromWorker::Closed);
            return;
        }
        let code = event.code();
        if opened && code == close_code::TAKEN_OVER {
            // Another connection with this call's participant id took the slot: a duplicate of
            // this tab that joined, or someone who saw this call's WebSocket address. This
            // engine's own reconnects drop the old socket first, so it never sees its own 4409.
            // Reconnecting would take the slot back and forth.
            post_error(
                ErrorCode::TakenOver,
                "this call went on in another window or device that took your place on the line",
                true,
            );
            self.stop();
            return;
        }
        self.set_state(CallState::Reconnecting);
        if opened {
            if code == close_code::WAITED_TOO_LONG {
                // Nobody came for hours: stop here rather than hold a line open forever; the
                // page offers to wait again.
                post_error(
                    ErrorCode::WaitedTooLong,
                    "nobody else joined this call for a long time, so the server stopped waiting",
                    true,
                );
                self.stop();
                return;
            }
            if [
                close_code::TOO_BIG,
                close_code::MALFORMED,
                close_code::UNSUPPORTED_DATA,
            ]
            .contains(&code)
            {
                post_error(
                    ErrorCode::ServerError,
                    format!("the server refused what this page sent ({code})"),
                    false,
                );
            }
            self.schedule_reconnect(None);
            return;
        }
        // A failed upgrade hides the server's status from WebSocket; ask again with a plain GET.
        let url = self.config.check_url.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let status = fetch_status(&url).await;
            Self::with_me(&me, |e| e.after_failed_connect(status));
        });
    }

    fn after_failed_connect(&mut self, status: Option<u16>) {
        if self.hanging_up || self.stopped {
            return;
        }
        let fatal = |e: &mut Self, code, message: &str| {
            post_error(code, message, true);
            e.stop();
        };
        match status {
            Some(401) => fatal(
                self,
                ErrorCode::ApiKeyRefused,
                "this server did not accept the API key in the link",
            ),
            Some(403) => fatal(
                self,
                ErrorCode::OriginRefused,
                "this server does not accept calls from this page's address",
            ),
            // Our own slot would have been ours to take back: after a disconnect, somebody else
            // took it, and they may leave again.
            Some(409) if self.ever_open => {
                post_error(
                    ErrorCode::LineFull,
                    "two other people are on this line now; trying again",
                    false,
                );
                self.schedule_reconnect(None);
            }
            Some(409) => fatal(
                self,
                ErrorCode::LineFull,
                "two people are already on this line; if one of them is you in another tab, \
                 hang up there first, or ask for a new link",
            ),
            Some(WRONG_TOKEN_STATUS) => fatal(
                self,
                ErrorCode::LineTaken,
                "someone without this link's key is holding this line, so the server will not \
                 let the call in; make a new call link and share it again",
            ),
            Some(429) => {
                post_error(
                    ErrorCode::TooManyAttempts,
                    "too many failed attempts from this network; trying again later",
                    false,
                );
                self.schedule_reconnect(Some(30_000.0));
            }
            None => {
                post_error(
                    ErrorCode::ServerUnreachable,
                    "the server cannot be reached; trying again",
                    false,
                );
                self.schedule_reconnect(None);
            }
            // The checks passed (400/426 for the missing upgrade, or 5xx): something between here
            // and the server refuses WebSockets (a proxy without upgrade headers, say), or the
            // server is busy. Keep trying, and say so after a few.
            Some(status) => {
                self.refused_upgrades += 1;
                if self.refused_upgrades == REFUSALS_BEFORE_NOTICE {
                    post_error(
                        ErrorCode::ServerError,
                        format!(
                            "the server keeps refusing the connection (HTTP {status}); \
                             trying again"
                        ),
                        false,
                    );
                }
                self.schedule_reconnect(None);
            }
        }
    }

    fn schedule_reconnect(&mut self, delay_ms: Option<f64>) {
        let backoff =
            (BACKOFF_START_MS * 2f64.powi(self.attempts.min(8) as i32)).min(BACKOFF_MAX_MS);
        // Up to a quarter more, so two sides cut off together do not retry in lockstep.
        let delay = delay_ms.unwrap_or(backoff * (1.0 + 0.25 * js_sys::Math::random()));
        self.attempts += 1;
        let me = self.me.clone();
        if let Some(old) = self.reconnect.take() {
            self.retired.1.push(old);
        }
        self.reconnect = Some(Timer::new(
            delay as i32,
            false,
            Closure::new(move || {
                Self::with_me(&me, |e| {
                    if let Some(timer) = e.reconnect.take() {
                        e.retired.1.push(timer);
                    }
                    if !e.stopped && !e.hanging_up {
                        e.connect();
                    }
                });
            }),
        ));
    }

    fn hang_up(engine: &Rc<RefCell<Self>>) {
        let mut e = engine.borrow_mut();
        e.hanging_up = true;
        e.reconnect = None;
        e.call.hang_up();
        e.flush();
        match &e.socket {
            Some(socket) => {
                let _ = socket.ws.close_with_code_and_reason(1000, "hang up");
            }
            None => post(&FromWorker::Closed),
        }
        e.set_state(CallState::Ended);
        e.tick = None;
    }

    /// Drops a socket the watchdog gave up on and connects again: at once after silence in a
    /// call (this call's participant id takes its slot back), with backoff after a slow open.
    fn give_up_socket(&mut self, verdict: Verdict) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        // Not inside its own handlers: drop it now (removing them, closing it), so its late close
        // (4409, once the new socket takes the slot back) never reaches the engine.
        drop(socket);
        self.call.disconnected();
        self.liveness.closed();
        self.set_state(CallState::Reconnecting);
        match verdict {
            Verdict::Silent => self.schedule_reconnect(Some(0.0)),
            _ => self.schedule_reconnect(None),
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
        if let Some(socket) = self.socket.take() {
            self.retired.0.push(socket);
        }
        if let Some(timer) = self.reconnect.take() {
            self.retired.1.push(timer);
        }
        self.set_state(CallState::Ended);
    }

    /// Sends what the call queued; audio is dropped (and counted) while the uplink is behind.
    fn flush(&mut self) {
        let Some(socket) = self.socket.as_ref().filter(|s| s.opened) else {
            while self.call.poll_transmit().is_some() {}
            return;
        };
        while let Some(out) = self.call.poll_transmit() {
            if out.is_audio && !self.uplink.admits_audio(socket.ws.buffered_amount().into()) {
                self.call.dropped_outgoing();
                continue;
            }
            if socket.ws.send_with_u8_array(&out.bytes).is_ok() {
                self.bytes.sent += out.bytes.len() as u64;
            }
        }
    }

    fn on_tick(&mut self) {
        self.retired.0.clear();
        self.retired.1.clear();
        if self.stopped {
            return;
        }
        let now = now_us();
        if self.last_wake_us != 0 {
            self.wake_gap_us = self.wake_gap_us.max(now.saturating_sub(self.last_wake_us));
        }
        self.last_wake_us = now;
        let mut captured = core::mem::take(&mut self.capture_scratch);
        captured.clear();
        self.capture.drain(&mut captured);
        self.call.capture(now, &captured);
        self.capture_scratch = captured;
        self.call.tick(now);
        if let Some(socket) = self.socket.as_ref().filter(|s| s.opened) {
            self.uplink.woke(now, socket.ws.buffered_amount().into());
        }
        self.flush();
        if let Some(verdict) = self.liveness.poll(now) {
            self.give_up_socket(verdict);
        }
        while let Some(event) = self.call.poll_event() {
            match event {
                // The relay's peer-left follows; nothing to do before it.
                PeerEvent::Bye => {}
            }
        }
        self.refill_playback(now);
        if now >= self.next_stats_us {
            self.next_stats_us = now + STATS_INTERVAL_US;
            self.report(now);
        }
    }

    fn refill_playback(&mut self, now: u64) {
        let rate = f64::from(self.config.context_rate);
        let filled = self.playback.filled();
        let fill_us = (filled as f64 * 1e6 / rate) as u64;
        self.fill.set_call(self.in_call_since_us);
        let target_ms = self
            .fill
            .update(now, fill_us as f64 / 1e3, self.playback.xruns());
        let target = (target_ms * rate / 1000.0) as usize;
        self.playback_fill_low = Some(self.playback_fill_low.map_or(filled, |low| low.min(filled)));
        let device_us = (self.config.output_latency_ms * 1000.0) as u64;
        self.call.set_playout_delay_us(fill_us + device_us);
        if filled >= target {
            return;
        }
        let need = (target - filled).min(self.config.ring_capacity as usize - 1 - filled);
        let mut out = core::mem::take(&mut self.play_scratch);
        out.resize(need, 0.0);
        // What is pulled now plays once the ring has played what it holds.
        self.call.play_ahead(now, fill_us, &mut out);
        self.playback.push(&out);
        self.play_scratch = out;
    }

    fn report(&mut self, now: u64) {
        self.bytes.update(now);
        let mut stats = self.call.stats();
        stats.send_bitrate = self.bytes.rates.0;
        stats.receive_bitrate = self.bytes.rates.1;
        stats.reconnects = self.reconnects;
        stats.capture_xruns = self.capture.xruns();
        stats.playback_xruns = self.playback.xruns().saturating_sub(self.xrun_baseline);
        let in_call = matches!(self.state, CallState::InCall | CallState::Reconnecting);
        stats.call_seconds = self
            .in_call_since_us
            .filter(|_| in_call)
            .map_or(0.0, |since| now.saturating_sub(since) as f64 / 1e6);
        let rate = f64::from(self.config.context_rate);
        stats.playback_fill_ms = self.playback_fill_low.take().unwrap_or(0) as f64 * 1e3 / rate;
        stats.playback_target_ms = self.fill.target_ms();
        stats.wake_gap_ms = core::mem::take(&mut self.wake_gap_us) as f64 / 1e3;
        stats.output_latency_ms = self.config.output_latency_ms;
        stats.uplink_backlog_ms = self.uplink.take_peak_backlog_ms();
        let dropped = stats.frames_dropped;
        post(&FromWorker::Stats(Box::new(stats)));
        // Drops on a network judged slow mean the uplink cannot carry this rate; say so, at most
        // every ten drops (a burst or a short stall that reached the cap is no reason to).
        if dropped > self.dropped_reported_at + 10 && self.uplink.is_slow() {
            self.dropped_reported_at = dropped;
            post_error(
                ErrorCode::TooSlow,
                too_slow_message(self.config.wire_rate),
                false,
            );
        }
    }
}

/// Whether this browser has `Atomics.waitAsync` (Chromium 87+, Safari 16.4+, Firefox 145+).
fn has_wait_async() -> bool {
    Reflect::get(&js_sys::global(), &"Atomics".into())
        .and_then(|atomics| Reflect::get(&atomics, &"waitAsync".into()))
        .is_ok_and(|f| f.is_function())
}

/// Runs the engine each time the capture worklet publishes samples (it `Atomics.notify`s the
/// capture ring's write index every 1.9-2.7 ms), so frames leave and the playback ring is topped
/// up on the audio clock, not on a worker timer that browsers clamp to 4 ms and deliver late.
/// Wakes at least every [`WAKE_TIMEOUT_MS`] (a suspended context) for pings and stats; ends
/// with the engine, its hang-up or its fatal stop.
fn follow_audio_clock(me: Weak<RefCell<Engine>>, indices: Int32Array) {
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
            let Some(engine) = me.upgrade() else { return };
            let mut engine = engine.borrow_mut();
            if engine.stopped || engine.hanging_up {
                return;
            }
            engine.on_tick();
        }
    });
}

fn port_fallback(
    capture_port: &JsValue,
    playback_port: &JsValue,
) -> Result<(CaptureSource, PlaybackSink), StartError> {
    let (Some(capture_port), Some(playback_port)) = (
        capture_port.dyn_ref::<MessagePort>(),
        playback_port.dyn_ref::<MessagePort>(),
    ) else {
        return Err((
            ErrorCode::Internal,
            "the page sent no audio ports".to_owned(),
        ));
    };
    let queue = Rc::new(RefCell::new(Vec::new()));
    let sink = queue.clone();
    let on_capture = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Ok(batch) = event.data().dyn_into::<Float32Array>() {
            let mut queue = sink.borrow_mut();
            let start = queue.len();
            queue.resize(start + batch.length() as usize, 0.0);
            batch.copy_to(&mut queue[start..]);
        }
    });
    capture_port.set_onmessage(Some(on_capture.as_ref().unchecked_ref()));
    let played = Rc::new(RefCell::new((0u64, 0u64)));
    let report = played.clone();
    let on_played = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        let at = |i: u32| Reflect::get_u32(&data, i).ok().and_then(|v| v.as_f64());
        if let (Some(consumed), Some(xruns)) = (at(0), at(1)) {
            *report.borrow_mut() = (consumed as u64, xruns as u64);
        }
    });
    playback_port.set_onmessage(Some(on_played.as_ref().unchecked_ref()));
    Ok((
        CaptureSource::Port {
            port: capture_port.clone(),
            queue,
            _on_message: on_capture,
        },
        PlaybackSink::Port {
            port: playback_port.clone(),
            sent: 0,
            played,
            _on_message: on_played,
        },
    ))
}

/// The HTTP status of a plain GET of `url`, or `None` when the server cannot be reached.
async fn fetch_status(url: &str) -> Option<u16> {
    let promise = scope().fetch_with_str(url);
    let response = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let response: Response = response.dyn_into().ok()?;
    Some(response.status())
}
