//! The CloudWatch dashboard body: one graph per metric with its alarm thresholds, plus the heartbeat.

use serde_json::{Value, json};

use crate::config::{Alarm, Config, Statistic};

/// Graph width and height in dashboard grid units (the grid is 24 wide).
const WIDTH: u32 = 12;
const HEIGHT: u32 = 6;

/// The dashboard body (CloudWatch's dashboard JSON) for `config`'s metrics and `alarms`.
///
/// Every metric a filter publishes gets a graph of its per-minute `Sum`; each
/// alarm on it is drawn as a horizontal annotation at its threshold (an alarm
/// on another statistic or period also adds that line, so the threshold is
/// read against what the alarm evaluates). The heartbeat graph shows the
/// heartbeats per minute (`SampleCount`) and the lines read (`Sum`, right axis).
pub(crate) fn body(config: &Config, alarms: &[Alarm], region: &str) -> Value {
    let mut graphs: Vec<(String, String)> = Vec::new();
    let heartbeat = config
        .metrics
        .heartbeat_metric
        .as_ref()
        .map(|m| (config.metrics.namespace.clone(), m.clone()));
    let filter_metrics = config
        .metric_filters
        .iter()
        .map(|f| (f.metric_namespace.clone(), f.metric_name.clone()));
    let alarm_metrics = alarms
        .iter()
        .map(|a| (a.metric_namespace.clone(), a.metric_name.clone()));
    for metric in filter_metrics.chain(alarm_metrics) {
        if !graphs.contains(&metric) && Some(&metric) != heartbeat.as_ref() {
            graphs.push(metric);
        }
    }

    let mut widgets = Vec::new();
    for (i, (namespace, name)) in graphs.iter().enumerate() {
        let on_metric: Vec<&Alarm> = alarms
            .iter()
            .filter(|a| &a.metric_namespace == namespace && &a.metric_name == name)
            .collect();
        let mut metrics = vec![
            json!([namespace, name, {"stat": "Sum", "period": 60, "label": format!("{name} per minute")}]),
        ];
        for a in &on_metric {
            if a.statistic != Statistic::Sum || a.period != 60 {
                metrics.push(json!([namespace, name, {
                    "stat": a.statistic.as_str(),
                    "period": a.period,
                    "label": format!("{name} ({} over {} s, as {} sees it)", a.statistic.as_str(), a.period, a.alarm_name),
                }]));
            }
        }
        let annotations: Vec<Value> = on_metric.iter().map(|a| threshold_annotation(a)).collect();
        widgets.push(graph(
            i,
            format!("{name} per minute"),
            region,
            metrics,
            annotations,
            Statistic::Sum,
        ));
    }
    if let Some((namespace, name)) = &heartbeat {
        let annotations: Vec<Value> = alarms
            .iter()
            .filter(|a| &a.metric_namespace == namespace && &a.metric_name == name)
            .map(threshold_annotation)
            .collect();
        let metrics = vec![
            json!([namespace, name, {"stat": "SampleCount", "period": 60, "label": "heartbeats per minute"}]),
            json!([namespace, name, {"stat": "Sum", "period": 60, "label": "lines read per minute", "yAxis": "right"}]),
        ];
        widgets.push(graph(
            graphs.len(),
            format!("sshwatch heartbeat ({name})"),
            region,
            metrics,
            annotations,
            Statistic::SampleCount,
        ));
    }
    json!({ "widgets": widgets })
}

fn threshold_annotation(a: &Alarm) -> Value {
    let window = if a.period == 60 {
        format!("{} of {} min", a.datapoints_to_alarm, a.evaluation_periods)
    } else {
        format!(
            "{} of {} periods of {} s",
            a.datapoints_to_alarm, a.evaluation_periods, a.period
        )
    };
    json!({
        "label": format!(
            "{} {} {} ({window})",
            a.alarm_name,
            a.comparison_operator.symbol(),
            a.threshold,
        ),
        "value": a.threshold,
    })
}

fn graph(
    index: usize,
    title: String,
    region: &str,
    metrics: Vec<Value>,
    annotations: Vec<Value>,
    stat: Statistic,
) -> Value {
    // Two graphs per row; the index is small (one per metric), so it fits in a u32.
    let index = index as u32;
    json!({
        "type": "metric",
        "x": (index % 2) * WIDTH,
        "y": (index / 2) * HEIGHT,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "stacked": false,
            "region": region,
            "stat": stat.as_str(),
            "period": 60,
            "metrics": metrics,
            "annotations": { "horizontal": annotations },
            "yAxis": { "left": { "min": 0 } },
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::bootstrap::Desired;
    use crate::config::Config;

    #[test]
    fn seed_dashboard_has_three_metric_graphs_with_thresholds_and_a_heartbeat() {
        let config = Config::defaults();
        let desired = Desired::from_config(&config).expect("desired");
        let body = super::body(&config, &desired.alarms, "eu-west-1");
        let widgets = body["widgets"].as_array().expect("widgets");
        assert_eq!(widgets.len(), 4);
        let titles: Vec<&str> = widgets
            .iter()
            .map(|w| w["properties"]["title"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            titles,
            [
                "InvalidUserMetrics per minute",
                "FailedPasswordMetrics per minute",
                "ClosedConnectionMetrics per minute",
                "sshwatch heartbeat (LinesRead)"
            ]
        );
        for w in &widgets[..3] {
            let p = &w["properties"];
            assert_eq!(p["region"], "eu-west-1");
            assert_eq!(p["metrics"][0][0], "SSH");
            assert_eq!(p["metrics"][0][2]["stat"], "Sum");
            assert_eq!(p["metrics"][0][2]["period"], 60);
            let h = p["annotations"]["horizontal"]
                .as_array()
                .expect("annotations");
            assert_eq!(h.len(), 1);
            assert_eq!(h[0]["value"], 5.0);
        }
        let hb = &widgets[3]["properties"];
        assert_eq!(hb["metrics"][0][2]["stat"], "SampleCount");
        assert_eq!(hb["annotations"]["horizontal"][0]["value"], 1.0);
        // No two widgets overlap.
        let pos: Vec<(u64, u64)> = widgets
            .iter()
            .map(|w| (w["x"].as_u64().unwrap_or(99), w["y"].as_u64().unwrap_or(99)))
            .collect();
        let mut dedup = pos.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), pos.len());
        assert!(matches!(body, Value::Object(_)));
    }
}
