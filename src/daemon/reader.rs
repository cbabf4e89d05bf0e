//! The reader task: source → classifier → logs batches, each carrying the per-minute counts of its own lines.
//!
//! The only task that touches the source. It awaits every send of a batch, so when CloudWatch is slow the
//! ship queue fills, this task stops asking the source for lines, and the file on disk is the buffer.
//!
//! When to send a batch: when it is full (the batcher says so), at once when the file has nothing more
//! for now and no batch is on its way to CloudWatch (an idle host ships a line within one PutLogEvents
//! round trip), and otherwise [`FLUSH_INTERVAL`] after its first line. Under load batches therefore fill
//! up while the previous one is in flight.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::classify::{Classifier, Scratch};
use crate::config::Config;
use crate::counter::{Counter, Counts, Rules, minute_of};
use crate::daemon::{Source, raised};
use crate::detector::{Detector, FILTER_NEAR_MISSES_METRIC};
use crate::health::Pipeline;
use crate::sink::{EventBatch, LogBatcher};
use crate::source::{Line, Position, as_text};

/// Bytes of lines asked from the source at a time: enough to amortise the wake-up, small enough that
/// lines are classified while the previous batch is in flight.
const READ_BYTES: usize = 256 * 1024;

/// A batch is sent at the latest this long after its first line was read (the issue's "at least every
/// second when lines arrive").
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How long to wait before asking the source again after a read error.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// One logs batch and what acceptance makes durable.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The PutLogEvents events; empty for a position-only batch (the start of a file seen for the first
    /// time), which the shipper passes on without calling CloudWatch.
    pub(crate) events: EventBatch,
    /// The position after the batch's last complete line: `shipped` once accepted.
    pub(crate) end: Option<Position>,
    /// The counts of the batch's lines, per minute of read time.
    pub(crate) counts: Counter,
}

/// The sending end of the ship queue, counting the batches sent and not yet recorded by the ledger.
#[derive(Debug, Clone)]
pub(crate) struct ShipQueue {
    tx: mpsc::Sender<Batch>,
    /// Incremented here, decremented by the shipper once the ledger recorded the batch.
    pub(crate) unsettled: Arc<AtomicUsize>,
}

