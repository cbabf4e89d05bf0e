//! The file tailer on real temp files: appends, partial lines, every rotation kind, restarts, odd bytes, and a
//! randomized write/rotate/truncate/restart model checked against what was written.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sshwatch::config::{SourceConfig, StartPosition};
use sshwatch::source::{
    CHUNK_BYTES, FINGERPRINT_BYTES, FileId, FileSource, Line, MAX_LINE_BYTES, Position, checkpoint,
};

/// Short, so the safety-net stat is exercised too.
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for lines that must come.
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing comes" is watched for.
const QUIET: Duration = Duration::from_millis(250);
/// Enough for any batch in these tests.
const ALL: usize = 1 << 22;

struct Env {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secure");
        Env { dir, path }
    }

    fn config(&self, start: StartPosition) -> SourceConfig {
        SourceConfig {
            file_path: self.path.clone(),
            state_dir: self.dir.path().join("state"),
            journal: Some(false),
            expand_repeated: false,
            start_position: start,
            poll_interval: POLL,
        }
    }

    fn source(&self, start: StartPosition, resume: Option<Position>) -> FileSource {
        FileSource::new(&self.config(start), resume, None).unwrap()
    }

    fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Appends with a fresh descriptor, as a short-lived writer would.
    fn append(&self, bytes: &[u8]) {
        append_to(&self.path, bytes);
    }

    /// A long-lived writer (rsyslog-like): keeps its descriptor across renames.
    fn writer(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap()
    }
}

fn append_to(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn numbered(range: std::ops::Range<usize>, tag: &str) -> (Vec<String>, Vec<u8>) {
    let lines: Vec<String> = range
        .map(|i| format!("{tag} line {i:04} sshd[{}]: Failed password", 1000 + i))
        .collect();
    let mut bytes = Vec::new();
    for l in &lines {
        bytes.extend_from_slice(l.as_bytes());
        bytes.push(b'\n');
    }
    (lines, bytes)
}

fn texts(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

fn offset_of(p: &Position) -> u64 {
    match p {
        Position::File { offset, .. } => *offset,
        Position::Journal { .. } => panic!("a file source gave a journal position"),
    }
}

fn id_of(p: &Position) -> &FileId {
    match p {
        Position::File { id, .. } => id,
        Position::Journal { .. } => panic!("a file source gave a journal position"),
    }
}

/// Reads until `n` lines have come (more is a failure too).
async fn read_n(src: &mut FileSource, n: usize) -> Vec<Line> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(WAIT, src.next_lines(ALL)).await {
            Ok(r) => got.extend(r.unwrap().lines),
            Err(_) => panic!(
                "timed out after {} of {n} lines: {:?}",
                got.len(),
                texts(&got)
            ),
        }
    }
    assert_eq!(got.len(), n, "more lines than expected: {:?}", texts(&got));
    got
}

async fn expect_quiet(src: &mut FileSource) {
    if let Ok(r) = tokio::time::timeout(QUIET, src.next_lines(ALL)).await {
        panic!("expected no lines, got {:?}", texts(&r.unwrap().lines));
    }
}

#[tokio::test]
async fn appended_lines_come_exactly_with_positions() {
    let env = Env::new();
    env.append(b"one\ntwo\r\nthree\n");
    let mut src = env.source(StartPosition::Beginning, None);
    let got = read_n(&mut src, 3).await;
    assert_eq!(texts(&got), ["one", "two", "three"]);
    let offsets: Vec<u64> = got.iter().map(|l| offset_of(&l.end)).collect();
    assert_eq!(offsets, [4, 9, 15]);
    for l in &got {
        let Position::File { path, .. } = &l.end else {
            unreachable!()
        };
        assert_eq!(&**path, env.path.as_path());
    }
    expect_quiet(&mut src).await;

    env.append(b"four\n");
    assert_eq!(texts(&read_n(&mut src, 1).await), ["four"]);
    assert_eq!(src.status().lines_read, 4);
    assert_eq!(src.status().bytes_read, 20);
    assert_eq!(src.current_position().map(|p| offset_of(&p)), Some(20));
}

#[tokio::test]
async fn start_at_end_skips_old_content_but_keeps_a_line_being_written() {
    let env = Env::new();
    env.append(b"old one\nold two\nhalf");
    let mut src = env.source(StartPosition::End, None);
    expect_quiet(&mut src).await;
    env.append(b" written\nnew\n");
    assert_eq!(texts(&read_n(&mut src, 2).await), ["half written", "new"]);
}

#[tokio::test]
async fn a_partial_line_waits_for_its_newline() {
    let env = Env::new();
    env.append(b"");
    let mut src = env.source(StartPosition::End, None);
    env.append(b"Accepted publickey for");
    expect_quiet(&mut src).await;
    assert!(src.poll_once(ALL).unwrap().lines.is_empty());
    env.append(b" root");
    expect_quiet(&mut src).await;
    env.append(b" from 10.0.0.1\nnext");
    let got = read_n(&mut src, 1).await;
    assert_eq!(texts(&got), ["Accepted publickey for root from 10.0.0.1"]);
    assert_eq!(offset_of(&got[0].end), 42);
    expect_quiet(&mut src).await;
}

