//! The only code that reads the log: follow a file across rotation and truncation, and keep the checkpoint.
//!
//! - [`FileSource`] follows `source.file_path` (inotify on its directory plus a periodic stat) and hands out
//!   complete [`Line`]s, each with the [`Position`] right after it.
//! - [`journal`] follows sshd's journal entries instead, on hosts without the file.
//! - [`checkpoint`] stores where delivery stands, durably, in `state_dir`.
//!
//! Files are told apart by [`FileId`] (device, inode and a fingerprint of the first bytes), never by name:
//! a reused inode or a file rewritten in place is a new file, and a file renamed while sshwatch was stopped
//! is found again next to `file_path`.

pub mod checkpoint;
mod file;
mod fingerprint;
pub mod journal;
mod watch;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::file::{CHUNK_BYTES, FileSource, MAX_LINE_BYTES, SourceStatus};
pub use self::fingerprint::FINGERPRINT_BYTES;

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

/// A line's bytes as text: valid UTF-8 as is (no copy), anything else decoded lossily (U+FFFD), never
/// dropped.
pub fn as_text(bytes: &[u8]) -> Cow<'_, str> {
    // `from_utf8` first: `from_utf8_lossy` checks byte by byte, several times slower on valid text.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// One complete line, terminator stripped (also a trailing `\r`), bytes as read.
///
/// A line longer than [`MAX_LINE_BYTES`] comes in pieces of at most that size (each piece is a `Line`, the
/// last one ends at the terminator), so memory stays bounded whatever the file holds.
#[derive(Debug, Clone)]
pub struct Line {
    pub bytes: Bytes,
    /// The position right after this line's terminator: resuming there yields the next line.
    pub end: Position,
    /// When the line was read; the event time.
    pub read_at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_lossy_only_when_needed() {
        assert!(matches!(as_text(b"plain"), Cow::Borrowed("plain")));
        assert!(matches!(as_text("café".as_bytes()), Cow::Borrowed("café")));
        assert_eq!(as_text(b"bad \xff byte"), "bad \u{fffd} byte");
        assert_eq!(as_text(b"cut \xc3"), "cut \u{fffd}");
    }
}
