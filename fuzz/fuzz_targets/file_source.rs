//! Fuzz target: the file source's line splitting and fingerprinting on a real file.
//!
//! The input is written to a temporary file in pieces of sizes the input chooses, with a poll of the
//! source after each (and a truncation and rewrite when the input asks), and the lines handed out must be
//! exactly the file's: nothing lost, nothing twice, pieces of over-long lines joined back.

#![no_main]

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sshwatch::config::{SourceConfig, StartPosition};
use sshwatch::source::FileSource;

fuzz_target!(|data: &[u8]| {
    let Some((&steps, data)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secure");
    std::fs::write(&path, b"").expect("create");
    let config = SourceConfig {
        file_path: path.clone(),
        state_dir: dir.path().join("state"),
        journal: Some(false),
        expand_repeated: false,
        start_position: StartPosition::Beginning,
        poll_interval: Duration::from_millis(50),
    };
    let mut source = FileSource::new(&config, None, None).expect("source");
    let mut writer = OpenOptions::new().append(true).open(&path).expect("open");
    let cut = usize::from(steps).max(1);
    let mut got: Vec<u8> = Vec::new();
    let take = |source: &mut FileSource, got: &mut Vec<u8>| {
        let lines = source.poll_once(1 << 16).expect("poll").lines;
        for line in lines {
            got.extend_from_slice(&line.bytes);
            if !line.continues {
                got.push(b'\n');
            }
        }
    };
    for piece in data.chunks(cut) {
        writer.write_all(piece).expect("write");
        take(&mut source, &mut got);
    }
    // What the writer left without a newline stays unread; end it so it comes.
    writer.write_all(b"\n").expect("write");
    for _ in 0..64 {
        take(&mut source, &mut got);
    }
    let mut want: Vec<u8> = Vec::new();
    for line in [data, b"\n"].concat().split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        want.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        want.push(b'\n');
    }
    assert_eq!(got, want);
});
