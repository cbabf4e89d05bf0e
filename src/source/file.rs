//! [`FileSource`]: follows one log file by descriptor across rename, copytruncate, delete+recreate and restarts.
//!
//! # How it follows the file
//!
//! The file at `file_path` (a symlink there is followed to its target) is the *current* file.
//! [`FileSource::track`] stats the path, on every inotify event of its directory and at least every
//! `poll_interval` (every 10 s while inotify reports every change, see `watch.rs`), whether or not lines
//! are being read:
//! - another inode there (or none) means the current file was rotated away (renamed or deleted): it joins
//!   the queue of *rotated* files, which are read to their ends through their open descriptors, oldest
//!   first;
//! - the same inode but shorter than what was read, or with other first bytes, means it was truncated
//!   (copytruncate, also when it already grew again past the old offset). The rest of what it held is in
//!   the copy next to it, found by its first bytes: the copy joins the rotated files, taking over where
//!   reading stood, and the current file is read again from 0.
//!
//! The files are the buffer: tracking keeps descriptors, not data, so while the daemon cannot ship, memory
//! stays at one read buffer per file, at most [`MAX_ROTATED_FILES`] of them.
//!
//! A rotated file is finished when it is at its end *and* a newer file has data: the writer has moved on
//! (rsyslog keeps writing to the renamed file until it gets its HUP). Newer files are checked before the old
//! one is read to its end, so nothing the writer put in the old file is skipped. A last line without a
//! newline in a finished file is handed out as a complete line; in the current file it waits for its newline.
//!
//! # Rotation while stopped
//!
//! A checkpointed file not at the path any more is looked for among its siblings (the names logrotate
//! gives: `secure.1`, `secure-20261206`, …): by device, inode and first bytes (renamed), or by first bytes
//! alone (a copytruncate copy). It is finished from the checkpoint, then every uncompressed sibling written
//! after it, oldest first (generations rotated more than once while stopped), then the current file.
//!
//! # Losses, each an ERROR naming the file and the bytes
//!
//! - copytruncate's own race, or a truncation with no copy next to the file: what was not read yet;
//! - a checkpointed file compressed, moved to another directory (`olddir`) or deleted while stopped;
//! - more than [`MAX_ROTATED_FILES`] rotated files waiting: the oldest one's unread rest.
//!
//! # Cancel safety
//!
//! All reading happens synchronously inside [`FileSource::poll_once`]; the only `.await` in
//! [`FileSource::next_lines`] waits for a wake-up while every byte read is either returned or kept in
//! `self`. Dropping the future (e.g. in `tokio::select!`) loses nothing.
//!
//! # Bounded memory
//!
//! Reads are [`CHUNK_BYTES`] at a time and stop once `max_bytes` of lines are gathered; a line longer than
//! [`MAX_LINE_BYTES`] is handed out in pieces, each but the last marked as going on, so a file is never
//! read whole and one file buffers at most `MAX_LINE_BYTES + CHUNK_BYTES`.
//!
//! # Limits
//!
//! - While running, a file is followed once it was seen at the path: one created and rotated away again
//!   between two looks (an overflowed inotify queue and less than `poll_interval`) is not read.
//! - A generation rotated while stopped is told newer than the checkpointed one by its modification time.
//! - Reads are plain `pread`s on the calling task: regular files in the page cache do not block for long,
//!   and a batch is at most `max_bytes`.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tracing::{debug, error, info, warn};

use crate::config::{SourceConfig, StartPosition};
use crate::source::fingerprint::Head;
use crate::source::watch::DirWatch;
use crate::source::{FINGERPRINT_BYTES, FileId, Line, Lines, Position};
use crate::text::{MAX_LINE_BYTES, piece_len, strip_cr};

/// Bytes read from the file per `read` call: big enough that a burst costs few syscalls, small enough
/// that a batch overshoots its budget by little.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Most rotated files kept open and waiting to be read. Each holds a descriptor and at most one read
/// buffer; 32 rotations behind means CloudWatch has been unreachable for many rotation periods.
pub const MAX_ROTATED_FILES: usize = 32;

/// A guess at the length of an auth-log line, to size batches.
const TYPICAL_LINE_BYTES: usize = 100;

