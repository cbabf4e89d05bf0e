//! The delivery ledger: what CloudWatch has accepted, as the checkpoint records it, and which minute to publish next.
//!
//! Pure state, no IO: the daemon's ledger task feeds it accepted batches and accepted PutMetricData calls and
//! stores [`Ledger::checkpoint`] after each. The protocol it implements is in ARCHITECTURE.md ("Delivery"):
//! - counts become durable only with the logs batch holding their lines ([`Ledger::shipped`]);
//! - a minute is published when it is closed (+ grace) and every line read in it is shipped
//!   ([`Ledger::next_due`]), on shutdown also the open minute ([`Ledger::next_pending`]);
//! - a published minute leaves `pending_minutes` only once PutMetricData accepted it ([`Ledger::published`]).
//!
//! The per-minute arithmetic (zeros, default values, heartbeat, bounded backlog) is [`crate::counter`]'s.

use std::collections::BTreeMap;

use crate::counter::{Counter, Counts, Datum, Rules};
use crate::source::Position;
use crate::source::checkpoint::Checkpoint;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Where reading resumes: after the last line CloudWatch Logs accepted.
    shipped: Option<Position>,
    /// After the last line whose minute PutMetricData accepted.
    counted: Option<Position>,
    /// Counts of shipped lines not published yet, *without* the minute in flight.
    pending: Counter,
    /// The minute whose PutMetricData is in flight, taken out of `pending` until it is settled.
    in_flight: Option<(i64, Counts)>,
    /// The newest minute holding a shipped line (this run).
    newest_shipped: Option<i64>,
    /// The position after the last shipped line of each minute (this run), for `counted`.
    minute_ends: BTreeMap<i64, Position>,
}

impl Ledger {
    /// A ledger continuing `cp` under `rules`, started at unix second `now`.
    pub(crate) fn new(cp: Checkpoint, rules: Rules, now: i64) -> Ledger {
        let mut pending = Counter::new(rules, now);
        pending.restore(&cp.pending_minutes);
        Ledger {
            shipped: cp.shipped,
            counted: cp.counted,
            pending,
            in_flight: None,
            newest_shipped: None,
            minute_ends: BTreeMap::new(),
        }
    }

