//! Wake-ups for the tailer: inotify on the followed file's directory, read on the daemon's own thread.
//!
//! The inotify descriptor sits in tokio's reactor (inotify's [`EventStream`]): no thread of its own, and while the tailer
//! is not waiting (a batch is open and it reads once a second) events only queue in the kernel, merged
//! when identical, and cost nothing until the next wait reads them all at once. The tailer stats the file
//! on every wake-up and at least every [`DirWatch::look_interval`], so a missed event, an overflowed inotify
//! queue or a failed watch only costs latency.
//!
//! While the watch is in place and has reported every change the tailer found, the safety-net look is
//! every [`TRUSTED_LOOK_INTERVAL`]: an idle daemon wakes up a few times a minute, not every second. Lines
//! found without an event for them at two looks in a row (a network or FUSE filesystem, whose remote
//! writes inotify does not see) bring the configured `poll_interval` back for [`DISTRUST_FOR`].

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask};
use tracing::{debug, info, warn};

/// The safety-net look while inotify reports every change: events wake the tailer at once, so this only
/// bounds the delay of a change inotify might miss before the first such miss is noticed.
pub(crate) const TRUSTED_LOOK_INTERVAL: Duration = Duration::from_secs(10);

/// How long the configured `poll_interval` is used again after lines came without an event.
const DISTRUST_FOR: Duration = Duration::from_secs(600);

/// Bytes read from the inotify descriptor at a time: room for dozens of events (each 16 bytes plus its
/// name), read again until none is left.
const EVENT_BUFFER: usize = 4096;

type Events = EventStream<Box<[u8]>>;

/// What the directory watch asks the kernel for: a file written, created, renamed or deleted in it, and
/// the directory itself going away. Attribute changes, opens and closes are left out: they say nothing
/// about new lines.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

/// An inotify watch on one directory that wakes the tailer.
#[derive(Debug)]
pub(crate) struct DirWatch {
    dir: PathBuf,
    /// The followed file's name in `dir`.
    name: OsString,
    events: Option<Events>,
    wd: Option<WatchDescriptor>,
    /// Wake on events for any file of the directory, not only the followed name: set while a file rotated
    /// away (and so renamed) is being finished, since its writes are reported under its new name.
    any_file: bool,
    /// A relevant event was read and not reported yet (kept across a cancelled wait).
    pending: bool,
    /// A relevant event was read since the tailer last asked ([`DirWatch::take_reported`]).
    reported: bool,
    /// Looks in a row that found lines no event announced.
    misses: u32,
    /// Until when lines found without an event keep the look at `poll_interval`.
    distrusted_until: Option<tokio::time::Instant>,
    warned: bool,
}

impl DirWatch {
    /// Prepares a watch of `dir` for events about `name`; [`DirWatch::ensure`] sets it up. Outside a tokio
    /// runtime there is no watch, and [`DirWatch::wait`] only sleeps.
    pub(crate) fn new(dir: PathBuf, name: OsString) -> DirWatch {
        if tokio::runtime::Handle::try_current().is_err() {
            // Outside a runtime (a synchronous caller that only polls): nothing could wait on events.
            return DirWatch::without_events(dir, name);
        }
        let events = match Inotify::init()
            .and_then(|i| i.into_event_stream(vec![0; EVENT_BUFFER].into_boxed_slice()))
        {
            Ok(events) => Some(events),
            Err(e) => {
                warn!(error = %e, "inotify is unavailable ({e}): the file is looked at every `poll_interval_seconds` instead, so lines arrive a little later");
                None
            }
        };
        DirWatch {
            events,
            ..DirWatch::without_events(dir, name)
        }
    }

    fn without_events(dir: PathBuf, name: OsString) -> DirWatch {
        DirWatch {
            dir,
            name,
            events: None,
            wd: None,
            any_file: false,
            pending: false,
            reported: false,
            misses: 0,
            distrusted_until: None,
            warned: false,
        }
    }

