//! Payload decoding is total, and what decodes re-encodes to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use line_protocol::payload::Payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = Payload::decode(data) {
        let mut again = Vec::new();
        payload.encode(&mut again);
        assert_eq!(again, data);
        assert_eq!(payload.encoded_len(), data.len());
    }
});
