//! `[heartbeat]`: the alarm that fires when a host stops publishing its heartbeat metric.

use serde::Deserialize;
use toml::Spanned;

use crate::config::alarms::{MAX_ALARM_NAME, MAX_EVALUATION_SECONDS, check_range};
use crate::config::{
    Alarm, ComparisonOperator, ConfigError, ErrorSite, MetricsConfig, Statistic, TreatMissingData,
};

/// The heartbeat alarm: fires when a host stops publishing the heartbeat metric.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    /// Whether `bootstrap` puts the alarm (false when `metrics.heartbeat_metric` is off).
    pub alarm: bool,
    pub alarm_name: String,
    /// How many consecutive minutes without a heartbeat fire the alarm.
    pub missing_minutes: i32,
}

/// Fewest silent minutes the heartbeat alarm may fire on: the newest minute is
/// always still missing when CloudWatch evaluates (it is published after the
/// minute ends plus `grace_seconds`), so 1 or 2 would fire on a healthy host.
pub(crate) const MIN_HEARTBEAT_MISSING_MINUTES: i64 = 3;
/// Default silent minutes before the heartbeat alarm fires.
pub(crate) const DEFAULT_HEARTBEAT_MISSING_MINUTES: i32 = 5;

impl HeartbeatConfig {
    /// The heartbeat alarm, or `None` when it is off.
    ///
    /// It watches the `SampleCount` of the heartbeat metric, which is 1 for
    /// every minute the daemon published (even when it read no line), so only
    /// missing minutes breach: `LessThanThreshold 1` with missing data treated
    /// as breaching, `missing_minutes` out of `missing_minutes` minutes.
    pub fn to_alarm(&self, metrics: &MetricsConfig) -> Option<Alarm> {
        let metric = metrics.heartbeat_metric.as_ref().filter(|_| self.alarm)?;
        Some(Alarm {
            alarm_name: self.alarm_name.clone(),
            alarm_description: Some(format!(
                "sshwatch: no `{metric}` heartbeat in `{}` for {} minutes: the daemon is down, stuck or cannot reach CloudWatch",
                metrics.namespace, self.missing_minutes
            )),
            metric_name: metric.clone(),
            metric_namespace: metrics.namespace.clone(),
            statistic: Statistic::SampleCount,
            period: 60,
            evaluation_periods: self.missing_minutes,
            datapoints_to_alarm: self.missing_minutes,
            threshold: 1.0,
            comparison_operator: ComparisonOperator::LessThanThreshold,
            treat_missing_data: TreatMissingData::Breaching,
            alarm_actions: Vec::new(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeartbeat {
    alarm: Option<Spanned<bool>>,
    alarm_name: Option<Spanned<String>>,
    missing_minutes: Option<Spanned<i64>>,
}

pub(crate) fn check_heartbeat(
    raw: RawHeartbeat,
    metrics: &MetricsConfig,
    site: &ErrorSite<'_>,
) -> Result<HeartbeatConfig, ConfigError> {
    let alarm_name = match raw.alarm_name {
        Some(n)
            if n.get_ref().is_empty()
                || n.get_ref().len() > MAX_ALARM_NAME
                || n.get_ref().chars().any(char::is_control) =>
        {
            return Err(site.error(
                "heartbeat.alarm_name",
                Some(n.span()),
                format!(
                    "`{}` must be 1 to {MAX_ALARM_NAME} printable characters",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => n.into_inner(),
        None => "SSHWatchHeartbeatAlarm".to_string(),
    };
    let missing_minutes = match &raw.missing_minutes {
        None => DEFAULT_HEARTBEAT_MISSING_MINUTES,
        Some(m) => check_range(
            m,
            "heartbeat.missing_minutes",
            MIN_HEARTBEAT_MISSING_MINUTES..=MAX_EVALUATION_SECONDS / 60,
            "must be between 3 and 1440 (the newest minute is always still missing when CloudWatch evaluates)",
            site,
        )?,
    };
    // An alarm on a heartbeat nobody publishes would always be in ALARM.
    let alarm = match raw.alarm {
        Some(a) if *a.get_ref() && metrics.heartbeat_metric.is_none() => {
            return Err(site.error(
                "heartbeat.alarm",
                Some(a.span()),
                "needs a heartbeat: `metrics.heartbeat_metric` is off (\"\"); set `alarm = false` or name the metric",
            ));
        }
        Some(a) => *a.get_ref(),
        None => metrics.heartbeat_metric.is_some(),
    };
    Ok(HeartbeatConfig {
        alarm,
        alarm_name,
        missing_minutes,
    })
}
