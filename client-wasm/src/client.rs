//! [`LineClient`]: the page-side facade an app uses to make a call.
//!
//! It owns the AudioContext, the microphone, the two worklet nodes and the engine's Worker, and
//! relays the worker's messages as DOM events. The audio itself never passes through this thread.

use core::fmt;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect};
use line_protocol::join::ParticipantId;
use line_protocol::leaf::{LeafKey, LeafKeyError};
use line_protocol::line_id::LineId;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::{
    AudioContext, AudioContextOptions, AudioNode, AudioWorkletNode, AudioWorkletNodeOptions,
    CustomEvent, CustomEventInit, EventTarget, GainNode, MediaStream, MediaStreamConstraints,
    MediaStreamTrack, MediaTrackConstraints, MessageChannel, MessageEvent, Worker, WorkerOptions,
    WorkerType,
};

use crate::js_ring::JsRing;
use crate::link::{FrameDuration, MAX_RATE, MIN_RATE};
use crate::messages::{
    CallState, ClientState, Coding, EngineConfig, ErrorCode, FromWorker, PlayoutPath, ToWorker,
};
use crate::page::js_error;

/// Seconds of audio each ring holds: far more than the engine keeps in it, so a late worker tick
/// never overflows capture.
const RING_SECONDS: f64 = 0.25;
/// Seconds of wire-rate audio the playback ring holds when it carries frame records.
const RECORD_RING_SECONDS: f64 = 0.5;
/// The playout statistics block: an Int32 sequence number, padding, then the Float64 statistics
/// (`line_playout::stat`).
const PLAYOUT_STATS_BYTES: u32 = 8 + 8 * line_playout::stat::LEN as u32;
/// The state of a client whose call is over.
const ENDED: ClientState = ClientState::Call(CallState::Ended);
/// How long `hangUp()` waits for the worker to say goodbye, milliseconds.
const HANG_UP_TIMEOUT_MS: i32 = 1500;
/// How long the AudioContext may take to start, milliseconds: without an audio output device
/// Firefox keeps it suspended and never settles `resume()`, which left the page starting forever.
const RESUME_TIMEOUT_MS: i32 = 5_000;

#[wasm_bindgen(typescript_custom_section)]
const JOIN_OPTIONS_TS: &str = r#"
/** How to join a line; see docs/CLIENT.md. */
export interface JoinOptions {
  /** The line server's base URL, e.g. "https://line.example" (default: this page's origin). */
  server?: string;
  /** The server's API key (`?apikey=` of the link). */
  apiKey: string;
  /** The leaf key, `leaf_` + 43 characters (the link's fragment). */
  leaf: string;
  /** Wire sample rate in Hz, 8000..=384000 (default 200000). */
  rate?: number;
  /** Frame duration in ms: 2.5, 5, 10 or 20 (default 10). */
  frameMs?: number;
  /** Turn off echo cancellation, noise suppression and auto gain (for headphones). */
  studio?: boolean;
  /** "auto" (default): WebTransport where the browser and the server have it, else a WebSocket;
   *  "websocket": a WebSocket only (for networks that mishandle UDP). */
  transport?: "auto" | "websocket";
  /** "worklet" (default): the audio thread runs the jitter buffer (docs/CLIENT.md); "worker":
   *  the engine's worker runs it and keeps a sample ring filled ahead of the audio thread. */
  playout?: "worker" | "worklet";
  /** "lossless" (default): audio goes out losslessly coded to a peer that reads it (a third to
   *  two fifths of the bytes of PCM at 200 kHz, the same samples); "pcm": raw PCM always. */
  coding?: "lossless" | "pcm";
  /** Base URL of worklet.js and worker.js (default: the page's base URL). */
  assets?: string;
  /** Run the AudioContext at this rate (8000..=384000) instead of the device's own; the engine
   *  resamples to and from the wire rate either way. Default: the device's rate, so that the
   *  wire rate never decides the device latency. */
  contextRate?: number;
}

/** A snapshot of the call's statistics (`LineClient.stats()`, `stats` events). */
export interface LineStats {
  wireRate: number; peerRate: number; contextRate: number; frameMs: number;
  sendBitrate: number; receiveBitrate: number; rttMs: number;
  jitterDepthMs: number; jitterTargetMs: number; arrivalJitterMs: number; driftPpm: number;
  driftErrorPpm: number | null; resampleRatioPpm: number; samplesDropped: number;
  samplesInserted: number; edits: number; mouthToEarMs: number;
  framesSent: number; framesReceived: number; framesLost: number; framesRepaired: number;
  framesSentLossless: number; framesReceivedLossless: number; losslessRatio: number; framesConcealed: number; samplesConcealed: number;
  framesDropped: number; framesDiscarded: number; framesRefused: number; decryptFailures: number; underruns: number;
  playbackXruns: number; captureXruns: number; recordsDropped: number; recordsMalformed: number;
  inputLevel: number; outputLevel: number;
  muted: boolean; reconnects: number; callSeconds: number;
  playbackFillMs: number; playbackTargetMs: number; wakeGapMs: number; outputLatencyMs: number;
  uplinkBacklogMs: number;
  /** What carries the frames: null before the first connection. */
  transport: "webtransport" | "websocket" | null;
}

