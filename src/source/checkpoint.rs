//! The checkpoint: where delivery stands, in `state_dir`, durable across crashes and power loss.
//!
//! Two files. `checkpoint.json` is a snapshot; `checkpoint.log` holds the changes since, one JSON
//! [`Record`] per line, each numbered. A change (a batch accepted, a minute published) appends its records
//! and syncs the file once: a store costs the same however many pending minutes the snapshot holds. Once
//! the log outgrows the snapshot (and [`COMPACT_AFTER_BYTES`]), a new snapshot is written (temporary file
//! opened with `O_EXCL | O_NOFOLLOW`, `sync_all`, rename, directory sync) and the log emptied. A snapshot
//! names the last record it includes, so a crash between the rename and the emptying replays nothing twice,
//! and a record cut short by a crash (the last line, without its newline) is dropped: it was never
//! acknowledged.
//!
//! [`load`] refuses files it does not understand instead of guessing, naming the file. What the records
//! mean is [`crate::daemon::ledger`]'s: this module only stores and reads them.
//!
//! Version 1 (a single `checkpoint.json` rewritten whole) is read, and written as version 2 at the first
//! compaction.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::counter::SavedMinute;
use crate::source::{Position, SourceKind};

/// The format version this build writes.
pub const VERSION: u32 = 2;

/// The snapshot's file name inside `state_dir`.
pub const FILE_NAME: &str = "checkpoint.json";

/// The log's file name inside `state_dir`.
pub const LOG_NAME: &str = "checkpoint.log";

const TMP_NAME: &str = ".checkpoint.json.tmp";

/// The log is compacted into a new snapshot once it is larger than this and than the snapshot: a few
/// thousand records, so compaction is rare and a store's cost does not grow with the snapshot.
pub const COMPACT_AFTER_BYTES: u64 = 256 * 1024;

/// The snapshot: where delivery stood after record `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`VERSION`] when written by this build (1 for the old single-file format).
    pub version: u32,
    /// The last record included (0: none).
    #[serde(default)]
    pub seq: u64,
    /// The kind of log this state directory follows (`None` in version 1).
    #[serde(default)]
    pub source: Option<SourceKind>,
    /// After the last line CloudWatch Logs accepted.
    pub shipped: Option<Position>,
    /// Counts of shipped lines whose minutes are not published yet.
    pub pending_minutes: Vec<SavedMinute>,
    /// Minutes handed to CloudWatch whose answer was not recorded: pending too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight_minutes: Vec<SavedMinute>,
}

impl Checkpoint {
    /// An empty checkpoint of the current version.
    pub fn new() -> Checkpoint {
        Checkpoint {
            version: VERSION,
            seq: 0,
            source: None,
            shipped: None,
            pending_minutes: Vec::new(),
            in_flight_minutes: Vec::new(),
        }
    }
}

impl Default for Checkpoint {
    fn default() -> Checkpoint {
        Checkpoint::new()
    }
}

/// One change of where delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The state directory follows this kind of log from now on.
    Source { kind: SourceKind },
    /// CloudWatch Logs accepted lines up to `shipped`; their counts join the pending minutes.
    Shipped {
        shipped: Option<Position>,
        minutes: Vec<SavedMinute>,
    },
    /// These pending minutes were handed to CloudWatch: counts arriving for them from now on are kept
    /// apart. Recorded only when another record follows before the answer.
    Taken { minutes: Vec<i64> },
    /// CloudWatch accepted the minutes in flight (`minutes`: those taken without a [`Record::Taken`]).
    Published { minutes: Vec<i64> },
    /// The minutes in flight were not accepted: they are pending again.
    Returned,
}

/// A record and its number, as one line of the log.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    #[serde(flatten)]
    record: Record,
}

/// What [`load`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub checkpoint: Checkpoint,
    /// The records after the snapshot, in order.
    pub records: Vec<Record>,
    /// When either file was last written; `None` when there is no checkpoint.
    pub written_at: Option<SystemTime>,
}

