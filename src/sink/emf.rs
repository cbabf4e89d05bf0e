//! A minute's datums as CloudWatch embedded metric format (EMF) log events, pure.
//!
//! CloudWatch Logs extracts metrics from events of this shape in a Standard-class log group (see
//! "Specification: Embedded metric format" in the CloudWatch user guide): a JSON object whose `_aws`
//! member holds the `Timestamp` (milliseconds) and one `CloudWatchMetrics` directive per namespace, each
//! naming its metrics, with every metric's value a member of the object itself. sshwatch publishes no
//! dimensions, so each directive has one empty dimension set, and the metrics are exactly those
//! PutMetricData would carry: same namespaces, names, values and unit (`Count`), one-minute resolution.
//!
//! A minute is one event, unless two namespaces use the same metric name (each name is one member of the
//! object) or a namespace has more than [`MAX_METRICS_PER_DIRECTIVE`] metrics: then it is several.
//!
//! The events ride in the lines' own batches ([`with_minutes`]), at their head: CloudWatch takes the metric's
//! time from `_aws.Timestamp`, so the log event itself carries the batch's first timestamp and the batch
//! stays in chronological order.

use serde_json::{Map, Value, json};

use crate::counter::Datum;
use crate::sink::batch::{EVENT_OVERHEAD, EventBatch, MAX_BATCH_BYTES, MAX_BATCH_EVENTS};

/// The most metrics one directive may name.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;

/// The unit of every metric sshwatch publishes.
const UNIT: &str = "Count";

/// One-minute (standard) resolution.
const STORAGE_RESOLUTION: u32 = 60;

/// The EMF events of `minute` (Unix seconds, floored to the minute) holding `datums`, in order; none
/// when there are no datums. Repeated `(namespace, name)` pairs are summed.
pub fn events(minute: i64, datums: &[Datum]) -> Vec<String> {
    let minute = minute.div_euclid(60) * 60;
    let mut out: Vec<Draft> = Vec::new();
    for (namespace, name, value) in datums {
        let i = match out.iter().position(|d| d.takes(namespace, name)) {
            Some(i) => i,
            None => {
                out.push(Draft::default());
                out.len() - 1
            }
        };
        out[i].add(namespace, name, *value);
    }
    out.into_iter().map(|d| d.into_event(minute)).collect()
}

/// `lines` (a batch of log lines, or none) with the EMF events of `minutes` at its head, and how many
/// there are; `None` when they do not fit in one PutLogEvents call with the lines. The events carry the
/// first line's timestamp, or `now_ms` without lines.
pub fn with_minutes(
    minutes: &[(i64, Vec<Datum>)],
    lines: Option<&EventBatch>,
    now_ms: i64,
) -> Option<(EventBatch, usize)> {
    let head: Vec<String> = minutes
        .iter()
        .flat_map(|(minute, datums)| events(*minute, datums))
        .collect();
    let empty = EventBatch::new();
    let lines = lines.unwrap_or(&empty);
    let bytes: usize = head.iter().map(|e| e.len() + EVENT_OVERHEAD).sum();
    if head.len() + lines.len() > MAX_BATCH_EVENTS || bytes + lines.bytes() > MAX_BATCH_BYTES {
        return None;
    }
    let timestamp = lines.iter().next().map_or(now_ms, |(ts, _)| ts);
    let mut out = EventBatch::new();
    for event in &head {
        out.push(timestamp, event);
    }
    for (i, (ts, message)) in lines.iter().enumerate() {
        out.push_piece(ts, message, lines.continues(i));
    }
    Some((out, head.len()))
}

/// One event being put together: its directives (namespace, metric names) and its root members.
#[derive(Default)]
struct Draft {
    directives: Vec<(String, Vec<String>)>,
    root: Map<String, Value>,
}

