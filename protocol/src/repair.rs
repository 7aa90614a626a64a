//! Forward error correction for audio on datagrams: a repair payload after every group of
//! [`GROUP`] audio frames rebuilds any one frame of the group that was lost.
//!
//! Over WebTransport a lost datagram is a lost frame, which the receiver's jitter buffer can only
//! conceal. A [`Repair`] payload is the XOR of the group's frames (their PCM and their capture
//! times): with the other frames of the group it gives back the missing one bit for bit. Coded
//! frames ([`CodedAudio`]) differ in length: their [`CodedRepair`] XORs their coded bytes, each
//! zero-padded to the longest, and carries each frame's length. A repair is sealed like any other
//! payload, so the relay sees only another frame and only the two people on the line can read it;
//! a receiver that does not know it drops it as an unknown type.
//!
//! Sans-IO like the rest of the crate: [`RepairEncoder`] is fed each audio payload a sender seals
//! and answers with a repair payload once a group is complete; [`RepairDecoder`] is fed every
//! audio and repair payload that arrives, and [`RepairDecoder::poll_rebuilt`] gives the frames it
//! could rebuild, whichever arrived last. Both hold a bounded amount of memory and allocate nothing
//! once they have seen a few frames.
//!
//! ```
//! use line_protocol::payload::{Audio, Payload};
//! use line_protocol::repair::{RepairDecoder, RepairEncoder};
//!
//! let mut encoder = RepairEncoder::new(2);
//! let mut decoder = RepairDecoder::new();
//! let frame = |first_sample, pcm| Audio {
//!     sample_rate: 48_000,
//!     channels: 1,
//!     first_sample,
//!     capture_time_us: 1_000 + first_sample,
//!     pcm,
//! };
//! let (a, b) = (frame(0, &[1, 2, 3, 4][..]), frame(2, &[5, 6, 7, 8][..]));
//! assert!(encoder.handle_audio(&a).is_none());
//! let repair = encoder.handle_audio(&b).expect("the group of two is complete");
//! // `a` is lost: `b` and the repair bring it back.
//! decoder.handle_audio(&b);
//! decoder.handle_repair(&repair);
//! let mut pcm = Vec::new();
//! assert_eq!(decoder.poll_rebuilt(&mut pcm), Some(Payload::Audio(a)));
//! assert_eq!(decoder.poll_rebuilt(&mut pcm), None);
//! ```

use alloc::vec::Vec;

use crate::payload::{Audio, CodedAudio, CodedRepair, Payload, Repair};

/// Audio frames per repair payload a sender uses on datagrams. Four costs a quarter more
/// bandwidth: 200 kHz mono in 2.5 ms frames is about 3.5 Mbit/s with its QUIC and IP headers,
/// 4.4 Mbit/s with repair, within the 8 Mbit/s of a mobile link with room for the other
/// direction's acknowledgements (less than half that when coded). A frame is lost for good only
/// when another of its group's five datagrams is lost too: at 1 % random loss one frame in 2500
/// instead of one in 100, at 3 % one in 290 instead of one in 33. A larger group costs less and
/// protects less; a smaller one the reverse. A rebuilt frame waits for the rest of its group and
/// its repair, which line sends after the next group's first frame: the last frame of a group one
/// frame duration, the first four (10 ms at 2.5 ms frames).
pub const GROUP: u8 = 4;

/// The largest group a decoder takes: a repair for more frames is ignored.
pub const MAX_GROUP: u8 = 16;

/// Audio frames a decoder remembers, newest first out of mind last: two of the largest groups,
/// which at 2.5 ms per frame covers 80 ms of reordering.
const REMEMBERED_FRAMES: usize = 2 * MAX_GROUP as usize;

/// Repair payloads a decoder keeps while their groups are still missing two frames or more.
const PENDING_REPAIRS: usize = 8;

/// What identifies a frame of a stream, and what a group's frames share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Place {
    /// Coded ([`CodedAudio`]) or PCM ([`Audio`]): a group holds one kind.
    coded: bool,
    sample_rate: u32,
    channels: u8,
    first_sample: u64,
}

impl Place {
    fn of_audio(audio: &Audio<'_>) -> Self {
        Self {
            coded: false,
            sample_rate: audio.sample_rate,
            channels: audio.channels,
            first_sample: audio.first_sample,
        }
    }

    fn of_coded(audio: &CodedAudio<'_>) -> Self {
        Self {
            coded: true,
            sample_rate: audio.sample_rate,
            channels: audio.channels,
            first_sample: audio.first_sample,
        }
    }

    /// The same stream and kind, at another sample.
    fn at(self, first_sample: u64) -> Self {
        Self {
            first_sample,
            ..self
        }
    }
}

