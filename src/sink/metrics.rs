//! [`MetricsSink`]: the only caller of PutMetricData. One call per minute carries every datum of that
//! minute (unit `Count`, storage resolution 60, timestamp = the minute), retried like the logs sink.
//!
//! PutMetricData takes one namespace per call and at most [`MAX_DATUMS_PER_CALL`] datums, so a minute
//! whose datums span several namespaces (or more than 1000 metrics) takes one call per namespace and
//! chunk; with the usual single `SSH` namespace it is exactly one call. Datums CloudWatch would refuse
//! are dropped with an ERROR before sending: a minute more than 14 days old or more than 2 hours ahead,
//! values that are not finite or beyond ±2^360.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};
use tokio::sync::watch;
use tracing::error;

use crate::sink::SinkStats;
use crate::sink::retry::{
    Backoff, Failure, Retrier, Shutdown, Verdict, client_retry_config, client_timeout_config,
    or_shutdown,
};

/// One datum of a minute: `(namespace, metric name, value)`.
pub type Datum = (String, String, f64);

/// PutMetricData: most datums (distinct metrics) per call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// CloudWatch refuses datapoints older than two weeks.
pub const MAX_AGE_SECS: i64 = 14 * 24 * 3600;
/// CloudWatch refuses datapoints more than two hours ahead.
pub const MAX_AHEAD_SECS: i64 = 2 * 3600;
/// Kept from both edges, for the time the call takes and a little clock skew.
const EDGE_MARGIN_SECS: i64 = 300;
/// Largest magnitude CloudWatch accepts (2^360).
const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833_3e108;
/// Storage resolution of every datum: standard, one-minute.
const STORAGE_RESOLUTION: i32 = 60;

/// What became of one minute's datums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsOutcome {
    /// PutMetricData calls CloudWatch accepted.
    pub calls: u32,
    /// Datums in accepted calls.
    pub published: usize,
    /// Datums not sent (too old/new, not finite) or in calls CloudWatch refused; not retried.
    pub dropped: usize,
    /// Why, when some were dropped.
    pub reason: Option<String>,
    /// Failed attempts that were tried again.
    pub retries: u32,
}

/// One PutMetricData call: a namespace and up to [`MAX_DATUMS_PER_CALL`] `(name, value)` pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub namespace: String,
    pub values: Vec<(String, f64)>,
}

