//! The configuration file: raw TOML (serde, `deny_unknown_fields`) checked once into [`Config`].
//!
//! Only this module reads the configuration file. Every error names the key
//! and, when the file has it, the line, and maps to exit status 78 (`EX_CONFIG`).
//!
//! Each section of the file has its own module, named after it (`source` checks `[source]`,
//! `filters` checks `[[metric_filters]]`); `checks` holds the checks they share and `spelling` the
//! enums whose names the file and the AWS API spell alike. This module reads the file and runs the
//! sections' checks in order.

mod alarms;
mod aws;
mod checks;
mod dashboard;
mod detector;
mod filters;
mod heartbeat;
mod logs;
mod metrics;
mod notifications;
mod source;
mod spelling;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::alarms::{Alarm, ComparisonOperator, Statistic, TreatMissingData};
pub use self::aws::AwsConfig;
pub use self::dashboard::DashboardConfig;
pub use self::detector::DetectorConfig;
pub use self::filters::{MetricFilter, MetricValue, default_metric_filters};
pub use self::heartbeat::HeartbeatConfig;
pub use self::logs::{LogGroupClass, LogsConfig};
pub use self::metrics::{MetricsConfig, MetricsTransport};
pub use self::notifications::Notifications;
pub use self::source::{SourceConfig, StartPosition};

/// Exit status for configuration errors (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

/// A checked configuration: every value validated, every pattern compiled.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was loaded from (`None` = built-in defaults).
    pub path: Option<PathBuf>,
    pub source: SourceConfig,
    pub aws: AwsConfig,
    pub logs: LogsConfig,
    pub metrics: MetricsConfig,
    pub detector: DetectorConfig,
    pub metric_filters: Vec<MetricFilter>,
    pub alarms: Vec<Alarm>,
    pub notifications: Option<Notifications>,
    pub heartbeat: HeartbeatConfig,
    pub dashboard: DashboardConfig,
}

/// A configuration error: which file, which key, which line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    /// Dotted key path, e.g. `metric_filters[1].filter_pattern`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config error")?;
        if let Some(path) = &self.path {
            write!(f, " in {}", path.display())?;
        }
        if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Builds [`ConfigError`]s for one file: turns byte spans into line numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorSite<'a> {
    path: Option<&'a Path>,
    text: &'a str,
}

impl ErrorSite<'_> {
    /// An error about `key`, located at the byte `span` of the file (if known).
    pub(crate) fn error(
        &self,
        key: impl Into<String>,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        let line = span.map(|s| line_of(self.text, s.start));
        ConfigError {
            path: self.path.map(Path::to_path_buf),
            key: key.into(),
            line,
            message: message.into(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The field name `toml::Spanned` reads its value under; serde_path_to_error puts it in the path of
/// an error about a spanned value, where it is no key of the file.
const SPANNED_VALUE_FIELD: &str = ".$__serde_spanned_private_value";

/// The dotted key of the value serde refused (empty for the document itself).
fn key_of(path: &serde_path_to_error::Path) -> String {
    let key = path.to_string().replace(SPANNED_VALUE_FIELD, "");
    if key == "." { String::new() } else { key }
}

/// The mode bits that let the file's group or others write it.
const GROUP_OR_OTHERS_WRITE: u32 = 0o022;
/// The mode bits that are permissions (the file type left out), as `chmod` shows them.
const PERMISSIONS: u32 = 0o7777;

/// Warns when others than the file's owner may change it: the file decides what sshwatch reads and
/// where it sends it.
fn warn_if_others_may_write(path: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.mode() & PERMISSIONS;
    if mode & GROUP_OR_OTHERS_WRITE != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "the configuration file `{}` is writable by group or others (mode {mode:04o}); anyone who can change it decides what sshwatch reads and where it sends it: `chmod go-w` it",
            path.display(),
        );
    }
}

/// The raw file, as serde reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source: source::RawSource,
    #[serde(default)]
    aws: aws::RawAws,
    #[serde(default)]
    logs: logs::RawLogs,
    #[serde(default)]
    metrics: metrics::RawMetrics,
    #[serde(default)]
    detector: detector::RawDetector,
    metric_filters: Option<Vec<filters::RawMetricFilter>>,
    alarms: Option<Vec<alarms::RawAlarm>>,
    notifications: Option<notifications::RawNotifications>,
    #[serde(default)]
    heartbeat: heartbeat::RawHeartbeat,
    #[serde(default)]
    dashboard: dashboard::RawDashboard,
}

