//! `sshwatch iam-policy`: least-privilege IAM policies for `run` and `bootstrap`.
//!
//! The output is one JSON object, `{"run": POLICY, "bootstrap": POLICY}`, each
//! a complete IAM policy document (`Version` + `Statement`):
//!
//! - `run` is for the instance role of every host running the daemon: ship
//!   lines to the configured log group (creating the group or stream when it
//!   is missing, as the daemon does on `ResourceNotFoundException`, and reading
//!   its own stream back after a call whose answer was lost), and, with
//!   `metrics.transport = "put_metric_data"`, `PutMetricData` restricted by the
//!   `cloudwatch:namespace` condition to the namespaces the config publishes
//!   to. With `emf` the metrics travel in log events: no CloudWatch permission.
//! - `bootstrap` is for whoever sets the account up once (`sshwatch bootstrap`,
//!   and `sshwatch verify`, whose `TestMetricFilter` cannot be scoped): the log
//!   group, its retention, the configured alarms by name, the dashboard and the
//!   topic.
//!
//! The region is `[aws] region` (else `*`); the account is always `*`, since
//! knowing it would take a call (replace it with your account id to tighten
//! the policy further). The list and describe actions that IAM cannot scope
//! to one resource (`DescribeLogGroups`, `DescribeAlarms`, `ListTopics`,
//! `PutMetricData`) get the narrowest resource IAM accepts for them.

use std::io::Write;

use serde_json::{Value, json};

use crate::config::{Config, MetricsTransport, Notifications};

/// Prints both policies as JSON.
pub(crate) fn print(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &policies(config))?;
    writeln!(out)?;
    Ok(())
}

/// `{"run": POLICY, "bootstrap": POLICY}` for `config`.
pub(crate) fn policies(config: &Config) -> Value {
    json!({ "run": run_policy(config), "bootstrap": bootstrap_policy(config) })
}

/// The ARN partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

struct Arns {
    partition: &'static str,
    region: String,
}

impl Arns {
    fn new(config: &Config) -> Arns {
        let region = config.aws.region.clone().unwrap_or_else(|| "*".to_string());
        Arns {
            partition: partition(&region),
            region,
        }
    }

    /// The log group itself and everything under it (its streams): IAM names
    /// log groups both with and without the `:*` suffix, depending on the action.
    fn log_group(&self, name: &str) -> Vec<String> {
        let base = format!(
            "arn:{}:logs:{}:*:log-group:{name}",
            self.partition, self.region
        );
        vec![base.clone(), format!("{base}:*")]
    }

    fn all_log_groups(&self) -> String {
        format!("arn:{}:logs:{}:*:log-group:*", self.partition, self.region)
    }

    fn alarm(&self, name: &str) -> String {
        format!(
            "arn:{}:cloudwatch:{}:*:alarm:{name}",
            self.partition, self.region
        )
    }

    /// Dashboards are global: their ARNs have no region.
    fn dashboard(&self, name: &str) -> String {
        format!("arn:{}:cloudwatch::*:dashboard/{name}", self.partition)
    }

    fn topic(&self, name: &str) -> String {
        format!("arn:{}:sns:{}:*:{name}", self.partition, self.region)
    }
}

fn policy(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

fn allow(sid: &str, actions: &[&str], resources: Value) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources })
}

fn run_policy(config: &Config) -> Value {
    let arns = Arns::new(config);
    let mut namespaces: Vec<&str> = config
        .metric_filters
        .iter()
        .map(|f| f.metric_namespace.as_str())
        .chain(std::iter::once(config.metrics.namespace.as_str()))
        .collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let mut statements = vec![allow(
        "ShipLogLines",
        &[
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "logs:GetLogEvents",
        ],
        json!(arns.log_group(&config.logs.log_group_name)),
    )];
    if config.metrics.transport == MetricsTransport::PutMetricData {
        let mut put_metrics = allow("PublishMetrics", &["cloudwatch:PutMetricData"], json!("*"));
        put_metrics["Condition"] =
            json!({ "StringEquals": { "cloudwatch:namespace": namespaces } });
        statements.push(put_metrics);
    }
    policy(statements)
}

