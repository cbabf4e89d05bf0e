//! One shutdown signal, cloned into every task, in two steps: *stop* (finish what is in hand and end in
//! order) and *abort* (give up on CloudWatch calls still failing; what they held stays in the file and the
//! checkpoint for the next start).
//!
//! Any clone can move it forward (a signal handler, a task that found the pipeline broken, a test) and any
//! clone can wait for either step. Steps only move forward, so a late waiter never misses one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Where shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// Stop reading, flush, publish, checkpoint, end.
    Stopping,
    /// Stop waiting for CloudWatch too.
    Aborting,
}

/// A call to CloudWatch was abandoned because shutdown reached [`Phase::Aborting`].
///
/// What the call carried is not lost: the daemon reads it again from the file (logs) or the checkpoint
/// (metrics) after the next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shutting down: the call to CloudWatch was abandoned")]
pub struct Aborted;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Phase>>,
    rx: watch::Receiver<Phase>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal in [`Phase::Running`].
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(Phase::Running);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Asks every task to stop (a no-op once stopping).
    pub fn stop(&self) {
        self.advance(Phase::Stopping);
    }

    /// Asks every task to give up on CloudWatch now.
    pub fn abort(&self) {
        self.advance(Phase::Aborting);
    }

    fn advance(&self, to: Phase) {
        self.tx.send_if_modified(|p| {
            let moved = *p < to;
            if moved {
                *p = to;
            }
            moved
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    pub fn is_stopping(&self) -> bool {
        self.phase() >= Phase::Stopping
    }

    pub fn is_aborted(&self) -> bool {
        self.phase() >= Phase::Aborting
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        // The sender lives as long as any clone, this one included: waiting cannot fail.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Resolves once stopping (at once if already).
    pub async fn stopping(&self) {
        self.reached(Phase::Stopping).await;
    }

    /// Resolves once aborting (at once if already).
    pub async fn aborted(&self) {
        self.reached(Phase::Aborting).await;
    }

    /// Runs `fut` unless shutdown aborts first (then `fut` is dropped: an HTTP call in flight is
    /// abandoned).
    pub async fn unless_aborted<F: Future>(&self, fut: F) -> Result<F::Output, Aborted> {
        if self.is_aborted() {
            return Err(Aborted);
        }
        tokio::select! {
            biased;
            () = self.aborted() => Err(Aborted),
            out = fut => Ok(out),
        }
    }

    /// Runs `fut`, which is already under way, unless shutdown aborted more than `grace` ago: a call in
    /// flight when shutdown aborts gets `grace` to bring its answer, so an answer that is on its way is
    /// not thrown away (the call would be sent again after the next start).
    pub async fn unless_aborted_after<F: Future>(
        &self,
        fut: F,
        grace: Duration,
    ) -> Result<F::Output, Aborted> {
        if self.is_aborted() {
            return Err(Aborted);
        }
        tokio::select! {
            biased;
            out = fut => Ok(out),
            () = async {
                self.aborted().await;
                tokio::time::sleep(grace).await;
            } => Err(Aborted),
        }
    }

    /// Sleeps `d` unless shutdown aborts first.
    pub async fn sleep(&self, d: Duration) -> Result<(), Aborted> {
        self.unless_aborted(tokio::time::sleep(d)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_only_move_forward_and_every_clone_sees_them() {
        let s = Shutdown::new();
        let other = s.clone();
        assert_eq!(s.phase(), Phase::Running);
        let waiter = tokio::spawn(async move { other.stopping().await });
        s.abort();
        s.stop();
        assert_eq!(s.phase(), Phase::Aborting);
        assert!(waiter.await.is_ok());
        assert!(s.is_stopping() && s.is_aborted());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_early_on_abort_but_not_on_stop() {
        let s = Shutdown::new();
        let sleeper = {
            let s = s.clone();
            tokio::spawn(async move { s.sleep(Duration::from_secs(3600)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!sleeper.is_finished());
        s.abort();
        assert_eq!(sleeper.await.ok(), Some(Err(Aborted)));
        assert_eq!(s.unless_aborted(async { 1 }).await, Err(Aborted));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_in_flight_gets_its_grace_and_no_call_starts_after_abort() {
        let s = Shutdown::new();
        let call = {
            let s = s.clone();
            tokio::spawn(async move {
                s.unless_aborted_after(
                    tokio::time::sleep(Duration::from_secs(1)),
                    Duration::from_secs(2),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.abort();
        assert_eq!(call.await.ok(), Some(Ok(())), "answered within the grace");
        let slow = {
            let s = s.clone();
            tokio::spawn(async move {
                s.unless_aborted_after(std::future::pending::<()>(), Duration::from_secs(2))
                    .await
            })
        };
        assert_eq!(slow.await.ok(), Some(Err(Aborted)), "refused once aborted");
    }
}
