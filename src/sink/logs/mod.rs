//! [`LogsSink`]: the only caller of PutLogEvents. Sends one batch at a time into the configured group and
//! stream, retrying transient errors forever, creating the group and stream when they are missing.
//!
//! Per failed call ([`crate::sink::retry`] classifies it):
//! - throttling, 5xx, timeouts, network errors, credentials/permissions, error codes not known to be
//!   permanent: wait (capped exponential backoff, full jitter) and send the same batch again;
//! - `ResourceNotFoundException`: CreateLogGroup (an existing group is fine), CreateLogStream, send again;
//! - `InvalidParameterException` and the other errors about the request itself: the batch is sent again in
//!   halves, and halves of halves, so CloudWatch refuses only the events it refuses on their own; such an
//!   event is dropped with an ERROR showing its first bytes.
//!
//! An accepted call may still skip events outside CloudWatch's time window (more than 2 hours ahead, 14
//! days old, or past the group's retention); `rejectedLogEventsInfo` is reported in
//! [`PutOutcome::skipped`] and logged as an ERROR with the count and the events' times. Throttling
//! lengthens the [`Pace`] at which the daemon sends batches. When shutdown aborts, a wait or a call in
//! flight is abandoned and [`Aborted`] returned.
//!
//! The request body is written once per batch and put in place of the SDK's own before signing
//! ([`wire`]); the stream's name comes from [`stream_name`].

mod stream_name;
mod wire;

use std::ops::Range;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::{LogGroupClass, RejectedLogEventsInfo};
use bytes::Bytes;
use tracing::{error, info, warn};

pub use self::stream_name::{Host, check_stream_name, expand_stream_name, hostname};
use self::wire::{BodyWriter, ReplaceBody, choose_writer, to_input};
use crate::config::LogsConfig;
use crate::shutdown::{Aborted, Shutdown};
use crate::sink::batch::{EventBatch, LogBatcher, MAX_BATCH_EVENTS, check_batch};
use crate::sink::retry::{
    Backoff, Failure, Retrier, Verdict, client_retry_config, client_timeout_config, is_throttling,
};
use crate::sink::{Pace, ServerDate, SinkStats, body};

/// Events refused on their own whose first bytes are logged, per batch; the rest are counted in one line.
const REFUSALS_LOGGED: usize = 10;

/// Bytes of a refused event shown in its ERROR.
const REFUSED_PREFIX: usize = 120;

