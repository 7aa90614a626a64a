//! Messages between the page (`LineClient`) and the engine's worker.
//!
//! Each message is a JavaScript object `{ json: "<one of these enums as JSON>", ...buffers }`: the
//! JSON carries everything typed, the extra fields carry what JSON cannot (the shared ring buffers or
//! a MessagePort, only in [`ToWorker::Start`]). See docs/CLIENT.md.

use serde::{Deserialize, Serialize};

/// What the engine needs to start a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// `ws(s)://host/ws?apikey=...&line=...`.
    pub ws_url: String,
    /// The same address over http(s), fetched after a failed connect to learn the server's status.
    pub check_url: String,
    /// `http(s)://host/webtransport?apikey=...&line=...`, where the server says where its WebTransport
    /// endpoint listens; `None` for WebSocket only (the link asks for it, or the browser has no
    /// WebTransport).
    #[serde(default)]
    pub webtransport_url: Option<String>,
    /// The leaf key's text form (`leaf_...`). It crosses only to our own worker.
    pub leaf: String,
    /// Wire sample rate this side sends, Hz.
    pub wire_rate: u32,
    /// Frame duration, microseconds.
    pub frame_us: u32,
    /// The AudioContext's rate, Hz (equals `wire_rate` unless the browser refused that rate).
    pub context_rate: u32,
    /// The context's base plus output latency, milliseconds, for the mouth-to-ear estimate.
    pub output_latency_ms: f64,
    /// Ring slots per direction.
    pub ring_capacity: u32,
    /// Whether the rings are shared memory (`false`: MessagePort fallback).
    pub shared: bool,
    /// Start muted.
    pub muted: bool,
    /// Where the other side's audio is played out from.
    #[serde(default)]
    pub playout: PlayoutPath,
    /// How this side writes its audio frames.
    #[serde(default)]
    pub coding: Coding,
}

/// Where the jitter buffer runs (the link's `&playout=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayoutPath {
    /// The worker runs it and keeps a sample ring filled ahead of the audio thread.
    Worker,
    /// The playback worklet runs it; the worker hands it frame records (`line-playout`).
    #[default]
    Worklet,
}

impl PlayoutPath {
    /// The link's and the API's name (`worker`, `worklet`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Worklet => "worklet",
        }
    }

    /// The path named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "worker" => Some(Self::Worker),
            "worklet" => Some(Self::Worklet),
            _ => None,
        }
    }
}

/// How a side writes its audio frames (the link's `&coding=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    /// Losslessly coded (`line_protocol::lossless`) to a peer whose Hello says it reads coded
    /// audio, raw PCM to any other: the same samples in a third to two fifths of the bytes at
    /// 200 kHz.
    #[default]
    Lossless,
    /// Always raw PCM: for comparison, or for a peer that misreads coded audio.
    Pcm,
}

impl Coding {
    /// The link's and the API's name (`lossless`, `pcm`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Lossless => "lossless",
            Self::Pcm => "pcm",
        }
    }

    /// The coding named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "lossless" => Some(Self::Lossless),
            "pcm" => Some(Self::Pcm),
            _ => None,
        }
    }
}

/// What carries the call's frames to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket (TCP): every browser, every network that passes HTTPS.
    WebSocket,
    /// WebTransport over HTTP/3 (UDP), frames as datagrams: a lost packet costs one frame.
    WebTransport,
}

impl Transport {
    /// The name used in the stats (`websocket`, `webtransport`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::WebTransport => "webtransport",
        }
    }
}

/// From the page to the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ToWorker {
    /// Start the call; the message object also carries `capture` and `playback` buffers, or `port`.
    Start(EngineConfig),
    /// Send silence instead of the microphone (`true`) or the microphone again.
    Mute {
        /// Whether to mute.
        muted: bool,
    },
    /// Say goodbye to the other side, close the socket, then answer [`FromWorker::Closed`].
    HangUp,
    /// The context's `baseLatency + outputLatency` changed, milliseconds: browsers report the
    /// output part only once the device runs, often after the call started.
    OutputLatency {
        /// The new figure.
        ms: f64,
    },
}

