//! The silent-miss detector: notice when a filter stops matching because the log format changed
//! under it, which a CloudWatch metric filter never tells anyone.
//!
//! A *near-miss* of a filter is a line that carries every literal word of the filter
//! ([`required_literals`](crate::pattern::FilterPattern::required_literals), e.g. `Failed` and `password`) but does not match it. A
//! filter with near-misses and no match over a whole window (`[detector] window_minutes`) is
//! *silent*: the daemon logs a warning naming the filter, the format of those lines and one example,
//! shows it in the sd_notify STATUS, and publishes the minute's near-miss count as
//! [`FILTER_NEAR_MISSES_METRIC`].
//!
//! Pure: time comes in as unix seconds, lines as bytes; the start-up check is handed the log's last
//! lines.
//!
//! Nothing here changes what a pattern matches: the detector only watches.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::classify::{Classifier, LiteralSet, Scratch};
use crate::config::{Config, DetectorConfig, MetricFilter};
use crate::format::{Fit, FormatReport, LineFormat, pattern_fit};

/// Name of the per-minute near-miss metric (in `[metrics] namespace`).
pub const FILTER_NEAR_MISSES_METRIC: &str = "FilterNearMisses";

/// Longest example line kept (bytes); an attacker-controlled line must not bloat logs or STATUS.
const EXAMPLE_MAX: usize = 300;

/// Per filter, per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    minute: i64,
    matches: u64,
    near_misses: u64,
}

/// What the detector keeps for one filter.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    /// Bits of the filter's literal words; 0 = no literal, never a near-miss.
    mask: u64,
    literals: Vec<String>,
    buckets: VecDeque<Bucket>,
    /// The latest near-miss line, cut to [`EXAMPLE_MAX`].
    example: Option<String>,
    /// Formats of the near-miss lines since the filter last matched.
    formats: FormatReport,
    /// When the last warning was given (unix seconds); one warning per window at most.
    last_warned: Option<i64>,
    silent: bool,
}

/// A filter found silent: near-misses and no match over the whole window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentFilter {
    pub filter_name: String,
    /// Near-misses over the window.
    pub near_misses: u64,
    /// The literal words the near-miss lines carry.
    pub literals: Vec<String>,
    /// The format most near-miss lines have.
    pub format: LineFormat,
    /// One near-miss line.
    pub example: String,
    pub window: Duration,
}

impl fmt::Display for SilentFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self.literals.iter().map(|w| format!("`{w}`")).collect();
        write!(
            f,
            "filter `{}` matched nothing in the last {} min, but {} lines carry its words {}: \
             the lines look like {}; e.g. `{}`",
            self.filter_name,
            self.window.as_secs() / 60,
            self.near_misses,
            words.join(", "),
            self.format,
            self.example,
        )
    }
}

/// The running detector (one per daemon).
#[derive(Debug, Clone)]
pub struct Detector {
    filters: Vec<Watched>,
    /// The filters' literal words (`None` when disabled or when no filter has one).
    literals: Option<LiteralSet>,
    window: Duration,
    /// First observation (unix seconds): no verdict before a whole window was watched.
    started: Option<i64>,
}

impl Detector {
    /// Watches `filters` (same order as the classifier's). A disabled detector watches nothing.
    pub fn new(filters: &[MetricFilter], config: &DetectorConfig) -> Detector {
        Detector::with_literals(filters, config, LiteralSet::new(filters))
    }

