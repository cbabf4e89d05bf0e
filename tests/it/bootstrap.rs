//! `sshwatch bootstrap` and `sshwatch iam-policy` end to end against a real moto server.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::Moto;
use aws_sdk_cloudwatch::types::MetricAlarm;
use serde_json::Value;

const SEED_ALARMS: [(&str, &str); 3] = [
    ("FailedPasswordMetricsAlarm", "FailedPasswordMetrics"),
    ("InvalidUserMetricsAlarm", "InvalidUserMetrics"),
    ("ClosedConnectionMetricsAlarm", "ClosedConnectionMetrics"),
];
const HEARTBEAT_ALARM: &str = "SSHWatchHeartbeatAlarm";
const GROUP: &str = "/sshwatch/secure";
const BASE: &str = r#"
[logs]
log_group_name = "/sshwatch/secure"
retention_in_days = 30

[notifications]
sns_topic_name = "ssh-alerts"
email = "ops@example.com"
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn bootstrap(endpoint: &str, config: &Path, extra: &[&str]) -> Output {
    crate::support::sshwatch(endpoint)
        .arg("bootstrap")
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .expect("run sshwatch bootstrap")
}

fn ok_stdout(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bootstrap failed ({:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The line of `stdout` about `kind name`.
fn line<'a>(stdout: &'a str, kind: &str, name: &str) -> &'a str {
    let prefix = format!("{kind} {name}: ");
    stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {kind} {name} in:\n{stdout}"))
}

/// Everything bootstrap can touch, as the describe calls return it (Debug of the full outputs).
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    alarms: Vec<MetricAlarm>,
    log_groups: String,
    dashboards: Vec<(String, String)>,
    topics: String,
    subscriptions: String,
}

impl Snapshot {
    fn alarm(&self, name: &str) -> &MetricAlarm {
        self.alarms
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .unwrap_or_else(|| panic!("no alarm {name}"))
    }

    fn is_empty(&self) -> bool {
        self.alarms.is_empty()
            && self.dashboards.is_empty()
            && !self.log_groups.contains("log_group_name: Some")
            && !self.topics.contains("topic_arn: Some")
    }
}

async fn snapshot(moto: &Moto) -> Snapshot {
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    let mut alarms = cw
        .describe_alarms()
        .send()
        .await
        .expect("DescribeAlarms")
        .metric_alarms()
        .to_vec();
    alarms.sort_by(|a, b| a.alarm_name().cmp(&b.alarm_name()));
    let log_groups = format!(
        "{:?}",
        logs.describe_log_groups()
            .send()
            .await
            .expect("DescribeLogGroups")
            .log_groups()
    );
    let mut dashboards = Vec::new();
    let list = cw.list_dashboards().send().await.expect("ListDashboards");
    for entry in list.dashboard_entries() {
        let name = entry.dashboard_name().unwrap_or_default().to_string();
        let got = cw
            .get_dashboard()
            .dashboard_name(&name)
            .send()
            .await
            .expect("GetDashboard");
        dashboards.push((name, got.dashboard_body().unwrap_or_default().to_string()));
    }
    let topics = format!(
        "{:?}",
        sns.list_topics().send().await.expect("ListTopics").topics()
    );
    let subscriptions = format!(
        "{:?}",
        sns.list_subscriptions()
            .send()
            .await
            .expect("ListSubscriptions")
            .subscriptions()
    );
    Snapshot {
        alarms,
        log_groups,
        dashboards,
        topics,
        subscriptions,
    }
}

fn topic_arn(snap: &Snapshot) -> String {
    // moto's fixed account id.
    let arn = "arn:aws:sns:us-east-1:123456789012:ssh-alerts".to_string();
    assert!(
        snap.topics.contains(&arn),
        "topic not created: {}",
        snap.topics
    );
    arn
}

fn assert_seed_alarm(a: &MetricAlarm, metric: &str, actions: &[String]) {
    let name = a.alarm_name().unwrap_or_default();
    assert_eq!(a.metric_name(), Some(metric), "{name}");
    assert_eq!(a.namespace(), Some("SSH"), "{name}");
    assert_eq!(a.statistic().map(|s| s.as_str()), Some("Sum"), "{name}");
    assert_eq!(a.period(), Some(60), "{name}");
    assert_eq!(a.evaluation_periods(), Some(1), "{name}");
    assert_eq!(a.datapoints_to_alarm(), Some(1), "{name}");
    assert_eq!(a.threshold(), Some(5.0), "{name}");
    assert_eq!(
        a.comparison_operator().map(|o| o.as_str()),
        Some("GreaterThanThreshold"),
        "{name}"
    );
    assert_eq!(a.treat_missing_data(), Some("missing"), "{name}");
    assert_eq!(a.alarm_actions(), actions, "{name}");
    assert!(a.dimensions().is_empty(), "{name}: no dimensions");
    assert!(
        a.ok_actions().is_empty() && a.insufficient_data_actions().is_empty(),
        "{name}"
    );
    assert!(a.unit().is_none(), "{name}: no unit");
}

