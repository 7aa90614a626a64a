//! How many of something (TCP connections, WebSockets) one client address holds at once.
//!
//! A [`ClientSlot`] is taken when the thing opens and frees itself when dropped, so the count
//! can never leak whichever way a connection ends. The table holds only addresses that hold at
//! least one slot: its size is bounded by what is open, not by how many addresses ever came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::net::ClientGroup;

/// At most `max` open things per [`ClientGroup`].
#[derive(Debug)]
pub struct PerClientCap {
    max: usize,
    held: Mutex<HashMap<ClientGroup, usize>>,
}

impl PerClientCap {
    /// A cap of `max` per client; 0 means no cap.
    #[must_use]
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `group`, or `None` when it already holds the maximum.
    #[must_use]
    pub fn try_acquire(self: &Arc<Self>, group: ClientGroup) -> Option<ClientSlot> {
        let mut held = self.lock();
        let count = held.entry(group).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            cap: Arc::clone(self),
            group,
        })
    }

    /// Slots `group` holds now.
    #[must_use]
    pub fn held_by(&self, group: ClientGroup) -> usize {
        self.lock().get(&group).copied().unwrap_or(0)
    }

    /// Client groups holding at least one slot.
    #[must_use]
    pub fn clients(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientGroup, usize>> {
        self.held.lock().expect("per-client lock is never poisoned")
    }
}

/// One open thing of one client; dropping it frees the slot.
#[derive(Debug)]
pub struct ClientSlot {
    cap: Arc<PerClientCap>,
    group: ClientGroup,
}

impl ClientSlot {
    /// Whose slot this is.
    #[must_use]
    pub fn group(&self) -> ClientGroup {
        self.group
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.cap.lock();
        if let Some(count) = held.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(s: &str) -> ClientGroup {
        ClientGroup::of(s.parse().expect("ip"))
    }

    #[test]
    fn caps_each_client_and_frees_on_drop() {
        let cap = PerClientCap::new(2);
        let a = cap.try_acquire(group("192.0.2.1")).expect("first");
        let b = cap.try_acquire(group("192.0.2.1")).expect("second");
        assert!(cap.try_acquire(group("192.0.2.1")).is_none());
        // Another address, and another /64, are not affected.
        let c = cap.try_acquire(group("192.0.2.2")).expect("other address");
        let _d = cap.try_acquire(group("2001:db8::1")).expect("v6");
        let _e = cap.try_acquire(group("2001:db8::2")).expect("same /64");
        assert!(cap.try_acquire(group("2001:db8::ffff")).is_none());
        drop(a);
        assert_eq!(cap.held_by(group("192.0.2.1")), 1);
        let _a = cap.try_acquire(group("192.0.2.1")).expect("freed");
        drop((b, c));
        assert_eq!(cap.held_by(group("192.0.2.2")), 0);
        // Only clients holding something are in the table.
        assert_eq!(cap.clients(), 2);
    }

    #[test]
    fn zero_means_no_cap() {
        let cap = PerClientCap::new(0);
        let slots: Vec<_> = (0..1000)
            .map(|_| cap.try_acquire(group("192.0.2.1")).expect("uncapped"))
            .collect();
        assert_eq!(cap.held_by(group("192.0.2.1")), 1000);
        drop(slots);
        assert_eq!(cap.clients(), 0);
    }
}
