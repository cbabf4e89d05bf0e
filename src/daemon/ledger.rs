//! The delivery ledger: what CloudWatch has accepted, as the checkpoint records it, and which minutes to
//! publish next.
//!
//! Pure state, no IO. Every change returns the [`Record`]s that make it durable, which the keeper task
//! appends to the checkpoint; at start the ledger is rebuilt from the snapshot and the records after it,
//! through the same [`Ledger::apply`]. The protocol is in ARCHITECTURE.md ("Delivery"):
//! - counts become durable only with the logs batch holding their lines ([`Ledger::shipped`]);
//! - a minute is published when it is closed (its end, the grace and this host's offset have passed) and
//!   every line stamped in it is shipped ([`Ledger::next_due`]); on shutdown every pending minute is
//!   ([`Ledger::next_pending`]);
//! - published minutes leave the pending ones only once CloudWatch accepted them ([`Ledger::published`]);
//!   counts that arrive for a minute while it is in flight are kept apart, for a second datapoint.
//!
//! The per-minute arithmetic (zeros, default values, heartbeat, bounded backlog) is [`crate::counter`]'s.

use crate::counter::{Counter, Counts, Datum, Rules};
use crate::source::checkpoint::{Checkpoint, Loaded, Record};
use crate::source::{Position, SourceKind};

/// Most minutes handed out at once: a backlog is published in calls of this many minutes.
pub(crate) const MAX_MINUTES_PER_PUBLISH: usize = 60;

/// A minute ready to publish and its datums.
pub(crate) type DueMinute = (i64, Vec<Datum>);

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// The kind of log the state directory follows.
    source: Option<SourceKind>,
    /// Where reading resumes: after the last line CloudWatch Logs accepted.
    shipped: Option<Position>,
    /// Counts of shipped lines not published yet, *without* the minutes in flight.
    pending: Counter,
    /// The minutes handed to CloudWatch, taken out of `pending` until their answer.
    in_flight: Vec<(i64, Counts)>,
    /// The minutes in flight were recorded as taken (a record followed before their answer).
    take_recorded: bool,
    /// Every line stamped before this (Unix seconds) is shipped: from the reader's marks and the newest
    /// shipped minute (lines are stamped in reading order, so a shipped line of a later minute proves the
    /// earlier ones complete).
    shipped_through: i64,
}

impl Ledger {
    /// The ledger of a state directory (`loaded`) under `rules`, started at Unix second `now`.
    pub(crate) fn new(loaded: &Loaded, rules: Rules, now: i64) -> Ledger {
        let cp = &loaded.checkpoint;
        let mut pending = Counter::new(rules, now);
        pending.restore(&cp.pending_minutes);
        pending.restore(&cp.in_flight_minutes);
        let mut ledger = Ledger {
            source: cp.source,
            shipped: cp.shipped.clone(),
            pending,
            in_flight: Vec::new(),
            take_recorded: false,
            shipped_through: now,
        };
        for record in &loaded.records {
            ledger.apply(record);
        }
        // Minutes whose answer was never recorded are pending again.
        ledger.return_in_flight();
        ledger
    }

    /// The snapshot to compact the records into.
    pub(crate) fn snapshot(&self) -> Checkpoint {
        let rules = self.pending.rules();
        Checkpoint {
            source: self.source,
            shipped: self.shipped.clone(),
            pending_minutes: self.pending.saved(),
            in_flight_minutes: self
                .in_flight
                .iter()
                .map(|(m, c)| rules.save(*m, c))
                .collect(),
            ..Checkpoint::new()
        }
    }

