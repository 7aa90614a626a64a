//! The SFrame key schedule and AEAD of RFC 9605 sections 4.4.2 to 4.4.4, for the AES-GCM suites.
//!
//! ```text
//! sframe_secret = HKDF-Extract("", base_key)
//! sframe_key    = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret key "  || KID || suite, Nk)
//! sframe_salt   = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret salt " || KID || suite, Nn)
//! nonce         = sframe_salt XOR (CTR as 12 bytes big-endian)
//! frame         = header || AEAD.Encrypt(sframe_key, nonce, aad = header || metadata, plaintext)
//! ```
//!
//! KID is 8 bytes and the suite 2 bytes, both big-endian. line uses only
//! [`CipherSuite::Aes256GcmSha512`]; [`CipherSuite::Aes128GcmSha256`] is here because it costs a
//! match arm and lets the RFC's vectors check the schedule for both hashes.

use alloc::vec::Vec;

use aes_gcm::aead::AeadInOut as _;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit as _, Nonce, Tag};
use hkdf::hmac::Hmac;
use hkdf::{GenericHkdf, HmacImpl};
use sha2::{Sha256, Sha512};
use zeroize::{Zeroize as _, Zeroizing};

use crate::header::Header;

/// Bytes of an SFrame nonce (Nn) for the AES-GCM suites.
pub const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag (Nt) for the AES-GCM suites.
pub const TAG_LEN: usize = 16;

const KEY_LABEL: &[u8] = b"SFrame 1.0 Secret key ";
const SALT_LABEL: &[u8] = b"SFrame 1.0 Secret salt ";

/// An SFrame cipher suite from the RFC 9605 registry that this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CipherSuite {
    /// `AES_128_GCM_SHA256_128` (0x0004): AES-128-GCM, HKDF-SHA256, 16-byte tag.
    Aes128GcmSha256,
    /// `AES_256_GCM_SHA512_128` (0x0005): AES-256-GCM, HKDF-SHA512, 16-byte tag. line's suite.
    Aes256GcmSha512,
}

impl CipherSuite {
    /// The suite's value in the IANA "SFrame Cipher Suites" registry.
    #[must_use]
    pub const fn id(self) -> u16 {
        match self {
            Self::Aes128GcmSha256 => 0x0004,
            Self::Aes256GcmSha512 => 0x0005,
        }
    }

    /// The suite with registry value `id`, if this crate implements it.
    #[must_use]
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            0x0004 => Some(Self::Aes128GcmSha256),
            0x0005 => Some(Self::Aes256GcmSha512),
            _ => None,
        }
    }

    /// Bytes of the AEAD key (Nk).
    #[must_use]
    pub const fn key_len(self) -> usize {
        match self {
            Self::Aes128GcmSha256 => 16,
            Self::Aes256GcmSha512 => 32,
        }
    }
}

/// The AEAD key and salt of one KID under one base key: everything needed to seal and open its
/// frames. Zeroized on drop.
pub struct SframeKey {
    aead: Aead,
    salt: [u8; NONCE_LEN],
}

// The AES-128 variant is smaller, but a receiver holds at most a handful of keys: no box needed.
#[allow(clippy::large_enum_variant)]
enum Aead {
    Aes128(Aes128Gcm),
    Aes256(Aes256Gcm),
}

/// The AEAD refused: the frame is not authentic (or too short to hold a tag). Deliberately says
/// nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthenticationError;

impl core::fmt::Display for AuthenticationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("frame failed authentication")
    }
}

impl core::error::Error for AuthenticationError {}

impl SframeKey {
    /// Runs the key schedule of RFC 9605 section 4.4.2 for `kid` under `base_key`.
    #[must_use]
    pub fn derive(suite: CipherSuite, base_key: &[u8], kid: u64) -> Self {
        let (key, salt) = key_and_salt(suite, base_key, kid);
        let key = &key[..suite.key_len()];
        let aead = match suite {
            CipherSuite::Aes128GcmSha256 => {
                Aead::Aes128(Aes128Gcm::new_from_slice(key).expect("16-byte key"))
            }
            CipherSuite::Aes256GcmSha512 => {
                Aead::Aes256(Aes256Gcm::new_from_slice(key).expect("32-byte key"))
            }
        };
        Self { aead, salt }
    }

    /// The nonce of the frame with counter `ctr`: the salt XOR the counter, right-aligned.
    #[must_use]
    pub fn nonce(&self, ctr: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        nonce
    }

    /// Clears `out` and writes the frame `header || ciphertext || tag` into it.
    ///
    /// Low level: the caller must never seal two frames with the same counter under one key, or
    /// AES-GCM loses all its security. [`FrameSender`](super::FrameSender) guarantees that.
    pub fn seal(&self, header: Header, metadata: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(Header::MAX_LEN + plaintext.len() + TAG_LEN);
        out.resize(Header::MAX_LEN, 0);
        let header_len = header.encode(out);
        out.truncate(header_len);
        out.extend_from_slice(plaintext);
        let nonce = Nonce::from(self.nonce(header.ctr));
        let (head, body) = out.split_at_mut(header_len);
        let tag = with_aad(head, metadata, |aad| match &self.aead {
            Aead::Aes128(aead) => aead.encrypt_inout_detached(&nonce, aad, body.into()),
            Aead::Aes256(aead) => aead.encrypt_inout_detached(&nonce, aad, body.into()),
        })
        .expect("frames are far below AES-GCM's plaintext limit");
        out.extend_from_slice(&tag);
    }

