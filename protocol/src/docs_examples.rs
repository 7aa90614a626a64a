//! Checks every example in docs/PROTOCOL.md against the code, so the specification cannot drift.
//!
//! Examples are fenced blocks whose info string is `hex example=NAME`; each name below says what its
//! bytes must be. A block the test does not know, or a name it expects but cannot find, fails.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::binding::{Binding, OpenError, metadata};
use crate::header::Header;
use crate::join::JoinToken;
use crate::leaf::LeafKey;
use crate::payload::{Audio, Bye, Hello, Payload, Ping};
use crate::sframe::{FrameReceiver, FrameSender, SUITE, SframeKey, suite_key_and_salt};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");
const KID: u64 = 0x1d2c_3b4a_5968_7786;

/// The `hex example=NAME` blocks of the document, by name.
fn examples() -> BTreeMap<&'static str, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut lines = PROTOCOL_MD.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```hex example=") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let bytes = crate::hex::decode(&body.join(" ")).expect("example blocks hold hex");
        assert!(
            found.insert(name.trim(), bytes).is_none(),
            "duplicate example {name}"
        );
    }
    found
}

fn decode(bytes: &[u8]) -> Payload<'_> {
    Payload::decode(bytes).expect("the example payload decodes")
}

#[test]
fn docs_examples() {
    let ex = examples();
    let names: Vec<&str> = ex.keys().copied().collect();
    assert_eq!(
        names,
        [
            "frame",
            "frame-bound",
            "header-1234-10000",
            "header-5-3",
            "join-token",
            "leaf",
            "line-id",
            "nonce-2",
            "payload-audio",
            "payload-bye",
            "payload-hello",
            "payload-ping",
            "payload-pong",
            "sender-base-key",
            "sframe-key",
            "sframe-salt",
        ]
    );

    // Section 2 and 3: the leaf, its text form, its line id.
    let leaf_bytes: [u8; 32] = ex["leaf"].as_slice().try_into().expect("32 bytes");
    assert_eq!(leaf_bytes, core::array::from_fn(|i| i as u8));
    let leaf = LeafKey::from_random(leaf_bytes);
    assert!(PROTOCOL_MD.contains(&alloc::format!("is written `{leaf}`")));
    assert_eq!(leaf.line_id().as_bytes().as_slice(), ex["line-id"]);
    assert!(PROTOCOL_MD.contains(&alloc::format!("line id is `{}`", leaf.line_id())));
    assert_eq!(leaf.join_token().as_bytes().as_slice(), ex["join-token"]);
    assert!(PROTOCOL_MD.contains(&alloc::format!("join token is `{}`", leaf.join_token())));
    assert_ne!(
        leaf.join_token(),
        JoinToken::from_bytes(*leaf.line_id().as_bytes())
    );
    assert_eq!(leaf.sender_base_key(KID).as_slice(), ex["sender-base-key"]);

    // Section 4: headers, key schedule, nonce, a whole frame.
    assert_eq!(Header::parse(&ex["header-5-3"]), Ok((Header::new(5, 3), 1)));
    assert_eq!(
        Header::parse(&ex["header-1234-10000"]),
        Ok((Header::new(0x1234, 0x10000), 6))
    );
    let base_key = leaf.sender_base_key(KID);
    let (key, salt) = suite_key_and_salt(SUITE, base_key.as_ref(), KID);
    assert_eq!(key.as_slice(), ex["sframe-key"]);
    assert_eq!(salt.as_slice(), ex["sframe-salt"]);
    let sframe_key = SframeKey::derive(SUITE, base_key.as_ref(), KID);
    assert_eq!(sframe_key.nonce(2).as_slice(), ex["nonce-2"]);

    let mut sender = FrameSender::new(&leaf, KID);
    let mut frame = Vec::new();
    for _ in 0..3 {
        sender
            .encrypt(&ex["payload-ping"], &mut frame)
            .expect("encrypts");
    }
    assert_eq!(frame, ex["frame"]);
    let mut plain = Vec::new();
    let header = FrameReceiver::new(&leaf)
        .decrypt(&ex["frame"], &mut plain)
        .expect("the example frame opens");
    assert_eq!(
        (header, plain.as_slice()),
        (Header::new(KID, 2), ex["payload-ping"].as_slice())
    );

    // Section 4.5: the next frame, bound to the receiver with KID 0x0102030405060708.
    const RECEIVER_KID: u64 = 0x0102_0304_0506_0708;
    sender
        .encrypt_with(&metadata(RECEIVER_KID), &ex["payload-ping"], &mut frame)
        .expect("encrypts");
    assert_eq!(frame, ex["frame-bound"]);
    let mut receiver = Binding::new();
    receiver.connected(RECEIVER_KID);
    assert!(matches!(
        receiver.open(
            &mut FrameReceiver::new(&leaf),
            &ex["frame-bound"],
            &mut plain
        ),
        Ok((_, Payload::Ping(_)))
    ));
    // Bound to another connection, or opened unbound, it does not authenticate.
    let mut elsewhere = Binding::new();
    elsewhere.connected(RECEIVER_KID + 1);
    assert_eq!(
        elsewhere
            .open(
                &mut FrameReceiver::new(&leaf),
                &ex["frame-bound"],
                &mut plain
            )
            .err(),
        Some(OpenError::Decrypt(
            crate::sframe::DecryptError::Authentication
        ))
    );

    // Section 5: payloads.
    assert_eq!(
        decode(&ex["payload-audio"]),
        Payload::Audio(Audio {
            sample_rate: 200_000,
            channels: 1,
            first_sample: 4000,
            capture_time_us: 1_764_150_000_000_000,
            pcm: &[0x00, 0x40, 0x01, 0x80],
        })
    );
    let mut samples = [0f32; 2];
    crate::pcm::i16le_to_f32(&ex["payload-audio"][23..], &mut samples);
    assert_eq!(samples, [16384.0 / 32767.0, -1.0]);
    assert_eq!(
        decode(&ex["payload-hello"]),
        Payload::Hello(Hello {
            protocol_version: 1,
            client: "line-web 0.1.0",
            sample_rate: 48_000,
            channels: 1,
            frame_duration_us: 10_000,
        })
    );
    let ping = Ping {
        id: 7,
        send_time_us: 1_000_000,
    };
    assert_eq!(decode(&ex["payload-ping"]), Payload::Ping(ping));
    assert_eq!(decode(&ex["payload-pong"]), Payload::Pong(ping));
    assert_eq!(
        decode(&ex["payload-bye"]),
        Payload::Bye(Bye { reason: "hung up" })
    );

    // Section 6: the relay messages as the table shows them.
    for message in [
        crate::control::RelayMessage::Waiting,
        crate::control::RelayMessage::PeerJoined,
        crate::control::RelayMessage::PeerLeft,
    ] {
        assert!(PROTOCOL_MD.contains(&alloc::format!("`{}`", message.to_json())));
    }
}
