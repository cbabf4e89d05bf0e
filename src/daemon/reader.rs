//! The reader task: source → tally → logs batches, each carrying the per-minute counts of its own lines.
//!
//! The only task that touches the source. While a complete batch waits for room in the ship queue (when
//! CloudWatch is slow), it stops reading but keeps following the file: every rotation and truncation is
//! noticed when it happens and its file kept open ([`Source::track`]), so the files on disk stay the
//! buffer.
//!
//! A batch is sent when it is full, or once its oldest line has waited the flush interval (the configured
//! `force_flush_interval`, lengthened while CloudWatch throttles: [`Pace`]), and at once at shutdown.
//! While a batch is open and the source has been read to its end, the reader reads again at most every
//! [`READ_PAUSE`]: a trickle of lines costs one wake-up a second, not one per line. Lines that came during
//! the last pause are read into the batch just before it is cut, so they do not wait a whole interval
//! more in the next one.
//!
//! When everything read is on its way and the source has nothing more, a [`ToShipper::Mark`] tells the
//! ledger, through the same queue, that every line stamped before now is shipped, so minutes close on
//! time on a quiet host: once when the reader goes idle, then once a minute, just after it turns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::counter::Counter;
use crate::health::Stats;
use crate::shutdown::Shutdown;
use crate::sink::batch::{MAX_EVENT_BYTES, pieces};
use crate::sink::{EventBatch, LogBatcher, Pace};
use crate::source::{Line, Lines, Position, Source};
use crate::tally::Tally;
use crate::text::as_text;
use crate::time::{SERVER_CLOCK, now_secs, secs_of_ms, unix_ms};

/// Bytes of lines asked from the source at a time: enough to amortise the wake-up, small enough that
/// lines are classified while the previous batch is in flight, and at most two batches' worth.
const READ_BYTES: usize = 256 * 1024;

/// How long to wait before asking the source again after a read error.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// While a batch is open and the source was read to its end, how long the reader waits before it reads
/// again. Lines are stamped when read, so this is also how late a stamp can be.
const READ_PAUSE: Duration = Duration::from_secs(1);

/// How long after a minute turns an idle reader marks it (the clock's tick, and the stamp's own rounding).
const MARK_AFTER_MINUTE: Duration = Duration::from_millis(50);

/// How often the silent-miss detector looks at its window.
const DETECTOR_INTERVAL: Duration = Duration::from_secs(60);

/// What the reader hands the shipper.
#[derive(Debug)]
pub(crate) enum ToShipper {
    /// Lines to ship.
    Batch(Box<Batch>),
    /// Reading starts here (a file with no checkpoint yet, first seen when its first line came).
    Start(Position),
    /// Every line stamped before `read_until` (Unix seconds) is in the batches sent before this.
    Mark { read_until: i64 },
}

/// One logs batch and what its acceptance makes durable.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) events: EventBatch,
    /// The position after the batch's last complete line: `shipped` once accepted. `None` for a batch
    /// holding only pieces of one over-long line that goes on in the next batch.
    pub(crate) end: Option<Position>,
    /// The counts of the batch's events, per minute of their timestamps.
    pub(crate) counts: Counter,
}

/// What the source gave when asked.
enum Read {
    Lines(std::io::Result<Lines>),
    /// Something may have changed at the path (while not reading).
    Changed,
}

/// State of the reader task.
#[derive(Debug)]
pub(crate) struct Reader {
    source: Source,
    tally: Tally,
    batcher: LogBatcher,
    /// The position after the last line pushed into the batcher.
    open_end: Option<Position>,
    /// When the oldest line in the batcher was read.
    open_since: Option<Instant>,
    /// Complete batches waiting for room in the ship queue: what one read fills, at most.
    ready: VecDeque<ToShipper>,
    /// The stream's start must be sent before the first line (no checkpoint had a position yet).
    announce_start: bool,
    /// The source said it had nothing more at the last read (or nothing was read yet).
    at_end: bool,
    /// Read again no sooner than this (a batch is open and the source was at its end).
    read_after: Option<Instant>,
    /// A mark is owed: the reader went idle, or a minute turned, since the last one.
    mark_due: bool,
    pace: Arc<Pace>,
    stats: Arc<Stats>,
}

impl Reader {
    pub(crate) fn new(
        source: Source,
        tally: Tally,
        announce_start: bool,
        pace: Arc<Pace>,
        stats: Arc<Stats>,
    ) -> Reader {
        Reader {
            source,
            tally,
            batcher: LogBatcher::new(),
            open_end: None,
            open_since: None,
            ready: VecDeque::new(),
            announce_start,
            // Nothing read yet: whatever is read later is stamped later, so marking now is true.
            at_end: true,
            read_after: None,
            mark_due: true,
            pace,
            stats,
        }
    }

