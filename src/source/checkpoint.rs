//! The checkpoint: where delivery stands, in `state_dir/checkpoint.json`, versioned and written atomically.
//!
//! [`store`] writes a temporary file, `sync_all`s it, renames it over `checkpoint.json` and fsyncs the
//! directory, so after a crash (`kill -9`, power loss) the file holds either the old or the new checkpoint,
//! never a mix. [`load`] refuses a file it does not understand instead of guessing, naming the file.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::source::Position;

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "checkpoint.json";

const TMP_NAME: &str = ".checkpoint.json.tmp";

/// Where delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`VERSION`] when written by this build.
    pub version: u32,
    /// After the last line CloudWatch Logs accepted.
    pub shipped: Option<Position>,
    /// After the last line whose minute CloudWatch accepted in PutMetricData.
    pub counted: Option<Position>,
    /// Counts of shipped lines whose minutes are not published yet.
    pub pending_minutes: Vec<MinuteCounts>,
}

impl Checkpoint {
    /// An empty checkpoint of the current version.
    pub fn new() -> Checkpoint {
        Checkpoint {
            version: VERSION,
            shipped: None,
            counted: None,
            pending_minutes: Vec::new(),
        }
    }
}

impl Default for Checkpoint {
    fn default() -> Checkpoint {
        Checkpoint::new()
    }
}

/// One minute's counts, kept until published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinuteCounts {
    /// Unix seconds, a multiple of 60.
    pub minute: i64,
    /// `(namespace, metric, value)`.
    pub values: Vec<(String, String, f64)>,
    /// Lines read in this minute.
    pub lines: u64,
}

/// The checkpoint file's path in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the checkpoint; `Ok(None)` when there is none yet. A corrupt file or an unknown version is an
/// error naming the file.
pub fn load(state_dir: &Path) -> anyhow::Result<Option<Checkpoint>> {
    let file = path(state_dir);
    let text = match fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read checkpoint `{}`", file.display()));
        }
    };
    #[derive(Deserialize)]
    struct Probe {
        version: u32,
    }
    let probe: Probe = serde_json::from_slice(&text).with_context(|| {
        format!(
            "corrupt checkpoint `{}` (move it away to start afresh)",
            file.display()
        )
    })?;
    if probe.version != VERSION {
        bail!(
            "checkpoint `{}` has version {}, this sshwatch understands version {VERSION}",
            file.display(),
            probe.version
        );
    }
    let cp: Checkpoint = serde_json::from_slice(&text).with_context(|| {
        format!(
            "corrupt checkpoint `{}` (move it away to start afresh)",
            file.display()
        )
    })?;
    Ok(Some(cp))
}

/// Writes the checkpoint durably: temporary file, `sync_all`, rename, fsync of the directory. Creates
/// `state_dir` (mode 0700) when missing.
pub fn store(state_dir: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("cannot create state directory `{}`", state_dir.display()))?;
    let json = serde_json::to_vec_pretty(cp).context("cannot encode the checkpoint")?;
    let tmp = state_dir.join(TMP_NAME);
    let dest = path(state_dir);
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write().with_context(|| format!("cannot write `{}`", tmp.display()))?;
    fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot rename `{}` to `{}`", tmp.display(), dest.display()))?;
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync state directory `{}`", state_dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::source::FileId;

    fn sample() -> Checkpoint {
        let pos = Position::File {
            path: Path::new("/var/log/secure").into(),
            id: FileId {
                dev: 2049,
                ino: 1234,
                fingerprint: 0xdead_beef,
                fingerprint_len: 256,
            },
            offset: 4096,
        };
        Checkpoint {
            version: VERSION,
            shipped: Some(pos.clone()),
            counted: Some(Position::Journal {
                cursor: "s=abc;i=1".into(),
            }),
            pending_minutes: vec![MinuteCounts {
                minute: 1_700_000_040,
                values: vec![("SSH".into(), "FailedPasswords".into(), 3.0)],
                lines: 17,
            }],
        }
    }

    #[test]
    fn absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
    }

    #[test]
    fn store_then_load_round_trips_and_creates_a_private_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        store(&state, &sample()).unwrap();
        assert_eq!(load(&state).unwrap(), Some(sample()));
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(!state.join(TMP_NAME).exists());
        let text = fs::read_to_string(state.join(FILE_NAME)).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"kind\": \"file\""), "{text}");
        // A second store replaces the first.
        let mut next = sample();
        next.pending_minutes.clear();
        store(&state, &next).unwrap();
        assert_eq!(load(&state).unwrap(), Some(next));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\": 1, \"shipped\": ",
        )
        .unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(
            e.contains("corrupt checkpoint") && e.contains(FILE_NAME),
            "{e}"
        );
    }

    #[test]
    fn unknown_version_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\": 2, \"whatever\": true}",
        )
        .unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains("version 2") && e.contains(FILE_NAME), "{e}");
    }
}
