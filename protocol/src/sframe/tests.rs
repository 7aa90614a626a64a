//! Behaviour of [`FrameSender`] and [`FrameReceiver`]: round trips, replays, tampering, limits.

use alloc::vec;
use alloc::vec::Vec;

use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KID: u64 = 0x0123_4567_89ab_cdef;

fn leaf() -> LeafKey {
    LeafKey::from_random([9; 32])
}

fn frames(sender: &mut FrameSender, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut frame = Vec::new();
            sender
                .encrypt(&[i as u8; 40], &mut frame)
                .expect("under the limit");
            frame
        })
        .collect()
}

#[test]
fn frames_round_trip_with_header_in_front() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let (mut frame, mut plain) = (Vec::new(), Vec::new());
    for ctr in 0..3 {
        let header = sender.encrypt(b"some audio", &mut frame).expect("encrypts");
        assert_eq!(header, Header::new(KID, ctr));
        assert_eq!(frame.len(), header.encoded_len() + 10 + TAG_LEN);
        assert_eq!(Header::parse(&frame), Ok((header, header.encoded_len())));
        assert_eq!(receiver.decrypt(&frame, &mut plain), Ok(header));
        assert_eq!(plain, b"some audio");
    }
    // An empty plaintext is a legal frame too.
    sender.encrypt(&[], &mut frame).expect("encrypts");
    assert!(receiver.decrypt(&frame, &mut plain).is_ok());
    assert!(plain.is_empty());
}

#[test]
fn the_same_plaintext_never_gives_the_same_ciphertext() {
    let leaf = leaf();
    let mut a = FrameSender::new(&leaf, 1);
    let mut b = FrameSender::new(&leaf, 2);
    let (mut x, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
    a.encrypt(b"same", &mut x).expect("encrypts");
    a.encrypt(b"same", &mut y).expect("encrypts");
    b.encrypt(b"same", &mut z).expect("encrypts");
    let body = |f: &Vec<u8>| f[Header::parse(f).expect("header").1..].to_vec();
    assert_ne!(body(&x), body(&y));
    assert_ne!(body(&x), body(&z));
}

#[test]
fn replays_and_old_frames_are_refused_out_of_order_accepted() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let frames = frames(&mut sender, 200);
    let mut plain = Vec::new();
    for i in [5, 3, 4, 0] {
        assert!(
            receiver.decrypt(&frames[i], &mut plain).is_ok(),
            "frame {i}"
        );
    }
    assert_eq!(
        receiver.decrypt(&frames[3], &mut plain),
        Err(DecryptError::Replay)
    );
    assert!(plain.is_empty());
    assert!(receiver.decrypt(&frames[199], &mut plain).is_ok());
    // 199 - 128 = 71: frame 71 fell out of the window, 72 is its last slot.
    assert_eq!(
        receiver.decrypt(&frames[71], &mut plain),
        Err(DecryptError::Replay)
    );
    assert!(receiver.decrypt(&frames[72], &mut plain).is_ok());
}

#[test]
fn every_flipped_byte_fails_and_leaves_the_window_alone() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let frame = frames(&mut sender, 1).remove(0);
    let mut plain = Vec::new();
    for i in 0..frame.len() {
        let mut tampered = frame.clone();
        tampered[i] ^= 0x04;
        let result = receiver.decrypt(&tampered, &mut plain);
        assert!(
            matches!(
                result,
                Err(DecryptError::Authentication | DecryptError::Header(_))
            ),
            "byte {i}: {result:?}"
        );
        assert!(plain.is_empty());
    }
    // None of the forgeries moved a window or filled the cache: the real frame still opens.
    assert_eq!(receiver.known_senders(), 0);
    assert!(receiver.decrypt(&frame, &mut plain).is_ok());
}

#[test]
fn a_forged_far_ahead_frame_does_not_move_the_window() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let frames = frames(&mut sender, 2);
    let mut plain = Vec::new();
    assert!(receiver.decrypt(&frames[0], &mut plain).is_ok());
    // Same KID, counter 10^6, garbage body: fails, and must not push frame 1 out of the window.
    let mut forged = vec![0u8; Header::MAX_LEN];
    let n = Header::new(KID, 1_000_000).encode(&mut forged);
    forged.truncate(n);
    forged.extend_from_slice(&[0xee; 56]);
    assert_eq!(
        receiver.decrypt(&forged, &mut plain),
        Err(DecryptError::Authentication)
    );
    assert!(receiver.decrypt(&frames[1], &mut plain).is_ok());
}

