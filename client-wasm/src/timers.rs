//! Browser timers owned by Rust: each holds its closure and clears itself when dropped (as gloo's
//! `Timeout` and `Interval` do), so a timer never outlives what it calls.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::WorkerGlobalScope;

fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// A `setTimeout` with its closure, cleared when dropped.
pub(crate) struct Timeout {
    id: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Timeout {
    pub(crate) fn new(ms: i32, callback: impl FnMut() + 'static) -> Self {
        let callback = Closure::<dyn FnMut()>::new(callback);
        let id = scope()
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                ms,
            )
            .expect("workers have timers");
        Self {
            id,
            _callback: callback,
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        scope().clear_timeout_with_handle(self.id);
    }
}

/// A `setInterval` with its closure, cleared when dropped.
pub(crate) struct Interval {
    id: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Interval {
    pub(crate) fn new(ms: i32, callback: impl FnMut() + 'static) -> Self {
        let callback = Closure::<dyn FnMut()>::new(callback);
        let id = scope()
            .set_interval_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                ms,
            )
            .expect("workers have timers");
        Self {
            id,
            _callback: callback,
        }
    }
}

impl Drop for Interval {
    fn drop(&mut self) {
        scope().clear_interval_with_handle(self.id);
    }
}
