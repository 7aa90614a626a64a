//! Tests that need a real browser; `just test` runs them in headless Chromium and Firefox:
//! `wasm-pack test --headless --chrome --mode no-install client-wasm` (and `--firefox`).
#![cfg(target_arch = "wasm32")]

mod common;

use line_client::js_ring::JsRing;
use line_client::link::{Fragment, Link, LinkError};
use line_client::ring::{Consumer, Producer};
use line_protocol::leaf::LeafKey;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn version_is_callable_from_the_browser() {
    assert!(line_client::version().starts_with("line "));
}

#[wasm_bindgen_test]
fn generated_leaves_parse_and_differ() {
    let a = line_client::generate_leaf();
    let b = line_client::generate_leaf();
    assert_ne!(a, b, "crypto.getRandomValues gives fresh keys");
    assert!(a.starts_with("leaf_") && a.len() == 48);
    let leaf: LeafKey = a.parse().expect("a generated leaf parses");
    assert_eq!(leaf.to_string(), a);
    assert_eq!(
        line_client::line_id_of(&a).unwrap(),
        leaf.line_id().to_string()
    );
}

#[wasm_bindgen_test]
fn malformed_leaves_throw_with_a_code() {
    for bad in [
        "leaf_",
        "leaf_abc",
        "nope",
        &format!("leaf_{}=", "A".repeat(42)),
    ] {
        let error = line_client::line_id_of(bad).expect_err(bad);
        let code = js_sys::Reflect::get(&error, &"code".into()).unwrap();
        assert_eq!(code, JsValue::from_str("bad-leaf"), "{bad}");
    }
}

#[wasm_bindgen_test]
fn line_ids_in_wasm_equal_the_native_ones() {
    assert_eq!(common::check_line_ids(), 4);
}

#[wasm_bindgen_test]
fn frames_in_wasm_equal_the_native_ones() {
    assert_eq!(common::check_frames(), 3);
}

#[wasm_bindgen_test]
fn typed_array_ring_wraps_fills_and_empties() {
    // A plain ArrayBuffer: the test page is not cross-origin isolated; Atomics work the same.
    let ring = JsRing::allocate(8, false);
    let producer = Producer::new(ring.clone());
    let consumer = Consumer::new(ring.clone());
    let mut out = [0.0f32; 8];
    assert_eq!(consumer.pop(&mut out), 0, "empty");
    assert_eq!(
        producer.push(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        7,
        "one slot stays free"
    );
    assert_eq!(producer.push(&[9.0]), 0, "full");
    assert_eq!(consumer.pop(&mut out[..5]), 5);
    assert_eq!(&out[..5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    // read = 5, write = 7: the next four samples wrap across the end.
    assert_eq!(producer.push(&[10.0, 11.0, 12.0, 13.0]), 4);
    assert_eq!(consumer.available(), 6);
    let mut rest = [0.0f32; 6];
    assert_eq!(consumer.pop(&mut rest), 6);
    assert_eq!(rest, [6.0, 7.0, 10.0, 11.0, 12.0, 13.0]);
    assert_eq!(ring.xruns(), 0);
    // The indices sit where the worklet expects them: Int32 slots 0 and 1.
    let indices = js_sys::Int32Array::new_with_byte_offset_and_length(ring.buffer(), 0, 4);
    assert_eq!((indices.get_index(0), indices.get_index(1)), (3, 3));
}

#[wasm_bindgen_test]
fn link_parameters_parse_in_the_browser_with_typed_errors() {
    let page = "http://127.0.0.1:7777/line.html";
    let link = Link::parse(&format!("{page}?apikey=K&mobile=1&frame=5#generate_leaf")).unwrap();
    assert_eq!((link.rate, link.frame.micros()), (48_000, 5_000));
    assert_eq!(link.fragment, Fragment::Generate);
    assert_eq!(
        Link::parse(&format!("{page}?rate=400000")),
        Err(LinkError::RateOutOfRange { rate: 400_000 })
    );
    assert_eq!(
        Link::parse(&format!("{page}?frame=3")),
        Err(LinkError::Frame)
    );
    assert_eq!(
        Link::parse(&format!("{page}?rate=4e4")),
        Err(LinkError::RateNotANumber)
    );
    assert_eq!(
        Link::parse(&format!("{page}#oops")),
        Err(LinkError::Fragment)
    );
}

#[wasm_bindgen_test]
fn qr_codes_render_as_svg() {
    let svg = line_client::qr_svg("https://line.example/line.html?apikey=x#leaf_y").unwrap();
    assert!(svg.starts_with("<svg"));
}

#[wasm_bindgen_test]
fn two_call_engines_talk_through_wasm_crypto_and_jitter_buffer() {
    use line_client::call::{Call, CallConfig};
    use line_client::link::FrameDuration;

    let config = CallConfig {
        wire_rate: 48_000,
        frame: FrameDuration::Ms10,
        context_rate: 48_000,
    };
    let mut a = Call::new(config, LeafKey::from_random([3; 32]));
    let mut b = Call::new(config, LeafKey::from_random([3; 32]));
    a.connected(0, 1);
    b.connected(0, 2);
    a.peer_joined();
    b.peer_joined();
    // b's Hello tells a which connection to bind its audio to.
    while let Some(out) = b.poll_transmit() {
        a.receive(0, &out.bytes);
    }
    let mut loudest = 0.0f32;
    for step in 0..60u64 {
        let now = step * 10_000;
        let tone: Vec<f32> = (0..480)
            .map(|i| {
                0.5 * (2.0 * core::f32::consts::PI * 1000.0 * (step as f32 * 480.0 + i as f32)
                    / 48_000.0)
                    .sin()
            })
            .collect();
        a.capture(now, &tone);
        while let Some(out) = a.poll_transmit() {
            b.receive(now, &out.bytes);
        }
        let mut played = [0.0f32; 480];
        b.play(now, &mut played);
        loudest = played.iter().fold(loudest, |m, s| m.max(s.abs()));
    }
    let stats = b.stats();
    assert_eq!(stats.frames_received, 60);
    assert_eq!(stats.decrypt_failures, 0);
    assert!(loudest > 0.45 && loudest < 0.55, "played peak {loudest}");
}
