//! The ring of [`crate::ring`] over JavaScript typed arrays, as the worklet shim sees it.
//!
//! Works on a `SharedArrayBuffer` (the normal, cross-origin isolated case) and on a plain
//! `ArrayBuffer` (tests, and the fallback path): `Atomics.load`/`store` accept both.

use js_sys::{Atomics, Float32Array, Int32Array, Object};

use crate::ring::{HEADER_BYTES, READ_SLOT, RingMemory, WAKE_SLOT, WRITE_SLOT, XRUN_SLOT};

/// A ring's indices and samples in a JavaScript buffer laid out as documented in [`crate::ring`].
#[derive(Debug, Clone)]
pub struct JsRing {
    buffer: Object,
    indices: Int32Array,
    data: Float32Array,
    capacity: usize,
}

impl JsRing {
    /// Bytes a buffer for `capacity` samples needs.
    #[must_use]
    pub fn byte_len(capacity: u32) -> u32 {
        HEADER_BYTES + 4 * capacity
    }

    /// A new shared ring of `capacity` slots, or a plain one when `shared` is false.
    #[must_use]
    pub fn allocate(capacity: u32, shared: bool) -> Self {
        let bytes = Self::byte_len(capacity);
        let buffer: Object = if shared {
            js_sys::SharedArrayBuffer::new(bytes).into()
        } else {
            js_sys::ArrayBuffer::new(bytes).into()
        };
        Self::over(buffer)
    }

    /// The ring laid out over an existing `SharedArrayBuffer` or `ArrayBuffer`.
    #[must_use]
    pub fn over(buffer: Object) -> Self {
        let indices = Int32Array::new_with_byte_offset_and_length(&buffer, 0, HEADER_BYTES / 4);
        let data = Float32Array::new_with_byte_offset(&buffer, HEADER_BYTES);
        let capacity = data.length() as usize;
        Self {
            buffer,
            indices,
            data,
            capacity,
        }
    }

    /// The buffer, to hand to the worklet.
    #[must_use]
    pub fn buffer(&self) -> &Object {
        &self.buffer
    }

    /// The four index slots, for `Atomics.waitAsync` on the write index.
    #[must_use]
    pub fn indices(&self) -> &Int32Array {
        &self.indices
    }

    /// Samples the worklet could not move so far (capture overflow or playback underrun).
    #[must_use]
    pub fn xruns(&self) -> u32 {
        load(&self.indices, XRUN_SLOT) as u32
    }

    /// Asks the capture worklet to wake the worker only once `samples` are readable (0: at every
    /// render quantum).
    pub fn wake_after(&self, samples: usize) {
        store(&self.indices, WAKE_SLOT, samples);
    }
}

fn load(indices: &Int32Array, slot: u32) -> i32 {
    // Atomics only fail on a non-integer array or an index out of range: both would be bugs here.
    Atomics::load(indices, slot).expect("ring indices are an Int32Array with four slots")
}

fn store(indices: &Int32Array, slot: u32, value: usize) {
    let value = i32::try_from(value).expect("ring indices fit in an Int32");
    Atomics::store(indices, slot, value).expect("ring indices are an Int32Array with four slots");
}

fn span(at: usize, len: usize) -> (u32, u32) {
    let at = u32::try_from(at).expect("ring positions fit in u32");
    let len = u32::try_from(len).expect("ring lengths fit in u32");
    (at, at + len)
}

impl RingMemory for JsRing {
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn load_read(&self) -> usize {
        load(&self.indices, READ_SLOT) as usize
    }
    fn load_write(&self) -> usize {
        load(&self.indices, WRITE_SLOT) as usize
    }
    fn store_read(&self, index: usize) {
        store(&self.indices, READ_SLOT, index);
    }
    fn store_write(&self, index: usize) {
        store(&self.indices, WRITE_SLOT, index);
    }
    fn write_data(&self, at: usize, src: &[f32]) {
        if src.is_empty() {
            return;
        }
        let (begin, end) = span(at, src.len());
        self.data.subarray(begin, end).copy_from(src);
    }
    fn read_data(&self, at: usize, dst: &mut [f32]) {
        if dst.is_empty() {
            return;
        }
        let (begin, end) = span(at, dst.len());
        self.data.subarray(begin, end).copy_to(dst);
    }
}