/// Builds a repair payload for every `group` consecutive audio frames a sender sends.
///
/// A group is frames of one kind (PCM or coded), rate, channel count and sample count whose
/// `first_sample`s follow on from each other. A frame that does not continue the group (a gap in
/// the sender's count, another length) starts a new group, and the unfinished one is given up: its
/// frames go unprotected.
#[derive(Debug, Clone)]
pub struct RepairEncoder {
    group: u8,
    /// Frames XORed into the group so far.
    count: u8,
    /// The group's first frame.
    place: Place,
    /// Samples per channel in each frame.
    frame_samples: u64,
    /// The `first_sample` that continues the group.
    next_sample: u64,
    capture_time_xor: u64,
    /// Each coded frame's length, 16 bits big-endian, as [`CodedRepair::lengths`].
    lengths: [u8; 2 * MAX_GROUP as usize],
    /// The XOR of the frames' bytes, as long as the longest.
    xor: Vec<u8>,
}

impl RepairEncoder {
    /// An encoder for groups of `group` frames (1..=[`MAX_GROUP`]; [`GROUP`] is what line sends).
    ///
    /// # Panics
    ///
    /// When `group` is 0 or above [`MAX_GROUP`]: a receiver would ignore such repairs.
    #[must_use]
    pub fn new(group: u8) -> Self {
        assert!(
            (1..=MAX_GROUP).contains(&group),
            "a repair group holds 1 to {MAX_GROUP} frames"
        );
        Self {
            group,
            count: 0,
            place: Place::default(),
            frame_samples: 0,
            next_sample: 0,
            capture_time_xor: 0,
            lengths: [0; 2 * MAX_GROUP as usize],
            xor: Vec::new(),
        }
    }

    /// Gives up the group under way (a new connection, whose frames a receiver would not place
    /// with the old ones).
    pub fn reset(&mut self) {
        self.count = 0;
    }

