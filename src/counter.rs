//! Pure per-minute counts: lines and matches keyed by Unix minute, which minutes are closed, and the
//! datums one minute publishes. No IO, no clock (the caller passes `now`), never panics.
//!
//! Filled by [`crate::tally::Tally`]; used by the daemon (counts of a logs batch become durable when the
//! batch is accepted: [`Counter::merge_counter`]), by `replay` ([`Counter::take_all`]) and by `classify`.
//!
//! What a minute publishes ([`Rules::datums`]), per metric of every filter (metrics shared by several
//! filters are one metric):
//! - the sum of its matches' values, when it matched;
//! - else its `default_value`, when the minute had lines (CloudWatch's metric filters report the default
//!   value for a period in which logs were ingested but nothing matched, `docs/filter-patterns.md`
//!   R-MET-3; a minute without lines gets nothing from `default_value`);
//! - else `0` when `publish_zeros` is on (alarms see data every minute), else nothing;
//! - plus the heartbeat `(metrics.namespace, heartbeat_metric, lines read)`, when configured.
//!
//! With `publish_zeros` or a heartbeat, minutes that passed without a line are published too
//! ([`Counter::pop_closed`] hands them out empty), also after the clock stepped back. The backlog of
//! unpublished minutes is bounded by `max_backlog_minutes` as a span of time behind the newest minute:
//! older minutes are dropped with an ERROR naming their counts.
//!
//! Sums saturate at ±[`MAX_VALUE`], the largest value CloudWatch accepts, so they stay finite whatever the
//! log holds, and a checkpoint holding them always loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::config::Config;
use crate::time::minute_of;

/// One datum: `(namespace, metric name, value)` (what [`crate::sink::MetricsSink::put`] takes).
pub type Datum = (String, String, f64);

/// The largest magnitude of a CloudWatch metric value (2^360): sums saturate here.
pub const MAX_VALUE: f64 = 2.348_542_582_773_833_3e108;

/// `a + b`, kept within ±[`MAX_VALUE`] (both finite in, finite out; a NaN becomes 0).
pub fn saturating_add(a: f64, b: f64) -> f64 {
    let sum = a + b;
    if sum.is_nan() {
        return 0.0;
    }
    sum.clamp(-MAX_VALUE, MAX_VALUE)
}

/// A metric the filters publish to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    /// Published for a minute with lines but no match (the first filter's, when several share the metric).
    pub default_value: Option<f64>,
}

/// What and when to publish, from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Distinct metrics, in the order of the filters that first name them.
    pub targets: Vec<Target>,
    /// For each metric filter (config order), the index of its target.
    pub filter_targets: Vec<usize>,
    pub publish_zeros: bool,
    /// `(namespace, metric)` of the heartbeat (lines read per minute).
    pub heartbeat: Option<(String, String)>,
    /// A minute is closed this long after it ends (plus `publish_offset_secs`).
    pub grace_secs: i64,
    /// This host's share of the publish spread: 0 unless the daemon sets it.
    pub publish_offset_secs: i64,
    /// Most minutes kept unpublished (at least 1).
    pub max_backlog_minutes: usize,
}

impl Rules {
    pub fn from_config(config: &Config) -> Rules {
        let mut targets: Vec<Target> = Vec::new();
        let mut filter_targets = Vec::with_capacity(config.metric_filters.len());
        for f in &config.metric_filters {
            let found = targets
                .iter()
                .position(|t| t.namespace == f.metric_namespace && t.name == f.metric_name);
            let i = found.unwrap_or_else(|| {
                targets.push(Target {
                    namespace: f.metric_namespace.clone(),
                    name: f.metric_name.clone(),
                    default_value: f.default_value,
                });
                targets.len() - 1
            });
            filter_targets.push(i);
        }
        Rules {
            targets,
            filter_targets,
            publish_zeros: config.metrics.publish_zeros,
            heartbeat: config
                .metrics
                .heartbeat_metric
                .clone()
                .map(|h| (config.metrics.namespace.clone(), h)),
            grace_secs: i64::try_from(config.metrics.grace.as_secs()).unwrap_or(i64::MAX / 4),
            publish_offset_secs: 0,
            max_backlog_minutes: config.metrics.max_backlog_minutes.max(1),
        }
    }

    /// Whether minutes without lines publish anything (zeros or the heartbeat).
    pub fn publishes_idle_minutes(&self) -> bool {
        self.publish_zeros || self.heartbeat.is_some()
    }

