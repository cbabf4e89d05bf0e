//! The shipper task: one PutLogEvents at a time, in order. Tells the keeper about each accepted batch and
//! waits until the checkpoint holds it before the next call, so at any instant at most one batch is
//! accepted but not recorded.
//!
//! With the EMF transport, the minutes the keeper hands over ride at the head of the next batch of lines
//! ([`emf::with_minutes`]); when no batch comes within the flush interval, they go alone. Their
//! acceptance is the batch's, recorded with it.
//!
//! A batch's counts are what CloudWatch stored: when it refused events on their own or skipped some
//! (outside its time window), the batch is counted again from the events it kept, with the same
//! [`Tally`] rules the reader used, as the metric filters of the seed setup would have counted them.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, info};

use crate::counter::Counter;
use crate::daemon::ledger::DueMinute;
use crate::daemon::reader::{Batch, ToShipper};
use crate::health::Stats;
use crate::shutdown::Shutdown;
use crate::sink::{EventBatch, LogsSink, emf};
use crate::tally::Tally;
use crate::time::{SERVER_CLOCK, now_ms, secs_of_ms};

/// What the shipper hands the keeper.
#[derive(Debug)]
pub(crate) enum ToKeeper {
    /// CloudWatch Logs accepted lines (or reading starts somewhere, with no lines), and maybe minutes.
    Shipped(Box<Accepted>),
    /// See [`ToShipper::Mark`].
    Mark { read_until: i64 },
    /// Every batch of the reader is shipped and the reader is done: the keeper may publish the rest.
    Drained,
}

/// Lines CloudWatch Logs accepted.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// Where reading resumes after them.
    pub(crate) end: Option<crate::source::Position>,
    /// Their counts, as CloudWatch stored them.
    pub(crate) counts: Counter,
    /// The minutes the keeper handed over rode in this batch: they are published.
    pub(crate) published: bool,
    /// Answered once the checkpoint holds them.
    pub(crate) recorded: oneshot::Sender<()>,
}

/// Minutes handed over by the keeper, waiting for a batch to ride in.
struct Held {
    minutes: Vec<DueMinute>,
    /// Sent alone at this instant if no batch came.
    until: Instant,
}

/// The shipper's ends and tools.
pub(crate) struct Shipper {
    pub(crate) sink: LogsSink,
    pub(crate) batches: mpsc::Receiver<ToShipper>,
    pub(crate) keeper: mpsc::Sender<ToKeeper>,
    /// Minutes to publish as EMF events; `None` with the PutMetricData transport.
    pub(crate) minutes: Option<mpsc::Receiver<Vec<DueMinute>>>,
    pub(crate) recount: Tally,
    pub(crate) stats: Arc<Stats>,
    pub(crate) shutdown: Shutdown,
}