    /// The sender sends `audio`: the repair payload to send after it when it completes a group.
    pub fn handle_audio(&mut self, audio: &Audio<'_>) -> Option<Repair<'_>> {
        let samples = audio.samples_per_channel() as u64;
        if !self.add(
            Place::of_audio(audio),
            audio.capture_time_us,
            samples,
            audio.pcm,
        ) {
            return None;
        }
        Some(Repair {
            sample_rate: self.place.sample_rate,
            channels: self.place.channels,
            first_sample: self.place.first_sample,
            frames: self.group,
            capture_time_xor: self.capture_time_xor,
            pcm_xor: &self.xor,
        })
    }

    /// The sender sends the coded `audio`: the coded repair payload to send after it when it
    /// completes a group.
    pub fn handle_coded_audio(&mut self, audio: &CodedAudio<'_>) -> Option<CodedRepair<'_>> {
        let samples = audio.samples_per_channel() as u64;
        if u16::try_from(audio.coded.len()).is_err() || u16::try_from(samples).is_err() {
            // Lengths a coded repair cannot carry (far beyond any frame line sends).
            self.count = 0;
            return None;
        }
        if !self.add(
            Place::of_coded(audio),
            audio.capture_time_us,
            samples,
            audio.coded,
        ) {
            return None;
        }
        Some(CodedRepair {
            sample_rate: self.place.sample_rate,
            channels: self.place.channels,
            first_sample: self.place.first_sample,
            frames: self.group,
            capture_time_xor: self.capture_time_xor,
            frame_samples: self.frame_samples as u16,
            lengths: &self.lengths[..2 * usize::from(self.group)],
            coded_xor: &self.xor,
        })
    }

    /// Adds a frame of `samples` per channel and `bytes` (PCM or coded) at `place`; true when
    /// it completes a group.
    fn add(&mut self, place: Place, capture_time_us: u64, samples: u64, bytes: &[u8]) -> bool {
        if bytes.is_empty() || place.channels == 0 || samples == 0 {
            // Nothing a receiver would need rebuilt, and no length to place the next frame by.
            self.count = 0;
            return false;
        }
        let Some(next_sample) = place.first_sample.checked_add(samples) else {
            self.count = 0;
            return false;
        };
        let continues = self.count > 0
            && place == self.place.at(self.next_sample)
            && samples == self.frame_samples
            && (place.coded || bytes.len() == self.xor.len());
        if continues {
            self.capture_time_xor ^= capture_time_us;
            xor_into(&mut self.xor, bytes);
        } else {
            self.place = place;
            self.frame_samples = samples;
            self.capture_time_xor = capture_time_us;
            self.xor.clear();
            self.xor.extend_from_slice(bytes);
            self.count = 0;
        }
        let at = 2 * usize::from(self.count);
        self.lengths[at..at + 2].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.count += 1;
        self.next_sample = next_sample;
        if self.count < self.group {
            return false;
        }
        self.count = 0;
        true
    }
}

/// An audio frame as the decoder remembers it.
#[derive(Debug, Clone, Default)]
struct Remembered {
    used: bool,
    /// Rebuilt here and not yet taken by [`RepairDecoder::poll_rebuilt`].
    rebuilt: bool,
    place: Place,
    /// Samples per channel.
    samples: u64,
    capture_time_us: u64,
    /// Its PCM or its coded bytes.
    bytes: Vec<u8>,
}

/// A repair payload whose group still misses two frames or more.
#[derive(Debug, Clone, Default)]
struct Pending {
    used: bool,
    /// The group's first frame.
    place: Place,
    frames: u8,
    /// Samples per channel in each frame.
    frame_samples: u64,
    capture_time_xor: u64,
    /// Each frame's length in bytes.
    lengths: [usize; MAX_GROUP as usize],
    xor: Vec<u8>,
}

/// Rebuilds lost audio frames from the frames that did arrive and the repair payloads.
///
/// Feed it every authentic audio payload ([`RepairDecoder::handle_audio`],
/// [`RepairDecoder::handle_coded_audio`]) and repair payload ([`RepairDecoder::handle_repair`],
/// [`RepairDecoder::handle_coded_repair`]) of one sender's stream, in any order, then take what it
/// rebuilt with [`RepairDecoder::poll_rebuilt`] until `None`. It rebuilds a frame when exactly one
/// frame of a group is missing, never one that arrived (as far as it remembers: the last
/// 32 frames), and each at most once. Duplicates are ignored. A new stream (another sender KID,
/// another rate) needs [`RepairDecoder::reset`].
#[derive(Debug, Clone)]
pub struct RepairDecoder {
    frames: Vec<Remembered>,
    /// Where the next frame goes: the oldest.
    next_frame: usize,
    pending: Vec<Pending>,
    next_pending: usize,
    scratch: Vec<u8>,
}

impl Default for RepairDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RepairDecoder {
    /// An empty decoder.
    #[must_use]
    pub fn new() -> Self {
        Self {
            frames: (0..REMEMBERED_FRAMES)
                .map(|_| Remembered::default())
                .collect(),
            next_frame: 0,
            pending: (0..PENDING_REPAIRS).map(|_| Pending::default()).collect(),
            next_pending: 0,
            scratch: Vec::new(),
        }
    }

    /// Forgets every frame and repair (a new stream), keeping its buffers.
    pub fn reset(&mut self) {
        for frame in &mut self.frames {
            frame.used = false;
            frame.rebuilt = false;
        }
        for pending in &mut self.pending {
            pending.used = false;
        }
    }

    /// An audio frame arrived. It may complete a group whose repair came first.
    pub fn handle_audio(&mut self, audio: &Audio<'_>) {
        let samples = audio.samples_per_channel() as u64;
        self.handle_frame(
            Place::of_audio(audio),
            samples,
            audio.capture_time_us,
            audio.pcm,
        );
    }

    /// A coded audio frame arrived. It may complete a group whose repair came first.
    pub fn handle_coded_audio(&mut self, audio: &CodedAudio<'_>) {
        let samples = audio.samples_per_channel() as u64;
        self.handle_frame(
            Place::of_coded(audio),
            samples,
            audio.capture_time_us,
            audio.coded,
        );
    }

    fn handle_frame(&mut self, place: Place, samples: u64, capture_time_us: u64, bytes: &[u8]) {
        if self.find(place).is_some() {
            return;
        }
        self.remember(place, samples, capture_time_us, bytes, false);
        for i in 0..self.pending.len() {
            let p = &self.pending[i];
            if p.used
                && p.place.at(place.first_sample) == place
                && member(
                    p.place.first_sample,
                    p.frames,
                    p.frame_samples,
                    place.first_sample,
                )
            {
                self.resolve(i);
            }
        }
    }

    /// A repair payload arrived: it rebuilds its group's missing frame now if only one is
    /// missing, or later when all but one have come.
    pub fn handle_repair(&mut self, repair: &Repair<'_>) {
        if repair.frames == 0
            || repair.frames > MAX_GROUP
            || repair.channels == 0
            || repair.pcm_xor.is_empty()
        {
            return;
        }
        let place = Place {
            coded: false,
            sample_rate: repair.sample_rate,
            channels: repair.channels,
            first_sample: repair.first_sample,
        };
        let samples = repair.samples_per_channel() as u64;
        let lengths = [repair.pcm_xor.len(); MAX_GROUP as usize];
        self.add_pending(
            place,
            repair.frames,
            samples,
            repair.capture_time_xor,
            lengths,
            repair.pcm_xor,
        );
    }

    /// A coded repair payload arrived: as [`RepairDecoder::handle_repair`], for coded frames.
    pub fn handle_coded_repair(&mut self, repair: &CodedRepair<'_>) {
        if repair.frames == 0
            || repair.frames > MAX_GROUP
            || repair.channels == 0
            || repair.frame_samples == 0
            || repair.coded_xor.is_empty()
            || repair.lengths.len() != 2 * usize::from(repair.frames)
        {
            return;
        }
        let place = Place {
            coded: true,
            sample_rate: repair.sample_rate,
            channels: repair.channels,
            first_sample: repair.first_sample,
        };
        let mut lengths = [0; MAX_GROUP as usize];
        for (length, len) in lengths.iter_mut().zip(repair.frame_lengths()) {
            *length = len;
        }
        if lengths.iter().any(|&len| len > repair.coded_xor.len()) {
            return;
        }
        self.add_pending(
            place,
            repair.frames,
            u64::from(repair.frame_samples),
            repair.capture_time_xor,
            lengths,
            repair.coded_xor,
        );
    }

    fn add_pending(
        &mut self,
        place: Place,
        frames: u8,
        frame_samples: u64,
        capture_time_xor: u64,
        lengths: [usize; MAX_GROUP as usize],
        xor: &[u8],
    ) {
        if frame_samples == 0 || self.pending.iter().any(|p| p.used && p.place == place) {
            return;
        }
        let i = self.next_pending;
        self.next_pending = (i + 1) % self.pending.len();
        let p = &mut self.pending[i];
        p.used = true;
        p.place = place;
        p.frames = frames;
        p.frame_samples = frame_samples;
        p.capture_time_xor = capture_time_xor;
        p.lengths = lengths;
        p.xor.clear();
        p.xor.extend_from_slice(xor);
        self.resolve(i);
    }

    /// The next rebuilt frame, an [`Payload::Audio`] or a [`Payload::CodedAudio`] as it was
    /// sent, its bytes written to `buf`; `None` when there is none.
    pub fn poll_rebuilt<'a>(&mut self, buf: &'a mut Vec<u8>) -> Option<Payload<'a>> {
        let frame = self.frames.iter_mut().find(|f| f.used && f.rebuilt)?;
        frame.rebuilt = false;
        buf.clear();
        buf.extend_from_slice(&frame.bytes);
        let p = frame.place;
        Some(if p.coded {
            Payload::CodedAudio(CodedAudio {
                sample_rate: p.sample_rate,
                channels: p.channels,
                first_sample: p.first_sample,
                capture_time_us: frame.capture_time_us,
                coded: buf,
            })
        } else {
            Payload::Audio(Audio {
                sample_rate: p.sample_rate,
                channels: p.channels,
                first_sample: p.first_sample,
                capture_time_us: frame.capture_time_us,
                pcm: buf,
            })
        })
    }

