//! The retry policy both sinks share: which SDK errors are worth another try, how long to wait (capped
//! exponential backoff with full jitter), and how to stop waiting when the daemon shuts down.
//!
//! The sinks build their clients with the SDK's own retries off (one attempt per call): this loop is the
//! only retry layer, so every retry is counted, logged, capped and interruptible, and never gives up on a
//! transient error (a shipper that gives up after N tries loses lines). Only errors known to be about the
//! request itself are not retried; an error code this module does not know waits and tries again, so
//! lines wait in the file rather than being dropped.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::config::http::HttpResponse;
use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use tracing::{error, warn};

use crate::shutdown::{Aborted, Shutdown};
use crate::sink::SinkStats;

/// Capped exponential backoff with full jitter: before retry `n` (0-based) wait a uniformly random time
/// in `[0, min(cap, base * 2^n)]` (the "full jitter" of AWS's backoff guidance, which spreads the
/// retries of many hosts sharing one account quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// 100 ms doubling up to 30 s: quick recovery from a single throttle, at most two calls a minute
    /// per sink during a long outage.
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(30),
    };

    /// The longest wait before retry `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random wait before retry `attempt`, in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=ceiling))
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::DEFAULT
    }
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient (throttling, 5xx, timeouts, network, unreadable answers): wait and try again, forever.
    Retry,
    /// Credentials, permissions, a quota, or an error code not known here: the same request may succeed
    /// once an operator fixes the account, so wait and try again (logged at ERROR), rather than drop lines
    /// that cannot be read again.
    RetryAfterFix,
    /// The log group or stream is missing: create it, then try again.
    NotFound,
    /// The request itself is wrong ([`PERMANENT`]): the same request cannot succeed.
    Reject,
}

/// How the call failed, as far as the SDK could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request could not be built (never sent).
    Construction,
    /// Connect or attempt timeout.
    Timeout,
    /// Network error, connection dropped, credentials or endpoint could not be resolved.
    Dispatch,
    /// An answer that could not be read as the service's response.
    Response,
    /// The service answered with an error.
    Service,
}

/// Throttling, in every spelling the two services (JSON CloudWatch Logs, query/XML CloudWatch) and the
/// SDKs use.
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
];

/// Server-side trouble that the next try may not meet.
const TRANSIENT: &[&str] = &[
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalServiceError",
    "InternalServiceFault",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
    "OperationAbortedException",
];

/// Errors an operator fixes in the account (or that fix themselves: expired credentials are refreshed).
const FIXABLE: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "RequestExpired",
    "NotAuthorized",
    "UnauthorizedOperation",
    "OptInRequired",
    "LimitExceededException",
];

/// Errors about the request itself: sent again unchanged, it fails again. The logs sink then splits the
/// batch to find the events CloudWatch refuses; the metrics sink drops the minute's datums with an ERROR.
const PERMANENT: &[&str] = &[
    "InvalidParameterException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidParameterCombination",
    "MissingParameter",
    "MissingRequiredParameter",
    "SerializationException",
    "ValidationException",
    "ValidationError",
    "InvalidQueryParameter",
    "MalformedQueryString",
];

/// The verdict for a failure of `kind` with the service's error `code` and HTTP `status`.
pub fn verdict(kind: FailureKind, code: Option<&str>, status: Option<u16>) -> Verdict {
    match kind {
        FailureKind::Construction => return Verdict::Reject,
        FailureKind::Timeout | FailureKind::Dispatch | FailureKind::Response => {
            return Verdict::Retry;
        }
        FailureKind::Service => {}
    }
    if let Some(code) = code {
        if THROTTLING.contains(&code) || TRANSIENT.contains(&code) {
            return Verdict::Retry;
        }
        if code == "ResourceNotFoundException" {
            return Verdict::NotFound;
        }
        if FIXABLE.contains(&code) {
            return Verdict::RetryAfterFix;
        }
        if PERMANENT.contains(&code) {
            return Verdict::Reject;
        }
    }
    match (code, status) {
        (_, Some(s)) if s >= 500 || s == 429 => Verdict::Retry,
        // An error without a code is not CloudWatch judging the request (a proxy or a load balancer).
        (None, _) => Verdict::Retry,
        // A code not known here: it may need an operator; the lines wait.
        (Some(_), _) => Verdict::RetryAfterFix,
    }
}

/// Whether the error chain says the request never left: the connection was refused, or the endpoint's
/// address could not be reached or resolved.
fn never_sent(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable
            ) {
                return true;
            }
        }
        let text = e.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether `failure` is CloudWatch throttling the account (as opposed to a failure of the request).
