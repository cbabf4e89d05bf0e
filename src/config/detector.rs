//! `[detector]`: the silent-miss detector, which warns when a filter's words show up in lines it does
//! not match.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::between;
use crate::config::{ConfigError, ErrorSite};

/// The silent-miss detector.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub enabled: bool,
    pub window: Duration,
}

/// The detector's window when `window_minutes` is left out.
const DEFAULT_WINDOW_MINUTES: u64 = 10;
/// The minutes `window_minutes` may take, sshwatch's own bounds: at least a minute, at most a day.
const WINDOW_MINUTES: RangeInclusive<u64> = 1..=24 * 60;
/// Seconds in a minute, to turn the window into a [`Duration`].
const SECONDS_PER_MINUTE: u64 = 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetector {
    enabled: Option<bool>,
    window_minutes: Option<Spanned<u64>>,
}

pub(crate) fn check_detector(
    raw: RawDetector,
    site: &ErrorSite<'_>,
) -> Result<DetectorConfig, ConfigError> {
    let window_minutes = match raw.window_minutes {
        None => DEFAULT_WINDOW_MINUTES,
        Some(w) => site.in_range(
            "detector.window_minutes",
            &w,
            WINDOW_MINUTES,
            &between(&WINDOW_MINUTES),
        )?,
    };
    Ok(DetectorConfig {
        enabled: raw.enabled.unwrap_or(true),
        window: Duration::from_secs(window_minutes * SECONDS_PER_MINUTE),
    })
}
