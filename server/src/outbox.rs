//! One peer's bounded outbound queue: what the relay still has to write to that peer's socket.
//!
//! The other peer's reader pushes into it and never waits; this peer's writer task drains it at
//! whatever pace the peer's network allows. When audio piles up past the bound, the *oldest* audio
//! frame goes (it is the most out of date, and the receiver's jitter buffer would discard it
//! anyway), so memory and added latency stay bounded whatever a client does. Control messages are
//! few and never dropped.
//!
//! Every outbox also draws on one [`QueueBudget`] shared by the whole server: while all queues
//! together hold more audio than the budget, a queue that takes a frame keeps only that newest
//! frame. So however many receivers stall, queued audio stays within the budget plus one frame
//! per socket, and a call whose receiver keeps up (its queue holds a frame or two) loses nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::Notify;

/// How much audio one outbox may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Audio frames, whatever their size.
    pub frames: usize,
    /// Bytes of audio frames.
    pub bytes: usize,
}

impl QueueLimits {
    /// Limits that hold `ms` milliseconds of audio at the highest frame rate (2.5 ms frames) and
    /// at the highest byte rate (a [`line_protocol::MAX_FRAME_LEN`] frame every 20 ms).
    #[must_use]
    pub const fn for_millis(ms: usize) -> Self {
        // 2.5 ms is the shortest frame the client sends: 400 frames per second.
        let frames = ms * 2 / 5;
        // A largest frame holds 20 ms of audio at the highest rate the protocol allows.
        let bytes = ms.div_ceil(20) * line_protocol::MAX_FRAME_LEN;
        Self {
            frames: if frames == 0 { 1 } else { frames },
            bytes: if bytes == 0 {
                line_protocol::MAX_FRAME_LEN
            } else {
                bytes
            },
        }
    }
}

impl Default for QueueLimits {
    /// 200 ms of audio: 80 frames or 320 KiB.
    fn default() -> Self {
        Self::for_millis(200)
    }
}

/// The bytes of audio every outbox together may hold before each keeps only its newest frame.
#[derive(Debug)]
pub struct QueueBudget {
    limit: usize,
    used: AtomicUsize,
}

impl QueueBudget {
    /// A budget of `limit` bytes.
    #[must_use]
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes of audio queued in every outbox now.
    #[must_use]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget's size.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn over(&self, adding: usize) -> bool {
        self.used().saturating_add(adding) > self.limit
    }

    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Something the writer task sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// An encrypted frame from the other peer, forwarded unchanged.
    Frame(Bytes),
    /// A relay control message (JSON text).
    Control(String),
}

/// How the writer should close the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closing {
    /// WebSocket close code.
    pub code: u16,
    /// Short reason for a person.
    pub reason: String,
    /// Send a `RelayMessage::Error` text frame first.
    pub explain: bool,
}

/// What the writer gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this.
    Send(Outgoing),
    /// Close the socket and stop.
    Close(Closing),
    /// Nothing queued now.
    Empty,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    audio_frames: usize,
    audio_bytes: usize,
    closing: Option<Closing>,
}

/// A bounded, drop-oldest queue with a single consumer (the socket's writer task).
#[derive(Debug)]
pub struct Outbox {
    limits: QueueLimits,
    budget: Arc<QueueBudget>,
    state: Mutex<State>,
    ready: Notify,
    dropped: AtomicU64,
}