    /// Runs until shutdown stops it (or the shipper is gone), then sends what is batched and returns.
    pub(crate) async fn run(mut self, ship: mpsc::Sender<ToShipper>, shutdown: Shutdown) {
        let mut detector = tokio::time::interval(DETECTOR_INTERVAL);
        detector.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.update_state();
        loop {
            let waiting = !self.ready.is_empty();
            if !waiting && self.mark_due && self.batcher.is_empty() && self.at_end {
                // Room or not: a mark only speeds up closing a minute, the next one will do.
                let sent = ship.try_send(ToShipper::Mark {
                    read_until: SERVER_CLOCK.now_secs(),
                });
                self.mark_due = sent.is_err();
            }
            let flush_at = self.open_since.map(|s| s + self.pace.interval());
            let paused = self.read_after.is_some();
            tokio::select! {
                biased;
                () = shutdown.stopping() => break,
                permit = ship.reserve(), if waiting => match permit {
                    Ok(permit) => {
                        if let Some(msg) = self.ready.pop_front() {
                            permit.send(msg);
                        }
                        self.mark_due = true;
                    }
                    Err(_) => return,
                },
                () = sleep_until(flush_at), if !waiting => {
                    // What is there now, without waiting (cancel-safe: a read that would wait loses
                    // nothing); an error comes back at the next read.
                    if let Some(Ok(lines)) = self.source.next_lines(READ_BYTES).now_or_never() {
                        self.take(lines);
                    }
                    self.flush();
                }
                _ = detector.tick() => self.evaluate_detector(),
                () = sleep_until(Some(next_minute())) => self.mark_due = true,
                () = sleep_until(self.read_after), if paused && !waiting => self.read_after = None,
                read = read_or_track(&mut self.source, waiting), if !paused || waiting => match read {
                    Read::Changed => self.source.track(),
                    Read::Lines(Ok(lines)) => self.take(lines),
                    Read::Lines(Err(e)) => {
                        // Nothing was consumed: the same lines are read again after the pause.
                        let what = self.source.describe();
                        error!(source = %what, error = %e, "cannot read {what}: {e}; trying again in {} s", ERROR_BACKOFF.as_secs());
                        self.stats.set_state(format!("cannot read {what}: {e}"));
                        tokio::select! {
                            () = shutdown.stopping() => break,
                            () = tokio::time::sleep(ERROR_BACKOFF) => {}
                        }
                    }
                },
            }
            self.update_state();
        }
        self.flush();
        while let Some(msg) = self.ready.pop_front() {
            let sent = tokio::select! {
                r = ship.send(msg) => r.is_ok(),
                () = shutdown.aborted() => false,
            };
            if !sent {
                break;
            }
        }
        info!(
            lines = self.stats.lines_read.load(Ordering::Relaxed),
            "reader stopped"
        );
    }

    fn update_state(&self) {
        let waiting = self.source.waiting_for_file();
        self.stats
            .waiting_for_file
            .store(waiting, Ordering::Relaxed);
        let what = self.source.describe();
        let mut state = if waiting {
            format!("waiting for {what} to appear")
        } else {
            format!("following {what}")
        };
        if let Some(silent) = self.tally.detector_status() {
            state.push_str("; ");
            state.push_str(&silent);
        }
        self.stats.set_state(state);
    }

    fn evaluate_detector(&mut self) {
        for s in self.tally.detector().evaluate(now_secs()) {
            warn!(filter = %s.filter_name, "{s}");
        }
    }

    /// Counts and batches `lines`.
    fn take(&mut self, lines: Lines) {
        self.at_end = lines.at_end;
        if !lines.at_end {
            self.read_after = None;
        }
        let Lines { lines, .. } = lines;
        let complete = lines.iter().filter(|l| !l.continues).count();
        self.stats.add(&self.stats.lines_read, complete as u64);
        if self.announce_start {
            self.announce_start = false;
            if let Some(start) = lines.first().and_then(|l| start_of(&l.end)) {
                self.ready.push_back(ToShipper::Start(start));
            }
        }
        // Lines read together share their read time: converted once per run of them.
        let mut read_at = None;
        let mut ms = 0;
        for line in lines {
            if read_at != Some(line.read_at) {
                read_at = Some(line.read_at);
                ms = unix_ms(line.read_at).saturating_add(SERVER_CLOCK.correction_ms());
            }
            self.push_line(&line, ms);
            self.open_end = Some(line.end);
            self.open_since.get_or_insert_with(Instant::now);
        }
        if self.at_end && !self.batcher.is_empty() {
            self.read_after = Some(Instant::now() + READ_PAUSE);
        }
    }

