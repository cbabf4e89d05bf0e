//! `[detector]`: the silent-miss detector, which warns when a filter's words show up in lines it does
//! not match.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, ErrorSite};

/// The silent-miss detector.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub enabled: bool,
    pub window: Duration,
}

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
    let window = match raw.window_minutes {
        None => Duration::from_secs(600),
        Some(w) if *w.get_ref() == 0 || *w.get_ref() > 24 * 60 => {
            return Err(site.error(
                "detector.window_minutes",
                Some(w.span()),
                "must be between 1 and 1440",
            ));
        }
        Some(w) => Duration::from_secs(*w.get_ref() * 60),
    };
    Ok(DetectorConfig {
        enabled: raw.enabled.unwrap_or(true),
        window,
    })
}
