//! `sshwatch replay`: backfill old or rotated logs with their own timestamps.
//!
//! Each line keeps the time it was written: RFC 3339 (and the other dated envelopes) as written,
//! RFC 3164 (no year, local time) with the year inferred against the file's mtime: the last dated
//! line belongs to the latest year that does not put it after the mtime, and the year steps forward
//! each time the month jumps back by half a year or more (December → January), so a file spanning
//! New Year read in January gets last year's December. A line without a readable timestamp gets the
//! file's mtime. Lines CloudWatch would reject (older than 14 days or than the log group's
//! retention, or more than 2 hours ahead) are skipped and counted; the others are shipped with their
//! timestamps and their per-minute counts published, one PutMetricData per minute.
//!
//! Replay is for logs the daemon never read: replaying minutes the daemon already published adds
//! to them (CloudWatch sums datapoints).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use chrono::{Datelike as _, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::classify::{Classifier, Scratch};
use crate::config::Config;
use crate::format::{Stamp, parse_envelope, parse_stamp};

/// CloudWatch Logs rejects events older than this.
const MAX_EVENT_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// Margin for the time a replay takes: an event right at the limit when read must not be rejected
/// when sent.
const AGE_MARGIN: Duration = Duration::from_secs(15 * 60);
/// CloudWatch Logs rejects events more than this far in the future.
const MAX_EVENT_AHEAD: Duration = Duration::from_secs(2 * 3600);
/// A backwards month jump of at least this many months is a New Year.
const NEW_YEAR_JUMP: u32 = 6;
/// A dated line may be this far after the mtime (clock skew, a write after the last mtime update).
const MTIME_SLACK_SECS: i64 = 24 * 3600;

/// A year-less timestamp: month, day, hour, minute, second.
pub type Clock = (u32, u32, u32, u32, u32);

/// What replay did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub lines: u64,
    pub shipped: u64,
    /// Older than 14 days.
    pub skipped_too_old: u64,
    /// Older than the log group's retention (but within 14 days).
    pub skipped_retention: u64,
    /// More than 2 hours ahead.
    pub skipped_future: u64,
    /// Empty lines (CloudWatch has no empty events).
    pub skipped_empty: u64,
    /// Non-empty lines whose timestamp could not be read (stamped with the file's mtime).
    pub mtime_stamped: u64,
    /// `(metric, sum)` over the shipped lines, in filter order.
    pub metrics: Vec<(String, f64)>,
    /// Minutes with shipped lines (each one PutMetricData).
    pub minutes: u64,
    /// Shipped events CloudWatch refused or skipped (`rejectedLogEventsInfo`).
    pub rejected_by_cloudwatch: u64,
    /// Metric datums the sink could not publish.
    pub datums_dropped: u64,
    /// Oldest and newest timestamps of the non-empty lines, shipped or not (ms).
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

impl Summary {
    /// Lines skipped for any reason.
    pub fn skipped(&self) -> u64 {
        self.skipped_too_old + self.skipped_retention + self.skipped_future + self.skipped_empty
    }

    /// The text printed at the end.
    pub fn render(&self, dry_run: bool) -> String {
        let (ship, publish) = if dry_run {
            ("would ship", "would publish")
        } else {
            ("shipped", "published")
        };
        let mut t = format!(
            "files: {}\nlines: {}\n{ship}: {}\nskipped: {} (older than 14 days: {}, older than the retention: {}, more than 2 h ahead: {}, empty: {})\n\
             timestamps from the file mtime: {}\n",
            self.files,
            self.lines,
            self.shipped,
            self.skipped(),
            self.skipped_too_old,
            self.skipped_retention,
            self.skipped_future,
            self.skipped_empty,
            self.mtime_stamped,
        );
        if let (Some(a), Some(b)) = (self.first_ms, self.last_ms) {
            let fmt = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            };
            t.push_str(&format!("time range: {} .. {}\n", fmt(a), fmt(b)));
        }
        for (m, v) in &self.metrics {
            t.push_str(&format!("metric {m}: {}\n", crate::offline::number(*v)));
        }
        t.push_str(&format!("minutes {publish}: {}\n", self.minutes));
        if !dry_run {
            t.push_str(&format!(
                "rejected by CloudWatch: {} events, {} datums\n",
                self.rejected_by_cloudwatch, self.datums_dropped
            ));
        }
        t
    }
}

