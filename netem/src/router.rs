//! Moves packets between the two sides through a [`Netem`], on the real clock: one thread reads
//! each side and hands what it reads to the link, one thread sends each packet on when it is due.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

use crate::impairment::{Direction, Netem};

/// The largest packet read: a full-size IP packet (the devices' MTU is 1500) with room to spare.
const MAX_PACKET: usize = 65_535;

/// One side's end of the link: reads the packets that side sends, and delivers packets to it.
pub trait Port: Send + Sync + 'static {
    /// Blocks until the side sends a packet; returns its length.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Delivers one packet to the side.
    fn send(&self, packet: &[u8]) -> io::Result<usize>;
}

impl Port for tun::Device {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Self::recv(self, buf)
    }

    fn send(&self, packet: &[u8]) -> io::Result<usize> {
        Self::send(self, packet)
    }
}

/// A datagram socket stands in for a device where no TUN can be made (the router's own tests).
impl Port for UnixDatagram {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Self::recv(self, buf)
    }

    fn send(&self, packet: &[u8]) -> io::Result<usize> {
        Self::send(self, packet)
    }
}

/// A running link between a near and a far [`Port`].
///
/// The threads run until the process ends: a blocked read has no portable way to be woken, and
/// a link lives as long as the test that needs it.
#[derive(Debug)]
pub struct Router {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    link: Mutex<Netem>,
    /// Signalled when a packet enters the link or its timing changes.
    wake: Condvar,
    /// Reads and sends that failed (a side that is down, a full queue in its kernel).
    io_errors: AtomicU64,
}

impl Router {
    /// Starts moving packets: what `near` sends goes [`Direction::Up`] to `far`, what `far` sends
    /// goes [`Direction::Down`] to `near`.
    pub fn start(near: impl Port, far: impl Port, link: Netem) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            link: Mutex::new(link),
            wake: Condvar::new(),
            io_errors: AtomicU64::new(0),
        });
        let near = Arc::new(near);
        let far = Arc::new(far);
        for (name, direction, from) in [
            (
                "netem-read-near",
                Direction::Up,
                Arc::clone(&near) as Arc<dyn Port>,
            ),
            (
                "netem-read-far",
                Direction::Down,
                Arc::clone(&far) as Arc<dyn Port>,
            ),
        ] {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(name.into())
                .spawn(move || read(&shared, direction, &*from))?;
        }
        let sender = Arc::clone(&shared);
        thread::Builder::new()
            .name("netem-send".into())
            .spawn(move || send(&sender, &*near, &*far))?;
        Ok(Self { shared })
    }

    /// Runs `f` on the link at the current instant (to change its profile, start an outage or
    /// read its statistics); the sender then looks again at what is due.
    pub fn with_link<R>(&self, f: impl FnOnce(&mut Netem, Instant) -> R) -> R {
        let result = f(&mut self.shared.lock(), Instant::now());
        self.shared.wake.notify_one();
        result
    }

    /// Reads and sends that failed so far.
    #[must_use]
    pub fn io_errors(&self) -> u64 {
        self.shared.io_errors.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Netem> {
        // A panic while holding the link leaves it consistent (every method completes its
        // changes before anything can panic), so the other threads go on with it.
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failed(&self) {
        self.io_errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn read(shared: &Shared, direction: Direction, from: &dyn Port) {
    let mut buf = vec![0; MAX_PACKET];
    loop {
        match from.recv(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                shared
                    .lock()
                    .push(Instant::now(), direction, buf[..n].to_vec());
                shared.wake.notify_one();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                shared.failed();
                // A side that went away for good would otherwise spin this thread.
                thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn send(shared: &Shared, near: &dyn Port, far: &dyn Port) {
    let mut due = Vec::new();
    let mut link = shared.lock();
    loop {
        let now = Instant::now();
        while let Some(packet) = link.poll_packet(now) {
            due.push(packet);
        }
        if due.is_empty() {
            link = match link.poll_timeout() {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    shared
                        .wake
                        .wait_timeout(link, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared
                    .wake
                    .wait(link)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            continue;
        }
        // Send without holding the link, so that the readers are never kept waiting on a device.
        drop(link);
        for (direction, packet) in due.drain(..) {
            let to = match direction {
                Direction::Up => far,
                Direction::Down => near,
            };
            if to.send(&packet).is_err() {
                shared.failed();
            }
        }
        link = shared.lock();
    }
}
