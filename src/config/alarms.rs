//! `[[alarms]]`: the CloudWatch alarms `sshwatch bootstrap` puts, keyed like `put-metric-alarm`'s
//! arguments, with the seed's three as defaults.

use serde::Deserialize;
use toml::Spanned;

use crate::config::spelling::api_enum;
use crate::config::{ConfigError, ErrorSite, MetricFilter, Notifications};

/// One CloudWatch alarm, keyed like `put-metric-alarm`'s arguments.
///
/// The alarm watches one metric without dimensions (the daemon publishes none)
/// and sets no unit, so it matches whatever unit the daemon publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub alarm_name: String,
    pub alarm_description: Option<String>,
    pub metric_name: String,
    pub metric_namespace: String,
    pub statistic: Statistic,
    pub period: i32,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
    pub threshold: f64,
    pub comparison_operator: ComparisonOperator,
    pub treat_missing_data: TreatMissingData,
    /// Explicit ARNs; empty = the `[notifications]` topic, if any.
    pub alarm_actions: Vec<String>,
}

impl Alarm {
    /// The actions the alarm gets: its own `alarm_actions`, else the `[notifications]` topic.
    pub fn actions(&self, topic_arn: Option<&str>) -> Vec<String> {
        if self.alarm_actions.is_empty() {
            topic_arn.map(str::to_string).into_iter().collect()
        } else {
            self.alarm_actions.clone()
        }
    }
}

api_enum! {
    /// CloudWatch statistics (PutMetricAlarm, `Statistic`).
    pub enum Statistic {
        SampleCount = "SampleCount",
        Average = "Average",
        Sum = "Sum",
        Minimum = "Minimum",
        Maximum = "Maximum",
    }
}

api_enum! {
    /// CloudWatch comparison operators: the static-threshold ones of PutMetricAlarm's
    /// `ComparisonOperator`.
    pub enum ComparisonOperator {
        GreaterThanOrEqualToThreshold = "GreaterThanOrEqualToThreshold",
        GreaterThanThreshold = "GreaterThanThreshold",
        LessThanThreshold = "LessThanThreshold",
        LessThanOrEqualToThreshold = "LessThanOrEqualToThreshold",
    }
}

impl ComparisonOperator {
    /// The operator as a symbol, for labels (`>`, `>=`, `<`, `<=`).
    pub fn symbol(self) -> &'static str {
        match self {
            ComparisonOperator::GreaterThanOrEqualToThreshold => ">=",
            ComparisonOperator::GreaterThanThreshold => ">",
            ComparisonOperator::LessThanThreshold => "<",
            ComparisonOperator::LessThanOrEqualToThreshold => "<=",
        }
    }
}

