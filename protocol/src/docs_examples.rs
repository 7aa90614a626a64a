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
            "payload-coded-audio",
            "payload-coded-repair",
            "payload-hello",
            "payload-ping",
            "payload-pong",
            "payload-repair",
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
            protocol_version: 2,
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
    assert_eq!(
        decode(&ex["payload-repair"]),
        Payload::Repair(crate::payload::Repair {
            sample_rate: 200_000,
            channels: 1,
            first_sample: 4000,
            frames: 4,
            capture_time_xor: 0x1234,
            pcm_xor: &[0x00, 0x40, 0x01, 0x80],
        })
    );

    let coded = Payload::decode(&ex["payload-coded-audio"]).expect("decodes");
    let Payload::CodedAudio(coded) = coded else {
        panic!("coded audio: {coded:?}");
    };
    assert_eq!(
        (
            coded.sample_rate,
            coded.channels,
            coded.first_sample,
            coded.capture_time_us
        ),
        (48_000, 1, 960, 1_764_150_000_000_000)
    );
    let mut samples = Vec::new();
    crate::lossless::decode(coded.coded, 480, &mut samples).expect("a coded frame");
    assert_eq!(samples, [0; 480]);
    let repair = Payload::decode(&ex["payload-coded-repair"]).expect("decodes");
    let Payload::CodedRepair(repair) = repair else {
        panic!("coded repair: {repair:?}");
    };
    let frame = |first_sample, coded| crate::payload::CodedAudio {
        sample_rate: 200_000,
        channels: 1,
        first_sample,
        capture_time_us: 0,
        coded,
    };
    let (frame0, frame1) = (
        frame(4000, &[0, 2, 1, 1, 0][..]),
        frame(4002, &[0, 2, 0, 0, 0x40, 0x01, 0x80][..]),
    );
    for f in [frame0, frame1] {
        crate::lossless::decode(f.coded, 2, &mut samples).expect("a coded frame");
    }
    assert_eq!(samples, [16384, -32767]);
    let mut decoder = crate::repair::RepairDecoder::new();
    decoder.handle_coded_audio(&frame1);
    decoder.handle_coded_repair(&repair);
    let mut buf = Vec::new();
    assert_eq!(
        decoder.poll_rebuilt(&mut buf),
        Some(Payload::CodedAudio(crate::payload::CodedAudio {
            capture_time_us: 0x1234,
            ..frame0
        }))
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

/// The rows of a markdown table whose header row starts with `| {first_header} |`, cells trimmed.
fn table(first_header: &str) -> Vec<Vec<&'static str>> {
    let header = alloc::format!("| {first_header} |");
    let mut lines = PROTOCOL_MD.lines().skip_while(|l| !l.starts_with(&header));
    assert!(lines.next().is_some(), "no table headed {header}");
    lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

/// Every wire constant of the crate, by the name appendix A gives it.
fn wire_constants() -> BTreeMap<&'static str, u64> {
    use crate::audio::{self, FrameDuration};
    use crate::control::{close_code, keepalive};
    use crate::join::status;

    let mut known: BTreeMap<&str, u64> = [
        ("MAX_FRAME_LEN", crate::MAX_FRAME_LEN as u64),
        (
            "webtransport::MAX_DATAGRAM_FRAME_LEN",
            crate::webtransport::MAX_DATAGRAM_FRAME_LEN as u64,
        ),
        (
            "webtransport::RECORD_HEADER_LEN",
            crate::webtransport::RECORD_HEADER_LEN as u64,
        ),
        (
            "webtransport::RecordKind::Control",
            u64::from(crate::webtransport::RecordKind::Control.to_byte()),
        ),
        (
            "webtransport::RecordKind::Frame",
            u64::from(crate::webtransport::RecordKind::Frame.to_byte()),
        ),
        ("leaf::LeafKey::LEN", LeafKey::LEN as u64),
        ("leaf::LeafKey::TEXT_LEN", LeafKey::TEXT_LEN as u64),
        ("audio::DEFAULT_RATE", u64::from(audio::DEFAULT_RATE)),
        ("audio::MOBILE_RATE", u64::from(audio::MOBILE_RATE)),
        ("line_id::LineId::LEN", crate::line_id::LineId::LEN as u64),
        (
            "line_id::LineId::TEXT_LEN",
            crate::line_id::LineId::TEXT_LEN as u64,
        ),
        ("join::JoinToken::LEN", JoinToken::LEN as u64),
        (
            "join::ParticipantId::LEN",
            crate::join::ParticipantId::LEN as u64,
        ),
        ("sframe::SUITE", u64::from(SUITE.id())),
        ("sframe::TAG_LEN", crate::sframe::TAG_LEN as u64),
        ("sframe::NONCE_LEN", crate::sframe::NONCE_LEN as u64),
        ("header::Header::MAX_LEN", Header::MAX_LEN as u64),
        (
            "sframe::FrameSender::COUNTER_LIMIT",
            FrameSender::COUNTER_LIMIT,
        ),
        (
            "replay::ReplayWindow::SIZE",
            crate::replay::ReplayWindow::SIZE,
        ),
        (
            "sframe::FrameReceiver::KEY_CACHE",
            FrameReceiver::KEY_CACHE as u64,
        ),
        (
            "sframe::FrameReceiver::REMEMBERED_KIDS",
            FrameReceiver::REMEMBERED_KIDS as u64,
        ),
        ("binding::METADATA_LEN", crate::binding::METADATA_LEN as u64),
        ("payload::VERSION", u64::from(crate::payload::VERSION)),
        (
            "payload::PROTOCOL_VERSION",
            u64::from(crate::payload::PROTOCOL_VERSION),
        ),
        (
            "payload::AUDIO_HEADER_LEN",
            crate::payload::AUDIO_HEADER_LEN as u64,
        ),
        (
            "payload::REPAIR_HEADER_LEN",
            crate::payload::REPAIR_HEADER_LEN as u64,
        ),
        (
            "payload::LOSSLESS_VERSION",
            u64::from(crate::payload::LOSSLESS_VERSION),
        ),
        (
            "payload::CODED_AUDIO_HEADER_LEN",
            crate::payload::CODED_AUDIO_HEADER_LEN as u64,
        ),
        (
            "payload::CODED_REPAIR_HEADER_LEN",
            crate::payload::CODED_REPAIR_HEADER_LEN as u64,
        ),
        ("repair::GROUP", u64::from(crate::repair::GROUP)),
        ("repair::MAX_GROUP", u64::from(crate::repair::MAX_GROUP)),
        ("audio::CHANNELS", u64::from(audio::CHANNELS)),
        ("audio::MIN_RATE", u64::from(audio::MIN_RATE)),
        ("audio::MAX_RATE", u64::from(audio::MAX_RATE)),
        (
            "audio::FrameDuration::Ms2_5",
            u64::from(FrameDuration::Ms2_5.micros()),
        ),
        (
            "audio::FrameDuration::Ms5",
            u64::from(FrameDuration::Ms5.micros()),
        ),
        (
            "audio::FrameDuration::Ms10",
            u64::from(FrameDuration::Ms10.micros()),
        ),
        (
            "audio::FrameDuration::Ms20",
            u64::from(FrameDuration::Ms20.micros()),
        ),
        (
            "audio::FrameDuration::DEFAULT",
            u64::from(FrameDuration::DEFAULT.micros()),
        ),
        ("join::status::BAD_REQUEST", u64::from(status::BAD_REQUEST)),
        (
            "join::status::API_KEY_REFUSED",
            u64::from(status::API_KEY_REFUSED),
        ),
        (
            "join::status::ORIGIN_REFUSED",
            u64::from(status::ORIGIN_REFUSED),
        ),
        ("join::status::LINE_FULL", u64::from(status::LINE_FULL)),
        ("join::status::WRONG_TOKEN", u64::from(status::WRONG_TOKEN)),
        ("join::status::TOO_MANY", u64::from(status::TOO_MANY)),
        ("join::status::SERVER_FULL", u64::from(status::SERVER_FULL)),
        (
            "control::keepalive::PING_INTERVAL_SECS",
            keepalive::PING_INTERVAL_SECS,
        ),
        (
            "control::keepalive::IDLE_TIMEOUT_SECS",
            keepalive::IDLE_TIMEOUT_SECS,
        ),
        ("control::close_code::NORMAL", u64::from(close_code::NORMAL)),
        (
            "control::close_code::GOING_AWAY",
            u64::from(close_code::GOING_AWAY),
        ),
        (
            "control::close_code::UNSUPPORTED_DATA",
            u64::from(close_code::UNSUPPORTED_DATA),
        ),
        (
            "control::close_code::TOO_BIG",
            u64::from(close_code::TOO_BIG),
        ),
        (
            "control::close_code::MALFORMED",
            u64::from(close_code::MALFORMED),
        ),
        ("control::close_code::IDLE", u64::from(close_code::IDLE)),
        (
            "control::close_code::TAKEN_OVER",
            u64::from(close_code::TAKEN_OVER),
        ),
        (
            "control::close_code::WAITED_TOO_LONG",
            u64::from(close_code::WAITED_TOO_LONG),
        ),
    ]
    .into_iter()
    .collect();
    #[cfg(feature = "std")]
    known.insert(
        "jitter::MAX_FRAME_MS",
        u64::from(crate::jitter::MAX_FRAME_MS),
    );
    known
}