    /// [`Detector::new`] with the classifier's literal words (`Classifier::literals` of the same
    /// filters), so they are gathered and compiled once.
    pub fn with_literals(
        filters: &[MetricFilter],
        config: &DetectorConfig,
        literals: LiteralSet,
    ) -> Detector {
        let literals = (config.enabled && !literals.is_empty()).then_some(literals);
        let watched = filters
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mask = literals.as_ref().map_or(0, |l| l.mask(i));
                Watched {
                    name: f.filter_name.clone(),
                    mask,
                    literals: literals
                        .as_ref()
                        .map_or_else(Vec::new, |l| l.words_of(mask)),
                    buckets: VecDeque::new(),
                    example: None,
                    formats: FormatReport::default(),
                    last_warned: None,
                    silent: false,
                }
            })
            .collect();
        Detector {
            filters: watched,
            literals,
            window: config.window,
            started: None,
        }
    }

    /// Whether any filter can have near-misses at all.
    pub fn is_active(&self) -> bool {
        self.literals.is_some()
    }

    /// Looks at one line (as classified, without its terminator), given the indices of the filters it
    /// matched and when it was read (unix seconds). Returns how many filters it is a near-miss of:
    /// the amount to add to the minute's [`FILTER_NEAR_MISSES_METRIC`].
    pub fn observe(&mut self, line: &[u8], matched: &[usize], at: i64) -> u64 {
        let Some(literals) = &self.literals else {
            return 0;
        };
        let hits = literals.hits(line);
        // A candidate carries every literal word of its filter (`mask`: bits of `hits`).
        self.record(line, matched, at, |_, mask| hits & mask == mask)
    }

    /// Like [`Detector::observe`], with the literal search already done by the
    /// classifier: `candidates` has a bit per filter index whose literal words
    /// are all in the line ([`crate::classify::Scratch::candidates`]). Saves a
    /// second scan of every line. Falls back to [`Detector::observe`] when
    /// there are more filters than bits.
    pub fn observe_candidates(
        &mut self,
        line: &[u8],
        matched: &[usize],
        candidates: u64,
        at: i64,
    ) -> u64 {
        if self.filters.len() > 64 {
            return self.observe(line, matched, at);
        }
        if self.literals.is_none() {
            return 0;
        }
        self.record(line, matched, at, |i, _| candidates & (1 << i) != 0)
    }

    /// Counts the line's matches and its near misses: filters with all their
    /// words present (`is_candidate(filter index, literal-word mask)`) that did not match.
    fn record(
        &mut self,
        line: &[u8],
        matched: &[usize],
        at: i64,
        is_candidate: impl Fn(usize, u64) -> bool,
    ) -> u64 {
        self.started.get_or_insert(at);
        let minute = at.div_euclid(60) * 60;
        for &i in matched {
            if let Some(w) = self.filters.get_mut(i) {
                bucket(&mut w.buckets, minute).matches += 1;
                w.formats = FormatReport::default();
            }
        }
        let mut near = 0;
        let mut text: Option<String> = None;
        for (i, w) in self.filters.iter_mut().enumerate() {
            if w.mask == 0 || !is_candidate(i, w.mask) || matched.contains(&i) {
                continue;
            }
            near += 1;
            bucket(&mut w.buckets, minute).near_misses += 1;
            let t = text.get_or_insert_with(|| example_text(line));
            w.formats.add(t);
            w.example = Some(t.clone());
        }
        near
    }

    /// Drops what is older than the window and returns the filters that just turned silent (or are
    /// still silent a window after their last warning): log each as a WARNING.
    pub fn evaluate(&mut self, now: i64) -> Vec<SilentFilter> {
        let window = self.window.as_secs() as i64;
        let cutoff = now - window;
        let watched_long_enough = self.started.is_some_and(|s| s <= cutoff);
        let mut out = Vec::new();
        for w in &mut self.filters {
            while w.buckets.front().is_some_and(|b| b.minute + 60 <= cutoff) {
                w.buckets.pop_front();
            }
            let matches: u64 = w.buckets.iter().map(|b| b.matches).sum();
            let near: u64 = w.buckets.iter().map(|b| b.near_misses).sum();
            if matches > 0 || near == 0 {
                w.silent = false;
                w.last_warned = None;
                continue;
            }
            if !watched_long_enough {
                continue;
            }
            w.silent = true;
            if w.last_warned.is_some_and(|t| t > cutoff) {
                continue;
            }
            w.last_warned = Some(now);
            out.push(SilentFilter {
                filter_name: w.name.clone(),
                near_misses: near,
                literals: w.literals.clone(),
                format: w.formats.dominant().unwrap_or(LineFormat::MessageOnly),
                example: w.example.clone().unwrap_or_default(),
                window: self.window,
            });
        }
        out
    }

    /// Names of the filters currently silent.
    pub fn silent_filters(&self) -> Vec<&str> {
        self.filters
            .iter()
            .filter(|w| w.silent)
            .map(|w| w.name.as_str())
            .collect()
    }

    /// A short text for the sd_notify STATUS, or `None` when no filter is silent:
    /// `"silent filters: SSHInvalidUserFilter (RFC 3339 timestamps …)"`.
    pub fn status(&self) -> Option<String> {
        let parts: Vec<String> = self
            .filters
            .iter()
            .filter(|w| w.silent)
            .map(|w| match w.formats.dominant() {
                Some(f) => format!("{} ({})", w.name, short_format(f)),
                None => w.name.clone(),
            })
            .collect();
        (!parts.is_empty()).then(|| format!("silent filters: {}", parts.join(", ")))
    }
}

