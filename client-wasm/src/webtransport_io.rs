//! The browser's WebTransport, for the engine's worker: opening a session with the relay, its
//! datagrams both ways and the relay's stream of records (docs/PROTOCOL.md section 6.3).
//!
//! The few members used are declared here with `extern "C"` rather than taken from web-sys,
//! which has WebTransport only behind `--cfg=web_sys_unstable_apis`: that flag applies to the
//! whole build (every crate's compilation in CI and its cache), for five methods and three
//! getters. The browser tests check these declarations against real browsers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

use line_protocol::control::close_code;
use line_protocol::webtransport::RecordKind;

use crate::webtransport::{Endpoint, RecordReader};

#[wasm_bindgen]
extern "C" {
    /// `WebTransport`.
    pub(crate) type WebTransport;
    #[wasm_bindgen(constructor, catch)]
    fn new(url: &str, options: &Object) -> Result<WebTransport, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn ready(this: &WebTransport) -> Promise;
    #[wasm_bindgen(method, getter)]
    fn closed(this: &WebTransport) -> Promise;
    #[wasm_bindgen(method, getter)]
    fn datagrams(this: &WebTransport) -> DatagramDuplexStream;
    #[wasm_bindgen(method, getter, js_name = incomingUnidirectionalStreams)]
    fn incoming_unidirectional_streams(this: &WebTransport) -> Stream;
    #[wasm_bindgen(method, catch)]
    fn close(this: &WebTransport, info: &Object) -> Result<(), JsValue>;

    /// `WebTransportDatagramDuplexStream`.
    type DatagramDuplexStream;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &DatagramDuplexStream) -> Stream;
    #[wasm_bindgen(method, getter)]
    fn writable(this: &DatagramDuplexStream) -> Sink;

    /// A `ReadableStream`.
    type Stream;
    #[wasm_bindgen(method, catch, js_name = getReader)]
    fn get_reader(this: &Stream) -> Result<Reader, JsValue>;

    /// A `ReadableStreamDefaultReader`.
    #[derive(Clone)]
    type Reader;
    #[wasm_bindgen(method)]
    fn read(this: &Reader) -> Promise;
    #[wasm_bindgen(method)]
    fn cancel(this: &Reader) -> Promise;

    /// A `WritableStream`.
    type Sink;
    #[wasm_bindgen(method, catch, js_name = getWriter)]
    fn get_writer(this: &Sink) -> Result<Writer, JsValue>;

    /// A `WritableStreamDefaultWriter`.
    type Writer;
    #[wasm_bindgen(method)]
    fn write(this: &Writer, chunk: &Uint8Array) -> Promise;
    #[wasm_bindgen(method, getter, js_name = desiredSize)]
    fn desired_size(this: &Writer) -> Option<f64>;
}

/// Whether this global scope has WebTransport.
pub(crate) fn available() -> bool {
    Reflect::get(&js_sys::global(), &"WebTransport".into()).is_ok_and(|c| c.is_function())
}

/// Why a session did not open. Only logged (on the console, for whoever looks into a call):
/// every reason means the same, a WebSocket instead.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// `/webtransport` did not answer 200 with a usable answer (404: the relay serves none).
    Endpoint(String),
    /// The browser refused to make the session, or it failed (UDP blocked, a refusal).
    Failed(String),
    /// Not ready within this many milliseconds.
    TimedOut(u32),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Endpoint(e) => write!(f, "the server offers no WebTransport endpoint ({e})"),
            Self::Failed(e) => write!(f, "the session failed ({e})"),
            Self::TimedOut(ms) => write!(f, "the session was not ready within {ms} ms"),
        }
    }
}

