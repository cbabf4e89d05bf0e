//! Fuzz target: the configuration parser on arbitrary text. It either yields a checked configuration or
//! an error that names a key or the file and a line within it; it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshwatch::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml_str(&text, None) {
        Ok(config) => assert!(!config.metric_filters.is_empty()),
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(e.line.is_none_or(|l| l >= 1 && l <= lines + 1), "{e}");
            assert!(!e.message.is_empty());
        }
    }
});
