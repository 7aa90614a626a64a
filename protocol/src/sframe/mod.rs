//! End-to-end frame encryption: SFrame (RFC 9605) with suite `AES_256_GCM_SHA512_128` (0x0005).
//!
//! Each sender draws a fresh 64-bit KID for every connection and derives its own base key from the
//! leaf and that KID (label `line 1.0 sender`, see [`leaf`](crate::leaf)), so no two senders and no
//! two connections ever share a key, and a (key, nonce) pair is never reused. The counter starts at
//! 0; the sender refuses to encrypt past [`FrameSender::COUNTER_LIMIT`] rather than wrap.
//!
//! The receiver derives a key the first time a KID authenticates and keeps at most
//! [`FrameReceiver::KEY_CACHE`] of them. It opens a frame in this order: parse the header, check
//! the counter against that KID's replay window, open the AEAD, and only then mark the counter
//! seen. A KID enters the cache only with a frame that authenticated, so a flood of forged frames
//! with random KIDs costs some CPU but never memory, and never evicts the real sender.
//!
//! ```
//! use line_protocol::leaf::LeafKey;
//! use line_protocol::sframe::{DecryptError, FrameReceiver, FrameSender};
//!
//! let leaf = LeafKey::from_random([42; 32]);
//! let mut alice = FrameSender::new(&leaf, 0x1d2c_3b4a_5968_7786);
//! let mut bob = FrameReceiver::new(&leaf);
//!
//! let (mut frame, mut plain) = (Vec::new(), Vec::new());
//! alice.encrypt(b"hello", &mut frame)?;
//! let header = bob.decrypt(&frame, &mut plain)?;
//! assert_eq!((header.kid, header.ctr, plain.as_slice()), (0x1d2c_3b4a_5968_7786, 0, &b"hello"[..]));
//! assert_eq!(bob.decrypt(&frame, &mut plain), Err(DecryptError::Replay));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod suite;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

#[cfg(test)]
pub(crate) use suite::key_and_salt as suite_key_and_salt;
pub use suite::{AuthenticationError, CipherSuite, NONCE_LEN, SframeKey, TAG_LEN};

use crate::MAX_FRAME_LEN;
use crate::header::{Header, HeaderError};
use crate::leaf::LeafKey;
use crate::replay::ReplayWindow;

/// The one cipher suite line speaks.
pub const SUITE: CipherSuite = CipherSuite::Aes256GcmSha512;

/// Why a frame was not encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptError {
    /// The sender used every counter it may; it needs a new KID (a new connection).
    CounterExhausted,
    /// The frame would be longer than [`MAX_FRAME_LEN`], which the relay refuses.
    TooLarge {
        /// Bytes of plaintext offered.
        plaintext_len: usize,
    },
}

impl fmt::Display for EncryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CounterExhausted => {
                f.write_str("frame counter exhausted: reconnect for a new key")
            }
            Self::TooLarge { plaintext_len } => write!(
                f,
                "{plaintext_len} bytes of plaintext make a frame larger than {MAX_FRAME_LEN} bytes"
            ),
        }
    }
}

impl core::error::Error for EncryptError {}

/// Why a frame was not decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecryptError {
    /// The frame does not start with a well-formed SFrame header.
    Header(HeaderError),
    /// The counter was already seen from this KID, or is older than its replay window.
    Replay,
    /// The frame is not authentic under the leaf (forged, damaged, or from another line).
    Authentication,
    /// The frame carries this side's own sender KID (see [`FrameReceiver::refuse_kid`]): a relay
    /// reflected our own audio back.
    Reflected,
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(e) => write!(f, "bad frame: {e}"),
            Self::Replay => f.write_str("replayed or too old frame"),
            Self::Authentication => f.write_str("frame failed authentication"),
            Self::Reflected => f.write_str("frame carries our own key id: reflected"),
        }
    }
}

