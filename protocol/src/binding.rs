//! Binding frames to the receiver's connection, so that a relay cannot play an earlier call again.
//!
//! Every sender's keys come from the leaf and its own KID, so without more, a frame recorded in an
//! earlier call on the same link would authenticate in a later one: a fresh [`FrameReceiver`] has
//! no replay window for the old KID, and audio from any newly authenticated KID is played. So every
//! payload except [`Hello`](crate::payload::Hello) is sealed with SFrame metadata (RFC 9605 section
//! 4.4.3: authenticated, never sent) that names the receiver's connection: the KID it sends with,
//! 8 bytes big-endian, as the sender last saw it in an authentic frame from the receiver. A
//! receiver's KID is new for every connection, so nothing recorded before it connected carries it.
//!
//! Hellos are sealed with empty metadata: they are how each side learns the other's KID, so they
//! cannot wait for it. A receiver accepts an unbound frame only if it is a Hello; a recorded Hello
//! replayed later only makes the receiver bind its next frames to a stale KID, which the other
//! side's next authentic frame corrects.
//!
//! A receiver opens a frame with its current KID, then with its previous one (frames the other side
//! sealed before it heard of this side's reconnect), then unbound. What the first audio costs: a
//! sender waits for one authentic frame from the other side (its Hello, sent when the relay says
//! `peer-joined`), one trip through the relay.
//!
//! ```
//! use line_protocol::binding::{Binding, OpenError};
//! use line_protocol::leaf::LeafKey;
//! use line_protocol::payload::{Hello, Payload, Ping};
//! use line_protocol::sframe::{FrameReceiver, FrameSender};
//!
//! let leaf = LeafKey::from_random([9; 32]);
//! let (mut alice, mut bob) = (FrameSender::new(&leaf, 1), FrameSender::new(&leaf, 2));
//! let (mut alice_binding, mut bob_binding) = (Binding::new(), Binding::new());
//! alice_binding.connected(alice.kid());
//! bob_binding.connected(bob.kid());
//! let mut bob_receiver = FrameReceiver::new(&leaf);
//! let (mut frame, mut plain) = (Vec::new(), Vec::new());
//!
//! // Bob greets Alice (unbound); Alice now knows Bob's KID and binds to it.
//! let hello = Hello { protocol_version: 1, client: "doc", sample_rate: 48_000, channels: 1, frame_duration_us: 10_000 };
//! let mut payload = Vec::new();
//! Payload::Hello(hello).encode(&mut payload);
//! bob.encrypt(&payload, &mut frame)?;
//! let mut alice_receiver = FrameReceiver::new(&leaf);
//! alice_binding.open(&mut alice_receiver, &frame, &mut plain)?;
//!
//! payload.clear();
//! Payload::Ping(Ping { id: 1, send_time_us: 0 }).encode(&mut payload);
//! let metadata = alice_binding.outgoing().expect("Alice heard Bob");
//! alice.encrypt_with(&metadata, &payload, &mut frame)?;
//! assert!(bob_binding.open(&mut bob_receiver, &frame, &mut plain).is_ok());
//!
//! // The same frame offered to Bob's next connection (a later call) does not open.
//! let mut later = Binding::new();
//! later.connected(3);
//! later.connected(4);
//! assert!(matches!(later.open(&mut FrameReceiver::new(&leaf), &frame, &mut plain), Err(OpenError::Decrypt(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::vec::Vec;
use core::fmt;

use crate::header::Header;
use crate::payload::{Payload, PayloadError};
use crate::sframe::{DecryptError, FrameReceiver};

/// Bytes of the metadata that binds a frame to its receiver's connection.
pub const METADATA_LEN: usize = 8;

/// The metadata that binds a frame to the connection that sends with `receiver_kid`.
#[must_use]
pub const fn metadata(receiver_kid: u64) -> [u8; METADATA_LEN] {
    receiver_kid.to_be_bytes()
}

/// One side's view of whom its frames are bound to, and what it accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// This side's sender KID on its current connection.
    own: Option<u64>,
    /// This side's KID on its previous connection.
    previous: Option<u64>,
    /// The other side's KID, from its latest authentic frame.
    peer: Option<u64>,
}

/// Why a frame was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// It did not decrypt for this connection: malformed, replayed, reflected, forged, from
    /// another link, or bound to another connection (an earlier call).
    Decrypt(DecryptError),
    /// It is authentic but not bound to this connection, and only a Hello may be unbound.
    Unbound,
    /// It is authentic and bound, but its payload does not decode (a newer payload kind, say).
    Payload(PayloadError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decrypt(e) => e.fmt(f),
            Self::Unbound => f.write_str("frame is not bound to this connection"),
            Self::Payload(e) => write!(f, "bad payload: {e}"),
        }
    }
}

