//! The engine's decisions, sans-IO: what to do about the socket, the server's answers, the
//! playback ring and the page, given what happened and when.
//!
//! [`Engine`] wraps the [`Call`] (frames and samples) with the policy around it: when to connect
//! and reconnect (with backoff), what each close code and HTTP status means for the call, when
//! the watchdog gives a socket up, how full to keep the playback ring, and when stats and notices
//! go to the page. It reads no clock, opens no socket and draws no randomness: the worker passes
//! `now` (microseconds of wall clock) and a random seed in, moves bytes and samples, and does what
//! [`Engine::poll_output`] says, like str0m's `Input`/`Output`. Its one timer is a deadline the
//! worker reads with [`Engine::poll_timeout`] and reports back with [`Engine::handle_timeout`].
//!
//! ```
//! use line_client::engine::{Engine, Output};
//! use line_client::messages::{CallState, EngineConfig, FromWorker, Transport};
//!
//! let config = EngineConfig {
//!     ws_url: "ws://127.0.0.1:7777/ws".into(),
//!     check_url: "http://127.0.0.1:7777/ws".into(),
//!     webtransport_url: None,
//!     leaf: "leaf_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".into(),
//!     wire_rate: 48_000,
//!     frame_us: 10_000,
//!     context_rate: 48_000,
//!     output_latency_ms: 0.0,
//!     ring_capacity: 12_001,
//!     shared: true,
//!     muted: false,
//!     playout: line_client::messages::PlayoutPath::Worker,
//!     coding: line_client::messages::Coding::Lossless,
//! };
//! let mut engine = Engine::new(&config, 0, 7).expect("a good config");
//! let state = FromWorker::State { state: CallState::Connecting };
//! assert_eq!(engine.poll_output(), Some(Output::Page(state)));
//! assert_eq!(engine.poll_output(), Some(Output::Connect(Transport::WebSocket)));
//! // The socket fails before it opens: the engine asks the server why.
//! engine.handle_close(1_000_000, 1006);
//! assert_eq!(
//!     engine.poll_output(),
//!     Some(Output::Page(FromWorker::State { state: CallState::Reconnecting }))
//! );
//! assert_eq!(engine.poll_output(), Some(Output::CheckStatus));
//! ```

use std::collections::VecDeque;
use std::fmt;

use line_protocol::audio::{FrameDuration, rate_is_supported};
use line_protocol::control::{RelayMessage, close_code};
use line_protocol::join::status;
use line_protocol::leaf::{LeafKey, LeafKeyError};
use line_protocol::webtransport::MAX_DATAGRAM_FRAME_LEN;

use crate::call::{Call, CallConfig, CallEvent, Outgoing, frame_within};
use crate::liveness::{Liveness, Verdict};
use crate::messages::{CallState, EngineConfig, ErrorCode, FromWorker, PlayoutPath, Transport};
use crate::playback_fill::PlaybackFill;
use crate::uplink::{Uplink, too_slow_message};

/// How often stats go to the page, microseconds.
pub const STATS_INTERVAL_US: u64 = 100_000;
/// Reconnect delays grow from this, doubling, microseconds...
pub const BACKOFF_START_US: u64 = 500_000;
/// ...up to this.
pub const BACKOFF_MAX_US: u64 = 8_000_000;
/// How long to wait after the server says too many attempts came from here (429), microseconds.
pub const TOO_MANY_RETRY_US: u64 = 30_000_000;
/// Refused upgrades (with the plain check passing) before the page hears that the server refuses.
pub const REFUSALS_BEFORE_NOTICE: u32 = 3;
/// New outgoing drops that make the engine say again that the uplink is too slow.
pub const DROPS_PER_NOTICE: u64 = 10;
/// How long a WebTransport session may take to be ready before the engine falls back to a
/// WebSocket, milliseconds (the worker races it; UDP that is blocked never answers).
pub const WEBTRANSPORT_READY_MS: u32 = 2_000;
/// The close code of a connection that ended without one (a browser's 1006).
const ABNORMAL_CLOSE: u16 = 1006;

/// The delay before reconnect attempt `attempt` (0 for the first): 0.5, 1, 2, 4, 8, 8 ... s,
/// plus `jitter` (0..1) of a quarter more, so two sides cut off together do not retry in lockstep.
#[must_use]
pub fn backoff_us(attempt: u32, jitter: f64) -> u64 {
    let base = (BACKOFF_START_US << attempt.min(8)).min(BACKOFF_MAX_US);
    (base as f64 * (1.0 + 0.25 * jitter.clamp(0.0, 1.0))) as u64
}

/// Why the engine cannot start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// The leaf key does not parse.
    BadLeaf(LeafKeyError),
    /// The frame duration is not one the protocol allows.
    BadFrame {
        /// What the page asked for, microseconds.
        frame_us: u32,
    },
    /// A sample rate outside what the protocol allows.
    BadRate {
        /// The rate asked for, Hz.
        rate: u32,
    },
    /// No shared rings and no MessagePorts for the audio.
    NoAudioPorts,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLeaf(e) => write!(f, "{e}"),
            Self::BadFrame { frame_us } => write!(f, "unsupported frame length ({frame_us} µs)"),
            Self::BadRate { rate } => write!(f, "unsupported sample rate ({rate} Hz)"),
            Self::NoAudioPorts => f.write_str("the page sent no audio ports"),
        }
    }
}

impl std::error::Error for StartError {}

impl StartError {
    /// The code the page shows.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadLeaf(_) => ErrorCode::BadLeaf,
            Self::BadFrame { .. } | Self::BadRate { .. } => ErrorCode::BadLink,
            Self::NoAudioPorts => ErrorCode::Internal,
        }
    }
}

/// What the worker must do, in order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Open a new connection to the line over this transport, then report
    /// [`Engine::handle_open`], or [`Engine::handle_close`] (a WebSocket) or
    /// [`Engine::handle_webtransport_failed`] (a WebTransport session that did not become ready
    /// within [`WEBTRANSPORT_READY_MS`]).
    Connect(Transport),
    /// Give the current socket up at once: remove its handlers and close it, so that no late
    /// event of it (a 4409 once the next socket takes the slot back) reaches the engine.
    DropSocket,
    /// Close the current socket with this code, after sending what is queued.
    Close {
        /// The WebSocket close code (on WebTransport, the session's close code).
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
    /// The socket failed before it opened, which hides the server's HTTP status: ask with a
    /// plain `GET` of the check URL and report [`Engine::handle_check`].
    CheckStatus,
    /// Post this to the page.
    Page(FromWorker),
}

/// What the worker found when it woke.
#[derive(Clone, Copy, Debug)]
pub struct Wake<'a> {
    /// Samples the capture ring held, oldest first; the last was captured about now.
    pub captured: &'a [f32],
    /// Samples the audio thread could not put in the full capture ring, in all.
    pub capture_xruns: u64,
    /// Samples waiting in the playback ring.
    pub playback_filled: usize,
    /// Samples the audio thread found missing in the playback ring, in all.
    pub playback_xruns: u64,
    /// Bytes the open socket still held from earlier wakes (`bufferedAmount`), before anything
    /// is sent at this wake; `None` while no socket is open, and on WebTransport, whose
    /// datagrams the browser drops rather than queues when the path is full.
    pub socket_buffered: Option<u64>,
}

/// Where the current socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Socket {
    None,
    Connecting,
    Open,
}

/// Whether the engine still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Running,
    /// Bye sent, the socket closing; the page hears `closed` when it has.
    HangingUp,
    /// Stopped by an error retrying cannot fix.
    Stopped,
}

/// Bits per second each way, over about the last second.
#[derive(Debug, Default)]
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