#[test]
fn bootstrap_creates_the_seed_setup_and_a_second_run_changes_nothing() {
    let moto = Moto::start();
    let rt = rt();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "sshwatch.toml", BASE);

    let first = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    assert_eq!(first.lines().count(), 8, "one line per resource:\n{first}");
    assert!(
        line(&first, "log-group", GROUP)
            .contains(": created (retention_in_days 30, log_group_class STANDARD)")
    );
    assert!(line(&first, "sns-topic", "ssh-alerts").contains(": created"));
    assert!(line(&first, "sns-subscription", "ops@example.com").contains(": created"));
    for (alarm, _) in SEED_ALARMS {
        assert_eq!(
            line(&first, "alarm", alarm),
            format!("alarm {alarm}: created")
        );
    }
    assert!(line(&first, "alarm", HEARTBEAT_ALARM).contains(": created"));
    assert!(line(&first, "dashboard", "sshwatch").contains(": created"));

    let after_first = rt.block_on(snapshot(&moto));
    let topic = topic_arn(&after_first);
    assert_eq!(after_first.alarms.len(), 4, "{:?}", after_first.alarms);
    for (alarm, metric) in SEED_ALARMS {
        assert_seed_alarm(
            after_first.alarm(alarm),
            metric,
            std::slice::from_ref(&topic),
        );
    }
    let hb = after_first.alarm(HEARTBEAT_ALARM);
    assert_eq!(
        (hb.namespace(), hb.metric_name()),
        (Some("SSH"), Some("LinesRead"))
    );
    assert_eq!(hb.statistic().map(|s| s.as_str()), Some("SampleCount"));
    assert_eq!(
        hb.comparison_operator().map(|o| o.as_str()),
        Some("LessThanThreshold")
    );
    assert_eq!(hb.threshold(), Some(1.0));
    assert_eq!(hb.treat_missing_data(), Some("breaching"));
    assert_eq!(
        (
            hb.period(),
            hb.evaluation_periods(),
            hb.datapoints_to_alarm()
        ),
        (Some(60), Some(5), Some(5))
    );
    assert_eq!(hb.alarm_actions(), std::slice::from_ref(&topic));

    assert!(
        after_first
            .log_groups
            .contains(&format!("log_group_name: Some(\"{GROUP}\")")),
        "{}",
        after_first.log_groups
    );
    assert!(
        after_first
            .log_groups
            .contains("retention_in_days: Some(30)"),
        "{}",
        after_first.log_groups
    );
    assert!(
        after_first.subscriptions.contains("ops@example.com"),
        "{}",
        after_first.subscriptions
    );

    assert_eq!(after_first.dashboards.len(), 1);
    let (name, body) = &after_first.dashboards[0];
    assert_eq!(name, "sshwatch");
    let body: Value = serde_json::from_str(body).expect("dashboard body is JSON");
    let widgets = body["widgets"].as_array().expect("widgets");
    for (alarm, metric) in SEED_ALARMS {
        let w = widgets
            .iter()
            .find(|w| w["properties"]["metrics"][0][1] == metric)
            .unwrap_or_else(|| panic!("no graph of {metric}"));
        assert_eq!(w["properties"]["metrics"][0][2]["stat"], "Sum");
        assert_eq!(w["properties"]["metrics"][0][2]["period"], 60);
        let h = &w["properties"]["annotations"]["horizontal"][0];
        assert_eq!(h["value"], 5.0);
        assert!(h["label"].as_str().unwrap_or_default().contains(alarm));
        assert_eq!(w["properties"]["region"], "us-east-1");
    }
    assert!(
        widgets
            .iter()
            .any(|w| w["properties"]["metrics"][0][1] == "LinesRead"),
        "heartbeat graph"
    );

    let second = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    assert_eq!(second.lines().count(), 8, "{second}");
    for l in second.lines() {
        assert!(
            l.contains(": unchanged"),
            "second run changed something: {l}\n{second}"
        );
    }
    assert_eq!(
        rt.block_on(snapshot(&moto)),
        after_first,
        "a second run must leave every resource as it was"
    );
}

