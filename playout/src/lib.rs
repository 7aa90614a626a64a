//! line's playout on the audio thread: the jitter buffer, run by the playback AudioWorklet itself.
//!
//! The engine's worker decrypts each audio frame and writes it, with a small header, as a *frame
//! record* into the playback ring (docs/CLIENT.md, "Playout on the audio thread"); the playback
//! processor drains the records at every render quantum, pushes them into a
//! [`line_protocol::jitter::JitterBuffer`] and pulls exactly the quantum it renders. So nothing
//! but the ring stands between a frame's arrival and its playout: no sample ring kept filled
//! ahead of the audio thread, no worker wake-up in the path.
//!
//! The AudioWorklet scope has no `TextDecoder`, `performance` or `URL`, so wasm-bindgen's glue
//! cannot load there: this crate builds to a plain module with numeric exports (`ffi.rs`) over
//! one static [`Playout`]. Its parts are plain Rust, tested natively:
//!
//! - [`record`]: the record format, written by the worker and read here;
//! - [`clock`]: the worker's map from its own clock to the audio clock, so that arrivals are
//!   dated when the worker received them, not by the render quantum that took them (browsers
//!   render in bursts, and a burst-dated arrival hides drift);
//! - [`Playout`]: the jitter buffer per render quantum, and the statistics it hands back.

pub mod clock;
mod playout;
pub mod record;

#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod ffi;

pub use clock::ClockMap;
pub use playout::{MAX_QUANTUM, Playout, stat};
