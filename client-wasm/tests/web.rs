//! Tests that need a real browser; `just test` runs them in headless Chromium.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn version_is_callable_from_the_browser() {
    assert!(line_client::version().starts_with("line "));
}