/// One side of a call with its policy; see the [module docs](self).
pub struct Engine {
    call: Call,
    wire_rate: u32,
    context_rate: u32,
    ring_capacity: usize,
    output_latency_ms: f64,
    liveness: Liveness,
    fill: PlaybackFill,
    /// Whether the playback worklet plays out (frame records) rather than this engine (samples).
    worklet: bool,
    /// Whether the socket keeps up with the audio, judged over time.
    uplink: Uplink,
    socket: Socket,
    /// What the current (or pending) connection uses.
    connecting: Transport,
    /// The frame the link asks for, and the one datagrams carry (`None`: the wire rate has no
    /// frame that fits one, or WebTransport is not to be tried).
    link_frame: FrameDuration,
    datagram_frame: Option<FrameDuration>,
    /// Whether a WebTransport session failed to become ready in this call: its reconnects then
    /// go straight to a WebSocket rather than wait for UDP again.
    webtransport_failed: bool,
    /// What carried the frames of the last connection that opened, for the stats.
    transport: Option<Transport>,
    /// The code of the relay's last `error` message on this connection: WebTransport reports no
    /// close code of the relay's, so this says why the relay ended the session.
    relay_error: Option<u16>,
    run: Run,
    state: CallState,
    /// When to connect again, if a reconnect is due.
    reconnect_at: Option<u64>,
    /// Reconnect attempts since the last socket opened.
    attempts: u32,
    /// Failed upgrades in a row whose plain check passed.
    refused_upgrades: u32,
    reconnects: u32,
    ever_open: bool,
    /// State of the backoff jitter's generator (xorshift64*; never zero).
    random: u64,
    outputs: VecDeque<Output>,
    play_scratch: Vec<f32>,
    /// Lowest playback-ring fill seen at a wake since the last stats, samples.
    playback_fill_low: Option<usize>,
    /// Playback xruns at the last wake, and when the call started.
    playback_xruns: u64,
    xrun_baseline: u64,
    /// When the engine last woke, and the longest gap between wakes since the last stats.
    last_wake_us: Option<u64>,
    wake_gap_us: u64,
    in_call_since_us: Option<u64>,
    next_stats_us: u64,
    bytes: Bitrate,
    cannot_decrypt_said: bool,
    dropped_said_at: u64,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("call", &self.call)
            .field("state", &self.state)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for the call `config` describes, at `now_us`, already asking to connect. `seed`
    /// (random) spreads the reconnect delays.
    pub fn new(config: &EngineConfig, now_us: u64, seed: u64) -> Result<Self, StartError> {
        let leaf: LeafKey = config.leaf.parse().map_err(StartError::BadLeaf)?;
        let frame = FrameDuration::from_micros(config.frame_us).ok_or(StartError::BadFrame {
            frame_us: config.frame_us,
        })?;
        for rate in [config.wire_rate, config.context_rate] {
            if !rate_is_supported(rate) {
                return Err(StartError::BadRate { rate });
            }
        }
        let mut call = Call::new(
            CallConfig {
                wire_rate: config.wire_rate,
                frame,
                context_rate: config.context_rate,
            },
            leaf,
        );
        call.set_muted(config.muted);
        call.set_coding(config.coding);
        let worklet = config.playout == PlayoutPath::Worklet;
        if worklet {
            call.play_in_worklet();
        }
        let datagram_frame = config
            .webtransport_url
            .as_ref()
            .and_then(|_| frame_within(config.wire_rate, frame, MAX_DATAGRAM_FRAME_LEN));
        let mut engine = Self {
            call,
            worklet,
            wire_rate: config.wire_rate,
            context_rate: config.context_rate,
            ring_capacity: config.ring_capacity as usize,
            output_latency_ms: config.output_latency_ms,
            liveness: Liveness::new(),
            fill: PlaybackFill::default(),
            uplink: Uplink::new(config.wire_rate, config.frame_us),
            socket: Socket::None,
            connecting: Transport::WebSocket,
            link_frame: frame,
            datagram_frame,
            webtransport_failed: false,
            transport: None,
            relay_error: None,
            run: Run::Running,
            state: CallState::Connecting,
            reconnect_at: None,
            attempts: 0,
            refused_upgrades: 0,
            reconnects: 0,
            ever_open: false,
            random: seed | 1,
            outputs: VecDeque::new(),
            play_scratch: Vec::new(),
            playback_fill_low: None,
            playback_xruns: 0,
            xrun_baseline: 0,
            last_wake_us: None,
            wake_gap_us: 0,
            in_call_since_us: None,
            next_stats_us: 0,
            bytes: Bitrate::default(),
            cannot_decrypt_said: false,
            dropped_said_at: 0,
        };
        engine.page(FromWorker::State {
            state: CallState::Connecting,
        });
        engine.connect(now_us);
        Ok(engine)
    }