/// Per-minute counts of the shipped lines.
#[derive(Debug, Clone, Default)]
struct MinuteCounts {
    lines: u64,
    sums: Vec<f64>,
    matched: Vec<u64>,
}

/// One line, stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub timestamp_ms: i64,
    /// Whether the timestamp came from the line (false: the file's mtime).
    pub from_line: bool,
}

/// Assigns timestamps to the lines of one file in order (see the module docs).
#[derive(Debug, Clone)]
pub struct YearInference {
    mtime_ms: i64,
    year: i32,
    prev_month: Option<u32>,
}

impl YearInference {
    /// Prepares for a file whose year-less lines show `new_years` New Year jumps and whose last
    /// year-less line is `last` (month, day, hour, minute, second), modified at `mtime`.
    pub fn new(mtime: SystemTime, last: Option<Clock>, new_years: u32) -> YearInference {
        let mtime_ms = system_ms(mtime);
        let reference = Local
            .timestamp_millis_opt(mtime_ms)
            .single()
            .map(|t| t.naive_local())
            .unwrap_or_default();
        let mut last_year = reference.year();
        if let Some((month, day, h, m, s)) = last {
            // The latest year that does not put the last line after the mtime (plus slack).
            for candidate in (reference.year() - 8..=reference.year()).rev() {
                let Some(t) = naive(candidate, month, day, h, m, s, 0) else {
                    continue;
                };
                last_year = candidate;
                if (t - reference).num_seconds() <= MTIME_SLACK_SECS {
                    break;
                }
            }
        }
        YearInference {
            mtime_ms,
            year: last_year - new_years as i32,
            prev_month: None,
        }
    }

    /// The timestamp of the next line of the file.
    pub fn stamp(&mut self, line: &str) -> Stamped {
        let fallback = Stamped {
            timestamp_ms: self.mtime_ms,
            from_line: false,
        };
        let Some(stamp) = parse_envelope(line).as_ref().and_then(parse_stamp) else {
            return fallback;
        };
        match stamp {
            Stamp::Absolute(t) => Stamped {
                timestamp_ms: t.timestamp_millis(),
                from_line: true,
            },
            Stamp::NoYear {
                month,
                day,
                hour,
                minute,
                second,
                nanos,
            } => {
                if is_new_year(self.prev_month, month) {
                    self.year += 1;
                }
                self.prev_month = Some(month);
                let Some(t) = naive(self.year, month, day, hour, minute, second, nanos) else {
                    return fallback;
                };
                let local = Local.from_local_datetime(&t);
                // A time in a DST gap does not exist locally: take it as the hour after.
                let Some(t) = local.earliest().or_else(|| {
                    Local
                        .from_local_datetime(&(t + chrono::Duration::hours(1)))
                        .earliest()
                }) else {
                    return fallback;
                };
                Stamped {
                    timestamp_ms: t.timestamp_millis(),
                    from_line: true,
                }
            }
        }
    }
}

fn is_new_year(prev: Option<u32>, month: u32) -> bool {
    prev.is_some_and(|p| p >= month + NEW_YEAR_JUMP)
}

fn naive(
    year: i32,
    month: u32,
    day: u32,
    h: u32,
    m: u32,
    s: u32,
    nanos: u32,
) -> Option<NaiveDateTime> {
    Some(NaiveDateTime::new(
        NaiveDate::from_ymd_opt(year, month, day)?,
        NaiveTime::from_hms_nano_opt(h, m, s.min(59), nanos)?,
    ))
}

