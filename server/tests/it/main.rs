//! End-to-end tests of the relay: real sockets on port 0, tokio-tungstenite clients.

mod binary;
mod checks;
mod common;
mod hardening;
mod join;
mod limits;
mod relay;
mod robustness;
mod static_client;
mod tls;
mod webtransport;
