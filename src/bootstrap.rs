//! `sshwatch bootstrap`: log group, retention, alarms, topic and dashboard, idempotently.
//!
//! The work is split in three: [`Desired`] is the state the config asks for
//! (pure), `plan` prints it as the calls a run would make (`--dry-run`, no
//! client is even built), and `apply` reads what exists, compares, and writes
//! only what differs, printing one line per resource:
//!
//! ```text
//! log-group secure: created (retention_in_days 30, log_group_class STANDARD)
//! sns-topic ssh-alerts: unchanged (arn:aws:sns:us-east-1:123456789012:ssh-alerts)
//! sns-subscription ops@example.com: created (pending confirmation: the address must confirm)
//! alarm FailedPasswordMetricsAlarm: updated (threshold: 5 -> 10)
//! alarm SSHWatchHeartbeatAlarm: unchanged
//! dashboard sshwatch: unchanged
//! ```
//!
//! A second run with the same config reads everything and writes nothing.
//! sshwatch never deletes what it did not create: extra alarms, topics or
//! subscriptions are left alone (only a retention policy is removed, when the
//! config says `retention_in_days = -1`).

mod apply;
mod dashboard;
mod plan;

use std::io::Write;

use crate::config::{Alarm, Config, ConfigError, LogGroupClass, Notifications};

/// What the config asks to exist in AWS.
#[derive(Debug, Clone)]
pub(crate) struct Desired<'a> {
    pub config: &'a Config,
    pub log_group_name: &'a str,
    /// `None` = never expire (no retention policy).
    pub retention_in_days: Option<i32>,
    pub log_group_class: LogGroupClass,
    pub notifications: Option<&'a Notifications>,
    /// The configured alarms, then the heartbeat alarm (if on). Empty
    /// `alarm_actions` still mean "the topic", resolved once its ARN is known.
    pub alarms: Vec<Alarm>,
    /// The dashboard's name, when it is on.
    pub dashboard: Option<&'a str>,
}

impl<'a> Desired<'a> {
    /// The desired state; fails (before any call) when the heartbeat alarm's
    /// name collides with a configured alarm.
    pub(crate) fn from_config(config: &'a Config) -> Result<Desired<'a>, ConfigError> {
        let mut alarms = config.alarms.clone();
        if let Some(hb) = config.heartbeat.to_alarm(&config.metrics) {
            if alarms.iter().any(|a| a.alarm_name == hb.alarm_name) {
                return Err(ConfigError {
                    path: config.path.clone(),
                    key: "heartbeat.alarm_name".to_string(),
                    line: None,
                    message: format!(
                        "`{}` is also the name of an `[[alarms]]` entry; give the heartbeat alarm another name",
                        hb.alarm_name
                    ),
                });
            }
            alarms.push(hb);
        }
        Ok(Desired {
            config,
            log_group_name: &config.logs.log_group_name,
            retention_in_days: config.logs.retention_in_days,
            log_group_class: config.logs.log_group_class,
            notifications: config.notifications.as_ref(),
            alarms,
            dashboard: config
                .dashboard
                .enabled
                .then_some(config.dashboard.dashboard_name.as_str()),
        })
    }
}

/// Creates or updates every configured resource (or prints the plan when `dry_run`).
pub(crate) async fn run(config: &Config, dry_run: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let desired = Desired::from_config(config)?;
    if dry_run {
        let plan = plan::plan(&desired, plan::region_without_calls(config).as_deref());
        serde_json::to_writer_pretty(&mut *out, &plan)?;
        writeln!(out)?;
        return Ok(());
    }
    let sdk = crate::aws::sdk_config(&config.aws).await;
    apply::apply(&desired, &sdk, out).await
}
