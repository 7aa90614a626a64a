//! Where the engine's worker takes captured samples from and puts samples to play: the shared
//! rings of [`crate::ring`], or, without cross-origin isolation, a MessagePort to each worklet.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Atomics, Float32Array, Float64Array, Int32Array, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, MessagePort};

use crate::engine::StartError;
use crate::js_ring::JsRing;
use crate::ring::{Consumer, Producer, RingMemory};

/// Where captured samples come from.
pub(crate) enum CaptureSource {
    Shared(Consumer<JsRing>),
    /// MessagePort fallback: the worklet posts batches, queued here until the next tick.
    Port {
        port: MessagePort,
        queue: Rc<RefCell<Vec<f32>>>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
    },
}

/// The playout statistics the worklet last posted, and when they arrived (worker clock, µs).
type PortReport = Rc<RefCell<Option<(u64, Vec<f64>)>>>;

/// Where samples to play go.
pub(crate) enum PlaybackSink {
    Shared(Producer<JsRing>),
    /// MessagePort fallback: the worklet reports how much it has played, and its underruns, or
    /// (playout in the worklet) its statistics, with the time they arrived.
    Port {
        port: MessagePort,
        sent: u64,
        played: Rc<RefCell<(u64, u64)>>,
        report: PortReport,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
    },
}

impl Drop for CaptureSource {
    fn drop(&mut self) {
        if let Self::Port { port, .. } = self {
            port.set_onmessage(None);
        }
    }
}

impl Drop for PlaybackSink {
    fn drop(&mut self) {
        if let Self::Port { port, .. } = self {
            port.set_onmessage(None);
        }
    }
}

impl CaptureSource {
    pub(crate) fn drain(&self, out: &mut Vec<f32>) {
        match self {
            Self::Shared(consumer) => {
                let n = consumer.available();
                let start = out.len();
                out.resize(start + n, 0.0);
                let got = consumer.pop(&mut out[start..]);
                out.truncate(start + got);
            }
            Self::Port { queue, .. } => out.append(&mut queue.borrow_mut()),
        }
    }

    pub(crate) fn xruns(&self) -> u64 {
        match self {
            Self::Shared(consumer) => u64::from(consumer.memory().xruns()),
            Self::Port { .. } => 0,
        }
    }

    /// Asks the capture worklet to wake the worker once `samples` wait (0: every quantum). The
    /// port fallback posts its batches whatever this says.
    pub(crate) fn wake_after(&self, samples: usize) {
        if let Self::Shared(consumer) = self {
            consumer.memory().wake_after(samples);
        }
    }
}

impl PlaybackSink {
    pub(crate) fn filled(&self) -> usize {
        match self {
            Self::Shared(producer) => producer.filled(),
            Self::Port { sent, played, .. } => sent.saturating_sub(played.borrow().0) as usize,
        }
    }

    pub(crate) fn push(&mut self, samples: &[f32]) {
        match self {
            Self::Shared(producer) => {
                producer.push(samples);
            }
            Self::Port { port, sent, .. } => {
                let chunk = Float32Array::from(samples);
                let transfer = js_sys::Array::of1(&chunk.buffer());
                if port
                    .post_message_with_transferable(&chunk, &transfer)
                    .is_ok()
                {
                    *sent += samples.len() as u64;
                }
            }
        }
    }

    pub(crate) fn xruns(&self) -> u64 {
        match self {
            Self::Shared(producer) => u64::from(producer.memory().xruns()),
            Self::Port { played, .. } => played.borrow().1,
        }
    }

    /// Frame records for the playback worklet: all of them or, when the ring has no room (the
    /// audio thread stalled for half a second), none, so that the ring never holds half a record.
    /// Returns whether they went.
    pub(crate) fn push_records(&mut self, records: &[f32]) -> bool {
        match self {
            Self::Shared(producer) => {
                let capacity = producer.memory().capacity();
                if capacity - 1 - producer.filled() < records.len() {
                    return false;
                }
                producer.push(records) == records.len()
            }
            Self::Port { .. } => {
                self.push(records);
                true
            }
        }
    }

    /// The worklet's latest statistics posted over the port, with when they arrived.
    pub(crate) fn take_port_report(&self) -> Option<(u64, Vec<f64>)> {
        match self {
            Self::Shared(_) => None,
            Self::Port { report, .. } => report.borrow_mut().take(),
        }
    }
}

/// The playback worklet's statistics block in shared memory (`line_playout::stat`): an Int32
/// sequence number that is odd while the worklet writes, then the Float64 statistics.
pub(crate) struct SharedReport {
    seq: Int32Array,
    values: Float64Array,
    /// The last consistent read.
    pub(crate) stats: Vec<f64>,
}

impl SharedReport {
    pub(crate) fn over(buffer: &JsValue) -> Option<Self> {
        let buffer = buffer.dyn_ref::<js_sys::Object>()?;
        let len = line_playout::stat::LEN as u32;
        Some(Self {
            seq: Int32Array::new_with_byte_offset_and_length(buffer, 0, 1),
            values: Float64Array::new_with_byte_offset_and_length(buffer, 8, len),
            stats: vec![0.0; len as usize],
        })
    }

    /// Reads the block; `false` when the worklet was writing it meanwhile.
    pub(crate) fn read(&mut self) -> bool {
        let Ok(before) = Atomics::load(&self.seq, 0) else {
            return false;
        };
        if before & 1 == 1 || before == 0 {
            return false;
        }
        self.values.copy_to(&mut self.stats);
        Atomics::load(&self.seq, 0) == Ok(before)
    }
}

/// Both ends over MessagePorts, for a page without shared memory.
pub(crate) fn port_fallback(
    capture_port: &JsValue,
    playback_port: &JsValue,
) -> Result<(CaptureSource, PlaybackSink), StartError> {
    let (Some(capture_port), Some(playback_port)) = (
        capture_port.dyn_ref::<MessagePort>(),
        playback_port.dyn_ref::<MessagePort>(),
    ) else {
        return Err(StartError::NoAudioPorts);
    };
    let queue = Rc::new(RefCell::new(Vec::new()));
    let sink = queue.clone();
    let on_capture = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Ok(batch) = event.data().dyn_into::<Float32Array>() {
            let mut queue = sink.borrow_mut();
            let start = queue.len();
            queue.resize(start + batch.length() as usize, 0.0);
            batch.copy_to(&mut queue[start..]);
        }
    });
    capture_port.set_onmessage(Some(on_capture.as_ref().unchecked_ref()));
    let played = Rc::new(RefCell::new((0u64, 0u64)));
    let report = played.clone();
    let reported = Rc::new(RefCell::new(None));
    let latest = reported.clone();
    let on_played = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        if let Some(stats) = data.dyn_ref::<Float64Array>() {
            *latest.borrow_mut() = Some((crate::worker::now_us(), stats.to_vec()));
            return;
        }
        let at = |i: u32| Reflect::get_u32(&data, i).ok().and_then(|v| v.as_f64());
        if let (Some(consumed), Some(xruns)) = (at(0), at(1)) {
            *report.borrow_mut() = (consumed as u64, xruns as u64);
        }
    });
    playback_port.set_onmessage(Some(on_played.as_ref().unchecked_ref()));
    Ok((
        CaptureSource::Port {
            port: capture_port.clone(),
            queue,
            _on_message: on_capture,
        },
        PlaybackSink::Port {
            port: playback_port.clone(),
            sent: 0,
            played,
            report: reported,
            _on_message: on_played,
        },
    ))
}