/// The most lines a batch reserves room for up front.
const MAX_RESERVED_LINES: usize = 16 * 1024;

/// Shortest wait between two polls, whatever the configuration says.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Suffixes of compressed rotations, which are never read (their bytes are not the log's).
const COMPRESSED: [&str; 7] = [".gz", ".xz", ".bz2", ".zst", ".lz4", ".lzma", ".Z"];

/// Counters for `STATUS=` and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Lines (and pieces of over-long lines) handed out.
    pub lines_read: u64,
    /// Bytes handed out, terminators included.
    pub bytes_read: u64,
    /// Times the current file was seen rotated away (renamed or deleted), including while stopped.
    pub rotations: u64,
    /// Times the current file was seen truncated or rewritten in place.
    pub truncations: u64,
    /// Rotated files not finished yet.
    pub finishing: usize,
    /// No file at `file_path` right now.
    pub waiting_for_file: bool,
}

/// Follows `source.file_path`; see the module documentation.
#[derive(Debug)]
pub struct FileSource {
    /// The configured path: what positions name.
    path: Arc<Path>,
    /// `path` with a symlink resolved: what is stat-ed, opened and searched next to.
    target: PathBuf,
    poll_interval: Duration,
    /// Files rotated away from `path`, oldest first, finished through their descriptors.
    rotated: VecDeque<Followed>,
    /// The file at `path`, once there is one.
    current: Option<Followed>,
    watch: DirWatch,
    status: SourceStatus,
    /// "Waiting for the file" was logged for the current absence.
    absent_logged: bool,
    /// A stat error was logged and has not cleared yet.
    stat_error_logged: bool,
    /// The last read reached the end of every file: new lines after it need an inotify event.
    was_at_end: bool,
}

