//! `sshwatch run`: starts the source, classifier, sinks and health tasks and owns the shutdown order.
//!
//! ```text
//!  reader ──SHIP_QUEUE──▶ shipper ──ACCEPTED_QUEUE──▶ ledger ──PUBLISH_QUEUE──▶ publisher
//!  (source, classify,     (PutLogEvents)              (checkpoint,  ◀──PUBLISHED_QUEUE──  (PutMetricData)
//!   batcher)                                           minutes)
//!  health: reads the shared counters, talks to systemd
//! ```
//!
//! Every queue is bounded and every send awaited: when CloudWatch is slow or down the shipper stops taking
//! batches, the reader stops reading, and the file on disk is the buffer.
//!
//! Shutdown (SIGTERM/SIGINT): `stop` turns true; the reader stops reading and sends its last batch; the
//! shipper ships what is queued and exits; the ledger then publishes every pending minute, the open one
//! too; each acceptance is checkpointed as it happens. `abort` turns true [`GIVE_UP_AFTER`] after the
//! signal: the AWS calls still waiting give up, and what they held stays in the file and the checkpoint for
//! the next start. The process exits 0 within 10 s.

mod ledger;
mod reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::counter::{Counter, Datum, Rules};
use crate::daemon::ledger::Ledger;
use crate::daemon::reader::{Batch, Reader, ShipQueue, unix_secs};
use crate::health::{Notifier, Pipeline};
use crate::sink::{LogsSink, MetricsSink};
use crate::source::checkpoint::{self, Checkpoint};
use crate::source::{FileSource, Position};

/// Batches waiting for the shipper besides the one in flight. Two keep PutLogEvents busy during a burst
/// (the next batch is ready when one is accepted) while holding at most ~2 MiB of events.
const SHIP_QUEUE: usize = 2;

/// Accepted batches waiting for the ledger. The shipper waits for the ledger to checkpoint each accepted
/// batch before its next PutLogEvents, so that at any instant at most one batch is accepted but not yet
/// recorded: the one a crash makes ship twice.
const ACCEPTED_QUEUE: usize = 1;

/// Minutes handed to the publisher: one at a time, so a minute is removed from the checkpoint only after
/// its own PutMetricData was accepted.
const PUBLISH_QUEUE: usize = 1;

/// Answers from the publisher: at most one minute is in flight, so one answer.
const PUBLISHED_QUEUE: usize = 1;

/// After SIGTERM, AWS calls still failing give up after this long, so the process exits within systemd's
/// and the issue's 10 s (what was not accepted stays in the file and the checkpoint).
const GIVE_UP_AFTER: Duration = Duration::from_secs(7);

