//! Our SFrame frames, checked against the browser's own AES-GCM: WebCrypto, keyed from the same base
//! key through its own HKDF, must seal the same plaintext into the same bytes and open our frames.
//! It runs in headless Chromium with the other wasm tests:
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --target wasm32-unknown-unknown --test webcrypto`
#![cfg(target_arch = "wasm32")]

mod webcrypto_support;

use line_protocol::header::Header;
use line_protocol::sframe::{SUITE, SframeKey};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use webcrypto_support::{WebCryptoKey, bytes, settle};

wasm_bindgen_test_configure!(run_in_browser);

const BASE_KEY: [u8; 32] = *b"a base key for the webcrypto cmp";
const KID: u64 = 0x1d2c_3b4a_5968_7786;

#[wasm_bindgen_test]
async fn webcrypto_seals_our_frames_byte_for_byte() {
    let ours = SframeKey::derive(SUITE, &BASE_KEY, KID);
    let theirs = WebCryptoKey::derive(&BASE_KEY, KID).await;
    // Counters that change the header's length, and plaintexts around the AES block size up to a
    // 10 ms 200 kHz audio payload.
    let cases: [(u64, usize); 6] = [
        (0, 0),
        (1, 1),
        (7, 16),
        (255, 17),
        (65_536, 1000),
        ((1 << 32) - 1, 4023),
    ];
    let mut frame = Vec::new();
    let mut opened = Vec::new();
    for (ctr, len) in cases {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let header = Header::new(KID, ctr);
        ours.seal(header, &[], &plaintext, &mut frame);
        let (aad, sealed) = frame.split_at(header.encoded_len());
        assert_eq!(aad, theirs.header(ctr), "header of frame {ctr}");

        let webcrypto_sealed = settle(Ok(theirs.seal(ctr, aad, &plaintext)))
            .await
            .expect("WebCrypto seals");
        assert_eq!(
            bytes(&webcrypto_sealed),
            sealed,
            "ciphertext and tag of frame {ctr} ({len} bytes)"
        );
        let webcrypto_opened = settle(Ok(theirs.open(ctr, aad, sealed)))
            .await
            .expect("WebCrypto opens our frame");
        assert_eq!(bytes(&webcrypto_opened), plaintext);

        // Tamper twin: one flipped bit in the tag, and both sides refuse the frame.
        let last = frame.len() - 1;
        frame[last] ^= 0x01;
        let (aad, sealed) = frame.split_at(header.encoded_len());
        assert!(
            settle(Ok(theirs.open(ctr, aad, sealed))).await.is_err(),
            "WebCrypto refuses tampered frame {ctr}"
        );
        assert!(ours.open(&frame, &[], &mut opened).is_err());
        assert!(opened.is_empty());
    }
}
