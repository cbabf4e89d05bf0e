//! `[heartbeat]`: the alarm that fires when a host stops publishing its heartbeat metric.

use std::ops::RangeInclusive;

use serde::Deserialize;
use toml::Spanned;

use crate::config::alarms::{MAX_EVALUATION_SECONDS, MINUTE_SECONDS};
use crate::config::checks::{NameRule, between};
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

/// The heartbeat alarm's name when `alarm_name` is left out.
const DEFAULT_ALARM_NAME: &str = "SSHWatchHeartbeatAlarm";
/// Silent minutes before the heartbeat alarm fires, when `missing_minutes` is left out.
const DEFAULT_MISSING_MINUTES: i32 = 5;
/// The silent minutes the alarm may wait for. At least 3: the newest minute is always still missing
/// when CloudWatch evaluates (it is published after the minute ends plus `grace_seconds`), so 1 or 2
/// would fire on a healthy host. At most the minutes in the longest span an alarm may evaluate.
const MISSING_MINUTES: RangeInclusive<i32> = 3..=MAX_EVALUATION_SECONDS / MINUTE_SECONDS;
/// The heartbeat metric's `SampleCount` for a minute the daemon published.
const PUBLISHED: f64 = 1.0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeartbeat {
    alarm: Option<Spanned<bool>>,
    alarm_name: Option<Spanned<String>>,
    missing_minutes: Option<Spanned<i64>>,
}

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
            period: MINUTE_SECONDS,
            evaluation_periods: self.missing_minutes,
            datapoints_to_alarm: self.missing_minutes,
            threshold: PUBLISHED,
            comparison_operator: ComparisonOperator::LessThanThreshold,
            treat_missing_data: TreatMissingData::Breaching,
            alarm_actions: Vec::new(),
        })
    }
}

pub(crate) fn check_heartbeat(
    raw: RawHeartbeat,
    metrics: &MetricsConfig,
    site: &ErrorSite<'_>,
) -> Result<HeartbeatConfig, ConfigError> {
    let alarm_name = match &raw.alarm_name {
        Some(n) => site.name("heartbeat.alarm_name", n, NameRule::CLOUDWATCH)?,
        None => DEFAULT_ALARM_NAME.to_string(),
    };
    let missing_minutes = match &raw.missing_minutes {
        None => DEFAULT_MISSING_MINUTES,
        Some(m) => site.in_range(
            "heartbeat.missing_minutes",
            m,
            MISSING_MINUTES,
            &format!(
                "{} (the newest minute is always still missing when CloudWatch evaluates)",
                between(&MISSING_MINUTES)
            ),
        )?,
    };
    // An alarm on a heartbeat nobody publishes would always be in ALARM.
    let alarm = match raw.alarm {
        Some(a) => {
            site.require(
                !*a.get_ref() || metrics.heartbeat_metric.is_some(),
                "heartbeat.alarm",
                &a,
                || "needs a heartbeat: `metrics.heartbeat_metric` is off (\"\"); set `alarm = false` or name the metric".to_string(),
            )?;
            *a.get_ref()
        }
        None => metrics.heartbeat_metric.is_some(),
    };
    Ok(HeartbeatConfig {
        alarm,
        alarm_name,
        missing_minutes,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, TreatMissingData};

    fn err(text: &str) -> ConfigError {
        Config::from_toml_str(text, None).expect_err("config must be rejected")
    }

    #[test]
    fn the_default_heartbeat_alarm_watches_lines_read() {
        let c = Config::defaults();
        let hb = c
            .heartbeat
            .to_alarm(&c.metrics)
            .expect("heartbeat alarm on by default");
        assert_eq!(hb.metric_name, "LinesRead");
        assert_eq!(hb.treat_missing_data, TreatMissingData::Breaching);
        assert_eq!((hb.evaluation_periods, hb.datapoints_to_alarm), (5, 5));
    }

    #[test]
    fn heartbeat_alarm_follows_the_heartbeat_metric() {
        let c = Config::from_toml_str("[metrics]\nheartbeat_metric = \"\"\n", None).expect("valid");
        assert!(!c.heartbeat.alarm);
        assert!(c.heartbeat.to_alarm(&c.metrics).is_none());
        let e = err("[metrics]\nheartbeat_metric = \"\"\n[heartbeat]\nalarm = true\n");
        assert_eq!(e.key, "heartbeat.alarm");
        let e = err("[heartbeat]\nmissing_minutes = 1\n");
        assert_eq!(e.key, "heartbeat.missing_minutes");
        let c = Config::from_toml_str(
            "[metrics]\nheartbeat_metric = \"Beat\"\nnamespace = \"Ops\"\n[heartbeat]\nmissing_minutes = 10\n",
            None,
        )
        .expect("valid");
        let hb = c.heartbeat.to_alarm(&c.metrics).expect("on");
        assert_eq!(
            (hb.metric_namespace.as_str(), hb.metric_name.as_str()),
            ("Ops", "Beat")
        );
        assert_eq!((hb.evaluation_periods, hb.datapoints_to_alarm), (10, 10));
    }
}
