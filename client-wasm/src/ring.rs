//! Single-producer single-consumer rings of samples between the audio thread and the engine.
//!
//! The worklet shim (`www/worklet.js`) and the engine's worker share one buffer per direction:
//!
//! | bytes            | type          | meaning                                                   |
//! |------------------|---------------|-----------------------------------------------------------|
//! | 0..4             | Int32         | read index, in `0..capacity`; only the consumer stores it |
//! | 4..8             | Int32         | write index, in `0..capacity`; only the producer stores it|
//! | 8..12            | Int32         | samples the worklet could not move (overflow/underrun)    |
//! | 12..16           | Int32         | capture: samples before the worker is woken ([`WAKE_SLOT`])|
//! | 16..16+4*capacity| Float32       | the samples                                               |
//!
//! One slot always stays empty, so `read == write` means empty and the ring holds at most
//! `capacity - 1` samples. Indices are loaded and stored with `Atomics` (sequentially consistent),
//! the data is written before the index that publishes it. The worklet's end is written in
//! JavaScript (`www/ring.js`); both are tested against one table of cases,
//! `client-wasm/tests/ring_cases.json` (here natively, there under `node:test`).
//!
//! This module is plain Rust: [`RingMemory`] abstracts where the indices and samples live, so the
//! logic is tested natively with [`HeapRing`] and in the browser over typed arrays
//! (`crate::js_ring`).

use std::cell::{Cell, RefCell};

/// Bytes before the samples: four Int32 slots.
pub const HEADER_BYTES: u32 = 16;
/// Int32 slot of the read index.
pub const READ_SLOT: u32 = 0;
/// Int32 slot of the write index.
pub const WRITE_SLOT: u32 = 1;
/// Int32 slot where the worklet counts samples it could not move.
pub const XRUN_SLOT: u32 = 2;
/// Int32 slot of the capture ring where the worker says how many samples it wants readable
/// before the worklet wakes it (0: at every render quantum).
pub const WAKE_SLOT: u32 = 3;

/// Where a ring's indices and samples live: a shared buffer in the browser, a `Vec` in tests.
pub trait RingMemory {
    /// Sample slots in the ring (one of them always stays empty).
    fn capacity(&self) -> usize;
    /// Loads the read index.
    fn load_read(&self) -> usize;
    /// Loads the write index.
    fn load_write(&self) -> usize;
    /// Publishes a new read index.
    fn store_read(&self, index: usize);
    /// Publishes a new write index.
    fn store_write(&self, index: usize);
    /// Copies `src` into the slots starting at `at` (never crosses the end).
    fn write_data(&self, at: usize, src: &[f32]);
    /// Copies the slots starting at `at` into `dst` (never crosses the end).
    fn read_data(&self, at: usize, dst: &mut [f32]);
}

/// Samples ready to read when the indices are `read` and `write`.
#[must_use]
pub fn readable(capacity: usize, read: usize, write: usize) -> usize {
    (write + capacity - read) % capacity
}

/// Free slots when the indices are `read` and `write`.
#[must_use]
pub fn writable(capacity: usize, read: usize, write: usize) -> usize {
    capacity - 1 - readable(capacity, read, write)
}

/// The producing end of a ring: only one thread may hold it.
#[derive(Debug)]
pub struct Producer<M> {
    memory: M,
}

impl<M: RingMemory> Producer<M> {
    /// The producing end over `memory`.
    pub fn new(memory: M) -> Self {
        Self { memory }
    }

    /// Writes as many of `samples` as fit and returns how many that was.
    pub fn push(&self, samples: &[f32]) -> usize {
        let capacity = self.memory.capacity();
        let read = self.memory.load_read();
        let write = self.memory.load_write();
        let n = samples.len().min(writable(capacity, read, write));
        let first = n.min(capacity - write);
        self.memory.write_data(write, &samples[..first]);
        self.memory.write_data(0, &samples[first..n]);
        self.memory.store_write((write + n) % capacity);
        n
    }

    /// Samples waiting for the consumer.
    #[must_use]
    pub fn filled(&self) -> usize {
        let m = &self.memory;
        readable(m.capacity(), m.load_read(), m.load_write())
    }

    /// The memory under this end.
    pub fn memory(&self) -> &M {
        &self.memory
    }
}

/// The consuming end of a ring: only one thread may hold it.
#[derive(Debug)]
pub struct Consumer<M> {
    memory: M,
}

impl<M: RingMemory> Consumer<M> {
    /// The consuming end over `memory`.
    pub fn new(memory: M) -> Self {
        Self { memory }
    }

    /// Reads up to `out.len()` samples into `out` and returns how many that was.
    pub fn pop(&self, out: &mut [f32]) -> usize {
        let capacity = self.memory.capacity();
        let read = self.memory.load_read();
        let write = self.memory.load_write();
        let n = out.len().min(readable(capacity, read, write));
        let first = n.min(capacity - read);
        self.memory.read_data(read, &mut out[..first]);
        self.memory.read_data(0, &mut out[first..n]);
        self.memory.store_read((read + n) % capacity);
        n
    }

    /// Samples ready to read.
    #[must_use]
    pub fn available(&self) -> usize {
        let m = &self.memory;
        readable(m.capacity(), m.load_read(), m.load_write())
    }

    /// The memory under this end.
    pub fn memory(&self) -> &M {
        &self.memory
    }
}

/// A ring in ordinary memory, for one thread: native tests and the worker's own queues.
#[derive(Debug)]
pub struct HeapRing {
    read: Cell<usize>,
    write: Cell<usize>,
    data: RefCell<Vec<f32>>,
}