/** Events: "state" {state}, "peer-joined", "peer-left", "error" {code, message, fatal}, "stats" LineStats. */
export type LineState = "idle" | "starting" | "connecting" | "waiting" | "in-call" | "reconnecting" | "ended";
export type LineEventType = "state" | "peer-joined" | "peer-left" | "error" | "stats";
"#;

#[wasm_bindgen]
extern "C" {
    /// Options of [`LineClient::join`], typed for TypeScript.
    #[wasm_bindgen(typescript_type = "JoinOptions")]
    pub type JoinOptions;
    /// A statistics snapshot, typed for TypeScript.
    #[wasm_bindgen(typescript_type = "LineStats | null")]
    pub type LineStats;
}

/// A call from this page: join a line, then listen for events.
///
/// ```js
/// const client = new LineClient();
/// client.addEventListener('state', (e) => console.log(e.detail.state));
/// await client.join({ apiKey, leaf, rate: 48000, studio: true });
/// client.remoteNode.connect(myAnalyser);
/// ```
#[wasm_bindgen]
pub struct LineClient {
    inner: Rc<Inner>,
}

struct Inner {
    events: EventTarget,
    state: Cell<ClientState>,
    muted: Cell<bool>,
    /// The context's output latency the engine was last told, milliseconds.
    output_latency_ms: Cell<f64>,
    stats: RefCell<JsValue>,
    audio: RefCell<Option<Audio>>,
    worker: RefCell<Option<WorkerLink>>,
    /// Resolved by the worker's next Ready or Closed message.
    waiter: RefCell<Option<Function>>,
}

struct Audio {
    context: AudioContext,
    source: web_sys::MediaStreamAudioSourceNode,
    remote: GainNode,
    stream: MediaStream,
    capture: AudioWorkletNode,
    playback: AudioWorkletNode,
}

struct WorkerLink {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.terminate();
    }
}

impl Drop for Audio {
    fn drop(&mut self) {
        for track in self.stream.get_tracks().iter() {
            track.unchecked_into::<MediaStreamTrack>().stop();
        }
        // Closing returns a promise; nothing waits for it.
        let _ = self.context.close();
    }
}

/// What join reads from its options, checked.
struct Join {
    server: String,
    api_key: String,
    leaf: LeafKey,
    rate: u32,
    frame: FrameDuration,
    studio: bool,
    /// Whether WebTransport may be tried (`transport` is not `"websocket"`).
    webtransport: bool,
    playout: PlayoutPath,
    coding: Coding,
    assets: String,
    /// The AudioContext's rate when it should differ from the device's.
    context_rate: Option<u32>,
}

fn get(options: &JsValue, key: &str) -> JsValue {
    Reflect::get(options, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn base_url() -> String {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.base_uri().ok().flatten())
        .unwrap_or_default()
}

fn resolve(relative: &str, base: &str) -> Result<String, JoinError> {
    web_sys::Url::new_with_base(relative, base)
        .map(|url| url.href())
        .map_err(|_| JoinError::BadAddress(base.to_owned()))
}

/// Why joining failed. Typed here; a JavaScript `Error` with a `code` only at the boundary.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
enum JoinError {
    /// `join` was called twice on one client.
    AlreadyJoined,
    /// No `apiKey`.
    NoApiKey,
    /// No `leaf`.
    NoLeaf,
    /// The leaf does not parse.
    BadLeaf(LeafKeyError),
    /// `rate` outside 8000..=384000 or not whole.
    BadRate(f64),
    /// `frameMs` not 2.5, 5, 10 or 20.
    BadFrame,
    /// `transport` neither `"auto"` nor `"websocket"`.
    BadTransport(String),
    /// `playout` neither `"worker"` nor `"worklet"`.
    BadPlayout(String),
    /// `coding` neither `"lossless"` nor `"pcm"`.
    BadCoding(String),
    /// `server` or `assets` is not a URL.
    BadAddress(String),
    /// No `navigator.mediaDevices` (an insecure page).
    NoMediaDevices,
    /// The person or the browser refused the microphone.
    MicDenied,
    /// No microphone, or none that can open.
    MicMissing,
    /// getUserMedia failed otherwise; the DOMException's name.
    Mic(String),
    /// The audio graph or the worker failed; the browser's message.
    Audio(String),
    /// The AudioContext did not start within [`RESUME_TIMEOUT_MS`] (no output device).
    AudioStuck,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyJoined => f.write_str("this client has already joined"),
            Self::NoApiKey => {
                f.write_str("the link has no API key (?apikey=...); ask for the full link")
            }
            Self::NoLeaf => f.write_str("the link has no leaf key"),
            Self::BadLeaf(e) => write!(f, "the leaf key in the link is malformed: {e}"),
            Self::BadRate(rate) => {
                write!(f, "line supports {MIN_RATE} to {MAX_RATE} Hz, not {rate}")
            }
            Self::BadFrame => f.write_str("frame length must be 2.5, 5, 10 or 20 ms"),
            Self::BadTransport(t) => {
                write!(f, "transport must be \"auto\" or \"websocket\", not {t:?}")
            }
            Self::BadPlayout(p) => {
                write!(f, "playout must be \"worker\" or \"worklet\", not {p:?}")
            }
            Self::BadCoding(c) => {
                write!(f, "coding must be \"lossless\" or \"pcm\", not {c:?}")
            }
            Self::BadAddress(url) => write!(f, "{url:?} is not a web address"),
            Self::NoMediaDevices => {
                f.write_str("this page cannot use a microphone here (it needs https)")
            }
            Self::MicDenied => {
                f.write_str("the microphone is blocked; allow it for this page and try again")
            }
            Self::MicMissing => {
                f.write_str("no usable microphone was found; connect one and try again")
            }
            Self::Mic(name) => write!(f, "the microphone could not start ({name})"),
            Self::Audio(detail) => write!(f, "audio could not start: {detail}"),
            Self::AudioStuck => f.write_str(
                "audio did not start: the browser found no sound output; connect speakers or \
                 headphones (or pick an output device in the system's sound settings) and try \
                 again",
            ),
        }
    }
}

