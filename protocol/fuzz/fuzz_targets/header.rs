//! Header parsing never panics, and whatever parses re-encodes to a header that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use line_protocol::header::Header;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = Header::parse(data) {
        assert!(len <= data.len() && len <= Header::MAX_LEN);
        let mut buf = [0u8; Header::MAX_LEN];
        let n = header.encode(&mut buf);
        assert!(n <= len, "the shortest form is never longer than what was parsed");
        assert_eq!(Header::parse(&buf[..n]), Ok((header, n)));
    }
});
