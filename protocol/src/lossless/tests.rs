use super::signals::{Kind, generate};
use super::*;
use crate::testing::Rng;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const RATES: [u32; 2] = [48_000, 200_000];

/// Encodes, checks the size bound, decodes, and returns the coded length.
fn round_trip(samples: &[i16]) -> usize {
    let mut coded = vec![0xaa; 3];
    encode(samples, &mut coded);
    assert_eq!(coded[..3], [0xaa; 3], "encode appends");
    let coded = &coded[3..];
    assert!(
        coded.len() <= HEADER_LEN + 2 * samples.len(),
        "{} bytes for {} samples",
        coded.len(),
        samples.len()
    );
    let mut back = vec![7; 5];
    decode(coded, samples.len(), &mut back).expect("a frame this coder wrote");
    assert_eq!(back, samples);
    coded.len()
}

#[test]
fn every_kind_of_signal_at_random_lengths_comes_back_exactly() {
    let mut rng = Rng::from_env();
    for kind in Kind::ALL {
        for rate in RATES {
            for _ in 0..40 {
                let n = 1 + (rng.next_u64() % 2000) as usize;
                let samples = generate(kind, &mut rng, n, rate);
                round_trip(&samples);
            }
        }
    }
}

#[test]
fn short_frames_and_the_empty_frame_come_back_exactly() {
    let mut rng = Rng::from_env();
    for n in 0..=80 {
        for kind in Kind::ALL {
            round_trip(&generate(kind, &mut rng, n, 200_000));
        }
    }
    // A ramp whose second difference is zero, and the full range in one step.
    let ramp: Vec<i16> = (0..1000).map(|i| (i * 60 - 30_000) as i16).collect();
    assert!(round_trip(&ramp) < 200, "a ramp is nearly free");
    round_trip(&[i16::MIN, i16::MAX, i16::MIN, i16::MAX, 0, i16::MIN]);
}

#[test]
fn silence_and_a_held_value_cost_five_bytes() {
    let mut rng = Rng::from_env();
    let n = 1 + (rng.next_u64() % 2000) as usize;
    let value = (rng.next_u64() >> 48) as u16 as i16;
    assert_eq!(round_trip(&vec![0; n]), 5);
    assert_eq!(round_trip(&vec![value; n]), 5);
}

#[test]
fn noise_falls_back_to_raw_and_predictable_audio_shrinks() {
    let mut rng = Rng::from_env();
    let white = generate(Kind::WhiteNoise, &mut rng, 2000, 200_000);
    assert_eq!(round_trip(&white), HEADER_LEN + 4000);
    // 10 ms at 200 kHz: a rounded tone leaves almost nothing after the order-4 predictor, and
    // noise band-limited to 22 kHz leaves roughly a fifth of its range.
    let tone = generate(Kind::Tone, &mut rng, 2000, 200_000);
    let ratio = round_trip(&tone) as f64 / 4000.0;
    assert!(ratio < 0.3, "tone: {ratio}");
    let upsampled = generate(Kind::UpsampledNoise, &mut rng, 2000, 200_000);
    let ratio = round_trip(&upsampled) as f64 / 4000.0;
    assert!(ratio < 0.75, "upsampled noise: {ratio}");
}

#[test]
fn a_frame_longer_than_the_caller_accepts_is_refused() {
    let mut rng = Rng::from_env();
    let n = 2 + (rng.next_u64() % 2000) as usize;
    let mut coded = Vec::new();
    encode(&generate(Kind::Tone, &mut rng, n, 48_000), &mut coded);
    let mut out = Vec::new();
    assert_eq!(
        decode(&coded, n - 1, &mut out),
        Err(LosslessError::TooManySamples {
            count: n,
            max: n - 1
        })
    );
    assert!(out.is_empty());
}

#[test]
fn every_truncation_and_every_appended_byte_is_an_error() {
    let mut rng = Rng::from_env();
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let n = 1 + (rng.next_u64() % 600) as usize;
        let mut coded = Vec::new();
        encode(&generate(kind, &mut rng, n, 200_000), &mut coded);
        for cut in 0..coded.len() {
            assert!(
                decode(&coded[..cut], n, &mut out).is_err(),
                "{kind:?} cut at {cut}"
            );
            assert!(out.is_empty());
        }
        coded.push((rng.next_u64() & 0xff) as u8);
        assert!(
            decode(&coded, n, &mut out).is_err(),
            "{kind:?} with a byte more"
        );
    }
}

