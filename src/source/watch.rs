//! Wake-ups for the tailer: inotify on the followed file's directory, bridged into tokio.
//!
//! The notify crate calls back on its own thread; the callback only sets a [`Notify`] permit (never blocks,
//! and many events coalesce into one wake-up). The tailer stats the file on every wake-up and at least every
//! `poll_interval`, so a missed event, an overflowed inotify queue or a failed watch only costs latency.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tracing::{debug, warn};

/// State shared with the notify thread.
#[derive(Debug, Default)]
struct Shared {
    wake: Notify,
    /// Wake on events for any file of the directory, not only the followed name: set while a file rotated
    /// away (and so renamed) is being finished, since its writes are reported under its new name.
    any_file: AtomicBool,
    /// The watched directory itself went away: the watch must be set up again.
    lost: AtomicBool,
}

/// An inotify watch on one directory that wakes the tailer.
#[derive(Debug)]
pub(crate) struct DirWatch {
    dir: PathBuf,
    shared: Arc<Shared>,
    watcher: Option<RecommendedWatcher>,
    watching: bool,
    warned: bool,
}

impl DirWatch {
    /// Prepares a watch of `dir` for events about `name`; [`DirWatch::ensure`] sets it up.
    pub(crate) fn new(dir: PathBuf, name: OsString) -> DirWatch {
        let shared = Arc::new(Shared::default());
        let cb_shared = Arc::clone(&shared);
        let cb_dir = dir.clone();
        let handler = move |res: notify::Result<Event>| {
            let relevant = match &res {
                // Errors include a queue overflow: stat to find out.
                Err(_) => true,
                Ok(ev) => {
                    if ev.paths.iter().any(|p| p == &cb_dir)
                        && matches!(ev.kind, EventKind::Remove(_))
                    {
                        cb_shared.lost.store(true, Ordering::Relaxed);
                    }
                    ev.paths.is_empty()
                        || ev.need_rescan()
                        || cb_shared.any_file.load(Ordering::Relaxed)
                        || ev
                            .paths
                            .iter()
                            .any(|p| p.file_name() == Some(name.as_os_str()) || p == &cb_dir)
                }
            };
            if relevant {
                cb_shared.wake.notify_one();
            }
        };
        let watcher = match RecommendedWatcher::new(handler, notify::Config::default()) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "inotify is unavailable ({e}): the file is looked at every `poll_interval_seconds` instead, so lines arrive a little later");
                None
            }
        };
        DirWatch {
            dir,
            shared,
            watcher,
            watching: false,
            warned: false,
        }
    }

    /// Sets up the watch if it is not in place (the directory may appear later, or have been replaced).
    pub(crate) fn ensure(&mut self) {
        if self.shared.lost.swap(false, Ordering::Relaxed) {
            if let Some(w) = &mut self.watcher {
                let _ = w.unwatch(&self.dir);
            }
            self.watching = false;
        }
        if self.watching {
            return;
        }
        let Some(w) = &mut self.watcher else { return };
        match w.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                debug!(dir = %self.dir.display(), "watching directory");
                self.watching = true;
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
    pub(crate) fn set_any_file(&self, any: bool) {
        self.shared.any_file.store(any, Ordering::Relaxed);
    }

    /// Waits for an event or `timeout`, whichever comes first. Cancel-safe: an event that arrives while
    /// nobody waits leaves a permit, so it is not lost.
    pub(crate) async fn wait(&self, timeout: std::time::Duration) {
        tokio::select! {
            () = self.shared.wake.notified() => {}
            () = tokio::time::sleep(timeout) => {}
        }
    }
}