impl ShipQueue {
    pub(crate) fn new(tx: mpsc::Sender<Batch>) -> ShipQueue {
        ShipQueue {
            tx,
            unsettled: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sends `batch`, waiting while the queue is full; `false` when the shipper is gone.
    async fn send(&self, batch: Batch) -> bool {
        self.unsettled.fetch_add(1, Ordering::Relaxed);
        self.tx.send(batch).await.is_ok()
    }

    /// Whether no batch is queued or on its way to CloudWatch.
    fn idle(&self) -> bool {
        self.unsettled.load(Ordering::Relaxed) == 0
    }
}

/// The lines pushed into the batcher since the last cut, not yet in a sent batch.
#[derive(Debug)]
struct Open {
    end: Option<Position>,
    counts: Counter,
    /// When the first of them was read.
    since: Option<Instant>,
}

/// Counts of consecutive lines of one minute, folded into [`Open::counts`] when the minute changes or the
/// batch is cut (cheaper than a map lookup per line).
#[derive(Debug)]
struct Run {
    minute: i64,
    counts: Counts,
}

/// State of the reader task.
#[derive(Debug)]
pub(crate) struct Reader {
    source: Source,
    classifier: Classifier,
    scratch: Scratch,
    detector: Detector,
    expand_repeated: bool,
    rules: Rules,
    batcher: LogBatcher,
    open: Open,
    run: Run,
    /// Whether the stream's start must be sent as a position-only batch before the first line (no
    /// checkpoint had a position yet).
    announce_start: bool,
    pipeline: Arc<Pipeline>,
    /// The current line's matches: `(filter index, value)`.
    hits: Vec<(usize, Option<f64>)>,
    /// The current line's matching filter indices (for the detector).
    matched: Vec<usize>,
    /// The current line's near misses (filters whose words it carries but which it does not match).
    near_misses: u64,
    /// Namespace of the `FilterNearMisses` metric.
    near_miss_namespace: String,
}

impl Reader {
    pub(crate) fn new(
        source: Source,
        config: &Config,
        announce_start: bool,
        pipeline: Arc<Pipeline>,
    ) -> Reader {
        let rules = Rules::from_config(config);
        Reader {
            source,
            classifier: Classifier::new(&config.metric_filters),
            scratch: Scratch::default(),
            detector: Detector::new(&config.metric_filters, &config.detector),
            expand_repeated: config.source.expand_repeated,
            batcher: LogBatcher::new(),
            open: Open {
                end: None,
                counts: Counter::new(rules.clone(), 0),
                since: None,
            },
            run: Run {
                minute: 0,
                counts: rules.empty(),
            },
            rules,
            announce_start,
            pipeline,
            hits: Vec::new(),
            matched: Vec::new(),
            near_misses: 0,
            near_miss_namespace: config.metrics.namespace.clone(),
        }
    }

    /// Runs until `stop` turns true (or the shipper is gone), then sends what is batched and returns.
    pub(crate) async fn run(mut self, ship: ShipQueue, mut stop: watch::Receiver<bool>) {
        let mut evaluate = tokio::time::interval(Duration::from_secs(60));
        evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.update_state();
        loop {
            let flush_at = self.open.since.map(|s| s + FLUSH_INTERVAL);
            let lines = tokio::select! {
                biased;
                _ = raised(&mut stop) => break,
                _ = sleep_until(flush_at) => {
                    if !self.flush(&ship).await {
                        return;
                    }
                    continue;
                }
                _ = evaluate.tick() => {
                    self.evaluate_detector();
                    continue;
                }
                r = self.source.next_lines(READ_BYTES) => r,
            };
            match lines {
                Ok(lines) => {
                    // Less than asked for: the source has nothing more right now.
                    let drained =
                        lines.iter().map(|l| l.bytes.len() + 1).sum::<usize>() < READ_BYTES / 2;
                    if !self.take(lines, &ship).await {
                        return;
                    }
                    if drained && ship.idle() && !self.flush(&ship).await {
                        return;
                    }
                }
                Err(e) => {
                    // Nothing was consumed: the same lines are read again after the pause.
                    let what = self.source.describe();
                    error!(source = %what, error = %e, "cannot read the log");
                    self.pipeline.set_state(format!("cannot read {what}: {e}"));
                    tokio::select! {
                        _ = raised(&mut stop) => break,
                        _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    }
                }
            }
            self.update_state();
        }
        self.flush(&ship).await;
        info!(
            lines = self.pipeline.lines_read.load(Ordering::Relaxed),
            "reader stopped"
        );
    }

    fn update_state(&self) {
        let waiting = self.source.waiting_for_file();
        self.pipeline
            .waiting_for_file
            .store(waiting, Ordering::Relaxed);
        let path = self.source.describe();
        let mut state = if waiting {
            format!("waiting for {path} to appear")
        } else {
            format!("following {path}")
        };
        if let Some(silent) = self.detector.status() {
            state.push_str("; ");
            state.push_str(&silent);
        }
        self.pipeline.set_state(state);
    }

    fn evaluate_detector(&mut self) {
        let now = unix_secs(SystemTime::now());
        for s in self.detector.evaluate(now) {
            warn!(filter = %s.filter_name, "{s}");
        }
    }

    /// Classifies and batches `lines`; `false` when the shipper is gone.
    async fn take(&mut self, lines: Vec<Line>, ship: &ShipQueue) -> bool {
        self.pipeline
            .add(&self.pipeline.lines_read, lines.len() as u64);
        if self.announce_start {
            self.announce_start = false;
            if let Some(start) = lines.first().and_then(|l| start_of(&l.end)) {
                let batch = Batch {
                    events: EventBatch::new(),
                    end: Some(start),
                    counts: Counter::new(self.rules.clone(), 0),
                };
                if !ship.send(batch).await {
                    return false;
                }
            }
        }
        // Lines read together share their read time: converted once per run of them.
        let mut read_at = None;
        let (mut secs, mut millis) = (0, 0);
        for line in lines {
            if read_at != Some(line.read_at) {
                read_at = Some(line.read_at);
                (secs, millis) = (unix_secs(line.read_at), unix_millis(line.read_at));
            }
            let times = self.classify(&line.bytes, secs);
            let was_empty = self.batcher.is_empty();
            let full = self.batcher.push_message(millis, &as_text(&line.bytes));
            for (i, full) in full.into_iter().enumerate() {
                // The first batch completed by a push holds the lines before this one; any further ones
                // hold only pieces of this (over-long) line, which is recorded with its last piece (a
                // crash may then ship those pieces again).
                let (end, counts) = if i == 0 && !was_empty {
                    self.cut()
                } else {
                    (None, Counter::new(self.rules.clone(), 0))
                };
                if !ship
                    .send(Batch {
                        events: full,
                        end,
                        counts,
                    })
                    .await
                {
                    return false;
                }
            }
            self.count(secs, times);
            self.open.end = Some(line.end);
            self.open.since.get_or_insert_with(Instant::now);
        }
        true
    }

    /// Adds the current line (its matches are in `self.hits`) to the run of its minute.
    fn count(&mut self, secs: i64, times: u64) {
        let minute = minute_of(secs);
        if minute != self.run.minute {
            self.fold_run();
            self.run.minute = minute;
        }
        let c = &mut self.run.counts;
        c.lines += 1;
        if self.near_misses > 0 {
            let n = (self.near_misses * times) as f64;
            let ns = &self.near_miss_namespace;
            match c
                .extra
                .iter_mut()
                .find(|(a, b, _)| a == ns && b == FILTER_NEAR_MISSES_METRIC)
            {
                Some(e) => e.2 += n,
                None => c
                    .extra
                    .push((ns.clone(), FILTER_NEAR_MISSES_METRIC.to_string(), n)),
            }
        }
        for &(filter, value) in &self.hits {
            let Some(&t) = self.rules.filter_targets.get(filter) else {
                continue;
            };
            c.matches[t] += times;
            if let Some(v) = value {
                c.sums[t] += v * times as f64;
            }
        }
    }

    fn fold_run(&mut self) {
        if self.run.counts.lines > 0 {
            let counts = std::mem::replace(&mut self.run.counts, self.rules.empty());
            self.open.counts.merge(self.run.minute, &counts);
        }
    }

    /// Ends the open batch's accounting: its end position and counts; the next line starts a new one.
    fn cut(&mut self) -> (Option<Position>, Counter) {
        self.fold_run();
        let counts = std::mem::replace(&mut self.open.counts, Counter::new(self.rules.clone(), 0));
        self.open.since = None;
        (self.open.end.take(), counts)
    }

    /// Classifies one line into `self.hits`; returns how many times it counts (N for rsyslog's
    /// `message repeated N times` when `expand_repeated` is on, else 1).
    fn classify(&mut self, bytes: &[u8], secs: i64) -> u64 {
        let (text, times): (Cow<'_, [u8]>, u64) = if self.expand_repeated {
            crate::repeat::expand(bytes)
        } else {
            (Cow::Borrowed(bytes), 1)
        };
        let hits = &mut self.hits;
        hits.clear();
        self.classifier
            .classify(&text, &mut self.scratch, |i, value| hits.push((i, value)));
        self.near_misses = 0;
        if self.detector.is_active() {
            self.matched.clear();
            self.matched.extend(self.hits.iter().map(|h| h.0));
            let candidates = self.scratch.candidates();
            self.near_misses =
                self.detector
                    .observe_candidates(&text, &self.matched, candidates, secs);
        }
        times
    }

    /// Sends the open batch, if any; `false` when the shipper is gone.
    async fn flush(&mut self, ship: &ShipQueue) -> bool {
        let Some(events) = self.batcher.take() else {
            return true;
        };
        let (end, counts) = self.cut();
        ship.send(Batch {
            events,
            end,
            counts,
        })
        .await
    }
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

pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - 1,
    }
}

fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_rounds_down() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(61_999)), 61);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(
            unix_millis(UNIX_EPOCH + Duration::from_millis(61_999)),
            61_999
        );
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
