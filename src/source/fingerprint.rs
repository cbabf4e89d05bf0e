//! File identity: device + inode plus a stable hash of the first bytes, so a reused inode or a file
//! rewritten in place is told apart from the file a checkpoint was written for.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::source::FileId;

/// How many leading bytes of a file go into its fingerprint.
///
/// 256 bytes hold the first line or two of an auth log, timestamp and PID included, which is what makes
/// two files differ; more would only cost reads, since every poll of the followed file checks it.
pub const FINGERPRINT_BYTES: usize = 256;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a, continued from `hash` (start with [`FNV_OFFSET`]).
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Reads the first up-to-[`FINGERPRINT_BYTES`] bytes of `file` into `buf`; returns how many there are.
fn read_head(file: &File, buf: &mut [u8; FINGERPRINT_BYTES]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What the head of a file says about a [`FileId`] taken earlier.
#[derive(Debug)]
pub(crate) enum Head {
    /// Same device, inode and first bytes; carries the id refreshed over the bytes there are now
    /// (the fingerprint of a young file grows with it up to [`FINGERPRINT_BYTES`]).
    Same(FileId),
    /// Another file, or this one truncated or rewritten.
    Different,
}

impl FileId {
    /// The identity of `file` as it is now.
    pub(crate) fn of(file: &File, meta: &Metadata) -> io::Result<FileId> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_head(file, &mut buf)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: fnv1a(FNV_OFFSET, &buf[..n]),
            fingerprint_len: n as u32,
        })
    }

    /// Compares `file` (with its `meta`) with this id: same device and inode, and its first
    /// `fingerprint_len` bytes hash to `fingerprint`. A file now shorter than `fingerprint_len` was
    /// truncated, so it is [`Head::Different`].
    pub(crate) fn check(&self, file: &File, meta: &Metadata) -> io::Result<Head> {
        if (meta.dev(), meta.ino()) != (self.dev, self.ino) {
            return Ok(Head::Different);
        }
        Ok(match self.same_content(file, meta)? {
            Some(fresh) => Head::Same(fresh),
            None => Head::Different,
        })
    }

    /// Whether `file` starts with the bytes this id was taken of, wherever it lives (a copy made by
    /// copytruncate has another inode): its id, refreshed over the bytes it has now, or `None`.
    pub(crate) fn same_content(&self, file: &File, meta: &Metadata) -> io::Result<Option<FileId>> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_head(file, &mut buf)?;
        let known = self.fingerprint_len as usize;
        if n < known || fnv1a(FNV_OFFSET, &buf[..known]) != self.fingerprint {
            return Ok(None);
        }
        Ok(Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: fnv1a(self.fingerprint, &buf[known..n]),
            fingerprint_len: n as u32,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fnv1a_continues_a_prefix() {
        assert_eq!(
            fnv1a(fnv1a(FNV_OFFSET, b"foo"), b"bar"),
            fnv1a(FNV_OFFSET, b"foobar")
        );
    }
}
