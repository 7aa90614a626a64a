//! Fixed vectors shared by the native test (`tests/vectors.rs`) and the browser test
//! (`tests/web.rs`): the same leaves must give the same line ids, and the same frames must
//! encrypt and decrypt to the same bytes, in wasm as natively.
//!
//! The values were computed natively with line-protocol when the fixtures were written; both
//! tests check the code against them, so a difference between targets fails one of the two.

use line_protocol::leaf::LeafKey;
use line_protocol::sframe::{FrameReceiver, FrameSender};

/// `leaf line_id` per line.
const LINE_IDS: &str = include_str!("../fixtures/line_ids.txt");
/// `leaf kid(hex) plaintext(hex) first_frame(hex)` per line.
const FRAMES: &str = include_str!("../fixtures/frames.txt");

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("fixture hex is valid"))
        .collect()
}

fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
}

/// Every fixed leaf gives its recorded line id; returns how many were checked.
pub(crate) fn check_line_ids() -> usize {
    let mut n = 0;
    for row in rows(LINE_IDS) {
        let leaf: LeafKey = row[0].parse().expect("fixture leaves parse");
        assert_eq!(leaf.to_string(), row[0], "text form round-trips");
        assert_eq!(leaf.line_id().to_string(), row[1]);
        n += 1;
    }
    n
}

/// Every recorded frame is what this target's sender makes, and this target's receiver opens
/// it; a flipped byte is refused. Returns how many were checked.
pub(crate) fn check_frames() -> usize {
    let mut n = 0;
    for row in rows(FRAMES) {
        let leaf: LeafKey = row[0].parse().expect("fixture leaves parse");
        let kid = u64::from_str_radix(row[1], 16).expect("fixture kid is hex");
        let plaintext = unhex(row[2]);
        let frame = unhex(row[3]);
        let mut sealed = Vec::new();
        FrameSender::new(&leaf, kid)
            .encrypt(&plaintext, &mut sealed)
            .expect("a fresh sender encrypts");
        assert_eq!(sealed, frame, "encryption matches the recorded frame");
        let mut opened = Vec::new();
        FrameReceiver::new(&leaf)
            .decrypt(&frame, &mut opened)
            .expect("the recorded frame decrypts");
        assert_eq!(opened, plaintext);
        let mut tampered = frame.clone();
        *tampered.last_mut().expect("frames are not empty") ^= 1;
        assert!(
            FrameReceiver::new(&leaf)
                .decrypt(&tampered, &mut opened)
                .is_err()
        );
        n += 1;
    }
    n
}
