//! `[logs]`: the CloudWatch Logs log group and stream the lines are shipped to, and how often.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::{Chars, NameRule, between};
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

/// The log group when `log_group_name` is left out: the one the CloudWatch agent of the seed setup
/// ships `/var/log/secure` to.
const DEFAULT_LOG_GROUP_NAME: &str = "secure";
/// The log stream when `log_stream_name` is left out: one stream per instance.
const DEFAULT_LOG_STREAM_NAME: &str = "{instance_id}";
/// Log group names: 1 to 512 characters of `[A-Za-z0-9._/#-]` (CloudWatch Logs API Reference,
/// CreateLogGroup).
const LOG_GROUP_NAME: NameRule = NameRule::new(512, Chars::LogGroup);
/// Log stream names: 1 to 512 characters, neither `:` nor `*` among them (CloudWatch Logs API
/// Reference, CreateLogStream).
const LOG_STREAM_NAME: NameRule = NameRule::new(512, Chars::NoColonOrStar);
/// The placeholders a stream name may hold, which the sink fills in for each host.
const PLACEHOLDERS: [&str; 2] = ["instance_id", "hostname"];
/// `retention_in_days` for a log group whose events never expire (the API's default when no
/// retention policy is put).
const NEVER_EXPIRE: i64 = -1;
/// The values CloudWatch Logs accepts for `retentionInDays` (CloudWatch Logs API Reference,
/// PutRetentionPolicy).
const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
/// The wait of a batch that is not full when `force_flush_interval` is left out: the CloudWatch
/// agent's default `force_flush_interval` of 5 seconds.
const DEFAULT_FORCE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// The seconds `force_flush_interval` may take, sshwatch's own bounds: below a tenth of a second
/// nearly every line would be a call of its own, and above five minutes lines would wait in the
/// daemon longer than anyone watching the log group waits for them.
const FORCE_FLUSH_SECONDS: RangeInclusive<f64> = 0.1..=300.0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogs {
    log_group_name: Option<Spanned<String>>,
    log_stream_name: Option<Spanned<String>>,
    retention_in_days: Option<Spanned<i64>>,
    log_group_class: Option<LogGroupClass>,
    force_flush_interval: Option<Spanned<f64>>,
}

pub(crate) fn check_logs(raw: RawLogs, site: &ErrorSite<'_>) -> Result<LogsConfig, ConfigError> {
    let log_group_name = match raw.log_group_name {
        None => DEFAULT_LOG_GROUP_NAME.to_string(),
        Some(g) => site.name("logs.log_group_name", &g, LOG_GROUP_NAME)?,
    };
    let log_stream_name = match raw.log_stream_name {
        None => DEFAULT_LOG_STREAM_NAME.to_string(),
        Some(s) => check_stream_name(&s, site)?,
    };
    let retention_in_days = match raw.retention_in_days {
        None => None,
        Some(r) if *r.get_ref() == NEVER_EXPIRE => None,
        Some(r) => Some(check_retention(&r, site)?),
    };
    let force_flush_interval = match raw.force_flush_interval {
        None => DEFAULT_FORCE_FLUSH_INTERVAL,
        Some(f) => Duration::from_secs_f64(site.in_range(
            "logs.force_flush_interval",
            &f,
            FORCE_FLUSH_SECONDS,
            &format!("{} seconds", between(&FORCE_FLUSH_SECONDS)),
        )?),
    };
    Ok(LogsConfig {
        log_group_name,
        log_stream_name,
        retention_in_days,
        log_group_class: raw.log_group_class.unwrap_or(LogGroupClass::Standard),
        force_flush_interval,
    })
}

/// A stream-name template: a stream name whose placeholders are all known.
fn check_stream_name(value: &Spanned<String>, site: &ErrorSite<'_>) -> Result<String, ConfigError> {
    const KEY: &str = "logs.log_stream_name";
    let template = site.name(KEY, value, LOG_STREAM_NAME)?;
    if let Some(p) = placeholders(&template).find(|p| !PLACEHOLDERS.contains(p)) {
        let known: Vec<String> = PLACEHOLDERS.iter().map(|k| format!("`{{{k}}}`")).collect();
        return Err(site.at(
            KEY,
            value,
            format!(
                "unknown placeholder `{{{p}}}` (known: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(template)
}

/// The names inside `{…}` in a stream-name template.
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

/// A retention CloudWatch Logs accepts.
fn check_retention(value: &Spanned<i64>, site: &ErrorSite<'_>) -> Result<i32, ConfigError> {
    let days = *value.get_ref();
    i32::try_from(days)
        .ok()
        .filter(|d| RETENTION_DAYS.contains(d))
        .ok_or_else(|| {
            site.at(
                "logs.retention_in_days",
                value,
                format!(
                    "{days} is not a CloudWatch retention; use {NEVER_EXPIRE} (never expire) or one of {RETENTION_DAYS:?}"
                ),
            )
        })
}