#[tokio::test]
async fn resuming_at_any_line_end_yields_the_next_line() {
    let env = Env::new();
    let (lines, bytes) = numbered(0..20, "r");
    env.append(&bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    let got = read_n(&mut src, 20).await;
    drop(src);
    for (i, l) in got.iter().enumerate() {
        let mut again = env.source(StartPosition::Beginning, Some(l.end.clone()));
        let rest = again.poll_once(ALL).unwrap().lines;
        assert_eq!(texts(&rest), lines[i + 1..], "resumed after line {i}");
    }
}

#[tokio::test]
async fn max_bytes_bounds_a_batch_but_one_line_always_comes() {
    let env = Env::new();
    let (lines, bytes) = numbered(0..50, "b");
    env.append(&bytes);
    let len = lines[0].len() + 1;
    let mut src = env.source(StartPosition::Beginning, None);
    let first = src.next_lines(len * 3 + 1).await.unwrap().lines;
    assert_eq!(texts(&first), lines[..3]);
    let one = src.next_lines(1).await.unwrap().lines;
    assert_eq!(texts(&one), lines[3..4]);
    let rest = read_n(&mut src, 46).await;
    assert_eq!(texts(&rest), lines[4..]);
}

#[tokio::test]
async fn cancelled_reads_lose_nothing() {
    let env = Env::new();
    env.append(b"");
    let mut src = env.source(StartPosition::Beginning, None);
    let (lines, _) = numbered(0..300, "c");
    let mut got = Vec::new();
    let mut written = 0;
    while got.len() < lines.len() {
        if written < lines.len() {
            // Write a line in two halves so reads are often cut in the middle of one.
            let l = lines[written].as_bytes();
            env.append(&l[..l.len() / 2]);
            tokio::task::yield_now().await;
            env.append(&l[l.len() / 2..]);
            env.append(b"\n");
            written += 1;
        }
        tokio::select! {
            r = src.next_lines(200) => got.extend(r.unwrap().lines),
            () = tokio::time::sleep(Duration::from_micros(300)) => {}
        }
    }
    assert_eq!(texts(&got), lines);
}

#[tokio::test]
async fn rename_and_create_rotation_finishes_the_old_file_first() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..5, "a");
    let (b, b_bytes) = numbered(5..8, "a");
    let (c, c_bytes) = numbered(8..11, "new");
    let mut w = env.writer();
    w.write_all(&a_bytes).unwrap();
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 5).await), a);

    // logrotate: rename, create; rsyslog keeps writing to the old file until its HUP.
    fs::rename(&env.path, env.sibling("secure.1")).unwrap();
    File::create(&env.path).unwrap();
    w.write_all(&b_bytes[..b_bytes.len() - 10]).unwrap();
    let part = read_n(&mut src, 2).await;
    w.write_all(&b_bytes[b_bytes.len() - 10..]).unwrap();
    let part2 = read_n(&mut src, 1).await;
    assert_eq!(texts(&[part, part2].concat()), b);
    // The HUP: the writer moves to the new file.
    drop(w);
    env.append(&c_bytes);
    assert_eq!(texts(&read_n(&mut src, 3).await), c);
    assert_eq!(src.status().rotations, 1);
    assert_eq!(src.status().finishing, 0);
    expect_quiet(&mut src).await;
}

#[tokio::test]
async fn a_partial_last_line_of_a_rotated_file_becomes_a_line() {
    let env = Env::new();
    let mut w = env.writer();
    w.write_all(b"complete\ncut off").unwrap();
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 1).await), ["complete"]);
    fs::rename(&env.path, env.sibling("secure-20260101")).unwrap();
    drop(w);
    // While the new file is empty the writer may still complete the line: nothing yet.
    File::create(&env.path).unwrap();
    expect_quiet(&mut src).await;
    env.append(b"fresh\n");
    assert_eq!(texts(&read_n(&mut src, 2).await), ["cut off", "fresh"]);
}

#[tokio::test]
async fn copytruncate_starts_again_from_zero() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..6, "before");
    let (b, b_bytes) = numbered(0..2, "after");
    let mut w = env.writer();
    w.write_all(&a_bytes).unwrap();
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 6).await), a);
    // logrotate copytruncate, with an O_APPEND writer.
    fs::copy(&env.path, env.sibling("secure.1")).unwrap();
    File::options()
        .write(true)
        .open(&env.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    w.write_all(&b_bytes).unwrap();
    assert_eq!(texts(&read_n(&mut src, 2).await), b);
    assert_eq!(src.status().truncations, 1);
    expect_quiet(&mut src).await;
}