impl JoinError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::AlreadyJoined => ErrorCode::Internal,
            Self::NoApiKey => ErrorCode::NoApiKey,
            Self::NoLeaf => ErrorCode::NoLeaf,
            Self::BadLeaf(_) => ErrorCode::BadLeaf,
            Self::BadRate(_)
            | Self::BadFrame
            | Self::BadTransport(_)
            | Self::BadPlayout(_)
            | Self::BadCoding(_)
            | Self::BadAddress(_) => ErrorCode::BadLink,
            Self::NoMediaDevices | Self::MicMissing => ErrorCode::MicMissing,
            Self::MicDenied => ErrorCode::MicDenied,
            Self::Mic(_) | Self::Audio(_) | Self::AudioStuck => ErrorCode::AudioFailed,
        }
    }

    /// A getUserMedia rejection, by the DOMException's name.
    fn mic(error: &JsValue) -> Self {
        let name = Reflect::get(error, &"name".into())
            .ok()
            .and_then(|n| n.as_string())
            .unwrap_or_default();
        match name.as_str() {
            "NotAllowedError" | "SecurityError" => Self::MicDenied,
            "NotFoundError" | "OverconstrainedError" | "NotReadableError" => Self::MicMissing,
            _ => Self::Mic(name),
        }
    }

    /// A failure of the audio graph or the worker, with the browser's message.
    fn audio(error: JsValue) -> Self {
        let detail = Reflect::get(&error, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_default();
        Self::Audio(detail)
    }
}

impl From<JoinError> for JsValue {
    fn from(error: JoinError) -> Self {
        js_error(error.code(), &error.to_string())
    }
}

impl Join {
    fn read(options: &JsValue) -> Result<Self, JoinError> {
        let text = |key| get(options, key).as_string().filter(|s| !s.is_empty());
        let api_key = text("apiKey").ok_or(JoinError::NoApiKey)?;
        let leaf = text("leaf")
            .ok_or(JoinError::NoLeaf)?
            .parse::<LeafKey>()
            .map_err(JoinError::BadLeaf)?;
        let rate = get(options, "rate").as_f64().unwrap_or(200_000.0);
        if !(f64::from(MIN_RATE)..=f64::from(MAX_RATE)).contains(&rate) || rate.fract() != 0.0 {
            return Err(JoinError::BadRate(rate));
        }
        let frame = FrameDuration::from_millis(get(options, "frameMs").as_f64().unwrap_or(10.0))
            .ok_or(JoinError::BadFrame)?;
        let webtransport = match text("transport").as_deref() {
            None | Some("auto") => true,
            Some("websocket") => false,
            Some(other) => return Err(JoinError::BadTransport(other.to_owned())),
        };
        let playout = match text("playout") {
            None => PlayoutPath::default(),
            Some(name) => PlayoutPath::from_name(&name).ok_or(JoinError::BadPlayout(name))?,
        };
        let coding = match text("coding") {
            None => Coding::default(),
            Some(name) => Coding::from_name(&name).ok_or(JoinError::BadCoding(name))?,
        };
        let context_rate = match get(options, "contextRate").as_f64() {
            None => None,
            Some(r)
                if (f64::from(MIN_RATE)..=f64::from(MAX_RATE)).contains(&r) && r.fract() == 0.0 =>
            {
                Some(r as u32)
            }
            Some(r) => return Err(JoinError::BadRate(r)),
        };
        let origin = web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_default();
        Ok(Self {
            server: text("server").unwrap_or(origin),
            api_key,
            leaf,
            rate: rate as u32,
            frame,
            studio: get(options, "studio").is_truthy(),
            webtransport,
            playout,
            coding,
            assets: text("assets").unwrap_or_else(base_url),
            context_rate,
        })
    }

    /// `(ws_url, check_url)` for this line, as `participant`: the id every connection of this
    /// call presents, so that after a network change the new connection takes its slot back.
    /// The WebTransport session has the same query (docs/PROTOCOL.md section 6.3).
    fn urls(&self, participant: ParticipantId) -> Result<(String, String), JoinError> {
        let url = web_sys::Url::new_with_base("/ws", &self.server)
            .map_err(|_| JoinError::BadAddress(self.server.clone()))?;
        let query = format!(
            "apikey={}&line={}&join={}&participant={participant}",
            String::from(js_sys::encode_uri_component(&self.api_key)),
            self.leaf.line_id(),
            self.leaf.join_token(),
        );
        url.set_search(&query);
        let check = url.href();
        let scheme = if url.protocol() == "https:" {
            "wss:"
        } else {
            "ws:"
        };
        url.set_protocol(scheme);
        Ok((url.href(), check))
    }