/// A number as appendix A writes it: decimal, or hex with `0x`.
fn number(text: &str) -> u64 {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .unwrap_or_else(|_| panic!("{text} is not a number"))
}

#[test]
fn every_constant_the_spec_names_is_the_crates() {
    let mut known = wire_constants();
    for row in table("name in `line-protocol`") {
        let name = row[0].trim_matches('`');
        if cfg!(not(feature = "std")) && name.starts_with("jitter::") {
            continue;
        }
        let value = known.remove(name).unwrap_or_else(|| {
            panic!("appendix A names {name}, which the crate has not (or twice)")
        });
        assert_eq!(number(row[1]), value, "appendix A: {name}");
    }
    assert!(
        known.is_empty(),
        "constants without a row in appendix A: {known:?}"
    );

    // The tables a client acts on list exactly the crate's statuses and close codes.
    let wire = wire_constants();
    let of = |prefix: &str| -> Vec<u64> {
        let mut values: Vec<u64> = wire
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, v)| *v)
            .collect();
        values.sort_unstable();
        values
    };
    let first_column = |header: &str| -> Vec<u64> {
        let mut values: Vec<u64> = table(header).iter().map(|row| number(row[0])).collect();
        values.sort_unstable();
        values
    };
    assert_eq!(first_column("status"), of("join::status::"));
    assert_eq!(first_column("code"), of("control::close_code::"));
}
