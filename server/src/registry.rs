//! The lines: which peers are on which line, at most two each, and whose the line is.
//!
//! A slot is taken *before* the WebSocket upgrade (so the 409 for a third peer is decided under
//! the same lock that admits the second) and held by a [`Membership`]; dropping it frees the slot
//! and tells the other peer `peer-left`, whichever way the socket ended.
//!
//! The first socket on a line registers the line's [`JoinToken`]; later ones must present the same
//! (else [`JoinError::WrongToken`]). A socket whose [`ParticipantId`] holds a slot already takes
//! that slot over: the old membership is told (its socket closes with
//! [`close_code::TAKEN_OVER`](line_protocol::control::close_code::TAKEN_OVER)) and no longer frees
//! or relays anything. docs/PROTOCOL.md section 6 has the rules as clients see them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use line_protocol::control::RelayMessage;
use line_protocol::join::{JoinToken, ParticipantId};
use line_protocol::line_id::LineId;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

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
    /// The line is in use with another join token: its people hold another leaf.
    WrongToken,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineFull => f.write_str("this line already has two people on it"),
            Self::TooManyLines => f.write_str("the server is full, try again later"),
            Self::WrongToken => f.write_str("this line is in use with another join token"),
        }
    }
}

impl std::error::Error for JoinError {}

/// What a socket presents to take a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joiner {
    /// The line's join token (derived from the leaf).
    pub token: JoinToken,
    /// The person's id across reconnects; without one, the slot cannot be taken over.
    pub participant: Option<ParticipantId>,
}

/// One held slot.
#[derive(Debug)]
struct Seat {
    participant: Option<ParticipantId>,
    outbox: Arc<Outbox>,
    /// Cancelled when a newer connection of the same participant takes the slot.
    taken_over: CancellationToken,
}

impl Seat {
    fn is(&self, outbox: &Arc<Outbox>) -> bool {
        Arc::ptr_eq(&self.outbox, outbox)
    }
}

/// Both slots of one line, and the token that opens them.
#[derive(Debug)]
struct Line {
    token: JoinToken,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    seats: [Option<Seat>; 2],
    /// Since when one peer has been alone on the line (`None` while two are on it).
    alone_since: Option<Instant>,
}

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().expect("line lock is never poisoned")
    }
}

