//! The only code that reads the log: follow a file across rotation and truncation, or sshd's journal
//! entries, and keep the checkpoint.
//!
//! - [`Source`]: the log being followed, chosen once per state directory ([`SourceKind::choose`]).
//! - [`FileSource`] follows `source.file_path` (inotify on its directory plus a periodic stat) and hands out
//!   complete [`Line`]s, each with the [`Position`] right after it.
//! - [`journal`] follows sshd's journal entries instead, on hosts without the file.
//! - [`checkpoint`] stores where delivery stands, durably, in `state_dir`.
//! - [`tail`] reads the end of a log: for `verify`, and for the format checks of `init` and start-up.
//!
//! Files are told apart by [`FileId`] (device, inode and a fingerprint of the first bytes), never by name:
//! a reused inode or a file rewritten in place is a new file, and a file renamed or copied while sshwatch
//! was stopped is found again next to `file_path`.

pub mod checkpoint;
mod file;
mod fingerprint;
pub mod journal;
pub mod tail;
mod watch;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::warn;

pub use self::file::{CHUNK_BYTES, FileSource, MAX_ROTATED_FILES, SourceStatus};
pub use self::fingerprint::FINGERPRINT_BYTES;
use crate::config::SourceConfig;
use crate::source::journal::JournalSource;
pub use crate::text::MAX_LINE_BYTES;

/// Identity of a followed file: device + inode + fingerprint (hash of the first up-to-[`FINGERPRINT_BYTES`]
/// bytes and that length).
///
/// The fingerprint is 64-bit FNV-1a, which is stable across Rust releases and platforms, so checkpoints
/// written by one build are understood by the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u64,
    /// How many bytes from the start of the file went into `fingerprint`.
    pub fingerprint_len: u32,
}

/// Where the stream stands: after the last consumed byte of a file, or after a journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// `path` is the followed path (`source.file_path`), also while a file rotated away from it is being
    /// finished: `id` says which file, `offset` is the byte after the last consumed one.
    File {
        /// Shared: every line read carries a position, and cloning this is a counter increment.
        path: Arc<Path>,
        id: FileId,
        offset: u64,
    },
    /// A journal cursor.
    Journal { cursor: String },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::File { path, offset, .. } => {
                write!(f, "`{}` at byte {offset}", path.display())
            }
            Position::Journal { cursor } => write!(f, "the journal at cursor {cursor}"),
        }
    }
}

impl Position {
    /// The kind of log this is a position in.
    pub fn kind(&self) -> SourceKind {
        match self {
            Position::File { .. } => SourceKind::File,
            Position::Journal { .. } => SourceKind::Journal,
        }
    }
}

/// One complete line, terminator stripped (also a trailing `\r`), bytes as read.
///
/// A line longer than [`MAX_LINE_BYTES`] comes in pieces of at most that size (each piece is a `Line`, the
/// last one ends at the terminator and the others have `continues` set), so memory stays bounded whatever
/// the file holds.
#[derive(Debug, Clone)]
pub struct Line {
    pub bytes: Bytes,
    /// The position right after this line's terminator: resuming there yields the next line.
    pub end: Position,
    /// When the line was read; the event time.
    pub read_at: SystemTime,
    /// A piece of an over-long line that goes on in the next `Line`.
    pub continues: bool,
}

/// What one read gave.
#[derive(Debug, Default)]
pub struct Lines {
    pub lines: Vec<Line>,
    /// The source had nothing more at the time (the read did not stop for the size limit).
    pub at_end: bool,
}

/// Which kind of log a state directory follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    File,
    Journal,
}

impl SourceKind {
    /// The kind in words, for messages.
    fn describe(self) -> &'static str {
        match self {
            SourceKind::File => "the log file",
            SourceKind::Journal => "the journal",
        }
    }

    /// The kind to follow: `[source] journal` when set; otherwise the kind this state directory followed
    /// before (`checkpointed`), so a file that appears or goes away between two starts does not make the
    /// daemon skip from one log to the other; otherwise the file, or the journal when there is no file
    /// and the host keeps a journal.
    pub fn choose(config: &SourceConfig, checkpointed: Option<SourceKind>) -> SourceKind {
        let configured = config.journal.map(|j| {
            if j {
                SourceKind::Journal
            } else {
                SourceKind::File
            }
        });
        match (configured, checkpointed) {
            (Some(kind), _) => kind,
            (None, Some(kind)) => kind,
            (None, None) if !config.file_path.exists() && journal::available() => {
                SourceKind::Journal
            }
            (None, None) => SourceKind::File,
        }
    }

    /// The kind a state directory followed (`kind`, with `shipped` the position after the last line
    /// CloudWatch accepted), if it still says something about the configured log: the journal, or the
    /// file at `file_path`. A file source that shipped nothing yet, or shipped from another path (the
    /// configuration changed), says nothing, and [`SourceKind::choose`] chooses afresh.
    pub fn followed(
        kind: Option<SourceKind>,
        shipped: Option<&Position>,
        config: &SourceConfig,
    ) -> Option<SourceKind> {
        match (kind?, shipped) {
            (SourceKind::Journal, _) => Some(SourceKind::Journal),
            (SourceKind::File, Some(Position::File { path, .. }))
                if **path == *config.file_path
                    || config.file_path.canonicalize().is_ok_and(|c| c == **path) =>
            {
                Some(SourceKind::File)
            }
            (SourceKind::File, _) => None,
        }
    }
}

