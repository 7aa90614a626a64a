//! The call engine's logic, sans-IO: samples and frames in, frames and samples out.
//!
//! [`Call`] reads no clock and opens no socket: the worker passes `now` (microseconds of wall
//! clock, `performance.timeOrigin + performance.now()`) and moves bytes. So two `Call`s can talk to
//! each other in a native test.
//!
//! Per connection the worker calls [`Call::connected`] with a fresh random KID (a new SFrame
//! sender, so a reconnect never reuses a key and nonce), then feeds [`Call::capture`],
//! [`Call::receive`] and [`Call::play`], and sends what [`Call::poll_transmit`] returns.
//!
//! Every frame but a Hello is bound to the other side's current connection (see
//! [`line_protocol::binding`]): audio waits until the other side's Hello has arrived, and frames
//! recorded in an earlier call do not play in this one.

use std::collections::VecDeque;

use line_playout::record::{self, Header as RecordHeader};
use line_playout::{ClockMap, stat};
use line_protocol::audio::{CHANNELS, FrameDuration};
use line_protocol::binding::{self, Binding, OpenError};
use line_protocol::header::Header;
use line_protocol::jitter::{JitterBuffer, JitterConfig};
use line_protocol::leaf::LeafKey;
use line_protocol::payload::{
    AUDIO_HEADER_LEN, Audio, Bye, CODED_REPAIR_HEADER_LEN, CodedAudio, Hello, LOSSLESS_VERSION,
    Payload, Ping, REPAIR_HEADER_LEN,
};
use line_protocol::repair::{GROUP, RepairDecoder, RepairEncoder};
use line_protocol::sframe::{DecryptError, EncryptError, FrameReceiver, FrameSender, TAG_LEN};
use line_protocol::{lossless, pcm};

use crate::messages::{Coding, Stats};
use crate::resample::Resampler;

/// How often to measure the round trip.
const PING_INTERVAL_US: u64 = 1_000_000;
/// Failed frames after which, with none decrypted, the other side is taken to use another leaf.
/// Until a side hears the other, it sends only Hellos (on connecting, on `peer-joined`, then one a
/// second, see [`Call::tick`]), so a few failures say it all; a frame from the right link ends it.
const DECRYPT_FAILURES_BEFORE_ALARM: u64 = 3;
/// The client name sent in Hello.
const CLIENT_NAME: &str = "line-web";

/// The longest frame duration, no longer than `wanted`, whose audio frames at `rate` Hz, and the
/// repair frames that protect them, are at most `max_len` bytes whatever their header and coding
/// (a coded frame is at most a few bytes longer than raw), or `None` when even the shortest is
/// longer. On datagrams, where a frame must fit one (`MAX_DATAGRAM_FRAME_LEN`), 200 kHz takes
/// 2.5 ms frames and 48 kHz 10 ms; above 206 kHz no frame fits.
#[must_use]
pub fn frame_within(rate: u32, wanted: FrameDuration, max_len: usize) -> Option<FrameDuration> {
    FrameDuration::ALL
        .into_iter()
        .filter(|d| d.micros() <= wanted.micros())
        .filter(|d| sealed_len_at_most(rate, *d) <= max_len)
        .max_by_key(|d| d.micros())
}

/// The longest sealed audio or repair frame of `frame` at `rate` Hz, PCM or coded.
fn sealed_len_at_most(rate: u32, frame: FrameDuration) -> usize {
    let coded_repair = CODED_REPAIR_HEADER_LEN + 2 * usize::from(GROUP) + lossless::HEADER_LEN;
    let overhead =
        Header::MAX_LEN + AUDIO_HEADER_LEN.max(REPAIR_HEADER_LEN).max(coded_repair) + TAG_LEN;
    overhead + 2 * CHANNELS as usize * frame.samples(rate)
}

/// What the call needs to know about this side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallConfig {
    /// The rate this side sends, Hz.
    pub wire_rate: u32,
    /// This side's frame duration.
    pub frame: FrameDuration,
    /// The AudioContext's rate: capture arrives and playback leaves at this rate.
    pub context_rate: u32,
}

/// A frame ready for the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The SFrame frame.
    pub bytes: Vec<u8>,
    /// Audio, and the repair frames that protect it, may be dropped when the uplink is behind;
    /// control frames (Ping, Hello, Bye) may not.
    pub is_audio: bool,
    /// A repair frame (see [`line_protocol::repair`]): dropped like audio, not counted as audio.
    pub is_repair: bool,
}

/// Most buffers of sent frames kept for the next ones.
const SPARE_BUFFERS: usize = 8;

/// Something that happened in the call that the engine should act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// The other side is hanging up.
    Bye,
    /// The other side sends audio this side cannot play (said once per arrival of the other
    /// person; every such frame is counted in [`Stats::frames_refused`]).
    AudioRefused {
        /// The channels the frame declares.
        channels: u8,
        /// The sample rate it declares, Hz.
        sample_rate: u32,
    },
    /// This connection's sender has sealed all the frames one KID may seal: nothing more goes
    /// out until a new connection draws a new KID.
    SenderSpent,
}

/// The other side's audio stream, as far as this side has seen it.
#[derive(Debug)]
struct Incoming {
    rate: u32,
    kid: u64,
    /// The jitter buffer, when this side plays out itself (`None`: the playback worklet does).
    jitter: Option<JitterBuffer>,
    /// The next frame record starts a new stream in the playback worklet.
    new_stream: bool,
    next_sample: Option<u64>,
    frame_samples: usize,
}

/// What audio waits after the jitter buffer: the playback ring, as of its last top-up, and the
/// device.
#[derive(Clone, Copy, Debug, Default)]
struct Playout {
    /// When the ring was last topped up, microseconds.
    at_us: u64,
    /// What it held then, microseconds.
    ring_us: u64,
    device_us: u64,
}

impl Playout {
    /// What the ring still holds at `now_us`: it has played since the top-up.
    fn ring_left_us(&self, now_us: u64) -> u64 {
        self.ring_us
            .saturating_sub(now_us.saturating_sub(self.at_us))
    }
}

/// Playout on the audio thread: frame records for the playback worklet, and what it reports.
#[derive(Debug)]
struct Worklet {
    clock: ClockMap,
    /// Records written since the worker last took them, one after the other.
    records: Vec<f32>,
    record: Vec<f32>,
    /// The worklet's latest statistics (`line_playout::stat`).
    stats: [f64; stat::LEN],
}

/// One person's side of a call.
pub struct Call {
    config: CallConfig,
    leaf: LeafKey,
    sender: Option<FrameSender>,
    receiver: FrameReceiver,
    /// Whose connection this side's frames are bound to, and what it accepts.
    binding: Binding,
    resampler: Resampler,
    /// Captured audio at the wire rate, not yet framed.
    pending: Vec<f32>,
    scratch_pcm: Vec<u8>,
    /// Samples of a frame to code, or decoded from a coded frame.
    scratch_i16: Vec<i16>,
    scratch_coded: Vec<u8>,
    /// The PCM of a coded frame received.
    scratch_decoded: Vec<u8>,
    scratch_plain: Vec<u8>,
    /// The repair payload of the group the last audio frame completed, if it did.
    scratch_repair: Vec<u8>,
    /// The repair payload of the last completed group, sent after the next audio frame (see
    /// [`Call::send_audio`]); empty when there is none.
    repair_due: Vec<u8>,
    scratch_decrypted: Vec<u8>,
    scratch_samples: Vec<f32>,
    /// Running index of the next sample this side sends.
    next_sample: u64,
    muted: bool,
    /// Audio goes out only while the relay says the other person is there.
    peer_present: bool,
    incoming: Option<Incoming>,
    /// Makes repair frames for this connection's audio (on datagrams), or none.
    repair_encoder: Option<RepairEncoder>,
    /// Whether the next connection sends repair frames.
    send_repair: bool,
    coding: Coding,
    /// The KID of the other side's connection whose Hello says it reads coded audio.
    peer_reads_coded: Option<u64>,
    /// PCM and coded bytes of the coded frames sent, for [`Stats::lossless_ratio`].
    coded_raw_bytes: u64,
    coded_bytes: u64,
    /// Rebuilds the other side's lost frames, and the KID of the stream it holds.
    repair_decoder: RepairDecoder,
    repair_kid: Option<u64>,
    scratch_rebuilt: Vec<u8>,
    outgoing: VecDeque<Outgoing>,
    /// Buffers of frames sent, for the next frames: sealing allocates nothing once a few went.
    spare: Vec<Vec<u8>>,
    events: VecDeque<CallEvent>,
    next_ping_us: u64,
    ping_id: u32,
    /// What waits after the jitter buffer, for the mouth-to-ear estimate.
    playout: Playout,
    stats: Stats,
    decrypted_since_join: u64,
    failures_since_join: u64,
    /// Whether [`CallEvent::AudioRefused`] was said since the other person arrived.
    refusal_said: bool,
    input_peak: f32,
    output_peak: f32,
    worklet: Option<Box<Worklet>>,
}

impl core::fmt::Debug for Call {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The leaf is a secret: print only the shape.
        f.debug_struct("Call")
            .field("config", &self.config)
            .field("connected", &self.sender.is_some())
            .finish_non_exhaustive()
    }
}

