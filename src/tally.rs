//! What events mean, pure and synchronous: `message repeated N times` expansion, every metric filter, the
//! silent-miss detector's near misses, and per-minute counts.
//!
//! One implementation for the three places that count: the daemon (each event as it is shipped), `replay`
//! (each line at its own timestamp) and `classify` (whole buffers, no minutes). An event is what
//! CloudWatch's metric filters would see: a line, or one marked piece of a line too long for one event;
//! a line counts once, with its last piece.

use std::borrow::Cow;

use crate::classify::{Classifier, Scratch};
use crate::config::Config;
use crate::counter::{Counter, Counts, Rules};
use crate::detector::{Detector, FILTER_NEAR_MISSES_METRIC};
use crate::time::minute_of;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Tally {
    classifier: Classifier,
    scratch: Scratch,
    detector: Detector,
    expand_repeated: bool,
    rules: Rules,
    /// Namespace of the `FilterNearMisses` metric.
    near_miss_namespace: String,
    /// The current event's matches: `(filter index, value)`.
    hits: Vec<(usize, Option<f64>)>,
    /// The current event's matching filter indices (for the detector).
    matched: Vec<usize>,
    /// The minute of `run`.
    run_minute: i64,
    /// Counts of consecutive events of one minute, folded into `counter` when the minute changes or on
    /// [`Tally::take`]: cheaper than a map lookup per event.
    run: Counts,
    counter: Counter,
}

impl Tally {
    /// A tally of `config`'s metric filters, rules and detector.
    pub(crate) fn new(config: &Config) -> Tally {
        Tally::with_rules(config, Rules::from_config(config))
    }

    /// [`Tally::new`] with other publishing rules (replay publishes no heartbeat).
    pub(crate) fn with_rules(config: &Config, rules: Rules) -> Tally {
        let classifier = Classifier::new(&config.metric_filters);
        let detector = Detector::with_literals(
            &config.metric_filters,
            &config.detector,
            classifier.literals().clone(),
        );
        Tally {
            classifier,
            scratch: Scratch::default(),
            detector,
            expand_repeated: config.source.expand_repeated,
            near_miss_namespace: config.metrics.namespace.clone(),
            hits: Vec::new(),
            matched: Vec::new(),
            run_minute: 0,
            run: rules.empty(),
            counter: Counter::new(rules.clone(), 0),
            rules,
        }
    }

    /// The silent-miss detector fed by [`Tally::count_event`].
    pub(crate) fn detector(&mut self) -> &mut Detector {
        &mut self.detector
    }

    /// The detector's few words for `STATUS=` when a filter is silent.
    pub(crate) fn detector_status(&self) -> Option<String> {
        self.detector.status()
    }

    /// Counts one event stamped `secs` (Unix seconds): its matches and near misses, and one line when
    /// `ends_line` (false for a piece of an over-long line that goes on in the next event).
    pub(crate) fn count_event(&mut self, event: &[u8], secs: i64, ends_line: bool) {
        let (text, times): (Cow<'_, [u8]>, u64) = if self.expand_repeated {
            crate::repeat::expand(event)
        } else {
            (Cow::Borrowed(event), 1)
        };
        let hits = &mut self.hits;
        hits.clear();
        self.classifier
            .classify(&text, &mut self.scratch, |i, value| hits.push((i, value)));
        let near_misses = if self.detector.is_active() {
            self.matched.clear();
            self.matched.extend(self.hits.iter().map(|h| h.0));
            let candidates = self.scratch.candidates();
            self.detector
                .observe_candidates(&text, &self.matched, candidates, secs)
        } else {
            0
        };
        let minute = minute_of(secs);
        if minute != self.run_minute {
            self.fold_run();
            self.run_minute = minute;
        }
        let run = &mut self.run;
        if ends_line {
            run.lines = run.lines.saturating_add(1);
        }
        if near_misses > 0 {
            let n = near_misses.saturating_mul(times) as f64;
            run.add_extra(&self.near_miss_namespace, FILTER_NEAR_MISSES_METRIC, n);
        }
        for &(filter, value) in &self.hits {
            if let Some(&t) = self.rules.filter_targets.get(filter) {
                run.add_match(t, times, value.map(|v| v * times as f64));
            }
        }
    }

