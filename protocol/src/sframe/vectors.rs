//! The RFC 9605 test vectors (Appendix C.1 headers, Appendix C.3 SFrame for the AES-GCM suites),
//! from `testdata/rfc9605-vectors.json`, a copy of test-vectors/test-vectors.json in the
//! sframe-wg/sframe repository. Every vector has a tamper twin that must fail.

use alloc::vec::Vec;

use serde_json::Value;

use super::suite::{key_and_salt, labels};
use super::{CipherSuite, SframeKey};
use crate::header::Header;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const VECTORS: &str = include_str!("../../testdata/rfc9605-vectors.json");

fn vectors(section: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(VECTORS).expect("the vector file is JSON");
    all[section]
        .as_array()
        .expect("each section is an array")
        .clone()
}

fn hex(value: &Value) -> Vec<u8> {
    crate::hex::decode(value.as_str().expect("hex fields are strings")).expect("valid hex")
}

fn int(value: &Value) -> u64 {
    value.as_u64().expect("integer fields fit u64")
}

#[test]
fn all_289_header_vectors_encode_and_parse() {
    let headers = vectors("header");
    assert_eq!(headers.len(), 289);
    for v in &headers {
        let header = Header::new(int(&v["kid"]), int(&v["ctr"]));
        let encoded = hex(&v["encoded"]);
        let mut buf = [0u8; Header::MAX_LEN];
        let n = header.encode(&mut buf);
        assert_eq!(&buf[..n], encoded.as_slice(), "{header:?}");
        assert_eq!(Header::parse(&encoded), Ok((header, encoded.len())));

        // Tamper twins: a truncated header is an error, and any flipped byte is another header.
        assert!(Header::parse(&encoded[..encoded.len() - 1]).is_err());
        for i in 0..encoded.len() {
            let mut tampered = encoded.clone();
            tampered[i] ^= 0x01;
            assert_ne!(
                Header::parse(&tampered).map(|(h, _)| h),
                Ok(header),
                "{header:?} byte {i}"
            );
        }
    }
}

#[test]
fn sframe_vectors_of_the_aes_gcm_suites_pass() {
    let sframes = vectors("sframe");
    let suites: Vec<u64> = sframes.iter().map(|v| int(&v["cipher_suite"])).collect();
    assert_eq!(suites, [4, 5]);
    for v in &sframes {
        let suite = u16::try_from(int(&v["cipher_suite"]))
            .ok()
            .and_then(CipherSuite::from_id)
            .expect("a suite this crate implements");
        let (kid, ctr) = (int(&v["kid"]), int(&v["ctr"]));
        let base_key = hex(&v["base_key"]);
        let metadata = hex(&v["metadata"]);
        let plaintext = hex(&v["pt"]);
        let expected = hex(&v["ct"]);

        let (key_label, salt_label) = labels(suite, kid);
        assert_eq!(key_label.as_slice(), hex(&v["sframe_key_label"]));
        assert_eq!(salt_label.as_slice(), hex(&v["sframe_salt_label"]));
        let (key, salt) = key_and_salt(suite, &base_key, kid);
        assert_eq!(&key[..suite.key_len()], hex(&v["sframe_key"]).as_slice());
        assert_eq!(salt.as_slice(), hex(&v["sframe_salt"]));

        let key = SframeKey::derive(suite, &base_key, kid);
        assert_eq!(key.nonce(ctr).as_slice(), hex(&v["nonce"]));
        let header = Header::new(kid, ctr);
        let mut aad = [0u8; Header::MAX_LEN].to_vec();
        let n = header.encode(&mut aad);
        aad.truncate(n);
        aad.extend_from_slice(&metadata);
        assert_eq!(aad, hex(&v["aad"]));

        let mut frame = Vec::new();
        key.seal(header, &metadata, &plaintext, &mut frame);
        assert_eq!(frame, expected, "suite {suite:?}");
        let mut opened = Vec::new();
        assert_eq!(key.open(&expected, &metadata, &mut opened), Ok(header));
        assert_eq!(opened, plaintext);

        // Tamper twins: every flipped byte (header, ciphertext, tag) and other metadata fail.
        for i in 0..expected.len() {
            let mut tampered = expected.clone();
            tampered[i] ^= 0x80;
            assert!(
                key.open(&tampered, &metadata, &mut opened).is_err(),
                "byte {i}"
            );
            assert!(opened.is_empty());
        }
        assert!(key.open(&expected, b"other", &mut opened).is_err());
        assert!(
            key.open(&expected[..expected.len() - 1], &metadata, &mut opened)
                .is_err()
        );
    }
}
