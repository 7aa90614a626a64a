//! The browser's own AES-GCM (WebCrypto), keyed the SFrame way, for the wasm tests: it checks our
//! frames byte for byte and is the yardstick of the wasm benchmark.
//!
//! The key and salt come from WebCrypto's HKDF-SHA512 (RFC 9605 section 4.4.2), not from line's
//! code, so a match checks our key schedule as well as our AEAD.

use js_sys::{Array, ArrayBuffer, Promise, Uint8Array};
use line_protocol::header::Header;
use line_protocol::sframe::{CipherSuite, NONCE_LEN, SUITE};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AesGcmParams, CryptoKey, HkdfParams, SubtleCrypto};

/// One SFrame key (one KID under one base key) held by WebCrypto.
pub(crate) struct WebCryptoKey {
    subtle: SubtleCrypto,
    key: CryptoKey,
    salt: [u8; NONCE_LEN],
    kid: u64,
}

impl WebCryptoKey {
    /// Runs the SFrame key schedule of `kid` under `base_key` in WebCrypto and imports the AES key.
    pub(crate) async fn derive(base_key: &[u8], kid: u64) -> Self {
        assert_eq!(
            SUITE,
            CipherSuite::Aes256GcmSha512,
            "the labels below are suite 5's"
        );
        let subtle = subtle();
        let hkdf: CryptoKey = settle(subtle.import_key_with_str(
            "raw",
            &Uint8Array::from(base_key),
            "HKDF",
            false,
            &usages(&["deriveBits"]),
        ))
        .await
        .expect("WebCrypto imports an HKDF key")
        .unchecked_into();
        let expand = |label: &[u8], bits: u32| {
            let mut info = label.to_vec();
            info.extend_from_slice(&kid.to_be_bytes());
            info.extend_from_slice(&SUITE.id().to_be_bytes());
            let params = HkdfParams::new_with_str(
                "HKDF",
                "SHA-512",
                &Uint8Array::from(&info[..]),
                &Uint8Array::new_with_length(0),
            );
            settle(subtle.derive_bits_with_object(&params, &hkdf, bits))
        };
        let key_bytes = expand(b"SFrame 1.0 Secret key ", 256)
            .await
            .expect("WebCrypto derives the key");
        let salt_bytes = bytes(
            &expand(b"SFrame 1.0 Secret salt ", 96)
                .await
                .expect("WebCrypto derives the salt"),
        );
        let key: CryptoKey = settle(subtle.import_key_with_str(
            "raw",
            key_bytes.unchecked_ref(),
            "AES-GCM",
            false,
            &usages(&["encrypt", "decrypt"]),
        ))
        .await
        .expect("WebCrypto imports an AES-GCM key")
        .unchecked_into();
        let salt = salt_bytes.try_into().expect("96 bits are 12 bytes");
        Self {
            subtle,
            key,
            salt,
            kid,
        }
    }

    /// The SFrame header of the frame with counter `ctr`, encoded.
    pub(crate) fn header(&self, ctr: u64) -> Vec<u8> {
        let mut header = vec![0; Header::MAX_LEN];
        let len = Header::new(self.kid, ctr).encode(&mut header);
        header.truncate(len);
        header
    }

    /// Starts sealing `plaintext` as frame `ctr` (AAD = `header`); resolves to ciphertext || tag.
    pub(crate) fn seal(&self, ctr: u64, header: &[u8], plaintext: &[u8]) -> Promise {
        self.subtle
            .encrypt_with_object_and_u8_array(&self.params(ctr, header), &self.key, plaintext)
            .expect("AES-GCM parameters are valid")
    }

    /// Starts opening `sealed` (ciphertext || tag) of frame `ctr`; resolves to the plaintext, or
    /// rejects when the frame is not authentic.
    pub(crate) fn open(&self, ctr: u64, header: &[u8], sealed: &[u8]) -> Promise {
        self.subtle
            .decrypt_with_object_and_u8_array(&self.params(ctr, header), &self.key, sealed)
            .expect("AES-GCM parameters are valid")
    }

    fn params(&self, ctr: u64, header: &[u8]) -> AesGcmParams {
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        let params = AesGcmParams::new("AES-GCM", &Uint8Array::from(&nonce[..]));
        params.set_additional_data(&Uint8Array::from(header));
        params.set_tag_length(128);
        params
    }
}

/// The page's (or worker's) `crypto.subtle`.
fn subtle() -> SubtleCrypto {
    js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .expect("the global scope has `crypto`")
        .unchecked_into::<web_sys::Crypto>()
        .subtle()
}

fn usages(names: &[&str]) -> Array {
    names.iter().map(|n| JsValue::from_str(n)).collect()
}

/// Awaits a WebCrypto promise; `Err` when it rejects (e.g. a frame that is not authentic).
pub(crate) async fn settle(promise: Result<Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(promise?).await
}

/// The bytes of an `ArrayBuffer` that WebCrypto resolved to.
pub(crate) fn bytes(buffer: &JsValue) -> Vec<u8> {
    Uint8Array::new(buffer.unchecked_ref::<ArrayBuffer>()).to_vec()
}