#[tokio::test]
async fn truncation_then_quick_regrowth_past_the_offset_is_noticed() {
    let env = Env::new();
    env.append(b"a\nb\nc\n");
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 3).await), ["a", "b", "c"]);
    // Truncated and rewritten longer before the tailer looks again: only the first bytes tell.
    let (b, b_bytes) = numbered(0..4, "regrown");
    File::options()
        .write(true)
        .open(&env.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    env.append(&b_bytes);
    assert!(b_bytes.len() > 6);
    assert_eq!(texts(&src.poll_once(ALL).unwrap().lines), b);
}

#[tokio::test]
async fn delete_and_recreate_finishes_the_deleted_file() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..3, "gone");
    let (b, b_bytes) = numbered(3..5, "gone");
    let (c, c_bytes) = numbered(0..3, "recreated");
    let mut w = env.writer();
    w.write_all(&a_bytes).unwrap();
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 3).await), a);
    fs::remove_file(&env.path).unwrap();
    // Written to the deleted file (still open by the writer and by the tailer).
    w.write_all(&b_bytes).unwrap();
    assert_eq!(texts(&read_n(&mut src, 2).await), b);
    drop(w);
    env.append(&c_bytes);
    assert_eq!(texts(&read_n(&mut src, 3).await), c);
    expect_quiet(&mut src).await;
}

#[tokio::test]
async fn an_absent_file_is_waited_for_and_read_from_its_start() {
    let env = Env::new();
    // Even with start_position = end: a file that appears later is read whole.
    let mut src = env.source(StartPosition::End, None);
    assert!(src.status().waiting_for_file);
    assert!(src.current_position().is_none());
    expect_quiet(&mut src).await;
    env.append(b"first\nsecond\n");
    assert_eq!(texts(&read_n(&mut src, 2).await), ["first", "second"]);
    assert!(!src.status().waiting_for_file);
}

#[tokio::test]
async fn a_missing_directory_is_waited_for_too() {
    let env = Env::new();
    let path = env.dir.path().join("later/secure");
    let mut config = env.config(StartPosition::End);
    config.file_path = path.clone();
    let mut src = FileSource::new(&config, None, None).unwrap();
    expect_quiet(&mut src).await;
    fs::create_dir(env.dir.path().join("later")).unwrap();
    append_to(&path, b"hello\n");
    assert_eq!(texts(&read_n(&mut src, 1).await), ["hello"]);
}

#[tokio::test]
async fn rotation_while_stopped_finishes_the_rotated_file_first() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..6, "old");
    env.append(&a_bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    let got = read_n(&mut src, 6).await;
    let checkpoint = got[2].end.clone();
    drop(src);

    // An older generation next to it (written before it): neither the one nor a newer one.
    fs::write(env.sibling("secure.2"), b"older\n").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(env.sibling("secure.2"))
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let (b, b_bytes) = numbered(6..8, "old");
    env.append(&b_bytes);
    fs::rename(&env.path, env.sibling("secure.1")).unwrap();
    let (c, c_bytes) = numbered(0..3, "new");
    env.append(&c_bytes);

    let mut src = env.source(StartPosition::End, Some(checkpoint));
    let rest = read_n(&mut src, 3 + 2 + 3).await;
    assert_eq!(texts(&rest), [&a[3..], &b[..], &c[..]].concat());
    assert_eq!(src.status().rotations, 1);
    expect_quiet(&mut src).await;
}

#[tokio::test]
async fn a_checkpointed_file_deleted_while_stopped_is_skipped() {
    let env = Env::new();
    env.append(b"a\nb\n");
    let mut src = env.source(StartPosition::Beginning, None);
    let checkpoint = read_n(&mut src, 2).await.pop().unwrap().end;
    drop(src);
    fs::rename(&env.path, env.sibling("secure.1.gz")).unwrap();
    // Compressed: same name family, other inode and bytes.
    let data = fs::read(env.sibling("secure.1.gz")).unwrap();
    fs::remove_file(env.sibling("secure.1.gz")).unwrap();
    fs::write(
        env.sibling("secure.1.gz"),
        [&[0x1f, 0x8b][..], &data].concat(),
    )
    .unwrap();
    env.append(b"c\n");
    let mut src = env.source(StartPosition::End, Some(checkpoint));
    assert_eq!(texts(&read_n(&mut src, 1).await), ["c"]);
}