fn system_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Pass 1 over a file: New Year jumps among its year-less lines, and the last such line.
fn scan_years(path: &Path) -> anyhow::Result<(Option<Clock>, u32)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let (mut last, mut jumps, mut prev) = (None, 0u32, None);
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read `{}`", path.display()))?
            == 0
        {
            break;
        }
        let head = &buf[..buf.len().min(64)];
        let head = String::from_utf8_lossy(head);
        if let Some(Stamp::NoYear {
            month,
            day,
            hour,
            minute,
            second,
            ..
        }) = parse_envelope(&head).as_ref().and_then(parse_stamp)
        {
            if is_new_year(prev, month) {
                jumps += 1;
            }
            prev = Some(month);
            last = Some((month, day, hour, minute, second));
        }
    }
    Ok((last, jumps))
}

/// Where the lines go.
enum Shipper {
    DryRun,
    Sinks(Box<crate::replay::sinks::Sinks>),
}

/// Ships the files' lines and publishes their per-minute counts.
pub async fn run(config: &Config, files: &[PathBuf], dry_run: bool) -> anyhow::Result<()> {
    let stderr_tty = std::io::stderr().is_terminal();
    let summary = replay(config, files, dry_run, stderr_tty).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(summary.render(dry_run).as_bytes())?;
    Ok(())
}

/// [`run`] without printing: returns the summary. `progress` shows a bar on stderr.
pub async fn replay(
    config: &Config,
    files: &[PathBuf],
    dry_run: bool,
    progress: bool,
) -> anyhow::Result<Summary> {
    let mut shipper = if dry_run {
        Shipper::DryRun
    } else {
        Shipper::Sinks(Box::new(sinks::Sinks::new(config).await?))
    };
    let total: u64 = files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .with_context(|| format!("cannot read `{}`", f.display()))
        })
        .sum::<anyhow::Result<u64>>()?;
    let bar = if progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("replay {bar:40.cyan/blue} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let classifier = Classifier::new(&config.metric_filters);
    let mut names: Vec<(String, String)> = Vec::new();
    let slot_of: Vec<usize> = config
        .metric_filters
        .iter()
        .map(|f| {
            let key = (f.metric_namespace.clone(), f.metric_name.clone());
            names.iter().position(|k| *k == key).unwrap_or_else(|| {
                names.push(key);
                names.len() - 1
            })
        })
        .collect();
    let now_ms = system_ms(SystemTime::now());
    let oldest_ms = now_ms - (MAX_EVENT_AGE - AGE_MARGIN).as_millis() as i64;
    let retention_ms = config
        .logs
        .retention_in_days
        .map(|d| now_ms - i64::from(d) * 86_400_000 + AGE_MARGIN.as_millis() as i64);
    let newest_ms = now_ms + MAX_EVENT_AHEAD.as_millis() as i64 - AGE_MARGIN.as_millis() as i64;

    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    let mut minutes: BTreeMap<i64, MinuteCounts> = BTreeMap::new();
    let mut scratch = Scratch::default();
    let expand = config.source.expand_repeated;
    for path in files {
        bar.set_message(path.display().to_string());
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let (last, jumps) = scan_years(path)?;
        let mut years = YearInference::new(mtime, last, jumps);
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open `{}`", path.display()))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            if n == 0 {
                break;
            }
            bar.inc(n as u64);
            let line = crate::classify::strip_cr(buf.strip_suffix(b"\n").unwrap_or(&buf));
            summary.lines += 1;
            let text = crate::source::as_text(line);
            let stamped = years.stamp(&text);
            if line.is_empty() {
                summary.skipped_empty += 1;
                continue;
            }
            let ts = stamped.timestamp_ms;
            if !stamped.from_line {
                summary.mtime_stamped += 1;
            }
            summary.first_ms = Some(summary.first_ms.map_or(ts, |f| f.min(ts)));
            summary.last_ms = Some(summary.last_ms.map_or(ts, |l| l.max(ts)));
            if ts < oldest_ms {
                summary.skipped_too_old += 1;
                continue;
            }
            if retention_ms.is_some_and(|r| ts < r) {
                summary.skipped_retention += 1;
                continue;
            }
            if ts > newest_ms {
                summary.skipped_future += 1;
                continue;
            }
            summary.shipped += 1;
            let minute = ts.div_euclid(60_000) * 60;
            let counts = minutes.entry(minute).or_insert_with(|| MinuteCounts {
                lines: 0,
                sums: vec![0.0; names.len()],
                matched: vec![0; names.len()],
            });
            counts.lines += 1;
            classifier.classify_expanded(line, &mut scratch, expand, |i, v| {
                counts.matched[slot_of[i]] += 1;
                if let Some(v) = v {
                    counts.sums[slot_of[i]] += v;
                }
            });
            if let Shipper::Sinks(s) = &mut shipper {
                s.push(ts, &text).await?;
            }
        }
    }
    if let Shipper::Sinks(s) = &mut shipper {
        s.flush().await?;
    }
    bar.finish();

    let mut totals = vec![0.0; names.len()];
    for (minute, counts) in &minutes {
        let mut datums = Vec::new();
        for (slot, (namespace, name)) in names.iter().enumerate() {
            totals[slot] += counts.sums[slot];
            let value = if counts.matched[slot] > 0 {
                Some(counts.sums[slot])
            } else {
                let default = config
                    .metric_filters
                    .iter()
                    .zip(&slot_of)
                    .find(|(_, s)| **s == slot)
                    .and_then(|(f, _)| f.default_value);
                default.or(config.metrics.publish_zeros.then_some(0.0))
            };
            if let Some(v) = value {
                datums.push((namespace.clone(), name.clone(), v));
            }
        }
        if let Shipper::Sinks(s) = &mut shipper
            && !datums.is_empty()
        {
            s.publish(*minute, &datums).await?;
        }
        summary.minutes += 1;
    }
    summary.metrics = names.into_iter().map(|(_, n)| n).zip(totals).collect();
    if let Shipper::Sinks(s) = &shipper {
        summary.rejected_by_cloudwatch = s.rejected_events;
        summary.datums_dropped = s.dropped_datums;
    }
    Ok(summary)
}

