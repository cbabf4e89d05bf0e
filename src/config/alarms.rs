//! `[[alarms]]`: the CloudWatch alarms `sshwatch bootstrap` puts, keyed like `put-metric-alarm`'s
//! arguments, with the seed's three as defaults.

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::{Chars, Entry, MAX_CLOUDWATCH_NAME, NameRule, Unique};
use crate::config::spelling::api_enum;
use crate::config::{ConfigError, ErrorSite, MetricFilter};

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
const SEED_ALARMS: [(&str, &str); 3] = [
    ("FailedPasswordMetricsAlarm", "FailedPasswordMetrics"),
    ("InvalidUserMetricsAlarm", "InvalidUserMetrics"),
    ("ClosedConnectionMetricsAlarm", "ClosedConnectionMetrics"),
];

/// The period of every metric sshwatch publishes, in seconds: one minute. An alarm's period is a
/// whole number of them (PutMetricAlarm itself takes 10, 30 or any multiple of 60 seconds).
pub(crate) const MINUTE_SECONDS: i32 = 60;
/// The longest span an alarm may evaluate, in seconds: `Period × EvaluationPeriods` is at most one
/// day (CloudWatch API Reference, PutMetricAlarm, `EvaluationPeriods`).
pub(crate) const MAX_EVALUATION_SECONDS: i32 = 86_400;
/// The most actions an alarm state may have (CloudWatch API Reference, PutMetricAlarm,
/// `AlarmActions`).
const MAX_ACTIONS: usize = 5;
/// The longest alarm description (CloudWatch API Reference, PutMetricAlarm, `AlarmDescription`).
const MAX_ALARM_DESCRIPTION: usize = 1024;
/// The name and namespace of the metric an alarm watches: PutMetricAlarm bounds their length alone,
/// and the metric may be one sshwatch does not publish.
const WATCHED_METRIC: NameRule = NameRule::new(MAX_CLOUDWATCH_NAME, Chars::Any);

/// The seed's alarm, and what an `[[alarms]]` entry leaves out: the per-minute `Sum` above 5, one
/// breaching minute out of one, missing data neither good nor bad.
const DEFAULT_STATISTIC: Statistic = Statistic::Sum;
const DEFAULT_EVALUATION_PERIODS: i32 = 1;
const DEFAULT_THRESHOLD: f64 = 5.0;
const DEFAULT_COMPARISON_OPERATOR: ComparisonOperator = ComparisonOperator::GreaterThanThreshold;
const DEFAULT_TREAT_MISSING_DATA: TreatMissingData = TreatMissingData::Missing;

pub(crate) fn check_alarms(
    raw: Option<Vec<RawAlarm>>,
    filters: &[MetricFilter],
    site: &ErrorSite<'_>,
) -> Result<Vec<Alarm>, ConfigError> {
    let Some(raw) = raw else {
        // The seed's alarms, for those of its metrics the configured filters publish.
        return Ok(SEED_ALARMS
            .iter()
            .filter_map(|(alarm, metric)| {
                Some(seed_alarm(alarm, metric, namespace_of(filters, metric)?))
            })
            .collect());
    };
    let mut names = Unique::new("alarm name");
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| check_alarm(Entry::new("alarms", i), r, filters, &mut names, site))
        .collect()
}

/// The namespace of the first filter that publishes `metric`.
fn namespace_of(filters: &[MetricFilter], metric: &str) -> Option<String> {
    filters
        .iter()
        .find(|f| f.metric_name == metric)
        .map(|f| f.metric_namespace.clone())
}

fn seed_alarm(alarm: &str, metric: &str, namespace: String) -> Alarm {
    Alarm {
        alarm_name: alarm.to_string(),
        alarm_description: None,
        metric_name: metric.to_string(),
        metric_namespace: namespace,
        statistic: DEFAULT_STATISTIC,
        period: MINUTE_SECONDS,
        evaluation_periods: DEFAULT_EVALUATION_PERIODS,
        datapoints_to_alarm: DEFAULT_EVALUATION_PERIODS,
        threshold: DEFAULT_THRESHOLD,
        comparison_operator: DEFAULT_COMPARISON_OPERATOR,
        treat_missing_data: DEFAULT_TREAT_MISSING_DATA,
        alarm_actions: Vec::new(),
    }
}