#[test]
fn another_line_cannot_open_frames() {
    let mut sender = FrameSender::new(&leaf(), KID);
    let mut stranger = FrameReceiver::new(&LeafKey::from_random([8; 32]));
    let frame = frames(&mut sender, 1).remove(0);
    let mut plain = Vec::new();
    assert_eq!(
        stranger.decrypt(&frame, &mut plain),
        Err(DecryptError::Authentication)
    );
}

#[test]
fn short_and_empty_frames_are_typed_errors() {
    let mut receiver = FrameReceiver::new(&leaf());
    let mut plain = Vec::new();
    assert_eq!(
        receiver.decrypt(&[], &mut plain),
        Err(DecryptError::Header(HeaderError::Empty))
    );
    assert!(matches!(
        receiver.decrypt(&[0x8f, 1], &mut plain),
        Err(DecryptError::Header(HeaderError::Truncated { .. }))
    ));
    // A header with less than a tag behind it.
    assert_eq!(
        receiver.decrypt(&[0x00; 10], &mut plain),
        Err(DecryptError::Authentication)
    );
}

#[test]
fn the_sender_stops_at_its_counter_limit() {
    let leaf = leaf();
    let mut sender = FrameSender::at_counter(&leaf, KID, FrameSender::COUNTER_LIMIT - 1);
    let mut frame = Vec::new();
    let header = sender
        .encrypt(b"last", &mut frame)
        .expect("the last counter");
    assert_eq!(header.ctr, FrameSender::COUNTER_LIMIT - 1);
    assert_eq!(
        sender.encrypt(b"one more", &mut frame),
        Err(EncryptError::CounterExhausted)
    );
    assert!(frame.is_empty());
    assert_eq!(
        sender.encrypt(b"and again", &mut frame),
        Err(EncryptError::CounterExhausted)
    );
}

#[test]
fn oversized_plaintext_is_refused_without_using_a_counter() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut frame = Vec::new();
    let too_big = vec![0u8; MAX_FRAME_LEN];
    assert_eq!(
        sender.encrypt(&too_big, &mut frame),
        Err(EncryptError::TooLarge {
            plaintext_len: MAX_FRAME_LEN
        })
    );
    let largest = MAX_FRAME_LEN - Header::new(KID, 0).encoded_len() - TAG_LEN;
    let header = sender
        .encrypt(&too_big[..largest], &mut frame)
        .expect("fits");
    assert_eq!((header.ctr, frame.len()), (0, MAX_FRAME_LEN));
}

#[test]
fn a_flood_of_random_kids_does_not_grow_the_cache() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let real = frames(&mut sender, 2);
    let mut plain = Vec::new();
    assert!(receiver.decrypt(&real[0], &mut plain).is_ok());
    let mut forged = Vec::new();
    for kid in 0..500u64 {
        forged.clear();
        forged.resize(Header::MAX_LEN, 0);
        let n = Header::new(kid.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0).encode(&mut forged);
        forged.truncate(n);
        forged.extend_from_slice(&[0x55; 32]);
        assert_eq!(
            receiver.decrypt(&forged, &mut plain),
            Err(DecryptError::Authentication)
        );
    }
    assert_eq!(receiver.known_senders(), 1);
    // The real sender's replay window survived the flood.
    assert_eq!(
        receiver.decrypt(&real[0], &mut plain),
        Err(DecryptError::Replay)
    );
    assert!(receiver.decrypt(&real[1], &mut plain).is_ok());
}

#[test]
fn many_real_senders_evict_the_least_recently_heard() {
    let leaf = leaf();
    let mut receiver = FrameReceiver::new(&leaf);
    let mut plain = Vec::new();
    let mut first = FrameSender::new(&leaf, 1000);
    let first_frames = frames(&mut first, 3);
    assert!(receiver.decrypt(&first_frames[0], &mut plain).is_ok());
    for kid in 0..(FrameReceiver::KEY_CACHE as u64 - 1) {
        let mut other = FrameSender::new(&leaf, kid);
        assert!(
            receiver
                .decrypt(&frames(&mut other, 1)[0], &mut plain)
                .is_ok()
        );
    }
    assert_eq!(receiver.known_senders(), FrameReceiver::KEY_CACHE);
    // Hearing `first` again makes it the most recent; the next newcomer evicts kid 0 instead.
    assert!(receiver.decrypt(&first_frames[1], &mut plain).is_ok());
    let mut newcomer = FrameSender::new(&leaf, 5000);
    assert!(
        receiver
            .decrypt(&frames(&mut newcomer, 1)[0], &mut plain)
            .is_ok()
    );
    assert_eq!(receiver.known_senders(), FrameReceiver::KEY_CACHE);
    assert_eq!(
        receiver.decrypt(&first_frames[1], &mut plain),
        Err(DecryptError::Replay)
    );
    assert!(receiver.decrypt(&first_frames[2], &mut plain).is_ok());
}