    /// The checkpoint to store now: the minute in flight is still pending until it is accepted.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        let pending_minutes = match &self.in_flight {
            None => self.pending.to_minute_counts(),
            Some((minute, counts)) => {
                let mut all = self.pending.clone();
                all.merge(*minute, counts);
                all.to_minute_counts()
            }
        };
        Checkpoint {
            shipped: self.shipped.clone(),
            counted: self.counted.clone(),
            pending_minutes,
            ..Checkpoint::new()
        }
    }

    /// Where reading resumes.
    pub(crate) fn shipped_position(&self) -> Option<&Position> {
        self.shipped.as_ref()
    }

    /// Records an accepted logs batch: `end` (when given) becomes `shipped`, the batch's counts (a counter
    /// of the same rules) become pending.
    pub(crate) fn shipped(&mut self, end: Option<Position>, batch: &Counter) {
        for (minute, counts) in batch.minutes() {
            self.pending.merge(minute, counts);
            if counts.lines > 0 {
                self.newest_shipped = Some(self.newest_shipped.map_or(minute, |n| n.max(minute)));
                if let Some(end) = &end {
                    self.minute_ends.insert(minute, end.clone());
                }
            }
        }
        if end.is_some() {
            self.shipped = end;
        }
    }

    /// The time up to which minutes may be closed: `now` when every line read is shipped (`drained`),
    /// otherwise no later than the newest shipped minute allows (a minute is complete once a line of a
    /// later minute is shipped: lines are read in time order).
    fn horizon(&self, now: i64, drained: bool) -> Option<i64> {
        if drained {
            return Some(now);
        }
        let grace = self.pending.rules().grace_secs;
        self.newest_shipped
            .map(|n| now.min(n.saturating_add(grace)))
    }

    /// Closed minutes waiting for their PutMetricData (for the watchdog: is there work?).
    pub(crate) fn due(&self, now: i64, drained: bool) -> usize {
        let Some(t) = self.horizon(now, drained) else {
            return 0;
        };
        self.pending
            .minutes()
            .filter(|(m, _)| self.pending.is_closed(*m, t))
            .count()
    }

    /// The next minute to publish at `now`, if one is due and none is in flight: the minute and its datums.
    /// `drained` says that every line read so far is shipped.
    pub(crate) fn next_due(&mut self, now: i64, drained: bool) -> Option<(i64, Vec<Datum>)> {
        if self.in_flight.is_some() {
            return None;
        }
        let t = self.horizon(now, drained)?;
        loop {
            let (minute, counts) = self.pending.pop_closed(t)?;
            if let Some(next) = self.take(minute, counts) {
                return Some(next);
            }
        }
    }

    /// On shutdown: the next pending minute, closed or not (CloudWatch sums the datapoints of one minute, so
    /// publishing the open minute now and its rest after a restart is correct).
    pub(crate) fn next_pending(&mut self) -> Option<(i64, Vec<Datum>)> {
        if self.in_flight.is_some() {
            return None;
        }
        loop {
            let (minute, counts) = self.pending.pop_any()?;
            if let Some(next) = self.take(minute, counts) {
                return Some(next);
            }
        }
    }

    /// Puts `minute` in flight; `None` when it publishes nothing (no zeros, no heartbeat, no match).
    fn take(&mut self, minute: i64, counts: Counts) -> Option<(i64, Vec<Datum>)> {
        let datums = self.pending.rules().datums(&counts);
        if datums.is_empty() {
            self.settle_counted(minute);
            return None;
        }
        self.in_flight = Some((minute, counts));
        Some((minute, datums))
    }

    /// PutMetricData accepted the minute in flight.
    pub(crate) fn published(&mut self) {
        if let Some((minute, _)) = self.in_flight.take() {
            self.settle_counted(minute);
        }
    }

    fn settle_counted(&mut self, minute: i64) {
        let done: Vec<i64> = self.minute_ends.range(..=minute).map(|(k, _)| *k).collect();
        for k in done {
            if let Some(p) = self.minute_ends.remove(&k) {
                self.counted = Some(p);
            }
        }
    }

    /// The minute in flight was not accepted (shutdown): it stays pending.
    pub(crate) fn not_published(&mut self) {
        if let Some((minute, counts)) = self.in_flight.take() {
            self.pending.merge(minute, &counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::source::FileId;
    use crate::source::checkpoint::MinuteCounts;

    const T0: i64 = 1_700_000_040; // a minute boundary

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!("[metrics]\ngrace_seconds = 5\n{extra}"), None).unwrap()
    }

    fn ledger(extra: &str, now: i64) -> Ledger {
        Ledger::new(Checkpoint::new(), Rules::from_config(&config(extra)), now)
    }

    fn pos(offset: u64) -> Position {
        Position::File {
            path: Path::new("/var/log/secure").into(),
            id: FileId {
                dev: 1,
                ino: 2,
                fingerprint: 3,
                fingerprint_len: 4,
            },
            offset,
        }
    }

    /// A batch of `lines` lines read in `minute`, `failed` of them matching filter 1 (FailedPasswordMetrics).
    fn batch(minute: i64, lines: u64, failed: u64) -> Counter {
        let mut c = Counter::new(Rules::from_config(&config("")), minute);
        c.add_lines(minute, lines);
        for _ in 0..failed {
            c.add_match(minute, 1, 1, Some(1.0));
        }
        c
    }

    fn value(datums: &[Datum], name: &str) -> Option<f64> {
        datums.iter().find(|d| d.1 == name).map(|d| d.2)
    }

    #[test]
    fn a_minute_is_published_once_closed_and_shipped_with_zeros_and_heartbeat() {
        let mut l = ledger("", T0 + 10);
        l.shipped(Some(pos(100)), &batch(T0, 7, 2));
        assert_eq!(l.checkpoint().shipped, Some(pos(100)));
        assert_eq!(l.checkpoint().pending_minutes.len(), 1);
        // Not closed yet (grace 5 s).
        assert_eq!(l.next_due(T0 + 64, true), None);
        // Closed, but lines of that minute may still be on their way.
        assert_eq!(l.next_due(T0 + 70, false), None);
        assert_eq!(l.due(T0 + 70, true), 1);
        let (minute, datums) = l.next_due(T0 + 70, true).unwrap();
        assert_eq!(minute, T0);
        assert_eq!(value(&datums, "FailedPasswordMetrics"), Some(2.0));
        assert_eq!(value(&datums, "InvalidUserMetrics"), Some(0.0));
        assert_eq!(value(&datums, "ClosedConnectionMetrics"), Some(0.0));
        assert_eq!(value(&datums, "LinesRead"), Some(7.0));
        // In flight: still pending in the checkpoint, and nothing else is handed out.
        assert_eq!(l.checkpoint().pending_minutes.len(), 1);
        assert_eq!(l.next_due(T0 + 70, true), None);
        l.published();
        assert!(l.checkpoint().pending_minutes.is_empty());
        assert_eq!(l.checkpoint().counted, Some(pos(100)));
    }

    #[test]
    fn a_line_of_a_later_minute_proves_the_earlier_one_complete() {
        let mut l = ledger("", T0);
        l.shipped(Some(pos(1)), &batch(T0, 1, 1));
        assert_eq!(l.next_due(T0 + 66, false), None);
        l.shipped(Some(pos(2)), &batch(T0 + 60, 1, 0));
        assert_eq!(l.next_due(T0 + 66, false).map(|d| d.0), Some(T0));
        l.published();
        assert_eq!(l.checkpoint().counted, Some(pos(1)));
        // The later minute is not closed for the ledger until a line after it is shipped or all is shipped.
        assert_eq!(l.next_due(T0 + 200, false), None);
    }

    #[test]
    fn counts_arriving_while_their_minute_is_in_flight_are_kept_for_a_second_datapoint() {
        let mut l = ledger("", T0);
        l.shipped(Some(pos(1)), &batch(T0, 3, 3));
        let (_, datums) = l.next_due(T0 + 70, true).unwrap();
        assert_eq!(value(&datums, "FailedPasswordMetrics"), Some(3.0));
        l.shipped(Some(pos(2)), &batch(T0, 1, 1));
        // The checkpoint holds both, merged, until PutMetricData answers.
        assert_eq!(l.checkpoint().pending_minutes[0].lines, 4);
        l.published();
        let cp = l.checkpoint();
        assert_eq!(cp.pending_minutes.len(), 1);
        assert_eq!(cp.pending_minutes[0].lines, 1);
        assert_eq!(
            cp.pending_minutes[0].values,
            vec![("SSH".into(), "FailedPasswordMetrics".into(), 1.0)]
        );
        let (minute, datums) = l.next_due(T0 + 70, true).unwrap();
        assert_eq!(
            (minute, value(&datums, "FailedPasswordMetrics")),
            (T0, Some(1.0))
        );
    }

    #[test]
    fn a_minute_not_accepted_stays_pending() {
        let mut l = ledger("", T0);
        l.shipped(Some(pos(1)), &batch(T0, 3, 3));
        assert!(l.next_pending().is_some());
        l.not_published();
        let cp = l.checkpoint();
        assert_eq!(cp.pending_minutes.len(), 1);
        assert_eq!(cp.pending_minutes[0].values[0].2, 3.0);
        assert_eq!(cp.counted, None);
        assert_eq!(l.next_pending().map(|d| d.0), Some(T0));
    }

    #[test]
    fn quiet_minutes_publish_zeros_and_a_zero_heartbeat() {
        let mut l = ledger("", T0 + 30);
        let (minute, datums) = l.next_due(T0 + 125, true).unwrap();
        assert_eq!(minute, T0);
        assert_eq!(datums.len(), 4);
        assert!(datums.iter().all(|d| d.2 == 0.0));
        l.published();
        assert_eq!(l.next_due(T0 + 125, true).map(|d| d.0), Some(T0 + 60));
        l.published();
        assert_eq!(l.next_due(T0 + 125, true), None);
    }

    #[test]
    fn no_zeros_and_no_heartbeat_means_nothing_for_quiet_minutes() {
        let extra = "publish_zeros = false\nheartbeat_metric = \"\"";
        let mut l = ledger(extra, T0);
        assert_eq!(l.next_due(T0 + 600, true), None);
        let mut c = Counter::new(Rules::from_config(&config(extra)), T0);
        c.add_lines(T0 + 60, 2);
        c.add_match(T0 + 60, 1, 1, Some(1.0));
        l.shipped(Some(pos(1)), &c);
        let (_, datums) = l.next_due(T0 + 600, true).unwrap();
        assert_eq!(
            datums,
            vec![("SSH".into(), "FailedPasswordMetrics".into(), 1.0)]
        );
        // A minute with lines but nothing to publish is settled without a call.
        let mut c = Counter::new(Rules::from_config(&config(extra)), T0);
        c.add_lines(T0 + 120, 2);
        l.published();
        l.shipped(Some(pos(2)), &c);
        assert_eq!(l.next_due(T0 + 600, true), None);
        assert_eq!(l.checkpoint().counted, Some(pos(2)));
        assert!(l.checkpoint().pending_minutes.is_empty());
    }

    #[test]
    fn restored_minutes_are_published_first() {
        let mut cp = Checkpoint::new();
        cp.shipped = Some(pos(9));
        cp.pending_minutes = vec![MinuteCounts {
            minute: T0 - 600,
            values: vec![("SSH".into(), "InvalidUserMetrics".into(), 4.0)],
            lines: 9,
        }];
        let mut l = Ledger::new(cp, Rules::from_config(&config("")), T0);
        assert_eq!(l.shipped_position(), Some(&pos(9)));
        let (minute, datums) = l.next_due(T0, true).unwrap();
        assert_eq!(minute, T0 - 600);
        assert_eq!(value(&datums, "InvalidUserMetrics"), Some(4.0));
        assert_eq!(value(&datums, "LinesRead"), Some(9.0));
    }

    #[test]
    fn shutdown_publishes_the_open_minute() {
        let mut l = ledger("", T0);
        l.shipped(Some(pos(1)), &batch(T0, 2, 2));
        assert_eq!(l.next_due(T0 + 20, true), None);
        let (minute, datums) = l.next_pending().unwrap();
        assert_eq!(
            (minute, value(&datums, "FailedPasswordMetrics")),
            (T0, Some(2.0))
        );
        l.published();
        assert_eq!(l.next_pending(), None);
    }
}