impl Config {
    /// The built-in defaults: the seed setup.
    pub fn defaults() -> Config {
        // The empty document is valid by construction; a failure here is a bug
        // in the defaults themselves, caught by the tests.
        Config::from_toml_str("", None).unwrap_or_else(|e| panic!("built-in defaults: {e}"))
    }

    /// Loads `path`. When `missing_ok` and the file does not exist, returns the defaults. Warns when
    /// others than its owner may change the file: it decides what is read and where it is sent.
    pub fn load(path: &Path, missing_ok: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_others_may_write(path);
                Config::from_toml_str(&text, Some(path))
            }
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::defaults())
            }
            Err(e) => Err(ConfigError {
                path: Some(path.to_path_buf()),
                key: String::new(),
                line: None,
                message: format!("cannot read the file: {e}"),
            }),
        }
    }

    /// Parses and checks a configuration document.
    pub fn from_toml_str(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let site = ErrorSite { path, text };
        let deserializer = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = key_of(e.path());
            let inner = e.into_inner();
            let mut message = inner.message().trim().to_string();
            if message.is_empty() {
                // toml gives no words for some syntax errors (`key = ` with nothing after it).
                message = "invalid TOML: a value is missing or malformed here".to_string();
            }
            site.error(key, inner.span(), message)
        })?;

        let source = source::check_source(raw.source, &site)?;
        let aws = aws::check_aws(raw.aws, &site)?;
        let logs = logs::check_logs(raw.logs, &site)?;
        let metrics = metrics::check_metrics(raw.metrics, &site)?;
        let detector = detector::check_detector(raw.detector, &site)?;
        let metric_filters = filters::check_metric_filters(raw.metric_filters, &site)?;
        let notifications = notifications::check_notifications(raw.notifications, &site)?;
        let alarms = alarms::check_alarms(raw.alarms, &metric_filters, &site)?;
        let heartbeat = heartbeat::check_heartbeat(raw.heartbeat, &metrics, &site)?;
        metrics::check_transport(&metrics, &logs, &site)?;
        let dashboard = dashboard::check_dashboard(raw.dashboard, &site)?;

        Ok(Config {
            path: path.map(Path::to_path_buf),
            source,
            aws,
            logs,
            metrics,
            detector,
            metric_filters,
            alarms,
            notifications,
            heartbeat,
            dashboard,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn every_syntax_error_has_words() {
        for text in ["-L= ", "[logs]\nlog_group_name = \n", "= 1", "x"] {
            let e = Config::from_toml_str(text, None).expect_err(text);
            assert!(!e.message.trim().is_empty(), "{text:?}: {e}");
            assert!(e.line.is_some(), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_key() {
        let cases = [
            (
                "[logs]\nretention_in_days = \"never\"\n",
                "logs.retention_in_days",
                2,
            ),
            (
                "[metrics]\ngrace_seconds = -1\n",
                "metrics.grace_seconds",
                2,
            ),
            (
                "[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"M\"\nalarm_actions = [1]\n",
                "alarms[0].alarm_actions[0]",
                4,
            ),
            ("source = 1\n", "source", 1),
        ];
        for (text, key, line) in cases {
            let e = Config::from_toml_str(text, None).expect_err("wrong type");
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{text}: {e}");
        }
    }

    #[test]
    fn a_filter_name_putmetricfilter_refuses_is_refused_here() {
        for name in ["a:b", "ssh*", ""] {
            let text = format!(
                "[[metric_filters]]\nfilter_name = \"{name}\"\nfilter_pattern = \"x\"\nmetric_name = \"M\"\n"
            );
            let e = Config::from_toml_str(&text, None).expect_err(name);
            assert_eq!(
                (e.key.as_str(), e.line),
                ("metric_filters[0].filter_name", Some(2)),
                "{name}: {e}"
            );
        }
        let ok = "[[metric_filters]]\nfilter_name = \"SSH invalid-user/1\"\nfilter_pattern = \"x\"\nmetric_name = \"M\"\n";
        assert!(Config::from_toml_str(ok, None).is_ok());
    }
}
