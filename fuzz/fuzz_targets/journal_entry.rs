//! Fuzz target: a `journalctl -o json` entry, parsed and rendered as a syslog line. Any bytes may come
//! (any local user can log as `sshd`): nothing may panic, and a rendered entry is exactly one line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sshwatch::source::journal::render_entry;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    if let Some(rendered) = render_entry(&entry, &chrono::Utc) {
        assert!(!rendered.line.contains(&b'\n'), "one line");
        assert!(!rendered.cursor.is_empty() || entry.contains_key("__CURSOR"));
    }
});
