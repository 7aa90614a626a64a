//! Keeps secrets out of logs: every URI the server logs goes through [`redact_uri`]. The secrets
//! are the API key, a line's join token and a participant id (with the last two someone could
//! take a slot on a line).

use std::borrow::Cow;

/// What replaces a secret query value in logs.
pub const REDACTED: &str = "<redacted>";

/// The query parameters whose values never reach a log line.
const SECRET_PARAMS: &[&str] = &["apikey", "join", "participant"];

/// `uri` with the value of every `apikey=`, `join=` and `participant=` query parameter replaced
/// by [`REDACTED`].
///
/// Works on the raw text, so a key a client mistyped, percent-encoded or repeated is hidden too;
/// the parameter name is matched case-insensitively.
#[must_use]
pub fn redact_uri(uri: &str) -> Cow<'_, str> {
    let Some(query_start) = uri.find('?') else {
        return Cow::Borrowed(uri);
    };
    let (path, query) = uri.split_at(query_start + 1);
    let (query, fragment) = match query.find('#') {
        Some(i) => query.split_at(i),
        None => (query, ""),
    };
    let mut changed = false;
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            if SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                changed = true;
                Cow::Owned(format!("{name}={REDACTED}"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    if !changed {
        return Cow::Borrowed(uri);
    }
    Cow::Owned(format!("{path}{}{fragment}", pairs.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apikey_values_are_hidden() {
        assert_eq!(
            redact_uri("/ws?apikey=SECRET&line=abc"),
            "/ws?apikey=<redacted>&line=abc"
        );
        assert_eq!(
            redact_uri("/line.html?line=x&APIKEY=a%20b&apikey=again#frag"),
            "/line.html?line=x&APIKEY=<redacted>&apikey=<redacted>#frag"
        );
        assert_eq!(redact_uri("/ws?apikey"), "/ws?apikey=<redacted>");
    }

    #[test]
    fn join_tokens_and_participant_ids_are_hidden() {
        assert_eq!(
            redact_uri("/ws?apikey=K&line=L&join=TOKEN&participant=ME"),
            "/ws?apikey=<redacted>&line=L&join=<redacted>&participant=<redacted>"
        );
        assert_eq!(redact_uri("/ws?JOIN=x"), "/ws?JOIN=<redacted>");
        assert_eq!(redact_uri("/ws?joined=x"), "/ws?joined=x");
    }

    #[test]
    fn other_uris_are_untouched() {
        assert_eq!(redact_uri("/healthz"), "/healthz");
        assert_eq!(
            redact_uri("/ws?line=abc&keyapikey=1"),
            "/ws?line=abc&keyapikey=1"
        );
    }
}
