//! The module's exports for `www/worklet.js`: numbers in, numbers out, over one static
//! [`Playout`]. Scratch buffers live in the module's memory; their addresses are exported, and
//! JavaScript reads and writes them through typed arrays over `memory.buffer` (renewed when the
//! memory grows, which only a new stream's jitter buffer may make it do).
#![allow(unsafe_code)] // `#[unsafe(no_mangle)]` names the exports; nothing here dereferences.
#![allow(unreachable_pub)] // Reached by name from the module's importer, not by path.

use std::cell::RefCell;

use crate::Playout;
use crate::playout::stat;

thread_local! {
    static PLAYOUT: RefCell<Option<Playout>> = const { RefCell::new(None) };
}

fn with<R: Default>(f: impl FnOnce(&mut Playout) -> R) -> R {
    PLAYOUT.with(|p| p.borrow_mut().as_mut().map(f).unwrap_or_default())
}

/// Starts playout into a context at `context_rate` Hz (again: a fresh start).
#[unsafe(no_mangle)]
pub extern "C" fn playout_init(context_rate: u32) {
    PLAYOUT.with(|p| *p.borrow_mut() = Some(Playout::new(context_rate)));
}

/// Address of the record scratch (`record::MAX_WORDS` f32).
#[unsafe(no_mangle)]
pub extern "C" fn playout_record() -> usize {
    with(|p| p.record_scratch().as_mut_ptr() as usize)
}

/// Words the record scratch holds.
#[unsafe(no_mangle)]
pub extern "C" fn playout_record_words() -> usize {
    crate::record::MAX_WORDS
}

/// Takes the record of `len` words in the scratch, before the quantum starting at `frame`.
#[unsafe(no_mangle)]
pub extern "C" fn playout_push(len: usize, frame: f64) {
    with(|p| p.push_scratch(len, frame));
}

/// Counts a record that found no room in the worklet's ring.
#[unsafe(no_mangle)]
pub extern "C" fn playout_dropped() {
    with(|p| p.record_dropped());
}

/// Address of the output scratch (`playout::MAX_QUANTUM` f32), where a quantum is rendered.
#[unsafe(no_mangle)]
pub extern "C" fn playout_out() -> usize {
    with(|p| p.out().as_ptr() as usize)
}

/// Renders `n` samples into the output scratch for the quantum starting at `frame`.
#[unsafe(no_mangle)]
pub extern "C" fn playout_render(frame: f64, n: usize) {
    with(|p| p.render_scratch(frame, n));
}

/// Fills the statistics; returns their address (`playout_stats_len` f64).
#[unsafe(no_mangle)]
pub extern "C" fn playout_stats() -> usize {
    with(|p| p.stats().as_ptr() as usize)
}

/// How many statistics there are.
#[unsafe(no_mangle)]
pub extern "C" fn playout_stats_len() -> usize {
    stat::LEN
}
