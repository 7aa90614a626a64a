//! The static client: `www/` embedded in the binary, or a folder during development.
//!
//! Every asset carries an ETag and `Cache-Control: no-cache`: wasm-pack's file names carry no
//! content hash, so browsers must revalidate, and a matching `If-None-Match` costs a 304 only.
//!
//! Compressible files (text, JavaScript, wasm) are compressed once per version of the file, with
//! brotli and gzip, and the compressed bytes are kept: a request never costs a compression (the
//! wasm bundle takes tens of milliseconds of CPU to gzip, which any visitor could make the server
//! do in a loop). A release build compresses every embedded file at start, in the background;
//! a request that arrives before its file is ready waits for that one compression, and requests
//! that arrive together share it. Each encoding has its own strong ETag, `Vary: Accept-Encoding`
//! says the answer depends on it, and `Range` is ignored (`Accept-Ranges: none`): every answer
//! is the whole representation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use axum::body::{Body, Bytes};
use axum::http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use tokio::sync::OnceCell;

use crate::config::AssetSource;

/// `www/` of the repository. A release build carries the files; a debug build reads them from
/// the source tree, so the folder (and `www/pkg`) may change without recompiling.
#[derive(RustEmbed)]
#[folder = "../www/"]
struct Embedded;

/// The page `/` serves.
pub const INDEX: &str = "line.html";

/// Brotli's highest quality: slow to compress, but that happens once per file.
const BROTLI_QUALITY: u32 = 11;
/// Brotli's window, 2^22 bytes: larger than any asset.
const BROTLI_WINDOW: u32 = 22;

/// One file as read from the source.
struct Asset {
    body: Cow<'static, [u8]>,
    /// A hash of the content, or mtime and length for folder files; without quotes.
    tag: String,
}

/// A content coding the server stores assets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Brotli => "br",
        }
    }

    fn etag_suffix(self) -> &'static str {
        match self {
            Self::Identity => "",
            Self::Gzip => "-gz",
            Self::Brotli => "-br",
        }
    }
}

/// One version of one file, with its compressed forms once made.
struct Prepared {
    tag: String,
    identity: Bytes,
    /// `None` inside: compressing did not make it smaller.
    gzip: OnceCell<Option<Bytes>>,
    brotli: OnceCell<Option<Bytes>>,
}

/// The static client, with every compressed form it has made so far.
pub struct Assets {
    source: AssetSource,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    compressions: AtomicU64,
}

impl std::fmt::Debug for Assets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assets")
            .field("source", &self.source)
            .field("compressions", &self.compressions())
            .finish_non_exhaustive()
    }
}

impl Assets {
    /// The assets of `source`; nothing is read or compressed yet.
    #[must_use]
    pub fn new(source: AssetSource) -> Arc<Self> {
        Arc::new(Self {
            source,
            prepared: Mutex::new(HashMap::new()),
            compressions: AtomicU64::new(0),
        })
    }

    /// How many times a file has been compressed since start (once per file, version and
    /// encoding, whatever the number of requests).
    #[must_use]
    pub fn compressions(&self) -> u64 {
        self.compressions.load(Ordering::Relaxed)
    }

    /// Compresses every embedded file now, so no visitor waits for it.
    pub async fn warm_up(self: &Arc<Self>) {
        if self.source != AssetSource::Embedded {
            return;
        }
        for path in Embedded::iter() {
            let Some(prepared) = self.prepare(&path) else {
                continue;
            };
            if is_compressible(&path) {
                for encoding in [Encoding::Brotli, Encoding::Gzip] {
                    let _ = self.variant(&prepared, encoding).await;
                }
            }
        }
    }

    /// The response for `path`, honouring `Accept-Encoding` and `If-None-Match`.
    pub async fn respond(self: &Arc<Self>, path: &str, request: &HeaderMap) -> Response {
        let path = path.trim_start_matches('/');
        let path = if path.is_empty() { INDEX } else { path };
        let Some(prepared) = self.prepare(path) else {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        };
        let compressible = is_compressible(path);
        let mut encoding = Encoding::Identity;
        let mut body = prepared.identity.clone();
        if compressible {
            for wanted in preferred_encodings(request) {
                if let Some(compressed) = self.variant(&prepared, wanted).await {
                    encoding = wanted;
                    body = compressed;
                    break;
                }
            }
        }
        let etag = format!("\"{}{}\"", prepared.tag, encoding.etag_suffix());
        let mut headers = HeaderMap::new();
        headers.insert(
            ETAG,
            HeaderValue::from_str(&etag).expect("an etag is hex in quotes"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("none"));
        if compressible {
            headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        }
        if is_fresh(request, &etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(CONTENT_TYPE, content_type(path));
        if encoding != Encoding::Identity {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
        }
        (headers, Body::from(body)).into_response()
    }

    /// The current version of `path`, from the cache when its content has not changed.
    fn prepare(&self, path: &str) -> Option<Arc<Prepared>> {
        let asset = find(&self.source, path)?;
        let mut prepared = self.prepared.lock().expect("asset lock is never poisoned");
        if let Some(known) = prepared.get(path).filter(|p| p.tag == asset.tag) {
            return Some(Arc::clone(known));
        }
        let fresh = Arc::new(Prepared {
            identity: match asset.body {
                Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                Cow::Owned(bytes) => Bytes::from(bytes),
            },
            tag: asset.tag,
            gzip: OnceCell::new(),
            brotli: OnceCell::new(),
        });
        prepared.insert(path.to_owned(), Arc::clone(&fresh));
        Some(fresh)
    }

    /// The compressed form of `prepared`, made on a blocking thread the first time it is asked
    /// for; `None` when it would not be smaller.
    async fn variant(&self, prepared: &Arc<Prepared>, encoding: Encoding) -> Option<Bytes> {
        let cell = match encoding {
            Encoding::Identity => return Some(prepared.identity.clone()),
            Encoding::Gzip => &prepared.gzip,
            Encoding::Brotli => &prepared.brotli,
        };
        cell.get_or_init(|| async {
            self.compressions.fetch_add(1, Ordering::Relaxed);
            let input = prepared.identity.clone();
            tokio::task::spawn_blocking(move || compress(&input, encoding))
                .await
                .ok()
                .flatten()
        })
        .await
        .clone()
    }
}

/// `input` in `encoding`, when that is smaller.
fn compress(input: &[u8], encoding: Encoding) -> Option<Bytes> {
    let out = match encoding {
        Encoding::Identity => return None,
        Encoding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(input).ok()?;
            encoder.finish().ok()?
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            let mut encoder =
                brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, BROTLI_WINDOW);
            encoder.write_all(input).ok()?;
            drop(encoder);
            out
        }
    };
    (out.len() < input.len()).then(|| Bytes::from(out))
}

