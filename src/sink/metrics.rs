//! [`MetricsSink`]: the only caller of PutMetricData. One call carries every datum of one or more minutes
//! (unit `Count`, storage resolution 60, each datum stamped with its minute), retried like the logs sink.
//!
//! PutMetricData takes one namespace per call and at most [`MAX_DATUMS_PER_CALL`] datums, so minutes
//! whose datums span several namespaces (or more than 1000 datums) take one call per namespace and
//! chunk; with the usual single `SSH` namespace a minute is exactly one call. Datums CloudWatch would
//! refuse are dropped with an ERROR before sending: a minute more than 14 days old or more than 2 hours
//! ahead, values that are not finite or beyond ±2^360, a namespace starting with `AWS/` (reserved for AWS
//! services).

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};
use tracing::error;

use crate::counter::{Datum, MAX_VALUE};
use crate::shutdown::{Aborted, Shutdown};
use crate::sink::retry::{
    Backoff, Failure, Retrier, Verdict, client_retry_config, client_timeout_config,
};
use crate::sink::{ServerDate, SinkStats};

/// PutMetricData: most datums (distinct metrics) per call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// CloudWatch refuses datapoints older than two weeks.
pub const MAX_AGE_SECS: i64 = 14 * 24 * 3600;
/// CloudWatch refuses datapoints more than two hours ahead.
pub const MAX_AHEAD_SECS: i64 = 2 * 3600;
/// Kept from both edges, for the time the call takes and a little clock skew.
const EDGE_MARGIN_SECS: i64 = 300;
/// Storage resolution of every datum: standard, one-minute.
const STORAGE_RESOLUTION: i32 = 60;
/// Namespaces CloudWatch keeps for AWS services.
const RESERVED_NAMESPACE: &str = "AWS/";

/// What became of some minutes' datums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsOutcome {
    /// PutMetricData calls CloudWatch accepted.
    pub calls: u32,
    /// Datums in accepted calls.
    pub published: usize,
    /// Datums not sent (too old/new, not finite, reserved namespace) or in calls CloudWatch refused; not
    /// retried.
    pub dropped: usize,
    /// Why, when some were dropped.
    pub reason: Option<String>,
    /// Failed attempts that were tried again.
    pub retries: u32,
}

/// One PutMetricData call: a namespace and up to [`MAX_DATUMS_PER_CALL`] `(minute, name, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub namespace: String,
    pub values: Vec<(i64, String, f64)>,
}