impl Call {
    /// A call on the line of `leaf`.
    #[must_use]
    pub fn new(config: CallConfig, leaf: LeafKey) -> Self {
        let receiver = FrameReceiver::new(&leaf);
        Self {
            config,
            leaf,
            sender: None,
            receiver,
            binding: Binding::new(),
            resampler: Resampler::new(config.context_rate, config.wire_rate),
            pending: Vec::new(),
            scratch_pcm: Vec::new(),
            scratch_i16: Vec::new(),
            scratch_coded: Vec::new(),
            scratch_decoded: Vec::new(),
            scratch_plain: Vec::new(),
            scratch_repair: Vec::new(),
            repair_due: Vec::new(),
            scratch_decrypted: Vec::new(),
            scratch_samples: Vec::new(),
            next_sample: 0,
            muted: false,
            peer_present: false,
            incoming: None,
            repair_encoder: None,
            send_repair: false,
            coding: Coding::default(),
            peer_reads_coded: None,
            coded_raw_bytes: 0,
            coded_bytes: 0,
            repair_decoder: RepairDecoder::new(),
            repair_kid: None,
            scratch_rebuilt: Vec::new(),
            outgoing: VecDeque::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
            next_ping_us: 0,
            ping_id: 0,
            playout: Playout::default(),
            stats: Stats {
                wire_rate: config.wire_rate,
                context_rate: config.context_rate,
                frame_ms: config.frame.millis(),
                ..Stats::default()
            },
            decrypted_since_join: 0,
            failures_since_join: 0,
            refusal_said: false,
            input_peak: 0.0,
            output_peak: 0.0,
            worklet: None,
        }
    }

    /// Hands the other side's audio to the playback worklet as frame records
    /// ([`Self::take_records`]) instead of playing it out here.
    pub fn play_in_worklet(&mut self) {
        self.worklet = Some(Box::new(Worklet {
            clock: ClockMap::default(),
            records: Vec::new(),
            record: Vec::new(),
            stats: [0.0; stat::LEN],
        }));
        self.incoming = None;
    }

    /// The frame records written since the last call, one after the other; the caller empties
    /// it. Always empty unless [`Self::play_in_worklet`].
    pub fn take_records(&mut self) -> Option<&mut Vec<f32>> {
        self.worklet
            .as_mut()
            .map(|w| &mut w.records)
            .filter(|r| !r.is_empty())
    }

    /// The playback worklet's statistics (`line_playout::stat`), read at `now_us`.
    pub fn worklet_report(&mut self, now_us: u64, stats: &[f64]) {
        let rate = f64::from(self.config.context_rate);
        if let Some(worklet) = &mut self.worklet
            && stats.len() == stat::LEN
        {
            worklet.clock.observe(now_us, stats[stat::RENDERED], rate);
            worklet.stats.copy_from_slice(stats);
            self.output_peak = self.output_peak.max(stats[stat::OUTPUT_PEAK] as f32);
        }
    }

    /// `records` frame records from [`Self::take_records`] never reached the worklet: the
    /// playback ring had no room.
    pub fn records_dropped(&mut self, records: u64) {
        self.stats.records_dropped += records;
    }

    /// Frames of `frame` from the next connection on (its Hello says so): a transport may carry
    /// only frames up to a size.
    pub fn set_frame(&mut self, frame: FrameDuration) {
        self.config.frame = frame;
        self.stats.frame_ms = frame.millis();
    }

    /// Whether the next connection follows every [`GROUP`] audio frames with a repair frame
    /// that rebuilds any one of them: on datagrams, where a frame may be lost; not over TCP.
    pub fn set_repair(&mut self, on: bool) {
        self.send_repair = on;
    }

    /// How this side writes its audio frames from now on.
    pub fn set_coding(&mut self, coding: Coding) {
        self.coding = coding;
    }

    /// Whether audio goes out coded: this side codes, and the connection its frames are bound
    /// to said in its Hello that it reads coded audio.
    fn sends_coded(&self) -> bool {
        self.coding == Coding::Lossless
            && self
                .peer_reads_coded
                .is_some_and(|kid| self.binding.outgoing() == Some(binding::metadata(kid)))
    }

    /// A new connection with a fresh 64-bit `kid`: new sender keys, and a Hello to send first.
    pub fn connected(&mut self, now_us: u64, kid: u64) {
        self.sender = Some(FrameSender::new(&self.leaf, kid));
        self.repair_encoder = self.send_repair.then(|| RepairEncoder::new(GROUP));
        // A relay that reflects our own frames must not make us hear ourselves.
        self.receiver.refuse_kid(kid);
        self.binding.connected(kid);
        self.binding.forget_peer();
        self.repair_due.clear();
        self.outgoing.clear();
        self.pending.clear();
        self.next_ping_us = now_us;
        self.send_hello();
    }

    /// The connection is gone: nothing more is sent until [`Call::connected`].
    pub fn disconnected(&mut self) {
        self.sender = None;
        self.peer_present = false;
        self.binding.forget_peer();
        self.repair_due.clear();
        self.outgoing.clear();
        self.pending.clear();
    }

    /// The relay says the other person arrived: greet them and forget the previous stream.
    pub fn peer_joined(&mut self) {
        self.peer_present = true;
        // They may be on a new connection: bind nothing to them until their Hello says which.
        self.binding.forget_peer();
        self.repair_due.clear();
        self.incoming = None;
        self.decrypted_since_join = 0;
        self.failures_since_join = 0;
        self.refusal_said = false;
        self.send_hello();
    }

    /// The relay says the other person left.
    pub fn peer_left(&mut self) {
        self.peer_present = false;
        self.binding.forget_peer();
        self.repair_due.clear();
        self.incoming = None;
    }