#[tokio::test]
async fn a_reused_inode_with_other_bytes_is_a_new_file() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..5, "first");
    env.append(&a_bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    let got = read_n(&mut src, 5).await;
    drop(src);
    let checkpoint = got[1].end.clone();
    let meta = fs::metadata(&env.path).unwrap();
    assert_eq!(
        (id_of(&checkpoint).dev, id_of(&checkpoint).ino),
        (meta.dev(), meta.ino())
    );
    assert_eq!(texts(&got), a);

    // Same device and inode, other first bytes (what inode reuse looks like): read from 0, not from the
    // checkpoint's offset.
    let (b, b_bytes) = numbered(0..5, "second");
    File::options()
        .write(true)
        .open(&env.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    env.append(&b_bytes);
    let mut src = env.source(StartPosition::End, Some(checkpoint.clone()));
    assert_eq!(texts(&read_n(&mut src, 5).await), b);
    drop(src);

    // The same through a delete + create, which on most file systems reuses the inode right away.
    fs::remove_file(&env.path).unwrap();
    let (c, c_bytes) = numbered(0..5, "third");
    env.append(&c_bytes);
    let mut src = env.source(StartPosition::End, Some(checkpoint.clone()));
    assert_eq!(texts(&read_n(&mut src, 5).await), c);
    drop(src);

    // And a forged id (right inode, wrong fingerprint) is not trusted either.
    let Position::File {
        path,
        mut id,
        offset,
    } = checkpoint
    else {
        unreachable!()
    };
    let meta = fs::metadata(&env.path).unwrap();
    id.dev = meta.dev();
    id.ino = meta.ino();
    id.fingerprint ^= 1;
    let mut src = env.source(
        StartPosition::End,
        Some(Position::File { path, id, offset }),
    );
    assert_eq!(texts(&read_n(&mut src, 5).await), c);
}

#[tokio::test]
async fn invalid_utf8_comes_as_is() {
    let env = Env::new();
    let raw: &[u8] = b"sshd[1]: Invalid user \xff\xfe\xc3 from 1.2.3.4\r\n\x00\x80\n";
    env.append(raw);
    let mut src = env.source(StartPosition::Beginning, None);
    let got = read_n(&mut src, 2).await;
    assert_eq!(
        got[0].bytes[..],
        b"sshd[1]: Invalid user \xff\xfe\xc3 from 1.2.3.4"[..]
    );
    assert_eq!(got[1].bytes[..], b"\x00\x80"[..]);
}

#[tokio::test]
async fn a_very_long_line_comes_in_bounded_pieces() {
    let env = Env::new();
    let long: Vec<u8> = (0..MAX_LINE_BYTES * 2 + 12_345)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    env.append(&long);
    env.append(b"\nshort\n");
    let mut src = env.source(StartPosition::Beginning, None);
    let mut pieces = Vec::new();
    // A small budget still gets one (long) piece per call.
    while pieces.len() < 3 {
        pieces.extend(src.next_lines(4096).await.unwrap().lines);
    }
    assert_eq!(pieces.len(), 3);
    assert!(pieces.iter().all(|p| p.bytes.len() <= MAX_LINE_BYTES));
    assert_eq!(
        pieces
            .iter()
            .flat_map(|p| p.bytes.clone())
            .collect::<Vec<u8>>(),
        long
    );
    // Resuming after a piece continues the line.
    let mut again = env.source(StartPosition::Beginning, Some(pieces[0].end.clone()));
    assert_eq!(
        again.poll_once(ALL).unwrap().lines[0].bytes,
        pieces[1].bytes
    );
    assert_eq!(texts(&read_n(&mut src, 1).await), ["short"]);
}

#[tokio::test]
async fn lines_across_chunk_boundaries_are_whole() {
    let env = Env::new();
    let mut expect = Vec::new();
    let mut bytes = Vec::new();
    for i in 0..40 {
        let line = format!("{i:03}{}", "x".repeat((i * 7919) % 9000));
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        expect.push(line);
    }
    assert!(bytes.len() > 2 * CHUNK_BYTES);
    env.append(&bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 40).await), expect);
}

#[tokio::test]
async fn restart_through_the_checkpoint_file() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..4, "cp");
    env.append(&a_bytes);
    let state = env.dir.path().join("state");
    let mut src = env.source(StartPosition::Beginning, None);
    let got = read_n(&mut src, 4).await;
    let mut store = checkpoint::Store::open(&state, &checkpoint::Loaded::default()).unwrap();
    let record = checkpoint::Record::Shipped {
        shipped: Some(got[1].end.clone()),
        minutes: Vec::new(),
    };
    store.append(std::slice::from_ref(&record)).unwrap();
    drop(src);

    let loaded = checkpoint::load(&state).unwrap();
    assert_eq!(loaded.records, vec![record]);
    let mut src = env.source(StartPosition::End, Some(got[1].end.clone()));
    assert_eq!(texts(&read_n(&mut src, 2).await), a[2..]);
}

#[test]
fn the_source_and_its_reads_can_move_between_threads() {
    fn is_send<T: Send>(_: &T) {}
    let env = Env::new();
    let mut src = env.source(StartPosition::End, None);
    is_send(&src);
    is_send(&src.next_lines(1));
}

/// 64-bit FNV-1a, written out here so that a change of the fingerprint (which would orphan every
/// checkpoint written before) fails a test.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether `pos` names the file now at `path`: device, inode and first bytes.
fn identifies(pos: &Position, path: &Path) -> bool {
    let id = id_of(pos);
    let (Ok(meta), Ok(data)) = (fs::metadata(path), fs::read(path)) else {
        return false;
    };
    let n = id.fingerprint_len as usize;
    (meta.dev(), meta.ino()) == (id.dev, id.ino)
        && data.len() >= n
        && fnv1a(&data[..n]) == id.fingerprint
}