impl Shipper {
    /// Runs until the reader is done and the keeper has no more minutes, or until shutdown aborts a call.
    pub(crate) async fn run(mut self) {
        let pace = self.sink.pace();
        let mut held: Option<Held> = None;
        let mut reader_done = false;
        loop {
            let until = held.as_ref().map(|h| h.until);
            let taking = held.is_none() && self.minutes.is_some();
            tokio::select! {
                biased;
                msg = self.batches.recv(), if !reader_done => match msg {
                    Some(ToShipper::Mark { read_until }) => {
                        if self.keeper.send(ToKeeper::Mark { read_until }).await.is_err() {
                            return;
                        }
                    }
                    Some(ToShipper::Start(at)) => {
                        let counts = self.recount.take();
                        if !self.record(Some(at), counts, false, 0).await {
                            return;
                        }
                    }
                    Some(ToShipper::Batch(batch)) => {
                        if !self.ship(*batch, &mut held).await {
                            return;
                        }
                    }
                    None => {
                        reader_done = true;
                        if self.keeper.send(ToKeeper::Drained).await.is_err() || self.minutes.is_none() {
                            return;
                        }
                        if let Some(h) = &mut held {
                            h.until = Instant::now();
                        }
                    }
                },
                minutes = recv(&mut self.minutes), if taking => match minutes {
                    Some(minutes) => {
                        // Once the reader is done, nothing comes to ride in: send at once.
                        let until = if reader_done { Instant::now() } else { Instant::now() + pace.interval() };
                        held = Some(Held { minutes, until });
                    }
                    None => return,
                },
                () = sleep_until(until) => {
                    if let Some(h) = held.take()
                        && !self.ship_minutes(h.minutes).await
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Ships a batch of lines, with the held minutes at its head when they fit. `false` when the daemon
    /// must stop (a call given up at shutdown, or the keeper gone).
    async fn ship(&mut self, batch: Batch, held: &mut Option<Held>) -> bool {
        let Batch {
            events,
            end,
            counts,
        } = batch;
        let now = now_ms().saturating_add(SERVER_CLOCK.correction_ms());
        let riding = held
            .as_ref()
            .and_then(|h| emf::with_minutes(&h.minutes, Some(&events), now));
        let (events, head) = match riding {
            Some((with, head)) => {
                *held = None;
                (with, head)
            }
            None => (events, 0),
        };
        let Some(counts) = self.put(&events, head, counts).await else {
            return false;
        };
        let lines = lines_in(&events, head);
        self.record(end, counts, head > 0, lines).await
    }

    /// Ships minutes alone.
    async fn ship_minutes(&mut self, minutes: Vec<DueMinute>) -> bool {
        let now = now_ms().saturating_add(SERVER_CLOCK.correction_ms());
        let Some((events, head)) = emf::with_minutes(&minutes, None, now) else {
            error!(
                minutes = minutes.len(),
                "the metrics of {} minute(s) do not fit in one PutLogEvents call; they are not published",
                minutes.len()
            );
            let counts = self.recount.take();
            return self.record(None, counts, true, 0).await;
        };
        let counts = self.recount.take();
        let Some(counts) = self.put(&events, head, counts).await else {
            return false;
        };
        self.record(None, counts, true, 0).await
    }

    /// Sends `events` (the first `head` of them EMF events) and returns the counts of the lines
    /// CloudWatch stored; `None` when shutdown gave up on the call.
    async fn put(&mut self, events: &EventBatch, head: usize, counts: Counter) -> Option<Counter> {
        let outcome = match self.sink.put(events, &self.shutdown).await {
            Ok(outcome) => outcome,
            Err(_) => {
                info!(
                    events = events.len(),
                    "gave up on a logs batch at shutdown; it is sent after the next start"
                );
                return None;
            }
        };
        let not_stored = outcome.not_stored();
        if not_stored.iter().any(|&i| i < head) {
            error!(
                "CloudWatch did not store the metrics event of a minute (see the refusal above); that minute's counts are not published"
            );
        }
        Some(if not_stored.is_empty() {
            counts
        } else {
            count_stored(events, head, &not_stored, &mut self.recount)
        })
    }

    /// Tells the keeper about an acceptance and waits until the checkpoint holds it. `false` when the
    /// keeper is gone.
    async fn record(
        &mut self,
        end: Option<crate::source::Position>,
        counts: Counter,
        published: bool,
        lines: u64,
    ) -> bool {
        let (recorded, done) = oneshot::channel();
        let sent = self
            .keeper
            .send(ToKeeper::Shipped(Box::new(Accepted {
                end,
                counts,
                published,
                recorded,
            })))
            .await;
        if sent.is_err() || done.await.is_err() {
            return false;
        }
        self.stats.add(&self.stats.lines_shipped, lines);
        true
    }
}

async fn recv(minutes: &mut Option<mpsc::Receiver<Vec<DueMinute>>>) -> Option<Vec<DueMinute>> {
    match minutes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Lines in `events` after its first `head` (EMF events): every event but the pieces that go on in the
/// next one.
fn lines_in(events: &EventBatch, head: usize) -> u64 {
    (head..events.len())
        .filter(|&i| !events.continues(i))
        .count() as u64
}

/// The counts of the lines of `events` (after its first `head`, EMF events) CloudWatch stored: all but
/// the `not_stored` indices, sorted.
fn count_stored(
    events: &EventBatch,
    head: usize,
    not_stored: &[usize],
    tally: &mut Tally,
) -> Counter {
    for (i, (timestamp_ms, message)) in events.iter().enumerate().skip(head) {
        if not_stored.binary_search(&i).is_ok() {
            continue;
        }
        tally.count_event(
            message.as_bytes(),
            secs_of_ms(timestamp_ms),
            !events.continues(i),
        );
    }
    tally.take()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn what_cloudwatch_did_not_store_is_not_counted() {
        let config = Config::defaults();
        let mut tally = Tally::new(&config);
        let mut events = EventBatch::new();
        let t = 1_700_000_040_000;
        for user in ["a", "b", "c"] {
            events.push(
                t,
                &format!("Dec  9 05:20:36 host sshd[1]: Invalid user {user} from 1.2.3.4 port 5"),
            );
        }
        let counts = count_stored(&events, 0, &[1], &mut tally);
        let (_, c) = counts.minutes().next().expect("a minute");
        assert_eq!(c.lines, 2);
        assert_eq!(c.matches[0], 2);
        assert_eq!(lines_in(&events, 0), 3);
        // Behind a head of EMF events, which are no lines and never counted.
        let minutes = vec![(60, vec![("SSH".into(), "InvalidUserMetrics".into(), 9.0)])];
        let (with, head) = emf::with_minutes(&minutes, Some(&events), 0).expect("fits");
        let counts = count_stored(&with, head, &[head + 1], &mut tally);
        let (_, c) = counts.minutes().next().expect("a minute");
        assert_eq!((c.lines, c.matches[0]), (2, 2));
        assert_eq!(lines_in(&with, head), 3);
    }
}