    /// Send silence (`true`) or the microphone.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        self.stats.muted = muted;
    }

    /// What audio leaving the jitter buffer waits before it is heard, for the mouth-to-ear
    /// estimate: at `now_us` a playback ring (just topped up) holds `ring_us` of audio, which
    /// plays out at the real-time rate from then on, and the device adds `device_us`.
    pub fn set_playout(&mut self, now_us: u64, ring_us: u64, device_us: u64) {
        self.playout = Playout {
            at_us: now_us,
            ring_us,
            device_us,
        };
    }

    /// Queues a Bye for the other side.
    pub fn hang_up(&mut self) {
        self.send_control(&Payload::Bye(Bye { reason: "hang up" }));
    }

    /// How many more microphone samples (context rate) the next frame needs at least: the worker
    /// sleeps until the audio thread has gathered that many, so it wakes once a frame rather
    /// than at every render quantum, and never after the frame could have left.
    #[must_use]
    pub fn capture_wanted(&self) -> usize {
        let frame_samples = self.config.frame.samples(self.config.wire_rate);
        let missing = frame_samples.saturating_sub(self.pending.len());
        // 0 would ask the capture worklet to wake the worker at every quantum; a frame already
        // waiting (0 missing) wants the next quantum's wake, not one a resampler chunk later.
        self.resampler.input_for(missing).max(1)
    }

    /// Microphone samples at the context rate; the last one was captured at `now_us`.
    pub fn capture(&mut self, now_us: u64, samples: &[f32]) {
        for &s in samples {
            self.input_peak = self.input_peak.max(s.abs());
        }
        if self.sender.is_none() {
            return;
        }
        self.resampler.process(samples, &mut self.pending);
        let frame_samples = self.config.frame.samples(self.config.wire_rate);
        if !self.peer_present || self.binding.outgoing().is_none() {
            // Nobody to hear it yet (alone, or the other side's Hello is still on its way): the
            // relay would drop it, or the other side could not open it. Keep the unframed tail.
            let whole = self.pending.len() / frame_samples * frame_samples;
            self.pending.drain(..whole);
            self.next_sample += whole as u64;
            return;
        }
        let mut start = 0;
        // The newest sample out of the resampler is that much older than `now_us`.
        let lag = self.resampler.delay() as u64;
        while self.pending.len() - start >= frame_samples {
            let behind = (self.pending.len() - start) as u64 + lag;
            let capture_time_us =
                now_us.saturating_sub(behind * 1_000_000 / u64::from(self.config.wire_rate));
            self.send_audio(start, frame_samples, capture_time_us);
            start += frame_samples;
        }
        self.pending.drain(..start);
    }

    fn send_audio(&mut self, start: usize, len: usize, capture_time_us: u64) {
        let first_sample = self.next_sample;
        self.next_sample += len as u64;
        let captured = &self.pending[start..start + len];
        self.scratch_plain.clear();
        self.scratch_repair.clear();
        if self.sends_coded() {
            self.scratch_i16.clear();
            if self.muted {
                self.scratch_i16.resize(len, 0);
            } else {
                self.scratch_i16
                    .extend(captured.iter().map(|&s| pcm::f32_to_i16(s)));
            }
            self.scratch_coded.clear();
            lossless::encode(&self.scratch_i16, &mut self.scratch_coded);
            self.coded_raw_bytes += 2 * len as u64;
            self.coded_bytes += self.scratch_coded.len() as u64;
            self.stats.frames_sent_lossless += 1;
            self.stats.lossless_ratio = self.coded_bytes as f64 / self.coded_raw_bytes as f64;
            let coded = CodedAudio {
                sample_rate: self.config.wire_rate,
                channels: CHANNELS,
                first_sample,
                capture_time_us,
                coded: &self.scratch_coded,
            };
            Payload::CodedAudio(coded).encode(&mut self.scratch_plain);
            if let Some(repair) = self
                .repair_encoder
                .as_mut()
                .and_then(|encoder| encoder.handle_coded_audio(&coded))
            {
                Payload::CodedRepair(repair).encode(&mut self.scratch_repair);
            }
        } else {
            self.scratch_pcm.resize(2 * len, 0);
            if self.muted {
                self.scratch_pcm.fill(0);
            } else {
                pcm::f32_to_i16le(captured, &mut self.scratch_pcm);
            }
            let audio = Audio {
                sample_rate: self.config.wire_rate,
                channels: CHANNELS,
                first_sample,
                capture_time_us,
                pcm: &self.scratch_pcm,
            };
            Payload::Audio(audio).encode(&mut self.scratch_plain);
            if let Some(repair) = self
                .repair_encoder
                .as_mut()
                .and_then(|encoder| encoder.handle_audio(&audio))
            {
                Payload::Repair(repair).encode(&mut self.scratch_repair);
            }
        }
        let Some(bytes) = self.seal(true) else {
            self.repair_due.clear();
            return;
        };
        self.outgoing.push_back(Outgoing {
            bytes,
            is_audio: true,
            is_repair: false,
        });
        // A group's repair goes out after the next group's first frame, not beside its own last
        // frame: QUIC packs small datagrams sent together into one packet, and a packet that
        // took a group's last frame and its repair would lose both, which no repair rebuilds.
        if !self.repair_due.is_empty() {
            core::mem::swap(&mut self.scratch_plain, &mut self.repair_due);
            if let Some(bytes) = self.seal(true) {
                self.outgoing.push_back(Outgoing {
                    bytes,
                    is_audio: true,
                    is_repair: true,
                });
            }
        }
        self.repair_due.clear();
        core::mem::swap(&mut self.repair_due, &mut self.scratch_repair);
    }

    fn send_hello(&mut self) {
        let hello = Payload::Hello(Hello {
            protocol_version: line_protocol::payload::PROTOCOL_VERSION,
            client: CLIENT_NAME,
            sample_rate: self.config.wire_rate,
            channels: CHANNELS,
            frame_duration_us: self.config.frame.micros(),
        });
        self.send_control(&hello);
    }

    fn send_control(&mut self, payload: &Payload<'_>) {
        self.scratch_plain.clear();
        payload.encode(&mut self.scratch_plain);
        // A Hello is how the other side learns our KID, so it cannot be bound to theirs.
        let bound = !matches!(payload, Payload::Hello(_));
        if let Some(bytes) = self.seal(bound) {
            self.outgoing.push_back(Outgoing {
                bytes,
                is_audio: false,
                is_repair: false,
            });
        }
    }

    /// Encrypts `scratch_plain`, `bound` to the other side's connection or not; `None` when not
    /// connected, when a bound frame has nobody to be bound to yet, or when the sender's counter
    /// is spent: then the sender is dropped and [`CallEvent::SenderSpent`] asks for a new
    /// connection, whose new KID starts over.
    fn seal(&mut self, bound: bool) -> Option<Vec<u8>> {
        let metadata = if bound {
            self.binding.outgoing()?
        } else {
            Default::default()
        };
        let metadata: &[u8] = if bound { &metadata } else { &[] };
        let sender = self.sender.as_mut()?;
        // A new buffer holds any frame this side seals (a coded frame's length varies), so that
        // a reused one never grows.
        let capacity = sealed_len_at_most(self.config.wire_rate, self.config.frame);
        let mut out = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity));
        out.clear();
        match sender.encrypt_with(metadata, &self.scratch_plain, &mut out) {
            Ok(_) => Some(out),
            Err(EncryptError::CounterExhausted) => {
                self.sender = None;
                self.events.push_back(CallEvent::SenderSpent);
                None
            }
            // A payload too large for one frame: this side's own frame sizes never are.
            Err(_) => None,
        }
    }

    /// Sends a Ping when one is due; a Hello instead while the other person has not been heard
    /// (our Hello may have crossed their reconnect, or they hold another link).
    pub fn tick(&mut self, now_us: u64) {
        if self.sender.is_some() && now_us >= self.next_ping_us {
            self.next_ping_us = now_us + PING_INTERVAL_US;
            if self.binding.outgoing().is_none() {
                if self.peer_present {
                    self.send_hello();
                }
                return;
            }
            self.ping_id = self.ping_id.wrapping_add(1);
            let ping = Payload::Ping(Ping {
                id: self.ping_id,
                send_time_us: now_us,
            });
            self.send_control(&ping);
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        let frame = self.outgoing.pop_front()?;
        if frame.is_audio && !frame.is_repair {
            self.stats.frames_sent += 1;
        }
        Some(frame)
    }

    /// `frame` went out (or was dropped): its buffer carries a later frame.
    pub fn recycle(&mut self, frame: Outgoing) {
        // A frame and its repair frame per frame time, a few in flight: more is never needed.
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(frame.bytes);
        }
    }

    /// The worker could not send `frame`, an audio or repair frame, because the uplink is behind.
    pub fn dropped_outgoing(&mut self, frame: &Outgoing) {
        if !frame.is_repair {
            self.stats.frames_sent -= 1;
            self.stats.frames_dropped += 1;
        }
    }

    /// What happened, for the engine to act on.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// A binary frame from the relay, received at `now_us`.
    pub fn receive(&mut self, now_us: u64, frame: &[u8]) {
        let mut plain = core::mem::take(&mut self.scratch_decrypted);
        match self.binding.open(&mut self.receiver, frame, &mut plain) {
            Ok((header, payload)) => {
                self.decrypted_since_join += 1;
                match payload {
                    Payload::Audio(audio) => {
                        self.receive_audio(now_us, header.kid, &audio, false);
                        self.repair_stream(header.kid).handle_audio(&audio);
                        self.receive_rebuilt(now_us, header.kid);
                    }
                    Payload::CodedAudio(audio) => {
                        self.receive_coded(now_us, header.kid, &audio, false);
                        self.repair_stream(header.kid).handle_coded_audio(&audio);
                        self.receive_rebuilt(now_us, header.kid);
                    }
                    Payload::Repair(repair) => {
                        self.repair_stream(header.kid).handle_repair(&repair);
                        self.receive_rebuilt(now_us, header.kid);
                    }
                    Payload::CodedRepair(repair) => {
                        self.repair_stream(header.kid).handle_coded_repair(&repair);
                        self.receive_rebuilt(now_us, header.kid);
                    }
                    Payload::Hello(hello) => {
                        // What it reads decides how this side's audio goes to that connection.
                        if hello.protocol_version >= LOSSLESS_VERSION {
                            self.peer_reads_coded = Some(header.kid);
                        } else if self.peer_reads_coded == Some(header.kid) {
                            self.peer_reads_coded = None;
                        }
                    }
                    Payload::Ping(ping) => self.send_control(&Payload::Pong(ping)),
                    Payload::Pong(pong) if pong.id == self.ping_id => {
                        self.stats.rtt_ms =
                            now_us.saturating_sub(pong.send_time_us) as f64 / 1000.0;
                    }
                    Payload::Bye(_) => self.events.push_back(CallEvent::Bye),
                    // Late Pongs are ignored.
                    _ => {}
                }
            }
            // Authentic, but a payload kind from a newer version: ignored.
            Err(OpenError::Payload(_)) => self.decrypted_since_join += 1,
            // Replays and our own reflected frames are dropped and counted apart: they say
            // nothing about whether the other side uses the same link.
            Err(OpenError::Decrypt(DecryptError::Replay | DecryptError::Reflected)) => {
                self.stats.replays += 1;
            }
            // Forged, from another link, or bound to another connection (an earlier call played
            // again by the relay): none of it plays.
            Err(_) => {
                self.stats.decrypt_failures += 1;
                self.failures_since_join += 1;
            }
        }
        self.scratch_decrypted = plain;
    }

    /// The repair decoder, for the stream of sender `kid`: a new sender starts it afresh.
    fn repair_stream(&mut self, kid: u64) -> &mut RepairDecoder {
        if self.repair_kid != Some(kid) {
            self.repair_kid = Some(kid);
            self.repair_decoder.reset();
        }
        &mut self.repair_decoder
    }

    /// Plays the frames the repair decoder rebuilt from sender `kid`'s frames.
    fn receive_rebuilt(&mut self, now_us: u64, kid: u64) {
        let mut buf = core::mem::take(&mut self.scratch_rebuilt);
        while let Some(payload) = self.repair_decoder.poll_rebuilt(&mut buf) {
            match payload {
                Payload::Audio(audio) => self.receive_audio(now_us, kid, &audio, true),
                Payload::CodedAudio(audio) => self.receive_coded(now_us, kid, &audio, true),
                _ => {}
            }
        }
        self.scratch_rebuilt = buf;
    }

    /// A coded audio frame received, or `rebuilt`: decoded, then played as any other.
    fn receive_coded(&mut self, now_us: u64, kid: u64, coded: &CodedAudio<'_>, rebuilt: bool) {
        let mut samples = core::mem::take(&mut self.scratch_i16);
        let mut pcm = core::mem::take(&mut self.scratch_decoded);
        // The frame's own count bounds what decoding allocates; the jitter buffer refuses
        // frames longer than it plays.
        if lossless::decode(coded.coded, lossless::MAX_SAMPLES, &mut samples).is_ok() {
            pcm.clear();
            pcm.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
            let audio = Audio {
                sample_rate: coded.sample_rate,
                channels: coded.channels,
                first_sample: coded.first_sample,
                capture_time_us: coded.capture_time_us,
                pcm: &pcm,
            };
            if !rebuilt {
                self.stats.frames_received_lossless += 1;
            }
            self.receive_audio(now_us, kid, &audio, rebuilt);
        } else if !rebuilt {
            // Authentic but not a coded frame: the other side's software is broken.
            self.refuse_audio(coded.sample_rate, coded.channels);
        }
        self.scratch_i16 = samples;
        self.scratch_decoded = pcm;
    }

    /// An audio frame received, or `rebuilt` from the others and a repair frame.
    fn receive_audio(&mut self, now_us: u64, kid: u64, audio: &Audio<'_>, rebuilt: bool) {
        if audio.channels != CHANNELS || audio.pcm.len() < 2 {
            if !rebuilt {
                self.refuse_audio(audio.sample_rate, audio.channels);
            }
            return;
        }
        let samples = audio.pcm.len() / 2;
        let fresh = match &self.incoming {
            Some(incoming) => incoming.rate != audio.sample_rate || incoming.kid != kid,
            None => true,
        };
        if fresh && rebuilt {
            // Only a received frame starts a stream.
            return;
        }
        if fresh {
            let config = JitterConfig::new(audio.sample_rate, self.config.context_rate, samples);
            // The playback worklet builds its own buffer; here the configuration is only checked.
            let jitter = match &self.worklet {
                Some(_) => config.validate().map(|()| None),
                None => JitterBuffer::new(config).map(Some),
            };
            let Ok(jitter) = jitter else {
                // A rate or frame size the jitter buffer refuses: not playable.
                self.refuse_audio(audio.sample_rate, audio.channels);
                return;
            };
            self.incoming = Some(Incoming {
                rate: audio.sample_rate,
                kid,
                jitter,
                new_stream: true,
                next_sample: None,
                frame_samples: samples,
            });
        }
        let incoming = self.incoming.as_mut().expect("set just above");
        // The index comes from the peer: one this close to u64::MAX is garbage, which the jitter
        // buffer discards (and counts); it must neither count as a gap nor move the stream's end.
        let end = audio.first_sample.checked_add(samples as u64);
        if let Some(expected) = incoming.next_sample
            && end.is_some()
            && audio.first_sample > expected
        {
            let gap = audio.first_sample - expected;
            self.stats.frames_lost += gap.div_ceil(incoming.frame_samples as u64);
        } else if rebuilt && incoming.next_sample.is_some_and(|n| audio.first_sample < n) {
            // It fills a gap counted as lost when the frame after it arrived.
            self.stats.frames_lost = self.stats.frames_lost.saturating_sub(1);
        }
        if let Some(end) = end {
            incoming.next_sample = Some(incoming.next_sample.map_or(end, |n| n.max(end)));
        }
        self.scratch_samples.resize(samples, 0.0);
        pcm::i16le_to_f32(&audio.pcm[..2 * samples], &mut self.scratch_samples);
        // A rebuilt frame arrives when the last frame of its group and the repair have: the
        // jitter buffer takes that as its arrival, so that its delay comes to cover the wait
        // (up to three frames) when frames are often lost, and rebuilt frames are in time.
        if let Some(worklet) = &mut self.worklet {
            // Dated on this worker's clock, mapped to the audio clock the worklet pulls on.
            let arrival = worklet.clock.to_audio_us(now_us);
            let mut flags = 0;
            if incoming.new_stream {
                flags |= record::NEW_STREAM;
            }
            if rebuilt {
                flags |= record::REBUILT;
            }
            if arrival.is_none() {
                flags |= record::NO_CLOCK;
            }
            incoming.new_stream = false;
            RecordHeader {
                flags,
                rate: audio.sample_rate,
                first_sample: audio.first_sample,
                arrival_us: arrival.unwrap_or(0),
                age_us: now_us.saturating_sub(audio.capture_time_us),
            }
            .write(&self.scratch_samples, &mut worklet.record);
            worklet.records.extend_from_slice(&worklet.record);
        }
        if let Some(jitter) = &mut incoming.jitter {
            jitter.push(now_us, audio.first_sample, &self.scratch_samples);
        }
        if rebuilt {
            self.stats.frames_repaired += 1;
            // The age of a frame that waited for others says nothing of the network's delay.
            return;
        }
        self.stats.frames_received += 1;
        self.stats.peer_rate = audio.sample_rate;
        // The frame's first sample plays once what is held ahead of it in the jitter buffer
        // and what the ring still holds have played; the device adds its own latency. (What is
        // held ahead is negative for a frame that came partly too late: the rest of it plays
        // that much earlier than its first sample would have.)
        let Some(jitter) = &incoming.jitter else {
            // The worklet estimates it when it takes the record.
            return;
        };
        let age_us = now_us.saturating_sub(audio.capture_time_us);
        let held_us = jitter.held_before(audio.first_sample) * 1e6;
        let after_us = self.playout.ring_left_us(now_us) + self.playout.device_us;
        let delay_us = age_us as f64 + held_us + after_us as f64;
        self.stats.mouth_to_ear_ms = delay_us.max(0.0) / 1000.0;
    }

    /// Counts an authentic audio frame this side cannot play, and says so once per arrival.
    fn refuse_audio(&mut self, sample_rate: u32, channels: u8) {
        self.stats.frames_refused += 1;
        if !self.refusal_said {
            self.refusal_said = true;
            self.events.push_back(CallEvent::AudioRefused {
                channels,
                sample_rate,
            });
        }
    }

    /// Fills `out` with the other side's audio at the context rate (silence when there is none).
    pub fn play(&mut self, now_us: u64, out: &mut [f32]) {
        self.play_ahead(now_us, 0, out);
    }

    /// Like [`Call::play`], for audio that starts playing `ahead_us` after `now_us` (it goes into
    /// a playback ring that holds that much): the jitter buffer measures its delay to the playout.
    pub fn play_ahead(&mut self, now_us: u64, ahead_us: u64, out: &mut [f32]) {
        match self.incoming.as_mut().and_then(|i| i.jitter.as_mut()) {
            Some(jitter) => jitter.pull_ahead(now_us, ahead_us, out),
            None => out.fill(0.0),
        }
        for &s in out.iter() {
            self.output_peak = self.output_peak.max(s.abs());
        }
    }

    /// The device played `samples` of silence because the playback ring ran dry: what the
    /// jitter buffer holds plays that much later (see [`JitterBuffer::output_gap`]).
    pub fn output_gap(&mut self, samples: u64) {
        if let Some(jitter) = self.incoming.as_mut().and_then(|i| i.jitter.as_mut()) {
            jitter.output_gap(samples);
        }
    }

    /// Whether every frame since the other person joined failed decryption (a different link).
    #[must_use]
    pub fn cannot_decrypt(&self) -> bool {
        self.decrypted_since_join == 0 && self.failures_since_join >= DECRYPT_FAILURES_BEFORE_ALARM
    }

    /// A snapshot of the statistics; resets the level peaks.
    pub fn stats(&mut self) -> Stats {
        let mut stats = self.stats.clone();
        if let Some(worklet) = &self.worklet {
            let s = &worklet.stats;
            let count = |i: usize| s[i].max(0.0) as u64;
            let frame = count(stat::FRAME_SAMPLES).max(1);
            stats.jitter_depth_ms = s[stat::DEPTH_MS];
            stats.jitter_target_ms = s[stat::TARGET_MS];
            stats.arrival_jitter_ms = s[stat::JITTER_MS];
            stats.drift_ppm = s[stat::DRIFT_PPM];
            stats.drift_error_ppm = Some(s[stat::DRIFT_ERROR_PPM]).filter(|e| e.is_finite());
            stats.resample_ratio_ppm = s[stat::CORRECTION_PPM];
            stats.samples_dropped = count(stat::DROPPED);
            stats.samples_inserted = count(stat::INSERTED);
            stats.edits = count(stat::EDITS);
            stats.underruns = count(stat::UNDERRUNS);
            stats.frames_concealed = count(stat::CONCEALED).div_ceil(frame);
            stats.samples_concealed = count(stat::CONCEALED);
            stats.frames_discarded = count(stat::DISCARDED) + count(stat::DROPPED).div_ceil(frame);
            // Lost on the worker's side of the ring (shared memory) or on the worklet's (port).
            stats.records_dropped += count(stat::DROPPED_RECORDS);
            stats.records_malformed = count(stat::BAD_RECORDS);
            // The worklet's estimate stops at the device, which it does not know.
            let m2e = s[stat::MOUTH_TO_EAR_MS];
            if m2e.is_finite() && m2e > 0.0 {
                stats.mouth_to_ear_ms = m2e + self.playout.device_us as f64 / 1e3;
            }
        } else if let Some(incoming) = &self.incoming
            && let Some(jitter) = &incoming.jitter
        {
            let jitter = jitter.stats();
            stats.jitter_depth_ms = jitter.depth_ms;
            stats.jitter_target_ms = jitter.target_ms;
            stats.arrival_jitter_ms = jitter.jitter_ms;
            stats.drift_ppm = jitter.drift_ppm;
            stats.drift_error_ppm = Some(jitter.drift_error_ppm).filter(|e| e.is_finite());
            stats.resample_ratio_ppm = jitter.correction_ppm;
            stats.samples_dropped = jitter.dropped_samples;
            stats.samples_inserted = jitter.inserted_samples;
            stats.edits = jitter.edits;
            stats.underruns = jitter.underruns;
            let frame = incoming.frame_samples.max(1) as u64;
            stats.frames_concealed = jitter.concealed_samples.div_ceil(frame);
            stats.samples_concealed = jitter.concealed_samples;
            stats.frames_discarded = jitter.late_packets
                + jitter.duplicate_packets
                + jitter.dropped_samples.div_ceil(frame);
        }
        stats.input_level = core::mem::take(&mut self.input_peak);
        stats.output_level = core::mem::take(&mut self.output_peak);
        stats
    }
}