    /// Pushes one line's events (usually the line itself) into the batcher and counts each at the
    /// timestamp it got.
    fn push_line(&mut self, line: &Line, ms: i64) {
        let text = as_text(&line.bytes);
        if !line.continues && !text.is_empty() && text.len() <= MAX_EVENT_BYTES {
            let pushed = self.batcher.push_event(ms, &text, false);
            if let Some(full) = pushed.full {
                self.cut(full);
            }
            self.tally
                .count_event(text.as_bytes(), secs_of_ms(pushed.timestamp_ms), true);
            return;
        }
        self.batcher.note_split(&text);
        for (piece, continues) in pieces(&text, line.continues) {
            let pushed = self.batcher.push_event(ms, &piece, continues);
            if let Some(full) = pushed.full {
                self.cut(full);
            }
            self.tally.count_event(
                piece.as_bytes(),
                secs_of_ms(pushed.timestamp_ms),
                !continues,
            );
        }
    }

    /// Queues the complete batch `events` with the position and counts of what it holds.
    fn cut(&mut self, events: EventBatch) {
        self.ready.push_back(ToShipper::Batch(Box::new(Batch {
            events,
            end: self.open_end.take(),
            counts: self.tally.take(),
        })));
        self.open_since = None;
    }

    /// Queues the open batch, if any; the next lines are read as soon as they come.
    fn flush(&mut self) {
        if let Some(events) = self.batcher.take() {
            self.cut(events);
        }
        self.open_since = None;
        self.read_after = None;
    }
}

/// New lines from `source`, or, while a batch waits (`tracking`), a sign that something changed at the
/// path. Both cancel-safe.
async fn read_or_track(source: &mut Source, tracking: bool) -> Read {
    if tracking {
        source.changed().await;
        Read::Changed
    } else {
        Read::Lines(source.next_lines(READ_BYTES).await)
    }
}

/// Just after the next minute turns, by CloudWatch's clock when the host's is off.
fn next_minute() -> Instant {
    let ms = crate::time::now_ms().saturating_add(SERVER_CLOCK.correction_ms());
    let into = u64::try_from(ms.rem_euclid(60_000)).unwrap_or(0);
    Instant::now() + Duration::from_millis(60_000 - into) + MARK_AFTER_MINUTE
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The position before the first byte of the file `end` is in (a file that appeared after the start is
/// read from its beginning). `None` for a journal cursor, which cannot name the entry before it.
fn start_of(end: &Position) -> Option<Position> {
    match end {
        Position::File { path, id, .. } => Some(Position::File {
            path: path.clone(),
            id: id.clone(),
            offset: 0,
        }),
        Position::Journal { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::source::FileSource;
    use std::io::Write as _;

    #[tokio::test]
    async fn lines_written_during_the_pause_join_the_batch_that_is_cut() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("secure");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let config = Config::from_toml_str(
            &format!("[source]\nfile_path = {:?}\n", path.display().to_string()),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let source = FileSource::new(&config.source, None, None).unwrap_or_else(|e| panic!("{e}"));
        let reader = Reader::new(
            Source::File(Box::new(source)),
            Tally::new(&config),
            false,
            Arc::new(Pace::new(Duration::from_secs(2))),
            Arc::new(Stats::new(vec![])),
        );
        let (ship, mut shipped) = mpsc::channel(8);
        let shutdown = Shutdown::new();
        let task = tokio::spawn(reader.run(ship, shutdown.clone()));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        let start = Instant::now();
        // `a` opens the batch (cut 2 s later); `b` is read at once and starts a 1 s pause; `c` comes
        // during that pause, which ends after the cut.
        for (at, line) in [(0, "a"), (1200, "b"), (1600, "c")] {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            writeln!(file, "{line}").unwrap_or_else(|e| panic!("{e}"));
        }
        let first = loop {
            match tokio::time::timeout(Duration::from_secs(10), shipped.recv()).await {
                Ok(Some(ToShipper::Batch(batch))) => break batch,
                Ok(Some(_)) => continue,
                other => panic!("no batch: {other:?}"),
            }
        };
        let messages: Vec<&str> = first.events.iter().map(|(_, m)| m).collect();
        assert_eq!(messages, ["a", "b", "c"]);
        shutdown.stop();
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_journal_cursor_has_no_start() {
        assert_eq!(
            start_of(&Position::Journal {
                cursor: "s=1".into()
            }),
            None
        );
    }
}
