//! `[notifications]`: the SNS topic the alarms notify, an existing one or one `sshwatch bootstrap`
//! creates.

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::{Chars, NameRule};
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

/// SNS topic names: 1 to 256 ASCII letters, digits, `_` and `-` (Amazon SNS API Reference,
/// CreateTopic).
const TOPIC_NAME: NameRule = NameRule::new(256, Chars::Word);

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
                return Err(site.at(
                    "notifications.email",
                    email,
                    "`email` needs `sns_topic_name` (sshwatch subscribes it to the topic it creates)",
                ));
            }
            let arn = site.sns_topic_arn("notifications.sns_topic_arn", &arn)?;
            Ok(Some(Notifications::TopicArn(arn)))
        }
        (None, Some(name)) => {
            let name = site.name("notifications.sns_topic_name", &name, TOPIC_NAME)?;
            let email = match &raw.email {
                Some(e) => Some(check_email(e, site)?),
                None => None,
            };
            Ok(Some(Notifications::CreateTopic { name, email }))
        }
        (Some(arn), Some(_)) => Err(site.at(
            "notifications.sns_topic_arn",
            &arn,
            "give either `sns_topic_arn` or `sns_topic_name`, not both",
        )),
        (None, None) => Err(site.error(
            "notifications.sns_topic_arn",
            None,
            "missing topic: `[notifications]` needs `sns_topic_arn` (an existing topic), or `sns_topic_name` (and optionally `email`) for a topic sshwatch creates",
        )),
    }
}

/// An address SNS can subscribe: one `@`, something before it, a dot after it, no blank or
/// control character. SNS itself only finds out whether it is real when it sends the confirmation.
fn check_email(value: &Spanned<String>, site: &ErrorSite<'_>) -> Result<String, ConfigError> {
    let e = value.get_ref();
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    site.require(ok, "notifications.email", value, || {
        format!("`{e}` is not an email address")
    })?;
    Ok(e.clone())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, Notifications};

    fn err(text: &str) -> ConfigError {
        Config::from_toml_str(text, None).expect_err("config must be rejected")
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
    fn a_topic_arn_names_one_sns_topic() {
        for arn in [
            "arn:aws:sns:us-east-1:1:",
            "arn:aws:sns:us-east-1:1:t:subscription",
            "arn:aws:sns:us-east-1:1",
        ] {
            let e = err(&format!("[notifications]\nsns_topic_arn = \"{arn}\"\n"));
            assert_eq!(
                (e.key.as_str(), e.line),
                ("notifications.sns_topic_arn", Some(2)),
                "{arn}"
            );
        }
    }
}