/// The format's name without its parenthesised detail, for STATUS.
fn short_format(f: LineFormat) -> &'static str {
    let d = f.describe();
    d.split(" (").next().unwrap_or(d)
}

fn bucket(buckets: &mut VecDeque<Bucket>, minute: i64) -> &mut Bucket {
    // Lines arrive in read order, so the minute is almost always the last bucket's.
    let pos = buckets.iter().rposition(|b| b.minute == minute);
    let i = match pos {
        Some(i) => i,
        None => {
            let at = buckets
                .iter()
                .position(|b| b.minute > minute)
                .unwrap_or(buckets.len());
            buckets.insert(
                at,
                Bucket {
                    minute,
                    matches: 0,
                    near_misses: 0,
                },
            );
            at
        }
    };
    &mut buckets[i]
}

/// A printable, bounded copy of an attacker-controlled line.
fn example_text(line: &[u8]) -> String {
    let cut = &line[..line.len().min(EXAMPLE_MAX)];
    let mut s: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if line.len() > EXAMPLE_MAX {
        s.push('…');
    }
    s
}

/// Start-up check: the warnings to log (at WARN) before following the log, one per filter that
/// cannot fit the log's format, judged on `sample` (the last lines of `[source] file_path`, as
/// [`crate::source::tail::sample`] reads them); for the journal, the filters are checked against the
/// traditional lines it is rendered as.
pub fn startup_check(
    config: &Config,
    kind: crate::source::SourceKind,
    sample: &std::io::Result<Vec<String>>,
) -> Vec<String> {
    if !config.detector.enabled {
        return Vec::new();
    }
    if kind == crate::source::SourceKind::Journal {
        return check_shapes(
            &config.metric_filters,
            LineFormat::Traditional,
            "the journal (rendered as traditional syslog lines)",
        );
    }
    let path = &config.source.file_path;
    match sample {
        Ok(lines) => {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            check_sample(config, &refs, &format!("`{}`", path.display()))
        }
        // A missing file is the source's business (it waits for it); nothing to judge yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => vec![format!(
            "cannot read the tail of `{}` to check its format ({e}); the filters are not checked against it",
            path.display()
        )],
    }
}

/// Checks the filters of `config` against sample lines: a filter whose words appear in the sample
/// but which matches none of those lines cannot fit; without such lines, the pattern's shape is
/// compared with the sample's format. `what` names the sample in the messages.
pub fn check_sample(config: &Config, lines: &[&str], what: &str) -> Vec<String> {
    let report = FormatReport::of_lines(lines.iter().copied());
    let Some(format) = report.dominant() else {
        return Vec::new();
    };
    let classifier = Classifier::new(&config.metric_filters);
    let mut detector = Detector::new(
        &config.metric_filters,
        &DetectorConfig {
            enabled: true,
            window: Duration::from_secs(60),
        },
    );
    let mut matches = vec![0u64; config.metric_filters.len()];
    let mut scratch = Scratch::default();
    let mut matched = Vec::new();
    for line in lines {
        matched.clear();
        classifier.classify_expanded(
            line.as_bytes(),
            &mut scratch,
            config.source.expand_repeated,
            |i, _| {
                matched.push(i);
            },
        );
        for &i in &matched {
            matches[i] += 1;
        }
        // Every line at the same instant: the buckets simply add up.
        detector.observe(line.as_bytes(), &matched, 0);
    }
    let mut out = Vec::new();
    for (i, f) in config.metric_filters.iter().enumerate() {
        let fit = pattern_fit(&f.filter_pattern, format);
        let shape = match &fit {
            Fit::Misfit { expected, actual } => {
                format!(
                    " ({actual} envelope fields before the message; the pattern expects {expected})"
                )
            }
            _ => String::new(),
        };
        let w = &detector.filters[i];
        let near: u64 = w.buckets.iter().map(|b| b.near_misses).sum();
        if near > 0 && matches[i] == 0 {
            let words: Vec<String> = w.literals.iter().map(|w| format!("`{w}`")).collect();
            out.push(format!(
                "filter `{}` (`{}`) matches none of the {} lines of {} that carry its words {}: \
                 the log is {format}{shape}; e.g. `{}`; `sshwatch init --from FILE` writes filters that fit",
                f.filter_name,
                f.filter_pattern.text(),
                near,
                what,
                words.join(", "),
                w.example.as_deref().unwrap_or_default(),
            ));
        } else if matches[i] == 0
            && let Fit::Misfit { expected, actual } = fit
        {
            out.push(format!(
                "filter `{}` (`{}`) expects {expected} envelope fields before its first condition, \
                 but {what} is {format} with {actual}: it will probably never match; \
                 `sshwatch init --from FILE` writes filters that fit",
                f.filter_name,
                f.filter_pattern.text(),
            ));
        }
    }
    out
}