impl Draft {
    /// Whether `(namespace, name)` fits this event: the same metric again (summed), or a new name in a
    /// directive with room.
    fn takes(&self, namespace: &str, name: &str) -> bool {
        match self.directives.iter().find(|(ns, _)| ns == namespace) {
            Some((_, names)) if names.iter().any(|n| n == name) => true,
            Some((_, names)) => {
                names.len() < MAX_METRICS_PER_DIRECTIVE && !self.root.contains_key(name)
            }
            None => !self.root.contains_key(name),
        }
    }

    fn add(&mut self, namespace: &str, name: &str, value: f64) {
        let d = match self.directives.iter().position(|(ns, _)| ns == namespace) {
            Some(d) => d,
            None => {
                self.directives.push((namespace.to_owned(), Vec::new()));
                self.directives.len() - 1
            }
        };
        let names = &mut self.directives[d].1;
        if names.iter().any(|n| n == name) {
            let sum = self.root.get(name).and_then(Value::as_f64).unwrap_or(0.0) + value;
            self.root.insert(name.to_owned(), number(sum));
        } else {
            names.push(name.to_owned());
            self.root.insert(name.to_owned(), number(value));
        }
    }

    fn into_event(mut self, minute: i64) -> String {
        let directives: Vec<Value> = self
            .directives
            .into_iter()
            .map(|(namespace, names)| {
                let metrics: Vec<Value> = names
                    .into_iter()
                    .map(|n| json!({"Name": n, "Unit": UNIT, "StorageResolution": STORAGE_RESOLUTION}))
                    .collect();
                json!({"Namespace": namespace, "Dimensions": [[]], "Metrics": metrics})
            })
            .collect();
        self.root.insert(
            "_aws".to_owned(),
            json!({"Timestamp": minute.saturating_mul(1000), "CloudWatchMetrics": directives}),
        );
        Value::Object(self.root).to_string()
    }
}

