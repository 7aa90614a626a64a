//! A process's CPU time and resident memory, read from Linux's /proc.

use std::fmt;
use std::io;
use std::time::Instant;

/// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second on every
/// architecture it exposes to user space (`sysconf(_SC_CLK_TCK)`).
const TICKS_PER_SEC: f64 = 100.0;

/// Why /proc could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcError {
    /// The file could not be read (no such process, or not Linux).
    Read {
        /// The file.
        path: String,
        /// Why.
        error: io::Error,
    },
    /// The file did not have the expected fields.
    Parse {
        /// The file.
        path: String,
    },
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            Self::Parse { path } => write!(f, "unexpected contents in {path}"),
        }
    }
}

impl std::error::Error for ProcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { error, .. } => Some(error),
            Self::Parse { .. } => None,
        }
    }
}

/// Which process: a pid, or the load generator itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pid {
    /// Another process.
    Of(u32),
    /// This process.
    Myself,
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::Of(pid) => format!("/proc/{pid}"),
            Self::Myself => "/proc/self".to_owned(),
        }
    }
}

/// One look at a process.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// User plus system CPU time so far, in ticks.
    cpu_ticks: u64,
    /// Resident memory (VmRSS), KiB.
    pub rss_kib: u64,
}

impl Sample {
    /// Reads `pid`'s CPU time and resident memory now.
    pub fn take(pid: Pid) -> Result<Self, ProcError> {
        let dir = pid.dir();
        let stat_path = format!("{dir}/stat");
        let stat = read(&stat_path)?;
        let cpu_ticks = cpu_ticks(&stat).ok_or(ProcError::Parse { path: stat_path })?;
        let status_path = format!("{dir}/status");
        let status = read(&status_path)?;
        let rss_kib = rss_kib(&status).ok_or(ProcError::Parse { path: status_path })?;
        Ok(Self {
            at: Instant::now(),
            cpu_ticks,
            rss_kib,
        })
    }

    /// CPU used between `earlier` and this sample, in percent of one core.
    #[must_use]
    pub fn cpu_percent_since(&self, earlier: &Self) -> f64 {
        let secs = self.at.duration_since(earlier.at).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        let ticks = self.cpu_ticks.saturating_sub(earlier.cpu_ticks);
        let busy = ticks as f64 / TICKS_PER_SEC;
        100.0 * busy / secs
    }
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|error| ProcError::Read {
        path: path.to_owned(),
        error,
    })
}

/// utime + stime: fields 14 and 15 of /proc/PID/stat, counted after the `(comm)` field, which
/// may itself hold spaces and parentheses (so split after its last `)`).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After comm: field 3 (state) is the first; utime is field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_an_awkward_name() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1";
        assert_eq!(cpu_ticks(stat), Some(280));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t   5120 kB\nThreads: 3\n";
        assert_eq!(rss_kib(status), Some(5120));
        assert_eq!(rss_kib("Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let a = Sample::take(Pid::Myself).expect("own /proc entry");
        assert!(a.rss_kib > 0);
        let b = Sample::take(Pid::Myself).expect("own /proc entry");
        assert!(b.cpu_percent_since(&a) >= 0.0);
    }
}