    /// Opens a whole frame: parses its header, checks the tag, and on success clears `out` and
    /// writes the plaintext into it. No replay check: that is [`FrameReceiver`](super::FrameReceiver)'s job.
    pub fn open(
        &self,
        frame: &[u8],
        metadata: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, AuthenticationError> {
        let (header, header_len) = Header::parse(frame).map_err(|_| AuthenticationError)?;
        self.open_parts(header.ctr, frame, header_len, metadata, out)?;
        Ok(header)
    }

    /// Opens `frame`, whose header (`header_len` bytes, counter `ctr`) the caller already parsed.
    /// On failure `out` is left empty: no unauthenticated byte ever reaches the caller.
    pub(crate) fn open_parts(
        &self,
        ctr: u64,
        frame: &[u8],
        header_len: usize,
        metadata: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AuthenticationError> {
        out.clear();
        let (aad, sealed) = frame.split_at(header_len);
        let Some(ct_len) = sealed.len().checked_sub(TAG_LEN) else {
            return Err(AuthenticationError);
        };
        let (ciphertext, tag) = sealed.split_at(ct_len);
        let tag = Tag::try_from(tag).expect("split at TAG_LEN");
        let nonce = Nonce::from(self.nonce(ctr));
        out.resize(ct_len, 0);
        let buf = InOutBuf::new(ciphertext, out).expect("same lengths");
        let opened = with_aad(aad, metadata, |aad| match &self.aead {
            Aead::Aes128(aead) => aead.decrypt_inout_detached(&nonce, aad, buf, &tag),
            Aead::Aes256(aead) => aead.decrypt_inout_detached(&nonce, aad, buf, &tag),
        });
        if opened.is_err() {
            out.clear();
            return Err(AuthenticationError);
        }
        Ok(())
    }
}

impl Drop for SframeKey {
    fn drop(&mut self) {
        // The AES-GCM states wipe themselves (aes-gcm's `zeroize` feature); the salt is ours.
        self.salt.zeroize();
    }
}

impl core::fmt::Debug for SframeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SframeKey(..)")
    }
}

/// AAD that fits on the stack: the longest header and line's 8-byte binding with room to spare.
const STACK_AAD: usize = 64;

/// Calls `f` with the AAD `header || metadata`; allocates only for metadata longer than line's.
fn with_aad<T>(header: &[u8], metadata: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let len = header.len() + metadata.len();
    if metadata.is_empty() {
        f(header)
    } else if len <= STACK_AAD {
        let mut aad = [0u8; STACK_AAD];
        aad[..header.len()].copy_from_slice(header);
        aad[header.len()..len].copy_from_slice(metadata);
        f(&aad[..len])
    } else {
        let mut aad = Vec::with_capacity(len);
        aad.extend_from_slice(header);
        aad.extend_from_slice(metadata);
        f(&aad)
    }
}

/// `sframe_key` (the first `suite.key_len()` bytes) and `sframe_salt` of `kid` under `base_key`.
pub(crate) fn key_and_salt(
    suite: CipherSuite,
    base_key: &[u8],
    kid: u64,
) -> (Zeroizing<[u8; 32]>, [u8; NONCE_LEN]) {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut salt = [0u8; NONCE_LEN];
    let key_out = &mut key[..suite.key_len()];
    match suite {
        CipherSuite::Aes128GcmSha256 => {
            schedule::<Hmac<Sha256>>(suite, base_key, kid, key_out, &mut salt);
        }
        CipherSuite::Aes256GcmSha512 => {
            schedule::<Hmac<Sha512>>(suite, base_key, kid, key_out, &mut salt);
        }
    }
    (key, salt)
}

/// The two HKDF-Expand labels of `kid` under `suite`.
pub(crate) fn labels(suite: CipherSuite, kid: u64) -> ([u8; 32], [u8; 33]) {
    let mut key_label = [0u8; 32];
    let mut salt_label = [0u8; 33];
    for (label, prefix) in [
        (&mut key_label[..], KEY_LABEL),
        (&mut salt_label[..], SALT_LABEL),
    ] {
        let (head, tail) = label.split_at_mut(prefix.len());
        head.copy_from_slice(prefix);
        tail[..8].copy_from_slice(&kid.to_be_bytes());
        tail[8..].copy_from_slice(&suite.id().to_be_bytes());
    }
    (key_label, salt_label)
}

/// HKDF-Extract then the two HKDF-Expand calls, with the HMAC of the suite's hash.
fn schedule<M: HmacImpl>(
    suite: CipherSuite,
    base_key: &[u8],
    kid: u64,
    key: &mut [u8],
    salt: &mut [u8],
) {
    let hkdf = GenericHkdf::<M>::new(None, base_key);
    let (key_label, salt_label) = labels(suite, kid);
    hkdf.expand(&key_label, key)
        .expect("Nk is a valid HKDF output length");
    hkdf.expand(&salt_label, salt)
        .expect("Nn is a valid HKDF output length");
}