/// Events CloudWatch accepted a call with but did not store (`rejectedLogEventsInfo`), as index ranges
/// into the batch given to [`LogsSink::put`].
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
    /// The indices of every skipped event, each once, in order.
    pub fn indices(&self) -> Vec<usize> {
        let mut all: Vec<usize> = [&self.too_new, &self.too_old, &self.expired]
            .into_iter()
            .flatten()
            .flat_map(Clone::clone)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Events skipped in all.
    pub fn count(&self) -> usize {
        self.indices().len()
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
    /// PutLogEvents calls CloudWatch accepted (one for a batch made by [`LogBatcher`] that nothing in it
    /// made CloudWatch refuse).
    pub calls: u32,
    /// Events in accepted calls (those in [`Self::skipped`] included).
    pub accepted: usize,
    /// Events CloudWatch refused on their own, by index; they are not sent again.
    pub refused: Vec<usize>,
    /// CloudWatch's reason for the first refusal.
    pub rejection: Option<String>,
    /// Events of accepted calls CloudWatch skipped one by one.
    pub skipped: SkippedEvents,
    /// Failed attempts that were tried again.
    pub retries: u32,
}

impl PutOutcome {
    /// The indices of the events CloudWatch did not store (refused or skipped), each once, in order.
    pub fn not_stored(&self) -> Vec<usize> {
        let mut all = self.skipped.indices();
        all.extend(&self.refused);
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// How one call went.
enum Sent {
    Accepted,
    /// CloudWatch refused the request itself (the reason).
    Refused(String),
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
    pace: Arc<Pace>,
    writer: BodyWriter,
}

impl LogsSink {
    /// A sink writing to `stream` (used as is) in `logs.log_group_name`.
    pub fn with_stream_name(sdk: &SdkConfig, logs: &LogsConfig, stream: String) -> LogsSink {
        let conf = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
            .retry_config(client_retry_config())
            .timeout_config(client_timeout_config())
            .interceptor(ServerDate)
            .build();
        LogsSink {
            client: Client::from_conf(conf),
            group: logs.log_group_name.clone(),
            stream,
            class: LogGroupClass::from(logs.log_group_class.as_str()),
            backoff: Backoff::DEFAULT,
            stats: Arc::new(SinkStats::default()),
            pace: Arc::new(Pace::new(logs.force_flush_interval)),
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

    /// The resolved stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The sink's counters (`calls` = batches accepted, `items` = events, `bytes`, `retries`, `rejected`).
    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    /// How often batches may be sent now (lengthened while CloudWatch throttles).
    pub fn pace(&self) -> Arc<Pace> {
        Arc::clone(&self.pace)
    }

    /// Delivers `events` (in order) and says what became of them. Normally `events` is one batch from
    /// [`LogBatcher`] and takes one call; anything else is re-batched first (split into valid calls).
    /// Returns only when every event was accepted or refused on its own, or with `Err(Aborted)` as soon
    /// as shutdown aborts (calls accepted before that may then be sent again by the caller).
    pub async fn put(
        &mut self,
        events: &EventBatch,
        shutdown: &Shutdown,
    ) -> Result<PutOutcome, Aborted> {
        let mut outcome = PutOutcome::default();
        if events.is_empty() {
            return Ok(outcome);
        }
        if self.writer == BodyWriter::Unchecked {
            self.writer = choose_writer(&self.client).await;
        }
        if check_batch(events).is_ok() {
            self.put_splitting(events, 0, &mut outcome, shutdown)
                .await?;
        } else {
            let mut offset = 0;
            for batch in LogBatcher::batch_all(events) {
                self.put_splitting(&batch, offset, &mut outcome, shutdown)
                    .await?;
                offset += batch.len();
            }
        }
        Ok(outcome)
    }

    /// Sends `batch` (events `offset..` of what `put` was given); when CloudWatch refuses it, sends its
    /// halves instead, in order, down to single events, which are dropped.
    async fn put_splitting(
        &self,
        batch: &EventBatch,
        offset: usize,
        outcome: &mut PutOutcome,
        shutdown: &Shutdown,
    ) -> Result<(), Aborted> {
        // A stack of ranges of `batch`, the next one to send on top.
        let mut todo: Vec<Range<usize>> = Vec::new();
        todo.push(0..batch.len());
        let mut refused_logged = 0usize;
        while let Some(range) = todo.pop() {
            let part;
            let events = if range == (0..batch.len()) {
                batch
            } else {
                part = batch.slice(range.clone());
                &part
            };
            match self
                .put_call(events, offset + range.start, outcome, shutdown)
                .await?
            {
                Sent::Accepted => {}
                Sent::Refused(reason) if range.len() == 1 => {
                    let index = offset + range.start;
                    outcome.refused.push(index);
                    outcome.rejection.get_or_insert_with(|| reason.clone());
                    self.stats.add_rejected(1);
                    if refused_logged < REFUSALS_LOGGED {
                        refused_logged += 1;
                        let (timestamp_ms, message) = events.iter().next().unwrap_or((0, ""));
                        error!(
                            group = %self.group,
                            stream = %self.stream,
                            timestamp_ms,
                            reason = %reason,
                            "CloudWatch refused a log event on its own ({reason}); it is dropped: {:?}",
                            prefix(message, REFUSED_PREFIX)
                        );
                    }
                }
                Sent::Refused(reason) => {
                    if range.len() == batch.len() {
                        warn!(
                            group = %self.group,
                            stream = %self.stream,
                            events = range.len(),
                            reason = %reason,
                            "CloudWatch refused a batch of {} log events ({reason}); sending it again in halves to find the events it refuses",
                            range.len()
                        );
                    }
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            }
        }
        let unlogged = outcome.refused.len().saturating_sub(refused_logged);
        if refused_logged == REFUSALS_LOGGED && unlogged > 0 {
            error!(
                group = %self.group,
                stream = %self.stream,
                events = unlogged,
                "CloudWatch refused {unlogged} more log events of the batch on their own; they are dropped"
            );
        }
        Ok(())
    }

    /// One PutLogEvents call, retried until accepted or refused for what it is.
    async fn put_call(
        &self,
        batch: &EventBatch,
        offset: usize,
        outcome: &mut PutOutcome,
        shutdown: &Shutdown,
    ) -> Result<Sent, Aborted> {
        let len = batch.len();
        let bytes = batch.bytes();
        // Written once; every attempt sends the same bytes.
        let body = (self.writer == BodyWriter::Ours)
            .then(|| Bytes::from(body::put_log_events(&self.group, &self.stream, batch)));
        let what = format!("a batch of {len} log events");
        let mut retrier = Retrier::new("PutLogEvents", what, self.backoff, &self.stats, shutdown);
        let mut creations = 0u32;
        let skipped_info = loop {
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
                    retrier.attempt(call).await?
                }
                None => {
                    let input = match to_input(batch) {
                        Ok(input) => input,
                        Err(reason) => {
                            outcome.retries += retrier.retries();
                            return Ok(Sent::Refused(reason));
                        }
                    };
                    retrier
                        .attempt(call.set_log_events(Some(input)).send())
                        .await?
                }
            };
            let failure = match result {
                Ok(accepted) => break accepted.rejected_log_events_info().cloned(),
                Err(e) => Failure::of(&e),
            };
            if is_throttling(&failure) {
                self.pace.throttled();
            }
            match failure.verdict {
                Verdict::Reject => {
                    outcome.retries += retrier.retries();
                    return Ok(Sent::Refused(failure.reason()));
                }
                Verdict::NotFound => {
                    // Create right away the first time; if the destination keeps disappearing, back off.
                    if creations > 0 {
                        retrier.wait(&failure).await?;
                    }
                    creations += 1;
                    if let Err(failure) = self.create_destination(&retrier).await? {
                        if failure.verdict == Verdict::Reject {
                            outcome.retries += retrier.retries();
                            return Ok(Sent::Refused(failure.reason()));
                        }
                        retrier.wait(&failure).await?;
                    }
                }
                Verdict::Retry | Verdict::RetryAfterFix => {
                    retrier.wait(&failure).await?;
                    if failure.may_have_arrived && self.arrived(batch, &retrier).await? {
                        info!(
                            group = %self.group,
                            stream = %self.stream,
                            events = len,
                            "the answer to PutLogEvents was lost, but the stream ends with the batch: CloudWatch took it, it is not sent again"
                        );
                        break None;
                    }
                }
            }
        };
        self.pace.accepted();
        outcome.retries += retrier.retries();
        outcome.calls += 1;
        outcome.accepted += len;
        self.stats.add_accepted(len, bytes);
        if let Some(info) = &skipped_info {
            let mut skipped = SkippedEvents::default();
            skipped.record(info, offset, len);
            if !skipped.is_empty() {
                self.report_skipped(batch, offset, &skipped);
                outcome.skipped.too_new.extend(skipped.too_new);
                outcome.skipped.too_old.extend(skipped.too_old);
                outcome.skipped.expired.extend(skipped.expired);
            }
        }
        Ok(Sent::Accepted)
    }

    /// Whether the stream already ends with `batch`, read back after a call whose answer was lost: the
    /// stream is this host's alone and batches are sent one at a time, so a batch CloudWatch took is its
    /// newest events. Sending it again would store it twice (PutLogEvents has no idempotency key).
    /// `false` when the stream cannot be read: the batch is then sent again.
    async fn arrived(&self, batch: &EventBatch, retrier: &Retrier<'_>) -> Result<bool, Aborted> {
        let n = batch.len().min(MAX_BATCH_EVENTS);
        let call = self
            .client
            .get_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .start_from_head(false)
            .limit(i32::try_from(n).unwrap_or(i32::MAX))
            .send();
        let Ok(page) = retrier.attempt(call).await? else {
            return Ok(false);
        };
        let mut stored: Vec<(i64, &str)> = page
            .events()
            .iter()
            .map(|e| (e.timestamp().unwrap_or(i64::MIN), e.message().unwrap_or("")))
            .collect();
        if stored.len() < n {
            return Ok(false);
        }
        stored.sort_unstable();
        let mut sent: Vec<(i64, &str)> = batch.iter().skip(batch.len() - n).collect();
        sent.sort_unstable();
        Ok(stored[stored.len() - n..] == sent[..])
    }

    /// The ERROR for events CloudWatch skipped: how many, why, and the times they carried.
    fn report_skipped(&self, batch: &EventBatch, offset: usize, skipped: &SkippedEvents) {
        let count = skipped.count();
        self.stats.add_rejected(count);
        let stamps: Vec<i64> = batch.iter().map(|(ts, _)| ts).collect();
        let times = |ranges: &[Range<usize>]| -> String {
            let mut first = i64::MAX;
            let mut last = i64::MIN;
            for i in ranges.iter().flat_map(Clone::clone) {
                if let Some(&ts) = stamps.get(i - offset) {
                    first = first.min(ts);
                    last = last.max(ts);
                }
            }
            if first > last {
                return "-".into();
            }
            format!("{}..{}", rfc3339(first), rfc3339(last))
        };
        error!(
            group = %self.group,
            stream = %self.stream,
            events = count,
            too_new = ?skipped.too_new,
            too_old = ?skipped.too_old,
            expired = ?skipped.expired,
            "CloudWatch skipped {count} log events outside its time window and did not store them (too new, more than 2 h ahead: {}; too old, more than 14 days: {}; past the group's retention: {}); check the host's clock",
            times(&skipped.too_new),
            times(&skipped.too_old),
            times(&skipped.expired),
        );
    }

    /// CreateLogGroup (an existing group is fine, and a failure to create it does not stop the attempt
    /// to create the stream: the group may exist and the role may not be allowed to create groups), then
    /// CreateLogStream. `Err` holds the failure to retry on or to refuse with.
    async fn create_destination(
        &self,
        retrier: &Retrier<'_>,
    ) -> Result<Result<(), Failure>, Aborted> {
        let group = self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .log_group_class(self.class.clone())
            .send();
        match retrier.attempt(group).await? {
            Ok(_) => {
                info!(group = %self.group, class = %self.class.as_str(), "created the log group")
            }
            Err(e) => {
                let failure = Failure::of(&e);
                if failure.code.as_deref() != Some("ResourceAlreadyExistsException") {
                    if failure.verdict == Verdict::Reject {
                        return Ok(Err(failure));
                    }
                    warn!(group = %self.group, error = %failure.reason(), "cannot create the log group ({}); creating the stream anyway, the group may exist", failure.reason());
                }
            }
        }
        let stream = self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send();
        match retrier.attempt(stream).await? {
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

/// The first `max` bytes of `text` (cut on a character boundary).
fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A Unix millisecond timestamp as RFC 3339 (UTC), for messages.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Expired events include the too old ones: each counts once.
        assert_eq!(s.indices(), vec![100, 101, 102, 108, 109]);
        assert_eq!(s.count(), 5);
        // Out-of-range indices are clamped, negative ones ignored.
        let info = RejectedLogEventsInfo::builder()
            .too_new_log_event_start_index(50)
            .too_old_log_event_end_index(-1)
            .build();
        let mut s = SkippedEvents::default();
        s.record(&info, 0, 10);
        assert!(s.is_empty());
    }

    #[test]
    fn not_stored_joins_refused_and_skipped_once_each() {
        let outcome = PutOutcome {
            refused: vec![4, 1],
            skipped: SkippedEvents {
                too_new: std::iter::once(3..5).collect(),
                ..SkippedEvents::default()
            },
            ..PutOutcome::default()
        };
        assert_eq!(outcome.not_stored(), vec![1, 3, 4]);
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
    }
}
