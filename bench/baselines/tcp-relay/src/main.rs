//! `line-tcp-relay ADDR`: serves the raw-TCP baseline relay on ADDR (e.g. 127.0.0.1:7780).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: line-tcp-relay ADDR");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("line-tcp-relay: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match line_tcp_relay::serve(listener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("line-tcp-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