pub fn is_throttling(failure: &Failure) -> bool {
    failure
        .code
        .as_deref()
        .is_some_and(|c| THROTTLING.contains(&c))
        || failure.status == Some(429)
}

/// One failed call, classified.
#[derive(Debug, Clone)]
pub struct Failure {
    pub verdict: Verdict,
    pub code: Option<String>,
    pub status: Option<u16>,
    /// What went wrong, in words: the error and its sources, each once (`dispatch failure: io error:
    /// ... Connection refused`).
    pub message: String,
    /// The SDK's full error, its debug form included, for the journal's `error` field.
    pub detail: String,
    /// The request may have reached CloudWatch and taken effect although no answer says so: it was sent
    /// (the connection was not refused) and no error answer came back.
    pub may_have_arrived: bool,
}

impl Failure {
    /// Classifies an SDK error by its variant, error code (`ProvideErrorMetadata::code`) and HTTP status.
    pub fn of<E>(err: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let kind = match err {
            SdkError::ConstructionFailure(_) => FailureKind::Construction,
            SdkError::TimeoutError(_) => FailureKind::Timeout,
            SdkError::DispatchFailure(_) => FailureKind::Dispatch,
            SdkError::ResponseError(_) => FailureKind::Response,
            SdkError::ServiceError(_) => FailureKind::Service,
            // A future variant: trying again is the safe side.
            _ => FailureKind::Dispatch,
        };
        let code = err.code().map(str::to_owned);
        let status = err.raw_response().map(|r| r.status().as_u16());
        let may_have_arrived = match kind {
            FailureKind::Construction | FailureKind::Service => false,
            FailureKind::Timeout | FailureKind::Response => true,
            FailureKind::Dispatch => !never_sent(err),
        };
        Failure {
            verdict: verdict(kind, code.as_deref(), status),
            code,
            status,
            message: error_chain(err),
            detail: DisplayErrorContext(err).to_string(),
            may_have_arrived,
        }
    }

