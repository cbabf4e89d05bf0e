//! `[source]`, `[aws]`, `[logs]`, `[metrics]` and `[detector]`: what `sshwatch run` reads and where it sends it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

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

/// Where to start reading a file that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// Ship the file's existing content too.
    Beginning,
    /// Only what is appended from now on (old content: `sshwatch replay`).
    End,
}

/// The AWS SDK's settings; everything not set here comes from its standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
}

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

/// CloudWatch Logs log group classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LogGroupClass {
    #[serde(rename = "STANDARD")]
    Standard,
    #[serde(rename = "INFREQUENT_ACCESS")]
    InfrequentAccess,
}

impl LogGroupClass {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogGroupClass::Standard => "STANDARD",
            LogGroupClass::InfrequentAccess => "INFREQUENT_ACCESS",
        }
    }
}

/// Per-minute metrics.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Publish explicit zeros for metrics with no match in a minute, so alarms see data.
    pub publish_zeros: bool,
    /// How long after a minute ends its counts are published.
    pub grace: Duration,
    /// The heartbeat metric published every minute in the first filter's namespace
    /// (`None` = off).
    pub heartbeat_metric: Option<String>,
    /// Namespace of the heartbeat and `FilterNearMisses` metrics.
    pub namespace: String,
    /// Most minutes kept unpublished while CloudWatch is unreachable.
    pub max_backlog_minutes: usize,
    /// Each host publishes a minute at a fixed offset in `[grace, grace + publish_spread)` after it ends.
    pub publish_spread: Duration,
    /// How the counts reach CloudWatch.
    pub transport: MetricsTransport,
}

/// How per-minute counts reach CloudWatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsTransport {
    /// One PutMetricData call per minute.
    PutMetricData,
    /// One embedded metric format event per minute, in its own stream of the log group, sent with
    /// PutLogEvents.
    Emf,
}

/// The silent-miss detector.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub enabled: bool,
    pub window: Duration,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAws {
    region: Option<Spanned<String>>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    publish_zeros: Option<bool>,
    grace_seconds: Option<Spanned<u64>>,
    heartbeat_metric: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    max_backlog_minutes: Option<Spanned<usize>>,
    publish_spread_seconds: Option<Spanned<u64>>,
    transport: Option<Spanned<MetricsTransport>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetector {
    enabled: Option<bool>,
    window_minutes: Option<Spanned<u64>>,
}

/// Values CloudWatch Logs accepts for `retentionInDays`.
const RETENTION_DAYS: [i64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

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

pub(crate) fn check_aws(raw: RawAws, site: &ErrorSite<'_>) -> Result<AwsConfig, ConfigError> {
    let region = match raw.region {
        None => None,
        Some(r) => {
            let v = r.get_ref();
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(site.error(
                    "aws.region",
                    Some(r.span()),
                    format!("`{v}` is not a region name (e.g. `us-east-1`)"),
                ));
            }
            Some(v.clone())
        }
    };
    Ok(AwsConfig { region })
}

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

pub(crate) fn check_metrics(
    raw: RawMetrics,
    site: &ErrorSite<'_>,
) -> Result<MetricsConfig, ConfigError> {
    let grace = match raw.grace_seconds {
        None => Duration::from_secs(5),
        Some(g) if *g.get_ref() > 50 => {
            return Err(site.error(
                "metrics.grace_seconds",
                Some(g.span()),
                "must be at most 50",
            ));
        }
        Some(g) => Duration::from_secs(*g.get_ref()),
    };
    let name_ok = |v: &str| !v.is_empty() && v.len() <= 255 && !v.chars().any(char::is_control);
    let heartbeat_metric = match raw.heartbeat_metric {
        None => Some("LinesRead".to_string()),
        Some(h) if h.get_ref().is_empty() => None,
        Some(h) if !name_ok(h.get_ref()) => {
            return Err(site.error(
                "metrics.heartbeat_metric",
                Some(h.span()),
                "must be at most 255 printable characters (empty = no heartbeat)",
            ));
        }
        Some(h) => Some(h.into_inner()),
    };
    let namespace = match raw.namespace {
        None => "SSH".to_string(),
        Some(n) if !name_ok(n.get_ref()) || n.get_ref().starts_with("AWS/") => {
            return Err(site.error(
                "metrics.namespace",
                Some(n.span()),
                "must be 1 to 255 printable characters, not starting with `AWS/`",
            ));
        }
        Some(n) => n.into_inner(),
    };
    let max_backlog_minutes = match raw.max_backlog_minutes {
        None => 24 * 60,
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > 14 * 24 * 60 => {
            return Err(site.error(
                "metrics.max_backlog_minutes",
                Some(m.span()),
                "must be between 1 and 20160 (14 days, CloudWatch's limit for past datapoints)",
            ));
        }
        Some(m) => *m.get_ref(),
    };
    let publish_spread = match raw.publish_spread_seconds {
        None => Duration::from_secs(30),
        Some(s) if *s.get_ref() > 60 => {
            return Err(site.error(
                "metrics.publish_spread_seconds",
                Some(s.span()),
                "must be at most 60",
            ));
        }
        Some(s) => Duration::from_secs(*s.get_ref()),
    };
    Ok(MetricsConfig {
        publish_zeros: raw.publish_zeros.unwrap_or(true),
        grace,
        heartbeat_metric,
        namespace,
        max_backlog_minutes,
        publish_spread,
        transport: raw
            .transport
            .map_or(MetricsTransport::Emf, Spanned::into_inner),
    })
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