impl Slots {
    /// The slot `joiner` would get: its own (to take over), a free one, or an error.
    fn slot_for(&self, joiner: &Joiner) -> Result<usize, JoinError> {
        let own = joiner.participant.and_then(|me| {
            self.seats
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.participant == Some(me)))
        });
        own.or_else(|| self.seats.iter().position(Option::is_none))
            .ok_or(JoinError::LineFull)
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

    /// Takes a slot on `line` for a socket whose outbound queue is `outbox`: the slot `joiner`'s
    /// participant already holds (its old socket is told to close), or a free one.
    ///
    /// The joining peer is told `waiting` or `peer-joined`; a peer already there is told
    /// `peer-joined`.
    pub fn join(
        self: &Arc<Self>,
        id: LineId,
        joiner: &Joiner,
        outbox: Arc<Outbox>,
    ) -> Result<Membership, JoinError> {
        let mut lines = self.lines.lock().expect("registry lock is never poisoned");
        let line = match lines.get(&id) {
            Some(line) if line.token != joiner.token => return Err(JoinError::WrongToken),
            Some(line) => Arc::clone(line),
            None if lines.len() >= self.max_lines => return Err(JoinError::TooManyLines),
            None => {
                let line = Arc::new(Line {
                    token: joiner.token.clone(),
                    slots: Mutex::default(),
                });
                lines.insert(id, Arc::clone(&line));
                line
            }
        };
        let mut slots = line.lock();
        let slot = slots.slot_for(joiner)?;
        if let Some(old) = slots.seats[slot].take() {
            old.taken_over.cancel();
            self.metrics.slot_taken_over();
        }
        match &slots.seats[1 - slot] {
            Some(other) => {
                other
                    .outbox
                    .push_control(RelayMessage::PeerJoined.to_json());
                outbox.push_control(RelayMessage::PeerJoined.to_json());
                slots.alone_since = None;
            }
            None => {
                outbox.push_control(RelayMessage::Waiting.to_json());
                // A participant taking its own slot back keeps waiting since it first did: a
                // reconnect does not restart the clock.
                slots.alone_since.get_or_insert_with(Instant::now);
            }
        }
        let taken_over = CancellationToken::new();
        slots.seats[slot] = Some(Seat {
            participant: joiner.participant,
            outbox: Arc::clone(&outbox),
            taken_over: taken_over.clone(),
        });
        drop(slots);
        self.metrics.set_active_lines(lines.len());
        Ok(Membership {
            registry: Arc::clone(self),
            id,
            line,
            slot,
            outbox,
            taken_over,
        })
    }

    /// What [`Registry::join`] would answer now, without taking anything: a plain `GET /ws` (a
    /// browser that could not open its WebSocket and asks why) learns 409 or 423 this way.
    pub fn check(&self, id: LineId, joiner: &Joiner) -> Result<(), JoinError> {
        let lines = self.lines.lock().expect("registry lock is never poisoned");
        match lines.get(&id) {
            Some(line) if line.token != joiner.token => Err(JoinError::WrongToken),
            Some(line) => line.lock().slot_for(joiner).map(|_| ()),
            None if lines.len() >= self.max_lines => Err(JoinError::TooManyLines),
            None => Ok(()),
        }
    }

    /// Lines with at least one peer.
    #[must_use]
    pub fn active_lines(&self) -> usize {
        self.lines
            .lock()
            .expect("registry lock is never poisoned")
            .len()
    }

    fn leave(&self, id: LineId, line: &Arc<Line>, slot: usize, outbox: &Arc<Outbox>) {
        let mut lines = self.lines.lock().expect("registry lock is never poisoned");
        let mut slots = line.lock();
        if !slots.seats[slot].as_ref().is_some_and(|s| s.is(outbox)) {
            // Taken over: the slot belongs to the participant's newer socket now.
            return;
        }
        slots.seats[slot] = None;
        match &slots.seats[1 - slot] {
            Some(other) => {
                other.outbox.push_control(RelayMessage::PeerLeft.to_json());
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
    outbox: Arc<Outbox>,
    taken_over: CancellationToken,
}

impl Membership {
    /// The line this membership is on.
    #[must_use]
    pub fn line_id(&self) -> LineId {
        self.id
    }

    /// The other peer's outbound queue, when someone else is on the line and this membership
    /// still holds its slot.
    #[must_use]
    pub fn other(&self) -> Option<Arc<Outbox>> {
        let slots = self.line.lock();
        if !slots.seats[self.slot]
            .as_ref()
            .is_some_and(|s| s.is(&self.outbox))
        {
            return None;
        }
        slots.seats[1 - self.slot]
            .as_ref()
            .map(|s| Arc::clone(&s.outbox))
    }

    /// Since when this peer has been alone on the line; `None` while someone else is on it.
    #[must_use]
    pub fn alone_since(&self) -> Option<Instant> {
        self.line.lock().alone_since
    }

    /// Completes when a newer connection of the same participant has taken this slot over.
    pub fn taken_over(&self) -> WaitForCancellationFuture<'_> {
        self.taken_over.cancelled()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry
            .leave(self.id, &self.line, self.slot, &self.outbox);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

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

    fn joiner(token: u8, participant: u8) -> Joiner {
        Joiner {
            token: JoinToken::from_bytes([token; 16]),
            participant: Some(ParticipantId::from_random([participant; 16])),
        }
    }

    #[test]
    fn two_peers_then_full_then_leave() {
        let registry = Registry::new(10, Arc::default());
        let id = LineId::from_bytes([7; 16]);
        let (a, b, c) = (outbox(), outbox(), outbox());
        let first = registry.join(id, &joiner(1, 1), a.clone()).expect("first");
        assert_eq!(control(&a), Some(RelayMessage::Waiting));
        let alone = first.alone_since().expect("alone at first");
        let second = registry.join(id, &joiner(1, 2), b.clone()).expect("second");
        assert_eq!(first.alone_since(), None);
        assert_eq!(control(&a), Some(RelayMessage::PeerJoined));
        assert_eq!(control(&b), Some(RelayMessage::PeerJoined));
        assert!(Arc::ptr_eq(&first.other().expect("b"), &b));
        assert_eq!(
            registry.join(id, &joiner(1, 3), c).err(),
            Some(JoinError::LineFull)
        );
        assert_eq!(registry.check(id, &joiner(1, 3)), Err(JoinError::LineFull));
        drop(second);
        assert_eq!(control(&a), Some(RelayMessage::PeerLeft));
        assert!(first.other().is_none());
        assert!(first.alone_since().expect("alone again") >= alone);
        assert_eq!(registry.active_lines(), 1);
        drop(first);
        assert_eq!(registry.active_lines(), 0);
    }

    #[test]
    fn another_token_is_refused_until_the_line_is_free() {
        let registry = Registry::new(10, Arc::default());
        let id = LineId::from_bytes([7; 16]);
        let first = registry.join(id, &joiner(1, 1), outbox()).expect("first");
        assert_eq!(
            registry.join(id, &joiner(2, 2), outbox()).err(),
            Some(JoinError::WrongToken)
        );
        // The same participant id does not help without the token.
        assert_eq!(
            registry.join(id, &joiner(2, 1), outbox()).err(),
            Some(JoinError::WrongToken)
        );
        assert_eq!(
            registry.check(id, &joiner(2, 2)),
            Err(JoinError::WrongToken)
        );
        assert_eq!(registry.check(id, &joiner(1, 2)), Ok(()));
        drop(first);
        // An empty line is forgotten with its token: the next first joiner registers its own.
        let _other = registry
            .join(id, &joiner(2, 2), outbox())
            .expect("a free line takes any token");
    }

    #[test]
    fn a_participant_takes_its_own_slot_over() {
        let metrics = Arc::new(Metrics::default());
        let registry = Registry::new(10, Arc::clone(&metrics));
        let id = LineId::from_bytes([7; 16]);
        let (a_old, a_new, b) = (outbox(), outbox(), outbox());
        let old = registry
            .join(id, &joiner(1, 1), a_old.clone())
            .expect("a joins");
        let other = registry
            .join(id, &joiner(1, 2), b.clone())
            .expect("b joins");
        while control(&b).is_some() {}
        // Both slots are held, yet a's next connection gets in: it takes its own slot.
        assert_eq!(registry.check(id, &joiner(1, 1)), Ok(()));
        let new = registry
            .join(id, &joiner(1, 1), a_new.clone())
            .expect("a takes over");
        assert!(
            std::pin::pin!(old.taken_over()).now_or_never().is_some(),
            "the old socket is told"
        );
        assert!(old.other().is_none(), "the old socket relays nothing more");
        assert_eq!(control(&b), Some(RelayMessage::PeerJoined));
        assert_eq!(control(&a_new), Some(RelayMessage::PeerJoined));
        assert!(Arc::ptr_eq(&other.other().expect("a's new socket"), &a_new));
        // The old socket ending frees nothing and tells nobody.
        drop(old);
        assert_eq!(control(&b), None);
        assert!(Arc::ptr_eq(&new.other().expect("b"), &b));
        assert!(metrics.render().contains("line_slots_taken_over_total 1"));
        // Without a participant id nothing can be taken over.
        let anonymous = Joiner {
            participant: None,
            ..joiner(1, 1)
        };
        assert_eq!(
            registry.join(id, &anonymous, outbox()).err(),
            Some(JoinError::LineFull)
        );
    }

    #[test]
    fn taking_a_slot_back_while_alone_keeps_the_waiting_clock() {
        let registry = Registry::new(10, Arc::default());
        let id = LineId::from_bytes([7; 16]);
        let old = registry.join(id, &joiner(1, 1), outbox()).expect("a");
        let since = old.alone_since().expect("alone");
        let new = registry.join(id, &joiner(1, 1), outbox()).expect("a again");
        assert_eq!(new.alone_since(), Some(since));
        drop(old);
        assert_eq!(new.alone_since(), Some(since));
        assert_eq!(registry.active_lines(), 1);
    }

    #[test]
    fn max_lines_is_enforced() {
        let registry = Registry::new(1, Arc::default());
        let _a = registry
            .join(LineId::from_bytes([1; 16]), &joiner(1, 1), outbox())
            .expect("fits");
        assert_eq!(
            registry
                .join(LineId::from_bytes([2; 16]), &joiner(1, 1), outbox())
                .err(),
            Some(JoinError::TooManyLines)
        );
        assert!(
            registry
                .join(LineId::from_bytes([1; 16]), &joiner(1, 2), outbox())
                .is_ok()
        );
    }
}
