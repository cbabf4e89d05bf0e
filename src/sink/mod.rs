//! The only code that calls PutLogEvents and PutMetricData: the pure batcher, the two sinks and the retry
//! policy they share.
//!
//! - [`batch`]: [`LogBatcher`], every PutLogEvents limit, pure.
//! - [`body`]: the PutLogEvents request body, written from a batch's one buffer, pure.
//! - [`logs`]: [`LogsSink`], one batch at a time into the configured group and stream.
//! - [`metrics`]: [`MetricsSink`], per-minute datums through PutMetricData.
//! - [`emf`]: the same datums as CloudWatch embedded metric format events, pure.
//! - [`publish`]: [`publish::Publisher`], the minutes through the configured transport.
//! - [`retry`]: error classification, capped exponential backoff with full jitter.
//!
//! Both sinks retry transient errors forever and return [`Aborted`] promptly when shutdown aborts; what a
//! call held is then still in the file or the checkpoint.

pub mod batch;
pub mod body;
pub mod emf;
pub mod logs;
pub mod metrics;
pub mod publish;
pub mod retry;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

pub use self::batch::{EventBatch, LogBatcher, LogEvent};
pub use self::logs::{LogsSink, PutOutcome, SkippedEvents};
pub use self::metrics::{MetricsOutcome, MetricsSink};
pub use self::retry::Backoff;
pub use crate::counter::Datum;
use crate::health::Beat;
pub use crate::shutdown::Aborted;

/// Reads the `Date` of every CloudWatch answer into [`crate::time::SERVER_CLOCK`].
#[derive(Debug)]
pub(crate) struct ServerDate;

impl aws_sdk_cloudwatchlogs::config::Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "ServerDate"
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_cloudwatchlogs::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_cloudwatchlogs::config::RuntimeComponents,
        _: &mut aws_sdk_cloudwatchlogs::config::ConfigBag,
    ) -> Result<(), aws_sdk_cloudwatchlogs::error::BoxError> {
        let date = context.response().headers().get("date");
        if let Some(date) = date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) {
            crate::time::SERVER_CLOCK.observe(date.timestamp(), crate::time::now_secs());
        }
        Ok(())
    }
}

/// The longest the flush interval grows to while CloudWatch throttles.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(120);

/// How often the daemon may send a batch that is not full: the configured `force_flush_interval`,
/// doubled on every throttled call up to [`MAX_FLUSH_INTERVAL`], and shortened by one configured interval
/// per accepted call until it is back (additive increase of the rate, multiplicative decrease: hosts
/// sharing one account's quota settle below it together). One WARN when an episode starts, one INFO
/// when it ends.
#[derive(Debug)]
pub struct Pace {
    base_ms: u64,
    current_ms: AtomicU64,
    throttled: AtomicBool,
}

impl Pace {
    pub fn new(base: Duration) -> Pace {
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
        Pace {
            base_ms,
            current_ms: AtomicU64::new(base_ms),
            throttled: AtomicBool::new(false),
        }
    }

    /// The flush interval now.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.current_ms.load(Ordering::Relaxed))
    }

    /// A call was throttled.
    pub(crate) fn throttled(&self) {
        let max = u64::try_from(MAX_FLUSH_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let now = self.current_ms.load(Ordering::Relaxed);
        let next = now.saturating_mul(2).min(max.max(self.base_ms));
        self.current_ms.store(next, Ordering::Relaxed);
        if !self.throttled.swap(true, Ordering::Relaxed) {
            warn!(
                flush_interval_ms = next,
                "CloudWatch Logs is throttling PutLogEvents (the account's quota is shared by every host): sending batches at most every {:.1} s instead of {:.1} s until it stops",
                next as f64 / 1000.0,
                self.base_ms as f64 / 1000.0
            );
        }
    }

    /// A call was accepted.
    pub(crate) fn accepted(&self) {
        let now = self.current_ms.load(Ordering::Relaxed);
        if now <= self.base_ms {
            return;
        }
        let next = now.saturating_sub(self.base_ms).max(self.base_ms);
        self.current_ms.store(next, Ordering::Relaxed);
        if next == self.base_ms && self.throttled.swap(false, Ordering::Relaxed) {
            info!(
                flush_interval_ms = next,
                "PutLogEvents is no longer throttled: sending batches every {:.1} s again",
                next as f64 / 1000.0
            );
        }
    }
}

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
    /// Log events or datums not delivered and not retried: events CloudWatch refused on their own or
    /// skipped (`rejectedLogEventsInfo`), datums too old or not finite.
    rejected: AtomicU64,
    /// The last failed call that is being retried (`operation: reason`), until a call is accepted.
    failing: std::sync::Mutex<Option<String>>,
    /// The sink's promise to the watchdog while a call or a wait is under way.
    pub beat: Beat,
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
        if let Ok(mut f) = self.failing.lock() {
            *f = None;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A failed call is retried; `failure` says which and why.
    pub(crate) fn add_retry(&self, failure: String) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.failing.lock() {
            *f = Some(failure);
        }
    }

    /// The failure being retried, if the last call failed.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }

    pub(crate) fn add_rejected(&self, items: usize) {
        self.rejected.fetch_add(items as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_doubles_the_interval_and_acceptance_brings_it_back_step_by_step() {
        let p = Pace::new(Duration::from_secs(5));
        assert_eq!(p.interval(), Duration::from_secs(5));
        p.throttled();
        p.throttled();
        assert_eq!(p.interval(), Duration::from_secs(20));
        for _ in 0..10 {
            p.throttled();
        }
        assert_eq!(p.interval(), MAX_FLUSH_INTERVAL);
        p.accepted();
        assert_eq!(p.interval(), Duration::from_secs(115));
        for _ in 0..100 {
            p.accepted();
        }
        assert_eq!(p.interval(), Duration::from_secs(5));
    }
}
