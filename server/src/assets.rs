//! The static client: `www/` embedded in the binary, or a folder during development.
//!
//! Every asset carries an ETag and `Cache-Control: no-cache`: wasm-pack's file names carry no
//! content hash, so browsers must revalidate, and a matching `If-None-Match` costs a 304 only.

use std::borrow::Cow;
use std::path::{Component, Path};
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::config::AssetSource;

/// `www/` of the repository. A release build carries the files; a debug build reads them from
/// the source tree, so the folder (and `www/pkg`) may change without recompiling.
#[derive(RustEmbed)]
#[folder = "../www/"]
struct Embedded;

/// The page `/` serves.
pub const INDEX: &str = "line.html";

/// One file ready to send.
struct Asset {
    body: Cow<'static, [u8]>,
    etag: String,
}

/// Looks up `path` (without leading slash) in `source`.
fn find(source: &AssetSource, path: &str) -> Option<Asset> {
    if !is_safe(path) {
        return None;
    }
    match source {
        AssetSource::Embedded => {
            let file = Embedded::get(path)?;
            let hash = file.metadata.sha256_hash();
            let etag = format!(
                "\"{}\"",
                hash[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            Some(Asset {
                body: file.data,
                etag,
            })
        }
        AssetSource::Dir(root) => {
            let full = root.join(path);
            let meta = std::fs::metadata(&full).ok()?;
            if !meta.is_file() {
                return None;
            }
            let body = std::fs::read(&full).ok()?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Some(Asset {
                etag: format!("\"{mtime:x}-{:x}\"", body.len()),
                body: Cow::Owned(body),
            })
        }
    }
}

/// Only plain relative paths below the root: no `..`, no absolute paths, no odd characters.
fn is_safe(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The Content-Type for a file name.
fn content_type(path: &str) -> HeaderValue {
    let mime = if path.ends_with(".wasm") {
        "application/wasm".to_owned()
    } else {
        let guess = mime_guess::from_path(path).first_or_octet_stream();
        if guess.type_() == mime_guess::mime::TEXT
            || guess.subtype() == mime_guess::mime::JAVASCRIPT
            || guess.subtype() == mime_guess::mime::JSON
        {
            format!("{guess}; charset=utf-8")
        } else {
            guess.to_string()
        }
    };
    HeaderValue::from_str(&mime).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// The response for `path`, honouring `If-None-Match`.
pub fn respond(source: &AssetSource, path: &str, request: &HeaderMap) -> Response {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { INDEX } else { path };
    let Some(asset) = find(source, path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = HeaderValue::from_str(&asset.etag).expect("an etag is hex in quotes");
    let cache = HeaderValue::from_static("no-cache");
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == asset.etag || t == "*")
        });
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            [(ETAG, etag), (CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (CONTENT_TYPE, content_type(path)),
            (ETAG, etag),
            (CACHE_CONTROL, cache),
        ],
        Body::from(asset.body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(is_safe("line.html"));
        assert!(is_safe("pkg/line_client_bg.wasm"));
        assert!(!is_safe("../Cargo.toml"));
        assert!(!is_safe("/etc/passwd"));
        assert!(!is_safe("pkg/../../x"));
        assert!(!is_safe("a\\b"));
        assert!(!is_safe(""));
    }

    #[test]
    fn mime_types() {
        assert_eq!(content_type("x.wasm"), "application/wasm");
        assert_eq!(content_type("line.html"), "text/html; charset=utf-8");
        assert!(
            content_type("line.js")
                .to_str()
                .expect("ascii")
                .contains("javascript")
        );
    }
}
