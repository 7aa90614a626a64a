//! What happens to a connection right after `accept`, before HTTP: Nagle off, the kernel's
//! unsent backlog bounded, the per-client connection cap, and (after TLS, when there is TLS)
//! refusing HTTP/2.
//!
//! Only HTTP/1.1 is served: WebSockets ride HTTP/1.1 upgrades and the page is a handful of
//! files, while hyper's HTTP/2 has no idle or header timeout, so an HTTP/2 connection (prior
//! knowledge, in clear or inside TLS) would stay open forever. hyper-util's connection detection
//! would serve HTTP/2 whatever the builder is told, so [`Http1Only`] looks at the first bytes
//! itself and closes a connection that starts with the HTTP/2 preface.
//!
//! The cap counts the TCP peer (an IPv4 address, an IPv6 /64). Trusted proxies are exempt: every
//! client behind one shares its address, so their clients are counted at `/ws` by the address
//! the proxy forwards, and the proxy caps its own connections (deploy/nginx sets `limit_conn`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::net::{ClientGroup, IpNet};
use crate::per_client::{ClientSlot, PerClientCap};

/// Why a connection was closed at once.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptError {
    /// The client address already holds the maximum number of connections.
    TooManyConnections(ClientGroup),
    /// The connection speaks HTTP/2.
    Http2,
    /// The first bytes did not arrive within the header timeout.
    Silent,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyConnections(client) => {
                write!(f, "{client} already holds its maximum of connections")
            }
            Self::Http2 => f.write_str("http/2 is not served, only http/1.1"),
            Self::Silent => f.write_str("no request within the header timeout"),
        }
    }
}

impl std::error::Error for AcceptError {}

#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn set_unsent_limit(stream: &TcpStream, bytes: u32) -> io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_notsent_lowat(bytes)
}

/// Elsewhere the kernel's send buffer, kept small, is the bound.
#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn set_unsent_limit(_: &TcpStream, _: u32) -> io::Result<()> {
    Ok(())
}

/// Turns Nagle off (a relayed frame must leave at once, not wait for the peer's ACK of the
/// previous one) and applies the per-client connection cap.
#[derive(Clone, Debug)]
pub struct CappedAcceptor {
    cap: Arc<PerClientCap>,
    trusted: Arc<[IpNet]>,
    unsent_limit: Option<u32>,
}

impl CappedAcceptor {
    /// An acceptor counting connections in `cap`, except from `trusted` proxies.
    #[must_use]
    pub fn new(cap: Arc<PerClientCap>, trusted: &[IpNet]) -> Self {
        Self {
            cap,
            trusted: trusted.into(),
            unsent_limit: None,
        }
    }

    /// Lets the kernel hold at most about `bytes` of data not yet sent on each socket
    /// (`TCP_NOTSENT_LOWAT`, where the system has it): when the path stalls, the backlog then
    /// waits in the relay's outbox, which drops the oldest audio, instead of in the send buffer,
    /// which would deliver every stale frame in order, up to seconds late.
    #[must_use]
    pub fn unsent_limit(mut self, bytes: Option<u32>) -> Self {
        self.unsent_limit = bytes;
        self
    }

    fn admit(&self, stream: TcpStream) -> io::Result<Counted> {
        let peer = stream.peer_addr()?.ip();
        stream.set_nodelay(true)?;
        if let Some(bytes) = self.unsent_limit {
            set_unsent_limit(&stream, bytes)?;
        }
        let slot = if self.trusted.iter().any(|net| net.contains(peer)) {
            None
        } else {
            let group = ClientGroup::of(peer);
            Some(
                self.cap
                    .try_acquire(group)
                    .ok_or_else(|| refused(AcceptError::TooManyConnections(group)))?,
            )
        };
        Ok(Counted {
            stream,
            _slot: slot,
        })
    }
}

impl<S> Accept<TcpStream, S> for CappedAcceptor {
    type Stream = Counted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(self.admit(stream).map(|counted| (counted, service)))
    }
}

/// A TCP stream that holds its client's connection slot until it is dropped.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _slot: Option<ClientSlot>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What an HTTP/2 connection starts with (RFC 9113, section 3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Closes connections that start with the HTTP/2 preface; hands the others on with the bytes it
/// looked at put back.
#[derive(Clone, Debug)]
pub struct Http1Only<A> {
    inner: A,
    timeout: Duration,
}

impl<A> Http1Only<A> {
    /// Wraps `inner`; a connection must show its first bytes within `timeout`.
    #[must_use]
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<I, S, A> Accept<I, S> for Http1Only<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + Unpin + Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Rewound<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.inner.accept(stream, service);
        let timeout = self.timeout;
        Box::pin(async move {
            let (mut stream, service) = inner.await?;
            let mut head = [0u8; HTTP2_PREFACE.len()];
            let mut filled = 0;
            // Read only while the bytes could still be the preface: an HTTP/1 request differs
            // at its first or second byte.
            let looked = tokio::time::timeout(timeout, async {
                while filled < head.len() && HTTP2_PREFACE.starts_with(&head[..filled]) {
                    let n = stream.read(&mut head[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                io::Result::Ok(())
            })
            .await;
            match looked {
                Err(_) => Err(refused(AcceptError::Silent)),
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) if &head == HTTP2_PREFACE => Err(refused(AcceptError::Http2)),
                Ok(Ok(())) => Ok((
                    Rewound {
                        head: head[..filled].to_vec(),
                        at: 0,
                        stream,
                    },
                    service,
                )),
            }
        })
    }
}

fn refused(error: AcceptError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, error)
}

/// A stream whose first bytes were read already: they are read again first.
#[derive(Debug)]
pub struct Rewound<S> {
    head: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = (self.head.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Accepts one loopback connection through `acceptor`.
    async fn admitted(acceptor: &CappedAcceptor) -> Counted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        acceptor.admit(stream).expect("admitted")
    }

    #[tokio::test]
    async fn an_accepted_socket_keeps_little_unsent_data_in_the_kernel() {
        let acceptor = CappedAcceptor::new(PerClientCap::new(4), &[]).unsent_limit(Some(4096));
        let counted = admitted(&acceptor).await;
        let socket = socket2::SockRef::from(&counted.stream);
        assert_eq!(socket.tcp_notsent_lowat().expect("read back"), 4096);
        assert!(socket.tcp_nodelay().expect("read back"));
    }

    #[tokio::test]
    async fn without_a_limit_the_system_default_stays() {
        let acceptor = CappedAcceptor::new(PerClientCap::new(4), &[]);
        let counted = admitted(&acceptor).await;
        let socket = socket2::SockRef::from(&counted.stream);
        // 0: the socket follows the system's net.ipv4.tcp_notsent_lowat ("no limit" by default).
        assert_eq!(socket.tcp_notsent_lowat().expect("read back"), 0);
    }
}