    /// The next thing the worker must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the engine next needs [`Engine::handle_timeout`], microseconds.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.reconnect_at
    }

    /// Whether the engine still runs: after a hang-up or a fatal error the worker stops waking it.
    #[must_use]
    pub fn running(&self) -> bool {
        self.run == Run::Running
    }

    /// The call's state as the page shows it.
    #[must_use]
    pub fn state(&self) -> CallState {
        self.state
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.call.poll_transmit()
    }

    /// `frame` went out (or was dropped): its buffer carries a later frame.
    pub fn recycle(&mut self, frame: Outgoing) {
        self.call.recycle(frame);
    }

    /// The worker sent `bytes` bytes on the socket.
    pub fn sent(&mut self, bytes: usize) {
        self.bytes.sent += bytes as u64;
    }

    /// Whether an audio frame may go out while the socket holds `buffered` bytes unsent, as
    /// the [`Uplink`] judges it (a slow network told from a bursty sender). The worker drops a
    /// frame it may not send and says so with [`Engine::dropped_outgoing`]; control frames
    /// always go.
    #[must_use]
    pub fn admits_audio(&self, buffered: u64) -> bool {
        self.uplink.admits_audio(buffered)
    }

    /// The worker could not send `frame`, an audio or repair frame, because the uplink is behind.
    pub fn dropped_outgoing(&mut self, frame: &Outgoing) {
        self.call.dropped_outgoing(frame);
    }

    /// Send silence (`true`) or the microphone.
    pub fn set_muted(&mut self, muted: bool) {
        self.call.set_muted(muted);
    }

    /// The context's `baseLatency + outputLatency` changed, milliseconds.
    pub fn set_output_latency(&mut self, ms: f64) {
        if ms.is_finite() && ms >= 0.0 {
            self.output_latency_ms = ms;
        }
    }

    /// The deadline of [`Engine::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now_us: u64) {
        if self.reconnect_at.is_some_and(|at| now_us >= at) {
            self.reconnect_at = None;
            if self.running() && self.socket == Socket::None {
                self.connect(now_us);
            }
        }
    }

    /// Asks for a new connection: over WebTransport when the server may offer it and it has not
    /// failed in this call, else over a WebSocket.
    fn connect(&mut self, now_us: u64) {
        let transport = if self.datagram_frame.is_some() && !self.webtransport_failed {
            Transport::WebTransport
        } else {
            Transport::WebSocket
        };
        self.socket = Socket::Connecting;
        self.connecting = transport;
        self.relay_error = None;
        self.liveness.connecting(now_us);
        self.outputs.push_back(Output::Connect(transport));
    }

    /// The WebTransport session asked for did not become ready (no WebTransport at the server,
    /// UDP blocked, a refusal, or [`WEBTRANSPORT_READY_MS`] passed): connect over a WebSocket
    /// at once, and for the rest of the call. A refusal (a wrong key, a full line) then comes
    /// back on the WebSocket with its reason.
    pub fn handle_webtransport_failed(&mut self, now_us: u64) {
        if self.socket != Socket::Connecting || self.connecting != Transport::WebTransport {
            return;
        }
        self.webtransport_failed = true;
        if self.running() {
            self.connect(now_us);
        } else {
            self.socket = Socket::None;
            self.page(FromWorker::Closed);
        }
    }

    /// The socket the worker opened for [`Output::Connect`] could not even be created: its
    /// address is not valid.
    pub fn handle_connect_error(&mut self) {
        self.socket = Socket::None;
        self.fatal(ErrorCode::Internal, "the server address is not valid");
    }

    /// The socket opened; `kid` is a fresh random 64-bit key id for this connection.
    pub fn handle_open(&mut self, now_us: u64, kid: u64) {
        if self.socket != Socket::Connecting {
            return;
        }
        self.socket = Socket::Open;
        self.transport = Some(self.connecting);
        let frame = match self.connecting {
            Transport::WebTransport => self.datagram_frame.unwrap_or(self.link_frame),
            Transport::WebSocket => self.link_frame,
        };
        self.call.set_frame(frame);
        // Datagrams may be lost, TCP segments are not.
        self.call
            .set_repair(self.connecting == Transport::WebTransport);
        self.uplink = Uplink::new(self.wire_rate, frame.micros());
        self.liveness.opened();
        if self.ever_open {
            self.reconnects += 1;
        }
        self.ever_open = true;
        self.attempts = 0;
        self.refused_upgrades = 0;
        self.call.connected(now_us, kid);
    }

    /// The playback worklet's statistics (`line_playout::stat`), read at `now_us`: its playout
    /// and how far it has rendered, which maps this clock to the audio clock.
    pub fn handle_worklet_report(&mut self, now_us: u64, stats: &[f64]) {
        self.call.worklet_report(now_us, stats);
    }

    /// `records` frame records from [`Self::take_records`] found no room in the playback ring.
    pub fn handle_records_dropped(&mut self, records: u64) {
        self.call.records_dropped(records);
    }

    /// Frame records for the playback worklet, written since the last call (the caller empties
    /// it); `None` when there are none, or this engine plays out itself.
    pub fn take_records(&mut self) -> Option<&mut Vec<f32>> {
        self.call.take_records()
    }

    /// A binary message arrived: an SFrame frame from the other person.
    pub fn handle_frame(&mut self, now_us: u64, frame: &[u8]) {
        self.liveness.heard(now_us, true);
        self.bytes.received += frame.len() as u64;
        self.call.receive(now_us, frame);
        if self.call.cannot_decrypt() && !self.cannot_decrypt_said {
            self.cannot_decrypt_said = true;
            self.notice(
                ErrorCode::CannotDecrypt,
                "cannot decrypt the other side — check that you both use the same link",
            );
        }
        self.handle_call_events(now_us);
    }

    /// A text message arrived: the relay's JSON.
    pub fn handle_text(&mut self, now_us: u64, text: &str) {
        self.liveness.heard(now_us, false);
        let message = RelayMessage::from_json(text);
        if let Ok(RelayMessage::Error { code, .. }) = &message {
            self.relay_error = Some(*code);
        }
        match message {
            Ok(RelayMessage::Waiting) => {
                self.liveness.in_call(now_us, false);
                self.set_state(now_us, CallState::Waiting);
            }
            Ok(RelayMessage::PeerJoined) => {
                self.liveness.in_call(now_us, true);
                self.call.peer_joined();
                self.cannot_decrypt_said = false;
                self.page(FromWorker::PeerJoined);
                self.set_state(now_us, CallState::InCall);
            }
            Ok(RelayMessage::PeerLeft) => {
                self.liveness.in_call(now_us, false);
                self.call.peer_left();
                self.in_call_since_us = None;
                self.page(FromWorker::PeerLeft);
                self.set_state(now_us, CallState::Waiting);
            }
            // The close that follows says it, as a fatal error.
            Ok(RelayMessage::Error { code, .. })
                if code == close_code::WAITED_TOO_LONG || code == close_code::TAKEN_OVER => {}
            Ok(RelayMessage::Error { code, reason }) => self.notice(
                ErrorCode::ServerError,
                format!("the server closed the connection ({code}): {reason}"),
            ),
            // A message type from a newer relay is ignored: the protocol's forward-compatible rule.
            Ok(_) | Err(_) => {}
        }
    }

    /// The current WebTransport session ended. Browsers do not report the relay's close code
    /// (it closes the QUIC connection, not the session), so the code is the one of the relay's
    /// `error` record before it, or 1006 (lost) without one.
    pub fn handle_ended(&mut self, now_us: u64) {
        let code = self.relay_error.take().unwrap_or(ABNORMAL_CLOSE);
        self.handle_close(now_us, code);
    }

    /// The current socket closed with `code` (1006 when it never opened).
    pub fn handle_close(&mut self, now_us: u64, code: u16) {
        let opened = match self.socket {
            Socket::None => return,
            Socket::Connecting => false,
            Socket::Open => true,
        };
        self.socket = Socket::None;
        self.call.disconnected();
        self.liveness.closed();
        if !self.running() {
            self.page(FromWorker::Closed);
            return;
        }
        if opened && code == close_code::TAKEN_OVER {
            // Another connection with this call's participant id took the slot: a duplicate of
            // this tab that joined, or someone who saw this call's WebSocket address. This
            // engine's own reconnects drop the old socket first, so it never sees its own 4409.
            // Reconnecting would take the slot back and forth.
            self.fatal(
                ErrorCode::TakenOver,
                "this call went on in another window or device that took your place on the line",
            );
            return;
        }
        self.set_state(now_us, CallState::Reconnecting);
        if !opened {
            self.outputs.push_back(Output::CheckStatus);
            return;
        }
        if code == close_code::WAITED_TOO_LONG {
            // Nobody came for hours: stop here rather than hold a line open forever; the page
            // offers to wait again.
            self.fatal(
                ErrorCode::WaitedTooLong,
                "nobody else joined this call for a long time, so the server stopped waiting",
            );
            return;
        }
        if [
            close_code::TOO_BIG,
            close_code::MALFORMED,
            close_code::UNSUPPORTED_DATA,
        ]
        .contains(&code)
        {
            self.notice(
                ErrorCode::ServerError,
                format!("the server refused what this page sent ({code})"),
            );
        }
        self.schedule_reconnect(now_us, None);
    }

    /// The HTTP status of the plain `GET` that [`Output::CheckStatus`] asked for, or `None` when
    /// the server could not be reached.
    pub fn handle_check(&mut self, now_us: u64, answer: Option<u16>) {
        if !self.running() || self.socket != Socket::None {
            return;
        }
        match answer {
            Some(status::API_KEY_REFUSED) => self.fatal(
                ErrorCode::ApiKeyRefused,
                "this server did not accept the API key in the link",
            ),
            Some(status::ORIGIN_REFUSED) => self.fatal(
                ErrorCode::OriginRefused,
                "this server does not accept calls from this page's address",
            ),
            // Our own slot would have been ours to take back: after a disconnect, somebody else
            // took it, and they may leave again.
            Some(status::LINE_FULL) if self.ever_open => {
                self.notice(
                    ErrorCode::LineFull,
                    "two other people are on this line now; trying again",
                );
                self.schedule_reconnect(now_us, None);
            }
            Some(status::LINE_FULL) => self.fatal(
                ErrorCode::LineFull,
                "two people are already on this line; if one of them is you in another tab, \
                 hang up there first, or ask for a new link",
            ),
            Some(status::WRONG_TOKEN) => self.fatal(
                ErrorCode::LineTaken,
                "someone without this link's key is holding this line, so the server will not \
                 let the call in; make a new call link and share it again",
            ),
            Some(status::TOO_MANY) => {
                self.notice(
                    ErrorCode::TooManyAttempts,
                    "too many failed attempts from this network; trying again later",
                );
                self.schedule_reconnect(now_us, Some(TOO_MANY_RETRY_US));
            }
            None => {
                self.notice(
                    ErrorCode::ServerUnreachable,
                    "the server cannot be reached; trying again",
                );
                self.schedule_reconnect(now_us, None);
            }
            // The checks passed (400/426 for the missing upgrade, or 5xx): something between here
            // and the server refuses WebSockets (a proxy without upgrade headers, say), or the
            // server is busy. Keep trying, and say so after a few.
            Some(code) => {
                self.refused_upgrades += 1;
                if self.refused_upgrades == REFUSALS_BEFORE_NOTICE {
                    self.notice(
                        ErrorCode::ServerError,
                        format!(
                            "the server keeps refusing the connection (HTTP {code}); trying again"
                        ),
                    );
                }
                self.schedule_reconnect(now_us, None);
            }
        }
    }

    /// Says goodbye to the other side and closes the socket; the page hears `closed` once it
    /// has closed (at once without a socket, or after a fatal error).
    pub fn hang_up(&mut self, now_us: u64) {
        match self.run {
            Run::Running => {}
            // Already closing: its close says `closed`.
            Run::HangingUp => return,
            Run::Stopped => {
                self.page(FromWorker::Closed);
                return;
            }
        }
        self.run = Run::HangingUp;
        self.reconnect_at = None;
        self.call.hang_up();
        match self.socket {
            Socket::None => self.page(FromWorker::Closed),
            Socket::Connecting | Socket::Open => self.outputs.push_back(Output::Close {
                code: close_code::NORMAL,
                reason: "hang up",
            }),
        }
        self.set_state(now_us, CallState::Ended);
    }

    /// The worker woke at `now_us` (on the audio clock, or its timer): moves captured audio into
    /// the call, checks the watchdog and the timer, and returns the samples to append to the
    /// playback ring.
    pub fn handle_wake(&mut self, now_us: u64, wake: Wake<'_>) -> &[f32] {
        self.play_scratch.clear();
        if !self.running() {
            return &self.play_scratch;
        }
        if let Some(last) = self.last_wake_us {
            self.wake_gap_us = self.wake_gap_us.max(now_us.saturating_sub(last));
        }
        self.last_wake_us = Some(now_us);
        // Samples the ring could not give the device since the last wake: the audio after
        // them plays that much later, a step the jitter buffer must not take for drift.
        let gap = wake.playback_xruns.saturating_sub(self.playback_xruns);
        self.playback_xruns = wake.playback_xruns;
        if !self.worklet {
            self.call.output_gap(gap);
        }
        self.call.capture(now_us, wake.captured);
        self.call.tick(now_us);
        if let Some(buffered) = wake.socket_buffered.filter(|_| self.socket == Socket::Open) {
            self.uplink.woke(now_us, buffered);
        }
        self.handle_timeout(now_us);
        if let Some(verdict) = self.liveness.poll(now_us) {
            self.give_up_socket(now_us, verdict);
        }
        self.handle_call_events(now_us);
        if self.worklet {
            // Nothing waits between the worklet's jitter buffer and the device but the device.
            let device_us = (self.output_latency_ms * 1000.0) as u64;
            self.call.set_playout(now_us, 0, device_us);
        } else {
            self.top_up(now_us, wake.playback_filled);
        }
        if now_us >= self.next_stats_us {
            self.next_stats_us = now_us + STATS_INTERVAL_US;
            self.report(now_us, wake.capture_xruns);
        }
        &self.play_scratch
    }

    /// How many captured samples the audio thread should gather before it wakes the worker (0:
    /// at every render quantum). With the playout on the audio thread a wake only moves
    /// capture, so the worker sleeps until the next frame can leave (100 wakes a second with
    /// 10 ms frames, where every quantum is 345-375); on the worker's path it tops up the
    /// playback ring at every quantum.
    #[must_use]
    pub fn wake_after(&self) -> usize {
        if self.worklet {
            self.call.capture_wanted()
        } else {
            0
        }
    }

    fn handle_call_events(&mut self, now_us: u64) {
        while let Some(event) = self.call.poll_event() {
            match event {
                // The relay's peer-left follows; nothing to do before it.
                CallEvent::Bye => {}
                CallEvent::AudioRefused {
                    channels,
                    sample_rate,
                } => self.notice(
                    ErrorCode::UnsupportedAudio,
                    format!(
                        "the other side sends audio this page cannot play \
                         ({channels} channels at {sample_rate} Hz)"
                    ),
                ),
                // A new connection draws a new KID: at once, like after silence.
                CallEvent::SenderSpent => self.give_up_socket(now_us, Verdict::Silent),
            }
        }
    }

    /// Drops a socket the engine gave up on and connects again: at once after silence in a call
    /// (this call's participant id takes its slot back), with backoff after a slow open.
    fn give_up_socket(&mut self, now_us: u64, verdict: Verdict) {
        if self.socket == Socket::None {
            return;
        }
        self.socket = Socket::None;
        self.outputs.push_back(Output::DropSocket);
        self.call.disconnected();
        self.liveness.closed();
        self.set_state(now_us, CallState::Reconnecting);
        match verdict {
            Verdict::Silent => self.schedule_reconnect(now_us, Some(0)),
            _ => self.schedule_reconnect(now_us, None),
        }
    }

    fn schedule_reconnect(&mut self, now_us: u64, delay_us: Option<u64>) {
        let delay = delay_us.unwrap_or_else(|| {
            let jitter = self.next_random();
            backoff_us(self.attempts, jitter)
        });
        self.attempts += 1;
        self.reconnect_at = Some(now_us + delay);
    }

    /// A number in 0..1 from the seeded generator (xorshift64*): it only spreads retry times.
    fn next_random(&mut self) -> f64 {
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Keeps the playback ring at the fill [`PlaybackFill`] asks for.
    fn top_up(&mut self, now_us: u64, filled: usize) {
        let rate = f64::from(self.context_rate);
        let fill_us = (filled as f64 * 1e6 / rate) as u64;
        self.fill.set_call(self.in_call_since_us);
        let target_ms = self
            .fill
            .update(now_us, fill_us as f64 / 1e3, self.playback_xruns);
        let target = (target_ms * rate / 1000.0) as usize;
        self.playback_fill_low = Some(self.playback_fill_low.map_or(filled, |low| low.min(filled)));
        if filled < target {
            let room = self.ring_capacity.saturating_sub(1 + filled);
            self.play_scratch.resize((target - filled).min(room), 0.0);
            // What is pulled now plays once the ring has played what it holds.
            self.call
                .play_ahead(now_us, fill_us, &mut self.play_scratch);
        }
        // Audio that arrives before the next wake waits for the ring as it is now, topped up.
        let ring_us = ((filled + self.play_scratch.len()) as f64 * 1e6 / rate) as u64;
        let device_us = (self.output_latency_ms * 1000.0) as u64;
        self.call.set_playout(now_us, ring_us, device_us);
    }

    fn report(&mut self, now_us: u64, capture_xruns: u64) {
        self.bytes.update(now_us);
        let mut stats = self.call.stats();
        stats.send_bitrate = self.bytes.rates.0;
        stats.receive_bitrate = self.bytes.rates.1;
        stats.reconnects = self.reconnects;
        stats.capture_xruns = capture_xruns;
        stats.playback_xruns = self.playback_xruns.saturating_sub(self.xrun_baseline);
        let in_call = matches!(self.state, CallState::InCall | CallState::Reconnecting);
        stats.call_seconds = self
            .in_call_since_us
            .filter(|_| in_call)
            .map_or(0.0, |since| now_us.saturating_sub(since) as f64 / 1e6);
        let rate = f64::from(self.context_rate);
        stats.playback_fill_ms = self.playback_fill_low.take().unwrap_or(0) as f64 * 1e3 / rate;
        // No sample ring when the worklet plays out.
        stats.playback_target_ms = if self.worklet {
            0.0
        } else {
            self.fill.target_ms()
        };
        stats.wake_gap_ms = core::mem::take(&mut self.wake_gap_us) as f64 / 1e3;
        stats.output_latency_ms = self.output_latency_ms;
        stats.uplink_backlog_ms = self.uplink.take_peak_backlog_ms();
        stats.transport = self.transport;
        let dropped = stats.frames_dropped;
        self.page(FromWorker::Stats(Box::new(stats)));
        // Drops on a network judged slow mean the uplink cannot carry this rate; say so, at most
        // every ten drops (a burst or a short stall that reached the cap is no reason to).
        if dropped > self.dropped_said_at + DROPS_PER_NOTICE && self.uplink.is_slow() {
            self.dropped_said_at = dropped;
            self.notice(ErrorCode::TooSlow, too_slow_message(self.wire_rate));
        }
    }

    fn set_state(&mut self, now_us: u64, state: CallState) {
        if self.state == state {
            return;
        }
        self.state = state;
        match state {
            // The call timer runs on through a reconnect; it restarts when the other person
            // leaves.
            CallState::InCall => {
                self.xrun_baseline = self.playback_xruns;
                self.in_call_since_us.get_or_insert(now_us);
            }
            CallState::Ended => self.in_call_since_us = None,
            // Waiting after a reconnect is not the end of the call: `peer-left` is.
            _ => {}
        }
        self.page(FromWorker::State { state });
    }

    fn stop(&mut self) {
        self.run = Run::Stopped;
        self.reconnect_at = None;
        if self.socket != Socket::None {
            self.socket = Socket::None;
            self.outputs.push_back(Output::DropSocket);
        }
        if self.state != CallState::Ended {
            self.state = CallState::Ended;
            self.in_call_since_us = None;
            self.page(FromWorker::State {
                state: CallState::Ended,
            });
        }
    }

    fn page(&mut self, message: FromWorker) {
        self.outputs.push_back(Output::Page(message));
    }

    fn notice(&mut self, code: ErrorCode, message: impl Into<String>) {
        self.page(FromWorker::Error {
            code,
            message: message.into(),
            fatal: false,
        });
    }

    fn fatal(&mut self, code: ErrorCode, message: &str) {
        self.page(FromWorker::Error {
            code,
            message: message.to_owned(),
            fatal: true,
        });
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use crate::messages::{Coding, Stats};
    use line_protocol::leaf::LeafKey;

    use super::*;

    const RATE: u32 = 48_000;
    const FRAME: usize = 480;
    const LEAF: &str = "leaf_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const S: u64 = 1_000_000;

    fn config() -> EngineConfig {
        EngineConfig {
            ws_url: "ws://line.test/ws".into(),
            check_url: "http://line.test/ws".into(),
            webtransport_url: None,
            leaf: LEAF.into(),
            wire_rate: RATE,
            frame_us: 10_000,
            context_rate: RATE,
            output_latency_ms: 10.0,
            ring_capacity: RATE / 4 + 1,
            shared: true,
            muted: false,
            playout: PlayoutPath::Worker,
            coding: Coding::Lossless,
        }
    }

    fn drain(engine: &mut Engine) -> Vec<Output> {
        std::iter::from_fn(|| engine.poll_output()).collect()
    }

    /// An engine whose first socket is open at `now`.
    fn open_engine(now: u64) -> Engine {
        let mut engine = Engine::new(&config(), now, 0x5eed).expect("a good config");
        assert_eq!(
            drain(&mut engine).last(),
            Some(&Output::Connect(Transport::WebSocket))
        );
        engine.handle_open(now, 0xA);
        engine
    }

    fn state(state: CallState) -> Output {
        Output::Page(FromWorker::State { state })
    }

    fn error(code: ErrorCode, fatal: bool) -> impl Fn(&Output) -> bool {
        move |o| {
            matches!(o, Output::Page(FromWorker::Error { code: c, fatal: f, .. })
                if *c == code && *f == fatal)
        }
    }

    /// The other person's call, and `engine` in a call with it: both Hellos crossed.
    fn in_call(engine: &mut Engine, now: u64) -> Call {
        engine.handle_text(now, r#"{"type":"peer-joined"}"#);
        let mut peer = Call::new(
            CallConfig {
                wire_rate: RATE,
                frame: FrameDuration::Ms10,
                context_rate: RATE,
            },
            LEAF.parse::<LeafKey>().expect("the test leaf"),
        );
        peer.connected(now, 0xB);
        peer.peer_joined();
        while let Some(out) = peer.poll_transmit() {
            engine.handle_frame(now, &out.bytes);
        }
        while let Some(out) = engine.poll_transmit() {
            peer.receive(now, &out.bytes);
        }
        drain(engine);
        peer
    }

    /// A wake with nothing captured, the playback ring full, and `buffered` bytes in the socket.
    fn wake_buffered(engine: &mut Engine, now: u64, buffered: u64) {
        engine.handle_wake(
            now,
            Wake {
                captured: &[],
                capture_xruns: 0,
                playback_filled: 1_000_000,
                playback_xruns: 0,
                socket_buffered: Some(buffered),
            },
        );
    }

    fn wake(engine: &mut Engine, now: u64, captured: &[f32], filled: usize) -> usize {
        engine
            .handle_wake(
                now,
                Wake {
                    captured,
                    capture_xruns: 0,
                    playback_filled: filled,
                    playback_xruns: 0,
                    socket_buffered: None,
                },
            )
            .len()
    }

    #[test]
    fn backoff_doubles_to_eight_seconds_with_up_to_a_quarter_more() {
        let delays: Vec<u64> = (0..7).map(|a| backoff_us(a, 0.0)).collect();
        assert_eq!(
            delays,
            [
                500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 8_000_000, 8_000_000
            ]
        );
        assert_eq!(backoff_us(0, 1.0), 625_000);
        assert_eq!(backoff_us(u32::MAX, 1.0), 10_000_000);
        assert_eq!(backoff_us(2, 7.0), backoff_us(2, 1.0), "jitter is clamped");
    }

    #[test]
    fn a_burst_passes_and_an_uplink_that_never_drains_is_judged_slow() {
        let mut engine = open_engine(0);
        drain(&mut engine);
        // 48 kHz mono: 96 bytes a millisecond. A burst of 60 ms is no verdict...
        assert!(engine.admits_audio(5_760));
        // ...but a backlog above 30 ms at every wake for a quarter of a second is.
        for step in 0..=100u64 {
            wake_buffered(&mut engine, step * 2_500, 5_760);
        }
        assert!(!engine.admits_audio(2_881));
        assert!(engine.admits_audio(2_880));
        // A new connection starts the judgement again.
        engine.handle_close(300_000, 1006);
        engine.handle_timeout(10_000_000);
        engine.handle_open(10_000_000, 2);
        assert!(engine.admits_audio(5_760));
    }

    #[test]
    fn a_bad_start_is_a_typed_error_with_its_code() {
        let mut bad = config();
        bad.leaf = "leaf_short".into();
        let error = Engine::new(&bad, 0, 1).unwrap_err();
        assert!(matches!(error, StartError::BadLeaf(_)));
        assert_eq!(error.code(), ErrorCode::BadLeaf);
        let mut bad = config();
        bad.frame_us = 7_000;
        let error = Engine::new(&bad, 0, 1).unwrap_err();
        assert_eq!(error, StartError::BadFrame { frame_us: 7_000 });
        assert_eq!(error.code(), ErrorCode::BadLink);
        let mut bad = config();
        bad.context_rate = 1_000_000;
        assert_eq!(
            Engine::new(&bad, 0, 1).unwrap_err(),
            StartError::BadRate { rate: 1_000_000 }
        );
        assert_eq!(
            StartError::NoAudioPorts.to_string(),
            "the page sent no audio ports"
        );
    }

    #[test]
    fn a_lost_connection_reconnects_after_a_growing_delay() {
        let mut engine = open_engine(0);
        engine.handle_close(10 * S, 1006);
        assert_eq!(drain(&mut engine), [state(CallState::Reconnecting)]);
        let at = engine.poll_timeout().expect("a reconnect is due");
        assert!((10 * S + 500_000..=10 * S + 625_000).contains(&at), "{at}");
        engine.handle_timeout(at - 1);
        assert_eq!(drain(&mut engine), []);
        engine.handle_timeout(at);
        assert_eq!(drain(&mut engine), [Output::Connect(Transport::WebSocket)]);
        assert_eq!(engine.poll_timeout(), None);
        // That one fails before opening: ask the server why; unreachable, so the next delay is
        // twice as long.
        engine.handle_close(at + 1, 1006);
        assert_eq!(drain(&mut engine), [Output::CheckStatus]);
        engine.handle_check(at + 2, None);
        let outputs = drain(&mut engine);
        assert!(
            outputs
                .iter()
                .any(error(ErrorCode::ServerUnreachable, false)),
            "{outputs:?}"
        );
        let next = engine.poll_timeout().expect("a reconnect is due") - (at + 2);
        assert!((S..=1_250_000).contains(&next), "{next}");
        // Opening resets the backoff and counts a reconnect.
        engine.handle_timeout(at + 2 + next);
        engine.handle_open(at + 3 + next, 0xA2);
        engine.handle_close(at + 4 + next, close_code::GOING_AWAY);
        let again = engine.poll_timeout().expect("due") - (at + 4 + next);
        assert!(again <= 625_000, "{again}");
        assert_eq!(engine.reconnects, 1);
    }

    #[test]
    fn close_codes_decide_between_stopping_telling_and_retrying() {
        // (code, the error it gives, whether the engine goes on)
        let cases = [
            (
                close_code::TAKEN_OVER,
                Some((ErrorCode::TakenOver, true)),
                false,
            ),
            (
                close_code::WAITED_TOO_LONG,
                Some((ErrorCode::WaitedTooLong, true)),
                false,
            ),
            (
                close_code::TOO_BIG,
                Some((ErrorCode::ServerError, false)),
                true,
            ),
            (
                close_code::MALFORMED,
                Some((ErrorCode::ServerError, false)),
                true,
            ),
            (
                close_code::UNSUPPORTED_DATA,
                Some((ErrorCode::ServerError, false)),
                true,
            ),
            (close_code::IDLE, None, true),
            (close_code::GOING_AWAY, None, true),
            (1006, None, true),
        ];
        for (code, expected, goes_on) in cases {
            let mut engine = open_engine(0);
            drain(&mut engine);
            engine.handle_close(S, code);
            let outputs = drain(&mut engine);
            let errors: Vec<(ErrorCode, bool)> = outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Page(FromWorker::Error { code, fatal, .. }) => Some((*code, *fatal)),
                    _ => None,
                })
                .collect();
            assert_eq!(
                errors,
                expected.into_iter().collect::<Vec<_>>(),
                "code {code}"
            );
            assert_eq!(engine.running(), goes_on, "code {code}");
            assert_eq!(engine.poll_timeout().is_some(), goes_on, "code {code}");
            let ended = outputs.contains(&state(CallState::Ended));
            assert_eq!(ended, !goes_on, "code {code}: {outputs:?}");
        }
    }

    #[test]
    fn refused_upgrades_are_explained_by_their_http_status() {
        // (status, ever open before, the error, whether the engine goes on)
        let cases = [
            (
                Some(status::API_KEY_REFUSED),
                false,
                Some((ErrorCode::ApiKeyRefused, true)),
                false,
            ),
            (
                Some(status::ORIGIN_REFUSED),
                false,
                Some((ErrorCode::OriginRefused, true)),
                false,
            ),
            (
                Some(status::LINE_FULL),
                false,
                Some((ErrorCode::LineFull, true)),
                false,
            ),
            (
                Some(status::LINE_FULL),
                true,
                Some((ErrorCode::LineFull, false)),
                true,
            ),
            (
                Some(status::WRONG_TOKEN),
                false,
                Some((ErrorCode::LineTaken, true)),
                false,
            ),
            (
                Some(status::TOO_MANY),
                false,
                Some((ErrorCode::TooManyAttempts, false)),
                true,
            ),
            (
                None,
                false,
                Some((ErrorCode::ServerUnreachable, false)),
                true,
            ),
            (Some(status::BAD_REQUEST), false, None, true),
            (Some(status::SERVER_FULL), true, None, true),
        ];
        for (answer, was_open, expected, goes_on) in cases {
            let mut engine = Engine::new(&config(), 0, 3).expect("a good config");
            if was_open {
                engine.handle_open(0, 1);
                engine.handle_close(S, 1006);
                engine.handle_timeout(engine.poll_timeout().expect("due"));
            }
            drain(&mut engine);
            engine.handle_close(2 * S, 1006);
            assert_eq!(drain(&mut engine).last(), Some(&Output::CheckStatus));
            engine.handle_check(2 * S, answer);
            let errors: Vec<(ErrorCode, bool)> = drain(&mut engine)
                .into_iter()
                .filter_map(|o| match o {
                    Output::Page(FromWorker::Error { code, fatal, .. }) => Some((code, fatal)),
                    _ => None,
                })
                .collect();
            assert_eq!(
                errors,
                expected.into_iter().collect::<Vec<_>>(),
                "{answer:?}"
            );
            assert_eq!(engine.running(), goes_on, "{answer:?}");
        }
        // 429: wait half a minute, exactly.
        let mut engine = Engine::new(&config(), 0, 3).expect("a good config");
        engine.handle_close(S, 1006);
        engine.handle_check(S, Some(status::TOO_MANY));
        assert_eq!(engine.poll_timeout(), Some(S + TOO_MANY_RETRY_US));
    }

    #[test]
    fn a_server_that_keeps_refusing_is_reported_on_the_third_refusal_only() {
        let mut engine = Engine::new(&config(), 0, 9).expect("a good config");
        let mut notices = Vec::new();
        let mut now = 0;
        for _ in 0..5 {
            now += S;
            engine.handle_close(now, 1006);
            engine.handle_check(now, Some(status::SERVER_FULL));
            notices.push(
                drain(&mut engine)
                    .iter()
                    .any(error(ErrorCode::ServerError, false)),
            );
            now = engine.poll_timeout().expect("due");
            engine.handle_timeout(now);
        }
        assert_eq!(notices, [false, false, true, false, false]);
    }

    #[test]
    fn a_late_answer_after_hanging_up_changes_nothing() {
        let mut engine = Engine::new(&config(), 0, 9).expect("a good config");
        engine.handle_close(S, 1006);
        engine.hang_up(S);
        assert!(drain(&mut engine).contains(&Output::Page(FromWorker::Closed)));
        engine.handle_check(2 * S, Some(status::API_KEY_REFUSED));
        assert_eq!(drain(&mut engine), []);
        assert_eq!(engine.poll_timeout(), None);
    }

    #[test]
    fn hanging_up_after_a_fatal_error_answers_at_once() {
        let mut engine = open_engine(0);
        engine.handle_close(S, close_code::TAKEN_OVER);
        assert!(!engine.running());
        drain(&mut engine);
        engine.hang_up(2 * S);
        assert_eq!(drain(&mut engine), [Output::Page(FromWorker::Closed)]);
    }

    #[test]
    fn hanging_up_says_bye_then_closes_then_tells_the_page() {
        let mut engine = open_engine(0);
        let _peer = in_call(&mut engine, 0);
        engine.hang_up(S);
        let bye = engine.poll_transmit().expect("a Bye");
        assert!(!bye.is_audio);
        assert_eq!(
            drain(&mut engine),
            [
                Output::Close {
                    code: close_code::NORMAL,
                    reason: "hang up"
                },
                state(CallState::Ended)
            ]
        );
        assert!(!engine.running());
        engine.handle_close(S + 1, close_code::NORMAL);
        assert_eq!(drain(&mut engine), [Output::Page(FromWorker::Closed)]);
        assert_eq!(
            wake(&mut engine, 2 * S, &[0.1; FRAME], 0),
            0,
            "no more wakes' work"
        );
    }

    #[test]
    fn relay_messages_move_the_state_and_unknown_ones_are_ignored() {
        let mut engine = open_engine(0);
        drain(&mut engine);
        engine.handle_text(0, r#"{"type":"waiting"}"#);
        assert_eq!(drain(&mut engine), [state(CallState::Waiting)]);
        engine.handle_text(0, r#"{"type":"from-a-later-relay","x":1}"#);
        engine.handle_text(0, "not json");
        assert_eq!(drain(&mut engine), []);
        engine.handle_text(0, r#"{"type":"peer-joined"}"#);
        assert_eq!(
            drain(&mut engine),
            [
                Output::Page(FromWorker::PeerJoined),
                state(CallState::InCall)
            ]
        );
        engine.handle_text(0, r#"{"type":"error","code":4410,"reason":"nobody came"}"#);
        assert_eq!(drain(&mut engine), [], "the close that follows says it");
        engine.handle_text(0, r#"{"type":"error","code":4400,"reason":"bad frame"}"#);
        assert!(
            drain(&mut engine)
                .iter()
                .any(error(ErrorCode::ServerError, false))
        );
        engine.handle_text(0, r#"{"type":"peer-left"}"#);
        assert_eq!(
            drain(&mut engine),
            [
                Output::Page(FromWorker::PeerLeft),
                state(CallState::Waiting)
            ]
        );
    }

    #[test]
    fn silence_in_a_call_drops_the_socket_and_connects_again_at_once() {
        let mut engine = open_engine(0);
        let mut peer = in_call(&mut engine, 0);
        let mut now = 0;
        // The other side's audio keeps the socket alive.
        for step in 0..100 {
            now = step * 10_000;
            peer.capture(now, &[0.2; FRAME]);
            while let Some(out) = peer.poll_transmit() {
                engine.handle_frame(now, &out.bytes);
            }
            wake(&mut engine, now, &[0.1; FRAME], 1_000);
        }
        assert!(!drain(&mut engine).contains(&Output::DropSocket));
        // Then nothing for 2.5 s.
        while !drain(&mut engine).contains(&Output::DropSocket) {
            now += 10_000;
            wake(&mut engine, now, &[0.1; FRAME], 1_000);
            assert!(now < 10 * S, "the watchdog never fired");
        }
        assert!((3_400_000..=3_520_000).contains(&now), "{now}");
        assert_eq!(engine.poll_timeout(), Some(now));
        engine.handle_timeout(now);
        assert_eq!(drain(&mut engine), [Output::Connect(Transport::WebSocket)]);
    }

    #[test]
    fn a_spent_sender_makes_the_engine_reconnect_with_a_new_kid() {
        let mut engine = open_engine(0);
        let mut peer = in_call(&mut engine, 0);
        engine.call.nearly_spend_sender();
        wake(&mut engine, 10_000, &[0.1; 2 * FRAME], 1_000);
        let outputs = drain(&mut engine);
        assert!(outputs.contains(&Output::DropSocket), "{outputs:?}");
        assert!(outputs.contains(&state(CallState::Reconnecting)));
        assert_eq!(engine.poll_timeout(), Some(10_000));
        engine.handle_timeout(10_000);
        assert_eq!(drain(&mut engine), [Output::Connect(Transport::WebSocket)]);
        engine.handle_open(20_000, 0xA2);
        engine.handle_text(20_000, r#"{"type":"peer-joined"}"#);
        peer.peer_joined();
        while let Some(out) = engine.poll_transmit() {
            peer.receive(20_000, &out.bytes);
        }
        while let Some(out) = peer.poll_transmit() {
            engine.handle_frame(20_000, &out.bytes);
        }
        wake(&mut engine, 30_000, &[0.1; FRAME], 1_000);
        let before = peer.stats().frames_received;
        while let Some(out) = engine.poll_transmit() {
            peer.receive(30_000, &out.bytes);
        }
        assert!(
            peer.stats().frames_received > before,
            "audio flows under the new KID"
        );
        assert_eq!(peer.stats().decrypt_failures, 0);
    }

    #[test]
    fn audio_this_page_cannot_play_is_reported_once() {
        let mut engine = open_engine(0);
        let mut other = in_call(&mut engine, 0);
        let notices = (0..5)
            .map(|i| {
                // Stereo, as another client may send.
                let frame = other.audio_frame_for_test(2, RATE, i * FRAME as u64);
                engine.handle_frame(i * 10_000, &frame);
                drain(&mut engine)
                    .iter()
                    .filter(|o| error(ErrorCode::UnsupportedAudio, false)(o))
                    .count()
            })
            .collect::<Vec<_>>();
        assert_eq!(notices, [1, 0, 0, 0, 0]);
        wake(&mut engine, 100_000, &[], 0);
        let stats = drain(&mut engine).into_iter().find_map(|o| match o {
            Output::Page(FromWorker::Stats(stats)) => Some(stats),
            _ => None,
        });
        assert_eq!(stats.expect("stats at the first wake").frames_refused, 5);
    }

    #[test]
    fn stats_go_out_ten_times_a_second_and_slow_uplinks_are_told() {
        let mut engine = open_engine(0);
        let _peer = in_call(&mut engine, 0);
        let mut stats = 0;
        let mut too_slow = 0;
        for step in 0..400u64 {
            let now = step * 2_500;
            // The socket never drains below 100 ms of audio: a slow network.
            engine.handle_wake(
                now,
                Wake {
                    captured: &[0.1; FRAME / 4],
                    capture_xruns: 0,
                    playback_filled: 1_000,
                    playback_xruns: 0,
                    socket_buffered: Some(9_600),
                },
            );
            // The uplink is behind: every audio frame is dropped.
            while let Some(out) = engine.poll_transmit() {
                if out.is_audio {
                    engine.dropped_outgoing(&out);
                }
            }
            for output in drain(&mut engine) {
                match output {
                    Output::Page(FromWorker::Stats(_)) => stats += 1,
                    o if error(ErrorCode::TooSlow, false)(&o) => too_slow += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(stats, 10);
        // 100 drops in the second, told at a stats tick once more than ten new ones piled up:
        // every other tick.
        assert!((4..=5).contains(&too_slow), "{too_slow}");
    }

    #[test]
    fn the_playback_ring_is_topped_up_to_its_target() {
        let mut engine = open_engine(0);
        drain(&mut engine);
        // Before any call the target is the minimum fill, 5 ms.
        assert_eq!(wake(&mut engine, 0, &[], 0), 240);
        assert_eq!(wake(&mut engine, 2_500, &[], 100), 140);
        assert_eq!(wake(&mut engine, 5_000, &[], 240), 0);
        // Never past the ring's room.
        let mut small = config();
        small.ring_capacity = 101;
        let mut engine = Engine::new(&small, 0, 1).expect("a good config");
        assert_eq!(wake(&mut engine, 0, &[], 0), 100);
    }

    #[test]
    fn the_mouth_to_ear_estimate_is_when_a_click_is_heard() {
        // A sends a click every 97 ms over a network that delays each frame by 2-17 ms (in any
        // order); B's device takes 10 ms from the playback ring at each wake, as Chromium's audio
        // thread does at 200 kHz, so audio arriving between two wakes waits for what the jitter
        // buffer holds ahead of it and for the ring as topped up, not as found. Each click's
        // estimate, read when its frame arrives, is the time from A's microphone to B's device
        // playing it, plus the device's latency.
        let mut engine = open_engine(0);
        let mut a = in_call(&mut engine, 0);
        let device_us = (config().output_latency_ms * 1000.0) as u64;
        let ms = 1_000;
        let click_every = 97 * RATE as usize / 1000;
        // Each click's height says which one it is.
        let height = |click: usize| 0.3 + 0.01 * click as f32;
        let mut random = 0x9e37_79b9_7f4a_7c15_u64;
        let mut in_flight: Vec<(u64, Option<usize>, Vec<u8>)> = Vec::new();
        let mut sent_frames = 0;
        let mut ring = std::collections::VecDeque::new();
        let mut xruns = 0;
        // Per frame, the estimate when it arrived and B's edits then; per click, when it was
        // heard and B's edits then.
        let mut estimated = std::collections::HashMap::new();
        let mut heard = Vec::new();
        for tick in 1..9_000u64 {
            let now = tick * ms / 2;
            if now % (10 * ms) == 0 {
                let first = (now / (10 * ms) - 1) as usize * FRAME;
                let captured: Vec<f32> = (first..first + FRAME)
                    .map(|s| {
                        if s % click_every == 0 {
                            height(s / click_every)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                a.capture(now, &captured);
                while let Some(out) = a.poll_transmit() {
                    random ^= random << 13;
                    random ^= random >> 7;
                    random ^= random << 17;
                    let frame = out.is_audio.then(|| {
                        sent_frames += 1;
                        sent_frames - 1
                    });
                    in_flight.push((now + 2 * ms + random % (15 * ms), frame, out.bytes));
                }
            }
            in_flight.sort_by_key(|(at, ..)| *at);
            while in_flight.first().is_some_and(|(at, ..)| *at <= now) {
                let (_, frame, bytes) = in_flight.remove(0);
                engine.handle_frame(now, &bytes);
                if let Some(frame) = frame {
                    let stats = engine.call.stats();
                    estimated.insert(frame, (stats.mouth_to_ear_ms, stats.edits));
                }
            }
            if now % (10 * ms) == 3 * ms {
                let wake = Wake {
                    captured: &[],
                    capture_xruns: 0,
                    playback_filled: ring.len(),
                    playback_xruns: xruns,
                    socket_buffered: None,
                };
                ring.extend(engine.handle_wake(now, wake).iter().copied());
                let edits = engine.call.stats().edits;
                for i in 0..FRAME as u64 {
                    match ring.pop_front() {
                        Some(v) if v > 0.25 => {
                            let click = ((v - 0.3) / 0.01).round() as usize;
                            heard.push((click, now + i * S / u64::from(RATE) + device_us, edits));
                        }
                        Some(_) => {}
                        None => xruns += 1,
                    }
                }
            }
        }
        // The first clicks play while the buffers still find their fill.
        let mut checked = 0;
        for &(click, at, edits) in heard.iter().skip(5) {
            let sample = click * click_every;
            let (estimate, edits_then) = estimated[&(sample / FRAME)];
            // An edit between the arrival and the playout moves the click by its length.
            if edits != edits_then {
                continue;
            }
            let took = at.saturating_sub(sample as u64 * S / u64::from(RATE)) as f64 / 1e3;
            assert!(
                (estimate - took).abs() < 0.01,
                "click {click}: heard {took} ms after it was said, estimated {estimate} ms"
            );
            checked += 1;
        }
        assert!(checked >= 30, "{checked} of {} clicks checked", heard.len());
    }

    fn webtransport_config(wire_rate: u32) -> EngineConfig {
        EngineConfig {
            webtransport_url: Some("http://line.test/webtransport?apikey=k".into()),
            wire_rate,
            ..config()
        }
    }

    fn stats_of(outputs: &[Output]) -> Option<&Stats> {
        outputs.iter().rev().find_map(|o| match o {
            Output::Page(FromWorker::Stats(stats)) => Some(&**stats),
            _ => None,
        })
    }

    #[test]
    fn webtransport_is_tried_first_and_a_failure_falls_back_for_the_call() {
        let mut engine = Engine::new(&webtransport_config(RATE), 0, 7).expect("a good config");
        assert_eq!(
            drain(&mut engine).last(),
            Some(&Output::Connect(Transport::WebTransport))
        );
        // A WebSocket's close is not the session's failure, and vice versa.
        engine.handle_webtransport_failed(2 * S);
        assert_eq!(
            drain(&mut engine),
            [Output::Connect(Transport::WebSocket)],
            "at once, no backoff"
        );
        engine.handle_webtransport_failed(2 * S);
        assert_eq!(drain(&mut engine), [], "not on a WebSocket");
        engine.handle_open(2 * S, 0xA);
        wake(&mut engine, 3 * S, &[], 0);
        let outputs = drain(&mut engine);
        let stats = stats_of(&outputs).expect("stats");
        assert_eq!(stats.transport, Some(Transport::WebSocket));
        assert_eq!(stats.frame_ms, 10.0);
        // A lost connection reconnects over the WebSocket: UDP failed in this call already.
        engine.handle_close(4 * S, 1006);
        engine.handle_timeout(20 * S);
        assert_eq!(
            drain(&mut engine).last(),
            Some(&Output::Connect(Transport::WebSocket))
        );
    }

    #[test]
    fn on_webtransport_frames_fit_a_datagram_and_reconnects_try_it_again() {
        let mut engine = Engine::new(&webtransport_config(200_000), 0, 7).expect("a good config");
        drain(&mut engine);
        engine.handle_open(S, 0xA);
        let _peer = in_call(&mut engine, S);
        // 40 ms at the context's 48 kHz: 16 frames of 2.5 ms at 200 kHz.
        wake(&mut engine, S + 10_000, &[0.25; 1_920], 0);
        let sent: Vec<(bool, usize)> = std::iter::from_fn(|| engine.poll_transmit())
            .filter(|o| o.is_audio)
            .map(|o| (o.is_repair, o.bytes.len()))
            .collect();
        let audio = sent.iter().filter(|(repair, _)| !repair).count();
        assert!((15..=16).contains(&audio), "{sent:?}");
        // Each group of four audio frames has its repair frame, after the next group's first.
        let repairs: Vec<usize> = (0..sent.len()).filter(|&i| sent[i].0).collect();
        assert_eq!(repairs.len(), (audio - 1) / 4, "{sent:?}");
        assert!(
            repairs.iter().enumerate().all(|(k, &i)| i == 5 * k + 5),
            "{sent:?}"
        );
        assert!(
            sent.iter().all(|&(_, n)| n <= MAX_DATAGRAM_FRAME_LEN),
            "{sent:?}"
        );
        let outputs = drain(&mut engine);
        let stats = stats_of(&outputs).expect("stats");
        assert_eq!(stats.transport, Some(Transport::WebTransport));
        assert_eq!(stats.frame_ms, 2.5);
        // The relay ends the session after an error record: its code decides, here a retry.
        engine.handle_text(
            2 * S,
            r#"{"type":"error","code":1001,"reason":"shutting down"}"#,
        );
        engine.handle_ended(2 * S);
        assert_eq!(engine.state(), CallState::Reconnecting);
        let at = engine.poll_timeout().expect("a reconnect is due");
        drain(&mut engine);
        engine.handle_timeout(at);
        assert_eq!(
            drain(&mut engine),
            [Output::Connect(Transport::WebTransport)],
            "it worked before: UDP goes on"
        );
    }

    #[test]
    fn a_session_taken_over_ends_the_call_as_on_a_websocket() {
        let mut engine = Engine::new(&webtransport_config(RATE), 0, 7).expect("a good config");
        drain(&mut engine);
        engine.handle_open(S, 0xA);
        engine.handle_text(
            2 * S,
            r#"{"type":"error","code":4409,"reason":"replaced by a newer connection"}"#,
        );
        engine.handle_ended(2 * S);
        let outputs = drain(&mut engine);
        assert!(
            outputs.iter().any(error(ErrorCode::TakenOver, true)),
            "{outputs:?}"
        );
        assert!(!engine.running());
    }

    #[test]
    fn rates_without_a_datagram_frame_stay_on_websockets() {
        let mut engine = Engine::new(&webtransport_config(384_000), 0, 7).expect("a good config");
        assert_eq!(
            drain(&mut engine).last(),
            Some(&Output::Connect(Transport::WebSocket))
        );
        let mut engine = Engine::new(&config(), 0, 7).expect("a good config");
        assert_eq!(
            drain(&mut engine).last(),
            Some(&Output::Connect(Transport::WebSocket)),
            "no WebTransport address: WebSocket only"
        );
    }

    #[test]
    fn hanging_up_while_the_session_opens_still_says_closed() {
        let mut engine = Engine::new(&webtransport_config(RATE), 0, 7).expect("a good config");
        drain(&mut engine);
        engine.hang_up(S);
        drain(&mut engine);
        engine.handle_webtransport_failed(2 * S);
        assert_eq!(drain(&mut engine), [Output::Page(FromWorker::Closed)]);
    }
}