#[test]
fn a_changed_threshold_updates_only_that_alarm_and_its_graph() {
    let moto = Moto::start();
    let rt = rt();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "a.toml", BASE);
    ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    let before = rt.block_on(snapshot(&moto));

    let mut changed = BASE.to_string();
    for (alarm, metric) in SEED_ALARMS {
        let threshold = if alarm == "FailedPasswordMetricsAlarm" {
            "10.0"
        } else {
            "5.0"
        };
        changed.push_str(&format!(
            "\n[[alarms]]\nalarm_name = \"{alarm}\"\nmetric_name = \"{metric}\"\nthreshold = {threshold}\n"
        ));
    }
    let config = write_config(dir.path(), "b.toml", &changed);
    let out = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    assert_eq!(
        line(&out, "alarm", "FailedPasswordMetricsAlarm"),
        "alarm FailedPasswordMetricsAlarm: updated (threshold: 5 -> 10)"
    );
    for (kind, name) in [
        ("alarm", "InvalidUserMetricsAlarm"),
        ("alarm", "ClosedConnectionMetricsAlarm"),
        ("alarm", HEARTBEAT_ALARM),
        ("log-group", GROUP),
        ("sns-topic", "ssh-alerts"),
        ("sns-subscription", "ops@example.com"),
    ] {
        assert!(
            line(&out, kind, name).contains(": unchanged"),
            "{kind} {name}:\n{out}"
        );
    }
    // The dashboard draws the thresholds, so its annotation follows.
    assert_eq!(
        line(&out, "dashboard", "sshwatch"),
        "dashboard sshwatch: updated (body)"
    );

    let after = rt.block_on(snapshot(&moto));
    assert_eq!(
        after.alarm("FailedPasswordMetricsAlarm").threshold(),
        Some(10.0)
    );
    for name in [
        "InvalidUserMetricsAlarm",
        "ClosedConnectionMetricsAlarm",
        HEARTBEAT_ALARM,
    ] {
        assert_eq!(
            after.alarm(name),
            before.alarm(name),
            "{name} must not be touched"
        );
    }
    assert_eq!(after.log_groups, before.log_groups);
    assert_eq!(after.topics, before.topics);
    assert_eq!(after.subscriptions, before.subscriptions);
    let body: Value = serde_json::from_str(&after.dashboards[0].1).expect("JSON");
    let failed = body["widgets"]
        .as_array()
        .and_then(|w| {
            w.iter()
                .find(|w| w["properties"]["metrics"][0][1] == "FailedPasswordMetrics")
        })
        .expect("graph");
    assert_eq!(
        failed["properties"]["annotations"]["horizontal"][0]["value"],
        10.0
    );

    let again = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    assert!(again.lines().all(|l| l.contains(": unchanged")), "{again}");
}

#[test]
fn dry_run_prints_every_call_and_makes_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "sshwatch.toml", BASE);

    // Nothing listens on this port: any call would fail the command.
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    let out = bootstrap(&dead, &config, &["--dry-run"]);
    let text = ok_stdout(&out);
    let plan: Value = serde_json::from_str(&text).expect("the plan is JSON");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["region"], "us-east-1");
    let calls = plan["calls"].as_array().expect("calls");
    let ops: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["service"].as_str().unwrap_or(""),
                c["operation"].as_str().unwrap_or("")
            )
        })
        .collect();
    for op in [
        "logs:DescribeLogGroups",
        "logs:CreateLogGroup",
        "logs:PutRetentionPolicy",
        "sns:ListTopics",
        "sns:CreateTopic",
        "sns:Subscribe",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:GetDashboard",
        "cloudwatch:PutDashboard",
    ] {
        assert!(
            ops.iter().any(|o| o == op),
            "{op} missing from the plan: {ops:?}"
        );
    }
    let puts: Vec<&Value> = calls
        .iter()
        .filter(|c| c["operation"] == "PutMetricAlarm")
        .collect();
    assert_eq!(puts.len(), 4);
    let p = &puts[0]["parameters"];
    assert_eq!(p["AlarmName"], "FailedPasswordMetricsAlarm");
    assert_eq!(p["Statistic"], "Sum");
    assert_eq!(p["Period"], 60);
    assert_eq!(p["Threshold"], 5.0);
    assert_eq!(p["TreatMissingData"], "missing");
    assert_eq!(calls[2]["parameters"]["retentionInDays"], 30);
    let body: Value = serde_json::from_str(
        calls
            .iter()
            .find(|c| c["operation"] == "PutDashboard")
            .expect("PutDashboard")["parameters"]["DashboardBody"]
            .as_str()
            .expect("body string"),
    )
    .expect("body JSON");
    assert!(body["widgets"].as_array().is_some_and(|w| w.len() == 4));

    // Against a live endpoint the state stays exactly as it was (empty).
    let moto = Moto::start();
    let rt = rt();
    let before = rt.block_on(snapshot(&moto));
    assert!(before.is_empty(), "{before:?}");
    let live = ok_stdout(&bootstrap(&moto.endpoint, &config, &["--dry-run"]));
    assert_eq!(live, text, "the plan does not depend on the endpoint");
    assert_eq!(rt.block_on(snapshot(&moto)), before);
}

