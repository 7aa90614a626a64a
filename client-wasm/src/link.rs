//! The call link: `line.html?apikey=KEY&mobile=1&rate=N&frame=MS&studio=1&transport=websocket#leaf_...`.
//!
//! Plain Rust, so every rule is tested natively. The query carries what the server may see (the API
//! key and audio settings); the fragment carries the leaf key, which browsers never send to a server.

use core::fmt;

use crate::messages::{Coding, PlayoutPath};

pub use line_protocol::audio::{DEFAULT_RATE, FrameDuration, MAX_RATE, MIN_RATE, MOBILE_RATE};
/// The fragment that asks the page to make a new leaf key.
pub const GENERATE_FRAGMENT: &str = "generate_leaf";

/// What the link's fragment asks for.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fragment {
    /// No fragment, or an empty one: the page offers to generate a leaf.
    Missing,
    /// `#generate_leaf`.
    Generate,
    /// `#leaf_...`: the text, checked by [`line_protocol::leaf::LeafKey`]'s parser before use.
    Leaf(String),
}

impl fmt::Debug for Fragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The leaf is a secret: never print it.
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::Generate => f.write_str("Generate"),
            Self::Leaf(_) => f.write_str("Leaf(..)"),
        }
    }
}

/// A parsed call link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The page's address without query and fragment (`https://host/line.html`).
    pub base: String,
    /// The query string as given, without `?` (kept so shared links carry the same settings).
    pub query: String,
    /// `?apikey=`, when present and non-empty.
    pub api_key: Option<String>,
    /// The wire sample rate in Hz.
    pub rate: u32,
    /// The frame duration.
    pub frame: FrameDuration,
    /// `&studio=1`: microphone processing off.
    pub studio: bool,
    /// `&mobile=1`.
    pub mobile: bool,
    /// `&transport=websocket`: never try WebTransport (`auto`, the default, prefers it).
    pub websocket_only: bool,
    /// `&playout=worklet|worker`: where the jitter buffer runs.
    pub playout: PlayoutPath,
    /// `&coding=lossless|pcm`: how this side writes its audio frames.
    pub coding: Coding,
    /// What the fragment asks for.
    pub fragment: Fragment,
}

/// Why a link cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// `&rate=` is not a whole number.
    RateNotANumber,
    /// `&rate=` is outside 8000..=384000.
    RateOutOfRange {
        /// The rate asked for.
        rate: u64,
    },
    /// `&frame=` is not 2.5, 5, 10 or 20.
    Frame,
    /// `&transport=` is neither `auto` nor `websocket`.
    Transport,
    /// `&playout=` is neither `worker` nor `worklet`.
    Playout,
    /// `&coding=` is neither `lossless` nor `pcm`.
    Coding,
    /// A flag (`mobile`, `studio`) that is neither `0` nor `1`.
    Flag {
        /// The parameter's name.
        name: &'static str,
    },
    /// The fragment is neither `#generate_leaf` nor `#leaf_...`.
    Fragment,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateNotANumber => f.write_str("the link's rate is not a whole number of hertz"),
            Self::RateOutOfRange { rate } => write!(
                f,
                "the link asks for {rate} Hz; line supports {MIN_RATE} to {MAX_RATE} Hz"
            ),
            Self::Frame => f.write_str("the link's frame length must be 2.5, 5, 10 or 20 ms"),
            Self::Transport => f.write_str("the link's transport must be auto or websocket"),
            Self::Playout => f.write_str("the link's playout must be worker or worklet"),
            Self::Coding => f.write_str("the link's coding must be lossless or pcm"),
            Self::Flag { name } => write!(f, "the link's {name} setting must be 0 or 1"),
            Self::Fragment => f.write_str(
                "the part of the link after # is not a leaf key; ask for the link again",
            ),
        }
    }
}

impl std::error::Error for LinkError {}

