//! Page helpers exported to JavaScript: reading the call link, making leaf keys, QR codes.

use js_sys::{JsString, Reflect};
use line_protocol::leaf::LeafKey;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::link::{Fragment, Link, LinkError};
use crate::messages::ErrorCode;
use crate::qr;

#[wasm_bindgen(typescript_custom_section)]
const LINK_INFO_TS: &str = r#"
/** What `readLink()` found in the page's address. */
export interface LinkInfo {
  /** `?apikey=`, or null when the link has none. */
  apiKey: string | null;
  /** Wire sample rate, Hz (200000 by default, 48000 with `&mobile=1`, or `&rate=`). */
  rate: number;
  /** Frame duration, ms: 2.5, 5, 10 or 20. */
  frameMs: number;
  /** `&studio=1`: microphone processing off. */
  studio: boolean;
  /** `&mobile=1`. */
  mobile: boolean;
  /** `&transport=`: "websocket" never tries WebTransport; "auto" (the default) prefers it. */
  transport: "auto" | "websocket";
  /** `&playout=`: where the jitter buffer runs, "worklet" (the audio thread, the default) or "worker". */
  playout: "worker" | "worklet";
  /** `&coding=`: "lossless" (the default) codes audio for a peer that reads it; "pcm" never does. */
  coding: "lossless" | "pcm";
  /** The leaf key (`leaf_...`), or null when the link has none. */
  leaf: string | null;
  /** Whether this page just generated the leaf (the link came with `#generate_leaf`). */
  generated: boolean;
  /** The link to share, or null without a leaf. */
  shareUrl: string | null;
  /** The same link at 48 kHz for phones, or null without a leaf. */
  mobileShareUrl: string | null;
  /** The line id the server will see (22 characters), or null without a leaf. */
  lineId: string | null;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// The result of [`read_link`], typed for TypeScript.
    #[wasm_bindgen(typescript_type = "LinkInfo")]
    pub type LinkInfo;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkInfoData {
    api_key: Option<String>,
    rate: u32,
    frame_ms: f64,
    studio: bool,
    mobile: bool,
    transport: &'static str,
    playout: &'static str,
    coding: &'static str,
    leaf: Option<String>,
    generated: bool,
    share_url: Option<String>,
    mobile_share_url: Option<String>,
    line_id: Option<String>,
}

/// A JavaScript `Error` with a stable `code` property (see [`ErrorCode`]).
pub(crate) fn js_error(code: ErrorCode, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    let code = serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    // Setting a property on a fresh Error cannot fail.
    let _ = Reflect::set(&error, &"code".into(), &JsString::from(code));
    error.into()
}

fn link_error(error: &LinkError) -> JsValue {
    js_error(ErrorCode::BadLink, &error.to_string())
}

/// Draws a new leaf key from `crypto.getRandomValues`.
fn random_leaf() -> LeafKey {
    let mut bytes = [0u8; LeafKey::LEN];
    getrandom::fill(&mut bytes).expect("crypto.getRandomValues is available");
    LeafKey::from_random(bytes)
}

/// A new random leaf key, as text (`leaf_` + 43 characters).
#[wasm_bindgen(js_name = generateLeaf)]
#[must_use]
pub fn generate_leaf() -> String {
    random_leaf().to_string()
}

/// The line id (22 characters) of a leaf key given as text; throws `{code: "bad-leaf"}`.
#[wasm_bindgen(js_name = lineIdOf)]
pub fn line_id_of(leaf: &str) -> Result<String, JsValue> {
    let leaf: LeafKey = leaf.parse().map_err(|e| {
        js_error(
            ErrorCode::BadLeaf,
            &format!("the leaf key in the link is malformed: {e}"),
        )
    })?;
    Ok(leaf.line_id().to_string())
}

/// An SVG image of `text` as a QR code.
#[wasm_bindgen(js_name = qrSvg)]
pub fn qr_svg(text: &str) -> Result<String, JsValue> {
    qr::svg(text).map_err(|e| js_error(ErrorCode::BadLink, &e.to_string()))
}

/// Reads the page's own link. `#generate_leaf` is replaced by a fresh `#leaf_...` through
/// `history.replaceState` (no reload, and the fragment never reaches the server). Throws an
/// `Error` with `code` `"bad-link"` or `"bad-leaf"` for a link that cannot be used.
#[wasm_bindgen(js_name = readLink)]
pub fn read_link() -> Result<LinkInfo, JsValue> {
    let window = web_sys::window().ok_or_else(|| js_error(ErrorCode::Internal, "no window"))?;
    let href = window.location().href()?;
    let link = Link::parse(&href).map_err(|e| link_error(&e))?;
    let (leaf, generated) = match &link.fragment {
        Fragment::Missing => (None, false),
        Fragment::Generate => {
            let leaf = random_leaf();
            window.history()?.replace_state_with_url(
                &JsValue::NULL,
                "",
                Some(&link.share_url(&leaf.to_string())),
            )?;
            (Some(leaf), true)
        }
        Fragment::Leaf(text) => {
            let leaf: LeafKey = text.parse().map_err(|e| {
                js_error(
                    ErrorCode::BadLeaf,
                    &format!("the leaf key in the link is malformed: {e}"),
                )
            })?;
            (Some(leaf), false)
        }
    };
    let text = leaf.as_ref().map(ToString::to_string);
    let info = LinkInfoData {
        api_key: link.api_key.clone(),
        rate: link.rate,
        frame_ms: link.frame.millis(),
        studio: link.studio,
        mobile: link.mobile,
        transport: if link.websocket_only {
            "websocket"
        } else {
            "auto"
        },
        playout: link.playout.name(),
        coding: link.coding.name(),
        share_url: text.as_deref().map(|t| link.share_url(t)),
        mobile_share_url: text.as_deref().map(|t| link.mobile_share_url(t)),
        line_id: leaf.as_ref().map(|l| l.line_id().to_string()),
        leaf: text,
        generated,
    };
    let json = serde_json::to_string(&info).expect("link info always serializes");
    Ok(js_sys::JSON::parse(&json)?.unchecked_into())
}
