//! One simulated browser's connection to the relay: joining a line, then sending and receiving
//! frames, over WebSocket (line-server, the Node baseline), WebTransport datagrams (line-server)
//! or length-prefixed raw TCP.

use std::collections::VecDeque;

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

use line_protocol::webtransport::{Record, RecordKind};
use wtransport::endpoint::endpoint_side;
use wtransport::quinn::congestion::BbrConfig;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream};

use crate::error::LoadError;
use crate::target::{Target, TargetKind};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a closed WebTransport session may take to tell the relay.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// The session, and its endpoint, which must outlive the close (see [`FrameSink::close`]).
    Wt(Connection, ClientEndpoint),
}

/// A WebTransport client endpoint (which has no `Debug` of its own).
pub(crate) struct ClientEndpoint(Endpoint<endpoint_side::Client>);

impl std::fmt::Debug for ClientEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientEndpoint")
    }
}

/// The receiving half of a peer's connection.
#[derive(Debug)]
pub(crate) enum FrameSource {
    Ws(SplitStream<Ws>),
    Tcp(BufReader<OwnedReadHalf>),
    Wt(WtSource),
}

/// A WebTransport session's receiving side: datagrams, and the relay's stream of records.
#[derive(Debug)]
pub(crate) struct WtSource {
    connection: Connection,
    stream: RecvStream,
    buffered: Vec<u8>,
    /// Whether the relay's stream ended (datagrams may still come).
    stream_done: bool,
    /// Frames that arrived while joining, before the relay's first message.
    early: VecDeque<Vec<u8>>,
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
        match target.kind {
            TargetKind::LineWebTransport => Self::join_webtransport(target, line, token).await,
            kind if kind.is_websocket() => Self::join_websocket(target, line, token).await,
            _ => Self::join_tcp(target, line).await,
        }
    }

    async fn join_webtransport(
        target: &Target,
        line: LineId,
        token: &JoinToken,
    ) -> Result<Self, LoadError> {
        let key = target.apikey.as_ref().ok_or(LoadError::MissingApiKey)?;
        let (port, hash) = webtransport_endpoint(target).await?;
        let mut config = ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes(hash.map(Sha256Digest::new))
            .build();
        // Real-time audio: a frame QUIC cannot send soon is better dropped than queued (quinn
        // holds 1 MiB by default, seconds of audio when its congestion window is short).
        let mut transport = wtransport::quinn::TransportConfig::default();
        transport.datagram_send_buffer_size(target.datagram_send_buffer);
        // As line-server does (see its transport config): loss is not congestion.
        transport.congestion_controller_factory(std::sync::Arc::new(BbrConfig::default()));
        config
            .quic_config_mut()
            .transport_config(std::sync::Arc::new(transport));
        let endpoint = Endpoint::client(config).map_err(LoadError::Connect)?;
        let participant = ParticipantId::from_random(rand::random());
        // The relay's UDP port on the host its HTTP answered at, as a page finds it.
        let host = std::net::SocketAddr::new(target.addr.ip(), port);
        let url = format!(
            "https://{host}{}?apikey={}&line={line}&join={token}&participant={participant}",
            line_protocol::webtransport::PATH,
            key.expose()
        );
        let wt_error = |e: &dyn std::fmt::Display| LoadError::WebTransport(e.to_string());
        let connection = endpoint.connect(url).await.map_err(|e| wt_error(&e))?;
        let stream = connection.accept_uni().await.map_err(|e| wt_error(&e))?;
        let mut source = WtSource {
            connection: connection.clone(),
            stream,
            buffered: Vec::new(),
            stream_done: false,
            early: VecDeque::new(),
        };
        // Datagrams race the relay's stream: the other peer's first frames may come before
        // `peer-joined` does. They are kept for the caller, in order.
        let mut early = VecDeque::new();
        let joined = loop {
            match source.next().await? {
                Incoming::Frame(frame) => early.push_back(frame),
                Incoming::Control(RelayMessage::Waiting) => break false,
                Incoming::Control(RelayMessage::PeerJoined) => break true,
                other => return Err(LoadError::Unexpected(format!("{other:?} on joining"))),
            }
        };
        source.early = early;
        Ok(Self {
            sink: FrameSink::Wt(connection, ClientEndpoint(endpoint)),
            source: FrameSource::Wt(source),
            joined,
        })
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
            FrameSource::Ws(_) | FrameSource::Wt(_) => match self.source.next().await? {
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

    /// Whether the relay said, on joining, that the other peer is already on the line.
    pub(crate) const fn partner_present(&self) -> bool {
        self.joined
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
            Self::Wt(connection, _) => connection
                .send_datagram(&frame)
                .map_err(|e| LoadError::WebTransport(e.to_string())),
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
            Self::Wt(connection, endpoint) => {
                connection.close(0u32.into(), b"");
                // QUIC sends its close once, and again only for packets that arrive after it:
                // an endpoint dropped at once could not, and on a lossy path the relay would
                // learn of the close only from its idle timeout, 30 s later.
                let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.0.wait_idle()).await;
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
            Self::Wt(source) => source.next().await,
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

impl WtSource {
    /// The next datagram or record; cancel-safe only between records, as the caller never
    /// cancels it.
    async fn next(&mut self) -> Result<Incoming, LoadError> {
        if let Some(frame) = self.early.pop_front() {
            return Ok(Incoming::Frame(frame));
        }
        loop {
            if let Some((record, used)) =
                Record::parse(&self.buffered).map_err(|e| LoadError::Unexpected(e.to_string()))?
            {
                let incoming = match record.kind {
                    RecordKind::Frame => Some(Incoming::Frame(record.payload.to_vec())),
                    RecordKind::Control => std::str::from_utf8(record.payload)
                        .ok()
                        .and_then(|text| RelayMessage::from_json(text).ok())
                        .map(Incoming::Control),
                    _ => None,
                };
                self.buffered.drain(..used);
                match incoming {
                    Some(incoming) => return Ok(incoming),
                    None => continue,
                }
            }
            let mut chunk = [0u8; 4096];
            tokio::select! {
                datagram = self.connection.receive_datagram() => {
                    return match datagram {
                        Ok(datagram) => Ok(Incoming::Frame(datagram.payload().to_vec())),
                        Err(_) => Err(LoadError::Closed),
                    };
                }
                read = self.stream.read(&mut chunk), if !self.stream_done => match read {
                    Ok(Some(n)) => self.buffered.extend_from_slice(&chunk[..n]),
                    Ok(None) | Err(_) => self.stream_done = true,
                },
            }
        }
    }
}

/// The UDP port and (behind a proxy, or without TLS) the certificate hash the relay names at
/// `GET /webtransport`, over plain HTTP as the load tests run the relay.
async fn webtransport_endpoint(target: &Target) -> Result<(u16, Option<[u8; 32]>), LoadError> {
    let key = target.apikey.as_ref().ok_or(LoadError::MissingApiKey)?;
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(LoadError::Connect)?;
    let request = format!(
        "GET /webtransport?apikey={} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        key.expose(),
        target.addr
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(LoadError::Io)?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(LoadError::Io)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status != 200 {
        return Err(LoadError::Refused { status });
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let port = body
        .split("\"port\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| LoadError::Unexpected(format!("/webtransport said {body:?}")))?;
    let hash = body
        .split("\"certificate_hashes\":[\"")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .map(|hex| {
            let mut hash = [0u8; 32];
            for (i, byte) in hash.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            hash
        });
    Ok((port, hash))
}