#[cfg(test)]
impl Call {
    /// Replaces this connection's sender with one that has a single frame left.
    pub(crate) fn nearly_spend_sender(&mut self) {
        let kid = self.sender.as_ref().expect("connected").kid();
        self.sender = Some(FrameSender::at_counter(
            &self.leaf,
            kid,
            FrameSender::COUNTER_LIMIT - 1,
        ));
    }

    /// A 10 ms audio frame of silence declaring `channels` and `sample_rate`, bound to the other
    /// side, whatever this side could play.
    pub(crate) fn audio_frame_for_test(
        &mut self,
        channels: u8,
        sample_rate: u32,
        first_sample: u64,
    ) -> Vec<u8> {
        let samples = FrameDuration::Ms10.samples(sample_rate) * usize::from(channels);
        let pcm = vec![0u8; 2 * samples];
        self.scratch_plain.clear();
        Payload::Audio(Audio {
            sample_rate,
            channels,
            first_sample,
            capture_time_us: 0,
            pcm: &pcm,
        })
        .encode(&mut self.scratch_plain);
        self.seal(true).expect("bound to the other side")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const FRAME: usize = 480;

    fn config(context_rate: u32) -> CallConfig {
        CallConfig {
            wire_rate: RATE,
            frame: FrameDuration::Ms10,
            context_rate,
        }
    }

    fn pair(leaf_b: [u8; 32]) -> (Call, Call) {
        pair_with_kids(leaf_b, 0xA, 0xB)
    }

    /// Two calls on the line of `[7; 32]` (and `leaf_b`), connected with these KIDs.
    fn pair_with_kids(leaf_b: [u8; 32], kid_a: u64, kid_b: u64) -> (Call, Call) {
        let mut a = Call::new(config(RATE), LeafKey::from_random([7; 32]));
        let mut b = Call::new(config(RATE), LeafKey::from_random(leaf_b));
        a.connected(0, kid_a);
        b.connected(0, kid_b);
        a.peer_joined();
        b.peer_joined();
        // Hellos cross.
        while let Some(out) = a.poll_transmit() {
            b.receive(0, &out.bytes);
        }
        while let Some(out) = b.poll_transmit() {
            a.receive(0, &out.bytes);
        }
        (a, b)
    }

    /// `to` hears a Hello from another connection (KID `kid`) on its line.
    fn greet(to: &mut Call, kid: u64) {
        let mut other = Call::new(config(RATE), to.leaf.clone());
        other.connected(0, kid);
        while let Some(out) = other.poll_transmit() {
            to.receive(0, &out.bytes);
        }
    }

    /// A bound audio frame from `from` whose sample index the test chooses.
    fn audio_at(from: &mut Call, first_sample: u64) -> Vec<u8> {
        let pcm = vec![0u8; 2 * FRAME];
        from.scratch_plain.clear();
        Payload::Audio(Audio {
            sample_rate: RATE,
            channels: 1,
            first_sample,
            capture_time_us: 0,
            pcm: &pcm,
        })
        .encode(&mut from.scratch_plain);
        from.seal(true).expect("bound to the other side")
    }

    fn tone(freq: f64, start: usize, n: usize, rate: u32) -> Vec<f32> {
        (start..start + n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    /// Amplitude of `freq` in `samples` (a single-bin DFT).
    fn amplitude(samples: &[f32], freq: f64, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in samples.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate);
            re += f64::from(s) * phase.cos();
            im += f64::from(s) * phase.sin();
        }
        2.0 * (re * re + im * im).sqrt() / samples.len() as f64
    }

    #[test]
    fn a_tone_sent_by_one_side_plays_on_the_other() {
        let (mut a, mut b) = pair([7; 32]);
        let mut heard = Vec::new();
        for step in 0..100u64 {
            let now = step * 10_000;
            a.capture(now, &tone(1000.0, step as usize * FRAME, FRAME, RATE));
            while let Some(out) = a.poll_transmit() {
                b.receive(now, &out.bytes);
            }
            let mut out = vec![0.0; FRAME];
            b.play(now, &mut out);
            heard.extend_from_slice(&out);
        }
        let last_half = &heard[heard.len() / 2..];
        // The jitter buffer steers its delay by resampling a hair faster or slower (a few
        // thousandths), so look for the tone within half a percent of its pitch.
        let amp = (-10..=10)
            .map(|d| amplitude(last_half, 1000.0 + f64::from(d) * 0.5, RATE))
            .fold(0.0, f64::max);
        assert!(amp > 0.45 && amp < 0.52, "heard {amp}");
        assert!(amplitude(last_half, 440.0, RATE) < 0.01);
        let (sent, received) = (a.stats(), b.stats());
        assert_eq!(sent.frames_sent, 100);
        assert_eq!(received.frames_received, 100);
        assert_eq!((received.decrypt_failures, received.frames_lost), (0, 0));
        assert_eq!(received.peer_rate, RATE);
        assert!(received.output_level > 0.4 && sent.input_level > 0.4);
    }

    #[test]
    fn records_lost_on_either_side_of_the_ring_and_malformed_ones_reach_the_statistics() {
        let mut rng = line_protocol::testing::Rng::from_env();
        let (_, mut b) = pair([7; 32]);
        b.play_in_worklet();
        let mut worker_lost = 0;
        let mut report = [0.0; stat::LEN];
        for step in 1..=20u64 {
            // Worker side: a batch that found no room in the shared ring.
            if rng.unit() < 0.3 {
                let n = 1 + rng.next_u64() % 5;
                b.records_dropped(n);
                worker_lost += n;
            }
            // Worklet side: its own counts, which only grow.
            report[stat::DROPPED_RECORDS] += (rng.next_u64() % 3) as f64;
            report[stat::BAD_RECORDS] += (rng.next_u64() % 2) as f64;
            report[stat::RENDERED] = (step * 480) as f64;
            b.worklet_report(step * 10_000, &report);
            let stats = b.stats();
            assert_eq!(
                stats.records_dropped,
                worker_lost + report[stat::DROPPED_RECORDS] as u64
            );
            assert_eq!(stats.records_malformed, report[stat::BAD_RECORDS] as u64);
            assert_eq!(
                b.stats().records_dropped,
                stats.records_dropped,
                "read twice"
            );
        }
    }

    #[test]
    fn a_sent_frames_buffer_carries_the_next_frame() {
        let (mut a, mut b) = pair([7; 32]);
        let mut k = 0;
        let mut next_audio = |a: &mut Call| loop {
            a.capture(k * 10_000, &tone(440.0, k as usize * FRAME, FRAME, RATE));
            k += 1;
            if let Some(out) = a.poll_transmit() {
                assert!(out.is_audio);
                return out;
            }
        };
        let first = next_audio(&mut a);
        let buffer = first.bytes.as_ptr();
        b.receive(0, &first.bytes);
        // Kept alive in the pool, the buffer cannot come back from the allocator by chance.
        a.recycle(first);
        let second = next_audio(&mut a);
        assert_eq!(
            second.bytes.as_ptr(),
            buffer,
            "the next frame was sealed into a new buffer"
        );
        b.receive(10_000, &second.bytes);
        assert_eq!(b.stats().frames_received, 2, "both frames decrypt");
    }

    #[test]
    fn a_tone_sent_to_a_worklet_plays_there_from_frame_records() {
        let (mut a, mut b) = pair([7; 32]);
        b.play_in_worklet();
        b.set_playout(0, 0, 12_000);
        let mut playout = line_playout::Playout::new(RATE);
        let (mut rendered, mut heard) = (0u64, Vec::new());
        let mut quantum = [0.0f32; 128];
        for step in 0..100u64 {
            let now = step * 10_000;
            a.capture(now, &tone(1000.0, step as usize * FRAME, FRAME, RATE));
            while let Some(out) = a.poll_transmit() {
                b.receive(now, &out.bytes);
            }
            // What the worker writes to the ring, the worklet reads at its next quantum.
            if let Some(records) = b.take_records() {
                let mut words = &records[..];
                while !words.is_empty() {
                    let len = words[0] as usize;
                    playout.push(&words[..len], rendered as f64);
                    words = &words[len..];
                }
                records.clear();
            }
            while (rendered + 128) * 1_000_000 <= (now + 10_000) * u64::from(RATE) {
                playout.render(rendered as f64, &mut quantum);
                heard.extend_from_slice(&quantum);
                rendered += 128;
            }
            b.worklet_report(now + 10_000, playout.stats());
        }
        let last_half = &heard[heard.len() / 2..];
        let amp = amplitude(last_half, 1000.0, RATE);
        assert!(amp > 0.45 && amp < 0.52, "heard {amp}");
        let received = b.stats();
        assert_eq!(received.frames_received, 100);
        assert_eq!(received.underruns, 0);
        assert!(received.output_level > 0.4, "{}", received.output_level);
        assert!(received.jitter_target_ms > 0.0);
        // Age (0: one clock, no network) + what the buffer holds (about its target) + device.
        assert!(
            received.mouth_to_ear_ms > 12.0 + received.jitter_target_ms - 5.0
                && received.mouth_to_ear_ms < 12.0 + received.jitter_target_ms + 15.0,
            "{received:?}"
        );
        let mut own = vec![1.0; FRAME];
        b.play(1_000_000, &mut own);
        assert!(
            own.iter().all(|&s| s == 0.0),
            "the worker itself plays nothing"
        );
    }

    #[test]
    fn another_link_cannot_decrypt_and_says_so() {
        let (mut a, mut b) = pair([8; 32]);
        // Neither can open the other's Hello, so neither sends audio; each greets once a second.
        for step in 0..300u64 {
            let now = step * 10_000;
            a.capture(now, &[0.1; FRAME]);
            a.tick(now);
            while let Some(out) = a.poll_transmit() {
                assert!(!out.is_audio, "audio bound to nobody");
                b.receive(now, &out.bytes);
            }
        }
        let stats = b.stats();
        assert_eq!(stats.frames_received, 0);
        assert!(stats.decrypt_failures >= 3, "{}", stats.decrypt_failures);
        assert!(b.cannot_decrypt());
        assert!(!a.cannot_decrypt(), "a received nothing at all");
    }

    #[test]
    fn a_missing_frame_counts_as_lost_and_mute_sends_silence() {
        let (mut a, mut b) = pair([7; 32]);
        a.set_muted(true);
        for step in 0..5u64 {
            a.capture(step * 10_000, &[0.9; FRAME]);
            let mut first = true;
            while let Some(out) = a.poll_transmit() {
                // The third audio frame is lost on the way.
                if !(step == 2 && first) {
                    b.receive(step * 10_000, &out.bytes);
                }
                first = false;
            }
        }
        let stats = b.stats();
        assert_eq!((stats.frames_received, stats.frames_lost), (4, 1));
        assert!(a.stats().muted);
        let mut out = vec![1.0; FRAME];
        b.play(50_000, &mut out);
        assert!(out.iter().all(|s| s.abs() < 1e-6), "muted audio is silence");
    }

    #[test]
    fn on_datagrams_lost_coded_frames_are_rebuilt_exactly_and_not_concealed() {
        lost_frames_are_rebuilt_exactly_and_not_concealed(Coding::Lossless);
    }

    #[test]
    fn on_datagrams_lost_pcm_frames_are_rebuilt_exactly_and_not_concealed() {
        lost_frames_are_rebuilt_exactly_and_not_concealed(Coding::Pcm);
    }

    fn lost_frames_are_rebuilt_exactly_and_not_concealed(coding: Coding) {
        // 2.5 ms frames, as on datagrams, sent four at a time (a worker wakes every 10 ms or
        // so): a group and its repair arrive together, and every rebuilt frame is in time.
        let mut rng = line_protocol::testing::Rng::from_env();
        let short = CallConfig {
            frame: FrameDuration::Ms2_5,
            ..config(RATE)
        };
        let frame = FrameDuration::Ms2_5.samples(RATE) as u64;
        let mut a = Call::new(short, LeafKey::from_random([7; 32]));
        let mut b = Call::new(short, LeafKey::from_random([7; 32]));
        a.set_repair(true);
        a.set_coding(coding);
        a.connected(0, 0xA);
        b.connected(0, 0xB);
        a.peer_joined();
        b.peer_joined();
        while let Some(out) = a.poll_transmit() {
            b.receive(0, &out.bytes);
        }
        while let Some(out) = b.poll_transmit() {
            a.receive(0, &out.bytes);
        }
        // A frame at a time, 5 % of datagrams lost after the first second; which audio frames
        // and which repairs (the n-th protects audio frames gn to gn + g - 1) were lost.
        let g = usize::from(GROUP);
        let (mut audio_lost, mut repair_lost) = (Vec::new(), Vec::new());
        let mut heard = Vec::new();
        for step in 0..1_000u64 {
            let now = step * 10_000;
            a.capture(now, &tone(1000.0, step as usize * FRAME, FRAME, RATE));
            while let Some(out) = a.poll_transmit() {
                // Nothing of the last step is lost: a lost last frame is no gap the receiver
                // could count, and the last group's repair waits for a frame that never comes.
                let lost = (101..999).contains(&step) && rng.unit() < 0.05;
                match (out.is_audio, out.is_repair) {
                    (true, false) => audio_lost.push(lost),
                    (true, true) => {
                        // A group's repair follows the next group's first frame.
                        assert_eq!(audio_lost.len(), g * repair_lost.len() + g + 1);
                        repair_lost.push(lost);
                    }
                    _ => {}
                }
                if !lost {
                    b.receive(now, &out.bytes);
                }
            }
            let mut out = vec![0.0; FRAME];
            b.play(now, &mut out);
            heard.extend_from_slice(&out);
        }
        // A group whose only loss is one audio frame is rebuilt.
        let lost_audio = audio_lost.iter().filter(|l| **l).count() as u64;
        let rebuildable = repair_lost
            .iter()
            .enumerate()
            .filter(|&(n, repair)| {
                let group = &audio_lost[g * n..g * n + g];
                !repair && group.iter().filter(|l| **l).count() == 1
            })
            .count() as u64;
        let stats = b.stats();
        assert_eq!(a.stats().frames_sent, 4_000);
        let coded = if coding == Coding::Lossless { 4_000 } else { 0 };
        assert_eq!(a.stats().frames_sent_lossless, coded);
        assert!(lost_audio > 40, "{lost_audio}");
        assert_eq!(stats.frames_repaired, rebuildable, "{stats:?}");
        assert_eq!(stats.frames_lost, lost_audio - rebuildable, "{stats:?}");
        // Each frame not rebuilt is made up, and no more: the rebuilt ones play as sent.
        assert!(
            stats.samples_concealed <= (lost_audio - rebuildable) * frame,
            "{rebuildable} of {lost_audio} lost frames rebuildable: {stats:?}"
        );
        assert!(heard.iter().any(|v| *v != 0.0), "B played audio");
    }

    /// What a side that speaks protocol `version` makes of `from`'s next frames: whether each
    /// audio frame is coded, after its Hello announced `version` on connection `kid`.
    fn kinds_heard_by_a_peer_of_version(from: &mut Call, kid: u64, version: u16) -> Vec<bool> {
        let mut peer = Call::new(config(RATE), from.leaf.clone());
        peer.connected(0, kid);
        peer.outgoing.clear();
        peer.scratch_plain.clear();
        Payload::Hello(Hello {
            protocol_version: version,
            client: "test",
            sample_rate: RATE,
            channels: CHANNELS,
            frame_duration_us: 10_000,
        })
        .encode(&mut peer.scratch_plain);
        let hello = peer.seal(false).expect("connected");
        from.receive(0, &hello);
        // The peer's side of the binding: it heard `from` once.
        from.tick(u64::MAX / 2);
        while let Some(out) = from.poll_transmit() {
            peer.receive(0, &out.bytes);
        }
        let freq = 100.0 + 15_000.0 * line_protocol::testing::Rng::from_env().unit();
        from.capture(0, &tone(freq, 0, 4 * FRAME, RATE));
        let mut kinds = Vec::new();
        let mut plain = Vec::new();
        while let Some(out) = from.poll_transmit() {
            let Ok((_, payload)) = peer
                .binding
                .open(&mut peer.receiver, &out.bytes, &mut plain)
            else {
                panic!("the peer opens every frame");
            };
            match payload {
                Payload::Audio(_) => kinds.push(false),
                Payload::CodedAudio(_) => kinds.push(true),
                _ => {}
            }
        }
        kinds
    }

    #[test]
    fn audio_goes_out_coded_only_to_a_connection_whose_hello_says_it_reads_it() {
        let (mut a, _b) = pair([7; 32]);
        // A peer of version 1 (a client written to the first protocol) hears PCM only, a peer of
        // version 2 or later coded audio; each new connection says again.
        assert_eq!(
            kinds_heard_by_a_peer_of_version(&mut a, 0xC1, 1),
            [false; 4]
        );
        assert_eq!(kinds_heard_by_a_peer_of_version(&mut a, 0xC2, 2), [true; 4]);
        assert_eq!(kinds_heard_by_a_peer_of_version(&mut a, 0xC3, 7), [true; 4]);
        assert_eq!(
            kinds_heard_by_a_peer_of_version(&mut a, 0xC4, 1),
            [false; 4]
        );
        // Asked for PCM, a side sends PCM to anyone.
        a.set_coding(Coding::Pcm);
        assert_eq!(
            kinds_heard_by_a_peer_of_version(&mut a, 0xC6, 2),
            [false; 4]
        );
        let stats = a.stats();
        assert_eq!(stats.frames_sent_lossless, 8);
        // A tone at 48 kHz codes to well under half its PCM.
        assert!(
            stats.lossless_ratio > 0.05 && stats.lossless_ratio < 0.5,
            "{stats:?}"
        );
    }

    #[test]
    fn a_coded_frame_that_does_not_decode_is_refused_and_said() {
        let (mut a, mut b) = pair([7; 32]);
        a.scratch_plain.clear();
        Payload::CodedAudio(CodedAudio {
            sample_rate: RATE,
            channels: 1,
            first_sample: 0,
            capture_time_us: 0,
            // 480 samples announced, method 9: no such method.
            coded: &[1, 0xe0, 9, 0, 0],
        })
        .encode(&mut a.scratch_plain);
        let frame = a.seal(true).expect("bound");
        b.receive(0, &frame);
        b.receive(0, &frame);
        assert_eq!(b.stats().frames_refused, 1, "a replay is not refused twice");
        assert_eq!(
            b.poll_event(),
            Some(CallEvent::AudioRefused {
                channels: 1,
                sample_rate: RATE
            })
        );
        assert_eq!(b.stats().frames_received, 0);
    }

    #[test]
    fn over_a_websocket_no_repair_frames_are_sent() {
        let (mut a, _b) = pair([7; 32]);
        a.capture(0, &tone(1000.0, 0, 20 * FRAME, RATE));
        let sent: Vec<Outgoing> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(sent.iter().filter(|o| o.is_audio).count(), 20);
        assert!(sent.iter().all(|o| !o.is_repair));
    }

    #[test]
    fn audio_made_up_for_a_late_frame_is_counted_to_the_sample() {
        let (mut a, mut b) = pair([7; 32]);
        let mut held = Vec::new();
        let mut before = None;
        for step in 0..400u64 {
            let now = step * 10_000;
            a.capture(now, &tone(1000.0, step as usize * FRAME, FRAME, RATE));
            while let Some(out) = a.poll_transmit() {
                // One audio frame is held up 50 ms on the way: its turn to play comes first.
                if step == 300 && out.is_audio {
                    held.push(out.bytes);
                } else {
                    b.receive(now, &out.bytes);
                }
            }
            if step == 305 {
                for bytes in held.drain(..) {
                    b.receive(now, &bytes);
                }
            }
            let mut out = vec![0.0; FRAME];
            b.play(now, &mut out);
            if step == 299 {
                before = Some(b.stats().samples_concealed);
            }
        }
        let stats = b.stats();
        assert_eq!(before, Some(0), "nothing was made up on a steady stream");
        assert!(
            (1..=FRAME as u64).contains(&stats.samples_concealed),
            "the late frame's place, and only it, was made up: {stats:?}"
        );
        assert_eq!(stats.underruns, 0, "{stats:?}");
    }

    #[test]
    fn datagram_frames_are_the_longest_that_fit() {
        use line_protocol::webtransport::MAX_DATAGRAM_FRAME_LEN as MAX;
        let fit = |rate, wanted| frame_within(rate, wanted, MAX);
        assert_eq!(
            fit(200_000, FrameDuration::Ms10),
            Some(FrameDuration::Ms2_5)
        );
        assert_eq!(fit(48_000, FrameDuration::Ms20), Some(FrameDuration::Ms10));
        assert_eq!(fit(48_000, FrameDuration::Ms5), Some(FrameDuration::Ms5));
        assert_eq!(fit(96_000, FrameDuration::Ms10), Some(FrameDuration::Ms5));
        assert_eq!(
            fit(206_000, FrameDuration::Ms10),
            Some(FrameDuration::Ms2_5)
        );
        assert_eq!(fit(207_000, FrameDuration::Ms10), None);
        assert_eq!(fit(384_000, FrameDuration::Ms2_5), None);
        // What the sender makes at 200 kHz in 2.5 ms, with the longest header, fits.
        let mut a = Call::new(
            CallConfig {
                wire_rate: 200_000,
                frame: FrameDuration::Ms10,
                context_rate: 200_000,
            },
            LeafKey::from_random([7; 32]),
        );
        a.set_frame(FrameDuration::Ms2_5);
        a.connected(0, u64::MAX);
        a.peer_joined();
        greet(&mut a, 2);
        while a.poll_transmit().is_some() {}
        a.capture(10_000, &[0.3; 2_000]);
        let sizes: Vec<usize> = std::iter::from_fn(|| a.poll_transmit())
            .filter(|o| o.is_audio)
            .map(|o| o.bytes.len())
            .collect();
        assert_eq!(sizes.len(), 4, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= MAX), "{sizes:?}");
        assert_eq!(a.stats().frame_ms, 2.5);
    }

