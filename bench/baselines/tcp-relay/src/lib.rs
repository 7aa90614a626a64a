//! The limit line-server is measured against: a relay with no WebSocket framing, no key, no checks.
//!
//! A client sends its line id and a newline; when a second client sends the same id, both get
//! `paired\n` and from then on every byte one sends is copied to the other. What the bytes mean
//! (the load generator sends length-prefixed frames) is the clients' business. Nothing is bounded
//! or authenticated: this is a benchmark baseline, never something to deploy.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What both peers of a line receive once the second one has arrived.
pub const PAIRED: &[u8] = b"paired\n";

/// The longest line id (plus newline) the relay reads before giving up on a client.
const MAX_LINE_ID: usize = 64;

type Waiting = Arc<Mutex<HashMap<Vec<u8>, TcpStream>>>;

/// Accepts clients on `listener` and relays pairs of them until the task is dropped.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    let waiting: Waiting = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        // Frames must leave at once, as line-server's and the Node relay's do.
        stream.set_nodelay(true)?;
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            // A client that goes away early is simply forgotten.
            let _ = pair(stream, waiting).await;
        });
    }
}

async fn pair(mut stream: TcpStream, waiting: Waiting) -> io::Result<()> {
    let line = read_line_id(&mut stream).await?;
    let first = {
        let mut waiting = waiting.lock().expect("waiting lock is never poisoned");
        match waiting.remove(&line) {
            Some(first) => first,
            None => {
                waiting.insert(line, stream);
                return Ok(());
            }
        }
    };
    let mut first = first;
    first.write_all(PAIRED).await?;
    stream.write_all(PAIRED).await?;
    tokio::io::copy_bidirectional(&mut first, &mut stream).await?;
    Ok(())
}

/// Reads up to the first newline, byte by byte so nothing after it is consumed.
async fn read_line_id(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await?;
        if byte == b'\n' {
            return Ok(line);
        }
        if line.len() >= MAX_LINE_ID {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "line id too long",
            ));
        }
        line.push(byte);
    }
}
