//! Talks to systemd (sd_notify): `READY=1`, `WATCHDOG=1` tied to pipeline progress, `STATUS=`, `STOPPING=1`.
//!
//! The pipeline's tasks count what they do in one shared [`Pipeline`]; the health task reads it every half
//! watchdog interval and pings the watchdog only when something moved since the last look (a line read, a
//! batch accepted, a minute published, an AWS attempt finished) or when there is nothing to do (no line
//! waiting to be shipped, no closed minute waiting to be published). A pipeline that is stuck with work in
//! hand stops the pings, and systemd restarts the service; the checkpoint makes that restart lose nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::sink::SinkStats;

/// How often `STATUS=` is refreshed when systemd asked for no watchdog.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Sends notifications to the service manager; does nothing when `NOTIFY_SOCKET` is not set.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// A notifier for the socket in `NOTIFY_SOCKET`, if any.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        // `false`: keep NOTIFY_SOCKET, every later notification needs it.
        if let Err(e) = sd_notify::notify(false, states) {
            debug!(error = %e, "sd_notify failed");
        }
    }

    /// `READY=1` with a first `STATUS=`.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `STOPPING=1` with a last `STATUS=`.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// The watchdog interval systemd asked for, as `sd_watchdog_enabled(3)` reads it: `WATCHDOG_USEC`, for this
