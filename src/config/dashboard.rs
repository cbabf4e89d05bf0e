//! `[dashboard]`: the CloudWatch dashboard `sshwatch bootstrap` puts.

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::{Chars, MAX_CLOUDWATCH_NAME, NameRule};
use crate::config::{ConfigError, ErrorSite};

/// The CloudWatch dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    pub enabled: bool,
    pub dashboard_name: String,
}

/// Dashboard names: 1 to 255 ASCII letters, digits, `_` and `-` (CloudWatch API Reference,
/// PutDashboard, `DashboardName`).
const DASHBOARD_NAME: NameRule = NameRule::new(MAX_CLOUDWATCH_NAME, Chars::Word);
/// The dashboard's name when `dashboard_name` is left out.
const DEFAULT_DASHBOARD_NAME: &str = "sshwatch";

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
    let dashboard_name = match &raw.dashboard_name {
        Some(n) => site.name("dashboard.dashboard_name", n, DASHBOARD_NAME)?,
        None => DEFAULT_DASHBOARD_NAME.to_string(),
    };
    Ok(DashboardConfig {
        enabled: raw.enabled.unwrap_or(true),
        dashboard_name,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_dashboard_is_on_by_default_and_its_name_is_checked() {
        let c = Config::defaults();
        assert!(c.dashboard.enabled);
        assert_eq!(c.dashboard.dashboard_name, "sshwatch");
        let e = Config::from_toml_str("[dashboard]\ndashboard_name = \"a b\"\n", None)
            .expect_err("a blank is refused");
        assert_eq!(
            (e.key.as_str(), e.line),
            ("dashboard.dashboard_name", Some(2))
        );
        assert_eq!(
            e.message,
            "`a b` must be 1 to 255 characters of `[A-Za-z0-9_-]`"
        );
    }
}
