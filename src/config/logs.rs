//! `[logs]`: the CloudWatch Logs log group and stream the lines are shipped to, and how often.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::spelling::api_enum;
use crate::config::{ConfigError, ErrorSite};

/// The CloudWatch Logs destination.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    pub log_group_name: String,
    /// May contain `{instance_id}` and `{hostname}`.
    pub log_stream_name: String,
    /// `None` = never expire (`-1` in the file).
    pub retention_in_days: Option<i32>,
    pub log_group_class: LogGroupClass,
    /// A batch that is not full is sent once its oldest line waited this long (the CloudWatch agent's
    /// `force_flush_interval`).
    pub force_flush_interval: Duration,
}

api_enum! {
    /// CloudWatch Logs log group classes (CreateLogGroup, `logGroupClass`).
    pub enum LogGroupClass {
        Standard = "STANDARD",
        InfrequentAccess = "INFREQUENT_ACCESS",
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogs {
    log_group_name: Option<Spanned<String>>,
    log_stream_name: Option<Spanned<String>>,
    retention_in_days: Option<Spanned<i64>>,
    log_group_class: Option<LogGroupClass>,
    force_flush_interval: Option<Spanned<f64>>,
}

/// Values CloudWatch Logs accepts for `retentionInDays`.
const RETENTION_DAYS: [i64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

pub(crate) fn check_logs(raw: RawLogs, site: &ErrorSite<'_>) -> Result<LogsConfig, ConfigError> {
    let log_group_name = match raw.log_group_name {
        None => "secure".to_string(),
        Some(g) => {
            let v = g.get_ref();
            let ok = !v.is_empty()
                && v.len() <= 512
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
            if !ok {
                return Err(site.error(
                    "logs.log_group_name",
                    Some(g.span()),
                    "must be 1 to 512 characters of `[.-_/#A-Za-z0-9]`",
                ));
            }
            v.clone()
        }
    };
    let log_stream_name = match raw.log_stream_name {
        None => "{instance_id}".to_string(),
        Some(s) => {
            let v = s.get_ref();
            if v.is_empty() || v.len() > 512 || v.contains(':') || v.contains('*') {
                return Err(site.error(
                    "logs.log_stream_name",
                    Some(s.span()),
                    "must be 1 to 512 characters without `:` or `*`",
                ));
            }
            let unknown = placeholders(v).find(|p| *p != "instance_id" && *p != "hostname");
            if let Some(p) = unknown {
                return Err(site.error(
                    "logs.log_stream_name",
                    Some(s.span()),
                    format!(
                        "unknown placeholder `{{{p}}}` (known: `{{instance_id}}`, `{{hostname}}`)"
                    ),
                ));
            }
            v.clone()
        }
    };
    let retention_in_days = match raw.retention_in_days {
        None => None,
        Some(r) if *r.get_ref() == -1 => None,
        Some(r) => {
            let v = *r.get_ref();
            if !RETENTION_DAYS.contains(&v) {
                return Err(site.error(
                    "logs.retention_in_days",
                    Some(r.span()),
                    format!("{v} is not a CloudWatch retention; use -1 (never expire) or one of {RETENTION_DAYS:?}"),
                ));
            }
            Some(v as i32)
        }
    };
    let force_flush_interval = match raw.force_flush_interval {
        None => Duration::from_secs(5),
        Some(f) => {
            let v = *f.get_ref();
            if !(0.1..=300.0).contains(&v) {
                return Err(site.error(
                    "logs.force_flush_interval",
                    Some(f.span()),
                    "must be between 0.1 and 300 seconds",
                ));
            }
            Duration::from_secs_f64(v)
        }
    };
    Ok(LogsConfig {
        log_group_name,
        log_stream_name,
        retention_in_days,
        log_group_class: raw.log_group_class.unwrap_or(LogGroupClass::Standard),
        force_flush_interval,
    })
}

/// The names inside `{…}` in a stream-name template.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}