#[test]
fn bad_config_fails_before_any_call_naming_the_key() {
    let moto = Moto::start();
    let rt = rt();
    let dir = tempfile::tempdir().expect("temp dir");
    let alarm = "[[alarms]]\nalarm_name = \"A\"\nmetric_name = \"InvalidUserMetrics\"\n";
    let cases = [
        (
            format!("{alarm}comparison_operator = \"GreaterThan\"\n"),
            "alarms[0].comparison_operator",
            "GreaterThan",
        ),
        (
            format!("{alarm}period = 90\n"),
            "alarms[0].period",
            "multiple of 60",
        ),
        (
            "[notifications]\nemail = \"ops@example.com\"\n".to_string(),
            "notifications.sns_topic_arn",
            "missing topic",
        ),
    ];
    for (i, (text, key, words)) in cases.iter().enumerate() {
        let config = write_config(dir.path(), &format!("bad{i}.toml"), text);
        for extra in [&[][..], &["--dry-run"][..]] {
            let out = bootstrap(&moto.endpoint, &config, extra);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{key} {extra:?}: {stderr}");
            assert!(
                stderr.contains(&format!("`{key}`")),
                "{key} not named: {stderr}"
            );
            assert!(stderr.contains(words), "{key}: {stderr}");
            assert!(out.stdout.is_empty(), "nothing printed before the check");
        }
    }
    assert!(
        rt.block_on(snapshot(&moto)).is_empty(),
        "a bad config must not reach AWS"
    );
}

#[test]
fn never_expire_removes_the_retention_policy_and_a_class_change_is_reported() {
    let moto = Moto::start();
    let rt = rt();
    rt.block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
        logs.create_log_group()
            .log_group_name("secure")
            .send()
            .await
            .expect("create");
        logs.put_retention_policy()
            .log_group_name("secure")
            .retention_in_days(7)
            .send()
            .await
            .expect("retention");
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "sshwatch.toml",
        "[logs]\nretention_in_days = -1\nlog_group_class = \"INFREQUENT_ACCESS\"\n[metrics]\ntransport = \"put_metric_data\"\n[dashboard]\nenabled = false\n[heartbeat]\nalarm = false\n",
    );
    let out = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    let l = line(&out, "log-group", "secure");
    assert!(
        l.starts_with("log-group secure: updated (retention_in_days: 7 -> never expire"),
        "{l}"
    );
    assert!(
        l.contains("log_group_class is STANDARD, the config says INFREQUENT_ACCESS"),
        "{l}"
    );
    assert!(l.contains("fixed at creation"), "{l}");
    // No topic configured: the alarms exist, without actions, and say so.
    assert!(
        line(&out, "alarm", "InvalidUserMetricsAlarm").contains("no alarm action"),
        "{out}"
    );
    assert!(
        !out.contains("dashboard") && !out.contains(HEARTBEAT_ALARM),
        "opted out: {out}"
    );

    let snap = rt.block_on(snapshot(&moto));
    assert!(
        snap.log_groups.contains("retention_in_days: None"),
        "{}",
        snap.log_groups
    );
    assert_eq!(snap.alarms.len(), 3);
    assert!(snap.dashboards.is_empty());
    let again = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    assert!(
        line(&again, "log-group", "secure").contains(": unchanged (WARNING"),
        "{again}"
    );
}

