//! The commands a running link takes, one per line on its standard input, and the `KEY=VALUE`
//! changes to a profile that both the commands and the binary's flags accept.

use std::fmt;
use std::time::Duration;

use crate::profile::{Profile, ProfileError};

/// One command to a running link.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// `profile NAME [KEY=VALUE ...]`: impair the packets arriving from now on this way.
    Profile {
        /// The name, as given.
        name: String,
        /// The named profile with the changes applied.
        profile: Profile,
    },
    /// `outage MS`: take the link down for this long, from now.
    Outage(Duration),
    /// `stats`: print what happened to the packets so far.
    Stats,
}

impl Command {
    /// Parses one line (surrounding white space ignored).
    pub fn parse(line: &str) -> Result<Self, CommandError> {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("profile") => {
                let name = words
                    .next()
                    .ok_or(CommandError::MissingArgument("profile"))?;
                let mut profile = Profile::named(name)?;
                for change in words {
                    apply(&mut profile, change)?;
                }
                Ok(Self::Profile {
                    name: name.to_owned(),
                    profile,
                })
            }
            Some("outage") => {
                let ms = words
                    .next()
                    .ok_or(CommandError::MissingArgument("outage"))?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| CommandError::BadNumber("outage", ms.to_owned()))?;
                end(words)?;
                Ok(Self::Outage(Duration::from_millis(ms)))
            }
            Some("stats") => {
                end(words)?;
                Ok(Self::Stats)
            }
            Some(other) => Err(CommandError::Unknown(other.to_owned())),
            None => Err(CommandError::Empty),
        }
    }
}

fn end<'a>(mut rest: impl Iterator<Item = &'a str>) -> Result<(), CommandError> {
    rest.next().map_or(Ok(()), |extra| {
        Err(CommandError::Unexpected(extra.to_owned()))
    })
}

/// Changes one parameter of `profile`, given as `KEY=VALUE`: `rtt_ms` (twice the one-way
/// delay), `jitter_ms`, `loss` and `reorder` (a fraction, or a percentage with `%`), `rate_mbit`
/// (0: no bottleneck), `queue_ms`. Milliseconds may have decimals.
pub fn apply(profile: &mut Profile, change: &str) -> Result<(), CommandError> {
    let (key, value) = change
        .split_once('=')
        .ok_or_else(|| CommandError::NotKeyValue(change.to_owned()))?;
    let number = |v: &str| -> Result<f64, CommandError> {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| CommandError::BadNumber("value", change.to_owned()))
    };
    let fraction = |v: &str| -> Result<f64, CommandError> {
        match v.strip_suffix('%') {
            Some(percent) => Ok(number(percent)? / 100.0),
            None => number(v),
        }
    };
    let ms = |v: &str| number(v).map(|x| Duration::from_secs_f64(x / 1000.0));
    match key {
        "rtt_ms" => profile.delay = ms(value)? / 2,
        "jitter_ms" => profile.jitter = ms(value)?,
        "loss" => profile.loss = fraction(value)?,
        "reorder" => profile.reorder = fraction(value)?,
        "rate_mbit" => {
            let mbit = number(value)?;
            profile.rate_bps = (mbit > 0.0).then(|| (mbit * 1e6).round() as u64);
        }
        "queue_ms" => profile.queue = ms(value)?,
        _ => return Err(CommandError::UnknownKey(key.to_owned())),
    }
    profile.validate()?;
    Ok(())
}

/// Why a command or a change was refused.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CommandError {
    /// An empty line.
    Empty,
    /// A first word that is no command.
    Unknown(String),
    /// The command needs an argument.
    MissingArgument(&'static str),
    /// A word after the command's last argument.
    Unexpected(String),
    /// Not a non-negative number where one belongs.
    BadNumber(&'static str, String),
    /// A change without `=`.
    NotKeyValue(String),
    /// A change of a parameter that does not exist.
    UnknownKey(String),
    /// The profile's name, or the profile after the change.
    Profile(ProfileError),
}

impl From<ProfileError> for CommandError {
    fn from(e: ProfileError) -> Self {
        Self::Profile(e)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an empty command"),
            Self::Unknown(word) => {
                write!(
                    f,
                    "no command {word:?} (there are profile, outage and stats)"
                )
            }
            Self::MissingArgument(command) => write!(f, "{command} needs an argument"),
            Self::Unexpected(word) => write!(f, "unexpected {word:?} after the command"),
            Self::BadNumber(what, text) => write!(f, "{what}: {text:?} is not a number >= 0"),
            Self::NotKeyValue(text) => write!(f, "{text:?} is not KEY=VALUE"),
            Self::UnknownKey(key) => write!(
                f,
                "no parameter {key:?} (there are rtt_ms, jitter_ms, loss, reorder, rate_mbit, queue_ms)"
            ),
            Self::Profile(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            Command::parse("  outage 2000 "),
            Ok(Command::Outage(Duration::from_secs(2)))
        );
        assert_eq!(Command::parse("stats"), Ok(Command::Stats));
        let Ok(Command::Profile { name, profile }) = Command::parse(
            "profile mobile loss=0 rate_mbit=2.5 rtt_ms=30 jitter_ms=0.5 reorder=2%",
        ) else {
            panic!("a profile command");
        };
        assert_eq!(name, "mobile");
        assert_eq!(
            profile,
            Profile {
                delay: Duration::from_millis(15),
                jitter: Duration::from_micros(500),
                loss: 0.0,
                reorder: 0.02,
                rate_bps: Some(2_500_000),
                ..Profile::MOBILE
            }
        );
        let Ok(Command::Profile { profile, .. }) = Command::parse("profile mobile rate_mbit=0")
        else {
            panic!("a profile command");
        };
        assert_eq!(profile.rate_bps, None);
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = |line: &str| Command::parse(line).unwrap_err().to_string();
        assert_eq!(err(""), "an empty command");
        assert_eq!(
            err("reboot"),
            "no command \"reboot\" (there are profile, outage and stats)"
        );
        assert_eq!(err("outage"), "outage needs an argument");
        assert_eq!(err("outage 2s"), "outage: \"2s\" is not a number >= 0");
        assert_eq!(err("stats now"), "unexpected \"now\" after the command");
        assert_eq!(err("profile"), "profile needs an argument");
        assert!(err("profile moon").starts_with("no profile is called \"moon\""));
        assert_eq!(err("profile lan loss"), "\"loss\" is not KEY=VALUE");
        assert!(err("profile lan mtu=9000").starts_with("no parameter \"mtu\""));
        assert_eq!(
            err("profile lan loss=-1"),
            "value: \"loss=-1\" is not a number >= 0"
        );
        assert_eq!(
            err("profile lan loss=150%"),
            "loss must be between 0 and 1, not 1.5"
        );
        assert_eq!(
            err("profile lan jitter_ms=NaN"),
            "value: \"jitter_ms=NaN\" is not a number >= 0"
        );
    }
}
