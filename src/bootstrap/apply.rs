//! The calls: read what exists, compare with [`Desired`], write only what differs, one report line per resource.

use std::fmt::Display;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::MetricAlarm;
use serde_json::Value;
use tracing::warn;

use crate::bootstrap::Desired;
use crate::config::{Alarm, LogGroupClass, Notifications};

/// `DescribeAlarms` takes at most this many names per call.
const DESCRIBE_ALARMS_BATCH: usize = 100;
/// Spacing between `PutMetricAlarm` calls: its quota is 3 per second per region.
const PUT_ALARM_SPACING: Duration = Duration::from_millis(350);

/// What happened to one resource.
enum Outcome {
    Created(String),
    Updated(Vec<String>),
    Unchanged(String),
}

fn report(out: &mut dyn Write, kind: &str, name: &str, outcome: &Outcome) -> anyhow::Result<()> {
    match outcome {
        Outcome::Created(d) if d.is_empty() => writeln!(out, "{kind} {name}: created")?,
        Outcome::Created(d) => writeln!(out, "{kind} {name}: created ({d})")?,
        Outcome::Updated(changes) => {
            writeln!(out, "{kind} {name}: updated ({})", changes.join("; "))?
        }
        Outcome::Unchanged(d) if d.is_empty() => writeln!(out, "{kind} {name}: unchanged")?,
        Outcome::Unchanged(d) => writeln!(out, "{kind} {name}: unchanged ({d})")?,
    }
    out.flush()?;
    Ok(())
}

/// An SDK error with its whole chain (service code and message included).
fn sdk_error<E>(operation: &str, subject: &str, e: E) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow!("{}", aws_sdk_cloudwatch::error::DisplayErrorContext(&e))
        .context(format!("`{operation}` for `{subject}` failed"))
}

fn change(field: &str, from: impl Display, to: impl Display) -> String {
    format!("{field}: {from} -> {to}")
}

fn retention_text(days: Option<i32>) -> String {
    days.map_or_else(|| "never expire".to_string(), |d| d.to_string())
}

/// Reads, compares and writes every resource of `d`.
pub(crate) async fn apply(
    d: &Desired<'_>,
    sdk: &SdkConfig,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);

    log_group(&logs, d, out).await?;
    let topic_arn = match d.notifications {
        None => None,
        Some(n) => Some(topic(&sns, n, out).await?),
    };
    alarms(&cloudwatch, &d.alarms, topic_arn.as_deref(), out).await?;
    if let Some(name) = d.dashboard {
        let region = sdk.region().map(|r| r.to_string()).context(
            "no AWS region: set `aws.region` in the config or AWS_REGION (the dashboard's graphs name it)",
        )?;
        let body = super::dashboard::body(d.config, &d.alarms, &region);
        dashboard(&cloudwatch, name, &body, out).await?;
    }
    Ok(())
}