#[tokio::test]
async fn the_fingerprint_is_fnv1a_of_the_first_256_bytes() {
    let env = Env::new();
    env.append(b"short\n");
    let mut src = env.source(StartPosition::Beginning, None);
    let first = read_n(&mut src, 1).await.remove(0);
    assert_eq!(id_of(&first.end).fingerprint_len, 6);
    assert_eq!(id_of(&first.end).fingerprint, fnv1a(b"short\n"));
    // The fingerprint grows with a young file, up to FINGERPRINT_BYTES.
    let (_, more) = numbered(0..20, "grow");
    env.append(&more);
    let last = read_n(&mut src, 20).await.pop().unwrap();
    let data = fs::read(&env.path).unwrap();
    let id = id_of(&last.end);
    assert_eq!(id.fingerprint_len as usize, FINGERPRINT_BYTES);
    assert_eq!(id.fingerprint, fnv1a(&data[..FINGERPRINT_BYTES]));
    assert!(identifies(&first.end, &env.path) && identifies(&last.end, &env.path));
}

/// A randomized model: a writer appends numbered lines (random bytes, some longer than a read chunk,
/// some written in two halves with a read in between) while the file is rotated (rename+create,
/// delete+recreate, with the writer moving at once or later as rsyslog does on its HUP), truncated
/// (copytruncate), read with random budgets, and the tailer restarted from its last line's position,
/// sometimes with a rename or a copytruncate while it is stopped. The lines read must be the lines
/// written, in order, none twice.
///
/// Only copytruncate may lose lines, and only its inherent race: lines written to the file after the
/// tailer last read it and before the truncation exist only in the copy. Those lines are marked "may be
/// lost" (and one of them may come cut short, if the tailer held its first half); every other line must
/// come whole. What the model does not do, because no tailer can follow it: rename a file the tailer has
/// never seen (it polls before each rotation, and restarts only with no rotated file left to finish), or
/// rename while stopped a file the checkpoint no longer identifies.
#[test]
fn randomized_write_rotate_truncate_restart_model() {
    for seed in 0..16u64 {
        run_model(seed, 160);
    }
}

struct Written {
    seq: usize,
    bytes: Vec<u8>,
    file: usize,
    may_lose: bool,
}

struct Model {
    rng: fastrand::Rng,
    env: Env,
    written: Vec<Written>,
    returned: Vec<Vec<u8>>,
    returned_seqs: HashSet<usize>,
    last_end: Option<Position>,
    /// Model file at the path (index), if any.
    path_file: Option<usize>,
    writer: File,
    writer_file: usize,
    /// The writer still writes to a file rotated away, until its HUP.
    pending_hup: bool,
    files: usize,
    rotations: usize,
    log: Vec<String>,
}

impl Model {
    fn line(&mut self) -> Vec<u8> {
        let seq = self.written.len();
        let mut b = format!("{seq:06} ").into_bytes();
        let len = if self.rng.u32(0..100) < 2 {
            self.rng.usize(60_000..150_000)
        } else {
            self.rng.usize(0..120)
        };
        for _ in 0..len {
            let c = self.rng.u8(..);
            b.push(if c == b'\n' || c == b'\r' { b'.' } else { c });
        }
        b
    }

    fn write(&mut self, src: &mut Option<FileSource>) {
        for _ in 0..self.rng.usize(1..8) {
            let bytes = self.line();
            let seq = self.written.len();
            let mut with_nl = bytes.clone();
            with_nl.push(b'\n');
            if self.rng.bool() {
                let cut = self.rng.usize(0..with_nl.len());
                self.writer.write_all(&with_nl[..cut]).unwrap();
                let max = self.rng.usize(1..4096);
                if let Some(s) = src.as_mut() {
                    self.poll(s, max);
                }
                self.writer.write_all(&with_nl[cut..]).unwrap();
            } else {
                self.writer.write_all(&with_nl).unwrap();
            }
            self.log
                .push(format!("write {seq} to f{}", self.writer_file));
            self.written.push(Written {
                seq,
                bytes,
                file: self.writer_file,
                may_lose: false,
            });
        }
    }

    fn poll(&mut self, src: &mut FileSource, max: usize) {
        let lines = src.poll_once(max).unwrap().lines;
        if !lines.is_empty() {
            let seqs: Vec<String> = lines
                .iter()
                .map(|l| {
                    format!(
                        "{}/{}",
                        String::from_utf8_lossy(&l.bytes[..l.bytes.len().min(6)]),
                        l.bytes.len()
                    )
                })
                .collect();
            self.log.push(format!("poll {max}: {}", seqs.join(" ")));
        }
        for l in lines {
            if let Some(seq) = l
                .bytes
                .get(..6)
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            {
                self.returned_seqs.insert(seq);
            }
            self.returned.push(l.bytes.to_vec());
            self.last_end = Some(l.end);
        }
    }

