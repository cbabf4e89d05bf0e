//! The keeper task, the only writer of the checkpoint, and the publisher task it feeds.
//!
//! The keeper records each accepted batch before the shipper may send the next one, hands due minutes to
//! their [`Outlet`] and records the outcome, and at shutdown (once the reader's batches are shipped)
//! publishes every pending minute. A record that cannot be written is retried, with an ERROR, until it
//! is: shipping waits meanwhile, so nothing is accepted that the checkpoint could not hold.
//!
//! It sleeps until the next minute closes or a message comes, not on a fixed tick. With the EMF
//! transport minutes ride in the shipper's batches; with PutMetricData the publisher task sends them
//! and answers whether CloudWatch accepted them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::daemon::ledger::{DueMinute, Ledger};
use crate::daemon::shipper::{Accepted, ToKeeper};
use crate::health::{Beat, Stats};
use crate::shutdown::{Aborted, Shutdown};
use crate::sink::Backoff;
use crate::sink::MetricsSink;
use crate::source::checkpoint::{Record, Store};
use crate::time::SERVER_CLOCK;

/// Where due minutes go.
#[derive(Debug)]
pub(crate) enum Outlet {
    /// EMF: to the shipper, to ride in its next batch; the acceptance comes back with the batch.
    Shipper(mpsc::Sender<Vec<DueMinute>>),
    /// PutMetricData: to the publisher task, which answers whether CloudWatch accepted them.
    Publisher(mpsc::Sender<Vec<DueMinute>>, mpsc::Receiver<bool>),
}

/// The longest a checkpoint write (an fsync) may take before the watchdog calls the keeper hung.
const STORE_DEADLINE: Duration = Duration::from_secs(60);

/// Waits between attempts to write a record that failed: 100 ms doubling to 5 s.
const STORE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(5),
};

/// Where the keeper writes.
#[derive(Debug)]
pub(crate) struct Keeper {
    pub(crate) ledger: Ledger,
    /// `None` only while a write runs on the blocking pool.
    pub(crate) store: Option<Store>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) beat: Arc<Beat>,
    pub(crate) shutdown: Shutdown,
}