    /// Where the server says where its WebTransport endpoint is, unless the person asked for
    /// WebSockets only. The line id lets a proxy that sends each line to one instance send this
    /// question to the instance that relays the line (docs/PROTOCOL.md section 6.3).
    fn webtransport_url(&self) -> Result<Option<String>, JoinError> {
        if !self.webtransport {
            return Ok(None);
        }
        let url = web_sys::Url::new_with_base("/webtransport", &self.server)
            .map_err(|_| JoinError::BadAddress(self.server.clone()))?;
        url.set_search(&format!(
            "apikey={}&line={}",
            String::from(js_sys::encode_uri_component(&self.api_key)),
            self.leaf.line_id(),
        ));
        Ok(Some(url.href()))
    }
}

/// This tab's participant id on `line`. Kept in sessionStorage (this tab only, for its lifetime),
/// so that a reload, say after the network changed under a call, takes the old page's slot back
/// instead of waiting for the relay to time that page's dead socket out.
fn participant_on(line: LineId) -> ParticipantId {
    let key = format!("line-participant-{line}");
    let storage = web_sys::window().and_then(|w| w.session_storage().ok().flatten());
    let kept = storage
        .as_ref()
        .and_then(|s| s.get_item(&key).ok().flatten())
        .and_then(|text| text.parse().ok());
    kept.unwrap_or_else(|| {
        let mut bytes = [0u8; ParticipantId::LEN];
        getrandom::fill(&mut bytes).expect("crypto.getRandomValues is available");
        let id = ParticipantId::from_random(bytes);
        if let Some(storage) = storage {
            // Without storage (a sandboxed frame) the id lives as long as this page.
            let _ = storage.set_item(&key, &id.to_string());
        }
        id
    })
}

/// A context at `rate`, or at the device's own rate (`None`), with the smallest buffer that
/// renders without underruns at the rate it actually runs at (see [`latency_hint`]). The
/// device's rate is known only once a context exists: one that needs the device's default
/// buffer is closed and opened again with it.
fn new_context(rate: Option<u32>) -> Result<AudioContext, JsValue> {
    let open = |hint: JsValue| {
        let options = AudioContextOptions::new();
        options.set_latency_hint(&hint);
        if let Some(rate) = rate {
            options.set_sample_rate(rate as f32);
        }
        AudioContext::new_with_context_options(&options)
    };
    let smallest = open(JsValue::from_f64(0.0))?;
    let actual = smallest.sample_rate() as u32;
    if smallest_buffer_renders(actual) {
        return Ok(smallest);
    }
    let _ = smallest.close();
    open(latency_hint(actual))
}

/// The `latencyHint` for a context running at `rate`: 0 s (the smallest buffer the device
/// allows) up to [`SMALLEST_BUFFER_UP_TO`], else `"interactive"`.
fn latency_hint(rate: u32) -> JsValue {
    if smallest_buffer_renders(rate) {
        JsValue::from_f64(0.0)
    } else {
        "interactive".into()
    }
}

/// The highest context rate at which a render quantum (128 frames) is 2 ms or more.
///
/// Measured with `node e2e/context-latency.mjs` (headless Chromium 156, the 2-core test machine,
/// one context at a time; baseLatency + outputLatency, share of real time rendered, CPU of the
/// audio threads), `latencyHint` 0 against `"interactive"`:
/// - fake output device, 44.1 kHz (its own rate): 2.9 + 9 ms, 100 %, 14 % of a core, against
///   10 + 30 ms, 100 %, 6 %;
/// - PulseAudio null sink, 48 kHz: 2.7 + 35 ms, 98 %, 14 %, against 10.7 + 27 ms, 100 %, 3.5 %;
/// - 192 and 200 kHz (quanta of 0.67 and 0.64 ms): 0.7 + 2 ms but only 95-96 % of real time
///   rendered and 32 % of a core on the fake device (in a call beside a second browser, 89 %:
///   the audio thread starved), against 10 + 30 ms, 100 %, 7-8 %;
/// - 96 kHz: 1.3 + 4 ms, 99.7 %, 17 %, against 10 + 30 ms, 100 %, 6 %.
///
/// So up to 64 kHz the smallest buffer, above it the device's default: what decides is the rate
/// the context runs at, which is the device's, never the wire's.
const SMALLEST_BUFFER_UP_TO: u32 = 64_000;

fn smallest_buffer_renders(rate: u32) -> bool {
    rate <= SMALLEST_BUFFER_UP_TO
}

#[wasm_bindgen]
impl LineClient {
    /// A client that is not in a call yet; add listeners, then call `join`.
    #[wasm_bindgen(constructor)]
    #[must_use]
    pub fn new() -> LineClient {
        LineClient {
            inner: Rc::new(Inner {
                events: EventTarget::new().expect("EventTarget can be constructed"),
                state: Cell::new(ClientState::Idle),
                muted: Cell::new(false),
                output_latency_ms: Cell::new(0.0),
                stats: RefCell::new(JsValue::NULL),
                audio: RefCell::new(None),
                worker: RefCell::new(None),
                waiter: RefCell::new(None),
            }),
        }
    }