/// Groups the datums of `minutes` by namespace (first appearance order), sums repeated `(minute,
/// namespace, name)`, leaves out what CloudWatch refuses and chunks by [`MAX_DATUMS_PER_CALL`]. Returns
/// the calls and the datums left out, each with its minute and why.
pub fn plan(minutes: &[(i64, Vec<Datum>)], now: i64) -> (Vec<Call>, Vec<(i64, Datum, String)>) {
    // Per namespace, first appearance order: `(minute, name, value)`.
    let mut groups: Vec<Call> = Vec::new();
    let mut left_out = Vec::new();
    for (minute, datums) in minutes {
        let minute = minute.div_euclid(60) * 60;
        let problem = timestamp_problem(minute, now);
        for (ns, name, value) in datums {
            let why = if let Some(p) = &problem {
                Some(p.clone())
            } else if !value.is_finite() || value.abs() > MAX_VALUE {
                Some("the value is not finite or beyond ±2^360".to_owned())
            } else if ns.starts_with(RESERVED_NAMESPACE) {
                Some(format!(
                    "namespaces starting with `{RESERVED_NAMESPACE}` are reserved for AWS"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                left_out.push((minute, (ns.clone(), name.clone(), *value), why));
                continue;
            }
            let i = match groups.iter().position(|g| g.namespace == *ns) {
                Some(i) => i,
                None => {
                    groups.push(Call {
                        namespace: ns.clone(),
                        values: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let values = &mut groups[i].values;
            match values
                .iter_mut()
                .find(|(m, n, _)| *m == minute && n == name)
            {
                Some(v) => v.2 += value,
                None => values.push((minute, name.clone(), *value)),
            }
        }
    }
    let mut calls = Vec::new();
    for group in groups {
        for chunk in group.values.chunks(MAX_DATUMS_PER_CALL) {
            calls.push(Call {
                namespace: group.namespace.clone(),
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
            .interceptor(ServerDate)
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

    /// Publishes the datums of `minutes` (unix seconds; floored to the minute) and says what became of
    /// them. Returns when every call was accepted or refused for good, or `Err(Aborted)` as soon as
    /// shutdown aborts (calls accepted before that are not undone: with several calls the caller may
    /// publish some of them twice).
    pub async fn put(
        &self,
        minutes: &[(i64, Vec<Datum>)],
        shutdown: &Shutdown,
    ) -> Result<MetricsOutcome, Aborted> {
        self.put_at(minutes, crate::time::SERVER_CLOCK.now_secs(), shutdown)
            .await
    }

    async fn put_at(
        &self,
        minutes: &[(i64, Vec<Datum>)],
        now: i64,
        shutdown: &Shutdown,
    ) -> Result<MetricsOutcome, Aborted> {
        let mut outcome = MetricsOutcome::default();
        let (calls, left_out) = plan(minutes, now);
        for (minute, datum, why) in left_out {
            self.drop_datums(minute, std::slice::from_ref(&datum), why, &mut outcome);
        }
        for call in calls {
            self.put_call(call, &mut outcome, shutdown).await?;
        }
        Ok(outcome)
    }

    async fn put_call(
        &self,
        call: Call,
        outcome: &mut MetricsOutcome,
        shutdown: &Shutdown,
    ) -> Result<(), Aborted> {
        let data: Vec<MetricDatum> = call
            .values
            .iter()
            .map(|(minute, name, value)| {
                MetricDatum::builder()
                    .metric_name(name)
                    .value(*value)
                    .unit(StandardUnit::Count)
                    .storage_resolution(STORAGE_RESOLUTION)
                    .timestamp(aws_smithy_types::DateTime::from_secs(*minute))
                    .build()
            })
            .collect();
        let minutes: Vec<i64> = {
            let mut m: Vec<i64> = call.values.iter().map(|v| v.0).collect();
            m.dedup();
            m
        };
        let what = match minutes.as_slice() {
            [one] => format!("the counts of minute {}", crate::time::rfc3339_secs(*one)),
            many => format!("the counts of {} minutes", many.len()),
        };
        let mut retrier = Retrier::new("PutMetricData", what, self.backoff, &self.stats, shutdown);
        loop {
            let send = self
                .client
                .put_metric_data()
                .namespace(&call.namespace)
                .set_metric_data(Some(data.clone()))
                .send();
            let failure = match retrier.attempt(send).await? {
                Ok(_) => break,
                Err(e) => Failure::of(&e),
            };
            match failure.verdict {
                Verdict::Retry | Verdict::RetryAfterFix => retrier.wait(&failure).await?,
                // No resource to create for metrics: a "not found" cannot be fixed by sending again.
                Verdict::NotFound | Verdict::Reject => {
                    outcome.retries += retrier.retries();
                    for minute in minutes {
                        let datums: Vec<Datum> = call
                            .values
                            .iter()
                            .filter(|v| v.0 == minute)
                            .map(|(_, name, value)| (call.namespace.clone(), name.clone(), *value))
                            .collect();
                        self.drop_datums(minute, &datums, failure.reason(), outcome);
                    }
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
            "dropping metric datapoints of minute {} that CloudWatch does not accept: {reason}",
            crate::time::rfc3339_secs(minute)
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

    const NOW: i64 = 1_700_000_040;

    fn d(ns: &str, name: &str, v: f64) -> Datum {
        (ns.into(), name.into(), v)
    }

    fn one(datums: Vec<Datum>) -> Vec<(i64, Vec<Datum>)> {
        vec![(NOW - 120, datums)]
    }

    #[test]
    fn one_namespace_is_one_call_in_order() {
        let (calls, out) = plan(
            &one(vec![
                d("SSH", "A", 1.0),
                d("SSH", "B", 0.0),
                d("SSH", "LinesRead", 7.0),
            ]),
            NOW,
        );
        assert!(out.is_empty());
        let m = NOW - 120;
        assert_eq!(
            calls,
            vec![Call {
                namespace: "SSH".into(),
                values: vec![
                    (m, "A".into(), 1.0),
                    (m, "B".into(), 0.0),
                    (m, "LinesRead".into(), 7.0)
                ],
            }]
        );
    }

    #[test]
    fn several_minutes_share_a_call_and_keep_their_own_timestamps() {
        let minutes = vec![
            (NOW - 180, vec![d("SSH", "A", 1.0)]),
            (NOW - 120, vec![d("SSH", "A", 2.0)]),
        ];
        let (calls, _) = plan(&minutes, NOW);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].values,
            vec![(NOW - 180, "A".into(), 1.0), (NOW - 120, "A".into(), 2.0)]
        );
    }

    #[test]
    fn namespaces_split_calls_and_repeats_are_summed() {
        let (calls, _) = plan(
            &one(vec![
                d("SSH", "A", 1.0),
                d("Other", "X", 2.0),
                d("SSH", "A", 3.0),
            ]),
            NOW,
        );
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].namespace, "SSH");
        assert_eq!(calls[0].values, vec![(NOW - 120, "A".into(), 4.0)]);
        assert_eq!(calls[1].namespace, "Other");
    }

    #[test]
    fn more_than_1000_datums_are_chunked() {
        let datums: Vec<Datum> = (0..2500).map(|i| d("SSH", &format!("M{i}"), 1.0)).collect();
        let (calls, _) = plan(&one(datums.clone()), NOW);
        let sizes: Vec<usize> = calls.iter().map(|c| c.values.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let (calls, _) = plan(&one(datums[..1000].to_vec()), NOW);
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn values_and_namespaces_cloudwatch_refuses_are_left_out() {
        let (calls, out) = plan(
            &one(vec![
                d("SSH", "A", f64::NAN),
                d("SSH", "B", f64::INFINITY),
                d("SSH", "C", 1e200),
                d("AWS/EC2", "E", 1.0),
                d("SSH", "D", 2.0),
            ]),
            NOW,
        );
        assert_eq!(out.len(), 4);
        assert!(out[3].2.contains("reserved"), "{:?}", out[3]);
        assert_eq!(calls[0].values, vec![(NOW - 120, "D".into(), 2.0)]);
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
        let out = sink
            .put_at(
                &[(NOW - 15 * 24 * 3600, vec![d("SSH", "A", 1.0)])],
                NOW,
                &Shutdown::new(),
            )
            .await;
        let out = out.unwrap_or_default();
        assert_eq!((out.calls, out.dropped), (0, 1));
        assert!(out.reason.unwrap_or_default().contains("14 days"));
        assert_eq!(sink.stats().snapshot().rejected, 1);
    }
}