    fn find(&self, place: Place) -> Option<usize> {
        self.frames.iter().position(|f| f.used && f.place == place)
    }

    fn remember(
        &mut self,
        place: Place,
        samples: u64,
        capture_time_us: u64,
        bytes: &[u8],
        rebuilt: bool,
    ) {
        let i = self.next_frame;
        self.next_frame = (i + 1) % self.frames.len();
        let f = &mut self.frames[i];
        f.used = true;
        f.rebuilt = rebuilt;
        f.place = place;
        f.samples = samples;
        f.capture_time_us = capture_time_us;
        f.bytes.clear();
        f.bytes.extend_from_slice(bytes);
    }

    /// Rebuilds the one missing frame of pending repair `i`'s group, or forgets the repair when
    /// nothing is missing or the group cannot be rebuilt; keeps it while two or more are missing.
    fn resolve(&mut self, i: usize) {
        let p = &self.pending[i];
        let samples = p.frame_samples;
        let mut missing = None;
        for k in 0..usize::from(p.frames) {
            let Some(first) = (k as u64)
                .checked_mul(samples)
                .and_then(|offset| p.place.first_sample.checked_add(offset))
            else {
                // A group that runs off the end of the count: nothing to rebuild.
                self.pending[i].used = false;
                return;
            };
            match self.find(p.place.at(first)) {
                Some(f)
                    if self.frames[f].bytes.len() != p.lengths[k]
                        || self.frames[f].samples != samples =>
                {
                    // Not the group this repair was made of.
                    self.pending[i].used = false;
                    return;
                }
                Some(_) => {}
                None if missing.is_some() => return,
                None => missing = Some(k),
            }
        }
        self.pending[i].used = false;
        let Some(missing) = missing else {
            return;
        };
        let p = &self.pending[i];
        self.scratch.clear();
        self.scratch.extend_from_slice(&p.xor);
        let mut capture_time_us = p.capture_time_xor;
        for k in (0..usize::from(p.frames)).filter(|&k| k != missing) {
            let f = &self.frames[self
                .find(p.place.at(p.place.first_sample + k as u64 * samples))
                .expect("present")];
            capture_time_us ^= f.capture_time_us;
            xor_into(&mut self.scratch, &f.bytes);
        }
        // The padding past the missing frame's end XORs to zero; its length says where it ends.
        self.scratch.truncate(p.lengths[missing]);
        let place = p.place.at(p.place.first_sample + missing as u64 * samples);
        let bytes = core::mem::take(&mut self.scratch);
        self.remember(place, samples, capture_time_us, &bytes, true);
        self.scratch = bytes;
    }
}

