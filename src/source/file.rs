//! [`FileSource`]: follows one log file by descriptor across rename, copytruncate, delete+recreate and restarts.
//!
//! # How it follows the file
//!
//! The file at `file_path` is the *current* file. Every poll stats the path:
//! - another inode there (or none) means the current file was rotated away (renamed or deleted): it joins the
//!   queue of *rotated* files, which are finished through their open descriptors, oldest first;
//! - the same inode but shorter than what was read, or with other first bytes, means it was truncated
//!   (copytruncate, also when it already grew again past the old offset): it is read again from 0.
//!
//! A rotated file is finished when it is at its end *and* a newer file has data: the writer has moved on
//! (rsyslog keeps writing to the renamed file until it gets its HUP). Newer files are checked before the old
//! one is read to its end, so nothing the writer put in the old file is skipped. A last line without a
//! newline in a finished file is handed out as a complete line; in the current file it waits for its newline.
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
//! [`MAX_LINE_BYTES`] is handed out in pieces, so a file is never read whole and one tail buffers at most
//! `MAX_LINE_BYTES + CHUNK_BYTES`.
//!
//! # Limits
//!
//! - copytruncate's own race: what was written after the last read and before the truncation is only in
//!   the copy. A line half read then is handed out as far as it was read.
//! - A file is followed only once the tailer has seen it at the path: one created and rotated away again
//!   before the next poll, or between the checkpointed file and the current one while sshwatch was
//!   stopped, is not read. A file compressed while stopped is gone (its inode is not trusted, see
//!   `find_rotated`).
//! - A rotated file stays open until a newer file has data, so its space is freed a little later.
//! - Reads are plain `pread`s on the calling task: regular files in the page cache do not block for long,
//!   and a batch is at most `max_bytes`.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tracing::{debug, info, warn};

use crate::config::{SourceConfig, StartPosition};
use crate::source::fingerprint::Head;
use crate::source::watch::DirWatch;
use crate::source::{FINGERPRINT_BYTES, FileId, Line, Position};

/// Bytes read from the file per `read` call: big enough that a burst costs few syscalls, small enough
/// that a batch overshoots its budget by little.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The longest line handed out whole; longer ones come in pieces of this size. CloudWatch's event limit
/// (256 KiB) is below it, so the logs sink splits or marks them anyway; this only bounds memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// A guess at the length of an auth-log line, to size batches.
const TYPICAL_LINE_BYTES: usize = 100;

/// The most lines a batch reserves room for up front.
const MAX_RESERVED_LINES: usize = 16 * 1024;

/// Shortest wait between two polls, whatever the configuration says.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

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
    path: Arc<Path>,
    poll_interval: Duration,
    /// Files rotated away from `path`, oldest first, finished through their descriptors.
    rotated: VecDeque<Tail>,
    /// The file at `path`, once there is one.
    current: Option<Tail>,
    watch: DirWatch,
    status: SourceStatus,
    /// "Waiting for the file" was logged for the current absence.
    absent_logged: bool,
}

