//! `[notifications]`: the SNS topic the alarms notify, an existing one or one `sshwatch bootstrap`
//! creates.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, ErrorSite};

/// Where alarms send notifications: every alarm without its own `alarm_actions`
/// (and the heartbeat alarm) notifies this topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notifications {
    /// Use an existing topic.
    TopicArn(String),
    /// Create the topic (if missing) and, with `email`, an email subscription.
    CreateTopic { name: String, email: Option<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotifications {
    sns_topic_arn: Option<Spanned<String>>,
    sns_topic_name: Option<Spanned<String>>,
    email: Option<Spanned<String>>,
}

pub(crate) fn check_notifications(
    raw: Option<RawNotifications>,
    site: &ErrorSite<'_>,
) -> Result<Option<Notifications>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    match (raw.sns_topic_arn, raw.sns_topic_name) {
        (Some(arn), None) => {
            if let Some(email) = &raw.email {
                return Err(site.error(
                    "notifications.email",
                    Some(email.span()),
                    "`email` needs `sns_topic_name` (sshwatch subscribes it to the topic it creates)",
                ));
            }
            let v = arn.get_ref();
            let parts: Vec<&str> = v.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
                return Err(site.error(
                    "notifications.sns_topic_arn",
                    Some(arn.span()),
                    format!("`{v}` is not an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`)"),
                ));
            }
            Ok(Some(Notifications::TopicArn(arn.into_inner())))
        }
        (None, Some(name)) => {
            let n = name.get_ref();
            if !valid_topic_name(n) {
                return Err(site.error(
                    "notifications.sns_topic_name",
                    Some(name.span()),
                    format!("`{n}` must be 1 to 256 characters of `[A-Za-z0-9_-]`"),
                ));
            }
            let email = match raw.email {
                Some(e) if !valid_email(e.get_ref()) => {
                    return Err(site.error(
                        "notifications.email",
                        Some(e.span()),
                        format!("`{}` is not an email address", e.get_ref()),
                    ));
                }
                Some(e) => Some(e.into_inner()),
                None => None,
            };
            Ok(Some(Notifications::CreateTopic { name: n.clone(), email }))
        }
        (Some(arn), Some(_)) => Err(site.error(
            "notifications.sns_topic_arn",
            Some(arn.span()),
            "give either `sns_topic_arn` or `sns_topic_name`, not both",
        )),
        (None, None) => Err(site.error(
            "notifications.sns_topic_arn",
            None,
            "missing topic: `[notifications]` needs `sns_topic_arn` (an existing topic), or `sns_topic_name` (and optionally `email`) for a topic sshwatch creates",
        )),
    }
}

fn valid_topic_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}