impl core::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Decrypt(e) => Some(e),
            Self::Payload(e) => Some(e),
            Self::Unbound => None,
        }
    }
}

impl Binding {
    /// A side that has not connected yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            own: None,
            previous: None,
            peer: None,
        }
    }

    /// This side connected with sender KID `kid`. The previous KID stays acceptable, for frames
    /// the other side bound before it heard of this connection.
    pub fn connected(&mut self, kid: u64) {
        self.previous = self.own.replace(kid);
    }

    /// The relay says the other person joined, rejoined or left: until an authentic frame shows
    /// which KID they send with now, only Hellos go out.
    pub fn forget_peer(&mut self) {
        self.peer = None;
    }

    /// The metadata for a frame other than a Hello, or `None` before the other side was heard.
    #[must_use]
    pub fn outgoing(&self) -> Option<[u8; METADATA_LEN]> {
        self.peer.map(metadata)
    }

    /// Opens `frame` into `out` and decodes its payload: a Hello bound or not, anything else only
    /// when bound to this side's current or previous connection. An authentic frame teaches this
    /// side the other's current KID.
    pub fn open<'a>(
        &mut self,
        receiver: &mut FrameReceiver,
        frame: &[u8],
        out: &'a mut Vec<u8>,
    ) -> Result<(Header, Payload<'a>), OpenError> {
        let own = self.own.map(metadata);
        let previous = self.previous.map(metadata);
        let mut candidates: [&[u8]; 3] = [&[]; 3];
        let mut n = 0;
        for bound in [own.as_ref(), previous.as_ref()].into_iter().flatten() {
            candidates[n] = bound;
            n += 1;
        }
        // The unbound candidate goes last: audio, the common case, opens at the first try.
        let unbound = n;
        let (header, which) = receiver
            .decrypt_with(frame, &candidates[..=unbound], out)
            .map_err(OpenError::Decrypt)?;
        let out: &'a Vec<u8> = out;
        let payload = Payload::decode(out);
        if which == unbound && !matches!(payload, Ok(Payload::Hello(_))) {
            return Err(OpenError::Unbound);
        }
        self.peer = Some(header.kid);
        payload
            .map(|payload| (header, payload))
            .map_err(OpenError::Payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::LeafKey;
    use crate::payload::{Audio, Hello, Ping};
    use crate::sframe::FrameSender;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const HELLO: Hello<'static> = Hello {
        protocol_version: 1,
        client: "test",
        sample_rate: 48_000,
        channels: 1,
        frame_duration_us: 10_000,
    };

    fn leaf() -> LeafKey {
        LeafKey::from_random([3; 32])
    }

    /// One side of a call: its sender, receiver and binding.
    struct Side {
        sender: FrameSender,
        receiver: FrameReceiver,
        binding: Binding,
    }

    impl Side {
        fn connect(kid: u64) -> Self {
            let mut side = Self {
                sender: FrameSender::new(&leaf(), kid),
                receiver: FrameReceiver::new(&leaf()),
                binding: Binding::new(),
            };
            side.binding.connected(kid);
            side.receiver.refuse_kid(kid);
            side
        }

        fn reconnect(&mut self, kid: u64) {
            self.sender = FrameSender::new(&leaf(), kid);
            self.binding.connected(kid);
            self.receiver.refuse_kid(kid);
        }

        fn seal(&mut self, payload: &Payload<'_>) -> Vec<u8> {
            let mut plain = Vec::new();
            payload.encode(&mut plain);
            let metadata = match payload {
                Payload::Hello(_) => Vec::new(),
                _ => self
                    .binding
                    .outgoing()
                    .expect("the peer was heard")
                    .to_vec(),
            };
            let mut frame = Vec::new();
            self.sender
                .encrypt_with(&metadata, &plain, &mut frame)
                .expect("encrypts");
            frame
        }

        fn open(&mut self, frame: &[u8]) -> Result<u8, OpenError> {
            let mut out = Vec::new();
            let (_, payload) = self.binding.open(&mut self.receiver, frame, &mut out)?;
            Ok(match payload {
                Payload::Audio(_) => 1,
                Payload::Hello(_) => 2,
                Payload::Ping(_) => 3,
                _ => 0,
            })
        }
    }

    fn audio(pcm: &[u8]) -> Payload<'_> {
        Payload::Audio(Audio {
            sample_rate: 48_000,
            channels: 1,
            first_sample: 0,
            capture_time_us: 0,
            pcm,
        })
    }

    /// Two sides that exchanged Hellos.
    fn greeted(a_kid: u64, b_kid: u64) -> (Side, Side) {
        let (mut a, mut b) = (Side::connect(a_kid), Side::connect(b_kid));
        let hello = a.seal(&Payload::Hello(HELLO));
        assert_eq!(b.open(&hello), Ok(2));
        let hello = b.seal(&Payload::Hello(HELLO));
        assert_eq!(a.open(&hello), Ok(2));
        (a, b)
    }

    #[test]
    fn nothing_but_hello_goes_out_before_the_peer_is_heard() {
        let mut a = Side::connect(1);
        assert_eq!(a.binding.outgoing(), None);
        let mut b = Side::connect(2);
        let hello = b.seal(&Payload::Hello(HELLO));
        a.open(&hello).expect("a hello needs no binding");
        assert_eq!(a.binding.outgoing(), Some(2u64.to_be_bytes()));
        a.binding.forget_peer();
        assert_eq!(a.binding.outgoing(), None);
    }

    #[test]
    fn a_recorded_earlier_call_does_not_open_in_a_later_one() {
        let recorded = {
            let (mut a, mut b) = greeted(0xa1, 0xb1);
            let frames: Vec<Vec<u8>> = (0..5).map(|_| a.seal(&audio(&[1, 0]))).collect();
            for frame in &frames {
                assert_eq!(b.open(frame), Ok(1), "the first call plays");
            }
            frames
        };
        // The same link, a later call: new connections, new KIDs, a fresh receiver.
        let (_, mut b) = greeted(0xa2, 0xb2);
        for frame in &recorded {
            assert_eq!(
                b.open(frame),
                Err(OpenError::Decrypt(DecryptError::Authentication))
            );
        }
        assert_eq!(b.receiver.known_senders(), 1, "only the live sender");
    }

    #[test]
    fn unbound_frames_other_than_hello_are_refused() {
        let (mut a, mut b) = greeted(1, 2);
        let mut plain = Vec::new();
        Payload::Ping(Ping {
            id: 1,
            send_time_us: 0,
        })
        .encode(&mut plain);
        let mut frame = Vec::new();
        a.sender.encrypt(&plain, &mut frame).expect("encrypts");
        assert_eq!(b.open(&frame), Err(OpenError::Unbound));
        // A frame bound to somebody else's connection is no better.
        a.sender
            .encrypt_with(&metadata(99), &plain, &mut frame)
            .expect("encrypts");
        assert_eq!(
            b.open(&frame),
            Err(OpenError::Decrypt(DecryptError::Authentication))
        );
    }

    #[test]
    fn frames_bound_before_a_reconnect_still_open_after_it() {
        let (mut a, mut b) = greeted(1, 2);
        let in_flight = a.seal(&audio(&[5, 0]));
        b.reconnect(3);
        assert_eq!(b.open(&in_flight), Ok(1), "bound to b's previous KID");
        // b's new Hello teaches a the new KID; a's frames bind to it from then on.
        let hello = b.seal(&Payload::Hello(HELLO));
        a.open(&hello).expect("opens");
        assert_eq!(a.binding.outgoing(), Some(3u64.to_be_bytes()));
        let fresh = a.seal(&audio(&[6, 0]));
        assert_eq!(b.open(&fresh), Ok(1));
    }

    #[test]
    fn frames_bound_two_connections_ago_do_not_open() {
        let (mut a, mut b) = greeted(1, 2);
        let old = a.seal(&audio(&[5, 0]));
        b.reconnect(3);
        b.reconnect(4);
        assert_eq!(
            b.open(&old),
            Err(OpenError::Decrypt(DecryptError::Authentication))
        );
    }

    #[test]
    fn a_replayed_hello_is_corrected_by_the_next_authentic_frame() {
        let old_hello = Side::connect(0xa0).seal(&Payload::Hello(HELLO));
        let (mut a, mut b) = greeted(0xa1, 0xb1);
        b.open(&old_hello).expect("an old hello is authentic");
        assert_eq!(b.binding.outgoing(), Some(0xa0u64.to_be_bytes()));
        let live = a.seal(&audio(&[1, 0]));
        assert_eq!(b.open(&live), Ok(1));
        assert_eq!(b.binding.outgoing(), Some(0xa1u64.to_be_bytes()));
    }
}
