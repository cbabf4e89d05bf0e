//! The logs and metrics sinks against a real moto server, with the fault-injecting proxy in front for
//! throttling, 5xx, refused requests and dropped connections; every check reads back from moto.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use sshwatch::config::{Config, LogGroupClass, LogsConfig};
use sshwatch::counter::{Counter, Rules};
use sshwatch::shutdown::{Aborted, Shutdown};
use sshwatch::sink::batch::{CONTINUED_MARKER, MAX_EVENT_BYTES, check_batch};
use sshwatch::sink::logs::Host;
use sshwatch::sink::{Backoff, EventBatch, LogBatcher, LogEvent, LogsSink, MetricsSink};
use sshwatch::time::minute_of;

use crate::support::proxy::{Fault, Proxy};
use crate::support::{Moto, sdk_config_for};

/// Quick retries, so a test with a handful of faults takes well under a second.
const FAST: Backoff = Backoff {
    base: Duration::from_millis(10),
    cap: Duration::from_millis(100),
};

fn logs_config(group: &str, stream: &str) -> LogsConfig {
    LogsConfig {
        log_group_name: group.to_owned(),
        log_stream_name: stream.to_owned(),
        retention_in_days: None,
        log_group_class: LogGroupClass::Standard,
        force_flush_interval: Duration::from_secs(5),
    }
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit i64")
}

fn events(n: usize, tag: &str, ts: i64) -> Vec<LogEvent> {
    (0..n)
        .map(|i| LogEvent {
            timestamp_ms: ts + i as i64 / 100,
            message: format!("{tag} line {i:06}"),
        })
        .collect()
}

/// A shutdown nobody triggers.
fn never() -> Shutdown {
    Shutdown::new()
}

/// Every message of a stream, oldest first, through GetLogEvents pagination.
async fn read_stream(sdk: &SdkConfig, group: &str, stream: &str) -> Vec<String> {
    let client = aws_sdk_cloudwatchlogs::Client::new(sdk);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let page = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .limit(10_000)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("GetLogEvents");
        let got = page.events();
        out.extend(
            got.iter()
                .map(|e| e.message().unwrap_or_default().to_owned()),
        );
        let next = page.next_forward_token().map(str::to_owned);
        if got.is_empty() || next.is_none() || next == token {
            break;
        }
        token = next;
    }
    out
}

