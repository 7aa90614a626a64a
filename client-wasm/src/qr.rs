//! QR codes of the call link, as SVG, for joining from a phone.

use core::fmt::Write as _;

use qrcodegen::{QrCode, QrCodeEcc};

/// Why a QR code could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QrError {
    /// The text is longer than the largest QR code holds.
    TooLong,
}

impl core::fmt::Display for QrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the link is too long for a QR code")
    }
}

impl std::error::Error for QrError {}

/// An SVG image of `text` as a QR code (error correction M, 4-module quiet zone), one path.
pub fn svg(text: &str) -> Result<String, QrError> {
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| QrError::TooLong)?;
    let border = 4;
    let size = code.size() + 2 * border;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                // Writing to a String cannot fail.
                let _ = write!(path, "M{},{}h1v1h-1z", x + border, y + border);
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code of the call link\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_link_fits_and_is_an_svg() {
        let link = format!(
            "https://line.example/line.html?apikey={}&mobile=1#leaf_{}",
            "a".repeat(72),
            "B".repeat(43)
        );
        let svg = svg(&link).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains("M4,4h1v1h-1z"),
            "the finder pattern starts at the quiet zone"
        );
    }

    #[test]
    fn oversized_text_is_refused() {
        assert_eq!(svg(&"x".repeat(5000)), Err(QrError::TooLong));
    }
}
