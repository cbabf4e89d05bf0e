//! [`LogsSink`]: the only caller of PutLogEvents. Sends one batch at a time into the configured group and
//! stream, retrying transient errors forever, creating the group and stream when they are missing.
//!
//! Per failed call ([`crate::sink::retry`] classifies it):
//! - throttling, 5xx, timeouts, network errors, credentials/permissions: wait (capped exponential backoff,
//!   full jitter) and send the same batch again;
//! - `ResourceNotFoundException`: CreateLogGroup (an existing group is fine), CreateLogStream, send again;
//! - `InvalidParameterException` and other requests that cannot succeed: log an ERROR with CloudWatch's
//!   reason and report the batch as rejected; the caller moves on (the lines stay in the file).
//!
//! An accepted call may still skip events outside CloudWatch's time window; `rejectedLogEventsInfo` is
//! reported in [`PutOutcome::skipped`] and logged. When the shutdown watch turns `true`, a wait or a call
//! in flight is abandoned and [`Shutdown`] returned.
//!
//! The request body is written once per batch by [`body::put_log_events`] and handed to the SDK in place
//! of its own, before signing; the SDK signs, sends, retries nothing (the loop here does) and parses the
//! answer. Before the first call the sink has the SDK serialize a sample call and compares the bytes; if
//! they differ (a later SDK may change its protocol), every call goes through the SDK's serializer.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use aws_config::SdkConfig;
use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::interceptors::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatchlogs::types::{InputLogEvent, LogGroupClass, RejectedLogEventsInfo};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::LogsConfig;
use crate::sink::SinkStats;
use crate::sink::batch::{EventBatch, LogBatcher, check_batch};
use crate::sink::body;
use crate::sink::retry::{
    Backoff, Failure, Retrier, Shutdown, Verdict, client_retry_config, client_timeout_config,
    or_shutdown,
};

/// Most characters of a log stream name.
const MAX_STREAM_NAME: usize = 512;

/// The instance id must come quickly: start-up waits for it. IMDS answers in milliseconds on EC2.
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IMDS_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
const IMDS_ATTEMPTS: u32 = 2;

/// Events CloudWatch accepted a call with but did not store (`rejectedLogEventsInfo`), as index ranges
/// into the events as sent (the events given to [`LogsSink::put`], unless it had to split them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkippedEvents {
    /// More than 2 hours in the future.
    pub too_new: Vec<Range<usize>>,
    /// More than 14 days old.
    pub too_old: Vec<Range<usize>>,
    /// Older than the log group's retention.
    pub expired: Vec<Range<usize>>,
}