async fn log_group(
    logs: &aws_sdk_cloudwatchlogs::Client,
    d: &Desired<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let name = d.log_group_name;
    let mut existing = None;
    let mut pages = logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeLogGroups", name, e))?;
        if let Some(g) = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        {
            existing = Some(g.clone());
            break;
        }
    }
    let class = d.log_group_class.as_str();

    let Some(group) = existing else {
        let created = logs
            .create_log_group()
            .log_group_name(name)
            .log_group_class(aws_sdk_cloudwatchlogs::types::LogGroupClass::from(class))
            .send()
            .await;
        if let Err(e) = created {
            // Someone else created it since we looked: compare on the next run.
            let raced = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception());
            if !raced {
                return Err(sdk_error("CreateLogGroup", name, e));
            }
        }
        if let Some(days) = d.retention_in_days {
            put_retention(logs, name, days).await?;
        }
        let detail = format!(
            "retention_in_days {}, log_group_class {class}",
            retention_text(d.retention_in_days)
        );
        return report(out, "log-group", name, &Outcome::Created(detail));
    };

    let mut changes = Vec::new();
    let have = group.retention_in_days();
    if have != d.retention_in_days {
        match d.retention_in_days {
            Some(days) => put_retention(logs, name, days).await?,
            None => {
                logs.delete_retention_policy()
                    .log_group_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteRetentionPolicy", name, e))?;
            }
        }
        changes.push(change(
            "retention_in_days",
            retention_text(have),
            retention_text(d.retention_in_days),
        ));
    }
    // Groups from before log classes existed report none: they are STANDARD.
    let have_class = group
        .log_group_class()
        .map_or(LogGroupClass::Standard.as_str(), |c| c.as_str());
    let note = if have_class == class {
        String::new()
    } else {
        warn!(log_group = %name, existing = %have_class, configured = %class, "log group class differs and cannot be changed");
        let emf = if d.config.metrics.transport == crate::config::MetricsTransport::Emf
            && have_class != LogGroupClass::Standard.as_str()
        {
            "; with `metrics.transport = \"emf\"` CloudWatch extracts no metrics from this group, so the alarms would never see data"
        } else {
            ""
        };
        format!(
            "WARNING: its log_group_class is {have_class}, the config says {class}; a log group's class is fixed at creation, so this was not changed (delete the group and run bootstrap again to change it){emf}"
        )
    };
    let outcome = if changes.is_empty() {
        Outcome::Unchanged(note)
    } else {
        if !note.is_empty() {
            changes.push(note);
        }
        Outcome::Updated(changes)
    };
    report(out, "log-group", name, &outcome)
}

async fn put_retention(
    logs: &aws_sdk_cloudwatchlogs::Client,
    name: &str,
    days: i32,
) -> anyhow::Result<()> {
    logs.put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map_err(|e| sdk_error("PutRetentionPolicy", name, e))?;
    Ok(())
}

/// Makes sure the topic (and the email subscription) exist; returns the topic's ARN.
async fn topic(
    sns: &aws_sdk_sns::Client,
    n: &Notifications,
    out: &mut dyn Write,
) -> anyhow::Result<String> {
    match n {
        Notifications::TopicArn(arn) => {
            let got = sns.get_topic_attributes().topic_arn(arn).send().await;
            match got {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_not_found_exception()) =>
                {
                    bail!(
                        "the SNS topic `{arn}` (`notifications.sns_topic_arn`) does not exist: create it, or give `sns_topic_name` for sshwatch to create one"
                    );
                }
                Err(e) => return Err(sdk_error("GetTopicAttributes", arn, e)),
            }
            report(
                out,
                "sns-topic",
                arn,
                &Outcome::Unchanged("existing, from sns_topic_arn".into()),
            )?;
            Ok(arn.clone())
        }
        Notifications::CreateTopic { name, email } => {
            let mut existing = None;
            let mut pages = sns.list_topics().into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| sdk_error("ListTopics", name, e))?;
                let found = page
                    .topics()
                    .iter()
                    .filter_map(|t| t.topic_arn())
                    .find(|arn| arn.rsplit_once(':').is_some_and(|(_, n)| n == name));
                if let Some(arn) = found {
                    existing = Some(arn.to_string());
                    break;
                }
            }
            let (arn, is_new) = match existing {
                Some(arn) => {
                    report(out, "sns-topic", name, &Outcome::Unchanged(arn.clone()))?;
                    (arn, false)
                }
                None => {
                    let created = sns
                        .create_topic()
                        .name(name)
                        .send()
                        .await
                        .map_err(|e| sdk_error("CreateTopic", name, e))?;
                    let arn = created
                        .topic_arn()
                        .with_context(|| format!("`CreateTopic` for `{name}` returned no ARN"))?
                        .to_string();
                    report(out, "sns-topic", name, &Outcome::Created(arn.clone()))?;
                    (arn, true)
                }
            };
            if let Some(email) = email {
                subscription(sns, &arn, email, is_new, out).await?;
            }
            Ok(arn)
        }
    }
}