api_enum! {
    /// How an alarm treats missing datapoints (PutMetricAlarm, `TreatMissingData`).
    pub enum TreatMissingData {
        Missing = "missing",
        NotBreaching = "notBreaching",
        Breaching = "breaching",
        Ignore = "ignore",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlarm {
    alarm_name: Spanned<String>,
    alarm_description: Option<Spanned<String>>,
    metric_name: Spanned<String>,
    metric_namespace: Option<Spanned<String>>,
    statistic: Option<Statistic>,
    period: Option<Spanned<i64>>,
    evaluation_periods: Option<Spanned<i64>>,
    datapoints_to_alarm: Option<Spanned<i64>>,
    threshold: Option<Spanned<f64>>,
    comparison_operator: Option<ComparisonOperator>,
    treat_missing_data: Option<TreatMissingData>,
    alarm_actions: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The seed's three alarms: `(alarm_name, metric_name)`.
pub(crate) const SEED_ALARMS: [(&str, &str); 3] = [
    ("FailedPasswordMetricsAlarm", "FailedPasswordMetrics"),
    ("InvalidUserMetricsAlarm", "InvalidUserMetrics"),
    ("ClosedConnectionMetricsAlarm", "ClosedConnectionMetrics"),
];

/// CloudWatch's limit on `Period × EvaluationPeriods` (one day).
pub(crate) const MAX_EVALUATION_SECONDS: i64 = 86_400;
/// CloudWatch's limit on actions per alarm state.
const MAX_ACTIONS: usize = 5;
/// CloudWatch's limit on alarm names and descriptions.
pub(crate) const MAX_ALARM_NAME: usize = 255;
const MAX_ALARM_DESCRIPTION: usize = 1024;

pub(crate) fn check_range(
    v: &Spanned<i64>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    message: &str,
    site: &ErrorSite<'_>,
) -> Result<i32, ConfigError> {
    let n = *v.get_ref();
    if !range.contains(&n) {
        return Err(site.error(key, Some(v.span()), format!("{n}: {message}")));
    }
    // The ranges checked here all fit in an i32.
    Ok(n as i32)
}

pub(crate) fn check_alarms(
    raw: Option<Vec<RawAlarm>>,
    filters: &[MetricFilter],
    _notifications: Option<&Notifications>,
    site: &ErrorSite<'_>,
) -> Result<Vec<Alarm>, ConfigError> {
    let namespace_of = |metric: &str| {
        filters
            .iter()
            .find(|f| f.metric_name == metric)
            .map(|f| f.metric_namespace.clone())
    };
    let Some(raw) = raw else {
        // The seed's alarms, for those of its metrics the configured filters publish.
        return Ok(SEED_ALARMS
            .iter()
            .filter_map(|(alarm, metric)| Some(seed_alarm(alarm, metric, namespace_of(metric)?)))
            .collect());
    };
    let mut out: Vec<Alarm> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("alarms[{i}].{field}");
        let name = r.alarm_name.get_ref().clone();
        if name.is_empty() || name.len() > MAX_ALARM_NAME || name.chars().any(char::is_control) {
            return Err(site.error(
                key("alarm_name"),
                Some(r.alarm_name.span()),
                format!("`{name}` must be 1 to {MAX_ALARM_NAME} printable characters"),
            ));
        }
        if out.iter().any(|a| a.alarm_name == name) {
            return Err(site.error(
                key("alarm_name"),
                Some(r.alarm_name.span()),
                format!("duplicate alarm name `{name}`"),
            ));
        }
        let alarm_description = match r.alarm_description {
            Some(d) if d.get_ref().len() > MAX_ALARM_DESCRIPTION => {
                return Err(site.error(
                    key("alarm_description"),
                    Some(d.span()),
                    format!("must be at most {MAX_ALARM_DESCRIPTION} characters"),
                ));
            }
            Some(d) if d.get_ref().is_empty() => None,
            Some(d) => Some(d.into_inner()),
            None => None,
        };
        let metric_name = r.metric_name.get_ref().clone();
        if metric_name.is_empty() || metric_name.len() > 255 {
            return Err(site.error(
                key("metric_name"),
                Some(r.metric_name.span()),
                format!("`{metric_name}` must be 1 to 255 characters"),
            ));
        }
        let metric_namespace = match r.metric_namespace {
            Some(ns) if ns.get_ref().is_empty() || ns.get_ref().len() > 255 => {
                return Err(site.error(
                    key("metric_namespace"),
                    Some(ns.span()),
                    format!("`{}` must be 1 to 255 characters", ns.get_ref()),
                ));
            }
            Some(ns) => ns.into_inner(),
            None => namespace_of(&metric_name).ok_or_else(|| {
                site.error(
                    key("metric_namespace"),
                    Some(r.metric_name.span()),
                    format!("no metric filter publishes `{metric_name}`; give `metric_namespace`"),
                )
            })?,
        };
        let period = match &r.period {
            None => 60,
            Some(p) if *p.get_ref() % 60 != 0 => {
                return Err(site.error(
                    key("period"),
                    Some(p.span()),
                    format!(
                        "{} is not a multiple of 60 (the metrics are published per minute)",
                        p.get_ref()
                    ),
                ));
            }
            Some(p) => check_range(
                p,
                &key("period"),
                60..=MAX_EVALUATION_SECONDS,
                "must be a multiple of 60 between 60 and 86400",
                site,
            )?,
        };
        let evaluation_periods = match &r.evaluation_periods {
            None => 1,
            Some(e) => check_range(
                e,
                &key("evaluation_periods"),
                1..=MAX_EVALUATION_SECONDS / i64::from(period),
                "must be at least 1, with period × evaluation_periods at most 86400",
                site,
            )?,
        };
        let datapoints_to_alarm = match &r.datapoints_to_alarm {
            None => evaluation_periods,
            Some(d) => check_range(
                d,
                &key("datapoints_to_alarm"),
                1..=i64::from(evaluation_periods),
                "must be between 1 and `evaluation_periods`",
                site,
            )?,
        };
        let threshold = match r.threshold {
            None => 5.0,
            Some(t) if !t.get_ref().is_finite() => {
                return Err(site.error(
                    key("threshold"),
                    Some(t.span()),
                    "must be a finite number",
                ));
            }
            Some(t) => *t.get_ref(),
        };
        let mut alarm_actions = Vec::new();
        if let Some(actions) = r.alarm_actions {
            let span = actions.span();
            for a in actions.into_inner() {
                if !a.get_ref().starts_with("arn:") || a.get_ref().split(':').count() < 6 {
                    return Err(site.error(
                        key("alarm_actions"),
                        Some(a.span()),
                        format!("`{}` is not an ARN", a.get_ref()),
                    ));
                }
                if alarm_actions.contains(a.get_ref()) {
                    return Err(site.error(
                        key("alarm_actions"),
                        Some(a.span()),
                        format!("`{}` is listed twice", a.get_ref()),
                    ));
                }
                alarm_actions.push(a.into_inner());
            }
            if alarm_actions.len() > MAX_ACTIONS {
                return Err(site.error(
                    key("alarm_actions"),
                    Some(span),
                    format!("at most {MAX_ACTIONS} actions (CloudWatch's limit)"),
                ));
            }
        }
        out.push(Alarm {
            alarm_name: name,
            alarm_description,
            metric_name,
            metric_namespace,
            statistic: r.statistic.unwrap_or(Statistic::Sum),
            period,
            evaluation_periods,
            datapoints_to_alarm,
            threshold,
            comparison_operator: r
                .comparison_operator
                .unwrap_or(ComparisonOperator::GreaterThanThreshold),
            treat_missing_data: r.treat_missing_data.unwrap_or(TreatMissingData::Missing),
            alarm_actions,
        });
    }
    Ok(out)
}

fn seed_alarm(alarm: &str, metric: &str, namespace: String) -> Alarm {
    Alarm {
        alarm_name: alarm.to_string(),
        alarm_description: None,
        metric_name: metric.to_string(),
        metric_namespace: namespace,
        statistic: Statistic::Sum,
        period: 60,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: 5.0,
        comparison_operator: ComparisonOperator::GreaterThanThreshold,
        treat_missing_data: TreatMissingData::Missing,
        alarm_actions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ComparisonOperator, Config, ConfigError, Notifications, TreatMissingData};

    fn err(text: &str) -> ConfigError {
        Config::from_toml_str(text, None).expect_err("config must be rejected")
    }

    #[test]
    fn defaults_are_the_seed_alarms_and_a_heartbeat() {
        let c = Config::defaults();
        let names: Vec<&str> = c.alarms.iter().map(|a| a.alarm_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "FailedPasswordMetricsAlarm",
                "InvalidUserMetricsAlarm",
                "ClosedConnectionMetricsAlarm"
            ]
        );
        for a in &c.alarms {
            assert_eq!(
                (a.period, a.evaluation_periods, a.datapoints_to_alarm),
                (60, 1, 1)
            );
            assert_eq!(a.threshold, 5.0);
            assert_eq!(
                a.comparison_operator,
                ComparisonOperator::GreaterThanThreshold
            );
            assert_eq!(a.treat_missing_data, TreatMissingData::Missing);
            assert_eq!(a.metric_namespace, "SSH");
        }
        let hb = c
            .heartbeat
            .to_alarm(&c.metrics)
            .expect("heartbeat alarm on by default");
        assert_eq!(hb.metric_name, "LinesRead");
        assert_eq!(hb.treat_missing_data, TreatMissingData::Breaching);
        assert_eq!((hb.evaluation_periods, hb.datapoints_to_alarm), (5, 5));
        assert!(c.dashboard.enabled);
    }

    #[test]
    fn alarm_actions_default_to_the_topic() {
        let c = Config::from_toml_str(
            "[notifications]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n\
             [[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n\
             [[alarms]]\nalarm_name = \"B\"\nmetric_name = \"InvalidUserMetrics\"\n\
             alarm_actions = [\"arn:aws:sns:us-east-1:123456789012:other\"]\n",
            None,
        )
        .expect("valid");
        let Some(Notifications::TopicArn(topic)) = &c.notifications else {
            panic!("topic arn")
        };
        assert_eq!(
            c.alarms[0].actions(Some(topic)),
            std::slice::from_ref(topic)
        );
        assert_eq!(
            c.alarms[1].actions(Some(topic)),
            ["arn:aws:sns:us-east-1:123456789012:other"]
        );
        assert!(c.alarms[0].actions(None).is_empty());
    }

    #[test]
    fn bad_alarm_values_name_their_key() {
        let base = "[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n";
        let cases = [
            (
                "comparison_operator = \"Bigger\"\n",
                "alarms[0].comparison_operator",
                4,
            ),
            ("period = 90\n", "alarms[0].period", 4),
            ("period = 0\n", "alarms[0].period", 4),
            (
                "evaluation_periods = 2000\n",
                "alarms[0].evaluation_periods",
                4,
            ),
            (
                "evaluation_periods = 2\ndatapoints_to_alarm = 3\n",
                "alarms[0].datapoints_to_alarm",
                5,
            ),
            ("statistic = \"p99\"\n", "alarms[0].statistic", 4),
            (
                "treat_missing_data = \"Missing\"\n",
                "alarms[0].treat_missing_data",
                4,
            ),
            (
                "alarm_actions = [\"topic\"]\n",
                "alarms[0].alarm_actions",
                4,
            ),
        ];
        for (extra, key, line) in cases {
            let e = err(&format!("{base}{extra}"));
            assert_eq!(e.key, key, "{extra}: {e}");
            assert_eq!(e.line, Some(line), "{extra}: {e}");
        }
        let e = err("[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"Nope\"\n");
        assert_eq!(e.key, "alarms[0].metric_namespace");
    }

    #[test]
    fn notifications_need_a_topic() {
        let e = err("[notifications]\nemail = \"ops@example.com\"\n");
        assert_eq!(e.key, "notifications.sns_topic_arn");
        assert!(e.message.contains("sns_topic_name"), "{e}");
        let e = err(
            "[notifications]\nsns_topic_arn = \"arn:aws:sns:us-east-1:1:t\"\nemail = \"a@b.c\"\n",
        );
        assert_eq!(e.key, "notifications.email");
        let e = err("[notifications]\nsns_topic_arn = \"arn:aws:sqs:us-east-1:1:t\"\n");
        assert_eq!(e.key, "notifications.sns_topic_arn");
        let e = err("[notifications]\nsns_topic_name = \"t\"\nemail = \"nobody\"\n");
        assert_eq!(e.key, "notifications.email");
        let c = Config::from_toml_str(
            "[notifications]\nsns_topic_name = \"t\"\nemail = \"a@b.c\"\n",
            None,
        )
        .expect("valid");
        assert_eq!(
            c.notifications,
            Some(Notifications::CreateTopic {
                name: "t".into(),
                email: Some("a@b.c".into())
            })
        );
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