    fn drain(&mut self, src: &mut FileSource) {
        loop {
            let before = self.returned.len();
            self.poll(src, ALL);
            if self.returned.len() == before {
                break;
            }
        }
    }

    fn new_path_file(&mut self) -> usize {
        self.files += 1;
        File::create(&self.env.path).unwrap();
        self.path_file = Some(self.files);
        self.files
    }

    fn reopen_writer(&mut self) {
        if self.path_file.is_none() {
            self.new_path_file();
        }
        self.writer = self.env.writer();
        self.writer_file = self.path_file.unwrap();
        self.pending_hup = false;
    }

    /// Rename+create or delete+recreate; the writer moves now or at a later HUP.
    fn rotate(&mut self, delete: bool) {
        if self.path_file.is_none() {
            return;
        }
        self.rotations += 1;
        if delete {
            fs::remove_file(&self.env.path).unwrap();
        } else {
            fs::rename(
                &self.env.path,
                self.env.sibling(&format!("secure.{}", self.rotations)),
            )
            .unwrap();
        }
        self.path_file = None;
        if self.rng.bool() {
            self.new_path_file();
        }
        if self.rng.bool() {
            self.reopen_writer();
        } else {
            self.pending_hup = true;
        }
    }

    /// copytruncate: lines of the file not returned yet may be lost (they are only in the copy).
    fn copytruncate(&mut self) {
        let Some(pf) = self.path_file else { return };
        self.rotations += 1;
        fs::copy(
            &self.env.path,
            self.env.sibling(&format!("secure.{}", self.rotations)),
        )
        .unwrap();
        File::options()
            .write(true)
            .open(&self.env.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        for w in &mut self.written {
            if w.file == pf && !self.returned_seqs.contains(&w.seq) {
                w.may_lose = true;
            }
        }
    }

    /// The lines read must be the lines written, in order, none twice; only lines marked "may be lost"
    /// may be missing, or come cut short (a line being written when the file was truncated).
    fn check(&self, seed: u64) {
        let mut next = 0;
        for (i, got) in self.returned.iter().enumerate() {
            loop {
                let Some(w) = self.written.get(next) else {
                    panic!(
                        "seed {seed}: read line {i} was never written (or read twice)\n{}",
                        self.summary()
                    );
                };
                next += 1;
                if &w.bytes == got || (w.may_lose && w.bytes.starts_with(got)) {
                    break;
                }
                assert!(
                    w.may_lose,
                    "seed {seed}: line {} lost (read line {i} instead)\n{}",
                    w.seq,
                    self.summary()
                );
            }
        }
        for w in &self.written[next..] {
            assert!(
                w.may_lose,
                "seed {seed}: line {} never read\n{}",
                w.seq,
                self.summary()
            );
        }
    }

    fn summary(&self) -> String {
        let short = |b: &[u8]| {
            format!(
                "{:?}/{}",
                String::from_utf8_lossy(&b[..b.len().min(10)]),
                b.len()
            )
        };
        let written: Vec<String> = self
            .written
            .iter()
            .map(|w| {
                format!(
                    "{} f{}{}",
                    short(&w.bytes),
                    w.file,
                    if w.may_lose { " may" } else { "" }
                )
            })
            .collect();
        let read: Vec<String> = self.returned.iter().map(|b| short(b)).collect();
        format!("ops: {:?}\nwritten: {written:?}\nread: {read:?}", self.log)
    }
}

fn run_model(seed: u64, ops: usize) {
    let env = Env::new();
    File::create(&env.path).unwrap();
    let writer = env.writer();
    let mut m = Model {
        rng: fastrand::Rng::with_seed(seed),
        env,
        written: Vec::new(),
        returned: Vec::new(),
        returned_seqs: HashSet::new(),
        last_end: None,
        path_file: Some(0),
        writer,
        writer_file: 0,
        pending_hup: false,
        files: 0,
        rotations: 0,
        log: Vec::new(),
    };
    let mut src = Some(m.env.source(StartPosition::Beginning, None));
    for _ in 0..ops {
        match m.rng.u32(0..100) {
            0..40 => {
                m.log.push("write".into());
                m.write(&mut src);
            }
            40..58 => {
                let max = m.rng.usize(1..8192);
                m.log.push(format!("poll {max}"));
                m.poll(src.as_mut().unwrap(), max);
            }
            58..66 => {
                m.log.push("drain".into());
                m.drain(src.as_mut().unwrap());
            }
            66..76 => {
                let delete = m.rng.u32(0..3) == 0;
                // The tailer sees the file at the path before it goes away.
                let max = m.rng.usize(1..8192);
                m.poll(src.as_mut().unwrap(), max);
                m.log
                    .push(format!("rotate delete={delete} (after poll {max})"));
                m.rotate(delete);
            }
            76..81 => {
                if m.pending_hup {
                    m.log.push("hup".into());
                    m.reopen_writer();
                }
            }
            81..86 => {
                m.log.push("copytruncate".into());
                m.copytruncate();
            }
            _ => {
                // Restart. Only from a settled state: no rotated file left to finish.
                let s = src.as_mut().unwrap();
                m.drain(s);
                if s.status().finishing > 0 {
                    continue;
                }
                let resume = m.last_end.clone().or_else(|| s.current_position());
                src = None;
                m.log.push("stop".into());
                m.write(&mut src);
                if m.path_file.is_some() && !m.pending_hup {
                    match m.rng.u32(0..4) {
                        // Followed only when the checkpoint identifies the file at the path: a file the
                        // tailer never finished, or rewrote since the checkpoint, cannot be known by
                        // anyone after a rename (and copytruncate plus rename of one file is not a setup
                        // that occurs).
                        0 if resume.as_ref().is_some_and(|p| identifies(p, &m.env.path)) => {
                            m.log.push("rename while stopped".into());
                            m.rotate(false);
                            m.reopen_writer();
                        }
                        1 => {
                            m.log.push("copytruncate while stopped".into());
                            m.copytruncate();
                        }
                        _ => {}
                    }
                    m.write(&mut src);
                }
                m.log.push("start".into());
                src = Some(m.env.source(StartPosition::End, resume));
            }
        }
    }
    let s = src.as_mut().unwrap();
    if m.pending_hup {
        m.reopen_writer();
    }
    m.drain(s);
    m.check(seed);
    let lost = m
        .written
        .iter()
        .filter(|w| w.may_lose && !m.returned_seqs.contains(&w.seq))
        .count();
    let must = m.written.iter().filter(|w| !w.may_lose).count();
    assert!(
        m.written.len() > 100 && lost < must,
        "seed {seed}: {lost} lost, {must} must come, of {}",
        m.written.len()
    );
}

/// Copytruncate while the reader is behind (CloudWatch was slow): what was not read yet is read from the
/// copy, found by its first bytes, before the truncated file's new content.
#[tokio::test]
async fn copytruncate_while_behind_finishes_the_copy_first() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..1000, "before");
    let (b, b_bytes) = numbered(0..3, "after");
    let mut w = env.writer();
    w.write_all(&a_bytes).unwrap();
    let mut src = env.source(StartPosition::Beginning, None);
    let first = src.poll_once(4096).unwrap().lines;
    assert!(first.len() < a.len(), "behind");
    fs::copy(&env.path, env.sibling("secure-20261206")).unwrap();
    File::options()
        .write(true)
        .open(&env.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Noticed when it happens, without reading: the copy is kept open from here on.
    src.track();
    fs::remove_file(env.sibling("secure-20261206")).unwrap();
    w.write_all(&b_bytes).unwrap();
    let rest = read_n(&mut src, a.len() - first.len() + b.len()).await;
    let mut got = texts(&first);
    got.extend(texts(&rest));
    assert_eq!(got, [&a[..], &b[..]].concat());
    expect_quiet(&mut src).await;
}

