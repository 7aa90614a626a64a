//! line's browser client: the call engine, compiled to WebAssembly and driven by `www/line.html`.

use wasm_bindgen::prelude::wasm_bindgen;

/// The client's version, shown on the page so a person can tell what runs.
#[wasm_bindgen]
#[must_use]
pub fn version() -> String {
    format!("line {}", line_protocol::VERSION)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_protocol_version() {
        assert_eq!(
            super::version(),
            format!("line {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
