//! `[source]`: the log sshwatch follows, where it keeps its checkpoints, and how it reads.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::spelling::api_enum;
use crate::config::{ConfigError, ErrorSite};

/// Where the lines come from.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The file to follow (`/var/log/secure`).
    pub file_path: PathBuf,
    /// Checkpoints live here.
    pub state_dir: PathBuf,
    /// `Some(true)`: read the journal; `Some(false)`: the file; `None`: the file,
    /// or the journal when the file does not exist and the journal does.
    pub journal: Option<bool>,
    /// Count `message repeated N times: [ MSG]` as N copies of MSG.
    pub expand_repeated: bool,
    /// Where to start in a file seen for the first time (no checkpoint).
    pub start_position: StartPosition,
    /// The safety-net stat of the file, besides inotify.
    pub poll_interval: Duration,
}

api_enum! {
    /// Where to start reading a file that has no checkpoint yet.
    pub enum StartPosition {
        /// Ship the file's existing content too.
        Beginning = "beginning",
        /// Only what is appended from now on (old content: `sshwatch replay`).
        End = "end",
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    file_path: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    journal: Option<bool>,
    #[serde(default)]
    expand_repeated: bool,
    start_position: Option<StartPosition>,
    poll_interval_seconds: Option<Spanned<f64>>,
}

fn non_empty_path(
    v: Option<Spanned<String>>,
    default: &str,
    key: &str,
    site: &ErrorSite<'_>,
) -> Result<PathBuf, ConfigError> {
    match v {
        None => Ok(PathBuf::from(default)),
        Some(s) if s.get_ref().trim().is_empty() => {
            Err(site.error(key, Some(s.span()), "must not be empty"))
        }
        Some(s) => Ok(PathBuf::from(s.into_inner())),
    }
}

pub(crate) fn check_source(
    raw: RawSource,
    site: &ErrorSite<'_>,
) -> Result<SourceConfig, ConfigError> {
    let poll_interval = match raw.poll_interval_seconds {
        None => Duration::from_secs(1),
        Some(s) => {
            let v = *s.get_ref();
            if !(0.05..=60.0).contains(&v) {
                return Err(site.error(
                    "source.poll_interval_seconds",
                    Some(s.span()),
                    "must be between 0.05 and 60",
                ));
            }
            Duration::from_secs_f64(v)
        }
    };
    Ok(SourceConfig {
        file_path: non_empty_path(raw.file_path, "/var/log/secure", "source.file_path", site)?,
        state_dir: non_empty_path(raw.state_dir, "/var/lib/sshwatch", "source.state_dir", site)?,
        journal: raw.journal,
        expand_repeated: raw.expand_repeated,
        start_position: raw.start_position.unwrap_or(StartPosition::End),
        poll_interval,
    })
}
