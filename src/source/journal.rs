//! The journald source: sshd's journal entries rendered as traditional syslog lines.
//!
//! Hosts without rsyslog (Amazon Linux 2023, Debian 12+) have no `/var/log/secure`, only the journal.
//! [`JournalSource`] follows the entries of `sshd` and `sshd-session` (OpenSSH ≥ 9.8), matched on
//! `SYSLOG_IDENTIFIER` or `_COMM`, and renders each as the line rsyslog's traditional template would
//! have written, `Mmm dd HH:MM:SS host ident[pid]: MESSAGE` (day space-padded, local time), so the
//! seed's patterns apply unchanged. Each [`Line`] ends at [`Position::Journal`] with the entry's
//! cursor, which the daemon checkpoints like a file offset: after a restart reading resumes right
//! after the last shipped entry.
//!
//! The entries come from journalctl run as a child process (see ARCHITECTURE.md for why not the
//! sd-journal C API): no C library to link, no `unsafe`, and journalctl already handles journal
//! rotation, vacuuming, corruption and seeking to a cursor. Each (re)start runs it twice:
//! 1. `journalctl -o json --cursor=C` without `--follow` prints every entry from the cursor to now, of
//!    every boot. `--follow` cannot do this alone: from systemd 250 it implies `--boot` (a
//!    `_BOOT_ID` match for the current boot), so after a reboot it would skip the entries the previous
//!    boot wrote after the checkpoint;
//! 2. `journalctl -o json --follow --cursor=C'`, from the last entry the first run printed.
//!
//! Both start *at* the cursor and drop the entry carrying it, rather than using `--after-cursor`:
//! `--after-cursor` skips one entry on the assumption that the cursor's entry matches the filter, which
//! an entry of an earlier boot no longer does under `--follow`'s boot match, and the first entry of the
//! new boot would be skipped.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, error, warn};

use crate::config::{SourceConfig, StartPosition};
use crate::source::{Line, Lines, Position};

/// The identifiers whose entries are read: OpenSSH < 9.8 logs everything as `sshd`, from 9.8 on the
/// per-connection processes log as `sshd-session`.
pub const IDENTIFIERS: [&str; 2] = ["sshd", "sshd-session"];

/// Rendered entries buffered between journalctl and the daemon, at most: when CloudWatch is slow the
/// daemon stops asking, this fills, the pipe fills, and journalctl waits; the journal is the buffer.
const CHANNEL_ENTRIES: usize = 4096;

/// Bytes of rendered entries buffered between journalctl and the daemon, at most (an entry larger than
/// this takes the whole budget alone). Any local user can log as `sshd`, with entries of megabytes.
const CHANNEL_BYTES: usize = 4 << 20;

/// Longest JSON line accepted from journalctl: journald keeps entries of a few MiB at most, which
/// journalctl's JSON (binary fields as arrays of numbers) makes a few times longer. A longer line is
/// skipped with an ERROR.
const MAX_JSON_LINE: usize = 16 << 20;

/// Pause before restarting journalctl after it exited or could not start, doubling up to
/// [`MAX_RESTART_DELAY`] while it keeps failing.
const RESTART_DELAY: Duration = Duration::from_secs(2);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// journalctl running this long counts as started well: the next failure waits [`RESTART_DELAY`] again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Where the journal lives by default (`Storage=persistent` and `volatile`).
const JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// Whether this host keeps a journal: a journal file in one of the standard directories.
pub fn available() -> bool {
    JOURNAL_DIRS.iter().any(|d| has_journal_files(Path::new(d)))
}

/// A `*.journal` file in `dir` or one level below (`<machine-id>/system.journal`).
fn has_journal_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            std::fs::read_dir(&p).is_ok_and(|inner| {
                inner
                    .flatten()
                    .any(|f| f.path().extension().is_some_and(|x| x == "journal"))
            })
        } else {
            p.extension().is_some_and(|x| x == "journal")
        }
    })
}

/// How to run journalctl.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// The journalctl executable.
    pub journalctl: PathBuf,
    /// `--directory`: read this journal directory instead of the system's (tests, containers).
    pub directory: Option<PathBuf>,
    /// Where to start without a resume cursor.
    pub start: StartPosition,
}

impl JournalOptions {
    /// The options for `[source]`: the system journal, `journalctl` from `PATH`.
    pub fn from_config(config: &SourceConfig) -> JournalOptions {
        JournalOptions {
            journalctl: PathBuf::from("journalctl"),
            directory: None,
            start: config.start_position,
        }
    }

