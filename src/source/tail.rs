//! The end of a log file, read backwards in chunks so a large log costs only its tail: the lines `verify`
//! checks, and the sample `init` and the daemon's start-up check judge the log's format by.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;

use crate::text::strip_cr;

/// Bytes read per step backwards.
const CHUNK: u64 = 64 * 1024;

/// The last lines of a file, with the 1-based number of the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub first_line: u64,
    /// Terminator (and a trailing `\r`) stripped; a last line without a newline is included.
    pub lines: Vec<Vec<u8>>,
}

/// The last `n` lines of `path`, numbered (one fast newline count of what comes before them).
pub fn last_lines(path: &Path, n: usize) -> io::Result<Tail> {
    let mut f = File::open(path)?;
    let (start, data) = read_back(&mut f, |newlines, _| newlines > n)?;
    let mut lines = split(&data, start);
    let skip = lines.len().saturating_sub(n);
    lines.drain(..skip);
    // Number of the first kept line: newlines before it in the file, plus one.
    let kept: usize = lines.len();
    let prefix_end = data.len() - tail_bytes(&data, kept);
    let before = memchr::memchr_iter(b'\n', &data[..prefix_end]).count() as u64
        + count_newlines(&mut f, start)?;
    Ok(Tail {
        first_line: before + 1,
        lines: lines.into_iter().map(|l| strip_cr(l).to_vec()).collect(),
    })
}

/// The non-empty complete lines in the last `max` bytes of `path`, decoded lossily: a sample of the log.
pub fn sample(path: &Path, max: u64) -> io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let (start, data) = read_back(&mut f, |_, bytes| bytes >= max)?;
    let keep = data.len().min(usize::try_from(max).unwrap_or(usize::MAX));
    let cut = data.len() - keep;
    // A line cut by the byte limit is partial: dropped with the rest before it.
    let body = match (cut, memchr::memchr(b'\n', &data[cut..])) {
        (0, _) if start == 0 => &data[..],
        (_, Some(i)) => &data[cut + i + 1..],
        (_, None) => &data[data.len()..],
    };
    Ok(split(body, 0)
        .into_iter()
        .map(|l| String::from_utf8_lossy(strip_cr(l)).into_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Reads `f` backwards from its end in chunks until `enough(newlines seen, bytes read)` or its start;
/// returns where the data read starts and the data.
fn read_back(f: &mut File, enough: impl Fn(usize, u64) -> bool) -> io::Result<(u64, Vec<u8>)> {
    let len = f.metadata()?.len();
    let mut start = len;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0usize;
    let mut ends_with_newline = None;
    while start > 0 {
        let step = CHUNK.min(start);
        start -= step;
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; step as usize];
        f.read_exact(&mut buf)?;
        // The final newline ends the last line; it does not start another one.
        let ends = *ends_with_newline.get_or_insert(buf.last() == Some(&b'\n'));
        newlines += memchr::memchr_iter(b'\n', &buf).count();
        chunks.push(buf);
        if enough(newlines - usize::from(ends), len - start) {
            break;
        }
    }
    chunks.reverse();
    Ok((start, chunks.concat()))
}

/// The lines of `data`, read from byte `start` of its file: unless that is the file's start, the first
/// piece is a partial line and is dropped; a final newline does not start a line.
fn split(data: &[u8], start: u64) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if data.is_empty() || data.last() == Some(&b'\n') {
        lines.pop();
    }
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    lines
}

/// Bytes that the last `k` lines (with their terminators) take at the end of `data`.
fn tail_bytes(data: &[u8], k: usize) -> usize {
    if k == 0 {
        return 0;
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == k {
                return data.len() - (i + 1);
            }
        }
    }
    data.len()
}

fn count_newlines(f: &mut File, end: u64) -> io::Result<u64> {
    f.seek(SeekFrom::Start(0))?;
    let mut remaining = end;
    let mut count = 0u64;
    let mut buf = vec![0u8; CHUNK as usize];
    while remaining > 0 {
        let step = remaining.min(CHUNK) as usize;
        f.read_exact(&mut buf[..step])?;
        count += memchr::memchr_iter(b'\n', &buf[..step]).count() as u64;
        remaining -= step as u64;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(content).expect("write");
        f
    }

    fn tail_of(content: &[u8], n: usize) -> (u64, Vec<String>) {
        let f = file(content);
        let t = last_lines(f.path(), n).expect("read");
        (
            t.first_line,
            t.lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
        )
    }

    #[test]
    fn last_lines_counts_from_the_end_and_numbers_from_the_start() {
        assert_eq!(tail_of(b"a\nb\nc\n", 2), (2, vec!["b".into(), "c".into()]));
        assert_eq!(tail_of(b"a\nb\nc", 2), (2, vec!["b".into(), "c".into()]));
        assert_eq!(tail_of(b"a\r\nb\r\n", 5), (1, vec!["a".into(), "b".into()]));
        assert_eq!(
            tail_of(b"a\n\nc\n", 2),
            (2, vec![String::new(), "c".into()])
        );
        assert_eq!(tail_of(b"", 3), (1, vec![]));
        assert_eq!(tail_of(b"x\n", 0), (2, vec![]));
        // Longer than one read step, lines straddling the chunk boundary.
        let mut big = Vec::new();
        for i in 0..30_000 {
            big.extend_from_slice(format!("line number {i}\n").as_bytes());
        }
        let (first, lines) = tail_of(&big, 10_000);
        assert_eq!(first, 20_001);
        assert_eq!(lines.len(), 10_000);
        assert_eq!(lines[0], "line number 20000");
        assert_eq!(lines[9_999], "line number 29999");
    }

    #[test]
    fn a_sample_holds_the_complete_lines_of_the_last_bytes() {
        let f = file(b"first\n\nsecond\r\nthird\n");
        assert_eq!(
            sample(f.path(), 1 << 20).expect("read"),
            ["first", "second", "third"]
        );
        // 12 bytes: "cond\r\nthird\n" — the cut line is dropped.
        assert_eq!(sample(f.path(), 12).expect("read"), ["third"]);
        let mut big = Vec::new();
        for i in 0..30_000 {
            big.extend_from_slice(format!("line number {i}\n").as_bytes());
        }
        let f = file(&big);
        let got = sample(f.path(), 100_000).expect("read");
        assert_eq!(got.last().map(String::as_str), Some("line number 29999"));
        assert!(got.len() < 6_000 && got.len() > 5_000, "{}", got.len());
        assert!(got[0].starts_with("line number "));
    }
}