/// process when `WATCHDOG_PID` is unset or names it.
pub fn watchdog_interval() -> Option<Duration> {
    parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid {
        Some(p) if p.trim().parse::<u32>().ok() != Some(me) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// What the pipeline is doing: counters the tasks bump, read by the health task and for `STATUS=`.
#[derive(Debug)]
pub struct Pipeline {
    /// Lines handed out by the source.
    pub lines_read: AtomicU64,
    /// Lines whose batch CloudWatch Logs accepted (or rejected for good, which is logged).
    pub lines_shipped: AtomicU64,
    /// Minutes whose PutMetricData was accepted.
    pub minutes_published: AtomicU64,
    /// The sinks' counters (retries, refused events), once the sinks exist.
    sinks: OnceLock<Vec<Arc<SinkStats>>>,
    /// Closed minutes waiting for their PutMetricData.
    pub minutes_due: AtomicU64,
    /// Bumped on every step forward: lines read, batch accepted, minute published, AWS attempt finished.
    pub activity: AtomicU64,
    /// Whether the reader is waiting for the file to exist.
    pub waiting_for_file: AtomicBool,
    /// Durable matches per metric filter (in config order), as published or waiting to be.
    matches: Vec<AtomicU64>,
    metric_names: Vec<String>,
    /// What the daemon is doing, in a few words ("following /var/log/secure").
    state: Mutex<String>,
}

impl Pipeline {
    /// Counters for a pipeline with these metric names (one per metric filter, in config order).
    pub fn new(metric_names: Vec<String>) -> Pipeline {
        Pipeline {
            lines_read: AtomicU64::new(0),
            lines_shipped: AtomicU64::new(0),
            minutes_published: AtomicU64::new(0),
            sinks: OnceLock::new(),
            minutes_due: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            waiting_for_file: AtomicBool::new(false),
            matches: metric_names.iter().map(|_| AtomicU64::new(0)).collect(),
            metric_names,
            state: Mutex::new(String::from("starting")),
        }
    }

    /// Reports the retries and refusals of these sinks in `STATUS=`.
    pub fn watch_sinks(&self, sinks: Vec<Arc<SinkStats>>) {
        let _ = self.sinks.set(sinks);
    }

    /// Records a step forward (for the watchdog).
    pub fn progressed(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `counter` and records a step forward.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        self.progressed();
    }

    /// Adds durable matches of filter `idx`.
    pub fn add_matches(&self, idx: usize, n: u64) {
        if let Some(m) = self.matches.get(idx) {
            m.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sets the few words saying what the daemon does.
    pub fn set_state(&self, state: impl Into<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = state.into();
        }
    }

    /// Whether there is nothing to do: every line read is shipped and no closed minute waits.
    pub fn idle(&self) -> bool {
        self.lines_read.load(Ordering::Relaxed) == self.lines_shipped.load(Ordering::Relaxed)
            && self.minutes_due.load(Ordering::Relaxed) == 0
    }

    /// The `STATUS=` text.
    pub fn status(&self) -> String {
        let state = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        let (retries, rejected) = self.sinks.get().map_or((0, 0), |sinks| {
            sinks
                .iter()
                .map(|s| s.snapshot())
                .fold((0, 0), |(r, j), s| (r + s.retries, j + s.rejected))
        });
        let mut out = format!(
            "{state}; read {} lines, shipped {}, retries {retries}",
            self.lines_read.load(Ordering::Relaxed),
            self.lines_shipped.load(Ordering::Relaxed),
        );
        if rejected > 0 {
            out.push_str(&format!(", refused by CloudWatch {rejected}"));
        }
        for (name, n) in self.metric_names.iter().zip(&self.matches) {
            out.push_str(&format!(", {name} {}", n.load(Ordering::Relaxed)));
        }
        out
    }
}

/// Decides, once per watchdog tick, whether the pipeline deserves a `WATCHDOG=1`.
#[derive(Debug, Default)]
pub struct WatchdogGate {
    last_activity: u64,
    stalled: bool,
}

impl WatchdogGate {
    /// True when the pipeline moved since the last tick (the activity counter starts at 0) or has nothing
    /// to do.
    pub fn tick(&mut self, activity: u64, idle: bool) -> bool {
        let moved = activity != self.last_activity;
        self.last_activity = activity;
        let healthy = moved || idle;
        if !healthy && !self.stalled {
            warn!("pipeline made no progress with work pending; holding back the watchdog");
        }
        self.stalled = !healthy;
        healthy
    }
}

/// Runs until `shutdown` turns true: pings the watchdog at half of `watchdog` when the pipeline is healthy
/// and refreshes `STATUS=`.
pub async fn run(
    pipeline: Arc<Pipeline>,
    notifier: Notifier,
    watchdog: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = watchdog.map_or(STATUS_INTERVAL, |w| (w / 2).max(Duration::from_millis(10)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gate = WatchdogGate::default();
    let mut trim = crate::memory::TrimGate::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = crate::daemon::raised(&mut shutdown) => return,
        }
        let activity = pipeline.activity.load(Ordering::Relaxed);
        if watchdog.is_some() && gate.tick(activity, pipeline.idle()) {
            notifier.watchdog();
        }
        if trim.tick(activity, pipeline.idle()) {
            crate::memory::release_free_memory();
        }
        notifier.status(&pipeline.status());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_env_follows_sd_watchdog_enabled() {
        assert_eq!(
            parse_watchdog(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_watchdog(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("x"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    #[test]
    fn gate_pings_on_progress_or_idle_only() {
        let mut g = WatchdogGate::default();
        assert!(!g.tick(0, false), "nothing happened yet and work pending");
        assert!(g.tick(1, false), "moved");
        assert!(!g.tick(1, false), "stuck with work pending");
        assert!(g.tick(1, true), "nothing to do");
        assert!(g.tick(2, false), "moved again");
    }

    #[test]
    fn idle_means_everything_read_is_shipped_and_no_minute_waits() {
        let p = Pipeline::new(vec!["A".into()]);
        assert!(p.idle());
        p.add(&p.lines_read, 3);
        assert!(!p.idle());
        p.add(&p.lines_shipped, 3);
        assert!(p.idle());
        p.minutes_due.store(1, Ordering::Relaxed);
        assert!(!p.idle());
        p.add_matches(0, 2);
        p.set_state("following /x");
        assert_eq!(
            p.status(),
            "following /x; read 3 lines, shipped 3, retries 0, A 2"
        );
    }
}
