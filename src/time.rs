//! Unix time as sshwatch counts it: milliseconds for log events, seconds and minutes for metrics, all from
//! one reading and one rule for times before the epoch (floor, never an error).

use std::time::{SystemTime, UNIX_EPOCH};

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
    fn minutes_floor_and_never_overflow() {
        assert_eq!(minute_of(1_700_000_040), 1_700_000_040);
        assert_eq!(minute_of(1_700_000_099), 1_700_000_040);
        assert_eq!(minute_of(i64::MAX) % 60, 0);
        assert_eq!(minute_of(i64::MIN) % 60, 0);
        assert_eq!(secs_of_ms(i64::MIN), i64::MIN.div_euclid(1000));
    }
}