/// Renamed away twice while the reader did not read: both generations are kept and finished in order.
#[tokio::test]
async fn two_renames_while_behind_lose_no_generation() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..50, "gen1");
    let (b, b_bytes) = numbered(0..50, "gen2");
    let (c, c_bytes) = numbered(0..50, "gen3");
    env.append(&a_bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    let first = src.poll_once(512).unwrap().lines;
    fs::rename(&env.path, env.sibling("secure.1")).unwrap();
    env.append(&b_bytes);
    src.track();
    fs::rename(env.sibling("secure.1"), env.sibling("secure.2")).unwrap();
    fs::rename(&env.path, env.sibling("secure.1")).unwrap();
    env.append(&c_bytes);
    src.track();
    let rest = read_n(&mut src, 150 - first.len()).await;
    let mut got = texts(&first);
    got.extend(texts(&rest));
    assert_eq!(got, [&a[..], &b[..], &c[..]].concat());
}

/// Rotated twice while stopped (the checkpointed file is now `secure.2`): the middle generation is read
/// too, between the checkpointed file's rest and the current file.
#[tokio::test]
async fn two_generations_rotated_while_stopped_are_both_finished() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..6, "gen1");
    env.append(&a_bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    let checkpoint = read_n(&mut src, 6).await[3].end.clone();
    drop(src);
    std::thread::sleep(Duration::from_millis(20));
    fs::rename(&env.path, env.sibling("secure.1")).unwrap();
    let (b, b_bytes) = numbered(0..4, "gen2");
    env.append(&b_bytes);
    std::thread::sleep(Duration::from_millis(20));
    fs::rename(env.sibling("secure.1"), env.sibling("secure.2")).unwrap();
    fs::rename(&env.path, env.sibling("secure.1")).unwrap();
    let (c, c_bytes) = numbered(0..2, "gen3");
    env.append(&c_bytes);
    let mut src = env.source(StartPosition::End, Some(checkpoint));
    let rest = read_n(&mut src, 2 + 4 + 2).await;
    assert_eq!(texts(&rest), [&a[4..], &b[..], &c[..]].concat());
    expect_quiet(&mut src).await;
}