fn check_alarm(
    entry: Entry,
    raw: RawAlarm,
    filters: &[MetricFilter],
    names: &mut Unique,
    site: &ErrorSite<'_>,
) -> Result<Alarm, ConfigError> {
    let alarm_name = site.name(
        &entry.key("alarm_name"),
        &raw.alarm_name,
        NameRule::CLOUDWATCH,
    )?;
    site.unique(
        &entry.key("alarm_name"),
        names,
        &alarm_name,
        &raw.alarm_name,
    )?;
    let alarm_description = match &raw.alarm_description {
        Some(d) => check_description(&entry.key("alarm_description"), d, site)?,
        None => None,
    };
    let metric_name = site.name(&entry.key("metric_name"), &raw.metric_name, WATCHED_METRIC)?;
    let metric_namespace = check_namespace(entry, &raw, &metric_name, filters, site)?;
    let evaluation = check_evaluation(entry, &raw, site)?;
    let threshold = match &raw.threshold {
        Some(t) => site.finite(&entry.key("threshold"), t)?,
        None => DEFAULT_THRESHOLD,
    };
    let alarm_actions = match &raw.alarm_actions {
        Some(a) => check_actions(&entry.key("alarm_actions"), a, site)?,
        None => Vec::new(),
    };
    Ok(Alarm {
        alarm_name,
        alarm_description,
        metric_name,
        metric_namespace,
        statistic: raw.statistic.unwrap_or(DEFAULT_STATISTIC),
        period: evaluation.period,
        evaluation_periods: evaluation.evaluation_periods,
        datapoints_to_alarm: evaluation.datapoints_to_alarm,
        threshold,
        comparison_operator: raw
            .comparison_operator
            .unwrap_or(DEFAULT_COMPARISON_OPERATOR),
        treat_missing_data: raw.treat_missing_data.unwrap_or(DEFAULT_TREAT_MISSING_DATA),
        alarm_actions,
    })
}

/// The namespace of the metric an alarm watches: its own `metric_namespace`, else that of the filter
/// that publishes the metric.
fn check_namespace(
    entry: Entry,
    raw: &RawAlarm,
    metric_name: &str,
    filters: &[MetricFilter],
    site: &ErrorSite<'_>,
) -> Result<String, ConfigError> {
    let key = entry.key("metric_namespace");
    match &raw.metric_namespace {
        Some(ns) => site.name(&key, ns, WATCHED_METRIC),
        None => namespace_of(filters, metric_name).ok_or_else(|| {
            site.at(
                &key,
                &raw.metric_name,
                format!("no metric filter publishes `{metric_name}`; give `metric_namespace`"),
            )
        }),
    }
}

/// A description up to CloudWatch's length; an empty one is none.
fn check_description(
    key: &str,
    value: &Spanned<String>,
    site: &ErrorSite<'_>,
) -> Result<Option<String>, ConfigError> {
    let text = value.get_ref();
    site.require(text.len() <= MAX_ALARM_DESCRIPTION, key, value, || {
        format!("must be at most {MAX_ALARM_DESCRIPTION} characters")
    })?;
    Ok(Some(text.clone()).filter(|t| !t.is_empty()))
}

/// How an alarm evaluates its metric: over which period, how many periods, how many of them breaching.
#[derive(Debug, Clone, Copy)]
struct Evaluation {
    period: i32,
    evaluation_periods: i32,
    datapoints_to_alarm: i32,
}