impl SkippedEvents {
    /// Events skipped in all.
    pub fn count(&self) -> usize {
        [&self.too_new, &self.too_old, &self.expired]
            .into_iter()
            .flatten()
            .map(ExactSizeIterator::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Adds one call's `info`; the call held `len` events starting at index `offset`.
    fn record(&mut self, info: &RejectedLogEventsInfo, offset: usize, len: usize) {
        let index = |i: i32| usize::try_from(i).ok().map(|i| i.min(len));
        if let Some(start) = info.too_new_log_event_start_index().and_then(index) {
            push_range(&mut self.too_new, offset + start..offset + len);
        }
        if let Some(end) = info.too_old_log_event_end_index().and_then(index) {
            push_range(&mut self.too_old, offset..offset + end);
        }
        if let Some(end) = info.expired_log_event_end_index().and_then(index) {
            push_range(&mut self.expired, offset..offset + end);
        }
    }
}

fn push_range(ranges: &mut Vec<Range<usize>>, r: Range<usize>) {
    if !r.is_empty() {
        ranges.push(r);
    }
}

/// What became of the events given to [`LogsSink::put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// PutLogEvents calls CloudWatch accepted (one for a batch made by [`LogBatcher`]).
    pub calls: u32,
    /// Events in accepted calls (those in [`Self::skipped`] included).
    pub accepted: usize,
    /// Events in calls CloudWatch refused as a whole; they are not retried.
    pub rejected: usize,
    /// CloudWatch's reason, when some events were refused.
    pub rejection: Option<String>,
    /// Events of accepted calls CloudWatch skipped one by one.
    pub skipped: SkippedEvents,
    /// Failed attempts that were tried again.
    pub retries: u32,
}

impl PutOutcome {
    /// Whether CloudWatch refused (some of) the events as a whole.
    pub fn is_rejected(&self) -> bool {
        self.rejected > 0
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct LogsSink {
    client: Client,
    group: String,
    stream: String,
    class: LogGroupClass,
    backoff: Backoff,
    stats: Arc<SinkStats>,
    writer: BodyWriter,
}

impl LogsSink {
    /// A sink for `[logs]`, with `log_stream_name`'s placeholders resolved: `{hostname}` from the kernel,
    /// `{instance_id}` from IMDS (the hostname when IMDS is disabled or does not answer). Fails when the
    /// resolved name is not a valid stream name.
    pub async fn new(sdk: &SdkConfig, logs: &LogsConfig) -> anyhow::Result<LogsSink> {
        let stream = resolve_stream_name(&logs.log_stream_name, sdk).await?;
        Ok(LogsSink::with_stream_name(sdk, logs, stream))
    }

    /// A sink writing to `stream` (used as is) in `logs.log_group_name`.
    pub fn with_stream_name(sdk: &SdkConfig, logs: &LogsConfig, stream: String) -> LogsSink {
        let conf = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
            .retry_config(client_retry_config())
            .timeout_config(client_timeout_config())
            .build();
        LogsSink {
            client: Client::from_conf(conf),
            group: logs.log_group_name.clone(),
            stream,
            class: LogGroupClass::from(logs.log_group_class.as_str()),
            backoff: Backoff::DEFAULT,
            stats: Arc::new(SinkStats::default()),
            writer: BodyWriter::Unchecked,
        }
    }

    /// Replaces the retry timing ([`Backoff::DEFAULT`]).
    pub fn with_backoff(mut self, backoff: Backoff) -> LogsSink {
        self.backoff = backoff;
        self
    }

    /// Lets the SDK serialize every request body, one event object per event and attempt: what the sink
    /// falls back to by itself when the SDK no longer writes the bytes [`body::put_log_events`] writes.
    pub fn with_sdk_serializer(mut self) -> LogsSink {
        self.writer = BodyWriter::Sdk;
        self
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The resolved stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The sink's counters (`calls` = batches accepted, `items` = events, `bytes`, `retries`, `rejected`).
    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    /// Delivers `events` (in order) and says what became of them. Normally `events` is one batch from
    /// [`LogBatcher`] and takes one call; anything else is re-batched first (split into valid calls).
    /// Returns only when every call was accepted or refused for good, or with `Err(Shutdown)` as soon as
    /// `shutdown` turns `true` (calls accepted before that may then be sent again by the caller).
    pub async fn put(
        &mut self,
        events: impl Into<EventBatch>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<PutOutcome, Shutdown> {
        let events = events.into();
        let mut outcome = PutOutcome::default();
        if events.is_empty() {
            return Ok(outcome);
        }
        if self.writer == BodyWriter::Unchecked {
            self.writer = choose_writer(&self.client).await;
        }
        let batches = if check_batch(&events).is_ok() {
            vec![events]
        } else {
            LogBatcher::batch_all(&events)
        };
        let mut offset = 0;
        for batch in batches {
            let len = batch.len();
            self.put_batch(batch, offset, &mut outcome, shutdown)
                .await?;
            offset += len;
        }
        Ok(outcome)
    }

    /// One PutLogEvents call, retried until accepted or refused for good.
    async fn put_batch(
        &self,
        batch: EventBatch,
        offset: usize,
        outcome: &mut PutOutcome,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), Shutdown> {
        let len = batch.len();
        let bytes = batch.bytes();
        // Written once; every attempt sends the same bytes.
        let body = (self.writer == BodyWriter::Ours)
            .then(|| Bytes::from(body::put_log_events(&self.group, &self.stream, &batch)));
        let mut retrier = Retrier::new("PutLogEvents", self.backoff, &self.stats, shutdown);
        let mut creations = 0u32;
        let accepted = loop {
            let call = self
                .client
                .put_log_events()
                .log_group_name(&self.group)
                .log_stream_name(&self.stream);
            let result = match &body {
                Some(body) => {
                    let call = call
                        .customize()
                        .interceptor(ReplaceBody(body.clone()))
                        .send();
                    or_shutdown(call, shutdown).await?
                }
                None => {
                    let input = match to_input(&batch) {
                        Ok(input) => input,
                        Err(reason) => {
                            self.reject(len, reason, outcome);
                            return Ok(());
                        }
                    };
                    or_shutdown(call.set_log_events(Some(input)).send(), shutdown).await?
                }
            };
            let failure = match result {
                Ok(accepted) => break accepted,
                Err(e) => Failure::of(&e),
            };
            match failure.verdict {
                Verdict::Reject => {
                    outcome.retries += retrier.retries();
                    self.reject(len, failure.reason(), outcome);
                    return Ok(());
                }
                Verdict::NotFound => {
                    // Create right away the first time; if the destination keeps disappearing, back off.
                    if creations > 0 {
                        retrier.wait(&failure).await?;
                    }
                    creations += 1;
                    if let Err(failure) = self.create_destination(shutdown).await? {
                        if failure.verdict == Verdict::Reject {
                            outcome.retries += retrier.retries();
                            self.reject(len, failure.reason(), outcome);
                            return Ok(());
                        }
                        retrier.wait(&failure).await?;
                    }
                }
                Verdict::Retry | Verdict::RetryAfterFix => retrier.wait(&failure).await?,
            }
        };
        outcome.retries += retrier.retries();
        outcome.calls += 1;
        outcome.accepted += len;
        self.stats.add_accepted(len, bytes);
        if let Some(info) = accepted.rejected_log_events_info() {
            let mut skipped = SkippedEvents::default();
            skipped.record(info, offset, len);
            let count = skipped.count();
            if count > 0 {
                self.stats.add_rejected(count);
                warn!(
                    group = %self.group,
                    stream = %self.stream,
                    too_new = ?skipped.too_new,
                    too_old = ?skipped.too_old,
                    expired = ?skipped.expired,
                    "CloudWatch skipped events outside its time window (more than 2 h ahead, 14 days old, or past retention)"
                );
                outcome.skipped.too_new.extend(skipped.too_new);
                outcome.skipped.too_old.extend(skipped.too_old);
                outcome.skipped.expired.extend(skipped.expired);
            }
        }
        Ok(())
    }

    fn reject(&self, len: usize, reason: String, outcome: &mut PutOutcome) {
        error!(
            group = %self.group,
            stream = %self.stream,
            events = len,
            reason = %reason,
            "CloudWatch refused a batch of log events; it is not retried (the lines stay in the file)"
        );
        self.stats.add_rejected(len);
        outcome.rejected += len;
        if outcome.rejection.is_none() {
            outcome.rejection = Some(reason);
        }
    }

    /// CreateLogGroup (an existing group is fine, and a failure to create it does not stop the attempt
    /// to create the stream: the group may exist and the role may not be allowed to create groups), then
    /// CreateLogStream. `Err` holds the failure to retry on or to reject with.
    async fn create_destination(
        &self,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Result<(), Failure>, Shutdown> {
        let group = self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .log_group_class(self.class.clone())
            .send();
        match or_shutdown(group, shutdown).await? {
            Ok(_) => {
                info!(group = %self.group, class = %self.class.as_str(), "created the log group")
            }
            Err(e) => {
                let failure = Failure::of(&e);
                if failure.code.as_deref() != Some("ResourceAlreadyExistsException") {
                    if failure.verdict == Verdict::Reject {
                        return Ok(Err(failure));
                    }
                    warn!(group = %self.group, error = %failure.reason(), "cannot create the log group");
                }
            }
        }
        let stream = self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send();
        match or_shutdown(stream, shutdown).await? {
            Ok(_) => {
                info!(group = %self.group, stream = %self.stream, "created the log stream");
                Ok(Ok(()))
            }
            Err(e) => {
                let failure = Failure::of(&e);
                if failure.code.as_deref() == Some("ResourceAlreadyExistsException") {
                    Ok(Ok(()))
                } else {
                    Ok(Err(failure))
                }
            }
        }
    }
}

/// Who writes the PutLogEvents body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyWriter {
    /// Not decided yet: decided before the first call.
    Unchecked,
    /// [`body::put_log_events`], written once per batch from its one buffer.
    Ours,
    /// The SDK's serializer, from one [`InputLogEvent`] per event and attempt.
    Sdk,
}

/// [`BodyWriter::Ours`] when the SDK writes the very bytes [`body::put_log_events`] writes for a sample
/// call, else [`BodyWriter::Sdk`] (a later SDK may change its protocol, as CloudWatch's did).
async fn choose_writer(client: &Client) -> BodyWriter {
    match sdk_agrees(client).await {
        Ok(()) => BodyWriter::Ours,
        Err(why) => {
            warn!(
                reason = %why,
                "the AWS SDK no longer writes PutLogEvents as sshwatch does; using the SDK's serializer (more CPU per line)"
            );
            BodyWriter::Sdk
        }
    }
}

/// The sample: every character class the writers escape differently, plus non-ASCII text.
fn sample_batch() -> EventBatch {
    let mut sample = EventBatch::new();
    sample.push(
        1_700_000_000_000,
        "Failed password for root from 192.0.2.1 port 22 ssh2",
    );
    sample.push(
        1_700_000_000_001,
        "quote \" backslash \\ controls \u{0}\u{8}\t\n\u{c}\r\u{1b}\u{1f} del \u{7f}",
    );
    sample.push(-1, "caf\u{e9} \u{1f511} \u{2028} \u{fffd} 0123456789abcdef");
    sample
}

/// Has the SDK serialize a PutLogEvents of [`sample_batch`] and compares its request with ours. The call
/// is stopped right after serialization: no credentials are asked for, nothing goes on the network.
async fn sdk_agrees(client: &Client) -> Result<(), String> {
    let sample = sample_batch();
    let (group, stream) = ("sample-group \"/\\", "sample-stream \u{e9}");
    let seen = Arc::new(std::sync::Mutex::new(None));
    let _stopped = client
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(to_input(&sample)?))
        .customize()
        .interceptor(StopAfterSerialization(Arc::clone(&seen)))
        .send()
        .await;
    let seen = seen
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .ok_or("the SDK did not serialize the sample call")?;
    let Serialized {
        content_type,
        body: sdk_body,
        ..
    } = seen;
    if content_type.as_deref() != Some(JSON_CONTENT_TYPE) {
        return Err(format!(
            "the SDK sends content type {content_type:?}, not {JSON_CONTENT_TYPE}"
        ));
    }
    let ours = body::put_log_events(group, stream, &sample);
    if sdk_body != ours {
        return Err(format!(
            "the SDK wrote {}, sshwatch {}",
            String::from_utf8_lossy(&sdk_body),
            String::from_utf8_lossy(&ours)
        ));
    }
    Ok(())
}

/// The content type of the awsJson 1.1 protocol that [`body::put_log_events`] writes.
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// What the SDK made of a request: its content type and body.
#[derive(Debug)]
struct Serialized {
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Serialized {
    fn of(context: &BeforeTransmitInterceptorContextRef<'_>) -> Serialized {
        let request = context.request();
        Serialized {
            content_type: request.headers().get("content-type").map(str::to_owned),
            body: request.body().bytes().unwrap_or_default().to_vec(),
        }
    }
}

/// Where [`StopAfterSerialization`] keeps what it saw.
type Seen = Arc<std::sync::Mutex<Option<Serialized>>>;

/// Records the serialized request, then fails the call.
#[derive(Debug)]
struct StopAfterSerialization(Seen);

impl Intercept for StopAfterSerialization {
    fn name(&self) -> &'static str {
        "StopAfterSerialization"
    }

    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(Serialized::of(context));
        }
        Err("sample serialized; not sent".into())
    }
}

/// Puts its body in place of the SDK's (which holds no events) before the request is signed, so the
/// signature covers it.
#[derive(Debug)]
struct ReplaceBody(Bytes);

impl Intercept for ReplaceBody {
    fn name(&self) -> &'static str {
        "ReplaceBody"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        request
            .headers_mut()
            .insert("content-length", self.0.len().to_string());
        *request.body_mut() = SdkBody::from(self.0.clone());
        Ok(())
    }
}

/// The SDK's events, for [`BodyWriter::Sdk`] and the sample; an event the SDK will not build is a reason
/// to refuse the batch (cannot happen with both fields set).
fn to_input(batch: &EventBatch) -> Result<Vec<InputLogEvent>, String> {
    batch
        .iter()
        .map(|(timestamp_ms, message)| {
            InputLogEvent::builder()
                .timestamp(timestamp_ms)
                .message(message)
                .build()
                .map_err(|e| format!("cannot build a log event: {e}"))
        })
        .collect()
}

/// Resolves `{hostname}` and `{instance_id}` in `template` and checks the result is a valid stream name.
pub async fn resolve_stream_name(template: &str, sdk: &SdkConfig) -> anyhow::Result<String> {
    let needs_host = template.contains("{hostname}") || template.contains("{instance_id}");
    let host = if needs_host {
        hostname()
    } else {
        String::new()
    };
    let instance_id = if template.contains("{instance_id}") {
        let found = if imds_disabled() {
            Err("IMDS is disabled (`AWS_EC2_METADATA_DISABLED`)".to_owned())
        } else {
            lookup_instance_id(sdk, None).await
        };
        match found {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(
                    error = %e,
                    hostname = %host,
                    "cannot read the instance id from IMDS; using the hostname for `{{instance_id}}` in `logs.log_stream_name`"
                );
                None
            }
        }
    } else {
        None
    };
    let name = expand_stream_name(template, &host, instance_id.as_deref());
    check_stream_name(&name)
        .map_err(|m| anyhow!("`logs.log_stream_name` = {template:?} resolves to {name:?}, {m}"))?;
    Ok(name)
}

