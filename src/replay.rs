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

use std::io::{BufReader, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chrono::{Datelike as _, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::counter::{Rules, saturating_add};
use crate::daemon::ledger::MAX_MINUTES_PER_PUBLISH;
use crate::format::{Stamp, parse_envelope, parse_stamp};
use crate::sink::batch::pieces;
use crate::tally::Tally;
use crate::text::LineReader;

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

/// A time of an RFC 3164 line, which has no year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct YearlessTime {
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
}

/// What replay did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
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
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped_too_old + self.skipped_retention + self.skipped_future + self.skipped_empty
    }

    /// The text printed at the end.
    pub(crate) fn render(&self, dry_run: bool) -> String {
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

/// One line, stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamped {
    pub timestamp_ms: i64,
    /// Whether the timestamp came from the line (false: the file's mtime).
    pub from_line: bool,
}

/// Assigns timestamps to the lines of one file in order (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct YearInference {
    mtime_ms: i64,
    year: i32,
    prev_month: Option<u32>,
}

impl YearInference {
    /// Prepares for a file whose year-less lines show `new_years` New Year jumps and whose last
    /// year-less line is `last`, modified at `mtime`.
    pub(crate) fn new(
        mtime: SystemTime,
        last: Option<YearlessTime>,
        new_years: u32,
    ) -> YearInference {
        let mtime_ms = crate::time::unix_ms(mtime);
        let reference = Local
            .timestamp_millis_opt(mtime_ms)
            .single()
            .map(|t| t.naive_local())
            .unwrap_or_default();
        let mut last_year = reference.year();
        if let Some(YearlessTime {
            month,
            day,
            hour: h,
            minute: m,
            second: s,
        }) = last
        {
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
    pub(crate) fn stamp(&mut self, line: &str) -> Stamped {
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

/// Pass 1 over a file: New Year jumps among its year-less lines, and the last such line.
fn scan_years(path: &Path) -> anyhow::Result<(Option<YearlessTime>, u32)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut reader = LineReader::new(BufReader::new(file));
    let (mut last, mut jumps, mut prev) = (None, 0u32, None);
    let mut starts_line = true;
    while let Some(piece) = reader
        .next_piece()
        .with_context(|| format!("cannot read `{}`", path.display()))?
    {
        let at_start = std::mem::replace(&mut starts_line, !piece.continues);
        if !at_start {
            continue;
        }
        let head = &piece.bytes[..piece.bytes.len().min(64)];
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
            last = Some(YearlessTime {
                month,
                day,
                hour,
                minute,
                second,
            });
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
pub(crate) async fn run(config: &Config, files: &[PathBuf], dry_run: bool) -> anyhow::Result<()> {
    let stderr_tty = std::io::stderr().is_terminal();
    let summary = replay(config, files, dry_run, stderr_tty).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(summary.render(dry_run).as_bytes())?;
    Ok(())
}

/// [`run`] without printing: returns the summary. `progress` shows a bar on stderr.
pub(crate) async fn replay(
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

    // The daemon's tally, without the detector's near misses and without a heartbeat (no line of an old
    // file says whether sshwatch was alive then).
    let mut quiet = config.clone();
    quiet.detector.enabled = false;
    let mut rules = Rules::from_config(&quiet);
    rules.heartbeat = None;
    let mut tally = Tally::with_rules(&quiet, rules);
    let now_ms = crate::time::now_ms();
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
    for path in files {
        bar.set_message(path.display().to_string());
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let (last, jumps) = scan_years(path)?;
        let mut years = YearInference::new(mtime, last, jumps);
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open `{}`", path.display()))?;
        let mut reader = LineReader::new(BufReader::new(file));
        // The stamp of the line the next piece belongs to (a piece of an over-long line keeps it).
        let mut current: Option<Stamped> = None;
        while let Some(piece) = reader
            .next_piece()
            .with_context(|| format!("cannot read `{}`", path.display()))?
        {
            bar.inc(piece.consumed as u64);
            let text = crate::text::as_text(&piece.bytes);
            let stamped = match current.take() {
                Some(s) => s,
                None => {
                    summary.lines += 1;
                    years.stamp(&text)
                }
            };
            if piece.continues {
                current = Some(stamped.clone());
            }
            if piece.bytes.is_empty() && !piece.continues {
                summary.skipped_empty += 1;
                continue;
            }
            let ts = stamped.timestamp_ms;
            let ends_line = !piece.continues;
            if ends_line && !stamped.from_line {
                summary.mtime_stamped += 1;
            }
            summary.first_ms = Some(summary.first_ms.map_or(ts, |f| f.min(ts)));
            summary.last_ms = Some(summary.last_ms.map_or(ts, |l| l.max(ts)));
            let skipped = if ts < oldest_ms {
                &mut summary.skipped_too_old
            } else if retention_ms.is_some_and(|r| ts < r) {
                &mut summary.skipped_retention
            } else if ts > newest_ms {
                &mut summary.skipped_future
            } else {
                if ends_line {
                    summary.shipped += 1;
                }
                for (event, continues) in pieces(&text, piece.continues) {
                    tally.count_event(event.as_bytes(), crate::time::secs_of_ms(ts), !continues);
                    if let Shipper::Sinks(s) = &mut shipper {
                        s.push(ts, &event, continues).await?;
                    }
                }
                continue;
            };
            if ends_line {
                *skipped += 1;
            }
        }
    }
    if let Shipper::Sinks(s) = &mut shipper {
        s.flush().await?;
    }
    bar.finish();

    let mut counter = tally.take();
    let mut totals: Vec<(String, f64)> = Vec::new();
    for (_, counts) in counter.minutes() {
        for (t, target) in counter.rules().targets.iter().enumerate() {
            let sum = counts.sums.get(t).copied().unwrap_or(0.0);
            match totals.iter_mut().find(|(n, _)| *n == target.name) {
                Some(total) => total.1 = saturating_add(total.1, sum),
                None => totals.push((target.name.clone(), sum)),
            }
        }
    }
    if totals.is_empty() {
        totals = counter
            .rules()
            .targets
            .iter()
            .map(|t| (t.name.clone(), 0.0))
            .collect();
        totals.dedup_by(|a, b| a.0 == b.0);
    }
    let minutes = counter.take_all();
    summary.minutes = minutes.len() as u64;
    if let Shipper::Sinks(s) = &mut shipper {
        for chunk in minutes.chunks(MAX_MINUTES_PER_PUBLISH) {
            s.publish(chunk).await?;
        }
    }
    summary.metrics = totals;
    if let Shipper::Sinks(s) = &shipper {
        summary.rejected_by_cloudwatch = s.rejected_events;
        summary.datums_dropped = s.dropped_datums;
    }
    Ok(summary)
}

/// The CloudWatch side of replay: the daemon's batcher and sinks.
mod sinks {
    use tracing::warn;

    use crate::config::Config;
    use crate::counter::Datum;
    use crate::shutdown::Shutdown;
    use crate::sink::logs::Host;
    use crate::sink::publish::Publisher;
    use crate::sink::{EventBatch, LogBatcher, LogsSink};

    /// Log batches and metric datapoints, sent with the daemon's sinks. Ctrl-C stops a call that
    /// is being retried.
    #[derive(Debug)]
    pub(super) struct Sinks {
        logs: LogsSink,
        publisher: Publisher,
        batcher: LogBatcher,
        shutdown: Shutdown,
        /// Events CloudWatch refused or skipped.
        pub(super) rejected_events: u64,
        /// Datums not delivered.
        pub(super) dropped_datums: u64,
    }

    impl Sinks {
        pub(super) async fn new(config: &Config) -> anyhow::Result<Sinks> {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            let host = Host::discover(&sdk).await;
            let stream = host.stream_name(&config.logs.log_stream_name)?;
            let logs = LogsSink::with_stream_name(&sdk, &config.logs, stream.clone());
            let publisher = Publisher::new(&sdk, config, &stream);
            let shutdown = Shutdown::new();
            let on_ctrl_c = shutdown.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_ctrl_c.abort();
                }
            });
            Ok(Sinks {
                logs,
                publisher,
                batcher: LogBatcher::new(),
                shutdown,
                rejected_events: 0,
                dropped_datums: 0,
            })
        }

        pub(super) async fn push(
            &mut self,
            timestamp_ms: i64,
            event: &str,
            continues: bool,
        ) -> anyhow::Result<()> {
            if let Some(batch) = self.batcher.push_event(timestamp_ms, event, continues).full {
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
                .put(&batch, &self.shutdown)
                .await
                .map_err(|_| anyhow::anyhow!("interrupted while shipping log events"))?;
            let lost = outcome.not_stored().len();
            if lost > 0 {
                warn!(
                    events = lost,
                    "CloudWatch did not store {lost} replayed events (each is logged above)"
                );
            }
            self.rejected_events += lost as u64;
            Ok(())
        }

        pub(super) async fn publish(
            &mut self,
            minutes: &[(i64, Vec<Datum>)],
        ) -> anyhow::Result<()> {
            let dropped = self
                .publisher
                .publish(minutes, &self.shutdown)
                .await
                .map_err(|_| anyhow::anyhow!("interrupted while publishing metrics"))?;
            self.dropped_datums += dropped as u64;
            Ok(())
        }
    }
}