    /// Joins a line: starts audio (call it from a click), the microphone and the engine. Resolves
    /// once the engine is connecting; rejects with an `Error` whose `code` says what went wrong
    /// (`no-api-key`, `bad-leaf`, `bad-link`, `mic-denied`, `mic-missing`, `audio-failed`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn join(&self, options: JoinOptions) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if inner.state.get() != ClientState::Idle {
                return Err(JoinError::AlreadyJoined.into());
            }
            inner.set_state(ClientState::Starting);
            let result = inner.clone().start(Join::read(&options)).await;
            if result.is_err() {
                inner.teardown();
                inner.set_state(ENDED);
            }
            result.map(|()| JsValue::UNDEFINED).map_err(JsValue::from)
        })
    }

    /// Mutes (`true`) or unmutes the microphone; the other side hears silence.
    pub fn mute(&self, muted: bool) {
        self.inner.muted.set(muted);
        self.inner.post(&ToWorker::Mute { muted }, None);
    }

    /// Whether the microphone is muted.
    #[wasm_bindgen(getter)]
    pub fn muted(&self) -> bool {
        self.inner.muted.get()
    }

    /// Hangs up: says goodbye to the other side, closes the connection, stops audio.
    #[wasm_bindgen(js_name = hangUp, unchecked_return_type = "Promise<void>")]
    pub fn hang_up(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if inner.worker.borrow().is_some() {
                let closed = inner.wait_for_worker(HANG_UP_TIMEOUT_MS);
                inner.post(&ToWorker::HangUp, None);
                JsFuture::from(closed).await?;
            }
            inner.teardown();
            inner.set_state(ENDED);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The latest statistics (several updates a second), or `null` before the engine runs.
    pub fn stats(&self) -> LineStats {
        self.inner.stats.borrow().clone().unchecked_into()
    }

    /// `idle`, `starting`, `connecting`, `waiting`, `in-call`, `reconnecting` or `ended`.
    #[wasm_bindgen(getter, unchecked_return_type = "LineState")]
    pub fn state(&self) -> String {
        self.inner.state.get().as_str().to_owned()
    }

    /// The call's AudioContext (after `join`), for apps that record or visualize.
    #[wasm_bindgen(getter, js_name = audioContext)]
    pub fn audio_context(&self) -> Option<AudioContext> {
        self.inner
            .audio
            .borrow()
            .as_ref()
            .map(|a| a.context.clone())
    }

    /// The node that carries the other person's audio (connected to the speakers already); connect
    /// it to an analyser or a recorder too.
    #[wasm_bindgen(getter, js_name = remoteNode)]
    pub fn remote_node(&self) -> Option<AudioNode> {
        self.inner
            .audio
            .borrow()
            .as_ref()
            .map(|a| a.remote.clone().unchecked_into())
    }

    /// The node that carries this side's microphone into the call (what the engine captures);
    /// connect it to an analyser or a recorder too.
    #[wasm_bindgen(getter, js_name = localNode)]
    pub fn local_node(&self) -> Option<AudioNode> {
        self.inner
            .audio
            .borrow()
            .as_ref()
            .map(|a| a.source.clone().unchecked_into())
    }

    /// The microphone's stream (after `join`).
    #[wasm_bindgen(getter, js_name = localStream)]
    pub fn local_stream(&self) -> Option<MediaStream> {
        self.inner.audio.borrow().as_ref().map(|a| a.stream.clone())
    }

    /// Listens for `state`, `peer-joined`, `peer-left`, `error` and `stats` events (CustomEvent;
    /// the data is in `event.detail`).
    #[wasm_bindgen(js_name = addEventListener)]
    pub fn add_event_listener(
        &self,
        #[wasm_bindgen(unchecked_param_type = "LineEventType")] kind: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: CustomEvent) => void")] listener: &Function,
    ) -> Result<(), JsValue> {
        self.inner
            .events
            .add_event_listener_with_callback(kind, listener)
    }

    /// Stops listening.
    #[wasm_bindgen(js_name = removeEventListener)]
    pub fn remove_event_listener(&self, kind: &str, listener: &Function) -> Result<(), JsValue> {
        self.inner
            .events
            .remove_event_listener_with_callback(kind, listener)
    }
}

impl Default for LineClient {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    fn set_state(&self, state: ClientState) {
        if self.state.get() == state {
            return;
        }
        self.state.set(state);
        let detail = Object::new();
        let _ = Reflect::set(&detail, &"state".into(), &state.as_str().into());
        self.dispatch("state", &detail);
    }

    fn dispatch(&self, kind: &str, detail: &JsValue) {
        let init = CustomEventInit::new();
        init.set_detail(detail);
        if let Ok(event) = CustomEvent::new_with_event_init_dict(kind, &init) {
            // A listener that throws does not stop the others or the call.
            let _ = self.events.dispatch_event(&event);
        }
    }

    /// Tells the engine when the context's output latency has changed (checked with each stats
    /// message, 10 times a second): Chromium reports `outputLatency` as 0 until the device
    /// runs, so a figure read once at the start would leave tens of milliseconds out of the
    /// mouth-to-ear estimate.
    fn refresh_output_latency(&self) {
        let Some(now) = self
            .audio
            .borrow()
            .as_ref()
            .map(|a| output_latency_ms(&a.context))
        else {
            return;
        };
        if (now - self.output_latency_ms.get()).abs() >= 0.5 {
            self.output_latency_ms.set(now);
            self.post(&ToWorker::OutputLatency { ms: now }, None);
        }
    }