/// The snapshot's path in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Refuses a state directory others could write to: a forged checkpoint would skip or repeat lines.
pub fn check_state_dir(state_dir: &Path) -> anyhow::Result<()> {
    let meta = match fs::metadata(state_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read state directory `{}`", state_dir.display()));
        }
    };
    if !meta.is_dir() {
        bail!(
            "state directory `{}` is not a directory",
            state_dir.display()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "state directory `{}` is writable by group or others (mode {:04o}); make it 0700 (`chmod 0700`)",
            state_dir.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Reads the snapshot and the records after it; an empty [`Loaded`] when there is no checkpoint yet. A
/// corrupt file or an unknown version is an error naming the file.
pub fn load(state_dir: &Path) -> anyhow::Result<Loaded> {
    let file = path(state_dir);
    let mut loaded = Loaded::default();
    if let Some((text, at)) = read_if_there(&file)? {
        loaded.written_at = Some(at);
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
        }
        let corrupt = || {
            format!(
                "corrupt checkpoint `{}` (move it away to start afresh)",
                file.display()
            )
        };
        let probe: Probe = serde_json::from_slice(&text).with_context(corrupt)?;
        if probe.version != 1 && probe.version != VERSION {
            bail!(
                "checkpoint `{}` has version {}, this sshwatch understands versions 1 and {VERSION}",
                file.display(),
                probe.version
            );
        }
        loaded.checkpoint = serde_json::from_slice(&text).with_context(corrupt)?;
    }
    let log = state_dir.join(LOG_NAME);
    if let Some((text, at)) = read_if_there(&log)? {
        loaded.written_at = Some(loaded.written_at.map_or(at, |w| w.max(at)));
        loaded.records = parse_log(&text, loaded.checkpoint.seq)
            .with_context(|| format!("corrupt checkpoint log `{}`", log.display()))?;
    }
    Ok(loaded)
}

fn read_if_there(file: &Path) -> anyhow::Result<Option<(Vec<u8>, SystemTime)>> {
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", file.display())),
    };
    let mut text = Vec::new();
    f.read_to_end(&mut text)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let at = f
        .metadata()
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Some((text, at)))
}

/// The records of a log newer than `after`. A last line without its newline was cut short by a crash
/// and is dropped; anything else that does not parse is corruption.
fn parse_log(text: &[u8], after: u64) -> anyhow::Result<Vec<Record>> {
    let complete = match memchr::memrchr(b'\n', text) {
        Some(i) => &text[..=i],
        None => &text[..0],
    };
    let mut records = Vec::new();
    let mut last = after;
    for (n, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_slice(line)
            .with_context(|| format!("line {} does not parse", n + 1))?;
        if entry.seq <= after {
            continue;
        }
        if entry.seq != last + 1 {
            bail!(
                "line {} is record {}, expected {}",
                n + 1,
                entry.seq,
                last + 1
            );
        }
        last = entry.seq;
        records.push(entry.record);
    }
    Ok(records)
}

