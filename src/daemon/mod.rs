//! `sshwatch run`: opens the checkpoint, the source and the sinks, starts the tasks, and owns the shutdown
//! order.
//!
//! ```text
//!  reader ──SHIP_QUEUE──▶ shipper ──KEEPER_QUEUE──▶ keeper ──PUBLISH_QUEUE──▶ publisher (PutMetricData)
//!  (source, tally,        (PutLogEvents,            (ledger,    ◀──ANSWERS_QUEUE──
//!   batcher)               EMF minutes)  ◀──MINUTES── checkpoint)
//!  health: the tasks' promises and counters → systemd
//! ```
//!
//! With the EMF transport (the default) the keeper hands due minutes to the shipper, whose next batch
//! carries them; with PutMetricData, to the publisher task.
//!
//! Every queue is bounded and every send awaited: when CloudWatch is slow or down the shipper stops taking
//! batches, the reader stops reading (but keeps following the file's rotations), and the file on disk is
//! the buffer.
//!
//! Shutdown ([`Shutdown`]): on *stop* the reader sends its last batch and ends; the shipper ships what is
//! queued and ends; the keeper then publishes every pending minute, the open one too; each acceptance is
//! checkpointed as it happens. [`GIVE_UP_AFTER`] after the stop, shutdown *aborts*: AWS calls still
//! failing give up (one in flight gets a moment to bring its answer), and what they held stays in the file
//! and the checkpoint for the next start. The process ends within 10 s.

pub(crate) mod keeper;
pub(crate) mod ledger;
pub(crate) mod reader;
pub(crate) mod shipper;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::config::MetricsTransport;
use crate::counter::Rules;
use crate::daemon::keeper::Keeper;
use crate::daemon::keeper::Outlet;
use crate::daemon::ledger::Ledger;
use crate::daemon::reader::Reader;
use crate::daemon::shipper::Shipper;
use crate::health::{Beat, Liveness, Notifier, Stats};
use crate::shutdown::Shutdown;
use crate::sink::LogsSink;
use crate::sink::MetricsSink;
use crate::sink::logs::Host;
use crate::source::checkpoint::{self, Store};
use crate::source::{Position, Source, SourceKind};
use crate::tally::Tally;
use crate::time::SERVER_CLOCK;

/// Messages waiting for the shipper besides the one in flight. Two keep PutLogEvents busy during a burst
/// (the next batch is ready when one is accepted) while holding at most ~2 MiB of events.
const SHIP_QUEUE: usize = 2;

/// Messages waiting for the keeper. The shipper waits for the keeper to checkpoint each accepted batch
/// before its next PutLogEvents, so at any instant at most one batch is accepted but not recorded.
const KEEPER_QUEUE: usize = 1;

/// Minutes handed to the publisher or the shipper: one set at a time, so minutes leave the checkpoint only
/// after their own call was accepted.
const PUBLISH_QUEUE: usize = 1;

/// Answers from the publisher: one set of minutes is in flight, so one answer.
const ANSWERS_QUEUE: usize = 1;

/// Bytes at the end of the log the start-up check judges its format by.
const STARTUP_SAMPLE_BYTES: u64 = 64 * 1024;

/// After the stop, AWS calls still failing give up after this long, so the process ends within systemd's
/// `TimeoutStopSec` (what was not accepted stays in the file and the checkpoint).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(7);

/// Runs the daemon until `shutdown` stops it.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let state_dir = config.source.state_dir.clone();

    // Start-up: checkpoint, AWS clients, the source. Any failure here ends the process before READY=1,
    // and a corrupt checkpoint is left as it is for the operator.
    checkpoint::check_state_dir(&state_dir)?;
    let loaded = checkpoint::load(&state_dir)?;
    let sdk = crate::aws::sdk_config(&config.aws).await;
    let host = Host::discover(&sdk).await;
    let stream = host.stream_name(&config.logs.log_stream_name)?;
    let logs = LogsSink::with_stream_name(&sdk, &config.logs, stream.clone());
    let metrics = match config.metrics.transport {
        MetricsTransport::PutMetricData => Some(MetricsSink::new(&sdk)),
        MetricsTransport::Emf => None,
    };
    run_with(config, shutdown, notifier, loaded, host, logs, metrics).await
}