/// The call's state as a person sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CallState {
    /// Connecting to the server for the first time.
    Connecting,
    /// On the line, alone.
    Waiting,
    /// The other person is there.
    InCall,
    /// The connection was lost; trying again.
    Reconnecting,
    /// Hung up, or stopped by an error that retrying cannot fix.
    Ended,
}

impl CallState {
    /// The name used in events and on the page (`in-call`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Waiting => "waiting",
            Self::InCall => "in-call",
            Self::Reconnecting => "reconnecting",
            Self::Ended => "ended",
        }
    }
}

/// Where a `LineClient` is: before its engine runs, then the engine's call state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Made, not joined.
    Idle,
    /// Joining: the microphone, the audio graph and the worker are starting.
    Starting,
    /// The engine runs (or has ended).
    Call(CallState),
}

impl ClientState {
    /// The name used in `state` events and `LineClient.state` (`idle`, `in-call`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Starting => "starting",
            Self::Call(state) => state.as_str(),
        }
    }

    /// Whether the call is over: hung up, failed to start, or stopped by the engine.
    #[must_use]
    pub fn ended(self) -> bool {
        self == Self::Call(CallState::Ended)
    }
}

/// From the worker to the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FromWorker {
    /// The wasm module is loaded in the worker; it waits for [`ToWorker::Start`].
    Ready,
    /// The call's state changed.
    State {
        /// The new state.
        state: CallState,
    },
    /// The other person arrived.
    PeerJoined,
    /// The other person left.
    PeerLeft,
    /// Something a person should know; `fatal` errors end the call.
    Error {
        /// A stable code for scripts (see [`ErrorCode`]).
        code: ErrorCode,
        /// A sentence for a person.
        message: String,
        /// Whether the engine stopped.
        fatal: bool,
    },
    /// A fresh snapshot of the statistics, several times a second.
    Stats(Box<Stats>),
    /// The socket is closed after [`ToWorker::HangUp`]; the worker can be terminated.
    Closed,
}

/// Stable error codes, shown on the page as `data-code` and in `error` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The link has no leaf key.
    NoLeaf,
    /// The leaf key in the link is malformed.
    BadLeaf,
    /// A link parameter is wrong.
    BadLink,
    /// The link has no API key.
    NoApiKey,
    /// The server refused the API key (401).
    ApiKeyRefused,
    /// The server refused the line id (400).
    BadLine,
    /// The server refused this page's origin (403).
    OriginRefused,
    /// Two people are already on this line (409).
    LineFull,
    /// The line is in use by people with another link: a wrong join token (423).
    LineTaken,
    /// Another connection with this call's participant id took its place on the line (4409).
    TakenOver,
    /// Too many failed attempts from here (429).
    TooManyAttempts,
    /// Nobody else joined within the server's waiting limit (close code 4410); fatal, and the
    /// page offers to wait again.
    WaitedTooLong,
    /// The person refused the microphone.
    MicDenied,
    /// There is no microphone.
    MicMissing,
    /// Audio could not start (AudioContext, worklet).
    AudioFailed,
    /// Every frame from the other side fails decryption.
    CannotDecrypt,
    /// The other side sends audio this page cannot play (another channel count or rate).
    UnsupportedAudio,
    /// The uplink cannot carry this rate; frames are being dropped.
    TooSlow,
    /// The server cannot be reached.
    ServerUnreachable,
    /// The server closed the connection with an error of its own.
    ServerError,
    /// The engine failed unexpectedly (a bug).
    Internal,
}

