//! A log's bytes as lines and text, one set of rules for every reader: a line ends at `\n` (a `\r` before
//! it is dropped), is never longer than [`MAX_LINE_BYTES`] (a longer one comes in pieces, each but the
//! last marked as going on), and invalid UTF-8 is decoded lossily, never dropped.

use std::borrow::Cow;
use std::io::{self, BufRead};

/// The longest line handed out whole; longer ones come in pieces of this size, so memory stays bounded
/// whatever a file holds.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// A line's bytes as text: valid UTF-8 as is (no copy), anything else decoded lossily (U+FFFD), never
/// dropped.
pub fn as_text(bytes: &[u8]) -> Cow<'_, str> {
    // `from_utf8` first: `from_utf8_lossy` checks byte by byte, several times slower on valid text.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `line` without a trailing `\r` (a CRLF line end).
pub fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where to cut a piece off an over-long line that fills `window`: before a `\r` ending it (so a `\r\n`
/// stays together and no empty line follows), and never inside a UTF-8 character (so the pieces decode
/// as the line does).
pub fn piece_len(window: &[u8]) -> usize {
    let n = window.len();
    if n == 0 {
        return 0;
    }
    if window[n - 1] == b'\r' && n > 1 {
        return n - 1;
    }
    // The start of the last character, when it may be cut: at most 3 continuation bytes back.
    let tail = n.saturating_sub(4);
    if let Some(start) = (tail..n).rev().find(|&i| window[i] & 0xC0 != 0x80) {
        let needed = match window[start] {
            b if b >= 0xF0 => 4,
            b if b >= 0xE0 => 3,
            b if b >= 0xC0 => 2,
            _ => 1,
        };
        if start > 0 && start + needed > n {
            return start;
        }
    }
    n
}

/// One line (or piece) from [`LineReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The bytes, without the line end.
    pub bytes: Vec<u8>,
    /// A piece of an over-long line that goes on in the next one.
    pub continues: bool,
    /// Bytes taken from the reader for it, line end included.
    pub consumed: usize,
}

/// Reads lines from a [`BufRead`], over-long ones in [`MAX_LINE_BYTES`] pieces.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    /// The end of the last piece, kept for the next one (a character cut in two).
    carry: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            carry: Vec::new(),
        }
    }

    /// The next line, or the next piece of an over-long one; `None` at the end. A last line without a
    /// newline comes whole.
    pub fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        let mut bytes = std::mem::take(&mut self.carry);
        let mut consumed = 0;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if bytes.is_empty() && consumed == 0 {
                    return Ok(None);
                }
                return Ok(Some(line(bytes, consumed)));
            }
            let room = MAX_LINE_BYTES.saturating_sub(bytes.len());
            let window = &chunk[..chunk.len().min(room + 1)];
            if let Some(i) = memchr::memchr(b'\n', window) {
                bytes.extend_from_slice(&chunk[..i]);
                self.inner.consume(i + 1);
                return Ok(Some(line(bytes, consumed + i + 1)));
            }
            let take = chunk.len().min(room);
            bytes.extend_from_slice(&chunk[..take]);
            self.inner.consume(take);
            consumed += take;
            if bytes.len() >= MAX_LINE_BYTES {
                // Full: a line of exactly this length if a newline (or the end) follows, else a piece.
                let next = self.inner.fill_buf()?;
                if next.first() == Some(&b'\n') {
                    self.inner.consume(1);
                    return Ok(Some(line(bytes, consumed + 1)));
                }
                if next.is_empty() {
                    return Ok(Some(line(bytes, consumed)));
                }
                let keep = piece_len(&bytes);
                self.carry = bytes.split_off(keep);
                return Ok(Some(Piece {
                    bytes,
                    continues: true,
                    consumed,
                }));
            }
        }
    }
}

/// A complete line: `bytes` without a trailing `\r`.
fn line(mut bytes: Vec<u8>, consumed: usize) -> Piece {
    let len = strip_cr(&bytes).len();
    bytes.truncate(len);
    Piece {
        bytes,
        continues: false,
        consumed,
    }
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

    #[test]
    fn pieces_are_cut_between_characters_and_before_a_carriage_return() {
        assert_eq!(piece_len(b"abcd"), 4);
        assert_eq!(piece_len(b"abc\r"), 3);
        // "é" is C3 A9: a window ending after C3 is cut before it.
        assert_eq!(piece_len(b"ab\xc3"), 2);
        assert_eq!(piece_len(b"ab\xc3\xa9"), 4);
        // A 4-byte character with 2 of its bytes in the window.
        assert_eq!(piece_len(b"abc\xf0\x9f"), 3);
        // Invalid bytes are not characters to keep whole.
        assert_eq!(piece_len(b"\x80\x80\x80\x80"), 4);
    }

    fn all(input: &[u8]) -> Vec<Piece> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(1000, input));
        let mut out = Vec::new();
        while let Some(p) = reader.next_piece().expect("read") {
            out.push(p);
        }
        out
    }

    #[test]
    fn lines_end_at_newlines_and_crlf_and_the_last_may_lack_one() {
        let got = all(b"a\r\nb\n\nlast");
        let texts: Vec<&[u8]> = got.iter().map(|p| p.bytes.as_slice()).collect();
        assert_eq!(texts, [&b"a"[..], b"b", b"", b"last"]);
        assert!(got.iter().all(|p| !p.continues));
        assert_eq!(got.iter().map(|p| p.consumed).sum::<usize>(), 10);
    }

    #[test]
    fn a_file_without_newlines_comes_in_bounded_pieces() {
        let big = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let got = all(&big);
        assert_eq!(
            got.iter()
                .map(|p| (p.bytes.len(), p.continues))
                .collect::<Vec<_>>(),
            [(MAX_LINE_BYTES, true), (MAX_LINE_BYTES, true), (5, false)]
        );
        // A line exactly at the limit is whole, whatever the buffer's size.
        for capacity in [1000, 1 << 20, (1 << 20) + 1] {
            let mut exact = vec![b'y'; MAX_LINE_BYTES];
            exact.extend_from_slice(b"\nz\n");
            let mut reader = LineReader::new(io::BufReader::with_capacity(capacity, &exact[..]));
            let first = reader.next_piece().expect("read").expect("a line");
            assert_eq!(
                (first.bytes.len(), first.continues),
                (MAX_LINE_BYTES, false)
            );
            let second = reader.next_piece().expect("read").expect("a line");
            assert_eq!(second.bytes, b"z");
        }
        // A character across the cut goes whole into the next piece.
        let mut split = vec![b'a'; MAX_LINE_BYTES - 1];
        split.extend_from_slice("é!".as_bytes());
        let got = all(&split);
        assert_eq!(got[0].bytes.len(), MAX_LINE_BYTES - 1);
        assert_eq!(got[1].bytes, "é!".as_bytes());
        assert!(got[0].continues && !got[1].continues);
    }
}
