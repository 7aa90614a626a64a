//! The wire protocol of line, shared by the browser client and the relay server.
//!
//! This crate is sans-IO: it opens no socket, reads no clock and draws no randomness of its own.
//! Callers pass the current time and random bytes in. Its framing and crypto core builds without
//! `std` (with `alloc`), so any device that can run AES-GCM could speak the protocol.
//!
//! What the relay may look at is only the SFrame [`header`] of each frame; everything after it is
//! ciphertext only the two people on the line can open.
//!
//! ```
//! use line_protocol::header::Header;
//!
//! let header = Header::new(0x1234, 7);
//! let mut buf = [0u8; Header::MAX_LEN];
//! let n = header.encode(&mut buf);
//! assert_eq!(Header::parse(&buf[..n]), Ok((header, n)));
//! ```
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

// The unit tests also run in headless Chromium: `cargo test -p line-protocol --target wasm32-unknown-unknown`.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

pub mod audio;
pub mod binding;
pub mod control;
#[cfg(test)]
mod docs_examples;
pub mod header;
#[cfg(test)]
mod hex;
#[cfg(feature = "std")]
pub mod jitter;
pub mod join;
pub mod leaf;
pub mod line_id;
pub mod lossless;
pub mod payload;
pub mod pcm;
pub mod repair;
pub mod replay;
pub mod sframe;
#[cfg(all(feature = "std", any(test, feature = "test-support")))]
pub mod testing;
pub mod webtransport;

/// The version of this crate, shown by clients and the server so a person can tell what runs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The largest frame a client may send, in bytes: 20 ms of stereo 16-bit audio at 384 kHz (30,720
/// bytes of PCM) plus headers and tag, with margin. The relay refuses anything larger.
pub const MAX_FRAME_LEN: usize = 32 * 1024;