/// The shape check alone, for a source whose format is known without a sample.
pub fn check_shapes(filters: &[MetricFilter], format: LineFormat, what: &str) -> Vec<String> {
    filters
        .iter()
        .filter_map(|f| match pattern_fit(&f.filter_pattern, format) {
            Fit::Misfit { expected, actual } => Some(format!(
                "filter `{}` (`{}`) expects {expected} envelope fields before its first condition, \
                 but {what} has {actual}: it will probably never match",
                f.filter_name,
                f.filter_pattern.text(),
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enabled: bool) -> DetectorConfig {
        DetectorConfig {
            enabled,
            window: Duration::from_secs(600),
        }
    }

    const RFC3339: &[u8] =
        b"2026-11-26T15:52:59.159810+00:00 vm sshd[21932]: Invalid user admin from 127.0.0.1 port 55762";

    #[test]
    fn a_match_in_the_window_keeps_a_filter_quiet() {
        let filters = crate::config::default_metric_filters();
        let mut d = Detector::new(&filters, &config(true));
        assert!(d.is_active());
        assert_eq!(d.observe(RFC3339, &[], 1000), 1);
        // An older line arriving late lands in its own minute, in order.
        assert_eq!(d.observe(RFC3339, &[], 900), 1);
        assert_eq!(
            d.observe(
                b"Nov 26 15:52:59 vm sshd[1]: Invalid user a from 1.2.3.4",
                &[0],
                1010
            ),
            0
        );
        assert!(d.evaluate(1600).is_empty());
        assert_eq!(d.status(), None);
        // Once the match has left the window (and near-misses keep coming), the filter is silent.
        d.observe(RFC3339, &[], 1650);
        let silent = d.evaluate(2100);
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].filter_name, "SSHInvalidUserFilter");
        assert_eq!(silent[0].near_misses, 1);
        assert!(
            d.status()
                .is_some_and(|s| s.contains("SSHInvalidUserFilter (RFC 3339 timestamps)"))
        );
        // When the near-misses stop too, there is nothing left to say.
        assert!(d.evaluate(2800).is_empty());
        assert_eq!(d.status(), None);
    }

    #[test]
    fn disabled_detector_watches_nothing() {
        let filters = crate::config::default_metric_filters();
        let mut d = Detector::new(&filters, &config(false));
        assert!(!d.is_active());
        assert_eq!(d.observe(RFC3339, &[], 0), 0);
        assert!(d.evaluate(10_000).is_empty());
    }

    #[test]
    fn examples_are_bounded_and_printable() {
        let mut line = b"Invalid \x1b[31m".to_vec();
        line.extend(std::iter::repeat_n(b'x', 1000));
        let e = example_text(&line);
        assert!(e.chars().count() <= EXAMPLE_MAX + 1);
        assert!(!e.chars().any(char::is_control));
        assert!(e.ends_with('…'));
    }
}
