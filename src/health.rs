//! Talks to systemd (sd_notify): `READY=1`, `WATCHDOG=1` while every task keeps its promises, `STATUS=`,
//! `STOPPING=1`.
//!
//! Each task of the pipeline holds a [`Beat`]: before anything that may take a while it promises to report
//! again within a bound (a CloudWatch attempt: the client's timeout; a backoff: its delay; a checkpoint
//! write), and says when it only waits for work. The health task pings the watchdog every half interval
//! unless a task is past its promise: a daemon that is retrying through an outage is alive, one whose task
//! hangs (or whose process stops altogether, which stops this task too) is not, and systemd restarts it.
//! The checkpoint makes that restart lose nothing.
//!
//! [`Stats`] counts what the tasks did, for `STATUS=` and for the memory release after a burst.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::shutdown::Shutdown;
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
        let status = printable(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// `STATUS=`.
    pub fn status(&self, status: &str) {
        let status = printable(status);
        self.send(&[NotifyState::Status(&status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `STOPPING=1` with a last `STATUS=`.
    pub fn stopping(&self, status: &str) {
        let status = printable(status);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }
}

/// `text` with control characters (a newline would start another sd_notify assignment) as `?`.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
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

/// No deadline: the task waits for work.
const IDLE: u64 = u64::MAX;

/// One task's promise to the watchdog: "I report again before this deadline", or "I wait for work".
#[derive(Debug)]
pub struct Beat {
    base: Instant,
    /// Milliseconds after `base`, or [`IDLE`].
    deadline_ms: AtomicU64,
}

impl Default for Beat {
    fn default() -> Beat {
        Beat {
            base: Instant::now(),
            deadline_ms: AtomicU64::new(IDLE),
        }
    }
}

impl Beat {
    /// Promises to report again (with another promise, or [`Beat::idle`]) within `bound`.
    pub fn expect_within(&self, bound: Duration) {
        let at = Instant::now().saturating_duration_since(self.base) + bound;
        let ms = u64::try_from(at.as_millis()).unwrap_or(IDLE - 1);
        self.deadline_ms.store(ms.min(IDLE - 1), Ordering::Relaxed);
    }

    /// The task waits for work: no deadline.
    pub fn idle(&self) {
        self.deadline_ms.store(IDLE, Ordering::Relaxed);
    }

    /// How long past its promise the task is at `now`, if it is.
    pub fn overdue(&self, now: Instant) -> Option<Duration> {
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        if deadline == IDLE {
            return None;
        }
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(IDLE - 1);
        (elapsed > deadline).then(|| Duration::from_millis(elapsed - deadline))
    }
}

/// How much of a failing call's reason `STATUS=` shows (the journal has all of it).
const STATUS_FAILURE_CHARS: usize = 160;

/// What the daemon did, for `STATUS=` and the memory release: counters the tasks bump, read by the health
/// task.
#[derive(Debug)]
pub struct Stats {
    /// Lines handed out by the source.
    pub lines_read: AtomicU64,
    /// Lines whose batch CloudWatch Logs accepted.
    pub lines_shipped: AtomicU64,
    /// Minutes whose counts CloudWatch accepted.
    pub minutes_published: AtomicU64,
    /// Closed minutes waiting to be published.
    pub minutes_due: AtomicU64,
    /// Bumped on every step forward (lines read, batch accepted, minute published).
    pub activity: AtomicU64,
    /// Whether the reader is waiting for the file to exist.
    pub waiting_for_file: AtomicBool,
    /// The sinks' counters (retries, refused events), once the sinks exist.
    sinks: OnceLock<Vec<Arc<SinkStats>>>,
    /// Matches per metric (in config order) whose lines CloudWatch accepted.
    matches: Vec<AtomicU64>,
    metric_names: Vec<String>,
    /// What the daemon is doing, in a few words ("following /var/log/secure").
    state: Mutex<String>,
}

impl Stats {
    /// Counters for a pipeline with these metric names (one per metric filter, in config order).
    pub fn new(metric_names: Vec<String>) -> Stats {
        Stats {
            lines_read: AtomicU64::new(0),
            lines_shipped: AtomicU64::new(0),
            minutes_published: AtomicU64::new(0),
            minutes_due: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            waiting_for_file: AtomicBool::new(false),
            sinks: OnceLock::new(),
            matches: metric_names.iter().map(|_| AtomicU64::new(0)).collect(),
            metric_names,
            state: Mutex::new(String::from("starting")),
        }
    }

    /// Reports the retries and refusals of these sinks in `STATUS=`, and watches their beats.
    pub fn watch_sinks(&self, sinks: Vec<Arc<SinkStats>>) {
        let _ = self.sinks.set(sinks);
    }

    /// The sinks' counters.
    pub fn sinks(&self) -> &[Arc<SinkStats>] {
        self.sinks.get().map_or(&[], Vec::as_slice)
    }

    /// Adds `n` to `counter` and records a step forward.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds accepted matches of metric `idx`.
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
        let (retries, rejected) = self
            .sinks()
            .iter()
            .map(|s| s.snapshot())
            .fold((0, 0), |(r, j), s| (r + s.retries, j + s.rejected));
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
        if let Some(failing) = self.sinks().iter().find_map(|s| s.failing()) {
            let short: String = failing.chars().take(STATUS_FAILURE_CHARS).collect();
            out.push_str(&format!("; retrying {short}"));
        }
        out
    }
}

/// The tasks whose promises the watchdog checks, by name.
#[derive(Debug, Default)]
pub struct Liveness {
    beats: Vec<(&'static str, Arc<Beat>)>,
}

impl Liveness {
    pub fn watch(&mut self, task: &'static str, beat: Arc<Beat>) {
        self.beats.push((task, beat));
    }

    /// The first task past its promise at `now`, and by how much.
    pub fn overdue(&self, now: Instant, stats: &Stats) -> Option<(&'static str, Duration)> {
        let sinks = stats.sinks().iter().map(|s| ("a CloudWatch call", &s.beat));
        self.beats
            .iter()
            .map(|(task, beat)| (*task, beat.as_ref()))
            .chain(sinks)
            .find_map(|(task, beat)| beat.overdue(now).map(|d| (task, d)))
    }
}

/// Decides, once per watchdog tick, whether to send `WATCHDOG=1`, and logs once per stall.
#[derive(Debug, Default)]
pub struct WatchdogGate {
    stalled: bool,
}

impl WatchdogGate {
    /// `overdue`: the task past its promise, if any.
    pub fn tick(&mut self, overdue: Option<(&str, Duration)>) -> bool {
        match overdue {
            None => {
                if self.stalled {
                    info!("every task reports again; feeding the watchdog");
                }
                self.stalled = false;
                true
            }
            Some((task, late)) => {
                if !self.stalled {
                    warn!(
                        task,
                        late_ms = late.as_millis() as u64,
                        "{task} is {:.0} s past the time it promised to report by: holding back the watchdog, so systemd restarts sshwatch if it stays stuck (nothing is lost: reading resumes at the checkpoint)",
                        late.as_secs_f64()
                    );
                }
                self.stalled = true;
                false
            }
        }
    }
}

/// Runs until shutdown stops it: pings the watchdog at half of `watchdog` while no task is past its
/// promise, refreshes `STATUS=`, and hands memory back after a burst.
pub async fn run(
    stats: Arc<Stats>,
    liveness: Liveness,
    notifier: Notifier,
    watchdog: Option<Duration>,
    shutdown: Shutdown,
) {
    let period = watchdog.map_or(STATUS_INTERVAL, |w| (w / 2).max(Duration::from_millis(10)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gate = WatchdogGate::default();
    let mut trim = crate::memory::TrimGate::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.stopping() => return,
        }
        if watchdog.is_some() && gate.tick(liveness.overdue(Instant::now(), &stats)) {
            notifier.watchdog();
        }
        let activity = stats.activity.load(Ordering::Relaxed);
        if trim.tick(activity, stats.idle()) {
            crate::memory::release_free_memory();
        }
        notifier.status(&stats.status());
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

    #[tokio::test(start_paused = true)]
    async fn a_task_is_late_only_past_its_promise() {
        let beat = Arc::new(Beat::default());
        let mut live = Liveness::default();
        live.watch("the reader", Arc::clone(&beat));
        let stats = Stats::new(vec![]);
        assert_eq!(live.overdue(Instant::now(), &stats), None, "idle");
        beat.expect_within(Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(live.overdue(Instant::now(), &stats), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        let (task, late) = live.overdue(Instant::now(), &stats).expect("late");
        assert_eq!(task, "the reader");
        assert!(late >= Duration::from_secs(1));
        beat.idle();
        assert_eq!(live.overdue(Instant::now(), &stats), None);
        // A sink's beat counts too.
        let sink = Arc::new(SinkStats::default());
        stats.watch_sinks(vec![Arc::clone(&sink)]);
        sink.beat.expect_within(Duration::ZERO);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            live.overdue(Instant::now(), &stats).map(|o| o.0),
            Some("a CloudWatch call")
        );
    }

    #[test]
    fn the_gate_pings_unless_a_task_is_late() {
        let mut g = WatchdogGate::default();
        assert!(g.tick(None));
        assert!(!g.tick(Some(("the reader", Duration::from_secs(3)))));
        assert!(!g.tick(Some(("the reader", Duration::from_secs(9)))));
        assert!(g.tick(None));
    }

    #[test]
    fn status_counts_and_strips_control_characters() {
        let p = Stats::new(vec!["A".into()]);
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
        assert_eq!(printable("a\nb\u{1b}c"), "a?b?c");
    }

    #[test]
    fn status_says_which_call_is_failing_until_one_is_accepted() {
        let p = Stats::new(vec!["A".into()]);
        let sink = Arc::new(crate::sink::SinkStats::default());
        p.watch_sinks(vec![Arc::clone(&sink)]);
        p.set_state("following /x");
        sink.add_retry("PutLogEvents: `ThrottlingException`: Rate exceeded".into());
        assert_eq!(
            p.status(),
            "following /x; read 0 lines, shipped 0, retries 1, A 0; retrying PutLogEvents: `ThrottlingException`: Rate exceeded"
        );
        sink.add_accepted(1, 30);
        assert!(!p.status().contains("retrying"), "{}", p.status());
    }
}
