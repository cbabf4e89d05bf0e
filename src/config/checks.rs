//! The checks every section shares: names, numbers in a range, finite numbers, ARNs, unique names and
//! paths, as [`ErrorSite`] methods whose errors name the key and the line of the value they refuse.

use std::collections::HashSet;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use toml::Spanned;

use crate::config::{ConfigError, ErrorSite};

/// The longest metric name, namespace, alarm name or dashboard name CloudWatch accepts: 255, the
/// length limit of `MetricName`, `Namespace` and `AlarmName` in the CloudWatch API Reference for
/// PutMetricAlarm and PutMetricData, and of `DashboardName` in PutDashboard. sshwatch counts bytes,
/// which is stricter than characters for names outside ASCII.
pub(crate) const MAX_CLOUDWATCH_NAME: usize = 255;

/// The prefix of the namespaces AWS keeps for its own services; PutMetricData refuses metrics
/// published to them (CloudWatch API Reference, PutMetricData, `Namespace`).
const RESERVED_NAMESPACE_PREFIX: &str = "AWS/";

/// The characters a name may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chars {
    /// Any character: the API bounds the length alone.
    Any,
    /// Any character but a control character (a tab is one).
    Printable,
    /// ASCII letters and digits, `_` and `-`: SNS topic names (CreateTopic) and dashboard names
    /// (PutDashboard).
    Word,
    /// ASCII letters and digits, `.`, `_`, `/`, `#` and `-`: log group names (CreateLogGroup).
    LogGroup,
    /// Any character but `:` and `*`: log stream names (CreateLogStream) and metric filter names
    /// (PutMetricFilter).
    NoColonOrStar,
}

impl Chars {
    fn allows(self, c: char) -> bool {
        match self {
            Chars::Any => true,
            Chars::Printable => !c.is_control(),
            Chars::Word => c.is_ascii_alphanumeric() || c == '_' || c == '-',
            Chars::LogGroup => c.is_ascii_alphanumeric() || "._-/#".contains(c),
            Chars::NoColonOrStar => c != ':' && c != '*',
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Chars::Any => "characters",
            Chars::Printable => "printable characters",
            Chars::Word => "characters of `[A-Za-z0-9_-]`",
            Chars::LogGroup => "characters of `[A-Za-z0-9._/#-]`",
            Chars::NoColonOrStar => "characters without `:` or `*`",
        }
    }
}

/// What a name must be: 1 to `max` bytes, every character one that `chars` allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameRule {
    max: usize,
    chars: Chars,
}

impl NameRule {
    /// A CloudWatch metric name, namespace or alarm name without control characters.
    pub(crate) const CLOUDWATCH: NameRule = NameRule::new(MAX_CLOUDWATCH_NAME, Chars::Printable);

    pub(crate) const fn new(max: usize, chars: Chars) -> NameRule {
        NameRule { max, chars }
    }

    pub(crate) fn accepts(self, name: &str) -> bool {
        !name.is_empty() && name.len() <= self.max && name.chars().all(|c| self.chars.allows(c))
    }
}

/// The names met so far in one list, to refuse the second of two equal ones.
#[derive(Debug)]
pub(crate) struct Unique {
    /// What the names are, for the message: `filter name`, `alarm name`.
    what: &'static str,
    seen: HashSet<String>,
}

impl Unique {
    pub(crate) fn new(what: &'static str) -> Unique {
        Unique {
            what,
            seen: HashSet::new(),
        }
    }
}

/// One entry of an array of tables, to name its keys as `alarms[1].period`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    list: &'static str,
    index: usize,
}

impl Entry {
    pub(crate) fn new(list: &'static str, index: usize) -> Entry {
        Entry { list, index }
    }

    /// The dotted key of `field` in this entry.
    pub(crate) fn key(self, field: &str) -> String {
        format!("{}[{}].{field}", self.list, self.index)
    }
}

/// The usual message of a range check: `must be between START and END`.
pub(crate) fn between<T: Display>(range: &RangeInclusive<T>) -> String {
    format!("must be between {} and {}", range.start(), range.end())
}

/// An ARN's parts: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, where the resource may hold
/// colons itself (IAM User Guide, "Amazon Resource Names (ARNs)").
struct Arn<'a> {
    service: &'a str,
    resource: &'a str,
}

impl Arn<'_> {
    fn parse(text: &str) -> Option<Arn<'_>> {
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        match parts[..] {
            ["arn", _partition, service, _region, _account, resource] => {
                Some(Arn { service, resource })
            }
            _ => None,
        }
    }
}