    /// Empty counts for these rules.
    pub fn empty(&self) -> Counts {
        Counts {
            lines: 0,
            matches: vec![0; self.targets.len()],
            sums: vec![0.0; self.targets.len()],
            extra: Vec::new(),
        }
    }

    /// The datums of a minute with `counts` (see the module documentation).
    pub fn datums(&self, counts: &Counts) -> Vec<Datum> {
        let mut out = Vec::with_capacity(self.targets.len() + 1 + counts.extra.len());
        for (i, t) in self.targets.iter().enumerate() {
            let matched = counts.matches.get(i).copied().unwrap_or(0) > 0;
            let value = match t.default_value {
                _ if matched => Some(counts.sums.get(i).copied().unwrap_or(0.0)),
                Some(d) if counts.lines > 0 => Some(d),
                _ if self.publish_zeros => Some(0.0),
                _ => None,
            };
            if let Some(v) = value {
                out.push((t.namespace.clone(), t.name.clone(), v));
            }
        }
        out.extend(counts.extra.iter().cloned());
        if let Some((ns, name)) = &self.heartbeat {
            out.push((ns.clone(), name.clone(), counts.lines as f64));
        }
        out
    }

    /// How long after a minute ends it is closed: the grace plus this host's publish offset.
    pub fn close_delay_secs(&self) -> i64 {
        self.grace_secs.saturating_add(self.publish_offset_secs)
    }

    fn closed(&self, minute: i64, now: i64) -> bool {
        minute
            .saturating_add(60)
            .saturating_add(self.close_delay_secs())
            <= now
    }

    /// How far behind the newest minute unpublished minutes are kept.
    fn backlog_span_secs(&self) -> i64 {
        i64::try_from(self.max_backlog_minutes)
            .unwrap_or(i64::MAX)
            .saturating_mul(60)
    }

    /// `counts` of `minute` in the checkpoint's form.
    pub fn save(&self, minute: i64, counts: &Counts) -> SavedMinute {
        let mut values: Vec<(String, String, f64)> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(i, _)| counts.matches.get(*i).copied().unwrap_or(0) > 0)
            .map(|(i, t)| {
                let sum = counts.sums.get(i).copied().unwrap_or(0.0);
                (t.namespace.clone(), t.name.clone(), sum)
            })
            .collect();
        values.extend(counts.extra.iter().cloned());
        SavedMinute {
            minute,
            values,
            lines: counts.lines,
        }
    }

    /// The counts of a saved minute under these rules; values of metrics not configured any more go to
    /// `extra`, published as they are.
    pub fn restore(&self, saved: &SavedMinute) -> Counts {
        let mut counts = self.empty();
        counts.lines = saved.lines;
        for (ns, name, v) in &saved.values {
            match self
                .targets
                .iter()
                .position(|t| t.namespace == *ns && t.name == *name)
            {
                Some(i) => counts.add_match(i, 1, Some(*v)),
                None => counts.add_extra(ns, name, *v),
            }
        }
        counts
    }
}

