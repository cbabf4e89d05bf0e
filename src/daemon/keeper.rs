//! The keeper task, the only writer of the checkpoint, and the publisher task it feeds.
//!
//! The keeper records each accepted batch before the shipper may send the next one, hands due minutes to
//! the publisher and records its answers, and at shutdown (once the shipper is done) publishes every
//! pending minute. A record that cannot be written is retried, with an ERROR, until it is: shipping waits
//! meanwhile, so nothing is accepted that the checkpoint could not hold.
//!
//! The publisher sends minutes through the configured [`Publisher`] and answers whether CloudWatch
//! accepted them.

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
use crate::sink::publish::Publisher;
use crate::source::checkpoint::{Record, Store};
use crate::time::SERVER_CLOCK;

/// How often the keeper looks for minutes to publish.
const TICK: Duration = Duration::from_millis(500);

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

    /// Runs until the shipper is done and every minute is published (or shutdown aborted).
    pub(crate) async fn run(
        mut self,
        mut from_shipper: mpsc::Receiver<ToKeeper>,
        publish: mpsc::Sender<Vec<DueMinute>>,
        mut answers: mpsc::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut draining = false;
        loop {
            tokio::select! {
                msg = from_shipper.recv(), if !draining => match msg {
                    Some(ToKeeper::Shipped(accepted)) => {
                        let Accepted { end, counts, recorded } = *accepted;
                        for (_, c) in counts.minutes() {
                            for (i, n) in c.matches.iter().enumerate() {
                                self.stats.add_matches(i, *n);
                            }
                        }
                        let records = self.ledger.shipped(end, &counts);
                        if self.record(records).await.is_err() {
                            break;
                        }
                        let _ = recorded.send(());
                    }
                    Some(ToKeeper::Mark { read_until }) => self.ledger.mark(read_until),
                    None => draining = true,
                },
                answer = answers.recv(), if self.ledger.publishing() => {
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
                _ = tick.tick() => {}
            }
            let now = SERVER_CLOCK.now_secs();
            if !self.ledger.publishing() {
                let next = if draining {
                    self.ledger.next_pending()
                } else {
                    self.ledger.next_due(now)
                };
                let handed = match next {
                    Some(minutes) => publish.send(minutes).await.is_ok(),
                    None if draining => break,
                    None => true,
                };
                if !handed {
                    let records = self.ledger.returned();
                    let _ = self.record(records).await;
                    break;
                }
            }
            self.stats
                .minutes_due
                .store(self.ledger.due(now) as u64, Ordering::Relaxed);
        }
        if self.ledger.publishing() {
            let records = self.ledger.returned();
            let _ = self.record(records).await;
        }
        // Leave a compact checkpoint behind: the next start reads one snapshot.
        let snapshot = self.ledger.snapshot();
        self.blocking(move |store| store.compact(snapshot)).await
    }
}

/// The publisher task: publishes what the keeper hands it, one set of minutes at a time.
pub(crate) async fn publish(
    mut publisher: Publisher,
    mut minutes: mpsc::Receiver<Vec<DueMinute>>,
    answers: mpsc::Sender<bool>,
    shutdown: Shutdown,
) {
    while let Some(due) = minutes.recv().await {
        let ok = publisher.publish(&due, &shutdown).await.is_ok();
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