impl ErrorSite<'_> {
    /// An error about `key`, placed at the line of `value`.
    pub(crate) fn at<T>(
        &self,
        key: &str,
        value: &Spanned<T>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(key, Some(value.span()), message)
    }

    /// Nothing when `ok`; otherwise an error at `value` with the message `message` builds.
    pub(crate) fn require<T>(
        &self,
        ok: bool,
        key: &str,
        value: &Spanned<T>,
        message: impl FnOnce() -> String,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.at(key, value, message()))
        }
    }

    /// The name in `value`, if it follows `rule`.
    pub(crate) fn name(
        &self,
        key: &str,
        value: &Spanned<String>,
        rule: NameRule,
    ) -> Result<String, ConfigError> {
        let name = value.get_ref();
        self.require(rule.accepts(name), key, value, || {
            format!(
                "`{name}` must be 1 to {} {}",
                rule.max,
                rule.chars.describe()
            )
        })?;
        Ok(name.clone())
    }

    /// A namespace sshwatch publishes to: a CloudWatch name outside the namespaces AWS keeps.
    pub(crate) fn own_namespace(
        &self,
        key: &str,
        value: &Spanned<String>,
    ) -> Result<String, ConfigError> {
        let namespace = self.name(key, value, NameRule::CLOUDWATCH)?;
        self.require(
            !namespace.starts_with(RESERVED_NAMESPACE_PREFIX),
            key,
            value,
            || {
                format!(
                    "namespaces starting with `{RESERVED_NAMESPACE_PREFIX}` are reserved for AWS"
                )
            },
        )?;
        Ok(namespace)
    }

    /// The number in `value`, if it lies in `range`, as the type the range is of (an `i64` of the
    /// file becomes the `i32` the API takes). The message says the rule; the value is put before it.
    pub(crate) fn in_range<R, T>(
        &self,
        key: &str,
        value: &Spanned<R>,
        range: RangeInclusive<T>,
        message: &str,
    ) -> Result<T, ConfigError>
    where
        R: Copy + Display,
        T: TryFrom<R> + PartialOrd,
    {
        let n = *value.get_ref();
        T::try_from(n)
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| self.at(key, value, format!("{n}: {message}")))
    }

    /// The number in `value`, if it is finite (CloudWatch takes no NaN or infinity).
    pub(crate) fn finite(&self, key: &str, value: &Spanned<f64>) -> Result<f64, ConfigError> {
        let n = *value.get_ref();
        self.require(n.is_finite(), key, value, || {
            "must be a finite number".to_string()
        })?;
        Ok(n)
    }

    /// The ARN in `value`, if it has an ARN's six parts.
    pub(crate) fn arn(&self, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
        let text = value.get_ref();
        self.require(Arn::parse(text).is_some(), key, value, || {
            format!("`{text}` is not an ARN")
        })?;
        Ok(text.clone())
    }

    /// The ARN in `value`, if it names an SNS topic: service `sns` and a resource that is a topic
    /// name alone (a subscription's ARN adds `:ID` to its topic's).
    pub(crate) fn sns_topic_arn(
        &self,
        key: &str,
        value: &Spanned<String>,
    ) -> Result<String, ConfigError> {
        let text = value.get_ref();
        let ok = Arn::parse(text).is_some_and(|arn| {
            arn.service == "sns" && !arn.resource.is_empty() && !arn.resource.contains(':')
        });
        self.require(ok, key, value, || {
            format!("`{text}` is not an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`)")
        })?;
        Ok(text.clone())
    }

    /// Nothing if `name` is not among the names met so far in its list (and now it is).
    pub(crate) fn unique<T>(
        &self,
        key: &str,
        names: &mut Unique,
        name: &str,
        at: &Spanned<T>,
    ) -> Result<(), ConfigError> {
        let what = names.what;
        self.require(names.seen.insert(name.to_string()), key, at, || {
            format!("duplicate {what} `{name}`")
        })
    }

    /// The path in `value`, or `default` when the key is left out; a blank path is refused.
    pub(crate) fn path(
        &self,
        key: &str,
        value: Option<Spanned<String>>,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        let Some(value) = value else {
            return Ok(PathBuf::from(default));
        };
        self.require(!value.get_ref().trim().is_empty(), key, &value, || {
            "must not be empty".to_string()
        })?;
        Ok(PathBuf::from(value.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Arn, Chars, NameRule};

    #[test]
    fn arns_have_six_parts_and_the_resource_may_hold_colons() {
        let arn = Arn::parse("arn:aws:automate:us-east-1:ec2:stop").expect("an ARN");
        assert_eq!((arn.service, arn.resource), ("automate", "stop"));
        let arn = Arn::parse("arn:aws:sns:us-east-1:1:topic:sub").expect("an ARN");
        assert_eq!(arn.resource, "topic:sub");
        assert!(Arn::parse("arn:aws:sns:us-east-1:1").is_none());
        assert!(Arn::parse("xarn:aws:sns:us-east-1:1:t").is_none());
    }

    #[test]
    fn name_rules_bound_the_length_and_the_characters() {
        let word = NameRule::new(3, Chars::Word);
        assert!(word.accepts("a-_"));
        assert!(!word.accepts(""));
        assert!(!word.accepts("abcd"));
        assert!(!word.accepts("a.b"));
        assert!(!NameRule::CLOUDWATCH.accepts("a\tb"));
        assert!(NameRule::new(3, Chars::Any).accepts("a\tb"));
        assert!(!NameRule::new(9, Chars::NoColonOrStar).accepts("a:b"));
        assert!(NameRule::new(9, Chars::LogGroup).accepts("/a#b_c.d"));
    }
}