    /// The arguments that select sshd's entries: `SYSLOG_IDENTIFIER=sshd SYSLOG_IDENTIFIER=sshd-session +
    /// _COMM=sshd _COMM=sshd-session` (matches on one field are OR-ed, `+` OR-s the two groups).
    fn matches() -> Vec<String> {
        let mut args: Vec<String> = IDENTIFIERS
            .iter()
            .map(|i| format!("SYSLOG_IDENTIFIER={i}"))
            .collect();
        args.push("+".to_string());
        args.extend(IDENTIFIERS.iter().map(|i| format!("_COMM={i}")));
        args
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.journalctl);
        cmd.args(["--output=json", "--all", "--no-pager", "--quiet"]);
        if let Some(dir) = &self.directory {
            cmd.arg("--directory").arg(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }

    /// journalctl from `cursor` (its entry included), or from the first matching entry: what the
    /// journal holds now ([`Run::CatchUp`]), or that and then every new entry ([`Run::Follow`]).
    fn spawn(&self, run: Run, cursor: Option<&str>) -> io::Result<Child> {
        let mut cmd = self.command();
        if run == Run::Follow {
            cmd.arg("--follow");
            if cursor.is_none() {
                cmd.arg("--no-tail");
            }
        }
        if let Some(c) = cursor {
            cmd.arg(format!("--cursor={c}"));
        }
        cmd.args(Self::matches());
        cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `{}`: {e}", self.journalctl.display()),
            )
        })
    }

    /// The cursor of the newest matching entry (`None` when there is none), for `start_position = "end"`.
    async fn newest_cursor(&self) -> io::Result<Option<String>> {
        let mut cmd = self.command();
        cmd.args(["--lines=1"]).args(Self::matches());
        let out = cmd.output().await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `{}`: {e}", self.journalctl.display()),
            )
        })?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`{}` failed with {}",
                self.journalctl.display(),
                out.status
            )));
        }
        let last = out.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty());
        Ok(last
            .and_then(|l| serde_json::from_slice::<Map<String, Value>>(l).ok())
            .and_then(|m| {
                m.get("__CURSOR")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }))
    }
}

/// A rendered entry and its share of [`CHANNEL_BYTES`], given back when the daemon takes the line.
#[derive(Debug)]
struct Budgeted {
    line: Line,
    _bytes: OwnedSemaphorePermit,
}

/// Follows sshd's journal entries; the journal twin of [`crate::source::FileSource`].
#[derive(Debug)]
pub struct JournalSource {
    rx: mpsc::Receiver<io::Result<Budgeted>>,
    /// A line that did not fit into the last batch.
    pending: Option<Budgeted>,
    /// An error that arrived after lines of the last batch.
    pending_err: Option<io::Error>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JournalSource {
    fn drop(&mut self) {
        // The task owns the child, which is killed when dropped.
        self.task.abort();
    }
}

impl JournalSource {
    /// Opens the journal at `resume` (a journal position; any other resume position, or none, starts
    /// per `start_position`). Must be called inside a tokio runtime.
    pub fn new(config: &SourceConfig, resume: Option<Position>) -> io::Result<JournalSource> {
        JournalSource::with_options(JournalOptions::from_config(config), resume)
    }