async fn subscription(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    email: &str,
    topic_is_new: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !topic_is_new {
        let mut pages = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("ListSubscriptionsByTopic", topic_arn, e))?;
            let found = page.subscriptions().iter().find(|s| {
                s.protocol() == Some("email")
                    && s.endpoint().is_some_and(|e| e.eq_ignore_ascii_case(email))
            });
            if let Some(s) = found {
                let note = if s.subscription_arn() == Some("PendingConfirmation") {
                    "pending confirmation: the address must confirm before it receives alarms"
                } else {
                    "confirmed"
                };
                return report(
                    out,
                    "sns-subscription",
                    email,
                    &Outcome::Unchanged(note.into()),
                );
            }
        }
    }
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("email")
        .endpoint(email)
        .send()
        .await
        .map_err(|e| sdk_error("Subscribe", email, e))?;
    report(
        out,
        "sns-subscription",
        email,
        &Outcome::Created(
            "pending confirmation: the address must confirm before it receives alarms".into(),
        ),
    )
}

async fn alarms(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarms: &[Alarm],
    topic_arn: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut existing: Vec<MetricAlarm> = Vec::new();
    for batch in alarms.chunks(DESCRIBE_ALARMS_BATCH) {
        let names: Vec<String> = batch.iter().map(|a| a.alarm_name.clone()).collect();
        let mut pages = cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(names))
            .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("DescribeAlarms", &batch[0].alarm_name, e))?;
            existing.extend(page.metric_alarms().iter().cloned());
        }
    }
    let mut last_put: Option<tokio::time::Instant> = None;
    for a in alarms {
        let actions = a.actions(topic_arn);
        let have = existing
            .iter()
            .find(|m| m.alarm_name() == Some(a.alarm_name.as_str()));
        let outcome = match have {
            None => Outcome::Created(String::new()),
            Some(have) => {
                let changes = alarm_changes(a, &actions, have);
                if changes.is_empty() {
                    report(
                        out,
                        "alarm",
                        &a.alarm_name,
                        &Outcome::Unchanged(no_action_note(&actions)),
                    )?;
                    continue;
                }
                Outcome::Updated(changes)
            }
        };
        if let Some(t) = last_put {
            tokio::time::sleep_until(t + PUT_ALARM_SPACING).await;
        }
        last_put = Some(tokio::time::Instant::now());
        put_alarm(cloudwatch, a, actions.clone()).await?;
        let outcome = match outcome {
            Outcome::Created(_) => Outcome::Created(no_action_note(&actions)),
            other => other,
        };
        report(out, "alarm", &a.alarm_name, &outcome)?;
    }
    Ok(())
}

fn no_action_note(actions: &[String]) -> String {
    if actions.is_empty() {
        "no alarm action: add `[notifications]` or `alarm_actions` to be told".to_string()
    } else {
        String::new()
    }
}

async fn put_alarm(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    a: &Alarm,
    actions: Vec<String>,
) -> anyhow::Result<()> {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&a.alarm_name)
        .set_alarm_description(a.alarm_description.clone())
        .actions_enabled(true)
        .set_alarm_actions(Some(actions))
        .set_ok_actions(Some(Vec::new()))
        .set_insufficient_data_actions(Some(Vec::new()))
        .metric_name(&a.metric_name)
        .namespace(&a.metric_namespace)
        .statistic(Statistic::from(a.statistic.as_str()))
        .period(a.period)
        .evaluation_periods(a.evaluation_periods)
        .datapoints_to_alarm(a.datapoints_to_alarm)
        .threshold(a.threshold)
        .comparison_operator(ComparisonOperator::from(a.comparison_operator.as_str()))
        .treat_missing_data(a.treat_missing_data.as_str())
        .send()
        .await
        .map_err(|e| sdk_error("PutMetricAlarm", &a.alarm_name, e))?;
    Ok(())
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