/// The CloudWatch side of replay: the daemon's batcher and sinks.
mod sinks {
    use anyhow::Context as _;
    use tokio::sync::watch;
    use tracing::{error, warn};

    use crate::config::Config;
    use crate::sink::{EventBatch, LogBatcher, LogsSink, MetricsSink};

    /// Log batches and metric datapoints, sent with the daemon's sinks. Ctrl-C stops a call that
    /// is being retried.
    #[derive(Debug)]
    pub(super) struct Sinks {
        logs: LogsSink,
        metrics: MetricsSink,
        batcher: LogBatcher,
        shutdown: watch::Receiver<bool>,
        /// Events CloudWatch refused or skipped.
        pub(super) rejected_events: u64,
        /// Datums the metrics sink did not deliver.
        pub(super) dropped_datums: u64,
    }

    impl Sinks {
        pub(super) async fn new(config: &Config) -> anyhow::Result<Sinks> {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            let logs = LogsSink::new(&sdk, &config.logs)
                .await
                .context("cannot set up the logs sink")?;
            let metrics = MetricsSink::new(&sdk);
            let (tx, shutdown) = watch::channel(false);
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    let _ = tx.send(true);
                }
            });
            Ok(Sinks {
                logs,
                metrics,
                batcher: LogBatcher::new(),
                shutdown,
                rejected_events: 0,
                dropped_datums: 0,
            })
        }

        pub(super) async fn push(
            &mut self,
            timestamp_ms: i64,
            message: &str,
        ) -> anyhow::Result<()> {
            for batch in self.batcher.push_message(timestamp_ms, message) {
                self.send(batch).await?;
            }
            Ok(())
        }

        pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
            if let Some(batch) = self.batcher.take() {
                self.send(batch).await?;
            }
            Ok(())
        }

        async fn send(&mut self, batch: EventBatch) -> anyhow::Result<()> {
            let outcome = self
                .logs
                .put(batch, &self.shutdown)
                .await
                .map_err(|_| anyhow::anyhow!("interrupted while shipping log events"))?;
            let lost = outcome.rejected + outcome.skipped.count();
            if lost > 0 {
                warn!(
                    events = lost,
                    reason = outcome
                        .rejection
                        .as_deref()
                        .unwrap_or("rejectedLogEventsInfo"),
                    "CloudWatch did not store some replayed events"
                );
            }
            self.rejected_events += lost as u64;
            Ok(())
        }

        pub(super) async fn publish(
            &mut self,
            minute: i64,
            datums: &[(String, String, f64)],
        ) -> anyhow::Result<()> {
            let outcome = self
                .metrics
                .put(minute, datums, &self.shutdown)
                .await
                .map_err(|_| anyhow::anyhow!("interrupted while publishing metrics"))?;
            if outcome.dropped > 0 {
                error!(
                    minute,
                    datums = outcome.dropped,
                    reason = outcome.reason.as_deref().unwrap_or(""),
                    "metric datums of a replayed minute were not published"
                );
            }
            self.dropped_datums += outcome.dropped as u64;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtime(y: i32, mo: u32, d: u32) -> SystemTime {
        let t = Local
            .with_ymd_and_hms(y, mo, d, 12, 0, 0)
            .single()
            .expect("local time");
        UNIX_EPOCH + Duration::from_millis(t.timestamp_millis() as u64)
    }

    fn year_of(ms: i64) -> (i32, u32, u32) {
        let t = Local.timestamp_millis_opt(ms).single().expect("time");
        (t.year(), t.month(), t.day())
    }

    #[test]
    fn new_year_read_in_january() {
        let lines = [
            "Dec 30 23:59:00 h sshd[1]: a",
            "Dec 31 23:59:59 h sshd[1]: b",
            "Jan  1 00:00:01 h sshd[1]: c",
            "garbage",
            "Jan  2 10:00:00 h sshd[1]: d",
        ];
        let mut y = YearInference::new(mtime(2027, 1, 2), Some((1, 2, 10, 0, 0)), 1);
        let got: Vec<(i32, u32, u32)> = lines
            .iter()
            .map(|l| year_of(y.stamp(l).timestamp_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (2026, 12, 30),
                (2026, 12, 31),
                (2027, 1, 1),
                (2027, 1, 2),
                (2027, 1, 2)
            ]
        );
    }

    #[test]
    fn december_file_read_in_january_is_last_year() {
        let mut y = YearInference::new(mtime(2027, 1, 5), Some((12, 31, 23, 0, 0)), 0);
        assert_eq!(
            year_of(y.stamp("Dec 31 23:00:00 h sshd[1]: a").timestamp_ms),
            (2026, 12, 31)
        );
        // A dated line keeps its own year.
        let s = y.stamp("2025-06-01T00:00:00Z h sshd[1]: a");
        assert_eq!(s.timestamp_ms, 1_748_736_000_000);
        assert!(s.from_line);
    }

    #[test]
    fn same_year_when_before_mtime() {
        let mut y = YearInference::new(mtime(2026, 11, 27), Some((11, 26, 15, 0, 0)), 0);
        assert_eq!(
            year_of(y.stamp("Nov 26 15:00:00 h sshd[1]: a").timestamp_ms),
            (2026, 11, 26)
        );
        let f = y.stamp("no timestamp here");
        assert!(!f.from_line);
    }
}