fn bootstrap_policy(config: &Config) -> Value {
    let arns = Arns::new(config);
    let group = arns.log_group(&config.logs.log_group_name);
    let mut alarm_names: Vec<&str> = config
        .alarms
        .iter()
        .map(|a| a.alarm_name.as_str())
        .collect();
    if config.heartbeat.to_alarm(&config.metrics).is_some() {
        alarm_names.push(&config.heartbeat.alarm_name);
    }
    let mut statements = vec![
        allow(
            "FindLogGroup",
            &["logs:DescribeLogGroups"],
            json!(arns.all_log_groups()),
        ),
        allow(
            "ManageLogGroup",
            &[
                "logs:CreateLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
            ],
            json!(group),
        ),
        // Without resource types in IAM: `sshwatch verify` needs it.
        allow("VerifyPatterns", &["logs:TestMetricFilter"], json!("*")),
    ];
    if !alarm_names.is_empty() {
        statements.push(allow(
            "ReadAlarms",
            &["cloudwatch:DescribeAlarms"],
            json!(arns.alarm("*")),
        ));
        let alarms: Vec<String> = alarm_names.iter().map(|n| arns.alarm(n)).collect();
        statements.push(allow(
            "PutAlarms",
            &["cloudwatch:PutMetricAlarm"],
            json!(alarms),
        ));
    }
    if config.dashboard.enabled {
        statements.push(allow(
            "ManageDashboard",
            &["cloudwatch:GetDashboard", "cloudwatch:PutDashboard"],
            json!(arns.dashboard(&config.dashboard.dashboard_name)),
        ));
    }
    match &config.notifications {
        None => {}
        Some(Notifications::TopicArn(arn)) => {
            statements.push(allow("CheckTopic", &["sns:GetTopicAttributes"], json!(arn)));
        }
        Some(Notifications::CreateTopic { name, email }) => {
            statements.push(allow("FindTopic", &["sns:ListTopics"], json!("*")));
            let mut actions = vec!["sns:CreateTopic", "sns:GetTopicAttributes"];
            if email.is_some() {
                actions.extend(["sns:ListSubscriptionsByTopic", "sns:Subscribe"]);
            }
            statements.push(allow("ManageTopic", &actions, json!(arns.topic(name))));
        }
    }
    policy(statements)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn partitions_follow_the_region() {
        assert_eq!(super::partition("us-east-1"), "aws");
        assert_eq!(super::partition("cn-north-1"), "aws-cn");
        assert_eq!(super::partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(super::partition("*"), "aws");
    }

    #[test]
    fn with_emf_the_run_policy_has_no_cloudwatch_permission() {
        let c = Config::from_toml_str("", None).expect("valid");
        let run = &super::policies(&c)["run"]["Statement"];
        assert_eq!(run.as_array().map(Vec::len), Some(1));
        assert!(!run.to_string().contains("cloudwatch:"));
        assert!(run[0]["Action"].to_string().contains("logs:GetLogEvents"));
    }

    #[test]
    fn run_policy_is_scoped_to_the_group_and_namespaces() {
        let c = Config::from_toml_str(
            "[aws]\nregion = \"eu-west-1\"\n[logs]\nlog_group_name = \"/ssh/auth\"\n[metrics]\nnamespace = \"Ops\"\ntransport = \"put_metric_data\"\n",
            None,
        )
        .expect("valid");
        let p = super::policies(&c);
        let run = &p["run"]["Statement"];
        assert_eq!(
            run[0]["Resource"][0],
            "arn:aws:logs:eu-west-1:*:log-group:/ssh/auth"
        );
        assert_eq!(
            run[0]["Resource"][1],
            "arn:aws:logs:eu-west-1:*:log-group:/ssh/auth:*"
        );
        assert_eq!(
            run[1]["Condition"]["StringEquals"]["cloudwatch:namespace"],
            serde_json::json!(["Ops", "SSH"])
        );
    }
}
