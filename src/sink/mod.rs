//! The only code that calls PutLogEvents and PutMetricData: the pure batcher, the two sinks and the retry
//! policy they share.
//!
//! - [`batch`]: [`LogBatcher`], every PutLogEvents limit, pure.
//! - [`body`]: the PutLogEvents request body, written from a batch's one buffer, pure.
//! - [`logs`]: [`LogsSink`], one batch at a time into the configured group and stream.
//! - [`metrics`]: [`MetricsSink`], one PutMetricData per minute.
//! - [`retry`]: error classification, capped exponential backoff with full jitter, shutdown.
//!
//! Both sinks retry transient errors forever and return [`Shutdown`] promptly when the shutdown watch
//! turns `true`; what a call held is then still in the file or the checkpoint.

pub mod batch;
pub mod body;
pub mod logs;
pub mod metrics;
pub mod retry;

use std::sync::atomic::{AtomicU64, Ordering};

pub use self::batch::{EventBatch, LogBatcher, LogEvent};
pub use self::logs::{LogsSink, PutOutcome, SkippedEvents};
pub use self::metrics::{Datum, MetricsOutcome, MetricsSink};
pub use self::retry::{Backoff, Shutdown};

/// Counters a sink keeps for `STATUS=` and the logs; shared (`Arc`) so the health task reads them while
/// the sink works.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Calls CloudWatch accepted.
    calls: AtomicU64,
    /// Log events or metric datums in accepted calls.
    items: AtomicU64,
    /// Bytes of accepted log events (PutLogEvents accounting, 26 per event included); 0 for metrics.
    bytes: AtomicU64,
    /// Failed calls tried again.
    retries: AtomicU64,
    /// Log events or datums not delivered and not retried: refused requests, events CloudWatch skipped
    /// one by one (`rejectedLogEventsInfo`), datums too old or not finite.
    rejected: AtomicU64,
}

/// A copy of [`SinkStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub items: u64,
    pub bytes: u64,
    pub retries: u64,
    pub rejected: u64,
}

impl SinkStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_accepted(&self, items: usize, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_rejected(&self, items: usize) {
        self.rejected.fetch_add(items as u64, Ordering::Relaxed);
    }
}
