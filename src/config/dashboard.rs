//! `[dashboard]`: the CloudWatch dashboard `sshwatch bootstrap` puts.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, ErrorSite};

/// The CloudWatch dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    pub enabled: bool,
    pub dashboard_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDashboard {
    enabled: Option<bool>,
    dashboard_name: Option<Spanned<String>>,
}

pub(crate) fn check_dashboard(
    raw: RawDashboard,
    site: &ErrorSite<'_>,
) -> Result<DashboardConfig, ConfigError> {
    let dashboard_name = match raw.dashboard_name {
        Some(n) => {
            let v = n.get_ref();
            let ok = !v.is_empty()
                && v.len() <= 255
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(site.error(
                    "dashboard.dashboard_name",
                    Some(n.span()),
                    format!("`{v}` must be 1 to 255 characters of `[A-Za-z0-9_-]`"),
                ));
            }
            v.clone()
        }
        None => "sshwatch".to_string(),
    };
    Ok(DashboardConfig {
        enabled: raw.enabled.unwrap_or(true),
        dashboard_name,
    })
}