fn opt(v: Option<impl Display>) -> String {
    v.map_or_else(|| "(none)".to_string(), |v| v.to_string())
}

/// The fields (config key names) on which `have` differs from `want`, as `key: old -> new`.
///
/// `PutMetricAlarm` replaces the whole configuration, so anything the config
/// does not set (dimensions, unit, OK and insufficient-data actions, metric
/// math) must be absent too, or the put would silently drop it.
fn alarm_changes(want: &Alarm, actions: &[String], have: &MetricAlarm) -> Vec<String> {
    let mut c = Vec::new();
    let desc = have.alarm_description().filter(|d| !d.is_empty());
    if desc != want.alarm_description.as_deref() {
        c.push(change(
            "alarm_description",
            opt(desc),
            opt(want.alarm_description.as_deref()),
        ));
    }
    if have.metric_name() != Some(want.metric_name.as_str()) {
        c.push(change(
            "metric_name",
            opt(have.metric_name()),
            &want.metric_name,
        ));
    }
    if have.namespace() != Some(want.metric_namespace.as_str()) {
        c.push(change(
            "metric_namespace",
            opt(have.namespace()),
            &want.metric_namespace,
        ));
    }
    let stat = have.statistic().map(|s| s.as_str());
    if stat != Some(want.statistic.as_str()) || have.extended_statistic().is_some() {
        let from = have.extended_statistic().or(stat);
        c.push(change("statistic", opt(from), want.statistic.as_str()));
    }
    if !have.dimensions().is_empty() {
        let dims: Vec<String> = have
            .dimensions()
            .iter()
            .map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or("")))
            .collect();
        c.push(change("dimensions", list(&dims), "[]"));
    }
    if !have.metrics().is_empty() {
        c.push(change("metrics", "(metric math)", "(a single metric)"));
    }
    if let Some(unit) = have.unit() {
        c.push(change("unit", unit.as_str(), "(none)"));
    }
    if have.period() != Some(want.period) {
        c.push(change("period", opt(have.period()), want.period));
    }
    if have.evaluation_periods() != Some(want.evaluation_periods) {
        c.push(change(
            "evaluation_periods",
            opt(have.evaluation_periods()),
            want.evaluation_periods,
        ));
    }
    // Left out, CloudWatch uses `EvaluationPeriods`.
    let datapoints = have.datapoints_to_alarm().or(have.evaluation_periods());
    if datapoints != Some(want.datapoints_to_alarm) {
        c.push(change(
            "datapoints_to_alarm",
            opt(datapoints),
            want.datapoints_to_alarm,
        ));
    }
    if have.threshold() != Some(want.threshold) {
        c.push(change("threshold", opt(have.threshold()), want.threshold));
    }
    let op = have.comparison_operator().map(|o| o.as_str());
    if op != Some(want.comparison_operator.as_str()) {
        c.push(change(
            "comparison_operator",
            opt(op),
            want.comparison_operator.as_str(),
        ));
    }
    // Left out, CloudWatch uses `missing`.
    let missing = have.treat_missing_data().unwrap_or("missing");
    if missing != want.treat_missing_data.as_str() {
        c.push(change(
            "treat_missing_data",
            missing,
            want.treat_missing_data.as_str(),
        ));
    }
    let mut have_actions = have.alarm_actions().to_vec();
    let mut want_actions = actions.to_vec();
    have_actions.sort();
    want_actions.sort();
    if have_actions != want_actions {
        c.push(change(
            "alarm_actions",
            list(have.alarm_actions()),
            list(actions),
        ));
    }
    if !have.ok_actions().is_empty() {
        c.push(change("ok_actions", list(have.ok_actions()), "[]"));
    }
    if !have.insufficient_data_actions().is_empty() {
        c.push(change(
            "insufficient_data_actions",
            list(have.insufficient_data_actions()),
            "[]",
        ));
    }
    if have.actions_enabled() == Some(false) {
        c.push(change("actions_enabled", false, true));
    }
    c
}