/// [`run`] with the sinks and the host given (tests give sinks with fast retries). `metrics` publishes the
/// minutes with PutMetricData; without it they ride in the logs batches as EMF events.
pub async fn run_with(
    config: Config,
    shutdown: Shutdown,
    notifier: Notifier,
    loaded: checkpoint::Loaded,
    host: Host,
    logs: LogsSink,
    metrics: Option<MetricsSink>,
) -> anyhow::Result<()> {
    let watchdog = crate::health::watchdog_interval();
    let state_dir = config.source.state_dir.clone();
    let mut rules = Rules::from_config(&config);
    // The host's identity, with its stream: distinct per daemon even where hosts share a machine id (an
    // image cloned without a new one, a simulated fleet on one machine).
    let identity = format!("{}/{}", host.stable_id(), logs.stream());
    rules.publish_offset_secs = publish_offset(&identity, config.metrics.publish_spread);
    let metric_names = rules.targets.iter().map(|t| t.name.clone()).collect();
    let stats = Arc::new(Stats::new(metric_names));
    let mut sinks = vec![logs.stats()];
    sinks.extend(metrics.as_ref().map(MetricsSink::stats));
    stats.watch_sinks(sinks);

    let mut ledger = Ledger::new(&loaded, rules, SERVER_CLOCK.now_secs());
    let followed = SourceKind::followed(ledger.source(), ledger.shipped_position(), &config.source);
    let kind = SourceKind::choose(&config.source, followed);
    let resume = ledger.shipped_position().cloned();
    let source = Source::open(
        &config.source,
        kind,
        ledger.source(),
        resume,
        loaded.written_at,
    )?;
    let mut store =
        Store::open(&state_dir, &loaded).context("cannot open the checkpoint for writing")?;
    let mut records = ledger.follow(kind);
    // A stream with no checkpoint yet starts where the source starts; record that before anything is read,
    // so that a crash before the first batch does not move a `start_position = "end"` past unshipped lines.
    let mut announce_start = false;
    if !resumes(ledger.shipped_position(), &source) {
        match source.current_position() {
            Some(start) => records.extend(ledger.shipped(Some(start), &Tally::new(&config).take())),
            None => announce_start = true,
        }
    }
    store
        .append(&records)
        .context("cannot write the checkpoint")?;

    let what = source.describe();
    stats.set_state(if source.waiting_for_file() {
        format!("waiting for {what} to appear")
    } else {
        format!("following {what}")
    });
    let pace = logs.pace();
    let reader = Reader::new(
        source,
        Tally::new(&config),
        announce_start,
        pace,
        Arc::clone(&stats),
    );
    let (ship_tx, ship_rx) = mpsc::channel(SHIP_QUEUE);
    let (keeper_tx, keeper_rx) = mpsc::channel(KEEPER_QUEUE);
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let keeper_beat = Arc::new(Beat::default());
    let mut liveness = Liveness::default();
    liveness.watch("the checkpoint writer", Arc::clone(&keeper_beat));

    let mut reader = tokio::spawn(reader.run(ship_tx, shutdown.clone()));
    let (outlet, minutes, publisher) = match metrics {
        Some(sink) => {
            let (answers_tx, answers_rx) = mpsc::channel(ANSWERS_QUEUE);
            let task = tokio::spawn(keeper::publish(
                sink,
                publish_rx,
                answers_tx,
                shutdown.clone(),
            ));
            (Outlet::Publisher(publish_tx, answers_rx), None, Some(task))
        }
        None => (Outlet::Shipper(publish_tx), Some(publish_rx), None),
    };
    let shipper = tokio::spawn(
        Shipper {
            sink: logs,
            batches: ship_rx,
            keeper: keeper_tx,
            minutes,
            recount: Tally::new(&config),
            stats: Arc::clone(&stats),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let keeper = Keeper {
        ledger,
        store: Some(store),
        stats: Arc::clone(&stats),
        beat: keeper_beat,
        shutdown: shutdown.clone(),
    };
    let keeper = tokio::spawn(keeper.run(keeper_rx, outlet));

    // The log's tail tells at once when the configured patterns cannot fit its format.
    let sample = crate::source::tail::sample(&config.source.file_path, STARTUP_SAMPLE_BYTES);
    for warning in crate::detector::startup_check(&config, kind, &sample) {
        warn!("{warning}");
    }

    // READY=1: config, checkpoint and the first open succeeded (a missing file is being waited for).
    notifier.ready(&stats.status());
    info!(source = %what, state_dir = %state_dir.display(), "sshwatch running");
    let health = tokio::spawn(crate::health::run(
        Arc::clone(&stats),
        liveness,
        notifier,
        watchdog,
        shutdown.clone(),
    ));

    // The reader ends only when told to stop (or when the shipper is gone, which needs a stop first): if
    // it ends before, something is broken; stop in order and end with an error so that systemd restarts.
    let ended = tokio::select! {
        biased;
        () = shutdown.stopping() => None,
        r = &mut reader => Some(r),
    };
    let broken = match &ended {
        // Told to stop: the reader ends because of that.
        Some(_) if shutdown.is_stopping() => None,
        Some(Ok(())) => Some("the reader stopped".to_string()),
        Some(Err(e)) => Some(format!("the reader failed: {e}")),
        None => None,
    };
    if let Some(why) = &broken {
        error!(reason = %why, "stopping: the pipeline broke ({why}); ending so that systemd restarts sshwatch");
    }
    info!("stopping: flushing the last batch and minute");
    notifier.stopping("stopping: flushing the last batch and minute");
    shutdown.stop();
    let give_up = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GIVE_UP_AFTER).await;
            shutdown.abort();
        })
    };

    if ended.is_none() {
        let _ = reader.await;
    }
    let _ = shipper.await;
    if let Some(publisher) = publisher {
        let _ = publisher.await;
    }
    let keeper_result = keeper.await.context("the keeper task failed")?;
    let _ = health.await;
    give_up.abort();
    if shutdown.is_aborted() {
        let failing: Vec<String> = stats.sinks().iter().filter_map(|s| s.failing()).collect();
        let why = if failing.is_empty() {
            "its last calls did not finish in time".to_string()
        } else {
            format!("still failing: {}", failing.join("; "))
        };
        warn!(
            reason = %why,
            "stopped before CloudWatch accepted everything ({why}); the rest stays in the log and the checkpoint and is sent after the next start"
        );
    }
    info!(status = %stats.status(), "stopped");
    keeper_result?;
    match broken {
        Some(why) => anyhow::bail!("{why} unexpectedly"),
        None => Ok(()),
    }
}

