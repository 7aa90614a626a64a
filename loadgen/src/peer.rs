//! One simulated browser's connection to the relay: joining a line, then sending and receiving
//! frames, over WebSocket (line-server, the Node baseline) or length-prefixed raw TCP.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use line_protocol::join::{JoinToken, ParticipantId};
use line_protocol::line_id::LineId;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::LoadError;
use crate::target::Target;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the raw-TCP baseline sends both peers once they are paired.
const TCP_PAIRED: &[u8] = b"paired\n";

/// The largest frame a peer accepts from the raw-TCP baseline (line's own limit).
const MAX_FRAME_LEN: usize = line_protocol::MAX_FRAME_LEN;

/// A peer connected to a line, before its traffic starts.
#[derive(Debug)]
pub struct Peer {
    sink: FrameSink,
    source: FrameSource,
    /// Whether the relay said the other peer is there.
    joined: bool,
}

/// The sending half of a peer's connection.
#[derive(Debug)]
pub(crate) enum FrameSink {
    Ws(SplitSink<Ws, Message>),
    Tcp(OwnedWriteHalf, Vec<u8>),
}

/// The receiving half of a peer's connection.
#[derive(Debug)]
pub(crate) enum FrameSource {
    Ws(SplitStream<Ws>),
    Tcp(BufReader<OwnedReadHalf>),
}

/// What arrived on a peer's connection.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A relayed frame.
    Frame(Vec<u8>),
    /// A control message (WebSocket relays only).
    Control(RelayMessage),
}

impl Peer {
    /// Joins `line` on `target` as a browser does, with the line's join `token` and a participant
    /// id of its own. The first peer of a line is told `waiting`, the second `peer-joined`; a third
    /// is refused (line-server: [`LoadError::Refused`] 409, or 423 with another token).
    pub async fn join(target: &Target, line: LineId, token: &JoinToken) -> Result<Self, LoadError> {
        if target.kind.is_websocket() {
            Self::join_websocket(target, line, token).await
        } else {
            Self::join_tcp(target, line).await
        }
    }

    async fn join_websocket(
        target: &Target,
        line: LineId,
        token: &JoinToken,
    ) -> Result<Self, LoadError> {
        let key = target.apikey.as_ref().ok_or(LoadError::MissingApiKey)?;
        let participant = ParticipantId::from_random(rand::random());
        let url = format!(
            "ws://{}/ws?apikey={}&line={line}&join={token}&participant={participant}",
            target.addr,
            key.expose()
        );
        // Nagle off, as browsers do for WebSockets: a frame leaves at once.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(response) => LoadError::Refused {
                    status: response.status().as_u16(),
                },
                tungstenite::Error::Io(e) => LoadError::Connect(e),
                other => LoadError::WebSocket(other),
            })?;
        let (sink, stream) = ws.split();
        let mut peer = Self {
            sink: FrameSink::Ws(sink),
            source: FrameSource::Ws(stream),
            joined: false,
        };
        match peer.source.next().await? {
            Incoming::Control(RelayMessage::Waiting) => {}
            Incoming::Control(RelayMessage::PeerJoined) => peer.joined = true,
            other => return Err(LoadError::Unexpected(format!("{other:?} on joining"))),
        }
        Ok(peer)
    }

    async fn join_tcp(target: &Target, line: LineId) -> Result<Self, LoadError> {
        let mut stream = TcpStream::connect(target.addr)
            .await
            .map_err(LoadError::Connect)?;
        stream.set_nodelay(true).map_err(LoadError::Connect)?;
        stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(LoadError::Io)?;
        let (read, write) = stream.into_split();
        Ok(Self {
            sink: FrameSink::Tcp(write, Vec::new()),
            source: FrameSource::Tcp(BufReader::new(read)),
            joined: false,
        })
    }

    /// Waits until the relay says the other peer is on the line.
    pub async fn wait_for_partner(&mut self) -> Result<(), LoadError> {
        if self.joined {
            return Ok(());
        }
        match &mut self.source {
            FrameSource::Ws(_) => match self.source.next().await? {
                Incoming::Control(RelayMessage::PeerJoined) => {}
                other => {
                    return Err(LoadError::Unexpected(format!(
                        "{other:?} instead of peer-joined"
                    )));
                }
            },
            FrameSource::Tcp(read) => {
                let mut paired = [0u8; TCP_PAIRED.len()];
                read.read_exact(&mut paired).await.map_err(LoadError::Io)?;
                if paired != TCP_PAIRED {
                    return Err(LoadError::Unexpected(
                        "a tcp relay that did not pair".into(),
                    ));
                }
            }
        }
        self.joined = true;
        Ok(())
    }

    pub(crate) fn split(self) -> (FrameSink, FrameSource) {
        (self.sink, self.source)
    }
}

impl FrameSink {
    /// Sends one frame (the raw-TCP wire: a 4-byte big-endian length, then the frame).
    pub(crate) async fn send(&mut self, frame: Vec<u8>) -> Result<(), LoadError> {
        match self {
            Self::Ws(sink) => sink
                .send(Message::binary(frame))
                .await
                .map_err(LoadError::WebSocket),
            Self::Tcp(write, buf) => {
                buf.clear();
                let len = u32::try_from(frame.len()).expect("frames are at most 32 KiB");
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(&frame);
                write.write_all(buf).await.map_err(LoadError::Io)
            }
        }
    }

    /// Closes the connection politely (a WebSocket close frame; TCP shutdown).
    pub(crate) async fn close(&mut self) {
        match self {
            Self::Ws(sink) => {
                let _ = sink.close().await;
            }
            Self::Tcp(write, _) => {
                let _ = write.shutdown().await;
            }
        }
    }
}

impl FrameSource {
    /// The next frame or control message; pings and pongs are skipped.
    pub(crate) async fn next(&mut self) -> Result<Incoming, LoadError> {
        match self {
            Self::Ws(stream) => loop {
                match stream.next().await {
                    None => return Err(LoadError::Closed),
                    Some(Err(e)) => return Err(LoadError::WebSocket(e)),
                    Some(Ok(Message::Binary(data))) => return Ok(Incoming::Frame(data.into())),
                    Some(Ok(Message::Text(text))) => {
                        return RelayMessage::from_json(&text)
                            .map(Incoming::Control)
                            .map_err(|_| {
                                LoadError::Unexpected(
                                    "a text frame that is not a relay message".into(),
                                )
                            });
                    }
                    Some(Ok(Message::Close(_))) => return Err(LoadError::Closed),
                    Some(Ok(_)) => {}
                }
            },
            Self::Tcp(read) => {
                let len = match read.read_u32().await {
                    Ok(len) => len as usize,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(LoadError::Closed);
                    }
                    Err(e) => return Err(LoadError::Io(e)),
                };
                if len > MAX_FRAME_LEN {
                    return Err(LoadError::Unexpected(format!("a {len}-byte tcp frame")));
                }
                let mut frame = vec![0u8; len];
                read.read_exact(&mut frame).await.map_err(LoadError::Io)?;
                Ok(Incoming::Frame(frame))
            }
        }
    }
}