    /// Applies one record, as made by the methods below or read back from the checkpoint.
    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Source { kind } => self.source = Some(*kind),
            Record::Shipped { shipped, minutes } => {
                let rules = self.pending.rules().clone();
                for saved in minutes {
                    self.pending.merge(saved.minute, &rules.restore(saved));
                }
                if shipped.is_some() {
                    self.shipped.clone_from(shipped);
                }
            }
            Record::Taken { minutes } => {
                for &m in minutes {
                    if let Some(counts) = self.pending.remove(m) {
                        self.in_flight.push((m, counts));
                    }
                }
                self.take_recorded = true;
            }
            Record::Published { minutes } => {
                for &m in minutes {
                    self.pending.remove(m);
                }
                self.in_flight.clear();
                self.take_recorded = false;
            }
            Record::Returned => self.return_in_flight(),
        }
    }

    fn return_in_flight(&mut self) {
        for (minute, counts) in std::mem::take(&mut self.in_flight) {
            self.pending.merge(minute, &counts);
        }
        self.take_recorded = false;
    }

    /// Where reading resumes.
    pub(crate) fn shipped_position(&self) -> Option<&Position> {
        self.shipped.as_ref()
    }

    /// The kind of log this state directory followed, if it did.
    pub(crate) fn source(&self) -> Option<SourceKind> {
        self.source
    }

    /// From now on the state directory follows `kind`.
    pub(crate) fn follow(&mut self, kind: SourceKind) -> Vec<Record> {
        if self.source == Some(kind) {
            return Vec::new();
        }
        let r = Record::Source { kind };
        self.apply(&r);
        vec![r]
    }

    /// The take of the minutes in flight, as a record, when it is not recorded yet and another record is
    /// about to follow it.
    fn record_take(&mut self) -> Option<Record> {
        if self.in_flight.is_empty() || self.take_recorded {
            return None;
        }
        self.take_recorded = true;
        Some(Record::Taken {
            minutes: self.in_flight.iter().map(|(m, _)| *m).collect(),
        })
    }

    /// CloudWatch Logs accepted a batch: `end` (when given) becomes `shipped`, the batch's counts (a
    /// counter of the same rules) become pending.
    pub(crate) fn shipped(&mut self, end: Option<Position>, counts: &Counter) -> Vec<Record> {
        let mut records: Vec<Record> = self.record_take().into_iter().collect();
        for (minute, c) in counts.minutes() {
            if c.lines > 0 {
                self.shipped_through = self.shipped_through.max(minute);
            }
        }
        let r = Record::Shipped {
            shipped: end,
            minutes: counts.saved(),
        };
        self.apply(&r);
        records.push(r);
        records
    }

    /// The reader says every line stamped before `read_until` is in the batches shipped so far.
    pub(crate) fn mark(&mut self, read_until: i64) {
        self.shipped_through = self.shipped_through.max(read_until);
    }

    /// The time up to which minutes may be closed: `now`, but not past what is known to be shipped.
    fn horizon(&self, now: i64) -> i64 {
        let delay = self.pending.rules().close_delay_secs();
        now.min(self.shipped_through.saturating_add(delay))
    }

    /// When (Unix seconds, after `now`) the next minute closes: the one `now` is in, once it ended and its
    /// delay (grace and this host's offset) passed, or the one before when that delay has not passed yet.
    pub(crate) fn next_close(&self, now: i64) -> i64 {
        let delay = self.pending.rules().close_delay_secs();
        crate::time::minute_of(now.saturating_sub(delay))
            .saturating_add(60)
            .saturating_add(delay)
    }

    /// Closed minutes waiting to be published (for `STATUS=` and the memory release).
    pub(crate) fn due(&self, now: i64) -> usize {
        let t = self.horizon(now);
        self.pending
            .minutes()
            .filter(|(m, _)| self.pending.is_closed(*m, t))
            .count()
    }

    /// The next minutes to publish at `now` (up to [`MAX_MINUTES_PER_PUBLISH`]), if some are due and none
    /// is in flight; they are in flight until [`Ledger::published`] or [`Ledger::returned`].
    pub(crate) fn next_due(&mut self, now: i64) -> Option<Vec<DueMinute>> {
        if !self.in_flight.is_empty() {
            return None;
        }
        let t = self.horizon(now);
        self.take_while(|pending| pending.pop_closed(t))
    }

    /// On shutdown: the next pending minutes, closed or not (CloudWatch sums the datapoints of one minute,
    /// so publishing the open minute now and its rest after a restart is correct).
    pub(crate) fn next_pending(&mut self) -> Option<Vec<DueMinute>> {
        if !self.in_flight.is_empty() {
            return None;
        }
        self.take_while(Counter::pop_any)
    }

    fn take_while(
        &mut self,
        mut pop: impl FnMut(&mut Counter) -> Option<(i64, Counts)>,
    ) -> Option<Vec<DueMinute>> {
        let mut out = Vec::new();
        while out.len() < MAX_MINUTES_PER_PUBLISH {
            let Some((minute, counts)) = pop(&mut self.pending) else {
                break;
            };
            let datums = self.pending.rules().datums(&counts);
            if datums.is_empty() {
                // Nothing to publish (no zeros, no heartbeat, no match): settled without a call. Its
                // absence from the pending minutes becomes durable with the next record.
                continue;
            }
            self.in_flight.push((minute, counts));
            out.push((minute, datums));
        }
        (!out.is_empty()).then_some(out)
    }

    /// CloudWatch accepted the minutes in flight.
    pub(crate) fn published(&mut self) -> Vec<Record> {
        let minutes = if self.take_recorded {
            Vec::new()
        } else {
            self.in_flight.iter().map(|(m, _)| *m).collect()
        };
        let r = Record::Published { minutes };
        self.apply(&r);
        vec![r]
    }

    /// The minutes in flight were not accepted (shutdown): they are pending again.
    pub(crate) fn returned(&mut self) -> Vec<Record> {
        let recorded = self.take_recorded;
        self.return_in_flight();
        if recorded {
            vec![Record::Returned]
        } else {
            Vec::new()
        }
    }

    /// Whether minutes are in flight.
    pub(crate) fn publishing(&self) -> bool {
        !self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::counter::SavedMinute;
    use crate::source::FileId;

    const T0: i64 = 1_700_000_040; // a minute boundary

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!("[metrics]\ngrace_seconds = 5\n{extra}"), None).unwrap()
    }

    fn rules(extra: &str) -> Rules {
        Rules::from_config(&config(extra))
    }

    fn ledger(extra: &str, now: i64) -> Ledger {
        Ledger::new(&Loaded::default(), rules(extra), now)
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

    /// A batch of `lines` lines stamped in `minute`, `failed` of them matching filter 1
    /// (FailedPasswordMetrics).
    fn batch(minute: i64, lines: u64, failed: u64) -> Counter {
        let mut c = Counter::new(rules(""), minute);
        c.add_lines(minute, lines);
        for _ in 0..failed {
            c.add_match(minute, 1, 1, Some(1.0));
        }
        c
    }

    fn value(datums: &[Datum], name: &str) -> Option<f64> {
        datums.iter().find(|d| d.1 == name).map(|d| d.2)
    }

    /// The ledger rebuilt from the records `l` made so far (and nothing else): what a restart sees.
    fn replayed(records: &[Record], extra: &str, now: i64) -> Ledger {
        let loaded = Loaded {
            records: records.to_vec(),
            written_at: Some(std::time::SystemTime::UNIX_EPOCH),
            ..Loaded::default()
        };
        Ledger::new(&loaded, rules(extra), now)
    }

    #[test]
    fn the_next_close_is_the_next_minute_end_plus_its_delay() {
        let l = ledger("publish_spread_seconds = 0\n", T0);
        // Grace 5: minute T0 - 60 closes at T0 + 5, minute T0 at T0 + 65.
        assert_eq!(l.next_close(T0 + 2), T0 + 5);
        assert_eq!(l.next_close(T0 + 5), T0 + 65);
        assert_eq!(l.next_close(T0 + 64), T0 + 65);
    }

    fn pending_lines(l: &Ledger) -> Vec<(i64, u64)> {
        l.snapshot()
            .pending_minutes
            .iter()
            .map(|m| (m.minute, m.lines))
            .collect()
    }

    #[test]
    fn a_minute_is_published_once_closed_and_shipped_with_zeros_and_heartbeat() {
        let mut l = ledger("", T0 + 10);
        let mut log = l.shipped(Some(pos(100)), &batch(T0, 7, 2));
        assert_eq!(l.shipped_position(), Some(&pos(100)));
        // Not closed yet (grace 5 s).
        assert_eq!(l.next_due(T0 + 64), None);
        // Closed, but lines of that minute may still be on their way.
        assert_eq!(l.next_due(T0 + 70), None);
        l.mark(T0 + 60);
        assert_eq!(l.due(T0 + 70), 1);
        let due = l.next_due(T0 + 70).unwrap();
        assert_eq!(due.len(), 1);
        let (minute, datums) = &due[0];
        assert_eq!(*minute, T0);
        assert_eq!(value(datums, "FailedPasswordMetrics"), Some(2.0));
        assert_eq!(value(datums, "InvalidUserMetrics"), Some(0.0));
        assert_eq!(value(datums, "ClosedConnectionMetrics"), Some(0.0));
        assert_eq!(value(datums, "LinesRead"), Some(7.0));
        // In flight: still pending in the snapshot, and nothing else is handed out.
        assert_eq!(l.snapshot().in_flight_minutes.len(), 1);
        assert_eq!(l.next_due(T0 + 70), None);
        log.extend(l.published());
        assert!(l.snapshot().pending_minutes.is_empty());
        assert!(
            replayed(&log, "", T0 + 70)
                .snapshot()
                .pending_minutes
                .is_empty()
        );
    }

    #[test]
    fn a_line_of_a_later_minute_proves_the_earlier_one_complete() {
        let mut l = ledger("", T0);
        let _ = l.shipped(Some(pos(1)), &batch(T0, 1, 1));
        assert_eq!(l.next_due(T0 + 66), None);
        let _ = l.shipped(Some(pos(2)), &batch(T0 + 60, 1, 0));
        assert_eq!(
            l.next_due(T0 + 66).map(|d| d[0].0),
            Some(T0),
            "the earlier minute"
        );
        let _ = l.published();
        // The later minute is not closed for the ledger until a line after it is shipped or a mark says so.
        assert_eq!(l.next_due(T0 + 200), None);
        l.mark(T0 + 120);
        assert_eq!(l.next_due(T0 + 200).map(|d| d[0].0), Some(T0 + 60));
    }

    #[test]
    fn counts_arriving_while_their_minute_is_in_flight_are_kept_for_a_second_datapoint() {
        let mut l = ledger("", T0);
        let mut log = l.shipped(Some(pos(1)), &batch(T0, 3, 3));
        l.mark(T0 + 60);
        let due = l.next_due(T0 + 70).unwrap();
        assert_eq!(value(&due[0].1, "FailedPasswordMetrics"), Some(3.0));
        log.extend(l.shipped(Some(pos(2)), &batch(T0, 1, 1)));
        assert!(
            matches!(log[1], Record::Taken { .. }),
            "the take is recorded before counts that must stay apart: {log:?}"
        );
        // Both parts are durable until PutMetricData answers.
        let crashed = replayed(&log, "", T0 + 70);
        assert_eq!(pending_lines(&crashed), vec![(T0, 4)]);
        log.extend(l.published());
        for restarted in [replayed(&log, "", T0 + 70), l] {
            let cp = restarted.snapshot();
            assert_eq!(cp.pending_minutes.len(), 1);
            assert_eq!(cp.pending_minutes[0].lines, 1);
            assert_eq!(
                cp.pending_minutes[0].values,
                vec![("SSH".into(), "FailedPasswordMetrics".into(), 1.0)]
            );
        }
    }

    #[test]
    fn minutes_not_accepted_stay_pending() {
        let mut l = ledger("", T0);
        let mut log = l.shipped(Some(pos(1)), &batch(T0, 3, 3));
        assert!(l.next_pending().is_some());
        log.extend(l.returned());
        assert!(
            log.iter().all(|r| !matches!(r, Record::Returned)),
            "nothing to undo on disk"
        );
        for again in [replayed(&log, "", T0), l] {
            let cp = again.snapshot();
            assert_eq!(cp.pending_minutes.len(), 1);
            assert_eq!(cp.pending_minutes[0].values[0].2, 3.0);
        }
    }

    #[test]
    fn minutes_in_flight_at_a_crash_are_pending_after_the_restart() {
        let mut l = ledger("", T0);
        let mut log = l.shipped(Some(pos(1)), &batch(T0, 3, 3));
        l.mark(T0 + 60);
        assert!(l.next_due(T0 + 70).is_some());
        // A record follows while the minute is in flight, then the process dies.
        log.extend(l.shipped(Some(pos(2)), &batch(T0 + 60, 1, 0)));
        let mut restarted = replayed(&log, "", T0 + 200);
        assert_eq!(pending_lines(&restarted), vec![(T0, 3), (T0 + 60, 1)]);
        restarted.mark(T0 + 200);
        assert_eq!(restarted.next_due(T0 + 200).map(|d| d.len()), Some(2));
    }

    #[test]
    fn quiet_minutes_publish_zeros_and_a_zero_heartbeat() {
        let mut l = ledger("", T0 + 30);
        l.mark(T0 + 125);
        let due = l.next_due(T0 + 125).unwrap();
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), [T0, T0 + 60]);
        assert!(due.iter().all(|d| d.1.len() == 4));
        assert!(due.iter().flat_map(|d| &d.1).all(|d| d.2 == 0.0));
        let _ = l.published();
        assert_eq!(l.next_due(T0 + 125), None);
        // A backlog comes out in sets of at most MAX_MINUTES_PER_PUBLISH, oldest first.
        l.mark(T0 + 7200);
        let due = l.next_due(T0 + 7200).unwrap_or_default();
        assert_eq!(due.len(), MAX_MINUTES_PER_PUBLISH);
        assert_eq!(due[0].0, T0 + 120);
    }

    #[test]
    fn no_zeros_and_no_heartbeat_means_nothing_for_quiet_minutes() {
        let extra = "publish_zeros = false\nheartbeat_metric = \"\"";
        let mut l = ledger(extra, T0);
        l.mark(T0 + 600);
        assert_eq!(l.next_due(T0 + 600), None);
        let mut c = Counter::new(rules(extra), T0);
        c.add_lines(T0 + 60, 2);
        c.add_match(T0 + 60, 1, 1, Some(1.0));
        let _ = l.shipped(Some(pos(1)), &c);
        let due = l.next_due(T0 + 600).unwrap();
        assert_eq!(
            due[0].1,
            vec![("SSH".into(), "FailedPasswordMetrics".into(), 1.0)]
        );
        // A minute with lines but nothing to publish is settled without a call.
        let mut c = Counter::new(rules(extra), T0);
        c.add_lines(T0 + 120, 2);
        let _ = l.published();
        let _ = l.shipped(Some(pos(2)), &c);
        assert_eq!(l.next_due(T0 + 600), None);
        assert!(l.snapshot().pending_minutes.is_empty());
    }

    #[test]
    fn restored_minutes_are_published_first() {
        let mut cp = Checkpoint::new();
        cp.shipped = Some(pos(9));
        cp.pending_minutes = vec![SavedMinute {
            minute: T0 - 600,
            values: vec![("SSH".into(), "InvalidUserMetrics".into(), 4.0)],
            lines: 9,
        }];
        let loaded = Loaded {
            checkpoint: cp,
            ..Loaded::default()
        };
        let mut l = Ledger::new(&loaded, rules(""), T0);
        assert_eq!(l.shipped_position(), Some(&pos(9)));
        let due = l.next_due(T0).unwrap();
        let (minute, datums) = &due[0];
        assert_eq!(*minute, T0 - 600);
        assert_eq!(value(datums, "InvalidUserMetrics"), Some(4.0));
        assert_eq!(value(datums, "LinesRead"), Some(9.0));
    }

    #[test]
    fn shutdown_publishes_the_open_minute() {
        let mut l = ledger("", T0);
        let _ = l.shipped(Some(pos(1)), &batch(T0, 2, 2));
        assert_eq!(l.next_due(T0 + 20), None);
        let due = l.next_pending().unwrap();
        assert_eq!(
            (due[0].0, value(&due[0].1, "FailedPasswordMetrics")),
            (T0, Some(2.0))
        );
        let _ = l.published();
        assert_eq!(l.next_pending(), None);
    }

    #[test]
    fn the_source_kind_is_recorded_once() {
        let mut l = ledger("", T0);
        assert_eq!(l.source(), None);
        let log = l.follow(SourceKind::Journal);
        assert_eq!(log.len(), 1);
        assert!(l.follow(SourceKind::Journal).is_empty());
        assert_eq!(replayed(&log, "", T0).source(), Some(SourceKind::Journal));
    }

    #[test]
    fn this_hosts_offset_delays_publishing() {
        let mut r = rules("");
        r.publish_offset_secs = 20;
        let mut l = Ledger::new(&Loaded::default(), r, T0);
        let _ = l.shipped(Some(pos(1)), &batch(T0, 1, 1));
        l.mark(T0 + 60);
        assert_eq!(l.next_due(T0 + 84), None);
        assert!(l.next_due(T0 + 85).is_some());
    }
}
