//! `[[metric_filters]]`: the `put-metric-filter` arguments, with the seed's three as defaults.

use serde::Deserialize;
use toml::Spanned;

use crate::config::checks::{Chars, Entry, NameRule, Unique};
use crate::config::{ConfigError, ErrorSite};
use crate::pattern::FilterPattern;

/// One metric filter: a pattern and the metric its matches add to.
#[derive(Debug, Clone)]
pub struct MetricFilter {
    pub filter_name: String,
    pub filter_pattern: FilterPattern,
    pub metric_name: String,
    pub metric_namespace: String,
    pub metric_value: MetricValue,
    /// Published for a minute in which lines were read but none matched.
    pub default_value: Option<f64>,
}

/// What each match adds: a number, or the value of a `$field` of the match.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    Number(f64),
    /// `$name`, `$7` or `$.path`, as in `put-metric-filter`.
    Field(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetricFilter {
    filter_name: Spanned<String>,
    filter_pattern: Spanned<String>,
    metric_name: Spanned<String>,
    #[serde(default)]
    metric_namespace: Option<Spanned<String>>,
    #[serde(default)]
    metric_value: Option<Spanned<RawMetricValue>>,
    #[serde(default)]
    default_value: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawMetricValue {
    Number(f64),
    Integer(i64),
    Text(String),
}

/// The seed setup's namespace.
pub(crate) const DEFAULT_NAMESPACE: &str = "SSH";

/// What each match adds when `metric_value` is left out: one, as in the seed's filters.
const DEFAULT_METRIC_VALUE: f64 = 1.0;

/// Metric filter names: 1 to 512 characters, none of them `:` or `*` (CloudWatch Logs API Reference,
/// PutMetricFilter, `filterName`).
const FILTER_NAME: NameRule = NameRule::new(512, Chars::NoColonOrStar);

/// The seed's three filters: `(filter_name, filter_pattern, metric_name)`.
pub(crate) const SEED_FILTERS: [(&str, &str, &str); 3] = [
    (
        "SSHInvalidUserFilter",
        "[Mon, day, timestamp, ip, id, status = Invalid, ...]",
        "InvalidUserMetrics",
    ),
    (
        "SSHFailedPasswordFilter",
        "[Mon, day, timestamp, ip, id, msg1= Failed, msg2 = password, ...]",
        "FailedPasswordMetrics",
    ),
    (
        "SSHClosedConnectionFilter",
        "[Mon, day, timestamp, ip, id, msg1= Connection, msg2 = closed, ...]",
        "ClosedConnectionMetrics",
    ),
];

/// The seed's three metric filters, compiled.
pub fn default_metric_filters() -> Vec<MetricFilter> {
    SEED_FILTERS
        .iter()
        .filter_map(|(name, pattern, metric)| {
            Some(MetricFilter {
                filter_name: (*name).to_string(),
                filter_pattern: FilterPattern::parse(pattern).ok()?,
                metric_name: (*metric).to_string(),
                metric_namespace: DEFAULT_NAMESPACE.to_string(),
                metric_value: MetricValue::Number(DEFAULT_METRIC_VALUE),
                default_value: None,
            })
        })
        .collect()
}

pub(crate) fn check_metric_filters(
    raw: Option<Vec<RawMetricFilter>>,
    site: &ErrorSite<'_>,
) -> Result<Vec<MetricFilter>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default_metric_filters());
    };
    if raw.is_empty() {
        return Err(site.error(
            "metric_filters",
            None,
            "at least one metric filter is needed (leave the key out for the seed's three)",
        ));
    }
    let mut names = Unique::new("filter name");
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| check_metric_filter(Entry::new("metric_filters", i), r, &mut names, site))
        .collect()
}

fn check_metric_filter(
    entry: Entry,
    raw: RawMetricFilter,
    names: &mut Unique,
    site: &ErrorSite<'_>,
) -> Result<MetricFilter, ConfigError> {
    // The name is taken without the blanks around it, and so compared with the others.
    let trimmed = Spanned::new(
        raw.filter_name.span(),
        raw.filter_name.get_ref().trim().to_string(),
    );
    let filter_name = site.name(&entry.key("filter_name"), &trimmed, FILTER_NAME)?;
    site.unique(&entry.key("filter_name"), names, &filter_name, &trimmed)?;
    let pattern = FilterPattern::parse(raw.filter_pattern.get_ref()).map_err(|e| {
        site.at(
            &entry.key("filter_pattern"),
            &raw.filter_pattern,
            format!(
                "invalid filter pattern `{}`: {e}",
                raw.filter_pattern.get_ref()
            ),
        )
    })?;
    let metric_name = site.name(
        &entry.key("metric_name"),
        &raw.metric_name,
        NameRule::CLOUDWATCH,
    )?;
    let metric_namespace = match &raw.metric_namespace {
        Some(ns) => site.own_namespace(&entry.key("metric_namespace"), ns)?,
        None => DEFAULT_NAMESPACE.to_string(),
    };
    let metric_value = match raw.metric_value {
        None => MetricValue::Number(DEFAULT_METRIC_VALUE),
        Some(v) => check_metric_value(&entry.key("metric_value"), v, &pattern, site)?,
    };
    let default_value = match &raw.default_value {
        Some(d) => Some(site.finite(&entry.key("default_value"), d)?),
        None => None,
    };
    Ok(MetricFilter {
        filter_name,
        filter_pattern: pattern,
        metric_name,
        metric_namespace,
        metric_value,
        default_value,
    })
}

/// A finite number, or a `$field` reference to a field `pattern` names.
fn check_metric_value(
    key: &str,
    value: Spanned<RawMetricValue>,
    pattern: &FilterPattern,
    site: &ErrorSite<'_>,
) -> Result<MetricValue, ConfigError> {
    let span = value.span();
    let number = |n: f64| site.finite(key, &Spanned::new(span.clone(), n));
    match value.into_inner() {
        RawMetricValue::Number(n) => Ok(MetricValue::Number(number(n)?)),
        RawMetricValue::Integer(n) => Ok(MetricValue::Number(number(n as f64)?)),
        RawMetricValue::Text(t) => match parse_metric_value(&t) {
            None => Err(site.error(
                key,
                Some(span),
                format!("`{t}` is neither a number nor a `$field` reference"),
            )),
            Some(MetricValue::Field(f)) if !pattern.accepts_reference(&f) => Err(site.error(
                key,
                Some(span),
                format!("`{f}` is not a field of the filter pattern"),
            )),
            Some(value) => Ok(value),
        },
    }
}

/// `"1"`, `"2.5"` → a number; `"$size"` → a field reference.
fn parse_metric_value(text: &str) -> Option<MetricValue> {
    let t = text.trim();
    if t.len() > 1 && t.starts_with('$') {
        return Some(MetricValue::Field(t.to_string()));
    }
    t.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(MetricValue::Number)
}