impl core::error::Error for DecryptError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Header(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeaderError> for DecryptError {
    fn from(e: HeaderError) -> Self {
        Self::Header(e)
    }
}

/// Encrypts one sender's frames: one KID, counters 0, 1, 2, ...
pub struct FrameSender {
    key: SframeKey,
    kid: u64,
    next_ctr: u64,
}

impl FrameSender {
    /// Frames one sender may encrypt: 2^32, about 497 days at 100 frames a second. Far inside
    /// AES-GCM's usage limits for frames of a few kilobytes, and a reconnect draws a new KID.
    pub const COUNTER_LIMIT: u64 = 1 << 32;

    /// A sender with key id `kid`, which the caller draws at random (64 bits) for every connection.
    #[must_use]
    pub fn new(leaf: &LeafKey, kid: u64) -> Self {
        Self::starting_at(leaf, kid, 0)
    }

    fn starting_at(leaf: &LeafKey, kid: u64, next_ctr: u64) -> Self {
        let base_key = leaf.sender_base_key(kid);
        Self {
            key: SframeKey::derive(SUITE, base_key.as_ref(), kid),
            kid,
            next_ctr,
        }
    }

    /// This sender's key id.
    #[must_use]
    pub const fn kid(&self) -> u64 {
        self.kid
    }

    /// Clears `out` and writes the next frame into it: header || ciphertext || 16-byte tag, with
    /// empty metadata. Returns the frame's header.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<Header, EncryptError> {
        self.encrypt_with(&[], plaintext, out)
    }

    /// As [`encrypt`](Self::encrypt), with `metadata` authenticated alongside the header (RFC 9605
    /// section 4.4.3: aad = header || metadata) but not sent: the receiver must supply the same
    /// bytes to open the frame. line binds frames to the receiver's connection this way (see
    /// [`binding`](crate::binding)).
    pub fn encrypt_with(
        &mut self,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, EncryptError> {
        out.clear();
        if self.next_ctr >= Self::COUNTER_LIMIT {
            return Err(EncryptError::CounterExhausted);
        }
        let header = Header::new(self.kid, self.next_ctr);
        if header.encoded_len() + plaintext.len() + TAG_LEN > MAX_FRAME_LEN {
            return Err(EncryptError::TooLarge {
                plaintext_len: plaintext.len(),
            });
        }
        self.next_ctr += 1;
        self.key.seal(header, metadata, plaintext, out);
        Ok(header)
    }
}

impl fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender")
            .field("kid", &self.kid)
            .field("next_ctr", &self.next_ctr)
            .finish_non_exhaustive()
    }
}

/// Decrypts the frames of every sender on a line, refusing replays.
pub struct FrameReceiver {
    leaf: LeafKey,
    /// This side's own sender KIDs, this connection's and earlier ones: their frames can only be
    /// reflections.
    own_kids: VecDeque<u64>,
    /// KIDs pushed out of the key cache. Their replay windows are gone, so their frames are
    /// refused: a relay must not be able to replay a forgotten sender's frames once more.
    retired: VecDeque<u64>,
    senders: Vec<KnownSender>,
    /// Counts successful decryptions; orders the cache from least to most recently used.
    uses: u64,
}

struct KnownSender {
    kid: u64,
    key: SframeKey,
    window: ReplayWindow,
    last_use: u64,
}

impl FrameReceiver {
    /// Senders whose keys and replay windows the receiver keeps. A peer gets a new KID each time it
    /// reconnects; the least recently heard one is forgotten first.
    pub const KEY_CACHE: usize = 8;

    /// Own and retired KIDs remembered (8 bytes each); past this the oldest are forgotten. A peer
    /// or this side would have to reconnect this many times in one call to reach it.
    pub const REMEMBERED_KIDS: usize = 256;

    /// A receiver for frames sealed under keys derived from `leaf`.
    #[must_use]
    pub fn new(leaf: &LeafKey) -> Self {
        Self {
            leaf: leaf.clone(),
            own_kids: VecDeque::new(),
            retired: VecDeque::new(),
            senders: Vec::with_capacity(Self::KEY_CACHE),
            uses: 0,
        }
    }

