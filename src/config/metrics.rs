//! `[metrics]`: when and how the per-minute counts are published, and the heartbeat metric.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::{MAX_CLOUDWATCH_NAME, NameRule, between};
use crate::config::filters::DEFAULT_NAMESPACE;
use crate::config::spelling::api_enum;
use crate::config::{ConfigError, ErrorSite, LogGroupClass, LogsConfig};

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

api_enum! {
    /// How per-minute counts reach CloudWatch.
    pub enum MetricsTransport {
        /// One PutMetricData call per minute.
        PutMetricData = "put_metric_data",
        /// One embedded metric format event per minute, in its own stream of the log group, sent with
        /// PutLogEvents.
        Emf = "emf",
    }
}

/// Seconds after a minute ends before its counts are published, when `grace_seconds` is left out.
const DEFAULT_GRACE_SECONDS: u64 = 5;
/// The seconds `grace_seconds` may take, sshwatch's own bound: a grace under a minute keeps a
/// minute's counts from waiting past the end of the minute after it.
const GRACE_SECONDS: RangeInclusive<u64> = 0..=50;
/// The heartbeat metric when `heartbeat_metric` is left out: the number of lines read in the minute.
const DEFAULT_HEARTBEAT_METRIC: &str = "LinesRead";
/// Unpublished minutes kept while CloudWatch is unreachable, when `max_backlog_minutes` is left out:
/// one day.
const DEFAULT_BACKLOG_MINUTES: usize = 24 * 60;
/// The minutes `max_backlog_minutes` may take: CloudWatch accepts datapoints up to two weeks old
/// (CloudWatch API Reference, PutMetricData), so an older minute could not be published anyway.
const BACKLOG_MINUTES: RangeInclusive<usize> = 1..=14 * 24 * 60;
/// The spread of the fleet's publish offsets when `publish_spread_seconds` is left out.
const DEFAULT_PUBLISH_SPREAD_SECONDS: u64 = 30;
/// The seconds `publish_spread_seconds` may take, sshwatch's own bound: the hosts of a fleet spread
/// their calls over at most one minute, the period of the metrics they publish.
const PUBLISH_SPREAD_SECONDS: RangeInclusive<u64> = 0..=60;

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

pub(crate) fn check_metrics(
    raw: RawMetrics,
    site: &ErrorSite<'_>,
) -> Result<MetricsConfig, ConfigError> {
    let grace = match raw.grace_seconds {
        None => DEFAULT_GRACE_SECONDS,
        Some(g) => site.in_range(
            "metrics.grace_seconds",
            &g,
            GRACE_SECONDS,
            &format!("must be at most {}", GRACE_SECONDS.end()),
        )?,
    };
    let heartbeat_metric = match raw.heartbeat_metric {
        None => Some(DEFAULT_HEARTBEAT_METRIC.to_string()),
        Some(h) if h.get_ref().is_empty() => None,
        Some(h) => Some(check_heartbeat_metric(h, site)?),
    };
    let namespace = match raw.namespace {
        None => DEFAULT_NAMESPACE.to_string(),
        Some(n) => site.own_namespace("metrics.namespace", &n)?,
    };
    let max_backlog_minutes = match raw.max_backlog_minutes {
        None => DEFAULT_BACKLOG_MINUTES,
        Some(m) => site.in_range(
            "metrics.max_backlog_minutes",
            &m,
            BACKLOG_MINUTES,
            &format!(
                "{} (14 days, CloudWatch's limit for past datapoints)",
                between(&BACKLOG_MINUTES)
            ),
        )?,
    };
    let publish_spread = match raw.publish_spread_seconds {
        None => DEFAULT_PUBLISH_SPREAD_SECONDS,
        Some(s) => site.in_range(
            "metrics.publish_spread_seconds",
            &s,
            PUBLISH_SPREAD_SECONDS,
            &format!("must be at most {}", PUBLISH_SPREAD_SECONDS.end()),
        )?,
    };
    Ok(MetricsConfig {
        publish_zeros: raw.publish_zeros.unwrap_or(true),
        grace: Duration::from_secs(grace),
        heartbeat_metric,
        namespace,
        max_backlog_minutes,
        publish_spread: Duration::from_secs(publish_spread),
        transport: raw
            .transport
            .map_or(MetricsTransport::Emf, Spanned::into_inner),
    })
}

/// A heartbeat metric's name (the empty one, which turns the heartbeat off, is taken before).
fn check_heartbeat_metric(
    value: Spanned<String>,
    site: &ErrorSite<'_>,
) -> Result<String, ConfigError> {
    site.require(
        NameRule::CLOUDWATCH.accepts(value.get_ref()),
        "metrics.heartbeat_metric",
        &value,
        || {
            format!(
                "must be at most {MAX_CLOUDWATCH_NAME} printable characters (empty = no heartbeat)"
            )
        },
    )?;
    Ok(value.into_inner())
}

/// The embedded metric format needs a STANDARD log group: CloudWatch extracts no metrics from the
/// events of an Infrequent Access one (CloudWatch Logs User Guide, "Log classes").
pub(crate) fn check_transport(
    metrics: &MetricsConfig,
    logs: &LogsConfig,
    site: &ErrorSite<'_>,
) -> Result<(), ConfigError> {
    if metrics.transport == MetricsTransport::Emf
        && logs.log_group_class == LogGroupClass::InfrequentAccess
    {
        return Err(site.error(
            "metrics.transport",
            None,
            "`emf` needs a STANDARD log group (CloudWatch extracts no metrics in the Infrequent Access class); set `logs.log_group_class = \"STANDARD\"` or `metrics.transport = \"put_metric_data\"`",
        ));
    }
    Ok(())
}
