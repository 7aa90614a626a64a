//! The shared fixed vectors, checked natively (the browser checks them in `tests/web.rs`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

#[test]
fn fixed_leaves_give_the_recorded_line_ids() {
    assert_eq!(common::check_line_ids(), 4);
}

#[test]
fn recorded_frames_encrypt_and_decrypt_natively() {
    assert_eq!(common::check_frames(), 3);
}