/// The log being followed: the file, or sshd's journal entries.
#[derive(Debug)]
pub enum Source {
    File(Box<FileSource>),
    Journal(JournalSource),
}

impl Source {
    /// Opens the log `kind` at `resume` (where the checkpoint says reading resumes; `saved_at`: when it
    /// was written). A state directory that followed the other kind before (`before`: the configuration
    /// switched) is logged, and the new log starts per `start_position`. Must be called inside a tokio
    /// runtime.
    pub fn open(
        config: &SourceConfig,
        kind: SourceKind,
        before: Option<SourceKind>,
        resume: Option<Position>,
        saved_at: Option<SystemTime>,
    ) -> anyhow::Result<Source> {
        if let Some(before) = before
            && before != kind
        {
            warn!(before = ?before, now = ?kind, "this state directory followed {} and now follows {} (`[source] journal`, or the file gone from a host that keeps a journal); the new log starts where `start_position` says", before.describe(), kind.describe());
        }
        let resume = resume.filter(|p| p.kind() == kind);
        Ok(match kind {
            SourceKind::Journal => Source::Journal(
                JournalSource::new(config, resume).context("cannot read the journal")?,
            ),
            SourceKind::File => Source::File(Box::new(
                FileSource::new(config, resume, saved_at)
                    .with_context(|| format!("cannot open `{}`", config.file_path.display()))?,
            )),
        })
    }

    /// Waits for lines, then returns up to `max_bytes` of them (at least one). Cancel-safe.
    pub async fn next_lines(&mut self, max_bytes: usize) -> io::Result<Lines> {
        match self {
            Source::File(f) => f.next_lines(max_bytes).await,
            Source::Journal(j) => j.next_lines(max_bytes).await,
        }
    }

    /// Notices rotations and truncations of the file without reading lines (nothing to do for the
    /// journal, which keeps its entries itself).
    pub fn track(&mut self) {
        if let Source::File(f) = self {
            f.track();
        }
    }

    /// Resolves when [`Source::track`] has something to look at (never for the journal). Cancel-safe.
    pub async fn changed(&mut self) {
        match self {
            Source::File(f) => f.changed().await,
            Source::Journal(_) => std::future::pending().await,
        }
    }

    /// Where reading starts, when known before the first line.
    pub fn current_position(&self) -> Option<Position> {
        match self {
            Source::File(f) => f.current_position(),
            Source::Journal(_) => None,
        }
    }

    /// Whether the file is not there yet.
    pub fn waiting_for_file(&self) -> bool {
        match self {
            Source::File(f) => f.status().waiting_for_file,
            Source::Journal(_) => false,
        }
    }

    /// What is followed, for logs and `STATUS=`.
    pub fn describe(&self) -> String {
        match self {
            Source::File(f) => f.path().display().to_string(),
            Source::Journal(_) => "the journal".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::StartPosition;

    fn config(journal: Option<bool>, file_path: &str) -> SourceConfig {
        SourceConfig {
            file_path: PathBuf::from(file_path),
            state_dir: PathBuf::from("/nonexistent/state"),
            journal,
            expand_repeated: false,
            start_position: StartPosition::End,
            poll_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_first_choice_is_kept_until_the_configuration_says_otherwise() {
        // A state directory that followed the journal keeps doing so when the file appears, and one that
        // followed the file keeps waiting for it when it is gone.
        let present = config(None, "/etc/hostname");
        let absent = config(None, "/nonexistent/secure");
        assert_eq!(
            SourceKind::choose(&present, Some(SourceKind::Journal)),
            SourceKind::Journal
        );
        assert_eq!(
            SourceKind::choose(&absent, Some(SourceKind::File)),
            SourceKind::File
        );
        assert_eq!(SourceKind::choose(&present, None), SourceKind::File);
        // The configuration decides when it says.
        assert_eq!(
            SourceKind::choose(
                &config(Some(false), "/nonexistent/secure"),
                Some(SourceKind::Journal)
            ),
            SourceKind::File
        );
        assert_eq!(
            SourceKind::choose(&config(Some(true), "/etc/hostname"), Some(SourceKind::File)),
            SourceKind::Journal
        );
    }

    #[test]
    fn a_file_choice_counts_only_for_the_configured_file_and_once_something_was_shipped() {
        let secure = config(None, "/var/log/secure");
        let at = |path: &str| Position::File {
            path: Arc::from(Path::new(path)),
            id: FileId {
                dev: 1,
                ino: 2,
                fingerprint: 3,
                fingerprint_len: 256,
            },
            offset: 10,
        };
        let file = Some(SourceKind::File);
        assert_eq!(
            SourceKind::followed(file, Some(&at("/var/log/secure")), &secure),
            file
        );
        // The configuration moved to another file, or the file never appeared: choose again.
        assert_eq!(
            SourceKind::followed(file, Some(&at("/var/log/auth.log")), &secure),
            None
        );
        assert_eq!(SourceKind::followed(file, None, &secure), None);
        let journal = Some(SourceKind::Journal);
        assert_eq!(SourceKind::followed(journal, None, &secure), journal);
        assert_eq!(SourceKind::followed(None, None, &secure), None);
    }
}