impl Link {
    /// Parses a page address (`location.href`).
    pub fn parse(href: &str) -> Result<Self, LinkError> {
        let (before_fragment, fragment) = match href.split_once('#') {
            Some((head, fragment)) => (head, fragment),
            None => (href, ""),
        };
        let (base, query) = before_fragment
            .split_once('?')
            .unwrap_or((before_fragment, ""));
        let mut link = Self {
            base: base.to_owned(),
            query: query.to_owned(),
            api_key: None,
            rate: DEFAULT_RATE,
            frame: FrameDuration::DEFAULT,
            studio: false,
            mobile: false,
            websocket_only: false,
            playout: PlayoutPath::default(),
            coding: Coding::default(),
            fragment: parse_fragment(fragment)?,
        };
        let mut rate = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "apikey" if !value.is_empty() => link.api_key = Some(value.to_owned()),
                "mobile" => link.mobile = parse_flag("mobile", value)?,
                "studio" => link.studio = parse_flag("studio", value)?,
                "rate" => rate = Some(parse_rate(value)?),
                "frame" => {
                    link.frame = value
                        .parse::<f64>()
                        .ok()
                        .and_then(FrameDuration::from_millis)
                        .ok_or(LinkError::Frame)?;
                }
                "transport" => {
                    link.websocket_only = match value {
                        "auto" | "" => false,
                        "websocket" => true,
                        _ => return Err(LinkError::Transport),
                    };
                }
                "playout" => {
                    link.playout = PlayoutPath::from_name(value).ok_or(LinkError::Playout)?;
                }
                "coding" => {
                    link.coding = Coding::from_name(value).ok_or(LinkError::Coding)?;
                }
                // Unknown parameters are left for whoever added them.
                _ => {}
            }
        }
        link.rate = match (rate, link.mobile) {
            (Some(rate), _) => rate,
            (None, true) => MOBILE_RATE,
            (None, false) => DEFAULT_RATE,
        };
        Ok(link)
    }

    /// The link to share for `leaf_text` (`leaf_...`), with this link's query.
    #[must_use]
    pub fn share_url(&self, leaf_text: &str) -> String {
        if self.query.is_empty() {
            format!("{}#{leaf_text}", self.base)
        } else {
            format!("{}?{}#{leaf_text}", self.base, self.query)
        }
    }

    /// The same link for phones: 48 kHz (`&mobile=1`, without any `&rate=`).
    #[must_use]
    pub fn mobile_share_url(&self, leaf_text: &str) -> String {
        let mut query: Vec<&str> = self
            .query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("mobile=") && !p.starts_with("rate="))
            .collect();
        query.push("mobile=1");
        format!("{}?{}#{leaf_text}", self.base, query.join("&"))
    }
}

fn parse_fragment(fragment: &str) -> Result<Fragment, LinkError> {
    if fragment.is_empty() {
        Ok(Fragment::Missing)
    } else if fragment == GENERATE_FRAGMENT {
        Ok(Fragment::Generate)
    } else if fragment.starts_with("leaf_") {
        Ok(Fragment::Leaf(fragment.to_owned()))
    } else {
        Err(LinkError::Fragment)
    }
}

fn parse_flag(name: &'static str, value: &str) -> Result<bool, LinkError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(LinkError::Flag { name }),
    }
}