    /// [`JournalSource::new`] with explicit options.
    pub fn with_options(
        options: JournalOptions,
        resume: Option<Position>,
    ) -> io::Result<JournalSource> {
        let cursor = match resume {
            Some(Position::Journal { cursor }) => Some(cursor),
            _ => None,
        };
        // Fail early, with a clear message, when journalctl cannot run at all.
        if options.journalctl.components().count() > 1 && !options.journalctl.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("`{}` does not exist", options.journalctl.display()),
            ));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_ENTRIES);
        let budget = Arc::new(Semaphore::new(CHANNEL_BYTES));
        let task = tokio::spawn(read_journal(options, cursor, tx, budget));
        Ok(JournalSource {
            rx,
            pending: None,
            pending_err: None,
            task,
        })
    }

    /// Waits until at least one entry is available, then returns up to `max_bytes` of rendered lines
    /// (at least one). Cancel-safe.
    pub async fn next_lines(&mut self, max_bytes: usize) -> io::Result<Lines> {
        if let Some(e) = self.pending_err.take() {
            return Err(e);
        }
        let first = match self.pending.take() {
            Some(b) => b,
            None => match self.rx.recv().await {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(e),
                None => return Err(io::Error::other("the journal reader stopped")),
            },
        };
        let mut size = first.line.bytes.len();
        let mut lines = vec![first.line];
        let mut at_end = true;
        while size < max_bytes {
            match self.rx.try_recv() {
                Ok(Ok(b)) => {
                    if size + b.line.bytes.len() > max_bytes {
                        self.pending = Some(b);
                        at_end = false;
                        break;
                    }
                    size += b.line.bytes.len();
                    lines.push(b.line);
                }
                Ok(Err(e)) => {
                    self.pending_err = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        if size >= max_bytes {
            at_end = false;
        }
        Ok(Lines { lines, at_end })
    }
}

/// The reader task: runs journalctl, renders its entries, restarts it after the last cursor read.
async fn read_journal(
    options: JournalOptions,
    mut cursor: Option<String>,
    tx: mpsc::Sender<io::Result<Budgeted>>,
    budget: Arc<Semaphore>,
) {
    let mut need_newest = cursor.is_none() && options.start == StartPosition::End;
    let mut delay = Duration::ZERO;
    loop {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        delay = (delay * 2).clamp(RESTART_DELAY, MAX_RESTART_DELAY);
        if need_newest {
            match options.newest_cursor().await {
                Ok(c) => {
                    cursor = c;
                    need_newest = false;
                }
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let mut run = Run::CatchUp;
        loop {
            // The entry at the cursor was read before: the run starts there and drops it.
            let start = cursor.clone();
            let mut child = match options.spawn(run, start.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    break;
                }
            };
            let Some(stdout) = child.stdout.take() else {
                break;
            };
            let started = tokio::time::Instant::now();
            let outcome = pump(stdout, start.as_deref(), &mut cursor, &tx, &budget).await;
            if run == Run::Follow && started.elapsed() >= HEALTHY_RUN {
                delay = RESTART_DELAY;
            }
            match outcome {
                Pumped::ReceiverGone => return,
                Pumped::Eof => {
                    let status = child.wait().await;
                    if run == Run::CatchUp && status.as_ref().is_ok_and(|s| s.success()) {
                        run = Run::Follow;
                        continue;
                    }
                    let status = match status {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    };
                    warn!(
                        status = %status,
                        cursor = ?cursor,
                        delay_ms = delay.as_millis() as u64,
                        "journalctl exited ({status}; its own message is just above); restarting it in {} s after the last entry read",
                        delay.as_secs()
                    );
                }
                Pumped::Error(e) => {
                    warn!(
                        error = %e,
                        delay_ms = delay.as_millis() as u64,
                        "cannot read from journalctl ({e}); restarting it in {} s after the last entry read",
                        delay.as_secs()
                    );
                }
            }
            break;
        }
    }
}

/// The two runs of journalctl, see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Every entry from the cursor to now, of every boot; exits at the end.
    CatchUp,
    /// Every entry from the cursor on, waiting for new ones.
    Follow,
}

enum Pumped {
    Eof,
    ReceiverGone,
    Error(io::Error),
}

/// Reads journalctl's JSON lines, sends the rendered lines, keeps `cursor` at the last one read. The
/// entry at `start` (read before) is dropped.
async fn pump(
    stdout: impl AsyncRead + Unpin,
    start: Option<&str>,
    cursor: &mut Option<String>,
    tx: &mpsc::Sender<io::Result<Budgeted>>,
    budget: &Arc<Semaphore>,
) -> Pumped {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_capped_line(&mut reader, &mut buf).await {
            Ok(None) => return Pumped::Eof,
            Ok(Some(false)) => {
                error!(
                    max = MAX_JSON_LINE,
                    after_cursor = ?cursor,
                    "skipped a journal entry longer than {MAX_JSON_LINE} bytes of JSON: its message is not shipped"
                );
                continue;
            }
            Ok(Some(true)) => {}
            Err(e) => return Pumped::Error(e),
        }
        let Ok(entry) = serde_json::from_slice::<Map<String, Value>>(&buf) else {
            debug!("skipped a journalctl line that is not a JSON object");
            continue;
        };
        let Some(rendered) = render_entry(&entry, &chrono::Local) else {
            continue;
        };
        if start == Some(rendered.cursor.as_str()) {
            continue;
        }
        *cursor = Some(rendered.cursor.clone());
        let share = u32::try_from(rendered.line.len().clamp(1, CHANNEL_BYTES)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(budget).acquire_many_owned(share).await else {
            return Pumped::ReceiverGone;
        };
        let line = Line {
            bytes: rendered.line.into(),
            end: Position::Journal {
                cursor: rendered.cursor,
            },
            read_at: SystemTime::now(),
            continues: false,
        };
        let budgeted = Budgeted {
            line,
            _bytes: permit,
        };
        if tx.send(Ok(budgeted)).await.is_err() {
            return Pumped::ReceiverGone;
        }
    }
}

/// One line into `buf` (terminator stripped): `None` at EOF, `Some(false)` when it was longer than
/// [`MAX_JSON_LINE`] (then discarded), `Some(true)` otherwise.
async fn read_capped_line(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
    buf: &mut Vec<u8>,
) -> io::Result<Option<bool>> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if any { Some(!too_long) } else { None });
        }
        any = true;
        let (used, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let data = &chunk[..if done { used - 1 } else { used }];
        if !too_long {
            if buf.len() + data.len() > MAX_JSON_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(data);
            }
        }
        reader.consume(used);
        if done {
            return Ok(Some(!too_long));
        }
    }
}