/// How often the ledger looks for minutes to publish.
const LEDGER_TICK: Duration = Duration::from_millis(500);

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let notifier = Notifier::from_env();
    let watchdog = crate::health::watchdog_interval();
    let state_dir = config.source.state_dir.clone();

    // Start-up: checkpoint, AWS clients, the source. Any failure here exits non-zero before READY=1, and a
    // corrupt checkpoint is left as it is for the operator.
    let cp = checkpoint::load(&state_dir)?.unwrap_or_default();
    let rules = Rules::from_config(&config);
    let metric_names = rules.targets.iter().map(|t| t.name.clone()).collect();
    let pipeline = Arc::new(Pipeline::new(metric_names));
    let sdk = crate::aws::sdk_config(&config.aws).await;
    let logs = LogsSink::new(&sdk, &config.logs)
        .await
        .context("cannot set up the logs sink")?;
    let metrics = MetricsSink::new(&sdk);
    pipeline.watch_sinks(vec![logs.stats(), metrics.stats()]);
    let source = open_source(&config, &cp)?;

    let now = unix_secs(SystemTime::now());
    let mut ledger = Ledger::new(cp, rules.clone(), now);
    // A stream with no checkpoint yet starts where the source starts; record that before anything is read,
    // so that a crash before the first batch does not move a `start_position = "end"` past unshipped lines.
    let mut announce_start = false;
    if !resumes(ledger.shipped_position(), &source, &config) {
        match source.current_position() {
            Some(start) => {
                ledger.shipped(Some(start), &Counter::new(rules, now));
                store(&state_dir, ledger.checkpoint()).await?;
            }
            None => announce_start = true,
        }
    }

    let what = source.describe();
    pipeline.set_state(if source.waiting_for_file() {
        format!("waiting for {what} to appear")
    } else {
        format!("following {what}")
    });
    let reader = Reader::new(source, &config, announce_start, Arc::clone(&pipeline));
    let (stop_tx, stop) = watch::channel(false);
    let (abort_tx, abort) = watch::channel(false);
    let (ship_tx, ship_rx) = mpsc::channel(SHIP_QUEUE);
    let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_QUEUE);
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let (published_tx, published_rx) = mpsc::channel(PUBLISHED_QUEUE);

    let ship_tx = ShipQueue::new(ship_tx);
    let unsettled = Arc::clone(&ship_tx.unsettled);
    let mut reader = tokio::spawn(reader.run(ship_tx, stop.clone()));
    let shipper = tokio::spawn(ship(
        logs,
        ship_rx,
        unsettled,
        accepted_tx,
        abort.clone(),
        Arc::clone(&pipeline),
    ));
    let publisher = tokio::spawn(publish(
        metrics,
        publish_rx,
        published_tx,
        abort.clone(),
        Arc::clone(&pipeline),
    ));
    let keeper = tokio::spawn(keep_ledger(
        ledger,
        state_dir.clone(),
        accepted_rx,
        publish_tx,
        published_rx,
        Arc::clone(&pipeline),
    ));

    // The log's tail tells at once when the configured patterns cannot fit its format.
    for warning in crate::detector::startup_check(&config) {
        warn!("{warning}");
    }

    // READY=1: config, checkpoint and the first open succeeded (a missing file is being waited for).
    notifier.ready(&pipeline.status());
    info!(source = %what, state_dir = %state_dir.display(), "sshwatch running");
    let health = tokio::spawn(crate::health::run(
        Arc::clone(&pipeline),
        notifier,
        watchdog,
        stop.clone(),
    ));

    // The reader ends only when told to stop (or when the shipper gave up, which needs a stop first): if
    // it ends before, something is broken; stop in order and exit non-zero so that systemd restarts us.
    let broken = tokio::select! {
        _ = signals.next() => None,
        r = &mut reader => Some(match r {
            Ok(()) => "the reader stopped".to_string(),
            Err(e) => format!("the reader failed: {e}"),
        }),
    };
    if let Some(why) = &broken {
        error!(reason = %why, "stopping: the pipeline broke");
    }
    info!("stopping: flushing the last batch and minute");
    notifier.stopping("stopping: flushing the last batch and minute");
    let _ = stop_tx.send(true);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(GIVE_UP_AFTER) => {}
            _ = signals.next() => warn!("second signal: giving up on pending AWS calls now"),
        }
        let _ = abort_tx.send(true);
    });

    if broken.is_none() {
        let _ = reader.await;
    }
    let _ = shipper.await;
    let _ = publisher.await;
    let ledger_result = keeper.await.context("the ledger task failed")?;
    let _ = health.await;
    if *abort.borrow() {
        warn!(
            "stopped before CloudWatch accepted everything; the rest is sent after the next start"
        );
    }
    info!(status = %pipeline.status(), "stopped");
    ledger_result?;
    match broken {
        Some(why) => anyhow::bail!("{why} unexpectedly"),
        None => Ok(()),
    }
}

/// Opens the source at the checkpoint: the file, or the journal when configured or when there is no file.
fn open_source(config: &Config, cp: &Checkpoint) -> anyhow::Result<Source> {
    if crate::source::journal::selected(&config.source) {
        let journal =
            crate::source::journal::JournalSource::new(&config.source, cp.shipped.clone())
                .context("cannot read the journal")?;
        return Ok(Source::Journal(journal));
    }
    let file = FileSource::new(&config.source, cp.shipped.clone())
        .with_context(|| format!("cannot open `{}`", config.source.file_path.display()))?;
    Ok(Source::File(file))
}

/// Whether the checkpoint's position is one the source resumes from (the same file, or a journal cursor
/// for the journal).
fn resumes(shipped: Option<&Position>, source: &Source, config: &Config) -> bool {
    match (shipped, source) {
        (Some(Position::File { path, .. }), Source::File(_)) => **path == *config.source.file_path,
        (Some(Position::Journal { .. }), Source::Journal(_)) => true,
        _ => false,
    }
}

/// The log being followed: `/var/log/secure` or sshd's journal entries.
#[derive(Debug)]
pub(crate) enum Source {
    File(FileSource),
    Journal(crate::source::journal::JournalSource),
}

impl Source {
    pub(crate) async fn next_lines(
        &mut self,
        max_bytes: usize,
    ) -> std::io::Result<Vec<crate::source::Line>> {
        match self {
            Source::File(f) => f.next_lines(max_bytes).await,
            Source::Journal(j) => j.next_lines(max_bytes).await,
        }
    }

    /// Where reading starts, when known before the first line.
    fn current_position(&self) -> Option<Position> {
        match self {
            Source::File(f) => f.current_position(),
            Source::Journal(_) => None,
        }
    }

    /// Whether the file is not there yet.
    pub(crate) fn waiting_for_file(&self) -> bool {
        match self {
            Source::File(f) => f.status().waiting_for_file,
            Source::Journal(_) => false,
        }
    }

    /// What is followed, for logs and `STATUS=`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::File(f) => f.path().display().to_string(),
            Source::Journal(_) => "the journal".to_string(),
        }
    }
}

/// Waits until `flag` turns true (or its sender is gone).
pub(crate) async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|f| *f).await;
}