fn parse_rate(value: &str) -> Result<u32, LinkError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LinkError::RateNotANumber);
    }
    let rate: u64 = value.parse().map_err(|_| LinkError::RateOutOfRange {
        rate: u64::MAX, // more digits than a u64 holds
    })?;
    match u32::try_from(rate) {
        Ok(rate) if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(LinkError::RateOutOfRange { rate }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "https://line.example/line.html";

    #[test]
    fn defaults_are_200_khz_and_10_ms() {
        let link = Link::parse(&format!("{PAGE}?apikey=abc#generate_leaf")).unwrap();
        assert_eq!(link.base, PAGE);
        assert_eq!(link.api_key.as_deref(), Some("abc"));
        assert_eq!(link.rate, 200_000);
        assert_eq!(link.frame, FrameDuration::Ms10);
        assert_eq!(link.frame.samples(link.rate), 2000);
        assert!(!link.studio && !link.mobile && !link.websocket_only);
        assert_eq!(link.fragment, Fragment::Generate);
    }

    #[test]
    fn playout_names_where_the_jitter_buffer_runs() {
        let parse = |q: &str| Link::parse(&format!("{PAGE}?apikey=k&{q}"));
        assert_eq!(parse("").unwrap().playout, PlayoutPath::Worklet);
        assert_eq!(
            parse("playout=worklet").unwrap().playout,
            PlayoutPath::Worklet
        );
        assert_eq!(
            parse("playout=worker").unwrap().playout,
            PlayoutPath::Worker
        );
        assert_eq!(parse("playout=gpu"), Err(LinkError::Playout));
    }

    #[test]
    fn coding_names_how_audio_frames_are_written() {
        let parse = |q: &str| Link::parse(&format!("{PAGE}?apikey=k&{q}"));
        assert_eq!(parse("").unwrap().coding, Coding::Lossless);
        assert_eq!(parse("coding=lossless").unwrap().coding, Coding::Lossless);
        assert_eq!(parse("coding=pcm").unwrap().coding, Coding::Pcm);
        assert_eq!(parse("coding=flac"), Err(LinkError::Coding));
    }

    #[test]
    fn transport_websocket_turns_webtransport_off() {
        let parse = |q: &str| Link::parse(&format!("{PAGE}?apikey=k&{q}"));
        assert!(parse("transport=websocket").unwrap().websocket_only);
        assert!(!parse("transport=auto").unwrap().websocket_only);
        assert_eq!(parse("transport=udp"), Err(LinkError::Transport));
        assert_eq!(
            LinkError::Transport.to_string(),
            "the link's transport must be auto or websocket"
        );
    }

    #[test]
    fn mobile_is_48_khz_and_rate_overrides_it() {
        let link = Link::parse(&format!("{PAGE}?apikey=k&mobile=1")).unwrap();
        assert_eq!((link.rate, link.mobile), (48_000, true));
        assert_eq!(link.fragment, Fragment::Missing);
        let link = Link::parse(&format!("{PAGE}?mobile=1&rate=96000&frame=2.5&studio=1")).unwrap();
        assert_eq!(link.rate, 96_000);
        assert_eq!(link.frame, FrameDuration::Ms2_5);
        assert_eq!(link.frame.samples(96_000), 240);
        assert!(link.studio);
        assert_eq!(link.api_key, None);
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let parse = |q: &str| Link::parse(&format!("{PAGE}?{q}"));
        assert_eq!(parse("rate=abc"), Err(LinkError::RateNotANumber));
        assert_eq!(parse("rate="), Err(LinkError::RateNotANumber));
        assert_eq!(parse("rate=-8000"), Err(LinkError::RateNotANumber));
        assert_eq!(
            parse("rate=7999"),
            Err(LinkError::RateOutOfRange { rate: 7999 })
        );
        assert_eq!(
            parse("rate=384001"),
            Err(LinkError::RateOutOfRange { rate: 384_001 })
        );
        assert!(matches!(
            parse("rate=99999999999999999999999"),
            Err(LinkError::RateOutOfRange { .. })
        ));
        assert_eq!(parse("rate=8000").map(|l| l.rate), Ok(8000));
        assert_eq!(parse("rate=384000").map(|l| l.rate), Ok(384_000));
        assert_eq!(parse("frame=7"), Err(LinkError::Frame));
        assert_eq!(parse("frame=ten"), Err(LinkError::Frame));
        assert_eq!(parse("frame=20").map(|l| l.frame), Ok(FrameDuration::Ms20));
        assert_eq!(parse("studio=yes"), Err(LinkError::Flag { name: "studio" }));
        assert_eq!(parse("mobile=2"), Err(LinkError::Flag { name: "mobile" }));
        assert_eq!(
            Link::parse(&format!("{PAGE}#something")),
            Err(LinkError::Fragment)
        );
    }

    #[test]
    fn leaf_fragments_are_kept_for_the_key_parser() {
        let link = Link::parse(&format!("{PAGE}?apikey=k#leaf_abc")).unwrap();
        assert_eq!(link.fragment, Fragment::Leaf("leaf_abc".into()));
        assert_eq!(format!("{:?}", link.fragment), "Leaf(..)");
    }

    #[test]
    fn share_links_keep_the_query_and_mobile_links_drop_the_rate() {
        let link = Link::parse(&format!(
            "{PAGE}?apikey=k&rate=96000&studio=1#generate_leaf"
        ))
        .unwrap();
        assert_eq!(
            link.share_url("leaf_X"),
            format!("{PAGE}?apikey=k&rate=96000&studio=1#leaf_X")
        );
        assert_eq!(
            link.mobile_share_url("leaf_X"),
            format!("{PAGE}?apikey=k&studio=1&mobile=1#leaf_X")
        );
        let bare = Link::parse(PAGE).unwrap();
        assert_eq!(bare.share_url("leaf_Y"), format!("{PAGE}#leaf_Y"));
    }
}