#[test]
fn an_existing_topic_is_used_and_explicit_actions_win() {
    let moto = Moto::start();
    let rt = rt();
    let topic = rt.block_on(async {
        let sns = aws_sdk_sns::Client::new(&moto.sdk_config().await);
        sns.create_topic()
            .name("existing")
            .send()
            .await
            .expect("topic")
            .topic_arn()
            .unwrap_or_default()
            .to_string()
    });
    let other = "arn:aws:sns:us-east-1:123456789012:pager";
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "[notifications]\nsns_topic_arn = \"{topic}\"\n[dashboard]\nenabled = false\n\
         [[alarms]]\nalarm_name = \"FailedPasswordMetricsAlarm\"\nmetric_name = \"FailedPasswordMetrics\"\n\
         [[alarms]]\nalarm_name = \"Paged\"\nmetric_name = \"InvalidUserMetrics\"\nalarm_actions = [\"{other}\"]\n"
    );
    let config = write_config(dir.path(), "sshwatch.toml", &text);
    let out = ok_stdout(&bootstrap(&moto.endpoint, &config, &[]));
    assert!(
        line(&out, "sns-topic", &topic).contains(": unchanged (existing"),
        "{out}"
    );
    let snap = rt.block_on(snapshot(&moto));
    assert_eq!(
        snap.alarm("FailedPasswordMetricsAlarm").alarm_actions(),
        std::slice::from_ref(&topic)
    );
    assert_eq!(snap.alarm("Paged").alarm_actions(), [other.to_string()]);
    assert_eq!(
        snap.alarm(HEARTBEAT_ALARM).alarm_actions(),
        std::slice::from_ref(&topic)
    );

    // A topic ARN that does not exist stops bootstrap before any alarm is put.
    let fresh = Moto::start();
    let out = bootstrap(&fresh.endpoint, &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("notifications.sns_topic_arn"),
        "{stderr}"
    );
    assert!(rt.block_on(snapshot(&fresh)).alarms.is_empty());
}

#[test]
fn iam_policy_prints_scoped_run_and_bootstrap_policies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "sshwatch.toml",
        &format!(
            "[aws]\nregion = \"eu-west-1\"\n[metrics]\nnamespace = \"SSHWatch\"\ntransport = \"put_metric_data\"\n{BASE}"
        ),
    );
    let out = crate::support::sshwatch("http://127.0.0.1:9")
        .args(["iam-policy", "--config"])
        .arg(&config)
        .output()
        .expect("run iam-policy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policies: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let keys: Vec<&String> = policies.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["run", "bootstrap"]);

    let group = "arn:aws:logs:eu-west-1:*:log-group:/sshwatch/secure";
    let statements = |p: &str| {
        policies[p]["Statement"]
            .as_array()
            .expect("statements")
            .clone()
    };
    for p in ["run", "bootstrap"] {
        assert_eq!(policies[p]["Version"], "2012-10-17");
        for s in statements(p) {
            assert_eq!(s["Effect"], "Allow");
            // Only actions IAM cannot scope get a wildcard resource.
            if s["Resource"] == "*" {
                let actions = s["Action"].as_array().expect("actions");
                for a in actions {
                    let a = a.as_str().unwrap_or_default();
                    assert!(
                        [
                            "cloudwatch:PutMetricData",
                            "logs:TestMetricFilter",
                            "sns:ListTopics"
                        ]
                        .contains(&a),
                        "{p}: `{a}` on every resource"
                    );
                }
            }
        }
    }
    let run = statements("run");
    let all_actions: Vec<&str> = run
        .iter()
        .flat_map(|s| s["Action"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        all_actions,
        [
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "logs:GetLogEvents",
            "cloudwatch:PutMetricData"
        ]
    );
    assert_eq!(
        run[0]["Resource"],
        serde_json::json!([group, format!("{group}:*")])
    );
    assert_eq!(
        run[1]["Condition"]["StringEquals"]["cloudwatch:namespace"],
        serde_json::json!(["SSH", "SSHWatch"])
    );

    let boot = statements("bootstrap");
    let by_sid = |sid: &str| {
        boot.iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no {sid}"))
            .clone()
    };
    assert_eq!(
        by_sid("ManageLogGroup")["Resource"],
        serde_json::json!([group, format!("{group}:*")])
    );
    let alarms: Vec<String> = SEED_ALARMS
        .iter()
        .map(|(a, _)| a.to_string())
        .chain([HEARTBEAT_ALARM.to_string()])
        .map(|a| format!("arn:aws:cloudwatch:eu-west-1:*:alarm:{a}"))
        .collect();
    assert_eq!(by_sid("PutAlarms")["Resource"], serde_json::json!(alarms));
    assert_eq!(
        by_sid("PutAlarms")["Action"],
        serde_json::json!(["cloudwatch:PutMetricAlarm"])
    );
    assert_eq!(
        by_sid("ManageDashboard")["Resource"],
        "arn:aws:cloudwatch::*:dashboard/sshwatch"
    );
    assert_eq!(
        by_sid("ManageTopic")["Resource"],
        "arn:aws:sns:eu-west-1:*:ssh-alerts"
    );
    let topic_actions = by_sid("ManageTopic")["Action"].clone();
    assert_eq!(
        topic_actions,
        serde_json::json!([
            "sns:CreateTopic",
            "sns:GetTopicAttributes",
            "sns:ListSubscriptionsByTopic",
            "sns:Subscribe"
        ])
    );
}