/// The encodings a request accepts, best first: brotli before gzip at equal weight, none with
/// `q=0`; a `*` stands for those not named.
fn preferred_encodings(request: &HeaderMap) -> Vec<Encoding> {
    let mut weights: [Option<f32>; 2] = [None, None];
    let mut star = None;
    for value in request.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match coding.as_str() {
                "br" => weights[0] = Some(q),
                "gzip" | "x-gzip" => weights[1] = Some(q),
                "*" => star = Some(q),
                _ => {}
            }
        }
    }
    let mut ranked: Vec<(f32, Encoding)> = [Encoding::Brotli, Encoding::Gzip]
        .into_iter()
        .zip(weights)
        .filter_map(|(encoding, q)| q.or(star).map(|q| (q, encoding)))
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: brotli stays first when the weights are equal.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.into_iter().map(|(_, encoding)| encoding).collect()
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for it).
fn is_fresh(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|tags| tags.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
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
            let tag = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
            Some(Asset {
                body: file.data,
                tag,
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
                tag: format!("{mtime:x}-{:x}", body.len()),
                body: Cow::Owned(body),
            })
        }
    }
}

/// Text, JavaScript, JSON, SVG and wasm shrink; images and fonts are compressed already.
fn is_compressible(path: &str) -> bool {
    if path.ends_with(".wasm") {
        return true;
    }
    let guess = mime_guess::from_path(path).first_or_octet_stream();
    guess.type_() == mime_guess::mime::TEXT
        || guess.subtype() == mime_guess::mime::JAVASCRIPT
        || guess.subtype() == mime_guess::mime::JSON
        || guess.subtype() == mime_guess::mime::SVG
        || guess.subtype() == mime_guess::mime::XML
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).expect("test header"));
        }
        map
    }

    #[test]
    fn accept_encoding_is_ranked_by_weight() {
        let ranked = |v: &str| preferred_encodings(&headers(&[("accept-encoding", v)]));
        use Encoding::{Brotli, Gzip};
        assert_eq!(ranked("gzip, deflate, br, zstd"), vec![Brotli, Gzip]);
        assert_eq!(ranked("gzip"), vec![Gzip]);
        assert_eq!(ranked("br;q=0.5, gzip;q=1.0"), vec![Gzip, Brotli]);
        assert_eq!(ranked("br;q=0, gzip"), vec![Gzip]);
        assert_eq!(ranked("*"), vec![Brotli, Gzip]);
        assert_eq!(ranked("*;q=0.1, gzip;q=0"), vec![Brotli]);
        assert_eq!(ranked("identity"), Vec::<Encoding>::new());
        assert!(preferred_encodings(&HeaderMap::new()).is_empty());
    }

    #[tokio::test]
    async fn each_file_version_is_compressed_once_per_encoding() {
        let dir = std::env::temp_dir().join(format!("line-assets-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("app.js");
        std::fs::write(&file, "export const x = 1;\n".repeat(500)).expect("write");
        let assets = Assets::new(AssetSource::Dir(dir.clone()));
        let br = headers(&[("accept-encoding", "gzip, br")]);
        let gz = headers(&[("accept-encoding", "gzip")]);
        let mut bodies = Vec::new();
        for i in 0..20 {
            let response = assets
                .respond("/app.js", if i % 2 == 0 { &br } else { &gz })
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            bodies.push(body);
        }
        assert_eq!(assets.compressions(), 2, "one brotli and one gzip");
        assert!(bodies.iter().step_by(2).all(|b| *b == bodies[0]));
        assert!(bodies.iter().skip(1).step_by(2).all(|b| *b == bodies[1]));
        // A new version of the file is compressed again, once.
        std::fs::write(&file, "export const y = 2;\n".repeat(400)).expect("write");
        for _ in 0..5 {
            let _ = assets.respond("/app.js", &br).await;
        }
        assert_eq!(assets.compressions(), 3);
        let _ = std::fs::remove_dir_all(dir);
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