    /// How long the tailer may wait for an event before it looks at the file anyway: `poll_interval`
    /// without a watch, or for a while after inotify missed a change; otherwise the longer of
    /// `poll_interval` and [`TRUSTED_LOOK_INTERVAL`].
    pub(crate) fn look_interval(&self, poll_interval: Duration) -> Duration {
        let distrusted = self
            .distrusted_until
            .is_some_and(|until| tokio::time::Instant::now() < until);
        if self.events.is_none() || self.wd.is_none() || distrusted {
            poll_interval
        } else {
            poll_interval.max(TRUSTED_LOOK_INTERVAL)
        }
    }

    /// Whether a relevant event came since the last call, counting those queued in the kernel now.
    pub(crate) fn take_reported(&mut self) -> bool {
        self.drain(Seen::default());
        let reported = std::mem::take(&mut self.reported);
        if reported {
            self.misses = 0;
        }
        reported
    }

    /// The tailer found lines that no event announced. Once is not proof (an event may have arrived
    /// after the reactor last polled); twice in a row, inotify does not see this file's writes (or not all
    /// of them), and the file is looked at every `poll_interval` for a while.
    pub(crate) fn missed_change(&mut self, poll_interval: Duration) {
        if self.events.is_none() || self.wd.is_none() {
            return;
        }
        self.misses += 1;
        if self.misses < 2 {
            return;
        }
        if self.distrusted_until.is_none() {
            info!(dir = %self.dir.display(), "inotify did not report new lines in `{}` (a network or FUSE filesystem?): looking at the file every {:.1} s", self.dir.display(), poll_interval.as_secs_f64());
        }
        self.distrusted_until = Some(tokio::time::Instant::now() + DISTRUST_FOR);
    }

    /// Sets up the watch if it is not in place (the directory may appear later, or have been replaced).
    pub(crate) fn ensure(&mut self) {
        if self.wd.is_some() {
            return;
        }
        let Some(events) = &self.events else { return };
        match events.watches().add(&self.dir, mask()) {
            Ok(wd) => {
                debug!(dir = %self.dir.display(), "watching directory");
                self.wd = Some(wd);
                self.warned = false;
            }
            Err(e) => {
                if !self.warned {
                    warn!(dir = %self.dir.display(), error = %e, "cannot watch `{}` with inotify ({e}); looking at it every poll until the watch can be set up", self.dir.display());
                    self.warned = true;
                }
            }
        }
    }

    /// Whether every event in the directory should wake the tailer.
    pub(crate) fn set_any_file(&mut self, any: bool) {
        self.any_file = any;
    }