impl Keeper {
    /// Appends `records`, off the async thread (it syncs), trying again until it succeeds; compacts
    /// the log when it outgrew the snapshot. `Err` only when shutdown aborts first.
    pub(crate) async fn record(&mut self, records: Vec<Record>) -> Result<(), Aborted> {
        if records.is_empty() {
            return Ok(());
        }
        let mut attempt = 0u32;
        loop {
            match self.write(records.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    let delay = STORE_BACKOFF.ceiling(attempt);
                    attempt = attempt.saturating_add(1);
                    error!(
                        error = %format!("{e:#}"),
                        attempt,
                        "cannot write the checkpoint: {e:#}; shipping waits until it can, trying again in {:.1} s",
                        delay.as_secs_f64()
                    );
                    self.shutdown.sleep(delay).await?;
                }
            }
        }
        if self.store.as_ref().is_some_and(Store::should_compact) {
            let snapshot = self.ledger.snapshot();
            if let Err(e) = self.blocking(move |store| store.compact(snapshot)).await {
                // The log keeps every record: nothing is lost, it only grows until a compaction works.
                error!(error = %format!("{e:#}"), "cannot compact the checkpoint: {e:#}; the log keeps growing until it can");
            }
        }
        Ok(())
    }

    async fn write(&mut self, records: Vec<Record>) -> anyhow::Result<()> {
        self.blocking(move |store| store.append(&records)).await
    }

    /// Runs `f` on the store in tokio's blocking pool, under the keeper's promise to the watchdog.
    async fn blocking(
        &mut self,
        f: impl FnOnce(&mut Store) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // The store moves to the blocking thread and back.
        let Some(mut store) = self.store.take() else {
            anyhow::bail!("the checkpoint store was lost to an earlier failure");
        };
        self.beat.expect_within(STORE_DEADLINE);
        let joined = tokio::task::spawn_blocking(move || {
            let result = f(&mut store);
            (store, result)
        })
        .await;
        self.beat.idle();
        let (store, result) = joined.context("the checkpoint writer panicked")?;
        self.store = Some(store);
        result
    }

    /// Runs until the reader's batches are shipped and every minute is published (or shutdown aborted).
    pub(crate) async fn run(
        mut self,
        mut from_shipper: mpsc::Receiver<ToKeeper>,
        mut outlet: Outlet,
    ) -> anyhow::Result<()> {
        let mut draining = false;
        let mut shipper_gone = false;
        loop {
            let wake = self.next_wake();
            let answering = matches!(outlet, Outlet::Publisher(..)) && self.ledger.publishing();
            tokio::select! {
                msg = from_shipper.recv(), if !shipper_gone => match msg {
                    Some(ToKeeper::Shipped(accepted)) => {
                        if self.shipped(*accepted).await.is_err() {
                            break;
                        }
                    }
                    Some(ToKeeper::Mark { read_until }) => self.ledger.mark(read_until),
                    Some(ToKeeper::Drained) => draining = true,
                    None => {
                        shipper_gone = true;
                        draining = true;
                    }
                },
                answer = answer(&mut outlet), if answering => {
                    let records = if answer == Some(true) {
                        self.stats.add(&self.stats.minutes_published, 1);
                        self.ledger.published()
                    } else {
                        self.ledger.returned()
                    };
                    if self.record(records).await.is_err() || (draining && answer != Some(true)) {
                        break;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = SERVER_CLOCK.now_secs();
            if self.ledger.publishing() {
                // EMF minutes ride with the shipper: without it they never come back.
                if shipper_gone && matches!(outlet, Outlet::Shipper(_)) {
                    break;
                }
            } else {
                let next = if draining {
                    self.ledger.next_pending()
                } else {
                    self.ledger.next_due(now)
                };
                let handed = match (next, &outlet) {
                    (Some(_), Outlet::Shipper(_)) if shipper_gone => false,
                    (Some(minutes), Outlet::Shipper(tx) | Outlet::Publisher(tx, _)) => {
                        tx.send(minutes).await.is_ok()
                    }
                    (None, _) if draining => break,
                    (None, _) => true,
                };
                if !handed {
                    break;
                }
            }
            self.stats
                .minutes_due
                .store(self.ledger.due(now) as u64, Ordering::Relaxed);
        }
        // The shipper ends once it has no minutes to wait for.
        drop(outlet);
        if self.ledger.publishing() {
            let records = self.ledger.returned();
            let _ = self.record(records).await;
        }
        // Leave a compact checkpoint behind: the next start reads one snapshot.
        let snapshot = self.ledger.snapshot();
        self.blocking(move |store| store.compact(snapshot)).await
    }

    /// Records an accepted batch (and the minutes that rode in it), then lets the shipper go on.
    async fn shipped(&mut self, accepted: Accepted) -> Result<(), Aborted> {
        let Accepted {
            end,
            counts,
            published,
            recorded,
        } = accepted;
        for (_, c) in counts.minutes() {
            for (i, n) in c.matches.iter().enumerate() {
                self.stats.add_matches(i, *n);
            }
        }
        let mut records = Vec::new();
        if published && self.ledger.publishing() {
            self.stats.add(&self.stats.minutes_published, 1);
            records.extend(self.ledger.published());
        }
        records.extend(self.ledger.shipped(end, &counts));
        self.record(records).await?;
        let _ = recorded.send(());
        Ok(())
    }

    /// When to look again for minutes to publish: when the next one closes (a message may come first).
    fn next_wake(&self) -> tokio::time::Instant {
        let now_ms = crate::time::now_ms().saturating_add(SERVER_CLOCK.correction_ms());
        let closes_ms = self
            .ledger
            .next_close(crate::time::secs_of_ms(now_ms))
            .saturating_mul(1000);
        let wait = u64::try_from(closes_ms.saturating_sub(now_ms)).unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_millis(wait.clamp(MIN_WAKE_MS, MAX_WAKE_MS))
    }
}

/// The keeper looks again no sooner than this (a minute due but held back by the horizon waits for a
/// message, not a busy loop) and no later than this.
const MIN_WAKE_MS: u64 = 200;
const MAX_WAKE_MS: u64 = 60_000;

/// The publisher's next answer; never with the EMF outlet.
async fn answer(outlet: &mut Outlet) -> Option<bool> {
    match outlet {
        Outlet::Publisher(_, answers) => answers.recv().await,
        Outlet::Shipper(_) => std::future::pending().await,
    }
}

/// The publisher task (PutMetricData): publishes what the keeper hands it, one set of minutes at a time.
pub(crate) async fn publish(
    sink: MetricsSink,
    mut minutes: mpsc::Receiver<Vec<DueMinute>>,
    answers: mpsc::Sender<bool>,
    shutdown: Shutdown,
) {
    while let Some(due) = minutes.recv().await {
        let ok = sink.put(&due, &shutdown).await.is_ok();
        if !ok {
            info!(
                minutes = due.len(),
                "gave up publishing at shutdown; the counts are published after the next start"
            );
        }
        if answers.send(ok).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio::sync::oneshot;

    use super::*;
    use crate::config::Config;
    use crate::counter::{Counter, Rules, SavedMinute};
    use crate::daemon::shipper::Accepted;
    use crate::source::Position;
    use crate::source::checkpoint::{self, Checkpoint, Loaded};

    /// A running keeper, the ends of its channels, and its store's failure switch.
    type Running = (
        tokio::task::JoinHandle<anyhow::Result<()>>,
        mpsc::Sender<ToKeeper>,
        mpsc::Receiver<Vec<DueMinute>>,
        mpsc::Sender<bool>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    /// A keeper of `loaded` in `dir`. No zeros and no heartbeat, so only minutes with counts are
    /// published.
    fn start(dir: &std::path::Path, loaded: &Loaded) -> Running {
        let config = Config::from_toml_str(
            "[metrics]\npublish_zeros = false\nheartbeat_metric = \"\"\n",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir, loaded).unwrap_or_else(|e| panic!("{e:#}"));
        let failing = Arc::clone(&store.failing);
        let keeper = Keeper {
            ledger: Ledger::new(loaded, Rules::from_config(&config), crate::time::now_secs()),
            store: Some(store),
            stats: Arc::new(Stats::new(vec![])),
            beat: Arc::new(Beat::default()),
            shutdown: Shutdown::new(),
        };
        let (to_keeper, from_shipper) = mpsc::channel(1);
        let (publish, minutes) = mpsc::channel(1);
        let (answer, answers) = mpsc::channel(1);
        let task = tokio::spawn(keeper.run(from_shipper, Outlet::Publisher(publish, answers)));
        (task, to_keeper, minutes, answer, failing)
    }

    fn position(offset: u64) -> Position {
        Position::Journal {
            cursor: format!("s=test;i={offset}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_acknowledged_once_recorded_and_a_failing_write_holds_shipping() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (task, to_keeper, _minutes, _answer, failing) = start(dir.path(), &Loaded::default());
        failing.store(true, Ordering::Relaxed);
        let (recorded, mut done) = oneshot::channel();
        let accepted = Accepted {
            end: Some(position(7)),
            counts: Counter::new(Rules::from_config(&Config::defaults()), 0),
            published: false,
            recorded,
        };
        let sent = to_keeper.send(ToKeeper::Shipped(Box::new(accepted))).await;
        assert!(sent.is_ok());
        // A minute of failing writes: the shipper is not told, so it sends nothing more.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            done.try_recv().is_err(),
            "acknowledged before it was recorded"
        );
        failing.store(false, Ordering::Relaxed);
        let answered = tokio::time::timeout(Duration::from_secs(10), done).await;
        assert!(matches!(answered, Ok(Ok(()))), "{answered:?}");
        let loaded = checkpoint::load(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            loaded.records.iter().any(|r| matches!(r,
                Record::Shipped { shipped: Some(p), .. } if *p == position(7))),
            "{:?}",
            loaded.records
        );
        drop(to_keeper);
        assert!(matches!(task.await, Ok(Ok(()))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_minute_leaves_the_checkpoint_only_when_cloudwatch_accepted_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let an_hour_ago = crate::time::minute_of(crate::time::now_secs() - 3600);
        let mut cp = Checkpoint::new();
        cp.pending_minutes = vec![SavedMinute {
            minute: an_hour_ago,
            values: vec![("SSH".into(), "InvalidUserMetrics".into(), 3.0)],
            lines: 3,
        }];
        let loaded = Loaded {
            checkpoint: cp,
            ..Loaded::default()
        };
        let (task, to_keeper, mut minutes, answer, _) = start(dir.path(), &loaded);
        // Not accepted (a shutdown abandoned the call): handed out again.
        let due = minutes.recv().await.unwrap_or_default();
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), [an_hour_ago]);
        assert!(answer.send(false).await.is_ok());
        let again = minutes.recv().await.unwrap_or_default();
        assert_eq!(again, due);
        assert!(answer.send(true).await.is_ok());
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(to_keeper);
        assert!(matches!(task.await, Ok(Ok(()))));
        let restarted = Ledger::new(
            &checkpoint::load(dir.path()).unwrap_or_else(|e| panic!("{e:#}")),
            Rules::from_config(&Config::defaults()),
            crate::time::now_secs(),
        );
        assert!(restarted.snapshot().pending_minutes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_every_pending_minute_is_published_the_open_one_too() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (task, to_keeper, mut minutes, answer, _) = start(dir.path(), &Loaded::default());
        let now = crate::time::now_secs();
        let mut counts = Counter::new(Rules::from_config(&Config::defaults()), now);
        counts.add_line(now);
        counts.add_match(now, 0, 1, Some(1.0));
        let (recorded, done) = oneshot::channel();
        let sent = to_keeper
            .send(ToKeeper::Shipped(Box::new(Accepted {
                end: Some(position(1)),
                counts,
                published: false,
                recorded,
            })))
            .await;
        assert!(sent.is_ok() && done.await.is_ok());
        assert!(to_keeper.send(ToKeeper::Drained).await.is_ok());
        let due = minutes.recv().await.unwrap_or_default();
        assert_eq!(
            due.iter().map(|d| d.0).collect::<Vec<_>>(),
            [crate::time::minute_of(now)]
        );
        assert!(answer.send(true).await.is_ok());
        assert!(matches!(task.await, Ok(Ok(()))));
        let loaded = checkpoint::load(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(loaded.checkpoint.pending_minutes.is_empty());
        assert!(loaded.records.is_empty(), "compacted at the end");
    }

    #[tokio::test(start_paused = true)]
    async fn emf_minutes_ride_with_the_shipper_and_leave_with_its_batch() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let an_hour_ago = crate::time::minute_of(crate::time::now_secs() - 3600);
        let mut cp = Checkpoint::new();
        cp.pending_minutes = vec![SavedMinute {
            minute: an_hour_ago,
            values: vec![("SSH".into(), "InvalidUserMetrics".into(), 3.0)],
            lines: 3,
        }];
        let loaded = Loaded {
            checkpoint: cp,
            ..Loaded::default()
        };
        let config = Config::from_toml_str(
            "[metrics]\npublish_zeros = false\nheartbeat_metric = \"\"\n",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let keeper = Keeper {
            ledger: Ledger::new(
                &loaded,
                Rules::from_config(&config),
                crate::time::now_secs(),
            ),
            store: Some(Store::open(dir.path(), &loaded).unwrap_or_else(|e| panic!("{e:#}"))),
            stats: Arc::new(Stats::new(vec![])),
            beat: Arc::new(Beat::default()),
            shutdown: Shutdown::new(),
        };
        let (to_keeper, from_shipper) = mpsc::channel(1);
        let (to_shipper, mut minutes) = mpsc::channel(1);
        let task = tokio::spawn(keeper.run(from_shipper, Outlet::Shipper(to_shipper)));
        let due = minutes.recv().await.unwrap_or_default();
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), [an_hour_ago]);
        // The batch that carried them is accepted: the minute and the batch are recorded together.
        let (recorded, done) = oneshot::channel();
        let accepted = Accepted {
            end: Some(position(3)),
            counts: Counter::new(Rules::from_config(&config), 0),
            published: true,
            recorded,
        };
        assert!(
            to_keeper
                .send(ToKeeper::Shipped(Box::new(accepted)))
                .await
                .is_ok()
        );
        assert!(done.await.is_ok());
        let loaded = checkpoint::load(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
        let restarted = Ledger::new(
            &loaded,
            Rules::from_config(&config),
            crate::time::now_secs(),
        );
        assert!(restarted.snapshot().pending_minutes.is_empty());
        assert_eq!(restarted.shipped_position(), Some(&position(3)));
        // Drained with nothing pending: the keeper ends and closes the minutes channel.
        assert!(to_keeper.send(ToKeeper::Drained).await.is_ok());
        assert!(matches!(task.await, Ok(Ok(()))));
        assert!(minutes.recv().await.is_none());
    }
}