    #[test]
    fn our_own_frames_reflected_back_are_not_played() {
        let (mut a, _) = pair([7; 32]);
        a.capture(0, &[0.5; FRAME]);
        while let Some(out) = a.poll_transmit() {
            a.receive(0, &out.bytes);
        }
        let stats = a.stats();
        assert_eq!((stats.frames_received, stats.decrypt_failures), (0, 0));
        assert!(stats.replays > 0, "reflected frames are counted");
        let mut out = vec![1.0; FRAME];
        a.play(0, &mut out);
        assert!(out.iter().all(|s| *s == 0.0));
    }

    #[test]
    fn a_replayed_frame_is_counted_and_not_played_twice() {
        let (mut a, mut b) = pair([7; 32]);
        a.capture(0, &[0.5; FRAME]);
        let mut frames = Vec::new();
        while let Some(out) = a.poll_transmit() {
            frames.push(out.bytes);
        }
        for frame in frames.iter().chain(frames.iter()) {
            b.receive(0, frame);
        }
        let stats = b.stats();
        assert_eq!(stats.replays, frames.len() as u64);
        assert_eq!(stats.decrypt_failures, 0);
    }

    #[test]
    fn ping_and_pong_measure_the_round_trip() {
        let (mut a, mut b) = pair([7; 32]);
        a.tick(1_000_000);
        while let Some(out) = a.poll_transmit() {
            assert!(!out.is_audio);
            b.receive(1_010_000, &out.bytes);
        }
        while let Some(out) = b.poll_transmit() {
            a.receive(1_030_000, &out.bytes);
        }
        assert!((a.stats().rtt_ms - 30.0).abs() < 1e-9);
        // The next ping waits a second.
        a.tick(1_500_000);
        assert!(a.poll_transmit().is_none());
    }