    /// Waits for a relevant event or `timeout`, whichever comes first. Cancel-safe: an event read while
    /// the wait is dropped is kept for the next one; one not read yet stays queued in the kernel.
    pub(crate) async fn wait(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if std::mem::take(&mut self.pending) {
                return;
            }
            let Some(events) = self.events.as_mut() else {
                tokio::time::sleep_until(deadline).await;
                return;
            };
            tokio::select! {
                first = events.next() => {
                    let mut seen = Seen::default();
                    seen.note(first, &self.name, self.any_file);
                    // Everything else already queued, without waiting: one wake-up for a burst.
                    self.drain(seen);
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Adds every event already queued to `seen`, without waiting, and keeps what they say.
    fn drain(&mut self, mut seen: Seen) {
        if let Some(events) = self.events.as_mut() {
            while let Some(next) = events.next().now_or_never() {
                seen.note(next, &self.name, self.any_file);
            }
        }
        if seen.lost {
            // The directory was deleted or moved: watch the path again at the next look.
            self.wd = None;
        }
        self.pending |= seen.relevant;
        self.reported |= seen.relevant;
    }
}

/// What a drain of the queue found.
#[derive(Debug, Default)]
struct Seen {
    /// An event about the followed file (or any file, or an overflow): look at the path.
    relevant: bool,
    /// The watched directory itself went away.
    lost: bool,
}

impl Seen {
    /// Notes one item of the event stream: an event, or an error (which may hide events: look at the
    /// path), or the end of the stream (the descriptor is unusable).
    fn note(
        &mut self,
        item: Option<std::io::Result<inotify::EventOwned>>,
        name: &OsStr,
        any_file: bool,
    ) {
        match item {
            Some(Ok(event)) => self.event(event.mask, event.name.as_deref(), name, any_file),
            Some(Err(_)) | None => self.relevant = true,
        }
    }

    /// Whether one event matters to the tailer.
    fn event(&mut self, mask: EventMask, event_name: Option<&OsStr>, name: &OsStr, any_file: bool) {
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
            self.lost = true;
            self.relevant = true;
        }
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.relevant = true;
        }
        match event_name {
            Some(n) => self.relevant |= any_file || n == name,
            None => self.relevant = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_followed_name_matters_unless_every_file_does() {
        let name = OsStr::new("secure");
        let other = Some(OsStr::new("messages"));
        let mut seen = Seen::default();
        seen.event(EventMask::MODIFY, other, name, false);
        assert!(!seen.relevant);
        seen.event(EventMask::MODIFY, other, name, true);
        assert!(seen.relevant && !seen.lost);
        let mut seen = Seen::default();
        seen.event(EventMask::MOVED_TO, Some(name), name, false);
        assert!(seen.relevant);
        let mut seen = Seen::default();
        seen.event(EventMask::Q_OVERFLOW, None, name, false);
        assert!(seen.relevant && !seen.lost);
        let mut seen = Seen::default();
        seen.event(EventMask::DELETE_SELF, None, name, false);
        assert!(seen.relevant && seen.lost);
    }

    #[tokio::test]
    async fn the_look_is_relaxed_only_while_a_watch_reports_every_change() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let poll = Duration::from_secs(1);
        let mut watch = DirWatch::new(dir.path().to_path_buf(), "secure".into());
        assert_eq!(watch.look_interval(poll), poll, "no watch yet");
        watch.ensure();
        assert_eq!(watch.look_interval(poll), TRUSTED_LOOK_INTERVAL);
        assert_eq!(
            watch.look_interval(Duration::from_secs(30)),
            Duration::from_secs(30),
            "a longer configured interval stays"
        );
        assert!(!watch.take_reported());
        std::fs::write(dir.path().join("secure"), "x\n").unwrap_or_else(|e| panic!("{e}"));
        // The reactor learns that the descriptor is readable when it next polls.
        tokio::task::yield_now().await;
        assert!(watch.take_reported(), "a queued event counts");
        assert!(!watch.take_reported(), "once");
        // The queued event still wakes the next wait at once.
        let start = tokio::time::Instant::now();
        watch.wait(Duration::from_secs(10)).await;
        assert!(start.elapsed() < Duration::from_secs(5));
        watch.missed_change(poll);
        assert_eq!(
            watch.look_interval(poll),
            TRUSTED_LOOK_INTERVAL,
            "one miss may be a race with the reactor"
        );
        watch.missed_change(poll);
        assert_eq!(
            watch.look_interval(poll),
            poll,
            "after a second miss in a row"
        );
        let mut unwatched = DirWatch::without_events(dir.path().to_path_buf(), "secure".into());
        unwatched.ensure();
        assert_eq!(unwatched.look_interval(poll), poll, "without inotify");
    }

    #[tokio::test]
    async fn a_write_to_the_file_wakes_the_wait_and_one_to_another_does_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut watch = DirWatch::new(dir.path().to_path_buf(), "secure".into());
        watch.ensure();
        std::fs::write(dir.path().join("messages"), "x\n").unwrap_or_else(|e| panic!("{e}"));
        let start = tokio::time::Instant::now();
        watch.wait(Duration::from_millis(300)).await;
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "woken by another file"
        );
        std::fs::write(dir.path().join("secure"), "y\n").unwrap_or_else(|e| panic!("{e}"));
        let start = tokio::time::Instant::now();
        watch.wait(Duration::from_secs(10)).await;
        assert!(start.elapsed() < Duration::from_secs(5), "not woken");
        // Many writes while nobody waits: one wake-up, then quiet.
        for _ in 0..100 {
            std::fs::write(dir.path().join("secure"), "z\n").unwrap_or_else(|e| panic!("{e}"));
        }
        watch.wait(Duration::from_secs(10)).await;
        let start = tokio::time::Instant::now();
        watch.wait(Duration::from_millis(200)).await;
        assert!(start.elapsed() >= Duration::from_millis(200), "woken twice");
    }
}
