//! `[metrics]`: when and how the per-minute counts are published, and the heartbeat metric.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::spelling::api_enum;
use crate::config::{ConfigError, ErrorSite};

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