/// SIGTERM and SIGINT, caught from start-up on (before READY=1), so a stop request is never the default
/// "terminate at once".
#[derive(Debug)]
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// An accepted logs batch, for the ledger.
#[derive(Debug)]
struct Accepted {
    end: Option<Position>,
    counts: Counter,
    /// Answered once the checkpoint holds the batch.
    recorded: oneshot::Sender<()>,
}

/// The shipper task: one PutLogEvents at a time, in order; tells the ledger about each accepted batch and
/// waits until it is recorded before the next call.
async fn ship(
    mut sink: LogsSink,
    mut batches: mpsc::Receiver<Batch>,
    unsettled: Arc<AtomicUsize>,
    accepted: mpsc::Sender<Accepted>,
    abort: watch::Receiver<bool>,
    pipeline: Arc<Pipeline>,
) {
    while let Some(batch) = batches.recv().await {
        let Batch {
            events,
            end,
            counts,
        } = batch;
        if !events.is_empty() {
            let count = events.len();
            match sink.put(events, &abort).await {
                Ok(_) => pipeline.progressed(),
                Err(_) => {
                    info!(
                        events = count,
                        "gave up on a logs batch at shutdown; it is sent after the next start"
                    );
                    return;
                }
            }
        }
        let (recorded, done) = oneshot::channel();
        let sent = accepted
            .send(Accepted {
                end,
                counts,
                recorded,
            })
            .await;
        if sent.is_err() || done.await.is_err() {
            return;
        }
        unsettled.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The publisher task: one PutMetricData per minute, answering `true` when accepted.
async fn publish(
    sink: MetricsSink,
    mut minutes: mpsc::Receiver<(i64, Vec<Datum>)>,
    answers: mpsc::Sender<bool>,
    abort: watch::Receiver<bool>,
    pipeline: Arc<Pipeline>,
) {
    while let Some((minute, datums)) = minutes.recv().await {
        let ok = !*abort.borrow() && sink.put(minute, &datums, &abort).await.is_ok();
        pipeline.progressed();
        if answers.send(ok).await.is_err() {
            return;
        }
    }
}

/// The ledger task: the only writer of the checkpoint. Records accepted batches and minutes, hands due
/// minutes to the publisher, and at shutdown (once the shipper is done) publishes every pending minute.
async fn keep_ledger(
    mut ledger: Ledger,
    state_dir: PathBuf,
    mut accepted: mpsc::Receiver<Accepted>,
    publish: mpsc::Sender<(i64, Vec<Datum>)>,
    mut published: mpsc::Receiver<bool>,
    pipeline: Arc<Pipeline>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(LEDGER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    let mut in_flight = false;
    loop {
        tokio::select! {
            a = accepted.recv(), if !draining => match a {
                Some(a) => {
                    let mut lines = 0;
                    for (_, counts) in a.counts.minutes() {
                        lines += counts.lines;
                        for (i, n) in counts.matches.iter().enumerate() {
                            pipeline.add_matches(i, *n);
                        }
                    }
                    ledger.shipped(a.end, &a.counts);
                    store_logged(&state_dir, ledger.checkpoint()).await;
                    pipeline.add(&pipeline.lines_shipped, lines);
                    let _ = a.recorded.send(());
                }
                None => draining = true,
            },
            answer = published.recv(), if in_flight => {
                in_flight = false;
                if answer == Some(true) {
                    ledger.published();
                    store_logged(&state_dir, ledger.checkpoint()).await;
                    pipeline.add(&pipeline.minutes_published, 1);
                } else {
                    ledger.not_published();
                    if draining {
                        break;
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let now = unix_secs(SystemTime::now());
        let drained = pipeline.lines_read.load(Ordering::Relaxed)
            == pipeline.lines_shipped.load(Ordering::Relaxed);
        if !in_flight {
            let next = if draining {
                ledger.next_pending()
            } else {
                ledger.next_due(now, drained)
            };
            match next {
                Some(minute) => {
                    if publish.send(minute).await.is_err() {
                        ledger.not_published();
                        break;
                    }
                    in_flight = true;
                }
                None if draining => break,
                None => {}
            }
        }
        pipeline
            .minutes_due
            .store(ledger.due(now, drained) as u64, Ordering::Relaxed);
    }
    store(&state_dir, ledger.checkpoint()).await
}

/// Writes the checkpoint (off the async threads: it fsyncs).
async fn store(state_dir: &Path, cp: Checkpoint) -> anyhow::Result<()> {
    let dir = state_dir.to_path_buf();
    tokio::task::spawn_blocking(move || checkpoint::store(&dir, &cp))
        .await
        .context("the checkpoint writer panicked")?
}

/// [`store`], logging a failure: the daemon goes on (a later store may succeed), but until then a crash
/// would ship and count again what the failed store should have recorded.
async fn store_logged(state_dir: &Path, cp: Checkpoint) {
    if let Err(e) = store(state_dir, cp).await {
        error!(error = %format!("{e:#}"), "cannot write the checkpoint; a crash now would send lines and counts twice");
    }
}
