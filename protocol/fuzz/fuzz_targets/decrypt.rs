//! The receiver's whole decrypt path, driven by a little program in the fuzz input.
//!
//! Random bytes alone never pass AES-GCM, so the input also makes a real sender encrypt frames,
//! delivers them in any order, any number of times, tampered or not, and feeds raw bytes too.
//! Invariants: nothing panics; an opened frame is exactly what was sent under its counter, and
//! opens only once; a tampered frame never opens; memory stays bounded.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use line_protocol::leaf::LeafKey;
use line_protocol::sframe::{FrameReceiver, FrameSender};

fuzz_target!(|data: &[u8]| {
    let leaf = LeafKey::from_random([0x5a; 32]);
    let mut receiver = FrameReceiver::new(&leaf);
    let mut sender = FrameSender::new(&leaf, 0x0123_4567_89ab_cdef);
    let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut opened_ctrs = HashSet::new();
    let (mut frame, mut plain) = (Vec::new(), Vec::new());
    let mut input = data.iter().copied();
    while let Some(op) = input.next() {
        let arg = input.next().unwrap_or(0);
        match op % 4 {
            // Encrypt a plaintext of `arg` bytes taken from the input.
            0 => {
                let plaintext: Vec<u8> = input.by_ref().take(usize::from(arg)).collect();
                sender.encrypt(&plaintext, &mut frame).expect("far under the limits");
                sent.push((frame.clone(), plaintext));
            }
            // Deliver a sent frame, untouched.
            1 if !sent.is_empty() => {
                let (frame, _) = &sent[usize::from(arg) % sent.len()];
                if let Ok(header) = receiver.decrypt(frame, &mut plain) {
                    let ctr = usize::try_from(header.ctr).expect("small counter");
                    assert_eq!(plain, sent[ctr].1, "opened what was sent");
                    assert!(opened_ctrs.insert(ctr), "counter {ctr} opened twice");
                } else {
                    assert!(plain.is_empty());
                }
            }
            // Deliver a sent frame with one byte changed: never opens.
            2 if !sent.is_empty() => {
                let mut tampered = sent[usize::from(arg) % sent.len()].0.clone();
                let at = usize::from(input.next().unwrap_or(0)) % tampered.len();
                tampered[at] ^= input.next().unwrap_or(0).max(1);
                assert!(receiver.decrypt(&tampered, &mut plain).is_err());
                assert!(plain.is_empty());
            }
            // Deliver `arg` raw bytes from the input as a frame.
            _ => {
                let raw: Vec<u8> = input.by_ref().take(usize::from(arg)).collect();
                match receiver.decrypt(&raw, &mut plain) {
                    // Only a copy of a sent frame can open; it must obey the same rules.
                    Ok(header) => {
                        let ctr = usize::try_from(header.ctr).expect("small counter");
                        assert_eq!(raw, sent[ctr].0);
                        assert!(opened_ctrs.insert(ctr), "counter {ctr} opened twice");
                    }
                    Err(_) => assert!(plain.is_empty()),
                }
            }
        }
        assert!(receiver.known_senders() <= FrameReceiver::KEY_CACHE);
    }
});