impl Outbox {
    /// An empty outbox with these limits, drawing on `budget`.
    #[must_use]
    pub fn new(limits: QueueLimits, budget: Arc<QueueBudget>) -> Self {
        Self {
            limits,
            budget,
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues an audio frame; returns how many older frames were dropped to make room.
    pub fn push_frame(&self, frame: Bytes) -> u64 {
        let mut dropped = 0;
        {
            let mut state = self.lock();
            if state.closing.is_some() {
                return 1;
            }
            let len = frame.len();
            while state.audio_frames > 0
                && (state.audio_frames + 1 > self.limits.frames
                    || state.audio_bytes + len > self.limits.bytes
                    || self.budget.over(len))
            {
                let oldest = state
                    .items
                    .iter()
                    .position(|item| matches!(item, Outgoing::Frame(_)))
                    .expect("audio_frames counts the frames in items");
                if let Some(Outgoing::Frame(old)) = state.items.remove(oldest) {
                    state.audio_frames -= 1;
                    state.audio_bytes -= old.len();
                    self.budget.give_back(old.len());
                    dropped += 1;
                }
            }
            state.audio_frames += 1;
            state.audio_bytes += len;
            self.budget.take(len);
            state.items.push_back(Outgoing::Frame(frame));
        }
        self.ready.notify_one();
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        dropped
    }

    /// Queues a control message; these are never dropped.
    pub fn push_control(&self, text: String) {
        {
            let mut state = self.lock();
            if state.closing.is_some() {
                return;
            }
            state.items.push_back(Outgoing::Control(text));
        }
        self.ready.notify_one();
    }

    /// Asks the writer to close the socket; what is still queued is discarded. The first close
    /// wins.
    pub fn close(&self, closing: Closing) {
        {
            let mut state = self.lock();
            if state.closing.is_some() {
                return;
            }
            state.items.clear();
            state.audio_frames = 0;
            self.budget
                .give_back(std::mem::take(&mut state.audio_bytes));
            state.closing = Some(closing);
        }
        self.ready.notify_one();
    }

    /// Takes the next thing to send.
    pub fn pop(&self) -> Next {
        let mut state = self.lock();
        if let Some(closing) = &state.closing {
            return Next::Close(closing.clone());
        }
        match state.items.pop_front() {
            Some(item) => {
                if let Outgoing::Frame(frame) = &item {
                    state.audio_frames -= 1;
                    state.audio_bytes -= frame.len();
                    self.budget.give_back(frame.len());
                }
                Next::Send(item)
            }
            None => Next::Empty,
        }
    }

    /// Waits until something may have been queued since the last [`Outbox::pop`] that returned
    /// [`Next::Empty`].
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Audio frames this outbox dropped because it was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Audio frames and bytes queued now.
    #[must_use]
    pub fn audio_len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.audio_frames, state.audio_bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("outbox lock is never poisoned")
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let state = self.state.get_mut().expect("outbox lock is never poisoned");
        self.budget.give_back(state.audio_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbudgeted(limits: QueueLimits) -> Outbox {
        Outbox::new(limits, QueueBudget::new(usize::MAX))
    }

    fn frame(tag: u8, len: usize) -> Bytes {
        Bytes::from(vec![tag; len])
    }

    #[test]
    fn default_holds_200_ms() {
        let limits = QueueLimits::default();
        assert_eq!(limits.frames, 80);
        assert_eq!(limits.bytes, 10 * line_protocol::MAX_FRAME_LEN);
    }

    #[test]
    fn full_queue_drops_the_oldest_audio_but_keeps_control() {
        let outbox = unbudgeted(QueueLimits {
            frames: 2,
            bytes: 1000,
        });
        outbox.push_control("hello".into());
        assert_eq!(outbox.push_frame(frame(1, 10)), 0);
        assert_eq!(outbox.push_frame(frame(2, 10)), 0);
        assert_eq!(outbox.push_frame(frame(3, 10)), 1);
        assert_eq!(outbox.audio_len(), (2, 20));
        assert_eq!(outbox.pop(), Next::Send(Outgoing::Control("hello".into())));
        assert_eq!(outbox.pop(), Next::Send(Outgoing::Frame(frame(2, 10))));
        assert_eq!(outbox.pop(), Next::Send(Outgoing::Frame(frame(3, 10))));
        assert_eq!(outbox.pop(), Next::Empty);
    }

    #[test]
    fn byte_limit_applies_too() {
        let outbox = unbudgeted(QueueLimits {
            frames: 100,
            bytes: 25,
        });
        outbox.push_frame(frame(1, 10));
        outbox.push_frame(frame(2, 10));
        assert_eq!(outbox.push_frame(frame(3, 10)), 1);
        assert_eq!(outbox.audio_len(), (2, 20));
        // A frame larger than the whole bound still goes through alone.
        assert_eq!(outbox.push_frame(frame(4, 40)), 2);
        assert_eq!(outbox.audio_len(), (1, 40));
    }

    #[test]
    fn close_discards_the_queue_and_wins_once() {
        let budget = QueueBudget::new(usize::MAX);
        let outbox = Outbox::new(QueueLimits::default(), Arc::clone(&budget));
        outbox.push_frame(frame(1, 10));
        assert_eq!(budget.used(), 10);
        let closing = Closing {
            code: 1001,
            reason: "bye".into(),
            explain: false,
        };
        outbox.close(closing.clone());
        outbox.close(Closing {
            code: 4400,
            reason: "later".into(),
            explain: true,
        });
        assert_eq!(outbox.pop(), Next::Close(closing));
        assert_eq!(outbox.audio_len(), (0, 0));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn stalled_queues_stay_within_the_shared_budget() {
        // Each queue alone may hold 10 frames of 100 bytes; together they may hold 2000 bytes.
        let budget = QueueBudget::new(2000);
        let limits = QueueLimits {
            frames: 10,
            bytes: 1000,
        };
        let stalled: Vec<_> = (0..50)
            .map(|_| Outbox::new(limits, Arc::clone(&budget)))
            .collect();
        for round in 0..20u8 {
            for outbox in &stalled {
                outbox.push_frame(frame(round, 100));
                // Within the budget plus one frame per queue, whatever the order.
                assert!(budget.used() <= 2000 + 50 * 100, "{}", budget.used());
            }
        }
        // Each queue that pushes while the budget is spent keeps only its newest frame.
        assert_eq!(budget.used(), 50 * 100);
        for outbox in &stalled {
            assert_eq!(outbox.audio_len(), (1, 100));
        }
        // A live call's queue still takes its frame and loses nothing.
        let live = Outbox::new(limits, Arc::clone(&budget));
        assert_eq!(live.push_frame(frame(9, 100)), 0);
        assert_eq!(live.pop(), Next::Send(Outgoing::Frame(frame(9, 100))));
        // Dropping queues gives their bytes back.
        drop(stalled);
        assert_eq!(budget.used(), 0);
    }
}
