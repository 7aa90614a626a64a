//! line's browser client: the call engine, compiled to WebAssembly and driven by `www/line.html`.
//!
//! Three threads (see docs/CLIENT.md): the page's main thread holds `LineClient`, the public
//! facade an app uses; a dedicated module Worker runs the engine (WebSocket or WebTransport,
//! SFrame, jitter buffer, resampling, stats); an AudioWorklet shim in JavaScript moves samples
//! between the audio thread and the worker through the shared rings of [`ring`].
//!
//! The plain-Rust parts ([`call`], [`engine`], [`link`], [`liveness`], [`ring`], [`resample`],
//! [`qr`], [`messages`], [`playback_fill`], [`uplink`], [`webtransport`]) build and test
//! natively: every decision of the engine lives there. The browser glue, which only moves bytes, samples and events, builds
//! only for wasm32.

pub mod call;
pub mod engine;
pub mod link;
pub mod liveness;
pub mod messages;
pub mod playback_fill;
pub mod qr;
pub mod resample;
pub mod ring;
pub mod uplink;
pub mod webtransport;

#[cfg(target_arch = "wasm32")]
mod audio_io;
#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
pub mod js_ring;
#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod webtransport_io;
#[cfg(target_arch = "wasm32")]
mod worker;

#[cfg(target_arch = "wasm32")]
pub use client::{JoinOptions, LineClient, LineStats};
#[cfg(target_arch = "wasm32")]
pub use page::{LinkInfo, generate_leaf, line_id_of, qr_svg, read_link};
#[cfg(target_arch = "wasm32")]
pub use worker::start_worker;

use wasm_bindgen::prelude::wasm_bindgen;

/// The client's version, shown on the page so a person can tell what runs.
#[wasm_bindgen]
#[must_use]
pub fn version() -> String {
    format!("line {}", line_protocol::VERSION)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_protocol_version() {
        assert_eq!(
            super::version(),
            format!("line {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