/// Whether `first_sample` starts one of the `frames` frames of `samples` from `group_first`.
fn member(group_first: u64, frames: u8, samples: u64, first_sample: u64) -> bool {
    let Some(offset) = first_sample.checked_sub(group_first) else {
        return false;
    };
    samples > 0 && offset.is_multiple_of(samples) && offset / samples < u64::from(frames)
}

/// XORs `bytes` into `acc`, zero-padding the shorter of the two to the longer's length.
fn xor_into(acc: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > acc.len() {
        acc.resize(bytes.len(), 0);
    }
    for (a, b) in acc.iter_mut().zip(bytes) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A sender's frame as the tests keep it: PCM, or coded bytes of any length.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Frame {
        coded: bool,
        first_sample: u64,
        capture_time_us: u64,
        bytes: Vec<u8>,
    }

    impl Frame {
        fn payload(&self) -> Payload<'_> {
            if self.coded {
                Payload::CodedAudio(CodedAudio {
                    sample_rate: 200_000,
                    channels: 1,
                    first_sample: self.first_sample,
                    capture_time_us: self.capture_time_us,
                    coded: &self.bytes,
                })
            } else {
                Payload::Audio(Audio {
                    sample_rate: 200_000,
                    channels: 1,
                    first_sample: self.first_sample,
                    capture_time_us: self.capture_time_us,
                    pcm: &self.bytes,
                })
            }
        }

        fn from_payload(payload: &Payload<'_>) -> Self {
            match payload {
                Payload::Audio(a) => {
                    assert_eq!((a.sample_rate, a.channels), (200_000, 1));
                    Self {
                        coded: false,
                        first_sample: a.first_sample,
                        capture_time_us: a.capture_time_us,
                        bytes: a.pcm.to_vec(),
                    }
                }
                Payload::CodedAudio(a) => {
                    assert_eq!((a.sample_rate, a.channels), (200_000, 1));
                    Self {
                        coded: true,
                        first_sample: a.first_sample,
                        capture_time_us: a.capture_time_us,
                        bytes: a.coded.to_vec(),
                    }
                }
                other => panic!("rebuilt {other:?}"),
            }
        }
    }

    /// The encoded repair payload `encoder` answers to `frame`, if any.
    fn encode(encoder: &mut RepairEncoder, frame: &Frame) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        match frame.payload() {
            Payload::Audio(a) => Payload::Repair(encoder.handle_audio(&a)?).encode(&mut bytes),
            Payload::CodedAudio(a) => {
                Payload::CodedRepair(encoder.handle_coded_audio(&a)?).encode(&mut bytes);
            }
            _ => unreachable!(),
        }
        Some(bytes)
    }

    /// Hands an audio or repair payload to `decoder`.
    fn deliver(decoder: &mut RepairDecoder, payload: &Payload<'_>) {
        match payload {
            Payload::Audio(a) => decoder.handle_audio(a),
            Payload::CodedAudio(a) => decoder.handle_coded_audio(a),
            Payload::Repair(r) => decoder.handle_repair(r),
            Payload::CodedRepair(r) => decoder.handle_coded_repair(r),
            other => panic!("not audio or repair: {other:?}"),
        }
    }

    /// What crosses the network: an audio frame (by index) or a repair payload's bytes.
    #[derive(Clone, Debug)]
    enum Sent {
        Audio(usize),
        Repair(Vec<u8>),
    }

    /// `count` frames of `samples` each, starting at `start`, with drawn contents (PCM, or
    /// `coded` bytes of drawn lengths) and capture times, and what a sender with groups of `group`
    /// sends for them, in order.
    fn send(
        rng: &mut crate::testing::Rng,
        coded: bool,
        group: u8,
        start: u64,
        samples: usize,
        count: usize,
    ) -> (Vec<Frame>, Vec<Sent>) {
        let mut encoder = RepairEncoder::new(group);
        let mut frames = Vec::new();
        let mut sent = Vec::new();
        for i in 0..count {
            let bytes = if coded {
                // A coded frame's header (sample count, method), then a body of any length.
                let body = (rng.next_u64() % (2 * samples as u64 + 1)) as usize;
                let mut b = (samples as u16).to_be_bytes().to_vec();
                b.extend((0..=body).map(|_| rng.next_u64() as u8));
                b
            } else {
                (0..2 * samples).map(|_| rng.next_u64() as u8).collect()
            };
            let frame = Frame {
                coded,
                first_sample: start + (i * samples) as u64,
                capture_time_us: rng.next_u64(),
                bytes,
            };
            sent.push(Sent::Audio(i));
            if let Some(repair) = encode(&mut encoder, &frame) {
                sent.push(Sent::Repair(repair));
            }
            frames.push(frame);
        }
        (frames, sent)
    }

    /// Delivers `sent` to a decoder: the frames that arrived, by index, and those rebuilt. Checks
    /// that no frame is rebuilt once it has arrived, and that each is rebuilt when a model without
    /// memory bounds would: as soon as its group's repair and all its other frames are in.
    fn receive(frames: &[Frame], sent: &[Sent]) -> (Vec<bool>, Vec<Frame>) {
        let mut decoder = RepairDecoder::new();
        let mut arrived = vec![false; frames.len()];
        let mut rebuilt: Vec<Frame> = Vec::new();
        let index = |first_sample: u64| {
            frames
                .iter()
                .position(|f| f.first_sample == first_sample)
                .expect("one of the frames sent")
        };
        // The model: repairs (first frame, frames) not yet resolved.
        let mut waiting: Vec<(usize, usize)> = Vec::new();
        let mut expected: Vec<usize> = Vec::new();
        let mut buf = Vec::new();
        for s in sent {
            match s {
                Sent::Audio(i) => {
                    arrived[*i] = true;
                    deliver(&mut decoder, &frames[*i].payload());
                }
                Sent::Repair(bytes) => {
                    let repair = Payload::decode(bytes).expect("a repair payload decodes");
                    let (first_sample, n) = match repair {
                        Payload::Repair(r) => (r.first_sample, r.frames),
                        Payload::CodedRepair(r) => (r.first_sample, r.frames),
                        other => panic!("not a repair: {other:?}"),
                    };
                    let group = (index(first_sample), usize::from(n));
                    if !waiting.contains(&group) {
                        waiting.push(group);
                    }
                    deliver(&mut decoder, &repair);
                }
            }
            waiting.retain(|&(first, n)| {
                let missing: Vec<usize> = (first..first + n)
                    .filter(|&i| !arrived[i] && !expected.contains(&i))
                    .collect();
                if let [i] = missing[..] {
                    expected.push(i);
                }
                missing.len() > 1
            });
            while let Some(payload) = decoder.poll_rebuilt(&mut buf) {
                let frame = Frame::from_payload(&payload);
                let i = index(frame.first_sample);
                assert!(!arrived[i], "frame {i} had arrived, and was rebuilt");
                rebuilt.push(frame);
            }
            let got: Vec<usize> = rebuilt.iter().map(|f| index(f.first_sample)).collect();
            assert_eq!(got, expected, "what was rebuilt, by index");
        }
        for f in &rebuilt {
            assert_eq!(
                f,
                &frames[index(f.first_sample)],
                "a rebuilt frame is exact"
            );
        }
        (arrived, rebuilt)
    }

    #[test]
    fn every_single_loss_in_a_group_is_rebuilt_exactly_whatever_arrives_last() {
        let mut rng = crate::testing::Rng::from_env();
        for (coded, group) in [false, true]
            .into_iter()
            .flat_map(|c| (1..=MAX_GROUP).map(move |g| (c, g)))
        {
            let (frames, sent) = send(&mut rng, coded, group, 1_000, 3, usize::from(group));
            let repair = sent.last().expect("a repair").clone();
            assert!(matches!(repair, Sent::Repair(_)));
            for lost in 0..usize::from(group) {
                // The repair last, first, and somewhere between.
                for at in [usize::from(group) - 1, 0, lost.min(usize::from(group) - 1)] {
                    let mut order: Vec<Sent> = (0..frames.len())
                        .filter(|&i| i != lost)
                        .map(Sent::Audio)
                        .collect();
                    order.insert(at.min(order.len()), repair.clone());
                    let (_, rebuilt) = receive(&frames, &order);
                    assert_eq!(
                        rebuilt,
                        [frames[lost].clone()],
                        "coded {coded}, group {group}, lost {lost}"
                    );
                }
            }
            // Nothing lost: nothing rebuilt.
            let (_, rebuilt) = receive(&frames, &sent);
            assert!(rebuilt.is_empty());
        }
    }

    #[test]
    fn random_loss_and_reordering_rebuild_only_lost_frames_and_every_one_they_can() {
        let mut rng = crate::testing::Rng::from_env();
        let (mut lost, mut rebuilt_all) = (0, 0);
        for round in 0..200 {
            let group = 1 + (rng.next_u64() % u64::from(GROUP + 2)) as u8;
            let samples = 1 + (rng.next_u64() % 600) as usize;
            let start = rng.next_u64() >> 20;
            let count = 20 + (rng.next_u64() % 200) as usize;
            let loss = rng.unit() * 0.3;
            let coded = rng.unit() < 0.5;
            let (frames, sent) = send(&mut rng, coded, group, start, samples, count);
            // Loss, a duplicate now and then, and reordering by a few places.
            let mut delivered: Vec<(f64, Sent)> = Vec::new();
            for (k, s) in sent.iter().enumerate() {
                if rng.unit() < loss {
                    continue;
                }
                let copies = if rng.unit() < 0.02 { 2 } else { 1 };
                for _ in 0..copies {
                    delivered.push((k as f64 + rng.unit() * 4.0, s.clone()));
                }
            }
            delivered.sort_by(|a, b| a.0.total_cmp(&b.0));
            let delivered: Vec<Sent> = delivered.into_iter().map(|(_, s)| s).collect();
            eprintln!(
                "round {round}: coded {coded}, group {group}, {samples} samples, {count} frames, \
                 loss {loss:.2}"
            );
            let (arrived, rebuilt) = receive(&frames, &delivered);
            lost += arrived.iter().filter(|a| !**a).count();
            rebuilt_all += rebuilt.len();
        }
        eprintln!("{lost} frames lost, {rebuilt_all} rebuilt");
        assert!(rebuilt_all > 0);
    }

    #[test]
    fn a_gap_or_a_new_length_starts_a_new_group_and_mismatched_groups_rebuild_nothing() {
        let mut encoder = RepairEncoder::new(2);
        let frame = |first_sample, pcm: &'static [u8]| Audio {
            sample_rate: 48_000,
            channels: 1,
            first_sample,
            capture_time_us: 0,
            pcm,
        };
        assert!(encoder.handle_audio(&frame(0, &[1, 1])).is_none());
        // A gap in the count: the group starts again from frame 5.
        assert!(encoder.handle_audio(&frame(5, &[2, 2])).is_none());
        // Another length: again.
        assert!(encoder.handle_audio(&frame(6, &[3, 3, 3, 3])).is_none());
        let repair = encoder
            .handle_audio(&frame(8, &[4, 4, 4, 4]))
            .expect("two frames of one length that follow on");
        assert_eq!((repair.first_sample, repair.frames), (6, 2));
        assert_eq!(repair.pcm_xor, [7, 7, 7, 7]);
        encoder.reset();
        assert!(encoder.handle_audio(&frame(10, &[5, 5, 5, 5])).is_none());

        // A frame of another length where the group's frame should be: nothing rebuilt.
        let mut decoder = RepairDecoder::new();
        decoder.handle_audio(&frame(6, &[3, 3]));
        decoder.handle_repair(&Repair {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 6,
            frames: 2,
            capture_time_xor: 0,
            pcm_xor: &[7, 7, 7, 7],
        });
        let mut pcm = Vec::new();
        assert_eq!(decoder.poll_rebuilt(&mut pcm), None);
        // Another rate: not the same stream.
        decoder.handle_audio(&Audio {
            sample_rate: 44_100,
            ..frame(8, &[4, 4, 4, 4])
        });
        assert_eq!(decoder.poll_rebuilt(&mut pcm), None);
    }

    #[test]
    fn coded_groups_carry_each_length_and_never_mix_with_pcm() {
        let mut encoder = RepairEncoder::new(2);
        let coded = |first_sample, coded: &'static [u8]| CodedAudio {
            sample_rate: 48_000,
            channels: 1,
            first_sample,
            capture_time_us: first_sample,
            coded,
        };
        // Two coded frames of 2 samples, 4 and 6 bytes long.
        let (a, b) = (coded(10, &[0, 2, 9, 1]), coded(12, &[0, 2, 9, 2, 3, 4]));
        assert!(encoder.handle_coded_audio(&a).is_none());
        let repair = encoder.handle_coded_audio(&b).expect("a group of two");
        assert_eq!(
            (repair.first_sample, repair.frames, repair.frame_samples),
            (10, 2, 2)
        );
        assert_eq!(repair.frame_lengths().collect::<Vec<_>>(), [4, 6]);
        assert_eq!(repair.coded_xor, [0, 0, 0, 3, 3, 4]);
        assert_eq!(repair.capture_time_xor, 10 ^ 12);
        let mut bytes = Vec::new();
        Payload::CodedRepair(repair).encode(&mut bytes);
        let Ok(Payload::CodedRepair(repair)) = Payload::decode(&bytes) else {
            panic!("a coded repair decodes");
        };
        // Either frame comes back from the other, at its own length.
        let mut buf = Vec::new();
        for (lost, kept) in [(a, b), (b, a)] {
            let mut decoder = RepairDecoder::new();
            decoder.handle_coded_audio(&kept);
            decoder.handle_coded_repair(&repair);
            assert_eq!(
                decoder.poll_rebuilt(&mut buf),
                Some(Payload::CodedAudio(lost))
            );
        }
        // A PCM frame at a coded frame's place is another stream: nothing is rebuilt from it.
        let mut decoder = RepairDecoder::new();
        decoder.handle_audio(&Audio {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 12,
            capture_time_us: 12,
            pcm: &[0, 2, 9, 2],
        });
        decoder.handle_coded_repair(&repair);
        assert_eq!(decoder.poll_rebuilt(&mut buf), None);
        // A coded frame of the wrong length where the group's frame should be: nothing either.
        let mut decoder = RepairDecoder::new();
        decoder.handle_coded_audio(&coded(12, &[0, 2, 9, 2, 3]));
        decoder.handle_coded_repair(&repair);
        assert_eq!(decoder.poll_rebuilt(&mut buf), None);
        // The encoder starts a new group when the kind changes.
        assert!(encoder.handle_coded_audio(&a).is_none());
        assert!(
            encoder
                .handle_audio(&Audio {
                    sample_rate: 48_000,
                    channels: 1,
                    first_sample: 12,
                    capture_time_us: 0,
                    pcm: &[1, 2, 3, 4],
                })
                .is_none()
        );
    }

    #[test]
    fn memory_is_bounded_and_old_groups_are_forgotten() {
        let mut rng = crate::testing::Rng::from_env();
        let (frames, sent) = send(&mut rng, false, GROUP, 0, 250, 4_000);
        let mut decoder = RepairDecoder::new();
        // Every repair, and every frame but the first of each group: each group rebuilds one.
        let mut rebuilt = 0;
        let mut pcm = Vec::new();
        for s in &sent {
            match s {
                Sent::Audio(i) if i % usize::from(GROUP) == 0 => {}
                Sent::Audio(i) => deliver(&mut decoder, &frames[*i].payload()),
                Sent::Repair(bytes) => {
                    let Ok(crate::payload::Payload::Repair(r)) =
                        crate::payload::Payload::decode(bytes)
                    else {
                        unreachable!()
                    };
                    decoder.handle_repair(&r);
                }
            }
            while let Some(payload) = decoder.poll_rebuilt(&mut pcm) {
                let frame = Frame::from_payload(&payload);
                assert_eq!(frame, frames[(frame.first_sample / 250) as usize]);
                rebuilt += 1;
            }
            assert_eq!(decoder.frames.len(), REMEMBERED_FRAMES);
            assert_eq!(decoder.pending.len(), PENDING_REPAIRS);
        }
        assert_eq!(rebuilt, frames.len() / usize::from(GROUP));
        // A repair of a group long gone finds none of its frames: it waits, and is pushed out.
        let Sent::Repair(old) = &sent[4] else {
            panic!("the first group's repair")
        };
        let Ok(crate::payload::Payload::Repair(r)) = crate::payload::Payload::decode(old) else {
            unreachable!()
        };
        decoder.handle_repair(&r);
        assert_eq!(decoder.poll_rebuilt(&mut pcm), None);
        decoder.reset();
        assert!(decoder.frames.iter().all(|f| !f.used));
    }

    #[test]
    fn bad_repairs_are_ignored() {
        let mut decoder = RepairDecoder::new();
        let audio = Audio {
            sample_rate: 48_000,
            channels: 1,
            first_sample: u64::MAX - 3,
            capture_time_us: 0,
            pcm: &[1, 2],
        };
        decoder.handle_audio(&audio);
        for repair in [
            Repair {
                sample_rate: 48_000,
                channels: 1,
                first_sample: u64::MAX - 3,
                frames: 9,
                capture_time_xor: 0,
                pcm_xor: &[1, 2],
            },
            Repair {
                frames: MAX_GROUP + 1,
                first_sample: 0,
                sample_rate: 48_000,
                channels: 1,
                capture_time_xor: 0,
                pcm_xor: &[1, 2],
            },
            Repair {
                frames: 2,
                first_sample: 0,
                sample_rate: 48_000,
                channels: 1,
                capture_time_xor: 0,
                pcm_xor: &[],
            },
        ] {
            decoder.handle_repair(&repair);
        }
        let mut pcm = Vec::new();
        assert_eq!(decoder.poll_rebuilt(&mut pcm), None);
    }
}