fn describe(error: &JsValue) -> String {
    Reflect::get(error, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

/// Asks the relay where its endpoint is (`endpoint_url`, `/webtransport?apikey=`), opens a
/// session there with the query of `check_url` (the `/ws` address over http(s)), and waits at
/// most `ready_ms` for it to be ready.
pub(crate) async fn open(
    endpoint_url: &str,
    check_url: &str,
    ready_ms: u32,
) -> Result<WebTransport, OpenError> {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let endpoint = async {
        let response: Response = JsFuture::from(scope.fetch_with_str(endpoint_url))
            .await?
            .dyn_into()?;
        if !response.ok() {
            return Err(JsValue::from_str(&format!("HTTP {}", response.status())));
        }
        let text = JsFuture::from(response.text()?).await?;
        Ok(text.as_string().unwrap_or_default())
    }
    .await
    .map_err(|e| OpenError::Endpoint(describe(&e)))?;
    let endpoint =
        Endpoint::from_json(&endpoint).map_err(|e| OpenError::Endpoint(e.to_string()))?;
    let url = web_sys::Url::new(check_url).map_err(|e| OpenError::Endpoint(describe(&e)))?;
    url.set_protocol("https:");
    url.set_port(&endpoint.port.to_string());
    url.set_pathname(&endpoint.path);
    let options = Object::new();
    if !endpoint.certificate_hashes.is_empty() {
        let hashes = Array::new();
        for hash in &endpoint.certificate_hashes {
            let entry = Object::new();
            let _ = Reflect::set(&entry, &"algorithm".into(), &"sha-256".into());
            let _ = Reflect::set(&entry, &"value".into(), &Uint8Array::from(&hash[..]));
            hashes.push(&entry);
        }
        let _ = Reflect::set(&options, &"serverCertificateHashes".into(), &hashes);
    }
    let transport =
        WebTransport::new(&url.href(), &options).map_err(|e| OpenError::Failed(describe(&e)))?;
    // A failed session rejects `closed` too; a handler here keeps that out of the console.
    ignore_rejection(&transport.closed());
    let timed_out: JsValue = Object::new().into();
    let marker = timed_out.clone();
    let timer = Promise::new(&mut |resolve, _reject| {
        let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_1(
            &resolve,
            ready_ms.try_into().unwrap_or(i32::MAX),
            &marker,
        );
    });
    match JsFuture::from(Promise::race(&Array::of2(&transport.ready(), &timer))).await {
        Ok(settled) if settled != timed_out => Ok(transport),
        Ok(_) => {
            close(&transport, 0, "not ready in time");
            Err(OpenError::TimedOut(ready_ms))
        }
        Err(e) => {
            close(&transport, 0, "failed");
            Err(OpenError::Failed(describe(&e)))
        }
    }
}

thread_local! {
    /// A rejection handler that does nothing, made once for the worker's lifetime.
    static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
}

/// Handles `promise`'s rejection by ignoring it: for promises whose failure the worker learns
/// of elsewhere (the session's `closed`), which would otherwise each log an uncaught error.
fn ignore_rejection(promise: &Promise) {
    IGNORE.with(|ignore| {
        let _ = promise.catch(ignore);
    });
}

/// Closes a session nobody will use.
pub(crate) fn abandon(transport: &WebTransport) {
    close(transport, close_code::NORMAL.into(), "");
}

fn close(transport: &WebTransport, code: u32, reason: &str) {
    let info = Object::new();
    let _ = Reflect::set(&info, &"closeCode".into(), &code.into());
    let _ = Reflect::set(&info, &"reason".into(), &reason.into());
    let _ = transport.close(&info);
}

/// What a [`Session`] hands the worker.
pub(crate) enum Incoming<'a> {
    /// A frame, from a datagram or a kind-2 record.
    Frame(&'a [u8]),
    /// A relay control message (a kind-1 record).
    Control(&'a str),
    /// The session is over.
    Ended,
}

/// An open session: datagrams out through [`Session::send`], everything that comes in to the
/// handler given to [`Session::start`] until [`Session::detach`].
pub(crate) struct Session {
    transport: WebTransport,
    writer: Writer,
    /// Cleared by [`Session::detach`]: nothing of this session reaches the engine after that.
    live: Rc<Cell<bool>>,
    readers: Rc<RefCell<Vec<Reader>>>,
}

impl Session {
    /// Starts reading `transport`'s datagrams and streams into `handle`.
    pub(crate) fn start(
        transport: WebTransport,
        handle: impl FnMut(Incoming<'_>) + 'static,
    ) -> Result<Self, JsValue> {
        let streams = || -> Result<_, JsValue> {
            Ok((
                transport.datagrams().writable().get_writer()?,
                transport.datagrams().readable().get_reader()?,
                transport.incoming_unidirectional_streams().get_reader()?,
            ))
        };
        let (writer, datagrams, streams) = streams().inspect_err(|_| abandon(&transport))?;
        let live = Rc::new(Cell::new(true));
        let readers = Rc::new(RefCell::new(vec![datagrams.clone(), streams.clone()]));
        let handle = RefCell::new(handle);
        let deliver = {
            let live = Rc::clone(&live);
            move |incoming: Incoming<'_>| {
                if live.get() {
                    (handle.borrow_mut())(incoming);
                }
            }
        };
        let deliver = Rc::new(deliver);
        spawn_datagrams(datagrams, Rc::clone(&deliver));
        spawn_streams(streams, Rc::clone(&readers), Rc::clone(&deliver));
        let closed = transport.closed();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(closed).await;
            deliver(Incoming::Ended);
        });
        Ok(Self {
            transport,
            writer,
            live,
            readers,
        })
    }

    /// Whether fewer than `limit` datagrams wait beyond the stream's high-water mark. The mark is
    /// small (Chromium's is one datagram), and a wake sends two or three frames at once, so
    /// crossing it says nothing; a queue that keeps growing says the path is full.
    pub(crate) fn has_room(&self, limit: f64) -> bool {
        self.writer.desired_size().is_none_or(|room| room > -limit)
    }

    /// Sends `frame` as one datagram.
    pub(crate) fn send(&self, frame: &[u8]) {
        // A copy: the write completes later, and the wasm memory under a view may move.
        ignore_rejection(&self.writer.write(&Uint8Array::from(frame)));
    }

    /// Closes the session with `code` (the WebSocket close code of the reason).
    pub(crate) fn close(&self, code: u16, reason: &str) {
        close(&self.transport, code.into(), reason);
    }

    /// Stops everything of this session from reaching the engine, and closes it.
    pub(crate) fn detach(&self) {
        self.live.set(false);
        for reader in self.readers.borrow().iter() {
            ignore_rejection(&reader.cancel());
        }
        self.close(close_code::NORMAL, "");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.live.get() {
            self.detach();
        }
    }
}

/// The `{value, done}` of a reader's `read()`: the chunk, or `None` at the end.
async fn next_chunk(reader: &Reader) -> Option<JsValue> {
    let result = JsFuture::from(reader.read()).await.ok()?;
    if Reflect::get(&result, &"done".into()).is_ok_and(|d| d.is_truthy()) {
        return None;
    }
    Reflect::get(&result, &"value".into()).ok()
}

/// Copies `reader`'s next chunk of bytes into `scratch` (skipping anything else); `None` at the
/// stream's end.
async fn next_bytes(reader: &Reader, scratch: &mut Vec<u8>) -> Option<()> {
    loop {
        if let Ok(bytes) = next_chunk(reader).await?.dyn_into::<Uint8Array>() {
            scratch.resize(bytes.length() as usize, 0);
            bytes.copy_to(scratch);
            return Some(());
        }
    }
}

fn spawn_datagrams(reader: Reader, deliver: Rc<impl Fn(Incoming<'_>) + 'static>) {
    wasm_bindgen_futures::spawn_local(async move {
        let mut scratch = Vec::new();
        while next_bytes(&reader, &mut scratch).await.is_some() {
            deliver(Incoming::Frame(&scratch));
        }
    });
}

/// Reads each stream the relay opens (one, in this version) as records.
fn spawn_streams(
    streams: Reader,
    readers: Rc<RefCell<Vec<Reader>>>,
    deliver: Rc<impl Fn(Incoming<'_>) + 'static>,
) {
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(stream) = next_chunk(&streams).await {
            let Ok(reader) = stream.unchecked_into::<Stream>().get_reader() else {
                continue;
            };
            readers.borrow_mut().push(reader.clone());
            let deliver = Rc::clone(&deliver);
            wasm_bindgen_futures::spawn_local(async move {
                let mut records = RecordReader::default();
                let mut scratch = Vec::new();
                while next_bytes(&reader, &mut scratch).await.is_some() {
                    records.push(&scratch);
                    records.drain(|kind, payload| match kind {
                        RecordKind::Control => {
                            if let Ok(text) = core::str::from_utf8(payload) {
                                deliver(Incoming::Control(text));
                            }
                        }
                        _ => deliver(Incoming::Frame(payload)),
                    });
                }
            });
        }
    });
}