    #[test]
    fn capture_at_the_device_rate_is_framed_at_the_wire_rate() {
        let mut a = Call::new(config(44_100), LeafKey::from_random([7; 32]));
        a.connected(0, 1);
        a.peer_joined();
        greet(&mut a, 2);
        while a.poll_transmit().is_some() {}
        for step in 0..100u64 {
            a.capture(step * 10_000, &[0.2; 441]);
        }
        let mut frames = 0;
        while let Some(out) = a.poll_transmit() {
            frames += usize::from(out.is_audio);
        }
        assert!(
            (99..=100).contains(&frames),
            "{frames} frames from one second"
        );
    }

    #[test]
    fn waking_only_when_a_frame_can_leave_sends_every_frame_as_early_as_waking_every_quantum() {
        let mut rng = line_protocol::testing::Rng::from_env();
        for (context_rate, wire_rate, frame) in [
            (44_100, 200_000, FrameDuration::Ms10),
            (48_000, 200_000, FrameDuration::Ms2_5),
            (44_100, 48_000, FrameDuration::Ms10),
            (48_000, 48_000, FrameDuration::Ms20),
        ] {
            let config = CallConfig {
                wire_rate,
                frame,
                context_rate,
            };
            let start = |kid| {
                let mut call = Call::new(config, LeafKey::from_random([7; 32]));
                call.connected(0, kid);
                call.peer_joined();
                greet(&mut call, 9);
                while call.poll_transmit().is_some() {}
                call
            };
            // One call woken at every 128-sample quantum, one only once it has what it asked for.
            let (mut every, mut asked) = (start(1), start(2));
            let mut gathered: Vec<f32> = Vec::new();
            let (mut sent, mut wakes) = (0, 0);
            let frames = |call: &mut Call| {
                let mut n = 0;
                while let Some(out) = call.poll_transmit() {
                    n += usize::from(out.is_audio);
                }
                n
            };
            for quantum in 0..2_000u64 {
                let now = quantum * 128 * 1_000_000 / u64::from(context_rate);
                let samples: Vec<f32> = (0..128).map(|_| rng.range(-0.5, 0.5) as f32).collect();
                every.capture(now, &samples);
                gathered.extend_from_slice(&samples);
                let mut now_asked = 0;
                if gathered.len() >= asked.capture_wanted() {
                    asked.capture(now, &gathered);
                    gathered.clear();
                    wakes += 1;
                    now_asked = frames(&mut asked);
                }
                let now_every = frames(&mut every);
                assert_eq!(
                    now_asked, now_every,
                    "{context_rate} -> {wire_rate} Hz, {frame:?}: quantum {quantum} sent {now_asked} frames, not {now_every}"
                );
                sent += now_every;
            }
            assert!(sent > 0, "frames were sent");
            assert!(
                wakes <= sent + sent / 4,
                "{context_rate} -> {wire_rate} Hz, {frame:?}: {wakes} wakes for {sent} frames"
            );
        }
    }