/// The `logEvents` of every PutLogEvents request the proxy forwarded.
fn forwarded_batches(proxy: &Proxy) -> Vec<Vec<LogEvent>> {
    proxy
        .seen()
        .into_iter()
        .filter(|s| s.operation == "PutLogEvents" && s.fault == Fault::Pass)
        .map(|s| {
            let v: serde_json::Value = serde_json::from_slice(&s.body).expect("JSON body");
            v["logEvents"]
                .as_array()
                .expect("logEvents")
                .iter()
                .map(|e| LogEvent {
                    timestamp_ms: e["timestamp"].as_i64().expect("timestamp"),
                    message: e["message"].as_str().expect("message").to_owned(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn batches_arrive_in_order_and_the_group_and_stream_are_created() {
    let moto = Moto::start();
    let sdk = sdk_config_for(&moto.endpoint).await;
    let config = logs_config("sinks-order", "web-{hostname}");
    let stream = Host::discover(&sdk)
        .await
        .stream_name(&config.log_stream_name)
        .expect("stream name");
    let mut sink = LogsSink::with_stream_name(&sdk, &config, stream).with_backoff(FAST);
    assert!(sink.stream().starts_with("web-") && !sink.stream().contains('{'));

    // The group does not exist: the first batch creates group and stream, the others go straight in.
    let t = now_ms();
    let mut sent = Vec::new();
    let rx = never();
    // CloudWatch (and moto) return a stream sorted by timestamp: each batch is a second after the last.
    for (i, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let batch = events(500, tag, t + 1000 * i as i64);
        sent.extend(batch.iter().map(|e| e.message.clone()));
        let out = sink
            .put(&EventBatch::from(batch), &rx)
            .await
            .expect("not shut down");
        assert_eq!((out.calls, out.accepted, out.refused.len()), (1, 500, 0));
        assert!(out.skipped.is_empty());
    }
    let stream = sink.stream().to_owned();
    assert_eq!(read_stream(&sdk, "sinks-order", &stream).await, sent);
    let stats = sink.stats().snapshot();
    assert_eq!((stats.calls, stats.items, stats.retries), (3, 1500, 0));
    assert_eq!(
        stats.bytes,
        sent.iter().map(|m| m.len() as u64 + 26).sum::<u64>()
    );
}

#[tokio::test]
async fn inputs_over_10000_events_or_1_mib_are_split_into_valid_calls() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    let mut sink = LogsSink::with_stream_name(&sdk, &logs_config("sinks-split", "s"), "s".into())
        .with_backoff(FAST);
    let rx = never();
    let t = now_ms();

    // 25,001 small events: 10,000 per call at most.
    let many = events(25_001, "many", t);
    let out = sink
        .put(&EventBatch::from(many.clone()), &rx)
        .await
        .expect("put");
    assert_eq!((out.calls, out.accepted), (3, 25_001));
    // 1,500 events of 1,000 bytes (1.5 MB): 1 MiB per call at most, 26 bytes per event counted.
    let heavy: Vec<LogEvent> = (0..1500)
        .map(|i| LogEvent {
            timestamp_ms: t + 1000,
            message: format!("{i:06}{}", "h".repeat(994)),
        })
        .collect();
    let out = sink
        .put(&EventBatch::from(heavy.clone()), &rx)
        .await
        .expect("put");
    assert_eq!((out.calls, out.accepted), (2, 1500));

    // 3 + 2 accepted calls, and the first one once more before it: refused with ResourceNotFound, then
    // the group and stream were created.
    let batches = forwarded_batches(&proxy);
    assert_eq!(batches.len(), 6);
    assert_eq!(batches[0], batches[1]);
    for b in &batches {
        assert_eq!(check_batch(&b.clone().into()), Ok(()));
    }
    let sizes: Vec<usize> = batches[1..].iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [
            10_000,
            10_000,
            5_001,
            1_048_576 / 1026,
            1500 - 1_048_576 / 1026
        ]
    );
    let want: Vec<String> = many
        .iter()
        .chain(&heavy)
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(read_stream(&sdk, "sinks-split", "s").await, want);
}

#[tokio::test]
async fn an_over_long_line_is_split_with_markers_and_arrives_whole() {
    let moto = Moto::start();
    let sdk = sdk_config_for(&moto.endpoint).await;
    let mut sink = LogsSink::with_stream_name(&sdk, &logs_config("sinks-long", "s"), "s".into())
        .with_backoff(FAST);
    // 700 KB with multi-byte characters, between two ordinary lines.
    let long: String = (0..100_000).map(|i| format!("ü{i:05}")).collect();
    let t = now_ms();
    let mut batcher = LogBatcher::new();
    let mut batches = Vec::new();
    for msg in ["before", long.as_str(), "", "after"] {
        batches.extend(batcher.push_message(t, msg));
    }
    batches.extend(batcher.take());
    let rx = never();
    for b in batches {
        let out = sink.put(&b, &rx).await.expect("put");
        assert!(out.refused.is_empty());
    }
    let got = read_stream(&sdk, "sinks-long", "s").await;
    assert_eq!(got.first().map(String::as_str), Some("before"));
    assert_eq!(got.last().map(String::as_str), Some("after"));
    assert_eq!(
        got[got.len() - 2],
        " ",
        "an empty line arrives as one space"
    );
    let pieces = &got[1..got.len() - 2];
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    let mut joined = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let marked = p.strip_suffix(CONTINUED_MARKER);
        assert_eq!(marked.is_some(), i + 1 < pieces.len(), "piece {i}");
        joined.push_str(marked.unwrap_or(p));
    }
    assert_eq!(joined, long);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_nothing_is_lost_or_doubled() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    // The default backoff: four throttles wait about 0.75 s on average, at most 1.5 s.
    let mut sink =
        LogsSink::with_stream_name(&sdk, &logs_config("sinks-throttle", "s"), "s".into());
    let rx = never();
    let t = now_ms();
    let first = events(10, "warm", t);
    sink.put(&EventBatch::from(first.clone()), &rx)
        .await
        .expect("put");

    proxy.script("PutLogEvents", [Fault::Throttle; 4]);
    let started = Instant::now();
    let batch = events(300, "throttled", t + 1);
    let out = sink
        .put(&EventBatch::from(batch.clone()), &rx)
        .await
        .expect("put");
    assert_eq!((out.calls, out.accepted, out.retries), (1, 300, 4));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(proxy.count_fault("PutLogEvents", Fault::Throttle), 4);
    assert_eq!(sink.stats().snapshot().retries, 4);

    let want: Vec<String> = first
        .iter()
        .chain(&batch)
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(read_stream(&sdk, "sinks-throttle", "s").await, want);
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    let mut sink = LogsSink::with_stream_name(&sdk, &logs_config("sinks-5xx", "s"), "s".into())
        .with_backoff(FAST);
    let rx = never();
    let t = now_ms();
    // Even the group creation meets faults.
    proxy.script("CreateLogGroup", [Fault::Status(503)]);
    proxy.script(
        "PutLogEvents",
        [
            Fault::Status(500),
            Fault::Status(503),
            Fault::Drop,
            Fault::Status(502),
        ],
    );
    let batch = events(200, "x", t);
    let out = sink
        .put(&EventBatch::from(batch.clone()), &rx)
        .await
        .expect("put");
    assert!(out.refused.is_empty());
    assert_eq!(out.calls, 1);
    assert!(out.retries >= 5, "{} retries", out.retries);
    let want: Vec<String> = batch.iter().map(|e| e.message.clone()).collect();
    assert_eq!(read_stream(&sdk, "sinks-5xx", "s").await, want);
}

/// PutLogEvents has no idempotency key: when the answer to an accepted call is lost, sending the batch
/// again would store it twice. The sink reads its stream back first and finds the batch there.
#[tokio::test]
async fn a_lost_answer_is_read_back_and_the_batch_arrives_once() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    let mut sink = LogsSink::with_stream_name(&sdk, &logs_config("sinks-lost", "s"), "s".into())
        .with_backoff(FAST);
    let rx = never();
    let t = now_ms();
    let first = events(3, "first", t);
    sink.put(&EventBatch::from(first.clone()), &rx)
        .await
        .expect("put");
    proxy.script("PutLogEvents", [Fault::LoseResponse]);
    let batch = events(4, "again", t + 1000);
    let out = sink
        .put(&EventBatch::from(batch.clone()), &rx)
        .await
        .expect("put");
    assert_eq!((out.calls, out.retries, out.accepted), (1, 1, 4));
    assert_eq!(proxy.count_fault("PutLogEvents", Fault::LoseResponse), 1);
    assert_eq!(
        proxy.count_fault("PutLogEvents", Fault::Pass),
        2,
        "the first batch's creation retry and nothing more: the lost one was not sent again"
    );
    let want: Vec<String> = first
        .iter()
        .chain(&batch)
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(read_stream(&sdk, "sinks-lost", "s").await, want);

    // A batch whose connection drops before CloudWatch sees it is not in the stream: sent again.
    proxy.script("PutLogEvents", [Fault::Drop]);
    let third = events(2, "third", t + 2000);
    let out = sink
        .put(&EventBatch::from(third.clone()), &rx)
        .await
        .expect("put");
    assert_eq!((out.calls, out.retries), (1, 1));
    let want: Vec<String> = want
        .into_iter()
        .chain(third.iter().map(|e| e.message.clone()))
        .collect();
    assert_eq!(read_stream(&sdk, "sinks-lost", "s").await, want);
}

#[tokio::test]
async fn a_refused_batch_is_split_until_only_the_events_cloudwatch_refuses_are_dropped() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    let mut sink = LogsSink::with_stream_name(&sdk, &logs_config("sinks-invalid", "s"), "s".into())
        .with_backoff(FAST);
    let rx = never();
    let t = now_ms();
    let ok1 = events(5, "ok1", t);
    sink.put(&EventBatch::from(ok1.clone()), &rx)
        .await
        .expect("put");

    // CloudWatch refuses any request holding event 11 or event 40 of this batch of 64.
    let mut batch = events(64, "mixed", t + 1);
    batch[11].message = "poison-a".into();
    batch[40].message = "poison-b".into();
    proxy.refuse_events_containing("poison-");
    let before = proxy.count("PutLogEvents");
    let out = sink
        .put(&EventBatch::from(batch.clone()), &rx)
        .await
        .expect("put");
    assert!(!out.refused.is_empty());
    assert_eq!(
        out.refused,
        vec![11, 40],
        "only the two refused on their own"
    );
    assert_eq!(out.accepted, 62);
    assert_eq!(out.retries, 0, "a refusal is not retried as it was");
    let reason = out.rejection.unwrap_or_default();
    assert!(reason.contains("InvalidParameterException"), "{reason}");
    // Halving 64 events down to two single ones: log2(64) refused calls per event on the way, at most.
    let calls = proxy.count("PutLogEvents") - before;
    assert!((10..=30).contains(&calls), "{calls} calls");

    let ok2 = events(5, "ok2", t + 2);
    sink.put(&EventBatch::from(ok2.clone()), &rx)
        .await
        .expect("put");
    let want: Vec<String> = ok1
        .iter()
        .chain(batch.iter().filter(|e| !e.message.starts_with("poison")))
        .chain(&ok2)
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(read_stream(&sdk, "sinks-invalid", "s").await, want);
    assert_eq!(sink.stats().snapshot().rejected, 2);
}

#[tokio::test]
async fn both_body_writers_deliver_the_same_events() {
    let moto = Moto::start();
    let sdk = sdk_config_for(&moto.endpoint).await;
    let t = now_ms();
    // What JSON escapes, non-ASCII text, U+FFFD from invalid bytes, and a line split for being too long.
    let long = "x".repeat(300_000);
    let messages = [
        "plain",
        "quote \" backslash \\ tab \t cr \r",
        "controls \u{0}\u{1}\u{8}\u{c}\u{1b}\u{1f}\u{7f}",
        "caf\u{e9} \u{1f511} \u{2028} \u{fffd}",
        long.as_str(),
    ];
    let batch: Vec<LogEvent> = messages
        .iter()
        .map(|m| LogEvent {
            timestamp_ms: t,
            message: (*m).to_owned(),
        })
        .collect();
    let mut want: Vec<String> = messages[..4].iter().map(|m| (*m).to_owned()).collect();
    let head = &long[..MAX_EVENT_BYTES - CONTINUED_MARKER.len()];
    want.push(format!("{head}{CONTINUED_MARKER}"));
    want.push(long[head.len()..].to_owned());
    for (stream, sdk_serializes) in [("ours", false), ("sdk", true)] {
        let mut sink =
            LogsSink::with_stream_name(&sdk, &logs_config("sinks-writers", stream), stream.into())
                .with_backoff(FAST);
        if sdk_serializes {
            sink = sink.with_sdk_serializer();
        }
        let out = sink
            .put(&EventBatch::from(batch.clone()), &never())
            .await
            .expect("put");
        assert_eq!(
            (out.calls, out.accepted, out.refused.len()),
            (1, 6, 0),
            "{stream}"
        );
        assert_eq!(
            read_stream(&sdk, "sinks-writers", stream).await,
            want,
            "{stream}"
        );
    }
}

#[tokio::test]
async fn events_outside_the_time_window_are_reported() {
    let moto = Moto::start();
    let sdk = sdk_config_for(&moto.endpoint).await;
    let mut sink = LogsSink::with_stream_name(&sdk, &logs_config("sinks-old", "s"), "s".into())
        .with_backoff(FAST);
    let t = now_ms();
    let old = t - 15 * 24 * 3600 * 1000;
    let event = |ts: i64, m: &str| LogEvent {
        timestamp_ms: ts,
        message: m.to_owned(),
    };
    let rx = never();
    sink.put(&EventBatch::from(vec![event(t, "new")]), &rx)
        .await
        .expect("put");
    // Accepted as a call, the events skipped one by one: the outcome says which.
    let batch = vec![
        event(old, "old1"),
        event(old + 1, "old2"),
        event(old + 2, "old3"),
    ];
    let out = sink.put(&EventBatch::from(batch), &rx).await.expect("put");
    assert_eq!((out.calls, out.refused.len()), (1, 0));
    assert!(!out.skipped.too_old.is_empty(), "{:?}", out.skipped);
    assert!(
        out.skipped
            .too_old
            .iter()
            .all(|r| r.start == 0 && r.end <= 3)
    );
    assert!(sink.stats().snapshot().rejected > 0);
    assert_eq!(read_stream(&sdk, "sinks-old", "s").await, ["new"]);
}

#[tokio::test]
async fn shutdown_ends_an_endless_retry_promptly() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    proxy.set_default("logs", Fault::Status(503));
    proxy.set_default("monitoring", Fault::Throttle);
    // The default backoff: the waits grow towards 30 s, the shutdown must not wait for them.
    let mut logs = LogsSink::with_stream_name(&sdk, &logs_config("sinks-stop", "s"), "s".into());
    let metrics = MetricsSink::new(&sdk);
    let shutdown = Shutdown::new();
    let rx2 = shutdown.clone();
    let t = now_ms();
    let logs_task =
        tokio::spawn(async move { logs.put(&EventBatch::from(events(3, "x", t)), &rx2).await });
    let rx3 = shutdown.clone();
    let minute = minute_of(t / 1000);
    let metrics_task = tokio::spawn(async move {
        metrics
            .put(&[(minute, vec![("SSH".into(), "A".into(), 1.0)])], &rx3)
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(proxy.count("PutLogEvents") >= 2, "still retrying");
    assert!(proxy.count("PutMetricData") >= 2, "still retrying");
    let stopped = Instant::now();
    shutdown.abort();
    let logs_result = logs_task.await.expect("logs task");
    let metrics_result = metrics_task.await.expect("metrics task");
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(logs_result.err(), Some(Aborted));
    assert_eq!(metrics_result.err(), Some(Aborted));
}

#[tokio::test]
async fn one_put_metric_data_per_minute_with_every_metric_and_its_zeros() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    let metrics = MetricsSink::new(&sdk).with_backoff(FAST);
    let config = Config::from_toml_str("[metrics]\ngrace_seconds = 5\n", None).expect("config");
    let rules = Rules::from_config(&config);
    let names: Vec<String> = rules.targets.iter().map(|t| t.name.clone()).collect();
    assert!(names.len() >= 2);

    // Two minutes of counts, ten minutes ago: filter 0 matches 3 times in the first, nothing in the second.
    let now = now_ms() / 1000;
    let m0 = minute_of(now) - 600;
    let mut counter = Counter::new(rules, m0);
    for s in 0..5 {
        counter.add_line(m0 + s);
    }
    counter.add_match(m0 + 1, 0, 3, Some(3.0));
    counter.add_line(m0 + 61);
    let minutes = counter.take_closed(m0 + 130);
    assert_eq!(minutes.len(), 2);
    // A throttle on the second minute's call is retried.
    proxy.script(
        "PutMetricData",
        [Fault::Pass, Fault::Throttle, Fault::Throttle],
    );
    let rx = never();
    for (minute, datums) in &minutes {
        let out = metrics
            .put(&[(*minute, datums.clone())], &rx)
            .await
            .expect("put");
        assert_eq!(
            (out.calls, out.published, out.dropped),
            (1, datums.len(), 0)
        );
    }
    assert_eq!(
        proxy.count_fault("PutMetricData", Fault::Pass),
        2,
        "one call per minute"
    );
    assert_eq!(proxy.count_fault("PutMetricData", Fault::Throttle), 2);
    assert_eq!(metrics.stats().snapshot().retries, 2);

    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config_for(&moto.endpoint).await);
    let listed = cw
        .list_metrics()
        .namespace("SSH")
        .send()
        .await
        .expect("ListMetrics");
    let mut listed: Vec<String> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name().map(str::to_owned))
        .collect();
    listed.sort();
    listed.dedup();
    let mut want: Vec<String> = names.clone();
    if let Some(h) = &config.metrics.heartbeat_metric {
        want.push(h.clone());
    }
    want.sort();
    assert_eq!(listed, want);

    let sum = |name: String, minute: i64| {
        let cw = cw.clone();
        async move {
            let r = cw
                .get_metric_statistics()
                .namespace("SSH")
                .metric_name(&name)
                .start_time(aws_smithy_types::DateTime::from_secs(minute))
                .end_time(aws_smithy_types::DateTime::from_secs(minute + 60))
                .period(60)
                .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
                .send()
                .await
                .expect("GetMetricStatistics");
            r.datapoints().iter().filter_map(|d| d.sum()).sum::<f64>()
        }
    };
    let datapoints = |name: String, minute: i64| {
        let cw = cw.clone();
        async move {
            cw.get_metric_statistics()
                .namespace("SSH")
                .metric_name(&name)
                .start_time(aws_smithy_types::DateTime::from_secs(minute))
                .end_time(aws_smithy_types::DateTime::from_secs(minute + 60))
                .period(60)
                .statistics(aws_sdk_cloudwatch::types::Statistic::SampleCount)
                .send()
                .await
                .expect("GetMetricStatistics")
                .datapoints()
                .len()
        }
    };
    assert_eq!(sum(names[0].clone(), m0).await, 3.0);
    assert_eq!(sum(names[0].clone(), m0 + 60).await, 0.0);
    assert_eq!(datapoints(names[0].clone(), m0 + 60).await, 1);
    // The zeros are datapoints, not gaps.
    assert_eq!(datapoints(names[1].clone(), m0).await, 1);
    assert_eq!(datapoints(names[1].clone(), m0 + 60).await, 1);
    if let Some(h) = &config.metrics.heartbeat_metric {
        assert_eq!(sum(h.clone(), m0).await, 5.0);
        assert_eq!(sum(h.clone(), m0 + 60).await, 1.0);
    }
}

#[tokio::test]
async fn a_refused_minute_is_dropped_not_retried() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sdk = sdk_config_for(&proxy.endpoint).await;
    let metrics = MetricsSink::new(&sdk).with_backoff(FAST);
    proxy.script(
        "PutMetricData",
        [Fault::Status(500), Fault::InvalidParameter],
    );
    let minute = minute_of(now_ms() / 1000) - 120;
    let out = metrics
        .put(&[(minute, vec![("SSH".into(), "A".into(), 1.0)])], &never())
        .await
        .expect("put");
    assert_eq!((out.calls, out.dropped, out.retries), (0, 1, 1));
    assert!(
        out.reason
            .unwrap_or_default()
            .contains("InvalidParameterValue")
    );
    assert_eq!(proxy.count("PutMetricData"), 2);
}
