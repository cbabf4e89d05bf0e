//! Unix time as sshwatch counts it: milliseconds for log events, seconds and minutes for metrics, all from
//! one reading and one rule for times before the epoch (floor, never an error).
//!
//! [`SERVER_CLOCK`] keeps the host's clock honest: the `Date` of CloudWatch's answers says how far off the
//! host's clock is, and when it is off by a minute or more (a host booted with a wrong clock, before NTP
//! set it) lines and minutes are stamped with CloudWatch's time instead, so CloudWatch does not skip them
//! as too new or too old.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

/// An offset from CloudWatch's clock below this is left alone: it is network delay and the `Date`
/// header's one-second resolution, not a wrong clock.
const TOLERATED_SKEW_SECS: i64 = 60;

/// How far the host's clock is from CloudWatch's, from the answers seen so far.
#[derive(Debug, Default)]
pub struct ServerClock {
    /// CloudWatch's time minus the host's, in seconds, at the last answer.
    offset_secs: AtomicI64,
    /// The offset is being applied (beyond the tolerance).
    correcting: AtomicBool,
}

/// The process's [`ServerClock`], fed by every CloudWatch answer.
pub static SERVER_CLOCK: ServerClock = ServerClock {
    offset_secs: AtomicI64::new(0),
    correcting: AtomicBool::new(false),
};

impl ServerClock {
    /// An answer dated `server_secs` came when the host's clock read `local_secs`.
    pub fn observe(&self, server_secs: i64, local_secs: i64) {
        let offset = server_secs.saturating_sub(local_secs);
        self.offset_secs.store(offset, Ordering::Relaxed);
        let correct = offset.abs() >= TOLERATED_SKEW_SECS;
        if self.correcting.swap(correct, Ordering::Relaxed) != correct {
            if correct {
                warn!(
                    offset_secs = offset,
                    "the host's clock is {} s {} CloudWatch's: stamping lines and minutes with CloudWatch's time until the host's clock is set right",
                    offset.abs(),
                    if offset < 0 { "ahead of" } else { "behind" }
                );
            } else {
                info!(
                    offset_secs = offset,
                    "the host's clock agrees with CloudWatch's again"
                );
            }
        }
    }

    /// Milliseconds to add to the host's clock: 0 unless it is off by the tolerance or more.
    pub fn correction_ms(&self) -> i64 {
        if self.correcting.load(Ordering::Relaxed) {
            self.offset_secs
                .load(Ordering::Relaxed)
                .saturating_mul(1000)
        } else {
            0
        }
    }

    /// The current time (Unix seconds), corrected.
    pub fn now_secs(&self) -> i64 {
        secs_of_ms(now_ms().saturating_add(self.correction_ms()))
    }
}

/// Milliseconds since the Unix epoch, negative before it (floored), saturating at the ends of `i64`.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            // Floor: 0.5 ms before the epoch is -1 ms, as `div_euclid` floors seconds below.
            let before = e.duration();
            let ms = i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
            let partial = before.as_nanos() % 1_000_000 != 0;
            ms.saturating_neg().saturating_sub(i64::from(partial))
        }
    }
}

/// Seconds since the Unix epoch of a millisecond timestamp (floored).
pub fn secs_of_ms(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// The current time in Unix seconds.
pub fn now_secs() -> i64 {
    secs_of_ms(now_ms())
}

/// The Unix minute (seconds, a multiple of 60) holding `secs`.
pub fn minute_of(secs: i64) -> i64 {
    let q = secs.div_euclid(60);
    // Only the first minute of the i64 range has no representable start; use the next one (total).
    q.checked_mul(60).unwrap_or_else(|| (q + 1) * 60)
}

/// Unix seconds as RFC 3339 in UTC, for messages (the number itself when out of range).
pub fn rfc3339_secs(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_reading_gives_milliseconds_seconds_and_minutes_that_agree() {
        let t = UNIX_EPOCH + Duration::from_millis(61_999);
        assert_eq!(unix_ms(t), 61_999);
        assert_eq!(secs_of_ms(unix_ms(t)), 61);
        assert_eq!(minute_of(secs_of_ms(unix_ms(t))), 60);
        // Before the epoch everything floors, so an event and its minute still agree.
        let t = UNIX_EPOCH - Duration::from_micros(500);
        assert_eq!(unix_ms(t), -1);
        assert_eq!(secs_of_ms(-1), -1);
        assert_eq!(minute_of(-1), -60);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(2)), -2);
    }

    #[test]
    fn a_clock_a_minute_off_or_more_is_corrected_a_few_seconds_is_not() {
        let clock = ServerClock::default();
        assert_eq!(clock.correction_ms(), 0);
        clock.observe(1_000_002, 1_000_000);
        assert_eq!(clock.correction_ms(), 0, "network delay and rounding");
        // A host three hours ahead.
        clock.observe(1_000_000, 1_010_800);
        assert_eq!(clock.correction_ms(), -10_800_000);
        assert!((clock.now_secs() - (now_secs() - 10_800)).abs() <= 1);
        clock.observe(1_000_000, 1_000_001);
        assert_eq!(clock.correction_ms(), 0);
    }

    #[test]
    fn minutes_floor_and_never_overflow() {
        assert_eq!(minute_of(1_700_000_040), 1_700_000_040);
        assert_eq!(minute_of(1_700_000_099), 1_700_000_040);
        assert_eq!(minute_of(i64::MAX) % 60, 0);
        assert_eq!(minute_of(i64::MIN) % 60, 0);
        assert_eq!(secs_of_ms(i64::MIN), i64::MIN.div_euclid(1000));
    }
}