    #[test]
    fn nothing_is_sent_before_connecting_or_after_disconnecting() {
        let mut a = Call::new(config(RATE), LeafKey::from_random([7; 32]));
        a.capture(0, &[0.1; FRAME]);
        a.tick(0);
        assert!(a.poll_transmit().is_none());
        a.connected(0, 1);
        a.disconnected();
        a.capture(10_000, &[0.1; FRAME]);
        assert!(a.poll_transmit().is_none());
    }

    #[test]
    fn audio_waits_for_the_other_persons_hello_but_hello_does_not() {
        let mut a = Call::new(config(RATE), LeafKey::from_random([7; 32]));
        a.connected(0, 1);
        a.capture(0, &[0.1; 3 * FRAME]);
        a.tick(0);
        let kinds: Vec<bool> =
            std::iter::from_fn(|| a.poll_transmit().map(|o| o.is_audio)).collect();
        assert_eq!(kinds, [false], "a Hello, and no audio or Ping while alone");
        a.peer_joined();
        a.capture(30_000, &[0.1; FRAME]);
        let kinds: Vec<bool> =
            std::iter::from_fn(|| a.poll_transmit().map(|o| o.is_audio)).collect();
        assert_eq!(kinds, [false], "a Hello again; audio waits for theirs");
        let mut b = Call::new(config(RATE), LeafKey::from_random([7; 32]));
        b.connected(0, 2);
        b.peer_joined();
        while let Some(out) = b.poll_transmit() {
            a.receive(40_000, &out.bytes);
        }
        a.capture(40_000, &[0.1; FRAME]);
        let audio = std::iter::from_fn(|| a.poll_transmit())
            .filter(|o| o.is_audio)
            .count();
        assert_eq!(audio, 1);
        a.peer_left();
        a.capture(50_000, &[0.1; FRAME]);
        assert!(std::iter::from_fn(|| a.poll_transmit()).all(|o| !o.is_audio));
    }

    /// Sample `i` of a sequence that never repeats a stretch: 16-bit values, scaled as the wire
    /// scales them.
    fn sequence(i: usize) -> f32 {
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        f32::from((x as i16) / 4) / 32_767.0
    }