impl FileSource {
    /// Opens the stream at `resume` (None = per `config.start_position`). A resume position whose file was
    /// rotated away while stopped is found again among the files next to `file_path` and finished first
    /// (see the module documentation); `saved_at` is when the checkpoint was written, which tells the
    /// generations written after it when the checkpointed file itself is gone.
    ///
    /// A missing file is not an error: it is waited for (and logged once). A file that cannot be opened
    /// (e.g. permission denied) is.
    pub fn new(
        config: &SourceConfig,
        resume: Option<Position>,
        saved_at: Option<SystemTime>,
    ) -> io::Result<FileSource> {
        let path: Arc<Path> = config.file_path.clone().into();
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` does not name a file", path.display()),
            ));
        }
        let target = resolve(&path);
        let mut src = FileSource {
            watch: watch_for(&target),
            path,
            target,
            poll_interval: config.poll_interval.max(MIN_POLL_INTERVAL),
            rotated: VecDeque::new(),
            current: None,
            status: SourceStatus::default(),
            absent_logged: false,
            stat_error_logged: false,
            was_at_end: false,
        };
        // Watch first, so that nothing happening between the first stat and the watch goes unnoticed.
        src.watch.ensure();
        match resume {
            Some(Position::File { path, id, offset }) if path == src.path => {
                src.resume(id, offset, saved_at)?
            }
            Some(other) => {
                warn!(path = %src.path.display(), checkpoint = ?other, "the checkpoint is for {other}, not for `{}` (the configuration changed); reading `{}` from where `start_position` says", src.path.display(), src.path.display());
                src.start(config.start_position)?;
            }
            None => src.start(config.start_position)?,
        }
        src.update_status();
        Ok(src)
    }

    /// Waits (inotify on the directory + periodic stat) until at least one complete line is available, then
    /// returns up to `max_bytes` of complete lines (at least one line even if longer). Never returns half a
    /// line. Cancel-safe (can be dropped in `tokio::select!`).
    pub async fn next_lines(&mut self, max_bytes: usize) -> io::Result<Lines> {
        loop {
            let lines = self.poll_once(max_bytes)?;
            if !lines.lines.is_empty() {
                return Ok(lines);
            }
            self.changed().await;
        }
    }

    /// Waits for a sign that the file may have changed: an inotify event of its directory, or
    /// `poll_interval`. Cancel-safe: an event while nobody waits is kept.
    pub async fn changed(&mut self) {
        let timeout = self.watch.look_interval(self.poll_interval);
        self.watch.wait(timeout).await;
    }

    /// Notices rotations and truncations now, without reading lines: keeps the descriptor of every
    /// generation, so the daemon can follow the log while it cannot ship.
    pub fn track(&mut self) {
        self.watch.ensure();
        self.check_path();
        self.update_status();
    }

    /// Checks the path for rotation and truncation, then returns the complete lines there are now (up to
    /// `max_bytes`, at least one line if there is any), without waiting.
    pub fn poll_once(&mut self, max_bytes: usize) -> io::Result<Lines> {
        self.track();
        let mut batch = Gathered {
            path: self.path.clone(),
            max: max_bytes,
            used: 0,
            now: SystemTime::now(),
            // Sized for typical auth-log lines, so a big batch is not copied again and again as it grows.
            lines: Vec::with_capacity(
                (max_bytes / TYPICAL_LINE_BYTES).clamp(1, MAX_RESERVED_LINES),
            ),
            truncations: 0,
        };
        let result = self.read_into(&mut batch);
        // Lines after a look that had read everything, with no event since: inotify missed them.
        let reported = self.watch.take_reported();
        if self.was_at_end && !batch.lines.is_empty() && !reported {
            self.watch.missed_change(self.poll_interval);
        }
        self.was_at_end = matches!(result, Ok(true));
        self.status.lines_read += batch.lines.len() as u64;
        self.status.bytes_read += batch.used as u64;
        self.status.truncations += batch.truncations;
        self.update_status();
        match result {
            Ok(at_end) => Ok(Lines {
                lines: batch.lines,
                at_end,
            }),
            // The offsets already moved past these lines: hand them out, the error comes back next poll.
            Err(e) if !batch.lines.is_empty() => {
                debug!(path = %self.path.display(), error = %e, "read failed after some lines");
                Ok(Lines {
                    lines: batch.lines,
                    at_end: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Where the stream stands: the position after the last line handed out (or where reading starts).
    /// `None` while no file has been seen yet.
    pub fn current_position(&self) -> Option<Position> {
        self.rotated
            .front()
            .or(self.current.as_ref())
            .map(|t| t.position(&self.path, t.offset))
    }

    /// Counters and state, for status reports.
    pub fn status(&self) -> &SourceStatus {
        &self.status
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn update_status(&mut self) {
        self.status.finishing = self.rotated.len();
        self.status.waiting_for_file = self.current.is_none();
        // A renamed file's writes are reported under its new name.
        self.watch.set_any_file(!self.rotated.is_empty());
    }

    /// First open without a checkpoint.
    fn start(&mut self, start: StartPosition) -> io::Result<()> {
        match open_regular(&self.target)? {
            None => self.note_absent(),
            Some((file, meta)) => {
                let offset = match start {
                    StartPosition::Beginning => 0,
                    StartPosition::End => start_of_last_line(&file, meta.len())?,
                };
                debug!(path = %self.path.display(), offset, "starting");
                self.current = Some(Followed::open(file, &meta, offset, None)?);
            }
        }
        Ok(())
    }

    /// First open at a checkpoint.
    fn resume(&mut self, id: FileId, offset: u64, saved_at: Option<SystemTime>) -> io::Result<()> {
        let at_path = open_regular(&self.target)?;
        if let Some((file, meta)) = &at_path
            && (meta.dev(), meta.ino()) == (id.dev, id.ino)
        {
            match id.check(file, meta)? {
                Head::Same(fresh) if meta.len() >= offset => {
                    debug!(path = %self.path.display(), offset, "resuming");
                    if let Some((file, meta)) = at_path {
                        self.current =
                            Some(Followed::with_id(file, fresh, offset, meta.len(), None));
                    }
                    return Ok(());
                }
                _ => {
                    info!(path = %self.path.display(), "the file was truncated or rewritten while sshwatch was stopped; looking for its copy");
                    self.status.truncations += 1;
                }
            }
        } else {
            self.status.rotations += 1;
        }
        let at_path_inode = at_path.as_ref().map(|(_, m)| (m.dev(), m.ino()));
        let found = self.find_generation(&id, offset, at_path_inode)?;
        let newer_than = match &found {
            Some(g) => {
                info!(path = %self.path.display(), rotated = %g.path.display(), offset, "finishing the file rotated away while sshwatch was stopped");
                g.meta.modified().ok()
            }
            None => {
                error!(
                    path = %self.path.display(),
                    dev = id.dev,
                    inode = id.ino,
                    from_byte = offset,
                    "the checkpointed file was rotated away while sshwatch was stopped and is not next to `{}` any more (compressed, moved to another directory or deleted): what it held after byte {offset} is lost",
                    self.path.display()
                );
                saved_at
            }
        };
        let mut skip: Vec<(u64, u64)> = at_path_inode.into_iter().collect();
        if let Some(g) = found {
            skip.push((g.meta.dev(), g.meta.ino()));
            self.push_rotated(Followed::with_id(
                g.file,
                g.id,
                offset,
                g.meta.len(),
                Some(g.path),
            ));
        }
        if let Some(since) = newer_than {
            for g in self.generations_since(since, &skip)? {
                info!(path = %self.path.display(), rotated = %g.path.display(), "reading a file rotated while sshwatch was stopped");
                let tail = Followed::open(g.file, &g.meta, 0, Some(g.path))?;
                self.push_rotated(tail);
            }
        }
        match at_path {
            Some((file, meta)) => self.current = Some(Followed::open(file, &meta, 0, None)?),
            None => self.note_absent(),
        }
        Ok(())
    }

    /// The regular, uncompressed files next to the target whose names logrotate derives from its name
    /// (`secure.1`, `secure-20261206`, `auth.log.2`), with their metadata.
    fn siblings(&self) -> io::Result<Vec<(PathBuf, Metadata)>> {
        let (Some(dir), Some(name)) = (self.target.parent(), self.target.file_name()) else {
            return Ok(Vec::new());
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let name = name.to_string_lossy();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(context(e, "cannot list", dir)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| context(e, "cannot list", dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = file_name.strip_prefix(name.as_ref()) else {
                continue;
            };
            if !rest.starts_with(['.', '-', '_']) || COMPRESSED.iter().any(|c| rest.ends_with(c)) {
                continue;
            }
            let candidate = entry.path();
            if let Ok(meta) = fs::symlink_metadata(&candidate)
                && meta.is_file()
            {
                out.push((candidate, meta));
            }
        }
        Ok(out)
    }

    /// The file `id` among the siblings, from byte `offset` on: the same inode with the same first bytes
    /// (renamed), else another file with the same first bytes (a copytruncate copy; the newest if several).
    /// Not the file at `skip` (the one at the path now), and never one shorter than `offset`.
    fn find_generation(
        &self,
        id: &FileId,
        offset: u64,
        skip: Option<(u64, u64)>,
    ) -> io::Result<Option<Generation>> {
        let mut copy: Option<Generation> = None;
        for (candidate, meta) in self.siblings()? {
            let inode = (meta.dev(), meta.ino());
            if Some(inode) == skip || meta.len() < offset {
                continue;
            }
            let Some((file, meta)) = open_regular(&candidate)? else {
                continue;
            };
            let Some(fresh) = id.same_content(&file, &meta)? else {
                continue;
            };
            let generation = Generation {
                path: candidate,
                file,
                meta,
                id: fresh,
            };
            if inode == (id.dev, id.ino) {
                return Ok(Some(generation));
            }
            let newer = copy
                .as_ref()
                .is_none_or(|c| modified(&generation.meta) > modified(&c.meta));
            if newer {
                copy = Some(generation);
            }
        }
        Ok(copy)
    }

    /// The siblings last written at or after `since`, oldest first, but for the inodes in `skip`.
    fn generations_since(
        &self,
        since: SystemTime,
        skip: &[(u64, u64)],
    ) -> io::Result<Vec<Generation>> {
        let mut found = Vec::new();
        for (candidate, meta) in self.siblings()? {
            if skip.contains(&(meta.dev(), meta.ino())) || modified(&meta) < since {
                continue;
            }
            let Some((file, meta)) = open_regular(&candidate)? else {
                continue;
            };
            let id = FileId::of(&file, &meta)?;
            found.push(Generation {
                path: candidate,
                file,
                meta,
                id,
            });
        }
        found.sort_by_key(|g| modified(&g.meta));
        Ok(found)
    }

    /// Queues a rotated file, dropping the oldest one (an ERROR with what it loses) beyond
    /// [`MAX_ROTATED_FILES`].
    fn push_rotated(&mut self, tail: Followed) {
        if self.rotated.len() >= MAX_ROTATED_FILES
            && let Some(old) = self.rotated.pop_front()
        {
            let to = old.seen_len.max(old.read_pos());
            error!(
                path = %self.path.display(),
                rotated = %old.describe(&self.path),
                from_byte = old.offset,
                to_byte = to,
                max = MAX_ROTATED_FILES,
                "more than {MAX_ROTATED_FILES} rotated files wait to be read; giving up on the oldest: its bytes {}..{to} are lost",
                old.offset
            );
        }
        self.rotated.push_back(tail);
    }

    fn note_absent(&mut self) {
        if !self.absent_logged {
            info!(path = %self.path.display(), "waiting for the file to appear");
            self.absent_logged = true;
        }
    }

    /// Follows a symlink at the path to its current target, watching the target's directory.
    fn refresh_target(&mut self) {
        let target = resolve(&self.path);
        if target != self.target {
            info!(path = %self.path.display(), target = %target.display(), "the path points to another file now");
            if target.parent() != self.target.parent() {
                self.watch = watch_for(&target);
                self.watch.ensure();
            }
            self.target = target;
        }
    }

    /// Stats the path and notes rotation, truncation or a new file. A failure is logged, not returned:
    /// the files already open are still read.
    fn check_path(&mut self) {
        self.refresh_target();
        let meta = match fs::metadata(&self.target) {
            Ok(m) if m.is_file() => Some(m),
            Ok(m) => {
                if !self.absent_logged {
                    let kind = file_kind(&m.file_type());
                    warn!(path = %self.path.display(), kind, "`{}` is a {kind}, not a regular file; it is not read, and a regular file there is waited for", self.path.display());
                }
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                if !self.stat_error_logged {
                    warn!(path = %self.path.display(), error = %e, "cannot stat `{}`: {e}; the files already open are still read, and the path is looked at again every poll", self.path.display());
                    self.stat_error_logged = true;
                }
                return;
            }
        };
        self.stat_error_logged = false;
        if let Err(e) = self.follow(meta) {
            warn!(path = %self.path.display(), error = %e, "cannot follow a change of `{}`: {e}; trying again at the next poll", self.path.display());
        }
    }

    /// What `check_path` does with the file now at the path (`None`: none).
    fn follow(&mut self, meta: Option<Metadata>) -> io::Result<()> {
        let Some(meta) = meta else {
            if let Some(cur) = self.current.take() {
                info!(path = %self.path.display(), "file moved away or deleted, finishing it");
                self.status.rotations += 1;
                self.push_rotated(cur);
            }
            self.note_absent();
            return Ok(());
        };
        if self.absent_logged {
            info!(path = %self.path.display(), "file appeared");
            self.absent_logged = false;
        }
        let same_inode = |t: &Followed| (meta.dev(), meta.ino()) == (t.id.dev, t.id.ino);
        if let Some(cur) = &mut self.current {
            if same_inode(cur) {
                // Neither its length nor its modification time moved since its head last checked out:
                // nothing was written, truncated or rewritten, and its first bytes need no new read.
                let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec());
                if !cur.truncated && cur.checked != Some(stamp) {
                    match cur.id.check(&cur.file, &meta)? {
                        Head::Same(fresh) if meta.len() >= cur.read_pos() => {
                            cur.id = fresh;
                            cur.seen_len = meta.len();
                            cur.checked = Some(stamp);
                        }
                        _ => self.truncated(&meta)?,
                    }
                }
                return Ok(());
            }
        } else if self.rotated.back().is_some_and(same_inode) {
            // The last file rotated away is back under its name (renamed back): keep reading it.
            self.current = self.rotated.pop_back();
            return Ok(());
        }
        let Some((file, meta)) = open_regular(&self.target)? else {
            return Ok(());
        };
        if let Some(cur) = self.current.take() {
            info!(path = %self.path.display(), "file rotated, finishing the old one");
            self.status.rotations += 1;
            self.push_rotated(cur);
        }
        // A file that appears after the start is always read from its beginning.
        self.current = Some(Followed::open(file, &meta, 0, None)?);
        Ok(())
    }

    /// The current file (now `meta`) was truncated or rewritten in place. Its copy, if there is one next to
    /// it, is finished from where reading stood; without one, what was not read is lost.
    fn truncated(&mut self, meta: &Metadata) -> io::Result<()> {
        let Some(cur) = &self.current else {
            return Ok(());
        };
        let read_pos = cur.read_pos();
        let inode = (cur.id.dev, cur.id.ino);
        let copy = self.find_generation(&cur.id.clone(), read_pos, Some(inode))?;
        let Some(cur) = &mut self.current else {
            return Ok(());
        };
        self.status.truncations += 1;
        match copy {
            Some(g) => {
                info!(path = %self.path.display(), copy = %g.path.display(), from_byte = read_pos, "file truncated (copytruncate); finishing its copy, then reading it again from the start");
                let copy = Followed {
                    file: g.file,
                    id: g.id,
                    offset: cur.offset,
                    buf: std::mem::take(&mut cur.buf),
                    truncated: false,
                    seen_len: g.meta.len(),
                    name: Some(g.path),
                    checked: None,
                };
                cur.id = FileId::of(&cur.file, meta)?;
                cur.checked = None;
                cur.offset = 0;
                cur.seen_len = meta.len();
                self.push_rotated(copy);
            }
            None => {
                let lost_to = cur.seen_len;
                if lost_to > read_pos {
                    error!(
                        path = %self.path.display(),
                        from_byte = read_pos,
                        to_byte = lost_to,
                        "the file was truncated before its bytes {read_pos}..{lost_to} were read, and no copy of it is next to it: they are lost"
                    );
                } else {
                    info!(path = %self.path.display(), "file truncated, reading it again from the start");
                }
                cur.truncated = true;
            }
        }
        Ok(())
    }

    /// Fills `batch` from the rotated files, oldest first, then from the current file. `true` when it
    /// stopped at the end of what there is (not because the batch is full).
    fn read_into(&mut self, batch: &mut Gathered) -> io::Result<bool> {
        while !self.rotated.is_empty() {
            // Whether the writer has moved on, asked *before* reading the old file to its end, so that
            // whatever it wrote there before moving on is read.
            let mut newer_has_data = self.current.as_ref().is_some_and(Followed::has_data);
            for t in self.rotated.iter().skip(1) {
                newer_has_data = newer_has_data || t.has_data();
            }
            let front = self.rotated.front_mut().expect("not empty");
            if !front.read_through(batch)? {
                return Ok(false);
            }
            if !newer_has_data {
                return Ok(true);
            }
            if !front.flush_partial(batch) {
                return Ok(false);
            }
            info!(path = %self.path.display(), rotated = %front.describe(&self.path), bytes = front.offset, "finished the rotated file");
            self.rotated.pop_front();
        }
        match &mut self.current {
            Some(cur) => cur.read_through(batch),
            None => Ok(true),
        }
    }
}

/// A file found next to the followed one.
struct Generation {
    path: PathBuf,
    file: File,
    meta: Metadata,
    id: FileId,
}

/// The lines one poll gathers.
struct Gathered {
    path: Arc<Path>,
    max: usize,
    used: usize,
    now: SystemTime,
    lines: Vec<Line>,
    /// Truncations handled while filling this batch.
    truncations: u64,
}

impl Gathered {
    /// At least one line, then up to `max` bytes.
    fn admits(&self, n: usize) -> bool {
        self.lines.is_empty() || self.used + n <= self.max
    }

    fn full(&self) -> bool {
        !self.lines.is_empty() && self.used >= self.max
    }
}

/// One open file and what was read from it.
struct Followed {
    file: File,
    id: FileId,
    /// Offset right after the last byte handed out.
    offset: u64,
    /// Bytes read from `offset` on, not handed out yet. Lines are handed out as shared slices of it: one
    /// allocation per chunk read, not one per line.
    buf: BytesMut,
    /// Truncation seen: hand out what is buffered, then read again from 0.
    truncated: bool,
    /// The length at the last look: how far a loss of this file reaches.
    seen_len: u64,
    /// The name it was found under when not opened at the followed path.
    name: Option<PathBuf>,
    /// Length and modification time (seconds, nanoseconds) when its head last matched its id.
    checked: Option<(u64, i64, i64)>,
}

impl fmt::Debug for Followed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Followed")
            .field("id", &self.id)
            .field("offset", &self.offset)
            .field("buffered", &self.buf.len())
            .field("truncated", &self.truncated)
            .field("name", &self.name)
            .finish()
    }
}

impl Followed {
    fn open(
        file: File,
        meta: &Metadata,
        offset: u64,
        name: Option<PathBuf>,
    ) -> io::Result<Followed> {
        let id = FileId::of(&file, meta)?;
        Ok(Followed::with_id(file, id, offset, meta.len(), name))
    }

    fn with_id(file: File, id: FileId, offset: u64, len: u64, name: Option<PathBuf>) -> Followed {
        Followed {
            file,
            id,
            offset,
            buf: BytesMut::new(),
            truncated: false,
            seen_len: len,
            name,
            checked: None,
        }
    }

    fn position(&self, path: &Arc<Path>, offset: u64) -> Position {
        Position::File {
            path: Arc::clone(path),
            id: self.id.clone(),
            offset,
        }
    }

    /// The file, for messages: its name when known, else the followed path and its inode.
    fn describe(&self, path: &Path) -> String {
        match &self.name {
            Some(name) => name.display().to_string(),
            None => format!("{} (inode {}, rotated)", path.display(), self.id.ino),
        }
    }

    /// Where the next read from the file starts.
    fn read_pos(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    fn has_data(&self) -> bool {
        self.file.metadata().map(|m| m.len() > 0).unwrap_or(false)
    }

    /// Hands out one line (or piece) of `len` bytes that consumes `consumed` bytes of the buffer;
    /// `continues` when it is a piece the next line goes on from.
    fn emit(&mut self, batch: &mut Gathered, len: usize, consumed: usize, continues: bool) {
        let mut bytes = self.buf.split_to(consumed).freeze();
        bytes.truncate(len);
        self.offset += consumed as u64;
        self.seen_len = self.seen_len.max(self.offset);
        batch.used += consumed;
        let end = self.position(&batch.path, self.offset);
        batch.lines.push(Line {
            bytes,
            end,
            read_at: batch.now,
            continues,
        });
    }

    /// Hands out the complete lines in the buffer; `false` when the batch is full.
    fn take_lines(&mut self, batch: &mut Gathered) -> bool {
        loop {
            let pending = &self.buf[..];
            let (len, consumed, continues) = match memchr::memchr(b'\n', pending) {
                Some(i) => (strip_cr(&pending[..i]).len(), i + 1, false),
                None if pending.len() >= MAX_LINE_BYTES => {
                    let n = piece_len(&pending[..MAX_LINE_BYTES]);
                    (n, n, true)
                }
                None => return true,
            };
            if !batch.admits(consumed) {
                return false;
            }
            self.emit(batch, len, consumed, continues);
        }
    }

    /// Hands out lines, reading more in chunks: `true` at the end of the file (or at a truncation, where
    /// nothing more may be read before [`Followed::restart`]), `false` when the batch is full.
    fn read(&mut self, batch: &mut Gathered) -> io::Result<bool> {
        loop {
            if !self.take_lines(batch) {
                return Ok(false);
            }
            if self.truncated {
                return Ok(true);
            }
            if batch.full() {
                return Ok(false);
            }
            // The buffer holds only the partial line: read after it.
            let old = self.buf.len();
            self.buf.resize(old + CHUNK_BYTES, 0);
            let n = loop {
                match self
                    .file
                    .read_at(&mut self.buf[old..], self.offset + old as u64)
                {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + n);
            self.seen_len = self.seen_len.max(self.read_pos());
            if n > 0 && (self.id.fingerprint_len as usize) < FINGERPRINT_BYTES {
                // A young file: let the positions handed out carry a fingerprint of what is there now.
                let meta = self.file.metadata()?;
                if let Head::Same(fresh) = self.id.check(&self.file, &meta)? {
                    self.id = fresh;
                }
            }
            if n == 0 {
                if self.buf.is_empty() && self.buf.capacity() > 4 * CHUNK_BYTES {
                    // Give back what an over-long line needed.
                    self.buf = BytesMut::new();
                }
                return Ok(true);
            }
        }
    }

    /// [`Followed::read`], and at a truncation hands out what was read before it (a partial last line as a
    /// line), then reads the file again from 0.
    fn read_through(&mut self, batch: &mut Gathered) -> io::Result<bool> {
        loop {
            if !self.read(batch)? {
                return Ok(false);
            }
            if !self.truncated {
                return Ok(true);
            }
            let meta = self.file.metadata()?;
            let fresh = FileId::of(&self.file, &meta)?;
            if !self.flush_partial(batch) {
                return Ok(false);
            }
            self.id = fresh;
            self.restart(meta.len());
            batch.truncations += 1;
            // The last line handed out from the old content ends where the rewritten file starts. Saying so
            // in its position keeps a checkpoint there valid: the old identity is gone for good, and the end
            // of a partial line is no line boundary in the new content.
            let (dev, ino) = (self.id.dev, self.id.ino);
            if let Some(last) = batch.lines.last_mut()
                && matches!(&last.end, Position::File { id, .. } if (id.dev, id.ino) == (dev, ino))
            {
                last.end = self.position(&batch.path, 0);
            }
        }
    }

    /// Hands out a last line without newline as a complete line (the file will not get its end);
    /// `false` when the batch is full.
    fn flush_partial(&mut self, batch: &mut Gathered) -> bool {
        let pending = self.buf.len();
        if pending == 0 {
            return true;
        }
        if !batch.admits(pending) {
            return false;
        }
        let len = strip_cr(&self.buf).len();
        self.emit(batch, len, pending, false);
        true
    }

    /// Reads the (truncated) file again from its start, as a new file (with its new `id`).
    fn restart(&mut self, len: u64) {
        self.offset = 0;
        self.buf.clear();
        self.truncated = false;
        self.seen_len = len;
        self.checked = None;
    }
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} `{}`: {e}", path.display()))
}

fn modified(meta: &Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `path` with a symlink at it resolved (also one whose target does not exist yet); `path` itself
/// otherwise.
fn resolve(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => target,
            Err(_) => match fs::read_link(path) {
                Ok(link) => path.parent().unwrap_or(Path::new("/")).join(link),
                Err(_) => path.to_path_buf(),
            },
        },
        _ => path.to_path_buf(),
    }
}

/// A directory watch for the file `target`.
fn watch_for(target: &Path) -> DirWatch {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().map(|n| n.to_owned()).unwrap_or_default();
    DirWatch::new(dir, name)
}

/// Opens `path` if it is a regular file; `None` when there is none. Opened without blocking, so a FIFO or
/// a device at the path cannot stall the daemon (it is not a log file: `None`).
fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(context(e, "cannot open", path)),
    };
    let meta = file
        .metadata()
        .map_err(|e| context(e, "cannot stat", path))?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// Where `start_position = "end"` starts: after the last newline, so a line being written when sshwatch
/// starts is read whole. With no newline in the last chunk of a bigger file, at its end.
fn start_of_last_line(file: &File, len: u64) -> io::Result<u64> {
    let n = len.min(CHUNK_BYTES as u64);
    let mut buf = vec![0u8; n as usize];
    match file.read_exact_at(&mut buf, len - n) {
        Ok(()) => {}
        // Shrunk since the stat: truncated, so its start is the place.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
        Err(e) => return Err(e),
    }
    Ok(match memchr::memrchr(b'\n', &buf) {
        Some(i) => len - n + i as u64 + 1,
        None if n == len => 0,
        None => len,
    })
}

/// A file type in words, for messages.
fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else {
        "special file"
    }
}