    /// Clears `out` and, when `frame` is authentic (with empty metadata) and new, writes its
    /// plaintext into it and returns its header. On any error `out` stays empty and no state
    /// changes.
    pub fn decrypt(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<Header, DecryptError> {
        self.decrypt_with(frame, &[&[]], out)
            .map(|(header, _)| header)
    }

    /// As [`decrypt`](Self::decrypt), for frames sealed with metadata (see
    /// [`FrameSender::encrypt_with`]): tries each of `metadata` in turn and returns the header and
    /// the index of the metadata that authenticated the frame. The replay check runs once, before
    /// any of them; a frame that none authenticates changes nothing.
    pub fn decrypt_with(
        &mut self,
        frame: &[u8],
        metadata: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(Header, usize), DecryptError> {
        out.clear();
        let (header, header_len) = Header::parse(frame)?;
        if self.own_kids.contains(&header.kid) {
            return Err(DecryptError::Reflected);
        }
        let now = self.uses + 1;
        if let Some(known) = self.senders.iter_mut().find(|s| s.kid == header.kid) {
            known
                .window
                .check(header.ctr)
                .map_err(|_| DecryptError::Replay)?;
            let which = open_any(&known.key, header.ctr, frame, header_len, metadata, out)?;
            known.window.mark(header.ctr);
            known.last_use = now;
            self.uses = now;
            return Ok((header, which));
        }
        if self.retired.contains(&header.kid) {
            return Err(DecryptError::Replay);
        }
        let base_key = self.leaf.sender_base_key(header.kid);
        let key = SframeKey::derive(SUITE, base_key.as_ref(), header.kid);
        let which = open_any(&key, header.ctr, frame, header_len, metadata, out)?;
        let mut window = ReplayWindow::new();
        window.mark(header.ctr);
        let fresh = KnownSender {
            kid: header.kid,
            key,
            window,
            last_use: now,
        };
        self.uses = now;
        if self.senders.len() < Self::KEY_CACHE {
            self.senders.push(fresh);
        } else if let Some(oldest) = self.senders.iter_mut().min_by_key(|s| s.last_use) {
            let evicted = core::mem::replace(oldest, fresh);
            remember(&mut self.retired, evicted.kid);
        }
        Ok((header, which))
    }

    /// Refuses frames with `kid`: pass this side's own [`FrameSender::kid`], so a relay cannot play
    /// a person's own voice back to them. Earlier own KIDs (before a reconnect) stay refused.
    pub fn refuse_kid(&mut self, kid: u64) {
        remember(&mut self.own_kids, kid);
        self.senders.retain(|s| s.kid != kid);
    }

    /// How many senders' keys the receiver holds (at most [`Self::KEY_CACHE`]).
    #[must_use]
    pub fn known_senders(&self) -> usize {
        self.senders.len()
    }
}

/// Opens `frame` with the first of `metadata` that authenticates it; its index.
fn open_any(
    key: &SframeKey,
    ctr: u64,
    frame: &[u8],
    header_len: usize,
    metadata: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<usize, DecryptError> {
    metadata
        .iter()
        .position(|m| key.open_parts(ctr, frame, header_len, m, out).is_ok())
        .ok_or(DecryptError::Authentication)
}

/// Adds `kid` to a bounded list, forgetting the oldest past [`FrameReceiver::REMEMBERED_KIDS`].
fn remember(kids: &mut VecDeque<u64>, kid: u64) {
    if kids.contains(&kid) {
        return;
    }
    if kids.len() == FrameReceiver::REMEMBERED_KIDS {
        kids.pop_front();
    }
    kids.push_back(kid);
}

impl fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReceiver")
            .field(
                "kids",
                &self.senders.iter().map(|s| s.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl FrameSender {
    /// A sender whose counter starts at `next_ctr`, to test the limit without 2^32 frames. Only
    /// for tests (the `test-support` feature): a sender that does not start at 0 could reuse a
    /// nonce.
    #[doc(hidden)]
    pub fn at_counter(leaf: &LeafKey, kid: u64, next_ctr: u64) -> Self {
        Self::starting_at(leaf, kid, next_ctr)
    }
}