fn check_evaluation(
    entry: Entry,
    raw: &RawAlarm,
    site: &ErrorSite<'_>,
) -> Result<Evaluation, ConfigError> {
    let period = match &raw.period {
        None => MINUTE_SECONDS,
        Some(p) => {
            let key = entry.key("period");
            site.require(
                *p.get_ref() % i64::from(MINUTE_SECONDS) == 0,
                &key,
                p,
                || {
                    format!(
                        "{} is not a multiple of {MINUTE_SECONDS} (the metrics are published per minute)",
                        p.get_ref()
                    )
                },
            )?;
            site.in_range(
                &key,
                p,
                MINUTE_SECONDS..=MAX_EVALUATION_SECONDS,
                &format!(
                    "must be a multiple of {MINUTE_SECONDS} between {MINUTE_SECONDS} and {MAX_EVALUATION_SECONDS}"
                ),
            )?
        }
    };
    let evaluation_periods = match &raw.evaluation_periods {
        None => DEFAULT_EVALUATION_PERIODS,
        Some(e) => site.in_range(
            &entry.key("evaluation_periods"),
            e,
            1..=MAX_EVALUATION_SECONDS / period,
            &format!(
                "must be at least 1, with period × evaluation_periods at most {MAX_EVALUATION_SECONDS}"
            ),
        )?,
    };
    let datapoints_to_alarm = match &raw.datapoints_to_alarm {
        None => evaluation_periods,
        Some(d) => site.in_range(
            &entry.key("datapoints_to_alarm"),
            d,
            1..=evaluation_periods,
            "must be between 1 and `evaluation_periods`",
        )?,
    };
    Ok(Evaluation {
        period,
        evaluation_periods,
        datapoints_to_alarm,
    })
}

/// An alarm's own actions: ARNs, each once, no more than CloudWatch takes.
fn check_actions(
    key: &str,
    actions: &Spanned<Vec<Spanned<String>>>,
    site: &ErrorSite<'_>,
) -> Result<Vec<String>, ConfigError> {
    let mut seen = Unique::new("alarm action");
    let arns = actions
        .get_ref()
        .iter()
        .map(|a| {
            let arn = site.arn(key, a)?;
            site.unique(key, &mut seen, &arn, a)?;
            Ok(arn)
        })
        .collect::<Result<Vec<String>, ConfigError>>()?;
    site.require(arns.len() <= MAX_ACTIONS, key, actions, || {
        format!("at most {MAX_ACTIONS} actions (CloudWatch's limit)")
    })?;
    Ok(arns)
}

#[cfg(test)]
mod tests {
    use crate::config::{ComparisonOperator, Config, ConfigError, TreatMissingData};

    fn err(text: &str) -> ConfigError {
        Config::from_toml_str(text, None).expect_err("config must be rejected")
    }

    #[test]
    fn defaults_are_the_seed_alarms() {
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
        let Some(crate::config::Notifications::TopicArn(topic)) = &c.notifications else {
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
    fn alarm_names_and_actions_are_each_given_once() {
        let e = err(
            "[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n\
             [[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n",
        );
        assert_eq!((e.key.as_str(), e.line), ("alarms[1].alarm_name", Some(5)));
        assert_eq!(e.message, "duplicate alarm name `A`");
        let e = err(
            "[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n\
             alarm_actions = [\"arn:aws:sns:r:1:t\", \"arn:aws:sns:r:1:t\"]\n",
        );
        assert_eq!(e.key, "alarms[0].alarm_actions");
        assert_eq!(e.message, "duplicate alarm action `arn:aws:sns:r:1:t`");
    }

    #[test]
    fn an_alarm_evaluates_at_most_a_day() {
        let base = "[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n";
        let c = Config::from_toml_str(
            &format!("{base}period = 120\nevaluation_periods = 720\n"),
            None,
        )
        .expect("a day");
        assert_eq!(
            (c.alarms[0].period, c.alarms[0].evaluation_periods),
            (120, 720)
        );
        assert_eq!(c.alarms[0].datapoints_to_alarm, 720);
        let e = err(&format!("{base}period = 120\nevaluation_periods = 721\n"));
        assert_eq!(e.key, "alarms[0].evaluation_periods");
        let e = err(&format!("{base}period = 86460\n"));
        assert_eq!(
            e.message,
            "86460: must be a multiple of 60 between 60 and 86400"
        );
    }
}
