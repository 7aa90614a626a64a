//! The open-file limit: every connection is a file descriptor, and a soft limit of 1024 (the
//! usual default) is used up by a thousand idle connections. The hard limit is the one the
//! administrator chose; the soft one is only where a process starts.

use std::fmt;

/// The soft open-file limit before and after [`raise_to_hard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit the process started with (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub after: Option<u64>,
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        write!(f, "{} -> {}", show(self.before), show(self.after))
    }
}

/// Raises the soft open-file limit to the hard limit.
pub fn raise_to_hard() -> std::io::Result<Raised> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if before != limit.maximum {
        setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(Raised {
        before,
        after: getrlimit(Resource::Nofile).current,
    })
}
