//! `[[metric_filters]]`: the `put-metric-filter` arguments, with the seed's three as defaults.

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

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
pub const DEFAULT_NAMESPACE: &str = "SSH";

/// The seed's three filters: `(filter_name, filter_pattern, metric_name)`.
pub const SEED_FILTERS: [(&str, &str, &str); 3] = [
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
                metric_value: MetricValue::Number(1.0),
                default_value: None,
            })
        })
        .collect()
}

/// CloudWatch's own bounds (spec: filterName ≤ 512, metricName ≤ 255, namespace ≤ 255).
const MAX_FILTER_NAME: usize = 512;
const MAX_METRIC_NAME: usize = 255;

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
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("metric_filters[{i}].{field}");
        let name = r.filter_name.get_ref().trim().to_string();
        if name.is_empty() || name.len() > MAX_FILTER_NAME {
            return Err(site.error(
                key("filter_name"),
                Some(r.filter_name.span()),
                format!("must be 1 to {MAX_FILTER_NAME} characters"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(site.error(
                key("filter_name"),
                Some(r.filter_name.span()),
                format!("duplicate filter name `{name}`"),
            ));
        }
        let pattern = FilterPattern::parse(r.filter_pattern.get_ref()).map_err(|e| {
            site.error(
                key("filter_pattern"),
                Some(r.filter_pattern.span()),
                format!(
                    "invalid filter pattern `{}`: {e}",
                    r.filter_pattern.get_ref()
                ),
            )
        })?;
        let metric_name = check_metric_name(&r.metric_name, &key("metric_name"), site)?;
        let metric_namespace = match &r.metric_namespace {
            Some(ns) => check_metric_name(ns, &key("metric_namespace"), site)?,
            None => DEFAULT_NAMESPACE.to_string(),
        };
        if metric_namespace.starts_with("AWS/") {
            return Err(site.error(
                key("metric_namespace"),
                r.metric_namespace.as_ref().map(Spanned::span),
                "namespaces starting with `AWS/` are reserved for AWS",
            ));
        }
        let metric_value = match r.metric_value {
            None => MetricValue::Number(1.0),
            Some(v) => {
                let span = v.span();
                let value = match v.into_inner() {
                    RawMetricValue::Number(n) => MetricValue::Number(n),
                    RawMetricValue::Integer(n) => MetricValue::Number(n as f64),
                    RawMetricValue::Text(t) => parse_metric_value(&t).ok_or_else(|| {
                        site.error(
                            key("metric_value"),
                            Some(span.clone()),
                            format!("`{t}` is neither a number nor a `$field` reference"),
                        )
                    })?,
                };
                if let MetricValue::Number(n) = value
                    && !n.is_finite()
                {
                    return Err(site.error(
                        key("metric_value"),
                        Some(span),
                        "must be a finite number",
                    ));
                }
                if let MetricValue::Field(f) = &value
                    && !pattern.accepts_reference(f)
                {
                    return Err(site.error(
                        key("metric_value"),
                        Some(span),
                        format!("`{f}` is not a field of the filter pattern"),
                    ));
                }
                value
            }
        };
        let default_value = match r.default_value {
            Some(d) if !d.get_ref().is_finite() => {
                return Err(site.error(
                    key("default_value"),
                    Some(d.span()),
                    "must be a finite number",
                ));
            }
            Some(d) => Some(*d.get_ref()),
            None => None,
        };
        out.push(MetricFilter {
            filter_name: name,
            filter_pattern: pattern,
            metric_name,
            metric_namespace,
            metric_value,
            default_value,
        });
    }
    Ok(out)
}

fn check_metric_name(
    value: &Spanned<String>,
    key: &str,
    site: &ErrorSite<'_>,
) -> Result<String, ConfigError> {
    let v = value.get_ref();
    if v.is_empty() || v.len() > MAX_METRIC_NAME || v.chars().any(char::is_control) {
        return Err(site.error(
            key,
            Some(value.span()),
            format!("must be 1 to {MAX_METRIC_NAME} printable characters"),
        ));
    }
    Ok(v.clone())
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