/// Appends records and compacts: the daemon's only writer of the checkpoint.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    log: File,
    /// The number of the last record written.
    seq: u64,
    log_bytes: u64,
    snapshot_bytes: u64,
    /// Unit tests of the daemon make writes fail with this.
    #[cfg(test)]
    pub(crate) failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    /// Opens the log for appending after what [`load`] found (`loaded`), creating `state_dir` (mode 0700)
    /// when missing. A record cut short by a crash is cut off the file.
    pub fn open(state_dir: &Path, loaded: &Loaded) -> anyhow::Result<Store> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .with_context(|| format!("cannot create state directory `{}`", state_dir.display()))?;
        let log_path = state_dir.join(LOG_NAME);
        // Append mode: every write lands at the end, also after the file was cut back or emptied.
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&log_path)
            .with_context(|| format!("cannot open `{}`", log_path.display()))?;
        let mut text = Vec::new();
        (&log)
            .read_to_end(&mut text)
            .with_context(|| format!("cannot read `{}`", log_path.display()))?;
        let complete = memchr::memrchr(b'\n', &text).map_or(0, |i| i + 1) as u64;
        if complete < text.len() as u64 {
            log.set_len(complete)
                .and_then(|()| log.sync_all())
                .with_context(|| format!("cannot repair `{}`", log_path.display()))?;
        }
        let snapshot_bytes = fs::metadata(path(state_dir)).map_or(0, |m| m.len());
        Ok(Store {
            dir: state_dir.to_path_buf(),
            log,
            seq: loaded.checkpoint.seq + loaded.records.len() as u64,
            log_bytes: complete,
            snapshot_bytes,
            #[cfg(test)]
            failing: Default::default(),
        })
    }

    /// Appends `records` durably: written, then synced once. Nothing is recorded when it fails (the
    /// file is cut back to where it was).
    pub fn append(&mut self, records: &[Record]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("cannot write `{}`: failing on purpose", LOG_NAME);
        }
        let mut text = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let entry = Entry {
                seq: self.seq + 1 + i as u64,
                record: record.clone(),
            };
            serde_json::to_writer(&mut text, &entry)
                .context("cannot encode a checkpoint record")?;
            text.push(b'\n');
        }
        let written = (&self.log)
            .write_all(&text)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // Leave no half record behind for the next try to follow.
            let _ = self.log.set_len(self.log_bytes);
            return Err(e)
                .with_context(|| format!("cannot write `{}`", self.dir.join(LOG_NAME).display()));
        }
        self.seq += records.len() as u64;
        self.log_bytes += text.len() as u64;
        Ok(())
    }

    /// Whether the log has outgrown the snapshot.
    pub fn should_compact(&self) -> bool {
        self.log_bytes > COMPACT_AFTER_BYTES.max(self.snapshot_bytes)
    }

    /// Writes `snapshot` (which must include every record written: its `seq` is set here) and empties
    /// the log.
    pub fn compact(&mut self, mut snapshot: Checkpoint) -> anyhow::Result<()> {
        snapshot.version = VERSION;
        snapshot.seq = self.seq;
        self.snapshot_bytes = write_snapshot(&self.dir, &snapshot)?;
        let log = self.dir.join(LOG_NAME);
        self.log
            .set_len(0)
            .and_then(|()| self.log.sync_all())
            .with_context(|| format!("cannot empty `{}`", log.display()))?;
        self.log_bytes = 0;
        Ok(())
    }
}

