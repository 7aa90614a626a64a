//! Where the engine's worker takes captured samples from and puts samples to play: the shared
//! rings of [`crate::ring`], or, without cross-origin isolation, a MessagePort to each worklet.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Float32Array, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, MessagePort};

use crate::engine::StartError;
use crate::js_ring::JsRing;
use crate::ring::{Consumer, Producer};

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

/// Where samples to play go.
pub(crate) enum PlaybackSink {
    Shared(Producer<JsRing>),
    /// MessagePort fallback: the worklet reports how much it has played, and its underruns.
    Port {
        port: MessagePort,
        sent: u64,
        played: Rc<RefCell<(u64, u64)>>,
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
    let on_played = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
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
            _on_message: on_played,
        },
    ))
}