#[test]
fn mutated_and_random_bytes_never_panic_nor_exceed_the_limit() {
    let mut rng = Rng::from_env();
    let mut out = Vec::new();
    let mut coded = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for round in 0..3000 {
        let kind = Kind::ALL[round % Kind::ALL.len()];
        let n = 1 + (rng.next_u64() % 800) as usize;
        coded.clear();
        encode(&generate(kind, &mut rng, n, 200_000), &mut coded);
        match rng.next_u64() % 4 {
            // Flip a few bits anywhere, the header included.
            0 | 1 => {
                for _ in 0..1 + rng.next_u64() % 4 {
                    let at = (rng.next_u64() % coded.len() as u64) as usize;
                    coded[at] ^= 1 << (rng.next_u64() % 8);
                }
            }
            // Overwrite a random stretch with random bytes.
            2 => {
                let at = (rng.next_u64() % coded.len() as u64) as usize;
                let len = (rng.next_u64() % 32) as usize;
                for b in coded.iter_mut().skip(at).take(len) {
                    *b = rng.next_u64() as u8;
                }
            }
            // Nothing but random bytes.
            _ => {
                let len = (rng.next_u64() % 64) as usize;
                coded.clear();
                coded.extend((0..len).map(|_| rng.next_u64() as u8));
            }
        }
        let max = 800;
        match decode(&coded, max, &mut out) {
            Ok(()) => {
                assert!(out.len() <= max);
                ok += 1;
            }
            Err(e) => {
                assert!(out.is_empty(), "{e}");
                err += 1;
            }
        }
    }
    // Both outcomes happen: flips in the bits of a residual decode to other samples.
    assert!(ok > 0 && err > 0, "{ok} decoded, {err} refused");
}

#[test]
fn forged_headers_are_refused_by_name() {
    let mut out = Vec::new();
    let check = |bytes: &[u8], want: LosslessError, out: &mut Vec<i16>| {
        assert_eq!(decode(bytes, 100, out), Err(want), "{bytes:?}");
    };
    check(&[0, 1], LosslessError::Truncated, &mut out);
    check(&[0, 1, 9, 0, 0], LosslessError::UnknownMethod(9), &mut out);
    check(
        &[0, 2, METHOD_VERBATIM, 1, 2, 3],
        LosslessError::Truncated,
        &mut out,
    );
    check(
        &[0, 1, METHOD_CONSTANT, 1, 2, 3],
        LosslessError::TrailingBytes,
        &mut out,
    );
    // Order 5, order above the count, partition order 9, Rice parameter 31.
    check(
        &[0, 9, METHOD_FIXED, 0x50],
        LosslessError::BadParameter,
        &mut out,
    );
    check(
        &[0, 1, METHOD_FIXED, 0x20, 0, 0, 0, 0],
        LosslessError::BadParameter,
        &mut out,
    );
    check(
        &[0, 9, METHOD_FIXED, 0x09],
        LosslessError::BadParameter,
        &mut out,
    );
    check(
        &[0, 1, METHOD_FIXED, 0x00, 0xf8],
        LosslessError::BadParameter,
        &mut out,
    );
    // Rice parameter 0 and a run of zero bits far longer than any residual.
    // Rice parameter 20 and more than one zero bit of quotient: beyond any residual.
    check(
        &[0, 1, METHOD_FIXED, 0x00, 0xa0, 0x00],
        LosslessError::ResidualOutOfRange,
        &mut out,
    );
    // Order 1, width 24, shift 32; then order 0, and width 0.
    check(
        &[0, 4, METHOD_LPC, 1, 24, 32, 0],
        LosslessError::BadParameter,
        &mut out,
    );
    check(
        &[0, 4, METHOD_LPC, 0, 24, 2, 0],
        LosslessError::BadParameter,
        &mut out,
    );
    check(
        &[0, 4, METHOD_LPC, 1, 0, 2, 0],
        LosslessError::BadParameter,
        &mut out,
    );
    // Order 1 from 32767, then +1 (zigzag 2, k = 2: bits 1 10): 32768 does not fit.
    check(
        &[0, 2, METHOD_FIXED, 0x10, 0xff, 0x7f, 0b0001_0110, 0],
        LosslessError::SampleOutOfRange,
        &mut out,
    );
    check(
        &[0, 200, METHOD_CONSTANT, 5, 0],
        LosslessError::TooManySamples {
            count: 200,
            max: 100,
        },
        &mut out,
    );
}

/// The `hex example=NAME` block of docs/LOSSLESS.md.
fn doc_example(name: &str) -> Vec<u8> {
    let doc = include_str!("../../../docs/LOSSLESS.md");
    let start = doc
        .find(&format!("```hex example={name}\n"))
        .unwrap_or_else(|| panic!("docs/LOSSLESS.md has no example {name}"));
    let body = &doc[start..]
        .lines()
        .skip(1)
        .take_while(|l| *l != "```")
        .collect::<Vec<_>>()
        .join(" ");
    body.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex bytes"))
        .collect()
}

#[test]
fn the_examples_of_the_format_document_are_what_the_coder_writes_and_reads() {
    for (name, samples) in [
        ("verbatim", &[i16::MIN, i16::MAX][..]),
        ("constant", &[-2, -2, -2][..]),
        ("fixed", &[1000, 1001, 1002, 1004, 1003][..]),
    ] {
        let bytes = doc_example(name);
        let mut coded = Vec::new();
        encode(samples, &mut coded);
        assert_eq!(coded, bytes, "{name}");
        let mut back = Vec::new();
        decode(&bytes, samples.len(), &mut back).expect(name);
        assert_eq!(back, samples, "{name}");
    }
}