    /// `Code: message` for logs and outcomes.
    pub fn reason(&self) -> String {
        match &self.code {
            Some(code) => format!("`{code}`: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// `err` and its sources joined by `: `, skipping a source whose text the previous one already ends with
/// (the SDK's errors often repeat their source's message).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// The retry state of one logical call (a batch, a minute): counts, logs and waits.
#[derive(Debug)]
pub(crate) struct Retrier<'a> {
    backoff: Backoff,
    attempt: u32,
    operation: &'static str,
    /// What the call carries, for messages ("a batch of 120 log events").
    what: String,
    stats: &'a SinkStats,
    shutdown: &'a Shutdown,
}

impl<'a> Retrier<'a> {
    pub(crate) fn new(
        operation: &'static str,
        what: String,
        backoff: Backoff,
        stats: &'a SinkStats,
        shutdown: &'a Shutdown,
    ) -> Retrier<'a> {
        Retrier {
            backoff,
            attempt: 0,
            operation,
            what,
            stats,
            shutdown,
        }
    }

    /// Retries made so far.
    pub(crate) fn retries(&self) -> u32 {
        self.attempt
    }

    /// Runs one attempt of the call, telling the watchdog how long it may take (the client's timeouts).
    pub(crate) async fn attempt<F: std::future::Future>(
        &self,
        call: F,
    ) -> Result<F::Output, Aborted> {
        self.stats.beat.expect_within(ATTEMPT_DEADLINE);
        let out = self
            .shutdown
            .unless_aborted_after(call, IN_FLIGHT_GRACE)
            .await;
        self.stats.beat.idle();
        out
    }

    /// Logs `failure` (what failed, why, and what happens next), counts a retry and waits the backoff
    /// (or returns `Aborted`).
    pub(crate) async fn wait(&mut self, failure: &Failure) -> Result<(), Aborted> {
        let delay = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.stats
            .add_retry(format!("{}: {}", self.operation, failure.reason()));
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let code = failure.code.as_deref().unwrap_or("-");
        let status = failure.status.unwrap_or(0);
        let (operation, what, attempt) = (self.operation, &self.what, self.attempt);
        let next = format!(
            "retrying in {:.1} s (retry {attempt}); {what} waits, nothing is dropped",
            delay.as_secs_f64()
        );
        if failure.verdict == Verdict::RetryAfterFix {
            error!(
                operation,
                attempt,
                code,
                status,
                delay_ms,
                error = %failure.detail,
                "{operation} refused by CloudWatch: {}; an operator must fix the credentials, permissions or quota; {next}",
                failure.reason()
            );
        } else {
            warn!(
                operation,
                attempt,
                code,
                status,
                delay_ms,
                error = %failure.detail,
                "{operation} failed: {}; {next}",
                failure.reason()
            );
        }
        self.stats.beat.expect_within(delay + SLEEP_SLACK);
        let slept = self.shutdown.sleep(delay).await;
        self.stats.beat.idle();
        slept
    }
}

/// The longest an attempt may take before the watchdog calls it hung: the client's operation timeout,
/// plus time to notice.
pub(crate) const ATTEMPT_DEADLINE: Duration = Duration::from_secs(70);

/// A call in flight when shutdown aborts gets this long to bring its answer: an answer on its way means
/// the call took effect, and abandoning it would send it again after the next start.
pub(crate) const IN_FLIGHT_GRACE: Duration = Duration::from_secs(2);

/// How late a backoff sleep may end before the watchdog calls the task hung.
const SLEEP_SLACK: Duration = Duration::from_secs(10);

/// The SDK's retries off (this module is the retry layer) and bounded attempts, so a hung connection
/// turns into a timeout the loop retries.
pub(crate) fn client_retry_config() -> RetryConfig {
    RetryConfig::disabled()
}

/// Connect within 10 s, answer within 60 s (a 1 MiB PutLogEvents on a slow link).
pub(crate) fn client_timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(60))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Chained(&'static str, Option<Box<Chained>>);

    impl std::fmt::Display for Chained {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chained {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn the_error_chain_reads_as_words_each_once() {
        let inner = Chained("Connection refused (os error 111)", None);
        let middle = Chained(
            "tcp connect error: Connection refused (os error 111)",
            Some(Box::new(inner)),
        );
        let outer = Chained("dispatch failure", Some(Box::new(middle)));
        assert_eq!(
            error_chain(&outer),
            "dispatch failure: tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_below_the_ceiling() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(8), Duration::from_millis(25_600));
        assert_eq!(b.ceiling(9), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
        for attempt in [0, 3, 40] {
            for _ in 0..200 {
                assert!(b.delay(attempt) <= b.ceiling(attempt));
            }
        }
        // Full jitter: the waits spread over the range instead of sitting at the ceiling.
        let waits: Vec<Duration> = (0..200).map(|_| b.delay(9)).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_secs(15)));
        assert!(waits.iter().any(|w| *w > Duration::from_secs(15)));
    }

    #[test]
    fn verdicts_follow_codes_statuses_and_kinds() {
        use FailureKind::*;
        use Verdict::*;
        let cases: &[(FailureKind, Option<&str>, Option<u16>, Verdict)] = &[
            (Service, Some("ThrottlingException"), Some(400), Retry),
            (Service, Some("Throttling"), Some(400), Retry),
            (Service, Some("TooManyRequestsException"), Some(400), Retry),
            (
                Service,
                Some("ServiceUnavailableException"),
                Some(500),
                Retry,
            ),
            (Service, Some("InternalServiceError"), Some(500), Retry),
            (Service, None, Some(503), Retry),
            (Service, None, Some(502), Retry),
            (Service, Some("Whatever"), Some(500), Retry),
            (Service, Some("Whatever"), Some(429), Retry),
            // A code not known here waits for an operator instead of dropping the batch.
            (Service, Some("Whatever"), Some(400), RetryAfterFix),
            (Service, Some("KmsThrottled"), Some(403), RetryAfterFix),
            (Service, None, Some(400), Retry),
            (
                Service,
                Some("ResourceNotFoundException"),
                Some(400),
                NotFound,
            ),
            (
                Service,
                Some("InvalidParameterException"),
                Some(400),
                Reject,
            ),
            (Service, Some("InvalidParameterValue"), Some(400), Reject),
            (Service, Some("MissingParameter"), Some(400), Reject),
            (Service, Some("SerializationException"), Some(400), Reject),
            (
                Service,
                Some("AccessDeniedException"),
                Some(400),
                RetryAfterFix,
            ),
            (
                Service,
                Some("UnrecognizedClientException"),
                Some(400),
                RetryAfterFix,
            ),
            (Service, Some("ExpiredToken"), Some(403), RetryAfterFix),
            (Timeout, None, None, Retry),
            (Dispatch, None, None, Retry),
            (Response, None, Some(200), Retry),
            (Construction, None, None, Reject),
        ];
        for &(kind, code, status, want) in cases {
            assert_eq!(
                verdict(kind, code, status),
                want,
                "{kind:?} {code:?} {status:?}"
            );
        }
    }
}