    fn post(&self, message: &ToWorker, extra: Option<(&Object, &Array)>) {
        let Some(link) = &*self.worker.borrow() else {
            return;
        };
        let json = serde_json::to_string(message).expect("worker messages always serialize");
        let (object, transfer) = match extra {
            Some((object, transfer)) => (object.clone(), transfer.clone()),
            None => (Object::new(), Array::new()),
        };
        let _ = Reflect::set(&object, &"json".into(), &json.into());
        let _ = link.worker.post_message_with_transfer(&object, &transfer);
    }

    /// A promise resolved by the worker's next Ready or Closed message, or after `timeout_ms`.
    fn wait_for_worker(&self, timeout_ms: i32) -> Promise {
        let waiter = &self.waiter;
        Promise::new(&mut |resolve, _reject| {
            if let Some(window) = web_sys::window() {
                let _ = window
                    .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, timeout_ms);
            }
            *waiter.borrow_mut() = Some(resolve);
        })
    }

    fn on_worker_message(&self, event: &MessageEvent) {
        let json = Reflect::get(&event.data(), &"json".into())
            .ok()
            .and_then(|j| j.as_string());
        let Some(message) = json.and_then(|j| serde_json::from_str::<FromWorker>(&j).ok()) else {
            return;
        };
        match message {
            FromWorker::Ready | FromWorker::Closed => {
                if let Some(resolve) = self.waiter.borrow_mut().take() {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
            FromWorker::State { state } => {
                // After hanging up or a failed start, a late state from the worker changes nothing.
                if !self.state.get().ended() {
                    self.set_state(ClientState::Call(state));
                }
            }
            FromWorker::PeerJoined => self.dispatch("peer-joined", &JsValue::NULL),
            FromWorker::PeerLeft => self.dispatch("peer-left", &JsValue::NULL),
            FromWorker::Error { .. } | FromWorker::Stats(_) => {
                let detail = message_detail(&message);
                let kind = if matches!(message, FromWorker::Stats(_)) {
                    *self.stats.borrow_mut() = detail.clone();
                    self.refresh_output_latency();
                    "stats"
                } else {
                    "error"
                };
                self.dispatch(kind, &detail);
            }
        }
    }

    fn teardown(&self) {
        self.worker.borrow_mut().take();
        self.audio.borrow_mut().take();
    }

    /// Joins: the microphone, the audio graph, the engine's worker, then its start message.
    async fn start(self: Rc<Self>, join: Result<Join, JoinError>) -> Result<(), JoinError> {
        let join = join?;
        let (ws_url, check_url) = join.urls(participant_on(join.leaf.line_id()))?;
        let webtransport_url = join.webtransport_url()?;
        let worklet_url = resolve("worklet.js", &join.assets)?;
        let worker_url = resolve("worker.js", &join.assets)?;
        let playout = match join.playout {
            PlayoutPath::Worker => None,
            PlayoutPath::Worklet => {
                Some(fetch_bytes(&resolve("pkg/line_playout.wasm", &join.assets)?).await?)
            }
        };
        // The microphone first: its prompt is what a person answers, and a refusal needs no audio.
        let stream = open_microphone(join.studio).await?;
        let rings = self
            .build_audio(stream, join.context_rate, &worklet_url, playout, join.rate)
            .await?;
        self.link_worker(&worker_url).await?;
        let config = EngineConfig {
            ws_url,
            check_url,
            webtransport_url,
            leaf: join.leaf.to_string(),
            wire_rate: join.rate,
            frame_us: join.frame.micros(),
            context_rate: rings.context_rate,
            output_latency_ms: self.output_latency_ms.get(),
            ring_capacity: rings.capacity,
            shared: rings.shared,
            muted: self.muted.get(),
            playout: join.playout,
            coding: join.coding,
        };
        self.post_start(config, &rings)
    }

    /// The AudioContext with the microphone, the two worklet nodes and the rings between them and
    /// the engine, running; kept in `self.audio`.
    async fn build_audio(
        &self,
        stream: MediaStream,
        rate: Option<u32>,
        worklet_url: &str,
        playout: Option<js_sys::ArrayBuffer>,
        wire_rate: u32,
    ) -> Result<Rings, JoinError> {
        let (context, source) = match connect_at(rate, &stream, worklet_url).await {
            Ok(pair) => pair,
            // Firefox 140 will not connect a microphone to a context at another rate than the
            // device's: an app's `contextRate` gives way to the device's.
            Err(_) if rate.is_some() => connect_at(None, &stream, worklet_url)
                .await
                .map_err(JoinError::audio)?,
            Err(error) => return Err(JoinError::audio(error)),
        };
        let context_rate = context.sample_rate() as u32;
        let shared = is_cross_origin_isolated();
        let capacity = (f64::from(context_rate) * RING_SECONDS) as u32 + 1;
        // Frame records are at the wire rate, and the ring must take a burst of them.
        let playback_capacity = match playout {
            Some(_) => (f64::from(wire_rate.max(context_rate)) * RECORD_RING_SECONDS) as u32 + 1,
            None => capacity,
        };
        let rings = Rings {
            capture: JsRing::allocate(capacity, shared).buffer().clone(),
            playback: JsRing::allocate(playback_capacity, shared).buffer().clone(),
            playout_stats: playout
                .as_ref()
                .filter(|_| shared)
                .map(|_| js_sys::SharedArrayBuffer::new(PLAYOUT_STATS_BYTES).into()),
            capacity,
            shared,
            context_rate,
        };
        let ring_or_null = |ring: &Object| {
            if shared {
                ring.clone().into()
            } else {
                JsValue::NULL
            }
        };
        let capture = worklet_node(
            &context,
            "line-capture",
            1,
            &ring_or_null(&rings.capture),
            capacity,
            None,
        )
        .map_err(JoinError::audio)?;
        let playback = worklet_node(
            &context,
            "line-playback",
            0,
            &ring_or_null(&rings.playback),
            playback_capacity,
            playout
                .as_ref()
                .map(|module| (module, rings.playout_stats.as_ref())),
        )
        .map_err(JoinError::audio)?;
        let remote = context.create_gain().map_err(JoinError::audio)?;
        source
            .connect_with_audio_node(&capture)
            .map_err(JoinError::audio)?;
        // The capture node outputs silence; connecting it keeps the graph pulling it.
        capture
            .connect_with_audio_node(&context.destination())
            .map_err(JoinError::audio)?;
        playback
            .connect_with_audio_node(&remote)
            .map_err(JoinError::audio)?;
        remote
            .connect_with_audio_node(&context.destination())
            .map_err(JoinError::audio)?;
        // Held from here, so that a failure below (teardown) stops the microphone and closes
        // the context.
        *self.audio.borrow_mut() = Some(Audio {
            context: context.clone(),
            source,
            remote,
            stream,
            capture,
            playback,
        });
        let resumed = context.resume().map_err(JoinError::audio)?;
        if within(resumed, RESUME_TIMEOUT_MS)
            .await
            .map_err(JoinError::audio)?
            .is_none()
        {
            return Err(JoinError::AudioStuck);
        }
        self.output_latency_ms.set(output_latency_ms(&context));
        Ok(rings)
    }

    /// Starts the engine's worker and waits until its module has loaded.
    async fn link_worker(self: &Rc<Self>, worker_url: &str) -> Result<(), JoinError> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(worker_url, &options).map_err(JoinError::audio)?;
        let me = Rc::downgrade(self);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(inner) = me.upgrade() {
                inner.on_worker_message(&event);
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let ready = self.wait_for_worker(10_000);
        *self.worker.borrow_mut() = Some(WorkerLink {
            worker,
            _on_message: on_message,
        });
        JsFuture::from(ready).await.map_err(JoinError::audio)?;
        Ok(())
    }

    /// Posts the engine its start message with the rings, or without shared memory one end of a
    /// channel per worklet node (the node gets the other end).
    fn post_start(&self, config: EngineConfig, rings: &Rings) -> Result<(), JoinError> {
        let extra = Object::new();
        let transfer = Array::new();
        if rings.shared {
            let _ = Reflect::set(&extra, &"capture".into(), &rings.capture);
            let _ = Reflect::set(&extra, &"playback".into(), &rings.playback);
            if let Some(stats) = &rings.playout_stats {
                let _ = Reflect::set(&extra, &"playoutStats".into(), stats);
            }
        } else {
            let audio = self.audio.borrow();
            let audio = audio.as_ref().ok_or_else(|| {
                JoinError::Audio("the audio graph went away while joining".to_owned())
            })?;
            for (node, name) in [
                (&audio.capture, "capturePort"),
                (&audio.playback, "playbackPort"),
            ] {
                let channel = MessageChannel::new().map_err(JoinError::audio)?;
                let to_node = Object::new();
                let _ = Reflect::set(&to_node, &"port".into(), &channel.port1());
                node.port()
                    .and_then(|port| {
                        port.post_message_with_transferable(&to_node, &Array::of1(&channel.port1()))
                    })
                    .map_err(JoinError::audio)?;
                let _ = Reflect::set(&extra, &name.into(), &channel.port2());
                transfer.push(&channel.port2());
            }
        }
        self.post(&ToWorker::Start(config), Some((&extra, &transfer)));
        Ok(())
    }
}

/// The rings between the worklet nodes and the engine, for the engine's start message.
struct Rings {
    capture: Object,
    playback: Object,
    /// The block the playback worklet reports its playout in (shared memory, worklet playout).
    playout_stats: Option<Object>,
    /// Slots in each ring.
    capacity: u32,
    /// Whether they are `SharedArrayBuffer`s (else MessagePorts carry the audio).
    shared: bool,
    /// The AudioContext's rate, which the rings run at.
    context_rate: u32,
}

/// The bytes at `url` (the playout module, which the playback worklet compiles itself: its scope
/// has no `fetch`).
async fn fetch_bytes(url: &str) -> Result<js_sys::ArrayBuffer, JoinError> {
    let window = web_sys::window().ok_or_else(|| JoinError::Audio("no window".to_owned()))?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(JoinError::audio)?
        .unchecked_into();
    if !response.ok() {
        return Err(JoinError::Audio(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    let bytes = JsFuture::from(response.array_buffer().map_err(JoinError::audio)?)
        .await
        .map_err(JoinError::audio)?;
    Ok(bytes.unchecked_into())
}

/// What `promise` settles to, or `None` when it has not settled within `ms` milliseconds.
async fn within(promise: Promise, ms: i32) -> Result<Option<JsValue>, JsValue> {
    let timed_out: JsValue = Object::new().into();
    let marker = timed_out.clone();
    let timer = Promise::new(&mut |resolve, _reject| {
        if let Some(window) = web_sys::window() {
            let _ =
                window.set_timeout_with_callback_and_timeout_and_arguments_1(&resolve, ms, &marker);
        }
    });
    let settled = JsFuture::from(Promise::race(&Array::of2(&promise, &timer))).await?;
    Ok((settled != timed_out).then_some(settled))
}

fn message_detail(message: &FromWorker) -> JsValue {
    // Stats are the `LineStats` fields; errors `{type, code, message, fatal}`.
    let json = match message {
        FromWorker::Stats(stats) => serde_json::to_string(stats),
        _ => serde_json::to_string(message),
    }
    .expect("worker messages always serialize");
    js_sys::JSON::parse(&json).unwrap_or(JsValue::NULL)
}

/// The context's `baseLatency + outputLatency`, milliseconds. Not every browser reports these; a
/// missing one counts as zero in the estimate.
///
/// Firefox's `outputLatency` is left unread. Its getter asks the audio server for the stream's
/// latency synchronously while it holds the audio graph's lock; when the server is inside an
/// audio callback at that moment (the callback waits for that lock) the page's main thread
/// never returns. Firefox 153 on PulseAudio did this in most 200 kHz joins: the first read,
/// right after `resume()`, froze the page before it could connect.
fn output_latency_ms(context: &AudioContext) -> f64 {
    let latency = |name: &str| {
        Reflect::get(context, &name.into())
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let output = if is_gecko() {
        0.0
    } else {
        latency("outputLatency")
    };
    1000.0 * (latency("baseLatency") + output)
}

/// Whether the page runs in Firefox's engine: only Gecko names itself `Gecko/<date>` in its user
/// agent; Chromium and WebKit say `like Gecko`. Read once: the statistics ask ten times a second.
fn is_gecko() -> bool {
    static GECKO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GECKO.get_or_init(|| {
        web_sys::window()
            .and_then(|w| w.navigator().user_agent().ok())
            .is_some_and(|agent| agent.contains("Gecko/"))
    })
}

fn is_cross_origin_isolated() -> bool {
    let global = js_sys::global();
    let isolated = Reflect::get(&global, &"crossOriginIsolated".into())
        .map(|v| v.is_truthy())
        .unwrap_or(false);
    let has_sab = Reflect::get(&global, &"SharedArrayBuffer".into())
        .map(|v| v.is_function())
        .unwrap_or(false);
    isolated && has_sab
}

async fn open_microphone(studio: bool) -> Result<MediaStream, JoinError> {
    let devices = web_sys::window()
        .and_then(|w| w.navigator().media_devices().ok())
        .ok_or(JoinError::NoMediaDevices)?;
    let track = MediaTrackConstraints::new();
    let processing = JsValue::from_bool(!studio);
    track.set_echo_cancellation(&processing);
    track.set_noise_suppression(&processing);
    track.set_auto_gain_control(&processing);
    track.set_channel_count(&1.into());
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio(&track);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|e| JoinError::mic(&e))?;
    let stream = JsFuture::from(promise)
        .await
        .map_err(|e| JoinError::mic(&e))?;
    Ok(stream.unchecked_into())
}

/// A running context at `rate` (or the device's), with the worklet loaded and the microphone
/// connected to a source node.
async fn connect_at(
    rate: Option<u32>,
    stream: &MediaStream,
    worklet_url: &str,
) -> Result<(AudioContext, web_sys::MediaStreamAudioSourceNode), JsValue> {
    let context = new_context(rate)?;
    let loaded = async {
        JsFuture::from(context.audio_worklet()?.add_module(worklet_url)?).await?;
        context.create_media_stream_source(stream)
    }
    .await;
    match loaded {
        Ok(source) => Ok((context, source)),
        Err(error) => {
            let _ = context.close();
            Err(error)
        }
    }
}

fn worklet_node(
    context: &AudioContext,
    name: &str,
    inputs: u32,
    ring: &JsValue,
    capacity: u32,
    playout: Option<(&js_sys::ArrayBuffer, Option<&Object>)>,
) -> Result<AudioWorkletNode, JsValue> {
    let processor = Object::new();
    let _ = Reflect::set(&processor, &"ring".into(), ring);
    let _ = Reflect::set(&processor, &"capacity".into(), &capacity.into());
    if let Some((module, stats)) = playout {
        let _ = Reflect::set(&processor, &"playout".into(), module);
        if let Some(stats) = stats {
            let _ = Reflect::set(&processor, &"stats".into(), stats);
        }
    }
    let options = AudioWorkletNodeOptions::new();
    options.set_number_of_inputs(inputs);
    options.set_number_of_outputs(1);
    options.set_output_channel_count(&Array::of1(&1.into()));
    options.set_processor_options(Some(&processor));
    if inputs > 0 {
        options.set_channel_count(1);
        options.set_channel_count_mode(web_sys::ChannelCountMode::Explicit);
    }
    AudioWorkletNode::new_with_options(context, name, &options)
}