impl HeapRing {
    /// A ring of `capacity` slots (holding at most `capacity - 1` samples).
    ///
    /// # Panics
    /// If `capacity < 2`: such a ring could hold nothing, which is a bug in the caller.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        assert!(capacity >= 2, "a ring needs at least two slots");
        Self {
            read: Cell::new(0),
            write: Cell::new(0),
            data: RefCell::new(vec![0.0; capacity]),
        }
    }
}

impl RingMemory for &HeapRing {
    fn capacity(&self) -> usize {
        self.data.borrow().len()
    }
    fn load_read(&self) -> usize {
        self.read.get()
    }
    fn load_write(&self) -> usize {
        self.write.get()
    }
    fn store_read(&self, index: usize) {
        self.read.set(index);
    }
    fn store_write(&self, index: usize) {
        self.write.set(index);
    }
    fn write_data(&self, at: usize, src: &[f32]) {
        self.data.borrow_mut()[at..at + src.len()].copy_from_slice(src);
    }
    fn read_data(&self, at: usize, dst: &mut [f32]) {
        dst.copy_from_slice(&self.data.borrow()[at..at + dst.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(from: usize, n: usize) -> Vec<f32> {
        (from..from + n).map(|i| i as f32).collect()
    }

    #[test]
    fn empty_ring_reads_nothing() {
        let ring = HeapRing::new(8);
        let consumer = Consumer::new(&ring);
        let mut out = [9.0; 4];
        assert_eq!(consumer.pop(&mut out), 0);
        assert_eq!(out, [9.0; 4], "an empty read leaves the buffer alone");
        assert_eq!(consumer.available(), 0);
    }

    #[test]
    fn full_ring_keeps_one_slot_free_and_refuses_more() {
        let ring = HeapRing::new(8);
        let producer = Producer::new(&ring);
        assert_eq!(producer.push(&ramp(0, 10)), 7);
        assert_eq!(producer.filled(), 7);
        assert_eq!(producer.push(&[1.0]), 0, "full");
        let consumer = Consumer::new(&ring);
        let mut out = [0.0; 10];
        assert_eq!(consumer.pop(&mut out), 7);
        assert_eq!(&out[..7], ramp(0, 7).as_slice());
    }

    #[test]
    fn samples_survive_wrap_around_in_order() {
        let ring = HeapRing::new(8);
        let producer = Producer::new(&ring);
        let consumer = Consumer::new(&ring);
        let mut next_in = 0;
        let mut next_out = 0;
        // Uneven chunk sizes walk the indices across the end many times.
        for round in 0..50 {
            let n = 1 + round % 6;
            let wrote = producer.push(&ramp(next_in, n));
            next_in += wrote;
            let mut out = vec![0.0; 1 + (round * 7) % 5];
            let got = consumer.pop(&mut out);
            assert_eq!(&out[..got], ramp(next_out, got).as_slice());
            next_out += got;
        }
        assert!(next_out > 50, "the test moved data across the end");
    }

    #[test]
    fn split_write_at_the_end_is_one_contiguous_read() {
        let ring = HeapRing::new(8);
        let producer = Producer::new(&ring);
        let consumer = Consumer::new(&ring);
        producer.push(&ramp(0, 6));
        let mut out = [0.0; 6];
        consumer.pop(&mut out);
        // read = write = 6: the next five samples occupy slots 6, 7, 0, 1, 2.
        assert_eq!(producer.push(&ramp(100, 5)), 5);
        assert_eq!((ring.read.get(), ring.write.get()), (6, 3));
        let mut out = [0.0; 5];
        assert_eq!(consumer.pop(&mut out), 5);
        assert_eq!(out.as_slice(), ramp(100, 5).as_slice());
    }

    /// One step of a case in `tests/ring_cases.json`.
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Op {
        Push { push: usize, wrote: usize },
        Pop { pop: usize, read: usize },
    }

    /// A case; its `xruns` are what the worklet's end counts (`www/ring.js`). These ends count
    /// none: the worker writes what fits and reads what is there.
    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        capacity: usize,
        ops: Vec<Op>,
        indices: [usize; 2],
    }

    #[test]
    fn the_cases_shared_with_the_worklets_ring() {
        let cases: Vec<Case> = serde_json::from_str(include_str!("../tests/ring_cases.json"))
            .expect("the shared ring cases parse");
        assert!(cases.len() >= 5);
        for case in cases {
            let ring = HeapRing::new(case.capacity);
            let producer = Producer::new(&ring);
            let consumer = Consumer::new(&ring);
            let (mut next_in, mut next_out) = (0, 0);
            for op in case.ops {
                match op {
                    Op::Push { push, wrote } => {
                        assert_eq!(producer.push(&ramp(next_in, push)), wrote, "{}", case.name);
                        next_in += wrote;
                    }
                    Op::Pop { pop, read } => {
                        let mut out = vec![-1.0; pop];
                        assert_eq!(consumer.pop(&mut out), read, "{}", case.name);
                        assert_eq!(
                            &out[..read],
                            ramp(next_out, read).as_slice(),
                            "{}",
                            case.name
                        );
                        next_out += read;
                    }
                }
            }
            assert_eq!(
                [ring.read.get(), ring.write.get()],
                case.indices,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn index_arithmetic_matches_the_documented_layout() {
        assert_eq!(readable(8, 6, 3), 5);
        assert_eq!(writable(8, 6, 3), 2);
        assert_eq!(readable(8, 3, 3), 0);
        assert_eq!(writable(8, 3, 2), 0);
    }
}