    #[test]
    fn the_samples_played_are_the_samples_sent() {
        // One clock, rates equal, a steady network: what B plays is what A's microphone gave,
        // bit for bit, from the first sample B plays to the last, apart from the edits B counts.
        let (mut a, mut b) = pair([7; 32]);
        let mut heard = Vec::new();
        for step in 0..2_000u64 {
            let now = step * 10_000;
            let captured: Vec<f32> = (0..FRAME)
                .map(|k| sequence(step as usize * FRAME + k))
                .collect();
            a.capture(now, &captured);
            // Half the frames arrive 3 ms late.
            let late = if step % 2 == 0 { 3_000 } else { 0 };
            while let Some(out) = a.poll_transmit() {
                b.receive(now + late, &out.bytes);
            }
            for _ in 0..4 {
                let mut out = vec![0.0; FRAME / 4];
                b.play(now + late, &mut out);
                heard.extend_from_slice(&out);
            }
        }
        let stats = b.stats();
        assert_eq!(
            (stats.underruns, stats.frames_concealed, stats.frames_lost),
            (0, 0, 0)
        );
        // Every frame came losslessly coded: what follows checks the coding bit for bit too.
        assert_eq!(stats.frames_received_lossless, stats.frames_received);
        assert_eq!(stats.resample_ratio_ppm, 0.0);
        // Follow the sequence through B's output: exact runs, and a jump at each edit.
        let start = heard
            .iter()
            .position(|v| *v != 0.0)
            .expect("B played audio");
        let splice = RATE as usize / 500;
        let first = (0..RATE as usize)
            .find(|&i| (0..16).all(|k| heard[start + splice + k] == sequence(i + k)))
            .expect("the sequence is found")
            - splice;
        let (mut exact, mut index, mut jumps, mut j) = (0u64, first, 0i64, start);
        while j < heard.len() {
            if heard[j] == sequence(index) {
                (exact, index, j) = (exact + 1, index + 1, j + 1);
                continue;
            }
            // A cross-fade: past it, the sequence goes on from somewhere near.
            j += splice;
            let found = (0..4_800i64)
                .flat_map(|d| [d, -d])
                .map(|d| (index + splice) as i64 + d)
                .find(|&i| i >= 0 && (0..16).all(|k| heard[j + k] == sequence(i as usize + k)))
                .expect("the sequence goes on after an edit");
            jumps += found - (index + splice) as i64;
            index = found as usize;
        }
        let edits = stats.edits;
        assert_eq!(
            jumps,
            stats.samples_dropped as i64 - stats.samples_inserted as i64
        );
        let expected = (heard.len() - start) as u64 - (edits + 1) * splice as u64;
        assert!(
            exact >= expected,
            "{exact} of {} exact, {edits} edits",
            heard.len() - start
        );
    }

    #[test]
    fn audio_this_side_cannot_play_is_counted_and_said_once() {
        let (mut a, mut b) = pair([7; 32]);
        // Stereo, and a rate above the protocol's: authentic, but not playable here.
        for (i, (channels, rate)) in [(2, RATE), (2, RATE), (1, 400_000)].into_iter().enumerate() {
            let frame = a.audio_frame_for_test(channels, rate, i as u64 * FRAME as u64);
            b.receive(0, &frame);
        }
        let stats = b.stats();
        assert_eq!((stats.frames_refused, stats.frames_received), (3, 0));
        assert_eq!(
            stats.decrypt_failures, 0,
            "refused is not a decryption failure"
        );
        let events: Vec<CallEvent> = std::iter::from_fn(|| b.poll_event()).collect();
        assert_eq!(
            events,
            [CallEvent::AudioRefused {
                channels: 2,
                sample_rate: RATE
            }]
        );
        // Mono at a supported rate still plays, and the next arrival may be told again.
        let frame = a.audio_frame_for_test(1, RATE, 3 * FRAME as u64);
        b.receive(0, &frame);
        assert_eq!(b.stats().frames_received, 1);
        a.peer_joined();
        b.peer_joined();
        while let Some(out) = a.poll_transmit() {
            b.receive(0, &out.bytes);
        }
        while let Some(out) = b.poll_transmit() {
            a.receive(0, &out.bytes);
        }
        let frame = a.audio_frame_for_test(2, RATE, 4 * FRAME as u64);
        b.receive(0, &frame);
        assert!(matches!(
            b.poll_event(),
            Some(CallEvent::AudioRefused { .. })
        ));
        assert_eq!(b.stats().frames_refused, 4);
    }

    #[test]
    fn a_spent_sender_asks_for_a_new_connection_and_sends_nothing_more() {
        let (mut a, mut b) = pair([7; 32]);
        a.nearly_spend_sender();
        a.capture(0, &[0.1; 3 * FRAME]);
        let sent: Vec<Outgoing> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(sent.len(), 1, "the last counter is used, then nothing");
        b.receive(0, &sent[0].bytes);
        assert_eq!(
            b.stats().frames_received,
            1,
            "the last frame is as good as any"
        );
        assert_eq!(a.poll_event(), Some(CallEvent::SenderSpent));
        assert_eq!(a.poll_event(), None, "said once");
        a.tick(5_000_000);
        assert!(a.poll_transmit().is_none());
        // A new connection draws a new KID, and the call goes on.
        a.disconnected();
        a.connected(6_000_000, 0xA2);
        a.peer_joined();
        b.peer_joined();
        while let Some(out) = a.poll_transmit() {
            b.receive(6_000_000, &out.bytes);
        }
        while let Some(out) = b.poll_transmit() {
            a.receive(6_000_000, &out.bytes);
        }
        a.capture(6_010_000, &[0.1; FRAME]);
        for out in std::iter::from_fn(|| a.poll_transmit()) {
            b.receive(6_010_000, &out.bytes);
        }
        assert_eq!(b.stats().frames_received, 2);
    }

    /// Every frame `from` sends while capturing `steps` frames of a tone.
    fn record(from: &mut Call, steps: u64, start: u64) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for step in start..start + steps {
            from.capture(
                step * 10_000,
                &tone(1000.0, step as usize * FRAME, FRAME, RATE),
            );
            from.tick(step * 10_000);
            frames.extend(std::iter::from_fn(|| from.poll_transmit()).map(|o| o.bytes));
        }
        frames
    }

    #[test]
    fn a_recorded_earlier_call_replayed_by_the_relay_is_refused_and_counted() {
        // The first call on this link: the relay records everything a sends to b.
        let (mut a, mut b) = pair([7; 32]);
        let recording = record(&mut a, 50, 0);
        for frame in &recording {
            b.receive(0, frame);
        }
        assert_eq!(b.stats().frames_received, 50, "the first call plays");

        // A later call on the same link (new pages, new connections, new random KIDs). The relay
        // plays the recording to b.
        let (_, mut later) = pair_with_kids([7; 32], 0xA2, 0xB2);
        for (i, frame) in recording.iter().enumerate() {
            later.receive(i as u64 * 10_000, frame);
        }
        let stats = later.stats();
        assert_eq!(
            stats.frames_received, 0,
            "no recorded audio is taken for live"
        );
        assert!(
            stats.decrypt_failures >= 50,
            "counted: {}",
            stats.decrypt_failures
        );
        let mut out = vec![1.0; FRAME];
        later.play(500_000, &mut out);
        assert!(out.iter().all(|s| *s == 0.0), "nothing plays");
        // The recording's Hellos are authentic and unbound; they do no more than that.
        assert!(!later.cannot_decrypt());
    }

    #[test]
    fn the_other_persons_reconnect_rebinds_without_a_failure() {
        let (mut a, mut b) = pair([7; 32]);
        for frame in record(&mut a, 5, 0) {
            b.receive(0, &frame);
        }
        // a's network changed: a new connection (new KID) takes its slot, and the relay greets
        // both again.
        a.disconnected();
        a.connected(60_000, 0xA2);
        a.peer_joined();
        b.peer_joined();
        assert!(
            std::iter::from_fn(|| b.poll_transmit()).all(|o| !o.is_audio),
            "b binds nothing to a until a's Hello"
        );
        b.capture(60_000, &[0.1; FRAME]);
        assert!(std::iter::from_fn(|| b.poll_transmit()).all(|o| !o.is_audio));
        // Hellos cross again; audio flows both ways with nothing refused.
        while let Some(out) = a.poll_transmit() {
            b.receive(70_000, &out.bytes);
        }
        b.tick(70_000);
        while let Some(out) = b.poll_transmit() {
            a.receive(70_000, &out.bytes);
        }
        for frame in record(&mut a, 10, 8) {
            b.receive(100_000, &frame);
        }
        b.capture(110_000, &[0.1; FRAME]);
        while let Some(out) = b.poll_transmit() {
            a.receive(110_000, &out.bytes);
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.decrypt_failures, sb.decrypt_failures), (0, 0));
        assert_eq!((sa.replays, sb.replays), (0, 0));
        assert_eq!(sb.frames_received, 15);
        assert_eq!(sa.frames_received, 1);
    }

    #[test]
    fn a_sample_index_near_the_end_of_u64_is_discarded_not_a_panic() {
        let (mut a, mut b) = pair([7; 32]);
        for frame in record(&mut a, 10, 0) {
            b.receive(0, &frame);
        }
        let before = b.stats();
        // The other side (it holds the leaf, so its frames authenticate) sends indices whose end
        // does not fit in a u64.
        for first_sample in [u64::MAX - 10, u64::MAX - FRAME as u64 + 1, u64::MAX] {
            let frame = audio_at(&mut a, first_sample);
            b.receive(100_000, &frame);
        }
        let stats = b.stats();
        assert_eq!(
            stats.frames_lost, before.frames_lost,
            "garbage is not a gap"
        );
        assert_eq!(
            stats.frames_discarded,
            before.frames_discarded + 3,
            "each is discarded and counted"
        );
        // The stream goes on where it was, with nothing lost.
        for frame in record(&mut a, 5, 10) {
            b.receive(150_000, &frame);
        }
        let stats = b.stats();
        assert_eq!(stats.frames_lost, before.frames_lost);
        assert_eq!(stats.frames_received, before.frames_received + 8);
    }
}