#[test]
fn debug_output_shows_no_key_material() {
    let leaf = leaf();
    let sender = FrameSender::new(&leaf, KID);
    let text = alloc::format!("{sender:?} {:?}", FrameReceiver::new(&leaf));
    assert!(text.contains("FrameSender") && text.contains("FrameReceiver"));
    assert!(!text.contains(&leaf.to_string()[5..12]));
}

#[test]
fn our_own_frames_reflected_back_are_refused() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let frames = frames(&mut sender, 2);
    let mut plain = Vec::new();
    assert!(receiver.decrypt(&frames[0], &mut plain).is_ok());
    receiver.refuse_kid(sender.kid());
    assert_eq!(receiver.known_senders(), 0);
    assert_eq!(
        receiver.decrypt(&frames[1], &mut plain),
        Err(DecryptError::Reflected)
    );
    assert!(plain.is_empty());
}

#[test]
fn an_evicted_senders_frames_cannot_be_replayed_once_more() {
    let leaf = leaf();
    let mut receiver = FrameReceiver::new(&leaf);
    let mut plain = Vec::new();
    let mut first = FrameSender::new(&leaf, 1000);
    let first_frames = frames(&mut first, 2);
    assert!(receiver.decrypt(&first_frames[0], &mut plain).is_ok());
    // A peer that reconnected KEY_CACHE times pushes the first KID out of the cache...
    for kid in 0..FrameReceiver::KEY_CACHE as u64 {
        let mut other = FrameSender::new(&leaf, kid);
        assert!(
            receiver
                .decrypt(&frames(&mut other, 1)[0], &mut plain)
                .is_ok()
        );
    }
    assert_eq!(receiver.known_senders(), FrameReceiver::KEY_CACHE);
    // ...and its frames, played before or not, are refused rather than opened with a new window.
    for frame in &first_frames {
        assert_eq!(
            receiver.decrypt(frame, &mut plain),
            Err(DecryptError::Replay)
        );
        assert!(plain.is_empty());
    }
}

#[test]
fn own_frames_from_before_a_reconnect_stay_refused() {
    let leaf = leaf();
    let mut receiver = FrameReceiver::new(&leaf);
    let mut plain = Vec::new();
    let mut before = FrameSender::new(&leaf, 41);
    let old = frames(&mut before, 1);
    receiver.refuse_kid(before.kid());
    let after = FrameSender::new(&leaf, 42);
    receiver.refuse_kid(after.kid());
    assert_eq!(
        receiver.decrypt(&old[0], &mut plain),
        Err(DecryptError::Reflected)
    );
}

#[test]
fn metadata_is_authenticated_and_tried_in_order() {
    let leaf = leaf();
    let mut sender = FrameSender::new(&leaf, KID);
    let mut receiver = FrameReceiver::new(&leaf);
    let (mut frame, mut plain) = (Vec::new(), Vec::new());
    let header = sender
        .encrypt_with(b"receiver 1", b"audio", &mut frame)
        .expect("encrypts");
    // Other metadata, or none, does not open it, and changes nothing: the frame still opens after.
    for wrong in [&b""[..], b"receiver 2", b"receiver 1 "] {
        assert_eq!(
            receiver.decrypt_with(&frame, &[wrong], &mut plain),
            Err(DecryptError::Authentication)
        );
        assert!(plain.is_empty());
    }
    assert_eq!(receiver.known_senders(), 0);
    assert_eq!(
        receiver.decrypt_with(&frame, &[b"x", b"receiver 1", b""], &mut plain),
        Ok((header, 1))
    );
    assert_eq!(plain, b"audio");
    // The counter is marked whichever metadata opened it.
    assert_eq!(
        receiver.decrypt_with(&frame, &[b"receiver 1"], &mut plain),
        Err(DecryptError::Replay)
    );
    // Long metadata (past the stack buffer) works the same way.
    let long = [7u8; 100];
    sender
        .encrypt_with(&long, b"audio", &mut frame)
        .expect("encrypts");
    let mut tampered = frame.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        receiver.decrypt_with(&tampered, &[&long], &mut plain),
        Err(DecryptError::Authentication)
    );
    assert!(receiver.decrypt_with(&frame, &[&long], &mut plain).is_ok());
}