/// Whether the checkpoint's position is one the source resumes from (the same file, or a journal cursor
/// for the journal).
fn resumes(shipped: Option<&Position>, source: &Source) -> bool {
    match (shipped, source) {
        (Some(Position::File { path, .. }), Source::File(f)) => **path == *f.path(),
        (Some(Position::Journal { .. }), Source::Journal(_)) => true,
        _ => false,
    }
}

/// This host's publish offset: a fixed second in `[0, spread)` derived from its stable identity, so the
/// hosts of a fleet spread their PutMetricData calls evenly over the spread.
pub fn publish_offset(identity: &str, spread: Duration) -> i64 {
    let spread = spread.as_secs();
    if spread == 0 {
        return 0;
    }
    // 64-bit FNV-1a: stable across builds and platforms.
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::try_from(hash % spread).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_spread_over_the_window() {
        let spread = Duration::from_secs(30);
        assert_eq!(
            publish_offset("i-0123456789abcdef0", spread),
            publish_offset("i-0123456789abcdef0", spread)
        );
        assert_eq!(publish_offset("anything", Duration::ZERO), 0);
        let mut buckets = [0u32; 30];
        for i in 0..30_000 {
            let o = publish_offset(&format!("i-{i:017x}"), spread);
            assert!((0..30).contains(&o));
            buckets[o as usize] += 1;
        }
        // Uniform: every second gets close to a thirtieth of the hosts.
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
    }
}
