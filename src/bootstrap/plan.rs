//! `bootstrap --dry-run`: every AWS call a run would make, with its parameters, as JSON, without calling anything.

use serde_json::{Value, json};

use crate::bootstrap::Desired;
use crate::config::{Alarm, Config, Notifications};

/// Stands for the ARN that `CreateTopic` returns (it holds the account id, which only a call can tell).
const TOPIC_ARN_PLACEHOLDER: &str = "${CreateTopic.TopicArn}";
/// Stands for the region when neither the config nor the environment names one.
const REGION_PLACEHOLDER: &str = "${region}";

/// The region from `[aws] region`, `AWS_REGION` or `AWS_DEFAULT_REGION`, without
/// asking a profile file or the instance metadata service (which would be a call).
pub(crate) fn region_without_calls(config: &Config) -> Option<String> {
    config.aws.region.clone().or_else(|| {
        ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    })
}

fn call(service: &str, operation: &str, parameters: Value, when: &str) -> Value {
    json!({ "service": service, "operation": operation, "parameters": parameters, "when": when })
}

/// The plan: the calls in the order a run makes them. Reads always happen;
/// each write carries `when`, the condition under which the run makes it.
pub(crate) fn plan(d: &Desired<'_>, region: Option<&str>) -> Value {
    let mut calls = Vec::new();
    let group = d.log_group_name;
    calls.push(call(
        "logs",
        "DescribeLogGroups",
        json!({ "logGroupNamePrefix": group }),
        "always",
    ));
    calls.push(call(
        "logs",
        "CreateLogGroup",
        json!({ "logGroupName": group, "logGroupClass": d.log_group_class.as_str() }),
        "the log group does not exist",
    ));
    match d.retention_in_days {
        Some(days) => calls.push(call(
            "logs",
            "PutRetentionPolicy",
            json!({ "logGroupName": group, "retentionInDays": days }),
            "the log group is new or its retention differs",
        )),
        None => calls.push(call(
            "logs",
            "DeleteRetentionPolicy",
            json!({ "logGroupName": group }),
            "the log group has a retention policy (the config says never expire)",
        )),
    }

    let topic_arn: Option<String> = match d.notifications {
        None => None,
        Some(Notifications::TopicArn(arn)) => {
            calls.push(call(
                "sns",
                "GetTopicAttributes",
                json!({ "TopicArn": arn }),
                "always (the topic must exist)",
            ));
            Some(arn.clone())
        }
        Some(Notifications::CreateTopic { name, email }) => {
            calls.push(call("sns", "ListTopics", json!({}), "always"));
            calls.push(call(
                "sns",
                "CreateTopic",
                json!({ "Name": name }),
                "no topic of that name exists",
            ));
            if let Some(email) = email {
                calls.push(call(
                    "sns",
                    "ListSubscriptionsByTopic",
                    json!({ "TopicArn": TOPIC_ARN_PLACEHOLDER }),
                    "the topic already existed",
                ));
                calls.push(call(
                    "sns",
                    "Subscribe",
                    json!({ "TopicArn": TOPIC_ARN_PLACEHOLDER, "Protocol": "email", "Endpoint": email }),
                    "the topic has no email subscription for this address",
                ));
            }
            Some(TOPIC_ARN_PLACEHOLDER.to_string())
        }
    };

    if !d.alarms.is_empty() {
        let names: Vec<&str> = d.alarms.iter().map(|a| a.alarm_name.as_str()).collect();
        calls.push(call(
            "cloudwatch",
            "DescribeAlarms",
            json!({ "AlarmNames": names, "AlarmTypes": ["MetricAlarm"] }),
            "always",
        ));
    }
    for a in &d.alarms {
        calls.push(call(
            "cloudwatch",
            "PutMetricAlarm",
            alarm_parameters(a, topic_arn.as_deref()),
            "the alarm does not exist or any of these parameters differs",
        ));
    }

    if let Some(name) = d.dashboard {
        let body =
            super::dashboard::body(d.config, &d.alarms, region.unwrap_or(REGION_PLACEHOLDER));
        calls.push(call(
            "cloudwatch",
            "GetDashboard",
            json!({ "DashboardName": name }),
            "always",
        ));
        calls.push(call(
            "cloudwatch",
            "PutDashboard",
            json!({ "DashboardName": name, "DashboardBody": body.to_string() }),
            "the dashboard does not exist or its body differs",
        ));
    }

    json!({
        "dry_run": true,
        "region": region,
        "calls": calls,
    })
}

/// `PutMetricAlarm`'s parameters for `a`, as the API names them.
pub(crate) fn alarm_parameters(a: &Alarm, topic_arn: Option<&str>) -> Value {
    let mut p = json!({
        "AlarmName": a.alarm_name,
        "ActionsEnabled": true,
        "AlarmActions": a.actions(topic_arn),
        "OKActions": [],
        "InsufficientDataActions": [],
        "MetricName": a.metric_name,
        "Namespace": a.metric_namespace,
        "Statistic": a.statistic.as_str(),
        "Dimensions": [],
        "Period": a.period,
        "EvaluationPeriods": a.evaluation_periods,
        "DatapointsToAlarm": a.datapoints_to_alarm,
        "Threshold": a.threshold,
        "ComparisonOperator": a.comparison_operator.as_str(),
        "TreatMissingData": a.treat_missing_data.as_str(),
    });
    if let (Some(desc), Some(map)) = (&a.alarm_description, p.as_object_mut()) {
        map.insert("AlarmDescription".to_string(), json!(desc));
    }
    p
}

#[cfg(test)]
mod tests {
    use crate::bootstrap::Desired;
    use crate::config::Config;

    #[test]
    fn plan_lists_every_call_in_order() {
        let config = Config::from_toml_str(
            "[logs]\nretention_in_days = 30\n[notifications]\nsns_topic_name = \"t\"\nemail = \"a@b.c\"\n",
            None,
        )
        .expect("valid");
        let d = Desired::from_config(&config).expect("desired");
        let plan = super::plan(&d, Some("us-east-1"));
        let ops: Vec<&str> = plan["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|c| c["operation"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            ops,
            [
                "DescribeLogGroups",
                "CreateLogGroup",
                "PutRetentionPolicy",
                "ListTopics",
                "CreateTopic",
                "ListSubscriptionsByTopic",
                "Subscribe",
                "DescribeAlarms",
                "PutMetricAlarm",
                "PutMetricAlarm",
                "PutMetricAlarm",
                "PutMetricAlarm",
                "GetDashboard",
                "PutDashboard"
            ]
        );
        let put = &plan["calls"][8]["parameters"];
        assert_eq!(put["AlarmName"], "FailedPasswordMetricsAlarm");
        assert_eq!(put["AlarmActions"][0], super::TOPIC_ARN_PLACEHOLDER);
        assert_eq!(put["Threshold"], 5.0);
    }
}
