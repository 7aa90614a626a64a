//! The lines: which peers are on which line, at most two each.
//!
//! A slot is taken *before* the WebSocket upgrade (so the 409 for a third peer is decided under
//! the same lock that admits the second) and held by a [`Membership`]; dropping it frees the slot
//! and tells the other peer `peer-left`, whichever way the socket ended.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use line_protocol::control::RelayMessage;
use line_protocol::line_id::LineId;

use crate::metrics::Metrics;
use crate::outbox::Outbox;

/// Why a peer cannot join a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The line already has two peers.
    LineFull,
    /// The server holds its maximum number of lines.
    TooManyLines,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineFull => f.write_str("this line already has two people on it"),
            Self::TooManyLines => f.write_str("the server is full, try again later"),
        }
    }
}

impl std::error::Error for JoinError {}

/// Both slots of one line.
#[derive(Debug, Default)]
struct Line {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    peers: [Option<Arc<Outbox>>; 2],
    /// Since when one peer has been alone on the line (`None` while two are on it).
    alone_since: Option<Instant>,
}

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().expect("line lock is never poisoned")
    }
}

/// Every line with at least one peer.
#[derive(Debug)]
pub struct Registry {
    lines: Mutex<HashMap<LineId, Arc<Line>>>,
    max_lines: usize,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// An empty registry that holds at most `max_lines` lines.
    #[must_use]
    pub fn new(max_lines: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            lines: Mutex::new(HashMap::new()),
            max_lines,
            metrics,
        })
    }

    /// Takes a free slot on `line` for a peer whose outbound queue is `outbox`.
    ///
    /// The joining peer is told `waiting` or `peer-joined`; a peer already there is told
    /// `peer-joined`.
    pub fn join(
        self: &Arc<Self>,
        id: LineId,
        outbox: Arc<Outbox>,
    ) -> Result<Membership, JoinError> {
        let mut lines = self.lines.lock().expect("registry lock is never poisoned");
        if !lines.contains_key(&id) && lines.len() >= self.max_lines {
            return Err(JoinError::TooManyLines);
        }
        let line = lines.entry(id).or_default().clone();
        let mut slots = line.lock();
        let slot = slots
            .peers
            .iter()
            .position(Option::is_none)
            .ok_or(JoinError::LineFull)?;
        match &slots.peers[1 - slot] {
            Some(other) => {
                other.push_control(RelayMessage::PeerJoined.to_json());
                outbox.push_control(RelayMessage::PeerJoined.to_json());
                slots.alone_since = None;
            }
            None => {
                outbox.push_control(RelayMessage::Waiting.to_json());
                slots.alone_since = Some(Instant::now());
            }
        }
        slots.peers[slot] = Some(outbox);
        drop(slots);
        self.metrics.set_active_lines(lines.len());
        Ok(Membership {
            registry: Arc::clone(self),
            id,
            line,
            slot,
        })
    }

    /// Whether `line` has two peers now: a read-only look, so a plain `GET /ws` (a browser that
    /// could not open its WebSocket and asks why) learns 409 without taking a slot.
    #[must_use]
    pub fn is_full(&self, id: LineId) -> bool {
        let lines = self.lines.lock().expect("registry lock is never poisoned");
        lines
            .get(&id)
            .is_some_and(|line| line.lock().peers.iter().all(Option::is_some))
    }

    /// Lines with at least one peer.
    #[must_use]
    pub fn active_lines(&self) -> usize {
        self.lines
            .lock()
            .expect("registry lock is never poisoned")
            .len()
    }

    fn leave(&self, id: LineId, line: &Arc<Line>, slot: usize) {
        let mut lines = self.lines.lock().expect("registry lock is never poisoned");
        let mut slots = line.lock();
        slots.peers[slot] = None;
        match &slots.peers[1 - slot] {
            Some(other) => {
                other.push_control(RelayMessage::PeerLeft.to_json());
                slots.alone_since = Some(Instant::now());
            }
            None => {
                lines.remove(&id);
            }
        }
        drop(slots);
        self.metrics.set_active_lines(lines.len());
    }
}

/// One peer's slot on a line; dropping it leaves the line.
#[derive(Debug)]
pub struct Membership {
    registry: Arc<Registry>,
    id: LineId,
    line: Arc<Line>,
    slot: usize,
}

impl Membership {
    /// The line this membership is on.
    #[must_use]
    pub fn line_id(&self) -> LineId {
        self.id
    }

    /// The other peer's outbound queue, when someone else is on the line.
    #[must_use]
    pub fn other(&self) -> Option<Arc<Outbox>> {
        self.line.lock().peers[1 - self.slot].clone()
    }

    /// Since when this peer has been alone on the line; `None` while someone else is on it.
    #[must_use]
    pub fn alone_since(&self) -> Option<Instant> {
        self.line.lock().alone_since
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.leave(self.id, &self.line, self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Next, Outgoing, QueueBudget, QueueLimits};

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(
            QueueLimits::default(),
            QueueBudget::new(usize::MAX),
        ))
    }

    fn control(outbox: &Outbox) -> Option<RelayMessage> {
        match outbox.pop() {
            Next::Send(Outgoing::Control(text)) => RelayMessage::from_json(&text).ok(),
            _ => None,
        }
    }

    #[test]
    fn two_peers_then_full_then_leave() {
        let registry = Registry::new(10, Arc::default());
        let id = LineId::from_bytes([7; 16]);
        let (a, b, c) = (outbox(), outbox(), outbox());
        let first = registry.join(id, a.clone()).expect("first joins");
        assert_eq!(control(&a), Some(RelayMessage::Waiting));
        let alone = first.alone_since().expect("alone at first");
        let second = registry.join(id, b.clone()).expect("second joins");
        assert_eq!(first.alone_since(), None);
        assert_eq!(control(&a), Some(RelayMessage::PeerJoined));
        assert_eq!(control(&b), Some(RelayMessage::PeerJoined));
        assert!(Arc::ptr_eq(&first.other().expect("b"), &b));
        assert_eq!(registry.join(id, c).err(), Some(JoinError::LineFull));
        drop(second);
        assert_eq!(control(&a), Some(RelayMessage::PeerLeft));
        assert!(first.other().is_none());
        assert!(first.alone_since().expect("alone again") >= alone);
        assert_eq!(registry.active_lines(), 1);
        drop(first);
        assert_eq!(registry.active_lines(), 0);
    }

    #[test]
    fn max_lines_is_enforced() {
        let registry = Registry::new(1, Arc::default());
        let _a = registry
            .join(LineId::from_bytes([1; 16]), outbox())
            .expect("fits");
        assert_eq!(
            registry.join(LineId::from_bytes([2; 16]), outbox()).err(),
            Some(JoinError::TooManyLines)
        );
        assert!(registry.join(LineId::from_bytes([1; 16]), outbox()).is_ok());
    }
}