/// A JSON number, integral when the value is (counts print as `3`, not `3.0`).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::batch::MAX_EVENT_BYTES;

    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    /// Checks `event` against the embedded metric format specification and its JSON schema (CloudWatch
    /// user guide); returns `(namespace, name, value)` of every metric it publishes.
    fn validate(event: &str) -> Vec<(String, String, f64)> {
        assert!(
            event.len() <= MAX_EVENT_BYTES,
            "an event is at most 256 KiB"
        );
        let root: Value = serde_json::from_str(event).expect("a JSON object, nothing around it");
        let root = root.as_object().expect("the root node is an object");
        let aws = root["_aws"].as_object().expect("`_aws` is an object");
        assert!(aws["Timestamp"].is_i64(), "Timestamp: integer milliseconds");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        let mut published = Vec::new();
        for d in directives {
            let d = d.as_object().expect("a MetricDirective is an object");
            for key in d.keys() {
                assert!(["Namespace", "Dimensions", "Metrics"].contains(&key.as_str()));
            }
            let ns = d["Namespace"].as_str().expect("Namespace is a string");
            assert!((1..=1024).contains(&ns.len()));
            let sets = d["Dimensions"].as_array().expect("Dimensions is an array");
            assert!(!sets.is_empty(), "at least one dimension set");
            for set in sets {
                let set = set.as_array().expect("a DimensionSet is an array");
                assert!(set.len() <= 30);
                for key in set {
                    let key = key.as_str().expect("dimension keys are strings");
                    let target = root[key].as_str().expect("a dimension target is a string");
                    assert!(target.len() <= 1024);
                }
            }
            let metrics = d["Metrics"].as_array().expect("Metrics is an array");
            assert!(metrics.len() <= MAX_METRICS_PER_DIRECTIVE);
            for m in metrics {
                let m = m.as_object().expect("a MetricDefinition is an object");
                let name = m["Name"].as_str().expect("Name is a string");
                assert!((1..=1024).contains(&name.len()));
                if let Some(unit) = m.get("Unit") {
                    assert!(UNITS.contains(&unit.as_str().expect("Unit is a string")));
                }
                if let Some(r) = m.get("StorageResolution") {
                    assert!([1, 60].contains(&r.as_i64().expect("an integer")));
                }
                let value = root[name].as_f64().expect("a metric target is a number");
                published.push((ns.to_owned(), name.to_owned(), value));
            }
        }
        published
    }

    #[test]
    fn a_minute_is_one_valid_event_with_every_metric_zeros_included() {
        let datums = vec![
            ("SSH".into(), "InvalidUserMetrics".into(), 7.0),
            ("SSH".into(), "FailedPasswordMetrics".into(), 0.0),
            ("SSH".into(), "ClosedConnectionMetrics".into(), 2.5),
            ("SSH".into(), "LinesRead".into(), 42.0),
        ];
        let events = events(1_700_000_059, &datums);
        assert_eq!(events.len(), 1);
        assert_eq!(validate(&events[0]), datums);
        let v: Value = serde_json::from_str(&events[0]).unwrap_or_default();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_040_000i64);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Count"
        );
        assert!(events[0].contains("\"InvalidUserMetrics\":7"));
    }

    #[test]
    fn namespaces_get_their_own_directive_and_clashing_names_their_own_event() {
        let datums: Vec<Datum> = vec![
            ("SSH".into(), "A".into(), 1.0),
            ("Other".into(), "B".into(), 2.0),
            ("Other".into(), "A".into(), 3.0),
            ("SSH".into(), "A".into(), 1.0),
        ];
        let events = events(0, &datums);
        assert_eq!(events.len(), 2);
        let mut all: Vec<(String, String, f64)> = events.iter().flat_map(|e| validate(e)).collect();
        all.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        assert_eq!(
            all,
            vec![
                ("Other".into(), "A".into(), 3.0),
                ("Other".into(), "B".into(), 2.0),
                ("SSH".into(), "A".into(), 2.0),
            ]
        );
    }

    #[test]
    fn minutes_ride_at_the_head_of_the_lines_in_order() {
        let datums: Vec<Datum> = vec![("SSH".into(), "A".into(), 1.0)];
        let minutes = vec![(60, datums.clone()), (120, datums.clone())];
        let mut lines = EventBatch::new();
        lines.push(200_000, "line one");
        lines.push_piece(200_500, "piece", true);
        lines.push(200_600, "rest");
        let (batch, head) = with_minutes(&minutes, Some(&lines), 999_999).expect("fits");
        assert_eq!(head, 2);
        assert!(crate::sink::batch::check_batch(&batch).is_ok());
        let events: Vec<(i64, &str)> = batch.iter().collect();
        assert_eq!(events[0].0, 200_000);
        assert_eq!(events[1].0, 200_000);
        assert_eq!(validate(events[0].1), datums);
        assert_eq!(
            &events[2..],
            &[(200_000, "line one"), (200_500, "piece"), (200_600, "rest")]
        );
        assert!(batch.continues(3) && !batch.continues(4));
        // Alone, they carry the time they are sent.
        let (alone, n) = with_minutes(&minutes, None, 999_999).expect("fits");
        assert_eq!((alone.len(), n), (2, 2));
        assert!(alone.iter().all(|(ts, _)| ts == 999_999));
        // No room in a full batch.
        let mut full = EventBatch::new();
        for i in 0..MAX_BATCH_EVENTS {
            full.push(i as i64, "x");
        }
        assert!(with_minutes(&minutes, Some(&full), 0).is_none());
    }

    #[test]
    fn more_than_100_metrics_take_several_events() {
        let datums: Vec<Datum> = (0..250)
            .map(|i| ("SSH".into(), format!("M{i}"), f64::from(i)))
            .collect();
        let events = events(60, &datums);
        assert_eq!(events.len(), 3);
        let all: Vec<(String, String, f64)> = events.iter().flat_map(|e| validate(e)).collect();
        assert_eq!(all, datums);
        assert!(super::events(60, &[]).is_empty());
    }
}