/// Groups `datums` by namespace (first appearance order), sums repeated `(namespace, name)` pairs,
/// leaves out values CloudWatch refuses and chunks by [`MAX_DATUMS_PER_CALL`]. Returns the calls and the
/// datums left out.
pub fn plan(datums: &[Datum]) -> (Vec<Call>, Vec<Datum>) {
    let mut groups: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut left_out = Vec::new();
    for (ns, name, value) in datums {
        if !value.is_finite() || value.abs() > MAX_MAGNITUDE {
            left_out.push((ns.clone(), name.clone(), *value));
            continue;
        }
        let i = match groups.iter().position(|(n, _)| n == ns) {
            Some(i) => i,
            None => {
                groups.push((ns.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let values = &mut groups[i].1;
        match values.iter_mut().find(|(n, _)| n == name) {
            Some(v) => v.1 += value,
            None => values.push((name.clone(), *value)),
        }
    }
    let mut calls = Vec::new();
    for (namespace, values) in groups {
        for chunk in values.chunks(MAX_DATUMS_PER_CALL) {
            calls.push(Call {
                namespace: namespace.clone(),
                values: chunk.to_vec(),
            });
        }
    }
    (calls, left_out)
}

/// Why CloudWatch would refuse datapoints of `minute` at `now` (unix seconds), if it would.
pub fn timestamp_problem(minute: i64, now: i64) -> Option<String> {
    if minute < now - MAX_AGE_SECS + EDGE_MARGIN_SECS {
        return Some(format!(
            "the minute is {} s old; CloudWatch refuses datapoints older than 14 days",
            now - minute
        ));
    }
    if minute > now + MAX_AHEAD_SECS - EDGE_MARGIN_SECS {
        return Some(format!(
            "the minute is {} s ahead; CloudWatch refuses datapoints more than 2 hours ahead",
            minute - now
        ));
    }
    None
}

/// See the module documentation.
#[derive(Debug)]
pub struct MetricsSink {
    client: Client,
    backoff: Backoff,
    stats: Arc<SinkStats>,
}

impl MetricsSink {
    pub fn new(sdk: &SdkConfig) -> MetricsSink {
        let conf = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .retry_config(client_retry_config())
            .timeout_config(client_timeout_config())
            .build();
        MetricsSink {
            client: Client::from_conf(conf),
            backoff: Backoff::DEFAULT,
            stats: Arc::new(SinkStats::default()),
        }
    }

    /// Replaces the retry timing ([`Backoff::DEFAULT`]).
    pub fn with_backoff(mut self, backoff: Backoff) -> MetricsSink {
        self.backoff = backoff;
        self
    }

    /// The sink's counters (`calls`, `items` = datums, `retries`, `rejected` = datums dropped).
    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    /// Publishes the datums of `minute` (unix seconds; floored to the minute) and says what became of
    /// them. Returns when every call was accepted or refused for good, or `Err(Shutdown)` as soon as
    /// `shutdown` turns `true` (calls accepted before that are not undone: with several namespaces the
    /// caller may publish some of them twice).
    pub async fn put(
        &self,
        minute: i64,
        datums: &[Datum],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<MetricsOutcome, Shutdown> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.put_at(minute, datums, now, shutdown).await
    }

    async fn put_at(
        &self,
        minute: i64,
        datums: &[Datum],
        now: i64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<MetricsOutcome, Shutdown> {
        let minute = minute.div_euclid(60) * 60;
        let mut outcome = MetricsOutcome::default();
        if datums.is_empty() {
            return Ok(outcome);
        }
        if let Some(reason) = timestamp_problem(minute, now) {
            self.drop_datums(minute, datums, reason, &mut outcome);
            return Ok(outcome);
        }
        let (calls, left_out) = plan(datums);
        if !left_out.is_empty() {
            let reason = "values that are not finite or beyond ±2^360".to_owned();
            self.drop_datums(minute, &left_out, reason, &mut outcome);
        }
        for call in calls {
            self.put_call(minute, call, &mut outcome, shutdown).await?;
        }
        Ok(outcome)
    }

    async fn put_call(
        &self,
        minute: i64,
        call: Call,
        outcome: &mut MetricsOutcome,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), Shutdown> {
        let timestamp = aws_smithy_types::DateTime::from_secs(minute);
        let data: Vec<MetricDatum> = call
            .values
            .iter()
            .map(|(name, value)| {
                MetricDatum::builder()
                    .metric_name(name)
                    .value(*value)
                    .unit(StandardUnit::Count)
                    .storage_resolution(STORAGE_RESOLUTION)
                    .timestamp(timestamp)
                    .build()
            })
            .collect();
        let mut retrier = Retrier::new("PutMetricData", self.backoff, &self.stats, shutdown);
        loop {
            let send = self
                .client
                .put_metric_data()
                .namespace(&call.namespace)
                .set_metric_data(Some(data.clone()))
                .send();
            let failure = match or_shutdown(send, shutdown).await? {
                Ok(_) => break,
                Err(e) => Failure::of(&e),
            };
            match failure.verdict {
                Verdict::Retry | Verdict::RetryAfterFix => retrier.wait(&failure).await?,
                // No resource to create for metrics: a "not found" cannot be fixed by sending again.
                Verdict::NotFound | Verdict::Reject => {
                    outcome.retries += retrier.retries();
                    let datums: Vec<Datum> = call
                        .values
                        .iter()
                        .map(|(n, v)| (call.namespace.clone(), n.clone(), *v))
                        .collect();
                    self.drop_datums(minute, &datums, failure.reason(), outcome);
                    return Ok(());
                }
            }
        }
        outcome.retries += retrier.retries();
        outcome.calls += 1;
        outcome.published += call.values.len();
        self.stats.add_accepted(call.values.len(), 0);
        Ok(())
    }

    fn drop_datums(
        &self,
        minute: i64,
        datums: &[Datum],
        reason: String,
        outcome: &mut MetricsOutcome,
    ) {
        error!(
            minute,
            datums = ?datums,
            reason = %reason,
            "dropping metric datapoints CloudWatch does not accept"
        );
        self.stats.add_rejected(datums.len());
        outcome.dropped += datums.len();
        if outcome.reason.is_none() {
            outcome.reason = Some(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ns: &str, name: &str, v: f64) -> Datum {
        (ns.into(), name.into(), v)
    }

    #[test]
    fn one_namespace_is_one_call_in_order() {
        let (calls, out) = plan(&[
            d("SSH", "A", 1.0),
            d("SSH", "B", 0.0),
            d("SSH", "LinesRead", 7.0),
        ]);
        assert!(out.is_empty());
        assert_eq!(
            calls,
            vec![Call {
                namespace: "SSH".into(),
                values: vec![
                    ("A".into(), 1.0),
                    ("B".into(), 0.0),
                    ("LinesRead".into(), 7.0)
                ],
            }]
        );
    }

    #[test]
    fn namespaces_split_calls_and_repeats_are_summed() {
        let (calls, _) = plan(&[d("SSH", "A", 1.0), d("Other", "X", 2.0), d("SSH", "A", 3.0)]);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].namespace, "SSH");
        assert_eq!(calls[0].values, vec![("A".into(), 4.0)]);
        assert_eq!(calls[1].namespace, "Other");
    }

    #[test]
    fn more_than_1000_datums_are_chunked() {
        let datums: Vec<Datum> = (0..2500).map(|i| d("SSH", &format!("M{i}"), 1.0)).collect();
        let (calls, _) = plan(&datums);
        let sizes: Vec<usize> = calls.iter().map(|c| c.values.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let (calls, _) = plan(&datums[..1000]);
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn values_cloudwatch_refuses_are_left_out() {
        let (calls, out) = plan(&[
            d("SSH", "A", f64::NAN),
            d("SSH", "B", f64::INFINITY),
            d("SSH", "C", 1e200),
            d("SSH", "D", 2.0),
        ]);
        assert_eq!(out.len(), 3);
        assert_eq!(calls[0].values, vec![("D".into(), 2.0)]);
    }

    #[test]
    fn minutes_outside_cloudwatchs_window_are_refused() {
        let now = 1_700_000_000;
        assert_eq!(timestamp_problem(now - 60, now), None);
        assert_eq!(timestamp_problem(now - 13 * 24 * 3600, now), None);
        assert!(timestamp_problem(now - 14 * 24 * 3600, now).is_some());
        assert!(timestamp_problem(now + 3 * 3600, now).is_some());
        assert_eq!(timestamp_problem(now + 3600, now), None);
    }

    #[tokio::test]
    async fn an_old_minute_is_dropped_without_a_call() {
        // No endpoint at all: a call would fail (and be retried forever); none is made.
        let sdk = SdkConfig::builder().build();
        let sink = MetricsSink::new(&sdk);
        let (_tx, rx) = watch::channel(false);
        let now = 1_700_000_000;
        let out = sink
            .put_at(now - 15 * 24 * 3600, &[d("SSH", "A", 1.0)], now, &rx)
            .await;
        let out = out.unwrap_or_default();
        assert_eq!((out.calls, out.dropped), (0, 1));
        assert!(out.reason.unwrap_or_default().contains("14 days"));
        assert_eq!(sink.stats().snapshot().rejected, 1);
    }
}
