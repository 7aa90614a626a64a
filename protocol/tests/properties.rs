//! Property tests: encode/decode round trips and the replay window against a simple model.
//! Native only (proptest wants the OS's randomness); the unit tests also run on wasm32.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

use line_protocol::header::Header;
use line_protocol::leaf::LeafKey;
use line_protocol::payload::{Audio, Bye, Hello, Payload, Ping};
use line_protocol::replay::{ReplayError, ReplayWindow};
use line_protocol::sframe::{DecryptError, FrameReceiver, FrameSender};
use proptest::prelude::*;

/// Values spread over every header length: small, each byte width, and the extremes.
fn field() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..8u64,
        any::<u64>(),
        (0..64u32).prop_map(|s| 1u64 << s),
        Just(u64::MAX)
    ]
}

proptest! {
    #[test]
    fn header_round_trips(kid in field(), ctr in field()) {
        let header = Header::new(kid, ctr);
        let mut buf = [0u8; Header::MAX_LEN];
        let n = header.encode(&mut buf);
        prop_assert_eq!(n, header.encoded_len());
        prop_assert_eq!(Header::parse(&buf[..n]), Ok((header, n)));
    }

    #[test]
    fn any_parsed_header_re_encodes_to_an_equal_header(
        bytes in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        if let Ok((header, n)) = Header::parse(&bytes) {
            prop_assert!(n <= bytes.len() && n <= Header::MAX_LEN);
            let mut buf = [0u8; Header::MAX_LEN];
            let m = header.encode(&mut buf);
            prop_assert!(m <= n, "the shortest form is never longer");
            prop_assert_eq!(Header::parse(&buf[..m]), Ok((header, m)));
        }
    }

    #[test]
    fn audio_round_trips(
        sample_rate in 1..=u32::MAX,
        channels in 1..=8u8,
        first_sample in any::<u64>(),
        capture_time_us in any::<u64>(),
        samples in 0..64usize,
        fill in any::<u8>(),
    ) {
        let pcm: Vec<u8> = (0..samples * 2 * usize::from(channels))
            .map(|i| fill ^ i as u8)
            .collect();
        let payload = Payload::Audio(Audio {
            sample_rate,
            channels,
            first_sample,
            capture_time_us,
            pcm: &pcm,
        });
        let mut buf = Vec::new();
        payload.encode(&mut buf);
        prop_assert_eq!(buf.len(), payload.encoded_len());
        prop_assert_eq!(Payload::decode(&buf), Ok(payload));
    }

    #[test]
    fn control_payloads_round_trip(
        protocol_version in any::<u16>(),
        client in ".{0,40}",
        sample_rate in 1..=u32::MAX,
        channels in 1..=u8::MAX,
        frame_duration_us in any::<u32>(),
        id in any::<u32>(),
        send_time_us in any::<u64>(),
        reason in ".{0,40}",
    ) {
        let ping = Ping { id, send_time_us };
        for payload in [
            Payload::Hello(Hello {
                protocol_version,
                client: &client,
                sample_rate,
                channels,
                frame_duration_us,
            }),
            Payload::Ping(ping),
            Payload::Pong(ping),
            Payload::Bye(Bye { reason: &reason }),
        ] {
            let mut buf = Vec::new();
            payload.encode(&mut buf);
            prop_assert_eq!(buf.len(), payload.encoded_len());
            prop_assert_eq!(Payload::decode(&buf), Ok(payload));
        }
    }

    /// Decoding is total, and the encoding has no slack: what decodes re-encodes to the same bytes.
    #[test]
    fn decoding_any_bytes_is_total_and_canonical(
        head in prop::sample::select(vec![
            vec![], vec![1], vec![1, 1], vec![1, 2], vec![1, 3], vec![1, 4], vec![1, 5], vec![2, 1],
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let bytes = [head, tail].concat();
        if let Ok(payload) = Payload::decode(&bytes) {
            let mut again = Vec::new();
            payload.encode(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    /// The window accepts exactly what a model accepts: a set of every counter ever marked, and
    /// "too old" for anything 128 or more below the highest. A check not followed by a mark (a
    /// frame that failed authentication) changes nothing.
    #[test]
    fn replay_window_matches_a_model(
        start in any::<u64>(),
        steps in prop::collection::vec((-150i64..150, any::<bool>(), 0..20u8), 1..300),
    ) {
        let mut window = ReplayWindow::new();
        let mut seen = BTreeSet::new();
        let mut highest: Option<u64> = None;
        let mut ctr = start;
        for (delta, authentic, jump) in steps {
            ctr = if jump == 0 {
                ctr.wrapping_add(1 << 20)
            } else {
                ctr.wrapping_add_signed(delta)
            };
            let expected = match highest {
                Some(top) if ctr <= top && top - ctr >= ReplayWindow::SIZE => {
                    Err(ReplayError::TooOld)
                }
                _ if seen.contains(&ctr) => Err(ReplayError::Duplicate),
                _ => Ok(()),
            };
            prop_assert_eq!(window.check(ctr), expected, "counter {}", ctr);
            if expected.is_ok() && authentic {
                window.mark(ctr);
                seen.insert(ctr);
                highest = highest.max(Some(ctr));
            }
            prop_assert_eq!(window.highest(), highest);
        }
    }
}

proptest! {
    // Each case derives keys in a debug build; a few dozen cases are plenty.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn frames_round_trip_and_replays_fail(
        leaf in any::<[u8; 32]>(),
        kid in any::<u64>(),
        plaintexts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..5),
    ) {
        let leaf = LeafKey::from_random(leaf);
        let mut sender = FrameSender::new(&leaf, kid);
        let mut receiver = FrameReceiver::new(&leaf);
        let (mut frame, mut plain) = (Vec::new(), Vec::new());
        for (ctr, plaintext) in plaintexts.iter().enumerate() {
            let header = sender.encrypt(plaintext, &mut frame).expect("under the limits");
            prop_assert_eq!(header, Header::new(kid, ctr as u64));
            prop_assert_eq!(receiver.decrypt(&frame, &mut plain), Ok(header));
            prop_assert_eq!(&plain, plaintext);
            prop_assert_eq!(receiver.decrypt(&frame, &mut plain), Err(DecryptError::Replay));
        }
    }
}