/// A journal entry rendered as a syslog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub line: Vec<u8>,
    pub cursor: String,
}

/// A field's bytes: journalctl writes text as a string, binary data as an array of byte values,
/// and a field that occurs several times as an array of those (the first is taken).
fn field_bytes(entry: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    fn bytes(v: &Value) -> Option<Vec<u8>> {
        match v {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Array(items) if items.iter().all(Value::is_u64) => items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect(),
            Value::Array(items) => items.first().and_then(bytes),
            _ => None,
        }
    }
    entry.get(name).and_then(bytes)
}

fn field_text(entry: &Map<String, Value>, name: &str) -> Option<String> {
    field_bytes(entry, name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Renders one `journalctl -o json` entry as `Mmm dd HH:MM:SS host ident[pid]: MESSAGE` in `tz`;
/// `None` for an entry without a cursor or a message.
pub fn render_entry<Tz: chrono::TimeZone>(entry: &Map<String, Value>, tz: &Tz) -> Option<Rendered>
where
    Tz::Offset: std::fmt::Display,
{
    let cursor = entry.get("__CURSOR")?.as_str()?.to_string();
    let message = field_bytes(entry, "MESSAGE")?;
    // journalctl's choice: the time the sender stamped, else the time journald received it.
    let micros: i64 = ["_SOURCE_REALTIME_TIMESTAMP", "__REALTIME_TIMESTAMP"]
        .iter()
        .find_map(|k| field_text(entry, k)?.parse().ok())?;
    let time = tz.timestamp_micros(micros).single()?;
    let host = field_text(entry, "_HOSTNAME").unwrap_or_else(|| "localhost".to_string());
    let ident = field_text(entry, "SYSLOG_IDENTIFIER")
        .or_else(|| field_text(entry, "_COMM"))
        .unwrap_or_else(|| "sshd".to_string());
    let pid = field_text(entry, "SYSLOG_PID").or_else(|| field_text(entry, "_PID"));
    let mut line = format!(
        "{} {} {}",
        time.format("%b %e %H:%M:%S"),
        token(&host),
        token(&ident)
    );
    if let Some(pid) = pid {
        line.push('[');
        line.push_str(&token(&pid));
        line.push(']');
    }
    line.push_str(": ");
    let mut bytes = line.into_bytes();
    escape_message(&message, &mut bytes);
    Some(Rendered {
        line: bytes,
        cursor,
    })
}

/// A field that must stay one blank-free token of the envelope.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "-".to_string() } else { t }
}

/// Appends `message` as rsyslog writes it: one trailing newline dropped, other control characters
/// as `#ooo` (`$EscapeControlCharactersOnReceive`), so an entry is always exactly one line.
fn escape_message(message: &[u8], out: &mut Vec<u8>) {
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    for &b in message {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("#{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn renders_like_rsyslog_traditional() {
        let e = entry(
            r#"{"SYSLOG_TIMESTAMP":"Nov 26 16:03:12 ","_PID":"8429","_HOSTNAME":"vm","SYSLOG_PID":"8429","__CURSOR":"s=1;i=165","_SOURCE_REALTIME_TIMESTAMP":"1795708992300726","MESSAGE":"Invalid user admin from 127.0.0.1 port 39724","__REALTIME_TIMESTAMP":"1795708992300744","SYSLOG_IDENTIFIER":"sshd-session","_COMM":"sshd-session"}"#,
        );
        let r = render_entry(&e, &chrono::Utc).expect("rendered");
        assert_eq!(
            String::from_utf8(r.line).expect("utf8"),
            "Nov 26 16:03:12 vm sshd-session[8429]: Invalid user admin from 127.0.0.1 port 39724"
        );
        assert_eq!(r.cursor, "s=1;i=165");
    }

    #[test]
    fn pads_the_day_with_a_space_and_escapes_controls() {
        // 2026-03-05T01:02:03Z
        let e = entry(
            r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1772672523000000","MESSAGE":[70,97,105,108,10,241,9,120,10],"_COMM":"sshd","_HOSTNAME":"my host"}"#,
        );
        let r = render_entry(&e, &chrono::Utc).expect("rendered");
        assert_eq!(
            r.line,
            b"Mar  5 01:02:03 my_host sshd: Fail#012\xf1#011x".to_vec()
        );
    }

    #[test]
    fn skips_entries_without_cursor_or_message() {
        assert!(
            render_entry(
                &entry(r#"{"MESSAGE":"x","__REALTIME_TIMESTAMP":"1"}"#),
                &chrono::Utc
            )
            .is_none()
        );
        assert!(
            render_entry(
                &entry(r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1"}"#),
                &chrono::Utc
            )
            .is_none()
        );
    }

    #[tokio::test]
    async fn the_channel_holds_a_bounded_number_of_bytes_whatever_the_entries() {
        // Ten entries of 1 MiB each, as any local user can log as `sshd`.
        let message = "x".repeat(1 << 20);
        let mut data = Vec::new();
        for i in 0..10 {
            data.extend(
                format!(
                    r#"{{"__CURSOR":"c{i}","__REALTIME_TIMESTAMP":"1","MESSAGE":"{message}"}}"#
                )
                .bytes(),
            );
            data.push(b'\n');
        }
        let (tx, mut rx) = mpsc::channel(CHANNEL_ENTRIES);
        let budget = Arc::new(Semaphore::new(CHANNEL_BYTES));
        let pump = tokio::spawn(async move {
            let mut cursor = None;
            let out = pump(std::io::Cursor::new(data), None, &mut cursor, &tx, &budget).await;
            (matches!(out, Pumped::Eof), cursor)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let waiting = rx.len();
        assert!((1..=4).contains(&waiting), "{waiting} MiB-entries buffered");
        let mut got = 0;
        while let Some(entry) = rx.recv().await {
            assert!(entry.is_ok());
            got += 1;
            assert!(rx.len() <= 4);
            if got == 10 {
                break;
            }
        }
        let (eof, cursor) = pump.await.unwrap_or((false, None));
        assert!(eof);
        assert_eq!(cursor.as_deref(), Some("c9"));
    }

    #[tokio::test]
    async fn the_entry_at_the_start_cursor_is_dropped_and_no_other() {
        let mut data = Vec::new();
        for i in [0, 1, 2] {
            data.extend(
                format!(r#"{{"__CURSOR":"c{i}","__REALTIME_TIMESTAMP":"1","MESSAGE":"m{i}"}}"#)
                    .bytes(),
            );
            data.push(b'\n');
        }
        let (tx, mut rx) = mpsc::channel(CHANNEL_ENTRIES);
        let budget = Arc::new(Semaphore::new(CHANNEL_BYTES));
        let mut cursor = Some("c0".to_string());
        let out = pump(&data[..], Some("c0"), &mut cursor, &tx, &budget).await;
        assert!(matches!(out, Pumped::Eof));
        drop(tx);
        let mut ends = Vec::new();
        while let Some(Ok(b)) = rx.recv().await {
            ends.push(b.line.end);
        }
        let cursors: Vec<Position> = ["c1", "c2"]
            .map(|c| Position::Journal { cursor: c.into() })
            .into();
        assert_eq!(ends, cursors);
        assert_eq!(cursor.as_deref(), Some("c2"));
    }

    #[tokio::test]
    async fn caps_long_lines() {
        let mut data = vec![b'x'; MAX_JSON_LINE + 10];
        data.extend_from_slice(b"\n{}\nlast");
        let mut reader = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_capped_line(&mut reader, &mut buf).await.expect("read"),
            Some(false)
        );
        buf.clear();
        assert_eq!(
            read_capped_line(&mut reader, &mut buf).await.expect("read"),
            Some(true)
        );
        assert_eq!(buf, b"{}");
        buf.clear();
        assert_eq!(
            read_capped_line(&mut reader, &mut buf).await.expect("read"),
            Some(true)
        );
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(
            read_capped_line(&mut reader, &mut buf).await.expect("read"),
            None
        );
    }
}