impl FileSource {
    /// Opens the stream at `resume` (None = per `config.start_position`). A resume position whose file was
    /// rotated away while stopped is found again by [`FileId`] among the files next to `file_path`
    /// (e.g. `secure.1`, `secure-YYYYMMDD`) and finished first; then the file at `file_path` is read from 0.
    ///
    /// A missing file is not an error: it is waited for (and logged once). A file that cannot be opened
    /// (e.g. permission denied) is.
    pub fn new(config: &SourceConfig, resume: Option<Position>) -> io::Result<FileSource> {
        let path = config.file_path.clone();
        let Some(name) = path.file_name().map(|n| n.to_owned()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` does not name a file", path.display()),
            ));
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut src = FileSource {
            path: path.into(),
            poll_interval: config.poll_interval.max(MIN_POLL_INTERVAL),
            rotated: VecDeque::new(),
            current: None,
            watch: DirWatch::new(dir, name),
            status: SourceStatus::default(),
            absent_logged: false,
        };
        // Watch first, so that nothing happening between the first stat and the watch goes unnoticed.
        src.watch.ensure();
        match resume {
            Some(Position::File { path, id, offset }) if path == src.path => {
                src.resume(id, offset)?
            }
            Some(other) => {
                warn!(path = %src.path.display(), checkpoint = ?other, "checkpoint is not for this file, ignoring it");
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
    pub async fn next_lines(&mut self, max_bytes: usize) -> io::Result<Vec<Line>> {
        loop {
            let lines = self.poll_once(max_bytes)?;
            if !lines.is_empty() {
                return Ok(lines);
            }
            self.watch.wait(self.poll_interval).await;
        }
    }

    /// Checks the path for rotation and truncation, then returns the complete lines there are now (up to
    /// `max_bytes`, at least one line if there is any), without waiting.
    pub fn poll_once(&mut self, max_bytes: usize) -> io::Result<Vec<Line>> {
        self.watch.ensure();
        self.check_path()?;
        let mut batch = Batch {
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
        self.status.lines_read += batch.lines.len() as u64;
        self.status.bytes_read += batch.used as u64;
        self.status.truncations += batch.truncations;
        self.update_status();
        match result {
            Ok(()) => Ok(batch.lines),
            // The offsets already moved past these lines: hand them out, the error comes back next poll.
            Err(e) if !batch.lines.is_empty() => {
                debug!(path = %self.path.display(), error = %e, "read failed after some lines");
                Ok(batch.lines)
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
        match open_regular(&self.path)? {
            None => self.note_absent(),
            Some((file, meta)) => {
                let offset = match start {
                    StartPosition::Beginning => 0,
                    StartPosition::End => start_of_last_line(&file, meta.len())?,
                };
                debug!(path = %self.path.display(), offset, "starting");
                self.current = Some(Tail::open(file, &meta, offset)?);
            }
        }
        Ok(())
    }

    /// First open at a checkpoint.
    fn resume(&mut self, id: FileId, offset: u64) -> io::Result<()> {
        let at_path = open_regular(&self.path)?;
        let same_inode = at_path
            .as_ref()
            .is_some_and(|(_, m)| (m.dev(), m.ino()) == (id.dev, id.ino));
        if let Some((file, meta)) = at_path.as_ref().filter(|_| same_inode) {
            match id.check(file, meta)? {
                Head::Same(fresh) if meta.len() >= offset => {
                    debug!(path = %self.path.display(), offset, "resuming");
                    let (file, _) = at_path.expect("checked above");
                    self.current = Some(Tail::with_id(file, fresh, offset));
                }
                _ => {
                    // Same inode, other content: truncated while stopped, or the inode was reused.
                    info!(path = %self.path.display(), "file was truncated or replaced while stopped, reading it from the start");
                    self.status.truncations += 1;
                    let (file, meta) = at_path.expect("checked above");
                    self.current = Some(Tail::open(file, &meta, 0)?);
                }
            }
            return Ok(());
        }
        // The checkpointed file is no longer at the path: rotated while stopped.
        self.status.rotations += 1;
        match self.find_rotated(&id)? {
            Some((found, _, _, len)) if len < offset => {
                warn!(path = %self.path.display(), rotated = %found.display(), offset, len, "the file rotated away while stopped is shorter than the checkpoint, skipping it");
            }
            Some((found, file, fresh, _)) => {
                info!(path = %self.path.display(), rotated = %found.display(), offset, "finishing the file rotated away while stopped");
                self.rotated.push_back(Tail::with_id(file, fresh, offset));
            }
            None => {
                warn!(path = %self.path.display(), "the checkpointed file is gone (deleted or compressed); what was written to it after the checkpoint is lost");
            }
        }
        match at_path {
            Some((file, meta)) => self.current = Some(Tail::open(file, &meta, 0)?),
            None => self.note_absent(),
        }
        Ok(())
    }

    /// Looks for the file `id` among the regular files next to the path (same device, inode and first
    /// bytes) and opens it; also returns its length.
    ///
    /// A file with the inode but other first bytes is not taken: once the checkpointed file is deleted
    /// (e.g. after compression) its inode is soon reused, possibly by `secure-….gz` itself.
    fn find_rotated(&self, id: &FileId) -> io::Result<Option<(PathBuf, File, FileId, u64)>> {
        let dir = self.watch.dir();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(context(e, "cannot list", dir)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| context(e, "cannot list", dir))?;
            let candidate = entry.path();
            if *candidate == *self.path {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&candidate) else {
                continue;
            };
            if !meta.is_file() || (meta.dev(), meta.ino()) != (id.dev, id.ino) {
                continue;
            }
            let Some((file, meta)) = open_regular(&candidate)? else {
                continue;
            };
            if let Head::Same(fresh) = id.check(&file, &meta)? {
                return Ok(Some((candidate, file, fresh, meta.len())));
            }
        }
        Ok(None)
    }

    fn note_absent(&mut self) {
        if !self.absent_logged {
            info!(path = %self.path.display(), "waiting for the file to appear");
            self.absent_logged = true;
        }
    }

    /// Stats the path and notes rotation, truncation or a new file.
    fn check_path(&mut self) -> io::Result<()> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) if m.is_file() => Some(m),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(context(e, "cannot stat", &self.path)),
        };
        let Some(meta) = meta else {
            if let Some(cur) = self.current.take() {
                info!(path = %self.path.display(), "file moved away or deleted, finishing it");
                self.status.rotations += 1;
                self.rotated.push_back(cur);
            }
            self.note_absent();
            return Ok(());
        };
        if self.absent_logged {
            info!(path = %self.path.display(), "file appeared");
            self.absent_logged = false;
        }
        let same_inode = |t: &Tail| (meta.dev(), meta.ino()) == (t.id.dev, t.id.ino);
        if let Some(cur) = &mut self.current {
            if same_inode(cur) {
                if !cur.truncated {
                    match cur.id.check(&cur.file, &meta)? {
                        Head::Same(fresh) if meta.len() >= cur.read_pos() => cur.id = fresh,
                        _ => {
                            info!(path = %self.path.display(), "file truncated, reading it again from the start");
                            cur.truncated = true;
                        }
                    }
                }
                return Ok(());
            }
        } else if self.rotated.back().is_some_and(same_inode) {
            // The last file rotated away is back under its name (renamed back): keep reading it.
            self.current = self.rotated.pop_back();
            return Ok(());
        }
        let Some((file, meta)) = open_regular(&self.path)? else {
            return Ok(());
        };
        if let Some(cur) = self.current.take() {
            info!(path = %self.path.display(), "file rotated, finishing the old one");
            self.status.rotations += 1;
            self.rotated.push_back(cur);
        }
        // A file that appears after the start is always read from its beginning.
        self.current = Some(Tail::open(file, &meta, 0)?);
        Ok(())
    }

    /// Fills `batch` from the rotated files, oldest first, then from the current file.
    fn read_into(&mut self, batch: &mut Batch) -> io::Result<()> {
        while !self.rotated.is_empty() {
            // Whether the writer has moved on, asked *before* reading the old file to its end, so that
            // whatever it wrote there before moving on is read.
            let mut newer_has_data = self.current.as_ref().is_some_and(Tail::has_data);
            for t in self.rotated.iter().skip(1) {
                newer_has_data = newer_has_data || t.has_data();
            }
            let front = self.rotated.front_mut().expect("not empty");
            if !front.read_through(batch)? || !newer_has_data {
                return Ok(());
            }
            if !front.flush_partial(batch) {
                return Ok(());
            }
            info!(path = %self.path.display(), bytes = front.offset, "finished the rotated file");
            self.rotated.pop_front();
        }
        if let Some(cur) = &mut self.current {
            cur.read_through(batch)?;
        }
        Ok(())
    }
}

/// Lines gathered by one poll.
struct Batch {
    path: Arc<Path>,
    max: usize,
    used: usize,
    now: SystemTime,
    lines: Vec<Line>,
    /// Truncations handled while filling this batch.
    truncations: u64,
}

impl Batch {
    /// At least one line, then up to `max` bytes.
    fn admits(&self, n: usize) -> bool {
        self.lines.is_empty() || self.used + n <= self.max
    }

    fn full(&self) -> bool {
        !self.lines.is_empty() && self.used >= self.max
    }
}

/// One open file and what was read from it.
struct Tail {
    file: File,
    id: FileId,
    /// Offset right after the last byte handed out.
    offset: u64,
    /// Bytes read from `offset` on, not handed out yet. Lines are handed out as shared slices of it: one
    /// allocation per chunk read, not one per line.
    buf: BytesMut,
    /// Truncation seen: hand out what is buffered, then read again from 0.
    truncated: bool,
}

impl fmt::Debug for Tail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tail")
            .field("id", &self.id)
            .field("offset", &self.offset)
            .field("buffered", &self.buf.len())
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl Tail {
    fn open(file: File, meta: &Metadata, offset: u64) -> io::Result<Tail> {
        let id = FileId::of(&file, meta)?;
        Ok(Tail::with_id(file, id, offset))
    }

    fn with_id(file: File, id: FileId, offset: u64) -> Tail {
        Tail {
            file,
            id,
            offset,
            buf: BytesMut::new(),
            truncated: false,
        }
    }

    fn position(&self, path: &Arc<Path>, offset: u64) -> Position {
        Position::File {
            path: Arc::clone(path),
            id: self.id.clone(),
            offset,
        }
    }

    /// Where the next read from the file starts.
    fn read_pos(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    fn has_data(&self) -> bool {
        self.file.metadata().map(|m| m.len() > 0).unwrap_or(false)
    }

    /// Hands out one line (or piece) of `len` bytes that consumes `consumed` bytes of the buffer.
    fn emit(&mut self, batch: &mut Batch, len: usize, consumed: usize) {
        let mut bytes = self.buf.split_to(consumed).freeze();
        bytes.truncate(len);
        self.offset += consumed as u64;
        batch.used += consumed;
        let end = self.position(&batch.path, self.offset);
        batch.lines.push(Line {
            bytes,
            end,
            read_at: batch.now,
        });
    }

    /// Hands out the complete lines in the buffer; `false` when the batch is full.
    fn take_lines(&mut self, batch: &mut Batch) -> bool {
        loop {
            let pending = &self.buf[..];
            let (len, consumed) = match memchr::memchr(b'\n', pending) {
                Some(i) => (strip_cr(&pending[..i]).len(), i + 1),
                None if pending.len() >= MAX_LINE_BYTES => {
                    // A piece of an over-long line; keep a `\r\n` together so no empty line follows.
                    let n = if pending[MAX_LINE_BYTES - 1] == b'\r' {
                        MAX_LINE_BYTES - 1
                    } else {
                        MAX_LINE_BYTES
                    };
                    (n, n)
                }
                None => return true,
            };
            if !batch.admits(consumed) {
                return false;
            }
            self.emit(batch, len, consumed);
        }
    }

    /// Hands out lines, reading more in chunks: `true` at the end of the file (or at a truncation, where
    /// nothing more may be read before [`Tail::restart`]), `false` when the batch is full.
    fn read(&mut self, batch: &mut Batch) -> io::Result<bool> {
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

    /// [`Tail::read`], and at a truncation hands out what was read before it (a partial last line as a
    /// line), then reads the file again from 0.
    fn read_through(&mut self, batch: &mut Batch) -> io::Result<bool> {
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
            self.restart();
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
    fn flush_partial(&mut self, batch: &mut Batch) -> bool {
        let pending = self.buf.len();
        if pending == 0 {
            return true;
        }
        if !batch.admits(pending) {
            return false;
        }
        let len = strip_cr(&self.buf).len();
        self.emit(batch, len, pending);
        true
    }

    /// Reads the (truncated) file again from its start, as a new file (with its new `id`).
    fn restart(&mut self) {
        self.offset = 0;
        self.buf.clear();
        self.truncated = false;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} `{}`: {e}", path.display()))
}

/// Opens `path` if it is a regular file; `None` when there is none.
fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let file = match File::open(path) {
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