    /// Counts every complete line of `buf` (a last line without a newline too) into one total, with no
    /// minutes and no detector: `classify`'s bulk path. Returns the lines counted.
    pub(crate) fn count_buffer(&mut self, buf: &[u8]) -> u64 {
        if self.run_minute != 0 {
            self.fold_run();
            self.run_minute = 0;
        }
        let targets = &self.rules.filter_targets;
        let run = &mut self.run;
        let lines = if self.expand_repeated {
            // The bulk literal path would count a repeat line once: go line by line.
            let body = buf.strip_suffix(b"\n").unwrap_or(buf);
            let mut lines = 0u64;
            if !buf.is_empty() {
                for line in body.split(|&b| b == b'\n') {
                    lines += 1;
                    let line = crate::text::strip_cr(line);
                    if line.is_empty() {
                        continue;
                    }
                    let (text, times) = crate::repeat::expand(line);
                    self.classifier.classify(&text, &mut self.scratch, |i, v| {
                        if let Some(&t) = targets.get(i) {
                            run.add_match(t, times, v.map(|v| v * times as f64));
                        }
                    });
                }
            }
            lines
        } else {
            self.classifier
                .count_buffer(buf, &mut self.scratch, |i, v| {
                    if let Some(&t) = targets.get(i) {
                        run.add_match(t, 1, v);
                    }
                })
        };
        run.lines = run.lines.saturating_add(lines);
        lines
    }

    fn fold_run(&mut self) {
        if !self.run.is_empty() {
            let counts = std::mem::replace(&mut self.run, self.rules.empty());
            self.counter.merge(self.run_minute, &counts);
        }
    }

    /// Everything counted since the last take, per minute.
    pub(crate) fn take(&mut self) -> Counter {
        self.fold_run();
        std::mem::replace(&mut self.counter, Counter::new(self.rules.clone(), 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::batch::CONTINUED_MARKER;

    const T0: i64 = 1_700_000_040;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(extra, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn value(c: &Counter, minute: i64, name: &str) -> Option<f64> {
        let (_, counts) = c.minutes().find(|(m, _)| *m == minute)?;
        let datums = c.rules().datums(counts);
        datums.iter().find(|d| d.1 == name).map(|d| d.2)
    }

    #[test]
    fn events_count_into_the_minute_of_their_stamp() {
        let mut t = Tally::new(&config(""));
        t.count_event(
            b"Dec  9 05:20:36 host sshd[1]: Invalid user a from 1.2.3.4 port 5",
            T0 + 1,
            true,
        );
        t.count_event(
            b"Dec  9 05:21:36 host sshd[1]: Failed password for b from 1.2.3.4 port 5 ssh2",
            T0 + 61,
            true,
        );
        t.count_event(b"unrelated", T0 + 62, true);
        let c = t.take();
        assert_eq!(value(&c, T0, "InvalidUserMetrics"), Some(1.0));
        assert_eq!(value(&c, T0, "FailedPasswordMetrics"), Some(0.0));
        assert_eq!(value(&c, T0 + 60, "FailedPasswordMetrics"), Some(1.0));
        assert_eq!(c.minutes().map(|(_, c)| c.lines).sum::<u64>(), 3);
        assert!(t.take().is_empty());
    }

    #[test]
    fn a_line_in_pieces_counts_once_and_each_piece_is_classified_as_sent() {
        let mut t = Tally::new(&config(""));
        let piece = format!("Dec  9 05:20:36 host sshd[1]: Invalid user x{CONTINUED_MARKER}");
        t.count_event(piece.as_bytes(), T0, false);
        t.count_event(b"rest of the line", T0, true);
        let c = t.take();
        let lines: u64 = c.minutes().map(|(_, counts)| counts.lines).sum();
        assert_eq!(lines, 1);
        assert_eq!(value(&c, T0, "InvalidUserMetrics"), Some(1.0));
    }

    #[test]
    fn repeat_lines_count_n_times_when_expanded() {
        let line = b"Nov 26 15:55:41 vm sshd[26308]: message repeated 5 times: [ Failed password for alice from 127.0.0.1 port 51608 ssh2]";
        let mut plain = Tally::new(&config(""));
        plain.count_event(line, T0, true);
        assert_eq!(value(&plain.take(), T0, "FailedPasswordMetrics"), Some(0.0));
        let mut expanded = Tally::new(&config("[source]\nexpand_repeated = true\n"));
        expanded.count_event(line, T0, true);
        assert_eq!(
            value(&expanded.take(), T0, "FailedPasswordMetrics"),
            Some(5.0)
        );
        assert_eq!(expanded.count_buffer(line), 1);
        let total = expanded.take();
        assert_eq!(value(&total, 0, "FailedPasswordMetrics"), Some(5.0));
    }

    #[test]
    fn near_misses_of_a_format_that_does_not_fit_are_counted() {
        let mut t = Tally::new(&config(""));
        t.count_event(
            b"2026-04-12T02:08:41.872437+10:00 host sshd[1]: Invalid user admin from 1.2.3.4 port 5",
            T0,
            true,
        );
        let c = t.take();
        assert_eq!(value(&c, T0, "InvalidUserMetrics"), Some(0.0));
        assert_eq!(value(&c, T0, FILTER_NEAR_MISSES_METRIC), Some(1.0));
    }
}