/// `template` with `{hostname}` replaced by `hostname` and `{instance_id}` by `instance_id` (the hostname
/// when `None`).
pub fn expand_stream_name(template: &str, hostname: &str, instance_id: Option<&str>) -> String {
    template
        .replace("{instance_id}", instance_id.unwrap_or(hostname))
        .replace("{hostname}", hostname)
}

/// CloudWatch's rule for stream names: 1–512 characters, no `:` or `*`.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_STREAM_NAME {
        return Err(format!(
            "which has {chars} characters (a stream name has 1 to {MAX_STREAM_NAME})"
        ));
    }
    if name.contains([':', '*']) {
        return Err("which contains `:` or `*` (not allowed in a stream name)".to_owned());
    }
    Ok(())
}

/// The kernel's hostname (no libc call: `/proc/sys/kernel/hostname`, then `/etc/hostname`).
pub fn hostname() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            let name = text.trim();
            if !name.is_empty() {
                return name.to_owned();
            }
        }
    }
    warn!("cannot read the hostname; using `localhost`");
    "localhost".to_owned()
}

/// Whether `AWS_EC2_METADATA_DISABLED` turns IMDS off (the SDK's own spelling: `true`, any case).
fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The instance id through aws-config's IMDSv2 client (its endpoint from the standard chain unless
/// `endpoint` is given), with short timeouts.
async fn lookup_instance_id(sdk: &SdkConfig, endpoint: Option<&str>) -> Result<String, String> {
    let mut provider = ProviderConfig::without_region();
    if let Some(http) = sdk.http_client() {
        provider = provider.with_http_client(http);
    }
    if let Some(sleep) = sdk.sleep_impl() {
        provider = provider.with_sleep_impl(sleep);
    }
    let mut builder = imds::Client::builder()
        .configure(&provider)
        .max_attempts(IMDS_ATTEMPTS)
        .connect_timeout(IMDS_CONNECT_TIMEOUT)
        .read_timeout(IMDS_CONNECT_TIMEOUT)
        .operation_timeout(IMDS_OPERATION_TIMEOUT);
    if let Some(endpoint) = endpoint {
        builder = builder
            .endpoint(endpoint)
            .map_err(|e| format!("bad IMDS endpoint {endpoint:?}: {e}"))?;
    }
    let answer = builder
        .build()
        .get("/latest/meta-data/instance-id")
        .await
        .map_err(|e| DisplayErrorContext(&e).to_string())?;
    let id = answer.as_ref().trim();
    if id.is_empty() || check_stream_name(id).is_err() {
        return Err(format!("IMDS answered an unusable instance id {id:?}"));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn the_sdk_writes_the_body_sshwatch_writes() {
        // No region, HTTP client or credentials: the check needs nothing past serialization.
        let client = Client::new(&SdkConfig::builder().build());
        assert_eq!(sdk_agrees(&client).await, Ok(()));
        assert_eq!(choose_writer(&client).await, BodyWriter::Ours);
    }

    /// Records the request as it is about to be signed, then stops the call.
    #[derive(Debug)]
    struct StopBeforeSigning(Arc<std::sync::Mutex<Option<Signable>>>);

    /// The request as signing would see it, and its `content-length`.
    type Signable = (Serialized, Option<String>);

    impl Intercept for StopBeforeSigning {
        fn name(&self) -> &'static str {
            "StopBeforeSigning"
        }

        fn read_before_signing(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let length = context.request().headers().get("content-length");
            *self.0.lock().expect("not poisoned") =
                Some((Serialized::of(context), length.map(str::to_owned)));
            Err("stopped before signing".into())
        }
    }

    #[tokio::test]
    async fn the_body_is_in_place_when_the_request_is_signed() {
        let conf = aws_sdk_cloudwatchlogs::config::Builder::new()
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .build();
        let client = Client::from_conf(conf);
        let body = body::put_log_events("g", "s", &sample_batch());
        let seen = Arc::new(std::sync::Mutex::new(None));
        let result = client
            .put_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .customize()
            .interceptor(ReplaceBody(Bytes::from(body.clone())))
            .interceptor(StopBeforeSigning(Arc::clone(&seen)))
            .send()
            .await;
        assert!(result.is_err());
        let (seen, length) = seen.lock().expect("not poisoned").take().expect("seen");
        assert_eq!(length, Some(body.len().to_string()));
        assert_eq!(seen.body, body);
        assert_eq!(seen.content_type.as_deref(), Some(JSON_CONTENT_TYPE));
    }

    #[test]
    fn the_sample_holds_every_byte_that_is_escaped() {
        let sample = sample_batch();
        let text: String = sample.iter().map(|(_, m)| m).collect();
        for b in [b'"', b'\\', 0, 8, b'\t', b'\n', 0x0c, b'\r', 0x1b, 0x1f] {
            assert!(text.as_bytes().contains(&b), "{b:#x}");
        }
        assert!(!text.is_ascii());
    }

    #[test]
    fn the_sdk_events_are_the_batch() {
        let sample = sample_batch();
        let input = to_input(&sample).expect("events");
        let back: Vec<(i64, &str)> = input.iter().map(|e| (e.timestamp(), e.message())).collect();
        assert_eq!(back, sample.iter().collect::<Vec<_>>());
    }

    #[test]
    fn placeholders_expand_and_fall_back_to_the_hostname() {
        assert_eq!(
            expand_stream_name("{instance_id}", "web1", Some("i-0abc")),
            "i-0abc"
        );
        assert_eq!(expand_stream_name("{instance_id}", "web1", None), "web1");
        assert_eq!(
            expand_stream_name("ssh/{hostname}/{instance_id}", "web1", Some("i-1")),
            "ssh/web1/i-1"
        );
        assert_eq!(expand_stream_name("fixed", "web1", None), "fixed");
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(check_stream_name("i-0123456789abcdef0").is_ok());
        assert!(check_stream_name(&"s".repeat(512)).is_ok());
        assert!(check_stream_name(&"s".repeat(513)).is_err());
        assert!(check_stream_name("").is_err());
        assert!(check_stream_name("a:b").is_err());
        assert!(check_stream_name("a*").is_err());
    }

    #[test]
    fn the_hostname_is_read_without_libc() {
        let h = hostname();
        assert!(!h.is_empty() && !h.contains('\n'));
    }

    #[tokio::test]
    async fn a_template_without_placeholders_is_used_as_is_and_a_bad_one_is_refused() {
        let sdk = SdkConfig::builder().build();
        assert_eq!(
            resolve_stream_name("my-stream", &sdk).await.ok().as_deref(),
            Some("my-stream")
        );
        let err = resolve_stream_name("bad:name", &sdk).await.unwrap_err();
        assert!(err.to_string().contains("`logs.log_stream_name`"), "{err}");
    }

    /// A minimal IMDSv2 endpoint: a token for the PUT, the instance id for the GET.
    fn imds_server(instance_id: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(4) {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let (extra, body) = if first.starts_with("PUT") {
                    ("x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n", "token")
                } else {
                    ("", instance_id)
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    fn sdk() -> SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        SdkConfig::builder().http_client(http).build()
    }

    #[tokio::test]
    async fn the_instance_id_comes_from_imds() {
        let endpoint = imds_server("i-0123456789abcdef0");
        let id = lookup_instance_id(&sdk(), Some(&endpoint)).await;
        assert_eq!(id.as_deref(), Ok("i-0123456789abcdef0"));
    }

    #[tokio::test]
    async fn an_unreachable_imds_fails_quickly() {
        // A port nobody listens on: connection refused.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let started = std::time::Instant::now();
        let id = lookup_instance_id(&sdk(), Some(&format!("http://127.0.0.1:{port}"))).await;
        assert!(id.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn skipped_events_become_ranges_of_the_events_sent() {
        let info = RejectedLogEventsInfo::builder()
            .too_new_log_event_start_index(8)
            .too_old_log_event_end_index(2)
            .expired_log_event_end_index(3)
            .build();
        let mut s = SkippedEvents::default();
        s.record(&info, 100, 10);
        assert_eq!(s.too_new, vec![108..110]);
        assert_eq!(s.too_old, vec![100..102]);
        assert_eq!(s.expired, vec![100..103]);
        assert_eq!(s.count(), 7);
        // Out-of-range indices are clamped, negative ones ignored.
        let info = RejectedLogEventsInfo::builder()
            .too_new_log_event_start_index(50)
            .too_old_log_event_end_index(-1)
            .build();
        let mut s = SkippedEvents::default();
        s.record(&info, 0, 10);
        assert!(s.is_empty());
    }
}
