//! `[source]`: the log sshwatch follows, where it keeps its checkpoints, and how it reads.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::between;
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

/// The file followed when `file_path` is left out: the SSH auth log of Amazon Linux and RHEL.
const DEFAULT_FILE_PATH: &str = "/var/log/secure";
/// Where the checkpoints live when `state_dir` is left out.
const DEFAULT_STATE_DIR: &str = "/var/lib/sshwatch";
/// How often the file is looked at besides inotify when `poll_interval_seconds` is left out.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The seconds `poll_interval_seconds` may take, sshwatch's own bounds: a look more often than every
/// 50 ms costs CPU for nothing, and one less often than every minute leaves a missed inotify event
/// unnoticed for too long.
const POLL_INTERVAL_SECONDS: RangeInclusive<f64> = 0.05..=60.0;

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

pub(crate) fn check_source(
    raw: RawSource,
    site: &ErrorSite<'_>,
) -> Result<SourceConfig, ConfigError> {
    let poll_interval = match raw.poll_interval_seconds {
        None => DEFAULT_POLL_INTERVAL,
        Some(s) => Duration::from_secs_f64(site.in_range(
            "source.poll_interval_seconds",
            &s,
            POLL_INTERVAL_SECONDS,
            &between(&POLL_INTERVAL_SECONDS),
        )?),
    };
    Ok(SourceConfig {
        file_path: site.path("source.file_path", raw.file_path, DEFAULT_FILE_PATH)?,
        state_dir: site.path("source.state_dir", raw.state_dir, DEFAULT_STATE_DIR)?,
        journal: raw.journal,
        expand_repeated: raw.expand_repeated,
        start_position: raw.start_position.unwrap_or(StartPosition::End),
        poll_interval,
    })
}