async fn dashboard(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    body: &Value,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let got = cloudwatch.get_dashboard().dashboard_name(name).send().await;
    let outcome = match got {
        Ok(d) => {
            let have = d
                .dashboard_body()
                .and_then(|b| serde_json::from_str::<Value>(b).ok());
            if have.as_ref().map(canonical) == Some(canonical(body)) {
                return report(out, "dashboard", name, &Outcome::Unchanged(String::new()));
            }
            Outcome::Updated(vec!["body".to_string()])
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_dashboard_not_found_error()) =>
        {
            Outcome::Created(String::new())
        }
        Err(e) => return Err(sdk_error("GetDashboard", name, e)),
    };
    let put = cloudwatch
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("PutDashboard", name, e))?;
    report(out, "dashboard", name, &outcome)?;
    for m in put.dashboard_validation_messages() {
        warn!(dashboard = %name, path = m.data_path().unwrap_or(""), message = m.message().unwrap_or(""), "dashboard validation message");
        writeln!(
            out,
            "dashboard {name}: warning at {}: {}",
            m.data_path().unwrap_or("(body)"),
            m.message().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `v` with every number as a float, so `5` and `5.0` compare equal (key order never matters).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| v.clone(), Value::from),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic};

    use crate::config::Config;

    fn seed_alarm_as_aws_has_it() -> MetricAlarm {
        seed_alarm_builder().build()
    }

    fn seed_alarm_builder() -> aws_sdk_cloudwatch::types::builders::MetricAlarmBuilder {
        MetricAlarm::builder()
            .alarm_name("FailedPasswordMetricsAlarm")
            .actions_enabled(true)
            .alarm_actions("arn:aws:sns:us-east-1:123456789012:t")
            .metric_name("FailedPasswordMetrics")
            .namespace("SSH")
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .datapoints_to_alarm(1)
            .threshold(5.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("missing")
    }

    #[test]
    fn identical_alarm_has_no_changes_and_each_difference_is_named() {
        let config = Config::defaults();
        let want = &config.alarms[0];
        let actions = vec!["arn:aws:sns:us-east-1:123456789012:t".to_string()];
        assert!(super::alarm_changes(want, &actions, &seed_alarm_as_aws_has_it()).is_empty());

        let mut changed = want.clone();
        changed.threshold = 10.0;
        assert_eq!(
            super::alarm_changes(&changed, &actions, &seed_alarm_as_aws_has_it()),
            ["threshold: 5 -> 10"]
        );

        let drifted = seed_alarm_builder()
            .dimensions(Dimension::builder().name("InstanceId").value("i-1").build())
            .ok_actions("arn:aws:sns:us-east-1:123456789012:ok")
            .treat_missing_data("breaching")
            .build();
        let c = super::alarm_changes(want, &actions, &drifted);
        assert_eq!(
            c,
            [
                "dimensions: [InstanceId=i-1] -> []",
                "treat_missing_data: breaching -> missing",
                "ok_actions: [arn:aws:sns:us-east-1:123456789012:ok] -> []"
            ]
        );
        assert_eq!(
            super::alarm_changes(want, &[], &seed_alarm_as_aws_has_it()),
            ["alarm_actions: [arn:aws:sns:us-east-1:123456789012:t] -> []"]
        );
    }

    #[test]
    fn canonical_ignores_number_spelling_and_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"a": 5, "b": [1.0, {"c": 2}]}"#).unwrap_or_default();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"b": [1, {"c": 2.0}], "a": 5.0}"#).unwrap_or_default();
        assert_eq!(super::canonical(&a), super::canonical(&b));
        let c: serde_json::Value =
            serde_json::from_str(r#"{"b": [1, {"c": 3}], "a": 5.0}"#).unwrap_or_default();
        assert_ne!(super::canonical(&a), super::canonical(&c));
    }
}
