//! The shipper task: one PutLogEvents at a time, in order. Tells the keeper about each accepted batch and
//! waits until the checkpoint holds it before the next call, so at any instant at most one batch is
//! accepted but not recorded.
//!
//! A batch's counts are what CloudWatch stored: when it refused events on their own or skipped some
//! (outside its time window), the batch is counted again from the events it kept, with the same
//! [`Tally`] rules the reader used, as the metric filters of the seed setup would have counted them.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::counter::Counter;
use crate::daemon::reader::{Batch, ToShipper};
use crate::health::Stats;
use crate::shutdown::Shutdown;
use crate::sink::{EventBatch, LogsSink};
use crate::tally::Tally;
use crate::time::secs_of_ms;

/// What the shipper hands the keeper.
#[derive(Debug)]
pub(crate) enum ToKeeper {
    /// CloudWatch Logs accepted lines (or reading starts somewhere, with no lines).
    Shipped(Box<Accepted>),
    /// See [`ToShipper::Mark`].
    Mark { read_until: i64 },
}

/// Lines CloudWatch Logs accepted.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// Where reading resumes after them.
    pub(crate) end: Option<crate::source::Position>,
    /// Their counts, as CloudWatch stored them.
    pub(crate) counts: Counter,
    /// Answered once the checkpoint holds them.
    pub(crate) recorded: oneshot::Sender<()>,
}

/// Runs until the reader is done and its queue empty, or until shutdown aborts a call.
pub(crate) async fn run(
    mut sink: LogsSink,
    mut batches: mpsc::Receiver<ToShipper>,
    keeper: mpsc::Sender<ToKeeper>,
    mut recount: Tally,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) {
    while let Some(msg) = batches.recv().await {
        let (end, counts, lines) = match msg {
            ToShipper::Mark { read_until } => {
                if keeper.send(ToKeeper::Mark { read_until }).await.is_err() {
                    return;
                }
                continue;
            }
            ToShipper::Start(at) => (Some(at), recount.take(), 0),
            ToShipper::Batch(batch) => {
                let Batch {
                    events,
                    end,
                    counts,
                } = *batch;
                let outcome = match sink.put(&events, &shutdown).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        info!(
                            events = events.len(),
                            "gave up on a logs batch at shutdown; it is sent after the next start"
                        );
                        return;
                    }
                };
                let lines = lines_in(&events);
                let not_stored = outcome.not_stored();
                let counts = if not_stored.is_empty() {
                    counts
                } else {
                    count_stored(&events, &not_stored, &mut recount)
                };
                (end, counts, lines)
            }
        };
        let (recorded, done) = oneshot::channel();
        let sent = keeper
            .send(ToKeeper::Shipped(Box::new(Accepted {
                end,
                counts,
                recorded,
            })))
            .await;
        if sent.is_err() || done.await.is_err() {
            return;
        }
        stats.add(&stats.lines_shipped, lines);
    }
}

/// Lines in `events`: every event but the pieces that go on in the next one.
fn lines_in(events: &EventBatch) -> u64 {
    (0..events.len()).filter(|&i| !events.continues(i)).count() as u64
}

/// The counts of the events of `events` CloudWatch stored (all but the `not_stored` indices, sorted).
fn count_stored(events: &EventBatch, not_stored: &[usize], tally: &mut Tally) -> Counter {
    for (i, (timestamp_ms, message)) in events.iter().enumerate() {
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
        let counts = count_stored(&events, &[1], &mut tally);
        let (_, c) = counts.minutes().next().expect("a minute");
        assert_eq!(c.lines, 2);
        assert_eq!(c.matches[0], 2);
        assert_eq!(lines_in(&events), 3);
    }
}
