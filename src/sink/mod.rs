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

/// How often the daemon may send a batch that is not full: the configured `force_flush_interval`, doubled
/// when CloudWatch throttles (at most once per interval, however many attempts of one call were
/// throttled) up to [`MAX_FLUSH_INTERVAL`], and shortened again by half a second per second without a
/// throttle until it is back: multiplicative increase, additive recovery, so hosts sharing one account's
/// quota settle below it together (throttled once per interval, the interval still grows: it recovers
/// less in one interval than a doubling adds) and are back within four minutes once it has room. One
/// WARN when an episode starts, one INFO when it ends.
#[derive(Debug)]
pub struct Pace {
    base_ms: u64,
    /// The instant the times below count from.
    origin: tokio::time::Instant,
    /// The interval right after the last doubling.
    peak_ms: AtomicU64,
    /// When the last doubling was, in milliseconds since `origin`.
    doubled_at_ms: AtomicU64,
    throttled: AtomicBool,
}

impl Pace {
    pub fn new(base: Duration) -> Pace {
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
        Pace {
            base_ms,
            origin: tokio::time::Instant::now(),
            peak_ms: AtomicU64::new(base_ms),
            doubled_at_ms: AtomicU64::new(0),
            throttled: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn interval_ms_at(&self, now_ms: u64) -> u64 {
        // Half a second back per second since the last doubling.
        let recovered = now_ms.saturating_sub(self.doubled_at_ms.load(Ordering::Relaxed)) / 2;
        self.peak_ms
            .load(Ordering::Relaxed)
            .saturating_sub(recovered)
            .max(self.base_ms)
    }

    /// The flush interval now.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms_at(self.now_ms()))
    }

    /// A call was throttled.
    pub(crate) fn throttled(&self) {
        let now = self.now_ms();
        let current = self.interval_ms_at(now);
        let episode = self.throttled.load(Ordering::Relaxed);
        // Attempts of one call, or calls of one interval, double it once.
        if episode && now.saturating_sub(self.doubled_at_ms.load(Ordering::Relaxed)) < current {
            return;
        }
        let max = u64::try_from(MAX_FLUSH_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let next = current.saturating_mul(2).min(max.max(self.base_ms));
        self.peak_ms.store(next, Ordering::Relaxed);
        self.doubled_at_ms.store(now, Ordering::Relaxed);
        if !self.throttled.swap(true, Ordering::Relaxed) {
            warn!(
                flush_interval_ms = next,
                "CloudWatch Logs is throttling PutLogEvents (the account's quota is shared by every host): sending batches at most every {:.1} s instead of {:.1} s until it stops",
                next as f64 / 1000.0,
                self.base_ms as f64 / 1000.0
            );
        }
    }

    /// A call was accepted: ends the episode once the interval is back to the configured one.
    pub(crate) fn accepted(&self) {
        let now = self.interval_ms_at(self.now_ms());
        if now == self.base_ms && self.throttled.swap(false, Ordering::Relaxed) {
            info!(
                flush_interval_ms = now,
                "PutLogEvents is no longer throttled: sending batches every {:.1} s again",
                now as f64 / 1000.0
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

    #[tokio::test(start_paused = true)]
    async fn throttling_doubles_the_interval_once_per_interval_and_time_brings_it_back() {
        let p = Pace::new(Duration::from_secs(5));
        assert_eq!(p.interval(), Duration::from_secs(5));
        // Five throttled attempts of one call, within a second: one doubling.
        for _ in 0..5 {
            p.throttled();
            tokio::time::advance(Duration::from_millis(200)).await;
        }
        assert_eq!(p.interval(), Duration::from_millis(9500));
        // Every call throttled, each sent once its batch waited the interval as it stands then (the
        // reader looks again as it shrinks): it still grows, up to the cap.
        for _ in 0..20 {
            let start = tokio::time::Instant::now();
            while start.elapsed() < p.interval() {
                tokio::time::advance(Duration::from_millis(100)).await;
            }
            p.throttled();
        }
        assert_eq!(p.interval(), MAX_FLUSH_INTERVAL);
        // Half a second back per second without a throttle, down to the configured interval.
        tokio::time::advance(Duration::from_secs(100)).await;
        p.accepted();
        assert_eq!(p.interval(), Duration::from_secs(70));
        assert!(p.throttled.load(Ordering::Relaxed));
        tokio::time::advance(Duration::from_secs(130)).await;
        p.accepted();
        assert_eq!(p.interval(), Duration::from_secs(5));
        assert!(!p.throttled.load(Ordering::Relaxed));
    }
}