/// What the stats panel and `LineClient.stats()` show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// This side's wire rate, Hz.
    pub wire_rate: u32,
    /// The rate the other side declares, Hz (0 before its first frame).
    pub peer_rate: u32,
    /// The AudioContext's rate, Hz.
    pub context_rate: u32,
    /// Frame duration, milliseconds.
    pub frame_ms: f64,
    /// Bits per second sent, over the last second (WebSocket payload bytes).
    pub send_bitrate: f64,
    /// Bits per second received, over the last second.
    pub receive_bitrate: f64,
    /// Round-trip time of the last encrypted Ping/Pong, milliseconds (0 before the first).
    pub rtt_ms: f64,
    /// Audio waiting in the jitter buffer, milliseconds.
    pub jitter_depth_ms: f64,
    /// The jitter buffer's current target, milliseconds.
    pub jitter_target_ms: f64,
    /// Arrival jitter the jitter buffer estimates, milliseconds.
    pub arrival_jitter_ms: f64,
    /// The other side's clock against ours as the jitter buffer measured it, ppm (positive: the
    /// other side runs fast), whether or not it is acted on yet.
    pub drift_ppm: f64,
    /// The standard error of `drift_ppm`, ppm (`None`, `null` in JSON, until measured).
    pub drift_error_ppm: Option<f64>,
    /// How much faster than nominal the other side's audio plays to follow its clock, ppm:
    /// exactly 0 unless a drift is measured, and then that drift. Latency is never adjusted
    /// by playing faster or slower.
    pub resample_ratio_ppm: f64,
    /// Samples of the other side's audio (at its rate) dropped: by edits that bring the
    /// jitter buffer's delay down to its target, and after a stall.
    pub samples_dropped: u64,
    /// Samples of the other side's audio played twice by edits that bring the delay up.
    pub samples_inserted: u64,
    /// Edits: pieces of audio dropped or played twice to hold the delay at its target.
    pub edits: u64,
    /// Estimated mouth-to-ear latency of the last received frame, milliseconds.
    pub mouth_to_ear_ms: f64,
    /// Audio frames sent.
    pub frames_sent: u64,
    /// Audio frames received and decrypted.
    pub frames_received: u64,
    /// Audio frames never received (gaps in the sender's sample index) and not rebuilt.
    pub frames_lost: u64,
    /// Of the audio frames sent, those losslessly coded (the other side reads coded audio).
    pub frames_sent_lossless: u64,
    /// Of the audio frames received, those losslessly coded.
    pub frames_received_lossless: u64,
    /// Coded bytes over raw PCM bytes of the coded frames sent (0 before any).
    pub lossless_ratio: f64,
    /// Audio frames lost on the way and rebuilt from the others and a repair frame (on
    /// WebTransport datagrams).
    pub frames_repaired: u64,
    /// Frames' worth of audio the jitter buffer made up (rounded up over the call: a
    /// concealment shorter than a frame may not move it; `samples_concealed` always does).
    pub frames_concealed: u64,
    /// Samples of the other side's audio (at its rate) the jitter buffer made up, for a
    /// frame that never came or came too late.
    pub samples_concealed: u64,
    /// Outgoing frames dropped because the uplink could not keep up.
    pub frames_dropped: u64,
    /// Incoming frames the jitter buffer discarded (late, duplicate, or to catch up).
    pub frames_discarded: u64,
    /// Authentic audio frames this side cannot play (more than one channel, a rate outside what
    /// the protocol allows): counted, and reported once as `unsupported-audio`.
    pub frames_refused: u64,
    /// Frames from the other side that failed decryption.
    pub decrypt_failures: u64,
    /// Frames refused as replays (a counter seen before) or as our own frames reflected back.
    pub replays: u64,
    /// Jitter-buffer underruns.
    pub underruns: u64,
    /// Samples the audio thread found missing in the playback ring since the call started.
    pub playback_xruns: u64,
    /// Samples the audio thread could not put in the full capture ring.
    pub capture_xruns: u64,
    /// Playout on the audio thread: decrypted frames lost on their way to it, because the
    /// playback ring had no room (the audio thread stalled); the playout conceals them.
    pub records_dropped: u64,
    /// Playout on the audio thread: words in the playback ring that were no frame record,
    /// dropped unplayed (a bug if ever non-zero).
    pub records_malformed: u64,
    /// Input level, 0..1 (peak over the last interval).
    pub input_level: f32,
    /// Output level, 0..1.
    pub output_level: f32,
    /// Whether the microphone is muted.
    pub muted: bool,
    /// Reconnections so far.
    pub reconnects: u32,
    /// Seconds since the other person joined (0 when not in a call).
    pub call_seconds: f64,
    /// Lowest playback-ring fill the engine found when it woke, over the last interval,
    /// milliseconds: how close the audio thread came to starving.
    pub playback_fill_ms: f64,
    /// The playback-ring fill the engine keeps, milliseconds.
    pub playback_target_ms: f64,
    /// Longest time between two engine wake-ups over the last interval, milliseconds.
    pub wake_gap_ms: f64,
    /// The AudioContext's `baseLatency + outputLatency`, milliseconds.
    pub output_latency_ms: f64,
    /// Most audio the socket still held from earlier wakes when the engine woke, over the last
    /// interval, milliseconds: how far the uplink lags.
    pub uplink_backlog_ms: f64,
    /// What carries the frames now, or carried them last (`null` before the first connection).
    pub transport: Option<Transport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_states_have_the_names_of_the_js_api() {
        let names: Vec<&str> = [
            ClientState::Idle,
            ClientState::Starting,
            ClientState::Call(CallState::Connecting),
            ClientState::Call(CallState::Waiting),
            ClientState::Call(CallState::InCall),
            ClientState::Call(CallState::Reconnecting),
            ClientState::Call(CallState::Ended),
        ]
        .into_iter()
        .map(ClientState::as_str)
        .collect();
        assert_eq!(
            names,
            [
                "idle",
                "starting",
                "connecting",
                "waiting",
                "in-call",
                "reconnecting",
                "ended"
            ]
        );
        assert!(ClientState::Call(CallState::Ended).ended());
        assert!(!ClientState::Idle.ended());
    }

    #[test]
    fn messages_have_stable_wire_names() {
        let json = serde_json::to_string(&FromWorker::State {
            state: CallState::InCall,
        })
        .unwrap();
        assert_eq!(json, r#"{"type":"state","state":"in-call"}"#);
        let json = serde_json::to_string(&FromWorker::Error {
            code: ErrorCode::ApiKeyRefused,
            message: "m".into(),
            fatal: true,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"error","code":"api-key-refused","message":"m","fatal":true}"#
        );
        let back: ToWorker = serde_json::from_str(r#"{"type":"mute","muted":true}"#).unwrap();
        assert_eq!(back, ToWorker::Mute { muted: true });
        let latency: ToWorker =
            serde_json::from_str(r#"{"type":"output-latency","ms":42.5}"#).unwrap();
        assert_eq!(latency, ToWorker::OutputLatency { ms: 42.5 });
        assert_eq!(CallState::Reconnecting.as_str(), "reconnecting");
    }

    #[test]
    fn stats_survive_the_trip_to_the_page() {
        // The page parses what the worker sends: a value JSON cannot carry (an infinite or NaN
        // float is written as null) would make it drop every stats message.
        let stats = Stats {
            drift_error_ppm: None,
            ..Stats::default()
        };
        let json = serde_json::to_string(&FromWorker::Stats(Box::new(stats.clone()))).unwrap();
        assert!(json.contains("\"driftErrorPpm\":null"));
        let back: FromWorker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, FromWorker::Stats(Box::new(stats)));
    }

    #[test]
    fn stats_use_camel_case_for_javascript() {
        let json = serde_json::to_string(&Stats::default()).unwrap();
        assert!(json.contains("\"mouthToEarMs\":0.0"));
        assert!(json.contains("\"decryptFailures\":0"));
        assert!(json.contains("\"transport\":null"));
        let json = serde_json::to_string(&Stats {
            transport: Some(Transport::WebTransport),
            ..Stats::default()
        })
        .unwrap();
        assert!(json.contains("\"transport\":\"webtransport\""));
        assert_eq!(
            serde_json::to_string(&Transport::WebSocket).unwrap(),
            format!("\"{}\"", Transport::WebSocket.as_str())
        );
    }
}