/// Writes a snapshot durably: a new temporary file (never through a link planted in its place),
/// `sync_all`, rename, fsync of the directory. Returns its size.
fn write_snapshot(state_dir: &Path, cp: &Checkpoint) -> anyhow::Result<u64> {
    let mut json = serde_json::to_vec_pretty(cp).context("cannot encode the checkpoint")?;
    json.push(b'\n');
    let tmp = state_dir.join(TMP_NAME);
    let dest = path(state_dir);
    let write = || -> io::Result<()> {
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()
    };
    write().with_context(|| format!("cannot write `{}`", tmp.display()))?;
    fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot rename `{}` to `{}`", tmp.display(), dest.display()))?;
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync state directory `{}`", state_dir.display()))?;
    Ok(json.len() as u64)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::source::FileId;

    fn pos(offset: u64) -> Position {
        Position::File {
            path: Path::new("/var/log/secure").into(),
            id: FileId {
                dev: 2049,
                ino: 1234,
                fingerprint: 0xdead_beef,
                fingerprint_len: 256,
            },
            offset,
        }
    }

    fn minute(lines: u64) -> SavedMinute {
        SavedMinute {
            minute: 1_700_000_040,
            values: vec![("SSH".into(), "FailedPasswordMetrics".into(), 3.0)],
            lines,
        }
    }

    fn shipped(offset: u64) -> Record {
        Record::Shipped {
            shipped: Some(pos(offset)),
            minutes: vec![minute(offset)],
        }
    }

    #[test]
    fn absent_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(dir.path()).unwrap();
        assert!(loaded.written_at.is_none());
        assert_eq!(loaded.checkpoint, Checkpoint::new());
    }

    #[test]
    fn records_survive_and_a_snapshot_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        let mut store = Store::open(&state, &load(&state).unwrap()).unwrap();
        store.append(&[shipped(10)]).unwrap();
        store
            .append(&[Record::Taken { minutes: vec![60] }, shipped(20)])
            .unwrap();
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let loaded = load(&state).unwrap();
        assert!(loaded.written_at.is_some());
        assert_eq!(
            loaded.records,
            vec![
                shipped(10),
                Record::Taken { minutes: vec![60] },
                shipped(20)
            ]
        );
        // Compaction: the snapshot includes records 1..=3 and the log is empty.
        let mut snap = Checkpoint::new();
        snap.shipped = Some(pos(20));
        store.compact(snap.clone()).unwrap();
        store.append(&[Record::Returned]).unwrap();
        let loaded = load(&state).unwrap();
        assert_eq!(loaded.checkpoint.seq, 3);
        assert_eq!(loaded.checkpoint.shipped, Some(pos(20)));
        assert_eq!(loaded.records, vec![Record::Returned]);
        assert!(!state.join(TMP_NAME).exists());
    }

    #[test]
    fn a_crash_between_snapshot_and_emptying_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), &Loaded::default()).unwrap();
        store.append(&[shipped(1), shipped(2)]).unwrap();
        let mut snap = Checkpoint::new();
        snap.seq = 2;
        write_snapshot(dir.path(), &snap).unwrap();
        // The log was not emptied: its records are older than the snapshot.
        let loaded = load(dir.path()).unwrap();
        assert!(loaded.records.is_empty());
        let mut store = Store::open(dir.path(), &loaded).unwrap();
        store.append(&[shipped(3)]).unwrap();
        assert_eq!(load(dir.path()).unwrap().records, vec![shipped(3)]);
    }

    #[test]
    fn a_record_cut_short_is_dropped_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), &Loaded::default()).unwrap();
        store.append(&[shipped(1)]).unwrap();
        drop(store);
        let log = dir.path().join(LOG_NAME);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"seq\":2,\"record\":\"ship").unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.records, vec![shipped(1)]);
        let mut store = Store::open(dir.path(), &loaded).unwrap();
        store.append(&[Record::Returned]).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().records,
            vec![shipped(1), Record::Returned]
        );
    }

    #[test]
    fn the_log_compacts_once_it_outgrows_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), &Loaded::default()).unwrap();
        let mut n = 0;
        while !store.should_compact() {
            n += 1;
            store.append(&[shipped(n)]).unwrap();
        }
        assert!(n > 100, "{n}");
        store.compact(Checkpoint::new()).unwrap();
        assert!(!store.should_compact());
        assert_eq!(load(dir.path()).unwrap().checkpoint.seq, n);
    }

    #[test]
    fn version_1_loads() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            br#"{"version": 1, "shipped": {"kind": "journal", "cursor": "s=1"}, "counted": null,
                "pending_minutes": [{"minute": 1700000040, "values": [["SSH", "A", 2.0]], "lines": 3}]}"#,
        )
        .unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.checkpoint.version, 1);
        assert_eq!(loaded.checkpoint.seq, 0);
        assert_eq!(loaded.checkpoint.pending_minutes[0].lines, 3);
        assert_eq!(
            loaded.checkpoint.shipped,
            Some(Position::Journal {
                cursor: "s=1".into()
            })
        );
    }

    #[test]
    fn corrupt_files_and_unknown_versions_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\": 2, \"shipped\": ",
        )
        .unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(
            e.contains("corrupt checkpoint") && e.contains(FILE_NAME),
            "{e}"
        );
        fs::write(dir.path().join(FILE_NAME), b"{\"version\": 9}").unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains("version 9") && e.contains(FILE_NAME), "{e}");
        fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        fs::write(dir.path().join(LOG_NAME), b"garbage\n{}\n").unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains(LOG_NAME), "{e}");
    }

    #[test]
    fn a_link_planted_as_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(TMP_NAME)).unwrap();
        write_snapshot(dir.path(), &Checkpoint::new()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(load(dir.path()).unwrap().checkpoint.seq == 0);
    }

    #[test]
    fn a_state_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_state_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_state_dir(dir.path()).is_ok());
        assert!(check_state_dir(&dir.path().join("missing")).is_ok());
    }
}