/// Copytruncate while stopped: the checkpointed inode now holds other bytes; the copy, another inode with
/// the same first bytes, is finished from the checkpoint.
#[tokio::test]
async fn a_copytruncate_copy_made_while_stopped_is_found_by_its_first_bytes() {
    let env = Env::new();
    let (a, a_bytes) = numbered(0..8, "before");
    env.append(&a_bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    let checkpoint = read_n(&mut src, 8).await[4].end.clone();
    drop(src);
    fs::copy(&env.path, env.sibling("secure.1")).unwrap();
    File::options()
        .write(true)
        .open(&env.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (b, b_bytes) = numbered(0..3, "after");
    env.append(&b_bytes);
    let mut src = env.source(StartPosition::End, Some(checkpoint));
    let rest = read_n(&mut src, 3 + 3).await;
    assert_eq!(texts(&rest), [&a[5..], &b[..]].concat());
}

/// A symlink at `file_path`: the target's directory is watched and searched for rotations.
#[tokio::test]
async fn a_symlinked_path_follows_the_target_through_rotation() {
    let env = Env::new();
    let real_dir = env.sibling("real");
    fs::create_dir(&real_dir).unwrap();
    let target = real_dir.join("auth.log");
    std::os::unix::fs::symlink(&target, &env.path).unwrap();
    let (a, a_bytes) = numbered(0..3, "one");
    append_to(&target, &a_bytes);
    let mut src = env.source(StartPosition::Beginning, None);
    assert_eq!(texts(&read_n(&mut src, 3).await), a);
    // Rotated in the target's directory; the link still names `auth.log`.
    let (b, b_bytes) = numbered(0..2, "one-late");
    append_to(&target, &b_bytes);
    fs::rename(&target, real_dir.join("auth.log.1")).unwrap();
    let (c, c_bytes) = numbered(0..2, "two");
    append_to(&target, &c_bytes);
    assert_eq!(texts(&read_n(&mut src, 4).await), [&b[..], &c[..]].concat());
    let checkpoint = src.current_position().unwrap();
    drop(src);
    // Rotated again while stopped: found next to the target, not next to the link.
    let (d, d_bytes) = numbered(0..2, "two-late");
    append_to(&target, &d_bytes);
    fs::rename(&target, real_dir.join("auth.log.0")).unwrap();
    let (e, e_bytes) = numbered(0..1, "three");
    append_to(&target, &e_bytes);
    let mut src = env.source(StartPosition::End, Some(checkpoint));
    assert_eq!(texts(&read_n(&mut src, 3).await), [&d[..], &e[..]].concat());
}

/// A FIFO at the path neither blocks nor is read; a regular file that replaces it is.
#[tokio::test]
async fn a_fifo_at_the_path_is_waited_out() {
    let env = Env::new();
    let made = std::process::Command::new("mkfifo")
        .arg(&env.path)
        .status()
        .unwrap();
    assert!(made.success());
    let mut src = env.source(StartPosition::Beginning, None);
    assert!(src.status().waiting_for_file);
    expect_quiet(&mut src).await;
    fs::remove_file(&env.path).unwrap();
    env.append(b"real\n");
    assert_eq!(texts(&read_n(&mut src, 1).await), ["real"]);
}

/// A stat of the path that fails (its directory turned into a file) does not stop reading the file
/// already open.
#[tokio::test]
async fn a_failing_stat_does_not_stop_reading_the_open_file() {
    let env = Env::new();
    let dir = env.sibling("logs");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("secure");
    append_to(&path, b"one\n");
    let config = SourceConfig {
        file_path: path.clone(),
        ..env.config(StartPosition::Beginning)
    };
    let mut src = FileSource::new(&config, None, None).unwrap();
    assert_eq!(texts(&read_n(&mut src, 1).await), ["one"]);
    let mut writer = OpenOptions::new().append(true).open(&path).unwrap();
    fs::rename(&dir, env.sibling("logs.old")).unwrap();
    fs::write(&dir, b"not a directory").unwrap();
    writer.write_all(b"two\n").unwrap();
    // ENOTDIR from the stat: the file is rotated away for the source, its rest still read.
    assert_eq!(texts(&read_n(&mut src, 1).await), ["two"]);
}

/// Pieces of an over-long line are marked as going on, and a character is never cut between two.
#[tokio::test]
async fn over_long_line_pieces_are_marked_and_cut_between_characters() {
    let env = Env::new();
    let mut line = vec![b'a'; MAX_LINE_BYTES - 1];
    line.extend_from_slice("é".repeat(10).as_bytes());
    line.push(b'\n');
    env.append(&line);
    let mut src = env.source(StartPosition::Beginning, None);
    let pieces = read_n(&mut src, 2).await;
    assert!(pieces[0].continues && !pieces[1].continues);
    assert_eq!(pieces[0].bytes.len(), MAX_LINE_BYTES - 1);
    assert!(std::str::from_utf8(&pieces[1].bytes).is_ok());
}