/// The counts of one minute, per target of [`Rules`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Counts {
    /// Lines read in the minute.
    pub lines: u64,
    /// Matches per target (a minute restored from a checkpoint records 1 for a target with a value).
    pub matches: Vec<u64>,
    /// Sum of the matches' values per target.
    pub sums: Vec<f64>,
    /// Restored values of metrics no longer configured: published as they are, not lost.
    pub extra: Vec<Datum>,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &Counts) {
        self.lines = self.lines.saturating_add(other.lines);
        if self.matches.len() < other.matches.len() {
            self.matches.resize(other.matches.len(), 0);
        }
        if self.sums.len() < other.sums.len() {
            self.sums.resize(other.sums.len(), 0.0);
        }
        for (a, b) in self.matches.iter_mut().zip(&other.matches) {
            *a = a.saturating_add(*b);
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a = saturating_add(*a, *b);
        }
        for (ns, name, v) in &other.extra {
            self.add_extra(ns, name, *v);
        }
    }

    /// Adds `v` to the value of a metric outside the rules' targets (`FilterNearMisses`, metrics restored
    /// from a checkpoint written under another configuration).
    pub fn add_extra(&mut self, namespace: &str, name: &str, v: f64) {
        match self
            .extra
            .iter_mut()
            .find(|(a, b, _)| a == namespace && b == name)
        {
            Some(e) => e.2 = saturating_add(e.2, v),
            None => self.extra.push((
                namespace.to_owned(),
                name.to_owned(),
                saturating_add(0.0, v),
            )),
        }
    }

    /// Adds `times` matches of target `t` worth `value` in all (when it has one).
    pub fn add_match(&mut self, t: usize, times: u64, value: Option<f64>) {
        if let Some(m) = self.matches.get_mut(t) {
            *m = m.saturating_add(times);
        }
        if let (Some(s), Some(v)) = (self.sums.get_mut(t), value) {
            *s = saturating_add(*s, v);
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.lines == 0 && self.total_matches() == 0 && self.extra.is_empty()
    }

    /// Total matches.
    pub fn total_matches(&self) -> u64 {
        self.matches.iter().fold(0u64, |a, m| a.saturating_add(*m))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Counter {
    rules: Rules,
    minutes: BTreeMap<i64, Counts>,
    /// Every minute before this one was handed out by [`Counter::pop_closed`] (idle ones included).
    watermark: i64,
    dropped_minutes: u64,
}

impl Counter {
    /// An empty counter started at `now` (Unix seconds): idle minutes are published from `now`'s minute.
    pub fn new(rules: Rules, now: i64) -> Counter {
        Counter {
            rules,
            minutes: BTreeMap::new(),
            watermark: minute_of(now),
            dropped_minutes: 0,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Minutes holding counts (published or not yet handed out).
    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// The minutes holding counts, oldest first.
    pub fn minutes(&self) -> impl Iterator<Item = (i64, &Counts)> {
        self.minutes.iter().map(|(m, c)| (*m, c))
    }

    /// Minutes dropped because the backlog was full.
    pub fn dropped_minutes(&self) -> u64 {
        self.dropped_minutes
    }

    /// Applies `f` to the counts of `minute` (created when missing), then bounds the backlog, so a minute
    /// dropped for room is logged with what it held.
    fn update(&mut self, minute: i64, f: impl FnOnce(&mut Counts)) {
        let empty = self.rules.empty();
        let fresh = !self.minutes.contains_key(&minute);
        f(self.minutes.entry(minute).or_insert(empty));
        if fresh {
            self.enforce_backlog();
        }
    }

    /// Counts `n` lines read at `secs`.
    pub fn add_lines(&mut self, secs: i64, n: u64) {
        self.update(minute_of(secs), |c| c.lines = c.lines.saturating_add(n));
    }

    /// Counts one line read at `secs`.
    pub fn add_line(&mut self, secs: i64) {
        self.add_lines(secs, 1);
    }

    /// Counts `times` matches of metric filter `filter` at `secs`, adding `value` (their total) when the
    /// filter has one. An unknown filter index is ignored.
    pub fn add_match(&mut self, secs: i64, filter: usize, times: u64, value: Option<f64>) {
        let Some(&t) = self.rules.filter_targets.get(filter) else {
            return;
        };
        self.update(minute_of(secs), |c| c.add_match(t, times, value));
    }

    /// Adds `counts` to `minute` (floored to the minute): the counts of an accepted logs batch.
    pub fn merge(&mut self, minute: i64, counts: &Counts) {
        self.update(minute_of(minute), |c| c.merge(counts));
    }

    /// Takes `minute`'s counts out of the counter.
    pub fn remove(&mut self, minute: i64) -> Option<Counts> {
        self.minutes.remove(&minute)
    }

    /// Adds every minute of `other` (same rules).
    pub fn merge_counter(&mut self, other: &Counter) {
        for (m, c) in other.minutes() {
            self.merge(m, c);
        }
    }

    /// Whether `minute` is closed at `now` (it ended at least `grace` ago).
    pub fn is_closed(&self, minute: i64, now: i64) -> bool {
        self.rules.closed(minute, now)
    }

    /// The oldest closed minute at `now` and its counts, removed from the counter. With zeros or a
    /// heartbeat configured, minutes that passed without a line come out too, with empty counts (at most
    /// `max_backlog_minutes` of them after a long gap, and again after the clock stepped back, so the
    /// heartbeat never pauses). `None` when no minute is closed.
    pub fn pop_closed(&mut self, now: i64) -> Option<(i64, Counts)> {
        let fill = self.rules.publishes_idle_minutes();
        if fill {
            let last_closed = minute_of(
                now.saturating_sub(60)
                    .saturating_sub(self.rules.close_delay_secs()),
            );
            // Minutes up to the current one may have been handed out (the current one at start, or by
            // `pop_any`); a watermark past that means the clock stepped back.
            let current = minute_of(now);
            if self.watermark > current.saturating_add(60) {
                // The minutes from now on were handed out already, under the old time. Hand them out
                // again (their zeros and heartbeats add nothing wrong to CloudWatch's sums) rather than
                // leave the heartbeat silent until the clock catches up.
                warn!(
                    handed_out_until = self.watermark,
                    now,
                    "the clock stepped back by {} s; the idle minutes (zeros, heartbeat) from now on are published again",
                    self.watermark - current - 60
                );
                self.watermark = current;
            }
            let span = self.rules.backlog_span_secs();
            if last_closed.saturating_sub(self.watermark) >= span {
                let from = last_closed.saturating_sub(span).saturating_add(60);
                warn!(
                    from = self.watermark,
                    to = from,
                    "skipping the zeros and heartbeats of the minutes from {} to {}: a gap longer than `max_backlog_minutes`; publishing from {} on",
                    crate::time::rfc3339_secs(self.watermark),
                    crate::time::rfc3339_secs(from),
                    crate::time::rfc3339_secs(from)
                );
                self.watermark = from;
            }
        }
        let first = self.minutes.keys().next().copied();
        let candidate = match (first, fill) {
            (Some(f), true) => f.min(self.watermark),
            (Some(f), false) => f,
            (None, true) => self.watermark,
            (None, false) => return None,
        };
        // The last minute of the i64 range cannot be followed; it only comes out through `pop_any`.
        if !self.rules.closed(candidate, now) || candidate.checked_add(60).is_none() {
            return None;
        }
        let counts = self
            .minutes
            .remove(&candidate)
            .unwrap_or_else(|| self.rules.empty());
        if candidate >= self.watermark {
            self.watermark = candidate.saturating_add(60);
        }
        Some((candidate, counts))
    }

    /// Every closed minute at `now` with its datums, oldest first (see [`Counter::pop_closed`]).
    pub fn take_closed(&mut self, now: i64) -> Vec<(i64, Vec<Datum>)> {
        let mut out = Vec::new();
        while let Some((m, c)) = self.pop_closed(now) {
            let datums = self.rules.datums(&c);
            if !datums.is_empty() {
                out.push((m, datums));
            }
        }
        out
    }

    /// The oldest minute holding counts, closed or not (shutdown, the end of a replay).
    pub fn pop_any(&mut self) -> Option<(i64, Counts)> {
        let (m, c) = self.minutes.pop_first()?;
        if m >= self.watermark {
            self.watermark = m.saturating_add(60);
        }
        Some((m, c))
    }

    /// Every minute holding counts with its datums, closed or not, oldest first; no idle minutes.
    pub fn take_all(&mut self) -> Vec<(i64, Vec<Datum>)> {
        let mut out = Vec::new();
        while let Some((m, c)) = self.pop_any() {
            let datums = self.rules.datums(&c);
            if !datums.is_empty() {
                out.push((m, datums));
            }
        }
        out
    }

    /// The minutes in the checkpoint's form: lines and, per matched metric, its sum.
    pub fn saved(&self) -> Vec<SavedMinute> {
        self.minutes
            .iter()
            .map(|(m, c)| self.rules.save(*m, c))
            .collect()
    }

    /// Adds minutes saved by [`Counter::saved`]. Values of metrics no longer configured are kept and
    /// published as they are.
    pub fn restore(&mut self, saved: &[SavedMinute]) {
        for s in saved {
            let counts = self.rules.restore(s);
            self.merge(s.minute, &counts);
        }
    }

    /// Drops the minutes that fell out of the backlog span: older than `max_backlog_minutes` behind the
    /// newest one. A span, not a count, so the minutes of one batch never push each other out.
    fn enforce_backlog(&mut self) {
        let Some(&newest) = self.minutes.keys().next_back() else {
            return;
        };
        let oldest_kept = newest.saturating_sub(self.rules.backlog_span_secs());
        while let Some(entry) = self.minutes.first_entry() {
            if *entry.key() >= oldest_kept {
                return;
            }
            let (minute, c) = entry.remove_entry();
            self.dropped_minutes += 1;
            let datums = self.rules.datums(&c);
            error!(
                minute,
                lines = c.lines,
                datums = ?datums,
                max_backlog_minutes = self.rules.max_backlog_minutes,
                "dropping the counts of minute {} ({} lines, {datums:?}): unpublished and more than `max_backlog_minutes` older than the newest minute, so they are lost",
                crate::time::rfc3339_secs(minute),
                c.lines
            );
        }
    }
}

/// One minute's counts as the checkpoint keeps them: by metric name, so they survive a change of the
/// configured filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedMinute {
    /// Unix seconds, a multiple of 60.
    pub minute: i64,
    /// `(namespace, metric, value)` of the metrics that matched.
    pub values: Vec<(String, String, f64)>,
    /// Lines read in this minute.
    pub lines: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040; // a minute boundary

    fn rules(publish_zeros: bool, heartbeat: bool) -> Rules {
        Rules {
            targets: vec![
                Target {
                    namespace: "SSH".into(),
                    name: "A".into(),
                    default_value: None,
                },
                Target {
                    namespace: "SSH".into(),
                    name: "B".into(),
                    default_value: Some(0.5),
                },
            ],
            filter_targets: vec![0, 1, 0],
            publish_zeros,
            heartbeat: heartbeat.then(|| ("SSH".into(), "LinesRead".into())),
            grace_secs: 5,
            publish_offset_secs: 0,
            max_backlog_minutes: 10,
        }
    }

    fn value(datums: &[Datum], name: &str) -> Option<f64> {
        datums.iter().find(|d| d.1 == name).map(|d| d.2)
    }

    #[test]
    fn minutes_floor_including_negative_times() {
        assert_eq!(minute_of(T0), T0);
        assert_eq!(minute_of(T0 + 59), T0);
        assert_eq!(minute_of(T0 + 60), T0 + 60);
        assert_eq!(minute_of(-1), -60);
    }

    #[test]
    fn rules_from_the_default_config_cover_every_filter_and_the_heartbeat() {
        let Ok(config) = Config::from_toml_str("", None) else {
            panic!("default config");
        };
        let r = Rules::from_config(&config);
        assert_eq!(r.targets.len(), config.metric_filters.len());
        assert_eq!(r.filter_targets.len(), config.metric_filters.len());
        let datums = r.datums(&r.empty());
        let names: Vec<&str> = datums.iter().map(|d| d.1.as_str()).collect();
        for f in &config.metric_filters {
            assert!(names.contains(&f.metric_name.as_str()), "{names:?}");
        }
        if let Some(h) = &config.metrics.heartbeat_metric {
            assert_eq!(names.last(), Some(&h.as_str()));
        }
    }

    #[test]
    fn counts_land_in_the_minute_of_their_timestamp() {
        let mut c = Counter::new(rules(true, true), T0);
        c.add_line(T0 + 1);
        c.add_match(T0 + 1, 0, 1, Some(1.0));
        c.add_line(T0 + 59);
        c.add_match(T0 + 59, 2, 1, Some(1.0)); // filter 2 shares metric A
        c.add_line(T0 + 60);
        c.add_match(T0 + 60, 1, 3, Some(3.0));
        c.add_match(T0 + 60, 9, 1, Some(1.0)); // unknown filter: ignored
        let minutes: Vec<(i64, u64)> = c.minutes().map(|(m, c)| (m, c.lines)).collect();
        assert_eq!(minutes, [(T0, 2), (T0 + 60, 1)]);
        let first = c
            .minutes()
            .next()
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        assert_eq!(first.matches, [2, 0]);
        assert_eq!(first.sums, [2.0, 0.0]);
    }

    #[test]
    fn datums_follow_zeros_default_value_and_heartbeat_rules() {
        let r = rules(true, true);
        // Lines, A matched, B did not: B gets its default value.
        let mut c = r.empty();
        c.lines = 4;
        c.matches[0] = 2;
        c.sums[0] = 2.0;
        let d = r.datums(&c);
        assert_eq!(value(&d, "A"), Some(2.0));
        assert_eq!(value(&d, "B"), Some(0.5));
        assert_eq!(value(&d, "LinesRead"), Some(4.0));
        // No lines: zeros (not the default value) and a zero heartbeat.
        let d = r.datums(&r.empty());
        assert_eq!(
            d,
            vec![
                ("SSH".into(), "A".into(), 0.0),
                ("SSH".into(), "B".into(), 0.0),
                ("SSH".into(), "LinesRead".into(), 0.0),
            ]
        );
        // Without zeros: default value only with lines; nothing at all for an idle minute.
        let r = rules(false, false);
        let mut c = r.empty();
        c.lines = 1;
        assert_eq!(r.datums(&c), vec![("SSH".into(), "B".into(), 0.5)]);
        assert!(r.datums(&r.empty()).is_empty());
    }

    #[test]
    fn a_minute_closes_after_its_grace() {
        let mut c = Counter::new(rules(false, false), T0);
        c.add_line(T0 + 10);
        c.add_match(T0 + 10, 0, 1, Some(1.0));
        assert_eq!(c.pop_closed(T0 + 64), None);
        let (m, counts) = c.pop_closed(T0 + 65).unwrap_or_default();
        assert_eq!((m, counts.lines), (T0, 1));
        assert_eq!(c.pop_closed(T0 + 1000), None);
    }

    #[test]
    fn idle_minutes_publish_zeros_and_heartbeat() {
        let mut c = Counter::new(rules(true, true), T0);
        c.add_line(T0 + 130);
        let out = c.take_closed(T0 + 185);
        let minutes: Vec<i64> = out.iter().map(|o| o.0).collect();
        assert_eq!(minutes, [T0, T0 + 60, T0 + 120]);
        assert_eq!(value(&out[0].1, "LinesRead"), Some(0.0));
        assert_eq!(value(&out[2].1, "LinesRead"), Some(1.0));
        assert_eq!(value(&out[2].1, "A"), Some(0.0));
        // Nothing twice.
        assert!(c.take_closed(T0 + 185).is_empty());
        assert_eq!(c.take_closed(T0 + 245).len(), 1);
    }

    #[test]
    fn without_zeros_or_heartbeat_idle_minutes_publish_nothing() {
        let mut c = Counter::new(rules(false, false), T0);
        assert!(c.take_closed(T0 + 3600).is_empty());
        c.add_line(T0 + 3600);
        c.add_match(T0 + 3600, 1, 1, Some(1.0));
        let out = c.take_closed(T0 + 7200);
        assert_eq!(
            out,
            vec![(T0 + 3600, vec![("SSH".into(), "B".into(), 1.0)])]
        );
    }

    #[test]
    fn late_counts_for_a_published_minute_come_out_again() {
        let mut c = Counter::new(rules(true, false), T0);
        c.add_line(T0);
        assert_eq!(c.take_closed(T0 + 70).len(), 1);
        // A batch of that minute accepted late: published as a second datapoint (CloudWatch sums them).
        let mut late = c.rules().empty();
        late.lines = 2;
        late.matches[0] = 2;
        late.sums[0] = 2.0;
        c.merge(T0 + 30, &late);
        let out = c.take_closed(T0 + 71);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, T0);
        assert_eq!(value(&out[0].1, "A"), Some(2.0));
    }

    #[test]
    fn the_backlog_is_bounded_and_drops_the_oldest() {
        let mut r = rules(false, false);
        r.max_backlog_minutes = 3;
        let mut c = Counter::new(r, T0);
        for i in 0..5 {
            c.add_line(T0 + i * 60);
        }
        // Kept: the newest minute and the three before it.
        assert_eq!(c.len(), 4);
        assert_eq!(c.dropped_minutes(), 1);
        assert_eq!(c.minutes().next().map(|m| m.0), Some(T0 + 60));
        // A minute older than the span is counted, then dropped itself.
        c.add_line(T0 - 600);
        assert_eq!(c.len(), 4);
        assert_eq!(c.dropped_minutes(), 2);
    }

    #[test]
    fn a_backlog_of_one_minute_keeps_a_batch_that_spans_two() {
        let mut r = rules(false, false);
        r.max_backlog_minutes = 1;
        let mut c = Counter::new(r, T0);
        c.add_line(T0 + 59);
        c.add_match(T0 + 59, 0, 1, Some(1.0));
        c.add_line(T0 + 60);
        assert_eq!(c.len(), 2);
        assert_eq!(c.dropped_minutes(), 0);
        let out = c.take_closed(T0 + 200);
        assert_eq!(value(&out[0].1, "A"), Some(1.0));
    }

    #[test]
    fn idle_minutes_go_on_after_the_clock_steps_back() {
        let mut c = Counter::new(rules(true, true), T0);
        assert_eq!(c.take_closed(T0 + 605).len(), 10);
        // Ten minutes back: the next minute to close is handed out when it closes, not an hour later.
        assert!(c.take_closed(T0 + 65).is_empty());
        let out = c.take_closed(T0 + 125);
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [T0 + 60]);
    }

    #[test]
    fn a_start_just_after_a_minute_boundary_is_no_clock_step() {
        // Started 2 s into a minute, before the previous one closed: that one belongs to the run before.
        let mut c = Counter::new(rules(true, true), T0 + 2);
        assert!(c.take_closed(T0 + 2).is_empty());
        assert!(c.take_closed(T0 + 10).is_empty());
        let out = c.take_closed(T0 + 65);
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [T0]);
    }

    #[test]
    fn sums_saturate_at_cloudwatchs_largest_value() {
        let mut c = Counter::new(rules(false, false), T0);
        c.add_line(T0);
        c.add_match(T0, 0, 1, Some(f64::MAX));
        c.add_match(T0, 0, 1, Some(f64::MAX));
        c.add_match(T0, 1, u64::MAX, Some(-f64::MAX));
        let saved = c.saved();
        assert_eq!(saved[0].values[0].2, MAX_VALUE);
        assert_eq!(saved[0].values[1].2, -MAX_VALUE);
        let json = serde_json::to_string(&saved).unwrap_or_default();
        let back: Vec<SavedMinute> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, saved);
        assert_eq!(saturating_add(f64::INFINITY, f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn a_long_gap_fills_at_most_the_backlog_with_idle_minutes() {
        let mut r = rules(true, true);
        r.max_backlog_minutes = 5;
        let mut c = Counter::new(r, T0);
        let out = c.take_closed(T0 + 365 * 24 * 3600);
        assert_eq!(out.len(), 5);
        let last = out.last().map(|o| o.0).unwrap_or_default();
        assert!(!c.is_closed(last + 60, T0 + 365 * 24 * 3600));
    }

    #[test]
    fn take_all_includes_the_open_minute_but_no_idle_ones() {
        let mut c = Counter::new(rules(true, true), T0);
        c.add_line(T0 + 5);
        c.add_line(T0 + 300);
        let out = c.take_all();
        let minutes: Vec<i64> = out.iter().map(|o| o.0).collect();
        assert_eq!(minutes, [T0, T0 + 300]);
        assert!(c.is_empty());
    }

    #[test]
    fn checkpoint_round_trip_keeps_values_even_for_unknown_metrics() {
        let mut c = Counter::new(rules(true, true), T0);
        c.add_line(T0);
        c.add_match(T0, 1, 2, Some(2.0));
        let mut saved = c.saved();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].values, vec![("SSH".into(), "B".into(), 2.0)]);
        saved[0].values.push(("Old".into(), "Gone".into(), 7.0));
        let mut d = Counter::new(rules(true, true), T0);
        d.restore(&saved);
        let out = d.take_all();
        assert_eq!(value(&out[0].1, "B"), Some(2.0));
        assert_eq!(value(&out[0].1, "A"), Some(0.0));
        assert_eq!(value(&out[0].1, "Gone"), Some(7.0));
        assert_eq!(value(&out[0].1, "LinesRead"), Some(1.0));
    }

    #[test]
    fn merging_counters_adds_minute_by_minute() {
        let mut a = Counter::new(rules(false, false), T0);
        let mut b = Counter::new(rules(false, false), T0);
        a.add_line(T0);
        a.add_match(T0, 0, 1, Some(1.0));
        b.add_line(T0 + 1);
        b.add_match(T0 + 1, 0, 1, Some(4.0));
        b.add_line(T0 + 60);
        a.merge_counter(&b);
        let out = a.take_all();
        assert_eq!(
            out[0],
            (
                T0,
                vec![
                    ("SSH".into(), "A".into(), 5.0),
                    ("SSH".into(), "B".into(), 0.5)
                ]
            )
        );
        assert_eq!(out[1].1, vec![("SSH".into(), "B".into(), 0.5)]);
    }

    /// Arbitrary (even absurd) timestamps and indices never panic.
    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut c = Counter::new(rules(true, true), i64::MIN);
        for secs in [i64::MIN, -1, 0, i64::MAX] {
            c.add_line(secs);
            c.add_match(secs, usize::MAX, u64::MAX, Some(f64::NAN));
            c.add_match(secs, 0, u64::MAX, Some(1.0));
            c.add_match(secs, 0, u64::MAX, None);
        }
        let _ = c.take_closed(i64::MAX);
        let _ = c.take_closed(i64::MIN);
        let _ = c.take_all();
    }
}
